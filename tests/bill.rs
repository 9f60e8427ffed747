//! The billing job on the sample data: golden invoices, revisions, refusals,
//! and outputs on a real S3-protocol server.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use meter::bill::{self, BillOptions, BillReport};
use meter::rollup::{self, Period, RollupOptions};

use crate::common::{copy_dir, ctx, list_files, repo, rolled_up_sample_lake, sample_data};

fn month() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()
}

struct Env {
    _dir: tempfile::TempDir,
    lake: PathBuf,
    out: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    copy_dir(rolled_up_sample_lake(), &lake);
    let out = dir.path().join("out");
    Env {
        _dir: dir,
        lake,
        out,
    }
}

fn options(env: &Env, customers: Option<PathBuf>) -> BillOptions {
    BillOptions {
        lake: env.lake.clone(),
        month: month(),
        customers,
        contracts: None,
        pricing: repo().join("pricing.toml"),
        out: env.out.display().to_string(),
        store_options: Vec::new(),
    }
}

fn bill(opts: &BillOptions, run: &str) -> BillReport {
    bill::run(&ctx(run), opts).expect("bill runs")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn snapshot_of_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    list_files(dir)
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(dir.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

/// A decimal amount string as minor units.
fn cents(s: &str) -> i64 {
    let (int, frac) = s.split_once('.').unwrap();
    let sign = if int.starts_with('-') { -1 } else { 1 };
    int.parse::<i64>().unwrap() * 100 + sign * frac.parse::<i64>().unwrap()
}

#[test]
fn sample_month_bills_to_golden_invoices() {
    let env = env();
    let report = bill(&options(&env, None), "bill-1");
    assert_eq!(report.status, "published");
    assert_eq!(report.revision, 1);
    assert_eq!(report.customers_invoiced, 4);
    let rev = env.out.join("invoices/2026-10/rev-1");
    let mut names = list_files(&env.out);
    names.retain(|n| !n.contains("meter_event_stream/"));
    insta::assert_debug_snapshot!("bill_sample_files", names);
    for customer in ["cust_0001", "cust_0002", "cust_0003", "cust_0004"] {
        let csv = read(&rev.join(format!("{customer}.csv")));
        // The total row is exactly the sum of the rounded lines.
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        let (total, lines) = rows.split_last().unwrap();
        assert_eq!(&total[6], "total");
        let sum: i64 = lines.iter().map(|r| cents(&r[23])).sum();
        assert_eq!(cents(&total[23]), sum, "{customer}");
        insta::assert_snapshot!(format!("bill_sample_{customer}"), csv);
    }
    insta::assert_snapshot!("bill_sample_summary", read(&rev.join("summary.csv")));
    let jsonl = read(&env.out.join("stripe/2026-10/rev-1/meter_events.jsonl"));
    assert_eq!(jsonl.lines().count(), report.meter_events);
    let head: Vec<&str> = jsonl.lines().take(6).collect();
    insta::assert_snapshot!("bill_sample_meter_events_head", head.join("\n"));
    // Stream bodies: at most 100 events each, together every event.
    let mut streamed = 0;
    for f in list_files(&env.out.join("stripe/2026-10/rev-1/meter_event_stream")) {
        let body: serde_json::Value = serde_json::from_str(&read(
            &env.out
                .join("stripe/2026-10/rev-1/meter_event_stream")
                .join(f),
        ))
        .unwrap();
        let n = body["events"].as_array().unwrap().len();
        assert!(n <= 100);
        streamed += n;
    }
    assert_eq!(streamed, report.meter_events);
    // The manifest lists every other object of the revision with its digest.
    let manifest: serde_json::Value =
        serde_json::from_str(&read(&rev.join("_manifest.json"))).unwrap();
    let listed = manifest["objects"].as_array().unwrap();
    let on_disk: Vec<String> = list_files(&env.out)
        .into_iter()
        .filter(|f| f.contains("rev-1") && !f.ends_with("_manifest.json"))
        .collect();
    assert_eq!(listed.len(), on_disk.len());
    for o in listed {
        let bytes = std::fs::read(env.out.join(o["key"].as_str().unwrap())).unwrap();
        assert_eq!(o["sha256"], meter::model::ids::sha256_hex(&bytes));
        assert_eq!(o["bytes"], bytes.len());
    }
    assert!(manifest["inputs"]["lake_files"].as_array().unwrap().len() > 30);
    let latest: serde_json::Value =
        serde_json::from_str(&read(&env.out.join("invoices/2026-10/latest.json"))).unwrap();
    assert_eq!(latest["revision"], 1);
    // Needs attention: unpriced usage and the VM nobody lists.
    assert!(report.needs_attention());
    assert!(report.attention.iter().any(|a| a.contains("have no price")));
    assert!(report.attention.iter().any(|a| a.contains("VM vm-fc0059")));
    // cust_0001's limit (600 EUR) is on usage charges: 122.41 EUR of them
    // (621.41 billed less the 499.00 fee) is not over it.
    assert!(
        !report
            .notices
            .iter()
            .any(|n| n.contains("over its monthly limit")),
        "{:?}",
        report.notices
    );
}

#[test]
fn rebilling_writes_nothing_new_and_changes_make_the_next_revision() {
    let env = env();
    bill(&options(&env, None), "bill-1");
    let first = snapshot_of_tree(&env.out);

    let again = bill(&options(&env, None), "bill-2");
    assert_eq!(again.status, "unchanged");
    assert_eq!(again.revision, 1);
    assert_eq!(snapshot_of_tree(&env.out), first, "nothing is rewritten");

    // A changed registry (a new limit) is a new revision beside the old one.
    let customers = env.lake.join("changed.csv");
    let text = read(&env.lake.join("_registry/customers.csv")).replace(",600,,", ",700,,");
    std::fs::write(&customers, text).unwrap();
    let second = bill(&options(&env, Some(customers.clone())), "bill-3");
    assert_eq!((second.status.as_str(), second.revision), ("published", 2));
    assert_eq!(second.previous_revision, Some(1));
    let after = snapshot_of_tree(&env.out);
    for (name, bytes) in &first {
        if name.ends_with("latest.json") {
            continue;
        }
        let now = after.iter().find(|(n, _)| n == name).expect("kept");
        assert_eq!(&now.1, bytes, "{name} was rewritten");
    }
    let summary = read(&env.out.join("invoices/2026-10/rev-2/summary.csv"));
    assert!(summary.contains("INV-202610-cust_0001-R2"));
    // Meter readings keep their identifiers across revisions: one reading,
    // one identifier, sent once.
    assert_eq!(
        read(&env.out.join("stripe/2026-10/rev-2/meter_events.jsonl")),
        read(&env.out.join("stripe/2026-10/rev-1/meter_events.jsonl"))
    );
    // The diff against rev-1: a new limit changes no total, so the period
    // being closed (the clock says 2026-11-02), no invoice item either.
    let diff = second.changes.as_ref().expect("a diff against rev-1");
    assert_eq!(diff.previous_revision, 1);
    assert!(diff.customers.iter().all(|c| c.kind == "none"));
    assert!(!diff.period_open);
    assert!(
        read(&env.out.join("invoices/2026-10/rev-2/diff.txt")).contains("No invoice total changed")
    );
    assert_eq!(
        read(&env.out.join("stripe/2026-10/rev-2/invoice_items.jsonl")),
        ""
    );

    // Within a revision, files are byte-identical across reruns: a lost
    // latest.json (a run killed before its last write) is restored, and a
    // half-written next revision is never taken for a published one.
    std::fs::remove_file(env.out.join("invoices/2026-10/latest.json")).unwrap();
    std::fs::create_dir_all(env.out.join("invoices/2026-10/rev-3")).unwrap();
    std::fs::write(
        env.out.join("invoices/2026-10/rev-3/cust_0001.csv"),
        "partial",
    )
    .unwrap();
    let resumed = bill(&options(&env, Some(customers)), "bill-4");
    assert_eq!(
        (resumed.status.as_str(), resumed.revision),
        ("unchanged", 2)
    );
    let latest: serde_json::Value =
        serde_json::from_str(&read(&env.out.join("invoices/2026-10/latest.json"))).unwrap();
    assert_eq!(latest["revision"], 2);
}

#[test]
fn a_malformed_customer_row_is_named_and_the_others_are_billed() {
    let env = env();
    let customers = env.lake.join("customers.csv");
    let mut text = read(&env.lake.join("_registry/customers.csv"));
    text = text.replace(
        ",starter,vm-37b13a;vm-d408d7,USD,",
        ",starter,vm-37b13a;vm-d408d7,DOLLARS,",
    );
    text = text.replace("Acme Analytics GmbH", "\"=HYPERLINK(\"\"http://evil\"\")\"");
    text = text.replace("cus_luJ0lin0U914x5", "");
    std::fs::write(&customers, text).unwrap();
    let report = bill::run(&ctx("bill-1"), &options(&env, Some(customers)));
    let report = report.expect("bill runs");
    let attention = report.attention.join("\n");
    assert!(
        attention.contains("customers.csv:3: field `currency`"),
        "{attention}"
    );
    assert!(attention.contains("VM vm-37b13a"), "{attention}");
    assert!(
        attention.contains("cust_0001 has no stripe_customer_id"),
        "{attention}"
    );
    let billed: Vec<&str> = report
        .invoices
        .iter()
        .map(|i| i.customer_id.as_str())
        .collect();
    assert_eq!(billed, ["cust_0001", "cust_0003", "cust_0004"]);
    assert!(report.meter_events_withheld > 0);
    let jsonl = read(&env.out.join("stripe/2026-10/rev-1/meter_events.jsonl"));
    assert!(!jsonl.contains("cust_0001"));
    // A formula in a name is neutralized in the CSV.
    let csv = read(&env.out.join("invoices/2026-10/rev-1/cust_0001.csv"));
    assert!(
        csv.contains(",\"'=HYPERLINK(\"\"http://evil\"\")\","),
        "{csv}"
    );
}

#[test]
fn a_table_without_events_in_the_month_bills_as_empty() {
    let empty = env();
    // A fleet that writes no command logs: no activity at any stage.
    for dir in ["activity", "daily/activity", "monthly/activity"] {
        std::fs::remove_dir_all(empty.lake.join(dir)).unwrap();
    }
    let report = bill(&options(&empty, None), "bill-1");
    assert_eq!(report.invoices.len(), 4);

    // Activity events that were never rolled up are still refused.
    let stale = env();
    std::fs::remove_dir_all(stale.lake.join("monthly/activity")).unwrap();
    let err = bill::run(&ctx("bill-2"), &options(&stale, None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no monthly rollup of activity for 2026-10"),
        "{err}"
    );
}

#[test]
fn a_month_without_a_current_rollup_is_refused_with_the_command_to_run() {
    let env = env();
    let mut opts = options(&env, None);
    opts.month = NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
    let err = bill::run(&ctx("bill-1"), &opts).unwrap_err().to_string();
    assert!(
        err.contains("there is no monthly rollup for 2026-09"),
        "{err}"
    );
    assert!(err.contains("meter rollup --lake"), "{err}");
    assert!(err.contains("--month 2026-09"), "{err}");

    // A daily table rewritten after the monthly rollup: stale.
    let daily = env.lake.join("daily/api_usage/date=2026-10-05");
    let file = daily.join(&list_files(&daily)[0]);
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let err = bill::run(&ctx("bill-2"), &options(&env, None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("older than the daily api_usage of 2026-10-05"),
        "{err}"
    );
    assert!(!env.out.exists(), "nothing is written");
}

#[test]
fn invoices_go_to_an_s3_store() {
    let env = env();
    let root = env.lake.parent().unwrap().join("s3");
    let server = crate::s3_server::start_s3_server(&root);
    let mut opts = options(&env, None);
    opts.out = server.url("billing/prod");
    opts.store_options = server.options();
    let report = bill(&opts, "bill-1");
    assert_eq!(report.revision, 1);
    let local = env.lake.parent().unwrap().join("local");
    let mut local_opts = options(&env, None);
    local_opts.out = local.display().to_string();
    bill(&local_opts, "bill-1");
    // Byte for byte what the folder store holds, on the server's disk.
    let remote = server.bucket_dir().join("billing/prod");
    assert_eq!(snapshot_of_tree(&remote), snapshot_of_tree(&local));
    let again = bill(&opts, "bill-2");
    assert_eq!(again.status, "unchanged");
}

#[test]
fn reconcile_agrees_on_the_sample_month_and_finds_tampering() {
    use meter::read::reconcile::{self, ReconcileOptions};
    let env = env();
    bill(&options(&env, None), "bill-1");
    let opts = ReconcileOptions {
        lake: env.lake.clone(),
        month: month(),
        out: env.out.display().to_string(),
        store_options: Vec::new(),
    };
    let report = reconcile::run(&ctx("reconcile-1"), &opts).unwrap();
    assert_eq!(report.revision, Some(1));
    assert_eq!(report.mismatches().count(), 0, "{}", report.table());
    assert!(!report.needs_attention(), "{:?}", report.attention);
    let measures: std::collections::BTreeSet<(&str, &str, &str)> = report
        .comparisons
        .iter()
        .map(|c| (c.measure.as_str(), c.source.as_str(), c.stage.as_str()))
        .collect();
    for expected in [
        ("requests", "raw", "priced"),
        ("cost", "priced", "daily"),
        ("cost", "daily", "monthly"),
        ("cost", "monthly", "invoice"),
        ("activity", "raw", "daily"),
        ("compute_seconds", "daily", "monthly"),
    ] {
        assert!(measures.contains(&expected), "{expected:?} not compared");
    }

    // An edited invoice and a lost daily file are both found.
    let rev = env.out.join("invoices/2026-10/rev-1");
    let csv = read(&rev.join("cust_0004.csv"))
        .replace("sum of rounded lines,169.76", "sum of rounded lines,169.77");
    std::fs::write(rev.join("cust_0004.csv"), csv).unwrap();
    let day = env.lake.join("daily/api_usage/date=2026-10-07");
    for f in list_files(&day) {
        std::fs::remove_file(day.join(f)).unwrap();
    }
    let report = reconcile::run(&ctx("reconcile-2"), &opts).unwrap();
    assert!(report.needs_attention());
    assert!(
        report
            .revision_checks
            .iter()
            .any(|p| p.file.ends_with("cust_0004.csv") && p.customer_id == "cust_0004"),
        "{:?}",
        report.revision_checks
    );
    let broken: std::collections::BTreeSet<(&str, &str)> = report
        .mismatches()
        .map(|c| (c.source.as_str(), c.stage.as_str()))
        .collect();
    assert!(broken.contains(&("priced", "daily")), "{}", report.table());
    assert!(broken.contains(&("daily", "monthly")), "{}", report.table());
    assert!(report.table().contains("MISMATCH"));
}

/// Each invoice of `month` under `out` is exactly the plan fee of its
/// customer, computed here from pricing.toml and customers.csv: the full
/// month's fee in the plan's currency, converted at the listed rate and
/// rounded once to cents, half away from zero.
fn assert_plan_fees_only(out: &Path, month: &str, expected: &[&str]) {
    use rust_decimal::{Decimal, RoundingStrategy};
    let pricing = meter::load::pricing(&repo().join("pricing.toml")).unwrap();
    let (registry, _) = meter::load::customers(&sample_data().join("customers.csv")).unwrap();
    let rev = out.join(format!("invoices/{month}/rev-1"));
    let mut invoiced: Vec<String> = list_files(&rev)
        .into_iter()
        .filter(|f| f.starts_with("cust_"))
        .map(|f| f.trim_end_matches(".csv").to_string())
        .collect();
    invoiced.sort();
    assert_eq!(invoiced, expected);
    let last_day = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .unwrap()
        .checked_add_months(chrono::Months::new(1))
        .unwrap()
        .pred_opt()
        .unwrap();
    for id in expected {
        let c = registry
            .customers
            .iter()
            .find(|c| &*c.customer_id == *id)
            .unwrap();
        let plan = &pricing.plans[&c.tier];
        let rate = match plan.currency == c.currency {
            true => Decimal::ONE,
            false => pricing
                .fx_in_force(&plan.currency, &c.currency, last_day)
                .unwrap(),
        };
        let fee = (plan.monthly_fee * rate)
            .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
        let csv = read(&rev.join(format!("{id}.csv")));
        let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(csv.as_bytes())
            .records()
            .map(|r| r.unwrap())
            .collect();
        // cust_0004's contract (sample-data/contracts.toml) has 20% off the
        // fee from 2026-10-15 on, with no end: a discount line too.
        let discount = if *id == "cust_0004" {
            (fee * Decimal::new(20, 2))
                .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
        } else {
            Decimal::ZERO
        };
        let lines = if discount.is_zero() { 1 } else { 2 };
        assert_eq!(
            rows.len(),
            lines + 1,
            "the fee (and discount) and the total: {csv}"
        );
        assert_eq!(&rows[0][6], "subscription", "{csv}");
        assert_eq!(&rows[0][10], "1", "a whole month: {csv}");
        assert_eq!(rows[0][23].parse::<Decimal>().unwrap(), fee, "{id}: {csv}");
        assert_eq!(&rows[0][24], c.currency.as_str());
        if lines == 2 {
            assert_eq!(&rows[1][6], "discount", "{csv}");
            assert_eq!(rows[1][23].parse::<Decimal>().unwrap(), -discount, "{csv}");
        }
        assert_eq!(
            rows[lines][23].parse::<Decimal>().unwrap(),
            fee - discount,
            "{id}: total"
        );
    }
}

/// A month with no usage can never be billed: its rollup succeeded with 0
/// rows but wrote no monthly partition, so billing kept asking for that
/// rollup and the month's plan fees were never invoiced.
#[test]
fn a_month_with_no_usage_can_never_be_billed() {
    let env = env();
    let november = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let mut opts = options(&env, None);
    opts.month = november;
    // Not rolled up: refused with the command to run, as before.
    let err = bill::run(&ctx("bill-1"), &opts).unwrap_err().to_string();
    assert!(err.contains("no monthly rollup for 2026-11"), "{err}");
    let rolled = rollup::run(
        &ctx("rollup-2"),
        &RollupOptions {
            lake: env.lake.clone(),
            pricing: repo().join("pricing.toml"),
            period: Period::Month(november),
        },
    )
    .expect("rollup runs");
    assert_eq!((rolled.events_priced, rolled.events_unpriced), (0, 0));
    assert!(!rolled.needs_attention(), "{:?}", rolled.attention);
    // Rolled up and current: billed, nothing to look at (exit 0).
    let report = bill(&opts, "bill-2");
    assert_eq!((report.status.as_str(), report.revision), ("published", 1));
    assert!(!report.needs_attention(), "{:?}", report.attention);
    // cust_0003 was cancelled on 2026-10-21: no November invoice.
    assert_plan_fees_only(
        &env.out,
        "2026-11",
        &["cust_0001", "cust_0002", "cust_0004"],
    );
    // And billed again, it stands.
    assert_eq!(bill(&opts, "bill-3").status, "unchanged");
}

/// The same through the binary, as cron runs it: `meter pipeline` for the
/// sample month (exit 1 on purpose: unpriced usage), then `meter monthly`
/// for the month after, which has no usage (exit 0).
#[test]
fn monthly_bills_the_plan_fees_of_a_month_without_usage() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    copy_dir(&sample_data(), &input);
    let pricing = repo().join("pricing.toml");
    let common = [
        "--input",
        "input",
        "--lake",
        "lake",
        "--out",
        "out",
        "--pricing",
        pricing.to_str().unwrap(),
    ];
    let run = |now: &str, job: &[&str]| {
        let args: Vec<&str> = job.iter().chain(&common).copied().collect();
        crate::common::meter(dir.path(), now, &args, &[])
    };
    let first = run("2026-11-02T03:00:00Z", &["pipeline", "--month", "2026-10"]);
    assert_eq!(first.code, 1, "{}", first.stderr);
    // Finance approves October: November's prepaid credit opens from it.
    let approve = crate::common::meter(
        dir.path(),
        "2026-11-05T09:00:00Z",
        &[
            "approve", "--month", "2026-10", "--by", "finance", "--lake", "lake", "--out", "out",
        ],
        &[],
    );
    assert_eq!(approve.code, 0, "{}", approve.stderr);
    let monthly = run("2026-12-02T03:00:00Z", &["monthly", "--month", "2026-11"]);
    assert_eq!(monthly.code, 0, "{}", monthly.stderr);
    assert_plan_fees_only(
        &dir.path().join("out"),
        "2026-11",
        &["cust_0001", "cust_0002", "cust_0004"],
    );
    // The report of that month reads the empty rollup as a month without
    // usage (it used to say no day of it was rolled up, exit 2).
    let report = crate::common::meter(
        dir.path(),
        "2026-12-02T04:00:00Z",
        &[
            "report",
            "--month",
            "2026-11",
            "--lake",
            "lake",
            "--out",
            "out",
            "--pricing",
            pricing.to_str().unwrap(),
        ],
        &[],
    );
    assert_ne!(report.code, 2, "{}", report.stderr);
    let page: serde_json::Value =
        serde_json::from_str(&read(&dir.path().join("out/reports/2026-11/report.json"))).unwrap();
    assert_eq!(page["month"], "2026-11", "{page}");
}

/// `pricing.toml` with `[plans.<from>]` renamed `[plans.<to>]`.
fn renamed_plan(dir: &Path, from: &str, to: &str) -> PathBuf {
    let text = read(&repo().join("pricing.toml"));
    let header = format!("[plans.{from}]");
    assert!(text.contains(&header));
    let path = dir.join(format!("pricing-{to}.toml"));
    std::fs::write(&path, text.replace(&header, &format!("[plans.{to}]"))).unwrap();
    path
}

/// A renamed plan dropped its customers from the revision, which was
/// published anyway (exit 1, as every night). A customer billed for the
/// month whose plan does not exist now stops the revision (exit 2),
/// naming the customer, the plan and where it is listed.
#[test]
fn a_renamed_plan_drops_a_customer_from_the_invoices() {
    let env = env();
    let mut opts = options(&env, Some(sample_data().join("customers.csv")));
    opts.pricing = renamed_plan(env.lake.parent().unwrap(), "pro", "professional");
    let err = bill::run(&ctx("bill-1"), &opts).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, meter::Error::Billing { .. }), "{err:?}");
    assert!(
        text.contains("customers.csv:2: field `tier`: customer cust_0001: plan \"pro\" is not in pricing.toml [plans]"),
        "{text}"
    );
    assert!(text.contains("nothing was published"), "{text}");
    assert!(err.hint().unwrap().contains("pricing check --customers"));
    assert!(!env.out.exists(), "nothing is written");

    // A plan only a customer no longer billed had (cust_0003, cancelled
    // on 2026-10-21) stops October, not November: there it is reported.
    opts.pricing = renamed_plan(env.lake.parent().unwrap(), "enterprise", "corporate");
    let err = bill::run(&ctx("bill-2"), &opts).unwrap_err().to_string();
    assert!(
        err.contains("customer cust_0003: plan \"enterprise\""),
        "{err}"
    );
    let november = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    rollup::run(
        &ctx("rollup-2"),
        &RollupOptions {
            lake: env.lake.clone(),
            pricing: repo().join("pricing.toml"),
            period: Period::Month(november),
        },
    )
    .unwrap();
    opts.month = november;
    let report = bill(&opts, "bill-3");
    assert_eq!(report.customers_invoiced, 3);
    assert!(
        report
            .attention
            .iter()
            .any(|a| a.contains("customer cust_0003 not billed: plan \"enterprise\"")),
        "{:?}",
        report.attention
    );
}

/// The binary: `meter bill` exits 2 with what to do, and `meter pricing
/// check --customers` catches the renamed plan before any bill (exit 2 for
/// a customer in service, 1 for one whose service ended).
#[test]
fn a_renamed_plan_is_caught_by_pricing_check_and_stops_bill() {
    let env = env();
    let dir = env.lake.parent().unwrap();
    let customers = sample_data().join("customers.csv");
    let customers = customers.to_str().unwrap();
    let renamed = renamed_plan(dir, "pro", "professional");
    let now = "2026-11-02T03:00:00Z";
    let meter = |args: &[&str]| crate::common::meter(dir, now, args, &[]);

    let check = meter(&[
        "pricing",
        "check",
        "--pricing",
        renamed.to_str().unwrap(),
        "--customers",
        customers,
    ]);
    assert_eq!(check.code, 2, "{}", check.stderr);
    assert!(
        check
            .stderr
            .contains("customers.csv:2: field `tier`: customer cust_0001: plan \"pro\""),
        "{}",
        check.stderr
    );
    assert!(check.stderr.contains("what to do:"), "{}", check.stderr);

    let bill = meter(&[
        "bill",
        "--lake",
        "lake",
        "--month",
        "2026-10",
        "--out",
        "out",
        "--customers",
        customers,
        "--pricing",
        renamed.to_str().unwrap(),
    ]);
    assert_eq!(bill.code, 2, "{}", bill.stderr);
    assert!(
        bill.stderr.contains("cust_0001") && bill.stderr.contains("\"pro\""),
        "{}",
        bill.stderr
    );
    assert!(bill.stderr.contains("what to do:"), "{}", bill.stderr);
    assert!(!dir.join("out").exists());

    // Only cust_0003 (service ended 2026-10-21) has the missing plan.
    let ended = renamed_plan(dir, "enterprise", "corporate");
    let check = meter(&[
        "pricing",
        "check",
        "--pricing",
        ended.to_str().unwrap(),
        "--customers",
        customers,
    ]);
    assert_eq!(check.code, 1, "{}", check.stderr);
    assert!(
        check.stderr.contains("attention: ") && check.stderr.contains("cust_0003"),
        "{}",
        check.stderr
    );
    // The shipped files agree.
    let shipped = repo().join("pricing.toml");
    let check = meter(&[
        "pricing",
        "check",
        "--pricing",
        shipped.to_str().unwrap(),
        "--customers",
        customers,
    ]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(check.stdout.contains("4 customers"), "{}", check.stdout);
}

/// A monthly api_usage rollup written before the unpriced token split
/// (an older meter) would bill every token on the API lines: refused as
/// not current, with the rollup to run.
#[test]
fn a_monthly_rollup_without_the_unpriced_split_is_refused() {
    let env = env();
    let dir = env.lake.join("monthly/api_usage/month=2026-10");
    let file = dir.join(&list_files(&dir)[0]);
    let old = dir.join("old.parquet.tmp");
    let db = duckdb::Connection::open_in_memory().unwrap();
    db.execute_batch(&format!(
        "COPY (SELECT * EXCLUDE (unpriced_input_tokens, unpriced_cache_read_tokens, \
         unpriced_cache_write_tokens, unpriced_output_tokens, unpriced_reasoning_tokens) \
         FROM read_parquet('{}')) TO '{}' (FORMAT parquet)",
        file.display(),
        old.display()
    ))
    .unwrap();
    std::fs::rename(&old, &file).unwrap();
    let err = bill::run(&ctx("bill-1"), &options(&env, None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("was written by an older meter") && err.contains("unpriced_input_tokens"),
        "{err}"
    );
    assert!(err.contains("meter rollup --lake"), "{err}");
    assert!(!env.out.exists(), "nothing is written");
}

/// DuckDB fed the lake's record batches through Arrow (the route for a
/// lake in object storage, forced on a local one by `METER_DUCKDB_ARROW=1`,
/// lake/duck.rs) bills the sample month byte for byte as `read_parquet`
/// does: invoices, summary, Stripe files and manifest.
#[test]
fn the_arrow_route_bills_byte_identical_invoices() {
    let pricing = repo().join("pricing.toml");
    let outs: Vec<Vec<(String, Vec<u8>)>> = ["0", "1"]
        .into_iter()
        .map(|arrow| {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(rolled_up_sample_lake(), &dir.path().join("lake"));
            let args = [
                "bill",
                "--month",
                "2026-10",
                "--lake",
                "lake",
                "--out",
                "out",
                "--pricing",
                pricing.to_str().unwrap(),
            ];
            let run = crate::common::meter(
                dir.path(),
                "2026-11-02T03:00:00Z",
                &args,
                &[("METER_DUCKDB_ARROW", arrow)],
            );
            assert_eq!(run.code, 1, "needs attention, as always: {}", run.stderr);
            snapshot_of_tree(&dir.path().join("out"))
        })
        .collect();
    let (parquet, arrow) = (&outs[0], &outs[1]);
    assert!(
        parquet
            .iter()
            .any(|(f, _)| f.ends_with("rev-1/cust_0001.csv")),
        "{:?}",
        parquet.iter().map(|(f, _)| f).collect::<Vec<_>>()
    );
    assert_eq!(
        parquet.iter().map(|(f, _)| f).collect::<Vec<_>>(),
        arrow.iter().map(|(f, _)| f).collect::<Vec<_>>()
    );
    for ((file, a), (_, b)) in parquet.iter().zip(arrow) {
        assert!(a == b, "{file} differs between the two routes");
    }
}
