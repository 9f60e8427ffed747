//! Line parsers. Each takes one line of one file and returns exactly one
//! [`Parsed`]: a row, a reject or a skip. Parsers never panic and never do IO.
//!
//! Detection is per line, so a file may mix formats:
//! - `cliproxy/`: `{` starts a JSON usage line or CLIProxyAPI usage record
//!   ([`usage`]); `[` a CLIProxyAPI main-log line and anything else a
//!   Common/Combined Log Format line ([`access`]).
//! - `resources/`: `{` JSON sample, a line with `=` Telegraf line protocol,
//!   anything else CSV ([`resources`]).
//! - `commands/`: JSON command records ([`commands`]).

pub mod access;
pub mod commands;
pub mod intern;
pub mod json;
pub mod resources;
pub mod time;
pub mod usage;

use std::sync::Arc;

use chrono_tz::Tz;

use crate::registry::Registry;
use crate::tables::{ActivityRow, ApiRequestRow, ApiUsageRow, ResourceRow, Str, Table, Ts};

/// Where a file sits in the input layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Cliproxy,
    Resources,
    Commands,
}

impl SourceKind {
    pub fn dir(self) -> &'static str {
        match self {
            SourceKind::Cliproxy => "cliproxy",
            SourceKind::Resources => "resources",
            SourceKind::Commands => "commands",
        }
    }
}

/// What every parser knows about the file a line comes from.
#[derive(Debug, Clone)]
pub struct FileCtx {
    /// Path relative to the input directory, `/`-separated: `source_file`.
    pub rel: Str,
    pub vm_id: Str,
    pub customer_id: Option<Str>,
    /// Zone for timestamps without an offset: the customer's, else UTC.
    pub tz: Tz,
    pub kind: SourceKind,
    pub registry: Arc<Registry>,
    /// Column order of a resource CSV file, from its header (or the default).
    pub csv_columns: Option<Arc<resources::CsvColumns>>,
}

impl FileCtx {
    /// The table a line belongs to when nothing in it says otherwise.
    pub fn default_table(&self, line: &[u8]) -> Table {
        match self.kind {
            SourceKind::Cliproxy if first_byte(line) == Some(b'{') => Table::ApiUsage,
            SourceKind::Cliproxy => Table::ApiRequests,
            SourceKind::Resources => Table::ResourceUsage,
            SourceKind::Commands => Table::Activity,
        }
    }
}

/// How a row's event id is completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// From the VM, the request id and the timestamp: already final.
    Request,
    /// From the VM, timestamp and line content: the number of identical
    /// earlier lines in the file is still to be mixed in.
    Content,
}

/// A cumulative network counter sample, turned into a delta per file.
#[derive(Debug, Clone, PartialEq)]
pub struct NetCounter {
    pub interface: Str,
    pub bytes_recv: Option<u64>,
    pub bytes_sent: Option<u64>,
}

/// Why a line was rejected: a reason naming the field and, when it could be
/// read, the event time (it chooses the rejects partition).
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub reason: String,
    pub field: Option<&'static str>,
    pub ts: Option<Ts>,
    pub format: Option<&'static str>,
}

impl Reject {
    pub fn new(field: Option<&'static str>, reason: impl Into<String>) -> Reject {
        Reject {
            reason: reason.into(),
            field,
            ts: None,
            format: None,
        }
    }
    pub fn field(field: &'static str, reason: impl Into<String>) -> Reject {
        Reject::new(Some(field), reason)
    }
    pub fn at(mut self, ts: Option<Ts>) -> Reject {
        self.ts = self.ts.or(ts);
        self
    }
    pub fn format(mut self, format: &'static str) -> Reject {
        self.format = Some(format);
        self
    }
}

/// Why a line was read but not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    Blank,
    Header,
    NonAccessLogLine,
    UnusedMeasurement,
    PerCoreCpu,
    OutsideRange,
    UnterminatedLastLine,
    CutOffByReadError,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Blank => "blank line",
            SkipReason::Header => "header row",
            SkipReason::NonAccessLogLine => "main-log line that is not an access line",
            SkipReason::UnusedMeasurement => "Telegraf measurement meter does not use",
            SkipReason::PerCoreCpu => "per-core cpu sample (cpu-total is used)",
            SkipReason::OutsideRange => "outside --since/--until",
            SkipReason::UnterminatedLastLine => "unterminated last line (file still being written)",
            SkipReason::CutOffByReadError => "line cut off by a read error",
        }
    }
}

/// The one outcome of one line.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Usage(ApiUsageRow, IdKind),
    Request(ApiRequestRow, IdKind),
    Resource(ResourceRow, Option<NetCounter>),
    Activity(ActivityRow),
    Reject(Table, Reject),
    Skip(Table, SkipReason),
}

impl Parsed {
    pub fn table(&self) -> Table {
        match self {
            Parsed::Usage(..) => Table::ApiUsage,
            Parsed::Request(..) => Table::ApiRequests,
            Parsed::Resource(..) => Table::ResourceUsage,
            Parsed::Activity(..) => Table::Activity,
            Parsed::Reject(t, _) | Parsed::Skip(t, _) => *t,
        }
    }

    /// The event time of a row or a dated reject.
    pub fn ts(&self) -> Option<Ts> {
        match self {
            Parsed::Usage(r, _) => Some(r.ts),
            Parsed::Request(r, _) => Some(r.ts),
            Parsed::Resource(r, _) => Some(r.ts),
            Parsed::Activity(r) => Some(r.ts),
            Parsed::Reject(_, r) => r.ts,
            Parsed::Skip(..) => None,
        }
    }
}

pub(crate) fn first_byte(line: &[u8]) -> Option<u8> {
    line.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// Parses one line (without its `\n`) of a file described by `ctx`.
pub fn parse_line(ctx: &FileCtx, line: &[u8]) -> Parsed {
    let Some(first) = first_byte(line) else {
        return Parsed::Skip(ctx.default_table(line), SkipReason::Blank);
    };
    let Ok(text) = std::str::from_utf8(line) else {
        let table = ctx.default_table(line);
        return Parsed::Reject(table, Reject::new(None, "line is not valid UTF-8"));
    };
    let text = text.trim_end_matches('\r');
    match ctx.kind {
        SourceKind::Cliproxy => match first {
            b'{' => usage::parse(ctx, text),
            b'[' => access::parse_main_log(ctx, text),
            _ => access::parse_clf(ctx, text),
        },
        SourceKind::Resources => resources::parse(ctx, text),
        SourceKind::Commands => commands::parse(ctx, text),
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    pub fn ctx(kind: SourceKind) -> FileCtx {
        FileCtx {
            rel: "vm-1/x/file.log".into(),
            vm_id: "vm-1".into(),
            customer_id: Some("c1".into()),
            tz: Tz::UTC,
            kind,
            registry: Arc::new(Registry::default()),
            csv_columns: None,
        }
    }

    pub fn ts(s: &str) -> Ts {
        Ts(chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros())
    }
}
