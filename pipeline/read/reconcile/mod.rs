//! `meter reconcile`: the month's totals recomputed at every stage with plain
//! DuckDB SQL (`schemas/reconcile.sql`), from the raw events through priced
//! events, daily and monthly aggregates to the latest invoices, and compared.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::NaiveDate;
use duckdb::Connection;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::bill::inputs::month_bounds;
use crate::bill::publish::current_revision;
use crate::bill::sql::{db_err, decimal};
use crate::lake::Lake;
use crate::lake::duck;
use crate::lake::store::Store;
use crate::lake::tables::Table;
use crate::model::ctx::Ctx;
use crate::model::error::Result;
use crate::rollup::aggregate::{ACTIVITY, API_USAGE, RESOURCE_USAGE, Spec};
use crate::rollup::priced::PRICED_API_USAGE;

mod revision;

pub use revision::Problem;

const SQL: &str = include_str!("../../../schemas/reconcile.sql");

pub struct ReconcileOptions {
    pub lake: PathBuf,
    pub month: NaiveDate,
    /// Where the invoices are (as for `meter bill --out`).
    pub out: String,
    pub store_options: Vec<(String, String)>,
}

/// One comparison of a stage with its source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub source: String,
    pub stage: String,
    pub customer_id: String,
    pub measure: String,
    pub source_value: Decimal,
    pub stage_value: Decimal,
    pub difference: Decimal,
}

#[derive(Debug, Serialize)]
pub struct ReconcileReport {
    pub job: &'static str,
    pub run_id: String,
    pub month: String,
    /// The invoice revision compared, if the month is billed.
    pub revision: Option<u32>,
    pub comparisons: Vec<Comparison>,
    /// The revision the latest one's corrections compare with, if it has
    /// corrections.
    pub previous_revision: Option<u32>,
    /// What is wrong with the published revision: an invoice that does not
    /// add up, a summary that disagrees with it, corrections that are not
    /// the difference between the two revisions, a file changed since
    /// publication. Each names the file and the customer.
    pub revision_checks: Vec<Problem>,
    pub attention: Vec<String>,
    pub notices: Vec<String>,
}

crate::model::report::stage_report!(ReconcileReport);

impl ReconcileReport {
    pub fn mismatches(&self) -> impl Iterator<Item = &Comparison> {
        self.comparisons.iter().filter(|c| !c.difference.is_zero())
    }

    pub fn needs_attention(&self) -> bool {
        !self.attention.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "reconcile {} {}: {} comparisons, {} mismatches{}\n",
            self.run_id,
            self.month,
            self.comparisons.len(),
            self.mismatches().count(),
            self.revision
                .map(|r| format!(", invoices rev-{r}"))
                .unwrap_or_default()
        );
        for n in &self.notices {
            s += &format!("  notice: {n}\n");
        }
        for a in &self.attention {
            s += &format!("  attention: {a}\n");
        }
        s
    }

    /// Per stage pair and measure: customers compared, both sums and the
    /// difference; then every mismatching customer.
    pub fn table(&self) -> String {
        let mut rows: Vec<[String; 7]> = Vec::new();
        // (measure, source, stage) -> (customers, source sum, stage sum, mismatches)
        let mut groups: BTreeMap<(String, String, String), Group> = BTreeMap::new();
        for c in &self.comparisons {
            let g = groups
                .entry((c.measure.clone(), c.source.clone(), c.stage.clone()))
                .or_default();
            g.0 += 1;
            g.1 += c.source_value;
            g.2 += c.stage_value;
            g.3 += usize::from(!c.difference.is_zero());
        }
        for ((measure, source, stage), (n, a, b, bad)) in groups {
            rows.push([
                measure,
                format!("{source} -> {stage}"),
                n.to_string(),
                a.normalize().to_string(),
                b.normalize().to_string(),
                (b - a).normalize().to_string(),
                if bad == 0 {
                    "ok".into()
                } else {
                    format!("{bad} MISMATCH")
                },
            ]);
        }
        let header = [
            "measure",
            "stages",
            "customers",
            "source",
            "stage",
            "difference",
            "status",
        ];
        let mut out = render_table(&header, &rows);
        let bad: Vec<[String; 7]> = self
            .mismatches()
            .map(|c| {
                [
                    c.measure.clone(),
                    format!("{} -> {}", c.source, c.stage),
                    if c.customer_id.is_empty() {
                        "(no customer)".into()
                    } else {
                        c.customer_id.clone()
                    },
                    c.source_value.normalize().to_string(),
                    c.stage_value.normalize().to_string(),
                    c.difference.normalize().to_string(),
                    "MISMATCH".into(),
                ]
            })
            .collect();
        if !bad.is_empty() {
            out.push('\n');
            out += &render_table(
                &[
                    "measure",
                    "stages",
                    "customer",
                    "source",
                    "stage",
                    "difference",
                    "status",
                ],
                &bad,
            );
        }
        if !self.revision_checks.is_empty() {
            out += &format!(
                "\nrev-{} does not add up ({} problems):\n",
                self.revision.unwrap_or_default(),
                self.revision_checks.len()
            );
            for p in &self.revision_checks {
                out += &format!("  {p}\n");
            }
        }
        out
    }
}

type Group = (usize, Decimal, Decimal, usize);

fn render_table(header: &[&str; 7], rows: &[[String; 7]]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            // text left, numbers right
            if (3..6).contains(&i) || i == 2 && c.bytes().all(|b| b.is_ascii_digit()) {
                s += &format!("{c:>w$}  ");
            } else {
                s += &format!("{c:<w$}  ");
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out += &line(r.iter().map(String::as_str).collect());
    }
    out
}

/// Compares every stage of a month with its source.
pub fn run(ctx: &Ctx, opts: &ReconcileOptions) -> Result<ReconcileReport> {
    let lake = Lake::open_read(&opts.lake)?;
    let (start, end, _) = month_bounds(opts.month);
    let month = start.format("%Y-%m").to_string();
    let conn = Connection::open_in_memory().map_err(db_err("opening DuckDB"))?;
    let days: Vec<NaiveDate> = start.iter_days().take_while(|d| *d < end).collect();
    let dated = |rel: &str| {
        days.iter()
            .map(|d| lake.dated_dir(rel, *d))
            .collect::<Vec<_>>()
    };
    let daily = |spec: Spec| {
        days.iter()
            .map(|d| spec.daily_dir(&lake, *d))
            .collect::<Vec<_>>()
    };
    let monthly = |spec: Spec| vec![spec.monthly_dir(&lake, start)];
    let api_columns = "customer_id VARCHAR, requests BIGINT, input_tokens BIGINT, cache_read_tokens BIGINT, \
                       cache_write_tokens BIGINT, output_tokens BIGINT, cost DECIMAL(38, 18)";
    let views: [(&str, Vec<PathBuf>, &str); 9] = [
        ("raw_api_usage", dated(Table::ApiUsage.name()), api_columns),
        ("priced_api_usage", dated(PRICED_API_USAGE), api_columns),
        ("daily_api_usage", daily(API_USAGE), api_columns),
        ("monthly_api_usage", monthly(API_USAGE), api_columns),
        (
            "raw_activity",
            dated(Table::Activity.name()),
            "customer_id VARCHAR",
        ),
        (
            "daily_activity",
            daily(ACTIVITY),
            "customer_id VARCHAR, count BIGINT",
        ),
        (
            "monthly_activity",
            monthly(ACTIVITY),
            "customer_id VARCHAR, count BIGINT",
        ),
        (
            "daily_resource_usage",
            daily(RESOURCE_USAGE),
            "customer_id VARCHAR, compute_seconds BIGINT",
        ),
        (
            "monthly_resource_usage",
            monthly(RESOURCE_USAGE),
            "customer_id VARCHAR, compute_seconds BIGINT",
        ),
    ];
    for (name, dirs, empty) in views {
        let files = lake.parquet_files_of(&dirs)?;
        // Only the columns of the empty table, which are all the SQL uses.
        let columns = duck::column_names(empty);
        let read = duck::Read {
            columns: Some(&columns),
            empty: Some(empty),
            ..duck::Read::default()
        };
        duck::register(&conn, &lake, name, &files, &read)?;
    }

    let mut report = ReconcileReport {
        job: "reconcile",
        run_id: ctx.run_id.clone(),
        month: month.clone(),
        revision: None,
        comparisons: Vec::new(),
        previous_revision: None,
        revision_checks: Vec::new(),
        attention: Vec::new(),
        notices: Vec::new(),
    };
    conn.execute_batch(
        "CREATE TABLE invoiced (customer_id VARCHAR, provider_cost DECIMAL(38, 18))",
    )
    .map_err(db_err("invoiced"))?;
    let store = Store::open_configured(&opts.out, &opts.store_options)?;
    match current_revision(&store, &month)? {
        None => report.notices.push(format!(
            "no invoices for {month} under {}: the invoice stage is not compared",
            store.url()
        )),
        Some(revision) => {
            report.revision = Some(revision);
            let checked = revision::check(&store, &month, revision)?;
            for (customer, cost) in &checked.provider_costs {
                conn.execute(
                    "INSERT INTO invoiced VALUES (?, CAST(? AS DECIMAL(38, 18)))",
                    duckdb::params![customer, cost.to_string()],
                )
                .map_err(db_err("invoiced"))?;
            }
            report.notices.push(match checked.previous_revision {
                Some(p) => format!(
                    "rev-{revision}: {} invoices; its corrections against rev-{p} checked ({})",
                    checked.invoices,
                    checked
                        .derived
                        .iter()
                        .map(|u| u.rsplit('/').next().unwrap_or(u))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => format!("rev-{revision}: {} invoices checked", checked.invoices),
            });
            report.previous_revision = checked.previous_revision;
            report.revision_checks = checked.problems;
        }
    }

    conn.execute_batch(SQL)
        .map_err(db_err("schemas/reconcile.sql"))?;
    let mut stmt = conn
        .prepare(
            "SELECT source, stage, customer_id, measure, source_value, stage_value, difference \
             FROM differences",
        )
        .map_err(db_err("differences"))?;
    report.comparisons = stmt
        .query_map([], |r| {
            Ok(Comparison {
                source: r.get(0)?,
                stage: r.get(1)?,
                customer_id: r.get(2)?,
                measure: r.get(3)?,
                source_value: decimal(r.get(4)?)?,
                stage_value: decimal(r.get(5)?)?,
                difference: decimal(r.get(6)?)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(db_err("differences"))?;
    let mismatches = report.mismatches().count();
    if mismatches > 0 {
        report.attention.push(format!(
            "{mismatches} totals differ between stages: rebuild the month (ingest --rebuild, rollup, bill) and reconcile again"
        ));
    }
    for p in &report.revision_checks {
        report.attention.push(p.to_string());
    }
    let json = serde_json::to_string_pretty(&report).expect("the report serializes");
    lake.write_report(&ctx.run_id, &json)?;
    Ok(report)
}
