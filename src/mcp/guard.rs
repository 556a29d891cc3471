//! The one guard every MCP request passes: tool calls, resource reads and subscriptions, prompts and
//! completions.
//!
//! It resolves the principal from the transport (never from arguments), admits the request against the
//! tenant's allowance for its class (denied or not, so forbidden calls are not free), checks the permission
//! of the tool in `auth::TOOL_PERMISSIONS` (a resource or prompt names the tool that shows the same data)
//! and then the permissions its arguments call for (`auth::ARGUMENT_RULES`). Denials are logged and
//! audited here, and so are the denials a use case finds in stored data (see `error::scope`), once the
//! request is over.

use rmcp::RoleServer;
use rmcp::service::RequestContext;

use super::BudgetServer;
use super::error::ToolError;
use crate::app::App;
use crate::audit::{Actor, AuditEntry, Outcome, Target};
use crate::auth::{Principal, RequestId, argument_denial, authorize, tool_permission};
use crate::engine::Caller;
use crate::limits::{RateLimited, ToolClass};

/// What a request knows about itself once admitted; tools receive it in the request extensions.
#[derive(Debug, Clone)]
pub struct CallCtx {
    pub principal: Principal,
    /// Correlation id: in the log, in audit records and in internal error messages.
    pub request_id: String,
    /// The tool, or the request's method (`resources/read`), as audit records name it.
    pub tool: String,
}

impl CallCtx {
    /// The caller the use cases act for.
    pub fn caller<'a>(&'a self, app: &'a App) -> Caller<'a> {
        Caller::principal(app, &self.principal, &self.request_id, &self.tool)
    }
}

/// Why a request was not admitted.
#[derive(Debug)]
pub enum Refusal {
    /// The transport brought no principal: a bug, never the caller's fault.
    NoPrincipal,
    /// The permission table or an argument rule refused it (already audited).
    Denied(ToolError),
    RateLimited(RateLimited),
}

impl Refusal {
    pub fn into_error(self, request_id: &str) -> ToolError {
        match self {
            Refusal::NoPrincipal => ToolError::Internal { correlation_id: request_id.to_owned() },
            Refusal::Denied(e) => e,
            Refusal::RateLimited(l) => ToolError::RateLimited(l),
        }
    }
}

/// What a request asks to be admitted for.
pub struct Ask<'a> {
    /// The name audit records and logs give it: a tool, or `resources/read`.
    pub what: &'a str,
    /// The tool whose permission it needs.
    pub as_tool: &'a str,
    pub class: ToolClass,
    /// A tool call's arguments, for the argument rules.
    pub arguments: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl BudgetServer {
    /// Over HTTP the authentication middleware put the principal into the request parts; over stdio it
    /// is the configured local operator. HTTP requests never fall back to the local operator.
    pub(super) fn principal(&self, context: &RequestContext<RoleServer>) -> Option<Principal> {
        match context.extensions.get::<http::request::Parts>() {
            Some(parts) => parts.extensions.get::<Principal>().cloned(),
            None => self.local_principal.clone(),
        }
    }

    /// The request's id: the HTTP request's (from the `x-request-id` middleware), or a new one over
    /// stdio. Stamped into the context's extensions, so every later reading of this request gets the same.
    pub(super) fn stamp(context: &mut RequestContext<RoleServer>) -> String {
        if let Some(id) = context.extensions.get::<RequestId>() {
            return id.0.clone();
        }
        let id = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<RequestId>())
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), |id| id.0.clone());
        context.extensions.insert(RequestId(id.clone()));
        id
    }

    /// The id [`Self::stamp`] gave this request.
    pub(super) fn request_id(context: &RequestContext<RoleServer>) -> String {
        context.extensions.get::<RequestId>().map_or_else(super::error::scope::request_id, |id| id.0.clone())
    }

    /// Admit a request that is not a tool call (resources, prompts, completion): a read, with the
    /// permission of the tool `as_tool` that shows the same data.
    pub(super) async fn guard(
        &self,
        context: &RequestContext<RoleServer>,
        what: &str,
        as_tool: &str,
    ) -> Result<CallCtx, rmcp::ErrorData> {
        let request_id = Self::request_id(context);
        let ask = Ask { what, as_tool, class: ToolClass::Read, arguments: None };
        self.admit(context, &request_id, ask).await.map_err(|refusal| match refusal {
            Refusal::NoPrincipal => {
                rmcp::ErrorData::internal_error(format!("no principal (correlation id {request_id})"), None)
            }
            other => super::error::protocol_error(other.into_error(&request_id)),
        })
    }

    /// Admit a request, or refuse it (auditing a denial).
    pub(super) async fn admit(
        &self,
        context: &RequestContext<RoleServer>,
        request_id: &str,
        ask: Ask<'_>,
    ) -> Result<CallCtx, Refusal> {
        let Some(principal) = self.principal(context) else {
            tracing::error!(request_id, what = ask.what, "request without a principal");
            return Err(Refusal::NoPrincipal);
        };
        let needed = match tool_permission(ask.as_tool) {
            Ok(p) => p,
            // A served tool missing from the permission table is a bug: refuse rather than run unguarded.
            Err(e) => return Err(Refusal::Denied(ToolError::Internal { correlation_id: log_bug(request_id, &e) })),
        };
        // Admitted against the class's allowance whether or not it is then allowed: denials count too, so
        // the lowest role cannot make unlimited calls by making forbidden ones.
        if let Err(limited) = self.app.policy.limits.admit(principal.tenant_id, ask.class) {
            tracing::warn!(request_id, what = ask.what, subject = principal.subject, tenant = %principal.tenant_id,
                           class = ask.class.as_str(), retry_after_s = crate::limits::retry_after_secs(limited.retry_after),
                           "rate limited");
            crate::monitoring::rate_limited(ask.class.as_str());
            return Err(Refusal::RateLimited(limited));
        }
        if let Err(denied) = authorize(&principal, needed) {
            tracing::warn!(request_id, what = ask.what, subject = principal.subject, tenant = %principal.tenant_id,
                           permission = %denied.permission, "permission denied");
            self.deny(&principal, ask.what, request_id, denied.to_string()).await;
            return Err(Refusal::Denied(ToolError::Denied(denied)));
        }
        if let Some((denied, why)) = argument_denial(&principal, ask.as_tool, ask.arguments) {
            tracing::warn!(request_id, what = ask.what, subject = principal.subject, tenant = %principal.tenant_id,
                           permission = %denied.permission, why, "permission denied");
            self.deny(&principal, ask.what, request_id, format!("{denied} ({why})")).await;
            return Err(Refusal::Denied(ToolError::Forbidden(format!("{denied}: {why}"))));
        }
        Ok(CallCtx { principal, request_id: request_id.to_owned(), tool: ask.what.to_owned() })
    }

    /// Audit a denial a use case made while serving `call` (found in the request's scope).
    pub(super) async fn deny_after(&self, call: &CallCtx, reason: Option<String>) {
        if let Some(reason) = reason {
            tracing::warn!(
                request_id = call.request_id,
                what = call.tool,
                subject = call.principal.subject,
                reason,
                "permission denied"
            );
            self.deny(&call.principal, &call.tool, &call.request_id, reason).await;
        }
    }

    /// Record a denied request: in the audit log while the principal's denial allowance lasts (see
    /// [`crate::limits::DenialAudits`]), else counted for the next `denials_suppressed` summary.
    async fn deny(&self, principal: &Principal, what: &str, request_id: &str, reason: String) {
        let who = (principal.tenant_id, principal.subject.clone());
        let now = self.app.store.clock().now();
        if !self.app.policy.denials.admit(&who, principal.role.as_str(), principal.transport.as_str(), what, now) {
            return;
        }
        let entry = AuditEntry {
            actor: Actor::from(principal),
            action: what.to_owned(),
            target: Target::Tool(what.to_owned()).to_string(),
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

fn log_bug(request_id: &str, e: &dyn std::fmt::Display) -> String {
    tracing::error!(request_id, error = %e, "request failed");
    request_id.to_owned()
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
            target: Target::Principal(subject.clone()).to_string(),
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
pub async fn record_suppressed_denials_forever(
    app: std::sync::Arc<App>,
    shutdown: tokio_util::sync::CancellationToken,
) {
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
