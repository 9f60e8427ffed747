-- One row per invoiced customer: what was billed, what it cost us, the
-- margin, unpriced usage and the monthly limit (inputs: inputs.sql, then
-- invoice.sql). All amounts are whole minor units of the customer's currency
-- (cents), each rounded once by the rule in invoice.sql; `provider_cost` is
-- exact, in the provider currency.
CREATE OR REPLACE TABLE billing_summary AS
WITH totals AS (
    SELECT customer_id,
           sum(amount_minor) AS total_minor,
           sum(amount_minor) FILTER (WHERE line_type = 'subscription') AS fee_minor,
           coalesce(sum(amount_minor) FILTER (WHERE line_type = 'api_usage'), 0) AS api_minor,
           coalesce(sum(amount_minor) FILTER (WHERE line_type = 'compute'), 0) AS compute_minor,
           coalesce(sum(amount_minor) FILTER (WHERE line_type = 'discount'), 0) AS discount_minor,
           coalesce(sum(amount_minor) FILTER (WHERE line_type = 'commitment'), 0) AS commitment_minor,
           coalesce(sum(amount_minor) FILTER (WHERE line_type = 'credit'), 0) AS credit_minor
    FROM invoice_lines
    GROUP BY customer_id
), usage AS (
    SELECT customer_id,
           sum(cost) AS provider_cost,
           sum(unpriced_requests) AS unpriced_requests,
           sum(unpriced_tokens) AS unpriced_tokens
    FROM api_usage_lines
    GROUP BY customer_id
), tiered AS (
    -- a contract's parts under volume tiers: the plan's rule does not
    -- price their API usage
    SELECT customer_id, count(*) AS parts,
           count(*) FILTER (WHERE tier_measure IS NOT NULL) AS tiered_parts,
           min(tier_mode || ' tiers on ' || replace(tier_measure, '_', ' '))
               FILTER (WHERE tier_measure IS NOT NULL) AS tiers
    FROM billed_parts
    GROUP BY customer_id
)
SELECT c.invoice_number,
       c.customer_id,
       c.name,
       c.currency,
       c.decimals,
       c.plan,
       -- the plan's rule (reseller, included, overage); a contract's tiers
       -- instead where every part has them, beside it where some do
       CASE WHEN tp.tiered_parts IS NULL OR tp.tiered_parts = 0 THEN c.rule
            WHEN tp.tiered_parts = tp.parts THEN tp.tiers
            ELSE c.rule || ' + ' || tp.tiers END AS rule,
       c.tokens,
       c.included_tokens,
       c.active_days,
       c.days,
       t.fee_minor,
       t.api_minor,
       t.compute_minor,
       CAST(t.discount_minor AS BIGINT) AS discount_minor,
       CAST(t.commitment_minor AS BIGINT) AS commitment_minor,
       CAST(t.credit_minor AS BIGINT) AS credit_minor,
       CAST(t.total_minor AS BIGINT) AS total_minor,
       coalesce(u.provider_cost, CAST(0 AS DECIMAL(38, 18))) AS provider_cost,
       p.provider_currency,
       c.cost_fx,
       CAST(round_div(CAST(coalesce(u.provider_cost, 0) AS DECIMAL(38, 12)) * c.cost_fx * c.minor_per_unit, 1)
            AS BIGINT) AS provider_cost_minor,
       CAST(t.total_minor - round_div(CAST(coalesce(u.provider_cost, 0) AS DECIMAL(38, 12))
                                      * c.cost_fx * c.minor_per_unit, 1) AS BIGINT) AS margin_minor,
       coalesce(u.unpriced_requests, 0) AS unpriced_requests,
       coalesce(u.unpriced_tokens, 0) AS unpriced_tokens,
       c.monthly_limit,
       CAST(round_div(c.monthly_limit * c.minor_per_unit, 1) AS BIGINT) AS limit_minor,
       -- the limit is on usage charges: the total without the plan fee
       -- and before prepaid credit (schemas/customers.md), as the
       -- nightly's limit alerts measure it
       CAST(CASE WHEN c.monthly_limit IS NULL THEN 0
                 ELSE greatest(t.total_minor - coalesce(t.fee_minor, 0) - t.credit_minor
                               - round_div(c.monthly_limit * c.minor_per_unit, 1), 0)
            END AS BIGINT) AS over_limit_minor,
       coalesce(t.total_minor - coalesce(t.fee_minor, 0) - t.credit_minor
                > round_div(c.monthly_limit * c.minor_per_unit, 1), false) AS limit_exceeded,
       c.stripe_customer_id
FROM billed_customers c
JOIN totals t USING (customer_id)
LEFT JOIN usage u USING (customer_id)
LEFT JOIN tiered tp USING (customer_id)
CROSS JOIN billing_period p;
