//! `meter report`: a month at a glance, for finance. Spend by customer and
//! by model, billed amounts and margin, the month-end projection of a month
//! in progress, the biggest movers against the previous month, unpriced
//! usage and silent VMs; printed as text and written as one self-contained
//! HTML page (and the same figures as JSON) to the out store:
//!
//! ```text
//! <out>/reports/YYYY-MM/report.html     the page: inline CSS and SVG, no script, nothing fetched
//! <out>/reports/YYYY-MM/report.json     the same figures, decimals as strings
//! <out>/reports/YYYY-MM/report-asof-YYYY-MM-DD.html, .json
//!                                       the month so far, as of a day inside it
//! ```
//!
//! A page of a month in progress (`--as-of` a day of the month, or today
//! while it runs) is named after its as-of day, so it never replaces the
//! finished month's page; its billed amounts are billing's preview of the
//! same days, even when the month has a published revision (which covers
//! the whole month and is not comparable with part of it).
//!
//! Sources: the lake's daily aggregates (`schemas/report.sql`), the priced
//! events (reasons of unpriced usage), the raw events (silent VMs,
//! [`crate::read::silent`]), the customers registry, and the latest published
//! invoice revision, or else billing's SQL run on the month so far without
//! publishing ([`read::preview`]). [`figures`] does the arithmetic,
//! [`text`] and [`html`] the rendering. Like `meter reconcile`, the report
//! holds the lake's lock while it runs (a scheduled job started meanwhile
//! exits 3 and is retried; the report takes seconds) and writes its run
//! report to `<lake>/_runs/`; it never changes the lake's data.

pub mod figures;
pub mod format;
pub mod html;
pub mod read;
pub mod text;

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::bill::publish::current_revision;
use crate::lake::Lake;
use crate::lake::store::Store;
use crate::model::ctx::Ctx;
use crate::model::error::{Error, Result};
use crate::model::pricing::Pricing;
use crate::model::registry::Registry;
use crate::model::report::StageReport;
use crate::read::silent;
use crate::rollup::aggregate::API_USAGE;

use figures::{FxRate, Movers, Period, Projection};

pub struct ReportOptions {
    pub lake: PathBuf,
    /// Any day of the month.
    pub month: NaiveDate,
    /// The day the report is made on: days before it are complete.
    /// `None`: today by the context's clock.
    pub as_of: Option<NaiveDate>,
    /// `customers.csv`; `None`: the copy the last ingest kept in the lake.
    pub customers: Option<PathBuf>,
    pub pricing: PathBuf,
    /// Where the page goes (and where the invoices are): a folder or an
    /// object-store URL.
    pub out: String,
    pub store_options: Vec<(String, String)>,
}

/// The store key of a period's page: `reports/YYYY-MM/report.html` for the
/// whole month, `reports/YYYY-MM/report-asof-YYYY-MM-DD.html` for the month
/// so far.
pub fn page_key(period: &Period) -> String {
    format!("{}.html", report_stem(period))
}

/// The store key of a period's figures as JSON (beside its page).
pub fn data_key(period: &Period) -> String {
    format!("{}.json", report_stem(period))
}

fn report_stem(period: &Period) -> String {
    match period.in_progress {
        None => format!("reports/{}/report", period.month()),
        Some(as_of) => format!("reports/{}/report-asof-{as_of}", period.month()),
    }
}

/// Where the billed amounts come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BilledFrom {
    /// The revision `latest.json` names.
    Revision { revision: u32 },
    /// Billing's SQL run on the report's days, unpublished: the month is
    /// not billed yet, or the report covers only part of it.
    Preview {
        /// A month in progress whose revision `latest.json` names: that
        /// revision bills the whole month, so the page does not compare
        /// the days so far with it.
        #[serde(skip_serializing_if = "Option::is_none")]
        published_revision: Option<u32>,
    },
}

/// What a customer is billed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Billed {
    pub currency: String,
    /// Invoice total, net of tax.
    pub total: Decimal,
    /// The total in the report currency.
    pub converted: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerLine {
    /// Empty for usage of VMs no customer lists.
    pub customer_id: String,
    pub name: String,
    pub requests: i64,
    pub tokens: i64,
    /// Provider cost, report currency, exact.
    pub cost: Decimal,
    pub cost_share_percent: Option<Decimal>,
    /// A month in progress: the cost projected to the month's end.
    pub projected_cost: Option<Decimal>,
    /// `None`: not on any invoice.
    pub billed: Option<Billed>,
    /// Billed (converted; 0 when not billed) minus cost.
    pub margin: Decimal,
    pub margin_percent: Option<Decimal>,
    pub unpriced_requests: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelLine {
    pub provider: String,
    pub model: String,
    pub requests: i64,
    pub tokens: i64,
    pub cost: Decimal,
    pub cost_share_percent: Option<Decimal>,
    pub unpriced_requests: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayLine {
    pub date: NaiveDate,
    pub requests: i64,
    pub cost: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnpricedLine {
    pub provider: String,
    pub model: String,
    pub reason: String,
    pub requests: i64,
    pub tokens: i64,
}

/// A run of consecutive days a VM was silent ([`silent::silent_vms`] on each
/// day of the report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SilentSpan {
    pub vm_id: String,
    pub customer_id: String,
    pub last_seen: NaiveDate,
    pub first_silent: NaiveDate,
    pub last_silent: NaiveDate,
    pub days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub requests: i64,
    pub tokens: i64,
    pub cost: Decimal,
    /// Per invoice currency, the invoice totals.
    pub billed: BTreeMap<String, Decimal>,
    /// Every invoice total in the report currency.
    pub revenue: Decimal,
    pub margin: Decimal,
    pub margin_percent: Option<Decimal>,
    pub unpriced_requests: i64,
    pub unpriced_tokens: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Previous {
    pub month: String,
    /// Days of it compared.
    pub days: u32,
    pub rolled_up: bool,
    pub cost: Decimal,
    /// Total cost change, percent; `None` without a previous cost.
    pub change_percent: Option<Decimal>,
}

/// A customer's contract lines, in its invoice currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContractLine {
    pub customer_id: String,
    pub currency: String,
    /// Discounts (0 or less).
    pub discounts: Decimal,
    /// The minimum commitment's true-up.
    pub commitment: Decimal,
    /// Prepaid credit applied (0 or less).
    pub credit: Decimal,
    pub total: Decimal,
}

/// The month's figures: what the text, the page and `report.json` show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overview {
    pub month: String,
    pub period: Period,
    /// pricing.toml's `currency`: provider costs, margins and the
    /// projection are in it.
    pub currency: String,
    pub billed_from: BilledFrom,
    /// Invoice currency -> report currency, on the month's last day.
    pub fx: Vec<FxRate>,
    pub totals: Totals,
    pub projection: Option<Projection>,
    pub customers: Vec<CustomerLine>,
    pub models: Vec<ModelLine>,
    pub days: Vec<DayLine>,
    pub previous: Previous,
    pub customer_movers: Movers,
    pub model_movers: Movers,
    pub unpriced: Vec<UnpricedLine>,
    pub silent_vms: Vec<SilentSpan>,
    /// Customers whose invoices have contract lines (schemas/contracts.md).
    pub contracts: Vec<ContractLine>,
    /// Prepaid credit grants: their month's balances.
    pub credits: Vec<read::CreditLine>,
    pub attention: Vec<String>,
    pub notices: Vec<String>,
}

impl Overview {
    /// The rows of the contract lines table (text and page): customer,
    /// discounts, commitment true-up, credit applied, billed.
    pub fn contract_rows(&self) -> Vec<Vec<String>> {
        use format::money;
        self.contracts
            .iter()
            .map(|l| {
                vec![
                    l.customer_id.clone(),
                    money(l.discounts, &l.currency),
                    money(l.commitment, &l.currency),
                    money(l.credit, &l.currency),
                    money(l.total, &l.currency),
                ]
            })
            .collect()
    }

    /// The rows of the prepaid credit table: customer, grant, opening,
    /// applied, expired, closing, status.
    pub fn credit_rows(&self) -> Vec<Vec<String>> {
        use format::money;
        self.credits
            .iter()
            .map(|g| {
                vec![
                    g.customer_id.clone(),
                    g.grant_id.clone(),
                    money(g.opening, &g.currency),
                    money(g.applied, &g.currency),
                    money(g.expired, &g.currency),
                    money(g.closing, &g.currency),
                    g.status.clone(),
                ]
            })
            .collect()
    }

    /// A customer's display name: the registry's, else its id.
    pub fn customer_name(&self, id: &str) -> String {
        self.customers
            .iter()
            .find(|c| c.customer_id == id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| id.to_string())
    }
}

/// The run report of `meter report`.
#[derive(Debug, Serialize)]
pub struct OverviewReport {
    pub job: &'static str,
    pub run_id: String,
    pub lake: String,
    pub page: String,
    pub data: String,
    /// `written`, or `unchanged` when the store already held these bytes.
    pub status: &'static str,
    pub overview: Overview,
}

impl OverviewReport {
    pub fn needs_attention(&self) -> bool {
        !self.overview.attention.is_empty()
    }

    /// Plain text: the notes' `code` spans lose their backticks.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "report {} {}: page {} at {}\n",
            self.run_id, self.overview.month, self.status, self.page
        );
        for n in &self.overview.notices {
            s += &format!("  notice: {}\n", format::plain(n));
        }
        for a in &self.overview.attention {
            s += &format!("  attention: {}\n", format::plain(a));
        }
        s
    }
}

impl StageReport for OverviewReport {
    fn run_id(&self) -> &str {
        &self.run_id
    }
    fn summary(&self) -> String {
        OverviewReport::summary(self)
    }
    fn needs_attention(&self) -> bool {
        OverviewReport::needs_attention(self)
    }
}

/// Computes the month's figures and writes the page and its JSON.
pub fn run(ctx: &Ctx, opts: &ReportOptions) -> Result<OverviewReport> {
    let pricing = crate::load::pricing(&opts.pricing)?;
    let lake = Lake::open_read(&opts.lake)?;
    let store = Store::open_configured(&opts.out, &opts.store_options)?;
    let overview = compute(ctx, &lake, &store, &pricing, opts)?;
    let (page_at, data_at) = (page_key(&overview.period), data_key(&overview.period));
    let page = html::page(&overview).into_bytes();
    let mut data = serde_json::to_vec_pretty(&overview).expect("the figures serialize");
    data.push(b'\n');
    let mut changed = false;
    for (key, bytes) in [(&data_at, data), (&page_at, page)] {
        if store.get(key)?.as_deref() != Some(bytes.as_slice()) {
            store.put(key, bytes)?;
            changed = true;
        }
    }
    let report = OverviewReport {
        job: "report",
        run_id: ctx.run_id.clone(),
        lake: opts.lake.display().to_string(),
        page: store.object_url(&page_at),
        data: store.object_url(&data_at),
        status: if changed { "written" } else { "unchanged" },
        overview,
    };
    let json = serde_json::to_string_pretty(&report).expect("the report serializes");
    lake.write_report(&ctx.run_id, &json)?;
    Ok(report)
}

/// The month's figures, read from the lake and the store.
pub fn compute(
    ctx: &Ctx,
    lake: &Lake,
    store: &Store,
    pricing: &Pricing,
    opts: &ReportOptions,
) -> Result<Overview> {
    let as_of = opts.as_of.unwrap_or_else(|| ctx.clock.now().date_naive());
    let label = opts.month.format("%Y-%m").to_string();
    let period = Period::of(opts.month, as_of).ok_or_else(|| Error::Report {
        month: label.clone(),
        message: format!("the month has no complete day on {as_of}"),
        hint: "report on a month that has begun: the as-of day itself is still in progress (--as-of)",
    })?;
    let month = period.month();
    let figures = read::lake_figures(lake, &period)?;
    // A month without events has no daily partition but, once rolled up, a
    // (possibly empty) monthly one: that is a month of no usage, not one
    // that was never rolled up.
    let month_rolled_up = !lake
        .parquet_files(&API_USAGE.monthly_dir(lake, opts.month))?
        .is_empty();
    if figures.days_not_rolled_up.len() == period.complete_days as usize && !month_rolled_up {
        return Err(Error::Report {
            month,
            message: format!(
                "no day of it is rolled up in {}: run `meter rollup --lake {} --month {label}` first",
                lake.root().display(),
                lake.root().display()
            ),
            hint: "roll the month up (the nightly job does so day by day), then report again",
        });
    }

    let (registry, problems) = lake.customers(opts.customers.as_deref())?;
    let mut notices: Vec<String> = problems
        .iter()
        .map(|p| format!("customers.csv row skipped: {p}"))
        .collect();
    let mut attention = Vec::new();

    // Like with like: a whole month against its latest revision; the month
    // so far against billing's preview of the same days, never against a
    // revision, which bills the whole month.
    let published = match period.in_progress {
        None => read::published(store, &month)?,
        Some(_) => None,
    };
    let (billed_from, invoices, credits) = match published {
        Some((revision, invoices)) => (
            BilledFrom::Revision { revision },
            invoices,
            read::published_credits(store, &month, revision)?,
        ),
        None => {
            // The contracts billing would apply, with the balances of the
            // month before's approved revision.
            let mut contracted = crate::bill::inputs::ContractInputs::default();
            if let Some((contracts, problems)) = crate::bill::checked_contracts(
                lake,
                None,
                opts.customers.as_deref(),
                &registry,
                pricing,
                period.start,
            )? {
                notices.extend(problems.iter().map(|p| format!("contract refused: {p}")));
                if !contracts.credits.is_empty() {
                    let openings = crate::bill::openings(store, period.start)?;
                    notices.extend(openings.attention.iter().cloned());
                    contracted.openings = openings;
                }
                contracted.contracts = contracts;
            }
            let (invoices, refused, credits) =
                read::preview(lake, &period, &registry, pricing, &contracted)?;
            for (customer, why) in refused {
                notices.push(format!("customer {customer} would not be billed: {why}"));
            }
            let published_revision = match period.in_progress {
                Some(_) => current_revision(store, &month)?,
                None => None,
            };
            notices.push(match (period.in_progress, published_revision) {
                (Some(as_of), Some(revision)) => format!(
                    "{month} is billed (rev-{revision}, the whole month), but this page is as of {as_of}: \
                     billed amounts are a preview, billing's rules run on the same {} days as the costs \
                     (whole-month subscription fees), not the invoices; \
                     the whole month's page (`meter report --month {month}` once it is over) compares with them",
                    period.complete_days
                ),
                (Some(_), None) => format!(
                    "{month} is not billed yet (no invoices under {}): billed amounts are a preview, \
                     billing's rules run on the month so far (whole-month subscription fees) without publishing",
                    store.url()
                ),
                (None, _) => format!(
                    "{month} is not billed yet (no invoices under {}): billed amounts are a preview, \
                     billing's rules run on the month without publishing",
                    store.url()
                ),
            });
            (
                BilledFrom::Preview { published_revision },
                invoices,
                credits,
            )
        }
    };
    let contracts: Vec<ContractLine> = invoices
        .iter()
        .filter(|i| !(i.discounts.is_zero() && i.commitment.is_zero() && i.credit.is_zero()))
        .map(|i| ContractLine {
            customer_id: i.customer_id.clone(),
            currency: i.currency.clone(),
            discounts: i.discounts,
            commitment: i.commitment,
            credit: i.credit,
            total: i.total,
        })
        .collect();

    // FX into the report currency, at billing's rates for the month.
    let mut fx: BTreeMap<String, FxRate> = BTreeMap::new();
    for inv in &invoices {
        if !fx.contains_key(&inv.currency) {
            let rate = figures::fx_rate(
                pricing,
                &inv.currency,
                &pricing.currency,
                period.last_day(),
            )
            .map_err(|message| Error::Report {
                month: month.clone(),
                message,
                hint: "add the rate to pricing.toml [[fx]] (either direction), then report again",
            })?;
            fx.insert(inv.currency.clone(), rate);
        }
    }
    let invoiced: BTreeMap<&str, &read::Invoiced> = invoices
        .iter()
        .map(|i| (i.customer_id.as_str(), i))
        .collect();

    let total_cost: Decimal = figures.customers.values().map(|u| u.cost).sum();
    let projection = period
        .in_progress
        .and_then(|_| figures::project(total_cost, period.complete_days, period.days_in_month));
    let names: BTreeMap<&str, &str> = registry
        .customers
        .iter()
        .map(|c| (&*c.customer_id, c.name.as_str()))
        .collect();
    let mut ids: Vec<&str> = figures.customers.keys().map(String::as_str).collect();
    ids.extend(invoiced.keys().copied());
    ids.sort_unstable();
    ids.dedup();
    let mut customers = Vec::new();
    for id in ids {
        let usage = figures.customers.get(id).cloned().unwrap_or_default();
        let billed = invoiced.get(id).map(|inv| Billed {
            currency: inv.currency.clone(),
            total: inv.total,
            converted: fx[&inv.currency].convert(inv.total),
        });
        let revenue = billed.as_ref().map(|b| b.converted).unwrap_or_default();
        let margin = revenue - usage.cost;
        customers.push(CustomerLine {
            customer_id: id.to_string(),
            name: match id {
                "" => "(VMs no customer lists)".to_string(),
                id => names.get(id).copied().unwrap_or(id).to_string(),
            },
            requests: usage.requests,
            tokens: usage.tokens,
            cost: usage.cost,
            cost_share_percent: figures::percent(usage.cost, total_cost),
            projected_cost: period.in_progress.and_then(|_| {
                figures::project(usage.cost, period.complete_days, period.days_in_month)
                    .map(|p| p.month_end)
            }),
            billed,
            margin,
            margin_percent: figures::percent(margin, revenue),
            unpriced_requests: usage.unpriced_requests,
        });
    }
    // Largest cost first; the order is total, ties by id.
    customers.sort_by(|a, b| b.cost.cmp(&a.cost).then(a.customer_id.cmp(&b.customer_id)));

    if let BilledFrom::Revision { revision } = billed_from {
        for inv in &invoices {
            let lake_cost = figures
                .customers
                .get(&inv.customer_id)
                .map(|u| u.cost)
                .unwrap_or_default();
            if lake_cost != inv.provider_cost {
                notices.push(format!(
                    "invoice rev-{revision} of {} was billed on a provider cost of {} {}, the lake now holds {} {}: \
                     `meter bill --month {month}` writes the next revision",
                    inv.customer_id,
                    inv.provider_cost.normalize(),
                    pricing.currency,
                    lake_cost.normalize(),
                    pricing.currency
                ));
            }
        }
    }
    if let Some(u) = figures.customers.get("") {
        notices.push(format!(
            "{} requests ({}) come from VMs no customer lists: they are on no invoice",
            format::count(u.requests),
            format::money(u.cost, &pricing.currency)
        ));
    }

    let mut models: Vec<ModelLine> = figures
        .models
        .iter()
        .map(|((provider, model), u)| ModelLine {
            provider: provider.clone(),
            model: model.clone(),
            requests: u.requests,
            tokens: u.tokens,
            cost: u.cost,
            cost_share_percent: figures::percent(u.cost, total_cost),
            unpriced_requests: u.unpriced_requests,
        })
        .collect();
    models.sort_by(|a, b| {
        b.cost
            .cmp(&a.cost)
            .then_with(|| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)))
    });

    let days = period
        .days()
        .map(|date| {
            let (requests, cost) = figures.days.get(&date).copied().unwrap_or_default();
            DayLine {
                date,
                requests,
                cost,
            }
        })
        .collect();
    if !figures.days_not_rolled_up.is_empty() {
        let list: Vec<String> = figures
            .days_not_rolled_up
            .iter()
            .map(|d| d.to_string())
            .collect();
        notices.push(format!(
            "{} day(s) have no daily rollup and count as no usage: {} (`meter rollup --date D` if usage is missing)",
            list.len(),
            list.join(", ")
        ));
    }

    let model_key = |(p, m): &(String, String)| format!("{p}/{m}");
    let current_customers: BTreeMap<String, Decimal> = figures
        .customers
        .iter()
        .map(|(k, u)| (k.clone(), u.cost))
        .collect();
    let current_models: BTreeMap<String, Decimal> = figures
        .models
        .iter()
        .map(|(k, u)| (model_key(k), u.cost))
        .collect();
    let previous_models: BTreeMap<String, Decimal> = figures
        .previous_models
        .iter()
        .map(|(k, c)| (model_key(k), *c))
        .collect();
    let previous_cost: Decimal = figures.previous_customers.values().sum();
    let previous = Previous {
        month: period.previous_month(),
        days: period.previous_days,
        rolled_up: figures.previous_rolled_up,
        cost: previous_cost,
        change_percent: figures::percent(total_cost - previous_cost, previous_cost),
    };
    if !previous.rolled_up {
        notices.push(format!(
            "no rolled-up usage for {} in the lake: every cost counts as new",
            previous.month
        ));
    }
    let customer_movers = figures::movers(
        &current_customers,
        &figures.previous_customers,
        figures::MOVERS,
    );
    let model_movers = figures::movers(&current_models, &previous_models, figures::MOVERS);

    let unpriced: Vec<UnpricedLine> = figures
        .unpriced
        .iter()
        .map(|u| UnpricedLine {
            provider: u.provider.clone(),
            model: u.model.clone(),
            reason: u.reason.clone().unwrap_or_else(|| {
                "unknown: the priced events are no longer in the lake".to_string()
            }),
            requests: u.requests,
            tokens: u.tokens,
        })
        .collect();
    let unpriced_requests: i64 = unpriced.iter().map(|u| u.requests).sum();
    let unpriced_tokens: i64 = unpriced.iter().map(|u| u.tokens).sum();
    if unpriced_requests > 0 {
        let mut per_model: BTreeMap<String, i64> = BTreeMap::new();
        for u in &unpriced {
            *per_model.entry(u.model.clone()).or_default() += u.requests;
        }
        let list: Vec<String> = per_model
            .iter()
            .map(|(m, n)| format!("{m} ({} requests)", format::count(*n)))
            .collect();
        attention.push(format!(
            "{} requests ({} tokens) have no price and are billed to nobody: {}; \
             add the prices to pricing.toml, then rerun rollup and bill",
            format::count(unpriced_requests),
            format::count(unpriced_tokens),
            list.join(", ")
        ));
    }

    let silent_vms = silent_spans(lake, &period, &registry, &mut notices)?;
    for s in &silent_vms {
        let customer = match s.customer_id.as_str() {
            "" => "no customer attributed".to_string(),
            c => format!("customer {c}"),
        };
        attention.push(format!(
            "silent VM {} ({customer}): no events {}, last seen {}; check its log shipping, or whether it was stopped",
            s.vm_id,
            match s.days {
                1 => format!("on {}", s.first_silent),
                n => format!("from {} to {} ({n} days)", s.first_silent, s.last_silent),
            },
            s.last_seen
        ));
    }

    let mut billed: BTreeMap<String, Decimal> = BTreeMap::new();
    for inv in &invoices {
        *billed.entry(inv.currency.clone()).or_default() += inv.total;
    }
    let revenue: Decimal = customers
        .iter()
        .filter_map(|c| c.billed.as_ref().map(|b| b.converted))
        .sum();
    let margin = revenue - total_cost;
    let totals = Totals {
        requests: figures.customers.values().map(|u| u.requests).sum(),
        tokens: figures.customers.values().map(|u| u.tokens).sum(),
        cost: total_cost,
        billed,
        revenue,
        margin,
        margin_percent: figures::percent(margin, revenue),
        unpriced_requests,
        unpriced_tokens,
    };
    Ok(Overview {
        month,
        period,
        currency: pricing.currency.clone(),
        billed_from,
        fx: fx.into_values().filter(|r| r.from != r.to).collect(),
        totals,
        projection,
        customers,
        models,
        days,
        previous,
        customer_movers,
        model_movers,
        unpriced,
        silent_vms,
        contracts,
        credits,
        attention,
        notices,
    })
}

/// The VMs silent on some day of the period, as runs of consecutive days.
/// VMs of a customer cancelled by the end of the day are expected to be
/// quiet: noted once, not counted.
fn silent_spans(
    lake: &Lake,
    period: &Period,
    registry: &Registry,
    notices: &mut Vec<String>,
) -> Result<Vec<SilentSpan>> {
    let mut spans: Vec<SilentSpan> = Vec::new();
    let mut expected: BTreeMap<String, (String, String)> = BTreeMap::new();
    for day in period.days() {
        let day_end = (day + chrono::Days::new(1))
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc();
        for vm in silent::silent_vms(lake, day)? {
            let cancelled = registry
                .customers
                .iter()
                .find(|c| *c.customer_id == *vm.customer_id)
                .and_then(|c| c.cancelled_at)
                .filter(|t| *t <= day_end);
            if let Some(t) = cancelled {
                expected
                    .entry(vm.vm_id.clone())
                    .or_insert((vm.customer_id.clone(), t.to_rfc3339()));
                continue;
            }
            let previous_day = day.pred_opt().expect("in range");
            match spans.iter_mut().find(|s| {
                s.vm_id == vm.vm_id && s.last_silent == previous_day && s.last_seen == vm.last_seen
            }) {
                Some(s) => {
                    s.last_silent = day;
                    s.days += 1;
                }
                None => spans.push(SilentSpan {
                    vm_id: vm.vm_id.clone(),
                    customer_id: vm.customer_id.clone(),
                    last_seen: vm.last_seen,
                    first_silent: day,
                    last_silent: day,
                    days: 1,
                }),
            }
        }
    }
    for (vm, (customer, at)) in expected {
        notices.push(format!(
            "VM {vm} fell silent as expected: customer {customer} cancelled at {at}"
        ));
    }
    spans.sort_by(|a, b| (&a.vm_id, a.first_silent).cmp(&(&b.vm_id, b.first_silent)));
    Ok(spans)
}
