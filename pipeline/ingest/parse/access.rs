//! Access lines into `api_requests`: CLIProxyAPI main-log access lines
//! (current and older `[GIN]` form, formats.md 1c) and Common/Combined Log
//! Format lines (Apache and nginx, 1d). Access lines count requests; they never
//! carry tokens.

use std::borrow::Cow;

use super::intern::intern;
use super::time::{parse_clf as clf_time, parse_iso};
use super::usage::{Family, before_query, strip_query};
use super::{FileCtx, IdKind, Parsed, Reject, RejectReason, SkipReason};
use crate::lake::tables::{ApiRequestRef, Id, Table, Text};
use crate::model::ids;
use crate::model::redact::{cut, redact, redact_owned};
use crate::model::time::Ts;

/// Parses a Go `time.Duration` string (`23.559s`, `7ms`, `1m2.5s`, `150µs`)
/// into whole microseconds, rounded to nearest.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return Some(0);
    }
    let mut rest = s;
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let (unit_ns, len) = if rest.starts_with("ns") {
            (1.0, 2)
        } else if rest.starts_with("us") {
            (1e3, 2)
        } else if rest.starts_with("µs") || rest.starts_with("μs") {
            (1e3, 'µ'.len_utf8() + 1)
        } else if rest.starts_with("ms") {
            (1e6, 2)
        } else if rest.starts_with('s') {
            (1e9, 1)
        } else if rest.starts_with('m') {
            (60e9, 1)
        } else if rest.starts_with('h') {
            (3600e9, 1)
        } else {
            return None;
        };
        total_ns += value * unit_ns;
        rest = &rest[len..];
    }
    let us = (total_ns / 1e3).round();
    (us.is_finite() && us < 9.0e15).then_some(us as i64)
}

/// Reads `[group]` at the start of `s`: its content and what follows the
/// closing bracket and one optional space.
fn bracket(s: &str) -> Option<(&str, &str)> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find(']')?;
    let rest = &inner[end + 1..];
    Some((&inner[..end], rest.strip_prefix(' ').unwrap_or(rest)))
}

fn status_of(s: &str) -> Result<i32, Reject> {
    let s = s.trim();
    if s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.parse().expect("three digits"))
    } else {
        Err(Reject::value(
            "status",
            format!("{s:?} is not a 3-digit HTTP status"),
        ))
    }
}

/// The model named in a Gemini path: `/v1beta/models/<model>:generateContent`.
fn model_in_path(path: &str) -> Option<Text<'static>> {
    let after = &path[path.find("/models/")? + "/models/".len()..];
    let model = after.split([':', '/', '?']).next()?;
    (!model.is_empty()).then(|| Text::Shared(intern(model)))
}

/// A field's text as the row keeps it, redacted: still borrowed from the
/// line when it was and nothing in it was redacted.
fn redacted(text: Cow<'_, str>) -> Text<'_> {
    match text {
        Cow::Borrowed(s) => redact(s).into(),
        Cow::Owned(s) => Text::Owned(redact_owned(s)),
    }
}

/// A path without its query string ([`before_query`]), still borrowed
/// where it was.
fn without_query(path: Cow<'_, str>) -> Text<'_> {
    match path {
        Cow::Borrowed(p) => Text::Borrowed(before_query(p)),
        Cow::Owned(mut p) => {
            strip_query(&mut p);
            Text::Owned(p)
        }
    }
}

struct Access<'a> {
    ts: Ts,
    request_id: Option<&'a str>,
    status: i32,
    latency_us: Option<i64>,
    client_ip: Option<&'a str>,
    method: Option<Text<'a>>,
    path: Option<Cow<'a, str>>,
    bytes: Option<i64>,
    referer: Option<Cow<'a, str>>,
    user_agent: Option<Cow<'a, str>>,
    error: Option<&'a str>,
    log_format: &'static str,
}

fn row<'a>(ctx: &'a FileCtx, text: &'a str, a: Access<'a>) -> Parsed<'a> {
    let (event_id, kind) = match a.request_id {
        Some(rid) => (
            ids::request_event_id("api_requests", &ctx.vm_id, rid, a.ts.0),
            IdKind::Request,
        ),
        None => (
            ids::line_base_id("api_requests", &ctx.vm_id, Some(a.ts.0), text.as_bytes()),
            IdKind::Content,
        ),
    };
    let path = a.path.map(without_query);
    let provider = path.as_deref().and_then(Family::of_path);
    let model = match provider {
        Some(Family::Google) => path.as_deref().and_then(model_in_path),
        _ => None,
    };
    Parsed::Request(
        ApiRequestRef {
            event_id: Id(event_id),
            ts: a.ts,
            customer_id: ctx.customer_id.as_deref().map(Text::Borrowed),
            vm_id: Text::Borrowed(&ctx.vm_id),
            request_id: a.request_id.map(Text::Borrowed),
            status: a.status,
            latency_us: a.latency_us,
            client_ip: a
                .client_ip
                .filter(|s| !s.is_empty() && *s != "-")
                .map(Text::Borrowed),
            method: a.method,
            path,
            provider: provider.map(|f| Text::Borrowed(f.name())),
            model,
            bytes: a.bytes,
            referer: a.referer.map(redacted),
            user_agent: a.user_agent.map(redacted),
            error: a.error.map(|e| redact(e).into()),
            log_format: Text::Borrowed(a.log_format),
            source_file: Text::Borrowed(&ctx.rel),
            source_line: 0,
        },
        kind,
    )
}

/// A line starting with `[`: a CLIProxyAPI main-log line. Access lines
/// (caller `gin_logger.go`) become rows; other main-log lines are skipped.
pub fn parse_main_log<'a>(ctx: &'a FileCtx, text: &'a str) -> Parsed<'a> {
    let reject = |r: Reject| Parsed::Reject(Table::ApiRequests, r.format("cliproxy_main"));
    let Some((ts_text, rest)) = bracket(text) else {
        return reject(Reject::line(
            RejectReason::UnrecognizedLine,
            "unrecognized line: `[` without a closing `]`",
        ));
    };
    let Some(ts) = parse_iso(ts_text, ctx.tz) else {
        return reject(Reject::timestamp(
            "timestamp",
            format!("{ts_text:?} is not a main-log timestamp"),
        ));
    };
    // Up to three more groups: [request id] [level] [caller], or the older
    // [level] [caller] [GIN].
    let mut groups = Vec::with_capacity(3);
    let mut rest = rest;
    while groups.len() < 3 {
        match bracket(rest) {
            Some((g, r)) => {
                groups.push(g);
                rest = r;
            }
            None => break,
        }
    }
    let (request_id, caller, gin) = match groups.as_slice() {
        [level, caller, "GIN"] => {
            let _ = level;
            (None, *caller, true)
        }
        [rid, _level, caller] => (Some(*rid), *caller, false),
        [_level, caller] => (None, *caller, false),
        _ => {
            return reject(
                Reject::line(
                    RejectReason::UnrecognizedLine,
                    "unrecognized main-log line: expected [level] [caller] groups",
                )
                .at(Some(ts)),
            );
        }
    };
    if !caller.starts_with("gin_logger.go") {
        return Parsed::Skip(Table::ApiRequests, SkipReason::NonAccessLogLine);
    }
    let mut text_part = rest;
    if gin {
        // `2025/11/24 - 10:07:40 | 200 | ...`: drop Gin's own timestamp.
        match text_part.split_once(" | ") {
            Some((_, r)) => text_part = r,
            None => {
                return reject(
                    Reject::line(
                        RejectReason::UnrecognizedLine,
                        "[GIN] line without access fields",
                    )
                    .at(Some(ts)),
                );
            }
        }
    }
    let request_id = request_id.filter(|r| !r.is_empty() && r.bytes().any(|b| b != b'-'));
    match access_text(text_part) {
        Ok((status, latency_us, ip, method, path, error)) => row(
            ctx,
            text,
            Access {
                ts,
                request_id,
                status,
                latency_us: Some(latency_us),
                client_ip: Some(ip),
                method: Some(Text::Borrowed(method)),
                path: Some(Cow::Borrowed(path)),
                bytes: None,
                referer: None,
                user_agent: None,
                error,
                log_format: if gin { "cliproxy_gin" } else { "cliproxy" },
            },
        ),
        Err(r) => reject(r.at(Some(ts))),
    }
}

type AccessFields<'a> = (i32, i64, &'a str, &'a str, &'a str, Option<&'a str>);

/// `200 |       23.559s |       127.0.0.1 | POST    "/v1/chat/completions" | error`
fn access_text(s: &str) -> Result<AccessFields<'_>, Reject> {
    let mut parts = s.splitn(4, '|');
    let (Some(status), Some(latency), Some(ip), Some(rest)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reject::line(
            RejectReason::UnrecognizedLine,
            "access line needs status | latency | client | method \"path\"",
        ));
    };
    let status = status_of(status)?;
    let latency_us = parse_go_duration(latency).ok_or_else(|| {
        Reject::value(
            "latency",
            format!("{:?} is not a Go duration", latency.trim()),
        )
    })?;
    let rest = rest.trim_start();
    let (method, after) = rest
        .split_once(char::is_whitespace)
        .ok_or_else(|| Reject::missing("path"))?;
    let after = after.trim_start();
    let quoted = after
        .strip_prefix('"')
        .ok_or_else(|| Reject::value("path", "expected a quoted path"))?;
    // The path ends at the last quote that ends the line or precedes ` | `.
    let (path, error) = match quoted.find("\" | ") {
        Some(i) => (&quoted[..i], Some(quoted[i + 4..].trim())),
        None => match quoted.strip_suffix('"') {
            Some(p) => (p, None),
            None => return Err(Reject::value("path", "unterminated quoted path")),
        },
    };
    Ok((
        status,
        latency_us,
        ip.trim(),
        method,
        path,
        error.filter(|e| !e.is_empty()),
    ))
}

/// Reads a `"..."` field with backslash escapes (`\"`, `\\`, `\xhh`) at the
/// start of `s`; returns its unescaped content and the rest. The content is
/// borrowed from `s` when it has no escapes.
fn quoted(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let inner = s.strip_prefix('"')?;
    if let Some(end) = inner.find(['"', '\\'])
        && inner.as_bytes()[end] == b'"'
    {
        return Some((Cow::Borrowed(&inner[..end]), &inner[end + 1..]));
    }
    unescape(inner).map(|(out, rest)| (Cow::Owned(out), rest))
}

/// The content of a quoted field after its opening quote, unescaped, and
/// what follows its closing quote.
fn unescape(inner: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &inner[i + 1..])),
            '\\' => match chars.next()? {
                (_, 'x') => {
                    let hex: String = [chars.next()?.1, chars.next()?.1].iter().collect();
                    let b = u8::from_str_radix(&hex, 16).ok()?;
                    out.push(if b.is_ascii() {
                        b as char
                    } else {
                        char::REPLACEMENT_CHARACTER
                    });
                }
                (_, other) => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// `GET /path HTTP/1.1`: the method (upper-case letters) and the path.
fn method_and_path(request: &str) -> Option<(&str, &str)> {
    let mut parts = request.split(' ').filter(|p| !p.is_empty());
    match (parts.next(), parts.next()) {
        (Some(m), Some(p)) if m.bytes().all(|b| b.is_ascii_uppercase()) => Some((m, p)),
        _ => None,
    }
}

fn token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ');
    if s.is_empty() {
        return None;
    }
    let end = s.find(' ').unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

/// A Common (`%h %l %u %t "%r" %>s %b`) or Combined (plus `"%{Referer}i"
/// "%{User-agent}i"`) Log Format line. Fields after those are ignored.
pub fn parse_clf<'a>(ctx: &'a FileCtx, text: &'a str) -> Parsed<'a> {
    let reject = |r: Reject| Parsed::Reject(Table::ApiRequests, r);
    let unrecognized = || {
        reject(Reject::line(
            RejectReason::UnrecognizedLine,
            "unrecognized line: not JSON, a CLIProxyAPI main-log line or Common/Combined Log Format",
        ))
    };
    let Some((host, rest)) = token(text) else {
        return unrecognized();
    };
    let Some((_ident, rest)) = token(rest) else {
        return unrecognized();
    };
    let rest = rest.trim_start_matches(' ');
    // %u may itself be quoted or hold spaces in rare setups: read to " [".
    let Some(bracket_at) = rest.find(" [") else {
        return unrecognized();
    };
    let rest = &rest[bracket_at + 1..];
    let Some((time_text, rest)) = bracket(rest) else {
        return unrecognized();
    };
    let fmt = |r: Reject| r.format("clf");
    let Some(ts) = clf_time(time_text) else {
        return reject(fmt(Reject::timestamp(
            "time",
            format!("{time_text:?} is not a [day/Mon/year:HH:MM:SS zone] time"),
        )));
    };
    let dated = |r: Reject| reject(fmt(r).at(Some(ts)));
    let Some((request, rest)) = quoted(rest) else {
        return dated(Reject::value("request", "expected a quoted request line"));
    };
    let Some((status, rest)) = token(rest) else {
        return dated(Reject::missing("status"));
    };
    let status = match status_of(status) {
        Ok(s) => s,
        Err(r) => return dated(r),
    };
    let Some((bytes, rest)) = token(rest) else {
        return dated(Reject::missing("bytes"));
    };
    let bytes = if bytes == "-" {
        0
    } else {
        match bytes.parse::<i64>() {
            Ok(b) if b >= 0 => b,
            _ => {
                return dated(Reject::value(
                    "bytes",
                    format!("{bytes:?} is not a byte count"),
                ));
            }
        }
    };
    let rest = rest.trim_start_matches(' ');
    let (referer, user_agent, log_format) = if rest.starts_with('"') {
        let Some((referer, rest)) = quoted(rest) else {
            return dated(Reject::value("referer", "unterminated quoted field"));
        };
        let Some((ua, _)) = quoted(rest.trim_start_matches(' ')) else {
            return dated(Reject::value(
                "user_agent",
                "expected a quoted user agent after the referer",
            ));
        };
        (Some(referer), Some(ua), "combined")
    } else if rest.is_empty() {
        (None, None, "common")
    } else {
        return dated(Reject::line(
            RejectReason::UnrecognizedLine,
            format!("unexpected text after the byte count: {:?}", cut(rest, 40)),
        ));
    };
    let dash = |s: Option<Cow<'a, str>>| s.filter(|v| !v.is_empty() && v != "-");
    // The request's method and path, borrowed from the line where the
    // request had no escapes.
    let (method, path): (Option<Text<'a>>, Option<Cow<'a, str>>) = match request {
        Cow::Borrowed(r) => match method_and_path(r) {
            Some((m, p)) => (Some(Text::Borrowed(m)), Some(Cow::Borrowed(p))),
            None => (None, None),
        },
        Cow::Owned(r) => match method_and_path(&r) {
            Some((m, p)) => (
                Some(Text::Owned(m.to_string())),
                Some(Cow::Owned(p.to_string())),
            ),
            None => (None, None),
        },
    };
    row(
        ctx,
        text,
        Access {
            ts,
            request_id: None,
            status,
            latency_us: None,
            client_ip: Some(host),
            method,
            path,
            bytes: Some(bytes),
            referer: dash(referer),
            user_agent: dash(user_agent),
            error: None,
            log_format,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::test_util::{ctx, ts};
    use crate::ingest::parse::{SourceKind, parse_line};
    use crate::lake::tables::ApiRequestRow;

    fn parse(line: &str) -> Parsed<'static> {
        // Leaked: a parsed line may borrow from its context and its text.
        let ctx: &'static FileCtx = Box::leak(Box::new(ctx(SourceKind::Cliproxy)));
        let line: &'static str = Box::leak(line.to_owned().into_boxed_str());
        parse_line(ctx, line.as_bytes())
    }

    fn request(line: &str) -> ApiRequestRow {
        match parse(line) {
            Parsed::Request(r, _) => r.to_row(),
            other => panic!("expected a request row, got {other:?}"),
        }
    }

    fn reject_field(line: &str) -> Option<&'static str> {
        match parse(line) {
            Parsed::Reject(Table::ApiRequests, r) => r.field,
            other => panic!("expected a reject, got {other:?}"),
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("23.559s"), Some(23_559_000));
        assert_eq!(parse_go_duration("7ms"), Some(7000));
        assert_eq!(parse_go_duration("0s"), Some(0));
        assert_eq!(parse_go_duration("1m2.5s"), Some(62_500_000));
        assert_eq!(parse_go_duration("150µs"), Some(150));
        assert_eq!(parse_go_duration("1.2µs"), Some(1));
        assert_eq!(parse_go_duration("500ns"), Some(1));
        assert_eq!(parse_go_duration("1h0m0s"), Some(3_600_000_000));
        for bad in ["", "s", "12", "1x", "--1s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn current_main_log_access_line() {
        let r = request(
            r#"[2026-01-05 10:07:49] [a1b2c3d4] [info ] [gin_logger.go:97] 200 |       23.559s |       127.0.0.1 | POST    "/v1/chat/completions""#,
        );
        assert_eq!(r.ts, ts("2026-01-05T10:07:49Z"));
        assert_eq!(
            (r.request_id.as_deref(), r.status, r.latency_us),
            (Some("a1b2c3d4"), 200, Some(23_559_000))
        );
        assert_eq!(
            (
                r.client_ip.as_deref(),
                r.method.as_deref(),
                r.path.as_deref()
            ),
            (
                Some("127.0.0.1"),
                Some("POST"),
                Some("/v1/chat/completions")
            )
        );
        assert_eq!(
            (r.provider.as_deref(), &*r.log_format),
            (Some("openai"), "cliproxy")
        );
        let r = request(
            r#"[2026-01-05 10:07:50] [--------] [warn ] [gin_logger.go:97] 502 |          1.2s |       ::1 | POST    "/v1beta/models/gemini-2.5-pro:generateContent?key=*****" | upstream timeout"#,
        );
        assert_eq!(
            (r.request_id, r.status, r.error.as_deref()),
            (None, 502, Some("upstream timeout"))
        );
        assert_eq!(
            (r.model.as_deref(), r.path.as_deref()),
            (
                Some("gemini-2.5-pro"),
                Some("/v1beta/models/gemini-2.5-pro:generateContent")
            )
        );
    }

    #[test]
    fn older_gin_lines_from_formats_md() {
        let r = request(
            r#"[2025-11-24 10:07:40] [info] [gin_logger.go:58] [GIN] 2025/11/24 - 10:07:40 | 200 |           7ms | fd2b:6d4:c6af:cafe::185 | GET     "/v0/management/logs""#,
        );
        assert_eq!(
            (r.status, r.latency_us, r.client_ip.as_deref()),
            (200, Some(7000), Some("fd2b:6d4:c6af:cafe::185"))
        );
        assert_eq!(&*r.log_format, "cliproxy_gin");
        let r = request(
            r#"[2025-11-24 10:07:49] [info] [gin_logger.go:58] [GIN] 2025/11/24 - 10:07:49 | 200 |            0s |       127.0.0.1 | GET     "/v1/models""#,
        );
        assert_eq!(
            (r.path.as_deref(), r.latency_us),
            (Some("/v1/models"), Some(0))
        );
    }

    #[test]
    fn other_main_log_lines_are_skipped() {
        for line in [
            "[2026-01-05 10:07:49] [--------] [info ] [main.go:212] CLIProxyAPI Version: 6.6.0",
            "[2025-11-24 10:07:40] [warn] [config.go:58] config file changed",
        ] {
            assert_eq!(
                parse(line),
                Parsed::Skip(Table::ApiRequests, SkipReason::NonAccessLogLine),
                "{line}"
            );
        }
        assert_eq!(
            reject_field(
                r#"[2026-01-05 10:07:49] [a1b2c3d4] [info ] [gin_logger.go:97] 2x0 | 1s | 127.0.0.1 | GET "/""#
            ),
            Some("status")
        );
        assert_eq!(
            reject_field("[2026-13-05 10:07:49] [a1b2c3d4] [info ] [gin_logger.go:97] 200"),
            Some("timestamp")
        );
    }

    #[test]
    fn common_and_combined_lines() {
        let r = request(
            r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#,
        );
        assert_eq!(r.ts, ts("2000-10-10T20:55:36Z"));
        assert_eq!(
            (r.status, r.bytes, &*r.log_format),
            (200, Some(2326), "common")
        );
        let r = request(
            r#"10.0.0.1 - - [25/Dec/2025:10:30:00 +0000] "POST /v1/messages HTTP/1.1" 200 1234 "-" "anthropic-sdk/0.1.0""#,
        );
        assert_eq!(
            (
                r.provider.as_deref(),
                r.referer.as_deref(),
                r.user_agent.as_deref()
            ),
            (Some("anthropic"), None, Some("anthropic-sdk/0.1.0"))
        );
        // Apache writes `-` for no bytes, nginx 0; escaped quotes; IPv6 client; query dropped.
        let r = request(
            r#"2001:db8::1 - - [25/Dec/2025:10:30:00 +0100] "GET /v1beta/models/gemini-2.5-flash:generateContent?key=AIzaSECRET HTTP/1.1" 304 - "https://x/?token=abc" "curl \"quoted\" \\ agent""#,
        );
        assert_eq!(
            (r.bytes, r.client_ip.as_deref(), r.path.as_deref()),
            (
                Some(0),
                Some("2001:db8::1"),
                Some("/v1beta/models/gemini-2.5-flash:generateContent")
            )
        );
        assert_eq!(r.user_agent.as_deref(), Some(r#"curl "quoted" \ agent"#));
        assert_eq!(r.referer.as_deref(), Some("https://x/?token=[REDACTED]"));
        assert_eq!(r.ts, ts("2025-12-25T09:30:00Z"));
        // A garbage request line is kept with no method or path.
        let r = request(r#"1.2.3.4 - - [25/Dec/2025:10:30:00 +0000] "\x16\x03\x01" 400 0 "-" "-""#);
        assert_eq!((r.method, r.path, r.status), (None, None, 400));
    }

    #[test]
    fn clf_rejects_name_the_field() {
        assert_eq!(
            reject_field(r#"10.0.0.1 - - [25/Dec/2025:10:30:00 +0000] "GET / HTTP/1.1" 2x0 12"#),
            Some("status")
        );
        assert_eq!(
            reject_field(r#"10.0.0.1 - - [25/Dex/2025:10:30:00 +0000] "GET / HTTP/1.1" 200 12"#),
            Some("time")
        );
        assert_eq!(
            reject_field(r#"10.0.0.1 - - [25/Dec/2025:10:30:00 +0000] "GET / HTTP/1.1" 200 abc"#),
            Some("bytes")
        );
        assert_eq!(reject_field("hello world"), None);
    }

    proptest::proptest! {
        /// A field without escapes is borrowed; whatever the field, the
        /// result is the unescaping loop's.
        #[test]
        fn a_borrowed_quoted_field_is_the_unescaped_one(s in r#"[a-z "\\x0-9A-F/-]{0,24}"#) {
            let quoted_text = format!("\"{s}");
            let slow = unescape(&s).map(|(out, rest)| (out, rest.to_string()));
            let fast = quoted(&quoted_text).map(|(out, rest)| (out.into_owned(), rest.to_string()));
            proptest::prop_assert_eq!(fast, slow);
        }
    }
}
