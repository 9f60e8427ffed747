//! `meter bill`: invoices and Stripe meter events for a month, as a new
//! revision on object storage.

use chrono::NaiveDate;
use meter::bill::{self, BillOptions};
use std::path::PathBuf;

use crate::settings::{self, settings};
use crate::{Outcome, conclude, or_fail};

#[derive(clap::Args, Debug)]
pub struct BillArgs {
    /// The lake, rolled up for the month (`meter rollup --month`).
    #[arg(long, value_name = "DIR", env = "METER_LAKE")]
    pub lake: Option<PathBuf>,
    /// The month to bill (YYYY-MM).
    #[arg(long, value_name = "YYYY-MM", value_parser = crate::rollup::parse_month)]
    pub month: NaiveDate,
    /// The customer registry [default: the copy the last ingest kept in the
    /// lake, <lake>/_registry/customers.csv].
    #[arg(long, value_name = "FILE", env = "METER_CUSTOMERS")]
    pub customers: Option<PathBuf>,
    /// Contracts: terms, discounts and prepaid credit (schemas/contracts.md)
    /// [default: contracts.toml beside --customers, or the lake's copy
    /// beside its registry copy; none: no contracts].
    #[arg(long, value_name = "FILE", env = "METER_CONTRACTS")]
    pub contracts: Option<PathBuf>,
    /// Price list: plans, FX rates and Stripe meters [default: pricing.toml].
    #[arg(long, value_name = "FILE", env = "METER_PRICING")]
    pub pricing: Option<PathBuf>,
    /// Where invoices and Stripe files go: a folder, or s3://bucket/prefix,
    /// gs://bucket/prefix, az://container/prefix (credentials from the
    /// standard environment variables; AWS_ENDPOINT_URL for S3-compatible
    /// stores) [default: out].
    #[arg(long, value_name = "URL", env = "METER_OUT")]
    pub out: Option<String>,
    /// Print the full run report (JSON) on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: BillArgs) -> Outcome {
    let lake = or_fail!(settings().lake(args.lake));
    let ctx = settings::ctx("bill");
    let opts = BillOptions {
        lake,
        month: args.month,
        customers: settings().customers(args.customers),
        contracts: args.contracts,
        pricing: settings().pricing(args.pricing),
        out: settings().out(args.out),
        store_options: Vec::new(),
    };
    conclude(bill::run(&ctx, &opts), &opts.lake, args.json)
}
