//! The scheduled jobs through the binary, configured the way cron runs
//! them: a `meter.toml`, METER_* variables, `METER_FIXED_TIME` for the clock.

use std::path::Path;

use crate::common::{meter, repo, sample_data};

/// A folder with a `meter.toml` naming the sample input, a lake and an out
/// folder beside it, and `pricing`.
fn configured(pricing: &Path) -> tempfile::TempDir {
    configured_input(&sample_data(), pricing)
}

/// A folder with a `meter.toml` naming `input`, a lake and an out folder
/// beside it, and `pricing`.
fn configured_input(input: &Path, pricing: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("meter.toml"),
        format!(
            "input = {:?}\nlake = \"lake\"\nout = \"out\"\npricing = {:?}\n",
            input.display().to_string(),
            pricing.display().to_string()
        ),
    )
    .unwrap();
    dir
}

/// The alerts a night wrote to `<out>/alerts/<date>.jsonl`.
fn alerts_of(dir: &Path, date: &str) -> Vec<serde_json::Value> {
    read(&dir.join(format!("out/alerts/{date}.jsonl")))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (customer, kind, threshold) of each alert, in file order.
fn alert_keys(alerts: &[serde_json::Value]) -> Vec<(String, String, u64)> {
    alerts
        .iter()
        .map(|a| {
            (
                a["customer_id"].as_str().unwrap().to_string(),
                a["kind"].as_str().unwrap().to_string(),
                a["threshold_percent"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn key(c: &str, k: &str, t: u64) -> (String, String, u64) {
    (c.to_string(), k.to_string(), t)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn nightly_meters_yesterday_from_meter_toml_and_reruns_alike() {
    let dir = configured(&repo().join("pricing.toml"));
    let run = meter(
        dir.path(),
        "2026-10-22T02:00:00Z",
        &["nightly", "--date", "2026-10-21"],
        &[],
    );
    // unpriced gemini-1.5-pro usage needs attention
    assert_eq!(run.code, 1, "{}", run.stderr);
    let file = dir
        .path()
        .join("out/stripe/daily/2026-10-21/meter_events.jsonl");
    let events = read(&file);
    assert!(!events.is_empty());
    for line in events.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            e["identifier"].as_str().unwrap().ends_with("-20261021"),
            "{line}"
        );
        // noon UTC of the day
        assert_eq!(e["timestamp"], 1_792_584_000, "{line}");
        assert!(e["payload"]["value"].as_i64().unwrap() > 0);
    }
    // cust_0003 cancelled on 2026-10-21: its VMs fall silent as expected
    assert!(
        run.stderr
            .contains("as expected: customer cust_0003 cancelled"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("attention: silent VM"),
        "{}",
        run.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&read(
        &dir.path().join("lake/_runs/20261022T020000Z-nightly.json"),
    ))
    .unwrap();
    assert_eq!(report["job"], "nightly");
    // the first night ingests the whole backlog: every date it touched
    assert_eq!(report["dates_rolled_up"].as_array().unwrap().len(), 30);
    assert_eq!(report["stages"][0]["stage"], "ingest");

    // The next run (no --date: yesterday of the clock) finds nothing new,
    // rolls up only its day and writes the same events.
    let again = meter(dir.path(), "2026-10-22T03:00:00Z", &["nightly"], &[]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    let report: serde_json::Value = serde_json::from_str(&read(
        &dir.path().join("lake/_runs/20261022T030000Z-nightly.json"),
    ))
    .unwrap();
    assert_eq!(report["dates_rolled_up"], serde_json::json!(["2026-10-21"]));
    assert_eq!(read(&file), events);

    // A variable beats the file, and a flag beats the variable.
    let alt = meter(
        dir.path(),
        "2026-10-22T04:00:00Z",
        &["nightly"],
        &[("METER_OUT", "alt")],
    );
    assert_eq!(alt.code, 1, "{}", alt.stderr);
    assert_eq!(
        read(
            &dir.path()
                .join("alt/stripe/daily/2026-10-21/meter_events.jsonl")
        ),
        events
    );
    let flag = meter(
        dir.path(),
        "2026-10-22T05:00:00Z",
        &["nightly", "--out", "flag"],
        &[("METER_OUT", "alt")],
    );
    assert_eq!(flag.code, 1, "{}", flag.stderr);
    assert!(
        dir.path()
            .join("flag/stripe/daily/2026-10-21/meter_events.jsonl")
            .exists()
    );
}

#[test]
fn monthly_then_a_price_fix_rerun_writes_rev_2_with_its_diff_and_corrections() {
    let tmp = tempfile::tempdir().unwrap();
    let pricing = tmp.path().join("pricing.toml");
    std::fs::copy(repo().join("pricing.toml"), &pricing).unwrap();
    let dir = configured(&pricing);
    let d = dir.path();

    // no --month: the month before the clock's
    let monthly = meter(d, "2026-11-01T03:00:00Z", &["monthly"], &[]);
    assert_eq!(monthly.code, 2, "no lake yet: {}", monthly.stderr);
    let first = meter(
        d,
        "2026-11-01T03:00:00Z",
        &["pipeline", "--month", "2026-10"],
        &[],
    );
    assert_eq!(first.code, 1, "{}", first.stderr);
    let monthly = meter(d, "2026-11-01T04:00:00Z", &["monthly"], &[]);
    assert_eq!(monthly.code, 1, "{}", monthly.stderr);
    assert!(
        monthly.stderr.contains("unchanged revision 1"),
        "{}",
        monthly.stderr
    );

    let approve = meter(
        d,
        "2026-11-02T09:00:00Z",
        &["approve", "--month", "2026-10", "--by", "finance"],
        &[],
    );
    assert_eq!(approve.code, 0, "{}", approve.stderr);
    let rev1: Vec<(String, Vec<u8>)> = crate::common::list_files(&d.join("out"))
        .into_iter()
        .filter(|f| f.contains("rev-1"))
        .map(|f| (f.clone(), std::fs::read(d.join("out").join(&f)).unwrap()))
        .collect();

    // gpt-5 input goes from 1.25 to 1.50 per 1M tokens
    let text = read(&pricing);
    let fixed = text.replacen(
        "effective_from = \"2025-08-07\"\ninput = \"1.25\"",
        "effective_from = \"2025-08-07\"\ninput = \"1.5\"",
        1,
    );
    assert_ne!(text, fixed, "the gpt-5 entry moved in pricing.toml");
    std::fs::write(&pricing, fixed).unwrap();
    let rerun = meter(
        d,
        "2026-11-03T09:00:00Z",
        &["rerun", "--month", "2026-10", "--log-format", "json"],
        &[],
    );
    assert_eq!(rerun.code, 1, "{}", rerun.stderr);
    // JSON lines only, the last one with the report and exit code
    let records: Vec<serde_json::Value> = rerun
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(
        records
            .iter()
            .all(|r| r["level"].is_string() && r["message"].is_string())
    );
    assert!(records.iter().any(|r| r["level"] == "warn"));
    let last = records.last().unwrap();
    assert_eq!(last["exit_code"], 1);
    assert!(
        last["report"]
            .as_str()
            .unwrap()
            .ends_with("20261103T090000Z-rerun.json")
    );

    // rev-2 beside rev-1, which is untouched
    for (f, bytes) in &rev1 {
        assert_eq!(&std::fs::read(d.join("out").join(f)).unwrap(), bytes, "{f}");
    }
    let diff = read(&d.join("out/invoices/2026-10/rev-2/diff.csv"));
    let changed: Vec<&str> = diff.lines().filter(|l| l.contains(",changed,")).collect();
    assert_eq!(changed.len(), 6, "{diff}");
    // gpt-5's lines and the totals, and what a contract derives from them
    // (a commitment's true-up, prepaid credit applied).
    assert!(
        changed.iter().all(|l| l.contains("gpt-5")
            || l.contains(",total,")
            || l.contains(",commitment,")
            || l.contains(",credit,")),
        "{diff}"
    );
    assert!(diff.contains("cust_0001,api_usage,openai,gpt-5,changed"));
    assert!(
        read(&d.join("out/invoices/2026-10/rev-2/diff.txt"))
            .contains("621.41 -> 623.18 EUR (+1.77")
    );
    // the month is closed: invoice items in minor units, and the report
    let items: Vec<serde_json::Value> =
        read(&d.join("out/stripe/2026-10/rev-2/invoice_items.jsonl"))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let got: Vec<(&str, i64, &str)> = items
        .iter()
        .map(|i| {
            (
                i["customer_id"].as_str().unwrap(),
                i["amount"].as_i64().unwrap(),
                i["currency"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        // cust_0002's prepaid credit was used up: it pays the rise, but
        // as a contract customer through a note on meter's invoice, once
        // Stripe holds one (none was pushed here); cust_0003 is under its
        // commitment: the true-up absorbs it.
        vec![("cust_0001", 177, "eur")]
    );
    assert!(
        read(&d.join("out/invoices/2026-10/rev-2/corrections.csv"))
            .contains("meter's invoice in Stripe (invoices.jsonl)")
    );
    assert!(read(&d.join("out/invoices/2026-10/rev-2/corrections.csv")).contains(",1.77,debit,"));

    // Only the approved revision leaves: rev-1 has no correction to send.
    let push = meter(
        d,
        "2026-11-03T10:00:00Z",
        &["stripe", "push", "--month", "2026-10", "--dry-run"],
        &[],
    );
    // (Its contract customers' invoices would be made, line by line.)
    assert!(!push.stdout.contains("-adjustment"), "{}", push.stdout);
    assert!(
        push.stdout
            .contains("POST /v1/invoices idempotency_key=INV-202610-cust_0002-R1-create"),
        "{}",
        push.stdout
    );
    let approve = meter(
        d,
        "2026-11-03T11:00:00Z",
        &["approve", "--month", "2026-10", "--by", "finance"],
        &[],
    );
    assert_eq!(approve.code, 0, "{}", approve.stderr);
    let push = meter(
        d,
        "2026-11-03T12:00:00Z",
        &["stripe", "push", "--month", "2026-10", "--dry-run"],
        &[],
    );
    // cust_0001's correction as an item; the contract customers' invoices
    // made from rev-2, the one approved (Stripe has none of them yet).
    assert_eq!(
        push.stdout.matches("-adjustment").count(),
        1,
        "{}\n{}",
        push.stdout,
        push.stderr
    );
    assert!(
        push.stdout
            .contains("idempotency_key=INV-202610-cust_0003-R2-finalize")
    );
}

#[test]
fn a_bad_config_file_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("meter.toml"),
        "lake = \"lake\"\nlakes = \"x\"\n",
    )
    .unwrap();
    let run = meter(dir.path(), "2026-11-01T03:00:00Z", &["monthly"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("meter.toml:2:"), "{}", run.stderr);
    assert!(run.stderr.contains("what to do:"), "{}", run.stderr);

    std::fs::remove_file(dir.path().join("meter.toml")).unwrap();
    let run = meter(dir.path(), "2026-11-01T03:00:00Z", &["monthly"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no lake given: pass --lake, set METER_LAKE"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_late_log_in_an_open_month_becomes_delta_meter_events() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    crate::common::copy_dir(&sample_data(), &input);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("meter.toml"),
        format!(
            "input = {:?}\nlake = \"lake\"\nout = \"out\"\npricing = {:?}\n",
            input.display().to_string(),
            repo().join("pricing.toml").display().to_string()
        ),
    )
    .unwrap();
    let d = dir.path();
    // the last evening of October: the billing period is still open
    let now = "2026-10-31T20:00:00Z";
    let first = meter(d, now, &["pipeline", "--month", "2026-10"], &[]);
    assert_eq!(first.code, 1, "{}", first.stderr);

    // A late line for cust_0001's VM on 2026-10-28: a new request of
    // 1115 + 16603 + 206 + 933 = 18857 tokens.
    let log = input.join("vm-2fbcf0/cliproxy/usage.jsonl");
    let text = read(&log);
    let line = text
        .lines()
        .find(|l| l.contains("\"timestamp\":\"2026-10-28T20:15:36.909685392+01:00\""))
        .expect("the sample line");
    let late = line.replace("20:15:36.909685392", "20:15:37.000000001");
    // (first: the file ends in a torn line, as a live log can)
    std::fs::write(&log, format!("{late}\n{text}")).unwrap();

    let rerun = meter(d, now, &["rerun", "--month", "2026-10"], &[]);
    assert_eq!(rerun.code, 1, "{}", rerun.stderr);
    assert!(
        rerun.stderr.contains("published revision 2"),
        "{}",
        rerun.stderr
    );
    let deltas: Vec<serde_json::Value> =
        read(&d.join("out/stripe/2026-10/rev-2/meter_event_corrections.jsonl"))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let tokens = deltas
        .iter()
        .find(|e| e["identifier"] == "cust_0001-llm_tokens-20261028-r2")
        .unwrap_or_else(|| panic!("{deltas:?}"));
    assert_eq!(tokens["payload"]["value"], 18857);
    assert_eq!(tokens["event_name"], "llm_tokens");
    // only cust_0001's readings of that day changed
    assert!(deltas.iter().all(|e| {
        e["payload"]["stripe_customer_id"] == "cus_luJ0lin0U914x5"
            && e["identifier"].as_str().unwrap().contains("-20261028-r2")
    }));
    // no invoice items while the period is open
    assert!(
        !d.join("out/stripe/2026-10/rev-2/invoice_items.jsonl")
            .exists()
    );
    let corrections = read(&d.join("out/invoices/2026-10/rev-2/corrections.csv"));
    assert!(
        corrections.contains("delta meter events (billing period open)"),
        "{corrections}"
    );
}

#[test]
fn nightly_raises_limit_alerts_once_per_threshold_and_month() {
    // cust_0001's usage charges in October are 122.41 EUR (621.41 billed,
    // 499.00 of it the plan fee): a limit of 120 EUR is crossed.
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    crate::common::copy_dir(&sample_data(), &input);
    let customers = read(&input.join("customers.csv"));
    let lowered = customers.replacen(",600,,Europe/Berlin", ",120,,Europe/Berlin", 1);
    assert_ne!(customers, lowered, "cust_0001's row moved in customers.csv");
    std::fs::write(input.join("customers.csv"), lowered).unwrap();
    let dir = configured_input(&input, &repo().join("pricing.toml"));
    let first = meter(
        dir.path(),
        "2026-10-22T02:00:00Z",
        &["nightly", "--date", "2026-10-21"],
        &[],
    );
    assert_eq!(first.code, 1, "{}", first.stderr);
    let raised = alerts_of(dir.path(), "2026-10-21");
    assert_eq!(
        alert_keys(&raised),
        [
            key("cust_0001", "monthly_limit", 80),
            key("cust_0001", "monthly_limit", 100),
            key("cust_0001", "plan_allowance", 80),
            key("cust_0001", "plan_allowance", 100),
            key("cust_0003", "plan_allowance", 80),
            key("cust_0003", "plan_allowance", 100),
        ]
    );
    // The month so far is what its invoice will say (the monthly run below
    // bills 621.41 = 499.00 fee + 122.41 API usage); the limit is on the
    // usage.
    assert_eq!(raised[1]["used"], "122.41");
    assert_eq!(raised[1]["limit"], "120");
    assert_eq!(raised[1]["unit"], "EUR");
    assert_eq!(raised[1]["used_percent"], "102.0");
    // People read the higher threshold; the file keeps both.
    assert!(
        first.stderr.contains(
            "attention: customer cust_0001 (Acme Analytics GmbH) reached 100% of their monthly limit for 2026-10: \
             122.41 of 120 EUR in usage charges, plan fee not counted (102.0%)"
        ),
        "{}",
        first.stderr
    );
    assert!(
        !first.stderr.contains("reached 80% of their monthly limit"),
        "{}",
        first.stderr
    );

    // The next night raises nothing again; a rerun of the first night
    // writes its file identically.
    let next = meter(
        dir.path(),
        "2026-10-23T02:00:00Z",
        &["nightly", "--date", "2026-10-22"],
        &[],
    );
    assert_eq!(next.code, 1, "{}", next.stderr);
    assert!(alerts_of(dir.path(), "2026-10-22").is_empty());
    assert!(!next.stderr.contains("reached"), "{}", next.stderr);
    let rerun = meter(
        dir.path(),
        "2026-10-23T03:00:00Z",
        &["nightly", "--date", "2026-10-21"],
        &[],
    );
    assert_eq!(rerun.code, 1, "{}", rerun.stderr);
    assert_eq!(alerts_of(dir.path(), "2026-10-21"), raised);

    let monthly = meter(
        dir.path(),
        "2026-11-01T04:00:00Z",
        &["monthly", "--month", "2026-10"],
        &[],
    );
    assert_eq!(monthly.code, 1, "{}", monthly.stderr);
    let summary = read(&dir.path().join("out/invoices/2026-10/rev-1/summary.csv"));
    assert!(
        summary.lines().any(|l| l.contains(",cust_0001,")
            && l.contains(",499.00,122.41,0.00,0.00,0.00,0.00,621.41,")),
        "{summary}"
    );
}

/// Issue 14: `meter nightly --date 2026-10-31` on sample-data said cust_0002
/// (markup 1.3, a reseller: no allowance) "reached 100% of their plan
/// allowance (4597.7%)".
#[test]
fn resellers_get_no_allowance_alert() {
    let dir = configured(&repo().join("pricing.toml"));
    let run = meter(
        dir.path(),
        "2026-11-01T02:00:00Z",
        &["nightly", "--date", "2026-10-31"],
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    // cust_0001 (pro) and cust_0003 (enterprise) are over their 1,000,000
    // tokens; cust_0002 has no allowance; no limit is reached (cust_0001:
    // 122.41 of 600 EUR of usage, cust_0003: 71.26 of 5000).
    assert_eq!(
        alert_keys(&alerts_of(dir.path(), "2026-10-31")),
        [
            key("cust_0001", "plan_allowance", 80),
            key("cust_0001", "plan_allowance", 100),
            key("cust_0003", "plan_allowance", 80),
            key("cust_0003", "plan_allowance", 100),
        ]
    );
    assert!(!run.stderr.contains("cust_0002 (Globex"), "{}", run.stderr);
}

/// Issue 14: on the 1st of every month the plan fee alone (499 of cust_0001's
/// 600 EUR, no usage yet) raised the 80% limit alert.
#[test]
fn the_plan_fee_alone_raises_no_limit_alert_on_day_1() {
    let dir = configured(&repo().join("pricing.toml"));
    let run = meter(
        dir.path(),
        "2026-11-02T02:00:00Z",
        &["nightly", "--date", "2026-11-01"],
        &[],
    );
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    assert!(alerts_of(dir.path(), "2026-11-01").is_empty());
    assert!(!run.stderr.contains("monthly limit"), "{}", run.stderr);
    assert!(!dir.path().join("lake/_alerts/2026-11.jsonl").exists());
}

/// Issue 14: `meter nightly` on a lake that never billed anything said "late
/// events arrived for 2026-10: its invoices may be out of date; meter
/// rerun". Only a month with a published revision has invoices to correct.
#[test]
fn late_events_advise_a_rerun_only_where_a_revision_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    crate::common::copy_dir(&sample_data(), &input);
    let dir = configured_input(&input, &repo().join("pricing.toml"));
    let d = dir.path();

    // The first night of November ingests October's backlog: late days of a
    // month never billed, nothing to rerun.
    let unbilled = meter(
        d,
        "2026-11-02T02:00:00Z",
        &["nightly", "--date", "2026-11-01"],
        &[],
    );
    assert!(
        unbilled.code == 0 || unbilled.code == 1,
        "{}",
        unbilled.stderr
    );
    let report: serde_json::Value =
        serde_json::from_str(&read(&d.join("lake/_runs/20261102T020000Z-nightly.json"))).unwrap();
    assert!(
        report["dates_rolled_up"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("2026-10-28")),
        "{report}"
    );
    assert!(
        !unbilled.stderr.contains("late events"),
        "{}",
        unbilled.stderr
    );
    assert!(
        !unbilled.stderr.contains("meter rerun"),
        "{}",
        unbilled.stderr
    );

    // October billed (rev-1), then a late line for 2026-10-28 (a new
    // request of cust_0001): now its invoices are out of date.
    let monthly = meter(d, "2026-11-02T03:00:00Z", &["monthly"], &[]);
    assert_eq!(monthly.code, 1, "{}", monthly.stderr);
    let log = input.join("vm-2fbcf0/cliproxy/usage.jsonl");
    let text = read(&log);
    let line = text
        .lines()
        .find(|l| l.contains("\"timestamp\":\"2026-10-28T20:15:36.909685392+01:00\""))
        .expect("the sample line");
    let late = line.replace("20:15:36.909685392", "20:15:37.000000001");
    std::fs::write(&log, format!("{late}\n{text}")).unwrap();
    let billed = meter(
        d,
        "2026-11-03T02:00:00Z",
        &["nightly", "--date", "2026-11-02"],
        &[],
    );
    assert!(billed.code == 0 || billed.code == 1, "{}", billed.stderr);
    assert!(
        billed.stderr.contains(
            "notice: late events arrived for 2026-10: its invoices (rev-1) may be out of date; \
             `meter rerun --month 2026-10` writes a corrected revision"
        ),
        "{}",
        billed.stderr
    );
}
