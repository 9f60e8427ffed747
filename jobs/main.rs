//! The `meter` binary: parses flags, builds a context, calls one library
//! stage per job and maps the outcome to an exit code:
//! 0 done, 1 done but needs attention, 2 failed, 3 another run holds the lake.

mod bill;
mod ingest;
mod pipeline;
mod pricing;
mod reconcile;
mod rollup;
mod sample;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use meter::report::StageReport;

/// Turns raw LLM-proxy and VM usage logs into exact invoices.
#[derive(Parser, Debug)]
#[command(name = "meter", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    job: Job,
}

#[derive(Subcommand, Debug)]
enum Job {
    /// Parse a raw input tree into the date-partitioned Parquet lake.
    Ingest(ingest::IngestArgs),
    /// Price events and build the daily and monthly aggregates.
    Rollup(rollup::RollupArgs),
    /// Bill a month: invoice CSVs and Stripe meter events, as a revision.
    Bill(bill::BillArgs),
    /// Compare a month's totals at every stage, raw events to invoices.
    Reconcile(reconcile::ReconcileArgs),
    /// Ingest, roll up and bill one month in one go.
    Pipeline(pipeline::PipelineArgs),
    /// Write a realistic raw input tree (for demos, tests and benchmarks).
    Sample(sample::SampleArgs),
    /// Work with the price list (`pricing.toml`).
    Pricing(pricing::PricingArgs),
}

/// How a job ended, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done = 0,
    NeedsAttention = 1,
    Failed = 2,
    Locked = 3,
}

/// Prints an error with its causes and what to do, and picks the exit code.
pub fn fail(err: &meter::Error) -> Outcome {
    eprintln!("error: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
    if let Some(hint) = err.hint() {
        eprintln!("  what to do: {hint}");
    }
    match err {
        meter::Error::Locked { .. } => Outcome::Locked,
        _ => Outcome::Failed,
    }
}

/// Prints a stage's summary and report location (and the report itself with
/// `--json`), and picks the exit code.
pub fn finish<R: StageReport>(lake: &std::path::Path, report: &R, json: bool) -> Outcome {
    eprint!("{}", report.summary());
    eprintln!(
        "  report: {}/_runs/{}.json",
        lake.display(),
        report.run_id()
    );
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("the report serializes")
        );
    }
    if report.needs_attention() {
        Outcome::NeedsAttention
    } else {
        Outcome::Done
    }
}

/// [`finish`] for a stage that ran, [`fail`] for one that did not.
pub fn conclude<R: StageReport>(
    result: meter::Result<R>,
    lake: &std::path::Path,
    json: bool,
) -> Outcome {
    match result {
        Ok(report) => finish(lake, &report, json),
        Err(e) => fail(&e),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.job {
        Job::Ingest(args) => ingest::run(args),
        Job::Pricing(args) => pricing::run(args),
        Job::Rollup(args) => rollup::run(args),
        Job::Bill(args) => bill::run(args),
        Job::Pipeline(args) => pipeline::run(args),
        Job::Reconcile(args) => reconcile::run(args),
        Job::Sample(args) => match sample::run(&args) {
            Ok(_) => Outcome::Done,
            Err(e) => {
                eprintln!("error: {e}");
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    eprintln!("  caused by: {cause}");
                    source = cause.source();
                }
                Outcome::Failed
            }
        },
    };
    ExitCode::from(outcome as u8)
}
