//! `pricing.toml`: model prices in exact decimals, long-context tiers and
//! effective dates. The file is read into a wire struct (unknown keys are
//! errors) and validated into [`Pricing`]; every problem names its key.
//! Pricing does no IO beyond reading the file, and money is never `f64`.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::model::error::{Error, Result};
use crate::model::registry::{Customer, Registry};
use crate::model::time::Ts;

/// Currencies meter can bill in (ISO 4217).
pub const CURRENCIES: [&str; 10] = [
    "USD", "EUR", "GBP", "CHF", "JPY", "CAD", "AUD", "SEK", "NOK", "DKK",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireFile {
    currency: String,
    #[serde(default)]
    plans: std::collections::BTreeMap<String, WirePlan>,
    #[serde(default)]
    fx: Vec<WireFx>,
    #[serde(default)]
    meters: Vec<WireMeter>,
    #[serde(default)]
    models: Vec<WireModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePlan {
    monthly_fee: String,
    currency: String,
    included_tokens: u64,
    compute_hour_rate: String,
    overage_markup: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireFx {
    base: String,
    quote: String,
    rate: String,
    effective_from: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMeter {
    event_name: String,
    measures: String,
    unit: String,
}

/// A subscription plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub monthly_fee: Decimal,
    pub currency: String,
    /// Tokens a month the fee includes.
    pub included_tokens: u64,
    /// Per compute hour, in the plan's currency (0 where the fee covers it).
    pub compute_hour_rate: Decimal,
    /// Usage beyond the allowance is billed at cost x (1 + markup).
    pub overage_markup: Decimal,
}

/// `1 base = rate quote` from `effective_from` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FxRate {
    pub base: String,
    pub quote: String,
    pub rate: Decimal,
    pub effective_from: NaiveDate,
}

/// What a Stripe meter counts.
pub const METER_MEASURES: [&str; 7] = [
    "tokens",
    "input_tokens",
    "output_tokens",
    "requests",
    "compute_minutes",
    "commands",
    "provider_cost",
];

/// A Stripe billing meter to emit events for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meter {
    pub event_name: String,
    pub measures: String,
    pub unit: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireModel {
    key: String,
    provider: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
    effective_from: String,
    input: String,
    output: String,
    cache_read: Option<String>,
    cache_write: Option<String>,
    cache_write_1h: Option<String>,
    reasoning: Option<String>,
    #[serde(default)]
    tiers: Vec<WireTier>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireTier {
    above_input_tokens: u64,
    input: Option<String>,
    output: Option<String>,
    cache_read: Option<String>,
    cache_write: Option<String>,
    cache_write_1h: Option<String>,
    reasoning: Option<String>,
}

/// Prices per 1,000,000 tokens. `None` where the model has no such price.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rates {
    pub input: Option<Decimal>,
    pub output: Option<Decimal>,
    pub cache_read: Option<Decimal>,
    pub cache_write: Option<Decimal>,
    pub cache_write_1h: Option<Decimal>,
    /// Only where reasoning is priced unlike output.
    pub reasoning: Option<Decimal>,
}

impl Rates {
    /// These rates with `tier`'s where it sets one.
    fn overlay(&self, tier: &Rates) -> Rates {
        Rates {
            input: tier.input.or(self.input),
            output: tier.output.or(self.output),
            cache_read: tier.cache_read.or(self.cache_read),
            cache_write: tier.cache_write.or(self.cache_write),
            cache_write_1h: tier.cache_write_1h.or(self.cache_write_1h),
            reasoning: tier.reasoning.or(self.reasoning),
        }
    }
}

/// Above `above_input_tokens` (input + cache reads + cache writes of one
/// request), the tier's rates apply to the whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub above_input_tokens: u64,
    pub rates: Rates,
}

/// The prices of one model from `effective_from` (00:00 UTC) on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceEntry {
    pub key: String,
    pub provider: String,
    pub effective_from: NaiveDate,
    pub rates: Rates,
    /// Sorted by threshold.
    pub tiers: Vec<Tier>,
}

/// A validated price list.
#[derive(Debug, Clone)]
pub struct Pricing {
    pub currency: String,
    pub plans: std::collections::BTreeMap<String, Plan>,
    /// Sorted by (base, quote, effective_from).
    pub fx: Vec<FxRate>,
    pub meters: Vec<Meter>,
    /// Per model key, its entries sorted by `effective_from`.
    models: Vec<(String, Vec<PriceEntry>)>,
    exact: HashMap<String, usize>,
    /// (prefix, model index), longest prefix first.
    prefixes: Vec<(String, usize)>,
}

/// Customers whose plan the price list does not have ([`Pricing::check_customers`]).
#[derive(Debug, Default)]
pub struct PlanCheck {
    /// In service: `meter bill` refuses a month they are billed in.
    pub in_service: Vec<Error>,
    /// Service ended: only a rerun of their past months is refused.
    pub ended: Vec<Error>,
}

/// One problem in a pricing file, at a key such as `models[3].input`.
pub use crate::model::error::Problem;

/// Token counts of one event, as the lake stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub input: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    /// Output including reasoning.
    pub output: u64,
    pub reasoning: u64,
}

/// Why an event could not be priced. It is kept with a null cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unpriced {
    UnknownModel,
    BeforeFirstPrice { key: String, first: NaiveDate },
    NoRate { key: String, rate: &'static str },
}

impl fmt::Display for Unpriced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unpriced::UnknownModel => f.write_str("no price matches the model"),
            Unpriced::BeforeFirstPrice { key, first } => {
                write!(f, "{key} has no price before {first}")
            }
            Unpriced::NoRate { key, rate } => {
                write!(f, "{key} has no {rate} price but the event has such tokens")
            }
        }
    }
}

/// The price of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced<'a> {
    pub entry: &'a PriceEntry,
    /// In the price list's currency, unrounded.
    pub cost: Decimal,
    /// The tier applied, if any.
    pub tier: Option<u64>,
}

/// Lower-cases a raw model name and drops a `models/` or provider prefix.
pub fn normalize_model(raw: &str) -> String {
    let m = raw.trim().to_ascii_lowercase();
    let m = m.strip_prefix("models/").unwrap_or(&m);
    let m = match m.split_once('/') {
        Some((_, rest)) => rest,
        None => m,
    };
    m.to_string()
}

impl Pricing {
    /// Validates pricing text; all problems at once.
    pub fn parse(text: &str) -> std::result::Result<Pricing, Vec<Problem>> {
        let wire: WireFile = toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|s| line_of(text, s.start))
                .map_or("file".to_string(), |l| format!("line {l}"));
            vec![Problem {
                key,
                message: e.message().to_string(),
            }]
        })?;
        let mut problems = Vec::new();
        let mut problem = |key: String, message: String| problems.push(Problem { key, message });
        let currency = wire.currency.trim().to_ascii_uppercase();
        if !CURRENCIES.contains(&currency.as_str()) {
            problem(
                "currency".into(),
                format!(
                    "{:?} is not a currency meter bills in ({})",
                    wire.currency,
                    CURRENCIES.join(", ")
                ),
            );
        }
        let known = |c: &str| CURRENCIES.contains(&c);
        let decimal = |v: &str| v.trim().parse::<Decimal>().ok();
        let mut plans = std::collections::BTreeMap::new();
        for (name, p) in &wire.plans {
            let at = |field: &str| format!("plans.{name}.{field}");
            let mut amount = |field: &str, v: &str| match decimal(v) {
                Some(d) if !d.is_sign_negative() || d.is_zero() => d,
                Some(d) => {
                    problem(at(field), format!("negative amount {d}"));
                    Decimal::ZERO
                }
                None => {
                    problem(at(field), format!("{v:?} is not a decimal number"));
                    Decimal::ZERO
                }
            };
            let plan = Plan {
                name: name.clone(),
                monthly_fee: amount("monthly_fee", &p.monthly_fee),
                currency: p.currency.trim().to_ascii_uppercase(),
                included_tokens: p.included_tokens,
                compute_hour_rate: amount("compute_hour_rate", &p.compute_hour_rate),
                overage_markup: amount("overage_markup", &p.overage_markup),
            };
            if !known(&plan.currency) {
                problem(
                    at("currency"),
                    format!("{:?} is not a currency meter bills in", p.currency),
                );
            }
            plans.insert(name.clone(), plan);
        }
        let mut fx: Vec<FxRate> = Vec::new();
        for (i, f) in wire.fx.iter().enumerate() {
            let at = |field: &str| format!("fx[{i}].{field}");
            let (base, quote) = (
                f.base.trim().to_ascii_uppercase(),
                f.quote.trim().to_ascii_uppercase(),
            );
            for (field, c) in [("base", &base), ("quote", &quote)] {
                if !known(c) {
                    problem(at(field), format!("{c:?} is not a currency meter bills in"));
                }
            }
            if base == quote {
                problem(at("quote"), "base and quote are the same currency".into());
            }
            let rate = match decimal(&f.rate) {
                Some(r) if r > Decimal::ZERO => r,
                _ => {
                    problem(
                        at("rate"),
                        format!("{:?} is not a positive decimal", f.rate),
                    );
                    continue;
                }
            };
            let Ok(effective_from) = NaiveDate::parse_from_str(&f.effective_from, "%Y-%m-%d")
            else {
                problem(
                    at("effective_from"),
                    format!("{:?} is not a YYYY-MM-DD date", f.effective_from),
                );
                continue;
            };
            if fx
                .iter()
                .any(|o| o.base == base && o.quote == quote && o.effective_from == effective_from)
            {
                problem(
                    at("effective_from"),
                    format!(
                        "overlapping effective dates: {base}/{quote} already has a rate from {effective_from}"
                    ),
                );
            }
            fx.push(FxRate {
                base,
                quote,
                rate,
                effective_from,
            });
        }
        fx.sort_by(|a, b| {
            (&a.base, &a.quote, a.effective_from).cmp(&(&b.base, &b.quote, b.effective_from))
        });
        let mut meters: Vec<Meter> = Vec::new();
        for (i, m) in wire.meters.iter().enumerate() {
            let at = |field: &str| format!("meters[{i}].{field}");
            let name = m.event_name.trim();
            if name.is_empty()
                || name.len() > 100
                || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                problem(
                    at("event_name"),
                    format!(
                        "{name:?}: 1 to 100 of a-z A-Z 0-9 _ (Stripe's limit is 100 characters)"
                    ),
                );
            }
            if meters.iter().any(|o| o.event_name == name) {
                problem(at("event_name"), format!("{name:?} is listed twice"));
            }
            if !METER_MEASURES.contains(&m.measures.as_str()) {
                problem(
                    at("measures"),
                    format!(
                        "{:?} is not one of {}",
                        m.measures,
                        METER_MEASURES.join(", ")
                    ),
                );
            }
            meters.push(Meter {
                event_name: name.to_string(),
                measures: m.measures.clone(),
                unit: m.unit.clone(),
            });
        }
        let mut by_key: Vec<(String, Vec<PriceEntry>)> = Vec::new();
        let mut matchers: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        for (i, m) in wire.models.iter().enumerate() {
            let at = |field: &str| format!("models[{i}] ({}).{field}", m.key);
            if m.key.trim().is_empty() {
                problem(format!("models[{i}].key"), "empty".into());
                continue;
            }
            let effective_from = match NaiveDate::parse_from_str(&m.effective_from, "%Y-%m-%d") {
                Ok(d) => d,
                Err(_) => {
                    problem(
                        at("effective_from"),
                        format!("{:?} is not a YYYY-MM-DD date", m.effective_from),
                    );
                    continue;
                }
            };
            let mut price = |field: &str, v: &Option<String>| -> Option<Decimal> {
                parse_price(v.as_deref()?, None)
                    .map_err(|m| problem(at(field), m))
                    .ok()
            };
            let rates = Rates {
                input: price("input", &Some(m.input.clone())),
                output: price("output", &Some(m.output.clone())),
                cache_read: price("cache_read", &m.cache_read),
                cache_write: price("cache_write", &m.cache_write),
                cache_write_1h: price("cache_write_1h", &m.cache_write_1h),
                reasoning: price("reasoning", &m.reasoning),
            };
            let mut tiers = Vec::new();
            for (j, t) in m.tiers.iter().enumerate() {
                let tat = |field: &str| format!("models[{i}] ({}).tiers[{j}].{field}", m.key);
                let mut tprice =
                    |field: &str, v: &Option<String>, base: Option<Decimal>| -> Option<Decimal> {
                        parse_price(v.as_deref()?, base)
                            .map_err(|m| problem(tat(field), m))
                            .ok()
                    };
                let trates = Rates {
                    input: tprice("input", &t.input, rates.input),
                    output: tprice("output", &t.output, rates.output),
                    cache_read: tprice("cache_read", &t.cache_read, rates.cache_read),
                    cache_write: tprice("cache_write", &t.cache_write, rates.cache_write),
                    cache_write_1h: tprice(
                        "cache_write_1h",
                        &t.cache_write_1h,
                        rates.cache_write_1h,
                    ),
                    reasoning: tprice("reasoning", &t.reasoning, rates.reasoning),
                };
                if t.above_input_tokens == 0 {
                    problem(tat("above_input_tokens"), "must be above 0".into());
                }
                if tiers
                    .iter()
                    .any(|x: &Tier| x.above_input_tokens == t.above_input_tokens)
                {
                    problem(
                        tat("above_input_tokens"),
                        format!("a tier above {} already exists", t.above_input_tokens),
                    );
                }
                tiers.push(Tier {
                    above_input_tokens: t.above_input_tokens,
                    rates: trates,
                });
            }
            tiers.sort_by_key(|t| t.above_input_tokens);
            let names: Vec<String> = m.names.iter().map(|n| normalize_model(n)).collect();
            let patterns: Vec<String> = m
                .patterns
                .iter()
                .map(|p| p.trim().to_ascii_lowercase())
                .collect();
            for (j, p) in patterns.iter().enumerate() {
                let stars = p.matches('*').count();
                if stars != 1 || !p.ends_with('*') || p.len() < 2 {
                    problem(
                        format!("models[{i}] ({}).patterns[{j}]", m.key),
                        format!("{p:?}: a pattern is a prefix followed by one `*`"),
                    );
                }
            }
            if names.is_empty() && patterns.is_empty() {
                problem(
                    at("names"),
                    "a model needs names or patterns to match".into(),
                );
            }
            let entry = PriceEntry {
                key: m.key.clone(),
                provider: m.provider.trim().to_ascii_lowercase(),
                effective_from,
                rates,
                tiers,
            };
            match by_key.iter().position(|(k, _)| *k == m.key) {
                Some(idx) => {
                    let (ref first_names, ref first_patterns) = matchers[idx];
                    if *first_names != names || *first_patterns != patterns {
                        problem(
                            at("names"),
                            "entries of one key must match the same names and patterns".into(),
                        );
                    }
                    let entries = &mut by_key[idx].1;
                    if entries[0].provider != entry.provider {
                        problem(
                            at("provider"),
                            format!(
                                "{:?} differs from the key's earlier entry ({:?})",
                                entry.provider, entries[0].provider
                            ),
                        );
                    }
                    if entries.iter().any(|e| e.effective_from == effective_from) {
                        problem(
                            at("effective_from"),
                            format!(
                                "overlapping effective dates: {} already has prices from {effective_from}",
                                m.key
                            ),
                        );
                    }
                    entries.push(entry);
                }
                None => {
                    by_key.push((m.key.clone(), vec![entry]));
                    matchers.push((names, patterns));
                }
            }
        }
        let mut exact: HashMap<String, usize> = HashMap::new();
        let mut prefixes: Vec<(String, usize)> = Vec::new();
        for (idx, (names, patterns)) in matchers.iter().enumerate() {
            let key = &by_key[idx].0;
            for n in names {
                if let Some(other) = exact.insert(n.clone(), idx)
                    && other != idx
                {
                    problem(
                        format!("models ({key}).names"),
                        format!("{n:?} is also a name of {}", by_key[other].0),
                    );
                }
            }
            for p in patterns {
                prefixes.push((p.trim_end_matches('*').to_string(), idx));
            }
        }
        for (a, (pa, ia)) in prefixes.iter().enumerate() {
            for (pb, ib) in prefixes.iter().skip(a + 1) {
                if ia != ib && (pa.starts_with(pb.as_str()) || pb.starts_with(pa.as_str())) {
                    problem(
                        format!("models ({}).patterns", by_key[*ia].0),
                        format!(
                            "{pa}* and {pb}* of {} can match the same raw name",
                            by_key[*ib].0
                        ),
                    );
                }
            }
            for (n, ni) in &exact {
                if ni != ia && n.starts_with(pa.as_str()) {
                    problem(
                        format!("models ({}).patterns", by_key[*ia].0),
                        format!("{pa}* matches {n:?}, a name of {}", by_key[*ni].0),
                    );
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        for (_, entries) in &mut by_key {
            entries.sort_by_key(|e| e.effective_from);
        }
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Ok(Pricing {
            currency,
            plans,
            fx,
            meters,
            models: by_key,
            exact,
            prefixes,
        })
    }

    /// How many units of `to` one unit of `from` is worth on `date`, by the
    /// rate in force then (either direction of a listed pair).
    pub fn fx_rate(&self, from: &str, to: &str, date: NaiveDate) -> Option<Decimal> {
        if from == to {
            return Some(Decimal::ONE);
        }
        if let Some(rate) = self.fx_in_force(from, to, date) {
            return Some(rate);
        }
        self.fx_in_force(to, from, date)
            .map(|rate| Decimal::ONE / rate)
    }

    /// The listed rate `1 base = rate quote` in force on `date`, in this
    /// direction only.
    pub fn fx_in_force(&self, base: &str, quote: &str, date: NaiveDate) -> Option<Decimal> {
        self.fx
            .iter()
            .rfind(|f| f.base == base && f.quote == quote && f.effective_from <= date)
            .map(|f| f.rate)
    }

    /// The problem of a customer whose plan (`customers.csv` column `tier`)
    /// is not a key of `[plans]`, as a registry error naming the file, line
    /// and field; `None` when the plan exists. Billing cannot invoice such a
    /// customer: `meter bill` refuses the month, `meter pricing check
    /// --customers` reports it first.
    pub fn plan_problem(&self, customer: &Customer, path: &Path) -> Option<Error> {
        if self.plans.contains_key(&customer.tier) {
            return None;
        }
        Some(Error::Registry {
            path: path.to_path_buf(),
            line: customer.line,
            field: "tier".into(),
            message: format!(
                "customer {}: plan {:?} is not in pricing.toml [plans] ({})",
                customer.customer_id,
                customer.tier,
                self.plans.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })
    }

    /// Checks a customer registry against the plans: the customers still in
    /// service at `now` whose plan is missing (errors: billing refuses their
    /// months), and those whose service ended (a rerun of a month they were
    /// billed in would be refused).
    pub fn check_customers(
        &self,
        registry: &Registry,
        path: &Path,
        now: DateTime<Utc>,
    ) -> PlanCheck {
        let mut check = PlanCheck::default();
        for c in &registry.customers {
            if let Some(problem) = self.plan_problem(c, path) {
                match c.ended_by(now) {
                    false => check.in_service.push(problem),
                    true => check.ended.push(problem),
                }
            }
        }
        check
    }

    /// Number of model keys and of price entries.
    pub fn size(&self) -> (usize, usize) {
        (
            self.models.len(),
            self.models.iter().map(|(_, e)| e.len()).sum(),
        )
    }

    /// The model key a raw model name belongs to.
    pub fn model_key(&self, raw_model: &str) -> Option<&str> {
        self.model_index(raw_model)
            .map(|i| self.models[i].0.as_str())
    }

    fn model_index(&self, raw_model: &str) -> Option<usize> {
        let name = normalize_model(raw_model);
        self.exact.get(&name).copied().or_else(|| {
            self.prefixes
                .iter()
                .find(|(p, _)| name.starts_with(p.as_str()))
                .map(|(_, i)| *i)
        })
    }

    /// The entry in force for a model at an instant.
    pub fn entry(&self, raw_model: &str, ts: Ts) -> Result<&PriceEntry, Unpriced> {
        let idx = self.model_index(raw_model).ok_or(Unpriced::UnknownModel)?;
        let (key, entries) = &self.models[idx];
        let date = ts.date();
        entries
            .iter()
            .rev()
            .find(|e| e.effective_from <= date)
            .ok_or_else(|| Unpriced::BeforeFirstPrice {
                key: key.clone(),
                first: entries[0].effective_from,
            })
    }

    /// Prices one event: uncached input at the input rate, cache reads and
    /// writes at theirs, output less reasoning at the output rate, reasoning
    /// at the reasoning rate (the output rate unless the model sets one). A
    /// request whose input + cache tokens exceed a tier's threshold is priced
    /// wholly at that tier.
    pub fn price(&self, raw_model: &str, ts: Ts, usage: Usage) -> Result<Priced<'_>, Unpriced> {
        price_at(self.entry(raw_model, ts)?, usage)
    }

    /// The entry in force for a model at an instant, ready to price many
    /// events: [`Card::price`] gives what [`Pricing::price`] gives, with
    /// the entry looked up once.
    pub fn card(&self, raw_model: &str, ts: Ts) -> Result<Card<'_>, Unpriced> {
        Ok(Card::new(self.entry(raw_model, ts)?))
    }
}

/// [`Pricing::price`] with its entry found: the one definition of an
/// event's cost.
fn price_at(entry: &PriceEntry, usage: Usage) -> Result<Priced<'_>, Unpriced> {
    let tier = tier_of(entry, usage).map(|i| &entry.tiers[i]);
    let rates = match tier {
        Some(t) => entry.rates.overlay(&t.rates),
        None => entry.rates.clone(),
    };
    let no_rate = |rate| Unpriced::NoRate {
        key: entry.key.clone(),
        rate,
    };
    let charge =
        |tokens: u64, rate: Option<Decimal>, name: &'static str| -> Result<Decimal, Unpriced> {
            if tokens == 0 {
                return Ok(Decimal::ZERO);
            }
            Ok(Decimal::from(tokens) * rate.ok_or_else(|| no_rate(name))?)
        };
    let [input, cache_read, cache_write, output, reasoning] = charged(usage);
    let per_million = charge(input, rates.input, "input")?
        + charge(cache_read, rates.cache_read, "cache_read")?
        + charge(cache_write, rates.cache_write, "cache_write")?
        + charge(output, rates.output, "output")?
        + charge(reasoning, rates.reasoning.or(rates.output), "reasoning")?;
    Ok(Priced {
        entry,
        cost: per_million / Decimal::from(1_000_000u32),
        tier: tier.map(|t| t.above_input_tokens),
    })
}

/// The tier an event is priced at (its index in `entry.tiers`): the
/// highest whose threshold its input and cache tokens exceed.
fn tier_of(entry: &PriceEntry, usage: Usage) -> Option<usize> {
    let context = usage.input + usage.cache_read + usage.cache_write;
    (entry.tiers.iter()).rposition(|t| context > t.above_input_tokens)
}

/// The tokens charged at each rate, in order: input, cache read, cache
/// write, output less reasoning, reasoning (at most the output).
fn charged(usage: Usage) -> [u64; 5] {
    let reasoning = usage.reasoning.min(usage.output);
    [
        usage.input,
        usage.cache_read,
        usage.cache_write,
        usage.output - reasoning,
        reasoning,
    ]
}

/// A rate per million tokens as an integer: the decimal's mantissa and
/// scale, as it was written in the price list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IntRate {
    mantissa: i128,
    scale: u32,
}

/// The rates one event is charged at, in [`charged`]'s order.
type IntRates = [Option<IntRate>; 5];

fn int_rates(r: &Rates) -> IntRates {
    let int = |d: Option<Decimal>| {
        d.map(|d| IntRate {
            mantissa: d.mantissa(),
            scale: d.scale(),
        })
    };
    [
        int(r.input),
        int(r.cache_read),
        int(r.cache_write),
        int(r.output),
        int(r.reasoning.or(r.output)),
    ]
}

/// Below this a sum of products is exact in `Decimal` (96-bit mantissa):
/// no product or partial sum of [`price_at`] was rounded.
const EXACT_BELOW: i128 = 1 << 95;

/// One price entry with its rates as integers, for pricing many events:
/// the sum of tokens x rate is integer arithmetic at the largest scale of
/// the rates charged, the very value (mantissa and scale) [`price_at`]'s
/// decimal products and sums give, so only the division by a million is
/// done in `Decimal`, as there. Anything else (a missing rate, a sum too
/// large to be exact) goes to [`price_at`] itself.
#[derive(Debug, Clone)]
pub struct Card<'p> {
    entry: &'p PriceEntry,
    /// Without a tier, then each tier's (overlaid), in `entry.tiers` order.
    base: IntRates,
    tiers: Vec<IntRates>,
}

impl<'p> Card<'p> {
    fn new(entry: &'p PriceEntry) -> Card<'p> {
        Card {
            entry,
            base: int_rates(&entry.rates),
            tiers: (entry.tiers.iter())
                .map(|t| int_rates(&entry.rates.overlay(&t.rates)))
                .collect(),
        }
    }

    /// What [`Pricing::price`] gives for this entry and `usage`.
    pub fn price(&self, usage: Usage) -> Result<Priced<'p>, Unpriced> {
        let tier = tier_of(self.entry, usage);
        let rates = match tier {
            Some(i) => &self.tiers[i],
            None => &self.base,
        };
        let tokens = charged(usage);
        // The decimal products keep the rate's scale, except a zero product
        // (scale 0); the sums keep the largest scale of their terms.
        let mut scale = 0;
        for (t, rate) in tokens.iter().zip(rates) {
            match rate {
                _ if *t == 0 => {}
                None => return price_at(self.entry, usage),
                Some(r) if r.mantissa != 0 => scale = scale.max(r.scale),
                Some(_) => {}
            }
        }
        let mut sum: i128 = 0;
        for (t, rate) in tokens.iter().zip(rates) {
            let Some(r) = rate.filter(|r| *t != 0 && r.mantissa != 0) else {
                continue;
            };
            let term = (i128::from(*t).checked_mul(r.mantissa))
                .filter(|p| *p < EXACT_BELOW)
                .and_then(|p| p.checked_mul(10i128.checked_pow(scale - r.scale)?))
                .filter(|p| *p < EXACT_BELOW);
            match term
                .and_then(|p| sum.checked_add(p))
                .filter(|s| *s < EXACT_BELOW)
            {
                Some(s) => sum = s,
                None => return price_at(self.entry, usage),
            }
        }
        let per_million = Decimal::from_i128_with_scale(sum, scale);
        Ok(Priced {
            entry: self.entry,
            cost: per_million / Decimal::from(1_000_000u32),
            tier: tier.map(|i| self.entry.tiers[i].above_input_tokens),
        })
    }
}

/// A price: a non-negative decimal string, not below `base` for a tier.
fn parse_price(v: &str, base: Option<Decimal>) -> std::result::Result<Decimal, String> {
    match v.trim().parse::<Decimal>() {
        Ok(d) if d.is_sign_negative() && !d.is_zero() => Err(format!("negative price {v}")),
        Ok(d) => match base {
            Some(b) if d < b => Err(format!("tier price {d} is below the base price {b}")),
            _ => Ok(d),
        },
        Err(_) => Err(format!("{v:?} is not a decimal number")),
    }
}

/// The 1-based line of byte `offset` of `text` (TOML spans to lines).
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Ts {
        Ts(chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros())
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    const SMALL: &str = r#"
currency = "USD"
[[models]]
key = "claude-sonnet-4-5"
provider = "anthropic"
names = ["claude-sonnet-4-5"]
patterns = ["claude-sonnet-4-5-*"]
effective_from = "2025-09-29"
input = "3"
cache_read = "0.3"
cache_write = "3.75"
output = "15"
[[models.tiers]]
above_input_tokens = 200000
input = "6"
cache_read = "0.6"
cache_write = "7.5"
output = "22.5"

[[models]]
key = "o3"
provider = "openai"
names = ["o3"]
effective_from = "2025-04-16"
input = "10"
output = "40"
[[models]]
key = "o3"
provider = "openai"
names = ["o3"]
effective_from = "2025-06-10"
input = "2"
cache_read = "0.5"
output = "8"
reasoning = "12"
"#;

    fn small() -> Pricing {
        Pricing::parse(SMALL).unwrap()
    }

    /// The repository's `pricing.toml`, every problem shown if it fails.
    fn shipped() -> Pricing {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pricing.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        Pricing::parse(&text).unwrap_or_else(|problems| {
            let problems: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            panic!("{}: {}", path.display(), problems.join("; "))
        })
    }

    #[test]
    fn the_shipped_file_is_valid() {
        let p = shipped();
        assert_eq!(p.currency, "USD");
        for model in [
            "claude-sonnet-4-5-20250929",
            "claude-3-5-sonnet-20241022",
            "gpt-4o",
            "gpt-4o-2024-08-06",
            "o3",
            "gemini-2.5-pro",
            "models/gemini-2.5-flash",
            "gpt-5-mini",
            "claude-3-opus-20240229",
        ] {
            assert!(p.model_key(model).is_some(), "{model} has no price");
        }
        assert_eq!(p.model_key("gpt-4o-mini-2024-07-18"), Some("gpt-4o-mini"));
        assert_eq!(
            p.model_key("gemini-2.5-flash-lite"),
            Some("gemini-2.5-flash-lite")
        );
    }

    #[test]
    fn cache_reads_and_writes_are_priced_at_their_rates() {
        let p = small();
        let u = Usage {
            input: 1000,
            cache_read: 10_000,
            cache_write: 2000,
            output: 500,
            reasoning: 0,
        };
        let priced = p
            .price("claude-sonnet-4-5-20250929", ts("2026-10-01T00:00:00Z"), u)
            .unwrap();
        // 1000*3 + 10000*0.3 + 2000*3.75 + 500*15 = 3000 + 3000 + 7500 + 7500 = 21000 per 1M
        assert_eq!(priced.cost, d("0.021"));
        assert_eq!(priced.tier, None);
    }

    #[test]
    fn long_context_tier_applies_above_the_threshold_to_the_whole_request() {
        let p = small();
        let at = ts("2026-10-01T00:00:00Z");
        let exactly = Usage {
            input: 150_000,
            cache_read: 50_000,
            cache_write: 0,
            output: 1000,
            reasoning: 0,
        };
        let base = p.price("claude-sonnet-4-5", at, exactly).unwrap();
        assert_eq!(base.tier, None);
        assert_eq!(base.cost, d("0.45") + d("0.015") + d("0.015"));
        let above = Usage {
            cache_write: 1,
            ..exactly
        };
        let tier = p.price("claude-sonnet-4-5", at, above).unwrap();
        assert_eq!(tier.tier, Some(200_000));
        // 150000*6 + 50000*0.6 + 1*7.5 + 1000*22.5 = 900000 + 30000 + 7.5 + 22500
        assert_eq!(tier.cost, d("0.9525075"));
    }

    #[test]
    fn effective_dates_switch_at_midnight_utc_and_reasoning_has_its_rate() {
        let p = small();
        let u = Usage {
            input: 1_000_000,
            cache_read: 0,
            cache_write: 0,
            output: 1_000_000,
            reasoning: 250_000,
        };
        let before = p.price("o3", ts("2025-06-09T23:59:59.999999Z"), u).unwrap();
        assert_eq!(before.cost, d("50"));
        let after = p.price("o3", ts("2025-06-10T00:00:00Z"), u).unwrap();
        // 2 + 750000*8/1M + 250000*12/1M = 2 + 6 + 3
        assert_eq!(after.cost, d("11"));
        assert_eq!(
            after.entry.effective_from,
            NaiveDate::from_ymd_opt(2025, 6, 10).unwrap()
        );
        // A time with an offset is compared in UTC: 01:30+02:00 is still June 9th.
        assert_eq!(
            p.price("o3", ts("2025-06-10T01:30:00+02:00"), u)
                .unwrap()
                .cost,
            d("50")
        );
    }

    #[test]
    fn unknown_models_and_missing_rates_are_unpriced() {
        let p = small();
        let at = ts("2026-10-01T00:00:00Z");
        assert_eq!(
            p.price("mystery-1", at, Usage::default()).unwrap_err(),
            Unpriced::UnknownModel
        );
        let u = Usage {
            cache_read: 5,
            ..Usage::default()
        };
        assert_eq!(
            p.price("o3", ts("2025-05-01T00:00:00Z"), u).unwrap_err(),
            Unpriced::NoRate {
                key: "o3".into(),
                rate: "cache_read"
            }
        );
        assert!(matches!(
            p.price("o3", ts("2025-01-01T00:00:00Z"), u),
            Err(Unpriced::BeforeFirstPrice { .. })
        ));
        assert_eq!(
            p.model_key("CLAUDE-SONNET-4-5-20250929"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(
            p.model_key("anthropic/claude-sonnet-4-5"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(p.model_key("claude-sonnet-4"), None);
    }

    #[test]
    fn plans_fx_and_meters_from_the_shipped_file() {
        let p = shipped();
        let fees: Vec<(String, Decimal)> = p
            .plans
            .values()
            .map(|pl| (pl.name.clone(), pl.monthly_fee))
            .collect();
        assert_eq!(
            fees,
            vec![
                ("enterprise".into(), d("833")),
                ("pro".into(), d("499")),
                ("starter".into(), d("299"))
            ]
        );
        assert!(
            p.plans
                .values()
                .all(|pl| pl.included_tokens == 1_000_000 && pl.currency == "EUR")
        );
        let day = NaiveDate::from_ymd_opt(2026, 10, 31).unwrap();
        assert_eq!(p.fx_rate("EUR", "USD", day), Some(d("1.0411")));
        assert_eq!(
            p.fx_rate("USD", "EUR", day),
            Some(Decimal::ONE / d("1.0411"))
        );
        assert_eq!(
            p.fx_rate("USD", "EUR", NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()),
            None
        );
        assert_eq!(
            p.meters
                .iter()
                .map(|m| m.event_name.as_str())
                .collect::<Vec<_>>(),
            vec!["llm_tokens", "compute_minutes", "commands_run"]
        );
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pricing.toml");
        let bad = std::fs::read_to_string(&path)
            .unwrap()
            .replacen("monthly_fee = \"299\"", "monthly_fee = \"-299\"", 1)
            .replacen("measures = \"tokens\"", "measures = \"vibes\"", 1);
        let problems = problems(&bad);
        assert!(
            problems.contains(&"plans.starter.monthly_fee: negative amount -299".to_string()),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("meters[0].measures:")),
            "{problems:?}"
        );
    }

    /// Every key the shipped file uses is described by the JSON Schema.
    #[test]
    fn the_json_schema_knows_every_key_of_the_shipped_file() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let schema: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("schemas/pricing.schema.json")).unwrap(),
        )
        .unwrap();
        let file: toml::Value =
            toml::from_str(&std::fs::read_to_string(root.join("pricing.toml")).unwrap()).unwrap();
        fn check(
            value: &toml::Value,
            schema: &serde_json::Value,
            defs: &serde_json::Value,
            path: &str,
        ) {
            let schema = match schema.get("$ref").and_then(|r| r.as_str()) {
                Some(r) => &defs[r.trim_start_matches("#/$defs/")],
                None => schema,
            };
            match value {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        let sub = schema["properties"].get(k).or_else(|| {
                            schema.get("additionalProperties").filter(|a| a.is_object())
                        });
                        let sub = sub
                            .unwrap_or_else(|| panic!("{path}.{k} is not in pricing.schema.json"));
                        check(v, sub, defs, &format!("{path}.{k}"));
                    }
                }
                toml::Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        check(v, &schema["items"], defs, &format!("{path}[{i}]"));
                    }
                }
                _ => {}
            }
        }
        check(&file, &schema, &schema["$defs"], "pricing");
    }

    fn problems(text: &str) -> Vec<String> {
        Pricing::parse(text)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn problems_name_the_key() {
        let bad = SMALL.replace("input = \"10\"", "input = \"-10\"");
        assert_eq!(
            problems(&bad),
            vec!["models[1] (o3).input: negative price -10"]
        );
        let bad = SMALL.replace(
            "effective_from = \"2025-06-10\"",
            "effective_from = \"2025-04-16\"",
        );
        assert!(
            problems(&bad)[0].contains("overlapping effective dates"),
            "{:?}",
            problems(&bad)
        );
        let bad = SMALL.replace("currency = \"USD\"", "currency = \"XYZ\"");
        assert!(problems(&bad)[0].starts_with("currency:"));
        let bad = SMALL.replace("input = \"6\"", "input = \"2\"");
        assert_eq!(
            problems(&bad),
            vec![
                "models[0] (claude-sonnet-4-5).tiers[0].input: tier price 2 is below the base price 3"
            ]
        );
        let bad = format!(
            "{SMALL}\n[[models]]\nkey = \"other\"\nprovider = \"anthropic\"\npatterns = [\"claude-sonnet-*\"]\neffective_from = \"2025-01-01\"\ninput = \"1\"\noutput = \"1\"\n"
        );
        let p = problems(&bad);
        assert!(
            p.iter().any(|m| m.contains("can match the same raw name")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|m| m.contains("a name of claude-sonnet-4-5")),
            "{p:?}"
        );
        let bad = SMALL.replace("output = \"15\"", "output = 15.0");
        assert!(
            problems(&bad)[0].starts_with("line "),
            "{:?}",
            problems(&bad)
        );
        let bad = SMALL.replace(
            "key = \"o3\"\nprovider",
            "key = \"o3\"\ncolour = \"red\"\nprovider",
        );
        assert!(problems(&bad)[0].contains("colour"), "{:?}", problems(&bad));
    }

    /// A renamed plan passed `pricing check` while `meter bill` left its
    /// customers off the invoices: the registry is now checked against the
    /// plans, by file, line and field.
    #[test]
    fn a_renamed_plan_names_its_customers() {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pricing.toml"))
                .unwrap();
        let renamed =
            Pricing::parse(&text.replace("[plans.enterprise]", "[plans.corporate]")).unwrap();
        let csv = "customer_id,name,email,tier,vm_ids,currency,stripe_customer_id,status,created_at,cancelled_at\n\
                   a,A,a@x,pro,,EUR,cus_1,active,2026-01-01,\n\
                   b,B,b@x,enterprise,,EUR,cus_2,active,2026-01-01,\n\
                   c,C,c@x,enterprise,,EUR,cus_3,cancelled,2026-01-01,2026-10-21T00:00:00Z\n";
        let registry = Registry::from_customers_csv(csv, Path::new("customers.csv")).unwrap();
        let now = "2026-11-02T03:00:00Z".parse().unwrap();
        let check = renamed.check_customers(&registry, Path::new("customers.csv"), now);
        let in_service: Vec<String> = check.in_service.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            in_service,
            [
                "customers.csv:3: field `tier`: customer b: plan \"enterprise\" is not in pricing.toml [plans] (corporate, pro, starter)"
            ]
        );
        assert_eq!(check.ended.len(), 1);
        assert!(
            check.ended[0]
                .to_string()
                .starts_with("customers.csv:4: field `tier`: customer c:")
        );
        let shipped = Pricing::parse(&text).unwrap();
        let check = shipped.check_customers(&registry, Path::new("customers.csv"), now);
        assert!(check.in_service.is_empty() && check.ended.is_empty());
    }

    /// A price list of one model with the given rates (`None`: not set) and
    /// a tier above 1000 context tokens that overrides some of them.
    fn one_model(base: &[Option<Decimal>; 5], tier: &[Option<Decimal>; 5]) -> Pricing {
        let names = ["input", "cache_read", "cache_write", "output", "reasoning"];
        let rates = |r: &[Option<Decimal>; 5]| {
            (names.iter().zip(r))
                .filter_map(|(n, v)| v.map(|v| format!("{n} = \"{v}\"\n")))
                .collect::<String>()
        };
        let text = format!(
            "currency = \"USD\"\n[[models]]\nkey = \"m\"\nprovider = \"openai\"\nnames = [\"m\"]\neffective_from = \"2025-01-01\"\n{}[[models.tiers]]\nabove_input_tokens = 1000\n{}",
            rates(base),
            rates(tier),
        );
        Pricing::parse(&text).unwrap_or_else(|p| panic!("{p:?}\n{text}"))
    }

    fn rate() -> impl proptest::strategy::Strategy<Value = Option<Decimal>> {
        use proptest::prelude::*;
        proptest::option::weighted(
            0.8,
            prop_oneof![Just(0i64), 1i64..100, 1i64..10_000_000]
                .prop_flat_map(|m| (0u32..12).prop_map(move |scale| Decimal::new(m, scale))),
        )
    }

    fn tokens() -> impl proptest::strategy::Strategy<Value = u64> {
        use proptest::prelude::*;
        prop_oneof![
            Just(0u64),
            0u64..3000,
            0u64..10_000_000_000,
            Just(i64::MAX as u64)
        ]
    }

    proptest::proptest! {
        /// The card's integer sums give exactly what `price` gives: the
        /// same cost to the digit and the same scale (the priced files and
        /// the reports print it), the same tier, the same refusals.
        #[test]
        fn a_card_prices_every_event_as_price_does(
            base in proptest::array::uniform5(rate()),
            tier in proptest::array::uniform5(rate()),
            usage in (tokens(), tokens(), tokens(), tokens(), tokens()),
        ) {
            // Only what the list accepts: input and output prices are
            // required, and a tier price is not below the base one.
            let mut base = base;
            base[0] = base[0].or(Some(Decimal::new(3, 0)));
            base[3] = base[3].or(Some(Decimal::new(15, 1)));
            let tier: [Option<Decimal>; 5] =
                std::array::from_fn(|i| tier[i].map(|t| base[i].map_or(t, |b| t.max(b))));
            let pricing = one_model(&base, &tier);
            let usage = Usage {
                input: usage.0,
                // The lake's counts are i64: three of them add up in a u64.
                cache_read: usage.1.min(1 << 62),
                cache_write: usage.2.min(1 << 62),
                output: usage.3,
                reasoning: usage.4,
            };
            let at = ts("2026-03-01T12:00:00Z");
            let slow = pricing.price("m", at, usage);
            let fast = pricing.card("m", at).unwrap().price(usage);
            let shape = |p: &Result<Priced, Unpriced>| {
                p.as_ref()
                    .map(|p| (p.cost.mantissa(), p.cost.scale(), p.tier, p.entry.key.clone()))
                    .map_err(|e| e.clone())
            };
            proptest::prop_assert_eq!(shape(&fast), shape(&slow));
        }
    }

    #[test]
    fn a_card_prices_the_shipped_list_as_price_does() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pricing.toml")).unwrap();
        let pricing = Pricing::parse(&text).unwrap();
        let at = ts("2026-10-15T08:00:00Z");
        let mut n = 0;
        for (model, _) in &pricing.models {
            for usage in [
                Usage {
                    input: 1234,
                    cache_read: 0,
                    cache_write: 0,
                    output: 567,
                    reasoning: 89,
                },
                Usage {
                    input: 250_000,
                    cache_read: 10_000,
                    cache_write: 3,
                    output: 1,
                    reasoning: 0,
                },
                Usage {
                    input: 0,
                    cache_read: 0,
                    cache_write: 0,
                    output: 0,
                    reasoning: 0,
                },
            ] {
                let (Ok(card), Ok(slow)) =
                    (pricing.card(model, at), pricing.price(model, at, usage))
                else {
                    continue;
                };
                let fast = card.price(usage).unwrap();
                assert_eq!(
                    (fast.cost.mantissa(), fast.cost.scale()),
                    (slow.cost.mantissa(), slow.cost.scale()),
                    "{model}"
                );
                n += 1;
            }
        }
        assert!(n > 30, "{n}");
    }
}
