//! The context every stage gets first: the clock and the run id. Time is
//! injected so that tests are deterministic.

use std::sync::{Arc, Mutex};

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

/// A clock that says what it was last set to (tests of expiry and
/// takeover, where time must pass on command).
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(now: DateTime<Utc>) -> ManualClock {
        ManualClock(Mutex::new(now))
    }

    /// Moves the clock on by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Progress of a long step, for a progress bar. Stages report through it;
/// the binary shows a bar only when stderr is a terminal.
pub trait Progress: Send + Sync {
    /// A step of `total` units (files, days) begins.
    fn start(&self, step: &str, total: u64);
    fn advance(&self, units: u64);
    fn finish(&self);
}

/// Reports nowhere (the default: tests, cron, pipes).
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

#[derive(Clone)]
pub struct Ctx {
    pub clock: Arc<dyn Clock>,
    pub run_id: String,
    pub progress: Arc<dyn Progress>,
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
        Ctx {
            clock,
            run_id,
            progress: Arc::new(NoProgress),
        }
    }

    /// This context, reporting progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Ctx {
        self.progress = progress;
        self
    }

    /// The context of one stage of a job that runs several: the same clock,
    /// and the job's run id with the stage's name appended.
    pub fn stage(&self, stage: &str) -> Ctx {
        Ctx {
            clock: self.clock.clone(),
            run_id: format!("{}-{stage}", self.run_id),
            progress: self.progress.clone(),
        }
    }

    /// A context with a given run id (tests).
    pub fn with_run_id(clock: Arc<dyn Clock>, run_id: impl Into<String>) -> Ctx {
        Ctx {
            clock,
            run_id: run_id.into(),
            progress: Arc::new(NoProgress),
        }
    }
}
