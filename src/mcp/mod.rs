//! The MCP server: tool routing, the central RBAC guard, and server metadata.
//!
//! Every `tools/call` passes through [`BudgetServer::call_tool`]: it resolves the principal from the
//! transport (never from arguments), checks the tool's permission in [`crate::auth::TOOL_PERMISSIONS`]
//! (auditing denials), and only then hands the call to the tool, with a [`CallCtx`] in the request
//! extensions. Tools are plain async methods grouped by subject (`identity`, `budgets`).
//!
//! Resources, prompts, completion and logging live in `resources`, `prompts` and `logging`; they take the
//! principal the same way and check the permission of the tool that shows the same data.
#![allow(deprecated)] // logging/setLevel and resources/subscribe are legacy-only in MCP 2026-07-28.

mod actions;
mod audit;
mod budgets;
pub mod error;
mod identity;
pub mod jsonrpc;
mod logging;
mod make;
pub mod params;
mod prompts;
mod resources;
pub mod schema;
mod status;
pub mod stdio;

use std::sync::Arc;
use std::time::Instant;

use rmcp::handler::server::prompt::PromptContext;
use rmcp::handler::server::router::prompt::PromptRouter;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    GetPromptRequestParams, GetPromptResponse, Implementation, IntoContents, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig, SetLevelRequestParams, SubscribeRequestParams,
    UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool_handler};
use serde::Serialize;

use crate::app::App;
use crate::audit::{Actor, AuditEntry, Outcome, redact};
use crate::auth::{Principal, authorize, tool_permission};
use crate::limits::ToolClass;
use crate::store::TenantStore;
pub use error::ToolError;

const INSTRUCTIONS: &str = "make-budget-mcp keeps Make.com (make.com) credit spend under budget. \
Call `whoami` first: it shows your tenant, role and permissions. \
Budgets: `create_budget`, `list_budgets`, `get_budget`, `update_budget`, `delete_budget`. \
How a budget stands: `get_budget_status` (spent, forecast with intervals, thresholds, data freshness; \
`chart: true` adds a PNG), `get_budget_chart`, `get_budget_history`, `forecast_spend`. \
Thresholds: `add_threshold`, `update_threshold`, `remove_threshold`, `list_thresholds`. \
Make.com data: an admin connects an organization with `connect_make`; `sync_usage` pulls usage from Make; \
`list_scenarios` and `get_scenario_usage` read what was synced; `pause_scenarios` / `resume_scenarios` \
deactivate or activate scenarios in Make (with a reason; audited). \
Automated actions: `add_threshold_action` attaches `notify` (webhooks, see `add_webhook`) or `pause_scenarios` \
(selector non_critical, top_n or all; automatic or requires_approval) to a threshold; `set_scenario_critical` \
protects a scenario; `preview_action` is a dry run; crossings create plans: `list_actions`, `get_action`, \
`approve_action` (by someone other than the requester), `reject_action`, `reverse_action`. \
Audit (role auditor or admin): `query_audit_log` searches the tamper-evident log, `verify_audit_chain` checks \
it, `create_audit_checkpoint` signs its head. \
Limits are integers in the budget's unit (credits or operations). \
To change a budget, read it, then call `update_budget` with the `version` you read; a `conflict` error means \
someone changed it in between: read it again and retry. \
Errors begin with a code (invalid_argument, not_found, conflict, permission_denied, make_error, unavailable, internal) followed by what \
to do about it.";

/// What a tool knows about the call it is serving; inserted by the guard.
#[derive(Debug, Clone)]
pub struct CallCtx {
    pub principal: Principal,
    /// Correlation id: in the log, in audit records and in internal error messages.
    pub request_id: String,
    pub tool: String,
}

impl CallCtx {
    /// The audit entry for a successful mutation by this call.
    pub fn audit(&self, target: String, before: Option<&impl Serialize>, after: Option<&impl Serialize>) -> AuditEntry {
        AuditEntry {
            actor: Actor::from(&self.principal),
            action: self.tool.clone(),
            target,
            outcome: Outcome::Success,
            reason: None,
            request_id: self.request_id.clone(),
            before: before.map(snapshot),
            after: after.map(snapshot),
        }
    }

    pub fn store_err<'a>(
        &'a self,
        what: &'static str,
        id: &'a str,
    ) -> impl FnOnce(crate::store::StoreError) -> ToolError + 'a {
        move |e| ToolError::from_store(&self.request_id, what, id, e)
    }

    pub fn internal(&self) -> impl FnOnce(crate::store::StoreError) -> ToolError + '_ {
        move |e| ToolError::internal(&self.request_id, &e)
    }
}

/// The redacted JSON form of a before/after state (plain data, so serialising cannot fail).
fn snapshot<T: Serialize>(v: &T) -> serde_json::Value {
    redact(serde_json::to_value(v).expect("audit snapshots serialise to JSON"))
}

/// The MCP server handler. One is created per stdio connection, per HTTP session or per stateless HTTP
/// request; all share the store and the (prebuilt) tool router.
#[derive(Clone)]
pub struct BudgetServer {
    app: Arc<App>,
    tool_router: Arc<ToolRouter<BudgetServer>>,
    /// The stdio principal (the local operator). `None` over HTTP, where each request carries its own.
    local_principal: Option<Principal>,
    prompt_router: Arc<PromptRouter<BudgetServer>>,
    /// This session's log level and resource subscriptions (shared by the handler's clones).
    session: Arc<Session>,
}

/// What one MCP session (a stdio connection or an HTTP session) chose: its log level and subscriptions.
#[derive(Debug, Default)]
struct Session {
    log: logging::SessionLog,
    subscriptions: Arc<resources::Subscriptions>,
}

impl BudgetServer {
    /// All tools this server offers.
    pub fn router() -> ToolRouter<BudgetServer> {
        let mut router = Self::identity_tools()
            + Self::budget_tools()
            + Self::make_tools()
            + Self::status_tools()
            + Self::action_tools()
            + Self::audit_tools();
        // Schemas as strict validators read them (see `schema`): no references, standard formats only.
        for route in router.map.values_mut() {
            route.attr.input_schema = Arc::new(schema::tidy_input(&route.attr.input_schema));
            if let Some(out) = route.attr.output_schema.take() {
                route.attr.output_schema = Some(Arc::new(schema::tidy_output(&out)));
            }
        }
        router
    }

    /// The tools served: all of them, or in read-only mode only those annotated `readOnlyHint: true`.
    pub fn router_for(read_only: bool) -> ToolRouter<BudgetServer> {
        let mut router = Self::router();
        if read_only {
            for tool in router.list_all() {
                if tool.annotations.as_ref().and_then(|a| a.read_only_hint) != Some(true) {
                    router.remove_route(&tool.name);
                }
            }
        }
        router
    }

    pub fn new(app: Arc<App>, tool_router: Arc<ToolRouter<BudgetServer>>, local_principal: Option<Principal>) -> Self {
        let prompt_router = Arc::new(Self::prompts());
        Self { app, tool_router, local_principal, prompt_router, session: Arc::default() }
    }

    fn tenant(&self, call: &CallCtx) -> TenantStore<'_> {
        self.app.store.tenant(call.principal.tenant_id)
    }

    fn now(&self) -> jiff::Timestamp {
        self.app.store.clock().now()
    }

    /// Over HTTP the authentication middleware put the principal into the request parts; over stdio it
    /// is the configured local operator. HTTP requests never fall back to the local operator.
    fn principal(&self, context: &RequestContext<RoleServer>) -> Option<Principal> {
        match context.extensions.get::<http::request::Parts>() {
            Some(parts) => parts.extensions.get::<Principal>().cloned(),
            None => self.local_principal.clone(),
        }
    }

    /// The HTTP request's id (from the `x-request-id` middleware), or a new one over stdio.
    fn request_id(context: &RequestContext<RoleServer>) -> String {
        context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<crate::auth::RequestId>())
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), |id| id.0.clone())
    }

    /// Record a denied call: in the audit log while the principal's denial allowance lasts (see
    /// [`crate::limits::DenialAudits`]), else counted for the next `denials_suppressed` summary.
    async fn deny(&self, principal: &Principal, tool: &str, request_id: &str, reason: String) {
        let who = (principal.tenant_id, principal.subject.clone());
        let now = self.now();
        if !self.app.policy.denials.admit(&who, principal.role.as_str(), principal.transport.as_str(), tool, now) {
            return;
        }
        let entry = AuditEntry {
            actor: Actor::from(principal),
            action: tool.to_owned(),
            target: format!("tool:{tool}"),
            outcome: Outcome::Denied,
            reason: Some(reason),
            request_id: request_id.to_owned(),
            before: None,
            after: None,
        };
        if let Err(e) = self.app.store.tenant(principal.tenant_id).record(entry).await {
            tracing::error!(request_id, error = %e, "could not audit a denied call");
        }
    }
}

/// Write one `denials_suppressed` record per principal whose denials were counted instead of audited
/// since the last call. Returns how many records were written.
pub async fn record_suppressed_denials(app: &App) -> usize {
    let mut written = 0;
    for ((tenant, subject), s) in app.policy.denials.take_suppressed() {
        let tools: Vec<String> = s.tools.iter().map(|(t, n)| format!("{t} ×{n}")).collect();
        let entry = AuditEntry {
            actor: Actor { subject: subject.clone(), role: s.role.clone(), transport: s.transport.clone() },
            action: "denials_suppressed".into(),
            target: format!("principal:{subject}"),
            outcome: Outcome::Denied,
            reason: Some(format!(
                "{} denied calls between {} and {} were not recorded one by one (over the principal's \
                 hourly allowance of denial records): {}",
                s.count,
                crate::domain::clock::format_timestamp(s.first_at),
                crate::domain::clock::format_timestamp(s.last_at),
                tools.join(", ")
            )),
            request_id: uuid::Uuid::now_v7().to_string(),
            before: None,
            after: Some(serde_json::json!({
                "count": s.count,
                "tools": s.tools,
                "first_at": crate::domain::clock::format_timestamp(s.first_at),
                "last_at": crate::domain::clock::format_timestamp(s.last_at),
            })),
        };
        match app.store.tenant(tenant).record(entry).await {
            Ok(_) => written += 1,
            Err(e) => tracing::error!(error = %e, subject, "could not audit a summary of denied calls"),
        }
    }
    written
}

/// Write the summaries of unrecorded denials every `summary_every`, and once more at shutdown.
pub async fn record_suppressed_denials_forever(app: Arc<App>, shutdown: tokio_util::sync::CancellationToken) {
    let every = app.policy.denials.summary_every;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = tick.tick() => { record_suppressed_denials(&app).await; }
            () = shutdown.cancelled() => {
                record_suppressed_denials(&app).await;
                return;
            }
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for BudgetServer {
    fn get_info(&self) -> ServerConfig {
        #[allow(deprecated)] // logging: deprecated by SEP-2577 (2026-07-28), still served to older peers
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_tools()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(
                Implementation::new("make-budget-mcp", env!("CARGO_PKG_VERSION")).with_title("Make.com budget control"),
            )
            .with_instructions(INSTRUCTIONS)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let started = Instant::now();
        let request_id = Self::request_id(&context);
        let tool = request.name.to_string();
        let Some(principal) = self.principal(&context) else {
            tracing::error!(request_id, tool, "tool call without a principal");
            return Err(ErrorData::internal_error(format!("no principal (correlation id {request_id})"), None));
        };
        if !self.tool_router.has_route(&tool) {
            // Unknown, or not served in read-only mode: nothing to authorize, count or audit.
            return Err(ErrorData::invalid_params(format!("tool not found: {tool}"), None));
        }
        let needed = match tool_permission(&tool) {
            Ok(p) => p,
            Err(e) => {
                // A served tool missing from the permission table is a bug: refuse rather than run unguarded.
                return Ok(CallToolResult::error(ToolError::internal(&request_id, &e).into_contents()).into());
            }
        };
        let read_only = self.tool_router.get(&tool).and_then(|t| t.annotations.as_ref()).and_then(|a| a.read_only_hint)
            == Some(true);
        let class = ToolClass::of(read_only, needed);
        // A call is admitted against its class's allowance whether or not it is then allowed: denials
        // count too, so the lowest role cannot make unlimited calls by making forbidden ones.
        let admitted = self.app.policy.limits.admit(principal.tenant_id, class);
        if let (Err(denied), Ok(())) = (authorize(&principal, needed), &admitted) {
            tracing::warn!(request_id, tool, subject = principal.subject, tenant = %principal.tenant_id,
                           permission = %denied.permission, "permission denied");
            self.deny(&principal, &tool, &request_id, denied.to_string()).await;
            crate::monitoring::tool_call(&tool, "denied", started.elapsed());
            self.log_to_client(&context.peer, &tool, &request_id, "permission_denied").await;
            return Ok(CallToolResult::error(ToolError::Denied(denied).into_contents()).into());
        }
        if let Err(limited) = admitted {
            tracing::warn!(request_id, tool, subject = principal.subject, tenant = %principal.tenant_id,
                           class = class.as_str(), retry_after_s = crate::limits::retry_after_secs(limited.retry_after),
                           "rate limited");
            crate::monitoring::rate_limited(class.as_str());
            crate::monitoring::tool_call(&tool, "rate_limited", started.elapsed());
            self.log_to_client(&context.peer, &tool, &request_id, "rate_limited").await;
            return Ok(CallToolResult::error(ToolError::RateLimited(limited).into_contents()).into());
        }
        let (subject, tenant, peer) = (principal.subject.clone(), principal.tenant_id, context.peer.clone());
        context.extensions.insert(CallCtx { principal, request_id: request_id.clone(), tool: tool.clone() });
        let call = self.tool_router.call(ToolCallContext::new(self, request, context));
        let result = if class == ToolClass::Read {
            let limit = self.app.policy.read_tool_timeout;
            tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
                tracing::warn!(request_id, tool, limit_s = limit.as_secs(), "read tool call timed out");
                let e = ToolError::Unavailable(format!(
                    "the call took longer than {} s and was stopped; narrow it (fewer days, one budget) or retry later",
                    limit.as_secs()
                ));
                Ok(CallToolResult::error(e.into_contents()).into())
            })
        } else {
            call.await
        };
        let is_error = match &result {
            Ok(CallToolResponse::Complete(r)) => r.is_error.unwrap_or(false),
            Ok(_) => false,
            Err(_) => true,
        };
        crate::monitoring::tool_call(&tool, if is_error { "error" } else { "ok" }, started.elapsed());
        tracing::info!(request_id, tool, subject, tenant = %tenant, is_error,
                       elapsed_ms = started.elapsed().as_millis() as u64, "tool call");
        self.log_to_client(&peer, &tool, &request_id, if is_error { "error" } else { "ok" }).await;
        result
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.list_budget_resources(request.and_then(|r| r.cursor), &context).await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(Self::budget_templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        Ok(self.read_uri(&request.uri, &context).await?.into())
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscribe_uri(request.uri, &context).await
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.unsubscribe_uri(request.uri, &context).await
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(self.prompt_router.list_all()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let call =
            self.guard(&context, &format!("prompts/get:{}", params::echo(&request.name)), "get_budget_status").await?;
        context.extensions.insert(call);
        self.prompt_router.get_prompt(PromptContext::new(self, request.name, request.arguments, context)).await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        self.complete_ref(&request.r#ref, &request.argument.name, &request.argument.value, &context).await
    }

    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.session.log.set(request.level);
        Ok(())
    }
}

impl BudgetServer {
    /// Tell this session's client how its tool call ended, if its log level asks for it.
    async fn log_to_client(&self, peer: &rmcp::Peer<RoleServer>, tool: &str, request_id: &str, outcome: &str) {
        let (level, data) = logging::tool_outcome(tool, request_id, outcome);
        self.session.log.send(peer, level, data).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TOOL_PERMISSIONS;

    #[test]
    fn every_served_tool_has_a_permission_entry_and_vice_versa() {
        let served: Vec<String> = BudgetServer::router().list_all().into_iter().map(|t| t.name.to_string()).collect();
        for name in &served {
            assert!(tool_permission(name).is_ok(), "tool {name} is served but has no permission entry");
        }
        for (name, _) in TOOL_PERMISSIONS {
            assert!(served.iter().any(|s| s == name), "permission entry {name} has no tool");
        }
    }

    #[test]
    fn read_only_mode_serves_exactly_the_read_tools() {
        let all = BudgetServer::router().list_all();
        let served: Vec<String> =
            BudgetServer::router_for(true).list_all().into_iter().map(|t| t.name.to_string()).collect();
        for tool in &all {
            let read = tool.annotations.as_ref().and_then(|a| a.read_only_hint) == Some(true);
            assert_eq!(served.contains(&tool.name.to_string()), read, "{}", tool.name);
        }
        assert!(served.contains(&"get_budget_status".to_owned()) && !served.contains(&"update_budget".to_owned()));
    }

    #[test]
    fn every_tool_is_described_bounded_and_annotated() {
        for tool in BudgetServer::router().list_all() {
            let name = tool.name.to_string();
            let desc = tool.description.as_deref().unwrap_or("");
            assert!(desc.len() >= 40, "{name}: description too thin for an agent: {desc:?}");
            let a = tool.annotations.as_ref().unwrap_or_else(|| panic!("{name}: no annotations"));
            assert!(a.read_only_hint.is_some() && a.open_world_hint.is_some(), "{name}: annotations incomplete");
            if a.read_only_hint == Some(false) {
                assert!(a.destructive_hint.is_some() && a.idempotent_hint.is_some(), "{name}: mutation hints missing");
            }
            let output = tool.output_schema.as_ref().unwrap_or_else(|| panic!("{name}: no outputSchema"));
            assert_eq!(output["type"], "object", "{name}: structured results must be objects");
            assert_eq!(schema::lint_output(output), Vec::<String>::new(), "{name}: outputSchema");
            let schema = serde_json::Value::Object((*tool.input_schema).clone());
            assert_eq!(schema["type"], "object", "{name}");
            assert_eq!(schema["additionalProperties"], false, "{name}: unknown fields must be refused");
            assert_eq!(schema::lint_input(&tool.input_schema), Vec::<String>::new(), "{name}: inputSchema");
        }
    }
}
