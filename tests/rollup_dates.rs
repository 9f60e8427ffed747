//! Rollups of different dates side by side (`meter rollup --date`), then
//! the month from its days (`--month --from-days`), on a local lake and on
//! the S3 test server: the aggregates and invoices of one `--month` rollup;
//! a rollup of a date that runs keeps the same date, the whole month, other
//! jobs and exclusive ones out (exit 3); a month is not built from days
//! behind their events.

use std::path::Path;
use std::process::Child;

use chrono::NaiveDate;
use meter::sample::SampleOptions;

use crate::common::repo;
use crate::s3_server::start_s3_server;
use crate::shard::{bill, command, finish, hold_lease, hold_local, rows_of, run};

const DATES: [&str; 4] = ["2026-10-28", "2026-10-29", "2026-10-30", "2026-10-31"];

/// The daily and monthly aggregate views (`meter query`'s).
fn aggregates() -> Vec<&'static str> {
    (meter::read::query::VIEWS.iter().copied())
        .filter(|v| v.starts_with("daily_") || v.starts_with("monthly_"))
        .collect()
}

/// A work folder with four days of input and `pricing.toml`.
fn setup(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    meter::sample::generate(&SampleOptions {
        out: dir.join("input"),
        customers: 4,
        days: DATES.len() as u32,
        events_per_day: 30,
        seed: 5,
        clean: false,
        start: NaiveDate::from_ymd_opt(2026, 10, 28).unwrap(),
        usage_format: Default::default(),
        resource_interval_s: meter::sample::DEFAULT_RESOURCE_INTERVAL_S,
        contract_every: 0,
    })
    .unwrap();
    std::fs::copy(repo().join("pricing.toml"), dir.join("pricing.toml")).unwrap();
}

fn ingest(dir: &Path, lake: &str, env: &[(String, String)]) {
    let (code, _, err) = run(dir, &["ingest", "--input", "input", "--lake", lake], env);
    assert!(code <= 1, "{err}");
}

fn rollup(dir: &Path, lake: &str, period: &[&str], env: &[(String, String)]) -> Child {
    let args = [
        &[
            "rollup",
            "--lake",
            lake,
            "--pricing",
            "pricing.toml",
            "--json",
        ][..],
        period,
    ]
    .concat();
    command(dir, &args, env).spawn().unwrap()
}

/// `meter rollup` of October from its days.
fn from_days(lake: &str) -> [&str; 6] {
    [
        "rollup",
        "--lake",
        lake,
        "--month",
        "2026-10",
        "--from-days",
    ]
}

fn rollups_of_dates_give_the_month(
    dir: &Path,
    lake: impl Fn(&str) -> String,
    env: &[(String, String)],
) {
    let (one, split) = (lake("one"), lake("split"));
    ingest(dir, &one, env);
    ingest(dir, &split, env);
    finish(rollup(dir, &one, &["--month", "2026-10"], env));

    // Nothing rolled up yet: the month cannot be built from its days.
    let (code, _, err) = run(dir, &from_days(&split), env);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("4 day(s) of 2026-10"), "{err}");
    assert!(err.contains("--date 2026-10-28"), "{err}");

    let children: Vec<Child> = DATES
        .iter()
        .map(|d| rollup(dir, &split, &["--date", d], env))
        .collect();
    let reports: Vec<_> = children.into_iter().map(|c| finish(c).1).collect();
    for (report, date) in reports.iter().zip(DATES) {
        assert_eq!(report["period"], format!("date={date}"));
        assert!(report["events_priced"].as_u64().unwrap() > 0, "{report}");
        assert!(report["run_id"].as_str().unwrap().ends_with(date));
    }
    let (_, month) = finish(rollup(
        dir,
        &split,
        &["--month", "2026-10", "--from-days"],
        env,
    ));
    assert_eq!(month["events_priced"], 0, "{month}");
    assert_eq!(month["days"].as_array().unwrap().len(), 0, "{month}");
    assert_eq!(month["aggregates"].as_array().unwrap().len(), 4, "{month}");

    assert_eq!(aggregates().len(), 8);
    assert_eq!(
        rows_of(dir, &split, &aggregates(), env),
        rows_of(dir, &one, &aggregates(), env)
    );
    assert_eq!(
        bill(dir, &split, "out-split", env),
        bill(dir, &one, "out-one", env)
    );

    // New events for a day: the month is refused until that day is rolled
    // up again, and so is billing.
    late_event(dir, "2026-10-29");
    let (code, out, err) = run(
        dir,
        &["ingest", "--input", "late", "--lake", &split, "--json"],
        env,
    );
    assert!(code <= 1, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["tables"]["api_usage"]["rows"], 1, "{report}");
    let (code, _, err) = run(dir, &from_days(&split), env);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("1 day(s)") && err.contains("of 2026-10-29"),
        "{err}"
    );
    finish(rollup(dir, &split, &["--date", "2026-10-29"], env));
    finish(rollup(
        dir,
        &split,
        &["--month", "2026-10", "--from-days"],
        env,
    ));
}

/// Writes `late/`: the input's registry and one usage line of `date` (a
/// copy of one of the input's, with another request id and latency), a
/// new event of that day.
fn late_event(dir: &Path, date: &str) {
    let input = dir.join("input");
    let late = dir.join("late");
    for name in ["customers.csv", "users.csv"] {
        if input.join(name).is_file() {
            std::fs::create_dir_all(&late).unwrap();
            std::fs::copy(input.join(name), late.join(name)).unwrap();
        }
    }
    let mut vms: Vec<_> = std::fs::read_dir(&input)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    vms.sort();
    let needle = format!("\"timestamp\":\"{date}T1");
    for vm in vms {
        let usage = vm.join("cliproxy/usage.jsonl");
        let Ok(text) = std::fs::read_to_string(&usage) else {
            continue;
        };
        let Some(line) = text.lines().find(|l| l.contains(&needle)) else {
            continue;
        };
        let line = line
            .replacen("\"request_id\":\"", "\"request_id\":\"late-", 1)
            .replacen("\"latency_ms\":", "\"latency_ms\":1", 1);
        let out = late.join(vm.file_name().unwrap()).join("cliproxy");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("usage.jsonl"), line + "\n").unwrap();
        return;
    }
    panic!("no usage line of {date} in {}", input.display());
}

#[test]
fn rollups_of_four_dates_at_once_on_a_local_lake_give_the_months_aggregates_and_invoices() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    rollups_of_dates_give_the_month(tmp.path(), |name| format!("lake-{name}"), &[]);
}

#[test]
fn rollups_of_four_dates_at_once_on_s3_give_the_months_aggregates_and_invoices() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("work");
    setup(&dir);
    let server = start_s3_server(&tmp.path().join("s3"));
    rollups_of_dates_give_the_month(
        &dir,
        |name| server.url(&format!("lake-{name}")),
        &server.env(),
    );
}

/// While a rollup of 2026-10-30 runs: a rollup of the same date, of the
/// month, an ingest and an erasure exit 3 naming it; a rollup of another
/// date runs; once it is done, the same date runs.
fn running_rollup_excludes(
    dir: &Path,
    lake: &str,
    env: &[(String, String)],
    hold: &dyn Fn() -> Box<dyn FnOnce()>,
) {
    ingest(dir, lake, env);
    let release = hold();
    let refused: [&[&str]; 4] = [
        &["rollup", "--lake", lake, "--date", "2026-10-30"],
        &["rollup", "--lake", lake, "--month", "2026-10"],
        &["ingest", "--input", "input", "--lake", lake],
        &["erase", "--lake", lake, "--customer", "cust_0001"],
    ];
    for args in refused {
        let (code, _, err) = run(dir, args, env);
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(err.contains("2026-10-30"), "{args:?}: {err}");
    }
    finish(rollup(dir, lake, &["--date", "2026-10-31"], env));
    release();
    finish(rollup(dir, lake, &["--date", "2026-10-30"], env));
}

#[test]
fn a_running_rollup_of_a_date_on_a_local_lake_keeps_the_same_date_and_other_jobs_out() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let lake = tmp.path().join("lake");
    // What a running `rollup --date 2026-10-30` holds in a local lake.
    let hold = || {
        hold_local(
            &lake,
            "rollup-date-2026-10-30",
            "20261102T030000Z-rollup-2026-10-30",
        )
    };
    running_rollup_excludes(tmp.path(), "lake", &[], &hold);
}

#[test]
fn a_running_rollup_of_a_date_on_s3_keeps_the_same_date_and_other_jobs_out() {
    use meter::lake::lease::Claim;
    use meter::lake::store::Store;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("work");
    setup(&dir);
    let server = start_s3_server(&tmp.path().join("s3"));
    let url = server.url("lake");
    let store = std::sync::Arc::new(Store::open_with(&url, server.options()).unwrap());
    // Another machine's `rollup --date 2026-10-30`, as `Lake::open_as`
    // takes it.
    let hold = || {
        hold_lease(
            &store,
            "20261102T030000Z-rollup-2026-10-30.1",
            "rollup",
            Claim::date(NaiveDate::from_ymd_opt(2026, 10, 30).unwrap()),
        )
    };
    running_rollup_excludes(&dir, &url, &server.env(), &hold);
}
