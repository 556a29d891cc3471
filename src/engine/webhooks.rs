//! Notification channel use cases: register a channel and remove one. A channel is a signed webhook
//! (its signing secret sealed), a Slack or Teams webhook (the URL itself sealed, since it is the
//! credential) or an email address list behind an SMTP server (the password sealed); every sealed value is
//! bound to the tenant and the channel's id. Deliveries are `engine::deliveries`.

use super::caller::Caller;
use super::error::{About, Error, Result};
use crate::app::App;
use crate::audit::Target;
use crate::crypto::SecretString;
use crate::domain::channel::{self, ChannelKind, EmailSettings, EventType, MAX_ADDRESS_CHARS, MAX_RECIPIENTS, TlsMode};
use crate::domain::clock::format_timestamp;
use crate::domain::{ValidationError, validation};
use crate::store::WebhookRecord;

pub const SECRET_MIN_CHARS: usize = 16;
pub const SECRET_MAX_CHARS: usize = 256;
pub const LABEL_MAX_CHARS: usize = 120;

/// An email channel's settings as asked for.
pub struct NewEmail<'a> {
    pub host: &'a str,
    pub port: Option<u16>,
    pub tls: TlsMode,
    pub from: &'a str,
    pub to: &'a [String],
    pub username: Option<&'a str>,
}

/// A channel as asked for.
pub struct NewWebhook<'a> {
    pub kind: ChannelKind,
    /// Webhook, Slack and Teams: where to POST.
    pub url: Option<&'a str>,
    /// Webhook: the signing secret; email: the SMTP password.
    pub secret: Option<&'a str>,
    pub label: Option<&'a str>,
    pub events: Option<&'a [EventType]>,
    pub email: Option<NewEmail<'a>>,
}

fn missing(field: &str, kind: ChannelKind) -> Error {
    ValidationError::new(field, format!("is required for kind `{}`", kind.as_str())).into()
}

fn not_for(field: &str, kind: ChannelKind) -> Error {
    ValidationError::new(field, format!("is not used by kind `{}`", kind.as_str())).into()
}

fn check_email(e: &NewEmail<'_>, c: &Caller<'_>) -> Result<EmailSettings> {
    let host = channel::check_host(e.host)?;
    if e.to.is_empty() || e.to.len() > MAX_RECIPIENTS {
        return Err(ValidationError::new("smtp.to", "must list 1 to 10 addresses").into());
    }
    let to =
        e.to.iter()
            .enumerate()
            .map(|(i, a)| channel::check_address(&format!("smtp.to[{i}]"), a))
            .collect::<std::result::Result<Vec<_>, _>>()?;
    let username = e.username.map(|u| validation::text("smtp.username", u, 1, MAX_ADDRESS_CHARS)).transpose()?;
    let settings = EmailSettings {
        host,
        port: e.port.unwrap_or(e.tls.default_port()),
        tls: e.tls,
        from: channel::check_address("smtp.from", e.from)?,
        to,
        username,
    };
    if settings.port == 0 {
        return Err(ValidationError::new("smtp.port", "must be between 1 and 65535").into());
    }
    crate::notify::email::check_settings(&settings, &c.app.outbound)
        .map_err(|rule| ValidationError::new("smtp.host", rule))?;
    Ok(settings)
}

/// What is sealed and what is shown, by kind.
struct Parts {
    url: String,
    sealed_value: String,
    email: Option<EmailSettings>,
}

fn parts(c: &Caller<'_>, new: &NewWebhook<'_>) -> Result<Parts> {
    let kind = new.kind;
    let url = |field: &str| -> Result<String> {
        let given = new.url.ok_or_else(|| missing("url", kind))?;
        crate::notify::validate_url(given.trim(), &c.app.outbound)
            .map_err(|rule| ValidationError::new(field, rule).into())
    };
    match kind {
        ChannelKind::Webhook => {
            let url = url("url")?;
            let secret = new.secret.ok_or_else(|| missing("secret", kind))?.trim();
            let len = secret.chars().count();
            if !(SECRET_MIN_CHARS..=SECRET_MAX_CHARS).contains(&len) || secret.chars().any(char::is_control) {
                return Err(
                    ValidationError::new("secret", "must be 16 to 256 characters without control characters").into()
                );
            }
            if new.email.is_some() {
                return Err(not_for("smtp", kind));
            }
            Ok(Parts { url, sealed_value: secret.to_owned(), email: None })
        }
        ChannelKind::Slack | ChannelKind::Teams => {
            let full = url("url")?;
            if new.secret.is_some() {
                return Err(not_for("secret", kind));
            }
            if new.email.is_some() {
                return Err(not_for("smtp", kind));
            }
            Ok(Parts { url: crate::notify::masked_url(&full), sealed_value: full, email: None })
        }
        ChannelKind::Email => {
            if new.url.is_some() {
                return Err(not_for("url", kind));
            }
            let e = new.email.as_ref().ok_or_else(|| missing("smtp", kind))?;
            let settings = check_email(e, c)?;
            let password = match (settings.username.is_some(), new.secret) {
                (true, Some(p)) if !p.is_empty() && p.chars().count() <= SECRET_MAX_CHARS => p.to_owned(),
                (true, _) => {
                    return Err(ValidationError::new(
                        "secret",
                        "the SMTP password (1 to 256 characters) is required with smtp.username",
                    )
                    .into());
                }
                (false, None) => String::new(),
                (false, Some(_)) => {
                    return Err(ValidationError::new("secret", "a password needs smtp.username").into());
                }
            };
            let scheme = if settings.tls == TlsMode::Tls { "smtps" } else { "smtp" };
            let url = format!("{scheme}://{}:{}", bracketed(&settings.host), settings.port);
            Ok(Parts { url, sealed_value: password, email: Some(settings) })
        }
    }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_owned() }
}

/// What a channel may show of itself (in audit records and tool results): never the sealed value.
pub fn shown(w: &WebhookRecord) -> serde_json::Value {
    serde_json::json!({
        "id": w.id, "kind": w.kind.as_str(), "url": crate::notify::masked_url(&w.url), "label": w.label,
        "events": w.events, "smtp": w.email,
    })
}

pub async fn add(c: &Caller<'_>, new: NewWebhook<'_>) -> Result<WebhookRecord> {
    let Parts { url, sealed_value, email } = parts(c, &new)?;
    let label = new.label.map(|l| validation::text("label", l, 1, LABEL_MAX_CHARS)).transpose()?;
    let events = channel::event_filter(new.events)?;
    let id = uuid::Uuid::now_v7().to_string();
    let tenant = c.tenant.to_string();
    let keyring = c.app.keyring().map_err(|e| Error::Unavailable(e.to_string()))?;
    let sealed = keyring.seal_secret(&SecretString::new(&sealed_value), App::webhook_binding(&tenant, &id));
    drop(sealed_value);
    let w = WebhookRecord {
        id,
        kind: new.kind,
        url,
        label,
        sealed,
        events,
        email,
        created_at: format_timestamp(c.now()),
        created_by: c.subject().to_owned(),
    };
    let mut tx = c.store().begin().await?;
    tx.insert_webhook(&w).await?;
    tx.commit(c.entry(Target::Webhook(w.id.clone()), None::<&()>, Some(&shown(&w)))).await?;
    Ok(w)
}

/// Remove channel `id`; notifications not yet delivered to it are dropped.
pub async fn remove(c: &Caller<'_>, id: &str) -> Result<()> {
    let mut tx = c.store().begin().await?;
    tx.delete_webhook(id).await.about("webhook", id)?;
    tx.commit(c.entry(Target::Webhook(id.to_owned()), None::<&()>, None::<&()>)).await?;
    Ok(())
}
