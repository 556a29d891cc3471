//! Automated actions: building pause plans, approving, executing and reversing them, and the events they
//! send to webhooks.
//!
//! Safety rules, each enforced here and tested end to end:
//! - A plan only ever pauses scenarios that are active when it runs; one already inactive is recorded as
//!   `already_inactive` and never touched again (not even by a reversal).
//! - Before asking Make to stop a scenario, the item is committed as `stop_sent`. After a timeout, a 5xx or a
//!   crash, the scenario is read first: inactive means this plan stopped it (no second stop is sent).
//! - One executor at a time per plan (a lease), across server instances; a crashed executor's lease expires
//!   and the next evaluator pass resumes the plan from its items' states.
//! - A reversal resumes exactly the items this plan stopped and that are still inactive.
//! - Every state change commits with its audit record; events for webhooks go to the outbox in the same
//!   transaction.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;

use super::control::{self, ControlError};
use super::status::{self, StatusError};
use crate::app::App;
use crate::audit::{Actor, AuditEntry, Outcome};
use crate::domain::Budget;
use crate::domain::TenantId;
use crate::domain::action::{
    self, Candidate, ItemStatus, Mode, PlanState, Selector, ThresholdAction, approval_deadline, approval_refusal,
};
use crate::domain::clock::{format_timestamp, parse_timestamp};
use crate::make::MakeTarget;
use crate::store::{ItemRecord, MutationTx, PlanRecord, ScenarioFilter, Store, StoreError};

pub use crate::config::settings::ActionSettings;

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("not found")]
    NotFound,
    /// The plan is not in a state that allows this; the message says which state it is in.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Refused(String),
    /// Another instance is working on this plan right now.
    #[error("another server instance is executing or reversing this plan right now; try get_action shortly")]
    Busy,
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ActionError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ActionError::NotFound,
            StoreError::VersionConflict { .. } => {
                ActionError::Conflict("the plan changed meanwhile (another instance?); read it again".into())
            }
            other => ActionError::Store(other),
        }
    }
}

/// The actor of what the engine does on its own (evaluator, automatic plans, expiry).
pub fn system_actor() -> Actor {
    Actor { subject: "system:evaluator".into(), role: "system".into(), transport: "internal".into() }
}

/// A plan with its items, as tools show it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PlanView {
    #[serde(flatten)]
    pub plan: PlanRecord,
    /// Expected saving in whole units of the budget's unit.
    pub expected_saving: i64,
    pub items: Vec<ItemRecord>,
}

impl PlanView {
    pub fn new(plan: PlanRecord, items: Vec<ItemRecord>) -> Self {
        Self { expected_saving: status::units(plan.expected_saving_centi), plan, items }
    }
}

/// What a selector would pause now, with nothing changed.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Preview {
    pub budget_id: String,
    pub period_key: String,
    pub selector: Selector,
    pub scenarios: Vec<action::Pick>,
    /// Whole units of the budget's unit.
    pub expected_saving: i64,
    pub why: String,
    /// Scenarios in scope that were left out, and why (inactive, critical, not in the top N).
    pub left_out: Vec<LeftOut>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LeftOut {
    pub scenario_id: i64,
    pub name: String,
    pub reason: String,
}

/// The scenarios of a budget's scope, with this period's consumption, and the period's day counts.
pub struct Planning {
    pub candidates: Vec<Candidate>,
    pub period_key: String,
    pub elapsed_days: i64,
    pub remaining_days: i64,
}

/// Gather what the planner needs for `budget` at `now`.
pub async fn planning(
    store: &Store,
    tenant: TenantId,
    budget: &Budget,
    now: Timestamp,
) -> Result<Planning, StatusError> {
    let ts = store.tenant(tenant);
    let window = status::current_window(store, tenant, budget, now).await?;
    let today = now.to_zoned_datetime(window.start.time_zone().clone()).date();
    let to_day = today.min(window.last_day);
    let usage = ts.scope_usage(&budget.spec.scope, &window.first_day.to_string(), &to_day.to_string()).await?;
    let spend: HashMap<i64, i64> = usage
        .scenarios
        .iter()
        .map(|s| (s.scenario_id, status::centi_in(budget.spec.unit, s.centicredits, s.operations)))
        .collect();
    let filter = ScenarioFilter { organization_id: Some(budget.spec.scope.organization_id), ..Default::default() };
    let mut candidates = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = ts.scenarios(&filter, cursor, 500).await?;
        for s in page {
            if budget.spec.scope.includes(s.scenario_id, s.team_id, s.folder_id) {
                candidates.push(Candidate {
                    scenario_id: s.scenario_id,
                    organization_id: s.organization_id,
                    consumption_centi: spend.get(&s.scenario_id).copied().unwrap_or(0),
                    name: s.name,
                    critical: s.critical,
                    is_active: s.is_active,
                });
            }
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let elapsed = i64::from(window.days_elapsed(now).max(1));
    let remaining = (i64::from(window.day_count()) - elapsed).max(0);
    Ok(Planning { candidates, period_key: window.key(), elapsed_days: elapsed, remaining_days: remaining })
}

/// Preview what `selector` would pause for `budget` now.
pub async fn preview(
    app: &App,
    tenant: TenantId,
    budget: &Budget,
    selector: Selector,
    now: Timestamp,
) -> Result<Preview, ActionError> {
    let p = planning(&app.store, tenant, budget, now).await?;
    let picks = action::select(&p.candidates, selector, p.elapsed_days, p.remaining_days);
    let picked: std::collections::HashSet<i64> = picks.iter().map(|p| p.scenario_id).collect();
    let left_out = p
        .candidates
        .iter()
        .filter(|c| !picked.contains(&c.scenario_id))
        .map(|c| LeftOut {
            scenario_id: c.scenario_id,
            name: c.name.clone(),
            reason: if !c.is_active {
                "inactive: nothing to pause".into()
            } else if c.critical && selector.kind != action::SelectorKind::All {
                "marked critical".into()
            } else {
                "not among the top consumers".into()
            },
        })
        .collect();
    let saving: i64 = picks.iter().map(|p| p.expected_saving_centi).sum();
    let why = format!(
        "{} of budget {:?}: {} scenario(s) picked, expected to save about {} {} in the {} day(s) left of the period",
        selector.describe(),
        budget.spec.name,
        picks.len(),
        status::units(saving),
        budget.spec.unit.as_str(),
        p.remaining_days
    );
    Ok(Preview {
        budget_id: budget.id.clone(),
        period_key: p.period_key,
        selector,
        expected_saving: status::units(saving),
        scenarios: picks,
        why,
        left_out,
    })
}

/// A plan about to be written by the crossing (or ad-hoc request) that creates it.
pub struct NewPlan {
    pub plan: PlanRecord,
    pub items: Vec<ItemRecord>,
}

/// The permissions a pause with `selector` exercises.
pub fn permissions_exercised(selector: Option<crate::domain::action::Selector>) -> Vec<crate::auth::Permission> {
    use crate::auth::Permission;
    let mut needed = vec![Permission::ExecuteAutomatedActions];
    if selector.is_some_and(|s| s.needs_emergency_controls()) {
        needed.push(Permission::EmergencyControls);
    }
    needed
}

/// Why an action may not act on its own now, if it may not: whoever attached an automatic pause action
/// must still hold the permissions the pause exercises, through a role that was recorded and, when they
/// used an API token, a token that is neither revoked nor expired. `None` for actions that may run (and
/// for every action that does not act automatically).
pub async fn automation_refusal(
    store: &Store,
    tenant: TenantId,
    action: &ThresholdAction,
    now: Timestamp,
) -> Result<Option<String>, StoreError> {
    if !action.acts_automatically() {
        return Ok(None);
    }
    let who = &action.created_by;
    let Some(role) = action.created_role.as_deref().and_then(|r| r.parse::<crate::auth::Role>().ok()) else {
        return Ok(Some(format!(
            "`{who}` attached this automatic action before the server recorded who may run automatic actions; \
             attach it again to let it run on its own"
        )));
    };
    if let Some(p) = permissions_exercised(action.selector).into_iter().find(|p| !role.allows(*p)) {
        return Ok(Some(format!("`{who}` attached it with role `{role}`, which does not have `{p}`")));
    }
    if let Some(token_id) = &action.created_token_id {
        let token = store.tenant(tenant).token(token_id).await?;
        let now = format_timestamp(now);
        let refusal = match token {
            None => Some("no longer exists"),
            Some(t) if t.revoked_at.is_some() => Some("was revoked"),
            Some(t) if t.expires_at.as_deref().is_some_and(|e| e <= now.as_str()) => Some("has expired"),
            Some(_) => None,
        };
        if let Some(r) = refusal {
            return Ok(Some(format!("the API token {token_id} that `{who}` attached it with {r}")));
        }
    }
    Ok(None)
}

/// A plan for a crossing of `action`'s threshold. With `suspended` (see [`automation_refusal`]) an
/// automatic action's plan waits for approval instead of running, and says why.
#[allow(clippy::too_many_arguments)]
pub fn plan_for_crossing(
    planning: &Planning,
    budget: &Budget,
    action: &ThresholdAction,
    crossing_id: &str,
    why: String,
    requested_by: &str,
    now: Timestamp,
    approval_ttl_minutes: i64,
    suspended: Option<&str>,
) -> Option<NewPlan> {
    let selector = action.selector?;
    let (mode, why) = match (action.mode?, suspended) {
        (Mode::Automatic, Some(reason)) => (
            Mode::RequiresApproval,
            format!("{why}. Not run automatically: {reason}; a principal with the permission must approve it"),
        ),
        (mode, _) => (mode, why),
    };
    let at = format_timestamp(now);
    let picks = action::select(&planning.candidates, selector, planning.elapsed_days, planning.remaining_days);
    let items: Vec<ItemRecord> = picks
        .iter()
        .map(|p| ItemRecord {
            scenario_id: p.scenario_id,
            organization_id: p.organization_id,
            name: p.name.clone(),
            critical: p.critical,
            consumption_centi: p.consumption_centi,
            expected_saving_centi: p.expected_saving_centi,
            status: ItemStatus::Pending,
            attempts: 0,
            last_error: None,
            updated_at: at.clone(),
        })
        .collect();
    let state = match mode {
        Mode::Automatic => PlanState::Planned,
        Mode::RequiresApproval => PlanState::AwaitingApproval,
    };
    Some(NewPlan {
        plan: PlanRecord {
            id: uuid::Uuid::now_v7().to_string(),
            budget_id: budget.id.clone(),
            threshold_id: Some(action.threshold_id.clone()),
            action_id: Some(action.id.clone()),
            crossing_id: Some(crossing_id.to_owned()),
            period_key: planning.period_key.clone(),
            selector,
            mode,
            state,
            why,
            expected_saving_centi: items.iter().map(|i| i.expected_saving_centi).sum(),
            reverse_at_period_end: action.reverse_at_period_end,
            requested_by: requested_by.to_owned(),
            requested_at: at.clone(),
            expires_at: (mode == Mode::RequiresApproval)
                .then(|| format_timestamp(approval_deadline(now, approval_ttl_minutes))),
            decided_by: None,
            decided_at: None,
            decision_reason: None,
            executed_at: None,
            reversed_by: None,
            reversed_at: None,
            updated_at: at,
            version: 1,
        },
        items,
    })
}

/// Write a new plan, its audit record and its event, inside the caller's transaction.
pub async fn insert_plan(
    tx: &mut MutationTx,
    new: &NewPlan,
    actor: &Actor,
    request_id: &str,
) -> Result<(), StoreError> {
    tx.insert_plan(&new.plan, &new.items).await?;
    let view = PlanView::new(new.plan.clone(), new.items.clone());
    tx.record_also(AuditEntry {
        actor: actor.clone(),
        action: "action_planned".into(),
        target: format!("action_plan:{}", new.plan.id),
        outcome: Outcome::Success,
        reason: Some(new.plan.why.clone()),
        request_id: request_id.to_owned(),
        before: None,
        after: Some(serde_json::to_value(&view).expect("plan serialises")),
    })
    .await?;
    let event = if new.plan.state == PlanState::AwaitingApproval { "approval_needed" } else { "plan_created" };
    let names: Vec<&str> = new.items.iter().map(|i| i.name.as_str()).collect();
    let text = format!(
        "{}: plan {} to pause {} scenario(s) ({}) — {}",
        if event == "approval_needed" { "Approval needed" } else { "Pause plan created" },
        new.plan.id,
        new.items.len(),
        names.join(", "),
        new.plan.why
    );
    enqueue(tx, event, &text, serde_json::to_value(&view).expect("plan serialises")).await?;
    Ok(())
}

/// Queue an event for the tenant's webhooks (outbox) in the caller's transaction.
pub async fn enqueue(
    tx: &mut MutationTx,
    event_type: &str,
    text: &str,
    data: serde_json::Value,
) -> Result<u64, StoreError> {
    let id = uuid::Uuid::now_v7().to_string();
    let now = format_timestamp(tx.now());
    let body = crate::notify::event_body(&id, event_type, &now, text, &data);
    let body = String::from_utf8(body).expect("JSON is UTF-8");
    tx.enqueue_event(&id, event_type, &body, &now).await
}

fn lease_name(tenant: TenantId, plan_id: &str) -> String {
    format!("plan:{tenant}:{plan_id}")
}

/// A lease holder name for one piece of work: unique even between tasks of one process.
pub fn holder(app: &App) -> String {
    format!("{}:{}", app.instance, uuid::Uuid::now_v7().simple())
}

/// Take or renew the lease `name` for `holder`.
pub async fn take_lease(app: &App, name: &str, holder: &str) -> Result<bool, StoreError> {
    take_lease_for(app, name, holder, app.actions.lease).await
}

/// [`take_lease`] for `duration` instead of the configured lease.
pub async fn take_lease_for(app: &App, name: &str, holder: &str, duration: Duration) -> Result<bool, StoreError> {
    let now = app.store.clock().now();
    let until = now.checked_add(duration).unwrap_or(now);
    app.store.try_lease(name, holder, &format_timestamp(now), &format_timestamp(until)).await
}

fn plan_entry(actor: &Actor, action: &str, plan: &PlanRecord, request_id: &str, reason: Option<String>) -> AuditEntry {
    AuditEntry {
        actor: actor.clone(),
        action: action.into(),
        target: format!("action_plan:{}", plan.id),
        outcome: Outcome::Success,
        reason,
        request_id: request_id.to_owned(),
        before: None,
        after: Some(json!({"state": plan.state.as_str(), "budget_id": plan.budget_id, "version": plan.version})),
    }
}

/// Approve (then execute) or reject a plan awaiting approval. `approver` must differ from the requester,
/// and the approval window must still be open (an expired plan is marked expired).
#[allow(clippy::too_many_arguments)]
pub async fn decide(
    app: &App,
    tenant: TenantId,
    plan_id: &str,
    actor: &Actor,
    approve: bool,
    reason: Option<String>,
    request_id: &str,
) -> Result<PlanView, ActionError> {
    let now = app.store.clock().now();
    let at = format_timestamp(now);
    let ts = app.store.tenant(tenant);
    let mut tx = ts.begin().await?;
    let mut plan = tx.plan_for_update(plan_id).await?;
    if plan.state != PlanState::AwaitingApproval {
        return Err(ActionError::Conflict(format!("plan {plan_id} is {}, not awaiting approval", plan.state.as_str())));
    }
    let deadline = plan.expires_at.as_deref().and_then(|s| parse_timestamp(s).ok());
    let refusal = approval_refusal(&plan.requested_by, &actor.subject, deadline, now);
    if let Some(r) = &refusal
        && deadline.is_some_and(|d| now >= d)
    {
        plan.state = PlanState::Expired;
        plan.updated_at = at.clone();
        plan.version += 1;
        tx.update_plan(&plan).await?;
        tx.commit(plan_entry(&system_actor(), "action_expired", &plan, request_id, Some(r.clone()))).await?;
        return Err(ActionError::Conflict(r.clone()));
    }
    if approve && let Some(r) = refusal {
        // The refusal is recorded: a requester trying to approve its own plan is worth knowing about.
        let mut entry = plan_entry(actor, "approve_action", &plan, request_id, Some(r.clone()));
        entry.outcome = Outcome::Denied;
        tx.commit(entry).await?;
        return Err(ActionError::Refused(r));
    }
    plan.state = if approve { PlanState::Approved } else { PlanState::Rejected };
    plan.decided_by = Some(actor.subject.clone());
    plan.decided_at = Some(at.clone());
    plan.decision_reason = reason.clone();
    plan.updated_at = at;
    plan.version += 1;
    tx.update_plan(&plan).await?;
    let event = if approve { "plan_approved" } else { "plan_rejected" };
    enqueue(
        &mut tx,
        event,
        &format!("Plan {plan_id} {} by {}", if approve { "approved" } else { "rejected" }, actor.subject),
        json!({"plan_id": plan_id, "budget_id": plan.budget_id, "by": actor.subject, "reason": reason}),
    )
    .await?;
    tx.commit(plan_entry(
        actor,
        if approve { "action_approved" } else { "action_rejected" },
        &plan,
        request_id,
        reason,
    ))
    .await?;
    if approve {
        return execute(app, tenant, plan_id, actor, request_id).await;
    }
    let (plan, items) = ts.plan(plan_id).await?;
    Ok(PlanView::new(plan, items))
}

/// Execute a plan that is planned (automatic), approved, or was interrupted while executing. Returns
/// [`ActionError::Busy`] if another instance holds it. Safe to call again at any time.
pub async fn execute(
    app: &App,
    tenant: TenantId,
    plan_id: &str,
    actor: &Actor,
    request_id: &str,
) -> Result<PlanView, ActionError> {
    let (lease, holder) = (lease_name(tenant, plan_id), holder(app));
    with_lease(app, &lease, &holder, execute_leased(app, tenant, plan_id, actor, request_id, (&lease, &holder))).await
}

/// Run `work` holding the lease `name` (or fail with [`ActionError::Busy`]), and give the lease back after.
async fn with_lease(
    app: &App,
    name: &str,
    holder: &str,
    work: impl Future<Output = Result<PlanView, ActionError>>,
) -> Result<PlanView, ActionError> {
    if !take_lease(app, name, holder).await? {
        return Err(ActionError::Busy);
    }
    let result = work.await;
    if let Err(e) = app.store.release_lease(name, holder).await {
        tracing::warn!(error = %e, "could not release a plan lease; it will expire");
    }
    result
}

async fn execute_leased(
    app: &App,
    tenant: TenantId,
    plan_id: &str,
    actor: &Actor,
    request_id: &str,
    (lease, holder): (&str, &str),
) -> Result<PlanView, ActionError> {
    let ts = app.store.tenant(tenant);
    // Start (or resume) execution.
    let mut tx = ts.begin().await?;
    let mut plan = tx.plan_for_update(plan_id).await?;
    if !plan.state.is_runnable() {
        drop(tx);
        if plan.state == PlanState::AwaitingApproval {
            return Err(ActionError::Conflict(format!("plan {plan_id} is awaiting approval")));
        }
        let (plan, items) = ts.plan(plan_id).await?;
        return Ok(PlanView::new(plan, items));
    }
    let resumed = plan.state == PlanState::Executing;
    plan.state = PlanState::Executing;
    plan.updated_at = format_timestamp(app.store.clock().now());
    plan.version += 1;
    tx.update_plan(&plan).await?;
    let started = if resumed { "action_execution_resumed" } else { "action_execution_started" };
    tx.commit(plan_entry(actor, started, &plan, request_id, None)).await?;

    let targets = control::targets(app, tenant).await?;
    let items = ts.plan(plan_id).await?.1;
    let mut statuses = Vec::with_capacity(items.len());
    for mut item in items {
        if matches!(item.status, ItemStatus::Pending | ItemStatus::StopSent) {
            // Keep the lease while working through a long plan.
            if !take_lease(app, lease, holder).await? {
                return Err(ActionError::Busy);
            }
            let target = targets.get(&item.organization_id);
            stop_item(app, tenant, &plan, &mut item, target, actor, request_id).await?;
        }
        statuses.push(item.status);
    }

    let mut tx = ts.begin().await?;
    let mut plan = tx.plan_for_update(plan_id).await?;
    plan.state = action::outcome(&statuses);
    let at = format_timestamp(app.store.clock().now());
    plan.executed_at = Some(at.clone());
    plan.updated_at = at;
    plan.version += 1;
    tx.update_plan(&plan).await?;
    let items = tx.plan_items(plan_id).await?;
    let count = |s: ItemStatus| items.iter().filter(|i| i.status == s).count();
    let text = format!(
        "Plan {plan_id} {}: {} scenario(s) paused, {} already inactive, {} failed",
        plan.state.as_str().replace('_', " "),
        count(ItemStatus::Stopped),
        count(ItemStatus::AlreadyInactive),
        count(ItemStatus::Failed)
    );
    let view = PlanView::new(plan.clone(), items);
    enqueue(&mut tx, "plan_executed", &text, serde_json::to_value(&view).expect("plan serialises")).await?;
    let mut entry = plan_entry(actor, "action_executed", &plan, request_id, None);
    entry.after = Some(serde_json::to_value(&view).expect("plan serialises"));
    tx.commit(entry).await?;
    Ok(view)
}

/// Stop one scenario of a plan, at most once: read its state, and only send a stop while it is active.
#[allow(clippy::too_many_arguments)]
async fn stop_item(
    app: &App,
    tenant: TenantId,
    plan: &PlanRecord,
    item: &mut ItemRecord,
    target: Option<&MakeTarget>,
    actor: &Actor,
    request_id: &str,
) -> Result<(), ActionError> {
    let Some(target) = target else {
        item.status = ItemStatus::Failed;
        item.last_error = Some(format!("organization {} is no longer connected", item.organization_id));
        return save_item(app, tenant, plan, item, actor, request_id, "action_item_failed").await;
    };
    for round in 1..=app.actions.item_rounds {
        if round > 1 {
            tokio::time::sleep(app.actions.round_delay).await;
        }
        item.attempts += 1;
        let current = match app.make.scenario(target, item.organization_id, item.scenario_id).await {
            Ok(s) => s.is_active,
            Err(e) => {
                item.last_error = Some(e.to_string());
                continue;
            }
        };
        if current == Some(false) {
            let (status, action) = if item.status == ItemStatus::StopSent {
                (ItemStatus::Stopped, "action_item_stopped")
            } else {
                (ItemStatus::AlreadyInactive, "action_item_already_inactive")
            };
            item.status = status;
            item.last_error = None;
            return save_item(app, tenant, plan, item, actor, request_id, action).await;
        }
        if item.status == ItemStatus::Pending {
            item.status = ItemStatus::StopSent;
            save_item(app, tenant, plan, item, actor, request_id, "action_item_stop_sent").await?;
        }
        item.attempts += 1;
        match app.make.set_scenario_active(target, item.organization_id, item.scenario_id, false).await {
            Ok(false) => {
                item.status = ItemStatus::Stopped;
                item.last_error = None;
                return save_item(app, tenant, plan, item, actor, request_id, "action_item_stopped").await;
            }
            Ok(true) => item.last_error = Some("Make answered the stop but reports the scenario active".into()),
            Err(e) => item.last_error = Some(e.to_string()),
        }
    }
    item.status = ItemStatus::Failed;
    save_item(app, tenant, plan, item, actor, request_id, "action_item_failed").await
}

async fn save_item(
    app: &App,
    tenant: TenantId,
    plan: &PlanRecord,
    item: &mut ItemRecord,
    actor: &Actor,
    request_id: &str,
    action: &str,
) -> Result<(), ActionError> {
    item.updated_at = format_timestamp(app.store.clock().now());
    let mut tx = app.store.tenant(tenant).begin().await?;
    tx.update_item(&plan.id, item).await?;
    match item.status {
        ItemStatus::Stopped | ItemStatus::AlreadyInactive => tx.set_scenario_active(item.scenario_id, false).await?,
        ItemStatus::Resumed => tx.set_scenario_active(item.scenario_id, true).await?,
        _ => {}
    }
    tx.commit(AuditEntry {
        actor: actor.clone(),
        action: action.into(),
        target: format!("make_scenario:{}", item.scenario_id),
        outcome: Outcome::Success,
        reason: Some(format!("action plan {}", plan.id)),
        request_id: request_id.to_owned(),
        before: None,
        after: Some(json!({
            "plan_id": plan.id, "status": item.status.as_str(), "attempts": item.attempts, "error": item.last_error,
        })),
    })
    .await?;
    Ok(())
}

/// Resume exactly the scenarios this plan stopped that are still inactive. Scenarios that were inactive
/// before the plan, or that someone started since, are left alone.
pub async fn reverse(
    app: &App,
    tenant: TenantId,
    plan_id: &str,
    actor: &Actor,
    reason: &str,
    request_id: &str,
) -> Result<PlanView, ActionError> {
    let (lease, holder) = (lease_name(tenant, plan_id), holder(app));
    with_lease(app, &lease, &holder, reverse_leased(app, tenant, plan_id, actor, reason, request_id)).await
}

async fn reverse_leased(
    app: &App,
    tenant: TenantId,
    plan_id: &str,
    actor: &Actor,
    reason: &str,
    request_id: &str,
) -> Result<PlanView, ActionError> {
    let ts = app.store.tenant(tenant);
    let (plan, items) = ts.plan(plan_id).await?;
    if !plan.state.can_become(PlanState::Reversed) {
        return Err(ActionError::Conflict(format!(
            "plan {plan_id} is {}; only executed or partially failed plans can be reversed",
            plan.state.as_str()
        )));
    }
    let targets = control::targets(app, tenant).await?;
    let held = ts.scenarios_held_by_other_plans(plan_id).await?;
    let stopped: Vec<ItemRecord> = items.into_iter().filter(|i| i.status == ItemStatus::Stopped).collect();
    let ids: Vec<i64> = stopped.iter().map(|i| i.scenario_id).collect();
    let synced: HashMap<i64, crate::store::ScenarioRecord> =
        ts.connected_scenarios(&ids).await?.into_iter().map(|s| (s.scenario_id, s)).collect();
    for mut item in stopped {
        if held.contains(&item.scenario_id) {
            item.status = ItemStatus::HeldByOtherPlan;
            save_item(app, tenant, &plan, &mut item, actor, request_id, "action_item_held_by_other_plan").await?;
            continue;
        }
        let (Some(target), Some(scenario)) = (targets.get(&item.organization_id), synced.get(&item.scenario_id)) else {
            item.status = ItemStatus::ResumeFailed;
            item.last_error = Some(format!(
                "scenario {} is no longer in a connected organization (as of the last sync)",
                item.scenario_id
            ));
            save_item(app, tenant, &plan, &mut item, actor, request_id, "action_item_resume_failed").await?;
            continue;
        };
        item.attempts += 1;
        let change = control::change_one(app, target, scenario, true).await;
        let action = match change.outcome {
            control::ChangeOutcome::Changed => {
                item.status = ItemStatus::Resumed;
                item.last_error = None;
                "action_item_resumed"
            }
            control::ChangeOutcome::AlreadyInState => {
                item.status = ItemStatus::LeftActive;
                item.last_error = None;
                "action_item_left_active"
            }
            control::ChangeOutcome::Failed => {
                item.status = ItemStatus::ResumeFailed;
                item.last_error = change.error.map(|e| e.message);
                "action_item_resume_failed"
            }
        };
        save_item(app, tenant, &plan, &mut item, actor, request_id, action).await?;
    }
    let mut tx = ts.begin().await?;
    let mut plan = tx.plan_for_update(plan_id).await?;
    if !plan.state.can_become(PlanState::Reversed) {
        return Err(ActionError::Conflict(format!("plan {plan_id} became {} meanwhile", plan.state.as_str())));
    }
    let at = format_timestamp(app.store.clock().now());
    plan.state = PlanState::Reversed;
    plan.reversed_by = Some(actor.subject.clone());
    plan.reversed_at = Some(at.clone());
    plan.updated_at = at;
    plan.version += 1;
    tx.update_plan(&plan).await?;
    let items = tx.plan_items(plan_id).await?;
    let resumed = items.iter().filter(|i| i.status == ItemStatus::Resumed).count();
    let view = PlanView::new(plan.clone(), items);
    enqueue(
        &mut tx,
        "plan_reversed",
        &format!("Plan {plan_id} reversed by {}: {resumed} scenario(s) resumed ({reason})", actor.subject),
        serde_json::to_value(&view).expect("plan serialises"),
    )
    .await?;
    let mut entry = plan_entry(actor, "action_reversed", &plan, request_id, Some(reason.to_owned()));
    entry.after = Some(serde_json::to_value(&view).expect("plan serialises"));
    tx.commit(entry).await?;
    Ok(view)
}

/// Mark plans whose approval window has closed as expired. Returns how many.
pub async fn expire_overdue(app: &App, request_id: &str) -> Result<usize, ActionError> {
    let now = app.store.clock().now();
    let mut expired = 0;
    for (tenant, id) in app.store.plans_in_states(&[PlanState::AwaitingApproval]).await? {
        let mut tx = app.store.tenant(tenant).begin().await?;
        let mut plan = tx.plan_for_update(&id).await?;
        let overdue = plan.expires_at.as_deref().and_then(|s| parse_timestamp(s).ok()).is_some_and(|d| now >= d);
        if plan.state != PlanState::AwaitingApproval || !overdue {
            continue;
        }
        plan.state = PlanState::Expired;
        plan.updated_at = format_timestamp(now);
        plan.version += 1;
        tx.update_plan(&plan).await?;
        enqueue(
            &mut tx,
            "plan_expired",
            &format!("Plan {id} expired without approval"),
            json!({"plan_id": id, "budget_id": plan.budget_id}),
        )
        .await?;
        let reason = Some("the approval window closed".to_owned());
        tx.commit(plan_entry(&system_actor(), "action_expired", &plan, request_id, reason)).await?;
        expired += 1;
    }
    Ok(expired)
}
