//! The raw input tree: which files exist, and reading them as blocks of whole
//! lines. Only this module and `lake` touch the file system; the input is a
//! local folder or an object-store prefix (`s3://bucket/raw`, `gs://`,
//! `az://`, see [`crate::lake::store`]) with the same layout, read through
//! one [`InputRoot`].
//!
//! ```text
//! <input>/customers.csv, users.csv, contracts.toml
//! <input>/<vm_id>/cliproxy/**   *.log, *.jsonl            (optionally .gz)
//! <input>/<vm_id>/resources/**  *.csv, *.jsonl, *.influx  (optionally .gz)
//! <input>/<vm_id>/commands/**   *.jsonl                   (optionally .gz)
//! ```
//! Rotated names are accepted: `access.log.1`, `access.log.2.gz`,
//! `usage.jsonl-20261005.gz`.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::ingest::parse::SourceKind;
use crate::lake::store::{self, RANGE_SIZE, Store};
use crate::lake::tables::Table;
use crate::model::error::{Error, IoContext, Result};
use crate::model::ids::valid_id;
use crate::model::registry::Registry;

/// Bytes per block handed to a parser thread.
pub const BLOCK_SIZE: usize = 4 << 20;
/// Longer lines are cut here and rejected.
pub const MAX_LINE: usize = 8 << 20;

#[derive(Debug, Clone)]
pub struct InputFile {
    /// The local path, or the object's URL (`s3://bucket/raw/vm-1/...`):
    /// what messages name.
    pub path: PathBuf,
    /// `/`-separated path relative to the input directory.
    pub rel: String,
    pub vm_id: String,
    pub kind: SourceKind,
    pub gz: bool,
    pub modified: Option<SystemTime>,
    /// Bytes, as listed.
    pub size: u64,
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

/// Where the raw input is: a local folder, or a prefix in an object store.
/// Everything that reads the input goes through it.
#[derive(Debug)]
pub struct InputRoot {
    root: Root,
    /// Bytes per ranged GET of a remote object.
    range_size: u64,
}

#[derive(Debug)]
enum Root {
    Local(PathBuf),
    Remote(Arc<Store>),
}

impl InputRoot {
    /// The input `input` names: a local folder (a path or a `file://` URL),
    /// which must exist, or an object-store URL (`s3://bucket/prefix`,
    /// `gs://`, `az://`), configured from the environment as
    /// [`Store::open`] is. Nothing remote is contacted yet.
    pub fn open(input: &Path) -> Result<InputRoot> {
        let local = match input.to_str() {
            Some(url) if url.contains("://") => store::local_path(url)?,
            _ => Some(input.to_path_buf()),
        };
        match local {
            Some(dir) if dir.is_dir() => Ok(InputRoot::local(dir)),
            Some(_) => Err(Error::NoInput {
                path: input.to_path_buf(),
            }),
            None => {
                let url = input.to_str().expect("a URL is text");
                Ok(InputRoot::remote(Store::open(url).map_err(input_error)?))
            }
        }
    }

    /// A local folder.
    pub fn local(dir: impl Into<PathBuf>) -> InputRoot {
        InputRoot {
            root: Root::Local(dir.into()),
            range_size: RANGE_SIZE,
        }
    }

    /// A store's prefix (e.g. one opened with explicit options).
    pub fn remote(store: Store) -> InputRoot {
        InputRoot {
            root: Root::Remote(Arc::new(store)),
            range_size: RANGE_SIZE,
        }
    }

    /// Remote objects are read in ranges of this many bytes (tests).
    pub fn with_range_size(mut self, range_size: u64) -> InputRoot {
        self.range_size = range_size.max(1);
        self
    }

    /// What messages name: the path of a file, or the URL of an object.
    pub fn location(&self, rel: &str) -> PathBuf {
        match &self.root {
            Root::Local(dir) => dir.join(rel),
            Root::Remote(store) => PathBuf::from(store.object_url(rel)),
        }
    }

    /// Reads a small file whole (`customers.csv`); `None` when it does not
    /// exist.
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        match &self.root {
            Root::Local(dir) => {
                let path = dir.join(rel);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::Read { path, source: e }),
                }
            }
            Root::Remote(store) => store.get(rel).map_err(input_error),
        }
    }

    /// `customers.csv` (required) and `users.csv` (optional), strictly:
    /// [`crate::load::registry`], from the folder or the store.
    pub fn registry(&self) -> Result<Registry> {
        match &self.root {
            Root::Local(dir) => crate::load::registry(dir),
            Root::Remote(_) => crate::load::registry_from(|name| {
                let location = self.location(name);
                let text = match self.read(name)? {
                    Some(bytes) => Some(String::from_utf8(bytes).map_err(|e| Error::Read {
                        path: location.clone(),
                        source: io::Error::new(io::ErrorKind::InvalidData, e),
                    })?),
                    None => None,
                };
                Ok((text, location))
            }),
        }
    }

    /// Lists the input files in a stable order (by relative path), and what
    /// was ignored and why. A folder and a bucket prefix holding the same
    /// files give the same discovery.
    pub fn discover(&self) -> Result<Discovery> {
        let mut d = Discovery::default();
        match &self.root {
            Root::Local(dir) => walk(dir, &mut Vec::new(), &mut d)?,
            Root::Remote(store) => list_remote(store, &mut d)?,
        }
        d.files.sort_by(|a, b| a.rel.cmp(&b.rel));
        // Folder by folder, each sorted by name: the order of a walk.
        d.ignored
            .sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
        Ok(d)
    }

    /// The raw bytes of `f` (before gunzip): a local file, or a remote
    /// object read in ranged GETs.
    pub fn open_file(&self, f: &InputFile) -> io::Result<Box<dyn Read + Send>> {
        Ok(match &self.root {
            Root::Local(_) => Box::new(File::open(&f.path)?),
            Root::Remote(store) => Box::new(
                store
                    .reader(&f.rel, f.size)
                    .with_range_size(self.range_size),
            ),
        })
    }
}

/// A store error about the input says so, with what to check.
fn input_error(e: Error) -> Error {
    match e {
        Error::Store { url, source } => Error::InputStore { url, source },
        e => e,
    }
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

// ---- The layout's rules, one set for a folder and a bucket ---------------

/// The source folder a VM folder's entry `name` is.
fn kind_of(name: &str) -> Option<SourceKind> {
    match name {
        "cliproxy" => Some(SourceKind::Cliproxy),
        "resources" => Some(SourceKind::Resources),
        "commands" => Some(SourceKind::Commands),
        _ => None,
    }
}

fn ignored(segs: &[&str], reason: impl Into<String>, attention: bool) -> Ignored {
    Ignored {
        path: segs.join("/"),
        reason: reason.into(),
        attention,
    }
}

/// Why the folder at `segs` (its path below the input) is not entered, or
/// `None` to go in.
fn folder_rule(segs: &[&str]) -> Option<Ignored> {
    let name = segs.last()?;
    if name.starts_with('.') {
        return Some(ignored(segs, "hidden", false));
    }
    match segs.len() {
        1 if !valid_id(name) => Some(ignored(
            segs,
            "directory name is not a valid VM id (1-64 of A-Z a-z 0-9 . _ -)",
            true,
        )),
        2 if kind_of(name).is_none() => Some(ignored(
            segs,
            "not cliproxy/, resources/ or commands/",
            false,
        )),
        // <vm>/<kind>/ is walked at depth 0.
        n if n > 2 + 16 => Some(ignored(segs, "nested deeper than 16 levels", true)),
        _ => None,
    }
}

/// What the layout makes of a file.
enum FileRule {
    /// `customers.csv`, `users.csv` or `contracts.toml`, read on their own.
    Registry,
    Input {
        vm_id: String,
        kind: SourceKind,
    },
    Ignored(Ignored),
}

/// The file at `segs`, in folders [`folder_rule`] let in.
fn file_rule(segs: &[&str]) -> FileRule {
    let name = segs.last().copied().unwrap_or_default();
    if name.starts_with('.') {
        return FileRule::Ignored(ignored(segs, "hidden", false));
    }
    match segs {
        [] => FileRule::Ignored(ignored(segs, "empty name", true)),
        ["customers.csv" | "users.csv" | "contracts.toml"] => FileRule::Registry,
        [_] => FileRule::Ignored(ignored(segs, "not part of the input layout", false)),
        [_, sub] if kind_of(sub).is_some() => {
            FileRule::Ignored(ignored(segs, "a file, not a folder", true))
        }
        [_, _] => FileRule::Ignored(ignored(
            segs,
            "not cliproxy/, resources/ or commands/",
            false,
        )),
        [vm, sub, ..] => {
            let kind = kind_of(sub).expect("folder_rule lets in source folders only");
            if accepted(kind, name) {
                FileRule::Input {
                    vm_id: vm.to_string(),
                    kind,
                }
            } else {
                let wanted = match kind {
                    SourceKind::Cliproxy => "*.log or *.jsonl",
                    SourceKind::Resources => "*.csv, *.jsonl or *.influx",
                    SourceKind::Commands => "*.jsonl",
                };
                FileRule::Ignored(ignored(segs, format!("not a {wanted} file"), false))
            }
        }
    }
}

/// Adds the file at `segs` to the discovery as the rules say.
fn add_file(
    d: &mut Discovery,
    segs: &[&str],
    path: PathBuf,
    modified: Option<SystemTime>,
    size: u64,
) {
    match file_rule(segs) {
        FileRule::Registry => {}
        FileRule::Ignored(i) => d.ignored.push(i),
        FileRule::Input { vm_id, kind } => {
            let name = segs.last().copied().unwrap_or_default();
            d.files.push(InputFile {
                path,
                rel: segs.join("/"),
                vm_id,
                kind,
                gz: name.ends_with(".gz"),
                modified,
                size,
            });
        }
    }
}

// ---- A local folder --------------------------------------------------------

/// The entries of a directory, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    let mut entries = std::fs::read_dir(dir)
        .read_ctx(dir)?
        .collect::<io::Result<Vec<_>>>()
        .read_ctx(dir)?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// Walks the folder `dir` (at `segs` below the input), entering only the
/// folders the rules let in.
fn walk(dir: &Path, segs: &mut Vec<String>, d: &mut Discovery) -> Result<()> {
    for entry in sorted_entries(dir)? {
        segs.push(entry.file_name().to_string_lossy().into_owned());
        let names: Vec<&str> = segs.iter().map(String::as_str).collect();
        let path = entry.path();
        match std::fs::metadata(&path) {
            Err(e) => d
                .ignored
                .push(ignored(&names, format!("cannot stat: {e}"), true)),
            Ok(meta) if meta.is_dir() => match folder_rule(&names) {
                Some(i) => d.ignored.push(i),
                None => walk(&path, segs, d)?,
            },
            Ok(meta) => add_file(d, &names, path, meta.modified().ok(), meta.len()),
        }
        segs.pop();
    }
    Ok(())
}

// ---- A bucket prefix -------------------------------------------------------

/// One recursive listing of the store's prefix, through the same rules:
/// an object's folders are the `/`-separated segments of its key.
fn list_remote(store: &Store, d: &mut Discovery) -> Result<()> {
    let mut objects = store.list_objects("").map_err(input_error)?;
    if objects.is_empty() {
        return Err(Error::NoInputObjects {
            url: store.url().to_string(),
        });
    }
    objects.sort_by(|a, b| a.key.split('/').cmp(b.key.split('/')));
    // Folder markers (empty objects named like a folder some tools create)
    // are the folder itself, which the keys below it already describe.
    let is_marker = |i: usize| {
        objects
            .get(i + 1)
            .is_some_and(|next| next.key.starts_with(&format!("{}/", objects[i].key)))
    };
    for (i, object) in objects.iter().enumerate() {
        if is_marker(i) {
            continue;
        }
        let segs: Vec<&str> = object.key.split('/').collect();
        // The first folder on the way down that the rules refuse, once.
        let refused = (1..segs.len()).find_map(|n| folder_rule(&segs[..n]));
        match refused {
            Some(i) => {
                if d.ignored.last() != Some(&i) {
                    d.ignored.push(i);
                }
            }
            None => add_file(
                d,
                &segs,
                PathBuf::from(store.object_url(&object.key)),
                Some(SystemTime::from(object.last_modified)),
                object.size,
            ),
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
    /// Opens `f` of `root`, gunzipping a `.gz` file as it streams.
    pub fn open(file: usize, root: &InputRoot, f: &InputFile) -> io::Result<BlockReader> {
        let handle = root.open_file(f)?;
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

    /// The tree of `files` in a folder and in a store.
    fn both_roots(files: &[(&str, &[u8])]) -> (tempfile::TempDir, InputRoot, InputRoot) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_memory().unwrap();
        for (rel, bytes) in files {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
            store.put(rel, bytes.to_vec()).unwrap();
        }
        let local = InputRoot::local(dir.path());
        (dir, local, InputRoot::remote(store))
    }

    /// What a discovery says, but where the bytes are and when written.
    fn summary(d: &Discovery) -> (Vec<String>, Vec<Ignored>) {
        let files = d
            .files
            .iter()
            .map(|f| format!("{} {} {:?} gz={} {}", f.rel, f.vm_id, f.kind, f.gz, f.size))
            .collect();
        (files, d.ignored.clone())
    }

    #[test]
    fn a_folder_and_a_bucket_with_the_same_files_discover_the_same() {
        let deep = format!("vm-1/commands/{}h.jsonl", "d/".repeat(17));
        let files: Vec<(&str, &[u8])> = vec![
            ("customers.csv", b"c"),
            ("users.csv", b"u"),
            ("contracts.toml", b"t"),
            ("README.md", b"r"),
            (".hidden/x.log", b"h"),
            ("bad vm/cliproxy/a.log", b"b"),
            ("vm-1/cliproxy/main.log", b"12"),
            ("vm-1/cliproxy/usage.jsonl.2.gz", b"123"),
            ("vm-1/cliproxy/.tmp.log", b"t"),
            ("vm-1/cliproxy/notes.txt", b"n"),
            ("vm-1/cliproxy/reshipped/usage.jsonl.4.gz", b"1234"),
            ("vm-1/cliproxy/.git/objects/ab", b"g"),
            ("vm-1/cliproxy/.git/HEAD", b"g"),
            ("vm-1/resources/metrics.csv", b"m"),
            ("vm-1/resources-old/metrics.csv", b"m"),
            ("vm-1/other/x.log", b"o"),
            ("vm-1/notes.txt", b"n"),
            ("vm-1/commands/history.jsonl", b"h"),
            ("vm-1/commands/a-b.jsonl", b"h"),
            ("vm-1/commands/a/b.jsonl", b"h"),
            (&deep, b"deep"),
            ("vm-2/resources/telegraf.influx.gz", b"i"),
        ];
        let (_dir, local, remote) = both_roots(&files);
        let (l, r) = (local.discover().unwrap(), remote.discover().unwrap());
        assert_eq!(summary(&l), summary(&r));
        let (found, ignored) = summary(&l);
        assert_eq!(
            found,
            [
                "vm-1/cliproxy/main.log vm-1 Cliproxy gz=false 2",
                "vm-1/cliproxy/reshipped/usage.jsonl.4.gz vm-1 Cliproxy gz=true 4",
                "vm-1/cliproxy/usage.jsonl.2.gz vm-1 Cliproxy gz=true 3",
                "vm-1/commands/a-b.jsonl vm-1 Commands gz=false 1",
                "vm-1/commands/a/b.jsonl vm-1 Commands gz=false 1",
                "vm-1/commands/history.jsonl vm-1 Commands gz=false 1",
                "vm-1/resources/metrics.csv vm-1 Resources gz=false 1",
                "vm-2/resources/telegraf.influx.gz vm-2 Resources gz=true 1",
            ]
        );
        let ignored: Vec<(&str, &str)> = ignored
            .iter()
            .map(|i| (i.path.as_str(), i.reason.as_str()))
            .collect();
        let deep_dir = format!("vm-1/commands/{}", ["d"; 17].join("/"));
        assert_eq!(
            ignored,
            [
                (".hidden", "hidden"),
                ("README.md", "not part of the input layout"),
                (
                    "bad vm",
                    "directory name is not a valid VM id (1-64 of A-Z a-z 0-9 . _ -)"
                ),
                ("vm-1/cliproxy/.git", "hidden"),
                ("vm-1/cliproxy/.tmp.log", "hidden"),
                ("vm-1/cliproxy/notes.txt", "not a *.log or *.jsonl file"),
                (deep_dir.as_str(), "nested deeper than 16 levels"),
                ("vm-1/notes.txt", "not cliproxy/, resources/ or commands/"),
                ("vm-1/other", "not cliproxy/, resources/ or commands/"),
                (
                    "vm-1/resources-old",
                    "not cliproxy/, resources/ or commands/"
                ),
            ]
        );
        // Remote files are named by their URL, for messages.
        assert_eq!(
            r.files[0].path.to_str(),
            Some("memory://vm-1/cliproxy/main.log")
        );
    }

    #[test]
    fn an_input_is_a_folder_a_file_url_or_a_store_url() {
        let (dir, local, _) = both_roots(&[("vm-1/commands/h.jsonl", b"{}\n")]);
        let file_url = format!("file://{}", dir.path().display());
        for input in [dir.path().display().to_string(), file_url] {
            let root = InputRoot::open(Path::new(&input)).unwrap();
            assert!(
                matches!(&root.root, Root::Local(p) if p == dir.path()),
                "{input}"
            );
            assert_eq!(
                summary(&root.discover().unwrap()),
                summary(&local.discover().unwrap())
            );
        }
        for missing in ["/nonexistent/input", "file:///nonexistent/input"] {
            let err = InputRoot::open(Path::new(missing)).unwrap_err();
            assert!(
                matches!(&err, Error::NoInput { path } if path == Path::new(missing)),
                "{err}"
            );
        }
        // Opening a store contacts nothing.
        let root = InputRoot::open(Path::new("s3://bucket/raw/")).unwrap();
        assert_eq!(
            root.location("vm-1/cliproxy/usage.jsonl").to_str(),
            Some("s3://bucket/raw/vm-1/cliproxy/usage.jsonl")
        );
        let err = InputRoot::open(Path::new("ftp://host/raw")).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
    }

    #[test]
    fn an_empty_prefix_is_an_error_naming_it() {
        let root = InputRoot::remote(Store::in_memory().unwrap());
        let err = root.discover().unwrap_err();
        assert!(
            matches!(&err, Error::NoInputObjects { url } if url == "memory://"),
            "{err}"
        );
    }

    #[test]
    fn folder_markers_are_not_files() {
        let (_dir, _, remote) = both_roots(&[("vm-1/cliproxy/main.log", b"x\n")]);
        let Root::Remote(store) = &remote.root else {
            unreachable!()
        };
        // What some tools leave for an empty folder: an object named like it.
        store.put("vm-1/cliproxy/", Vec::new()).unwrap();
        store.put("vm-1", Vec::new()).unwrap();
        let d = remote.discover().unwrap();
        assert_eq!(d.files.len(), 1);
        assert_eq!(d.ignored, []);
    }

    #[test]
    fn a_remote_object_reads_back_in_ranges_through_gunzip() {
        use std::io::Write;
        let text: String = (0..5000)
            .map(|i| format!("{{\"n\":{i},\"pad\":\"{:x}\"}}\n", i * 7919))
            .collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let (_dir, _, remote) = both_roots(&[
            ("vm-1/commands/h.jsonl.1.gz", &gz),
            ("vm-1/commands/h.jsonl", text.as_bytes()),
        ]);
        // Ranges far smaller than the object, and not a divisor of it.
        let remote = remote.with_range_size(1000 + 7);
        let d = remote.discover().unwrap();
        assert!(d.files.iter().all(|f| f.size > 3 * 1007), "{:?}", d.files);
        for (i, f) in d.files.iter().enumerate() {
            let mut reader = BlockReader::open(i, &remote, f)
                .unwrap()
                .with_block_size(4096);
            let mut read = Vec::new();
            while let Some(block) = reader.next_block() {
                read.extend(block.data);
            }
            assert_eq!(reader.error, None, "{}", f.rel);
            assert_eq!(reader.lines_read, 5000, "{}", f.rel);
            assert!(read == text.as_bytes(), "{}", f.rel);
        }
    }

    #[test]
    fn a_vanished_object_is_a_read_error_naming_its_url() {
        let (_dir, _, remote) = both_roots(&[("vm-1/commands/h.jsonl", b"{}\n{}\n")]);
        let d = remote.discover().unwrap();
        let Root::Remote(store) = &remote.root else {
            unreachable!()
        };
        // Replaced by a shorter object after the listing.
        store.put("vm-1/commands/h.jsonl", b"{".to_vec()).unwrap();
        let mut reader = BlockReader::open(0, &remote, &d.files[0]).unwrap();
        while reader.next_block().is_some() {}
        let error = reader.error.unwrap_or_default();
        assert!(error.contains("memory://vm-1/commands/h.jsonl"), "{error}");
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
