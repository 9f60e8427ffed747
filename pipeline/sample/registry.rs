//! The customer registry and user map (`customers.csv`, `users.csv`), and the VMs and API
//! keys every other generator writes logs for.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono_tz::Tz;
use rand::Rng;
use rand::rngs::SmallRng;
use sha2::{Digest, Sha256};

use super::time::{Frac, w_rfc3339};
use super::{ALNUM, Ctx, DAY, SampleOptions, push_random};

pub(super) struct World {
    pub(super) customers_csv: String,
    pub(super) users_csv: String,
    /// `contracts.toml`; empty for fewer than 3 customers.
    pub(super) contracts_toml: String,
    pub(super) vms: Vec<VmBase>,
}

pub(super) struct VmBase {
    pub(super) id: String,
    pub(super) tz: Tz,
    /// Events stop here: the period end, or the owner's cancellation.
    pub(super) end: i64,
    pub(super) users: Vec<VmUser>,
}

pub(super) struct VmUser {
    pub(super) key: String,
    pub(super) user_id: Option<String>,
}

const COMPANIES: [(&str, &str); 10] = [
    ("Acme Analytics GmbH", "acme-analytics"),
    ("Globex Research Ltd", "globex"),
    ("Initech Cloud SE", "initech"),
    ("Umbrella Data AG", "umbrella-data"),
    ("Stark Automation Inc", "stark-automation"),
    ("Wayne Robotics BV", "wayne-robotics"),
    ("Hooli Labs Oy", "hooli"),
    ("Vandelay Imports SARL", "vandelay"),
    ("Soylent Systems KG", "soylent"),
    ("Tyrell Compute Ltd", "tyrell"),
];
/// Plan and `monthly_limit` (a spending limit in the customer's currency,
/// empty for none).
const TIERS: [(&str, &str); 3] = [("pro", "600"), ("starter", ""), ("enterprise", "5000")];
const ZONES: [Tz; 3] = [Tz::Europe__Berlin, Tz::America__New_York, Tz::UTC];

fn random_key(rng: &mut SmallRng) -> String {
    let mut key = String::with_capacity(64);
    if rng.random_bool(0.5) {
        key.push_str("sk-proj-");
        push_random(&mut key, rng, ALNUM, 40);
    } else {
        key.push_str("sk-ant-api03-");
        push_random(&mut key, rng, ALNUM, 48);
    }
    key
}

fn new_vm_id(rng: &mut SmallRng, seen: &mut BTreeSet<String>) -> String {
    loop {
        let id = format!("vm-{:06x}", rng.random_range(0..0x100_0000u32));
        if seen.insert(id.clone()) {
            return id;
        }
    }
}

pub(super) fn build_world(ctx: &Ctx, opts: &SampleOptions) -> World {
    let mut rng = ctx.rng(usize::MAX, 0);
    let mut customers_csv = String::from(
        "customer_id,name,email,tier,vm_ids,currency,stripe_customer_id,status,created_at,\
         cancelled_at,monthly_limit,markup,timezone\n",
    );
    let mut users_csv = String::from("api_key_sha256,user_id,customer_id\n");
    let mut seen = BTreeSet::new();
    let mut vms = Vec::new();
    let mut user_no = 0usize;
    for i in 0..opts.customers {
        let id = format!("cust_{:04}", i + 1);
        let (base_name, base_slug) = COMPANIES[i % COMPANIES.len()];
        let round = i / COMPANIES.len();
        let (name, slug) = if round == 0 {
            (base_name.to_string(), base_slug.to_string())
        } else {
            (
                format!("{base_name} {}", round + 1),
                format!("{base_slug}-{}", round + 1),
            )
        };
        let (tier, limit) = TIERS[i % TIERS.len()];
        let tz = ZONES[i % ZONES.len()];
        let currency = if i == 1 { "USD" } else { "EUR" };
        // A reseller bills every API line at cost x markup (formats.md section 5).
        let markup = if i % 4 == 1 { "1.3" } else { "" };
        let cancelled_at = (opts.customers >= 3 && i == 2)
            .then(|| ctx.start + ((ctx.end - ctx.start) * 2 / 3) / 3_600 * 3_600);
        let created_at = ctx.start - rng.random_range(30..400) * DAY - rng.random_range(0..DAY);
        let mut stripe = String::from("cus_");
        push_random(&mut stripe, &mut rng, ALNUM, 14);

        let n_vms = rng.random_range(1..=2);
        let vm_ids: Vec<String> = (0..n_vms).map(|_| new_vm_id(&mut rng, &mut seen)).collect();
        let mut users = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            user_no += 1;
            let key = random_key(&mut rng);
            let user_id = format!("user_{user_no:04}");
            let digest = Sha256::digest(key.as_bytes());
            for b in digest {
                let _ = write!(users_csv, "{b:02x}");
            }
            let _ = writeln!(users_csv, ",{user_id},{id}");
            users.push((key, user_id));
        }

        let _ = write!(
            customers_csv,
            "{id},{name},billing@{slug}.example,{tier},{},{currency},{stripe},{},",
            vm_ids.join(";"),
            if cancelled_at.is_some() {
                "cancelled"
            } else {
                "active"
            },
        );
        w_rfc3339(&mut customers_csv, created_at, 0, Frac::None, None);
        customers_csv.push(',');
        if let Some(c) = cancelled_at {
            w_rfc3339(&mut customers_csv, c, 0, Frac::None, None);
        }
        let _ = writeln!(customers_csv, ",{limit},{markup},{}", tz.name());

        for vm_id in vm_ids {
            vms.push(VmBase {
                id: vm_id,
                tz,
                end: cancelled_at.unwrap_or(ctx.end),
                users: users
                    .iter()
                    .map(|(k, u)| VmUser {
                        key: k.clone(),
                        user_id: Some(u.clone()),
                    })
                    .collect(),
            });
        }
    }
    // A customer who signed up a third into the period and has no VM yet:
    // billed the prorated fee only. No randomness, so the rest is unchanged.
    let id = format!("cust_{:04}", opts.customers + 1);
    let _ = write!(
        customers_csv,
        "{id},\"Zeta Consulting, Inc.\",billing@zeta.example,starter,,EUR,cus_ZetaNoUsage01,active,"
    );
    w_rfc3339(
        &mut customers_csv,
        ctx.start + (ctx.end - ctx.start) / 3 / DAY * DAY + 9 * 3_600,
        0,
        Frac::None,
        None,
    );
    let _ = writeln!(customers_csv, ",,,,UTC");
    // A VM nobody lists: its events are kept with a null customer.
    let id = new_vm_id(&mut rng, &mut seen);
    let orphan = VmUser {
        key: random_key(&mut rng),
        user_id: None,
    };
    vms.push(VmBase {
        id,
        tz: Tz::UTC,
        end: ctx.end,
        users: vec![orphan],
    });
    World {
        customers_csv,
        users_csv,
        contracts_toml: contracts_toml(opts),
        vms,
    }
}

/// One contract of each kind (schemas/contracts.md) for the customers whose
/// shape is fixed: the second (a reseller invoiced in USD) prepays credit
/// that runs out, and had a welcome credit that expires mid-period; the
/// third (cancelled two thirds in) is under its commitment, and its
/// contract changes on the 12th day into graduated token tiers; the
/// customer without VMs gets 20% off its fee from the 15th day. The first
/// has none.
fn contracts_toml(opts: &SampleOptions) -> String {
    if opts.customers < 3 {
        return String::new();
    }
    let day = |n: i64| opts.start + chrono::TimeDelta::days(n);
    let zeta = format!("cust_{:04}", opts.customers + 1);
    format!(
        r#"# Contracts of the sample customers (schemas/contracts.md): each kind of
# term. cust_0001 has none: it is billed by its plan alone, and its usage
# goes to Stripe as meter events.

# A prepaid customer whose credit runs out during the month (the rest is
# invoiced), with a welcome credit that expired before the month ended.
[[credits]]
customer_id = "cust_0002"
grant_id = "welcome"
amount = "25.00"
currency = "USD"
granted = {welcome}
expires = {day14}

[[credits]]
customer_id = "cust_0002"
grant_id = "topup-{month}"
amount = "60.00"
currency = "USD"
granted = {day0}
expires = {year}

# An enterprise customer under its monthly commitment (prorated: it
# cancelled), whose contract changes on the 12th: from then on, graduated
# tiers on the month's tokens (counted from the 1st), which the month
# crosses twice.
[[terms]]
customer_id = "cust_0003"
from = {terms}
commitment = "250.00"

[[terms]]
customer_id = "cust_0003"
from = {day11}
commitment = "250.00"
tiers = {{ measure = "tokens", mode = "graduated", steps = [
    {{ from = 0, factor = "1.25" }},
    {{ from = 20_000_000, factor = "1.15" }},
    {{ from = 28_000_000, factor = "1.05" }},
] }}

# A discount on the plan fee from the 15th.
[[discounts]]
customer_id = "{zeta}"
percent = "20"
applies_to = "subscription"
from = {day14}
"#,
        welcome = day(-152),
        terms = day(-170),
        day0 = day(0),
        day11 = day(11),
        day14 = day(14),
        year = day(365),
        month = opts.start.format("%Y-%m"),
    ) + &more_contracts(opts)
}

/// The contracts of `contract_every`: every Nth customer from the fifth on,
/// the kinds in turn: a commitment paid from prepaid credit, a commitment
/// whose terms change into tiers, 10% off the invoice. Each makes a line
/// even on a day of little usage (the benchmark's billing input).
fn more_contracts(opts: &SampleOptions) -> String {
    if opts.contract_every == 0 {
        return String::new();
    }
    let day = |n: i64| opts.start + chrono::TimeDelta::days(n);
    let mut out = String::from("\n# More contracts (meter sample --contract-every).\n");
    for (k, n) in (5..=opts.customers)
        .step_by(opts.contract_every)
        .enumerate()
    {
        let id = format!("cust_{n:04}");
        let entry = match k % 3 {
            0 => format!(
                "[[credits]]\ncustomer_id = \"{id}\"\ngrant_id = \"prepaid\"\namount = \"40.00\"\n\
                 currency = \"EUR\"\ngranted = {}\n\n\
                 [[terms]]\ncustomer_id = \"{id}\"\nfrom = {}\ncommitment = \"100.00\"\n",
                day(-20),
                day(-20)
            ),
            1 => format!(
                "[[terms]]\ncustomer_id = \"{id}\"\nfrom = {}\ncommitment = \"300.00\"\n\n\
                 [[terms]]\ncustomer_id = \"{id}\"\nfrom = {}\ncommitment = \"300.00\"\n\
                 tiers = {{ measure = \"tokens\", mode = \"graduated\", steps = [\n    \
                 {{ from = 0, factor = \"1.25\" }},\n    {{ from = 1_000_000, factor = \"1.15\" }},\n] }}\n",
                day(-60),
                day(11)
            ),
            _ => format!(
                "[[discounts]]\ncustomer_id = \"{id}\"\npercent = \"10\"\napplies_to = \"invoice\"\n\
                 from = {}\n",
                day(0)
            ),
        };
        out.push('\n');
        out.push_str(&entry);
    }
    out
}
