//! The rollup stage: prices events from `pricing.toml` in exact decimals
//! ([`priced`]) and aggregates the lake by day and month with polars
//! ([`aggregate`]). Raw tables are never changed: a price fix or late data
//! needs only a rerun, which replaces the days and month it names wholly.

pub mod aggregate;
pub mod priced;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::lake::Lake;
use crate::lake::tables::Table;
use crate::model::ctx::Ctx;
use crate::model::error::Result;
use crate::model::pricing::Pricing;
use aggregate::{AggregateReport, SPECS};
use priced::{PricedDay, UnpricedModel};

/// What to roll up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// One UTC day: price it and aggregate it.
    Day(NaiveDate),
    /// A month (any day in it): every day of it, then the month from its days.
    Month(NaiveDate),
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
        let mut s = format!(
            "rollup {} {}: {} events priced, {} unpriced, cost {} {}\n",
            self.run_id,
            self.period,
            self.events_priced,
            self.events_unpriced,
            self.cost.normalize(),
            self.currency
        );
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

/// The days a rollup of `period` covers: for a month, every day of it that
/// has events or earlier aggregates.
fn days_of(lake: &Lake, period: Period) -> Result<Vec<NaiveDate>> {
    match period {
        Period::Day(d) => Ok(vec![d]),
        Period::Month(m) => {
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

/// Runs the stage. Unpriced events are kept (cost null) and make the run
/// need attention.
pub fn run(ctx: &Ctx, opts: &RollupOptions) -> Result<RollupReport> {
    Lake::require(&opts.lake)?;
    let pricing = crate::load::pricing(&opts.pricing)?;
    let lake = Lake::open(&opts.lake, &ctx.run_id)?;
    run_on(ctx, &lake, &pricing, opts)
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
    for date in days {
        ctx.progress.advance(1);
        let day = priced::price_day(lake, pricing, date, &ctx.run_id)?;
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
        for spec in SPECS {
            report
                .aggregates
                .push(aggregate::daily(lake, spec, date, &ctx.run_id)?);
        }
    }
    ctx.progress.finish();
    if let Period::Month(m) = opts.period {
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
