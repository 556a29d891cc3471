//! Sync on request (the `sync_usage` tool): pull usage from Make for the caller's organizations, evaluate
//! the budgets on those that synced, and run the automatic plans the crossings created, so the caller
//! sees the consequences of fresh data at once instead of at the evaluator's next pass.

use schemars::JsonSchema;
use serde::Serialize;

use super::caller::Caller;
use super::crossings::{self, Crossing};
use super::error::{Error, Result};
use super::evaluator::{self, PassReport};
use super::sync::{self, OrgSyncReport, Progress};

#[derive(Debug, Serialize, JsonSchema)]
pub struct SyncResult {
    /// True when every organization synced.
    pub all_synced: bool,
    pub organizations: Vec<OrgSyncReport>,
    /// Thresholds of active budgets on the synced organizations that were crossed with the new data
    /// (each recorded once per period, and audited).
    pub threshold_crossings: Vec<Crossing>,
    /// Automatic pause plans (from these crossings or left over) that were executed during this call.
    pub automatic_plans_run: usize,
}

/// Sync every connected organization of the caller (or only `only`), then evaluate and act.
pub async fn sync_and_evaluate(
    c: &Caller<'_>,
    only: Option<i64>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<SyncResult> {
    let organizations = sync::sync_tenant(c, only, progress).await?;
    if organizations.is_empty() {
        return Err(Error::Unavailable(
            "no Make organization is connected to this tenant; an admin can add one with connect_make".into(),
        ));
    }
    let synced: Vec<i64> = organizations.iter().filter(|o| o.status == "synced").map(|o| o.organization_id).collect();
    if synced.is_empty() {
        let why: Vec<String> = organizations
            .iter()
            .map(|o| format!("organization {}: {}", o.organization_id, o.error.as_deref().unwrap_or("failed")))
            .collect();
        return Err(Error::Make(format!("nothing could be synced; {}", why.join("; "))));
    }
    let threshold_crossings = crossings::evaluate_organizations(c, &synced).await?;
    // Automatic plans that these crossings created run now rather than at the evaluator's next pass.
    let mut pass = PassReport::default();
    evaluator::run_plans(c.app, Some(c.tenant), c.request_id, &mut pass).await;
    Ok(SyncResult {
        all_synced: synced.len() == organizations.len(),
        organizations,
        threshold_crossings,
        automatic_plans_run: pass.plans_executed,
    })
}
