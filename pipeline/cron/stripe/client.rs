//! The Stripe API over HTTP (reqwest): one request at a time, each retried
//! on 429, 5xx and connection errors with exponential backoff and full
//! jitter, honouring `Retry-After`. What a request is (path, auth, body)
//! is decided by the caller; this module only sends and classifies.
//!
//! Stripe's rules followed here (formats.md section 4, and Stripe's API
//! reference): `POST /v1/billing/meter_events` is form-encoded with a
//! Bearer secret key and the identifier as `Idempotency-Key`; the v2 stream
//! takes at most 100 events per JSON body and authenticates with a
//! short-lived session token from `POST /v2/billing/meter_event_session`;
//! at api.stripe.com the stream lives on its own host,
//! `meter-events.stripe.com`. A duplicate identifier is answered
//! `400 An event already exists with identifier ...`, which means Stripe
//! has the event.

use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde::Deserialize;

use super::{ApiKey, Retry};

/// Pinned so that responses keep the shape this code reads.
pub const STRIPE_VERSION: &str = "2025-03-31.basil";

const PRODUCTION: &str = "https://api.stripe.com";
const PRODUCTION_STREAM: &str = "https://meter-events.stripe.com";

/// How a request authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// The secret key.
    Key,
    /// The v2 meter-event session token.
    Session,
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    Form(Vec<(String, String)>),
    Json(Vec<u8>),
}

/// One request, ready to send (and to send again).
#[derive(Debug, Clone)]
pub struct Request {
    pub path: std::borrow::Cow<'static, str>,
    pub auth: Auth,
    pub idempotency_key: Option<String>,
    pub body: Body,
}

/// Stripe has it.
#[derive(Debug)]
pub enum Answer {
    /// Accepted now; the response body.
    Accepted(serde_json::Value),
    /// Refused as a duplicate of something it already has.
    AlreadyExists,
}

/// Stripe does not have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A permanent answer (a 4xx other than 429): sending again will not help.
    Rejected { status: u16, message: String },
    /// Transient failures until the attempts ran out.
    Exhausted {
        status: Option<u16>,
        message: String,
        attempts: u32,
    },
}

impl Refusal {
    pub fn status(&self) -> Option<u16> {
        match self {
            Refusal::Rejected { status, .. } => Some(*status),
            Refusal::Exhausted { status, .. } => *status,
        }
    }
}

/// What one attempt came to.
enum Attempt {
    Done(Answer),
    Permanent {
        status: u16,
        message: String,
    },
    Transient {
        status: Option<u16>,
        message: String,
        retry_after: Option<Duration>,
    },
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Session {
    authentication_token: String,
}

/// A Stripe client with its counters.
pub struct Client {
    http: reqwest::Client,
    base: String,
    stream_base: String,
    key: ApiKey,
    retry: Retry,
    session: Option<String>,
    /// HTTP requests made (every attempt).
    pub requests: u64,
    /// Attempts that were retries.
    pub retries: u64,
}

impl Client {
    /// A client for `base_url` (no trailing slash needed).
    pub fn new(base_url: &str, key: ApiKey, retry: Retry) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("meter/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let base = base_url.trim_end_matches('/').to_string();
        let stream_base = match base.as_str() {
            PRODUCTION => PRODUCTION_STREAM.to_string(),
            other => other.to_string(),
        };
        Ok(Client {
            http,
            base,
            stream_base,
            key,
            retry,
            session: None,
            requests: 0,
            retries: 0,
        })
    }

    /// Sends `request`, retrying transient failures.
    pub async fn send(&mut self, request: &Request) -> Result<Answer, Refusal> {
        let mut attempt = 1;
        loop {
            self.requests += 1;
            match self.attempt(request).await {
                Attempt::Done(answer) => return Ok(answer),
                Attempt::Permanent { status, message } => {
                    return Err(Refusal::Rejected { status, message });
                }
                Attempt::Transient {
                    status,
                    message,
                    retry_after,
                } => {
                    if attempt >= self.retry.max_attempts {
                        return Err(Refusal::Exhausted {
                            status,
                            message,
                            attempts: attempt,
                        });
                    }
                    tokio::time::sleep(self.retry.delay(attempt, retry_after)).await;
                    attempt += 1;
                    self.retries += 1;
                }
            }
        }
    }

    /// Opens a v2 meter-event session (again, when the old one expired).
    pub async fn open_session(&mut self) -> Result<(), Refusal> {
        let request = Request {
            path: "/v2/billing/meter_event_session".into(),
            auth: Auth::Key,
            idempotency_key: None,
            body: Body::Json(b"{}".to_vec()),
        };
        let Answer::Accepted(body) = self.send(&request).await? else {
            return Err(Refusal::Rejected {
                status: 400,
                message: "no meter event session was created".into(),
            });
        };
        let session: Session = serde_json::from_value(body).map_err(|e| Refusal::Rejected {
            status: 200,
            message: format!("unexpected meter event session answer: {e}"),
        })?;
        self.session = Some(session.authentication_token);
        Ok(())
    }

    /// Whether a v2 session is open.
    pub fn has_session(&self) -> bool {
        self.session.is_some()
    }

    async fn attempt(&self, request: &Request) -> Attempt {
        let (base, token) = match request.auth {
            Auth::Key => (&self.base, self.key.secret()),
            Auth::Session => (&self.stream_base, self.session.as_deref().unwrap_or("")),
        };
        let mut builder = self
            .http
            .post(format!("{base}{}", request.path))
            .bearer_auth(token)
            .header("Stripe-Version", STRIPE_VERSION);
        if let Some(key) = &request.idempotency_key {
            builder = builder.header("Idempotency-Key", key);
        }
        builder = match &request.body {
            Body::Form(fields) => builder.form(fields),
            Body::Json(bytes) => builder
                .header(CONTENT_TYPE, "application/json")
                .body(bytes.clone()),
        };
        match builder.send().await {
            Ok(response) => self.classify(response).await,
            Err(e) => Attempt::Transient {
                status: None,
                message: self.redact(&describe(&e)),
                retry_after: None,
            },
        }
    }

    async fn classify(&self, response: reqwest::Response) -> Attempt {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Transient {
                    status: Some(status.as_u16()),
                    message: self.redact(&describe(&e)),
                    retry_after: None,
                };
            }
        };
        if status.is_success() {
            let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            return Attempt::Done(Answer::Accepted(body));
        }
        let (message, code, kind) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => (b.error.message, b.error.code, b.error.kind),
            Err(_) => (None, None, None),
        };
        let message = self.redact(&message.unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&bytes);
            let text: String = text.chars().take(200).collect();
            format!("{status}: {text}")
        }));
        if already_exists(status, &message, code.as_deref()) {
            return Attempt::Done(Answer::AlreadyExists);
        }
        if transient(status, &headers, code.as_deref(), kind.as_deref()) {
            return Attempt::Transient {
                status: Some(status.as_u16()),
                message,
                retry_after: retry_after(&headers),
            };
        }
        Attempt::Permanent {
            status: status.as_u16(),
            message,
        }
    }

    /// Removes the key from text that might echo it.
    fn redact(&self, text: &str) -> String {
        let secret = self.key.secret();
        let mut out = match secret.is_empty() {
            true => text.to_string(),
            false => text.replace(secret, &self.key.to_string()),
        };
        if let Some(token) = self.session.as_deref().filter(|t| !t.is_empty()) {
            out = out.replace(token, "(session token)");
        }
        out
    }
}

impl Retry {
    /// The wait before attempt `attempt + 1`: full jitter over an
    /// exponential ceiling (`base * 2^(attempt-1)`, at most `max_delay`), or
    /// `Retry-After` when Stripe gives one (also at most `max_delay`).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_delay);
        let jittered = Duration::from_nanos(
            rand::rng().random_range(0..=ceiling.as_nanos().min(u64::MAX as u128) as u64),
        );
        match retry_after {
            Some(wait) => wait.min(self.max_delay),
            None => jittered,
        }
    }
}

fn already_exists(status: StatusCode, message: &str, code: Option<&str>) -> bool {
    status == StatusCode::BAD_REQUEST
        && (matches!(
            code,
            Some("duplicate_meter_event" | "resource_already_exists")
        ) || message.to_ascii_lowercase().contains("already exists"))
}

fn transient(
    status: StatusCode,
    headers: &HeaderMap,
    code: Option<&str>,
    kind: Option<&str>,
) -> bool {
    let should_retry = headers
        .get("stripe-should-retry")
        .and_then(|v| v.to_str().ok());
    if should_retry == Some("false") {
        return false;
    }
    status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || should_retry == Some("true")
        || code == Some("idempotency_key_in_use")
        || kind == Some("rate_limit_error")
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// An error with its causes, on one line.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_ceiling() {
        let retry = Retry {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        };
        for _ in 0..200 {
            assert!(retry.delay(1, None) <= Duration::from_millis(100));
            assert!(retry.delay(2, None) <= Duration::from_millis(200));
            assert!(retry.delay(3, None) <= Duration::from_millis(350));
            assert!(retry.delay(30, None) <= Duration::from_millis(350));
        }
        assert_eq!(
            retry.delay(1, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
        assert_eq!(
            retry.delay(1, Some(Duration::from_secs(60))),
            Duration::from_millis(350),
            "Retry-After is capped"
        );
    }

    #[test]
    fn duplicates_and_transients_are_told_apart() {
        let none = HeaderMap::new();
        assert!(already_exists(
            StatusCode::BAD_REQUEST,
            "An event already exists with identifier x.",
            None
        ));
        assert!(!already_exists(
            StatusCode::BAD_REQUEST,
            "Invalid integer",
            None
        ));
        assert!(transient(StatusCode::TOO_MANY_REQUESTS, &none, None, None));
        assert!(transient(StatusCode::BAD_GATEWAY, &none, None, None));
        assert!(!transient(StatusCode::BAD_REQUEST, &none, None, None));
        let mut no = HeaderMap::new();
        no.insert("stripe-should-retry", "false".parse().unwrap());
        assert!(!transient(
            StatusCode::INTERNAL_SERVER_ERROR,
            &no,
            None,
            None
        ));
        let mut after = HeaderMap::new();
        after.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&after), Some(Duration::from_secs(3)));
    }
}
