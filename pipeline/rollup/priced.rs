//! Priced events: `<lake>/priced/api_usage/date=YYYY-MM-DD/`, every
//! `api_usage` column plus the event's cost. Raw tables stay unpriced, so a
//! price correction needs a rerun of this step, never a re-ingest.
//!
//! Money is `Decimal128(38, 18)` from `rust_decimal` arithmetic: no float,
//! no rounding before an invoice line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, Int64Array, StringArray,
    StringBuilder, TimestampMicrosecondArray,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::lake::tables::{ApiUsageRow, Table, TableRow};
use crate::lake::{Commit, Lake};
use crate::model::error::{Error, Result};
use crate::model::ids::{IdSet, canonical_id};
use crate::model::pricing::{Card, Pricing, Unpriced, Usage};
use crate::model::time::Ts;

/// Where priced events live, below the lake.
pub const PRICED_API_USAGE: &str = "priced/api_usage";
/// Money columns: `DECIMAL(38, 18)`.
pub const MONEY_PRECISION: u8 = 38;
pub const MONEY_SCALE: i8 = 18;

/// The columns priced events add to `api_usage`.
pub const PRICE_COLUMNS: [&str; 7] = [
    "cost",
    "currency",
    "priced",
    "price_key",
    "price_effective_from",
    "price_tier",
    "unpriced_reason",
];

pub fn money_type() -> DataType {
    DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE)
}

/// `api_usage`'s schema plus the price columns.
pub fn priced_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let mut fields: Vec<Field> = ApiUsageRow::schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend([
            Field::new("cost", money_type(), true),
            Field::new("currency", DataType::Utf8, false),
            Field::new("priced", DataType::Boolean, false),
            Field::new("price_key", DataType::Utf8, true),
            Field::new("price_effective_from", DataType::Date32, true),
            Field::new("price_tier", DataType::Int64, true),
            Field::new("unpriced_reason", DataType::Utf8, true),
        ]);
        Arc::new(Schema::new(fields))
    });
    SCHEMA.clone()
}

/// Events of one raw model name that could not be priced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UnpricedModel {
    pub events: u64,
    /// All token kinds together.
    pub tokens: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PricedDay {
    pub date: NaiveDate,
    /// Rows read from `api_usage` for the day.
    pub events_read: u64,
    /// Rows whose `event_id` was already read (counted once).
    pub duplicates: u64,
    pub priced: u64,
    pub unpriced: u64,
    /// Sum of costs of priced events, exact, in `currency`.
    pub cost: Decimal,
    pub currency: String,
    pub unpriced_models: BTreeMap<String, UnpricedModel>,
    pub files_written: u64,
    pub files_replaced: u64,
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| Error::Lake {
            path: name.into(),
            message: format!("api_usage column {name} is missing or mistyped"),
        })
}

/// The `api_usage` columns pricing reads.
pub const PRICING_READS: [&str; 8] = [
    "event_id",
    "ts",
    "model",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
];

/// Appends the price columns to a batch of `api_usage` rows.
pub fn price_batch(
    pricing: &Pricing,
    batch: &RecordBatch,
    day: &mut PricedDay,
) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns.extend(price_columns(pricing, batch, day)?);
    Ok(RecordBatch::try_new(priced_schema(), columns)?)
}

/// The price columns ([`PRICE_COLUMNS`]) of a batch of `api_usage` rows
/// that has at least the [`PRICING_READS`] columns.
pub fn price_columns(
    pricing: &Pricing,
    batch: &RecordBatch,
    day: &mut PricedDay,
) -> Result<Vec<ArrayRef>> {
    let model = column::<StringArray>(batch, "model")?;
    let ts = column::<TimestampMicrosecondArray>(batch, "ts")?;
    let tokens = |name| column::<Int64Array>(batch, name);
    let (input, cache_read, cache_write, output, reasoning) = (
        tokens("input_tokens")?,
        tokens("cache_read_tokens")?,
        tokens("cache_write_tokens")?,
        tokens("output_tokens")?,
        tokens("reasoning_tokens")?,
    );
    let n = batch.num_rows();
    let mut cost = Vec::with_capacity(n);
    let mut priced = Vec::with_capacity(n);
    let mut key = StringBuilder::with_capacity(n, n * 16);
    let mut from = Vec::with_capacity(n);
    let mut tier = Vec::with_capacity(n);
    let mut reason = StringBuilder::new();
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    // The price entry of each model and date, looked up once: a day has a
    // handful of models and millions of events.
    let mut cards: HashMap<(&str, NaiveDate), Result<Card, Unpriced>> = HashMap::new();
    for i in 0..n {
        let count = |a: &Int64Array| u64::try_from(a.value(i)).unwrap_or(0);
        let usage = Usage {
            input: count(input),
            cache_read: count(cache_read),
            cache_write: count(cache_write),
            output: count(output),
            reasoning: count(reasoning),
        };
        let at = Ts(ts.value(i));
        let card = cards
            .entry((model.value(i), at.date()))
            .or_insert_with(|| pricing.card(model.value(i), at));
        match card
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|c| c.price(usage))
        {
            Ok(p) => {
                let mut c = p.cost;
                if c.scale() > MONEY_SCALE as u32 {
                    return Err(Error::Lake {
                        path: PRICED_API_USAGE.into(),
                        message: format!(
                            "cost {c} has more than {MONEY_SCALE} decimal places; refusing to round"
                        ),
                    });
                }
                c.rescale(MONEY_SCALE as u32);
                day.priced += 1;
                day.cost += p.cost;
                cost.push(Some(c.mantissa()));
                priced.push(true);
                key.append_value(&p.entry.key);
                from.push(Some((p.entry.effective_from - epoch).num_days() as i32));
                tier.push(p.tier.map(|t| t as i64));
                reason.append_null();
            }
            Err(why) => {
                day.unpriced += 1;
                let entry = day
                    .unpriced_models
                    .entry(model.value(i).to_string())
                    .or_default();
                entry.events += 1;
                entry.tokens += usage.input + usage.cache_read + usage.cache_write + usage.output;
                entry.reason = why.to_string();
                cost.push(None);
                priced.push(false);
                key.append_null();
                from.push(None);
                tier.push(None);
                reason.append_value(why.to_string());
            }
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(PRICE_COLUMNS.len());
    columns.push(Arc::new(
        Decimal128Array::from(cost).with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)?,
    ));
    columns.push(Arc::new(StringArray::from(vec![
        pricing.currency.as_str();
        n
    ])));
    columns.push(Arc::new(BooleanArray::from(priced)));
    columns.push(Arc::new(key.finish()));
    columns.push(Arc::new(Date32Array::from(from)));
    columns.push(Arc::new(Int64Array::from(tier)));
    columns.push(Arc::new(reason.finish()));
    Ok(columns)
}

/// Prices one day of `api_usage` (each `event_id` once) and replaces that
/// day's priced partition wholly.
pub fn price_day(
    lake: &Lake,
    pricing: &Pricing,
    date: NaiveDate,
    run_id: &str,
) -> Result<PricedDay> {
    let mut day = PricedDay {
        date,
        events_read: 0,
        duplicates: 0,
        priced: 0,
        unpriced: 0,
        cost: Decimal::ZERO,
        currency: pricing.currency.clone(),
        unpriced_models: BTreeMap::new(),
        files_written: 0,
        files_replaced: 0,
    };
    let out_dir = lake.dated_dir(PRICED_API_USAGE, date);
    let old = lake.parquet_files(&out_dir)?;
    // Ids as the numbers they are; one that is not 32 hex digits (a lake
    // written by hand) is kept as text.
    let mut seen = IdSet::default();
    let mut seen_text: HashSet<String> = HashSet::new();
    // Each row group of the day's files in turn: its ids and what pricing
    // reads are decoded; when none of its events was seen before, its
    // column chunks go to the priced file as they are, beside the price
    // columns (most of the file is not decoded or encoded again). A row
    // group with a repeat is decoded whole and its first copies encoded.
    let mut writer = None;
    for path in lake.partition_files(Table::ApiUsage, date)? {
        let src = lake.source_file(&path)?;
        for i in 0..src.row_groups() {
            let batch = src.read(i, Some(&PRICING_READS))?;
            day.events_read += batch.num_rows() as u64;
            let ids = column::<StringArray>(&batch, "event_id")?;
            let keep: BooleanArray = (0..ids.len())
                .map(|i| {
                    let id = ids.value(i);
                    Some(match canonical_id(id) {
                        Some(n) => seen.insert(n),
                        None => seen_text.insert(id.to_string()),
                    })
                })
                .collect();
            let kept = keep.true_count();
            day.duplicates += (keep.len() - kept) as u64;
            if kept == 0 {
                continue;
            }
            let w = match &mut writer {
                Some(w) => w,
                None => writer.insert(lake.copy_writer(
                    &out_dir,
                    &format!("part-{run_id}"),
                    priced_schema(),
                )?),
            };
            if kept == keep.len() && w.can_copy(&src) {
                let columns = price_columns(pricing, &batch, &mut day)?;
                w.copy_row_group(&src, i, &columns)?;
            } else {
                let batch = filter_record_batch(&src.read(i, None)?, &keep)?;
                w.write_row_group(&price_batch(pricing, &batch, &mut day)?)?;
            }
        }
    }
    let mut commit = Commit::default();
    if let Some(w) = writer {
        commit.renames.push(w.finish()?);
        day.files_written = 1;
    }
    day.files_replaced = old.len() as u64;
    commit.deletes = old;
    lake.commit(run_id, &commit)?;
    Ok(day)
}
