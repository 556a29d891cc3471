//! Budget use cases: create, update (optimistic concurrency) and delete, each committed with its audit
//! record. Changing what automatic pause actions depend on (limit, unit, period, time zone, scope, active
//! flag) needs the permissions those actions exercise.

use super::actions::automation_rights;
use super::caller::Caller;
use super::error::{About, Result, version_conflict};
use crate::audit::Target;
use crate::domain::{Budget, BudgetId, BudgetPatch, BudgetSpec};

pub async fn create(c: &Caller<'_>, spec: BudgetSpec) -> Result<Budget> {
    let budget = Budget::new(BudgetId::new(), spec, c.now(), c.subject());
    let mut tx = c.store().begin().await?;
    tx.insert_budget(&budget).await.about("budget", &budget.id)?;
    tx.commit(c.entry(Target::Budget(budget.id.clone()), None::<&Budget>, Some(&budget))).await?;
    Ok(budget)
}

/// Apply `patch` to budget `id` if it is still at `version`.
pub async fn update(c: &Caller<'_>, id: BudgetId, version: i64, patch: BudgetPatch) -> Result<Budget> {
    let key = id.to_string();
    let mut tx = c.store().begin().await?;
    let current = tx.budget_for_update(id).await.about("budget", &key)?;
    if current.version != version {
        return Err(version_conflict("budget", &key, version, current.version));
    }
    if patch.changes_evaluation() {
        let automatic = tx.automatic_actions(&current.id, None).await?;
        c.require(
            &automation_rights(&automatic),
            "the budget has automatic pause actions, and its limit, unit, period, time zone, scope and active \
             flag decide when and what they pause",
        )?;
    }
    let spec = current.spec.patched(patch)?;
    let updated = current.updated(spec, c.now(), c.subject());
    tx.update_budget(&updated).await.about("budget", &key)?;
    tx.commit(c.entry(Target::Budget(updated.id.clone()), Some(&current), Some(&updated))).await?;
    Ok(updated)
}

/// Delete budget `id` (only if still at `version`, when given); returns it as it was.
pub async fn delete(c: &Caller<'_>, id: BudgetId, version: Option<i64>) -> Result<Budget> {
    let key = id.to_string();
    let mut tx = c.store().begin().await?;
    let current = tx.budget_for_update(id).await.about("budget", &key)?;
    if let Some(v) = version.filter(|v| *v != current.version) {
        return Err(version_conflict("budget", &key, v, current.version));
    }
    tx.delete_budget(id).await.about("budget", &key)?;
    tx.commit(c.entry(Target::Budget(current.id.clone()), Some(&current), None::<&Budget>)).await?;
    Ok(current)
}
