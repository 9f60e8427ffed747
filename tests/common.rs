use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{NaiveDate, TimeZone, Utc};
use meter::ingest::report::IngestReport;
use meter::ingest::{self, IngestOptions};
use meter::model::ctx::{Ctx, FixedClock};
use meter::sample::SampleOptions;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample_data() -> PathBuf {
    repo().join("sample-data")
}

/// The options `sample-data/` was generated with (see the justfile).
pub fn sample_data_options(out: &Path) -> SampleOptions {
    SampleOptions {
        out: out.to_path_buf(),
        customers: 3,
        days: 30,
        events_per_day: 40,
        seed: 42,
        clean: false,
        start: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
        usage_format: Default::default(),
        resource_interval_s: meter::sample::DEFAULT_RESOURCE_INTERVAL_S,
        contract_every: 0,
    }
}

pub fn ctx(run: &str) -> Ctx {
    Ctx::with_run_id(
        Arc::new(FixedClock(
            Utc.with_ymd_and_hms(2026, 11, 2, 3, 0, 0).unwrap(),
        )),
        run,
    )
}

pub fn options(input: &Path, lake: &Path) -> IngestOptions {
    IngestOptions {
        input: input.to_path_buf(),
        lake: lake.to_path_buf(),
        since: None,
        until: None,
        rebuild: false,
        max_reject_rate: 0.01,
        shard: meter::model::shard::Shard::ALL,
    }
}

pub fn ingest(input: &Path, lake: &Path, run: &str) -> IngestReport {
    ingest::run(&ctx(run), &options(input, lake)).expect("ingest runs")
}

/// An in-memory DuckDB with the schema views over `lake`.
pub fn duck(lake: &Path) -> duckdb::Connection {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    conn.execute_batch(&format!("SET VARIABLE lake = '{}';", lake.display()))
        .unwrap();
    let views = std::fs::read_to_string(repo().join("schemas/views.sql")).unwrap();
    conn.execute_batch(&views).unwrap();
    conn
}

pub fn count(conn: &duckdb::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get::<_, i64>(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every file under `dir` but the id indexes (`*.ids`, checked by
/// `assert_indexes`), relative, sorted.
pub fn list_files(dir: &Path) -> Vec<String> {
    let mut files = list_all_files(dir);
    files.retain(|f| !f.ends_with(".ids"));
    files
}

/// Every file under `dir`, relative, sorted.
pub fn list_all_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

pub fn assert_accounted(report: &IngestReport) {
    for f in &report.files {
        assert_eq!(
            f.counts.total(),
            f.lines_read,
            "{}: buckets do not add up",
            f.path
        );
    }
    assert_eq!(report.totals.total(), report.lines_read);
    assert!(
        !report.attention.iter().any(|a| a.starts_with("BUG")),
        "{:?}",
        report.attention
    );
}

/// What a run of the binary printed, and its exit code.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary in `dir` with the clock at `now` and no `METER_*`
/// variable from the environment but those in `env` (the way cron runs it).
pub fn meter(dir: &Path, now: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_meter"))
        .current_dir(dir)
        .args(args)
        .env("METER_FIXED_TIME", now)
        .env_remove("METER_CONFIG")
        .env_remove("METER_LAKE")
        .env_remove("METER_OUT")
        .env_remove("METER_INPUT")
        .env_remove("METER_PRICING")
        .env_remove("METER_CUSTOMERS")
        .env_remove("METER_LOG_FORMAT")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every file under `dir` last modified at the same whole second, as the
/// listing of a bucket tells it (S3 times have no sub-second part).
pub fn touch_all(dir: &Path) {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_791_000_000);
    for rel in list_files(dir) {
        let file = std::fs::File::options()
            .write(true)
            .open(dir.join(rel))
            .unwrap();
        file.set_modified(at).unwrap();
    }
}

/// Every raw file of the local lake has its id index, equal to its rows'
/// ids, and no index is left without its file.
pub fn assert_indexes(lake: &Path) {
    let open = meter::lake::Lake::open_read(lake).unwrap();
    let problems = meter::lake::idindex::problems(&open).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        list_all_files(lake).iter().any(|f| f.ends_with(".ids")),
        "a lake with raw files has indexes"
    );
}

/// The sample data (with its contracts.toml) ingested and its month
/// rolled up, once per test binary; each test bills a copy.
pub fn rolled_up_sample_lake() -> &'static Path {
    static LAKE: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    &LAKE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let lake = dir.path().join("lake");
            ingest(&sample_data(), &lake, "ingest-1");
            meter::rollup::run(
                &ctx("rollup-1"),
                &meter::rollup::RollupOptions {
                    lake: lake.clone(),
                    pricing: repo().join("pricing.toml"),
                    period: meter::rollup::Period::Month(
                        NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
                    ),
                },
            )
            .expect("rollup runs");
            (dir, lake)
        })
        .1
}
