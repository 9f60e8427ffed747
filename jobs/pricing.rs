//! `meter pricing check`: validate a pricing file.

use std::path::PathBuf;

use meter::pricing::Pricing;

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
    /// match, unknown currencies, tiers below their base).
    Check {
        /// The pricing file [default: pricing.toml].
        #[arg(long, value_name = "FILE", env = "METER_PRICING")]
        pricing: Option<PathBuf>,
    },
}

pub fn run(args: PricingArgs) -> Outcome {
    match args.command {
        PricingCommand::Check { pricing } => {
            let pricing = crate::settings::settings().pricing(pricing);
            check(&pricing)
        }
    }
}

fn check(pricing: &std::path::Path) -> Outcome {
    match Pricing::load(pricing) {
        Ok(p) => {
            let (models, entries) = p.size();
            crate::outln!(
                "{}: ok ({models} models, {entries} price entries in {} per 1M tokens; {} plans, {} FX rates, {} meters)",
                pricing.display(),
                p.currency,
                p.plans.len(),
                p.fx.len(),
                p.meters.len()
            );
            Outcome::Done
        }
        Err(e) => fail(&e),
    }
}
