//! `meter explain`: the events behind a customer's invoice, so that a
//! disputed line can be traced to raw files and line numbers.
//!
//! The invoice is the customer's CSV in the revision `latest.json` names
//! (the `invoices` view of `schemas/views.sql`); the events are selected
//! the way billing aggregated them: the customer's priced events
//! (`priced_api_usage`) whose UTC `date` falls in the month (the daily and
//! monthly aggregates billing reads are built from exactly these), of the
//! line's provider and model, priced ones for an `api_usage` line and
//! unpriced ones for an `unpriced` line; for a `compute` line, the
//! customer's daily compute seconds per VM. The tie-out recomputes every
//! column of the line from those events (requests, each token kind, the
//! quantity, the provider cost, and the amount with the billing SQL's own
//! rounding, `round_div` of `schemas/billing/invoice.sql`, and the factor and
//! FX rate the line prints) and compares them with the published line.

use chrono::NaiveDate;
use duckdb::Connection;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::bill::inputs::{minor_units, month_bounds};
use crate::bill::sql::{self, db_err};
use crate::model::error::{Error, Result};
use crate::read::query::{self, Output, QueryOptions, literal};

pub struct ExplainOptions {
    pub query: QueryOptions,
    /// Any day of the month.
    pub month: NaiveDate,
    pub customer: String,
    /// The invoice line (1-based, the CSV's `line`); `None`: all lines and a
    /// summary of the events by day and model.
    pub line: Option<i64>,
}

/// One published invoice line, as the `invoices` view reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvoiceLine {
    pub invoice_number: String,
    pub revision: i64,
    pub line: i64,
    pub line_type: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub description: String,
    pub quantity: String,
    pub unit: String,
    pub unit_price: Option<Decimal>,
    pub requests: Option<i64>,
    /// input, cache read, cache write, output and reasoning tokens.
    pub tokens: [Option<i64>; 5],
    pub provider_cost: Option<Decimal>,
    pub cost_currency: Option<String>,
    pub fx_rate: Option<Decimal>,
    pub rule: String,
    pub amount: Decimal,
    pub currency: String,
}

/// One measure of the tie-out: the events' value against the line's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub measure: String,
    pub events: Decimal,
    pub line: Decimal,
}

impl Check {
    pub fn matches(&self) -> bool {
        self.events == self.line
    }
}

#[derive(Debug)]
pub struct Explanation {
    pub month: String,
    pub customer: String,
    pub lines: Vec<InvoiceLine>,
    /// The invoice lines as a table.
    pub lines_table: Output,
    pub detail: Detail,
}

#[derive(Debug)]
pub enum Detail {
    /// Without `--line`: the customer's events of the month by day and model.
    Summary(Output),
    /// With `--line K`.
    Line {
        line: Box<InvoiceLine>,
        /// What is behind it: events, days and VMs, or nothing (a fee).
        behind: Output,
        /// What `behind` is, in a sentence.
        what: String,
        checks: Vec<Check>,
    },
}

impl Explanation {
    /// Whether the line's tie-out fails (never for a summary).
    pub fn mismatch(&self) -> bool {
        match &self.detail {
            Detail::Summary(_) => false,
            Detail::Line { checks, .. } => checks.iter().any(|c| !c.matches()),
        }
    }

    /// The table the machine formats print: the events behind the line, or
    /// the summary by day and model.
    pub fn primary(&self) -> &Output {
        match &self.detail {
            Detail::Summary(o) => o,
            Detail::Line { behind, .. } => behind,
        }
    }

    /// The invoice heading.
    pub fn heading(&self) -> String {
        let first = &self.lines[0];
        format!(
            "Invoice {} of {} for {}: rev-{}, {} lines, total {} {}\n",
            first.invoice_number,
            self.customer,
            self.month,
            first.revision,
            self.lines.len(),
            self.lines.iter().map(|l| l.amount).sum::<Decimal>(),
            first.currency
        )
    }

    /// The tie-out, one measure a line, and the verdict.
    pub fn tie_out(&self) -> String {
        let Detail::Line { line, checks, .. } = &self.detail else {
            return String::new();
        };
        if checks.is_empty() {
            return format!(
                "Tie-out: line {} is a flat fee, not computed from events.\n",
                line.line
            );
        }
        let rows: Vec<Vec<Option<String>>> = checks
            .iter()
            .map(|c| {
                vec![
                    Some(c.measure.clone()),
                    Some(c.events.normalize().to_string()),
                    Some(c.line.normalize().to_string()),
                    Some(if c.matches() { "ok" } else { "MISMATCH" }.to_string()),
                ]
            })
            .collect();
        let table = Output {
            columns: ["measure", "events", "line", "status"]
                .iter()
                .enumerate()
                .map(|(i, n)| query::Column {
                    name: n.to_string(),
                    kind: if (1..3).contains(&i) {
                        query::Kind::Decimal
                    } else {
                        query::Kind::Text
                    },
                })
                .collect(),
            rows,
        };
        let body = table.table();
        let body = body.rsplit_once('(').map_or(body.as_str(), |b| b.0);
        let verdict = if self.mismatch() {
            format!(
                "The events DO NOT match line {}: the lake changed since rev-{} was published \
                 (run `meter reconcile`, then `meter rerun` the month), or the line was altered.\n",
                line.line, line.revision
            )
        } else {
            format!("The events match line {} exactly.\n", line.line)
        };
        format!("Tie-out:\n{body}{verdict}")
    }

    /// Everything, for a terminal.
    pub fn text(&self) -> String {
        let mut s = self.heading();
        s.push('\n');
        match &self.detail {
            Detail::Summary(summary) => {
                s += &self.lines_table.table();
                s += "\nEvents of the month by day (UTC) and model (priced_api_usage); \
                      `meter explain --line K` lists the events behind line K:\n";
                s += &summary.table();
            }
            Detail::Line {
                line, behind, what, ..
            } => {
                s += &format!(
                    "Line {}: {} | {} {} | {} {} ({})\n\n{what}:\n",
                    line.line,
                    line.description,
                    line.quantity,
                    line.unit,
                    line.amount,
                    line.currency,
                    line.rule
                );
                s += &behind.table();
                s.push('\n');
                s += &self.tie_out();
            }
        }
        s
    }
}

fn not_found(opts: &ExplainOptions, month: &str, message: String) -> Error {
    Error::Explain {
        month: month.to_string(),
        customer: opts.customer.clone(),
        message,
        hint: "pick one of the names listed; `meter query \"SELECT DISTINCT month, customer_id FROM invoices\"` lists every invoice",
    }
}

/// One column of a query as text, NULL as empty.
fn column(out: &Output) -> Vec<String> {
    out.rows
        .iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

fn decimal(v: &Option<String>, what: &str) -> Result<Option<Decimal>> {
    v.as_deref()
        .map(|s| {
            let trimmed = match s.contains('.') {
                true => s.trim_end_matches('0').trim_end_matches('.'),
                false => s,
            };
            trimmed.parse::<Decimal>().map_err(|e| Error::Query {
                message: format!("{what} {s:?} is not a decimal meter can hold: {e}"),
            })
        })
        .transpose()
}

fn required(v: Option<Decimal>) -> Decimal {
    v.unwrap_or_default()
}

/// Explains a customer's invoice of a month, or one of its lines.
pub fn run(opts: &ExplainOptions) -> Result<Explanation> {
    let (start, end, _) = month_bounds(opts.month);
    let month = start.format("%Y-%m").to_string();
    let conn = query::open(&opts.query)?;

    let months = column(&query::run(
        &conn,
        "SELECT DISTINCT month FROM invoices ORDER BY month",
    )?);
    if !months.contains(&month) {
        return Err(not_found(
            opts,
            &month,
            format!(
                "no invoices of {month} under {} (months with invoices: {})",
                opts.query.out,
                list_or_none(&months)
            ),
        ));
    }
    let customers = column(&query::run(
        &conn,
        &format!(
            "SELECT DISTINCT customer_id FROM invoices WHERE month = {} ORDER BY 1",
            literal(&month)
        ),
    )?);
    if !customers.contains(&opts.customer) {
        return Err(not_found(
            opts,
            &month,
            format!(
                "customer {} has no invoice for {month} (invoiced: {})",
                opts.customer,
                list_or_none(&customers)
            ),
        ));
    }
    let where_invoice = format!(
        "month = {} AND customer_id = {}",
        literal(&month),
        literal(&opts.customer)
    );
    let lines_table = query::run(
        &conn,
        &format!(
            "SELECT line, line_type, description, quantity, unit, requests, provider_cost, \
             cost_currency, fx_rate, rule, amount, currency \
             FROM invoices WHERE {where_invoice} ORDER BY line"
        ),
    )?;
    let raw = query::run(
        &conn,
        &format!(
            "SELECT invoice_number, revision, line, line_type, provider, model, description, \
             quantity, unit, unit_price, requests, provider_cost, cost_currency, fx_rate, rule, \
             amount, currency, {TOKEN_COLUMNS} FROM invoices WHERE {where_invoice} ORDER BY line"
        ),
    )?;
    let lines = raw
        .rows
        .iter()
        .map(|r| -> Result<InvoiceLine> {
            let text = |i: usize| r[i].clone().unwrap_or_default();
            let int = |i: usize| r[i].as_deref().and_then(|s| s.parse::<i64>().ok());
            Ok(InvoiceLine {
                invoice_number: text(0),
                revision: int(1).unwrap_or_default(),
                line: int(2).unwrap_or_default(),
                line_type: text(3),
                provider: r[4].clone(),
                model: r[5].clone(),
                description: text(6),
                quantity: text(7),
                unit: text(8),
                unit_price: decimal(&r[9], "unit_price")?,
                requests: int(10),
                tokens: [int(17), int(18), int(19), int(20), int(21)],
                provider_cost: decimal(&r[11], "provider_cost")?,
                cost_currency: r[12].clone(),
                fx_rate: decimal(&r[13], "fx_rate")?,
                rule: text(14),
                amount: required(decimal(&r[15], "amount")?),
                currency: text(16),
            })
        })
        .collect::<Result<Vec<_>>>()?;

    let period = format!(
        "customer_id = {} AND date >= DATE '{start}' AND date < DATE '{end}'",
        literal(&opts.customer)
    );
    let detail = match opts.line {
        None => Detail::Summary(query::run(
            &conn,
            &format!(
                "SELECT date, provider, model, \
                 count(*) FILTER (WHERE priced) AS requests, \
                 count(*) FILTER (WHERE NOT priced) AS unpriced_requests, \
                 sum(input_tokens + cache_read_tokens + cache_write_tokens + output_tokens) AS tokens, \
                 sum(cost) AS cost, any_value(currency) AS currency \
                 FROM priced_api_usage WHERE {period} \
                 GROUP BY ALL ORDER BY date, provider, model"
            ),
        )?),
        Some(k) => {
            let Some(line) = lines.iter().find(|l| l.line == k) else {
                let names: Vec<String> = lines
                    .iter()
                    .map(|l| format!("{} {}", l.line, short(l)))
                    .collect();
                return Err(not_found(
                    opts,
                    &month,
                    format!(
                        "invoice {} has no line {k}; its lines are: {}",
                        lines[0].invoice_number,
                        names.join("; ")
                    ),
                ));
            };
            match line.line_type.as_str() {
                "commitment" => explain_commitment(line, &lines)?,
                "discount" => explain_discount(line, &lines)?,
                "credit" => explain_credit(&conn, (&month, &opts.customer), line, &lines)?,
                _ => explain_line(&conn, line, &period)?,
            }
        }
    };
    Ok(Explanation {
        month,
        customer: opts.customer.clone(),
        lines,
        lines_table,
        detail,
    })
}

fn list_or_none(names: &[String]) -> String {
    match names.is_empty() {
        true => "none".into(),
        false => names.join(", "),
    }
}

/// A line in a few words: its type, provider and model.
fn short(l: &InvoiceLine) -> String {
    [
        Some(l.line_type.as_str()),
        l.provider.as_deref(),
        l.model.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ")
}

/// The API factor the line's rule prints: `cost x F` (reseller, overage), 0
/// when the usage is within the allowance (`included`).
fn api_factor(rule: &str) -> Option<Decimal> {
    if rule.starts_with("included") {
        return Some(Decimal::ZERO);
    }
    rule.rsplit_once("cost x ")
        .and_then(|(_, f)| f.trim().parse::<Decimal>().ok())
}

/// A connection with the billing SQL's macros (`round_div`), by running
/// `inputs.sql` and `invoice.sql` on empty inputs.
fn billing_macros() -> Result<Connection> {
    let conn = Connection::open_in_memory().map_err(db_err("opening DuckDB"))?;
    sql::run_file(&conn, "inputs.sql")?;
    sql::run_file(&conn, "invoice.sql")?;
    Ok(conn)
}

/// A scalar the billing macros compute, as an exact decimal.
fn billing_scalar(conn: &Connection, expr: &str) -> Result<Decimal> {
    let text: String = conn
        .query_row(&format!("SELECT CAST({expr} AS VARCHAR)"), [], |r| r.get(0))
        .map_err(db_err("the tie-out arithmetic"))?;
    Ok(required(decimal(&Some(text), "tie-out")?))
}

/// Sums of a query returning one row, by column, as decimals (NULL: 0).
fn sums(out: &Output) -> Result<Vec<Decimal>> {
    out.rows[0]
        .iter()
        .zip(&out.columns)
        .map(|(v, c)| decimal(v, &c.name).map(required))
        .collect()
}

/// The token columns of an invoice line and of an event, in
/// [`InvoiceLine::tokens`] order.
const TOKEN_COLUMNS: &str =
    "input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens";

/// A commitment line against the invoice's other lines: the usage charges
/// of its days (API and compute lines and the discounts on them), the
/// commitment prorated by its quantity (active days / days), and the
/// true-up, each recomputed here with billing's rounding and compared with
/// what the line's rule prints and its amount.
fn explain_commitment(line: &InvoiceLine, lines: &[InvoiceLine]) -> Result<Detail> {
    let days = line_days(&line.description);
    let within = |l: &InvoiceLine| within(days, l);
    let usage: Decimal = lines
        .iter()
        .filter(|l| within(l) && is_usage_charge(l))
        .map(|l| l.amount)
        .sum();
    let minor = Decimal::from(10i64.pow(minor_units(&line.currency).unwrap_or(2)));
    let (n, d) = line.quantity.split_once('/').unwrap_or(("1", "1"));
    let macros = billing_macros()?;
    // invoice.sql: round_div(commitment x minor x active days, days)
    let committed = billing_scalar(
        &macros,
        &format!(
            "round_div(CAST('{}' AS DECIMAL(18, 6)) * CAST({minor} AS BIGINT) * CAST({n} AS BIGINT), \
             CAST({d} AS BIGINT))",
            required(line.unit_price)
        ),
    )? / minor;
    // The rule prints `commitment: <committed> - usage <usage>, at least 0`.
    let printed = |after: &str, before: &str| printed(&line.rule, after, before);
    let check = |measure: &str, events: Decimal, line: Decimal| Check {
        measure: measure.to_string(),
        events,
        line,
    };
    let checks = vec![
        check(
            "commitment prorated",
            committed,
            printed("commitment: ", " - usage"),
        ),
        check(
            "usage charges of its days (lines)",
            usage,
            printed("usage ", ", at least"),
        ),
        check(
            &format!("true-up ({})", line.currency),
            (committed - usage).max(Decimal::ZERO),
            line.amount,
        ),
    ];
    let behind = lines_output(lines.iter().filter(|l| {
        within(l) && matches!(l.line_type.as_str(), "api_usage" | "compute" | "discount")
    }));
    Ok(Detail::Line {
        line: Box::new(line.clone()),
        behind,
        what: format!(
            "The minimum commitment of the customer's contract, prorated by active days, against \
             the usage charges of the same days: the invoice's API and compute lines and the \
             discounts on them ({})",
            line.rule
        ),
        checks,
    })
}

/// Whether line `l` covers only days of `days` (`None`: the whole month,
/// which every line is within): a contract customer's API, compute and
/// contract lines name their days at the end of their description.
fn within(days: Option<(NaiveDate, NaiveDate)>, l: &InvoiceLine) -> bool {
    match (days, line_days(&l.description)) {
        (None, _) => true,
        (Some((a, b)), Some((c, d))) => a <= c && d <= b,
        (Some(_), None) => false,
    }
}

/// Whether line `l` is a usage charge: an API or compute line, or a
/// discount on one of those (the commitment and credit count these).
fn is_usage_charge(l: &InvoiceLine) -> bool {
    match l.line_type.as_str() {
        "api_usage" | "compute" => true,
        "discount" => {
            l.description.contains(" on API usage ") || l.description.contains(" on compute ")
        }
        _ => false,
    }
}

/// The invoice's lines as a table: line, type, description, amount.
fn lines_output<'a>(lines: impl Iterator<Item = &'a InvoiceLine>) -> Output {
    Output {
        columns: ["line", "line_type", "description", "amount"]
            .iter()
            .map(|n| query::Column {
                name: n.to_string(),
                kind: if *n == "amount" {
                    query::Kind::Decimal
                } else {
                    query::Kind::Text
                },
            })
            .collect(),
        rows: lines
            .map(|l| {
                vec![
                    Some(l.line.to_string()),
                    Some(l.line_type.clone()),
                    Some(l.description.clone()),
                    Some(l.amount.to_string()),
                ]
            })
            .collect(),
    }
}

/// A number the rule prints between `after` and `before` (`before` empty:
/// to the end); `Decimal::MIN` when it does not.
fn printed(rule: &str, after: &str, before: &str) -> Decimal {
    rule.split_once(after)
        .map(|(_, rest)| match before {
            "" => rest,
            b => rest.split(b).next().unwrap_or(rest),
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(Decimal::MIN)
}

/// A discount line against the invoice's other lines: its base (the plan
/// fee's share of the discount's days, or the API or compute lines of
/// those days, or both), recomputed from the lines, and the discount of
/// that base with billing's rounding, compared with the rule and amount.
fn explain_discount(line: &InvoiceLine, lines: &[InvoiceLine]) -> Result<Detail> {
    let minor = Decimal::from(10i64.pow(minor_units(&line.currency).unwrap_or(2)));
    let days = line_days(&line.description);
    let within = |l: &InvoiceLine| within(days, l);
    let minor_sum = |kind: &str, all_days: bool| -> Decimal {
        lines
            .iter()
            .filter(|l| l.line_type == kind && (all_days || within(l)))
            .map(|l| l.amount * minor)
            .sum()
    };
    // The fee's share of the discount's days is fee x its days / active
    // days (the fee line's quantity is active days / days of the month).
    let active = lines
        .iter()
        .find(|l| l.line_type == "subscription")
        .and_then(|l| l.quantity.split_once('/').map(|(n, _)| n.to_string()))
        .and_then(|n| n.parse::<Decimal>().ok())
        .unwrap_or(Decimal::ONE)
        .max(Decimal::ONE);
    let part_days = days.map_or(active, |(a, b)| Decimal::from((b - a).num_days() + 1));
    // invoice.sql: base = base_num / active days, in minor units, exactly.
    let fee_num = minor_sum("subscription", true) * part_days;
    let (api_num, compute_num) = (
        minor_sum("api_usage", false) * active,
        minor_sum("compute", false) * active,
    );
    let (base_num, scope) = if line.description.contains(" on the plan fee ") {
        (fee_num, "the plan fee's share of its days")
    } else if line.description.contains(" on API usage ") {
        (api_num, "the API lines of its days")
    } else if line.description.contains(" on compute ") {
        (compute_num, "the compute lines of its days")
    } else {
        (
            fee_num + api_num + compute_num,
            "the plan fee's share of its days and the API and compute lines of its days",
        )
    };
    let macros = billing_macros()?;
    let base = billing_scalar(
        &macros,
        &format!("round_div(CAST({base_num} AS HUGEINT), CAST({active} AS HUGEINT))"),
    )?;
    // invoice.sql: a percent: round_div(base_num x percent, 100 x active
    // days); an amount: round_div(amount x minor x its days, days), at
    // most the base.
    let off = match line.unit.as_str() {
        "percent" => {
            let percent = line
                .quantity
                .trim_end_matches('%')
                .parse::<Decimal>()
                .unwrap_or_default();
            billing_scalar(
                &macros,
                &format!(
                    "round_div(CAST({base_num} AS HUGEINT) * CAST('{percent}' AS DECIMAL(18, 6)), \
                     CAST({} AS HUGEINT))",
                    Decimal::from(100) * active
                ),
            )?
        }
        _ => {
            let (n, d) = line.quantity.split_once('/').unwrap_or(("1", "1"));
            billing_scalar(
                &macros,
                &format!(
                    "round_div(CAST('{}' AS DECIMAL(18, 6)) * CAST({minor} AS BIGINT) \
                     * CAST({n} AS BIGINT), CAST({d} AS BIGINT))",
                    required(line.unit_price)
                ),
            )?
            .min(base)
        }
    };
    let (base, off) = (base / minor, off / minor);
    let printed_base = match line.unit.as_str() {
        "percent" => printed(&line.rule, "% of ", ""),
        _ => printed(&line.rule, "at most ", ""),
    };
    let checks = vec![
        Check {
            measure: format!("base: {scope} (lines)"),
            events: base,
            line: printed_base,
        },
        Check {
            measure: format!("discount ({})", line.currency),
            events: -off,
            line: line.amount,
        },
    ];
    let behind = lines_output(lines.iter().filter(|l| {
        l.line_type == "subscription"
            || (matches!(l.line_type.as_str(), "api_usage" | "compute") && within(l))
    }));
    Ok(Detail::Line {
        line: Box::new(line.clone()),
        behind,
        what: format!(
            "A discount of the customer's contract (schemas/contracts.md) on {scope}, recomputed \
             from the invoice's lines and rounded once ({})",
            line.rule
        ),
        checks,
    })
}

/// A credit line against the invoice's lines and `credits.csv`: the usage
/// charges credit pays (API, compute and commitment lines and the
/// discounts on them, at most the invoice before credit), and the grant's
/// applied amount, compared with the rule and the line.
fn explain_credit(
    conn: &Connection,
    (month, customer): (&str, &str),
    line: &InvoiceLine,
    lines: &[InvoiceLine],
) -> Result<Detail> {
    let usage: Decimal = lines
        .iter()
        .filter(|l| is_usage_charge(l) || l.line_type == "commitment")
        .map(|l| l.amount)
        .sum();
    let before_credit: Decimal = lines
        .iter()
        .filter(|l| !matches!(l.line_type.as_str(), "credit" | "total"))
        .map(|l| l.amount)
        .sum();
    let payable = usage.min(before_credit).max(Decimal::ZERO);
    let grant = line
        .description
        .strip_prefix("Prepaid credit ")
        .and_then(|r| r.split(" (").next())
        .unwrap_or_default()
        .to_string();
    let behind = query::run(
        conn,
        &format!(
            "SELECT grant_id, burn_order, currency, opening, applied, closing, status, fx_rate, \
             applied_invoice_amount, invoice_currency FROM credit_balances \
             WHERE month = {} AND customer_id = {} ORDER BY burn_order",
            literal(month),
            literal(customer)
        ),
    )?;
    let applied = behind
        .rows
        .iter()
        .find(|r| r[0].as_deref() == Some(grant.as_str()))
        .and_then(|r| r[8].as_deref())
        .and_then(|v| v.parse::<Decimal>().ok())
        .unwrap_or(Decimal::MIN);
    let earlier: Decimal = lines
        .iter()
        .filter(|l| l.line_type == "credit" && l.line < line.line)
        .map(|l| -l.amount)
        .sum();
    let checks = vec![
        Check {
            measure: "usage charges credit pays (lines)".into(),
            events: payable,
            line: printed(&line.rule, "usage charges ", " paid"),
        },
        Check {
            measure: format!("applied from {grant} (credits.csv, {})", line.currency),
            events: -applied,
            line: line.amount,
        },
        Check {
            measure: "at most what earlier grants left unpaid".into(),
            events: (payable - earlier).max(Decimal::ZERO).min(-line.amount),
            line: -line.amount,
        },
    ];
    Ok(Detail::Line {
        line: Box::new(line.clone()),
        behind,
        what: format!(
            "Prepaid credit applied to the usage charges after discounts and the commitment \
             true-up, grant by grant in burn order (priority, soonest expiry, oldest grant); the \
             grants' balances are the revision's credits.csv ({})",
            line.rule
        ),
        checks,
    })
}

/// The days a contract customer's API or compute line covers, as its
/// description ends: `..., 2026-10-12 to 2026-10-31` (a part of the month,
/// or the days of a part billed at one tier; schemas/contracts.md).
fn line_days(description: &str) -> Option<(NaiveDate, NaiveDate)> {
    let (rest, last) = description.rsplit_once(" to ")?;
    let (_, first) = rest.rsplit_once(", ")?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

fn explain_line(conn: &Connection, line: &InvoiceLine, period: &str) -> Result<Detail> {
    let days = matches!(line.line_type.as_str(), "api_usage" | "compute")
        .then(|| line_days(&line.description))
        .flatten();
    let period = &match days {
        Some((first, last)) => {
            format!("{period} AND date >= DATE '{first}' AND date <= DATE '{last}'")
        }
        None => period.to_string(),
    };
    let days_text = days.map_or(String::new(), |(first, last)| {
        format!(", {first} to {last}")
    });
    let tokens = "input_tokens + cache_read_tokens + cache_write_tokens + output_tokens";
    let minor = Decimal::from(10i64.pow(minor_units(&line.currency).unwrap_or(2)));
    let quantity = line.quantity.parse::<Decimal>().unwrap_or(Decimal::ZERO);
    let model_events = |priced: bool| {
        format!(
            "FROM priced_api_usage WHERE {period} AND provider IS NOT DISTINCT FROM {} \
             AND model IS NOT DISTINCT FROM {} AND {}priced",
            line.provider.as_deref().map_or("NULL".to_string(), literal),
            line.model.as_deref().map_or("NULL".to_string(), literal),
            if priced { "" } else { "NOT " }
        )
    };
    let events_list = |from: &str| {
        query::run(
            conn,
            &format!(
                "SELECT event_id, ts, vm_id, model, input_tokens, cache_read_tokens, \
                 cache_write_tokens, output_tokens, reasoning_tokens, {tokens} AS tokens, cost, \
                 source_file, source_line {from} ORDER BY ts, event_id"
            ),
        )
    };
    // count, the five token kinds, all tokens, cost
    let totals = |from: &str| -> Result<Vec<Decimal>> {
        let kinds: Vec<String> = TOKEN_COLUMNS
            .split(", ")
            .map(|c| format!("sum({c})"))
            .collect();
        sums(&query::run(
            conn,
            &format!(
                "SELECT count(*), {}, sum({tokens}), sum(cost) {from}",
                kinds.join(", ")
            ),
        )?)
    };
    let check = |measure: &str, events: Decimal, line: Decimal| Check {
        measure: measure.to_string(),
        events,
        line,
    };
    // Every column of an API or unpriced line against its events: requests,
    // each token kind, the quantity (all tokens) and the provider cost.
    let usage_checks = |t: &[Decimal]| -> Vec<Check> {
        let mut checks = vec![check(
            "requests",
            t[0],
            Decimal::from(line.requests.unwrap_or(0)),
        )];
        for (i, column) in TOKEN_COLUMNS.split(", ").enumerate() {
            checks.push(check(
                column,
                t[1 + i],
                Decimal::from(line.tokens[i].unwrap_or(0)),
            ));
        }
        checks.push(check("tokens (quantity)", t[6], quantity));
        checks.push(check("provider cost", t[7], required(line.provider_cost)));
        checks
    };
    Ok(match line.line_type.as_str() {
        "api_usage" => {
            let from = model_events(true);
            let behind = events_list(&from)?;
            let t = totals(&from)?;
            let mut checks = usage_checks(&t);
            if let (Some(factor), Some(fx)) = (api_factor(&line.rule), line.fx_rate) {
                let macros = billing_macros()?;
                // invoice.sql: round_div(cost(38,12) x api_factor x cost_fx x minor, 1)
                let amount_minor = billing_scalar(
                    &macros,
                    &format!(
                        "round_div(CAST(CAST('{}' AS DECIMAL(38, 18)) AS DECIMAL(38, 12)) \
                         * CAST('{factor}' AS DECIMAL(18, 6)) * CAST('{fx}' AS DECIMAL(38, 8)) \
                         * CAST({minor} AS BIGINT), 1)",
                        t[7]
                    ),
                )?;
                checks.push(check(
                    &format!("amount ({})", line.currency),
                    amount_minor / minor,
                    line.amount,
                ));
            }
            Detail::Line {
                line: Box::new(line.clone()),
                behind,
                what: format!(
                    "The {} priced events behind it (priced_api_usage, UTC dates in the month{days_text}; \
                     source_file:source_line is the raw input line); their exact provider cost \
                     is {} {}",
                    t[0],
                    t[7].normalize(),
                    line.cost_currency.as_deref().unwrap_or("")
                ),
                checks,
            }
        }
        "unpriced" => {
            let from = model_events(false);
            let behind = events_list(&from)?;
            let t = totals(&from)?;
            Detail::Line {
                line: Box::new(line.clone()),
                behind,
                what: format!(
                    "The {} events without a price behind it (not billed; see unpriced_reason in \
                     priced_api_usage)",
                    t[0]
                ),
                checks: usage_checks(&t)
                    .into_iter()
                    .chain([check(
                        &format!("amount ({})", line.currency),
                        Decimal::ZERO,
                        line.amount,
                    )])
                    .collect(),
            }
        }
        "compute" => {
            let from = format!("FROM daily_resource_usage WHERE {period}");
            let behind = query::run(
                conn,
                &format!(
                    "SELECT date, vm_id, samples, compute_seconds, compute_hours {from} \
                     ORDER BY date, vm_id"
                ),
            )?;
            let t = sums(&query::run(
                conn,
                &format!("SELECT sum(compute_seconds) {from}"),
            )?)?;
            let seconds = t[0];
            let macros = billing_macros()?;
            // invoice.sql: hours to 4 places; amount = round_div(rate x fx x minor x seconds, 3600)
            let hours = billing_scalar(
                &macros,
                &format!(
                    "CAST(round_div(CAST({seconds} AS HUGEINT) * 10000, 3600) AS DECIMAL(38, 0)) * 0.0001"
                ),
            )?;
            let mut checks = vec![check("hours (quantity)", hours, quantity)];
            if let Some(price) = line.unit_price {
                let amount_minor = billing_scalar(
                    &macros,
                    &format!(
                        "round_div(CAST('{price}' AS DECIMAL(38, 14)) * CAST({minor} AS BIGINT) \
                         * CAST({seconds} AS HUGEINT), 3600)"
                    ),
                )?;
                checks.push(check(
                    &format!("amount ({})", line.currency),
                    amount_minor / minor,
                    line.amount,
                ));
            }
            Detail::Line {
                line: Box::new(line.clone()),
                behind,
                what: format!(
                    "The customer's compute per day (UTC{days_text}) and VM (daily_resource_usage): \
                     {seconds} seconds; the resource samples are in resource_usage"
                ),
                checks,
            }
        }
        _ => Detail::Line {
            line: Box::new(line.clone()),
            behind: query::run(
                conn,
                &format!(
                    "SELECT line, description, quantity, unit, unit_price, amount, currency \
                     FROM invoices WHERE invoice_number = {} AND line = {}",
                    literal(&line.invoice_number),
                    line.line
                ),
            )?,
            what: "A flat fee: no usage events are behind it (prorated by active days when the \
                   quantity is a fraction)"
                .to_string(),
            checks: Vec::new(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_its_days_at_the_end_of_its_description() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(
            line_days("openai gpt-5: 12 requests, 2026-10-12 to 2026-10-31"),
            Some((d("2026-10-12"), d("2026-10-31")))
        );
        assert_eq!(line_days("openai gpt-5: 12 requests"), None);
        assert_eq!(line_days("Compute: 2 VM(s)"), None);
    }

    #[test]
    fn api_factor_reads_the_rule_billing_prints() {
        assert_eq!(
            api_factor("overage: 53830693 tokens > allowance 1000000, cost x 1.2"),
            Some(Decimal::new(12, 1))
        );
        assert_eq!(
            api_factor("reseller: cost x 1.3"),
            Some(Decimal::new(13, 1))
        );
        assert_eq!(
            api_factor("included: 10 tokens <= allowance 1000000"),
            Some(Decimal::ZERO)
        );
        assert_eq!(api_factor("fee"), None);
    }

    #[test]
    fn billing_rounding_is_half_away_from_zero() {
        let conn = billing_macros().unwrap();
        assert_eq!(
            billing_scalar(&conn, "round_div(CAST('0.5' AS DECIMAL(38, 12)), 1)").unwrap(),
            Decimal::ONE
        );
        assert_eq!(
            billing_scalar(&conn, "round_div(CAST(5399 AS HUGEINT), 3600)").unwrap(),
            Decimal::ONE
        );
    }

    #[test]
    fn a_check_matches_only_when_equal() {
        let c = Check {
            measure: "requests".into(),
            events: Decimal::new(720, 1),
            line: Decimal::from(72),
        };
        assert!(c.matches());
        let d = Check {
            line: Decimal::from(71),
            ..c
        };
        assert!(!d.matches());
    }
}
