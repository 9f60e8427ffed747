//! The lake's tables: one row struct per table, its Arrow schema and the
//! conversion of rows into record batches. Every column is documented in
//! `schemas/<table>.md`; a test keeps the two in step.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::model::ids::{EventId, write_id_hex};
use crate::model::time::Ts;

/// Shared, cheaply cloned text (VM ids, file names, models).
pub type Str = Arc<str>;

/// A Rust field type that maps onto one Arrow column.
pub trait ColType: Sized {
    const NULLABLE: bool;
    fn data_type() -> DataType;
    fn array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef
    where
        Self: 'a;
}

macro_rules! col_type {
    ($t:ty, $opt:ty, $dt:expr, $arr:ty, |$v:ident| $conv:expr) => {
        impl ColType for $t {
            const NULLABLE: bool = false;
            fn data_type() -> DataType {
                $dt
            }
            fn array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
                Arc::new(values.map(|$v| Some($conv)).collect::<$arr>())
            }
        }
        impl ColType for $opt {
            const NULLABLE: bool = true;
            fn data_type() -> DataType {
                $dt
            }
            fn array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
                Arc::new(values.map(|o| o.as_ref().map(|$v| $conv)).collect::<$arr>())
            }
        }
    };
}

col_type!(Str, Option<Str>, DataType::Utf8, StringArray, |v| &**v);
col_type!(String, Option<String>, DataType::Utf8, StringArray, |v| v
    .as_str());
col_type!(i64, Option<i64>, DataType::Int64, Int64Array, |v| *v);
col_type!(i32, Option<i32>, DataType::Int32, Int32Array, |v| *v);
col_type!(f64, Option<f64>, DataType::Float64, Float64Array, |v| *v);
col_type!(bool, Option<bool>, DataType::Boolean, BooleanArray, |v| *v);

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

impl ColType for Ts {
    const NULLABLE: bool = false;
    fn data_type() -> DataType {
        ts_type()
    }
    fn array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(values.map(|t| t.0)).with_timezone("UTC"),
        )
    }
}

impl ColType for Option<Ts> {
    const NULLABLE: bool = true;
    fn data_type() -> DataType {
        ts_type()
    }
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

impl ColType for Id {
    const NULLABLE: bool = false;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn array<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        let n = values.size_hint().0;
        let mut builder = StringBuilder::with_capacity(n, n * 32);
        let mut buf = [0u8; 32];
        for id in values {
            builder.append_value(write_id_hex(id.0, &mut buf));
        }
        Arc::new(builder.finish())
    }
}

/// The rows of one table.
pub trait TableRow: Sized + Send + 'static {
    const TABLE: Table;
    fn schema() -> SchemaRef;
    fn batch(rows: &[Self]) -> RecordBatch;
    fn event_id(&self) -> EventId;
    fn ts(&self) -> Option<Ts>;
    fn customer_id(&self) -> Option<&Str>;
    fn vm_id(&self) -> &Str;
}

macro_rules! table {
    ($(#[$meta:meta])* $name:ident => $table:path { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name { $(pub $field: $ty),* }

        impl $name {
            pub const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];
        }

        impl TableRow for $name {
            const TABLE: Table = $table;
            fn schema() -> SchemaRef {
                static SCHEMA: std::sync::LazyLock<SchemaRef> = std::sync::LazyLock::new(|| {
                    Arc::new(Schema::new(vec![
                        $(Field::new(stringify!($field), <$ty as ColType>::data_type(), <$ty as ColType>::NULLABLE)),*
                    ]))
                });
                SCHEMA.clone()
            }
            fn batch(rows: &[Self]) -> RecordBatch {
                let columns: Vec<ArrayRef> = vec![$(<$ty as ColType>::array(rows.iter().map(|r| &r.$field))),*];
                RecordBatch::try_new(Self::schema(), columns).expect("columns match the schema")
            }
            fn event_id(&self) -> EventId {
                self.event_id.0
            }
            fn ts(&self) -> Option<Ts> {
                self.ts.into()
            }
            fn customer_id(&self) -> Option<&Str> {
                self.customer_id.as_ref()
            }
            fn vm_id(&self) -> &Str {
                &self.vm_id
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
    ApiUsageRow => Table::ApiUsage {
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
    ApiRequestRow => Table::ApiRequests {
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
    ResourceRow => Table::ResourceUsage {
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
    ActivityRow => Table::Activity {
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
    RejectRow => Table::Rejects {
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

#[cfg(test)]
mod tests {
    use super::*;

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
