//! Channel tools: register, list (with recent deliveries) and remove the tenant's notification channels
//! (signed webhooks, Slack, Teams, email). The tools keep their webhook names; `kind` says which channel.
//! The mutations are `engine::webhooks`' use cases.

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Json;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::{NoArgs, Parameters};
use super::status::parse_id;
use super::{BudgetServer, CallCtx, ToolError};
use crate::domain::channel::{ChannelKind, EmailSettings, EventType, TlsMode};
use crate::engine::webhooks::{self, NewEmail, NewWebhook};
use crate::store::{NotificationRecord, WebhookRecord};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddWebhookArgs {
    /// webhook (signed JSON, default), slack, teams or email.
    #[serde(default)]
    pub kind: ChannelKind,
    /// webhook/slack/teams: the URL to POST to (https; http only for localhost).
    #[serde(default)]
    #[schemars(length(min = 8, max = 2048))]
    pub url: Option<String>,
    /// webhook: HMAC signing secret (16-256 chars); email: SMTP password. Stored encrypted, never shown.
    #[serde(default)]
    #[schemars(length(min = 1, max = 256))]
    pub secret: Option<String>,
    /// Only these events (default: all).
    #[serde(default)]
    #[schemars(length(min = 1, max = 11))]
    pub events: Option<Vec<EventType>>,
    /// email only: the SMTP server and addresses.
    #[serde(default)]
    pub smtp: Option<SmtpArgs>,
    /// Optional name, e.g. "ops".
    #[serde(default)]
    #[schemars(length(max = 120))]
    pub label: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpArgs {
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// Default 587 (starttls) or 465 (tls).
    #[serde(default)]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// starttls (default) or tls; none only for localhost.
    #[serde(default)]
    pub tls: TlsMode,
    #[schemars(length(min = 3, max = 254))]
    pub from: String,
    #[schemars(length(min = 1, max = 10), inner(length(min = 3, max = 254)))]
    pub to: Vec<String>,
    /// SMTP user; give the password as `secret`.
    #[serde(default)]
    #[schemars(length(min = 1, max = 254))]
    pub username: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct WebhookView {
    pub id: String,
    pub kind: ChannelKind,
    /// Scheme, host and port only: the path and query often hold the receiver's credential.
    pub url: String,
    pub label: Option<String>,
    /// The events delivered; absent for all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventType>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp: Option<EmailSettings>,
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
            kind: w.kind,
            url: crate::notify::masked_url(&w.url),
            label: w.label,
            events: w.events,
            smtp: w.email,
            created_at: w.created_at,
            created_by: w.created_by,
            recent: recent.into_iter().map(NotificationView::from).collect(),
        })
    }
}

#[tool_router(router = webhook_tools, vis = "pub(super)")]
impl BudgetServer {
    /// Add a notification channel for the tenant's events. kind webhook: JSON POST signed with header
    /// x-make-budget-signature = `v1=` + hex HMAC-SHA256 of `<x-make-budget-timestamp>.<body>`; slack:
    /// incoming-webhook URL (Block Kit); teams: Workflows webhook URL (Adaptive Card); email: smtp + secret.
    /// Failed deliveries are retried with backoff.
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
        let email = args.smtp.as_ref().map(|m| NewEmail {
            host: &m.host,
            port: m.port,
            tls: m.tls,
            from: &m.from,
            to: &m.to,
            username: m.username.as_deref(),
        });
        let new = NewWebhook {
            kind: args.kind,
            url: args.url.as_deref(),
            secret: args.secret.as_deref(),
            label: args.label.as_deref(),
            events: args.events.as_deref(),
            email,
        };
        let w = webhooks::add(&call.caller(&self.app), new).await?;
        Ok(Json(self.webhook_view(&call, w).await?))
    }

    /// List the tenant's notification channels (never their secrets) with their ten most recent
    /// notifications and how delivery went (state, attempts, last status and error).
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

    /// Remove a notification channel; notifications not yet delivered to it are dropped.
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
