//! API usage records, one per call: 1a JSON usage lines (`usage.log`) and 1b CLIProxyAPI
//! usage records (`usage.jsonl`), with the token sums ingest must find in them.

use std::fmt::Write as _;

use rand::Rng;

use super::api::{Api, Call, Ep, Family, GEMINI_FLASH, GPT_41, MODELS, Tok, UsageQuirk, fail_body};
use super::stream::VmStreams;
use super::time::{Frac, w_rfc3339};
use super::totals::{Bucket, Tally};
use super::{SampleError, TokenSums};

const QUIRKS_1A: [UsageQuirk; 6] = [
    UsageQuirk::Truncate,
    UsageQuirk::NonNumeric,
    UsageQuirk::Negative,
    UsageQuirk::CachedOverPrompt,
    UsageQuirk::NoTimestamp,
    UsageQuirk::NoModel,
];
const QUIRKS_1B: [UsageQuirk; 5] = [
    UsageQuirk::Truncate,
    UsageQuirk::NonNumeric,
    UsageQuirk::Negative,
    UsageQuirk::CachedOverPrompt,
    UsageQuirk::NoTimestamp,
];

/// A call's tokens as the lake stores them (formats.md section 2): OpenAI and Google
/// prompts include cached reads, Google candidates exclude reasoning.
fn lake_tokens(family: Family, t: Tok) -> TokenSums {
    let (input, output) = match family {
        Family::Anthropic => (t.input, t.output),
        Family::OpenAi => (t.input - t.read, t.output),
        Family::Google => (t.input - t.read, t.output + t.reasoning),
    };
    TokenSums {
        input,
        cache_read: t.read,
        cache_write: t.write,
        output,
        reasoning: t.reasoning,
    }
}

impl Api<'_> {
    /// The usage record of a call (1a or 1b), now and then malformed.
    pub(super) fn usage_record(
        &mut self,
        s: &mut VmStreams,
        tally: &mut Tally,
        call: &mut Call,
    ) -> Result<(), SampleError> {
        let secs = call.secs;
        let one_a = self.uses_1a(secs);
        let us = (if one_a {
            s.usage_a.as_mut()
        } else {
            s.usage_b.as_mut()
        })
        .expect("usage stream for the call time");
        us.at(secs, tally)?;
        let quirk = if us.corrupt(&mut self.rng) {
            let q = if one_a {
                QUIRKS_1A[self.quirk_u % QUIRKS_1A.len()]
            } else {
                QUIRKS_1B[self.quirk_u % QUIRKS_1B.len()]
            };
            self.quirk_u += 1;
            q
        } else {
            UsageQuirk::None
        };
        if quirk == UsageQuirk::CachedOverPrompt {
            // An OpenAI or Google record whose cached tokens exceed its prompt tokens.
            call.model = if self.rng.random_bool(0.5) {
                GPT_41
            } else {
                GEMINI_FLASH
            };
            call.ep = if call.model == GPT_41 {
                Ep::Chat
            } else {
                Ep::Generate
            };
            call.status = 200;
            let prompt = self.rng.random_range(200..3_000);
            call.tok = Tok {
                input: prompt,
                output: self.rng.random_range(20..600),
                read: prompt + self.rng.random_range(1..5_000),
                write: 0,
                reasoning: 0,
            };
        }
        self.buf.clear();
        self.usage_line(call, !one_a, quirk);
        if quirk == UsageQuirk::Truncate {
            let cut = self
                .rng
                .random_range(self.buf.len() / 4..self.buf.len() - 2);
            self.buf.truncate(cut);
        }
        let bucket = if quirk == UsageQuirk::None {
            let t = call.tok;
            if one_a {
                tally.tokens_1a.add(&TokenSums {
                    input: t.input,
                    cache_read: t.read,
                    cache_write: t.write,
                    output: t.output,
                    reasoning: t.reasoning,
                });
            }
            tally
                .lake_tokens
                .add(&lake_tokens(MODELS[call.model].family, t));
            Bucket::Row
        } else {
            Bucket::Reject
        };
        us.emit(&self.buf, bucket)?;
        Ok(())
    }

    pub(super) fn usage_line(&mut self, c: &Call, one_b: bool, quirk: UsageQuirk) {
        self.w_path(c.model, c.ep);
        let off = self.offset(c.secs);
        if one_b {
            self.line_1b(c, off, quirk);
        } else {
            self.line_1a(c, off, quirk);
        }
    }

    /// `"output_tokens":N`, or its malformed variants.
    fn w_output_tokens(buf: &mut String, n: u64, quirk: UsageQuirk) {
        match quirk {
            UsageQuirk::NonNumeric => buf.push_str("\"output_tokens\":\"n/a\""),
            UsageQuirk::Negative => {
                let _ = write!(buf, "\"output_tokens\":-{}", n + 1);
            }
            _ => {
                let _ = write!(buf, "\"output_tokens\":{n}");
            }
        }
    }

    /// 1a: `{"timestamp","path","status","model","input_tokens","output_tokens", optional...}`.
    fn line_1a(&mut self, c: &Call, off: Option<i32>, quirk: UsageQuirk) {
        let spec = &MODELS[c.model];
        let p = self.plan;
        let b = &mut self.buf;
        b.push('{');
        if quirk != UsageQuirk::NoTimestamp {
            b.push_str("\"timestamp\":\"");
            let frac = if p.a_millis { Frac::Millis } else { Frac::None };
            w_rfc3339(b, c.secs, c.nanos, frac, off);
            b.push_str("\",");
        }
        let _ = write!(b, "\"path\":\"{}\",\"status\":{},", self.path, c.status);
        if quirk != UsageQuirk::NoModel {
            let _ = write!(b, "\"model\":\"{}\",", spec.name);
        }
        let _ = write!(b, "\"input_tokens\":{},", c.tok.input);
        Self::w_output_tokens(b, c.tok.output, quirk);
        if p.a_request_id {
            let _ = write!(b, ",\"request_id\":\"{:08x}\"", c.rid);
        }
        if p.a_provider || quirk == UsageQuirk::CachedOverPrompt {
            let provider = match spec.family {
                Family::Anthropic => "anthropic",
                Family::OpenAi => "openai",
                Family::Google => "google",
            };
            let _ = write!(b, ",\"provider\":\"{provider}\"");
        }
        if c.tok.read > 0 {
            let _ = write!(b, ",\"cache_read_tokens\":{}", c.tok.read);
        }
        if c.tok.write > 0 {
            let _ = write!(b, ",\"cache_creation_tokens\":{}", c.tok.write);
        }
        if c.tok.reasoning > 0 {
            let _ = write!(b, ",\"reasoning_tokens\":{}", c.tok.reasoning);
        }
        if p.a_latency {
            let _ = write!(b, ",\"latency_ms\":{}", c.latency_ms);
        }
        let user = &self.vm.users[c.user];
        if p.a_api_key {
            let _ = write!(b, ",\"api_key\":\"{}\"", user.key);
        }
        if let (true, Some(uid)) = (p.a_user, &user.user_id) {
            let _ = write!(b, ",\"user\":\"{uid}\"");
        }
        b.push('}');
    }

    /// 1b: CLIProxyAPI usage record, field order as in its Go struct.
    fn line_1b(&mut self, c: &Call, off: Option<i32>, quirk: UsageQuirk) {
        let spec = &MODELS[c.model];
        let p = self.plan;
        let t = c.tok;
        let (provider, executor, auth_type) = match (spec.family, c.ep) {
            (Family::Anthropic, _) => (
                "claude",
                "ClaudeExecutor",
                if p.claude_oauth { "oauth" } else { "apikey" },
            ),
            (Family::OpenAi, Ep::Responses) if spec.name.starts_with("gpt-5") => {
                ("codex", "CodexExecutor", "oauth")
            }
            (Family::OpenAi, _) => ("openai", "OpenAICompatExecutor", "apikey"),
            (Family::Google, _) => ("gemini", p.gemini_exec, "oauth"),
        };
        // tokens{} as CLIProxyAPI fills it, and the normalized breakdown.
        let (input, output, reasoning, creation, total) = match spec.family {
            Family::Anthropic => (
                t.input,
                t.output,
                0,
                t.write,
                t.input + t.read + t.write + t.output,
            ),
            Family::OpenAi => (t.input, t.output, t.reasoning, 0, t.input + t.output),
            Family::Google => (
                t.input,
                t.output,
                t.reasoning,
                0,
                t.input + t.output + t.reasoning,
            ),
        };
        let b = &mut self.buf;
        b.push('{');
        if quirk != UsageQuirk::NoTimestamp {
            b.push_str("\"timestamp\":\"");
            w_rfc3339(b, c.secs, c.nanos, Frac::Nanos, off);
            b.push_str("\",");
        }
        let _ = write!(
            b,
            "\"latency_ms\":{},\"ttft_ms\":{},\"source\":\"",
            c.latency_ms, c.ttft_ms
        );
        if auth_type == "oauth" {
            let _ = write!(b, "{provider}-{}@ops.example", c.auth_index + 1);
        }
        let _ = write!(
            b,
            "\",\"auth_index\":\"{}\",\"tokens\":{{\"input_tokens\":{input},",
            c.auth_index
        );
        Self::w_output_tokens(b, output, quirk);
        let _ = write!(
            b,
            ",\"reasoning_tokens\":{reasoning},\"cached_tokens\":{r},\"cache_read_tokens\":{r},\
             \"cache_read_tokens_present\":true,\"cache_creation_tokens\":{creation},\
             \"total_tokens\":{total}}},\"failed\":{}",
            c.status != 200,
            r = t.read,
        );
        if c.status != 200 {
            let _ = write!(
                b,
                ",\"fail\":{{\"status_code\":{},\"body\":\"{}\"}}",
                c.status,
                fail_body(spec.family, c.status)
            );
        }
        if c.secs >= p.breakdown_since && quirk == UsageQuirk::None {
            let (in_total, uncached, out_total, non_reasoning) = match spec.family {
                Family::Anthropic => (t.input + t.read + t.write, t.input, t.output, t.output),
                Family::OpenAi => (t.input, t.input - t.read, t.output, t.output - t.reasoning),
                Family::Google => (t.input, t.input - t.read, t.output + t.reasoning, t.output),
            };
            let _ = write!(
                b,
                ",\"accounting_version\":2,\"token_breakdown\":{{\"schema_version\":2,\
                 \"quality\":\"complete\",\"total_tokens\":{},\"input\":{{\"total_tokens\":{in_total},\
                 \"uncached_tokens\":{uncached},\"cache_read_tokens\":{},\"cache_write_tokens\":{}}},\
                 \"output\":{{\"total_tokens\":{out_total},\"non_reasoning_tokens\":{non_reasoning},\
                 \"reasoning_tokens\":{}}},\"unclassified_tokens\":0}}",
                in_total + out_total,
                t.read,
                if spec.family == Family::Anthropic {
                    t.write
                } else {
                    0
                },
                out_total - non_reasoning,
            );
        }
        let _ = write!(
            b,
            ",\"provider\":\"{provider}\",\"executor_type\":\"{executor}\""
        );
        if quirk != UsageQuirk::NoModel {
            let _ = write!(b, ",\"model\":\"{}\"", spec.name);
        }
        let alias = if spec.name == "claude-sonnet-4-5-20250929" && c.rid.is_multiple_of(3) {
            "claude-sonnet-4-5"
        } else {
            spec.name
        };
        let effort = if spec.reasoning && spec.family == Family::OpenAi {
            ["low", "medium", "high"][(c.rid % 3) as usize]
        } else {
            ""
        };
        let _ = write!(
            b,
            ",\"alias\":\"{alias}\",\"endpoint\":\"{}\",\"auth_type\":\"{auth_type}\",\
             \"api_key\":\"{}\",\"request_id\":\"{:08x}\",\"reasoning_effort\":\"{effort}\",\
             \"service_tier\":\"{}\"}}",
            self.path,
            self.vm.users[c.user].key,
            c.rid,
            if c.rid.is_multiple_of(4) {
                "default"
            } else {
                ""
            },
        );
    }
}
