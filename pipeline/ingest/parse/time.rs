//! Timestamp parsing. Offsets in the input are kept; a timestamp without one
//! is read in the customer's time zone. Everything becomes UTC microseconds.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use crate::model::time::Ts;

/// Parses `YYYY-MM-DD[T ]HH:MM:SS[.frac][Z|±HH:MM|±HHMM]`. A timestamp
/// without an offset is local time in `tz`.
pub fn parse_iso(s: &str, tz: Tz) -> Option<Ts> {
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let mut v = 0u32;
        for &c in &b[range] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Some(v)
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut i = 19;
    let mut micros = 0u32;
    if i < b.len() && (b[i] == b'.' || b[i] == b',') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                micros = micros * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..6 {
            micros *= 10;
        }
    }
    let naive = NaiveDate::from_ymd_opt(y as i32, mo, d)?.and_hms_micro_opt(h, mi, se, micros)?;
    let rest = &b[i..];
    let offset_secs: Option<i32> = match rest {
        [] => None,
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), r @ ..] => {
            let digits: Vec<u8> = r.iter().copied().filter(|c| *c != b':').collect();
            if digits.len() != 4
                || !digits.iter().all(u8::is_ascii_digit)
                || !(r.len() == 4 || (r.len() == 5 && r[2] == b':'))
            {
                return None;
            }
            let hh = i32::from(digits[0] - b'0') * 10 + i32::from(digits[1] - b'0');
            let mm = i32::from(digits[2] - b'0') * 10 + i32::from(digits[3] - b'0');
            if hh > 23 || mm > 59 {
                return None;
            }
            let secs = hh * 3600 + mm * 60;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => return None,
    };
    match offset_secs {
        Some(off) => Some(Ts(
            naive.and_utc().timestamp_micros() - i64::from(off) * 1_000_000
        )),
        None => local_to_utc(naive, tz),
    }
}

/// Local wall time in `tz` to UTC. An ambiguous time (clocks going back)
/// takes the earlier instant; a time in a gap (clocks going forward) is read
/// with the offset in force just before the gap.
pub fn local_to_utc(naive: NaiveDateTime, tz: Tz) -> Option<Ts> {
    let dt = match tz.from_local_datetime(&naive) {
        LocalResult::Single(dt) => dt,
        LocalResult::Ambiguous(a, b) => a.min(b),
        LocalResult::None => {
            let before = tz
                .from_local_datetime(&(naive - chrono::Duration::hours(3)))
                .earliest()?;
            let offset = before.naive_local() - before.naive_utc();
            return Some(Ts((naive - offset).and_utc().timestamp_micros()));
        }
    };
    Some(Ts(dt.timestamp_micros()))
}

/// A Unix epoch number in seconds, milliseconds, microseconds or nanoseconds,
/// told apart by magnitude (valid for dates between 1973 and 5138).
pub fn from_epoch(v: i64) -> Option<Ts> {
    let a = v.unsigned_abs();
    let micros = if a >= 100_000_000_000_000_000 {
        v / 1000
    } else if a >= 100_000_000_000_000 {
        v
    } else if a >= 100_000_000_000 {
        v.checked_mul(1000)?
    } else if a >= 100_000_000 {
        v.checked_mul(1_000_000)?
    } else {
        return None;
    };
    DateTime::from_timestamp_micros(micros).map(|_| Ts(micros))
}

/// `10/Oct/2000:13:55:36 -0700` (Common Log Format `%t` without brackets).
pub fn parse_clf(s: &str) -> Option<Ts> {
    match clf_fixed(s.as_bytes()) {
        Some(ts) => Some(ts),
        None => clf_chrono(s),
    }
}

/// Any CLF time chrono reads, by its format string (the slow path).
fn clf_chrono(s: &str) -> Option<Ts> {
    DateTime::parse_from_str(s, "%d/%b/%Y:%H:%M:%S %z")
        .ok()
        .map(|d| Ts(d.timestamp_micros()))
}

/// The shape web servers write, `DD/Mon/YYYY:HH:MM:SS +HHMM`, read by hand;
/// `None` for anything else (left to [`clf_chrono`], which gives the same
/// answer on every text this reads).
fn clf_fixed(b: &[u8]) -> Option<Ts> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let b: &[u8; 26] = b.try_into().ok()?;
    let digits = |at: usize, n: usize| -> Option<u32> {
        b[at..at + n].iter().try_fold(0u32, |v, d| {
            d.is_ascii_digit().then(|| v * 10 + u32::from(d - b'0'))
        })
    };
    let punct = [
        (2, b'/'),
        (6, b'/'),
        (11, b':'),
        (14, b':'),
        (17, b':'),
        (20, b' '),
    ];
    if punct.iter().any(|(at, c)| b[*at] != *c) {
        return None;
    }
    let month = MONTHS.iter().position(|m| b[3..6] == m[..])? as u32 + 1;
    let (day, year) = (digits(0, 2)?, digits(7, 4)?);
    let (hour, min, sec) = (digits(12, 2)?, digits(15, 2)?, digits(18, 2)?);
    let (off_h, off_m) = (digits(22, 2)?, digits(24, 2)?);
    if hour > 23 || min > 59 || sec > 59 || off_h > 23 || off_m > 59 {
        return None;
    }
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let date = chrono::NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let local = date.and_hms_opt(hour, min, sec)?.and_utc().timestamp();
    let offset = sign * i64::from(off_h * 3600 + off_m * 60);
    Some(Ts((local - offset) * 1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The hand-read CLF shape gives chrono's answer, or leaves the
        /// text to it.
        #[test]
        fn clf_by_hand_agrees_with_chrono(
            text in "[0-3][0-9]/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec|OCT|Xyz)/[0-9]{4}:[0-2][0-9]:[0-6][0-9]:[0-6][0-9] [+-][0-2][0-9][0-6][0-9]",
            other in "[0-9/A-Za-z: +-]{0,30}",
        ) {
            for t in [&text, &other] {
                if let Some(ts) = clf_fixed(t.as_bytes()) {
                    proptest::prop_assert_eq!(Some(ts), clf_chrono(t), "{}", t);
                }
            }
        }
    }

    #[test]
    fn clf_common_times_take_the_hand_path() {
        for t in [
            "10/Oct/2000:13:55:36 -0700",
            "01/Jan/2026:00:00:00 +0000",
            "29/Feb/2024:23:59:59 +0530",
        ] {
            assert_eq!(clf_fixed(t.as_bytes()), clf_chrono(t), "{t}");
            assert!(clf_fixed(t.as_bytes()).is_some(), "{t}");
        }
        assert_eq!(clf_fixed(b"29/Feb/2025:00:00:00 +0000"), None);
    }

    fn utc(s: &str) -> Ts {
        Ts(DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros())
    }

    #[test]
    fn iso_forms() {
        let tz = Tz::UTC;
        assert_eq!(
            parse_iso("2025-12-25T10:30:00Z", tz),
            Some(utc("2025-12-25T10:30:00Z"))
        );
        assert_eq!(
            parse_iso("2025-12-25T12:30:00+02:00", tz),
            Some(utc("2025-12-25T10:30:00Z"))
        );
        assert_eq!(
            parse_iso("2025-12-25T05:30:00-0500", tz),
            Some(utc("2025-12-25T10:30:00Z"))
        );
        assert_eq!(
            parse_iso("2025-12-25 10:30:00.123456789Z", tz),
            Some(utc("2025-12-25T10:30:00.123456Z"))
        );
        assert_eq!(
            parse_iso("2025-12-25T10:30:00.5Z", tz),
            Some(utc("2025-12-25T10:30:00.5Z"))
        );
        for bad in [
            "2025-13-01T00:00:00Z",
            "2025-12-25T10:30:00+2",
            "2025-12-25",
            "x025-12-25T10:30:00Z",
            "2025-12-25T10:30:00.Z",
            "2025-12-25T10:30:00 Z",
        ] {
            assert_eq!(parse_iso(bad, tz), None, "{bad}");
        }
    }

    #[test]
    fn naive_times_use_the_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            parse_iso("2026-01-05 10:07:49", berlin),
            Some(utc("2026-01-05T09:07:49Z"))
        );
        // 02:30 on 2026-10-25 happens twice in Berlin: the earlier (CEST) instant wins.
        assert_eq!(
            parse_iso("2026-10-25 02:30:00", berlin),
            Some(utc("2026-10-25T00:30:00Z"))
        );
        // 02:30 on 2026-03-29 does not exist: read with the offset before the gap (+01:00).
        assert_eq!(
            parse_iso("2026-03-29 02:30:00", berlin),
            Some(utc("2026-03-29T01:30:00Z"))
        );
    }

    #[test]
    fn epoch_and_clf() {
        assert_eq!(
            from_epoch(1_568_760_922_000_000_000),
            Some(utc("2019-09-17T22:55:22Z"))
        );
        assert_eq!(from_epoch(1_568_760_922), Some(utc("2019-09-17T22:55:22Z")));
        assert_eq!(
            from_epoch(1_568_760_922_000),
            Some(utc("2019-09-17T22:55:22Z"))
        );
        assert_eq!(from_epoch(12), None);
        assert_eq!(
            parse_clf("10/Oct/2000:13:55:36 -0700"),
            Some(utc("2000-10-10T20:55:36Z"))
        );
        assert_eq!(parse_clf("10/Foo/2000:13:55:36 -0700"), None);
    }
}
