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
    /// aggregates.
    #[arg(long, value_name = "DATE")]
    pub date: Option<NaiveDate>,
    /// A month (YYYY-MM): every day of it, then the monthly aggregates from
    /// the daily ones.
    #[arg(long, value_name = "YYYY-MM", value_parser = parse_month)]
    pub month: Option<NaiveDate>,
    /// Print the full run report (JSON) on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn parse_month(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not YYYY-MM"))
}

pub fn run(args: RollupArgs) -> Outcome {
    let lake = or_fail!(settings().lake(args.lake));
    let ctx = settings::ctx("rollup");
    let period = match (args.date, args.month) {
        (Some(d), _) => Period::Day(d),
        (None, Some(m)) => Period::Month(m),
        (None, None) => unreachable!("clap requires --date or --month"),
    };
    let opts = RollupOptions {
        lake,
        pricing: settings().pricing(args.pricing),
        period,
    };
    conclude(rollup::run(&ctx, &opts), &opts.lake, args.json)
}
