//! MCP resources: one per budget of the caller's tenant (`budget://<id>`: the budget and its current
//! status, exactly as `get_budget_status` computes it), a template for them, and the tenant's audit
//! chain head (`audit://head`).
//!
//! The tenant comes from the principal the transport established, never from the URI, and each read
//! needs the permission of the tool that shows the same data (`get_budget_status`, `query_audit_log`),
//! so resources open no way around the RBAC table. A budget of another tenant, an id that is not a UUID
//! and a deleted budget all answer the same `resource not found`.
//!
//! Subscriptions (`resources/subscribe`) are per session. A watcher task per subscribed session follows
//! the store's change bus and sends `notifications/resources/updated` for subscribed budgets of the
//! session's tenant. Any URI may be subscribed: refusing unknown ones would tell a caller which budget
//! ids exist in other tenants, and a URI that never changes simply never notifies. URIs are at most
//! [`MAX_URI_BYTES`] long and a session holds at most [`MAX_SUBSCRIPTIONS`] of them, so subscriptions
//! cannot grow the server's memory without bound.
#![allow(deprecated)] // resources/subscribe is legacy-only in 2026-07-28 but served to older peers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
    ResourceUpdatedNotificationParam,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Peer, RoleServer};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::error::protocol_error;
use super::{BudgetServer, CallCtx, ToolError};
use crate::auth::{authorize, tool_permission};
use crate::domain::TenantId;

pub const BUDGET_SCHEME: &str = "budget://";
pub const BUDGET_TEMPLATE: &str = "budget://{id}";
pub const AUDIT_HEAD: &str = "audit://head";
/// Budgets per `resources/list` page.
pub const PAGE: u32 = 50;
/// Longest URI a request may name (ours are under 50 bytes).
pub const MAX_URI_BYTES: usize = 512;
/// Subscriptions one session may hold.
pub const MAX_SUBSCRIPTIONS: usize = 100;

pub fn budget_uri(id: &str) -> String {
    format!("{BUDGET_SCHEME}{id}")
}

/// The resource URIs a session subscribed to, with the tenant they were subscribed under.
#[derive(Debug, Default)]
pub struct Subscriptions {
    uris: Mutex<HashSet<(TenantId, String)>>,
    /// Set once the session's watcher task runs.
    watching: Mutex<bool>,
}

impl Subscriptions {
    fn contains(&self, tenant: TenantId, uri: &str) -> bool {
        self.uris.lock().expect("subscriptions lock").contains(&(tenant, uri.to_owned()))
    }
}

/// Follow the change bus for one session until the session or its transport is gone.
async fn watch(app: Arc<crate::app::App>, subs: Weak<Subscriptions>, peer: Peer<RoleServer>) {
    let mut rx = app.store.changes().subscribe();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(15));
    loop {
        let changed = tokio::select! {
            r = rx.recv() => r,
            _ = tick.tick() => {
                if peer.is_transport_closed() || subs.strong_count() == 0 { return; }
                continue;
            }
        };
        let Some(subs) = subs.upgrade() else { return };
        match changed {
            Ok(c) => {
                let uri = budget_uri(&c.budget_id);
                if subs.contains(c.tenant_id, &uri)
                    && peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri)).await.is_err()
                {
                    return; // the client is gone
                }
            }
            Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "resource watcher fell behind the change bus"),
            Err(RecvError::Closed) => return,
        }
    }
}

impl BudgetServer {
    pub(super) async fn list_budget_resources(
        &self,
        cursor: Option<String>,
        context: &RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let call = self.guard(context, "resources/list", "list_budgets").await?;
        let after = match cursor.as_deref() {
            Some(c) => Some(c.parse().map_err(|_| {
                ErrorData::invalid_params("cursor: must be a nextCursor returned by resources/list", None)
            })?),
            None => None,
        };
        let page = self.budget_page(&call, after, PAGE).await?;
        let mut resources = Vec::new();
        if cursor.is_none() && authorize(&call.principal, tool_permission("query_audit_log").ok().flatten()).is_ok() {
            resources.push(
                Resource::new(AUDIT_HEAD, "audit-head")
                    .with_title("Audit chain head")
                    .with_description("The tenant's audit chain head: sequence number, hash, latest signed checkpoint")
                    .with_mime_type("application/json"),
            );
        }
        resources.extend(page.budgets.iter().map(|b| {
            Resource::new(budget_uri(&b.id), b.spec.name.as_str())
                .with_title(format!("Budget {}", b.spec.name))
                .with_description("The budget and its current period status (spent, forecast, thresholds)")
                .with_mime_type("application/json")
        }));
        let mut result = ListResourcesResult::with_all_items(resources);
        result.next_cursor = page.next_cursor;
        Ok(result)
    }

    pub(super) fn budget_templates() -> ListResourceTemplatesResult {
        ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(BUDGET_TEMPLATE, "budget")
                .with_title("Budget and status")
                .with_description(
                    "A budget of your tenant by id (from list_budgets; completion suggests ids): the budget and \
                     its current period status as get_budget_status computes it",
                )
                .with_mime_type("application/json"),
        ])
    }

    pub(super) async fn read_uri(
        &self,
        uri: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<ReadResourceResult, ErrorData> {
        check_uri(uri)?;
        let body = if let Some(id) = uri.strip_prefix(BUDGET_SCHEME) {
            let call = self.guard(context, "resources/read", "get_budget_status").await?;
            let budget = self.budget_of(&call, id, "uri").await.map_err(|e| match e {
                // A malformed id is as unknown as a missing one.
                ToolError::Invalid(_) => not_found(uri),
                other => protocol_error(other),
            })?;
            let status = self.status_of(&call, &budget).await?;
            json!({"budget": budget, "status": status.status})
        } else if uri == AUDIT_HEAD {
            let call = self.guard(context, "resources/read", "query_audit_log").await?;
            self.audit_head(&call).await?
        } else {
            return Err(not_found(uri));
        };
        let text = serde_json::to_string_pretty(&body).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(ReadResourceResult::new(vec![ResourceContents::text(text, uri).with_mime_type("application/json")]))
    }

    async fn audit_head(&self, call: &CallCtx) -> Result<serde_json::Value, ToolError> {
        let ts = self.tenant(call);
        let (seq, head) = ts.audit_head().await?;
        let checkpoint = ts.latest_checkpoint().await?;
        Ok(json!({
            "seq": seq,
            "hash": head.as_ref().map(|r| r.hash.clone()),
            "at": head.as_ref().map(|r| r.at.clone()),
            "latest_checkpoint": checkpoint,
        }))
    }

    /// Record a subscription and make sure this session's watcher runs.
    pub(super) async fn subscribe_uri(
        &self,
        uri: String,
        context: &RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let call = self.guard(context, "resources/subscribe", "list_budgets").await?;
        check_uri(&uri)?;
        {
            let mut uris = self.session.subscriptions.uris.lock().expect("subscriptions lock");
            let key = (call.principal.tenant_id, uri);
            if !uris.contains(&key) && uris.len() >= MAX_SUBSCRIPTIONS {
                return Err(ErrorData::invalid_request(
                    format!(
                        "invalid_argument: a session may hold at most {MAX_SUBSCRIPTIONS} subscriptions; \
                         unsubscribe from one first (resources/unsubscribe)"
                    ),
                    None,
                ));
            }
            uris.insert(key);
        }
        let start = {
            let mut watching = self.session.subscriptions.watching.lock().expect("subscriptions lock");
            !std::mem::replace(&mut *watching, true)
        };
        if start {
            let subs = Arc::downgrade(&self.session.subscriptions);
            tokio::spawn(watch(self.app.clone(), subs, context.peer.clone()));
        }
        Ok(())
    }

    pub(super) async fn unsubscribe_uri(
        &self,
        uri: String,
        context: &RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let call = self.guard(context, "resources/unsubscribe", "list_budgets").await?;
        check_uri(&uri)?;
        self.session.subscriptions.uris.lock().expect("subscriptions lock").remove(&(call.principal.tenant_id, uri));
        Ok(())
    }
}

fn not_found(uri: &str) -> ErrorData {
    let uri = super::params::echo(uri);
    ErrorData::resource_not_found(format!("not_found: resource {uri} not found"), Some(json!({"uri": uri})))
}

/// Refuse URIs longer than any resource of this server could be.
fn check_uri(uri: &str) -> Result<(), ErrorData> {
    if uri.len() > MAX_URI_BYTES {
        return Err(ErrorData::invalid_params(
            format!("invalid_argument: `uri` must be at most {MAX_URI_BYTES} bytes (got {})", uri.len()),
            None,
        ));
    }
    Ok(())
}
