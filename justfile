# Recipes mirror .ci/run exactly; `just ci` is what CI runs.
export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") / ".cache/meter-target")

default: ci

# Format check, clippy, tests: the CI gate.
ci:
    bash .ci/run

check:
    cargo fmt --all --check
    cargo clippy --locked --all-targets -- -D warnings

test:
    cargo test --locked

# The README's main command: ingest the sample data into ./lake, then roll up October 2026.
demo:
    cargo run -- ingest --input sample-data --lake lake && cargo run -- rollup --lake lake --month 2026-10

# Regenerate the committed sample data (deterministic for the seed).
sample-data:
    rm -rf sample-data && cargo run -- sample --out sample-data --customers 3 --days 30 --events-per-day 40 --seed 42
