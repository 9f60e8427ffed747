//! What the report reads: the lake's daily aggregates and priced events
//! (through `schemas/report.sql`), the latest published invoice revision, or
//! else a preview of billing run on the month so far without publishing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::NaiveDate;
use duckdb::Connection;
use rust_decimal::Decimal;

use super::figures::Period;
use crate::bill::layout::RevisionFile;
use crate::bill::publish::current_revision;
use crate::bill::sql::{self, db_err, decimal};
use crate::bill::{inputs, read_billing};
use crate::lake::Lake;
use crate::lake::duck::{self, Hive, HiveType};
use crate::lake::store::Store;
use crate::model::error::{Error, Result};
use crate::model::pricing::Pricing;
use crate::model::registry::Registry;
use crate::rollup::aggregate::{API_USAGE, RESOURCE_USAGE};
use crate::rollup::priced::PRICED_API_USAGE;

const SQL: &str = include_str!("../../../schemas/report.sql");

/// Usage of one customer or model over the report's days.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub requests: i64,
    pub tokens: i64,
    pub cost: Decimal,
    pub unpriced_requests: i64,
}

/// Usage without a price, per model and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpricedRow {
    pub provider: String,
    pub model: String,
    /// `priced/api_usage.unpriced_reason`; `None` when the priced events
    /// are no longer in the lake.
    pub reason: Option<String>,
    pub requests: i64,
    pub tokens: i64,
}

/// The lake's figures for a period.
#[derive(Debug, Default)]
pub struct LakeFigures {
    /// Per customer id (`""`: a VM no customer lists).
    pub customers: BTreeMap<String, Usage>,
    /// Per (provider, model).
    pub models: BTreeMap<(String, String), Usage>,
    /// Per day with usage: (requests, cost).
    pub days: BTreeMap<NaiveDate, (i64, Decimal)>,
    pub previous_customers: BTreeMap<String, Decimal>,
    pub previous_models: BTreeMap<(String, String), Decimal>,
    /// Whether the previous month's compared days have any daily rollup.
    pub previous_rolled_up: bool,
    pub unpriced: Vec<UnpricedRow>,
    /// Days of the period without a daily api_usage rollup.
    pub days_not_rolled_up: Vec<NaiveDate>,
}

const USAGE_COLUMNS: &str = "date DATE, customer_id VARCHAR, vm_id VARCHAR, provider VARCHAR, \
    model VARCHAR, requests BIGINT, input_tokens BIGINT, cache_read_tokens BIGINT, \
    cache_write_tokens BIGINT, output_tokens BIGINT, reasoning_tokens BIGINT, \
    cost DECIMAL(38, 18), unpriced_requests BIGINT, unpriced_tokens BIGINT";
const PRICED_COLUMNS: &str = "date DATE, provider VARCHAR, model VARCHAR, priced BOOLEAN, \
    unpriced_reason VARCHAR, input_tokens BIGINT, cache_read_tokens BIGINT, \
    cache_write_tokens BIGINT, output_tokens BIGINT";

/// The daily api_usage columns the preview sums.
const PREVIEW_USAGE: [&str; 13] = [
    "customer_id",
    "vm_id",
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
const PREVIEW_COMPUTE: [&str; 3] = ["customer_id", "vm_id", "compute_seconds"];

/// The Parquet files of `dirs`, in order.
fn files_of(lake: &Lake, dirs: impl IntoIterator<Item = PathBuf>) -> Result<Vec<PathBuf>> {
    lake.parquet_files_of(&dirs.into_iter().collect::<Vec<_>>())
}

/// A view `name` over date-partitioned files with a `date` DATE column, or
/// an empty table with `columns` when there are none. The files are
/// registered as `<name>_files` (lake::duck), with only those columns.
fn dated_view(
    conn: &Connection,
    lake: &Lake,
    name: &str,
    files: &[PathBuf],
    columns: &str,
) -> Result<()> {
    if files.is_empty() {
        return conn
            .execute_batch(&format!("CREATE TABLE {name} ({columns})"))
            .map_err(db_err(name));
    }
    let names = duck::column_names(columns);
    let read = duck::Read {
        hive: Hive::Typed("date", HiveType::Varchar),
        columns: Some(&names),
        ..duck::Read::default()
    };
    duck::register(conn, lake, &format!("{name}_files"), files, &read)?;
    conn.execute_batch(&format!(
        "CREATE VIEW {name} AS SELECT * REPLACE (CAST(date AS DATE) AS date) FROM {name}_files"
    ))
    .map_err(db_err(name))
}

/// Reads the period's figures from the lake.
pub fn lake_figures(lake: &Lake, period: &Period) -> Result<LakeFigures> {
    let conn = Connection::open_in_memory().map_err(db_err("opening DuckDB"))?;
    let mut figures = LakeFigures::default();
    if let (Some(first), Some(last)) = (period.days().next(), period.days().last()) {
        let rel = format!("daily/{}", API_USAGE.table.name());
        let rolled_up = lake.dates_with_files(&rel, first..=last)?;
        figures.days_not_rolled_up = period.days().filter(|d| !rolled_up.contains(d)).collect();
    }
    let current = files_of(lake, period.days().map(|d| API_USAGE.daily_dir(lake, d)))?;
    let previous = files_of(
        lake,
        period.previous_days().map(|d| API_USAGE.daily_dir(lake, d)),
    )?;
    let priced = files_of(
        lake,
        period.days().map(|d| lake.dated_dir(PRICED_API_USAGE, d)),
    )?;
    figures.previous_rolled_up = !previous.is_empty();
    dated_view(&conn, lake, "cur_usage", &current, USAGE_COLUMNS)?;
    dated_view(&conn, lake, "prev_usage", &previous, USAGE_COLUMNS)?;
    dated_view(&conn, lake, "cur_priced", &priced, PRICED_COLUMNS)?;
    conn.execute_batch(SQL)
        .map_err(db_err("schemas/report.sql"))?;

    let query = |sql: &str| conn.prepare(sql).map_err(db_err(sql));
    let mut stmt = query(
        "SELECT customer_id, requests, tokens, cost, unpriced_requests FROM report_customers",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Usage {
                    requests: r.get(1)?,
                    tokens: r.get(2)?,
                    cost: decimal(r.get(3)?)?,
                    unpriced_requests: r.get(4)?,
                },
            ))
        })
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
        .map_err(db_err("report_customers"))?;
    figures.customers = rows.into_iter().collect();

    let mut stmt = query(
        "SELECT provider, model, requests, tokens, cost, unpriced_requests FROM report_models",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                Usage {
                    requests: r.get(2)?,
                    tokens: r.get(3)?,
                    cost: decimal(r.get(4)?)?,
                    unpriced_requests: r.get(5)?,
                },
            ))
        })
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
        .map_err(db_err("report_models"))?;
    figures.models = rows.into_iter().collect();

    let mut stmt = query("SELECT strftime(date, '%Y-%m-%d'), requests, cost FROM report_days")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                decimal(r.get(2)?)?,
            ))
        })
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
        .map_err(db_err("report_days"))?;
    for (date, requests, cost) in rows {
        let date = date.parse::<NaiveDate>().map_err(|e| Error::Lake {
            path: lake.root().join("daily/api_usage"),
            message: format!("partition date {date:?}: {e}"),
        })?;
        figures.days.insert(date, (requests, cost));
    }

    let mut stmt = query("SELECT customer_id, cost FROM report_prev_customers")?;
    figures.previous_customers = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, decimal(r.get(1)?)?)))
        .and_then(|rows| rows.collect::<duckdb::Result<_>>())
        .map_err(db_err("report_prev_customers"))?;
    let mut stmt = query("SELECT provider, model, cost FROM report_prev_models")?;
    figures.previous_models = stmt
        .query_map([], |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                decimal(r.get(2)?)?,
            ))
        })
        .and_then(|rows| rows.collect::<duckdb::Result<_>>())
        .map_err(db_err("report_prev_models"))?;

    let mut stmt = query(
        "SELECT provider, model, reason, requests, tokens FROM report_unpriced \
         ORDER BY provider, model, reason NULLS LAST",
    )?;
    figures.unpriced = stmt
        .query_map([], |r| {
            Ok(UnpricedRow {
                provider: r.get(0)?,
                model: r.get(1)?,
                reason: r.get(2)?,
                requests: r.get(3)?,
                tokens: r.get(4)?,
            })
        })
        .and_then(|rows| rows.collect::<duckdb::Result<_>>())
        .map_err(db_err("report_unpriced"))?;
    Ok(figures)
}

/// One customer's invoice total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoiced {
    pub customer_id: String,
    pub currency: String,
    /// The invoice total (net of tax), in `currency`.
    pub total: Decimal,
    /// The provider cost the invoice was computed from (pricing currency).
    pub provider_cost: Decimal,
    /// Contract lines, in `currency` (schemas/contracts.md): discounts (0 or
    /// less), commitment true-up, prepaid credit applied (0 or less).
    pub discounts: Decimal,
    pub commitment: Decimal,
    pub credit: Decimal,
}

/// One prepaid credit grant's month, as `credits.csv` states it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CreditLine {
    pub customer_id: String,
    pub grant_id: String,
    pub currency: String,
    pub opening: Decimal,
    pub applied: Decimal,
    pub expired: Decimal,
    pub closing: Decimal,
    pub status: String,
}

impl CreditLine {
    fn of(b: &crate::bill::render::CreditBalance) -> CreditLine {
        let d = |m: i64| Decimal::new(m, b.decimals);
        CreditLine {
            customer_id: b.customer_id.clone(),
            grant_id: b.grant_id.clone(),
            currency: b.currency.clone(),
            opening: d(b.opening_minor),
            applied: d(b.applied_minor),
            expired: d(b.expired_minor),
            closing: d(b.closing_minor),
            status: b.status.clone(),
        }
    }
}

/// The prepaid credit grants of a published revision (none without a
/// `credits.csv`).
pub fn published_credits(store: &Store, month: &str, revision: u32) -> Result<Vec<CreditLine>> {
    let key = RevisionFile::Credits.key(month, revision).expect("one key");
    let Some(bytes) = store.get(&key)? else {
        return Ok(Vec::new());
    };
    let bad = |message: String| Error::Report {
        month: month.to_string(),
        message: format!("{}: {message}", store.object_url(&key)),
        hint: "the published invoices are not what meter wrote: restore them from the store, or bill the month again",
    };
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(format!("no column `{name}`")))
    };
    let names = [
        "customer_id",
        "grant_id",
        "currency",
        "opening",
        "applied",
        "expired",
        "closing",
        "status",
    ];
    let at: Vec<usize> = names.iter().map(|n| column(n)).collect::<Result<_>>()?;
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let r = record.map_err(|e| bad(e.to_string()))?;
        let text = |k: usize| r.get(at[k]).unwrap_or("").to_string();
        let number = |k: usize| -> Result<Decimal> {
            text(k).parse::<Decimal>().map_err(|_| {
                bad(format!(
                    "line {}: `{}` {:?} is not a number",
                    i + 2,
                    names[k],
                    text(k)
                ))
            })
        };
        out.push(CreditLine {
            customer_id: text(0),
            grant_id: text(1),
            currency: text(2),
            opening: number(3)?,
            applied: number(4)?,
            expired: number(5)?,
            closing: number(6)?,
            status: text(7),
        });
    }
    Ok(out)
}

/// The latest published revision's totals, if the month is billed.
pub fn published(store: &Store, month: &str) -> Result<Option<(u32, Vec<Invoiced>)>> {
    let bad = |key: &str, message: String| Error::Report {
        month: month.to_string(),
        message: format!("{}: {message}", store.object_url(key)),
        hint: "the published invoices are not what meter wrote: restore them from the store, or bill the month again",
    };
    let Some(revision) = current_revision(store, month)? else {
        return Ok(None);
    };
    let key = RevisionFile::Summary.key(month, revision).expect("one key");
    let bytes = store.get(&key)?.ok_or_else(|| {
        bad(
            &key,
            "missing, though latest.json names its revision".into(),
        )
    })?;
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let headers = reader
        .headers()
        .map_err(|e| bad(&key, e.to_string()))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(&key, format!("no column `{name}`")))
    };
    let (id, currency, total, cost) = (
        column("customer_id")?,
        column("currency")?,
        column("total")?,
        column("provider_cost")?,
    );
    // Summaries written before contracts have no contract columns: 0.
    let optional = |name: &str| headers.iter().position(|h| h == name);
    let (discounts, commitment, credit) = (
        optional("discounts"),
        optional("commitment"),
        optional("credit"),
    );
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let r = record.map_err(|e| bad(&key, e.to_string()))?;
        let number = |col: usize, name: &str| -> Result<Decimal> {
            let cell = r.get(col).unwrap_or("");
            cell.parse::<Decimal>().map_err(|_| {
                bad(
                    &key,
                    format!("line {}: `{name}` {cell:?} is not a number", i + 2),
                )
            })
        };
        out.push(Invoiced {
            customer_id: r.get(id).unwrap_or("").to_string(),
            currency: r.get(currency).unwrap_or("").to_string(),
            total: number(total, "total")?,
            provider_cost: number(cost, "provider_cost")?,
            discounts: discounts.map_or(Ok(Decimal::ZERO), |c| number(c, "discounts"))?,
            commitment: commitment.map_or(Ok(Decimal::ZERO), |c| number(c, "commitment"))?,
            credit: credit.map_or(Ok(Decimal::ZERO), |c| number(c, "credit"))?,
        });
    }
    Ok(Some((revision, out)))
}

/// A preview's invoices, the customers billing refused (each with why) and
/// the prepaid credit grants.
pub type Preview = (Vec<Invoiced>, Vec<(String, String)>, Vec<CreditLine>);

/// Billing's figures for the period without publishing anything: the
/// billing inputs and SQL of `meter bill`, with the month's aggregates
/// replaced by the sums of the period's daily ones (for a finished month the
/// same numbers, by the rollup's invariant). Subscription fees are the whole
/// month's. Returns the invoices and the customers billing refused.
pub fn preview(
    lake: &Lake,
    period: &Period,
    registry: &Registry,
    pricing: &Pricing,
    contracts: &inputs::ContractInputs,
) -> Result<Preview> {
    let conn = Connection::open_in_memory().map_err(db_err("opening DuckDB"))?;
    let loaded = inputs::load(&conn, lake, period.start, registry, pricing, contracts)?;
    conn.execute_batch("DELETE FROM usage_monthly; DELETE FROM compute_monthly;")
        .map_err(db_err("preview inputs"))?;
    // Contract customers bill from the daily rows: only the period's days.
    if let Some(last) = period.days().last() {
        conn.execute_batch(&format!(
            "DELETE FROM usage_daily_lines WHERE date > DATE '{last}'; \
             DELETE FROM compute_daily WHERE date > DATE '{last}';"
        ))
        .map_err(db_err("preview inputs"))?;
    }
    // The period's daily aggregates, summed over its days.
    let sums = [
        (
            files_of(lake, period.days().map(|d| API_USAGE.daily_dir(lake, d)))?,
            &PREVIEW_USAGE[..],
            "INSERT INTO usage_monthly SELECT customer_id, vm_id, provider, model, sum(requests), \
             sum(input_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(output_tokens), \
             sum(reasoning_tokens), sum(cost), sum(unpriced_requests), sum(unpriced_tokens) \
             FROM daily GROUP BY customer_id, vm_id, provider, model",
            "preview: daily api_usage",
        ),
        (
            files_of(
                lake,
                period.days().map(|d| RESOURCE_USAGE.daily_dir(lake, d)),
            )?,
            &PREVIEW_COMPUTE[..],
            "INSERT INTO compute_monthly SELECT customer_id, vm_id, sum(compute_seconds) \
             FROM daily GROUP BY customer_id, vm_id",
            "preview: daily resource_usage",
        ),
    ];
    for (files, columns, insert, what) in sums {
        let read = duck::Read {
            columns: Some(columns),
            ..duck::Read::default()
        };
        let registered = duck::register(&conn, lake, "daily", &files, &read)?;
        if registered != duck::Registered::Nothing {
            conn.execute_batch(insert).map_err(db_err(what))?;
            duck::unregister(&conn, "daily", registered)?;
        }
    }
    sql::run_billing(&conn)?;
    let billing = read_billing(&conn, &period.month())?;
    let invoices = billing
        .summary
        .iter()
        .map(|r| Invoiced {
            customer_id: r.customer_id.clone(),
            currency: r.currency.clone(),
            total: Decimal::new(r.total_minor, r.decimals),
            provider_cost: r.provider_cost,
            discounts: Decimal::new(r.discount_minor, r.decimals),
            commitment: Decimal::new(r.commitment_minor, r.decimals),
            credit: Decimal::new(r.credit_minor, r.decimals),
        })
        .collect();
    let credits = billing.credits.iter().map(CreditLine::of).collect();
    Ok((invoices, loaded.refused, credits))
}
