//! `meter query`: SQL over the lake's views and the latest invoices.

use std::path::PathBuf;

use meter::read::query::{self, Format, QueryOptions};

use crate::settings::settings;
use crate::{Outcome, or_fail};

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum FormatArg {
    /// Aligned columns with a header, numbers right-aligned, NULL as `NULL`.
    #[default]
    Table,
    /// RFC 4180 with a header row (CRLF line ends), NULL as an empty field.
    Csv,
    /// A JSON array of objects: integers and floats as numbers, DECIMAL
    /// values as strings holding every digit (never through a float), NULL as null.
    Json,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Table => Format::Table,
            FormatArg::Csv => Format::Csv,
            FormatArg::Json => Format::Json,
        }
    }
}

/// Runs one SQL statement over views of every lake table (api_usage,
/// api_requests, resource_usage, activity, rejects, priced_api_usage,
/// daily_* and monthly_* aggregates, runs) and of the latest invoice
/// revision of every month (invoices, invoice_summary), in an in-memory
/// DuckDB. Read-only: takes no lake lock. `meter query "SHOW TABLES"` lists
/// the views; schemas/views.sql defines them.
#[derive(clap::Args, Debug)]
#[command(long_about)]
pub struct QueryArgs {
    /// The lake.
    #[arg(long, value_name = "DIR", env = "METER_LAKE")]
    pub lake: Option<PathBuf>,
    /// Where the invoices are (as for `meter bill --out`) [default: out].
    #[arg(long, value_name = "URL", env = "METER_OUT")]
    pub out: Option<String>,
    /// Output format. DECIMAL values are exact in every format (JSON: strings).
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    pub format: FormatArg,
    /// One SQL statement (DuckDB dialect). It may start with a `--` comment
    /// or a `-` (a SQL argument is never taken for a flag).
    #[arg(value_name = "SQL", allow_hyphen_values = true)]
    pub sql: String,
}

pub fn run(args: QueryArgs) -> Outcome {
    let lake = or_fail!(settings().lake(args.lake));
    let opts = QueryOptions {
        lake,
        out: settings().out(args.out),
        store_options: Vec::new(),
    };
    let conn = or_fail!(query::open(&opts));
    let output = or_fail!(query::run(&conn, &args.sql));
    crate::out!("{}", output.render(args.format.into()));
    Outcome::Done
}
