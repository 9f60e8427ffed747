//! The scheduled jobs: stages composed under one lake lock.
//!
//! - [`nightly`]: ingest what is new, roll up every date it touched (and
//!   say to rerun an earlier month that has a published revision), write
//!   the day's Stripe meter events and limit alerts, and name the VMs that
//!   fell silent.
//! - [`monthly`]: the month's rollup, then billing (a revision).
//! - [`rerun`]: rebuild a month from the raw input (ingest `--rebuild` of its
//!   dates, rollup, billing): the next revision, with its diff and Stripe
//!   corrections against the previous one.
//!
//! Each stage writes its own run report (`<run_id>-<stage>`); the job's
//! report lists them and adds its own findings.

pub mod alerts;
pub mod stripe;

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use crate::bill::{self, BillOptions};
use crate::cron::alerts::AlertBook;
use crate::ingest::{self, IngestOptions};
use crate::lake::Lake;
use crate::lake::store::Store;
use crate::lake::tables::Table;
use crate::model::contracts::Contracts;
use crate::model::ctx::Ctx;
use crate::model::error::{Error, Result};
use crate::model::pricing::Pricing;
use crate::model::report::StageReport;
use crate::model::shard::Shard;
use crate::read::silent;
use crate::rollup::{self, Period, RollupOptions};

/// Share of rejected lines above which ingest asks for attention.
pub const MAX_REJECT_RATE: f64 = 0.01;

/// Where a scheduled job reads and writes.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The raw input tree (`customers.csv` and one folder per VM).
    pub input: PathBuf,
    pub lake: PathBuf,
    /// Where invoices and Stripe files go (a folder or object-store URL).
    pub out: String,
    /// `customers.csv` for billing; `None`: the copy ingest keeps in the lake.
    pub customers: Option<PathBuf>,
    pub pricing: PathBuf,
    /// Object-store options; empty: the standard environment variables.
    pub store_options: Vec<(String, String)>,
}

/// One stage of a job, as the job's report lists it.
#[derive(Debug, Clone, Serialize)]
pub struct StageRun {
    pub stage: &'static str,
    pub run_id: String,
    pub needs_attention: bool,
    pub summary: String,
}

impl StageRun {
    fn of<R: StageReport>(stage: &'static str, report: &R) -> StageRun {
        StageRun {
            stage,
            run_id: report.run_id().to_string(),
            needs_attention: report.needs_attention(),
            summary: report.summary(),
        }
    }
}

/// The report of a scheduled job.
#[derive(Debug, Serialize)]
pub struct JobReport {
    pub job: &'static str,
    pub run_id: String,
    pub started_at: String,
    pub finished_at: String,
    pub lake: String,
    /// `date=YYYY-MM-DD` or `month=YYYY-MM`.
    pub period: String,
    pub stages: Vec<StageRun>,
    /// Nightly: the dates rolled up.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dates_rolled_up: Vec<NaiveDate>,
    /// Nightly: the day's meter-event file, and how many events it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meter_events: Option<DayEventsFile>,
    /// Nightly: the limit alerts the night raised, and where they were written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertsFile>,
    /// Nightly: VMs that sent nothing on the day but did in the week before.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub silent_vms: Vec<silent::SilentVm>,
    /// Monthly and rerun: the billing outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    pub attention: Vec<String>,
    pub notices: Vec<String>,
}

crate::model::report::stage_report!(JobReport);

#[derive(Debug, Clone, Serialize)]
pub struct AlertsFile {
    pub url: String,
    pub raised: Vec<alerts::Alert>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DayEventsFile {
    pub url: String,
    pub events: usize,
    pub withheld: usize,
}

impl JobReport {
    fn new(ctx: &Ctx, job: &'static str, lake: &Lake, period: String) -> JobReport {
        JobReport {
            job,
            run_id: ctx.run_id.clone(),
            started_at: ctx.clock.now().to_rfc3339(),
            finished_at: String::new(),
            lake: lake.root().display().to_string(),
            period,
            stages: Vec::new(),
            dates_rolled_up: Vec::new(),
            meter_events: None,
            alerts: None,
            silent_vms: Vec::new(),
            revision: None,
            attention: Vec::new(),
            notices: Vec::new(),
        }
    }

    pub fn needs_attention(&self) -> bool {
        !self.attention.is_empty() || self.stages.iter().any(|s| s.needs_attention)
    }

    pub fn summary(&self) -> String {
        let mut s = String::new();
        for stage in &self.stages {
            s += &stage.summary;
        }
        s += &format!("{} {} {}: ", self.job, self.run_id, self.period);
        s += &match (self.needs_attention(), self.stages.len()) {
            (false, n) => format!("{n} stage(s) done\n"),
            (true, n) => format!("{n} stage(s) done, needs attention\n"),
        };
        if !self.dates_rolled_up.is_empty() {
            let dates: Vec<String> = self.dates_rolled_up.iter().map(|d| d.to_string()).collect();
            s += &format!("  rolled up: {}\n", dates.join(", "));
        }
        if let Some(m) = &self.meter_events {
            s += &format!(
                "  meter events: {} at {} ({} withheld)\n",
                m.events, m.url, m.withheld
            );
        }
        if let Some(a) = &self.alerts {
            s += &format!("  limit alerts: {} raised, at {}\n", a.raised.len(), a.url);
        }
        for n in &self.notices {
            s += &format!("  notice: {n}\n");
        }
        for a in &self.attention {
            s += &format!("  attention: {a}\n");
        }
        s
    }

    fn finish(mut self, ctx: &Ctx, lake: &Lake) -> Result<JobReport> {
        self.finished_at = ctx.clock.now().to_rfc3339();
        let json = serde_json::to_string_pretty(&self).expect("the report serializes");
        lake.write_report(&ctx.run_id, &json)?;
        Ok(self)
    }
}

/// What the nightly job does for `date` (normally yesterday, UTC).
pub struct NightlyOptions {
    pub paths: Paths,
    pub date: NaiveDate,
    pub max_reject_rate: f64,
}

/// The nightly run: ingest the new input, roll up every date it touched and
/// `date` itself, write `date`'s meter events to
/// `<out>/stripe/daily/<date>/meter_events.jsonl`, and report silent VMs.
pub fn nightly(ctx: &Ctx, opts: &NightlyOptions) -> Result<JobReport> {
    let paths = &opts.paths;
    let pricing = crate::load::pricing(&paths.pricing)?;
    let store = Store::open_configured(&paths.out, &paths.store_options)?;
    let lake = Lake::open(&paths.lake, &ctx.run_id)?;
    let mut report = JobReport::new(ctx, "nightly", &lake, format!("date={}", opts.date));

    let ingested = ingest_new(ctx, &lake, paths, opts.max_reject_rate, &mut report)?;
    let mut dates: BTreeSet<NaiveDate> = ingested
        .partitions
        .iter()
        .filter(|p| p.table != Table::Rejects && (p.rows_added > 0 || p.files_removed > 0))
        .filter_map(|p| p.date.parse().ok())
        .collect();
    dates.insert(opts.date);
    for &date in &dates {
        let rollup_opts = RollupOptions {
            lake: paths.lake.clone(),
            pricing: paths.pricing.clone(),
            period: Period::Day(date),
        };
        let stage_ctx = ctx.stage(&format!("rollup-{date}"));
        let rolled = rollup::run_on(&stage_ctx, &lake, &pricing, &rollup_opts)?;
        report.stages.push(StageRun::of("rollup", &rolled));
    }
    let month = |d: &NaiveDate| (d.year(), d.month());
    let late: BTreeSet<String> = dates
        .iter()
        .filter(|d| month(d) < month(&opts.date))
        .map(|d| d.format("%Y-%m").to_string())
        .collect();
    // Only a month with a published revision has invoices to correct; the
    // late days of a month never billed are simply rolled up (its first
    // `meter monthly` bills them).
    for m in late {
        match bill::publish::current_revision(&store, &m) {
            Ok(Some(revision)) => report.notices.push(format!(
                "late events arrived for {m}: its invoices (rev-{revision}) may be out of date; `meter rerun --month {m}` writes a corrected revision"
            )),
            Ok(None) => {}
            Err(e) => report.attention.push(format!(
                "late events arrived for {m}, and whether it was billed cannot be told: {e}{}",
                e.hint().map(|h| format!(" ({h})")).unwrap_or_default()
            )),
        }
    }
    report.dates_rolled_up = dates.into_iter().collect();

    // Compaction of the closed days this run ingested into. A failure is
    // reported, not fatal: each partition commits on its own, the one that
    // failed is as ingest left it.
    let compact_opts = crate::lake::compact::CompactOptions {
        partitions: Some(closed_partitions(
            &ingested.partitions,
            ctx.clock.now().date_naive(),
        )),
        ..crate::lake::compact::CompactOptions::all(paths.lake.clone())
    };
    match crate::lake::compact::run_on(&ctx.stage("compact"), &lake, &compact_opts) {
        Ok(compacted) => report.stages.push(StageRun::of("compact", &compacted)),
        Err(e) => report.attention.push(format!(
            "compaction failed ({e}): the lake is complete, only less compact; `meter compact` retries it"
        )),
    }

    let customers = paths
        .customers
        .clone()
        .unwrap_or_else(|| Lake::registry_path(lake.root()));
    let (registry, problems) = lake.customers(paths.customers.as_deref())?;
    for p in problems {
        report.attention.push(format!("customer not billed: {p}"));
    }
    let mut contracts = Contracts::default();
    if let Some((read, problems)) = bill::checked_contracts(
        &lake,
        None,
        paths.customers.as_deref(),
        &registry,
        &pricing,
        opts.date,
    )? {
        for p in problems {
            report.attention.push(format!("contract refused: {p}"));
        }
        contracts = read;
    }
    let day = bill::day_events(&lake, opts.date, &registry, &pricing, contracts)?;
    for (customer, why) in &day.refused {
        report
            .attention
            .push(format!("customer {customer} not metered: {why}"));
    }
    if !day.contract_readings.is_empty() {
        let who: Vec<String> = day
            .contract_readings
            .iter()
            .map(|(c, n)| format!("{c} ({n})"))
            .collect();
        report.notices.push(format!(
            "customers with a contract are priced by meter alone, so their readings of {} are not \
             meter events (Stripe would price them again; their invoices go to Stripe with the \
             approved month): {}",
            opts.date,
            who.join(", ")
        ));
    }
    let withheld = day.withheld();
    for (customer, n) in &withheld {
        report.attention.push(format!(
            "customer {customer} has no stripe_customer_id in {}: {n} meter events withheld",
            customers.display()
        ));
    }
    let key = bill::day_events_key(opts.date);
    store.put(&key, day.jsonl())?;
    report.meter_events = Some(DayEventsFile {
        url: store.object_url(&key),
        events: day.events.len() - withheld.values().sum::<usize>(),
        withheld: withheld.values().sum(),
    });
    raise_alerts(
        ctx,
        &lake,
        &store,
        opts.date,
        &day.month_to_date,
        &mut report,
    )?;

    // A VM of a customer who cancelled by the end of the day is expected to
    // fall silent.
    let day_end = (opts.date + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    for vm in silent::silent_vms(&lake, opts.date)? {
        let cancelled = registry
            .customers
            .iter()
            .find(|c| *c.customer_id == *vm.customer_id)
            .and_then(|c| c.cancelled_at)
            .filter(|t| *t <= day_end);
        match cancelled {
            Some(t) => report.notices.push(format!(
                "VM {} sent nothing on {}, as expected: customer {} cancelled at {t}",
                vm.vm_id, opts.date, vm.customer_id
            )),
            None => {
                report
                    .attention
                    .push(silent::silent_vms_message(&vm, opts.date));
                report.silent_vms.push(vm);
            }
        }
    }
    report.finish(ctx, &lake)
}

/// Raises the limit alerts the month so far crossed for the first time:
/// recorded in the lake, written to `<out>/alerts/<date>.jsonl`, and listed
/// in the report (100% as needing attention, 80% as a notice).
fn raise_alerts(
    ctx: &Ctx,
    lake: &Lake,
    store: &Store,
    date: NaiveDate,
    month_to_date: &[bill::render::SummaryRow],
    report: &mut JobReport,
) -> Result<()> {
    let month = date.format("%Y-%m").to_string();
    let mut book = AlertBook::load(lake, &month)?;
    book.raise(
        lake,
        alerts::crossings(month_to_date, &month, date, &ctx.run_id),
    )?;
    let raised = book.raised_on(date);
    // Both thresholds crossed the same night: the file has both, people
    // read the higher one.
    let highest = |a: &alerts::Alert| {
        !raised.iter().any(|b| {
            b.customer_id == a.customer_id
                && b.kind == a.kind
                && b.threshold_percent > a.threshold_percent
        })
    };
    for alert in raised.iter().filter(|a| highest(a)) {
        if alert.threshold_percent >= 100 {
            report.attention.push(alert.message());
        } else {
            report.notices.push(alert.message());
        }
    }
    let key = alerts::alerts_key(date);
    store.put(&key, alerts::jsonl(&raised))?;
    report.alerts = Some(AlertsFile {
        url: store.object_url(&key),
        raised,
    });
    Ok(())
}

/// The whole pipeline for one month: ingest everything new, then the
/// month's rollup and billing (`meter pipeline`, the demo and first run).
pub fn pipeline(ctx: &Ctx, paths: &Paths, month: NaiveDate) -> Result<JobReport> {
    let pricing = crate::load::pricing(&paths.pricing)?;
    // A missing input folder (or a bad input URL) before the lake is made.
    crate::ingest::source::InputRoot::open(&paths.input)?;
    let lake = Lake::open(&paths.lake, &ctx.run_id)?;
    let mut report = JobReport::new(ctx, "pipeline", &lake, month_label(month));
    ingest_new(ctx, &lake, paths, MAX_REJECT_RATE, &mut report)?;
    roll_and_bill(ctx, &lake, &pricing, paths, month, &mut report)?;
    report.finish(ctx, &lake)
}

/// The month-end run: the month's rollup, then billing.
pub fn monthly(ctx: &Ctx, paths: &Paths, month: NaiveDate) -> Result<JobReport> {
    let pricing = crate::load::pricing(&paths.pricing)?;
    Lake::require(&paths.lake)?;
    let lake = Lake::open(&paths.lake, &ctx.run_id)?;
    let mut report = JobReport::new(ctx, "monthly", &lake, month_label(month));
    roll_and_bill(ctx, &lake, &pricing, paths, month, &mut report)?;
    report.finish(ctx, &lake)
}

/// Rebuilds `month` from the raw input and bills it again: a new revision
/// (with its diff and corrections) if anything changed, else the current
/// revision stands.
pub fn rerun(ctx: &Ctx, paths: &Paths, month: NaiveDate) -> Result<JobReport> {
    let pricing = crate::load::pricing(&paths.pricing)?;
    let (start, end, _) = bill::inputs::month_bounds(month);
    let last = end.pred_opt().expect("in range");
    let lake = Lake::open(&paths.lake, &ctx.run_id)?;
    let mut report = JobReport::new(ctx, "rerun", &lake, month_label(month));
    let ingest_opts = IngestOptions {
        input: paths.input.clone(),
        lake: paths.lake.clone(),
        since: Some(start),
        until: Some(last),
        rebuild: true,
        max_reject_rate: MAX_REJECT_RATE,
        shard: Shard::ALL,
    };
    let ingested = ingest::run_on(&ctx.stage("ingest"), &lake, &ingest_opts)?;
    if ingested.totals.rows + ingested.totals.duplicates == 0 {
        return Err(Error::Usage(format!(
            "the input {} holds no events for {} (were its raw logs removed?); nothing was rebuilt",
            paths.input.display(),
            month_label(month)
        )));
    }
    report.stages.push(StageRun::of("ingest", &ingested));
    roll_and_bill(ctx, &lake, &pricing, paths, month, &mut report)?;
    report.finish(ctx, &lake)
}

/// Ingests whatever the input holds that the lake does not (duplicates are
/// recognised by event id).
fn ingest_new(
    ctx: &Ctx,
    lake: &Lake,
    paths: &Paths,
    max_reject_rate: f64,
    report: &mut JobReport,
) -> Result<crate::ingest::report::IngestReport> {
    let opts = IngestOptions {
        input: paths.input.clone(),
        lake: paths.lake.clone(),
        since: None,
        until: None,
        rebuild: false,
        max_reject_rate,
        shard: Shard::ALL,
    };
    let ingested = ingest::run_on(&ctx.stage("ingest"), lake, &opts)?;
    report.stages.push(StageRun::of("ingest", &ingested));
    Ok(ingested)
}

fn roll_and_bill(
    ctx: &Ctx,
    lake: &Lake,
    pricing: &Pricing,
    paths: &Paths,
    month: NaiveDate,
    report: &mut JobReport,
) -> Result<()> {
    let rollup_opts = RollupOptions {
        lake: paths.lake.clone(),
        pricing: paths.pricing.clone(),
        period: Period::Month(month),
    };
    let rolled = rollup::run_on(&ctx.stage("rollup"), lake, pricing, &rollup_opts)?;
    report.stages.push(StageRun::of("rollup", &rolled));
    let bill_opts = BillOptions {
        lake: paths.lake.clone(),
        month,
        customers: paths.customers.clone(),
        contracts: None,
        pricing: paths.pricing.clone(),
        out: paths.out.clone(),
        store_options: paths.store_options.clone(),
    };
    let billed = bill::run_on(&ctx.stage("bill"), lake, pricing, &bill_opts)?;
    report.stages.push(StageRun::of("bill", &billed));
    report.revision = Some(billed.revision);
    Ok(())
}

fn month_label(month: NaiveDate) -> String {
    format!("month={}", month.format("%Y-%m"))
}

/// The raw and reject partitions of an ingest that a nightly run compacts:
/// those it added rows to (or rebuilt) dated before `today`, the run's own
/// date (a day still being logged is left alone).
fn closed_partitions(
    ingested: &[crate::ingest::report::PartitionReport],
    today: NaiveDate,
) -> BTreeSet<(Table, NaiveDate)> {
    ingested
        .iter()
        .filter(|p| p.rows_added > 0 || p.files_removed > 0)
        .filter_map(|p| Some((p.table, p.date.parse::<NaiveDate>().ok()?)))
        .filter(|(_, d)| *d < today)
        .collect()
}
