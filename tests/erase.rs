//! `meter erase` on the sample data after `meter pipeline`: the customer's
//! rows are gone from every table, everything else is as it was (files
//! without the customer's rows byte for byte), invoices stay, the rollup
//! agrees with what erase left, and ingesting the same input again (plain
//! or `--rebuild`) does not bring the rows back.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::common::*;
use crate::compact::contents;

const CUSTOMER: &str = "cust_0002";
/// cust_0002's VMs in sample-data/customers.csv.
const VMS: &str = "'vm-37b13a', 'vm-d408d7'";
const BUILT: &str = "2026-11-02T03:00:00Z";
const ERASED: &str = "2026-11-03T03:00:00Z";

/// The customer's rows, by the erasure rule.
fn pred() -> String {
    format!(
        "(customer_id IS NOT DISTINCT FROM '{CUSTOMER}' OR (customer_id IS NULL AND vm_id IN ({VMS})))"
    )
}

/// Every table directory that holds partitions: raw, rejects, derived.
fn tables(lake: &Path) -> Vec<String> {
    let mut out: Vec<String> = [
        "api_usage",
        "api_requests",
        "resource_usage",
        "activity",
        "rejects",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for root in ["priced", "daily", "monthly"] {
        for e in std::fs::read_dir(lake.join(root)).unwrap() {
            out.push(format!(
                "{root}/{}",
                e.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    out
}

fn glob(lake: &Path, table: &str) -> String {
    format!("read_parquet('{}/{table}/*/*.parquet')", lake.display())
}

/// The customer's rows per file of `lake` (relative path -> rows).
fn customer_rows_per_file(conn: &duckdb::Connection, lake: &Path) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for table in tables(lake) {
        let sql = format!(
            "SELECT filename, count(*) FILTER (WHERE {}) FROM read_parquet('{}/{table}/*/*.parquet', filename = true) GROUP BY ALL",
            pred(),
            lake.display()
        );
        let mut stmt = conn.prepare(&sql).unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .unwrap();
        for row in rows {
            let (file, n) = row.unwrap();
            let rel = Path::new(&file)
                .strip_prefix(lake)
                .unwrap()
                .display()
                .to_string();
            out.insert(rel, n);
        }
    }
    out
}

/// Rows of `table` in `a` (without the customer's when `drop_customer`)
/// that `b` lacks, as multisets, both ways.
fn differences(
    conn: &duckdb::Connection,
    a: &Path,
    b: &Path,
    table: &str,
    drop_customer: bool,
) -> (i64, i64) {
    let filter = if drop_customer {
        format!("WHERE NOT {}", pred())
    } else {
        String::new()
    };
    let left = format!("SELECT * FROM {} {filter}", glob(a, table));
    let right = format!("SELECT * FROM {}", glob(b, table));
    (
        count(
            conn,
            &format!("SELECT count(*) FROM ({left} EXCEPT ALL {right})"),
        ),
        count(
            conn,
            &format!("SELECT count(*) FROM ({right} EXCEPT ALL {left})"),
        ),
    )
}

/// `a` and `b` hold the same rows of `table`: exactly in every column but
/// the DOUBLE ones (measurements the rollup sums in no fixed order, see
/// schemas/rollup.md), whose sums agree to 1e-9 relative.
fn same_but_float_rounding(conn: &duckdb::Connection, a: &Path, b: &Path, table: &str) {
    let mut stmt = conn
        .prepare(&format!("DESCRIBE SELECT * FROM {}", glob(a, table)))
        .unwrap();
    let columns: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let (floats, exact): (Vec<_>, Vec<_>) = columns
        .into_iter()
        .partition(|(_, t)| t == "DOUBLE" || t == "FLOAT");
    let exact: Vec<String> = exact.into_iter().map(|(c, _)| format!("\"{c}\"")).collect();
    let select = |lake: &Path| format!("SELECT {} FROM {}", exact.join(", "), glob(lake, table));
    for (x, y) in [(select(a), select(b)), (select(b), select(a))] {
        let n = count(conn, &format!("SELECT count(*) FROM ({x} EXCEPT ALL {y})"));
        assert_eq!(n, 0, "{table}");
    }
    for (c, _) in floats {
        let sum = |lake: &Path| -> f64 {
            conn.query_row(
                &format!(
                    "SELECT coalesce(sum(\"{c}\"), 0) FROM {}",
                    glob(lake, table)
                ),
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        let (x, y) = (sum(a), sum(b));
        assert!(
            (x - y).abs() <= 1e-9 * x.abs().max(1.0),
            "{table}.{c}: {x} vs {y}"
        );
    }
}

#[test]
fn erase_removes_one_customer_everywhere_and_it_sticks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::copy(repo().join("pricing.toml"), dir.join("pricing.toml")).unwrap();
    let input = sample_data().display().to_string();
    let built = meter(
        dir,
        BUILT,
        &[
            "pipeline",
            "--month",
            "2026-10",
            "--input",
            &input,
            "--lake",
            "lake",
            "--out",
            "out",
            "--pricing",
            "pricing.toml",
        ],
        &[],
    );
    assert_eq!(built.code, 1, "{}", built.stderr);
    let lake = dir.join("lake");
    let before = dir.join("before");
    copy_dir(&lake, &before);
    let lake_before = contents(&lake);
    let out_before = contents(&dir.join("out"));
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let per_file = customer_rows_per_file(&conn, &before);
    let total: i64 = per_file.values().sum();
    assert!(total > 0);
    for table in tables(&before) {
        if table != "rejects" {
            // the customer is in every table the fixture has
            let n = count(
                &conn,
                &format!(
                    "SELECT count(*) FROM {} WHERE {}",
                    glob(&before, &table),
                    pred()
                ),
            );
            assert!(n > 0, "{table}");
        }
    }

    // A dry run counts and changes nothing.
    let dry = meter(
        dir,
        ERASED,
        &[
            "erase",
            "--lake",
            "lake",
            "--customer",
            CUSTOMER,
            "--dry-run",
            "--json",
        ],
        &[],
    );
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let report: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(report["rows_removed"], total);
    assert_eq!(report["dry_run"], true);
    assert_eq!(contents(&lake), lake_before);
    assert!(!lake.join("_erasures").exists());

    let run = meter(
        dir,
        ERASED,
        &["erase", "--lake", "lake", "--customer", CUSTOMER],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("removed {total} rows")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("kept: issued invoices"),
        "{}",
        run.stderr
    );

    // Gone from every table; everything else as it was.
    for table in tables(&before) {
        let n = count(
            &conn,
            &format!(
                "SELECT count(*) FROM {} WHERE {}",
                glob(&lake, &table),
                pred()
            ),
        );
        assert_eq!(n, 0, "{table}");
        assert_eq!(
            differences(&conn, &before, &lake, &table, true),
            (0, 0),
            "{table}"
        );
    }
    // Files without the customer's rows are byte-identical; the others were
    // rewritten or, left empty, deleted.
    let lake_after = contents(&lake);
    let (mut rewritten, mut deleted) = (0, 0);
    for (file, n) in &per_file {
        match (n, lake_after.get(file)) {
            (0, after) => assert_eq!(after, lake_before.get(file), "{file} changed"),
            (_, Some(after)) => {
                assert_ne!(Some(after), lake_before.get(file), "{file}");
                rewritten += 1;
            }
            (_, None) => deleted += 1,
        }
    }
    assert!(rewritten > 0);
    // Invoices stay.
    assert_eq!(contents(&dir.join("out")), out_before);
    // The record.
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lake.join("_erasures/20261103T030000Z-erase.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["customer_id"], CUSTOMER);
    assert_eq!(record["rows_removed"], total);
    assert_eq!(record["files_rewritten"], rewritten);
    assert_eq!(record["files_deleted"], deleted);
    assert_eq!(record["erased_at"], "2026-11-03T03:00:00Z");
    assert_eq!(
        record["vm_ids"],
        serde_json::json!(["vm-37b13a", "vm-d408d7"])
    );
    let sum: i64 = record["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rows_removed"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, total);

    // A rollup of the erased month gives the aggregates erase left.
    let erased = dir.join("erased");
    copy_dir(&lake, &erased);
    let rolled = meter(
        dir,
        "2026-11-03T04:00:00Z",
        &[
            "rollup",
            "--lake",
            "lake",
            "--month",
            "2026-10",
            "--pricing",
            "pricing.toml",
        ],
        &[],
    );
    assert!(rolled.code <= 1, "{}", rolled.stderr);
    for table in tables(&erased).iter().filter(|t| t.contains('/')) {
        same_but_float_rounding(&conn, &erased, &lake, table);
    }

    // Ingesting the same input again skips the customer's lines, with the
    // reason, and the buckets add up.
    let again = meter(
        dir,
        "2026-11-03T05:00:00Z",
        &["ingest", "--input", &input, "--lake", "lake", "--json"],
        &[],
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    let report: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(report["totals"]["rows"], 0);
    // Rewritten files have their new indexes, deleted ones lost theirs.
    assert_indexes(&lake);
    let mut skipped_erased = 0;
    for f in report["files"].as_array().unwrap() {
        let c = |k: &str| f[k].as_u64().unwrap();
        assert_eq!(
            c("rows") + c("duplicates") + c("rejects") + c("skipped"),
            c("lines_read"),
            "{f}"
        );
        let path = f["path"].as_str().unwrap();
        let erased_here = f["skipped_reasons"]["customer erased"]
            .as_u64()
            .unwrap_or(0);
        if path.starts_with("vm-37b13a/") || path.starts_with("vm-d408d7/") {
            assert_eq!(c("duplicates") + c("rejects"), 0, "{f}");
            assert!(erased_here > 0, "{f}");
        } else {
            assert_eq!(erased_here, 0, "{f}");
        }
        skipped_erased += erased_here;
    }
    assert!(skipped_erased > 0);
    assert!(
        again.stderr.contains("lines of erased customers skipped"),
        "{}",
        again.stderr
    );

    // So does a rebuild of the month from the raw input (what `meter rerun`
    // runs): the raw tables come back exactly as erase left them.
    let rebuilt = meter(
        dir,
        "2026-11-03T06:00:00Z",
        &[
            "ingest",
            "--input",
            &input,
            "--lake",
            "lake",
            "--rebuild",
            "--since",
            "2026-10-01",
            "--until",
            "2026-10-31",
        ],
        &[],
    );
    assert!(rebuilt.code <= 1, "{}", rebuilt.stderr);
    for table in [
        "api_usage",
        "api_requests",
        "resource_usage",
        "activity",
        "rejects",
    ] {
        assert_eq!(
            differences(&conn, &erased, &lake, table, false),
            (0, 0),
            "{table}"
        );
    }
    assert_indexes(&lake);
}

/// Takes the lake's lock for the test. Another test thread's subprocess
/// can hold a copy of the lock file's descriptor for the moment between
/// its fork and its exec (the descriptor closes on exec, the lock with it):
/// on a loaded machine the lock an ingest just released can still read as
/// held for that moment, so a refusal is tried again for a while.
fn hold(lake: &std::path::Path) -> meter::lake::Lake {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match meter::lake::Lake::open(lake, "holder") {
            Ok(held) => return held,
            Err(meter::Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn erase_of_a_customer_whose_rows_fill_whole_files_deletes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let full = crate::compact::generate(dir, 2, 2, 10);
    let lake = crate::compact::lake_in_steps(dir, &full);
    // Each ingest step added one VM: files of the customer's own VMs hold
    // only its rows.
    let held = hold(&lake);
    let locked = meter(
        dir,
        ERASED,
        &["erase", "--lake", "lake", "--customer", "cust_0001"],
        &[],
    );
    assert_eq!(locked.code, 3, "{}", locked.stderr);
    drop(held);
    let run = meter(
        dir,
        ERASED,
        &[
            "erase",
            "--lake",
            "lake",
            "--customer",
            "cust_0001",
            "--json",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(report["files_deleted"].as_u64().unwrap() > 0, "{report}");
    let conn = duckdb::Connection::open_in_memory().unwrap();
    for table in crate::compact::RAW {
        let n = count(
            &conn,
            &format!(
                "SELECT count(*) FROM {} WHERE customer_id = 'cust_0001'",
                glob(&lake, table)
            ),
        );
        assert_eq!(n, 0, "{table}");
    }
    // Compaction after erasure keeps what erase left.
    let before = dir.join("before");
    copy_dir(&lake, &before);
    let compacted = meter(
        dir,
        "2026-11-03T04:00:00Z",
        &["compact", "--lake", "lake"],
        &[],
    );
    assert_eq!(compacted.code, 0, "{}", compacted.stderr);
    for table in crate::compact::RAW {
        assert_eq!(
            differences(&conn, &before, &lake, table, false),
            (0, 0),
            "{table}"
        );
    }
}

/// Killed right after any file it writes, then opened again, the lake is
/// either as before the erasure (no record) or as after it (with its
/// record); erase run again then leaves the lake's files as an
/// uninterrupted run does.
#[test]
fn erase_killed_after_any_file_leaves_the_lake_before_or_after() {
    let tmp = tempfile::tempdir().unwrap();
    let full = crate::compact::generate(tmp.path(), 2, 2, 8);
    // one ingest: files hold both customers' rows, so they are rewritten
    let lake = tmp.path().join("lake");
    assert_accounted(&ingest(&full, &lake, "once"));
    let start = tmp.path().join("start");
    copy_dir(&lake, &start);
    let erase = |dir: &Path, kill_after: Option<u64>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meter"));
        cmd.current_dir(dir)
            .args(["erase", "--lake", "lake", "--customer", "cust_0002"])
            .env("METER_FIXED_TIME", ERASED)
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
    let parquet = |lake: &Path| -> BTreeMap<String, Vec<u8>> {
        contents(lake)
            .into_iter()
            .filter(|(f, _)| f.ends_with(".parquet"))
            .collect()
    };
    let old = contents(&start);
    let reference = tmp.path().join("reference");
    fresh(&reference);
    assert_eq!(erase(&reference, None).code(), Some(0));
    let new = contents(&reference.join("lake"));
    let expected = parquet(&reference.join("lake"));
    assert_ne!(expected, parquet(&start));

    let next = AtomicU64::new(1);
    let last = AtomicU64::new(u64::MAX);
    let kills = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for worker in 0..2 {
            let (next, last, kills, old, new) = (&next, &last, &kills, &old, &new);
            let expected = &expected;
            let dir = tmp.path().join(format!("worker{worker}"));
            scope.spawn(move || {
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    if k > last.load(Ordering::SeqCst) {
                        break;
                    }
                    fresh(&dir);
                    let status = erase(&dir, Some(k));
                    if status.signal() != Some(9) {
                        assert_eq!(status.code(), Some(0), "k={k}");
                        last.fetch_min(k, Ordering::SeqCst);
                        break;
                    }
                    kills.fetch_add(1, Ordering::SeqCst);
                    drop(meter::lake::Lake::open(&dir.join("lake"), "recover").unwrap());
                    let now = contents(&dir.join("lake"));
                    let differ = |want: &BTreeMap<String, Vec<u8>>| -> Vec<String> {
                        let keys: std::collections::BTreeSet<&String> =
                            want.keys().chain(now.keys()).collect();
                        keys.into_iter()
                            .filter(|k| want.get(*k) != now.get(*k))
                            .cloned()
                            .collect()
                    };
                    assert!(
                        now == *old || now == *new,
                        "killed after file {k}: the lake is neither before nor after the erasure: {:?} / {:?}",
                        differ(old),
                        differ(new)
                    );
                    assert_eq!(erase(&dir, None).code(), Some(0), "rerun after kill {k}");
                    assert!(
                        parquet(&dir.join("lake")) == *expected,
                        "killed after file {k}: the rerun differs from an uninterrupted run"
                    );
                }
            });
        }
    });
    assert!(kills.load(Ordering::SeqCst) > 5);
}
