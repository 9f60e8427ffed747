//! meter's invoices in Stripe, for customers with a contract: what a month
//! push sends, decided without IO from the approved revision's
//! `invoices.jsonl` and notes and from the record of what Stripe accepted.
//!
//! meter's invoice is the source of truth for money, so a contract
//! customer's invoice is not priced by Stripe: the push makes it in Stripe
//! line by line with meter's amounts, once the month is over:
//!
//! 1. `POST /v1/invoices`: a draft for the customer in the invoice's
//!    currency that takes no pending items (`pending_invoice_items_behavior
//!    = exclude`) and that Stripe does not finalize on its own
//!    (`auto_advance=false`: a push that stopped never leaves a half-made
//!    invoice to be sent), meter's invoice number in its metadata;
//! 2. `POST /v1/invoiceitems` with `invoice`: one item per line that bills
//!    something (discounts and prepaid credit are negative lines, never a
//!    Stripe coupon or credit grant: a balance meter applied is not applied
//!    again);
//! 3. `POST /v1/invoices/{id}/finalize` with `auto_advance=true`: Stripe
//!    collects it as it does its own invoices.
//!
//! Each request has its own idempotency key (`<invoice>-create`,
//! `<invoice>-line-<n>`, `<invoice>-finalize`) and is recorded once
//! accepted, so a push that stopped resumes at the next step. When a later
//! approved revision changes the invoice, the push sends that revision's
//! note against what Stripe holds: a credit note on the finalized invoice
//! (`POST /v1/credit_notes`, `CN-...`) or an invoice item for the next
//! invoice (`DN-...`). Nothing else is ever sent for a contract customer.

use std::collections::{BTreeMap, HashSet};

use crate::bill::notes::NoteTotal;
use crate::bill::render::ContractInvoice;
use crate::lake::stripe_record::{StepKind, StripeInvoice};

pub const INVOICES: &str = "/v1/invoices";
pub const FINALIZE: &str = "/v1/invoices/{invoice}/finalize";
pub const CREDIT_NOTES: &str = "/v1/credit_notes";

/// One request for meter's invoices in Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceCall {
    /// Sent as the `Idempotency-Key` header.
    pub key: String,
    pub step: StepKind,
    pub customer_id: String,
    /// The Stripe customer (`cus_...`).
    pub customer: String,
    /// The revision whose amounts Stripe holds once it is done.
    pub revision: u32,
    /// meter's invoice number, or the note's number.
    pub document: String,
    /// Stripe's invoice when known before the push (`None`: the lines and
    /// finalization of an invoice this push creates).
    pub stripe_invoice: Option<String>,
    /// Minor units: a line's amount, a credit note's credit (positive), a
    /// debit note's debit; 0 for creation and finalization.
    pub amount: i64,
    /// Lower-case ISO 4217.
    pub currency: String,
    pub description: String,
}

impl InvoiceCall {
    /// The API path, with `{invoice}` where an id is filled in at send time.
    pub fn path(&self) -> &'static str {
        match self.step {
            StepKind::Create => INVOICES,
            StepKind::Line | StepKind::Debit => super::INVOICE_ITEMS,
            StepKind::Finalize => FINALIZE,
            StepKind::CreditNote => CREDIT_NOTES,
        }
    }

    /// The form fields (`invoice`: Stripe's invoice id, when the step needs
    /// one).
    pub fn form(&self, invoice: &str) -> Vec<(String, String)> {
        let pairs: Vec<(&str, String)> = match self.step {
            StepKind::Create => vec![
                ("customer", self.customer.clone()),
                ("currency", self.currency.clone()),
                ("auto_advance", "false".into()),
                ("pending_invoice_items_behavior", "exclude".into()),
                ("description", self.description.clone()),
                ("metadata[meter_invoice]", self.document.clone()),
                ("metadata[meter_revision]", self.revision.to_string()),
            ],
            StepKind::Line => vec![
                ("customer", self.customer.clone()),
                ("invoice", invoice.to_string()),
                ("amount", self.amount.to_string()),
                ("currency", self.currency.clone()),
                ("description", self.description.clone()),
            ],
            // The draft was made with `auto_advance=false`, so Stripe never
            // finalizes it half made; once whole, Stripe collects it as usual.
            StepKind::Finalize => vec![("auto_advance", "true".into())],
            StepKind::CreditNote => vec![
                ("invoice", invoice.to_string()),
                ("lines[0][type]", "custom_line_item".into()),
                ("lines[0][description]", self.description.clone()),
                ("lines[0][quantity]", "1".into()),
                ("lines[0][unit_amount]", self.amount.to_string()),
                ("memo", self.description.clone()),
                ("metadata[meter_note]", self.document.clone()),
            ],
            StepKind::Debit => vec![
                ("customer", self.customer.clone()),
                ("amount", self.amount.to_string()),
                ("currency", self.currency.clone()),
                ("description", self.description.clone()),
                ("metadata[meter_note]", self.document.clone()),
            ],
        };
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

/// What the push does for the contract customers of one revision.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct InvoicePlan {
    /// In customer order; an invoice's steps in the order they must go.
    pub calls: Vec<InvoiceCall>,
    /// Steps Stripe has already.
    pub already_accepted: usize,
    /// Steps not sent: the month is not over, or what Stripe holds does not
    /// fit the revision (see `attention`).
    pub withheld: usize,
    pub attention: Vec<String>,
    pub notices: Vec<String>,
}

/// Plans revision `revision` of `month`: `invoices` and `notes` are its
/// files, `stripe` what the record says Stripe holds per customer, `taken`
/// every key Stripe accepted.
pub fn plan_invoices(
    month: &str,
    revision: u32,
    period_open: bool,
    invoices: &[ContractInvoice],
    notes: &[NoteTotal],
    stripe: &BTreeMap<String, StripeInvoice>,
    taken: &HashSet<String>,
) -> InvoicePlan {
    let mut plan = InvoicePlan::default();
    if period_open {
        let steps: usize = invoices.iter().map(|i| i.lines.len() + 2).sum();
        plan.withheld = steps;
        if steps > 0 {
            plan.notices.push(format!(
                "the {} invoices of customers with a contract are made in Stripe once {month} is over (push the month again then)",
                invoices.len()
            ));
        }
        return plan;
    }
    for inv in invoices {
        match stripe.get(&inv.customer_id) {
            None => make(&mut plan, inv, revision, None, taken),
            Some(s) if s.created_revision == revision => {
                make(&mut plan, inv, revision, Some(&s.stripe_invoice), taken)
            }
            Some(s) if !s.finalized => {
                plan.withheld += inv.lines.len() + 2;
                plan.attention.push(format!(
                    "customer {}: Stripe holds an unfinished draft {} of {} (rev-{}, a push that stopped) and rev-{revision} is now approved: nothing sent; approve rev-{} again and push to finish it, or delete the draft in Stripe and remove its lines from <lake>/_stripe/accepted.jsonl",
                    inv.customer_id,
                    s.stripe_invoice,
                    s.invoice_number,
                    s.created_revision,
                    s.created_revision
                ));
            }
            Some(s) if s.revision == revision => plan.already_accepted += 1,
            Some(s) => note(&mut plan, inv, revision, s, notes, taken),
        }
    }
    let billed: HashSet<&str> = invoices.iter().map(|i| i.customer_id.as_str()).collect();
    for (customer, s) in stripe.iter().filter(|(c, _)| !billed.contains(c.as_str())) {
        plan.attention.push(format!(
            "customer {customer}: Stripe holds meter's invoice {} ({}, rev-{}), but rev-{revision} has no invoice of it for Stripe (no contract, no Stripe customer, or not billed): nothing sent; settle it by hand",
            s.invoice_number, s.stripe_invoice, s.revision
        ));
    }
    plan
}

/// The steps that make `inv` in Stripe, but those Stripe has.
fn make(
    plan: &mut InvoicePlan,
    inv: &ContractInvoice,
    revision: u32,
    stripe_invoice: Option<&String>,
    taken: &HashSet<String>,
) {
    let call = |key: String, step: StepKind, amount: i64, description: String| InvoiceCall {
        key,
        step,
        customer_id: inv.customer_id.clone(),
        customer: inv.customer.clone(),
        revision,
        document: inv.invoice_number.clone(),
        stripe_invoice: stripe_invoice.cloned(),
        amount,
        currency: inv.currency.clone(),
        description,
    };
    let number = &inv.invoice_number;
    let mut calls = vec![call(
        format!("{number}-create"),
        StepKind::Create,
        0,
        format!("{number} (meter)"),
    )];
    for l in &inv.lines {
        calls.push(call(
            format!("{number}-line-{}", l.line),
            StepKind::Line,
            l.amount,
            l.description.clone(),
        ));
    }
    calls.push(call(
        format!("{number}-finalize"),
        StepKind::Finalize,
        0,
        String::new(),
    ));
    for c in calls {
        match taken.contains(&c.key) {
            true => plan.already_accepted += 1,
            false => plan.calls.push(c),
        }
    }
}

/// The note that brings Stripe's invoice `s` to revision `revision`.
fn note(
    plan: &mut InvoicePlan,
    inv: &ContractInvoice,
    revision: u32,
    s: &StripeInvoice,
    notes: &[NoteTotal],
    taken: &HashSet<String>,
) {
    let found = notes
        .iter()
        .find(|n| n.customer_id == inv.customer_id && n.against_revision == s.revision);
    let Some(n) = found else {
        if s.amount == inv.total {
            // Unchanged since what Stripe holds: no note is due.
            plan.already_accepted += 1;
            return;
        }
        plan.withheld += 1;
        plan.attention.push(format!(
            "customer {}: Stripe holds rev-{} of its invoice ({}, {}), but rev-{revision} has no note against rev-{} (it was billed before rev-{} reached Stripe): nothing sent; bill the month again (`meter bill --month {}` writes a revision with the note), approve it and push",
            inv.customer_id,
            s.revision,
            s.invoice_number,
            s.stripe_invoice,
            s.revision,
            s.revision,
            month_of(&inv.invoice_number)
        ));
        return;
    };
    if taken.contains(&n.number) {
        plan.already_accepted += 1;
        return;
    }
    let (step, amount, what) = match n.difference_minor {
        d if d < 0 => (StepKind::CreditNote, -d, "credit note"),
        d if d > 0 => (StepKind::Debit, d, "debit note"),
        _ => {
            plan.notices.push(format!(
                "{}: lines moved but the total of {} did not change: nothing to send",
                n.number, n.original_invoice
            ));
            return;
        }
    };
    plan.calls.push(InvoiceCall {
        key: n.number.clone(),
        step,
        customer_id: inv.customer_id.clone(),
        customer: inv.customer.clone(),
        revision,
        document: n.number.clone(),
        stripe_invoice: Some(s.stripe_invoice.clone()),
        amount,
        currency: inv.currency.clone(),
        description: format!(
            "{} ({what}): {} replaces {}",
            n.number, inv.invoice_number, n.original_invoice
        ),
    });
}

/// `YYYY-MM` of an invoice number `INV-YYYYMM-...`.
fn month_of(invoice_number: &str) -> String {
    let digits = invoice_number.get(4..10).unwrap_or_default();
    match digits.len() {
        6 => format!("{}-{}", &digits[..4], &digits[4..]),
        _ => "YYYY-MM".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bill::render::ContractInvoiceLine;

    fn invoice(customer: &str, revision: u32, amounts: &[i64]) -> ContractInvoice {
        ContractInvoice {
            invoice_number: format!("INV-202610-{customer}-R{revision}"),
            customer_id: customer.into(),
            customer: format!("cus_{customer}"),
            currency: "eur".into(),
            total: amounts.iter().sum(),
            lines: amounts
                .iter()
                .enumerate()
                .map(|(i, a)| ContractInvoiceLine {
                    line: i as i64 + 1,
                    description: format!("line {}", i + 1),
                    amount: *a,
                })
                .collect(),
        }
    }

    fn held(customer: &str, created: u32, revision: u32, finalized: bool) -> StripeInvoice {
        StripeInvoice {
            stripe_invoice: "in_1".into(),
            invoice_number: format!("INV-202610-{customer}-R{created}"),
            created_revision: created,
            finalized,
            revision,
            amount: 0,
            currency: "eur".into(),
        }
    }

    fn note(customer: &str, against: u32, revision: u32, minor: i64) -> NoteTotal {
        let prefix = if minor > 0 { "DN" } else { "CN" };
        NoteTotal {
            number: format!("{prefix}-202610-{customer}-R{revision}"),
            kind: "x".into(),
            original_invoice: format!("INV-202610-{customer}-R1"),
            against_revision: against,
            revision,
            customer_id: customer.into(),
            difference_minor: minor,
            currency: "EUR".into(),
        }
    }

    fn steps(plan: &InvoicePlan) -> Vec<(String, StepKind, i64)> {
        plan.calls
            .iter()
            .map(|c| (c.key.clone(), c.step, c.amount))
            .collect()
    }

    #[test]
    fn a_new_invoice_is_created_line_by_line_and_finalized() {
        let inv = [invoice("c", 1, &[10_000, -2_500])];
        let plan = plan_invoices(
            "2026-10",
            1,
            false,
            &inv,
            &[],
            &BTreeMap::new(),
            &HashSet::new(),
        );
        assert_eq!(
            steps(&plan),
            [
                ("INV-202610-c-R1-create".into(), StepKind::Create, 0),
                ("INV-202610-c-R1-line-1".into(), StepKind::Line, 10_000),
                ("INV-202610-c-R1-line-2".into(), StepKind::Line, -2_500),
                ("INV-202610-c-R1-finalize".into(), StepKind::Finalize, 0),
            ]
        );
        assert!(plan.attention.is_empty());
        let form = plan.calls[2].form("in_9");
        assert!(form.contains(&("invoice".into(), "in_9".into())));
        assert!(
            form.contains(&("amount".into(), "-2500".into())),
            "{form:?}"
        );
        // While the month is open nothing is made.
        let open = plan_invoices(
            "2026-10",
            1,
            true,
            &inv,
            &[],
            &BTreeMap::new(),
            &HashSet::new(),
        );
        assert!(open.calls.is_empty());
        assert_eq!(open.withheld, 4);
    }

    #[test]
    fn a_push_that_stopped_resumes_at_the_next_step() {
        let inv = [invoice("c", 1, &[100, 200])];
        let taken = HashSet::from([
            "INV-202610-c-R1-create".to_string(),
            "INV-202610-c-R1-line-1".to_string(),
        ]);
        let stripe = BTreeMap::from([("c".to_string(), held("c", 1, 1, false))]);
        let plan = plan_invoices("2026-10", 1, false, &inv, &[], &stripe, &taken);
        assert_eq!(plan.already_accepted, 2);
        assert_eq!(
            steps(&plan),
            [
                ("INV-202610-c-R1-line-2".into(), StepKind::Line, 200),
                ("INV-202610-c-R1-finalize".into(), StepKind::Finalize, 0),
            ]
        );
        assert_eq!(plan.calls[0].stripe_invoice.as_deref(), Some("in_1"));
    }

    #[test]
    fn a_later_revision_sends_its_note_once() {
        let inv = [invoice("c", 2, &[90]), invoice("d", 2, &[120])];
        let stripe = BTreeMap::from([
            ("c".to_string(), held("c", 1, 1, true)),
            ("d".to_string(), held("d", 1, 1, true)),
        ]);
        let notes = [note("c", 1, 2, -10), note("d", 1, 2, 20)];
        let plan = plan_invoices("2026-10", 2, false, &inv, &notes, &stripe, &HashSet::new());
        assert_eq!(
            steps(&plan),
            [
                ("CN-202610-c-R2".into(), StepKind::CreditNote, 10),
                ("DN-202610-d-R2".into(), StepKind::Debit, 20),
            ]
        );
        let form = plan.calls[0].form("in_1");
        assert!(form.contains(&("lines[0][unit_amount]".into(), "10".into())));
        // Once accepted, the record says Stripe holds rev-2.
        let stripe = BTreeMap::from([
            ("c".to_string(), held("c", 1, 2, true)),
            ("d".to_string(), held("d", 1, 2, true)),
        ]);
        let again = plan_invoices("2026-10", 2, false, &inv, &notes, &stripe, &HashSet::new());
        assert!(again.calls.is_empty());
        assert_eq!(again.already_accepted, 2);
    }

    #[test]
    fn what_does_not_fit_is_withheld_and_named() {
        let inv = [invoice("c", 3, &[90]), invoice("d", 3, &[5])];
        let stripe = BTreeMap::from([
            ("c".to_string(), held("c", 1, 1, true)),
            ("d".to_string(), held("d", 2, 2, false)),
            ("e".to_string(), held("e", 1, 1, true)),
        ]);
        // rev-3's note for c is against rev-2, but Stripe holds rev-1.
        let notes = [note("c", 2, 3, -10)];
        // (An invoice with no note whose total Stripe holds is unchanged.)
        let same = plan_invoices(
            "2026-10",
            3,
            false,
            &inv[..1],
            &[],
            &BTreeMap::from([(
                "c".to_string(),
                StripeInvoice {
                    amount: 90,
                    ..held("c", 1, 1, true)
                },
            )]),
            &HashSet::new(),
        );
        assert_eq!((same.calls.len(), same.already_accepted), (0, 1));
        assert!(same.attention.is_empty());
        let plan = plan_invoices("2026-10", 3, false, &inv, &notes, &stripe, &HashSet::new());
        assert!(plan.calls.is_empty());
        assert_eq!(plan.withheld, 1 + 3);
        assert_eq!(plan.attention.len(), 3, "{:?}", plan.attention);
        assert!(plan.attention[0].contains("no note against rev-1"));
        assert!(plan.attention[0].contains("meter bill --month 2026-10"));
        assert!(plan.attention[1].contains("unfinished draft"));
        assert!(plan.attention[2].starts_with("customer e:"));
    }
}
