//! Notification channels (the `webhooks` table: signed webhooks, Slack, Teams, email; their secrets stay
//! sealed) and the notification outbox: an event is queued for every channel whose filter takes it, in the
//! transaction that produced it ([`MutationTx::enqueue_event`]); delivery attempts are bookkeeping outside
//! the audit chain, and the final outcome is audited.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{InScope, MutationTx, Scope, Store, StoreError, TenantStore, tenant_of};
use crate::crypto::Sealed;
use crate::domain::TenantId;
use crate::domain::channel::{ChannelKind, EmailSettings, EventType};

/// A notification channel; its secret stays sealed.
#[derive(Debug, Clone)]
pub struct WebhookRecord {
    pub id: String,
    pub kind: ChannelKind,
    /// The URL of a signed webhook; for the other kinds only what may be shown (scheme, host, port): the
    /// sealed value is the Slack or Teams URL itself, or the SMTP password.
    pub url: String,
    pub label: Option<String>,
    pub sealed: Sealed,
    /// The event types delivered; `None` for all.
    pub events: Option<Vec<EventType>>,
    /// An email channel's SMTP settings.
    pub email: Option<EmailSettings>,
    pub created_at: String,
    pub created_by: String,
}

/// A notification waiting for (or done with) delivery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct NotificationRecord {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub body: String,
    /// pending, delivered or failed.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

macro_rules! webhook_columns {
    () => {
        "id, kind, url, label, key_id, nonce, ciphertext, events, settings, created_at, created_by"
    };
}

macro_rules! notification_columns {
    () => {
        "id, webhook_id, event_id, event_type, body, state, attempts, next_attempt_at, last_status, last_error,
         created_at, delivered_at"
    };
}

fn webhook_from_row(row: &AnyRow) -> Result<WebhookRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    let events: Option<String> = row.try_get("events")?;
    let settings: Option<String> = row.try_get("settings")?;
    let corrupt = |what: &str| StoreError::Corrupt { table: "webhooks", detail: format!("{what} is not readable") };
    Ok(WebhookRecord {
        id: row.try_get("id")?,
        kind: ChannelKind::parse(&kind).ok_or_else(|| corrupt("kind"))?,
        events: events.map(|e| serde_json::from_str(&e)).transpose().map_err(|_| corrupt("events"))?,
        email: settings.map(|e| serde_json::from_str(&e)).transpose().map_err(|_| corrupt("settings"))?,
        url: row.try_get("url")?,
        label: row.try_get("label")?,
        sealed: Sealed {
            key_id: row.try_get("key_id")?,
            nonce: row.try_get("nonce")?,
            ciphertext: row.try_get("ciphertext")?,
        },
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
    })
}

fn notification_from_row(row: &AnyRow) -> Result<NotificationRecord, StoreError> {
    Ok(NotificationRecord {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        body: row.try_get("body")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

impl MutationTx {
    pub async fn insert_webhook(&mut self, w: &WebhookRecord) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        sqlx::query(
            "INSERT INTO webhooks (tenant_id, id, kind, url, label, key_id, nonce, ciphertext, events, settings,
                 created_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(tenant)
        .bind(&w.id)
        .bind(w.kind.as_str())
        .bind(&w.url)
        .bind(w.label.clone())
        .bind(&w.sealed.key_id)
        .bind(w.sealed.nonce.clone())
        .bind(w.sealed.ciphertext.clone())
        .bind(w.events.as_ref().map(|e| serde_json::to_string(e).expect("event types serialise")))
        .bind(w.email.as_ref().map(|e| serde_json::to_string(e).expect("settings serialise")))
        .bind(&w.created_at)
        .bind(&w.created_by)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    pub async fn update_webhook_secret(&mut self, id: &str, sealed: &Sealed) -> Result<(), StoreError> {
        sqlx::query("UPDATE webhooks SET key_id = $3, nonce = $4, ciphertext = $5 WHERE tenant_id = $1 AND id = $2")
            .bind(self.tenant.to_string())
            .bind(id)
            .bind(&sealed.key_id)
            .bind(sealed.nonce.clone())
            .bind(sealed.ciphertext.clone())
            .execute(self.conn())
            .await?;
        Ok(())
    }

    pub async fn delete_webhook(&mut self, id: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2")
            .bind(self.tenant.to_string())
            .bind(id)
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Queue an event for every channel of the tenant whose filter takes `event_type` (the outbox), in this
    /// transaction. Returns how many notifications were queued.
    ///
    /// A filter is a JSON array of names; the match is on the quoted name, with `_` escaped so that `LIKE`
    /// matches it literally (the same in SQLite and PostgreSQL).
    pub async fn enqueue_event(
        &mut self,
        event_id: &str,
        event_type: &str,
        body: &str,
        now: &str,
    ) -> Result<u64, StoreError> {
        let tenant = self.tenant.to_string();
        let done = sqlx::query(
            "INSERT INTO notifications (tenant_id, id, webhook_id, event_id, event_type, body, state, attempts,
                 next_attempt_at, created_at)
             SELECT tenant_id, $2 || ':' || id, id, $2, $3, $4, 'pending', 0, $5, $5 FROM webhooks
             WHERE tenant_id = $1 AND (events IS NULL OR events LIKE $6 ESCAPE '\\')",
        )
        .bind(tenant)
        .bind(event_id)
        .bind(event_type)
        .bind(body)
        .bind(now)
        .bind(format!("%\"{}\"%", event_type.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")))
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected())
    }

    /// Record the end of a notification's delivery (delivered, or failed for good).
    pub async fn finish_notification(
        &mut self,
        id: &str,
        state: &str,
        delivered_at: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE notifications SET state = $3, delivered_at = $4 WHERE tenant_id = $1 AND id = $2")
            .bind(self.tenant.to_string())
            .bind(id)
            .bind(state)
            .bind(delivered_at.map(str::to_owned))
            .execute(self.conn())
            .await?;
        Ok(())
    }
}

/// One delivery attempt of a notification, as [`TenantStore::record_attempt`] writes it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// 1 for the first attempt.
    pub number: i64,
    pub at: &'a str,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<i64>,
    pub error: Option<&'a str>,
    pub duration_ms: i64,
    /// When the next attempt is due, if this one failed.
    pub next_attempt_at: &'a str,
}

impl TenantStore<'_> {
    pub async fn webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE tenant_id = $1 ORDER BY created_at, id"
        ))
        .bind(self.tenant.to_string())
        .fetch_all_in(self.scoped())
        .await?;
        rows.iter().map(webhook_from_row).collect()
    }

    pub async fn webhook(&self, id: &str) -> Result<WebhookRecord, StoreError> {
        let row =
            sqlx::query(concat!("SELECT ", webhook_columns!(), " FROM webhooks WHERE tenant_id = $1 AND id = $2"))
                .bind(self.tenant.to_string())
                .bind(id)
                .fetch_optional_in(self.scoped())
                .await?
                .ok_or(StoreError::NotFound)?;
        webhook_from_row(&row)
    }

    /// Notifications, newest first (at most `limit`), optionally of one webhook.
    pub async fn notifications(
        &self,
        webhook_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        use super::sql::{Arg, Select};
        let mut q = Select::new(
            concat!("SELECT ", notification_columns!(), " FROM notifications WHERE tenant_id = $1"),
            vec![Arg::Text(self.tenant.to_string())],
        );
        if let Some(w) = webhook_id {
            q.push(" AND webhook_id = #", Arg::Text(w.to_owned()));
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT #", Arg::Int(i64::from(limit)));
        q.fetch_all_in(self.scoped()).await?.iter().map(notification_from_row).collect()
    }

    pub async fn notification(&self, id: &str) -> Result<NotificationRecord, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            notification_columns!(),
            " FROM notifications WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(self.tenant.to_string())
        .bind(id)
        .fetch_optional_in(self.scoped())
        .await?
        .ok_or(StoreError::NotFound)?;
        notification_from_row(&row)
    }

    /// Record one delivery attempt and when to try next. This is delivery bookkeeping, like leases, and is
    /// not itself audited; the final outcome is (see [`MutationTx::finish_notification`]).
    pub async fn record_attempt(&self, id: &str, a: &Attempt<'_>) -> Result<(), StoreError> {
        let Attempt { number: attempt, at, status, error, duration_ms, next_attempt_at } = *a;
        let tenant = self.tenant.to_string();
        let mut tx = self.store.begin(Scope::Tenant(self.tenant)).await?;
        sqlx::query(
            "INSERT INTO notification_attempts (tenant_id, notification_id, attempt, at, status, error, duration_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&tenant)
        .bind(id)
        .bind(attempt)
        .bind(at)
        .bind(status)
        .bind(error.map(str::to_owned))
        .bind(duration_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE notifications SET attempts = $3, last_status = $4, last_error = $5, next_attempt_at = $6
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(&tenant)
        .bind(id)
        .bind(attempt)
        .bind(status)
        .bind(error.map(str::to_owned))
        .bind(next_attempt_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Delivery attempts of a notification: (attempt, at, status, error).
    pub async fn notification_attempts(
        &self,
        id: &str,
    ) -> Result<Vec<(i64, String, Option<i64>, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT attempt, at, status, error FROM notification_attempts
             WHERE tenant_id = $1 AND notification_id = $2 ORDER BY attempt",
        )
        .bind(self.tenant.to_string())
        .bind(id)
        .fetch_all_in(self.scoped())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("attempt")?, r.try_get("at")?, r.try_get("status")?, r.try_get("error")?)))
            .collect()
    }
}

impl Store {
    /// Every webhook of every tenant, as (tenant id, webhook): for key rotation.
    pub async fn all_webhooks(&self) -> Result<Vec<(String, WebhookRecord)>, StoreError> {
        let rows =
            sqlx::query(concat!("SELECT tenant_id, ", webhook_columns!(), " FROM webhooks ORDER BY tenant_id, id"))
                .fetch_all_in(self.system())
                .await?;
        rows.iter().map(|r| Ok((r.try_get("tenant_id")?, webhook_from_row(r)?))).collect()
    }

    /// Pending notifications due at `now`, across tenants, oldest first.
    pub async fn due_notifications(
        &self,
        now: &str,
        limit: u32,
    ) -> Result<Vec<(TenantId, NotificationRecord)>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT tenant_id, ",
            notification_columns!(),
            " FROM notifications WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all_in(self.system())
        .await?;
        rows.iter().map(|r| Ok((tenant_of(r, "notifications")?, notification_from_row(r)?))).collect()
    }
}
