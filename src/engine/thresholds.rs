//! Threshold use cases: add, update (optimistic concurrency) and remove, each committed with its audit
//! record. Changing when a threshold with automatic pause actions crosses needs the permissions those
//! actions exercise.

use super::actions::automation_rights;
use super::caller::Caller;
use super::error::{About, Result, version_conflict};
use crate::audit::Target;
use crate::domain::BudgetId;
use crate::domain::ValidationError;
use crate::domain::threshold::{Threshold, ThresholdPatch, ThresholdSpec};

pub async fn add(c: &Caller<'_>, budget_id: BudgetId, spec: ThresholdSpec) -> Result<Threshold> {
    let key = budget_id.to_string();
    let mut tx = c.store().begin().await?;
    // Lock the budget so it cannot be deleted under the new threshold.
    let budget = tx.budget_for_update(budget_id).await.about("budget", &key)?;
    let t = Threshold::new(budget.id, spec, c.now(), c.subject());
    tx.insert_threshold(&t).await?;
    tx.commit(c.entry(Target::Threshold(t.id.clone()), None::<&Threshold>, Some(&t))).await?;
    Ok(t)
}

/// Apply `patch` to threshold `id` if it is still at `version`.
pub async fn update(c: &Caller<'_>, id: &str, version: i64, patch: ThresholdPatch) -> Result<Threshold> {
    if patch.is_empty() {
        return Err(ValidationError::new(
            "(arguments)",
            "nothing to update: give at least one field besides id and version",
        )
        .into());
    }
    let mut tx = c.store().begin().await?;
    let current = tx.threshold_for_update(id).await.about("threshold", id)?;
    if current.version != version {
        return Err(version_conflict("threshold", id, version, current.version));
    }
    if patch.changes_crossing() {
        let automatic = tx.automatic_actions(&current.budget_id, Some(&current.id)).await?;
        c.require(
            &automation_rights(&automatic),
            "the threshold has automatic pause actions, and its kind, value, basis and cooldown decide when \
             they pause",
        )?;
    }
    let updated = current.patched(patch, c.now(), c.subject())?;
    tx.update_threshold(&updated).await.about("threshold", id)?;
    tx.commit(c.entry(Target::Threshold(updated.id.clone()), Some(&current), Some(&updated))).await?;
    Ok(updated)
}

/// Remove threshold `id`; returns it as it was.
pub async fn remove(c: &Caller<'_>, id: &str) -> Result<Threshold> {
    let mut tx = c.store().begin().await?;
    let current = tx.threshold_for_update(id).await.about("threshold", id)?;
    tx.delete_threshold(id).await.about("threshold", id)?;
    tx.commit(c.entry(Target::Threshold(id.to_owned()), Some(&current), None::<&Threshold>)).await?;
    Ok(current)
}
