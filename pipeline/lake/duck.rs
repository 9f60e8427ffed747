//! DuckDB over lake files: the one way a reader (billing, the report,
//! reconcile, query, explain) puts lake Parquet files in front of DuckDB.
//!
//! [`register`] creates a relation `name` over a list of files. On a local
//! lake it is a view over DuckDB's own `read_parquet([...])`, with the
//! options the caller asks for, exactly as before this module. On a lake
//! that is not local (object storage, issue 17), DuckDB has no way to the
//! files (no httpfs: extensions are not downloaded) and must not fetch whole
//! files: meter reads the record batches itself ([`Lake::read_batches`],
//! [`lake::read_columns`]: only the columns asked for) and appends them to a
//! DuckDB table through Arrow, with the Hive partition column (`date=`,
//! `month=`) added from each file's directory, typed as `read_parquet` types
//! it. Both routes give the same rows, columns and types (tested below);
//! the Arrow route matches columns of files by name even without
//! `union_by_name` (a column a file lacks is NULL there).
//!
//! `METER_DUCKDB_ARROW=1` takes the Arrow route on a local lake too: a test
//! and diagnostic switch (the integration tests bill the sample month both
//! ways and compare the invoices byte for byte), read only by
//! [`arrow_forced`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use duckdb::Connection;

use crate::lake::Lake;
use crate::model::error::{Error, Result};

/// The environment variable that forces the Arrow route (`1`).
pub const ARROW_ENV: &str = "METER_DUCKDB_ARROW";

/// The type `read_parquet`'s `hive_types` gives a partition column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiveType {
    Varchar,
    Date,
}

impl HiveType {
    fn sql(self) -> &'static str {
        match self {
            HiveType::Varchar => "VARCHAR",
            HiveType::Date => "DATE",
        }
    }
}

/// The Hive partition column (`<key>=<value>`, the file's directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hive<'a> {
    /// No Hive option: `read_parquet`'s default, which finds `key=value`
    /// directories itself and types the values (a `date=YYYY-MM-DD`
    /// directory reads as DATE, `month=YYYY-MM` as VARCHAR).
    #[default]
    Detect,
    /// `hive_partitioning = true, hive_types = {'<key>': <type>}`.
    Typed(&'a str, HiveType),
}

/// How a caller reads its files: the options it gave `read_parquet`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Read<'a> {
    pub hive: Hive<'a>,
    /// `union_by_name = true`: files whose columns differ are matched by name.
    pub union_by_name: bool,
    /// The file columns the caller uses. The Arrow route reads only these
    /// (plus the Hive column); the local view keeps every column, of which
    /// DuckDB reads only what a query uses.
    pub columns: Option<&'a [&'a str]>,
    /// For no files: the columns of the empty table `name` becomes
    /// (`customer_id VARCHAR, count BIGINT`). Without, no files create
    /// nothing (the caller reads nothing).
    pub empty: Option<&'a str>,
}

/// What [`register`] created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// No files and no [`Read::empty`]: nothing.
    Nothing,
    /// A view over `read_parquet` (a local lake).
    View,
    /// A table: the files' rows (the Arrow route), or the empty table.
    Table,
}

impl Registered {
    /// The statement that removes what was created, if anything.
    pub fn drop_sql(self, name: &str) -> Option<String> {
        match self {
            Registered::Nothing => None,
            Registered::View => Some(format!("DROP VIEW {name}")),
            Registered::Table => Some(format!("DROP TABLE {name}")),
        }
    }
}

/// Creates the relation `name` (`table` or `schema.table`) over the lake
/// files `files`, read as `read` says: a view over `read_parquet` on a local
/// lake, a table loaded from the files' record batches otherwise (see the
/// module docs).
pub fn register(
    conn: &Connection,
    lake: &Lake,
    name: &str,
    files: &[PathBuf],
    read: &Read,
) -> Result<Registered> {
    let route = if lake.is_local() && !arrow_forced() {
        Route::Parquet
    } else {
        Route::Arrow
    };
    register_by(conn, lake, name, files, read, route)
}

/// Removes what [`register`] created.
pub fn unregister(conn: &Connection, name: &str, registered: Registered) -> Result<()> {
    match registered.drop_sql(name) {
        Some(sql) => conn.execute_batch(&sql).map_err(db_err(name)),
        None => Ok(()),
    }
}

/// The names of a column list such as [`Read::empty`]'s
/// (`customer_id VARCHAR, cost DECIMAL(38, 18)` gives `customer_id`,
/// `cost`): a caller that has one names the columns it reads with it.
pub fn column_names(columns: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (at, c) in columns.char_indices().chain([(columns.len(), ',')]) {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                if let Some(name) = columns[start..at].split_whitespace().next() {
                    names.push(name);
                }
                start = at + 1;
            }
            _ => {}
        }
    }
    names
}

/// Whether `METER_DUCKDB_ARROW=1`: the test and diagnostic switch that
/// makes [`register`] load record batches on a local lake too.
fn arrow_forced() -> bool {
    std::env::var_os(ARROW_ENV).is_some_and(|v| v == "1")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Parquet,
    Arrow,
}

fn register_by(
    conn: &Connection,
    lake: &Lake,
    name: &str,
    files: &[PathBuf],
    read: &Read,
    route: Route,
) -> Result<Registered> {
    if files.is_empty() {
        let Some(columns) = read.empty else {
            return Ok(Registered::Nothing);
        };
        conn.execute_batch(&format!("CREATE TABLE {name} ({columns})"))
            .map_err(db_err(name))?;
        return Ok(Registered::Table);
    }
    match route {
        Route::Parquet => {
            conn.execute_batch(&format!(
                "CREATE VIEW {name} AS SELECT * FROM {}",
                read_parquet(files, read)
            ))
            .map_err(db_err(name))?;
            Ok(Registered::View)
        }
        Route::Arrow => {
            load(conn, lake, name, files, read)?;
            Ok(Registered::Table)
        }
    }
}

/// `read_parquet([...], <options>)`: the local route's text.
fn read_parquet(files: &[PathBuf], read: &Read) -> String {
    let quoted: Vec<String> = files
        .iter()
        .map(|f| literal(&f.display().to_string()))
        .collect();
    let mut options = String::new();
    if read.union_by_name {
        options.push_str(", union_by_name = true");
    }
    if let Hive::Typed(key, ty) = read.hive {
        options.push_str(&format!(
            ", hive_partitioning = true, hive_types = {{{}: {}}}",
            literal(key),
            ty.sql()
        ));
    }
    format!("read_parquet([{}]{options})", quoted.join(", "))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn db_err(context: &str) -> impl FnOnce(duckdb::Error) -> Error + '_ {
    move |source| Error::DuckDb {
        context: context.to_string(),
        source,
    }
}

/// The Hive column of a file list: its name, type, and each file's value.
struct HiveColumn {
    key: String,
    ty: HiveType,
    values: Vec<String>,
}

/// `key=value` of the file's directory.
fn partition_of(path: &Path) -> Option<(String, String)> {
    let dir = path.parent()?.file_name()?.to_str()?;
    let (key, value) = dir.split_once('=')?;
    (!key.is_empty()).then(|| (key.to_string(), value.to_string()))
}

fn hive_column(files: &[PathBuf], hive: Hive) -> Result<Option<HiveColumn>> {
    let parts: Vec<Option<(String, String)>> = files.iter().map(|f| partition_of(f)).collect();
    match hive {
        Hive::Typed(key, ty) => {
            let mut values = Vec::with_capacity(files.len());
            for (file, part) in files.iter().zip(parts) {
                match part {
                    Some((k, v)) if k == key => values.push(v),
                    _ => {
                        return Err(Error::Lake {
                            path: file.clone(),
                            message: format!("not in a `{key}=` partition directory"),
                        });
                    }
                }
            }
            Ok(Some(HiveColumn {
                key: key.to_string(),
                ty,
                values,
            }))
        }
        Hive::Detect => {
            let Some(Some((key, _))) = parts.first() else {
                return Ok(None);
            };
            let key = key.clone();
            let mut values = Vec::with_capacity(files.len());
            for part in parts {
                match part {
                    Some((k, v)) if k == key => values.push(v),
                    _ => return Ok(None),
                }
            }
            // DuckDB's detection, for the values a lake has: dates, else text.
            let ty = if values.iter().all(|v| is_date(v)) {
                HiveType::Date
            } else {
                HiveType::Varchar
            };
            Ok(Some(HiveColumn { key, ty, values }))
        }
    }
}

fn is_date(v: &str) -> bool {
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok()
        && v.len() == 10
        && v.as_bytes()[4] == b'-'
}

/// The DuckDB type `read_parquet` gives a column written with this Arrow
/// type, if the Arrow route can carry it.
fn sql_type(t: &DataType) -> Option<String> {
    Some(match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "UTINYINT".into(),
        DataType::UInt16 => "USMALLINT".into(),
        DataType::UInt32 => "UINTEGER".into(),
        DataType::UInt64 => "UBIGINT".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BLOB".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(TimeUnit::Nanosecond, None) => "TIMESTAMP_NS".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) => {
            format!("DECIMAL({p}, {s})")
        }
        DataType::Dictionary(_, value) => return sql_type(value),
        _ => return None,
    })
}

/// The table being filled: its columns so far.
struct Target<'a> {
    conn: &'a Connection,
    name: &'a str,
    schema: &'a str,
    table: &'a str,
    columns: Option<Vec<String>>,
}

impl Target<'_> {
    /// Creates the table, or adds the columns it lacks.
    fn ensure(
        &mut self,
        path: &Path,
        fields: &[(String, DataType)],
        hive: Option<&HiveColumn>,
    ) -> Result<()> {
        let typed = |name: &str, t: &DataType| -> Result<String> {
            let sql = sql_type(t).ok_or_else(|| Error::Lake {
                path: path.to_path_buf(),
                message: format!("column {name}: type {t} cannot be loaded into DuckDB"),
            })?;
            Ok(format!("{} {sql}", ident(name)))
        };
        match &mut self.columns {
            None => {
                let mut defs = Vec::new();
                let mut names = Vec::new();
                for (name, t) in fields {
                    if hive.is_some_and(|h| h.key == *name) {
                        continue;
                    }
                    defs.push(typed(name, t)?);
                    names.push(name.clone());
                }
                if let Some(h) = hive {
                    defs.push(format!("{} {}", ident(&h.key), h.ty.sql()));
                    names.push(h.key.clone());
                }
                self.conn
                    .execute_batch(&format!("CREATE TABLE {} ({})", self.name, defs.join(", ")))
                    .map_err(db_err(self.name))?;
                self.columns = Some(names);
            }
            Some(columns) => {
                for (name, t) in fields {
                    if columns.contains(name) {
                        continue;
                    }
                    self.conn
                        .execute_batch(&format!(
                            "ALTER TABLE {} ADD COLUMN {}",
                            self.name,
                            typed(name, t)?
                        ))
                        .map_err(db_err(self.name))?;
                    columns.push(name.clone());
                }
            }
        }
        Ok(())
    }

    /// Appends a batch (its columns by name) with the file's Hive value.
    fn append(
        &mut self,
        path: &Path,
        batch: RecordBatch,
        hive: Option<(&HiveColumn, &str)>,
    ) -> Result<()> {
        let schema = batch.schema();
        let mut fields: Vec<Field> = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            if hive.is_some_and(|(h, _)| h.key == *field.name()) {
                continue;
            }
            let (field, array) = match field.data_type() {
                // The appender takes plain arrays.
                DataType::Dictionary(_, value) => (
                    field
                        .as_ref()
                        .clone()
                        .with_data_type(value.as_ref().clone()),
                    arrow::compute::cast(array, value).map_err(Error::Arrow)?,
                ),
                _ => (field.as_ref().clone(), array.clone()),
            };
            fields.push(field);
            arrays.push(array);
        }
        if let Some((h, value)) = hive {
            // Text: the appender casts it to the column's type, as
            // `hive_types` does.
            fields.push(Field::new(&h.key, DataType::Utf8, false));
            arrays.push(Arc::new(StringArray::from(vec![value; batch.num_rows()])));
        }
        let names: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
        let typed: Vec<(String, DataType)> = fields
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        self.ensure(path, &typed, hive.map(|(h, _)| h))?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch =
            RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(Error::Arrow)?;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut appender = self
            .conn
            .appender_with_columns_to_db(self.table, self.schema, &names)
            .map_err(db_err(self.name))?;
        appender
            .append_record_batch(batch)
            .map_err(db_err(self.name))?;
        appender.flush().map_err(db_err(self.name))
    }
}

/// The Arrow route: the files' record batches into a new table `name`.
fn load(conn: &Connection, lake: &Lake, name: &str, files: &[PathBuf], read: &Read) -> Result<()> {
    let hive = hive_column(files, read.hive)?;
    let (schema, table) = name.split_once('.').unwrap_or(("main", name));
    let mut target = Target {
        conn,
        name,
        schema,
        table,
        columns: None,
    };
    for (i, path) in files.iter().enumerate() {
        let value = hive.as_ref().map(|h| (h, h.values[i].as_str()));
        match read.columns {
            Some(names) => {
                lake.read_columns(path, names, |batch| target.append(path, batch, value))?
            }
            None => {
                for batch in lake.read_batches(path)? {
                    target.append(path, batch, value)?;
                }
            }
        }
    }
    if target.columns.is_none() {
        // Files without a row: the table still has their columns.
        let path = &files[0];
        let schema = lake.read_schema(path, read.columns)?;
        let fields: Vec<(String, DataType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        target.ensure(path, &fields, hive.as_ref())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use arrow::array::{
        BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array,
        TimestampMicrosecondArray,
    };
    use parquet::arrow::ArrowWriter;
    use proptest::prelude::*;

    use super::*;

    /// One row of the test files: text, money at two scales, counts, a
    /// flag, a UTC timestamp, a date and a float, each possibly null.
    #[derive(Debug, Clone)]
    struct Row {
        customer: Option<String>,
        cost: Option<i128>,
        fee: Option<i128>,
        n: Option<i64>,
        flag: Option<bool>,
        ts: Option<i64>,
        day: Option<i32>,
        x: Option<f64>,
    }

    /// The file columns, as the lake writes them.
    fn schema() -> arrow::datatypes::SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8, true),
            Field::new("cost", DataType::Decimal128(38, 18), true),
            Field::new("fee", DataType::Decimal128(18, 6), true),
            Field::new("requests", DataType::Int64, true),
            Field::new("priced", DataType::Boolean, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("price_effective_from", DataType::Date32, true),
            Field::new("cpu_percent", DataType::Float64, true),
        ]))
    }

    fn batch(rows: &[Row]) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.customer.clone()),
            )),
            Arc::new(
                Decimal128Array::from_iter(rows.iter().map(|r| r.cost))
                    .with_precision_and_scale(38, 18)
                    .unwrap(),
            ),
            Arc::new(
                Decimal128Array::from_iter(rows.iter().map(|r| r.fee))
                    .with_precision_and_scale(18, 6)
                    .unwrap(),
            ),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.n))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| r.flag))),
            Arc::new(
                TimestampMicrosecondArray::from_iter(rows.iter().map(|r| r.ts))
                    .with_timezone("UTC"),
            ),
            Arc::new(Date32Array::from_iter(rows.iter().map(|r| r.day))),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.x))),
        ];
        RecordBatch::try_new(schema(), columns).unwrap()
    }

    /// Writes `batch` as `<root>/<rel>/<dir>/<name>.parquet`.
    fn write(root: &Path, rel: &str, dir: &str, name: &str, batch: &RecordBatch) -> PathBuf {
        let dir = root.join(rel).join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.parquet"));
        let mut w = ArrowWriter::try_new(
            File::create(&path).unwrap(),
            batch.schema(),
            Some(crate::lake::writer_props()),
        )
        .unwrap();
        w.write(batch).unwrap();
        w.close().unwrap();
        path
    }

    /// What a relation holds: its columns' types, then its rows as text,
    /// sorted, then the exact sums of its money columns.
    type Seen = (
        Vec<(String, String)>,
        Vec<Vec<Option<String>>>,
        Vec<Option<String>>,
    );

    /// `name`'s columns (`only`, else every one) as DuckDB sees them.
    fn seen(conn: &Connection, name: &str, only: Option<&[String]>) -> Seen {
        let mut stmt = conn
            .prepare(
                "SELECT column_name, data_type FROM information_schema.columns \
                 WHERE table_name = ? ORDER BY column_name",
            )
            .unwrap();
        let mut types: Vec<(String, String)> = stmt
            .query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        if let Some(only) = only {
            types.retain(|(c, _)| only.contains(c));
        }
        let list: Vec<String> = types.iter().map(|(c, _)| ident(c)).collect();
        let casts: Vec<String> = list
            .iter()
            .map(|c| format!("CAST({c} AS VARCHAR)"))
            .collect();
        let sql = format!(
            "SELECT {} FROM {name} ORDER BY ALL",
            if casts.is_empty() {
                "42".to_string()
            } else {
                casts.join(", ")
            }
        );
        let mut stmt = conn.prepare(&sql).unwrap();
        let width = list.len().max(1);
        let rows: Vec<Vec<Option<String>>> = stmt
            .query_map([], |r| (0..width).map(|i| r.get(i)).collect())
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let mut sums = Vec::new();
        for money in ["cost", "fee"] {
            if types.iter().any(|(c, _)| c == money) {
                sums.push(
                    conn.query_row(
                        &format!("SELECT CAST(sum({money}) AS VARCHAR) FROM {name}"),
                        [],
                        |r| r.get(0),
                    )
                    .unwrap(),
                );
            }
        }
        (types, rows, sums)
    }

    /// Registers `files` both ways, each on its own connection, and
    /// returns what each route shows (columns: `read.columns` and the Hive
    /// column, or every column).
    fn both(root: &Path, files: &[PathBuf], read: &Read) -> (Seen, Seen, Registered, Registered) {
        let lake = Lake::open(root, "duck-test").unwrap();
        let only: Option<Vec<String>> = read.columns.map(|c| {
            let mut c: Vec<String> = c.iter().map(|s| s.to_string()).collect();
            c.extend(["date", "month"].map(String::from));
            c
        });
        let mut out = Vec::new();
        let mut kinds = Vec::new();
        for route in [Route::Parquet, Route::Arrow] {
            let conn = Connection::open_in_memory().unwrap();
            let kind = register_by(&conn, &lake, "t", files, read, route).unwrap();
            kinds.push(kind);
            out.push(match kind {
                Registered::Nothing => Default::default(),
                _ => seen(&conn, "t", only.as_deref()),
            });
        }
        let b = out.pop().unwrap();
        let a = out.pop().unwrap();
        (a, b, kinds[0], kinds[1])
    }

    fn row() -> impl Strategy<Value = Row> {
        let money = -(10i128.pow(20))..10i128.pow(20);
        (
            proptest::option::of("[a-c]{0,3}|cust_0001|o'brien"),
            proptest::option::of(money),
            proptest::option::of(-10i128.pow(12)..10i128.pow(12)),
            proptest::option::of(-5i64..1_000_000),
            proptest::option::of(any::<bool>()),
            proptest::option::of(1_790_000_000_000_000i64..1_800_000_000_000_000),
            proptest::option::of(20_000i32..21_000),
            proptest::option::of((-1000i32..1000).prop_map(|v| f64::from(v) / 8.0)),
        )
            .prop_map(|(customer, cost, fee, n, flag, ts, day, x)| Row {
                customer,
                cost,
                fee,
                n,
                flag,
                ts,
                day,
                x,
            })
    }

    /// (day of October, rows) per file.
    fn files() -> impl Strategy<Value = Vec<(u32, Vec<Row>)>> {
        prop::collection::vec((1u32..4, prop::collection::vec(row(), 0..12)), 0..6)
    }

    fn hive() -> impl Strategy<Value = Hive<'static>> {
        prop_oneof![
            Just(Hive::Detect),
            Just(Hive::Typed("date", HiveType::Varchar)),
            Just(Hive::Typed("date", HiveType::Date)),
        ]
    }

    const SOME: &[&str] = &["customer_id", "cost", "ts"];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// The Arrow route shows what `read_parquet` shows: the same
        /// column types, the same rows (money at its scale, nulls, the
        /// Hive column) and the same exact sums, over any number of files,
        /// empty ones among them.
        #[test]
        fn the_arrow_route_reads_what_read_parquet_reads(
            files in files(),
            hive in hive(),
            some_columns in any::<bool>(),
            union_by_name in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let paths: Vec<PathBuf> = files
                .iter()
                .enumerate()
                .map(|(i, (day, rows))| {
                    write(dir.path(), "daily/t", &format!("date=2026-10-0{day}"), &format!("part-{i:02}"), &batch(rows))
                })
                .collect();
            let read = Read {
                hive,
                union_by_name,
                columns: some_columns.then_some(SOME),
                empty: Some("customer_id VARCHAR, cost DECIMAL(38, 18), date DATE"),
            };
            let (parquet, arrow, _, arrow_kind) = both(dir.path(), &paths, &read);
            prop_assert_eq!(&parquet, &arrow);
            prop_assert_eq!(arrow_kind, Registered::Table);
            let rows: usize = files.iter().map(|(_, r)| r.len()).sum();
            prop_assert_eq!(parquet.1.len(), rows);
        }
    }

    #[test]
    fn month_partitions_detected_and_typed() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            Row {
                customer: Some("cust_0001".into()),
                cost: Some(1_234_567_890_123_456_789_012),
                fee: Some(499_000_000),
                n: Some(3),
                flag: Some(true),
                ts: Some(1_790_000_000_000_000),
                day: Some(20_400),
                x: Some(1.5),
            };
            3
        ];
        let paths = vec![
            write(
                dir.path(),
                "monthly/t",
                "month=2026-09",
                "part-0",
                &batch(&rows),
            ),
            write(
                dir.path(),
                "monthly/t",
                "month=2026-10",
                "part-0",
                &batch(&rows[..1]),
            ),
        ];
        for hive in [Hive::Detect, Hive::Typed("month", HiveType::Varchar)] {
            let read = Read {
                hive,
                ..Read::default()
            };
            let (parquet, arrow, _, _) = both(dir.path(), &paths, &read);
            assert_eq!(parquet, arrow, "{hive:?}");
            assert!(
                parquet.0.contains(&("month".into(), "VARCHAR".into())),
                "{:?}",
                parquet.0
            );
            assert!(
                parquet
                    .0
                    .contains(&("cost".into(), "DECIMAL(38,18)".into())),
                "{:?}",
                parquet.0
            );
            assert_eq!(parquet.2[0].as_deref(), Some("4938.271560493827156048"));
        }
    }

    /// No files: the empty table the caller names, or nothing.
    #[test]
    fn no_files_give_the_empty_table_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let read = Read {
            empty: Some("customer_id VARCHAR, count BIGINT"),
            ..Read::default()
        };
        let (parquet, arrow, a, b) = both(dir.path(), &[], &read);
        assert_eq!((a, b), (Registered::Table, Registered::Table));
        assert_eq!(parquet, arrow);
        assert_eq!(
            parquet.0,
            [
                ("count".to_string(), "BIGINT".to_string()),
                ("customer_id".to_string(), "VARCHAR".to_string())
            ]
        );
        let (_, _, a, b) = both(dir.path(), &[], &Read::default());
        assert_eq!((a, b), (Registered::Nothing, Registered::Nothing));
    }

    /// Files whose columns differ (a rejects file from before `detail`):
    /// with `union_by_name` both routes read the missing column as NULL.
    #[test]
    fn union_by_name_fills_a_missing_column_with_null() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![Row {
            customer: Some("a".into()),
            cost: Some(5),
            fee: None,
            n: None,
            flag: Some(false),
            ts: None,
            day: None,
            x: None,
        }];
        let full = batch(&rows);
        let mut narrow = full.clone();
        narrow.remove_column(1);
        let paths = vec![
            write(dir.path(), "t", "date=2026-10-01", "part-0", &narrow),
            write(dir.path(), "t", "date=2026-10-02", "part-0", &full),
        ];
        let read = Read {
            hive: Hive::Typed("date", HiveType::Date),
            union_by_name: true,
            ..Read::default()
        };
        let (parquet, arrow, _, _) = both(dir.path(), &paths, &read);
        assert_eq!(parquet, arrow);
        assert_eq!(parquet.2[0].as_deref(), Some("0.000000000000000005"));
    }

    #[test]
    fn column_names_of_a_column_list() {
        assert_eq!(
            column_names("date DATE, cost DECIMAL(38, 18), n BIGINT"),
            ["date", "cost", "n"]
        );
        assert_eq!(column_names("customer_id VARCHAR"), ["customer_id"]);
        assert_eq!(column_names(""), Vec::<&str>::new());
    }

    #[test]
    fn the_local_text_carries_the_callers_options() {
        let files = [PathBuf::from("/l/daily/x/date=2026-10-01/p'1.parquet")];
        let read = Read {
            hive: Hive::Typed("date", HiveType::Varchar),
            union_by_name: true,
            ..Read::default()
        };
        assert_eq!(
            read_parquet(&files, &read),
            "read_parquet(['/l/daily/x/date=2026-10-01/p''1.parquet'], union_by_name = true, \
             hive_partitioning = true, hive_types = {'date': VARCHAR})"
        );
        assert_eq!(
            read_parquet(&files, &Read::default()),
            "read_parquet(['/l/daily/x/date=2026-10-01/p''1.parquet'])"
        );
    }
}
