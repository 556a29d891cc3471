//! Automated action tools: actions on thresholds, critical scenarios, and pause plans (preview, list,
//! get, approve, reject, reverse). The mutations are `engine::threshold_actions`' and `engine::actions`'
//! use cases.

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Json;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::make::REASON_MAX_CHARS;
use super::params::Parameters;
use super::status::parse_id;
use super::{BudgetServer, CallCtx, ToolError};
use crate::domain::action::{
    ActionDraft, ActionKind, ConfidenceGate, DELAY_MAX_MINUTES, Mode, PlanState, Selector, ThresholdAction,
};
use crate::domain::budget::MAKE_ID_MAX;
use crate::domain::{ValidationError, validation};
use crate::engine::actions::{self, PlanView, Preview};
use crate::engine::{About, threshold_actions};
use crate::store::{PlanFilter, PlanRecord};

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
    /// For pause_scenarios: announce the plan (event plan_scheduled) and run it this many minutes later
    /// (after approval, with requires_approval) unless someone calls cancel_action.
    #[serde(default)]
    #[schemars(range(min = 1, max = DELAY_MAX_MINUTES))]
    pub delay_minutes: Option<i64>,
    /// For pause_scenarios on forecast thresholds: percent probabilities of ending over the limit from
    /// which the pause acts, is delayed, or only alerts. Default: the server's (95/80/60).
    #[serde(default)]
    pub gate: Option<ConfidenceGate>,
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
    /// Why; recorded in the audit log. Required to reject, cancel or reverse, optional to approve.
    #[serde(default)]
    #[schemars(length(min = 1, max = REASON_MAX_CHARS))]
    pub reason: Option<String>,
}

fn reason(field: &str, r: &Option<String>, required: bool) -> Result<Option<String>, ValidationError> {
    match r {
        Some(r) => Ok(Some(validation::text(field, r, 1, REASON_MAX_CHARS)?)),
        None if required => Err(ValidationError::new(field, "is required")),
        None => Ok(None),
    }
}

#[tool_router(router = action_tools, vis = "pub(super)")]
impl BudgetServer {
    /// Attach an action to a threshold; it runs each time the threshold is crossed. `notify` sends a
    /// signed `threshold_crossed` event to the tenant's webhooks (see add_webhook). `pause_scenarios`
    /// creates a plan that deactivates the active scenarios the selector picks in the budget's scope:
    /// `non_critical` (all not marked critical), `top_n` (the N highest consumers this period, critical
    /// ones spared) or `all` (critical included; needs budget:emergency_controls). With mode `automatic`
    /// the plan runs at once; with `requires_approval` another principal must call approve_action;
    /// `delay_minutes` announces it and runs it later unless cancelled. On forecast thresholds a pause
    /// only acts when the forecast is sure enough (`gate`). Try `preview_action` first.
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
        let draft = ActionDraft {
            kind: args.kind,
            selector: args.selector,
            mode: args.mode,
            reverse_at_period_end: args.reverse_at_period_end,
            delay_minutes: args.delay_minutes,
            gate: args.gate,
        };
        let action = threshold_actions::attach(&call.caller(&self.app), &args.threshold_id, draft).await?;
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
        threshold_actions::remove(&call.caller(&self.app), &args.action_id).await?;
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
        ts.threshold(&args.threshold_id).await.about("threshold", &args.threshold_id)?;
        let actions = ts.actions(&args.threshold_id).await?;
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
        let was = threshold_actions::set_critical(&call.caller(&self.app), args.scenario_id, args.critical).await?;
        let result = CriticalResult { scenario_id: args.scenario_id, critical: args.critical, was_critical: was };
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
                let action = ts.action(action_id).await.about("threshold action", action_id)?;
                let selector = action.selector.ok_or_else(|| {
                    ValidationError::new("action_id", "is a notify action; only pause_scenarios actions pause anything")
                })?;
                let threshold = ts.threshold(&action.threshold_id).await.about("threshold", &action.threshold_id)?;
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
        let preview = actions::preview(&self.app, call.principal.tenant_id, &budget, selector, self.now()).await?;
        Ok(Json(preview))
    }

    /// List action plans, newest first, optionally of one budget or in one state (e.g.
    /// `awaiting_approval`). States: planned → awaiting_approval → approved | rejected | expired →
    /// executing → executed | partially_failed → reversed; a delayed plan is scheduled → executing |
    /// cancelled.
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
        let (plans, next_cursor) = self.tenant(&call).plans(&filter, args.cursor.as_deref(), args.limit).await?;
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
        let (plan, items) = self.tenant(&call).plan(&args.plan_id).await.about("plan", &args.plan_id)?;
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
        Ok(Json(actions::decide(&call.caller(&self.app), &args.plan_id, true, reason).await?))
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
        Ok(Json(actions::decide(&call.caller(&self.app), &args.plan_id, false, reason).await?))
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
        Ok(Json(actions::reverse(&call.caller(&self.app), &args.plan_id, &reason).await?))
    }

    /// Cancel a scheduled plan (state `scheduled`, from a delayed action) before it runs, with a reason
    /// recorded in the audit log. Nothing is paused.
    #[tool(annotations(
        title = "Cancel action",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn cancel_action(
        &self,
        Parameters(args): Parameters<DecideArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<PlanView>, ToolError> {
        parse_id::<uuid::Uuid>("plan_id", &args.plan_id, "plan")?;
        let reason = reason("reason", &args.reason, true)?.unwrap_or_default();
        Ok(Json(actions::cancel(&call.caller(&self.app), &args.plan_id, &reason).await?))
    }
}
