//! The lake in object storage: the whole pipeline run with `--lake` (and
//! `--out`) on the strict S3 test server gives the invoices, meter events
//! and lake rows of the same run on local folders; a run killed after any
//! object it writes, then run again, ends byte-identical to a run never
//! interrupted; exclusive jobs exclude each other across processes.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};

use chrono::NaiveDate;
use meter::sample::SampleOptions;

use crate::common::repo;
use crate::s3_server::{S3Server, start_s3_server};

/// Every file below `root`, by `/`-separated relative path, but those
/// `skip` says to leave out.
fn tree(root: &Path, skip: &dyn Fn(&str) -> bool) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if skip(&rel) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// What must be equal between a local lake and a lake in a bucket: every
/// file but run reports and what only one kind of lake has (the lock file,
/// the lease object).
fn lake_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(root, &|rel| {
        rel.starts_with("_runs") || rel == "_lock" || rel == "_lease.json"
    })
}

/// Billing output that does not name where the lake is: invoices, the
/// summary, meter events (manifests record the lake's path).
fn out_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(root, &|_| false)
        .into_iter()
        .filter(|(rel, _)| {
            rel.ends_with(".csv") || rel.ends_with(".jsonl") || rel.ends_with("latest.json")
        })
        .collect()
}

fn sample_input(dir: &Path, customers: usize, days: u32, events_per_day: u32) {
    meter::sample::generate(&SampleOptions {
        out: dir.to_path_buf(),
        customers,
        days,
        events_per_day,
        seed: 7,
        clean: false,
        start: NaiveDate::from_ymd_opt(2026, 10, 30).unwrap(),
        usage_format: Default::default(),
        resource_interval_s: meter::sample::DEFAULT_RESOURCE_INTERVAL_S,
        contract_every: 0,
    })
    .unwrap();
}

/// `meter pipeline` for October in `dir` (with `pricing.toml`), input,
/// lake and out where told.
fn pipeline(
    dir: &Path,
    input: &str,
    lake: &str,
    out: &str,
    server: &S3Server,
    kill_after: Option<u64>,
) -> ExitStatus {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meter"));
    cmd.current_dir(dir)
        .args(["pipeline", "--month", "2026-10", "--input", input])
        .args(["--lake", lake, "--out", out, "--pricing", "pricing.toml"])
        .env("METER_FIXED_TIME", "2026-11-02T03:00:00Z")
        .env_remove("METER_CONFIG")
        .envs(server.env())
        .stdout(std::process::Stdio::null());
    if let Some(n) = kill_after {
        cmd.env(meter::lake::fault::KILL_AFTER_FILES, n.to_string());
    }
    let out = cmd.output().unwrap();
    if out.status.code().is_some_and(|c| c > 1) {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out.status
}

fn setup(dir: &Path, input: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    if input.exists() {
        std::os::unix::fs::symlink(input, dir.join("input")).unwrap();
    }
    std::fs::copy(repo().join("pricing.toml"), dir.join("pricing.toml")).unwrap();
}

#[test]
fn the_pipeline_on_an_s3_lake_matches_the_local_run() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_s3_server(&tmp.path().join("s3"));
    // The raw input lives in the bucket; the local run reads the very same
    // files from the folder behind it (same bytes, same whole-second times).
    let input = server.bucket_dir().join("input");
    sample_input(&input, 3, 2, 200);
    crate::common::touch_all(&input);

    let local = tmp.path().join("local");
    setup(&local, &input);
    let status = pipeline(&local, "input", "lake", "out", &server, None);
    let code = status.code().expect("exits");
    assert!(code <= 1, "{status:?}");

    let remote = tmp.path().join("remote");
    setup(&remote, Path::new("/nonexistent"));
    let status = pipeline(
        &remote,
        &server.url("input"),
        &server.url("lake"),
        &server.url("out"),
        &server,
        None,
    );
    assert_eq!(status.code(), Some(code));

    let bucket = server.bucket_dir();
    let local_lake = lake_files(&local.join("lake"));
    let remote_lake = lake_files(&bucket.join("lake"));
    // The local lake's id indexes are right; the bucket's are the same bytes.
    crate::common::assert_indexes(&local.join("lake"));
    assert!(local_lake.keys().any(|k| k.starts_with("api_usage/date=")));
    assert!(local_lake.keys().any(|k| k.starts_with("monthly/")));
    assert_eq!(
        local_lake.keys().collect::<Vec<_>>(),
        remote_lake.keys().collect::<Vec<_>>()
    );
    for (rel, bytes) in &local_lake {
        assert!(remote_lake[rel] == *bytes, "{rel} differs");
    }
    // A finished run leaves no staged object and no commit record.
    assert!(
        !bucket.join("lake/_staging").exists()
            || tree(&bucket.join("lake/_staging"), &|_| false).is_empty()
    );
    assert!(
        !bucket.join("lake/_commits").exists()
            || tree(&bucket.join("lake/_commits"), &|_| false).is_empty()
    );

    let local_out = out_files(&local.join("out"));
    let remote_out = out_files(&bucket.join("out"));
    assert!(
        local_out
            .keys()
            .any(|k| k.contains("/rev-1/") && k.ends_with(".csv"))
    );
    assert_eq!(local_out, remote_out);

    // meter's readers read the bucket as they read the folder.
    let env: Vec<(String, String)> = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let sql = "SELECT (SELECT count(*) FROM api_usage) AS events, \
               (SELECT sum(cost) FROM priced_api_usage) AS cost, \
               (SELECT count(*) FROM invoices) AS lines, \
               (SELECT count(*) FROM runs WHERE job = 'ingest') AS ingests";
    let query = |dir: &Path, lake: &str, out: &str| {
        let run = crate::common::meter(
            dir,
            "2026-11-02T03:00:00Z",
            &["query", "--lake", lake, "--out", out, sql],
            &env,
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.stdout
    };
    let local_answer = query(&local, "lake", "out");
    assert!(!local_answer.contains("| 0 "), "{local_answer}");
    assert_eq!(
        query(&remote, &server.url("lake"), &server.url("out")),
        local_answer
    );
}

#[test]
fn exclusive_jobs_on_one_s3_lake_exclude_each_other() {
    use meter::lake::lease::{Claim, Lease};
    use meter::lake::store::Store;
    let tmp = tempfile::tempdir().unwrap();
    let server = start_s3_server(&tmp.path().join("s3"));
    let url = server.url("lake");
    let env: Vec<(String, String)> = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let retention = |now: &str| {
        crate::common::meter(
            tmp.path(),
            now,
            &["retention", "--lake", &url, "--keep-months", "1"],
            &env,
        )
    };
    // A lake with a day in it.
    sample_input(&tmp.path().join("input"), 1, 1, 5);
    let ingest = crate::common::meter(
        tmp.path(),
        "2026-11-02T03:00:00Z",
        &["ingest", "--input", "input", "--lake", &url],
        &env,
    );
    assert!(ingest.code <= 1, "{}", ingest.stderr);
    // Another machine's compaction holds it (a lease taken as `Lake::open` takes it).
    let store = std::sync::Arc::new(Store::open_with(&url, server.options()).unwrap());
    let clock = meter::model::ctx::SystemClock;
    let held = Lease::acquire(
        &store,
        "20261102T030000Z-compact-0001",
        "compact",
        Claim::EXCLUSIVE,
        std::time::Duration::from_secs(120),
        &clock,
    )
    .unwrap();
    let run = retention("2026-11-02T03:05:00Z");
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("compact"), "{}", run.stderr);
    held.release().unwrap();
    let run = retention("2026-11-02T03:10:00Z");
    assert!(run.code <= 1, "{}", run.stderr);
}

/// Every `stride`-th object written is a kill point (1, 1 + stride, ...),
/// so that each phase (ingest uploads, commit records, the lease, copies,
/// deletes, rollup, billing) is hit. Killing after every single object
/// (`METER_KILL_STRIDE=1`) passes too but takes about 25 minutes on two
/// cores in a debug build, most of CI's time; the default takes a quarter.
fn kill_stride() -> u64 {
    std::env::var("METER_KILL_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(4)
}

#[test]
fn killed_at_objects_across_the_run_a_rerun_on_s3_ends_byte_identical() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    sample_input(&input, 1, 1, 20);
    let server = start_s3_server(&tmp.path().join("s3"));
    let bucket = server.bucket_dir();

    let dir = tmp.path().join("run");
    setup(&dir, &input);
    let status = pipeline(
        &dir,
        "input",
        &server.url("reference/lake"),
        &server.url("reference/out"),
        &server,
        None,
    );
    let expected_code = status.code().expect("exits");
    assert!(expected_code <= 1, "{status:?}");
    let expected_lake = lake_files(&bucket.join("reference/lake"));
    let expected_out = out_files(&bucket.join("reference/out"));

    // Two workers take the kill points in turn until a run outlives its
    // point (it was past the last object written).
    let next = AtomicU64::new(0);
    let last = AtomicU64::new(u64::MAX);
    let kills = AtomicU64::new(0);
    let stride = kill_stride();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (next, last, kills) = (&next, &last, &kills);
            let (dir, server, bucket) = (&dir, &server, &bucket);
            let (expected_lake, expected_out) = (&expected_lake, &expected_out);
            scope.spawn(move || {
                loop {
                    let k = 1 + stride * next.fetch_add(1, Ordering::SeqCst);
                    if k > last.load(Ordering::SeqCst) {
                        break;
                    }
                    let prefix = format!("k{k}");
                    let (lake, out) = (
                        server.url(&format!("{prefix}/lake")),
                        server.url(&format!("{prefix}/out")),
                    );
                    let status = pipeline(dir, "input", &lake, &out, server, Some(k));
                    if status.signal() != Some(9) {
                        assert_eq!(status.code(), Some(expected_code), "k={k}");
                        last.fetch_min(k, Ordering::SeqCst);
                        break;
                    }
                    kills.fetch_add(1, Ordering::SeqCst);
                    let status = pipeline(dir, "input", &lake, &out, server, None);
                    assert_eq!(status.code(), Some(expected_code), "rerun after kill {k}");
                    let got_lake = lake_files(&bucket.join(&prefix).join("lake"));
                    let got_out = out_files(&bucket.join(&prefix).join("out"));
                    let staged: Vec<&String> = got_lake
                        .keys()
                        .filter(|k| k.starts_with("_staging") || k.starts_with("_commits"))
                        .collect();
                    assert!(
                        staged.is_empty(),
                        "killed after object {k}: left {staged:?}"
                    );
                    assert_eq!(
                        got_lake.keys().collect::<Vec<_>>(),
                        expected_lake.keys().collect::<Vec<_>>(),
                        "killed after object {k}"
                    );
                    for (rel, bytes) in expected_lake {
                        assert!(
                            got_lake[rel] == *bytes,
                            "killed after object {k}: {rel} differs"
                        );
                    }
                    assert_eq!(&got_out, expected_out, "killed after object {k}");
                }
            });
        }
    });
    let kills = kills.load(Ordering::SeqCst);
    assert!(kills * stride > 60, "only {kills} kill points");
}

const NOW: &str = "2026-11-02T03:00:00Z";

/// `meter <args>` in `dir` with the server's variables and `more`.
fn meter_on(
    dir: &Path,
    server: &S3Server,
    more: &[(&str, &str)],
    args: &[&str],
) -> crate::common::Run {
    let env: Vec<(String, String)> = server.env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.retain(|(k, _)| !more.iter().any(|(m, _)| m == k));
    env.extend_from_slice(more);
    crate::common::meter(dir, NOW, args, &env)
}

/// Lake objects under a table's prefix (not staging, commit records,
/// the lease or the registry copy).
fn table_objects(lake: &Path) -> Vec<String> {
    lake_files(lake)
        .into_keys()
        .filter(|k| k.ends_with(".parquet") && !k.starts_with('_'))
        .collect()
}

#[test]
fn a_lake_in_a_missing_bucket_or_behind_wrong_credentials_fails_naming_the_url() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_s3_server(&tmp.path().join("s3"));
    sample_input(&tmp.path().join("input"), 1, 1, 5);
    std::fs::copy(repo().join("pricing.toml"), tmp.path().join("pricing.toml")).unwrap();

    for args in [
        &[
            "ingest",
            "--input",
            "input",
            "--lake",
            "s3://no-such-bucket/lake",
        ][..],
        &[
            "rollup",
            "--month",
            "2026-10",
            "--lake",
            "s3://no-such-bucket/lake",
        ],
        &["query", "--lake", "s3://no-such-bucket/lake", "SELECT 1"],
    ] {
        let run = meter_on(tmp.path(), &server, &[], args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("s3://no-such-bucket/lake"),
            "{args:?}: {}",
            run.stderr
        );
        // The store's answer, not a guess: the bucket is not there.
        assert!(
            run.stderr.contains("NoSuchBucket"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("what to do"), "{}", run.stderr);
    }

    let url = server.url("lake");
    let run = meter_on(
        tmp.path(),
        &server,
        &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
        &["ingest", "--input", "input", "--lake", &url],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(&url), "{}", run.stderr);
    assert!(run.stderr.contains("credentials"), "{}", run.stderr);
    assert!(
        lake_files(&server.bucket_dir().join("lake")).is_empty(),
        "nothing is written"
    );
}

#[test]
fn a_throttled_commit_is_retried_and_an_outage_commits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_s3_server(&tmp.path().join("s3"));
    let bucket = server.bucket_dir();
    sample_input(&tmp.path().join("input"), 1, 1, 20);
    let ingest = |prefix: &str, more: &[(&str, &str)]| {
        let url = server.url(&format!("{prefix}/lake"));
        meter_on(
            tmp.path(),
            &server,
            more,
            &["ingest", "--input", "input", "--lake", &url],
        )
    };
    let reference = ingest("ref", &[]);
    assert!(reference.code <= 1, "{}", reference.stderr);
    let expected = lake_files(&bucket.join("ref/lake"));
    assert!(!table_objects(&bucket.join("ref/lake")).is_empty());

    // Two 503s on the commit record: retried, and the run is as if none.
    server.slow_down(2, Some("PUT"), "a/lake/_commits/");
    let run = ingest("a", &[]);
    assert_eq!(run.code, reference.code, "{}", run.stderr);
    assert_eq!(server.faults.lock().unwrap().pending(), 0, "both were hit");
    assert_eq!(lake_files(&bucket.join("a/lake")), expected);

    // An outage longer than the retries: the job fails naming the object
    // and what to do, and nothing reaches a table's prefix.
    server.slow_down(usize::MAX, Some("PUT"), "b/lake/_commits/");
    let run = ingest("b", &[("METER_STORE_MAX_RETRIES", "1")]);
    server.faults.lock().unwrap().clear();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(&server.url("b/lake/_commits/")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("what to do"), "{}", run.stderr);
    assert_eq!(table_objects(&bucket.join("b/lake")), Vec::<String>::new());
    // The next run clears what the failed one staged and ends as the
    // reference.
    let run = ingest("b", &[]);
    assert_eq!(run.code, reference.code, "{}", run.stderr);
    assert_eq!(lake_files(&bucket.join("b/lake")), expected);

    // A lake object that is corrupt: the reader names it.
    let victim = table_objects(&bucket.join("b/lake")).remove(0);
    std::fs::write(bucket.join("b/lake").join(&victim), b"not parquet").unwrap();
    std::fs::copy(repo().join("pricing.toml"), tmp.path().join("pricing.toml")).unwrap();
    let url = server.url("b/lake");
    let run = meter_on(
        tmp.path(),
        &server,
        &[],
        &["rollup", "--month", "2026-10", "--lake", &url],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("{url}/{victim}")),
        "{}",
        run.stderr
    );
}
