//! `meter compact`: rewrite partitions of many small files into few large
//! ones, sorted by customer and time, with the same rows.

use std::path::PathBuf;

use chrono::NaiveDate;
use meter::lake::compact::{self, CompactOptions};

use crate::settings::{self, settings};
use crate::{Outcome, conclude, or_fail};

#[derive(clap::Args, Debug)]
pub struct CompactArgs {
    /// The lake written by `meter ingest`.
    #[arg(long, value_name = "DIR", env = "METER_LAKE")]
    pub lake: Option<PathBuf>,
    /// Only the partitions of this month (YYYY-MM).
    #[arg(long, value_name = "YYYY-MM", value_parser = crate::rollup::parse_month)]
    pub month: Option<NaiveDate>,
    /// Only this table: api_usage, api_requests, resource_usage, activity,
    /// rejects, or a derived one such as priced/api_usage or daily/activity.
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,
    /// Print every partition that would be rewritten, one per line on
    /// stdout, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the full run report (JSON) on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CompactArgs) -> Outcome {
    let lake = or_fail!(settings().lake(args.lake));
    let ctx = settings::ctx("compact");
    let opts = CompactOptions {
        month: args.month,
        table: args.table,
        dry_run: args.dry_run,
        ..CompactOptions::all(lake)
    };
    let result = compact::run(&ctx, &opts);
    if let Ok(report) = &result
        && report.dry_run
        && !args.json
    {
        for p in &report.partitions {
            crate::outln!("{}", opts.lake.join(&p.partition).display());
        }
    }
    conclude(result, &opts.lake, args.json)
}
