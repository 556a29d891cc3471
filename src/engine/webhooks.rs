//! Webhook use cases: register a receiver (its signing secret sealed under the master key, bound to the
//! tenant and the webhook's id) and remove one. Deliveries are the evaluator's (`evaluator::deliver_due`).

use super::caller::Caller;
use super::error::{About, Error, Result};
use crate::app::App;
use crate::audit::Target;
use crate::crypto::SecretString;
use crate::domain::clock::format_timestamp;
use crate::domain::{ValidationError, validation};
use crate::store::WebhookRecord;

pub const SECRET_MIN_CHARS: usize = 16;
pub const SECRET_MAX_CHARS: usize = 256;
pub const LABEL_MAX_CHARS: usize = 120;

/// A webhook as asked for.
pub struct NewWebhook<'a> {
    pub url: &'a str,
    pub secret: &'a str,
    pub label: Option<&'a str>,
}

pub async fn add(c: &Caller<'_>, new: NewWebhook<'_>) -> Result<WebhookRecord> {
    let url = crate::notify::validate_url(new.url.trim(), &c.app.outbound)
        .map_err(|rule| ValidationError::new("url", rule))?;
    let secret = new.secret.trim();
    let len = secret.chars().count();
    if !(SECRET_MIN_CHARS..=SECRET_MAX_CHARS).contains(&len) || secret.chars().any(char::is_control) {
        return Err(ValidationError::new("secret", "must be 16 to 256 characters without control characters").into());
    }
    let label = new.label.map(|l| validation::text("label", l, 1, LABEL_MAX_CHARS)).transpose()?;
    let id = uuid::Uuid::now_v7().to_string();
    let tenant = c.tenant.to_string();
    let keyring = c.app.keyring().map_err(|e| Error::Unavailable(e.to_string()))?;
    let sealed = keyring.seal_secret(&SecretString::new(secret), App::webhook_binding(&tenant, &id));
    let w = WebhookRecord {
        id,
        url,
        label,
        sealed,
        created_at: format_timestamp(c.now()),
        created_by: c.subject().to_owned(),
    };
    let mut tx = c.store().begin().await?;
    tx.insert_webhook(&w).await?;
    let shown = serde_json::json!({"id": w.id, "url": crate::notify::masked_url(&w.url), "label": w.label});
    tx.commit(c.entry(Target::Webhook(w.id.clone()), None::<&()>, Some(&shown))).await?;
    Ok(w)
}

/// Remove webhook `id`; notifications not yet delivered to it are dropped.
pub async fn remove(c: &Caller<'_>, id: &str) -> Result<()> {
    let mut tx = c.store().begin().await?;
    tx.delete_webhook(id).await.about("webhook", id)?;
    tx.commit(c.entry(Target::Webhook(id.to_owned()), None::<&()>, None::<&()>)).await?;
    Ok(())
}
