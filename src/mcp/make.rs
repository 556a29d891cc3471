//! Make.com tools: connect an organization (credentials sealed at rest), sync usage, read scenarios and
//! their usage. Pausing and resuming scenarios by hand is `control.rs`.

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Json;
use rmcp::model::ProgressNotificationParam;
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::Parameters;
use super::{BudgetServer, CallCtx, ToolError};
use crate::domain::ValidationError;
use crate::domain::budget::MAKE_ID_MAX;
use crate::domain::validation;
use crate::engine::connect::{self, ConnectionView, MAX_ORGS_PER_CONNECTION, NewConnection, Removed, TOKEN_MAX_CHARS};
use crate::engine::sync::Progress;
use crate::engine::sync_usage::{self, SyncResult};
use crate::make::AuthKind;
use crate::store::{ConsumptionRow, ScenarioFilter, ScenarioRecord, UsageRow, UsageSubject};

pub const MAX_SCENARIOS_PER_CALL: usize = 100;
pub const REASON_MAX_CHARS: usize = 500;
const USAGE_RANGE_MAX_DAYS: i32 = 400;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectMakeArgs {
    /// Make zone, as in the dashboard's URL: e.g. "eu1.make.com", "us2.make.com", "eu1.make.celonis.com",
    /// or a private instance's host.
    #[schemars(length(min = 1, max = 200))]
    pub zone: String,
    /// "api_token" (Profile → API access) or "oauth_access_token".
    pub auth_kind: AuthKind,
    /// The token; stored encrypted, never shown again.
    #[schemars(length(min = 8, max = TOKEN_MAX_CHARS))]
    pub token: String,
    /// Make organization ids to budget (1–20).
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
    /// First day, YYYY-MM-DD. Default: 30 days before `to`.
    #[serde(default)]
    #[schemars(with = "Option<String>", length(min = 10, max = 10), extend("format" = "date"))]
    pub from: Option<jiff::civil::Date>,
    /// Last day, YYYY-MM-DD. Default: tomorrow (UTC).
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

#[tool_router(router = make_tools, vis = "pub(super)")]
impl BudgetServer {
    /// Connect Make organizations to this tenant (admin): each is checked with Make and its plan stored;
    /// the token is encrypted and never shown again. Then call `sync_usage`.
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

    /// Pull usage from Make for every connected organization (or one): plans, teams, scenarios and daily
    /// usage. Safe to repeat. Large organizations take a while; progress is reported if asked for.
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

    /// List Make scenarios as of the last sync (state, schedule, critical mark), with filters and pages.
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

    /// Daily usage of one scenario between two days, from the last sync, and its consumption this
    /// billing period.
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
}
