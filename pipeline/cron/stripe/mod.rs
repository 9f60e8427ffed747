//! `meter stripe push`: sends a day's meter events, or an approved month's
//! corrections, to Stripe, exactly once.
//!
//! ```text
//! <out>/stripe/daily/YYYY-MM-DD/meter_events.jsonl   --date: sent as they are
//! <out>/invoices/YYYY-MM/approved.json               --month: the approved revision R
//! <out>/stripe/YYYY-MM/rev-R/meter_events.jsonl      open month: the readings to reach
//! <out>/stripe/YYYY-MM/rev-R/invoice_items.jsonl     closed month: the corrections
//! <lake>/_stripe/accepted.jsonl                      what Stripe accepted (record)
//! ```
//!
//! [`plan`] decides what to send from the files and the [`record`] without
//! IO; [`client`] sends one request at a time with retries; each accepted
//! request is appended to the record (fsynced) before the next is sent, so
//! a push that stopped resumes where it stopped and nothing is sent twice.
//! The API key is only ever held by [`ApiKey`], which prints redacted.

pub mod client;
pub mod invoices;
pub mod plan;
pub use crate::lake::stripe_record as record;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::bill::approve;
use crate::bill::inputs::month_bounds;
use crate::bill::layout::RevisionFile;
use crate::bill::publish::{self, Manifest};
use crate::bill::render;
use crate::lake::Lake;
use crate::lake::store::Store;
use crate::model::ctx::Ctx;
use crate::model::error::{Error, Result};
use crate::model::ids::sha256_hex;

use client::{Answer, Auth, Body, Client, Refusal, Request};
use invoices::InvoiceCall;
use plan::{InvoiceItem, MeterEvent, Send, Why};
use record::{
    AcceptedEvent, AcceptedItem, AcceptedStep, Appender, Entry, Item, Record, StepKind, Via,
};

/// Stripe's API, for `--base-url`'s default.
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";

/// At most this many events per v2 stream request (formats.md section 4).
pub const STREAM_BATCH: usize = crate::bill::STREAM_BATCH;

const V1_EVENTS: &str = "/v1/billing/meter_events";
const V2_SESSION: &str = "/v2/billing/meter_event_session";
const V2_STREAM: &str = "/v2/billing/meter_event_stream";
const INVOICE_ITEMS: &str = "/v1/invoiceitems";

pub use crate::bill::diff::{period_end, period_open};

/// What to push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One day's meter events, as the nightly job wrote them.
    Day(NaiveDate),
    /// The approved revision of a month (any day of it).
    Month(NaiveDate),
}

/// Which Stripe meter-event API sends the events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `POST /v1/billing/meter_events`, one event per request.
    #[default]
    V1,
    /// A meter-event session, then `POST /v2/billing/meter_event_stream`
    /// with up to 100 events per request.
    V2,
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Api::V1 => "v1",
            Api::V2 => "v2",
        })
    }
}

/// A Stripe secret key. It prints as `sk_…(redacted)` and is never
/// serialized: only the HTTP client reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The key itself, for the `Authorization` header only.
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }

    /// Whether it looks like a secret or restricted key (`sk_`, `rk_`).
    fn well_formed(&self) -> bool {
        (self.0.starts_with("sk_") || self.0.starts_with("rk_"))
            && self.0.len() > 8
            && self.0.bytes().all(|b| b.is_ascii_graphic())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sk_…(redacted)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sk_…(redacted)")
    }
}

/// How transient failures (429, 5xx, connection errors) are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// The backoff ceiling of the first retry; it doubles per attempt.
    pub base_delay: Duration,
    /// No wait is longer (also caps `Retry-After`).
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// What [`push`] does.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// The lake: its lock, the record of accepted requests, the run report.
    pub lake: PathBuf,
    /// Where the Stripe files are: a folder or an object-store URL.
    pub out: String,
    /// Store configuration; empty: the standard environment variables.
    pub store_options: Vec<(String, String)>,
    pub target: Target,
    /// Plan only: no key needed, no request, no record written.
    pub dry_run: bool,
    pub api: Api,
    /// `https://api.stripe.com`, or a test server (plain `http://` only on
    /// the loopback interface).
    pub base_url: String,
    /// Needed unless `dry_run`.
    pub api_key: Option<ApiKey>,
    pub retry: Retry,
}

impl PushOptions {
    /// Options with the defaults: API v1, Stripe's URL, default retries.
    pub fn new(lake: impl Into<PathBuf>, out: impl Into<String>, target: Target) -> PushOptions {
        PushOptions {
            lake: lake.into(),
            out: out.into(),
            store_options: Vec::new(),
            target,
            dry_run: false,
            api: Api::V1,
            base_url: DEFAULT_BASE_URL.to_string(),
            api_key: None,
            retry: Retry::default(),
        }
    }
}

/// How the push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every planned request was answered.
    Done,
    /// Nothing was sent: the plan only.
    DryRun,
    /// Stripe or the network kept failing; a rerun resumes.
    Stopped,
}

/// A request Stripe refused for good (a 4xx other than 429).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The event identifier or invoice item idempotency key.
    pub key: String,
    pub customer: String,
    pub status: Option<u16>,
    /// Stripe's error message.
    pub message: String,
}

/// One request a push makes (or would make, in a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedRequest {
    pub method: &'static str,
    pub path: &'static str,
    /// The v2 stream request it is part of (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Identifier (meter event) or idempotency key (invoice item).
    pub key: String,
    pub customer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<Why>,
}

impl PlannedRequest {
    /// One line: method, path, key, customer, event or amount, value.
    pub fn line(&self) -> String {
        let mut s = format!("{} {}", self.method, self.path);
        if let Some(b) = self.batch {
            s += &format!(" batch={b}");
        }
        let key_name = match self.event_name {
            Some(_) => "identifier",
            None => "idempotency_key",
        };
        s += &format!(" {key_name}={} customer={}", self.key, self.customer);
        if let (Some(name), Some(value)) = (&self.event_name, self.value) {
            s += &format!(" event={name} value={value}");
        }
        if let (Some(amount), Some(currency)) = (self.amount, &self.currency) {
            s += &format!(" amount={amount} currency={currency}");
        }
        if let Some(Why::Delta { accepted, target }) = &self.why {
            s += &format!(" (delta: Stripe has {accepted}, the revision says {target})");
        }
        s
    }
}

/// The run report of a push. Counts add up:
/// `planned = sent_accepted + already_accepted + failed + withheld + unsent`.
#[derive(Debug, Serialize)]
pub struct PushReport {
    pub job: &'static str,
    pub run_id: String,
    pub started_at: String,
    pub finished_at: String,
    pub lake: String,
    pub out: String,
    /// `YYYY-MM-DD` (a day) or `YYYY-MM` (a month).
    pub target: String,
    /// What was read: `daily YYYY-MM-DD` or `YYYY-MM rev-N`.
    pub source: String,
    pub api: Api,
    pub base_url: String,
    pub dry_run: bool,
    /// Whether the target's billing period was open at push time.
    pub period_open: bool,
    pub status: Status,
    /// Meter events and invoice items the files call for.
    pub planned: usize,
    /// Sent in this run and accepted by Stripe.
    pub sent_accepted: usize,
    /// Stripe had them already: in the record, or it said so.
    pub already_accepted: usize,
    /// Refused by Stripe for good; see `failures`.
    pub failed: usize,
    /// Not sent because they cannot count any more (a closed period).
    pub withheld: usize,
    /// Not sent: a dry run, or a push that stopped.
    pub unsent: usize,
    /// HTTP requests made, retries included.
    pub requests: u64,
    pub retries: u64,
    pub failures: Vec<Failure>,
    /// The record of accepted requests.
    pub record: String,
    /// A dry run's plan; empty otherwise.
    pub would_send: Vec<PlannedRequest>,
    pub attention: Vec<String>,
    pub notices: Vec<String>,
}

crate::model::report::stage_report!(PushReport);

impl PushReport {
    /// Whether the counts add up (they always should).
    pub fn counts_add_up(&self) -> bool {
        self.planned
            == self.sent_accepted
                + self.already_accepted
                + self.failed
                + self.withheld
                + self.unsent
    }

    pub fn needs_attention(&self) -> bool {
        self.failed > 0 || !self.attention.is_empty() || self.status == Status::Stopped
    }

    /// The lines a dry run prints: every request, in order.
    pub fn plan_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.api == Api::V2 && self.would_send.iter().any(|r| r.path == V2_STREAM) {
            lines.push(format!(
                "POST {V2_SESSION} (a session token for the stream)"
            ));
        }
        lines.extend(self.would_send.iter().map(PlannedRequest::line));
        lines
    }

    pub fn summary(&self) -> String {
        let status = match self.status {
            Status::Done => "done",
            Status::DryRun => "dry run, nothing sent",
            Status::Stopped => "stopped",
        };
        let mut s = format!(
            "stripe push {} {} ({}, api {}): {status}\n",
            self.run_id, self.target, self.source, self.api
        );
        s += &format!(
            "  {} planned: {} sent and accepted, {} already accepted, {} failed, {} withheld, {} not sent; {} requests, {} retries\n",
            self.planned,
            self.sent_accepted,
            self.already_accepted,
            self.failed,
            self.withheld,
            self.unsent,
            self.requests,
            self.retries
        );
        for f in &self.failures {
            let status = f.status.map(|s| format!("HTTP {s}")).unwrap_or_default();
            s += &format!(
                "  failed: {} (customer {}): {status}: {}\n",
                f.key, f.customer, f.message
            );
        }
        for n in &self.notices {
            s += &format!("  notice: {n}\n");
        }
        for a in &self.attention {
            s += &format!("  attention: {a}\n");
        }
        s
    }
}

/// What one push sends: decided from the files and the record.
#[derive(Debug, Default)]
struct Work {
    target: String,
    source: String,
    period_open: bool,
    events: Vec<Send>,
    items: Vec<InvoiceItem>,
    /// meter's invoices of contract customers, and their notes.
    invoice_calls: Vec<InvoiceCall>,
    already_accepted: usize,
    withheld: usize,
    attention: Vec<String>,
    notices: Vec<String>,
}

impl Work {
    fn planned(&self) -> usize {
        self.events.len()
            + self.items.len()
            + self.invoice_calls.len()
            + self.already_accepted
            + self.withheld
    }
}

/// Pushes a day or an approved month to Stripe; see the module docs.
pub fn push(ctx: &Ctx, opts: &PushOptions) -> Result<PushReport> {
    let started_at = ctx.clock.now();
    let key = check_options(opts)?;
    let missing = match crate::lake::remote::is_remote(&opts.lake) {
        true => Lake::require(&opts.lake).is_err(),
        false => !opts.lake.is_dir(),
    };
    if missing {
        // A new, empty lake would have an empty record: everything would
        // look unsent.
        return Err(Error::Usage(format!(
            "--lake {}: no such directory; pass the lake the other jobs use (its _stripe/accepted.jsonl records what Stripe already has)",
            opts.lake.display()
        )));
    }
    let lake = Lake::open(&opts.lake, &ctx.run_id)?;
    let store = Store::open_configured(&opts.out, &opts.store_options)?;
    let record = Record::read(&lake)?;
    let now = ctx.clock.now();
    let work = match opts.target {
        Target::Day(day) => plan_day(&store, day, &record, now)?,
        Target::Month(month) => plan_month(&store, month, &record, now)?,
    };
    let mut report = PushReport::start(ctx, opts, &store, &record, &work);
    report.started_at = started_at.to_rfc3339();
    let stopped = match key {
        None => {
            report.status = Status::DryRun;
            report.would_send = planned_requests(opts.api, &work);
            None
        }
        Some(key) => send(ctx, &lake, opts, key, &record, &work, &mut report)?,
    };
    if let Some(stop) = &stopped {
        report.status = Status::Stopped;
        report.attention.push(format!("stopped at {}", stop.why()));
    }
    report.unsent = report.planned
        - (report.sent_accepted + report.already_accepted + report.failed + report.withheld);
    report.finished_at = ctx.clock.now().to_rfc3339();
    let json = serde_json::to_string_pretty(&report).expect("the report serializes");
    let report_path = lake.write_report(&ctx.run_id, &json)?;
    match stopped {
        None => Ok(report),
        Some(stop) => Err(stop.error(&report, &report_path)),
    }
}

impl PushReport {
    /// The report before anything is sent.
    fn start(
        ctx: &Ctx,
        opts: &PushOptions,
        store: &Store,
        record: &Record,
        work: &Work,
    ) -> PushReport {
        let mut notices = record.notices.clone();
        notices.extend(work.notices.iter().cloned());
        PushReport {
            job: "stripe push",
            run_id: ctx.run_id.clone(),
            started_at: String::new(),
            finished_at: String::new(),
            lake: opts.lake.display().to_string(),
            out: store.url().to_string(),
            target: work.target.clone(),
            source: work.source.clone(),
            api: opts.api,
            base_url: opts.base_url.clone(),
            dry_run: opts.dry_run,
            period_open: work.period_open,
            status: Status::Done,
            planned: work.planned(),
            sent_accepted: 0,
            already_accepted: work.already_accepted,
            failed: 0,
            withheld: work.withheld,
            unsent: 0,
            requests: 0,
            retries: 0,
            failures: Vec::new(),
            record: Record::path_in(&opts.lake).display().to_string(),
            would_send: Vec::new(),
            attention: work.attention.clone(),
            notices,
        }
    }
}

/// The key to send with (`None`: a dry run), after checking the options.
fn check_options(opts: &PushOptions) -> Result<Option<ApiKey>> {
    check_base_url(&opts.base_url)?;
    if opts.dry_run {
        return Ok(None);
    }
    match &opts.api_key {
        None => Err(Error::Usage(
            "no Stripe API key: set STRIPE_API_KEY (or use --dry-run to see the plan)".into(),
        )),
        Some(k) if !k.well_formed() => Err(Error::Usage(
            "STRIPE_API_KEY does not look like a Stripe secret key (sk_... or rk_...)".into(),
        )),
        Some(k) => Ok(Some(k.clone())),
    }
}

/// `https://...`, or plain `http://` to this machine (a test server): the
/// key never crosses a network in clear text.
fn check_base_url(url: &str) -> Result<()> {
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
    let ok = url.starts_with("https://")
        || loopback.iter().any(|l| {
            url.strip_prefix(l)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
        });
    match ok {
        true => Ok(()),
        false => Err(Error::Usage(format!(
            "--base-url {url}: must be https:// (plain http only to 127.0.0.1 or localhost)"
        ))),
    }
}

fn store_file_error(url: String, line: usize, message: String) -> Error {
    Error::Stripe {
        message: format!("{url}:{line}: {message}"),
        hint: "a Stripe file in --out was altered or written by an incompatible meter: rerun the job that writes it (`meter nightly` or `meter bill`)",
    }
}

/// Reads a meter-event file of the store.
fn read_events(store: &Store, key: &str, bytes: &[u8]) -> Result<Vec<MeterEvent>> {
    plan::parse_events(bytes).map_err(|(line, e)| store_file_error(store.object_url(key), line, e))
}

/// `--date`: the day's events that Stripe does not have yet.
fn plan_day(store: &Store, day: NaiveDate, record: &Record, now: DateTime<Utc>) -> Result<Work> {
    let key = format!("stripe/daily/{day}/meter_events.jsonl");
    let Some(bytes) = store.get(&key)? else {
        return Err(Error::Stripe {
            message: format!(
                "{day}: no meter events at {}: run `meter nightly --date {day}` first",
                store.object_url(&key)
            ),
            hint: "run `meter nightly --date D` for that day first (it writes the day's meter events), then push again",
        });
    };
    let events = read_events(store, &key, &bytes)?;
    let accepted: HashMap<&str, &AcceptedEvent> = record
        .meter_events()
        .map(|a| (a.identifier.as_str(), a))
        .collect();
    let mut work = Work {
        target: day.to_string(),
        source: format!("daily {day}"),
        period_open: period_open(day, now),
        ..Work::default()
    };
    let mut changed = Vec::new();
    for e in events {
        match accepted.get(e.identifier.as_str()) {
            Some(a) => {
                work.already_accepted += 1;
                if a.value != e.payload.value || a.key() != e.key() {
                    changed.push(e.identifier);
                }
            }
            None => work.events.push(Send {
                event: e,
                why: Why::New,
            }),
        }
    }
    if !changed.is_empty() {
        work.notices.push(format!(
            "{} events were accepted earlier with other values and are not sent again ({}): the approved month push corrects them",
            changed.len(),
            changed.join(", ")
        ));
    }
    if !work.period_open && !work.events.is_empty() {
        work.attention.push(format!(
            "the billing period of {day} closed at {}: its {} events are sent, but may miss the invoice Stripe already finalized",
            period_end(day).to_rfc3339(),
            work.events.len()
        ));
    }
    Ok(work)
}

/// `--month`: the approved revision against what Stripe accepted.
fn plan_month(
    store: &Store,
    month_start: NaiveDate,
    record: &Record,
    now: DateTime<Utc>,
) -> Result<Work> {
    let (start, _, _) = month_bounds(month_start);
    let month = start.format("%Y-%m").to_string();
    let Some(approval) = approve::approved(store, &month)? else {
        return Err(Error::Stripe {
            message: format!(
                "{month} is not approved ({} does not exist): run `meter approve --month {month}` first",
                store.object_url(&approve::approved_key(&month))
            ),
            hint: "check the month's invoices, approve them with `meter approve --month YYYY-MM`, then push again",
        });
    };
    let revision = approval.revision;
    let files = ApprovedFiles::read(store, &month, revision, &approval.manifest_sha256)?;
    let events_key = RevisionFile::MeterEvents
        .key(&month, revision)
        .expect("one key");
    let Some(bytes) = files.get(store, &events_key)? else {
        return Err(missing_revision_file(store, &events_key));
    };
    let rev = read_events(store, &events_key, &bytes)?;
    let accepted: Vec<AcceptedEvent> = record
        .meter_events()
        .filter(|a| month_bounds(a.day).0 == start)
        .cloned()
        .collect();
    let keys = record.keys();
    let planned = plan::plan_month(revision, &rev, &accepted, &keys);
    let mut work = Work {
        target: month.clone(),
        source: format!("{month} rev-{revision}"),
        period_open: period_open(start, now),
        already_accepted: planned.unchanged,
        ..Work::default()
    };
    plan_contract_invoices(store, &files, &month, revision, record, &keys, &mut work)?;
    if work.period_open {
        work.events = planned.sends;
        return Ok(work);
    }
    let withheld_events = planned.sends.len();
    work.withheld += withheld_events;
    let closed = Closed {
        store,
        files: &files,
        month: &month,
        revision,
        end: period_end(start),
    };
    closed.plan_items(&mut work, &keys, withheld_events)?;
    Ok(work)
}

/// Adds meter's invoices of the revision's contract customers, and their
/// notes, to `work` (see [`invoices`]).
fn plan_contract_invoices(
    store: &Store,
    files: &ApprovedFiles,
    month: &str,
    revision: u32,
    record: &Record,
    taken: &HashSet<String>,
    work: &mut Work,
) -> Result<()> {
    let key = RevisionFile::StripeInvoices
        .key(month, revision)
        .expect("one key");
    let list = match files.get(store, &key)? {
        Some(bytes) => crate::bill::diff::parse_contract_invoices(&store.object_url(&key), &bytes)?,
        None => Vec::new(),
    };
    let mut notes = Vec::new();
    for o in &files.manifest.objects {
        if let RevisionFile::Note { .. } = crate::bill::layout::classify(&o.key) {
            let bytes = files.get(store, &o.key)?.unwrap_or_default();
            notes.push(crate::bill::notes::parse_note(
                &store.object_url(&o.key),
                &bytes,
            )?);
        }
    }
    let stripe = record.stripe_invoices(month);
    let plan = invoices::plan_invoices(
        month,
        revision,
        work.period_open,
        &list,
        &notes,
        &stripe,
        taken,
    );
    work.invoice_calls = plan.calls;
    work.already_accepted += plan.already_accepted;
    work.withheld += plan.withheld;
    work.attention.extend(plan.attention);
    work.notices.extend(plan.notices);
    Ok(())
}

/// A closed month's approved revision.
struct Closed<'a> {
    store: &'a Store,
    files: &'a ApprovedFiles,
    month: &'a str,
    revision: u32,
    end: DateTime<Utc>,
}

impl Closed<'_> {
    /// Adds the revision's invoice items Stripe does not have to `work`, and
    /// says what happens to the meter-event differences withheld.
    fn plan_items(
        &self,
        work: &mut Work,
        accepted: &HashSet<String>,
        withheld_events: usize,
    ) -> Result<()> {
        let (store, revision) = (self.store, self.revision);
        let key = RevisionFile::InvoiceItems
            .key(self.month, revision)
            .expect("one key");
        let items = match self.files.get(store, &key)? {
            Some(bytes) => plan::parse_jsonl::<InvoiceItem>(&bytes)
                .map_err(|(line, e)| store_file_error(store.object_url(&key), line, e))?,
            None => Vec::new(),
        };
        let n_items = items.len();
        for item in items {
            match accepted.contains(&item.idempotency_key) {
                true => work.already_accepted += 1,
                false => work.items.push(item),
            }
        }
        if withheld_events == 0 {
            return Ok(());
        }
        let carried = match n_items {
            0 => format!(
                "rev-{revision} has no invoice items ({}): correct the invoices in Stripe by hand",
                store.object_url(&key)
            ),
            n => format!("the {n} invoice items of rev-{revision} carry the correction instead"),
        };
        work.attention.push(format!(
            "{} meter-event differences between rev-{revision} and what Stripe has were not sent: the billing period closed at {}, so they can no longer change its invoice; {carried}",
            withheld_events,
            self.end.to_rfc3339()
        ));
        Ok(())
    }
}

fn missing_revision_file(store: &Store, key: &str) -> Error {
    Error::Stripe {
        message: format!(
            "{} is missing from the approved revision",
            store.object_url(key)
        ),
        hint: "the approved revision's files are missing from --out: check --out, or restore them from the store's versioning",
    }
}

/// The approved revision's manifest: files are read only if they are what
/// was approved.
struct ApprovedFiles {
    manifest: Manifest,
}

impl ApprovedFiles {
    fn read(store: &Store, month: &str, revision: u32, sha256: &str) -> Result<ApprovedFiles> {
        let key = publish::manifest_key(month, revision);
        let altered = |what: String| Error::Stripe {
            message: what,
            hint: "what was approved has changed since: check the revision, approve it again (`meter approve --month YYYY-MM`), then push",
        };
        let Some(bytes) = store.get(&key)? else {
            return Err(missing_revision_file(store, &key));
        };
        if sha256_hex(&bytes) != sha256 {
            return Err(altered(format!(
                "{} is not the manifest that was approved",
                store.object_url(&key)
            )));
        }
        let manifest = serde_json::from_slice(&bytes)
            .map_err(|e| altered(format!("{}: {e}", store.object_url(&key))))?;
        Ok(ApprovedFiles { manifest })
    }

    /// The object at `key` if the approved manifest lists it with these
    /// exact bytes; `None` if it lists no such object.
    fn get(&self, store: &Store, key: &str) -> Result<Option<Vec<u8>>> {
        let Some(object) = self.manifest.objects.iter().find(|o| o.key == key) else {
            return Ok(None);
        };
        let Some(bytes) = store.get(key)? else {
            return Err(missing_revision_file(store, key));
        };
        if !object.matches(&bytes) {
            return Err(Error::Stripe {
                message: format!(
                    "{} is not what was approved (its size or SHA-256 differs from the manifest)",
                    store.object_url(key)
                ),
                hint: "nothing was sent; restore the file from the store's versioning or rerun and approve the month again",
            });
        }
        Ok(Some(bytes))
    }
}

/// The requests a push makes for `work`, in order.
fn planned_requests(api: Api, work: &Work) -> Vec<PlannedRequest> {
    let mut out: Vec<PlannedRequest> = Vec::new();
    for (i, s) in work.events.iter().enumerate() {
        let (path, batch) = match api {
            Api::V1 => (V1_EVENTS, None),
            Api::V2 => (V2_STREAM, Some(i / STREAM_BATCH + 1)),
        };
        out.push(PlannedRequest {
            method: "POST",
            path,
            batch,
            key: s.event.identifier.clone(),
            customer: s.event.payload.stripe_customer_id.clone(),
            event_name: Some(s.event.event_name.clone()),
            value: Some(s.event.payload.value),
            amount: None,
            currency: None,
            why: Some(s.why.clone()),
        });
    }
    for item in &work.items {
        out.push(PlannedRequest {
            method: "POST",
            path: INVOICE_ITEMS,
            batch: None,
            key: item.idempotency_key.clone(),
            customer: item.customer.clone(),
            event_name: None,
            value: None,
            amount: Some(item.amount),
            currency: Some(item.currency.clone()),
            why: None,
        });
    }
    for c in &work.invoice_calls {
        out.push(PlannedRequest {
            method: "POST",
            path: c.path(),
            batch: None,
            key: c.key.clone(),
            customer: c.customer.clone(),
            event_name: None,
            value: None,
            amount: Some(c.amount),
            currency: Some(c.currency.clone()),
            why: None,
        });
    }
    out
}

/// Sends the work; `Some(stop)` when it stopped before the end.
fn send(
    ctx: &Ctx,
    lake: &Lake,
    opts: &PushOptions,
    key: ApiKey,
    record: &Record,
    work: &Work,
    report: &mut PushReport,
) -> Result<Option<Stop>> {
    if work.events.is_empty() && work.items.is_empty() && work.invoice_calls.is_empty() {
        return Ok(None);
    }
    let client = Client::new(&opts.base_url, key, opts.retry).map_err(|message| Error::Stripe {
        message,
        hint: "this is a bug in meter or its TLS setup: please report it",
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::Stripe {
            message: format!("cannot start the HTTP runtime: {e}"),
            hint: "the system is out of threads or file descriptors; retry",
        })?;
    let mut sender = Sender {
        ctx,
        client,
        runtime,
        appender: record.appender(lake)?,
        source: &work.source,
        target: &work.target,
        report,
        already_existed: 0,
    };
    let stopped = sender.run(opts.api, work);
    sender.report.requests = sender.client.requests;
    sender.report.retries = sender.client.retries;
    if sender.already_existed > 0 {
        sender.report.notices.push(format!(
            "Stripe already had {} of the requests (accepted earlier, the answer lost): recorded as accepted",
            sender.already_existed
        ));
    }
    stopped
}

/// Why a push stopped before its end: where, and what Stripe said.
enum Stop {
    /// Transient failures outlasted the retries: a rerun resumes.
    Transient(String),
    /// Stripe refused the credentials (401, 403): nothing more would pass.
    Refused(String),
}

impl Stop {
    /// The stop a refusal of the request for `key` means, if any: `None`
    /// for a refusal of that request alone.
    fn of(key: &str, refusal: &Refusal) -> Option<Stop> {
        match refusal {
            Refusal::Exhausted {
                status,
                message,
                attempts,
            } => {
                let status = status.map(|s| format!("HTTP {s}, ")).unwrap_or_default();
                Some(Stop::Transient(format!(
                    "{key} after {attempts} attempts ({status}{message})"
                )))
            }
            Refusal::Rejected { status, message } if matches!(status, 401 | 403) => {
                Some(Stop::Refused(format!("{key} (HTTP {status}: {message})")))
            }
            Refusal::Rejected { .. } => None,
        }
    }

    fn why(&self) -> &str {
        match self {
            Stop::Transient(why) | Stop::Refused(why) => why,
        }
    }

    /// The error a stopped push returns (its report is written).
    fn error(&self, report: &PushReport, report_path: &std::path::Path) -> Error {
        let message = format!(
            "{} {}: stopped at {}; {} of {} sent and accepted before it (report: {})",
            report.target,
            report.source,
            self.why(),
            report.sent_accepted,
            report.planned,
            report_path.display()
        );
        let hint = match self {
            Stop::Transient(_) => {
                "Stripe or the network kept failing: rerun the same push later; it resumes where it stopped (what Stripe accepted is in <lake>/_stripe/accepted.jsonl and is not sent again)"
            }
            Stop::Refused(_) => {
                "Stripe refused the credentials: check STRIPE_API_KEY (a secret or restricted key with write access to meter events and invoice items, of the right account and mode), then rerun: the push resumes where it stopped"
            }
        };
        Error::Stripe { message, hint }
    }
}

type Step = std::result::Result<(), Stop>;

/// Sends requests one at a time and records what Stripe accepts.
struct Sender<'a> {
    ctx: &'a Ctx,
    client: Client,
    runtime: tokio::runtime::Runtime,
    appender: Appender,
    source: &'a str,
    /// `YYYY-MM` (a month push) or `YYYY-MM-DD` (a day).
    target: &'a str,
    report: &'a mut PushReport,
    /// Requests Stripe answered "already exists".
    already_existed: usize,
}

impl Sender<'_> {
    fn run(&mut self, api: Api, work: &Work) -> Result<Option<Stop>> {
        let events: Vec<&MeterEvent> = work.events.iter().map(|s| &s.event).collect();
        let sent = match api {
            Api::V1 => self.events_v1(&events),
            Api::V2 => self.events_v2(&events),
        };
        let sent = match sent? {
            Ok(()) => self.items(&work.items)?,
            Err(stop) => Err(stop),
        };
        let sent = match sent {
            Ok(()) => self.invoice_calls(&work.invoice_calls)?,
            Err(stop) => Err(stop),
        };
        Ok(sent.err())
    }

    fn events_v1(&mut self, events: &[&MeterEvent]) -> Result<Step> {
        for e in events {
            let request = Request {
                path: V1_EVENTS.into(),
                auth: Auth::Key,
                idempotency_key: Some(e.identifier.clone()),
                body: Body::Form(v1_form(e)),
            };
            let answer = self.runtime.block_on(self.client.send(&request));
            if let Err(stop) = self.event_answer(e, answer)? {
                return Ok(Err(stop));
            }
        }
        Ok(Ok(()))
    }

    fn events_v2(&mut self, events: &[&MeterEvent]) -> Result<Step> {
        if events.is_empty() {
            return Ok(Ok(()));
        }
        if let Err(refusal) = self.runtime.block_on(self.client.open_session()) {
            let stop = Stop::of(V2_SESSION, &refusal).unwrap_or_else(|| {
                Stop::Refused(format!("{V2_SESSION}: {}", refusal_text(&refusal)))
            });
            return Ok(Err(stop));
        }
        for batch in events.chunks(STREAM_BATCH) {
            if let Err(stop) = self.batch_v2(batch)? {
                return Ok(Err(stop));
            }
        }
        Ok(Ok(()))
    }

    /// One stream request; a batch Stripe refuses is sent again one event
    /// per request, so that only the events at fault fail.
    fn batch_v2(&mut self, batch: &[&MeterEvent]) -> Result<Step> {
        let answer = self.stream_request(batch);
        match answer {
            Ok(Answer::Accepted(_)) => {
                for e in batch {
                    self.record_event(e, Via::Sent)?;
                }
                Ok(Ok(()))
            }
            Ok(Answer::AlreadyExists) | Err(Refusal::Rejected { .. }) if batch.len() > 1 => {
                for e in batch {
                    if let Err(stop) = self.batch_v2(&[*e])? {
                        return Ok(Err(stop));
                    }
                }
                Ok(Ok(()))
            }
            answer => self.event_answer(batch[0], answer),
        }
    }

    /// Sends a stream body, opening a new session once if the old one expired.
    fn stream_request(&mut self, batch: &[&MeterEvent]) -> std::result::Result<Answer, Refusal> {
        let owned: Vec<render::MeterEvent> = batch.iter().map(|e| to_render(e)).collect();
        let body = render::meter_event_stream(&owned, STREAM_BATCH)
            .pop()
            .expect("one body for at most 100 events");
        let ids: Vec<&str> = batch.iter().map(|e| e.identifier.as_str()).collect();
        let request = Request {
            path: V2_STREAM.into(),
            auth: Auth::Session,
            idempotency_key: Some(format!(
                "mtr-stream-{}",
                sha256_hex(ids.join("\n").as_bytes())
            )),
            body: Body::Json(body),
        };
        match self.runtime.block_on(self.client.send(&request)) {
            Err(Refusal::Rejected { status: 401, .. }) => {
                self.runtime.block_on(self.client.open_session())?;
                self.runtime.block_on(self.client.send(&request))
            }
            other => other,
        }
    }

    fn items(&mut self, items: &[InvoiceItem]) -> Result<Step> {
        for item in items {
            let request = Request {
                path: INVOICE_ITEMS.into(),
                auth: Auth::Key,
                idempotency_key: Some(item.idempotency_key.clone()),
                body: Body::Form(vec![
                    ("customer".into(), item.customer.clone()),
                    ("amount".into(), item.amount.to_string()),
                    ("currency".into(), item.currency.clone()),
                    ("description".into(), item.description.clone()),
                ]),
            };
            match self.runtime.block_on(self.client.send(&request)) {
                Ok(answer) => {
                    let (via, stripe_id) = match &answer {
                        Answer::Accepted(body) => {
                            (Via::Sent, body["id"].as_str().map(str::to_string))
                        }
                        Answer::AlreadyExists => (Via::AlreadyExists, None),
                    };
                    let accepted = Item::InvoiceItem(AcceptedItem {
                        idempotency_key: item.idempotency_key.clone(),
                        customer: item.customer.clone(),
                        amount: item.amount,
                        currency: item.currency.clone(),
                        stripe_id,
                    });
                    self.record(accepted, via)?;
                }
                Err(refusal) => {
                    if let Some(stop) = Stop::of(&item.idempotency_key, &refusal) {
                        return Ok(Err(stop));
                    }
                    self.fail(&item.idempotency_key, &item.customer, &refusal);
                }
            }
        }
        Ok(Ok(()))
    }

    /// Sends meter's invoices and notes. A step Stripe refuses leaves the
    /// rest of that customer's steps unsent (a draft missing a line is
    /// never finalized); a rerun resumes at the refused step.
    fn invoice_calls(&mut self, calls: &[InvoiceCall]) -> Result<Step> {
        let mut created: HashMap<String, String> = HashMap::new();
        let mut broken: HashSet<String> = HashSet::new();
        for call in calls {
            if broken.contains(&call.customer_id) {
                continue;
            }
            let invoice = call
                .stripe_invoice
                .clone()
                .or_else(|| created.get(&call.customer_id).cloned())
                .unwrap_or_default();
            let path = match call.step {
                StepKind::Finalize => format!("/v1/invoices/{invoice}/finalize"),
                _ => call.path().to_string(),
            };
            let request = Request {
                path: path.into(),
                auth: Auth::Key,
                idempotency_key: Some(call.key.clone()),
                body: Body::Form(call.form(&invoice)),
            };
            let answer = self.runtime.block_on(self.client.send(&request));
            let (via, body) = match answer {
                Ok(Answer::Accepted(body)) => (Via::Sent, body),
                Ok(Answer::AlreadyExists) => (Via::AlreadyExists, serde_json::Value::Null),
                Err(refusal) => {
                    if let Some(stop) = Stop::of(&call.key, &refusal) {
                        return Ok(Err(stop));
                    }
                    self.fail(&call.key, &call.customer, &refusal);
                    broken.insert(call.customer_id.clone());
                    continue;
                }
            };
            let stripe_id = body["id"].as_str().map(str::to_string);
            let invoice = match call.step {
                StepKind::Create => match &stripe_id {
                    Some(id) => {
                        created.insert(call.customer_id.clone(), id.clone());
                        id.clone()
                    }
                    None => {
                        self.fail(
                            &call.key,
                            &call.customer,
                            &Refusal::Rejected {
                                status: 200,
                                message: "Stripe answered without the invoice's id".into(),
                            },
                        );
                        broken.insert(call.customer_id.clone());
                        continue;
                    }
                },
                _ => invoice,
            };
            let accepted = Item::InvoiceStep(AcceptedStep {
                idempotency_key: call.key.clone(),
                step: call.step,
                month: self.target.to_string(),
                customer_id: call.customer_id.clone(),
                customer: call.customer.clone(),
                revision: call.revision,
                document: call.document.clone(),
                stripe_invoice: invoice,
                amount: call.amount,
                currency: call.currency.clone(),
                stripe_id,
            });
            self.record(accepted, via)?;
        }
        Ok(Ok(()))
    }

    /// Records or reports Stripe's answer to one event.
    fn event_answer(
        &mut self,
        e: &MeterEvent,
        answer: std::result::Result<Answer, Refusal>,
    ) -> Result<Step> {
        match answer {
            Ok(Answer::Accepted(_)) => self.record_event(e, Via::Sent)?,
            Ok(Answer::AlreadyExists) => self.record_event(e, Via::AlreadyExists)?,
            Err(refusal) => {
                if let Some(stop) = Stop::of(&e.identifier, &refusal) {
                    return Ok(Err(stop));
                }
                self.fail(&e.identifier, &e.payload.stripe_customer_id, &refusal);
            }
        }
        Ok(Ok(()))
    }

    fn record_event(&mut self, e: &MeterEvent, via: Via) -> Result<()> {
        let accepted = Item::MeterEvent(AcceptedEvent {
            identifier: e.identifier.clone(),
            stripe_customer_id: e.payload.stripe_customer_id.clone(),
            event_name: e.event_name.clone(),
            day: e.day(),
            timestamp: e.timestamp,
            value: e.payload.value,
        });
        self.record(accepted, via)
    }

    fn record(&mut self, item: Item, via: Via) -> Result<()> {
        self.appender.append(&Entry {
            item,
            source: self.source.to_string(),
            via,
            accepted_at: self.ctx.clock.now().to_rfc3339(),
            run_id: self.ctx.run_id.clone(),
        })?;
        match via {
            Via::Sent => self.report.sent_accepted += 1,
            Via::AlreadyExists => {
                self.report.already_accepted += 1;
                self.already_existed += 1;
            }
        }
        Ok(())
    }

    fn fail(&mut self, key: &str, customer: &str, refusal: &Refusal) {
        let message = match refusal {
            Refusal::Rejected { message, .. } | Refusal::Exhausted { message, .. } => message,
        };
        self.report.failed += 1;
        self.report.failures.push(Failure {
            key: key.to_string(),
            customer: customer.to_string(),
            status: refusal.status(),
            message: message.clone(),
        });
    }
}

fn refusal_text(refusal: &Refusal) -> String {
    match refusal {
        Refusal::Rejected { status, message } => format!("HTTP {status}: {message}"),
        Refusal::Exhausted { message, .. } => message.clone(),
    }
}

/// The v1 form of an event (formats.md section 4).
fn v1_form(e: &MeterEvent) -> Vec<(String, String)> {
    vec![
        ("event_name".into(), e.event_name.clone()),
        (
            "payload[stripe_customer_id]".into(),
            e.payload.stripe_customer_id.clone(),
        ),
        ("payload[value]".into(), e.payload.value.to_string()),
        ("identifier".into(), e.identifier.clone()),
        ("timestamp".into(), e.timestamp.to_string()),
    ]
}

/// The billing shape of an event, for `render::meter_event_stream`.
fn to_render(e: &MeterEvent) -> render::MeterEvent {
    render::MeterEvent {
        date: e.day().to_string(),
        customer_id: String::new(),
        event_name: e.event_name.clone(),
        value: e.payload.value,
        stripe_customer_id: Some(e.payload.stripe_customer_id.clone()),
        identifier: e.identifier.clone(),
        timestamp: e.timestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_period_is_open_until_the_next_month_begins() {
        let oct = NaiveDate::from_ymd_opt(2026, 10, 17).unwrap();
        let at = |y, mo, d, h, mi, s| Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap();
        assert!(period_open(oct, at(2026, 10, 1, 0, 0, 0)));
        assert!(period_open(oct, at(2026, 10, 31, 23, 59, 59)));
        assert!(!period_open(oct, at(2026, 11, 1, 0, 0, 0)));
        let dec = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert!(period_open(dec, at(2026, 12, 31, 23, 0, 0)));
        assert!(!period_open(dec, at(2027, 1, 1, 0, 0, 0)));
    }

    #[test]
    fn the_key_never_prints() {
        let key = ApiKey::new("sk_test_51SECRETSECRET");
        assert_eq!(format!("{key}"), "sk_…(redacted)");
        assert_eq!(format!("{key:?}"), "sk_…(redacted)");
        let mut opts = PushOptions::new("lake", "out", Target::Month(NaiveDate::MIN));
        opts.api_key = Some(key);
        assert!(!format!("{opts:?}").contains("SECRET"));
    }

    #[test]
    fn only_https_or_loopback_http_is_a_base_url() {
        for ok in [
            "https://api.stripe.com",
            "http://127.0.0.1:4242",
            "http://localhost:8080/",
            "http://[::1]:1",
        ] {
            check_base_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "http://api.stripe.com",
            "http://127.0.0.1.evil.com",
            "ftp://x",
        ] {
            assert!(check_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plan_lines_name_method_path_key_customer_event_and_value() {
        let r = PlannedRequest {
            method: "POST",
            path: V1_EVENTS,
            batch: None,
            key: "c-llm-20261005-r2".into(),
            customer: "cus_A".into(),
            event_name: Some("llm".into()),
            value: Some(-20),
            amount: None,
            currency: None,
            why: Some(Why::Delta {
                accepted: 90,
                target: 70,
            }),
        };
        assert_eq!(
            r.line(),
            "POST /v1/billing/meter_events identifier=c-llm-20261005-r2 customer=cus_A event=llm value=-20 (delta: Stripe has 90, the revision says 70)"
        );
    }
}
