//! Filling billing's DuckDB input tables (`schemas/billing/inputs.sql`) from
//! the lake, the registry and the price list, after checking that the month's
//! aggregates are there and current.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{Datelike, NaiveDate};
use duckdb::{Connection, params};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::lake::Lake;
use crate::lake::duck::{self, Hive, HiveType};
use crate::model::contracts::{Contracts, DiscountValue};
use crate::model::error::{Error, Result};
use crate::model::pricing::Pricing;
use crate::model::registry::{Customer, Registry};
use crate::rollup;
use crate::rollup::aggregate::{ACTIVITY, API_USAGE, RESOURCE_USAGE, SPECS, Spec};

use super::credits::Openings;
use super::sql::{self, db_err};

/// Decimal places each input column holds; a value with more is refused
/// rather than rounded by DuckDB's cast.
const FEE_PLACES: u32 = 6;
/// Decimal places of an FX rate (an inverted one is rounded to them).
pub const FX_PLACES: u32 = 8;
const LIMIT_PLACES: u32 = 4;

/// ISO 4217 minor units of the currencies meter invoices in.
const MINOR_UNITS: [(&str, u32); 44] = [
    ("AED", 2),
    ("AUD", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EGP", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("MXN", 2),
    ("MYR", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PHP", 2),
    ("PLN", 2),
    ("RON", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TWD", 2),
    ("UAH", 2),
    ("USD", 2),
    ("VND", 0),
    ("ZAR", 2),
];

/// The currency's decimal places, if meter knows it.
pub fn minor_units(currency: &str) -> Option<u32> {
    MINOR_UNITS
        .iter()
        .find(|(c, _)| *c == currency)
        .map(|(_, d)| *d)
}

/// What was loaded, for the report and the manifest.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Customers left out, each with why (unknown plan, currency, FX rate).
    pub refused: Vec<(String, String)>,
    /// Of those, the ones whose plan is not in the price list although they
    /// are billed for the month (active at least one day of it, or with
    /// usage in it): `meter bill` refuses to publish without them.
    pub unknown_plans: Vec<Arc<Customer>>,
    /// Every lake file read, relative to the lake.
    pub files: Vec<PathBuf>,
    /// FX rates used: (from, to) -> rate.
    pub fx: BTreeMap<(String, String), Decimal>,
}

/// The month's first day, the next month's first day, and its length.
pub fn month_bounds(month: NaiveDate) -> (NaiveDate, NaiveDate, i64) {
    let start = month.with_day(1).expect("day 1 exists");
    let end = start
        .checked_add_months(chrono::Months::new(1))
        .expect("in range");
    (start, end, (end - start).num_days())
}

/// Refuses a month whose monthly rollup is missing, or older than its daily
/// tables, or whose daily tables are older than the raw events: billing
/// would read stale numbers.
pub fn check_current(lake: &Lake, month: NaiveDate) -> Result<()> {
    let (start, end, _) = month_bounds(month);
    let label = start.format("%Y-%m").to_string();
    let command = format!(
        "run `meter rollup --lake {} --month {label}` first",
        lake.root().display()
    );
    let refuse = |message: String| Error::Billing {
        month: label.clone(),
        message: format!("{message}; {command}"),
        hint: "bring the month's aggregates up to date with meter rollup, then bill again",
    };
    let mut dates = BTreeSet::new();
    let mut monthly_oldest: Option<SystemTime> = None;
    for spec in SPECS {
        let name = spec.table.name();
        let mut table_dates = lake.dates_under(name)?;
        table_dates.extend(lake.dates_under(&format!("daily/{name}"))?);
        table_dates.retain(|d| *d >= start && *d < end);
        let files = lake.parquet_files(&spec.monthly_dir(lake, start))?;
        if files.is_empty() && !table_dates.is_empty() {
            return Err(refuse(format!(
                "there is no monthly rollup of {name} for {label}"
            )));
        }
        // A table without events in the month (no command logs, say) has
        // nothing to roll up: it bills as empty.
        dates.extend(table_dates);
        if spec.table == API_USAGE.table
            && let Some(f) = files.iter().find(|f| !has_unpriced_split(lake, f))
        {
            return Err(refuse(format!(
                "the monthly rollup of {name} for {label} was written by an older meter \
                 ({} has no column {})",
                f.display(),
                UNPRICED_SPLIT[0]
            )));
        }
        for f in files {
            let t = lake.modified(&f)?;
            monthly_oldest = Some(monthly_oldest.map_or(t, |m| m.min(t)));
        }
    }
    let Some(monthly_oldest) = monthly_oldest else {
        return Err(refuse(format!("there is no monthly rollup for {label}")));
    };
    for date in dates {
        for spec in SPECS {
            let (daily, behind) = rollup::daily_state(lake, &spec, date)?;
            if daily.is_some_and(|d| d > monthly_oldest) {
                return Err(refuse(format!(
                    "the monthly rollup is older than the daily {} of {date}",
                    spec.table.name()
                )));
            }
            if behind {
                return Err(refuse(format!(
                    "the {} events of {date} are newer than their daily rollup",
                    spec.table.name()
                )));
            }
        }
    }
    Ok(())
}

/// The relation billing reads each set of lake files through.
const LAKE_INPUT: &str = "lake_input";

/// The columns billing reads of the api_usage aggregates (`user_id`: the
/// daily rows' key).
const USAGE_COLUMNS: [&str; 14] = [
    "customer_id",
    "vm_id",
    "user_id",
    "provider",
    "model",
    "requests",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost",
    "unpriced_requests",
    "unpriced_tokens",
];

/// The columns of the unpriced split billing reads.
const SPLIT_COLUMNS: [&str; 10] = [
    "customer_id",
    "vm_id",
    "provider",
    "model",
    "unpriced_requests",
    UNPRICED_SPLIT[0],
    UNPRICED_SPLIT[1],
    UNPRICED_SPLIT[2],
    UNPRICED_SPLIT[3],
    UNPRICED_SPLIT[4],
];

const COMPUTE_COLUMNS: [&str; 3] = ["customer_id", "vm_id", "compute_seconds"];

/// The columns of the daily api_usage rows contract customers bill from.
const DAILY_LINE_COLUMNS: [&str; 16] = [
    "customer_id",
    "provider",
    "model",
    "requests",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost",
    "unpriced_requests",
    UNPRICED_SPLIT[0],
    UNPRICED_SPLIT[1],
    UNPRICED_SPLIT[2],
    UNPRICED_SPLIT[3],
    UNPRICED_SPLIT[4],
];

const ACTIVITY_COLUMNS: [&str; 3] = ["customer_id", "activity_type", "count"];

/// The api_usage aggregate columns that split each token kind by price
/// (rollup.md): written since invoice lines carry only their own tokens.
pub const UNPRICED_SPLIT: [&str; 5] = [
    "unpriced_input_tokens",
    "unpriced_cache_read_tokens",
    "unpriced_cache_write_tokens",
    "unpriced_output_tokens",
    "unpriced_reasoning_tokens",
];

/// Whether an api_usage aggregate file has the [`UNPRICED_SPLIT`] columns
/// (a file that cannot be read has not: reading it fails with its own
/// error later).
fn has_unpriced_split(lake: &Lake, path: &Path) -> bool {
    let Ok(columns) = lake.column_names(path) else {
        return false;
    };
    UNPRICED_SPLIT
        .iter()
        .all(|c| columns.iter().any(|d| d == c))
}

/// Creates the input tables and fills them. Customers whose plan, currency
/// or FX rate is unknown are left out and named in [`Loaded::refused`].
/// `billing_period.revision` is left 0 for the caller to set.
pub fn load(
    conn: &Connection,
    lake: &Lake,
    month: NaiveDate,
    registry: &Registry,
    pricing: &Pricing,
    contracts: &ContractInputs,
) -> Result<Loaded> {
    load_from(
        conn,
        lake,
        month,
        registry,
        pricing,
        contracts,
        MonthFrom::Monthly,
    )
}

/// The contracts to bill with: the sound ones (checked by
/// [`check_contracts`]) and the balances prepaid credit opens with.
#[derive(Debug, Default)]
pub struct ContractInputs {
    pub contracts: Contracts,
    pub openings: Openings,
}

/// Checks contracts against the customers and the price list: a credit in a
/// currency without a rate to the customer's (on the month's last day), or
/// with more decimal places than its currency has, and an entry for a
/// customer customers.csv does not have, each refuse that customer's
/// contract (and so its invoice). Returns the problems.
pub fn check_contracts(
    contracts: &mut Contracts,
    registry: &Registry,
    pricing: &Pricing,
    month: NaiveDate,
) -> Vec<Error> {
    let (_, end, _) = month_bounds(month);
    let last_day = end.pred_opt().expect("in range");
    let currencies: std::collections::HashMap<&str, &str> = registry
        .customers
        .iter()
        .map(|c| (&*c.customer_id, c.currency.as_str()))
        .collect();
    let currency_of = |id: &str| currencies.get(id).map(|c| c.to_string());
    let mut problems = contracts.check_currencies(currency_of, |from, to| {
        fx_rate(pricing, from, to, last_day).is_ok()
    });
    let mut refused = BTreeSet::new();
    for g in &contracts.credits {
        let fits = minor_units(&g.currency).is_some_and(|d| g.amount.scale() <= d);
        if !fits {
            problems.push(Error::Registry {
                path: contracts.path.clone(),
                line: g.line,
                field: "amount".into(),
                message: match minor_units(&g.currency) {
                    Some(d) => format!(
                        "{} {} has more decimal places than {} has ({d})",
                        g.amount, g.currency, g.currency
                    ),
                    None => format!(
                        "currency {} is not one meter knows the minor unit of",
                        g.currency
                    ),
                },
            });
            refused.insert(g.customer_id.clone());
        }
    }
    contracts.refuse(&refused);
    problems
}

/// [`load`] for a month in progress, whose monthly aggregates the nightly
/// job does not build: the month's totals are the sums of its daily rows
/// (every measure billing reads combines across days by sum, exactly).
pub fn load_month_to_date(
    conn: &Connection,
    lake: &Lake,
    month: NaiveDate,
    registry: &Registry,
    pricing: &Pricing,
    contracts: &ContractInputs,
) -> Result<Loaded> {
    load_from(
        conn,
        lake,
        month,
        registry,
        pricing,
        contracts,
        MonthFrom::Daily,
    )
}

/// Where the month's totals come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MonthFrom {
    Monthly,
    Daily,
}

fn load_from(
    conn: &Connection,
    lake: &Lake,
    month: NaiveDate,
    registry: &Registry,
    pricing: &Pricing,
    contracted: &ContractInputs,
    from: MonthFrom,
) -> Result<Loaded> {
    let mut loaded = Loaded::default();
    let (start, end, days) = month_bounds(month);
    let last_day = end.pred_opt().expect("in range");
    sql::run_file(conn, "inputs.sql")?;
    conn.execute(
        "INSERT INTO billing_period VALUES (?, ?, ?, ?, ?, ?)",
        params![
            start.format("%Y-%m").to_string(),
            start.to_string(),
            end.to_string(),
            days,
            // set before each run of the billing SQL
            0,
            pricing.currency
        ],
    )
    .map_err(db_err("billing_period"))?;

    let mut currencies = BTreeSet::new();
    for plan in pricing.plans.values() {
        for (what, value) in [
            ("monthly_fee", plan.monthly_fee),
            ("compute_hour_rate", plan.compute_hour_rate),
            ("overage_markup", plan.overage_markup),
        ] {
            if value.scale() > FEE_PLACES {
                return Err(Error::Usage(format!(
                    "pricing plans.{}.{what} = {value} has more than {FEE_PLACES} decimal places",
                    plan.name
                )));
            }
        }
        conn.execute(
            "INSERT INTO plans VALUES (?, CAST(? AS DECIMAL(18, 6)), ?, ?, CAST(? AS DECIMAL(18, 6)), CAST(? AS DECIMAL(18, 6)))",
            params![
                plan.name,
                plan.monthly_fee.to_string(),
                plan.currency,
                plan.included_tokens,
                plan.compute_hour_rate.to_string(),
                (Decimal::ONE + plan.overage_markup).to_string()
            ],
        )
        .map_err(db_err("plans"))?;
    }

    let mut unknown_plans = Vec::new();
    // Customers go in as text through an appender, then into `customers`
    // with the casts in one statement: an INSERT statement per customer was
    // parsed and planned 10,000 times for 10,000 customers (nine tenths of
    // `meter bill`'s time).
    conn.execute_batch(
        "CREATE TEMP TABLE customers_text (customer_id VARCHAR, name VARCHAR, plan VARCHAR, \
         currency VARCHAR, stripe_customer_id VARCHAR, created_at VARCHAR, cancelled_at VARCHAR, \
         monthly_limit VARCHAR, markup VARCHAR)",
    )
    .map_err(db_err("customers"))?;
    let mut appender = conn
        .appender("customers_text")
        .map_err(db_err("customers"))?;
    let contracts = &contracted.contracts;
    let mut admitted = Vec::new();
    for c in &registry.customers {
        if contracts.refused.contains(&*c.customer_id) {
            loaded.refused.push((
                c.customer_id.to_string(),
                format!(
                    "its contract in {} has a problem (named above)",
                    contracts.path.display()
                ),
            ));
            continue;
        }
        if let Err(why) = admit(c, pricing, last_day, &mut loaded.fx) {
            loaded.refused.push((c.customer_id.to_string(), why));
            if !pricing.plans.contains_key(&c.tier) {
                unknown_plans.push(c.clone());
            }
            continue;
        }
        currencies.insert(c.currency.clone());
        admitted.push(c);
        let decimal = |v: Option<Decimal>| v.map(|d| d.to_string());
        appender
            .append_row(params![
                &*c.customer_id,
                c.name,
                c.tier,
                c.currency,
                Some(c.stripe_customer_id.as_str()).filter(|s| !s.is_empty()),
                c.created_at.naive_utc().to_string(),
                c.cancelled_at.map(|t| t.naive_utc().to_string()),
                decimal(c.monthly_limit),
                decimal(c.markup)
            ])
            .map_err(db_err("customers"))?;
    }
    appender.flush().map_err(db_err("customers"))?;
    drop(appender);
    conn.execute_batch(
        "INSERT INTO customers SELECT customer_id, name, plan, currency, stripe_customer_id, \
         CAST(created_at AS TIMESTAMP), CAST(cancelled_at AS TIMESTAMP), \
         CAST(monthly_limit AS DECIMAL(18, 4)), CAST(markup AS DECIMAL(18, 6)) \
         FROM customers_text ORDER BY rowid; DROP TABLE customers_text",
    )
    .map_err(db_err("customers"))?;
    for currency in currencies {
        let decimals = minor_units(&currency).expect("admitted");
        conn.execute(
            "INSERT INTO currencies VALUES (?, ?, ?)",
            params![currency, decimals, 10i64.pow(decimals)],
        )
        .map_err(db_err("currencies"))?;
    }
    for ((from, to), rate) in &loaded.fx {
        conn.execute(
            "INSERT INTO fx_rates VALUES (?, ?, CAST(? AS DECIMAL(18, 8)))",
            params![from, to, rate.to_string()],
        )
        .map_err(db_err("fx_rates"))?;
    }
    load_contracts(
        conn,
        contracted,
        &admitted,
        pricing,
        start,
        end,
        &mut loaded.fx,
    )?;
    for m in &pricing.meters {
        conn.execute(
            "INSERT INTO meters VALUES (?, ?, ?)",
            params![m.event_name, m.measures, m.unit],
        )
        .map_err(db_err("meters"))?;
    }

    // The lake's aggregates for the month: each read registers the files
    // as `lake_input` (lake::duck), with only the columns the statement
    // uses, runs it and drops the relation.
    let read = |spec: Spec,
                period: &str,
                dirs: Vec<PathBuf>,
                columns: &[&str],
                insert: &str|
     -> Result<Vec<PathBuf>> {
        let files = lake.parquet_files_of(&dirs)?;
        if files.is_empty() {
            return Ok(files);
        }
        let what = format!("reading {period} {}", spec.table.name());
        let read = duck::Read {
            hive: Hive::Typed(period, HiveType::Varchar),
            columns: Some(columns),
            ..duck::Read::default()
        };
        let registered = duck::register(conn, lake, LAKE_INPUT, &files, &read)?;
        conn.execute_batch(&insert.replace("{files}", LAKE_INPUT))
            .map_err(db_err(&what))?;
        duck::unregister(conn, LAKE_INPUT, registered)?;
        Ok(files)
    };
    // The unpriced share of each token kind. Aggregates written by an older
    // meter do not have it: `meter bill` refuses them (`check_current`);
    // for the figures of a month so far (the nightly's meter events and
    // limit alerts, the report), which publish no invoice line, the API
    // lines then keep every token.
    let read_split = |period: &str, dirs: Vec<PathBuf>, insert: &str| -> Result<()> {
        for dir in &dirs {
            if !lake
                .parquet_files(dir)?
                .iter()
                .all(|f| has_unpriced_split(lake, f))
            {
                return Ok(());
            }
        }
        read(API_USAGE, period, dirs, &SPLIT_COLUMNS, insert).map(drop)
    };
    let monthly = |spec: Spec| vec![spec.monthly_dir(lake, start)];
    // The days of the period that have a daily partition: one listing of
    // the table instead of one per day (each a request on object storage).
    let daily = |spec: Spec| -> Result<Vec<PathBuf>> {
        let present = lake.dates_under(&format!("daily/{}", spec.table.name()))?;
        Ok(present
            .into_iter()
            .filter(|d| (start..end).contains(d))
            .map(|d| spec.daily_dir(lake, d))
            .collect())
    };
    let mut files = Vec::new();
    match from {
        MonthFrom::Monthly => {
            files.extend(read(
                API_USAGE,
                "month",
                monthly(API_USAGE),
                &USAGE_COLUMNS,
                "INSERT INTO usage_monthly SELECT customer_id, vm_id, provider, model, requests, \
                 input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, \
                 reasoning_tokens, cost, unpriced_requests, unpriced_tokens FROM {files}",
            )?);
            read_split(
                "month",
                monthly(API_USAGE),
                "INSERT INTO usage_unpriced_monthly SELECT customer_id, vm_id, provider, model, \
                 unpriced_input_tokens, unpriced_cache_read_tokens, unpriced_cache_write_tokens, \
                 unpriced_output_tokens, unpriced_reasoning_tokens FROM {files} \
                 WHERE unpriced_requests > 0",
            )?;
            files.extend(read(
                RESOURCE_USAGE,
                "month",
                monthly(RESOURCE_USAGE),
                &COMPUTE_COLUMNS,
                "INSERT INTO compute_monthly SELECT customer_id, vm_id, compute_seconds FROM {files}",
            )?);
        }
        MonthFrom::Daily => {
            files.extend(read(
                API_USAGE,
                "date",
                daily(API_USAGE)?,
                &USAGE_COLUMNS,
                "INSERT INTO usage_monthly SELECT customer_id, vm_id, provider, model, \
                 sum(requests), sum(input_tokens), sum(cache_read_tokens), \
                 sum(cache_write_tokens), sum(output_tokens), sum(reasoning_tokens), sum(cost), \
                 sum(unpriced_requests), sum(unpriced_tokens) FROM {files} \
                 GROUP BY customer_id, vm_id, user_id, provider, model",
            )?);
            read_split(
                "date",
                daily(API_USAGE)?,
                "INSERT INTO usage_unpriced_monthly SELECT customer_id, vm_id, provider, model, \
                 sum(unpriced_input_tokens), sum(unpriced_cache_read_tokens), \
                 sum(unpriced_cache_write_tokens), sum(unpriced_output_tokens), \
                 sum(unpriced_reasoning_tokens) FROM {files} WHERE unpriced_requests > 0 \
                 GROUP BY customer_id, vm_id, provider, model",
            )?;
            files.extend(read(
                RESOURCE_USAGE,
                "date",
                daily(RESOURCE_USAGE)?,
                &COMPUTE_COLUMNS,
                "INSERT INTO compute_monthly SELECT customer_id, vm_id, sum(compute_seconds) \
                 FROM {files} GROUP BY customer_id, vm_id",
            )?);
        }
    }
    files.extend(read(
        API_USAGE,
        "date",
        daily(API_USAGE)?,
        &USAGE_COLUMNS,
        "INSERT INTO usage_daily SELECT CAST(date AS DATE), customer_id, requests, input_tokens, \
         cache_read_tokens, cache_write_tokens, output_tokens, cost FROM {files}",
    )?);
    // Contract customers billed by parts (load_contracts filled them).
    let with_parts: i64 = conn
        .query_row("SELECT count(*) FROM contract_parts", [], |r| r.get(0))
        .map_err(db_err("contract_parts"))?;
    if with_parts > 0 {
        let dirs = daily(API_USAGE)?;
        for f in lake.parquet_files_of(&dirs)? {
            if !has_unpriced_split(lake, &f) {
                return Err(Error::Billing {
                    month: start.format("%Y-%m").to_string(),
                    message: format!(
                        "the daily rollup {} was written by an older meter (no column {}), \
                         which contract customers are billed from",
                        f.display(),
                        UNPRICED_SPLIT[0]
                    ),
                    hint: "roll the month up again (`meter rollup --month`), then bill again",
                });
            }
        }
        read(
            API_USAGE,
            "date",
            dirs,
            &DAILY_LINE_COLUMNS,
            "INSERT INTO usage_daily_lines SELECT CAST(date AS DATE), customer_id, provider, model, \
             sum(requests), sum(input_tokens), sum(cache_read_tokens), sum(cache_write_tokens), \
             sum(output_tokens), sum(reasoning_tokens), sum(cost), sum(unpriced_requests), \
             sum(unpriced_input_tokens), sum(unpriced_cache_read_tokens), \
             sum(unpriced_cache_write_tokens), sum(unpriced_output_tokens), \
             sum(unpriced_reasoning_tokens) FROM {files} \
             WHERE customer_id IN (SELECT customer_id FROM contract_parts) \
             GROUP BY ALL",
        )?;
    }
    files.extend(read(
        RESOURCE_USAGE,
        "date",
        daily(RESOURCE_USAGE)?,
        &COMPUTE_COLUMNS,
        "INSERT INTO compute_daily SELECT CAST(date AS DATE), customer_id, compute_seconds FROM {files}",
    )?);
    files.extend(read(
        ACTIVITY,
        "date",
        daily(ACTIVITY)?,
        &ACTIVITY_COLUMNS,
        "INSERT INTO activity_daily SELECT CAST(date AS DATE), customer_id, activity_type, count FROM {files}",
    )?);
    let mut used = BTreeSet::new();
    for table in ["usage_monthly", "compute_monthly"] {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT DISTINCT customer_id FROM {table} WHERE customer_id IS NOT NULL"
            ))
            .map_err(db_err(table))?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(db_err(table))?;
        used.extend(ids);
    }
    loaded.unknown_plans = unknown_plans
        .into_iter()
        .filter(|c| c.active_between(start, end) || used.contains(&*c.customer_id))
        .collect();
    loaded.files = files
        .into_iter()
        .map(|f| {
            f.strip_prefix(lake.root())
                .map(Path::to_path_buf)
                .unwrap_or(f)
        })
        .collect();
    Ok(loaded)
}

/// Fills the contract tables for the admitted customers: the parts of
/// their month, tiers, discounts and the credit grants made before the
/// month ends with the balance each opens with.
pub(super) fn load_contracts(
    conn: &Connection,
    contracted: &ContractInputs,
    admitted: &[&Arc<Customer>],
    pricing: &Pricing,
    start: NaiveDate,
    end: NaiveDate,
    fx: &mut BTreeMap<(String, String), Decimal>,
) -> Result<()> {
    let contracts = &contracted.contracts;
    let last_day = end.pred_opt().expect("in range");
    let label = start.format("%Y-%m").to_string();
    let text = |d: Decimal| Some(d.normalize().to_string());
    let int = |n: i64| Some(n.to_string());
    let admitted: std::collections::HashMap<&str, &Arc<Customer>> =
        admitted.iter().map(|c| (&*c.customer_id, *c)).collect();
    let (mut parts, mut tiers, mut discounts, mut grants) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for id in contracts.customers() {
        let Some(c) = admitted.get(id) else {
            continue;
        };
        let cid = Some(id.to_string());
        if contracts.has_parts(id) {
            for (n, part) in contracts.parts(id, start, end).iter().enumerate() {
                let terms = part.terms;
                let steps = terms.and_then(|t| t.tiers.as_ref());
                parts.push(vec![
                    cid.clone(),
                    int(n as i64 + 1),
                    Some(part.start.to_string()),
                    Some(part.end.to_string()),
                    terms.and_then(|t| int(t.line as i64)),
                    terms.map(|t| t.from.to_string()),
                    terms.and_then(|t| t.commitment).and_then(text),
                    steps.map(|t| enum_text(&t.measure)),
                    steps.map(|t| enum_text(&t.mode)),
                ]);
                for (i, step) in steps.iter().flat_map(|t| t.steps.iter()).enumerate() {
                    tiers.push(vec![
                        cid.clone(),
                        int(n as i64 + 1),
                        int(i as i64 + 1),
                        text(step.from),
                        text(step.factor),
                    ]);
                }
            }
        }
        for d in contracts.discounts_of(id) {
            let (percent, amount) = match d.value {
                DiscountValue::Percent(p) => (text(p), None),
                DiscountValue::Amount(a) => (None, text(a)),
            };
            discounts.push(vec![
                cid.clone(),
                int(d.line as i64),
                percent,
                amount,
                Some(enum_text(&d.applies_to)),
                Some(d.from.to_string()),
                d.until.map(|u| u.to_string()),
            ]);
        }
        let mine = contracts.credits_of(id).iter().filter(|g| g.granted < end);
        for (order, g) in mine.enumerate() {
            let decimals = minor_units(&g.currency).expect("checked by check_contracts");
            let rate = fx_rate(pricing, &g.currency, &c.currency, last_day).map_err(|why| {
                Error::Billing {
                    month: label.clone(),
                    message: format!("credit grant {} of {id}: {why}", g.grant_id),
                    hint: "add the rate to pricing.toml [[fx]] (check_contracts refuses this)",
                }
            })?;
            fx.insert((g.currency.clone(), c.currency.clone()), rate);
            let key = (id.to_string(), g.grant_id.clone());
            let (opening, from) = match contracted.openings.balances.get(&key) {
                Some(b) if b.currency == g.currency => {
                    (b.closing, contracted.openings.source.clone())
                }
                Some(b) => {
                    return Err(Error::Billing {
                        month: label.clone(),
                        message: format!(
                            "credit grant {} of {id} is in {} in {} but closed in {} in {}",
                            g.grant_id,
                            g.currency,
                            contracts.path.display(),
                            b.currency,
                            contracted.openings.source
                        ),
                        hint: "a grant keeps its currency: give the new currency a new grant_id",
                    });
                }
                None if g.granted >= start => (g.amount, format!("granted in {label}")),
                None if contracted.openings.source.is_empty() => (
                    g.amount,
                    "granted amount (the month before is not billed)".to_string(),
                ),
                None => (
                    g.amount,
                    format!("granted amount (not in {})", contracted.openings.source),
                ),
            };
            grants.push(vec![
                cid.clone(),
                Some(g.grant_id.clone()),
                int(order as i64 + 1),
                text(g.amount),
                Some(g.currency.clone()),
                int(i64::from(decimals)),
                int(10i64.pow(decimals)),
                Some(g.granted.to_string()),
                g.expires.map(|e| e.to_string()),
                int(i64::from(g.priority)),
                text(opening),
                Some(from),
                text(rate),
            ]);
        }
    }
    stage(conn, "contract_parts", &parts)?;
    stage(conn, "contract_tiers", &tiers)?;
    stage(conn, "contract_discounts", &discounts)?;
    stage(conn, "credit_grants", &grants)
}

/// Inserts text rows into `table`: appended to a staging table of text
/// columns, then cast to the table's column types in one statement. (An
/// INSERT statement per row is parsed and planned each time: with 1,000
/// contract customers it was most of `meter bill`'s time.)
fn stage(conn: &Connection, table: &str, rows: &[Vec<Option<String>>]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let columns: Vec<(String, String)> = conn
        .prepare(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_name = ? ORDER BY ordinal_position",
        )
        .and_then(|mut stmt| {
            stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(db_err(table))?;
    let staging = format!("{table}_text");
    let text_columns: Vec<String> = columns
        .iter()
        .map(|(n, _)| format!("{n} VARCHAR"))
        .collect();
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE {staging} ({})",
        text_columns.join(", ")
    ))
    .map_err(db_err(table))?;
    let mut appender = conn.appender(&staging).map_err(db_err(table))?;
    for row in rows {
        appender
            .append_row(duckdb::appender_params_from_iter(row))
            .map_err(db_err(table))?;
    }
    appender.flush().map_err(db_err(table))?;
    drop(appender);
    let casts: Vec<String> = columns
        .iter()
        .map(|(n, t)| format!("CAST({n} AS {t})"))
        .collect();
    conn.execute_batch(&format!(
        "INSERT INTO {table} SELECT {} FROM {staging} ORDER BY rowid; DROP TABLE {staging}",
        casts.join(", ")
    ))
    .map_err(db_err(table))
}

/// A contract enum as the text the billing tables hold (its serde name,
/// as contracts.toml writes it).
pub fn enum_text(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("a unit enum")
}

/// Checks that a customer can be billed, collecting the FX pairs it needs.
fn admit(
    c: &Customer,
    pricing: &Pricing,
    date: NaiveDate,
    fx: &mut BTreeMap<(String, String), Decimal>,
) -> std::result::Result<(), String> {
    let plan = pricing.plans.get(&c.tier).ok_or_else(|| {
        format!(
            "plan {:?} (column `tier`) is not in pricing.toml [plans] ({})",
            c.tier,
            pricing.plans.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    if minor_units(&c.currency).is_none() {
        return Err(format!(
            "currency {} is not one meter knows the minor unit of",
            c.currency
        ));
    }
    for (what, value, places) in [
        ("monthly_limit", c.monthly_limit, LIMIT_PLACES),
        ("markup", c.markup, FEE_PLACES),
    ] {
        if let Some(v) = value.filter(|v| v.scale() > places || v.is_sign_negative()) {
            return Err(format!(
                "{what} {v} must be positive with at most {places} decimal places"
            ));
        }
    }
    for from in [pricing.currency.as_str(), plan.currency.as_str()] {
        let pair = (from.to_string(), c.currency.clone());
        if fx.contains_key(&pair) {
            continue;
        }
        let rate = fx_rate(pricing, from, &c.currency, date)?;
        fx.insert(pair, rate);
    }
    Ok(())
}

/// The rate in force on `date`: direct, or the inverse of the opposite pair
/// rounded to 8 places (half to even); the invoice prints the rate used.
/// 1 `from` is `rate` `to`; the same currency is 1.
pub fn fx_rate(
    pricing: &Pricing,
    from: &str,
    to: &str,
    date: NaiveDate,
) -> std::result::Result<Decimal, String> {
    if from == to {
        return Ok(Decimal::ONE);
    }
    if let Some(rate) = pricing.fx_in_force(from, to, date) {
        if rate.scale() > FX_PLACES {
            return Err(format!(
                "the FX rate {from}->{to} {rate} has more than {FX_PLACES} decimal places"
            ));
        }
        return Ok(rate);
    }
    if let Some(rate) = pricing.fx_in_force(to, from, date).filter(|r| !r.is_zero()) {
        return Ok((Decimal::ONE / rate)
            .round_dp_with_strategy(FX_PLACES, RoundingStrategy::MidpointNearestEven));
    }
    Err(format!(
        "no FX rate {from}->{to} in force on {date} in pricing.toml [[fx]]"
    ))
}
