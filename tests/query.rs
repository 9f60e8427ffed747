//! `meter query` on the sample pipeline's output: the README's questions,
//! the views on an empty lake, money types, output formats and bad SQL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;

/// `meter pipeline` on the sample data, once: (lake, out).
pub fn sample_output() -> &'static (PathBuf, PathBuf) {
    static OUT: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    let (_, lake, out) = OUT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        let out = dir.path().join("out");
        let input = sample_data();
        let pricing = repo().join("pricing.toml");
        let (code, _, err) = meter(&[
            "pipeline",
            "--input",
            input.to_str().unwrap(),
            "--lake",
            lake.to_str().unwrap(),
            "--month",
            "2026-10",
            "--out",
            out.to_str().unwrap(),
            "--pricing",
            pricing.to_str().unwrap(),
        ]);
        // 1: the sample data has unpriced usage and a VM no customer lists
        assert_eq!(code, 1, "{err}");
        (dir, lake, out)
    });
    // A OnceLock of a tuple gives out references to its fields only.
    static PAIR: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PAIR.get_or_init(|| (lake.clone(), out.clone()))
}

/// Runs `meter` with a fixed clock: (exit code, stdout, stderr).
pub fn meter(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meter"))
        .args(args)
        .env("METER_FIXED_TIME", "2026-11-01T03:00:00Z")
        .env_remove("METER_CONFIG")
        .env_remove("METER_LAKE")
        .env_remove("METER_OUT")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `meter query` on a lake and out folder; asserts exit 0.
pub fn query(lake: &Path, out: &Path, format: &str, sql: &str) -> String {
    let (code, stdout, err) = meter(&[
        "query",
        "--lake",
        lake.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--format",
        format,
        // the SQL may start with a `--` comment
        "--",
        sql,
    ]);
    assert_eq!(code, 0, "{sql}: {err}");
    stdout
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

/// The README's three questions, exactly as schemas/questions.sql holds
/// them, on the sample data.
#[test]
fn readme_questions_on_the_sample_data() {
    let (lake, out) = sample_output();
    let questions = meter::read::query::questions();
    assert_eq!(questions.len(), 3);
    for (name, sql) in questions {
        let result = query(lake, out, "table", sql);
        assert!(!result.starts_with("(0 rows)"), "{name}");
        insta::assert_snapshot!(format!("question_{name}"), result);
    }
}

#[test]
fn show_tables_lists_every_view() {
    let (lake, out) = sample_output();
    let shown = query(lake, out, "csv", "SHOW TABLES");
    let names: Vec<String> = csv_rows(&shown).into_iter().map(|r| r[0].clone()).collect();
    let mut expected: Vec<&str> = meter::read::query::views().to_vec();
    expected.sort();
    assert_eq!(names, expected);
    // Notes need a month approved, pushed and billed again: the contract
    // tests read them (`contracts::contract_invoices_go_to_stripe_...`).
    for view in meter::read::query::views()
        .iter()
        .filter(|v| **v != "notes")
    {
        let n = query(lake, out, "csv", &format!("SELECT count(*) FROM {view}"));
        assert_ne!(
            n, "count_star()\r\n0\r\n",
            "{view} is empty on the sample data"
        );
    }
}

const COLUMNS: &str = "SELECT table_name, column_name, data_type FROM information_schema.columns \
                       WHERE table_schema = 'main' ORDER BY table_name, ordinal_position";

/// No view has a DOUBLE column but the measurements (CPU and memory
/// percentages, network MB, disk GB, durations); every money column is a
/// DECIMAL.
#[test]
fn no_view_exposes_a_double_money_column() {
    let (lake, out) = sample_output();
    let columns = csv_rows(&query(lake, out, "csv", COLUMNS));
    let measurement = |c: &str| {
        ["percent", "_mb", "disk_gb", "duration_seconds"]
            .iter()
            .any(|m| c.contains(m))
    };
    let money = [
        "cost",
        "provider_cost",
        "unit_price",
        "opening",
        "applied",
        "expired",
        "closing",
        "applied_invoice_amount",
        "amount",
        "fee",
        "api_usage",
        "compute",
        "discounts",
        "commitment",
        "credit",
        "total",
        "provider_cost_converted",
        "margin",
        "monthly_limit",
        "over_limit",
        "fx_rate",
        "compute_hours",
    ];
    let mut money_seen = 0;
    for r in &columns {
        let (view, column, ty) = (&r[0], &r[1], &r[2]);
        assert!(
            !(ty == "DOUBLE" || ty == "FLOAT") || measurement(column),
            "{view}.{column} is {ty}"
        );
        if money.contains(&column.as_str()) {
            money_seen += 1;
            assert!(ty.starts_with("DECIMAL"), "{view}.{column} is {ty}");
        }
    }
    assert!(money_seen >= 15, "{money_seen} money columns checked");
}

/// A lake with no rollup, no rejects and no invoices: every view exists,
/// is empty, and has the columns and types it has on a full lake.
#[test]
fn an_empty_lake_has_every_view_empty_and_typed() {
    let (lake, out) = sample_output();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("lake");
    std::fs::create_dir_all(&empty).unwrap();
    let nothing = dir.path().join("out");
    assert_eq!(
        query(&empty, &nothing, "csv", COLUMNS),
        query(lake, out, "csv", COLUMNS)
    );
    for view in meter::read::query::views() {
        assert_eq!(
            query(
                &empty,
                &nothing,
                "csv",
                &format!("SELECT count(*) AS n FROM {view}")
            ),
            "n\r\n0\r\n",
            "{view}"
        );
    }
    // Raw events but no rollup yet: the rollup views are empty, the raw ones not.
    let raw = dir.path().join("raw");
    ingest(&sample_data(), &raw, "ingest-1");
    let counts = query(
        &raw,
        &nothing,
        "csv",
        "SELECT (SELECT count(*) FROM api_usage) > 0 AS raw, \
         (SELECT count(*) FROM daily_api_usage) AS daily, \
         (SELECT count(*) FROM monthly_resource_usage) AS monthly, \
         (SELECT count(*) FROM runs) AS runs",
    );
    assert_eq!(counts, "raw,daily,monthly,runs\r\ntrue,0,0,1\r\n");
}

/// DECIMAL sums are exact in every format: JSON strings, CSV and table text.
#[test]
fn formats_render_decimals_exactly() {
    let (lake, out) = sample_output();
    let sql = "SELECT customer_id, sum(cost) AS cost, count(*) AS events, min(ts) AS first \
               FROM priced_api_usage WHERE customer_id IS NOT NULL GROUP BY ALL ORDER BY ALL";
    let json = query(lake, out, "json", sql);
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let first = &parsed[0];
    assert!(
        first["cost"].is_string() && first["events"].is_u64(),
        "{json}"
    );
    let csv = query(lake, out, "csv", sql);
    let table = query(lake, out, "table", sql);
    insta::assert_snapshot!("formats_json", json);
    insta::assert_snapshot!("formats_csv", csv);
    insta::assert_snapshot!("formats_table", table);
}

#[test]
fn bad_sql_exits_2_with_duckdbs_message_and_a_hint() {
    let (lake, out) = sample_output();
    let (code, stdout, err) = meter(&[
        "query",
        "--lake",
        lake.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "SELECT nope FROM api_usage",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(stdout.is_empty());
    assert!(err.contains("\"nope\" not found"), "{err}");
    assert!(err.contains("SHOW TABLES"), "{err}");
}

/// The query takes no lock: it runs while another run holds the lake.
#[test]
fn a_query_runs_while_the_lake_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, out) = sample_output();
    let copy = dir.path().join("lake");
    copy_dir(lake, &copy);
    let _held = meter::lake::Lake::open(&copy, "nightly").unwrap();
    let n = query(
        &copy,
        out,
        "csv",
        "SELECT count(*) > 0 AS rows FROM api_usage",
    );
    assert_eq!(n, "rows\r\ntrue\r\n");
}

/// Every `meter query` and `meter explain` example of the README (inline
/// or in a code block, `cargo run --` read as `meter`), skipping synopses
/// with placeholders (`DIR`, `[--out URL]`, `...`). Read from README.md, so they cannot drift.
fn readme_examples() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let placeholders = ["DIR", "URL", "YYYY-MM", "\"SQL\"", "ID", "M", "C", "K", "N"];
    let mut found = Vec::new();
    let mut in_block = false;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        let mut candidates: Vec<&str> = line.split('`').skip(1).step_by(2).collect();
        if in_block {
            candidates = vec![line.trim()];
        }
        for c in candidates {
            let c = c.strip_prefix("$ ").unwrap_or(c).trim();
            let c = match c.strip_prefix("cargo run -- ") {
                Some(rest) => format!("meter {rest}"),
                None => c.to_string(),
            };
            let example = (c.starts_with("meter query ") || c.starts_with("meter explain "))
                && !c.contains('[')
                && !c.contains("...")
                && !c.split_whitespace().any(|w| placeholders.contains(&w));
            if example && !found.contains(&c) {
                found.push(c);
            }
        }
    }
    found
}

/// The README's `meter query --lake lake "$(sed -n '/name:
/// rejects_by_reason/,$p' schemas/questions.sql)"` exited 2: clap took the
/// SQL's leading `--` comment for a flag. Every example runs, verbatim, in a
/// shell, on the sample pipeline's lake and invoices.
#[test]
fn readme_query_and_explain_examples_run_verbatim() {
    let (lake, out) = sample_output();
    let examples = readme_examples();
    assert!(
        examples
            .iter()
            .any(|e| e.contains("$(sed -n '/name: rejects_by_reason/")),
        "{examples:#?}"
    );
    assert!(examples.iter().any(|e| e.starts_with("meter explain ")));
    assert!(examples.len() >= 6, "{examples:#?}");
    // The README's working directory: lake, out and schemas side by side,
    // and `meter` on the PATH.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::os::unix::fs::symlink(lake, dir.join("lake")).unwrap();
    std::os::unix::fs::symlink(out, dir.join("out")).unwrap();
    std::os::unix::fs::symlink(repo().join("schemas"), dir.join("schemas")).unwrap();
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_meter"), bin.join("meter")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for example in &examples {
        let run = Command::new("sh")
            .arg("-c")
            .arg(example)
            .current_dir(dir)
            .env("PATH", &path)
            .env("METER_FIXED_TIME", "2026-11-01T03:00:00Z")
            .env("METER_LAKE", "lake")
            .env("METER_OUT", "out")
            .env_remove("METER_CONFIG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(0), "{example}\n{stderr}");
        assert!(stdout.lines().count() >= 2, "{example}\n{stdout}");
        assert!(!stdout.contains("(0 rows)"), "{example}\n{stdout}");
    }
}

/// A SQL statement starting with `-` (a comment, or a negative number) is
/// the SQL argument, not a flag, wherever it stands.
#[test]
fn sql_starting_with_a_hyphen_is_not_a_flag() {
    let (lake, out) = sample_output();
    for (args, expected) in [
        (
            vec![
                "--lake",
                "LAKE",
                "--out",
                "OUT",
                "-- a comment\nSELECT 41 + 1 AS n",
            ],
            "42",
        ),
        (vec!["-1 * -42 AS n", "--lake", "LAKE"], ""),
        (
            vec![
                "--lake",
                "LAKE",
                "--format",
                "csv",
                "--out",
                "OUT",
                "--x\nSELECT -3 AS n",
            ],
            "-3",
        ),
    ] {
        let args: Vec<&str> = std::iter::once("query")
            .chain(args.iter().map(|a| match *a {
                "LAKE" => lake.to_str().unwrap(),
                "OUT" => out.to_str().unwrap(),
                a => a,
            }))
            .collect();
        let (code, stdout, stderr) = meter(&args);
        if expected.is_empty() {
            // Not SQL DuckDB takes, but DuckDB's refusal, not clap's.
            assert_eq!(code, 2, "{stderr}");
            assert!(stderr.contains("the query failed"), "{stderr}");
        } else {
            assert_eq!(code, 0, "{args:?}: {stderr}");
            assert!(stdout.contains(expected), "{stdout}");
        }
    }
}
