//! `meter ingest`: the raw input tree into the lake.

use chrono::NaiveDate;
use meter::ingest::{self, IngestOptions};
use meter::model::shard::Shard;
use std::path::PathBuf;

use crate::settings::{self, settings};
use crate::{Outcome, conclude, or_fail};

#[derive(clap::Args, Debug)]
pub struct IngestArgs {
    /// Raw input directory: customers.csv, optional users.csv, and one folder
    /// per VM holding cliproxy/, resources/ and commands/. Or the same tree
    /// in an object store: s3://bucket/prefix, gs://, az:// (configured from
    /// the AWS_*, GOOGLE_*, AZURE_* variables), or file:///abs/dir.
    #[arg(long, value_name = "DIR|URL", env = "METER_INPUT")]
    pub input: Option<PathBuf>,
    /// Lake directory (created if missing). Tables are written under
    /// <lake>/<table>/date=YYYY-MM-DD/, run reports under <lake>/_runs/.
    #[arg(long, value_name = "DIR", env = "METER_LAKE")]
    pub lake: Option<PathBuf>,
    /// Only events on or after this UTC date (YYYY-MM-DD); earlier lines are
    /// counted as skipped.
    #[arg(long, value_name = "DATE")]
    pub since: Option<NaiveDate>,
    /// Only events on or before this UTC date (YYYY-MM-DD); later lines are
    /// counted as skipped.
    #[arg(long, value_name = "DATE")]
    pub until: Option<NaiveDate>,
    /// Replace the partitions of --since..--until (both required) with what
    /// the raw input holds now, instead of merging into them. For reruns
    /// after a parser fix or a corrected log.
    #[arg(long)]
    pub rebuild: bool,
    /// Share of rejected lines (0 to 1) above which the run exits 1 so that
    /// someone looks at the rejects table.
    #[arg(long, value_name = "R", default_value_t = 0.01)]
    pub max_reject_rate: f64,
    /// Ingest only shard I of N (I from 0): the VMs whose id hashes to I
    /// (xxh3_64 of the id, mod N). N processes, one per shard, on one
    /// machine or many, together ingest exactly what one process would;
    /// they run side by side, each committing on its own. In a Kubernetes
    /// Indexed Job: --shard $(JOB_COMPLETION_INDEX)/N.
    #[arg(long, value_name = "I/N", env = "METER_SHARD")]
    pub shard: Option<Shard>,
    /// Print the full run report (JSON) on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: IngestArgs) -> Outcome {
    let input = or_fail!(settings().input(args.input));
    let lake = or_fail!(settings().lake(args.lake));
    let ctx = settings::ctx("ingest");
    let opts = IngestOptions {
        input,
        lake,
        since: args.since,
        until: args.until,
        rebuild: args.rebuild,
        max_reject_rate: args.max_reject_rate,
        shard: args.shard.unwrap_or(Shard::ALL),
    };
    conclude(ingest::run(&ctx, &opts), &opts.lake, args.json)
}
