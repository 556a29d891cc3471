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

use crate::app::App;
use crate::domain::clock::format_timestamp;
use crate::make::{MakeError, MakeTarget};
use crate::store::OrgRecord;

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
