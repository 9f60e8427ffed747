//! Figures as people read them: rounded once, half away from zero (billing's
//! rounding), with thousands separators, and a currency code on every amount.

use rust_decimal::{Decimal, RoundingStrategy};

use crate::bill::inputs::minor_units;

/// `d` rounded to `places`, half away from zero, with `,` between thousands:
/// `1234567.125` to 2 places is `1,234,567.13`.
pub fn grouped(d: Decimal, places: u32) -> String {
    let r = d.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero);
    let text = format!("{:.*}", places as usize, r.abs());
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text.as_str(), None),
    };
    let mut out = String::with_capacity(text.len() + text.len() / 3 + 1);
    if r.is_sign_negative() && !r.is_zero() {
        out.push('-');
    }
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// An integer with thousands separators.
pub fn count(n: i64) -> String {
    grouped(Decimal::from(n), 0)
}

/// An amount in `currency`, to its minor unit (2 places when meter does not
/// know it): `1,234.56 USD`.
pub fn money(d: Decimal, currency: &str) -> String {
    format!(
        "{} {currency}",
        grouped(d, minor_units(currency).unwrap_or(2))
    )
}

/// A change with its sign: `+12.30 USD`, `-4.00 USD`.
pub fn signed_money(d: Decimal, currency: &str) -> String {
    let m = money(d, currency);
    if m.starts_with('-') || d.round_dp(minor_units(currency).unwrap_or(2)).is_zero() {
        m
    } else {
        format!("+{m}")
    }
}

/// A percentage to one place: `12.3%`.
pub fn percent(p: Decimal) -> String {
    format!("{}%", grouped(p, 1))
}

/// A change in percent with its sign: `+12.3%`.
pub fn signed_percent(p: Decimal) -> String {
    let s = percent(p);
    if s.starts_with('-') || p.round_dp(1).is_zero() {
        s
    } else {
        format!("+{s}")
    }
}

/// The report's notes (`attention[]`, `notices[]`) mark commands and file
/// names as Markdown code spans, between backticks. Splits `note` into its
/// runs: `(true, text)` for a code span, `(false, text)` for the rest; a
/// backtick without a closing one is kept as text.
pub fn code_spans(note: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut rest = note;
    while let Some(open) = rest.find('`') {
        let Some(len) = rest[open + 1..].find('`') else {
            break;
        };
        if open > 0 {
            out.push((false, &rest[..open]));
        }
        out.push((true, &rest[open + 1..open + 1 + len]));
        rest = &rest[open + 1 + len + 1..];
    }
    if !rest.is_empty() {
        out.push((false, rest));
    }
    out
}

/// A note as plain text (a terminal, a log line): code spans without their
/// backticks.
pub fn plain(note: &str) -> String {
    code_spans(note).into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::prelude::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn amounts_are_rounded_half_away_from_zero_and_grouped() {
        assert_eq!(grouped(dec("1234567.125"), 2), "1,234,567.13");
        assert_eq!(grouped(dec("-1234567.125"), 2), "-1,234,567.13");
        assert_eq!(grouped(dec("999.995"), 2), "1,000.00");
        assert_eq!(grouped(dec("123"), 2), "123.00");
        assert_eq!(grouped(dec("-0.001"), 2), "0.00");
        assert_eq!(grouped(dec("100000"), 0), "100,000");
        assert_eq!(count(1234), "1,234");
        assert_eq!(count(-12), "-12");
        assert_eq!(money(dec("1908.5"), "USD"), "1,908.50 USD");
        assert_eq!(money(dec("1908.5"), "JPY"), "1,909 JPY");
        assert_eq!(money(dec("1.0005"), "KWD"), "1.001 KWD");
        assert_eq!(signed_money(dec("12.3"), "EUR"), "+12.30 EUR");
        assert_eq!(signed_money(dec("-4"), "EUR"), "-4.00 EUR");
        assert_eq!(signed_money(dec("0.001"), "EUR"), "0.00 EUR");
        assert_eq!(percent(dec("87.25")), "87.3%");
        assert_eq!(signed_percent(dec("12.34")), "+12.3%");
        assert_eq!(signed_percent(dec("-75")), "-75.0%");
    }

    #[test]
    fn notes_read_as_plain_text_without_their_backticks() {
        let note = "run `meter bill --month 2026-10` then `meter report`";
        assert_eq!(
            plain(note),
            "run meter bill --month 2026-10 then meter report"
        );
        assert_eq!(
            code_spans(note),
            [
                (false, "run "),
                (true, "meter bill --month 2026-10"),
                (false, " then "),
                (true, "meter report")
            ]
        );
        assert_eq!(code_spans("`a`"), [(true, "a")]);
        // An unpaired backtick is text, as is an empty note.
        assert_eq!(plain("it's `open"), "it's `open");
        assert_eq!(plain("a `b` c `d"), "a b c `d");
        assert!(code_spans("").is_empty());
    }
}
