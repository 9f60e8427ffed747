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

-- Whole minor units as text with the currency's places: 12345, 2 -> '123.45'.
CREATE OR REPLACE MACRO minor_text(m, decimals) AS
    CASE WHEN m < 0 THEN '-' ELSE '' END
    || CAST(abs(m) // CAST(10 ** decimals AS HUGEINT) AS VARCHAR)
    || CASE WHEN decimals = 0 THEN ''
            ELSE '.' || lpad(CAST(abs(m) % CAST(10 ** decimals AS HUGEINT) AS VARCHAR), CAST(decimals AS INTEGER), '0') END;

-- Contracts (schemas/contracts.md). The one order: markup or tiers ->
-- discounts -> commitment true-up -> credits, each a visible line.
--
-- The parts of a contract customer's month, with the days it was active in
-- each (a part's share of the fee, its prorated commitment).
CREATE OR REPLACE TABLE billed_parts AS
SELECT p.*,
       greatest(datediff('day', greatest(p.part_start, c.active_from), least(p.part_end, c.active_until)), 0)
           AS active_days,
       count(*) OVER (PARTITION BY p.customer_id) AS parts,
       CASE WHEN count(*) OVER (PARTITION BY p.customer_id) = 1 THEN ''
            ELSE ', ' || strftime(p.part_start, '%Y-%m-%d') || ' to '
                 || strftime(CAST(p.part_end - INTERVAL 1 DAY AS DATE), '%Y-%m-%d') END AS part_text
FROM contract_parts p
JOIN billed_customers c USING (customer_id);

-- Each day of a contract customer's API usage with the factor it bills at.
-- Tiers count the month to date across parts: `tokens` all kinds of tokens,
-- `api_charge` the provider cost in the customer's currency. Graduated: a
-- day is in the tier the month had reached before it began; volume: every
-- day is in the tier the whole month reaches.
CREATE OR REPLACE TABLE contract_days AS
WITH days AS (
    SELECT u.customer_id, u.date,
           CAST(sum(u.input_tokens + u.cache_read_tokens + u.cache_write_tokens + u.output_tokens)
                AS DECIMAL(38, 20)) AS tokens,
           CAST(coalesce(sum(u.cost), 0) AS DECIMAL(38, 12)) * any_value(c.cost_fx) AS charge
    FROM usage_daily_lines u
    JOIN billed_customers c USING (customer_id)
    GROUP BY u.customer_id, u.date
), running AS (
    SELECT d.*,
           coalesce(sum(d.tokens) OVER before, 0) AS tokens_before,
           coalesce(sum(d.charge) OVER before, 0) AS charge_before,
           sum(d.tokens) OVER (PARTITION BY d.customer_id) AS tokens_month,
           sum(d.charge) OVER (PARTITION BY d.customer_id) AS charge_month
    FROM days d
    WINDOW before AS (PARTITION BY d.customer_id ORDER BY d.date
                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), measured AS (
    SELECT r.customer_id, r.date, p.part, p.tier_measure, p.tier_mode,
           CASE WHEN p.tier_mode = 'graduated' AND p.tier_measure = 'tokens' THEN r.tokens_before
                WHEN p.tier_mode = 'graduated' THEN r.charge_before
                WHEN p.tier_measure = 'tokens' THEN r.tokens_month
                ELSE r.charge_month END AS measure
    FROM running r
    JOIN billed_parts p ON p.customer_id = r.customer_id
                       AND r.date >= p.part_start AND r.date < p.part_end
)
SELECT m.customer_id, m.date, m.part, m.tier_measure, m.tier_mode,
       t.tier, t.tier_from, t.factor,
       (SELECT count(*) FROM contract_tiers n WHERE n.customer_id = m.customer_id AND n.part = m.part) AS tiers,
       -- the days of the part billed at this tier (tiers follow each other
       -- in time: graduated ones rise day by day, a volume tier is the
       -- whole part), which the line names so that `meter explain` finds
       -- its events
       ', ' || strftime(min(m.date) OVER (PARTITION BY m.customer_id, m.part, t.tier), '%Y-%m-%d')
           || ' to ' || strftime(max(m.date) OVER (PARTITION BY m.customer_id, m.part, t.tier), '%Y-%m-%d')
           AS tier_days
FROM measured m
LEFT JOIN contract_tiers t
       ON t.customer_id = m.customer_id AND t.part = m.part
      AND t.tier = (SELECT max(x.tier) FROM contract_tiers x
                    WHERE x.customer_id = m.customer_id AND x.part = m.part AND x.tier_from <= m.measure);

-- API charges before rounding: per customer, provider and model, and for a
-- contract customer per part and factor too. Each carries its priced
-- events' requests, tokens and cost (the unpriced line the others').
CREATE OR REPLACE TABLE api_charges AS
SELECT u.customer_id,
       CAST(NULL AS BIGINT) AS part,
       '' AS part_text,
       u.provider, u.model,
       CAST(NULL AS BIGINT) AS tier,
       c.api_factor AS factor,
       CASE c.rule
           WHEN 'reseller' THEN 'reseller: cost x ' || decimal_text(c.api_factor)
           WHEN 'included' THEN 'included: ' || c.tokens || ' tokens <= allowance ' || c.included_tokens
           ELSE 'overage: ' || c.tokens || ' tokens > allowance ' || c.included_tokens
                || ', cost x ' || decimal_text(c.api_factor)
       END AS rule,
       u.requests - u.unpriced_requests AS requests,
       u.input_tokens - u.unpriced_input_tokens AS input_tokens,
       u.cache_read_tokens - u.unpriced_cache_read_tokens AS cache_read_tokens,
       u.cache_write_tokens - u.unpriced_cache_write_tokens AS cache_write_tokens,
       u.output_tokens - u.unpriced_output_tokens AS output_tokens,
       u.reasoning_tokens - u.unpriced_reasoning_tokens AS reasoning_tokens,
       u.unpriced_requests,
       u.cost
FROM api_usage_lines u
JOIN billed_customers c USING (customer_id)
WHERE u.requests > u.unpriced_requests
  AND u.customer_id NOT IN (SELECT customer_id FROM billed_parts)
UNION ALL
SELECT u.customer_id, d.part,
       CASE WHEN d.tier IS NULL THEN any_value(p.part_text) ELSE any_value(d.tier_days) END,
       u.provider, u.model, d.tier,
       any_value(coalesce(d.factor, c.api_factor)),
       CASE WHEN d.tier IS NULL THEN
           CASE any_value(c.rule)
               WHEN 'reseller' THEN 'reseller: cost x ' || decimal_text(any_value(c.api_factor))
               WHEN 'included' THEN 'included: ' || any_value(c.tokens) || ' tokens <= allowance '
                                    || any_value(c.included_tokens)
               ELSE 'overage: ' || any_value(c.tokens) || ' tokens > allowance ' || any_value(c.included_tokens)
                    || ', cost x ' || decimal_text(any_value(c.api_factor))
           END
       ELSE 'tier ' || d.tier || ' of ' || any_value(d.tiers)
            || CASE any_value(d.tier_mode) WHEN 'graduated' THEN ' (graduated: days after the month reached '
                    ELSE ' (volume: the month reached ' END
            || decimal_text(any_value(d.tier_from))
            || CASE any_value(d.tier_measure) WHEN 'tokens' THEN ' tokens'
                    ELSE ' ' || any_value(c.currency) || ' of provider cost' END
            || '): cost x ' || decimal_text(any_value(d.factor))
       END,
       sum(u.requests - u.unpriced_requests),
       sum(u.input_tokens - u.unpriced_input_tokens),
       sum(u.cache_read_tokens - u.unpriced_cache_read_tokens),
       sum(u.cache_write_tokens - u.unpriced_cache_write_tokens),
       sum(u.output_tokens - u.unpriced_output_tokens),
       sum(u.reasoning_tokens - u.unpriced_reasoning_tokens),
       sum(u.unpriced_requests),
       coalesce(sum(u.cost), CAST(0 AS DECIMAL(38, 18)))
FROM usage_daily_lines u
JOIN contract_days d USING (customer_id, date)
JOIN billed_parts p ON p.customer_id = d.customer_id AND p.part = d.part
JOIN billed_customers c ON c.customer_id = u.customer_id
GROUP BY u.customer_id, d.part, u.provider, u.model, d.tier
HAVING sum(u.requests - u.unpriced_requests) > 0;

-- Lines 1 to 4: what the customer used, each rounded once.
CREATE OR REPLACE TABLE charge_lines AS
-- 1. The plan's fee, prorated by active days.
SELECT c.customer_id,
       1 AS kind,
       CAST(NULL AS BIGINT) AS part,
       CAST(NULL AS BIGINT) AS sub,
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
       CAST(round_div(c.monthly_fee * c.plan_fx * c.minor_per_unit * c.active_days, c.days) AS HUGEINT)
           AS amount_minor
FROM billed_customers c
UNION ALL
-- 2. API usage per provider and model (and part and tier), by the
-- customer's rule or its contract's tiers.
SELECT a.customer_id, 2, a.part, a.tier, 'api_usage', a.provider, a.model,
       coalesce(a.provider, '?') || ' ' || coalesce(a.model, '?') || ': '
           || a.requests || ' requests'
           || CASE WHEN a.unpriced_requests > 0
                   THEN ' (' || a.unpriced_requests || ' more without a price: see the unpriced line)'
                   ELSE '' END
           || a.part_text,
       CAST(a.input_tokens + a.cache_read_tokens + a.cache_write_tokens + a.output_tokens AS VARCHAR),
       'token',
       NULL,
       a.requests, a.input_tokens, a.cache_read_tokens, a.cache_write_tokens, a.output_tokens,
       a.reasoning_tokens,
       a.cost,
       p.provider_currency,
       c.cost_fx,
       a.rule,
       round_div(CAST(a.cost AS DECIMAL(38, 12)) * a.factor * c.cost_fx * c.minor_per_unit, 1)
FROM api_charges a
JOIN billed_customers c USING (customer_id)
CROSS JOIN billing_period p
UNION ALL
-- 3. Compute hours at the plan's rate (a contract customer's per part).
SELECT c.customer_id, 3, NULL, NULL, 'compute', NULL, NULL,
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
WHERE c.customer_id NOT IN (SELECT customer_id FROM billed_parts)
GROUP BY c.customer_id
HAVING sum(m.compute_seconds) > 0
UNION ALL
SELECT c.customer_id, 3, p.part, NULL, 'compute', NULL, NULL,
       'Compute: ' || coalesce(any_value(v.vms), 0) || ' VM(s)' || any_value(p.part_text),
       CAST(CAST(round_div(sum(m.compute_seconds) * 10000, 3600) AS DECIMAL(38, 0)) * 0.0001 AS VARCHAR),
       'hour',
       any_value(c.compute_hour_rate * c.plan_fx),
       NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, any_value(c.plan_currency), any_value(c.plan_fx),
       'compute hours x rate',
       round_div(any_value(c.compute_hour_rate * c.plan_fx * c.minor_per_unit) * sum(m.compute_seconds), 3600)
FROM compute_daily m
JOIN billed_parts p ON p.customer_id = m.customer_id AND m.date >= p.part_start AND m.date < p.part_end
JOIN billed_customers c ON c.customer_id = m.customer_id
LEFT JOIN (SELECT customer_id, count(DISTINCT vm_id) AS vms FROM compute_monthly GROUP BY customer_id) v
       ON v.customer_id = c.customer_id
GROUP BY c.customer_id, p.part
HAVING sum(m.compute_seconds) > 0
UNION ALL
-- 4. Usage with no price: stated, never billed as zero without a word.
SELECT u.customer_id, 4, NULL, NULL, 'unpriced', u.provider, u.model,
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
WHERE u.unpriced_requests > 0;

-- 5. Discounts, one line per discount and part it covers, on the charges
-- of that part (never on another discount), each at most those charges.
-- The fee's share of a part is fee x the part's active days / active days.
CREATE OR REPLACE TABLE discount_lines AS
WITH covered AS (
    SELECT d.*, p.part, p.part_text, p.active_days AS part_days,
           greatest(c.active_days, 1) AS den,
           c.days, c.minor_per_unit, c.decimals, c.currency,
           coalesce((SELECT sum(l.amount_minor) FROM charge_lines l
                     WHERE l.customer_id = d.customer_id AND l.line_type = 'subscription'), 0) AS fee_minor,
           coalesce((SELECT sum(l.amount_minor) FROM charge_lines l
                     WHERE l.customer_id = d.customer_id AND l.part = p.part
                       AND l.line_type = 'api_usage'), 0) AS api_minor,
           coalesce((SELECT sum(l.amount_minor) FROM charge_lines l
                     WHERE l.customer_id = d.customer_id AND l.part = p.part
                       AND l.line_type = 'compute'), 0) AS compute_minor
    FROM contract_discounts d
    JOIN billed_parts p ON p.customer_id = d.customer_id AND p.part_start >= d.valid_from
                       AND (d.valid_until IS NULL OR p.part_end <= d.valid_until)
    JOIN billed_customers c ON c.customer_id = d.customer_id
), based AS (
    -- base = base_num / den, exactly
    SELECT *,
           CAST(CASE applies_to
                    WHEN 'subscription' THEN fee_minor * part_days
                    WHEN 'api_usage' THEN api_minor * den
                    WHEN 'compute' THEN compute_minor * den
                    ELSE fee_minor * part_days + (api_minor + compute_minor) * den
                END AS HUGEINT) AS base_num,
           CASE applies_to WHEN 'subscription' THEN 'the plan fee'
                           WHEN 'api_usage' THEN 'API usage'
                           WHEN 'compute' THEN 'compute'
                           ELSE 'the invoice' END AS scope_text
    FROM covered
), valued AS (
    SELECT *,
           CAST(round_div(base_num, den) AS HUGEINT) AS base_minor,
           CASE WHEN percent IS NOT NULL THEN CAST(round_div(base_num * percent, 100 * den) AS HUGEINT)
                ELSE CAST(least(round_div(amount * minor_per_unit * part_days, days), round_div(base_num, den))
                          AS HUGEINT) END AS off_minor
    FROM based
    WHERE base_num > 0
)
SELECT customer_id, 5 AS kind, part, discount_line AS sub, 'discount' AS line_type,
       CAST(NULL AS VARCHAR) AS provider, CAST(NULL AS VARCHAR) AS model,
       'Discount ' || CASE WHEN percent IS NOT NULL THEN decimal_text(percent) || '%'
                           ELSE decimal_text(amount) || ' ' || currency || ' a month' END
           || ' on ' || scope_text || ' (contracts.toml line ' || discount_line || ')' || part_text
           AS description,
       CASE WHEN percent IS NOT NULL THEN decimal_text(percent) || '%'
            ELSE part_days || '/' || days END AS quantity,
       CASE WHEN percent IS NOT NULL THEN 'percent' ELSE 'month' END AS unit,
       CAST(amount AS DECIMAL(38, 8)) AS unit_price,
       CAST(NULL AS BIGINT) AS requests,
       CAST(NULL AS BIGINT) AS input_tokens, CAST(NULL AS BIGINT) AS cache_read_tokens,
       CAST(NULL AS BIGINT) AS cache_write_tokens, CAST(NULL AS BIGINT) AS output_tokens,
       CAST(NULL AS BIGINT) AS reasoning_tokens,
       CAST(NULL AS DECIMAL(38, 18)) AS cost, CAST(NULL AS VARCHAR) AS cost_currency,
       CAST(NULL AS DECIMAL(38, 8)) AS fx_rate,
       CASE WHEN percent IS NOT NULL
            THEN 'discount: ' || decimal_text(percent) || '% of ' || minor_text(base_minor, decimals)
            ELSE 'discount: ' || decimal_text(amount) || ' x ' || part_days || '/' || days
                 || ' days, at most ' || minor_text(base_minor, decimals) END AS rule,
       -off_minor AS amount_minor,
       applies_to
FROM valued;

-- 6. The minimum commitment of each part, prorated by its active days like
-- the fee, against the part's usage charges (API and compute lines and
-- their discounts): the shortfall is billed, a met commitment shows 0.
CREATE OR REPLACE TABLE commitment_lines AS
WITH usage AS (
    SELECT p.customer_id, p.part,
           CAST(round_div(p.commitment * c.minor_per_unit * p.active_days, c.days) AS HUGEINT) AS committed_minor,
           coalesce((SELECT sum(l.amount_minor) FROM charge_lines l
                     WHERE l.customer_id = p.customer_id AND l.part = p.part
                       AND l.line_type IN ('api_usage', 'compute')), 0)
           + coalesce((SELECT sum(l.amount_minor) FROM discount_lines l
                       WHERE l.customer_id = p.customer_id AND l.part = p.part
                         AND l.applies_to IN ('api_usage', 'compute')), 0) AS usage_minor
    FROM billed_parts p
    JOIN billed_customers c USING (customer_id)
    WHERE p.commitment IS NOT NULL AND p.active_days > 0
)
SELECT u.customer_id, 6 AS kind, u.part, CAST(NULL AS BIGINT) AS sub, 'commitment' AS line_type,
       CAST(NULL AS VARCHAR) AS provider, CAST(NULL AS VARCHAR) AS model,
       'Minimum commitment ' || decimal_text(p.commitment) || ' ' || c.currency || ' a month'
           || CASE WHEN p.active_days = c.days THEN ''
                   ELSE ' prorated: ' || p.active_days || ' of ' || c.days || ' days' END
           || ', usage charges ' || minor_text(u.usage_minor, c.decimals)
           || ' of ' || minor_text(u.committed_minor, c.decimals)
           || CASE WHEN u.usage_minor >= u.committed_minor THEN ': met' ELSE ': true-up' END
           || p.part_text AS description,
       CASE WHEN p.active_days = c.days THEN '1' ELSE p.active_days || '/' || c.days END AS quantity,
       'month' AS unit,
       CAST(p.commitment AS DECIMAL(38, 8)) AS unit_price,
       CAST(NULL AS BIGINT) AS requests,
       CAST(NULL AS BIGINT) AS input_tokens, CAST(NULL AS BIGINT) AS cache_read_tokens,
       CAST(NULL AS BIGINT) AS cache_write_tokens, CAST(NULL AS BIGINT) AS output_tokens,
       CAST(NULL AS BIGINT) AS reasoning_tokens,
       CAST(NULL AS DECIMAL(38, 18)) AS cost, CAST(NULL AS VARCHAR) AS cost_currency,
       CAST(NULL AS DECIMAL(38, 8)) AS fx_rate,
       'commitment: ' || minor_text(u.committed_minor, c.decimals) || ' - usage '
           || minor_text(u.usage_minor, c.decimals) || ', at least 0' AS rule,
       greatest(u.committed_minor - u.usage_minor, 0) AS amount_minor
FROM usage u
JOIN billed_parts p USING (customer_id, part)
JOIN billed_customers c USING (customer_id);

-- 7. Prepaid credit. A grant pays a month's invoice when it was granted
-- before the month ends and does not expire before the month's end
-- (`expires` is exclusive: a grant expiring on the 1st of the next month
-- pays this month); otherwise what is left of it expires, reported, never
-- applied. Grants burn in `burn_order` the usage charges (API, compute,
-- their discounts and the commitment true-up), at most the invoice total;
-- the plan fee is not paid from credit. A grant in another currency is
-- available at the month's rate rounded down to the invoice's minor unit,
-- and what it pays converts back at the same rate, rounded, never below 0.
CREATE OR REPLACE TABLE credit_balances AS
WITH lines AS (
    SELECT customer_id, line_type, NULL AS applies_to, amount_minor FROM charge_lines
    UNION ALL SELECT customer_id, line_type, applies_to, amount_minor FROM discount_lines
    UNION ALL SELECT customer_id, line_type, NULL, amount_minor FROM commitment_lines
), due AS (
    SELECT customer_id,
           greatest(least(
               coalesce(sum(amount_minor) FILTER (WHERE line_type IN ('api_usage', 'compute', 'commitment')
                                                  OR applies_to IN ('api_usage', 'compute')), 0),
               sum(amount_minor)), 0) AS payable_minor
    FROM lines
    GROUP BY customer_id
), grants AS (
    -- every admitted customer's grants, invoiced this month or not: a
    -- balance is carried to the next month either way
    SELECT g.*, c.currency AS invoice_currency, cur.decimals AS invoice_decimals,
           cur.minor_per_unit AS invoice_minor_per_unit,
           CAST(g.opening * g.minor_per_unit AS HUGEINT) AS opening_minor,
           g.expires IS NOT NULL AND g.expires < p.period_end AS expired
    FROM credit_grants g
    JOIN customers c USING (customer_id)
    JOIN currencies cur ON cur.currency = c.currency
    CROSS JOIN billing_period p
    WHERE g.granted < p.period_end
), available AS (
    SELECT g.*,
           CASE WHEN g.expired THEN CAST(0 AS HUGEINT)
                ELSE CAST(floor(g.opening_minor * g.rate * g.invoice_minor_per_unit) AS HUGEINT)
                     // g.minor_per_unit END AS available_minor
    FROM grants g
), burned AS (
    SELECT a.*,
           coalesce(d.payable_minor, 0) AS payable_minor,
           greatest(least(coalesce(d.payable_minor, 0)
                          - coalesce(sum(a.available_minor) OVER before, 0), a.available_minor), 0)
               AS applied_minor
    FROM available a
    LEFT JOIN due d USING (customer_id)
    WINDOW before AS (PARTITION BY a.customer_id ORDER BY a.burn_order
                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), converted AS (
    SELECT b.*,
           CAST(least(b.opening_minor,
                      round_div(b.applied_minor * b.minor_per_unit * 100000000,
                                CAST(b.rate * 100000000 AS HUGEINT) * b.invoice_minor_per_unit))
                AS HUGEINT) AS applied_grant_minor
    FROM burned b
)
SELECT customer_id, grant_id, burn_order, currency, decimals, amount, granted, expires, priority,
       opening, opening_from, rate, invoice_currency, invoice_decimals, payable_minor,
       CAST(CAST(opening_minor AS DECIMAL(38, 0)) AS BIGINT) AS opening_minor,
       CAST(available_minor AS BIGINT) AS available_minor,
       CAST(applied_minor AS BIGINT) AS applied_minor,
       CAST(applied_grant_minor AS BIGINT) AS applied_grant_minor,
       CAST(CASE WHEN expired THEN opening_minor ELSE 0 END AS BIGINT) AS expired_minor,
       CAST(CASE WHEN expired THEN 0 ELSE opening_minor - applied_grant_minor END AS BIGINT) AS closing_minor,
       CASE WHEN expired THEN 'expired'
            WHEN opening_minor - applied_grant_minor = 0 THEN 'used'
            ELSE 'open' END AS status
FROM converted;

CREATE OR REPLACE TABLE credit_lines AS
SELECT b.customer_id, 7 AS kind, CAST(NULL AS BIGINT) AS part, b.burn_order AS sub, 'credit' AS line_type,
       CAST(NULL AS VARCHAR) AS provider, CAST(NULL AS VARCHAR) AS model,
       'Prepaid credit ' || b.grant_id || ' (granted ' || strftime(b.granted, '%Y-%m-%d')
           || CASE WHEN b.expires IS NULL THEN '' ELSE ', usable before ' || strftime(b.expires, '%Y-%m-%d') END
           || '): ' || minor_text(b.opening_minor, b.decimals) || ' ' || b.currency || ' available, '
           || minor_text(b.applied_grant_minor, b.decimals) || ' applied, '
           || minor_text(b.closing_minor, b.decimals) || ' left' AS description,
       '1' AS quantity,
       'credit' AS unit,
       CAST(NULL AS DECIMAL(38, 8)) AS unit_price,
       CAST(NULL AS BIGINT) AS requests,
       CAST(NULL AS BIGINT) AS input_tokens, CAST(NULL AS BIGINT) AS cache_read_tokens,
       CAST(NULL AS BIGINT) AS cache_write_tokens, CAST(NULL AS BIGINT) AS output_tokens,
       CAST(NULL AS BIGINT) AS reasoning_tokens,
       CAST(NULL AS DECIMAL(38, 18)) AS cost,
       CASE WHEN b.currency <> b.invoice_currency THEN b.currency END AS cost_currency,
       CASE WHEN b.currency <> b.invoice_currency THEN CAST(b.rate AS DECIMAL(38, 8)) END AS fx_rate,
       'credit: usage charges ' || minor_text(b.payable_minor, b.invoice_decimals) || ' paid in burn order'
           AS rule,
       CAST(-b.applied_minor AS HUGEINT) AS amount_minor
FROM credit_balances b
WHERE b.applied_minor > 0;

CREATE OR REPLACE TABLE invoice_lines AS
WITH lines AS (
    SELECT * EXCLUDE (applies_to) FROM (
        SELECT *, NULL AS applies_to FROM charge_lines
        UNION ALL BY NAME SELECT * FROM discount_lines
        UNION ALL BY NAME SELECT *, NULL AS applies_to FROM commitment_lines
        UNION ALL BY NAME SELECT *, NULL AS applies_to FROM credit_lines
    )
)
SELECT c.invoice_number,
       l.customer_id,
       row_number() OVER (PARTITION BY l.customer_id
                          ORDER BY l.kind, l.part NULLS FIRST, l.provider NULLS FIRST, l.model NULLS FIRST,
                                   l.sub NULLS FIRST) AS line,
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
