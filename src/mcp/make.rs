//! Make.com tools: connect an organization (credentials sealed at rest), sync usage, read scenarios and
//! their usage, and pause or resume scenarios in Make.

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Json;
use rmcp::model::{ElicitRequestParams, ElicitationAction, ElicitationSchema, ProgressNotificationParam};
use rmcp::service::{Peer, RequestContext};
use rmcp::{RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::Parameters;
use super::{BudgetServer, CallCtx, ToolError};
use crate::domain::ValidationError;
use crate::domain::budget::MAKE_ID_MAX;
use crate::domain::validation;
use crate::engine::connect::{self, ConnectionView, MAX_ORGS_PER_CONNECTION, NewConnection, Removed, TOKEN_MAX_CHARS};
use crate::engine::control::{self, ChangeOutcome, ScenarioChange};
use crate::engine::sync::Progress;
use crate::engine::sync_usage::{self, SyncResult};
use crate::make::AuthKind;
use crate::store::{ConsumptionRow, ScenarioFilter, ScenarioRecord, UsageRow, UsageSubject};

pub const MAX_SCENARIOS_PER_CALL: usize = 100;
pub const REASON_MAX_CHARS: usize = 500;
/// How long the human has to confirm a large pause.
const CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
const USAGE_RANGE_MAX_DAYS: i32 = 400;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectMakeArgs {
    /// Make zone of the organizations: "eu1.make.com", "eu2.make.com", "us1.make.com", "us2.make.com",
    /// "eu1.make.celonis.com", "us1.make.celonis.com", or the host (or https://host:port) of a private
    /// instance. The zone is in the Make dashboard's URL.
    #[schemars(length(min = 1, max = 200))]
    pub zone: String,
    /// "api_token" for a Make API token (Profile → API access), "oauth_access_token" for an OAuth token.
    pub auth_kind: AuthKind,
    /// The token. Write-only: stored encrypted and never shown again, in any output or log.
    #[schemars(length(min = 8, max = TOKEN_MAX_CHARS))]
    pub token: String,
    /// Make organization ids this token covers and this tenant will budget (1–20).
    #[schemars(length(min = 1, max = MAX_ORGS_PER_CONNECTION), inner(range(min = 1, max = MAKE_ID_MAX)))]
    pub organization_ids: Vec<i64>,
    /// A name for the connection; default: the zone.
    #[serde(default)]
    #[schemars(length(min = 1, max = 120))]
    pub label: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionView>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionRef {
    /// Connection id from `list_make_connections`.
    #[schemars(length(min = 36, max = 36))]
    pub id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncArgs {
    /// Sync only this organization; default: every connected organization.
    #[serde(default)]
    #[schemars(range(min = 1, max = MAKE_ID_MAX))]
    pub organization_id: Option<i64>,
}

fn default_page() -> u32 {
    100
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListScenariosArgs {
    #[serde(default)]
    #[schemars(range(min = 1, max = MAKE_ID_MAX))]
    pub organization_id: Option<i64>,
    #[serde(default)]
    #[schemars(range(min = 1, max = MAKE_ID_MAX))]
    pub team_id: Option<i64>,
    #[serde(default)]
    #[schemars(range(min = 1, max = MAKE_ID_MAX))]
    pub folder_id: Option<i64>,
    /// Only active (scheduling on) or only inactive scenarios.
    #[serde(default)]
    pub active: Option<bool>,
    /// Only scenarios marked critical (true) or not (false).
    #[serde(default)]
    pub critical: Option<bool>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    #[schemars(range(min = 1, max = MAKE_ID_MAX))]
    pub cursor: Option<i64>,
    /// Page size, 1–500. Default 100.
    #[serde(default = "default_page")]
    #[schemars(range(min = 1, max = 500))]
    pub limit: u32,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ScenarioList {
    pub scenarios: Vec<ScenarioRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioUsageArgs {
    #[schemars(range(min = 1, max = MAKE_ID_MAX))]
    pub scenario_id: i64,
    /// First day, YYYY-MM-DD (organization time zone). Default: 30 days before `to`.
    #[serde(default)]
    #[schemars(with = "Option<String>", length(min = 10, max = 10), extend("format" = "date"))]
    pub from: Option<jiff::civil::Date>,
    /// Last day, YYYY-MM-DD. Default: today (UTC) + 1, which covers every organization time zone.
    #[serde(default)]
    #[schemars(with = "Option<String>", length(min = 10, max = 10), extend("format" = "date"))]
    pub to: Option<jiff::civil::Date>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ScenarioUsage {
    pub scenario: ScenarioRecord,
    pub from: String,
    pub to: String,
    /// Days with stored usage in the range, oldest first.
    pub days: Vec<UsageRow>,
    /// Sum over `days`, in centicredits (hundredths of a credit).
    pub total_centicredits: i64,
    /// Consumption in the organization's current reset period, if Make reported any.
    pub current_period: Option<ConsumptionRow>,
    /// When this scenario's data was last synced.
    pub synced_at: String,
}

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

#[tool_router(router = make_tools, vis = "pub(super)")]
impl BudgetServer {
    /// Connect Make organizations to this tenant (admin). Give the zone, the kind of token, the token and
    /// the organization ids it covers. Each organization is checked with Make (GET /organizations/{id})
    /// and its plan (allowance, API limit, reset dates) stored. The token is encrypted at rest and never
    /// shown again. Then call `sync_usage` to pull usage.
    #[tool(annotations(
        title = "Connect Make",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = true
    ))]
    async fn connect_make(
        &self,
        Parameters(args): Parameters<ConnectMakeArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<ConnectionView>, ToolError> {
        let new = NewConnection {
            zone: &args.zone,
            auth_kind: args.auth_kind,
            token: &args.token,
            organization_ids: &args.organization_ids,
            label: args.label.as_deref(),
        };
        let view = connect::connect(&call.caller(&self.app), new).await?;
        Ok(Json(view))
    }

    /// List this tenant's Make connections with their organizations, plan facts and last sync time.
    /// Tokens are never shown.
    #[tool(annotations(
        title = "List Make connections",
        read_only_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn list_make_connections(
        &self,
        Parameters(_): Parameters<super::params::NoArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<ConnectionList>, ToolError> {
        let conns = self.tenant(&call).connections().await?;
        Ok(Json(ConnectionList { connections: conns.into_iter().map(ConnectionView::from).collect() }))
    }

    /// Remove a Make connection (admin): its token is deleted and its organizations are no longer
    /// synced or controlled. Synced usage history is kept.
    #[tool(annotations(
        title = "Remove Make connection",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn remove_make_connection(
        &self,
        Parameters(args): Parameters<ConnectionRef>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<Removed>, ToolError> {
        let removed = connect::remove(&call.caller(&self.app), &args.id).await?;
        Ok(Json(removed))
    }

    /// Pull usage from Make for every connected organization (or one): plan facts, teams, scenarios, 30
    /// days of daily usage per organization, team and scenario, and each scenario's consumption in the
    /// current billing period. Safe to repeat: days are replaced, never added twice. Large organizations
    /// take a while (Make allows 60–1000 API calls a minute); progress is reported when the client asks.
    #[tool(annotations(
        title = "Sync usage from Make",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = true
    ))]
    async fn sync_usage(
        &self,
        Parameters(args): Parameters<SyncArgs>,
        Extension(call): Extension<CallCtx>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<SyncResult>, ToolError> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
        let (peer, token) = (ctx.peer.clone(), ctx.meta.get_progress_token());
        let forward = tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                if let Some(token) = &token {
                    let note = ProgressNotificationParam::new(token.clone(), f64::from(p.done))
                        .with_total(f64::from(p.total))
                        .with_message(p.message);
                    let _ = peer.notify_progress(note).await;
                }
            }
        });
        let report = move |p: Progress| {
            let _ = tx.send(p);
        };
        let caller = call.caller(&self.app);
        let run = sync_usage::sync_and_evaluate(&caller, args.organization_id, &report);
        let result = tokio::select! {
            r = run => r,
            _ = ctx.ct.cancelled() => {
                tracing::info!(request_id = call.request_id, "sync cancelled by the client");
                return Err(ToolError::Cancelled);
            }
        };
        drop(report);
        let _ = forward.await;
        Ok(Json(result?))
    }

    /// List Make scenarios as of the last sync (id, name, team, folder, active/paused state, schedule,
    /// critical mark), filtered by organization, team, folder, active or critical, 100 per page by
    /// default. Call `sync_usage` first for fresh data.
    #[tool(annotations(
        title = "List scenarios",
        read_only_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn list_scenarios(
        &self,
        Parameters(args): Parameters<ListScenariosArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<ScenarioList>, ToolError> {
        validation::int_range("limit", i64::from(args.limit), 1, 500)?;
        for (field, v) in [
            ("organization_id", args.organization_id),
            ("team_id", args.team_id),
            ("folder_id", args.folder_id),
            ("cursor", args.cursor),
        ] {
            if let Some(v) = v {
                validation::int_range(field, v, 1, MAKE_ID_MAX)?;
            }
        }
        let filter = ScenarioFilter {
            organization_id: args.organization_id,
            team_id: args.team_id,
            folder_id: args.folder_id,
            active: args.active,
            critical: args.critical,
        };
        let (scenarios, next_cursor) = self.tenant(&call).scenarios(&filter, args.cursor, args.limit).await?;
        Ok(Json(ScenarioList { scenarios, next_cursor }))
    }

    /// Daily usage of one scenario (credits as centicredits, operations, data transfer) between two
    /// days, from the last sync, plus its consumption in the current billing period.
    #[tool(annotations(
        title = "Scenario usage",
        read_only_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn get_scenario_usage(
        &self,
        Parameters(args): Parameters<ScenarioUsageArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<ScenarioUsage>, ToolError> {
        validation::int_range("scenario_id", args.scenario_id, 1, MAKE_ID_MAX)?;
        let today = self.now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
        let to = args.to.unwrap_or_else(|| today.tomorrow().unwrap_or(today));
        let from = args.from.unwrap_or_else(|| to.checked_sub(jiff::Span::new().days(30)).unwrap_or(to));
        if to < from {
            return Err(ValidationError::new("to", format!("must not be before from ({from})")).into());
        }
        if from.until(to).map(|s| s.get_days()).unwrap_or(i32::MAX) > USAGE_RANGE_MAX_DAYS {
            return Err(ValidationError::new(
                "from",
                format!("the range may span at most {USAGE_RANGE_MAX_DAYS} days"),
            )
            .into());
        }
        let ts = self.tenant(&call);
        let id = args.scenario_id.to_string();
        let scenario = ts
            .connected_scenarios(&[args.scenario_id])
            .await?
            .pop()
            .ok_or(ToolError::NotFound { what: "scenario", id: id.clone() })?;
        let days = ts.usage(UsageSubject::Scenario, args.scenario_id, &from.to_string(), &to.to_string()).await?;
        let current_period = ts.consumption(args.scenario_id).await?;
        Ok(Json(ScenarioUsage {
            total_centicredits: days.iter().map(|d| d.centicredits).sum(),
            synced_at: scenario.synced_at.clone(),
            scenario,
            from: from.to_string(),
            to: to.to_string(),
            days,
            current_period,
        }))
    }

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
