//! Webhook tools: register, list (with recent deliveries) and remove the tenant's event receivers. The
//! mutations are `engine::webhooks`' use cases.

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Json;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::{NoArgs, Parameters};
use super::status::parse_id;
use super::{BudgetServer, CallCtx, ToolError};
use crate::engine::webhooks::{self, NewWebhook};
use crate::store::{NotificationRecord, WebhookRecord};

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

#[derive(Debug, Serialize, JsonSchema)]
pub struct Removed {
    pub id: String,
    pub removed: bool,
}

impl BudgetServer {
    async fn webhook_view(&self, call: &CallCtx, w: WebhookRecord) -> Result<WebhookView, ToolError> {
        let recent = self.tenant(call).notifications(Some(&w.id), 10).await?;
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

#[tool_router(router = webhook_tools, vis = "pub(super)")]
impl BudgetServer {
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
        let new = NewWebhook { url: &args.url, secret: &args.secret, label: args.label.as_deref() };
        let w = webhooks::add(&call.caller(&self.app), new).await?;
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
        for w in self.tenant(&call).webhooks().await? {
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
        webhooks::remove(&call.caller(&self.app), &args.webhook_id).await?;
        Ok(Json(Removed { id: args.webhook_id, removed: true }))
    }
}
