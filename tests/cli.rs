//! The `meter` binary: exit codes and messages.

use std::process::Command;

use crate::common::*;

fn meter(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meter"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `meter ingest` on the sample data into `lake`, with extra flags.
fn ingest_sample(lake: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let input = sample_data();
    let mut args = vec![
        "ingest",
        "--input",
        input.to_str().unwrap(),
        "--lake",
        lake.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    meter(&args)
}

#[test]
fn missing_input_fails_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let (code, _, err) = meter(&[
        "ingest",
        "--input",
        "/nonexistent/input",
        "--lake",
        lake.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("/nonexistent/input") && err.contains("what to do:"),
        "{err}"
    );
}

#[test]
fn a_locked_lake_exits_3() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let _held = meter::lake::Lake::open(&lake, "other-run").unwrap();
    let (code, _, err) = ingest_sample(&lake, &[]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("held by another run"), "{err}");
}

#[test]
fn sample_data_run_succeeds_and_names_the_unlisted_vm() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let (code, _, err) = ingest_sample(&lake, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("VMs no customer lists"), "{err}");
    assert!(err.contains("api_usage"), "{err}");
    let reports = list_files(&lake.join("_runs"));
    assert_eq!(reports.len(), 1);
    // Rejects far above the default rate: --max-reject-rate 0 makes any reject an attention item.
    let lake2 = tmp.path().join("lake2");
    let (code, _, err) = ingest_sample(&lake2, &["--max-reject-rate", "0"]);
    assert_eq!(code, 1);
    assert!(err.contains("reject rate"), "{err}");
}

#[test]
fn rebuild_without_dates_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let (code, _, err) = ingest_sample(&lake, &["--rebuild"]);
    assert_eq!(code, 2);
    assert!(err.contains("--since and --until"), "{err}");
}

#[test]
fn sample_prints_its_totals() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s");
    let (code, stdout, err) = meter(&[
        "sample",
        "--out",
        out.to_str().unwrap(),
        "--customers",
        "1",
        "--days",
        "1",
        "--events-per-day",
        "5",
        "--clean",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("api_usage"), "{stdout}");
    assert!(out.join("customers.csv").exists());
}

#[test]
fn pricing_check_accepts_the_shipped_file_and_names_bad_keys() {
    let shipped = repo().join("pricing.toml");
    let (code, out, err) = meter(&["pricing", "check", "--pricing", shipped.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(": ok ("), "{out}");
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("pricing.toml");
    let text =
        std::fs::read_to_string(&shipped)
            .unwrap()
            .replacen("input = \"5\"", "input = \"-5\"", 1);
    std::fs::write(&bad, text).unwrap();
    let (code, _, err) = meter(&["pricing", "check", "--pricing", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("models[0] (claude-opus-4-5).input: negative price -5"),
        "{err}"
    );
}

/// `meter rollup` on `lake` with the shipped price list, with extra flags.
fn rollup(lake: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let pricing = repo().join("pricing.toml");
    let mut args = vec![
        "rollup",
        "--lake",
        lake.to_str().unwrap(),
        "--pricing",
        pricing.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    meter(&args)
}

#[test]
fn rollup_names_unpriced_models_and_refuses_a_missing_lake() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let (code, _, err) = rollup(&lake, &["--month", "2026-10"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("run `meter ingest` into it first"), "{err}");
    let (code, _, err) = ingest_sample(&lake, &[]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = rollup(&lake, &["--month", "2026-10"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("unpriced: gemini-1.5-pro: 110 events"),
        "{err}"
    );
    let (code, _, err) = rollup(&lake, &[]);
    assert_eq!(code, 2, "--date or --month is required: {err}");
}

#[test]
fn the_whole_pipeline_bills_the_sample_month() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let out = tmp.path().join("out");
    let pricing = repo().join("pricing.toml");
    let input = sample_data();
    let run = |job: &str| {
        meter(&[
            job,
            "--input",
            input.to_str().unwrap(),
            "--lake",
            lake.to_str().unwrap(),
            "--month",
            "2026-10",
            "--pricing",
            pricing.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let (code, _, err) = run("pipeline");
    // 1: unpriced gemini-1.5-pro usage and a VM nobody lists need a look.
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "published revision 1 at {}/invoices/2026-10/rev-1",
            out.display()
        )),
        "{err}"
    );
    assert!(out.join("invoices/2026-10/rev-1/cust_0004.csv").exists());
    // `meter bill` alone, again: the current revision stands.
    let (code, _, err) = meter(&[
        "bill",
        "--lake",
        lake.to_str().unwrap(),
        "--month",
        "2026-10",
        "--pricing",
        pricing.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unchanged revision 1"), "{err}");
    // A month that was never rolled up: refused, with the command to run.
    let (code, _, err) = meter(&[
        "bill",
        "--lake",
        lake.to_str().unwrap(),
        "--month",
        "2026-08",
        "--pricing",
        pricing.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("meter rollup --lake"), "{err}");
    assert!(err.contains("what to do:"), "{err}");
}
