//! The writer side of an ingest run: drops events already stored (in the
//! lake or earlier in this run) and hands each block's new rows, as Arrow
//! columns, to encoder threads that stream them into one Parquet file per
//! partition, visible at commit.
//!
//! Nothing here holds rows: a block's columns are finished into one record
//! batch, and each partition it touches gets that batch with a mask of its
//! new rows. Memory is bounded whatever the input size:
//! - an encoder keeps its partitions' rows waiting to be encoded up to
//!   [`WAITING_BYTES`], and their open row groups up to [`ENCODER_BYTES`]
//!   of encoded pages and [`ENCODER_ROWS`] rows; past any, the largest row
//!   groups are ended;
//! - the ids an event is checked against are those of its own VM (every
//!   event id hashes the VM in, so events of two VMs are never duplicates
//!   of each other): the lake's, read from its id indexes, and this run's,
//!   dropped after the VM's last file and spilled to disk past a budget
//!   ([`super::dedup`]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use arrow::array::BooleanArray;
use arrow::buffer::BooleanBuffer;
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, NaiveDate};

use super::dedup::{HELD_IDS, VmIds};
use super::report::PartitionReport;
use crate::lake::tables::{
    ActivityCols, ApiRequestCols, ApiUsageCols, RejectCols, ResourceCols, Str, Table, TableCols,
    TableRow,
};
use crate::lake::{Commit, Lake, PartWriter, PartitionIds};
use crate::model::error::Result;
use crate::model::ids::IdSet;
use crate::model::time::Ts;

/// Encoded bytes an encoder keeps in open row groups before it ends the
/// largest of them.
pub const ENCODER_BYTES: usize = 32 << 20;
/// Rows an encoder keeps in open row groups before it ends the largest:
/// the byte estimate leaves out the column writers' own state, which is
/// per row.
pub const ENCODER_ROWS: usize = 64 * 1024;
/// Bytes of rows (Arrow) an encoder keeps waiting to be encoded before it
/// ends the row groups of the partitions with the most.
pub const WAITING_BYTES: usize = 32 << 20;
/// Waiting bytes at which a partition's rows go into its open row group.
const STREAM_BYTES: usize = 4 << 20;
/// Row groups an encoder keeps open at once: each holds a column writer per
/// column with its buffers and compression contexts (about 75 KiB each),
/// whatever its rows, so past this the least recently written ends.
const OPEN_ROW_GROUPS: usize = 8;
/// A partition's file is closed and a new one started after this many row
/// groups: a writer keeps every row group's metadata until it closes, so
/// this bounds that memory however large the input.
const FILE_ROW_GROUPS: usize = 32;
/// Encoder threads.
const ENCODERS: usize = 2;

/// One table's rows of a block, in file order.
pub struct Part<C> {
    pub cols: C,
    /// Rows to leave out (an erased customer's), counted by the caller.
    pub skip: Option<Vec<bool>>,
}

impl<C: TableCols> Part<C> {
    pub fn new(rows: usize) -> Part<C> {
        Part {
            cols: C::with_capacity(rows),
            skip: None,
        }
    }
}

/// One block's rows, in file order, ready to store.
pub struct Rows {
    pub file: usize,
    pub usage: Part<ApiUsageCols>,
    pub requests: Part<ApiRequestCols>,
    pub resources: Part<ResourceCols>,
    pub activity: Part<ActivityCols>,
    pub rejects: Part<RejectCols>,
}

struct Partition {
    /// The lake's partition's ids, read VM by VM (none when it is rebuilt).
    stored: Option<PartitionIds>,
    report: PartitionReport,
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
    /// Dates being rebuilt: start empty instead of from the stored ids.
    rebuild: Option<(NaiveDate, NaiveDate)>,
    parts: HashMap<(Table, NaiveDate), Partition>,
    /// VM of each input file, and whether the file's VM has a customer.
    vm_of_file: &'a [Str],
    attributed: &'a [bool],
    /// Last input file of each VM -> the VMs whose seen ids can go after it.
    closes: BTreeMap<usize, Vec<Str>>,
    /// The ids events are checked against (the lake's and this run's),
    /// per VM, table and date.
    vm_ids: VmIds,
    encoders: Encoders<'a>,
    pub counts: StoreCounts,
    pub unattributed: BTreeMap<String, BTreeMap<Table, u64>>,
}

/// Microseconds in a day.
const DAY_US: i64 = 86_400_000_000;

impl<'a> Sink<'a> {
    /// A sink whose encoder threads live in `scope`. `vm_of_file` gives the
    /// VM of every input file, in the order their rows arrive, and
    /// `attributed` whether its rows have a customer.
    pub fn new(
        scope: &'a Scope<'a, '_>,
        lake: &'a Lake,
        run_id: &str,
        rebuild: Option<(NaiveDate, NaiveDate)>,
        vm_of_file: &'a [Str],
        attributed: &'a [bool],
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
            rebuild,
            parts: HashMap::new(),
            vm_of_file,
            attributed,
            closes,
            vm_ids: VmIds::new(HELD_IDS),
            encoders: Encoders::start(scope, lake, run_id),
            counts: HashMap::new(),
            unattributed: BTreeMap::new(),
        }
    }

    pub fn push(&mut self, rows: Rows) -> Result<()> {
        self.encoders.check()?;
        self.vm_ids.next_block();
        let file = rows.file;
        // Every file of a VM before this one is stored: its ids can go.
        while let Some(entry) = self.closes.first_entry() {
            if *entry.key() >= file {
                break;
            }
            for vm in entry.remove() {
                self.vm_ids.drop_vm(&vm);
            }
        }
        self.store(file, rows.usage)?;
        self.store(file, rows.requests)?;
        self.store(file, rows.resources)?;
        self.store(file, rows.activity)?;
        self.store(file, rows.rejects)?;
        self.vm_ids.trim()
    }

    /// Opens the partition of `table` on `date` (the indexes of the ids
    /// the lake holds) the first time a row of it comes.
    fn load_partition(&mut self, table: Table, date: NaiveDate) -> Result<()> {
        if !self.parts.contains_key(&(table, date)) {
            let stored = match self.rebuild {
                Some((from, to)) if date >= from && date <= to => None,
                _ => Some(self.lake.partition_ids(table, date)?),
            };
            let report = PartitionReport::new(table, date);
            self.parts
                .insert((table, date), Partition { stored, report });
        }
        Ok(())
    }

    fn store<C: TableCols>(&mut self, file: usize, part: Part<C>) -> Result<()> {
        let Part { mut cols, skip } = part;
        let n = cols.len();
        if n == 0 {
            return Ok(());
        }
        let table = C::Row::TABLE;
        // Per row: the index of its date in `dates`, or NONE when it is not
        // stored. A block's rows span a date or two.
        const NONE: u32 = u32::MAX;
        let mut slot: Vec<u32> = Vec::with_capacity(n);
        let mut dates: Vec<(i64, NaiveDate)> = Vec::new();
        let mut last: Option<(i64, u32)> = None;
        for (i, ts) in cols.ts().iter().enumerate() {
            if skip.as_ref().is_some_and(|s| s[i]) {
                slot.push(NONE);
                continue;
            }
            let day = ts.div_euclid(DAY_US);
            let d = match last {
                Some((l, d)) if l == day => d,
                _ => {
                    let d = match dates.iter().position(|(x, _)| *x == day) {
                        Some(d) => d,
                        None => {
                            dates.push((day, Ts(*ts).date()));
                            dates.len() - 1
                        }
                    } as u32;
                    last = Some((day, d));
                    d
                }
            };
            slot.push(d);
        }
        for (_, date) in &dates {
            self.load_partition(table, *date)?;
        }
        let vm = self.vm_of_file[file].clone();
        // Per date: the VM's ids in the lake and stored by this run.
        let mut ids: Vec<IdSet> = Vec::with_capacity(dates.len());
        for (_, date) in &dates {
            let stored = &self.parts[&(table, *date)].stored;
            ids.push(self.vm_ids.take(&vm, table, *date, |set| match stored {
                Some(stored) => stored.add_ids_of(&vm, set),
                None => Ok(()),
            })?);
        }
        let mut added = vec![0u64; dates.len()];
        let mut dups = 0u64;
        for (s, id) in slot.iter_mut().zip(cols.ids()) {
            if *s == NONE {
                continue;
            }
            let d = *s as usize;
            if ids[d].insert(*id) {
                added[d] += 1;
            } else {
                dups += 1;
                *s = NONE;
            }
        }
        for ((_, date), ids) in dates.iter().zip(ids) {
            self.vm_ids.put(&vm, table, *date, ids);
        }
        let stored: u64 = added.iter().sum();
        for ((_, date), n) in dates.iter().zip(&added) {
            self.parts
                .get_mut(&(table, *date))
                .expect("made above")
                .report
                .rows_added += n;
        }
        let entry = self.counts.entry((file, table)).or_default();
        entry.0 += stored;
        entry.1 += dups;
        if stored == 0 {
            return Ok(());
        }
        if table != Table::Rejects && !self.attributed[file] {
            *self
                .unattributed
                .entry(vm.to_string())
                .or_default()
                .entry(table)
                .or_default() += stored;
        }
        let batch = cols.finish();
        for (d, (_, date)) in dates.iter().enumerate() {
            if added[d] == 0 {
                continue;
            }
            let mask = BooleanArray::new(
                BooleanBuffer::collect_bool(n, |i| slot[i] == d as u32),
                None,
            );
            self.encoders.send(Job {
                table,
                date: *date,
                batch: batch.clone(),
                mask,
            })?;
        }
        Ok(())
    }

    /// Closes every file and commits the run's files; with a rebuild, the
    /// rebuilt dates' older files are removed in the same commit.
    pub fn finish(mut self, run_id: &str) -> Result<Stored> {
        let written = self.encoders.finish()?;
        let mut reports: BTreeMap<(Table, String), PartitionReport> = BTreeMap::new();
        for (_, part) in self.parts.drain() {
            reports.insert((part.report.table, part.report.date.clone()), part.report);
        }
        let mut commit = Commit {
            renames: Vec::with_capacity(written.len()),
            deletes: Vec::new(),
        };
        for (table, date, rename) in written {
            reports
                .entry((table, date.to_string()))
                .or_insert_with(|| PartitionReport::new(table, date))
                .files_written += 1;
            commit.renames.push(rename);
        }
        commit.renames.sort();
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
        self.lake.commit(run_id, &commit)?;
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

/// A block's new rows of one partition: the block's batch and which of its
/// rows go to the partition.
struct Job {
    table: Table,
    date: NaiveDate,
    batch: RecordBatch,
    mask: BooleanArray,
}

/// What the encoders wrote: per file, its partition and the rename that
/// makes it visible.
type Written = Vec<(Table, NaiveDate, (PathBuf, PathBuf))>;

/// Encoder threads. A partition always goes to the same thread, which owns
/// its open file, so the rows of a partition are written in arrival order.
struct Encoders<'a> {
    senders: Vec<SyncSender<Job>>,
    handles: Vec<ScopedJoinHandle<'a, Result<Written>>>,
    failed: Arc<AtomicBool>,
}

impl<'a> Encoders<'a> {
    fn start(scope: &'a Scope<'a, '_>, lake: &'a Lake, run_id: &str) -> Encoders<'a> {
        let failed = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for index in 0..ENCODERS {
            let (tx, rx) = sync_channel::<Job>(2);
            senders.push(tx);
            let failed = failed.clone();
            let prefix = format!("part-{run_id}-{index}");
            let handle = scope.spawn(move || {
                let result = encode(lake, &prefix, rx);
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

    /// Closes every file; returns what was written.
    fn finish(mut self) -> Result<Written> {
        self.senders.clear();
        let mut written = Vec::new();
        for handle in std::mem::take(&mut self.handles) {
            written.extend(handle.join().expect("encoders do not panic")?);
        }
        Ok(written)
    }
}

/// The rows of `batch` that `mask` keeps, in a batch of their own (a
/// copy unless it keeps them all), so a block's batch is freed once every
/// partition has its rows.
fn kept_rows(batch: RecordBatch, mask: &BooleanArray) -> RecordBatch {
    if mask.true_count() == batch.num_rows() {
        return batch;
    }
    arrow::compute::filter_record_batch(&batch, mask).expect("a mask of the batch's length")
}

/// A partition's file being written by an encoder, and the rows waiting
/// to go into it.
#[derive(Default)]
struct OpenFile {
    writer: Option<PartWriter>,
    waiting: Vec<RecordBatch>,
    waiting_bytes: usize,
    /// When rows last went into its open row group (the encoder's count).
    streamed_at: u64,
}

impl OpenFile {
    /// Rows in its open row group.
    fn open_rows(&self) -> usize {
        self.writer.as_ref().map_or(0, PartWriter::open_rows)
    }

    /// Encoded bytes its open row group holds.
    fn open_bytes(&self) -> usize {
        self.writer.as_ref().map_or(0, PartWriter::memory_size)
    }
}

/// An encoder thread. A partition's rows first wait as Arrow batches
/// (copied out of their block, so a block is freed once every partition
/// has its rows); once a partition has [`STREAM_BYTES`] waiting they go
/// into its open row group, which the Parquet writer ends at its row
/// group size. So a partition that gets many rows (time-ordered input)
/// streams into full row groups of encoded pages, and one that gets a few
/// rows from each block (a VM's month in each file) gathers them into one
/// row group instead of a small one per block. Three budgets end row
/// groups early: [`OPEN_ROW_GROUPS`] open at once (each holds a column
/// writer per column, with compression contexts), [`WAITING_BYTES`] of
/// waiting rows, and [`ENCODER_BYTES`] or [`ENCODER_ROWS`] in open row
/// groups. Closes every file at the end; files are named `<prefix><NNN>`
/// in the order they are started.
fn encode(lake: &Lake, prefix: &str, jobs: Receiver<Job>) -> Result<Written> {
    let mut enc = Encoder {
        lake,
        prefix,
        open: BTreeMap::new(),
        written: Vec::new(),
        seq: 0,
        jobs_done: 0,
    };
    for job in jobs {
        enc.jobs_done += 1;
        let key = (job.table, job.date);
        let batch = kept_rows(job.batch, &job.mask);
        let bytes = batch.get_array_memory_size();
        let file = enc.open.entry(key).or_default();
        file.waiting_bytes += bytes;
        file.waiting.push(batch);
        if file.waiting_bytes >= STREAM_BYTES {
            enc.stream(key)?;
        }
        enc.keep_budgets()?;
    }
    let keys: Vec<_> = enc.open.keys().copied().collect();
    for key in keys {
        enc.stream(key)?;
        if let Some(writer) = enc.open.remove(&key).and_then(|f| f.writer) {
            enc.written.push((key.0, key.1, writer.finish()?));
        }
    }
    Ok(enc.written)
}

/// An encoder's state: its partitions' files and what it has written.
struct Encoder<'a> {
    lake: &'a Lake,
    prefix: &'a str,
    open: BTreeMap<(Table, NaiveDate), OpenFile>,
    written: Written,
    /// Files started, for their names.
    seq: u32,
    jobs_done: u64,
}

impl Encoder<'_> {
    /// Puts a partition's waiting rows into its open row group (starting
    /// one, and a new file after [`FILE_ROW_GROUPS`], as needed).
    fn stream(&mut self, key: (Table, NaiveDate)) -> Result<()> {
        let file = self.open.get_mut(&key).expect("an open partition");
        if file.waiting.is_empty() {
            return Ok(());
        }
        if file.open_rows() == 0
            && file
                .writer
                .as_ref()
                .is_some_and(|w| w.row_groups() >= FILE_ROW_GROUPS)
            && let Some(full) = file.writer.take()
        {
            self.written.push((key.0, key.1, full.finish()?));
        }
        let writer = match &mut file.writer {
            Some(w) => w,
            None => {
                self.seq += 1;
                let dir = self.lake.partition_dir(key.0, key.1);
                let name = format!("{}{:03}", self.prefix, self.seq);
                let schema = file.waiting[0].schema();
                file.writer
                    .insert(self.lake.part_writer(&dir, &name, schema)?)
            }
        };
        for batch in file.waiting.drain(..) {
            writer.write(&batch)?;
        }
        file.waiting_bytes = 0;
        file.streamed_at = self.jobs_done;
        Ok(())
    }

    /// Ends a partition's row group now, with its waiting rows in it.
    fn end_group(&mut self, key: (Table, NaiveDate)) -> Result<()> {
        self.stream(key)?;
        if let Some(w) = &mut self.open.get_mut(&key).expect("an open partition").writer {
            w.end_row_group()?;
        }
        Ok(())
    }

    /// Ends row groups while a budget is exceeded: the least recently
    /// streamed past [`OPEN_ROW_GROUPS`], then the largest (waiting rows,
    /// then encoded pages) until half of the budget is free.
    fn keep_budgets(&mut self) -> Result<()> {
        let mut groups: Vec<(u64, (Table, NaiveDate))> = self
            .open
            .iter()
            .filter(|(_, f)| f.open_rows() > 0)
            .map(|(k, f)| (f.streamed_at, *k))
            .collect();
        if groups.len() > OPEN_ROW_GROUPS {
            groups.sort();
            for (_, key) in &groups[..groups.len() - OPEN_ROW_GROUPS] {
                self.end_group(*key)?;
            }
        }
        let mut waiting: usize = self.open.values().map(|f| f.waiting_bytes).sum();
        if waiting > WAITING_BYTES {
            let mut sizes: Vec<(usize, (Table, NaiveDate))> = self
                .open
                .iter()
                .filter(|(_, f)| !f.waiting.is_empty())
                .map(|(k, f)| (f.waiting_bytes, *k))
                .collect();
            sizes.sort_by(|a, b| b.cmp(a));
            for (size, key) in sizes {
                if waiting <= WAITING_BYTES / 2 {
                    break;
                }
                self.end_group(key)?;
                waiting -= size;
            }
        }
        let mut bytes: usize = self.open.values().map(OpenFile::open_bytes).sum();
        let mut rows: usize = self.open.values().map(OpenFile::open_rows).sum();
        if bytes > ENCODER_BYTES || rows > ENCODER_ROWS {
            let mut sizes: Vec<(usize, usize, (Table, NaiveDate))> = self
                .open
                .iter()
                .map(|(k, f)| (f.open_bytes(), f.open_rows(), *k))
                .filter(|(_, n, _)| *n > 0)
                .collect();
            sizes.sort_by(|a, b| b.cmp(a));
            for (size, n, key) in sizes {
                if bytes <= ENCODER_BYTES / 2 && rows <= ENCODER_ROWS / 2 {
                    break;
                }
                self.end_group(key)?;
                bytes -= size;
                rows -= n;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use proptest::prelude::*;

    fn batch(n: usize) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("n", DataType::Int64, false),
                Field::new("s", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
                Arc::new(StringArray::from_iter(
                    (0..n).map(|i| (i % 3 != 0).then(|| format!("v{i}"))),
                )),
            ],
        )
        .unwrap()
    }

    proptest! {
        /// The rows a mask keeps are the filter's, whole batches as they are.
        #[test]
        fn kept_rows_is_the_filter(mask in prop::collection::vec(any::<bool>(), 0..40)) {
            let b = batch(mask.len());
            let m = BooleanArray::from(mask);
            let want = arrow::compute::filter_record_batch(&b, &m).unwrap();
            prop_assert_eq!(kept_rows(b, &m), want);
        }
    }
}
