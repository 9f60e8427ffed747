//! `meter sample`: writes a deterministic tree of raw input logs and prints what ingest
//! must make of it.

use std::path::PathBuf;

use chrono::NaiveDate;
use meter::sample::{self, SampleError, SampleOptions, SampleTotals, UsageFormat};

/// Write sample raw input (customers, users, CLIProxyAPI logs, resource samples, command
/// logs) and print the counts ingest must produce from it.
#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    /// Directory to write the tree into; created if absent, refused if not empty.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Number of customers; each gets 1 or 2 VMs, and one extra VM belongs to nobody.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub customers: usize,

    /// Number of UTC days to cover, starting at --start.
    #[arg(long, value_name = "D", default_value_t = 30)]
    pub days: u32,

    /// Model calls per VM per day (commands are about a tenth of that).
    #[arg(long, value_name = "E", default_value_t = 200)]
    pub events_per_day: u32,

    /// Seed for every random choice: the same seed writes a byte-identical tree.
    #[arg(long, value_name = "S", default_value_t = 42)]
    pub seed: u64,

    /// First day of the period (UTC), as YYYY-MM-DD.
    #[arg(long, value_name = "DATE", default_value = "2026-10-01")]
    pub start: NaiveDate,

    /// Write only well-formed input: UTC `Z` timestamps, no gzip, no duplicates, no
    /// malformed lines (header and non-access log lines remain).
    #[arg(long)]
    pub clean: bool,

    /// API usage format of the VMs: `mixed` cycles 1b, 1a and 1a-then-1b per VM; `lines`
    /// writes only 1a JSON usage lines (`usage-*.log`), `records` only 1b records.
    #[arg(long, value_enum, default_value_t = UsageFormatArg::Mixed)]
    pub usage_format: UsageFormatArg,

    /// Seconds between two resource samples of a VM (60 to 3600, dividing a day). Compute
    /// hours are the same for any interval; a longer one writes a much smaller tree
    /// (resource samples are most of a one-day tree of many customers).
    #[arg(long, value_name = "SECS", default_value_t = sample::DEFAULT_RESOURCE_INTERVAL_S)]
    pub resource_interval: u32,

    /// Also give every Nth customer from the fifth on a contract (a commitment paid from
    /// prepaid credit, a commitment changing into tiers, 10% off, in turn); 0: only the
    /// sample's one contract of each kind.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub contract_every: usize,

    /// Print the totals as one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum UsageFormatArg {
    Mixed,
    Lines,
    Records,
}

impl From<UsageFormatArg> for UsageFormat {
    fn from(a: UsageFormatArg) -> UsageFormat {
        match a {
            UsageFormatArg::Mixed => UsageFormat::Mixed,
            UsageFormatArg::Lines => UsageFormat::Lines,
            UsageFormatArg::Records => UsageFormat::Records,
        }
    }
}

/// Generates the tree and prints a summary of its expected counts to stdout.
pub fn run(args: &SampleArgs) -> Result<SampleTotals, SampleError> {
    let totals = sample::generate(&SampleOptions {
        out: args.out.clone(),
        customers: args.customers,
        days: args.days,
        events_per_day: args.events_per_day,
        seed: args.seed,
        clean: args.clean,
        start: args.start,
        usage_format: args.usage_format.into(),
        resource_interval_s: args.resource_interval,
        contract_every: args.contract_every,
    })?;
    if args.json {
        crate::outln!(
            "{}",
            serde_json::to_string(&totals).expect("the totals serialize")
        );
    } else {
        crate::out!("{}", render(&args.out, &totals));
    }
    Ok(totals)
}

fn render(out: &std::path::Path, totals: &SampleTotals) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "sample written to {}", out.display());
    let _ = writeln!(
        s,
        "files {}  bytes {} ({:.1} MB)  lines {}",
        totals.files,
        totals.bytes,
        totals.bytes as f64 / 1e6,
        totals.lines
    );
    let _ = writeln!(
        s,
        "{:<16}{:>12}{:>12}{:>10}{:>10}",
        "table", "rows", "duplicates", "rejects", "skipped"
    );
    for (name, e) in &totals.tables {
        let _ = writeln!(
            s,
            "{:<16}{:>12}{:>12}{:>10}{:>10}",
            name, e.rows, e.duplicates, e.rejects, e.skipped
        );
    }
    s
}
