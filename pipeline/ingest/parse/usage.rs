//! JSON usage lines (formats.md 1a) and CLIProxyAPI usage records (1b) into
//! `api_usage` rows, with the provider's token inclusion rules applied.
//!
//! Lake semantics: `input_tokens` is uncached input, `cache_read_tokens` and
//! `cache_write_tokens` the cached parts, `output_tokens` includes reasoning
//! and `reasoning_tokens` is the reasoning part of it.

use std::borrow::Cow;

use serde::Deserialize;

use super::intern::key_digest;
use super::json::{self, Scalar};
use super::{FileCtx, IdKind, Parsed, Reject, RejectReason};
use crate::lake::tables::{ApiUsageRef, Id, Table, Text};
use crate::model::ids;
use crate::model::redact::cut;

#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(default)]
struct Record<'a> {
    #[serde(borrow)]
    timestamp: Scalar<'a>,
    #[serde(borrow)]
    path: Scalar<'a>,
    #[serde(borrow)]
    status: Scalar<'a>,
    #[serde(borrow)]
    model: Scalar<'a>,
    #[serde(borrow)]
    input_tokens: Scalar<'a>,
    #[serde(borrow)]
    output_tokens: Scalar<'a>,
    #[serde(borrow)]
    cache_read_tokens: Scalar<'a>,
    #[serde(borrow)]
    cache_creation_tokens: Scalar<'a>,
    #[serde(borrow)]
    reasoning_tokens: Scalar<'a>,
    #[serde(borrow)]
    latency_ms: Scalar<'a>,
    #[serde(borrow)]
    api_key: Scalar<'a>,
    #[serde(borrow)]
    user: Scalar<'a>,
    #[serde(borrow)]
    request_id: Scalar<'a>,
    #[serde(borrow)]
    provider: Scalar<'a>,
    // CLIProxyAPI usage record (1b)
    #[serde(borrow)]
    ttft_ms: Scalar<'a>,
    #[serde(borrow)]
    tokens: Option<Tokens<'a>>,
    #[serde(borrow)]
    failed: Scalar<'a>,
    #[serde(borrow)]
    token_breakdown: Option<Breakdown<'a>>,
    #[serde(borrow)]
    executor_type: Scalar<'a>,
    #[serde(borrow)]
    alias: Scalar<'a>,
    #[serde(borrow)]
    endpoint: Scalar<'a>,
    #[serde(borrow)]
    auth_type: Scalar<'a>,
    #[serde(borrow)]
    reasoning_effort: Scalar<'a>,
    #[serde(borrow)]
    service_tier: Scalar<'a>,
    #[serde(borrow)]
    fail: Option<Fail<'a>>,
}

#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(default)]
struct Tokens<'a> {
    #[serde(borrow)]
    input_tokens: Scalar<'a>,
    #[serde(borrow)]
    output_tokens: Scalar<'a>,
    #[serde(borrow)]
    reasoning_tokens: Scalar<'a>,
    #[serde(borrow)]
    cached_tokens: Scalar<'a>,
    #[serde(borrow)]
    cache_read_tokens: Scalar<'a>,
    #[serde(borrow)]
    cache_read_tokens_present: Scalar<'a>,
    #[serde(borrow)]
    cache_creation_tokens: Scalar<'a>,
}

#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(default)]
struct Breakdown<'a> {
    #[serde(borrow)]
    input: BreakdownInput<'a>,
    #[serde(borrow)]
    output: BreakdownOutput<'a>,
}

#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(default)]
struct BreakdownInput<'a> {
    #[serde(borrow)]
    uncached_tokens: Scalar<'a>,
    #[serde(borrow)]
    cache_read_tokens: Scalar<'a>,
    #[serde(borrow)]
    cache_write_tokens: Scalar<'a>,
}

#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(default)]
struct BreakdownOutput<'a> {
    #[serde(borrow)]
    total_tokens: Scalar<'a>,
    #[serde(borrow)]
    reasoning_tokens: Scalar<'a>,
}

#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(default)]
struct Fail<'a> {
    #[serde(borrow)]
    status_code: Scalar<'a>,
}

/// Canonical provider families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Anthropic,
    OpenAi,
    Google,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Anthropic => "anthropic",
            Family::OpenAi => "openai",
            Family::Google => "google",
        }
    }

    /// The family of a provider or executor name as CLIProxyAPI and its
    /// users write it.
    pub fn of_provider(name: &str) -> Option<Family> {
        let n = name.trim();
        // Lowercased only when it has to be: this runs for every line.
        if n.bytes().any(|b| b.is_ascii_uppercase()) {
            return Family::of_lower_provider(&n.to_ascii_lowercase());
        }
        Family::of_lower_provider(n)
    }

    fn of_lower_provider(n: &str) -> Option<Family> {
        Some(match n {
            "anthropic" | "claude" | "claude-code" => Family::Anthropic,
            "openai"
            | "codex"
            | "openai-compatibility"
            | "openai-compatible"
            | "openai_compatibility"
            | "azure"
            | "azure-openai"
            | "qwen"
            | "iflow"
            | "openrouter" => Family::OpenAi,
            "google" | "gemini" | "gemini-cli" | "gemini-web" | "vertex" | "vertexai"
            | "vertex-ai" | "aistudio" | "ai-studio" | "antigravity" => Family::Google,
            _ => return None,
        })
    }

    /// The family a model name belongs to, for records that name no provider.
    pub fn of_model(model: &str) -> Option<Family> {
        let m = model.trim();
        if m.bytes().any(|b| b.is_ascii_uppercase()) {
            return Family::of_lower_model(&m.to_ascii_lowercase());
        }
        Family::of_lower_model(m)
    }

    fn of_lower_model(m: &str) -> Option<Family> {
        let m = m.rsplit('/').next().unwrap_or(m);
        if m.starts_with("claude") {
            Some(Family::Anthropic)
        } else if m.starts_with("gpt")
            || m.starts_with("chatgpt")
            || m.starts_with("text-embedding")
            || (m.starts_with('o') && m[1..].starts_with(|c: char| c.is_ascii_digit()))
        {
            Some(Family::OpenAi)
        } else if m.starts_with("gemini") || m.starts_with("gemma") {
            Some(Family::Google)
        } else {
            None
        }
    }

    /// The API family a request path belongs to (formats.md 1d).
    pub fn of_path(path: &str) -> Option<Family> {
        let p = before_query(path);
        if p.ends_with("/v1/messages") || p.ends_with("/v1/messages/count_tokens") {
            Some(Family::Anthropic)
        } else if [
            "/v1/chat/completions",
            "/v1/responses",
            "/v1/completions",
            "/v1/embeddings",
        ]
        .iter()
        .any(|s| p.ends_with(s))
        {
            Some(Family::OpenAi)
        } else if p.contains(":generateContent")
            || p.contains(":streamGenerateContent")
            || p.starts_with("/v1beta/")
        {
            Some(Family::Google)
        } else {
            None
        }
    }
}

/// Token counts as the lake stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LakeTokens {
    pub input: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub output: u64,
    pub reasoning: u64,
}

/// Provider-reported counts before the inclusion rules (formats.md 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportedTokens {
    /// OpenAI `prompt_tokens`/`input_tokens`, Gemini `promptTokenCount`,
    /// Anthropic `input_tokens`.
    pub prompt: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    /// OpenAI completion, Anthropic output, Gemini candidates.
    pub output: u64,
    pub reasoning: u64,
}

/// Applies the inclusion rules of `family`: OpenAI and Gemini prompt counts
/// include cached tokens, Anthropic's exclude them; Gemini thoughts are not
/// in candidates, the others' output includes reasoning. With no family the
/// counts are taken as they are only where the rules would not change them.
pub fn normalize(family: Option<Family>, t: ReportedTokens) -> Result<LakeTokens, Reject> {
    let family = match family {
        Some(f) => f,
        None if t.cache_read == 0 && t.reasoning == 0 => Family::Anthropic,
        None => {
            return Err(Reject::new(
                RejectReason::UnknownProvider,
                Some("provider"),
                "provider unknown: cannot tell whether input includes cached tokens or output includes reasoning",
            ));
        }
    };
    let input = match family {
        Family::Anthropic => t.prompt,
        Family::OpenAi | Family::Google => t.prompt.checked_sub(t.cache_read).ok_or_else(|| {
            Reject::new(
                RejectReason::InconsistentTokens,
                Some("cache_read_tokens"),
                format!(
                    "cached tokens ({}) exceed the prompt tokens ({}) that include them",
                    t.cache_read, t.prompt
                ),
            )
        })?,
    };
    let output = match family {
        Family::Google => t.output.checked_add(t.reasoning).ok_or_else(|| {
            Reject::new(
                RejectReason::InconsistentTokens,
                Some("output_tokens"),
                "overflow",
            )
        })?,
        Family::Anthropic | Family::OpenAi => {
            if t.reasoning > t.output {
                return Err(Reject::new(
                    RejectReason::InconsistentTokens,
                    Some("reasoning_tokens"),
                    format!(
                        "reasoning tokens ({}) exceed the output tokens ({}) that include them",
                        t.reasoning, t.output
                    ),
                ));
            }
            t.output
        }
    };
    Ok(LakeTokens {
        input,
        cache_read: t.cache_read,
        cache_write: t.cache_write,
        output,
        reasoning: t.reasoning,
    })
}

/// A scalar's text as the row keeps it: borrowed from the line unless the
/// JSON string had escapes (or was a number).
fn text_of<'a>(v: &Scalar<'a>) -> Option<Text<'a>> {
    match v {
        Scalar::Str(Cow::Borrowed(s)) if !s.is_empty() => Some(Text::Borrowed(s)),
        _ => json::text(v).map(|t| Text::Owned(t.into_owned())),
    }
}

/// `f` of a text, still borrowed from the line where the text was.
fn sub<'a>(t: Text<'a>, f: impl Fn(&str) -> &str) -> Text<'a> {
    match t {
        Text::Borrowed(s) => Text::Borrowed(f(s)),
        other => Text::Owned(f(&other).to_string()),
    }
}

const MAX_TOKENS: u64 = i64::MAX as u64;

fn tokens_i64(field: &'static str, v: u64) -> Result<i64, Reject> {
    if v > MAX_TOKENS {
        return Err(Reject::value(field, format!("{v} is too large")));
    }
    Ok(v as i64)
}

/// Parses a JSON line from a `cliproxy/` file.
pub fn parse<'a>(ctx: &'a FileCtx, text: &'a str) -> Parsed<'a> {
    match parse_record(ctx, text) {
        Ok(row) => row,
        Err(r) => Parsed::Reject(Table::ApiUsage, r),
    }
}

fn parse_record<'a>(ctx: &'a FileCtx, text: &'a str) -> Result<Parsed<'a>, Reject> {
    // Filled in place: a record is most of a kilobyte, and moving it out
    // of the fast path was a memcpy a line.
    let mut rec = Record::default();
    if !flat_record(text, &mut rec) {
        rec = serde_json::from_str(text).map_err(|e| json::syntax_error(&e))?;
    }
    let ts = json::timestamp("timestamp", &rec.timestamp, ctx.tz)?;
    let dated = |r: Reject| r.at(Some(ts));
    let is_record = rec.tokens.is_some() || rec.token_breakdown.is_some();
    let format = if is_record {
        "cliproxy_record"
    } else {
        "usage_line"
    };
    let fmt = |r: Reject| dated(r).format(format);

    let model = text_of(&rec.model)
        .map(|m| sub(m, str::trim))
        .filter(|m| !m.is_empty())
        .ok_or_else(|| fmt(Reject::missing("model")))?;
    let named = text_of(&rec.provider).or_else(|| text_of(&rec.executor_type));
    let endpoint = text_of(&rec.endpoint).or_else(|| text_of(&rec.path));
    let family = match &named {
        Some(p) => Family::of_provider(p).or_else(|| Family::of_model(&model)),
        None => Family::of_model(&model).or_else(|| endpoint.as_deref().and_then(Family::of_path)),
    };
    let provider: Text = match (&family, &named) {
        (Some(f), _) => Text::Borrowed(f.name()),
        (None, Some(p)) => Text::Owned(p.trim().to_ascii_lowercase()),
        (None, None) => Text::Borrowed("unknown"),
    };
    let count = |field: &'static str, v: &Scalar| {
        json::count(field, v).map(|n| n.unwrap_or(0)).map_err(fmt)
    };

    let (tokens, token_source) = if let Some(b) = &rec.token_breakdown {
        let t = LakeTokens {
            input: count(
                "token_breakdown.input.uncached_tokens",
                &b.input.uncached_tokens,
            )?,
            cache_read: count(
                "token_breakdown.input.cache_read_tokens",
                &b.input.cache_read_tokens,
            )?,
            cache_write: count(
                "token_breakdown.input.cache_write_tokens",
                &b.input.cache_write_tokens,
            )?,
            output: count(
                "token_breakdown.output.total_tokens",
                &b.output.total_tokens,
            )?,
            reasoning: count(
                "token_breakdown.output.reasoning_tokens",
                &b.output.reasoning_tokens,
            )?,
        };
        if t.reasoning > t.output {
            return Err(fmt(Reject::new(
                RejectReason::InconsistentTokens,
                Some("token_breakdown.output.reasoning_tokens"),
                format!(
                    "reasoning tokens ({}) exceed the output total ({})",
                    t.reasoning, t.output
                ),
            )));
        }
        (t, "token_breakdown")
    } else if let Some(t) = &rec.tokens {
        let present = json::boolean(
            "tokens.cache_read_tokens_present",
            &t.cache_read_tokens_present,
        )
        .map_err(fmt)?;
        let cached = count("tokens.cached_tokens", &t.cached_tokens)?;
        let read = count("tokens.cache_read_tokens", &t.cache_read_tokens)?;
        let reported = ReportedTokens {
            prompt: count("tokens.input_tokens", &t.input_tokens)?,
            cache_read: if present == Some(true) {
                read
            } else {
                read.max(cached)
            },
            cache_write: count("tokens.cache_creation_tokens", &t.cache_creation_tokens)?,
            output: count("tokens.output_tokens", &t.output_tokens)?,
            reasoning: count("tokens.reasoning_tokens", &t.reasoning_tokens)?,
        };
        (
            normalize(family, reported).map_err(|r| fmt(prefix_tokens(r)))?,
            "tokens",
        )
    } else {
        if rec.input_tokens.is_null() && rec.output_tokens.is_null() {
            return Err(fmt(Reject::new(
                RejectReason::MissingField,
                Some("input_tokens"),
                "not a usage record: no input_tokens/output_tokens, tokens or token_breakdown",
            )));
        }
        let reported = ReportedTokens {
            prompt: count("input_tokens", &rec.input_tokens)?,
            cache_read: count("cache_read_tokens", &rec.cache_read_tokens)?,
            cache_write: count("cache_creation_tokens", &rec.cache_creation_tokens)?,
            output: count("output_tokens", &rec.output_tokens)?,
            reasoning: count("reasoning_tokens", &rec.reasoning_tokens)?,
        };
        (normalize(family, reported).map_err(fmt)?, "flat")
    };

    let status_field = rec
        .fail
        .as_ref()
        .map(|f| &f.status_code)
        .filter(|s| !s.is_null());
    let status = match status_field {
        Some(s) => json::int32("fail.status_code", s),
        None => json::int32("status", &rec.status),
    }
    .map_err(fmt)?;
    let failed = json::boolean("failed", &rec.failed)
        .map_err(fmt)?
        .unwrap_or(false)
        || status.is_some_and(|s| s >= 400);

    let key = json::text(&rec.api_key).map(|k| key_digest(&k));
    let key_sha = key.as_ref().map(|(sha, _)| sha);
    let user_id: Option<Text> = match text_of(&rec.user) {
        Some(u) => Some(sub(u, |s| cut(s, 128))),
        None => key_sha
            .and_then(|k| ctx.registry.user_of_key_sha256(k))
            .map(|u| Text::Borrowed(u)),
    };
    let request_id = text_of(&rec.request_id).map(|r| sub(r, |s| cut(s.trim(), 128)));
    let (event_id, kind) = match &request_id {
        Some(rid) if !rid.is_empty() => (
            ids::request_event_id("api_usage", &ctx.vm_id, rid, ts.0),
            IdKind::Request,
        ),
        _ => (
            ids::line_base_id("api_usage", &ctx.vm_id, Some(ts.0), text.as_bytes()),
            IdKind::Content,
        ),
    };
    let row = ApiUsageRef {
        event_id: Id(event_id),
        ts,
        customer_id: ctx.customer_id.as_deref().map(Text::Borrowed),
        vm_id: Text::Borrowed(&ctx.vm_id),
        user_id,
        provider,
        executor: named,
        model,
        alias: text_of(&rec.alias),
        endpoint: endpoint.map(|e| sub(e, before_query)),
        request_id,
        status,
        failed,
        input_tokens: tokens_i64("input_tokens", tokens.input).map_err(fmt)?,
        cache_read_tokens: tokens_i64("cache_read_tokens", tokens.cache_read).map_err(fmt)?,
        cache_write_tokens: tokens_i64("cache_write_tokens", tokens.cache_write).map_err(fmt)?,
        output_tokens: tokens_i64("output_tokens", tokens.output).map_err(fmt)?,
        reasoning_tokens: tokens_i64("reasoning_tokens", tokens.reasoning).map_err(fmt)?,
        latency_ms: json::count_i64("latency_ms", &rec.latency_ms).map_err(fmt)?,
        ttft_ms: json::count_i64("ttft_ms", &rec.ttft_ms).map_err(fmt)?,
        api_key_fp: key.map(|(_, fp)| Text::Shared(fp)),
        auth_type: text_of(&rec.auth_type),
        reasoning_effort: text_of(&rec.reasoning_effort),
        service_tier: text_of(&rec.service_tier),
        record_format: Text::Borrowed(format),
        token_source: Text::Borrowed(token_source),
        source_file: Text::Borrowed(&ctx.rel),
        source_line: 0,
    };
    Ok(Parsed::Usage(row, kind))
}

/// The fields of a flat record, in [`Record`]'s order: [`flat_field`]'s
/// indices (a test checks that the two agree).
#[cfg(test)]
const FLAT_FIELDS: [&str; 14] = [
    "timestamp",
    "path",
    "status",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "latency_ms",
    "api_key",
    "user",
    "request_id",
    "provider",
];

/// A fast path for the common line: one flat JSON object whose values are
/// plain strings (no escapes), integers, booleans or null. Gives exactly
/// what serde would give, or `None` for anything else (nesting, escapes,
/// fractions, exponents, duplicate keys, syntax errors), which then takes
/// the serde path with its error messages. Fills `rec` (a default one) and
/// says whether it did; when it did not, `rec` holds part of the line.
fn flat_record<'a>(text: &'a str, rec: &mut Record<'a>) -> bool {
    flat_fields(text, rec).is_some()
}

fn flat_fields<'a>(text: &'a str, rec: &mut Record<'a>) -> Option<()> {
    let b = text.as_bytes();
    let mut seen = 0u32;
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(());
    }
    loop {
        let (key, next) = plain_string(text, i)?;
        i = skip_ws(b, next);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let (value, next) = flat_value(text, i)?;
        i = skip_ws(b, next);
        if let Some(k) = flat_field(key) {
            if seen & (1 << k) != 0 {
                return None; // serde refuses a duplicate field
            }
            seen |= 1 << k;
            let slot = match k {
                0 => &mut rec.timestamp,
                1 => &mut rec.path,
                2 => &mut rec.status,
                3 => &mut rec.model,
                4 => &mut rec.input_tokens,
                5 => &mut rec.output_tokens,
                6 => &mut rec.cache_read_tokens,
                7 => &mut rec.cache_creation_tokens,
                8 => &mut rec.reasoning_tokens,
                9 => &mut rec.latency_ms,
                10 => &mut rec.api_key,
                11 => &mut rec.user,
                12 => &mut rec.request_id,
                _ => &mut rec.provider,
            };
            *slot = value;
        } else if is_other_field(key) {
            return None; // a field the fast path does not fill
        }
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return (skip_ws(b, i + 1) == b.len()).then_some(()),
            _ => return None,
        }
    }
}

/// The index of `key` in [`FLAT_FIELDS`]: a `match` compares by length
/// first, where a scan of the list compared every name (a tenth of the
/// parse went to it).
fn flat_field(key: &str) -> Option<usize> {
    Some(match key {
        "timestamp" => 0,
        "path" => 1,
        "status" => 2,
        "model" => 3,
        "input_tokens" => 4,
        "output_tokens" => 5,
        "cache_read_tokens" => 6,
        "cache_creation_tokens" => 7,
        "reasoning_tokens" => 8,
        "latency_ms" => 9,
        "api_key" => 10,
        "user" => 11,
        "request_id" => 12,
        "provider" => 13,
        _ => return None,
    })
}

/// Whether `key` is one of [`OTHER_FIELDS`].
fn is_other_field(key: &str) -> bool {
    matches!(
        key,
        "ttft_ms"
            | "tokens"
            | "failed"
            | "token_breakdown"
            | "executor_type"
            | "alias"
            | "endpoint"
            | "auth_type"
            | "reasoning_effort"
            | "service_tier"
            | "fail"
    )
}

/// The other fields [`Record`] reads (serde ignores the rest): a line with
/// one of them takes the serde path ([`is_other_field`]).
#[cfg(test)]
const OTHER_FIELDS: [&str; 11] = [
    "ttft_ms",
    "tokens",
    "failed",
    "token_breakdown",
    "executor_type",
    "alias",
    "endpoint",
    "auth_type",
    "reasoning_effort",
    "service_tier",
    "fail",
];

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// A string without escapes or control characters at `i`: its contents
/// and the index after its closing quote. One pass over the bytes: keys and
/// values are short, where a `memchr` costs more to start than it saves.
fn plain_string(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match *b.get(j)? {
            b'"' => return Some((&text[i + 1..j], j + 1)),
            b'\\' => return None,
            c if c < 0x20 => return None,
            _ => j += 1,
        }
    }
}

/// A scalar value at `i` as serde gives it, and the index after it.
fn flat_value(text: &str, i: usize) -> Option<(Scalar<'_>, usize)> {
    let b = text.as_bytes();
    match *b.get(i)? {
        b'"' => plain_string(text, i).map(|(s, n)| (Scalar::Str(Cow::Borrowed(s)), n)),
        b't' if b[i..].starts_with(b"true") => Some((Scalar::Bool(true), i + 4)),
        b'f' if b[i..].starts_with(b"false") => Some((Scalar::Bool(false), i + 5)),
        b'n' if b[i..].starts_with(b"null") => Some((Scalar::Null, i + 4)),
        c if c == b'-' || c.is_ascii_digit() => {
            let neg = c == b'-';
            let start = i + usize::from(neg);
            let digits = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
            let end = start + digits;
            // Leave fractions, exponents, leading zeros and long numbers to serde.
            if digits == 0
                || digits > 18
                || (digits > 1 && b[start] == b'0')
                || matches!(b.get(end), Some(b'.' | b'e' | b'E'))
            {
                return None;
            }
            let n: u64 = text[start..end].parse().ok()?;
            if neg && n == 0 {
                return None; // serde reads -0 as a float
            }
            let v = if neg {
                Scalar::Int(-(n as i64))
            } else {
                Scalar::UInt(n)
            };
            Some((v, end))
        }
        _ => None,
    }
}

/// Names the `tokens.` field a normalization reject is about.
fn prefix_tokens(mut r: Reject) -> Reject {
    r.field = r.field.map(|f| match f {
        "cache_read_tokens" => "tokens.cache_read_tokens",
        "reasoning_tokens" => "tokens.reasoning_tokens",
        "output_tokens" => "tokens.output_tokens",
        other => other,
    });
    r
}

/// A path without its query string: it can hold keys (`?key=` for Gemini).
pub fn before_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// [`before_query`] of an owned path, in place.
pub fn strip_query(path: &mut String) {
    path.truncate(before_query(path).len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::test_util::{ctx, ts};
    use crate::ingest::parse::{SourceKind, parse_line};
    use crate::model::ids::key_fingerprint;

    fn flat(line: &str) -> Option<Record<'_>> {
        let mut rec = Record::default();
        flat_record(line, &mut rec).then_some(rec)
    }

    fn flat_matches_serde(line: &str) {
        let serde: Result<Record, _> = serde_json::from_str(line);
        if let Some(fast) = flat(line) {
            assert_eq!(
                Ok(&fast),
                serde.as_ref().map_err(|e| e.to_string()),
                "{line}"
            );
        }
    }

    #[test]
    fn the_field_matches_agree_with_the_field_lists() {
        for (i, f) in FLAT_FIELDS.iter().enumerate() {
            assert_eq!(flat_field(f), Some(i), "{f}");
            assert!(!is_other_field(f), "{f}");
        }
        for f in OTHER_FIELDS {
            assert_eq!(flat_field(f), None, "{f}");
            assert!(is_other_field(f), "{f}");
        }
        for f in ["", "Timestamp", "timestamp ", "token", "x"] {
            assert_eq!(flat_field(f), None, "{f}");
            assert!(!is_other_field(f), "{f}");
        }
    }

    #[test]
    fn the_fast_path_knows_every_field_of_the_record() {
        // Record's fields, from its Debug form (every nested field is None).
        let debug = format!("{:?}", Record::default());
        let inner = debug.trim_start_matches("Record { ").trim_end_matches(" }");
        let mut fields: Vec<&str> = inner
            .split(", ")
            .map(|f| f.split(':').next().unwrap())
            .collect();
        let mut known: Vec<&str> = FLAT_FIELDS.iter().chain(&OTHER_FIELDS).copied().collect();
        fields.sort();
        known.sort();
        assert_eq!(fields, known);
    }

    #[test]
    fn the_flat_fast_path_agrees_with_serde() {
        let taken = [
            r#"{"timestamp":"2026-10-01T00:12:10.102Z","path":"/v1/chat/completions","status":200,"model":"gpt-4.1","input_tokens":6995,"output_tokens":328,"request_id":"6a414989","provider":"openai","api_key":"sk-x","user":"user_0026"}"#,
            r#" { "model" : "m" , "input_tokens" : -7 , "x": "y", "x": 2, "failedx": null } "#,
            "{}",
            r#"{"input_tokens":0,"output_tokens":123456789012345678,"status":true,"user":null}"#,
        ];
        for line in taken {
            assert!(flat(line).is_some(), "{line}");
            flat_matches_serde(line);
        }
        let left_to_serde = [
            r#"{"model":"a\"b"}"#,
            r#"{"model":"a","model":"b"}"#,
            r#"{"model":"a","extra":[1]}"#,
            r#"{"model":"a","x":1.5}"#,
            r#"{"input_tokens":1.0}"#,
            r#"{"input_tokens":1e3}"#,
            r#"{"input_tokens":012}"#,
            r#"{"input_tokens":-0}"#,
            r#"{"input_tokens":1234567890123456789012}"#,
            r#"{"tokens":{"input_tokens":1}}"#,
            r#"{"model":"a"} x"#,
            r#"{"model":"a",}"#,
            r#"{"model":"a""#,
            "[1]",
            "{\"model\":\"a\u{1}\"}",
        ];
        for line in left_to_serde {
            assert!(flat(line).is_none(), "{line}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_flat_fast_path_never_disagrees_with_serde(
            fields in proptest::collection::vec(
                (proptest::sample::select(vec!["timestamp", "model", "input_tokens", "status", "user", "x", "tokens", "failed"]),
                 proptest::sample::select(vec!["1", "-2", "0", "01", "1.5", "\"s\"", "\"a\\\"b\"", "true", "null", "{}", "[]", "\"\"", "18446744073709551615", "-9223372036854775808"])),
                0..6),
            ws in proptest::sample::select(vec!["", " ", "\t", "\n"]),
            trailing in proptest::sample::select(vec!["", " ", ",", "x", "}"]),
        ) {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}{ws}")).collect();
            let line = format!("{{{}}}{trailing}", body.join(","));
            flat_matches_serde(&line);
        }
    }

    fn usage(line: &str) -> crate::lake::tables::ApiUsageRow {
        match parse_line(&ctx(SourceKind::Cliproxy), line.as_bytes()) {
            Parsed::Usage(r, _) => r.to_row(),
            other => panic!("expected a usage row, got {other:?}"),
        }
    }

    fn reject(line: &str) -> Reject {
        match parse_line(&ctx(SourceKind::Cliproxy), line.as_bytes()) {
            Parsed::Reject(Table::ApiUsage, r) => r,
            other => panic!("expected a reject, got {other:?}"),
        }
    }

    #[test]
    fn usage_line_from_formats_md() {
        let r = usage(
            r#"{"timestamp":"2025-12-25T10:30:00Z","path":"/v1/messages","status":200,"model":"claude-3-sonnet-20240229","input_tokens":1500,"output_tokens":500}"#,
        );
        assert_eq!(r.ts, ts("2025-12-25T10:30:00Z"));
        assert_eq!(
            (&*r.provider, &*r.model, r.status, r.failed),
            ("anthropic", "claude-3-sonnet-20240229", Some(200), false)
        );
        assert_eq!(
            (r.input_tokens, r.output_tokens, r.cache_read_tokens),
            (1500, 500, 0)
        );
        assert_eq!(r.endpoint.as_deref(), Some("/v1/messages"));
        assert_eq!(&*r.record_format, "usage_line");
    }

    #[test]
    fn usage_line_openai_prompt_includes_cache() {
        let r = usage(
            r#"{"timestamp":"2025-12-25T10:30:00+02:00","path":"/v1/chat/completions","status":200,"model":"gpt-4o","provider":"openai","input_tokens":1000,"cache_read_tokens":400,"output_tokens":300,"reasoning_tokens":100,"api_key":"sk-secret","request_id":"a1b2c3d4"}"#,
        );
        assert_eq!(r.ts, ts("2025-12-25T08:30:00Z"));
        assert_eq!(
            (
                r.input_tokens,
                r.cache_read_tokens,
                r.output_tokens,
                r.reasoning_tokens
            ),
            (600, 400, 300, 100)
        );
        assert_eq!(
            r.api_key_fp.as_deref(),
            Some(&key_fingerprint("sk-secret")[..])
        );
        assert_eq!(r.request_id.as_deref(), Some("a1b2c3d4"));
        let rej = reject(
            r#"{"timestamp":"2025-12-25T10:30:00Z","model":"gpt-4o","provider":"openai","input_tokens":10,"cache_read_tokens":400,"output_tokens":3}"#,
        );
        assert_eq!(rej.field, Some("cache_read_tokens"));
        assert_eq!(rej.ts, Some(ts("2025-12-25T10:30:00Z")));
    }

    #[test]
    fn cliproxy_record_with_tokens_follows_the_named_provider() {
        // Gemini: prompt includes cached, thoughts are outside candidates.
        let r = usage(
            r#"{"timestamp":"2026-01-05T10:07:49.123Z","latency_ms":2350,"ttft_ms":410,"source":"gemini-cli","auth_index":"0","tokens":{"input_tokens":5000,"output_tokens":800,"reasoning_tokens":200,"cached_tokens":3000,"cache_read_tokens":0,"cache_read_tokens_present":false,"cache_creation_tokens":0,"total_tokens":6000},"failed":false,"accounting_version":2,"provider":"gemini","executor_type":"gemini","model":"gemini-2.5-pro","alias":"","endpoint":"/v1/chat/completions","auth_type":"oauth","api_key":"AIzaSyXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX","request_id":"a1b2c3d4","reasoning_effort":"high","service_tier":""}"#,
        );
        assert_eq!(&*r.provider, "google");
        assert_eq!(
            (
                r.input_tokens,
                r.cache_read_tokens,
                r.output_tokens,
                r.reasoning_tokens
            ),
            (2000, 3000, 1000, 200)
        );
        assert_eq!((r.latency_ms, r.ttft_ms), (Some(2350), Some(410)));
        assert_eq!(&*r.token_source, "tokens");
        // Claude through the same OpenAI endpoint: input excludes cache.
        let r = usage(
            r#"{"timestamp":"2026-01-05T10:07:49Z","tokens":{"input_tokens":50,"output_tokens":800,"cache_read_tokens":3000,"cache_read_tokens_present":true,"cache_creation_tokens":1200},"provider":"claude","model":"claude-sonnet-4-5-20250929","endpoint":"/v1/chat/completions","request_id":"0badf00d"}"#,
        );
        assert_eq!(
            (
                r.input_tokens,
                r.cache_read_tokens,
                r.cache_write_tokens,
                r.output_tokens
            ),
            (50, 3000, 1200, 800)
        );
    }

    #[test]
    fn cliproxy_record_breakdown_wins_and_failures_keep_their_status() {
        let r = usage(
            r#"{"timestamp":"2026-01-05T10:07:49Z","tokens":{"input_tokens":999},"token_breakdown":{"schema_version":1,"quality":"exact","input":{"total_tokens":4200,"uncached_tokens":1000,"cache_read_tokens":3000,"cache_write_tokens":200},"output":{"total_tokens":500,"reasoning_tokens":120}},"provider":"codex","model":"gpt-5","failed":true,"fail":{"status_code":429,"body":"rate limited"}}"#,
        );
        assert_eq!(
            (
                r.input_tokens,
                r.cache_read_tokens,
                r.cache_write_tokens,
                r.output_tokens,
                r.reasoning_tokens
            ),
            (1000, 3000, 200, 500, 120)
        );
        assert_eq!((r.status, r.failed), (Some(429), true));
        assert_eq!(&*r.token_source, "token_breakdown");
    }

    #[test]
    fn rejects_name_the_field() {
        assert_eq!(
            reject(r#"{"model":"gpt-4o","input_tokens":1,"output_tokens":1}"#).field,
            Some("timestamp")
        );
        assert_eq!(
            reject(r#"{"timestamp":"2025-12-25T10:30:00Z","input_tokens":1,"output_tokens":1}"#)
                .field,
            Some("model")
        );
        assert_eq!(reject(r#"{"timestamp":"2025-12-25T10:30:00Z","model":"m","input_tokens":"abc","output_tokens":1}"#).field, Some("input_tokens"));
        assert_eq!(reject(r#"{"timestamp":"2025-12-25T10:30:00Z","model":"claude-3-haiku","input_tokens":-5,"output_tokens":1}"#).detail, "negative value -5");
        let truncated =
            reject(r#"{"timestamp":"2025-12-25T10:30:00Z","model":"x","input_tokens":1"#);
        assert_eq!(truncated.reason, RejectReason::InvalidJson);
        assert!(truncated.detail.starts_with("truncated JSON at column"));
        assert_eq!(
            reject(r#"{"timestamp":"2025-12-25T10:30:00Z","model":"x","input_tokens":10,"cache_read_tokens":2,"output_tokens":1}"#).reason,
            RejectReason::UnknownProvider
        );
        assert_eq!(
            reject(r#"{"timestamp":"2025-12-25T10:30:00Z","model":"x"}"#).field,
            Some("input_tokens")
        );
    }

    #[test]
    fn unknown_provider_is_rejected_only_where_the_rule_matters() {
        let r = usage(
            r#"{"timestamp":"2025-12-25T10:30:00Z","model":"mystery-1","input_tokens":10,"output_tokens":5}"#,
        );
        assert_eq!((&*r.provider, r.input_tokens), ("unknown", 10));
        let rej = reject(
            r#"{"timestamp":"2025-12-25T10:30:00Z","model":"mystery-1","input_tokens":10,"cache_read_tokens":4,"output_tokens":5}"#,
        );
        assert_eq!(rej.field, Some("provider"));
    }

    #[test]
    fn families() {
        assert_eq!(Family::of_model("o3-mini"), Some(Family::OpenAi));
        assert_eq!(Family::of_model("omni"), None);
        assert_eq!(
            Family::of_model("models/gemini-2.5-flash"),
            Some(Family::Google)
        );
        assert_eq!(
            Family::of_path("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"),
            Some(Family::Google)
        );
        assert_eq!(Family::of_provider("Codex"), Some(Family::OpenAi));
    }
}
