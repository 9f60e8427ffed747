//! `meter explain` on the sample pipeline's output: every line's events tie
//! out to the published invoice, and a changed invoice does not.

use rust_decimal::Decimal;

use crate::common::copy_dir;
use crate::query::{meter, query, sample_output};

fn explain(lake: &str, out: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "explain", "--lake", lake, "--out", out, "--month", "2026-10",
    ];
    args.extend_from_slice(extra);
    meter(&args)
}

fn paths() -> (String, String) {
    let (lake, out) = sample_output();
    (lake.display().to_string(), out.display().to_string())
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

#[test]
fn without_a_line_it_lists_the_lines_and_the_events_by_day_and_model() {
    let (lake, out) = paths();
    let (code, stdout, err) = explain(&lake, &out, &["--customer", "cust_0002"]);
    assert_eq!(code, 0, "{err}");
    let (lines, summary) = stdout.split_once("\nEvents of the month").unwrap();
    insta::assert_snapshot!("explain_cust_0002_lines", lines);
    assert!(summary.contains("2026-10-30"), "{summary}");
}

/// For every API line of every invoice, the events explain lists add up,
/// in this test's own arithmetic, to the line: requests, tokens and
/// provider cost; and explain's own tie-out says so (exit 0).
#[test]
fn every_api_line_is_the_sum_of_its_events() {
    let (lake, out) = paths();
    let (lake_p, out_p) = sample_output();
    let lines = query(
        lake_p,
        out_p,
        "csv",
        "SELECT customer_id, line, requests, quantity, provider_cost FROM invoices \
         WHERE month = '2026-10' AND line_type = 'api_usage' ORDER BY ALL",
    );
    let mut checked = 0;
    for r in csv::Reader::from_reader(lines.as_bytes()).records() {
        let r = r.unwrap();
        let (customer, line) = (&r[0], &r[1]);
        let (code, stdout, err) = explain(
            &lake,
            &out,
            &["--customer", customer, "--line", line, "--format", "csv"],
        );
        assert_eq!(code, 0, "{customer} line {line}: {err}");
        assert!(err.contains("match line"), "{err}");
        let mut requests = 0i64;
        let mut tokens = 0i64;
        let mut cost = Decimal::ZERO;
        let mut events = csv::Reader::from_reader(stdout.as_bytes());
        let header = events.headers().unwrap().clone();
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        let (t, c, f, l) = (
            col("tokens"),
            col("cost"),
            col("source_file"),
            col("source_line"),
        );
        for e in events.records() {
            let e = e.unwrap();
            assert!(!e[f].is_empty() && e[l].parse::<u64>().unwrap() >= 1);
            requests += 1;
            tokens += e[t].parse::<i64>().unwrap();
            cost += dec(&e[c]);
        }
        assert_eq!(requests, r[2].parse::<i64>().unwrap(), "{customer} {line}");
        assert_eq!(tokens, r[3].parse::<i64>().unwrap(), "{customer} {line}");
        // the invoice's provider cost is exact, to the last digit
        assert_eq!(cost, dec(&r[4]), "{customer} {line}");
        checked += 1;
    }
    assert!(checked >= 30, "{checked} lines");
}

#[test]
fn a_line_shows_its_events_and_the_tie_out() {
    let (lake, out) = paths();
    let (code, stdout, err) = explain(
        &lake,
        &out,
        &["--customer", "cust_0001", "--line", "4", "--format", "csv"],
    );
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("explain_cust_0001_line_4_tie_out", err);
    let head: Vec<&str> = stdout.lines().take(3).collect();
    insta::assert_snapshot!("explain_cust_0001_line_4_events_head", head.join("\n"));
    // compute and fee lines say what is behind them
    let (code, stdout, err) = explain(&lake, &out, &["--customer", "cust_0001", "--line", "14"]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("daily_resource_usage") && stdout.contains("hours (quantity)"));
    let (code, stdout, _) = explain(&lake, &out, &["--customer", "cust_0001", "--line", "1"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("flat fee"), "{stdout}");
}

#[test]
fn an_unknown_customer_or_line_exits_2_naming_what_exists() {
    let (lake, out) = paths();
    let (code, _, err) = explain(&lake, &out, &["--customer", "cust_9999"]);
    assert_eq!(code, 2);
    assert!(err.contains("cust_0001, cust_0002, cust_0003"), "{err}");
    let (code, _, err) = explain(&lake, &out, &["--customer", "cust_0001", "--line", "99"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("has no line 99") && err.contains("14 compute"),
        "{err}"
    );
}

/// An invoice whose line no longer matches the lake: exit 1, MISMATCH.
#[test]
fn a_changed_invoice_line_does_not_tie_out() {
    let (lake, out) = paths();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("out");
    copy_dir(std::path::Path::new(&out), &copy);
    let csv = copy.join("invoices/2026-10/rev-1/cust_0001.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.contains(",28.13,EUR"));
    std::fs::write(&csv, text.replace(",28.13,EUR", ",28.31,EUR")).unwrap();
    let (code, _, err) = explain(
        &lake,
        copy.to_str().unwrap(),
        &["--customer", "cust_0001", "--line", "4", "--format", "json"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("MISMATCH") && err.contains("DO NOT match"),
        "{err}"
    );
}
