//! Crash safety: `meter pipeline` killed with SIGKILL right after each file
//! it writes (the `METER_FAULT_KILL_AFTER_FILES` hook), then run again,
//! ends with exactly the lake and the outputs of a run never interrupted,
//! byte for byte; and at the moment of the kill, readers see only complete
//! files.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::NaiveDate;
use meter::bill::publish::{Latest, Manifest};
use meter::model::ids::sha256_hex;
use meter::sample::SampleOptions;

use crate::common::repo;

/// Every file below `root` but run reports and the lock, by relative path.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel.starts_with("lake/_runs")
                || rel == "lake/_lock"
                || rel == "input"
                || rel == "pricing.toml"
            {
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

/// Runs in `dir` with relative paths, so that runs in different folders
/// write the same manifests.
fn pipeline(dir: &Path, kill_after: Option<u64>) -> ExitStatus {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meter"));
    cmd.current_dir(dir)
        .args(["pipeline", "--month", "2026-10", "--input", "input"])
        .args([
            "--lake",
            "lake",
            "--out",
            "out",
            "--pricing",
            "pricing.toml",
        ])
        .env("METER_FIXED_TIME", "2026-11-02T03:00:00Z")
        .env_remove("METER_CONFIG")
        .stderr(std::process::Stdio::null());
    if let Some(n) = kill_after {
        cmd.env(meter::lake::fault::KILL_AFTER_FILES, n.to_string());
    }
    cmd.status().unwrap()
}

/// What a reader may see at any moment: committed Parquet files that open,
/// and a latest.json whose manifest lists only complete objects.
fn readers_see_complete_files(dir: &Path) {
    for rel in tree(dir).keys().filter(|r| r.ends_with(".parquet")) {
        let file = std::fs::File::open(dir.join(rel)).unwrap();
        let reader = parquet::file::reader::SerializedFileReader::new(file);
        assert!(reader.is_ok(), "{rel} is not a complete Parquet file");
    }
    let latest = dir.join("out/invoices/2026-10/latest.json");
    if let Ok(text) = std::fs::read(&latest) {
        let latest: Latest = serde_json::from_slice(&text).expect("latest.json is whole");
        let manifest = std::fs::read(dir.join("out").join(&latest.manifest)).unwrap();
        let manifest: Manifest = serde_json::from_slice(&manifest).unwrap();
        for o in manifest.objects {
            let bytes = std::fs::read(dir.join("out").join(&o.key)).unwrap();
            assert_eq!(sha256_hex(&bytes), o.sha256, "{}", o.key);
        }
    }
}

#[test]
fn killed_after_any_file_a_rerun_ends_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    meter::sample::generate(&SampleOptions {
        out: input.clone(),
        customers: 1,
        days: 1,
        events_per_day: 20,
        seed: 7,
        clean: false,
        start: NaiveDate::from_ymd_opt(2026, 10, 31).unwrap(),
        usage_format: Default::default(),
        resource_interval_s: meter::sample::DEFAULT_RESOURCE_INTERVAL_S,
        contract_every: 0,
    })
    .unwrap();

    let fresh = |dir: &Path| {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        std::os::unix::fs::symlink(&input, dir.join("input")).unwrap();
        std::fs::copy(repo().join("pricing.toml"), dir.join("pricing.toml")).unwrap();
    };
    let reference = tmp.path().join("reference");
    fresh(&reference);
    let status = pipeline(&reference, None);
    let expected_code = status.code().expect("exits");
    assert!(expected_code <= 1, "{status:?}");
    let expected = tree(&reference);
    assert!(expected.keys().any(|k| k.ends_with("latest.json")));

    // Two workers take the kill points in turn until a run outlives its
    // point (it was past the last file written).
    let next = AtomicU64::new(1);
    let last = AtomicU64::new(u64::MAX);
    let kills = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for worker in 0..2 {
            let (next, last, kills, expected) = (&next, &last, &kills, &expected);
            let dir = tmp.path().join(format!("worker{worker}"));
            scope.spawn(move || {
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    if k > last.load(Ordering::SeqCst) {
                        break;
                    }
                    fresh(&dir);
                    let status = pipeline(&dir, Some(k));
                    if status.signal() != Some(9) {
                        assert_eq!(status.code(), Some(expected_code), "k={k}");
                        last.fetch_min(k, Ordering::SeqCst);
                        break;
                    }
                    kills.fetch_add(1, Ordering::SeqCst);
                    readers_see_complete_files(&dir);
                    let status = pipeline(&dir, None);
                    assert_eq!(status.code(), Some(expected_code), "rerun after kill {k}");
                    let got = tree(&dir);
                    let missing: Vec<&String> =
                        expected.keys().filter(|p| !got.contains_key(*p)).collect();
                    let extra: Vec<&String> =
                        got.keys().filter(|p| !expected.contains_key(*p)).collect();
                    let differ: Vec<&String> = expected
                        .iter()
                        .filter(|(p, b)| got.get(*p).is_some_and(|g| g != *b))
                        .map(|(p, _)| p)
                        .collect();
                    assert!(
                        missing.is_empty() && extra.is_empty() && differ.is_empty(),
                        "killed after file {k}: missing {missing:?}, extra {extra:?}, different {differ:?}"
                    );
                }
            });
        }
    });
    let kills = kills.load(Ordering::SeqCst);
    // every stage wrote files: lake partitions, aggregates, invoices
    assert!(kills > 20, "only {kills} kill points");
}
