//! The id index of a raw event file: `<name>.ids` beside `<name>.parquet`
//! holds the file's event ids grouped by VM, so that an ingest checks an
//! event against the stored ids of its own VM without reading whole
//! partitions (every event id hashes its VM in: events of two VMs are never
//! duplicates of each other).
//!
//! An index is written with its data file ([`super::PartWriter`]), made
//! visible in the same journaled commit and removed with it
//! ([`super::Lake::commit`] moves and deletes a raw file's index with the
//! file). Its name does not match `*.parquet`, so readers of the lake's
//! Parquet files never see it. It is immutable, like its data file.
//!
//! Layout, little-endian:
//! - ids: `count` x 16 bytes (u128), each VM's ids in one run;
//! - directory: per VM, `vm_len: u16`, the VM id, `first: u64`, `count: u64`;
//! - footer ([`FOOTER`] bytes): `directory_at: u64`, `vms: u32`,
//!   `count: u64`, `data_len: u64` (the bytes of its data file: an index is
//!   never read for another file), the magic `MTRIDX01`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use arrow::array::{Array, StringArray};
use arrow::record_batch::RecordBatch;

use crate::model::error::{Error, IoContext, Result};
use crate::model::ids::{EventId, parse_id_hex};

/// The extension of an index file.
pub const EXT: &str = "ids";
const MAGIC: &[u8; 8] = b"MTRIDX01";
/// Bytes of the footer.
pub const FOOTER: usize = 8 + 4 + 8 + 8 + 8;

/// The index of the data file `path` (`<name>.parquet` -> `<name>.ids`, and
/// a data file being written, `<name>.parquet.tmp` -> `<name>.ids.tmp`).
pub fn index_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match name.strip_suffix(".parquet.tmp") {
        Some(stem) => format!("{stem}.{EXT}.tmp"),
        None => match name.strip_suffix(".parquet") {
            Some(stem) => format!("{stem}.{EXT}"),
            None => format!("{name}.{EXT}"),
        },
    };
    path.with_file_name(name)
}

/// Writes an index, batch by batch, in row order: to a file beside its data
/// file being written, or in memory.
pub struct IndexWriter<F: Read + Write + Seek = File> {
    file: BufWriter<F>,
    /// The index's path, for messages.
    path: PathBuf,
    /// Consecutive rows of one VM: (VM, rows).
    runs: Vec<(String, u64)>,
    count: u64,
}

impl IndexWriter<File> {
    pub fn create(path: &Path) -> Result<IndexWriter<File>> {
        // Read too: a file whose VMs' rows were not consecutive is regrouped
        // from what was written.
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .write_ctx(path)?;
        Ok(IndexWriter::new(file, path))
    }
}

impl IndexWriter<Cursor<Vec<u8>>> {
    /// An index built in memory; `path` is where it is to go.
    pub fn in_memory(path: &Path) -> IndexWriter<Cursor<Vec<u8>>> {
        IndexWriter::new(Cursor::new(Vec::new()), path)
    }
}

impl<F: Read + Write + Seek> IndexWriter<F> {
    fn new(file: F, path: &Path) -> IndexWriter<F> {
        IndexWriter {
            file: BufWriter::with_capacity(64 << 10, file),
            path: path.to_path_buf(),
            runs: Vec::new(),
            count: 0,
        }
    }

    /// Adds the ids of a batch of a raw table (its `vm_id` and `event_id`
    /// columns), in row order.
    pub fn push_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let (vms, ids) = id_columns(batch, &self.path)?;
        for i in 0..batch.num_rows() {
            let vm = if vms.is_valid(i) { vms.value(i) } else { "" };
            let id = ids
                .is_valid(i)
                .then(|| parse_id_hex(ids.value(i)))
                .flatten()
                .ok_or_else(|| Error::Lake {
                    path: self.path.clone(),
                    message: format!("row {i} of a batch has no valid event_id"),
                })?;
            self.push(vm, id)?;
        }
        Ok(())
    }

    pub fn push(&mut self, vm: &str, id: EventId) -> Result<()> {
        match self.runs.last_mut() {
            Some((last, n)) if last == vm => *n += 1,
            _ => self.runs.push((vm.to_string(), 1)),
        }
        self.count += 1;
        self.file.write_all(&id.to_le_bytes()).write_ctx(&self.path)
    }

    /// Groups each VM's ids into one run (when a VM's rows were not
    /// consecutive) and writes the directory and footer; `data_len` is the
    /// size of the finished data file.
    pub fn finish(self, data_len: u64) -> Result<F> {
        let IndexWriter {
            file,
            path,
            runs,
            count,
        } = self;
        let mut file = file
            .into_inner()
            .map_err(|e| e.into_error())
            .write_ctx(&path)?;
        // Each VM's rows, in order of first appearance.
        let mut order: Vec<&str> = Vec::new();
        let mut rows_of: HashMap<&str, u64> = HashMap::new();
        for (vm, n) in &runs {
            let vm = vm.as_str();
            let total = rows_of.entry(vm).or_insert_with(|| {
                order.push(vm);
                0
            });
            *total += n;
        }
        if order.len() < runs.len() {
            // Regroup: read the ids back and write them VM by VM.
            let mut bytes = Vec::with_capacity(count as usize * 16);
            file.seek(SeekFrom::Start(0)).write_ctx(&path)?;
            (&mut file)
                .take(count * 16)
                .read_to_end(&mut bytes)
                .read_ctx(&path)?;
            let mut by_vm: HashMap<&str, Vec<u8>> = HashMap::new();
            let mut at = 0usize;
            for (vm, n) in &runs {
                let len = *n as usize * 16;
                by_vm
                    .entry(vm.as_str())
                    .or_default()
                    .extend_from_slice(&bytes[at..at + len]);
                at += len;
            }
            file.seek(SeekFrom::Start(0)).write_ctx(&path)?;
            let mut out = BufWriter::with_capacity(64 << 10, &mut file);
            for vm in &order {
                out.write_all(&by_vm[vm]).write_ctx(&path)?;
            }
            out.flush().write_ctx(&path)?;
        }
        let mut tail = Vec::new();
        let mut first = 0u64;
        for vm in &order {
            let n = rows_of[vm];
            tail.extend_from_slice(&(vm.len() as u16).to_le_bytes());
            tail.extend_from_slice(vm.as_bytes());
            tail.extend_from_slice(&first.to_le_bytes());
            tail.extend_from_slice(&n.to_le_bytes());
            first += n;
        }
        tail.extend_from_slice(&(count * 16).to_le_bytes());
        tail.extend_from_slice(&(order.len() as u32).to_le_bytes());
        tail.extend_from_slice(&count.to_le_bytes());
        tail.extend_from_slice(&data_len.to_le_bytes());
        tail.extend_from_slice(MAGIC);
        file.seek(SeekFrom::Start(count * 16)).write_ctx(&path)?;
        file.write_all(&tail).write_ctx(&path)?;
        file.flush().write_ctx(&path)?;
        Ok(file)
    }
}

/// The `vm_id` and `event_id` columns of a raw table's batch.
fn id_columns<'b>(
    batch: &'b RecordBatch,
    path: &Path,
) -> Result<(&'b StringArray, &'b StringArray)> {
    let text = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| Error::Lake {
                path: path.to_path_buf(),
                message: format!("no text column {name} to index"),
            })
    };
    Ok((text("vm_id")?, text("event_id")?))
}

/// Whether a batch's schema is that of a raw table (it has the columns an
/// index is made of).
pub fn indexable(schema: &arrow::datatypes::Schema) -> bool {
    ["vm_id", "event_id"]
        .iter()
        .all(|c| schema.field_with_name(c).is_ok())
}

/// An index's directory: where each VM's ids are.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Directory {
    /// VM -> (first id, ids).
    pub vms: HashMap<Box<str>, (u64, u64)>,
    pub count: u64,
    /// The size of the data file it indexes.
    pub data_len: u64,
}

/// Reads the footer of an index of `len` bytes: (where the directory
/// starts, its VMs, ids, its data file's size). `tail` is the last
/// [`FOOTER`] bytes.
pub fn read_footer(tail: &[u8], len: u64, path: &Path) -> Result<(u64, u32, u64, u64)> {
    let bad = |message: String| Error::Lake {
        path: path.to_path_buf(),
        message: format!("not a meter id index: {message}"),
    };
    if tail.len() != FOOTER || len < FOOTER as u64 || &tail[28..36] != MAGIC {
        return Err(bad("no footer".into()));
    }
    let dir_at = u64::from_le_bytes(tail[0..8].try_into().expect("8 bytes"));
    let vms = u32::from_le_bytes(tail[8..12].try_into().expect("4 bytes"));
    let count = u64::from_le_bytes(tail[12..20].try_into().expect("8 bytes"));
    let data_len = u64::from_le_bytes(tail[20..28].try_into().expect("8 bytes"));
    if dir_at != count.saturating_mul(16) || dir_at > len - FOOTER as u64 {
        return Err(bad(format!("{count} ids do not fit its {len} bytes")));
    }
    Ok((dir_at, vms, count, data_len))
}

/// Parses a directory (the bytes between the ids and the footer).
pub fn read_directory(
    bytes: &[u8],
    (vms, count, data_len): (u32, u64, u64),
    path: &Path,
) -> Result<Directory> {
    let bad = |message: &str| Error::Lake {
        path: path.to_path_buf(),
        message: format!("not a meter id index: {message}"),
    };
    let mut dir = Directory {
        vms: HashMap::with_capacity(vms as usize),
        count,
        data_len,
    };
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let s = bytes
            .get(at..at + n)
            .ok_or_else(|| bad("a cut directory"))?;
        at += n;
        Ok(s)
    };
    for _ in 0..vms {
        let len = u16::from_le_bytes(take(2)?.try_into().expect("2 bytes")) as usize;
        let vm = std::str::from_utf8(take(len)?).map_err(|_| bad("a VM id that is not UTF-8"))?;
        let vm: Box<str> = vm.into();
        let first = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
        let n = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
        if first.checked_add(n).is_none_or(|end| end > count) {
            return Err(bad("a VM's ids past the end"));
        }
        if dir.vms.insert(vm, (first, n)).is_some() {
            return Err(bad("a VM listed twice"));
        }
    }
    if at != bytes.len() {
        return Err(bad("bytes after the directory"));
    }
    Ok(dir)
}

/// Reads the directory of the index file at `path` (a local file).
pub fn read_file_directory(path: &Path) -> Result<Directory> {
    let mut file = File::open(path).read_ctx(path)?;
    let len = file.metadata().read_ctx(path)?.len();
    if len < FOOTER as u64 {
        return read_footer(&[], len, path).map(|_| Directory::default());
    }
    let mut tail = [0u8; FOOTER];
    file.seek(SeekFrom::Start(len - FOOTER as u64))
        .read_ctx(path)?;
    file.read_exact(&mut tail).read_ctx(path)?;
    let (dir_at, vms, count, data_len) = read_footer(&tail, len, path)?;
    let mut bytes = vec![0u8; (len - FOOTER as u64 - dir_at) as usize];
    file.seek(SeekFrom::Start(dir_at)).read_ctx(path)?;
    file.read_exact(&mut bytes).read_ctx(path)?;
    read_directory(&bytes, (vms, count, data_len), path)
}

/// Reads the ids `first..first + n` of the index file at `path`.
pub fn read_ids(
    path: &Path,
    first: u64,
    n: u64,
    into: &mut crate::model::ids::IdSet,
) -> Result<()> {
    let mut file = File::open(path).read_ctx(path)?;
    let mut bytes = vec![0u8; n as usize * 16];
    file.seek(SeekFrom::Start(first * 16)).read_ctx(path)?;
    file.read_exact(&mut bytes).read_ctx(path)?;
    into.extend(ids_of(&bytes));
    Ok(())
}

/// Parses a whole index file's bytes.
pub fn parse<'a>(bytes: &'a [u8], path: &Path) -> Result<(Directory, &'a [u8])> {
    let len = bytes.len() as u64;
    let tail = &bytes[bytes.len().saturating_sub(FOOTER)..];
    let (dir_at, vms, count, data_len) = read_footer(tail, len, path)?;
    let dir = read_directory(
        &bytes[dir_at as usize..bytes.len() - FOOTER],
        (vms, count, data_len),
        path,
    )?;
    Ok((dir, &bytes[..dir_at as usize]))
}

/// Ids from their bytes (16 each, little-endian).
pub fn ids_of(bytes: &[u8]) -> impl Iterator<Item = EventId> + '_ {
    bytes
        .chunks_exact(16)
        .map(|c| EventId::from_le_bytes(c.try_into().expect("16 bytes")))
}

/// What is wrong with a lake's id indexes: a raw file without its index,
/// or whose index is not its rows' ids, and an index without its file.
/// Empty when every index is what its file's writer wrote.
pub fn problems(lake: &super::Lake) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for table in crate::lake::tables::Table::ALL {
        for date in lake.partition_dates(table)? {
            let files = lake.files_in(&lake.partition_dir(table, date))?;
            for path in &files {
                let name = path.to_string_lossy();
                if name.ends_with(".parquet") {
                    let index = index_path(path);
                    match lake.read_file(&index)? {
                        None => out.push(format!("{name}: no index")),
                        Some(bytes) if bytes != lake.index_bytes(path)? => {
                            out.push(format!("{}: not the ids of its file", index.display()))
                        }
                        Some(_) => {}
                    }
                } else if name.ends_with(&format!(".{EXT}")) {
                    let data = path.with_extension("parquet");
                    if !files.contains(&data) {
                        out.push(format!("{name}: an index without its file"));
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn index_paths_sit_beside_their_data_files() {
        assert_eq!(
            index_path(Path::new("l/api_usage/date=2026-10-01/part-r-0001.parquet")),
            PathBuf::from("l/api_usage/date=2026-10-01/part-r-0001.ids")
        );
        assert_eq!(
            index_path(Path::new(
                "l/api_usage/date=2026-10-01/part-r-0001.parquet.tmp"
            )),
            PathBuf::from("l/api_usage/date=2026-10-01/part-r-0001.ids.tmp")
        );
    }

    fn write(rows: &[(String, EventId)]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ids");
        let mut w = IndexWriter::create(&path).unwrap();
        for (vm, id) in rows {
            w.push(vm, *id).unwrap();
        }
        w.finish(1234).unwrap();
        std::fs::read(&path).unwrap()
    }

    proptest! {
        /// Each VM's ids read back are its rows' ids, in row order, however
        /// its rows were interleaved with other VMs'.
        #[test]
        fn each_vms_ids_read_back(rows in prop::collection::vec((0u8..4, any::<u128>()), 0..60)) {
            let rows: Vec<(String, EventId)> =
                rows.into_iter().map(|(v, id)| (format!("vm-{v}"), id)).collect();
            let bytes = write(&rows);
            let (dir, ids) = parse(&bytes, Path::new("x.ids")).unwrap();
            prop_assert_eq!(dir.count, rows.len() as u64);
            prop_assert_eq!(dir.data_len, 1234);
            for v in 0..5u8 {
                let vm = format!("vm-{v}");
                let want: Vec<EventId> =
                    rows.iter().filter(|(r, _)| *r == vm).map(|(_, id)| *id).collect();
                let got: Vec<EventId> = match dir.vms.get(vm.as_str()) {
                    Some((first, n)) => ids_of(&ids[*first as usize * 16..(first + n) as usize * 16]).collect(),
                    None => Vec::new(),
                };
                prop_assert_eq!(got, want);
            }
        }

        /// A cut or altered index is refused, never read as other ids.
        #[test]
        fn a_damaged_index_is_refused(rows in prop::collection::vec((0u8..3, any::<u128>()), 1..20), cut in 1usize..40) {
            let rows: Vec<(String, EventId)> =
                rows.into_iter().map(|(v, id)| (format!("vm-{v}"), id)).collect();
            let bytes = write(&rows);
            let cut = cut.min(bytes.len());
            prop_assert!(parse(&bytes[..bytes.len() - cut], Path::new("x.ids")).is_err());
        }
    }
}
