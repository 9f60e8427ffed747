//! `meter stripe push`: a day's meter events, or an approved month's
//! corrections, sent to Stripe exactly once (see `meter::cron::stripe`).

use std::path::PathBuf;

use chrono::NaiveDate;
use meter::cron::stripe::{self, Api, ApiKey, PushOptions, Retry, Target};

use crate::settings::{self, settings};
use crate::{Outcome, conclude, fail, or_fail};

#[derive(clap::Args, Debug)]
pub struct StripeArgs {
    #[command(subcommand)]
    pub command: StripeCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum StripeCommand {
    /// Send a day's meter events (`--date`) or an approved month
    /// (`--month`) to Stripe. What Stripe accepted is recorded in
    /// <lake>/_stripe/accepted.jsonl and never sent again, so a push that
    /// stopped resumes when run again. The key is read from STRIPE_API_KEY.
    Push(PushArgs),
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["date", "month"])))]
pub struct PushArgs {
    /// The day whose meter events `meter nightly` wrote (YYYY-MM-DD).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<NaiveDate>,
    /// The approved month (YYYY-MM): while its billing period is open, the
    /// differences to what Stripe has as meter events; once closed, the
    /// revision's invoice items.
    #[arg(long, value_name = "YYYY-MM", value_parser = crate::rollup::parse_month)]
    pub month: Option<NaiveDate>,
    /// The lake: its lock, the record of what Stripe accepted, run reports.
    #[arg(long, value_name = "DIR", env = "METER_LAKE")]
    pub lake: Option<PathBuf>,
    /// Where the Stripe files are: a folder, or an s3://, gs://, az:// URL
    /// [default: out].
    #[arg(long, value_name = "URL", env = "METER_OUT")]
    pub out: Option<String>,
    /// Print every request that would be made; send nothing, record nothing
    /// (no key needed).
    #[arg(long)]
    pub dry_run: bool,
    /// v1: one request per event; v2: a session and streams of up to 100
    /// events per request.
    #[arg(long, value_enum, default_value = "v1")]
    pub api: ApiArg,
    /// The Stripe API (a test server: plain http only on 127.0.0.1).
    #[arg(
        long,
        value_name = "URL",
        env = "STRIPE_BASE_URL",
        default_value = stripe::DEFAULT_BASE_URL
    )]
    pub base_url: String,
    /// Print the full run report (JSON) on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ApiArg {
    V1,
    V2,
}

pub fn run(args: StripeArgs) -> Outcome {
    match args.command {
        StripeCommand::Push(args) => push(args),
    }
}

fn push(args: PushArgs) -> Outcome {
    let target = match (args.date, args.month) {
        (Some(d), _) => Target::Day(d),
        (None, Some(m)) => Target::Month(m),
        (None, None) => unreachable!("clap requires --date or --month"),
    };
    let api_key = std::env::var("STRIPE_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
        .map(|k| ApiKey::new(k.trim()));
    if api_key.is_none() && !args.dry_run {
        return fail(&meter::Error::Usage(
            "STRIPE_API_KEY is not set: export the Stripe secret key (or use --dry-run)".into(),
        ));
    }
    let lake = or_fail!(settings().lake(args.lake));
    let ctx = settings::ctx("stripe-push");
    let opts = PushOptions {
        lake,
        out: settings().out(args.out),
        store_options: Vec::new(),
        target,
        dry_run: args.dry_run,
        api: match args.api {
            ApiArg::V1 => Api::V1,
            ApiArg::V2 => Api::V2,
        },
        base_url: args.base_url,
        api_key,
        retry: Retry::default(),
    };
    let result = stripe::push(&ctx, &opts);
    if let Ok(report) = &result
        && report.dry_run
        && !args.json
    {
        for line in report.plan_lines() {
            crate::outln!("{line}");
        }
    }
    conclude(result, &opts.lake, args.json)
}
