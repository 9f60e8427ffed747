//! One ingest split across processes (`meter ingest --shard I/N`): N
//! processes started at once, on a local lake and on the S3 test server,
//! store the rows one process stores and lead to the same invoices; their
//! reports add up to the one-process report; a shard killed part way and
//! run again changes nothing else; an overlapping shard and an exclusive
//! job (erasure) are refused with exit 3 while a shard runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use chrono::NaiveDate;
use meter::model::shard::Shard;
use meter::sample::SampleOptions;

use crate::common::repo;
use crate::s3_server::{S3Server, start_s3_server};

const NOW: &str = "2026-11-02T03:00:00Z";
const TABLES: [&str; 5] = [
    "api_usage",
    "api_requests",
    "resource_usage",
    "activity",
    "rejects",
];

/// A work folder with an input of `customers` customers (messy: rejects,
/// duplicates and gzip included) and `pricing.toml`.
fn setup(dir: &Path, customers: usize) {
    std::fs::create_dir_all(dir).unwrap();
    meter::sample::generate(&SampleOptions {
        out: dir.join("input"),
        customers,
        days: 2,
        events_per_day: 40,
        seed: 11,
        clean: false,
        start: NaiveDate::from_ymd_opt(2026, 10, 30).unwrap(),
        usage_format: Default::default(),
        resource_interval_s: meter::sample::DEFAULT_RESOURCE_INTERVAL_S,
        contract_every: 0,
    })
    .unwrap();
    std::fs::copy(repo().join("pricing.toml"), dir.join("pricing.toml")).unwrap();
}

pub(crate) fn command(dir: &Path, args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meter"));
    cmd.current_dir(dir)
        .args(args)
        .env("METER_FIXED_TIME", NOW)
        .env_remove("METER_CONFIG")
        .env_remove("METER_LAKE")
        .env_remove("METER_SHARD")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn spawn_ingest(dir: &Path, lake: &str, shard: Option<&str>, env: &[(String, String)]) -> Child {
    let mut args = vec!["ingest", "--input", "input", "--lake", lake, "--json"];
    if let Some(s) = shard {
        args.extend(["--shard", s]);
    }
    command(dir, &args, env).spawn().unwrap()
}

/// Waits for `child`: its exit code and its JSON report.
pub(crate) fn finish(child: Child) -> (i32, serde_json::Value) {
    let out = child.wait_with_output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(code <= 1, "exit {code}: {stderr}");
    let report =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("report: {e}: {stderr}"));
    (code, report)
}

/// `n` shards of one split started at once.
fn sharded(dir: &Path, lake: &str, n: u32, env: &[(String, String)]) -> Vec<serde_json::Value> {
    let children: Vec<Child> = (0..n)
        .map(|i| spawn_ingest(dir, lake, Some(&format!("{i}/{n}")), env))
        .collect();
    children.into_iter().map(|c| finish(c).1).collect()
}

pub(crate) fn run(dir: &Path, args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    let out = command(dir, args, env).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every row of every table, as CSV sorted on every column.
pub(crate) fn rows(
    dir: &Path,
    lake: &str,
    env: &[(String, String)],
) -> BTreeMap<&'static str, String> {
    rows_of(dir, lake, &TABLES, env)
}

/// Every row of each of `tables`, as CSV sorted on every column.
pub(crate) fn rows_of(
    dir: &Path,
    lake: &str,
    tables: &[&'static str],
    env: &[(String, String)],
) -> BTreeMap<&'static str, String> {
    tables
        .iter()
        .map(|t| {
            let sql = format!("SELECT * FROM {t} ORDER BY ALL");
            let (code, out, err) = run(
                dir,
                &["query", "--lake", lake, "--format", "csv", &sql],
                env,
            );
            assert_eq!(code, 0, "{err}");
            (*t, out)
        })
        .collect()
}

/// Rollup and billing of October: the invoices and meter events.
fn invoices(
    dir: &Path,
    lake: &str,
    out: &str,
    env: &[(String, String)],
) -> BTreeMap<String, String> {
    let (code, _, err) = run(
        dir,
        &[
            "rollup",
            "--lake",
            lake,
            "--month",
            "2026-10",
            "--pricing",
            "pricing.toml",
        ],
        env,
    );
    assert!(code <= 1, "{err}");
    bill(dir, lake, out, env)
}

/// Billing of October, rolled up: the invoices and meter events.
pub(crate) fn bill(
    dir: &Path,
    lake: &str,
    out: &str,
    env: &[(String, String)],
) -> BTreeMap<String, String> {
    let pricing = ["--pricing", "pricing.toml"];
    let (code, _, err) = run(
        dir,
        &[
            &["bill", "--lake", lake, "--month", "2026-10", "--out", out][..],
            &pricing,
        ]
        .concat(),
        env,
    );
    assert!(code <= 1, "{err}");
    let root = dir.join(out);
    let mut files = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for path in std::fs::read_dir(&d).unwrap().flatten().map(|e| e.path()) {
            let rel = path.strip_prefix(&root).unwrap().display().to_string();
            if path.is_dir() {
                stack.push(path);
            } else if rel.ends_with(".csv") || rel.ends_with(".jsonl") {
                files.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    assert!(files.keys().any(|k| k.ends_with(".csv")), "no invoices");
    files
}

/// The counts a run report gives, summed over `reports`.
fn counts(reports: &[serde_json::Value]) -> BTreeMap<String, u64> {
    let mut sum = BTreeMap::new();
    for r in reports {
        let mut add = |k: String, v: &serde_json::Value| {
            *sum.entry(k).or_insert(0) += v.as_u64().unwrap_or(0);
        };
        add("lines_read".into(), &r["lines_read"]);
        for (k, v) in r["totals"].as_object().unwrap() {
            add(format!("totals.{k}"), v);
        }
        for (table, c) in r["tables"].as_object().unwrap() {
            for (k, v) in c.as_object().unwrap() {
                add(format!("{table}.{k}"), v);
            }
        }
        for (reason, n) in r["rejected_reasons"].as_object().unwrap() {
            add(format!("rejected.{reason}"), n);
        }
        add(
            "files".into(),
            &serde_json::json!(r["files"].as_array().unwrap().len()),
        );
        add(
            "ignored".into(),
            &serde_json::json!(r["ignored_paths"].as_array().unwrap().len()),
        );
    }
    sum
}

fn shards_give_what_one_process_gives(
    dir: &Path,
    lake: impl Fn(&str) -> String,
    env: &[(String, String)],
) {
    let (_, whole) = finish(spawn_ingest(dir, &lake("one"), None, env));
    let reports = sharded(dir, &lake("four"), 4, env);
    let (one, four) = (lake("one"), lake("four"));
    assert_eq!(rows(dir, &four, env), rows(dir, &one, env));
    assert_eq!(counts(&reports), counts(std::slice::from_ref(&whole)));
    assert!(counts(&reports)["lines_read"] > 1000);
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r["shard"], format!("{i}/4"));
        assert!(
            r["run_id"]
                .as_str()
                .unwrap()
                .ends_with(&format!("-s{i}of4")),
            "{}",
            r["run_id"]
        );
    }
    // Every shard had VMs of its own.
    assert!(
        reports
            .iter()
            .all(|r| r["files"].as_array().unwrap().len() > 1)
    );
    // Shards of a second split, run again, add nothing.
    let again = sharded(dir, &four, 2, env);
    for r in &again {
        assert_eq!(r["totals"]["rows"], 0, "{r}");
    }
    assert_eq!(
        invoices(dir, &four, "out-four", env),
        invoices(dir, &one, "out-one", env)
    );
}

#[test]
fn four_shards_at_once_on_a_local_lake_store_what_one_process_stores() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), 6);
    shards_give_what_one_process_gives(tmp.path(), |name| format!("lake-{name}"), &[]);
    // Each shard's files have their indexes.
    crate::common::assert_indexes(&tmp.path().join("lake-four"));
}

#[test]
fn four_shards_at_once_on_s3_store_what_one_process_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("work");
    setup(&dir, 6);
    let server = start_s3_server(&tmp.path().join("s3"));
    let env = server.env();
    shards_give_what_one_process_gives(&dir, |name| server.url(&format!("lake-{name}")), &env);
}

/// A shard killed after its `k`-th file, then run again, leaves the lake
/// with the rows of a run never interrupted.
fn killed_shard_reruns_to_the_same_rows(
    dir: &Path,
    lake: impl Fn(&str) -> String,
    env: &[(String, String)],
) {
    finish(spawn_ingest(dir, &lake("reference"), None, env));
    let reference = rows(dir, &lake("reference"), env);
    for k in [1, 3] {
        let target = lake(&format!("k{k}"));
        let mut children: Vec<Child> = [0, 2, 3]
            .iter()
            .map(|i| spawn_ingest(dir, &target, Some(&format!("{i}/4")), env))
            .collect();
        let mut killed = command(
            dir,
            &[
                "ingest", "--input", "input", "--lake", &target, "--shard", "1/4",
            ],
            env,
        );
        killed.env(meter::lake::fault::KILL_AFTER_FILES, k.to_string());
        let status = killed.output().unwrap().status;
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "k={k}: {status:?}");
        for c in children.drain(..) {
            finish(c);
        }
        finish(spawn_ingest(dir, &target, Some("1/4"), env));
        assert_eq!(rows(dir, &target, env), reference, "killed after file {k}");
    }
}

#[test]
fn a_shard_killed_part_way_on_a_local_lake_reruns_to_the_same_rows() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), 6);
    killed_shard_reruns_to_the_same_rows(tmp.path(), |name| format!("lake-{name}"), &[]);
}

#[test]
fn a_shard_killed_part_way_on_s3_reruns_to_the_same_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("work");
    setup(&dir, 6);
    let server = start_s3_server(&tmp.path().join("s3"));
    let env = server.env();
    killed_shard_reruns_to_the_same_rows(&dir, |name| server.url(&format!("lake-{name}")), &env);
}

/// While shard 1/4 runs: the same shard and overlapping ones exit 3 (naming
/// it), another shard of the split runs, and an erasure exits 3; once the
/// shard is done, the erasure runs and no shard brings the lines back.
fn running_shard_excludes(
    dir: &Path,
    lake: &str,
    env: &[(String, String)],
    hold: &dyn Fn() -> Box<dyn FnOnce()>,
) {
    let customer = |lake: &str| {
        let (code, out, err) = run(
            dir,
            &[
                "query",
                "--lake",
                lake,
                "--format",
                "csv",
                "SELECT count(*) FROM api_usage WHERE customer_id = 'cust_0001'",
            ],
            env,
        );
        assert_eq!(code, 0, "{err}");
        out.lines().nth(1).unwrap().to_string()
    };
    for i in 0..4 {
        finish(spawn_ingest(dir, lake, Some(&format!("{i}/4")), env));
    }
    assert_ne!(customer(lake), "0");
    let release = hold();
    for overlapping in ["1/4", "1/2", "0/1"] {
        let (code, _, err) = run(
            dir,
            &[
                "ingest",
                "--input",
                "input",
                "--lake",
                lake,
                "--shard",
                overlapping,
            ],
            env,
        );
        assert_eq!(code, 3, "{overlapping}: {err}");
        assert!(err.contains("shard 1/4"), "{overlapping}: {err}");
    }
    let (code, _, err) = run(dir, &["ingest", "--input", "input", "--lake", lake], env);
    assert_eq!(code, 3, "{err}");
    finish(spawn_ingest(dir, lake, Some("2/4"), env));
    let (code, _, err) = run(
        dir,
        &["erase", "--lake", lake, "--customer", "cust_0001"],
        env,
    );
    assert_eq!(code, 3, "{err}");
    release();
    let (code, _, err) = run(
        dir,
        &["erase", "--lake", lake, "--customer", "cust_0001"],
        env,
    );
    assert!(code <= 1, "{err}");
    assert_eq!(customer(lake), "0");
    for i in 0..4 {
        finish(spawn_ingest(dir, lake, Some(&format!("{i}/4")), env));
    }
    assert_eq!(customer(lake), "0");
}

/// What a running job of another process holds in a local lake: `_lock`
/// shared and its scope's lock file `_locks/<name>.lock` exclusive, naming
/// run `run`. The closure returned lets both go.
pub(crate) fn hold_local(lake: &Path, name: &str, run: &str) -> Box<dyn FnOnce()> {
    let lock = std::fs::File::open(lake.join("_lock")).unwrap();
    lock.try_lock_shared().unwrap();
    let path = lake.join(format!("_locks/{name}.lock"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("run {run}, pid 1")).unwrap();
    let scope = std::fs::File::open(&path).unwrap();
    scope.try_lock().unwrap();
    Box::new(move || drop((lock, scope)))
}

/// Another machine's run `run` of `job` holding `claim` on a lake in
/// `store`, as `Lake::open_as` takes it. The closure returned releases it.
pub(crate) fn hold_lease(
    store: &std::sync::Arc<meter::lake::store::Store>,
    run: &str,
    job: &str,
    claim: meter::lake::lease::Claim,
) -> Box<dyn FnOnce()> {
    let lease = meter::lake::lease::Lease::acquire(
        store,
        run,
        job,
        claim,
        std::time::Duration::from_secs(120),
        &meter::model::ctx::SystemClock,
    )
    .unwrap();
    Box::new(move || lease.release().unwrap())
}

#[test]
fn a_running_shard_on_a_local_lake_keeps_overlapping_shards_and_erasure_out() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), 4);
    let lake = tmp.path().join("lake");
    // What a running `--shard 1/4` holds in a local lake.
    let hold = || hold_local(&lake, "ingest-1-of-4", "20261102T030000Z-ingest-s1of4");
    running_shard_excludes(tmp.path(), "lake", &[], &hold);
}

#[test]
fn a_running_shard_on_s3_keeps_overlapping_shards_and_erasure_out() {
    use meter::lake::lease::Claim;
    use meter::lake::store::Store;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("work");
    setup(&dir, 4);
    let server: S3Server = start_s3_server(&tmp.path().join("s3"));
    let url = server.url("lake");
    let store = std::sync::Arc::new(Store::open_with(&url, server.options()).unwrap());
    // Another machine's `--shard 1/4`, as `Lake::open_shared` takes it.
    let hold = || {
        hold_lease(
            &store,
            "20261102T030000Z-ingest-s1of4.1",
            "ingest",
            Claim::shard(Shard { index: 1, count: 4 }),
        )
    };
    running_shard_excludes(&dir, &url, &server.env(), &hold);
}
