-- DuckDB views over the lake. Set the lake directory first, e.g.
--   SET VARIABLE lake = '/data/lake';
--   .read schemas/views.sql
CREATE OR REPLACE VIEW api_usage AS
  SELECT * FROM read_parquet(getvariable('lake') || '/api_usage/*/*.parquet', hive_partitioning = true);
CREATE OR REPLACE VIEW api_requests AS
  SELECT * FROM read_parquet(getvariable('lake') || '/api_requests/*/*.parquet', hive_partitioning = true);
CREATE OR REPLACE VIEW resource_usage AS
  SELECT * FROM read_parquet(getvariable('lake') || '/resource_usage/*/*.parquet', hive_partitioning = true);
CREATE OR REPLACE VIEW activity AS
  SELECT * FROM read_parquet(getvariable('lake') || '/activity/*/*.parquet', hive_partitioning = true);
CREATE OR REPLACE VIEW rejects AS
  SELECT * FROM read_parquet(getvariable('lake') || '/rejects/*/*.parquet', hive_partitioning = true);

