//! Timestamps as each source writes them (RFC 3339, main log, gin, CLF, Go durations),
//! hand-rolled because they run for every line, and cached UTC offsets of a time zone.

use std::fmt::Write as _;

use chrono::{Offset, TimeZone};
use chrono_tz::Tz;

use super::DAY;

#[derive(Clone, Copy)]
pub(super) struct Civil {
    pub(super) y: i64,
    pub(super) mo: u32,
    pub(super) d: u32,
    pub(super) h: u32,
    pub(super) mi: u32,
    s: u32,
}

pub(super) fn civil(secs: i64) -> Civil {
    let days = secs.div_euclid(DAY);
    let sod = secs.rem_euclid(DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let mo = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(mo <= 2);
    Civil {
        y,
        mo,
        d,
        h: (sod / 3_600) as u32,
        mi: (sod % 3_600 / 60) as u32,
        s: (sod % 60) as u32,
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Frac {
    None,
    Millis,
    /// Go's RFC3339Nano: nine digits with trailing zeros trimmed.
    Nanos,
}

/// RFC 3339; `off` None writes UTC with `Z`, Some writes local time with `+hh:mm`.
pub(super) fn w_rfc3339(buf: &mut String, secs: i64, nanos: u32, frac: Frac, off: Option<i32>) {
    let c = civil(secs + i64::from(off.unwrap_or(0)));
    let _ = write!(
        buf,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        c.y, c.mo, c.d, c.h, c.mi, c.s
    );
    match frac {
        Frac::None => {}
        Frac::Millis => {
            let _ = write!(buf, ".{:03}", nanos / 1_000_000);
        }
        Frac::Nanos => {
            let (mut n, mut digits) = (nanos, 9usize);
            while digits > 0 && n % 10 == 0 {
                n /= 10;
                digits -= 1;
            }
            if digits > 0 {
                let _ = write!(buf, ".{n:0digits$}");
            }
        }
    }
    match off {
        None => buf.push('Z'),
        Some(o) => {
            let sign = if o < 0 { '-' } else { '+' };
            let o = o.unsigned_abs();
            let _ = write!(buf, "{sign}{:02}:{:02}", o / 3_600, o % 3_600 / 60);
        }
    }
}

/// `2026-10-01 09:12:44` (main log; `bad_day` writes day 32).
pub(super) fn w_mainlog_ts(buf: &mut String, local: i64, bad_day: bool) {
    let c = civil(local);
    let d = if bad_day { 32 } else { c.d };
    let _ = write!(
        buf,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        c.y, c.mo, d, c.h, c.mi, c.s
    );
}

/// `2026/10/01 - 09:12:44` (gin's own timestamp in the older `[GIN]` lines).
pub(super) fn w_gin_ts(buf: &mut String, local: i64, bad_day: bool) {
    let c = civil(local);
    let d = if bad_day { 32 } else { c.d };
    let _ = write!(
        buf,
        "{:04}/{:02}/{:02} - {:02}:{:02}:{:02}",
        c.y, c.mo, d, c.h, c.mi, c.s
    );
}

/// `01/Oct/2026:09:12:44 +0200` (CLF `%t` without brackets).
pub(super) fn w_clf_ts(buf: &mut String, secs: i64, off: i32, bad_day: bool) {
    let c = civil(secs + i64::from(off));
    let d = if bad_day { 32 } else { c.d };
    let sign = if off < 0 { '-' } else { '+' };
    let o = off.unsigned_abs();
    let _ = write!(
        buf,
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} {sign}{:02}{:02}",
        d,
        MONTHS[c.mo as usize - 1],
        c.y,
        c.h,
        c.mi,
        c.s,
        o / 3_600,
        o % 3_600 / 60
    );
}

/// Go's `time.Duration` String of a latency truncated like gin_logger.go does.
pub(super) fn w_go_duration(buf: &mut String, ms: u64) {
    if ms == 0 {
        buf.push_str("0s");
    } else if ms < 1_000 {
        let _ = write!(buf, "{ms}ms");
    } else if ms < 60_000 {
        let (s, mut f, mut digits) = (ms / 1_000, ms % 1_000, 3usize);
        if f == 0 {
            let _ = write!(buf, "{s}s");
        } else {
            while f % 10 == 0 {
                f /= 10;
                digits -= 1;
            }
            let _ = write!(buf, "{s}.{f:0digits$}s");
        }
    } else {
        let s = ms / 1_000;
        let (h, m, s) = (s / 3_600, s % 3_600 / 60, s % 60);
        if h > 0 {
            let _ = write!(buf, "{h}h{m}m{s}s");
        } else {
            let _ = write!(buf, "{m}m{s}s");
        }
    }
}

/// UTC offset of a time zone, cached per UTC hour (all used zones change on the hour).
pub(super) struct TzOff {
    tz: Tz,
    hour: i64,
    off: i32,
}

impl TzOff {
    pub(super) fn new(tz: Tz) -> TzOff {
        TzOff {
            tz,
            hour: i64::MIN,
            off: 0,
        }
    }

    pub(super) fn at(&mut self, secs: i64) -> i32 {
        let hour = secs.div_euclid(3_600);
        if hour != self.hour {
            self.hour = hour;
            let utc = chrono::DateTime::from_timestamp(hour * 3_600, 0)
                .expect("timestamp in range")
                .naive_utc();
            self.off = self
                .tz
                .offset_from_utc_datetime(&utc)
                .fix()
                .local_minus_utc();
        }
        self.off
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_time_like_the_sources() {
        let secs = 1_791_284_864; // 2026-10-06T11:07:44Z
        let mut b = String::new();
        w_rfc3339(&mut b, secs, 120_500_000, Frac::Nanos, Some(7_200));
        assert_eq!(b, "2026-10-06T13:07:44.1205+02:00");
        b.clear();
        w_clf_ts(&mut b, secs, -14_400, false);
        assert_eq!(b, "06/Oct/2026:07:07:44 -0400");
        b.clear();
        for ms in [0, 7, 999, 1_000, 23_559, 2_500, 61_234, 3_725_000] {
            w_go_duration(&mut b, ms);
            b.push(' ');
        }
        assert_eq!(b, "0s 7ms 999ms 1s 23.559s 2.5s 1m1s 1h2m5s ");
    }
}
