-- DuckDB views over the rollup's tables (after `meter rollup`). Set the lake
-- directory first, as for views.sql:
--   SET VARIABLE lake = '/data/lake';
--   .read schemas/rollup_views.sql
CREATE OR REPLACE VIEW priced_api_usage AS
  SELECT * FROM read_parquet(getvariable('lake') || '/priced/api_usage/*/*.parquet', hive_partitioning = true);
CREATE OR REPLACE VIEW daily_api_usage AS
  SELECT * FROM read_parquet(getvariable('lake') || '/daily/api_usage/*/*.parquet', hive_partitioning = true);
CREATE OR REPLACE VIEW daily_api_requests AS
  SELECT * FROM read_parquet(getvariable('lake') || '/daily/api_requests/*/*.parquet', hive_partitioning = true);
CREATE OR REPLACE VIEW daily_resource_usage AS
  SELECT *, CAST(compute_seconds AS DECIMAL(38, 6)) / 3600 AS compute_hours FROM read_parquet(getvariable('lake') || '/daily/resource_usage/*/*.parquet', hive_partitioning = true);
CREATE OR REPLACE VIEW daily_activity AS
  SELECT * FROM read_parquet(getvariable('lake') || '/daily/activity/*/*.parquet', hive_partitioning = true);
CREATE OR REPLACE VIEW monthly_api_usage AS
  SELECT * FROM read_parquet(getvariable('lake') || '/monthly/api_usage/*/*.parquet', hive_partitioning = true);
CREATE OR REPLACE VIEW monthly_api_requests AS
  SELECT * FROM read_parquet(getvariable('lake') || '/monthly/api_requests/*/*.parquet', hive_partitioning = true);
CREATE OR REPLACE VIEW monthly_resource_usage AS
  SELECT *, CAST(compute_seconds AS DECIMAL(38, 6)) / 3600 AS compute_hours FROM read_parquet(getvariable('lake') || '/monthly/resource_usage/*/*.parquet', hive_partitioning = true);
CREATE OR REPLACE VIEW monthly_activity AS
  SELECT * FROM read_parquet(getvariable('lake') || '/monthly/activity/*/*.parquet', hive_partitioning = true);
