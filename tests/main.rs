//! Integration tests: whole jobs on `sample-data/` and on small trees built
//! per scenario, checked through DuckDB and the run reports.

mod bill;
mod cli;
mod common;
mod compact;
mod contracts;
mod crash;
mod cron;
mod erase;
mod explain;
mod fuzz;
mod ingest;
mod query;
mod reconcile;
mod report;
mod retention;
mod rollup;
mod rollup_dates;
mod s3;
mod s3_input;
mod s3_lake;
mod s3_server;
mod shard;
mod stripe;
mod stripe_server;
