//! Automated action tools: actions on thresholds, critical scenarios, pause plans (preview, list, get,
//! approve, reject, reverse) and webhooks.

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Json;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::make::REASON_MAX_CHARS;
use super::params::Parameters;
use super::status::parse_id;
use super::{BudgetServer, CallCtx, ToolError};
use crate::audit::Actor;
use crate::auth::Permission;
use crate::crypto::SecretString;
use crate::domain::action::{ActionKind, Mode, PlanState, Selector, ThresholdAction};
use crate::domain::budget::MAKE_ID_MAX;
use crate::domain::clock::format_timestamp;
use crate::domain::{ValidationError, validation};
use crate::engine::actions::{self, ActionError, PlanView, Preview};
use crate::store::{NotificationRecord, PlanFilter, PlanRecord, WebhookRecord};

const PAGE_MAX: u32 = 100;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddActionArgs {
    /// Threshold id (a UUID), from list_thresholds.
    #[schemars(length(min = 36, max = 36))]
    pub threshold_id: String,
    /// "notify": send a threshold_crossed event to the tenant's webhooks. "pause_scenarios": create a plan
    /// that deactivates the scenarios the selector picks.
    pub kind: ActionKind,
    /// For pause_scenarios: which active scenarios in the budget's scope to pause. "all" includes critical
    /// scenarios and needs permission budget:emergency_controls.
    #[serde(default)]
    pub selector: Option<Selector>,
    /// For pause_scenarios: "automatic" (runs at once) or "requires_approval" (a second principal approves).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// For pause_scenarios: resume what the plan paused when the budget's next period begins. Default false.
    #[serde(default)]
    pub reverse_at_period_end: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRef {
    /// Threshold action id (a UUID).
    #[schemars(length(min = 36, max = 36))]
    pub action_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRef {
    /// Threshold id (a UUID).
    #[schemars(length(min = 36, max = 36))]
    pub threshold_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ActionList {
    pub actions: Vec<ThresholdAction>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Removed {
    pub id: String,
    pub removed: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CriticalArgs {
    /// Make scenario id (from list_scenarios).
    #[schemars(range(min = 1, max = MAKE_ID_MAX))]
    pub scenario_id: i64,
    /// true: never paused by the non_critical and top_n selectors. false: may be paused.
    pub critical: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CriticalResult {
    pub scenario_id: i64,
    pub critical: bool,
    pub was_critical: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewArgs {
    /// A pause action (from list_threshold_actions) to preview. Give this, or budget_id and selector.
    #[serde(default)]
    #[schemars(length(min = 36, max = 36))]
    pub action_id: Option<String>,
    /// Budget id (a UUID), with `selector`, for an ad-hoc preview.
    #[serde(default)]
    #[schemars(length(min = 36, max = 36))]
    pub budget_id: Option<String>,
    #[serde(default)]
    pub selector: Option<Selector>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListActionsArgs {
    /// Only plans of this budget.
    #[serde(default)]
    #[schemars(length(min = 36, max = 36))]
    pub budget_id: Option<String>,
    /// Only plans in this state, e.g. "awaiting_approval".
    #[serde(default)]
    pub state: Option<PlanState>,
    /// 1–100, default 20.
    #[serde(default = "default_limit")]
    #[schemars(range(min = 1, max = PAGE_MAX))]
    pub limit: u32,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    #[schemars(length(min = 36, max = 36))]
    pub cursor: Option<String>,
}

fn default_limit() -> u32 {
    20
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PlanList {
    /// Newest first. Items are left out here; get_action shows them.
    pub plans: Vec<PlanRecord>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRef {
    /// Action plan id (a UUID), from list_actions.
    #[schemars(length(min = 36, max = 36))]
    pub plan_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideArgs {
    /// Action plan id (a UUID), from list_actions.
    #[schemars(length(min = 36, max = 36))]
    pub plan_id: String,
    /// Why; recorded in the audit log. Required to reject or reverse, optional to approve.
    #[serde(default)]
    #[schemars(length(min = 1, max = REASON_MAX_CHARS))]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddWebhookArgs {
    /// Where events are POSTed: https (http only for localhost). At most 2048 characters.
    #[schemars(length(min = 8, max = 2048))]
    pub url: String,
    /// Shared secret for the HMAC-SHA256 signature (16–256 characters). Stored encrypted; never shown again.
    #[schemars(length(min = 16, max = 256))]
    pub secret: String,
    /// Optional name, e.g. "ops Slack relay".
    #[serde(default)]
    #[schemars(length(max = 120))]
    pub label: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct WebhookView {
    pub id: String,
    /// Scheme, host and port only: the path and query often hold the receiver's credential.
    pub url: String,
    pub label: Option<String>,
    pub created_at: String,
    pub created_by: String,
    /// The most recent notifications to this webhook (newest first, at most 10) with their delivery state.
    pub recent: Vec<NotificationView>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NotificationView {
    pub event_id: String,
    pub event_type: String,
    /// pending, delivered or failed.
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

impl From<NotificationRecord> for NotificationView {
    fn from(n: NotificationRecord) -> Self {
        Self {
            event_id: n.event_id,
            event_type: n.event_type,
            state: n.state,
            attempts: n.attempts,
            last_status: n.last_status,
            last_error: n.last_error,
            created_at: n.created_at,
            delivered_at: n.delivered_at,
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRef {
    /// Webhook id (a UUID), from list_webhooks.
    #[schemars(length(min = 36, max = 36))]
    pub webhook_id: String,
}

fn action_error(call: &CallCtx, what: &'static str, id: &str, e: ActionError) -> ToolError {
    match e {
        ActionError::NotFound => ToolError::NotFound { what, id: id.to_owned() },
        ActionError::Conflict(m) => ToolError::Conflict(m),
        ActionError::Busy => ToolError::Conflict(e.to_string()),
        ActionError::Refused(m) => ToolError::Forbidden(m),
        ActionError::Status(s) => super::status::status_error(call, s),
        ActionError::Control(c) => match c {
            crate::engine::control::ControlError::Secret(s) => ToolError::Unavailable(s.to_string()),
            other => ToolError::internal(&call.request_id, &other),
        },
        ActionError::Store(s) => ToolError::internal(&call.request_id, &s),
    }
}

fn reason(field: &str, r: &Option<String>, required: bool) -> Result<Option<String>, ValidationError> {
    match r {
        Some(r) => Ok(Some(validation::text(field, r, 1, REASON_MAX_CHARS)?)),
        None if required => Err(ValidationError::new(field, "is required")),
        None => Ok(None),
    }
}

/// The first of `needed` that the caller's role lacks.
pub(super) fn missing(call: &CallCtx, needed: &[Permission]) -> Option<crate::auth::Denied> {
    needed.iter().find_map(|p| crate::auth::authorize(&call.principal, Some(*p)).err())
}

/// What a principal must hold to change what `automatic` actions depend on: what they exercise (as
/// whoever attached them had to).
pub(super) fn automation_rights(automatic: &[ThresholdAction]) -> Vec<Permission> {
    let mut needed = Vec::new();
    for a in automatic {
        for p in actions::permissions_exercised(a.selector) {
            if !needed.contains(&p) {
                needed.push(p);
            }
        }
    }
    needed
}

impl BudgetServer {
    /// Permissions this call needs because of its arguments or the data it touches, beyond the tool's
    /// own permission (which the guard checked). The first missing one is refused with `why`, and the
    /// denial is audited like the guard's. Call it with no transaction open (the denial is written in
    /// its own); see [`Self::refuse`] for checks inside one.
    pub(super) async fn require_all(&self, call: &CallCtx, needed: &[Permission], why: &str) -> Result<(), ToolError> {
        match missing(call, needed) {
            Some(denied) => Err(self.refuse(call, denied, why).await),
            None => Ok(()),
        }
    }

    /// Audit a denial found by [`missing`] and return the error for the caller.
    pub(super) async fn refuse(&self, call: &CallCtx, denied: crate::auth::Denied, why: &str) -> ToolError {
        tracing::warn!(request_id = call.request_id, tool = call.tool, subject = call.principal.subject,
                       permission = %denied.permission, why, "permission denied");
        self.deny(&call.principal, &call.tool, &call.request_id, format!("{denied} ({why})")).await;
        ToolError::Forbidden(format!("{denied}: {why}"))
    }

    async fn webhook_view(&self, call: &CallCtx, w: WebhookRecord) -> Result<WebhookView, ToolError> {
        let recent = self.tenant(call).notifications(Some(&w.id), 10).await.map_err(call.internal())?;
        Ok(WebhookView {
            id: w.id,
            url: crate::notify::masked_url(&w.url),
            label: w.label,
            created_at: w.created_at,
            created_by: w.created_by,
            recent: recent.into_iter().map(NotificationView::from).collect(),
        })
    }
}

#[tool_router(router = action_tools, vis = "pub(super)")]
impl BudgetServer {
    /// Attach an action to a threshold; it runs each time the threshold is crossed. `notify` sends a
    /// signed `threshold_crossed` event to the tenant's webhooks (see add_webhook). `pause_scenarios`
    /// creates a plan that deactivates the active scenarios the selector picks in the budget's scope:
    /// `non_critical` (all not marked critical), `top_n` (the N highest consumers this period, critical
    /// ones spared) or `all` (critical included; needs budget:emergency_controls). With mode `automatic`
    /// the plan runs at once; with `requires_approval` another principal must call approve_action.
    /// Try `preview_action` first to see what a selector would pause.
    #[tool(annotations(
        title = "Add threshold action",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn add_threshold_action(
        &self,
        Parameters(args): Parameters<AddActionArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<ThresholdAction>, ToolError> {
        parse_id::<uuid::Uuid>("threshold_id", &args.threshold_id, "threshold")?;
        let (selector, mode) = match args.kind {
            ActionKind::Notify => {
                if args.selector.is_some() {
                    return Err(ValidationError::new("selector", "is only allowed with kind pause_scenarios").into());
                }
                if args.mode.is_some() {
                    return Err(ValidationError::new("mode", "is only allowed with kind pause_scenarios").into());
                }
                if args.reverse_at_period_end {
                    return Err(ValidationError::new(
                        "reverse_at_period_end",
                        "is only allowed with kind pause_scenarios",
                    )
                    .into());
                }
                (None, None)
            }
            ActionKind::PauseScenarios => {
                let selector = args
                    .selector
                    .ok_or_else(|| ValidationError::new("selector", "is required for pause_scenarios"))?
                    .check("selector")?;
                let mode = args.mode.ok_or_else(|| ValidationError::new("mode", "is required for pause_scenarios"))?;
                if selector.needs_emergency_controls() {
                    self.require_all(
                        &call,
                        &[Permission::EmergencyControls],
                        "selector `all` pauses critical scenarios too",
                    )
                    .await?;
                }
                if mode == Mode::Automatic {
                    // Whoever sets up an automatic pause exercises it later: they must hold what it does.
                    self.require_all(
                        &call,
                        &actions::permissions_exercised(Some(selector)),
                        "an automatic pause action pauses scenarios without approval",
                    )
                    .await?;
                }
                (Some(selector), Some(mode))
            }
        };
        let mut tx = self.tenant(&call).begin().await.map_err(call.internal())?;
        let threshold = tx
            .threshold_for_update(&args.threshold_id)
            .await
            .map_err(call.store_err("threshold", &args.threshold_id))?;
        let action = ThresholdAction {
            id: uuid::Uuid::now_v7().to_string(),
            threshold_id: threshold.id,
            kind: args.kind,
            selector,
            mode,
            reverse_at_period_end: args.reverse_at_period_end,
            created_at: format_timestamp(self.now()),
            created_by: call.principal.subject.clone(),
            created_role: Some(call.principal.role.as_str().to_owned()),
            created_transport: Some(call.principal.transport.as_str().to_owned()),
            created_token_id: call.principal.token_id.map(|t| t.to_string()),
        };
        tx.insert_action(&action).await.map_err(call.internal())?;
        tx.commit(call.audit(format!("threshold_action:{}", action.id), None::<&ThresholdAction>, Some(&action)))
            .await
            .map_err(call.internal())?;
        Ok(Json(action))
    }

    /// Remove an action from its threshold. Plans it already created stay (see list_actions).
    #[tool(annotations(
        title = "Remove threshold action",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn remove_threshold_action(
        &self,
        Parameters(args): Parameters<ActionRef>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<Removed>, ToolError> {
        parse_id::<uuid::Uuid>("action_id", &args.action_id, "threshold action")?;
        let mut tx = self.tenant(&call).begin().await.map_err(call.internal())?;
        let removed =
            tx.delete_action(&args.action_id).await.map_err(call.store_err("threshold action", &args.action_id))?;
        tx.commit(call.audit(format!("threshold_action:{}", args.action_id), Some(&removed), None::<&ThresholdAction>))
            .await
            .map_err(call.internal())?;
        Ok(Json(Removed { id: args.action_id, removed: true }))
    }

    /// List the actions attached to a threshold (notify, pause_scenarios with selector and mode).
    #[tool(annotations(
        title = "List threshold actions",
        read_only_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn list_threshold_actions(
        &self,
        Parameters(args): Parameters<ThresholdRef>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<ActionList>, ToolError> {
        parse_id::<uuid::Uuid>("threshold_id", &args.threshold_id, "threshold")?;
        let ts = self.tenant(&call);
        ts.threshold(&args.threshold_id).await.map_err(call.store_err("threshold", &args.threshold_id))?;
        let actions = ts.actions(&args.threshold_id).await.map_err(call.internal())?;
        Ok(Json(ActionList { actions }))
    }

    /// Mark a scenario critical (or not). Critical scenarios are never paused by the `non_critical` and
    /// `top_n` selectors of automated actions; only an `all` selector (emergency controls) pauses them.
    /// The scenario must have been synced (see list_scenarios).
    #[tool(annotations(
        title = "Set scenario critical",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn set_scenario_critical(
        &self,
        Parameters(args): Parameters<CriticalArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<CriticalResult>, ToolError> {
        validation::int_range("scenario_id", args.scenario_id, 1, MAKE_ID_MAX)?;
        let id = args.scenario_id.to_string();
        let mut tx = self.tenant(&call).begin().await.map_err(call.internal())?;
        let was =
            tx.set_scenario_critical(args.scenario_id, args.critical).await.map_err(call.store_err("scenario", &id))?;
        if was
            && !args.critical
            && let Some(denied) = missing(&call, &[Permission::ExecuteAutomatedActions])
        {
            // Clearing a mark exposes the scenario to automatic pauses that others configured.
            drop(tx);
            return Err(self
                .refuse(&call, denied, "clearing a critical mark lets automated actions pause the scenario")
                .await);
        }
        let result = CriticalResult { scenario_id: args.scenario_id, critical: args.critical, was_critical: was };
        tx.commit(call.audit(
            format!("make_scenario:{}", args.scenario_id),
            Some(&serde_json::json!({"critical": was})),
            Some(&result),
        ))
        .await
        .map_err(call.internal())?;
        Ok(Json(result))
    }

    /// Dry run: which scenarios a pause action (by `action_id`) or an ad-hoc `selector` on a budget would
    /// pause right now, their consumption this period, the expected saving for the rest of the period, and
    /// which scenarios are left out and why. Nothing is changed.
    #[tool(annotations(
        title = "Preview action",
        read_only_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn preview_action(
        &self,
        Parameters(args): Parameters<PreviewArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<Preview>, ToolError> {
        let ts = self.tenant(&call);
        let (budget_id, selector) = match (&args.action_id, &args.budget_id, args.selector) {
            (Some(action_id), None, None) => {
                parse_id::<uuid::Uuid>("action_id", action_id, "threshold action")?;
                let action = ts.action(action_id).await.map_err(call.store_err("threshold action", action_id))?;
                let selector = action.selector.ok_or_else(|| {
                    ValidationError::new("action_id", "is a notify action; only pause_scenarios actions pause anything")
                })?;
                let threshold = ts
                    .threshold(&action.threshold_id)
                    .await
                    .map_err(call.store_err("threshold", &action.threshold_id))?;
                (threshold.budget_id, selector)
            }
            (None, Some(budget_id), Some(selector)) => (budget_id.clone(), selector.check("selector")?),
            _ => {
                return Err(ValidationError::new(
                    "(arguments)",
                    "give either action_id alone, or budget_id together with selector",
                )
                .into());
            }
        };
        let budget = self.budget_of(&call, &budget_id, "budget_id").await?;
        let preview = actions::preview(&self.app, call.principal.tenant_id, &budget, selector, self.now())
            .await
            .map_err(|e| action_error(&call, "budget", &budget_id, e))?;
        Ok(Json(preview))
    }

    /// List action plans, newest first, optionally of one budget or in one state (e.g.
    /// `awaiting_approval`). States: planned → awaiting_approval → approved | rejected | expired →
    /// executing → executed | partially_failed → reversed.
    #[tool(annotations(
        title = "List actions",
        read_only_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn list_actions(
        &self,
        Parameters(args): Parameters<ListActionsArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<PlanList>, ToolError> {
        validation::int_range("limit", i64::from(args.limit), 1, i64::from(PAGE_MAX))?;
        if let Some(b) = &args.budget_id {
            parse_id::<uuid::Uuid>("budget_id", b, "budget")?;
        }
        if let Some(c) = &args.cursor {
            parse_id::<uuid::Uuid>("cursor", c, "plan")?;
        }
        let filter = PlanFilter { budget_id: args.budget_id.clone(), state: args.state };
        let (plans, next_cursor) =
            self.tenant(&call).plans(&filter, args.cursor.as_deref(), args.limit).await.map_err(call.internal())?;
        Ok(Json(PlanList { plans, next_cursor }))
    }

    /// One action plan with every scenario it covers: consumption, expected saving, and what happened to
    /// each (pending, stop_sent, stopped, already_inactive, failed, resumed, left_active, held_by_other_plan,
    /// resume_failed).
    #[tool(annotations(title = "Get action", read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn get_action(
        &self,
        Parameters(args): Parameters<PlanRef>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<PlanView>, ToolError> {
        parse_id::<uuid::Uuid>("plan_id", &args.plan_id, "plan")?;
        let (plan, items) =
            self.tenant(&call).plan(&args.plan_id).await.map_err(call.store_err("plan", &args.plan_id))?;
        Ok(Json(PlanView::new(plan, items)))
    }

    /// Approve a plan awaiting approval, which then runs at once: the listed scenarios that are still
    /// active are deactivated in Make. The principal that requested the plan cannot approve it, and an
    /// expired approval window cannot be reopened. Returns the plan with per-scenario results.
    #[tool(annotations(
        title = "Approve action",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = false,
        open_world_hint = true
    ))]
    async fn approve_action(
        &self,
        Parameters(args): Parameters<DecideArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<PlanView>, ToolError> {
        parse_id::<uuid::Uuid>("plan_id", &args.plan_id, "plan")?;
        let reason = reason("reason", &args.reason, false)?;
        self.check_plan_permission(&call, &args.plan_id).await?;
        let actor = Actor::from(&call.principal);
        let view =
            actions::decide(&self.app, call.principal.tenant_id, &args.plan_id, &actor, true, reason, &call.request_id)
                .await
                .map_err(|e| action_error(&call, "plan", &args.plan_id, e))?;
        Ok(Json(view))
    }

    /// Reject a plan awaiting approval, with a reason. Nothing is paused.
    #[tool(annotations(
        title = "Reject action",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn reject_action(
        &self,
        Parameters(args): Parameters<DecideArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<PlanView>, ToolError> {
        parse_id::<uuid::Uuid>("plan_id", &args.plan_id, "plan")?;
        let reason = reason("reason", &args.reason, true)?;
        let actor = Actor::from(&call.principal);
        let view = actions::decide(
            &self.app,
            call.principal.tenant_id,
            &args.plan_id,
            &actor,
            false,
            reason,
            &call.request_id,
        )
        .await
        .map_err(|e| action_error(&call, "plan", &args.plan_id, e))?;
        Ok(Json(view))
    }

    /// Reverse an executed plan: activate again exactly the scenarios this plan paused that are still
    /// inactive. Scenarios that were already inactive before the plan, or that someone started since, are
    /// left alone. WARNING: Make runs an interval-scheduled scenario immediately when it is activated.
    #[tool(annotations(
        title = "Reverse action",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = true
    ))]
    async fn reverse_action(
        &self,
        Parameters(args): Parameters<DecideArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<PlanView>, ToolError> {
        parse_id::<uuid::Uuid>("plan_id", &args.plan_id, "plan")?;
        let reason = reason("reason", &args.reason, true)?.unwrap_or_default();
        let actor = Actor::from(&call.principal);
        let view =
            actions::reverse(&self.app, call.principal.tenant_id, &args.plan_id, &actor, &reason, &call.request_id)
                .await
                .map_err(|e| action_error(&call, "plan", &args.plan_id, e))?;
        Ok(Json(view))
    }

    /// Register a webhook for the tenant's events (threshold_crossed from notify actions, plan_created,
    /// approval_needed, plan_approved, plan_rejected, plan_executed, plan_reversed, plan_expired). Each
    /// event is POSTed as JSON with a Slack-compatible `text`, signed: header x-make-budget-signature is
    /// `v1=` + hex HMAC-SHA256 of `<x-make-budget-timestamp>.<body>` with your secret. Failed deliveries
    /// are retried with backoff.
    #[tool(annotations(
        title = "Add webhook",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn add_webhook(
        &self,
        Parameters(args): Parameters<AddWebhookArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<WebhookView>, ToolError> {
        let url = crate::notify::validate_url(args.url.trim(), &self.app.outbound)
            .map_err(|rule| ValidationError::new("url", rule))?;
        let secret = args.secret.trim();
        let len = secret.chars().count();
        if !(16..=256).contains(&len) || secret.chars().any(char::is_control) {
            return Err(
                ValidationError::new("secret", "must be 16 to 256 characters without control characters").into()
            );
        }
        let label = match &args.label {
            Some(l) => Some(validation::text("label", l, 1, 120)?),
            None => None,
        };
        let id = uuid::Uuid::now_v7().to_string();
        let tenant = call.principal.tenant_id.to_string();
        let keyring = self.app.keyring().map_err(|e| ToolError::Unavailable(e.to_string()))?;
        let sealed = keyring.seal_secret(&SecretString::new(secret), crate::app::App::webhook_binding(&tenant, &id));
        let w = WebhookRecord {
            id,
            url,
            label,
            sealed,
            created_at: format_timestamp(self.now()),
            created_by: call.principal.subject.clone(),
        };
        let mut tx = self.tenant(&call).begin().await.map_err(call.internal())?;
        tx.insert_webhook(&w).await.map_err(call.internal())?;
        let shown = serde_json::json!({"id": w.id, "url": crate::notify::masked_url(&w.url), "label": w.label});
        tx.commit(call.audit(format!("webhook:{}", w.id), None::<&()>, Some(&shown))).await.map_err(call.internal())?;
        Ok(Json(self.webhook_view(&call, w).await?))
    }

    /// List the tenant's webhooks (never their secrets) with their ten most recent notifications and how
    /// delivery went (pending, delivered or failed, attempts, last HTTP status and error).
    #[tool(annotations(
        title = "List webhooks",
        read_only_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn list_webhooks(
        &self,
        Parameters(_args): Parameters<NoArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<WebhookList>, ToolError> {
        let mut webhooks = Vec::new();
        for w in self.tenant(&call).webhooks().await.map_err(call.internal())? {
            webhooks.push(self.webhook_view(&call, w).await?);
        }
        Ok(Json(WebhookList { webhooks }))
    }

    /// Remove a webhook; notifications not yet delivered to it are dropped.
    #[tool(annotations(
        title = "Remove webhook",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn remove_webhook(
        &self,
        Parameters(args): Parameters<WebhookRef>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<Removed>, ToolError> {
        parse_id::<uuid::Uuid>("webhook_id", &args.webhook_id, "webhook")?;
        let mut tx = self.tenant(&call).begin().await.map_err(call.internal())?;
        tx.delete_webhook(&args.webhook_id).await.map_err(call.store_err("webhook", &args.webhook_id))?;
        tx.commit(call.audit(format!("webhook:{}", args.webhook_id), None::<&()>, None::<&()>))
            .await
            .map_err(call.internal())?;
        Ok(Json(Removed { id: args.webhook_id, removed: true }))
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

impl BudgetServer {
    /// A plan with the `all` selector pauses critical scenarios: approving it needs emergency controls.
    async fn check_plan_permission(&self, call: &CallCtx, plan_id: &str) -> Result<(), ToolError> {
        let (plan, _) = self.tenant(call).plan(plan_id).await.map_err(call.store_err("plan", plan_id))?;
        if plan.selector.needs_emergency_controls() {
            self.require_all(call, &[Permission::EmergencyControls], "the plan pauses critical scenarios too").await?;
        }
        Ok(())
    }
}
