//! `meter reconcile`: every stage of a month against its source.

use chrono::NaiveDate;
use meter::read::reconcile::{self, ReconcileOptions};
use std::path::PathBuf;

use crate::settings::{self, settings};
use crate::{Outcome, fail, finish, or_fail};

#[derive(clap::Args, Debug)]
pub struct ReconcileArgs {
    /// The lake.
    #[arg(long, value_name = "DIR", env = "METER_LAKE")]
    pub lake: Option<PathBuf>,
    /// The month (YYYY-MM).
    #[arg(long, value_name = "YYYY-MM", value_parser = crate::rollup::parse_month)]
    pub month: NaiveDate,
    /// Where the invoices are (as for `meter bill --out`) [default: out].
    #[arg(long, value_name = "URL", env = "METER_OUT")]
    pub out: Option<String>,
    /// Print the full run report (JSON) on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ReconcileArgs) -> Outcome {
    let lake = or_fail!(settings().lake(args.lake));
    let ctx = settings::ctx("reconcile");
    let opts = ReconcileOptions {
        lake,
        month: args.month,
        out: settings().out(args.out),
        store_options: Vec::new(),
    };
    match reconcile::run(&ctx, &opts) {
        Ok(report) => {
            if !args.json {
                crate::out!("{}", report.table());
            }
            finish(&opts.lake, &report, args.json)
        }
        Err(e) => fail(&e),
    }
}
