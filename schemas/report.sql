-- The month at a glance (`meter report --month M`): the figures the report
-- reads from the lake, in plain SQL. meter creates three views over the
-- lake's files, then runs this file:
--
--   cur_usage     daily/api_usage of the report's days: every day of M when
--                 M is over, else the complete days (before the as-of date)
--   prev_usage    daily/api_usage of the previous month's comparison days:
--                 all of them when M is over, else as many as M has complete
--                 (like for like)
--   cur_priced    priced/api_usage of the report's days (for the reasons of
--                 unpriced usage; retention may have removed old ones)
--
-- Each view has the daily table's columns plus `date` (DATE). A view whose
-- files are missing is an empty table with the same columns.
--
-- Every measure is an integer or an exact DECIMAL(38, 18): the sums over
-- daily rows equal the monthly aggregates to the last digit (rollup.md), so
-- these figures are the month's, or the month's so far. Nothing here rounds
-- or divides; the projection, changes, FX conversion and margins are computed
-- by meter in exact decimals (pipeline/read/overview/figures.rs) and rounded once,
-- for display. `tokens` is billing's measure: input + cache read + cache
-- write + output tokens (reasoning tokens are part of output).

-- Per customer ('' for a VM no customer lists).
CREATE TABLE report_customers AS
SELECT coalesce(customer_id, '') AS customer_id,
       CAST(sum(requests) AS BIGINT) AS requests,
       CAST(sum(input_tokens + cache_read_tokens + cache_write_tokens + output_tokens) AS BIGINT) AS tokens,
       coalesce(sum(cost), CAST(0 AS DECIMAL(38, 18))) AS cost,
       CAST(sum(unpriced_requests) AS BIGINT) AS unpriced_requests
FROM cur_usage
GROUP BY ALL;

-- Per provider and model ('' when the lake has none).
CREATE TABLE report_models AS
SELECT coalesce(provider, '') AS provider,
       coalesce(model, '') AS model,
       CAST(sum(requests) AS BIGINT) AS requests,
       CAST(sum(input_tokens + cache_read_tokens + cache_write_tokens + output_tokens) AS BIGINT) AS tokens,
       coalesce(sum(cost), CAST(0 AS DECIMAL(38, 18))) AS cost,
       CAST(sum(unpriced_requests) AS BIGINT) AS unpriced_requests
FROM cur_usage
GROUP BY ALL;

-- Per day of the report: the daily cost chart and the projection.
CREATE TABLE report_days AS
SELECT date,
       CAST(sum(requests) AS BIGINT) AS requests,
       coalesce(sum(cost), CAST(0 AS DECIMAL(38, 18))) AS cost
FROM cur_usage
GROUP BY ALL;

-- The previous month's comparison days, per customer and per model: the
-- movers.
CREATE TABLE report_prev_customers AS
SELECT coalesce(customer_id, '') AS customer_id,
       coalesce(sum(cost), CAST(0 AS DECIMAL(38, 18))) AS cost
FROM prev_usage
GROUP BY ALL;

CREATE TABLE report_prev_models AS
SELECT coalesce(provider, '') AS provider,
       coalesce(model, '') AS model,
       coalesce(sum(cost), CAST(0 AS DECIMAL(38, 18))) AS cost
FROM prev_usage
GROUP BY ALL;

-- Usage without a price, per model and reason. The counts come from the
-- daily aggregates (unpriced_requests, unpriced_tokens: the exact figures);
-- the reasons from the priced events. Requests whose priced events are gone
-- (retention) are reported under reason NULL.
CREATE TABLE report_unpriced AS
WITH daily AS (
    SELECT coalesce(provider, '') AS provider, coalesce(model, '') AS model,
           sum(unpriced_requests) AS requests, sum(unpriced_tokens) AS tokens
    FROM cur_usage
    GROUP BY ALL
    HAVING sum(unpriced_requests) > 0
), reasons AS (
    SELECT coalesce(provider, '') AS provider, coalesce(model, '') AS model,
           unpriced_reason AS reason,
           count(*) AS requests,
           sum(input_tokens + cache_read_tokens + cache_write_tokens + output_tokens) AS tokens
    FROM cur_priced
    WHERE NOT priced
    GROUP BY ALL
), explained AS (
    SELECT provider, model, sum(requests) AS requests, sum(tokens) AS tokens
    FROM reasons
    GROUP BY ALL
)
SELECT r.provider, r.model, r.reason,
       CAST(r.requests AS BIGINT) AS requests, CAST(r.tokens AS BIGINT) AS tokens
FROM reasons r
JOIN daily d USING (provider, model)
UNION ALL
SELECT d.provider, d.model, NULL,
       CAST(d.requests - coalesce(e.requests, 0) AS BIGINT),
       CAST(d.tokens - coalesce(e.tokens, 0) AS BIGINT)
FROM daily d
LEFT JOIN explained e USING (provider, model)
WHERE d.requests > coalesce(e.requests, 0);
