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

/// Spawns `meter args`, reads the first line of its stdout and closes the
/// pipe, as `meter ... | head -1` does: (exit code, stderr).
fn closed_after_first_line(args: &[&str]) -> (i32, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_meter"))
        .args(args)
        .env("METER_FIXED_TIME", "2026-11-01T03:00:00Z")
        .env_remove("METER_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty(), "no output at all");
    // the reader is dropped here: the pipe is closed
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `meter query ... | head -1` panicked ("failed printing to stdout: Broken
/// pipe", exit 101): a closed pipe ends the output quietly, exit 0.
#[test]
fn broken_pipe_ends_query_quietly() {
    let (lake, out) = crate::query::sample_output();
    let args = [
        "query",
        "--lake",
        lake.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "SELECT range AS n, 'some padding to make the output long' AS pad FROM range(200000)",
    ];
    // The output is far larger than a pipe's buffer, so it is cut.
    let (code, full, _) = meter(&args);
    assert_eq!(code, 0);
    assert!(full.len() > 1 << 20, "{}", full.len());
    let (code, stderr) = closed_after_first_line(&args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, "", "a closed pipe is not an error");
}

/// The same for a job whose stdout is its run report (`--json`): the job
/// ends with its own exit code and report, without a panic.
#[test]
fn broken_pipe_ends_ingest_json_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    // Many small files: a run report several times a pipe's buffer.
    let input = tmp.path().join("input");
    meter::sample::generate(&meter::sample::SampleOptions {
        customers: 12,
        days: 30,
        events_per_day: 2,
        ..sample_data_options(&input)
    })
    .unwrap();
    let full_lake = tmp.path().join("lake-full");
    let (code, full, _) = meter(&[
        "ingest",
        "--input",
        input.to_str().unwrap(),
        "--lake",
        full_lake.to_str().unwrap(),
        "--json",
    ]);
    assert!(full.len() > 128 << 10, "{}", full.len());
    let lake = tmp.path().join("lake");
    let (closed_code, stderr) = closed_after_first_line(&[
        "ingest",
        "--input",
        input.to_str().unwrap(),
        "--lake",
        lake.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(closed_code, code, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    // The summary on stderr and the run report are whole.
    assert!(stderr.contains("  report: "), "{stderr}");
    assert_eq!(list_files(&lake.join("_runs")).len(), 1);
}

/// A corrupt `.gz` was named on stderr but its reason ("invalid gzip
/// header") was only in the run report.
#[test]
fn a_corrupt_gzip_prints_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    std::fs::create_dir_all(input.join("vm-1/cliproxy")).unwrap();
    std::fs::write(
        input.join("customers.csv"),
        "customer_id,name,email,tier,vm_ids,currency,stripe_customer_id,status,created_at\nc1,Acme,a@x,pro,vm-1,EUR,cus_1,active,2026-01-01\n",
    )
    .unwrap();
    std::fs::write(
        input.join("vm-1/cliproxy/usage.jsonl"),
        "{\"timestamp\":\"2026-10-01T10:00:00Z\",\"model\":\"gpt-4o\",\"provider\":\"openai\",\"input_tokens\":10,\"output_tokens\":2}\n",
    )
    .unwrap();
    std::fs::write(
        input.join("vm-1/cliproxy/usage.jsonl.1.gz"),
        "this was never gzip\n",
    )
    .unwrap();
    let lake = tmp.path().join("lake");
    let (code, _, stderr) = meter(&[
        "ingest",
        "--input",
        input.to_str().unwrap(),
        "--lake",
        lake.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("could not be read to the end"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("vm-1/cliproxy/usage.jsonl.1.gz"), "{line}");
    assert!(line.contains("invalid gzip header"), "{line}");
}

/// `meter approve` recorded `approved_by: "unknown"` when $USER was unset:
/// it takes --by, else $USER, else refuses (exit 2) and says so.
#[test]
fn approve_without_user_or_by_refuses() {
    let (lake, out) = crate::query::sample_output();
    let tmp = tempfile::tempdir().unwrap();
    let (lake_copy, out_copy) = (tmp.path().join("lake"), tmp.path().join("out"));
    copy_dir(lake, &lake_copy);
    copy_dir(out, &out_copy);
    let approve = |by: &[&str], user: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meter"));
        cmd.args(["approve", "--month", "2026-10", "--lake"])
            .arg(&lake_copy)
            .arg("--out")
            .arg(&out_copy)
            .args(by)
            .env("METER_FIXED_TIME", "2026-11-03T10:00:00Z")
            .env_remove("METER_CONFIG")
            .env_remove("USER");
        if let Some(u) = user {
            cmd.env("USER", u);
        }
        let o = cmd.output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let approved = out_copy.join("invoices/2026-10/approved.json");
    for (by, user) in [
        (&[][..], None),
        (&[][..], Some(" ")),
        (&["--by", ""][..], Some("alice")),
    ] {
        let (code, stderr) = approve(by, user);
        assert_eq!(code, 2, "{by:?} {user:?}: {stderr}");
        assert!(stderr.contains("--by"), "{stderr}");
        assert!(!approved.exists());
    }
    let (code, stderr) = approve(&[], Some("alice"));
    assert_eq!(code, 0, "{stderr}");
    let record = std::fs::read_to_string(&approved).unwrap();
    assert!(record.contains("\"approved_by\": \"alice\""), "{record}");
    assert!(!record.contains("unknown"), "{record}");
}
