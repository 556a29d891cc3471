//! Scenario control: activate or deactivate explicit Make scenarios (`POST /scenarios/{id}/start|stop`).
//!
//! Every id must belong to an organization connected in the caller's tenant (as of the last sync), or
//! the whole request is refused before Make is called. For each scenario the current state is read
//! first, so the result says honestly whether it changed, was already in that state, or failed (with
//! Make's error). The outcome, reason and per-scenario results are one audit record, committed with the
//! updated scenario states.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;

use super::caller::Caller;
use super::error::{Error, Result};
use crate::app::App;
use crate::audit::Target;
use crate::domain::{TenantId, ValidationError};
use crate::make::{MakeError, MakeErrorBody, MakeTarget};
use crate::store::ScenarioRecord;

/// What happened to one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOutcome {
    /// Make changed the scenario's state.
    Changed,
    /// The scenario was already in the requested state; Make was not asked to change it.
    AlreadyInState,
    /// Make refused or could not be reached; see `error`.
    Failed,
}

/// Make's error, as a client can act on it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct MakeFailure {
    /// HTTP status, when Make answered.
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
    pub detail: Option<String>,
}

impl From<&MakeError> for MakeFailure {
    fn from(e: &MakeError) -> Self {
        match e.api_error() {
            Some((status, body @ MakeErrorBody { message, code, .. })) => MakeFailure {
                status: Some(status),
                code: code.clone(),
                message: message.clone().unwrap_or_else(|| e.to_string()),
                detail: crate::make::error_details(body),
            },
            None => MakeFailure { status: None, code: None, message: e.to_string(), detail: None },
        }
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ScenarioChange {
    pub scenario_id: i64,
    pub name: String,
    pub organization_id: i64,
    pub outcome: ChangeOutcome,
    /// Whether the scenario is active now, as far as Make reported.
    pub is_active: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<MakeFailure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// The warning for activating an interval-scheduled scenario: Make runs it at once, and that run costs.
fn start_warning(s: &ScenarioRecord) -> Option<String> {
    (s.scheduling_type.as_deref() == Some("indefinitely")).then(|| {
        let every = s.interval_secs.map(|i| format!(" (scheduled every {} min)", i / 60)).unwrap_or_default();
        format!(
            "Make runs scenario {}{every} immediately when it is activated; that run consumes credits",
            s.scenario_id
        )
    })
}

/// Change one scenario: read its state, and ask Make only if it differs.
pub(crate) async fn change_one(app: &App, target: &MakeTarget, s: &ScenarioRecord, active: bool) -> ScenarioChange {
    let mut change = ScenarioChange {
        scenario_id: s.scenario_id,
        name: s.name.clone(),
        organization_id: s.organization_id,
        outcome: ChangeOutcome::Failed,
        is_active: None,
        error: None,
        warning: None,
    };
    let current = match app.make.scenario(target, s.organization_id, s.scenario_id).await {
        Ok(sc) => sc.is_active,
        Err(e) => {
            change.error = Some(MakeFailure::from(&e));
            return change;
        }
    };
    if current == Some(active) {
        change.outcome = ChangeOutcome::AlreadyInState;
        change.is_active = Some(active);
        return change;
    }
    match app.make.set_scenario_active(target, s.organization_id, s.scenario_id, active).await {
        Ok(now) if now == active => {
            change.outcome = ChangeOutcome::Changed;
            change.is_active = Some(now);
            if active {
                change.warning = start_warning(s);
            }
        }
        Ok(now) => {
            change.is_active = Some(now);
            change.error = Some(MakeFailure {
                status: None,
                code: None,
                message: format!("Make answered but reports isActive={now}"),
                detail: None,
            });
        }
        Err(e) => change.error = Some(MakeFailure::from(&e)),
    }
    change
}

/// Where to call Make for each connected organization of the tenant (tokens decrypted), with each
/// organization's API rate limit registered with the client's pacing.
pub async fn targets(app: &App, tenant: TenantId) -> Result<HashMap<i64, MakeTarget>> {
    let mut targets: HashMap<i64, MakeTarget> = HashMap::new();
    for c in &app.store.tenant(tenant).connections().await? {
        let target = app.target(tenant, c)?;
        for o in &c.organizations {
            targets.insert(o.organization_id, target.clone());
            if let Some(limit) = o.api_limit.and_then(|l| u32::try_from(l).ok()).filter(|l| *l > 0) {
                app.make.set_api_limit(&target, o.organization_id, limit);
            }
        }
    }
    Ok(targets)
}

/// Activate (`active = true`) or deactivate scenarios; see the module docs.
pub async fn set_scenarios_active(
    c: &Caller<'_>,
    ids: &[i64],
    active: bool,
    reason: &str,
) -> Result<Vec<ScenarioChange>> {
    let ts = c.store();
    let known = ts.connected_scenarios(ids).await?;
    let unknown: Vec<String> =
        ids.iter().filter(|id| !known.iter().any(|s| s.scenario_id == **id)).map(i64::to_string).collect();
    if !unknown.is_empty() {
        return Err(Error::Invalid(ValidationError::new(
            "scenario_ids",
            format!(
                "scenario(s) {} are not in any Make organization connected to this tenant (as of the last sync); \
                 nothing was changed. Run sync_usage if they were created recently",
                unknown.join(", ")
            ),
        )));
    }
    let targets = targets(c.app, c.tenant).await?;
    let mut changes = Vec::with_capacity(known.len());
    for s in &known {
        let target = targets.get(&s.organization_id).expect("connected_scenarios only returns connected organizations");
        changes.push(change_one(c.app, target, s, active).await);
    }

    let mut tx = ts.begin().await?;
    for change in &changes {
        if let Some(now) = change.is_active {
            tx.set_scenario_active(change.scenario_id, now).await?;
        }
    }
    let before: Vec<_> =
        known.iter().map(|s| json!({"scenario_id": s.scenario_id, "is_active": s.is_active})).collect();
    let mut entry = c.entry(
        Target::MakeScenarios(ids.to_vec()),
        Some(&json!({"scenarios": before, "note": "states as of the last sync"})),
        Some(&json!({"requested_active": active, "results": changes})),
    );
    entry.reason = Some(reason.to_owned());
    tx.commit(entry).await?;
    Ok(changes)
}
