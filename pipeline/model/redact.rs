//! Secret redaction for free text that reaches the lake, the rejects table or
//! a log line: command lines, raw rejected lines, referers and user agents.
//!
//! What is removed (each replaced by `[REDACTED]`):
//! - values of `Authorization:` / `x-api-key:` style headers and `Bearer` tokens;
//! - values assigned to names containing KEY, TOKEN, SECRET, PASSWORD, PASSWD,
//!   PWD, CREDENTIAL or AUTH (`export OPENAI_API_KEY=...`, `?api_key=...`);
//! - values of flags such as `--password x`, `--token=x`, `--api-key x`;
//! - JSON string values of keys like `"api_key"`, `"authorization"`, `"password"`;
//! - credentials in URLs (`https://user:pass@host`);
//! - strings shaped like provider keys (`sk-...`, `AIza...`, `ghp_...`, `AKIA...`, `xox?-...`).

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};

pub const MARK: &str = "[REDACTED]";

struct Rule {
    re: Regex,
    replacement: &'static str,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |pattern: &str, replacement: &'static str| Rule {
        re: Regex::new(pattern).expect("redaction pattern compiles"),
        replacement,
    };
    vec![
        rule(
            r#"(?i)("(?:api[_-]?key|x-api-key|authorization|password|passwd|secret|token|access_token|refresh_token|client_secret)"\s*:\s*)"(?:[^"\\]|\\.)*""#,
            r#"$1"[REDACTED]""#,
        ),
        rule(
            r#"(?i)\b((?:proxy-)?authorization\s*:\s*)(?:(bearer|basic|token)\s+)?[^\s'"]+"#,
            "${1}${2} [REDACTED]",
        ),
        rule(
            r#"(?i)\b((?:x-api-key|x-goog-api-key|api-key)\s*:\s*)[^\s'"]+"#,
            "${1}[REDACTED]",
        ),
        rule(
            r#"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"#,
            "${1}[REDACTED]",
        ),
        rule(
            r#"(?i)(--?(?:password|passwd|pass|token|api-key|apikey|api_key|secret|access-key|secret-key|auth-token)(?:=|\s+))("[^"]*"|'[^']*'|[^\s'"]+)"#,
            "${1}[REDACTED]",
        ),
        rule(
            r#"(?i)\b([A-Z0-9_.-]*(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|PWD|CREDENTIALS?|AUTH)(?:_[A-Z0-9]+)?\s*=\s*)("[^"]*"|'[^']*'|[^\s'"&;|]+)"#,
            "${1}[REDACTED]",
        ),
        rule(r#"(://[^/\s:@]+:)[^@\s/]+@"#, "${1}[REDACTED]@"),
        rule(
            r#"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}|AIza[0-9A-Za-z_-]{30,}|gh[pousr]_[A-Za-z0-9]{30,}|AKIA[0-9A-Z]{16}|xox[abpr]-[A-Za-z0-9-]{10,})"#,
            "[REDACTED]",
        ),
    ]
});

/// All the rules' patterns at once: one pass without captures says whether
/// any rule can apply. Text no rule matches is left as it is by every rule
/// in turn, so it is returned without running them.
static ANY: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new(RULES.iter().map(|r| r.re.as_str())).expect("redaction patterns compile")
});

/// Redacts secrets from `text`. Borrowed when nothing was found.
pub fn redact(text: &str) -> Cow<'_, str> {
    if !ANY.is_match(text) {
        return Cow::Borrowed(text);
    }
    redact_each(text)
}

/// [`redact`] of an owned string, which is given back when nothing was found.
pub fn redact_owned(text: String) -> String {
    match redact(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(s) => s,
    }
}

/// Every rule in turn, each on the previous one's output.
fn redact_each(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for rule in RULES.iter() {
        let replaced = match rule.re.replace_all(&out, rule.replacement) {
            Cow::Owned(s) => Some(s),
            Cow::Borrowed(_) => None,
        };
        if let Some(s) = replaced {
            out = Cow::Owned(s);
        }
    }
    out
}

/// Redacts and cuts a raw line to at most `max` bytes on a character boundary.
pub fn redact_and_cut(raw: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(raw);
    cut(&redact(&text), max).to_string()
}

/// `s` cut to at most `max` bytes on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        redact(s).into_owned()
    }

    #[test]
    fn redacts_common_secrets_in_commands() {
        assert_eq!(
            r("export OPENAI_API_KEY=sk-abc123"),
            "export OPENAI_API_KEY=[REDACTED]"
        );
        assert_eq!(
            r("mysql --password hunter2 -u root"),
            "mysql --password [REDACTED] -u root"
        );
        assert_eq!(r("psql --password=hunter2"), "psql --password=[REDACTED]");
        assert_eq!(
            r(r#"curl -H "Authorization: Bearer abcdef123456" https://x"#),
            r#"curl -H "Authorization: Bearer [REDACTED]" https://x"#
        );
        assert_eq!(
            r("git clone https://bob:pa55@github.com/x"),
            "git clone https://bob:[REDACTED]@github.com/x"
        );
        assert_eq!(
            r("echo sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAA"),
            "echo [REDACTED]"
        );
        assert_eq!(
            r("GET /v1beta/models/x?key=AIzaSyA1234567890abcdefghijklmnopqrs"),
            "GET /v1beta/models/x?key=[REDACTED]"
        );
        assert_eq!(
            r(r#"{"api_key":"sk-123","model":"x"}"#),
            r#"{"api_key":"[REDACTED]","model":"x"}"#
        );
        assert_eq!(
            r("curl -H 'x-api-key: abc'"),
            "curl -H 'x-api-key: [REDACTED]'"
        );
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for s in [
            "ls -la /tmp",
            "mkdir -p build",
            "cargo test --release",
            "keyboard=us",
        ] {
            assert!(matches!(redact(s), Cow::Borrowed(_)), "{s}");
        }
    }

    proptest::proptest! {
        /// The one-pass check never skips a text a rule would change.
        #[test]
        fn the_prefilter_agrees_with_every_rule(
            text in "([ -~]|é){0,40}(sk-ant-[a-zA-Z0-9]{16,20}|api_key=x|--token y|Bearer abcdefgh|https://u:p@h|\"secret\": \"v\"|Authorization: Basic zz|x-api-key: k|AKIA[0-9A-Z]{16}|)([ -~]|é){0,40}"
        ) {
            proptest::prop_assert_eq!(redact(&text), redact_each(&text));
            proptest::prop_assert_eq!(redact_owned(text.clone()), redact_each(&text).into_owned());
        }
    }

    #[test]
    fn cut_respects_char_boundaries() {
        let s = "é".repeat(10);
        assert_eq!(redact_and_cut(s.as_bytes(), 5), "éé");
    }
}
