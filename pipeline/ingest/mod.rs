//! The ingest stage: raw input tree -> date-partitioned Parquet lake.
//!
//! Files are read in a stable order as blocks of whole lines; a window of
//! blocks is parsed in parallel (rayon), then finalized in file order (event
//! id occurrence numbers, network counter deltas, reject partitions) and
//! handed to a single writer thread ([`sink`]) that drops duplicates and
//! writes Parquet. Memory is bounded by the window and the writer's buffer
//! budget, not by the input size.

pub mod dedup;
pub mod parse;
pub mod report;
pub mod sink;
pub mod source;

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};

use chrono::NaiveDate;
use rayon::prelude::*;

use crate::ingest::parse::resources::CsvColumns;
use crate::ingest::parse::{
    FileCtx, IdKind, NetCounter, Parsed, Reject, RejectReason, SkipReason, SourceKind, parse_line,
    parse_text,
};
use crate::ingest::source::{Block, BlockReader, InputFile, InputRoot, Tail};
use crate::lake::Lake;
use crate::lake::tables::{
    ActivityCols, ApiRequestCols, ApiUsageCols, Id, RejectCols, RejectRow, ResourceCols, Str,
    Table, TableCols, TableRow,
};
use crate::model::ctx::Ctx;
use crate::model::error::{Error, Result};
use crate::model::ids::{self, EventId, IdHasher};
use crate::model::redact::redact_and_cut;
use crate::model::registry::Registry;
use crate::model::shard::Shard;
use crate::model::time::Ts;
use report::{Counts, FileReport, IngestReport};
use sink::{Part, Rows, Sink};

/// Raw lines kept in the rejects table are cut to this many bytes.
pub const REJECT_RAW_MAX: usize = 4096;

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub input: PathBuf,
    pub lake: PathBuf,
    /// First UTC date to ingest (inclusive).
    pub since: Option<NaiveDate>,
    /// Last UTC date to ingest (inclusive).
    pub until: Option<NaiveDate>,
    /// Replace the `since..=until` partitions instead of merging into them.
    pub rebuild: bool,
    /// Rejects over lines read above which the run needs attention.
    pub max_reject_rate: f64,
    /// The part of the input this process ingests ([`Shard::ALL`]: all).
    pub shard: Shard,
}

#[derive(Debug, Clone, Copy)]
struct DateRange {
    since: Option<NaiveDate>,
    until: Option<NaiveDate>,
}

impl DateRange {
    fn contains(&self, ts: Ts) -> bool {
        let d = ts.date();
        self.since.is_none_or(|s| d >= s) && self.until.is_none_or(|u| d <= u)
    }
}

/// Runs the stage. Per-line and per-file problems are in the report; an
/// `Err` means nothing was committed.
pub fn run(ctx: &Ctx, opts: &IngestOptions) -> Result<IngestReport> {
    let root = check_options(opts)?;
    // Each shard is a run of its own: its files, commit and report.
    let ctx = &shard_ctx(ctx, opts.shard);
    let lake = Lake::open_shared(&opts.lake, &ctx.run_id, opts.shard)?;
    ingest_from(ctx, &lake, opts, &root)
}

/// The context of shard `shard`'s run: the run id ends in `-s<I>of<N>`,
/// so the shards of one split started in the same second (or under one
/// pinned clock) never share a file name or a report.
fn shard_ctx(ctx: &Ctx, shard: Shard) -> Ctx {
    if shard.is_all() {
        ctx.clone()
    } else {
        ctx.stage(&format!("s{}of{}", shard.index, shard.count))
    }
}

/// Checks the options and opens the input (a folder that must exist, or a
/// store URL).
fn check_options(opts: &IngestOptions) -> Result<InputRoot> {
    let root = InputRoot::open(&opts.input)?;
    if let (Some(s), Some(u)) = (opts.since, opts.until)
        && s > u
    {
        return Err(Error::Usage(format!("--since {s} is after --until {u}")));
    }
    if opts.rebuild && !opts.shard.is_all() {
        return Err(Error::Usage(format!(
            "--rebuild replaces whole dates for every VM: it cannot run as shard {} (run it once, without --shard)",
            opts.shard
        )));
    }
    if opts.rebuild && (opts.since.is_none() || opts.until.is_none()) {
        return Err(Error::Usage(
            "--rebuild replaces whole dates: give both --since and --until".into(),
        ));
    }
    if !(0.0..=1.0).contains(&opts.max_reject_rate) {
        return Err(Error::Usage(format!(
            "--max-reject-rate {} is not between 0 and 1",
            opts.max_reject_rate
        )));
    }
    Ok(root)
}

/// [`run`] on a lake the caller holds (a job that runs several stages under
/// one lock).
pub fn run_on(ctx: &Ctx, lake: &Lake, opts: &IngestOptions) -> Result<IngestReport> {
    let root = check_options(opts)?;
    ingest_from(ctx, lake, opts, &root)
}

fn ingest_from(
    ctx: &Ctx,
    lake: &Lake,
    opts: &IngestOptions,
    root: &InputRoot,
) -> Result<IngestReport> {
    let started_at = ctx.clock.now();
    // The listing first: a remote input that cannot be listed says so
    // before its customers.csv is looked for.
    let mut discovery = root.discover()?;
    discovery.files.retain(|f| opts.shard.owns_vm(&f.vm_id));
    discovery.ignored.retain(|i| opts.shard.owns_path(&i.path));
    let registry = Arc::new(root.registry()?);
    let range = DateRange {
        since: opts.since,
        until: opts.until,
    };
    let rebuild = if opts.rebuild {
        opts.since.zip(opts.until)
    } else {
        None
    };

    let mut ctxs: Vec<FileCtx> = discovery
        .files
        .iter()
        .map(|f| file_ctx(f, &registry))
        .collect();
    let mut files: Vec<FileReport> = discovery
        .files
        .iter()
        .map(|f| FileReport {
            path: f.rel.clone(),
            ..Default::default()
        })
        .collect();

    let vm_of_file: Vec<Str> = ctxs.iter().map(|c| c.vm_id.clone()).collect();
    let attributed: Vec<bool> = ctxs.iter().map(|c| c.customer_id.is_some()).collect();
    // Per file: lines dated before this belong to an erased customer.
    let erasures = crate::lake::erase::Erasures::load(lake)?;
    let erased: Vec<Option<Ts>> = ctxs
        .iter()
        .map(|c| erasures.cutoff(c.customer_id.as_deref(), &c.vm_id))
        .collect();
    let (tx, rx) = sync_channel::<Rows>(4);
    let stored = std::thread::scope(|scope| {
        let sink = scope.spawn(|| {
            std::thread::scope(|encoders| {
                let mut sink = Sink::new(
                    encoders,
                    lake,
                    &ctx.run_id,
                    rebuild,
                    &vm_of_file,
                    &attributed,
                );
                for rows in rx {
                    sink.push(rows)?;
                }
                sink.finish(&ctx.run_id)
            })
        });
        ctx.progress
            .start("ingest: files", discovery.files.len() as u64);
        produce(
            root,
            &discovery.files,
            &mut ctxs,
            &mut files,
            range,
            &erased,
            tx,
            &*ctx.progress,
        );
        ctx.progress.finish();
        sink.join().expect("the writer thread does not panic")
    });
    let sink::Stored {
        counts: store_counts,
        unattributed,
        partitions,
    } = stored?;

    for ((file, table), (rows, dups)) in store_counts {
        if table == Table::Rejects {
            // Rejects are already counted, by the table they were meant for.
            continue;
        }
        let c = files[file].tables.entry(table).or_default();
        c.rows += rows;
        c.duplicates += dups;
    }
    let mut tables: BTreeMap<Table, Counts> = Table::EVENTS
        .iter()
        .map(|t| (*t, Counts::default()))
        .collect();
    let mut totals = Counts::default();
    let mut attention = Vec::new();
    for f in &mut files {
        let mut c = Counts::default();
        for (table, tc) in &f.tables {
            c.add(tc);
            tables.entry(*table).or_default().add(tc);
        }
        f.counts = c;
        totals.add(&c);
        if c.total() != f.lines_read {
            attention.push(format!(
                "BUG: {}: {} lines read but {} accounted for; please report this run",
                f.path,
                f.lines_read,
                c.total()
            ));
        }
    }
    let lines_read = files.iter().map(|f| f.lines_read).sum();
    let mut rejected_reasons: BTreeMap<RejectReason, u64> = BTreeMap::new();
    for (reason, n) in files.iter().flat_map(|f| &f.rejected_reasons) {
        *rejected_reasons.entry(*reason).or_default() += n;
    }
    let unreadable_files: Vec<String> = files
        .iter()
        .filter(|f| f.error.is_some())
        .map(|f| f.path.clone())
        .collect();
    if !unreadable_files.is_empty() {
        let why: Vec<String> = files
            .iter()
            .filter_map(|f| Some(format!("{} ({})", f.path, f.error.as_ref()?)))
            .collect();
        attention.push(format!(
            "{} file(s) could not be read to the end: {}",
            unreadable_files.len(),
            why.join(", ")
        ));
    }
    for ignored in discovery.ignored.iter().filter(|i| i.attention) {
        attention.push(format!("{} ignored: {}", ignored.path, ignored.reason));
    }
    let mut notices = Vec::new();
    let erased_lines: u64 = files
        .iter()
        .filter_map(|f| f.skipped_reasons.get(crate::lake::erase::ERASED_REASON))
        .sum();
    if erased_lines > 0 {
        notices.push(format!(
            "{erased_lines} lines of erased customers skipped (`{}`, see <lake>/{})",
            crate::lake::erase::ERASED_REASON,
            crate::lake::erase::RECORDS_DIR
        ));
    }
    if !unattributed.is_empty() {
        let vms: Vec<&str> = unattributed.keys().map(String::as_str).collect();
        notices.push(format!(
            "events from VMs no customer lists, stored with a null customer (billing reports them): {}",
            vms.join(", ")
        ));
    }
    let mut report = IngestReport {
        job: "ingest",
        run_id: ctx.run_id.clone(),
        started_at: started_at.to_rfc3339(),
        finished_at: String::new(),
        input: opts.input.display().to_string(),
        lake: opts.lake.display().to_string(),
        since: opts.since.map(|d| d.to_string()),
        until: opts.until.map(|d| d.to_string()),
        rebuild: opts.rebuild,
        max_reject_rate: opts.max_reject_rate,
        shard: (!opts.shard.is_all()).then(|| opts.shard.to_string()),
        lines_read,
        totals,
        tables,
        rejected_reasons,
        files,
        unreadable_files,
        ignored_paths: discovery.ignored,
        unattributed_vms: unattributed,
        partitions,
        attention,
        notices,
    };
    if report.reject_rate() > opts.max_reject_rate {
        report.attention.push(format!(
            "reject rate {:.3}% is above --max-reject-rate {:.3}%: see the rejects table",
            report.reject_rate() * 100.0,
            opts.max_reject_rate * 100.0
        ));
    }
    // The registry that attributed these events: billing's default.
    let text = root.read("customers.csv")?.ok_or_else(|| Error::Read {
        path: root.location("customers.csv"),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or object"),
    })?;
    // Shard 0 keeps it (the shards of a split read the same input): two
    // processes never write it at once.
    if opts.shard.owns_path("customers.csv") {
        let contracts = root.read("contracts.toml")?;
        lake.save_registry(&text, contracts.as_deref())?;
    }
    report.finished_at = ctx.clock.now().to_rfc3339();
    let json = serde_json::to_string_pretty(&report).expect("the report serializes");
    lake.write_report(&ctx.run_id, &json)?;
    Ok(report)
}

fn file_ctx(f: &InputFile, registry: &Arc<Registry>) -> FileCtx {
    let customer = registry.customer_of_vm(&f.vm_id);
    FileCtx {
        rel: f.rel.as_str().into(),
        vm_id: f.vm_id.as_str().into(),
        customer_id: customer.map(|c| c.customer_id.clone()),
        tz: customer.map_or(chrono_tz::Tz::UTC, |c| c.timezone),
        kind: f.kind,
        registry: registry.clone(),
        csv_columns: None,
        feeds: source::feeds(f.kind, &f.rel),
    }
}

/// What the reader thread hands the parsers, in file order.
enum Input {
    Block(Block),
    /// A file read to its end, or to a read error.
    End {
        file: usize,
        lines_read: u64,
        error: Option<String>,
    },
    /// A file that could not be opened.
    Unopened {
        file: usize,
        error: String,
    },
}

/// The reader thread: every file's blocks in order (gunzipped, lines
/// counted), while the parsers work on the blocks before them. Stops when
/// the receiver is gone.
fn read_files(root: &InputRoot, inputs: &[InputFile], tx: SyncSender<Input>) {
    for (idx, f) in inputs.iter().enumerate() {
        let mut reader = match BlockReader::open(idx, root, f) {
            Ok(r) => r,
            Err(e) => {
                let error = format!("cannot open: {e}");
                if tx.send(Input::Unopened { file: idx, error }).is_err() {
                    return;
                }
                continue;
            }
        };
        while let Some(block) = reader.next_block() {
            if tx.send(Input::Block(block)).is_err() {
                return;
            }
        }
        let end = Input::End {
            file: idx,
            lines_read: reader.lines_read,
            error: reader.error.take(),
        };
        if tx.send(end).is_err() {
            return;
        }
    }
}

/// Reads every file (on a reader thread), parses blocks in parallel and
/// sends finalized rows to the writer in file order.
#[allow(clippy::too_many_arguments)]
fn produce(
    root: &InputRoot,
    inputs: &[InputFile],
    ctxs: &mut [FileCtx],
    files: &mut [FileReport],
    range: DateRange,
    erased: &[Option<Ts>],
    tx: SyncSender<Rows>,
    progress: &dyn crate::model::ctx::Progress,
) {
    let window = rayon::current_num_threads().max(1) * 2;
    std::thread::scope(|scope| {
        let (input_tx, input) = sync_channel::<Input>(2);
        scope.spawn(move || read_files(root, inputs, input_tx));
        // Dropping `input` on return ends the reader thread.
        let mut states: HashMap<usize, FileState> = HashMap::new();
        let mut reading = true;
        while reading {
            let mut blocks: Vec<Block> = Vec::with_capacity(window);
            while blocks.len() < window {
                match input.recv() {
                    Ok(Input::Block(block)) => {
                        if block.first_line == 1 && ctxs[block.file].kind == SourceKind::Resources {
                            ctxs[block.file].csv_columns = csv_header(&block.data).map(Arc::new);
                        }
                        blocks.push(block);
                    }
                    Ok(Input::End {
                        file,
                        lines_read,
                        error,
                    }) => {
                        progress.advance(1);
                        files[file].lines_read = lines_read;
                        if let Some(e) = error {
                            files[file].error =
                                Some(format!("read error after line {lines_read}: {e}"));
                        }
                    }
                    Ok(Input::Unopened { file, error }) => {
                        progress.advance(1);
                        files[file].error = Some(error);
                    }
                    Err(_) => {
                        reading = false;
                        break;
                    }
                }
            }
            let Some(last_file) = blocks.last().map(|b| b.file) else {
                continue;
            };
            let ctxs_ref = &*ctxs;
            let outs: Vec<BlockOut> = blocks
                .par_iter()
                .map(|b| parse_block(&ctxs_ref[b.file], b, range))
                .collect();
            drop(blocks);
            for out in outs {
                let file = out.file;
                let state = states.entry(file).or_default();
                let rows = finalize(
                    state,
                    out,
                    &inputs[file],
                    &ctxs[file],
                    &mut files[file],
                    range,
                    erased[file],
                );
                if tx.send(rows).is_err() {
                    // The writer stopped: its error is reported by the caller.
                    return;
                }
            }
            // Blocks come in file order: files before the last one are done.
            states.retain(|f, _| *f >= last_file);
        }
    })
}

/// The first non-blank line of a resource file, if it is a CSV header.
fn csv_header(data: &[u8]) -> Option<CsvColumns> {
    let line = data
        .split(|b| *b == b'\n')
        .find(|l| l.iter().any(|b| !b.is_ascii_whitespace()))?;
    let text = std::str::from_utf8(line)
        .ok()?
        .trim_start_matches('\u{feff}')
        .trim_end_matches('\r');
    if text.trim_start().starts_with('{') || text.contains('=') {
        return None;
    }
    CsvColumns::from_header(text)
}

struct PendingReject {
    table: Table,
    reject: Reject,
    line: u64,
    id: EventId,
    raw: String,
    /// Time of the nearest dated line before it in this block.
    prev_ts: Option<Ts>,
    /// Time of the nearest dated line after it in this block.
    next_ts: Option<Ts>,
}

/// One block's parse: each table's rows as columns, in line order.
struct BlockOut {
    file: usize,
    usage: ApiUsageCols,
    /// Per usage row: whether its id is a content id (it gets an occurrence
    /// number when finalized).
    usage_content: Vec<bool>,
    requests: ApiRequestCols,
    requests_content: Vec<bool>,
    resources: ResourceCols,
    /// Resource rows with network counters (row, counters), in line order.
    counters: Vec<(usize, NetCounter)>,
    activity: ActivityCols,
    rejects: Vec<PendingReject>,
    skipped: BTreeMap<(Table, SkipReason), u64>,
    last_ts: Option<Ts>,
}

impl BlockOut {
    /// Room for a block of `rows` typical lines of the file's table (both
    /// API tables for a CLIProxy file that does not say which it feeds), so
    /// that columns are not moved as they fill.
    fn new(file: usize, ctx: &FileCtx, rows: usize) -> BlockOut {
        let of = |table: Table| {
            let kind = match table {
                Table::ApiUsage | Table::ApiRequests => SourceKind::Cliproxy,
                Table::ResourceUsage => SourceKind::Resources,
                Table::Activity | Table::Rejects => SourceKind::Commands,
            };
            let feeds = ctx.feeds.is_none_or(|t| t == table);
            if kind == ctx.kind && feeds { rows } else { 0 }
        };
        BlockOut {
            file,
            usage: ApiUsageCols::with_capacity(of(Table::ApiUsage)),
            usage_content: Vec::with_capacity(of(Table::ApiUsage)),
            requests: ApiRequestCols::with_capacity(of(Table::ApiRequests)),
            requests_content: Vec::with_capacity(of(Table::ApiRequests)),
            resources: ResourceCols::with_capacity(of(Table::ResourceUsage)),
            counters: Vec::new(),
            activity: ActivityCols::with_capacity(of(Table::Activity)),
            rejects: Vec::new(),
            skipped: BTreeMap::new(),
            last_ts: None,
        }
    }
}

fn parse_block(ctx: &FileCtx, block: &Block, range: DateRange) -> BlockOut {
    let data = &block.data;
    let mut out = BlockOut::new(block.file, ctx, data.len() / 192);
    let mut start = 0;
    let mut line_no = block.first_line;
    let mut waiting_for_ts: Vec<usize> = Vec::new();
    // One UTF-8 check for the block; only a block that fails it is checked
    // line by line.
    let text = std::str::from_utf8(data).ok();
    while start < data.len() {
        let (end, terminated) = match memchr::memchr(b'\n', &data[start..]) {
            Some(i) => (start + i, true),
            None => (data.len(), false),
        };
        let line = &data[start..end];
        let line_start = start;
        let this_line = line_no;
        start = end + 1;
        line_no += 1;
        let parsed = if !terminated && block.tail != Tail::EndOfFile {
            let reason = if block.tail == Tail::ReadError {
                SkipReason::CutOffByReadError
            } else {
                SkipReason::UnterminatedLastLine
            };
            Parsed::Skip(ctx.default_table(line), reason)
        } else if block.too_long.contains(&this_line) {
            Parsed::Reject(
                ctx.default_table(line),
                Reject::line(
                    RejectReason::LineTooLong,
                    format!("line longer than {} MiB", source::MAX_LINE >> 20),
                ),
            )
        } else {
            match text {
                // `start..end` ends at a newline: a char boundary.
                Some(text) => parse_text(ctx, &text[line_start..end]),
                None => parse_line(ctx, line),
            }
        };
        let ts = parsed.ts();
        if let Some(ts) = ts {
            for i in waiting_for_ts.drain(..) {
                out.rejects[i].next_ts = Some(ts);
            }
        }
        let prev_ts = out.last_ts;
        if ts.is_some() {
            out.last_ts = ts;
        }
        let parsed = match ts {
            Some(ts) if !range.contains(ts) => {
                Parsed::Skip(parsed.table(), SkipReason::OutsideRange)
            }
            _ => parsed,
        };
        match parsed {
            Parsed::Usage(mut r, k) => {
                r.source_line = this_line as i64;
                out.usage.push_ref(r);
                out.usage_content.push(k == IdKind::Content);
            }
            Parsed::Request(mut r, k) => {
                r.source_line = this_line as i64;
                out.requests.push_ref(r);
                out.requests_content.push(k == IdKind::Content);
            }
            Parsed::Resource(mut r, c) => {
                r.source_line = this_line as i64;
                if let Some(c) = c {
                    out.counters.push((out.resources.len(), c));
                }
                out.resources.push(r);
            }
            Parsed::Activity(mut r) => {
                r.source_line = this_line as i64;
                out.activity.push(r);
            }
            Parsed::Reject(table, reject) => {
                if reject.ts.is_none() && prev_ts.is_none() {
                    waiting_for_ts.push(out.rejects.len());
                }
                out.rejects.push(PendingReject {
                    table,
                    reject,
                    line: this_line,
                    id: ids::reject_id(&ctx.vm_id, &ctx.rel, this_line, line),
                    raw: redact_and_cut(line, REJECT_RAW_MAX),
                    prev_ts,
                    next_ts: None,
                });
            }
            Parsed::Skip(table, reason) => *out.skipped.entry((table, reason)).or_default() += 1,
        }
    }
    out
}

/// What finalizing needs to remember about a file between its blocks.
#[derive(Default)]
struct FileState {
    /// Content id folded to 64 bits (`ids::fold`) -> (identical lines so
    /// far, the file's latest second when the first of them came, counted
    /// from `origin_s`), for occurrence numbers: 16 bytes a line in the
    /// window. Two contents sharing a key within a window (odds about
    /// n^2 / 2^65 for n lines in it) only number each other's repeats: ids
    /// stay a function of the file's lines before them, so reruns and every
    /// chunking agree.
    occurrences: HashMap<u64, (u32, u32), BuildHasherDefault<IdHasher>>,
    /// The file's latest second so far, and its first line's second.
    max_s: i64,
    origin_s: Option<i64>,
    /// Lines numbered since the last pruning, and the map's size after it.
    inserts: usize,
    pruned_to: usize,
    /// Last cumulative counters per network interface.
    net: HashMap<Str, (Option<u64>, Option<u64>)>,
    last_ts: Option<Ts>,
}

/// Identical lines are counted as repeats of each other until the file's
/// latest second has moved more than this past the one when the first of
/// them came; then counting starts again (keeps the occurrence map to the
/// lines of one day on huge files).
const OCCURRENCE_WINDOW_S: i64 = 24 * 3600;

impl FileState {
    /// The id of the next line with content id `base`. It depends on the
    /// lines before it only, never on when the map was last pruned, so it is
    /// the same whatever the blocks and the pruning.
    fn occurrence_id(&mut self, base: EventId, ts: Ts) -> EventId {
        let second = ts.0.div_euclid(1_000_000);
        let origin = *self.origin_s.get_or_insert(second);
        self.max_s = self.max_s.max(second).max(origin);
        // Seconds since the file's first line: the latest second never
        // goes below it, so this is never negative.
        let now = u32::try_from(self.max_s - origin).unwrap_or(u32::MAX);
        let horizon = i64::from(now) - OCCURRENCE_WINDOW_S;
        let entry = self.occurrences.entry(ids::fold(base)).or_insert((0, now));
        if i64::from(entry.1) < horizon {
            *entry = (0, now);
        }
        let n = entry.0;
        entry.0 += 1;
        self.inserts += 1;
        // Pruning drops only entries that would start again anyway. Done
        // once as many lines came as the map kept last time, it keeps the
        // map within twice the window's distinct lines (plus 2^16).
        if self.inserts >= self.pruned_to.max(1 << 16) {
            self.occurrences
                .retain(|_, (_, first)| i64::from(*first) >= horizon);
            self.inserts = 0;
            self.pruned_to = self.occurrences.len();
        }
        ids::with_occurrence(base, n)
    }
}

/// Gives the content ids among `cols` (all of them without `content`)
/// their occurrence numbers, in line order.
fn number_occurrences<C: TableCols>(state: &mut FileState, cols: &mut C, content: Option<&[bool]>) {
    let (ids, ts) = cols.ids_mut_and_ts();
    for (i, (id, ts)) in ids.iter_mut().zip(ts).enumerate() {
        if content.is_none_or(|c| c[i]) {
            *id = state.occurrence_id(*id, Ts(*ts));
        }
    }
}

/// The rows of `cols` dated before `cutoff` (an erased customer's) as a
/// mask of rows to skip, counted as skipped.
fn erased_rows<C: TableCols>(cols: &C, cutoff: Ts, report: &mut FileReport) -> Option<Vec<bool>> {
    let skip: Vec<bool> = cols.ts().iter().map(|t| *t < cutoff.0).collect();
    let n = skip.iter().filter(|s| **s).count() as u64;
    if n == 0 {
        return None;
    }
    report.tables.entry(C::Row::TABLE).or_default().skipped += n;
    *report
        .skipped_reasons
        .entry(crate::lake::erase::ERASED_REASON.into())
        .or_default() += n;
    Some(skip)
}

/// `erased`: lines of this file dated before it belong to an erased
/// customer and are skipped (after ids and counters are computed, so the
/// other lines are as they would be without the erasure).
fn finalize(
    state: &mut FileState,
    out: BlockOut,
    input: &InputFile,
    ctx: &FileCtx,
    report: &mut FileReport,
    range: DateRange,
    erased: Option<Ts>,
) -> Rows {
    let BlockOut {
        file,
        mut usage,
        usage_content,
        mut requests,
        requests_content,
        mut resources,
        counters,
        mut activity,
        rejects,
        skipped,
        last_ts,
    } = out;
    number_occurrences(state, &mut usage, Some(&usage_content));
    number_occurrences(state, &mut requests, Some(&requests_content));
    number_occurrences(state, &mut resources, None);
    for (row, c) in counters {
        let prev = state
            .net
            .insert(c.interface.clone(), (c.bytes_recv, c.bytes_sent));
        let (prev_recv, prev_sent) = prev.unwrap_or((None, None));
        let mut reset = false;
        let mut delta = |cur: Option<u64>, prev: Option<u64>| -> Option<f64> {
            let (cur, prev) = (cur?, prev?);
            if cur >= prev {
                Some((cur - prev) as f64 / 1e6)
            } else {
                reset = true;
                Some(cur as f64 / 1e6)
            }
        };
        let net_in = delta(c.bytes_recv, prev_recv);
        let net_out = delta(c.bytes_sent, prev_sent);
        resources.set_network(row, net_in, net_out, reset);
    }
    number_occurrences(state, &mut activity, None);
    let modified = input
        .modified
        .map(|m| Ts(chrono::DateTime::<chrono::Utc>::from(m).timestamp_micros()));
    let mut reject_cols = RejectCols::with_capacity(rejects.len());
    for p in rejects {
        let (ts, inferred) = match p.reject.ts {
            Some(ts) => (ts, false),
            None => {
                let guess = p
                    .prev_ts
                    .or(state.last_ts)
                    .or(p.next_ts)
                    .or(modified)
                    .unwrap_or(Ts(0));
                (guess, true)
            }
        };
        if !range.contains(ts) {
            *report
                .skipped_reasons
                .entry(SkipReason::OutsideRange.as_str().into())
                .or_default() += 1;
            report.tables.entry(p.table).or_default().skipped += 1;
            continue;
        }
        if erased.is_some_and(|cutoff| ts < cutoff) {
            *report
                .skipped_reasons
                .entry(crate::lake::erase::ERASED_REASON.into())
                .or_default() += 1;
            report.tables.entry(p.table).or_default().skipped += 1;
            continue;
        }
        report.tables.entry(p.table).or_default().rejects += 1;
        *report
            .rejected_fields
            .entry(p.reject.field.unwrap_or("-").to_string())
            .or_default() += 1;
        *report.rejected_reasons.entry(p.reject.reason).or_default() += 1;
        reject_cols.push(RejectRow {
            event_id: Id(p.id),
            ts,
            ts_inferred: inferred,
            customer_id: ctx.customer_id.clone(),
            vm_id: ctx.vm_id.clone(),
            target_table: p.table.name().into(),
            format: p.reject.format.map(Str::from),
            reason: p.reject.reason.as_str().to_string(),
            detail: p.reject.detail,
            field: p.reject.field.map(Str::from),
            raw: p.raw,
            source_file: ctx.rel.clone(),
            source_line: p.line as i64,
        });
    }
    for ((table, reason), n) in skipped {
        report.tables.entry(table).or_default().skipped += n;
        *report
            .skipped_reasons
            .entry(reason.as_str().into())
            .or_default() += n;
    }
    if last_ts.is_some() {
        state.last_ts = last_ts;
    }
    let mut rows = Rows {
        file,
        usage: Part {
            cols: usage,
            skip: None,
        },
        requests: Part {
            cols: requests,
            skip: None,
        },
        resources: Part {
            cols: resources,
            skip: None,
        },
        activity: Part {
            cols: activity,
            skip: None,
        },
        rejects: Part {
            cols: reject_cols,
            skip: None,
        },
    };
    if let Some(cutoff) = erased {
        rows.usage.skip = erased_rows(&rows.usage.cols, cutoff, report);
        rows.requests.skip = erased_rows(&rows.requests.cols, cutoff, report);
        rows.resources.skip = erased_rows(&rows.resources.cols, cutoff, report);
        rows.activity.skip = erased_rows(&rows.activity.cols, cutoff, report);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
    use proptest::prelude::*;

    /// (source line, event id) of every row of `cols`, read back from the
    /// batch the columns finish into.
    fn lines_and_ids<C: TableCols>(cols: &mut C) -> Vec<(i64, EventId)> {
        let batch = cols.finish();
        let lines = batch["source_line"].as_primitive::<Int64Type>();
        let ids = batch["event_id"].as_string::<i32>();
        (0..batch.num_rows())
            .map(|i| (lines.value(i), ids::parse_id_hex(ids.value(i)).unwrap()))
            .collect()
    }

    /// Occurrence numbers do not depend on pruning: a file state that
    /// prunes gives every line the id a never-pruned map gives, over
    /// enough lines (out of order, with day-long jumps) to prune many
    /// times, and its map stays small.
    #[test]
    fn occurrence_ids_do_not_depend_on_pruning() {
        let mut state = FileState::default();
        let mut naive: HashMap<EventId, (u32, i64)> = HashMap::new();
        let mut max_s: Option<i64> = None;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut ts = 0i64;
        let mut largest = 0;
        for _ in 0..600_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Mostly forward by up to a second, sometimes a day back or ahead.
            ts += match seed % 10_000 {
                0 => -30 * 3600 * 1_000_000,
                1 => 20 * 3600 * 1_000_000,
                _ => (seed % 1_000_000) as i64,
            };
            // Mostly distinct lines, some repeated.
            let base = match (seed >> 20) % 4 {
                0 => u128::from((seed >> 24) % 1000),
                _ => u128::from(seed),
            };
            let second = ts.div_euclid(1_000_000);
            let now = max_s.map_or(second, |m| m.max(second));
            max_s = Some(now);
            let e = naive.entry(base).or_insert((0, now));
            if e.1 < now - OCCURRENCE_WINDOW_S {
                *e = (0, now);
            }
            let want = ids::with_occurrence(base, e.0);
            e.0 += 1;
            assert_eq!(state.occurrence_id(base, Ts(ts)), want);
            largest = largest.max(state.occurrences.len());
        }
        // About 172,800 lines a day (half a second apart): the map never
        // holds much more than two days of them; the naive one holds all.
        assert!(largest < 3 * 172_800, "{largest}");
        assert!(naive.len() > 400_000);
    }

    const LINES: &[&str] = &[
        r#"{"timestamp":"2026-10-01T10:00:00Z","model":"gpt-4o","provider":"openai","input_tokens":100,"cache_read_tokens":20,"output_tokens":5}"#,
        r#"{"timestamp":"2026-10-01T10:00:01Z","model":"claude-haiku-4-5","input_tokens":10,"output_tokens":5,"request_id":"a1b2c3d4"}"#,
        r#"{"timestamp":"2026-10-01T10:00:02Z","model":"gpt-4o","provider":"openai","input_tokens":1,"cache_read_tokens":20,"output_tokens":5}"#,
        r#"[2026-10-01 10:00:03] [a1b2c3d4] [info ] [gin_logger.go:97] 200 |  1.5s | 127.0.0.1 | POST "/v1/messages""#,
        r#"[2026-10-01 10:00:03] [--------] [info ] [main.go:12] server started"#,
        r#"10.0.0.1 - - [01/Oct/2026:10:00:04 +0000] "POST /v1/messages HTTP/1.1" 200 1234 "-" "sdk""#,
        r#"10.0.0.1 - - [01/Oct/2026:10:00:04 +0000] "POST /v1/messages HTTP/1.1" 2x0 1234"#,
        "",
        "garbage that is no format at all",
        r#"{"timestamp":"2026-10-02T00:00:00Z","model":"#,
    ];

    fn ctx() -> FileCtx {
        FileCtx {
            rel: "vm-1/cliproxy/x.log".into(),
            vm_id: "vm-1".into(),
            customer_id: Some("c1".into()),
            tz: chrono_tz::Tz::UTC,
            kind: SourceKind::Cliproxy,
            registry: Arc::new(Registry::default()),
            csv_columns: None,
            feeds: None,
        }
    }

    fn input() -> InputFile {
        InputFile {
            path: "x.log".into(),
            rel: "vm-1/cliproxy/x.log".into(),
            vm_id: "vm-1".into(),
            kind: SourceKind::Cliproxy,
            gz: false,
            modified: None,
            size: 0,
        }
    }

    /// Runs one file through read, parse and finalize with a given block
    /// size: the ids of every row and reject, and the report.
    fn process(data: &[u8], block_size: usize) -> (Vec<(Table, i64, EventId)>, FileReport, u64) {
        let ctx = ctx();
        let input = input();
        let range = DateRange {
            since: None,
            until: None,
        };
        let mut reader =
            BlockReader::from_reader(0, Box::new(std::io::Cursor::new(data.to_vec())), false)
                .with_block_size(block_size);
        let mut state = FileState::default();
        let mut report = FileReport::default();
        let mut ids = Vec::new();
        while let Some(block) = reader.next_block() {
            let mut rows = finalize(
                &mut state,
                parse_block(&ctx, &block, range),
                &input,
                &ctx,
                &mut report,
                range,
                None,
            );
            let usage = rows.usage.cols.len() as u64;
            let requests = rows.requests.cols.len() as u64;
            for (table, found) in [
                (Table::ApiUsage, lines_and_ids(&mut rows.usage.cols)),
                (Table::ApiRequests, lines_and_ids(&mut rows.requests.cols)),
                (Table::Rejects, lines_and_ids(&mut rows.rejects.cols)),
            ] {
                ids.extend(found.into_iter().map(|(line, id)| (table, line, id)));
            }
            report.tables.entry(Table::ApiUsage).or_default().rows += usage;
            report.tables.entry(Table::ApiRequests).or_default().rows += requests;
        }
        (ids, report, reader.lines_read)
    }

    fn file_of(picks: &[usize], terminated: bool) -> Vec<u8> {
        let mut data = picks
            .iter()
            .map(|i| LINES[i % LINES.len()])
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes();
        if terminated && !data.is_empty() {
            data.push(b'\n');
        }
        data
    }

    proptest! {
        #[test]
        fn event_ids_do_not_depend_on_chunking(picks in prop::collection::vec(0usize..100, 0..60), size in 1usize..400, terminated: bool) {
            let data = file_of(&picks, terminated);
            let (mut whole, _, _) = process(&data, 1 << 20);
            let (mut chunked, _, _) = process(&data, size);
            whole.sort_by_key(|(_, line, _)| *line);
            chunked.sort_by_key(|(_, line, _)| *line);
            prop_assert_eq!(whole, chunked);
        }

        #[test]
        fn every_line_lands_in_one_bucket(picks in prop::collection::vec(0usize..100, 0..60), size in 1usize..400, terminated: bool) {
            let data = file_of(&picks, terminated);
            let (_, report, lines_read) = process(&data, size);
            let accounted: u64 = report.tables.values().map(|c| c.total()).sum();
            prop_assert_eq!(accounted, lines_read);
            let last_is_blank = picks.last().is_some_and(|i| LINES[i % LINES.len()].is_empty());
            let expected_lines = if !terminated && last_is_blank {
                picks.len() as u64 - 1
            } else if data.is_empty() {
                0
            } else {
                picks.len() as u64
            };
            prop_assert_eq!(lines_read, expected_lines);
        }
    }

    #[test]
    fn a_usage_row_with_borrowed_text_fills_the_columns_as_the_owned_row() {
        let ctx = ctx();
        let lines = [
            LINES[0],
            LINES[1],
            // Escapes (owned text), a query string, a number where text goes.
            r#"{"timestamp":"2026-10-01T10:00:00Z","model":" gpt-\u0034o ","provider":"OpenAI","input_tokens":1,"output_tokens":1,"path":"/v1/chat/completions?key=x","user":42,"api_key":"sk-1"}"#,
            r#"{"timestamp":"2026-10-01T10:00:00Z","model":"m","executor_type":"Some-Proxy","input_tokens":1,"output_tokens":0,"request_id":"  r-1  "}"#,
        ];
        let mut borrowed = ApiUsageCols::with_capacity(0);
        let mut owned = ApiUsageCols::with_capacity(0);
        for line in lines {
            match parse::parse_line(&ctx, line.as_bytes()) {
                Parsed::Usage(r, _) => {
                    owned.push(r.clone().to_row());
                    borrowed.push_ref(r);
                }
                other => panic!("{line}: {other:?}"),
            }
        }
        assert_eq!(borrowed.len(), lines.len());
        assert_eq!(borrowed.finish(), owned.finish());
    }

    #[test]
    fn identical_lines_in_one_file_are_distinct_events() {
        let line = LINES[5];
        let data = format!("{line}\n{line}\n{line}\n");
        let (ids, _, _) = process(data.as_bytes(), 1 << 20);
        let unique: std::collections::HashSet<EventId> = ids.iter().map(|(_, _, id)| *id).collect();
        assert_eq!(unique.len(), 3);
    }

    /// Reads, parses and finalizes `data` as the single block of one file.
    fn one_block(ctx: &FileCtx, data: &str) -> Rows {
        let range = DateRange {
            since: None,
            until: None,
        };
        let cursor = std::io::Cursor::new(data.as_bytes().to_vec());
        let block = BlockReader::from_reader(0, Box::new(cursor), false)
            .next_block()
            .unwrap();
        let out = parse_block(ctx, &block, range);
        finalize(
            &mut FileState::default(),
            out,
            &input(),
            ctx,
            &mut FileReport::default(),
            range,
            None,
        )
    }

    #[test]
    fn lines_of_an_erased_customer_before_the_erasure_are_skipped_and_counted() {
        let data = LINES.join("\n") + "\n";
        let range = DateRange {
            since: None,
            until: None,
        };
        let run = |erased: Option<Ts>| {
            let block = BlockReader::from_reader(
                0,
                Box::new(std::io::Cursor::new(data.clone().into_bytes())),
                false,
            )
            .next_block()
            .unwrap();
            let mut report = FileReport::default();
            let mut rows = finalize(
                &mut FileState::default(),
                parse_block(&ctx(), &block, range),
                &input(),
                &ctx(),
                &mut report,
                range,
                erased,
            );
            let kept = [
                kept(&mut rows.usage),
                kept(&mut rows.requests),
                kept(&mut rows.rejects),
            ];
            let stored = kept[0].num_rows() + kept[1].num_rows();
            let accounted: u64 =
                report.tables.values().map(|c| c.total()).sum::<u64>() + stored as u64;
            assert_eq!(accounted, LINES.len() as u64);
            (kept, report)
        };
        let (all, plain) = run(None);
        assert!(
            !plain
                .skipped_reasons
                .contains_key(crate::lake::erase::ERASED_REASON)
        );
        // Erased after every line: every row and reject goes.
        let (none, report) = run(Some(Ts(i64::MAX)));
        assert_eq!(none.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
        let erased = report.skipped_reasons[crate::lake::erase::ERASED_REASON];
        assert_eq!(
            erased as usize,
            all.iter().map(|b| b.num_rows()).sum::<usize>()
        );
        // Erased at 10:00:01: the line before it goes, the others stay with
        // the ids they had.
        let cutoff = Ts(all[0]["ts"]
            .as_primitive::<TimestampMicrosecondType>()
            .value(1));
        let (some, report) = run(Some(cutoff));
        assert_eq!(some[0], all[0].slice(1, all[0].num_rows() - 1));
        assert_eq!(some[1], all[1]);
        assert_eq!(report.skipped_reasons[crate::lake::erase::ERASED_REASON], 1);
    }

    /// The rows of a part that are not skipped.
    fn kept<C: TableCols>(part: &mut Part<C>) -> arrow::record_batch::RecordBatch {
        let batch = part.cols.finish();
        match &part.skip {
            None => batch,
            Some(skip) => {
                let keep: arrow::array::BooleanArray = skip.iter().map(|s| Some(!s)).collect();
                arrow::compute::filter_record_batch(&batch, &keep).unwrap()
            }
        }
    }

    #[test]
    fn undated_rejects_take_the_previous_dated_line() {
        let data = format!(
            "{}
{}
",
            LINES[5], LINES[8]
        );
        let mut rows = one_block(&ctx(), &data);
        let rejects = rows.rejects.cols.finish();
        let requests = rows.requests.cols.finish();
        assert_eq!(rejects.num_rows(), 1);
        assert!(rejects["ts_inferred"].as_boolean().value(0));
        assert_eq!(
            rejects["ts"]
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            requests["ts"]
                .as_primitive::<TimestampMicrosecondType>()
                .value(0)
        );
    }

    #[test]
    fn net_counters_become_deltas_with_resets() {
        let mut ctx = ctx();
        ctx.kind = SourceKind::Resources;
        let data = "net,interface=eth0 bytes_recv=1000000i,bytes_sent=500i 1700000000000000000\n\
                    net,interface=eth0 bytes_recv=3000000i,bytes_sent=1500i 1700000300000000000\n\
                    net,interface=eth0 bytes_recv=2000000i,bytes_sent=2500i 1700000600000000000\n";
        let mut state = FileState::default();
        let mut deltas: Vec<(Option<f64>, Option<f64>, bool)> = Vec::new();
        // One line per block too: the previous counters come from the file's state.
        for block_size in [1 << 20, 1] {
            let mut reader = BlockReader::from_reader(
                0,
                Box::new(std::io::Cursor::new(data.as_bytes().to_vec())),
                false,
            )
            .with_block_size(block_size);
            let range = DateRange {
                since: None,
                until: None,
            };
            let mut these = Vec::new();
            while let Some(block) = reader.next_block() {
                let mut rows = finalize(
                    &mut state,
                    parse_block(&ctx, &block, range),
                    &input(),
                    &ctx,
                    &mut FileReport::default(),
                    range,
                    None,
                );
                let batch = rows.resources.cols.finish();
                let opt = |name: &str, i: usize| {
                    let col = batch[name].as_primitive::<Float64Type>();
                    col.is_valid(i).then(|| col.value(i))
                };
                for i in 0..batch.num_rows() {
                    these.push((
                        opt("network_in_mb", i),
                        opt("network_out_mb", i),
                        batch["counter_reset"].as_boolean().value(i),
                    ));
                }
            }
            state = FileState::default();
            deltas = if deltas.is_empty() {
                these
            } else {
                assert_eq!(deltas, these, "one block or a block per line");
                these
            };
        }
        assert_eq!(
            deltas,
            vec![
                (None, None, false),
                (Some(2.0), Some(0.001), false),
                (Some(2.0), Some(0.001), true)
            ]
        );
    }
}
