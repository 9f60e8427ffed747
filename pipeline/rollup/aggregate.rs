//! Daily and monthly aggregates with polars. Daily rows are built from
//! priced events (each `event_id` once), monthly rows from daily rows; every
//! measure is additive (sums, counts, maxima), so averages are carried as
//! sum and count and add up across days. Money stays `Decimal(38, 18)`.
//!
//! ```text
//! <lake>/daily/api_usage/date=YYYY-MM-DD/     per customer, vm, user, provider, model
//! <lake>/monthly/api_usage/month=YYYY-MM/     the same, over the month
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use polars::prelude::*;
use serde::Serialize;

use super::priced::PRICED_API_USAGE;
use crate::error::{Error, IoContext, Result};
use crate::lake::{Commit, Lake};

pub const DAILY_API_USAGE: &str = "daily/api_usage";
pub const MONTHLY_API_USAGE: &str = "monthly/api_usage";

/// Group keys of the api_usage aggregates.
pub const USAGE_KEYS: [&str; 5] = ["customer_id", "vm_id", "user_id", "provider", "model"];
/// Measures that add up across rows and periods.
pub const USAGE_SUMS: [&str; 12] = [
    "requests",
    "failed",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost",
    "unpriced_requests",
    "unpriced_tokens",
    "latency_ms_sum",
    "latency_ms_count",
];
/// Measures that combine by maximum.
pub const USAGE_MAXES: [&str; 1] = ["latency_ms_max"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AggregateReport {
    pub table: &'static str,
    /// `date=YYYY-MM-DD` or `month=YYYY-MM`.
    pub partition: String,
    pub rows_in: u64,
    pub rows_out: u64,
    pub files_replaced: u64,
}

fn read_frames(lake: &Lake, dirs: &[PathBuf]) -> Result<Option<LazyFrame>> {
    let mut frames = Vec::new();
    for dir in dirs {
        for path in lake.parquet_files(dir)? {
            let file = File::open(&path).read_ctx(&path)?;
            let df = ParquetReader::new(file)
                .finish()
                .map_err(|e| polars_error(&path, e))?;
            frames.push(df.lazy());
        }
    }
    if frames.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        concat(frames, UnionArgs::default()).map_err(|e| polars_error(&dirs[0], e))?,
    ))
}

fn polars_error(path: &Path, e: PolarsError) -> Error {
    Error::Lake {
        path: path.to_path_buf(),
        message: format!("polars: {e}"),
    }
}

/// Replaces every file of `dir` with `df` (or with nothing when empty).
fn replace_dir(lake: &Lake, dir: &Path, run_id: &str, df: &mut DataFrame) -> Result<u64> {
    let old = lake.parquet_files(dir)?;
    let mut commit = Commit {
        renames: Vec::new(),
        deletes: old.clone(),
    };
    if df.height() > 0 {
        std::fs::create_dir_all(dir).write_ctx(dir)?;
        let final_path = dir.join(format!("part-{run_id}.parquet"));
        let tmp = dir.join(format!("part-{run_id}.parquet.tmp"));
        let file = File::create(&tmp).write_ctx(&tmp)?;
        ParquetWriter::new(file)
            .with_compression(ParquetCompression::Zstd(None))
            .with_statistics(StatisticsOptions::default())
            .finish(df)
            .map_err(|e| polars_error(&tmp, e))?;
        commit.renames.push((tmp, final_path));
    }
    lake.commit(run_id, &commit)?;
    Ok(old.len() as u64)
}

fn sum_i64(name: &str) -> Expr {
    col(name).cast(DataType::Int64).sum().alias(name)
}

/// Aggregates one day of priced events into `daily/api_usage`.
pub fn daily_api_usage(lake: &Lake, date: NaiveDate, run_id: &str) -> Result<AggregateReport> {
    let dir = lake.dated_dir(DAILY_API_USAGE, date);
    let source = lake.dated_dir(PRICED_API_USAGE, date);
    let partition = format!("date={date}");
    let Some(events) = read_frames(lake, std::slice::from_ref(&source))? else {
        let files_replaced = replace_dir(lake, &dir, run_id, &mut DataFrame::empty())?;
        return Ok(AggregateReport {
            table: DAILY_API_USAGE,
            partition,
            rows_in: 0,
            rows_out: 0,
            files_replaced,
        });
    };
    let all_tokens = col("input_tokens")
        + col("cache_read_tokens")
        + col("cache_write_tokens")
        + col("output_tokens");
    let unpriced = col("priced").not();
    let events = events.unique_stable(Some(cols(["event_id"])), UniqueKeepStrategy::First);
    let events = events.collect().map_err(|e| polars_error(&source, e))?;
    let rows_in = events.height() as u64;
    let mut daily = events
        .lazy()
        .group_by(USAGE_KEYS.map(col))
        .agg([
            len().cast(DataType::Int64).alias("requests"),
            sum_i64("failed"),
            sum_i64("input_tokens"),
            sum_i64("cache_read_tokens"),
            sum_i64("cache_write_tokens"),
            sum_i64("output_tokens"),
            sum_i64("reasoning_tokens"),
            col("cost").sum().alias("cost"),
            unpriced
                .clone()
                .cast(DataType::Int64)
                .sum()
                .alias("unpriced_requests"),
            all_tokens
                .filter(unpriced)
                .sum()
                .cast(DataType::Int64)
                .alias("unpriced_tokens"),
            col("latency_ms")
                .sum()
                .cast(DataType::Int64)
                .alias("latency_ms_sum"),
            col("latency_ms")
                .count()
                .cast(DataType::Int64)
                .alias("latency_ms_count"),
            col("latency_ms").max().alias("latency_ms_max"),
        ])
        .sort(
            USAGE_KEYS,
            SortMultipleOptions::default().with_nulls_last(true),
        )
        .collect()
        .map_err(|e| polars_error(&source, e))?;
    let rows_out = daily.height() as u64;
    let files_replaced = replace_dir(lake, &dir, run_id, &mut daily)?;
    Ok(AggregateReport {
        table: DAILY_API_USAGE,
        partition,
        rows_in,
        rows_out,
        files_replaced,
    })
}

/// Aggregates a month's daily rows into `monthly/api_usage/month=YYYY-MM`.
pub fn monthly_api_usage(lake: &Lake, month: NaiveDate, run_id: &str) -> Result<AggregateReport> {
    let first = month.with_day(1).expect("day 1 exists");
    let days: Vec<PathBuf> = first
        .iter_days()
        .take_while(|d| d.month() == first.month())
        .map(|d| lake.dated_dir(DAILY_API_USAGE, d))
        .collect();
    let partition = format!("month={}", first.format("%Y-%m"));
    let dir = lake.root().join(MONTHLY_API_USAGE).join(&partition);
    let Some(daily) = read_frames(lake, &days)? else {
        let files_replaced = replace_dir(lake, &dir, run_id, &mut DataFrame::empty())?;
        return Ok(AggregateReport {
            table: MONTHLY_API_USAGE,
            partition,
            rows_in: 0,
            rows_out: 0,
            files_replaced,
        });
    };
    let mut aggs: Vec<Expr> = USAGE_SUMS
        .iter()
        .map(|m| {
            if *m == "cost" {
                col(*m).sum().alias(*m)
            } else {
                sum_i64(m)
            }
        })
        .collect();
    aggs.extend(USAGE_MAXES.iter().map(|m| col(*m).max().alias(*m)));
    let daily = daily.collect().map_err(|e| polars_error(&dir, e))?;
    let rows_in = daily.height() as u64;
    let mut monthly = daily
        .lazy()
        .group_by(USAGE_KEYS.map(col))
        .agg(aggs)
        .sort(
            USAGE_KEYS,
            SortMultipleOptions::default().with_nulls_last(true),
        )
        .collect()
        .map_err(|e| polars_error(&dir, e))?;
    let rows_out = monthly.height() as u64;
    let files_replaced = replace_dir(lake, &dir, run_id, &mut monthly)?;
    Ok(AggregateReport {
        table: MONTHLY_API_USAGE,
        partition,
        rows_in,
        rows_out,
        files_replaced,
    })
}
