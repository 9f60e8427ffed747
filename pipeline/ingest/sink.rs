//! The single writer of an ingest run: drops events already stored (in the
//! lake or earlier in this run), buffers new rows per partition and writes
//! them as Parquet files that become visible at commit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use chrono::NaiveDate;

use super::report::PartitionReport;
use crate::error::Result;
use crate::ids::EventId;
use crate::lake::{Commit, Lake};
use crate::tables::{
    ActivityRow, ApiRequestRow, ApiUsageRow, RejectRow, ResourceRow, Table, TableRow,
};

/// Rows per Parquet file a partition buffer is flushed at.
const FLUSH_ROWS: usize = 128 * 1024;
/// Rows buffered across all partitions before the largest are flushed.
const BUFFER_BUDGET: usize = 1 << 20;

/// One block's rows, in file order, ready to store.
#[derive(Default)]
pub struct Rows {
    pub file: usize,
    pub usage: Vec<ApiUsageRow>,
    pub requests: Vec<ApiRequestRow>,
    pub resources: Vec<ResourceRow>,
    pub activity: Vec<ActivityRow>,
    pub rejects: Vec<RejectRow>,
}

struct Partition<R> {
    seen: HashSet<EventId>,
    buffer: Vec<R>,
    report: PartitionReport,
}

struct Parts<R> {
    map: HashMap<NaiveDate, Partition<R>>,
}

impl<R> Default for Parts<R> {
    fn default() -> Self {
        Parts {
            map: HashMap::new(),
        }
    }
}

/// Per file and table: rows stored and duplicates dropped.
pub type StoreCounts = HashMap<(usize, Table), (u64, u64)>;

/// What the writer did, once committed.
pub struct Stored {
    pub counts: StoreCounts,
    /// Rows stored with a null customer, per VM and table.
    pub unattributed: BTreeMap<String, BTreeMap<Table, u64>>,
    pub partitions: Vec<PartitionReport>,
}

pub struct Sink<'a> {
    lake: &'a Lake,
    run_id: String,
    /// Dates being rebuilt: start empty instead of from the stored ids.
    rebuild: Option<(NaiveDate, NaiveDate)>,
    usage: Parts<ApiUsageRow>,
    requests: Parts<ApiRequestRow>,
    resources: Parts<ResourceRow>,
    activity: Parts<ActivityRow>,
    rejects: Parts<RejectRow>,
    buffered: usize,
    seq: u32,
    commit: Commit,
    pub counts: StoreCounts,
    pub unattributed: BTreeMap<String, BTreeMap<Table, u64>>,
}

impl<'a> Sink<'a> {
    pub fn new(lake: &'a Lake, run_id: &str, rebuild: Option<(NaiveDate, NaiveDate)>) -> Sink<'a> {
        Sink {
            lake,
            run_id: run_id.to_string(),
            rebuild,
            usage: Parts::default(),
            requests: Parts::default(),
            resources: Parts::default(),
            activity: Parts::default(),
            rejects: Parts::default(),
            buffered: 0,
            seq: 0,
            commit: Commit::default(),
            counts: HashMap::new(),
            unattributed: BTreeMap::new(),
        }
    }

    pub fn push(&mut self, rows: Rows) -> Result<()> {
        let file = rows.file;
        self.store(file, rows.usage, |s| &mut s.usage)?;
        self.store(file, rows.requests, |s| &mut s.requests)?;
        self.store(file, rows.resources, |s| &mut s.resources)?;
        self.store(file, rows.activity, |s| &mut s.activity)?;
        self.store(file, rows.rejects, |s| &mut s.rejects)?;
        if self.buffered > BUFFER_BUDGET {
            self.flush_largest()?;
        }
        Ok(())
    }

    fn store<R: TableRow>(
        &mut self,
        file: usize,
        rows: Vec<R>,
        parts: fn(&mut Self) -> &mut Parts<R>,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let table = R::TABLE;
        let (mut stored, mut dups) = (0u64, 0u64);
        for row in rows {
            let date = row
                .ts()
                .map(|t| t.date())
                .expect("rows reach the sink with a partition date");
            if !parts(self).map.contains_key(&date) {
                let seen = match self.rebuild {
                    Some((from, to)) if date >= from && date <= to => HashSet::new(),
                    _ => self.lake.stored_ids(table, date)?,
                };
                let report = PartitionReport::new(table, date);
                parts(self).map.insert(
                    date,
                    Partition {
                        seen,
                        buffer: Vec::new(),
                        report,
                    },
                );
            }
            let is_event = table != Table::Rejects;
            let unattributed = is_event && row.customer_id().is_none();
            let vm = unattributed.then(|| row.vm_id().to_string());
            let part = parts(self).map.get_mut(&date).expect("inserted above");
            if !part.seen.insert(row.event_id()) {
                dups += 1;
                continue;
            }
            part.buffer.push(row);
            part.report.rows_added += 1;
            stored += 1;
            let full = part.buffer.len() >= FLUSH_ROWS;
            self.buffered += 1;
            if let Some(vm) = vm {
                *self
                    .unattributed
                    .entry(vm)
                    .or_default()
                    .entry(table)
                    .or_default() += 1;
            }
            if full {
                self.flush(date, parts)?;
            }
        }
        let entry = self.counts.entry((file, table)).or_default();
        entry.0 += stored;
        entry.1 += dups;
        Ok(())
    }

    fn flush<R: TableRow>(
        &mut self,
        date: NaiveDate,
        parts: fn(&mut Self) -> &mut Parts<R>,
    ) -> Result<()> {
        let part = parts(self).map.get_mut(&date).expect("partition exists");
        if part.buffer.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut part.buffer);
        part.report.files_written += 1;
        self.buffered -= rows.len();
        self.seq += 1;
        let name = format!("part-{}-{:04}", self.run_id, self.seq);
        let batch = R::batch(&rows);
        let (tmp, final_path) = self.lake.write_part(R::TABLE, date, &name, &batch)?;
        self.commit.renames.push((tmp, final_path));
        Ok(())
    }

    fn flush_all<R: TableRow>(&mut self, parts: fn(&mut Self) -> &mut Parts<R>) -> Result<()> {
        let mut dates: Vec<NaiveDate> = parts(self).map.keys().copied().collect();
        dates.sort();
        for date in dates {
            self.flush(date, parts)?;
        }
        Ok(())
    }

    /// Flushes the partitions holding the most rows until half the budget is free.
    fn flush_largest(&mut self) -> Result<()> {
        let mut sizes: Vec<(usize, Table, NaiveDate)> = Vec::new();
        fn collect<R>(p: &Parts<R>, table: Table, out: &mut Vec<(usize, Table, NaiveDate)>) {
            out.extend(p.map.iter().map(|(d, part)| (part.buffer.len(), table, *d)));
        }
        collect(&self.usage, Table::ApiUsage, &mut sizes);
        collect(&self.requests, Table::ApiRequests, &mut sizes);
        collect(&self.resources, Table::ResourceUsage, &mut sizes);
        collect(&self.activity, Table::Activity, &mut sizes);
        collect(&self.rejects, Table::Rejects, &mut sizes);
        sizes.sort_by(|a, b| b.cmp(a));
        for (_, table, date) in sizes {
            if self.buffered <= BUFFER_BUDGET / 2 {
                break;
            }
            match table {
                Table::ApiUsage => self.flush(date, |s| &mut s.usage)?,
                Table::ApiRequests => self.flush(date, |s| &mut s.requests)?,
                Table::ResourceUsage => self.flush(date, |s| &mut s.resources)?,
                Table::Activity => self.flush(date, |s| &mut s.activity)?,
                Table::Rejects => self.flush(date, |s| &mut s.rejects)?,
            }
        }
        Ok(())
    }

    /// Writes what is buffered and commits the run's files; with a rebuild,
    /// the rebuilt dates' older files are removed in the same commit.
    pub fn finish(mut self) -> Result<Stored> {
        self.flush_all(|s| &mut s.usage)?;
        self.flush_all(|s| &mut s.requests)?;
        self.flush_all(|s| &mut s.resources)?;
        self.flush_all(|s| &mut s.activity)?;
        self.flush_all(|s| &mut s.rejects)?;
        let mut reports: BTreeMap<(Table, String), PartitionReport> = BTreeMap::new();
        fn take<R>(p: Parts<R>, out: &mut BTreeMap<(Table, String), PartitionReport>) {
            for (_, part) in p.map {
                out.insert((part.report.table, part.report.date.clone()), part.report);
            }
        }
        take(std::mem::take(&mut self.usage), &mut reports);
        take(std::mem::take(&mut self.requests), &mut reports);
        take(std::mem::take(&mut self.resources), &mut reports);
        take(std::mem::take(&mut self.activity), &mut reports);
        take(std::mem::take(&mut self.rejects), &mut reports);
        if let Some((from, to)) = self.rebuild {
            for table in Table::ALL {
                for date in self.lake.partition_dates(table)? {
                    if date < from || date > to {
                        continue;
                    }
                    let old: Vec<PathBuf> = self.lake.partition_files(table, date)?;
                    let report = reports
                        .entry((table, date.to_string()))
                        .or_insert_with(|| PartitionReport::new(table, date));
                    report.files_removed += old.len() as u64;
                    self.commit.deletes.extend(old);
                }
            }
        }
        self.lake.commit(&self.run_id, &self.commit)?;
        let partitions = reports
            .into_values()
            .filter(|r| r.rows_added > 0 || r.files_removed > 0)
            .collect();
        Ok(Stored {
            counts: self.counts,
            unattributed: self.unattributed,
            partitions,
        })
    }
}
