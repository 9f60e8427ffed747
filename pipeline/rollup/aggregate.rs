//! Daily and monthly aggregates with polars. Daily rows are built from
//! events (each `event_id` once; api_usage from its priced events), monthly
//! rows from daily rows. Every stored measure combines across days by sum or
//! by maximum, so averages are carried as sum and count. Money stays
//! `Decimal(38, 18)`.
//!
//! ```text
//! <lake>/daily/<table>/date=YYYY-MM-DD/
//! <lake>/monthly/<table>/month=YYYY-MM/
//! ```
//! for `api_usage`, `api_requests`, `resource_usage` and `activity`.
//!
//! Compute time (resource_usage): a VM's sample interval for a day is the
//! median gap between its consecutive distinct sample times, ignoring gaps
//! longer than one hour (the VM was off or not reporting); with fewer than two
//! samples it is 300 s. `compute_seconds = samples x interval`, so a gap never
//! counts as compute time. Samples are rows with `measurement` `sample` (CSV,
//! JSONL) or `cpu` (Telegraf), counted once per timestamp.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use polars::prelude::*;
use rust_decimal::Decimal;
use serde::Serialize;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use super::priced::PRICED_API_USAGE;
use crate::lake::tables::Table;
use crate::lake::{Commit, Lake, WholeFile};
use crate::model::error::{Error, Result};

/// Gaps longer than this are not a sample interval.
pub const MAX_SAMPLE_GAP_S: i64 = 3600;
/// The interval assumed for a VM with fewer than two samples in a day.
pub const DEFAULT_SAMPLE_INTERVAL_S: i64 = 300;

/// One aggregated table: where its events are, its keys and its measures.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub table: Table,
    pub keys: &'static [&'static str],
    /// Measures that add up across days (money among them).
    pub sums: &'static [&'static str],
    /// Measures that combine by maximum.
    pub maxes: &'static [&'static str],
    /// The event columns the daily rows are made from: the only ones read.
    pub reads: &'static [&'static str],
}

pub const API_USAGE: Spec = Spec {
    table: Table::ApiUsage,
    keys: &["customer_id", "vm_id", "user_id", "provider", "model"],
    sums: &[
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
        "unpriced_input_tokens",
        "unpriced_cache_read_tokens",
        "unpriced_cache_write_tokens",
        "unpriced_output_tokens",
        "unpriced_reasoning_tokens",
        "latency_ms_sum",
        "latency_ms_count",
    ],
    maxes: &["latency_ms_max"],
    reads: &[
        "event_id",
        "customer_id",
        "vm_id",
        "user_id",
        "provider",
        "model",
        "failed",
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "output_tokens",
        "reasoning_tokens",
        "cost",
        "priced",
        "latency_ms",
    ],
};

pub const API_REQUESTS: Spec = Spec {
    table: Table::ApiRequests,
    keys: &["customer_id", "vm_id", "provider", "path", "status_class"],
    sums: &["requests", "bytes", "latency_us_sum", "latency_us_count"],
    maxes: &["latency_us_max"],
    reads: &[
        "event_id",
        "customer_id",
        "vm_id",
        "provider",
        "path",
        "status",
        "bytes",
        "latency_us",
    ],
};

pub const RESOURCE_USAGE: Spec = Spec {
    table: Table::ResourceUsage,
    keys: &["customer_id", "vm_id"],
    sums: &[
        "samples",
        "compute_seconds",
        "cpu_percent_sum",
        "cpu_percent_count",
        "memory_percent_sum",
        "memory_percent_count",
        "network_in_mb",
        "network_out_mb",
    ],
    maxes: &["cpu_percent_max", "memory_percent_max", "disk_gb_max"],
    reads: &[
        "event_id",
        "ts",
        "customer_id",
        "vm_id",
        "measurement",
        "cpu_percent",
        "memory_percent",
        "disk_gb",
        "network_in_mb",
        "network_out_mb",
    ],
};

pub const ACTIVITY: Spec = Spec {
    table: Table::Activity,
    keys: &[
        "customer_id",
        "vm_id",
        "user_id",
        "activity_type",
        "pattern_name",
    ],
    sums: &[
        "count",
        "failures",
        "duration_seconds_sum",
        "duration_seconds_count",
    ],
    maxes: &["duration_seconds_max"],
    reads: &[
        "event_id",
        "customer_id",
        "vm_id",
        "user_id",
        "activity_type",
        "pattern_name",
        "exit_code",
        "duration_seconds",
    ],
};

pub const SPECS: [Spec; 4] = [API_USAGE, API_REQUESTS, RESOURCE_USAGE, ACTIVITY];

impl Spec {
    pub fn daily_dir(&self, lake: &Lake, date: NaiveDate) -> PathBuf {
        lake.dated_dir(&format!("daily/{}", self.table.name()), date)
    }

    pub fn monthly_dir(&self, lake: &Lake, month: NaiveDate) -> PathBuf {
        lake.root()
            .join("monthly")
            .join(self.table.name())
            .join(format!("month={}", month.format("%Y-%m")))
    }

    fn source_dir(&self, lake: &Lake, date: NaiveDate) -> PathBuf {
        match self.table {
            Table::ApiUsage => lake.dated_dir(PRICED_API_USAGE, date),
            table => lake.partition_dir(table, date),
        }
    }

    /// The daily measures, from events.
    fn daily_aggs(&self, schema: &Schema) -> Vec<Expr> {
        let count = |name: &str| len().cast(DataType::Int64).alias(name);
        let stats = |column: &str, unit: &str| {
            vec![
                measure_sum(schema, column).alias(format!("{unit}_sum")),
                col(column)
                    .count()
                    .cast(DataType::Int64)
                    .alias(format!("{unit}_count")),
                col(column).max().alias(format!("{unit}_max")),
            ]
        };
        match self.table {
            Table::ApiUsage => {
                let all_tokens = col("input_tokens")
                    + col("cache_read_tokens")
                    + col("cache_write_tokens")
                    + col("output_tokens");
                let unpriced = col("priced").not();
                // Each token kind of the unpriced events on its own, so that
                // an invoice's priced line and unpriced line each carry
                // exactly their own tokens.
                let unpriced_sum = |kind: &str| {
                    col(kind)
                        .filter(unpriced.clone())
                        .sum()
                        .cast(DataType::Int64)
                        .alias(format!("unpriced_{kind}"))
                };
                let mut aggs = vec![
                    count("requests"),
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
                        .filter(unpriced.clone())
                        .sum()
                        .cast(DataType::Int64)
                        .alias("unpriced_tokens"),
                    unpriced_sum("input_tokens"),
                    unpriced_sum("cache_read_tokens"),
                    unpriced_sum("cache_write_tokens"),
                    unpriced_sum("output_tokens"),
                    unpriced_sum("reasoning_tokens"),
                ];
                aggs.extend(stats("latency_ms", "latency_ms"));
                aggs
            }
            Table::ApiRequests => {
                let mut aggs = vec![count("requests"), sum_i64("bytes")];
                aggs.extend(stats("latency_us", "latency_us"));
                aggs
            }
            Table::ResourceUsage => {
                let mut aggs = Vec::new();
                aggs.extend(stats("cpu_percent", "cpu_percent"));
                aggs.extend(stats("memory_percent", "memory_percent"));
                aggs.push(col("disk_gb").max().alias("disk_gb_max"));
                aggs.push(measure_sum(schema, "network_in_mb").alias("network_in_mb"));
                aggs.push(measure_sum(schema, "network_out_mb").alias("network_out_mb"));
                aggs
            }
            Table::Activity => {
                let failed = col("exit_code")
                    .is_not_null()
                    .and(col("exit_code").neq(lit(0)));
                let mut aggs = vec![
                    count("count"),
                    failed.cast(DataType::Int64).sum().alias("failures"),
                ];
                aggs.extend(stats("duration_seconds", "duration_seconds"));
                aggs
            }
            Table::Rejects => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AggregateReport {
    pub table: Table,
    /// `daily` or `monthly`.
    pub period: &'static str,
    /// `date=YYYY-MM-DD` or `month=YYYY-MM`.
    pub partition: String,
    pub rows_in: u64,
    /// Input rows dropped because their `event_id` was already read.
    pub duplicates: u64,
    pub rows_out: u64,
    pub files_replaced: u64,
}

impl AggregateReport {
    fn new(table: Table, period: &'static str, partition: String) -> AggregateReport {
        AggregateReport {
            table,
            period,
            partition,
            rows_in: 0,
            duplicates: 0,
            rows_out: 0,
            files_replaced: 0,
        }
    }
}

fn polars_error(path: &Path, e: PolarsError) -> Error {
    Error::Lake {
        path: path.to_path_buf(),
        message: format!("polars: {e}"),
    }
}

/// The Parquet files of `dirs` as one frame: only `columns` of them, or
/// every column.
fn read_frames(
    lake: &Lake,
    dirs: &[PathBuf],
    columns: Option<&[&str]>,
) -> Result<Option<DataFrame>> {
    let mut frames = Vec::new();
    for path in lake.parquet_files_of(dirs)? {
        let reader: Box<dyn polars::io::mmap::MmapBytesReader> = match lake.open_whole(&path)? {
            WholeFile::Local(file) => Box::new(file),
            WholeFile::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes)),
        };
        let df = ParquetReader::new(reader)
            .with_columns(columns.map(|c| c.iter().map(|c| c.to_string()).collect()))
            // Row group by row group: the 1x month peaks ~25 MiB lower
            // than polars' choice (353 against 376-382 MiB), as fast.
            .read_parallel(ParallelStrategy::RowGroups)
            .finish()
            .map_err(|e| polars_error(&path, e))?;
        frames.push(df.lazy());
    }
    let Some(first) = dirs.first() else {
        return Ok(None);
    };
    if frames.is_empty() {
        return Ok(None);
    }
    let df = concat(frames, UnionArgs::default())
        .and_then(LazyFrame::collect)
        .map_err(|e| polars_error(first, e))?;
    Ok(Some(df))
}

/// Columns that hold money, in any frame the rollup writes.
pub const MONEY_COLUMNS: [&str; 1] = ["cost"];

/// Refuses a frame whose money column is anything but a decimal.
pub fn check_money(df: &DataFrame, path: &Path) -> Result<()> {
    for name in MONEY_COLUMNS {
        if let Ok(column) = df.column(name)
            && !matches!(column.dtype(), DataType::Decimal(..))
        {
            return Err(Error::Lake {
                path: path.to_path_buf(),
                message: format!(
                    "money column {name} is {}, not a decimal: refusing to write it",
                    column.dtype()
                ),
            });
        }
    }
    Ok(())
}

/// Whether a partition without rows is written (a file with the columns
/// and no row) or left without files.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Empty {
    /// A day without events has no daily files.
    NoFile,
    /// A month is always written, rows or not: its partition says it was
    /// rolled up (billing bills a month without usage from it).
    Write,
}

/// Replaces every file of `dir` with `df` (with nothing when it is empty,
/// unless `empty` says to write it).
fn replace_dir(
    lake: &Lake,
    dir: &Path,
    run_id: &str,
    df: &mut DataFrame,
    empty: Empty,
) -> Result<u64> {
    check_money(df, dir)?;
    let old = lake.parquet_files(dir)?;
    let mut commit = Commit {
        renames: Vec::new(),
        deletes: old.clone(),
    };
    if df.height() > 0 || empty == Empty::Write {
        let mut new = lake.new_file(dir, &format!("part-{run_id}"))?;
        ParquetWriter::new(&mut new.file)
            .with_compression(ParquetCompression::Zstd(None))
            .finish(df)
            .map_err(|e| polars_error(&new.path, e))?;
        commit.renames.push(new.finish()?);
    }
    lake.commit(run_id, &commit)?;
    Ok(old.len() as u64)
}

/// The sum of a float measure (CPU and memory percent, megabytes, seconds)
/// in a group, the same to the last bit however polars splits the rows
/// between threads: each value rounded to [`FLOAT_SUM_SCALE`] decimal
/// places, summed exactly as a decimal, and the total rounded to a float
/// once. Summed as floats, the total depended on the order of the
/// additions, which polars' parallel group-by does not fix (two runs of one
/// month's rollup wrote different last digits). Values must stay below
/// 10^14 in magnitude (the decimal's 26 digits less its scale): far above
/// any percent, megabyte or second count.
fn float_sum(e: Expr) -> Expr {
    e.cast(DataType::Decimal(26, FLOAT_SUM_SCALE))
        .sum()
        .cast(DataType::Float64)
}

/// The decimal places a float measure is summed at ([`float_sum`]).
const FLOAT_SUM_SCALE: usize = 12;

/// The sum of the measure `column` of a frame with `schema` in a group:
/// integers and decimals exactly as they are, floats through [`float_sum`].
fn measure_sum(schema: &Schema, column: &str) -> Expr {
    match schema.get(column) {
        Some(dtype) if dtype.is_float() => float_sum(col(column)),
        _ => col(column).sum(),
    }
}

fn sum_i64(name: &str) -> Expr {
    col(name).cast(DataType::Int64).sum().alias(name)
}

fn sort_keys(lf: LazyFrame, keys: &[&str]) -> LazyFrame {
    lf.sort(
        keys.iter().copied(),
        SortMultipleOptions::default()
            .with_nulls_last(true)
            .with_maintain_order(true),
    )
}

/// Aggregates one day of one table into `daily/<table>/date=D`, replacing
/// what was there.
pub fn daily(lake: &Lake, spec: Spec, date: NaiveDate, run_id: &str) -> Result<AggregateReport> {
    let dir = spec.daily_dir(lake, date);
    let source = spec.source_dir(lake, date);
    let mut report = AggregateReport::new(spec.table, "daily", format!("date={date}"));
    let Some(events) = read_frames(lake, std::slice::from_ref(&source), Some(spec.reads))? else {
        report.files_replaced =
            replace_dir(lake, &dir, run_id, &mut DataFrame::empty(), Empty::NoFile)?;
        return Ok(report);
    };
    report.rows_in = events.height() as u64;
    let events = first_of_each_event(&events).map_err(|e| polars_error(&source, e))?;
    report.duplicates = report.rows_in - events.height() as u64;
    let mut df = aggregate_events(spec, &events).map_err(|e| polars_error(&source, e))?;
    report.rows_out = df.height() as u64;
    report.files_replaced = replace_dir(lake, &dir, run_id, &mut df, Empty::NoFile)?;
    Ok(report)
}

/// Each event once, in order: the first row of each `event_id`. A mask from
/// the one column, where a stable `unique` grouped every column to keep its
/// first value (a tenth of the rollup's time).
fn first_of_each_event(events: &DataFrame) -> PolarsResult<DataFrame> {
    let ids = events.column("event_id")?.str()?;
    // The ids as they are, borrowed from the frame, hashed with xxh3: no
    // parse of 32 hex digits per row.
    let mut seen: HashSet<&str, Xxh3DefaultBuilder> =
        HashSet::with_capacity_and_hasher(ids.len(), Xxh3DefaultBuilder);
    let mut seen_null = false;
    let first: BooleanChunked = ids
        .iter()
        .map(|id| {
            Some(match id {
                Some(id) => seen.insert(id),
                None => !std::mem::replace(&mut seen_null, true),
            })
        })
        .collect();
    events.filter(&first)
}

/// One table's daily rows from its events (each `event_id` once), sorted
/// by the keys. Pure: no IO.
pub fn aggregate_events(spec: Spec, events: &DataFrame) -> PolarsResult<DataFrame> {
    let keys: Vec<Expr> = spec.keys.iter().map(|k| col(*k)).collect();
    let mut lf = events.clone().lazy();
    if spec.table == Table::ApiRequests {
        lf = lf.with_column((col("status").floor_div(lit(100)) * lit(100)).alias("status_class"));
    }
    let mut out = lf.group_by(keys).agg(spec.daily_aggs(events.schema()));
    if spec.table == Table::ResourceUsage {
        let compute = compute_time(events)?;
        out = out
            .join(
                compute.lazy(),
                [col("vm_id")],
                [col("vm_id")],
                JoinArgs::new(JoinType::Left),
            )
            .with_columns([
                col("samples").fill_null(lit(0i64)),
                col("compute_seconds").fill_null(lit(0i64)),
            ]);
    }
    let columns: Vec<Expr> = spec
        .keys
        .iter()
        .chain(spec.sums)
        .chain(spec.maxes)
        .map(|c| col(*c))
        .collect();
    sort_keys(out.select(columns), spec.keys).collect()
}

/// Combines aggregate rows of shorter periods (days) into one period
/// (a month): sums and maxima by key, sorted by the keys. Pure: no IO.
pub fn combine(spec: Spec, rows: DataFrame) -> PolarsResult<DataFrame> {
    let schema = rows.schema();
    let mut aggs: Vec<Expr> = (spec.sums.iter())
        .map(|m| measure_sum(schema, m).alias(*m))
        .collect();
    aggs.extend(spec.maxes.iter().map(|m| col(*m).max().alias(*m)));
    let keys: Vec<Expr> = spec.keys.iter().map(|k| col(*k)).collect();
    let columns: Vec<Expr> = spec
        .keys
        .iter()
        .chain(spec.sums)
        .chain(spec.maxes)
        .map(|c| col(*c))
        .collect();
    sort_keys(
        rows.lazy().group_by(keys).agg(aggs).select(columns),
        spec.keys,
    )
    .collect()
}

/// Per VM: distinct sample times and compute seconds (see the module docs).
fn compute_time(events: &DataFrame) -> PolarsResult<DataFrame> {
    let samples = events
        .clone()
        .lazy()
        .filter(
            col("measurement")
                .eq(lit("sample"))
                .or(col("measurement").eq(lit("cpu"))),
        )
        .select([col("vm_id"), col("ts").cast(DataType::Int64).alias("ts_us")])
        .unique_stable(None, UniqueKeepStrategy::First)
        .sort(["vm_id", "ts_us"], SortMultipleOptions::default())
        .collect()?;
    let vms = samples.column("vm_id")?.str()?;
    let ts = samples.column("ts_us")?.i64()?;
    let mut per_vm: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (vm, t) in vms.iter().zip(ts.iter()) {
        if let (Some(vm), Some(t)) = (vm, t) {
            per_vm.entry(vm.to_string()).or_default().push(t);
        }
    }
    let mut names = Vec::new();
    let mut counts = Vec::new();
    let mut seconds = Vec::new();
    for (vm, times) in per_vm {
        let interval = sample_interval_s(&times);
        names.push(vm);
        counts.push(times.len() as i64);
        seconds.push(times.len() as i64 * interval);
    }
    DataFrame::new(
        names.len(),
        vec![
            Column::new("vm_id".into(), names),
            Column::new("samples".into(), counts),
            Column::new("compute_seconds".into(), seconds),
        ],
    )
}

/// The median gap in seconds between sorted sample times (microseconds),
/// ignoring gaps over [`MAX_SAMPLE_GAP_S`].
pub fn sample_interval_s(sorted_us: &[i64]) -> i64 {
    let mut gaps: Vec<i64> = sorted_us
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1_000_000)
        .filter(|g| *g > 0 && *g <= MAX_SAMPLE_GAP_S)
        .collect();
    if gaps.is_empty() {
        return DEFAULT_SAMPLE_INTERVAL_S;
    }
    gaps.sort_unstable();
    gaps[(gaps.len() - 1) / 2]
}

/// Compute hours from compute seconds, as an exact decimal rounded to 18
/// places (seconds are the additive measure; hours are derived).
pub fn compute_hours(seconds: i64) -> Decimal {
    (Decimal::from(seconds) / Decimal::from(3600)).round_dp(18)
}

/// Aggregates a month's daily rows into `monthly/<table>/month=YYYY-MM`.
pub fn monthly(lake: &Lake, spec: Spec, month: NaiveDate, run_id: &str) -> Result<AggregateReport> {
    let first = month.with_day(1).expect("day 1 exists");
    let days: Vec<PathBuf> = first
        .iter_days()
        .take_while(|d| d.month() == first.month())
        .map(|d| spec.daily_dir(lake, d))
        .collect();
    let dir = spec.monthly_dir(lake, first);
    let mut report = AggregateReport::new(
        spec.table,
        "monthly",
        format!("month={}", first.format("%Y-%m")),
    );
    let mut df = match read_frames(lake, &days, None)? {
        Some(daily) => {
            report.rows_in = daily.height() as u64;
            combine(spec, daily).map_err(|e| polars_error(&dir, e))?
        }
        // A month without events still gets its (empty) partition: it is
        // rolled up, and billing bills its fees from it.
        None => empty_aggregate(spec).map_err(|e| polars_error(&dir, e))?,
    };
    report.rows_out = df.height() as u64;
    report.files_replaced = replace_dir(lake, &dir, run_id, &mut df, Empty::Write)?;
    Ok(report)
}

/// `spec`'s source events with no row: the columns and types its files
/// hold (`priced_schema` for api_usage, the table's schema otherwise), read
/// through Parquet as the files are. Pure: no file IO.
pub fn empty_events(spec: Spec) -> PolarsResult<DataFrame> {
    let schema = match spec.table {
        Table::ApiUsage => super::priced::priced_schema(),
        table => table.schema(),
    };
    let mut bytes = Vec::new();
    let writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None)
        .map_err(|e| PolarsError::ComputeError(e.to_string().into()))?;
    writer
        .close()
        .map_err(|e| PolarsError::ComputeError(e.to_string().into()))?;
    ParquetReader::new(std::io::Cursor::new(bytes)).finish()
}

/// A period's aggregate rows when it has no events: none, with the columns
/// and types of any other period's. Pure: no file IO.
pub fn empty_aggregate(spec: Spec) -> PolarsResult<DataFrame> {
    combine(spec, aggregate_events(spec, &empty_events(spec)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_interval_is_the_median_gap_without_outages() {
        let min = 60_000_000;
        assert_eq!(sample_interval_s(&[0]), DEFAULT_SAMPLE_INTERVAL_S);
        assert_eq!(sample_interval_s(&[0, 5 * min, 10 * min, 15 * min]), 300);
        // A three-hour outage is not an interval.
        assert_eq!(
            sample_interval_s(&[0, min, 2 * min, 182 * min, 183 * min]),
            60
        );
        assert_eq!(compute_hours(300 * 12), Decimal::ONE);
    }

    type Event = (u8, u8, u8, bool, u32, u32, u32, u32, u32, bool, Option<u16>);

    /// priced api_usage events as the rollup reads them.
    fn usage_events(events: &[Event]) -> DataFrame {
        let customers = [Some("c0"), Some("c1"), None];
        let models = ["gpt-4o", "gpt-5", "o3"];
        let n = events.len();
        let cost: Vec<Option<String>> = events
            .iter()
            .map(|e| {
                e.9.then(|| format!("{}.{:06}", e.8 / 1_000_000, e.8 % 1_000_000))
            })
            .collect();
        let df = DataFrame::new(
            n,
            vec![
                Column::new(
                    "event_id".into(),
                    (0..n).map(|i| format!("e{i}")).collect::<Vec<_>>(),
                ),
                Column::new(
                    "customer_id".into(),
                    events
                        .iter()
                        .map(|e| customers[e.0 as usize % 3])
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "vm_id".into(),
                    events
                        .iter()
                        .map(|e| format!("vm-{}", e.1 % 3))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "user_id".into(),
                    events
                        .iter()
                        .map(|e| (e.1 % 2 == 0).then_some("u1"))
                        .collect::<Vec<_>>(),
                ),
                Column::new("provider".into(), vec!["openai"; n]),
                Column::new(
                    "model".into(),
                    events
                        .iter()
                        .map(|e| models[e.2 as usize % 3])
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "failed".into(),
                    events.iter().map(|e| e.3).collect::<Vec<_>>(),
                ),
                Column::new(
                    "input_tokens".into(),
                    events.iter().map(|e| i64::from(e.4)).collect::<Vec<_>>(),
                ),
                Column::new(
                    "cache_read_tokens".into(),
                    events.iter().map(|e| i64::from(e.5)).collect::<Vec<_>>(),
                ),
                Column::new("cache_write_tokens".into(), vec![0i64; n]),
                Column::new(
                    "output_tokens".into(),
                    events.iter().map(|e| i64::from(e.6)).collect::<Vec<_>>(),
                ),
                Column::new(
                    "reasoning_tokens".into(),
                    events
                        .iter()
                        .map(|e| i64::from(e.7.min(e.6)))
                        .collect::<Vec<_>>(),
                ),
                Column::new("cost".into(), cost),
                Column::new(
                    "priced".into(),
                    events.iter().map(|e| e.9).collect::<Vec<_>>(),
                ),
                Column::new(
                    "latency_ms".into(),
                    events
                        .iter()
                        .map(|e| e.10.map(i64::from))
                        .collect::<Vec<_>>(),
                ),
            ],
        )
        .unwrap();
        df.lazy()
            .with_column(col("cost").cast(DataType::Decimal(38, 18)))
            .collect()
            .unwrap()
    }

    fn event() -> impl Strategy<Value = Event> {
        (
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<bool>(),
            0u32..2_000_000,
            0u32..2_000_000,
            0u32..100_000,
            0u32..100_000,
            any::<u32>(),
            any::<bool>(),
            proptest::option::of(any::<u16>()),
        )
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// aggregate(A) combined with aggregate(B) equals aggregate(A and B),
        /// exactly: the daily-to-monthly invariant.
        #[test]
        fn aggregates_of_parts_combine_to_the_aggregate_of_the_whole(
            events in prop::collection::vec(event(), 0..60),
            split in prop::collection::vec(any::<bool>(), 60),
        ) {
            let all = usage_events(&events);
            let mask = BooleanChunked::new("m".into(), &split[..events.len()]);
            let a = all.filter(&mask).unwrap();
            let b = all.filter(&!&mask).unwrap();
            let whole = aggregate_events(API_USAGE, &all).unwrap();
            let mut parts = aggregate_events(API_USAGE, &a).unwrap();
            parts.vstack_mut(&aggregate_events(API_USAGE, &b).unwrap()).unwrap();
            let combined = combine(API_USAGE, parts).unwrap();
            prop_assert!(whole.equals_missing(&combined), "whole:\n{whole}\ncombined:\n{combined}");
            check_money(&combined, Path::new("monthly/api_usage")).unwrap();
        }
    }

    /// A month without events could never be billed: its rollup wrote no
    /// partition. Its aggregate is now rows-less but typed like any other.
    #[test]
    fn a_month_without_events_aggregates_to_typed_empty_rows() {
        for spec in SPECS {
            let empty = empty_aggregate(spec).unwrap();
            assert_eq!(empty.height(), 0, "{}", spec.table);
            let names: Vec<&str> = empty
                .get_column_names()
                .iter()
                .map(|n| n.as_str())
                .collect();
            let expected: Vec<&str> = spec
                .keys
                .iter()
                .chain(spec.sums)
                .chain(spec.maxes)
                .copied()
                .collect();
            assert_eq!(names, expected, "{}", spec.table);
            check_money(&empty, Path::new("monthly")).unwrap();
        }
        // the same types as a month with events
        let some = usage_events(&[(0, 0, 0, false, 1, 2, 3, 1, 5, true, Some(7))]);
        let full = combine(API_USAGE, aggregate_events(API_USAGE, &some).unwrap()).unwrap();
        assert_eq!(empty_aggregate(API_USAGE).unwrap().schema(), full.schema());
    }

    /// Invoice lines took every token of a model, priced or not: the
    /// aggregate now carries the unpriced events' tokens kind by kind.
    #[test]
    fn unpriced_tokens_are_split_by_kind() {
        // one key: (customer, vm, user, provider, model) all the same
        let events = usage_events(&[
            (0, 0, 0, false, 100, 10, 7, 2, 1_000, true, None),
            (0, 0, 0, false, 40, 5, 3, 1, 0, false, None),
            (0, 0, 0, true, 60, 0, 9, 4, 0, false, Some(3)),
        ]);
        let df = aggregate_events(API_USAGE, &events).unwrap();
        assert_eq!(df.height(), 1);
        let get = |c: &str| df.column(c).unwrap().i64().unwrap().get(0).unwrap();
        assert_eq!(get("input_tokens"), 200);
        assert_eq!(get("unpriced_requests"), 2);
        assert_eq!(get("unpriced_input_tokens"), 100);
        assert_eq!(get("unpriced_cache_read_tokens"), 5);
        assert_eq!(get("unpriced_cache_write_tokens"), 0);
        assert_eq!(get("unpriced_output_tokens"), 12);
        assert_eq!(get("unpriced_reasoning_tokens"), 5);
        assert_eq!(get("unpriced_tokens"), 100 + 5 + 12);
    }

    #[test]
    fn a_float_money_column_is_refused() {
        let float = df!("model" => ["m"], "cost" => [0.1f64]).unwrap();
        let err = check_money(&float, Path::new("daily/api_usage"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("money column cost is f64"), "{err}");
        let decimal = float
            .lazy()
            .with_column(col("cost").cast(DataType::Decimal(38, 18)))
            .collect()
            .unwrap();
        check_money(&decimal, Path::new("daily/api_usage")).unwrap();
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    /// Every key and measure is documented in schemas/rollup.md.
    #[test]
    fn every_aggregate_column_is_documented() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/rollup.md"),
        )
        .unwrap();
        for spec in SPECS {
            for column in spec.keys.iter().chain(spec.sums).chain(spec.maxes) {
                assert!(
                    doc.contains(&format!("`{column}`")),
                    "schemas/rollup.md does not document {column} of {}",
                    spec.table
                );
            }
        }
        for column in super::super::priced::PRICE_COLUMNS {
            assert!(
                doc.contains(&format!("`{column}`")),
                "schemas/rollup.md does not document {column}"
            );
        }
    }
}
