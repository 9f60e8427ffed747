//! `meter`: raw LLM-proxy and VM usage logs to exact invoices.
//!
//! The library holds every stage; the `meter` binary only parses flags and
//! calls them. See ARCHITECTURE.md for the map.

pub mod alerts;
pub mod bill;
pub mod compact;
pub mod config;
pub mod cron;
pub mod ctx;
pub mod erase;
pub mod error;
pub mod explain;
pub mod fault;
pub mod ids;
pub mod ingest;
pub mod lake;
pub mod overview;
pub mod parse;
pub mod pricing;
pub mod query;
pub mod reconcile;
pub mod redact;
pub mod registry;
pub mod report;
pub mod retention;
pub mod rollup;
pub mod sample;
pub mod silent;
pub mod source;
pub mod store;
pub mod stripe;
pub mod tables;

pub use ctx::Ctx;
pub use error::{Error, Result};
