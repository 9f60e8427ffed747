//! `meter query`: SQL over the lake and the published invoices in an
//! in-memory DuckDB, with the views of `schemas/views.sql` under plain names,
//! and the result rendered as an aligned table, CSV or JSON.
//!
//! The lake's tables are registered through `lake::duck` (as
//! `meter_lake.<name>`, which the views read), so DuckDB reads no lake
//! Parquet file by itself; the `runs` view still reads `_runs/*.json` by
//! path.
//!
//! Read-only: no lake lock is taken, so an analyst never blocks a scheduled
//! run (a query that runs during a commit may see that commit's files or not,
//! never half of a file: lake files are renamed into place).
//!
//! Values are rendered from DuckDB's Arrow result, exactly: a DECIMAL prints
//! every digit of its scale (never through a float), a timestamp with time
//! zone in RFC 3339 UTC with six fractional digits (`2026-10-03T12:00:00.000000Z`),
//! a date as `YYYY-MM-DD`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use duckdb::Connection;

use crate::bill::inputs::enum_text;
use crate::bill::layout::{self, RevisionFile};
use crate::bill::publish::{parse_latest, revision_prefix};
use crate::bill::sql::db_err;
use crate::lake::duck::{self, Hive, HiveType};
use crate::lake::store::Store;
use crate::lake::tables::Table;
use crate::lake::{Lake, remote};
use crate::model::contracts::DiscountValue;
use crate::model::error::{Error, IoContext, Result};

/// The view definitions, the one source for `meter query` and the DuckDB CLI.
pub const VIEWS_SQL: &str = include_str!("../../schemas/views.sql");

/// The README's example questions, as `-- name: <name>` blocks.
pub const QUESTIONS_SQL: &str = include_str!("../../schemas/questions.sql");

/// Every view `views.sql` creates.
pub const VIEWS: [&str; 24] = [
    "api_usage",
    "api_requests",
    "resource_usage",
    "activity",
    "rejects",
    "priced_api_usage",
    "daily_api_usage",
    "daily_api_requests",
    "daily_resource_usage",
    "daily_activity",
    "monthly_api_usage",
    "monthly_api_requests",
    "monthly_resource_usage",
    "monthly_activity",
    "runs",
    "invoices",
    "invoice_summary",
    "credit_balances",
    "notes",
    "contract_terms",
    "contract_tiers",
    "contract_discounts",
    "contract_grants",
    // the typed empty tables live in their own schema, out of SHOW TABLES
    "meter_empty",
];

/// The views analysts query (all of [`VIEWS`] but the helper schema).
pub fn views() -> &'static [&'static str] {
    &VIEWS[..VIEWS.len() - 1]
}

/// Where the lake and the invoices are.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    pub lake: PathBuf,
    /// A folder or an `s3://`, `gs://`, `az://` URL (as for `meter bill --out`).
    pub out: String,
    pub store_options: Vec<(String, String)>,
}

/// A DuckDB string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The local folder `out` names, or `None` for an object store URL. Refuses
/// `s3:bucket`-like typos, as `meter bill` does.
pub fn local_folder(out: &str) -> Result<Option<PathBuf>> {
    let out = out.trim();
    if let Some(path) = out.strip_prefix("file://") {
        return Ok(Some(PathBuf::from(path)));
    }
    if out.contains("://") {
        return Ok(None);
    }
    if let Some((head, _)) = out.split_once(':')
        && !head.is_empty()
        && !head.contains('/')
        && head
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(Error::Usage(format!(
            "output location `{out}` looks like a URL but is not of the form scheme://...; \
             prefix ./ to name a local folder"
        )));
    }
    Ok(Some(PathBuf::from(out)))
}

/// A temporary folder removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    /// A new empty folder under the system's temporary folder.
    fn new(tag: &str) -> Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("meter-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).write_ctx(&dir)?;
        Ok(Scratch(dir))
    }

    /// Writes `bytes` at `key` below the folder.
    fn save(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.0.join(key);
        let dir = path.parent().expect("a key has a folder");
        std::fs::create_dir_all(dir).write_ctx(dir)?;
        std::fs::write(&path, bytes).write_ctx(&path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Opens an in-memory DuckDB with every view of `views.sql` over the lake
/// and the latest invoices of `out`. For an object store, the latest
/// revisions' invoice CSVs are fetched through [`Store`] and loaded into the
/// tables `invoices` and `invoice_summary` (same columns as the views),
/// with every revision's credit and debit notes (`notes`).
pub fn open(opts: &QueryOptions) -> Result<Connection> {
    // A lake in object storage: its tables are loaded below (`lake::duck`);
    // what views.sql reads by path (the run reports) is copied into a
    // scratch folder that stands in for the lake.
    let mut lake_scratch = None;
    let lake = if remote::is_remote(&opts.lake) {
        let scratch = fetch_runs(&opts.lake)?;
        let dir = scratch.0.clone();
        lake_scratch = Some(scratch);
        dir
    } else {
        if !opts.lake.is_dir() {
            return Err(Error::Lake {
                path: opts.lake.clone(),
                message: "is not a directory: pass --lake the lake `meter ingest` writes".into(),
            });
        }
        std::path::absolute(&opts.lake).read_ctx(&opts.lake)?
    };
    let conn = Connection::open_in_memory().map_err(db_err("opening DuckDB"))?;
    let (out, scratch) = match local_folder(&opts.out)? {
        Some(dir) => (std::path::absolute(&dir).read_ctx(&dir)?, None),
        None => {
            let dir = fetch_invoices(opts)?;
            (dir.0.clone(), Some(dir))
        }
    };
    conn.execute_batch(&format!(
        "SET VARIABLE lake = {}; SET VARIABLE out = {};",
        literal(&lake.display().to_string()),
        literal(&out.display().to_string())
    ))
    .map_err(db_err("setting the lake and out variables"))?;
    match lake_scratch {
        Some(_) => register_lake(&conn, &opts.lake)?,
        None => register_lake(&conn, &lake)?,
    }
    conn.execute_batch(VIEWS_SQL)
        .map_err(db_err("schemas/views.sql"))?;
    load_contracts(&conn, &opts.lake)?;
    if lake_scratch.is_some() {
        // The copied reports go away with the scratch folder: keep their rows.
        conn.execute_batch(
            "CREATE TABLE meter_empty.runs_loaded AS FROM runs;
             DROP VIEW runs;
             CREATE TABLE runs AS FROM meter_empty.runs_loaded;
             DROP TABLE meter_empty.runs_loaded;",
        )
        .map_err(db_err("loading the run reports"))?;
    }
    if scratch.is_some() {
        // The fetched files go away with `scratch`: keep their rows.
        conn.execute_batch(
            "CREATE TABLE meter_empty.invoices_loaded AS FROM invoices;
             CREATE TABLE meter_empty.summary_loaded AS FROM invoice_summary;
             CREATE TABLE meter_empty.credits_loaded AS FROM credit_balances;
             CREATE TABLE meter_empty.notes_loaded AS FROM notes;
             DROP VIEW invoices; DROP VIEW invoice_summary; DROP VIEW credit_balances;
             DROP VIEW notes;
             CREATE TABLE invoices AS FROM meter_empty.invoices_loaded;
             CREATE TABLE invoice_summary AS FROM meter_empty.summary_loaded;
             CREATE TABLE credit_balances AS FROM meter_empty.credits_loaded;
             CREATE TABLE notes AS FROM meter_empty.notes_loaded;
             DROP TABLE meter_empty.invoices_loaded; DROP TABLE meter_empty.summary_loaded;
             DROP TABLE meter_empty.credits_loaded; DROP TABLE meter_empty.notes_loaded;",
        )
        .map_err(db_err("loading the invoices"))?;
    }
    Ok(conn)
}

/// Fills the contract tables of `views.sql` from the lake's copy of
/// `contracts.toml` (its sound entries, as billing reads them).
fn load_contracts(conn: &Connection, root: &Path) -> Result<()> {
    if Lake::require(root).is_err() {
        return Ok(());
    }
    let lake = Lake::open_read(root)?;
    let Some((contracts, _)) = crate::bill::read_contracts(&lake, None, None)? else {
        return Ok(());
    };
    let text = |d: rust_decimal::Decimal| d.normalize().to_string();
    let mut statements = Vec::new();
    for t in &contracts.terms {
        let tiers = t.tiers.as_ref();
        statements.push(format!(
            "INSERT INTO contract_terms VALUES ({}, DATE '{}', {}, {}, {}, {});",
            literal(&t.customer_id),
            t.from,
            t.commitment.map_or("NULL".into(), |c| format!(
                "CAST('{}' AS DECIMAL(18, 6))",
                text(c)
            )),
            tiers.map_or("NULL".into(), |x| literal(&enum_text(&x.measure))),
            tiers.map_or("NULL".into(), |x| literal(&enum_text(&x.mode))),
            t.line
        ));
        for (i, step) in tiers.iter().flat_map(|x| x.steps.iter()).enumerate() {
            statements.push(format!(
                "INSERT INTO contract_tiers VALUES ({}, DATE '{}', {}, CAST('{}' AS DECIMAL(18, 6)), \
                 CAST('{}' AS DECIMAL(18, 6)));",
                literal(&t.customer_id),
                t.from,
                i + 1,
                text(step.from),
                text(step.factor)
            ));
        }
    }
    for d in &contracts.discounts {
        let (percent, amount) = match d.value {
            DiscountValue::Percent(p) => (
                format!("CAST('{}' AS DECIMAL(18, 6))", text(p)),
                "NULL".into(),
            ),
            DiscountValue::Amount(a) => (
                "NULL".into(),
                format!("CAST('{}' AS DECIMAL(18, 6))", text(a)),
            ),
        };
        statements.push(format!(
            "INSERT INTO contract_discounts VALUES ({}, {percent}, {amount}, {}, DATE '{}', {}, {});",
            literal(&d.customer_id),
            literal(&enum_text(&d.applies_to)),
            d.from,
            d.until.map_or("NULL".into(), |u| format!("DATE '{u}'")),
            d.line
        ));
    }
    let mut order: BTreeMap<&str, u32> = BTreeMap::new();
    for g in &contracts.credits {
        let n = order.entry(g.customer_id.as_str()).or_default();
        *n += 1;
        statements.push(format!(
            "INSERT INTO contract_grants VALUES ({}, {}, {n}, CAST('{}' AS DECIMAL(18, 6)), {}, \
             DATE '{}', {}, {}, {});",
            literal(&g.customer_id),
            literal(&g.grant_id),
            text(g.amount),
            literal(&g.currency),
            g.granted,
            g.expires.map_or("NULL".into(), |e| format!("DATE '{e}'")),
            g.priority,
            g.line
        ));
    }
    conn.execute_batch(&statements.join("\n"))
        .map_err(db_err("loading contracts.toml"))
}

/// Registers every lake table that has files as `meter_lake.<name>`
/// (`lake::duck`, with the Hive types and options of `views.sql`: `date`
/// DATE, `month` VARCHAR, rejects by name) and lists them in the variable
/// `meter_loaded`, so that `views.sql` reads them instead of the files. A
/// folder that is not a lake (no `_lake.json`) has no table.
fn register_lake(conn: &Connection, root: &Path) -> Result<()> {
    conn.execute_batch("CREATE SCHEMA meter_lake")
        .map_err(db_err("meter_lake"))?;
    let mut loaded = Vec::new();
    if Lake::require(root).is_ok() {
        let lake = Lake::open_read(root)?;
        // table directory -> (monthly, files), in the lake's order
        let mut tables: BTreeMap<String, (bool, Vec<PathBuf>)> = BTreeMap::new();
        for part in lake.partition_dirs()? {
            let (monthly, files) = tables
                .entry(part.table.clone())
                .or_insert_with(|| (part.monthly, Vec::new()));
            if *monthly == part.monthly {
                files.extend(lake.parquet_files(&part.dir)?);
            }
        }
        for (rel, (monthly, files)) in tables {
            let name = rel.replace('/', "_");
            let plain = name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if files.is_empty() || !plain {
                continue;
            }
            let read = duck::Read {
                hive: if monthly {
                    Hive::Typed("month", HiveType::Varchar)
                } else {
                    Hive::Typed("date", HiveType::Date)
                },
                // old rejects files lack `detail` (views.sql)
                union_by_name: rel == Table::Rejects.name(),
                ..duck::Read::default()
            };
            duck::register(conn, &lake, &format!("meter_lake.{name}"), &files, &read)?;
            loaded.push(literal(&name));
        }
    }
    conn.execute_batch(&format!(
        "SET VARIABLE meter_loaded = CAST([{}] AS VARCHAR[]);",
        loaded.join(", ")
    ))
    .map_err(db_err("meter_loaded"))
}

/// Copies `latest.json` and the CSVs of the revision it names, for every
/// month, from the store into a scratch folder laid out like `out`.
fn fetch_invoices(opts: &QueryOptions) -> Result<Scratch> {
    let store = Store::open_configured(&opts.out, &opts.store_options)?;
    let scratch = Scratch::new("query")?;
    let save = |key: &str, bytes: &[u8]| scratch.save(key, bytes);
    for (key, _) in store.list("invoices")? {
        // Notes of every revision: they are history, not superseded.
        if let RevisionFile::Note { .. } = layout::classify(&key)
            && let Some(bytes) = store.get(&key)?
        {
            save(&key, &bytes)?;
            continue;
        }
        let Some(month) = key
            .strip_prefix("invoices/")
            .and_then(|k| k.strip_suffix("/latest.json"))
        else {
            continue;
        };
        let bytes = store.get(&key)?.unwrap_or_default();
        let revision = parse_latest(&store, month, &bytes)?;
        save(&key, &bytes)?;
        for (file, _) in store.list(&revision_prefix("invoices", month, revision))? {
            if matches!(
                layout::classify(&file),
                RevisionFile::Invoice { .. } | RevisionFile::Summary | RevisionFile::Credits
            ) && let Some(bytes) = store.get(&file)?
            {
                save(&file, &bytes)?;
            }
        }
    }
    Ok(scratch)
}

/// Copies the run reports (`_runs/*.json`) of a lake in object storage
/// into a scratch folder laid out like the lake.
fn fetch_runs(root: &Path) -> Result<Scratch> {
    let lake = Lake::open_read(root)?;
    let scratch = Scratch::new("query-lake")?;
    for path in lake.files_in(&lake.root().join("_runs"))? {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name.filter(|n| n.ends_with(".json"))
            && let Some(bytes) = lake.read_file(&path)?
        {
            scratch.save(&format!("_runs/{name}"), &bytes)?;
        }
    }
    Ok(scratch)
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned columns with a header; numbers right-aligned, NULL as `NULL`.
    #[default]
    Table,
    /// RFC 4180 with a header row, CRLF line ends; NULL as an empty field.
    Csv,
    /// A JSON array of objects in column order; integers and floats are
    /// numbers, DECIMALs strings with every digit, NULL `null`.
    Json,
}

/// A query's result: its columns and rows as exact text.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub columns: Vec<Column>,
    /// Each cell's exact text; `None` for NULL.
    pub rows: Vec<Vec<Option<String>>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
}

/// How a column's values are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Integers: right-aligned, JSON numbers.
    Integer,
    /// Floats (measurements, never money): right-aligned, JSON numbers.
    Float,
    /// DECIMAL: right-aligned, JSON strings (exact).
    Decimal,
    Boolean,
    /// Everything else: left-aligned, JSON strings.
    Text,
}

impl Kind {
    fn of(t: &DataType) -> Kind {
        match t {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64 => Kind::Integer,
            DataType::Float16 | DataType::Float32 | DataType::Float64 => Kind::Float,
            DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => Kind::Decimal,
            DataType::Boolean => Kind::Boolean,
            _ => Kind::Text,
        }
    }

    fn numeric(self) -> bool {
        matches!(self, Kind::Integer | Kind::Float | Kind::Decimal)
    }
}

/// Runs one SQL statement. A statement DuckDB refuses is [`Error::Query`]
/// with DuckDB's message.
pub fn run(conn: &Connection, sql: &str) -> Result<Output> {
    let refused = |e: duckdb::Error| Error::Query {
        message: e.to_string(),
    };
    let mut stmt = conn.prepare(sql).map_err(refused)?;
    let arrow = stmt.query_arrow([]).map_err(refused)?;
    let schema = arrow.get_schema();
    let batches: Vec<RecordBatch> = arrow.collect();
    output(&schema, &batches)
}

/// The exact text of every cell of `batches`.
pub fn output(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Output> {
    let columns: Vec<Column> = schema
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            kind: Kind::of(f.data_type()),
        })
        .collect();
    let options = FormatOptions::new()
        .with_display_error(false)
        .with_date_format(Some("%Y-%m-%d"))
        // DuckDB timestamps are microseconds: always six places, so a column
        // reads the same on every row
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.6f"))
        .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%S%.6fZ"));
    let mut rows = Vec::new();
    for batch in batches {
        let arrays = batch
            .columns()
            .iter()
            .map(utc_offset)
            .collect::<Result<Vec<_>>>()?;
        let formatters = arrays
            .iter()
            .map(|a| ArrayFormatter::try_new(a.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for i in 0..batch.num_rows() {
            rows.push(
                arrays
                    .iter()
                    .zip(&formatters)
                    .map(|(a, f)| (!a.is_null(i)).then(|| f.value(i).to_string()))
                    .collect(),
            );
        }
    }
    Ok(Output { columns, rows })
}

/// A timestamp with a time zone as the same instants labelled `+00:00`:
/// DuckDB names the session's zone (`UTC`), which arrow's formatter cannot
/// resolve without a zone database; the stored values are UTC either way.
fn utc_offset(array: &ArrayRef) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Timestamp(unit, Some(_)) => Ok(arrow::compute::cast(
            array,
            &DataType::Timestamp(*unit, Some("+00:00".into())),
        )?),
        _ => Ok(array.clone()),
    }
}

impl Output {
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.table(),
            Format::Csv => self.csv(),
            Format::Json => self.json(),
        }
    }

    /// Aligned columns: a header, a rule, the rows, then the row count.
    pub fn table(&self) -> String {
        let cell = |v: &Option<String>| match v {
            None => "NULL".to_string(),
            Some(s) => s
                .replace('\\', "\\\\")
                .replace('\n', "\\n")
                .replace('\r', "\\r")
                .replace('\t', "\\t"),
        };
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(cell).collect())
            .collect();
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .map(|c| c.name.chars().count())
            .collect();
        for r in &cells {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |values: &[String]| {
            let mut s = String::new();
            for ((v, w), c) in values.iter().zip(&widths).zip(&self.columns) {
                let pad = " ".repeat(w - v.chars().count());
                if c.kind.numeric() {
                    s += &format!("{pad}{v}  ");
                } else {
                    s += &format!("{v}{pad}  ");
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let header: Vec<String> = self.columns.iter().map(|c| c.name.clone()).collect();
        let mut out = line(&header);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out += &line(&rule);
        for r in &cells {
            out += &line(r);
        }
        out += &format!(
            "({} row{})\n",
            self.rows.len(),
            if self.rows.len() == 1 { "" } else { "s" }
        );
        out
    }

    /// RFC 4180: a header row, fields quoted when needed, CRLF line ends.
    pub fn csv(&self) -> String {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(Vec::new());
        let write = |w: &mut csv::Writer<Vec<u8>>, cells: Vec<&str>| {
            w.write_record(cells)
                .expect("writing a row of the header's length to memory");
        };
        write(
            &mut w,
            self.columns.iter().map(|c| c.name.as_str()).collect(),
        );
        for r in &self.rows {
            write(
                &mut w,
                r.iter().map(|v| v.as_deref().unwrap_or("")).collect(),
            );
        }
        String::from_utf8(w.into_inner().expect("writing to memory")).expect("UTF-8 cells")
    }

    /// A JSON array of objects, keys in column order.
    pub fn json(&self) -> String {
        let mut out = String::from("[");
        for (i, r) in self.rows.iter().enumerate() {
            out += if i == 0 { "\n  {" } else { ",\n  {" };
            for (j, (v, c)) in r.iter().zip(&self.columns).enumerate() {
                if j > 0 {
                    out += ", ";
                }
                out += &serde_json::Value::String(c.name.clone()).to_string();
                out += ": ";
                out += &json_value(v.as_deref(), c.kind);
            }
            out += "}";
        }
        out += if self.rows.is_empty() { "]\n" } else { "\n]\n" };
        out
    }
}

/// One cell as JSON: numbers for integers and finite floats (their exact
/// text), strings for DECIMALs and the rest.
fn json_value(v: Option<&str>, kind: Kind) -> String {
    let string = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    match (v, kind) {
        (None, _) => "null".into(),
        (Some(s), Kind::Integer) => s.to_string(),
        (Some(s), Kind::Float) if s.parse::<f64>().is_ok_and(f64::is_finite) => s.to_string(),
        (Some(s), Kind::Boolean) if s == "true" || s == "false" => s.to_string(),
        (Some(s), _) => string(s),
    }
}

/// The SQL of a named block of [`QUESTIONS_SQL`]: the lines after
/// `-- name: <name>` up to the next such line.
pub fn question(name: &str) -> Option<&'static str> {
    questions()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|q| q.1)
}

/// Every `(name, sql)` block of [`QUESTIONS_SQL`], in order: a block is
/// the text after a line `-- name: <name>` up to the next such line.
pub fn questions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    let mut current: Option<(&str, usize)> = None;
    let mut offset = 0;
    for line in QUESTIONS_SQL.split_inclusive('\n') {
        if let Some(name) = line.strip_prefix("-- name: ") {
            if let Some((n, start)) = current {
                out.push((n, QUESTIONS_SQL[start..offset].trim()));
            }
            current = Some((name.trim(), offset + line.len()));
        }
        offset += line.len();
    }
    if let Some((n, start)) = current {
        out.push((n, QUESTIONS_SQL[start..].trim()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn conn_on(lake: &Path, out: &Path) -> Connection {
        open(&QueryOptions {
            lake: lake.to_path_buf(),
            out: out.display().to_string(),
            store_options: Vec::new(),
        })
        .unwrap()
    }

    /// An empty lake still has every view, empty and typed as declared.
    #[test]
    fn every_view_exists_on_an_empty_lake() {
        let dir = std::env::temp_dir().join(format!("meter-query-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _cleanup = Scratch(dir.clone());
        let conn = conn_on(&dir, &dir.join("out"));
        let shown = run(&conn, "SHOW TABLES").unwrap();
        let names: Vec<&str> = shown.rows.iter().filter_map(|r| r[0].as_deref()).collect();
        let mut expected = views().to_vec();
        expected.sort();
        assert_eq!(names, expected);
        for view in views() {
            let out = run(&conn, &format!("SELECT count(*) AS n FROM {view}")).unwrap();
            assert_eq!(out.rows, vec![vec![Some("0".to_string())]], "{view}");
        }
        // money stays DECIMAL even with no file to read
        let cost = run(
            &conn,
            "SELECT data_type FROM information_schema.columns \
             WHERE table_name = 'daily_api_usage' AND column_name = 'cost'",
        )
        .unwrap();
        assert_eq!(cost.rows[0][0].as_deref(), Some("DECIMAL(38,18)"));
    }

    #[test]
    fn bad_sql_is_a_query_error_with_duckdbs_message() {
        let dir = std::env::temp_dir().join(format!("meter-query-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _cleanup = Scratch(dir.clone());
        let conn = conn_on(&dir, &dir.join("out"));
        let err = run(&conn, "SELECT nope FROM api_usage").unwrap_err();
        assert!(matches!(err, Error::Query { .. }), "{err:?}");
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(err.hint().unwrap().contains("SHOW TABLES"));
    }

    #[test]
    fn values_render_exactly_in_every_format() {
        let conn = Connection::open_in_memory().unwrap();
        let out = run(
            &conn,
            "SELECT CAST('12345678901234567890.123456789012345678' AS DECIMAL(38, 18)) AS cost, \
             CAST(42 AS BIGINT) AS n, 'a,\"b\"' AS text, NULL::VARCHAR AS missing, \
             DATE '2026-10-03' AS day, true AS ok, 0.5::DOUBLE AS share, \
             TIMESTAMPTZ '2026-10-03 12:00:00+00' AS ts",
        )
        .unwrap();
        assert_eq!(
            out.rows[0],
            vec![
                Some("12345678901234567890.123456789012345678".into()),
                Some("42".into()),
                Some("a,\"b\"".into()),
                None,
                Some("2026-10-03".into()),
                Some("true".into()),
                Some("0.5".into()),
                Some("2026-10-03T12:00:00.000000Z".into()),
            ]
        );
        assert_eq!(
            out.csv(),
            "cost,n,text,missing,day,ok,share,ts\r\n\
             12345678901234567890.123456789012345678,42,\"a,\"\"b\"\"\",,2026-10-03,true,0.5,\
             2026-10-03T12:00:00.000000Z\r\n"
        );
        assert_eq!(
            out.json(),
            "[\n  {\"cost\": \"12345678901234567890.123456789012345678\", \"n\": 42, \
             \"text\": \"a,\\\"b\\\"\", \"missing\": null, \"day\": \"2026-10-03\", \
             \"ok\": true, \"share\": 0.5, \"ts\": \"2026-10-03T12:00:00.000000Z\"}\n]\n"
        );
        let table = out.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("                                   cost   n"));
        assert!(lines[2].contains("  NULL  "), "{table}");
        assert_eq!(lines[3], "(1 row)");
    }

    #[test]
    fn questions_are_named_blocks() {
        let names: Vec<&str> = questions().iter().map(|q| q.0).collect();
        assert_eq!(
            names,
            [
                "top_models_by_cost_last_month",
                "customer_daily_spend",
                "rejects_by_reason"
            ]
        );
        assert!(
            question("rejects_by_reason")
                .unwrap()
                .contains("FROM rejects")
        );
    }

    #[test]
    fn out_locations() {
        assert_eq!(local_folder("out").unwrap(), Some(PathBuf::from("out")));
        assert_eq!(
            local_folder("file:///srv/out").unwrap(),
            Some(PathBuf::from("/srv/out"))
        );
        assert_eq!(local_folder("s3://bucket/meter").unwrap(), None);
        assert!(local_folder("s3:bucket").is_err());
    }
}
