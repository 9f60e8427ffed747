-- Invoice lines: one invoice per customer and month (inputs: inputs.sql).
--
-- Rounding, the one rule: each line's amount is computed exactly, then
-- rounded once to the invoice currency's minor unit, half away from zero
-- (0.005 EUR -> 0.01 EUR), by `round_div` below. An invoice's total is the
-- sum of its rounded lines, never a rounding of a sum. Amounts are net of tax:
-- tax belongs to the invoicing system.
--
-- DuckDB pitfalls kept out: DECIMAL / DECIMAL and avg(DECIMAL) return DOUBLE,
-- so nothing here divides a decimal; proration and hours divide integers
-- inside round_div, which compares remainders exactly.

-- x / d rounded to a whole number, half away from zero, exactly: x is a
-- DECIMAL or integer, d a positive integer.
-- A decimal as text without trailing zeros: 1.300000 -> '1.3'.
CREATE OR REPLACE MACRO decimal_text(x) AS
    CASE WHEN contains(CAST(x AS VARCHAR), '.')
         THEN rtrim(rtrim(CAST(x AS VARCHAR), '0'), '.')
         ELSE CAST(x AS VARCHAR) END;

-- x / d rounded to a whole number, half away from zero, exactly: x is a
-- DECIMAL or integer, d a positive integer.
CREATE OR REPLACE MACRO round_div(x, d) AS
    sign(x) * (CAST(floor(abs(x)) AS HUGEINT) // d
        + CASE WHEN 2 * ((CAST(floor(abs(x)) AS HUGEINT) % d) + (abs(x) - floor(abs(x)))) >= d
               THEN 1 ELSE 0 END);

-- Every customer to invoice: active at least one day of the month, or with
-- usage in it. The pricing rule for API usage is decided here, per customer:
--   reseller  the customer has a markup: every API line bills cost x markup;
--   included  tokens of all kinds <= the plan's allowance: API lines bill 0;
--   overage   above the allowance: every API line bills cost x overage_factor.
CREATE OR REPLACE TABLE billed_customers AS
WITH tokens AS (
    SELECT customer_id,
           sum(input_tokens + cache_read_tokens + cache_write_tokens + output_tokens) AS tokens
    FROM usage_monthly
    WHERE customer_id IS NOT NULL
    GROUP BY customer_id
), spans AS (
    SELECT c.*,
           greatest(p.period_start, CAST(c.created_at AS DATE)) AS active_from,
           -- cancelled_at is exclusive: a cancellation at midnight ends the day before
           least(p.period_end,
                 coalesce(CAST(c.cancelled_at - INTERVAL 1 MICROSECOND AS DATE) + 1, p.period_end))
               AS active_until
    FROM customers c, billing_period p
)
SELECT s.customer_id,
       s.name,
       s.currency,
       cur.decimals,
       cur.minor_per_unit,
       s.stripe_customer_id,
       CAST(s.monthly_limit AS DECIMAL(38, 4)) AS monthly_limit,
       s.plan,
       -- widened to DECIMAL(38, s) so products are computed in 128 bits:
       -- DECIMAL(18, s) x DECIMAL(18, s) overflows 64-bit arithmetic
       CAST(pl.monthly_fee AS DECIMAL(38, 6)) AS monthly_fee,
       pl.currency AS plan_currency,
       pl.included_tokens,
       CAST(pl.compute_hour_rate AS DECIMAL(38, 6)) AS compute_hour_rate,
       CAST(fx_plan.rate AS DECIMAL(38, 8)) AS plan_fx,
       CAST(fx_cost.rate AS DECIMAL(38, 8)) AS cost_fx,
       s.active_from,
       s.active_until,
       greatest(datediff('day', s.active_from, s.active_until), 0) AS active_days,
       p.days,
       coalesce(t.tokens, 0) AS tokens,
       CASE WHEN s.markup IS NOT NULL THEN 'reseller'
            WHEN coalesce(t.tokens, 0) <= pl.included_tokens THEN 'included'
            ELSE 'overage' END AS rule,
       CAST(CASE WHEN s.markup IS NOT NULL THEN s.markup
                 WHEN coalesce(t.tokens, 0) <= pl.included_tokens THEN 0
                 ELSE pl.overage_factor END AS DECIMAL(18, 6)) AS api_factor,
       'INV-' || strftime(p.period_start, '%Y%m') || '-' || s.customer_id || '-R' || p.revision
           AS invoice_number
FROM spans s
CROSS JOIN billing_period p
JOIN plans pl ON pl.plan = s.plan
JOIN currencies cur ON cur.currency = s.currency
JOIN fx_rates fx_plan ON fx_plan.from_currency = pl.currency AND fx_plan.to_currency = s.currency
JOIN fx_rates fx_cost ON fx_cost.from_currency = p.provider_currency AND fx_cost.to_currency = s.currency
LEFT JOIN tokens t ON t.customer_id = s.customer_id
WHERE datediff('day', s.active_from, s.active_until) > 0 OR t.customer_id IS NOT NULL;

-- API usage of billed customers per provider and model: the totals of all
-- their events (the allowance counts unpriced tokens too) and, by kind, the
-- tokens of the unpriced ones. The API line carries the difference, the
-- unpriced line the unpriced tokens: each exactly its own events.
CREATE OR REPLACE TABLE api_usage_lines AS
WITH usage AS (
    SELECT customer_id, provider, model,
           sum(requests) AS requests,
           sum(input_tokens) AS input_tokens,
           sum(cache_read_tokens) AS cache_read_tokens,
           sum(cache_write_tokens) AS cache_write_tokens,
           sum(output_tokens) AS output_tokens,
           sum(reasoning_tokens) AS reasoning_tokens,
           sum(input_tokens + cache_read_tokens + cache_write_tokens + output_tokens) AS tokens,
           coalesce(sum(cost), CAST(0 AS DECIMAL(38, 18))) AS cost,
           sum(unpriced_requests) AS unpriced_requests,
           sum(unpriced_tokens) AS unpriced_tokens
    FROM usage_monthly
    WHERE customer_id IN (SELECT customer_id FROM billed_customers)
    GROUP BY customer_id, provider, model
), unpriced AS (
    SELECT customer_id, provider, model,
           sum(input_tokens) AS input_tokens,
           sum(cache_read_tokens) AS cache_read_tokens,
           sum(cache_write_tokens) AS cache_write_tokens,
           sum(output_tokens) AS output_tokens,
           sum(reasoning_tokens) AS reasoning_tokens
    FROM usage_unpriced_monthly
    GROUP BY customer_id, provider, model
)
SELECT u.*,
       CAST(coalesce(x.input_tokens, 0) AS HUGEINT) AS unpriced_input_tokens,
       CAST(coalesce(x.cache_read_tokens, 0) AS HUGEINT) AS unpriced_cache_read_tokens,
       CAST(coalesce(x.cache_write_tokens, 0) AS HUGEINT) AS unpriced_cache_write_tokens,
       CAST(coalesce(x.output_tokens, 0) AS HUGEINT) AS unpriced_output_tokens,
       CAST(coalesce(x.reasoning_tokens, 0) AS HUGEINT) AS unpriced_reasoning_tokens
FROM usage u
LEFT JOIN unpriced x
       ON x.customer_id = u.customer_id
      AND x.provider IS NOT DISTINCT FROM u.provider
      AND x.model IS NOT DISTINCT FROM u.model;

CREATE OR REPLACE TABLE invoice_lines AS
WITH lines AS (
    -- 1. The plan's fee, prorated by active days.
    SELECT c.customer_id,
           1 AS kind,
           'subscription' AS line_type,
           CAST(NULL AS VARCHAR) AS provider,
           CAST(NULL AS VARCHAR) AS model,
           CASE WHEN c.active_days = c.days
                THEN upper(c.plan[1]) || c.plan[2:] || ' plan, monthly fee'
                ELSE upper(c.plan[1]) || c.plan[2:] || ' plan, monthly fee prorated: active '
                     || strftime(c.active_from, '%Y-%m-%d') || ' to '
                     || strftime(CAST(c.active_until - INTERVAL 1 DAY AS DATE), '%Y-%m-%d') || ', '
                     || c.active_days || ' of ' || c.days || ' days'
           END AS description,
           CASE WHEN c.active_days = c.days THEN '1' ELSE c.active_days || '/' || c.days END AS quantity,
           'month' AS unit,
           c.monthly_fee * c.plan_fx AS unit_price,
           CAST(NULL AS BIGINT) AS requests,
           CAST(NULL AS BIGINT) AS input_tokens,
           CAST(NULL AS BIGINT) AS cache_read_tokens,
           CAST(NULL AS BIGINT) AS cache_write_tokens,
           CAST(NULL AS BIGINT) AS output_tokens,
           CAST(NULL AS BIGINT) AS reasoning_tokens,
           CAST(c.monthly_fee AS DECIMAL(38, 18)) AS cost, -- the union takes this branch's type: keep API costs exact
           c.plan_currency AS cost_currency,
           c.plan_fx AS fx_rate,
           CASE WHEN c.active_days = c.days THEN 'fee' ELSE 'fee prorated by active days' END AS rule,
           round_div(c.monthly_fee * c.plan_fx * c.minor_per_unit * c.active_days, c.days) AS amount_minor
    FROM billed_customers c
    UNION ALL
    -- 2. API usage per provider and model, by the customer's rule.
    SELECT u.customer_id, 2, 'api_usage', u.provider, u.model,
           coalesce(u.provider, '?') || ' ' || coalesce(u.model, '?') || ': '
               || (u.requests - u.unpriced_requests) || ' requests'
               || CASE WHEN u.unpriced_requests > 0
                       THEN ' (' || u.unpriced_requests || ' more without a price: see the unpriced line)'
                       ELSE '' END,
           CAST(u.tokens - u.unpriced_tokens AS VARCHAR),
           'token',
           NULL,
           u.requests - u.unpriced_requests,
           u.input_tokens - u.unpriced_input_tokens,
           u.cache_read_tokens - u.unpriced_cache_read_tokens,
           u.cache_write_tokens - u.unpriced_cache_write_tokens,
           u.output_tokens - u.unpriced_output_tokens,
           u.reasoning_tokens - u.unpriced_reasoning_tokens,
           u.cost,
           p.provider_currency,
           c.cost_fx,
           CASE c.rule
               WHEN 'reseller' THEN 'reseller: cost x ' || decimal_text(c.api_factor)
               WHEN 'included' THEN 'included: ' || c.tokens || ' tokens <= allowance ' || c.included_tokens
               ELSE 'overage: ' || c.tokens || ' tokens > allowance ' || c.included_tokens
                    || ', cost x ' || decimal_text(c.api_factor)
           END,
           round_div(CAST(u.cost AS DECIMAL(38, 12)) * c.api_factor * c.cost_fx * c.minor_per_unit, 1)
    FROM api_usage_lines u
    JOIN billed_customers c USING (customer_id)
    CROSS JOIN billing_period p
    WHERE u.requests > u.unpriced_requests
    UNION ALL
    -- 3. Compute hours at the plan's rate.
    SELECT c.customer_id, 3, 'compute', NULL, NULL,
           'Compute: ' || count(DISTINCT m.vm_id) || ' VM(s)',
           CAST(CAST(round_div(sum(m.compute_seconds) * 10000, 3600) AS DECIMAL(38, 0)) * 0.0001 AS VARCHAR),
           'hour',
           any_value(c.compute_hour_rate * c.plan_fx),
           NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, any_value(c.plan_currency), any_value(c.plan_fx),
           'compute hours x rate',
           round_div(any_value(c.compute_hour_rate * c.plan_fx * c.minor_per_unit) * sum(m.compute_seconds), 3600)
    FROM compute_monthly m
    JOIN billed_customers c USING (customer_id)
    GROUP BY c.customer_id
    HAVING sum(m.compute_seconds) > 0
    UNION ALL
    -- 4. Usage with no price: stated, never billed as zero without a word.
    SELECT u.customer_id, 4, 'unpriced', u.provider, u.model,
           'No price for ' || coalesce(u.provider, '?') || ' ' || coalesce(u.model, '?') || ': '
               || u.unpriced_requests || ' requests, ' || u.unpriced_tokens
               || ' tokens not billed; held for review (see the run report)',
           CAST(u.unpriced_tokens AS VARCHAR),
           'token',
           NULL,
           u.unpriced_requests,
           u.unpriced_input_tokens, u.unpriced_cache_read_tokens, u.unpriced_cache_write_tokens,
           u.unpriced_output_tokens, u.unpriced_reasoning_tokens,
           NULL, NULL, NULL,
           'unpriced: not billed',
           CAST(0 AS HUGEINT)
    FROM api_usage_lines u
    WHERE u.unpriced_requests > 0
)
SELECT c.invoice_number,
       l.customer_id,
       row_number() OVER (PARTITION BY l.customer_id
                          ORDER BY l.kind, l.provider NULLS FIRST, l.model NULLS FIRST) AS line,
       l.line_type, l.provider, l.model, l.description, l.quantity, l.unit, l.unit_price,
       l.requests, l.input_tokens, l.cache_read_tokens, l.cache_write_tokens, l.output_tokens,
       l.reasoning_tokens, l.cost, l.cost_currency, l.fx_rate, l.rule,
       CAST(l.amount_minor AS BIGINT) AS amount_minor,
       c.currency,
       c.decimals
FROM lines l
JOIN billed_customers c USING (customer_id);

-- Cost with more decimal places than the line arithmetic keeps would be
-- rounded by the cast above: meter refuses to bill when this is not empty.
CREATE OR REPLACE TABLE inexact_costs AS
SELECT customer_id, provider, model, cost
FROM api_usage_lines
WHERE cost <> CAST(cost AS DECIMAL(38, 12));

-- Usage no billed customer owns (a VM nobody lists, a customer whose
-- registry row was refused): reported, never dropped in silence.
CREATE OR REPLACE TABLE unbilled_usage AS
SELECT coalesce(customer_id, '') AS customer_id, vm_id,
       sum(requests) AS requests,
       sum(input_tokens + cache_read_tokens + cache_write_tokens + output_tokens) AS tokens,
       coalesce(sum(cost), CAST(0 AS DECIMAL(38, 18))) AS cost,
       CAST(0 AS BIGINT) AS compute_seconds
FROM usage_monthly
WHERE customer_id IS NULL OR customer_id NOT IN (SELECT customer_id FROM billed_customers)
GROUP BY ALL
UNION ALL
SELECT coalesce(customer_id, ''), vm_id, 0, 0, CAST(0 AS DECIMAL(38, 18)), sum(compute_seconds)
FROM compute_monthly
WHERE customer_id IS NULL OR customer_id NOT IN (SELECT customer_id FROM billed_customers)
GROUP BY ALL;
