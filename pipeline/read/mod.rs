//! The readers: what people ask of the lake and the published revisions.
//! Each opens the lake with `Lake::open_read` (no lock, nothing changed).

pub mod explain;
pub mod overview;
pub mod query;
pub mod reconcile;
pub mod silent;
