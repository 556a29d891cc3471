//! Administrative operations shared by the CLI and server start-up: tenants and API tokens here, the
//! rotation of the master key in [`keys`]. Each is a mutation with its audit record in the same
//! transaction, like every tool call.

pub mod keys;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::audit::{Actor, AuditEntry, Outcome, Target};
use crate::auth::{Role, token};
use crate::domain::clock::format_timestamp;
use crate::domain::validation::{self, ValidationError};
use crate::domain::{TenantId, TokenId};
use crate::store::{Store, StoreError, TenantRecord, TokenRecord};

pub use self::keys::{KeyRotation, RotationError, UnreadableSecret, rotate_keys};

pub const TENANT_NAME_MAX: usize = 100;
pub const SUBJECT_MAX: usize = 200;
pub const TOKEN_MAX_DAYS: i64 = 3_650;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

fn entry(actor: &Actor, action: &str, target: String, after: serde_json::Value) -> AuditEntry {
    AuditEntry {
        actor: actor.clone(),
        action: action.to_owned(),
        target,
        outcome: Outcome::Success,
        reason: None,
        request_id: uuid::Uuid::now_v7().to_string(),
        before: None,
        after: Some(crate::audit::redact(after)),
    }
}

pub async fn create_tenant(store: &Store, name: &str, actor: &Actor) -> Result<TenantRecord, AdminError> {
    let name = validation::text("name", name, 1, TENANT_NAME_MAX)?;
    let id = TenantId::new();
    let created_at = format_timestamp(store.clock().now());
    let mut tx = store.tenant(id).begin().await?;
    tx.insert_tenant(&name, &created_at, &actor.subject).await?;
    let record = TenantRecord { id: id.to_string(), name, created_at };
    tx.commit(entry(actor, "tenant_create", Target::Tenant(id).to_string(), json!(record))).await?;
    Ok(record)
}

/// The tenant with this name, created if it does not exist yet (the stdio operator's tenant).
pub async fn ensure_tenant(store: &Store, name: &str, actor: &Actor) -> Result<TenantRecord, AdminError> {
    if let Some(t) = store.tenant_by_name(name).await? {
        return Ok(t);
    }
    match create_tenant(store, name, actor).await {
        Ok(t) => Ok(t),
        // Another process created it between our lookup and insert.
        Err(AdminError::Store(StoreError::Duplicate(_))) => {
            store.tenant_by_name(name).await?.ok_or_else(|| AdminError::NotFound(format!("tenant {name:?}")))
        }
        Err(e) => Err(e),
    }
}

/// Resolve a tenant given by id or by name.
pub async fn find_tenant(store: &Store, id_or_name: &str) -> Result<TenantRecord, AdminError> {
    let found = match id_or_name.parse::<TenantId>() {
        Ok(id) => store.tenant_by_id(id).await?,
        Err(_) => store.tenant_by_name(id_or_name).await?,
    };
    found.ok_or_else(|| AdminError::NotFound(format!("no tenant with id or name {id_or_name:?}")))
}

/// Issue a token; returns its record and the secret, which is shown once and never stored.
pub async fn issue_token(
    store: &Store,
    tenant: &TenantRecord,
    role: Role,
    subject: &str,
    expires_in_days: Option<i64>,
    actor: &Actor,
) -> Result<(TokenRecord, String), AdminError> {
    let subject = validation::text("subject", subject, 1, SUBJECT_MAX)?;
    let now: Timestamp = store.clock().now();
    let expires_at = expires_in_days
        .map(|d| {
            validation::int_range("expires_in_days", d, 1, TOKEN_MAX_DAYS)
                .map(|d| format_timestamp(now + SignedDuration::from_hours(24 * d)))
        })
        .transpose()?;
    let tenant_id: TenantId = tenant.id.parse().map_err(|_| AdminError::NotFound(format!("tenant {}", tenant.id)))?;
    let id = TokenId::new();
    let minted = token::mint();
    let created_at = format_timestamp(now);
    let record = TokenRecord {
        id: id.to_string(),
        tenant_id: tenant.id.clone(),
        tenant_name: tenant.name.clone(),
        subject,
        role,
        created_at,
        expires_at,
        revoked_at: None,
    };
    let mut tx = store.tenant(tenant_id).begin().await?;
    tx.insert_token(&record, &minted.hash, &actor.subject).await?;
    tx.commit(entry(actor, "token_issue", Target::Token(id.to_string()).to_string(), json!(record))).await?;
    Ok((record, minted.secret))
}

pub async fn revoke_token(store: &Store, id: &str, actor: &Actor) -> Result<TokenRecord, AdminError> {
    let not_found = || AdminError::NotFound(format!("no active token with id {id:?}"));
    let token_id: TokenId = id.parse().map_err(|_| not_found())?;
    let rec = store.token_by_id(token_id).await?.ok_or_else(not_found)?;
    let tenant_id: TenantId = rec.tenant_id.parse().map_err(|_| not_found())?;
    let at = format_timestamp(store.clock().now());
    let mut tx = store.tenant(tenant_id).begin().await?;
    tx.revoke_token(token_id, &at).await.map_err(|e| match e {
        StoreError::NotFound => not_found(),
        e => e.into(),
    })?;
    let revoked = TokenRecord { revoked_at: Some(at), ..rec };
    tx.commit(entry(actor, "token_revoke", Target::Token(id.to_string()).to_string(), json!(revoked))).await?;
    Ok(revoked)
}
