//! What billing writes, as bytes: invoice CSVs, the summary, Stripe
//! meter-event JSON Lines and stream bodies. Pure functions of the billing
//! tables, so a revision's files are byte-identical across reruns.

use std::borrow::Cow;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One invoice line, as `invoice.sql` computes it.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceLine {
    pub invoice_number: String,
    pub customer_id: String,
    pub line: i64,
    pub line_type: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub description: String,
    pub quantity: String,
    pub unit: String,
    pub unit_price: Option<Decimal>,
    pub requests: Option<i64>,
    pub tokens: [Option<i64>; 5],
    pub cost: Option<Decimal>,
    pub cost_currency: Option<String>,
    pub fx_rate: Option<Decimal>,
    pub rule: String,
    pub amount_minor: i64,
    pub currency: String,
    pub decimals: u32,
}

/// One customer's row of `summary.sql`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SummaryRow {
    pub invoice_number: String,
    pub customer_id: String,
    pub name: String,
    pub currency: String,
    pub decimals: u32,
    pub plan: String,
    pub rule: String,
    pub tokens: i64,
    pub included_tokens: i64,
    pub active_days: i64,
    pub days: i64,
    pub fee_minor: i64,
    pub api_minor: i64,
    pub compute_minor: i64,
    /// Contract lines (schemas/contracts.md): discounts (0 or less), the
    /// commitment true-up, prepaid credit applied (0 or less).
    pub discount_minor: i64,
    pub commitment_minor: i64,
    pub credit_minor: i64,
    pub total_minor: i64,
    pub provider_cost: Decimal,
    pub provider_currency: String,
    pub cost_fx: Decimal,
    pub provider_cost_minor: i64,
    pub margin_minor: i64,
    pub unpriced_requests: i64,
    pub unpriced_tokens: i64,
    pub monthly_limit: Option<Decimal>,
    pub over_limit_minor: i64,
    pub limit_exceeded: bool,
    pub stripe_customer_id: Option<String>,
}

/// One grant's month, as `invoice.sql` (`credit_balances`) computes it.
/// Amounts are whole minor units: of the grant's currency, except
/// `applied_invoice_minor` (the invoice's).
#[derive(Debug, Clone, PartialEq)]
pub struct CreditBalance {
    pub customer_id: String,
    pub grant_id: String,
    pub burn_order: i64,
    pub currency: String,
    pub decimals: u32,
    pub amount: Decimal,
    pub granted: String,
    pub expires: Option<String>,
    pub priority: i64,
    pub opening_from: String,
    pub rate: Decimal,
    pub invoice_currency: String,
    pub invoice_decimals: u32,
    pub opening_minor: i64,
    pub applied_minor: i64,
    pub applied_invoice_minor: i64,
    pub expired_minor: i64,
    pub closing_minor: i64,
    pub status: String,
}

pub const CREDITS_HEADER: [&str; 19] = [
    "month",
    "revision",
    "customer_id",
    "grant_id",
    "burn_order",
    "currency",
    "amount",
    "granted",
    "expires",
    "priority",
    "opening",
    "opening_from",
    "applied",
    "expired",
    "closing",
    "status",
    "fx_rate",
    "applied_invoice_amount",
    "invoice_currency",
];

/// `credits.csv`: one row per grant, in customer and burn order.
pub fn credits_csv(period: &Period, rows: &[CreditBalance]) -> Vec<u8> {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let money = |m: i64| format_minor(m, r.decimals);
            vec![
                period.month.to_string(),
                period.revision.to_string(),
                r.customer_id.clone(),
                r.grant_id.clone(),
                r.burn_order.to_string(),
                r.currency.clone(),
                r.amount.normalize().to_string(),
                r.granted.clone(),
                r.expires.clone().unwrap_or_default(),
                r.priority.to_string(),
                money(r.opening_minor),
                r.opening_from.clone(),
                money(r.applied_minor),
                money(r.expired_minor),
                money(r.closing_minor),
                r.status.clone(),
                r.rate.normalize().to_string(),
                format_minor(r.applied_invoice_minor, r.invoice_decimals),
                r.invoice_currency.clone(),
            ]
        })
        .collect();
    csv_bytes(&CREDITS_HEADER, rows)
}

impl SummaryRow {
    /// What a monthly limit measures: the total without the plan fee and
    /// before prepaid credit (schemas/customers.md).
    pub fn usage_charges_minor(&self) -> i64 {
        self.total_minor - self.fee_minor - self.credit_minor
    }
}

/// One Stripe meter event of `meter_events.sql`.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterEvent {
    pub date: String,
    pub customer_id: String,
    pub event_name: String,
    pub value: i64,
    pub stripe_customer_id: Option<String>,
    pub identifier: String,
    pub timestamp: i64,
}

/// The period an invoice covers, for its rows.
pub struct Period<'a> {
    pub month: &'a str,
    pub first_day: &'a str,
    pub last_day: &'a str,
    pub revision: u32,
}

/// `minor` units as a decimal amount with the currency's places: 53823, 2 ->
/// "538.23".
pub fn format_minor(minor: i64, decimals: u32) -> String {
    Decimal::new(minor, decimals).to_string()
}

/// A decimal without trailing zeros.
fn plain(d: &Decimal) -> String {
    d.normalize().to_string()
}

/// A number as spreadsheets read one: optional sign, digits, optional
/// fraction.
fn is_number(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// Neutralizes a cell a spreadsheet would run as a formula: text that begins
/// with `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'`
/// (numbers excepted). Customer and model names come from outside.
pub fn safe_cell(s: &str) -> Cow<'_, str> {
    match s.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') if !is_number(s) => {
            Cow::Owned(format!("'{s}"))
        }
        _ => Cow::Borrowed(s),
    }
}

fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new())
}

/// Writes one row, every cell formula-safe. Writing to memory cannot fail,
/// and every row has its header's length.
fn write_row<I, S>(w: &mut csv::Writer<Vec<u8>>, cells: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let row: Vec<String> = cells
        .into_iter()
        .map(|c| safe_cell(c.as_ref()).into_owned())
        .collect();
    w.write_record(&row)
        .expect("a row as long as its header, in memory");
}

fn finish(w: csv::Writer<Vec<u8>>) -> Vec<u8> {
    w.into_inner().expect("writing to memory")
}

/// A CSV file of a header and rows, in the invoices' dialect (CRLF, every
/// cell formula-safe).
pub fn csv_bytes(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Vec<u8> {
    let mut w = csv_writer();
    write_row(&mut w, header);
    for row in rows {
        write_row(&mut w, row);
    }
    finish(w)
}

pub const INVOICE_HEADER: [&str; 25] = [
    "invoice_number",
    "customer_id",
    "customer_name",
    "period_start",
    "period_end",
    "line",
    "line_type",
    "provider",
    "model",
    "description",
    "quantity",
    "unit",
    "unit_price",
    "requests",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "provider_cost",
    "cost_currency",
    "fx_rate",
    "rule",
    "amount",
    "currency",
];

/// One customer's invoice: its lines in order, then the total (the exact sum
/// of the rounded lines).
pub fn invoice_csv(period: &Period, name: &str, lines: &[InvoiceLine]) -> Vec<u8> {
    let mut w = csv_writer();
    write_row(&mut w, INVOICE_HEADER);
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let num = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let dec = |v: &Option<Decimal>| v.as_ref().map(plain).unwrap_or_default();
    let mut total: i64 = 0;
    for l in lines {
        total += l.amount_minor;
        let mut row = vec![
            l.invoice_number.clone(),
            l.customer_id.clone(),
            name.to_string(),
            period.first_day.to_string(),
            period.last_day.to_string(),
            l.line.to_string(),
            l.line_type.clone(),
            opt(&l.provider),
            opt(&l.model),
            l.description.clone(),
            l.quantity.clone(),
            l.unit.clone(),
            dec(&l.unit_price),
            num(l.requests),
        ];
        row.extend(l.tokens.iter().map(|t| num(*t)));
        row.extend([
            dec(&l.cost),
            opt(&l.cost_currency),
            dec(&l.fx_rate),
            l.rule.clone(),
            format_minor(l.amount_minor, l.decimals),
            l.currency.clone(),
        ]);
        write_row(&mut w, row);
    }
    if let Some(first) = lines.first() {
        let mut row = vec![String::new(); INVOICE_HEADER.len()];
        row[0] = first.invoice_number.clone();
        row[1] = first.customer_id.clone();
        row[2] = name.to_string();
        row[3] = period.first_day.to_string();
        row[4] = period.last_day.to_string();
        row[6] = "total".into();
        row[9] = "Invoice total, the sum of the lines; net of tax (tax is added by the invoicing system)".into();
        row[22] = "sum of rounded lines".into();
        row[23] = format_minor(total, first.decimals);
        row[24] = first.currency.clone();
        write_row(&mut w, row);
    }
    finish(w)
}

pub const SUMMARY_HEADER: [&str; 31] = [
    "month",
    "revision",
    "invoice_number",
    "customer_id",
    "customer_name",
    "currency",
    "plan",
    "rule",
    "tokens",
    "included_tokens",
    "active_days",
    "days",
    "fee",
    "api_usage",
    "compute",
    "discounts",
    "commitment",
    "credit",
    "total",
    "provider_cost",
    "provider_currency",
    "fx_rate",
    "provider_cost_converted",
    "margin",
    "unpriced_requests",
    "unpriced_tokens",
    "monthly_limit",
    "over_limit",
    "limit_exceeded",
    "stripe_customer_id",
    "note",
];

/// One row per customer: totals, raw cost, billed, margin, unpriced usage,
/// limit and overage.
pub fn summary_csv(period: &Period, rows: &[SummaryRow]) -> Vec<u8> {
    let mut w = csv_writer();
    write_row(&mut w, SUMMARY_HEADER);
    for r in rows {
        let m = |v: i64| format_minor(v, r.decimals);
        let mut notes = Vec::new();
        if r.limit_exceeded {
            notes.push("over the monthly limit".to_string());
        }
        if r.unpriced_requests > 0 {
            notes.push("unpriced usage not billed".to_string());
        }
        if r.stripe_customer_id.is_none() {
            notes.push("no Stripe customer id".to_string());
        }
        write_row(
            &mut w,
            [
                period.month.to_string(),
                period.revision.to_string(),
                r.invoice_number.clone(),
                r.customer_id.clone(),
                r.name.clone(),
                r.currency.clone(),
                r.plan.clone(),
                r.rule.clone(),
                r.tokens.to_string(),
                r.included_tokens.to_string(),
                r.active_days.to_string(),
                r.days.to_string(),
                m(r.fee_minor),
                m(r.api_minor),
                m(r.compute_minor),
                m(r.discount_minor),
                m(r.commitment_minor),
                m(r.credit_minor),
                m(r.total_minor),
                plain(&r.provider_cost),
                r.provider_currency.clone(),
                plain(&r.cost_fx),
                m(r.provider_cost_minor),
                m(r.margin_minor),
                r.unpriced_requests.to_string(),
                r.unpriced_tokens.to_string(),
                r.monthly_limit.as_ref().map(plain).unwrap_or_default(),
                m(r.over_limit_minor),
                r.limit_exceeded.to_string(),
                r.stripe_customer_id.clone().unwrap_or_default(),
                notes.join("; "),
            ],
        );
    }
    finish(w)
}

/// One line of a `meter_events.jsonl` (Stripe's bulk import shape): what
/// billing writes, what the diff and `stripe push` read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    pub identifier: String,
    /// Unix seconds.
    pub timestamp: i64,
    pub event_name: String,
    pub payload: EventPayload,
}

/// An [`EventLine`]'s payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPayload {
    /// A whole number; negative in corrections.
    pub value: i64,
    pub stripe_customer_id: String,
}

/// JSON Lines: one serialized item per line.
/// A contract customer's invoice as `meter stripe push` makes it in Stripe
/// (`stripe/YYYY-MM/rev-N/invoices.jsonl`): meter's lines with meter's
/// amounts, so that Stripe prices nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractInvoice {
    pub invoice_number: String,
    pub customer_id: String,
    /// The Stripe customer (`cus_...`).
    pub customer: String,
    /// Lower-case ISO 4217, as Stripe takes it.
    pub currency: String,
    /// Minor units: the invoice's total, the sum of `lines`.
    pub total: i64,
    /// The invoice's lines that bill something (lines of 0 are left out).
    pub lines: Vec<ContractInvoiceLine>,
}

/// One line of a [`ContractInvoice`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractInvoiceLine {
    /// The invoice's line number.
    pub line: i64,
    pub description: String,
    /// Minor units; negative for a discount or credit.
    pub amount: i64,
}

/// The invoices of `customers` that have a Stripe customer, in customer
/// order (`lines` in customer order, as billing reads them).
pub fn contract_invoices(
    lines: &[InvoiceLine],
    summary: &[SummaryRow],
    customers: &std::collections::BTreeSet<String>,
) -> Vec<ContractInvoice> {
    // Lines come in customer order: one pass finds each customer's.
    let by_customer: std::collections::HashMap<&str, &[InvoiceLine]> = lines
        .chunk_by(|a, b| a.customer_id == b.customer_id)
        .map(|chunk| (chunk[0].customer_id.as_str(), chunk))
        .collect();
    summary
        .iter()
        .filter(|r| customers.contains(&r.customer_id))
        .filter_map(|r| {
            let customer = r.stripe_customer_id.clone()?;
            let mine = by_customer
                .get(r.customer_id.as_str())
                .copied()
                .unwrap_or_default();
            let lines: Vec<ContractInvoiceLine> = mine
                .iter()
                .filter(|l| l.amount_minor != 0)
                .map(|l| ContractInvoiceLine {
                    line: l.line,
                    description: l.description.clone(),
                    amount: l.amount_minor,
                })
                .collect();
            Some(ContractInvoice {
                invoice_number: r.invoice_number.clone(),
                customer_id: r.customer_id.clone(),
                customer,
                currency: r.currency.to_lowercase(),
                total: lines.iter().map(|l| l.amount).sum(),
                lines,
            })
        })
        .collect()
}

pub fn write_jsonl<T: Serialize>(items: &[T]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        serde_json::to_writer(&mut out, item).expect("serializes");
        out.push(b'\n');
    }
    out
}

/// Parses JSON Lines: blank lines are skipped, a bad line is named by its
/// 1-based number.
pub fn parse_jsonl<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<Vec<T>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let item = serde_json::from_slice(line).map_err(|e| (i + 1, e.to_string()))?;
        out.push(item);
    }
    Ok(out)
}

#[derive(Serialize)]
struct StreamBody<'a> {
    events: Vec<StreamEvent<'a>>,
}

#[derive(Serialize)]
struct StreamEvent<'a> {
    event_name: &'a str,
    identifier: &'a str,
    timestamp: String,
    payload: StreamPayload<'a>,
}

#[derive(Serialize)]
struct StreamPayload<'a> {
    stripe_customer_id: &'a str,
    value: String,
}

/// Events with a Stripe customer, as Stripe's bulk import takes them (JSON
/// Lines, formats.md section 4).
pub fn meter_events_jsonl(events: &[MeterEvent]) -> Vec<u8> {
    let lines: Vec<EventLine> = events
        .iter()
        .filter_map(|e| {
            Some(EventLine {
                identifier: e.identifier.clone(),
                timestamp: e.timestamp,
                event_name: e.event_name.clone(),
                payload: EventPayload {
                    value: e.value,
                    stripe_customer_id: e.stripe_customer_id.clone()?,
                },
            })
        })
        .collect();
    write_jsonl(&lines)
}

/// Request bodies for `POST /v2/billing/meter_event_stream`: at most
/// `per_body` (100) events each, RFC 3339 timestamps, string values.
pub fn meter_event_stream(events: &[MeterEvent], per_body: usize) -> Vec<Vec<u8>> {
    let with_customer: Vec<&MeterEvent> = events
        .iter()
        .filter(|e| e.stripe_customer_id.is_some())
        .collect();
    with_customer
        .chunks(per_body)
        .map(|chunk| {
            let body = StreamBody {
                events: chunk
                    .iter()
                    .map(|e| StreamEvent {
                        event_name: &e.event_name,
                        identifier: &e.identifier,
                        timestamp: chrono::DateTime::from_timestamp(e.timestamp, 0)
                            .expect("in range")
                            .format("%Y-%m-%dT%H:%M:%SZ")
                            .to_string(),
                        payload: StreamPayload {
                            stripe_customer_id: e.stripe_customer_id.as_deref().expect("filtered"),
                            value: e.value.to_string(),
                        },
                    })
                    .collect(),
            };
            let mut out = serde_json::to_vec_pretty(&body).expect("serializes");
            out.push(b'\n');
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralized_numbers_are_not() {
        for (cell, want) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tTab", "'\tTab"),
            ("\rCR", "'\rCR"),
            ("-12.50", "-12.50"),
            ("+7", "+7"),
            ("-3", "-3"),
            ("Acme = good", "Acme = good"),
            ("", ""),
            ("-", "'-"),
            ("-1.", "'-1."),
        ] {
            assert_eq!(safe_cell(cell), want, "{cell:?}");
        }
    }

    #[test]
    fn csv_is_rfc4180_and_safe() {
        let period = Period {
            month: "2026-10",
            first_day: "2026-10-01",
            last_day: "2026-10-31",
            revision: 1,
        };
        let line = InvoiceLine {
            invoice_number: "INV-1".into(),
            customer_id: "c1".into(),
            line: 1,
            line_type: "api_usage".into(),
            provider: Some("openai".into()),
            model: Some("=cmd|'/c calc'!A1".into()),
            description: "a \"quoted\", comma".into(),
            quantity: "10".into(),
            unit: "token".into(),
            unit_price: None,
            requests: Some(1),
            tokens: [Some(10), Some(0), Some(0), Some(0), Some(0)],
            cost: Some(Decimal::new(1_234_500, 6)),
            cost_currency: Some("USD".into()),
            fx_rate: Some(Decimal::ONE),
            rule: "overage".into(),
            amount_minor: -5,
            currency: "EUR".into(),
            decimals: 2,
        };
        let csv = String::from_utf8(invoice_csv(&period, "@Evil, Inc.", &[line])).unwrap();
        let rows: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(rows.len(), 4, "header, line, total, empty: {csv}");
        assert!(rows[1].contains("\"'@Evil, Inc.\""), "{}", rows[1]);
        assert!(rows[1].contains("'=cmd|'/c calc'!A1"), "{}", rows[1]);
        assert!(
            rows[1].contains("\"a \"\"quoted\"\", comma\""),
            "{}",
            rows[1]
        );
        assert!(
            rows[1].contains(",1.2345,USD,1,overage,-0.05,EUR"),
            "{}",
            rows[1]
        );
        assert!(rows[2].contains(",total,"), "{}", rows[2]);
        assert!(
            rows[2].ends_with(",sum of rounded lines,-0.05,EUR"),
            "{}",
            rows[2]
        );
    }

    #[test]
    fn minor_units_format_with_the_currency_places() {
        assert_eq!(format_minor(53823, 2), "538.23");
        assert_eq!(format_minor(5, 2), "0.05");
        assert_eq!(format_minor(-5, 2), "-0.05");
        assert_eq!(format_minor(1200, 0), "1200");
        assert_eq!(format_minor(1, 3), "0.001");
        assert_eq!(format_minor(0, 2), "0.00");
    }

    #[test]
    fn stream_bodies_hold_at_most_100_events_and_skip_customers_without_stripe() {
        let events: Vec<MeterEvent> = (0..250)
            .map(|i| MeterEvent {
                date: "2026-10-02".into(),
                customer_id: format!("c{i}"),
                event_name: "llm_tokens".into(),
                value: i,
                stripe_customer_id: (i != 7).then(|| format!("cus_{i}")),
                identifier: format!("c{i}-llm_tokens-20261002"),
                timestamp: 1_790_942_400,
            })
            .collect();
        let bodies = meter_event_stream(&events, 100);
        assert_eq!(bodies.len(), 3);
        let last: serde_json::Value = serde_json::from_slice(&bodies[2]).unwrap();
        assert_eq!(last["events"].as_array().unwrap().len(), 49);
        assert_eq!(last["events"][0]["timestamp"], "2026-10-02T12:00:00Z");
        assert_eq!(last["events"][0]["payload"]["value"], "201");
        let jsonl = String::from_utf8(meter_events_jsonl(&events)).unwrap();
        assert_eq!(jsonl.lines().count(), 249);
        assert_eq!(
            jsonl.lines().next().unwrap(),
            r#"{"identifier":"c0-llm_tokens-20261002","timestamp":1790942400,"event_name":"llm_tokens","payload":{"value":0,"stripe_customer_id":"cus_0"}}"#
        );
    }
}
