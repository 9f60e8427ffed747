//! `meter pipeline`: the three stages for one month in one go (ingest, then
//! rollup of the month, then billing) under one lake lock. Each stage writes
//! its own run report; the exit code is the worst of theirs, and a failed
//! stage stops the rest.

use chrono::NaiveDate;
use meter::cron;

use crate::cron::PathArgs;
use crate::settings;
use crate::{Outcome, conclude, or_fail};

#[derive(clap::Args, Debug)]
pub struct PipelineArgs {
    /// The month to roll up and bill (YYYY-MM).
    #[arg(long, value_name = "YYYY-MM", value_parser = crate::rollup::parse_month)]
    pub month: NaiveDate,
    #[command(flatten)]
    pub paths: PathArgs,
}

pub fn run(args: PipelineArgs) -> Outcome {
    let json = args.paths.json;
    let paths = or_fail!(args.paths.resolve(true));
    let ctx = settings::ctx("pipeline");
    conclude(cron::pipeline(&ctx, &paths, args.month), &paths.lake, json)
}
