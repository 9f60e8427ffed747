//! Contracts on the sample month: `sample-data/contracts.toml` billed end to
//! end, refused contracts, and prepaid credit carried between months.

use std::path::PathBuf;

use chrono::NaiveDate;
use meter::bill::{self, BillOptions, BillReport};

use crate::common::{copy_dir, ctx, repo, rolled_up_sample_lake};

fn month() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()
}

struct Env {
    dir: tempfile::TempDir,
    lake: PathBuf,
    out: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    copy_dir(rolled_up_sample_lake(), &lake);
    let out = dir.path().join("out");
    Env { dir, lake, out }
}

fn bill(env: &Env, contracts: Option<PathBuf>, run: &str) -> BillReport {
    bill::run(
        &ctx(run),
        &BillOptions {
            lake: env.lake.clone(),
            month: month(),
            customers: None,
            contracts,
            pricing: repo().join("pricing.toml"),
            out: env.out.display().to_string(),
            store_options: Vec::new(),
        },
    )
    .expect("bill runs")
}

/// (line_type, description, amount, rule) of an invoice's lines.
fn lines(env: &Env, revision: u32, customer: &str) -> Vec<(String, String, String, String)> {
    let path = env
        .out
        .join(format!("invoices/2026-10/rev-{revision}/{customer}.csv"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[6].to_string(),
                r[9].to_string(),
                r[23].to_string(),
                r[22].to_string(),
            )
        })
        .collect()
}

fn cents(s: &str) -> i64 {
    let (int, frac) = s.split_once('.').unwrap();
    let sign = if int.starts_with('-') { -1 } else { 1 };
    int.parse::<i64>().unwrap() * 100 + sign * frac.parse::<i64>().unwrap()
}

/// `meter query` and `meter explain` over the env's lake and invoices.
fn query_options(env: &Env) -> meter::read::query::QueryOptions {
    meter::read::query::QueryOptions {
        lake: env.lake.clone(),
        out: env.out.display().to_string(),
        store_options: Vec::new(),
    }
}

/// `meter explain` of line `k` of the customer's October invoice: its
/// tie-out's checks, every one matched.
fn tied_out(env: &Env, customer: &str, k: i64) -> Vec<meter::read::explain::Check> {
    let e = meter::read::explain::run(&meter::read::explain::ExplainOptions {
        query: query_options(env),
        month: month(),
        customer: customer.into(),
        line: Some(k),
    })
    .unwrap();
    assert!(!e.mismatch(), "{customer} line {k}: {}", e.tie_out());
    let meter::read::explain::Detail::Line { checks, .. } = e.detail else {
        panic!("{customer} line {k} is not a line")
    };
    checks
}

fn credits_csv(env: &Env, revision: u32) -> String {
    std::fs::read_to_string(
        env.out
            .join(format!("invoices/2026-10/rev-{revision}/credits.csv")),
    )
    .unwrap()
}

#[test]
fn the_sample_contracts_bill_each_kind_of_term() {
    let env = env();
    // No --contracts: ingest kept the input's contracts.toml in the lake.
    assert!(env.lake.join("_registry/contracts.toml").exists());
    let report = bill(&env, None, "bill-1");
    assert_eq!(report.customers_invoiced, 4);

    // Prepaid credit that runs out: all 60.00 applied, the rest invoiced;
    // the expired welcome credit is reported, not applied.
    let globex = lines(&env, 1, "cust_0002");
    let credit: Vec<_> = globex.iter().filter(|l| l.0 == "credit").collect();
    assert_eq!(credit.len(), 1, "{globex:?}");
    assert_eq!(credit[0].2, "-60.00");
    assert!(credit[0].1.contains("topup-2026-10"), "{}", credit[0].1);
    insta::assert_snapshot!("contracts_sample_credits", credits_csv(&env, 1));

    // The enterprise customer under its commitment, its contract changing
    // on the 12th into tiers the month crosses twice.
    let initech = lines(&env, 1, "cust_0003");
    let trueups: Vec<_> = initech.iter().filter(|l| l.0 == "commitment").collect();
    assert_eq!(trueups.len(), 2, "one per part: {initech:?}");
    assert!(
        trueups
            .iter()
            .all(|l| cents(&l.2) > 0 && l.1.contains(": true-up"))
    );
    assert!(
        trueups[0].1.ends_with("2026-10-01 to 2026-10-11"),
        "{}",
        trueups[0].1
    );
    for tier in ["tier 1 of 3", "tier 2 of 3", "tier 3 of 3"] {
        assert!(
            initech
                .iter()
                .any(|l| l.0 == "api_usage" && l.3.starts_with(tier) && l.1.contains(", 2026-10-")),
            "{tier} missing: {initech:?}"
        );
    }
    let total = initech.last().unwrap();
    assert_eq!(total.0, "total");
    let sum: i64 = initech[..initech.len() - 1]
        .iter()
        .map(|l| cents(&l.2))
        .sum();
    assert_eq!(cents(&total.2), sum);

    // A discount from the 15th: 20% of the fee's share of the days after it.
    let zeta = lines(&env, 1, "cust_0004");
    assert_eq!(zeta[1].0, "discount");
    assert_eq!(
        zeta[1].2, "-32.79",
        "20% of 202.55 x 17/21 = 32.794: {zeta:?}"
    );

    // Contract customers are priced by meter alone: no meter events.
    let events =
        std::fs::read_to_string(env.out.join("stripe/2026-10/rev-1/meter_events.jsonl")).unwrap();
    assert!(events.contains("cust_0001"));
    for c in ["cust_0002", "cust_0003"] {
        assert!(!events.contains(c), "{c} has meter events");
    }
    assert!(
        report.notices.iter().any(|a| a
            .starts_with("customers with a contract are priced by meter alone")
            && a.contains("cust_0002 (")
            && a.contains("cust_0003 (")
            && !a.contains("cust_0004")),
        "{:?}",
        report.notices
    );
    // `meter query` reads the balances.
    let conn = meter::read::query::open(&query_options(&env)).unwrap();
    let rows = meter::read::query::run(
        &conn,
        "SELECT grant_id, opening, applied, expired, closing, status FROM credit_balances \
         ORDER BY burn_order",
    )
    .unwrap();
    let text: Vec<Vec<Option<String>>> = rows.rows.clone();
    assert_eq!(
        text,
        [
            ["welcome", "25.000", "0.000", "25.000", "0.000", "expired"],
            [
                "topup-2026-10",
                "60.000",
                "60.000",
                "0.000",
                "0.000",
                "used"
            ]
        ]
        .map(|r| r.map(|c| Some(c.to_string())).to_vec())
    );
    // And the contracts themselves, as billing read them.
    let tiers = meter::read::query::run(
        &conn,
        "SELECT customer_id, valid_from, tier, tier_from, factor FROM contract_tiers ORDER BY tier",
    )
    .unwrap();
    assert_eq!(tiers.rows.len(), 3);
    assert_eq!(
        tiers.rows[1],
        [
            "cust_0003",
            "2026-10-12",
            "2",
            "20000000.000000",
            "1.150000"
        ]
        .map(|c| Some(c.to_string()))
        .to_vec()
    );
    // `meter explain` recomputes each commitment true-up from the invoice's
    // other lines of its days.
    let commitments: Vec<i64> = (1..=initech.len() as i64 - 1)
        .filter(|k| initech[*k as usize - 1].0 == "commitment")
        .collect();
    assert_eq!(commitments.len(), 2);
    for k in commitments {
        let checks = tied_out(&env, "cust_0003", k);
        assert_eq!(checks.len(), 3, "{checks:?}");
        assert!(
            checks
                .iter()
                .all(|c| c.events > rust_decimal::Decimal::ZERO)
        );
    }
    // And each discount and credit line from the lines and credits.csv.
    let k_of = |lines: &[(String, String, String, String)], kind: &str| -> Vec<i64> {
        (1..=lines.len() as i64)
            .filter(|k| lines[*k as usize - 1].0 == kind)
            .collect()
    };
    for (customer, kind, n_checks) in [("cust_0004", "discount", 2), ("cust_0002", "credit", 3)] {
        let ks = k_of(&lines(&env, 1, customer), kind);
        assert!(!ks.is_empty(), "{customer} has a {kind} line");
        for k in ks {
            let checks = tied_out(&env, customer, k);
            assert_eq!(checks.len(), n_checks, "{checks:?}");
            assert!(checks.iter().all(|c| !c.line.is_zero()), "{checks:?}");
        }
    }
    // The same inputs again: the revision stands.
    let again = bill(&env, None, "bill-2");
    assert_eq!((again.status.as_str(), again.revision), ("unchanged", 1));
}

#[test]
fn a_bad_contract_refuses_its_customer_and_names_file_line_and_field() {
    let env = env();
    let path = env.dir.path().join("contracts.toml");
    std::fs::write(
        &path,
        r#"[[terms]]
customer_id = "cust_0003"
from = 2026-10-01
commitment = "100"

[[terms]]
customer_id = "cust_0003"
from = 2026-10-01
commitment = "200"

[[credits]]
customer_id = "cust_0002"
grant_id = "pounds"
amount = "10.00"
currency = "GBP"
granted = 2026-10-01

[[discounts]]
customer_id = "cust_0001"
amount = "-5"
applies_to = "invoice"
from = 2026-10-01

[[discounts]]
customer_id = "cust_0004"
percent = "10"
applies_to = "invoice"
from = 2026-10-01
"#,
    )
    .unwrap();
    let report = bill(&env, Some(path.clone()), "bill-1");
    let shown = path.display().to_string();
    let refused: Vec<&String> = report
        .attention
        .iter()
        .filter(|a| a.starts_with("contract refused: "))
        .collect();
    assert_eq!(refused.len(), 3, "{:?}", report.attention);
    assert!(
        refused[0].contains(&format!("{shown}:6: field `from`")),
        "{}",
        refused[0]
    );
    assert!(
        refused[1].contains(&format!("{shown}:20: field `amount`")),
        "{}",
        refused[1]
    );
    assert!(
        refused[2].contains(&format!("{shown}:11: field `currency`"))
            && refused[2].contains("no GBP -> USD rate"),
        "{}",
        refused[2]
    );
    // Nothing is billed for the refused customers; their usage is reported.
    let rev = env.out.join("invoices/2026-10/rev-1");
    for c in ["cust_0001", "cust_0002", "cust_0003"] {
        assert!(!rev.join(format!("{c}.csv")).exists(), "{c} was billed");
    }
    assert!(
        report
            .attention
            .iter()
            .any(|a| a.contains("VM vm-347a2e is not on any invoice"))
    );
    // The sound contract still applies.
    let zeta = lines(&env, 1, "cust_0004");
    assert_eq!(zeta[1].0, "discount");
    assert!(report.needs_attention());
}

#[test]
fn credit_opens_from_the_approved_month_before_and_a_changed_balance_names_later_months() {
    let env = env();
    let path = env.dir.path().join("contracts.toml");
    std::fs::write(
        &path,
        "[[credits]]\ncustomer_id = \"cust_0002\"\ngrant_id = \"annual\"\namount = \"500.00\"\n\
         currency = \"EUR\"\ngranted = 2026-08-01\n",
    )
    .unwrap();
    // September's approved revision closed the grant at 200.00 EUR.
    let september = |closing: &str| {
        let dir = env.out.join("invoices/2026-09");
        std::fs::create_dir_all(dir.join("rev-2")).unwrap();
        std::fs::write(
            dir.join("approved.json"),
            r#"{"month":"2026-09","revision":2,"approved_at":"2026-10-02T09:00:00Z","approved_by":"finance","manifest_sha256":"0","run_id":"r"}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("rev-2/credits.csv"),
            format!(
                "month,revision,customer_id,grant_id,burn_order,currency,amount,granted,expires,priority,opening,opening_from,applied,expired,closing,status,fx_rate,applied_invoice_amount,invoice_currency\r\n\
                 2026-09,2,cust_0002,annual,1,EUR,500,2026-08-01,,0,300.00,2026-08 rev-1,100.00,0.00,{closing},open,1.0411,104.11,USD\r\n"
            ),
        )
        .unwrap();
    };
    september("200.00");
    let first = bill(&env, Some(path.clone()), "bill-1");
    let credits = credits_csv(&env, 1);
    let row: Vec<&str> = credits.lines().nth(1).unwrap().split(',').collect();
    // opening 200.00 EUR from 2026-09 rev-2; usage charges 100.84 USD paid
    // at 1.0411 USD per EUR: 100.84 / 1.0411 = 96.86 EUR.
    assert_eq!(
        &row[10..16],
        ["200.00", "2026-09 rev-2", "96.86", "0.00", "103.14", "open"],
        "{credits}"
    );
    assert_eq!(row[17], "100.84");
    assert!(!first.attention.iter().any(|a| a.contains("stale")));

    // November was billed from October's balances; a rerun of October
    // that changes them says so, and leaves November alone.
    let november = env.out.join("invoices/2026-11");
    std::fs::create_dir_all(&november).unwrap();
    std::fs::write(november.join("latest.json"), r#"{"revision":1}"#).unwrap();
    september("300.00");
    let rerun = bill(&env, Some(path), "bill-2");
    assert_eq!(rerun.revision, 2);
    let stale: Vec<&String> = rerun
        .attention
        .iter()
        .filter(|a| a.contains("prepaid credit balances at the end of 2026-10 changed"))
        .collect();
    assert_eq!(stale.len(), 1, "{:?}", rerun.attention);
    assert!(
        stale[0].contains("`meter rerun --month 2026-11`"),
        "{}",
        stale[0]
    );
    assert_eq!(
        std::fs::read_to_string(november.join("latest.json")).unwrap(),
        r#"{"revision":1}"#
    );
}

#[test]
fn a_month_before_that_is_billed_but_not_approved_needs_attention() {
    let env = env();
    let sep = env.out.join("invoices/2026-09");
    std::fs::create_dir_all(sep.join("rev-1")).unwrap();
    std::fs::write(
        sep.join("latest.json"),
        r#"{"month":"2026-09","revision":1,"manifest":"invoices/2026-09/rev-1/_manifest.json","run_id":"r"}"#,
    )
    .unwrap();
    std::fs::write(
        sep.join("rev-1/credits.csv"),
        "month,revision,customer_id,grant_id,burn_order,currency,amount,granted,expires,priority,opening,opening_from,applied,expired,closing,status,fx_rate,applied_invoice_amount,invoice_currency\r\n\
         2026-09,1,cust_0002,welcome,1,USD,25,2026-05-02,2026-10-15,0,25.00,,20.00,0.00,5.00,open,1,20.00,USD\r\n",
    )
    .unwrap();
    let report = bill(&env, None, "bill-1");
    // The welcome credit opened with September's 5.00 and expired.
    let credits = credits_csv(&env, 1);
    assert!(
        credits.contains(
            ",welcome,1,USD,25,2026-05-02,2026-10-15,0,5.00,2026-09 rev-1,0.00,5.00,0.00,expired,"
        ),
        "{credits}"
    );
    assert!(
        report
            .attention
            .iter()
            .any(|a| a.contains("prepaid credit opens from 2026-09 rev-1, which is not approved")),
        "{:?}",
        report.attention
    );
}

fn approve_month(env: &Env, revision: u32) {
    meter::bill::approve::approve(
        &ctx(&format!("approve-{revision}")),
        &meter::bill::approve::ApproveOptions {
            lake: env.lake.clone(),
            out: env.out.display().to_string(),
            store_options: Vec::new(),
            month: "2026-10".into(),
            revision: Some(revision),
            by: "finance@example.com".into(),
        },
    )
    .expect("approve runs");
}

fn nov5() -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc.with_ymd_and_hms(2026, 11, 5, 3, 0, 0).unwrap()
}

/// `meter stripe push --month 2026-10` at 2026-11-05 to `fake`.
fn push_month(
    env: &Env,
    fake: &crate::stripe_server::FakeStripe,
    run: &str,
) -> meter::cron::stripe::PushReport {
    let report = try_push_month(env, fake, run).expect("the push runs");
    assert!(report.counts_add_up(), "{}", report.summary());
    assert_eq!(report.failed, 0, "{}", report.summary());
    report
}

fn try_push_month(
    env: &Env,
    fake: &crate::stripe_server::FakeStripe,
    run: &str,
) -> meter::Result<meter::cron::stripe::PushReport> {
    try_push_month_at(env, fake, run, nov5())
}

fn try_push_month_at(
    env: &Env,
    fake: &crate::stripe_server::FakeStripe,
    run: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> meter::Result<meter::cron::stripe::PushReport> {
    use meter::cron::stripe::{self, ApiKey, PushOptions, Retry, Target};
    let opts = PushOptions {
        base_url: fake.url.clone(),
        api_key: Some(ApiKey::new(crate::stripe_server::API_KEY)),
        retry: Retry {
            max_attempts: 2,
            base_delay: std::time::Duration::from_millis(1),
            max_delay: std::time::Duration::from_millis(2),
        },
        ..PushOptions::new(
            &env.lake,
            env.out.display().to_string(),
            Target::Month(month()),
        )
    };
    let ctx = meter::model::ctx::Ctx::with_run_id(
        std::sync::Arc::new(meter::model::ctx::FixedClock(now)),
        run,
    );
    stripe::push(&ctx, &opts)
}

/// The sample contracts with cust_0004's discount at `percent`.
fn discount_at(env: &Env, percent: &str) -> PathBuf {
    let sample = std::fs::read_to_string(repo().join("sample-data/contracts.toml")).unwrap();
    let path = env.dir.path().join(format!("contracts-{percent}.toml"));
    let text = sample.replace("percent = \"20\"", &format!("percent = \"{percent}\""));
    assert_ne!(text, sample);
    std::fs::write(&path, text).unwrap();
    path
}

/// A revision billed before the invoice it changes reached Stripe has no
/// note: the push says so and sends nothing for that customer, and billing
/// again writes a revision with the note.
#[test]
fn a_revision_billed_before_the_push_gets_its_note_from_the_next_bill() {
    let env = env();
    let fake = crate::stripe_server::FakeStripe::start(nov5());
    bill(&env, None, "bill-1");
    approve_month(&env, 1);
    let second = bill(&env, Some(discount_at(&env, "25")), "bill-2");
    assert!(
        second.notes.is_empty(),
        "nothing was pushed yet: {:?}",
        second.notes
    );
    push_month(&env, &fake, "push-1");
    approve_month(&env, 2);
    let stuck = push_month(&env, &fake, "push-2");
    assert_eq!(stuck.sent_accepted, 0, "{}", stuck.summary());
    assert!(
        stuck
            .attention
            .iter()
            .any(|a| a.starts_with("customer cust_0004:")
                && a.contains("no note against rev-1")
                && a.contains("meter bill --month 2026-10")),
        "{}",
        stuck.summary()
    );
    let third = bill(&env, Some(discount_at(&env, "25")), "bill-3");
    assert_eq!(third.revision, 3, "{}", third.summary());
    assert_eq!(third.notes.len(), 1, "{:?}", third.notes);
    assert!(third.notes[0].starts_with("CN-202610-cust_0004-R3 (credit"));
    assert!(third.notes[0].contains("against INV-202610-cust_0004-R1"));
    // Nothing changes after that: the same inputs stand.
    let fourth = bill(&env, Some(discount_at(&env, "25")), "bill-4");
    assert_eq!((fourth.status.as_str(), fourth.revision), ("unchanged", 3));
    approve_month(&env, 3);
    let done = push_month(&env, &fake, "push-3");
    assert_eq!(done.sent_accepted, 1, "{}", done.summary());
    // (Its one attention: this lake never pushed the metered customer's
    // daily events, which the closed month can no longer take.)
    assert!(
        !done.attention.iter().any(|a| a.contains("note")),
        "{}",
        done.summary()
    );
    assert_eq!(fake.credit_notes().len(), 1);
}

/// A contract customer's invoice reaches Stripe as meter's invoice, line by
/// line with meter's amounts, once; a later approved revision reaches it as
/// a credit note (or, for a debit, an invoice item), once.
#[test]
fn contract_invoices_go_to_stripe_as_meters_invoices_and_changes_as_notes() {
    let env = env();
    let fake = crate::stripe_server::FakeStripe::start(nov5());
    let approve = |revision: u32| approve_month(&env, revision);
    let push = |run: &str| push_month(&env, &fake, run);
    let changed = |percent: &str| discount_at(&env, percent);
    let summary_total = |revision: u32, customer: &str| -> i64 {
        let text = std::fs::read_to_string(
            env.out
                .join(format!("invoices/2026-10/rev-{revision}/{customer}.csv")),
        )
        .unwrap();
        let last = text.lines().last().unwrap().to_string();
        let amount = last.split(',').rev().nth(1).unwrap().to_string();
        cents(&amount)
    };

    let first = bill(&env, None, "bill-1");
    assert!(first.notes.is_empty());
    approve(1);
    // A line accepted but its answer lost (replayed under its key), then
    // Stripe down: the push stops in the middle of an invoice, and the
    // next one resumes there; nothing is made twice.
    use crate::stripe_server::Fault;
    fake.script([
        Fault::Pass,
        Fault::AcceptThenDrop,
        Fault::Pass,
        Fault::Pass,
        Fault::Status(503),
        Fault::Status(503),
    ]);
    let stopped = try_push_month(&env, &fake, "push-0").unwrap_err();
    assert!(
        stopped
            .to_string()
            .contains("stopped at INV-202610-cust_0002-R1-line-"),
        "{stopped}"
    );
    assert_eq!(fake.invoices().len(), 1);
    assert_eq!(fake.invoices()["in_1"].status, "draft");
    let report = push("push-1");
    let invoices = fake.invoices();
    let made: Vec<(String, String, i64)> = invoices
        .values()
        .map(|i| (i.meter_invoice.clone(), i.status.clone(), i.total()))
        .collect();
    assert_eq!(
        made,
        ["cust_0002", "cust_0003", "cust_0004"].map(|c| (
            format!("INV-202610-{c}-R1"),
            "open".to_string(),
            summary_total(1, c)
        )),
        "{}",
        report.summary()
    );
    // Meter's credit is a negative line of meter's invoice, never a Stripe
    // credit grant; no contract customer has meter events.
    let globex = invoices
        .values()
        .find(|i| i.customer == "cus_5eP5JDETLY2bia")
        .unwrap();
    assert!(globex.lines.contains(&-6000), "{:?}", globex.lines);
    assert!(
        fake.events()
            .values()
            .all(|e| e.customer == "cus_luJ0lin0U914x5")
    );
    let again = push("push-2");
    assert_eq!(again.sent_accepted, 0, "{}", again.summary());
    assert_eq!(fake.invoices().len(), 3);

    // A bigger discount for cust_0004: rev-2 with one credit note.
    let second = bill(&env, Some(changed("25")), "bill-2");
    assert_eq!(second.revision, 2);
    assert_eq!(second.notes.len(), 1, "{:?}", second.notes);
    assert!(
        second.notes[0].starts_with("CN-202610-cust_0004-R2 (credit, -"),
        "{:?}",
        second.notes
    );
    let note = std::fs::read_to_string(
        env.out
            .join("invoices/2026-10/rev-2/notes/CN-202610-cust_0004-R2.csv"),
    )
    .unwrap();
    assert!(note.contains("INV-202610-cust_0004-R1"), "{note}");
    let items =
        std::fs::read_to_string(env.out.join("stripe/2026-10/rev-2/invoice_items.jsonl")).unwrap();
    assert!(
        !items.contains("cust_0004"),
        "a note carries it, not an item: {items}"
    );
    let credit = summary_total(1, "cust_0004") - summary_total(2, "cust_0004");
    assert!(credit > 0);
    // `meter query` has the note, exact.
    let conn = meter::read::query::open(&query_options(&env)).unwrap();
    let rows = meter::read::query::run(
        &conn,
        "SELECT month, note_number, kind, original_invoice, CAST(difference * 100 AS BIGINT) \
         FROM notes WHERE line_type = 'total'",
    )
    .unwrap();
    assert_eq!(
        rows.rows,
        [[
            "2026-10",
            "CN-202610-cust_0004-R2",
            "credit",
            "INV-202610-cust_0004-R1",
            &(-credit).to_string()
        ]
        .map(|c| Some(c.to_string()))
        .to_vec()]
    );
    approve(2);
    let report = push("push-3");
    assert_eq!(report.sent_accepted, 1, "{}", report.summary());
    assert!(
        !report.attention.iter().any(|a| a.contains("note")),
        "the unchanged invoices need no note: {}",
        report.summary()
    );
    let notes = fake.credit_notes();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].amount, credit);
    assert!(
        notes[0].memo.contains("CN-202610-cust_0004-R2"),
        "{}",
        notes[0].memo
    );
    assert_eq!(push("push-4").sent_accepted, 0);

    // A smaller discount: rev-3's debit note against rev-2 (what Stripe
    // holds now) goes as an item for the next invoice.
    let third = bill(&env, Some(changed("10")), "bill-3");
    assert_eq!(third.notes.len(), 1, "{:?}", third.notes);
    assert!(
        third.notes[0].starts_with("DN-202610-cust_0004-R3 (debit, "),
        "{:?}",
        third.notes
    );
    approve(3);
    push("push-5");
    let debit = summary_total(3, "cust_0004") - summary_total(2, "cust_0004");
    let pending: Vec<_> = fake
        .items()
        .into_iter()
        .filter(|i| i.invoice.is_none() && i.description.contains("DN-202610-cust_0004-R3"))
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].amount, debit);
    assert_eq!(fake.credit_notes().len(), 1);
    assert_eq!(push("push-6").sent_accepted, 0);
}

/// A customer billed through meter events whose approved, pushed invoice
/// changes gets a note too: the document of the correction its items carry.
#[test]
fn a_metered_customers_changed_invoice_gets_a_note_that_its_correction_carries() {
    use chrono::TimeZone;
    let env = env();
    let oct31 = chrono::Utc
        .with_ymd_and_hms(2026, 10, 31, 22, 0, 0)
        .unwrap();
    let fake = crate::stripe_server::FakeStripe::start(oct31);
    bill(&env, None, "bill-1");
    approve_month(&env, 1);
    // While October is open: cust_0001's readings go as meter events; the
    // contract customers' invoices wait for the month's end.
    let open = try_push_month_at(&env, &fake, "push-1", oct31).unwrap();
    assert!(
        open.notices
            .iter()
            .any(|n| n.contains("once 2026-10 is over")),
        "{}",
        open.summary()
    );
    assert!(
        fake.events()
            .values()
            .any(|e| e.customer == "cus_luJ0lin0U914x5")
    );
    assert!(fake.invoices().is_empty());

    // cust_0001 becomes a reseller at cost x 1.3.
    let registry = std::fs::read_to_string(env.lake.join("_registry/customers.csv")).unwrap();
    let changed = registry.replace(",600,,Europe/Berlin", ",600,1.3,Europe/Berlin");
    assert_ne!(changed, registry);
    let customers = env.dir.path().join("customers.csv");
    std::fs::write(&customers, changed).unwrap();
    let second = bill::run(
        &ctx("bill-2"),
        &BillOptions {
            lake: env.lake.clone(),
            month: month(),
            customers: Some(customers),
            contracts: None,
            pricing: repo().join("pricing.toml"),
            out: env.out.display().to_string(),
            store_options: Vec::new(),
        },
    )
    .expect("bill runs");
    assert_eq!(second.revision, 2);
    assert_eq!(second.notes.len(), 1, "{:?}", second.notes);
    let note = &second.notes[0];
    assert!(note.contains("-202610-cust_0001-R2 ("), "{note}");
    assert!(note.contains("against INV-202610-cust_0001-R1"), "{note}");
    assert!(
        note.ends_with(
            "the revision's Stripe corrections (invoice_items.jsonl or delta meter events)"
        ),
        "{note}"
    );
    approve_month(&env, 2);
    let closed = push_month(&env, &fake, "push-2");
    assert!(fake.credit_notes().is_empty(), "{}", closed.summary());
    let items: Vec<_> = fake
        .items()
        .into_iter()
        .filter(|i| i.invoice.is_none())
        .collect();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].customer, "cus_luJ0lin0U914x5");
    // The contract customers' invoices, made from rev-2 now the month is over.
    assert_eq!(fake.invoices().len(), 3);
}
