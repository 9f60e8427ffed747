//! `meter`: raw LLM-proxy and VM usage logs to exact invoices.
//!
//! The library holds every stage; the `meter` binary only parses flags and
//! calls them. The folders are the layers, lowest first; a module imports
//! only from its own layer and the ones below (a test in `layers.rs` keeps
//! it so). See ARCHITECTURE.md for the map.

/// The shared model: ids, redaction, time, prices, customers, config,
/// errors. Parsing and validation, no IO.
pub mod model;

/// Reads the model's own files (pricing, customers, config) from disk.
pub mod load;

/// Storage: the lake and its table schemas, the output store, and the
/// operations that rewrite the lake (compaction, erasure, retention).
pub mod lake;

/// Stage 1: raw input -> the lake's event tables.
pub mod ingest;

/// Stage 2: the lake's events -> priced daily and monthly aggregates.
pub mod rollup;

/// Stage 3: a month's aggregates -> invoices and Stripe payloads, as a
/// revision.
pub mod bill;

/// Readers of the lake and the published revisions: lock-free, read-only.
pub mod read;

/// The scheduled jobs that compose the stages, their checks and the Stripe
/// push.
pub mod cron;

/// The sample input generator, a tool beside the pipeline.
pub mod sample;

#[cfg(test)]
mod layers;

pub use model::ctx::Ctx;
pub use model::error::{Error, Result};
