//! `meter explain`: the events behind a customer's invoice line.

use std::path::PathBuf;

use chrono::NaiveDate;
use meter::read::explain::{self, ExplainOptions};
use meter::read::query::{Format, QueryOptions};

use crate::query::FormatArg;
use crate::settings::settings;
use crate::{Outcome, or_fail};

/// Reads the customer's invoice in the latest revision of the month and
/// lists what is behind it. Without --line: the lines, numbered, and the
/// month's events by day and model. With --line K: every event behind line
/// K (event_id, ts, vm_id, model, tokens, cost, source_file, source_line),
/// or the days and VMs of a compute line, then a tie-out of the events'
/// totals against the line. Exit 1 when they do not match, 2 when the month,
/// customer or line does not exist. Read-only: takes no lake lock.
#[derive(clap::Args, Debug)]
#[command(long_about)]
pub struct ExplainArgs {
    /// The lake.
    #[arg(long, value_name = "DIR", env = "METER_LAKE")]
    pub lake: Option<PathBuf>,
    /// Where the invoices are (as for `meter bill --out`) [default: out].
    #[arg(long, value_name = "URL", env = "METER_OUT")]
    pub out: Option<String>,
    /// The invoice's month (YYYY-MM).
    #[arg(long, value_name = "YYYY-MM", value_parser = crate::rollup::parse_month)]
    pub month: NaiveDate,
    /// The customer id (customers.csv `customer_id`).
    #[arg(long, value_name = "ID")]
    pub customer: String,
    /// The invoice line to explain (the CSV's `line`, 1..n).
    #[arg(long, value_name = "K")]
    pub line: Option<i64>,
    /// Output format: `table` prints everything; `csv` and `json` print the
    /// events behind the line (or the summary by day and model) on stdout,
    /// and the heading and tie-out on stderr.
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    pub format: FormatArg,
}

pub fn run(args: ExplainArgs) -> Outcome {
    let lake = or_fail!(settings().lake(args.lake));
    let opts = ExplainOptions {
        query: QueryOptions {
            lake,
            out: settings().out(args.out),
            store_options: Vec::new(),
        },
        month: args.month,
        customer: args.customer,
        line: args.line,
    };
    let explanation = or_fail!(explain::run(&opts));
    match Format::from(args.format) {
        Format::Table => crate::out!("{}", explanation.text()),
        format => {
            crate::err!("{}{}", explanation.heading(), explanation.tie_out());
            crate::out!("{}", explanation.primary().render(format));
        }
    }
    if explanation.mismatch() {
        Outcome::NeedsAttention
    } else {
        Outcome::Done
    }
}
