//! The record of what Stripe accepted: `<lake>/_stripe/accepted.jsonl`, one
//! JSON line per accepted request, appended and fsynced as soon as Stripe
//! answers and before the next request. A push reads it first and sends
//! nothing it lists, so a push that stopped resumes where it stopped.
//!
//! A crash while a line is written leaves a torn last line (no newline, not
//! JSON): it is ignored with a notice and cut off before the next append.
//! Any other unreadable line is an error naming the file and line.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::lake::{AppendFile, Lake};
use crate::model::error::{Error, Result};

/// One accepted request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub item: Item,
    /// Where the request came from: `daily YYYY-MM-DD` or `YYYY-MM rev-N`.
    pub source: String,
    pub via: Via,
    /// RFC 3339.
    pub accepted_at: String,
    pub run_id: String,
}

/// How Stripe came to have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Stripe accepted this request.
    Sent,
    /// Stripe answered that it already had the identifier (an earlier
    /// request was accepted but its answer was lost).
    AlreadyExists,
}

/// What was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    MeterEvent(AcceptedEvent),
    InvoiceItem(AcceptedItem),
    /// A step of meter's own invoice in Stripe (a customer with a
    /// contract): its creation, a line, its finalization, a note.
    InvoiceStep(AcceptedStep),
}

impl Item {
    /// The identifier (meter event) or idempotency key (invoice item).
    pub fn key(&self) -> &str {
        match self {
            Item::MeterEvent(e) => &e.identifier,
            Item::InvoiceItem(i) => &i.idempotency_key,
            Item::InvoiceStep(s) => &s.idempotency_key,
        }
    }
}

/// The reading a meter event belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub customer: String,
    pub event_name: String,
    pub day: NaiveDate,
}

/// An accepted meter event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedEvent {
    pub identifier: String,
    pub stripe_customer_id: String,
    pub event_name: String,
    /// The UTC day of `timestamp`.
    pub day: NaiveDate,
    pub timestamp: i64,
    pub value: i64,
}

impl AcceptedEvent {
    /// The reading it counts towards.
    pub fn key(&self) -> Key {
        Key {
            customer: self.stripe_customer_id.clone(),
            event_name: self.event_name.clone(),
            day: self.day,
        }
    }
}

/// An accepted invoice item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedItem {
    pub idempotency_key: String,
    pub customer: String,
    pub amount: i64,
    pub currency: String,
    /// Stripe's id of the item (`ii_...`), when it answered one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_id: Option<String>,
}

/// What a step of meter's invoice in Stripe did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// `POST /v1/invoices`: a draft invoice for meter's invoice.
    Create,
    /// `POST /v1/invoiceitems` on the draft: one line of meter's invoice.
    Line,
    /// `POST /v1/invoices/{id}/finalize`.
    Finalize,
    /// `POST /v1/credit_notes` on the finalized invoice: a credit note.
    CreditNote,
    /// `POST /v1/invoiceitems` for the next invoice: a debit note.
    Debit,
}

/// An accepted step of meter's invoice in Stripe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedStep {
    pub idempotency_key: String,
    pub step: StepKind,
    /// `YYYY-MM`.
    pub month: String,
    pub customer_id: String,
    /// The Stripe customer (`cus_...`).
    pub customer: String,
    /// The revision whose amounts Stripe holds once the step is done.
    pub revision: u32,
    /// meter's invoice number, or the note's number.
    pub document: String,
    /// Stripe's invoice (`in_...`).
    pub stripe_invoice: String,
    /// Minor units (0 for the invoice's creation and finalization).
    pub amount: i64,
    pub currency: String,
    /// Stripe's id of what the step made (`in_`, `ii_`, `cn_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_id: Option<String>,
}

/// What Stripe holds of meter's invoice of one customer and month, from
/// the steps accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeInvoice {
    /// Stripe's invoice (`in_...`).
    pub stripe_invoice: String,
    /// meter's invoice it was made from (`INV-...-R<n>`).
    pub invoice_number: String,
    /// The revision it was made from.
    pub created_revision: u32,
    pub finalized: bool,
    /// The revision whose amounts Stripe holds: the one it was made from,
    /// or that of the last note applied to it.
    pub revision: u32,
    /// Net minor units Stripe holds: its lines, less credit notes, plus
    /// debit notes.
    pub amount: i64,
    pub currency: String,
}

/// How the file ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// Empty, or ends in a newline.
    Clean,
    /// The last line is whole but has no newline.
    Unterminated,
    /// The last line was torn by a crash: cut the file to `keep` bytes.
    Torn { keep: u64 },
}

/// The record as read.
#[derive(Debug)]
pub struct Record {
    path: PathBuf,
    pub entries: Vec<Entry>,
    /// What reading it noticed (a torn last line).
    pub notices: Vec<String>,
    tail: Tail,
}

impl Record {
    /// Where a lake keeps it.
    pub fn path_in(lake: &Path) -> PathBuf {
        lake.join("_stripe").join("accepted.jsonl")
    }

    /// Reads the lake's record; a missing file is an empty record.
    pub fn read(lake: &Lake) -> Result<Record> {
        let path = Record::path_in(lake.root());
        let bytes = lake.read_file(&path)?.unwrap_or_default();
        Record::parse(&path, &bytes)
    }

    /// Parses the bytes of the record at `path` (named in errors).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Record> {
        let mut record = Record {
            path: path.to_path_buf(),
            entries: Vec::new(),
            notices: Vec::new(),
            tail: Tail::Clean,
        };
        let mut offset = 0usize;
        let mut number = 0usize;
        while offset < bytes.len() {
            number += 1;
            let rest = &bytes[offset..];
            let (line, terminated) = match rest.iter().position(|b| *b == b'\n') {
                Some(end) => (&rest[..end], true),
                None => (rest, false),
            };
            let start = offset;
            offset += line.len() + usize::from(terminated);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Entry>(line) {
                Ok(entry) => {
                    record.entries.push(entry);
                    if !terminated {
                        record.tail = Tail::Unterminated;
                    }
                }
                Err(_) if !terminated => {
                    record.tail = Tail::Torn { keep: start as u64 };
                    record.notices.push(format!(
                        "{}:{number}: the last line is incomplete ({} bytes, a push stopped while writing it): ignored; its request is checked with Stripe again",
                        path.display(),
                        line.len()
                    ));
                }
                Err(e) => {
                    return Err(Error::Stripe {
                        message: format!(
                            "{}:{number}: not a record of an accepted request: {e}",
                            path.display()
                        ),
                        hint: "the record of what Stripe accepted is damaged: restore the file from a backup or repair the named line (do not delete the record: the push would send everything again)",
                    });
                }
            }
        }
        Ok(record)
    }

    /// Every identifier and idempotency key it holds.
    pub fn keys(&self) -> HashSet<String> {
        self.entries
            .iter()
            .map(|e| e.item.key().to_string())
            .collect()
    }

    /// The accepted meter events.
    pub fn meter_events(&self) -> impl Iterator<Item = &AcceptedEvent> {
        self.entries.iter().filter_map(|e| match &e.item {
            Item::MeterEvent(m) => Some(m),
            _ => None,
        })
    }

    /// Per customer, meter's invoice of `month` (`YYYY-MM`) as Stripe holds
    /// it, from the accepted steps in the order they were accepted.
    pub fn stripe_invoices(
        &self,
        month: &str,
    ) -> std::collections::BTreeMap<String, StripeInvoice> {
        let mut out = std::collections::BTreeMap::new();
        for e in &self.entries {
            let Item::InvoiceStep(s) = &e.item else {
                continue;
            };
            if s.month != month {
                continue;
            }
            if s.step == StepKind::Create {
                out.insert(
                    s.customer_id.clone(),
                    StripeInvoice {
                        stripe_invoice: s.stripe_invoice.clone(),
                        invoice_number: s.document.clone(),
                        created_revision: s.revision,
                        finalized: false,
                        revision: s.revision,
                        amount: 0,
                        currency: s.currency.clone(),
                    },
                );
                continue;
            }
            let Some(invoice) = out.get_mut(&s.customer_id) else {
                continue;
            };
            match s.step {
                StepKind::Create => {}
                StepKind::Line => invoice.amount += s.amount,
                StepKind::Finalize => invoice.finalized = true,
                StepKind::CreditNote => {
                    invoice.amount -= s.amount;
                    invoice.revision = s.revision;
                }
                StepKind::Debit => {
                    invoice.amount += s.amount;
                    invoice.revision = s.revision;
                }
            }
        }
        out
    }

    /// The Stripe customers that Stripe accepted meter events of for the
    /// month starting `first` and ending before `end`.
    pub fn metered_customers(&self, first: NaiveDate, end: NaiveDate) -> HashSet<String> {
        self.meter_events()
            .filter(|e| e.day >= first && e.day < end)
            .map(|e| e.stripe_customer_id.clone())
            .collect()
    }

    /// Opens the file for appending, first cutting off a torn last line (or
    /// ending an unterminated one) so that new lines start on their own.
    pub fn appender(&self, lake: &Lake) -> Result<Appender> {
        let (keep, end_line) = match self.tail {
            Tail::Clean => (None, false),
            Tail::Unterminated => (None, true),
            Tail::Torn { keep } => (Some(keep), false),
        };
        Ok(Appender {
            file: lake.append_file(&self.path, keep, end_line)?,
        })
    }
}

/// Appends entries to the record, each durable before `append` returns.
pub struct Appender {
    file: AppendFile,
}

impl Appender {
    /// Writes one line and makes it durable.
    pub fn append(&mut self, entry: &Entry) -> Result<()> {
        let mut line = serde_json::to_vec(entry).expect("an entry serializes");
        line.push(b'\n');
        self.file.append(&line)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn event_entry(id: &str, value: i64) -> Entry {
        Entry {
            item: Item::MeterEvent(AcceptedEvent {
                identifier: id.into(),
                stripe_customer_id: "cus_A".into(),
                event_name: "llm_tokens".into(),
                day: NaiveDate::from_ymd_opt(2026, 10, 5).unwrap(),
                timestamp: 1_791_201_600,
                value,
            }),
            source: "daily 2026-10-05".into(),
            via: Via::Sent,
            accepted_at: "2026-10-06T03:00:00+00:00".into(),
            run_id: "run-1".into(),
        }
    }

    fn item_entry(key: &str) -> Entry {
        Entry {
            item: Item::InvoiceItem(AcceptedItem {
                idempotency_key: key.into(),
                customer: "cus_A".into(),
                amount: -1234,
                currency: "eur".into(),
                stripe_id: Some("ii_1".into()),
            }),
            source: "2026-10 rev-2".into(),
            via: Via::AlreadyExists,
            accepted_at: "2026-11-06T03:00:00+00:00".into(),
            run_id: "run-2".into(),
        }
    }

    fn lines(entries: &[Entry]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in entries {
            out.extend(serde_json::to_vec(e).unwrap());
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn lines_round_trip_and_name_their_kind() {
        let entries = [event_entry("a", 5), item_entry("k")];
        let bytes = lines(&entries);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"kind":"meter_event","identifier":"a","#),
            "{text}"
        );
        assert!(text.contains(r#""kind":"invoice_item""#), "{text}");
        let record = Record::parse(Path::new("r.jsonl"), &bytes).unwrap();
        assert_eq!(record.entries, entries);
        assert!(record.notices.is_empty());
        assert_eq!(record.keys(), HashSet::from(["a".into(), "k".into()]));
        assert_eq!(record.meter_events().count(), 1);
    }

    #[test]
    fn a_torn_last_line_is_ignored_with_a_notice() {
        let mut bytes = lines(&[event_entry("a", 5), event_entry("b", 6)]);
        let whole = bytes.len();
        bytes.extend_from_slice(br#"{"kind":"meter_event","identif"#);
        let record = Record::parse(Path::new("/lake/_stripe/accepted.jsonl"), &bytes).unwrap();
        assert_eq!(record.entries.len(), 2);
        assert_eq!(record.tail, Tail::Torn { keep: whole as u64 });
        assert!(
            record.notices[0].starts_with("/lake/_stripe/accepted.jsonl:3: the last line"),
            "{:?}",
            record.notices
        );
    }

    #[test]
    fn any_other_bad_line_is_an_error_naming_file_and_line() {
        let mut bytes = lines(&[event_entry("a", 5)]);
        bytes.extend_from_slice(b"{not json}\n");
        bytes.extend(lines(&[event_entry("b", 6)]));
        let err = Record::parse(Path::new("/l/_stripe/accepted.jsonl"), &bytes).unwrap_err();
        assert!(
            err.to_string()
                .contains("/l/_stripe/accepted.jsonl:2: not a record"),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("do not delete"));
    }

    #[test]
    fn appending_after_a_torn_line_cuts_it_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = Record::path_in(dir.path());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut bytes = lines(&[event_entry("a", 5)]);
        bytes.extend_from_slice(b"{\"kind\":\"mete");
        fs::write(&path, &bytes).unwrap();

        let lake = Lake::open(dir.path(), "t").unwrap();
        let record = Record::read(&lake).unwrap();
        let mut appender = record.appender(&lake).unwrap();
        appender.append(&event_entry("b", 6)).unwrap();
        drop(appender);

        let again = Record::read(&lake).unwrap();
        assert!(again.notices.is_empty(), "{:?}", again.notices);
        let ids: Vec<&str> = again.entries.iter().map(|e| e.item.key()).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn an_unterminated_whole_line_is_kept_and_ended() {
        let dir = tempfile::tempdir().unwrap();
        let path = Record::path_in(dir.path());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut bytes = lines(&[event_entry("a", 5)]);
        bytes.pop();
        fs::write(&path, &bytes).unwrap();

        let lake = Lake::open(dir.path(), "t").unwrap();
        let record = Record::read(&lake).unwrap();
        assert_eq!(record.entries.len(), 1);
        record
            .appender(&lake)
            .unwrap()
            .append(&event_entry("b", 6))
            .unwrap();
        let again = Record::read(&lake).unwrap();
        assert_eq!(again.entries.len(), 2);
    }

    #[test]
    fn a_missing_record_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path(), "t").unwrap();
        let record = Record::read(&lake).unwrap();
        assert!(record.entries.is_empty());
    }
}
