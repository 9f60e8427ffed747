//! The compaction stage: rewrites a partition's many small files (one per
//! nightly ingest) into few large ones, sorted, with the same rows.
//!
//! ```text
//! examined:  <lake>/<table>/date=YYYY-MM-DD/         api_usage, api_requests, resource_usage, activity, rejects
//!            <lake>/priced/<table>/date=YYYY-MM-DD/
//!            <lake>/daily/<table>/date=YYYY-MM-DD/
//!            <lake>/monthly/<table>/month=YYYY-MM/
//! written:   compact-<run_id>-NNNN.parquet           (NNNN from 0001 in each partition)
//! ```
//!
//! **Rule.** A partition is compacted when it holds more files than its
//! rows need: more than `ceil(rows / FILE_ROWS)` (at least one). So a
//! single file is never rewritten, a compacted partition is left alone until
//! an ingest adds a file to it, and a second run does nothing.
//!
//! **Rewrite.** The partition's files are read whole (one partition in
//! memory at a time, never the lake), sorted by `customer_id` (nulls last),
//! then the time column `ts`, then `event_id`, then every other column in
//! schema order (so the output depends only on the rows, not on file order),
//! and written as files of at most [`FILE_ROWS`] rows in row groups of
//! [`ROW_GROUP_ROWS`], with the Arrow schema the files had and ingest's
//! writer properties ([`crate::lake::writer_props`]).
//!
//! **Verify, then commit.** The new files are synced and read back; their
//! row count and [`Digest`] (an order-independent digest of every value of
//! every row) must equal the old files', else the new files are removed and
//! the run fails with [`Error::Verify`], the partition untouched. Each
//! partition is then committed on its own through the lake's journal (new
//! files renamed in, old ones deleted): killed at any point, the next
//! `Lake::open` leaves the partition with either its old or its new files.

use std::collections::BTreeSet;
use std::path::PathBuf;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::{SortOptions, concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use chrono::{Datelike, NaiveDate};
use rayon::slice::ParallelSliceMut;
use serde::Serialize;

use crate::lake::tables::Table;
use crate::lake::{Commit, Lake, PartitionDir};
use crate::model::ctx::Ctx;
use crate::model::error::{Error, Result};

/// Rows per compacted file at most (8 row groups).
pub const FILE_ROWS: usize = 1 << 20;
/// Rows per row group of a compacted file (as ingest writes them).
pub const ROW_GROUP_ROWS: usize = 128 * 1024;
/// The name compacted files start with (ingest's start with `part-`).
pub const FILE_PREFIX: &str = "compact-";

#[derive(Debug, Clone)]
pub struct CompactOptions {
    pub lake: PathBuf,
    /// Only partitions of this month (any day in it).
    pub month: Option<NaiveDate>,
    /// Only this table: `api_usage`, `rejects`, `priced/api_usage`,
    /// `daily/activity`, `monthly/activity`, ...
    pub table: Option<String>,
    /// Only these raw or reject partitions (the nightly job: the closed days
    /// it ingested into).
    pub partitions: Option<BTreeSet<(Table, NaiveDate)>>,
    /// Say what would be rewritten; change nothing.
    pub dry_run: bool,
}

impl CompactOptions {
    /// Every partition of the lake.
    pub fn all(lake: PathBuf) -> CompactOptions {
        CompactOptions {
            lake,
            month: None,
            table: None,
            partitions: None,
            dry_run: false,
        }
    }
}

/// One partition compacted (or that would be, on a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionCompaction {
    /// `api_usage/date=2026-10-01`, relative to the lake.
    pub partition: String,
    pub files_before: u64,
    pub files_after: u64,
    pub rows: u64,
    pub bytes_before: u64,
    /// `None` on a dry run.
    pub bytes_after: Option<u64>,
    /// The content digest both the old and the new files have (hex); `None`
    /// on a dry run.
    pub digest: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompactReport {
    pub job: &'static str,
    pub run_id: String,
    pub started_at: String,
    pub finished_at: String,
    pub lake: String,
    pub month: Option<String>,
    pub table: Option<String>,
    /// Nothing was rewritten: the counts say what would have been.
    pub dry_run: bool,
    pub partitions_examined: u64,
    pub partitions_compacted: u64,
    /// Files, rows and bytes of the compacted partitions.
    pub files_before: u64,
    pub files_after: u64,
    pub rows: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub partitions: Vec<PartitionCompaction>,
    pub attention: Vec<String>,
}

crate::model::report::stage_report!(CompactReport);

impl CompactReport {
    pub fn needs_attention(&self) -> bool {
        !self.attention.is_empty()
    }

    pub fn summary(&self) -> String {
        let verb = if self.dry_run {
            "would compact"
        } else {
            "compacted"
        };
        let mut s = format!(
            "compact {}{}: {verb} {} of {} partitions, {} -> {} files, {} rows, {}",
            self.run_id,
            if self.dry_run { " (dry run)" } else { "" },
            self.partitions_compacted,
            self.partitions_examined,
            self.files_before,
            self.files_after,
            self.rows,
            crate::model::report::human_bytes(self.bytes_before),
        );
        if !self.dry_run {
            s += &format!(
                " -> {}",
                crate::model::report::human_bytes(self.bytes_after)
            );
        }
        s.push('\n');
        const SHOWN: usize = 20;
        for p in self.partitions.iter().take(SHOWN) {
            s += &format!(
                "  {:<40} {:>5} -> {:<3} files {:>10} rows\n",
                p.partition, p.files_before, p.files_after, p.rows
            );
        }
        if self.partitions.len() > SHOWN {
            s += &format!(
                "  ... and {} more (see the run report)\n",
                self.partitions.len() - SHOWN
            );
        }
        for a in &self.attention {
            s += &format!("  attention: {a}\n");
        }
        s
    }
}

/// An order-independent digest of a set of rows: how many, and the
/// wrapping sum of a 128-bit hash (XXH3) of each row's values in Arrow's
/// row format (every column, in schema order, exact: decimals as their
/// 128-bit integers, floats by their bits, nulls distinct from every value).
/// The same rows in any order and any batching give the same digest; a
/// changed, missing or extra row changes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest {
    pub rows: u64,
    pub sum: u128,
}

impl Digest {
    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let fields = batch
            .schema()
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let rows = RowConverter::new(fields)?.convert_columns(batch.columns())?;
        for row in rows.iter() {
            self.sum = self
                .sum
                .wrapping_add(xxhash_rust::xxh3::xxh3_128(row.data()));
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    pub fn of(batches: &[RecordBatch]) -> Result<Digest> {
        let mut d = Digest::default();
        for b in batches {
            d.add(b)?;
        }
        Ok(d)
    }

    pub fn hex(&self) -> String {
        format!("{:032x}", self.sum)
    }
}

/// The files a partition of `rows` rows needs.
pub fn files_needed(rows: u64) -> u64 {
    rows.div_ceil(FILE_ROWS as u64).max(1)
}

/// Sorts rows by `customer_id` (nulls last), `ts`, `event_id`, then every
/// other column in schema order: a total order on distinct rows.
pub fn sort_rows(batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut order: Vec<usize> = ["customer_id", "ts", "event_id"]
        .iter()
        .filter_map(|name| schema.index_of(name).ok())
        .collect();
    for i in 0..schema.fields().len() {
        if !order.contains(&i) {
            order.push(i);
        }
    }
    let options = SortOptions {
        descending: false,
        nulls_first: false,
    };
    let fields = order
        .iter()
        .map(|&i| SortField::new_with_options(schema.field(i).data_type().clone(), options))
        .collect();
    let columns: Vec<ArrayRef> = order.iter().map(|&i| batch.column(i).clone()).collect();
    let rows = RowConverter::new(fields)?.convert_columns(&columns)?;
    let n = u32::try_from(batch.num_rows()).map_err(|_| {
        arrow::error::ArrowError::ComputeError("a partition of over 4 billion rows".into())
    })?;
    let mut idx: Vec<u32> = (0..n).collect();
    idx.par_sort_unstable_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));
    Ok(take_record_batch(batch, &UInt32Array::from(idx))?)
}

/// Runs the stage: takes the lake lock, compacts (or lists, on a dry run)
/// and writes the run report.
pub fn run(ctx: &Ctx, opts: &CompactOptions) -> Result<CompactReport> {
    Lake::require(&opts.lake)?;
    let lake = Lake::open(&opts.lake, &ctx.run_id)?;
    run_on(ctx, &lake, opts)
}

/// The table names `--table` accepts on this lake.
fn known_tables(parts: &[PartitionDir]) -> Vec<String> {
    let mut names: Vec<String> = Table::ALL.iter().map(|t| t.name().to_string()).collect();
    for p in parts {
        if !names.contains(&p.table) {
            names.push(p.table.clone());
        }
    }
    names
}

/// [`run`] on a lake the caller holds (the nightly job).
pub fn run_on(ctx: &Ctx, lake: &Lake, opts: &CompactOptions) -> Result<CompactReport> {
    let started_at = ctx.clock.now();
    let all = lake.partition_dirs()?;
    if let Some(t) = &opts.table {
        let known = known_tables(&all);
        if !known.contains(t) {
            return Err(Error::Usage(format!(
                "--table {t:?} is not a table of this lake: one of {}",
                known.join(", ")
            )));
        }
    }
    let month = |d: NaiveDate| (d.year(), d.month());
    let selected: Vec<PartitionDir> = all
        .into_iter()
        .filter(|p| opts.table.as_ref().is_none_or(|t| *t == p.table))
        .filter(|p| opts.month.is_none_or(|m| month(m) == month(p.date)))
        .filter(|p| match &opts.partitions {
            None => true,
            Some(only) => p
                .raw_table()
                .is_some_and(|t| !p.monthly && only.contains(&(t, p.date))),
        })
        .collect();
    let mut report = CompactReport {
        job: "compact",
        run_id: ctx.run_id.clone(),
        started_at: started_at.to_rfc3339(),
        finished_at: String::new(),
        lake: lake.root().display().to_string(),
        month: opts.month.map(|m| m.format("%Y-%m").to_string()),
        table: opts.table.clone(),
        dry_run: opts.dry_run,
        partitions_examined: 0,
        partitions_compacted: 0,
        files_before: 0,
        files_after: 0,
        rows: 0,
        bytes_before: 0,
        bytes_after: 0,
        partitions: Vec::new(),
        attention: Vec::new(),
    };
    ctx.progress
        .start("compact: partitions", selected.len() as u64);
    for part in &selected {
        ctx.progress.advance(1);
        report.partitions_examined += 1;
        let Some(done) = compact_partition(ctx, lake, part, opts.dry_run, |b| b)? else {
            continue;
        };
        report.partitions_compacted += 1;
        report.files_before += done.files_before;
        report.files_after += done.files_after;
        report.rows += done.rows;
        report.bytes_before += done.bytes_before;
        report.bytes_after += done.bytes_after.unwrap_or(0);
        report.partitions.push(done);
    }
    ctx.progress.finish();
    report.finished_at = ctx.clock.now().to_rfc3339();
    lake.write_report(
        &ctx.run_id,
        &serde_json::to_string_pretty(&report).expect("the report serializes"),
    )?;
    Ok(report)
}

/// Compacts one partition if the rule says so. `tamper` sees the sorted
/// rows before they are written (identity outside tests, which use it to
/// prove that a bad rewrite is refused).
fn compact_partition(
    ctx: &Ctx,
    lake: &Lake,
    part: &PartitionDir,
    dry_run: bool,
    tamper: impl Fn(RecordBatch) -> RecordBatch,
) -> Result<Option<PartitionCompaction>> {
    let files = lake.parquet_files(&part.dir)?;
    if files.len() < 2 {
        return Ok(None);
    }
    let mut rows = 0u64;
    let mut bytes_before = 0u64;
    for f in &files {
        rows += lake.footer_rows(f)?;
        bytes_before += lake.file_size(f)?;
    }
    let files_after = files_needed(rows);
    if files.len() as u64 <= files_after {
        return Ok(None);
    }
    let mut done = PartitionCompaction {
        partition: part.rel(),
        files_before: files.len() as u64,
        files_after,
        rows,
        bytes_before,
        bytes_after: None,
        digest: None,
    };
    if dry_run {
        return Ok(Some(done));
    }

    // Read the whole partition; every file must have the same columns (the
    // table's own, for raw tables).
    let expected: Option<SchemaRef> = part.raw_table().map(Table::schema);
    let mut schema: Option<SchemaRef> = None;
    let mut batches = Vec::new();
    let mut before = Digest::default();
    for f in &files {
        for batch in lake.read_batches(f)? {
            let want = schema.get_or_insert_with(|| batch.schema());
            let same = batch.schema().fields() == want.fields()
                && expected
                    .as_ref()
                    .is_none_or(|e| e.fields() == batch.schema().fields());
            if !same {
                return Err(Error::Lake {
                    path: f.clone(),
                    message: format!(
                        "its columns differ from those of the other files of {} (or of the table): not compacted",
                        part.rel()
                    ),
                });
            }
            before.add(&batch)?;
            batches.push(batch);
        }
    }
    let schema = schema.expect("two or more files were read");
    if before.rows != rows {
        return Err(Error::Verify {
            partition: part.dir.clone(),
            message: format!(
                "the files' footers count {rows} rows but {} were read",
                before.rows
            ),
        });
    }
    let all = concat_batches(&schema, &batches)?;
    drop(batches);
    let sorted = tamper(sort_rows(&all)?);
    drop(all);

    let n = sorted.num_rows();
    let mut written: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = (|| -> Result<()> {
        for (i, start) in (0..n).step_by(FILE_ROWS).enumerate() {
            let end = (start + FILE_ROWS).min(n);
            let name = format!("{FILE_PREFIX}{}-{:04}", ctx.run_id, i + 1);
            let mut w = lake.part_writer(&part.dir, &name, schema.clone())?;
            for s in (start..end).step_by(ROW_GROUP_ROWS) {
                w.write(&sorted.slice(s, ROW_GROUP_ROWS.min(end - s)))?;
                w.end_row_group()?;
            }
            written.push(w.finish()?);
        }
        verify(lake, part, &written, &schema, before)?;
        for (tmp, _) in &written {
            lake.sync_file(tmp)?;
        }
        Ok(())
    })();
    drop(sorted);
    if let Err(e) = result {
        for (tmp, _) in &written {
            lake.discard(tmp);
        }
        return Err(e);
    }

    let finals: Vec<PathBuf> = written.iter().map(|(_, to)| to.clone()).collect();
    lake.commit(
        &ctx.run_id,
        &Commit {
            renames: written,
            deletes: files,
        },
    )?;
    let mut bytes_after = 0;
    for f in &finals {
        bytes_after += lake.file_size(f)?;
    }
    done.files_after = finals.len() as u64;
    done.bytes_after = Some(bytes_after);
    done.digest = Some(before.hex());
    Ok(Some(done))
}

/// Reads written (not yet committed) files back: the same columns as
/// `schema`, and rows with the `expected` digest (compaction: the old
/// files'; erasure: the rows kept).
pub(crate) fn verify(
    lake: &Lake,
    part: &PartitionDir,
    written: &[(PathBuf, PathBuf)],
    schema: &SchemaRef,
    expected: Digest,
) -> Result<()> {
    let mut after = Digest::default();
    for (tmp, _) in written {
        for batch in lake.read_batches(tmp)? {
            if batch.schema().fields() != schema.fields() {
                return Err(Error::Verify {
                    partition: part.dir.clone(),
                    message: format!("{} reads back with other columns", tmp.display()),
                });
            }
            after.add(&batch)?;
        }
    }
    if after != expected {
        let files: Vec<String> = written
            .iter()
            .map(|(tmp, _)| tmp.display().to_string())
            .collect();
        return Err(Error::Verify {
            partition: part.dir.clone(),
            message: format!(
                "{}: {} rows with digest {} were written, {} rows with digest {} read back",
                files.join(", "),
                expected.rows,
                expected.hex(),
                after.rows,
                after.hex()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array, StringArray};
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    use super::*;
    use crate::lake::tables::{ActivityRow, Id, Str, TableRow};
    use crate::model::ctx::FixedClock;
    use crate::model::ids::EventId;
    use crate::model::time::Ts;

    fn ctx(run: &str) -> Ctx {
        Ctx::with_run_id(
            Arc::new(FixedClock(
                Utc.with_ymd_and_hms(2026, 11, 2, 3, 0, 0).unwrap(),
            )),
            run,
        )
    }

    fn row(i: u64, customer: Option<&str>, ts: i64) -> ActivityRow {
        ActivityRow {
            event_id: Id(i as EventId * 7919),
            ts: Ts(ts),
            customer_id: customer.map(Str::from),
            vm_id: "vm-1".into(),
            user_id: None,
            activity_type: "command".into(),
            command: Some(format!("echo {i}")),
            command_redacted: false,
            pattern_name: None,
            duration_seconds: Some(i as f64 / 3.0),
            exit_code: Some(i as i32 % 3),
            source_file: "vm-1/commands/a.jsonl".into(),
            source_line: i as i64,
        }
    }

    /// A lake whose activity partition for 2026-10-01 has `files` files.
    fn lake_with_files(root: &Path, files: usize, per_file: u64) -> Lake {
        let lake = Lake::open(root, "init").unwrap();
        let dir = lake.partition_dir(Table::Activity, "2026-10-01".parse().unwrap());
        let base = 1_790_812_800_000_000; // 2026-10-01T00:00:00Z
        let mut commit = Commit::default();
        for f in 0..files {
            let rows: Vec<ActivityRow> = (0..per_file)
                .map(|i| {
                    let n = f as u64 * per_file + i;
                    let customer = ["c2", "c1"].get((n % 3) as usize).copied();
                    row(n, customer, base + (per_file - i) as i64 * 1_000_000)
                })
                .collect();
            let mut w = lake
                .part_writer(&dir, &format!("part-r{f}-0001"), ActivityRow::schema())
                .unwrap();
            w.write(&ActivityRow::batch(&rows)).unwrap();
            commit.renames.push(w.finish().unwrap());
        }
        lake.commit("init", &commit).unwrap();
        lake
    }

    fn activity_part(lake: &Lake) -> PartitionDir {
        lake.partition_dirs()
            .unwrap()
            .into_iter()
            .find(|p| p.table == "activity")
            .unwrap()
    }

    fn read_all(lake: &Lake, part: &PartitionDir) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        for f in lake.parquet_files(&part.dir).unwrap() {
            out.extend(lake.read_batches(&f).unwrap());
        }
        out
    }

    fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    fs::read(&p).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn files_needed_rounds_up_and_is_at_least_one() {
        assert_eq!(files_needed(0), 1);
        assert_eq!(files_needed(1), 1);
        assert_eq!(files_needed(FILE_ROWS as u64), 1);
        assert_eq!(files_needed(FILE_ROWS as u64 + 1), 2);
    }

    #[test]
    fn a_partition_is_rewritten_sorted_with_the_same_rows_then_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let lake = lake_with_files(tmp.path(), 4, 25);
        let part = activity_part(&lake);
        let before = Digest::of(&read_all(&lake, &part)).unwrap();
        assert_eq!(before.rows, 100);

        let dry = compact_partition(&ctx("dry"), &lake, &part, true, |b| b)
            .unwrap()
            .unwrap();
        assert_eq!((dry.files_before, dry.files_after, dry.rows), (4, 1, 100));
        assert_eq!(lake.parquet_files(&part.dir).unwrap().len(), 4);

        let done = compact_partition(&ctx("c1"), &lake, &part, false, |b| b)
            .unwrap()
            .unwrap();
        assert_eq!(done.files_after, 1);
        assert_eq!(done.digest, Some(before.hex()));
        let files = lake.parquet_files(&part.dir).unwrap();
        assert_eq!(
            files
                .iter()
                .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
            vec!["compact-c1-0001.parquet"]
        );
        let after = read_all(&lake, &part);
        assert_eq!(Digest::of(&after).unwrap(), before);
        assert_eq!(after[0].schema(), ActivityRow::schema());
        // customer, nulls last, then time
        let keys: Vec<(Option<String>, i64)> = after
            .iter()
            .flat_map(|b| {
                let c = b
                    .column_by_name("customer_id")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .clone();
                let t = arrow::compute::cast(
                    b.column_by_name("ts").unwrap(),
                    &arrow::datatypes::DataType::Int64,
                )
                .unwrap();
                let t = t.as_any().downcast_ref::<Int64Array>().unwrap().clone();
                (0..b.num_rows())
                    .map(|i| (c.is_valid(i).then(|| c.value(i).to_string()), t.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_by(|a, b| match (&a.0, &b.0) {
            (Some(x), Some(y)) => x.cmp(y).then(a.1.cmp(&b.1)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.1.cmp(&b.1),
        });
        assert_eq!(keys, sorted);
        assert_eq!(keys[0].0.as_deref(), Some("c1"));
        assert_eq!(keys[99].0, None);

        // A single file is not compacted again.
        assert_eq!(
            compact_partition(&ctx("c2"), &lake, &part, false, |b| b).unwrap(),
            None
        );
    }

    #[test]
    fn a_rewrite_that_does_not_verify_is_refused_and_the_partition_is_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let lake = lake_with_files(tmp.path(), 3, 10);
        let part = activity_part(&lake);
        let before = snapshot(&part.dir);
        // one row lost
        let err = compact_partition(&ctx("bad"), &lake, &part, false, |b| {
            b.slice(0, b.num_rows() - 1)
        })
        .unwrap_err();
        assert!(matches!(err, Error::Verify { .. }), "{err}");
        assert!(err.to_string().contains("30 rows"), "{err}");
        assert_eq!(snapshot(&part.dir), before);
        // one value changed, same row count
        let err = compact_partition(&ctx("bad"), &lake, &part, false, |b| {
            let mut cols = b.columns().to_vec();
            let i = b.schema().index_of("source_line").unwrap();
            let mut v: Vec<i64> = cols[i]
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec();
            v[3] += 1;
            cols[i] = Arc::new(Int64Array::from(v));
            RecordBatch::try_new(b.schema(), cols).unwrap()
        })
        .unwrap_err();
        assert!(matches!(err, Error::Verify { .. }), "{err}");
        assert_eq!(snapshot(&part.dir), before);
        assert!(!tmp.path().join("_runs/bad.commit.json").exists());
    }

    #[test]
    fn a_run_compacts_only_what_it_selects_and_a_second_run_does_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        drop(lake_with_files(tmp.path(), 3, 5));
        let mut opts = CompactOptions::all(tmp.path().to_path_buf());
        opts.month = Some("2026-09-01".parse().unwrap());
        let r = run(&ctx("sep"), &opts).unwrap();
        assert_eq!((r.partitions_examined, r.partitions_compacted), (0, 0));
        opts.month = None;
        opts.table = Some("nope".into());
        assert!(matches!(run(&ctx("x"), &opts), Err(Error::Usage(_))));
        opts.table = Some("activity".into());
        opts.partitions = Some(BTreeSet::from([(
            Table::Activity,
            "2026-10-02".parse().unwrap(),
        )]));
        let r = run(&ctx("other-day"), &opts).unwrap();
        assert_eq!(r.partitions_examined, 0);
        opts.partitions = Some(BTreeSet::from([(
            Table::Activity,
            "2026-10-01".parse().unwrap(),
        )]));
        let r = run(&ctx("c1"), &opts).unwrap();
        assert_eq!(
            (
                r.partitions_compacted,
                r.files_before,
                r.files_after,
                r.rows
            ),
            (1, 3, 1, 15)
        );
        assert!(tmp.path().join("_runs/c1.json").exists());
        let again = run(&ctx("c2"), &CompactOptions::all(tmp.path().to_path_buf())).unwrap();
        assert_eq!(again.partitions_compacted, 0);
        assert_eq!(again.partitions_examined, 1);
    }

    fn batch_of(values: &[(Option<String>, i64)]) -> RecordBatch {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("customer_id", arrow::datatypes::DataType::Utf8, true),
            arrow::datatypes::Field::new("n", arrow::datatypes::DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(
                    values.iter().map(|v| v.0.clone()).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    values.iter().map(|v| v.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn value() -> impl Strategy<Value = (Option<String>, i64)> {
        (proptest::option::of("[a-c]{0,2}"), -3i64..3)
    }

    proptest! {
        #[test]
        fn the_digest_ignores_order_and_batching(
            rows in prop::collection::vec(value(), 0..40),
            perm in prop::collection::vec(any::<prop::sample::Index>(), 40),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut shuffled = rows.clone();
            for (i, p) in perm.iter().enumerate().take(shuffled.len()) {
                let j = p.index(shuffled.len());
                shuffled.swap(i, j);
            }
            let at = if shuffled.is_empty() { 0 } else { cut.index(shuffled.len() + 1) };
            let whole = Digest::of(&[batch_of(&rows)]).unwrap();
            let parts = Digest::of(&[batch_of(&shuffled[..at]), batch_of(&shuffled[at..])]).unwrap();
            prop_assert_eq!(whole, parts);
        }

        #[test]
        fn the_digest_sees_any_single_value_change(
            rows in prop::collection::vec(value(), 1..40),
            at in any::<prop::sample::Index>(),
            new in value(),
            column in 0usize..2,
        ) {
            let i = at.index(rows.len());
            let mut changed = rows.clone();
            match column {
                0 => changed[i].0 = new.0.clone(),
                _ => changed[i].1 = new.1,
            }
            prop_assume!(changed[i] != rows[i]);
            prop_assert_ne!(
                Digest::of(&[batch_of(&rows)]).unwrap(),
                Digest::of(&[batch_of(&changed)]).unwrap()
            );
        }

        #[test]
        fn the_digest_counts_repeated_rows(rows in prop::collection::vec(value(), 1..20)) {
            let mut doubled = rows.clone();
            doubled.push(rows[0].clone());
            prop_assert_ne!(
                Digest::of(&[batch_of(&rows)]).unwrap(),
                Digest::of(&[batch_of(&doubled)]).unwrap()
            );
        }
    }
}
