-- Reconciliation (`meter reconcile --month M`): the month's totals computed
-- independently at every stage, from the raw events up to the invoices, with
-- plain SQL. meter creates one view per stage over the month's files
-- (raw_api_usage, priced_api_usage, daily_api_usage, monthly_api_usage,
-- raw_activity, daily_activity, monthly_activity, daily_resource_usage,
-- monthly_resource_usage) and a table `invoiced(customer_id, provider_cost)`
-- from the latest revision's summary.csv, then runs this file.
--
-- Each stage's totals per customer and measure go into `stage_totals`;
-- `differences` pairs each stage with the one it was built from. Every
-- measure here is an integer or an exact DECIMAL, so equal means equal: any
-- difference is a mismatch (rounding happens only on invoice lines, which
-- are checked against their own totals separately).

CREATE TABLE stage_totals AS
WITH api AS (
    SELECT 'raw' AS stage, coalesce(customer_id, '') AS customer_id,
           count(*) AS requests, sum(input_tokens) AS input_tokens,
           sum(cache_read_tokens) AS cache_read_tokens, sum(cache_write_tokens) AS cache_write_tokens,
           sum(output_tokens) AS output_tokens, CAST(NULL AS DECIMAL(38, 18)) AS cost
    FROM raw_api_usage GROUP BY ALL
    UNION ALL
    SELECT 'priced', coalesce(customer_id, ''), count(*), sum(input_tokens), sum(cache_read_tokens),
           sum(cache_write_tokens), sum(output_tokens), sum(cost)
    FROM priced_api_usage GROUP BY ALL
    UNION ALL
    SELECT 'daily', coalesce(customer_id, ''), sum(requests), sum(input_tokens), sum(cache_read_tokens),
           sum(cache_write_tokens), sum(output_tokens), sum(cost)
    FROM daily_api_usage GROUP BY ALL
    UNION ALL
    SELECT 'monthly', coalesce(customer_id, ''), sum(requests), sum(input_tokens), sum(cache_read_tokens),
           sum(cache_write_tokens), sum(output_tokens), sum(cost)
    FROM monthly_api_usage GROUP BY ALL
), activity AS (
    SELECT 'raw' AS stage, coalesce(customer_id, '') AS customer_id, count(*) AS commands
    FROM raw_activity GROUP BY ALL
    UNION ALL
    SELECT 'daily', coalesce(customer_id, ''), sum(count) FROM daily_activity GROUP BY ALL
    UNION ALL
    SELECT 'monthly', coalesce(customer_id, ''), sum(count) FROM monthly_activity GROUP BY ALL
), compute AS (
    SELECT 'daily' AS stage, coalesce(customer_id, '') AS customer_id, sum(compute_seconds) AS compute_seconds
    FROM daily_resource_usage GROUP BY ALL
    UNION ALL
    SELECT 'monthly', coalesce(customer_id, ''), sum(compute_seconds)
    FROM monthly_resource_usage GROUP BY ALL
)
SELECT stage, customer_id, measure, CAST(value AS DECIMAL(38, 18)) AS value
FROM (
    SELECT stage, customer_id, 'requests' AS measure, requests AS value FROM api
    UNION ALL SELECT stage, customer_id, 'input_tokens', input_tokens FROM api
    UNION ALL SELECT stage, customer_id, 'cache_read_tokens', cache_read_tokens FROM api
    UNION ALL SELECT stage, customer_id, 'cache_write_tokens', cache_write_tokens FROM api
    UNION ALL SELECT stage, customer_id, 'output_tokens', output_tokens FROM api
    UNION ALL SELECT stage, customer_id, 'cost', cost FROM api WHERE stage <> 'raw'
    UNION ALL SELECT stage, customer_id, 'activity', commands FROM activity
    UNION ALL SELECT stage, customer_id, 'compute_seconds', compute_seconds FROM compute
    UNION ALL SELECT 'invoice', customer_id, 'cost', provider_cost FROM invoiced
);

-- Each stage against its source: priced <- raw, daily <- priced (or raw for
-- activity and compute), monthly <- daily, invoice <- monthly (cost of the
-- customers invoiced). A missing side counts as 0.
CREATE TABLE differences AS
WITH pairs(stage, source) AS (
    VALUES ('priced', 'raw'), ('daily', 'priced'), ('daily', 'raw'), ('monthly', 'daily'),
           ('invoice', 'monthly')
), measures AS (
    SELECT DISTINCT stage, measure FROM stage_totals
), keys AS (
    -- customers either side has; for invoices, the customers invoiced
    SELECT DISTINCT p.source, p.stage, t.customer_id, t.measure
    FROM pairs p
    JOIN stage_totals t ON t.stage = p.stage OR (t.stage = p.source AND p.stage <> 'invoice')
    -- the measure exists at both stages
    WHERE EXISTS (SELECT 1 FROM measures m WHERE m.stage = p.source AND m.measure = t.measure)
      AND EXISTS (SELECT 1 FROM measures m WHERE m.stage = p.stage AND m.measure = t.measure)
      -- daily api_usage is built from priced events; activity and compute from raw
      AND NOT (p.stage = 'daily' AND p.source = 'raw'
               AND t.measure IN ('requests', 'input_tokens', 'cache_read_tokens',
                                 'cache_write_tokens', 'output_tokens', 'cost'))
)
SELECT k.source, k.stage, k.customer_id, k.measure,
       coalesce(s.value, 0) AS source_value,
       coalesce(t.value, 0) AS stage_value,
       coalesce(t.value, 0) - coalesce(s.value, 0) AS difference
FROM keys k
LEFT JOIN stage_totals t ON t.stage = k.stage AND t.customer_id = k.customer_id AND t.measure = k.measure
LEFT JOIN stage_totals s ON s.stage = k.source AND s.customer_id = k.customer_id AND s.measure = k.measure
ORDER BY k.measure, k.customer_id, k.source, k.stage;
