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
