//! `meter bill`: invoices and Stripe meter events for a month, as a new
//! revision on object storage.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use meter::bill::{self, BillOptions};
use meter::ctx::{Ctx, SystemClock};

use crate::{Outcome, conclude};

#[derive(clap::Args, Debug)]
pub struct BillArgs {
    /// The lake, rolled up for the month (`meter rollup --month`).
    #[arg(long, value_name = "DIR")]
    pub lake: PathBuf,
    /// The month to bill (YYYY-MM).
    #[arg(long, value_name = "YYYY-MM", value_parser = crate::rollup::parse_month)]
    pub month: NaiveDate,
    /// The customer registry [default: the copy the last ingest kept in the
    /// lake, <lake>/_registry/customers.csv].
    #[arg(long, value_name = "FILE")]
    pub customers: Option<PathBuf>,
    /// Price list: plans, FX rates and Stripe meters.
    #[arg(long, value_name = "FILE", default_value = "pricing.toml")]
    pub pricing: PathBuf,
    /// Where invoices and Stripe files go: a folder, or s3://bucket/prefix,
    /// gs://bucket/prefix, az://container/prefix (credentials from the
    /// standard environment variables; AWS_ENDPOINT_URL for S3-compatible
    /// stores).
    #[arg(long, value_name = "URL", default_value = "out")]
    pub out: String,
    /// Print the full run report (JSON) on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: BillArgs) -> Outcome {
    let ctx = Ctx::new(Arc::new(SystemClock), "bill");
    let opts = BillOptions {
        lake: args.lake,
        month: args.month,
        customers: args.customers,
        pricing: args.pricing,
        out: args.out,
        store_options: Vec::new(),
    };
    conclude(bill::run(&ctx, &opts), &opts.lake, args.json)
}
