//! API calls: when each call happens and what it is (model, endpoint, status, tokens,
//! latency); each call writes one usage record (usage.rs) and one access line (access.rs).

use std::fmt::Write as _;

use rand::Rng;
use rand::rngs::SmallRng;
use rand_distr::{Binomial, Distribution};

use super::plan::{Plan, UsageKind};
use super::registry::VmBase;
use super::stream::VmStreams;
use super::time::{TzOff, civil};
use super::totals::Tally;
use super::{Ctx, DAY, SampleError, lognormal, uniform};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Anthropic,
    OpenAi,
    Google,
}

pub(super) struct ModelSpec {
    pub(super) name: &'static str,
    pub(super) family: Family,
    pub(super) reasoning: bool,
    prompt_median: f64,
    out_median: f64,
}

const fn m(name: &'static str, family: Family, reasoning: bool, p: f64, o: f64) -> ModelSpec {
    ModelSpec {
        name,
        family,
        reasoning,
        prompt_median: p,
        out_median: o,
    }
}

pub(super) const MODELS: [ModelSpec; 12] = [
    m(
        "claude-sonnet-4-5-20250929",
        Family::Anthropic,
        false,
        24_000.0,
        450.0,
    ),
    m("claude-opus-4-5", Family::Anthropic, false, 30_000.0, 600.0),
    m("claude-haiku-4-5", Family::Anthropic, false, 6_000.0, 250.0),
    m(
        "claude-3-5-sonnet-20241022",
        Family::Anthropic,
        false,
        8_000.0,
        400.0,
    ),
    m("gpt-5", Family::OpenAi, true, 12_000.0, 900.0),
    m("gpt-5-mini", Family::OpenAi, true, 5_000.0, 500.0),
    m("gpt-4o", Family::OpenAi, false, 3_000.0, 350.0),
    m("gpt-4.1", Family::OpenAi, false, 9_000.0, 450.0),
    m("o3", Family::OpenAi, true, 7_000.0, 1_200.0),
    m("gemini-2.5-pro", Family::Google, true, 15_000.0, 700.0),
    m("gemini-2.5-flash", Family::Google, true, 6_000.0, 400.0),
    m("gemini-1.5-pro", Family::Google, false, 9_000.0, 350.0),
];
pub(super) const GPT_41: usize = 7;
pub(super) const GEMINI_FLASH: usize = 10;

/// Model mixes: Claude-heavy, OpenAI-heavy, Gemini-heavy, mixed.
const PROFILES: [[u32; 12]; 4] = [
    [30, 8, 10, 4, 6, 3, 2, 2, 1, 2, 2, 1],
    [4, 1, 2, 1, 25, 15, 10, 10, 6, 2, 2, 1],
    [4, 1, 3, 1, 3, 2, 2, 1, 1, 20, 20, 6],
    [8, 3, 5, 3, 8, 6, 5, 5, 3, 6, 6, 3],
];

/// Relative call volume per local hour.
pub(super) const DIURNAL: [f64; 24] = [
    0.15, 0.10, 0.08, 0.08, 0.10, 0.15, 0.30, 0.60, 1.00, 1.30, 1.40, 1.40, 1.20, 1.30, 1.40, 1.40,
    1.30, 1.10, 0.80, 0.60, 0.50, 0.40, 0.30, 0.20,
];

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ep {
    Messages,
    Chat,
    Responses,
    Generate,
    StreamGenerate,
}

/// Token counts in the provider's own terms (formats.md section 2):
/// Anthropic `input` excludes `read`/`write`; OpenAI and Google `input` includes `read`;
/// OpenAI `output` includes `reasoning`; Google `output` (candidates) excludes it.
#[derive(Clone, Copy, Default)]
pub(super) struct Tok {
    pub(super) input: u64,
    pub(super) output: u64,
    pub(super) read: u64,
    pub(super) write: u64,
    pub(super) reasoning: u64,
}

pub(super) struct Call {
    pub(super) secs: i64,
    pub(super) nanos: u32,
    pub(super) rid: u32,
    pub(super) user: usize,
    pub(super) model: usize,
    pub(super) ep: Ep,
    pub(super) status: u16,
    pub(super) tok: Tok,
    pub(super) latency_ms: u64,
    pub(super) ttft_ms: u64,
    pub(super) bytes: u64,
    pub(super) auth_index: u32,
    pub(super) ua: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum UsageQuirk {
    None,
    Truncate,
    NonNumeric,
    Negative,
    CachedOverPrompt,
    NoTimestamp,
    NoModel,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum AccessQuirk {
    None,
    BadStatus,
    BadDate,
}

const USER_AGENTS: [&str; 6] = [
    "claude-cli/2.0.14 (external, cli)",
    "OpenAI/Python 1.109.1",
    "Anthropic/Python 0.69.0",
    "google-genai-sdk/1.38.0 gl-python/3.12.3",
    "codex_cli_rs/0.46.0 (Ubuntu 24.4.0; x86_64) xterm-256color",
    "curl/8.5.0",
];
/// As they appear in the log: `"` and `\` already escaped by the web server.
const ODD_USER_AGENTS: [&str; 3] = [
    r#"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \"LibreChat\"/0.8.0"#,
    r#"my-agent/2.1 (build \"nightly\"; +https://agents.example/bot)"#,
    r#"C:\\tools\\proxy-client.exe/1.4"#,
];

/// 1b `fail.body` texts, already JSON-escaped.
pub(super) fn fail_body(family: Family, status: u16) -> &'static str {
    match (family, status) {
        (Family::Anthropic, 429) => {
            r#"{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"Number of request tokens has exceeded your per-minute rate limit\"}}"#
        }
        (Family::Anthropic, 529) => {
            r#"{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}"#
        }
        (Family::Anthropic, _) => {
            r#"{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server error\"}}"#
        }
        (Family::OpenAi, 429) => {
            r#"{\"error\":{\"message\":\"Rate limit reached for requests\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}"#
        }
        (Family::OpenAi, 400) => {
            r#"{\"error\":{\"message\":\"Invalid 'input': string too long.\",\"type\":\"invalid_request_error\",\"code\":\"string_above_max_length\"}}"#
        }
        (Family::OpenAi, _) => {
            r#"{\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\"}}"#
        }
        (Family::Google, 429) => {
            r#"{\"error\":{\"code\":429,\"message\":\"Resource has been exhausted (e.g. check quota).\",\"status\":\"RESOURCE_EXHAUSTED\"}}"#
        }
        (Family::Google, _) => {
            r#"{\"error\":{\"code\":503,\"message\":\"The model is overloaded. Please try again later.\",\"status\":\"UNAVAILABLE\"}}"#
        }
    }
}

pub(super) struct Api<'a> {
    ctx: &'a Ctx,
    pub(super) vm: &'a VmBase,
    pub(super) plan: &'a Plan,
    pub(super) rng: SmallRng,
    pub(super) tz: TzOff,
    salt: u32,
    counter: u32,
    pub(super) ips: Vec<String>,
    uas: Vec<&'static str>,
    pub(super) buf: String,
    pub(super) path: String,
    pub(super) scratch: String,
    weights: Vec<f64>,
    offsets: Vec<u32>,
    pub(super) quirk_u: usize,
    pub(super) quirk_a: usize,
    pub(super) upgraded: bool,
}

impl<'a> Api<'a> {
    pub(super) fn new(ctx: &'a Ctx, idx: usize, vm: &'a VmBase, plan: &'a Plan) -> Api<'a> {
        let mut rng = ctx.rng(idx, 1);
        let salt = rng.random::<u32>();
        let ips = (0..vm.users.len())
            .map(|u| match (u + idx) % 4 {
                0 => "127.0.0.1".to_string(),
                1 => format!(
                    "10.0.{}.{}",
                    rng.random_range(0..255),
                    rng.random_range(2..255)
                ),
                2 => format!("fd2b:6d4:c6af:cafe::{:x}", rng.random_range(0x10..0xfff)),
                _ => format!(
                    "2001:db8:85a3::8a2e:370:{:x}",
                    rng.random_range(0x1000..0xffff)
                ),
            })
            .collect();
        let uas = (0..vm.users.len())
            .map(|_| USER_AGENTS[rng.random_range(0..USER_AGENTS.len())])
            .collect();
        Api {
            ctx,
            vm,
            plan,
            rng,
            tz: TzOff::new(vm.tz),
            salt,
            counter: 0,
            ips,
            uas,
            buf: String::with_capacity(2_048),
            path: String::with_capacity(128),
            scratch: String::with_capacity(64),
            weights: vec![0.0; 1_440],
            offsets: Vec::new(),
            quirk_u: 0,
            quirk_a: 0,
            upgraded: false,
        }
    }

    pub(super) fn run(mut self, s: &mut VmStreams, tally: &mut Tally) -> Result<(), SampleError> {
        let (start, end) = (self.ctx.start, self.vm.end);
        if self.plan.clf.is_none() {
            s.access.at(start, tally)?;
            self.upgraded = self.plan.upgrade_at <= start;
            self.banner(&mut s.access, start, !self.upgraded)?;
        }
        'days: for day in 0..i64::from(self.ctx.days) {
            let day_start = start + day * DAY;
            if day_start >= end {
                break;
            }
            for (minute, w) in self.weights.iter_mut().enumerate() {
                let t = day_start + minute as i64 * 60;
                let local = t + i64::from(self.tz.at(t));
                *w = DIURNAL[civil(local).h as usize];
            }
            let mut left = u64::from(self.ctx.events_per_day);
            let mut w_left: f64 = self.weights.iter().sum();
            for minute in 0..1_440usize {
                if left == 0 {
                    break;
                }
                let w = self.weights[minute];
                let p = (w / w_left).clamp(0.0, 1.0);
                w_left -= w;
                let k = if minute == 1_439 || p >= 1.0 {
                    left
                } else {
                    Binomial::new(left, p)
                        .expect("valid binomial")
                        .sample(&mut self.rng)
                };
                left -= k;
                if k == 0 {
                    continue;
                }
                self.offsets.clear();
                for _ in 0..k {
                    self.offsets.push(self.rng.random_range(0..60_000));
                }
                self.offsets.sort_unstable();
                for i in 0..self.offsets.len() {
                    let t_ms =
                        (day_start + minute as i64 * 60) * 1_000 + i64::from(self.offsets[i]);
                    if t_ms >= end * 1_000 {
                        break 'days;
                    }
                    self.call(s, tally, t_ms)?;
                }
            }
        }

        // Unterminated last lines of live files: a record cut off mid-write.
        let mut usage_tail = None;
        let mut access_tail = None;
        if self.plan.tail_usage || self.plan.tail_access {
            let t_ms = end * 1_000 - 1_500;
            let call = self.new_call(t_ms);
            if self.plan.tail_usage {
                self.buf.clear();
                self.usage_line(&call, !self.uses_1a(call.secs), UsageQuirk::None);
                usage_tail = Some(self.buf[..self.buf.len() * 3 / 5].to_string());
            }
            if self.plan.tail_access {
                self.buf.clear();
                self.access_line(&call, AccessQuirk::None);
                access_tail = Some(self.buf[..self.buf.len() / 2].to_string());
            }
        }
        let last_usage = match (&s.usage_b, &s.usage_a) {
            (Some(b), _) if !b.segs.is_empty() => 1,
            _ => 0,
        };
        if let Some(a) = s.usage_a.as_mut() {
            a.finish(
                tally,
                if last_usage == 0 {
                    usage_tail.as_deref()
                } else {
                    None
                },
            )?;
        }
        if let Some(b) = s.usage_b.as_mut() {
            b.finish(
                tally,
                if last_usage == 1 {
                    usage_tail.as_deref()
                } else {
                    None
                },
            )?;
        }
        s.access.finish(tally, access_tail.as_deref())
    }

    pub(super) fn uses_1a(&self, secs: i64) -> bool {
        match self.plan.usage {
            UsageKind::A => true,
            UsageKind::B => false,
            UsageKind::AThenB => secs < self.plan.usage_switch,
        }
    }

    fn new_call(&mut self, t_ms: i64) -> Call {
        let rng = &mut self.rng;
        let secs = t_ms.div_euclid(1_000);
        let nanos = (t_ms.rem_euclid(1_000) as u32) * 1_000_000 + rng.random_range(0..1_000_000);
        self.counter = self.counter.wrapping_add(1);
        let rid = request_id(self.salt, self.counter);
        let n_users = self.vm.users.len();
        let user = if n_users > 1 && rng.random_bool(0.4) {
            rng.random_range(1..n_users)
        } else {
            0
        };
        let weights = &PROFILES[self.plan.profile];
        let mut pick = rng.random_range(0..weights.iter().sum::<u32>());
        let mut model = 0;
        for (i, &w) in weights.iter().enumerate() {
            if pick < w {
                model = i;
                break;
            }
            pick -= w;
        }
        let spec = &MODELS[model];
        let ep = match spec.family {
            Family::Anthropic => Ep::Messages,
            Family::OpenAi => {
                let responses = if spec.reasoning { 0.7 } else { 0.1 };
                if rng.random_bool(responses) {
                    Ep::Responses
                } else {
                    Ep::Chat
                }
            }
            Family::Google => {
                if rng.random_bool(0.5) {
                    Ep::StreamGenerate
                } else {
                    Ep::Generate
                }
            }
        };
        let status = if rng.random_bool(0.02) {
            match spec.family {
                Family::Anthropic => [429, 529, 500][rng.random_range(0..3)],
                Family::OpenAi => [429, 500, 400][rng.random_range(0..3)],
                Family::Google => [429, 503][rng.random_range(0..2)],
            }
        } else {
            200
        };
        let tok = if status == 200 {
            gen_tokens(rng, spec)
        } else {
            Tok::default()
        };
        let ttft_ms = (lognormal(rng, 900.0, 0.6) as u64).clamp(80, 30_000);
        let latency_ms = if status == 200 {
            let per_tok = uniform(rng, 6.0, 25.0);
            (ttft_ms + ((tok.output + tok.reasoning) as f64 * per_tok) as u64).min(600_000)
        } else {
            rng.random_range(40..4_000)
        };
        let bytes = if status == 200 {
            600 + tok.output * 4 + rng.random_range(0..400)
        } else {
            fail_body(spec.family, status).len() as u64
        };
        let ua = if rng.random_bool(0.08) {
            ODD_USER_AGENTS[rng.random_range(0..ODD_USER_AGENTS.len())]
        } else {
            self.uas[user]
        };
        Call {
            secs,
            nanos,
            rid,
            user,
            model,
            ep,
            status,
            tok,
            latency_ms,
            ttft_ms: ttft_ms.min(latency_ms),
            bytes,
            auth_index: rng.random_range(0..3),
            ua,
        }
    }

    fn call(&mut self, s: &mut VmStreams, tally: &mut Tally, t_ms: i64) -> Result<(), SampleError> {
        let mut call = self.new_call(t_ms);
        self.usage_record(s, tally, &mut call)?;
        self.access_lines(&mut s.access, tally, &call)
    }

    pub(super) fn offset(&mut self, secs: i64) -> Option<i32> {
        self.plan.local_offsets.then(|| self.tz.at(secs))
    }

    pub(super) fn w_path(&mut self, model: usize, ep: Ep) {
        self.path.clear();
        match ep {
            Ep::Messages => self.path.push_str("/v1/messages"),
            Ep::Chat => self.path.push_str("/v1/chat/completions"),
            Ep::Responses => self.path.push_str("/v1/responses"),
            Ep::Generate | Ep::StreamGenerate => {
                let verb = if ep == Ep::Generate {
                    "generateContent"
                } else {
                    "streamGenerateContent"
                };
                let _ = write!(self.path, "/v1beta/models/{}:{verb}", MODELS[model].name);
            }
        }
    }
}

fn gen_tokens(rng: &mut SmallRng, spec: &ModelSpec) -> Tok {
    let output = (lognormal(rng, spec.out_median, 1.0) as u64).clamp(1, 32_000);
    match spec.family {
        Family::Anthropic => {
            let ctx = (lognormal(rng, spec.prompt_median, 1.0) as u64).clamp(50, 190_000);
            let r: f64 = rng.random();
            let (read, write) = if r < 0.65 {
                let read = (ctx as f64 * uniform(rng, 0.55, 0.97)) as u64;
                let write = if rng.random_bool(0.5) {
                    ((ctx - read) as f64 * uniform(rng, 0.1, 0.8)) as u64
                } else {
                    0
                };
                (read, write)
            } else if r < 0.8 {
                (0, (ctx as f64 * uniform(rng, 0.4, 0.9)) as u64)
            } else {
                (0, 0)
            };
            let input = (ctx - read - write).max(1);
            Tok {
                input,
                output,
                read,
                write,
                reasoning: 0,
            }
        }
        Family::OpenAi => {
            let prompt = (lognormal(rng, spec.prompt_median, 1.0) as u64).clamp(20, 200_000);
            let read = if prompt >= 1_024 && rng.random_bool(0.55) {
                (prompt as f64 * uniform(rng, 0.3, 0.95)) as u64 / 128 * 128
            } else {
                0
            };
            let reasoning = if spec.reasoning {
                (output as f64 * uniform(rng, 0.2, 0.85)) as u64
            } else {
                0
            };
            Tok {
                input: prompt,
                output,
                read,
                write: 0,
                reasoning,
            }
        }
        Family::Google => {
            let prompt = (lognormal(rng, spec.prompt_median, 1.0) as u64).clamp(20, 1_000_000);
            let read = if rng.random_bool(0.3) {
                (prompt as f64 * uniform(rng, 0.2, 0.8)) as u64
            } else {
                0
            };
            let reasoning = if spec.reasoning {
                (lognormal(rng, spec.out_median * 1.2, 0.9) as u64).clamp(1, 32_000)
            } else {
                0
            };
            Tok {
                input: prompt,
                output,
                read,
                write: 0,
                reasoning,
            }
        }
    }
}

/// Bijection on u32 (lowbias32), so request ids never repeat within a VM.
fn request_id(salt: u32, counter: u32) -> u32 {
    let mut x = counter ^ salt;
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}
