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

/// The token columns of an invoice line and of an event.
const TOKEN_COLUMNS: [&str; 5] = [
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
];

/// The factor the line's rule prints (`cost x F`; 0 within the allowance).
fn factor(rule: &str) -> Decimal {
    if rule.starts_with("included") {
        return Decimal::ZERO;
    }
    dec(rule.rsplit_once("cost x ").unwrap().1)
}

/// For every API and unpriced line of every invoice, the events explain
/// lists add up, in this test's own arithmetic, to every column of the
/// line: requests, each token kind, the quantity, the provider cost and the
/// amount; and explain's own tie-out says so (exit 0). The token columns of
/// a model with unpriced events used to count those events on the priced
/// line too.
#[test]
fn every_api_line_is_the_sum_of_its_events() {
    let (lake, out) = paths();
    let (lake_p, out_p) = sample_output();
    let lines = query(
        lake_p,
        out_p,
        "csv",
        &format!(
            "SELECT customer_id, line, line_type, requests, {}, quantity, provider_cost, \
             fx_rate, rule, amount FROM invoices \
             WHERE month = '2026-10' AND line_type IN ('api_usage', 'unpriced') ORDER BY ALL",
            TOKEN_COLUMNS.join(", ")
        ),
    );
    let (mut checked, mut unpriced) = (0, 0);
    for r in csv::Reader::from_reader(lines.as_bytes()).records() {
        let r = r.unwrap();
        let (customer, line, line_type) = (&r[0], &r[1], &r[2]);
        let (code, stdout, err) = explain(
            &lake,
            &out,
            &["--customer", customer, "--line", line, "--format", "csv"],
        );
        assert_eq!(code, 0, "{customer} line {line}: {err}");
        assert!(err.contains("match line"), "{err}");
        let mut requests = 0i64;
        let mut kinds = [0i64; 5];
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
        let k = TOKEN_COLUMNS.map(col);
        for e in events.records() {
            let e = e.unwrap();
            assert!(!e[f].is_empty() && e[l].parse::<u64>().unwrap() >= 1);
            requests += 1;
            for (sum, i) in kinds.iter_mut().zip(k) {
                *sum += e[i].parse::<i64>().unwrap();
            }
            tokens += e[t].parse::<i64>().unwrap();
            if !e[c].is_empty() {
                cost += dec(&e[c]);
            }
        }
        let what = format!("{customer} line {line} ({line_type})");
        let int = |i: usize| r[i].parse::<i64>().unwrap_or(0);
        assert_eq!(requests, int(3), "{what}: requests");
        for (i, name) in TOKEN_COLUMNS.iter().enumerate() {
            assert_eq!(kinds[i], int(4 + i), "{what}: {name}");
        }
        assert_eq!(tokens, int(9), "{what}: quantity");
        assert_eq!(tokens, kinds[0] + kinds[1] + kinds[2] + kinds[3], "{what}");
        // the invoice's provider cost is exact, to the last digit
        let line_cost = if r[10].is_empty() {
            Decimal::ZERO
        } else {
            dec(&r[10])
        };
        assert_eq!(cost, line_cost, "{what}: provider cost");
        // the amount: cost x factor x FX, rounded once to the cent
        let amount = match line_type {
            "unpriced" => Decimal::ZERO,
            _ => (cost * factor(&r[12]) * dec(&r[11]))
                .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero),
        };
        assert_eq!(amount, dec(&r[13]), "{what}: amount");
        checked += 1;
        unpriced += usize::from(line_type == "unpriced");
    }
    assert!(checked >= 30, "{checked} lines");
    assert!(unpriced >= 3, "{unpriced} unpriced lines");
}

/// explain's tie-out checked the quantity only: a token column that no
/// longer matches its events went unnoticed.
#[test]
fn the_tie_out_checks_every_column_of_the_line() {
    let (lake, out) = paths();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("out");
    copy_dir(std::path::Path::new(&out), &copy);
    let csv = copy.join("invoices/2026-10/rev-1/cust_0001.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    // line 4: move 1000 tokens from input to cache read; quantity, requests,
    // cost and amount stay as they are
    let mut rows: Vec<csv::StringRecord> = csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap())
        .collect();
    let header = csv::Reader::from_reader(text.as_bytes())
        .headers()
        .unwrap()
        .clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let row = rows.iter_mut().find(|r| &r[col("line")] == "4").unwrap();
    let mut fields: Vec<String> = row.iter().map(String::from).collect();
    let shift = |s: &str, by: i64| (s.parse::<i64>().unwrap() + by).to_string();
    fields[col("input_tokens")] = shift(&fields[col("input_tokens")], -1000);
    fields[col("cache_read_tokens")] = shift(&fields[col("cache_read_tokens")], 1000);
    *row = csv::StringRecord::from(fields);
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&header).unwrap();
    for r in &rows {
        writer.write_record(r).unwrap();
    }
    std::fs::write(&csv, writer.into_inner().unwrap()).unwrap();
    let (code, _, err) = explain(
        &lake,
        copy.to_str().unwrap(),
        &["--customer", "cust_0001", "--line", "4", "--format", "json"],
    );
    assert_eq!(code, 1, "{err}");
    let mismatched: Vec<&str> = err.lines().filter(|l| l.contains("MISMATCH")).collect();
    assert_eq!(mismatched.len(), 2, "{err}");
    assert!(mismatched[0].contains("input_tokens"), "{err}");
    assert!(mismatched[1].contains("cache_read_tokens"), "{err}");
    assert!(err.contains("DO NOT match"), "{err}");
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
