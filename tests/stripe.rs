//! `meter stripe push` against the fake Stripe of `stripe_server.rs`: every
//! event lands exactly once through retries, stops and resumes; approved
//! months send exactly their differences; nothing leaks the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use meter::Error;
use meter::bill::approve::{self, ApproveOptions};
use meter::bill::diff::InvoiceItem;
use meter::bill::publish::{self, InputVersion, Inputs, Manifest, Object};
use meter::bill::render::{self, MeterEvent};
use meter::cron::stripe::{self, Api, ApiKey, PushOptions, PushReport, Retry, Status, Target};
use meter::lake::Lake;
use meter::lake::store::Store;
use meter::model::ctx::{Ctx, FixedClock};
use meter::model::ids::sha256_hex;
use serde_json::Value;

use crate::stripe_server::{API_KEY, FakeStripe, Fault};

fn at(month: u32, day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, hour, 0, 0).unwrap()
}

fn ctx(now: DateTime<Utc>, run: &str) -> Ctx {
    Ctx::with_run_id(Arc::new(FixedClock(now)), run)
}

fn oct(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, day).unwrap()
}

/// A day's reading of customer `n`, as the billing SQL names it.
fn ev(n: u32, meter: &str, day: u32, value: i64) -> MeterEvent {
    let date = oct(day);
    MeterEvent {
        date: date.to_string(),
        customer_id: format!("cust_{n:04}"),
        event_name: meter.into(),
        value,
        stripe_customer_id: Some(format!("cus_T{n:04}")),
        identifier: format!("cust_{n:04}-{meter}-{}", date.format("%Y%m%d")),
        timestamp: date.and_hms_opt(12, 0, 0).unwrap().and_utc().timestamp(),
    }
}

/// Sum per (Stripe customer, event name).
fn totals(events: &[MeterEvent]) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    for e in events {
        *out.entry((e.stripe_customer_id.clone().unwrap(), e.event_name.clone()))
            .or_default() += e.value;
    }
    out
}

struct Env {
    _dir: tempfile::TempDir,
    lake: PathBuf,
    out: PathBuf,
    store: Store,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        let out = dir.path().join("out");
        std::fs::create_dir_all(&lake).unwrap();
        let store = Store::open(out.to_str().unwrap()).unwrap();
        Env {
            _dir: dir,
            lake,
            out,
            store,
        }
    }

    fn write_daily(&self, day: u32, events: &[MeterEvent]) {
        let key = format!("stripe/daily/{}/meter_events.jsonl", oct(day));
        self.store
            .put(&key, render::meter_events_jsonl(events))
            .unwrap();
    }

    /// Publishes `rev-N` of October (Stripe files, manifest, latest.json)
    /// and approves it with `meter approve`.
    fn approve_revision(
        &self,
        revision: u32,
        events: &[MeterEvent],
        items: Option<&[InvoiceItem]>,
    ) {
        let prefix = format!("stripe/2026-10/rev-{revision}");
        let mut files = vec![(
            format!("{prefix}/meter_events.jsonl"),
            render::meter_events_jsonl(events),
        )];
        if let Some(items) = items {
            files.push((
                format!("{prefix}/invoice_items.jsonl"),
                render::write_jsonl(items),
            ));
        }
        for (key, bytes) in &files {
            self.store.put(key, bytes.clone()).unwrap();
        }
        let version = InputVersion {
            path: "test".into(),
            bytes: 0,
            sha256: String::new(),
        };
        let manifest = Manifest {
            month: "2026-10".into(),
            revision,
            run_id: format!("bill-{revision}"),
            created_at: at(10, 20, 0).to_rfc3339(),
            objects: files
                .iter()
                .map(|(key, bytes)| Object {
                    key: key.clone(),
                    bytes: bytes.len() as u64,
                    sha256: sha256_hex(bytes),
                })
                .collect(),
            inputs: Inputs {
                meter_version: "test".into(),
                pricing: version.clone(),
                customers: version,
                lake: String::new(),
                lake_files: Vec::new(),
            },
            fx_rates: BTreeMap::new(),
        };
        self.store
            .put(
                &publish::manifest_key("2026-10", revision),
                serde_json::to_vec_pretty(&manifest).unwrap(),
            )
            .unwrap();
        publish::point_latest(&self.store, "2026-10", revision, "test").unwrap();
        approve::approve(
            &ctx(at(10, 20, 0), &format!("approve-{revision}")),
            &ApproveOptions {
                lake: self.lake.clone(),
                out: self.out.display().to_string(),
                store_options: Vec::new(),
                month: "2026-10".into(),
                revision: Some(revision),
                by: "finance@example.com".into(),
            },
        )
        .expect("approve runs");
    }

    fn options(&self, target: Target, server: &FakeStripe) -> PushOptions {
        PushOptions {
            base_url: server.url.clone(),
            api_key: Some(ApiKey::new(API_KEY)),
            retry: Retry {
                max_attempts: 4,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
            },
            ..PushOptions::new(&self.lake, self.out.display().to_string(), target)
        }
    }

    fn record_path(&self) -> PathBuf {
        self.lake.join("_stripe/accepted.jsonl")
    }

    fn record(&self) -> Vec<Value> {
        match std::fs::read_to_string(self.record_path()) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn report_file(&self, run: &str) -> String {
        std::fs::read_to_string(self.lake.join(format!("_runs/{run}.json"))).unwrap()
    }
}

fn push(opts: &PushOptions, now: DateTime<Utc>, run: &str) -> PushReport {
    let report = stripe::push(&ctx(now, run), opts).expect("the push runs");
    assert!(report.counts_add_up(), "{}", report.summary());
    report
}

fn assert_landed_once(server: &FakeStripe, expected: &[MeterEvent]) {
    let counts = server.accept_counts();
    assert!(
        counts.values().all(|n| *n == 1),
        "an event was accepted twice: {counts:?}"
    );
    assert_eq!(server.totals(), totals(expected));
}

/// A day's events: 3 customers, 3 meters.
fn day_events(day: u32) -> Vec<MeterEvent> {
    let mut events = Vec::new();
    for n in 1..=3 {
        for (meter, value) in [
            ("llm_tokens", 1000),
            ("compute_minutes", 60),
            ("commands_run", 3),
        ] {
            events.push(ev(n, meter, day, value * n as i64));
        }
    }
    events
}

#[test]
fn a_daily_push_through_429s_a_500_and_a_dropped_connection_lands_every_event_once() {
    let env = Env::new();
    let events = day_events(5);
    env.write_daily(5, &events);
    let server = FakeStripe::start(at(10, 6, 3));
    server.script([
        Fault::Status(429),
        Fault::Status(429),
        Fault::Pass,
        Fault::RetryAfter(1),
        Fault::Pass,
        Fault::Status(500),
        Fault::Pass,
        Fault::Drop,
    ]);
    let opts = env.options(Target::Day(oct(5)), &server);
    let report = push(&opts, at(10, 6, 3), "push-1");

    assert_eq!(report.status, Status::Done);
    assert_eq!(report.planned, 9);
    assert_eq!(report.sent_accepted, 9);
    assert_eq!(report.retries, 5);
    assert_eq!(report.requests, 14);
    assert_eq!(server.requests(), 14);
    assert!(!report.needs_attention(), "{}", report.summary());
    assert_landed_once(&server, &events);
    let server_events = server.events();
    for e in &events {
        let got = &server_events[&e.identifier];
        assert_eq!((got.value, got.timestamp), (e.value, e.timestamp));
    }

    let record = env.record();
    assert_eq!(record.len(), 9);
    assert!(record.iter().all(|r| r["kind"] == "meter_event"
        && r["source"] == "daily 2026-10-05"
        && r["run_id"] == "push-1"
        && r["via"] == "sent"
        && r["day"] == "2026-10-05"));
    let file: Value = serde_json::from_str(&env.report_file("push-1")).unwrap();
    assert_eq!(file["sent_accepted"], 9);
    assert_eq!(file["source"], "daily 2026-10-05");
}

#[test]
fn a_second_identical_push_sends_nothing() {
    let env = Env::new();
    env.write_daily(5, &day_events(5));
    let server = FakeStripe::start(at(10, 6, 3));
    let opts = env.options(Target::Day(oct(5)), &server);
    push(&opts, at(10, 6, 3), "push-1");
    let before = server.requests();

    let again = push(&opts, at(10, 6, 4), "push-2");
    assert_eq!(again.requests, 0);
    assert_eq!(server.requests(), before);
    assert_eq!(again.already_accepted, again.planned);
    assert_eq!(again.sent_accepted, 0);
    assert_eq!(env.record().len(), 9, "nothing recorded twice");
}

#[test]
fn a_push_stopped_part_way_resumes_and_sends_nothing_twice() {
    let env = Env::new();
    let events = day_events(5);
    env.write_daily(5, &events);
    let server = FakeStripe::start(at(10, 6, 3));
    // Three pass; the fourth is accepted but its answer lost, then Stripe
    // fails until the attempts run out.
    server.script([
        Fault::Pass,
        Fault::Pass,
        Fault::Pass,
        Fault::AcceptThenDrop,
        Fault::Status(503),
        Fault::Status(503),
        Fault::Status(503),
    ]);
    let opts = env.options(Target::Day(oct(5)), &server);
    let err = stripe::push(&ctx(at(10, 6, 3), "push-1"), &opts).unwrap_err();
    let Error::Stripe { message, hint } = &err else {
        panic!("expected a Stripe error, got {err}");
    };
    let fourth = &events[3].identifier;
    assert!(message.contains(fourth), "{message}");
    assert!(message.contains("after 4 attempts"), "{message}");
    assert!(hint.contains("resumes where it stopped"), "{hint}");
    assert_eq!(env.record().len(), 3);
    let stopped: Value = serde_json::from_str(&env.report_file("push-1")).unwrap();
    assert_eq!(stopped["status"], "stopped");
    assert_eq!(stopped["sent_accepted"], 3);
    assert_eq!(stopped["unsent"], 6);

    // A crash while the record was written leaves a torn last line.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(env.record_path())
        .unwrap();
    std::io::Write::write_all(&mut file, br#"{"kind":"meter_event","identifier":"cust_"#).unwrap();
    drop(file);

    let resumed = push(&opts, at(10, 6, 4), "push-2");
    assert_eq!(resumed.status, Status::Done);
    assert_eq!(resumed.already_accepted, 3);
    assert_eq!(resumed.sent_accepted, 6);
    assert_eq!(resumed.requests, 6);
    assert!(
        resumed.notices.iter().any(|n| n.contains("incomplete")),
        "{:?}",
        resumed.notices
    );
    assert_landed_once(&server, &events);

    // The log: each identifier got one fresh 200; the fourth's second 200
    // was Stripe replaying its first answer.
    let log = server.log();
    for e in &events {
        let fresh = log
            .iter()
            .filter(|l| l.idempotency_key.as_deref() == Some(&e.identifier))
            .filter(|l| l.status == Some(200) && !l.replayed)
            .count();
        let accepted_and_dropped = log
            .iter()
            .filter(|l| l.keys.contains(&e.identifier) && l.status.is_none())
            .count();
        assert_eq!(fresh + accepted_and_dropped, 1, "{}: {log:?}", e.identifier);
    }
    assert!(log.iter().any(|l| l.replayed && l.keys == [fourth.clone()]));
    let ids: Vec<String> = env
        .record()
        .iter()
        .map(|r| r["identifier"].as_str().unwrap().to_string())
        .collect();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (9, 9), "{ids:?}");

    let third = push(&opts, at(10, 6, 5), "push-3");
    assert_eq!(third.requests, 0);
}

#[test]
fn an_identifier_stripe_already_has_counts_as_accepted() {
    let env = Env::new();
    let events = day_events(5);
    env.write_daily(5, &events);
    let server = FakeStripe::start(at(10, 6, 3));
    let opts = env.options(Target::Day(oct(5)), &server);
    push(&opts, at(10, 6, 3), "push-1");
    // The record is lost, and Stripe no longer replays the idempotency keys
    // (more than 24 hours): it answers that each identifier exists.
    std::fs::remove_file(env.record_path()).unwrap();
    server.forget_idempotency();

    let report = push(&opts, at(10, 7, 3), "push-2");
    assert_eq!(report.sent_accepted, 0);
    assert_eq!(report.already_accepted, 9);
    assert!(!report.needs_attention(), "{}", report.summary());
    assert!(
        report.notices.iter().any(|n| n.contains("already had 9")),
        "{:?}",
        report.notices
    );
    let record = env.record();
    assert_eq!(record.len(), 9);
    assert!(record.iter().all(|r| r["via"] == "already_exists"));
    assert_landed_once(&server, &events);
}

#[test]
fn a_month_push_without_approval_fails_with_the_approve_hint() {
    let env = Env::new();
    let server = FakeStripe::start(at(10, 20, 0));
    let opts = env.options(Target::Month(oct(1)), &server);
    let err = stripe::push(&ctx(at(10, 20, 0), "push-1"), &opts).unwrap_err();
    assert!(err.to_string().contains("2026-10 is not approved"), "{err}");
    assert!(
        err.to_string().contains("meter approve --month 2026-10"),
        "{err}"
    );
    assert!(err.hint().unwrap().contains("meter approve --month"));
    assert_eq!(server.requests(), 0);
}

#[test]
fn a_lake_that_does_not_exist_is_refused() {
    let env = Env::new();
    env.write_daily(5, &day_events(5));
    let server = FakeStripe::start(at(10, 6, 3));
    let opts = PushOptions {
        lake: env.lake.join("typo"),
        ..env.options(Target::Day(oct(5)), &server)
    };
    let err = stripe::push(&ctx(at(10, 6, 3), "push-1"), &opts).unwrap_err();
    assert!(matches!(err, Error::Usage(_)), "{err}");
    assert!(!env.lake.join("typo").exists());
    assert_eq!(server.requests(), 0);
}

#[test]
fn a_missing_daily_file_names_the_nightly_job() {
    let env = Env::new();
    let server = FakeStripe::start(at(10, 6, 3));
    let opts = env.options(Target::Day(oct(5)), &server);
    let err = stripe::push(&ctx(at(10, 6, 3), "push-1"), &opts).unwrap_err();
    assert!(
        err.to_string().contains("meter nightly --date 2026-10-05"),
        "{err}"
    );
    assert!(err.hint().unwrap().contains("meter nightly --date"));
}

/// rev-1 of October: two customers, three days.
fn rev1() -> Vec<MeterEvent> {
    vec![
        ev(1, "llm_tokens", 1, 100),
        ev(1, "commands_run", 1, 5),
        ev(1, "llm_tokens", 2, 200),
        ev(2, "llm_tokens", 1, 50),
    ]
}

/// rev-2: one reading up, one down, one gone, one equal, one new.
fn rev2() -> Vec<MeterEvent> {
    vec![
        ev(1, "llm_tokens", 1, 150),
        ev(1, "llm_tokens", 2, 120),
        ev(2, "llm_tokens", 1, 50),
        ev(2, "llm_tokens", 3, 30),
    ]
}

#[test]
fn an_approved_revision_of_an_open_month_sends_exactly_the_deltas() {
    let env = Env::new();
    let server = FakeStripe::start(at(10, 20, 0));
    // The nightly push sent day 1 already; rev-1 agrees with it.
    env.write_daily(1, &rev1()[..2]);
    push(
        &env.options(Target::Day(oct(1)), &server),
        at(10, 2, 3),
        "daily-1",
    );
    env.approve_revision(1, &rev1(), None);
    let opts = env.options(Target::Month(oct(1)), &server);
    let first = push(&opts, at(10, 20, 0), "month-1");
    assert_eq!(first.source, "2026-10 rev-1");
    assert_eq!(
        first.already_accepted, 2,
        "day 1 of customer 1 came nightly"
    );
    assert_eq!(first.sent_accepted, 2);
    assert_landed_once(&server, &rev1());

    env.approve_revision(2, &rev2(), None);
    let second = push(&opts, at(10, 21, 0), "month-2");
    assert_eq!(second.source, "2026-10 rev-2");
    assert_eq!(second.planned, 5);
    assert_eq!(second.already_accepted, 1, "customer 2, day 1 is unchanged");
    assert_eq!(second.sent_accepted, 4);
    let sent: BTreeMap<String, i64> = server
        .events()
        .into_values()
        .map(|e| (e.identifier, e.value))
        .collect();
    for (id, value) in [
        ("cust_0001-llm_tokens-20261001-r2", 50),
        ("cust_0001-llm_tokens-20261002-r2", -80),
        ("cust_0001-commands_run-20261001-r2", -5),
        ("cust_0002-llm_tokens-20261003", 30),
    ] {
        assert_eq!(sent.get(id), Some(&value), "{id}: {sent:?}");
    }
    assert_eq!(server.events().len(), 8, "4 of rev-1 and 4 corrections");
    // Stripe's sums are now rev-2's, reading by reading.
    let mut expected = totals(&rev2());
    expected.insert(("cus_T0001".into(), "commands_run".into()), 0);
    assert_eq!(server.totals(), expected);
    assert!(server.accept_counts().values().all(|n| *n == 1));
    assert!(!second.needs_attention(), "{}", second.summary());

    let third = push(&opts, at(10, 22, 0), "month-3");
    assert_eq!((third.requests, third.already_accepted), (0, 5));
}

fn items() -> Vec<InvoiceItem> {
    vec![
        InvoiceItem {
            idempotency_key: "cust_0001-2026-10-r2-eur-adjustment".into(),
            customer_id: "cust_0001".into(),
            customer: "cus_T0001".into(),
            amount: -1234,
            currency: "eur".into(),
            description: "Usage correction for 2026-10 (revision 2 replaces revision 1)".into(),
        },
        InvoiceItem {
            idempotency_key: "cust_0002-2026-10-r2-eur-adjustment".into(),
            customer_id: "cust_0002".into(),
            customer: "cus_T0002".into(),
            amount: 500,
            currency: "eur".into(),
            description: "Usage correction for 2026-10 (revision 2 replaces revision 1)".into(),
        },
    ]
}

#[test]
fn a_closed_month_sends_invoice_items_with_idempotency_keys() {
    let env = Env::new();
    let server = FakeStripe::start(at(10, 20, 0));
    env.approve_revision(1, &rev1(), None);
    let opts = env.options(Target::Month(oct(1)), &server);
    push(&opts, at(10, 20, 0), "month-1");
    let events_before = server.events();

    env.approve_revision(2, &rev2(), Some(&items()));
    let closed = push(&opts, at(11, 3, 0), "month-2");
    assert!(!closed.period_open);
    assert_eq!(closed.sent_accepted, 2);
    assert_eq!(closed.withheld, 4, "four readings differ");
    assert_eq!(closed.already_accepted, 1);
    assert!(closed.needs_attention());
    assert!(
        closed.attention[0].contains("4 meter-event differences")
            && closed.attention[0].contains("closed"),
        "{:?}",
        closed.attention
    );
    assert_eq!(server.events(), events_before, "no meter event sent");
    let got = server.items();
    assert_eq!(got.len(), 2);
    for (item, want) in got.iter().zip(items()) {
        assert_eq!(
            item.idempotency_key.as_deref(),
            Some(want.idempotency_key.as_str())
        );
        assert_eq!((item.amount, item.currency.as_str()), (want.amount, "eur"));
        assert_eq!(item.customer, want.customer);
        assert_eq!(item.description, want.description);
    }
    let record = env.record();
    let item_lines: Vec<&Value> = record
        .iter()
        .filter(|r| r["kind"] == "invoice_item")
        .collect();
    assert_eq!(item_lines.len(), 2);
    assert_eq!(item_lines[0]["amount"], -1234);
    assert_eq!(item_lines[0]["stripe_id"], "ii_1");
    assert_eq!(item_lines[0]["source"], "2026-10 rev-2");

    let again = push(&opts, at(11, 3, 1), "month-3");
    assert_eq!(again.requests, 0);
    assert_eq!(server.items().len(), 2);
}

#[test]
fn a_file_changed_after_approval_is_not_sent() {
    let env = Env::new();
    let server = FakeStripe::start(at(10, 20, 0));
    env.approve_revision(1, &rev1(), None);
    env.store
        .put(
            "stripe/2026-10/rev-1/meter_events.jsonl",
            render::meter_events_jsonl(&rev2()),
        )
        .unwrap();
    let opts = env.options(Target::Month(oct(1)), &server);
    let err = stripe::push(&ctx(at(10, 20, 0), "push-1"), &opts).unwrap_err();
    assert!(err.to_string().contains("not what was approved"), "{err}");
    assert_eq!(server.requests(), 0);
}

#[test]
fn a_dry_run_sends_nothing_and_writes_no_record() {
    let env = Env::new();
    let server = FakeStripe::start(at(10, 20, 0));
    env.approve_revision(1, &rev1(), None);
    for api in [Api::V1, Api::V2] {
        let opts = PushOptions {
            dry_run: true,
            api_key: None,
            api,
            ..env.options(Target::Month(oct(1)), &server)
        };
        let report = push(&opts, at(10, 20, 0), &format!("dry-{api}"));
        assert_eq!(report.status, Status::DryRun);
        assert_eq!((report.unsent, report.sent_accepted), (4, 0));
        let lines = report.plan_lines();
        match api {
            Api::V1 => {
                assert_eq!(lines.len(), 4);
                assert_eq!(
                    lines[0],
                    "POST /v1/billing/meter_events identifier=cust_0001-commands_run-20261001 customer=cus_T0001 event=commands_run value=5"
                );
            }
            Api::V2 => {
                assert_eq!(lines.len(), 5);
                assert!(lines[0].starts_with("POST /v2/billing/meter_event_session"));
                assert!(lines[1].starts_with("POST /v2/billing/meter_event_stream batch=1 "));
            }
        }
    }
    assert_eq!(server.requests(), 0);
    assert!(!env.record_path().exists());
}

#[test]
fn v2_streams_at_most_100_events_per_request_and_renews_an_expired_session() {
    let env = Env::new();
    let events: Vec<MeterEvent> = (1..=250)
        .map(|n| ev(n, "llm_tokens", 5, n as i64))
        .collect();
    env.write_daily(5, &events);
    let server = FakeStripe::start(at(10, 6, 3));
    // Session, first batch, then the session expires under the second.
    server.script([Fault::Pass, Fault::Pass, Fault::ExpireSessions]);
    let opts = PushOptions {
        api: Api::V2,
        ..env.options(Target::Day(oct(5)), &server)
    };
    let report = push(&opts, at(10, 6, 3), "push-1");
    assert_eq!(report.sent_accepted, 250);
    assert_eq!(server.sessions_opened(), 2);
    let batches: Vec<usize> = server
        .log()
        .iter()
        .filter(|l| l.path == "/v2/billing/meter_event_stream" && l.status == Some(200))
        .map(|l| l.keys.len())
        .collect();
    assert_eq!(batches, [100, 100, 50]);
    assert_eq!(report.requests, 6, "2 sessions, 3 batches, 1 refused");
    assert_landed_once(&server, &events);
    assert_eq!(env.record().len(), 250);
}

#[test]
fn a_bad_value_fails_its_event_by_name_and_the_push_goes_on() {
    for api in [Api::V1, Api::V2] {
        let env = Env::new();
        let mut events = day_events(5);
        // More than 15 significant digits: Stripe refuses it.
        events[4].value = 1_234_567_890_123_456;
        let bad = events[4].identifier.clone();
        env.write_daily(5, &events);
        let server = FakeStripe::start(at(10, 6, 3));
        let opts = PushOptions {
            api,
            ..env.options(Target::Day(oct(5)), &server)
        };
        let report = push(&opts, at(10, 6, 3), "push-1");
        assert_eq!((report.sent_accepted, report.failed), (8, 1), "{api}");
        assert!(report.needs_attention());
        let failure = &report.failures[0];
        assert_eq!(failure.key, bad);
        assert_eq!(failure.status, Some(400));
        assert!(
            failure.message.contains("15 significant digits"),
            "{failure:?}"
        );
        assert!(report.summary().contains(&bad));
        let good: Vec<MeterEvent> = events
            .iter()
            .filter(|e| e.identifier != bad)
            .cloned()
            .collect();
        assert_landed_once(&server, &good);
        assert!(env.record().iter().all(|r| r["identifier"] != bad.as_str()));
    }
}

#[test]
fn a_daily_push_after_its_month_closed_is_sent_with_a_warning() {
    let env = Env::new();
    let events = vec![ev(1, "llm_tokens", 31, 10)];
    env.write_daily(31, &events);
    let server = FakeStripe::start(at(11, 1, 3));
    let report = push(
        &env.options(Target::Day(oct(31)), &server),
        at(11, 1, 3),
        "push-1",
    );
    assert_eq!(report.sent_accepted, 1);
    assert!(report.needs_attention());
    assert!(
        report.attention[0].contains("may miss the invoice"),
        "{:?}",
        report.attention
    );
}

#[test]
fn a_second_concurrent_push_is_locked_out() {
    let env = Env::new();
    env.write_daily(5, &day_events(5));
    let server = FakeStripe::start(at(10, 6, 3));
    let _held = Lake::open(&env.lake, "other-run").unwrap();
    let err = stripe::push(
        &ctx(at(10, 6, 3), "push-1"),
        &env.options(Target::Day(oct(5)), &server),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert_eq!(server.requests(), 0);
}

#[test]
fn the_api_key_never_appears_in_reports_records_or_errors() {
    let env = Env::new();
    let mut events = day_events(5);
    events[0].value = 1_234_567_890_123_456;
    env.write_daily(5, &events);
    let server = FakeStripe::start(at(10, 6, 3));
    let opts = env.options(Target::Day(oct(5)), &server);
    let report = push(&opts, at(10, 6, 3), "push-1");
    assert_eq!(report.failed, 1);

    // A wrong key: the fake echoes it whole in its 401 message.
    let wrong = "sk_test_WrongKey_ThisMustNotLeak_987654321";
    env.write_daily(6, &day_events(6));
    let opts6 = PushOptions {
        api_key: Some(ApiKey::new(wrong)),
        ..env.options(Target::Day(oct(6)), &server)
    };
    let refused = stripe::push(&ctx(at(10, 7, 3), "push-2"), &opts6).unwrap_err();
    assert!(refused.to_string().contains("HTTP 401"), "{refused}");
    assert!(refused.hint().unwrap().contains("STRIPE_API_KEY"));

    // Stripe failing until the attempts run out.
    server.script(vec![Fault::Status(500); 4]);
    let stopped = stripe::push(
        &ctx(at(10, 7, 4), "push-3"),
        &env.options(Target::Day(oct(6)), &server),
    )
    .unwrap_err();

    let mut texts = vec![
        serde_json::to_string(&report).unwrap(),
        format!("{report:?}"),
        report.summary(),
        format!("{opts:?}"),
        refused.to_string(),
        format!("{refused:?}"),
        stopped.to_string(),
        std::fs::read_to_string(env.record_path()).unwrap(),
    ];
    for run in ["push-1", "push-2", "push-3"] {
        texts.push(env.report_file(run));
    }
    for text in &texts {
        for key in [API_KEY, wrong, "ThisMustNotLeak", "FakeMeterKey"] {
            assert!(!text.contains(key), "the key leaked into: {text}");
        }
    }
    assert!(refused.to_string().contains("sk_…(redacted)"), "{refused}");
}

fn meter_cli(args: &[&str], key: Option<&str>, cwd: &Path) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meter"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("STRIPE_API_KEY")
        .env_remove("STRIPE_BASE_URL")
        .env_remove("METER_LAKE")
        .env_remove("METER_OUT")
        .env_remove("METER_CONFIG");
    if let Some(key) = key {
        cmd.env("STRIPE_API_KEY", key);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_job_prints_a_dry_run_and_needs_a_key_to_send() {
    let env = Env::new();
    env.write_daily(5, &day_events(5));
    let lake = env.lake.display().to_string();
    let out = env.out.display().to_string();
    let args = [
        "stripe",
        "push",
        "--date",
        "2026-10-05",
        "--lake",
        &lake,
        "--out",
        &out,
    ];
    let cwd = env.out.parent().unwrap();

    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let (code, stdout, stderr) = meter_cli(&dry, None, cwd);
    // Exit 1 when the real clock says October closed (attention), else 0.
    assert!(code == 0 || code == 1, "{code}: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 9, "{stdout}");
    assert!(lines[0].starts_with("POST /v1/billing/meter_events identifier=cust_0001-"));
    assert!(stderr.contains("dry run, nothing sent"), "{stderr}");

    let (code, _, stderr) = meter_cli(&args, None, cwd);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("STRIPE_API_KEY"), "{stderr}");
    assert!(!env.record_path().exists());
}
