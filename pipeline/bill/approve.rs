//! Approval: finance marks one revision of a month final before anything
//! derived from it leaves for Stripe (`meter stripe push --month`).
//!
//! ```text
//! <out>/invoices/YYYY-MM/approved.json   the approved revision, and earlier approvals
//! ```
//!
//! Approving checks the revision first: it must be complete (a manifest) and
//! every object it lists must still have the size and SHA-256 the manifest
//! recorded, so what finance approved is what gets sent.

use serde::{Deserialize, Serialize};

use super::publish::{self, State};
use crate::lake::Lake;
use crate::lake::store::Store;
use crate::model::ctx::Ctx;
use crate::model::error::{Error, Result};
use crate::model::ids::sha256_hex;

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub month: String,
    pub revision: u32,
    pub approved_at: String,
    pub approved_by: String,
    /// SHA-256 of the revision's manifest as approved.
    pub manifest_sha256: String,
    pub run_id: String,
}

/// `approved.json`: the approval in force, and the ones it replaced.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Approvals {
    #[serde(flatten)]
    current: Approval,
    #[serde(default)]
    history: Vec<Approval>,
}

pub fn approved_key(month: &str) -> String {
    format!("{}/approved.json", publish::invoices_prefix(month))
}

/// The approval in force for `month` (`YYYY-MM`), if any.
pub fn approved(store: &Store, month: &str) -> Result<Option<Approval>> {
    Ok(read(store, month)?.map(|a| a.current))
}

fn read(store: &Store, month: &str) -> Result<Option<Approvals>> {
    let key = approved_key(month);
    let Some(bytes) = store.get(&key)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Billing {
            month: month.to_string(),
            message: format!("{} is not valid: {e}", store.object_url(&key)),
            hint: "restore approved.json from the store's versioning, or approve the revision again",
        })
}

pub struct ApproveOptions {
    /// The lake, for the run report (and one run at a time).
    pub lake: std::path::PathBuf,
    pub out: String,
    pub store_options: Vec<(String, String)>,
    /// `YYYY-MM`.
    pub month: String,
    /// `None`: the current revision (latest.json).
    pub revision: Option<u32>,
    /// Who approves (recorded as given; refused when empty).
    pub by: String,
}

#[derive(Debug, Serialize)]
pub struct ApproveReport {
    pub job: &'static str,
    pub run_id: String,
    pub month: String,
    pub revision: u32,
    /// `approved`, or `unchanged` when it already was.
    pub status: &'static str,
    pub previous: Option<u32>,
    pub objects_verified: usize,
    pub approval: Approval,
    pub notices: Vec<String>,
}

crate::model::report::stage_report!(ApproveReport);

impl ApproveReport {
    pub fn needs_attention(&self) -> bool {
        false
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "approve {} {}: revision {} {} by {} ({} objects verified)\n",
            self.run_id,
            self.month,
            self.revision,
            self.status,
            self.approval.approved_by,
            self.objects_verified
        );
        for n in &self.notices {
            s += &format!("  notice: {n}\n");
        }
        s
    }
}

/// Approves a revision after checking it is complete and intact.
pub fn approve(ctx: &Ctx, opts: &ApproveOptions) -> Result<ApproveReport> {
    if opts.by.trim().is_empty() {
        return Err(Error::Usage(
            "an approval names who approves: pass --by NAME".into(),
        ));
    }
    let lake = Lake::open(&opts.lake, &ctx.run_id)?;
    let report = check_and_record(ctx, opts)?;
    let json = serde_json::to_string_pretty(&report).expect("the report serializes");
    lake.write_report(&ctx.run_id, &json)?;
    Ok(report)
}

fn check_and_record(ctx: &Ctx, opts: &ApproveOptions) -> Result<ApproveReport> {
    let store = Store::open_configured(&opts.out, &opts.store_options)?;
    let month = opts.month.as_str();
    let refuse = |message: String, hint: &'static str| Error::Billing {
        month: month.to_string(),
        message,
        hint,
    };
    let state = State::read(&store, month)?;
    let revision = match opts.revision.or(state.current) {
        Some(r) => r,
        None => {
            return Err(refuse(
                format!("{} has no published revision", store.url()),
                "bill the month first (meter monthly or meter bill), then approve",
            ));
        }
    };
    let Some(manifest) = state.manifests.get(&revision) else {
        return Err(refuse(
            format!("rev-{revision} is not a complete revision (no manifest)"),
            "approve a published revision: see invoices/<month>/latest.json",
        ));
    };
    for o in &manifest.objects {
        let bytes = store.get(&o.key)?;
        let intact = bytes.as_ref().is_some_and(|b| o.matches(b));
        if !intact {
            return Err(refuse(
                format!(
                    "{} does not match rev-{revision}'s manifest (missing or altered)",
                    store.object_url(&o.key)
                ),
                "nothing was approved; restore the file from the store's versioning or rerun the month",
            ));
        }
    }
    let manifest_bytes = store
        .get(&publish::manifest_key(month, revision))?
        .unwrap_or_default();
    let manifest_sha256 = sha256_hex(&manifest_bytes);
    let existing = read(&store, month)?;
    let mut notices = Vec::new();
    if state.current.is_some_and(|c| c != revision) {
        notices.push(format!(
            "rev-{revision} is not the current revision (rev-{}): the approved one is what stripe push sends",
            state.current.unwrap_or_default()
        ));
    }
    let previous = existing.as_ref().map(|a| a.current.revision);
    if let Some(a) = &existing
        && a.current.revision == revision
        && a.current.manifest_sha256 == manifest_sha256
    {
        return Ok(ApproveReport {
            job: "approve",
            run_id: ctx.run_id.clone(),
            month: month.to_string(),
            revision,
            status: "unchanged",
            previous,
            objects_verified: manifest.objects.len(),
            approval: a.current.clone(),
            notices,
        });
    }
    let approval = Approval {
        month: month.to_string(),
        revision,
        approved_at: ctx.clock.now().to_rfc3339(),
        approved_by: opts.by.clone(),
        manifest_sha256,
        run_id: ctx.run_id.clone(),
    };
    let mut history = Vec::new();
    if let Some(a) = existing {
        history = a.history;
        history.push(a.current);
    }
    let record = Approvals {
        current: approval.clone(),
        history,
    };
    let mut json = serde_json::to_vec_pretty(&record).expect("serializes");
    json.push(b'\n');
    store.put(&approved_key(month), json)?;
    if let Some(p) = previous {
        notices.push(format!("replaces the approval of rev-{p}"));
    }
    Ok(ApproveReport {
        job: "approve",
        run_id: ctx.run_id.clone(),
        month: month.to_string(),
        revision,
        status: "approved",
        previous,
        objects_verified: manifest.objects.len(),
        approval,
        notices,
    })
}
