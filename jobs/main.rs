//! The `meter` binary: parses flags, builds a context, calls one library
//! stage per job and maps the outcome to an exit code:
//! 0 done, 1 done but needs attention, 2 failed, 3 another run holds the lake.

mod approve;
mod bill;
mod compact;
mod cron;
#[cfg(test)]
mod deploy;
mod erase;
mod explain;
mod ingest;
mod out;
mod pipeline;
mod pricing;
mod query;
mod reconcile;
mod report;
mod retention;
mod rollup;
mod sample;
mod settings;
mod stripe;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use meter::model::report::StageReport;

/// Turns raw LLM-proxy and VM usage logs into exact invoices.
#[derive(Parser, Debug)]
#[command(name = "meter", version, about, long_about = None)]
struct Cli {
    /// Config file with input, lake, out, customers, pricing, log_format
    /// [default: ./meter.toml when it exists]. Flags and METER_* variables
    /// override it.
    #[arg(long, global = true, env = "METER_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// How to log on stderr [default: text, or log_format from the config].
    #[arg(long, global = true, env = "METER_LOG_FORMAT", value_enum)]
    log_format: Option<settings::LogFormat>,
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
    /// A month at a glance for finance: spend, margin, projection, movers,
    /// unpriced usage, silent VMs; text, and an HTML page in the out store.
    Report(report::ReportArgs),
    /// Run SQL over views of the lake and the latest invoices (read-only, no lock).
    Query(query::QueryArgs),
    /// List the events behind a customer's invoice line, with a tie-out.
    Explain(explain::ExplainArgs),
    /// Ingest, roll up and bill one month in one go.
    Pipeline(pipeline::PipelineArgs),
    /// Cron, every night: ingest what is new, roll up the dates it touched,
    /// write the day's Stripe meter events, report silent VMs.
    Nightly(cron::NightlyArgs),
    /// Cron, once a month: the month's rollup and billing.
    Monthly(cron::MonthlyArgs),
    /// Rebuild a month from the raw input and bill it again: the next
    /// revision, with a diff and Stripe corrections against the previous one.
    Rerun(cron::RerunArgs),
    /// Mark a revision of a month final, so that `stripe push` may send it.
    Approve(approve::ApproveArgs),
    /// Delete raw, rejected and priced partitions older than N months (aggregates stay).
    Retention(retention::RetentionArgs),
    /// Rewrite partitions of many small files into few large ones (same rows).
    Compact(compact::CompactArgs),
    /// Remove one customer's rows from every table of the lake (a privacy
    /// request); issued invoices stay.
    Erase(erase::EraseArgs),
    /// Send meter events and invoice corrections to Stripe, exactly once.
    Stripe(stripe::StripeArgs),
    /// Write a realistic raw input tree (for demos, tests and benchmarks).
    Sample(sample::SampleArgs),
    /// Work with the price list (`pricing.toml`).
    Pricing(pricing::PricingArgs),
}

/// How a job ended, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Done = 0,
    NeedsAttention = 1,
    Failed = 2,
    Locked = 3,
}

/// Prints an error with its causes and what to do, and picks the exit code.
pub fn fail(err: &meter::Error) -> Outcome {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        // Some errors (object_store's, reqwest's) repeat their source in
        // their own message: print each text once.
        if !causes
            .last()
            .is_some_and(|last: &String| last.contains(&text))
        {
            causes.push(text);
        }
        source = cause.source();
    }
    let outcome = match err {
        meter::Error::Locked { .. } => Outcome::Locked,
        _ => Outcome::Failed,
    };
    match settings::settings().log_format {
        settings::LogFormat::Text => {
            crate::errln!("error: {err}");
            for cause in &causes {
                crate::errln!("  caused by: {cause}");
            }
            if let Some(hint) = err.hint() {
                crate::errln!("  what to do: {hint}");
            }
        }
        settings::LogFormat::Json => settings::log(
            "error",
            &err.to_string(),
            serde_json::json!({
                "causes": causes,
                "hint": err.hint(),
                "exit_code": outcome as u8,
            }),
        ),
    }
    outcome
}

/// Prints a stage's summary and report location (and the report itself with
/// `--json`), and picks the exit code.
pub fn finish<R: StageReport>(lake: &std::path::Path, report: &R, json: bool) -> Outcome {
    settings::log_summary(report.run_id(), &report.summary());
    let outcome = if report.needs_attention() {
        Outcome::NeedsAttention
    } else {
        Outcome::Done
    };
    let path = settings::report_path(lake, report.run_id());
    settings::log(
        "info",
        &format!("  report: {path}"),
        serde_json::json!({
            "run_id": report.run_id(),
            "report": path,
            "exit_code": outcome as u8,
        }),
    );
    if json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(report).expect("the report serializes")
        );
    }
    outcome
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
    if let Err(e) = settings::init(cli.config, cli.log_format) {
        return ExitCode::from(fail(&e) as u8);
    }
    let outcome = match cli.job {
        Job::Ingest(args) => ingest::run(args),
        Job::Pricing(args) => pricing::run(args),
        Job::Rollup(args) => rollup::run(args),
        Job::Bill(args) => bill::run(args),
        Job::Pipeline(args) => pipeline::run(args),
        Job::Nightly(args) => cron::nightly(args),
        Job::Monthly(args) => cron::monthly(args),
        Job::Rerun(args) => cron::rerun(args),
        Job::Approve(args) => approve::run(args),
        Job::Reconcile(args) => reconcile::run(args),
        Job::Report(args) => report::run(args),
        Job::Query(args) => query::run(args),
        Job::Explain(args) => explain::run(args),
        Job::Retention(args) => retention::run(args),
        Job::Compact(args) => compact::run(args),
        Job::Erase(args) => erase::run(args),
        Job::Stripe(args) => stripe::run(args),
        Job::Sample(args) => match sample::run(&args) {
            Ok(_) => Outcome::Done,
            Err(e) => {
                settings::log("error", &format!("error: {e}"), serde_json::json!({}));
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    settings::log(
                        "error",
                        &format!("  caused by: {cause}"),
                        serde_json::json!({}),
                    );
                    source = cause.source();
                }
                Outcome::Failed
            }
        },
    };
    ExitCode::from(stdout_checked(outcome) as u8)
}

/// The job's outcome, unless its output could not be written (a full
/// disk): then it failed. A reader that went away (`| head -1`) is not a
/// failure (see `out`).
fn stdout_checked(outcome: Outcome) -> Outcome {
    match out::stdout_error() {
        Some(e) => {
            crate::errln!("error: cannot write to stdout: {e}");
            crate::errln!("  what to do: make room where stdout goes, then run the job again");
            outcome.max(Outcome::Failed)
        }
        None => outcome,
    }
}
