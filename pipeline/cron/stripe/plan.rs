//! What a push sends, decided without IO: the events of a daily file, or the
//! differences between a month's approved revision and what Stripe already
//! accepted (see [`plan_month`]).
//!
//! Identifiers are opaque strings, with one rule: a correction of a reading
//! Stripe already has is sent as a delta event named `<identifier>-r<R>`
//! (or `mtr-<sha256>` of that when it would exceed Stripe's 100 characters,
//! as `meter_events.sql` shortens base identifiers).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate};

use serde::Serialize;

use crate::bill::diff::identifier;
use crate::lake::stripe_record::AcceptedEvent;
/// The reading a meter event belongs to (the record keys what Stripe
/// accepted by it).
pub use crate::lake::stripe_record::Key;

/// Stripe's limit on an identifier's length (formats.md section 4).
pub const MAX_IDENTIFIER: usize = 100;

/// One meter event, in the shape `render::meter_events_jsonl` writes (and
/// Stripe's bulk import reads).
pub use crate::bill::render::{EventLine as MeterEvent, EventPayload as Payload};

impl MeterEvent {
    /// The UTC day of the timestamp (checked when the file is read).
    pub fn day(&self) -> NaiveDate {
        day_of(self.timestamp).unwrap_or_default()
    }

    /// What the event measures: (Stripe customer, event name, UTC day).
    pub fn key(&self) -> Key {
        Key {
            customer: self.payload.stripe_customer_id.clone(),
            event_name: self.event_name.clone(),
            day: self.day(),
        }
    }
}

/// One invoice-item correction of a closed month (`invoice_items.jsonl`),
/// as billing writes it.
pub use crate::bill::diff::InvoiceItem;

/// The UTC day of a Unix timestamp, if it is one chrono can represent.
pub fn day_of(timestamp: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp(timestamp, 0).map(|t| t.date_naive())
}

pub use crate::bill::render::parse_jsonl;

/// Parses a meter-event file and checks each timestamp is a date.
pub fn parse_events(bytes: &[u8]) -> Result<Vec<MeterEvent>, (usize, String)> {
    let events: Vec<MeterEvent> = parse_jsonl(bytes)?;
    for (i, e) in events.iter().enumerate() {
        if day_of(e.timestamp).is_none() {
            return Err((i + 1, format!("timestamp {} is out of range", e.timestamp)));
        }
    }
    Ok(events)
}

/// Why a meter event is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Why {
    /// The file's event, as it is: Stripe has nothing for its reading yet.
    New,
    /// The difference between the revision's reading and what Stripe has.
    Delta { accepted: i64, target: i64 },
}

/// A meter event to send, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub event: MeterEvent,
    pub why: Why,
}

/// A month's meter events against what Stripe accepted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MonthPlan {
    /// In (customer, event name, day) order.
    pub sends: Vec<Send>,
    /// Readings Stripe already has at the revision's value.
    pub unchanged: usize,
}

/// Plans a month's revision `revision` against what Stripe accepted for
/// that month. Per reading (Stripe customer, event name, UTC day):
/// - nothing accepted: the revision's events are sent as they are;
/// - accepted sum `A` differs from the revision's value `V` (or the reading
///   is absent from the revision, `V = 0`): one delta event of `V - A`
///   named `<identifier>-r<revision>`;
/// - `A == V`: nothing.
///
/// `taken` holds every identifier accepted so far: a planned identifier
/// never reuses one (Stripe would refuse it as a duplicate), so a name
/// already used gets a further `-N` suffix.
pub fn plan_month(
    revision: u32,
    rev: &[MeterEvent],
    accepted: &[AcceptedEvent],
    taken: &HashSet<String>,
) -> MonthPlan {
    let mut target: BTreeMap<Key, Vec<&MeterEvent>> = BTreeMap::new();
    for e in rev {
        target.entry(e.key()).or_default().push(e);
    }
    let mut have: BTreeMap<Key, Vec<&AcceptedEvent>> = BTreeMap::new();
    for a in accepted {
        have.entry(a.key()).or_default().push(a);
    }
    let keys: std::collections::BTreeSet<&Key> = target.keys().chain(have.keys()).collect();
    let mut names = Names::new(revision, taken);
    let mut plan = MonthPlan::default();
    for key in keys {
        let events = target.get(key).map(Vec::as_slice).unwrap_or_default();
        let accepted = have.get(key).map(Vec::as_slice).unwrap_or_default();
        plan_key(key, events, accepted, &mut names, &mut plan);
    }
    plan
}

fn plan_key(
    key: &Key,
    events: &[&MeterEvent],
    accepted: &[&AcceptedEvent],
    names: &mut Names,
    plan: &mut MonthPlan,
) {
    if accepted.is_empty() {
        for e in events {
            let mut event = (*e).clone();
            event.identifier = names.first(&e.identifier);
            plan.sends.push(Send {
                event,
                why: Why::New,
            });
        }
        return;
    }
    let v: i64 = events.iter().map(|e| e.payload.value).sum();
    let a: i64 = accepted.iter().map(|a| a.value).sum();
    if v == a {
        plan.unchanged += 1;
        return;
    }
    // The revision's event names the delta; a reading the revision dropped
    // takes the name and time of the first event Stripe accepted for it.
    let (base, timestamp) = match events.first() {
        Some(e) => (e.identifier.as_str(), e.timestamp),
        None => (accepted[0].identifier.as_str(), accepted[0].timestamp),
    };
    plan.sends.push(Send {
        event: MeterEvent {
            identifier: names.delta(base),
            timestamp,
            event_name: key.event_name.clone(),
            payload: Payload {
                value: v - a,
                stripe_customer_id: key.customer.clone(),
            },
        },
        why: Why::Delta {
            accepted: a,
            target: v,
        },
    });
}

/// Hands out identifiers no accepted or planned event uses.
struct Names<'a> {
    revision: u32,
    taken: &'a HashSet<String>,
    planned: HashSet<String>,
}

impl<'a> Names<'a> {
    fn new(revision: u32, taken: &'a HashSet<String>) -> Self {
        Names {
            revision,
            taken,
            planned: HashSet::new(),
        }
    }

    fn free(&self, id: &str) -> bool {
        !self.taken.contains(id) && !self.planned.contains(id)
    }

    fn claim(&mut self, id: String) -> String {
        self.planned.insert(id.clone());
        id
    }

    /// `base` itself when free, else a delta name.
    fn first(&mut self, base: &str) -> String {
        match self.free(base) {
            true => self.claim(base.to_string()),
            false => self.delta(base),
        }
    }

    /// `<base>-r<R>`, then `<base>-r<R>-2`, `-3`, ... until one is free.
    fn delta(&mut self, base: &str) -> String {
        let stem = format!("{base}-r{}", self.revision);
        let mut n = 1u32;
        loop {
            let candidate = match n {
                1 => identifier(&stem),
                n => identifier(&format!("{stem}-{n}")),
            };
            if self.free(&candidate) {
                return self.claim(candidate);
            }
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bill::render;
    use crate::model::ids::sha256_hex;

    const NOON_OCT_5: i64 = 1_791_201_600;

    fn event(id: &str, customer: &str, name: &str, ts: i64, value: i64) -> MeterEvent {
        MeterEvent {
            identifier: id.into(),
            timestamp: ts,
            event_name: name.into(),
            payload: Payload {
                value,
                stripe_customer_id: customer.into(),
            },
        }
    }

    fn accepted(id: &str, customer: &str, name: &str, ts: i64, value: i64) -> AcceptedEvent {
        AcceptedEvent {
            identifier: id.into(),
            stripe_customer_id: customer.into(),
            event_name: name.into(),
            day: day_of(ts).unwrap(),
            timestamp: ts,
            value,
        }
    }

    fn sends(plan: &MonthPlan) -> Vec<(String, i64)> {
        plan.sends
            .iter()
            .map(|s| (s.event.identifier.clone(), s.event.payload.value))
            .collect()
    }

    #[test]
    fn the_file_format_is_what_render_writes() {
        let rendered = render::meter_events_jsonl(&[render::MeterEvent {
            date: "2026-10-05".into(),
            customer_id: "cust_0001".into(),
            event_name: "llm_tokens".into(),
            value: -1234,
            stripe_customer_id: Some("cus_X".into()),
            identifier: "cust_0001-llm_tokens-20261005".into(),
            timestamp: NOON_OCT_5,
        }]);
        let events = parse_events(&rendered).unwrap();
        assert_eq!(
            events,
            [event(
                "cust_0001-llm_tokens-20261005",
                "cus_X",
                "llm_tokens",
                NOON_OCT_5,
                -1234
            )]
        );
        assert_eq!(events[0].day().to_string(), "2026-10-05");
    }

    #[test]
    fn a_bad_line_is_named_by_number() {
        let bytes = b"{\"identifier\":\"a\",\"timestamp\":1,\"event_name\":\"e\",\"payload\":{\"value\":1,\"stripe_customer_id\":\"c\"}}\n\n{\"identifier\":\"b\",\"timestamp\":1,\"event_name\":\"e\",\"payload\":{\"value\":1.5,\"stripe_customer_id\":\"c\"}}\n";
        let (line, message) = parse_events(bytes).unwrap_err();
        assert_eq!(line, 3);
        assert!(message.contains("1.5"), "{message}");
    }

    #[test]
    fn nothing_accepted_sends_the_revision_as_it_is() {
        let rev = [
            event("a-llm-20261005", "cus_A", "llm", NOON_OCT_5, 10),
            event("b-llm-20261005", "cus_B", "llm", NOON_OCT_5, 20),
        ];
        let plan = plan_month(1, &rev, &[], &HashSet::new());
        assert_eq!(
            sends(&plan),
            [("a-llm-20261005".into(), 10), ("b-llm-20261005".into(), 20)]
        );
        assert!(plan.sends.iter().all(|s| s.why == Why::New));
        assert_eq!(plan.unchanged, 0);
    }

    #[test]
    fn changed_readings_get_deltas_dropped_ones_go_to_zero_equal_ones_stay() {
        let day6 = NOON_OCT_5 + 86_400;
        let rev = [
            event("a-llm-20261005", "cus_A", "llm", NOON_OCT_5, 150), // up
            event("a-llm-20261006", "cus_A", "llm", day6, 70),        // down
            event("b-llm-20261005", "cus_B", "llm", NOON_OCT_5, 20),  // equal
            event("c-llm-20261005", "cus_C", "llm", NOON_OCT_5, 5),   // new
        ];
        let acc = [
            accepted("a-llm-20261005", "cus_A", "llm", NOON_OCT_5, 100),
            accepted("a-llm-20261006", "cus_A", "llm", day6, 90),
            accepted("b-llm-20261005", "cus_B", "llm", NOON_OCT_5, 15),
            accepted("b-llm-20261005-r2", "cus_B", "llm", NOON_OCT_5, 5),
            accepted("d-cmd-20261005", "cus_D", "cmd", NOON_OCT_5 + 60, 3), // dropped
        ];
        let taken = acc.iter().map(|a| a.identifier.clone()).collect();
        let plan = plan_month(3, &rev, &acc, &taken);
        assert_eq!(
            sends(&plan),
            [
                ("a-llm-20261005-r3".into(), 50),
                ("a-llm-20261006-r3".into(), -20),
                ("c-llm-20261005".into(), 5),
                ("d-cmd-20261005-r3".into(), -3),
            ]
        );
        assert_eq!(plan.unchanged, 1);
        assert_eq!(
            plan.sends[1].why,
            Why::Delta {
                accepted: 90,
                target: 70
            }
        );
        // The dropped reading keeps the time Stripe has it at.
        assert_eq!(plan.sends[3].event.timestamp, NOON_OCT_5 + 60);
        assert_eq!(plan.sends[3].event.payload.stripe_customer_id, "cus_D");
    }

    #[test]
    fn a_used_name_is_never_reused() {
        // The revision's identifier was accepted for another customer (a
        // changed stripe_customer_id), and its delta name is taken too.
        let rev = [event("x-llm-20261005", "cus_NEW", "llm", NOON_OCT_5, 10)];
        let acc = [
            accepted("x-llm-20261005", "cus_OLD", "llm", NOON_OCT_5, 10),
            accepted("x-llm-20261005-r2", "cus_OTHER", "llm", NOON_OCT_5, 1),
        ];
        let taken = acc.iter().map(|a| a.identifier.clone()).collect();
        let plan = plan_month(2, &rev, &acc, &taken);
        assert_eq!(
            sends(&plan),
            [
                ("x-llm-20261005-r2-2".into(), 10),
                ("x-llm-20261005-r2-3".into(), -10),
                ("x-llm-20261005-r2-r2".into(), -1),
            ]
        );
        let again = plan_month(2, &rev, &acc, &taken);
        assert_eq!(again, plan, "planning is deterministic");
    }

    #[test]
    fn long_names_are_hashed_to_fit() {
        let long = "c".repeat(98);
        let rev = [event(&long, "cus_A", "llm", NOON_OCT_5, 2)];
        let acc = [accepted(&long, "cus_A", "llm", NOON_OCT_5, 1)];
        let taken = HashSet::from([long.clone()]);
        let plan = plan_month(12, &rev, &acc, &taken);
        let id = &plan.sends[0].event.identifier;
        assert_eq!(
            id,
            &format!("mtr-{}", sha256_hex(format!("{long}-r12").as_bytes()))
        );
        assert!(id.len() <= MAX_IDENTIFIER);
    }
}
