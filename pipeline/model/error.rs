//! Typed errors for the library. Every variant that concerns a file names it;
//! the binary renders the chain of causes and maps each error to an exit code.

use std::path::PathBuf;

/// A failure that stops a stage. Per-line problems are never errors: they are
/// rejects, counted in the run report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("input directory {path} does not exist or is not a directory")]
    NoInput { path: PathBuf },

    /// An object-store input (`--input s3://...`) that lists nothing.
    #[error("input {url} holds no objects")]
    NoInputObjects { url: String },

    /// An object-store input that cannot be listed or read: no such
    /// bucket, wrong credentials, an unreachable endpoint.
    #[error("cannot read the input {url}")]
    InputStore {
        url: String,
        #[source]
        source: object_store::Error,
    },

    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}:{line}: field `{field}`: {message}")]
    Registry {
        path: PathBuf,
        line: u64,
        field: String,
        message: String,
    },

    #[error("{path}: {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Pricing {
        path: PathBuf,
        problems: Vec<Problem>,
    },

    #[error("lake {path} is held by another run ({holder})")]
    Locked { path: PathBuf, holder: String },

    #[error("lake {path}: {message}")]
    Lake { path: PathBuf, message: String },

    /// A job that reads a lake was pointed at a folder or prefix without
    /// `_lake.json`.
    #[error("{path} is not a lake (no _lake.json)")]
    NotALake { path: PathBuf },

    /// A rewrite of lake files (compaction, erasure) read back something
    /// other than what it meant to write; nothing was committed.
    #[error("{partition}: the rewritten files do not verify: {message}")]
    Verify { partition: PathBuf, message: String },

    #[error("parquet file {path}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },

    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error("object store {url}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },

    #[error("DuckDB: {context}")]
    DuckDb {
        context: String,
        #[source]
        source: duckdb::Error,
    },

    /// `month` may be empty where a published file is read before its month
    /// is known (the URL names it): then "billing: ...".
    #[error("billing{}: {message}", leading_space(month))]
    Billing {
        month: String,
        message: String,
        hint: &'static str,
    },

    #[error("report {month}: {message}")]
    Report {
        month: String,
        message: String,
        hint: &'static str,
    },

    #[error("stripe push: {message}")]
    Stripe { message: String, hint: &'static str },

    #[error("{path}:{line}: {message}")]
    Config {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("invalid arguments: {0}")]
    Usage(String),

    #[error("the query failed: {message}")]
    Query { message: String },

    #[error("explain {month} {customer}: {message}")]
    Explain {
        month: String,
        customer: String,
        message: String,
        hint: &'static str,
    },
}

/// `s` with a space before it, or nothing when it is empty.
fn leading_space(s: &str) -> String {
    match s {
        "" => String::new(),
        s => format!(" {s}"),
    }
}

impl Error {
    /// What an operator should do about this error, shown under the message.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::NoInput { .. } => {
                Some("pass --input the directory that holds customers.csv and one folder per VM")
            }
            Error::NoInputObjects { .. } => Some(
                "check the bucket and prefix of --input: they must hold customers.csv and one folder per VM",
            ),
            Error::InputStore { .. } => Some(
                "check the --input URL (bucket and prefix) and the store's endpoint and credentials (AWS_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP; GOOGLE_*; AZURE_*); nothing was ingested",
            ),
            Error::Read { .. } => Some("check that the file exists and is readable by this user"),
            Error::Write { .. } => {
                Some("check that the lake directory is writable and the disk has space")
            }
            Error::Registry { .. } => {
                Some("fix the registry file and run again; nothing was written")
            }
            Error::Pricing { .. } => {
                Some("fix the named keys; `meter pricing check` validates the file")
            }
            Error::Locked { .. } => Some(
                "wait for the other run to finish; if none is running, the lock is released automatically when its process exits",
            ),
            Error::NotALake { .. } => Some(
                "check --lake (or METER_LAKE, or lake in meter.toml): the path, or the bucket and prefix; or run `meter ingest` into it first (`meter nightly` does too)",
            ),
            Error::Lake { .. } | Error::Parquet { .. } => Some(
                "the lake needs attention: inspect the named file, or rebuild the affected dates with --rebuild",
            ),
            Error::Verify { .. } => Some(
                "nothing was changed in the named partition (its rewrite was checked before the commit and refused): keep the run report and report this as a bug in meter",
            ),
            Error::Store { .. } => Some(
                "check the URL above (bucket and prefix) and the store's endpoint and credentials (AWS_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP; GOOGLE_*; AZURE_*), then run the job again: nothing half-written was published, and the next run on a lake finishes or discards an interrupted commit",
            ),
            Error::DuckDb { .. } => Some(
                "check the named SQL or input file; if the inputs are sound, this is a bug in meter: please report it",
            ),
            Error::Billing { hint, .. } => Some(hint),
            Error::Report { hint, .. } => Some(hint),
            Error::Stripe { hint, .. } => Some(hint),
            Error::Config { .. } => Some(
                "fix the config file (keys: input, lake, out, customers, pricing, log_format), or pass --config another one",
            ),
            Error::Usage(_) => Some("see --help"),
            Error::Query { .. } => Some(
                "fix the SQL; `meter query \"SHOW TABLES\"` lists the views and `meter query \"DESCRIBE api_usage\"` a view's columns",
            ),
            Error::Explain { hint, .. } => Some(hint),
            Error::Arrow(_) => Some("this is a bug in meter: please report it with the run report"),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One problem in a validated file (`pricing.toml`), at a key such as
/// `models[3].input`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Shorthand for attaching a path to an IO error while reading.
pub(crate) trait IoContext<T> {
    fn read_ctx(self, path: impl Into<PathBuf>) -> Result<T>;
    fn write_ctx(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn read_ctx(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Read {
            path: path.into(),
            source,
        })
    }
    fn write_ctx(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Write {
            path: path.into(),
            source,
        })
    }
}
