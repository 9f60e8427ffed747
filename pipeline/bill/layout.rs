//! What each file of a published revision is, by its key: the one rule every
//! reader of a revision goes through (the diff, publication, reconcile,
//! query, explain, the report, approve and the Stripe push), so that no
//! reader takes a summary or a diff for an invoice.
//!
//! ```text
//! invoices/YYYY-MM/rev-N/<customer_id>.csv    Invoice (one customer's lines and total row)
//! invoices/YYYY-MM/rev-N/summary.csv          Summary (one row per invoiced customer)
//! invoices/YYYY-MM/rev-N/credits.csv          Credits (prepaid credit balances per grant)
//! invoices/YYYY-MM/rev-N/_manifest.json       Manifest
//! invoices/YYYY-MM/rev-N/diff.csv             Diff          \
//! invoices/YYYY-MM/rev-N/diff.txt             DiffText       |
//! invoices/YYYY-MM/rev-N/corrections.csv      Corrections    | derived: the change
//! stripe/YYYY-MM/rev-N/meter_event_corrections.jsonl         | from the revision
//! stripe/YYYY-MM/rev-N/invoice_items.jsonl    InvoiceItems   | before, or
//! invoices/YYYY-MM/rev-N/notes/<number>.csv   Note          /  what Stripe holds
//! stripe/YYYY-MM/rev-N/meter_events.jsonl     MeterEvents
//! stripe/YYYY-MM/rev-N/invoices.jsonl         StripeInvoices (contract customers' invoices)
//! stripe/YYYY-MM/rev-N/meter_event_stream/NNNN.json  MeterEventStream
//! ```
//!
//! `schemas/views.sql` repeats the invoice rule as the macro
//! `meter_is_invoice_file` (the DuckDB CLI reads that file alone); a test
//! keeps the two equal, name by name.

use crate::model::ids::{RESERVED_CUSTOMER_IDS, valid_id};

/// One file of a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionFile<'a> {
    /// `invoices/M/rev-N/<customer_id>.csv`.
    Invoice { customer_id: &'a str },
    /// `invoices/M/rev-N/summary.csv`.
    Summary,
    /// `invoices/M/rev-N/credits.csv`: each prepaid credit grant's month
    /// (opening, applied, expired, closing), when there are grants.
    Credits,
    /// `invoices/M/rev-N/_manifest.json`.
    Manifest,
    /// `invoices/M/rev-N/diff.csv`: per customer and changed line, previous,
    /// new and difference, and every customer's total row.
    Diff,
    /// `invoices/M/rev-N/diff.txt`: the same, for a person.
    DiffText,
    /// `invoices/M/rev-N/corrections.csv`: per customer, credit or debit.
    Corrections,
    /// `stripe/M/rev-N/meter_events.jsonl`.
    MeterEvents,
    /// `stripe/M/rev-N/meter_event_stream/NNNN.json`.
    MeterEventStream,
    /// `stripe/M/rev-N/meter_event_corrections.jsonl`: delta meter events.
    MeterEventCorrections,
    /// `stripe/M/rev-N/invoice_items.jsonl`: invoice items.
    InvoiceItems,
    /// `invoices/M/rev-N/notes/<number>.csv`: a credit note (`CN-...`) or
    /// debit note (`DN-...`) against an invoice Stripe holds.
    Note { number: &'a str },
    /// `stripe/M/rev-N/invoices.jsonl`: the invoices of customers with a
    /// contract, line by line in minor units, as the push makes them in
    /// Stripe.
    StripeInvoices,
    /// Anything else (not a revision's file, or not meter's): every reader
    /// leaves it alone.
    Other,
}

impl RevisionFile<'_> {
    /// The files that describe a revision's change from the one before.
    /// They are not compared when deciding whether the month changed: they
    /// depend on the revision before and on the clock.
    pub fn is_derived(&self) -> bool {
        matches!(
            self,
            RevisionFile::Diff
                | RevisionFile::DiffText
                | RevisionFile::Corrections
                | RevisionFile::MeterEventCorrections
                | RevisionFile::InvoiceItems
                | RevisionFile::Note { .. }
        )
    }

    pub fn is_invoice(&self) -> bool {
        matches!(self, RevisionFile::Invoice { .. })
    }

    /// The file's key in revision `revision` of `month` (`classify` of it
    /// gives the file back). `None` for the files that are not one key:
    /// the meter event stream's bodies and `Other`.
    pub fn key(&self, month: &str, revision: u32) -> Option<String> {
        let (kind, name) = match self {
            RevisionFile::Invoice { customer_id } => ("invoices", format!("{customer_id}.csv")),
            RevisionFile::Summary => ("invoices", "summary.csv".into()),
            RevisionFile::Credits => ("invoices", "credits.csv".into()),
            RevisionFile::Manifest => ("invoices", "_manifest.json".into()),
            RevisionFile::Diff => ("invoices", "diff.csv".into()),
            RevisionFile::DiffText => ("invoices", "diff.txt".into()),
            RevisionFile::Corrections => ("invoices", "corrections.csv".into()),
            RevisionFile::MeterEvents => ("stripe", "meter_events.jsonl".into()),
            RevisionFile::MeterEventCorrections => {
                ("stripe", "meter_event_corrections.jsonl".into())
            }
            RevisionFile::InvoiceItems => ("stripe", "invoice_items.jsonl".into()),
            RevisionFile::Note { number } => ("invoices", format!("notes/{number}.csv")),
            RevisionFile::StripeInvoices => ("stripe", "invoices.jsonl".into()),
            RevisionFile::MeterEventStream | RevisionFile::Other => return None,
        };
        Some(format!("{kind}/{month}/rev-{revision}/{name}"))
    }
}

/// The key of the `n`th (1-based) body of a revision's meter event stream.
pub fn stream_key(month: &str, revision: u32, n: usize) -> String {
    format!("stripe/{month}/rev-{revision}/meter_event_stream/{n:04}.json")
}

/// What the file at `key` (relative to the store) is.
pub fn classify(key: &str) -> RevisionFile<'_> {
    let mut parts = key.splitn(4, '/');
    let (Some(kind), Some(month), Some(rev), Some(rest)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return RevisionFile::Other;
    };
    let is_month = month.len() == 7
        && month.bytes().enumerate().all(|(i, b)| match i {
            4 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    let is_rev = rev
        .strip_prefix("rev-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !is_month || !is_rev {
        return RevisionFile::Other;
    }
    match kind {
        "invoices" => match rest {
            "summary.csv" => RevisionFile::Summary,
            "credits.csv" => RevisionFile::Credits,
            "_manifest.json" => RevisionFile::Manifest,
            "diff.csv" => RevisionFile::Diff,
            "diff.txt" => RevisionFile::DiffText,
            "corrections.csv" => RevisionFile::Corrections,
            name if name.starts_with("notes/") => match note_number(name) {
                Some(number) => RevisionFile::Note { number },
                None => RevisionFile::Other,
            },
            name => match invoice_customer(name) {
                Some(customer_id) => RevisionFile::Invoice { customer_id },
                None => RevisionFile::Other,
            },
        },
        "stripe" => match rest {
            "meter_events.jsonl" => RevisionFile::MeterEvents,
            "meter_event_corrections.jsonl" => RevisionFile::MeterEventCorrections,
            "invoice_items.jsonl" => RevisionFile::InvoiceItems,
            "invoices.jsonl" => RevisionFile::StripeInvoices,
            other => match other.strip_prefix("meter_event_stream/") {
                Some(body)
                    if body.len() == 9
                        && body.ends_with(".json")
                        && body[..4].bytes().all(|b| b.is_ascii_digit()) =>
                {
                    RevisionFile::MeterEventStream
                }
                _ => RevisionFile::Other,
            },
        },
        _ => RevisionFile::Other,
    }
}

/// The revision a file of a revision belongs to (`rev-N` in its key).
pub fn revision_of(key: &str) -> Option<u32> {
    match classify(key) {
        RevisionFile::Other => None,
        _ => key.split('/').nth(2)?.strip_prefix("rev-")?.parse().ok(),
    }
}

/// The customer whose invoice a file of a revision's invoice folder is, by
/// its name alone: `<customer_id>.csv` with a valid id that is not one of
/// the [`RESERVED_CUSTOMER_IDS`] (`summary.csv`, `credits.csv`, `diff.csv`
/// and `corrections.csv` are not invoices).
pub fn invoice_customer(name: &str) -> Option<&str> {
    name.strip_suffix(".csv")
        .filter(|id| valid_id(id) && !RESERVED_CUSTOMER_IDS.contains(id))
}

/// The number of a note file, `notes/<number>.csv`: `CN-` or `DN-`, then
/// letters, digits, `.`, `_` and `-`.
pub fn note_number(name: &str) -> Option<&str> {
    name.strip_prefix("notes/")?
        .strip_suffix(".csv")
        .filter(|n| {
            (n.starts_with("CN-") || n.starts_with("DN-"))
                && n.len() <= 120
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// The same rule in DuckDB SQL, as `schemas/views.sql` states it.
pub fn sql_invoice_rule() -> String {
    let names: Vec<String> = RESERVED_CUSTOMER_IDS
        .iter()
        .map(|id| format!("'{id}.csv'"))
        .collect();
    format!(
        "CREATE OR REPLACE MACRO meter_is_invoice_file(name) AS\n    \
         regexp_full_match(name, '[A-Za-z0-9][A-Za-z0-9._-]{{0,63}}\\.csv')\n    \
         AND name NOT IN ({});",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    #[test]
    fn every_file_meter_writes_is_named() {
        let cases = [
            (
                "invoices/2026-10/rev-2/cust_0001.csv",
                RevisionFile::Invoice {
                    customer_id: "cust_0001",
                },
            ),
            ("invoices/2026-10/rev-2/summary.csv", RevisionFile::Summary),
            ("invoices/2026-10/rev-2/credits.csv", RevisionFile::Credits),
            ("invoices/2026-10/rev-2/diff.csv", RevisionFile::Diff),
            ("invoices/2026-10/rev-2/diff.txt", RevisionFile::DiffText),
            (
                "invoices/2026-10/rev-2/corrections.csv",
                RevisionFile::Corrections,
            ),
            (
                "invoices/2026-10/rev-2/_manifest.json",
                RevisionFile::Manifest,
            ),
            (
                "stripe/2026-10/rev-2/meter_events.jsonl",
                RevisionFile::MeterEvents,
            ),
            (
                "stripe/2026-10/rev-2/meter_event_stream/0001.json",
                RevisionFile::MeterEventStream,
            ),
            (
                "stripe/2026-10/rev-2/meter_event_corrections.jsonl",
                RevisionFile::MeterEventCorrections,
            ),
            (
                "stripe/2026-10/rev-2/invoice_items.jsonl",
                RevisionFile::InvoiceItems,
            ),
            (
                "invoices/2026-10/rev-2/notes/CN-202610-cust_0003-R2.csv",
                RevisionFile::Note {
                    number: "CN-202610-cust_0003-R2",
                },
            ),
            (
                "invoices/2026-10/rev-2/notes/DN-202610-c-R2.csv",
                RevisionFile::Note {
                    number: "DN-202610-c-R2",
                },
            ),
            ("invoices/2026-10/rev-2/notes/x.csv", RevisionFile::Other),
            (
                "invoices/2026-10/rev-2/notes/CN-a/b.csv",
                RevisionFile::Other,
            ),
            (
                "stripe/2026-10/rev-2/invoices.jsonl",
                RevisionFile::StripeInvoices,
            ),
            ("invoices/2026-10/latest.json", RevisionFile::Other),
            ("invoices/2026-10/rev-2/notes.txt", RevisionFile::Other),
            ("invoices/2026-10/rev-2/.hidden.csv", RevisionFile::Other),
            ("invoices/2026-10/rev-x/cust_0001.csv", RevisionFile::Other),
            ("invoices/2026-1/rev-1/cust_0001.csv", RevisionFile::Other),
            (
                "invoices/2026-10/rev-1/sub/cust_0001.csv",
                RevisionFile::Other,
            ),
            ("stripe/2026-10/rev-1/cust_0001.csv", RevisionFile::Other),
            (
                "stripe/daily/2026-10-03/meter_events.jsonl",
                RevisionFile::Other,
            ),
            ("reports/2026-10/report.json", RevisionFile::Other),
        ];
        for (key, kind) in cases {
            assert_eq!(classify(key), kind, "{key}");
            if let Some(built) = kind.key("2026-10", 2) {
                assert_eq!(built, key);
            }
        }
        assert_eq!(
            revision_of("invoices/2026-10/rev-12/_manifest.json"),
            Some(12)
        );
        assert_eq!(revision_of("invoices/2026-10/latest.json"), None);
        assert_eq!(
            classify(&stream_key("2026-10", 2, 12)),
            RevisionFile::MeterEventStream
        );
    }

    #[test]
    fn the_derived_files_are_the_diff_and_the_corrections() {
        let derived: Vec<&str> = [
            "invoices/2026-10/rev-2/diff.csv",
            "invoices/2026-10/rev-2/diff.txt",
            "invoices/2026-10/rev-2/corrections.csv",
            "stripe/2026-10/rev-2/meter_event_corrections.jsonl",
            "stripe/2026-10/rev-2/invoice_items.jsonl",
            "invoices/2026-10/rev-2/notes/CN-202610-c-R2.csv",
            "stripe/2026-10/rev-2/invoices.jsonl",
            "invoices/2026-10/rev-2/summary.csv",
            "invoices/2026-10/rev-2/cust_0001.csv",
            "stripe/2026-10/rev-2/meter_events.jsonl",
        ]
        .into_iter()
        .filter(|k| classify(k).is_derived())
        .collect();
        assert_eq!(derived.len(), 6);
        assert!(derived.iter().all(|k| !k.ends_with("summary.csv")));
    }

    /// `schemas/views.sql` states the rule in SQL; it must be this text, and
    /// DuckDB must decide every name as `invoice_customer` does.
    #[test]
    fn views_sql_states_the_same_invoice_rule() {
        let views = include_str!("../../schemas/views.sql");
        let rule = sql_invoice_rule();
        assert!(
            views.contains(&rule),
            "schemas/views.sql must hold exactly:\n{rule}"
        );
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch(&rule).unwrap();
        let mut names: Vec<String> = [
            "cust_0001.csv",
            "summary.csv",
            "diff.csv",
            "corrections.csv",
            "diff.txt",
            "_manifest.json",
            "a.csv",
            ".a.csv",
            "-a.csv",
            "a b.csv",
            "x.CSV",
            "a.csv.gz",
            "A.b-c_d.csv",
            "summary.csv.csv",
        ]
        .map(String::from)
        .to_vec();
        names.push(format!("{}.csv", "a".repeat(64)));
        names.push(format!("{}.csv", "a".repeat(65)));
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        for _ in 0..200 {
            let name = "[A-Za-z0-9._ -]{0,8}(\\.csv)?"
                .new_tree(&mut runner)
                .unwrap()
                .current();
            names.push(name);
        }
        for name in names {
            let sql: bool = conn
                .query_row("SELECT meter_is_invoice_file(?)", [&name], |r| r.get(0))
                .unwrap();
            assert_eq!(sql, invoice_customer(&name).is_some(), "{name:?}");
        }
    }
}
