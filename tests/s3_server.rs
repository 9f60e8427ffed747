//! An S3-protocol server on 127.0.0.1 for tests: `s3s` serving a folder
//! (`s3s-fs`), with SigV4 authentication on, behind [`Strict`], a wrapper
//! that makes conditional writes behave as on AWS S3. Objects land as plain
//! files under `<root>/<bucket>/<key>`, so tests can check what was written.
//!
//! What [`Strict`] enforces (s3s-fs alone checks the conditions without
//! holding anything, so two creators could both win, and it answers 412 to
//! an `If-Match` on a missing key):
//!
//! - `PutObject`, `CompleteMultipartUpload` and `CopyObject` (destination)
//!   with `If-None-Match: *` on an existing key: 412 `PreconditionFailed`;
//!   `If-None-Match` with anything but `*`: 501 `NotImplemented`.
//! - The same with `If-Match: <etag>`: 404 `NoSuchKey` when the key does
//!   not exist (as S3 does; `object_store` reports it as `Precondition`),
//!   412 `PreconditionFailed` when its current ETag differs.
//! - Every write of a key (put, multipart complete, copy, delete) holds
//!   that key's lock from the condition check to the end of the write, and
//!   `GetObject`/`HeadObject` hold it shared: of racing conditional writers
//!   exactly one wins, and a GET or HEAD never sees new bytes with the old
//!   ETag.
//! - `DeleteObject` with `If-Match` (which `object_store` never sends) is
//!   refused with 501 rather than ignored.
//!
//! ETags are what s3s-fs computes: the quoted MD5 of the bytes for a single
//! put, `"<md5 of part md5s>-<parts>"` for a multipart upload; the ETag a
//! write returns is the one a later `If-Match` accepts.
//!
//! [`Faults`] (shared through [`S3Server::faults`]) makes requests fail on
//! purpose and logs what the server answered; [`S3Server::drop_key`] makes
//! an object disappear behind the client's back.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut, S3CopyIfNotExists};
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutResult, RetryConfig,
    UpdateVersion,
};
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// A running S3 server; stopped when dropped.
pub struct S3Server {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    /// A bucket that exists (a folder under the root).
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    /// The folder the server stores buckets in.
    pub root: PathBuf,
    /// Injected failures and the log of answers; lock it to change or read.
    pub faults: Arc<Mutex<Faults>>,
    locks: Arc<KeyLocks>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl S3Server {
    /// `s3://<bucket>/<prefix>`
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{}", self.bucket, prefix.trim_matches('/'))
    }

    /// The `Store::open_with` options that reach this server: endpoint,
    /// credentials, region, plain HTTP.
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_access_key_id", &self.access_key),
            ("aws_secret_access_key", &self.secret_key),
            ("aws_region", &self.region),
            ("aws_allow_http", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The same as environment variables (`AWS_ENDPOINT`, ...), the way a
    /// job run by cron is configured.
    pub fn env(&self) -> Vec<(String, String)> {
        self.options()
            .into_iter()
            .map(|(k, v)| (k.to_uppercase(), v))
            .collect()
    }

    /// Where the server keeps the objects of `bucket`.
    pub fn bucket_dir(&self) -> PathBuf {
        self.root.join(&self.bucket)
    }

    /// Shorthand for `faults.lock().slow_down(..)`.
    pub fn slow_down(&self, times: usize, method: Option<&str>, key_prefix: &str) {
        self.faults
            .lock()
            .unwrap()
            .slow_down(times, method, key_prefix);
    }

    /// Uploads every file under `dir` to `<prefix>/<its path under dir>`
    /// through the S3 API, as a log shipper would; returns how many. The
    /// server then knows each object's ETag: of a file placed in the bucket
    /// folder directly, s3s-fs computes the MD5 again on every GET.
    pub fn import(&self, dir: &Path, prefix: &str) -> usize {
        let s3 = client(self);
        let prefix = prefix.trim_matches('/');
        let mut n = 0;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(folder) = stack.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let key = if prefix.is_empty() {
                    rel
                } else {
                    format!("{prefix}/{rel}")
                };
                let bytes = std::fs::read(&path).unwrap();
                put(&s3, &key, &bytes, PutMode::Overwrite)
                    .unwrap_or_else(|e| panic!("import {}: {e}", path.display()));
                n += 1;
            }
        }
        n
    }

    /// Removes object `key` of the bucket now, as another client's delete
    /// would (under the key's lock). Returns whether it existed. Call it
    /// from a test thread, not from async code.
    pub fn drop_key(&self, key: &str) -> bool {
        let lock = self.locks.lock_of(&self.bucket, key);
        let _held = lock.blocking_write();
        match std::fs::remove_file(self.bucket_dir().join(key)) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => panic!("drop {key}: {e}"),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Failures the server injects, and what it answered. Rules are checked in
/// the order they were added; a request matching one is refused before
/// authentication or any processing.
#[derive(Debug, Default)]
pub struct Faults {
    slow_downs: Vec<SlowDown>,
    /// Every request answered, in order (not the ones whose connection
    /// broke before an answer).
    pub log: Vec<Served>,
}

#[derive(Debug)]
struct SlowDown {
    times: usize,
    method: Option<String>,
    key_prefix: String,
}

/// One request, as the server answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The object key (percent-decoded, without the bucket); empty for
    /// bucket-level requests such as a listing.
    pub key: String,
    /// The query string (a listing's `prefix=...&delimiter=...`).
    pub query: String,
    pub status: u16,
}

impl Faults {
    /// The next `times` requests with this `method` (any method if `None`)
    /// on a key starting with `key_prefix` (`""`: every request, listings
    /// included) answer 503 `SlowDown` without being processed.
    pub fn slow_down(&mut self, times: usize, method: Option<&str>, key_prefix: &str) {
        self.slow_downs.push(SlowDown {
            times,
            method: method.map(str::to_string),
            key_prefix: key_prefix.to_string(),
        });
    }

    /// Drops every rule: the outage is over.
    pub fn clear(&mut self) {
        self.slow_downs.clear();
    }

    /// How many injected 503s are still to come.
    pub fn pending(&self) -> usize {
        self.slow_downs.iter().map(|s| s.times).sum()
    }

    /// The statuses answered to `method` requests on `key`, in order.
    pub fn statuses(&self, method: &str, key: &str) -> Vec<u16> {
        self.log
            .iter()
            .filter(|s| s.method == method && s.key == key)
            .map(|s| s.status)
            .collect()
    }

    /// Whether this request is to be refused; counts it against the rule.
    fn take(&mut self, method: &str, key: &str) -> bool {
        let hit = self.slow_downs.iter_mut().find(|s| {
            s.times > 0
                && s.method.as_deref().is_none_or(|m| m == method)
                && key.starts_with(&s.key_prefix)
        });
        match hit {
            Some(rule) => {
                rule.times -= 1;
                true
            }
            None => false,
        }
    }
}

/// Starts an S3 server storing its buckets under `root` (created if
/// missing), with one bucket, on a random port of 127.0.0.1. The port is
/// bound before this returns, so the server is ready for requests.
pub fn start_s3_server(root: &Path) -> S3Server {
    let bucket = "meter-test".to_string();
    let (access_key, secret_key) = ("meter-access-key", "meter-secret-key");
    std::fs::create_dir_all(root.join(&bucket)).unwrap();

    let locks = Arc::new(KeyLocks::default());
    let strict = Strict {
        fs: s3s_fs::FileSystem::new(root).unwrap(),
        locks: locks.clone(),
        root: root.to_path_buf(),
    };
    let service = {
        let mut b = S3ServiceBuilder::new(strict);
        b.set_auth(SimpleAuth::from_single(access_key, secret_key));
        b.build()
    };
    let faults = Arc::new(Mutex::new(Faults::default()));

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());

    // Two workers, so that racing requests really run at the same time.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("s3-test-server")
        .enable_all()
        .build()
        .unwrap();
    let shared = faults.clone();
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        loop {
            let socket = match listener.accept().await {
                Ok((socket, _)) => socket,
                Err(e) => {
                    eprintln!("s3 test server: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            // Responses go out as soon as they are written (as real servers
            // do): with Nagle's algorithm on, a body written after its
            // headers waits for the client's delayed ACK, ~40 ms a request.
            let _ = socket.set_nodelay(true);
            let service = service.clone();
            let faults = shared.clone();
            let handler = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let service = service.clone();
                let faults = faults.clone();
                async move {
                    let method = req.method().to_string();
                    let key = object_key(req.uri().path());
                    let query = req.uri().query().unwrap_or_default().to_string();
                    let refused = faults.lock().unwrap().take(&method, &key);
                    let response = if refused {
                        S3Error::with_message(
                            S3ErrorCode::SlowDown,
                            "Please reduce your request rate.",
                        )
                        .to_http_response()
                        .map_err(|e| s3s::HttpError::new(Box::new(e)))?
                    } else {
                        service.call(req.map(s3s::Body::from)).await?
                    };
                    let status = response.status().as_u16();
                    faults.lock().unwrap().log.push(Served {
                        method,
                        key,
                        query,
                        status,
                    });
                    Ok::<_, s3s::HttpError>(response)
                }
            });
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), handler);
                if let Err(e) = conn.await {
                    eprintln!("s3 test server: connection: {e}");
                }
            });
        }
    });

    S3Server {
        endpoint,
        bucket,
        access_key: access_key.to_string(),
        secret_key: secret_key.to_string(),
        region: "us-east-1".to_string(),
        root: root.to_path_buf(),
        faults,
        locks,
        runtime: Some(runtime),
    }
}

/// The key of a path-style request path `/<bucket>/<key>`, percent-decoded.
fn object_key(path: &str) -> String {
    let rest = path.trim_start_matches('/');
    let key = rest.split_once('/').map_or("", |(_, key)| key);
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One lock per `bucket/key`, created on first use and kept.
#[derive(Default)]
struct KeyLocks(Mutex<HashMap<String, Arc<RwLock<()>>>>);

impl KeyLocks {
    fn lock_of(&self, bucket: &str, key: &str) -> Arc<RwLock<()>> {
        self.0
            .lock()
            .unwrap()
            .entry(format!("{bucket}/{key}"))
            .or_default()
            .clone()
    }

    async fn write(&self, bucket: &str, key: &str) -> OwnedRwLockWriteGuard<()> {
        self.lock_of(bucket, key).write_owned().await
    }

    async fn read(&self, bucket: &str, key: &str) -> OwnedRwLockReadGuard<()> {
        self.lock_of(bucket, key).read_owned().await
    }

    /// Write locks on several keys, taken in sorted order (no deadlock
    /// between two such calls).
    async fn write_all(&self, bucket: &str, keys: &[String]) -> Vec<OwnedRwLockWriteGuard<()>> {
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        let mut held = Vec::with_capacity(keys.len());
        for key in &keys {
            held.push(self.write(bucket, key).await);
        }
        held
    }
}

/// `s3s_fs::FileSystem` with S3's conditional writes (see the module doc).
struct Strict {
    fs: s3s_fs::FileSystem,
    locks: Arc<KeyLocks>,
    /// The folder the buckets are in (`fs`'s root).
    root: PathBuf,
}

type Answer<'a, T> = Pin<Box<dyn Future<Output = S3Result<S3Response<T>>> + Send + 'a>>;

impl Strict {
    /// The current ETag of `bucket/key`, `None` if there is no such object.
    /// Call with the key's lock held.
    async fn current_etag(
        &self,
        bucket: &str,
        key: &str,
        credentials: Option<s3s::auth::Credentials>,
    ) -> S3Result<Option<ETag>> {
        let input = HeadObjectInput::builder()
            .bucket(bucket.to_string())
            .key(key.to_string())
            .build()
            .map_err(S3Error::internal_error)?;
        let req = S3Request {
            input,
            method: hyper::Method::HEAD,
            uri: hyper::Uri::default(),
            headers: hyper::HeaderMap::new(),
            extensions: hyper::http::Extensions::new(),
            credentials,
            region: None,
            service: None,
            trailing_headers: None,
        };
        match self.fs.head_object(req).await {
            Ok(head) => Ok(head.output.e_tag),
            Err(e) if *e.code() == S3ErrorCode::NoSuchKey => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// S3's verdict on a write carrying these conditions, given the key's
    /// current ETag.
    async fn check(
        &self,
        bucket: &str,
        key: &str,
        credentials: Option<s3s::auth::Credentials>,
        if_none_match: Option<&ETagCondition>,
        if_match: Option<&ETagCondition>,
    ) -> S3Result<()> {
        if if_none_match.is_none() && if_match.is_none() {
            return Ok(());
        }
        let current = self.current_etag(bucket, key, credentials).await?;
        if let Some(condition) = if_none_match {
            if !condition.is_any() {
                return Err(s3_error!(
                    NotImplemented,
                    "If-None-Match on a write accepts only *"
                ));
            }
            if current.is_some() {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ));
            }
        }
        if let Some(condition) = if_match {
            let Some(current) = current else {
                return Err(s3_error!(NoSuchKey, "The specified key does not exist."));
            };
            if let ETagCondition::ETag(expected) = condition
                && !expected.strong_cmp(&current)
            {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ));
            }
        }
        Ok(())
    }
}

/// A conditional header of a request that s3s does not parse into the
/// operation's input (CopyObject's destination conditions).
fn header_condition(headers: &hyper::HeaderMap, name: &str) -> S3Result<Option<ETagCondition>> {
    headers
        .get(name)
        .map(|v| {
            ETagCondition::parse_http_header(v.as_bytes())
                .map_err(|_| s3_error!(InvalidArgument, "invalid {name} header"))
        })
        .transpose()
}

/// Methods handed to s3s-fs as they are.
macro_rules! delegate {
    ($($name:ident: $input:ident => $output:ident;)*) => {$(
        fn $name<'a, 'b>(&'a self, req: S3Request<$input>) -> Answer<'b, $output>
        where
            'a: 'b,
            Self: 'b,
        {
            self.fs.$name(req)
        }
    )*};
}

// `S3` is an `async_trait` trait; without that crate here, its methods are
// written out as the macro expands them.
impl S3 for Strict {
    delegate! {
        create_bucket: CreateBucketInput => CreateBucketOutput;
        delete_bucket: DeleteBucketInput => DeleteBucketOutput;
        get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput;
        head_bucket: HeadBucketInput => HeadBucketOutput;
        list_buckets: ListBucketsInput => ListBucketsOutput;
        list_objects: ListObjectsInput => ListObjectsOutput;
        create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput;
        upload_part: UploadPartInput => UploadPartOutput;
        upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput;
        list_parts: ListPartsInput => ListPartsOutput;
        abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput;
    }

    /// Lists only the folder the prefix names, as S3's index does (s3s-fs
    /// walks the whole bucket for every listing, with a thread hop per
    /// entry: hundreds of listings of a lake beside a large input took
    /// minutes). Same answers: keys in order, `/` folding into common
    /// prefixes (a folder counts only if a file is under it), pages of
    /// `max-keys` continued after the last key given.
    fn list_objects_v2<'a, 'b>(
        &'a self,
        req: S3Request<ListObjectsV2Input>,
    ) -> Answer<'b, ListObjectsV2Output>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let input = req.input;
            let bucket_root = self.root.join(&input.bucket);
            if !bucket_root.is_dir() {
                return Err(s3_error!(NoSuchBucket));
            }
            let prefix = input.prefix.clone().unwrap_or_default();
            let prefix = prefix.trim_start_matches('/').to_string();
            let delimiter = input.delimiter.clone();
            let entries = tokio::task::spawn_blocking(move || {
                list_folder(&bucket_root, &prefix, delimiter.as_deref())
            })
            .await
            .map_err(S3Error::internal_error)?
            .map_err(S3Error::internal_error)?;
            let after = input
                .continuation_token
                .clone()
                .or_else(|| input.start_after.clone());
            let max_keys = input.max_keys.unwrap_or(1000).clamp(0, 1000);
            let mut rest = entries
                .into_iter()
                .filter(|(key, _)| after.as_ref().is_none_or(|a| key > a))
                .peekable();
            let (mut contents, mut prefixes, mut last) = (Vec::new(), Vec::new(), None);
            while contents.len() + prefixes.len() < max_keys as usize {
                let Some((key, entry)) = rest.next() else {
                    break;
                };
                match entry {
                    Some((size, modified)) => contents.push(Object {
                        key: Some(key.clone()),
                        size: Some(size as i64),
                        last_modified: Some(Timestamp::from(modified)),
                        ..Default::default()
                    }),
                    None => prefixes.push(CommonPrefix {
                        prefix: Some(key.clone()),
                    }),
                }
                last = Some(key);
            }
            let is_truncated = rest.peek().is_some();
            let output = ListObjectsV2Output {
                key_count: Some((contents.len() + prefixes.len()) as i32),
                max_keys: Some(max_keys),
                is_truncated: Some(is_truncated),
                contents: (!contents.is_empty()).then_some(contents),
                common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
                continuation_token: input.continuation_token,
                next_continuation_token: if is_truncated { last } else { None },
                delimiter: input.delimiter,
                encoding_type: input.encoding_type,
                name: Some(input.bucket),
                prefix: input.prefix,
                start_after: input.start_after,
                ..Default::default()
            };
            Ok(S3Response::new(output))
        })
    }

    fn get_object<'a, 'b>(&'a self, req: S3Request<GetObjectInput>) -> Answer<'b, GetObjectOutput>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let _held = self.locks.read(&req.input.bucket, &req.input.key).await;
            self.fs.get_object(req).await
        })
    }

    fn head_object<'a, 'b>(
        &'a self,
        req: S3Request<HeadObjectInput>,
    ) -> Answer<'b, HeadObjectOutput>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let _held = self.locks.read(&req.input.bucket, &req.input.key).await;
            self.fs.head_object(req).await
        })
    }

    fn put_object<'a, 'b>(
        &'a self,
        mut req: S3Request<PutObjectInput>,
    ) -> Answer<'b, PutObjectOutput>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
            let _held = self.locks.write(&bucket, &key).await;
            let if_none_match = req.input.if_none_match.take();
            let if_match = req.input.if_match.take();
            self.check(
                &bucket,
                &key,
                req.credentials.clone(),
                if_none_match.as_ref(),
                if_match.as_ref(),
            )
            .await?;
            self.fs.put_object(req).await
        })
    }

    fn complete_multipart_upload<'a, 'b>(
        &'a self,
        mut req: S3Request<CompleteMultipartUploadInput>,
    ) -> Answer<'b, CompleteMultipartUploadOutput>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
            let _held = self.locks.write(&bucket, &key).await;
            let if_none_match = req.input.if_none_match.take();
            let if_match = req.input.if_match.take();
            self.check(
                &bucket,
                &key,
                req.credentials.clone(),
                if_none_match.as_ref(),
                if_match.as_ref(),
            )
            .await?;
            self.fs.complete_multipart_upload(req).await
        })
    }

    fn copy_object<'a, 'b>(
        &'a self,
        req: S3Request<CopyObjectInput>,
    ) -> Answer<'b, CopyObjectOutput>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
            // The destination only: a copy reads its source unlocked.
            let _held = self.locks.write(&bucket, &key).await;
            let if_none_match = header_condition(&req.headers, "if-none-match")?;
            let if_match = header_condition(&req.headers, "if-match")?;
            self.check(
                &bucket,
                &key,
                req.credentials.clone(),
                if_none_match.as_ref(),
                if_match.as_ref(),
            )
            .await?;
            self.fs.copy_object(req).await
        })
    }

    fn delete_object<'a, 'b>(
        &'a self,
        req: S3Request<DeleteObjectInput>,
    ) -> Answer<'b, DeleteObjectOutput>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            if req.input.if_match.is_some() {
                return Err(s3_error!(
                    NotImplemented,
                    "conditional deletes are not supported by this test server"
                ));
            }
            let _held = self.locks.write(&req.input.bucket, &req.input.key).await;
            self.fs.delete_object(req).await
        })
    }

    fn delete_objects<'a, 'b>(
        &'a self,
        req: S3Request<DeleteObjectsInput>,
    ) -> Answer<'b, DeleteObjectsOutput>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let keys: Vec<String> = req
                .input
                .delete
                .objects
                .iter()
                .map(|o| o.key.clone())
                .collect();
            let _held = self.locks.write_all(&req.input.bucket, &keys).await;
            self.fs.delete_objects(req).await
        })
    }
}

/// The keys under `bucket_root` that start with `prefix`, sorted: an object
/// maps to its size and time, a common prefix (with `delimiter`) to `None`.
/// Only the folder the prefix ends in is read, and below it only what can
/// match.
#[allow(clippy::type_complexity)]
fn list_folder(
    bucket_root: &Path,
    prefix: &str,
    delimiter: Option<&str>,
) -> std::io::Result<std::collections::BTreeMap<String, Option<(u64, std::time::SystemTime)>>> {
    let mut out = std::collections::BTreeMap::new();
    let start = match prefix.rfind('/') {
        Some(i) => &prefix[..=i],
        None => "",
    };
    let mut stack = vec![(bucket_root.join(start), start.to_string())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = format!("{rel}{name}");
            let meta = entry.metadata()?;
            if meta.is_dir() {
                let folder = format!("{key}/");
                // Below the prefix, or on the way to it.
                if !(folder.starts_with(prefix) || prefix.starts_with(&folder)) {
                    continue;
                }
                if let Some(d) = delimiter
                    && folder.len() > prefix.len()
                    && folder[prefix.len()..].contains(d)
                {
                    let cut = prefix.len() + folder[prefix.len()..].find(d).unwrap() + d.len();
                    if has_file(&entry.path())? {
                        out.insert(folder[..cut].to_string(), None);
                    }
                    continue;
                }
                stack.push((entry.path(), folder));
            } else if let Some(rest) = key.strip_prefix(prefix) {
                if let Some(d) = delimiter
                    && let Some(i) = rest.find(d)
                {
                    out.insert(key[..prefix.len() + i + d.len()].to_string(), None);
                    continue;
                }
                out.insert(key, Some((meta.len(), meta.modified()?)));
            }
        }
    }
    Ok(out)
}

/// Whether a file is anywhere under `dir`.
fn has_file(dir: &Path) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() || has_file(&entry.path())? {
            return Ok(true);
        }
    }
    Ok(false)
}

// The server itself, through object_store's S3 client: the conditions the
// lake's commits and leases will rely on.

fn server() -> (tempfile::TempDir, S3Server) {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_s3_server(tmp.path());
    (tmp, server)
}

fn builder(server: &S3Server, max_retries: usize) -> AmazonS3Builder {
    AmazonS3Builder::new()
        .with_endpoint(&server.endpoint)
        .with_bucket_name(&server.bucket)
        .with_access_key_id(&server.access_key)
        .with_secret_access_key(&server.secret_key)
        .with_region(&server.region)
        .with_allow_http(true)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(RetryConfig {
            max_retries,
            retry_timeout: Duration::from_secs(30),
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(50),
                base: 2.0,
            },
        })
}

fn client(server: &S3Server) -> AmazonS3 {
    builder(server, 3).build().unwrap()
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn put(s3: &AmazonS3, key: &str, bytes: &[u8], mode: PutMode) -> object_store::Result<PutResult> {
    let opts = PutOptions {
        mode,
        ..Default::default()
    };
    block_on(s3.put_opts(&Key::from(key), bytes.to_vec().into(), opts))
}

fn update(e_tag: &Option<String>) -> PutMode {
    PutMode::Update(UpdateVersion {
        e_tag: e_tag.clone(),
        version: None,
    })
}

/// The object's bytes as the server has them; `None` if there is none.
fn get(s3: &AmazonS3, key: &str) -> Option<Vec<u8>> {
    match block_on(async { s3.get(&Key::from(key)).await?.bytes().await }) {
        Ok(bytes) => Some(bytes.to_vec()),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("get {key}: {e}"),
    }
}

fn statuses(server: &S3Server, method: &str, key: &str) -> Vec<u16> {
    server.faults.lock().unwrap().statuses(method, key)
}

#[test]
fn import_puts_every_file_under_the_prefix_with_its_etag() {
    let (tmp, server) = server();
    let dir = tmp.path().join("logs");
    std::fs::create_dir_all(dir.join("vm-1/cliproxy")).unwrap();
    std::fs::write(dir.join("customers.csv"), b"id\n").unwrap();
    std::fs::write(dir.join("vm-1/cliproxy/usage.log"), b"{}\n").unwrap();
    assert_eq!(server.import(&dir, "/input/"), 2);
    let s3 = client(&server);
    assert_eq!(
        get(&s3, "input/customers.csv").as_deref(),
        Some(&b"id\n"[..])
    );
    assert_eq!(
        get(&s3, "input/vm-1/cliproxy/usage.log").as_deref(),
        Some(&b"{}\n"[..])
    );
    let meta = block_on(s3.head(&Key::from("input/vm-1/cliproxy/usage.log"))).unwrap();
    // The quoted MD5 of the bytes, as S3 gives for a single put.
    assert_eq!(
        meta.e_tag.as_deref(),
        Some("\"8a80554c91d9fca8acb82f023de02f11\"")
    );
    assert_eq!(statuses(&server, "PUT", "input/customers.csv"), vec![200]);
}

#[test]
fn listings_fold_folders_skip_empty_ones_and_page_past_a_thousand_keys() {
    use futures::TryStreamExt as _;
    let (_tmp, server) = server();
    let bucket = server.bucket_dir();
    for key in ["a/1", "a/b/2", "a/b/c/3", "ab", "b/4"] {
        let path = bucket.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, key).unwrap();
    }
    // A folder with nothing in it is no prefix: S3 has no folders.
    std::fs::create_dir_all(bucket.join("a/empty/deeper")).unwrap();
    for i in 0..1005 {
        let path = bucket.join(format!("many/{i:04}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }
    let s3 = client(&server);
    let keys = |prefix: &str| -> Vec<String> {
        let listed: Vec<_> = block_on(s3.list(Some(&Key::from(prefix))).try_collect()).unwrap();
        let mut keys: Vec<String> = listed.into_iter().map(|m| m.location.to_string()).collect();
        keys.sort();
        keys
    };
    assert_eq!(keys("a"), ["a/1", "a/b/2", "a/b/c/3"]);
    assert_eq!(keys("a/b"), ["a/b/2", "a/b/c/3"]);
    assert_eq!(keys("nothing/here"), Vec::<String>::new());
    assert_eq!(keys("many").len(), 1005);
    let folded = block_on(s3.list_with_delimiter(Some(&Key::from("a")))).unwrap();
    let objects: Vec<String> = folded
        .objects
        .iter()
        .map(|m| m.location.to_string())
        .collect();
    let prefixes: Vec<String> = folded
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(objects, ["a/1"]);
    assert_eq!(prefixes, ["a/b"]);
    assert_eq!(folded.objects[0].size, 3);
    let top = block_on(s3.list_with_delimiter(None)).unwrap();
    let prefixes: Vec<String> = top.common_prefixes.iter().map(|p| p.to_string()).collect();
    assert_eq!(prefixes, ["a", "b", "many"]);
    assert_eq!(top.objects.len(), 1);
}

#[test]
fn create_only_put_refuses_an_existing_key() {
    let (_tmp, server) = server();
    let s3 = client(&server);
    put(&s3, "leases/a", b"first", PutMode::Create).unwrap();
    match put(&s3, "leases/a", b"second", PutMode::Create) {
        Err(object_store::Error::AlreadyExists { path, .. }) => assert_eq!(path, "leases/a"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(get(&s3, "leases/a").as_deref(), Some(&b"first"[..]));
    assert_eq!(
        std::fs::read(server.bucket_dir().join("leases/a")).unwrap(),
        b"first"
    );
    assert_eq!(statuses(&server, "PUT", "leases/a"), [200, 412]);
}

#[test]
fn update_put_needs_the_current_etag() {
    let (_tmp, server) = server();
    let s3 = client(&server);
    let first = put(&s3, "commits/head", b"v1", PutMode::Create).unwrap();
    let e1 = first.e_tag.clone().unwrap();
    // The quoted MD5 of the bytes, the same a HEAD reports.
    assert_eq!(e1.len(), 34, "{e1}");
    assert!(e1.starts_with('"') && e1.ends_with('"'), "{e1}");
    assert!(e1[1..33].bytes().all(|b| b.is_ascii_hexdigit()), "{e1}");
    let head = block_on(s3.head(&Key::from("commits/head"))).unwrap();
    assert_eq!(head.e_tag.as_deref(), Some(e1.as_str()));

    // The ETag the put returned is the one If-Match accepts.
    let second = put(&s3, "commits/head", b"v2", update(&first.e_tag)).unwrap();
    let e2 = second.e_tag.clone().unwrap();
    assert_ne!(e2, e1);
    assert_eq!(get(&s3, "commits/head").as_deref(), Some(&b"v2"[..]));

    // The previous ETag is stale: 412, the bytes stay.
    match put(&s3, "commits/head", b"v3", update(&first.e_tag)) {
        Err(e @ object_store::Error::Precondition { .. }) => {
            assert!(e.to_string().contains("PreconditionFailed"), "{e}")
        }
        other => panic!("expected Precondition, got {other:?}"),
    }
    assert_eq!(get(&s3, "commits/head").as_deref(), Some(&b"v2"[..]));

    let third = put(&s3, "commits/head", b"v3", update(&second.e_tag)).unwrap();
    assert_ne!(third.e_tag.as_deref(), Some(e2.as_str()));
    assert_eq!(get(&s3, "commits/head").as_deref(), Some(&b"v3"[..]));
    assert_eq!(
        statuses(&server, "PUT", "commits/head"),
        [200, 200, 412, 200]
    );

    // A missing key: S3 answers 404 NoSuchKey, object_store a Precondition.
    match put(&s3, "commits/none", b"v1", update(&first.e_tag)) {
        Err(e @ object_store::Error::Precondition { .. }) => {
            assert!(e.to_string().contains("NoSuchKey"), "{e}")
        }
        other => panic!("expected Precondition, got {other:?}"),
    }
    assert_eq!(statuses(&server, "PUT", "commits/none"), [404]);
    assert_eq!(get(&s3, "commits/none"), None);
}

#[test]
fn a_dropped_key_fails_its_update_and_can_be_created_again() {
    let (_tmp, server) = server();
    let s3 = client(&server);
    let held = put(&s3, "leases/b", b"mine", PutMode::Create).unwrap();
    assert!(server.drop_key("leases/b"));
    assert!(!server.drop_key("leases/b"), "already gone");
    assert_eq!(get(&s3, "leases/b"), None);
    assert!(matches!(
        put(&s3, "leases/b", b"renewed", update(&held.e_tag)),
        Err(object_store::Error::Precondition { .. })
    ));
    put(&s3, "leases/b", b"theirs", PutMode::Create).unwrap();
    assert_eq!(get(&s3, "leases/b").as_deref(), Some(&b"theirs"[..]));
    assert_eq!(statuses(&server, "PUT", "leases/b"), [200, 404, 200]);
}

/// `writers` threads put `mode` on `key` at the same moment, each its own
/// bytes (256 KiB, so that the writes overlap); returns each one's result
/// and bytes.
fn race(
    server: &S3Server,
    key: &str,
    writers: u8,
    mode: PutMode,
) -> Vec<(object_store::Result<PutResult>, Vec<u8>)> {
    let start = Barrier::new(usize::from(writers));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|i| {
                let (start, mode) = (&start, mode.clone());
                scope.spawn(move || {
                    let s3 = client(server);
                    let bytes = vec![b'a' + i; 256 * 1024];
                    start.wait();
                    (put(&s3, key, &bytes, mode), bytes)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn racing_creators_exactly_one_wins() {
    let (_tmp, server) = server();
    let results = race(&server, "commits/00001.json", 8, PutMode::Create);
    let winners: Vec<&Vec<u8>> = results
        .iter()
        .filter(|(r, _)| r.is_ok())
        .map(|(_, bytes)| bytes)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (result, _) in &results {
        assert!(
            matches!(
                result,
                Ok(_) | Err(object_store::Error::AlreadyExists { .. })
            ),
            "{result:?}"
        );
    }
    let s3 = client(&server);
    assert_eq!(get(&s3, "commits/00001.json").as_ref(), Some(winners[0]));
    let mut seen = statuses(&server, "PUT", "commits/00001.json");
    seen.sort();
    assert_eq!(seen, [200, 412, 412, 412, 412, 412, 412, 412]);
}

#[test]
fn racing_updaters_of_one_etag_exactly_one_wins() {
    let (_tmp, server) = server();
    let s3 = client(&server);
    let base = put(&s3, "leases/c", b"base", PutMode::Create).unwrap();
    let results = race(&server, "leases/c", 8, update(&base.e_tag));
    let winners: Vec<_> = results.iter().filter(|(r, _)| r.is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (result, _) in &results {
        assert!(
            matches!(
                result,
                Ok(_) | Err(object_store::Error::Precondition { .. })
            ),
            "{result:?}"
        );
    }
    let (won, bytes) = winners[0];
    assert_eq!(get(&s3, "leases/c").as_ref(), Some(bytes));
    let head = block_on(s3.head(&Key::from("leases/c"))).unwrap();
    assert_eq!(head.e_tag, won.as_ref().unwrap().e_tag);
}

#[test]
fn a_503_is_retried_through() {
    let (_tmp, server) = server();
    let s3 = client(&server);
    server.slow_down(1, Some("PUT"), "p/");
    put(&s3, "p/k", b"x", PutMode::Overwrite).unwrap();
    assert_eq!(statuses(&server, "PUT", "p/k"), [503, 200]);
    // A conditional put rides through too, and still refuses the second.
    server.slow_down(1, Some("PUT"), "p/");
    put(&s3, "p/c", b"1", PutMode::Create).unwrap();
    assert!(matches!(
        put(&s3, "p/c", b"2", PutMode::Create),
        Err(object_store::Error::AlreadyExists { .. })
    ));
    assert_eq!(statuses(&server, "PUT", "p/c"), [503, 200, 412]);
    // Other methods and keys are not touched by a rule.
    server.slow_down(1, Some("PUT"), "q/");
    assert_eq!(get(&s3, "q/k"), None);
    put(&s3, "p/k", b"y", PutMode::Overwrite).unwrap();
    assert_eq!(server.faults.lock().unwrap().pending(), 1);
    assert_eq!(statuses(&server, "PUT", "p/k"), [503, 200, 200]);
    assert_eq!(statuses(&server, "GET", "q/k"), [404]);
}

#[test]
fn more_503s_than_retries_is_an_error_naming_the_key() {
    let (_tmp, server) = server();
    let s3 = builder(&server, 2).build().unwrap();
    server.slow_down(5, Some("PUT"), "p/k");
    let err = put(&s3, "p/k", b"x", PutMode::Overwrite).unwrap_err();
    let text = err.to_string();
    let url = format!("{}/{}/p/k", server.endpoint, server.bucket);
    assert!(text.contains(&url), "{text}");
    assert!(text.contains("503"), "{text}");
    assert!(text.contains("after 2 retries"), "{text}");
    assert_eq!(statuses(&server, "PUT", "p/k"), [503, 503, 503]);
    assert_eq!(server.faults.lock().unwrap().pending(), 2);
    assert!(!server.bucket_dir().join("p/k").exists());
}

#[test]
fn unconditional_puts_overwrite() {
    let (_tmp, server) = server();
    let s3 = client(&server);
    let first = put(&s3, "o/k", b"one", PutMode::Overwrite).unwrap();
    let second = put(&s3, "o/k", b"two", PutMode::Overwrite).unwrap();
    assert_ne!(first.e_tag, second.e_tag);
    assert_eq!(get(&s3, "o/k").as_deref(), Some(&b"two"[..]));
    // Same bytes, same ETag (the MD5).
    let again = put(&s3, "o/k", b"one", PutMode::Overwrite).unwrap();
    assert_eq!(again.e_tag, first.e_tag);
    assert_eq!(
        std::fs::read(server.bucket_dir().join("o/k")).unwrap(),
        b"one"
    );
}

#[test]
fn create_only_copies_refuse_an_existing_destination() {
    let (_tmp, server) = server();
    let s3 = client(&server);
    put(&s3, "c/src", b"source", PutMode::Overwrite).unwrap();
    put(&s3, "c/taken", b"taken", PutMode::Overwrite).unwrap();
    // CopyObject with If-None-Match: *, and a one-part multipart upload
    // completed with If-None-Match: *.
    let ways = [
        S3CopyIfNotExists::Header("If-None-Match".to_string(), "*".to_string()),
        S3CopyIfNotExists::Multipart,
    ];
    for (i, way) in ways.into_iter().enumerate() {
        let s3 = builder(&server, 3)
            .with_copy_if_not_exists(way)
            .build()
            .unwrap();
        let (src, taken, fresh) = (
            Key::from("c/src"),
            Key::from("c/taken"),
            Key::from(format!("c/new-{i}")),
        );
        match block_on(s3.copy_if_not_exists(&src, &taken)) {
            Err(object_store::Error::AlreadyExists { .. }) => {}
            other => panic!("way {i}: expected AlreadyExists, got {other:?}"),
        }
        assert_eq!(get(&s3, "c/taken").as_deref(), Some(&b"taken"[..]));
        block_on(s3.copy_if_not_exists(&src, &fresh)).unwrap();
        assert_eq!(get(&s3, fresh.as_ref()).as_deref(), Some(&b"source"[..]));
    }
}

#[test]
fn request_paths_name_their_keys() {
    assert_eq!(object_key("/meter-test/a%20b%2Bc.txt"), "a b+c.txt");
    assert_eq!(object_key("/meter-test/p/k"), "p/k");
    assert_eq!(object_key("/meter-test"), "");
    assert_eq!(object_key("/meter-test/bad%zz"), "bad%zz");
}
