//! The layers, kept honest by reading the source text.
//!
//! Each top-level module of the library (a unit) may name only itself, the
//! crate root and the units [`LAYERS`] allows it; no two module files may
//! name each other in a loop; and the model does no IO outside its tests.
//! Every `crate`, `super` and `self` path in `pipeline/**/*.rs` counts, in
//! code, docs and comments alike (only string literals are skipped): it is
//! resolved against the module files on disk, and every break is reported
//! with its file and line.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::Path;

/// In [`LAYERS`], a unit that may import every other one.
const ANY: &str = "*";

/// The unit of the crate root, `lib.rs` (a keyword, so never a module name).
const ROOT: &str = "crate";

/// The architecture, lowest layer first: (unit, what it holds, the units it
/// may import). A unit may always name itself and the crate root.
#[rustfmt::skip]
const LAYERS: &[(&str, &str, &str)] = &[
    ("model",  "ids, redaction, time, pricing, registry, config, ctx, errors, StageReport", ""),
    ("load",   "reads the model's files from disk",                                         "model"),
    ("lake",   "lake, output store, tables, fault hook, compaction, erasure, retention",    "model load"),
    ("ingest", "stage 1: raw input (source, parse) -> the lake's events",                   "model load lake"),
    ("rollup", "stage 2: the lake's events -> priced aggregates",                           "model load lake"),
    ("bill",   "stage 3: aggregates -> invoices and Stripe payloads, a revision",           "model load lake rollup"),
    ("read",   "query, explain, overview, reconcile, silent",                               "model load lake ingest rollup bill"),
    ("cron",   "nightly, monthly, rerun, pipeline; alerts, stripe",                         "model load lake ingest rollup bill read"),
    ("sample", "the sample generator, a tool beside the pipeline",                          "model"),
    (ROOT,     "lib.rs, the crate root",                                                    ANY),
    ("layers", "this test",                                                                 ANY),
];

/// Names that start IO in the model layer's code.
const IO: &[&str] = &[
    "std::fs",
    "std::net",
    "Command::new",
    "fs::",
    "File::",
    "OpenOptions",
];

/// Every problem in the tree (`path under pipeline/ -> source text`): layer
/// breaks, units in no layer, paths above the crate root, import loops
/// between module files and IO in the model.
fn check(files: &BTreeMap<String, String>) -> Vec<String> {
    let sources = lex(files);
    let mut problems = unknown_units(&sources);
    let references = references(&sources, &mut problems);
    problems.extend(layer_breaks(&references));
    problems.extend(import_loops(&references));
    problems.extend(model_io(&sources));
    problems
}

/// The full report: the problems, one per line, then the rules.
fn report(problems: &[String]) -> String {
    let mut out = problems.join("\n");
    out.push_str(
        "\n\nThe layers (a unit may import itself, the crate root and the units listed):\n",
    );
    for (unit, what, allowed) in LAYERS {
        let allowed = if allowed.is_empty() {
            "(nothing)"
        } else {
            allowed
        };
        let _ = writeln!(out, "    {unit:<7} {allowed:<40} {what}");
    }
    out
}

// ---- Lexing -------------------------------------------------------------

/// One source file, lexed.
struct Source<'a> {
    /// Its path under `pipeline/`, with `/` separators.
    file: &'a str,
    /// The module the file is (empty for the crate root).
    module: Vec<String>,
    /// The text with string and char literals blanked, newlines kept.
    scan: Vec<u8>,
    /// `scan` with the comments blanked too: the code alone.
    code: Vec<u8>,
    /// The byte offset of each line's start.
    lines: Vec<usize>,
    /// Inline `mod name { .. }` blocks: (open brace, close brace, name).
    inline: Vec<(usize, usize, String)>,
}

impl<'a> Source<'a> {
    fn new(file: &'a str, text: &str) -> Self {
        let (scan, code) = mask(text.as_bytes());
        let newlines = text.bytes().enumerate().filter(|&(_, b)| b == b'\n');
        let lines = std::iter::once(0)
            .chain(newlines.map(|(at, _)| at + 1))
            .collect();
        let inline = inline_modules(&code);
        let module = file_module(file);
        Self {
            file,
            module,
            scan,
            code,
            lines,
            inline,
        }
    }

    /// The 1-based line holding byte `at`.
    fn line(&self, at: usize) -> usize {
        self.lines.partition_point(|&start| start <= at)
    }

    /// The module that byte `at` is in, inline modules included.
    fn module_at(&self, at: usize) -> Vec<String> {
        let inline = self
            .inline
            .iter()
            .filter(|(open, close, _)| *open < at && at < *close);
        let mut module = self.module.clone();
        module.extend(inline.map(|(_, _, name)| name.clone()));
        module
    }

    fn unit(&self) -> &str {
        unit_of(&self.module)
    }
}

fn lex(files: &BTreeMap<String, String>) -> Vec<Source<'_>> {
    files
        .iter()
        .filter(|(file, _)| file.ends_with(".rs"))
        .map(|(file, text)| Source::new(file, text))
        .collect()
}

/// `lib.rs` -> the root, `bill/mod.rs` -> `bill`, `bill/diff.rs` -> `bill::diff`.
fn file_module(file: &str) -> Vec<String> {
    let stem = file.strip_suffix(".rs").unwrap_or(file);
    let stem = stem.strip_suffix("/mod").unwrap_or(stem);
    if stem == "lib" {
        return Vec::new();
    }
    stem.split('/').map(String::from).collect()
}

fn unit_of(module: &[String]) -> &str {
    module.first().map_or(ROOT, String::as_str)
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        ROOT.to_string()
    } else {
        module.join("::")
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Two copies of `src`: with the string and char literals blanked, and with
/// the comments blanked as well. Newlines stay, so offsets and lines hold.
fn mask(src: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut scan = src.to_vec();
    let mut code = src.to_vec();
    let mut at = 0;
    while at < src.len() {
        let next = src.get(at + 1).copied();
        let literal = match src[at] {
            b'"' => Some(string_end(src, at + 1)),
            b'r' => raw_string_hashes(src, at).map(|hashes| raw_string_end(src, at, hashes)),
            b'\'' => char_end(src, at),
            _ => None,
        };
        let (end, comment) = match (src[at], next, literal) {
            (_, _, Some(end)) => (end, false),
            (b'/', Some(b'/'), _) => (find(src, at, b"\n").unwrap_or(src.len()), true),
            (b'/', Some(b'*'), _) => (block_comment_end(src, at), true),
            _ => {
                at += 1;
                continue;
            }
        };
        blank(&mut code[at..end]);
        if !comment {
            blank(&mut scan[at..end]);
        }
        at = end;
    }
    (scan, code)
}

fn blank(bytes: &mut [u8]) {
    for b in bytes.iter_mut().filter(|b| **b != b'\n') {
        *b = b' ';
    }
}

/// The first `needle` at or after `from`.
fn find(src: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let rest = src.get(from..)?;
    rest.windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The end of a (nested) block comment starting at `start`.
fn block_comment_end(src: &[u8], start: usize) -> usize {
    let mut depth = 0;
    let mut at = start;
    while at + 1 < src.len() {
        match &src[at..at + 2] {
            b"/*" => depth += 1,
            b"*/" => depth -= 1,
            _ => {
                at += 1;
                continue;
            }
        }
        at += 2;
        if depth == 0 {
            return at;
        }
    }
    src.len()
}

/// The end of a string whose body starts at `body`, escapes honoured.
fn string_end(src: &[u8], body: usize) -> usize {
    let mut at = body;
    while at < src.len() {
        match src[at] {
            b'\\' => at += 2,
            b'"' => return at + 1,
            _ => at += 1,
        }
    }
    src.len()
}

/// The number of `#` if `r` at `at` starts a raw string (`r"`, `br#"`, ..).
fn raw_string_hashes(src: &[u8], at: usize) -> Option<usize> {
    let word_start = match at.checked_sub(1).map(|p| src[p]) {
        None => true,
        Some(b'b' | b'c') => at < 2 || !is_ident(src[at - 2]),
        Some(before) => !is_ident(before),
    };
    let hashes = src[at + 1..].iter().take_while(|&&b| b == b'#').count();
    (word_start && src.get(at + 1 + hashes) == Some(&b'"')).then_some(hashes)
}

fn raw_string_end(src: &[u8], at: usize, hashes: usize) -> usize {
    let mut close = vec![b'"'];
    close.resize(hashes + 1, b'#');
    find(src, at + 2 + hashes, &close).map_or(src.len(), |end| end + close.len())
}

/// The end of a char literal at `at`; `None` for a lifetime or a label.
fn char_end(src: &[u8], at: usize) -> Option<usize> {
    match *src.get(at + 1)? {
        b'\\' => {
            let close = at
                + 3
                + src
                    .get(at + 3..)?
                    .iter()
                    .position(|&b| b == b'\'' || b == b'\n')?;
            (src[close] == b'\'').then_some(close + 1)
        }
        b'\'' => None,
        first => {
            let width = match first {
                0..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            (src.get(at + 1 + width) == Some(&b'\'')).then_some(at + 2 + width)
        }
    }
}

/// The inline `mod name { .. }` blocks of the code, outermost first.
fn inline_modules(code: &[u8]) -> Vec<(usize, usize, String)> {
    let mut open = Vec::new();
    let mut blocks = Vec::new();
    for (at, &b) in code.iter().enumerate() {
        match b {
            b'{' => open.push((at, mod_name_before(code, at))),
            b'}' => {
                if let Some((start, Some(name))) = open.pop() {
                    blocks.push((start, at, name));
                }
            }
            _ => {}
        }
    }
    blocks.sort();
    blocks
}

/// `name` when the brace at `brace` follows `mod name`.
fn mod_name_before(code: &[u8], brace: usize) -> Option<String> {
    let (name, start) = word_before(code, brace)?;
    let (keyword, _) = word_before(code, start)?;
    (keyword == "mod").then(|| name.to_string())
}

/// The word ending just before `end` (blanks skipped), and where it starts.
fn word_before(code: &[u8], end: usize) -> Option<(&str, usize)> {
    let end = code[..end].trim_ascii_end().len();
    let start = code[..end]
        .iter()
        .rposition(|&b| !is_ident(b))
        .map_or(0, |p| p + 1);
    let word = std::str::from_utf8(&code[start..end]).ok()?;
    (!word.is_empty()).then_some((word, start))
}

// ---- Paths --------------------------------------------------------------

struct Cursor<'t> {
    text: &'t [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        let found = self
            .text
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(token.as_bytes()));
        if found {
            self.pos += token.len();
        }
        found
    }

    fn ident(&mut self) -> Option<String> {
        let start = self.pos;
        if !self
            .peek()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        {
            return None;
        }
        while self.peek().is_some_and(is_ident) {
            self.pos += 1;
        }
        Some(String::from_utf8_lossy(&self.text[start..self.pos]).into_owned())
    }
}

/// One path as written (a leaf of a group is a path of its own).
struct Written {
    segments: Vec<String>,
    /// Where the leaf starts in the text, for its line.
    at: usize,
}

/// Where one of `words` starts a path: a whole word followed by `::`, not
/// `$crate`.
fn path_heads(text: &[u8], words: &[&str]) -> Vec<usize> {
    let mut heads = Vec::new();
    let mut at = 0;
    while at < text.len() {
        if !is_ident(text[at]) {
            at += 1;
            continue;
        }
        let start = at;
        while at < text.len() && is_ident(text[at]) {
            at += 1;
        }
        let word = &text[start..at];
        let followed = text[at..].trim_ascii_start().starts_with(b"::");
        let macro_crate = text[..start].ends_with(b"$");
        if followed && !macro_crate && words.iter().any(|w| w.as_bytes() == word) {
            heads.push(start);
        }
    }
    heads
}

/// Whether the head at `at` starts a path of its own: not the tail of a
/// longer path, not a `pub(in ..)` restriction.
fn starts_path(text: &[u8], at: usize) -> bool {
    let before = text[..at].trim_ascii_end();
    let restriction = before
        .strip_suffix(b"in")
        .is_some_and(|b| b.trim_ascii_end().ends_with(b"("));
    !before.ends_with(b"::") && !restriction
}

/// The paths written from the head at `head`: one, or one per group leaf.
fn paths_at(text: &[u8], head: usize) -> Vec<Written> {
    let mut cursor = Cursor { text, pos: head };
    let mut out = Vec::new();
    if let Some(first) = cursor.ident() {
        tail(&mut cursor, vec![first], head, &mut out);
    }
    out
}

fn tail(cursor: &mut Cursor, mut segments: Vec<String>, at: usize, out: &mut Vec<Written>) {
    loop {
        let before = cursor.pos;
        cursor.skip_blanks();
        if !cursor.eat("::") {
            cursor.pos = before;
            break;
        }
        cursor.skip_blanks();
        if cursor.eat("{") {
            group(cursor, &segments, out);
            return;
        }
        match cursor.ident() {
            Some(segment) => segments.push(segment),
            None => break,
        }
    }
    out.push(Written { segments, at });
}

/// The leaves of `{a::b, c::{d, self}, *}` after `prefix::`.
fn group(cursor: &mut Cursor, prefix: &[String], out: &mut Vec<Written>) {
    loop {
        cursor.skip_blanks();
        let at = cursor.pos;
        if cursor.eat("}") {
            return;
        }
        if cursor.eat(",") {
            continue;
        }
        if cursor.eat("{") {
            group(cursor, prefix, out);
            continue;
        }
        if cursor.eat("*") {
            out.push(Written {
                segments: prefix.to_vec(),
                at,
            });
            continue;
        }
        let Some(segment) = cursor.ident() else {
            return;
        };
        if segment == "self" {
            out.push(Written {
                segments: prefix.to_vec(),
                at,
            });
        } else {
            let mut segments = prefix.to_vec();
            segments.push(segment);
            tail(cursor, segments, at, out);
        }
        skip_rename(cursor);
    }
}

fn skip_rename(cursor: &mut Cursor) {
    let before = cursor.pos;
    cursor.skip_blanks();
    if cursor.ident().as_deref() == Some("as") {
        cursor.skip_blanks();
        cursor.ident();
    } else {
        cursor.pos = before;
    }
}

/// The deepest module file that `segments`, written in module `from`,
/// reaches; an error when `super` climbs above the crate root.
fn resolve(
    from: &[String],
    segments: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Result<Vec<String>, String> {
    let mut module: Vec<&str> = from.iter().map(String::as_str).collect();
    let mut rest = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        match segment.as_str() {
            "crate" if i == 0 => module.clear(),
            "self" if i == 0 => {}
            "super" if rest.is_empty() => {
                if module.pop().is_none() {
                    return Err("super:: climbs above the crate root".to_string());
                }
            }
            _ => rest.push(segment.as_str()),
        }
    }
    let mut target = Vec::new();
    for segment in module.into_iter().chain(rest) {
        target.push(segment.to_string());
        if !modules.contains(&target) {
            target.pop();
            break;
        }
    }
    Ok(target)
}

/// A resolved path.
struct Reference<'a> {
    source: &'a Source<'a>,
    line: usize,
    written: String,
    /// The module file it names (empty for the crate root).
    target: Vec<String>,
}

/// Every `crate`, `super` and `self` path of the tree, resolved; paths that
/// climb above the root go to `problems`.
fn references<'a>(sources: &'a [Source<'a>], problems: &mut Vec<String>) -> Vec<Reference<'a>> {
    let mut modules: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    modules.insert(Vec::new());
    let mut found = Vec::new();
    for source in sources {
        let heads = path_heads(&source.scan, &["crate", "super", "self"]);
        for head in heads.into_iter().filter(|&h| starts_path(&source.scan, h)) {
            let in_code = source.code[head] == source.scan[head];
            let text = if in_code { &source.code } else { &source.scan };
            let from = source.module_at(head);
            for path in paths_at(text, head) {
                let written = path.segments.join("::");
                let line = source.line(path.at);
                match resolve(&from, &path.segments, &modules) {
                    Ok(target) => found.push(Reference {
                        source,
                        line,
                        written,
                        target,
                    }),
                    Err(why) => problems.push(format!(
                        "pipeline/{}:{line}: {why} ({written})",
                        source.file
                    )),
                }
            }
        }
    }
    found
}

// ---- Check 1: layers ----------------------------------------------------

/// The units `unit` may import, `None` when it is in no layer.
fn allowed(unit: &str) -> Option<Vec<&'static str>> {
    let (_, _, allowed) = LAYERS.iter().find(|(name, ..)| *name == unit)?;
    Some(allowed.split_whitespace().collect())
}

fn unknown_units(sources: &[Source]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    sources
        .iter()
        .filter(|s| allowed(s.unit()).is_none() && seen.insert(s.unit()))
        .map(|s| {
            format!(
                "pipeline/{}: unit `{}` is in no layer: add it to LAYERS in layers.rs",
                s.file,
                s.unit()
            )
        })
        .collect()
}

fn layer_breaks(references: &[Reference]) -> Vec<String> {
    let breaks = references.iter().filter_map(|r| {
        let from = r.source.unit();
        let to = unit_of(&r.target);
        let allowed = allowed(from)?;
        let ok =
            to == from || r.target.is_empty() || allowed.contains(&ANY) || allowed.contains(&to);
        let file = r.source.file;
        (!ok).then(|| {
            format!(
                "pipeline/{file}:{}: {from} imports {to} ({})",
                r.line, r.written
            )
        })
    });
    breaks.collect()
}

// ---- Check 2: no import loops between module files ----------------------

type Edges<'r> = BTreeMap<(&'r [String], &'r [String]), &'r Reference<'r>>;

fn import_loops(references: &[Reference]) -> Vec<String> {
    let mut edges: Edges = BTreeMap::new();
    let mut next: BTreeMap<&[String], BTreeSet<&[String]>> = BTreeMap::new();
    for r in references {
        let (from, to) = (r.source.module.as_slice(), r.target.as_slice());
        if !from.starts_with(to) && !to.starts_with(from) {
            edges.entry((from, to)).or_insert(r);
            next.entry(from).or_default().insert(to);
        }
    }
    let mut reported = BTreeSet::new();
    let mut problems = Vec::new();
    for &start in next.keys() {
        if reported.contains(start) {
            continue;
        }
        let Some(cycle) = shortest_cycle(start, &next) else {
            continue;
        };
        let ahead = reachable(start, &next);
        let tangle: Vec<&[String]> = ahead
            .into_iter()
            .filter(|m| reachable(m, &next).contains(start))
            .collect();
        problems.push(describe_loop(&cycle, &tangle, &edges));
        reported.extend(tangle);
    }
    problems
}

fn reachable<'m>(
    start: &'m [String],
    next: &BTreeMap<&'m [String], BTreeSet<&'m [String]>>,
) -> BTreeSet<&'m [String]> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![start];
    while let Some(module) = todo.pop() {
        for &to in next.get(module).into_iter().flatten() {
            if seen.insert(to) {
                todo.push(to);
            }
        }
    }
    seen
}

/// The shortest loop from `start` back to itself: `[start, .., start]`.
fn shortest_cycle<'m>(
    start: &'m [String],
    next: &BTreeMap<&'m [String], BTreeSet<&'m [String]>>,
) -> Option<Vec<&'m [String]>> {
    let mut came_from: BTreeMap<&[String], &[String]> = BTreeMap::new();
    let mut todo = VecDeque::from([start]);
    while let Some(module) = todo.pop_front() {
        for &to in next.get(module).into_iter().flatten() {
            if came_from.contains_key(to) {
                continue;
            }
            came_from.insert(to, module);
            if to == start {
                let mut cycle = vec![start];
                let mut at = module;
                while at != start {
                    cycle.push(at);
                    at = came_from[at];
                }
                cycle.push(start);
                cycle.reverse();
                return Some(cycle);
            }
            todo.push_back(to);
        }
    }
    None
}

fn describe_loop(cycle: &[&[String]], tangle: &[&[String]], edges: &Edges) -> String {
    let names: Vec<String> = cycle.iter().map(|m| name(m)).collect();
    let mut out = format!("import loop between module files: {}", names.join(" -> "));
    for pair in cycle.windows(2) {
        let r = edges[&(pair[0], pair[1])];
        let _ = write!(
            out,
            "\n    pipeline/{}:{} -> {} ({})",
            r.source.file,
            r.line,
            name(pair[1]),
            r.written
        );
    }
    if tangle.len() + 1 > cycle.len() {
        let names: Vec<String> = tangle.iter().map(|m| name(m)).collect();
        let _ = write!(
            out,
            "\n    (more loops tie these files together: {})",
            names.join(", ")
        );
    }
    out
}

// ---- Check 3: the model does no IO --------------------------------------

fn model_io(sources: &[Source]) -> Vec<String> {
    let test_only = test_only_modules(sources);
    sources
        .iter()
        .filter(|s| s.unit() == "model" && !test_only.iter().any(|t| s.module.starts_with(t)))
        .flat_map(io_lines)
        .collect()
}

fn io_lines(source: &Source) -> Vec<String> {
    let tests = cfg_test_items(&source.code);
    let mut found: BTreeMap<usize, String> = BTreeMap::new();
    let mut note = |at: usize, what: String| {
        if !tests
            .iter()
            .any(|(start, end)| (*start..*end).contains(&at))
        {
            found.entry(source.line(at)).or_insert(what);
        }
    };
    for word in IO {
        for at in word_starts(&source.code, word) {
            note(at, word.to_string());
        }
    }
    for head in path_heads(&source.code, &["std"]) {
        for path in paths_at(&source.code, head) {
            if matches!(path.segments.get(1).map(String::as_str), Some("fs" | "net")) {
                note(path.at, path.segments.join("::"));
            }
        }
    }
    let file = source.file;
    let io = found.into_iter();
    io.map(|(line, what)| {
        format!("pipeline/{file}:{line}: the model layer does IO ({what}): move it to `load`")
    })
    .collect()
}

/// Where `word` occurs, not preceded by an identifier character.
fn word_starts(text: &[u8], word: &str) -> Vec<usize> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = find(text, from, word.as_bytes()) {
        if at == 0 || !is_ident(text[at - 1]) {
            found.push(at);
        }
        from = at + 1;
    }
    found
}

/// The byte ranges of the items under `#[cfg(test)]` (the whole file for
/// `#![cfg(test)]`).
fn cfg_test_items(code: &[u8]) -> Vec<(usize, usize)> {
    let mut items = Vec::new();
    for (at, _) in code.iter().enumerate().filter(|&(_, &b)| b == b'#') {
        let mut cursor = Cursor {
            text: code,
            pos: at + 1,
        };
        let inner = cursor.eat("!");
        let cfg_test = ["[", "cfg", "(", "test", ")", "]"].iter().all(|token| {
            cursor.skip_blanks();
            cursor.eat(token)
        });
        if cfg_test {
            items.push(if inner {
                (0, code.len())
            } else {
                (at, item_end(code, cursor.pos))
            });
        }
    }
    items
}

/// The end of the item starting at `from`: its `;` or its closing brace.
fn item_end(code: &[u8], from: usize) -> usize {
    let mut depth = 0;
    for (at, &b) in code.iter().enumerate().skip(from) {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' => depth -= 1,
            b'}' => {
                depth -= 1;
                if depth <= 0 {
                    return at + 1;
                }
            }
            b';' if depth == 0 => return at + 1,
            _ => {}
        }
    }
    code.len()
}

/// The file modules declared as `#[cfg(test)] mod name;`.
fn test_only_modules(sources: &[Source]) -> Vec<Vec<String>> {
    let mut modules = Vec::new();
    for source in sources {
        for (start, end) in cfg_test_items(&source.code) {
            let item = String::from_utf8_lossy(&source.code[start..end]);
            let Some(declaration) = item.trim_end().strip_suffix(';') else {
                continue;
            };
            let words: Vec<&str> = declaration.split_whitespace().collect();
            if let [.., "mod", name] = words.as_slice()
                && !item.contains('{')
            {
                let mut module = source.module_at(start);
                module.push((*name).to_string());
                modules.push(module);
            }
        }
    }
    modules
}

// ---- Reading the tree ---------------------------------------------------

/// Every `.rs` file under `dir`, keyed by its path below it.
fn read_tree(dir: &Path, under: &str, files: &mut BTreeMap<String, String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = if under.is_empty() {
            name
        } else {
            format!("{under}/{name}")
        };
        if entry.file_type()?.is_dir() {
            read_tree(&entry.path(), &key, files)?;
        } else if key.ends_with(".rs") {
            files.insert(key, std::fs::read_to_string(entry.path())?);
        }
    }
    Ok(())
}

#[test]
fn layers_are_honest() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline");
    let mut files = BTreeMap::new();
    read_tree(&root, "", &mut files).expect("the library sources are readable");
    assert!(
        files.contains_key("lib.rs"),
        "no lib.rs under {}",
        root.display()
    );
    let problems = check(&files);
    assert!(
        problems.is_empty(),
        "{} layer problems:\n{}",
        problems.len(),
        report(&problems)
    );
}

// ---- The checks on small trees ------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree with every unit's root module, plus `extra`.
    fn tree(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let units = [
            "lib.rs",
            "model/mod.rs",
            "load.rs",
            "lake/mod.rs",
            "ingest/mod.rs",
        ];
        let more = [
            "rollup/mod.rs",
            "bill/mod.rs",
            "read/mod.rs",
            "cron/mod.rs",
            "sample.rs",
        ];
        let mut files: BTreeMap<String, String> = units
            .iter()
            .chain(&more)
            .map(|f| (f.to_string(), String::new()))
            .collect();
        files.extend(
            extra
                .iter()
                .map(|(f, text)| (f.to_string(), text.to_string())),
        );
        files
    }

    /// (line, path as written, target module) of every path in `file`.
    fn resolved(files: &BTreeMap<String, String>, file: &str) -> Vec<(usize, String, String)> {
        let sources = lex(files);
        let mut problems = Vec::new();
        let found = references(&sources, &mut problems);
        assert_eq!(problems, Vec::<String>::new());
        let mine = found.into_iter().filter(|r| r.source.file == file);
        mine.map(|r| (r.line, r.written, name(&r.target))).collect()
    }

    fn one(line: usize, written: &str, target: &str) -> (usize, String, String) {
        (line, written.to_string(), target.to_string())
    }

    #[test]
    fn use_line_crossing_a_layer_is_reported() {
        let files = tree(&[(
            "model/ids.rs",
            "//! Ids.\nuse crate::lake::Lake;\nuse crate::model::time;\n",
        )]);
        assert_eq!(
            check(&files),
            ["pipeline/model/ids.rs:2: model imports lake (crate::lake::Lake)"]
        );
    }

    #[test]
    fn inline_path_in_an_expression_is_reported() {
        let text = "impl crate::model::Ctx {\n    fn f() {\n        let x = crate::cron::run(1);\n    }\n}\n";
        let files = tree(&[("bill/mod.rs", text)]);
        assert_eq!(
            check(&files),
            ["pipeline/bill/mod.rs:3: bill imports cron (crate::cron::run)"]
        );
    }

    #[test]
    fn comment_and_doc_paths_count() {
        let text = "//! Feeds [`crate::read::query`].\n/// Like [`crate::bill`].\n// see crate::cron::alerts\nfn f() {}\n";
        let files = tree(&[
            ("rollup/mod.rs", text),
            ("read/query.rs", ""),
            ("cron/alerts.rs", ""),
        ]);
        assert_eq!(
            check(&files),
            [
                "pipeline/rollup/mod.rs:1: rollup imports read (crate::read::query)",
                "pipeline/rollup/mod.rs:2: rollup imports bill (crate::bill)",
                "pipeline/rollup/mod.rs:3: rollup imports cron (crate::cron::alerts)",
            ]
        );
    }

    #[test]
    fn super_in_an_inline_test_module_is_the_file_itself() {
        let text = "use super::store::Store;\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use self::helpers::x;\n}\n";
        let files = tree(&[("lake/compact.rs", text), ("lake/store.rs", "")]);
        assert_eq!(
            resolved(&files, "lake/compact.rs"),
            [
                one(1, "super::store::Store", "lake::store"),
                one(5, "super", "lake::compact"),
                one(6, "self::helpers::x", "lake::compact"),
            ]
        );
        assert_eq!(check(&files), Vec::<String>::new());
    }

    #[test]
    fn super_super_from_an_inline_module_climbs_one_file_up() {
        let text = "mod doc_tests {\n    fn t() {\n        let c = super::super::priced::COLUMNS;\n    }\n}\n";
        let files = tree(&[("rollup/aggregate.rs", text), ("rollup/priced.rs", "")]);
        assert_eq!(
            resolved(&files, "rollup/aggregate.rs"),
            [one(3, "super::super::priced::COLUMNS", "rollup::priced")]
        );
        let text = "#[cfg(test)]\nmod tests {\n    use super::super::super::cron::X;\n}\n";
        let files = tree(&[("model/ids.rs", text)]);
        assert_eq!(
            check(&files),
            ["pipeline/model/ids.rs:3: model imports cron (super::super::super::cron::X)"]
        );
    }

    #[test]
    fn grouped_imports_are_split_into_leaves() {
        let text = "use crate::{\n    lake::{self, store::Store as S},\n    model::ids,\n    cron::{alerts, *},\n};\n";
        let files = tree(&[
            ("rollup/mod.rs", text),
            ("lake/store.rs", ""),
            ("model/ids.rs", ""),
        ]);
        assert_eq!(
            resolved(&files, "rollup/mod.rs"),
            [
                one(2, "crate::lake", "lake"),
                one(2, "crate::lake::store::Store", "lake::store"),
                one(3, "crate::model::ids", "model::ids"),
                one(4, "crate::cron::alerts", "cron"),
                one(4, "crate::cron", "cron"),
            ]
        );
        assert_eq!(
            check(&files),
            [
                "pipeline/rollup/mod.rs:4: rollup imports cron (crate::cron::alerts)",
                "pipeline/rollup/mod.rs:4: rollup imports cron (crate::cron)",
            ]
        );
    }

    #[test]
    fn paths_in_string_literals_are_not_counted() {
        let text = r#"const A: &str = "crate::cron::x";
const B: &[u8] = b"see \"crate::cron\" too";
const C: &str = r"crate::cron";
"#;
        assert_eq!(
            check(&tree(&[("model/ids.rs", text)])),
            Vec::<String>::new()
        );
    }

    /// A brace or quote inside a raw string must not move the inline
    /// module's end: were `tests` closed early, the path would climb above
    /// the root instead of reaching `cron`.
    #[test]
    fn raw_string_with_braces_and_quotes_keeps_brace_counting() {
        let text = r##"mod tests {
    const S: &str = r#"} "quoted" }"#;
    const T: &[u8] = br"}";
    fn f() {
        super::super::super::cron::run();
    }
}
"##;
        let files = tree(&[("model/ids.rs", text)]);
        assert_eq!(
            check(&files),
            ["pipeline/model/ids.rs:5: model imports cron (super::super::super::cron::run)"]
        );
    }

    #[test]
    fn char_literals_are_not_braces() {
        let text = "mod tests {\n    const O: char = '{';\n    const Q: char = '\\'';\n    const B: u8 = b'}';\n    fn f() { super::super::super::cron::run(); }\n}\n";
        let files = tree(&[("model/ids.rs", text)]);
        assert_eq!(
            check(&files),
            ["pipeline/model/ids.rs:5: model imports cron (super::super::super::cron::run)"]
        );
    }

    #[test]
    fn lifetimes_are_not_char_literals() {
        let text = "mod tests {\n    struct W<'a>(&'a str);\n    impl<'a> W<'a> {\n        fn f(&self) -> &'static str { 'outer: loop { break 'outer; } }\n    }\n    fn g() { super::super::super::cron::run(); }\n}\nfn h() { self::x(); }\n";
        let files = tree(&[("model/ids.rs", text)]);
        assert_eq!(
            resolved(&files, "model/ids.rs"),
            [
                one(6, "super::super::super::cron::run", "cron"),
                one(8, "self::x", "model::ids")
            ]
        );
    }

    #[test]
    fn sibling_import_loop_is_reported_with_both_edges() {
        let plan = "//! Plans.\nuse super::record::AcceptedEvent;\n";
        let record = "use std::fmt;\n\nuse crate::cron::stripe::plan::Key;\n";
        let files = tree(&[
            ("cron/stripe/mod.rs", ""),
            ("cron/stripe/plan.rs", plan),
            ("cron/stripe/record.rs", record),
        ]);
        assert_eq!(
            check(&files),
            [
                "import loop between module files: cron::stripe::plan -> cron::stripe::record -> cron::stripe::plan\n    \
              pipeline/cron/stripe/plan.rs:2 -> cron::stripe::record (super::record::AcceptedEvent)\n    \
              pipeline/cron/stripe/record.rs:3 -> cron::stripe::plan (crate::cron::stripe::plan::Key)"
            ]
        );
    }

    #[test]
    fn ancestor_and_descendant_edges_are_not_loops() {
        let module = "pub mod render;\nuse self::render::Line;\nuse crate::bill::render::Period;\n";
        let render = "use super::Billing;\nuse crate::bill::Billing as B;\nuse crate::Error;\n";
        let files = tree(&[("bill/mod.rs", module), ("bill/render.rs", render)]);
        assert_eq!(check(&files), Vec::<String>::new());
    }

    #[test]
    fn unknown_unit_is_reported() {
        let files = tree(&[
            ("extra/mod.rs", "use crate::cron::X;\n"),
            ("extra/more.rs", ""),
        ]);
        assert_eq!(
            check(&files),
            ["pipeline/extra/mod.rs: unit `extra` is in no layer: add it to LAYERS in layers.rs"]
        );
    }

    #[test]
    fn model_io_is_reported_outside_cfg_test_only() {
        let text = "use std::{fmt, fs};\nfn f(p: &str) -> String {\n    std::fs::read_to_string(p).unwrap()\n}\n// std::fs in a comment is no IO\n#[cfg(test)]\nmod tests {\n    use std::fs::File;\n    fn g() { File::create(\"x\").unwrap(); }\n}\n#[cfg(test)]\nmod more;\n";
        let more = "fn h() { std::process::exit(1) }\n";
        let files = tree(&[("model/config.rs", text), ("model/config/more.rs", more)]);
        assert_eq!(
            check(&files),
            [
                "pipeline/model/config.rs:1: the model layer does IO (std::fs): move it to `load`",
                "pipeline/model/config.rs:3: the model layer does IO (std::fs): move it to `load`",
            ]
        );
        let files = tree(&[
            ("load.rs", "use std::fs;\n"),
            ("lake/mod.rs", "use std::fs::File;\n"),
        ]);
        assert_eq!(check(&files), Vec::<String>::new());
    }

    #[test]
    fn super_above_the_crate_root_is_reported() {
        let files = tree(&[
            ("lib.rs", "pub mod model;\nuse super::x;\n"),
            ("load.rs", "use super::super::y;\n"),
        ]);
        assert_eq!(
            check(&files),
            [
                "pipeline/lib.rs:2: super:: climbs above the crate root (super::x)",
                "pipeline/load.rs:1: super:: climbs above the crate root (super::super::y)",
            ]
        );
    }

    #[test]
    fn macro_crate_and_visibility_are_ignored() {
        let text = "macro_rules! m { () => { impl $crate::cron::X for Y {} } }\npub(crate) fn a() {}\npub(super) fn b() {}\npub(in crate::lake) fn c() {}\npub ( in super::super ) fn d() {}\n";
        assert_eq!(
            check(&tree(&[("model/report.rs", text)])),
            Vec::<String>::new()
        );
    }

    #[test]
    fn file_paths_give_module_paths() {
        assert_eq!(file_module("lib.rs"), Vec::<String>::new());
        assert_eq!(file_module("bill/mod.rs"), ["bill"]);
        assert_eq!(file_module("bill/diff.rs"), ["bill", "diff"]);
        assert_eq!(file_module("ingest/parse/mod.rs"), ["ingest", "parse"]);
        let text = "use crate::bill::diff::Diff;\nuse crate::bill::Nope;\nuse crate::Error;\n";
        let files = tree(&[("cron/mod.rs", text), ("bill/diff.rs", "")]);
        assert_eq!(
            resolved(&files, "cron/mod.rs"),
            [
                one(1, "crate::bill::diff::Diff", "bill::diff"),
                one(2, "crate::bill::Nope", "bill"),
                one(3, "crate::Error", "crate")
            ]
        );
    }
}
