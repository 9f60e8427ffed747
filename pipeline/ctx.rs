//! The context every stage gets first: the clock and the run id. Time is
//! injected so that tests are deterministic.

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that always says the same time (tests, reproducible reruns).
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

#[derive(Clone)]
pub struct Ctx {
    pub clock: Arc<dyn Clock>,
    pub run_id: String,
}

impl Ctx {
    /// A context with a fresh run id: `YYYYMMDDTHHMMSSZ-<job>-<4 hex>`.
    pub fn new(clock: Arc<dyn Clock>, job: &str) -> Ctx {
        let now = clock.now();
        let salt = std::process::id() as u64 ^ now.timestamp_subsec_nanos() as u64;
        let run_id = format!(
            "{}-{job}-{:04x}",
            now.format("%Y%m%dT%H%M%SZ"),
            salt & 0xffff
        );
        Ctx { clock, run_id }
    }

    /// A context with a given run id (tests).
    pub fn with_run_id(clock: Arc<dyn Clock>, run_id: impl Into<String>) -> Ctx {
        Ctx {
            clock,
            run_id: run_id.into(),
        }
    }
}
