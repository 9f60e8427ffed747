//! `meter compact` on lakes built by several nightly-style ingests (one VM
//! more each time, so each partition holds a file per run), checked with
//! DuckDB against a copy taken before; the nightly job's compaction; and
//! compaction killed after every file it writes.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, StringArray, TimestampMicrosecondArray};
use chrono::NaiveDate;
use meter::lake::Lake;
use meter::sample::{self, SampleOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::*;

/// The raw tables and rejects.
pub const RAW: [&str; 5] = [
    "api_usage",
    "api_requests",
    "resource_usage",
    "activity",
    "rejects",
];

/// A generated input tree in `<tmp>/full`.
pub fn generate(tmp: &Path, customers: usize, days: u32, events: u32) -> PathBuf {
    let full = tmp.join("full");
    sample::generate(&SampleOptions {
        out: full.clone(),
        customers,
        days,
        events_per_day: events,
        seed: 11,
        clean: false,
        start: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
        usage_format: Default::default(),
        resource_interval_s: meter::sample::DEFAULT_RESOURCE_INTERVAL_S,
        contract_every: 0,
    })
    .unwrap();
    full
}

/// The VM folders of an input tree, sorted.
pub fn vms(input: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(input)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// `<into>` with the registry of `full` and its first `n` VM folders.
pub fn partial_input(full: &Path, into: &Path, n: usize) {
    std::fs::create_dir_all(into).unwrap();
    for f in ["customers.csv", "users.csv"] {
        if full.join(f).exists() {
            std::fs::copy(full.join(f), into.join(f)).unwrap();
        }
    }
    for vm in vms(full).iter().take(n) {
        if !into.join(vm).exists() {
            copy_dir(&full.join(vm), &into.join(vm));
        }
    }
}

/// A lake in `<tmp>/lake` ingested once per VM of `full` but the last, each
/// run adding one VM: a partition holds a file per VM that logged that day.
pub fn lake_in_steps(tmp: &Path, full: &Path) -> PathBuf {
    let input = tmp.join("input");
    let lake = tmp.join("lake");
    let n = vms(full).len();
    for i in 1..n {
        partial_input(full, &input, i);
        assert_accounted(&ingest(&input, &lake, &format!("ingest-{i}")));
    }
    lake
}

/// Files per partition directory (`api_usage/date=2026-10-01`).
pub fn files_per_partition(lake: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in list_files(lake) {
        if let Some((dir, name)) = f.rsplit_once('/')
            && name.ends_with(".parquet")
        {
            out.entry(dir.to_string())
                .or_default()
                .push(name.to_string());
        }
    }
    out
}

/// Rows of `a` not in `b`, as multisets (EXCEPT ALL), over one table.
pub fn except_all(conn: &duckdb::Connection, a: &Path, b: &Path, table: &str) -> i64 {
    count(
        conn,
        &format!(
            "SELECT count(*) FROM (SELECT * FROM read_parquet('{}/{table}/*/*.parquet') \
             EXCEPT ALL SELECT * FROM read_parquet('{}/{table}/*/*.parquet'))",
            a.display(),
            b.display()
        ),
    )
}

pub fn rows_of(conn: &duckdb::Connection, lake: &Path, table: &str) -> i64 {
    count(
        conn,
        &format!(
            "SELECT count(*) FROM read_parquet('{}/{table}/*/*.parquet')",
            lake.display()
        ),
    )
}

/// Every file's bytes, run reports aside.
pub fn contents(lake: &Path) -> BTreeMap<String, Vec<u8>> {
    list_files(lake)
        .into_iter()
        .filter(|f| !f.starts_with("_runs/") && f != "_lock")
        .map(|f| {
            let bytes = std::fs::read(lake.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

/// (customer, time) of every row of a file, in file order.
fn keys_in_order(path: &Path) -> Vec<(Option<String>, i64)> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let c = batch
            .column_by_name("customer_id")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone();
        let t = batch
            .column_by_name("ts")
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap()
            .clone();
        for i in 0..batch.num_rows() {
            out.push((c.is_valid(i).then(|| c.value(i).to_string()), t.value(i)));
        }
    }
    out
}

/// Customer ascending with nulls last, then time.
fn is_sorted_by_customer_then_time(keys: &[(Option<String>, i64)]) -> bool {
    keys.windows(2).all(|w| {
        let ((ca, ta), (cb, tb)) = (&w[0], &w[1]);
        match (ca, cb) {
            (Some(a), Some(b)) => a < b || (a == b && ta <= tb),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => ta <= tb,
        }
    })
}

const NOW: &str = "2026-11-02T03:00:00Z";

#[test]
fn compaction_keeps_every_row_sorts_each_file_and_a_second_run_does_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let full = generate(tmp.path(), 3, 4, 30);
    let lake = lake_in_steps(tmp.path(), &full);
    let before_files = files_per_partition(&lake);
    let many: Vec<&String> = before_files
        .iter()
        .filter(|(_, f)| f.len() >= 3)
        .map(|(p, _)| p)
        .collect();
    assert!(
        many.len() >= 10,
        "the fixture has many small files: {before_files:?}"
    );
    let before = tmp.path().join("before");
    copy_dir(&lake, &before);
    let untouched = contents(&lake);

    // A dry run lists the partitions and changes nothing.
    let dry = meter(
        tmp.path(),
        NOW,
        &["compact", "--lake", "lake", "--dry-run"],
        &[],
    );
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let listed: BTreeSet<String> = dry
        .stdout
        .lines()
        .map(|l| {
            Path::new(l)
                .strip_prefix(&lake)
                .unwrap_or_else(|_| Path::new(l).strip_prefix("lake").unwrap())
                .display()
                .to_string()
        })
        .collect();
    let expected: BTreeSet<String> = before_files
        .iter()
        .filter(|(_, f)| f.len() > 1)
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(contents(&lake), untouched);

    let run = meter(tmp.path(), NOW, &["compact", "--lake", "lake"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("compacted {} of", expected.len())),
        "{}",
        run.stderr
    );
    let after_files = files_per_partition(&lake);
    assert_eq!(
        after_files.keys().collect::<Vec<_>>(),
        before_files.keys().collect::<Vec<_>>()
    );
    for (part, files) in &after_files {
        if expected.contains(part) {
            assert_eq!(files.len(), 1, "{part}: {files:?}");
            assert!(files[0].starts_with("compact-"), "{part}: {files:?}");
        } else {
            assert_eq!(files, &before_files[part], "{part} was not to be compacted");
        }
    }
    // The same rows, as multisets, in every table.
    let conn = duckdb::Connection::open_in_memory().unwrap();
    for table in RAW {
        let n = rows_of(&conn, &before, table);
        assert!(n > 0, "{table}");
        assert_eq!(rows_of(&conn, &lake, table), n, "{table}");
        assert_eq!(except_all(&conn, &before, &lake, table), 0, "{table}");
        assert_eq!(except_all(&conn, &lake, &before, table), 0, "{table}");
    }
    // Each compacted file is in customer, then time order.
    for (part, files) in &after_files {
        for f in files.iter().filter(|f| f.starts_with("compact-")) {
            let keys = keys_in_order(&lake.join(part).join(f));
            assert!(is_sorted_by_customer_then_time(&keys), "{part}/{f}");
        }
    }
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lake.join("_runs/20261102T030000Z-compact.json")).unwrap(),
    )
    .unwrap();
    let files_before: usize = expected.iter().map(|p| before_files[p].len()).sum();
    assert_eq!(report["partitions_compacted"], expected.len());
    assert_eq!(report["partitions_examined"], before_files.len());
    assert_eq!(report["files_before"], files_before);
    assert_eq!(report["files_after"], expected.len());
    assert!(report["bytes_after"].as_u64().unwrap() > 0);
    // Compacted files have their indexes; the old files' went with them.
    assert_indexes(&lake);

    // A second run finds nothing to do.
    let compacted = contents(&lake);
    let again = meter(
        tmp.path(),
        "2026-11-02T04:00:00Z",
        &["compact", "--lake", "lake"],
        &[],
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("compacted 0 of"), "{}", again.stderr);
    assert_eq!(contents(&lake), compacted);

    // Ingest after compaction still drops what the lake holds: the whole
    // input again adds only the VM left out, and the lake then equals one
    // ingested in one go.
    let input = tmp.path().join("input");
    partial_input(&full, &input, vms(&full).len());
    let more = ingest(&input, &lake, "ingest-last");
    assert_accounted(&more);
    assert!(more.totals.duplicates > 0);
    let last_vm = vms(&full).pop().unwrap();
    let reference = tmp.path().join("reference");
    let once = ingest(&full, &reference, "ingest-once");
    assert_eq!(
        more.totals.rows + more.totals.duplicates,
        once.totals.rows + once.totals.duplicates
    );
    let last_rows: u64 = more
        .files
        .iter()
        .filter(|f| f.path.starts_with(&format!("{last_vm}/")))
        .map(|f| f.counts.rows)
        .sum();
    assert_eq!(more.totals.rows, last_rows);
    for table in RAW {
        assert_eq!(except_all(&conn, &reference, &lake, table), 0, "{table}");
        assert_eq!(except_all(&conn, &lake, &reference, table), 0, "{table}");
    }
    assert_indexes(&lake);
}

#[test]
fn one_month_one_table_and_a_held_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let full = generate(tmp.path(), 2, 3, 10);
    let lake = lake_in_steps(tmp.path(), &full);
    let before = files_per_partition(&lake);
    let other_month = meter(
        tmp.path(),
        NOW,
        &["compact", "--lake", "lake", "--month", "2026-09"],
        &[],
    );
    assert_eq!(other_month.code, 0, "{}", other_month.stderr);
    assert_eq!(files_per_partition(&lake), before);

    let bad = meter(
        tmp.path(),
        NOW,
        &["compact", "--lake", "lake", "--table", "usage"],
        &[],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("api_usage"), "{}", bad.stderr);

    let held = Lake::open(&lake, "holder").unwrap();
    let locked = meter(tmp.path(), NOW, &["compact", "--lake", "lake"], &[]);
    assert_eq!(locked.code, 3, "{}", locked.stderr);
    drop(held);
    assert_eq!(files_per_partition(&lake), before);

    let one = meter(
        tmp.path(),
        NOW,
        &[
            "compact", "--lake", "lake", "--month", "2026-10", "--table", "activity",
        ],
        &[],
    );
    assert_eq!(one.code, 0, "{}", one.stderr);
    for (part, files) in files_per_partition(&lake) {
        if part.starts_with("activity/") {
            assert_eq!(files.len(), 1, "{part}");
        } else {
            assert_eq!(files, before[&part], "{part}");
        }
    }
}

#[test]
fn nightly_compacts_the_closed_days_it_ingested_into() {
    let tmp = tempfile::tempdir().unwrap();
    let full = generate(tmp.path(), 2, 4, 10);
    let dir = tmp.path();
    std::fs::write(
        dir.join("meter.toml"),
        format!(
            "input = \"input\"\nlake = \"lake\"\nout = \"out\"\npricing = {:?}\n",
            repo().join("pricing.toml").display().to_string()
        ),
    )
    .unwrap();
    let input = dir.join("input");
    // The clock's date, 2026-10-03, is still being logged: not compacted.
    let n = vms(&full).len();
    for i in 1..=n {
        partial_input(&full, &input, i);
        // (a run id of its own each time: the clock moves a minute)
        let now = format!("2026-10-03T12:{i:02}:00Z");
        let run = meter(dir, &now, &["nightly", "--date", "2026-10-02"], &[]);
        assert!(run.code <= 1, "{}", run.stderr);
    }
    let last = format!("20261003T12{n:02}00Z-nightly");
    let lake = dir.join("lake");
    let files = files_per_partition(&lake);
    let mut closed = 0;
    let mut open = 0;
    for (part, f) in &files {
        let Some((table, date)) = part.rsplit_once("/date=") else {
            continue;
        };
        if !RAW.contains(&table) {
            continue;
        }
        if date < "2026-10-03" {
            assert_eq!(f.len(), 1, "{part}: {f:?}");
            closed += 1;
        } else if f.len() > 1 {
            open += 1;
        }
    }
    assert!(closed >= 10, "{files:?}");
    assert!(open > 0, "the open day keeps its files: {files:?}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lake.join(format!("_runs/{last}.json"))).unwrap(),
    )
    .unwrap();
    let stages: Vec<&str> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert!(stages.contains(&"compact"), "{stages:?}");
    assert!(lake.join(format!("_runs/{last}-compact.json")).exists());
    // The compacted lake holds what one ingest of everything would.
    let reference = dir.join("reference");
    ingest(&full, &reference, "once");
    let conn = duckdb::Connection::open_in_memory().unwrap();
    for table in RAW {
        assert_eq!(except_all(&conn, &reference, &lake, table), 0, "{table}");
        assert_eq!(except_all(&conn, &lake, &reference, table), 0, "{table}");
    }
}

/// Killed right after any file it writes, then opened again (which finishes
/// or drops the interrupted commit), every partition holds either its old
/// files or its compacted ones, never both or neither; a second run then
/// ends byte-identical to an uninterrupted one.
#[test]
fn compaction_killed_after_any_file_leaves_old_or_new_files() {
    let tmp = tempfile::tempdir().unwrap();
    let full = generate(tmp.path(), 1, 2, 12);
    let lake = lake_in_steps(tmp.path(), &full);
    let start = tmp.path().join("start");
    copy_dir(&lake, &start);
    let old = files_per_partition(&start);

    let compact = |dir: &Path, kill_after: Option<u64>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meter"));
        cmd.current_dir(dir)
            .args(["compact", "--lake", "lake"])
            .env("METER_FIXED_TIME", NOW)
            .env_remove("METER_CONFIG")
            .env_remove("METER_LAKE")
            .stderr(std::process::Stdio::null());
        if let Some(n) = kill_after {
            cmd.env(meter::lake::fault::KILL_AFTER_FILES, n.to_string());
        }
        cmd.status().unwrap()
    };
    let fresh = |dir: &Path| {
        let _ = std::fs::remove_dir_all(dir);
        copy_dir(&start, &dir.join("lake"));
    };
    let reference = tmp.path().join("reference");
    fresh(&reference);
    assert_eq!(compact(&reference, None).code(), Some(0));
    let expected = contents(&reference.join("lake"));
    let new = files_per_partition(&reference.join("lake"));
    assert!(old.values().filter(|f| f.len() > 1).count() >= 4, "{old:?}");

    let next = AtomicU64::new(1);
    let last = AtomicU64::new(u64::MAX);
    let kills = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for worker in 0..2 {
            let (next, last, kills, expected) = (&next, &last, &kills, &expected);
            let (old, new) = (&old, &new);
            let dir = tmp.path().join(format!("worker{worker}"));
            scope.spawn(move || {
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    if k > last.load(Ordering::SeqCst) {
                        break;
                    }
                    fresh(&dir);
                    let status = compact(&dir, Some(k));
                    if status.signal() != Some(9) {
                        assert_eq!(status.code(), Some(0), "k={k}");
                        last.fetch_min(k, Ordering::SeqCst);
                        break;
                    }
                    kills.fetch_add(1, Ordering::SeqCst);
                    drop(Lake::open(&dir.join("lake"), "recover").unwrap());
                    let now = files_per_partition(&dir.join("lake"));
                    for (part, files) in &now {
                        assert!(
                            files == &old[part] || files == &new[part],
                            "killed after file {k}: {part} holds {files:?}"
                        );
                    }
                    assert_eq!(
                        now.keys().collect::<Vec<_>>(),
                        old.keys().collect::<Vec<_>>(),
                        "killed after file {k}"
                    );
                    assert_eq!(compact(&dir, None).code(), Some(0), "rerun after kill {k}");
                    assert!(
                        contents(&dir.join("lake")) == *expected,
                        "killed after file {k}: the rerun differs from an uninterrupted run"
                    );
                }
            });
        }
    });
    assert!(kills.load(Ordering::SeqCst) > 10);
}
