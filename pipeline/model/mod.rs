//! The shared model every layer builds on: what an id, a timestamp, a price
//! list, a customer and an error are. Parsing and validation only: nothing
//! here reads or writes a file (the `load` module reads the model's files),
//! and nothing here imports another layer.

pub mod config;
pub mod contracts;
pub mod ctx;
pub mod error;
pub mod ids;
pub mod pricing;
pub mod redact;
pub mod registry;
pub mod report;
pub mod shard;
pub mod time;
