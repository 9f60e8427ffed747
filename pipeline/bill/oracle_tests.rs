//! Contracts against an oracle: generated customers, usage and contracts
//! (terms with commitments and tiers, discounts, prepaid credit) are billed
//! by the billing SQL and by [`oracle`], a plain-Rust reading of
//! `schemas/contracts.md` written apart from the SQL. Every invoice must
//! agree to the minor unit, line type by line type, and every grant's
//! closing balance too.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{Days, NaiveDate};
use duckdb::Connection;
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::credits::{Balances, Closing, Openings};
use super::inputs::{self, ContractInputs};
use super::{Billing, read_billing, sql};
use crate::model::contracts::Contracts;
use crate::model::pricing::Pricing;
use crate::model::registry::Registry;

const BASE: &str = "
INSERT INTO billing_period VALUES ('2026-10', DATE '2026-10-01', DATE '2026-11-01', 31, 1, 'USD');
INSERT INTO currencies VALUES ('EUR', 2, 100), ('USD', 2, 100);
INSERT INTO plans VALUES
  ('pro', 499, 'EUR', 1000000, 0.05, 1.2),
  ('starter', 299, 'EUR', 1000000, 0, 1.2);
INSERT INTO fx_rates VALUES
  ('EUR', 'EUR', 1), ('USD', 'USD', 1), ('EUR', 'USD', 1.0411), ('USD', 'EUR', 0.96052252);
";

const DAYS: i64 = 31;

fn day(n: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 1).unwrap() + chrono::TimeDelta::days(n)
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// The FX rates of BASE: 1 `from` = rate `to`.
fn rate(from: &str, to: &str) -> Decimal {
    match (from, to) {
        (a, b) if a == b => Decimal::ONE,
        ("EUR", "USD") => dec("1.0411"),
        ("USD", "EUR") => dec("0.96052252"),
        _ => unreachable!(),
    }
}

/// `num / den` rounded to a whole number, half away from zero, exactly.
fn round_ratio(num: Decimal, den: i128) -> i128 {
    let (m, s) = (num.mantissa(), num.scale());
    let den = den * 10i128.pow(s);
    let (q, r) = (m.abs() / den, m.abs() % den);
    let q = if 2 * r >= den { q + 1 } else { q };
    q * m.signum()
}

fn round(x: Decimal) -> i128 {
    round_ratio(x, 1)
}

/// A small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Debug, Clone)]
struct Customer {
    id: String,
    plan: &'static str,
    currency: &'static str,
    created: i64,
    cancelled: Option<i64>,
    markup: Option<Decimal>,
}

/// One day's usage of one model.
#[derive(Debug, Clone)]
struct Usage {
    customer: usize,
    day: i64,
    model: &'static str,
    input: i64,
    output: i64,
    cost: Decimal,
}

#[derive(Debug, Clone)]
struct Scenario {
    customers: Vec<Customer>,
    usage: Vec<Usage>,
    compute: Vec<(usize, i64, i64)>,
    contracts: String,
    openings: Balances,
}

fn date_text(d: NaiveDate) -> String {
    d.to_string()
}

fn generate(seed: u64) -> Scenario {
    let mut r = Rng(seed | 1);
    let n = 1 + r.below(5) as usize;
    let mut customers = Vec::new();
    for i in 0..n {
        let created = if r.chance(70) {
            -400
        } else {
            r.below(31) as i64
        };
        let cancelled = (r.chance(20)).then(|| created.max(0) + 1 + r.below(30) as i64);
        customers.push(Customer {
            id: format!("c{i}"),
            plan: r.pick(&["pro", "starter"]),
            currency: r.pick(&["EUR", "USD"]),
            created,
            cancelled: cancelled.filter(|c| *c <= 40),
            markup: r.chance(25).then(|| dec("1.3")),
        });
    }
    let mut usage = Vec::new();
    let mut compute = Vec::new();
    for (c, _) in customers.iter().enumerate() {
        let heavy = r.chance(60);
        for d in 0..DAYS {
            for model in ["m1", "m2"] {
                if r.chance(35) {
                    let scale = if heavy { 400_000 } else { 20_000 };
                    usage.push(Usage {
                        customer: c,
                        day: d,
                        model,
                        input: r.below(scale) as i64,
                        output: r.below(scale / 4) as i64,
                        cost: Decimal::new(r.below(40_000_000) as i64, 6),
                    });
                }
            }
            if r.chance(30) {
                compute.push((c, d, r.below(86_400) as i64));
            }
        }
    }
    let mut toml = String::new();
    let mut openings = Balances::new();
    for c in &customers {
        let id = &c.id;
        let terms_days: Vec<i64> = match r.below(4) {
            0 => vec![],
            1 => vec![-30],
            2 => vec![0, 1 + r.below(29) as i64],
            _ => vec![1 + r.below(29) as i64],
        };
        for from in terms_days {
            toml += &format!("[[terms]]\ncustomer_id = \"{id}\"\nfrom = {}\n", day(from));
            // A commitment, tiers, or both.
            let kind = r.below(3);
            if kind != 1 {
                toml += &format!(
                    "commitment = \"{}\"\n",
                    Decimal::new(r.below(80_000) as i64, 2)
                );
            }
            if kind != 0 {
                let tokens = r.chance(50);
                let bounds: [i64; 3] = if tokens {
                    [0, 1_000_000, 3_000_000]
                } else {
                    [0, 40, 150]
                };
                let steps = 1 + r.below(3) as usize;
                let list: Vec<String> = (0..steps)
                    .map(|i| {
                        format!(
                            "{{ from = {}, factor = \"{}\" }}",
                            bounds[i],
                            Decimal::new(100 + r.below(60) as i64, 2)
                        )
                    })
                    .collect();
                toml += &format!(
                    "tiers = {{ measure = \"{}\", mode = \"{}\", steps = [{}] }}\n",
                    if tokens { "tokens" } else { "api_charge" },
                    r.pick(&["graduated", "volume"]),
                    list.join(", ")
                );
            }
            toml.push('\n');
        }
        // Discounts that do not stack: distinct line types, or one invoice
        // discount alone.
        let scopes: &[&str] = match r.below(4) {
            0 => &[],
            1 => &["invoice"],
            2 => &["api_usage", "subscription"],
            _ => &["compute", "api_usage", "subscription"],
        };
        for scope in scopes {
            if !r.chance(70) {
                continue;
            }
            let from = r.below(45) as i64 - 10;
            toml += &format!(
                "[[discounts]]\ncustomer_id = \"{id}\"\napplies_to = \"{scope}\"\nfrom = {}\n",
                day(from)
            );
            if r.chance(50) {
                toml += &format!("until = {}\n", day(from + 1 + r.below(25) as i64));
            }
            if r.chance(50) {
                toml += &format!(
                    "percent = \"{}\"\n\n",
                    Decimal::new(r.below(5000) as i64 + 1, 2)
                );
            } else {
                toml += &format!(
                    "amount = \"{}\"\n\n",
                    Decimal::new(r.below(20_000) as i64 + 1, 2)
                );
            }
        }
        for g in 0..r.below(3) {
            let granted = r.below(50) as i64 - 25;
            let currency = r.pick(&["EUR", "USD"]);
            let amount = Decimal::new(1000 + r.below(60_000) as i64, 2);
            toml += &format!(
                "[[credits]]\ncustomer_id = \"{id}\"\ngrant_id = \"g{g}\"\namount = \"{amount}\"\n\
                 currency = \"{currency}\"\ngranted = {}\npriority = {}\n",
                day(granted),
                r.below(2)
            );
            if r.chance(50) {
                toml += &format!("expires = {}\n", day(granted + 1 + r.below(70) as i64));
            }
            toml.push('\n');
            if granted < 0 && r.chance(60) {
                let left = Decimal::new(r.below(amount.mantissa() as u64 + 1) as i64, 2);
                openings.insert(
                    (id.clone(), format!("g{g}")),
                    Closing {
                        currency: currency.to_string(),
                        closing: left,
                        decimals: 2,
                        amount,
                        granted: day(granted).to_string(),
                        expires: None,
                        priority: 0,
                        burn_order: 0,
                    },
                );
            }
        }
    }
    Scenario {
        customers,
        usage,
        compute,
        contracts: toml,
        openings,
    }
}

fn parse_contracts(text: &str) -> Contracts {
    let (contracts, problems) = Contracts::parse(text, Path::new("contracts.toml")).unwrap();
    assert!(problems.is_empty(), "{problems:?}\n{text}");
    contracts
}

/// Bills a scenario with the billing SQL.
fn bill(s: &Scenario, contracts: &Contracts) -> Billing {
    let conn = Connection::open_in_memory().unwrap();
    sql::run_file(&conn, "inputs.sql").unwrap();
    conn.execute_batch(BASE).unwrap();
    let mut csv = String::from(
        "customer_id,name,email,tier,vm_ids,currency,stripe_customer_id,status,created_at,cancelled_at\n",
    );
    let mut setup = Vec::new();
    for c in &s.customers {
        let cancelled = c.cancelled.map(day);
        csv += &format!(
            "{},N,e@x,{},,{},cus_{},active,{},{}\n",
            c.id,
            c.plan,
            c.currency,
            c.id,
            day(c.created),
            cancelled.map(date_text).unwrap_or_default()
        );
        setup.push(format!(
            "INSERT INTO customers VALUES ('{}', 'N', '{}', '{}', 'cus_{}', TIMESTAMP '{}', {}, NULL, {});",
            c.id,
            c.plan,
            c.currency,
            c.id,
            day(c.created),
            cancelled.map_or("NULL".into(), |d| format!("TIMESTAMP '{d}'")),
            c.markup.map_or("NULL".into(), |m| m.to_string())
        ));
    }
    let mut monthly: BTreeMap<(usize, &str), (i64, i64, i64, Decimal)> = BTreeMap::new();
    let (mut daily, mut daily_lines, mut compute_daily) = (Vec::new(), Vec::new(), Vec::new());
    for u in &s.usage {
        let m = monthly.entry((u.customer, u.model)).or_default();
        m.0 += 1;
        m.1 += u.input;
        m.2 += u.output;
        m.3 += u.cost;
        let id = &s.customers[u.customer].id;
        daily.push(format!(
            "(DATE '{}', '{id}', 1, {}, 0, 0, {}, {})",
            day(u.day),
            u.input,
            u.output,
            u.cost
        ));
        if contracts.has_parts(id) {
            daily_lines.push(format!(
                "(DATE '{}', '{id}', 'openai', '{}', 1, {}, 0, 0, {}, 0, {}, 0, 0, 0, 0, 0, 0)",
                day(u.day),
                u.model,
                u.input,
                u.output,
                u.cost
            ));
        }
    }
    for ((c, model), (requests, input, output, cost)) in &monthly {
        setup.push(format!(
            "INSERT INTO usage_monthly VALUES ('{}', 'vm-{}', 'openai', '{model}', {requests}, {input}, 0, 0, {output}, 0, {cost}, 0, 0);",
            s.customers[*c].id,
            s.customers[*c].id
        ));
    }
    let mut seconds: BTreeMap<usize, i64> = BTreeMap::new();
    for (c, d, secs) in &s.compute {
        *seconds.entry(*c).or_default() += secs;
        compute_daily.push(format!(
            "(DATE '{}', '{}', {secs})",
            day(*d),
            s.customers[*c].id
        ));
    }
    for (table, rows) in [
        ("usage_daily", &daily),
        ("usage_daily_lines", &daily_lines),
        ("compute_daily", &compute_daily),
    ] {
        if !rows.is_empty() {
            setup.push(format!("INSERT INTO {table} VALUES {};", rows.join(", ")));
        }
    }
    for (c, secs) in &seconds {
        let id = &s.customers[*c].id;
        setup.push(format!(
            "INSERT INTO compute_monthly VALUES ('{id}', 'vm-{id}', {secs});"
        ));
    }
    conn.execute_batch(&setup.join("\n")).unwrap();
    let registry = Registry::from_customers_csv(&csv, Path::new("customers.csv")).unwrap();
    let admitted: Vec<&Arc<crate::model::registry::Customer>> = registry.customers.iter().collect();
    let pricing = Pricing::parse(include_str!("../../pricing.toml")).unwrap();
    let contracted = ContractInputs {
        contracts: contracts.clone(),
        openings: Openings {
            balances: s.openings.clone(),
            source: "2026-09 rev-1".into(),
            ..Openings::default()
        },
    };
    let mut fx = BTreeMap::new();
    inputs::load_contracts(
        &conn,
        &contracted,
        &admitted,
        &pricing,
        day(0),
        day(DAYS),
        &mut fx,
    )
    .unwrap();
    sql::run_billing(&conn).unwrap();
    read_billing(&conn, "2026-10").unwrap()
}

/// What the oracle bills a customer: amounts by line type (summed), the
/// total, and each grant's closing balance in its currency's minor units.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    by_type: BTreeMap<String, i128>,
    total: i128,
    closing: BTreeMap<String, i128>,
}

/// schemas/contracts.md in plain Rust.
fn oracle(s: &Scenario, contracts: &Contracts) -> BTreeMap<String, Expected> {
    let start = day(0);
    let end = day(DAYS);
    let mut out = BTreeMap::new();
    for (ci, c) in s.customers.iter().enumerate() {
        let (fee, plan_rate, included) = match c.plan {
            "pro" => (dec("499"), dec("0.05"), 1_000_000i64),
            _ => (dec("299"), Decimal::ZERO, 1_000_000),
        };
        let plan_fx = rate("EUR", c.currency);
        let cost_fx = rate("USD", c.currency);
        let from = day(c.created).max(start);
        let until = c.cancelled.map(day).unwrap_or(end).min(end);
        let active = |a: NaiveDate, b: NaiveDate| (b.min(until) - a.max(from)).num_days().max(0);
        let active_days = active(start, end);
        let usage: Vec<&Usage> = s.usage.iter().filter(|u| u.customer == ci).collect();
        let compute: Vec<(i64, i64)> = s
            .compute
            .iter()
            .filter(|x| x.0 == ci)
            .map(|x| (x.1, x.2))
            .collect();
        if active_days == 0 && usage.is_empty() && compute.is_empty() {
            continue;
        }
        let tokens: i64 = usage.iter().map(|u| u.input + u.output).sum();
        let rule_factor = match c.markup {
            Some(m) => m,
            None if tokens <= included => Decimal::ZERO,
            None => dec("1.2"),
        };
        let mut lines: Vec<(&str, Option<usize>, i128, Option<String>)> = Vec::new();
        let fee_minor = round_ratio(
            fee * plan_fx * Decimal::ONE_HUNDRED * Decimal::from(active_days),
            DAYS as i128,
        );
        lines.push(("subscription", None, fee_minor, None));

        // Parts: cut where terms change (to different terms) and where a
        // discount starts or ends.
        let terms: Vec<_> = contracts
            .terms
            .iter()
            .filter(|t| t.customer_id == c.id)
            .collect();
        let discounts: Vec<_> = contracts
            .discounts
            .iter()
            .filter(|d| d.customer_id == c.id)
            .collect();
        let in_force = |d: NaiveDate| terms.iter().rfind(|t| t.from <= d).copied();
        let contract = !terms.is_empty() || !discounts.is_empty();
        let mut cuts = vec![start, end];
        for t in &terms {
            let before = in_force(t.from - Days::new(1));
            let same = before.is_some_and(|b| b.commitment == t.commitment && b.tiers == t.tiers);
            if !same && t.from > start && t.from < end {
                cuts.push(t.from);
            }
        }
        for d in &discounts {
            for x in [Some(d.from), d.until].into_iter().flatten() {
                if x > start && x < end {
                    cuts.push(x);
                }
            }
        }
        cuts.sort();
        cuts.dedup();
        let parts: Vec<(NaiveDate, NaiveDate)> = if contract {
            cuts.windows(2).map(|w| (w[0], w[1])).collect()
        } else {
            vec![(start, end)]
        };
        let part_of = |d: NaiveDate| parts.iter().position(|p| d >= p.0 && d < p.1).unwrap();

        // API lines: by part, model and the factor each day bills at.
        let mut by_day: BTreeMap<i64, (i64, Decimal)> = BTreeMap::new();
        for u in &usage {
            let e = by_day.entry(u.day).or_default();
            e.0 += u.input + u.output;
            e.1 += u.cost * cost_fx;
        }
        let month_tokens: i64 = by_day.values().map(|v| v.0).sum();
        let month_charge: Decimal = by_day.values().map(|v| v.1).sum();
        let factor_of = |d: i64| -> (Option<usize>, Decimal) {
            if !contract {
                return (None, rule_factor);
            }
            let Some(tiers) = in_force(day(d)).and_then(|t| t.tiers.as_ref()) else {
                return (None, rule_factor);
            };
            let before = by_day.range(..d);
            let measure = match (tiers.mode, tiers.measure) {
                (
                    crate::model::contracts::TierMode::Graduated,
                    crate::model::contracts::TierMeasure::Tokens,
                ) => Decimal::from(before.map(|x| x.1.0).sum::<i64>()),
                (crate::model::contracts::TierMode::Graduated, _) => before.map(|x| x.1.1).sum(),
                (_, crate::model::contracts::TierMeasure::Tokens) => Decimal::from(month_tokens),
                _ => month_charge,
            };
            let i = tiers.steps.iter().rposition(|s| s.from <= measure).unwrap();
            (Some(i), tiers.steps[i].factor)
        };
        let mut api: BTreeMap<(usize, &str, Option<usize>), (Decimal, Decimal)> = BTreeMap::new();
        for u in &usage {
            let (tier, factor) = factor_of(u.day);
            let e = api
                .entry((part_of(day(u.day)), u.model, tier))
                .or_insert((Decimal::ZERO, factor));
            e.0 += u.cost;
        }
        for ((part, _, _), (cost, factor)) in &api {
            let p = contract.then_some(*part);
            lines.push((
                "api_usage",
                p,
                round(*cost * *factor * cost_fx * Decimal::ONE_HUNDRED),
                None,
            ));
        }
        let mut secs: BTreeMap<usize, i64> = BTreeMap::new();
        for (d, x) in &compute {
            *secs.entry(part_of(day(*d))).or_default() += x;
        }
        for (part, x) in secs {
            if x > 0 {
                let p = contract.then_some(part);
                lines.push((
                    "compute",
                    p,
                    round_ratio(
                        plan_rate * plan_fx * Decimal::ONE_HUNDRED * Decimal::from(x),
                        3600,
                    ),
                    None,
                ));
            }
        }
        let sum_of =
            |lines: &[(&str, Option<usize>, i128, Option<String>)], t: &str, p: usize| -> i128 {
                lines
                    .iter()
                    .filter(|l| l.0 == t && l.1 == Some(p))
                    .map(|l| l.2)
                    .sum()
            };
        // Discounts per part they cover.
        let den = active_days.max(1) as i128;
        let mut discount_lines = Vec::new();
        for d in &discounts {
            for (pi, (a, b)) in parts.iter().enumerate() {
                if *a < d.from || d.until.is_some_and(|u| *b > u) {
                    continue;
                }
                let pd = active(*a, *b) as i128;
                let (api_m, compute_m) = (
                    sum_of(&lines, "api_usage", pi),
                    sum_of(&lines, "compute", pi),
                );
                use crate::model::contracts::DiscountScope::*;
                let base_num = match d.applies_to {
                    Subscription => fee_minor * pd,
                    ApiUsage => api_m * den,
                    Compute => compute_m * den,
                    Invoice => fee_minor * pd + (api_m + compute_m) * den,
                };
                if base_num <= 0 {
                    continue;
                }
                let off = match d.value {
                    crate::model::contracts::DiscountValue::Percent(p) => {
                        round_ratio(Decimal::from_i128_with_scale(base_num, 0) * p, 100 * den)
                    }
                    crate::model::contracts::DiscountValue::Amount(x) => round_ratio(
                        x * Decimal::ONE_HUNDRED * Decimal::from_i128_with_scale(pd, 0),
                        DAYS as i128,
                    )
                    .min(round_ratio(Decimal::from_i128_with_scale(base_num, 0), den)),
                };
                let usage_scope = matches!(d.applies_to, ApiUsage | Compute);
                discount_lines.push((
                    "discount",
                    Some(pi),
                    -off,
                    usage_scope.then(|| "usage".to_string()),
                ));
            }
        }
        lines.extend(discount_lines);
        // Commitments per part.
        let mut commitment_lines = Vec::new();
        for (pi, (a, b)) in parts.iter().enumerate() {
            let Some(commitment) = in_force(*a).and_then(|t| t.commitment) else {
                continue;
            };
            if !contract {
                continue;
            }
            let pd = active(*a, *b);
            if pd == 0 {
                continue;
            }
            let committed = round_ratio(
                commitment * Decimal::ONE_HUNDRED * Decimal::from(pd),
                DAYS as i128,
            );
            let used = sum_of(&lines, "api_usage", pi)
                + sum_of(&lines, "compute", pi)
                + lines
                    .iter()
                    .filter(|l| l.0 == "discount" && l.1 == Some(pi) && l.3.is_some())
                    .map(|l| l.2)
                    .sum::<i128>();
            commitment_lines.push(("commitment", Some(pi), (committed - used).max(0), None));
        }
        lines.extend(commitment_lines);
        // Credits.
        let total: i128 = lines.iter().map(|l| l.2).sum();
        let usage_total: i128 = lines
            .iter()
            .filter(|l| matches!(l.0, "api_usage" | "compute" | "commitment") || l.3.is_some())
            .map(|l| l.2)
            .sum();
        let mut payable = usage_total.min(total).max(0);
        let mut grants: Vec<_> = contracts
            .credits
            .iter()
            .filter(|g| g.customer_id == c.id && g.granted < end)
            .collect();
        grants.sort_by_key(|g| {
            (
                g.priority,
                g.expires.is_none(),
                g.expires,
                g.granted,
                g.grant_id.clone(),
            )
        });
        let mut closing = BTreeMap::new();
        for g in grants {
            let opening = s
                .openings
                .get(&(c.id.clone(), g.grant_id.clone()))
                .map_or(g.amount, |o| o.closing);
            let opening_minor = (opening * Decimal::ONE_HUNDRED).mantissa()
                / 10i128.pow((opening * Decimal::ONE_HUNDRED).scale());
            if g.expires.is_some_and(|e| e < end) {
                closing.insert(g.grant_id.clone(), 0);
                continue;
            }
            let r = rate(&g.currency, c.currency);
            let available = (Decimal::from_i128_with_scale(opening_minor, 0) * r).floor();
            let available = available.mantissa() / 10i128.pow(available.scale());
            let applied = payable.min(available);
            payable -= applied;
            let back = round_ratio(
                Decimal::from_i128_with_scale(applied * 100_000_000, 0),
                (r * dec("100000000")).trunc().mantissa()
                    / 10i128.pow((r * dec("100000000")).trunc().scale()),
            )
            .min(opening_minor);
            closing.insert(g.grant_id.clone(), opening_minor - back);
            if applied > 0 {
                lines.push(("credit", None, -applied, None));
            }
        }
        let mut e = Expected {
            closing,
            ..Expected::default()
        };
        for l in &lines {
            *e.by_type.entry(l.0.to_string()).or_default() += l.2;
            e.total += l.2;
        }
        e.by_type.retain(|_, v| *v != 0);
        out.insert(c.id.clone(), e);
    }
    out
}

fn billed(b: &Billing) -> BTreeMap<String, Expected> {
    let mut out: BTreeMap<String, Expected> = BTreeMap::new();
    for l in &b.lines {
        let e = out.entry(l.customer_id.clone()).or_default();
        *e.by_type.entry(l.line_type.clone()).or_default() += l.amount_minor as i128;
        e.total += l.amount_minor as i128;
    }
    for e in out.values_mut() {
        e.by_type.retain(|_, v| *v != 0);
    }
    for g in &b.credits {
        if let Some(e) = out.get_mut(&g.customer_id) {
            e.closing
                .insert(g.grant_id.clone(), g.closing_minor as i128);
        }
    }
    out
}

proptest! {
    // Each case bills in DuckDB (about 1 s in a debug build).
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn contract_invoices_equal_the_oracle_to_the_minor_unit(seed in any::<u64>()) {
        let s = generate(seed);
        let contracts = parse_contracts(&s.contracts);
        let b = bill(&s, &contracts);
        let got = billed(&b);
        let want = oracle(&s, &contracts);
        prop_assert_eq!(&got, &want, "contracts:\n{}\nopenings: {:?}", s.contracts, s.openings);
        // The lines sum to the summary's total; no balance goes below 0.
        for r in &b.summary {
            prop_assert_eq!(r.total_minor as i128, got[&r.customer_id].total);
            prop_assert!(r.total_minor >= 0, "{} total {}", r.customer_id, r.total_minor);
        }
        for g in &b.credits {
            prop_assert!(g.closing_minor >= 0 && g.applied_minor >= 0 && g.applied_invoice_minor >= 0);
            prop_assert_eq!(g.opening_minor, g.applied_minor + g.expired_minor + g.closing_minor);
        }
    }

    #[test]
    fn a_change_to_identical_terms_mid_month_bills_what_no_change_bills(seed in any::<u64>(), at in 1i64..31) {
        let s = generate(seed);
        let contracts = parse_contracts(&s.contracts);
        let mut changed = s.contracts.clone();
        for c in &s.customers {
            if let Some(t) = contracts.terms.iter().rfind(|t| t.customer_id == c.id && t.from <= day(at)) {
                // The same terms again, re-signed on day `at`.
                if t.from == day(at) {
                    continue;
                }
                let mut again = t.clone();
                again.from = day(at);
                changed += &format!("[[terms]]\ncustomer_id = \"{}\"\nfrom = {}\n", c.id, again.from);
                if let Some(x) = again.commitment {
                    changed += &format!("commitment = \"{x}\"\n");
                }
                if let Some(tiers) = &again.tiers {
                    let steps: Vec<String> = tiers.steps.iter()
                        .map(|s| format!("{{ from = \"{}\", factor = \"{}\" }}", s.from, s.factor))
                        .collect();
                    changed += &format!(
                        "tiers = {{ measure = \"{}\", mode = \"{}\", steps = [{}] }}\n",
                        inputs::enum_text(&tiers.measure), inputs::enum_text(&tiers.mode), steps.join(", "));
                }
                changed.push('\n');
            }
        }
        let with_change = parse_contracts(&changed);
        let a = bill(&s, &contracts);
        let b = bill(&s, &with_change);
        prop_assert_eq!(&a.lines, &b.lines);
        prop_assert_eq!(&a.summary, &b.summary);
        prop_assert_eq!(&a.credits, &b.credits);
    }
}
