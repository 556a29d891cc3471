//! Threshold evaluation: compare each threshold of a budget with its watched value (actual spend or the
//! forecast period-end total) and record crossings by the rule in `domain::threshold::decide`.
//!
//! Each crossing is written with its audit record in one transaction (`threshold_crossed`); going back
//! below the amount re-arms the threshold, also audited (`threshold_rearmed`). Runs after every usage sync
//! and on the background evaluator's schedule. The decision is taken again inside the transaction, under
//! the threshold's row lock, so two evaluators (two server instances) never record the same crossing twice.

use std::collections::HashMap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;

use super::actions::{self, ActionSettings, Planning, Trigger};
use super::caller::{Attribution, Caller};
use super::status::{self, StatusError, UsageSnapshot};
use crate::audit::Target;
use crate::domain::action::{ActionKind, GateVerdict};
use crate::domain::clock::format_timestamp;
use crate::domain::threshold::{
    Basis, CrossingEvent, CrossingState, Decision, Severity, Threshold, decide, next_state,
};
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
    /// For forecast thresholds: the forecast's probability of ending the period over the limit, in
    /// thousandths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability_over_limit_permille: Option<i64>,
    /// What the confidence gate let each pause action of a forecast threshold do.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gate: Vec<GateDecision>,
}

/// The confidence gate's verdict on one pause action.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct GateDecision {
    pub action_id: String,
    pub verdict: GateVerdict,
    /// The percent probability the action needed to act as attached.
    pub act_percent: i64,
}

/// A probability in thousandths as a percentage for people, e.g. "97 %" or "70.5 %".
fn percent(permille: i64) -> String {
    if permille % 10 == 0 { format!("{} %", permille / 10) } else { format!("{}.{} %", permille / 10, permille % 10) }
}

/// Evaluate one budget's thresholds at `now`; returns the crossings recorded. A crossing also runs the
/// threshold's actions: `notify` queues a `threshold_crossed` event for the tenant's webhooks, and
/// `pause_scenarios` creates a plan (see `engine::actions`), all in the crossing's transaction.
pub async fn evaluate_budget(
    store: &Store,
    settings: &ActionSettings,
    tenant: TenantId,
    budget: &Budget,
    now: Timestamp,
    by: Attribution<'_>,
) -> Result<Vec<Crossing>, StatusError> {
    let ts = store.tenant(tenant);
    let (thresholds, states) = (ts.thresholds(&budget.id).await?, ts.crossing_states(&budget.id).await?);
    let mut snap = UsageSnapshot::new(store, tenant);
    let run = Run { settings, now, by };
    evaluate_with(&mut snap, budget, &thresholds, &states, &run).await
}

/// What an evaluation pass shares across budgets: the action settings, the time, and who its records name.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    pub settings: &'a ActionSettings,
    pub now: Timestamp,
    pub by: Attribution<'a>,
}

/// [`evaluate_budget`] with the budget's thresholds and their crossing states already read (from a tenant's
/// [`ThresholdBook`](crate::store::ThresholdBook)), and usage read through `snap`: evaluating many budgets
/// of a tenant with one snapshot reads each organization's usage once. The states are only a first look:
/// a change is decided again under the threshold's row lock, so states read a little earlier are harmless.
pub async fn evaluate_with(
    snap: &mut UsageSnapshot<'_>,
    budget: &Budget,
    thresholds: &[Threshold],
    states: &HashMap<String, CrossingState>,
    run: &Run<'_>,
) -> Result<Vec<Crossing>, StatusError> {
    let (store, tenant) = (snap.store(), snap.tenant());
    let Run { settings, now, by } = *run;
    if thresholds.is_empty() || !budget.spec.active {
        return Ok(Vec::new());
    }
    let computed = status::compute_spend_in(snap, budget, now).await?;
    let key = computed.window.key();
    let actual = computed.status.spent_centi;
    let forecast = computed.forecast_total_centi();
    let probability = (computed.status.forecast.probability_over_limit.clamp(0.0, 1.0) * 1000.0).round() as i64;
    let at = format_timestamp(now);
    let mut crossings = Vec::new();
    let mut planning: Option<Planning> = None;
    for t in thresholds {
        let amount = t.spec.amount_centi(budget.spec.limit);
        let value = match t.spec.basis {
            Basis::Actual => actual,
            Basis::Forecast => forecast,
        };
        // A cheap first look without a transaction; most evaluations change nothing.
        let decision = decide(states.get(&t.id), &key, value, amount, now, t.spec.cooldown());
        if next_state(states.get(&t.id), &key, decision, now).is_none() {
            continue;
        }
        let actions = if decision == Decision::Cross { store.tenant(tenant).actions(&t.id).await? } else { Vec::new() };
        if planning.is_none() && actions.iter().any(|a| a.kind == ActionKind::PauseScenarios) {
            planning = Some(actions::planning(store, tenant, budget, now).await?);
        }
        // Automatic actions run only while whoever attached them still may (read before the transaction).
        let mut suspended: HashMap<String, String> = HashMap::new();
        for a in &actions {
            if let Some(reason) = actions::automation_refusal(store, tenant, a, now).await? {
                tracing::warn!(tenant = %tenant, action = a.id, reason, "automatic action suspended: its plan waits for approval");
                suspended.insert(a.id.clone(), reason);
            }
        }
        let mut tx = store.tenant(tenant).begin().await?;
        // Decide again under the threshold's row lock: another evaluator may have recorded it meanwhile.
        match tx.threshold_for_update(&t.id).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => continue,
            Err(e) => return Err(e.into()),
        }
        let state = tx.crossing_state(&t.id).await?;
        let decision = decide(state.as_ref(), &key, value, amount, now, t.spec.cooldown());
        let Some(new_state) = next_state(state.as_ref(), &key, decision, now) else { continue };
        tx.save_crossing_state(&t.id, &new_state, &at).await?;
        let mut detail = json!({
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
                let probability = (t.spec.basis == Basis::Forecast).then_some(probability);
                let mut crossing = Crossing {
                    budget_id: budget.id.clone(),
                    budget_name: budget.spec.name.clone(),
                    threshold_id: t.id.clone(),
                    label: t.spec.label.clone(),
                    basis: t.spec.basis,
                    severity: t.spec.severity,
                    value: status::units(value),
                    amount: status::units(amount),
                    crossed_at: at.clone(),
                    probability_over_limit_permille: probability,
                    gate: Vec::new(),
                };
                // The gate first: what each pause may do at this probability (an actual crossing is certain).
                let mut plans = Vec::new();
                for a in actions.iter().filter(|a| a.kind == ActionKind::PauseScenarios) {
                    let gate = a.gate.unwrap_or(settings.gate);
                    let verdict = probability.map_or(GateVerdict::Act, |p| gate.verdict(p));
                    if probability.is_some() {
                        crossing.gate.push(GateDecision { action_id: a.id.clone(), verdict, act_percent: gate.act });
                    }
                    let delay = match verdict {
                        GateVerdict::Act => a.delay_minutes,
                        GateVerdict::Delay => Some(a.delay_minutes.unwrap_or(settings.gated_delay_minutes)),
                        GateVerdict::AlertOnly | GateVerdict::Nothing => continue,
                    };
                    plans.push((a, delay));
                }
                let alert_only = crossing.gate.iter().any(|g| g.verdict == GateVerdict::AlertOnly);
                let why = format!(
                    "{} threshold {} of budget {:?} crossed: {} {} {} against {} {}",
                    t.spec.severity.as_str(),
                    t.spec.describe(),
                    budget.spec.name,
                    t.spec.basis.as_str(),
                    crossing.value,
                    budget.spec.unit.as_str(),
                    crossing.amount,
                    budget.spec.unit.as_str()
                );
                let why = match probability {
                    Some(p) => format!("{why} (probability of ending over the limit {})", percent(p)),
                    None => why,
                };
                let notifies = actions.iter().filter(|a| a.kind == ActionKind::Notify).count();
                // A pause the gate held back alerts instead: through the threshold's notify actions, or on its own.
                for _ in 0..notifies.max(usize::from(alert_only)) {
                    let mut text = format!("[{}] {why}", t.spec.severity.as_str());
                    if alert_only {
                        text.push_str("; a pause was held back: the forecast is not certain enough to act on");
                    }
                    let data = serde_json::to_value(&crossing).expect("crossing serialises");
                    actions::enqueue(&mut tx, "threshold_crossed", &text, data).await?;
                }
                for (a, delay_minutes) in plans {
                    let Some(p) = planning.as_ref() else { continue };
                    let trigger = Trigger {
                        crossing_id: &event.id,
                        why: why.clone(),
                        requested_by: &by.actor.subject,
                        now,
                        approval_ttl_minutes: settings.approval_ttl_minutes,
                        suspended: suspended.get(&a.id).map(String::as_str),
                        delay_minutes,
                        probability_permille: probability,
                    };
                    let Some(new) = actions::plan_for_crossing(p, budget, a, trigger) else {
                        continue;
                    };
                    actions::insert_plan(&mut tx, &new, by).await?;
                }
                if let Some(obj) = detail.as_object_mut() {
                    obj.insert("probability_over_limit_permille".into(), json!(probability));
                    obj.insert("gate".into(), json!(crossing.gate));
                }
                crossings.push(crossing);
                "threshold_crossed"
            }
            Decision::Rearm => "threshold_rearmed",
            Decision::Unchanged => unreachable!("next_state returns None for Unchanged"),
        };
        tx.commit(by.entry(action, Target::Threshold(t.id.clone()), Some(detail))).await?;
    }
    Ok(crossings)
}

/// Evaluate every active budget of the caller's tenant whose scope is one of `organizations`.
pub async fn evaluate_organizations(c: &Caller<'_>, organizations: &[i64]) -> Result<Vec<Crossing>, StatusError> {
    let (store, tenant) = (&c.app.store, c.tenant);
    let mut out = Vec::new();
    let budgets = store.tenant(tenant).active_budgets().await?;
    let book = store.tenant(tenant).threshold_book().await?;
    let mut snap = UsageSnapshot::new(store, tenant);
    let run = Run { settings: &c.app.actions, now: c.now(), by: c.attribution() };
    for b in budgets.iter().filter(|b| organizations.contains(&b.spec.scope.organization_id)) {
        match evaluate_with(&mut snap, b, book.thresholds(&b.id), book.states(), &run).await {
            Ok(c) => out.extend(c),
            // A budget that cannot be evaluated (e.g. billing cycle unknown) must not stop the others.
            Err(StatusError::Period(e)) => tracing::info!(budget = b.id, error = %e, "budget not evaluated"),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
