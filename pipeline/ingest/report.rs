//! The ingest run report: what every input line became, per table and per
//! file. The four buckets add up to the lines the reader counted.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ingest::parse::RejectReason;
use crate::ingest::source::Ignored;
use crate::lake::tables::Table;

/// The four buckets every line ends in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub rows: u64,
    pub duplicates: u64,
    pub rejects: u64,
    pub skipped: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.rows + self.duplicates + self.rejects + self.skipped
    }

    pub fn add(&mut self, other: &Counts) {
        self.rows += other.rows;
        self.duplicates += other.duplicates;
        self.rejects += other.rejects;
        self.skipped += other.skipped;
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FileReport {
    pub path: String,
    /// Lines counted by the reader, independently of the parsers.
    pub lines_read: u64,
    #[serde(flatten)]
    pub counts: Counts,
    pub tables: BTreeMap<Table, Counts>,
    pub skipped_reasons: BTreeMap<String, u64>,
    /// Rejected lines by field (`-` where no single field is at fault).
    pub rejected_fields: BTreeMap<String, u64>,
    /// Rejected lines by reason code (the rejects table's `reason`).
    pub rejected_reasons: BTreeMap<RejectReason, u64>,
    /// Set when the file could not be read, or not to the end.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub table: Table,
    pub date: String,
    pub rows_added: u64,
    pub files_written: u64,
    pub files_removed: u64,
}

impl PartitionReport {
    pub fn new(table: Table, date: chrono::NaiveDate) -> PartitionReport {
        PartitionReport {
            table,
            date: date.to_string(),
            rows_added: 0,
            files_written: 0,
            files_removed: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub job: &'static str,
    pub run_id: String,
    pub started_at: String,
    pub finished_at: String,
    pub input: String,
    pub lake: String,
    pub since: Option<String>,
    pub until: Option<String>,
    pub rebuild: bool,
    pub max_reject_rate: f64,
    /// `I/N` for one shard of a split run (`--shard`); absent for a whole run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub lines_read: u64,
    pub totals: Counts,
    pub tables: BTreeMap<Table, Counts>,
    /// Rejected lines by reason code over all files.
    pub rejected_reasons: BTreeMap<RejectReason, u64>,
    pub files: Vec<FileReport>,
    pub unreadable_files: Vec<String>,
    pub ignored_paths: Vec<Ignored>,
    /// Rows stored with a null customer, per VM no customer lists.
    pub unattributed_vms: BTreeMap<String, BTreeMap<Table, u64>>,
    pub partitions: Vec<PartitionReport>,
    /// Why the run needs attention (exit code 1); empty when all is well.
    pub attention: Vec<String>,
    /// Worth knowing, not a problem of this run.
    pub notices: Vec<String>,
}

crate::model::report::stage_report!(IngestReport);

impl IngestReport {
    pub fn needs_attention(&self) -> bool {
        !self.attention.is_empty()
    }

    /// Rejects over lines read.
    pub fn reject_rate(&self) -> f64 {
        if self.lines_read == 0 {
            0.0
        } else {
            self.totals.rejects as f64 / self.lines_read as f64
        }
    }

    /// The summary printed on stderr.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "ingest {}: {} files, {} lines read\n",
            self.run_id,
            self.files.len(),
            self.lines_read
        );
        s.push_str(&format!(
            "  {:<15} {:>10} {:>10} {:>10} {:>10}\n",
            "table", "rows", "duplicates", "rejects", "skipped"
        ));
        for (table, c) in &self.tables {
            s.push_str(&format!(
                "  {:<15} {:>10} {:>10} {:>10} {:>10}\n",
                table.name(),
                c.rows,
                c.duplicates,
                c.rejects,
                c.skipped
            ));
        }
        let t = &self.totals;
        s.push_str(&format!(
            "  {:<15} {:>10} {:>10} {:>10} {:>10}\n",
            "total", t.rows, t.duplicates, t.rejects, t.skipped
        ));
        if !self.rejected_reasons.is_empty() {
            let mut by_count: Vec<(&RejectReason, &u64)> = self.rejected_reasons.iter().collect();
            by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let reasons: Vec<String> = by_count.iter().map(|(r, n)| format!("{r} {n}")).collect();
            s.push_str(&format!("  rejects by reason: {}\n", reasons.join(", ")));
        }
        for n in &self.notices {
            s.push_str(&format!("  notice: {n}\n"));
        }
        for a in &self.attention {
            s.push_str(&format!("  attention: {a}\n"));
        }
        s
    }
}
