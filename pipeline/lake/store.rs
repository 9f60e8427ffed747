//! Where billing output goes: a local folder or an object store, behind one
//! small synchronous API over `object_store`.
//!
//! ```text
//! ./out  out  /abs/dir  file:///abs/dir        a local folder (created if missing)
//! s3://bucket/prefix   s3a://bucket/prefix     Amazon S3 or an S3-compatible store
//! gs://bucket/prefix                           Google Cloud Storage
//! az://container/prefix                        Azure Blob Storage (also adl://, azure://,
//! abfs[s]://container@account.dfs.core.windows.net/prefix     and the https:// forms
//! https://account.blob.core.windows.net/container/prefix      object_store recognises)
//! ```
//!
//! Keys are `/`-separated paths relative to the store's prefix, such as
//! `invoices/2026-10/rev-1/cust_0001.csv`. Local puts are atomic: the bytes go
//! to a staging file next to the target, which is then renamed over it.
//! Cloud stores are configured from the standard environment variables
//! ([`Store::open`]) or from explicit options ([`Store::open_with`]).
//!
//! Every call blocks on a small current-thread tokio runtime owned by the
//! store, so a `Store` must not be used from inside an async context.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use tokio::runtime::Runtime;

use crate::model::error::{Error, IoContext, Result};

/// A place to write output files: a local folder or a bucket prefix.
#[derive(Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// Prepended to every key; empty for local folders (the folder is the root).
    prefix: ObjectPath,
    /// The URL as given, without a trailing slash.
    url: String,
    runtime: Runtime,
    /// Bytes fetched by ranged GETs so far.
    ranged_bytes: std::sync::atomic::AtomicU64,
}

/// The version of an object that a conditional put names: what
/// [`Store::get_versioned`] read, or what a conditional put wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub e_tag: Option<String>,
    pub version: Option<String>,
}

/// One object of a listing ([`Store::list_objects`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Relative to the store's prefix, `/`-separated.
    pub key: String,
    pub size: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// Bytes per ranged GET of a [`RangeReader`].
pub const RANGE_SIZE: u64 = 8 << 20;

/// An object read front to back in ranged GETs ([`Store::reader`]). An
/// error (the object vanished or shrank, the store failed) is an
/// `io::Error` whose message names the object's URL.
#[derive(Debug)]
pub struct RangeReader {
    store: Arc<Store>,
    key: String,
    size: u64,
    /// Where the next range starts.
    pos: u64,
    range_size: u64,
    /// The range fetched last, and how much of it was handed out.
    chunk: Vec<u8>,
    at: usize,
}

impl RangeReader {
    /// The same reader, starting at byte `pos` of the object.
    pub fn starting_at(mut self, pos: u64) -> RangeReader {
        self.pos = pos;
        self
    }

    /// Smaller (or larger) ranges than [`RANGE_SIZE`] (tests).
    pub fn with_range_size(mut self, range_size: u64) -> RangeReader {
        self.range_size = range_size.max(1);
        self
    }
}

impl std::io::Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.chunk.len() {
            if self.pos >= self.size || buf.is_empty() {
                return Ok(0);
            }
            let end = self.size.min(self.pos + self.range_size);
            let chunk = self
                .store
                .get_range(&self.key, self.pos..end)
                .map(Vec::from)
                .map_err(|e| std::io::Error::other(chain(&e)))?;
            if chunk.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "{}: the object ended at byte {} of the {} listed",
                        self.store.object_url(&self.key),
                        self.pos,
                        self.size
                    ),
                ));
            }
            self.pos += chunk.len() as u64;
            self.chunk = chunk;
            self.at = 0;
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// An error and its causes on one line: `object store s3://b/k: ...: ...`
/// (a cause that its error's message already quotes is not repeated).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The outcome of a conditional put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional {
    /// Written; the object's new version.
    Written(Version),
    /// Not written: the object exists (create-only), or it changed or
    /// vanished since the version named (update).
    Conflict,
}

/// The cloud providers a URL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cloud {
    S3,
    Gcs,
    Azure,
}

impl Cloud {
    fn name(self) -> &'static str {
        match self {
            Cloud::S3 => "S3",
            Cloud::Gcs => "GCS",
            Cloud::Azure => "Azure",
        }
    }
}

/// What a URL names, before anything is built.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Local(PathBuf),
    Cloud { cloud: Cloud, prefix: ObjectPath },
}

impl Store {
    /// Opens the store `url` names. Cloud stores take their configuration
    /// (credentials, region, endpoint) from the standard environment
    /// variables: `AWS_*` (including `AWS_ENDPOINT_URL` / `AWS_ENDPOINT` and
    /// `AWS_ALLOW_HTTP` for S3-compatible stores), `GOOGLE_*`, `AZURE_*`.
    /// Nothing is contacted until the first call.
    pub fn open(url: &str) -> Result<Store> {
        Store::build(url, Vec::new(), true)
    }

    /// [`Store::open_with`] the options, or [`Store::open`] (environment)
    /// when there are none: what jobs that take an `--out` URL call.
    pub fn open_configured(url: &str, options: &[(String, String)]) -> Result<Store> {
        match options.is_empty() {
            true => Store::open(url),
            false => Store::open_with(url, options.iter().cloned()),
        }
    }

    /// Opens the store `url` names, configured only from `options` (the
    /// environment is not read). Keys are object_store configuration keys for
    /// the URL's provider, case-insensitive, such as `aws_endpoint`,
    /// `aws_access_key_id`, `aws_secret_access_key`, `aws_region`,
    /// `aws_allow_http`; `google_service_account`; `azure_storage_account_name`.
    /// A key the provider does not know is a usage error; so is any option
    /// for a local folder.
    pub fn open_with<K, V>(url: &str, options: impl IntoIterator<Item = (K, V)>) -> Result<Store>
    where
        K: AsRef<str>,
        V: Into<String>,
    {
        let options = options
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_string(), v.into()))
            .collect();
        Store::build(url, options, false)
    }

    fn build(url: &str, options: Vec<(String, String)>, from_env: bool) -> Result<Store> {
        let display = normalize(url);
        let store_err = |source| Error::Store {
            url: display.clone(),
            source,
        };
        let (inner, prefix): (Arc<dyn ObjectStore>, ObjectPath) = match parse(url)? {
            Target::Local(dir) => {
                if let Some((key, _)) = options.first() {
                    return Err(Error::Usage(format!(
                        "option `{key}` does not apply to the local folder {display}"
                    )));
                }
                std::fs::create_dir_all(&dir).write_ctx(&dir)?;
                let fs = LocalFileSystem::new_with_prefix(&dir).map_err(store_err)?;
                (Arc::new(fs), ObjectPath::default())
            }
            Target::Cloud { cloud, prefix } => {
                let inner = build_cloud(cloud, url, &options, from_env).map_err(|e| match e {
                    BuildError::Usage(message) => Error::Usage(message),
                    BuildError::Store(source) => store_err(source),
                })?;
                (inner, prefix)
            }
        };
        Store::from_object_store(inner, prefix, display)
    }

    /// A store in memory (`memory://`): nothing outlives the value. It
    /// honours create-only and conditional puts exactly, as S3, GCS and
    /// Azure do.
    pub fn in_memory() -> Result<Store> {
        let memory = Arc::new(InMemory::new());
        Store::from_object_store(memory, ObjectPath::default(), "memory://".to_string())
    }

    fn from_object_store(
        inner: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
        url: String,
    ) -> Result<Store> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Store {
                url: url.clone(),
                source: object_store::Error::Generic {
                    store: "runtime",
                    source: Box::new(e),
                },
            })?;
        Ok(Store {
            inner,
            prefix,
            url,
            runtime,
            ranged_bytes: Default::default(),
        })
    }

    /// The URL the store was opened with, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of `key` in this store, for messages.
    pub fn object_url(&self, key: &str) -> String {
        match key.trim_start_matches('/') {
            "" => self.url.clone(),
            key if self.url.ends_with('/') => format!("{}{key}", self.url),
            key => format!("{}/{key}", self.url),
        }
    }

    /// Writes `bytes` to `key`, replacing any object there.
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let location = self.location(key)?;
        self.runtime
            .block_on(self.inner.put(&location, PutPayload::from(bytes)))
            .map_err(|source| self.error(key, source))?;
        crate::lake::fault::file_written();
        Ok(())
    }

    /// Reads `key`; `None` when there is no such object.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get_versioned(key)?.map(|(bytes, _)| bytes))
    }

    /// Reads `key` with the version a conditional put can name; `None` when
    /// there is no such object.
    pub fn get_versioned(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>> {
        let location = self.location(key)?;
        let got = self.runtime.block_on(async {
            match self.inner.get(&location).await {
                Ok(result) => {
                    let version = Version {
                        e_tag: result.meta.e_tag.clone(),
                        version: result.meta.version.clone(),
                    };
                    result.bytes().await.map(|b| Some((Vec::from(b), version)))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        got.map_err(|source| self.error(key, source))
    }

    /// Writes `bytes` to `key` only if no object is there (S3 and Azure
    /// `If-None-Match: *`, GCS generation 0).
    pub fn put_if_absent(&self, key: &str, bytes: Vec<u8>) -> Result<Conditional> {
        self.put_mode(key, bytes, PutMode::Create)
    }

    /// Replaces `key` with `bytes` only if it is still at `version` (S3 and
    /// Azure `If-Match`, GCS generation match). A local folder cannot: it
    /// answers with an error that says so.
    pub fn put_if_version(
        &self,
        key: &str,
        bytes: Vec<u8>,
        version: &Version,
    ) -> Result<Conditional> {
        let mode = PutMode::Update(UpdateVersion {
            e_tag: version.e_tag.clone(),
            version: version.version.clone(),
        });
        self.put_mode(key, bytes, mode)
    }

    fn put_mode(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Conditional> {
        let location = self.location(key)?;
        let create = matches!(mode, PutMode::Create);
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        let put = self.runtime.block_on(self.inner.put_opts(
            &location,
            PutPayload::from(bytes),
            opts,
        ));
        match put {
            Ok(result) => {
                crate::lake::fault::file_written();
                Ok(Conditional::Written(Version {
                    e_tag: result.e_tag,
                    version: result.version,
                }))
            }
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(Conditional::Conflict),
            // `If-Match` on a key deleted since it was read: S3 answers 404
            // NoSuchKey. A create-only put that is not found has no bucket.
            Err(object_store::Error::NotFound { .. }) if !create => Ok(Conditional::Conflict),
            Err(source) => Err(self.error(key, source)),
        }
    }

    /// Every object under `prefix` (recursively; `""` for the whole store),
    /// as keys relative to the store's prefix with their sizes in bytes,
    /// sorted by key. The prefix matches whole path segments: `invoices/2026-1`
    /// does not match `invoices/2026-10/...`.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        Ok(self
            .list_objects(prefix)?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect())
    }

    /// [`Store::list`] with each object's time of last modification.
    pub fn list_objects(&self, prefix: &str) -> Result<Vec<Listed>> {
        let location = self.location(prefix)?;
        let location = (!location.is_root()).then_some(location);
        let metas: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.inner.list(location.as_ref()).try_collect())
            .map_err(|source| self.error(prefix, source))?;
        let mut out: Vec<Listed> = metas
            .into_iter()
            .filter_map(|meta| {
                let key = meta
                    .location
                    .prefix_match(&self.prefix)?
                    .map(|part| part.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/");
                Some(Listed {
                    key,
                    size: meta.size,
                    last_modified: meta.last_modified,
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The names of the "folders" right under `prefix`: the next segment
    /// of every key that has more segments after it, sorted.
    pub fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        let location = self.location(prefix)?;
        let location = (!location.is_root()).then_some(location);
        let listed = self
            .runtime
            .block_on(self.inner.list_with_delimiter(location.as_ref()))
            .map_err(|source| self.error(prefix, source))?;
        let mut out: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        out.sort();
        Ok(out)
    }

    /// The size of `key` in bytes; `None` when there is no such object.
    pub fn size(&self, key: &str) -> Result<Option<u64>> {
        let location = self.location(key)?;
        match self.runtime.block_on(self.inner.head(&location)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(self.error(key, source)),
        }
    }

    /// The size and last change of `key`; `None` when there is no such object.
    pub fn stat(&self, key: &str) -> Result<Option<(u64, std::time::SystemTime)>> {
        let location = self.location(key)?;
        match self.runtime.block_on(self.inner.head(&location)) {
            Ok(meta) => Ok(Some((meta.size, meta.last_modified.into()))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(self.error(key, source)),
        }
    }

    /// Reads the bytes `range` of `key` (one ranged GET).
    pub fn get_range(&self, key: &str, range: Range<u64>) -> Result<bytes::Bytes> {
        let location = self.location(key)?;
        self.runtime
            .block_on(self.inner.get_range(&location, range))
            .inspect(|bytes| {
                self.ranged_bytes
                    .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
            })
            .map_err(|source| self.error(key, source))
    }

    /// The bytes fetched by ranged GETs ([`Store::get_range`]) so far.
    pub fn ranged_bytes(&self) -> u64 {
        self.ranged_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Copies `from` to `to` inside the store (server-side: the bytes do
    /// not come through this process), replacing any object at `to`.
    pub fn copy(&self, from: &str, to: &str) -> Result<()> {
        let (src, dst) = (self.location(from)?, self.location(to)?);
        self.runtime
            .block_on(self.inner.copy(&src, &dst))
            .map_err(|source| self.error(from, source))?;
        crate::lake::fault::file_written();
        Ok(())
    }

    /// Deletes `key`; deleting what is not there is no error.
    pub fn delete(&self, key: &str) -> Result<()> {
        let location = self.location(key)?;
        match self.runtime.block_on(self.inner.delete(&location)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                crate::lake::fault::file_written();
                Ok(())
            }
            Err(source) => Err(self.error(key, source)),
        }
    }

    /// Uploads the local file `path` to `key`, in parts of 8 MiB (a
    /// multipart upload when it is larger than one part), never holding
    /// more than a few parts in memory.
    pub fn put_file(&self, key: &str, path: &std::path::Path) -> Result<()> {
        use std::io::Read;
        const PART: usize = 8 << 20;
        let location = self.location(key)?;
        let mut file = std::fs::File::open(path).read_ctx(path)?;
        let len = file.metadata().read_ctx(path)?.len();
        if len <= PART as u64 {
            let mut bytes = Vec::with_capacity(len as usize);
            file.read_to_end(&mut bytes).read_ctx(path)?;
            return self.put(key, bytes);
        }
        let done: std::result::Result<(), Error> = self.runtime.block_on(async {
            let upload = self
                .inner
                .put_multipart(&location)
                .await
                .map_err(|source| self.error(key, source))?;
            let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
            let mut buf = vec![0u8; PART];
            loop {
                let n = file.read(&mut buf).read_ctx(path)?;
                if n == 0 {
                    break;
                }
                writer
                    .wait_for_capacity(4)
                    .await
                    .map_err(|source| self.error(key, source))?;
                writer.write(&buf[..n]);
            }
            writer
                .finish()
                .await
                .map_err(|source| self.error(key, source))?;
            Ok(())
        });
        done?;
        crate::lake::fault::file_written();
        Ok(())
    }

    /// Reads the `size` bytes of `key` as a stream, one ranged GET of
    /// [`RANGE_SIZE`] bytes at a time: memory stays at one range whatever
    /// the object's size.
    pub fn reader(self: &Arc<Self>, key: &str, size: u64) -> RangeReader {
        RangeReader {
            store: self.clone(),
            key: key.to_string(),
            size,
            pos: 0,
            range_size: RANGE_SIZE,
            chunk: Vec::new(),
            at: 0,
        }
    }

    /// The store path of `key`: the store's prefix, then the key's segments.
    fn location(&self, key: &str) -> Result<ObjectPath> {
        let key_path = ObjectPath::parse(key).map_err(|e| self.error(key, e.into()))?;
        Ok(self.prefix.parts().chain(key_path.parts()).collect())
    }

    fn error(&self, key: &str, source: object_store::Error) -> Error {
        Error::Store {
            url: self.object_url(key),
            source,
        }
    }
}

/// The folder `url` names when it is a local path or a `file://` URL;
/// `None` for a cloud store. Nothing is created or contacted.
pub fn local_path(url: &str) -> Result<Option<PathBuf>> {
    Ok(match parse(url)? {
        Target::Local(dir) => Some(dir),
        Target::Cloud { .. } => None,
    })
}

/// The URL without trailing slashes (a lone root stays as it is).
fn normalize(url: &str) -> String {
    let url = url.trim();
    let trimmed = url.trim_end_matches('/');
    if trimmed.is_empty() || trimmed.ends_with(':') {
        url.to_string()
    } else {
        trimmed.to_string()
    }
}

/// Splits a URL or a local path into what it names. Pure: nothing is built.
fn parse(url: &str) -> Result<Target> {
    let url = url.trim();
    if url.is_empty() {
        return Err(Error::Usage("the location is empty".to_string()));
    }
    let usage = |why: &str| Error::Usage(format!("location `{url}`: {why}"));

    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL: a local path. Refuse `s3:bucket`-like typos rather than
        // silently writing to a local folder named after them.
        if let Some((head, _)) = url.split_once(':')
            && !head.is_empty()
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            && !head.contains('/')
        {
            return Err(usage(
                "looks like a URL but is not of the form scheme://...; \
                 prefix ./ to name a local folder",
            ));
        }
        return Ok(Target::Local(PathBuf::from(url)));
    };
    if rest.contains(['?', '#']) {
        return Err(usage("query strings and fragments are not supported"));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let url_path =
        |path: &str| ObjectPath::from_url_path(path).map_err(|e| usage(&format!("bad path: {e}")));
    // The path after its first segment (the bucket or container).
    let strip_bucket = |path: &str| -> String {
        let path = path.trim_start_matches('/');
        path.split_once('/')
            .map(|(_, p)| p.to_string())
            .unwrap_or_default()
    };

    let scheme = scheme.to_ascii_lowercase();
    let (cloud, path) = match scheme.as_str() {
        "file" => {
            if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
                return Err(usage("file URLs must be file:///absolute/path"));
            }
            let decoded = url_path(path)?;
            return Ok(Target::Local(PathBuf::from(format!("/{decoded}"))));
        }
        "s3" | "s3a" => (Cloud::S3, path.to_string()),
        "gs" => (Cloud::Gcs, path.to_string()),
        "az" | "adl" | "azure" | "abfs" | "abfss" => (Cloud::Azure, path.to_string()),
        "https" => {
            let host = host.to_ascii_lowercase();
            if host.ends_with("dfs.core.windows.net")
                || host.ends_with("blob.core.windows.net")
                || host.ends_with("dfs.fabric.microsoft.com")
                || host.ends_with("blob.fabric.microsoft.com")
            {
                (Cloud::Azure, strip_bucket(path))
            } else if host.ends_with("amazonaws.com") {
                if host.starts_with("s3") {
                    (Cloud::S3, strip_bucket(path))
                } else {
                    (Cloud::S3, path.to_string())
                }
            } else if host.ends_with("r2.cloudflarestorage.com") {
                (Cloud::S3, strip_bucket(path))
            } else {
                return Err(usage(
                    "unrecognised https host; for an S3-compatible store use \
                     s3://bucket/prefix with AWS_ENDPOINT_URL",
                ));
            }
        }
        "http" => {
            return Err(usage(
                "plain http URLs are not stores; for an S3-compatible store use \
                 s3://bucket/prefix with AWS_ENDPOINT_URL and AWS_ALLOW_HTTP=true",
            ));
        }
        other => {
            return Err(usage(&format!(
                "unknown scheme `{other}` (expected a local path, file://, s3://, gs:// or az://)"
            )));
        }
    };
    if host.is_empty() {
        return Err(usage("no bucket or container named"));
    }
    Ok(Target::Cloud {
        cloud,
        prefix: url_path(&path)?,
    })
}

enum BuildError {
    Usage(String),
    Store(object_store::Error),
}

impl From<object_store::Error> for BuildError {
    fn from(e: object_store::Error) -> Self {
        BuildError::Store(e)
    }
}

/// Builds the client for `cloud` from the environment (if asked) and then
/// `options`; the URL's own settings (bucket, account) win over both.
fn build_cloud(
    cloud: Cloud,
    url: &str,
    options: &[(String, String)],
    from_env: bool,
) -> Result<Arc<dyn ObjectStore>, BuildError> {
    fn key<K: std::str::FromStr>(cloud: Cloud, name: &str) -> Result<K, BuildError> {
        name.to_ascii_lowercase().parse().map_err(|_| {
            BuildError::Usage(format!("unknown {} store option `{name}`", cloud.name()))
        })
    }
    let url = url.trim();
    Ok(match cloud {
        Cloud::S3 => {
            let mut b = if from_env {
                let mut b = AmazonS3Builder::from_env().with_retry(retry_from_env()?);
                // from_env reads AWS_ENDPOINT and AWS_ENDPOINT_URL in no set
                // order; the SDKs' AWS_ENDPOINT_URL wins when both are set.
                if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
                    b = b.with_endpoint(endpoint);
                }
                b
            } else {
                AmazonS3Builder::new()
            };
            for (name, value) in options {
                b = b.with_config(key(cloud, name)?, value.clone());
            }
            // An explicit http:// endpoint is a local or on-premises store:
            // allow plain HTTP unless allow_http was set either way.
            let allow_http = AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp);
            let explicit_allow = options.iter().any(|(name, _)| {
                key::<AmazonS3ConfigKey>(cloud, name).ok().as_ref() == Some(&allow_http)
            }) || (from_env && std::env::var_os("AWS_ALLOW_HTTP").is_some());
            let http_endpoint = [AmazonS3ConfigKey::Endpoint, AmazonS3ConfigKey::S3Endpoint]
                .iter()
                .filter_map(|k| b.get_config_value(k))
                .any(|e| e.to_ascii_lowercase().starts_with("http://"));
            if http_endpoint && !explicit_allow {
                b = b.with_allow_http(true);
            }
            Arc::new(b.with_url(url).build()?)
        }
        Cloud::Gcs => {
            let mut b = if from_env {
                GoogleCloudStorageBuilder::from_env().with_retry(retry_from_env()?)
            } else {
                GoogleCloudStorageBuilder::new()
            };
            for (name, value) in options {
                b = b.with_config(key::<GoogleConfigKey>(cloud, name)?, value.clone());
            }
            Arc::new(b.with_url(url).build()?)
        }
        Cloud::Azure => {
            let mut b = if from_env {
                MicrosoftAzureBuilder::from_env().with_retry(retry_from_env()?)
            } else {
                MicrosoftAzureBuilder::new()
            };
            for (name, value) in options {
                b = b.with_config(key::<AzureConfigKey>(cloud, name)?, value.clone());
            }
            Arc::new(b.with_url(url).build()?)
        }
    })
}

/// How often a request that failed in a way worth retrying (a throttling
/// 503, a 5xx, a dropped connection) is tried again, with exponential
/// backoff, before the job fails: object_store's 10 within 3 minutes, or
/// `METER_STORE_MAX_RETRIES` (0 fails at the first error).
pub const MAX_RETRIES_VAR: &str = "METER_STORE_MAX_RETRIES";

fn retry_from_env() -> Result<object_store::RetryConfig, BuildError> {
    let mut retry = object_store::RetryConfig::default();
    if let Ok(value) = std::env::var(MAX_RETRIES_VAR) {
        retry.max_retries = value.trim().parse().map_err(|_| {
            BuildError::Usage(format!(
                "{MAX_RETRIES_VAR}={value:?}: expected a whole number of retries, such as 10"
            ))
        })?;
    }
    Ok(retry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Store>();
    }

    fn local(dir: &std::path::Path) -> Store {
        Store::open(dir.to_str().unwrap()).unwrap()
    }

    #[test]
    fn create_only_and_conditional_puts_refuse_what_s3_refuses() {
        let store = Store::in_memory().unwrap();
        let Conditional::Written(first) = store.put_if_absent("k", b"1".to_vec()).unwrap() else {
            panic!("the first create-only put writes");
        };
        assert_eq!(
            store.put_if_absent("k", b"2".to_vec()).unwrap(),
            Conditional::Conflict
        );
        let (bytes, read) = store.get_versioned("k").unwrap().unwrap();
        assert_eq!((bytes, &read), (b"1".to_vec(), &first));
        let Conditional::Written(second) = store.put_if_version("k", b"3".to_vec(), &read).unwrap()
        else {
            panic!("a put at the current version writes");
        };
        assert_ne!(second, first);
        // The version read before is stale now.
        assert_eq!(
            store.put_if_version("k", b"4".to_vec(), &first).unwrap(),
            Conditional::Conflict
        );
        assert_eq!(store.get("k").unwrap().unwrap(), b"3");
        assert_eq!(
            store
                .put_if_version("missing", b"5".to_vec(), &first)
                .unwrap(),
            Conditional::Conflict
        );
        assert_eq!(store.get("missing").unwrap(), None);
    }

    #[test]
    fn a_local_folder_creates_only_once_and_says_it_cannot_update_conditionally() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path());
        let Conditional::Written(version) = store.put_if_absent("a/k", b"1".to_vec()).unwrap()
        else {
            panic!("the first create-only put writes");
        };
        assert_eq!(
            store.put_if_absent("a/k", b"2".to_vec()).unwrap(),
            Conditional::Conflict
        );
        assert_eq!(store.get("a/k").unwrap().unwrap(), b"1");
        let err = store
            .put_if_version("a/k", b"3".to_vec(), &version)
            .unwrap_err();
        assert!(
            matches!(&err, Error::Store { url, .. } if url.ends_with("/a/k")),
            "{err}"
        );
        assert_eq!(store.get("a/k").unwrap().unwrap(), b"1");
    }

    #[test]
    fn local_round_trip_creates_the_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("out/nested");
        let store = local(&root);
        assert!(root.is_dir());
        let key = "invoices/2026-10/rev-1/cust_0001.csv";
        store.put(key, b"a,b\n1,2\n".to_vec()).unwrap();
        assert_eq!(
            std::fs::read(root.join(key)).unwrap(),
            b"a,b\n1,2\n".to_vec()
        );
        assert_eq!(store.get(key).unwrap().unwrap(), b"a,b\n1,2\n".to_vec());
        // A put replaces the object and leaves no staging file behind.
        store.put(key, b"new".to_vec()).unwrap();
        assert_eq!(store.get(key).unwrap().unwrap(), b"new".to_vec());
        let names: Vec<_> = std::fs::read_dir(root.join("invoices/2026-10/rev-1"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["cust_0001.csv"]);
    }

    #[test]
    fn get_of_a_missing_key_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        let store = local(tmp.path());
        assert_eq!(store.get("nope/missing.csv").unwrap(), None);
        assert_eq!(store.get("missing.csv").unwrap(), None);
    }

    #[test]
    fn list_is_recursive_sorted_and_relative() {
        let tmp = tempfile::tempdir().unwrap();
        let store = local(tmp.path());
        for (key, len) in [
            ("invoices/2026-10/rev-2/b.csv", 3),
            ("invoices/2026-10/rev-1/b.csv", 2),
            ("invoices/2026-10/rev-1/a.csv", 1),
            ("invoices/2026-100/x.csv", 4),
            ("manifest.json", 5),
        ] {
            store.put(key, vec![b'x'; len]).unwrap();
        }
        assert_eq!(
            store.list("invoices/2026-10").unwrap(),
            [
                ("invoices/2026-10/rev-1/a.csv".to_string(), 1),
                ("invoices/2026-10/rev-1/b.csv".to_string(), 2),
                ("invoices/2026-10/rev-2/b.csv".to_string(), 3),
            ]
        );
        assert_eq!(store.list("invoices/2026-10/").unwrap().len(), 3);
        let all: Vec<String> = store
            .list("")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            all,
            [
                "invoices/2026-10/rev-1/a.csv",
                "invoices/2026-10/rev-1/b.csv",
                "invoices/2026-10/rev-2/b.csv",
                "invoices/2026-100/x.csv",
                "manifest.json",
            ]
        );
        assert!(store.list("nothing/here").unwrap().is_empty());
    }

    #[test]
    fn urls_are_normalized() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let given = format!("{}/", dir.display());
        let store = Store::open(&given).unwrap();
        assert_eq!(store.url(), dir.display().to_string());
        assert_eq!(
            store.object_url("a/b.csv"),
            format!("{}/a/b.csv", dir.display())
        );

        let file_url = format!("file://{}/", dir.display());
        let store = Store::open(&file_url).unwrap();
        assert_eq!(store.url(), format!("file://{}", dir.display()));
        store.put("k.txt", b"v".to_vec()).unwrap();
        assert_eq!(std::fs::read(dir.join("k.txt")).unwrap(), b"v");

        assert_eq!(normalize("./out/"), "./out");
        assert_eq!(normalize("s3://b/p/"), "s3://b/p");
        assert_eq!(normalize("/"), "/");
    }

    #[test]
    fn parse_names_each_kind_of_location() {
        let cloud = |cloud, prefix: &str| Target::Cloud {
            cloud,
            prefix: ObjectPath::from(prefix),
        };
        let local = |p: &str| Target::Local(PathBuf::from(p));
        let cases = [
            ("./out", local("./out")),
            ("out", local("out")),
            ("/abs/dir", local("/abs/dir")),
            ("file:///abs/dir", local("/abs/dir")),
            ("file:///abs/my%20dir/", local("/abs/my dir")),
            ("s3://b/p", cloud(Cloud::S3, "p")),
            ("s3://b", cloud(Cloud::S3, "")),
            ("s3a://b/p/q/", cloud(Cloud::S3, "p/q")),
            ("gs://b/p", cloud(Cloud::Gcs, "p")),
            ("az://c/p", cloud(Cloud::Azure, "p")),
            (
                "abfss://c@acct.dfs.core.windows.net/p",
                cloud(Cloud::Azure, "p"),
            ),
            (
                "https://acct.blob.core.windows.net/c/p/q",
                cloud(Cloud::Azure, "p/q"),
            ),
            (
                "https://s3.eu-west-1.amazonaws.com/b/p",
                cloud(Cloud::S3, "p"),
            ),
            (
                "https://b.s3.eu-west-1.amazonaws.com/p",
                cloud(Cloud::S3, "p"),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(parse(url).unwrap(), want, "{url}");
        }
        for bad in [
            "",
            "s3:/b/p",
            "s3:b",
            "ftp://host/p",
            "http://localhost:9000/b",
            "https://example.com/b",
            "s3:///p",
            "s3://b/p?x=1",
            "file://otherhost/p",
            "s3://b/../p",
        ] {
            assert!(
                matches!(parse(bad), Err(Error::Usage(_))),
                "{bad:?} should be a usage error"
            );
        }
    }

    #[test]
    fn cloud_stores_build_without_connecting() {
        // Nothing here has a reachable endpoint: building must not connect.
        let s3 = Store::open_with(
            "s3://b/p/",
            [
                ("aws_access_key_id", "AKIDEXAMPLE"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
                ("aws_region", "eu-west-1"),
            ],
        )
        .unwrap();
        assert_eq!(s3.url(), "s3://b/p");
        assert_eq!(s3.object_url("x/y.csv"), "s3://b/p/x/y.csv");
        assert_eq!(s3.prefix.as_ref(), "p");

        let minio = Store::open_with(
            "s3://bucket/some/prefix",
            [
                ("aws_endpoint", "http://127.0.0.1:1"),
                ("aws_access_key_id", "k"),
                ("aws_secret_access_key", "s"),
            ],
        )
        .unwrap();
        assert_eq!(minio.prefix.as_ref(), "some/prefix");

        let gcs = Store::open_with("gs://b/p", [] as [(&str, &str); 0]).unwrap();
        assert_eq!(gcs.object_url("k"), "gs://b/p/k");

        let az = Store::open_with(
            "az://c/p",
            [
                ("azure_storage_account_name", "acct"),
                ("azure_storage_account_key", "a2V5"),
            ],
        )
        .unwrap();
        assert_eq!(az.url(), "az://c/p");
        let abfss = Store::open_with(
            "abfss://c@acct.dfs.core.windows.net/p",
            [("azure_storage_account_key", "a2V5")],
        )
        .unwrap();
        assert_eq!(abfss.prefix.as_ref(), "p");
    }

    #[test]
    fn unknown_options_are_usage_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Store::open_with("s3://b/p", [("aws_no_such_thing", "1")]).unwrap_err();
        assert!(
            matches!(err, Error::Usage(ref m) if m.contains("aws_no_such_thing")),
            "{err}"
        );
        let err =
            Store::open_with(tmp.path().to_str().unwrap(), [("aws_region", "x")]).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
    }

    #[test]
    fn a_missing_account_is_a_store_error_naming_the_url() {
        let err = Store::open_with("az://c/p", [] as [(&str, &str); 0]).unwrap_err();
        match err {
            Error::Store { url, .. } => assert_eq!(url, "az://c/p"),
            other => panic!("expected a store error, got {other}"),
        }
    }
}
