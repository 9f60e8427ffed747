-- Questions analysts ask, answered with `meter query` (schemas/views.sql).
-- README shows these blocks; tests/query.rs runs each one on the sample data,
-- so the SQL here always works. Each block starts with `-- name: <name>`.

-- name: top_models_by_cost_last_month
-- The ten models that cost the most in the latest month rolled up (provider
-- cost, exact; unpriced calls are counted apart).
SELECT month, provider, model,
       sum(requests) AS requests,
       sum(input_tokens + cache_read_tokens + cache_write_tokens + output_tokens) AS tokens,
       sum(cost) AS cost,
       sum(unpriced_requests) AS unpriced_requests
FROM monthly_api_usage
WHERE month = (SELECT max(month) FROM monthly_api_usage)
GROUP BY ALL
ORDER BY cost DESC NULLS LAST, provider, model
LIMIT 10;

-- name: customer_daily_spend
-- One customer's provider cost per day (UTC), with requests and tokens.
SELECT date, count(DISTINCT vm_id) AS vms,
       sum(requests) AS requests,
       sum(input_tokens + cache_read_tokens + cache_write_tokens + output_tokens) AS tokens,
       sum(cost) AS cost
FROM daily_api_usage
WHERE customer_id = 'cust_0001'
GROUP BY date
ORDER BY date;

-- name: rejects_by_reason
-- Why lines were rejected, per table and reason code, with how many files
-- they came from and one example of the details.
SELECT target_table, reason, count(*) AS rejects,
       count(DISTINCT source_file) AS files,
       min(date) AS first_date, max(date) AS last_date,
       min(coalesce(field || ': ', '') || detail) AS example
FROM rejects
GROUP BY target_table, reason
ORDER BY rejects DESC, target_table, reason;
