//! Access lines, one per call: the 1c CLIProxyAPI main log (`main.log`, with its own
//! banner and note lines) or 1d Common / Combined Log Format (`access.log`).

use std::fmt::Write as _;

use rand::Rng;

use super::SampleError;
use super::api::{AccessQuirk, Api, Call, Family, MODELS};
use super::plan::ClfFlavor;
use super::stream::Stream;
use super::time::{w_clf_ts, w_gin_ts, w_go_duration, w_mainlog_ts};
use super::totals::{Bucket, Tally};

impl Api<'_> {
    /// The access line of a call, plus the main log's own lines (banners after an
    /// upgrade, notes, upstream errors) and now and then a request that is not a model call.
    pub(super) fn access_lines(
        &mut self,
        ac: &mut Stream,
        tally: &mut Tally,
        call: &Call,
    ) -> Result<(), SampleError> {
        let secs = call.secs;
        ac.at(secs, tally)?;
        if self.plan.clf.is_none() {
            if !self.upgraded && secs >= self.plan.upgrade_at {
                self.upgraded = true;
                let at = self.plan.upgrade_at;
                self.main_line(
                    ac,
                    at,
                    None,
                    "info",
                    "main.go:248",
                    "received signal terminated, shutting down",
                    true,
                )?;
                self.banner(ac, at + 2, false)?;
            }
            if self.rng.random_bool(0.004) {
                const NOTES: [(&str, &str, &str); 4] = [
                    (
                        "warn",
                        "conductor.go:611",
                        "auth index 1 cooling down for 60s after upstream rate limit",
                    ),
                    (
                        "info",
                        "watcher.go:233",
                        "config file changed, reloading clients",
                    ),
                    (
                        "warn",
                        "token_refresh.go:88",
                        "oauth token refresh took 4.2s, serving with cached token",
                    ),
                    ("info", "usage_logger.go:141", "usage statistics flushed"),
                ];
                let (level, caller, msg) = NOTES[self.rng.random_range(0..NOTES.len())];
                self.main_line(ac, secs, None, level, caller, msg, !self.upgraded)?;
            }
            if call.status >= 500 && self.upgraded {
                let caller = match MODELS[call.model].family {
                    Family::Anthropic => "claude_executor.go:241",
                    Family::OpenAi => "codex_executor.go:198",
                    Family::Google => "gemini_executor.go:276",
                };
                self.scratch.clear();
                let _ = write!(
                    self.scratch,
                    "upstream request failed, status {}",
                    call.status
                );
                let msg = std::mem::take(&mut self.scratch);
                self.main_line(ac, secs, Some(call.rid), "error", caller, &msg, false)?;
                self.scratch = msg;
            }
        }
        let aq = if ac.corrupt(&mut self.rng) {
            self.quirk_a += 1;
            if self.quirk_a % 2 == 1 {
                AccessQuirk::BadStatus
            } else {
                AccessQuirk::BadDate
            }
        } else {
            AccessQuirk::None
        };
        self.buf.clear();
        self.access_line(call, aq);
        let bucket = if aq == AccessQuirk::None {
            Bucket::Row
        } else {
            Bucket::Reject
        };
        ac.emit(&self.buf, bucket)?;

        // Now and then a request that is not a model call.
        if self.rng.random_bool(0.01) {
            self.buf.clear();
            self.models_line(call);
            ac.emit(&self.buf, Bucket::Row)?;
        }
        Ok(())
    }

    /// The access line of a call: 1c in main.log or 1d in access.log.
    pub(super) fn access_line(&mut self, c: &Call, quirk: AccessQuirk) {
        self.w_path(c.model, c.ep);
        let path = std::mem::take(&mut self.path);
        let req = Req {
            secs: c.secs,
            rid: Some(c.rid),
            status: c.status,
            latency_ms: c.latency_ms,
            user: c.user,
            method: "POST",
            path: &path,
            bytes: c.bytes,
            ua: c.ua,
        };
        match self.plan.clf {
            None => self.line_1c(&req, quirk),
            Some(flavor) => self.line_clf(&req, flavor, quirk),
        }
        self.path = path;
    }

    /// `GET /v1/models` (or a `HEAD` health check behind a web server).
    fn models_line(&mut self, c: &Call) {
        let head = self.plan.clf.is_some() && self.rng.random_bool(0.3);
        let req = Req {
            secs: c.secs,
            rid: None,
            status: 200,
            latency_ms: self.rng.random_range(0..4),
            user: c.user,
            method: if head { "HEAD" } else { "GET" },
            path: "/v1/models",
            bytes: if head {
                0
            } else {
                self.rng.random_range(2_000..2_600)
            },
            ua: c.ua,
        };
        match self.plan.clf {
            None => self.line_1c(&req, AccessQuirk::None),
            Some(flavor) => self.line_clf(&req, flavor, AccessQuirk::None),
        }
    }

    fn line_1c(&mut self, r: &Req, quirk: AccessQuirk) {
        let local = r.secs + i64::from(self.tz.at(r.secs));
        let bad_day = quirk == AccessQuirk::BadDate;
        let level = match r.status {
            500.. => "error",
            400.. => "warn",
            _ => "info",
        };
        let b = &mut self.buf;
        b.push('[');
        w_mainlog_ts(b, local, bad_day);
        if self.upgraded {
            b.push_str("] [");
            match r.rid {
                Some(rid) => {
                    let _ = write!(b, "{rid:08x}");
                }
                None => b.push_str("--------"),
            }
            let _ = write!(b, "] [{level:<5}] [gin_logger.go:97] ");
        } else {
            let _ = write!(b, "] [{level}] [gin_logger.go:58] [GIN] ");
            w_gin_ts(b, local, bad_day);
            b.push_str(" | ");
        }
        if quirk == AccessQuirk::BadStatus {
            let _ = write!(b, "{}x{}", r.status / 100, r.status % 10);
        } else {
            let _ = write!(b, "{:3}", r.status);
        }
        self.scratch.clear();
        w_go_duration(&mut self.scratch, r.latency_ms);
        let _ = write!(
            b,
            " | {:>13} | {:>15} | {:<7} \"{}\"",
            self.scratch, self.ips[r.user], r.method, r.path
        );
    }

    fn line_clf(&mut self, r: &Req, flavor: ClfFlavor, quirk: AccessQuirk) {
        let off = self.offset(r.secs).unwrap_or(0);
        let b = &mut self.buf;
        let _ = write!(b, "{} - - [", self.ips[r.user]);
        w_clf_ts(b, r.secs, off, quirk == AccessQuirk::BadDate);
        let _ = write!(b, "] \"{} {} HTTP/1.1\" ", r.method, r.path);
        if quirk == AccessQuirk::BadStatus {
            let _ = write!(b, "{}x{}", r.status / 100, r.status % 10);
        } else {
            let _ = write!(b, "{}", r.status);
        }
        match (r.bytes, flavor) {
            (0, ClfFlavor::NginxCombined) => b.push_str(" 0"),
            (0, _) => b.push_str(" -"),
            (n, _) => {
                let _ = write!(b, " {n}");
            }
        }
        if flavor != ClfFlavor::ApacheCommon {
            let _ = write!(b, " \"-\" \"{}\"", r.ua);
        }
    }

    /// A main-log line that is not an access line (skipped by ingest).
    #[allow(clippy::too_many_arguments)]
    fn main_line(
        &mut self,
        ac: &mut Stream,
        secs: i64,
        rid: Option<u32>,
        level: &str,
        caller: &str,
        msg: &str,
        old: bool,
    ) -> Result<(), SampleError> {
        let local = secs + i64::from(self.tz.at(secs));
        let b = &mut self.buf;
        b.clear();
        b.push('[');
        w_mainlog_ts(b, local, false);
        if old {
            let _ = write!(b, "] [{level}] [{caller}] {msg}");
        } else {
            match rid {
                Some(rid) => {
                    let _ = write!(b, "] [{rid:08x}]");
                }
                None => b.push_str("] [--------]"),
            }
            let _ = write!(b, " [{level:<5}] [{caller}] {msg}");
        }
        ac.emit(&self.buf, Bucket::Skipped)
    }

    pub(super) fn banner(
        &mut self,
        ac: &mut Stream,
        secs: i64,
        old: bool,
    ) -> Result<(), SampleError> {
        let (version, caller) = if old {
            (
                "CLIProxyAPI Version: 6.3.2, Commit: 1a7c9e2, BuiltAt: 2026-07-02T11:20:31Z",
                "main.go:180",
            )
        } else {
            (
                "CLIProxyAPI Version: 6.6.0, Commit: 8d4b2c1, BuiltAt: 2026-09-18T08:12:55Z",
                "main.go:212",
            )
        };
        self.main_line(ac, secs, None, "info", caller, version, old)?;
        self.main_line(
            ac,
            secs,
            None,
            "info",
            "server.go:471",
            "API server started successfully on: :8317",
            old,
        )?;
        self.main_line(
            ac,
            secs + 1,
            None,
            "info",
            "watcher.go:172",
            "watching config file and auth directory",
            old,
        )
    }
}

struct Req<'r> {
    secs: i64,
    rid: Option<u32>,
    status: u16,
    latency_ms: u64,
    user: usize,
    method: &'r str,
    path: &'r str,
    bytes: u64,
    ua: &'r str,
}
