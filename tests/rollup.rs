//! Pricing the lake's events (rollup stage, first step).

use arrow::datatypes::DataType;
use meter::lake::Lake;
use meter::pricing::Pricing;
use meter::rollup::priced::{self, PRICE_COLUMNS};
use meter::tables::Table;
use rust_decimal::Decimal;

use crate::common::*;

#[test]
fn sample_data_prices_exactly_and_reruns_replace_the_day() {
    let tmp = tempfile::tempdir().unwrap();
    let lake_dir = tmp.path().join("lake");
    let ingested = ingest(&sample_data(), &lake_dir, "ingest-run");
    let pricing = Pricing::load(&repo().join("pricing.toml")).unwrap();
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

#[test]
fn daily_and_monthly_aggregates_add_up_exactly() {
    use meter::rollup::aggregate::{self, USAGE_SUMS};

    let tmp = tempfile::tempdir().unwrap();
    let lake_dir = tmp.path().join("lake");
    ingest(&sample_data(), &lake_dir, "ingest-run");
    let pricing = Pricing::load(&repo().join("pricing.toml")).unwrap();
    let lake = Lake::open(&lake_dir, "rollup-run").unwrap();
    let dates = lake.partition_dates(Table::ApiUsage).unwrap();
    let mut months = std::collections::BTreeSet::new();
    for date in &dates {
        priced::price_day(&lake, &pricing, *date, "rollup-run").unwrap();
        let report = aggregate::daily_api_usage(&lake, *date, "rollup-run").unwrap();
        assert!(report.rows_out > 0 && report.rows_out <= report.rows_in);
        months.insert(chrono::Datelike::with_day(date, 1).unwrap());
    }
    for month in &months {
        aggregate::monthly_api_usage(&lake, *month, "rollup-run").unwrap();
    }
    let db = duck(&lake_dir);
    let root = lake_dir.display();
    let priced_glob = format!("{root}/priced/api_usage/*/*.parquet");
    let daily_glob = format!("{root}/daily/api_usage/*/*.parquet");
    let monthly_glob = format!("{root}/monthly/api_usage/*/*.parquet");

    // Money columns stay decimal and no measure is a float.
    for glob in [&daily_glob, &monthly_glob] {
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
                "{glob}: {name} is {ty}"
            );
        }
        assert!(
            types
                .iter()
                .any(|(n, t)| n == "cost" && t.starts_with("DECIMAL(38,18)")),
            "{types:?}"
        );
    }

    // Daily rows add up to the priced events, monthly rows to the daily rows.
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
    let requests = count(
        &db,
        &format!("SELECT count(*) FROM read_parquet('{priced_glob}')"),
    );
    assert_eq!(
        count(
            &db,
            &format!("SELECT sum(requests) FROM read_parquet('{daily_glob}')")
        ),
        requests
    );
    let unpriced = count(
        &db,
        &format!("SELECT count(*) FILTER (WHERE NOT priced) FROM read_parquet('{priced_glob}')"),
    );
    assert_eq!(
        count(
            &db,
            &format!("SELECT sum(unpriced_requests) FROM read_parquet('{daily_glob}')")
        ),
        unpriced
    );
    assert_eq!(
        sums(&db, &daily_glob, &USAGE_SUMS),
        sums(&db, &monthly_glob, &USAGE_SUMS)
    );

    let mut stmt = db
        .prepare(&format!(
            "SELECT month, coalesce(customer_id, '-'), provider, sum(requests), sum(input_tokens), sum(output_tokens), \
             CAST(sum(cost) AS VARCHAR), sum(unpriced_requests) FROM read_parquet('{monthly_glob}', hive_partitioning = true) \
             GROUP BY ALL ORDER BY ALL"
        ))
        .unwrap();
    let lines: Vec<String> = stmt
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
    insta::assert_snapshot!("sample_data_monthly_api_usage", lines.join("\n"));
}
