//! MCP sessions over HTTP, bound to the principal that opened them.
//!
//! rmcp's session manager knows sessions by id only; the id travels in the `Mcp-Session-Id` header and
//! authentication happens per request. Without a binding, another principal's valid token with a
//! session's id would read that session's notifications (`GET`), end it (`DELETE`) or be served on it
//! (`POST`). This middleware sits behind authentication and records, for every session it sees created,
//! who created it (tenant and subject). A request that presents a session id of another principal, or
//! an id that is unknown, is answered `404 Not Found` exactly as for an id that never existed (the MCP
//! transport's answer for an ended session), and reaches nothing of the session.
//!
//! It also bounds sessions per principal (`http.max_sessions_per_principal`): a new session beyond the
//! bound is closed at once and answered `429` with what to do. Bindings of sessions that rmcp ended
//! (idle expiry, `DELETE`) are dropped by [`SessionGuard::prune`], which `serve` runs every minute.
//!
//! A successful `DELETE` answers `204 No Content` (rmcp answers `202 Accepted`, which the MCP
//! specification does not prescribe for `DELETE` and which the official Python SDK reports as
//! `Session termination failed: 202`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::auth::Principal;
use crate::domain::TenantId;

/// The header that carries a session's id (MCP streamable HTTP transport).
pub const SESSION_HEADER: &str = "mcp-session-id";

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Owner {
    tenant: TenantId,
    subject: String,
}

impl Owner {
    fn of(p: &Principal) -> Self {
        Self { tenant: p.tenant_id, subject: p.subject.clone() }
    }
}

/// The bindings of live sessions to their owners, and the bound on sessions per owner.
pub struct SessionGuard {
    manager: Arc<LocalSessionManager>,
    bindings: Mutex<HashMap<String, Owner>>,
    max_per_principal: usize,
}

impl SessionGuard {
    pub fn new(manager: Arc<LocalSessionManager>, max_per_principal: usize) -> Arc<Self> {
        Arc::new(Self { manager, bindings: Mutex::default(), max_per_principal: max_per_principal.max(1) })
    }

    fn owner_of(&self, id: &str) -> Option<Owner> {
        self.bindings.lock().expect("session bindings lock").get(id).cloned()
    }

    fn forget(&self, id: &str) {
        self.bindings.lock().expect("session bindings lock").remove(id);
    }

    async fn is_live(&self, id: &str) -> bool {
        self.manager.sessions.read().await.contains_key(id)
    }

    /// Live sessions of `owner`; bindings of ended sessions are dropped on the way.
    async fn live_sessions_of(&self, owner: &Owner) -> usize {
        let ids: Vec<String> = {
            let b = self.bindings.lock().expect("session bindings lock");
            b.iter().filter(|(_, o)| *o == owner).map(|(id, _)| id.clone()).collect()
        };
        let mut live = 0;
        for id in ids {
            if self.is_live(&id).await {
                live += 1;
            } else {
                self.forget(&id);
            }
        }
        live
    }

    /// Drop the bindings of sessions rmcp has ended. Returns how many remain.
    pub async fn prune(&self) -> usize {
        let live: std::collections::HashSet<String> =
            self.manager.sessions.read().await.keys().map(|k| k.to_string()).collect();
        let mut b = self.bindings.lock().expect("session bindings lock");
        b.retain(|id, _| live.contains(id));
        b.len()
    }

    /// Prune every minute until `stop` is cancelled.
    pub async fn prune_forever(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tick.tick() => { self.prune().await; }
                () = stop.cancelled() => return,
            }
        }
    }
}

/// The answer to a session id that is unknown, ended, or another principal's: the same in every case, so
/// it tells nothing about other principals' sessions.
fn session_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"jsonrpc": "2.0", "id": null,
                           "error": {"code": -32001, "message": "Session not found: start a new session with initialize"}})),
    )
        .into_response()
}

fn too_many_sessions(limit: usize) -> Response {
    let mut resp = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32000, "message": format!(
            "this principal already has {limit} open sessions, the most allowed; end one with DELETE /mcp \
             (its Mcp-Session-Id header) or let an idle one expire (5 minutes)")}})),
    )
        .into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    resp
}

/// Axum middleware behind authentication; see the module docs.
pub async fn bind_sessions(State(guard): State<Arc<SessionGuard>>, req: Request, next: Next) -> Response {
    let Some(owner) = req.extensions().get::<Principal>().map(Owner::of) else {
        // Authentication always runs first; without a principal nothing may reach a session.
        return session_not_found();
    };
    let presented = req.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    match presented {
        Some(id) => {
            match guard.owner_of(&id) {
                Some(o) if o == owner => {}
                Some(_) => {
                    tracing::warn!(tenant = %owner.tenant, subject = owner.subject,
                                   "refused a request carrying another principal's session id");
                    return session_not_found();
                }
                None => return session_not_found(),
            }
            let delete = req.method() == Method::DELETE;
            let resp = next.run(req).await;
            if delete && resp.status().is_success() {
                guard.forget(&id);
                return StatusCode::NO_CONTENT.into_response();
            }
            if resp.status() == StatusCode::NOT_FOUND {
                // rmcp ended it (idle expiry) since it was bound.
                guard.forget(&id);
            }
            resp
        }
        None => {
            let resp = next.run(req).await;
            let created = resp.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let Some(id) = created else { return resp };
            if guard.live_sessions_of(&owner).await >= guard.max_per_principal {
                use rmcp::transport::streamable_http_server::session::SessionManager;
                let _ = guard.manager.close_session(&id.clone().into()).await;
                tracing::warn!(tenant = %owner.tenant, subject = owner.subject, limit = guard.max_per_principal,
                               "refused a session: too many open sessions for this principal");
                return too_many_sessions(guard.max_per_principal);
            }
            guard.bindings.lock().expect("session bindings lock").insert(id, owner);
            resp
        }
    }
}
