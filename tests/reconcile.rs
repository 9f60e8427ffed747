//! The correction cycle as finance runs it, through the binary: a month
//! billed, rerun with no change, late data, a rerun that writes rev-2 with
//! its diff and corrections, reconcile, approve, the Stripe push, reconcile
//! again; and what reconcile says of a corrected revision that was altered.

use std::path::Path;

use crate::common::{Run, copy_dir, meter, repo, sample_data};
use crate::stripe_server::{API_KEY, FakeStripe};

/// A working folder with its own copy of the sample input and a
/// `meter.toml` naming it, a lake and an out folder.
struct Cycle {
    dir: tempfile::TempDir,
}

impl Cycle {
    fn new() -> Cycle {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&sample_data(), &dir.path().join("input"));
        std::fs::write(
            dir.path().join("meter.toml"),
            format!(
                "input = \"input\"\nlake = \"lake\"\nout = \"out\"\npricing = {:?}\n",
                repo().join("pricing.toml").display().to_string()
            ),
        )
        .unwrap();
        Cycle { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, now: &str, args: &[&str]) -> Run {
        meter(self.path(), now, args, &[("USER", "finance")])
    }

    fn out(&self, rel: &str) -> std::path::PathBuf {
        self.path().join("out").join(rel)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.out(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// Five late usage lines for cust_0001's VM on 2026-10-28: copies of a
    /// sample line a little later, each a new request.
    fn add_late_lines(&self) -> usize {
        let log = self.path().join("input/vm-2fbcf0/cliproxy/usage.jsonl");
        let text = std::fs::read_to_string(&log).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("\"timestamp\":\"2026-10-28T20:15:36.909685392+01:00\""))
            .expect("the sample line");
        let late: Vec<String> = (1..=5)
            .map(|i| line.replace("20:15:36.909685392", &format!("20:15:37.00000000{i}")))
            .collect();
        std::fs::write(&log, format!("{}\n{text}", late.join("\n"))).unwrap();
        late.len()
    }
}

fn ok(run: &Run, code: i32, what: &str) {
    assert_eq!(
        run.code, code,
        "{what}: exit {}\nstdout:\n{}\nstderr:\n{}",
        run.code, run.stdout, run.stderr
    );
}

#[test]
fn the_correction_cycle_reconciles_at_every_step() {
    let c = Cycle::new();
    let billed = c.run("2026-11-01T03:00:00Z", &["pipeline", "--month", "2026-10"]);
    ok(
        &billed,
        1,
        "pipeline (unpriced calls and an unlisted VM need attention)",
    );
    let reconcile = c.run("2026-11-01T04:00:00Z", &["reconcile", "--month", "2026-10"]);
    ok(&reconcile, 0, "reconcile rev-1");
    assert!(
        reconcile.stderr.contains("rev-1: 4 invoices checked"),
        "{}",
        reconcile.stderr
    );

    // Nothing changed: rev-1 stands.
    let same = c.run("2026-11-02T03:00:00Z", &["rerun", "--month", "2026-10"]);
    ok(&same, 1, "rerun with no change");
    assert!(
        same.stderr.contains("unchanged revision 1"),
        "{}",
        same.stderr
    );
    assert!(!c.out("invoices/2026-10/rev-2").exists());

    // Late data: rev-2 with its diff and corrections (the month is closed:
    // invoice items).
    assert_eq!(c.add_late_lines(), 5);
    let rerun = c.run("2026-11-03T03:00:00Z", &["rerun", "--month", "2026-10"]);
    ok(&rerun, 1, "rerun after late data");
    assert!(
        rerun.stderr.contains("published revision 2"),
        "{}",
        rerun.stderr
    );
    let corrections = c.read("invoices/2026-10/rev-2/corrections.csv");
    let debit: Vec<&str> = corrections
        .lines()
        .filter(|l| l.contains(",debit,"))
        .collect();
    assert_eq!(debit.len(), 1, "{corrections}");
    assert!(debit[0].contains(",cust_0001,"), "{corrections}");
    assert!(c.out("stripe/2026-10/rev-2/invoice_items.jsonl").exists());

    let reconcile = c.run("2026-11-03T04:00:00Z", &["reconcile", "--month", "2026-10"]);
    ok(&reconcile, 0, "reconcile rev-2");
    assert!(
        reconcile.stderr.contains(
            "rev-2: 4 invoices; its corrections against rev-1 checked (corrections.csv, diff.csv, invoice_items.jsonl)"
        ),
        "{}",
        reconcile.stderr
    );
    assert!(reconcile.stdout.contains("cost"), "{}", reconcile.stdout);
    assert!(
        !reconcile.stdout.contains("MISMATCH"),
        "{}",
        reconcile.stdout
    );

    // Approved, pushed to (the fake) Stripe, reconciled again.
    ok(
        &c.run(
            "2026-11-03T09:00:00Z",
            &["approve", "--month", "2026-10", "--by", "finance"],
        ),
        0,
        "approve rev-2",
    );
    let stripe = FakeStripe::start(
        chrono::DateTime::parse_from_rfc3339("2026-11-03T10:00:00Z")
            .unwrap()
            .to_utc(),
    );
    let push = meter(
        c.path(),
        "2026-11-03T10:00:00Z",
        &[
            "stripe",
            "push",
            "--month",
            "2026-10",
            "--base-url",
            &stripe.url,
        ],
        &[("STRIPE_API_KEY", API_KEY)],
    );
    // Exit 1: the month closed before its meter events were ever pushed
    // (this lake never ran a nightly push), which the push says; the
    // correction itself goes as an invoice item. The contract customers'
    // invoices are made in Stripe as meter's invoices, line by line.
    ok(&push, 1, "push rev-2");
    assert!(
        push.stderr.contains(", 0 already accepted, 0 failed"),
        "{}",
        push.stderr
    );
    let invoices = stripe.invoices();
    assert_eq!(invoices.len(), 3, "{invoices:?}");
    assert!(invoices.values().all(|i| i.status != "draft"));
    let steps: usize = invoices.values().map(|i| i.lines.len() + 2).sum();
    assert!(
        push.stderr
            .contains(&format!("{} sent and accepted", steps + 1)),
        "{}",
        push.stderr
    );
    let items: Vec<_> = stripe
        .items()
        .into_iter()
        .filter(|i| i.invoice.is_none())
        .collect();
    assert_eq!(items.len(), 1, "{items:?}");
    let rev1 = c.read("invoices/2026-10/rev-1/cust_0001.csv");
    let rev2 = c.read("invoices/2026-10/rev-2/cust_0001.csv");
    let total = |csv: &str| -> rust_decimal::Decimal {
        let line = csv.lines().find(|l| l.contains(",total,")).unwrap();
        line.split(',').rev().nth(1).unwrap().parse().unwrap()
    };
    let difference = total(&rev2) - total(&rev1);
    assert!(difference > rust_decimal::Decimal::ZERO);
    assert_eq!(
        rust_decimal::Decimal::from(items[0].amount),
        difference * rust_decimal::Decimal::from(100),
        "{items:?}"
    );
    ok(
        &c.run("2026-11-03T11:00:00Z", &["reconcile", "--month", "2026-10"]),
        0,
        "reconcile after the push",
    );

    // Altered after publication: numbers that no longer add up are
    // attention (exit 1), naming the file and the customer.
    let invoice = c.out("invoices/2026-10/rev-2/cust_0001.csv");
    let original = std::fs::read_to_string(&invoice).unwrap();
    let line = original
        .lines()
        .find(|l| l.contains(",api_usage,") && l.contains("claude"))
        .unwrap();
    let amount = line.split(',').rev().nth(1).unwrap();
    let changed: rust_decimal::Decimal =
        amount.parse::<rust_decimal::Decimal>().unwrap() + rust_decimal::Decimal::new(1, 2);
    let tampered_line = line.replace(&format!(",{amount},"), &format!(",{changed},"));
    std::fs::write(&invoice, original.replace(line, &tampered_line)).unwrap();
    let run = c.run("2026-11-04T03:00:00Z", &["reconcile", "--month", "2026-10"]);
    ok(&run, 1, "reconcile of an altered invoice");
    for needle in [
        "invoices/2026-10/rev-2/cust_0001.csv: cust_0001: total",
        "is not the sum of its lines",
        "invoices/2026-10/rev-2/cust_0001.csv: cust_0001: changed since rev-2 was published",
        "diff.csv",
        ": cust_0001: api_usage anthropic claude",
    ] {
        assert!(run.stderr.contains(needle), "{needle}\n{}", run.stderr);
    }
    std::fs::write(&invoice, &original).unwrap();

    let file = c.out("invoices/2026-10/rev-2/corrections.csv");
    let original = std::fs::read_to_string(&file).unwrap();
    let row = original.lines().find(|l| l.contains(",debit,")).unwrap();
    let fields: Vec<&str> = row.split(',').collect();
    let difference = fields[8];
    let off: rust_decimal::Decimal =
        difference.parse::<rust_decimal::Decimal>().unwrap() + rust_decimal::Decimal::ONE;
    let mut altered: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    altered[8] = off.to_string();
    std::fs::write(&file, original.replace(row, &altered.join(","))).unwrap();
    let run = c.run("2026-11-04T04:00:00Z", &["reconcile", "--month", "2026-10"]);
    ok(&run, 1, "reconcile of altered corrections");
    assert!(
        run.stderr.contains(&format!(
            "invoices/2026-10/rev-2/corrections.csv:{}: cust_0001: difference {off} (rev-2 minus rev-1: {difference})",
            original.lines().position(|l| l == row).unwrap() + 1
        )),
        "{}",
        run.stderr
    );

    // A file that cannot be read as what it is fails (exit 2), as before.
    std::fs::write(
        &file,
        original.replace(row, &row.replace(difference, "lots")),
    )
    .unwrap();
    let run = c.run("2026-11-04T05:00:00Z", &["reconcile", "--month", "2026-10"]);
    ok(&run, 2, "reconcile of an unreadable corrections file");
    assert!(
        run.stderr.contains("error: billing: ")
            && run.stderr.contains("corrections.csv:")
            && run
                .stderr
                .contains("field `difference`: \"lots\" is not a number"),
        "{}",
        run.stderr
    );
    std::fs::write(&file, &original).unwrap();
    ok(
        &c.run("2026-11-04T06:00:00Z", &["reconcile", "--month", "2026-10"]),
        0,
        "reconcile once restored",
    );
}

#[test]
fn an_open_month_s_delta_meter_events_are_checked_reading_by_reading() {
    let c = Cycle::new();
    // the last evening of October: the billing period is still open
    let now = "2026-10-31T20:00:00Z";
    ok(
        &c.run(now, &["pipeline", "--month", "2026-10"]),
        1,
        "pipeline",
    );
    c.add_late_lines();
    ok(&c.run(now, &["rerun", "--month", "2026-10"]), 1, "rerun");
    let run = c.run(now, &["reconcile", "--month", "2026-10"]);
    ok(&run, 0, "reconcile rev-2");
    assert!(
        run.stderr.contains("meter_event_corrections.jsonl"),
        "{}",
        run.stderr
    );

    // A delta that no longer turns the old reading into the new one.
    let file = c.out("stripe/2026-10/rev-2/meter_event_corrections.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let first = text.lines().next().unwrap();
    let mut event: serde_json::Value = serde_json::from_str(first).unwrap();
    let value = event["payload"]["value"].as_i64().unwrap();
    event["payload"]["value"] = (value + 1).into();
    std::fs::write(&file, text.replacen(first, &event.to_string(), 1)).unwrap();
    let run = c.run(now, &["reconcile", "--month", "2026-10"]);
    ok(&run, 1, "reconcile of an altered delta");
    assert!(
        run.stderr.contains(&format!(
            "meter_event_corrections.jsonl: cust_0001: meter {} on 2026-10-28: delta {}",
            event["event_name"].as_str().unwrap(),
            value + 1
        )),
        "{}",
        run.stderr
    );
}
