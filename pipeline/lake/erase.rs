//! The erasure stage (a privacy request): removes one customer's rows from
//! every partition of the lake, rewriting only the files that hold them, in
//! one journaled commit, and records what it did so that no later ingest
//! brings the rows back.
//!
//! ```text
//! examined:  <lake>/<table>/date=*/        api_usage, api_requests, resource_usage, activity, rejects
//!            <lake>/priced/<table>/date=*/, <lake>/daily/<table>/date=*/, <lake>/monthly/<table>/month=*/
//! written:   a file with the customer's rows is rewritten without them under
//!            its own name (a file left empty is deleted); every other file
//!            stays byte-identical
//! recorded:  <lake>/_erasures/<run_id>.json   (see schemas/erasures.md)
//!            <lake>/_runs/<run_id>.json       the run report
//! kept:      the out store (issued invoices, manifests, Stripe files), the
//!            run reports, <lake>/_stripe, <lake>/_registry
//! ```
//!
//! **Which rows.** A row is the customer's when its `customer_id` is the
//! customer, or when its `customer_id` is null and its `vm_id` is one of the
//! customer's VMs: those the lake's registry copy
//! (`<lake>/_registry/customers.csv`) lists for the customer, and those of
//! the rows attributed to the customer. Rejects carry `customer_id` and
//! `vm_id` like every table, so the same rule applies to them.
//!
//! **Sticking.** Ingest reads the records: a line dated before a record's
//! `erased_at`, from a file whose VM the registry attributes to the
//! customer (or, attributed to no one, that is one of the recorded VMs), is
//! skipped with the reason [`ERASED_REASON`].
//!
//! **Verify, then commit.** Every rewritten file is read back before the
//! commit: its digest must be that of the rows kept, and the rows removed
//! those counted; otherwise nothing is committed ([`Error::Verify`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::compute::{cast, filter_record_batch, not};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::lake::compact::Digest;
use crate::lake::{Commit, Lake, PartWriter, PartitionDir};
use crate::model::ctx::Ctx;
use crate::model::error::{Error, Result};
use crate::model::ids;
use crate::model::time::Ts;

/// The skip reason ingest gives a line of an erased customer.
pub const ERASED_REASON: &str = "customer erased";
/// Where erasure records live, under the lake.
pub const RECORDS_DIR: &str = "_erasures";

/// What stays as it was, said in every report and record.
const KEPT: [&str; 4] = [
    "issued invoices, manifests and Stripe files in the out store (erase never touches it)",
    "run reports in <lake>/_runs (counts and ids, no event rows)",
    "the Stripe push record in <lake>/_stripe (what Stripe already accepted)",
    "the registry copy in <lake>/_registry (replaced by the next ingest from the input's customers.csv)",
];

#[derive(Debug, Clone)]
pub struct EraseOptions {
    pub lake: PathBuf,
    pub customer: String,
    /// Count what would be removed; change nothing.
    pub dry_run: bool,
}

/// One partition with the customer's rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasedPartition {
    /// `api_usage/date=2026-10-01`, relative to the lake.
    pub partition: String,
    pub rows_removed: u64,
    /// Files rewritten without the rows (others remain in them).
    pub files_rewritten: u64,
    /// Files that held only the customer's rows.
    pub files_deleted: u64,
    /// Files of the partition without any of the customer's rows.
    pub files_untouched: u64,
}

/// `<lake>/_erasures/<run_id>.json`: what an erasure did. Ingest reads
/// `customer_id`, `vm_ids` and `erased_at`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErasureRecord {
    pub customer_id: String,
    pub run_id: String,
    /// When the erasure ran: events of the customer dated before it are not
    /// ingested again.
    pub erased_at: DateTime<Utc>,
    /// The VMs whose unattributed rows were the customer's.
    pub vm_ids: Vec<String>,
    pub rule: String,
    pub rows_removed: u64,
    pub files_rewritten: u64,
    pub files_deleted: u64,
    pub partitions: Vec<ErasedPartition>,
    pub kept: Vec<String>,
}

const RULE: &str = "rows whose customer_id is the customer, and rows with a null customer_id whose vm_id is one of vm_ids";

#[derive(Debug, Clone, Serialize)]
pub struct EraseReport {
    pub job: &'static str,
    pub run_id: String,
    pub started_at: String,
    pub finished_at: String,
    pub lake: String,
    pub customer_id: String,
    /// Nothing was changed: the counts say what would have been.
    pub dry_run: bool,
    pub vm_ids: Vec<String>,
    pub rows_removed: u64,
    pub files_examined: u64,
    pub files_rewritten: u64,
    pub files_deleted: u64,
    pub files_untouched: u64,
    /// The partitions that held the customer's rows.
    pub partitions: Vec<ErasedPartition>,
    /// The erasure record, relative to the lake (none on a dry run).
    pub record: Option<String>,
    pub kept: Vec<String>,
    pub attention: Vec<String>,
    pub notices: Vec<String>,
}

crate::model::report::stage_report!(EraseReport);

impl EraseReport {
    pub fn needs_attention(&self) -> bool {
        !self.attention.is_empty()
    }

    pub fn summary(&self) -> String {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let mut s = format!(
            "erase {} customer {}{}: {verb} {} rows from {} partitions; {} files rewritten, {} deleted, {} untouched\n",
            self.run_id,
            self.customer_id,
            if self.dry_run { " (dry run)" } else { "" },
            self.rows_removed,
            self.partitions.len(),
            self.files_rewritten,
            self.files_deleted,
            self.files_untouched,
        );
        let mut per_table: BTreeMap<&str, u64> = BTreeMap::new();
        for p in &self.partitions {
            let table = p.partition.rsplit_once('/').map_or("", |(t, _)| t);
            *per_table.entry(table).or_default() += p.rows_removed;
        }
        for (table, n) in per_table {
            s += &format!("  {table:<24} {n:>10} rows\n");
        }
        if let Some(r) = &self.record {
            s += &format!("  recorded in {r}\n");
        }
        s += "  kept: issued invoices in the out store (never touched)\n";
        for n in &self.notices {
            s += &format!("  notice: {n}\n");
        }
        for a in &self.attention {
            s += &format!("  attention: {a}\n");
        }
        s
    }
}

/// The erasure records of a lake, as ingest applies them.
#[derive(Debug, Clone, Default)]
pub struct Erasures {
    records: Vec<(String, BTreeSet<String>, Ts)>,
}

impl Erasures {
    /// Reads `<lake>/_erasures/*.json`. An unreadable record is an error:
    /// ingesting without it could bring erased rows back.
    pub fn load(lake: &Lake) -> Result<Erasures> {
        let dir = lake.root().join(RECORDS_DIR);
        let paths: Vec<PathBuf> = lake
            .files_in(&dir)?
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        let mut records = Vec::new();
        for path in paths {
            let Some(bytes) = lake.read_file(&path)? else {
                continue;
            };
            let r: ErasureRecord = serde_json::from_slice(&bytes).map_err(|e| Error::Lake {
                path: path.clone(),
                message: format!("unreadable erasure record: {e}"),
            })?;
            records.push((
                r.customer_id,
                r.vm_ids.into_iter().collect(),
                Ts(r.erased_at.timestamp_micros()),
            ));
        }
        Ok(Erasures { records })
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Lines dated before the returned time, from a file of `vm` attributed
    /// to `customer`, belong to an erased customer.
    pub fn cutoff(&self, customer: Option<&str>, vm: &str) -> Option<Ts> {
        self.records
            .iter()
            .filter(|(c, vms, _)| match customer {
                Some(customer) => customer == c,
                None => vms.contains(vm),
            })
            .map(|(_, _, t)| *t)
            .max()
    }
}

/// A text column of a batch as UTF-8 (polars may write views or large
/// strings), `None` when the batch lacks it.
fn text_column(batch: &RecordBatch, name: &str) -> Result<Option<StringArray>> {
    let Some(col) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let col = cast(col, &DataType::Utf8)?;
    Ok(col.as_any().downcast_ref::<StringArray>().cloned())
}

/// True for every row of `batch` that is the customer's.
fn customer_rows(
    batch: &RecordBatch,
    customer: &str,
    vms: &BTreeSet<String>,
) -> Result<BooleanArray> {
    let customers = text_column(batch, "customer_id")?;
    let vm_ids = text_column(batch, "vm_id")?;
    Ok((0..batch.num_rows())
        .map(|i| {
            let c = customers
                .as_ref()
                .and_then(|c| c.is_valid(i).then(|| c.value(i)));
            let vm = vm_ids
                .as_ref()
                .and_then(|v| v.is_valid(i).then(|| v.value(i)));
            Some(match c {
                Some(c) => c == customer,
                None => vm.is_some_and(|vm| vms.contains(vm)),
            })
        })
        .collect())
}

/// Reads only `customer_id` and `vm_id` of a file, batch by batch.
fn read_keys(
    lake: &Lake,
    path: &Path,
    mut f: impl FnMut(&RecordBatch) -> Result<()>,
) -> Result<()> {
    lake.read_columns(path, &["customer_id", "vm_id"], |batch| f(&batch))
}

/// A file and how many of its rows are the customer's.
struct Found {
    path: PathBuf,
    part: usize,
    rows: u64,
}

/// Runs the stage: takes the lake lock, removes (or counts, on a dry run)
/// the customer's rows, records the erasure and writes the run report.
pub fn run(ctx: &Ctx, opts: &EraseOptions) -> Result<EraseReport> {
    if !ids::valid_id(&opts.customer) {
        return Err(Error::Usage(format!(
            "--customer {:?} is not a customer id (1-64 of A-Z a-z 0-9 . _ -)",
            opts.customer
        )));
    }
    Lake::require(&opts.lake)?;
    let lake = Lake::open(&opts.lake, &ctx.run_id)?;
    run_on(ctx, &lake, opts)
}

/// [`run`] on a lake the caller holds.
pub fn run_on(ctx: &Ctx, lake: &Lake, opts: &EraseOptions) -> Result<EraseReport> {
    let started_at = ctx.clock.now();
    let customer = opts.customer.as_str();
    let root = lake.root().to_path_buf();
    let mut report = EraseReport {
        job: "erase",
        run_id: ctx.run_id.clone(),
        started_at: started_at.to_rfc3339(),
        finished_at: String::new(),
        lake: opts.lake.display().to_string(),
        customer_id: customer.to_string(),
        dry_run: opts.dry_run,
        vm_ids: Vec::new(),
        rows_removed: 0,
        files_examined: 0,
        files_rewritten: 0,
        files_deleted: 0,
        files_untouched: 0,
        partitions: Vec::new(),
        record: None,
        kept: KEPT.iter().map(|s| s.to_string()).collect(),
        attention: Vec::new(),
        notices: Vec::new(),
    };

    // The customer's VMs: the registry copy's, then those of its rows.
    let mut vms: BTreeSet<String> = BTreeSet::new();
    let registry_path = Lake::registry_path(&root);
    let mut in_registry = false;
    if lake.exists(&registry_path)? {
        let (registry, problems) = lake.customers(None)?;
        if let Some(c) = registry
            .customers
            .iter()
            .find(|c| &*c.customer_id == customer)
        {
            in_registry = true;
            vms.extend(c.vm_ids.iter().cloned());
            report.notices.push(format!(
                "{} still lists {customer} (name, email): remove the customer from the input's customers.csv; the next ingest replaces the copy",
                registry_path.display()
            ));
        }
        if !problems.is_empty() {
            report.notices.push(format!(
                "{} has {} malformed row(s): VMs listed only there are not known to this erasure",
                registry_path.display(),
                problems.len()
            ));
        }
    }
    let parts = lake.partition_dirs()?;
    let mut files: Vec<(usize, PathBuf)> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        for path in lake.parquet_files(&part.dir)? {
            files.push((i, path));
        }
    }
    let mut attributed = 0u64;
    for (_, path) in &files {
        read_keys(lake, path, |batch| {
            let Some(c) = text_column(batch, "customer_id")? else {
                return Ok(());
            };
            let v = text_column(batch, "vm_id")?;
            for i in 0..batch.num_rows() {
                if c.is_valid(i) && c.value(i) == customer {
                    attributed += 1;
                    if let Some(v) = &v
                        && v.is_valid(i)
                    {
                        vms.insert(v.value(i).to_string());
                    }
                }
            }
            Ok(())
        })?;
    }
    report.vm_ids = vms.iter().cloned().collect();
    if !in_registry && attributed == 0 {
        report.attention.push(format!(
            "customer {customer} has no rows in the lake and is not in its registry copy: check the id (the erasure is recorded all the same, so the customer's lines are never ingested)"
        ));
    }

    // Which files hold the customer's rows, and how many.
    let mut found: Vec<Found> = Vec::new();
    let mut per_part: BTreeMap<usize, ErasedPartition> = BTreeMap::new();
    for (part, path) in &files {
        report.files_examined += 1;
        let mut rows = 0u64;
        let mut has_customer = false;
        read_keys(lake, path, |batch| {
            has_customer |= batch.column_by_name("customer_id").is_some();
            rows += customer_rows(batch, customer, &vms)?.true_count() as u64;
            Ok(())
        })?;
        if !has_customer {
            report.attention.push(format!(
                "{} has no customer_id column: not examined",
                path.display()
            ));
        }
        let entry = per_part.entry(*part).or_insert_with(|| ErasedPartition {
            partition: parts[*part].rel(),
            ..Default::default()
        });
        if rows == 0 {
            entry.files_untouched += 1;
            report.files_untouched += 1;
        } else {
            entry.rows_removed += rows;
            report.rows_removed += rows;
            found.push(Found {
                path: path.clone(),
                part: *part,
                rows,
            });
        }
    }

    // Rewrite (or, on a dry run, only count what would become of) each file.
    let mut commit = Commit::default();
    let result = (|| -> Result<()> {
        for f in &found {
            let kept = if opts.dry_run {
                lake.footer_rows(&f.path)? > f.rows
            } else {
                let rewritten =
                    rewrite_file(lake, &parts[f.part], &f.path, customer, &vms, f.rows)?;
                let kept = rewritten.is_some();
                match rewritten {
                    Some(rename) => commit.renames.push(rename),
                    None => commit.deletes.push(f.path.clone()),
                }
                kept
            };
            let entry = per_part.get_mut(&f.part).expect("counted above");
            if kept {
                entry.files_rewritten += 1;
                report.files_rewritten += 1;
            } else {
                entry.files_deleted += 1;
                report.files_deleted += 1;
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (tmp, _) in &commit.renames {
            lake.discard(tmp);
        }
        return Err(e);
    }
    report.partitions = per_part
        .into_values()
        .filter(|p| p.rows_removed > 0)
        .collect();

    if !opts.dry_run {
        let dir = root.join(RECORDS_DIR);
        // (a record left by a crash before its commit is removed by
        // `Lake::open`)
        let record = ErasureRecord {
            customer_id: customer.to_string(),
            run_id: ctx.run_id.clone(),
            erased_at: started_at,
            vm_ids: report.vm_ids.clone(),
            rule: RULE.into(),
            rows_removed: report.rows_removed,
            files_rewritten: report.files_rewritten,
            files_deleted: report.files_deleted,
            partitions: report.partitions.clone(),
            kept: report.kept.clone(),
        };
        // A record is never overwritten (a run id can repeat with a pinned
        // clock): a second one of the same run id gets a suffix.
        let name = (1..)
            .map(|n| match n {
                1 => ctx.run_id.clone(),
                n => format!("{}-{n}", ctx.run_id),
            })
            .map(|name| (dir.join(format!("{name}.json")), name))
            .find(|(path, _)| !lake.exists(path).unwrap_or(true))
            .map(|(_, name)| name)
            .expect("a free name");
        let path = dir.join(format!("{name}.json"));
        let tmp = lake.staging_path(&path)?;
        let json = serde_json::to_string_pretty(&record).expect("the record serializes");
        let written = lake
            .write_file(&tmp, json.as_bytes())
            .and_then(|()| lake.sync_file(&tmp));
        if let Err(e) = written {
            for (tmp, _) in &commit.renames {
                lake.discard(tmp);
            }
            return Err(e);
        }
        // The record becomes visible with the rewritten files, in one
        // journaled commit.
        commit.renames.insert(0, (tmp, path));
        lake.commit(&ctx.run_id, &commit)?;
        report.record = Some(format!("{RECORDS_DIR}/{name}.json"));
        report.notices.push(format!(
            "re-billing a month that had an invoice for {customer} (`meter bill`, `meter rerun`) writes a revision without it, whose corrections credit that invoice: review before `meter approve`"
        ));
    }
    report.finished_at = ctx.clock.now().to_rfc3339();
    lake.write_report(
        &ctx.run_id,
        &serde_json::to_string_pretty(&report).expect("the report serializes"),
    )?;
    Ok(report)
}

/// Writes `path` without the customer's rows under a temporary name (the
/// rename over `path` is the commit's), verified: `expected` rows removed,
/// and the file reads back with exactly the rows kept. `None` when no row
/// is left (the file is to be deleted).
fn rewrite_file(
    lake: &Lake,
    part: &PartitionDir,
    path: &Path,
    customer: &str,
    vms: &BTreeSet<String>,
    expected: u64,
) -> Result<Option<(PathBuf, PathBuf)>> {
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".parquet"))
        .expect("lake files are named *.parquet")
        .to_string();
    let mut writer: Option<PartWriter> = None;
    let mut kept = Digest::default();
    let mut removed = 0u64;
    let outcome = lake.read_each(path, |batch| {
        let erased = customer_rows(&batch, customer, vms)?;
        removed += erased.true_count() as u64;
        let batch = filter_record_batch(&batch, &not(&erased)?)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        kept.add(&batch)?;
        if writer.is_none() {
            writer = Some(lake.part_writer(&part.dir, &stem, batch.schema())?);
        }
        writer.as_mut().expect("opened above").write(&batch)
    });
    let finished = match writer {
        Some(w) => Some(w.finish()?),
        None => None,
    };
    let discard = |finished: &Option<(PathBuf, PathBuf)>| {
        if let Some((tmp, _)) = finished {
            lake.discard(tmp);
        }
    };
    let schema = match outcome {
        Ok(schema) => schema,
        Err(e) => {
            discard(&finished);
            return Err(e);
        }
    };
    if removed != expected {
        discard(&finished);
        return Err(Error::Verify {
            partition: part.dir.clone(),
            message: format!(
                "{}: {expected} rows of the customer were counted but {removed} were removed",
                path.display()
            ),
        });
    }
    let Some((tmp, to)) = finished else {
        return Ok(None);
    };
    let written = [(tmp, to)];
    if let Err(e) = crate::lake::compact::verify(lake, part, &written, &schema, kept)
        .and_then(|()| lake.sync_file(&written[0].0))
    {
        let _ = lake.remove_file(&written[0].0);
        return Err(e);
    }
    let [(tmp, to)] = written;
    Ok(Some((tmp, to)))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::Arc;

    use chrono::TimeZone;

    use super::*;
    use crate::lake::tables::{ActivityRow, Id, Str, Table, TableRow};
    use crate::model::ctx::FixedClock;

    fn ctx(run: &str) -> Ctx {
        Ctx::with_run_id(
            Arc::new(FixedClock(
                Utc.with_ymd_and_hms(2026, 11, 2, 3, 0, 0).unwrap(),
            )),
            run,
        )
    }

    fn row(i: u64, customer: Option<&str>, vm: &str) -> ActivityRow {
        ActivityRow {
            event_id: Id(i as u128),
            ts: Ts(1_790_812_800_000_000 + i as i64),
            customer_id: customer.map(Str::from),
            vm_id: vm.into(),
            user_id: None,
            activity_type: "command".into(),
            command: Some(format!("ls {i}")),
            command_redacted: false,
            pattern_name: None,
            duration_seconds: Some(0.5),
            exit_code: Some(0),
            source_file: format!("{vm}/commands/a.jsonl").into(),
            source_line: i as i64,
        }
    }

    fn write(lake: &Lake, date: &str, name: &str, rows: &[ActivityRow]) -> PathBuf {
        let dir = lake.partition_dir(Table::Activity, date.parse().unwrap());
        let mut w = lake.part_writer(&dir, name, ActivityRow::schema()).unwrap();
        w.write(&ActivityRow::batch(rows)).unwrap();
        let rename = w.finish().unwrap();
        let to = rename.1.clone();
        lake.commit(
            "init",
            &Commit {
                renames: vec![rename],
                deletes: vec![],
            },
        )
        .unwrap();
        to
    }

    #[test]
    fn only_files_with_the_customers_rows_change() {
        let tmp = tempfile::tempdir().unwrap();
        let lake = Lake::open(tmp.path(), "init").unwrap();
        fs::create_dir_all(tmp.path().join("_registry")).unwrap();
        fs::write(
            Lake::registry_path(tmp.path()),
            "customer_id,name,email,tier,vm_ids,currency,stripe_customer_id,status,created_at\n\
             c1,One,a@b.example,pro,vm-a;vm-z,EUR,cus_1,active,2026-01-01\n\
             c2,Two,b@b.example,pro,vm-b,EUR,cus_2,active,2026-01-01\n",
        )
        .unwrap();
        let mixed = write(
            &lake,
            "2026-10-01",
            "part-a",
            &[
                row(1, Some("c1"), "vm-a"),
                row(2, Some("c2"), "vm-b"),
                row(3, None, "vm-z"),
                row(4, None, "vm-q"),
            ],
        );
        let only = write(&lake, "2026-10-02", "part-a", &[row(5, Some("c1"), "vm-a")]);
        let other = write(&lake, "2026-10-01", "part-b", &[row(6, Some("c2"), "vm-b")]);
        let other_bytes = fs::read(&other).unwrap();
        drop(lake);
        let opts = EraseOptions {
            lake: tmp.path().to_path_buf(),
            customer: "c1".into(),
            dry_run: true,
        };
        let dry = run(&ctx("dry"), &opts).unwrap();
        assert_eq!(
            (
                dry.rows_removed,
                dry.files_rewritten,
                dry.files_deleted,
                dry.files_untouched
            ),
            (3, 1, 1, 1)
        );
        assert_eq!(dry.vm_ids, vec!["vm-a", "vm-z"]);
        assert!(only.exists() && !tmp.path().join(RECORDS_DIR).exists());

        let done = run(
            &ctx("erase-1"),
            &EraseOptions {
                dry_run: false,
                ..opts
            },
        )
        .unwrap();
        assert_eq!(done.rows_removed, 3);
        assert!(!done.needs_attention(), "{:?}", done.attention);
        assert!(!only.exists() && !only.parent().unwrap().exists());
        assert_eq!(fs::read(&other).unwrap(), other_bytes);
        let lake = Lake::open(tmp.path(), "check").unwrap();
        let left = lake.read_batches(&mixed).unwrap();
        let ids: Vec<String> = left
            .iter()
            .flat_map(|b| {
                let c = text_column(b, "vm_id").unwrap().unwrap();
                (0..c.len())
                    .map(|i| c.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(ids, vec!["vm-b", "vm-q"]);
        let record: ErasureRecord = serde_json::from_str(
            &fs::read_to_string(tmp.path().join("_erasures/erase-1.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(record.customer_id, "c1");
        assert_eq!(record.rows_removed, 3);
        assert_eq!(record.partitions.len(), 2);

        let erasures = Erasures::load(&lake).unwrap();
        let at = Some(Ts(Utc
            .with_ymd_and_hms(2026, 11, 2, 3, 0, 0)
            .unwrap()
            .timestamp_micros()));
        assert_eq!(erasures.cutoff(Some("c1"), "vm-new"), at);
        assert_eq!(erasures.cutoff(None, "vm-z"), at);
        assert_eq!(erasures.cutoff(Some("c2"), "vm-z"), None);
        assert_eq!(erasures.cutoff(None, "vm-q"), None);
    }

    #[test]
    fn an_unknown_customer_needs_attention_and_a_bad_id_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        drop(Lake::open(tmp.path(), "init").unwrap());
        let mut opts = EraseOptions {
            lake: tmp.path().to_path_buf(),
            customer: "../etc".into(),
            dry_run: true,
        };
        assert!(matches!(run(&ctx("x"), &opts), Err(Error::Usage(_))));
        opts.customer = "nobody".into();
        let r = run(&ctx("x"), &opts).unwrap();
        assert!(r.needs_attention());
        assert_eq!(r.rows_removed, 0);
    }

    #[test]
    fn an_unreadable_record_stops_ingest_rather_than_bringing_rows_back() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join(RECORDS_DIR)).unwrap();
        fs::write(tmp.path().join("_erasures/x.json"), "{").unwrap();
        assert!(matches!(
            Erasures::load(&Lake::open(tmp.path(), "load").unwrap()),
            Err(Error::Lake { .. })
        ));
    }
}
