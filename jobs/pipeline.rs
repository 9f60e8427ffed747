//! `meter pipeline`: the three stages for one month in one go (ingest, then
//! rollup of the month, then billing). Each stage writes its own run report;
//! the exit code is the worst of theirs, and a failed stage stops the rest.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use meter::bill::{self, BillOptions};
use meter::ctx::{Ctx, SystemClock};
use meter::ingest::{self, IngestOptions};
use meter::rollup::{self, Period, RollupOptions};

use crate::{Outcome, conclude};

#[derive(clap::Args, Debug)]
pub struct PipelineArgs {
    /// Raw input directory (as for `meter ingest`).
    #[arg(long, value_name = "DIR")]
    pub input: PathBuf,
    /// Lake directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub lake: PathBuf,
    /// The month to roll up and bill (YYYY-MM).
    #[arg(long, value_name = "YYYY-MM", value_parser = crate::rollup::parse_month)]
    pub month: NaiveDate,
    /// Price list.
    #[arg(long, value_name = "FILE", default_value = "pricing.toml")]
    pub pricing: PathBuf,
    /// Where invoices and Stripe files go (a folder or an object-store URL,
    /// as for `meter bill`).
    #[arg(long, value_name = "URL", default_value = "out")]
    pub out: String,
}

pub fn run(args: PipelineArgs) -> Outcome {
    let clock = Arc::new(SystemClock);
    let mut worst = Outcome::Done;
    let mut note = |outcome: Outcome| {
        if outcome != Outcome::Done {
            worst = outcome;
        }
    };

    let ctx = Ctx::new(clock.clone(), "ingest");
    let opts = IngestOptions {
        input: args.input.clone(),
        lake: args.lake.clone(),
        since: None,
        until: None,
        rebuild: false,
        max_reject_rate: 0.01,
    };
    match conclude(ingest::run(&ctx, &opts), &args.lake, false) {
        failed @ (Outcome::Failed | Outcome::Locked) => return failed,
        outcome => note(outcome),
    }

    let ctx = Ctx::new(clock.clone(), "rollup");
    let opts = RollupOptions {
        lake: args.lake.clone(),
        pricing: args.pricing.clone(),
        period: Period::Month(args.month),
    };
    match conclude(rollup::run(&ctx, &opts), &args.lake, false) {
        failed @ (Outcome::Failed | Outcome::Locked) => return failed,
        outcome => note(outcome),
    }

    let ctx = Ctx::new(clock, "bill");
    let opts = BillOptions {
        lake: args.lake.clone(),
        month: args.month,
        customers: Some(args.input.join("customers.csv")),
        pricing: args.pricing,
        out: args.out,
        store_options: Vec::new(),
    };
    match conclude(bill::run(&ctx, &opts), &args.lake, false) {
        failed @ (Outcome::Failed | Outcome::Locked) => return failed,
        outcome => note(outcome),
    }
    worst
}
