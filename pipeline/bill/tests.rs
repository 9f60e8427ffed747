//! Unit tests of the billing SQL: synthetic input tables, exact results.

use duckdb::Connection;

use super::render::InvoiceLine;
use super::{Billing, read_billing, sql};

const BASE: &str = "
INSERT INTO billing_period VALUES ('2026-10', DATE '2026-10-01', DATE '2026-11-01', 31, 1, 'USD');
INSERT INTO currencies VALUES ('EUR', 2, 100), ('USD', 2, 100), ('JPY', 0, 1);
INSERT INTO plans VALUES
  ('pro', 499, 'EUR', 1000000, 0.05, 1.2),
  ('starter', 299, 'EUR', 1000000, 0, 1.2);
INSERT INTO fx_rates VALUES
  ('EUR', 'EUR', 1), ('USD', 'USD', 1), ('EUR', 'USD', 1.0411), ('USD', 'EUR', 0.96052252),
  ('EUR', 'JPY', 160.5), ('USD', 'JPY', 154.16);
INSERT INTO meters VALUES ('llm_tokens', 'tokens', 'token'), ('compute_minutes', 'compute_minutes', 'minute'),
  ('commands_run', 'commands', 'command'), ('provider_cost_cents', 'provider_cost', 'cent');
";

/// A customer row: id, plan, currency, created, cancelled, limit, markup.
fn customer(
    id: &str,
    plan: &str,
    currency: &str,
    created: &str,
    cancelled: Option<&str>,
    markup: Option<&str>,
) -> String {
    format!(
        "INSERT INTO customers VALUES ('{id}', 'Name of {id}', '{plan}', '{currency}', 'cus_{id}', \
         TIMESTAMP '{created}', {}, NULL, {});",
        cancelled.map_or("NULL".into(), |c| format!("TIMESTAMP '{c}'")),
        markup.unwrap_or("NULL")
    )
}

/// A monthly usage row: input and output tokens, cost in USD.
fn usage(customer: &str, model: &str, input: i64, output: i64, cost: &str) -> String {
    let customer = if customer.is_empty() {
        "NULL".to_string()
    } else {
        format!("'{customer}'")
    };
    format!(
        "INSERT INTO usage_monthly VALUES ({customer}, 'vm-{model}', 'openai', '{model}', 1, \
         {input}, 0, 0, {output}, 0, {cost}, 0, 0);"
    )
}

fn bill(setup: &[String]) -> (Connection, Billing) {
    let conn = Connection::open_in_memory().unwrap();
    sql::run_file(&conn, "inputs.sql").unwrap();
    conn.execute_batch(BASE).unwrap();
    conn.execute_batch(&setup.join("\n")).unwrap();
    sql::run_billing(&conn).unwrap();
    let billing = read_billing(&conn, "2026-10").unwrap();
    (conn, billing)
}

fn lines<'a>(b: &'a Billing, customer: &str, kind: &str) -> Vec<&'a InvoiceLine> {
    b.lines
        .iter()
        .filter(|l| l.customer_id == customer && l.line_type == kind)
        .collect()
}

fn total(b: &Billing, customer: &str) -> i64 {
    b.summary
        .iter()
        .find(|r| r.customer_id == customer)
        .unwrap()
        .total_minor
}

#[test]
fn fee_is_prorated_by_active_days() {
    let (_, b) = bill(&[
        customer("full", "pro", "EUR", "2025-01-01 00:00:00", None, None),
        // joined on the 11th at 09:00: the 11th counts, 21 of 31 days
        customer("joined", "pro", "EUR", "2026-10-11 09:00:00", None, None),
        // cancelled at midnight of the 21st: the 21st does not count, 20 days
        customer(
            "left",
            "pro",
            "EUR",
            "2025-01-01 00:00:00",
            Some("2026-10-21 00:00:00"),
            None,
        ),
        // cancelled at 10:00 of the 21st: the 21st counts, 21 days
        customer(
            "left_late",
            "pro",
            "EUR",
            "2025-01-01 00:00:00",
            Some("2026-10-21 10:00:00"),
            None,
        ),
        // gone before the month: no invoice
        customer(
            "gone",
            "pro",
            "EUR",
            "2025-01-01 00:00:00",
            Some("2026-09-30 00:00:00"),
            None,
        ),
        // joins after the month: no invoice
        customer("later", "pro", "EUR", "2026-11-01 00:00:00", None, None),
    ]);
    let fee = |c: &str| lines(&b, c, "subscription")[0].clone();
    assert_eq!(fee("full").amount_minor, 49900);
    assert_eq!(fee("full").quantity, "1");
    // 499 x 21 / 31 = 338.032... -> 338.03
    assert_eq!(fee("joined").amount_minor, 33803);
    assert_eq!(fee("joined").quantity, "21/31");
    assert!(
        fee("joined")
            .description
            .contains("active 2026-10-11 to 2026-10-31, 21 of 31 days"),
        "{}",
        fee("joined").description
    );
    // 499 x 20 / 31 = 321.935... -> 321.94
    assert_eq!(fee("left").amount_minor, 32194);
    assert!(fee("left").description.contains("to 2026-10-20, 20 of 31"));
    assert_eq!(fee("left_late").amount_minor, 33803);
    let invoiced: Vec<&str> = b.summary.iter().map(|r| r.customer_id.as_str()).collect();
    assert_eq!(invoiced, ["full", "joined", "left", "left_late"]);
}

#[test]
fn allowance_is_inclusive_and_overage_bills_every_line_at_cost_plus_20_percent() {
    let (_, b) = bill(&[
        customer("at", "pro", "EUR", "2025-01-01 00:00:00", None, None),
        customer("over", "pro", "EUR", "2025-01-01 00:00:00", None, None),
        customer("usd", "pro", "USD", "2025-01-01 00:00:00", None, None),
        // exactly 1,000,000 tokens over two models: included, billed 0
        usage("at", "gpt-4o", 600_000, 0, "1.50"),
        usage("at", "gpt-5", 0, 400_000, "4.00"),
        // one more token: every API line bills cost x 1.20
        usage("over", "gpt-4o", 600_000, 0, "1.50"),
        usage("over", "gpt-5", 0, 400_001, "4.00001"),
        usage("usd", "gpt-5", 0, 2_000_000, "10.00"),
    ]);
    for l in lines(&b, "at", "api_usage") {
        assert_eq!(l.amount_minor, 0, "{l:?}");
        assert!(
            l.rule
                .starts_with("included: 1000000 tokens <= allowance 1000000")
        );
        assert!(l.cost.unwrap() > rust_decimal::Decimal::ZERO);
    }
    assert_eq!(total(&b, "at"), 49900);
    let over = lines(&b, "over", "api_usage");
    // 1.50 x 1.2 x 0.96052252 = 1.7289405... -> 1.73 EUR
    assert_eq!(over[0].amount_minor, 173);
    // 4.00001 x 1.2 x 0.96052252 = 4.6105196... -> 4.61 EUR
    assert_eq!(over[1].amount_minor, 461);
    assert!(
        over[1]
            .rule
            .starts_with("overage: 1000001 tokens > allowance 1000000, cost x 1.2")
    );
    assert_eq!(total(&b, "over"), 49900 + 173 + 461);
    // USD customer: the EUR fee at 1.0411 (519.5089 -> 519.51), cost in USD as is
    let usd = &b.summary.iter().find(|r| r.customer_id == "usd").unwrap();
    assert_eq!(usd.fee_minor, 51951);
    assert_eq!(usd.api_minor, 1200);
    assert_eq!(
        lines(&b, "usd", "subscription")[0]
            .fx_rate
            .unwrap()
            .to_string(),
        "1.04110000"
    );
}

#[test]
fn reseller_bills_cost_times_markup_without_allowance() {
    let (_, b) = bill(&[
        customer(
            "res",
            "starter",
            "USD",
            "2025-01-01 00:00:00",
            None,
            Some("1.3"),
        ),
        usage("res", "gpt-4o", 10, 10, "0.10"),
        usage("res", "gpt-5", 10, 10, "2.345"),
    ]);
    let api = lines(&b, "res", "api_usage");
    // far under the allowance, still billed: 0.10 x 1.3 = 0.13; 2.345 x 1.3 = 3.0485 -> 3.05
    assert_eq!(api[0].amount_minor, 13);
    assert_eq!(api[1].amount_minor, 305);
    assert_eq!(api[0].rule, "reseller: cost x 1.3");
    let s = &b.summary[0];
    assert_eq!(s.rule, "reseller");
    assert_eq!(s.provider_cost_minor, 245);
    assert_eq!(s.margin_minor, s.total_minor - 245);
}

#[test]
fn fx_converts_at_the_printed_rate_and_zero_decimal_currencies_round_to_units() {
    let (_, b) = bill(&[
        customer("eur", "pro", "EUR", "2025-01-01 00:00:00", None, Some("1")),
        customer("jpy", "pro", "JPY", "2025-01-01 00:00:00", None, Some("1")),
        usage("eur", "gpt-5", 1, 1, "100"),
        usage("jpy", "gpt-5", 1, 1, "100"),
    ]);
    let eur = lines(&b, "eur", "api_usage")[0];
    assert_eq!(eur.fx_rate.unwrap().to_string(), "0.96052252");
    assert_eq!(eur.amount_minor, 9605); // 96.052252 -> 96.05
    let jpy = lines(&b, "jpy", "api_usage")[0];
    assert_eq!(jpy.amount_minor, 15416); // 100 x 154.16 = 15416 yen
    assert_eq!(jpy.decimals, 0);
    assert_eq!(lines(&b, "jpy", "subscription")[0].amount_minor, 80090); // 499 x 160.5 = 80089.5 -> 80090
}

#[test]
fn each_line_is_rounded_once_and_the_total_is_the_sum_of_rounded_lines() {
    // 12 lines of 0.004 USD and one of 0.005 USD, at cost (markup 1, USD):
    // each 0.004 rounds to 0.00 and 0.005 (half) away from zero to 0.01.
    let mut setup = vec![customer(
        "c",
        "pro",
        "USD",
        "2025-01-01 00:00:00",
        None,
        Some("1"),
    )];
    for i in 0..12 {
        setup.push(usage("c", &format!("m{i:02}"), 1, 1, "0.004"));
    }
    setup.push(usage("c", "m99", 1, 1, "0.005"));
    let (_, b) = bill(&setup);
    let api = lines(&b, "c", "api_usage");
    assert_eq!(api.len(), 13);
    assert!(api[..12].iter().all(|l| l.amount_minor == 0));
    assert_eq!(api[12].amount_minor, 1);
    let s = &b.summary[0];
    assert_eq!(s.api_minor, 1, "not round(0.053) = 5 cents");
    assert_eq!(s.total_minor, 51951 + 1);
    assert_eq!(
        s.total_minor,
        b.lines.iter().map(|l| l.amount_minor).sum::<i64>()
    );
    // the raw cost, rounded once on its own, is what the margin uses
    assert_eq!(s.provider_cost_minor, 5);
}

#[test]
fn a_customer_with_no_usage_pays_the_fee_only() {
    let (_, b) = bill(&[customer(
        "quiet",
        "starter",
        "EUR",
        "2025-01-01 00:00:00",
        None,
        None,
    )]);
    assert_eq!(b.lines.len(), 1);
    assert_eq!(b.lines[0].line_type, "subscription");
    assert_eq!(b.summary[0].total_minor, 29900);
    assert_eq!(b.summary[0].rule, "included");
    assert!(b.events.is_empty());
}

#[test]
fn usage_nobody_owns_is_reported_not_billed() {
    let (_, b) = bill(&[
        customer("c", "pro", "EUR", "2025-01-01 00:00:00", None, None),
        usage("", "gpt-4o", 5, 5, "0.25"),
        usage("ghost", "gpt-5", 5, 5, "0.50"),
        "INSERT INTO compute_monthly VALUES (NULL, 'vm-orphan', 7200);".into(),
    ]);
    let unbilled: Vec<(&str, &str)> = b
        .unbilled
        .iter()
        .map(|u| (u.customer_id.as_str(), u.vm_id.as_str()))
        .collect();
    assert_eq!(
        unbilled,
        [("", "vm-gpt-4o"), ("", "vm-orphan"), ("ghost", "vm-gpt-5")]
    );
    assert_eq!(b.unbilled[2].cost.to_string(), "0.500000000000000000");
    assert_eq!(b.unbilled[1].compute_seconds, 7200);
    assert_eq!(b.summary.len(), 1);
}

#[test]
fn unpriced_usage_gets_its_own_line_and_compute_bills_hours() {
    let (_, b) = bill(&[
        customer("c", "pro", "EUR", "2025-01-01 00:00:00", None, None),
        "INSERT INTO usage_monthly VALUES ('c', 'vm1', 'google', 'gemini-1.5-pro', 10, 100, 50, 0, 20, 0, 0.01, 4, 70);".into(),
        "INSERT INTO usage_monthly VALUES ('c', 'vm1', 'google', 'gemini-9', 3, 30, 0, 0, 3, 0, NULL, 3, 33);".into(),
        "INSERT INTO compute_monthly VALUES ('c', 'vm1', 5400), ('c', 'vm2', 1800);".into(),
    ]);
    let unpriced = lines(&b, "c", "unpriced");
    assert_eq!(unpriced.len(), 2);
    assert_eq!(unpriced[0].requests, Some(4));
    assert_eq!(unpriced[0].quantity, "70");
    assert_eq!(unpriced[0].amount_minor, 0);
    // gemini-9 had no priced request: no API line, only the unpriced one
    let api = lines(&b, "c", "api_usage");
    assert_eq!(api.len(), 1);
    assert_eq!(api[0].requests, Some(6));
    assert_eq!(b.summary[0].unpriced_requests, 7);
    // 2 hours at 0.05 EUR = 0.10 EUR
    let compute = lines(&b, "c", "compute")[0];
    assert_eq!(compute.quantity, "2.0000");
    assert_eq!(compute.amount_minor, 10);
}

/// The API line of a model with unpriced events carried every token of the
/// model while its quantity and requests counted the priced events only.
#[test]
fn invoice_token_columns_disagree_with_the_line() {
    let (_, b) = bill(&[
        customer("c", "pro", "EUR", "2025-01-01 00:00:00", None, None),
        // 10 requests, 4 of them unpriced; tokens: 100 input, 50 cache read,
        // 5 cache write, 20 output (8 reasoning)
        "INSERT INTO usage_monthly VALUES ('c', 'vm1', 'google', 'gemini-1.5-pro', 10, 100, 50, 5, 20, 8, 0.01, 4, 70);".into(),
        // the unpriced share by kind: 40 + 20 + 0 + 10 = 70 (3 reasoning)
        "INSERT INTO usage_unpriced_monthly VALUES ('c', 'vm1', 'google', 'gemini-1.5-pro', 40, 20, 0, 10, 3);".into(),
    ]);
    let tokens = |l: &InvoiceLine| -> [i64; 5] { l.tokens.map(|t| t.unwrap()) };
    let api = lines(&b, "c", "api_usage")[0];
    assert_eq!(api.requests, Some(6));
    assert_eq!(api.quantity, "105");
    assert_eq!(tokens(api), [60, 30, 5, 10, 5]);
    let unpriced = lines(&b, "c", "unpriced")[0];
    assert_eq!(unpriced.requests, Some(4));
    assert_eq!(unpriced.quantity, "70");
    assert_eq!(tokens(unpriced), [40, 20, 0, 10, 3]);
    // each line's quantity is the sum of its own token columns
    for l in [api, unpriced] {
        let t = tokens(l);
        assert_eq!(l.quantity, (t[0] + t[1] + t[2] + t[3]).to_string());
    }
    // the allowance still counts every token
    assert_eq!(b.summary[0].tokens, 175);
}

/// The plan fee alone (499 EUR against a 100 EUR limit, no usage) is not
/// over a limit on usage charges, as the nightly's limit alerts count it.
#[test]
fn the_plan_fee_alone_is_not_over_the_monthly_limit() {
    let (_, b) = bill(&[
        "INSERT INTO customers VALUES ('c', 'C', 'pro', 'EUR', NULL, TIMESTAMP '2025-01-01', NULL, 100, NULL);".into(),
    ]);
    let s = &b.summary[0];
    assert_eq!(s.total_minor, 49900);
    assert!(!s.limit_exceeded);
    assert_eq!(s.over_limit_minor, 0);
}

#[test]
fn monthly_limit_is_flagged_not_capped() {
    let (_, b) = bill(&[
        // a limit of 10 EUR on usage charges (the 499 EUR fee not counted)
        "INSERT INTO customers VALUES ('c', 'C', 'pro', 'EUR', NULL, TIMESTAMP '2025-01-01', NULL, 10, NULL);".into(),
        usage("c", "gpt-5", 0, 2_000_000, "10"),
        "INSERT INTO usage_daily VALUES (DATE '2026-10-03', 'c', 1, 0, 0, 0, 2000000, 10);".into(),
    ]);
    let s = &b.summary[0];
    assert_eq!(s.total_minor, 49900 + 1153); // 10 x 1.2 x 0.96052252 = 11.526...
    assert!(s.limit_exceeded);
    assert_eq!(s.over_limit_minor, 153);
    // no Stripe id: the event is computed, marked, and left out of the Stripe files
    assert_eq!(b.events.len(), 2);
    assert!(b.events.iter().all(|e| e.stripe_customer_id.is_none()));
    assert!(super::render::meter_events_jsonl(&b.events).is_empty());
}

#[test]
fn meter_events_are_daily_whole_numbers_with_stable_identifiers() {
    let (_, b) = bill(&[
        customer("c", "pro", "EUR", "2025-01-01 00:00:00", None, None),
        "INSERT INTO usage_daily VALUES (DATE '2026-10-03', 'c', 2, 10, 5, 1, 4, 0.01), (DATE '2026-10-03', 'c', 1, 1, 0, 0, 0, 0.0004), (DATE '2026-10-04', 'c', 0, 0, 0, 0, 0, NULL);".into(),
        "INSERT INTO compute_daily VALUES (DATE '2026-10-03', 'c', 89), (DATE '2026-10-03', 'c', 1), (DATE '2026-11-01', 'c', 600);".into(),
        "INSERT INTO activity_daily VALUES (DATE '2026-10-03', 'c', 'command', 3), (DATE '2026-10-03', 'c', 'pattern', 9);".into(),
    ]);
    let events: Vec<(String, &str, i64, &str, i64)> = b
        .events
        .iter()
        .map(|e| {
            (
                e.date.clone(),
                e.event_name.as_str(),
                e.value,
                e.identifier.as_str(),
                e.timestamp,
            )
        })
        .collect();
    let noon = 1_790_942_400 + 86_400; // 2026-10-03T12:00:00Z
    assert_eq!(
        events,
        [
            (
                "2026-10-03".into(),
                "commands_run",
                3,
                "c-commands_run-20261003",
                noon
            ),
            (
                "2026-10-03".into(),
                "compute_minutes",
                2,
                "c-compute_minutes-20261003",
                noon
            ),
            (
                "2026-10-03".into(),
                "llm_tokens",
                21,
                "c-llm_tokens-20261003",
                noon
            ),
            // 0.0104 USD x 0.96052252 = 0.00998... EUR: 1 cent
            (
                "2026-10-03".into(),
                "provider_cost_cents",
                1,
                "c-provider_cost_cents-20261003",
                noon
            ),
        ]
    );
}

#[test]
fn long_identifiers_are_hashed_to_at_most_100_characters() {
    let id = "c".repeat(64);
    let (_, b) = bill(&[
        customer(&id, "pro", "EUR", "2025-01-01 00:00:00", None, None),
        format!("INSERT INTO usage_daily VALUES (DATE '2026-10-03', '{id}', 1, 1, 0, 0, 0, NULL);"),
        "DELETE FROM meters WHERE measures <> 'tokens';".into(),
        "UPDATE meters SET event_name = 'a_very_long_meter_event_name_for_llm_tokens' WHERE measures = 'tokens';".into(),
    ]);
    let ident = &b.events[0].identifier;
    assert!(ident.len() <= 100 && ident.starts_with("mtr-"), "{ident}");
}

#[test]
fn no_billing_table_has_a_float_column() {
    let (conn, _) = bill(&[
        customer("c", "pro", "EUR", "2025-01-01 00:00:00", None, None),
        usage("c", "gpt-5", 1, 1, "1"),
    ]);
    let tables: Vec<String> = conn
        .prepare("SELECT table_name FROM information_schema.tables ORDER BY table_name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<duckdb::Result<_>>()
        .unwrap();
    for t in sql::OUTPUT_TABLES {
        assert!(tables.iter().any(|x| x == t), "{t} missing from {tables:?}");
    }
    let mut checked = 0;
    for t in &tables {
        for (column, ty) in sql::column_types(&conn, t).unwrap() {
            checked += 1;
            assert!(
                !["DOUBLE", "FLOAT", "REAL"].iter().any(|f| ty.contains(f)),
                "{t}.{column} is {ty}"
            );
        }
    }
    assert!(checked > 100, "{checked}");
    // The guard itself: a DECIMAL division does produce a DOUBLE here.
    conn.execute_batch("CREATE TABLE probe AS SELECT CAST(1 AS DECIMAL(18, 2)) / 3 AS x")
        .unwrap();
    assert_eq!(sql::column_types(&conn, "probe").unwrap()[0].1, "DOUBLE");
}
