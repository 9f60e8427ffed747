//! `meter report`: a month at a glance for finance, as text on stdout and
//! one self-contained HTML page (and its figures as JSON) in the out store.

use chrono::NaiveDate;
use meter::read::overview::{self, ReportOptions};
use std::path::PathBuf;

use crate::settings::{self, settings};
use crate::{Outcome, fail, finish, or_fail};

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The lake.
    #[arg(long, value_name = "DIR", env = "METER_LAKE")]
    pub lake: Option<PathBuf>,
    /// The month (YYYY-MM).
    #[arg(long, value_name = "YYYY-MM", value_parser = crate::rollup::parse_month)]
    pub month: NaiveDate,
    /// The day the report is made on: the days before it are complete
    /// (a month in progress is projected from them, compared with billing's
    /// preview of the same days, and written as its own page,
    /// reports/YYYY-MM/report-asof-YYYY-MM-DD.html) [default: today, UTC,
    /// or the day of METER_FIXED_TIME].
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<NaiveDate>,
    /// The customer registry [default: the copy the last ingest kept in the
    /// lake, <lake>/_registry/customers.csv].
    #[arg(long, value_name = "FILE", env = "METER_CUSTOMERS")]
    pub customers: Option<PathBuf>,
    /// Price list: FX rates and plans [default: pricing.toml].
    #[arg(long, value_name = "FILE", env = "METER_PRICING")]
    pub pricing: Option<PathBuf>,
    /// Where the invoices are and the page goes (reports/YYYY-MM/report.html,
    /// or report-asof-YYYY-MM-DD.html for a month so far): a folder, or
    /// s3://, gs://, az:// [default: out].
    #[arg(long, value_name = "URL", env = "METER_OUT")]
    pub out: Option<String>,
    /// Print the run report with every figure (JSON) on stdout instead of
    /// the text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ReportArgs) -> Outcome {
    let lake = or_fail!(settings().lake(args.lake));
    let ctx = settings::ctx("report");
    let opts = ReportOptions {
        lake,
        month: args.month,
        as_of: args.as_of,
        customers: settings().customers(args.customers),
        pricing: settings().pricing(args.pricing),
        out: settings().out(args.out),
        store_options: Vec::new(),
    };
    match overview::run(&ctx, &opts) {
        Ok(report) => {
            if !args.json {
                crate::out!("{}", overview::text::render(&report.overview));
            }
            finish(&opts.lake, &report, args.json)
        }
        Err(e) => fail(&e),
    }
}
