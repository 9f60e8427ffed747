//! What every stage's run report offers the jobs: its id, a human summary
//! and whether the run needs attention (exit code 1).

use serde::Serialize;

pub trait StageReport: Serialize {
    fn run_id(&self) -> &str;
    /// Lines for stderr, each ending in a newline.
    fn summary(&self) -> String;
    fn needs_attention(&self) -> bool;
}

/// Implements [`StageReport`] from a report's `run_id` field and its own
/// `summary` and `needs_attention` methods. Each report type invokes it
/// next to its definition; this module knows no stage.
macro_rules! stage_report {
    ($($ty:ty),*) => {$(
        impl $crate::model::report::StageReport for $ty {
            fn run_id(&self) -> &str {
                &self.run_id
            }
            fn summary(&self) -> String {
                <$ty>::summary(self)
            }
            fn needs_attention(&self) -> bool {
                <$ty>::needs_attention(self)
            }
        }
    )*};
}

pub(crate) use stage_report;

/// `1536` -> `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}
