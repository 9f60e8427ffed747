//! The raw input tree: which files exist, and reading them as blocks of whole
//! lines. Only this module and `lake` touch the file system.
//!
//! ```text
//! <input>/customers.csv, users.csv
//! <input>/<vm_id>/cliproxy/**   *.log, *.jsonl            (optionally .gz)
//! <input>/<vm_id>/resources/**  *.csv, *.jsonl, *.influx  (optionally .gz)
//! <input>/<vm_id>/commands/**   *.jsonl                   (optionally .gz)
//! ```
//! Rotated names are accepted: `access.log.1`, `access.log.2.gz`,
//! `usage.jsonl-20261005.gz`.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::ingest::parse::SourceKind;
use crate::lake::tables::Table;
use crate::model::error::{IoContext, Result};
use crate::model::ids::valid_id;

/// Bytes per block handed to a parser thread.
pub const BLOCK_SIZE: usize = 4 << 20;
/// Longer lines are cut here and rejected.
pub const MAX_LINE: usize = 8 << 20;

#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    /// `/`-separated path relative to the input directory.
    pub rel: String,
    pub vm_id: String,
    pub kind: SourceKind,
    pub gz: bool,
    pub modified: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ignored {
    pub path: String,
    pub reason: String,
    /// True when the operator should look (an invalid VM directory name),
    /// false for expected extras such as a README.
    pub attention: bool,
}

#[derive(Debug, Default)]
pub struct Discovery {
    pub files: Vec<InputFile>,
    pub ignored: Vec<Ignored>,
}

/// A file name without `.gz` and a rotation suffix (`.1`, `-20261005`).
fn base_name(name: &str) -> &str {
    let name = name.strip_suffix(".gz").unwrap_or(name);
    match name.rfind(['.', '-']) {
        Some(i) if i + 1 < name.len() && name[i + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            &name[..i]
        }
        _ => name,
    }
}

/// The table a file feeds, as its place and name say: every resource file
/// feeds `resource_usage`, every command log `activity`; in `cliproxy/`,
/// `*.jsonl` and `usage*` files feed `api_usage`, `main*` and `access*`
/// logs `api_requests`. `None` for a CLIProxyAPI file whose name says
/// neither: each of its lines is then attributed by its look. A line that
/// makes no row (a reject, a skip) counts for this table.
pub fn feeds(kind: SourceKind, rel: &str) -> Option<Table> {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let base = base_name(name);
    match kind {
        SourceKind::Resources => Some(Table::ResourceUsage),
        SourceKind::Commands => Some(Table::Activity),
        SourceKind::Cliproxy if base.ends_with(".jsonl") || base.starts_with("usage") => {
            Some(Table::ApiUsage)
        }
        SourceKind::Cliproxy if base.starts_with("main") || base.starts_with("access") => {
            Some(Table::ApiRequests)
        }
        SourceKind::Cliproxy => None,
    }
}

fn accepted(kind: SourceKind, name: &str) -> bool {
    let base = base_name(name);
    let ext = base.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match kind {
        SourceKind::Cliproxy => matches!(ext, "log" | "jsonl"),
        SourceKind::Resources => matches!(ext, "csv" | "jsonl" | "influx"),
        SourceKind::Commands => ext == "jsonl",
    }
}

/// The entries of a directory, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    let mut entries = std::fs::read_dir(dir)
        .read_ctx(dir)?
        .collect::<io::Result<Vec<_>>>()
        .read_ctx(dir)?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// Lists the input files in a stable order (by relative path).
pub fn discover(input: &Path) -> Result<Discovery> {
    let mut d = Discovery::default();
    let entries = sorted_entries(input)?;
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            d.ignored.push(Ignored {
                path: name,
                reason: "hidden".into(),
                attention: false,
            });
            continue;
        }
        let path = entry.path();
        if !path.is_dir() {
            if !matches!(name.as_str(), "customers.csv" | "users.csv") {
                d.ignored.push(Ignored {
                    path: name,
                    reason: "not part of the input layout".into(),
                    attention: false,
                });
            }
            continue;
        }
        if !valid_id(&name) {
            d.ignored.push(Ignored {
                path: name,
                reason: "directory name is not a valid VM id (1-64 of A-Z a-z 0-9 . _ -)".into(),
                attention: true,
            });
            continue;
        }
        let subs = sorted_entries(&path)?;
        for sub in subs {
            let sub_name = sub.file_name().to_string_lossy().into_owned();
            if sub_name.starts_with('.') {
                d.ignored.push(Ignored {
                    path: format!("{name}/{sub_name}"),
                    reason: "hidden".into(),
                    attention: false,
                });
                continue;
            }
            let kind = match sub_name.as_str() {
                "cliproxy" => SourceKind::Cliproxy,
                "resources" => SourceKind::Resources,
                "commands" => SourceKind::Commands,
                _ => {
                    d.ignored.push(Ignored {
                        path: format!("{name}/{sub_name}"),
                        reason: "not cliproxy/, resources/ or commands/".into(),
                        attention: false,
                    });
                    continue;
                }
            };
            walk(
                &sub.path(),
                &format!("{name}/{sub_name}"),
                &name,
                kind,
                0,
                &mut d,
            )?;
        }
    }
    d.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(d)
}

fn walk(
    dir: &Path,
    rel: &str,
    vm: &str,
    kind: SourceKind,
    depth: usize,
    d: &mut Discovery,
) -> Result<()> {
    if depth > 16 {
        d.ignored.push(Ignored {
            path: rel.into(),
            reason: "nested deeper than 16 levels".into(),
            attention: true,
        });
        return Ok(());
    }
    let entries = sorted_entries(dir)?;
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = format!("{rel}/{name}");
        if name.starts_with('.') {
            d.ignored.push(Ignored {
                path: child,
                reason: "hidden".into(),
                attention: false,
            });
            continue;
        }
        let path = entry.path();
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                d.ignored.push(Ignored {
                    path: child,
                    reason: format!("cannot stat: {e}"),
                    attention: true,
                });
                continue;
            }
        };
        if meta.is_dir() {
            walk(&path, &child, vm, kind, depth + 1, d)?;
        } else if accepted(kind, &name) {
            d.files.push(InputFile {
                gz: name.ends_with(".gz"),
                path,
                rel: child,
                vm_id: vm.to_string(),
                kind,
                modified: meta.modified().ok(),
            });
        } else {
            d.ignored.push(Ignored {
                path: child,
                reason: format!(
                    "not a {} file",
                    match kind {
                        SourceKind::Cliproxy => "*.log or *.jsonl",
                        SourceKind::Resources => "*.csv, *.jsonl or *.influx",
                        SourceKind::Commands => "*.jsonl",
                    }
                ),
                attention: false,
            });
        }
    }
    Ok(())
}

/// Whole lines of one file. `data` ends with `\n` unless `tail` says why not.
#[derive(Debug, Clone)]
pub struct Block {
    pub file: usize,
    /// Number of the first line in `data`, from 1.
    pub first_line: u64,
    pub data: Vec<u8>,
    pub tail: Tail,
    /// Line numbers of lines cut at [`MAX_LINE`].
    pub too_long: Vec<u64>,
}

/// How the last line of a block ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// With `\n` (or the block is empty).
    Newline,
    /// At the end of a complete compressed file, without `\n`: a normal line.
    EndOfFile,
    /// At the end of a plain file, without `\n`: still being written.
    Unterminated,
    /// At a read error: the rest of the file is unknown.
    ReadError,
}

/// Reads a file as blocks of whole lines, streaming gzip, counting lines on
/// its own so the run report can check that every line is accounted for.
pub struct BlockReader {
    file: usize,
    inner: Box<dyn Read + Send>,
    gz: bool,
    block_size: usize,
    carry: Vec<u8>,
    next_line: u64,
    /// Lines handed out so far, counted here and nowhere else.
    pub lines_read: u64,
    pub error: Option<String>,
    done: bool,
    discarding: bool,
}

impl BlockReader {
    pub fn open(file: usize, f: &InputFile) -> io::Result<BlockReader> {
        let handle = File::open(&f.path)?;
        let inner: Box<dyn Read + Send> = if f.gz {
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                1 << 20,
                handle,
            )))
        } else {
            Box::new(handle)
        };
        Ok(BlockReader::from_reader(file, inner, f.gz))
    }

    pub fn from_reader(file: usize, inner: Box<dyn Read + Send>, gz: bool) -> BlockReader {
        BlockReader {
            file,
            inner,
            gz,
            block_size: BLOCK_SIZE,
            carry: Vec::new(),
            next_line: 1,
            lines_read: 0,
            error: None,
            done: false,
            discarding: false,
        }
    }

    /// Smaller blocks (tests: event ids must not depend on chunking).
    pub fn with_block_size(mut self, block_size: usize) -> BlockReader {
        self.block_size = block_size.max(1);
        self
    }

    /// Cuts every line longer than [`MAX_LINE`] that the bytes from `from` on
    /// end or extend, keeping its head and marking its number; an unfinished
    /// one makes the reader drop the rest of it up to its newline.
    fn cut_long_lines(&mut self, buf: &mut Vec<u8>, from: usize, too_long: &mut Vec<u64>) {
        let mut line_start = memchr::memrchr(b'\n', &buf[..from]).map_or(0, |i| i + 1);
        let mut pos = from.max(line_start);
        let line_no = |buf: &[u8], at: usize| {
            self.next_line + memchr::memchr_iter(b'\n', &buf[..at]).count() as u64
        };
        loop {
            match memchr::memchr(b'\n', &buf[pos..]) {
                Some(i) => {
                    let end = pos + i;
                    if end - line_start > MAX_LINE {
                        too_long.push(line_no(buf, line_start));
                        buf.drain(line_start + MAX_LINE..end);
                        line_start += MAX_LINE + 1;
                    } else {
                        line_start = end + 1;
                    }
                    pos = line_start;
                }
                None => {
                    if buf.len() - line_start > MAX_LINE {
                        too_long.push(line_no(buf, line_start));
                        buf.truncate(line_start + MAX_LINE);
                        buf.push(b'\n');
                        self.discarding = true;
                    }
                    return;
                }
            }
        }
    }

    /// The next block, or `None` at the end of the file (or after an error,
    /// which is then in `self.error`).
    pub fn next_block(&mut self) -> Option<Block> {
        if self.done {
            return None;
        }
        let mut buf = std::mem::take(&mut self.carry);
        let mut too_long = Vec::new();
        let mut eof = false;
        let mut failed = false;
        loop {
            // Enough for a block, ending in a newline?
            if buf.len() >= self.block_size && memchr::memrchr(b'\n', &buf).is_some() {
                break;
            }
            let start = buf.len();
            let want = if buf.len() < self.block_size {
                self.block_size - buf.len()
            } else {
                1 << 16
            };
            // Read into spare capacity: no zero-filling of the buffer first.
            // Bytes read before an error are kept, as whole lines go.
            buf.reserve(want);
            match (&mut self.inner).take(want as u64).read_to_end(&mut buf) {
                // Short of `want`: the reader is at its end.
                Ok(n) => eof = n < want,
                Err(e) => {
                    self.error = Some(e.to_string());
                    failed = true;
                }
            }
            if buf.len() > start {
                if self.discarding {
                    // Dropping the rest of an over-long line up to its newline.
                    match memchr::memchr(b'\n', &buf[start..]) {
                        Some(i) => {
                            buf.drain(start..=start + i);
                            self.discarding = false;
                        }
                        None => buf.truncate(start),
                    }
                }
                self.cut_long_lines(&mut buf, start, &mut too_long);
            }
            if eof || failed {
                break;
            }
        }
        let tail;
        if eof || failed {
            self.done = true;
            tail = if buf.last().is_none_or(|b| *b == b'\n') {
                Tail::Newline
            } else if failed {
                Tail::ReadError
            } else if self.gz {
                Tail::EndOfFile
            } else {
                Tail::Unterminated
            };
        } else {
            let cut =
                memchr::memrchr(b'\n', &buf).expect("loop ends with a newline in the buffer") + 1;
            self.carry = buf.split_off(cut);
            tail = Tail::Newline;
        }
        if buf.is_empty() && self.done {
            return None;
        }
        let lines =
            memchr::memchr_iter(b'\n', &buf).count() as u64 + u64::from(tail != Tail::Newline);
        let block = Block {
            file: self.file,
            first_line: self.next_line,
            data: buf,
            tail,
            too_long,
        };
        self.next_line += lines;
        self.lines_read += lines;
        Some(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(data: &[u8], gz: bool) -> (Vec<Block>, u64) {
        let mut r = BlockReader::from_reader(0, Box::new(io::Cursor::new(data.to_vec())), gz);
        let mut out = Vec::new();
        while let Some(b) = r.next_block() {
            out.push(b);
        }
        (out, r.lines_read)
    }

    #[test]
    fn names() {
        assert!(accepted(SourceKind::Cliproxy, "main.log"));
        assert!(accepted(SourceKind::Cliproxy, "access.log.2.gz"));
        assert!(accepted(SourceKind::Cliproxy, "usage.jsonl-20261005.gz"));
        assert!(accepted(SourceKind::Resources, "samples.influx"));
        assert!(!accepted(SourceKind::Commands, "x.csv"));
        assert!(!accepted(SourceKind::Cliproxy, "README.md"));
    }

    #[test]
    fn the_table_a_file_feeds_comes_from_its_name() {
        use SourceKind::*;
        assert_eq!(
            feeds(Cliproxy, "vm-1/cliproxy/usage.jsonl"),
            Some(Table::ApiUsage)
        );
        assert_eq!(
            feeds(Cliproxy, "vm-1/cliproxy/reshipped/usage.log.2.gz"),
            Some(Table::ApiUsage)
        );
        assert_eq!(
            feeds(Cliproxy, "vm-1/cliproxy/usage-20261005.log"),
            Some(Table::ApiUsage)
        );
        assert_eq!(
            feeds(Cliproxy, "vm-1/cliproxy/main.log.1.gz"),
            Some(Table::ApiRequests)
        );
        assert_eq!(
            feeds(Cliproxy, "vm-1/cliproxy/access.log"),
            Some(Table::ApiRequests)
        );
        assert_eq!(feeds(Cliproxy, "vm-1/cliproxy/proxy.log"), None);
        assert_eq!(
            feeds(Resources, "vm-1/resources/m.csv"),
            Some(Table::ResourceUsage)
        );
        assert_eq!(
            feeds(Commands, "vm-1/commands/h.jsonl"),
            Some(Table::Activity)
        );
    }

    #[test]
    fn tails_and_counts() {
        let (b, n) = blocks(b"a\nb\n", false);
        assert_eq!((b.len(), n, b[0].tail), (1, 2, Tail::Newline));
        let (b, n) = blocks(b"a\nb", false);
        assert_eq!((n, b[0].tail), (2, Tail::Unterminated));
        let (b, n) = blocks(b"a\nb", true);
        assert_eq!((n, b[0].tail), (2, Tail::EndOfFile));
        let (b, n) = blocks(b"", false);
        assert_eq!((b.len(), n), (0, 0));
    }

    #[test]
    fn big_input_splits_at_line_boundaries_with_line_numbers() {
        let line = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"; // 64 bytes
        let data: Vec<u8> = line.repeat(200_000); // 12.8 MB
        let (b, n) = blocks(&data, false);
        assert_eq!(n, 200_000);
        assert!(b.len() >= 3);
        let mut expected_first = 1;
        for block in &b {
            assert_eq!(block.first_line, expected_first);
            assert_eq!(*block.data.last().unwrap(), b'\n');
            expected_first += memchr::memchr_iter(b'\n', &block.data).count() as u64;
        }
    }

    #[test]
    fn over_long_lines_are_cut_and_marked() {
        let mut data = b"first\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        data.extend(b"\nlast\n");
        let (b, n) = blocks(&data, false);
        assert_eq!(n, 3);
        let marked: Vec<u64> = b.iter().flat_map(|b| b.too_long.clone()).collect();
        assert_eq!(marked, vec![2]);
        let all: Vec<u8> = b.iter().flat_map(|b| b.data.clone()).collect();
        assert!(all.ends_with(b"\nlast\n"));
    }
}
