//! Command logs (`history.jsonl`): shell commands, patterns and operations, some with
//! secrets in them.

use std::fmt::Write as _;

use chrono_tz::Tz;
use rand::Rng;
use rand::rngs::SmallRng;

use super::registry::VmBase;
use super::stream::Stream;
use super::time::{Frac, TzOff, w_rfc3339};
use super::totals::{Bucket, Tally};
use super::{ALNUM, Ctx, DAY, SampleError, lognormal, push_random};

const COMMANDS: [&str; 14] = [
    "git pull --rebase",
    "docker compose up -d",
    "docker ps --format '{{.Names}}'",
    "tail -n 200 /var/log/cliproxy/main.log",
    "systemctl status cliproxyapi",
    "df -h",
    "htop",
    "npm run build",
    "cargo build --release",
    "python3 manage.py migrate",
    "kubectl get pods -n prod",
    "ls -la ~/.cli-proxy-api",
    "vim config.yaml",
    "grep -c \"status\\\":429\" usage.jsonl",
];
const PATTERNS: [(&str, &str); 4] = [
    ("git-sync", "git fetch --all && git rebase origin/main"),
    ("deploy-release", "./scripts/deploy.sh --env prod"),
    ("db-backup", "pg_dump -Fc app > /backups/app.dump"),
    (
        "log-check",
        "journalctl -u cliproxyapi --since \"1 hour ago\"",
    ),
];
const OPERATIONS: [&str; 4] = [
    "systemctl restart cliproxyapi",
    "apt-get upgrade -y",
    "certbot renew",
    "reboot",
];
const UNIX_USERS: [&str; 4] = ["ubuntu", "deploy", "root", "ci"];

pub(super) struct Commands<'a> {
    ctx: &'a Ctx,
    vm: &'a VmBase,
    rng: SmallRng,
    tz: TzOff,
    local_offsets: bool,
    buf: String,
    cmd: String,
    times: Vec<i64>,
    quirk: usize,
}

impl<'a> Commands<'a> {
    pub(super) fn new(ctx: &'a Ctx, idx: usize, vm: &'a VmBase) -> Commands<'a> {
        Commands {
            ctx,
            vm,
            rng: ctx.rng(idx, 3),
            tz: TzOff::new(vm.tz),
            local_offsets: !ctx.clean && vm.tz != Tz::UTC,
            buf: String::with_capacity(512),
            cmd: String::with_capacity(256),
            times: Vec::new(),
            quirk: 0,
        }
    }

    pub(super) fn run(mut self, s: &mut Stream, tally: &mut Tally) -> Result<(), SampleError> {
        let per_day = if self.ctx.events_per_day == 0 {
            0
        } else {
            (self.ctx.events_per_day + 5) / 10
        };
        for day in 0..i64::from(self.ctx.days) {
            let day_start = self.ctx.start + day * DAY;
            self.times.clear();
            // Working hours, local time (offset of the day's start).
            let off = i64::from(self.tz.at(day_start));
            for _ in 0..per_day {
                let local = self.rng.random_range(7 * 3_600..23 * 3_600);
                self.times.push(day_start + local - off);
            }
            self.times.sort_unstable();
            for i in 0..self.times.len() {
                let t = self.times[i];
                if t < self.ctx.start || t >= self.vm.end {
                    continue;
                }
                s.at(t, tally)?;
                self.record(s, t)?;
            }
        }
        s.finish(tally, None)
    }

    fn record(&mut self, s: &mut Stream, t: i64) -> Result<(), SampleError> {
        let rng = &mut self.rng;
        let r: f64 = rng.random();
        self.cmd.clear();
        let (kind, pattern) = if r < 0.06 {
            match rng.random_range(0..4) {
                0 => {
                    self.cmd.push_str("export OPENAI_API_KEY=sk-proj-");
                    push_random(&mut self.cmd, rng, ALNUM, 40);
                }
                1 => self
                    .cmd
                    .push_str("mysql -h db.internal -u app --password hunter2 billing"),
                2 => {
                    self.cmd.push_str("curl -H \"Authorization: Bearer ");
                    push_random(&mut self.cmd, rng, ALNUM, 32);
                    self.cmd.push_str("\" https://api.anthropic.com/v1/models");
                }
                _ => {
                    self.cmd.push_str("export ANTHROPIC_API_KEY=sk-ant-api03-");
                    push_random(&mut self.cmd, rng, ALNUM, 48);
                }
            }
            ("command", None)
        } else if r < 0.75 {
            self.cmd
                .push_str(COMMANDS[rng.random_range(0..COMMANDS.len())]);
            ("command", None)
        } else if r < 0.9 {
            let (name, cmd) = PATTERNS[rng.random_range(0..PATTERNS.len())];
            self.cmd.push_str(cmd);
            ("pattern", Some(name))
        } else {
            self.cmd
                .push_str(OPERATIONS[rng.random_range(0..OPERATIONS.len())]);
            ("operation", None)
        };
        let user = UNIX_USERS[rng.random_range(0..UNIX_USERS.len())];
        let duration = lognormal(rng, 2.0, 1.5).min(3_600.0);
        let exit_code = if rng.random_bool(0.9) {
            0
        } else {
            [1, 2, 127, 130][rng.random_range(0..4)]
        };
        let corrupt = s.corrupt(rng);
        let quirk = if corrupt {
            self.quirk += 1;
            self.quirk % 3
        } else {
            usize::MAX
        };
        let off = self.local_offsets.then(|| self.tz.at(t));
        let b = &mut self.buf;
        b.clear();
        b.push('{');
        if quirk != 1 {
            b.push_str("\"timestamp\":\"");
            w_rfc3339(b, t, 0, Frac::None, off);
            b.push_str("\",");
        }
        let kind = if quirk == 0 { "login" } else { kind };
        let _ = write!(
            b,
            "\"user\":\"{user}\",\"activity_type\":\"{kind}\",\"command\":\""
        );
        push_json_escaped(b, &self.cmd);
        b.push_str("\",\"pattern_name\":");
        match pattern {
            Some(p) => {
                let _ = write!(b, "\"{p}\"");
            }
            None => b.push_str("null"),
        }
        let _ = write!(
            b,
            ",\"duration_seconds\":{duration:.2},\"exit_code\":{exit_code}}}"
        );
        if quirk == 2 {
            let cut = self.rng.random_range(b.len() / 3..b.len() - 1);
            b.truncate(cut);
        }
        s.emit(
            &self.buf,
            if corrupt { Bucket::Reject } else { Bucket::Row },
        )
    }
}

/// JSON string body escaping (no surrounding quotes).
fn push_json_escaped(buf: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => buf.push(c),
        }
    }
}
