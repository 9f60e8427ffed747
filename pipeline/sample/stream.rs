//! A stream: one logical log of a VM cut into segment files on the rotation grid (plain,
//! gzip-rotated or dated), with rotation overlaps, a re-shipped copy and malformed lines.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use rand::Rng;
use rand::rngs::SmallRng;

use super::plan::ResFmt;
use super::time::civil;
use super::totals::{Bucket, Table, Tally};
use super::{Ctx, DAY, SampleError, io_err};

const MALFORMED_RATE: f64 = 0.005;
const PLAIN_BUF: usize = 1 << 20;
const GZ_BUF: usize = 256 << 10;

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

pub(super) struct Stream {
    dir: PathBuf,
    stem: &'static str,
    ext: &'static str,
    /// logrotate numbering (`usage.jsonl.2.gz`) rather than dated names.
    pub(super) numbered: bool,
    /// Still written at the VM's end, so its last segment is the plain live file. A
    /// stream that stopped earlier (format switch) is rotated entirely.
    pub(super) live: bool,
    table: Table,
    clean: bool,
    pub(super) segs: Vec<(i64, i64)>,
    next: usize,
    sink: Option<Sink>,
    path: PathBuf,
    pub(super) header: Option<&'static str>,
    pub(super) eol: &'static str,
    /// Rows of a segment copied to the start of the next one.
    pub(super) overlap: usize,
    ring: VecDeque<String>,
    /// Segment shipped twice.
    reship: Option<usize>,
    seg: Tally,
    rejects: u64,
}

impl Stream {
    pub(super) fn new(
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
    pub(super) fn at(&mut self, t: i64, tally: &mut Tally) -> Result<(), SampleError> {
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

    pub(super) fn emit(&mut self, line: &str, bucket: Bucket) -> Result<(), SampleError> {
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
    pub(super) fn finish(
        &mut self,
        tally: &mut Tally,
        tail: Option<&str>,
    ) -> Result<(), SampleError> {
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
    pub(super) fn corrupt(&self, rng: &mut SmallRng) -> bool {
        if self.clean || self.reship == Some(self.cur()) {
            return false;
        }
        rng.random_bool(MALFORMED_RATE) || (self.rejects == 0 && self.is_last())
    }
}

/// The streams of one VM.
pub(super) struct VmStreams {
    pub(super) usage_a: Option<Stream>,
    pub(super) usage_b: Option<Stream>,
    pub(super) access: Stream,
    pub(super) res: Vec<(ResFmt, Stream)>,
    pub(super) commands: Stream,
}

impl VmStreams {
    pub(super) fn all_mut(&mut self) -> impl Iterator<Item = &mut Stream> {
        self.usage_a
            .iter_mut()
            .chain(self.usage_b.iter_mut())
            .chain(std::iter::once(&mut self.access))
            .chain(self.res.iter_mut().map(|(_, s)| s))
            .chain(std::iter::once(&mut self.commands))
    }

    /// Ships the first segment of one stream twice (which stream varies by VM).
    pub(super) fn pick_reship(&mut self, idx: usize) {
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
