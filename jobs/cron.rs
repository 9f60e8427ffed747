//! `meter nightly`, `meter monthly` and `meter rerun`: the scheduled jobs
//! (see `meter::cron`). Paths come from flags, METER_* variables or
//! meter.toml.

use std::path::PathBuf;

use chrono::{Datelike, Days, NaiveDate, Utc};
use meter::cron::{self, NightlyOptions, Paths};

use crate::settings::{self, settings};
use crate::{Outcome, conclude, or_fail};

/// The paths every scheduled job takes.
#[derive(clap::Args, Debug)]
pub struct PathArgs {
    /// Raw input directory (customers.csv and one folder per VM), or the
    /// same tree at an s3://, gs:// or az:// URL.
    #[arg(long, value_name = "DIR|URL", env = "METER_INPUT")]
    pub input: Option<PathBuf>,
    /// Lake directory.
    #[arg(long, value_name = "DIR", env = "METER_LAKE")]
    pub lake: Option<PathBuf>,
    /// Where invoices and Stripe files go: a folder or s3://, gs://, az://
    /// [default: out].
    #[arg(long, value_name = "URL", env = "METER_OUT")]
    pub out: Option<String>,
    /// customers.csv for billing [default: the copy ingest keeps in the lake].
    #[arg(long, value_name = "FILE", env = "METER_CUSTOMERS")]
    pub customers: Option<PathBuf>,
    /// Price list [default: pricing.toml].
    #[arg(long, value_name = "FILE", env = "METER_PRICING")]
    pub pricing: Option<PathBuf>,
    /// Print the full run report (JSON) on stdout.
    #[arg(long)]
    pub json: bool,
}

impl PathArgs {
    pub fn resolve(self, needs_input: bool) -> meter::Result<Paths> {
        let s = settings();
        let input = if needs_input {
            s.input(self.input)?
        } else {
            self.input
                .or_else(|| s.config.input.clone())
                .unwrap_or_default()
        };
        Ok(Paths {
            input,
            lake: s.lake(self.lake)?,
            out: s.out(self.out),
            customers: s.customers(self.customers),
            pricing: s.pricing(self.pricing),
            store_options: Vec::new(),
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct NightlyArgs {
    /// The day to meter (YYYY-MM-DD) [default: yesterday, UTC].
    #[arg(long, value_name = "DATE")]
    pub date: Option<NaiveDate>,
    /// Share of rejected lines (0 to 1) above which the run exits 1.
    #[arg(long, value_name = "R", default_value_t = 0.01)]
    pub max_reject_rate: f64,
    #[command(flatten)]
    pub paths: PathArgs,
}

#[derive(clap::Args, Debug)]
pub struct MonthlyArgs {
    /// The month to bill (YYYY-MM) [default: the previous month, UTC].
    #[arg(long, value_name = "YYYY-MM", value_parser = crate::rollup::parse_month)]
    pub month: Option<NaiveDate>,
    #[command(flatten)]
    pub paths: PathArgs,
}

#[derive(clap::Args, Debug)]
pub struct RerunArgs {
    /// The month to rebuild and bill again (YYYY-MM).
    #[arg(long, value_name = "YYYY-MM", value_parser = crate::rollup::parse_month)]
    pub month: NaiveDate,
    #[command(flatten)]
    pub paths: PathArgs,
}

pub fn nightly(args: NightlyArgs) -> Outcome {
    let json = args.paths.json;
    let paths = or_fail!(args.paths.resolve(true));
    let ctx = settings::ctx("nightly");
    let today = ctx.clock.now().date_naive();
    let opts = NightlyOptions {
        date: args.date.unwrap_or(today - Days::new(1)),
        paths,
        max_reject_rate: args.max_reject_rate,
    };
    conclude(cron::nightly(&ctx, &opts), &opts.paths.lake, json)
}

pub fn monthly(args: MonthlyArgs) -> Outcome {
    let json = args.paths.json;
    let paths = or_fail!(args.paths.resolve(false));
    let ctx = settings::ctx("monthly");
    let month = args
        .month
        .unwrap_or_else(|| previous_month(ctx.clock.now()));
    conclude(cron::monthly(&ctx, &paths, month), &paths.lake, json)
}

pub fn rerun(args: RerunArgs) -> Outcome {
    let json = args.paths.json;
    let paths = or_fail!(args.paths.resolve(true));
    let ctx = settings::ctx("rerun");
    conclude(cron::rerun(&ctx, &paths, args.month), &paths.lake, json)
}

fn previous_month(now: chrono::DateTime<Utc>) -> NaiveDate {
    let first = now.date_naive().with_day(1).expect("day 1 exists");
    first
        .checked_sub_months(chrono::Months::new(1))
        .expect("in range")
}
