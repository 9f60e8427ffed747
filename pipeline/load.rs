//! Reads the model's own files from disk and hands their bytes to the
//! model's parsers: `pricing.toml`, `customers.csv` and `users.csv`,
//! `meter.toml`. The model validates; this module only reads, so every
//! error still names the file (and the model's line and key).

use std::path::Path;

use crate::model::config::Config;
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
    let customers_path = input.join("customers.csv");
    let text = std::fs::read_to_string(&customers_path).read_ctx(&customers_path)?;
    let mut registry = Registry::from_customers_csv(&text, &customers_path)?;
    let users_path = input.join("users.csv");
    if users_path.exists() {
        let text = std::fs::read_to_string(&users_path).read_ctx(&users_path)?;
        registry.load_users(&text, &users_path)?;
    }
    Ok(registry)
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
