//! meter has no build step. This script exists for its
//! `[build-dependencies]` (Cargo.toml): build scripts and proc macros share
//! their own feature set, and the test graph's proc macros (the
//! dev-dependencies') turn on memchr's default features there. Asking for
//! them here too keeps libduckdb-sys's build script, and with it DuckDB's
//! C++, the same unit for `cargo build` and `cargo test`, so it is compiled
//! once (`.ci/run` checks it).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
