//! `meter erase`: remove one customer's rows from every table of the lake
//! (a privacy request), keep issued invoices, record what was done.

use std::path::PathBuf;

use meter::lake::erase::{self, EraseOptions};

use crate::settings::{self, settings};
use crate::{Outcome, conclude, or_fail};

#[derive(clap::Args, Debug)]
pub struct EraseArgs {
    /// The customer whose rows go (a `customer_id` of customers.csv).
    #[arg(long, value_name = "ID")]
    pub customer: String,
    /// The lake written by `meter ingest`.
    #[arg(long, value_name = "DIR", env = "METER_LAKE")]
    pub lake: Option<PathBuf>,
    /// Count the rows and files that would change, per partition, and
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the full run report (JSON) on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: EraseArgs) -> Outcome {
    let lake = or_fail!(settings().lake(args.lake));
    let ctx = settings::ctx("erase");
    let opts = EraseOptions {
        lake,
        customer: args.customer,
        dry_run: args.dry_run,
    };
    let result = erase::run(&ctx, &opts);
    if let Ok(report) = &result
        && report.dry_run
        && !args.json
    {
        for p in &report.partitions {
            crate::outln!(
                "{}\t{} rows",
                opts.lake.join(&p.partition).display(),
                p.rows_removed
            );
        }
    }
    conclude(result, &opts.lake, args.json)
}
