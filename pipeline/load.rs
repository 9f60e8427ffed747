//! Reads the model's own files from disk and hands their bytes to the
//! model's parsers: `pricing.toml`, `customers.csv` and `users.csv`,
//! `contracts.toml`, `meter.toml`. The model validates; this module only reads, so every
//! error still names the file (and the model's line and key).

use std::path::{Path, PathBuf};

use crate::model::config::Config;
use crate::model::contracts::Contracts;
use crate::model::error::{Error, IoContext, Result};
use crate::model::pricing::Pricing;
use crate::model::registry::Registry;

/// Reads and validates a pricing file.
pub fn pricing(path: &Path) -> Result<Pricing> {
    let text = std::fs::read_to_string(path).read_ctx(path)?;
    Pricing::parse(&text).map_err(|problems| Error::Pricing {
        path: path.to_path_buf(),
        problems,
    })
}

/// Reads `<input>/customers.csv` (required) and `<input>/users.csv`
/// (optional), strictly: the first bad row is the error.
pub fn registry(input: &Path) -> Result<Registry> {
    registry_from(|name| {
        let path = input.join(name);
        if name == "users.csv" && !path.exists() {
            return Ok((None, path));
        }
        let text = std::fs::read_to_string(&path).read_ctx(&path)?;
        Ok((Some(text), path))
    })
}

/// [`registry`] from wherever `read` reads: `read(name)` is the text of
/// `customers.csv` or `users.csv` (`None` when there is no such file) and
/// the path or URL that messages name.
pub fn registry_from(read: impl Fn(&str) -> Result<(Option<String>, PathBuf)>) -> Result<Registry> {
    let (text, customers_path) = read("customers.csv")?;
    let Some(text) = text else {
        return Err(Error::Read {
            path: customers_path,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or object"),
        });
    };
    let mut registry = Registry::from_customers_csv(&text, &customers_path)?;
    if let (Some(text), users_path) = read("users.csv")? {
        registry.load_users(&text, &users_path)?;
    }
    Ok(registry)
}

/// Reads and validates a contracts file (`contracts.toml`): the sound
/// contracts and a problem per bad entry. `None` when there is no file at
/// `path` and `required` is false.
pub fn contracts(path: &Path, required: bool) -> Result<Option<(Contracts, Vec<Error>)>> {
    let text = match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        read => read.read_ctx(path)?,
    };
    Contracts::parse(&text, path).map(Some)
}

/// Reads a customers file leniently (see [`Registry::parse_customers`]):
/// the sound customers, and a problem per bad row.
pub fn customers(path: &Path) -> Result<(Registry, Vec<Error>)> {
    let text = std::fs::read_to_string(path).read_ctx(path)?;
    Registry::parse_customers(&text, path)
}

/// Reads `meter.toml`, resolving relative paths against its folder.
pub fn config(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).read_ctx(path)?;
    Config::parse(path, &text)
}
