//! A published revision checked against its manifest, itself and the
//! revision before it:
//!
//! - every file its manifest lists is there, as published (size, SHA-256);
//! - every invoice's total row is the sum of its lines, and `summary.csv`
//!   has the same total per customer;
//! - a correction's derived files say exactly what changed: per customer
//!   and currency, `corrections.csv` and `diff.csv` give rev-N's total minus
//!   the previous revision's, `invoice_items.jsonl` carries that difference
//!   in minor units, and `meter_event_corrections.jsonl` turns the previous
//!   revision's meter readings into rev-N's, reading by reading.
//!
//! Which file is what is decided by `bill::layout`, the one rule. A file that
//! cannot be read as what it is fails the check (exit 2); numbers that do
//! not add up are problems, each naming the file and the customer.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use serde::Serialize;

use crate::bill::diff::{self, CorrectionRow, DiffRow, Line};
use crate::bill::inputs::minor_units;
use crate::bill::layout::{self, RevisionFile};
use crate::bill::publish::{self, State};
use crate::bill::render::EventLine;
use crate::lake::store::Store;
use crate::model::error::{Error, Result};

/// One thing wrong with a published revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file's URL.
    pub file: String,
    /// The customer concerned; empty when the problem is the whole file's.
    pub customer_id: String,
    pub problem: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.customer_id.as_str() {
            "" => write!(f, "{}: {}", self.file, self.problem),
            c => write!(f, "{}: {c}: {}", self.file, self.problem),
        }
    }
}

/// What the check of a revision found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Per customer in `summary.csv`, the month's provider cost.
    pub provider_costs: Vec<(String, Decimal)>,
    /// Invoices read.
    pub invoices: usize,
    /// The revision the derived files compare with, if the revision has any.
    pub previous_revision: Option<u32>,
    /// Derived files checked against the two revisions.
    pub derived: Vec<String>,
    pub problems: Vec<Problem>,
}

type Key = (String, String);

/// Checks revision `revision` of `month` in `store`.
pub fn check(store: &Store, month: &str, revision: u32) -> Result<Checked> {
    let state = State::read(store, month)?;
    let manifest = state.manifests.get(&revision).ok_or_else(|| Error::Billing {
        month: month.to_string(),
        message: format!(
            "latest.json names rev-{revision}, which has no manifest ({})",
            store.object_url(&publish::manifest_key(month, revision))
        ),
        hint: "the published invoice is not what meter wrote: restore it or bill the month again",
    })?;
    let mut out = Checked::default();
    let mut invoices: BTreeMap<String, (String, Vec<Line>)> = BTreeMap::new();
    let mut summary = None;
    let mut events: Vec<EventLine> = Vec::new();
    let mut diff_rows = None;
    let mut corrections = None;
    let mut items = None;
    let mut deltas = None;
    let mut contract = None;
    for o in &manifest.objects {
        let kind = layout::classify(&o.key);
        let url = store.object_url(&o.key);
        let bytes = store.get(&o.key)?.ok_or_else(|| Error::Billing {
            month: month.to_string(),
            message: format!("{url} is listed in rev-{revision}'s manifest but missing"),
            hint: "a published file was removed; restore it from the store's versioning or bill the month again",
        })?;
        if !o.matches(&bytes) {
            out.problems.push(Problem {
                file: url.clone(),
                customer_id: match kind {
                    RevisionFile::Invoice { customer_id } => customer_id.to_string(),
                    _ => String::new(),
                },
                problem: format!(
                    "changed since rev-{revision} was published (size or SHA-256 differs from its manifest)"
                ),
            });
        }
        let bytes = bytes.as_slice();
        match kind {
            RevisionFile::Invoice { customer_id } => {
                invoices.insert(
                    customer_id.to_string(),
                    (url.clone(), diff::parse_invoice(&url, bytes)?),
                );
            }
            RevisionFile::Summary => {
                summary = Some((url.clone(), diff::parse_summary(&url, bytes)?))
            }
            RevisionFile::MeterEvents => events = diff::parse_events(&url, bytes)?,
            RevisionFile::Diff => diff_rows = Some((url.clone(), diff::parse_diff(&url, bytes)?)),
            RevisionFile::Corrections => {
                corrections = Some((url.clone(), diff::parse_corrections(&url, bytes)?))
            }
            RevisionFile::InvoiceItems => {
                items = Some((url.clone(), diff::parse_invoice_items(&url, bytes)?))
            }
            RevisionFile::MeterEventCorrections => {
                deltas = Some((url.clone(), diff::parse_events(&url, bytes)?))
            }
            RevisionFile::StripeInvoices => {
                contract = Some((url.clone(), diff::parse_contract_invoices(&url, bytes)?))
            }
            RevisionFile::Manifest
            | RevisionFile::Note { .. }
            | RevisionFile::Credits
            | RevisionFile::DiffText
            | RevisionFile::MeterEventStream
            | RevisionFile::Other => {}
        }
    }
    out.invoices = invoices.len();

    // Every invoice adds up, and the summary says the same.
    let mut totals: BTreeMap<Key, Decimal> = BTreeMap::new();
    for (customer, (url, lines)) in &invoices {
        let problem = |problem: String| Problem {
            file: url.clone(),
            customer_id: customer.clone(),
            problem,
        };
        for l in lines.iter().filter(|l| &l.customer_id != customer) {
            out.problems.push(problem(format!(
                "a line of customer {:?} in this customer's invoice",
                l.customer_id
            )));
        }
        let mut sums: BTreeMap<&str, (Decimal, Option<Decimal>)> = BTreeMap::new();
        for l in lines {
            let s = sums.entry(l.currency.as_str()).or_default();
            match l.line_type.as_str() {
                "total" => s.1 = Some(l.amount),
                _ => s.0 += l.amount,
            }
        }
        for (currency, (sum, total)) in sums {
            match total {
                Some(t) if t == sum => {}
                _ => out.problems.push(problem(format!(
                    "total {} is not the sum of its lines {sum} {currency}",
                    total.map_or("(none)".to_string(), |t| format!("{t} {currency}"))
                ))),
            }
            totals.insert(
                (customer.clone(), currency.to_string()),
                total.unwrap_or(sum),
            );
        }
    }
    let summary = summary.unwrap_or_default();
    let (summary_url, summary_totals) = &summary;
    if let Some((url, list)) = &contract {
        check_contract_invoices(url, list, &invoices, summary_totals, &mut out.problems);
    }
    for (customer, t) in summary_totals {
        out.provider_costs.push((customer.clone(), t.provider_cost));
        match totals.get(&(customer.clone(), t.currency.clone())) {
            Some(total) if *total == t.total => {}
            found => out.problems.push(Problem {
                file: summary_url.clone(),
                customer_id: customer.clone(),
                problem: format!(
                    "total {} {} is not the invoice's ({})",
                    t.total,
                    t.currency,
                    found.map_or("no invoice".to_string(), |f| format!("{f} {}", t.currency))
                ),
            }),
        }
    }
    for (customer, currency) in totals.keys() {
        if !summary_totals.contains_key(customer) {
            out.problems.push(Problem {
                file: summary_url.clone(),
                customer_id: customer.clone(),
                problem: format!("has an invoice in {currency} but no summary row"),
            });
        }
    }

    if diff_rows.is_none() && corrections.is_none() && items.is_none() && deltas.is_none() {
        return Ok(out);
    }

    // The derived files against the revision they compare with.
    let named: BTreeSet<u32> = corrections
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|r| r.previous_revision))
        .chain(
            diff_rows
                .iter()
                .flat_map(|(_, rows)| rows.iter().map(|r| r.previous_revision)),
        )
        .collect();
    let previous = match named.len() {
        0 => revision.saturating_sub(1),
        1 => *named.first().expect("one"),
        _ => {
            return Err(Error::Billing {
                month: month.to_string(),
                message: format!(
                    "rev-{revision}'s diff.csv and corrections.csv compare with different revisions ({named:?})"
                ),
                hint: "the published invoice is not what meter wrote: restore it or bill the month again",
            });
        }
    };
    if !state.manifests.contains_key(&previous) {
        return Err(Error::Billing {
            month: month.to_string(),
            message: format!(
                "rev-{revision}'s corrections compare with rev-{previous}, which has no manifest"
            ),
            hint: "restore the earlier revision from the store's versioning or bill the month again",
        });
    }
    out.previous_revision = Some(previous);
    let before = publish::snapshot(store, &state, previous)?;
    let mut previous_totals: BTreeMap<Key, Decimal> = BTreeMap::new();
    for l in before.lines.iter().filter(|l| l.line_type == "total") {
        previous_totals.insert((l.customer_id.clone(), l.currency.clone()), l.amount);
    }
    let keys: BTreeSet<&Key> = totals.keys().chain(previous_totals.keys()).collect();
    let expected: BTreeMap<Key, (Decimal, Decimal)> = keys
        .into_iter()
        .map(|k| {
            let get = |m: &BTreeMap<Key, Decimal>| m.get(k).copied().unwrap_or_default();
            (k.clone(), (get(&previous_totals), get(&totals)))
        })
        .collect();
    let changed = |k: &Key| expected.get(k).is_some_and(|(p, t)| p != t);

    if let Some((url, rows)) = &corrections {
        out.derived.push(url.clone());
        check_corrections(url, rows, &expected, previous, revision, &mut out.problems);
        let listed: BTreeSet<Key> = rows
            .iter()
            .map(|r| (r.customer_id.clone(), r.currency.clone()))
            .collect();
        for k in expected
            .keys()
            .filter(|k| changed(k) && !listed.contains(*k))
        {
            out.problems.push(Problem {
                file: url.clone(),
                customer_id: k.0.clone(),
                problem: format!(
                    "no row for a total that changed ({} {} in rev-{previous}, {} {} in rev-{revision})",
                    expected[k].0, k.1, expected[k].1, k.1
                ),
            });
        }
    }
    if let Some((url, rows)) = &diff_rows {
        out.derived.push(url.clone());
        check_diff(url, rows, &expected, previous, revision, &mut out.problems);
        let current: Vec<Line> = invoices.values().flat_map(|(_, l)| l.clone()).collect();
        check_diff_lines(
            url,
            rows,
            &diff::diff_lines(&before.lines, &current),
            &mut out.problems,
        );
    }
    // Stripe ids, from the revision or else the one before.
    let stripe_ids: BTreeMap<String, String> = before
        .totals
        .iter()
        .chain(summary_totals)
        .filter_map(|(c, t)| Some((c.clone(), t.stripe_customer_id.clone()?)))
        .collect();
    if let Some((url, items)) = &items {
        out.derived.push(url.clone());
        let mut sent: BTreeMap<Key, i64> = BTreeMap::new();
        for item in items {
            *sent
                .entry((item.customer_id.clone(), item.currency.to_uppercase()))
                .or_default() += item.amount;
            if stripe_ids.get(&item.customer_id) != Some(&item.customer) {
                out.problems.push(Problem {
                    file: url.clone(),
                    customer_id: item.customer_id.clone(),
                    problem: format!(
                        "invoice item for Stripe customer {} but the invoices name {}",
                        item.customer,
                        stripe_ids
                            .get(&item.customer_id)
                            .map_or("none", String::as_str)
                    ),
                });
            }
        }
        // Customers with a contract get notes, not correction items.
        let contract: BTreeSet<&str> = contract
            .iter()
            .flat_map(|(_, l)| l.iter().map(|i| i.customer_id.as_str()))
            .chain(before.contract.iter().map(String::as_str))
            .collect();
        let metered: BTreeMap<String, String> = stripe_ids
            .iter()
            .filter(|(c, _)| !contract.contains(c.as_str()))
            .map(|(c, s)| (c.clone(), s.clone()))
            .collect();
        check_items(url, &sent, &expected, &metered, &mut out.problems);
    }
    if let Some((url, deltas)) = &deltas {
        out.derived.push(url.clone());
        let customers: BTreeMap<&str, &str> = stripe_ids
            .iter()
            .map(|(c, s)| (s.as_str(), c.as_str()))
            .collect();
        check_deltas(
            url,
            deltas,
            &before.events,
            &events,
            &customers,
            &mut out.problems,
        );
    }
    Ok(out)
}

/// Each row: its previous total and total are the two revisions', and its
/// difference is their difference.
fn check_corrections(
    url: &str,
    rows: &[CorrectionRow],
    expected: &BTreeMap<Key, (Decimal, Decimal)>,
    previous: u32,
    revision: u32,
    problems: &mut Vec<Problem>,
) {
    for r in rows {
        let (was, is) = expected
            .get(&(r.customer_id.clone(), r.currency.clone()))
            .copied()
            .unwrap_or_default();
        let mut wrong = Vec::new();
        if r.previous_total != was {
            wrong.push(format!(
                "previous_total {} (rev-{previous}: {was})",
                r.previous_total
            ));
        }
        if r.total != is {
            wrong.push(format!("total {} (rev-{revision}: {is})", r.total));
        }
        if r.difference != is - was {
            wrong.push(format!(
                "difference {} (rev-{revision} minus rev-{previous}: {})",
                r.difference,
                is - was
            ));
        }
        if !wrong.is_empty() {
            problems.push(Problem {
                file: format!("{url}:{}", r.line),
                customer_id: r.customer_id.clone(),
                problem: format!("{} {}", wrong.join(", "), r.currency),
            });
        }
    }
}

/// Every row's difference is its amounts' difference; per customer and
/// currency, the line differences add up to the change of total, and the
/// total row says it.
fn check_diff(
    url: &str,
    rows: &[DiffRow],
    expected: &BTreeMap<Key, (Decimal, Decimal)>,
    previous: u32,
    revision: u32,
    problems: &mut Vec<Problem>,
) {
    let mut lines: BTreeMap<Key, Decimal> = BTreeMap::new();
    let mut total_rows: BTreeSet<Key> = BTreeSet::new();
    for r in rows {
        let key = (r.customer_id.clone(), r.currency.clone());
        let own = r.amount.unwrap_or_default() - r.previous_amount.unwrap_or_default();
        let mut wrong = Vec::new();
        if r.difference != own {
            wrong.push(format!(
                "difference {} is not amount minus previous_amount ({own})",
                r.difference
            ));
        }
        if r.line_type == "total" {
            total_rows.insert(key.clone());
            let (was, is) = expected.get(&key).copied().unwrap_or_default();
            if r.previous_amount.unwrap_or_default() != was || r.amount.unwrap_or_default() != is {
                wrong.push(format!(
                    "total row {} -> {} (rev-{previous}: {was}, rev-{revision}: {is})",
                    opt(r.previous_amount),
                    opt(r.amount)
                ));
            }
        } else {
            *lines.entry(key).or_default() += r.difference;
        }
        if !wrong.is_empty() {
            problems.push(Problem {
                file: format!("{url}:{}", r.line),
                customer_id: r.customer_id.clone(),
                problem: format!("{} {}", wrong.join(", "), r.currency),
            });
        }
    }
    for (key, (was, is)) in expected {
        let sum = lines.get(key).copied().unwrap_or_default();
        if sum != is - was {
            problems.push(Problem {
                file: url.to_string(),
                customer_id: key.0.clone(),
                problem: format!(
                    "line differences add up to {sum} {}, but the total went from {was} to {is} (rev-{previous} to rev-{revision})",
                    key.1
                ),
            });
        }
        if !total_rows.contains(key) {
            problems.push(Problem {
                file: url.to_string(),
                customer_id: key.0.clone(),
                problem: format!("no total row in {}", key.1),
            });
        }
    }
}

/// Every line that differs between the two revisions is in `diff.csv`
/// with both amounts as the invoices have them, and nothing else is.
fn check_diff_lines(
    url: &str,
    rows: &[DiffRow],
    changes: &[diff::LineChange],
    problems: &mut Vec<Problem>,
) {
    type LineKey<'a> = (&'a str, &'a str, &'a str, &'a str);
    let listed: BTreeMap<LineKey, &DiffRow> = rows.iter().map(|r| (r.key(), r)).collect();
    let due: BTreeMap<LineKey, &diff::LineChange> = changes.iter().map(|c| (c.key(), c)).collect();
    let keys: BTreeSet<&LineKey> = listed.keys().chain(due.keys()).collect();
    for key in keys {
        let what = [key.1, key.2, key.3]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let (file, problem) = match (listed.get(key), due.get(key)) {
            (Some(r), Some(c))
                if r.previous_amount == c.previous_amount && r.amount == c.amount =>
            {
                continue;
            }
            (Some(r), Some(c)) => (
                format!("{url}:{}", r.line),
                format!(
                    "{what}: {} -> {}, but the invoices say {} -> {}",
                    opt(r.previous_amount),
                    opt(r.amount),
                    opt(c.previous_amount),
                    opt(c.amount)
                ),
            ),
            (Some(r), None) => (
                format!("{url}:{}", r.line),
                format!("{what}: listed as a change, but the invoices have no such change"),
            ),
            (None, Some(c)) => (
                url.to_string(),
                format!(
                    "{what}: {} -> {} in the invoices, missing here",
                    opt(c.previous_amount),
                    opt(c.amount)
                ),
            ),
            (None, None) => continue,
        };
        problems.push(Problem {
            file,
            customer_id: key.0.to_string(),
            problem,
        });
    }
}

fn opt(d: Option<Decimal>) -> String {
    d.map_or("-".to_string(), |d| d.to_string())
}

/// `invoices.jsonl` holds each listed customer's invoice as its CSV says:
/// the lines that bill something, in order, in minor units, and their
/// total, for the Stripe customer the summary names.
fn check_contract_invoices(
    url: &str,
    list: &[crate::bill::render::ContractInvoice],
    invoices: &BTreeMap<String, (String, Vec<Line>)>,
    summary: &BTreeMap<String, diff::Total>,
    problems: &mut Vec<Problem>,
) {
    for inv in list {
        let mut problem = |problem: String| {
            problems.push(Problem {
                file: url.to_string(),
                customer_id: inv.customer_id.clone(),
                problem,
            })
        };
        let Some((_, lines)) = invoices.get(&inv.customer_id) else {
            problem(format!(
                "{} has no invoice in the revision",
                inv.invoice_number
            ));
            continue;
        };
        let stripe = summary
            .get(&inv.customer_id)
            .and_then(|t| t.stripe_customer_id.as_deref());
        if stripe != Some(inv.customer.as_str()) {
            problem(format!(
                "Stripe customer {} but the summary names {}",
                inv.customer,
                stripe.unwrap_or("none")
            ));
        }
        let Some(places) = lines.first().and_then(|l| minor_units(&l.currency)) else {
            problem("the invoice's currency has no minor unit".to_string());
            continue;
        };
        let scale = Decimal::from(10i64.pow(places));
        let due: Vec<(String, Decimal)> = lines
            .iter()
            .filter(|l| l.line_type != "total" && !l.amount.is_zero())
            .map(|l| (l.description.clone(), l.amount * scale))
            .collect();
        let listed: Vec<(String, Decimal)> = inv
            .lines
            .iter()
            .map(|l| (l.description.clone(), Decimal::from(l.amount)))
            .collect();
        if due != listed {
            problem(format!(
                "{}: its {} lines are not the invoice's {} lines that bill something",
                inv.invoice_number,
                listed.len(),
                due.len()
            ));
        }
        if inv.total != inv.lines.iter().map(|l| l.amount).sum::<i64>() {
            problem(format!("total {} is not the sum of its lines", inv.total));
        }
    }
}

/// Per customer with a Stripe id whose total changed, the invoice items sum
/// to the difference in minor units; nobody else gets one.
fn check_items(
    url: &str,
    sent: &BTreeMap<Key, i64>,
    expected: &BTreeMap<Key, (Decimal, Decimal)>,
    stripe_ids: &BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) {
    let keys: BTreeSet<&Key> = sent.keys().chain(expected.keys()).collect();
    for key in keys {
        let (was, is) = expected.get(key).copied().unwrap_or_default();
        let due = match (stripe_ids.contains_key(&key.0), minor_units(&key.1)) {
            (true, Some(places)) => {
                let minor = (is - was) * Decimal::from(10i64.pow(places));
                if minor.fract() != Decimal::ZERO {
                    problems.push(Problem {
                        file: url.to_string(),
                        customer_id: key.0.clone(),
                        problem: format!(
                            "the difference {} {} is not a whole number of minor units",
                            is - was,
                            key.1
                        ),
                    });
                    continue;
                }
                minor.trunc().try_into().ok()
            }
            // Withheld (no Stripe customer) or a currency Stripe items
            // cannot carry: nothing may be sent.
            _ => Some(0),
        };
        let got = sent.get(key).copied().unwrap_or_default();
        if due != Some(got) {
            problems.push(Problem {
                file: url.to_string(),
                customer_id: key.0.clone(),
                problem: format!(
                    "invoice items sum to {got} minor units of {}, the difference is {} ({} -> {})",
                    key.1,
                    is - was,
                    was,
                    is
                ),
            });
        }
    }
}

/// Per Stripe customer, meter and day, the deltas turn the previous
/// revision's readings into this one's.
fn check_deltas(
    url: &str,
    deltas: &[EventLine],
    before: &[EventLine],
    after: &[EventLine],
    customers: &BTreeMap<&str, &str>,
    problems: &mut Vec<Problem>,
) {
    type Reading = (String, String, i64);
    let mut values: BTreeMap<Reading, [i64; 3]> = BTreeMap::new();
    for (i, events) in [before, after, deltas].into_iter().enumerate() {
        for e in events {
            let key = (
                e.payload.stripe_customer_id.clone(),
                e.event_name.clone(),
                e.timestamp,
            );
            values.entry(key).or_default()[i] += e.payload.value;
        }
    }
    for ((stripe, meter, timestamp), [was, is, delta]) in values {
        if was + delta != is {
            let day = chrono::DateTime::from_timestamp(timestamp, 0)
                .map_or(timestamp.to_string(), |t| t.date_naive().to_string());
            problems.push(Problem {
                file: url.to_string(),
                customer_id: customers
                    .get(stripe.as_str())
                    .map_or(stripe.clone(), |c| c.to_string()),
                problem: format!(
                    "meter {meter} on {day}: delta {delta} does not turn the previous reading {was} into {is}"
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bill::render::EventPayload;

    fn ev(stripe: &str, meter: &str, ts: i64, value: i64) -> EventLine {
        EventLine {
            identifier: format!("{stripe}-{meter}-{ts}"),
            timestamp: ts,
            event_name: meter.into(),
            payload: EventPayload {
                value,
                stripe_customer_id: stripe.into(),
            },
        }
    }

    fn key(c: &str, cur: &str) -> Key {
        (c.into(), cur.into())
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn deltas_must_turn_each_reading_into_the_new_one() {
        let before = [ev("cus_a", "tokens", 1, 100), ev("cus_a", "tokens", 2, 50)];
        let after = [ev("cus_a", "tokens", 1, 130), ev("cus_a", "tokens", 2, 50)];
        let customers = BTreeMap::from([("cus_a", "a")]);
        let mut problems = Vec::new();
        check_deltas(
            "u",
            &[ev("cus_a", "tokens", 1, 30)],
            &before,
            &after,
            &customers,
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        check_deltas(
            "u",
            &[ev("cus_a", "tokens", 1, 31)],
            &before,
            &after,
            &customers,
            &mut problems,
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].customer_id, "a");
        assert!(problems[0].problem.contains("delta 31"), "{}", problems[0]);
        // a reading that changed with no delta at all
        problems.clear();
        check_deltas("u", &[], &before, &after, &customers, &mut problems);
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn invoice_items_must_carry_the_difference_in_minor_units() {
        let expected = BTreeMap::from([
            (key("a", "EUR"), (d("621.41"), d("630.00"))),
            (key("b", "USD"), (d("10.00"), d("10.00"))),
            (key("c", "EUR"), (d("1.00"), d("2.00"))),
        ]);
        // c has no Stripe id: withheld, nothing may be sent
        let stripe = BTreeMap::from([
            ("a".to_string(), "cus_a".to_string()),
            ("b".into(), "cus_b".into()),
        ]);
        let mut problems = Vec::new();
        let sent = BTreeMap::from([(key("a", "EUR"), 859)]);
        check_items("u", &sent, &expected, &stripe, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let sent = BTreeMap::from([(key("a", "EUR"), 860), (key("c", "EUR"), 100)]);
        check_items("u", &sent, &expected, &stripe, &mut problems);
        let who: Vec<&str> = problems.iter().map(|p| p.customer_id.as_str()).collect();
        assert_eq!(who, ["a", "c"]);
    }

    #[test]
    fn diff_lines_must_add_up_to_the_change_of_total() {
        let row = |c: &str, kind: &str, p: Option<&str>, a: Option<&str>, diff: &str| DiffRow {
            line: 2,
            previous_revision: 1,
            customer_id: c.into(),
            line_type: kind.into(),
            provider: String::new(),
            model: String::new(),
            previous_amount: p.map(d),
            amount: a.map(d),
            difference: d(diff),
            currency: "EUR".into(),
        };
        let expected = BTreeMap::from([(key("a", "EUR"), (d("10.00"), d("12.50")))]);
        let good = [
            row("a", "api_usage", Some("4.00"), Some("6.50"), "2.50"),
            row("a", "total", Some("10.00"), Some("12.50"), "2.50"),
        ];
        let mut problems = Vec::new();
        check_diff("u", &good, &expected, 1, 2, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let bad = [
            row("a", "api_usage", Some("4.00"), Some("6.40"), "2.40"),
            row("a", "total", Some("10.00"), Some("12.50"), "2.50"),
        ];
        check_diff("u", &bad, &expected, 1, 2, &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].problem.contains("add up to 2.40"),
            "{}",
            problems[0]
        );
    }
}
