//! `meter retention`: delete raw, rejected and priced partitions older than
//! N whole months; aggregates stay.

use std::path::PathBuf;

use meter::lake::retention::{self, DEFAULT_KEEP_MONTHS, RetentionOptions};

use crate::settings::{self, settings};
use crate::{Outcome, conclude, or_fail};

#[derive(clap::Args, Debug)]
pub struct RetentionArgs {
    /// The lake written by `meter ingest`.
    #[arg(long, value_name = "DIR", env = "METER_LAKE")]
    pub lake: Option<PathBuf>,
    /// Whole months kept before the current one (UTC): with 36 on
    /// 2026-11-22, partitions dated before 2023-11-01 are deleted. Daily and
    /// monthly aggregates are always kept.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_KEEP_MONTHS)]
    pub keep_months: u32,
    /// Print every partition directory that would be deleted, one per line
    /// on stdout, and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the full run report (JSON) on stdout (instead of the dry run's
    /// list, which it contains).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: RetentionArgs) -> Outcome {
    let lake = or_fail!(settings().lake(args.lake));
    let ctx = settings::ctx("retention");
    let opts = RetentionOptions {
        lake,
        keep_months: args.keep_months,
        dry_run: args.dry_run,
    };
    let result = retention::run(&ctx, &opts);
    if let Ok(report) = &result
        && report.dry_run
        && !args.json
    {
        for rel in &report.partitions {
            crate::outln!("{}", opts.lake.join(rel).display());
        }
    }
    conclude(result, &opts.lake, args.json)
}
