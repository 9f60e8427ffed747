//! Sample input generator: writes a deterministic tree of raw logs in every format ingest
//! reads (formats.md sections 1 to 3), together with the exact counts ingest must produce
//! from it.
//!
//! # Tree
//! ```text
//! <out>/customers.csv                 one row per customer (vm_ids are `;`-separated)
//! <out>/users.csv                     api_key_sha256,user_id,customer_id
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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, Offset, TimeZone};
use chrono_tz::Tz;
use flate2::Compression;
use flate2::write::GzEncoder;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Binomial, Distribution, StandardNormal};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

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
}

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
// Options, context, bookkeeping

const DAY: i64 = 86_400;
const SAMPLE_SECS: i64 = 300;
const MALFORMED_RATE: f64 = 0.005;
const PLAIN_BUF: usize = 1 << 20;
const GZ_BUF: usize = 256 << 10;

fn validate(opts: &SampleOptions) -> Result<(), SampleError> {
    if opts.customers == 0 {
        return Err(SampleError::Options("customers must be at least 1".into()));
    }
    if opts.customers > 99_999 {
        return Err(SampleError::Options(
            "customers must be at most 99999".into(),
        ));
    }
    if opts.days == 0 {
        return Err(SampleError::Options("days must be at least 1".into()));
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

/// Bijection on u32 (lowbias32), so request ids never repeat within a VM.
fn request_id(salt: u32, counter: u32) -> u32 {
    let mut x = counter ^ salt;
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Table {
    ApiUsage = 0,
    ApiRequests = 1,
    ResourceUsage = 2,
    Activity = 3,
}

const TABLE_NAMES: [&str; 4] = ["api_usage", "api_requests", "resource_usage", "activity"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bucket {
    Row,
    Duplicate,
    Reject,
    Skipped,
}

#[derive(Clone, Default, Debug)]
struct Counts([Expected; 4]);

impl Counts {
    fn add(&mut self, table: Table, bucket: Bucket) {
        let e = &mut self.0[table as usize];
        match bucket {
            Bucket::Row => e.rows += 1,
            Bucket::Duplicate => e.duplicates += 1,
            Bucket::Reject => e.rejects += 1,
            Bucket::Skipped => e.skipped += 1,
        }
    }

    fn merge(&mut self, other: &Counts) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            a.rows += b.rows;
            a.duplicates += b.duplicates;
            a.rejects += b.rejects;
            a.skipped += b.skipped;
        }
    }

    /// Counts of a second copy of a file: its rows are now duplicates.
    fn reshipped(&self) -> Counts {
        let mut c = self.clone();
        for e in &mut c.0 {
            e.duplicates += e.rows;
            e.rows = 0;
        }
        c
    }
}

#[derive(Default, Debug)]
struct Tally {
    files: u64,
    bytes: u64,
    lines: u64,
    counts: Counts,
    lake_tokens: TokenSums,
    tokens_1a: TokenSums,
}

impl Tally {
    fn merge(&mut self, other: &Tally) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.lines += other.lines;
        self.counts.merge(&other.counts);
        self.lake_tokens.add(&other.lake_tokens);
        self.tokens_1a.add(&other.tokens_1a);
    }

    fn into_totals(self) -> SampleTotals {
        let tables = TABLE_NAMES
            .iter()
            .zip(self.counts.0)
            .map(|(name, e)| ((*name).to_string(), e))
            .collect();
        SampleTotals {
            files: self.files,
            bytes: self.bytes,
            lines: self.lines,
            tables,
            lake_tokens: self.lake_tokens,
            tokens_1a: self.tokens_1a,
        }
    }
}

fn write_table_file(path: &Path, text: &str, tally: &mut Tally) -> Result<(), SampleError> {
    fs::write(path, text).map_err(io_err(path))?;
    tally.files += 1;
    tally.bytes += text.len() as u64;
    tally.lines += text.bytes().filter(|&b| b == b'\n').count() as u64;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Time formatting (hand-rolled: it runs for every line)

#[derive(Clone, Copy)]
struct Civil {
    y: i64,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    s: u32,
}

fn civil(secs: i64) -> Civil {
    let days = secs.div_euclid(DAY);
    let sod = secs.rem_euclid(DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let mo = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(mo <= 2);
    Civil {
        y,
        mo,
        d,
        h: (sod / 3_600) as u32,
        mi: (sod % 3_600 / 60) as u32,
        s: (sod % 60) as u32,
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Frac {
    None,
    Millis,
    /// Go's RFC3339Nano: nine digits with trailing zeros trimmed.
    Nanos,
}

/// RFC 3339; `off` None writes UTC with `Z`, Some writes local time with `+hh:mm`.
fn w_rfc3339(buf: &mut String, secs: i64, nanos: u32, frac: Frac, off: Option<i32>) {
    let c = civil(secs + i64::from(off.unwrap_or(0)));
    let _ = write!(
        buf,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        c.y, c.mo, c.d, c.h, c.mi, c.s
    );
    match frac {
        Frac::None => {}
        Frac::Millis => {
            let _ = write!(buf, ".{:03}", nanos / 1_000_000);
        }
        Frac::Nanos => {
            let (mut n, mut digits) = (nanos, 9usize);
            while digits > 0 && n % 10 == 0 {
                n /= 10;
                digits -= 1;
            }
            if digits > 0 {
                let _ = write!(buf, ".{n:0digits$}");
            }
        }
    }
    match off {
        None => buf.push('Z'),
        Some(o) => {
            let sign = if o < 0 { '-' } else { '+' };
            let o = o.unsigned_abs();
            let _ = write!(buf, "{sign}{:02}:{:02}", o / 3_600, o % 3_600 / 60);
        }
    }
}

/// `2026-10-01 09:12:44` (main log; `bad_day` writes day 32).
fn w_mainlog_ts(buf: &mut String, local: i64, bad_day: bool) {
    let c = civil(local);
    let d = if bad_day { 32 } else { c.d };
    let _ = write!(
        buf,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        c.y, c.mo, d, c.h, c.mi, c.s
    );
}

/// `2026/10/01 - 09:12:44` (gin's own timestamp in the older `[GIN]` lines).
fn w_gin_ts(buf: &mut String, local: i64, bad_day: bool) {
    let c = civil(local);
    let d = if bad_day { 32 } else { c.d };
    let _ = write!(
        buf,
        "{:04}/{:02}/{:02} - {:02}:{:02}:{:02}",
        c.y, c.mo, d, c.h, c.mi, c.s
    );
}

/// `01/Oct/2026:09:12:44 +0200` (CLF `%t` without brackets).
fn w_clf_ts(buf: &mut String, secs: i64, off: i32, bad_day: bool) {
    let c = civil(secs + i64::from(off));
    let d = if bad_day { 32 } else { c.d };
    let sign = if off < 0 { '-' } else { '+' };
    let o = off.unsigned_abs();
    let _ = write!(
        buf,
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} {sign}{:02}{:02}",
        d,
        MONTHS[c.mo as usize - 1],
        c.y,
        c.h,
        c.mi,
        c.s,
        o / 3_600,
        o % 3_600 / 60
    );
}

/// Go's `time.Duration` String of a latency truncated like gin_logger.go does.
fn w_go_duration(buf: &mut String, ms: u64) {
    if ms == 0 {
        buf.push_str("0s");
    } else if ms < 1_000 {
        let _ = write!(buf, "{ms}ms");
    } else if ms < 60_000 {
        let (s, mut f, mut digits) = (ms / 1_000, ms % 1_000, 3usize);
        if f == 0 {
            let _ = write!(buf, "{s}s");
        } else {
            while f % 10 == 0 {
                f /= 10;
                digits -= 1;
            }
            let _ = write!(buf, "{s}.{f:0digits$}s");
        }
    } else {
        let s = ms / 1_000;
        let (h, m, s) = (s / 3_600, s % 3_600 / 60, s % 60);
        if h > 0 {
            let _ = write!(buf, "{h}h{m}m{s}s");
        } else {
            let _ = write!(buf, "{m}m{s}s");
        }
    }
}

/// UTC offset of a time zone, cached per UTC hour (all used zones change on the hour).
struct TzOff {
    tz: Tz,
    hour: i64,
    off: i32,
}

impl TzOff {
    fn new(tz: Tz) -> TzOff {
        TzOff {
            tz,
            hour: i64::MIN,
            off: 0,
        }
    }

    fn at(&mut self, secs: i64) -> i32 {
        let hour = secs.div_euclid(3_600);
        if hour != self.hour {
            self.hour = hour;
            let utc = chrono::DateTime::from_timestamp(hour * 3_600, 0)
                .expect("timestamp in range")
                .naive_utc();
            self.off = self
                .tz
                .offset_from_utc_datetime(&utc)
                .fix()
                .local_minus_utc();
        }
        self.off
    }
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

/// JSON string body escaping (no surrounding quotes).
fn push_json_escaped(buf: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => buf.push(c),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Customers, users, VMs

struct World {
    customers_csv: String,
    users_csv: String,
    vms: Vec<VmBase>,
}

struct VmBase {
    id: String,
    tz: Tz,
    /// Events stop here: the period end, or the owner's cancellation.
    end: i64,
    users: Vec<VmUser>,
}

struct VmUser {
    key: String,
    user_id: Option<String>,
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

fn build_world(ctx: &Ctx, opts: &SampleOptions) -> World {
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
        vms,
    }
}

// ---------------------------------------------------------------------------------------
// Streams: one logical log of a VM, cut into rotated segment files

enum Sink {
    Plain(BufWriter<File>),
    Gz(Box<BufWriter<GzEncoder<File>>>),
}

impl Sink {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(bytes),
            Sink::Gz(w) => w.write_all(bytes),
        }
    }

    fn finish(self) -> io::Result<File> {
        match self {
            Sink::Plain(w) => w.into_inner().map_err(|e| e.into_error()),
            Sink::Gz(w) => w.into_inner().map_err(|e| e.into_error())?.finish(),
        }
    }
}

struct Stream {
    dir: PathBuf,
    stem: &'static str,
    ext: &'static str,
    /// logrotate numbering (`usage.jsonl.2.gz`) rather than dated names.
    numbered: bool,
    /// Still written at the VM's end, so its last segment is the plain live file. A
    /// stream that stopped earlier (format switch) is rotated entirely.
    live: bool,
    table: Table,
    clean: bool,
    segs: Vec<(i64, i64)>,
    next: usize,
    sink: Option<Sink>,
    path: PathBuf,
    header: Option<&'static str>,
    eol: &'static str,
    /// Rows of a segment copied to the start of the next one.
    overlap: usize,
    ring: VecDeque<String>,
    /// Segment shipped twice.
    reship: Option<usize>,
    seg: Tally,
    rejects: u64,
}

impl Stream {
    fn new(
        ctx: &Ctx,
        dir: &Path,
        name: (&'static str, &'static str),
        table: Table,
        range: (i64, i64),
    ) -> Stream {
        Stream {
            dir: dir.to_path_buf(),
            stem: name.0,
            ext: name.1,
            numbered: false,
            live: true,
            table,
            clean: ctx.clean,
            segs: ctx.segments(range.0, range.1),
            next: 0,
            sink: None,
            path: PathBuf::new(),
            header: None,
            eol: "\n",
            overlap: 0,
            ring: VecDeque::new(),
            reship: None,
            seg: Tally::default(),
            rejects: 0,
        }
    }

    fn cur(&self) -> usize {
        self.next.saturating_sub(1)
    }

    fn is_last(&self) -> bool {
        self.next == self.segs.len()
    }

    /// Whether segment `j` is the plain live file (not clean).
    fn is_live(&self, j: usize) -> bool {
        self.live && j + 1 == self.segs.len()
    }

    fn file_name(&self, j: usize) -> String {
        if !self.clean && self.is_live(j) {
            return format!("{}.{}", self.stem, self.ext);
        }
        if !self.clean && self.numbered {
            let n = self.segs.len() - j - usize::from(self.live);
            return format!("{}.{}.{n}.gz", self.stem, self.ext);
        }
        let mut name = format!("{}-", self.stem);
        let start = self.segs[j].0;
        let c = civil(start);
        let _ = write!(name, "{:04}-{:02}-{:02}", c.y, c.mo, c.d);
        if start % DAY != 0 {
            let _ = write!(name, "T{:02}{:02}", c.h, c.mi);
        }
        let _ = write!(name, ".{}", self.ext);
        if !self.clean {
            name.push_str(".gz");
        }
        name
    }

    /// Opens the segment file that holds time `t` (never goes back).
    fn at(&mut self, t: i64, tally: &mut Tally) -> Result<(), SampleError> {
        while self.next < self.segs.len() && (self.sink.is_none() || t >= self.segs[self.cur()].1) {
            self.open_next(tally)?;
        }
        Ok(())
    }

    fn open_next(&mut self, tally: &mut Tally) -> Result<(), SampleError> {
        self.close(tally)?;
        let j = self.next;
        self.next += 1;
        self.path = self.dir.join(self.file_name(j));
        let file = File::create(&self.path).map_err(io_err(&self.path))?;
        self.sink = Some(if !self.clean && !self.is_live(j) {
            Sink::Gz(Box::new(BufWriter::with_capacity(
                GZ_BUF,
                GzEncoder::new(file, Compression::fast()),
            )))
        } else {
            Sink::Plain(BufWriter::with_capacity(PLAIN_BUF, file))
        });
        self.seg = Tally {
            files: 1,
            ..Tally::default()
        };
        if let Some(header) = self.header {
            self.emit(header, Bucket::Skipped)?;
        }
        if j > 0 && !self.ring.is_empty() {
            let ring = std::mem::take(&mut self.ring);
            for line in &ring {
                self.emit(line, Bucket::Duplicate)?;
            }
            self.ring = ring;
            self.ring.clear();
        }
        Ok(())
    }

    fn emit(&mut self, line: &str, bucket: Bucket) -> Result<(), SampleError> {
        debug_assert!(!line.contains('\n'));
        let sink = self.sink.as_mut().expect("segment open before emit");
        sink.write_all(line.as_bytes())
            .and_then(|()| sink.write_all(self.eol.as_bytes()))
            .map_err(io_err(&self.path))?;
        self.seg.lines += 1;
        self.seg.counts.add(self.table, bucket);
        if bucket == Bucket::Reject {
            self.rejects += 1;
        }
        if bucket == Bucket::Row && self.overlap > 0 && !self.is_last() {
            if self.ring.len() == self.overlap {
                let mut s = self.ring.pop_front().expect("ring is full");
                s.clear();
                s.push_str(line);
                self.ring.push_back(s);
            } else {
                self.ring.push_back(line.to_owned());
            }
        }
        Ok(())
    }

    fn close(&mut self, tally: &mut Tally) -> Result<(), SampleError> {
        let Some(sink) = self.sink.take() else {
            return Ok(());
        };
        let file = sink.finish().map_err(io_err(&self.path))?;
        self.seg.bytes = file.metadata().map_err(io_err(&self.path))?.len();
        drop(file);
        tally.merge(&self.seg);
        if self.reship == Some(self.cur()) {
            let dir = self.dir.join("reshipped");
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let dst = dir.join(self.path.file_name().expect("segment file has a name"));
            fs::copy(&self.path, &dst).map_err(io_err(&dst))?;
            tally.files += 1;
            tally.bytes += self.seg.bytes;
            tally.lines += self.seg.lines;
            tally.counts.merge(&self.seg.counts.reshipped());
        }
        Ok(())
    }

    /// Opens any segments not reached yet, appends `tail` without a newline to the live
    /// file (skipped by ingest) and closes.
    fn finish(&mut self, tally: &mut Tally, tail: Option<&str>) -> Result<(), SampleError> {
        if self.segs.is_empty() {
            return Ok(());
        }
        while self.next < self.segs.len() {
            self.open_next(tally)?;
        }
        if let (Some(tail), Some(Sink::Plain(w))) = (tail, self.sink.as_mut()) {
            w.write_all(tail.as_bytes()).map_err(io_err(&self.path))?;
            self.seg.counts.add(self.table, Bucket::Skipped);
        }
        self.close(tally)
    }

    /// Whether the current line may be replaced by a malformed one: never when clean,
    /// never in the re-shipped segment, and at least once per stream.
    fn corrupt(&self, rng: &mut SmallRng) -> bool {
        if self.clean || self.reship == Some(self.cur()) {
            return false;
        }
        rng.random_bool(MALFORMED_RATE) || (self.rejects == 0 && self.is_last())
    }
}

// ---------------------------------------------------------------------------------------
// Per-VM plan: which formats a VM writes (cycled by VM index so small runs cover all)

#[derive(Clone, Copy, PartialEq, Eq)]
enum UsageKind {
    /// 1b only.
    B,
    /// 1a only.
    A,
    /// 1a until the switch, then 1b.
    AThenB,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ClfFlavor {
    NginxCombined,
    ApacheCombined,
    ApacheCommon,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ResFmt {
    Csv,
    Jsonl,
    Influx,
}

struct Plan {
    usage: UsageKind,
    usage_switch: i64,
    /// None: 1c main.log; Some: 1d access.log.
    clf: Option<ClfFlavor>,
    /// Main log in the older `[GIN]` form until this time.
    upgrade_at: i64,
    /// 1b records carry `accounting_version` and `token_breakdown` from this time.
    breakdown_since: i64,
    profile: usize,
    /// Not clean and not UTC: timestamps with the local offset.
    local_offsets: bool,
    a_request_id: bool,
    a_provider: bool,
    a_latency: bool,
    a_api_key: bool,
    a_user: bool,
    a_millis: bool,
    gemini_exec: &'static str,
    claude_oauth: bool,
    /// `(format, from, to)` of the VM's resource streams.
    res: Vec<(ResFmt, i64, i64)>,
    crlf_csv: bool,
    tail_usage: bool,
    tail_access: bool,
}

impl Plan {
    fn new(ctx: &Ctx, idx: usize, vm: &VmBase, rng: &mut SmallRng) -> Plan {
        let (start, end) = (ctx.start, vm.end);
        let half = if ctx.days >= 2 {
            i64::from(ctx.days / 2) * DAY
        } else {
            DAY / 2
        };
        let mid = start + half;
        let never = i64::MAX;
        let usage = match ctx.usage_format {
            UsageFormat::Mixed => [UsageKind::B, UsageKind::A, UsageKind::AThenB][idx % 3],
            UsageFormat::Lines => UsageKind::A,
            UsageFormat::Records => UsageKind::B,
        };
        let clf = (idx % 2 == 1).then(|| {
            [
                ClfFlavor::NginxCombined,
                ClfFlavor::ApacheCombined,
                ClfFlavor::ApacheCommon,
            ][idx / 2 % 3]
        });
        let upgrade_at = if idx.is_multiple_of(4) {
            mid + 10 * 3_600
        } else {
            start
        };
        let breakdown_since = match idx % 4 {
            0 => upgrade_at,
            1 => never,
            _ => start,
        };
        let influx_len = if ctx.days >= 2 {
            i64::from((ctx.days / 15).max(1)) * DAY
        } else {
            DAY / 2
        };
        let switch = (start + influx_len).min(end);
        let res = match idx % 4 {
            0 => vec![(ResFmt::Influx, start, switch), (ResFmt::Csv, switch, end)],
            1 => vec![(ResFmt::Jsonl, start, end)],
            2 => vec![(ResFmt::Csv, start, end)],
            _ => vec![
                (ResFmt::Influx, start, switch),
                (ResFmt::Jsonl, switch, end),
            ],
        };
        Plan {
            usage,
            usage_switch: mid.min(end),
            clf,
            upgrade_at,
            breakdown_since,
            profile: idx % 4,
            local_offsets: !ctx.clean && vm.tz != Tz::UTC,
            a_request_id: rng.random_bool(0.6),
            a_provider: rng.random_bool(0.5),
            a_latency: rng.random_bool(0.5),
            a_api_key: rng.random_bool(0.8),
            a_user: rng.random_bool(0.5),
            a_millis: rng.random_bool(0.5),
            gemini_exec: if rng.random_bool(0.5) {
                "GeminiCLIExecutor"
            } else {
                "GeminiExecutor"
            },
            claude_oauth: rng.random_bool(0.5),
            res,
            crlf_csv: !ctx.clean && idx % 4 == 2,
            tail_usage: !ctx.clean && idx.is_multiple_of(2),
            tail_access: !ctx.clean && idx.is_multiple_of(4),
        }
    }
}

struct VmStreams {
    usage_a: Option<Stream>,
    usage_b: Option<Stream>,
    access: Stream,
    res: Vec<(ResFmt, Stream)>,
    commands: Stream,
}

fn gen_vm(ctx: &Ctx, idx: usize, vm: &VmBase) -> Result<Tally, SampleError> {
    let root = ctx.out.join(&vm.id);
    let cli = root.join("cliproxy");
    let res_dir = root.join("resources");
    let cmd_dir = root.join("commands");
    for d in [&cli, &res_dir, &cmd_dir] {
        fs::create_dir_all(d).map_err(io_err(d))?;
    }
    let mut plan_rng = ctx.rng(idx, 0);
    let plan = Plan::new(ctx, idx, vm, &mut plan_rng);
    let (start, end) = (ctx.start, vm.end);

    let usage_range = |kind: UsageKind| match (plan.usage, kind) {
        (UsageKind::AThenB, UsageKind::A) => Some((start, plan.usage_switch)),
        (UsageKind::AThenB, _) => Some((plan.usage_switch, end)),
        (k, want) if k == want => Some((start, end)),
        _ => None,
    };
    let mut usage_a = usage_range(UsageKind::A).map(|r| {
        let mut s = Stream::new(ctx, &cli, ("usage", "log"), Table::ApiUsage, r);
        s.live = r.1 == end;
        s
    });
    let mut usage_b = usage_range(UsageKind::B)
        .map(|r| Stream::new(ctx, &cli, ("usage", "jsonl"), Table::ApiUsage, r));
    let access_name = if plan.clf.is_some() {
        ("access", "log")
    } else {
        ("main", "log")
    };
    let mut access = Stream::new(ctx, &cli, access_name, Table::ApiRequests, (start, end));
    for s in [usage_a.as_mut(), usage_b.as_mut(), Some(&mut access)]
        .into_iter()
        .flatten()
    {
        s.numbered = true;
    }
    let mut res = Vec::new();
    for &(fmt, a, b) in &plan.res {
        let (name, header) = match fmt {
            ResFmt::Csv => (
                ("metrics", "csv"),
                Some("timestamp,cpu_percent,memory_percent,disk_gb,network_in_mb,network_out_mb"),
            ),
            ResFmt::Jsonl => (("metrics", "jsonl"), None),
            ResFmt::Influx => (("telegraf", "influx"), None),
        };
        let mut s = Stream::new(ctx, &res_dir, name, Table::ResourceUsage, (a, b));
        s.header = header;
        s.live = b == end;
        if fmt == ResFmt::Csv && plan.crlf_csv {
            s.eol = "\r\n";
        }
        if !s.segs.is_empty() {
            res.push((fmt, s));
        }
    }
    let commands = Stream::new(
        ctx,
        &cmd_dir,
        ("history", "jsonl"),
        Table::Activity,
        (start, end),
    );
    let mut streams = VmStreams {
        usage_a,
        usage_b,
        access,
        res,
        commands,
    };

    if !ctx.clean {
        for s in streams.all_mut() {
            s.overlap = plan_rng.random_range(2..=5);
        }
        streams.pick_reship(idx);
    }

    let mut tally = Tally::default();
    Api::new(ctx, idx, vm, &plan).run(&mut streams, &mut tally)?;
    Resources::new(ctx, idx, vm, &plan).run(&mut streams.res, &mut tally)?;
    Commands::new(ctx, idx, vm).run(&mut streams.commands, &mut tally)?;
    Ok(tally)
}

impl VmStreams {
    fn all_mut(&mut self) -> impl Iterator<Item = &mut Stream> {
        self.usage_a
            .iter_mut()
            .chain(self.usage_b.iter_mut())
            .chain(std::iter::once(&mut self.access))
            .chain(self.res.iter_mut().map(|(_, s)| s))
            .chain(std::iter::once(&mut self.commands))
    }

    /// Ships the first segment of one stream twice (which stream varies by VM).
    fn pick_reship(&mut self, idx: usize) {
        let usage = self.usage_a.as_mut().or(self.usage_b.as_mut());
        let preferred: Option<&mut Stream> = match idx % 4 {
            0 => usage,
            1 => Some(&mut self.access),
            2 => self.res.first_mut().map(|(_, s)| s),
            _ => Some(&mut self.commands),
        };
        if let Some(s) = preferred.filter(|s| s.segs.len() >= 2) {
            s.reship = Some(0);
        } else if self.commands.segs.len() >= 2 {
            self.commands.reship = Some(0);
        }
    }
}

// ---------------------------------------------------------------------------------------
// API calls: one usage record (1a/1b) and one access line (1c/1d) per call

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Anthropic,
    OpenAi,
    Google,
}

struct ModelSpec {
    name: &'static str,
    family: Family,
    reasoning: bool,
    prompt_median: f64,
    out_median: f64,
}

const fn m(name: &'static str, family: Family, reasoning: bool, p: f64, o: f64) -> ModelSpec {
    ModelSpec {
        name,
        family,
        reasoning,
        prompt_median: p,
        out_median: o,
    }
}

const MODELS: [ModelSpec; 12] = [
    m(
        "claude-sonnet-4-5-20250929",
        Family::Anthropic,
        false,
        24_000.0,
        450.0,
    ),
    m("claude-opus-4-5", Family::Anthropic, false, 30_000.0, 600.0),
    m("claude-haiku-4-5", Family::Anthropic, false, 6_000.0, 250.0),
    m(
        "claude-3-5-sonnet-20241022",
        Family::Anthropic,
        false,
        8_000.0,
        400.0,
    ),
    m("gpt-5", Family::OpenAi, true, 12_000.0, 900.0),
    m("gpt-5-mini", Family::OpenAi, true, 5_000.0, 500.0),
    m("gpt-4o", Family::OpenAi, false, 3_000.0, 350.0),
    m("gpt-4.1", Family::OpenAi, false, 9_000.0, 450.0),
    m("o3", Family::OpenAi, true, 7_000.0, 1_200.0),
    m("gemini-2.5-pro", Family::Google, true, 15_000.0, 700.0),
    m("gemini-2.5-flash", Family::Google, true, 6_000.0, 400.0),
    m("gemini-1.5-pro", Family::Google, false, 9_000.0, 350.0),
];
const GPT_41: usize = 7;
const GEMINI_FLASH: usize = 10;

/// Model mixes: Claude-heavy, OpenAI-heavy, Gemini-heavy, mixed.
const PROFILES: [[u32; 12]; 4] = [
    [30, 8, 10, 4, 6, 3, 2, 2, 1, 2, 2, 1],
    [4, 1, 2, 1, 25, 15, 10, 10, 6, 2, 2, 1],
    [4, 1, 3, 1, 3, 2, 2, 1, 1, 20, 20, 6],
    [8, 3, 5, 3, 8, 6, 5, 5, 3, 6, 6, 3],
];

/// Relative call volume per local hour.
const DIURNAL: [f64; 24] = [
    0.15, 0.10, 0.08, 0.08, 0.10, 0.15, 0.30, 0.60, 1.00, 1.30, 1.40, 1.40, 1.20, 1.30, 1.40, 1.40,
    1.30, 1.10, 0.80, 0.60, 0.50, 0.40, 0.30, 0.20,
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ep {
    Messages,
    Chat,
    Responses,
    Generate,
    StreamGenerate,
}

/// A call's tokens as the lake stores them (formats.md section 2): OpenAI and Google
/// prompts include cached reads, Google candidates exclude reasoning.
fn lake_tokens(family: Family, t: Tok) -> TokenSums {
    let (input, output) = match family {
        Family::Anthropic => (t.input, t.output),
        Family::OpenAi => (t.input - t.read, t.output),
        Family::Google => (t.input - t.read, t.output + t.reasoning),
    };
    TokenSums {
        input,
        cache_read: t.read,
        cache_write: t.write,
        output,
        reasoning: t.reasoning,
    }
}

/// Token counts in the provider's own terms (formats.md section 2):
/// Anthropic `input` excludes `read`/`write`; OpenAI and Google `input` includes `read`;
/// OpenAI `output` includes `reasoning`; Google `output` (candidates) excludes it.
#[derive(Clone, Copy, Default)]
struct Tok {
    input: u64,
    output: u64,
    read: u64,
    write: u64,
    reasoning: u64,
}

struct Call {
    secs: i64,
    nanos: u32,
    rid: u32,
    user: usize,
    model: usize,
    ep: Ep,
    status: u16,
    tok: Tok,
    latency_ms: u64,
    ttft_ms: u64,
    bytes: u64,
    auth_index: u32,
    ua: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum UsageQuirk {
    None,
    Truncate,
    NonNumeric,
    Negative,
    CachedOverPrompt,
    NoTimestamp,
    NoModel,
}

const QUIRKS_1A: [UsageQuirk; 6] = [
    UsageQuirk::Truncate,
    UsageQuirk::NonNumeric,
    UsageQuirk::Negative,
    UsageQuirk::CachedOverPrompt,
    UsageQuirk::NoTimestamp,
    UsageQuirk::NoModel,
];
const QUIRKS_1B: [UsageQuirk; 5] = [
    UsageQuirk::Truncate,
    UsageQuirk::NonNumeric,
    UsageQuirk::Negative,
    UsageQuirk::CachedOverPrompt,
    UsageQuirk::NoTimestamp,
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum AccessQuirk {
    None,
    BadStatus,
    BadDate,
}

const USER_AGENTS: [&str; 6] = [
    "claude-cli/2.0.14 (external, cli)",
    "OpenAI/Python 1.109.1",
    "Anthropic/Python 0.69.0",
    "google-genai-sdk/1.38.0 gl-python/3.12.3",
    "codex_cli_rs/0.46.0 (Ubuntu 24.4.0; x86_64) xterm-256color",
    "curl/8.5.0",
];
/// As they appear in the log: `"` and `\` already escaped by the web server.
const ODD_USER_AGENTS: [&str; 3] = [
    r#"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \"LibreChat\"/0.8.0"#,
    r#"my-agent/2.1 (build \"nightly\"; +https://agents.example/bot)"#,
    r#"C:\\tools\\proxy-client.exe/1.4"#,
];

/// 1b `fail.body` texts, already JSON-escaped.
fn fail_body(family: Family, status: u16) -> &'static str {
    match (family, status) {
        (Family::Anthropic, 429) => {
            r#"{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"Number of request tokens has exceeded your per-minute rate limit\"}}"#
        }
        (Family::Anthropic, 529) => {
            r#"{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}"#
        }
        (Family::Anthropic, _) => {
            r#"{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server error\"}}"#
        }
        (Family::OpenAi, 429) => {
            r#"{\"error\":{\"message\":\"Rate limit reached for requests\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}"#
        }
        (Family::OpenAi, 400) => {
            r#"{\"error\":{\"message\":\"Invalid 'input': string too long.\",\"type\":\"invalid_request_error\",\"code\":\"string_above_max_length\"}}"#
        }
        (Family::OpenAi, _) => {
            r#"{\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\"}}"#
        }
        (Family::Google, 429) => {
            r#"{\"error\":{\"code\":429,\"message\":\"Resource has been exhausted (e.g. check quota).\",\"status\":\"RESOURCE_EXHAUSTED\"}}"#
        }
        (Family::Google, _) => {
            r#"{\"error\":{\"code\":503,\"message\":\"The model is overloaded. Please try again later.\",\"status\":\"UNAVAILABLE\"}}"#
        }
    }
}

struct Api<'a> {
    ctx: &'a Ctx,
    vm: &'a VmBase,
    plan: &'a Plan,
    rng: SmallRng,
    tz: TzOff,
    salt: u32,
    counter: u32,
    ips: Vec<String>,
    uas: Vec<&'static str>,
    buf: String,
    path: String,
    scratch: String,
    weights: Vec<f64>,
    offsets: Vec<u32>,
    quirk_u: usize,
    quirk_a: usize,
    upgraded: bool,
}

impl<'a> Api<'a> {
    fn new(ctx: &'a Ctx, idx: usize, vm: &'a VmBase, plan: &'a Plan) -> Api<'a> {
        let mut rng = ctx.rng(idx, 1);
        let salt = rng.random::<u32>();
        let ips = (0..vm.users.len())
            .map(|u| match (u + idx) % 4 {
                0 => "127.0.0.1".to_string(),
                1 => format!(
                    "10.0.{}.{}",
                    rng.random_range(0..255),
                    rng.random_range(2..255)
                ),
                2 => format!("fd2b:6d4:c6af:cafe::{:x}", rng.random_range(0x10..0xfff)),
                _ => format!(
                    "2001:db8:85a3::8a2e:370:{:x}",
                    rng.random_range(0x1000..0xffff)
                ),
            })
            .collect();
        let uas = (0..vm.users.len())
            .map(|_| USER_AGENTS[rng.random_range(0..USER_AGENTS.len())])
            .collect();
        Api {
            ctx,
            vm,
            plan,
            rng,
            tz: TzOff::new(vm.tz),
            salt,
            counter: 0,
            ips,
            uas,
            buf: String::with_capacity(2_048),
            path: String::with_capacity(128),
            scratch: String::with_capacity(64),
            weights: vec![0.0; 1_440],
            offsets: Vec::new(),
            quirk_u: 0,
            quirk_a: 0,
            upgraded: false,
        }
    }

    fn run(mut self, s: &mut VmStreams, tally: &mut Tally) -> Result<(), SampleError> {
        let (start, end) = (self.ctx.start, self.vm.end);
        if self.plan.clf.is_none() {
            s.access.at(start, tally)?;
            self.upgraded = self.plan.upgrade_at <= start;
            self.banner(&mut s.access, start, !self.upgraded)?;
        }
        'days: for day in 0..i64::from(self.ctx.days) {
            let day_start = start + day * DAY;
            if day_start >= end {
                break;
            }
            for (minute, w) in self.weights.iter_mut().enumerate() {
                let t = day_start + minute as i64 * 60;
                let local = t + i64::from(self.tz.at(t));
                *w = DIURNAL[civil(local).h as usize];
            }
            let mut left = u64::from(self.ctx.events_per_day);
            let mut w_left: f64 = self.weights.iter().sum();
            for minute in 0..1_440usize {
                if left == 0 {
                    break;
                }
                let w = self.weights[minute];
                let p = (w / w_left).clamp(0.0, 1.0);
                w_left -= w;
                let k = if minute == 1_439 || p >= 1.0 {
                    left
                } else {
                    Binomial::new(left, p)
                        .expect("valid binomial")
                        .sample(&mut self.rng)
                };
                left -= k;
                if k == 0 {
                    continue;
                }
                self.offsets.clear();
                for _ in 0..k {
                    self.offsets.push(self.rng.random_range(0..60_000));
                }
                self.offsets.sort_unstable();
                for i in 0..self.offsets.len() {
                    let t_ms =
                        (day_start + minute as i64 * 60) * 1_000 + i64::from(self.offsets[i]);
                    if t_ms >= end * 1_000 {
                        break 'days;
                    }
                    self.call(s, tally, t_ms)?;
                }
            }
        }

        // Unterminated last lines of live files: a record cut off mid-write.
        let mut usage_tail = None;
        let mut access_tail = None;
        if self.plan.tail_usage || self.plan.tail_access {
            let t_ms = end * 1_000 - 1_500;
            let call = self.new_call(t_ms);
            if self.plan.tail_usage {
                self.buf.clear();
                self.usage_line(&call, !self.uses_1a(call.secs), UsageQuirk::None);
                usage_tail = Some(self.buf[..self.buf.len() * 3 / 5].to_string());
            }
            if self.plan.tail_access {
                self.buf.clear();
                self.access_line(&call, AccessQuirk::None);
                access_tail = Some(self.buf[..self.buf.len() / 2].to_string());
            }
        }
        let last_usage = match (&s.usage_b, &s.usage_a) {
            (Some(b), _) if !b.segs.is_empty() => 1,
            _ => 0,
        };
        if let Some(a) = s.usage_a.as_mut() {
            a.finish(
                tally,
                if last_usage == 0 {
                    usage_tail.as_deref()
                } else {
                    None
                },
            )?;
        }
        if let Some(b) = s.usage_b.as_mut() {
            b.finish(
                tally,
                if last_usage == 1 {
                    usage_tail.as_deref()
                } else {
                    None
                },
            )?;
        }
        s.access.finish(tally, access_tail.as_deref())
    }

    fn uses_1a(&self, secs: i64) -> bool {
        match self.plan.usage {
            UsageKind::A => true,
            UsageKind::B => false,
            UsageKind::AThenB => secs < self.plan.usage_switch,
        }
    }

    fn new_call(&mut self, t_ms: i64) -> Call {
        let rng = &mut self.rng;
        let secs = t_ms.div_euclid(1_000);
        let nanos = (t_ms.rem_euclid(1_000) as u32) * 1_000_000 + rng.random_range(0..1_000_000);
        self.counter = self.counter.wrapping_add(1);
        let rid = request_id(self.salt, self.counter);
        let n_users = self.vm.users.len();
        let user = if n_users > 1 && rng.random_bool(0.4) {
            rng.random_range(1..n_users)
        } else {
            0
        };
        let weights = &PROFILES[self.plan.profile];
        let mut pick = rng.random_range(0..weights.iter().sum::<u32>());
        let mut model = 0;
        for (i, &w) in weights.iter().enumerate() {
            if pick < w {
                model = i;
                break;
            }
            pick -= w;
        }
        let spec = &MODELS[model];
        let ep = match spec.family {
            Family::Anthropic => Ep::Messages,
            Family::OpenAi => {
                let responses = if spec.reasoning { 0.7 } else { 0.1 };
                if rng.random_bool(responses) {
                    Ep::Responses
                } else {
                    Ep::Chat
                }
            }
            Family::Google => {
                if rng.random_bool(0.5) {
                    Ep::StreamGenerate
                } else {
                    Ep::Generate
                }
            }
        };
        let status = if rng.random_bool(0.02) {
            match spec.family {
                Family::Anthropic => [429, 529, 500][rng.random_range(0..3)],
                Family::OpenAi => [429, 500, 400][rng.random_range(0..3)],
                Family::Google => [429, 503][rng.random_range(0..2)],
            }
        } else {
            200
        };
        let tok = if status == 200 {
            gen_tokens(rng, spec)
        } else {
            Tok::default()
        };
        let ttft_ms = (lognormal(rng, 900.0, 0.6) as u64).clamp(80, 30_000);
        let latency_ms = if status == 200 {
            let per_tok = uniform(rng, 6.0, 25.0);
            (ttft_ms + ((tok.output + tok.reasoning) as f64 * per_tok) as u64).min(600_000)
        } else {
            rng.random_range(40..4_000)
        };
        let bytes = if status == 200 {
            600 + tok.output * 4 + rng.random_range(0..400)
        } else {
            fail_body(spec.family, status).len() as u64
        };
        let ua = if rng.random_bool(0.08) {
            ODD_USER_AGENTS[rng.random_range(0..ODD_USER_AGENTS.len())]
        } else {
            self.uas[user]
        };
        Call {
            secs,
            nanos,
            rid,
            user,
            model,
            ep,
            status,
            tok,
            latency_ms,
            ttft_ms: ttft_ms.min(latency_ms),
            bytes,
            auth_index: rng.random_range(0..3),
            ua,
        }
    }

    fn call(&mut self, s: &mut VmStreams, tally: &mut Tally, t_ms: i64) -> Result<(), SampleError> {
        let mut call = self.new_call(t_ms);
        let secs = call.secs;

        // Usage record.
        let one_a = self.uses_1a(secs);
        let us = (if one_a {
            s.usage_a.as_mut()
        } else {
            s.usage_b.as_mut()
        })
        .expect("usage stream for the call time");
        us.at(secs, tally)?;
        let quirk = if us.corrupt(&mut self.rng) {
            let q = if one_a {
                QUIRKS_1A[self.quirk_u % QUIRKS_1A.len()]
            } else {
                QUIRKS_1B[self.quirk_u % QUIRKS_1B.len()]
            };
            self.quirk_u += 1;
            q
        } else {
            UsageQuirk::None
        };
        if quirk == UsageQuirk::CachedOverPrompt {
            // An OpenAI or Google record whose cached tokens exceed its prompt tokens.
            call.model = if self.rng.random_bool(0.5) {
                GPT_41
            } else {
                GEMINI_FLASH
            };
            call.ep = if call.model == GPT_41 {
                Ep::Chat
            } else {
                Ep::Generate
            };
            call.status = 200;
            let prompt = self.rng.random_range(200..3_000);
            call.tok = Tok {
                input: prompt,
                output: self.rng.random_range(20..600),
                read: prompt + self.rng.random_range(1..5_000),
                write: 0,
                reasoning: 0,
            };
        }
        self.buf.clear();
        self.usage_line(&call, !one_a, quirk);
        if quirk == UsageQuirk::Truncate {
            let cut = self
                .rng
                .random_range(self.buf.len() / 4..self.buf.len() - 2);
            self.buf.truncate(cut);
        }
        let bucket = if quirk == UsageQuirk::None {
            let t = call.tok;
            if one_a {
                tally.tokens_1a.add(&TokenSums {
                    input: t.input,
                    cache_read: t.read,
                    cache_write: t.write,
                    output: t.output,
                    reasoning: t.reasoning,
                });
            }
            tally
                .lake_tokens
                .add(&lake_tokens(MODELS[call.model].family, t));
            Bucket::Row
        } else {
            Bucket::Reject
        };
        us.emit(&self.buf, bucket)?;

        // Access line, plus the main log's own lines.
        let ac = &mut s.access;
        ac.at(secs, tally)?;
        if self.plan.clf.is_none() {
            if !self.upgraded && secs >= self.plan.upgrade_at {
                self.upgraded = true;
                let at = self.plan.upgrade_at;
                self.main_line(
                    ac,
                    at,
                    None,
                    "info",
                    "main.go:248",
                    "received signal terminated, shutting down",
                    true,
                )?;
                self.banner(ac, at + 2, false)?;
            }
            if self.rng.random_bool(0.004) {
                const NOTES: [(&str, &str, &str); 4] = [
                    (
                        "warn",
                        "conductor.go:611",
                        "auth index 1 cooling down for 60s after upstream rate limit",
                    ),
                    (
                        "info",
                        "watcher.go:233",
                        "config file changed, reloading clients",
                    ),
                    (
                        "warn",
                        "token_refresh.go:88",
                        "oauth token refresh took 4.2s, serving with cached token",
                    ),
                    ("info", "usage_logger.go:141", "usage statistics flushed"),
                ];
                let (level, caller, msg) = NOTES[self.rng.random_range(0..NOTES.len())];
                self.main_line(ac, secs, None, level, caller, msg, !self.upgraded)?;
            }
            if call.status >= 500 && self.upgraded {
                let caller = match MODELS[call.model].family {
                    Family::Anthropic => "claude_executor.go:241",
                    Family::OpenAi => "codex_executor.go:198",
                    Family::Google => "gemini_executor.go:276",
                };
                self.scratch.clear();
                let _ = write!(
                    self.scratch,
                    "upstream request failed, status {}",
                    call.status
                );
                let msg = std::mem::take(&mut self.scratch);
                self.main_line(ac, secs, Some(call.rid), "error", caller, &msg, false)?;
                self.scratch = msg;
            }
        }
        let aq = if ac.corrupt(&mut self.rng) {
            self.quirk_a += 1;
            if self.quirk_a % 2 == 1 {
                AccessQuirk::BadStatus
            } else {
                AccessQuirk::BadDate
            }
        } else {
            AccessQuirk::None
        };
        self.buf.clear();
        self.access_line(&call, aq);
        let bucket = if aq == AccessQuirk::None {
            Bucket::Row
        } else {
            Bucket::Reject
        };
        ac.emit(&self.buf, bucket)?;

        // Now and then a request that is not a model call.
        if self.rng.random_bool(0.01) {
            self.buf.clear();
            self.models_line(&call);
            ac.emit(&self.buf, Bucket::Row)?;
        }
        Ok(())
    }

    fn offset(&mut self, secs: i64) -> Option<i32> {
        self.plan.local_offsets.then(|| self.tz.at(secs))
    }

    fn w_path(&mut self, model: usize, ep: Ep) {
        self.path.clear();
        match ep {
            Ep::Messages => self.path.push_str("/v1/messages"),
            Ep::Chat => self.path.push_str("/v1/chat/completions"),
            Ep::Responses => self.path.push_str("/v1/responses"),
            Ep::Generate | Ep::StreamGenerate => {
                let verb = if ep == Ep::Generate {
                    "generateContent"
                } else {
                    "streamGenerateContent"
                };
                let _ = write!(self.path, "/v1beta/models/{}:{verb}", MODELS[model].name);
            }
        }
    }

    fn usage_line(&mut self, c: &Call, one_b: bool, quirk: UsageQuirk) {
        self.w_path(c.model, c.ep);
        let off = self.offset(c.secs);
        if one_b {
            self.line_1b(c, off, quirk);
        } else {
            self.line_1a(c, off, quirk);
        }
    }

    /// `"output_tokens":N`, or its malformed variants.
    fn w_output_tokens(buf: &mut String, n: u64, quirk: UsageQuirk) {
        match quirk {
            UsageQuirk::NonNumeric => buf.push_str("\"output_tokens\":\"n/a\""),
            UsageQuirk::Negative => {
                let _ = write!(buf, "\"output_tokens\":-{}", n + 1);
            }
            _ => {
                let _ = write!(buf, "\"output_tokens\":{n}");
            }
        }
    }

    /// 1a: `{"timestamp","path","status","model","input_tokens","output_tokens", optional...}`.
    fn line_1a(&mut self, c: &Call, off: Option<i32>, quirk: UsageQuirk) {
        let spec = &MODELS[c.model];
        let p = self.plan;
        let b = &mut self.buf;
        b.push('{');
        if quirk != UsageQuirk::NoTimestamp {
            b.push_str("\"timestamp\":\"");
            let frac = if p.a_millis { Frac::Millis } else { Frac::None };
            w_rfc3339(b, c.secs, c.nanos, frac, off);
            b.push_str("\",");
        }
        let _ = write!(b, "\"path\":\"{}\",\"status\":{},", self.path, c.status);
        if quirk != UsageQuirk::NoModel {
            let _ = write!(b, "\"model\":\"{}\",", spec.name);
        }
        let _ = write!(b, "\"input_tokens\":{},", c.tok.input);
        Self::w_output_tokens(b, c.tok.output, quirk);
        if p.a_request_id {
            let _ = write!(b, ",\"request_id\":\"{:08x}\"", c.rid);
        }
        if p.a_provider || quirk == UsageQuirk::CachedOverPrompt {
            let provider = match spec.family {
                Family::Anthropic => "anthropic",
                Family::OpenAi => "openai",
                Family::Google => "google",
            };
            let _ = write!(b, ",\"provider\":\"{provider}\"");
        }
        if c.tok.read > 0 {
            let _ = write!(b, ",\"cache_read_tokens\":{}", c.tok.read);
        }
        if c.tok.write > 0 {
            let _ = write!(b, ",\"cache_creation_tokens\":{}", c.tok.write);
        }
        if c.tok.reasoning > 0 {
            let _ = write!(b, ",\"reasoning_tokens\":{}", c.tok.reasoning);
        }
        if p.a_latency {
            let _ = write!(b, ",\"latency_ms\":{}", c.latency_ms);
        }
        let user = &self.vm.users[c.user];
        if p.a_api_key {
            let _ = write!(b, ",\"api_key\":\"{}\"", user.key);
        }
        if let (true, Some(uid)) = (p.a_user, &user.user_id) {
            let _ = write!(b, ",\"user\":\"{uid}\"");
        }
        b.push('}');
    }

    /// 1b: CLIProxyAPI usage record, field order as in its Go struct.
    fn line_1b(&mut self, c: &Call, off: Option<i32>, quirk: UsageQuirk) {
        let spec = &MODELS[c.model];
        let p = self.plan;
        let t = c.tok;
        let (provider, executor, auth_type) = match (spec.family, c.ep) {
            (Family::Anthropic, _) => (
                "claude",
                "ClaudeExecutor",
                if p.claude_oauth { "oauth" } else { "apikey" },
            ),
            (Family::OpenAi, Ep::Responses) if spec.name.starts_with("gpt-5") => {
                ("codex", "CodexExecutor", "oauth")
            }
            (Family::OpenAi, _) => ("openai", "OpenAICompatExecutor", "apikey"),
            (Family::Google, _) => ("gemini", p.gemini_exec, "oauth"),
        };
        // tokens{} as CLIProxyAPI fills it, and the normalized breakdown.
        let (input, output, reasoning, creation, total) = match spec.family {
            Family::Anthropic => (
                t.input,
                t.output,
                0,
                t.write,
                t.input + t.read + t.write + t.output,
            ),
            Family::OpenAi => (t.input, t.output, t.reasoning, 0, t.input + t.output),
            Family::Google => (
                t.input,
                t.output,
                t.reasoning,
                0,
                t.input + t.output + t.reasoning,
            ),
        };
        let b = &mut self.buf;
        b.push('{');
        if quirk != UsageQuirk::NoTimestamp {
            b.push_str("\"timestamp\":\"");
            w_rfc3339(b, c.secs, c.nanos, Frac::Nanos, off);
            b.push_str("\",");
        }
        let _ = write!(
            b,
            "\"latency_ms\":{},\"ttft_ms\":{},\"source\":\"",
            c.latency_ms, c.ttft_ms
        );
        if auth_type == "oauth" {
            let _ = write!(b, "{provider}-{}@ops.example", c.auth_index + 1);
        }
        let _ = write!(
            b,
            "\",\"auth_index\":\"{}\",\"tokens\":{{\"input_tokens\":{input},",
            c.auth_index
        );
        Self::w_output_tokens(b, output, quirk);
        let _ = write!(
            b,
            ",\"reasoning_tokens\":{reasoning},\"cached_tokens\":{r},\"cache_read_tokens\":{r},\
             \"cache_read_tokens_present\":true,\"cache_creation_tokens\":{creation},\
             \"total_tokens\":{total}}},\"failed\":{}",
            c.status != 200,
            r = t.read,
        );
        if c.status != 200 {
            let _ = write!(
                b,
                ",\"fail\":{{\"status_code\":{},\"body\":\"{}\"}}",
                c.status,
                fail_body(spec.family, c.status)
            );
        }
        if c.secs >= p.breakdown_since && quirk == UsageQuirk::None {
            let (in_total, uncached, out_total, non_reasoning) = match spec.family {
                Family::Anthropic => (t.input + t.read + t.write, t.input, t.output, t.output),
                Family::OpenAi => (t.input, t.input - t.read, t.output, t.output - t.reasoning),
                Family::Google => (t.input, t.input - t.read, t.output + t.reasoning, t.output),
            };
            let _ = write!(
                b,
                ",\"accounting_version\":2,\"token_breakdown\":{{\"schema_version\":2,\
                 \"quality\":\"complete\",\"total_tokens\":{},\"input\":{{\"total_tokens\":{in_total},\
                 \"uncached_tokens\":{uncached},\"cache_read_tokens\":{},\"cache_write_tokens\":{}}},\
                 \"output\":{{\"total_tokens\":{out_total},\"non_reasoning_tokens\":{non_reasoning},\
                 \"reasoning_tokens\":{}}},\"unclassified_tokens\":0}}",
                in_total + out_total,
                t.read,
                if spec.family == Family::Anthropic {
                    t.write
                } else {
                    0
                },
                out_total - non_reasoning,
            );
        }
        let _ = write!(
            b,
            ",\"provider\":\"{provider}\",\"executor_type\":\"{executor}\""
        );
        if quirk != UsageQuirk::NoModel {
            let _ = write!(b, ",\"model\":\"{}\"", spec.name);
        }
        let alias = if spec.name == "claude-sonnet-4-5-20250929" && c.rid.is_multiple_of(3) {
            "claude-sonnet-4-5"
        } else {
            spec.name
        };
        let effort = if spec.reasoning && spec.family == Family::OpenAi {
            ["low", "medium", "high"][(c.rid % 3) as usize]
        } else {
            ""
        };
        let _ = write!(
            b,
            ",\"alias\":\"{alias}\",\"endpoint\":\"{}\",\"auth_type\":\"{auth_type}\",\
             \"api_key\":\"{}\",\"request_id\":\"{:08x}\",\"reasoning_effort\":\"{effort}\",\
             \"service_tier\":\"{}\"}}",
            self.path,
            self.vm.users[c.user].key,
            c.rid,
            if c.rid.is_multiple_of(4) {
                "default"
            } else {
                ""
            },
        );
    }

    /// The access line of a call: 1c in main.log or 1d in access.log.
    fn access_line(&mut self, c: &Call, quirk: AccessQuirk) {
        self.w_path(c.model, c.ep);
        let path = std::mem::take(&mut self.path);
        let req = Req {
            secs: c.secs,
            rid: Some(c.rid),
            status: c.status,
            latency_ms: c.latency_ms,
            user: c.user,
            method: "POST",
            path: &path,
            bytes: c.bytes,
            ua: c.ua,
        };
        match self.plan.clf {
            None => self.line_1c(&req, quirk),
            Some(flavor) => self.line_clf(&req, flavor, quirk),
        }
        self.path = path;
    }

    /// `GET /v1/models` (or a `HEAD` health check behind a web server).
    fn models_line(&mut self, c: &Call) {
        let head = self.plan.clf.is_some() && self.rng.random_bool(0.3);
        let req = Req {
            secs: c.secs,
            rid: None,
            status: 200,
            latency_ms: self.rng.random_range(0..4),
            user: c.user,
            method: if head { "HEAD" } else { "GET" },
            path: "/v1/models",
            bytes: if head {
                0
            } else {
                self.rng.random_range(2_000..2_600)
            },
            ua: c.ua,
        };
        match self.plan.clf {
            None => self.line_1c(&req, AccessQuirk::None),
            Some(flavor) => self.line_clf(&req, flavor, AccessQuirk::None),
        }
    }

    fn line_1c(&mut self, r: &Req, quirk: AccessQuirk) {
        let local = r.secs + i64::from(self.tz.at(r.secs));
        let bad_day = quirk == AccessQuirk::BadDate;
        let level = match r.status {
            500.. => "error",
            400.. => "warn",
            _ => "info",
        };
        let b = &mut self.buf;
        b.push('[');
        w_mainlog_ts(b, local, bad_day);
        if self.upgraded {
            b.push_str("] [");
            match r.rid {
                Some(rid) => {
                    let _ = write!(b, "{rid:08x}");
                }
                None => b.push_str("--------"),
            }
            let _ = write!(b, "] [{level:<5}] [gin_logger.go:97] ");
        } else {
            let _ = write!(b, "] [{level}] [gin_logger.go:58] [GIN] ");
            w_gin_ts(b, local, bad_day);
            b.push_str(" | ");
        }
        if quirk == AccessQuirk::BadStatus {
            let _ = write!(b, "{}x{}", r.status / 100, r.status % 10);
        } else {
            let _ = write!(b, "{:3}", r.status);
        }
        self.scratch.clear();
        w_go_duration(&mut self.scratch, r.latency_ms);
        let _ = write!(
            b,
            " | {:>13} | {:>15} | {:<7} \"{}\"",
            self.scratch, self.ips[r.user], r.method, r.path
        );
    }

    fn line_clf(&mut self, r: &Req, flavor: ClfFlavor, quirk: AccessQuirk) {
        let off = self.offset(r.secs).unwrap_or(0);
        let b = &mut self.buf;
        let _ = write!(b, "{} - - [", self.ips[r.user]);
        w_clf_ts(b, r.secs, off, quirk == AccessQuirk::BadDate);
        let _ = write!(b, "] \"{} {} HTTP/1.1\" ", r.method, r.path);
        if quirk == AccessQuirk::BadStatus {
            let _ = write!(b, "{}x{}", r.status / 100, r.status % 10);
        } else {
            let _ = write!(b, "{}", r.status);
        }
        match (r.bytes, flavor) {
            (0, ClfFlavor::NginxCombined) => b.push_str(" 0"),
            (0, _) => b.push_str(" -"),
            (n, _) => {
                let _ = write!(b, " {n}");
            }
        }
        if flavor != ClfFlavor::ApacheCommon {
            let _ = write!(b, " \"-\" \"{}\"", r.ua);
        }
    }

    /// A main-log line that is not an access line (skipped by ingest).
    #[allow(clippy::too_many_arguments)]
    fn main_line(
        &mut self,
        ac: &mut Stream,
        secs: i64,
        rid: Option<u32>,
        level: &str,
        caller: &str,
        msg: &str,
        old: bool,
    ) -> Result<(), SampleError> {
        let local = secs + i64::from(self.tz.at(secs));
        let b = &mut self.buf;
        b.clear();
        b.push('[');
        w_mainlog_ts(b, local, false);
        if old {
            let _ = write!(b, "] [{level}] [{caller}] {msg}");
        } else {
            match rid {
                Some(rid) => {
                    let _ = write!(b, "] [{rid:08x}]");
                }
                None => b.push_str("] [--------]"),
            }
            let _ = write!(b, " [{level:<5}] [{caller}] {msg}");
        }
        ac.emit(&self.buf, Bucket::Skipped)
    }

    fn banner(&mut self, ac: &mut Stream, secs: i64, old: bool) -> Result<(), SampleError> {
        let (version, caller) = if old {
            (
                "CLIProxyAPI Version: 6.3.2, Commit: 1a7c9e2, BuiltAt: 2026-07-02T11:20:31Z",
                "main.go:180",
            )
        } else {
            (
                "CLIProxyAPI Version: 6.6.0, Commit: 8d4b2c1, BuiltAt: 2026-09-18T08:12:55Z",
                "main.go:212",
            )
        };
        self.main_line(ac, secs, None, "info", caller, version, old)?;
        self.main_line(
            ac,
            secs,
            None,
            "info",
            "server.go:471",
            "API server started successfully on: :8317",
            old,
        )?;
        self.main_line(
            ac,
            secs + 1,
            None,
            "info",
            "watcher.go:172",
            "watching config file and auth directory",
            old,
        )
    }
}

struct Req<'r> {
    secs: i64,
    rid: Option<u32>,
    status: u16,
    latency_ms: u64,
    user: usize,
    method: &'r str,
    path: &'r str,
    bytes: u64,
    ua: &'r str,
}

fn gen_tokens(rng: &mut SmallRng, spec: &ModelSpec) -> Tok {
    let output = (lognormal(rng, spec.out_median, 1.0) as u64).clamp(1, 32_000);
    match spec.family {
        Family::Anthropic => {
            let ctx = (lognormal(rng, spec.prompt_median, 1.0) as u64).clamp(50, 190_000);
            let r: f64 = rng.random();
            let (read, write) = if r < 0.65 {
                let read = (ctx as f64 * uniform(rng, 0.55, 0.97)) as u64;
                let write = if rng.random_bool(0.5) {
                    ((ctx - read) as f64 * uniform(rng, 0.1, 0.8)) as u64
                } else {
                    0
                };
                (read, write)
            } else if r < 0.8 {
                (0, (ctx as f64 * uniform(rng, 0.4, 0.9)) as u64)
            } else {
                (0, 0)
            };
            let input = (ctx - read - write).max(1);
            Tok {
                input,
                output,
                read,
                write,
                reasoning: 0,
            }
        }
        Family::OpenAi => {
            let prompt = (lognormal(rng, spec.prompt_median, 1.0) as u64).clamp(20, 200_000);
            let read = if prompt >= 1_024 && rng.random_bool(0.55) {
                (prompt as f64 * uniform(rng, 0.3, 0.95)) as u64 / 128 * 128
            } else {
                0
            };
            let reasoning = if spec.reasoning {
                (output as f64 * uniform(rng, 0.2, 0.85)) as u64
            } else {
                0
            };
            Tok {
                input: prompt,
                output,
                read,
                write: 0,
                reasoning,
            }
        }
        Family::Google => {
            let prompt = (lognormal(rng, spec.prompt_median, 1.0) as u64).clamp(20, 1_000_000);
            let read = if rng.random_bool(0.3) {
                (prompt as f64 * uniform(rng, 0.2, 0.8)) as u64
            } else {
                0
            };
            let reasoning = if spec.reasoning {
                (lognormal(rng, spec.out_median * 1.2, 0.9) as u64).clamp(1, 32_000)
            } else {
                0
            };
            Tok {
                input: prompt,
                output,
                read,
                write: 0,
                reasoning,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Resource samples: every 5 minutes, CSV / JSONL / Telegraf influx

struct Iface {
    name: &'static str,
    rx: u64,
    tx: u64,
    prx: u64,
    ptx: u64,
}

struct Resources<'a> {
    ctx: &'a Ctx,
    vm: &'a VmBase,
    plan: &'a Plan,
    rng: SmallRng,
    tz: TzOff,
    buf: String,
    line: String,
    cores: u32,
    mem_total: u64,
    disk_total: u64,
    disk_used_gb: f64,
    mem_pct: f64,
    base_cpu: f64,
    ifaces: Vec<Iface>,
    quirk: usize,
}

impl<'a> Resources<'a> {
    fn new(ctx: &'a Ctx, idx: usize, vm: &'a VmBase, plan: &'a Plan) -> Resources<'a> {
        let mut rng = ctx.rng(idx, 2);
        let cores = [2, 4][rng.random_range(0..2)];
        let mem_gib = [4u64, 8, 16][rng.random_range(0..3)];
        let disk_gb = [40u64, 80, 160][rng.random_range(0..3)];
        let mut ifaces = vec![Iface {
            name: "eth0",
            rx: 0,
            tx: 0,
            prx: 0,
            ptx: 0,
        }];
        if rng.random_bool(0.5) {
            ifaces.push(Iface {
                name: "docker0",
                rx: 0,
                tx: 0,
                prx: 0,
                ptx: 0,
            });
        }
        for i in &mut ifaces {
            i.rx = rng.random_range(1_000_000..5_000_000_000);
            i.tx = rng.random_range(1_000_000..2_000_000_000);
            i.prx = i.rx / 900;
            i.ptx = i.tx / 700;
        }
        Resources {
            ctx,
            vm,
            plan,
            tz: TzOff::new(vm.tz),
            buf: String::with_capacity(2_048),
            line: String::with_capacity(512),
            cores,
            mem_total: mem_gib << 30,
            disk_total: disk_gb * 1_000_000_000,
            disk_used_gb: disk_gb as f64 * uniform(&mut rng, 0.2, 0.5),
            mem_pct: uniform(&mut rng, 25.0, 55.0),
            base_cpu: uniform(&mut rng, 8.0, 35.0),
            ifaces,
            quirk: 0,
            rng,
        }
    }

    fn run(
        mut self,
        streams: &mut [(ResFmt, Stream)],
        tally: &mut Tally,
    ) -> Result<(), SampleError> {
        // Counter reset (reboot) half-way through each Telegraf range, when not clean.
        let resets: Vec<i64> = self
            .plan
            .res
            .iter()
            .filter(|(f, a, b)| *f == ResFmt::Influx && a < b && !self.ctx.clean)
            .map(|(_, a, b)| a + (b - a) / 2 / SAMPLE_SECS * SAMPLE_SECS)
            .collect();
        if streams.is_empty() {
            return Ok(());
        }
        let mut t = self.ctx.start;
        let mut si = 0;
        while t < self.vm.end {
            while si + 1 < streams.len() && t >= streams[si].1.segs.last().map_or(i64::MIN, |s| s.1)
            {
                si += 1;
            }
            let (fmt, stream) = &mut streams[si];
            stream.at(t, tally)?;
            self.step(t, resets.contains(&t));
            match fmt {
                ResFmt::Csv | ResFmt::Jsonl => self.simple(stream, t, *fmt == ResFmt::Csv)?,
                ResFmt::Influx => self.influx(stream, t)?,
            }
            t += SAMPLE_SECS;
        }
        for (_, s) in streams.iter_mut() {
            s.finish(tally, None)?;
        }
        Ok(())
    }

    fn local_hour(&mut self, t: i64) -> usize {
        civil(t + i64::from(self.tz.at(t))).h as usize
    }

    fn step(&mut self, t: i64, reset: bool) {
        let z: f64 = self.rng.sample(StandardNormal);
        self.mem_pct = (self.mem_pct + 0.6 * z + (40.0 - self.mem_pct) * 0.01).clamp(12.0, 92.0);
        self.disk_used_gb += uniform(&mut self.rng, 0.0, 0.004);
        if self.local_hour(t) == 3 && t % 3_600 == 0 {
            self.disk_used_gb = (self.disk_used_gb - uniform(&mut self.rng, 0.3, 1.5)).max(5.0);
        }
        if reset {
            for i in &mut self.ifaces {
                i.rx = self.rng.random_range(10_000..900_000);
                i.tx = self.rng.random_range(10_000..500_000);
                i.prx = i.rx / 900;
                i.ptx = i.tx / 700;
            }
        }
    }

    fn cpu(&mut self, t: i64) -> f64 {
        let h = self.local_hour(t);
        let z: f64 = self.rng.sample(StandardNormal);
        (self.base_cpu * (0.3 + 0.7 * DIURNAL[h] / 1.4) * (1.0 + 0.35 * z)).clamp(0.5, 99.0)
    }

    fn net_mb(&mut self, t: i64) -> (f64, f64) {
        let h = self.local_hour(t);
        let d = 0.3 + DIURNAL[h];
        (
            lognormal(&mut self.rng, 2.0 * d, 0.8),
            lognormal(&mut self.rng, 0.8 * d, 0.8),
        )
    }

    /// CSV or JSONL sample: `timestamp,cpu_percent,memory_percent,disk_gb,network_in_mb,network_out_mb`.
    fn simple(&mut self, s: &mut Stream, t: i64, csv: bool) -> Result<(), SampleError> {
        let cpu = self.cpu(t);
        let (rx, tx) = self.net_mb(t);
        let off = self.plan.local_offsets.then(|| self.tz.at(t));
        let corrupt = s.corrupt(&mut self.rng);
        let q = if corrupt {
            self.quirk += 1;
            self.quirk % 2
        } else {
            usize::MAX
        };
        let b = &mut self.buf;
        b.clear();
        if csv {
            w_rfc3339(b, t, 0, Frac::None, off);
            if q == 0 {
                b.push_str(",n/a");
            } else {
                let _ = write!(b, ",{cpu:.2}");
            }
            let _ = write!(b, ",{:.2},{:.2},{rx:.3}", self.mem_pct, self.disk_used_gb);
            if q != 1 {
                let _ = write!(b, ",{tx:.3}");
            }
        } else {
            b.push_str("{\"timestamp\":\"");
            w_rfc3339(b, t, 0, Frac::None, off);
            if q == 0 {
                b.push_str("\",\"cpu_percent\":\"n/a\"");
            } else {
                let _ = write!(b, "\",\"cpu_percent\":{cpu:.2}");
            }
            let _ = write!(
                b,
                ",\"memory_percent\":{:.2},\"disk_gb\":{:.2},\"network_in_mb\":{rx:.3},\"network_out_mb\":{tx:.3}}}",
                self.mem_pct, self.disk_used_gb
            );
            if q == 1 {
                let cut = self.rng.random_range(b.len() / 3..b.len() - 1);
                b.truncate(cut);
            }
        }
        s.emit(
            &self.buf,
            if corrupt { Bucket::Reject } else { Bucket::Row },
        )
    }

    /// One Telegraf interval: cpu-total, per-core cpu (skipped), disk, mem, net per
    /// interface, system (skipped). A broken line replaces the cpu-total or mem row.
    fn influx(&mut self, s: &mut Stream, t: i64) -> Result<(), SampleError> {
        let ns = t * 1_000_000_000;
        let cpu = self.cpu(t);
        let (rx_mb, tx_mb) = self.net_mb(t);
        let broken = if s.corrupt(&mut self.rng) {
            self.quirk += 1;
            Some(self.quirk % 2)
        } else {
            None
        };
        let host = &self.vm.id;
        let line = &mut self.line;

        line.clear();
        let (iowait, system) = (cpu * 0.04, cpu * 0.26);
        let _ = write!(
            line,
            "cpu,cpu=cpu-total,host={host} usage_active={cpu:.2},usage_idle={:.2},usage_iowait={iowait:.2},\
             usage_system={system:.2},usage_user={:.2} {ns}",
            100.0 - cpu,
            cpu - iowait - system,
        );
        emit_influx(&mut self.rng, s, line, broken == Some(0))?;
        for core in 0..self.cores {
            let c = (cpu * uniform(&mut self.rng, 0.6, 1.4)).min(100.0);
            line.clear();
            let _ = write!(
                line,
                "cpu,cpu=cpu{core},host={host} usage_active={c:.2},usage_idle={:.2},usage_iowait={:.2},\
                 usage_system={:.2},usage_user={:.2} {ns}",
                100.0 - c,
                c * 0.04,
                c * 0.26,
                c * 0.70,
            );
            s.emit(line, Bucket::Skipped)?;
        }
        let used = (self.disk_used_gb * 1e9) as u64;
        line.clear();
        let _ = write!(
            line,
            "disk,device=sda1,fstype=ext4,host={host},mode=rw,path=/ free={}i,total={}i,used={used}i,\
             used_percent={:.4} {ns}",
            self.disk_total.saturating_sub(used),
            self.disk_total,
            used as f64 * 100.0 / self.disk_total as f64,
        );
        s.emit(line, Bucket::Row)?;
        let mem_used = (self.mem_total as f64 * self.mem_pct / 100.0) as u64;
        line.clear();
        let _ = write!(
            line,
            "mem,host={host} available={}i,available_percent={:.4},total={}i,used={mem_used}i,\
             used_percent={:.4} {ns}",
            self.mem_total - mem_used,
            100.0 - self.mem_pct,
            self.mem_total,
            self.mem_pct,
        );
        emit_influx(&mut self.rng, s, line, broken == Some(1))?;
        for (k, i) in self.ifaces.iter_mut().enumerate() {
            let share = if k == 0 { 1.0 } else { 0.15 };
            let (drx, dtx) = ((rx_mb * share * 1e6) as u64, (tx_mb * share * 1e6) as u64);
            i.rx += drx;
            i.tx += dtx;
            i.prx += drx / 900 + 1;
            i.ptx += dtx / 700 + 1;
            line.clear();
            let _ = write!(
                line,
                "net,host={host},interface={} bytes_recv={}i,bytes_sent={}i,err_in=0i,err_out=0i,\
                 packets_recv={}i,packets_sent={}i {ns}",
                i.name, i.rx, i.tx, i.prx, i.ptx
            );
            s.emit(line, Bucket::Row)?;
        }
        line.clear();
        let load = cpu / 100.0 * f64::from(self.cores);
        let _ = write!(
            line,
            "system,host={host} load1={load:.2},load15={:.2},load5={:.2},n_cpus={}i,n_users=1i {ns}",
            load * 0.8,
            load * 0.9,
            self.cores,
        );
        s.emit(line, Bucket::Skipped)
    }
}

/// Emits a used Telegraf line, or (when `broken`) the line cut right after one of its
/// field `=` signs so that it no longer parses.
fn emit_influx(
    rng: &mut SmallRng,
    s: &mut Stream,
    line: &mut String,
    broken: bool,
) -> Result<(), SampleError> {
    if !broken {
        return s.emit(line, Bucket::Row);
    }
    let fields_at = line.find(' ').expect("influx line has a field set");
    let eqs: Vec<usize> = line[fields_at..]
        .match_indices('=')
        .map(|(i, _)| fields_at + i)
        .collect();
    let cut = eqs[rng.random_range(0..eqs.len())] + 1;
    line.truncate(cut);
    s.emit(line, Bucket::Reject)
}

// ---------------------------------------------------------------------------------------
// Command logs

const COMMANDS: [&str; 14] = [
    "git pull --rebase",
    "docker compose up -d",
    "docker ps --format '{{.Names}}'",
    "tail -n 200 /var/log/cliproxy/main.log",
    "systemctl status cliproxyapi",
    "df -h",
    "htop",
    "npm run build",
    "cargo build --release",
    "python3 manage.py migrate",
    "kubectl get pods -n prod",
    "ls -la ~/.cli-proxy-api",
    "vim config.yaml",
    "grep -c \"status\\\":429\" usage.jsonl",
];
const PATTERNS: [(&str, &str); 4] = [
    ("git-sync", "git fetch --all && git rebase origin/main"),
    ("deploy-release", "./scripts/deploy.sh --env prod"),
    ("db-backup", "pg_dump -Fc app > /backups/app.dump"),
    (
        "log-check",
        "journalctl -u cliproxyapi --since \"1 hour ago\"",
    ),
];
const OPERATIONS: [&str; 4] = [
    "systemctl restart cliproxyapi",
    "apt-get upgrade -y",
    "certbot renew",
    "reboot",
];
const UNIX_USERS: [&str; 4] = ["ubuntu", "deploy", "root", "ci"];

struct Commands<'a> {
    ctx: &'a Ctx,
    vm: &'a VmBase,
    rng: SmallRng,
    tz: TzOff,
    local_offsets: bool,
    buf: String,
    cmd: String,
    times: Vec<i64>,
    quirk: usize,
}

impl<'a> Commands<'a> {
    fn new(ctx: &'a Ctx, idx: usize, vm: &'a VmBase) -> Commands<'a> {
        Commands {
            ctx,
            vm,
            rng: ctx.rng(idx, 3),
            tz: TzOff::new(vm.tz),
            local_offsets: !ctx.clean && vm.tz != Tz::UTC,
            buf: String::with_capacity(512),
            cmd: String::with_capacity(256),
            times: Vec::new(),
            quirk: 0,
        }
    }

    fn run(mut self, s: &mut Stream, tally: &mut Tally) -> Result<(), SampleError> {
        let per_day = if self.ctx.events_per_day == 0 {
            0
        } else {
            (self.ctx.events_per_day + 5) / 10
        };
        for day in 0..i64::from(self.ctx.days) {
            let day_start = self.ctx.start + day * DAY;
            self.times.clear();
            // Working hours, local time (offset of the day's start).
            let off = i64::from(self.tz.at(day_start));
            for _ in 0..per_day {
                let local = self.rng.random_range(7 * 3_600..23 * 3_600);
                self.times.push(day_start + local - off);
            }
            self.times.sort_unstable();
            for i in 0..self.times.len() {
                let t = self.times[i];
                if t < self.ctx.start || t >= self.vm.end {
                    continue;
                }
                s.at(t, tally)?;
                self.record(s, t)?;
            }
        }
        s.finish(tally, None)
    }

    fn record(&mut self, s: &mut Stream, t: i64) -> Result<(), SampleError> {
        let rng = &mut self.rng;
        let r: f64 = rng.random();
        self.cmd.clear();
        let (kind, pattern) = if r < 0.06 {
            match rng.random_range(0..4) {
                0 => {
                    self.cmd.push_str("export OPENAI_API_KEY=sk-proj-");
                    push_random(&mut self.cmd, rng, ALNUM, 40);
                }
                1 => self
                    .cmd
                    .push_str("mysql -h db.internal -u app --password hunter2 billing"),
                2 => {
                    self.cmd.push_str("curl -H \"Authorization: Bearer ");
                    push_random(&mut self.cmd, rng, ALNUM, 32);
                    self.cmd.push_str("\" https://api.anthropic.com/v1/models");
                }
                _ => {
                    self.cmd.push_str("export ANTHROPIC_API_KEY=sk-ant-api03-");
                    push_random(&mut self.cmd, rng, ALNUM, 48);
                }
            }
            ("command", None)
        } else if r < 0.75 {
            self.cmd
                .push_str(COMMANDS[rng.random_range(0..COMMANDS.len())]);
            ("command", None)
        } else if r < 0.9 {
            let (name, cmd) = PATTERNS[rng.random_range(0..PATTERNS.len())];
            self.cmd.push_str(cmd);
            ("pattern", Some(name))
        } else {
            self.cmd
                .push_str(OPERATIONS[rng.random_range(0..OPERATIONS.len())]);
            ("operation", None)
        };
        let user = UNIX_USERS[rng.random_range(0..UNIX_USERS.len())];
        let duration = lognormal(rng, 2.0, 1.5).min(3_600.0);
        let exit_code = if rng.random_bool(0.9) {
            0
        } else {
            [1, 2, 127, 130][rng.random_range(0..4)]
        };
        let corrupt = s.corrupt(rng);
        let quirk = if corrupt {
            self.quirk += 1;
            self.quirk % 3
        } else {
            usize::MAX
        };
        let off = self.local_offsets.then(|| self.tz.at(t));
        let b = &mut self.buf;
        b.clear();
        b.push('{');
        if quirk != 1 {
            b.push_str("\"timestamp\":\"");
            w_rfc3339(b, t, 0, Frac::None, off);
            b.push_str("\",");
        }
        let kind = if quirk == 0 { "login" } else { kind };
        let _ = write!(
            b,
            "\"user\":\"{user}\",\"activity_type\":\"{kind}\",\"command\":\""
        );
        push_json_escaped(b, &self.cmd);
        b.push_str("\",\"pattern_name\":");
        match pattern {
            Some(p) => {
                let _ = write!(b, "\"{p}\"");
            }
            None => b.push_str("null"),
        }
        let _ = write!(
            b,
            ",\"duration_seconds\":{duration:.2},\"exit_code\":{exit_code}}}"
        );
        if quirk == 2 {
            let cut = self.rng.random_range(b.len() / 3..b.len() - 1);
            b.truncate(cut);
        }
        s.emit(
            &self.buf,
            if corrupt { Bucket::Reject } else { Bucket::Row },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Read;

    fn opts(out: &Path, clean: bool) -> SampleOptions {
        SampleOptions {
            out: out.to_path_buf(),
            customers: 3,
            days: 9,
            events_per_day: 60,
            seed: 7,
            clean,
            start: NaiveDate::from_ymd_opt(2026, 10, 20).expect("valid date"),
            usage_format: Default::default(),
        }
    }

    /// Every file under `root`, sorted, with its decompressed content.
    fn read_tree(root: &Path) -> Vec<(PathBuf, Vec<u8>, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in fs::read_dir(dir).expect("read dir") {
                let p = e.expect("dir entry").path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut paths = Vec::new();
        walk(root, &mut paths);
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                let raw = fs::read(&p).expect("read file");
                let text = if p.extension().is_some_and(|e| e == "gz") {
                    let mut v = Vec::new();
                    flate2::read::MultiGzDecoder::new(&raw[..])
                        .read_to_end(&mut v)
                        .expect("gunzip");
                    v
                } else {
                    raw.clone()
                };
                (
                    p.strip_prefix(root).expect("under root").to_path_buf(),
                    raw,
                    text,
                )
            })
            .collect()
    }

    fn sum(totals: &SampleTotals) -> Expected {
        let mut e = Expected::default();
        for t in totals.tables.values() {
            e.rows += t.rows;
            e.duplicates += t.duplicates;
            e.rejects += t.rejects;
            e.skipped += t.skipped;
        }
        e
    }

    #[test]
    fn same_seed_gives_identical_tree() {
        let (a, b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let ta = generate(&opts(a.path(), false)).expect("generate a");
        let tb = generate(&opts(b.path(), false)).expect("generate b");
        assert_eq!(ta, tb);
        let (fa, fb) = (read_tree(a.path()), read_tree(b.path()));
        assert_eq!(fa.len(), fb.len());
        for ((pa, ra, _), (pb, rb, _)) in fa.iter().zip(&fb) {
            assert_eq!(pa, pb);
            assert!(ra == rb, "{} differs", pa.display());
        }
        let c = tempfile::tempdir().expect("tempdir");
        let tc = generate(&SampleOptions {
            seed: 8,
            ..opts(c.path(), false)
        })
        .expect("generate c");
        assert_ne!(ta, tc, "another seed gives another tree");
    }

    #[test]
    fn clean_tree_has_no_rejects_duplicates_or_gz() {
        let dir = tempfile::tempdir().expect("tempdir");
        let totals = generate(&opts(dir.path(), true)).expect("generate");
        for (name, e) in &totals.tables {
            assert_eq!((e.rejects, e.duplicates), (0, 0), "{name}");
            assert!(e.rows > 0, "{name} has rows");
        }
        assert!(
            totals.tables["resource_usage"].skipped > 0,
            "csv headers and per-core rows"
        );
        assert!(
            totals.tables["api_requests"].skipped > 0,
            "main-log banner lines"
        );
        let tree = read_tree(dir.path());
        assert!(
            tree.iter()
                .all(|(p, _, _)| p.extension().is_none_or(|e| e != "gz"))
        );
        assert!(
            !tree
                .iter()
                .any(|(p, _, _)| p.components().any(|c| c.as_os_str() == "reshipped"))
        );

        // Usage records parse, carry unique 8-hex request ids per VM, keep cached <= prompt
        // for OpenAI and Google, and use Z timestamps.
        let mut ids: HashMap<(String, String), usize> = HashMap::new();
        for (path, _, text) in &tree {
            let vm = path
                .components()
                .next()
                .expect("component")
                .as_os_str()
                .to_string_lossy()
                .to_string();
            if !path.to_string_lossy().contains("cliproxy") {
                continue;
            }
            for line in std::str::from_utf8(text)
                .expect("utf8")
                .lines()
                .filter(|l| l.starts_with('{'))
            {
                let v: serde_json::Value = serde_json::from_str(line).expect("clean json parses");
                assert!(
                    v["timestamp"].as_str().expect("timestamp").ends_with('Z'),
                    "{line}"
                );
                let provider = v["provider"].as_str().unwrap_or("");
                let (input, cached) = match v.get("tokens") {
                    Some(t) => (
                        t["input_tokens"].as_u64().expect("u64"),
                        t["cached_tokens"].as_u64().expect("u64"),
                    ),
                    None => (
                        v["input_tokens"].as_u64().expect("u64"),
                        v.get("cache_read_tokens")
                            .and_then(|c| c.as_u64())
                            .unwrap_or(0),
                    ),
                };
                let path_field = v
                    .get("path")
                    .or(v.get("endpoint"))
                    .and_then(|p| p.as_str())
                    .unwrap_or("");
                if provider != "claude" && provider != "anthropic" && path_field != "/v1/messages" {
                    assert!(cached <= input, "{line}");
                }
                if let Some(rid) = v.get("request_id").and_then(|r| r.as_str()) {
                    assert!(
                        rid.len() == 8
                            && rid
                                .bytes()
                                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                    );
                    *ids.entry((vm.clone(), rid.to_string())).or_default() += 1;
                }
            }
        }
        assert!(!ids.is_empty());
        assert!(ids.values().all(|&n| n == 1), "request ids repeat");
    }

    #[test]
    fn totals_match_the_files_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let totals = generate(&opts(dir.path(), false)).expect("generate");
        let tree = read_tree(dir.path());
        assert_eq!(totals.files, tree.len() as u64);
        assert_eq!(
            totals.bytes,
            tree.iter().map(|(_, raw, _)| raw.len() as u64).sum::<u64>()
        );
        let newlines = |t: &[u8]| t.iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(
            totals.lines,
            tree.iter().map(|(_, _, t)| newlines(t)).sum::<u64>()
        );

        // Every line of a VM file (plus unterminated last lines) is in exactly one bucket.
        let vm_files: Vec<_> = tree
            .iter()
            .filter(|(p, _, _)| p.components().count() > 1)
            .collect();
        let unterminated = vm_files
            .iter()
            .filter(|(_, _, t)| t.last().is_some_and(|&b| b != b'\n'))
            .count() as u64;
        assert!(unterminated > 0, "not clean writes cut-off live files");
        let all = sum(&totals);
        assert_eq!(
            all.rows + all.duplicates + all.rejects + all.skipped,
            vm_files.iter().map(|(_, _, t)| newlines(t)).sum::<u64>() + unterminated
        );
        for (name, e) in &totals.tables {
            assert!(
                e.rows > 0 && e.duplicates > 0 && e.rejects > 0,
                "{name}: {e:?}"
            );
        }
        assert!(
            tree.iter()
                .any(|(p, _, _)| p.extension().is_some_and(|e| e == "gz"))
        );

        // Duplicates are exactly the lines that also occur in another file of the same VM
        // (CSV headers aside).
        let mut files_per_line: HashMap<(String, &[u8]), BTreeSet<&Path>> = HashMap::new();
        for (path, _, text) in &vm_files {
            let vm = path
                .components()
                .next()
                .expect("component")
                .as_os_str()
                .to_string_lossy()
                .to_string();
            for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.starts_with(b"timestamp,cpu_percent") {
                    continue;
                }
                files_per_line
                    .entry((vm.clone(), line))
                    .or_default()
                    .insert(path.as_path());
            }
        }
        let copies: u64 = files_per_line.values().map(|f| f.len() as u64 - 1).sum();
        assert_eq!(copies, all.duplicates);
    }

    #[test]
    fn refuses_a_non_empty_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("x"), "x").expect("write");
        assert!(matches!(
            generate(&opts(dir.path(), false)),
            Err(SampleError::NotEmpty { .. })
        ));
    }

    #[test]
    fn formats_time_like_the_sources() {
        let secs = 1_791_284_864; // 2026-10-06T11:07:44Z
        let mut b = String::new();
        w_rfc3339(&mut b, secs, 120_500_000, Frac::Nanos, Some(7_200));
        assert_eq!(b, "2026-10-06T13:07:44.1205+02:00");
        b.clear();
        w_clf_ts(&mut b, secs, -14_400, false);
        assert_eq!(b, "06/Oct/2026:07:07:44 -0400");
        b.clear();
        for ms in [0, 7, 999, 1_000, 23_559, 2_500, 61_234, 3_725_000] {
            w_go_duration(&mut b, ms);
            b.push(' ');
        }
        assert_eq!(b, "0s 7ms 999ms 1s 23.559s 2.5s 1m1s 1h2m5s ");
    }
}
