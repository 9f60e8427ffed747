//! The rollup stage: prices events from `pricing.toml` in exact decimals
//! ([`priced`]) and aggregates the lake by day and month with polars
//! ([`aggregate`]). Raw tables are never changed: a price fix or late data
//! needs only a rerun, which replaces the days and month it names wholly.

pub mod aggregate;
pub mod priced;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::SystemTime;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::lake::Lake;
use crate::lake::lease::Claim;
use crate::lake::tables::Table;
use crate::model::ctx::Ctx;
use crate::model::error::{Error, Result};
use crate::model::pricing::Pricing;
use aggregate::{AggregateReport, SPECS, Spec};
use priced::{PricedDay, UnpricedModel};

/// What to roll up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// One UTC day: price it and aggregate it.
    Day(NaiveDate),
    /// A month (any day in it): every day of it, then the month from its days.
    Month(NaiveDate),
    /// A month's monthly aggregates from its daily ones as they are, no day
    /// priced again: the step after rollups of its days side by side
    /// (`meter rollup --date` each). Refused while a day's events are newer
    /// than its daily rollup ([`daily_state`]).
    MonthFromDays(NaiveDate),
}

impl Period {
    /// What the lake is claimed for: one date beside the rollups of other
    /// dates, or a whole month alone.
    fn claim(&self) -> Claim {
        match *self {
            Period::Day(d) => Claim::date(d),
            Period::Month(_) | Period::MonthFromDays(_) => Claim::EXCLUSIVE,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RollupOptions {
    pub lake: PathBuf,
    pub pricing: PathBuf,
    pub period: Period,
}

#[derive(Debug, Clone, Serialize)]
pub struct RollupReport {
    pub job: &'static str,
    pub run_id: String,
    pub started_at: String,
    pub finished_at: String,
    pub lake: String,
    pub pricing: String,
    pub period: String,
    pub events_priced: u64,
    pub events_unpriced: u64,
    /// Sum of the priced events' costs, exact, in `currency`.
    pub cost: Decimal,
    pub currency: String,
    /// Raw model name -> events and tokens that no price matched.
    pub unpriced_models: BTreeMap<String, UnpricedModel>,
    pub days: Vec<PricedDay>,
    pub aggregates: Vec<AggregateReport>,
    pub attention: Vec<String>,
}

crate::model::report::stage_report!(RollupReport);

impl RollupReport {
    pub fn needs_attention(&self) -> bool {
        !self.attention.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut s = if self.period.ends_with(FROM_DAYS) {
            format!(
                "rollup {} {}: the monthly aggregates, no day priced again\n",
                self.run_id, self.period
            )
        } else {
            format!(
                "rollup {} {}: {} events priced, {} unpriced, cost {} {}\n",
                self.run_id,
                self.period,
                self.events_priced,
                self.events_unpriced,
                self.cost.normalize(),
                self.currency
            )
        };
        let mut rows: BTreeMap<(Table, &str), u64> = BTreeMap::new();
        for a in &self.aggregates {
            *rows.entry((a.table, a.period)).or_default() += a.rows_out;
        }
        for ((table, period), n) in rows {
            s.push_str(&format!("  {period:<8} {:<15} {n:>8} rows\n", table.name()));
        }
        for (model, u) in &self.unpriced_models {
            s.push_str(&format!(
                "  unpriced: {model}: {} events, {} tokens ({})\n",
                u.events, u.tokens, u.reason
            ));
        }
        for a in &self.attention {
            s.push_str(&format!("  attention: {a}\n"));
        }
        s
    }
}

/// How the report names a month built from its daily rollups.
const FROM_DAYS: &str = " from its days";

/// The days a rollup of `period` covers: for a month, every day of it that
/// has events or earlier aggregates.
fn days_of(lake: &Lake, period: Period) -> Result<Vec<NaiveDate>> {
    match period {
        Period::Day(d) => Ok(vec![d]),
        Period::Month(m) | Period::MonthFromDays(m) => {
            let first = m.with_day(1).expect("day 1 exists");
            let in_month = |d: &NaiveDate| d.year() == first.year() && d.month() == first.month();
            let mut days = std::collections::BTreeSet::new();
            for table in Table::EVENTS {
                days.extend(lake.partition_dates(table)?.into_iter().filter(in_month));
            }
            for spec in SPECS {
                let daily = format!("daily/{}", spec.table.name());
                days.extend(lake.dates_under(&daily)?.into_iter().filter(in_month));
            }
            Ok(days.into_iter().collect())
        }
    }
}

/// One day rolled up: its priced events and its daily aggregates.
type RolledDay = (PricedDay, Vec<AggregateReport>);

/// Runs the stage. Unpriced events are kept (cost null) and make the run
/// need attention.
pub fn run(ctx: &Ctx, opts: &RollupOptions) -> Result<RollupReport> {
    Lake::require(&opts.lake)?;
    let pricing = crate::load::pricing(&opts.pricing)?;
    let lake = Lake::open_as(&opts.lake, &ctx.run_id, opts.period.claim())?;
    run_on(ctx, &lake, &pricing, opts)
}

/// The newest file of `dir`, if it has any.
fn newest(lake: &Lake, dir: &std::path::Path) -> Result<Option<SystemTime>> {
    let mut newest = None;
    for f in lake.parquet_files(dir)? {
        let t = lake.modified(&f)?;
        newest = Some(newest.map_or(t, |n: SystemTime| n.max(t)));
    }
    Ok(newest)
}

/// The daily rollup of `spec`'s table on `date`: when its newest file was
/// written (none: it has none), and whether it is behind the day's events
/// (some were stored after it was written, or it has none while they
/// exist). The one rule of a current day, for billing and
/// [`Period::MonthFromDays`].
pub fn daily_state(
    lake: &Lake,
    spec: &Spec,
    date: NaiveDate,
) -> Result<(Option<SystemTime>, bool)> {
    let daily = newest(lake, &spec.daily_dir(lake, date))?;
    let raw = newest(lake, &lake.partition_dir(spec.table, date))?;
    Ok((daily, raw.is_some() && daily.is_none_or(|d| raw > Some(d))))
}

/// [`run`] on a lake the caller holds, with `opts.pricing` already loaded.
pub fn run_on(
    ctx: &Ctx,
    lake: &Lake,
    pricing: &Pricing,
    opts: &RollupOptions,
) -> Result<RollupReport> {
    let started_at = ctx.clock.now();
    let mut report = RollupReport {
        job: "rollup",
        run_id: ctx.run_id.clone(),
        started_at: started_at.to_rfc3339(),
        finished_at: String::new(),
        lake: opts.lake.display().to_string(),
        pricing: opts.pricing.display().to_string(),
        period: match opts.period {
            Period::Day(d) => format!("date={d}"),
            Period::Month(m) => format!("month={}", m.format("%Y-%m")),
            Period::MonthFromDays(m) => format!("month={}{FROM_DAYS}", m.format("%Y-%m")),
        },
        events_priced: 0,
        events_unpriced: 0,
        cost: Decimal::ZERO,
        currency: pricing.currency.clone(),
        unpriced_models: BTreeMap::new(),
        days: Vec::new(),
        aggregates: Vec::new(),
        attention: Vec::new(),
    };
    let mut days = days_of(lake, opts.period)?;
    if let Period::MonthFromDays(m) = opts.period {
        check_days_current(lake, m, &days)?;
        days.clear();
    }
    // A day whose raw events are all gone (removed by `meter retention`)
    // keeps its aggregates: rolling it up again would replace them with
    // nothing.
    // Each table's partition folders are listed once, not once per day (in
    // object storage every listing is a request).
    let mut kept = Vec::new();
    if let (Some(&first), Some(&last)) = (days.first(), days.last()) {
        let with_files = |rels: Vec<String>| -> Result<BTreeSet<NaiveDate>> {
            let mut dates = BTreeSet::new();
            for rel in rels {
                dates.extend(lake.dates_with_files(&rel, first..=last)?);
            }
            Ok(dates)
        };
        let raw = with_files(Table::EVENTS.iter().map(|t| t.name().to_string()).collect())?;
        let aggregated = with_files(
            SPECS
                .iter()
                .map(|spec| format!("daily/{}", spec.table.name()))
                .collect(),
        )?;
        kept = (days.iter().copied())
            .filter(|d| !raw.contains(d) && aggregated.contains(d))
            .collect();
    }
    days.retain(|d| !kept.contains(d));
    if !kept.is_empty() {
        report.attention.push(format!(
            "{} day(s) have daily aggregates but no raw events (removed by `meter retention`?): their aggregates are kept as they are, not rolled up again ({} .. {})",
            kept.len(),
            kept[0],
            kept[kept.len() - 1]
        ));
    }
    ctx.progress.start("rollup: days", days.len() as u64);
    // Days side by side, one per core: each writes its own partitions (the
    // lake commits one at a time), and pricing a day and writing its priced
    // file is one thread's work. Plain threads taking the next day, not
    // rayon tasks: a rayon worker waiting inside polars would start more
    // days meanwhile, each with its frames in memory. Reported in date
    // order; the first failing day's error.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(days.len().max(1));
    let roll_day = |date: NaiveDate| -> Result<RolledDay> {
        let day = priced::price_day(lake, pricing, date, &ctx.run_id)?;
        let aggregates = (SPECS.iter())
            .map(|spec| aggregate::daily(lake, *spec, date, &ctx.run_id))
            .collect::<Result<Vec<_>>>()?;
        ctx.progress.advance(1);
        Ok((day, aggregates))
    };
    let mut done: Vec<(usize, Result<RolledDay>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&date) = days.get(i) else {
                            return mine;
                        };
                        let result = roll_day(date);
                        let failed = result.is_err();
                        mine.push((i, result));
                        if failed {
                            // The others finish the day they are on.
                            next.store(days.len(), std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a rollup worker panicked"))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    let done = done.into_iter().map(|(_, r)| r);
    for result in done {
        let (day, aggregates) = result?;
        report.events_priced += day.priced;
        report.events_unpriced += day.unpriced;
        report.cost += day.cost;
        for (model, u) in &day.unpriced_models {
            let total = report.unpriced_models.entry(model.clone()).or_default();
            total.events += u.events;
            total.tokens += u.tokens;
            total.reason.clone_from(&u.reason);
        }
        report.days.push(day);
        report.aggregates.extend(aggregates);
    }
    ctx.progress.finish();
    if let Period::Month(m) | Period::MonthFromDays(m) = opts.period {
        for spec in SPECS {
            report
                .aggregates
                .push(aggregate::monthly(lake, spec, m, &ctx.run_id)?);
        }
    }
    if report.events_unpriced > 0 {
        report.attention.push(format!(
            "{} events have no price (kept with a null cost): fix pricing.toml and rerun; models: {}",
            report.events_unpriced,
            report.unpriced_models.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    report.finished_at = ctx.clock.now().to_rfc3339();
    lake.write_report(
        &ctx.run_id,
        &serde_json::to_string_pretty(&report).expect("the report serializes"),
    )?;
    Ok(report)
}

/// Refuses to build month `m` from its `days` while one of them is behind
/// its events ([`daily_state`]): the monthly aggregates would miss them.
fn check_days_current(lake: &Lake, m: NaiveDate, days: &[NaiveDate]) -> Result<()> {
    let mut behind = Vec::new();
    for &date in days {
        for spec in &SPECS {
            if daily_state(lake, spec, date)?.1 {
                behind.push((date, spec.table.name()));
            }
        }
    }
    let Some(&(first, _)) = behind.first() else {
        return Ok(());
    };
    let mut dates: Vec<NaiveDate> = behind.iter().map(|(d, _)| *d).collect();
    dates.dedup();
    let lake_arg = lake.root().display();
    Err(Error::Usage(format!(
        "the daily rollups of {} day(s) of {} are behind their events ({}): roll them up first, `meter rollup --lake {lake_arg} --date {first}` and so on for each, or the whole month with `meter rollup --lake {lake_arg} --month {}`",
        dates.len(),
        m.format("%Y-%m"),
        behind
            .iter()
            .map(|(d, t)| format!("{t} of {d}"))
            .collect::<Vec<_>>()
            .join(", "),
        m.format("%Y-%m"),
    )))
}
