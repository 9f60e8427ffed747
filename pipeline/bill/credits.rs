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

/// A grant's closing balance in a published `credits.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    pub currency: String,
    pub closing: Decimal,
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
    let mut out = Balances::new();
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let record = record.map_err(|e| bad(line, "row", e.to_string()))?;
        let get = |n: usize| record.get(n).unwrap_or_default().to_string();
        let value: Decimal = get(closing).parse().map_err(|_| {
            bad(
                line,
                "closing",
                format!("{:?} is not a decimal", get(closing)),
            )
        })?;
        out.insert(
            (get(customer), get(grant)),
            Closing {
                currency: get(currency),
                closing: value,
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
    /// `2026-09 rev-3`, or why there is none.
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
                    closing: Decimal::new(r.closing_minor, r.decimals).normalize(),
                },
            )
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
            b"customer_id,grant_id,currency,closing\nacme,a,EUR,x\n",
            "c.csv",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.csv:2: field `closing`: \"x\" is not a decimal"
        );
    }
}
