//! Sample input generator (split into files in the next commit).

mod api;
pub use api::*;
