//! The billing stage: monthly aggregates -> invoices and Stripe meter events,
//! written as revisions to object storage.
//!
//! The billing rules are SQL (`schemas/billing/*.sql`), run in an embedded
//! DuckDB over input tables this module fills ([`inputs`]); [`render`] turns
//! the result into files and [`publish`] writes them as `rev-N`.
//!
//! ```text
//! <out>/invoices/YYYY-MM/rev-N/<customer_id>.csv
//! <out>/invoices/YYYY-MM/rev-N/summary.csv
//! <out>/stripe/YYYY-MM/rev-N/meter_events.jsonl
//! <out>/stripe/YYYY-MM/rev-N/meter_event_stream/NNNN.json
//! <out>/invoices/YYYY-MM/rev-N/_manifest.json      written after the files it lists
//! <out>/invoices/YYYY-MM/latest.json               written last
//! ```

pub mod approve;
pub mod credits;
pub mod diff;
pub mod inputs;
pub mod layout;
pub mod notes;
pub mod publish;
pub mod render;
pub mod sql;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use duckdb::Connection;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::lake::Lake;
use crate::lake::store::Store;
use crate::model::contracts::Contracts;
use crate::model::ctx::Ctx;
use crate::model::error::{Error, Result};
use crate::model::pricing::Pricing;
use crate::model::registry::Registry;

use render::{InvoiceLine, MeterEvent, Period, SummaryRow};
use sql::{db_err, decimal, opt_decimal};

/// At most this many events per `/v2/billing/meter_event_stream` body.
pub const STREAM_BATCH: usize = 100;

pub struct BillOptions {
    pub lake: PathBuf,
    /// Any day of the month to bill.
    pub month: NaiveDate,
    /// `customers.csv`; `None`: the copy the last ingest saved in the lake.
    pub customers: Option<PathBuf>,
    /// `contracts.toml`; `None`: the one beside `customers` if there is
    /// one, or else the lake's copy beside its registry copy.
    pub contracts: Option<PathBuf>,
    pub pricing: PathBuf,
    /// Where outputs go: a folder, or an `s3://`, `gs://`, `az://` URL.
    pub out: String,
    /// Store configuration (endpoint, keys); empty: the standard environment
    /// variables.
    pub store_options: Vec<(String, String)>,
}

/// The tables the billing SQL produced, read back.
#[derive(Debug, Default)]
pub struct Billing {
    pub lines: Vec<InvoiceLine>,
    pub summary: Vec<SummaryRow>,
    pub events: Vec<MeterEvent>,
    pub unbilled: Vec<Unbilled>,
    /// Prepaid credit grants' month, in customer and burn order.
    pub credits: Vec<render::CreditBalance>,
    /// Contract customers' daily readings not written as meter events,
    /// counted per customer.
    pub contract_readings: Vec<(String, i64)>,
    /// Customers with a contract (terms, a discount or prepaid credit) this
    /// month: priced by meter alone, their invoices go to Stripe as meter's
    /// invoices (`invoices.jsonl`), never as meter events.
    pub contract_customers: std::collections::BTreeSet<String>,
}

/// Usage no invoiced customer owns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unbilled {
    pub customer_id: String,
    pub vm_id: String,
    pub requests: i64,
    pub tokens: i64,
    pub cost: Decimal,
    pub compute_seconds: i64,
}

#[derive(Debug, Serialize)]
pub struct InvoiceReport {
    pub customer_id: String,
    pub invoice_number: String,
    pub currency: String,
    pub total: String,
    pub rule: String,
    pub limit_exceeded: bool,
}

#[derive(Debug, Serialize)]
pub struct BillReport {
    pub job: &'static str,
    pub run_id: String,
    pub started_at: String,
    pub finished_at: String,
    pub lake: String,
    pub month: String,
    pub out: String,
    /// `published` (a new revision) or `unchanged` (the current one stands).
    pub status: String,
    pub revision: u32,
    pub previous_revision: Option<u32>,
    pub customers_invoiced: usize,
    pub invoices: Vec<InvoiceReport>,
    /// Per currency, the sum of the invoice totals.
    pub totals: BTreeMap<String, String>,
    pub meter_events: usize,
    pub meter_events_withheld: usize,
    pub objects: Vec<publish::Object>,
    pub unbilled_usage: Vec<Unbilled>,
    /// A new revision's change against the previous one.
    pub changes: Option<diff::RevisionDiff>,
    /// The credit and debit notes the revision writes (`notes/`), one line
    /// each: number, kind, difference, the invoice it is against, how it
    /// reaches Stripe.
    pub notes: Vec<String>,
    pub attention: Vec<String>,
    pub notices: Vec<String>,
}

crate::model::report::stage_report!(BillReport);

impl BillReport {
    pub fn needs_attention(&self) -> bool {
        !self.attention.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "bill {} {}: {} revision {} at {}/invoices/{}/rev-{}\n",
            self.run_id,
            self.month,
            self.status,
            self.revision,
            self.out,
            self.month,
            self.revision
        );
        s += &format!(
            "  {} invoices, {} Stripe meter events",
            self.customers_invoiced, self.meter_events
        );
        for (currency, total) in &self.totals {
            s += &format!(", {total} {currency}");
        }
        s.push('\n');
        if let Some(d) = &self.changes {
            let changed: Vec<&diff::CustomerChange> =
                d.customers.iter().filter(|c| c.kind != "none").collect();
            s += &format!(
                "  against rev-{}: {} of {} invoice totals changed; {} delta meter events, {} invoice items (see diff.txt)\n",
                d.previous_revision,
                changed.len(),
                d.customers.len(),
                d.meter_event_corrections,
                d.invoice_items
            );
            for c in changed {
                s += &format!(
                    "    {} {} -> {} {} ({} {})\n",
                    c.customer_id, c.previous_total, c.total, c.currency, c.kind, c.difference
                );
            }
        }
        for n in &self.notes {
            s += &format!("  note: {n}\n");
        }
        for n in &self.notices {
            s += &format!("  notice: {n}\n");
        }
        for a in &self.attention {
            s += &format!("  attention: {a}\n");
        }
        s
    }
}

/// Bills one month.
pub fn run(ctx: &Ctx, opts: &BillOptions) -> Result<BillReport> {
    let pricing = crate::load::pricing(&opts.pricing)?;
    let lake = Lake::open(&opts.lake, &ctx.run_id)?;
    run_on(ctx, &lake, &pricing, opts)
}

/// [`run`] on a lake the caller holds, with `opts.pricing` already loaded.
pub fn run_on(ctx: &Ctx, lake: &Lake, pricing: &Pricing, opts: &BillOptions) -> Result<BillReport> {
    let started_at = ctx.clock.now();
    inputs::check_current(lake, opts.month)?;
    let customers_path = opts
        .customers
        .clone()
        .unwrap_or_else(|| Lake::registry_path(lake.root()));
    let (registry, registry_problems) = lake.customers(opts.customers.as_deref())?;
    let (start, end, _) = inputs::month_bounds(opts.month);
    let month = start.format("%Y-%m").to_string();

    let mut attention: Vec<String> = registry_problems
        .iter()
        .map(|p| format!("customer not billed: {p}"))
        .collect();
    let mut notices = Vec::new();
    let mut contracted = inputs::ContractInputs::default();
    let checked = checked_contracts(
        lake,
        opts.contracts.as_deref(),
        opts.customers.as_deref(),
        &registry,
        pricing,
        start,
    )?;
    if let Some((contracts, problems)) = checked {
        attention.extend(problems.iter().map(|p| format!("contract refused: {p}")));
        // (A local folder that does not exist holds no month before; it is
        // not created here: a month refused below writes nothing.)
        let nothing_out = !opts.out.contains("://") && !Path::new(&opts.out).exists();
        if !contracts.credits.is_empty() && !nothing_out {
            let store = Store::open_configured(&opts.out, &opts.store_options)?;
            let openings = openings(&store, start)?;
            attention.extend(openings.attention.iter().cloned());
            notices.extend(openings.notices.iter().cloned());
            contracted.openings = openings;
        }
        contracted.contracts = contracts;
    }

    // Inputs are loaded once; the billing SQL reruns if the outputs turn
    // out to belong to a new revision (invoice numbers and identifiers name
    // it).
    let conn = Connection::open_in_memory().map_err(db_err("opening DuckDB"))?;
    let loaded = inputs::load(&conn, lake, start, &registry, pricing, &contracted)?;
    refuse_unknown_plans(&loaded, pricing, &customers_path, &month)?;
    let store = Store::open_configured(&opts.out, &opts.store_options)?;
    let bill_at = |revision: u32| -> Result<Billing> {
        conn.execute("UPDATE billing_period SET revision = ?", [revision])
            .map_err(db_err("billing_period"))?;
        sql::run_billing(&conn)?;
        let mut billing = read_billing(&conn, &month)?;
        let carried = credits::carried(&contracted.openings, &billing.credits);
        if !carried.is_empty() {
            billing.credits.extend(carried);
            billing.credits.sort_by(|a, b| {
                (&a.customer_id, a.burn_order).cmp(&(&b.customer_id, b.burn_order))
            });
        }
        Ok(billing)
    };
    let first_day = start.to_string();
    let last_day = end.pred_opt().expect("in range").to_string();
    let render = |billing: &Billing, revision: u32| -> Vec<(String, Vec<u8>)> {
        let period = Period {
            month: &month,
            first_day: &first_day,
            last_day: &last_day,
            revision,
        };
        publish::files(&period, billing, STREAM_BATCH)
    };

    let versions = publish::Inputs::describe(lake, &opts.pricing, &customers_path)?;
    let state = publish::State::read(&store, &month)?;
    let mut outcome = None;
    let mut changes = None;
    let mut written_notes = Vec::new();
    let held = held_in_stripe(&store, lake, &month, start, end)?;
    if let Some(top) = state.top() {
        let billing = bill_at(top)?;
        let files = render(&billing, top);
        let same = state.matches(top, &files);
        let missing = match same {
            true => missing_notes(&store, &state, held.as_ref(), &month, top, &files)?,
            false => Vec::new(),
        };
        if !missing.is_empty() {
            notices.push(format!(
                "rev-{top} lacks notes against what Stripe holds now ({}): a new revision carries them",
                missing.join(", ")
            ));
        } else if same {
            if state.current != Some(top) {
                publish::point_latest(&store, &month, top, &ctx.run_id)?;
                notices.push(format!(
                    "rev-{top} was complete but not current (an interrupted run): latest.json now points at it"
                ));
            } else {
                notices.push(format!(
                    "inputs unchanged: rev-{top} stands as the current revision; nothing written"
                ));
            }
            let objects = state.objects(top);
            outcome = Some((top, "unchanged", billing, objects));
        }
    }
    let (revision, status, billing, objects) = match outcome {
        Some(o) => o,
        None => {
            let revision = state.top().unwrap_or(0) + 1;
            let billing = bill_at(revision)?;
            let mut files = render(&billing, revision);
            if let Some(previous) = state.top().filter(|p| state.manifests.contains_key(p)) {
                let before = publish::snapshot(&store, &state, previous)?;
                let after = diff::Snapshot::from_files(
                    store.url(),
                    files.iter().map(|(k, b)| (k.as_str(), b.as_slice())),
                )?;
                let open = diff::period_open(start, ctx.clock.now());
                let (d, extra) = diff::compare(
                    &month,
                    previous,
                    &before,
                    revision,
                    &after,
                    &billing.events,
                    open,
                );
                files.extend(extra);
                let notes = match &held {
                    Some(held) => revision_notes(&store, &state, held, &month, revision, &after)?,
                    None => Vec::new(),
                };
                for note in notes {
                    files.push((note.key(&month), notes::note_csv(&note)));
                    written_notes.push(format!(
                        "{} ({}, {} {} against {}): {}",
                        note.number,
                        note.kind,
                        note.difference,
                        note.currency,
                        note.base.original_invoice,
                        note.stripe_route()
                    ));
                }
                files.sort_by(|a, b| a.0.cmp(&b.0));
                changes = Some(d);
            }
            let objects = publish::write_revision(
                &store,
                lake,
                &month,
                revision,
                files,
                &ctx.run_id,
                &ctx.clock.now().to_rfc3339(),
                &versions,
                &loaded,
            )?;
            if let Some(stale) = stale_months(&store, &month, &state, &billing)? {
                attention.push(stale);
            }
            (revision, "published", billing, objects)
        }
    };

    for (customer, why) in &loaded.refused {
        attention.push(format!("customer {customer} not billed: {why}"));
    }
    if !billing.contract_readings.is_empty() {
        let who: Vec<String> = billing
            .contract_readings
            .iter()
            .map(|(c, n)| format!("{c} ({n})"))
            .collect();
        notices.push(format!(
            "customers with a contract are priced by meter alone, so their usage readings are not \
             written as Stripe meter events (Stripe would price them again): {}; their invoices \
             go to Stripe as meter's invoices (stripe/{month}/rev-{revision}/invoices.jsonl) with \
             `meter stripe push --month {month}` once the month is approved",
            who.join(", ")
        ));
    }
    let unpriced: i64 = billing.summary.iter().map(|r| r.unpriced_requests).sum();
    if unpriced > 0 {
        let who: Vec<&str> = billing
            .summary
            .iter()
            .filter(|r| r.unpriced_requests > 0)
            .map(|r| r.customer_id.as_str())
            .collect();
        attention.push(format!(
            "{unpriced} requests have no price and are not billed (unpriced lines on the invoices of {}): add the price to pricing.toml, rerun rollup and bill",
            who.join(", ")
        ));
    }
    for u in &billing.unbilled {
        let owner = match u.customer_id.as_str() {
            "" => "no customer lists it".to_string(),
            c => format!("customer {c} is not billed"),
        };
        attention.push(format!(
            "usage of VM {} is not on any invoice ({owner}): {} requests, {} tokens, cost {} {}, {} compute seconds",
            u.vm_id,
            u.requests,
            u.tokens,
            u.cost.normalize(),
            pricing.currency,
            u.compute_seconds
        ));
    }
    let withheld: Vec<&MeterEvent> = billing
        .events
        .iter()
        .filter(|e| e.stripe_customer_id.is_none())
        .collect();
    for r in billing
        .summary
        .iter()
        .filter(|r| r.stripe_customer_id.is_none())
    {
        let n = withheld
            .iter()
            .filter(|e| e.customer_id == r.customer_id)
            .count();
        attention.push(format!(
            "customer {} has no stripe_customer_id in {}: {n} meter events withheld from the Stripe files (its invoice is written)",
            r.customer_id,
            customers_path.display()
        ));
    }
    for r in billing.summary.iter().filter(|r| r.limit_exceeded) {
        notices.push(format!(
            "customer {} is over its monthly limit of {} {}: usage charges {} {} (plan fee not counted; billed {}), {} over (not capped)",
            r.customer_id,
            r.monthly_limit
                .map(|l| l.normalize().to_string())
                .unwrap_or_default(),
            r.currency,
            render::format_minor(r.usage_charges_minor(), r.decimals),
            r.currency,
            render::format_minor(r.total_minor, r.decimals),
            render::format_minor(r.over_limit_minor, r.decimals)
        ));
    }

    let mut totals: BTreeMap<String, (i64, u32)> = BTreeMap::new();
    for r in &billing.summary {
        totals
            .entry(r.currency.clone())
            .or_insert((0, r.decimals))
            .0 += r.total_minor;
    }
    let report = BillReport {
        job: "bill",
        run_id: ctx.run_id.clone(),
        started_at: started_at.to_rfc3339(),
        finished_at: ctx.clock.now().to_rfc3339(),
        lake: opts.lake.display().to_string(),
        month: month.clone(),
        out: store.url().to_string(),
        status: status.to_string(),
        revision,
        previous_revision: state.current.filter(|p| *p != revision),
        customers_invoiced: billing.summary.len(),
        invoices: billing
            .summary
            .iter()
            .map(|r| InvoiceReport {
                customer_id: r.customer_id.clone(),
                invoice_number: r.invoice_number.clone(),
                currency: r.currency.clone(),
                total: render::format_minor(r.total_minor, r.decimals),
                rule: r.rule.clone(),
                limit_exceeded: r.limit_exceeded,
            })
            .collect(),
        totals: totals
            .into_iter()
            .map(|(c, (m, d))| (c, render::format_minor(m, d)))
            .collect(),
        meter_events: billing.events.len() - withheld.len(),
        meter_events_withheld: withheld.len(),
        objects,
        unbilled_usage: billing.unbilled.clone(),
        changes,
        notes: written_notes,
        attention,
        notices,
    };
    let json = serde_json::to_string_pretty(&report).expect("the report serializes");
    lake.write_report(&ctx.run_id, &json)?;
    Ok(report)
}

/// What Stripe holds of a month's invoices, read once per bill: the
/// approval, and the push record's invoices and metered customers.
struct Held {
    approval: approve::Approval,
    stripe: BTreeMap<String, crate::lake::stripe_record::StripeInvoice>,
    metered: std::collections::HashSet<String>,
}

/// `None` when the month is not approved: nothing of it reached Stripe
/// from a revision (a push sends only an approved one), so nothing needs a
/// note, and the push record is not read.
fn held_in_stripe(
    store: &Store,
    lake: &Lake,
    month: &str,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<Option<Held>> {
    let Some(approval) = approve::approved(store, month)? else {
        return Ok(None);
    };
    let record = crate::lake::stripe_record::Record::read(lake)?;
    Ok(Some(Held {
        approval,
        stripe: record.stripe_invoices(month),
        metered: record.metered_customers(start, end),
    }))
}

/// The notes of revision `revision` (its invoices in `current`) against
/// what Stripe holds.
fn revision_notes(
    store: &Store,
    state: &publish::State,
    held: &Held,
    month: &str,
    revision: u32,
    current: &diff::Snapshot,
) -> Result<Vec<notes::Note>> {
    let bases = note_bases(held, month, revision, current);
    let mut base_lines = BTreeMap::new();
    for b in bases.values() {
        if let std::collections::btree_map::Entry::Vacant(e) = base_lines.entry(b.revision) {
            e.insert(publish::snapshot(store, state, b.revision)?.lines);
        }
    }
    Ok(notes::notes(
        month,
        revision,
        &bases,
        &base_lines,
        &current.lines,
    ))
}

/// The notes revision `revision` (whose files are `files`) would need
/// against what Stripe holds but was published without: it was billed
/// before the invoice it would correct reached Stripe.
fn missing_notes(
    store: &Store,
    state: &publish::State,
    held: Option<&Held>,
    month: &str,
    revision: u32,
    files: &[(String, Vec<u8>)],
) -> Result<Vec<String>> {
    let Some(held) = held else {
        return Ok(Vec::new());
    };
    let current = diff::Snapshot::from_files(
        store.url(),
        files.iter().map(|(k, b)| (k.as_str(), b.as_slice())),
    )?;
    let published = state.objects(revision);
    Ok(
        revision_notes(store, state, held, month, revision, &current)?
            .into_iter()
            .filter(|n| {
                let (key, bytes) = (n.key(month), notes::note_csv(n));
                !published.iter().any(|o| o.key == key && o.matches(&bytes))
            })
            .map(|n| n.number)
            .collect(),
    )
}

/// What each customer's note would be against: the invoice Stripe holds.
/// A customer with a contract whose invoice the push made and finalized in
/// Stripe: the revision Stripe holds (the push record says). A customer
/// billed through meter events: the approved revision, if Stripe accepted
/// meter events of it for the month. Nobody else gets a note.
fn note_bases(
    held: &Held,
    month: &str,
    revision: u32,
    current: &diff::Snapshot,
) -> BTreeMap<String, notes::Base> {
    let mut out = BTreeMap::new();
    for (customer, total) in &current.totals {
        let base = match held.stripe.get(customer) {
            Some(s) if s.finalized => Some(notes::Base {
                revision: s.revision,
                original_invoice: s.invoice_number.clone(),
                stripe_invoice: Some(s.stripe_invoice.clone()),
            }),
            Some(_) => None,
            None => {
                let metered = total
                    .stripe_customer_id
                    .as_ref()
                    .is_some_and(|id| held.metered.contains(id));
                let a = held.approval.revision;
                (a < revision && metered).then(|| notes::Base {
                    revision: a,
                    original_invoice: format!("INV-{}-{customer}-R{a}", month.replace('-', "")),
                    stripe_invoice: None,
                })
            }
        };
        if let Some(base) = base {
            out.insert(customer.clone(), base);
        }
    }
    out
}

/// The contracts billing applies: `contracts` (which must exist), else
/// `contracts.toml` beside `customers` if there is one, else the lake's copy
/// beside its registry copy; `None` when there is none. The problems are not checked
/// against the registry yet ([`inputs::check_contracts`]).
/// [`read_contracts`], checked against the registry and the price list
/// for `month` ([`inputs::check_contracts`]): the sound contracts and every
/// problem, each refusing its customer.
pub fn checked_contracts(
    lake: &Lake,
    contracts: Option<&Path>,
    customers: Option<&Path>,
    registry: &Registry,
    pricing: &Pricing,
    month: NaiveDate,
) -> Result<Option<(Contracts, Vec<Error>)>> {
    let Some((mut read, mut problems)) = read_contracts(lake, contracts, customers)? else {
        return Ok(None);
    };
    problems.extend(inputs::check_contracts(&mut read, registry, pricing, month));
    Ok(Some((read, problems)))
}

pub fn read_contracts(
    lake: &Lake,
    contracts: Option<&Path>,
    customers: Option<&Path>,
) -> Result<Option<(Contracts, Vec<Error>)>> {
    if let Some(path) = contracts {
        return crate::load::contracts(path, true);
    }
    if let Some(beside) = customers.map(|c| c.with_file_name("contracts.toml"))
        && let Some(read) = crate::load::contracts(&beside, false)?
    {
        return Ok(Some(read));
    }
    let path = Lake::contracts_path(lake.root());
    let Some(bytes) = lake.read_file(&path)? else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes).map_err(|e| Error::Registry {
        path: path.clone(),
        line: 0,
        field: "file".into(),
        message: format!("not UTF-8: {e}"),
    })?;
    Contracts::parse(&text, &path).map(Some)
}

/// The month before `start`'s closing balances: from its approved revision,
/// else (needing attention) its latest, else none (every grant opens with
/// its amount; a notice says so when there are grants).
pub fn openings(store: &Store, start: NaiveDate) -> Result<credits::Openings> {
    let previous = start
        .checked_sub_months(chrono::Months::new(1))
        .expect("in range")
        .format("%Y-%m")
        .to_string();
    let approved = approve::approved(store, &previous)?;
    let state = publish::State::read(store, &previous)?;
    let mut out = credits::Openings::default();
    let revision = match (approved, state.current) {
        (Some(a), _) => a.revision,
        (None, Some(current)) => {
            out.attention.push(format!(
                "prepaid credit opens from {previous} rev-{current}, which is not approved: \
                 approve {previous} (`meter approve --month {previous}`) and bill this month again"
            ));
            current
        }
        (None, None) => return Ok(out),
    };
    out.source = format!("{previous} rev-{revision}");
    let key = layout::RevisionFile::Credits
        .key(&previous, revision)
        .expect("one key");
    if let Some(bytes) = store.get(&key)? {
        out.balances = credits::parse_credits_csv(&bytes, &store.object_url(&key))?;
    } else if !state.manifests.contains_key(&revision) {
        return Err(Error::Billing {
            month: start.format("%Y-%m").to_string(),
            message: format!(
                "the revision credit opens from, {previous} rev-{revision}, has no manifest at {}",
                store.object_url(&publish::manifest_key(&previous, revision))
            ),
            hint: "bill the month before again (`meter bill --month` of it), then this month",
        });
    }
    Ok(out)
}

/// The months after `month` that have been billed, oldest first: a change
/// of `month`'s closing balances makes them stale.
pub fn later_billed(store: &Store, month: &str) -> Result<Vec<String>> {
    let mut months: Vec<String> = store
        .list("invoices/")?
        .into_iter()
        .filter_map(|(key, _)| {
            let m = key
                .strip_prefix("invoices/")?
                .split('/')
                .next()?
                .to_string();
            key.ends_with("/latest.json").then_some(m)
        })
        .filter(|m| m.as_str() > month)
        .collect();
    months.sort();
    months.dedup();
    Ok(months)
}

/// When a new revision changes the month's closing credit balances, the
/// months billed after it opened from the old ones: says which, with the
/// commands that bill them again (they are never changed here).
fn stale_months(
    store: &Store,
    month: &str,
    state: &publish::State,
    billing: &Billing,
) -> Result<Option<String>> {
    let before = match state.top() {
        Some(previous) => {
            let key = layout::RevisionFile::Credits
                .key(month, previous)
                .expect("one key");
            match store.get(&key)? {
                Some(bytes) => credits::parse_credits_csv(&bytes, &store.object_url(&key))?,
                None => credits::Balances::new(),
            }
        }
        None => credits::Balances::new(),
    };
    if before == credits::closings(&billing.credits) {
        return Ok(None);
    }
    let later = later_billed(store, month)?;
    if later.is_empty() {
        return Ok(None);
    }
    let commands: Vec<String> = later
        .iter()
        .map(|m| format!("`meter rerun --month {m}`"))
        .collect();
    Ok(Some(format!(
        "prepaid credit balances at the end of {month} changed, and {} opened from the old ones: \
         they are stale until billed again, oldest first: {}",
        later.join(", "),
        commands.join(", then ")
    )))
}

/// A customer billed for the month whose plan is not in the price list
/// would be left out of the revision: refuse the month instead, naming each
/// (file, line, customer and plan), before anything is written.
fn refuse_unknown_plans(
    loaded: &inputs::Loaded,
    pricing: &Pricing,
    customers: &Path,
    month: &str,
) -> Result<()> {
    let problems: Vec<String> = loaded
        .unknown_plans
        .iter()
        .filter_map(|c| pricing.plan_problem(c, customers))
        .map(|p| p.to_string())
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::Billing {
        month: month.to_string(),
        message: format!(
            "{} customer(s) billed for the month have a plan pricing.toml does not have, so \
             their invoices could not be written; nothing was published:\n  {}",
            problems.len(),
            problems.join("\n  ")
        ),
        hint: "give each named customer a plan of pricing.toml [plans] in customers.csv (column \
               `tier`), or restore the plan in pricing.toml (a renamed plan keeps its old key \
               until no customer uses it); `meter pricing check --customers FILE` checks this; \
               then bill again",
    })
}

/// One day's Stripe meter events, computed by the month's billing SQL from
/// the daily aggregates (the nightly job sends them while the month is open).
#[derive(Debug, Default)]
pub struct DayEvents {
    /// Every event of the day, including those without a Stripe customer.
    pub events: Vec<MeterEvent>,
    /// Customers left out of billing, each with why.
    pub refused: Vec<(String, String)>,
    /// The billing summary of the month so far (every day the lake holds).
    pub month_to_date: Vec<SummaryRow>,
    /// Customers with a contract and the day's readings not written as
    /// meter events for them (Stripe would price them again).
    pub contract_readings: Vec<(String, i64)>,
}

impl DayEvents {
    /// The `meter_events.jsonl` bytes: the events that have a Stripe customer.
    pub fn jsonl(&self) -> Vec<u8> {
        render::meter_events_jsonl(&self.events)
    }

    /// Customers whose events are withheld for lack of a Stripe customer id.
    pub fn withheld(&self) -> BTreeMap<&str, usize> {
        let mut out = BTreeMap::new();
        for e in self
            .events
            .iter()
            .filter(|e| e.stripe_customer_id.is_none())
        {
            *out.entry(e.customer_id.as_str()).or_default() += 1;
        }
        out
    }
}

/// The store key of one day's meter events.
pub fn day_events_key(date: NaiveDate) -> String {
    format!("stripe/daily/{date}/meter_events.jsonl")
}

/// Computes `date`'s meter events, and the month so far, from the daily
/// aggregates of its month.
pub fn day_events(
    lake: &Lake,
    date: NaiveDate,
    registry: &Registry,
    pricing: &Pricing,
    contracts: Contracts,
) -> Result<DayEvents> {
    let conn = Connection::open_in_memory().map_err(db_err("opening DuckDB"))?;
    let loaded = inputs::load_month_to_date(
        &conn,
        lake,
        date,
        registry,
        pricing,
        &inputs::ContractInputs {
            contracts,
            ..inputs::ContractInputs::default()
        },
    )?;
    sql::run_billing(&conn)?;
    let mut billing = read_billing(&conn, &date.format("%Y-%m").to_string())?;
    let mut stmt = conn
        .prepare(
            "SELECT customer_id, count(*) FROM meter_readings WHERE contract \
             AND date = CAST(? AS DATE) GROUP BY customer_id ORDER BY customer_id",
        )
        .map_err(db_err("meter_readings"))?;
    let contract_readings = stmt
        .query_map([date.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(db_err("meter_readings"))?;
    let day = date.to_string();
    billing.events.retain(|e| e.date == day);
    Ok(DayEvents {
        events: billing.events,
        refused: loaded.refused,
        month_to_date: billing.summary,
        contract_readings,
    })
}

/// Reads the billing tables back, in a stable order.
pub fn read_billing(conn: &Connection, month: &str) -> Result<Billing> {
    let inexact: i64 = conn
        .query_row("SELECT count(*) FROM inexact_costs", [], |r| r.get(0))
        .map_err(db_err("inexact_costs"))?;
    if inexact > 0 {
        return Err(Error::Billing {
            month: month.to_string(),
            message: format!(
                "{inexact} usage lines have costs with more than 12 decimal places, which the invoice arithmetic would round"
            ),
            hint: "price entries with more than 6 decimal places per 1M tokens cause this; shorten them in pricing.toml",
        });
    }
    let mut billing = Billing::default();
    let mut stmt = conn
        .prepare(
            "SELECT invoice_number, customer_id, line, line_type, provider, model, description, \
             quantity, unit, unit_price, requests, input_tokens, cache_read_tokens, \
             cache_write_tokens, output_tokens, reasoning_tokens, cost, cost_currency, fx_rate, \
             rule, amount_minor, currency, decimals FROM invoice_lines ORDER BY customer_id, line",
        )
        .map_err(db_err("invoice_lines"))?;
    billing.lines = stmt
        .query_map([], |r| {
            Ok(InvoiceLine {
                invoice_number: r.get(0)?,
                customer_id: r.get(1)?,
                line: r.get(2)?,
                line_type: r.get(3)?,
                provider: r.get(4)?,
                model: r.get(5)?,
                description: r.get(6)?,
                quantity: r.get(7)?,
                unit: r.get(8)?,
                unit_price: opt_decimal(r.get(9)?)?,
                requests: r.get(10)?,
                tokens: [r.get(11)?, r.get(12)?, r.get(13)?, r.get(14)?, r.get(15)?],
                cost: opt_decimal(r.get(16)?)?,
                cost_currency: r.get(17)?,
                fx_rate: opt_decimal(r.get(18)?)?,
                rule: r.get(19)?,
                amount_minor: r.get(20)?,
                currency: r.get(21)?,
                decimals: r.get(22)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(db_err("invoice_lines"))?;

    let mut stmt = conn
        .prepare(
            "SELECT invoice_number, customer_id, name, currency, decimals, plan, rule, tokens, \
             included_tokens, active_days, days, fee_minor, api_minor, compute_minor, total_minor, \
             provider_cost, provider_currency, cost_fx, provider_cost_minor, margin_minor, \
             unpriced_requests, unpriced_tokens, monthly_limit, over_limit_minor, limit_exceeded, \
             stripe_customer_id, discount_minor, commitment_minor, credit_minor \
             FROM billing_summary ORDER BY customer_id",
        )
        .map_err(db_err("billing_summary"))?;
    billing.summary = stmt
        .query_map([], |r| {
            Ok(SummaryRow {
                invoice_number: r.get(0)?,
                customer_id: r.get(1)?,
                name: r.get(2)?,
                currency: r.get(3)?,
                decimals: r.get(4)?,
                plan: r.get(5)?,
                rule: r.get(6)?,
                tokens: r.get(7)?,
                included_tokens: r.get(8)?,
                active_days: r.get(9)?,
                days: r.get(10)?,
                fee_minor: r.get(11)?,
                api_minor: r.get(12)?,
                compute_minor: r.get(13)?,
                total_minor: r.get(14)?,
                provider_cost: decimal(r.get(15)?)?,
                provider_currency: r.get(16)?,
                cost_fx: decimal(r.get(17)?)?,
                provider_cost_minor: r.get(18)?,
                margin_minor: r.get(19)?,
                unpriced_requests: r.get(20)?,
                unpriced_tokens: r.get(21)?,
                monthly_limit: opt_decimal(r.get(22)?)?,
                over_limit_minor: r.get(23)?,
                limit_exceeded: r.get(24)?,
                stripe_customer_id: r.get(25)?,
                discount_minor: r.get(26)?,
                commitment_minor: r.get(27)?,
                credit_minor: r.get(28)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(db_err("billing_summary"))?;

    let mut stmt = conn
        .prepare(
            "SELECT strftime(date, '%Y-%m-%d'), customer_id, event_name, value, stripe_customer_id, \
             identifier, timestamp FROM meter_events ORDER BY date, customer_id, event_name",
        )
        .map_err(db_err("meter_events"))?;
    billing.events = stmt
        .query_map([], |r| {
            Ok(MeterEvent {
                date: r.get(0)?,
                customer_id: r.get(1)?,
                event_name: r.get(2)?,
                value: r.get(3)?,
                stripe_customer_id: r.get(4)?,
                identifier: r.get(5)?,
                timestamp: r.get(6)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(db_err("meter_events"))?;

    let mut stmt = conn
        .prepare(
            "SELECT customer_id, vm_id, sum(requests), sum(tokens), sum(cost), sum(compute_seconds) \
             FROM unbilled_usage GROUP BY ALL ORDER BY customer_id, vm_id",
        )
        .map_err(db_err("unbilled_usage"))?;
    billing.unbilled = stmt
        .query_map([], |r| {
            Ok(Unbilled {
                customer_id: r.get(0)?,
                vm_id: r.get(1)?,
                requests: r.get(2)?,
                tokens: r.get(3)?,
                cost: decimal(r.get(4)?)?,
                compute_seconds: r.get(5)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(db_err("unbilled_usage"))?;

    let mut stmt = conn
        .prepare(
            "SELECT customer_id, grant_id, burn_order, currency, decimals, amount, \
             strftime(granted, '%Y-%m-%d'), strftime(expires, '%Y-%m-%d'), priority, opening_from, \
             rate, invoice_currency, invoice_decimals, opening_minor, applied_grant_minor, \
             applied_minor, expired_minor, closing_minor, status \
             FROM credit_balances ORDER BY customer_id, burn_order",
        )
        .map_err(db_err("credit_balances"))?;
    billing.credits = stmt
        .query_map([], |r| {
            Ok(render::CreditBalance {
                customer_id: r.get(0)?,
                grant_id: r.get(1)?,
                burn_order: r.get(2)?,
                currency: r.get(3)?,
                decimals: r.get(4)?,
                amount: decimal(r.get(5)?)?,
                granted: r.get(6)?,
                expires: r.get(7)?,
                priority: r.get(8)?,
                opening_from: r.get(9)?,
                rate: decimal(r.get(10)?)?,
                invoice_currency: r.get(11)?,
                invoice_decimals: r.get(12)?,
                opening_minor: r.get(13)?,
                applied_minor: r.get(14)?,
                applied_invoice_minor: r.get(15)?,
                expired_minor: r.get(16)?,
                closing_minor: r.get(17)?,
                status: r.get(18)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(db_err("credit_balances"))?;

    let mut stmt = conn
        .prepare("SELECT customer_id, readings FROM contract_readings ORDER BY customer_id")
        .map_err(db_err("contract_readings"))?;
    billing.contract_readings = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(db_err("contract_readings"))?;

    let mut stmt = conn
        .prepare(
            "SELECT customer_id FROM contract_parts UNION SELECT customer_id FROM credit_grants \
             ORDER BY customer_id",
        )
        .map_err(db_err("contract_parts"))?;
    billing.contract_customers = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(db_err("contract_parts"))?;
    Ok(billing)
}

#[cfg(test)]
mod oracle_tests;
#[cfg(test)]
mod tests;
