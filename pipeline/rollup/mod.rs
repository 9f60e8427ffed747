//! The rollup stage: prices events from `pricing.toml` in exact decimals
//! ([`priced`]); daily and monthly aggregates follow.

pub mod priced;
