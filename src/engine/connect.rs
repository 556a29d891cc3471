//! Connecting Make organizations: what is checked with Make before a connection is stored.
//!
//! - The token's scopes (`GET /users/me/current-authorization` [SDK test/mocks/users/
//!   current-authorization.json]). A token without `scenarios:write` connects with a warning: pausing and
//!   resuming cannot work on it, and those calls refuse with that reason instead of failing at Make
//!   (make-api.md §1: "Allows activating and deactivating scenarios"). Read scopes the sync needs are
//!   warned about too. A zone that does not answer the endpoint connects with the scopes unknown.
//! - Each organization (`GET /organizations/{id}`): access, plan facts, and its zone. Make serves an
//!   organization only in its own zone (tokens are per zone [DOC create-authentication-token]); an
//!   organization whose `zone` is not the host called is refused with a message naming the zone to use.

use schemars::JsonSchema;
use serde::Serialize;

use super::caller::Caller;
use super::error::{About, Error, Result};
use crate::app::App;
use crate::audit::Target;
use crate::crypto::SecretString;
use crate::domain::budget::MAKE_ID_MAX;
use crate::domain::clock::format_timestamp;
use crate::domain::{ValidationError, validation};
use crate::make::{self, AuthKind, MakeError, MakeTarget};
use crate::store::{ConnectionRecord, OrgRecord};

pub use crate::make::WRITE_SCOPE;
/// The scopes a usage sync reads with.
pub const READ_SCOPES: [&str; 3] = ["organizations:read", "teams:read", "scenarios:read"];

/// What Make confirmed about a token and its organizations.
#[derive(Debug, Clone)]
pub struct ConnectionCheck {
    pub organizations: Vec<OrgRecord>,
    /// The token's scopes; `None` when the zone did not say.
    pub scopes: Option<Vec<String>>,
    /// What will not work with this token, for the caller to show.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("Make did not confirm access to organization {organization}: {error}")]
    Make { organization: i64, error: MakeError },
    #[error(
        "organization {organization} is in Make zone {zone}, not {called}: connect it with zone \"{zone}\" \
         (and a token made in that zone)"
    )]
    WrongZone { organization: i64, zone: String, called: String },
}

pub const MAX_ORGS_PER_CONNECTION: usize = 20;
pub const TOKEN_MAX_CHARS: usize = 4096;
pub const LABEL_MAX_CHARS: usize = 120;

/// A Make connection as shown to clients and in the audit log: never the token.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConnectionView {
    pub id: String,
    pub label: String,
    /// Make API base URL.
    pub base_url: String,
    pub auth_kind: AuthKind,
    pub organizations: Vec<OrgRecord>,
    pub created_at: String,
    pub created_by: String,
    /// The token's scopes as Make reported them when connecting; absent when the zone did not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_scopes: Option<Vec<String>>,
    /// Whether scenarios can be paused and resumed through this connection (false when the token is
    /// known to lack scenarios:write).
    pub can_control_scenarios: bool,
    /// What will not work with this token (only when connecting).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl From<ConnectionRecord> for ConnectionView {
    fn from(c: ConnectionRecord) -> Self {
        let can_control_scenarios = c.token_scopes.as_ref().is_none_or(|s| s.iter().any(|x| x == WRITE_SCOPE));
        Self {
            id: c.id,
            label: c.label,
            base_url: c.base_url,
            auth_kind: c.auth_kind,
            organizations: c.organizations,
            created_at: c.created_at,
            created_by: c.created_by,
            token_scopes: c.token_scopes,
            can_control_scenarios,
            warnings: Vec::new(),
        }
    }
}

/// A connection as asked for.
pub struct NewConnection<'a> {
    pub zone: &'a str,
    pub auth_kind: AuthKind,
    pub token: &'a str,
    pub organization_ids: &'a [i64],
    pub label: Option<&'a str>,
}

/// Connect Make organizations to the caller's tenant: check the token and each organization with Make,
/// seal the token, and store the connection with its audit record.
pub async fn connect(c: &Caller<'_>, new: NewConnection<'_>) -> Result<ConnectionView> {
    let base_url = make::api_base_url(new.zone, &c.app.outbound)?;
    let token = new.token.trim();
    if token.len() < 8 || token.len() > TOKEN_MAX_CHARS || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValidationError::new("token", "must be 8 to 4096 characters without spaces").into());
    }
    let token = SecretString::new(token);
    let orgs = validation::unique_ids("organization_ids", new.organization_ids, MAX_ORGS_PER_CONNECTION, MAKE_ID_MAX)?;
    let label = match new.label {
        Some(l) => validation::text("label", l, 1, LABEL_MAX_CHARS)?,
        None => new.zone.trim().to_owned(),
    };
    let keys = c.app.keyring()?;
    let existing = c.store().organizations().await?;
    if let Some(o) = existing.iter().find(|o| orgs.contains(&o.organization_id)) {
        return Err(Error::Conflict(format!(
            "organization {} is already connected (connection {}); remove that connection first to replace it",
            o.organization_id, o.connection_id
        )));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let target = MakeTarget::new(base_url.clone(), new.auth_kind, token.clone());
    let created_at = format_timestamp(c.now());
    let checked = check(c.app, &target, &orgs, &id).await.map_err(|e| match e {
        ConnectError::Make { organization, error } => {
            Error::Make(format!("Make did not confirm access to organization {organization}: {error}"))
        }
        wrong @ ConnectError::WrongZone { .. } => ValidationError::new("zone", wrong.to_string()).into(),
    })?;
    let tenant = c.tenant.to_string();
    let record = ConnectionRecord {
        id: id.clone(),
        label,
        base_url,
        auth_kind: new.auth_kind,
        sealed: keys.seal_secret(&token, App::binding(&tenant, &id)),
        created_at,
        created_by: c.subject().to_owned(),
        organizations: checked.organizations,
        token_scopes: checked.scopes,
    };
    let mut tx = c.store().begin().await?;
    tx.insert_connection(&record).await.about("connection", &id)?;
    let mut view = ConnectionView::from(record);
    view.warnings = checked.warnings;
    tx.commit(c.entry(Target::MakeConnection(id), None::<&ConnectionView>, Some(&view))).await?;
    Ok(view)
}

/// What removing a connection did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Removed {
    pub id: String,
    pub removed: bool,
    /// Organizations that are no longer connected. Their synced usage history is kept.
    pub organization_ids: Vec<i64>,
}

/// Remove connection `id`: its token is deleted and its organizations are no longer synced or controlled.
pub async fn remove(c: &Caller<'_>, id: &str) -> Result<Removed> {
    let existing = c.store().connection(id).await.about("connection", id)?;
    let mut tx = c.store().begin().await?;
    tx.delete_connection(id).await.about("connection", id)?;
    let removed = Removed {
        id: id.to_owned(),
        removed: true,
        organization_ids: existing.organizations.iter().map(|o| o.organization_id).collect(),
    };
    let before = ConnectionView::from(existing);
    tx.commit(c.entry(Target::MakeConnection(id.to_owned()), Some(&before), Some(&removed))).await?;
    Ok(removed)
}

/// The host (and port) of a Make API base URL, e.g. `eu1.make.com`.
fn host_of(base_url: &str) -> String {
    let rest = base_url.split_once("://").map_or(base_url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_ascii_lowercase()
}

/// Whether an organization's `zone` names the host that was called (`eu1.make.com`, or a URL of it).
pub fn same_zone(zone: &str, base_url: &str) -> bool {
    let zone = zone.trim().to_ascii_lowercase();
    let zone = zone.split_once("://").map_or(zone.as_str(), |(_, r)| r);
    let zone = zone.split('/').next().unwrap_or(zone);
    let called = host_of(base_url);
    zone == called || called.strip_suffix(":443").is_some_and(|h| h == zone)
}

/// Check a token and the organizations it is to cover, as `connection_id` at `validated_at`.
pub async fn check(
    app: &App,
    target: &MakeTarget,
    organizations: &[i64],
    connection_id: &str,
) -> Result<ConnectionCheck, ConnectError> {
    let validated_at = format_timestamp(app.store.clock().now());
    let first = organizations.first().copied().unwrap_or_default();
    let mut warnings = Vec::new();
    let scopes = match app.make.token_scopes(target, first).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::info!(error = %e, "the token's scopes could not be read");
            warnings.push(format!(
                "the token's scopes could not be read ({e}); if it lacks {WRITE_SCOPE}, pausing will fail at Make"
            ));
            None
        }
    };
    if let Some(s) = &scopes {
        if !s.iter().any(|x| x == WRITE_SCOPE) {
            warnings.push(format!(
                "the token lacks {WRITE_SCOPE}: pause_scenarios, resume_scenarios and pause actions cannot work on \
                 this connection (they refuse); connect a token with {WRITE_SCOPE} to control scenarios"
            ));
        }
        let missing: Vec<&str> = READ_SCOPES.iter().copied().filter(|r| !s.iter().any(|x| x == r)).collect();
        if !missing.is_empty() {
            warnings.push(format!("the token lacks {}: usage syncs will fail", missing.join(", ")));
        }
    }
    let mut records = Vec::with_capacity(organizations.len());
    for org in organizations {
        let o = app
            .make
            .organization(target, *org)
            .await
            .map_err(|error| ConnectError::Make { organization: *org, error })?;
        if let Some(zone) = o.zone.as_deref().filter(|z| !z.trim().is_empty())
            && !same_zone(zone, &target.base_url)
        {
            return Err(ConnectError::WrongZone {
                organization: *org,
                zone: zone.trim().to_owned(),
                called: host_of(&target.base_url),
            });
        }
        records.push(super::sync::org_record(&o, connection_id, &validated_at));
    }
    Ok(ConnectionCheck { organizations: records, scopes, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_compare_by_host() {
        assert!(same_zone("eu1.make.com", "https://eu1.make.com/api/v2"));
        assert!(same_zone("EU1.make.com", "https://eu1.make.com:443/api/v2"));
        assert!(same_zone("https://eu1.make.com", "https://eu1.make.com/api/v2"));
        assert!(!same_zone("eu2.make.com", "https://eu1.make.com/api/v2"));
        assert!(same_zone("127.0.0.1:4010", "http://127.0.0.1:4010/api/v2"));
        assert!(!same_zone("eu1.make.com", "http://127.0.0.1:4010/api/v2"));
    }
}
