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

use crate::lake::tables::{ActivityRow, ApiRequestRef, ApiUsageRef, ResourceRow, Str, Table};
use crate::model::registry::Registry;
use crate::model::time::Ts;

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
    /// The table the file feeds, when its name says so (the input layout's
    /// `feeds`, in `ingest/source.rs`): its rejects and skips count there,
    /// whatever a bad line looks like.
    pub feeds: Option<Table>,
}

impl FileCtx {
    /// The table a line belongs to when nothing in it says otherwise: the
    /// one the file feeds, else a guess from the line.
    pub fn default_table(&self, line: &[u8]) -> Table {
        if let Some(table) = self.feeds {
            return table;
        }
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

/// Why a line was rejected, as a stable code: a small closed set, so that
/// rejects group by reason. The particulars (the value, the column of a JSON
/// error) go to [`Reject::detail`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The line is not UTF-8 text.
    InvalidUtf8,
    /// The line is longer than the reader's limit (cut, kept in part).
    LineTooLong,
    /// JSON that does not parse: truncated, or a syntax error.
    InvalidJson,
    /// Not a line of any format read in this folder, or its layout is wrong
    /// (CSV column count, line protocol, access-log layout).
    UnrecognizedLine,
    /// A field the row needs is absent.
    MissingField,
    /// A timestamp that cannot be read.
    BadTimestamp,
    /// A value of the wrong type or out of range (not a number, negative,
    /// too large, not a status).
    BadValue,
    /// Token counts that contradict each other (cached above prompt,
    /// reasoning above output, a sum that overflows).
    InconsistentTokens,
    /// Neither provider nor model says whose token rules apply.
    UnknownProvider,
}

impl RejectReason {
    pub const ALL: [RejectReason; 9] = [
        RejectReason::InvalidUtf8,
        RejectReason::LineTooLong,
        RejectReason::InvalidJson,
        RejectReason::UnrecognizedLine,
        RejectReason::MissingField,
        RejectReason::BadTimestamp,
        RejectReason::BadValue,
        RejectReason::InconsistentTokens,
        RejectReason::UnknownProvider,
    ];

    /// The code stored in the rejects table's `reason` column.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::LineTooLong => "line_too_long",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::UnrecognizedLine => "unrecognized_line",
            RejectReason::MissingField => "missing_field",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::BadValue => "bad_value",
            RejectReason::InconsistentTokens => "inconsistent_tokens",
            RejectReason::UnknownProvider => "unknown_provider",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a line was rejected: a reason code, the field at fault where there
/// is one, the particulars in words and, when it could be read, the event
/// time (it chooses the rejects partition).
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub reason: RejectReason,
    pub detail: String,
    pub field: Option<&'static str>,
    pub ts: Option<Ts>,
    pub format: Option<&'static str>,
}

impl Reject {
    pub fn new(
        reason: RejectReason,
        field: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Reject {
        Reject {
            reason,
            detail: detail.into(),
            field,
            ts: None,
            format: None,
        }
    }
    /// A line that cannot be read as a whole (no single field at fault).
    pub fn line(reason: RejectReason, detail: impl Into<String>) -> Reject {
        Reject::new(reason, None, detail)
    }
    /// A field that is absent.
    pub fn missing(field: &'static str) -> Reject {
        Reject::new(RejectReason::MissingField, Some(field), "missing")
    }
    /// A field whose value is wrong.
    pub fn value(field: &'static str, detail: impl Into<String>) -> Reject {
        Reject::new(RejectReason::BadValue, Some(field), detail)
    }
    /// A timestamp field that cannot be read.
    pub fn timestamp(field: &'static str, detail: impl Into<String>) -> Reject {
        Reject::new(RejectReason::BadTimestamp, Some(field), detail)
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
pub enum Parsed<'a> {
    /// Text borrowed from the line: pushed into the columns as it is.
    Usage(ApiUsageRef<'a>, IdKind),
    Request(ApiRequestRef<'a>, IdKind),
    Resource(ResourceRow, Option<NetCounter>),
    Activity(ActivityRow),
    Reject(Table, Reject),
    Skip(Table, SkipReason),
}

impl Parsed<'_> {
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
pub fn parse_line<'a>(ctx: &'a FileCtx, line: &'a [u8]) -> Parsed<'a> {
    match std::str::from_utf8(line) {
        Ok(text) => parse_text(ctx, text),
        // Not blank: a blank line is ASCII.
        Err(_) => Parsed::Reject(
            ctx.default_table(line),
            Reject::line(RejectReason::InvalidUtf8, "line is not valid UTF-8"),
        ),
    }
}

/// [`parse_line`] of a line already known to be UTF-8 (its block was).
pub fn parse_text<'a>(ctx: &'a FileCtx, text: &'a str) -> Parsed<'a> {
    let Some(first) = first_byte(text.as_bytes()) else {
        return Parsed::Skip(ctx.default_table(text.as_bytes()), SkipReason::Blank);
    };
    let text = text.trim_end_matches('\r');
    let parsed = match ctx.kind {
        SourceKind::Cliproxy => match first {
            b'{' => usage::parse(ctx, text),
            b'[' => access::parse_main_log(ctx, text),
            _ => access::parse_clf(ctx, text),
        },
        SourceKind::Resources => resources::parse(ctx, text),
        SourceKind::Commands => commands::parse(ctx, text),
    };
    // A line that made no row counts for the table its file feeds (a
    // garbage line in usage.jsonl is an api_usage reject, not an
    // api_requests one because it does not start with `{`).
    match (parsed, ctx.feeds) {
        (Parsed::Reject(_, r), Some(table)) => Parsed::Reject(table, r),
        (Parsed::Skip(_, r), Some(table)) => Parsed::Skip(table, r),
        (parsed, _) => parsed,
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
            feeds: None,
        }
    }

    pub fn ts(s: &str) -> Ts {
        Ts(chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line that makes no row counts for the table its file feeds,
    /// whatever it looks like; a file whose name says nothing keeps the
    /// guess from the line.
    #[test]
    fn rejects_count_for_the_table_their_file_feeds() {
        let mut ctx = test_util::ctx(SourceKind::Cliproxy);
        let garbage = b"garbage that is no format at all";
        let Parsed::Reject(guessed, r) = parse_line(&ctx, garbage) else {
            panic!("a reject")
        };
        assert_eq!(guessed, Table::ApiRequests);
        assert_eq!(r.reason, RejectReason::UnrecognizedLine);
        ctx.feeds = Some(Table::ApiUsage);
        assert!(matches!(
            parse_line(&ctx, garbage),
            Parsed::Reject(Table::ApiUsage, _)
        ));
        assert_eq!(
            parse_line(&ctx, b"  "),
            Parsed::Skip(Table::ApiUsage, SkipReason::Blank)
        );
        assert_eq!(ctx.default_table(b"[x"), Table::ApiUsage);
    }

    #[test]
    fn reason_codes_are_distinct_snake_case() {
        let codes: std::collections::BTreeSet<&str> =
            RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(codes.len(), RejectReason::ALL.len());
        for r in RejectReason::ALL {
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::Value::from(r.as_str())
            );
        }
    }
}
