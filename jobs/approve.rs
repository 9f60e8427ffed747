//! `meter approve`: finance marks a revision final; `meter stripe push
//! --month` sends only the approved revision.

use std::path::PathBuf;

use chrono::NaiveDate;
use meter::bill::approve::{self, ApproveOptions};

use crate::settings::{self, settings};
use crate::{Outcome, conclude, or_fail};

#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    /// The month (YYYY-MM).
    #[arg(long, value_name = "YYYY-MM", value_parser = crate::rollup::parse_month)]
    pub month: NaiveDate,
    /// The revision to approve [default: the current one, latest.json].
    #[arg(long, value_name = "N")]
    pub revision: Option<u32>,
    /// Who approves, recorded in approved.json [default: $USER; without
    /// either, approve refuses].
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    /// Lake directory (for the run report).
    #[arg(long, value_name = "DIR", env = "METER_LAKE")]
    pub lake: Option<PathBuf>,
    /// Where the invoices are [default: out].
    #[arg(long, value_name = "URL", env = "METER_OUT")]
    pub out: Option<String>,
    /// Print the full run report (JSON) on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ApproveArgs) -> Outcome {
    let lake = or_fail!(settings().lake(args.lake));
    let by = or_fail!(approver(args.by, std::env::var("USER").ok()));
    let ctx = settings::ctx("approve");
    let opts = ApproveOptions {
        lake,
        out: settings().out(args.out),
        store_options: Vec::new(),
        month: args.month.format("%Y-%m").to_string(),
        revision: args.revision,
        by,
    };
    conclude(approve::approve(&ctx, &opts), &opts.lake, args.json)
}

/// Who approves: `--by`, else `$USER`; an approval never records nobody.
fn approver(by: Option<String>, user: Option<String>) -> meter::Result<String> {
    match by {
        Some(b) if b.trim().is_empty() => Err(meter::Error::Usage(
            "--by is empty: name who approves (recorded in approved.json)".into(),
        )),
        Some(b) => Ok(b.trim().to_string()),
        None => user
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                meter::Error::Usage(
                    "nobody to record as the approver: $USER is not set; pass --by NAME (who approves, recorded in approved.json)".into(),
                )
            }),
    }
}
