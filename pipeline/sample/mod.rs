//! Sample input generator: writes a deterministic tree of raw logs in every format ingest
//! reads (formats.md sections 1 to 3), together with the exact counts ingest must produce
//! from it.
//!
//! # Tree
//! ```text
//! <out>/customers.csv                 one row per customer (vm_ids are `;`-separated)
//! <out>/users.csv                     api_key_sha256,user_id,customer_id
//! <out>/contracts.toml                one contract of each kind (3 customers or more), more with contract_every
//! <out>/<vm>/cliproxy/usage.jsonl     1b CLIProxyAPI usage records      -> api_usage
//! <out>/<vm>/cliproxy/usage.log       1a JSON usage lines               -> api_usage
//! <out>/<vm>/cliproxy/main.log        1c main log (local time, no offset) -> api_requests
//! <out>/<vm>/cliproxy/access.log      1d Common / Combined Log Format   -> api_requests
//! <out>/<vm>/resources/metrics.csv    CSV samples                       -> resource_usage
//! <out>/<vm>/resources/metrics.jsonl  JSONL samples                     -> resource_usage
//! <out>/<vm>/resources/telegraf.influx Telegraf line protocol           -> resource_usage
//! <out>/<vm>/commands/history.jsonl   command records                   -> activity
//! ```
//! Each stream is cut into segments on a global grid (7 days, fewer for short runs). Not
//! clean: older segments are gzip-rotated (`usage.jsonl.2.gz` for cliproxy,
//! `metrics-2026-10-01.csv.gz` elsewhere) and the newest is the plain live file. Clean:
//! every segment is a plain file named after its first day (`usage-2026-10-01.jsonl`).
//!
//! # Counts
//! Every line written is booked in exactly one bucket of one table, following the ingest
//! rules: header rows, non-access main-log lines, per-core `cpu` rows, unused Telegraf
//! measurements and an unterminated last line are skipped; malformed lines are rejects;
//! copies of a row in another file of the same VM are duplicates. Not clean, duplicates
//! come from two places: each new segment starts with a copy of the last few rows of the
//! previous one (a rotation overlap), and one whole rotated file per VM is shipped twice
//! (under `reshipped/`). Malformed lines never land in the overlap or in the re-shipped
//! file, so every copy of a row is exactly one duplicate.
//!
//! # Determinism
//! The customer list comes from one generator seeded with `seed`; every VM stream has its
//! own generator seeded from `(seed, vm, stream)`, so VMs can be written in parallel and
//! the tree is byte-identical for a seed. `SmallRng` differs between 32- and 64-bit
//! targets, so a tree is reproducible per target width. Gzip bytes depend on the flate2
//! backend compiled in, so regenerate committed samples with the `meter` binary itself.
//!
//! # Code
//! `registry` writes customers.csv and users.csv and picks the VMs; `vm` writes each VM's
//! directory: its `plan`, its `stream`s, and `api` (each call: a `usage` record and an
//! `access` line), `resources` and `commands` over them; `totals` books every line, and
//! `time` writes the timestamps. No import loops: a file imports only files listed before
//! it in `time`, `totals`, `registry`, `plan`, `stream`, `api`, `usage`, `access`,
//! `resources`, `commands`, `vm`.

mod access;
mod api;
mod commands;
mod plan;
mod registry;
mod resources;
mod stream;
#[cfg(test)]
mod tests;
mod time;
mod totals;
mod usage;
mod vm;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;

use registry::build_world;
use totals::{Tally, write_table_file};
use vm::gen_vm;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// Output directory; created, must be absent or empty.
    pub out: PathBuf,
    /// Number of customers (each gets 1 or 2 VMs; one extra VM belongs to nobody).
    pub customers: usize,
    /// Number of UTC days, starting at `start`.
    pub days: u32,
    /// Model calls per VM per day.
    pub events_per_day: u32,
    /// Seed for every random choice.
    pub seed: u64,
    /// No offsets, no gzip, no duplicates, no malformed lines.
    pub clean: bool,
    /// First UTC day of the period.
    pub start: NaiveDate,
    /// Which API usage format the VMs write.
    pub usage_format: UsageFormat,
    /// Seconds between two resource samples of a VM ([`DEFAULT_RESOURCE_INTERVAL_S`] is
    /// what the collectors send). Compute hours do not depend on it (samples x interval),
    /// so a longer one writes a smaller tree with the same invoices' hours.
    pub resource_interval_s: u32,
    /// Besides the sample's one contract of each kind: every Nth customer
    /// from the fifth on gets one too, the kinds in turn (a commitment paid
    /// from prepaid credit, a commitment whose terms change mid-month into
    /// tiers, 10% off the invoice); 0: none (the benchmark bills many
    /// contracts).
    pub contract_every: usize,
}

/// The resource collectors' interval: a sample every 5 minutes.
pub const DEFAULT_RESOURCE_INTERVAL_S: u32 = 300;

/// The API usage format of the generated VMs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UsageFormat {
    /// VMs cycle through 1b only, 1a only and 1a then 1b (covers every path).
    #[default]
    Mixed,
    /// Every VM writes 1a JSON usage lines (`usage-*.log`): the benchmark input.
    Lines,
    /// Every VM writes 1b CLIProxyAPI usage records (`usage-*.jsonl`).
    Records,
}

/// What was written and what ingest must make of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SampleTotals {
    /// Files written, including customers.csv and users.csv.
    pub files: u64,
    /// Bytes on disk (compressed size for `.gz` files).
    pub bytes: u64,
    /// Newline characters in all files, after decompression.
    pub lines: u64,
    /// Expected ingest counts per table: api_usage, api_requests, resource_usage, activity.
    pub tables: BTreeMap<String, Expected>,
    /// Token sums of the `api_usage` rows, as the lake stores them (provider inclusion
    /// rules applied: input excludes cached reads, output includes reasoning).
    pub lake_tokens: TokenSums,
    /// Token sums of the 1a usage lines that are rows, field by field as written
    /// (`input_tokens`, `cache_read_tokens`, `cache_creation_tokens`, `output_tokens`,
    /// `reasoning_tokens`): what a reader of the raw JSON must add up.
    pub tokens_1a: TokenSums,
}

/// Sums of the five token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TokenSums {
    pub input: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub output: u64,
    pub reasoning: u64,
}

impl TokenSums {
    fn add(&mut self, o: &TokenSums) {
        self.input += o.input;
        self.cache_read += o.cache_read;
        self.cache_write += o.cache_write;
        self.output += o.output;
        self.reasoning += o.reasoning;
    }
}

/// Expected ingest outcome for one table. `rows + duplicates + rejects + skipped` is the
/// number of lines of the table's files, counting an unterminated last line.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Expected {
    pub rows: u64,
    pub duplicates: u64,
    pub rejects: u64,
    pub skipped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("invalid sample options: {0}")]
    Options(String),
    #[error("output directory {} is not empty", .path.display())]
    NotEmpty { path: PathBuf },
    #[error("cannot write {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Writes the sample tree described in the module docs and returns its expected counts.
pub fn generate(opts: &SampleOptions) -> Result<SampleTotals, SampleError> {
    validate(opts)?;
    prepare_out(&opts.out)?;
    let ctx = Ctx::new(opts);
    let world = build_world(&ctx, opts);

    let mut tally = Tally::default();
    write_table_file(
        &ctx.out.join("customers.csv"),
        &world.customers_csv,
        &mut tally,
    )?;
    write_table_file(&ctx.out.join("users.csv"), &world.users_csv, &mut tally)?;
    if !world.contracts_toml.is_empty() {
        write_table_file(
            &ctx.out.join("contracts.toml"),
            &world.contracts_toml,
            &mut tally,
        )?;
    }

    let results: Vec<Result<Tally, SampleError>> = world
        .vms
        .par_iter()
        .enumerate()
        .map(|(idx, vm)| gen_vm(&ctx, idx, vm))
        .collect();
    for result in results {
        tally.merge(&result?);
    }
    Ok(tally.into_totals())
}

// ---------------------------------------------------------------------------------------
// Options, context, randomness shared by every generator

const DAY: i64 = 86_400;

fn validate(opts: &SampleOptions) -> Result<(), SampleError> {
    if opts.customers == 0 {
        return Err(SampleError::Options("customers must be at least 1".into()));
    }
    // VM ids are 6 hex digits drawn without repeats: a million customers
    // leave room for their VMs.
    if opts.customers > 1_000_000 {
        return Err(SampleError::Options(
            "customers must be at most 1000000".into(),
        ));
    }
    if opts.days == 0 {
        return Err(SampleError::Options("days must be at least 1".into()));
    }
    // Samples more than an hour apart read as gaps (the rollup's
    // MAX_SAMPLE_GAP_S), and a day must hold a whole number of them.
    let every = opts.resource_interval_s;
    if !(60..=3600).contains(&every) || DAY % i64::from(every) != 0 {
        return Err(SampleError::Options(format!(
            "resource interval must be 60 to 3600 seconds and divide a day, not {every}"
        )));
    }
    if u64::from(opts.days) * u64::from(opts.events_per_day) > 4_000_000_000 {
        return Err(SampleError::Options(
            "days * events_per_day must be at most 4e9 (request ids are 32-bit)".into(),
        ));
    }
    Ok(())
}

fn prepare_out(out: &Path) -> Result<(), SampleError> {
    match fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(SampleError::NotEmpty {
                    path: out.to_path_buf(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(out).map_err(io_err(out))
        }
        Err(e) => Err(io_err(out)(e)),
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SampleError + '_ {
    move |source| SampleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

struct Ctx {
    out: PathBuf,
    seed: u64,
    clean: bool,
    usage_format: UsageFormat,
    days: u32,
    events_per_day: u32,
    resource_interval_s: i64,
    start: i64,
    end: i64,
    seg_len: i64,
}

impl Ctx {
    fn new(opts: &SampleOptions) -> Ctx {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
        let start = (opts.start - epoch).num_days() * DAY;
        let days = i64::from(opts.days);
        let seg_len = if opts.clean || days >= 14 {
            7 * DAY
        } else if days >= 2 {
            (days + 1) / 2 * DAY
        } else {
            DAY / 2
        };
        Ctx {
            out: opts.out.clone(),
            seed: opts.seed,
            clean: opts.clean,
            usage_format: opts.usage_format,
            days: opts.days,
            events_per_day: opts.events_per_day,
            resource_interval_s: i64::from(opts.resource_interval_s),
            start,
            end: start + days * DAY,
            seg_len,
        }
    }

    /// Segments of `[a, b)` on the global rotation grid. Grid points are UTC midnights or
    /// noons, so no segment boundary splits a DST fold of the local-time main log.
    fn segments(&self, a: i64, b: i64) -> Vec<(i64, i64)> {
        let mut segs = Vec::new();
        let mut s = self.start;
        while s < b {
            let e = s + self.seg_len;
            let (x, y) = (s.max(a), e.min(b));
            if x < y {
                segs.push((x, y));
            }
            s = e;
        }
        segs
    }

    fn rng(&self, vm: usize, stream: u64) -> SmallRng {
        let a = mix(self.seed ^ 0x5EED_0000_0000_0000);
        let b = mix(a ^ (vm as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        SmallRng::seed_from_u64(mix(b ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03)))
    }
}

/// SplitMix64 finalizer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn lognormal(rng: &mut SmallRng, median: f64, sigma: f64) -> f64 {
    let z: f64 = rng.sample(StandardNormal);
    median * (sigma * z).exp()
}

fn uniform(rng: &mut SmallRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn push_random(buf: &mut String, rng: &mut SmallRng, chars: &[u8], n: usize) {
    for _ in 0..n {
        buf.push(chars[rng.random_range(0..chars.len())] as char);
    }
}
