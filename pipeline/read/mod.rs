//! The readers: what people ask of the lake and the published revisions.
//! `query`, `explain`, `overview` (`meter report`) and `reconcile` open the
//! lake with `Lake::open_read`: no lock, no table changed (a report or a
//! reconcile leaves only its run report in `_runs/`). `silent` reads the
//! lake it is given, by the nightly or the report.

pub mod explain;
pub mod overview;
pub mod query;
pub mod reconcile;
pub mod silent;
