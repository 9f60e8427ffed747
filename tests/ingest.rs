use std::io::Write;

use meter::Error;
use meter::ingest;
use meter::lake::tables::Table;

use crate::common::*;

/// The committed sample data is exactly what the generator writes, and the
/// generator's expectations are exactly what ingest makes of it.
#[test]
fn sample_data_is_generated_and_ingests_as_expected() {
    let tmp = tempfile::tempdir().unwrap();
    let generated = tmp.path().join("gen");
    let expected = meter::sample::generate(&sample_data_options(&generated)).unwrap();
    let committed = sample_data();
    assert_eq!(
        list_files(&generated),
        list_files(&committed),
        "regenerate sample-data with `just sample-data`"
    );
    for f in list_files(&committed) {
        assert!(
            std::fs::read(generated.join(&f)).unwrap()
                == std::fs::read(committed.join(&f)).unwrap(),
            "sample-data/{f} differs from the generator's output"
        );
    }

    let lake = tmp.path().join("lake");
    let report = ingest(&committed, &lake, "test-run");
    assert_accounted(&report);
    let expected_lines: u64 = expected
        .tables
        .values()
        .map(|e| e.rows + e.duplicates + e.rejects + e.skipped)
        .sum();
    assert_eq!(report.lines_read, expected_lines);
    for (table, exp) in &expected.tables {
        let table: Table =
            serde_json::from_value(serde_json::Value::String(table.clone())).unwrap();
        let got = report.tables[&table];
        assert_eq!(
            (got.rows, got.duplicates, got.rejects, got.skipped),
            (exp.rows, exp.duplicates, exp.rejects, exp.skipped),
            "{table}: (rows, duplicates, rejects, skipped) differ from the generator's"
        );
    }

    // The lake holds what the report says, readable by DuckDB with the views.
    let db = duck(&lake);
    for (table, counts) in &report.tables {
        assert_eq!(
            count(&db, &format!("SELECT count(*) FROM {table}")) as u64,
            counts.rows,
            "{table}"
        );
    }
    assert_eq!(
        count(&db, "SELECT count(*) FROM rejects") as u64,
        report.totals.rejects
    );
    assert_eq!(
        count(&db, "SELECT count(DISTINCT event_id) FROM api_usage") as u64,
        report.tables[&Table::ApiUsage].rows
    );
    // The lake's token sums are the generator's, inclusion rules applied.
    let t = expected.lake_tokens;
    for (column, want) in [
        ("input_tokens", t.input),
        ("cache_read_tokens", t.cache_read),
        ("cache_write_tokens", t.cache_write),
        ("output_tokens", t.output),
        ("reasoning_tokens", t.reasoning),
    ] {
        assert!(want > 0, "{column}");
        assert_eq!(
            count(&db, &format!("SELECT sum({column})::BIGINT FROM api_usage")) as u64,
            want,
            "{column}"
        );
    }
    // Partitions are the UTC date of the event.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM api_usage WHERE date <> DATE '1970-01-01' + CAST(floor(epoch_us(ts) / 86400000000) AS INTEGER)"
        ),
        0
    );
    // No raw API key anywhere.
    for table in [
        "api_usage",
        "api_requests",
        "activity",
        "rejects",
        "resource_usage",
    ] {
        let leaked = count(
            &db,
            &format!(
                "SELECT count(*) FROM {table} t WHERE CAST(t AS VARCHAR) SIMILAR TO '.*(sk-proj-|sk-ant-api).*'"
            ),
        );
        assert_eq!(leaked, 0, "raw API keys in {table}");
    }
    // Secrets in commands are redacted.
    assert!(count(&db, "SELECT count(*) FROM activity WHERE command_redacted") > 0);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM activity WHERE command ILIKE '%hunter2%'"
        ),
        0
    );

    // Golden output: the summary and the token totals by provider.
    insta::assert_snapshot!("sample_data_summary", report.summary());
    let mut stmt = db
        .prepare(
            "SELECT provider, count(*), sum(input_tokens), sum(cache_read_tokens), sum(cache_write_tokens), \
             sum(output_tokens), sum(reasoning_tokens), count(*) FILTER (WHERE customer_id IS NULL) \
             FROM api_usage GROUP BY provider ORDER BY provider",
        )
        .unwrap();
    let rows: Vec<String> = stmt
        .query_map([], |r| {
            Ok(format!(
                "{:<10} calls={} input={} cache_read={} cache_write={} output={} reasoning={} unattributed={}",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i128>(2)?,
                r.get::<_, i128>(3)?,
                r.get::<_, i128>(4)?,
                r.get::<_, i128>(5)?,
                r.get::<_, i128>(6)?,
                r.get::<_, i64>(7)?
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    insta::assert_snapshot!("sample_data_tokens_by_provider", rows.join("\n"));
}

#[test]
fn ingesting_twice_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let first = ingest(&sample_data(), &lake, "run-1");
    let files_before: Vec<String> = list_files(&lake)
        .into_iter()
        .filter(|f| !f.starts_with("_runs"))
        .collect();
    let second = ingest(&sample_data(), &lake, "run-2");
    assert_accounted(&second);
    let files_after: Vec<String> = list_files(&lake)
        .into_iter()
        .filter(|f| !f.starts_with("_runs"))
        .collect();
    assert_eq!(files_before, files_after);
    assert_eq!(second.totals.rows, 0);
    assert_eq!(
        second.totals.duplicates,
        first.totals.rows + first.totals.duplicates
    );
    assert_eq!(
        second.totals.rejects, first.totals.rejects,
        "rejects are counted again but stored once"
    );
    let db = duck(&lake);
    assert_eq!(
        count(&db, "SELECT count(*) FROM rejects") as u64,
        first.totals.rejects
    );
}

/// Every raw file gets its id index, and the indexes are what a second
/// ingest reads: with every index removed and the lake marked as layout 1
/// (a lake written before indexes), the next ingest writes them all again
/// and still finds every line a duplicate; a damaged index is rebuilt.
#[test]
fn id_indexes_are_written_upgraded_and_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let first = ingest(&sample_data(), &lake, "run-1");
    let files = list_all_files(&lake);
    let raw = [
        "api_usage/",
        "api_requests/",
        "resource_usage/",
        "activity/",
        "rejects/",
    ];
    let parquet = files
        .iter()
        .filter(|f| raw.iter().any(|r| f.starts_with(r)) && f.ends_with(".parquet"))
        .count();
    let indexes: Vec<&String> = files.iter().filter(|f| f.ends_with(".ids")).collect();
    assert!(parquet > 0);
    assert_eq!(indexes.len(), parquet, "one index per raw file: {files:?}");
    let problems = |lake: &std::path::Path| {
        let open = meter::lake::Lake::open_read(lake).unwrap();
        meter::lake::idindex::problems(&open).unwrap()
    };
    assert_eq!(problems(&lake), Vec::<String>::new());
    let all = first.totals.rows + first.totals.duplicates;

    // A layout 1 lake: no indexes. Readers read it as it is.
    for f in &indexes {
        std::fs::remove_file(lake.join(f)).unwrap();
    }
    let meta = lake.join("_lake.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(
        &meta,
        text.replace("\"layout_version\": 2", "\"layout_version\": 1"),
    )
    .unwrap();
    assert!(
        std::fs::read_to_string(&meta)
            .unwrap()
            .contains("\"layout_version\": 1")
    );
    assert_eq!(problems(&lake).len(), parquet);
    let db = duck(&lake);
    assert_eq!(
        count(&db, "SELECT count(*) FROM api_usage") as u64,
        first.tables[&Table::ApiUsage].rows
    );
    drop(db);
    let second = ingest(&sample_data(), &lake, "run-2");
    assert_accounted(&second);
    assert_eq!((second.totals.rows, second.totals.duplicates), (0, all));
    assert_eq!(problems(&lake), Vec::<String>::new());
    assert!(
        std::fs::read_to_string(&meta)
            .unwrap()
            .contains("\"layout_version\": 2")
    );

    // A cut index, and another file's index put in place of one: both
    // are rebuilt from their files, never read as they are.
    let size = |index: &String| {
        std::fs::metadata(lake.join(index.replace(".ids", ".parquet")))
            .unwrap()
            .len()
    };
    let a = indexes[0];
    let b = indexes[1..].iter().find(|b| size(b) != size(a)).unwrap();
    let bytes = std::fs::read(lake.join(a)).unwrap();
    std::fs::write(lake.join(a), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(lake.join(b), &bytes).unwrap();
    assert_eq!(problems(&lake).len(), 2);
    let third = ingest(&sample_data(), &lake, "run-3");
    assert_accounted(&third);
    assert_eq!((third.totals.rows, third.totals.duplicates), (0, all));
    assert_eq!(problems(&lake), Vec::<String>::new());
}

/// A rotated, re-gzipped copy of a log plus three appended lines adds
/// exactly three rows.
#[test]
fn rotated_copy_with_three_new_lines_adds_three_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    copy_dir(&sample_data(), &input);
    let lake = tmp.path().join("lake");
    let first = ingest(&input, &lake, "run-1");
    let usage_before = first.tables[&Table::ApiUsage].rows;

    // Pick a plain usage log of a known VM and rotate it.
    let file = first
        .files
        .iter()
        .filter(|f| f.path.ends_with(".jsonl") && f.path.contains("/cliproxy/"))
        .filter(|f| {
            f.tables.get(&Table::ApiUsage).is_some_and(|c| c.rows > 10) && f.counts.skipped == 0
        })
        .map(|f| f.path.clone())
        .find(|p| std::fs::read(input.join(p)).unwrap().ends_with(b"\n"))
        .expect("sample data has a plain, complete usage log");
    let original = std::fs::read_to_string(input.join(&file)).unwrap();
    let last_ts = "2026-10-30T23:59:0";
    let mut rotated = original.clone();
    for i in 0..3 {
        rotated.push_str(&format!(
            "{{\"timestamp\":\"{last_ts}{i}Z\",\"model\":\"claude-haiku-4-5\",\"provider\":\"anthropic\",\"input_tokens\":{},\"output_tokens\":7,\"request_id\":\"feed{i:04}\"}}\n",
            100 + i
        ));
    }
    let rotated_path = input.join(format!("{file}.9.gz"));
    assert!(!rotated_path.exists());
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&rotated_path).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(rotated.as_bytes()).unwrap();
    gz.finish().unwrap();

    let second = ingest(&input, &lake, "run-2");
    assert_accounted(&second);
    assert_eq!(second.totals.rows, 3, "{}", second.summary());
    assert_eq!(second.tables[&Table::ApiUsage].rows, 3);
    let db = duck(&lake);
    assert_eq!(
        count(&db, "SELECT count(*) FROM api_usage") as u64,
        usage_before + 3
    );
}

#[test]
fn rebuild_replaces_the_dates_it_names() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let first = ingest(&sample_data(), &lake, "run-1");
    let db = duck(&lake);
    let day = "2026-10-10";
    let before = count(
        &db,
        &format!("SELECT count(*) FROM api_usage WHERE date = '{day}'"),
    );
    assert!(before > 0);
    drop(db);

    let mut opts = options(&sample_data(), &lake);
    opts.since = Some(day.parse().unwrap());
    opts.until = Some(day.parse().unwrap());
    opts.rebuild = true;
    let report = ingest::run(&ctx("run-2"), &opts).unwrap();
    assert_accounted(&report);
    let db = duck(&lake);
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM api_usage WHERE date = '{day}'")
        ),
        before
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM api_usage") as u64,
        first.tables[&Table::ApiUsage].rows
    );
    let files = list_files(&lake.join(format!("api_usage/date={day}")));
    assert!(files.iter().all(|f| f.contains("run-2")), "{files:?}");
    assert!(
        report
            .partitions
            .iter()
            .any(|p| p.date == day && p.files_removed > 0)
    );
    assert!(
        report.totals.skipped > first.totals.skipped,
        "lines of other dates are skipped"
    );
}

#[test]
fn since_and_until_skip_other_dates() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let mut opts = options(&sample_data(), &lake);
    opts.since = Some("2026-10-05".parse().unwrap());
    opts.until = Some("2026-10-06".parse().unwrap());
    let report = ingest::run(&ctx("run-1"), &opts).unwrap();
    assert_accounted(&report);
    let db = duck(&lake);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM api_usage WHERE date NOT BETWEEN '2026-10-05' AND '2026-10-06'"
        ),
        0
    );
    assert!(count(&db, "SELECT count(*) FROM api_usage") > 0);
}

#[test]
fn a_held_lock_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let _held = meter::lake::Lake::open(&lake, "other-run").unwrap();
    match ingest::run(&ctx("run-1"), &options(&sample_data(), &lake)) {
        Err(Error::Locked { holder, .. }) => assert!(holder.contains("other-run")),
        other => panic!("expected Locked, got {:?}", other.map(|r| r.run_id)),
    }
}

fn tiny_input(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("vm-1/cliproxy")).unwrap();
    std::fs::write(
        dir.join("customers.csv"),
        "customer_id,name,email,tier,vm_ids,currency,stripe_customer_id,status,created_at\nc1,Acme,a@x,pro,vm-1,EUR,cus_1,active,2026-01-01\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("vm-1/cliproxy/usage.jsonl"),
        "{\"timestamp\":\"2026-10-01T10:00:00Z\",\"model\":\"gpt-4o\",\"provider\":\"openai\",\"input_tokens\":10,\"output_tokens\":2,\"api_key\":\"sk-proj-SECRETSECRETSECRET1234\"}\n",
    )
    .unwrap();
}

#[test]
fn a_corrupt_gzip_is_reported_and_the_rest_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    tiny_input(&input);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..2000 {
        writeln!(gz, "{{\"timestamp\":\"2026-10-01T11:00:00Z\",\"model\":\"gpt-4o\",\"provider\":\"openai\",\"input_tokens\":{i},\"output_tokens\":2}}").unwrap();
    }
    let mut bytes = gz.finish().unwrap();
    let cut = bytes.len() / 2;
    bytes.truncate(cut);
    std::fs::write(input.join("vm-1/cliproxy/old.jsonl.1.gz"), &bytes).unwrap();
    let lake = tmp.path().join("lake");
    let report = ingest(&input, &lake, "run-1");
    assert_accounted(&report);
    assert_eq!(
        report.unreadable_files,
        vec!["vm-1/cliproxy/old.jsonl.1.gz"]
    );
    assert!(report.needs_attention());
    let good = report
        .files
        .iter()
        .find(|f| f.path == "vm-1/cliproxy/usage.jsonl")
        .unwrap();
    assert_eq!(good.counts.rows, 1);
}

#[test]
fn bad_ids_never_reach_a_path() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    tiny_input(&input);
    std::fs::create_dir_all(input.join("vm 1;rm -rf/cliproxy")).unwrap();
    std::fs::write(input.join("vm 1;rm -rf/cliproxy/x.log"), "x\n").unwrap();
    let lake = tmp.path().join("lake");
    let report = ingest(&input, &lake, "run-1");
    assert!(
        report
            .ignored_paths
            .iter()
            .any(|i| i.path == "vm 1;rm -rf" && i.attention),
        "{:?}",
        report.ignored_paths
    );
    assert!(report.needs_attention());

    std::fs::write(
        input.join("customers.csv"),
        "customer_id,name,email,tier,vm_ids,currency,stripe_customer_id,status,created_at\nc1,Acme,a@x,pro,../../etc,EUR,cus_1,active,2026-01-01\n",
    )
    .unwrap();
    let err = ingest::run(&ctx("run-2"), &options(&input, &lake)).unwrap_err();
    assert!(
        err.to_string().contains("customers.csv:2: field `vm_ids`"),
        "{err}"
    );
}

#[test]
fn unterminated_last_line_waits_for_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    tiny_input(&input);
    let path = input.join("vm-1/cliproxy/usage.jsonl");
    let line2 = "{\"timestamp\":\"2026-10-01T10:00:05Z\",\"model\":\"gpt-4o\",\"provider\":\"openai\",\"input_tokens\":3,\"output_tokens\":2}";
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    write!(f, "{line2}").unwrap();
    let lake = tmp.path().join("lake");
    let first = ingest(&input, &lake, "run-1");
    assert_accounted(&first);
    assert_eq!((first.totals.rows, first.totals.skipped), (1, 1));
    writeln!(f).unwrap();
    let second = ingest(&input, &lake, "run-2");
    assert_eq!((second.totals.rows, second.totals.duplicates), (1, 1));
}

/// Reject reasons embedded values ("truncated JSON at column 96"), so
/// grouping sample-data's rejects by reason gave 97 groups: the reason is now
/// a code of a closed set and the particulars are in `detail`.
#[test]
fn reject_reasons_are_a_handful_of_codes_with_the_details_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let report = ingest(&sample_data(), &lake, "run-1");
    assert_accounted(&report);
    let conn = duck(&lake);
    let rejects = count(&conn, "SELECT count(*) FROM rejects");
    assert_eq!(rejects as u64, report.totals.rejects);
    let reasons = count(&conn, "SELECT count(DISTINCT reason) FROM rejects");
    let groups = count(
        &conn,
        "SELECT count(*) FROM (SELECT DISTINCT target_table, reason FROM rejects)",
    );
    eprintln!("{rejects} rejects: {reasons} reasons, {groups} (table, reason) groups");
    assert!(rejects > 100, "{rejects}");
    assert!((2..=8).contains(&reasons), "{reasons} reasons");
    assert!(groups <= 12, "{groups} groups");
    let codes: Vec<&str> = meter::ingest::parse::RejectReason::ALL
        .iter()
        .map(|r| r.as_str())
        .collect();
    let mut stmt = conn
        .prepare("SELECT DISTINCT reason FROM rejects ORDER BY 1")
        .unwrap();
    let found: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for reason in &found {
        assert!(codes.contains(&reason.as_str()), "{reason} is not a code");
    }
    // The particulars are kept, one detail per line.
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM rejects WHERE detail = '' OR detail IS NULL"
        ),
        0
    );
    assert!(count(&conn, "SELECT count(DISTINCT detail) FROM rejects") > 50);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM rejects WHERE reason = 'invalid_json' AND detail LIKE 'truncated JSON at column %'"
        ),
        count(
            &conn,
            "SELECT count(*) FROM rejects WHERE detail LIKE 'truncated JSON%'"
        )
    );
    // The run report groups them the same way.
    let by_reason: u64 = report.rejected_reasons.values().sum();
    assert_eq!(by_reason, report.totals.rejects);
    assert_eq!(report.rejected_reasons.len() as i64, reasons);
}

/// A garbage line in `cliproxy/usage.jsonl` was counted as an
/// `api_requests` reject (it does not start with `{`): it counts for the
/// table its file feeds, `api_usage`; a bad line of an access log stays an
/// `api_requests` reject.
#[test]
fn a_garbage_line_in_usage_jsonl_is_an_api_usage_reject() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    tiny_input(&input);
    let usage = input.join("vm-1/cliproxy/usage.jsonl");
    let mut text = std::fs::read_to_string(&usage).unwrap();
    text.push_str("garbage that is no format at all\n\n");
    std::fs::write(&usage, text).unwrap();
    std::fs::write(
        input.join("vm-1/cliproxy/access.log"),
        "10.0.0.1 - - [01/Oct/2026:10:00:04 +0000] \"POST /v1/messages HTTP/1.1\" 2x0 1234\n",
    )
    .unwrap();
    let lake = tmp.path().join("lake");
    let report = ingest(&input, &lake, "run-1");
    assert_accounted(&report);
    let file = |path: &str| report.files.iter().find(|f| f.path == path).unwrap();
    let usage = file("vm-1/cliproxy/usage.jsonl");
    let api_usage = usage.tables[&Table::ApiUsage];
    assert_eq!(
        (api_usage.rows, api_usage.rejects, api_usage.skipped),
        (1, 1, 1)
    );
    assert!(
        !usage.tables.contains_key(&Table::ApiRequests),
        "{:?}",
        usage.tables
    );
    let access = file("vm-1/cliproxy/access.log");
    assert_eq!(access.tables[&Table::ApiRequests].rejects, 1);
    let conn = duck(&lake);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM rejects WHERE source_file = 'vm-1/cliproxy/usage.jsonl' \
             AND target_table = 'api_usage' AND reason = 'unrecognized_line' AND field IS NULL"
        ),
        1
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM rejects WHERE source_file = 'vm-1/cliproxy/access.log' \
             AND target_table = 'api_requests' AND reason = 'bad_value' AND field = 'status'"
        ),
        1
    );
}

/// A lake written before reason codes has rejects files without `detail`:
/// next to new ones in the same partition, the `rejects` view reads both
/// (the old rows as `unclassified`, their words as `detail`) and compaction
/// merges them.
#[test]
fn rejects_files_without_detail_stay_readable_and_compact() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    tiny_input(&input);
    let usage = input.join("vm-1/cliproxy/usage.jsonl");
    let mut text = std::fs::read_to_string(&usage).unwrap();
    text.push_str("{\"timestamp\":\"2026-10-01T10:00:01Z\",\"model\":\"gpt-4o\",\"provider\":\"openai\",\"input_tokens\":\"n/a\",\"output_tokens\":2}\n");
    std::fs::write(&usage, text).unwrap();
    let lake = tmp.path().join("lake");
    let report = ingest(&input, &lake, "run-1");
    assert_eq!(report.totals.rejects, 1);
    // An old file in the same partition: the old columns, `reason` in words.
    let partition = lake.join("rejects/date=2026-10-01");
    let new_file = list_files(&partition).pop().unwrap();
    let file = std::fs::File::open(partition.join(&new_file)).unwrap();
    let mut batches: Vec<_> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let mut old = batches.pop().unwrap();
    let detail = old.schema().index_of("detail").unwrap();
    old.remove_column(detail);
    let reason = old.schema().index_of("reason").unwrap();
    let event_id = old.schema().index_of("event_id").unwrap();
    let mut columns = old.columns().to_vec();
    columns[reason] = std::sync::Arc::new(arrow::array::StringArray::from(vec![
        "\"n/a\" is not a number",
    ]));
    columns[event_id] = std::sync::Arc::new(arrow::array::StringArray::from(vec![
        "00000000000000000000000000000000",
    ]));
    let old = arrow::record_batch::RecordBatch::try_new(old.schema(), columns).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(partition.join("part-old-0000.parquet")).unwrap(),
        old.schema(),
        None,
    )
    .unwrap();
    w.write(&old).unwrap();
    w.close().unwrap();

    let rows = |lake: &std::path::Path| -> Vec<(String, String, String)> {
        let conn = duck(lake);
        let mut stmt = conn
            .prepare("SELECT event_id, reason, detail FROM rejects ORDER BY event_id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let before = rows(&lake);
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(
        (before[0].1.as_str(), before[0].2.as_str()),
        ("unclassified", "\"n/a\" is not a number")
    );
    assert_eq!(
        (before[1].1.as_str(), before[1].2.as_str()),
        ("bad_value", "\"n/a\" is not a number")
    );
    let compacted = meter::lake::compact::run(
        &ctx("compact-1"),
        &meter::lake::compact::CompactOptions {
            table: Some("rejects".into()),
            ..meter::lake::compact::CompactOptions::all(lake.clone())
        },
    )
    .expect("compaction runs");
    assert_eq!(compacted.partitions_compacted, 1);
    assert_eq!(list_files(&partition).len(), 1);
    assert_eq!(rows(&lake), before);
}

/// Rows that reach a partition a few per block (every sample VM's file
/// spans the month, so each of its blocks touches every date) are gathered
/// into one row group per file, not one per block.
#[test]
fn a_partition_fed_a_few_rows_per_block_gets_whole_row_groups() {
    use parquet::file::reader::FileReader;
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ingest(&sample_data(), &lake, "run-1");
    let mut files = 0;
    for f in list_files(&lake)
        .iter()
        .filter(|f| f.contains("/date=") && f.ends_with(".parquet"))
    {
        let file = std::fs::File::open(lake.join(f)).unwrap();
        let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 1, "{f}");
        files += 1;
    }
    assert!(files >= 100, "{files} files");
}
