//! Prepaid credit across months: the balance of every grant at the end of a
//! month is a file of its revision (`credits.csv`, written by
//! [`super::render::credits_csv`]), and the next month opens from the latest
//! approved revision of the month before ([`super::openings`]).
//!
//! ```text
//! <out>/invoices/YYYY-MM/rev-N/credits.csv   one row per grant in force for the month
//! ```

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::render::CreditBalance;
#[cfg(test)]
use super::render::{Period, credits_csv};
use crate::model::error::{Error, Result};

/// A grant's closing balance in a published `credits.csv`, with what is
/// needed to carry it through a month its customer is not billed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    pub currency: String,
    pub closing: Decimal,
    /// The currency's places (as the file writes every amount).
    pub decimals: u32,
    pub amount: Decimal,
    pub granted: String,
    pub expires: Option<String>,
    pub priority: i64,
    pub burn_order: i64,
}

/// `(customer_id, grant_id)` -> closing balance.
pub type Balances = BTreeMap<(String, String), Closing>;

/// Reads the closing balances of a published `credits.csv`.
pub fn parse_credits_csv(bytes: &[u8], url: &str) -> Result<Balances> {
    let bad = |line: u64, field: &str, message: String| Error::Registry {
        path: url.into(),
        line,
        field: field.to_string(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| bad(1, "header", e.to_string()))?
        .clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(1, name, "no such column".into()))
    };
    let (customer, grant, currency, closing) = (
        column("customer_id")?,
        column("grant_id")?,
        column("currency")?,
        column("closing")?,
    );
    let (amount, granted, expires, priority, burn_order) = (
        column("amount")?,
        column("granted")?,
        column("expires")?,
        column("priority")?,
        column("burn_order")?,
    );
    let mut out = Balances::new();
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let record = record.map_err(|e| bad(line, "row", e.to_string()))?;
        let get = |n: usize| record.get(n).unwrap_or_default().to_string();
        let number = |n: usize, name: &str| -> Result<Decimal> {
            get(n)
                .parse()
                .map_err(|_| bad(line, name, format!("{:?} is not a decimal", get(n))))
        };
        let whole = |n: usize, name: &str| -> Result<i64> {
            get(n)
                .parse()
                .map_err(|_| bad(line, name, format!("{:?} is not a whole number", get(n))))
        };
        let value = number(closing, "closing")?;
        out.insert(
            (get(customer), get(grant)),
            Closing {
                currency: get(currency),
                closing: value,
                decimals: value.scale(),
                amount: number(amount, "amount")?,
                granted: get(granted),
                expires: Some(get(expires)).filter(|e| !e.is_empty()),
                priority: whole(priority, "priority")?,
                burn_order: whole(burn_order, "burn_order")?,
            },
        );
    }
    Ok(out)
}

/// Where a month's opening balances come from.
#[derive(Debug, Default)]
pub struct Openings {
    /// Closing balances of the month before, by grant.
    pub balances: Balances,
    /// `2026-09 rev-3`; empty when the month before is not billed.
    pub source: String,
    /// Said in the run report.
    pub notices: Vec<String>,
    /// The month before is billed but not approved: its latest revision is
    /// used, and the run needs attention.
    pub attention: Vec<String>,
}

/// The closing balances of rows, as [`parse_credits_csv`] reads them back.
pub fn closings(rows: &[CreditBalance]) -> Balances {
    rows.iter()
        .map(|r| {
            (
                (r.customer_id.clone(), r.grant_id.clone()),
                Closing {
                    currency: r.currency.clone(),
                    closing: Decimal::new(r.closing_minor, r.decimals),
                    decimals: r.decimals,
                    amount: r.amount,
                    granted: r.granted.clone(),
                    expires: r.expires.clone(),
                    priority: r.priority,
                    burn_order: r.burn_order,
                },
            )
        })
        .collect()
}

/// The grants of the month before that this month's billing has no row
/// for (their customer is refused this month, or has no contract any
/// more): carried unchanged, so that a balance is never lost or reset.
pub fn carried(openings: &Openings, rows: &[CreditBalance]) -> Vec<CreditBalance> {
    let billed: std::collections::BTreeSet<(&str, &str)> = rows
        .iter()
        .map(|r| (r.customer_id.as_str(), r.grant_id.as_str()))
        .collect();
    openings
        .balances
        .iter()
        .filter(|((c, g), _)| !billed.contains(&(c.as_str(), g.as_str())))
        .map(|((customer, grant), b)| {
            let minor = (b.closing * Decimal::from(10i64.pow(b.decimals)))
                .trunc()
                .mantissa() as i64;
            CreditBalance {
                customer_id: customer.clone(),
                grant_id: grant.clone(),
                burn_order: b.burn_order,
                currency: b.currency.clone(),
                decimals: b.decimals,
                amount: b.amount,
                granted: b.granted.clone(),
                expires: b.expires.clone(),
                priority: b.priority,
                opening_from: openings.source.clone(),
                rate: Decimal::ONE,
                invoice_currency: b.currency.clone(),
                invoice_decimals: b.decimals,
                opening_minor: minor,
                applied_minor: 0,
                applied_invoice_minor: 0,
                expired_minor: 0,
                closing_minor: minor,
                status: "carried".into(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(grant: &str, closing_minor: i64) -> CreditBalance {
        CreditBalance {
            customer_id: "acme".into(),
            grant_id: grant.into(),
            burn_order: 1,
            currency: "EUR".into(),
            decimals: 2,
            amount: Decimal::new(10000, 2),
            granted: "2026-09-01".into(),
            expires: None,
            priority: 0,
            opening_from: "2026-09 rev-1".into(),
            rate: Decimal::ONE,
            invoice_currency: "EUR".into(),
            invoice_decimals: 2,
            opening_minor: 10000,
            applied_minor: 10000 - closing_minor,
            applied_invoice_minor: 10000 - closing_minor,
            expired_minor: 0,
            closing_minor,
            status: "open".into(),
        }
    }

    #[test]
    fn closing_balances_read_back_exactly_what_was_written() {
        let rows = [row("a", 1234), row("b, \"quoted\"", 0)];
        let period = Period {
            month: "2026-10",
            first_day: "2026-10-01",
            last_day: "2026-10-31",
            revision: 2,
        };
        let bytes = credits_csv(&period, &rows);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with("month,revision,customer_id,grant_id,burn_order,currency,amount,"),
            "{text}"
        );
        assert!(text.contains(",12.34,"), "{text}");
        let back = parse_credits_csv(&bytes, "credits.csv").unwrap();
        assert_eq!(back, closings(&rows));
        assert_eq!(
            back[&("acme".to_string(), "a".to_string())].closing,
            Decimal::new(1234, 2)
        );
        let err = parse_credits_csv(
            b"customer_id,grant_id,currency,closing,amount,granted,expires,priority,burn_order\nacme,a,EUR,x,1,2026-10-01,,0,1\n",
            "c.csv",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.csv:2: field `closing`: \"x\" is not a decimal"
        );
    }
}
