//! The billing job on the sample data: golden invoices, revisions, refusals,
//! and outputs on a real S3-protocol server.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::NaiveDate;
use meter::bill::{self, BillOptions, BillReport};
use meter::rollup::{self, Period, RollupOptions};

use crate::common::{copy_dir, ctx, ingest, list_files, repo, sample_data};

fn month() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()
}

/// The sample data ingested and rolled up once; each test bills a copy.
fn rolled_up_lake() -> &'static Path {
    static LAKE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &LAKE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let lake = dir.path().join("lake");
            ingest(&sample_data(), &lake, "ingest-1");
            rollup::run(
                &ctx("rollup-1"),
                &RollupOptions {
                    lake: lake.clone(),
                    pricing: repo().join("pricing.toml"),
                    period: Period::Month(month()),
                },
            )
            .expect("rollup runs");
            (dir, lake)
        })
        .1
}

struct Env {
    _dir: tempfile::TempDir,
    lake: PathBuf,
    out: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    copy_dir(rolled_up_lake(), &lake);
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
        assert_eq!(o["sha256"], meter::ids::sha256_hex(&bytes));
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
    assert!(
        report
            .notices
            .iter()
            .any(|n| n.contains("cust_0001 is over its monthly limit"))
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
    text = text.replace(
        "cust_0003,Initech Cloud SE,billing@initech.example,enterprise",
        "cust_0003,Initech Cloud SE,billing@initech.example,platinum",
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
    assert!(
        attention.contains("customer cust_0003 not billed: plan \"platinum\""),
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
    assert_eq!(billed, ["cust_0001", "cust_0004"]);
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
    let server = crate::s3::start_s3_server(&root);
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
    use meter::reconcile::{self, ReconcileOptions};
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
        .replace("sum of rounded lines,202.55", "sum of rounded lines,202.56");
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
