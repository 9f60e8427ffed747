//! `meter rollup`: price events and build the daily and monthly aggregates.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use meter::ctx::{Ctx, SystemClock};
use meter::rollup::{self, Period, RollupOptions};

use crate::{Outcome, conclude};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("period").required(true).args(["date", "month"])))]
pub struct RollupArgs {
    /// The lake written by `meter ingest`.
    #[arg(long, value_name = "DIR")]
    pub lake: PathBuf,
    /// Price list (validated first, as by `meter pricing check`).
    #[arg(long, value_name = "FILE", default_value = "pricing.toml")]
    pub pricing: PathBuf,
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
    let ctx = Ctx::new(Arc::new(SystemClock), "rollup");
    let period = match (args.date, args.month) {
        (Some(d), _) => Period::Day(d),
        (None, Some(m)) => Period::Month(m),
        (None, None) => unreachable!("clap requires --date or --month"),
    };
    let opts = RollupOptions {
        lake: args.lake,
        pricing: args.pricing,
        period,
    };
    conclude(rollup::run(&ctx, &opts), &opts.lake, args.json)
}
