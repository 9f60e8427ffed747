-- Stripe billing meter events: one per customer, meter and day with a
-- non-zero value (inputs: inputs.sql, then invoice.sql). Values are whole
-- numbers in the meter's unit: tokens, requests, commands; compute minutes
-- are each day's compute seconds / 60 and provider_cost the day's provider
-- cost in minor units of the customer's currency, each rounded half away from
-- zero. The timestamp is noon UTC of the day;
-- the identifier (Stripe's idempotency key, <= 100 characters) is derived
-- from customer, meter and day only: the nightly push and every revision of
-- the month name the same day's reading alike, so it is sent once; a
-- revision that changes a reading sends a delta under `<identifier>-rN`
-- (`meter stripe push`).
--
-- A customer with a contract (terms, a discount or prepaid credit) is
-- priced by meter alone: a Stripe metered price would price its usage
-- again, so its readings are not events; `contract_readings` counts them
-- for the run report.
CREATE OR REPLACE TABLE meter_readings AS
WITH daily AS (
    SELECT date, customer_id, 'tokens' AS measures,
           sum(input_tokens + cache_read_tokens + cache_write_tokens + output_tokens) AS value
    FROM usage_daily GROUP BY ALL
    UNION ALL
    SELECT date, customer_id, 'input_tokens', sum(input_tokens + cache_read_tokens + cache_write_tokens)
    FROM usage_daily GROUP BY ALL
    UNION ALL
    SELECT date, customer_id, 'output_tokens', sum(output_tokens)
    FROM usage_daily GROUP BY ALL
    UNION ALL
    SELECT date, customer_id, 'requests', sum(requests)
    FROM usage_daily GROUP BY ALL
    UNION ALL
    -- the day's provider cost, converted and rounded once to minor units
    SELECT u.date, u.customer_id, 'provider_cost',
           round_div(CAST(sum(u.cost) AS DECIMAL(38, 12)) * any_value(c.cost_fx) * any_value(c.minor_per_unit), 1)
    FROM usage_daily u JOIN billed_customers c USING (customer_id)
    WHERE u.cost IS NOT NULL
    GROUP BY u.date, u.customer_id
    UNION ALL
    SELECT date, customer_id, 'compute_minutes', round_div(sum(compute_seconds), 60)
    FROM compute_daily GROUP BY ALL
    UNION ALL
    SELECT date, customer_id, 'commands', sum(count)
    FROM activity_daily WHERE activity_type = 'command' GROUP BY ALL
), keyed AS (
    SELECT d.date, d.customer_id, m.event_name, CAST(d.value AS BIGINT) AS value,
           c.stripe_customer_id,
           d.customer_id || '-' || m.event_name || '-' || strftime(d.date, '%Y%m%d') AS readable_identifier
    FROM daily d
    JOIN meters m ON m.measures = d.measures
    JOIN billed_customers c ON c.customer_id = d.customer_id
    CROSS JOIN billing_period p
    WHERE d.value > 0 AND d.date >= p.period_start AND d.date < p.period_end
)
SELECT date,
       customer_id,
       event_name,
       value,
       stripe_customer_id,
       CASE WHEN length(readable_identifier) <= 100 THEN readable_identifier
            ELSE 'mtr-' || sha256(readable_identifier) END AS identifier,
       epoch_ms(date) // 1000 + 43200 AS timestamp,
       customer_id IN (SELECT customer_id FROM contract_parts
                       UNION SELECT customer_id FROM credit_grants) AS contract
FROM keyed;

CREATE OR REPLACE TABLE meter_events AS
SELECT * EXCLUDE (contract) FROM meter_readings WHERE NOT contract;

CREATE OR REPLACE TABLE contract_readings AS
SELECT customer_id, count(*) AS readings
FROM meter_readings WHERE contract
GROUP BY customer_id;
