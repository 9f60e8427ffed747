//! The writer side of an ingest run: drops events already stored (in the
//! lake or earlier in this run), buffers new rows per partition and hands
//! them to encoder threads that stream them into one Parquet file per
//! partition, visible at commit.
//!
//! Memory is bounded whatever the input size:
//! - rows wait in per-partition buffers up to [`BUFFER_ROWS`] in all; then
//!   the largest buffers become row groups of their partition's file;
//! - the ids an event is checked against are those of its own VM (every
//!   event id hashes the VM in, so events of two VMs are never duplicates
//!   of each other) and are dropped after the VM's last file, plus the ids
//!   already in the lake for the partitions this run touches.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use chrono::{Datelike, NaiveDate};

use super::report::PartitionReport;
use crate::lake::tables::{
    ActivityRow, ApiRequestRow, ApiUsageRow, RejectRow, ResourceRow, Str, Table, TableRow,
};
use crate::lake::{Commit, Lake, PartWriter};
use crate::model::error::Result;
use crate::model::ids::IdSet;

/// Rows buffered across all partitions before the largest become row groups.
pub const BUFFER_ROWS: usize = 1 << 17;
/// A partition's buffer becomes a row group at this many rows.
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// A partition's file is closed and a new one started after this many row
/// groups: a writer keeps every row group's metadata until it closes, so this
/// bounds that memory however large the input.
const FILE_ROW_GROUPS: usize = 32;
/// Encoder threads.
const ENCODERS: usize = 2;

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
    /// Ids already in the lake's partition.
    stored: IdSet,
    buffer: Vec<R>,
    /// Name of the file being written, and its row groups so far.
    file: Option<(String, usize)>,
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

/// The ids seen in this run, per VM, table and date.
type VmSeen = HashMap<(Table, NaiveDate), IdSet>;

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
    /// VM of each input file.
    vm_of_file: &'a [Str],
    /// Last input file of each VM -> the VMs whose seen ids can go after it.
    closes: BTreeMap<usize, Vec<Str>>,
    seen: HashMap<Str, VmSeen>,
    encoders: Encoders<'a>,
    pub counts: StoreCounts,
    pub unattributed: BTreeMap<String, BTreeMap<Table, u64>>,
}

impl<'a> Sink<'a> {
    /// A sink whose encoder threads live in `scope`. `vm_of_file` gives the
    /// VM of every input file, in the order their rows arrive.
    pub fn new(
        scope: &'a Scope<'a, '_>,
        lake: &'a Lake,
        run_id: &str,
        rebuild: Option<(NaiveDate, NaiveDate)>,
        vm_of_file: &'a [Str],
    ) -> Sink<'a> {
        let mut last: HashMap<&Str, usize> = HashMap::new();
        for (i, vm) in vm_of_file.iter().enumerate() {
            last.insert(vm, i);
        }
        let mut closes: BTreeMap<usize, Vec<Str>> = BTreeMap::new();
        for (vm, i) in last {
            closes.entry(i).or_default().push(vm.clone());
        }
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
            vm_of_file,
            closes,
            seen: HashMap::new(),
            encoders: Encoders::start(scope, lake),
            counts: HashMap::new(),
            unattributed: BTreeMap::new(),
        }
    }

    pub fn push(&mut self, rows: Rows) -> Result<()> {
        self.encoders.check()?;
        let file = rows.file;
        // Every file of a VM before this one is stored: its ids can go.
        while let Some(entry) = self.closes.first_entry() {
            if *entry.key() >= file {
                break;
            }
            for vm in entry.remove() {
                self.seen.remove(&vm);
            }
        }
        self.store(file, rows.usage, |s| &mut s.usage)?;
        self.store(file, rows.requests, |s| &mut s.requests)?;
        self.store(file, rows.resources, |s| &mut s.resources)?;
        self.store(file, rows.activity, |s| &mut s.activity)?;
        self.store(file, rows.rejects, |s| &mut s.rejects)?;
        if self.buffered > BUFFER_ROWS {
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
        let vm = self.vm_of_file[file].clone();
        let mut seen = self.seen.remove(&vm).unwrap_or_default();
        let (mut stored, mut dups) = (0u64, 0u64);
        let mut current: Option<(NaiveDate, &mut IdSet)> = None;
        for row in rows {
            let date = row
                .ts()
                .map(|t| t.date())
                .expect("rows reach the sink with a partition date");
            if !parts(self).map.contains_key(&date) {
                let ids = match self.rebuild {
                    Some((from, to)) if date >= from && date <= to => IdSet::default(),
                    _ => self.lake.stored_ids(table, date)?,
                };
                let report = PartitionReport::new(table, date);
                parts(self).map.insert(
                    date,
                    Partition {
                        stored: ids,
                        buffer: Vec::new(),
                        file: None,
                        report,
                    },
                );
            }
            let ids = match current.take() {
                Some((d, ids)) if d == date => ids,
                _ => seen.entry((table, date)).or_default(),
            };
            let part = parts(self).map.get_mut(&date).expect("inserted above");
            let id = row.event_id();
            let new = !part.stored.contains(&id) && ids.insert(id);
            current = Some((date, ids));
            if !new {
                dups += 1;
                continue;
            }
            let unattributed = table != Table::Rejects && row.customer_id().is_none();
            part.buffer.push(row);
            part.report.rows_added += 1;
            stored += 1;
            let full = part.buffer.len() >= ROW_GROUP_ROWS;
            self.buffered += 1;
            if unattributed {
                *self
                    .unattributed
                    .entry(vm.to_string())
                    .or_default()
                    .entry(table)
                    .or_default() += 1;
            }
            if full {
                self.flush(date, parts)?;
            }
        }
        self.seen.insert(vm, seen);
        let entry = self.counts.entry((file, table)).or_default();
        entry.0 += stored;
        entry.1 += dups;
        Ok(())
    }

    /// Sends a partition's buffer to its encoder as the next row group of
    /// the partition's file.
    fn flush<R: TableRow>(
        &mut self,
        date: NaiveDate,
        parts: fn(&mut Self) -> &mut Parts<R>,
    ) -> Result<()> {
        let next_name = format!("part-{}-{:04}", self.run_id, self.seq + 1);
        let part = parts(self).map.get_mut(&date).expect("partition exists");
        if part.buffer.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut part.buffer);
        let n = rows.len();
        let (name, new_file) = match &mut part.file {
            Some((name, groups)) if *groups < FILE_ROW_GROUPS => {
                *groups += 1;
                (name.clone(), false)
            }
            file => {
                *file = Some((next_name.clone(), 1));
                part.report.files_written += 1;
                (next_name, true)
            }
        };
        if new_file {
            self.seq += 1;
        }
        self.buffered -= n;
        self.encoders.send(Job {
            table: R::TABLE,
            date,
            name,
            batch: Box::new(move || R::batch(&rows)),
        })
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
            if self.buffered <= BUFFER_ROWS / 2 {
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
        let mut commit = Commit {
            renames: self.encoders.finish()?,
            deletes: Vec::new(),
        };
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
                    commit.deletes.extend(old);
                }
            }
        }
        self.lake.commit(&self.run_id, &commit)?;
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

/// A row group for a partition's file: built and encoded off the sink.
struct Job {
    table: Table,
    date: NaiveDate,
    /// The file it goes to; a new name closes the partition's previous file.
    name: String,
    batch: Box<dyn FnOnce() -> arrow::record_batch::RecordBatch + Send>,
}

/// The renames (temporary path, final path) that make written files visible.
type Renames = Vec<(PathBuf, PathBuf)>;

/// Encoder threads. A partition always goes to the same thread, which owns
/// its open file, so the row groups of a file are written in order.
struct Encoders<'a> {
    senders: Vec<SyncSender<Job>>,
    handles: Vec<ScopedJoinHandle<'a, Result<Renames>>>,
    failed: Arc<AtomicBool>,
}

impl<'a> Encoders<'a> {
    fn start(scope: &'a Scope<'a, '_>, lake: &'a Lake) -> Encoders<'a> {
        let failed = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..ENCODERS {
            let (tx, rx) = sync_channel::<Job>(1);
            senders.push(tx);
            let failed = failed.clone();
            let handle = scope.spawn(move || {
                let result = encode(lake, rx);
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                result
            });
            handles.push(handle);
        }
        Encoders {
            senders,
            handles,
            failed,
        }
    }

    /// Fails the run as soon as an encoder has failed (its error is the one
    /// [`Encoders::finish`] returns).
    fn check(&mut self) -> Result<()> {
        if self.failed.load(Ordering::Relaxed) {
            self.senders.clear();
            for handle in std::mem::take(&mut self.handles) {
                handle.join().expect("encoders do not panic")?;
            }
        }
        Ok(())
    }

    fn send(&mut self, job: Job) -> Result<()> {
        let shard = (job.date.num_days_from_ce() as usize + job.table as usize) % ENCODERS;
        if self.senders[shard].send(job).is_err() {
            // The encoder stopped: its error is returned by `check`.
            self.check()?;
        }
        Ok(())
    }

    /// Closes every file; returns the renames that make them visible, in a
    /// stable order.
    fn finish(mut self) -> Result<Renames> {
        self.senders.clear();
        let mut renames = Vec::new();
        for handle in std::mem::take(&mut self.handles) {
            renames.extend(handle.join().expect("encoders do not panic")?);
        }
        renames.sort();
        Ok(renames)
    }
}

/// One encoder thread: appends row groups to its partitions' files and
/// closes them all at the end.
fn encode(lake: &Lake, jobs: Receiver<Job>) -> Result<Renames> {
    let mut open: BTreeMap<(Table, NaiveDate), (String, PartWriter)> = BTreeMap::new();
    let mut renames = Vec::new();
    for job in jobs {
        let key = (job.table, job.date);
        if open.get(&key).is_some_and(|(name, _)| *name != job.name)
            && let Some((_, writer)) = open.remove(&key)
        {
            renames.push(writer.finish()?);
        }
        let batch = (job.batch)();
        let writer = match open.entry(key) {
            std::collections::btree_map::Entry::Occupied(e) => &mut e.into_mut().1,
            std::collections::btree_map::Entry::Vacant(e) => {
                let dir = lake.partition_dir(job.table, job.date);
                let writer = lake.part_writer(&dir, &job.name, batch.schema())?;
                &mut e.insert((job.name, writer)).1
            }
        };
        writer.write(&batch)?;
        writer.end_row_group()?;
    }
    for (_, (_, writer)) in open {
        renames.push(writer.finish()?);
    }
    Ok(renames)
}
