//! `meter reconcile`: every stage of a month against its source.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use meter::ctx::{Ctx, SystemClock};
use meter::reconcile::{self, ReconcileOptions};

use crate::{Outcome, fail, finish};

#[derive(clap::Args, Debug)]
pub struct ReconcileArgs {
    /// The lake.
    #[arg(long, value_name = "DIR")]
    pub lake: PathBuf,
    /// The month (YYYY-MM).
    #[arg(long, value_name = "YYYY-MM", value_parser = crate::rollup::parse_month)]
    pub month: NaiveDate,
    /// Where the invoices are (as for `meter bill --out`).
    #[arg(long, value_name = "URL", default_value = "out")]
    pub out: String,
    /// Print the full run report (JSON) on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ReconcileArgs) -> Outcome {
    let ctx = Ctx::new(Arc::new(SystemClock), "reconcile");
    let opts = ReconcileOptions {
        lake: args.lake,
        month: args.month,
        out: args.out,
        store_options: Vec::new(),
    };
    match reconcile::run(&ctx, &opts) {
        Ok(report) => {
            if !args.json {
                print!("{}", report.table());
            }
            finish(&opts.lake, &report, args.json)
        }
        Err(e) => fail(&e),
    }
}
