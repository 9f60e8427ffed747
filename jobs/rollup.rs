//! `meter rollup`: price events and build the daily and monthly aggregates.

use chrono::NaiveDate;
use meter::rollup::{self, Period, RollupOptions};
use std::path::PathBuf;

use crate::settings::{self, settings};
use crate::{Outcome, conclude, or_fail};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("period").required(true).args(["date", "month"])))]
pub struct RollupArgs {
    /// The lake written by `meter ingest`.
    #[arg(long, value_name = "DIR", env = "METER_LAKE")]
    pub lake: Option<PathBuf>,
    /// Price list (validated first, as by `meter pricing check`)
    /// [default: pricing.toml].
    #[arg(long, value_name = "FILE", env = "METER_PRICING")]
    pub pricing: Option<PathBuf>,
    /// One UTC day (YYYY-MM-DD): price its events and replace its daily
    /// aggregates. Rollups of different dates run side by side. YYYY-MM-DD+N
    /// is N days later, for a scheduler's index: --date
    /// 2026-11-01+$(JOB_COMPLETION_INDEX) in a Kubernetes Indexed Job.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub date: Option<NaiveDate>,
    /// A month (YYYY-MM): every day of it, then the monthly aggregates from
    /// the daily ones.
    #[arg(long, value_name = "YYYY-MM", value_parser = parse_month)]
    pub month: Option<NaiveDate>,
    /// With --month: only the monthly aggregates, from the daily ones as
    /// they are, no day priced again (after `--date` rollups of the month's
    /// days, run side by side). Refused while a day's events are newer than
    /// its daily rollup.
    #[arg(long, requires = "month")]
    pub from_days: bool,
    /// Print the full run report (JSON) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `YYYY-MM-DD`, or `YYYY-MM-DD+N`: N days later.
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    let bad = || format!("{s:?} is not YYYY-MM-DD or YYYY-MM-DD+N (N days later)");
    let (date, days) = match s.split_once('+') {
        Some((date, n)) => (date, n.trim().parse::<u32>().map_err(|_| bad())?),
        None => (s, 0),
    };
    let date = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d").map_err(|_| bad())?;
    date.checked_add_days(chrono::Days::new(days.into()))
        .ok_or_else(bad)
}

pub fn parse_month(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not YYYY-MM"))
}

pub fn run(args: RollupArgs) -> Outcome {
    let lake = or_fail!(settings().lake(args.lake));
    let ctx = settings::ctx("rollup");
    let (period, ctx) = match (args.date, args.month) {
        // Rollups of different dates run side by side: their run ids
        // differ even under one METER_FIXED_TIME.
        (Some(d), _) => (Period::Day(d), ctx.stage(&d.to_string())),
        (None, Some(m)) if args.from_days => (Period::MonthFromDays(m), ctx),
        (None, Some(m)) => (Period::Month(m), ctx),
        (None, None) => unreachable!("clap requires --date or --month"),
    };
    let opts = RollupOptions {
        lake,
        pricing: settings().pricing(args.pricing),
        period,
    };
    conclude(rollup::run(&ctx, &opts), &opts.lake, args.json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_may_name_n_days_after_another() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(parse_date("2026-11-03"), Ok(d("2026-11-03")));
        assert_eq!(parse_date("2026-11-01+0"), Ok(d("2026-11-01")));
        assert_eq!(parse_date("2026-11-01+29"), Ok(d("2026-11-30")));
        assert_eq!(parse_date("2026-12-31+1"), Ok(d("2027-01-01")));
        for bad in [
            "2026-11-01+",
            "2026-11-01+-1",
            "2026-11-01+x",
            "2026-11",
            "+3",
            "",
        ] {
            let err = parse_date(bad).unwrap_err();
            assert!(err.contains("YYYY-MM-DD+N"), "{bad}: {err}");
        }
    }
}
