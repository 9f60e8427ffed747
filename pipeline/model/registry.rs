//! The customer registry (`customers.csv`) and the optional user map
//! (`users.csv`): who owns which VM, in which time zone, and which API key
//! belongs to which user.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use crate::model::error::{Error, Result};
use crate::model::ids::{RESERVED_CUSTOMER_IDS, valid_id};

const REQUIRED: [&str; 9] = [
    "customer_id",
    "name",
    "email",
    "tier",
    "vm_ids",
    "currency",
    "stripe_customer_id",
    "status",
    "created_at",
];

const OPTIONAL: [&str; 4] = ["cancelled_at", "monthly_limit", "markup", "timezone"];

#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    /// The line of the file it was read from (the header is line 1).
    pub line: u64,
    pub customer_id: Arc<str>,
    pub name: String,
    pub email: String,
    pub tier: String,
    pub vm_ids: Vec<String>,
    pub currency: String,
    pub stripe_customer_id: String,
    pub status: String,
    /// Start of service (RFC 3339, or a date meaning its midnight UTC).
    pub created_at: DateTime<Utc>,
    /// End of service, exclusive: nothing is billed from this instant on.
    pub cancelled_at: Option<DateTime<Utc>>,
    pub monthly_limit: Option<Decimal>,
    pub markup: Option<Decimal>,
    pub timezone: Tz,
    /// Columns beyond the known ones, kept for billing.
    pub extra: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub customers: Vec<Arc<Customer>>,
    by_vm: HashMap<String, Arc<Customer>>,
    /// full SHA-256 hex of an API key -> user id
    users: HashMap<String, Arc<str>>,
}

impl Registry {
    /// Parses `customers.csv` strictly: the first bad row is the error.
    pub fn from_customers_csv(text: &str, path: &Path) -> Result<Registry> {
        let (registry, mut problems) = Registry::parse_customers(text, path)?;
        match problems.is_empty() {
            true => Ok(registry),
            false => Err(problems.swap_remove(0)),
        }
    }

    /// Parses `customers.csv`, skipping each bad row and returning its
    /// problem (file, line and column) beside the customers that are sound.
    /// A bad header is an error: then no row can be trusted.
    pub fn parse_customers(text: &str, path: &Path) -> Result<(Registry, Vec<Error>)> {
        let err = registry_error(path);
        let (mut reader, headers) = csv_reader(text, &err)?;
        let col = |name: &str| headers.iter().position(|h| h == name);
        for name in REQUIRED {
            if col(name).is_none() {
                return Err(err(
                    1,
                    name,
                    "required column is missing from the header".into(),
                ));
            }
        }
        let known: Vec<&str> = REQUIRED.iter().chain(&OPTIONAL).copied().collect();
        let mut registry = Registry::default();
        let mut vm_line: HashMap<String, (u64, Arc<str>)> = HashMap::new();
        let mut seen_ids: HashMap<String, u64> = HashMap::new();
        let mut problems = Vec::new();
        for record in reader.records() {
            let record = match record {
                Ok(record) => record,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    problems.push(err(line, "row", e.to_string()));
                    continue;
                }
            };
            let line = record.position().map_or(0, |p| p.line());
            let customer = match parse_customer(&record, line, &headers, &known, &err) {
                Ok(customer) => customer,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            if let Some(first) = seen_ids.get(&*customer.customer_id) {
                problems.push(err(
                    line,
                    "customer_id",
                    format!("{} is already listed on line {first}", customer.customer_id),
                ));
                continue;
            }
            if let Some((vm, (other_line, other))) = customer
                .vm_ids
                .iter()
                .find_map(|vm| vm_line.get(vm).map(|o| (vm, o)))
            {
                problems.push(err(
                    line,
                    "vm_ids",
                    format!("VM {vm} is already listed by customer {other} on line {other_line}"),
                ));
                continue;
            }
            seen_ids.insert(customer.customer_id.to_string(), line);
            for vm in &customer.vm_ids {
                vm_line.insert(vm.clone(), (line, customer.customer_id.clone()));
                registry.by_vm.insert(vm.clone(), customer.clone());
            }
            registry.customers.push(customer);
        }
        Ok((registry, problems))
    }

    pub fn load_users(&mut self, text: &str, path: &Path) -> Result<()> {
        let err = registry_error(path);
        let (mut reader, headers) = csv_reader(text, &err)?;
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| err(1, name, "required column is missing from the header".into()))
        };
        let (key_col, user_col) = (col("api_key_sha256")?, col("user_id")?);
        for record in reader.records() {
            let record = record
                .map_err(|e| err(e.position().map_or(0, |p| p.line()), "row", e.to_string()))?;
            let line = record.position().map_or(0, |p| p.line());
            let key = record.get(key_col).unwrap_or("").to_ascii_lowercase();
            if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err(
                    line,
                    "api_key_sha256",
                    "expected 64 hex digits (the SHA-256 of the key, never the key itself)".into(),
                ));
            }
            let user = record.get(user_col).unwrap_or("");
            if !valid_id(user) {
                return Err(err(line, "user_id", format!("{user:?} is not a valid id")));
            }
            self.users.insert(key, user.into());
        }
        Ok(())
    }

    pub fn customer_of_vm(&self, vm: &str) -> Option<&Arc<Customer>> {
        self.by_vm.get(vm)
    }

    /// The user owning an API key, by the key's full SHA-256.
    pub fn user_of_key_sha256(&self, sha256_hex: &str) -> Option<&Arc<str>> {
        self.users.get(sha256_hex)
    }
}

/// One `customers.csv` row, or the problem that makes it unusable.
fn parse_customer(
    record: &csv::StringRecord,
    line: u64,
    headers: &csv::StringRecord,
    known: &[&str],
    err: &impl Fn(u64, &str, String) -> Error,
) -> Result<Arc<Customer>> {
    let col = |name: &str| headers.iter().position(|h| h == name);
    let get = |name: &str| {
        col(name)
            .and_then(|i| record.get(i))
            .unwrap_or("")
            .to_string()
    };
    let opt = |name: &str| Some(get(name)).filter(|v| !v.is_empty());
    let customer_id = get("customer_id");
    if !valid_id(&customer_id) {
        return Err(err(
            line,
            "customer_id",
            format!("{customer_id:?} is not a valid id (1-64 of A-Z a-z 0-9 . _ -)"),
        ));
    }
    if RESERVED_CUSTOMER_IDS.contains(&customer_id.as_str()) {
        return Err(err(
            line,
            "customer_id",
            format!(
                "{customer_id:?} is reserved: its invoice {customer_id}.csv would be another file of the revision (reserved: {})",
                RESERVED_CUSTOMER_IDS.join(", ")
            ),
        ));
    }
    let vm_ids: Vec<String> = get("vm_ids")
        .split(';')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect();
    for vm in &vm_ids {
        if !valid_id(vm) {
            return Err(err(
                line,
                "vm_ids",
                format!("{vm:?} is not a valid id (1-64 of A-Z a-z 0-9 . _ -)"),
            ));
        }
    }
    let currency = get("currency").to_ascii_uppercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(err(
            line,
            "currency",
            format!("{currency:?} is not an ISO 4217 code"),
        ));
    }
    let timezone = match opt("timezone") {
        None => Tz::UTC,
        Some(tz) => tz
            .parse::<Tz>()
            .map_err(|_| err(line, "timezone", format!("{tz:?} is not an IANA time zone")))?,
    };
    let decimal = |name: &str| -> Result<Option<Decimal>> {
        opt(name)
            .map(|v| {
                v.parse::<Decimal>()
                    .map_err(|_| err(line, name, format!("{v:?} is not a decimal number")))
            })
            .transpose()
    };
    let extra = headers
        .iter()
        .enumerate()
        .filter(|(_, h)| !known.contains(h))
        .map(|(i, h)| (h.to_string(), record.get(i).unwrap_or("").to_string()))
        .collect();
    let timestamp = |name: &str| -> Result<Option<DateTime<Utc>>> {
        opt(name)
            .map(|v| {
                parse_instant(&v).ok_or_else(|| {
                    err(
                        line,
                        name,
                        format!("{v:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"),
                    )
                })
            })
            .transpose()
    };
    let created_at =
        timestamp("created_at")?.ok_or_else(|| err(line, "created_at", "is empty".into()))?;
    let cancelled_at = timestamp("cancelled_at")?;
    if let Some(c) = cancelled_at.filter(|c| *c < created_at) {
        return Err(err(
            line,
            "cancelled_at",
            format!("{c} is before created_at {created_at}"),
        ));
    }
    Ok(Arc::new(Customer {
        line,
        customer_id: customer_id.as_str().into(),
        name: get("name"),
        email: get("email"),
        tier: get("tier"),
        currency,
        stripe_customer_id: get("stripe_customer_id"),
        status: get("status"),
        created_at,
        cancelled_at,
        monthly_limit: decimal("monthly_limit")?,
        markup: decimal("markup")?,
        timezone,
        extra,
        vm_ids,
    }))
}

impl Customer {
    /// Whether the customer is billed for at least one day of
    /// `[start, end)` (UTC days): a day counts when the customer was in
    /// service at any time in it; `cancelled_at` is exclusive. The rule of
    /// `billed_customers` in `schemas/billing/invoice.sql`.
    pub fn active_between(&self, start: NaiveDate, end: NaiveDate) -> bool {
        let from = start.max(self.created_at.date_naive());
        let until = match self.cancelled_at {
            // the day of the last instant in service, plus one
            Some(c) => end
                .min((c - chrono::TimeDelta::microseconds(1)).date_naive() + chrono::Days::new(1)),
            None => end,
        };
        from < until
    }

    /// Whether the customer's service ended at or before `now`.
    pub fn ended_by(&self, now: DateTime<Utc>) -> bool {
        self.cancelled_at.is_some_and(|c| c <= now)
    }
}

/// An RFC 3339 instant, or a date meaning its midnight UTC.
fn parse_instant(v: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
}

/// A trimming CSV reader over `text` and its header row.
fn csv_reader<'a>(
    text: &'a str,
    err: &impl Fn(u64, &str, String) -> Error,
) -> Result<(csv::Reader<&'a [u8]>, csv::StringRecord)> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| err(1, "header", e.to_string()))?
        .clone();
    Ok((reader, headers))
}

/// Builds the error for `path` at a line and field.
fn registry_error(path: &Path) -> impl Fn(u64, &str, String) -> Error + '_ {
    move |line, field, message| Error::Registry {
        path: path.to_path_buf(),
        line,
        field: field.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "customer_id,name,email,tier,vm_ids,currency,stripe_customer_id,status,created_at,timezone,region\n";

    #[test]
    fn loads_customers_and_maps_vms() {
        let csv = format!(
            "{HEADER}c1,Acme,a@x,pro,vm-1;vm-2,eur,cus_1,active,2026-01-01,Europe/Berlin,eu\n"
        );
        let reg = Registry::from_customers_csv(&csv, Path::new("customers.csv")).unwrap();
        let c = reg.customer_of_vm("vm-2").unwrap();
        assert_eq!(&*c.customer_id, "c1");
        assert_eq!(c.currency, "EUR");
        assert_eq!(c.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(c.extra.get("region").map(String::as_str), Some("eu"));
        assert!(reg.customer_of_vm("vm-3").is_none());
    }

    #[test]
    fn every_known_column_is_documented() {
        let doc = include_str!("../../schemas/customers.md");
        for column in REQUIRED.iter().chain(&OPTIONAL) {
            assert!(
                doc.contains(&format!("`{column}`")),
                "schemas/customers.md does not document {column}"
            );
        }
    }

    #[test]
    fn lenient_parse_skips_bad_rows_and_names_them() {
        let csv = format!(
            "{HEADER}c1,A,a@x,pro,vm-1,EUR,cus_1,active,2026-01-01,UTC,\n\
             c2,B,b@x,pro,vm-2,EURO,cus_2,active,2026-01-01,UTC,\n\
             c3,C,c@x,pro,vm-3,EUR,cus_3,active,yesterday,UTC,\n\
             c4,D,d@x,pro,vm-1,EUR,cus_4,active,2026-01-01T10:00:00+02:00,UTC,\n\
             c5,E,e@x,pro,vm-5,EUR,cus_5,active,2026-02-01,UTC,\n"
        );
        let (reg, problems) = Registry::parse_customers(&csv, Path::new("customers.csv")).unwrap();
        let ids: Vec<&str> = reg.customers.iter().map(|c| &*c.customer_id).collect();
        assert_eq!(ids, ["c1", "c5"]);
        let problems: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("customers.csv:3: field `currency`"));
        assert!(problems[1].starts_with("customers.csv:4: field `created_at`"));
        assert!(problems[2].starts_with("customers.csv:5: field `vm_ids`"));
        assert_eq!(
            reg.customers[1].created_at.to_rfc3339(),
            "2026-02-01T00:00:00+00:00"
        );
    }

    /// The rule of billing's `billed_customers`: a day counts when the
    /// customer was in service at any time in it; `cancelled_at` is
    /// exclusive.
    #[test]
    fn active_between_follows_billings_active_days() {
        let csv = "customer_id,name,email,tier,vm_ids,currency,stripe_customer_id,status,created_at,cancelled_at\n\
             open,A,a@x,pro,,EUR,cus_1,active,2026-01-01,\n\
             midnight,B,b@x,pro,,EUR,cus_2,cancelled,2026-01-01,2026-11-01T00:00:00Z\n\
             morning,C,c@x,pro,,EUR,cus_3,cancelled,2026-01-01,2026-11-01T00:00:01Z\n\
             late,D,d@x,pro,,EUR,cus_4,active,2026-11-30T23:59:59Z,\n\
             next,E,e@x,pro,,EUR,cus_5,active,2026-12-01,\n";
        let reg = Registry::from_customers_csv(csv, Path::new("customers.csv")).unwrap();
        let (start, end) = (
            NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        );
        let active: Vec<(&str, u64)> = reg
            .customers
            .iter()
            .filter(|c| c.active_between(start, end))
            .map(|c| (&*c.customer_id, c.line))
            .collect();
        assert_eq!(active, [("open", 2), ("morning", 4), ("late", 5)]);
        let now = "2026-11-01T00:00:00Z".parse().unwrap();
        let ended: Vec<&str> = reg
            .customers
            .iter()
            .filter(|c| c.ended_by(now))
            .map(|c| &*c.customer_id)
            .collect();
        assert_eq!(ended, ["midnight"]);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let csv = format!(
            "{HEADER}c1,A,a@x,pro,vm-1,EUR,cus_1,active,2026-01-01,UTC,\nc2,B,b@x,pro,vm-1,EUR,cus_2,active,2026-01-01,UTC,\n"
        );
        let e = Registry::from_customers_csv(&csv, Path::new("customers.csv"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "customers.csv:3: field `vm_ids`: VM vm-1 is already listed by customer c1 on line 2"
        );
        // a customer whose invoice would be the revision's summary
        let csv = format!("{HEADER}summary,A,a@x,pro,vm-1,EUR,cus_1,active,2026-01-01,UTC,\n");
        let e = Registry::from_customers_csv(&csv, Path::new("customers.csv"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("customers.csv:2: field `customer_id`: \"summary\" is reserved"),
            "{e}"
        );
        let csv = format!("{HEADER}../../etc,A,a@x,pro,vm-1,EUR,cus_1,active,2026-01-01,UTC,\n");
        let e = Registry::from_customers_csv(&csv, Path::new("customers.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("customers.csv:2: field `customer_id`"), "{e}");
        let csv = format!("{HEADER}c1,A,a@x,pro,vm-1,EUR,cus_1,active,2026-01-01,Mars/Olympus,\n");
        let e = Registry::from_customers_csv(&csv, Path::new("customers.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `timezone`"), "{e}");
    }
}
