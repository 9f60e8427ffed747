//! The report's arithmetic, with no IO: the period a report covers, the
//! month-end projection, the movers against the previous month, FX
//! conversion into the report currency and margins. Every figure is an exact
//! `rust_decimal`; rounding happens once, when a figure is displayed
//! ([`super::format`]).

use std::collections::BTreeMap;

use chrono::{Datelike, Months, NaiveDate};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::model::pricing::Pricing;

/// How many movers each direction lists.
pub const MOVERS: usize = 5;

/// The days a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    /// The month's first day.
    pub start: NaiveDate,
    /// The next month's first day (exclusive).
    pub end: NaiveDate,
    pub days_in_month: u32,
    /// Days counted: all of the month once it is over, else the days before
    /// the as-of date (the as-of day itself is still in progress).
    pub complete_days: u32,
    /// `Some(as_of)` while the month is in progress.
    pub in_progress: Option<NaiveDate>,
    /// The previous month's first day and the days of it compared: all of
    /// it when the month is over, else as many as this month has complete
    /// (like for like, at most the previous month's length).
    pub previous_start: NaiveDate,
    pub previous_days: u32,
}

impl Period {
    /// The period of `month` (any day of it) seen on `as_of`: `None` when the
    /// month has no complete day by then.
    pub fn of(month: NaiveDate, as_of: NaiveDate) -> Option<Period> {
        let start = month.with_day(1).expect("day 1 exists");
        let end = start.checked_add_months(Months::new(1))?;
        let previous_start = start.checked_sub_months(Months::new(1))?;
        let days_in_month = (end - start).num_days() as u32;
        let previous_in_month = (start - previous_start).num_days() as u32;
        if as_of <= start {
            return None;
        }
        let (complete_days, in_progress) = if as_of >= end {
            (days_in_month, None)
        } else {
            ((as_of - start).num_days() as u32, Some(as_of))
        };
        let previous_days = match in_progress {
            None => previous_in_month,
            Some(_) => complete_days.min(previous_in_month),
        };
        Some(Period {
            start,
            end,
            days_in_month,
            complete_days,
            in_progress,
            previous_start,
            previous_days,
        })
    }

    /// `YYYY-MM`.
    pub fn month(&self) -> String {
        self.start.format("%Y-%m").to_string()
    }

    pub fn previous_month(&self) -> String {
        self.previous_start.format("%Y-%m").to_string()
    }

    /// The month's last day: the date billing takes FX rates on.
    pub fn last_day(&self) -> NaiveDate {
        self.end.pred_opt().expect("in range")
    }

    /// The days counted, in order.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.start.iter_days().take(self.complete_days as usize)
    }

    /// The previous month's days compared, in order.
    pub fn previous_days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.previous_start
            .iter_days()
            .take(self.previous_days as usize)
    }

    /// Days of the month not yet complete.
    pub fn remaining_days(&self) -> u32 {
        self.days_in_month - self.complete_days
    }
}

/// The month-end projection of a month in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Projection {
    pub to_date: Decimal,
    pub complete_days: u32,
    pub remaining_days: u32,
    /// `to_date / complete_days`.
    pub daily_average: Decimal,
    /// `to_date + daily_average x remaining_days`, computed as
    /// `to_date x days_in_month / complete_days`: one division.
    pub month_end: Decimal,
}

/// Projects `to_date` (the sum of `complete_days` days) to the month's end
/// at the daily average. `None` without a complete day.
pub fn project(to_date: Decimal, complete_days: u32, days_in_month: u32) -> Option<Projection> {
    if complete_days == 0 {
        return None;
    }
    let n = Decimal::from(complete_days);
    Some(Projection {
        to_date,
        complete_days,
        remaining_days: days_in_month.saturating_sub(complete_days),
        daily_average: to_date / n,
        month_end: to_date * Decimal::from(days_in_month.max(complete_days)) / n,
    })
}

/// One customer's or model's change against the previous month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mover {
    /// `customer_id`, or `provider/model`.
    pub key: String,
    pub previous: Decimal,
    pub current: Decimal,
    /// `current - previous`.
    pub change: Decimal,
    /// `change / previous x 100`; `None` when there was nothing before.
    pub change_percent: Option<Decimal>,
}

/// The largest increases and decreases, each sorted by size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Movers {
    pub up: Vec<Mover>,
    pub down: Vec<Mover>,
}

/// The at most `n` largest increases and `n` largest decreases of cost from
/// `previous` to `current` (keys missing on one side count as zero). Ties
/// are broken by key, so the order never depends on the input's.
pub fn movers(
    current: &BTreeMap<String, Decimal>,
    previous: &BTreeMap<String, Decimal>,
    n: usize,
) -> Movers {
    let mut all: Vec<Mover> = current
        .keys()
        .chain(previous.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|key| {
            let c = current.get(key).copied().unwrap_or_default();
            let p = previous.get(key).copied().unwrap_or_default();
            let change = c - p;
            Mover {
                key: key.clone(),
                previous: p,
                current: c,
                change,
                change_percent: (!p.is_zero())
                    .then(|| change.checked_mul(Decimal::ONE_HUNDRED).map(|x| x / p))
                    .flatten(),
            }
        })
        .filter(|m| !m.change.is_zero())
        .collect();
    all.sort_by(|a, b| b.change.abs().cmp(&a.change.abs()).then(a.key.cmp(&b.key)));
    let mut out = Movers::default();
    for m in all {
        let side = if m.change.is_sign_positive() {
            &mut out.up
        } else {
            &mut out.down
        };
        if side.len() < n {
            side.push(m);
        }
    }
    out
}

/// The rate of 1 `from` in `to` that billing uses on `date`
/// ([`crate::bill::inputs::fx_rate`]), with where it comes from.
pub fn fx_rate(pricing: &Pricing, from: &str, to: &str, date: NaiveDate) -> Result<FxRate, String> {
    let rate = crate::bill::inputs::fx_rate(pricing, from, to, date)?;
    let how = if from == to {
        "same currency".to_string()
    } else if pricing.fx_in_force(from, to, date).is_some() {
        format!("pricing.toml [[fx]] {from}->{to} in force on {date}")
    } else {
        let listed = pricing
            .fx_in_force(to, from, date)
            .expect("billing inverted the opposite pair");
        format!(
            "1 / pricing.toml [[fx]] {to}->{from} {listed} in force on {date}, to {} places",
            crate::bill::inputs::FX_PLACES
        )
    };
    Ok(FxRate {
        from: from.to_string(),
        to: to.to_string(),
        rate,
        how,
    })
}

/// A conversion rate and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FxRate {
    pub from: String,
    pub to: String,
    pub rate: Decimal,
    pub how: String,
}

impl FxRate {
    /// `amount` (in `from`) in `to`, exactly.
    pub fn convert(&self, amount: Decimal) -> Decimal {
        amount * self.rate
    }
}

/// `part / whole x 100`, `None` when `whole` is zero.
pub fn percent(part: Decimal, whole: Decimal) -> Option<Decimal> {
    (!whole.is_zero())
        .then(|| part.checked_mul(Decimal::ONE_HUNDRED).map(|x| x / whole))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::prelude::FromStr;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn a_month_in_progress_counts_the_days_before_the_as_of_date() {
        let p = Period::of(d("2026-10-15"), d("2026-10-20")).unwrap();
        assert_eq!(p.start, d("2026-10-01"));
        assert_eq!(p.days_in_month, 31);
        assert_eq!(p.complete_days, 19);
        assert_eq!(p.remaining_days(), 12);
        assert_eq!(p.in_progress, Some(d("2026-10-20")));
        assert_eq!(p.days().last(), Some(d("2026-10-19")));
        // Like for like: the first 19 days of September.
        assert_eq!(p.previous_start, d("2026-09-01"));
        assert_eq!(p.previous_days, 19);
        assert_eq!(p.last_day(), d("2026-10-31"));
    }

    #[test]
    fn a_finished_month_counts_every_day_and_the_whole_previous_month() {
        let p = Period::of(d("2026-03-01"), d("2026-04-01")).unwrap();
        assert_eq!((p.complete_days, p.in_progress), (31, None));
        assert_eq!((p.previous_start, p.previous_days), (d("2026-02-01"), 28));
        // A month in progress is never compared with more days than the
        // previous month has.
        let p = Period::of(d("2026-03-01"), d("2026-03-31")).unwrap();
        assert_eq!((p.complete_days, p.previous_days), (30, 28));
        // January's previous month is December of the year before.
        let p = Period::of(d("2027-01-01"), d("2027-02-10")).unwrap();
        assert_eq!(p.previous_month(), "2026-12");
    }

    #[test]
    fn a_month_without_a_complete_day_has_no_period() {
        assert_eq!(Period::of(d("2026-10-01"), d("2026-10-01")), None);
        assert_eq!(Period::of(d("2026-10-01"), d("2026-09-12")), None);
        assert!(Period::of(d("2026-10-01"), d("2026-10-02")).is_some());
    }

    #[test]
    fn the_projection_is_the_daily_average_over_the_remaining_days() {
        let p = project(dec("100.00"), 10, 31).unwrap();
        assert_eq!(p.daily_average, dec("10"));
        assert_eq!(p.month_end, dec("310"));
        assert_eq!(p.remaining_days, 21);
        // to_date + average x remaining, exactly, where the average is not
        // a finite decimal: one division, no rounding before display.
        let p = project(dec("1"), 3, 30).unwrap();
        assert_eq!(p.month_end, dec("10"));
        let p = project(dec("0.000000000000000001"), 7, 31).unwrap();
        assert_eq!(
            p.month_end.round_dp(18),
            dec("0.000000000000000004"),
            "31/7 of 1e-18"
        );
        // A finished month projects to itself.
        assert_eq!(project(dec("42.5"), 31, 31).unwrap().month_end, dec("42.5"));
        assert_eq!(project(dec("42.5"), 0, 31), None);
    }

    #[test]
    fn movers_are_the_largest_changes_each_way_with_their_percentage() {
        let cur: BTreeMap<String, Decimal> = [
            ("a", "150"),
            ("b", "10"),
            ("c", "0.5"),
            ("new", "7"),
            ("same", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), dec(v)))
        .collect();
        let prev: BTreeMap<String, Decimal> = [
            ("a", "100"),
            ("b", "40"),
            ("c", "0.25"),
            ("gone", "9"),
            ("same", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), dec(v)))
        .collect();
        let m = movers(&cur, &prev, 5);
        let keys = |v: &[Mover]| v.iter().map(|m| m.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&m.up), vec!["a", "new", "c"]);
        assert_eq!(keys(&m.down), vec!["b", "gone"]);
        assert_eq!(m.up[0].change, dec("50"));
        assert_eq!(m.up[0].change_percent, Some(dec("50")));
        assert_eq!(
            m.up[1].change_percent, None,
            "nothing before: no percentage"
        );
        assert_eq!(m.up[2].change_percent, Some(dec("100")));
        assert_eq!(m.down[0].change, dec("-30"));
        assert_eq!(m.down[0].change_percent, Some(dec("-75")));
        assert_eq!(m.down[1].change_percent, Some(dec("-100")));
        // At most n each way; ties by key.
        let m = movers(&cur, &prev, 1);
        assert_eq!(
            (keys(&m.up), keys(&m.down)),
            (vec!["a".into()], vec!["b".into()])
        );
        let tie: BTreeMap<String, Decimal> = [("y", "1"), ("x", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), dec(v)))
            .collect();
        assert_eq!(keys(&movers(&tie, &BTreeMap::new(), 5).up), vec!["x", "y"]);
    }

    #[test]
    fn without_a_previous_month_everything_is_new() {
        let cur: BTreeMap<String, Decimal> =
            [("a".to_string(), dec("2")), ("b".to_string(), dec("3"))].into();
        let m = movers(&cur, &BTreeMap::new(), 5);
        assert_eq!(m.up.len(), 2);
        assert!(m.down.is_empty());
        assert!(m.up.iter().all(|m| m.change_percent.is_none()));
        assert_eq!(m.up[0].key, "b");
    }

    fn pricing_with_fx(fx: &str) -> Pricing {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pricing.toml"),
        )
        .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("pricing.toml");
        let start = text.find("[[fx]]").unwrap();
        let end = start + text[start..].find("effective_from").unwrap();
        let end = end + text[end..].find('\n').unwrap();
        std::fs::write(&path, format!("{}{fx}{}", &text[..start], &text[end..])).unwrap();
        crate::load::pricing(&path).unwrap()
    }

    #[test]
    fn fx_is_billings_rate_direct_inverted_or_one() {
        let pricing = pricing_with_fx(
            "[[fx]]\nbase = \"EUR\"\nquote = \"USD\"\nrate = \"1.0411\"\neffective_from = \"2025-02-28\"\n\
             [[fx]]\nbase = \"EUR\"\nquote = \"USD\"\nrate = \"1.2\"\neffective_from = \"2026-11-01\"",
        );
        let on = d("2026-10-31");
        let direct = fx_rate(&pricing, "EUR", "USD", on).unwrap();
        assert_eq!(direct.rate, dec("1.0411"));
        assert_eq!(direct.convert(dec("621.41")), dec("646.949951"));
        // The other way round: 1 / 1.0411 to 8 places, half to even, as
        // billing prints it on the invoices (0.96052252).
        let inverse = fx_rate(&pricing, "USD", "EUR", on).unwrap();
        assert_eq!(inverse.rate, dec("0.96052252"));
        assert!(inverse.how.contains("1 / pricing.toml"), "{}", inverse.how);
        // The entry in force on the date, not the newest.
        assert_eq!(
            fx_rate(&pricing, "EUR", "USD", d("2026-11-30"))
                .unwrap()
                .rate,
            dec("1.2")
        );
        assert_eq!(
            fx_rate(&pricing, "USD", "USD", on).unwrap().rate,
            Decimal::ONE
        );
        let missing = fx_rate(&pricing, "GBP", "USD", on).unwrap_err();
        assert!(missing.contains("no FX rate GBP->USD"), "{missing}");
        assert!(fx_rate(&pricing, "EUR", "USD", d("2025-01-01")).is_err());
    }

    #[test]
    fn percent_of_zero_is_none() {
        assert_eq!(percent(dec("1"), Decimal::ZERO), None);
        assert_eq!(
            percent(dec("1"), dec("3")).unwrap().round_dp(4),
            dec("33.3333")
        );
    }
}
