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

# The README's main command: ingest, roll up and bill October 2026 of the sample data.
demo:
    cargo run -- pipeline --input sample-data --lake lake --month 2026-10 --out out

# meter against DuckDB and polars on the same generated input; writes BENCHMARKS.md.
# Arguments go to bench/bench.py: `just bench --runs 5`, `just bench --smoke`.
bench *ARGS:
    cargo build --release --locked
    cargo build --release --locked --example s3-server
    python3 bench/bench.py {{ARGS}}

# Regenerate the committed sample data (deterministic for the seed).
sample-data:
    rm -rf sample-data && cargo run -- sample --out sample-data --customers 3 --days 30 --events-per-day 40 --seed 42
