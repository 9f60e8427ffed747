//! Pricing the lake's events (rollup stage, first step).

use arrow::datatypes::DataType;
use meter::lake::Lake;
use meter::lake::tables::Table;
use meter::rollup::priced::{self, PRICE_COLUMNS};
use rust_decimal::Decimal;

use crate::common::*;

#[test]
fn sample_data_prices_exactly_and_reruns_replace_the_day() {
    let tmp = tempfile::tempdir().unwrap();
    let lake_dir = tmp.path().join("lake");
    let ingested = ingest(&sample_data(), &lake_dir, "ingest-run");
    let pricing = meter::load::pricing(&repo().join("pricing.toml")).unwrap();
    let lake = Lake::open(&lake_dir, "price-run").unwrap();
    let mut total = Decimal::ZERO;
    let (mut priced_events, mut unpriced_events) = (0, 0);
    let mut unpriced_models = std::collections::BTreeMap::new();
    for date in lake.partition_dates(Table::ApiUsage).unwrap() {
        let day = priced::price_day(&lake, &pricing, date, "price-run").unwrap();
        assert_eq!(day.duplicates, 0, "ingest stored each event once");
        assert_eq!(day.priced + day.unpriced, day.events_read);
        total += day.cost;
        priced_events += day.priced;
        unpriced_events += day.unpriced;
        for (model, u) in day.unpriced_models {
            *unpriced_models.entry(model).or_insert(0) += u.events;
        }
    }
    assert_eq!(
        priced_events + unpriced_events,
        ingested.tables[&Table::ApiUsage].rows
    );

    // Money is a decimal in the files, never a float.
    for field in priced::priced_schema().fields() {
        if PRICE_COLUMNS.contains(&field.name().as_str()) {
            assert!(
                !matches!(
                    field.data_type(),
                    DataType::Float16 | DataType::Float32 | DataType::Float64
                ),
                "{field:?}"
            );
        }
    }
    let db = duck(&lake_dir);
    let glob = format!("{}/priced/api_usage/*/*.parquet", lake_dir.display());
    let (kind, sum, rows): (String, String, i64) = db
        .query_row(
            &format!("SELECT typeof(any_value(cost)), CAST(sum(cost) AS VARCHAR), count(*) FROM read_parquet('{glob}', hive_partitioning = true)"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(kind, "DECIMAL(38,18)");
    assert_eq!(
        sum.parse::<Decimal>().unwrap().normalize(),
        total.normalize(),
        "DuckDB's sum equals meter's, to the last digit"
    );
    assert_eq!(rows as u64, priced_events + unpriced_events);

    // A rerun replaces the day wholly.
    let date = lake.partition_dates(Table::ApiUsage).unwrap()[3];
    let again = priced::price_day(&lake, &pricing, date, "price-run-2").unwrap();
    let files = lake
        .parquet_files(&lake.dated_dir(priced::PRICED_API_USAGE, date))
        .unwrap();
    assert_eq!(files.len(), 1);
    assert!(files[0].to_string_lossy().contains("price-run-2"));
    assert_eq!(again.files_replaced, 1);
    let rerun_rows = count(
        &db,
        &format!("SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)"),
    );
    assert_eq!(rerun_rows, rows);

    let mut stmt = db
        .prepare(&format!(
            "SELECT coalesce(price_key, '(unpriced) ' || model), count(*), CAST(sum(cost) AS VARCHAR) \
             FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY ALL ORDER BY 1"
        ))
        .unwrap();
    let lines: Vec<String> = stmt
        .query_map([], |r| {
            Ok(format!(
                "{:<24} events={:<5} cost={}",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?
                    .unwrap_or_else(|| "NULL".into())
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    insta::assert_snapshot!(
        "sample_data_cost_by_model",
        format!("total={total}\n{}", lines.join("\n"))
    );
}

/// One number per measure, as text, so decimals compare exactly.
fn sums(db: &duckdb::Connection, glob: &str, measures: &[&str]) -> Vec<String> {
    let select: Vec<String> = measures
        .iter()
        .map(|m| format!("CAST(sum({m}) AS VARCHAR)"))
        .collect();
    let sql = format!(
        "SELECT {} FROM read_parquet('{glob}', hive_partitioning = true)",
        select.join(", ")
    );
    db.query_row(&sql, [], |r| {
        (0..measures.len())
            .map(|i| r.get::<_, String>(i))
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap()
    .into_iter()
    .map(|s| {
        s.parse::<Decimal>()
            .map(|d| d.normalize().to_string())
            .unwrap_or(s)
    })
    .collect()
}

/// Measures equal exactly, except float measurements (not money), which
/// may differ by summation order in the last bits.
fn assert_same(what: &str, a: &[String], b: &[String], measures: &[&str]) {
    for ((x, y), m) in a.iter().zip(b).zip(measures) {
        if x == y {
            continue;
        }
        let (fx, fy): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
        const FLOAT_MEASURES: [&str; 5] = [
            "cpu_percent_sum",
            "memory_percent_sum",
            "network_in_mb",
            "network_out_mb",
            "duration_seconds_sum",
        ];
        let is_float = FLOAT_MEASURES.contains(m);
        assert!(
            is_float && (fx - fy).abs() <= 1e-9 * fx.abs().max(1.0),
            "{what}: {m}: {x} != {y}"
        );
    }
}

#[test]
fn rollup_of_a_month_adds_up_exactly() {
    use meter::rollup::aggregate::{API_USAGE, SPECS};
    use meter::rollup::{self, Period, RollupOptions};

    let tmp = tempfile::tempdir().unwrap();
    let lake_dir = tmp.path().join("lake");
    ingest(&sample_data(), &lake_dir, "ingest-run");
    let opts = RollupOptions {
        lake: lake_dir.clone(),
        pricing: repo().join("pricing.toml"),
        period: Period::Month("2026-10-01".parse().unwrap()),
    };
    let report = rollup::run(&ctx("rollup-run"), &opts).unwrap();
    assert!(
        report.needs_attention(),
        "the sample data has events without a price"
    );
    assert_eq!(
        report.unpriced_models.keys().collect::<Vec<_>>(),
        vec!["gemini-1.5-pro"]
    );
    // A second run replaces every day and the month: same numbers, one file each.
    let again = rollup::run(&ctx("rollup-run-2"), &opts).unwrap();
    assert_eq!(
        (again.cost, again.events_priced),
        (report.cost, report.events_priced)
    );

    let db = duck(&lake_dir);
    db.execute_batch(&std::fs::read_to_string(repo().join("schemas/rollup_views.sql")).unwrap())
        .unwrap();
    for view in [
        "priced_api_usage",
        "daily_api_requests",
        "daily_resource_usage",
        "daily_activity",
        "monthly_activity",
    ] {
        assert!(
            count(&db, &format!("SELECT count(*) FROM {view}")) > 0,
            "{view}"
        );
    }
    let hours: String = db
        .query_row(
            "SELECT CAST(sum(compute_hours) AS VARCHAR) FROM monthly_resource_usage",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        hours.parse::<Decimal>().unwrap() > Decimal::from(4000),
        "{hours}"
    );
    let root = lake_dir.display();
    // Money columns stay decimal everywhere.
    for dir in ["priced/api_usage", "daily/api_usage", "monthly/api_usage"] {
        let glob = format!("{root}/{dir}/*/*.parquet");
        let mut stmt = db
            .prepare(&format!("DESCRIBE SELECT * FROM read_parquet('{glob}')"))
            .unwrap();
        let types: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (name, ty) in &types {
            assert!(
                !ty.contains("DOUBLE") && !ty.contains("FLOAT"),
                "{dir}: {name} is {ty}"
            );
        }
        assert!(
            types
                .iter()
                .any(|(n, t)| n == "cost" && t == "DECIMAL(38,18)"),
            "{dir}: {types:?}"
        );
        let files = count(
            &db,
            &format!(
                "SELECT count(DISTINCT filename) FROM read_parquet('{glob}', filename = true)"
            ),
        );
        let parts = count(
            &db,
            &format!(
                "SELECT count(DISTINCT parse_dirpath(filename)) FROM read_parquet('{glob}', filename = true)"
            ),
        );
        assert_eq!(files, parts, "{dir}: one file per partition after a rerun");
    }

    // Daily rows add up to the events; monthly rows to the daily rows.
    let priced_glob = format!("{root}/priced/api_usage/*/*.parquet");
    let daily_glob = format!("{root}/daily/api_usage/*/*.parquet");
    let event_measures = [
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "output_tokens",
        "reasoning_tokens",
        "cost",
        "latency_ms",
    ];
    let daily_measures = [
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "output_tokens",
        "reasoning_tokens",
        "cost",
        "latency_ms_sum",
    ];
    assert_eq!(
        sums(&db, &priced_glob, &event_measures),
        sums(&db, &daily_glob, &daily_measures)
    );
    assert_eq!(
        count(
            &db,
            &format!("SELECT sum(requests) FROM read_parquet('{daily_glob}')")
        ),
        count(
            &db,
            &format!("SELECT count(*) FROM read_parquet('{priced_glob}')")
        )
    );
    assert_eq!(
        count(
            &db,
            &format!("SELECT sum(unpriced_requests) FROM read_parquet('{daily_glob}')")
        ) as u64,
        report.events_unpriced
    );
    let raw = |table: &str, expr: &str| count(&db, &format!("SELECT {expr} FROM {table}"));
    let daily = |table: &str, expr: &str| {
        count(
            &db,
            &format!("SELECT {expr} FROM read_parquet('{root}/daily/{table}/*/*.parquet')"),
        )
    };
    assert_eq!(
        daily("api_requests", "sum(requests)"),
        raw("api_requests", "count(*)")
    );
    assert_eq!(
        daily("api_requests", "sum(latency_us_sum)"),
        raw("api_requests", "sum(latency_us)")
    );
    assert_eq!(daily("activity", "sum(count)"), raw("activity", "count(*)"));
    assert_eq!(
        daily("activity", "sum(failures)"),
        raw("activity", "count(*) FILTER (WHERE exit_code <> 0)")
    );
    assert_eq!(
        daily("resource_usage", "sum(samples)"),
        raw(
            "resource_usage",
            "count(DISTINCT (vm_id, ts)) FILTER (WHERE measurement IN ('sample', 'cpu'))"
        )
    );
    for spec in SPECS {
        let table = spec.table.name();
        let d = sums(&db, &format!("{root}/daily/{table}/*/*.parquet"), spec.sums);
        let m = sums(
            &db,
            &format!("{root}/monthly/{table}/*/*.parquet"),
            spec.sums,
        );
        assert_same(table, &d, &m, spec.sums);
    }

    let mut stmt = db
        .prepare(&format!(
            "SELECT month, coalesce(customer_id, '-'), provider, sum(requests), sum(input_tokens), sum(output_tokens), \
             CAST(sum(cost) AS VARCHAR), sum(unpriced_requests) FROM read_parquet('{root}/monthly/{}/*/*.parquet', hive_partitioning = true) \
             GROUP BY ALL ORDER BY ALL",
            API_USAGE.table.name()
        ))
        .unwrap();
    let mut lines: Vec<String> = stmt
        .query_map([], |r| {
            Ok(format!(
                "{} {:<10} {:<9} requests={} input={} output={} cost={} unpriced={}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i128>(3)?,
                r.get::<_, i128>(4)?,
                r.get::<_, i128>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, i128>(7)?
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut stmt = db
        .prepare(&format!(
            "SELECT month, coalesce(customer_id, '-'), vm_id, samples, compute_seconds \
             FROM read_parquet('{root}/monthly/resource_usage/*/*.parquet', hive_partitioning = true) ORDER BY ALL"
        ))
        .unwrap();
    lines.extend(
        stmt.query_map([], |r| {
            Ok(format!(
                "{} {:<10} {} samples={} compute_hours={}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                meter::rollup::aggregate::compute_hours(r.get::<_, i64>(4)?).normalize()
            ))
        })
        .unwrap()
        .map(Result::unwrap),
    );
    insta::assert_snapshot!("sample_data_monthly", lines.join("\n"));

    // The month after has no event: its rollup writes each monthly table
    // anyway, without rows and with the columns and types of October's.
    month_without_events_has_present_empty_aggregates(&lake_dir, &db);
}

/// A month with no usage could never be billed: its rollup succeeded with 0
/// rows but wrote no `month=` partition, which billing takes for "not
/// rolled up". `lake_dir` has October rolled up and nothing in November.
fn month_without_events_has_present_empty_aggregates(
    lake_dir: &std::path::Path,
    db: &duckdb::Connection,
) {
    use meter::rollup::aggregate::SPECS;
    use meter::rollup::{self, Period, RollupOptions};

    let november = RollupOptions {
        lake: lake_dir.to_path_buf(),
        pricing: repo().join("pricing.toml"),
        period: Period::Month("2026-11-01".parse().unwrap()),
    };
    let report = rollup::run(&ctx("rollup-november"), &november).unwrap();
    assert!(!report.needs_attention(), "{:?}", report.attention);
    assert!(report.days.is_empty());
    let describe = |glob: &str| -> Vec<(String, String)> {
        let mut stmt = db
            .prepare(&format!("DESCRIBE SELECT * FROM read_parquet('{glob}')"))
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    for spec in SPECS {
        let table = spec.table.name();
        let dir = lake_dir.join(format!("monthly/{table}/month=2026-11"));
        let files = list_files(&dir);
        assert_eq!(files.len(), 1, "{table}: {files:?}");
        let glob = format!("{}/*.parquet", dir.display());
        assert_eq!(
            count(db, &format!("SELECT count(*) FROM read_parquet('{glob}')")),
            0,
            "{table}"
        );
        let october = format!(
            "{}/monthly/{table}/month=2026-10/*.parquet",
            lake_dir.display()
        );
        assert_eq!(describe(&glob), describe(&october), "{table}");
        let a = report
            .aggregates
            .iter()
            .find(|a| a.table == spec.table && a.period == "monthly")
            .unwrap();
        assert_eq!((a.rows_in, a.rows_out), (0, 0));
    }
}

/// A file copied into a partition (a duplicate that slipped past ingest) is
/// counted once by the rollup; the day's daily table is a golden text table.
#[test]
fn duplicates_in_the_lake_are_counted_once() {
    use meter::rollup::{self, Period, RollupOptions};

    let tmp = tempfile::tempdir().unwrap();
    let lake_dir = tmp.path().join("lake");
    ingest(&sample_data(), &lake_dir, "ingest-run");
    let day = "2026-10-10";
    let opts = RollupOptions {
        lake: lake_dir.clone(),
        pricing: repo().join("pricing.toml"),
        period: Period::Day(day.parse().unwrap()),
    };
    let clean = rollup::run(&ctx("rollup-1"), &opts).unwrap();
    for table in ["api_usage", "activity"] {
        let dir = lake_dir.join(format!("{table}/date={day}"));
        let file = list_files(&dir).into_iter().next().unwrap();
        std::fs::copy(dir.join(&file), dir.join("part-copied-by-hand.parquet")).unwrap();
    }
    let report = rollup::run(&ctx("rollup-2"), &opts).unwrap();
    assert_eq!(report.days[0].duplicates, report.days[0].events_read / 2);
    assert_eq!(
        (report.cost, report.events_priced),
        (clean.cost, clean.events_priced)
    );
    let activity = report
        .aggregates
        .iter()
        .find(|a| a.table == Table::Activity)
        .unwrap();
    assert_eq!(activity.duplicates * 2, activity.rows_in);

    let db = duck(&lake_dir);
    let mut stmt = db
        .prepare(&format!(
            "SELECT coalesce(customer_id, '-'), vm_id, coalesce(user_id, '-'), provider, model, requests, failed, \
             input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens, \
             CAST(cost AS VARCHAR), unpriced_requests FROM read_parquet('{}/daily/api_usage/date={day}/*.parquet') ORDER BY ALL",
            lake_dir.display()
        ))
        .unwrap();
    let rows: Vec<String> = stmt
        .query_map([], |r| {
            let text: Vec<String> = (0..14)
                .map(|i| {
                    r.get::<_, duckdb::types::Value>(i).map(|v| match v {
                        duckdb::types::Value::Text(s) => s,
                        other => format!("{other:?}")
                            .trim_start_matches("BigInt(")
                            .trim_end_matches(')')
                            .to_string(),
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(text.join(" | "))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    insta::assert_snapshot!(
        "sample_data_daily_api_usage_2026_10_10",
        format!(
            "customer | vm | user | provider | model | requests | failed | input | cache_read | cache_write | output | reasoning | cost | unpriced\n{}",
            rows.join("\n")
        )
    );
}

/// `meter sample --resource-interval` (the benchmark's billing input) writes a
/// twelfth of the resource rows at 3600 s, and the rollup bills the same
/// compute hours per VM and day: compute seconds are samples x interval.
#[test]
fn a_longer_resource_interval_bills_the_same_compute_hours() {
    use meter::rollup::{self, Period, RollupOptions};

    let tmp = tempfile::tempdir().unwrap();
    let mut hours = Vec::new();
    let mut rows = Vec::new();
    for every in [300u32, 3600] {
        let input = tmp.path().join(format!("in-{every}"));
        let lake = tmp.path().join(format!("lake-{every}"));
        let totals = meter::sample::generate(&meter::sample::SampleOptions {
            customers: 4,
            days: 3,
            clean: true,
            resource_interval_s: every,
            ..sample_data_options(&input)
        })
        .unwrap();
        rows.push(totals.tables["resource_usage"].rows);
        ingest(&input, &lake, "ingest-run");
        let opts = RollupOptions {
            lake: lake.clone(),
            pricing: repo().join("pricing.toml"),
            period: Period::Month("2026-10-01".parse().unwrap()),
        };
        rollup::run(&ctx("rollup-run"), &opts).unwrap();
        let db = duck(&lake);
        let mut stmt = db
            .prepare(
                "SELECT vm_id, CAST(date AS VARCHAR), CAST(compute_seconds AS VARCHAR) \
                 FROM daily_resource_usage ORDER BY ALL",
            )
            .unwrap();
        let got: Vec<(String, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        hours.push(got);
    }
    assert_eq!(
        rows[0],
        rows[1] * 12,
        "a sample an hour instead of every 5 minutes"
    );
    assert!(
        hours[0].len() >= 4 * 3,
        "every VM has its days: {:?}",
        hours[0]
    );
    assert_eq!(hours[0], hours[1]);
}

/// The priced file copies the column chunks of every row group without a
/// repeated event and encodes the rest (the slow path): both give the rows
/// the plain way gives, each event once, in order: every `api_usage` row of
/// the day read whole, the first copy of each id kept, priced by
/// `price_batch`. A day's partition gets a file of repeats of another
/// file's first rows (sorted first, so that file's first row group is
/// partly repeats) and a file that is all repeats.
#[test]
fn priced_files_copied_by_row_group_equal_the_rows_priced_one_by_one() {
    use arrow::compute::{concat_batches, filter_record_batch};
    use parquet::arrow::ArrowWriter;
    use std::collections::HashSet;

    let tmp = tempfile::tempdir().unwrap();
    let lake_dir = tmp.path().join("lake");
    ingest(&sample_data(), &lake_dir, "ingest-run");
    let pricing = meter::load::pricing(&repo().join("pricing.toml")).unwrap();
    let lake = Lake::open(&lake_dir, "price-run").unwrap();
    let dates = lake.partition_dates(Table::ApiUsage).unwrap();
    let date = dates[dates.len() / 2];
    let files = lake.partition_files(Table::ApiUsage, date).unwrap();
    let first = lake.read_batches(&files[0]).unwrap().remove(0);
    assert!(first.num_rows() > 20, "{} rows", first.num_rows());
    let dir = files[0].parent().unwrap();
    for (name, rows) in [("a-repeats", 10), ("z-all-repeats", first.num_rows())] {
        let file = std::fs::File::create(dir.join(format!("{name}.parquet"))).unwrap();
        let mut w =
            ArrowWriter::try_new(file, first.schema(), Some(meter::lake::writer_props())).unwrap();
        w.write(&first.slice(0, rows)).unwrap();
        w.close().unwrap();
    }
    let files = lake.partition_files(Table::ApiUsage, date).unwrap();
    assert!(files[0].ends_with("a-repeats.parquet"), "{files:?}");

    let day = priced::price_day(&lake, &pricing, date, "price-run").unwrap();
    assert_eq!(day.duplicates, first.num_rows() as u64 + 10);

    let mut seen = HashSet::new();
    let mut want_day = day.clone();
    (want_day.priced, want_day.unpriced, want_day.cost) = (0, 0, Decimal::ZERO);
    want_day.unpriced_models.clear();
    let mut want = Vec::new();
    for path in &files {
        for batch in lake.read_batches(path).unwrap() {
            let ids = batch
                .column_by_name("event_id")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            let keep: arrow::array::BooleanArray = ids
                .iter()
                .map(|id| Some(seen.insert(id.unwrap().to_string())))
                .collect();
            let batch = filter_record_batch(&batch, &keep).unwrap();
            want.push(priced::price_batch(&pricing, &batch, &mut want_day).unwrap());
        }
    }
    let want = concat_batches(&priced::priced_schema(), &want).unwrap();
    let out = lake
        .parquet_files(&lake.dated_dir(priced::PRICED_API_USAGE, date))
        .unwrap();
    assert_eq!(out.len(), 1);
    let got = lake.read_batches(&out[0]).unwrap();
    let got = concat_batches(&priced::priced_schema(), &got).unwrap();
    assert_eq!(got.num_rows(), want.num_rows());
    assert_eq!(got, want);
    assert_eq!(
        (day.priced, day.unpriced, day.cost, &day.unpriced_models),
        (
            want_day.priced,
            want_day.unpriced,
            want_day.cost,
            &want_day.unpriced_models
        )
    );
    // The files DuckDB and polars read: the priced file's row groups keep
    // the source's min/max statistics and read back through DuckDB.
    let db = duck(&lake_dir);
    let n = count(
        &db,
        &format!("SELECT count(*) FROM priced_api_usage WHERE date = DATE '{date}'"),
    );
    assert_eq!(n as usize, want.num_rows());
}
