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

use super::caller::{Attribution, Caller};
use super::control;
use super::error::{About, Error, Result};
use super::status::{self, StatusError};
use crate::app::App;
use crate::audit::{AuditEntry, Outcome, Target};
use crate::auth::Permission;
use crate::domain::Budget;
use crate::domain::TenantId;
use crate::domain::action::{
    self, Candidate, ItemStatus, Mode, PlanState, Selector, ThresholdAction, approval_deadline, approval_refusal,
};
use crate::domain::clock::{format_timestamp, parse_timestamp};
use crate::make::MakeTarget;
use crate::store::{ItemRecord, MutationTx, PlanRecord, ScenarioFilter, Store, StoreError};

pub use super::caller::system_actor;
pub use crate::config::settings::ActionSettings;

/// Another instance is executing or reversing the plan right now.
fn busy() -> Error {
    Error::Conflict(
        "another server instance is executing or reversing this plan right now; try get_action shortly".into(),
    )
}

/// Whether `e` is [`busy`]: the plan is in another instance's hands, which is no failure of this pass.
pub fn is_busy(e: &Error) -> bool {
    matches!(e, Error::Conflict(m) if m.starts_with("another server instance is executing"))
}

/// Move `plan` to `to` if its state machine allows it (`PlanState::can_become`), stamping the change.
/// Every plan state change goes through here.
fn transition(plan: &mut PlanRecord, to: PlanState, now: Timestamp) -> Result<()> {
    if !plan.state.can_become(to) {
        return Err(Error::Conflict(format!(
            "plan {} is {}; it cannot become {}",
            plan.id,
            plan.state.as_str(),
            to.as_str()
        )));
    }
    plan.state = to;
    plan.updated_at = format_timestamp(now);
    plan.version += 1;
    Ok(())
}

/// A plan changed by another instance between our read and our write.
fn plan_write(r: std::result::Result<(), StoreError>) -> Result<()> {
    r.map_err(|e| match e {
        StoreError::VersionConflict { .. } => {
            Error::Conflict("the plan changed meanwhile (another instance?); read it again".into())
        }
        other => other.into(),
    })
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
) -> Result<Preview> {
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
pub fn permissions_exercised(selector: Option<Selector>) -> Vec<Permission> {
    let mut needed = vec![Permission::ExecuteAutomatedActions];
    if selector.is_some_and(|s| s.needs_emergency_controls()) {
        needed.push(Permission::EmergencyControls);
    }
    needed
}

/// What a principal must hold to change what `automatic` actions depend on: what they exercise (as
/// whoever attached them had to).
pub fn automation_rights(automatic: &[ThresholdAction]) -> Vec<Permission> {
    let mut needed = Vec::new();
    for a in automatic {
        for p in permissions_exercised(a.selector) {
            if !needed.contains(&p) {
                needed.push(p);
            }
        }
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
) -> std::result::Result<Option<String>, StoreError> {
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

/// What made a plan: the crossing that triggers it, why, by whom and when.
pub struct Trigger<'a> {
    pub crossing_id: &'a str,
    pub why: String,
    pub requested_by: &'a str,
    pub now: Timestamp,
    pub approval_ttl_minutes: i64,
    /// Set (see [`automation_refusal`]) when an automatic action may not run on its own: its plan then
    /// waits for approval instead of running, and says why.
    pub suspended: Option<&'a str>,
    /// Run the plan this many minutes after it is made (or approved), unless it is cancelled.
    pub delay_minutes: Option<i64>,
    /// The forecast's probability of ending over the limit, for forecast crossings.
    pub probability_permille: Option<i64>,
}

/// A plan for a crossing of `action`'s threshold.
pub fn plan_for_crossing(
    planning: &Planning,
    budget: &Budget,
    action: &ThresholdAction,
    trigger: Trigger<'_>,
) -> Option<NewPlan> {
    let selector = action.selector?;
    let Trigger {
        crossing_id,
        why,
        requested_by,
        now,
        approval_ttl_minutes,
        suspended,
        delay_minutes,
        probability_permille,
    } = trigger;
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
    let (state, run_at) = match (mode, delay_minutes) {
        (Mode::Automatic, None) => (PlanState::Planned, None),
        (Mode::Automatic, Some(d)) => (PlanState::Scheduled, Some(format_timestamp(after_minutes(now, d)))),
        (Mode::RequiresApproval, _) => (PlanState::AwaitingApproval, None),
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
            origin: action::PlanOrigin::Threshold,
            delay_minutes,
            run_at,
            cancelled_by: None,
            cancelled_at: None,
            cancel_reason: None,
            probability_permille,
        },
        items,
    })
}

fn after_minutes(t: Timestamp, minutes: i64) -> Timestamp {
    t.checked_add(jiff::SignedDuration::from_mins(minutes)).unwrap_or(t)
}

/// The event announcing a scheduled plan.
async fn announce_scheduled(tx: &mut MutationTx, view: &PlanView) -> std::result::Result<(), StoreError> {
    let p = &view.plan;
    let names: Vec<&str> = view.items.iter().map(|i| i.name.as_str()).collect();
    let text = format!(
        "Pause plan {} scheduled: at {} it pauses {} scenario(s) ({}) unless someone cancels it (cancel_action) — {}",
        p.id,
        p.run_at.as_deref().unwrap_or("?"),
        view.items.len(),
        names.join(", "),
        p.why
    );
    enqueue(tx, "plan_scheduled", &text, to_json(view)).await?;
    Ok(())
}

/// Write a new plan, its audit record and its event, inside the caller's transaction.
pub async fn insert_plan(
    tx: &mut MutationTx,
    new: &NewPlan,
    by: Attribution<'_>,
) -> std::result::Result<(), StoreError> {
    tx.insert_plan(&new.plan, &new.items).await?;
    let view = PlanView::new(new.plan.clone(), new.items.clone());
    let mut entry = by.entry("action_planned", Target::ActionPlan(new.plan.id.clone()), Some(to_json(&view)));
    entry.reason = Some(new.plan.why.clone());
    tx.record_also(entry).await?;
    if new.plan.state == PlanState::Scheduled {
        return announce_scheduled(tx, &view).await;
    }
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
    enqueue(tx, event, &text, to_json(&view)).await?;
    Ok(())
}

fn to_json(view: &PlanView) -> serde_json::Value {
    serde_json::to_value(view).expect("plan serialises")
}

/// Queue an event for the tenant's webhooks (outbox) in the caller's transaction.
pub async fn enqueue(
    tx: &mut MutationTx,
    event_type: &str,
    text: &str,
    data: serde_json::Value,
) -> std::result::Result<u64, StoreError> {
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
pub async fn take_lease(app: &App, name: &str, holder: &str) -> std::result::Result<bool, StoreError> {
    take_lease_for(app, name, holder, app.actions.lease).await
}

/// [`take_lease`] for `duration` instead of the configured lease.
pub async fn take_lease_for(
    app: &App,
    name: &str,
    holder: &str,
    duration: Duration,
) -> std::result::Result<bool, StoreError> {
    let now = app.store.clock().now();
    let until = now.checked_add(duration).unwrap_or(now);
    app.store.try_lease(name, holder, &format_timestamp(now), &format_timestamp(until)).await
}

/// The audit record of a plan's state change.
fn plan_entry(c: &Caller<'_>, action: &str, plan: &PlanRecord, reason: Option<String>) -> AuditEntry {
    let state = json!({"state": plan.state.as_str(), "budget_id": plan.budget_id, "version": plan.version});
    let mut entry = c.entry_as(action, Target::ActionPlan(plan.id.clone()), None::<&()>, Some(&state));
    entry.reason = reason;
    entry
}

/// Approve (then execute) or reject a plan awaiting approval. The approver must differ from the
/// requester, and the approval window must still be open (an expired plan is marked expired). Approving a
/// plan that pauses critical scenarios too needs emergency controls.
pub async fn decide(c: &Caller<'_>, plan_id: &str, approve: bool, reason: Option<String>) -> Result<PlanView> {
    let now = c.now();
    let at = format_timestamp(now);
    let mut tx = c.store().begin().await?;
    let mut plan = tx.plan_for_update(plan_id).await.about("plan", plan_id)?;
    if approve && plan.selector.needs_emergency_controls() {
        c.require(&[Permission::EmergencyControls], "the plan pauses critical scenarios too")?;
    }
    if plan.state != PlanState::AwaitingApproval {
        return Err(Error::Conflict(format!("plan {plan_id} is {}, not awaiting approval", plan.state.as_str())));
    }
    let deadline = plan.expires_at.as_deref().and_then(|s| parse_timestamp(s).ok());
    let refusal = approval_refusal(&plan.requested_by, c.subject(), deadline, now);
    if let Some(r) = &refusal
        && deadline.is_some_and(|d| now >= d)
    {
        transition(&mut plan, PlanState::Expired, now)?;
        plan_write(tx.update_plan(&plan).await)?;
        let system = Caller::system(c.app, c.tenant, c.request_id, c.action);
        tx.commit(plan_entry(&system, "action_expired", &plan, Some(r.clone()))).await?;
        return Err(Error::Conflict(r.clone()));
    }
    if approve && let Some(r) = refusal {
        // The refusal is recorded: a requester trying to approve its own plan is worth knowing about.
        let mut entry = plan_entry(c, "approve_action", &plan, Some(r.clone()));
        entry.outcome = Outcome::Denied;
        tx.commit(entry).await?;
        return Err(Error::Refused(r));
    }
    let next = match (approve, plan.delay_minutes) {
        (false, _) => PlanState::Rejected,
        (true, None) => PlanState::Approved,
        (true, Some(d)) => {
            plan.run_at = Some(format_timestamp(after_minutes(now, d)));
            PlanState::Scheduled
        }
    };
    transition(&mut plan, next, now)?;
    plan.decided_by = Some(c.subject().to_owned());
    plan.decided_at = Some(at);
    plan.decision_reason = reason.clone();
    plan_write(tx.update_plan(&plan).await)?;
    let event = if approve { "plan_approved" } else { "plan_rejected" };
    enqueue(
        &mut tx,
        event,
        &format!("Plan {plan_id} {} by {}", if approve { "approved" } else { "rejected" }, c.subject()),
        json!({"plan_id": plan_id, "budget_id": plan.budget_id, "by": c.subject(), "reason": reason}),
    )
    .await?;
    if plan.state == PlanState::Scheduled {
        let items = tx.plan_items(plan_id).await?;
        announce_scheduled(&mut tx, &PlanView::new(plan.clone(), items)).await?;
    }
    tx.commit(plan_entry(c, if approve { "action_approved" } else { "action_rejected" }, &plan, reason)).await?;
    if plan.state == PlanState::Approved {
        return execute(c, plan_id).await;
    }
    let (plan, items) = c.store().plan(plan_id).await.about("plan", plan_id)?;
    Ok(PlanView::new(plan, items))
}

/// Execute a plan that is planned (automatic), approved, or was interrupted while executing. Fails with a
/// conflict ([`is_busy`]) if another instance holds it. Safe to call again at any time.
pub async fn execute(c: &Caller<'_>, plan_id: &str) -> Result<PlanView> {
    let (lease, holder) = (lease_name(c.tenant, plan_id), holder(c.app));
    with_lease(c.app, &lease, &holder, execute_leased(c, plan_id, (&lease, &holder))).await
}

/// Run `work` holding the lease `name` (or fail with [`busy`]), and give the lease back after.
async fn with_lease(
    app: &App,
    name: &str,
    holder: &str,
    work: impl Future<Output = Result<PlanView>>,
) -> Result<PlanView> {
    if !take_lease(app, name, holder).await? {
        return Err(busy());
    }
    let result = work.await;
    if let Err(e) = app.store.release_lease(name, holder).await {
        tracing::warn!(error = %e, "could not release a plan lease; it will expire");
    }
    result
}

async fn execute_leased(c: &Caller<'_>, plan_id: &str, (lease, holder): (&str, &str)) -> Result<PlanView> {
    let ts = c.store();
    // Start (or resume) execution.
    let mut tx = ts.begin().await?;
    let mut plan = tx.plan_for_update(plan_id).await.about("plan", plan_id)?;
    if !plan.state.is_runnable() {
        drop(tx);
        if plan.state == PlanState::AwaitingApproval {
            return Err(Error::Conflict(format!("plan {plan_id} is awaiting approval")));
        }
        let (plan, items) = ts.plan(plan_id).await.about("plan", plan_id)?;
        return Ok(PlanView::new(plan, items));
    }
    if plan.state == PlanState::Scheduled && !is_due(&plan, c.now()) {
        drop(tx);
        let (plan, items) = ts.plan(plan_id).await.about("plan", plan_id)?;
        return Ok(PlanView::new(plan, items));
    }
    if plan.state == PlanState::Scheduled
        && plan.decided_by.is_none()
        && let Some(refusal) = scheduled_refusal(c, &plan).await?
    {
        // Nobody approved it, and whoever configured it may no longer act on their own: it does not run.
        drop(tx);
        let reason = format!("it may no longer run on its own: {refusal}");
        return cancel_leased(c, plan_id, &reason).await;
    }
    let resumed = plan.state == PlanState::Executing;
    transition(&mut plan, PlanState::Executing, c.now())?;
    plan_write(tx.update_plan(&plan).await)?;
    let started = if resumed { "action_execution_resumed" } else { "action_execution_started" };
    tx.commit(plan_entry(c, started, &plan, None)).await?;

    let targets = control::targets(c.app, c.tenant).await?;
    let items = ts.plan(plan_id).await.about("plan", plan_id)?.1;
    let mut statuses = Vec::with_capacity(items.len());
    for mut item in items {
        if matches!(item.status, ItemStatus::Pending | ItemStatus::StopSent) {
            // Keep the lease while working through a long plan.
            if !take_lease(c.app, lease, holder).await? {
                return Err(busy());
            }
            let target = targets.get(&item.organization_id);
            stop_item(c, &plan, &mut item, target).await?;
        }
        statuses.push(item.status);
    }

    let mut tx = ts.begin().await?;
    let mut plan = tx.plan_for_update(plan_id).await.about("plan", plan_id)?;
    let now = c.now();
    transition(&mut plan, action::outcome(&statuses), now)?;
    plan.executed_at = Some(format_timestamp(now));
    plan_write(tx.update_plan(&plan).await)?;
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
    enqueue(&mut tx, "plan_executed", &text, to_json(&view)).await?;
    let mut entry = plan_entry(c, "action_executed", &plan, None);
    entry.after = Some(to_json(&view));
    tx.commit(entry).await?;
    Ok(view)
}

/// Stop one scenario of a plan, at most once: read its state, and only send a stop while it is active.
async fn stop_item(
    c: &Caller<'_>,
    plan: &PlanRecord,
    item: &mut ItemRecord,
    target: Option<&MakeTarget>,
) -> Result<()> {
    let app = c.app;
    let Some(target) = target else {
        item.status = ItemStatus::Failed;
        item.last_error = Some(format!("organization {} is no longer connected", item.organization_id));
        return save_item(c, plan, item, "action_item_failed").await;
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
            return save_item(c, plan, item, action).await;
        }
        if item.status == ItemStatus::Pending {
            item.status = ItemStatus::StopSent;
            save_item(c, plan, item, "action_item_stop_sent").await?;
        }
        item.attempts += 1;
        match app.make.set_scenario_active(target, item.organization_id, item.scenario_id, false).await {
            Ok(false) => {
                item.status = ItemStatus::Stopped;
                item.last_error = None;
                return save_item(c, plan, item, "action_item_stopped").await;
            }
            Ok(true) => item.last_error = Some("Make answered the stop but reports the scenario active".into()),
            Err(e) => item.last_error = Some(e.to_string()),
        }
    }
    item.status = ItemStatus::Failed;
    save_item(c, plan, item, "action_item_failed").await
}

async fn save_item(c: &Caller<'_>, plan: &PlanRecord, item: &mut ItemRecord, action: &str) -> Result<()> {
    item.updated_at = format_timestamp(c.now());
    let mut tx = c.store().begin().await?;
    tx.update_item(&plan.id, item).await?;
    match item.status {
        ItemStatus::Stopped | ItemStatus::AlreadyInactive => tx.set_scenario_active(item.scenario_id, false).await?,
        ItemStatus::Resumed => tx.set_scenario_active(item.scenario_id, true).await?,
        _ => {}
    }
    let after = json!({
        "plan_id": plan.id, "status": item.status.as_str(), "attempts": item.attempts, "error": item.last_error,
    });
    let mut entry = c.entry_as(action, Target::MakeScenario(item.scenario_id), None::<&()>, Some(&after));
    entry.reason = Some(format!("action plan {}", plan.id));
    tx.commit(entry).await?;
    Ok(())
}

/// Resume exactly the scenarios this plan stopped that are still inactive. Scenarios that were inactive
/// before the plan, or that someone started since, are left alone.
pub async fn reverse(c: &Caller<'_>, plan_id: &str, reason: &str) -> Result<PlanView> {
    let (lease, holder) = (lease_name(c.tenant, plan_id), holder(c.app));
    with_lease(c.app, &lease, &holder, reverse_leased(c, plan_id, reason)).await
}

async fn reverse_leased(c: &Caller<'_>, plan_id: &str, reason: &str) -> Result<PlanView> {
    let ts = c.store();
    let (plan, items) = ts.plan(plan_id).await.about("plan", plan_id)?;
    if !plan.state.can_become(PlanState::Reversed) {
        return Err(Error::Conflict(format!(
            "plan {plan_id} is {}; only executed or partially failed plans can be reversed",
            plan.state.as_str()
        )));
    }
    let targets = control::targets(c.app, c.tenant).await?;
    let held = ts.scenarios_held_by_other_plans(plan_id).await?;
    let stopped: Vec<ItemRecord> = items.into_iter().filter(|i| i.status == ItemStatus::Stopped).collect();
    let ids: Vec<i64> = stopped.iter().map(|i| i.scenario_id).collect();
    let synced: HashMap<i64, crate::store::ScenarioRecord> =
        ts.connected_scenarios(&ids).await?.into_iter().map(|s| (s.scenario_id, s)).collect();
    for mut item in stopped {
        if held.contains(&item.scenario_id) {
            item.status = ItemStatus::HeldByOtherPlan;
            save_item(c, &plan, &mut item, "action_item_held_by_other_plan").await?;
            continue;
        }
        let (Some(target), Some(scenario)) = (targets.get(&item.organization_id), synced.get(&item.scenario_id)) else {
            item.status = ItemStatus::ResumeFailed;
            item.last_error = Some(format!(
                "scenario {} is no longer in a connected organization (as of the last sync)",
                item.scenario_id
            ));
            save_item(c, &plan, &mut item, "action_item_resume_failed").await?;
            continue;
        };
        item.attempts += 1;
        let change = control::change_one(c.app, target, scenario, true).await;
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
        save_item(c, &plan, &mut item, action).await?;
    }
    let mut tx = ts.begin().await?;
    let mut plan = tx.plan_for_update(plan_id).await.about("plan", plan_id)?;
    if !plan.state.can_become(PlanState::Reversed) {
        return Err(Error::Conflict(format!("plan {plan_id} became {} meanwhile", plan.state.as_str())));
    }
    let now = c.now();
    transition(&mut plan, PlanState::Reversed, now)?;
    plan.reversed_by = Some(c.subject().to_owned());
    plan.reversed_at = Some(format_timestamp(now));
    plan_write(tx.update_plan(&plan).await)?;
    let items = tx.plan_items(plan_id).await?;
    let resumed = items.iter().filter(|i| i.status == ItemStatus::Resumed).count();
    let view = PlanView::new(plan.clone(), items);
    enqueue(
        &mut tx,
        "plan_reversed",
        &format!("Plan {plan_id} reversed by {}: {resumed} scenario(s) resumed ({reason})", c.subject()),
        to_json(&view),
    )
    .await?;
    let mut entry = plan_entry(c, "action_reversed", &plan, Some(reason.to_owned()));
    entry.after = Some(to_json(&view));
    tx.commit(entry).await?;
    Ok(view)
}

/// Why a scheduled plan that nobody approved may not run on its own now (see [`automation_refusal`]).
async fn scheduled_refusal(c: &Caller<'_>, plan: &PlanRecord) -> Result<Option<String>> {
    let Some(action_id) = &plan.action_id else { return Ok(None) };
    let Some(action) = c.store().action(action_id).await.ok() else {
        return Ok(Some(format!("its action {action_id} was removed")));
    };
    Ok(automation_refusal(&c.app.store, c.tenant, &action, c.now()).await?)
}

/// Whether a scheduled plan's time has come.
fn is_due(plan: &PlanRecord, now: Timestamp) -> bool {
    plan.run_at.as_deref().and_then(|s| parse_timestamp(s).ok()).is_some_and(|at| now >= at)
}

/// Cancel a scheduled plan before it runs, with a reason: nothing is paused. The lease keeps a cancel
/// from racing an execution that has begun.
pub async fn cancel(c: &Caller<'_>, plan_id: &str, reason: &str) -> Result<PlanView> {
    let (lease, holder) = (lease_name(c.tenant, plan_id), holder(c.app));
    with_lease(c.app, &lease, &holder, cancel_leased(c, plan_id, reason)).await
}

async fn cancel_leased(c: &Caller<'_>, plan_id: &str, reason: &str) -> Result<PlanView> {
    let now = c.now();
    let mut tx = c.store().begin().await?;
    let mut plan = tx.plan_for_update(plan_id).await.about("plan", plan_id)?;
    if !plan.state.is_cancellable() {
        return Err(Error::Conflict(format!(
            "plan {plan_id} is {}; only scheduled plans can be cancelled (reject_action refuses one awaiting \
             approval, reverse_action undoes an executed one)",
            plan.state.as_str()
        )));
    }
    transition(&mut plan, PlanState::Cancelled, now)?;
    plan.cancelled_by = Some(c.subject().to_owned());
    plan.cancelled_at = Some(format_timestamp(now));
    plan.cancel_reason = Some(reason.to_owned());
    plan_write(tx.update_plan(&plan).await)?;
    enqueue(
        &mut tx,
        "plan_cancelled",
        &format!("Plan {plan_id} cancelled by {} before it ran: {reason}", c.subject()),
        json!({"plan_id": plan_id, "budget_id": plan.budget_id, "by": c.subject(), "reason": reason}),
    )
    .await?;
    tx.commit(plan_entry(c, "action_cancelled", &plan, Some(reason.to_owned()))).await?;
    let (plan, items) = c.store().plan(plan_id).await.about("plan", plan_id)?;
    Ok(PlanView::new(plan, items))
}

/// Mark plans whose approval window has closed as expired. Returns how many.
pub async fn expire_overdue(app: &App, request_id: &str) -> Result<usize> {
    let now = app.store.clock().now();
    let mut expired = 0;
    for (tenant, id) in app.store.plans_in_states(&[PlanState::AwaitingApproval]).await? {
        let c = Caller::system(app, tenant, request_id, "action_expired");
        let mut tx = c.store().begin().await?;
        let mut plan = tx.plan_for_update(&id).await.about("plan", &id)?;
        let overdue = plan.expires_at.as_deref().and_then(|s| parse_timestamp(s).ok()).is_some_and(|d| now >= d);
        if plan.state != PlanState::AwaitingApproval || !overdue {
            continue;
        }
        transition(&mut plan, PlanState::Expired, now)?;
        plan_write(tx.update_plan(&plan).await)?;
        enqueue(
            &mut tx,
            "plan_expired",
            &format!("Plan {id} expired without approval"),
            json!({"plan_id": id, "budget_id": plan.budget_id}),
        )
        .await?;
        let reason = Some("the approval window closed".to_owned());
        tx.commit(plan_entry(&c, "action_expired", &plan, reason)).await?;
        expired += 1;
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(state: PlanState) -> PlanRecord {
        PlanRecord {
            id: "p1".into(),
            budget_id: "b1".into(),
            threshold_id: None,
            action_id: None,
            crossing_id: None,
            period_key: "2026-12".into(),
            selector: Selector { kind: action::SelectorKind::NonCritical, top_n: None },
            mode: Mode::RequiresApproval,
            state,
            why: String::new(),
            expected_saving_centi: 0,
            reverse_at_period_end: false,
            requested_by: "a".into(),
            requested_at: String::new(),
            expires_at: None,
            decided_by: None,
            decided_at: None,
            decision_reason: None,
            executed_at: None,
            reversed_by: None,
            reversed_at: None,
            updated_at: String::new(),
            version: 3,
            origin: action::PlanOrigin::Threshold,
            delay_minutes: None,
            run_at: None,
            cancelled_by: None,
            cancelled_at: None,
            cancel_reason: None,
            probability_permille: None,
        }
    }

    #[test]
    fn plan_states_change_only_along_the_state_machine() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut p = plan(PlanState::AwaitingApproval);
        transition(&mut p, PlanState::Approved, now).unwrap();
        assert_eq!(
            (p.state, p.version, p.updated_at.as_str()),
            (PlanState::Approved, 4, "2027-01-15T08:00:00.000000Z")
        );
        let e = transition(&mut p, PlanState::Reversed, now).unwrap_err();
        assert!(matches!(&e, Error::Conflict(m) if m.contains("is approved") && m.contains("reversed")), "{e}");
        assert_eq!((p.state, p.version), (PlanState::Approved, 4), "a refused change leaves the plan alone");
        let mut done = plan(PlanState::Rejected);
        assert!(transition(&mut done, PlanState::Executing, now).is_err(), "a rejected plan never runs");
    }

    #[test]
    fn busy_is_recognised() {
        assert!(is_busy(&busy()));
        assert!(!is_busy(&Error::Conflict("plan p is rejected".into())));
    }
}
