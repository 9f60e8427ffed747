//! `meter.toml`: the optional config file that keeps crontab lines short.
//!
//! ```toml
//! input = "/srv/cliproxy/logs"      # raw input tree, or s3://bucket/raw
//! lake = "/srv/meter/lake"
//! out = "s3://acme-billing/meter"   # or a folder
//! customers = "/srv/meter/customers.csv"
//! pricing = "/etc/meter/pricing.toml"
//! log_format = "json"               # or "text"
//! ```
//!
//! Every key is also a flag (`--lake`) and an environment variable
//! (`METER_LAKE`); a flag beats the variable, which beats the file. Relative
//! paths in the file are relative to the file's folder, so the same crontab
//! line works from any working directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::error::{Error, Result};

/// The file read when neither `--config` nor `METER_CONFIG` names one.
pub const DEFAULT_FILE: &str = "meter.toml";

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub input: Option<PathBuf>,
    pub lake: Option<PathBuf>,
    pub out: Option<String>,
    pub customers: Option<PathBuf>,
    pub pricing: Option<PathBuf>,
    pub log_format: Option<String>,
}

impl Config {
    /// Parses the text of `path` (named in errors with line and key).
    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let start = e.span().map_or(0, |s| s.start.min(text.len()));
            let line = text[..start].matches('\n').count() + 1;
            let line_text = text.lines().nth(line - 1).unwrap_or("");
            Error::Config {
                path: path.to_path_buf(),
                line,
                message: bad_value(line_text).unwrap_or_else(|| e.message().trim().to_string()),
            }
        })?;
        if let Some(format) = &config.log_format
            && !matches!(format.as_str(), "text" | "json")
        {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("log_format"))
                .map_or(1, |i| i + 1);
            return Err(Error::Config {
                path: path.to_path_buf(),
                line,
                message: format!("log_format = {format:?}: expected \"text\" or \"json\""),
            });
        }
        let base = path.parent().unwrap_or(Path::new(""));
        for p in [
            &mut config.input,
            &mut config.lake,
            &mut config.customers,
            &mut config.pricing,
        ]
        .into_iter()
        .flatten()
        {
            // A URL (`s3://bucket/lake`) is not a path to resolve.
            if p.is_relative() && !p.to_string_lossy().contains("://") {
                *p = base.join(&*p);
            }
        }
        if let Some(out) = &mut config.out
            && !out.contains("://")
            && Path::new(out.as_str()).is_relative()
        {
            *out = base.join(out.as_str()).display().to_string();
        }
        Ok(config)
    }
}

/// What each key holds, for messages.
const EXPECTED: &[(&str, &str)] = &[
    (
        "input",
        "a folder or an s3://, gs://, az:// URL as a quoted string, e.g. input = \"/srv/cliproxy/logs\"",
    ),
    (
        "lake",
        "a path as a quoted string, e.g. lake = \"/srv/meter/lake\"",
    ),
    (
        "out",
        "a folder or an s3://, gs://, az:// URL as a quoted string, e.g. out = \"out\"",
    ),
    (
        "customers",
        "a path as a quoted string, e.g. customers = \"customers.csv\"",
    ),
    (
        "pricing",
        "a path as a quoted string, e.g. pricing = \"pricing.toml\"",
    ),
    ("log_format", "\"text\" or \"json\" (quoted)"),
];

/// A TOML error on a `key = value` line of a known key, in the words of
/// the file: the key, what it holds, and what was found. `None` for any
/// other error (an unknown key, a broken table header), whose TOML message
/// is clear enough.
fn bad_value(line: &str) -> Option<String> {
    let (key, value) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let (_, expected) = EXPECTED.iter().find(|(k, _)| *k == key)?;
    let value = value.trim();
    let value: String = value.chars().take(60).collect();
    Some(format!(
        "key `{key}`: {value} is not a valid value: expected {expected}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let c = Config::parse(
            Path::new("/etc/meter/meter.toml"),
            "lake = \"lake\"\nout = \"s3://b/p\"\npricing = \"/abs/pricing.toml\"\ninput = \"../in\"\n",
        )
        .unwrap();
        assert_eq!(c.lake, Some(PathBuf::from("/etc/meter/lake")));
        assert_eq!(c.out.as_deref(), Some("s3://b/p"));
        assert_eq!(c.pricing, Some(PathBuf::from("/abs/pricing.toml")));
        assert_eq!(c.input, Some(PathBuf::from("/etc/meter/../in")));
    }

    #[test]
    fn an_input_url_is_kept_as_it_is() {
        let c = Config::parse(
            Path::new("/etc/meter/meter.toml"),
            "input = \"s3://bucket/raw\"\n",
        )
        .unwrap();
        assert_eq!(c.input, Some(PathBuf::from("s3://bucket/raw")));
    }

    #[test]
    fn a_local_out_folder_is_resolved_too() {
        let c = Config::parse(Path::new("/srv/meter.toml"), "out = \"invoices\"\n").unwrap();
        assert_eq!(c.out.as_deref(), Some("/srv/invoices"));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_line() {
        let err = Config::parse(Path::new("m.toml"), "lake = \"l\"\nlakes = \"x\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("m.toml:2:"), "{text}");
        assert!(text.contains("lakes"), "{text}");
        let err = Config::parse(Path::new("m.toml"), "\nlog_format = \"xml\"\n").unwrap_err();
        assert!(err.to_string().starts_with("m.toml:2:"), "{err}");
        let err = Config::parse(Path::new("m.toml"), "lake = 3\n").unwrap_err();
        assert!(err.to_string().starts_with("m.toml:1:"), "{err}");
    }

    /// `input = input` (unquoted) said "invalid float, expected `inf`".
    #[test]
    fn an_unquoted_value_names_its_key_and_the_expected_type() {
        let err = Config::parse(
            Path::new("/etc/meter/meter.toml"),
            "lake = \"lake\"\ninput = input\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("/etc/meter/meter.toml:2: key `input`:"),
            "{text}"
        );
        assert!(text.contains("input is not a valid value"), "{text}");
        assert!(
            text.contains("expected a folder or an s3://, gs://, az:// URL as a quoted string"),
            "{text}"
        );
        assert!(!text.contains("float"), "{text}");
        let err = Config::parse(Path::new("m.toml"), "\n\nlake = 3\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("m.toml:3: key `lake`: 3 is not a valid value: expected a path"),
            "{err}"
        );
        let err = Config::parse(Path::new("m.toml"), "log_format = json\n").unwrap_err();
        assert!(
            err.to_string().contains("expected \"text\" or \"json\""),
            "{err}"
        );
    }
}
