//! Threshold evaluation: compare each threshold of a budget with its watched value (actual spend or the
//! forecast period-end total) and record crossings by the rule in `domain::threshold::decide`.
//!
//! Each crossing is written with its audit record in one transaction (`threshold_crossed`); going back
//! below the amount re-arms the threshold, also audited (`threshold_rearmed`). Runs after every usage sync;
//! the background evaluator will run it on a schedule.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;

use super::status::{self, StatusError};
use crate::audit::{Actor, AuditEntry, Outcome};
use crate::domain::clock::format_timestamp;
use crate::domain::threshold::{Basis, CrossingEvent, Decision, Severity, decide, next_state};
use crate::domain::{Budget, TenantId};
use crate::store::{Store, StoreError};

/// A crossing recorded by an evaluation.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Crossing {
    pub budget_id: String,
    pub budget_name: String,
    pub threshold_id: String,
    pub label: Option<String>,
    pub basis: Basis,
    pub severity: Severity,
    /// The watched value and the threshold's amount, in whole units.
    pub value: i64,
    pub amount: i64,
    pub crossed_at: String,
}

/// Evaluate one budget's thresholds at `now`; returns the crossings recorded.
pub async fn evaluate_budget(
    store: &Store,
    tenant: TenantId,
    budget: &Budget,
    now: Timestamp,
    actor: &Actor,
    request_id: &str,
) -> Result<Vec<Crossing>, StatusError> {
    let thresholds = store.tenant(tenant).thresholds(&budget.id).await?;
    if thresholds.is_empty() || !budget.spec.active {
        return Ok(Vec::new());
    }
    let computed = status::compute(store, tenant, budget, now).await?;
    let key = computed.window.key();
    let states = store.tenant(tenant).crossing_states(&budget.id).await?;
    let actual = computed.status.spent_centi;
    let forecast = computed.status.spent_centi + computed.remaining.as_ref().map_or(0, |r| r.total.round() as i64);
    let at = format_timestamp(now);
    let mut crossings = Vec::new();
    for t in &thresholds {
        let amount = t.spec.amount_centi(budget.spec.limit);
        let value = match t.spec.basis {
            Basis::Actual => actual,
            Basis::Forecast => forecast,
        };
        let state = states.get(&t.id);
        let decision = decide(state, &key, value, amount, now, t.spec.cooldown());
        let Some(new_state) = next_state(state, &key, decision, now) else { continue };
        let mut tx = store.tenant(tenant).begin().await?;
        tx.save_crossing_state(&t.id, &new_state, &at).await?;
        let detail = json!({
            "budget_id": budget.id, "threshold": t.spec.describe(), "severity": t.spec.severity.as_str(),
            "period": key, "value_centi": value, "amount_centi": amount,
        });
        let action = match decision {
            Decision::Cross => {
                let event = CrossingEvent {
                    id: uuid::Uuid::now_v7().to_string(),
                    threshold_id: t.id.clone(),
                    budget_id: budget.id.clone(),
                    period_key: key.clone(),
                    crossed_at: at.clone(),
                    basis: t.spec.basis,
                    severity: t.spec.severity,
                    value_centi: value,
                    amount_centi: amount,
                };
                tx.insert_crossing(&event).await?;
                crossings.push(Crossing {
                    budget_id: budget.id.clone(),
                    budget_name: budget.spec.name.clone(),
                    threshold_id: t.id.clone(),
                    label: t.spec.label.clone(),
                    basis: t.spec.basis,
                    severity: t.spec.severity,
                    value: status::units(value),
                    amount: status::units(amount),
                    crossed_at: at.clone(),
                });
                "threshold_crossed"
            }
            Decision::Rearm => "threshold_rearmed",
            Decision::Unchanged => unreachable!("next_state returns None for Unchanged"),
        };
        tx.commit(AuditEntry {
            actor: actor.clone(),
            action: action.into(),
            target: format!("threshold:{}", t.id),
            outcome: Outcome::Success,
            reason: None,
            request_id: request_id.to_owned(),
            before: None,
            after: Some(detail),
        })
        .await?;
    }
    Ok(crossings)
}

/// Evaluate every active budget of a tenant whose scope is one of `organizations`.
pub async fn evaluate_organizations(
    store: &Store,
    tenant: TenantId,
    organizations: &[i64],
    now: Timestamp,
    actor: &Actor,
    request_id: &str,
) -> Result<Vec<Crossing>, StatusError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .tenant(tenant)
            .list_budgets(&crate::store::BudgetFilter { active: Some(true), ..Default::default() }, cursor, 200)
            .await?;
        for b in page.budgets.iter().filter(|b| organizations.contains(&b.spec.scope.organization_id)) {
            match evaluate_budget(store, tenant, b, now, actor, request_id).await {
                Ok(c) => out.extend(c),
                // A budget that cannot be evaluated (e.g. billing cycle unknown) must not stop the others.
                Err(StatusError::Period(e)) => tracing::info!(budget = b.id, error = %e, "budget not evaluated"),
                Err(e) => return Err(e),
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c.parse().map_err(|_| StoreError::Corrupt { table: "budgets", detail: c })?),
            None => break,
        }
    }
    Ok(out)
}
