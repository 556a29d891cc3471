//! Delivering the outbox: every due notification gets one attempt per pass, under a lease, in its
//! channel's format (`notify` for the signed webhook, `notify::{slack, teams, email}` for the others).
//! Each attempt is recorded (`notification_attempts`); a failure is retried with backoff until
//! `actions.webhook_max_attempts`, and the final outcome (delivered or failed) is audited as
//! `webhook_delivered` / `webhook_delivery_failed` on the channel's `webhook:` target.
//!
//! Sealed values are opened only here, for the attempt: the signing secret, the Slack or Teams URL, the
//! SMTP password. Error texts come back scrubbed of them, and only those texts are logged and stored.

use super::actions::{self, take_lease};
use super::caller::Caller;
use super::evaluator::PassReport;
use crate::app::App;
use crate::audit::Target;
use crate::domain::TenantId;
use crate::domain::channel::ChannelKind;
use crate::domain::clock::format_timestamp;
use crate::notify::{self, AttemptResult, Event, Summary};
use crate::store::{Attempt, NotificationRecord, StoreError, WebhookRecord};

/// Deliver due notifications (each under a lease), recording every attempt.
pub async fn deliver_due(app: &App, report: &mut PassReport) {
    let now = format_timestamp(app.store.clock().now());
    let due = match app.store.due_notifications(&now, 200).await {
        Ok(d) => d,
        Err(e) => {
            report.errors.push(format!("listing notifications: {e}"));
            return;
        }
    };
    let holder = actions::holder(app);
    for (tenant, n) in due {
        let lease = format!("notification:{tenant}:{}", n.id);
        match take_lease(app, &lease, &holder).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                report.errors.push(format!("notification lease: {e}"));
                continue;
            }
        }
        match deliver_one(app, tenant, &n).await {
            Ok(Some(true)) => report.notifications_delivered += 1,
            Ok(Some(false)) => report.notifications_failed += 1,
            Ok(None) => {}
            Err(e) => report.errors.push(format!("notification {}: {e}", n.id)),
        }
        if let Err(e) = app.store.release_lease(&lease, &holder).await {
            tracing::warn!(error = %e, "could not release a notification lease; it will expire");
        }
    }
}

fn not_sent(error: String) -> AttemptResult {
    AttemptResult { delivered: false, status: None, error: Some(error), duration_ms: 0 }
}

/// One attempt in the channel's format, with its sealed value opened.
async fn attempt(
    app: &App,
    channel: &WebhookRecord,
    secret: &[u8],
    n: &NotificationRecord,
    now_unix: i64,
) -> AttemptResult {
    if channel.kind == ChannelKind::Webhook {
        return app
            .webhooks
            .deliver(&channel.url, secret, &n.event_type, &n.event_id, n.body.as_bytes(), now_unix)
            .await;
    }
    let Some(event) = Event::parse(&n.body) else {
        return not_sent("the stored event is not readable".into());
    };
    let summary = Summary::of(&event);
    match channel.kind {
        ChannelKind::Webhook => unreachable!("handled above"),
        ChannelKind::Slack | ChannelKind::Teams => {
            let Ok(url) = std::str::from_utf8(secret) else {
                return not_sent("the sealed URL is not text".into());
            };
            let body = if channel.kind == ChannelKind::Slack {
                notify::slack::payload(&summary)
            } else {
                notify::teams::payload(&summary)
            };
            app.webhooks.post_json(url, secret, &body).await
        }
        ChannelKind::Email => {
            let Some(settings) = &channel.email else {
                return not_sent("the email channel has no SMTP settings".into());
            };
            let password = String::from_utf8_lossy(secret);
            let (subject, body) = (notify::email::subject(&summary), notify::email::body(&summary));
            app.mailer.send(settings, &password, &subject, &body).await
        }
    }
}

/// One attempt. Some(true): delivered; Some(false): failed for good; None: will be retried.
async fn deliver_one(app: &App, tenant: TenantId, n: &NotificationRecord) -> Result<Option<bool>, StoreError> {
    let ts = app.store.tenant(tenant);
    // Re-read: another instance may have delivered it between the listing and the lease.
    let current = match ts.notification(&n.id).await {
        Ok(c) => c,
        Err(StoreError::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    if current.state != "pending" || current.attempts != n.attempts {
        return Ok(None);
    }
    let hook = match ts.webhook(&n.webhook_id).await {
        Ok(h) => h,
        Err(StoreError::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    let tenant_str = tenant.to_string();
    let attempt_no = n.attempts + 1;
    let now = app.store.clock().now();
    let what = if hook.kind == ChannelKind::Webhook { "webhook secret" } else { "channel's sealed credential" };
    let result = match app.keyring().ok().map(|k| k.open(&hook.sealed, App::webhook_binding(&tenant_str, &hook.id))) {
        Some(Ok(secret)) => attempt(app, &hook, &secret, n, now.as_second()).await,
        Some(Err(e)) => not_sent(format!("cannot decrypt the {what}: {e}")),
        None => not_sent(format!("no master key is configured, so the {what} cannot be read")),
    };
    let at = format_timestamp(now);
    let last = !result.delivered && attempt_no >= i64::from(app.actions.webhook_max_attempts);
    let delay = notify::retry_delay(
        u32::try_from(attempt_no).unwrap_or(u32::MAX),
        app.actions.webhook_retry_base,
        app.actions.webhook_retry_max,
    );
    let next = now.checked_add(delay).unwrap_or(now);
    let next = format_timestamp(next);
    let record = Attempt {
        number: attempt_no,
        at: &at,
        status: result.status.map(i64::from),
        error: result.error.as_deref(),
        duration_ms: i64::try_from(result.duration_ms).unwrap_or(i64::MAX),
        next_attempt_at: &next,
    };
    ts.record_attempt(&n.id, &record).await?;
    if !result.delivered && !last {
        tracing::info!(
            notification = n.id, kind = hook.kind.as_str(), attempt = attempt_no, error = ?result.error,
            "delivery failed; will retry"
        );
        return Ok(None);
    }
    let mut tx = ts.begin().await?;
    let state = if result.delivered { "delivered" } else { "failed" };
    tx.finish_notification(&n.id, state, result.delivered.then_some(at.as_str())).await?;
    let c = Caller::system(app, tenant, &n.event_id, "");
    let action = if result.delivered { "webhook_delivered" } else { "webhook_delivery_failed" };
    let after = serde_json::json!({
        "notification_id": n.id, "event_type": n.event_type, "kind": hook.kind.as_str(), "attempts": attempt_no,
        "status": result.status,
    });
    let mut entry = c.entry_as(action, Target::Webhook(hook.id.clone()), None::<&()>, Some(&after));
    entry.reason = result.error.clone();
    tx.commit(entry).await?;
    Ok(Some(result.delivered))
}
