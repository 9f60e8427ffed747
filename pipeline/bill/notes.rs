//! Credit and debit notes: when a rerun changes an invoice that Stripe
//! already holds (an approved month that was pushed), the new revision gets
//! one note per changed invoice, beside its invoices:
//!
//! ```text
//! invoices/YYYY-MM/rev-N/notes/CN-202610-cust_0003-R2.csv   a credit note (the customer is owed)
//! invoices/YYYY-MM/rev-N/notes/DN-202610-cust_0003-R2.csv   a debit note (the customer owes more)
//! ```
//!
//! A note is against what Stripe holds: for a customer with a contract,
//! meter's own invoice in Stripe at the revision the push record names
//! (its first revision, or that of the last note the push applied to it);
//! for a customer billed through meter events, the approved revision that
//! was pushed. It lists the lines that changed (previous, new, difference,
//! exact) and a total row with the net difference. A net credit is a
//! credit note (`CN-`), a net debit a debit note (`DN-`); lines that moved
//! without changing the total make a `CN-` note of kind `none`.
//!
//! Notes are derived files (they depend on what Stripe holds, not only on
//! the month): they are not compared when deciding whether a month
//! changed. `meter approve` covers them with the rest of the revision, and
//! `meter stripe push` sends a contract customer's note to Stripe: a credit
//! note on the finalized invoice for a credit, an invoice item for a debit.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::diff::{self, Line, LineChange};
use super::inputs::minor_units;
use super::layout::RevisionFile;
use super::render;
use crate::model::error::{Error, Result};

/// The columns of a note, in order.
pub const NOTE_HEADER: [&str; 16] = [
    "note_number",
    "kind",
    "original_invoice",
    "against_revision",
    "revision",
    "customer_id",
    "customer_name",
    "line_type",
    "provider",
    "model",
    "description",
    "previous_amount",
    "amount",
    "difference",
    "currency",
    "stripe_route",
];

/// What the note is against: the invoice Stripe holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// The revision whose amounts Stripe holds.
    pub revision: u32,
    /// The invoice Stripe holds (`INV-...-R<n>`).
    pub original_invoice: String,
    /// meter's invoice in Stripe (`in_...`), for a customer with a
    /// contract; `None` for a customer billed through meter events.
    pub stripe_invoice: Option<String>,
}

/// One note.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub number: String,
    /// `credit`, `debit` or `none`.
    pub kind: &'static str,
    pub customer_id: String,
    pub customer_name: String,
    pub base: Base,
    pub revision: u32,
    pub currency: String,
    /// The changed lines (total rows aside).
    pub lines: Vec<LineChange>,
    pub previous_total: Decimal,
    pub total: Decimal,
    /// `total - previous_total`: negative for a credit.
    pub difference: Decimal,
}

impl Note {
    /// How the note reaches Stripe.
    pub fn stripe_route(&self) -> String {
        match (&self.base.stripe_invoice, self.kind) {
            (_, "none") => "nothing to send: the total is unchanged".into(),
            (Some(inv), "credit") => format!("Stripe credit note on invoice {inv}"),
            (Some(_), _) => "Stripe invoice item on the customer's next invoice".into(),
            (None, _) => {
                "the revision's Stripe corrections (invoice_items.jsonl or delta meter events)"
                    .into()
            }
        }
    }

    /// The note's key in revision `revision` of `month`.
    pub fn key(&self, month: &str) -> String {
        RevisionFile::Note {
            number: &self.number,
        }
        .key(month, self.revision)
        .expect("one key")
    }
}

/// The number of a note: `CN-` (credit, or no net change) or `DN-`
/// (debit), then the month, customer and revision, as invoice numbers are.
pub fn number(kind: &str, month: &str, customer_id: &str, revision: u32) -> String {
    let prefix = match kind {
        "debit" => "DN",
        _ => "CN",
    };
    format!(
        "{prefix}-{}-{customer_id}-R{revision}",
        month.replace('-', "")
    )
}

/// The notes of revision `revision`: per customer of `bases` whose invoice
/// in `current` differs from the one in `base_lines` at its base revision.
/// A customer missing from `current` gets none (it was not billed this
/// time: the bill says why).
pub fn notes(
    month: &str,
    revision: u32,
    bases: &BTreeMap<String, Base>,
    base_lines: &BTreeMap<u32, Vec<Line>>,
    current: &[Line],
) -> Vec<Note> {
    let mut out = Vec::new();
    for (customer, base) in bases {
        if base.revision >= revision {
            continue;
        }
        let now: Vec<Line> = current
            .iter()
            .filter(|l| &l.customer_id == customer)
            .cloned()
            .collect();
        if now.is_empty() {
            continue;
        }
        let before: Vec<Line> = base_lines
            .get(&base.revision)
            .map(|lines| {
                lines
                    .iter()
                    .filter(|l| &l.customer_id == customer)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let changes = diff::diff_lines(&before, &now);
        let (totals, lines): (Vec<LineChange>, Vec<LineChange>) =
            changes.into_iter().partition(|c| c.line_type == "total");
        if lines.is_empty() && totals.iter().all(|t| t.change == "unchanged") {
            continue;
        }
        let total = |l: &[Line]| {
            l.iter()
                .filter(|l| l.line_type == "total")
                .map(|l| l.amount)
                .sum::<Decimal>()
        };
        let (previous_total, new_total) = (total(&before), total(&now));
        let difference = new_total - previous_total;
        let kind = match difference.cmp(&Decimal::ZERO) {
            std::cmp::Ordering::Less => "credit",
            std::cmp::Ordering::Greater => "debit",
            std::cmp::Ordering::Equal => "none",
        };
        out.push(Note {
            number: number(kind, month, customer, revision),
            kind,
            customer_id: customer.clone(),
            customer_name: now[0].customer_name.clone(),
            base: base.clone(),
            revision,
            currency: now[0].currency.clone(),
            lines,
            previous_total,
            total: new_total,
            difference,
        });
    }
    out
}

fn opt(d: Option<Decimal>) -> String {
    d.map(|d| d.to_string()).unwrap_or_default()
}

/// A note as CSV (RFC 4180, CRLF): the changed lines, then the total row.
pub fn note_csv(note: &Note) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    w.write_record(NOTE_HEADER).expect("in memory");
    let route = note.stripe_route();
    let head = |line_type: &str| -> Vec<String> {
        vec![
            note.number.clone(),
            note.kind.to_string(),
            note.base.original_invoice.clone(),
            note.base.revision.to_string(),
            note.revision.to_string(),
            note.customer_id.clone(),
            note.customer_name.clone(),
            line_type.to_string(),
        ]
    };
    for l in &note.lines {
        let mut row = head(&l.line_type);
        row.extend([
            l.provider.clone(),
            l.model.clone(),
            match l.description.as_str() {
                "" => l.previous_description.clone(),
                d => d.to_string(),
            },
            opt(l.previous_amount),
            opt(l.amount),
            l.difference.to_string(),
            l.currency.clone(),
            route.clone(),
        ]);
        write_row(&mut w, row);
    }
    let mut row = head("total");
    let what = match note.kind {
        "credit" => "Net credit",
        "debit" => "Net debit",
        _ => "No net change",
    };
    row.extend([
        String::new(),
        String::new(),
        format!(
            "{what}: {} replaces {} for {}",
            invoice_number(&note.base.original_invoice, note.revision),
            note.base.original_invoice,
            note.customer_id
        ),
        note.previous_total.to_string(),
        note.total.to_string(),
        note.difference.to_string(),
        note.currency.clone(),
        route,
    ]);
    write_row(&mut w, row);
    w.into_inner().expect("in memory")
}

fn write_row(w: &mut csv::Writer<Vec<u8>>, row: Vec<String>) {
    let row: Vec<String> = row
        .into_iter()
        .map(|c| render::safe_cell(&c).into_owned())
        .collect();
    w.write_record(&row).expect("in memory");
}

/// `INV-...-R<old>` renumbered to revision `revision`.
fn invoice_number(original: &str, revision: u32) -> String {
    match original.rsplit_once("-R") {
        Some((stem, _)) => format!("{stem}-R{revision}"),
        None => original.to_string(),
    }
}

/// A note as the push reads it back: its total row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteTotal {
    pub number: String,
    pub kind: String,
    pub original_invoice: String,
    pub against_revision: u32,
    pub revision: u32,
    pub customer_id: String,
    /// `difference` in minor units: negative for a credit.
    pub difference_minor: i64,
    /// Upper-case ISO 4217, as the invoices write it.
    pub currency: String,
}

/// Reads a published note's total row; every problem names the file, line
/// and field.
pub fn parse_note(url: &str, bytes: &[u8]) -> Result<NoteTotal> {
    let bad = |line: usize, message: String| Error::Billing {
        month: String::new(),
        message: format!("{url}:{line}: {message}"),
        hint: "a published note was altered; restore it from the store's versioning or bill the month again",
    };
    let mut reader = csv::Reader::from_reader(bytes);
    let headers = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
    if headers.iter().ne(NOTE_HEADER) {
        return Err(bad(1, "not the columns of a note".into()));
    }
    let mut total = None;
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| bad(i + 2, e.to_string()))?;
        if row.get(7) == Some("total") {
            total = Some((i + 2, row));
        }
    }
    let Some((line, row)) = total else {
        return Err(bad(1, "no total row".into()));
    };
    let field = |name: &str| {
        let col = NOTE_HEADER
            .iter()
            .position(|h| *h == name)
            .expect("a column");
        row.get(col).unwrap_or("").to_string()
    };
    let revision = |name: &str| {
        field(name)
            .parse::<u32>()
            .map_err(|_| bad(line, format!("field `{name}`: not a revision number")))
    };
    let currency = field("currency");
    let difference: Decimal = field("difference")
        .parse()
        .map_err(|_| bad(line, "field `difference`: not a number".into()))?;
    let minor = minor_units(&currency)
        .map(|p| difference * Decimal::from(10i64.pow(p)))
        .filter(|m| m.fract().is_zero())
        .and_then(|m| i64::try_from(m.trunc()).ok())
        .ok_or_else(|| {
            bad(
                line,
                format!("field `difference`: {difference} {currency} is not whole minor units"),
            )
        })?;
    Ok(NoteTotal {
        number: field("note_number"),
        kind: field("kind"),
        original_invoice: field("original_invoice"),
        against_revision: revision("against_revision")?,
        revision: revision("revision")?,
        customer_id: field("customer_id"),
        difference_minor: minor,
        currency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(customer: &str, kind: &str, model: &str, amount: &str) -> Line {
        Line {
            customer_id: customer.into(),
            customer_name: "Initech".into(),
            line_type: kind.into(),
            provider: if model.is_empty() { "" } else { "openai" }.into(),
            model: model.into(),
            description: format!("{kind} {model}"),
            quantity: "1".into(),
            amount: amount.parse().unwrap(),
            currency: "EUR".into(),
        }
    }

    fn base(revision: u32, stripe: Option<&str>) -> Base {
        Base {
            revision,
            original_invoice: format!("INV-202610-c-R{revision}"),
            stripe_invoice: stripe.map(String::from),
        }
    }

    #[test]
    fn a_lower_invoice_gets_a_credit_note_of_the_changed_lines() {
        let before = vec![
            line("c", "subscription", "", "100.00"),
            line("c", "api_usage", "gpt-5", "20.00"),
            line("c", "api_usage", "gpt-5", "5.00"),
            line("c", "total", "", "125.00"),
            line("d", "total", "", "9.00"),
        ];
        let now = vec![
            line("c", "subscription", "", "100.00"),
            line("c", "api_usage", "gpt-5", "17.50"),
            line("c", "api_usage", "gpt-5", "5.00"),
            line("c", "total", "", "122.50"),
            line("d", "total", "", "9.00"),
        ];
        let bases = BTreeMap::from([
            ("c".to_string(), base(1, Some("in_1"))),
            ("d".to_string(), base(1, None)),
        ]);
        let notes = notes("2026-10", 2, &bases, &BTreeMap::from([(1, before)]), &now);
        assert_eq!(notes.len(), 1, "d did not change");
        let n = &notes[0];
        assert_eq!(n.number, "CN-202610-c-R2");
        assert_eq!(n.kind, "credit");
        assert_eq!(n.difference, "-2.50".parse().unwrap());
        assert_eq!(n.lines.len(), 1);
        assert_eq!(n.lines[0].difference, "-2.50".parse().unwrap());
        assert_eq!(n.stripe_route(), "Stripe credit note on invoice in_1");

        let csv = note_csv(n);
        let total = parse_note("u", &csv).unwrap();
        assert_eq!(
            total,
            NoteTotal {
                number: "CN-202610-c-R2".into(),
                kind: "credit".into(),
                original_invoice: "INV-202610-c-R1".into(),
                against_revision: 1,
                revision: 2,
                customer_id: "c".into(),
                difference_minor: -250,
                currency: "EUR".into(),
            }
        );
        let text = String::from_utf8(csv).unwrap();
        assert!(
            text.contains("Net credit: INV-202610-c-R2 replaces INV-202610-c-R1 for c"),
            "{text}"
        );
    }

    #[test]
    fn a_higher_invoice_gets_a_debit_note_and_an_unchanged_one_none() {
        let before = vec![
            line("c", "api_usage", "gpt-5", "20.00"),
            line("c", "total", "", "20.00"),
        ];
        let now = vec![
            line("c", "api_usage", "gpt-5", "20.00"),
            line("c", "discount", "", "-1.00"),
            line("c", "commitment", "", "1.00"),
            line("c", "total", "", "20.00"),
        ];
        let moved = notes(
            "2026-10",
            3,
            &BTreeMap::from([("c".to_string(), base(2, Some("in_1")))]),
            &BTreeMap::from([(2, before.clone())]),
            &now,
        );
        assert_eq!(moved[0].kind, "none");
        assert_eq!(moved[0].number, "CN-202610-c-R3");
        assert_eq!(moved[0].lines.len(), 2);

        let up = vec![
            line("c", "api_usage", "gpt-5", "21.01"),
            line("c", "total", "", "21.01"),
        ];
        let debit = notes(
            "2026-10",
            3,
            &BTreeMap::from([("c".to_string(), base(2, Some("in_1")))]),
            &BTreeMap::from([(2, before.clone())]),
            &up,
        );
        assert_eq!(debit[0].number, "DN-202610-c-R3");
        assert_eq!(
            parse_note("u", &note_csv(&debit[0]))
                .unwrap()
                .difference_minor,
            101
        );
        // Nothing against the revision itself, or for a customer not billed.
        let same = notes(
            "2026-10",
            2,
            &BTreeMap::from([("c".to_string(), base(2, Some("in_1")))]),
            &BTreeMap::from([(2, before)]),
            &up,
        );
        assert!(same.is_empty());
    }

    #[test]
    fn an_altered_note_is_named_by_file_line_and_field() {
        let n = notes(
            "2026-10",
            2,
            &BTreeMap::from([("c".to_string(), base(1, None))]),
            &BTreeMap::from([(1, vec![line("c", "total", "", "1.00")])]),
            &[line("c", "total", "", "1.005")],
        );
        let err = parse_note("s3://b/n.csv", &note_csv(&n[0])).unwrap_err();
        assert!(
            err.to_string()
                .contains("s3://b/n.csv:2: field `difference`: 0.005 EUR is not whole minor units"),
            "{err}"
        );
    }
}
