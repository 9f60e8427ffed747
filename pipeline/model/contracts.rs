//! Contracts: the deals beside `customers.csv` (`contracts.toml`,
//! `schemas/contracts.md`): effective-dated terms (a monthly minimum
//! commitment, volume tiers of the markup factor), discounts and prepaid
//! credit grants, per customer. Parsing and validation only: billing
//! prices them.
//!
//! A problem names the file, the line and the field. A customer with any
//! problem in any of its entries gets no contract at all ([`Contracts::refused`]):
//! billing leaves that customer's invoice out and the run needs attention,
//! as for a bad `customers.csv` row. Half a contract would bill the wrong
//! amount; none bills nothing, which a person then looks at.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;
use toml::Spanned;

use crate::model::error::Error;

/// Most tiers one schedule may have.
pub const MAX_TIERS: usize = 20;

/// Decimal places and bound of every amount, percent, factor and tier
/// bound: billing holds them as `DECIMAL(18, 6)`, so none is rounded.
pub const MAX_PLACES: u32 = 6;
const MAX_WHOLE: i64 = 1_000_000_000_000;

/// What volume tiers count, month to date across the parts of a month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TierMeasure {
    /// Tokens of all kinds (input, cache read, cache write, output).
    Tokens,
    /// Provider cost of the API usage in the customer's currency.
    ApiCharge,
}

/// How a tiered factor applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TierMode {
    /// Each tier's part of the measure at that tier's factor.
    Graduated,
    /// All of the measure at the factor of the tier it reaches.
    Volume,
}

/// A tier: from `from` (inclusive) of the measure on, `factor` x cost.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TierStep {
    pub from: Decimal,
    pub factor: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tiers {
    pub measure: TierMeasure,
    pub mode: TierMode,
    /// Strictly increasing `from`, the first 0.
    pub steps: Vec<TierStep>,
}

/// A customer's terms from `from` until its next terms.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Terms {
    pub line: u64,
    pub customer_id: String,
    pub from: NaiveDate,
    /// Monthly minimum of usage charges in the customer's currency.
    pub commitment: Option<Decimal>,
    pub tiers: Option<Tiers>,
}

/// The invoice lines a discount applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscountScope {
    Invoice,
    Subscription,
    ApiUsage,
    Compute,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscountValue {
    /// Percent off (0 < p <= 100).
    Percent(Decimal),
    /// A fixed amount off per month, in the customer's currency, at most
    /// the lines it applies to.
    Amount(Decimal),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Discount {
    pub line: u64,
    pub customer_id: String,
    pub value: DiscountValue,
    pub applies_to: DiscountScope,
    pub from: NaiveDate,
    /// Exclusive.
    pub until: Option<NaiveDate>,
}

/// Prepaid credit that usage charges burn down.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CreditGrant {
    pub line: u64,
    pub customer_id: String,
    pub grant_id: String,
    pub amount: Decimal,
    pub currency: String,
    pub granted: NaiveDate,
    /// Exclusive: usable before this day.
    pub expires: Option<NaiveDate>,
    /// Lower burns first.
    pub priority: u32,
}

/// Days `[start, end)` of a month under one set of terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part<'a> {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub terms: Option<&'a Terms>,
}

/// Every sound contract of `contracts.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contracts {
    pub path: PathBuf,
    /// By customer, then `from`.
    pub terms: Vec<Terms>,
    /// By customer, then line.
    pub discounts: Vec<Discount>,
    /// In burn order per customer: priority, soonest expiry (none last),
    /// oldest grant, then grant id.
    pub credits: Vec<CreditGrant>,
    /// Customers whose entries had a problem: no contract is applied and
    /// nothing is billed for them.
    pub refused: BTreeSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireFile {
    #[serde(default)]
    terms: Vec<Spanned<WireTerms>>,
    #[serde(default)]
    discounts: Vec<Spanned<WireDiscount>>,
    #[serde(default)]
    credits: Vec<Spanned<WireCredit>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireTerms {
    customer_id: Spanned<String>,
    from: Spanned<toml::value::Datetime>,
    commitment: Option<Spanned<String>>,
    tiers: Option<Spanned<WireTiers>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireTiers {
    measure: Spanned<String>,
    mode: Spanned<String>,
    steps: Vec<Spanned<WireStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireStep {
    from: Spanned<toml::Value>,
    factor: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireDiscount {
    customer_id: Spanned<String>,
    percent: Option<Spanned<String>>,
    amount: Option<Spanned<String>>,
    applies_to: Spanned<String>,
    from: Spanned<toml::value::Datetime>,
    until: Option<Spanned<toml::value::Datetime>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCredit {
    customer_id: Spanned<String>,
    grant_id: Spanned<String>,
    amount: Spanned<String>,
    currency: Spanned<String>,
    granted: Spanned<toml::value::Datetime>,
    expires: Option<Spanned<toml::value::Datetime>>,
    #[serde(default)]
    priority: Option<Spanned<i64>>,
}

/// Collects problems as `Error::Registry` (file, line, field).
struct Problems<'a> {
    path: &'a Path,
    text: &'a str,
    found: Vec<(String, Error)>,
}

impl Problems<'_> {
    fn line<T>(&self, at: &Spanned<T>) -> u64 {
        line_of(self.text, at.span().start)
    }

    fn add<T>(&mut self, customer: &str, at: &Spanned<T>, field: &str, message: String) {
        let line = self.line(at);
        self.found.push((
            customer.to_string(),
            Error::Registry {
                path: self.path.to_path_buf(),
                line,
                field: field.to_string(),
                message,
            },
        ));
    }

    fn date(
        &mut self,
        customer: &str,
        at: &Spanned<toml::value::Datetime>,
        field: &str,
    ) -> Option<NaiveDate> {
        let v = at.get_ref();
        match (v.date, v.time, v.offset) {
            (Some(d), None, None) => {
                let date = NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into());
                if date.is_none() {
                    self.add(customer, at, field, format!("{v} is not a date"));
                }
                date
            }
            _ => {
                self.add(
                    customer,
                    at,
                    field,
                    format!("{v} is not a plain date (YYYY-MM-DD, UTC days)"),
                );
                None
            }
        }
    }

    /// A decimal given as a string, 0 or more (more than 0 when
    /// `positive`).
    fn decimal(
        &mut self,
        customer: &str,
        at: &Spanned<String>,
        field: &str,
        positive: bool,
    ) -> Option<Decimal> {
        match at.get_ref().trim().parse::<Decimal>() {
            Ok(d) if d.is_sign_negative() && !d.is_zero() => {
                self.add(customer, at, field, format!("negative amount {d}"));
                None
            }
            Ok(d) if positive && d.is_zero() => {
                self.add(customer, at, field, "must be more than 0".into());
                None
            }
            Ok(d) if d.normalize().scale() > MAX_PLACES || d.abs() >= Decimal::from(MAX_WHOLE) => {
                self.add(
                    customer,
                    at,
                    field,
                    format!(
                        "{d} must be below {MAX_WHOLE} with at most {MAX_PLACES} decimal places"
                    ),
                );
                None
            }
            Ok(d) => Some(d.normalize()),
            Err(_) => {
                self.add(
                    customer,
                    at,
                    field,
                    format!("{:?} is not a decimal number", at.get_ref()),
                );
                None
            }
        }
    }
}

fn line_of(text: &str, offset: usize) -> u64 {
    crate::model::pricing::line_of(text, offset) as u64
}

impl Contracts {
    /// Parses `contracts.toml`: the sound contracts and every problem, each
    /// naming file, line and field. A file that is not TOML, or has an
    /// unknown table or field, is one problem and no contract: `Err`.
    pub fn parse(text: &str, path: &Path) -> Result<(Contracts, Vec<Error>), Error> {
        let wire: WireFile = toml::from_str(text).map_err(|e| Error::Registry {
            path: path.to_path_buf(),
            line: e.span().map_or(0, |s| line_of(text, s.start)),
            field: "file".into(),
            message: e.message().to_string(),
        })?;
        let mut p = Problems {
            path,
            text,
            found: Vec::new(),
        };
        let mut contracts = Contracts {
            path: path.to_path_buf(),
            ..Contracts::default()
        };
        for entry in &wire.terms {
            if let Some(t) = terms(&mut p, entry) {
                contracts.terms.push(t);
            }
        }
        for entry in &wire.discounts {
            if let Some(d) = discount(&mut p, entry) {
                contracts.discounts.push(d);
            }
        }
        for entry in &wire.credits {
            if let Some(c) = credit(&mut p, entry) {
                contracts.credits.push(c);
            }
        }
        // Two terms of one customer from the same day overlap: which one
        // is in force that day is not said.
        contracts.terms.sort_by(|a, b| {
            (&a.customer_id, a.from, a.line).cmp(&(&b.customer_id, b.from, b.line))
        });
        for pair in contracts.terms.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if a.customer_id == b.customer_id && a.from == b.from {
                p.found.push((
                    b.customer_id.clone(),
                    Error::Registry {
                        path: path.to_path_buf(),
                        line: b.line,
                        field: "from".into(),
                        message: format!(
                            "terms of {} from {} overlap the terms on line {}",
                            b.customer_id, b.from, a.line
                        ),
                    },
                ));
            }
        }
        // Two discounts of one customer on the same lines at the same time
        // (or an invoice discount beside any other) would stack in an
        // order nobody wrote down: refused. (Each is compared with the
        // customer's earlier ones only.)
        contracts
            .discounts
            .sort_by(|a, b| (&a.customer_id, a.line).cmp(&(&b.customer_id, b.line)));
        for (i, b) in contracts.discounts.iter().enumerate() {
            let first = contracts.discounts[..i].partition_point(|a| a.customer_id < b.customer_id);
            let clash = contracts.discounts[first..i].iter().find(|a| {
                a.customer_id == b.customer_id
                    && (a.applies_to == b.applies_to
                        || a.applies_to == DiscountScope::Invoice
                        || b.applies_to == DiscountScope::Invoice)
                    && a.from < b.until.unwrap_or(NaiveDate::MAX)
                    && b.from < a.until.unwrap_or(NaiveDate::MAX)
            });
            if let Some(a) = clash {
                p.found.push((
                    b.customer_id.clone(),
                    Error::Registry {
                        path: path.to_path_buf(),
                        line: b.line,
                        field: "from".into(),
                        message: format!(
                            "this discount of {} overlaps the discount on line {} on the same \
                             lines (discounts do not stack; an invoice discount overlaps every other)",
                            b.customer_id, a.line
                        ),
                    },
                ));
            }
        }
        let mut grant_ids: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for c in &contracts.credits {
            if let Some(first) = grant_ids.insert((&c.customer_id, &c.grant_id), c.line) {
                p.found.push((
                    c.customer_id.clone(),
                    Error::Registry {
                        path: path.to_path_buf(),
                        line: c.line,
                        field: "grant_id".into(),
                        message: format!(
                            "grant {} of {} is already on line {first}",
                            c.grant_id, c.customer_id
                        ),
                    },
                ));
            }
        }
        contracts.credits.sort_by(|a, b| {
            let expiry = |c: &CreditGrant| (c.expires.is_none(), c.expires);
            (
                &a.customer_id,
                a.priority,
                expiry(a),
                a.granted,
                &a.grant_id,
            )
                .cmp(&(
                    &b.customer_id,
                    b.priority,
                    expiry(b),
                    b.granted,
                    &b.grant_id,
                ))
        });
        let mut problems = Vec::new();
        let mut refused = BTreeSet::new();
        for (customer, e) in p.found {
            refused.insert(customer);
            problems.push(e);
        }
        problems.sort_by_key(|e| match e {
            Error::Registry { line, .. } => *line,
            _ => 0,
        });
        contracts.refuse(&refused);
        Ok((contracts, problems))
    }

    /// Refuses the customers of credit grants in a currency `has_rate`
    /// cannot convert to the customer's invoice currency (`currency_of`;
    /// a customer it does not know is refused too): each gets a problem
    /// and no contract.
    pub fn check_currencies(
        &mut self,
        currency_of: impl Fn(&str) -> Option<String>,
        has_rate: impl Fn(&str, &str) -> bool,
    ) -> Vec<Error> {
        let mut problems = Vec::new();
        let mut refused = BTreeSet::new();
        for customer in self.customers() {
            let line = self.first_line(customer);
            match currency_of(customer) {
                None => {
                    problems.push(Error::Registry {
                        path: self.path.clone(),
                        line,
                        field: "customer_id".into(),
                        message: format!("{customer} is not in customers.csv"),
                    });
                    refused.insert(customer.to_string());
                }
                Some(currency) => {
                    for c in self.credits_of(customer) {
                        if c.currency != currency && !has_rate(&c.currency, &currency) {
                            problems.push(Error::Registry {
                                path: self.path.clone(),
                                line: c.line,
                                field: "currency".into(),
                                message: format!(
                                    "credit in {} for a customer invoiced in {currency}: \
                                     pricing.toml has no {} -> {currency} rate",
                                    c.currency, c.currency
                                ),
                            });
                            refused.insert(customer.to_string());
                        }
                    }
                }
            }
        }
        self.refuse(&refused);
        problems
    }

    /// Takes every entry of these customers out and marks them refused.
    pub fn refuse(&mut self, customers: &BTreeSet<String>) {
        self.terms.retain(|t| !customers.contains(&t.customer_id));
        self.discounts
            .retain(|d| !customers.contains(&d.customer_id));
        self.credits.retain(|c| !customers.contains(&c.customer_id));
        self.refused.extend(customers.iter().cloned());
    }

    fn first_line(&self, customer: &str) -> u64 {
        let terms = self.terms_of(customer).iter().map(|t| t.line);
        let discounts = self.discounts_of(customer).iter().map(|d| d.line);
        let credits = self.credits_of(customer).iter().map(|c| c.line);
        terms.chain(discounts).chain(credits).min().unwrap_or(0)
    }

    /// The customer's terms, by `from` (the entries are kept sorted by
    /// customer: a lookup is a binary search, not a scan of every entry).
    pub fn terms_of(&self, customer: &str) -> &[Terms] {
        of(&self.terms, customer, |t| &t.customer_id)
    }

    /// The customer's discounts, in file order.
    pub fn discounts_of(&self, customer: &str) -> &[Discount] {
        of(&self.discounts, customer, |d| &d.customer_id)
    }

    /// The customer's credit grants, in burn order.
    pub fn credits_of(&self, customer: &str) -> &[CreditGrant] {
        of(&self.credits, customer, |c| &c.customer_id)
    }

    /// Every customer with an entry (terms, a discount or a credit grant).
    pub fn customers(&self) -> BTreeSet<&str> {
        self.terms
            .iter()
            .map(|t| t.customer_id.as_str())
            .chain(self.discounts.iter().map(|d| d.customer_id.as_str()))
            .chain(self.credits.iter().map(|c| c.customer_id.as_str()))
            .collect()
    }

    /// Whether the customer has terms or discounts: its usage is billed
    /// by parts of the month (credits alone do not split a month).
    pub fn has_parts(&self, customer: &str) -> bool {
        !self.terms_of(customer).is_empty() || !self.discounts_of(customer).is_empty()
    }

    /// The parts of `[start, end)` a customer's usage is billed in: cut
    /// where its terms change (terms equal to the ones before them are no
    /// change: a re-signed identical contract bills what no change bills)
    /// and where a discount starts or ends, so that each part is under
    /// one set of terms (`None`: none in force) and each discount covers a
    /// part whole or not at all.
    pub fn parts(&self, customer: &str, start: NaiveDate, end: NaiveDate) -> Vec<Part<'_>> {
        let mine: Vec<&Terms> = self.terms_of(customer).iter().collect();
        let in_force = |d: NaiveDate| mine.iter().rev().find(|t| t.from <= d).copied();
        let same = |a: Option<&Terms>, b: Option<&Terms>| match (a, b) {
            (Some(a), Some(b)) => a.commitment == b.commitment && a.tiers == b.tiers,
            (None, None) => true,
            _ => false,
        };
        let terms_cuts = mine
            .iter()
            .map(|t| t.from)
            .filter(|d| !same(in_force(*d), d.pred_opt().and_then(in_force)));
        let discount_cuts = self
            .discounts_of(customer)
            .iter()
            .flat_map(|d| [Some(d.from), d.until])
            .flatten();
        let mut cuts: BTreeSet<NaiveDate> = terms_cuts
            .chain(discount_cuts)
            .filter(|d| *d > start && *d < end)
            .collect();
        cuts.insert(start);
        cuts.insert(end);
        let cuts: Vec<NaiveDate> = cuts.into_iter().collect();
        cuts.windows(2)
            .map(|w| Part {
                start: w[0],
                end: w[1],
                terms: in_force(w[0]),
            })
            .collect()
    }
}

/// The run of `items` (sorted by customer) that belongs to `customer`.
fn of<'a, T>(items: &'a [T], customer: &str, id: impl Fn(&T) -> &str) -> &'a [T] {
    let first = items.partition_point(|t| id(t) < customer);
    let end = first + items[first..].partition_point(|t| id(t) == customer);
    &items[first..end]
}

fn terms(p: &mut Problems, entry: &Spanned<WireTerms>) -> Option<Terms> {
    let w = entry.get_ref();
    let customer = w.customer_id.get_ref().trim().to_string();
    let before = p.found.len();
    let from = p.date(&customer, &w.from, "from");
    let commitment = w
        .commitment
        .as_ref()
        .and_then(|c| p.decimal(&customer, c, "commitment", false));
    let tiers = w.tiers.as_ref().and_then(|t| tiers(p, &customer, t));
    if customer.is_empty() {
        p.add(&customer, &w.customer_id, "customer_id", "is empty".into());
    }
    if w.commitment.is_none() && w.tiers.is_none() {
        p.add(
            &customer,
            entry,
            "terms",
            "terms need a commitment, tiers or both".into(),
        );
    }
    (p.found.len() == before).then(|| Terms {
        line: p.line(entry),
        customer_id: customer,
        from: from.expect("no problem"),
        commitment,
        tiers,
    })
}

fn tiers(p: &mut Problems, customer: &str, at: &Spanned<WireTiers>) -> Option<Tiers> {
    let w = at.get_ref();
    let before = p.found.len();
    let measure = match w.measure.get_ref().as_str() {
        "tokens" => Some(TierMeasure::Tokens),
        "api_charge" => Some(TierMeasure::ApiCharge),
        other => {
            p.add(
                customer,
                &w.measure,
                "tiers.measure",
                format!("{other:?} is not tokens or api_charge"),
            );
            None
        }
    };
    let mode = match w.mode.get_ref().as_str() {
        "graduated" => Some(TierMode::Graduated),
        "volume" => Some(TierMode::Volume),
        other => {
            p.add(
                customer,
                &w.mode,
                "tiers.mode",
                format!("{other:?} is not graduated or volume"),
            );
            None
        }
    };
    if w.steps.is_empty() || w.steps.len() > MAX_TIERS {
        p.add(
            customer,
            at,
            "tiers.steps",
            format!("needs 1 to {MAX_TIERS} tiers, not {}", w.steps.len()),
        );
    }
    let mut steps: Vec<TierStep> = Vec::new();
    for (i, s) in w.steps.iter().enumerate() {
        let s_ref = s.get_ref();
        let field = format!("tiers.steps[{i}].from");
        let from = match s_ref.from.get_ref() {
            toml::Value::Integer(n) if *n >= 0 => Some(Decimal::from(*n)),
            toml::Value::String(t) => match t.trim().parse::<Decimal>() {
                Ok(d)
                    if (!d.is_sign_negative() || d.is_zero())
                        && d.normalize().scale() <= MAX_PLACES
                        && d < Decimal::from(MAX_WHOLE) =>
                {
                    Some(d.normalize())
                }
                _ => {
                    p.add(
                        customer,
                        &s_ref.from,
                        &field,
                        format!(
                            "{t:?} is not an amount of 0 or more below {MAX_WHOLE} with at most \
                             {MAX_PLACES} decimal places"
                        ),
                    );
                    None
                }
            },
            other => {
                p.add(
                    customer,
                    &s_ref.from,
                    &field,
                    format!("{other} is not a count or amount of 0 or more"),
                );
                None
            }
        };
        if measure == Some(TierMeasure::Tokens) && from.is_some_and(|f| !f.fract().is_zero()) {
            p.add(customer, &s_ref.from, &field, "tokens are whole".into());
        }
        let factor = p.decimal(
            customer,
            &s_ref.factor,
            &format!("tiers.steps[{i}].factor"),
            false,
        );
        if let Some(f) = from {
            match steps.last() {
                None if !f.is_zero() => {
                    p.add(
                        customer,
                        &s_ref.from,
                        &field,
                        format!("the first tier starts at 0, not {f}"),
                    );
                }
                Some(prev) if f <= prev.from => {
                    p.add(
                        customer,
                        &s_ref.from,
                        &field,
                        format!(
                            "tiers out of order: {f} is not above the tier before ({})",
                            prev.from
                        ),
                    );
                }
                _ => {}
            }
            steps.push(TierStep {
                from: f,
                factor: factor.unwrap_or_default(),
            });
        }
    }
    (p.found.len() == before).then(|| Tiers {
        measure: measure.expect("no problem"),
        mode: mode.expect("no problem"),
        steps,
    })
}

fn discount(p: &mut Problems, entry: &Spanned<WireDiscount>) -> Option<Discount> {
    let w = entry.get_ref();
    let customer = w.customer_id.get_ref().trim().to_string();
    let before = p.found.len();
    let from = p.date(&customer, &w.from, "from");
    let until = w.until.as_ref().and_then(|u| p.date(&customer, u, "until"));
    if let (Some(f), Some(u), Some(at)) = (from, until, &w.until)
        && u <= f
    {
        p.add(&customer, at, "until", format!("{u} is not after from {f}"));
    }
    let value = match (&w.percent, &w.amount) {
        (Some(pc), None) => p.decimal(&customer, pc, "percent", true).and_then(|d| {
            if d > Decimal::ONE_HUNDRED {
                p.add(&customer, pc, "percent", format!("{d} is more than 100"));
                None
            } else {
                Some(DiscountValue::Percent(d))
            }
        }),
        (None, Some(a)) => p
            .decimal(&customer, a, "amount", true)
            .map(DiscountValue::Amount),
        _ => {
            p.add(
                &customer,
                entry,
                "percent",
                "a discount is a percent or an amount: give exactly one".into(),
            );
            None
        }
    };
    let applies_to = match w.applies_to.get_ref().as_str() {
        "invoice" => Some(DiscountScope::Invoice),
        "subscription" => Some(DiscountScope::Subscription),
        "api_usage" => Some(DiscountScope::ApiUsage),
        "compute" => Some(DiscountScope::Compute),
        other => {
            p.add(
                &customer,
                &w.applies_to,
                "applies_to",
                format!("{other:?} is not invoice, subscription, api_usage or compute"),
            );
            None
        }
    };
    (p.found.len() == before).then(|| Discount {
        line: p.line(entry),
        customer_id: customer,
        value: value.expect("no problem"),
        applies_to: applies_to.expect("no problem"),
        from: from.expect("no problem"),
        until,
    })
}

fn credit(p: &mut Problems, entry: &Spanned<WireCredit>) -> Option<CreditGrant> {
    let w = entry.get_ref();
    let customer = w.customer_id.get_ref().trim().to_string();
    let before = p.found.len();
    let amount = p.decimal(&customer, &w.amount, "amount", true);
    let granted = p.date(&customer, &w.granted, "granted");
    let expires = w
        .expires
        .as_ref()
        .and_then(|e| p.date(&customer, e, "expires"));
    if let (Some(g), Some(e), Some(at)) = (granted, expires, &w.expires)
        && e <= g
    {
        p.add(
            &customer,
            at,
            "expires",
            format!("{e} is not after granted {g}"),
        );
    }
    let currency = w.currency.get_ref().trim().to_ascii_uppercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        p.add(
            &customer,
            &w.currency,
            "currency",
            format!("{:?} is not an ISO 4217 code", w.currency.get_ref()),
        );
    }
    let grant_id = w.grant_id.get_ref().trim().to_string();
    if grant_id.is_empty() || grant_id.len() > 64 {
        p.add(
            &customer,
            &w.grant_id,
            "grant_id",
            "needs 1 to 64 characters".into(),
        );
    }
    let priority = match &w.priority {
        None => Some(0),
        Some(at) => match u32::try_from(*at.get_ref()) {
            Ok(n) => Some(n),
            Err(_) => {
                p.add(
                    &customer,
                    at,
                    "priority",
                    format!("{} is not 0 or more", at.get_ref()),
                );
                None
            }
        },
    };
    (p.found.len() == before).then(|| CreditGrant {
        line: p.line(entry),
        customer_id: customer,
        grant_id,
        amount: amount.expect("no problem"),
        currency,
        granted: granted.expect("no problem"),
        expires,
        priority: priority.expect("no problem"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn parse(text: &str) -> (Contracts, Vec<String>) {
        let (c, problems) = Contracts::parse(text, Path::new("contracts.toml")).unwrap();
        (c, problems.iter().map(ToString::to_string).collect())
    }

    const GOOD: &str = r#"
[[terms]]
customer_id = "acme"
from = 2026-10-01
commitment = "500.00"

[[terms]]
customer_id = "acme"
from = 2026-10-16
commitment = "500"
tiers = { measure = "tokens", mode = "graduated", steps = [
    { from = 0, factor = "1.30" },
    { from = 10_000_000, factor = "1.2" },
] }

[[discounts]]
customer_id = "acme"
percent = "10"
applies_to = "api_usage"
from = 2026-10-15

[[credits]]
customer_id = "acme"
grant_id = "late"
amount = "100"
currency = "eur"
granted = 2026-09-01

[[credits]]
customer_id = "acme"
grant_id = "soon"
amount = "50.5"
currency = "EUR"
granted = 2026-10-01
expires = 2026-11-01
"#;

    #[test]
    fn a_sound_file_parses_with_its_lines_and_burn_order() {
        let (c, problems) = parse(GOOD);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(c.terms.len(), 2);
        assert_eq!((c.terms[0].line, c.terms[1].line), (2, 7));
        assert_eq!(c.terms[1].commitment, Some(Decimal::from(500)));
        let tiers = c.terms[1].tiers.as_ref().unwrap();
        assert_eq!(tiers.steps[1].from, Decimal::from(10_000_000));
        assert_eq!(c.discounts[0].value, DiscountValue::Percent(Decimal::TEN));
        // Soonest expiry first; a grant without expiry last.
        let ids: Vec<&str> = c.credits.iter().map(|g| g.grant_id.as_str()).collect();
        assert_eq!(ids, ["soon", "late"]);
        assert_eq!(c.credits[1].currency, "EUR");
        // Cut at the discount (15th) and the new terms (16th).
        let parts = c.parts("acme", d("2026-10-01"), d("2026-11-01"));
        let spans: Vec<(NaiveDate, NaiveDate, u64)> = parts
            .iter()
            .map(|p| (p.start, p.end, p.terms.unwrap().line))
            .collect();
        assert_eq!(
            spans,
            [
                (d("2026-10-01"), d("2026-10-15"), 2),
                (d("2026-10-15"), d("2026-10-16"), 2),
                (d("2026-10-16"), d("2026-11-01"), 7)
            ]
        );
        let none = c.parts("other", d("2026-10-01"), d("2026-11-01"));
        assert_eq!(
            none,
            vec![Part {
                start: d("2026-10-01"),
                end: d("2026-11-01"),
                terms: None
            }]
        );
        assert!(c.has_parts("acme") && !c.has_parts("other"));
    }

    #[test]
    fn bad_contracts_name_line_and_field_and_refuse_only_their_customer() {
        let text = r#"
[[terms]]
customer_id = "a"
from = 2026-10-01
tiers = { measure = "tokens", mode = "graduated", steps = [
    { from = 0, factor = "1.3" },
    { from = 5, factor = "1.2" },
    { from = 5, factor = "1.1" },
] }

[[terms]]
customer_id = "b"
from = 2026-10-01
commitment = "100"

[[terms]]
customer_id = "b"
from = 2026-10-01
commitment = "200"

[[credits]]
customer_id = "c"
grant_id = "g"
amount = "-5"
currency = "EUR"
granted = 2026-10-01

[[discounts]]
customer_id = "d"
percent = "10"
amount = "5"
applies_to = "invoice"
from = 2026-10-01

[[terms]]
customer_id = "ok"
from = 2026-10-01
commitment = "1"
"#;
        let (c, problems) = parse(text);
        assert_eq!(
            problems,
            [
                "contracts.toml:8: field `tiers.steps[2].from`: tiers out of order: 5 is not above the tier before (5)",
                "contracts.toml:16: field `from`: terms of b from 2026-10-01 overlap the terms on line 11",
                "contracts.toml:24: field `amount`: negative amount -5",
                "contracts.toml:28: field `percent`: a discount is a percent or an amount: give exactly one",
            ]
        );
        assert_eq!(c.refused.iter().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        assert_eq!(c.terms.len(), 1);
        assert_eq!(c.terms[0].customer_id, "ok");
    }

    #[test]
    fn a_credit_without_an_fx_rate_and_an_unknown_customer_are_refused() {
        let (mut c, problems) = parse(GOOD);
        assert!(problems.is_empty());
        let currency_of = |id: &str| (id == "acme").then(|| "USD".to_string());
        let problems = c.check_currencies(currency_of, |from, to| (from, to) == ("GBP", "USD"));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].to_string().contains("no EUR -> USD rate"),
            "{}",
            problems[0]
        );
        assert!(c.refused.contains("acme") && c.credits.is_empty() && c.terms.is_empty());

        let (mut c, _) = parse(GOOD);
        let problems = c.check_currencies(|_| None, |_, _| true);
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].to_string(),
            "contracts.toml:2: field `customer_id`: acme is not in customers.csv"
        );
    }

    #[test]
    fn identical_terms_do_not_cut_the_month_and_stacked_discounts_are_refused() {
        let (c, problems) = parse(
            r#"
[[terms]]
customer_id = "a"
from = 2026-09-01
commitment = "100"

[[terms]]
customer_id = "a"
from = 2026-10-10
commitment = "100.00"

[[terms]]
customer_id = "a"
from = 2026-10-20
commitment = "200"
"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let parts = c.parts("a", d("2026-10-01"), d("2026-11-01"));
        let spans: Vec<(NaiveDate, NaiveDate)> = parts.iter().map(|p| (p.start, p.end)).collect();
        assert_eq!(
            spans,
            [
                (d("2026-10-01"), d("2026-10-20")),
                (d("2026-10-20"), d("2026-11-01"))
            ]
        );

        let (c, problems) = parse(
            r#"
[[discounts]]
customer_id = "a"
percent = "10"
applies_to = "compute"
from = 2026-10-01
until = 2026-10-10

[[discounts]]
customer_id = "a"
amount = "5"
applies_to = "api_usage"
from = 2026-10-05

[[discounts]]
customer_id = "a"
amount = "5"
applies_to = "compute"
from = 2026-10-10

[[discounts]]
customer_id = "b"
percent = "10"
applies_to = "compute"
from = 2026-10-01

[[discounts]]
customer_id = "b"
percent = "1.0000001"
applies_to = "invoice"
from = 2026-11-01
"#,
        );
        assert_eq!(
            problems,
            [
                "contracts.toml:29: field `percent`: 1.0000001 must be below 1000000000000 with at most 6 decimal places"
            ]
        );
        assert_eq!(c.discounts.len(), 3, "a's do not overlap: {c:?}");
        let (_, problems) = parse(
            r#"
[[discounts]]
customer_id = "b"
percent = "10"
applies_to = "compute"
from = 2026-10-01

[[discounts]]
customer_id = "b"
percent = "1"
applies_to = "invoice"
from = 2026-10-31
until = 2026-11-02
"#,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(
                "contracts.toml:8: field `from`: this discount of b overlaps the discount on line 2"
            ),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn dates_must_be_plain_days_and_unknown_fields_are_refused() {
        let (_, problems) = parse(
            "[[terms]]\ncustomer_id = \"a\"\nfrom = 2026-10-01T00:00:00Z\ncommitment = \"1\"\n",
        );
        assert_eq!(
            problems,
            [
                "contracts.toml:3: field `from`: 2026-10-01T00:00:00Z is not a plain date (YYYY-MM-DD, UTC days)"
            ]
        );
        let err = Contracts::parse(
            "[[terms]]\ncustomer_id = \"a\"\nfrom = 2026-10-01\nminimum = \"1\"\n",
            Path::new("contracts.toml"),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("contracts.toml:4: field `file`:"),
            "{err}"
        );
    }
}
