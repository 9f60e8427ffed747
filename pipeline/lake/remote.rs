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

use crate::lake::lease::{self, Lease, Mode};
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
    pub fn open(url: &str, run_id: &str, mode: Mode) -> Result<Remote> {
        let store = Arc::new(Store::open(url)?);
        let job = run_id.split('-').nth(1).unwrap_or("meter");
        // Run ids repeat (a pinned clock, a rerun): what holds the lease,
        // stages and records commits is this process's instance of the run.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let run_id = &format!("{run_id}.{:x}{:05x}", std::process::id(), nanos & 0xfffff);
        let lease = Lease::acquire(&store, run_id, job, mode, TTL, &SystemClock)?;
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
    /// The last block fetched, and where it starts: the Parquet reader asks
    /// for many small ranges (the footer's length, then the footer, then
    /// each column chunk), most of them next to the one before.
    block: Mutex<Option<(u64, Bytes)>>,
}

/// The least a ranged GET of a [`RemoteObject`] fetches: an object up to
/// this size is read in one request, a larger one in blocks of it around
/// what the reader asks for. Bounds what one open object holds in memory
/// (besides what the reader asked for at once).
pub const READ_BLOCK: u64 = 1 << 20;

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
            block: Mutex::new(None),
        })
    }

    fn range(&self, start: u64, len: u64) -> parquet::errors::Result<Bytes> {
        let end = (start + len).min(self.len);
        if start >= end {
            return Ok(Bytes::new());
        }
        let mut block = self.block.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, bytes)) = block.as_ref()
            && *at <= start
            && end <= at + bytes.len() as u64
        {
            return Ok(bytes.slice((start - at) as usize..(end - at) as usize));
        }
        // A block around the request: a read near the end (the footer)
        // takes the block before it, any other the block from it on.
        let (from, to) = if end - start >= READ_BLOCK {
            (start, end)
        } else if end == self.len {
            (self.len.saturating_sub(READ_BLOCK).min(start), end)
        } else {
            (start, (start + READ_BLOCK).min(self.len))
        };
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
        let slice = bytes.slice((start - from) as usize..(end - from) as usize);
        *block = Some((from, bytes));
        Ok(slice)
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
    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf as _;
        use std::io::Read as _;
        let head = self.range(start, (self.len.saturating_sub(start)).min(READ_BLOCK))?;
        let rest = self
            .store
            .reader(&self.key, self.len)
            .starting_at(start + head.len() as u64);
        Ok(head.reader().chain(rest))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.range(start, length as u64)
    }
}
