-- Billing inputs: the tables `meter bill` fills before it runs invoice.sql,
-- summary.sql and meter_events.sql (in that order) in an embedded DuckDB.
-- They come from the lake's aggregates, customers.csv and pricing.toml; meter
-- validates every value on the way in (unknown plans and currencies, decimals
-- with more places than the column holds), so no cast here rounds.
--
-- Money is DECIMAL everywhere; no billing column is ever DOUBLE (a test
-- checks the type of every column of every billing table).

-- The month being billed: [period_start, period_end), `days` long.
CREATE TABLE billing_period (
    month             VARCHAR NOT NULL,   -- 'YYYY-MM'
    period_start      DATE    NOT NULL,   -- its first day
    period_end        DATE    NOT NULL,   -- the first day of the next month (exclusive)
    days              BIGINT  NOT NULL,
    revision          BIGINT  NOT NULL,   -- the revision these outputs belong to (set before each run)
    provider_currency VARCHAR NOT NULL    -- pricing.toml `currency`: what provider costs are in
);

-- ISO 4217 minor units of every invoice currency (EUR: 100 cents).
CREATE TABLE currencies (
    currency       VARCHAR PRIMARY KEY,
    decimals       BIGINT NOT NULL,       -- 2 for EUR, 0 for JPY, 3 for KWD
    minor_per_unit BIGINT NOT NULL        -- 10 ^ decimals
);

-- pricing.toml [plans.*]; overage_factor = 1 + overage_markup (1.20).
CREATE TABLE plans (
    plan              VARCHAR PRIMARY KEY,
    monthly_fee       DECIMAL(18, 6) NOT NULL,
    currency          VARCHAR NOT NULL,
    included_tokens   BIGINT NOT NULL,
    compute_hour_rate DECIMAL(18, 6) NOT NULL,
    overage_factor    DECIMAL(18, 6) NOT NULL
);

-- One row per currency pair billing needs: 1 `from_currency` = `rate`
-- `to_currency`, the rate in force on the last day of the month (pricing.toml
-- [[fx]]; a pair given the other way round is inverted to 8 places, half to
-- even). Identity pairs have rate 1. The rate is printed on every line.
CREATE TABLE fx_rates (
    from_currency VARCHAR NOT NULL,
    to_currency   VARCHAR NOT NULL,
    rate          DECIMAL(18, 8) NOT NULL,
    PRIMARY KEY (from_currency, to_currency)
);

-- customers.csv, the rows that parsed; `plan` is its `tier` column.
-- created_at/cancelled_at are UTC; cancelled_at is exclusive.
CREATE TABLE customers (
    customer_id        VARCHAR PRIMARY KEY,
    name               VARCHAR NOT NULL,
    plan               VARCHAR NOT NULL,
    currency           VARCHAR NOT NULL,
    stripe_customer_id VARCHAR,           -- null when the registry has none
    created_at         TIMESTAMP NOT NULL,
    cancelled_at       TIMESTAMP,
    monthly_limit      DECIMAL(18, 4),    -- a spending limit in `currency`, null for none
    markup             DECIMAL(18, 6)     -- a reseller's factor on provider cost (1.3), null for none
);

-- pricing.toml [[meters]]: Stripe meters to emit.
CREATE TABLE meters (
    event_name VARCHAR PRIMARY KEY,
    measures   VARCHAR NOT NULL,          -- tokens, input_tokens, output_tokens, requests, compute_minutes, commands, provider_cost
    unit       VARCHAR NOT NULL
);

-- The month's aggregates (lake: monthly/api_usage, monthly/resource_usage).
CREATE TABLE usage_monthly (
    customer_id        VARCHAR,           -- null: a VM no customer lists
    vm_id              VARCHAR NOT NULL,
    provider           VARCHAR,
    model              VARCHAR,
    requests           BIGINT NOT NULL,
    input_tokens       BIGINT NOT NULL,
    cache_read_tokens  BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    cost               DECIMAL(38, 18),   -- priced events only, in provider_currency
    unpriced_requests  BIGINT NOT NULL,
    unpriced_tokens    BIGINT NOT NULL
);

-- The unpriced events' share of usage_monthly's tokens, by kind (lake: the
-- `unpriced_*_tokens` columns of monthly/api_usage): an API line carries the
-- tokens of its priced events and the unpriced line those of the others.
-- Rows only where some request has no price.
CREATE TABLE usage_unpriced_monthly (
    customer_id        VARCHAR,
    vm_id              VARCHAR NOT NULL,
    provider           VARCHAR,
    model              VARCHAR,
    input_tokens       BIGINT NOT NULL,
    cache_read_tokens  BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL
);

CREATE TABLE compute_monthly (
    customer_id     VARCHAR,
    vm_id           VARCHAR NOT NULL,
    compute_seconds BIGINT NOT NULL
);

-- The month's days (lake: daily/api_usage, daily/resource_usage,
-- daily/activity), for the Stripe meter events.
CREATE TABLE usage_daily (
    date               DATE NOT NULL,
    customer_id        VARCHAR,
    requests           BIGINT NOT NULL,
    input_tokens       BIGINT NOT NULL,
    cache_read_tokens  BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cost               DECIMAL(38, 18)    -- priced events only, in provider_currency
);

CREATE TABLE compute_daily (
    date            DATE NOT NULL,
    customer_id     VARCHAR,
    compute_seconds BIGINT NOT NULL
);

CREATE TABLE activity_daily (
    date          DATE NOT NULL,
    customer_id   VARCHAR,
    activity_type VARCHAR NOT NULL,
    count         BIGINT NOT NULL
);

-- Contracts (contracts.toml, schemas/contracts.md). Empty when there is no
-- file; customers refused for a bad contract are not in `customers`.
--
-- The parts a contract customer's month is billed in: cut where its terms
-- change and where a discount starts or ends (meter computes the cuts;
-- equal terms in a row are one part). Every customer with terms or a
-- discount has at least one part; others have none and bill by the month.
CREATE TABLE contract_parts (
    customer_id  VARCHAR NOT NULL,
    part         BIGINT  NOT NULL,        -- 1, 2, ... in date order
    part_start   DATE    NOT NULL,
    part_end     DATE    NOT NULL,        -- exclusive
    terms_line   BIGINT,                  -- contracts.toml line of the terms in force; null: none
    terms_from   DATE,
    commitment   DECIMAL(18, 6),          -- monthly minimum, customer currency; null: none
    tier_measure VARCHAR,                 -- tokens | api_charge; null: no tiers
    tier_mode    VARCHAR,                 -- graduated | volume
    PRIMARY KEY (customer_id, part)
);

-- The tiers of a part's terms: tier 1 from 0, `tier_from` strictly increasing.
CREATE TABLE contract_tiers (
    customer_id VARCHAR NOT NULL,
    part        BIGINT  NOT NULL,
    tier        BIGINT  NOT NULL,         -- 1, 2, ...
    tier_from   DECIMAL(18, 6) NOT NULL,  -- tokens, or customer currency
    factor      DECIMAL(18, 6) NOT NULL,  -- x provider cost
    PRIMARY KEY (customer_id, part, tier)
);

CREATE TABLE contract_discounts (
    customer_id   VARCHAR NOT NULL,
    discount_line BIGINT  NOT NULL,       -- contracts.toml line
    percent       DECIMAL(18, 6),         -- exactly one of percent and amount
    amount        DECIMAL(18, 6),         -- a month's amount, customer currency
    applies_to    VARCHAR NOT NULL,       -- invoice | subscription | api_usage | compute
    valid_from    DATE    NOT NULL,
    valid_until   DATE,                   -- exclusive; null: open
    PRIMARY KEY (customer_id, discount_line)
);

-- Prepaid credit granted before the month ends, with the balance the month
-- opens with (the previous month's closing balance, or the amount granted).
CREATE TABLE credit_grants (
    customer_id    VARCHAR NOT NULL,
    grant_id       VARCHAR NOT NULL,
    burn_order     BIGINT  NOT NULL,      -- 1 burns first (priority, expiry, grant date, id)
    amount         DECIMAL(18, 6) NOT NULL,
    currency       VARCHAR NOT NULL,      -- the grant's
    decimals       BIGINT  NOT NULL,      -- of the grant's currency (ISO 4217)
    minor_per_unit BIGINT  NOT NULL,      -- 10 ^ decimals
    granted        DATE    NOT NULL,
    expires        DATE,                  -- exclusive; null: never
    priority       BIGINT  NOT NULL,
    opening        DECIMAL(18, 6) NOT NULL, -- grant currency
    opening_from   VARCHAR NOT NULL,      -- where the opening balance comes from
    rate           DECIMAL(18, 8) NOT NULL, -- 1 grant currency = rate invoice currency
    PRIMARY KEY (customer_id, grant_id)
);

-- The daily api_usage aggregates of contract customers (customers with a
-- part) by provider and model: tiers count month to date by day, and a part
-- bills the days in it.
CREATE TABLE usage_daily_lines (
    date                        DATE NOT NULL,
    customer_id                 VARCHAR NOT NULL,
    provider                    VARCHAR,
    model                       VARCHAR,
    requests                    BIGINT NOT NULL,
    input_tokens                BIGINT NOT NULL,
    cache_read_tokens           BIGINT NOT NULL,
    cache_write_tokens          BIGINT NOT NULL,
    output_tokens               BIGINT NOT NULL,
    reasoning_tokens            BIGINT NOT NULL,
    cost                        DECIMAL(38, 18),
    unpriced_requests           BIGINT NOT NULL,
    unpriced_input_tokens       BIGINT NOT NULL,
    unpriced_cache_read_tokens  BIGINT NOT NULL,
    unpriced_cache_write_tokens BIGINT NOT NULL,
    unpriced_output_tokens      BIGINT NOT NULL,
    unpriced_reasoning_tokens   BIGINT NOT NULL
);
