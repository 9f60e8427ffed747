//! A fault hook for crash tests: with `METER_FAULT_KILL_AFTER_FILES=N` in
//! the environment, the process kills itself with SIGKILL right after the
//! N-th file it has written (a lake file, a run report, an object in the
//! store), exactly as `kill -9` would: no destructor, no flush, no cleanup.
//! Unset (always, outside tests) it costs one relaxed atomic load per file.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable that arms the hook.
pub const KILL_AFTER_FILES: &str = "METER_FAULT_KILL_AFTER_FILES";

static WRITTEN: AtomicU64 = AtomicU64::new(0);

fn limit() -> Option<u64> {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    *LIMIT.get_or_init(|| std::env::var(KILL_AFTER_FILES).ok()?.parse().ok())
}

/// Called after every file is completely written.
pub fn file_written() {
    let Some(limit) = limit() else {
        return;
    };
    if WRITTEN.fetch_add(1, Ordering::Relaxed) + 1 >= limit {
        // SAFETY: kill(2) on our own pid with a valid signal number has no
        // memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
