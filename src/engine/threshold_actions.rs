//! Threshold action use cases: attach an action to a threshold, remove it, and mark scenarios critical.
//!
//! Who attaches an automatic pause is recorded (role, transport, token), because its plans later run on
//! that principal's authority (`actions::automation_refusal`). The permissions an attachment needs because
//! of its arguments (selector `all`, mode `automatic`) are declared in `auth::ARGUMENT_RULES` and checked by
//! the guard before this runs; clearing a critical mark depends on stored data and is checked here.

use super::caller::Caller;
use super::error::{About, Result};
use crate::audit::Target;
use crate::auth::Permission;
use crate::domain::ValidationError;
use crate::domain::action::{ActionDraft, ThresholdAction};
use crate::domain::clock::format_timestamp;
use crate::domain::threshold::Basis;

pub async fn attach(c: &Caller<'_>, threshold_id: &str, draft: ActionDraft) -> Result<ThresholdAction> {
    let checked = draft.check()?;
    let mut tx = c.store().begin().await?;
    let threshold = tx.threshold_for_update(threshold_id).await.about("threshold", threshold_id)?;
    if checked.gate.is_some() && threshold.spec.basis != Basis::Forecast {
        return Err(ValidationError::new(
            "gate",
            "applies to actions on forecast thresholds only: an actual-spend crossing is certain",
        )
        .into());
    }
    let principal = c.principal;
    let action = ThresholdAction {
        id: uuid::Uuid::now_v7().to_string(),
        threshold_id: threshold.id,
        kind: draft.kind,
        selector: checked.selector,
        mode: checked.mode,
        reverse_at_period_end: draft.reverse_at_period_end,
        delay_minutes: checked.delay_minutes,
        gate: checked.gate,
        created_at: format_timestamp(c.now()),
        created_by: c.subject().to_owned(),
        created_role: Some(principal.map_or_else(|| c.actor.role.clone(), |p| p.role.as_str().to_owned())),
        created_transport: Some(
            principal.map_or_else(|| c.actor.transport.clone(), |p| p.transport.as_str().to_owned()),
        ),
        created_token_id: principal.and_then(|p| p.token_id).map(|t| t.to_string()),
    };
    tx.insert_action(&action).await?;
    tx.commit(c.entry(Target::ThresholdAction(action.id.clone()), None::<&ThresholdAction>, Some(&action))).await?;
    Ok(action)
}

/// Remove action `id`; returns it as it was. Plans it already created stay.
pub async fn remove(c: &Caller<'_>, id: &str) -> Result<ThresholdAction> {
    let mut tx = c.store().begin().await?;
    let removed = tx.delete_action(id).await.about("threshold action", id)?;
    tx.commit(c.entry(Target::ThresholdAction(id.to_owned()), Some(&removed), None::<&ThresholdAction>)).await?;
    Ok(removed)
}

/// Mark scenario `scenario_id` critical or not; returns whether it was critical before.
pub async fn set_critical(c: &Caller<'_>, scenario_id: i64, critical: bool) -> Result<bool> {
    let mut tx = c.store().begin().await?;
    let was = tx.set_scenario_critical(scenario_id, critical).await.about("scenario", &scenario_id.to_string())?;
    if was && !critical {
        // Clearing a mark exposes the scenario to automatic pauses that others configured.
        c.require(
            &[Permission::ExecuteAutomatedActions],
            "clearing a critical mark lets automated actions pause the scenario",
        )?;
    }
    let after = serde_json::json!({"scenario_id": scenario_id, "critical": critical, "was_critical": was});
    tx.commit(c.entry(Target::MakeScenario(scenario_id), Some(&serde_json::json!({"critical": was})), Some(&after)))
        .await?;
    Ok(was)
}
