//! Scenario control by hand: pause or resume Make scenarios now, with a reason (a large pause asks the
//! human to confirm where the client can). The toolset `control`; automated pauses are `actions.rs`.

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Json;
use rmcp::model::{ElicitRequestParams, ElicitationAction, ElicitationSchema};
use rmcp::service::Peer;
use rmcp::{RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::make::{MAX_SCENARIOS_PER_CALL, REASON_MAX_CHARS};
use super::params::Parameters;
use super::{BudgetServer, CallCtx, ToolError};
use crate::domain::budget::MAKE_ID_MAX;
use crate::domain::validation;
use crate::engine::control::{self, ChangeOutcome, ScenarioChange};

/// How long the human has to confirm a large pause.
const CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioControlArgs {
    /// Make scenario ids (from `list_scenarios`), 1–100, each in an organization connected to this tenant.
    #[schemars(length(min = 1, max = MAX_SCENARIOS_PER_CALL), inner(range(min = 1, max = MAKE_ID_MAX)))]
    pub scenario_ids: Vec<i64>,
    /// Why; recorded in the audit log, e.g. "marketing budget at 100 % on 2026-03-20".
    #[schemars(length(min = 1, max = REASON_MAX_CHARS))]
    pub reason: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ScenarioControlResult {
    pub changed: usize,
    pub already_in_state: usize,
    pub failed: usize,
    pub results: Vec<ScenarioChange>,
}

impl BudgetServer {
    /// Ask the human to confirm a large pause, where the client supports form elicitation (protocol
    /// versions up to 2025-11-25). A decline, a cancel or no answer stops the call before anything changes.
    async fn confirm_pause(
        &self,
        call: &CallCtx,
        args: &ScenarioControlArgs,
        peer: &Peer<RoleServer>,
    ) -> Result<(), ToolError> {
        let supported = peer.supported_elicitation_modes().contains(&rmcp::service::ElicitationMode::Form);
        if !supported {
            tracing::info!(request_id = call.request_id, "client cannot confirm; pausing without asking");
            return Ok(());
        }
        let ids: Vec<String> = args.scenario_ids.iter().map(i64::to_string).collect();
        let message = format!(
            "Pause {} Make scenarios ({}) now? Reason given: {}",
            ids.len(),
            ids.join(", "),
            args.reason.trim()
        );
        let schema = ElicitationSchema::builder()
            .required_bool_with("confirm", |b| b.title("Pause these scenarios").description("true to pause them"))
            .build()
            .map_err(|e| ToolError::internal(&e))?;
        let request = ElicitRequestParams::FormElicitationParams { meta: None, message, requested_schema: schema };
        let answer = peer
            .create_elicitation_with_timeout(request, Some(CONFIRM_TIMEOUT))
            .await
            .map_err(|e| ToolError::NotConfirmed(format!("no confirmation from the user ({e}); nothing was paused")))?;
        let confirmed = answer.action == ElicitationAction::Accept
            && answer.content.as_ref().and_then(|c| c.get("confirm")).and_then(serde_json::Value::as_bool)
                == Some(true);
        if !confirmed {
            return Err(ToolError::NotConfirmed(format!(
                "the user did not confirm pausing {} scenarios; nothing was paused",
                ids.len()
            )));
        }
        Ok(())
    }

    async fn set_active(
        &self,
        call: &CallCtx,
        args: ScenarioControlArgs,
        active: bool,
    ) -> Result<Json<ScenarioControlResult>, ToolError> {
        let ids = validation::unique_ids("scenario_ids", &args.scenario_ids, MAX_SCENARIOS_PER_CALL, MAKE_ID_MAX)?;
        let reason = validation::text("reason", &args.reason, 1, REASON_MAX_CHARS)?;
        let results = control::set_scenarios_active(&call.caller(&self.app), &ids, active, &reason).await?;
        let count = |o| results.iter().filter(|r| r.outcome == o).count();
        Ok(Json(ScenarioControlResult {
            changed: count(ChangeOutcome::Changed),
            already_in_state: count(ChangeOutcome::AlreadyInState),
            failed: count(ChangeOutcome::Failed),
            results,
        }))
    }
}

#[tool_router(router = control_tools, vis = "pub(super)")]
impl BudgetServer {
    /// Deactivate Make scenarios now (POST /scenarios/{id}/stop), with a reason for the audit log. Each
    /// id must be a scenario of a connected organization (see `list_scenarios`), or nothing is done. The
    /// result says per scenario: changed, already inactive, or failed with Make's error. Reverse with
    /// `resume_scenarios`. Pausing more than a configured number at once asks the human to confirm where
    /// the client supports elicitation; without confirmation nothing is paused (error code cancelled).
    #[tool(annotations(
        title = "Pause scenarios",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = true
    ))]
    async fn pause_scenarios(
        &self,
        Parameters(args): Parameters<ScenarioControlArgs>,
        Extension(call): Extension<CallCtx>,
        peer: Peer<RoleServer>,
    ) -> Result<Json<ScenarioControlResult>, ToolError> {
        if args.scenario_ids.len() > self.app.actions.confirm_pause_over {
            self.confirm_pause(&call, &args, &peer).await?;
        }
        self.set_active(&call, args, false).await
    }

    /// Activate Make scenarios (POST /scenarios/{id}/start), with a reason for the audit log. WARNING:
    /// Make runs an interval-scheduled scenario immediately when it is activated, and that run consumes
    /// credits; the result flags such scenarios. Per scenario: changed, already active, or failed with
    /// Make's error.
    #[tool(annotations(
        title = "Resume scenarios",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = true
    ))]
    async fn resume_scenarios(
        &self,
        Parameters(args): Parameters<ScenarioControlArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<ScenarioControlResult>, ToolError> {
        self.set_active(&call, args, true).await
    }
}
