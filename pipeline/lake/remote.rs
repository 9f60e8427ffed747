//! A lake in object storage (S3, GCS, Azure): what [`crate::lake::Lake`]
//! does on a bucket where a local folder would rename and lock.
//!
//! ```text
//! <lake>/_lease.json                          who may change the lake (lease.rs)
//! <lake>/_staging/<run_id>/<table>/...        a run's files before they commit
//! <lake>/_commits/<run_id>-<n>.json           a commit: staged -> final, deletes
//! ```
//!
//! Object stores have no rename, so a run writes its files aside, under
//! `_staging/<run_id>/`, with the key they will have. Its commit is then:
//!
//! 1. a commit record, put create-only, naming every copy and delete and
//!    the lease generation it is made under;
//! 2. the commit point: [`Lease::commit`] adds the record to the lease
//!    object in the conditional write that proves the lease still holds
//!    (a holder that stalled past its expiry and was taken over cannot);
//! 3. a server-side copy of each staged object to its final key, then the
//!    staged object's delete, then the deletes the commit names;
//! 4. the record's delete, and [`lease::settle`].
//!
//! A run killed before 2 leaves nothing under a table's prefix: its record
//! and staged objects are removed by the next writer once the run no longer
//! holds the lease. A run killed after 2 is rolled forward by the next
//! writer (every step of 3 can be done twice). Readers refuse a lake with a
//! commit between 2 and 4, as they refuse a local lake with a journal.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::lake::lease::{self, Claim, Lease};
use crate::lake::store::{Conditional, RangeReader, Store};
use crate::model::ctx::SystemClock;
use crate::model::error::{Error, IoContext, Result};

/// A lease entry lives this long past its last renewal.
const TTL: Duration = Duration::from_secs(120);
/// Renewed this often: a stalled process loses it, a working one never.
const RENEW_EVERY: Duration = Duration::from_secs(30);
/// A commit needs at least this much of the lease left.
const MARGIN: Duration = Duration::from_secs(30);

pub const STAGING: &str = "_staging";
pub const COMMITS: &str = "_commits";

/// Whether `root` names an object store rather than a local folder.
pub fn is_remote(root: &Path) -> bool {
    let text = root.to_string_lossy();
    match text.split_once("://") {
        Some((scheme, _)) => scheme != "file",
        None => false,
    }
}

/// The local folder a `file://` root names (other roots unchanged).
pub fn local_root(root: &Path) -> PathBuf {
    let text = root.to_string_lossy();
    match text.strip_prefix("file://") {
        Some(path) => PathBuf::from(path),
        None => root.to_path_buf(),
    }
}

/// The object-store side of an open lake.
pub struct Remote {
    pub store: Arc<Store>,
    /// The instance of the run that holds the lease (`<run_id>.<pid><salt>`;
    /// empty for a reader): staged files and commit records carry it.
    run_id: String,
    held: Option<Held>,
    /// Where part files are written before they are uploaded.
    spool: PathBuf,
    commits: AtomicU32,
}

/// A held lease and the thread that renews it.
struct Held {
    lease: Arc<Mutex<Option<Lease>>>,
    lost: Arc<AtomicBool>,
    stop: mpsc::Sender<()>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

/// What a commit record says.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    run_id: String,
    generation: u64,
    /// Staged key -> final key.
    copies: Vec<(String, String)>,
    deletes: Vec<String>,
}

impl Remote {
    /// Opens the store at `url` for a job that changes the lake: takes the
    /// lease (`mode`), then finishes or removes what killed runs left.
    pub fn open(url: &str, run_id: &str, claim: Claim) -> Result<Remote> {
        let store = Arc::new(Store::open(url)?);
        let job = crate::lake::job_of(run_id);
        // Run ids repeat (a pinned clock, a rerun): what holds the lease,
        // stages and records commits is this process's instance of the run.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let run_id = &format!("{run_id}.{:x}{:05x}", std::process::id(), nanos & 0xfffff);
        let lease = Lease::acquire(&store, run_id, job, claim, TTL, &SystemClock)?;
        let lease = Arc::new(Mutex::new(Some(lease)));
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let renewer = {
            let (lease, lost) = (lease.clone(), lost.clone());
            std::thread::spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(RENEW_EVERY) {
                    let mut guard = lease.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(held) = guard.as_mut()
                        && held.renew(&SystemClock).is_err()
                    {
                        lost.store(true, Ordering::SeqCst);
                    }
                }
            })
        };
        let spool =
            std::env::temp_dir().join(format!("meter-spool-{run_id}-{}", std::process::id()));
        std::fs::create_dir_all(&spool).write_ctx(&spool)?;
        let remote = Remote {
            store,
            run_id: run_id.to_string(),
            held: Some(Held {
                lease,
                lost,
                stop,
                renewer: Some(renewer),
            }),
            spool,
            commits: AtomicU32::new(0),
        };
        remote.recover()?;
        Ok(remote)
    }

    /// Opens the store at `url` to read: no lease; refused while a commit
    /// is between its commit point and its end.
    pub fn open_read(url: &str) -> Result<Remote> {
        let store = Arc::new(Store::open(url)?);
        if let Some(record) = lease::pending_commits(&store)?.first() {
            return Err(Error::Lake {
                path: PathBuf::from(store.object_url(record)),
                message: "a run's commit is in progress or was interrupted: try again in a moment; if no job is running, the next job (or `meter ingest`) finishes it".into(),
            });
        }
        Ok(Remote {
            store,
            run_id: String::new(),
            held: None,
            spool: PathBuf::new(),
            commits: AtomicU32::new(0),
        })
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The local file a part file of `key` is written to before upload.
    pub fn spool_path(&self, key: &str) -> PathBuf {
        self.spool.join(key.replace('/', "%"))
    }

    /// Where `key` is staged by `run_id` until its commit.
    pub fn staged_key(run_id: &str, key: &str) -> String {
        format!("{STAGING}/{run_id}/{key}")
    }

    /// Commits: see the module's documentation.
    pub fn commit(&self, copies: Vec<(String, String)>, deletes: Vec<String>) -> Result<()> {
        let run_id = &self.run_id;
        let held = self.held.as_ref().ok_or_else(|| Error::Lake {
            path: PathBuf::from(self.store.url()),
            message: "the lake was opened to read; nothing can be committed".into(),
        })?;
        let n = self.commits.fetch_add(1, Ordering::SeqCst);
        let key = format!("{COMMITS}/{run_id}-{n:04}.json");
        let guard = held.lease.lock().unwrap_or_else(|e| e.into_inner());
        let lease = guard.as_ref().expect("a held lake keeps its lease");
        let record = Record {
            run_id: run_id.clone(),
            generation: lease.holder().generation,
            copies,
            deletes,
        };
        let bytes = serde_json::to_vec(&record).expect("a record serializes");
        if self.store.put_if_absent(&key, bytes)? == Conditional::Conflict {
            return Err(Error::Lake {
                path: PathBuf::from(self.store.object_url(&key)),
                message: "a commit record of this run id is already there: run ids must be unique"
                    .into(),
            });
        }
        if let Err(e) = lease.commit(&SystemClock, MARGIN, &key) {
            // Never committed: the record and the staged files go.
            let _ = self.store.delete(&key);
            for (staged, _) in &record.copies {
                let _ = self.store.delete(staged);
            }
            return Err(e);
        }
        drop(guard);
        self.apply(&key, &record)
    }

    /// Steps 3 and 4 of a commit past its commit point; safe to repeat.
    fn apply(&self, key: &str, record: &Record) -> Result<()> {
        for (staged, target) in &record.copies {
            match self.store.copy(staged, target) {
                Ok(()) => self.store.delete(staged)?,
                Err(Error::Store {
                    source: object_store::Error::NotFound { .. },
                    ..
                }) if self.store.size(target)?.is_some() => {}
                Err(e) => return Err(e),
            }
        }
        for path in &record.deletes {
            self.store.delete(path)?;
        }
        self.store.delete(key)?;
        lease::settle(&self.store, key)
    }

    /// Rolls forward the commits that passed their commit point and removes
    /// the records and staged files of runs that never reached it, except
    /// those of runs that still hold the lease (ingest shards side by side).
    fn recover(&self) -> Result<()> {
        let live: Vec<String> = lease::holders(&self.store, chrono::Utc::now())?
            .into_iter()
            .map(|h| h.id)
            .collect();
        let own_run = |key: &str| -> Option<String> {
            let record = self.read_record(key).ok()??;
            Some(record.run_id)
        };
        let pending = lease::pending_commits(&self.store)?;
        for key in &pending {
            match self.read_record(key)? {
                Some(record) if live.contains(&record.run_id) => {}
                Some(record) => self.apply(key, &record)?,
                None => lease::settle(&self.store, key)?,
            }
        }
        let pending = lease::pending_commits(&self.store)?;
        for (key, _) in self.store.list(COMMITS)? {
            if pending.contains(&key) {
                continue;
            }
            match own_run(&key) {
                Some(run) if live.contains(&run) => {}
                _ => self.store.delete(&key)?,
            }
        }
        for (key, _) in self.store.list(STAGING)? {
            // `_staging/<run_id>/<key>`
            let run = key.split('/').nth(1).unwrap_or_default();
            let keep = live.iter().any(|id| id == run)
                || pending.iter().any(|p| own_run(p).as_deref() == Some(run));
            if !keep {
                self.store.delete(&key)?;
            }
        }
        Ok(())
    }

    fn read_record(&self, key: &str) -> Result<Option<Record>> {
        let Some(bytes) = self.store.get(key)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Lake {
                path: PathBuf::from(self.store.object_url(key)),
                message: format!("unreadable commit record: {e}"),
            })
    }

    /// Whether the lease was lost (the renewer could not renew it).
    pub fn lease_lost(&self) -> bool {
        self.held
            .as_ref()
            .is_some_and(|h| h.lost.load(Ordering::SeqCst))
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(mut held) = self.held.take() {
            let _ = held.stop.send(());
            if let Some(thread) = held.renewer.take() {
                let _ = thread.join();
            }
            let lease = held.lease.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(lease) = lease {
                let _ = lease.release();
            }
            let _ = std::fs::remove_dir_all(&self.spool);
        }
    }
}

/// An object read by ranges: what the Parquet reader reads a remote file
/// through (the footer, then each column chunk it needs; never the whole
/// object at once).
pub struct RemoteObject {
    store: Arc<Store>,
    key: String,
    len: u64,
    /// The blocks fetched last, by index (block `i` is the bytes
    /// `i * READ_BLOCK ..`), most recent last. The Parquet reader reads the
    /// pages of all the columns it decodes in turn, so the page of each
    /// column is in another block: one block would be fetched again for
    /// every page.
    blocks: Mutex<std::collections::VecDeque<(u64, Bytes)>>,
}

/// The size of the aligned blocks a [`RemoteObject`] is fetched in: an
/// object up to this size is read in one request.
pub const READ_BLOCK: u64 = 1 << 20;

/// The most blocks an open [`RemoteObject`] keeps: an object up to this
/// many blocks is fetched at most once, and memory stays bounded for any
/// size (a reader decoding more columns than this, of a larger object,
/// fetches some blocks again).
pub const CACHED_BLOCKS: usize = 24;

impl RemoteObject {
    pub fn open(store: &Arc<Store>, key: &str) -> Result<RemoteObject> {
        let len = store.size(key)?.ok_or_else(|| Error::Lake {
            path: PathBuf::from(store.object_url(key)),
            message:
                "no such object: it was removed while it was read, or the lake changed; run again"
                    .into(),
        })?;
        Ok(RemoteObject {
            store: store.clone(),
            key: key.to_string(),
            len,
            blocks: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    fn fetch(&self, from: u64, to: u64) -> parquet::errors::Result<Bytes> {
        let bytes = self
            .store
            .get_range(&self.key, from..to)
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
        if bytes.len() as u64 != to - from {
            return Err(parquet::errors::ParquetError::External(
                format!(
                    "{}: asked for bytes {from}..{to}, got {}: the object changed while it was read; run again",
                    self.store.object_url(&self.key),
                    bytes.len()
                )
                .into(),
            ));
        }
        Ok(bytes)
    }

    /// Blocks `first..=last`, fetching the missing ones (in one request).
    fn blocks(&self, first: u64, last: u64) -> parquet::errors::Result<Vec<Bytes>> {
        let mut cache = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        let cached = |cache: &std::collections::VecDeque<(u64, Bytes)>, i: u64| {
            cache
                .iter()
                .find(|(at, _)| *at == i)
                .map(|(_, b)| b.clone())
        };
        let missing: Vec<u64> = (first..=last)
            .filter(|&i| cached(&cache, i).is_none())
            .collect();
        if let (Some(&lo), Some(&hi)) = (missing.first(), missing.last()) {
            let from = lo * READ_BLOCK;
            let to = ((hi + 1) * READ_BLOCK).min(self.len);
            let bytes = self.fetch(from, to)?;
            for i in lo..=hi {
                if cached(&cache, i).is_some() {
                    continue;
                }
                let a = ((i - lo) * READ_BLOCK) as usize;
                let b = (((i - lo + 1) * READ_BLOCK) as usize).min(bytes.len());
                cache.push_back((i, bytes.slice(a..b)));
            }
        }
        let out = (first..=last)
            .map(|i| cached(&cache, i).expect("fetched above"))
            .collect();
        // The blocks just used go last; the oldest beyond the bound go.
        for i in first..=last {
            if let Some(pos) = cache.iter().position(|(at, _)| *at == i) {
                let entry = cache.remove(pos).expect("found");
                cache.push_back(entry);
            }
        }
        while cache.len() > CACHED_BLOCKS.max((last - first + 1) as usize) {
            cache.pop_front();
        }
        Ok(out)
    }

    /// Bytes `start..start + len` (fewer at the end of the object).
    fn range(&self, start: u64, len: u64) -> parquet::errors::Result<Bytes> {
        let end = (start + len).min(self.len);
        if start >= end {
            return Ok(Bytes::new());
        }
        // A large read (a whole column chunk) goes straight through.
        if end - start > 2 * READ_BLOCK {
            return self.fetch(start, end);
        }
        let (first, last) = (start / READ_BLOCK, (end - 1) / READ_BLOCK);
        let blocks = self.blocks(first, last)?;
        let base = first * READ_BLOCK;
        if blocks.len() == 1 {
            return Ok(blocks[0].slice((start - base) as usize..(end - base) as usize));
        }
        let mut joined = Vec::with_capacity((end - start) as usize);
        for b in &blocks {
            joined.extend_from_slice(b);
        }
        Ok(Bytes::from(joined).slice((start - base) as usize..(end - base) as usize))
    }
}

impl parquet::file::reader::Length for RemoteObject {
    fn len(&self) -> u64 {
        self.len
    }
}

impl parquet::file::reader::ChunkReader for RemoteObject {
    type T = std::io::Chain<bytes::buf::Reader<Bytes>, RangeReader>;

    /// What the reader reads page headers through: the block around
    /// `start`, then (rarely) ranged GETs past it.
    /// The reader asks for a reader at every page header and reads a few
    /// hundred bytes from it: the rest of the block `start` is in serves it
    /// (the next block too when few bytes are left), and a header that runs
    /// further goes on in block-sized ranged GETs.
    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf as _;
        use std::io::Read as _;
        const AT_LEAST: u64 = 64 << 10;
        let block_end = (start / READ_BLOCK + 1) * READ_BLOCK;
        let want = if block_end - start < AT_LEAST {
            block_end + READ_BLOCK - start
        } else {
            block_end - start
        };
        let head = self.range(start, want)?;
        let rest = self
            .store
            .reader(&self.key, self.len)
            .with_range_size(READ_BLOCK)
            .starting_at(start + head.len() as u64);
        Ok(head.reader().chain(rest))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.range(start, length as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::properties::WriterProperties;

    use super::*;

    /// A Parquet file of many small pages in several columns and row
    /// groups, as the lake's part files have.
    fn small_pages() -> (Vec<u8>, usize) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, false),
            Field::new("c", DataType::Int64, false),
        ]));
        let rows = 200_000;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows as i64)),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("value-{}", i * 7919 % 100_003)),
                )),
                Arc::new(Int64Array::from_iter_values(
                    (0..rows as i64).map(|i| i * i),
                )),
            ],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_data_page_size_limit(8 << 10)
            .set_max_row_group_row_count(Some(50_000))
            .build();
        let mut bytes = Vec::new();
        let mut w = ArrowWriter::try_new(&mut bytes, schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        (bytes, rows)
    }

    #[test]
    fn reading_a_file_of_small_pages_fetches_it_about_once() {
        let (bytes, rows) = small_pages();
        assert!(bytes.len() as u64 > 3 * READ_BLOCK, "{}", bytes.len());
        let store = Arc::new(Store::in_memory().unwrap());
        store.put("t/part.parquet", bytes.clone()).unwrap();
        let object = RemoteObject::open(&store, "t/part.parquet").unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(object)
            .unwrap()
            .build()
            .unwrap();
        let read: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(read, rows);
        let fetched = store.ranged_bytes();
        assert!(
            fetched < bytes.len() as u64 * 3 / 2,
            "fetched {fetched} bytes for a file of {}",
            bytes.len()
        );
    }
}
