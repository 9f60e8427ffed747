//! Limit alerts: the nightly job tells operators when a customer's month so
//! far crosses 80% or 100% of their `monthly_limit` or of their plan's
//! `included_tokens`, once per threshold per month.
//!
//! `monthly_limit` is a limit on **usage charges**: the invoice so far as
//! billing computes it (API usage and compute, in the customer's currency)
//! without the plan's fee. The fee is fixed and known when the customer
//! signs up; an alert that went off on it alone (the 1st of every month,
//! 499 of 600 EUR before any usage) would tell nobody anything. The alert
//! means "usage is running up the bill".
//!
//! The plan allowance applies only where billing applies it: a reseller
//! (a `markup`, billing's rule `reseller`) bills every token at cost x
//! markup and has no allowance to reach, whatever its plan lists.
//!
//! What was raised is kept in the lake (`_alerts/<YYYY-MM>.jsonl`, rewritten
//! whole and atomically), so a threshold is raised once however often the
//! nightly job runs; the alerts a night raised go to the out store as
//! `alerts/<date>.jsonl`, which a rerun of that night rewrites identically.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::bill::render::SummaryRow;
use crate::lake::Lake;
use crate::model::error::Result;

/// The thresholds, in percent of the limit, that raise an alert.
pub const THRESHOLDS: [u32; 2] = [80, 100];

/// What an alert measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The month's usage charges (the invoice without the plan fee) against
    /// the customer's `monthly_limit`.
    MonthlyLimit,
    /// The month's billed tokens against the plan's `included_tokens`.
    PlanAllowance,
}

impl AlertKind {
    fn label(self) -> &'static str {
        match self {
            AlertKind::MonthlyLimit => "monthly limit",
            AlertKind::PlanAllowance => "plan allowance",
        }
    }
}

/// One alert, as a line of the alerts files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// `YYYY-MM`.
    pub month: String,
    pub customer_id: String,
    pub name: String,
    pub kind: AlertKind,
    /// 80 or 100.
    pub threshold_percent: u32,
    /// The limit: an amount in `unit` (a currency code) or a token count
    /// (`unit` is `tokens`), as an exact decimal string.
    pub limit: String,
    /// The month so far when the alert was raised, in `unit`: usage charges
    /// (plan fee not counted) for a monthly limit, billed tokens for the
    /// plan allowance.
    pub used: String,
    /// `used` in percent of `limit`, rounded to one decimal place.
    pub used_percent: String,
    pub unit: String,
    /// The nightly date that raised it.
    pub raised_on: NaiveDate,
    pub run_id: String,
}

impl Alert {
    /// One line for people: who, what, how far.
    pub fn message(&self) -> String {
        let what = match self.kind {
            AlertKind::MonthlyLimit => " in usage charges, plan fee not counted",
            AlertKind::PlanAllowance => "",
        };
        format!(
            "customer {} ({}) reached {}% of their {} for {}: {} of {} {}{what} ({}%)",
            self.customer_id,
            self.name,
            self.threshold_percent,
            self.kind.label(),
            self.month,
            self.used,
            self.limit,
            self.unit,
            self.used_percent
        )
    }

    fn key(&self) -> (String, AlertKind, u32) {
        (self.customer_id.clone(), self.kind, self.threshold_percent)
    }
}

/// Billing's rule for a customer with a `markup` (`schemas/billing/invoice.sql`):
/// every API line at cost x markup, no allowance.
const RESELLER_RULE: &str = "reseller";

/// What counts against `monthly_limit`: the invoice so far without the plan
/// fee (API usage and compute lines), in the customer's currency.
pub fn usage_charges(row: &SummaryRow) -> Decimal {
    Decimal::new(row.usage_charges_minor(), row.decimals)
}

/// The plan allowance the customer's usage is billed against, if any: none
/// for a reseller (billing ignores the plan's `included_tokens` for them),
/// a contract whose every part is under tiers (`graduated tiers on ...`,
/// `volume tiers on ...`), or a plan without included tokens.
pub fn allowance(row: &SummaryRow) -> Option<i64> {
    let reseller = row.rule.starts_with(RESELLER_RULE);
    let all_tiers = row.rule.starts_with("graduated ") || row.rule.starts_with("volume ");
    (!reseller && !all_tiers && row.included_tokens > 0).then_some(row.included_tokens)
}

/// The thresholds each customer's month so far has crossed (all of them, not
/// only new ones), from the billing summary of the month to date.
pub fn crossings(summary: &[SummaryRow], month: &str, date: NaiveDate, run_id: &str) -> Vec<Alert> {
    let mut out = Vec::new();
    for row in summary {
        let alert =
            |kind, threshold, limit: String, used: String, pct: Decimal, unit: &str| Alert {
                month: month.to_string(),
                customer_id: row.customer_id.clone(),
                name: row.name.clone(),
                kind,
                threshold_percent: threshold,
                limit,
                used,
                used_percent: pct
                    .round_dp_with_strategy(1, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
                    .to_string(),
                unit: unit.to_string(),
                raised_on: date,
                run_id: run_id.to_string(),
            };
        if let Some(limit) = row.monthly_limit.filter(|l| *l > Decimal::ZERO) {
            let used = usage_charges(row);
            let pct = used * Decimal::ONE_HUNDRED / limit;
            for t in THRESHOLDS {
                if pct >= Decimal::from(t) {
                    out.push(alert(
                        AlertKind::MonthlyLimit,
                        t,
                        limit.normalize().to_string(),
                        used.to_string(),
                        pct,
                        &row.currency,
                    ));
                }
            }
        }
        if let Some(included) = allowance(row) {
            let pct = Decimal::from(row.tokens) * Decimal::ONE_HUNDRED / Decimal::from(included);
            for t in THRESHOLDS {
                if pct >= Decimal::from(t) {
                    out.push(alert(
                        AlertKind::PlanAllowance,
                        t,
                        included.to_string(),
                        row.tokens.to_string(),
                        pct,
                        "tokens",
                    ));
                }
            }
        }
    }
    out
}

/// The alerts raised for one month, kept in the lake.
#[derive(Debug)]
pub struct AlertBook {
    path: PathBuf,
    pub alerts: Vec<Alert>,
}

impl AlertBook {
    pub fn path(lake: &Lake, month: &str) -> PathBuf {
        lake.root().join("_alerts").join(format!("{month}.jsonl"))
    }

    /// Reads the month's record (empty when there is none yet).
    pub fn load(lake: &Lake, month: &str) -> Result<AlertBook> {
        let path = AlertBook::path(lake, month);
        let mut alerts = Vec::new();
        if let Some(bytes) = lake.read_file(&path)? {
            let text = String::from_utf8_lossy(&bytes);
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let alert: Alert = serde_json::from_str(line).map_err(|e| crate::Error::Lake {
                    path: path.clone(),
                    message: format!("line {}: not an alert record: {e}", i + 1),
                })?;
                alerts.push(alert);
            }
        }
        Ok(AlertBook { path, alerts })
    }

    /// Records the crossings not raised before this month and returns them.
    /// A crossing already raised, on any night, is not raised again.
    pub fn raise(&mut self, lake: &Lake, crossings: Vec<Alert>) -> Result<Vec<Alert>> {
        let known: BTreeSet<_> = self.alerts.iter().map(Alert::key).collect();
        let new: Vec<Alert> = crossings
            .into_iter()
            .filter(|a| !known.contains(&a.key()))
            .collect();
        if !new.is_empty() {
            self.alerts.extend(new.iter().cloned());
            lake.write_file(&self.path, &jsonl(&self.alerts))?;
        }
        Ok(new)
    }

    /// The alerts raised by the nightly run of `date` (its first run or a
    /// rerun), in the order they were raised.
    pub fn raised_on(&self, date: NaiveDate) -> Vec<Alert> {
        self.alerts
            .iter()
            .filter(|a| a.raised_on == date)
            .cloned()
            .collect()
    }
}

/// The store key of the alerts a night raised.
pub fn alerts_key(date: NaiveDate) -> String {
    format!("alerts/{date}.jsonl")
}

/// JSON Lines, one alert per line.
pub fn jsonl(alerts: &[Alert]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in alerts {
        serde_json::to_writer(&mut out, a).expect("an alert serializes");
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(total_minor: i64, limit: Option<&str>, tokens: i64, included: i64) -> SummaryRow {
        SummaryRow {
            customer_id: "cust_1".into(),
            name: "Acme".into(),
            currency: "EUR".into(),
            decimals: 2,
            tokens,
            included_tokens: included,
            total_minor,
            monthly_limit: limit.map(|l| l.parse().unwrap()),
            ..SummaryRow::default()
        }
    }

    fn date(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    fn kinds(alerts: &[Alert]) -> Vec<(AlertKind, u32)> {
        alerts
            .iter()
            .map(|a| (a.kind, a.threshold_percent))
            .collect()
    }

    #[test]
    fn thresholds_are_crossed_at_exactly_80_and_100_percent() {
        let d = date("2026-10-05");
        assert!(crossings(&[row(47_999, Some("600"), 0, 0)], "2026-10", d, "r").is_empty());
        let at_80 = crossings(&[row(48_000, Some("600"), 0, 0)], "2026-10", d, "r");
        assert_eq!(kinds(&at_80), [(AlertKind::MonthlyLimit, 80)]);
        assert_eq!(at_80[0].used, "480.00");
        assert_eq!(at_80[0].limit, "600");
        assert_eq!(at_80[0].used_percent, "80.0");
        assert_eq!(at_80[0].unit, "EUR");
        let over = crossings(&[row(60_001, Some("600.00"), 0, 0)], "2026-10", d, "r");
        assert_eq!(
            kinds(&over),
            [
                (AlertKind::MonthlyLimit, 80),
                (AlertKind::MonthlyLimit, 100)
            ]
        );
        assert_eq!(over[1].used_percent, "100.0");
    }

    #[test]
    fn the_plan_allowance_counts_tokens() {
        let d = date("2026-10-05");
        let a = crossings(&[row(0, None, 1_000_000, 1_000_000)], "2026-10", d, "r");
        assert_eq!(
            kinds(&a),
            [
                (AlertKind::PlanAllowance, 80),
                (AlertKind::PlanAllowance, 100)
            ]
        );
        assert_eq!(a[0].unit, "tokens");
        assert_eq!(a[0].used, "1000000");
        // No allowance, no limit: nothing to cross.
        assert!(crossings(&[row(10_000_000, None, 5, 0)], "2026-10", d, "r").is_empty());
        assert!(crossings(&[row(10, Some("0"), 0, 0)], "2026-10", d, "r").is_empty());
    }

    /// Issue 14: cust_0002 (markup 1.3, a reseller on the starter plan) was
    /// told it "reached 100% of their plan allowance (4597.7%)": billing
    /// gives resellers no allowance, so there is none to reach.
    #[test]
    fn resellers_get_no_allowance_alert() {
        let d = date("2026-10-31");
        let reseller = SummaryRow {
            rule: "reseller".into(),
            ..row(41_213, None, 45_976_510, 1_000_000)
        };
        assert_eq!(allowance(&reseller), None);
        assert!(crossings(std::slice::from_ref(&reseller), "2026-10", d, "r").is_empty());
        // A reseller's spending limit still counts.
        let limited = SummaryRow {
            monthly_limit: Some("300".parse().unwrap()),
            fee_minor: 29_900,
            total_minor: 29_900 + 30_000,
            ..reseller
        };
        assert_eq!(
            kinds(&crossings(&[limited], "2026-10", d, "r")),
            [
                (AlertKind::MonthlyLimit, 80),
                (AlertKind::MonthlyLimit, 100)
            ]
        );
        // The same usage under the allowance or overage rule does reach it.
        for rule in ["included", "overage"] {
            let r = SummaryRow {
                rule: rule.into(),
                ..row(41_213, None, 45_976_510, 1_000_000)
            };
            assert_eq!(allowance(&r), Some(1_000_000));
            let a = crossings(&[r], "2026-10", d, "r");
            assert_eq!(
                kinds(&a),
                [
                    (AlertKind::PlanAllowance, 80),
                    (AlertKind::PlanAllowance, 100)
                ],
                "{rule}"
            );
            assert_eq!(a[1].used_percent, "4597.7");
        }
    }

    /// The rule name alerts look for is the one billing's SQL gives.
    #[test]
    fn billing_names_the_reseller_rule_alerts_look_for() {
        let sql = include_str!("../../schemas/billing/invoice.sql");
        assert!(
            sql.contains(&format!("THEN '{RESELLER_RULE}'")),
            "invoice.sql no longer calls the markup rule '{RESELLER_RULE}'"
        );
    }

    /// Issue 14: on the 1st of every month the plan fee alone (499 of a
    /// 600 EUR limit, no usage) raised the 80% alert. The limit is on usage
    /// charges: the fee does not count.
    #[test]
    fn the_plan_fee_alone_raises_no_limit_alert() {
        let d = date("2026-11-01");
        let fee_only = SummaryRow {
            fee_minor: 49_900,
            ..row(49_900, Some("600"), 0, 1_000_000)
        };
        assert_eq!(usage_charges(&fee_only), "0.00".parse().unwrap());
        assert!(crossings(std::slice::from_ref(&fee_only), "2026-11", d, "r").is_empty());
        // Even a fee above the limit is not usage.
        let dear = SummaryRow {
            fee_minor: 83_300,
            total_minor: 83_300,
            ..fee_only.clone()
        };
        assert!(crossings(&[dear], "2026-11", d, "r").is_empty());
        // Usage of 479.99 beside the fee: under 80%; 480.00: the alert,
        // with the usage as the figure.
        let under = SummaryRow {
            total_minor: 49_900 + 47_999,
            ..fee_only.clone()
        };
        assert!(crossings(&[under], "2026-11", d, "r").is_empty());
        let at_80 = SummaryRow {
            total_minor: 49_900 + 48_000,
            ..fee_only.clone()
        };
        let a = crossings(&[at_80], "2026-11", d, "r");
        assert_eq!(kinds(&a), [(AlertKind::MonthlyLimit, 80)]);
        assert_eq!((a[0].used.as_str(), a[0].limit.as_str()), ("480.00", "600"));
        assert_eq!(a[0].used_percent, "80.0");
        assert_eq!(
            a[0].message(),
            "customer cust_1 (Acme) reached 80% of their monthly limit for 2026-11: \
             480.00 of 600 EUR in usage charges, plan fee not counted (80.0%)"
        );
        // Compute counts as usage too: it is in the total, not in the fee.
        let compute = SummaryRow {
            compute_minor: 60_000,
            total_minor: 49_900 + 60_000,
            ..fee_only
        };
        let a = crossings(&[compute], "2026-11", d, "r");
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].used, "600.00");
    }

    #[test]
    fn a_threshold_is_raised_once_a_month_and_a_rerun_of_the_night_sees_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path(), "t").unwrap();
        let mut book = AlertBook::load(&lake, "2026-10").unwrap();
        let night1 = date("2026-10-05");
        let first = book
            .raise(
                &lake,
                crossings(&[row(48_000, Some("600"), 0, 0)], "2026-10", night1, "r1"),
            )
            .unwrap();
        assert_eq!(kinds(&first), [(AlertKind::MonthlyLimit, 80)]);

        // The next night: 80% again (not raised), 100% now (raised).
        let night2 = date("2026-10-06");
        let mut book = AlertBook::load(&lake, "2026-10").unwrap();
        let second = book
            .raise(
                &lake,
                crossings(&[row(61_000, Some("600"), 0, 0)], "2026-10", night2, "r2"),
            )
            .unwrap();
        assert_eq!(kinds(&second), [(AlertKind::MonthlyLimit, 100)]);

        // A rerun of night 2 raises nothing new, and its day file is the same.
        let mut book = AlertBook::load(&lake, "2026-10").unwrap();
        let again = book
            .raise(
                &lake,
                crossings(&[row(61_000, Some("600"), 0, 0)], "2026-10", night2, "r3"),
            )
            .unwrap();
        assert!(again.is_empty());
        assert_eq!(book.raised_on(night2), second);
        assert_eq!(book.raised_on(night1), first);
        // Another month starts over.
        assert!(AlertBook::load(&lake, "2026-11").unwrap().alerts.is_empty());
    }

    #[test]
    fn a_damaged_record_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path(), "t").unwrap();
        let path = AlertBook::path(&lake, "2026-10");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{\"month\":\"2026-10\"}\n").unwrap();
        let err = AlertBook::load(&lake, "2026-10").unwrap_err().to_string();
        assert!(err.contains("2026-10.jsonl"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }
}
