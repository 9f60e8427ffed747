//! What a new revision changes against the previous one, and the Stripe
//! corrections that carry the change.
//!
//! Written beside the revision's invoices (never over an earlier revision):
//!
//! ```text
//! invoices/YYYY-MM/rev-N/diff.csv       per customer and line: previous, new, difference
//! invoices/YYYY-MM/rev-N/diff.txt       the same, readable
//! invoices/YYYY-MM/rev-N/corrections.csv  per customer: credit or debit, and how it reaches Stripe
//! stripe/YYYY-MM/rev-N/meter_event_corrections.jsonl   period open: delta meter events
//! stripe/YYYY-MM/rev-N/invoice_items.jsonl             period closed: POST /v1/invoiceitems payloads
//! ```
//!
//! A month's meter events only count while its billing period is open
//! (Stripe finalizes the invoice about an hour after the period ends). While
//! it is open, a change is sent as delta meter events: new identifiers
//! (`<identifier>-r<N>`), negative values for decreases. Once closed, the
//! difference per customer becomes an invoice item for the next invoice.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::inputs::{minor_units, month_bounds};
use super::layout::{self, RevisionFile};
use super::render::{self, EventLine, EventPayload, MeterEvent};
use crate::model::error::{Error, Result};
use crate::model::ids::sha256_hex;

/// Whether meter events for the month of `month` still count: until the
/// first instant of the next month, UTC.
pub fn period_open(month: NaiveDate, now: DateTime<Utc>) -> bool {
    now < period_end(month)
}

/// The first instant (UTC) of the month after `month`'s.
pub fn period_end(month: NaiveDate) -> DateTime<Utc> {
    let (_, end, _) = month_bounds(month);
    end.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// One line of an invoice CSV, as the diff compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub customer_id: String,
    pub customer_name: String,
    pub line_type: String,
    pub provider: String,
    pub model: String,
    pub description: String,
    pub quantity: String,
    pub amount: Decimal,
    pub currency: String,
}

impl Line {
    fn key(&self) -> (String, String, String, String) {
        (
            self.customer_id.clone(),
            self.line_type.clone(),
            self.provider.clone(),
            self.model.clone(),
        )
    }
}

#[derive(Deserialize)]
struct CsvLine {
    customer_id: String,
    customer_name: String,
    line_type: String,
    provider: String,
    model: String,
    description: String,
    quantity: String,
    amount: String,
    currency: String,
}

/// Reads the lines (total row included) of one invoice CSV.
pub fn parse_invoice(url: &str, bytes: &[u8]) -> Result<Vec<Line>> {
    let mut reader = csv::Reader::from_reader(bytes);
    let mut out = Vec::new();
    for (i, row) in reader.deserialize::<CsvLine>().enumerate() {
        let bad = |message: String| Error::Billing {
            month: String::new(),
            message: format!("{url}:{}: {message}", i + 2),
            hint: "a published invoice was altered; restore it from the store's versioning",
        };
        let row = row.map_err(|e| bad(e.to_string()))?;
        let amount = row
            .amount
            .parse::<Decimal>()
            .map_err(|e| bad(format!("field `amount`: {e}")))?;
        out.push(Line {
            customer_id: row.customer_id,
            customer_name: row.customer_name,
            line_type: row.line_type,
            provider: row.provider,
            model: row.model,
            description: row.description,
            quantity: row.quantity,
            amount,
            currency: row.currency,
        });
    }
    Ok(out)
}

/// One row of `diff.csv`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineChange {
    pub customer_id: String,
    pub line_type: String,
    pub provider: String,
    pub model: String,
    /// `added`, `removed`, `changed` or, for total rows, `unchanged`.
    pub change: &'static str,
    pub previous_description: String,
    pub description: String,
    pub previous_quantity: String,
    pub quantity: String,
    pub previous_amount: Option<Decimal>,
    pub amount: Option<Decimal>,
    pub difference: Decimal,
    pub currency: String,
}

/// One customer's change of total, and how it reaches Stripe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerChange {
    pub customer_id: String,
    pub customer_name: String,
    pub currency: String,
    pub previous_total: Decimal,
    pub total: Decimal,
    pub difference: Decimal,
    /// `debit` (the customer owes more), `credit` (owed back) or `none`.
    pub kind: &'static str,
    pub stripe_customer_id: Option<String>,
    /// How the difference reaches Stripe.
    pub action: String,
}

/// The change of a revision against the previous one.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RevisionDiff {
    pub month: String,
    pub previous_revision: u32,
    pub revision: u32,
    /// Whether the billing period was open when the revision was computed.
    pub period_open: bool,
    pub lines: Vec<LineChange>,
    pub customers: Vec<CustomerChange>,
    pub meter_event_corrections: usize,
    pub invoice_items: usize,
}

/// An invoice's lines by customer, line type, provider and model. A contract
/// splits a model's usage into several lines (one per part of the month
/// and tier): they are added up into one, quantities summed where they are
/// counts, the description naming how many lines it stands for.
fn grouped(lines: &[Line]) -> BTreeMap<(String, String, String, String), Line> {
    let mut out: BTreeMap<_, (Line, usize)> = BTreeMap::new();
    for l in lines {
        match out.entry(l.key()) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert((l.clone(), 1));
            }
            std::collections::btree_map::Entry::Occupied(mut e) => {
                let (g, n) = e.get_mut();
                g.amount += l.amount;
                g.quantity = match (g.quantity.parse::<i64>(), l.quantity.parse::<i64>()) {
                    (Ok(a), Ok(b)) => (a + b).to_string(),
                    _ => format!("{} + {}", g.quantity, l.quantity),
                };
                *n += 1;
            }
        }
    }
    out.into_iter()
        .map(|(k, (mut l, n))| {
            if n > 1 {
                l.description = format!("{} (and {} more lines)", l.description, n - 1);
            }
            (k, l)
        })
        .collect()
}

/// Compares invoice lines by customer, line type, provider and model (the
/// lines of one key added up: see [`grouped`]).
pub fn diff_lines(previous: &[Line], current: &[Line]) -> Vec<LineChange> {
    let (prev, cur) = (grouped(previous), grouped(current));
    let keys: BTreeSet<_> = prev.keys().chain(cur.keys()).cloned().collect();
    let mut out = Vec::new();
    for key in keys {
        let (p, c) = (prev.get(&key), cur.get(&key));
        let is_total = key.1 == "total";
        let change = match (p, c) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(p), Some(c))
                if p.amount != c.amount || p.quantity != c.quantity || p.currency != c.currency =>
            {
                "changed"
            }
            _ if is_total => "unchanged",
            _ => continue,
        };
        let amount = |l: Option<&Line>| l.map(|l| l.amount);
        let text = |l: Option<&Line>, f: fn(&Line) -> &String| l.map(|l| f(l).clone());
        out.push(LineChange {
            customer_id: key.0.clone(),
            line_type: key.1.clone(),
            provider: key.2.clone(),
            model: key.3.clone(),
            change,
            previous_description: text(p, |l| &l.description).unwrap_or_default(),
            description: text(c, |l| &l.description).unwrap_or_default(),
            previous_quantity: text(p, |l| &l.quantity).unwrap_or_default(),
            quantity: text(c, |l| &l.quantity).unwrap_or_default(),
            previous_amount: amount(p),
            amount: amount(c),
            difference: amount(c).unwrap_or_default() - amount(p).unwrap_or_default(),
            currency: c.or(p).map(|l| l.currency.clone()).unwrap_or_default(),
        });
    }
    out
}

/// A customer's total and Stripe id in one revision.
#[derive(Debug, Clone)]
pub struct Total {
    pub customer_name: String,
    pub currency: String,
    pub total: Decimal,
    pub stripe_customer_id: Option<String>,
    /// The month's provider cost, exact (in the provider's currency).
    pub provider_cost: Decimal,
}

/// Per customer and currency, the change of total. A customer billed in a
/// new currency gets a credit of the old total and a debit of the new one.
pub fn diff_totals(
    previous: &BTreeMap<String, Total>,
    current: &BTreeMap<String, Total>,
    period_open: bool,
) -> Vec<CustomerChange> {
    let mut amounts: BTreeMap<(String, String), (Decimal, Decimal, &Total)> = BTreeMap::new();
    for (customer, t) in previous {
        amounts
            .entry((customer.clone(), t.currency.clone()))
            .or_insert((Decimal::ZERO, Decimal::ZERO, t))
            .0 = t.total;
    }
    for (customer, t) in current {
        let e = amounts
            .entry((customer.clone(), t.currency.clone()))
            .or_insert((Decimal::ZERO, Decimal::ZERO, t));
        e.1 = t.total;
        e.2 = t;
    }
    amounts
        .into_iter()
        .map(|((customer_id, currency), (before, after, t))| {
            let difference = after - before;
            let kind = match difference.cmp(&Decimal::ZERO) {
                std::cmp::Ordering::Greater => "debit",
                std::cmp::Ordering::Less => "credit",
                std::cmp::Ordering::Equal => "none",
            };
            let action = match (kind, &t.stripe_customer_id, period_open) {
                ("none", _, _) => "nothing to send".to_string(),
                (_, None, _) => "withheld: no stripe_customer_id; settle by hand".to_string(),
                (_, Some(_), true) => {
                    "delta meter events (billing period open): meter_event_corrections.jsonl"
                        .to_string()
                }
                (_, Some(_), false) => {
                    "invoice item on the next invoice (billing period closed): invoice_items.jsonl"
                        .to_string()
                }
            };
            CustomerChange {
                customer_id,
                customer_name: t.customer_name.clone(),
                currency,
                previous_total: before,
                total: after,
                difference,
                kind,
                stripe_customer_id: t.stripe_customer_id.clone(),
                action,
            }
        })
        .collect()
}

/// Reads a `meter_events.jsonl`.
pub fn parse_events(url: &str, bytes: &[u8]) -> Result<Vec<EventLine>> {
    render::parse_jsonl(bytes).map_err(|(line, e)| Error::Billing {
        month: String::new(),
        message: format!("{url}:{line}: {e}"),
        hint: "a published file was altered; restore it from the store's versioning",
    })
}

/// An identifier of at most 100 characters: `readable`, or `mtr-` and its
/// SHA-256 (as `meter_events.sql` does).
pub fn identifier(readable: &str) -> String {
    if readable.len() <= 100 {
        readable.to_string()
    } else {
        format!("mtr-{}", sha256_hex(readable.as_bytes()))
    }
}

/// The delta events that turn the previous revision's meter readings into
/// the new ones: per Stripe customer, meter and day, new minus old under the
/// identifier `<identifier>-r<revision>`; a decrease is negative.
pub fn meter_event_corrections(
    previous: &[EventLine],
    current: &[MeterEvent],
    revision: u32,
) -> Vec<EventLine> {
    type Key = (String, String, i64);
    let mut values: BTreeMap<Key, (i64, i64, String)> = BTreeMap::new();
    for e in previous {
        let key = (
            e.payload.stripe_customer_id.clone(),
            e.event_name.clone(),
            e.timestamp,
        );
        let v = values.entry(key).or_insert((0, 0, e.identifier.clone()));
        v.0 += e.payload.value;
    }
    for e in current {
        let Some(customer) = &e.stripe_customer_id else {
            continue;
        };
        let key = (customer.clone(), e.event_name.clone(), e.timestamp);
        let v = values.entry(key).or_insert((0, 0, e.identifier.clone()));
        v.1 += e.value;
        v.2.clone_from(&e.identifier);
    }
    values
        .into_iter()
        .filter(|(_, (before, after, _))| before != after)
        .map(
            |((customer, event_name, timestamp), (before, after, base))| EventLine {
                identifier: identifier(&format!("{base}-r{revision}")),
                timestamp,
                event_name,
                payload: EventPayload {
                    value: after - before,
                    stripe_customer_id: customer,
                },
            },
        )
        .collect()
}

/// A `POST /v1/invoiceitems` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceItem {
    /// Sent as the `Idempotency-Key` header.
    pub idempotency_key: String,
    pub customer_id: String,
    /// The Stripe customer (`cus_...`).
    pub customer: String,
    /// Minor units; negative for a credit.
    pub amount: i64,
    /// Lower-case ISO 4217, as Stripe takes it.
    pub currency: String,
    pub description: String,
}

/// Invoice items for the customers whose total changed and who have a
/// Stripe customer id.
pub fn invoice_items(
    changes: &[CustomerChange],
    month: &str,
    previous_revision: u32,
    revision: u32,
) -> Vec<InvoiceItem> {
    changes
        .iter()
        .filter(|c| c.kind != "none")
        .filter_map(|c| {
            let customer = c.stripe_customer_id.clone()?;
            let decimals = minor_units(&c.currency)?;
            let amount = (c.difference * Decimal::from(10i64.pow(decimals)))
                .trunc()
                .try_into()
                .ok()?;
            Some(InvoiceItem {
                idempotency_key: identifier(&format!(
                    "{}-{month}-r{revision}-{}-adjustment",
                    c.customer_id,
                    c.currency.to_lowercase()
                )),
                customer_id: c.customer_id.clone(),
                customer,
                amount,
                currency: c.currency.to_lowercase(),
                description: format!(
                    "Usage correction for {month}: revision {revision} replaces revision {previous_revision} ({} {} -> {} {})",
                    c.previous_total, c.currency, c.total, c.currency
                ),
            })
        })
        .collect()
}

fn csv_bytes<I, R>(header: &[&str], rows: I) -> Vec<u8>
where
    I: IntoIterator<Item = R>,
    R: IntoIterator<Item = String>,
{
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    w.write_record(header).expect("in memory");
    for row in rows {
        let row: Vec<String> = row
            .into_iter()
            .map(|c| render::safe_cell(&c).into_owned())
            .collect();
        w.write_record(&row).expect("in memory");
    }
    w.into_inner().expect("in memory")
}

fn opt(d: Option<Decimal>) -> String {
    d.map(|d| d.to_string()).unwrap_or_default()
}

fn signed(d: Decimal) -> String {
    if d > Decimal::ZERO {
        format!("+{d}")
    } else {
        d.to_string()
    }
}

/// `diff.csv`: the changed lines, and every customer's total row.
pub fn diff_csv(d: &RevisionDiff) -> Vec<u8> {
    csv_bytes(
        &[
            "month",
            "previous_revision",
            "revision",
            "customer_id",
            "line_type",
            "provider",
            "model",
            "change",
            "previous_description",
            "description",
            "previous_quantity",
            "quantity",
            "previous_amount",
            "amount",
            "difference",
            "currency",
        ],
        d.lines.iter().map(|l| {
            [
                d.month.clone(),
                d.previous_revision.to_string(),
                d.revision.to_string(),
                l.customer_id.clone(),
                l.line_type.clone(),
                l.provider.clone(),
                l.model.clone(),
                l.change.to_string(),
                l.previous_description.clone(),
                l.description.clone(),
                l.previous_quantity.clone(),
                l.quantity.clone(),
                opt(l.previous_amount),
                opt(l.amount),
                l.difference.to_string(),
                l.currency.clone(),
            ]
        }),
    )
}

/// `corrections.csv`: the credit/debit report for finance.
pub fn corrections_csv(d: &RevisionDiff) -> Vec<u8> {
    csv_bytes(
        &[
            "month",
            "previous_revision",
            "revision",
            "customer_id",
            "customer_name",
            "currency",
            "previous_total",
            "total",
            "difference",
            "kind",
            "stripe_customer_id",
            "action",
        ],
        d.customers.iter().map(|c| {
            [
                d.month.clone(),
                d.previous_revision.to_string(),
                d.revision.to_string(),
                c.customer_id.clone(),
                c.customer_name.clone(),
                c.currency.clone(),
                c.previous_total.to_string(),
                c.total.to_string(),
                c.difference.to_string(),
                c.kind.to_string(),
                c.stripe_customer_id.clone().unwrap_or_default(),
                c.action.clone(),
            ]
        }),
    )
}

/// `diff.txt`: what changed, for a person.
pub fn diff_text(d: &RevisionDiff) -> String {
    let mut s = format!(
        "{} revision {} against revision {}\n",
        d.month, d.revision, d.previous_revision
    );
    s += &format!(
        "Stripe: billing period {} when computed; {} delta meter events, {} invoice items\n\n",
        if d.period_open { "open" } else { "closed" },
        d.meter_event_corrections,
        d.invoice_items
    );
    for c in &d.customers {
        s += &format!(
            "{} ({}): {} -> {} {} ({}{})\n",
            c.customer_id,
            c.customer_name,
            c.previous_total,
            c.total,
            c.currency,
            signed(c.difference),
            match c.kind {
                "none" => String::new(),
                kind => format!(", {kind}; {}", c.action),
            }
        );
        for l in d
            .lines
            .iter()
            .filter(|l| l.customer_id == c.customer_id && l.line_type != "total")
        {
            let what = [l.line_type.as_str(), l.provider.as_str(), l.model.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            s += &format!(
                "  {:<8} {what}: {} -> {} ({})\n",
                l.change,
                l.previous_amount.map_or("-".into(), |a| a.to_string()),
                l.amount.map_or("-".into(), |a| a.to_string()),
                signed(l.difference)
            );
        }
    }
    if d.customers.iter().all(|c| c.kind == "none") {
        s += "\nNo invoice total changed.\n";
    }
    s
}

#[derive(Deserialize)]
struct SummaryCsvRow {
    customer_id: String,
    customer_name: String,
    currency: String,
    total: String,
    stripe_customer_id: String,
    provider_cost: String,
}

/// Per customer, the total and Stripe id of a `summary.csv`.
pub fn parse_summary(url: &str, bytes: &[u8]) -> Result<BTreeMap<String, Total>> {
    let mut reader = csv::Reader::from_reader(bytes);
    let mut out = BTreeMap::new();
    for (i, row) in reader.deserialize::<SummaryCsvRow>().enumerate() {
        let bad = |message: String| Error::Billing {
            month: String::new(),
            message: format!("{url}:{}: {message}", i + 2),
            hint: "a published summary was altered; restore it from the store's versioning",
        };
        let row = row.map_err(|e| bad(e.to_string()))?;
        let total = row
            .total
            .parse()
            .map_err(|e| bad(format!("field `total`: {e}")))?;
        let provider_cost = row
            .provider_cost
            .parse()
            .map_err(|e| bad(format!("field `provider_cost`: {e}")))?;
        out.insert(
            row.customer_id,
            Total {
                customer_name: row.customer_name,
                currency: row.currency,
                total,
                stripe_customer_id: Some(row.stripe_customer_id).filter(|s| !s.is_empty()),
                provider_cost,
            },
        );
    }
    Ok(out)
}

/// A row of `corrections.csv`, read back (reconcile checks it).
#[derive(Debug, Clone, PartialEq)]
pub struct CorrectionRow {
    /// 1-based line of the file.
    pub line: usize,
    pub previous_revision: u32,
    pub customer_id: String,
    pub currency: String,
    pub previous_total: Decimal,
    pub total: Decimal,
    pub difference: Decimal,
    pub stripe_customer_id: Option<String>,
}

/// A row of `diff.csv`, read back (reconcile checks it).
#[derive(Debug, Clone, PartialEq)]
pub struct DiffRow {
    /// 1-based line of the file.
    pub line: usize,
    pub previous_revision: u32,
    pub customer_id: String,
    pub line_type: String,
    pub provider: String,
    pub model: String,
    pub previous_amount: Option<Decimal>,
    pub amount: Option<Decimal>,
    pub difference: Decimal,
    pub currency: String,
}

impl DiffRow {
    /// The line it describes: customer, line type, provider, model.
    pub fn key(&self) -> (&str, &str, &str, &str) {
        (
            &self.customer_id,
            &self.line_type,
            &self.provider,
            &self.model,
        )
    }
}

impl LineChange {
    /// The line it describes: customer, line type, provider, model.
    pub fn key(&self) -> (&str, &str, &str, &str) {
        (
            &self.customer_id,
            &self.line_type,
            &self.provider,
            &self.model,
        )
    }
}

/// The CSV rows of a published file by header name, each with its line
/// number; every amount is parsed as an exact decimal (never through a
/// float), an unreadable cell is an error naming the file, line and field.
struct Rows<'a> {
    url: &'a str,
    headers: csv::StringRecord,
    records: Vec<csv::StringRecord>,
}

impl<'a> Rows<'a> {
    fn read(url: &'a str, bytes: &[u8]) -> Result<Rows<'a>> {
        let mut reader = csv::Reader::from_reader(bytes);
        let bad = |e: csv::Error| altered(url, 1, e.to_string());
        let headers = reader.headers().map_err(bad)?.clone();
        let records = reader
            .records()
            .collect::<std::result::Result<_, _>>()
            .map_err(bad)?;
        Ok(Rows {
            url,
            headers,
            records,
        })
    }

    fn text(&self, i: usize, field: &str) -> Result<&str> {
        let col = self
            .headers
            .iter()
            .position(|h| h == field)
            .ok_or_else(|| altered(self.url, 1, format!("no column `{field}`")))?;
        Ok(self.records[i].get(col).unwrap_or(""))
    }

    fn decimal(&self, i: usize, field: &str) -> Result<Decimal> {
        let cell = self.text(i, field)?;
        cell.parse().map_err(|_| {
            altered(
                self.url,
                i + 2,
                format!("field `{field}`: {cell:?} is not a number"),
            )
        })
    }

    fn opt_decimal(&self, i: usize, field: &str) -> Result<Option<Decimal>> {
        match self.text(i, field)? {
            "" => Ok(None),
            _ => self.decimal(i, field).map(Some),
        }
    }

    fn revision(&self, i: usize, field: &str) -> Result<u32> {
        let cell = self.text(i, field)?;
        cell.parse().map_err(|_| {
            altered(
                self.url,
                i + 2,
                format!("field `{field}`: {cell:?} is not a revision number"),
            )
        })
    }
}

fn altered(url: &str, line: usize, message: String) -> Error {
    Error::Billing {
        month: String::new(),
        message: format!("{url}:{line}: {message}"),
        hint: "a published file was altered; restore it from the store's versioning or bill the month again",
    }
}

/// Reads a published `corrections.csv`.
pub fn parse_corrections(url: &str, bytes: &[u8]) -> Result<Vec<CorrectionRow>> {
    let rows = Rows::read(url, bytes)?;
    (0..rows.records.len())
        .map(|i| {
            Ok(CorrectionRow {
                line: i + 2,
                previous_revision: rows.revision(i, "previous_revision")?,
                customer_id: rows.text(i, "customer_id")?.to_string(),
                currency: rows.text(i, "currency")?.to_string(),
                previous_total: rows.decimal(i, "previous_total")?,
                total: rows.decimal(i, "total")?,
                difference: rows.decimal(i, "difference")?,
                stripe_customer_id: Some(rows.text(i, "stripe_customer_id")?.to_string())
                    .filter(|s| !s.is_empty()),
            })
        })
        .collect()
}

/// Reads a published `diff.csv`.
pub fn parse_diff(url: &str, bytes: &[u8]) -> Result<Vec<DiffRow>> {
    let rows = Rows::read(url, bytes)?;
    (0..rows.records.len())
        .map(|i| {
            Ok(DiffRow {
                line: i + 2,
                previous_revision: rows.revision(i, "previous_revision")?,
                customer_id: rows.text(i, "customer_id")?.to_string(),
                line_type: rows.text(i, "line_type")?.to_string(),
                provider: rows.text(i, "provider")?.to_string(),
                model: rows.text(i, "model")?.to_string(),
                previous_amount: rows.opt_decimal(i, "previous_amount")?,
                amount: rows.opt_decimal(i, "amount")?,
                difference: rows.decimal(i, "difference")?,
                currency: rows.text(i, "currency")?.to_string(),
            })
        })
        .collect()
}

/// Reads a published `invoices.jsonl`.
pub fn parse_contract_invoices(url: &str, bytes: &[u8]) -> Result<Vec<render::ContractInvoice>> {
    render::parse_jsonl(bytes).map_err(|(line, e)| altered(url, line, e))
}

/// Reads a published `invoice_items.jsonl`.
pub fn parse_invoice_items(url: &str, bytes: &[u8]) -> Result<Vec<InvoiceItem>> {
    render::parse_jsonl(bytes).map_err(|(line, e)| altered(url, line, e))
}

/// A revision's invoices, summary and meter events, as the diff reads them.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub lines: Vec<Line>,
    pub totals: BTreeMap<String, Total>,
    pub events: Vec<EventLine>,
    /// Customers whose invoice goes to Stripe as meter's invoice
    /// (`invoices.jsonl`): a change reaches Stripe as a note, never as
    /// meter events or a correction item.
    pub contract: BTreeSet<String>,
}

impl Snapshot {
    /// Reads a snapshot from a revision's files (key, bytes), as published or
    /// about to be.
    pub fn from_files<'a>(
        store_url: &str,
        files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Snapshot> {
        let mut snap = Snapshot::default();
        for (key, bytes) in files {
            let url = format!("{store_url}/{key}");
            match layout::classify(key) {
                RevisionFile::Summary => snap.totals = parse_summary(&url, bytes)?,
                RevisionFile::Invoice { .. } => snap.lines.extend(parse_invoice(&url, bytes)?),
                RevisionFile::MeterEvents => snap.events = parse_events(&url, bytes)?,
                RevisionFile::StripeInvoices => {
                    snap.contract = parse_contract_invoices(&url, bytes)?
                        .into_iter()
                        .map(|i| i.customer_id)
                        .collect();
                }
                _ => {}
            }
        }
        Ok(snap)
    }
}

/// Compares a new revision with the previous one and renders the diff and
/// correction files to publish with it.
pub fn compare(
    month: &str,
    previous_revision: u32,
    previous: &Snapshot,
    revision: u32,
    current: &Snapshot,
    current_events: &[MeterEvent],
    period_open: bool,
) -> (RevisionDiff, Vec<(String, Vec<u8>)>) {
    let mut customers = diff_totals(&previous.totals, &current.totals, period_open);
    let contract: BTreeSet<&String> = previous.contract.union(&current.contract).collect();
    for c in customers
        .iter_mut()
        .filter(|c| c.kind != "none" && contract.contains(&c.customer_id))
    {
        c.action = "meter's invoice in Stripe (invoices.jsonl): once the month is approved and \
                    pushed, a credit or debit note (notes/) carries the change"
            .to_string();
    }
    let mut d = RevisionDiff {
        month: month.to_string(),
        previous_revision,
        revision,
        period_open,
        lines: diff_lines(&previous.lines, &current.lines),
        customers,
        meter_event_corrections: 0,
        invoice_items: 0,
    };
    let key = |file: RevisionFile| file.key(month, revision).expect("one key");
    let mut files = Vec::new();
    if period_open {
        let deltas = meter_event_corrections(&previous.events, current_events, revision);
        d.meter_event_corrections = deltas.len();
        for c in d
            .customers
            .iter_mut()
            .filter(|c| c.kind != "none" && !contract.contains(&c.customer_id))
        {
            let Some(stripe_id) = &c.stripe_customer_id else {
                continue;
            };
            let n = deltas
                .iter()
                .filter(|e| &e.payload.stripe_customer_id == stripe_id)
                .count();
            c.action = match n {
                0 => "no meter reading changed (Stripe prices the meters itself): nothing to send"
                    .to_string(),
                n => format!(
                    "{n} delta meter events (billing period open): meter_event_corrections.jsonl"
                ),
            };
        }
        files.push((
            key(RevisionFile::MeterEventCorrections),
            render::write_jsonl(&deltas),
        ));
    } else {
        let metered: Vec<CustomerChange> = d
            .customers
            .iter()
            .filter(|c| !contract.contains(&c.customer_id))
            .cloned()
            .collect();
        let items = invoice_items(&metered, month, previous_revision, revision);
        d.invoice_items = items.len();
        files.push((key(RevisionFile::InvoiceItems), render::write_jsonl(&items)));
    }
    files.push((key(RevisionFile::Diff), diff_csv(&d)));
    files.push((key(RevisionFile::DiffText), diff_text(&d).into_bytes()));
    files.push((key(RevisionFile::Corrections), corrections_csv(&d)));
    (d, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(customer: &str, kind: &str, model: &str, amount: &str) -> Line {
        Line {
            customer_id: customer.into(),
            customer_name: "n".into(),
            line_type: kind.into(),
            provider: if model.is_empty() { "" } else { "openai" }.into(),
            model: model.into(),
            description: format!("{model} line"),
            quantity: "1".into(),
            amount: amount.parse().unwrap(),
            currency: "EUR".into(),
        }
    }

    #[test]
    fn lines_are_matched_by_customer_type_provider_and_model() {
        let before = vec![
            line("c", "subscription", "", "10.00"),
            line("c", "api_usage", "gpt-5", "2.50"),
            line("c", "api_usage", "o3", "1.00"),
            line("c", "total", "", "13.50"),
        ];
        let after = vec![
            line("c", "subscription", "", "10.00"),
            line("c", "api_usage", "gpt-5", "2.40"),
            line("c", "api_usage", "gpt-4o", "0.30"),
            line("c", "total", "", "12.70"),
        ];
        let d = diff_lines(&before, &after);
        let got: Vec<(&str, &str, String)> = d
            .iter()
            .map(|l| (l.model.as_str(), l.change, l.difference.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("gpt-4o", "added", "0.30".into()),
                ("gpt-5", "changed", "-0.10".into()),
                ("o3", "removed", "-1.00".into()),
                ("", "changed", "-0.80".into()),
            ]
        );
        // the differences of the lines add up to the total's
        let lines: Decimal = d
            .iter()
            .filter(|l| l.line_type != "total")
            .map(|l| l.difference)
            .sum();
        assert_eq!(lines, Decimal::new(-80, 2));
    }

    fn total(currency: &str, total: &str, stripe: Option<&str>) -> Total {
        Total {
            customer_name: "n".into(),
            currency: currency.into(),
            total: total.parse().unwrap(),
            stripe_customer_id: stripe.map(Into::into),
            provider_cost: Decimal::ZERO,
        }
    }

    #[test]
    fn closed_periods_get_invoice_items_in_minor_units() {
        let prev = BTreeMap::from([
            ("a".to_string(), total("EUR", "621.41", Some("cus_a"))),
            ("b".to_string(), total("JPY", "1000", Some("cus_b"))),
            ("c".to_string(), total("EUR", "5.00", None)),
            ("d".to_string(), total("USD", "7.00", Some("cus_d"))),
        ]);
        let cur = BTreeMap::from([
            ("a".to_string(), total("EUR", "630.00", Some("cus_a"))),
            ("b".to_string(), total("JPY", "900", Some("cus_b"))),
            ("c".to_string(), total("EUR", "6.00", None)),
            ("d".to_string(), total("USD", "7.00", Some("cus_d"))),
        ]);
        let changes = diff_totals(&prev, &cur, false);
        let kinds: Vec<&str> = changes.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, vec!["debit", "credit", "debit", "none"]);
        assert!(changes[2].action.starts_with("withheld"));
        let items = invoice_items(&changes, "2026-10", 1, 2);
        let got: Vec<(&str, i64, &str)> = items
            .iter()
            .map(|i| (i.customer.as_str(), i.amount, i.currency.as_str()))
            .collect();
        assert_eq!(got, vec![("cus_a", 859, "eur"), ("cus_b", -100, "jpy")]);
        assert_eq!(items[0].idempotency_key, "a-2026-10-r2-eur-adjustment");
        assert!(
            items[0]
                .description
                .contains("revision 2 replaces revision 1")
        );
    }

    #[test]
    fn a_new_currency_credits_the_old_total_and_debits_the_new() {
        let prev = BTreeMap::from([("a".to_string(), total("EUR", "10.00", Some("cus_a")))]);
        let cur = BTreeMap::from([("a".to_string(), total("USD", "11.00", Some("cus_a")))]);
        let changes = diff_totals(&prev, &cur, false);
        let got: Vec<(&str, String)> = changes
            .iter()
            .map(|c| (c.currency.as_str(), c.difference.to_string()))
            .collect();
        assert_eq!(got, vec![("EUR", "-10.00".into()), ("USD", "11.00".into())]);
    }

    fn event(customer: &str, name: &str, day: i64, value: i64) -> MeterEvent {
        MeterEvent {
            date: String::new(),
            customer_id: customer.into(),
            event_name: name.into(),
            value,
            stripe_customer_id: Some(format!("cus_{customer}")),
            identifier: format!("{customer}-{name}-{day}"),
            timestamp: day,
        }
    }

    #[test]
    fn open_periods_get_delta_events_with_new_identifiers() {
        let prev: Vec<EventLine> = [
            event("a", "tokens", 1, 100),
            event("a", "tokens", 2, 50),
            event("b", "tokens", 1, 7),
        ]
        .iter()
        .map(|e| EventLine {
            identifier: e.identifier.clone(),
            timestamp: e.timestamp,
            event_name: e.event_name.clone(),
            payload: EventPayload {
                value: e.value,
                stripe_customer_id: e.stripe_customer_id.clone().unwrap(),
            },
        })
        .collect();
        let cur = vec![
            event("a", "tokens", 1, 100),
            event("a", "tokens", 2, 80),
            event("c", "tokens", 3, 5),
        ];
        let d = meter_event_corrections(&prev, &cur, 2);
        let got: Vec<(&str, i64)> = d
            .iter()
            .map(|e| (e.identifier.as_str(), e.payload.value))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a-tokens-2-r2", 30),
                ("b-tokens-1-r2", -7),
                ("c-tokens-3-r2", 5)
            ]
        );
    }

    #[test]
    fn the_period_closes_at_the_first_instant_of_the_next_month() {
        let m = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert!(period_open(m, at("2026-12-31T23:59:59Z")));
        assert!(!period_open(m, at("2027-01-01T00:00:00Z")));
    }
}
