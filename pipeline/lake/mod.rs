//! The Parquet lake, in a local folder or in object storage: layout, who
//! may change it (a file lock, or a lease: remote.rs), partition files,
//! reading stored event ids, and atomic commits. Every read and write of a
//! lake file goes through this module.
//!
//! A lake's root is a path, or the URL of a bucket prefix (`s3://`, `gs://`,
//! `az://`); the paths of its files are the root joined with their keys
//! (`s3://bucket/lake/api_usage/date=.../part-....parquet`), so that every
//! message names the file as the user would find it.
//!
//! ```text
//! <lake>/_lake.json                          layout version
//! <lake>/_lock                               held by the running job (local folder)
//! <lake>/_lease.json                         who may change it (object storage)
//! <lake>/_runs/<run_id>.json                 run reports
//! <lake>/_runs/<run_id>.commit.json          a commit in progress (rolled forward on open)
//! <lake>/_registry/customers.csv             the registry the last ingest used
//! <lake>/<table>/date=YYYY-MM-DD/part-<run_id>-NNNN.parquet
//! <lake>/<table>/date=YYYY-MM-DD/part-<run_id>-NNNN.ids      its id index (idindex.rs)
//! ```

pub mod compact;
pub mod copy;
pub mod duck;
pub mod erase;
pub mod fault;
pub mod idindex;
pub mod lease;
pub mod remote;
pub mod retention;
pub mod store;
pub mod stripe_record;
pub mod tables;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};

use crate::lake::lease::{Claim, Mode};
use crate::lake::remote::{Remote, RemoteObject};
use crate::lake::tables::Table;
use crate::model::error::{Error, IoContext, Result};
use crate::model::ids::IdSet;
use crate::model::shard::Shard;

/// The layout this meter writes. Version 1 had no id indexes: a job that
/// writes to such a lake first gives every raw file its index
/// ([`Lake::upgrade_layout`]); readers read both.
pub const LAYOUT_VERSION: u32 = 2;

#[derive(Debug, Serialize, Deserialize)]
struct LakeMeta {
    layout_version: u32,
    tables: Vec<String>,
    created_by: String,
}

/// An open lake: the lock or lease is held for as long as this value
/// lives (none for a lake opened with [`Lake::open_read`]).
pub struct Lake {
    root: PathBuf,
    backend: Backend,
    /// One commit at a time in this process: a run's commits share its
    /// journal (`_runs/<run id>.commit.json`), and a stage may work on
    /// several partitions at once.
    commits: std::sync::Mutex<()>,
}

enum Backend {
    /// `_lock`, and for a shared holder the lock file of its claim.
    Local {
        _lock: Option<File>,
        _scope: Option<ScopeLock>,
    },
    Remote(Remote),
}

/// A held `_locks/<job>-<scope>.lock` ([`scope_lock_name`]): removed when
/// the run ends (a file left by a killed run is removed by the next shared
/// job that looks).
struct ScopeLock {
    /// Held until the lock is dropped, after its file is removed.
    _file: File,
    path: PathBuf,
}

impl Drop for ScopeLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A Parquet file being written; [`PartWriter::finish`] gives the rename
/// that makes it visible at commit. A raw table's file is written with its
/// id index ([`idindex`]), which the commit moves with it.
pub struct PartWriter {
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    target: Target,
    index: Option<(idindex::IndexWriter, Target)>,
    pub rows: usize,
}

/// A lake file being written by another writer (polars): write to `file`,
/// then [`NewFile::finish`] gives the rename that makes it visible at commit.
/// `file` is buffered: polars' Parquet writer writes a byte at a time.
pub struct NewFile {
    pub file: std::io::BufWriter<File>,
    /// The local file written, for messages.
    pub path: PathBuf,
    target: Target,
}

impl NewFile {
    pub fn finish(self) -> Result<(PathBuf, PathBuf)> {
        let file = self
            .file
            .into_inner()
            .map_err(|e| e.into_error())
            .write_ctx(&self.path)?;
        drop(file);
        self.target.finish()
    }
}

/// Where a file written locally goes before its commit.
struct Target {
    /// The local file written.
    local: PathBuf,
    final_path: PathBuf,
    /// For a lake in object storage: the store, the key the finished file
    /// is staged under and that key's path (`local` is then a spool file).
    upload: Option<(Arc<crate::lake::store::Store>, String, PathBuf)>,
}

impl Target {
    /// Uploads the written file to its staging key (object storage), and
    /// gives (file to rename at commit, final path).
    fn finish(self) -> Result<(PathBuf, PathBuf)> {
        let Some((store, staged_key, staged_path)) = self.upload else {
            crate::lake::fault::file_written();
            return Ok((self.local, self.final_path));
        };
        let uploaded = store.put_file(&staged_key, &self.local);
        let _ = fs::remove_file(&self.local);
        uploaded?;
        Ok((staged_path, self.final_path))
    }
}

impl PartWriter {
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows();
        if let Some((index, _)) = &mut self.index {
            index.push_batch(batch)?;
        }
        self.writer.write(batch).map_err(|source| Error::Parquet {
            path: self.tmp.clone(),
            source,
        })
    }

    /// Memory the row group being written holds (its encoded pages).
    pub fn memory_size(&self) -> usize {
        self.writer.memory_size()
    }

    /// Rows of the row group being written.
    pub fn open_rows(&self) -> usize {
        self.writer.in_progress_rows()
    }

    /// Row groups ended so far.
    pub fn row_groups(&self) -> usize {
        self.writer.flushed_row_groups().len()
    }

    /// Ends the row group being written: its pages go to the file and the
    /// memory they held is freed.
    pub fn end_row_group(&mut self) -> Result<()> {
        self.writer.flush().map_err(|source| Error::Parquet {
            path: self.tmp.clone(),
            source,
        })
    }

    /// Closes the file (and its index); gives the data file's rename (the
    /// commit moves its index with it).
    pub fn finish(self) -> Result<(PathBuf, PathBuf)> {
        self.writer.close().map_err(|source| Error::Parquet {
            path: self.tmp.clone(),
            source,
        })?;
        if let Some((index, target)) = self.index {
            let data_len = fs::metadata(&self.tmp).write_ctx(&self.tmp)?.len();
            index.finish(data_len)?;
            target.finish()?;
        }
        self.target.finish()
    }
}

/// File operations that make a run's output visible, written down before
/// they start so that an interrupted commit is finished by the next run.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Commit {
    pub renames: Vec<(PathBuf, PathBuf)>,
    pub deletes: Vec<PathBuf>,
}

impl Lake {
    /// Opens (creating if needed) the lake at `root` and takes it for this
    /// job alone: its file lock, or in object storage its lease, exclusive.
    pub fn open(root: &Path, run_id: &str) -> Result<Lake> {
        Lake::open_as(root, run_id, Claim::EXCLUSIVE)
    }

    /// Opens the lake for an ingest of `shard` of the input, beside the
    /// ingests of the other shards of its split: in object storage a shared
    /// lease, in a local folder a shared lock on `_lock` and an exclusive one
    /// on `_locks/ingest-<I>-of-<N>.lock`. Exclusive jobs (erasure,
    /// retention, compaction, rebuilds) respect both; an ingest whose shard
    /// overlaps a running one's ([`Shard::overlaps`]) is refused.
    pub fn open_shared(root: &Path, run_id: &str, shard: Shard) -> Result<Lake> {
        Lake::open_as(root, run_id, Claim::shard(shard))
    }

    /// Opens the lake for `claim`: alone ([`Claim::EXCLUSIVE`], as
    /// [`Lake::open`]), or for a part of the work beside the jobs doing the
    /// other parts (an ingest's shard, as [`Lake::open_shared`]; a rollup's
    /// date, with the lock file `_locks/rollup-date-<date>.lock` on a local
    /// lake). Whoever the claim cannot run beside ([`Claim::blocked_by`]) is
    /// refused with [`Error::Locked`].
    pub fn open_as(root: &Path, run_id: &str, claim: Claim) -> Result<Lake> {
        if remote::is_remote(root) {
            let remote = Remote::open(&root.to_string_lossy(), run_id, claim)?;
            let lake = Lake {
                root: root.to_path_buf(),
                commits: Default::default(),
                backend: Backend::Remote(remote),
            };
            lake.check_layout()?;
            lake.upgrade_layout()?;
            return Ok(lake);
        }
        let root = &remote::local_root(root);
        fs::create_dir_all(root).write_ctx(root)?;
        let lock_path = root.join("_lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .write_ctx(&lock_path)?;
        let taken = match claim.mode {
            Mode::Exclusive => lock.try_lock(),
            Mode::Shared => lock.try_lock_shared(),
        };
        match taken {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: root.to_path_buf(),
                    holder: local_holder(root, &lock_path),
                });
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(Error::Write {
                    path: lock_path,
                    source: e,
                });
            }
        }
        let me = format!("run {run_id}, pid {}", std::process::id());
        let (scope, live) = match claim.mode {
            Mode::Exclusive => {
                lock.set_len(0).write_ctx(&lock_path)?;
                (&lock).write_all(me.as_bytes()).write_ctx(&lock_path)?;
                (None, Vec::new())
            }
            Mode::Shared => {
                let (lock, live) = local_scope_lock(root, job_of(run_id), claim, &me)?;
                (Some(lock), live)
            }
        };
        let lake = Lake {
            root: root.to_path_buf(),
            commits: Default::default(),
            backend: Backend::Local {
                _lock: Some(lock),
                _scope: scope,
            },
        };
        lake.check_layout()?;
        lake.recover(&live)?;
        lake.upgrade_layout()?;
        Ok(lake)
    }

    /// Whether the lake is a local folder: DuckDB may then read its files
    /// by path ([`duck`]); a lake in object storage it cannot.
    pub fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local { .. })
    }

    /// Refuses a directory that is not a lake yet (no `_lake.json`): the
    /// jobs that work on an existing lake call it before [`Lake::open`],
    /// which would create one.
    pub fn require(root: &Path) -> Result<()> {
        let exists = if remote::is_remote(root) {
            let store = crate::lake::store::Store::open(&root.to_string_lossy())?;
            // A missing bucket answers a HEAD with a bare 404, as a missing
            // object does; a listing says which it is.
            store.size("_lake.json")?.is_some() || {
                store.list_dirs("")?;
                false
            }
        } else {
            remote::local_root(root).join("_lake.json").is_file()
        };
        if exists {
            return Ok(());
        }
        Err(Error::NotALake {
            path: root.to_path_buf(),
        })
    }

    /// Opens an existing lake to read, without its lock: readers (report,
    /// reconcile, query, explain) never hold up a scheduled job, and change
    /// no table (they may add their own run report). Files appear and go only by rename, so a reader sees whole
    /// files; a commit that is in progress, or that a killed run left for
    /// the next run to finish, is refused rather than read half-applied.
    pub fn open_read(root: &Path) -> Result<Lake> {
        Lake::require(root)?;
        if remote::is_remote(root) {
            let lake = Lake {
                root: root.to_path_buf(),
                commits: Default::default(),
                backend: Backend::Remote(Remote::open_read(&root.to_string_lossy())?),
            };
            lake.check_layout()?;
            return Ok(lake);
        }
        let root = &remote::local_root(root);
        let lake = Lake {
            root: root.to_path_buf(),
            commits: Default::default(),
            backend: Backend::Local {
                _lock: None,
                _scope: None,
            },
        };
        lake.check_layout()?;
        if let Ok(entries) = fs::read_dir(root.join("_runs"))
            && let Some(journal) = entries
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(".commit.json"))
        {
            return Err(Error::Lake {
                path: journal,
                message: "a run's commit is in progress or was interrupted: try again in a moment; if no job is running, the next job (or `meter ingest`) finishes it".into(),
            });
        }
        Ok(lake)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn check_layout(&self) -> Result<()> {
        let path = self.root.join("_lake.json");
        if let Some(bytes) = self.read_file(&path)? {
            let meta: LakeMeta = serde_json::from_slice(&bytes).map_err(|e| Error::Lake {
                path: path.clone(),
                message: format!("unreadable layout file: {e}"),
            })?;
            if meta.layout_version != LAYOUT_VERSION && meta.layout_version != 1 {
                return Err(Error::Lake {
                    path,
                    message: format!(
                        "layout version {} but this meter writes version {LAYOUT_VERSION}",
                        meta.layout_version
                    ),
                });
            }
            return Ok(());
        }
        let meta = LakeMeta {
            layout_version: LAYOUT_VERSION,
            tables: Table::ALL.iter().map(|t| t.name().to_string()).collect(),
            created_by: format!("meter {}", env!("CARGO_PKG_VERSION")),
        };
        self.write_file(
            &path,
            serde_json::to_string_pretty(&meta)
                .expect("serializable")
                .as_bytes(),
        )
    }

    /// Upgrades a lake of layout 1 (no id indexes) to [`LAYOUT_VERSION`]:
    /// writes the index of every raw file that has none, then the new
    /// version. Safe to interrupt and to run in two processes at once (an
    /// index is the same bytes whoever writes it, and written atomically).
    fn upgrade_layout(&self) -> Result<()> {
        let path = self.root.join("_lake.json");
        let Some(bytes) = self.read_file(&path)? else {
            return Ok(());
        };
        let mut meta: LakeMeta = serde_json::from_slice(&bytes).map_err(|e| Error::Lake {
            path: path.clone(),
            message: format!("unreadable layout file: {e}"),
        })?;
        if meta.layout_version != 1 {
            return Ok(());
        }
        for table in Table::ALL {
            for date in self.partition_dates(table)? {
                for data in self.partition_files(table, date)? {
                    if !self.exists(&idindex::index_path(&data))? {
                        self.write_index(&data)?;
                    }
                }
            }
        }
        meta.layout_version = LAYOUT_VERSION;
        self.write_file(
            &path,
            serde_json::to_string_pretty(&meta)
                .expect("serializable")
                .as_bytes(),
        )
    }

    /// The key of a lake file in its store (`/`-separated, relative to the root).
    fn key(&self, path: &Path) -> Result<String> {
        let rel = path.strip_prefix(&self.root).map_err(|_| Error::Lake {
            path: path.to_path_buf(),
            message: format!("not a file of the lake {}", self.root.display()),
        })?;
        Ok(rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"))
    }

    /// Reads a whole (small) lake file, such as a run report or the
    /// registry copy; `None` when there is none.
    pub fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        match &self.backend {
            Backend::Local { .. } => match fs::read(path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::Read {
                    path: path.to_path_buf(),
                    source: e,
                }),
            },
            Backend::Remote(r) => r.store.get(&self.key(path)?),
        }
    }

    /// Writes a whole (small) lake file, atomically: readers see the old
    /// bytes or the new, never a part.
    pub fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        match &self.backend {
            Backend::Local { .. } => {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir).write_ctx(dir)?;
                }
                write_atomic(path, bytes)
            }
            Backend::Remote(r) => r.store.put(&self.key(path)?, bytes.to_vec()),
        }
    }

    /// Opens a lake file to add lines to, each durable when
    /// [`AppendFile::append`] returns. It first cuts the file to `keep`
    /// bytes (a torn last line) or, with `end_line`, ends an unterminated
    /// last line. In object storage, which cannot append, every append
    /// writes the whole object again.
    pub fn append_file(
        &self,
        path: &Path,
        keep: Option<u64>,
        end_line: bool,
    ) -> Result<AppendFile> {
        match &self.backend {
            Backend::Local { .. } => {
                let dir = path.parent().expect("a lake file is in a folder");
                let created = !path.exists();
                fs::create_dir_all(dir).write_ctx(dir)?;
                let mut file = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .write_ctx(path)?;
                if let Some(keep) = keep {
                    file.set_len(keep).write_ctx(path)?;
                }
                if end_line {
                    file.write_all(b"\n").write_ctx(path)?;
                }
                file.sync_all().write_ctx(path)?;
                if created {
                    // The new file's name is durable too.
                    File::open(dir).and_then(|d| d.sync_all()).write_ctx(dir)?;
                }
                Ok(AppendFile {
                    path: path.to_path_buf(),
                    inner: Appending::Local(file),
                })
            }
            Backend::Remote(r) => {
                let key = self.key(path)?;
                let mut bytes = r.store.get(&key)?.unwrap_or_default();
                if let Some(keep) = keep {
                    bytes.truncate(keep as usize);
                }
                if end_line {
                    bytes.push(b'\n');
                }
                Ok(AppendFile {
                    path: path.to_path_buf(),
                    inner: Appending::Remote {
                        store: r.store.clone(),
                        key,
                        bytes,
                    },
                })
            }
        }
    }

    /// Removes a lake file outside a commit (a file no table holds);
    /// removing what is not there is no error.
    pub fn remove_file(&self, path: &Path) -> Result<()> {
        match &self.backend {
            Backend::Local { .. } => match fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::Write {
                    path: path.to_path_buf(),
                    source: e,
                }),
            },
            Backend::Remote(r) => r.store.delete(&self.key(path)?),
        }
    }

    /// The size of a lake file in bytes.
    pub fn file_size(&self, path: &Path) -> Result<u64> {
        match &self.backend {
            Backend::Local { .. } => Ok(fs::metadata(path).read_ctx(path)?.len()),
            Backend::Remote(r) => {
                let key = self.key(path)?;
                r.store.size(&key)?.ok_or_else(|| Error::Lake {
                    path: path.to_path_buf(),
                    message: "no such object".into(),
                })
            }
        }
    }

    /// Rows of a Parquet file, from its footer.
    pub fn footer_rows(&self, path: &Path) -> Result<u64> {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let perr = |source| Error::Parquet {
            path: path.to_path_buf(),
            source,
        };
        let rows = match &self.backend {
            Backend::Local { .. } => {
                let file = File::open(path).read_ctx(path)?;
                let reader = SerializedFileReader::new(file).map_err(perr)?;
                reader.metadata().file_metadata().num_rows()
            }
            Backend::Remote(r) => {
                let object = RemoteObject::open(&r.store, &self.key(path)?)?;
                let reader = SerializedFileReader::new(object).map_err(perr)?;
                reader.metadata().file_metadata().num_rows()
            }
        };
        Ok(rows.max(0) as u64)
    }

    /// When a lake file was last written.
    pub fn modified(&self, path: &Path) -> Result<std::time::SystemTime> {
        match &self.backend {
            Backend::Local { .. } => fs::metadata(path).and_then(|m| m.modified()).read_ctx(path),
            Backend::Remote(r) => match r.store.stat(&self.key(path)?)? {
                Some((_, modified)) => Ok(modified),
                None => Err(Error::Lake {
                    path: path.to_path_buf(),
                    message: "no such object".into(),
                }),
            },
        }
    }

    /// The column names of a Parquet file, from its footer.
    pub fn column_names(&self, path: &Path) -> Result<Vec<String>> {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let perr = |source| Error::Parquet {
            path: path.to_path_buf(),
            source,
        };
        let schema = match &self.backend {
            Backend::Local { .. } => {
                let file = File::open(path).read_ctx(path)?;
                let reader = SerializedFileReader::new(file).map_err(perr)?;
                reader.metadata().file_metadata().schema_descr_ptr()
            }
            Backend::Remote(r) => {
                let object = RemoteObject::open(&r.store, &self.key(path)?)?;
                let reader = SerializedFileReader::new(object).map_err(perr)?;
                reader.metadata().file_metadata().schema_descr_ptr()
            }
        };
        Ok(schema
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect())
    }

    /// SHA-256 (hex) and size of a file: a lake file through the lake's
    /// store, any other path from the local disk.
    pub fn digest(&self, path: &Path) -> Result<(String, u64)> {
        let bytes = if path.starts_with(&self.root) {
            self.read_file(path)?.ok_or_else(|| Error::Lake {
                path: path.to_path_buf(),
                message: "no such file".into(),
            })?
        } else {
            fs::read(path).read_ctx(path)?
        };
        Ok((crate::model::ids::sha256_hex(&bytes), bytes.len() as u64))
    }

    /// Makes a written file durable before a commit deletes what it
    /// replaces (an uploaded object already is).
    pub fn sync_file(&self, path: &Path) -> Result<()> {
        match &self.backend {
            Backend::Local { .. } => {
                File::open(path)
                    .and_then(|f| f.sync_all())
                    .write_ctx(path)?;
                // A data file's index, written with it.
                let index = idindex::index_path(path);
                if path.to_string_lossy().ends_with(".parquet.tmp") && index.exists() {
                    File::open(&index)
                        .and_then(|f| f.sync_all())
                        .write_ctx(&index)?;
                }
                Ok(())
            }
            Backend::Remote(_) => Ok(()),
        }
    }

    /// The files directly in `dir` (not in its subfolders), sorted.
    pub fn files_in(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        Ok(self
            .sized_files_in(dir)?
            .into_iter()
            .map(|(p, _)| p)
            .collect())
    }

    /// The files directly in `dir` with their sizes in bytes, sorted.
    pub fn sized_files_in(&self, dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
        let mut out: Vec<(PathBuf, u64)> = match &self.backend {
            Backend::Local { .. } => {
                let entries = match fs::read_dir(dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => {
                        return Err(Error::Read {
                            path: dir.to_path_buf(),
                            source: e,
                        });
                    }
                };
                let mut out = Vec::new();
                for entry in entries {
                    let entry = entry.read_ctx(dir)?;
                    let path = entry.path();
                    let meta = fs::symlink_metadata(&path).read_ctx(&path)?;
                    if !meta.is_dir() {
                        out.push((path, meta.len()));
                    }
                }
                out
            }
            Backend::Remote(r) => {
                let dir_key = self.key(dir)?;
                let prefix = format!("{dir_key}/");
                r.store
                    .list(&dir_key)?
                    .into_iter()
                    .filter_map(|(key, size)| {
                        let name = key.strip_prefix(&prefix)?;
                        (!name.contains('/')).then(|| (dir.join(name), size))
                    })
                    .collect()
            }
        };
        out.sort();
        Ok(out)
    }

    /// Removes the folder `dir` if it is empty; false if it holds something.
    /// (Object stores have no folders: a prefix is gone with its last object.)
    pub fn remove_empty_dir(&self, dir: &Path) -> bool {
        match &self.backend {
            Backend::Local { .. } => !dir.exists() || fs::remove_dir(dir).is_ok(),
            Backend::Remote(_) => true,
        }
    }

    /// The names of the folders directly in `dir`, sorted.
    pub fn dirs_in(&self, dir: &Path) -> Result<Vec<String>> {
        let mut out: Vec<String> = match &self.backend {
            Backend::Local { .. } => {
                let Ok(entries) = fs::read_dir(dir) else {
                    return Ok(Vec::new());
                };
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            }
            Backend::Remote(r) => r.store.list_dirs(&self.key(dir)?)?,
        };
        out.sort();
        Ok(out)
    }

    /// Finishes commits that a previous run started, and removes temporary
    /// files that a crashed run left behind (a local folder; see remote.rs
    /// for object storage).
    fn recover(&self, live: &[String]) -> Result<()> {
        // Ingest's parts are `part-<run>-NNNN`, the rollup's `part-<run>`.
        let of_live = |name: &str| {
            live.iter().any(|id| {
                name.contains(&format!("part-{id}-")) || name.contains(&format!("part-{id}."))
            })
        };
        let runs = self.root.join("_runs");
        if let Ok(entries) = fs::read_dir(&runs) {
            for entry in entries.flatten() {
                let path = entry.path();
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let Some(run) = name.strip_suffix(".commit.json") else {
                    continue;
                };
                // Another shard's commit, under way.
                if live.iter().any(|id| id == run) {
                    continue;
                }
                let text = fs::read_to_string(&path).read_ctx(&path)?;
                let commit: Commit = serde_json::from_str(&text).map_err(|e| Error::Lake {
                    path: path.clone(),
                    message: format!("unreadable commit journal: {e}"),
                })?;
                apply(&commit)?;
                fs::remove_file(&path).write_ctx(&path)?;
            }
        }
        remove_tmp_files(&self.root, &of_live)?;
        // An erasure record written before its commit, which never came.
        let records = self.root.join("_erasures");
        if let Ok(entries) = fs::read_dir(&records) {
            for path in entries.flatten().map(|e| e.path()) {
                if path.to_string_lossy().ends_with(".json.tmp") {
                    fs::remove_file(&path).write_ctx(&path)?;
                }
            }
        }
        Ok(())
    }

    /// `<lake>/<rel>/date=YYYY-MM-DD`, for derived tables such as `priced/api_usage`.
    /// Where ingest keeps a copy of the `customers.csv` it attributed
    /// events with; billing reads it unless told otherwise.
    pub fn registry_path(root: &Path) -> PathBuf {
        root.join("_registry").join("customers.csv")
    }

    /// The customers to bill with, leniently read (the sound customers and
    /// a problem per bad row): the file `given`, else the registry copy
    /// ingest saved in the lake.
    pub fn customers(
        &self,
        given: Option<&Path>,
    ) -> Result<(crate::model::registry::Registry, Vec<Error>)> {
        if let Some(path) = given {
            return crate::load::customers(path);
        }
        let path = Lake::registry_path(&self.root);
        let Some(bytes) = self.read_file(&path)? else {
            return Err(Error::Usage(format!(
                "no --customers given and the lake has no registry copy at {} (ingest saves one): pass --customers FILE",
                path.display()
            )));
        };
        let text = String::from_utf8(bytes).map_err(|e| Error::Read {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        crate::model::registry::Registry::parse_customers(&text, &path)
    }

    /// Whether a lake file exists.
    pub fn exists(&self, path: &Path) -> Result<bool> {
        match &self.backend {
            Backend::Local { .. } => Ok(path.exists()),
            Backend::Remote(r) => Ok(r.store.size(&self.key(path)?)?.is_some()),
        }
    }

    /// Where to write a file that a commit will rename to `path`: beside
    /// it (`<name>.tmp`) in a local folder, under the run's staging prefix
    /// in object storage. Removed with the run's other leftovers if the
    /// commit never comes.
    pub fn staging_path(&self, path: &Path) -> Result<PathBuf> {
        match &self.backend {
            Backend::Local { .. } => {
                let mut name = path.as_os_str().to_owned();
                name.push(".tmp");
                Ok(PathBuf::from(name))
            }
            Backend::Remote(r) => Ok(self
                .root
                .join(Remote::staged_key(r.run_id(), &self.key(path)?))),
        }
    }

    /// The copy of `contracts.toml` beside the registry copy.
    pub fn contracts_path(root: &Path) -> PathBuf {
        root.join("_registry").join("contracts.toml")
    }

    /// Saves the registry copy and the contracts beside it (unchanged
    /// bytes leave a file untouched; no contracts in the input removes the
    /// copy, so a contract taken out stops applying).
    pub fn save_registry(&self, customers_csv: &[u8], contracts: Option<&[u8]>) -> Result<()> {
        let path = Lake::registry_path(&self.root);
        if self
            .read_file(&path)?
            .is_none_or(|old| old != customers_csv)
        {
            self.write_file(&path, customers_csv)?;
        }
        let path = Lake::contracts_path(&self.root);
        match contracts {
            Some(bytes) => {
                if self.read_file(&path)?.is_none_or(|old| old != bytes) {
                    self.write_file(&path, bytes)?;
                }
            }
            None => {
                if self.exists(&path)? {
                    self.remove_file(&path)?;
                }
            }
        }
        Ok(())
    }

    pub fn dated_dir(&self, rel: &str, date: NaiveDate) -> PathBuf {
        self.root
            .join(rel)
            .join(format!("date={}", date.format("%Y-%m-%d")))
    }

    /// The committed Parquet files of a directory, sorted.
    pub fn parquet_files(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        Ok(self
            .files_in(dir)?
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect())
    }

    /// The committed Parquet files of each of `dirs`, in order. In object
    /// storage every listing is a request: the folders holding `dirs` are
    /// listed once each, and only the `dirs` that exist are listed (a month
    /// of daily folders, most of them absent, costs a few requests, not 31).
    pub fn parquet_files_of(&self, dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
        let mut present: std::collections::HashMap<PathBuf, std::collections::BTreeSet<String>> =
            std::collections::HashMap::new();
        // A folder asked for alone is listed directly: listing its parent
        // first would cost a request more.
        let mut siblings: std::collections::HashMap<&Path, usize> =
            std::collections::HashMap::new();
        for dir in dirs {
            *siblings.entry(dir.parent().unwrap_or(dir)).or_default() += 1;
        }
        let mut out = Vec::new();
        for dir in dirs {
            if let (Backend::Remote(_), Some(parent), Some(name)) =
                (&self.backend, dir.parent(), dir.file_name())
                && siblings[parent] > 2
            {
                if !present.contains_key(parent) {
                    let names = self.dirs_in(parent)?.into_iter().collect();
                    present.insert(parent.to_path_buf(), names);
                }
                if !present[parent].contains(&*name.to_string_lossy()) {
                    continue;
                }
            }
            out.extend(self.parquet_files(dir)?);
        }
        Ok(out)
    }

    /// Reads a Parquet file as record batches of up to 64k rows.
    pub fn read_batches(&self, path: &Path) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        self.read_each(path, |batch| {
            out.push(upgrade_legacy_rejects(batch));
            Ok(())
        })?;
        Ok(out)
    }

    /// Reads a Parquet file batch by batch, and gives its columns.
    pub fn read_each(
        &self,
        path: &Path,
        f: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<arrow::datatypes::SchemaRef> {
        self.read_projected(path, None, f)
    }

    /// Reads a Parquet file batch by batch, only the `columns` named (all
    /// when `None`; a column the file lacks is simply not in the batches),
    /// and gives the columns read. A file in object storage is read by
    /// ranges: the footer, then the column chunks asked for.
    fn read_projected(
        &self,
        path: &Path,
        columns: Option<&[&str]>,
        mut f: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<arrow::datatypes::SchemaRef> {
        let reader = self.parquet_reader(path, columns)?;
        let schema = arrow::record_batch::RecordBatchReader::schema(&reader);
        for batch in reader {
            f(batch.map_err(|e| Error::Parquet {
                path: path.to_path_buf(),
                source: e.into(),
            })?)?;
        }
        Ok(schema)
    }

    /// The columns [`Lake::read_columns`] would give (all when `None`),
    /// from the file's footer: what a file without rows has.
    pub fn read_schema(
        &self,
        path: &Path,
        columns: Option<&[&str]>,
    ) -> Result<arrow::datatypes::SchemaRef> {
        let reader = self.parquet_reader(path, columns)?;
        Ok(arrow::record_batch::RecordBatchReader::schema(&reader))
    }

    fn parquet_reader(
        &self,
        path: &Path,
        columns: Option<&[&str]>,
    ) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
        let perr = |source| Error::Parquet {
            path: path.to_path_buf(),
            source,
        };
        match &self.backend {
            Backend::Local { .. } => {
                let file = File::open(path).read_ctx(path)?;
                let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(perr)?;
                project(builder, columns).build().map_err(perr)
            }
            Backend::Remote(r) => {
                let object = RemoteObject::open(&r.store, &self.key(path)?)?;
                let builder = ParquetRecordBatchReaderBuilder::try_new(object).map_err(perr)?;
                project(builder, columns).build().map_err(perr)
            }
        }
    }

    /// Reads only the named columns of a Parquet file, batch by batch (a
    /// column the file lacks is simply not in the batches).
    pub fn read_columns(
        &self,
        path: &Path,
        names: &[&str],
        f: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        self.read_projected(path, Some(names), f).map(|_| ())
    }

    /// Reads only the named text columns of a Parquet file, batch by batch:
    /// `f` gets them in the order asked, `None` for a column the file lacks. A
    /// column that is there but not text is an error naming the file.
    pub fn read_text_columns(
        &self,
        path: &Path,
        names: &[&str],
        mut f: impl FnMut(&[Option<&StringArray>]) -> Result<()>,
    ) -> Result<()> {
        self.read_columns(path, names, |batch| {
            let mut cols = Vec::with_capacity(names.len());
            for name in names {
                cols.push(match batch.column_by_name(name) {
                    None => None,
                    Some(col) => {
                        Some(col.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                            Error::Lake {
                                path: path.to_path_buf(),
                                message: format!("{name} is not text"),
                            }
                        })?)
                    }
                });
            }
            f(&cols)
        })
    }

    /// Starts a new Parquet file `<dir>/<name>.parquet`, written under a
    /// temporary name until the run commits.
    pub fn part_writer(
        &self,
        dir: &Path,
        name: &str,
        schema: arrow::datatypes::SchemaRef,
    ) -> Result<PartWriter> {
        let (file, tmp, target) = self.new_target(dir, name)?;
        let index = if self.is_raw_file(&target.final_path) && idindex::indexable(&schema) {
            let (file, path, target) = self.new_target_named(
                dir,
                &format!("{name}.{}", idindex::EXT),
                &idindex::index_path(&tmp),
            )?;
            drop(file);
            Some((idindex::IndexWriter::create(&path)?, target))
        } else {
            None
        };
        let writer =
            ArrowWriter::try_new(file, schema, Some(writer_props())).map_err(|source| {
                Error::Parquet {
                    path: tmp.clone(),
                    source,
                }
            })?;
        Ok(PartWriter {
            writer,
            tmp,
            target,
            index,
            rows: 0,
        })
    }

    /// Starts a new file `<dir>/<name>.parquet` for another writer,
    /// written aside until the run commits.
    pub fn new_file(&self, dir: &Path, name: &str) -> Result<NewFile> {
        let (file, path, target) = self.new_target(dir, name)?;
        Ok(NewFile {
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            path,
            target,
        })
    }

    /// The file a new lake file `<dir>/<name>.parquet` is written to, its
    /// path, and where it goes at commit.
    fn new_target(&self, dir: &Path, name: &str) -> Result<(File, PathBuf, Target)> {
        let local = dir.join(format!("{name}.parquet.tmp"));
        self.new_target_named(dir, &format!("{name}.parquet"), &local)
    }

    /// [`Lake::new_target`] of the file `<dir>/<file_name>`, written at
    /// `local_tmp` in a local folder.
    fn new_target_named(
        &self,
        dir: &Path,
        file_name: &str,
        local_tmp: &Path,
    ) -> Result<(File, PathBuf, Target)> {
        let final_path = dir.join(file_name);
        let (local, upload) = match &self.backend {
            Backend::Local { .. } => {
                fs::create_dir_all(dir).write_ctx(dir)?;
                (local_tmp.to_path_buf(), None)
            }
            Backend::Remote(r) => {
                let key = self.key(&final_path)?;
                let staged = Remote::staged_key(r.run_id(), &key);
                let staged_path = self.root.join(&staged);
                (
                    r.spool_path(&key),
                    Some((r.store.clone(), staged, staged_path)),
                )
            }
        };
        let file = File::create(&local).write_ctx(&local)?;
        let target = Target {
            local: local.clone(),
            final_path,
            upload,
        };
        Ok((file, local, target))
    }

    /// A lake file's bytes, whole, for a reader that wants them at once
    /// (polars reads a daily aggregate so): an open file in a local folder.
    pub fn open_whole(&self, path: &Path) -> Result<WholeFile> {
        match &self.backend {
            Backend::Local { .. } => Ok(WholeFile::Local(File::open(path).read_ctx(path)?)),
            Backend::Remote(_) => match self.read_file(path)? {
                Some(bytes) => Ok(WholeFile::Bytes(bytes)),
                None => Err(Error::Lake {
                    path: path.to_path_buf(),
                    message: "no such object: the lake changed while it was read; run again".into(),
                }),
            },
        }
    }

    pub fn partition_dir(&self, table: Table, date: NaiveDate) -> PathBuf {
        self.root
            .join(table.name())
            .join(format!("date={}", date.format("%Y-%m-%d")))
    }

    /// The dates with a `date=YYYY-MM-DD` directory under `<lake>/<rel>`
    /// (a table, or a derived table such as `daily/api_usage`), sorted.
    pub fn dates_under(&self, rel: &str) -> Result<Vec<NaiveDate>> {
        let mut out: Vec<NaiveDate> = self
            .dirs_in(&self.root.join(rel))?
            .iter()
            .filter_map(|name| partition_date(name))
            .collect();
        out.sort();
        Ok(out)
    }

    /// The dates of `range` whose `<lake>/<rel>/date=YYYY-MM-DD` holds a
    /// Parquet file, sorted: one listing of `rel` in object storage, where a
    /// folder exists only while an object is in it; a local folder may be
    /// empty, so there each dated folder of the range is looked into.
    pub fn dates_with_files(
        &self,
        rel: &str,
        range: std::ops::RangeInclusive<NaiveDate>,
    ) -> Result<Vec<NaiveDate>> {
        let mut out = Vec::new();
        for date in self.dates_under(rel)? {
            if range.contains(&date)
                && (!self.is_local() || !self.parquet_files(&self.dated_dir(rel, date))?.is_empty())
            {
                out.push(date);
            }
        }
        Ok(out)
    }

    /// The dates that have a partition directory for `table`.
    pub fn partition_dates(&self, table: Table) -> Result<Vec<NaiveDate>> {
        self.dates_under(table.name())
    }

    /// The committed Parquet files of one partition.
    pub fn partition_files(&self, table: Table, date: NaiveDate) -> Result<Vec<PathBuf>> {
        self.parquet_files(&self.partition_dir(table, date))
    }

    /// Whether `path` is a data file of a raw table's partition
    /// (`<lake>/<table>/date=YYYY-MM-DD/<name>.parquet`): the files that
    /// have an id index ([`idindex`]).
    pub fn is_raw_file(&self, path: &Path) -> bool {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        let Some(table_dir) = dir.parent() else {
            return false;
        };
        name.to_string_lossy().ends_with(".parquet")
            && dir
                .file_name()
                .is_some_and(|d| partition_date(&d.to_string_lossy()).is_some())
            && table_dir.parent() == Some(self.root.as_path())
            && table_dir
                .file_name()
                .is_some_and(|t| Table::ALL.iter().any(|x| x.name() == t.to_string_lossy()))
    }

    /// The id indexes of a raw partition's files, to read VM by VM. A file
    /// without one (a lake written before indexes, a file copied in) or
    /// with a damaged one gets it now, built from its rows and written
    /// beside it.
    pub fn partition_ids(&self, table: Table, date: NaiveDate) -> Result<PartitionIds> {
        let mut files = Vec::new();
        for (data, len) in self.sized_files_in(&self.partition_dir(table, date))? {
            if data.extension().is_some_and(|e| e == "parquet") {
                files.push(self.open_index(&data, len)?);
            }
        }
        Ok(PartitionIds { files })
    }

    /// The local file holding the index of `data` (`len` bytes; in object
    /// storage a copy in the run's spool folder), and its directory.
    fn open_index(&self, data: &Path, len: u64) -> Result<(PathBuf, idindex::Directory)> {
        let index = idindex::index_path(data);
        let local = match &self.backend {
            Backend::Local { .. } => {
                if !index.exists() {
                    self.write_index(data)?;
                }
                index.clone()
            }
            Backend::Remote(r) => {
                let bytes = match self.read_file(&index)? {
                    Some(bytes) => bytes,
                    None => self.write_index(data)?,
                };
                let local = r.spool_path(&self.key(&index)?);
                fs::write(&local, &bytes).write_ctx(&local)?;
                local
            }
        };
        match idindex::read_file_directory(&local) {
            Ok(dir) if dir.data_len == len => Ok((local, dir)),
            _ => {
                // Damaged: built again from the data file, which is the truth.
                let bytes = self.write_index(data)?;
                if !self.is_local() {
                    fs::write(&local, &bytes).write_ctx(&local)?;
                }
                Ok((local.clone(), idindex::read_file_directory(&local)?))
            }
        }
    }

    /// Builds the index of the raw file `data` from its rows and writes it
    /// beside it (atomically: the same bytes whoever writes it).
    pub fn write_index(&self, data: &Path) -> Result<Vec<u8>> {
        let bytes = self.index_bytes(data)?;
        self.write_file(&idindex::index_path(data), &bytes)?;
        Ok(bytes)
    }

    /// The index of the raw file `data`, built from its rows: the bytes its
    /// writer wrote with it.
    pub fn index_bytes(&self, data: &Path) -> Result<Vec<u8>> {
        let mut writer = idindex::IndexWriter::in_memory(&idindex::index_path(data));
        self.read_columns(data, &["vm_id", "event_id"], |batch| {
            writer.push_batch(&batch)
        })?;
        Ok(writer.finish(self.file_size(data)?)?.into_inner())
    }

    /// Removes a file written for a commit that is not coming (and its
    /// index, for a raw file).
    pub fn discard(&self, tmp: &Path) {
        let _ = self.remove_file(tmp);
        let _ = self.remove_file(&idindex::index_path(tmp));
    }

    /// `commit` with each raw file's index moved and removed with it.
    fn with_indexes(&self, commit: &Commit) -> Commit {
        let mut out = Commit {
            renames: commit.renames.clone(),
            deletes: commit.deletes.clone(),
        };
        for (from, to) in &commit.renames {
            if self.is_raw_file(to) {
                out.renames
                    .push((idindex::index_path(from), idindex::index_path(to)));
            }
        }
        for path in &commit.deletes {
            if self.is_raw_file(path) {
                out.deletes.push(idindex::index_path(path));
            }
        }
        out
    }

    /// Makes a run's files visible: journals the commit, applies it, and
    /// removes the journal.
    pub fn commit(&self, run_id: &str, commit: &Commit) -> Result<()> {
        if commit.renames.is_empty() && commit.deletes.is_empty() {
            return Ok(());
        }
        let _one_at_a_time = self
            .commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let commit = &self.with_indexes(commit);
        if let Backend::Remote(r) = &self.backend {
            let mut copies = Vec::with_capacity(commit.renames.len());
            for (from, to) in &commit.renames {
                copies.push((self.key(from)?, self.key(to)?));
            }
            let mut deletes = Vec::with_capacity(commit.deletes.len());
            for d in &commit.deletes {
                let d = self.key(d)?;
                if !copies.iter().any(|(_, to)| *to == d) {
                    deletes.push(d);
                }
            }
            // The record names the run that holds the lease.
            return r.commit(copies, deletes);
        }
        // A file this commit writes is never also one it removes. Paths are
        // journaled absolute: the run that finishes an interrupted commit
        // may have another working directory or name the lake otherwise.
        let abs = |p: &PathBuf| std::path::absolute(p).write_ctx(p);
        let mut renames = Vec::with_capacity(commit.renames.len());
        for (from, to) in &commit.renames {
            renames.push((abs(from)?, abs(to)?));
        }
        let mut deletes = Vec::with_capacity(commit.deletes.len());
        for d in &commit.deletes {
            let d = abs(d)?;
            if !renames.iter().any(|(_, to)| *to == d) {
                deletes.push(d);
            }
        }
        let commit = &Commit { renames, deletes };
        let runs = self.root.join("_runs");
        fs::create_dir_all(&runs).write_ctx(&runs)?;
        let journal = runs.join(format!("{run_id}.commit.json"));
        write_atomic(
            &journal,
            serde_json::to_string(commit)
                .expect("serializable")
                .as_bytes(),
        )?;
        apply(commit)?;
        fs::remove_file(&journal).write_ctx(&journal)?;
        // Empty partition directories left by a rebuild.
        for path in &commit.deletes {
            if let Some(dir) = path.parent() {
                let _ = fs::remove_dir(dir);
            }
        }
        Ok(())
    }

    pub fn write_report(&self, run_id: &str, json: &str) -> Result<PathBuf> {
        let path = self.root.join("_runs").join(format!("{run_id}.json"));
        self.write_file(&path, json.as_bytes())?;
        Ok(path)
    }
}

/// One raw partition's stored ids, read VM by VM from its files' indexes
/// ([`Lake::partition_ids`]): only the directories are held.
pub struct PartitionIds {
    /// Per file: the local file holding its index, and its directory.
    files: Vec<(PathBuf, idindex::Directory)>,
}

impl PartitionIds {
    /// Adds `vm`'s stored ids to `ids`.
    pub fn add_ids_of(&self, vm: &str, ids: &mut IdSet) -> Result<()> {
        for (path, dir) in &self.files {
            if let Some((first, n)) = dir.vms.get(vm) {
                idindex::read_ids(path, *first, *n, ids)?;
            }
        }
        Ok(())
    }
}

/// A lake file lines are added to: [`Lake::append_file`].
pub struct AppendFile {
    path: PathBuf,
    inner: Appending,
}

enum Appending {
    Local(File),
    Remote {
        store: Arc<crate::lake::store::Store>,
        key: String,
        bytes: Vec<u8>,
    },
}

impl AppendFile {
    /// Adds `line` (which ends with a newline) and makes it durable.
    pub fn append(&mut self, line: &[u8]) -> Result<()> {
        match &mut self.inner {
            Appending::Local(file) => {
                file.write_all(line).write_ctx(&self.path)?;
                file.sync_data().write_ctx(&self.path)
            }
            Appending::Remote { store, key, bytes } => {
                bytes.extend_from_slice(line);
                store.put(key, bytes.clone())
            }
        }
    }
}

/// What [`Lake::open_whole`] gives.
pub enum WholeFile {
    Local(File),
    Bytes(Vec<u8>),
}

/// Roots of the tables the rollup derives: `priced/<table>` (by date),
/// `daily/<table>` (by date) and `monthly/<table>` (by month).
pub const DERIVED_ROOTS: [&str; 3] = ["priced", "daily", "monthly"];

/// One partition directory of any table: `<lake>/<table>/<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDir {
    /// The table's directory under the lake: `api_usage`, `rejects`,
    /// `priced/api_usage`, `daily/activity`, `monthly/activity`.
    pub table: String,
    /// `date=YYYY-MM-DD` or `month=YYYY-MM`.
    pub key: String,
    /// The partition's day; the first of its month for `month=` partitions.
    pub date: NaiveDate,
    /// True for `month=YYYY-MM` partitions.
    pub monthly: bool,
    pub dir: PathBuf,
}

impl PartitionDir {
    /// `<table>/<key>`, relative to the lake.
    pub fn rel(&self) -> String {
        format!("{}/{}", self.table, self.key)
    }

    /// The lake table this is a partition of, for raw tables and rejects.
    pub fn raw_table(&self) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == self.table)
    }
}

impl Lake {
    /// Every partition directory of the lake: the raw tables and rejects,
    /// then every `priced/*`, `daily/*` and `monthly/*` table, each sorted
    /// by key. Directories that are not canonically named partitions are
    /// not partitions (and are left alone).
    pub fn partition_dirs(&self) -> Result<Vec<PartitionDir>> {
        let mut tables: Vec<String> = Table::ALL.iter().map(|t| t.name().to_string()).collect();
        for root in DERIVED_ROOTS {
            let names = self.dirs_in(&self.root.join(root))?;
            tables.extend(names.into_iter().map(|name| format!("{root}/{name}")));
        }
        let mut out = Vec::new();
        for table in tables {
            let dir = self.root.join(&table);
            let mut parts: Vec<PartitionDir> = self
                .dirs_in(&dir)?
                .into_iter()
                .filter_map(|key| {
                    let (date, monthly) = match partition_date(&key) {
                        Some(d) => (d, false),
                        None => (partition_month(&key)?, true),
                    };
                    Some(PartitionDir {
                        table: table.clone(),
                        dir: dir.join(&key),
                        key,
                        date,
                        monthly,
                    })
                })
                .collect();
            parts.sort_by(|a, b| a.key.cmp(&b.key));
            out.extend(parts);
        }
        Ok(out)
    }
}

/// The first day of a partition directory named exactly `month=YYYY-MM`.
pub fn partition_month(name: &str) -> Option<NaiveDate> {
    let month = name.strip_prefix("month=")?;
    let date = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok()?;
    (date.format("month=%Y-%m").to_string() == name).then_some(date)
}

/// The date of a partition directory named exactly `date=YYYY-MM-DD` (a
/// name that only parses leniently, such as `date=2023-1-5`, is not one: no
/// path the lake builds leads to it).
pub fn partition_date(name: &str) -> Option<NaiveDate> {
    let date = NaiveDate::parse_from_str(name.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
    (date.format("date=%Y-%m-%d").to_string() == name).then_some(date)
}

/// The reader `builder` gives, limited to `columns` (all when `None`), in
/// batches of up to 64k rows.
fn project<T: parquet::file::reader::ChunkReader + 'static>(
    builder: ParquetRecordBatchReaderBuilder<T>,
    columns: Option<&[&str]>,
) -> ParquetRecordBatchReaderBuilder<T> {
    let builder = builder.with_batch_size(65536);
    let Some(names) = columns else {
        return builder;
    };
    let present: Vec<usize> = names
        .iter()
        .filter_map(|name| {
            builder
                .schema()
                .fields()
                .iter()
                .position(|f| f.name() == name)
        })
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), present);
    builder.with_projection(mask)
}

/// Removes `*.parquet.tmp` files (and their indexes, `*.ids.tmp`) left
/// below `dir` by a run that crashed.
fn remove_tmp_files(dir: &Path, keep: &dyn Fn(&str) -> bool) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() {
            remove_tmp_files(&path, keep)?;
        } else if (name.ends_with(".tmp-write") && !written_by_a_live_process(&name))
            || ((name.ends_with(".parquet.tmp") || name.ends_with(".ids.tmp")) && !keep(&name))
        {
            fs::remove_file(&path).write_ctx(&path)?;
        }
    }
    Ok(())
}

/// Whether `<file>.<pid>-<seq>.tmp-write` (see [`write_atomic`]) is being
/// written by a process that still runs.
fn written_by_a_live_process(name: &str) -> bool {
    let Some(pid) = name
        .strip_suffix(".tmp-write")
        .and_then(|n| n.rsplit('.').next())
        .and_then(|n| n.split('-').next())
        .and_then(|n| n.parse::<u32>().ok())
    else {
        return false;
    };
    pid == std::process::id() || crate::lake::lease::process_alive(pid)
}

/// The folder of a local lake's shard locks.
const LOCKS_DIR: &str = "_locks";

/// Who holds the lock of the local lake at `root`: the exclusive holder
/// `_lock` names, else the shared jobs that hold scope locks.
fn local_holder(root: &Path, lock_path: &Path) -> String {
    let mut holders = Vec::new();
    if let Ok(entries) = fs::read_dir(root.join(LOCKS_DIR)) {
        for path in entries.flatten().map(|e| e.path()) {
            if let Some((job, claim)) = claim_of_lock(&path)
                && let Ok(file) = File::open(&path)
                && matches!(file.try_lock_shared(), Err(fs::TryLockError::WouldBlock))
            {
                let text = fs::read_to_string(&path).unwrap_or_default();
                holders.push(describe(&job, &claim, text.trim()));
            }
        }
    }
    if !holders.is_empty() {
        holders.sort();
        return holders.join("; ");
    }
    match fs::read_to_string(lock_path) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
        _ => "unknown".into(),
    }
}

/// The job of a run id `<time>-<job>-...` ([`crate::model::ctx::Ctx::new`]).
pub(crate) fn job_of(run_id: &str) -> &str {
    run_id.split('-').nth(1).unwrap_or("meter")
}

/// `ingest shard 1/4 (run ...)`, `rollup date 2026-11-03 (run ...)`.
fn describe(job: &str, claim: &Claim, who: &str) -> String {
    format!("{job} {claim} ({who})")
}

/// The lock file of a shared `job`'s `claim`:
/// `<job>[-<I>-of-<N>][-date-<YYYY-MM-DD>].lock`, as
/// `ingest-1-of-4.lock` or `rollup-date-2026-11-03.lock`.
fn scope_lock_name(job: &str, claim: &Claim) -> String {
    let mut name = job.to_string();
    if !claim.shard.is_all() {
        name += &format!("-{}-of-{}", claim.shard.index, claim.shard.count);
    }
    if let Some(date) = claim.date {
        name += &format!("-date-{date}");
    }
    name + ".lock"
}

/// The job and claim a lock file is for ([`scope_lock_name`] read back).
fn claim_of_lock(path: &Path) -> Option<(String, Claim)> {
    let name = path.file_name()?.to_str()?.strip_suffix(".lock")?;
    let (job, rest) = name.split_once('-').unwrap_or((name, ""));
    let (shard, date) = match rest.split_once("date-") {
        Some((head, date)) => (head.trim_end_matches('-'), Some(date)),
        None => (rest, None),
    };
    let mut claim = Claim::shard(Shard::ALL);
    if let Some(date) = date {
        claim.date = Some(NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?);
    }
    if !shard.is_empty() {
        let (i, n) = shard.split_once("-of-")?;
        claim.shard = format!("{i}/{n}").parse().ok()?;
    }
    (!job.is_empty()).then(|| (job.to_string(), claim))
}

/// Takes `_locks/<job>-<scope>.lock` for a shared `job`'s `claim` in the
/// local lake at `root`, or is refused when a live shared job keeps it out
/// ([`Claim::blocked_by`]: another job, or one of the same job whose claim
/// overlaps). Gives the held file and the run ids of the other live shared
/// jobs, whose files and commit journals recovery must leave alone. Every
/// shared job looks and takes under `_locks/gate`, so a lock file nobody
/// holds was left by a run that died, and goes.
fn local_scope_lock(
    root: &Path,
    job: &str,
    claim: Claim,
    me: &str,
) -> Result<(ScopeLock, Vec<String>)> {
    let dir = root.join(LOCKS_DIR);
    fs::create_dir_all(&dir).write_ctx(&dir)?;
    let gate_path = dir.join("gate");
    let gate = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&gate_path)
        .write_ctx(&gate_path)?;
    gate.lock().write_ctx(&gate_path)?;
    let mut live = Vec::new();
    for path in fs::read_dir(&dir)
        .read_ctx(&dir)?
        .flatten()
        .map(|e| e.path())
    {
        let Some((other_job, other)) = claim_of_lock(&path) else {
            continue;
        };
        let Ok(file) = File::open(&path) else {
            continue;
        };
        match file.try_lock() {
            Ok(()) => {
                drop(file);
                fs::remove_file(&path).write_ctx(&path)?;
            }
            Err(fs::TryLockError::WouldBlock) => {
                let text = fs::read_to_string(&path).unwrap_or_default();
                if claim.blocked_by(job, &other, &other_job) {
                    return Err(Error::Locked {
                        path: root.to_path_buf(),
                        holder: describe(&other_job, &other, text.trim()),
                    });
                }
                if let Some(run) = text.strip_prefix("run ").and_then(|t| t.split(',').next()) {
                    live.push(run.to_string());
                }
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(Error::Write { path, source: e });
            }
        }
    }
    let path = dir.join(scope_lock_name(job, &claim));
    let mut file = File::create(&path).write_ctx(&path)?;
    file.try_lock().map_err(|e| Error::Write {
        path: path.clone(),
        source: e.into(),
    })?;
    file.write_all(me.as_bytes()).write_ctx(&path)?;
    drop(gate);
    let lock = ScopeLock { _file: file, path };
    Ok((lock, live))
}

fn apply(commit: &Commit) -> Result<()> {
    for (from, to) in &commit.renames {
        if from.exists() {
            fs::rename(from, to).write_ctx(to)?;
            crate::lake::fault::file_written();
        }
    }
    for path in &commit.deletes {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Write {
                    path: path.clone(),
                    source: e,
                });
            }
        }
    }
    Ok(())
}

/// zstd (level 1), row groups of at most 128k rows, min/max statistics per
/// row group: what DuckDB and pyarrow read best, at ingest's speed.
pub fn writer_props() -> WriterProperties {
    let unique = |name: &str| parquet::schema::types::ColumnPath::from(name);
    WriterProperties::builder()
        // Level 1: most of level 3's ratio on this data at a fraction of the time.
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid level"),
        ))
        .set_max_row_group_row_count(Some(128 * 1024))
        // Min/max per row group (what DuckDB and polars prune with), not per page.
        .set_statistics_enabled(EnabledStatistics::Chunk)
        // Every value of these is distinct: a dictionary only costs time.
        .set_column_dictionary_enabled(unique("event_id"), false)
        .set_column_dictionary_enabled(unique("request_id"), false)
        .set_created_by(format!("meter {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Writes a file through a temporary name and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    // Named for this process: the shards of one ingest may write the same
    // file (a new lake's `_lake.json`) at the same moment.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{seq}.tmp-write", std::process::id()));
    let tmp = path.with_file_name(name);
    let mut f = File::create(&tmp).write_ctx(&tmp)?;
    f.write_all(bytes).write_ctx(&tmp)?;
    f.sync_all().write_ctx(&tmp)?;
    fs::rename(&tmp, path).write_ctx(path)?;
    crate::lake::fault::file_written();
    Ok(())
}

/// The rejects code used to be `reason` in words, without `detail`. Such a
/// batch (a file written before reason codes) reads as the table's current
/// columns: `reason` `unclassified`, the old words as `detail`; the same as
/// the `rejects` view shows (views.sql). Every other batch is unchanged.
pub fn upgrade_legacy_rejects(batch: RecordBatch) -> RecordBatch {
    let current = Table::Rejects.schema();
    let legacy: Vec<&str> = Table::Rejects
        .columns()
        .iter()
        .copied()
        .filter(|c| *c != "detail")
        .collect();
    let schema = batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if names != legacy {
        return batch;
    }
    let column = |name: &str| schema.index_of(name).ok().map(|i| batch.column(i).clone());
    let Some(reason) = column("reason") else {
        return batch;
    };
    let unclassified: arrow::array::ArrayRef =
        std::sync::Arc::new(StringArray::from(vec![LEGACY_REASON; batch.num_rows()]));
    let columns: Option<Vec<arrow::array::ArrayRef>> = current
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "reason" => Some(unclassified.clone()),
            "detail" => Some(reason.clone()),
            name => column(name),
        })
        .collect();
    columns
        .and_then(|c| RecordBatch::try_new(current, c).ok())
        .unwrap_or(batch)
}

/// The reason of a reject written before reason codes.
pub const LEGACY_REASON: &str = "unclassified";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_lock_name_reads_back_as_its_job_and_claim() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 3).unwrap();
        let claims = [
            ("ingest", Claim::shard(Shard { index: 1, count: 4 })),
            ("ingest", Claim::shard(Shard::ALL)),
            ("rollup", Claim::date(day)),
            (
                "rollup",
                Claim {
                    shard: Shard { index: 0, count: 2 },
                    ..Claim::date(day)
                },
            ),
        ];
        for (job, claim) in claims {
            let name = scope_lock_name(job, &claim);
            let back = claim_of_lock(Path::new(&name));
            assert_eq!(back, Some((job.to_string(), claim)), "{name}");
        }
        assert_eq!(
            scope_lock_name("ingest", &claims[0].1),
            "ingest-1-of-4.lock"
        );
        assert_eq!(
            scope_lock_name("rollup", &claims[2].1),
            "rollup-date-2026-11-03.lock"
        );
        for junk in [
            "gate",
            "ingest-x-of-4.lock",
            "rollup-date-2026-13-01.lock",
            "-.lock",
        ] {
            assert_eq!(claim_of_lock(Path::new(junk)), None, "{junk}");
        }
    }

    /// A rejects file written before reason codes (no `detail`) reads as
    /// the current columns, so compaction and readers see one schema.
    #[test]
    fn legacy_rejects_read_as_unclassified_with_their_words_as_detail() {
        use crate::lake::tables::{Id, RejectRow, TableRow};
        use crate::model::time::Ts;
        let row = RejectRow {
            event_id: Id(7),
            ts: Ts(0),
            ts_inferred: false,
            customer_id: None,
            vm_id: "vm-1".into(),
            target_table: "api_usage".into(),
            format: None,
            reason: "truncated JSON at column 96".into(),
            detail: String::new(),
            field: None,
            raw: "{".into(),
            source_file: "vm-1/cliproxy/usage.jsonl".into(),
            source_line: 3,
        };
        let current = RejectRow::batch(std::slice::from_ref(&row));
        assert_eq!(upgrade_legacy_rejects(current.clone()), current);
        let detail = current.schema().index_of("detail").unwrap();
        let mut legacy = current.clone();
        legacy.remove_column(detail);
        let upgraded = upgrade_legacy_rejects(legacy);
        assert_eq!(upgraded.schema(), Table::Rejects.schema());
        let text = |name: &str| {
            let i = upgraded.schema().index_of(name).unwrap();
            upgraded
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(0)
                .to_string()
        };
        assert_eq!(text("reason"), LEGACY_REASON);
        assert_eq!(text("detail"), "truncated JSON at column 96");
        assert_eq!(text("source_file"), "vm-1/cliproxy/usage.jsonl");
    }

    #[test]
    fn only_canonical_date_directories_are_partitions() {
        assert_eq!(
            partition_date("date=2023-10-31"),
            NaiveDate::from_ymd_opt(2023, 10, 31)
        );
        assert_eq!(partition_date("date=2023-1-5"), None);
        assert_eq!(partition_date("month=2023-10"), None);
        assert_eq!(partition_date("date=2023-02-30"), None);
        assert_eq!(partition_date("2023-10-31"), None);
        assert_eq!(
            partition_month("month=2023-10"),
            NaiveDate::from_ymd_opt(2023, 10, 1)
        );
        assert_eq!(partition_month("month=2023-1"), None);
        assert_eq!(partition_month("date=2023-10-01"), None);
    }

    #[test]
    fn second_open_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Lake::open(dir.path(), "run-1").unwrap();
        match Lake::open(dir.path(), "run-2") {
            Err(Error::Locked { holder, .. }) => {
                assert!(holder.starts_with("run run-1"), "{holder}")
            }
            Err(e) => panic!("expected Locked, got {e}"),
            Ok(_) => panic!("expected Locked, got a second lake handle"),
        }
    }

    #[test]
    fn an_interrupted_commit_is_finished_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("activity/date=2026-10-01");
        fs::create_dir_all(&part).unwrap();
        fs::create_dir_all(dir.path().join("_runs")).unwrap();
        fs::write(part.join("part-a.parquet.tmp"), b"new").unwrap();
        fs::write(part.join("part-old.parquet"), b"old").unwrap();
        fs::write(part.join("part-crashed.parquet.tmp"), b"junk").unwrap();
        let commit = Commit {
            renames: vec![(part.join("part-a.parquet.tmp"), part.join("part-a.parquet"))],
            deletes: vec![part.join("part-old.parquet")],
        };
        fs::write(
            dir.path().join("_runs/r.commit.json"),
            serde_json::to_string(&commit).unwrap(),
        )
        .unwrap();
        let _lake = Lake::open(dir.path(), "run-2").unwrap();
        let mut names: Vec<String> = fs::read_dir(&part)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["part-a.parquet"]);
        assert!(!dir.path().join("_runs/r.commit.json").exists());
    }
}
