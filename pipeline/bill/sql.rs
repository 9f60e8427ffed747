//! The billing SQL files (`schemas/billing/*.sql`), embedded in the binary,
//! and running them in DuckDB.

use duckdb::Connection;
use rust_decimal::Decimal;

use crate::model::error::{Error, Result};

/// The files, in the order they run.
pub const FILES: [(&str, &str); 4] = [
    (
        "inputs.sql",
        include_str!("../../schemas/billing/inputs.sql"),
    ),
    (
        "invoice.sql",
        include_str!("../../schemas/billing/invoice.sql"),
    ),
    (
        "summary.sql",
        include_str!("../../schemas/billing/summary.sql"),
    ),
    (
        "meter_events.sql",
        include_str!("../../schemas/billing/meter_events.sql"),
    ),
];

/// The tables the billing SQL creates, which meter reads back.
pub const OUTPUT_TABLES: [&str; 6] = [
    "billed_customers",
    "api_usage_lines",
    "invoice_lines",
    "billing_summary",
    "meter_events",
    "unbilled_usage",
];

/// An error mapper naming what DuckDB was doing.
pub fn db_err(context: &str) -> impl FnOnce(duckdb::Error) -> Error + '_ {
    move |source| Error::DuckDb {
        context: context.to_string(),
        source,
    }
}

/// A DuckDB DECIMAL as a `rust_decimal` value, exactly; one that needs more
/// than 28 significant digits is a conversion error, never a rounding.
pub fn decimal(v: duckdb::types::Decimal) -> duckdb::Result<Decimal> {
    let text = v.to_string();
    text.parse::<Decimal>()
        .or_else(|e| {
            // DECIMAL(38, 18) prints 18 places: without the trailing zeros,
            // which carry no value, a large number may still fit.
            let trimmed = text.trim_end_matches('0').trim_end_matches('.');
            match text.contains('.') {
                true => trimmed.parse::<Decimal>(),
                false => Err(e),
            }
        })
        .map_err(|e| {
            duckdb::Error::FromSqlConversionFailure(0, duckdb::types::Type::Decimal, Box::new(e))
        })
}

/// [`decimal`] of a nullable column.
pub fn opt_decimal(v: Option<duckdb::types::Decimal>) -> duckdb::Result<Option<Decimal>> {
    v.map(decimal).transpose()
}

/// Runs one of [`FILES`] by name.
pub fn run_file(conn: &Connection, name: &str) -> Result<()> {
    let (_, text) = FILES
        .iter()
        .find(|(n, _)| *n == name)
        .expect("a known billing SQL file");
    conn.execute_batch(text)
        .map_err(db_err(&format!("schemas/billing/{name}")))
}

/// Runs the billing proper, after the inputs are loaded.
pub fn run_billing(conn: &Connection) -> Result<()> {
    for (name, _) in &FILES[1..] {
        run_file(conn, name)?;
    }
    Ok(())
}

/// Column names and DuckDB types of a table.
pub fn column_types(conn: &Connection, table: &str) -> Result<Vec<(String, String)>> {
    let mut stmt = conn
        .prepare(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_name = ? ORDER BY ordinal_position",
        )
        .map_err(db_err("information_schema"))?;
    let rows = stmt
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db_err("information_schema"))?;
    rows.collect::<duckdb::Result<Vec<_>>>()
        .map_err(db_err("information_schema"))
}
