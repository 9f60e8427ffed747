//! Revisions on object storage. A month's outputs are written as `rev-N`
//! beside the earlier ones, never over them; the manifest is written after
//! every file it lists and `latest.json` after the manifest, so a reader who
//! sees either sees complete files. A revision directory without a manifest
//! was never published (an interrupted run) and is rewritten.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::layout::{self, RevisionFile};
use super::render::{self, Period};
use super::{Billing, diff, inputs};
use crate::lake::Lake;
use crate::lake::store::Store;
use crate::model::error::{Error, Result};
use crate::model::ids::sha256_hex;

/// One object of a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    pub key: String,
    pub bytes: u64,
    pub sha256: String,
}

impl Object {
    /// Whether `bytes` are this object as published: its size and SHA-256.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        bytes.len() as u64 == self.bytes && sha256_hex(bytes) == self.sha256
    }
}

/// An input file's version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputVersion {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The versions of what a revision was computed from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inputs {
    pub meter_version: String,
    pub pricing: InputVersion,
    pub customers: InputVersion,
    pub lake: String,
    /// Every aggregate file read, relative to the lake.
    pub lake_files: Vec<InputVersion>,
}

impl Inputs {
    /// The versions of the pricing and customers files (the registry copy
    /// in the lake, or a local file).
    pub fn describe(lake: &Lake, pricing: &Path, customers: &Path) -> Result<Inputs> {
        let version = |path: &Path| -> Result<InputVersion> {
            let (sha256, bytes) = lake.digest(path)?;
            Ok(InputVersion {
                path: path.display().to_string(),
                bytes,
                sha256,
            })
        };
        Ok(Inputs {
            meter_version: env!("CARGO_PKG_VERSION").to_string(),
            pricing: version(pricing)?,
            customers: version(customers)?,
            lake: lake.root().display().to_string(),
            lake_files: Vec::new(),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub month: String,
    pub revision: u32,
    pub run_id: String,
    pub created_at: String,
    /// Every object of the revision but this manifest, in key order.
    pub objects: Vec<Object>,
    pub inputs: Inputs,
    /// FX rates used, `FROM->TO` = rate.
    pub fx_rates: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latest {
    pub month: String,
    pub revision: u32,
    pub manifest: String,
    pub run_id: String,
}

pub fn invoices_prefix(month: &str) -> String {
    format!("invoices/{month}")
}

pub fn revision_prefix(kind: &str, month: &str, revision: u32) -> String {
    format!("{kind}/{month}/rev-{revision}")
}

pub fn manifest_key(month: &str, revision: u32) -> String {
    RevisionFile::Manifest
        .key(month, revision)
        .expect("one key")
}

pub fn latest_key(month: &str) -> String {
    format!("{}/latest.json", invoices_prefix(month))
}

/// Every file of a revision but the manifest, keyed under the store.
pub fn files(period: &Period, billing: &Billing, per_body: usize) -> Vec<(String, Vec<u8>)> {
    let (month, revision) = (period.month, period.revision);
    let key = |file: RevisionFile| file.key(month, revision).expect("one key");
    let mut files = Vec::new();
    let names: std::collections::HashMap<&str, &str> = billing
        .summary
        .iter()
        .map(|r| (r.customer_id.as_str(), r.name.as_str()))
        .collect();
    for chunk in billing
        .lines
        .chunk_by(|a, b| a.customer_id == b.customer_id)
    {
        let customer_id = &chunk[0].customer_id;
        let name = names.get(customer_id.as_str()).copied().unwrap_or_default();
        files.push((
            key(RevisionFile::Invoice { customer_id }),
            render::invoice_csv(period, name, chunk),
        ));
    }
    files.push((
        key(RevisionFile::Summary),
        render::summary_csv(period, &billing.summary),
    ));
    if !billing.credits.is_empty() {
        files.push((
            key(RevisionFile::Credits),
            render::credits_csv(period, &billing.credits),
        ));
    }
    files.push((
        key(RevisionFile::MeterEvents),
        render::meter_events_jsonl(&billing.events),
    ));
    let contract = render::contract_invoices(
        &billing.lines,
        &billing.summary,
        &billing.contract_customers,
    );
    if !contract.is_empty() {
        files.push((
            key(RevisionFile::StripeInvoices),
            render::write_jsonl(&contract),
        ));
    }
    for (i, body) in render::meter_event_stream(&billing.events, per_body)
        .into_iter()
        .enumerate()
    {
        files.push((layout::stream_key(month, revision, i + 1), body));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

fn objects_of(files: &[(String, Vec<u8>)]) -> Vec<Object> {
    files
        .iter()
        .map(|(key, bytes)| Object {
            key: key.clone(),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        })
        .collect()
}

/// What the store holds for a month.
#[derive(Debug, Default)]
pub struct State {
    /// The revision latest.json points at.
    pub current: Option<u32>,
    /// Revisions with a manifest (complete), and their manifests.
    pub manifests: std::collections::BTreeMap<u32, Manifest>,
}

/// The revision `latest.json` names for the month (`None`: never billed).
pub fn current_revision(store: &Store, month: &str) -> Result<Option<u32>> {
    match store.get(&latest_key(month))? {
        Some(bytes) => Ok(Some(parse_latest(store, month, &bytes)?)),
        None => Ok(None),
    }
}

/// The revision in the bytes of the month's `latest.json`.
pub fn parse_latest(store: &Store, month: &str, bytes: &[u8]) -> Result<u32> {
    let latest: Latest = serde_json::from_slice(bytes).map_err(|e| Error::Billing {
        month: month.to_string(),
        message: format!("{} is not valid: {e}", store.object_url(&latest_key(month))),
        hint: "a published file was altered; restore it from the store's versioning or remove the revision",
    })?;
    Ok(latest.revision)
}

impl State {
    pub fn read(store: &Store, month: &str) -> Result<State> {
        let mut state = State {
            current: current_revision(store, month)?,
            ..State::default()
        };
        let bad = |key: &str, e: serde_json::Error| Error::Billing {
            month: month.to_string(),
            message: format!("{} is not valid: {e}", store.object_url(key)),
            hint: "a published file was altered; restore it from the store's versioning or remove the revision",
        };
        for (key, _) in store.list(&invoices_prefix(month))? {
            let Some(n) = layout::revision_of(&key)
                .filter(|_| layout::classify(&key) == RevisionFile::Manifest)
            else {
                continue;
            };
            let bytes = store.get(&key)?.unwrap_or_default();
            let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(&key, e))?;
            state.manifests.insert(n, m);
        }
        Ok(state)
    }

    /// The newest complete revision, or the current one.
    pub fn top(&self) -> Option<u32> {
        self.manifests.keys().copied().max().max(self.current)
    }

    /// Whether revision `n` holds exactly these files (its diff and
    /// correction files aside: they describe the change from the revision
    /// before, not the month).
    pub fn matches(&self, n: u32, files: &[(String, Vec<u8>)]) -> bool {
        self.manifests.get(&n).is_some_and(|m| {
            let published: Vec<&Object> = m
                .objects
                .iter()
                .filter(|o| !layout::classify(&o.key).is_derived())
                .collect();
            let rendered = objects_of(files);
            published.len() == rendered.len() && published.into_iter().eq(rendered.iter())
        })
    }

    pub fn objects(&self, n: u32) -> Vec<Object> {
        self.manifests
            .get(&n)
            .map(|m| m.objects.clone())
            .unwrap_or_default()
    }
}

/// Reads what the diff compares from a published revision.
pub fn snapshot(store: &Store, state: &State, revision: u32) -> Result<diff::Snapshot> {
    let mut files = Vec::new();
    for o in state.objects(revision) {
        if !matches!(
            layout::classify(&o.key),
            RevisionFile::Invoice { .. }
                | RevisionFile::Summary
                | RevisionFile::MeterEvents
                | RevisionFile::StripeInvoices
        ) {
            continue;
        }
        let bytes = store.get(&o.key)?.ok_or_else(|| Error::Billing {
            month: state
                .manifests
                .get(&revision)
                .map(|m| m.month.clone())
                .unwrap_or_default(),
            message: format!(
                "{} is listed in rev-{revision}'s manifest but missing",
                store.object_url(&o.key)
            ),
            hint: "a published file was removed; restore it from the store's versioning",
        })?;
        files.push((o.key, bytes));
    }
    diff::Snapshot::from_files(
        store.url(),
        files.iter().map(|(k, b)| (k.as_str(), b.as_slice())),
    )
}

/// Writes a new revision: its files, then the manifest, then latest.json.
#[allow(clippy::too_many_arguments)]
pub fn write_revision(
    store: &Store,
    lake: &Lake,
    month: &str,
    revision: u32,
    files: Vec<(String, Vec<u8>)>,
    run_id: &str,
    created_at: &str,
    inputs: &Inputs,
    loaded: &inputs::Loaded,
) -> Result<Vec<Object>> {
    let objects = objects_of(&files);
    for (key, bytes) in files {
        store.put(&key, bytes)?;
    }
    let mut inputs = inputs.clone();
    for rel in &loaded.files {
        let (sha256, bytes) = lake.digest(&lake.root().join(rel))?;
        inputs.lake_files.push(InputVersion {
            path: rel.display().to_string(),
            bytes,
            sha256,
        });
    }
    let manifest = Manifest {
        month: month.to_string(),
        revision,
        run_id: run_id.to_string(),
        created_at: created_at.to_string(),
        objects: objects.clone(),
        inputs,
        fx_rates: loaded
            .fx
            .iter()
            .map(|((from, to), rate)| (format!("{from}->{to}"), rate.to_string()))
            .collect(),
    };
    let mut json = serde_json::to_vec_pretty(&manifest).expect("serializes");
    json.push(b'\n');
    store.put(&manifest_key(month, revision), json)?;
    point_latest(store, month, revision, run_id)?;
    Ok(objects)
}

/// Points `latest.json` at a complete revision.
pub fn point_latest(store: &Store, month: &str, revision: u32, run_id: &str) -> Result<()> {
    let latest = Latest {
        month: month.to_string(),
        revision,
        manifest: manifest_key(month, revision),
        run_id: run_id.to_string(),
    };
    let mut json = serde_json::to_vec_pretty(&latest).expect("serializes");
    json.push(b'\n');
    store.put(&latest_key(month), json)
}
