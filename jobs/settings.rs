//! Where each job's paths come from: a flag, else its environment variable
//! (both through clap), else `meter.toml`, else the built-in default. And how
//! the jobs talk on stderr: text or JSON lines, with a progress bar only on a
//! terminal.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use indicatif::{ProgressBar, ProgressStyle};
use meter::model::config::{Config, DEFAULT_FILE};
use meter::model::ctx::{Ctx, NoProgress, Progress};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

pub struct Settings {
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    pub config: Config,
    pub log_format: LogFormat,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// The settings of this process ([`init`] ran in `main`).
pub fn settings() -> &'static Settings {
    SETTINGS.get_or_init(|| Settings {
        file: None,
        config: Config::default(),
        log_format: LogFormat::Text,
    })
}

/// Reads the config file (`--config`, `METER_CONFIG`, or `./meter.toml` if
/// it exists) and fixes the log format.
pub fn init(config: Option<PathBuf>, log_format: Option<LogFormat>) -> meter::Result<()> {
    if let Ok(v) = std::env::var("METER_FIXED_TIME")
        && fixed_time().is_none()
    {
        return Err(meter::Error::Usage(format!(
            "METER_FIXED_TIME={v:?} is not an RFC 3339 time such as 2026-11-01T02:00:00Z"
        )));
    }
    let file = config.or_else(|| {
        let default = PathBuf::from(DEFAULT_FILE);
        default.is_file().then_some(default)
    });
    let config = match &file {
        Some(path) => meter::load::config(path)?,
        None => Config::default(),
    };
    let log_format = log_format.unwrap_or(match config.log_format.as_deref() {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Text,
    });
    let _ = SETTINGS.set(Settings {
        file,
        config,
        log_format,
    });
    Ok(())
}

impl Settings {
    fn required<T: Clone>(
        &self,
        flag: Option<T>,
        from_file: &Option<T>,
        key: &str,
    ) -> meter::Result<T> {
        flag.or_else(|| from_file.clone()).ok_or_else(|| {
            let file = match &self.file {
                Some(f) => format!("`{key} = ...` in {}", f.display()),
                None => format!("`{key} = ...` in {DEFAULT_FILE} (none found)"),
            };
            meter::Error::Usage(format!(
                "no {key} given: pass --{key}, set METER_{}, or put {file}",
                key.to_uppercase()
            ))
        })
    }

    pub fn input(&self, flag: Option<PathBuf>) -> meter::Result<PathBuf> {
        self.required(flag, &self.config.input, "input")
    }

    pub fn lake(&self, flag: Option<PathBuf>) -> meter::Result<PathBuf> {
        self.required(flag, &self.config.lake, "lake")
    }

    /// Default: the folder `out`.
    pub fn out(&self, flag: Option<String>) -> String {
        flag.or_else(|| self.config.out.clone())
            .unwrap_or_else(|| "out".into())
    }

    /// Default: none (billing then reads the lake's registry copy).
    pub fn customers(&self, flag: Option<PathBuf>) -> Option<PathBuf> {
        flag.or_else(|| self.config.customers.clone())
    }

    /// Default: `pricing.toml`.
    pub fn pricing(&self, flag: Option<PathBuf>) -> PathBuf {
        flag.or_else(|| self.config.pricing.clone())
            .unwrap_or_else(|| PathBuf::from("pricing.toml"))
    }
}

/// Unwraps a settings lookup, or ends the job as failed (exit 2).
#[macro_export]
macro_rules! or_fail {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $crate::fail(&e),
        }
    };
}

/// One record on stderr: a text line, or a JSON object.
pub fn log(level: &str, message: &str, extra: serde_json::Value) {
    match settings().log_format {
        LogFormat::Text => crate::errln!("{message}"),
        LogFormat::Json => {
            let mut record = serde_json::json!({
                "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "level": level,
                "message": message,
            });
            if let (Some(r), serde_json::Value::Object(extra)) = (record.as_object_mut(), extra) {
                r.extend(extra);
            }
            crate::errln!("{record}");
        }
    }
}

/// A stage summary, line by line: `attention:` lines are warnings.
pub fn log_summary(run_id: &str, summary: &str) {
    for line in summary.lines() {
        let level = match line.trim_start() {
            l if l.starts_with("attention:") => "warn",
            l if l.starts_with("notice:") => "notice",
            _ => "info",
        };
        log(level, line, serde_json::json!({ "run_id": run_id }));
    }
}

/// A progress bar on stderr while it is a terminal and logs are text.
struct Bar(Mutex<Option<ProgressBar>>);

impl Progress for Bar {
    fn start(&self, step: &str, total: u64) {
        let bar = ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{msg:>16} [{bar:40}] {pos}/{len} {elapsed}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_message(step.to_string());
        *self.0.lock().expect("not poisoned") = Some(bar);
    }
    fn advance(&self, units: u64) {
        if let Some(bar) = &*self.0.lock().expect("not poisoned") {
            bar.inc(units);
        }
    }
    fn finish(&self) {
        if let Some(bar) = self.0.lock().expect("not poisoned").take() {
            bar.finish_and_clear();
        }
    }
}

/// A job's context: the wall clock (or `METER_FIXED_TIME`, for reproducible
/// reruns and tests), and a progress bar when someone is watching.
pub fn ctx(job: &str) -> Ctx {
    let ctx = match fixed_time() {
        Some(now) => Ctx::with_run_id(
            Arc::new(meter::model::ctx::FixedClock(now)),
            format!("{}-{job}", now.format("%Y%m%dT%H%M%SZ")),
        ),
        None => Ctx::new(Arc::new(meter::model::ctx::SystemClock), job),
    };
    let watching = std::io::stderr().is_terminal() && settings().log_format == LogFormat::Text;
    if watching {
        ctx.with_progress(Arc::new(Bar(Mutex::new(None))))
    } else {
        ctx.with_progress(Arc::new(NoProgress))
    }
}

/// `METER_FIXED_TIME` (RFC 3339): every clock reading and the run id derive
/// from it, so a rerun names its files exactly as the first run did.
fn fixed_time() -> Option<chrono::DateTime<chrono::Utc>> {
    let v = std::env::var("METER_FIXED_TIME").ok()?;
    chrono::DateTime::parse_from_rfc3339(&v)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// The report path of a run, for messages.
pub fn report_path(lake: &Path, run_id: &str) -> String {
    format!("{}/_runs/{run_id}.json", lake.display())
}
