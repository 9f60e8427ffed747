//! The rollup stage: prices events from `pricing.toml` in exact decimals
//! ([`priced`]) and aggregates them by day and month with polars
//! ([`aggregate`]).

pub mod aggregate;
pub mod priced;
