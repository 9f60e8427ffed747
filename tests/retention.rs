//! `meter retention` on a lake ingested and rolled up from a generated tree
//! that spans the cutoff (2023-10-25..=2023-11-07, cutoff 2023-11-01 with 36
//! months kept on 2026-11-22).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use meter::Error;
use meter::lake::retention::{self, RetentionOptions, RetentionReport};
use meter::lake::{Commit, Lake};
use meter::model::ctx::{Ctx, FixedClock};
use meter::rollup::{self, Period, RollupOptions};
use meter::sample::{self, SampleOptions};

use crate::common::*;

const CUTOFF: &str = "2023-11-01";
/// The tables retention deletes from, as the first path component.
const RETAINED: [&str; 6] = [
    "api_usage",
    "api_requests",
    "resource_usage",
    "activity",
    "rejects",
    "priced",
];

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// Ingested and rolled up (both months), in `<tmp>/lake`.
fn build_lake(tmp: &Path) -> PathBuf {
    let input = tmp.join("input");
    sample::generate(&SampleOptions {
        out: input.clone(),
        customers: 1,
        days: 14,
        events_per_day: 6,
        seed: 7,
        clean: false,
        start: date("2023-10-25"),
        usage_format: Default::default(),
        resource_interval_s: meter::sample::DEFAULT_RESOURCE_INTERVAL_S,
        contract_every: 0,
    })
    .unwrap();
    let lake = tmp.join("lake");
    assert_accounted(&ingest(&input, &lake, "ingest-run"));
    for (run, month) in [("rollup-oct", "2023-10-01"), ("rollup-nov", "2023-11-01")] {
        rollup::run(
            &ctx(run),
            &RollupOptions {
                lake: lake.clone(),
                pricing: repo().join("pricing.toml"),
                period: Period::Month(date(month)),
            },
        )
        .unwrap();
    }
    lake
}

fn clock_ctx(run: &str) -> Ctx {
    Ctx::with_run_id(
        Arc::new(FixedClock(
            Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap(),
        )),
        run,
    )
}

fn retain(lake: &Path, run: &str, dry_run: bool) -> RetentionReport {
    retention::run(
        &clock_ctx(run),
        &RetentionOptions {
            lake: lake.to_path_buf(),
            keep_months: 36,
            dry_run,
        },
    )
    .unwrap()
}

/// Files and bytes per partition directory of the retained tables, dated
/// before the cutoff, read from disk independently of the stage.
fn old_partitions(lake: &Path) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for f in list_all_files(lake) {
        let (dir, _) = f.rsplit_once('/').unwrap_or(("", ""));
        let Some((_, part)) = dir.rsplit_once('/') else {
            continue;
        };
        let Some(day) = part.strip_prefix("date=") else {
            continue;
        };
        let top = dir.split('/').next().unwrap();
        if RETAINED.contains(&top) && date(day) < date(CUTOFF) {
            let e = out.entry(dir.to_string()).or_default();
            // Files are data files; bytes count their id indexes too.
            e.0 += u64::from(!f.ends_with(".ids"));
            e.1 += std::fs::metadata(lake.join(&f)).unwrap().len();
        }
    }
    out
}

/// Every file but the run reports and journals.
fn lake_files(lake: &Path) -> BTreeSet<String> {
    list_files(lake)
        .into_iter()
        .filter(|f| !f.starts_with("_runs/"))
        .collect()
}

#[test]
fn a_dry_run_lists_exactly_the_old_partitions_and_deletes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = build_lake(tmp.path());
    let old = old_partitions(&lake);
    // The fixture has old partitions in every table retention covers.
    for top in [
        "api_usage/",
        "api_requests/",
        "resource_usage/",
        "activity/",
    ] {
        assert!(old.keys().any(|k| k.starts_with(top)), "{top}: {old:?}");
    }
    assert!(old.keys().any(|k| k.starts_with("priced/api_usage/")));
    assert!(old.keys().any(|k| k.starts_with("rejects/")), "{old:?}");
    let before = lake_files(&lake);

    let report = retain(&lake, "dry", true);
    assert!(report.dry_run);
    assert_eq!(report.cutoff, date(CUTOFF));
    assert_eq!(
        report.partitions,
        old.keys().cloned().collect::<Vec<_>>(),
        "the dry run lists exactly the old partitions"
    );
    assert_eq!(report.partitions_deleted, old.len() as u64);
    assert_eq!(report.files_deleted, old.values().map(|v| v.0).sum::<u64>());
    assert_eq!(report.bytes_deleted, old.values().map(|v| v.1).sum::<u64>());
    assert_eq!(lake_files(&lake), before, "a dry run deletes nothing");
    assert!(lake.join("_runs/dry.json").exists());
    assert!(!report.needs_attention(), "{:?}", report.attention);
}

#[test]
fn a_run_deletes_exactly_the_old_partitions_and_keeps_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = build_lake(tmp.path());
    let old = old_partitions(&lake);
    let before = lake_files(&lake);
    let aggregates: BTreeSet<String> = before
        .iter()
        .filter(|f| f.starts_with("daily/") || f.starts_with("monthly/"))
        .cloned()
        .collect();
    assert!(aggregates.iter().any(|f| f.contains("date=2023-10-2")));
    assert!(aggregates.iter().any(|f| f.contains("month=2023-10")));

    let report = retain(&lake, "real", false);
    assert!(!report.dry_run);
    assert_eq!(report.partitions, old.keys().cloned().collect::<Vec<_>>());
    assert!(!report.needs_attention(), "{:?}", report.attention);

    // Exactly the old partitions' files are gone, with their directories.
    let after = lake_files(&lake);
    let expected: BTreeSet<String> = before
        .iter()
        .filter(|f| !old.keys().any(|p| f.starts_with(&format!("{p}/"))))
        .cloned()
        .collect();
    assert_eq!(after, expected);
    for p in old.keys() {
        assert!(!lake.join(p).exists(), "{p} is still there");
    }
    // Aggregates, recent raw events and recent rejects stay.
    assert!(aggregates.is_subset(&after));
    for top in ["api_usage", "activity", "rejects", "priced/api_usage"] {
        assert!(
            after
                .iter()
                .any(|f| f.starts_with(&format!("{top}/date=2023-11-"))),
            "{top}: recent partitions are kept"
        );
    }
    assert!(after.contains("_lake.json") && after.contains("_registry/customers.csv"));

    // The report's counts are what was on disk, table by table.
    for t in &report.tables {
        let mine: Vec<&(u64, u64)> = old
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{}/date=", t.table)))
            .map(|(_, v)| v)
            .collect();
        assert_eq!(t.partitions_deleted, mine.len() as u64, "{}", t.table);
        assert_eq!(
            t.files_deleted,
            mine.iter().map(|v| v.0).sum::<u64>(),
            "{}",
            t.table
        );
        assert_eq!(
            t.bytes_deleted,
            mine.iter().map(|v| v.1).sum::<u64>(),
            "{}",
            t.table
        );
        if t.partitions_deleted > 0 {
            assert!(t.first_date.unwrap() >= date("2023-10-24"), "{t:?}");
            assert_eq!(t.last_date, Some(date("2023-10-31")), "{t:?}");
        }
    }
    let aggregate_partitions: BTreeSet<&str> = aggregates
        .iter()
        .map(|f| f.rsplit_once('/').unwrap().0)
        .collect();
    assert_eq!(
        report.aggregates_kept_total(),
        aggregate_partitions.len() as u64
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lake.join("_runs/real.json")).unwrap())
            .unwrap();
    assert_eq!(saved["partitions_deleted"], old.len() as u64);
    assert_eq!(saved["cutoff"], CUTOFF);

    // A second run finds nothing to delete.
    let again = retain(&lake, "again", false);
    assert_eq!(
        (again.partitions_deleted, again.files_deleted),
        (0, 0),
        "{}",
        again.summary()
    );
    assert_eq!(lake_files(&lake), after);
    assert_indexes(&lake);
}

#[test]
fn an_interrupted_run_is_finished_by_the_next_one() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = build_lake(tmp.path());
    let old = old_partitions(&lake);
    // A retention that crashed after journaling its commit.
    let deletes: Vec<PathBuf> = list_all_files(&lake)
        .into_iter()
        .filter(|f| old.keys().any(|p| f.starts_with(&format!("{p}/"))))
        .map(|f| lake.join(f))
        .collect();
    let journal = Commit {
        renames: Vec::new(),
        deletes,
    };
    std::fs::write(
        lake.join("_runs/crashed.commit.json"),
        serde_json::to_string(&journal).unwrap(),
    )
    .unwrap();

    let report = retain(&lake, "next", false);
    assert!(!lake.join("_runs/crashed.commit.json").exists());
    // The journal removed the files; this run removes the emptied directories.
    assert_eq!(report.partitions, old.keys().cloned().collect::<Vec<_>>());
    assert_eq!(report.files_deleted, 0);
    for p in old.keys() {
        assert!(!lake.join(p).exists(), "{p} is still there");
    }
    assert!(old_partitions(&lake).is_empty());
}

#[test]
fn a_held_lock_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let _held = Lake::open(&lake, "other-run").unwrap();
    match retention::run(
        &clock_ctx("retention-run"),
        &RetentionOptions {
            lake: lake.clone(),
            keep_months: 36,
            dry_run: true,
        },
    ) {
        Err(Error::Locked { holder, .. }) => assert!(holder.contains("other-run"), "{holder}"),
        other => panic!("expected Locked, got {:?}", other.map(|r| r.run_id)),
    }
}

#[test]
fn keeping_zero_months_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    drop(Lake::open(&lake, "init").unwrap());
    let err = retention::run(
        &clock_ctx("r"),
        &RetentionOptions {
            lake,
            keep_months: 0,
            dry_run: false,
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::Usage(_)), "{err}");
}

fn meter(args: &[&str], lake: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meter"))
        .args(args)
        .env("METER_LAKE", lake)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_job_prints_the_dry_run_and_refuses_zero_months() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = build_lake(tmp.path());
    let old = old_partitions(&lake);
    // The binary reads the wall clock: keep as many months as put the
    // cutoff on 2023-11-01.
    let today = Utc::now().date_naive();
    let keep = (today.year() * 12 + today.month0() as i32) - (2023 * 12 + 10);
    let keep = keep.to_string();

    let (code, out, err) = meter(&["retention", "--keep-months", &keep, "--dry-run"], &lake);
    assert_eq!(code, 0, "{err}");
    let expected: Vec<String> = old
        .keys()
        .map(|p| lake.join(p).display().to_string())
        .collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);
    assert!(err.starts_with("retention "), "{err}");
    assert!(err.contains("would delete"), "{err}");
    assert_eq!(old_partitions(&lake), old);

    let (code, _, err) = meter(&["retention", "--keep-months", "0"], &lake);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--keep-months 0"), "{err}");
    assert_eq!(old_partitions(&lake), old);
}
