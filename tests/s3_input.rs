//! `meter ingest --input s3://...`: the raw input tree in a bucket of the
//! strict S3 server (`s3_server.rs`), read with ranged GETs, gives the lake
//! and the run report the same tree in a folder gives.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use meter::ingest::source::{BlockReader, InputRoot};
use meter::lake::Lake;
use meter::lake::store::{RANGE_SIZE, Store};
use meter::lake::tables::Table;

use crate::common::{Run, copy_dir, sample_data, touch_all};
use crate::compact::{except_all, rows_of};
use crate::s3_server::{S3Server, start_s3_server};

const NOW: &str = "2026-11-02T03:00:00Z";

/// The `AWS_*` variables that point the binary's S3 client at `server`.
fn aws_env(server: &S3Server) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT", server.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", &server.access_key),
        ("AWS_SECRET_ACCESS_KEY", &server.secret_key),
        ("AWS_REGION", &server.region),
        ("AWS_ALLOW_HTTP", "true"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec()
}

/// `meter ingest --input <input> --lake <lake> --json` in `dir` at [`NOW`],
/// with no `METER_*` or `AWS_*` variable of this process but those in `env`.
fn ingest(dir: &Path, input: &str, lake: &Path, env: &[(String, String)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meter"));
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") || key.starts_with("METER_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .current_dir(dir)
        .args(["ingest", "--input", input, "--lake"])
        .arg(lake)
        .arg("--json")
        .env("METER_FIXED_TIME", NOW)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn sample_data_from_a_bucket_ingests_as_from_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_s3_server(&tmp.path().join("s3"));
    // The objects are the files: the folder run reads the very same bytes.
    let raw = server.bucket_dir().join("raw");
    copy_dir(&sample_data(), &raw);
    touch_all(&raw);
    let env = aws_env(&server);

    let remote_lake = tmp.path().join("lake-s3");
    let remote = ingest(tmp.path(), &server.url("raw"), &remote_lake, &env);
    assert_eq!(remote.code, 0, "{}", remote.stderr);
    let local_lake = tmp.path().join("lake-local");
    let local = ingest(tmp.path(), raw.to_str().unwrap(), &local_lake, &[]);
    assert_eq!(local.code, 0, "{}", local.stderr);

    // The run reports agree on everything but the input they name.
    let mut remote_report: serde_json::Value = serde_json::from_str(&remote.stdout).unwrap();
    let mut local_report: serde_json::Value = serde_json::from_str(&local.stdout).unwrap();
    assert_eq!(remote_report["input"], "s3://meter-test/raw");
    assert_eq!(local_report["input"], raw.display().to_string());
    remote_report["input"] = serde_json::Value::Null;
    local_report["input"] = serde_json::Value::Null;
    remote_report["lake"] = serde_json::Value::Null;
    local_report["lake"] = serde_json::Value::Null;
    assert!(remote_report["lines_read"].as_u64().unwrap() > 10_000);
    assert!(!remote_report["files"].as_array().unwrap().is_empty());
    assert_eq!(remote_report, local_report);

    // The same rows in every table, as multisets, and the same registry copy.
    let conn = duckdb::Connection::open_in_memory().unwrap();
    for table in Table::ALL {
        let table = table.name();
        let rows = rows_of(&conn, &local_lake, table);
        assert!(rows > 0, "{table}");
        assert_eq!(rows_of(&conn, &remote_lake, table), rows, "{table}");
        assert_eq!(except_all(&conn, &local_lake, &remote_lake, table), 0);
        assert_eq!(except_all(&conn, &remote_lake, &local_lake, table), 0);
    }
    let registry = std::fs::read(Lake::registry_path(&remote_lake)).unwrap();
    assert_eq!(
        registry,
        std::fs::read(sample_data().join("customers.csv")).unwrap()
    );
    assert_eq!(
        registry,
        std::fs::read(Lake::registry_path(&local_lake)).unwrap()
    );
}

/// `lines` numbered JSON lines, none alike (so gzip cannot shrink them
/// much), and the gzip of them at `level`.
fn numbered(lines: usize, level: u32) -> (Vec<u8>, Vec<u8>) {
    let mut text = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..lines {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        writeln!(
            text,
            "{{\"n\":{i},\"pad\":\"{x:016x}{:016x}\"}}",
            x.rotate_left(29)
        )
        .unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    gz.write_all(&text).unwrap();
    (text, gz.finish().unwrap())
}

/// Every byte `root` reads of its one input file, and the reader's count.
fn read_back(root: &InputRoot) -> (Vec<u8>, u64) {
    let d = root.discover().unwrap();
    assert_eq!(d.files.len(), 1, "{:?}", d.files);
    let mut reader = BlockReader::open(0, root, &d.files[0]).unwrap();
    let mut data = Vec::new();
    while let Some(block) = reader.next_block() {
        data.extend(block.data);
    }
    assert_eq!(reader.error, None);
    (data, reader.lines_read)
}

#[test]
fn a_gzip_object_larger_than_a_range_streams_in_ranged_gets() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_s3_server(tmp.path());
    // Stored blocks (level 0): a gzip object just over one default range.
    let (text, gz) = numbered(200_000, 0);
    assert!(gz.len() as u64 > RANGE_SIZE && (gz.len() as u64) < 2 * RANGE_SIZE);
    let key = "raw/vm-1/commands/history.jsonl.1.gz";
    let path = server.bucket_dir().join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &gz).unwrap();

    let store = Store::open_with(&server.url("raw"), server.options()).unwrap();
    let root = InputRoot::remote(store);
    let (data, lines) = read_back(&root);
    assert_eq!(lines, 200_000);
    assert!(data == text, "the lines read back are the lines written");
    // Two ranged GETs (206), not one GET of the whole object.
    assert_eq!(
        server.faults.lock().unwrap().statuses("GET", key),
        [206, 206]
    );
}

#[test]
fn small_ranges_read_a_compressed_object_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_s3_server(tmp.path());
    let (text, gz) = numbered(20_000, 6);
    let key = "raw/vm-1/cliproxy/usage.jsonl-20261005.gz";
    let path = server.bucket_dir().join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &gz).unwrap();

    let range = 64 << 10;
    let store = Store::open_with(&server.url("raw"), server.options()).unwrap();
    let root = InputRoot::remote(store).with_range_size(range);
    let (data, lines) = read_back(&root);
    assert_eq!(lines, 20_000);
    assert!(data == text);
    let gets = server.faults.lock().unwrap().statuses("GET", key);
    let ranges = (gz.len() as u64).div_ceil(range) as usize;
    assert!(ranges > 3, "{} bytes", gz.len());
    assert_eq!(gets, vec![206; ranges]);
}

#[test]
fn an_object_gone_after_the_listing_is_a_read_error_naming_its_url() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_s3_server(tmp.path());
    let key = "raw/vm-1/commands/history.jsonl";
    let path = server.bucket_dir().join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "{}\n".repeat(100)).unwrap();
    let store = Store::open_with(&server.url("raw"), server.options()).unwrap();
    let root = InputRoot::remote(store).with_range_size(50);
    let d = root.discover().unwrap();
    let mut reader = BlockReader::open(0, &root, &d.files[0])
        .unwrap()
        .with_block_size(60);
    assert!(reader.next_block().is_some());
    assert!(server.drop_key(key));
    while reader.next_block().is_some() {}
    let error = reader.error.unwrap_or_default();
    assert!(
        error.contains("s3://meter-test/raw/vm-1/commands/history.jsonl"),
        "{error}"
    );
}

#[test]
fn a_missing_bucket_prefix_or_key_is_an_error_naming_the_url() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_s3_server(&tmp.path().join("s3"));
    copy_dir(&sample_data(), &server.bucket_dir().join("raw"));
    let lake = tmp.path().join("lake");
    let env = aws_env(&server);

    let run = ingest(tmp.path(), "s3://no-such-bucket/raw", &lake, &env);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot read the input s3://no-such-bucket/raw")
            && run.stderr.contains("what to do: check the --input URL"),
        "{}",
        run.stderr
    );

    let run = ingest(tmp.path(), &server.url("nothing/here"), &lake, &env);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("input s3://meter-test/nothing/here holds no objects")
            && run.stderr.contains("what to do:"),
        "{}",
        run.stderr
    );

    let mut wrong = env.clone();
    for (k, v) in &mut wrong {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = "wrong".into();
        }
    }
    let run = ingest(tmp.path(), &server.url("raw"), &lake, &wrong);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot read the input s3://meter-test/raw")
            && run.stderr.contains("AWS_SECRET_ACCESS_KEY"),
        "{}",
        run.stderr
    );

    // A prefix without customers.csv names the object it looked for.
    std::fs::remove_file(server.bucket_dir().join("raw/customers.csv")).unwrap();
    let run = ingest(tmp.path(), &server.url("raw"), &lake, &env);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot read s3://meter-test/raw/customers.csv"),
        "{}",
        run.stderr
    );
}
