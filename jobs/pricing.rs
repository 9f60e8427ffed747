//! `meter pricing check`: validate a pricing file, and the customers'
//! plans against it.

use std::path::{Path, PathBuf};

use crate::settings::{self, settings};
use crate::{Outcome, fail};

#[derive(clap::Args, Debug)]
pub struct PricingArgs {
    #[command(subcommand)]
    pub command: PricingCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum PricingCommand {
    /// Validate a pricing file and list every problem with its key
    /// (negative prices, overlapping effective dates, a raw name two models
    /// match, unknown currencies, tiers below their base). With a customer
    /// registry, also every customer whose plan (column `tier`) is not in
    /// [plans], by file, line and field: exit 2 for a customer in service
    /// (`meter bill` would refuse the month), 1 when only customers whose
    /// service ended have one.
    Check {
        /// The pricing file [default: pricing.toml].
        #[arg(long, value_name = "FILE", env = "METER_PRICING")]
        pricing: Option<PathBuf>,
        /// The customer registry whose plans to check [default: `customers`
        /// in meter.toml, if set].
        #[arg(long, value_name = "FILE", env = "METER_CUSTOMERS")]
        customers: Option<PathBuf>,
    },
}

pub fn run(args: PricingArgs) -> Outcome {
    match args.command {
        PricingCommand::Check { pricing, customers } => {
            let pricing = settings().pricing(pricing);
            check(&pricing, settings().customers(customers).as_deref())
        }
    }
}

fn check(path: &Path, customers: Option<&Path>) -> Outcome {
    let pricing = match meter::load::pricing(path) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let (models, entries) = pricing.size();
    crate::outln!(
        "{}: ok ({models} models, {entries} price entries in {} per 1M tokens; {} plans, {} FX rates, {} meters)",
        path.display(),
        pricing.currency,
        pricing.plans.len(),
        pricing.fx.len(),
        pricing.meters.len()
    );
    let Some(customers) = customers else {
        return Outcome::Done;
    };
    let (registry, problems) = match meter::load::customers(customers) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let now = settings::ctx("pricing").clock.now();
    let plans = pricing.check_customers(&registry, customers, now);
    for p in problems.iter().chain(&plans.in_service) {
        crate::errln!("error: {p}");
    }
    for p in &plans.ended {
        crate::errln!(
            "attention: {p} (service ended: only a rerun of a month it was billed in is refused)"
        );
    }
    if !problems.is_empty() || !plans.in_service.is_empty() {
        crate::errln!(
            "  what to do: give each customer a plan of {} [plans] in column `tier`, or keep \
             the old plan key in the pricing file while customers use it; fix the named rows",
            path.display()
        );
        return Outcome::Failed;
    }
    crate::outln!(
        "{}: ok ({} customers; every customer in service has a plan of {})",
        customers.display(),
        registry.customers.len(),
        path.display()
    );
    match plans.ended.is_empty() {
        true => Outcome::Done,
        false => Outcome::NeedsAttention,
    }
}
