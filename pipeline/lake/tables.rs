//! The lake's tables: one row struct per table, its Arrow schema and the
//! conversion of rows into record batches. Every column is documented in
//! `schemas/<table>.md`; a test keeps the two in step.

use std::borrow::Cow;
use std::sync::Arc;

#[cfg(test)]
use arrow::array::StringArray;
use arrow::array::{
    ArrayRef, BooleanArray, BooleanBuilder, Float64Array, Int32Array, Int64Array, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::model::ids::{EventId, write_id_hex};
use crate::model::time::Ts;

/// Shared, cheaply cloned text (VM ids, file names, models).
pub type Str = Arc<str>;

/// A Rust field type that maps onto one Arrow column.
pub trait ColType: Sized {
    const NULLABLE: bool;
    /// Builds the column one value at a time (see [`TableCols`]).
    type Builder: ColBuilder<Self>;
    fn data_type() -> DataType;
    /// The column of these values (see [`TableRow::batch`]).
    #[cfg(test)]
    fn array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef
    where
        Self: 'a;
}

/// Text a row holds without owning a `Str` of its own: borrowed from the
/// line or the file's context, shared, or made for the row.
#[derive(Debug, Clone, PartialEq)]
pub enum Text<'a> {
    Borrowed(&'a str),
    Shared(Str),
    Owned(String),
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Borrowed(s) => s,
            Text::Shared(s) => s,
            Text::Owned(s) => s,
        }
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Text<'a> {
        Text::Borrowed(s)
    }
}

impl<'a> From<Cow<'a, str>> for Text<'a> {
    fn from(s: Cow<'a, str>) -> Text<'a> {
        match s {
            Cow::Borrowed(s) => Text::Borrowed(s),
            Cow::Owned(s) => Text::Owned(s),
        }
    }
}

impl From<Str> for Text<'_> {
    fn from(s: Str) -> Self {
        Text::Shared(s)
    }
}

/// A field type as a parser may hand it over without owning it: text
/// borrowed from the line (or made for it), anything else as it is. A row
/// of these ([`ApiUsageRef`]) is pushed into the columns without the
/// allocation, interning and reference counts an owned row of `Str`s costs.
pub trait ColRef: ColType {
    type Ref<'a>;
    fn push_ref(builder: &mut Self::Builder, value: Self::Ref<'_>);
    /// The owned value (tests compare owned rows).
    fn own(value: Self::Ref<'_>) -> Self;
}

macro_rules! col_ref_copy {
    ($($t:ty),*) => {$(
        impl ColRef for $t {
            type Ref<'a> = $t;
            fn push_ref(builder: &mut Self::Builder, value: $t) {
                builder.push(value);
            }
            fn own(value: $t) -> $t {
                value
            }
        }
    )*};
}

macro_rules! col_ref_text {
    ($($t:ty),*) => {$(
        impl ColRef for $t {
            type Ref<'a> = Text<'a>;
            fn push_ref(builder: &mut TextBuilder, value: Text<'_>) {
                builder.0.append_value(&*value);
            }
            fn own(value: Text<'_>) -> $t {
                <$t>::from(&*value)
            }
        }
        impl ColRef for Option<$t> {
            type Ref<'a> = Option<Text<'a>>;
            fn push_ref(builder: &mut TextBuilder, value: Option<Text<'_>>) {
                builder.0.append_option(value.as_deref());
            }
            fn own(value: Option<Text<'_>>) -> Option<$t> {
                value.map(|v| <$t>::from(&*v))
            }
        }
    )*};
}

/// One column being filled, value by value, then finished into an array.
pub trait ColBuilder<T>: Send {
    fn with_capacity(rows: usize) -> Self;
    fn push(&mut self, value: T);
    fn finish(&mut self) -> ArrayRef;
}

/// The builder of a column of strings: the bytes are copied in, so rows
/// leave nothing behind them.
pub struct TextBuilder(StringBuilder);

/// Bytes reserved per string value: the median text column is short.
const TEXT_BYTES: usize = 16;

macro_rules! text_builder {
    ($t:ty) => {
        impl ColBuilder<$t> for TextBuilder {
            fn with_capacity(rows: usize) -> Self {
                TextBuilder(StringBuilder::with_capacity(rows, rows * TEXT_BYTES))
            }
            fn push(&mut self, value: $t) {
                self.0.append_value(&*value);
            }
            fn finish(&mut self) -> ArrayRef {
                Arc::new(self.0.finish())
            }
        }
        impl ColBuilder<Option<$t>> for TextBuilder {
            fn with_capacity(rows: usize) -> Self {
                TextBuilder(StringBuilder::with_capacity(rows, rows * TEXT_BYTES))
            }
            fn push(&mut self, value: Option<$t>) {
                self.0.append_option(value.as_deref());
            }
            fn finish(&mut self) -> ArrayRef {
                Arc::new(self.0.finish())
            }
        }
    };
}

text_builder!(Str);
text_builder!(String);

macro_rules! col_type {
    ($t:ty, $opt:ty, $dt:expr, $arr:ty, $builder:ty, $opt_builder:ty, |$v:ident| $conv:expr) => {
        impl ColType for $t {
            const NULLABLE: bool = false;
            type Builder = $builder;
            fn data_type() -> DataType {
                $dt
            }
            #[cfg(test)]
            fn array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
                Arc::new(values.map(|$v| Some($conv)).collect::<$arr>())
            }
        }
        impl ColType for $opt {
            const NULLABLE: bool = true;
            type Builder = $opt_builder;
            fn data_type() -> DataType {
                $dt
            }
            #[cfg(test)]
            fn array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
                Arc::new(values.map(|o| o.as_ref().map(|$v| $conv)).collect::<$arr>())
            }
        }
    };
}

/// Builders of primitive columns: a plain vector, and for the nullable
/// column a vector with a validity flag per value. Both keep their values
/// settable until they are finished (finalizing patches network deltas).
macro_rules! primitive_builders {
    ($t:ty, $vec:ident, $opt:ident, $arr:ty) => {
        pub struct $vec(pub Vec<$t>);
        impl ColBuilder<$t> for $vec {
            fn with_capacity(rows: usize) -> Self {
                $vec(Vec::with_capacity(rows))
            }
            fn push(&mut self, value: $t) {
                self.0.push(value);
            }
            fn finish(&mut self) -> ArrayRef {
                Arc::new(<$arr>::from(std::mem::take(&mut self.0)))
            }
        }
        #[derive(Default)]
        pub struct $opt {
            values: Vec<$t>,
            valid: Vec<bool>,
        }
        impl $opt {
            pub fn set(&mut self, row: usize, value: Option<$t>) {
                self.valid[row] = value.is_some();
                self.values[row] = value.unwrap_or_default();
            }
        }
        impl ColBuilder<Option<$t>> for $opt {
            fn with_capacity(rows: usize) -> Self {
                $opt {
                    values: Vec::with_capacity(rows),
                    valid: Vec::with_capacity(rows),
                }
            }
            fn push(&mut self, value: Option<$t>) {
                self.valid.push(value.is_some());
                self.values.push(value.unwrap_or_default());
            }
            fn finish(&mut self) -> ArrayRef {
                let valid = std::mem::take(&mut self.valid);
                let nulls = valid.contains(&false).then(|| NullBuffer::from(valid));
                Arc::new(<$arr>::new(std::mem::take(&mut self.values).into(), nulls))
            }
        }
    };
}

primitive_builders!(i64, I64Col, OptI64Col, Int64Array);
primitive_builders!(i32, I32Col, OptI32Col, Int32Array);
primitive_builders!(f64, F64Col, OptF64Col, Float64Array);

/// Booleans: a vector (no nulls) or Arrow's builder.
pub struct BoolCol(pub Vec<bool>);

impl ColBuilder<bool> for BoolCol {
    fn with_capacity(rows: usize) -> Self {
        BoolCol(Vec::with_capacity(rows))
    }
    fn push(&mut self, value: bool) {
        self.0.push(value);
    }
    fn finish(&mut self) -> ArrayRef {
        Arc::new(BooleanArray::from(std::mem::take(&mut self.0)))
    }
}

pub struct OptBoolCol(BooleanBuilder);

impl ColBuilder<Option<bool>> for OptBoolCol {
    fn with_capacity(rows: usize) -> Self {
        OptBoolCol(BooleanBuilder::with_capacity(rows))
    }
    fn push(&mut self, value: Option<bool>) {
        self.0.append_option(value);
    }
    fn finish(&mut self) -> ArrayRef {
        Arc::new(self.0.finish())
    }
}

col_type!(
    Str,
    Option<Str>,
    DataType::Utf8,
    StringArray,
    TextBuilder,
    TextBuilder,
    |v| &**v
);
col_type!(
    String,
    Option<String>,
    DataType::Utf8,
    StringArray,
    TextBuilder,
    TextBuilder,
    |v| v.as_str()
);
col_type!(
    i64,
    Option<i64>,
    DataType::Int64,
    Int64Array,
    I64Col,
    OptI64Col,
    |v| *v
);
col_type!(
    i32,
    Option<i32>,
    DataType::Int32,
    Int32Array,
    I32Col,
    OptI32Col,
    |v| *v
);
col_type!(
    f64,
    Option<f64>,
    DataType::Float64,
    Float64Array,
    F64Col,
    OptF64Col,
    |v| *v
);
col_type!(
    bool,
    Option<bool>,
    DataType::Boolean,
    BooleanArray,
    BoolCol,
    OptBoolCol,
    |v| *v
);

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The builder of a time column: microseconds, kept readable so that rows
/// can be sorted into partitions before the column is finished.
pub struct TsCol(pub Vec<i64>);

impl ColBuilder<Ts> for TsCol {
    fn with_capacity(rows: usize) -> Self {
        TsCol(Vec::with_capacity(rows))
    }
    fn push(&mut self, value: Ts) {
        self.0.push(value.0);
    }
    fn finish(&mut self) -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(std::mem::take(&mut self.0)).with_timezone("UTC"))
    }
}

pub struct OptTsCol(TimestampMicrosecondBuilder);

impl ColBuilder<Option<Ts>> for OptTsCol {
    fn with_capacity(rows: usize) -> Self {
        OptTsCol(TimestampMicrosecondBuilder::with_capacity(rows))
    }
    fn push(&mut self, value: Option<Ts>) {
        self.0.append_option(value.map(|t| t.0));
    }
    fn finish(&mut self) -> ArrayRef {
        Arc::new(self.0.finish().with_timezone("UTC"))
    }
}

impl ColType for Ts {
    const NULLABLE: bool = false;
    type Builder = TsCol;
    fn data_type() -> DataType {
        ts_type()
    }
    #[cfg(test)]
    fn array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(values.map(|t| t.0)).with_timezone("UTC"),
        )
    }
}

impl ColType for Option<Ts> {
    const NULLABLE: bool = true;
    type Builder = OptTsCol;
    fn data_type() -> DataType {
        ts_type()
    }
    #[cfg(test)]
    fn array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        Arc::new(
            values
                .map(|t| t.map(|t| t.0))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        )
    }
}

/// An event id, stored as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Id(pub EventId);

/// The builder of the event id column: ids stay numbers (finalizing gives
/// content ids their occurrence numbers, dedup reads them) until the column
/// is finished as hex text.
pub struct IdCol(pub Vec<EventId>);

impl ColBuilder<Id> for IdCol {
    fn with_capacity(rows: usize) -> Self {
        IdCol(Vec::with_capacity(rows))
    }
    fn push(&mut self, value: Id) {
        self.0.push(value.0);
    }
    fn finish(&mut self) -> ArrayRef {
        let ids = std::mem::take(&mut self.0);
        hex_ids(ids.len(), ids.into_iter())
    }
}

impl ColType for Id {
    const NULLABLE: bool = false;
    type Builder = IdCol;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    #[cfg(test)]
    fn array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        hex_ids(values.size_hint().0, values.map(|id| id.0))
    }
}

col_ref_copy!(
    i64,
    Option<i64>,
    i32,
    Option<i32>,
    f64,
    Option<f64>,
    bool,
    Option<bool>,
    Ts,
    Option<Ts>,
    Id
);
col_ref_text!(Str, String);

/// Event ids as the lake's column of 32 hex digits.
fn hex_ids(n: usize, ids: impl Iterator<Item = EventId>) -> ArrayRef {
    let mut builder = StringBuilder::with_capacity(n, n * 32);
    let mut buf = [0u8; 32];
    for id in ids {
        builder.append_value(write_id_hex(id, &mut buf));
    }
    Arc::new(builder.finish())
}

/// The rows of one table.
pub trait TableRow: Sized + Send + 'static {
    const TABLE: Table;
    /// The table's columns being filled, row by row.
    type Cols: TableCols<Row = Self>;
    fn schema() -> SchemaRef;
    /// Rows into a batch column by column, apart from [`TableCols`]: the
    /// route the columns are checked against, and the tests' fixtures.
    #[cfg(test)]
    fn batch(rows: &[Self]) -> RecordBatch;
}

/// A table's rows as columns being filled: rows are moved in as they are
/// parsed; the ids and times stay readable (and ids writable) until the
/// columns are finished into a record batch.
pub trait TableCols: Send + Sized + 'static {
    type Row: TableRow;
    fn with_capacity(rows: usize) -> Self;
    fn push(&mut self, row: Self::Row);
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn ids(&self) -> &[EventId];
    fn ids_mut(&mut self) -> &mut [EventId];
    /// Event times, in microseconds.
    fn ts(&self) -> &[i64];
    /// The ids to change, beside the times.
    fn ids_mut_and_ts(&mut self) -> (&mut [EventId], &[i64]);
    /// The rows so far as a batch; the columns start over empty.
    fn finish(&mut self) -> RecordBatch;
}

macro_rules! table {
    ($(#[$meta:meta])* $name:ident, $refname:ident, $cols:ident => $table:path { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name { $(pub $field: $ty),* }

        #[doc = concat!("A [`", stringify!($name), "`] whose text is borrowed (see [`ColRef`]).")]
        #[derive(Debug, Clone, PartialEq)]
        pub struct $refname<'a> { $(pub $field: <$ty as ColRef>::Ref<'a>),* }

        impl $refname<'_> {
            /// The owned row.
            pub fn to_row(self) -> $name {
                $name { $($field: <$ty as ColRef>::own(self.$field)),* }
            }
        }

        impl $cols {
            /// Pushes a row whose text is borrowed.
            pub fn push_ref(&mut self, row: $refname<'_>) {
                self.rows += 1;
                $(<$ty as ColRef>::push_ref(&mut self.$field, row.$field);)*
            }
        }

        #[doc = concat!("The columns of [`", stringify!($name), "`] being filled.")]
        pub struct $cols {
            rows: usize,
            $($field: <$ty as ColType>::Builder),*
        }

        impl TableCols for $cols {
            type Row = $name;
            fn with_capacity(rows: usize) -> Self {
                $cols { rows: 0, $($field: <<$ty as ColType>::Builder as ColBuilder<$ty>>::with_capacity(rows)),* }
            }
            fn push(&mut self, row: $name) {
                self.rows += 1;
                $(<<$ty as ColType>::Builder as ColBuilder<$ty>>::push(&mut self.$field, row.$field);)*
            }
            fn len(&self) -> usize {
                self.rows
            }
            fn ids(&self) -> &[EventId] {
                &self.event_id.0
            }
            fn ids_mut(&mut self) -> &mut [EventId] {
                &mut self.event_id.0
            }
            fn ts(&self) -> &[i64] {
                &self.ts.0
            }
            fn ids_mut_and_ts(&mut self) -> (&mut [EventId], &[i64]) {
                (&mut self.event_id.0, &self.ts.0)
            }
            fn finish(&mut self) -> RecordBatch {
                self.rows = 0;
                let columns: Vec<ArrayRef> = vec![$(<<$ty as ColType>::Builder as ColBuilder<$ty>>::finish(&mut self.$field)),*];
                RecordBatch::try_new(<$name as TableRow>::schema(), columns).expect("columns match the schema")
            }
        }

        impl $name {
            pub const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];
        }

        impl TableRow for $name {
            const TABLE: Table = $table;
            type Cols = $cols;
            fn schema() -> SchemaRef {
                static SCHEMA: std::sync::LazyLock<SchemaRef> = std::sync::LazyLock::new(|| {
                    Arc::new(Schema::new(vec![
                        $(Field::new(stringify!($field), <$ty as ColType>::data_type(), <$ty as ColType>::NULLABLE)),*
                    ]))
                });
                SCHEMA.clone()
            }
            #[cfg(test)]
            fn batch(rows: &[Self]) -> RecordBatch {
                let columns: Vec<ArrayRef> = vec![$(<$ty as ColType>::array(rows.iter().map(|r| &r.$field))),*];
                RecordBatch::try_new(Self::schema(), columns).expect("columns match the schema")
            }
        }
    };
}

/// The tables of the lake.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    ApiUsage,
    ApiRequests,
    ResourceUsage,
    Activity,
    Rejects,
}

impl Table {
    pub const ALL: [Table; 5] = [
        Table::ApiUsage,
        Table::ApiRequests,
        Table::ResourceUsage,
        Table::Activity,
        Table::Rejects,
    ];
    /// The tables that hold events (all but rejects).
    pub const EVENTS: [Table; 4] = [
        Table::ApiUsage,
        Table::ApiRequests,
        Table::ResourceUsage,
        Table::Activity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::ApiUsage => "api_usage",
            Table::ApiRequests => "api_requests",
            Table::ResourceUsage => "resource_usage",
            Table::Activity => "activity",
            Table::Rejects => "rejects",
        }
    }

    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Table::ApiUsage => ApiUsageRow::COLUMNS,
            Table::ApiRequests => ApiRequestRow::COLUMNS,
            Table::ResourceUsage => ResourceRow::COLUMNS,
            Table::Activity => ActivityRow::COLUMNS,
            Table::Rejects => RejectRow::COLUMNS,
        }
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            Table::ApiUsage => ApiUsageRow::schema(),
            Table::ApiRequests => ApiRequestRow::schema(),
            Table::ResourceUsage => ResourceRow::schema(),
            Table::Activity => ActivityRow::schema(),
            Table::Rejects => RejectRow::schema(),
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

table!(
    /// One model call with its token counts (usage lines and CLIProxyAPI usage records).
    ApiUsageRow, ApiUsageRef, ApiUsageCols => Table::ApiUsage {
        event_id: Id,
        ts: Ts,
        customer_id: Option<Str>,
        vm_id: Str,
        user_id: Option<Str>,
        provider: Str,
        executor: Option<Str>,
        model: Str,
        alias: Option<Str>,
        endpoint: Option<Str>,
        request_id: Option<Str>,
        status: Option<i32>,
        failed: bool,
        input_tokens: i64,
        cache_read_tokens: i64,
        cache_write_tokens: i64,
        output_tokens: i64,
        reasoning_tokens: i64,
        latency_ms: Option<i64>,
        ttft_ms: Option<i64>,
        api_key_fp: Option<Str>,
        auth_type: Option<Str>,
        reasoning_effort: Option<Str>,
        service_tier: Option<Str>,
        record_format: Str,
        token_source: Str,
        source_file: Str,
        source_line: i64,
    }
);

table!(
    /// One HTTP access line (CLIProxyAPI main log, Common/Combined Log Format). No tokens.
    ApiRequestRow, ApiRequestRef, ApiRequestCols => Table::ApiRequests {
        event_id: Id,
        ts: Ts,
        customer_id: Option<Str>,
        vm_id: Str,
        request_id: Option<Str>,
        status: i32,
        latency_us: Option<i64>,
        client_ip: Option<Str>,
        method: Option<Str>,
        path: Option<String>,
        provider: Option<Str>,
        model: Option<Str>,
        bytes: Option<i64>,
        referer: Option<String>,
        user_agent: Option<String>,
        error: Option<String>,
        log_format: Str,
        source_file: Str,
        source_line: i64,
    }
);

table!(
    /// One resource sample line (CSV/JSONL sample or one Telegraf measurement).
    ResourceRow, ResourceRef, ResourceCols => Table::ResourceUsage {
        event_id: Id,
        ts: Ts,
        customer_id: Option<Str>,
        vm_id: Str,
        measurement: Str,
        cpu_percent: Option<f64>,
        memory_percent: Option<f64>,
        disk_gb: Option<f64>,
        network_in_mb: Option<f64>,
        network_out_mb: Option<f64>,
        device: Option<Str>,
        counter_reset: bool,
        source_format: Str,
        source_file: Str,
        source_line: i64,
    }
);

table!(
    /// One command, pattern or operation run on a VM.
    ActivityRow, ActivityRef, ActivityCols => Table::Activity {
        event_id: Id,
        ts: Ts,
        customer_id: Option<Str>,
        vm_id: Str,
        user_id: Option<Str>,
        activity_type: Str,
        command: Option<String>,
        command_redacted: bool,
        pattern_name: Option<String>,
        duration_seconds: Option<f64>,
        exit_code: Option<i32>,
        source_file: Str,
        source_line: i64,
    }
);

table!(
    /// One input line that could not be turned into a row.
    RejectRow, RejectRef, RejectCols => Table::Rejects {
        event_id: Id,
        ts: Ts,
        ts_inferred: bool,
        customer_id: Option<Str>,
        vm_id: Str,
        target_table: Str,
        format: Option<Str>,
        reason: String,
        detail: String,
        field: Option<Str>,
        raw: String,
        source_file: Str,
        source_line: i64,
    }
);

impl ResourceCols {
    /// Sets a row's network deltas, computed in file order from the
    /// previous counters of its interface; `reset` marks a counter that
    /// went back.
    pub fn set_network(
        &mut self,
        row: usize,
        in_mb: Option<f64>,
        out_mb: Option<f64>,
        reset: bool,
    ) {
        self.network_in_mb.set(row, in_mb);
        self.network_out_mb.set(row, out_mb);
        self.counter_reset.0[row] |= reset;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows whose optional fields are null or not by the bits of their number.
    fn usage_rows(n: usize) -> Vec<ApiUsageRow> {
        let text = |i: usize, bit: usize, s: &str| {
            (i >> bit & 1 == 1).then(|| Str::from(format!("{s}-{i}")))
        };
        (0..n)
            .map(|i| ApiUsageRow {
                event_id: Id((i as u128) << 64 | 0xabcd),
                ts: Ts(1_790_000_000_000_000 + i as i64),
                customer_id: text(i, 0, "c"),
                vm_id: Str::from("vm-1"),
                user_id: text(i, 1, "u"),
                provider: Str::from(if i % 2 == 0 { "openai" } else { "anthropic" }),
                executor: text(i, 2, "e"),
                model: Str::from(format!("model-{}", i % 3)),
                alias: text(i, 3, "a"),
                endpoint: text(i, 4, "/v1"),
                request_id: text(i, 5, "r"),
                status: (i % 3 != 0).then_some(200 + i as i32),
                failed: i % 5 == 0,
                input_tokens: i as i64 * 7,
                cache_read_tokens: i as i64,
                cache_write_tokens: 0,
                output_tokens: 3,
                reasoning_tokens: 1,
                latency_ms: (i % 4 != 0).then_some(i as i64),
                ttft_ms: None,
                api_key_fp: text(i, 6, "k"),
                auth_type: None,
                reasoning_effort: text(i, 7, "high"),
                service_tier: None,
                record_format: Str::from("usage_line"),
                token_source: Str::from("flat"),
                source_file: Str::from("vm-1/cliproxy/usage.log"),
                source_line: i as i64 + 1,
            })
            .collect()
    }

    #[test]
    fn columns_filled_row_by_row_give_the_rows_batch() {
        for n in [0, 1, 2, 7, 300] {
            let rows = usage_rows(n);
            let mut cols = ApiUsageCols::with_capacity(1);
            for r in rows.clone() {
                cols.push(r);
            }
            assert_eq!(cols.len(), n);
            assert_eq!(
                cols.ids(),
                rows.iter().map(|r| r.event_id.0).collect::<Vec<_>>()
            );
            assert_eq!(cols.ts(), rows.iter().map(|r| r.ts.0).collect::<Vec<_>>());
            assert_eq!(cols.finish(), ApiUsageRow::batch(&rows));
            // Finished columns start over.
            assert!(cols.is_empty());
            assert_eq!(cols.finish().num_rows(), 0);
        }
        let rejects = vec![RejectRow {
            event_id: Id(7),
            ts: Ts(0),
            ts_inferred: true,
            customer_id: None,
            vm_id: Str::from("vm-2"),
            target_table: Str::from("api_usage"),
            format: Some(Str::from("usage_line")),
            reason: "bad_json".into(),
            detail: "expected value".into(),
            field: None,
            raw: "{".into(),
            source_file: Str::from("vm-2/cliproxy/usage.log"),
            source_line: 3,
        }];
        let mut cols = RejectCols::with_capacity(0);
        cols.push(rejects[0].clone());
        assert_eq!(cols.finish(), RejectRow::batch(&rejects));
    }

    /// Every column of every table is documented in `schemas/<table>.md` as a
    /// table row starting with "| `column` |", and nothing else is.
    #[test]
    fn every_column_is_documented() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        for table in Table::ALL {
            let doc = std::fs::read_to_string(dir.join(format!("{}.md", table.name()))).unwrap();
            let documented: Vec<&str> = doc
                .lines()
                .filter_map(|l| l.strip_prefix("| `"))
                .filter_map(|l| l.split('`').next())
                .collect();
            assert_eq!(
                documented,
                table.columns(),
                "schemas/{}.md is out of step with the code",
                table.name()
            );
        }
    }
}
