-- DuckDB views over the lake and the published invoices, under plain names:
--
--   api_usage, api_requests, resource_usage, activity, rejects   raw events (schemas/<table>.md)
--   priced_api_usage                                              priced events (rollup.md)
--   daily_<table>, monthly_<table>                                aggregates of the four event tables
--   runs                                                          the run reports, <lake>/_runs/*.json
--   invoices, invoice_summary                                     the latest revision of every billed month
--   credit_balances                                               its prepaid credit grants (credits.csv)
--   notes                                                         every credit and debit note (notes/*.csv)
--   contract_terms, contract_tiers, contract_discounts,           the lake's copy of contracts.toml
--   contract_grants                                               (filled by `meter query`)
--
-- `meter query` runs this file; in the DuckDB CLI:
--
--   SET VARIABLE lake = '/data/lake';
--   SET VARIABLE out = '/data/out';        -- optional: a local folder of invoices
--   .read schemas/views.sql
--
-- Every view exists whatever the lake holds: a table with no file yet (no
-- rollup, no rejects, nothing billed) reads as empty with the same columns
-- and types. Which tables have files is looked up when this file runs: after
-- a new rollup or bill, run it again. Money is DECIMAL in every view, never
-- DOUBLE (meter's tests check every column).

-- The lake and out folders, without a trailing slash. Without `out`, the
-- invoice views are empty.
CREATE OR REPLACE MACRO meter_lake() AS rtrim(getvariable('lake'), '/');
CREATE OR REPLACE MACRO meter_out() AS
    coalesce(rtrim(getvariable('out'), '/'), meter_lake() || '/_no_out_folder_set');
-- A string as a SQL literal.
CREATE OR REPLACE MACRO meter_literal(s) AS '''' || replace(s, '''', '''''') || '''';

-- The lake's table directories that hold at least one Parquet file, e.g.
-- '<lake>/api_usage', '<lake>/daily/api_usage'.
SET VARIABLE meter_tables = (
    SELECT coalesce(list(DISTINCT regexp_extract(file, '^(.*)/(date|month)=[^/]*/[^/]*$', 1)), [])
    FROM (SELECT file FROM glob(meter_lake() || '/*/*/*.parquet')
          UNION ALL
          SELECT file FROM glob(meter_lake() || '/*/*/*/*.parquet')));

-- The query text for a lake table: its files when it has any, else nothing;
-- either way with the columns and types of meter_empty.<name> first.
-- `rel` is the table's directory below the lake, `partition` its Hive key
-- (`date` or `month`). `meter query` reads the files itself (pipeline/lake/
-- duck.rs: the same read_parquet on a local lake, record batches it reads
-- on one in object storage) into meter_lake.<name>, and lists those tables
-- in the variable meter_loaded; without it (the DuckDB CLI), the files are
-- read here.
CREATE OR REPLACE MACRO meter_lake_table(rel, name, partition) AS
    CASE WHEN getvariable('meter_loaded') IS NOT NULL
         THEN 'FROM meter_empty.' || name
              || CASE WHEN list_contains(getvariable('meter_loaded'), name)
                      THEN ' UNION ALL BY NAME FROM meter_lake.' || name ELSE '' END
         WHEN list_contains(getvariable('meter_tables'), meter_lake() || '/' || rel)
         THEN 'FROM meter_empty.' || name || ' UNION ALL BY NAME FROM read_parquet('
              || meter_literal(meter_lake() || '/' || rel || '/*/*.parquet')
              || ', hive_partitioning = true, hive_types = {''' || partition || ''': '
              || CASE partition WHEN 'date' THEN 'DATE' ELSE 'VARCHAR' END || '})'
         ELSE 'FROM meter_empty.' || name END;

-- The typed empty tables: the columns of every view, in order (tables.rs,
-- rollup/priced.rs, rollup/aggregate.rs), plus the partition key.
CREATE SCHEMA IF NOT EXISTS meter_empty;

CREATE OR REPLACE TABLE meter_empty.api_usage (
    event_id VARCHAR, ts TIMESTAMPTZ, customer_id VARCHAR, vm_id VARCHAR, user_id VARCHAR,
    provider VARCHAR, executor VARCHAR, model VARCHAR, alias VARCHAR, endpoint VARCHAR,
    request_id VARCHAR, status INTEGER, failed BOOLEAN, input_tokens BIGINT,
    cache_read_tokens BIGINT, cache_write_tokens BIGINT, output_tokens BIGINT,
    reasoning_tokens BIGINT, latency_ms BIGINT, ttft_ms BIGINT, api_key_fp VARCHAR,
    auth_type VARCHAR, reasoning_effort VARCHAR, service_tier VARCHAR, record_format VARCHAR,
    token_source VARCHAR, source_file VARCHAR, source_line BIGINT, date DATE);

CREATE OR REPLACE TABLE meter_empty.api_requests (
    event_id VARCHAR, ts TIMESTAMPTZ, customer_id VARCHAR, vm_id VARCHAR, request_id VARCHAR,
    status INTEGER, latency_us BIGINT, client_ip VARCHAR, method VARCHAR, path VARCHAR,
    provider VARCHAR, model VARCHAR, bytes BIGINT, referer VARCHAR, user_agent VARCHAR,
    error VARCHAR, log_format VARCHAR, source_file VARCHAR, source_line BIGINT, date DATE);

CREATE OR REPLACE TABLE meter_empty.resource_usage (
    event_id VARCHAR, ts TIMESTAMPTZ, customer_id VARCHAR, vm_id VARCHAR, measurement VARCHAR,
    cpu_percent DOUBLE, memory_percent DOUBLE, disk_gb DOUBLE, network_in_mb DOUBLE,
    network_out_mb DOUBLE, device VARCHAR, counter_reset BOOLEAN, source_format VARCHAR,
    source_file VARCHAR, source_line BIGINT, date DATE);

CREATE OR REPLACE TABLE meter_empty.activity (
    event_id VARCHAR, ts TIMESTAMPTZ, customer_id VARCHAR, vm_id VARCHAR, user_id VARCHAR,
    activity_type VARCHAR, command VARCHAR, command_redacted BOOLEAN, pattern_name VARCHAR,
    duration_seconds DOUBLE, exit_code INTEGER, source_file VARCHAR, source_line BIGINT,
    date DATE);

CREATE OR REPLACE TABLE meter_empty.rejects (
    event_id VARCHAR, ts TIMESTAMPTZ, ts_inferred BOOLEAN, customer_id VARCHAR, vm_id VARCHAR,
    target_table VARCHAR, format VARCHAR, reason VARCHAR, detail VARCHAR, field VARCHAR,
    raw VARCHAR, source_file VARCHAR, source_line BIGINT, date DATE);

CREATE OR REPLACE TABLE meter_empty.priced_api_usage AS
    SELECT * EXCLUDE (date),
           CAST(NULL AS DECIMAL(38, 18)) AS cost, CAST(NULL AS VARCHAR) AS currency,
           CAST(NULL AS BOOLEAN) AS priced, CAST(NULL AS VARCHAR) AS price_key,
           CAST(NULL AS DATE) AS price_effective_from, CAST(NULL AS BIGINT) AS price_tier,
           CAST(NULL AS VARCHAR) AS unpriced_reason, date
    FROM meter_empty.api_usage;

CREATE OR REPLACE TABLE meter_empty.daily_api_usage (
    customer_id VARCHAR, vm_id VARCHAR, user_id VARCHAR, provider VARCHAR, model VARCHAR,
    requests BIGINT, failed BIGINT, input_tokens BIGINT, cache_read_tokens BIGINT,
    cache_write_tokens BIGINT, output_tokens BIGINT, reasoning_tokens BIGINT,
    cost DECIMAL(38, 18), unpriced_requests BIGINT, unpriced_tokens BIGINT,
    unpriced_input_tokens BIGINT, unpriced_cache_read_tokens BIGINT,
    unpriced_cache_write_tokens BIGINT, unpriced_output_tokens BIGINT,
    unpriced_reasoning_tokens BIGINT,
    latency_ms_sum BIGINT, latency_ms_count BIGINT, latency_ms_max BIGINT, date DATE);

CREATE OR REPLACE TABLE meter_empty.daily_api_requests (
    customer_id VARCHAR, vm_id VARCHAR, provider VARCHAR, path VARCHAR, status_class INTEGER,
    requests BIGINT, bytes BIGINT, latency_us_sum BIGINT, latency_us_count BIGINT,
    latency_us_max BIGINT, date DATE);

CREATE OR REPLACE TABLE meter_empty.daily_resource_usage (
    customer_id VARCHAR, vm_id VARCHAR, samples BIGINT, compute_seconds BIGINT,
    cpu_percent_sum DOUBLE, cpu_percent_count BIGINT, memory_percent_sum DOUBLE,
    memory_percent_count BIGINT, network_in_mb DOUBLE, network_out_mb DOUBLE,
    cpu_percent_max DOUBLE, memory_percent_max DOUBLE, disk_gb_max DOUBLE, date DATE);

CREATE OR REPLACE TABLE meter_empty.daily_activity (
    customer_id VARCHAR, vm_id VARCHAR, user_id VARCHAR, activity_type VARCHAR,
    pattern_name VARCHAR, count BIGINT, failures BIGINT, duration_seconds_sum DOUBLE,
    duration_seconds_count BIGINT, duration_seconds_max DOUBLE, date DATE);

-- Monthly tables: the daily columns with `month` (YYYY-MM) for `date`.
CREATE OR REPLACE TABLE meter_empty.monthly_api_usage AS
    SELECT * EXCLUDE (date), CAST(NULL AS VARCHAR) AS month FROM meter_empty.daily_api_usage;
CREATE OR REPLACE TABLE meter_empty.monthly_api_requests AS
    SELECT * EXCLUDE (date), CAST(NULL AS VARCHAR) AS month FROM meter_empty.daily_api_requests;
CREATE OR REPLACE TABLE meter_empty.monthly_resource_usage AS
    SELECT * EXCLUDE (date), CAST(NULL AS VARCHAR) AS month FROM meter_empty.daily_resource_usage;
CREATE OR REPLACE TABLE meter_empty.monthly_activity AS
    SELECT * EXCLUDE (date), CAST(NULL AS VARCHAR) AS month FROM meter_empty.daily_activity;

-- Raw events (`date` is the event's UTC date).
CREATE OR REPLACE VIEW api_usage AS FROM query(meter_lake_table('api_usage', 'api_usage', 'date'));
CREATE OR REPLACE VIEW api_requests AS FROM query(meter_lake_table('api_requests', 'api_requests', 'date'));
CREATE OR REPLACE VIEW resource_usage AS FROM query(meter_lake_table('resource_usage', 'resource_usage', 'date'));
CREATE OR REPLACE VIEW activity AS FROM query(meter_lake_table('activity', 'activity', 'date'));
-- Rejects files written before reason codes have no `detail` (read by
-- name, it is null there): their `reason` is the old text, shown as `detail`
-- under the reason `unclassified` (rejects.md).
CREATE OR REPLACE VIEW rejects AS
    SELECT * REPLACE (CASE WHEN detail IS NULL THEN 'unclassified' ELSE reason END AS reason,
                      coalesce(detail, reason) AS detail)
    FROM query(replace(meter_lake_table('rejects', 'rejects', 'date'),
                       'hive_partitioning = true', 'union_by_name = true, hive_partitioning = true'));

-- The rollup's tables (schemas/rollup.md). compute_hours is compute_seconds
-- / 3600 rounded to 6 places (half up), as a DECIMAL: DuckDB divides
-- decimals in DOUBLE, so it is computed in integers.
CREATE OR REPLACE MACRO meter_hours(seconds) AS
    CAST((seconds * 1000000 + 1800) // 3600 AS DECIMAL(38, 0)) * CAST(0.000001 AS DECIMAL(7, 6));
CREATE OR REPLACE VIEW priced_api_usage AS FROM query(meter_lake_table('priced/api_usage', 'priced_api_usage', 'date'));
CREATE OR REPLACE VIEW daily_api_usage AS FROM query(meter_lake_table('daily/api_usage', 'daily_api_usage', 'date'));
CREATE OR REPLACE VIEW daily_api_requests AS FROM query(meter_lake_table('daily/api_requests', 'daily_api_requests', 'date'));
CREATE OR REPLACE VIEW daily_resource_usage AS
    SELECT *, meter_hours(compute_seconds) AS compute_hours
    FROM query(meter_lake_table('daily/resource_usage', 'daily_resource_usage', 'date'));
CREATE OR REPLACE VIEW daily_activity AS FROM query(meter_lake_table('daily/activity', 'daily_activity', 'date'));
CREATE OR REPLACE VIEW monthly_api_usage AS FROM query(meter_lake_table('monthly/api_usage', 'monthly_api_usage', 'month'));
CREATE OR REPLACE VIEW monthly_api_requests AS FROM query(meter_lake_table('monthly/api_requests', 'monthly_api_requests', 'month'));
CREATE OR REPLACE VIEW monthly_resource_usage AS
    SELECT *, meter_hours(compute_seconds) AS compute_hours
    FROM query(meter_lake_table('monthly/resource_usage', 'monthly_resource_usage', 'month'));
CREATE OR REPLACE VIEW monthly_activity AS FROM query(meter_lake_table('monthly/activity', 'monthly_activity', 'month'));

-- Run reports (run_report.md): one row per <lake>/_runs/<run_id>.json. A
-- scheduled job writes its own report and one per stage (run ids
-- <job run id>-<stage>). `report` is the whole JSON.
SET VARIABLE meter_run_files = (
    SELECT coalesce('[' || string_agg(meter_literal(file), ', ' ORDER BY file) || ']', '')
    FROM glob(meter_lake() || '/_runs/*.json')
    WHERE NOT file LIKE '%.commit.json');
CREATE OR REPLACE TABLE meter_empty.run_files (filename VARCHAR, content VARCHAR);
CREATE OR REPLACE VIEW runs AS
SELECT report ->> 'run_id' AS run_id,
       report ->> 'job' AS job,
       CAST(report ->> 'started_at' AS TIMESTAMPTZ) AS started_at,
       CAST(report ->> 'finished_at' AS TIMESTAMPTZ) AS finished_at,
       -- month=YYYY-MM, date=YYYY-MM-DD or YYYY-MM, whichever the job has
       coalesce(report ->> 'period', report ->> 'month', report ->> 'date') AS period,
       coalesce(json_array_length(report -> 'attention'), 0) > 0 AS needs_attention,
       -- a report is written by a run that finished: 0 done, 1 needs attention
       CASE WHEN coalesce(json_array_length(report -> 'attention'), 0) > 0 THEN 1 ELSE 0 END AS exit_code,
       report ->> 'status' AS status,
       CAST(report ->> 'revision' AS BIGINT) AS revision,
       CAST(report -> 'attention' AS VARCHAR[]) AS attention,
       filename AS file,
       report
FROM (SELECT filename, CAST(content AS JSON) AS report
      FROM query(CASE WHEN getvariable('meter_run_files') <> ''
                      THEN 'FROM read_text(' || getvariable('meter_run_files') || ')'
                      ELSE 'FROM meter_empty.run_files' END));

-- Invoices: the lines (total rows aside) and summary rows of the revision
-- `<out>/invoices/<month>/latest.json` names, for every month. Amounts are
-- DECIMAL(38, 3), exact for every currency meter bills in (0 to 3 minor
-- digits); `quantity` stays text (a prorated fee is "12/31").
-- Which CSV files of a revision are invoices: `<customer_id>.csv`, but not
-- the summary, the diff or the corrections (the rule of
-- pipeline/bill/layout.rs; a test keeps this text equal to it).
CREATE OR REPLACE MACRO meter_is_invoice_file(name) AS
    regexp_full_match(name, '[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.csv')
    AND name NOT IN ('summary.csv', 'credits.csv', 'diff.csv', 'corrections.csv');
SET VARIABLE meter_latest_files = (
    SELECT coalesce('[' || string_agg(meter_literal(file), ', ' ORDER BY file) || ']', '')
    FROM glob(meter_out() || '/invoices/*/latest.json'));
CREATE OR REPLACE TABLE meter_empty.latest (month VARCHAR, revision BIGINT);
SET VARIABLE meter_invoice_files = (
    SELECT coalesce('[' || string_agg(meter_literal(f.file), ', ' ORDER BY f.file) || ']', '')
    FROM glob(meter_out() || '/invoices/*/rev-*/*.csv') f
    JOIN query(CASE WHEN getvariable('meter_latest_files') <> ''
                    THEN 'FROM read_json(' || getvariable('meter_latest_files')
                         || ', columns = {month: ''VARCHAR'', revision: ''BIGINT''})'
                    ELSE 'FROM meter_empty.latest' END) l
      ON f.file = meter_out() || '/invoices/' || l.month || '/rev-' || l.revision || '/' || parse_filename(f.file)
    WHERE meter_is_invoice_file(parse_filename(f.file)));
SET VARIABLE meter_summary_files = (
    SELECT coalesce('[' || string_agg(meter_literal(f.file), ', ' ORDER BY f.file) || ']', '')
    FROM glob(meter_out() || '/invoices/*/rev-*/summary.csv') f
    JOIN query(CASE WHEN getvariable('meter_latest_files') <> ''
                    THEN 'FROM read_json(' || getvariable('meter_latest_files')
                         || ', columns = {month: ''VARCHAR'', revision: ''BIGINT''})'
                    ELSE 'FROM meter_empty.latest' END) l
      ON f.file = meter_out() || '/invoices/' || l.month || '/rev-' || l.revision || '/summary.csv');
SET VARIABLE meter_credits_files = (
    SELECT coalesce('[' || string_agg(meter_literal(f.file), ', ' ORDER BY f.file) || ']', '')
    FROM glob(meter_out() || '/invoices/*/rev-*/credits.csv') f
    JOIN query(CASE WHEN getvariable('meter_latest_files') <> ''
                    THEN 'FROM read_json(' || getvariable('meter_latest_files')
                         || ', columns = {month: ''VARCHAR'', revision: ''BIGINT''})'
                    ELSE 'FROM meter_empty.latest' END) l
      ON f.file = meter_out() || '/invoices/' || l.month || '/rev-' || l.revision || '/credits.csv');

-- The CSV text of every invoice column (render.rs INVOICE_HEADER).
CREATE OR REPLACE TABLE meter_empty.invoice_csv (
    invoice_number VARCHAR, customer_id VARCHAR, customer_name VARCHAR, period_start VARCHAR,
    period_end VARCHAR, line VARCHAR, line_type VARCHAR, provider VARCHAR, model VARCHAR,
    description VARCHAR, quantity VARCHAR, unit VARCHAR, unit_price VARCHAR, requests VARCHAR,
    input_tokens VARCHAR, cache_read_tokens VARCHAR, cache_write_tokens VARCHAR,
    output_tokens VARCHAR, reasoning_tokens VARCHAR, provider_cost VARCHAR,
    cost_currency VARCHAR, fx_rate VARCHAR, rule VARCHAR, amount VARCHAR, currency VARCHAR,
    filename VARCHAR);
CREATE OR REPLACE VIEW invoices AS
SELECT regexp_extract(filename, '/invoices/([^/]+)/rev-[0-9]+/[^/]*$', 1) AS month,
       CAST(regexp_extract(filename, '/rev-([0-9]+)/[^/]*$', 1) AS BIGINT) AS revision,
       invoice_number, customer_id, customer_name,
       CAST(period_start AS DATE) AS period_start,
       CAST(period_end AS DATE) AS period_end,
       CAST(line AS BIGINT) AS line,
       line_type, nullif(provider, '') AS provider, nullif(model, '') AS model, description,
       quantity, unit,
       CAST(nullif(unit_price, '') AS DECIMAL(38, 18)) AS unit_price,
       CAST(nullif(requests, '') AS BIGINT) AS requests,
       CAST(nullif(input_tokens, '') AS BIGINT) AS input_tokens,
       CAST(nullif(cache_read_tokens, '') AS BIGINT) AS cache_read_tokens,
       CAST(nullif(cache_write_tokens, '') AS BIGINT) AS cache_write_tokens,
       CAST(nullif(output_tokens, '') AS BIGINT) AS output_tokens,
       CAST(nullif(reasoning_tokens, '') AS BIGINT) AS reasoning_tokens,
       CAST(nullif(provider_cost, '') AS DECIMAL(38, 18)) AS provider_cost,
       nullif(cost_currency, '') AS cost_currency,
       CAST(nullif(fx_rate, '') AS DECIMAL(38, 8)) AS fx_rate,
       rule,
       CAST(amount AS DECIMAL(38, 3)) AS amount,
       currency
FROM query(CASE WHEN getvariable('meter_invoice_files') <> ''
                THEN 'FROM meter_empty.invoice_csv UNION ALL BY NAME FROM read_csv('
                     || getvariable('meter_invoice_files')
                     || ', header = true, all_varchar = true, filename = true)'
                ELSE 'FROM meter_empty.invoice_csv' END)
WHERE line_type <> 'total';

-- summary.csv (render.rs SUMMARY_HEADER), one row per invoiced customer.
CREATE OR REPLACE TABLE meter_empty.summary_csv (
    month VARCHAR, revision VARCHAR, invoice_number VARCHAR, customer_id VARCHAR,
    customer_name VARCHAR, currency VARCHAR, plan VARCHAR, rule VARCHAR, tokens VARCHAR,
    included_tokens VARCHAR, active_days VARCHAR, days VARCHAR, fee VARCHAR, api_usage VARCHAR,
    compute VARCHAR, discounts VARCHAR, commitment VARCHAR, credit VARCHAR, total VARCHAR, provider_cost VARCHAR, provider_currency VARCHAR,
    fx_rate VARCHAR, provider_cost_converted VARCHAR, margin VARCHAR,
    unpriced_requests VARCHAR, unpriced_tokens VARCHAR, monthly_limit VARCHAR,
    over_limit VARCHAR, limit_exceeded VARCHAR, stripe_customer_id VARCHAR, note VARCHAR);
CREATE OR REPLACE VIEW invoice_summary AS
SELECT month, CAST(revision AS BIGINT) AS revision, invoice_number, customer_id, customer_name,
       currency, plan, rule,
       CAST(tokens AS BIGINT) AS tokens,
       CAST(included_tokens AS BIGINT) AS included_tokens,
       CAST(active_days AS BIGINT) AS active_days,
       CAST(days AS BIGINT) AS days,
       CAST(fee AS DECIMAL(38, 3)) AS fee,
       CAST(api_usage AS DECIMAL(38, 3)) AS api_usage,
       CAST(compute AS DECIMAL(38, 3)) AS compute,
       -- summaries written before contracts have no such columns: 0
       CAST(coalesce(discounts, '0') AS DECIMAL(38, 3)) AS discounts,
       CAST(coalesce(commitment, '0') AS DECIMAL(38, 3)) AS commitment,
       CAST(coalesce(credit, '0') AS DECIMAL(38, 3)) AS credit,
       CAST(total AS DECIMAL(38, 3)) AS total,
       CAST(provider_cost AS DECIMAL(38, 18)) AS provider_cost,
       provider_currency,
       CAST(fx_rate AS DECIMAL(38, 8)) AS fx_rate,
       CAST(provider_cost_converted AS DECIMAL(38, 3)) AS provider_cost_converted,
       CAST(margin AS DECIMAL(38, 3)) AS margin,
       CAST(unpriced_requests AS BIGINT) AS unpriced_requests,
       CAST(unpriced_tokens AS BIGINT) AS unpriced_tokens,
       CAST(nullif(monthly_limit, '') AS DECIMAL(38, 4)) AS monthly_limit,
       CAST(over_limit AS DECIMAL(38, 3)) AS over_limit,
       CAST(limit_exceeded AS BOOLEAN) AS limit_exceeded,
       nullif(stripe_customer_id, '') AS stripe_customer_id,
       nullif(note, '') AS note
FROM query(CASE WHEN getvariable('meter_summary_files') <> ''
                THEN 'FROM meter_empty.summary_csv UNION ALL BY NAME FROM read_csv('
                     || getvariable('meter_summary_files')
                     || ', header = true, all_varchar = true)'
                ELSE 'FROM meter_empty.summary_csv' END);

-- credits.csv (render.rs CREDITS_HEADER, schemas/contracts.md), one row per
-- prepaid credit grant of the latest revision of every billed month:
-- balances in the grant's currency, `applied_invoice_amount` in the
-- invoice's.
CREATE OR REPLACE TABLE meter_empty.credits_csv (
    month VARCHAR, revision VARCHAR, customer_id VARCHAR, grant_id VARCHAR, burn_order VARCHAR,
    currency VARCHAR, amount VARCHAR, granted VARCHAR, expires VARCHAR, priority VARCHAR,
    opening VARCHAR, opening_from VARCHAR, applied VARCHAR, expired VARCHAR, closing VARCHAR,
    status VARCHAR, fx_rate VARCHAR, applied_invoice_amount VARCHAR, invoice_currency VARCHAR);
CREATE OR REPLACE VIEW credit_balances AS
SELECT month, CAST(revision AS BIGINT) AS revision, customer_id, grant_id,
       CAST(burn_order AS BIGINT) AS burn_order, currency,
       CAST(amount AS DECIMAL(38, 6)) AS amount,
       CAST(granted AS DATE) AS granted,
       CAST(nullif(expires, '') AS DATE) AS expires,
       CAST(priority AS BIGINT) AS priority,
       CAST(opening AS DECIMAL(38, 3)) AS opening,
       opening_from,
       CAST(applied AS DECIMAL(38, 3)) AS applied,
       CAST(expired AS DECIMAL(38, 3)) AS expired,
       CAST(closing AS DECIMAL(38, 3)) AS closing,
       status,
       CAST(fx_rate AS DECIMAL(38, 8)) AS fx_rate,
       CAST(applied_invoice_amount AS DECIMAL(38, 3)) AS applied_invoice_amount,
       invoice_currency
FROM query(CASE WHEN getvariable('meter_credits_files') <> ''
                THEN 'FROM meter_empty.credits_csv UNION ALL BY NAME FROM read_csv('
                     || getvariable('meter_credits_files')
                     || ', header = true, all_varchar = true)'
                ELSE 'FROM meter_empty.credits_csv' END);

-- Credit and debit notes (pipeline/bill/notes.rs), of every revision (a
-- note corrects an invoice Stripe holds, so earlier revisions' notes stay
-- history): one row per changed line and one `total` row per note.
CREATE OR REPLACE TABLE meter_empty.notes_csv (
    note_number VARCHAR, kind VARCHAR, original_invoice VARCHAR, against_revision VARCHAR,
    revision VARCHAR, customer_id VARCHAR, customer_name VARCHAR, line_type VARCHAR,
    provider VARCHAR, model VARCHAR, description VARCHAR, previous_amount VARCHAR,
    amount VARCHAR, difference VARCHAR, currency VARCHAR, stripe_route VARCHAR);
SET VARIABLE meter_note_files = (
    SELECT coalesce('[' || string_agg(meter_literal(file), ', ' ORDER BY file) || ']', '')
    FROM glob(meter_out() || '/invoices/*/rev-*/notes/*.csv'));
CREATE OR REPLACE VIEW notes AS
SELECT substr(note_number, 4, 4) || '-' || substr(note_number, 8, 2) AS month,
       note_number, kind, original_invoice,
       CAST(against_revision AS BIGINT) AS against_revision,
       CAST(revision AS BIGINT) AS revision,
       customer_id, customer_name, line_type, nullif(provider, '') AS provider,
       nullif(model, '') AS model, description,
       CAST(nullif(previous_amount, '') AS DECIMAL(38, 3)) AS previous_amount,
       CAST(nullif(amount, '') AS DECIMAL(38, 3)) AS amount,
       CAST(difference AS DECIMAL(38, 3)) AS difference,
       currency, stripe_route
FROM query(CASE WHEN getvariable('meter_note_files') <> ''
                THEN 'FROM meter_empty.notes_csv UNION ALL BY NAME FROM read_csv('
                     || getvariable('meter_note_files')
                     || ', header = true, all_varchar = true)'
                ELSE 'FROM meter_empty.notes_csv' END);

-- Contracts (schemas/contracts.md): the lake's copy of contracts.toml, as
-- billing reads it (the sound entries; a refused customer has none).
-- `meter query` fills these tables; the DuckDB CLI cannot read TOML, so
-- there they stay empty.
CREATE OR REPLACE TABLE contract_terms (
    customer_id VARCHAR, valid_from DATE, commitment DECIMAL(18, 6), tier_measure VARCHAR,
    tier_mode VARCHAR, line BIGINT);
CREATE OR REPLACE TABLE contract_tiers (
    customer_id VARCHAR, valid_from DATE, tier BIGINT, tier_from DECIMAL(18, 6),
    factor DECIMAL(18, 6));
CREATE OR REPLACE TABLE contract_discounts (
    customer_id VARCHAR, percent DECIMAL(18, 6), amount DECIMAL(18, 6), applies_to VARCHAR,
    valid_from DATE, valid_until DATE, line BIGINT);
CREATE OR REPLACE TABLE contract_grants (
    customer_id VARCHAR, grant_id VARCHAR, burn_order BIGINT, amount DECIMAL(18, 6),
    currency VARCHAR, granted DATE, expires DATE, priority BIGINT, line BIGINT);
