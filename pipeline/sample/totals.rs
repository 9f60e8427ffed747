//! The expected ingest counts: every line written is booked in one bucket of one table,
//! and the files, bytes and lines written are tallied alongside.

use std::fs;
use std::path::Path;

use super::{Expected, SampleError, SampleTotals, TokenSums, io_err};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Table {
    ApiUsage = 0,
    ApiRequests = 1,
    ResourceUsage = 2,
    Activity = 3,
}

const TABLE_NAMES: [&str; 4] = ["api_usage", "api_requests", "resource_usage", "activity"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Bucket {
    Row,
    Duplicate,
    Reject,
    Skipped,
}

#[derive(Clone, Default, Debug)]
pub(super) struct Counts([Expected; 4]);

impl Counts {
    pub(super) fn add(&mut self, table: Table, bucket: Bucket) {
        let e = &mut self.0[table as usize];
        match bucket {
            Bucket::Row => e.rows += 1,
            Bucket::Duplicate => e.duplicates += 1,
            Bucket::Reject => e.rejects += 1,
            Bucket::Skipped => e.skipped += 1,
        }
    }

    pub(super) fn merge(&mut self, other: &Counts) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            a.rows += b.rows;
            a.duplicates += b.duplicates;
            a.rejects += b.rejects;
            a.skipped += b.skipped;
        }
    }

    /// Counts of a second copy of a file: its rows are now duplicates.
    pub(super) fn reshipped(&self) -> Counts {
        let mut c = self.clone();
        for e in &mut c.0 {
            e.duplicates += e.rows;
            e.rows = 0;
        }
        c
    }
}

#[derive(Default, Debug)]
pub(super) struct Tally {
    pub(super) files: u64,
    pub(super) bytes: u64,
    pub(super) lines: u64,
    pub(super) counts: Counts,
    pub(super) lake_tokens: TokenSums,
    pub(super) tokens_1a: TokenSums,
}

impl Tally {
    pub(super) fn merge(&mut self, other: &Tally) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.lines += other.lines;
        self.counts.merge(&other.counts);
        self.lake_tokens.add(&other.lake_tokens);
        self.tokens_1a.add(&other.tokens_1a);
    }

    pub(super) fn into_totals(self) -> SampleTotals {
        let tables = TABLE_NAMES
            .iter()
            .zip(self.counts.0)
            .map(|(name, e)| ((*name).to_string(), e))
            .collect();
        SampleTotals {
            files: self.files,
            bytes: self.bytes,
            lines: self.lines,
            tables,
            lake_tokens: self.lake_tokens,
            tokens_1a: self.tokens_1a,
        }
    }
}

pub(super) fn write_table_file(
    path: &Path,
    text: &str,
    tally: &mut Tally,
) -> Result<(), SampleError> {
    fs::write(path, text).map_err(io_err(path))?;
    tally.files += 1;
    tally.bytes += text.len() as u64;
    tally.lines += text.bytes().filter(|&b| b == b'\n').count() as u64;
    Ok(())
}
