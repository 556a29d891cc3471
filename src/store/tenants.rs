//! Tenants and API tokens. Creating a tenant also creates its audit chain, whose first record is the
//! creation itself. Tokens are stored as SHA-256 hashes only.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{InScope, MutationTx, Store, StoreError, TenantStore, audit_log, is_unique_violation};
use crate::auth::Role;
use crate::domain::{TenantId, TokenId};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantRecord {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

/// An issued API token (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRecord {
    pub id: String,
    pub tenant_id: String,
    pub tenant_name: String,
    pub subject: String,
    pub role: Role,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

fn tenant_from_row(row: &AnyRow) -> Result<TenantRecord, StoreError> {
    Ok(TenantRecord { id: row.try_get("id")?, name: row.try_get("name")?, created_at: row.try_get("created_at")? })
}

fn token_from_row(row: &AnyRow) -> Result<TokenRecord, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        tenant_name: row.try_get("tenant_name")?,
        subject: row.try_get("subject")?,
        role: role.parse().map_err(|e: String| StoreError::Corrupt { table: "api_tokens", detail: e })?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const TOKEN_SELECT: &str = "SELECT k.id, k.tenant_id, t.name AS tenant_name, k.subject, k.role, k.created_at,
        k.expires_at, k.revoked_at
     FROM api_tokens k JOIN tenants t ON t.id = k.tenant_id";

impl MutationTx {
    /// Insert this transaction's tenant and its empty audit chain.
    pub async fn insert_tenant(&mut self, name: &str, created_at: &str, created_by: &str) -> Result<(), StoreError> {
        let tenant = self.tenant;
        sqlx::query("INSERT INTO tenants (id, name, created_at, created_by) VALUES ($1, $2, $3, $4)")
            .bind(tenant.to_string())
            .bind(name)
            .bind(created_at)
            .bind(created_by)
            .execute(self.conn())
            .await
            .map_err(|e| {
                if is_unique_violation(&e, "tenants_name_unique", "tenants.name") {
                    StoreError::Duplicate(format!("a tenant named {name:?} already exists"))
                } else {
                    e.into()
                }
            })?;
        audit_log::init_head(self.conn(), tenant).await
    }

    /// Store a new token (`t.tenant_*` and `t.revoked_at` are not written: the token belongs to this
    /// tenant and is not revoked).
    pub async fn insert_token(
        &mut self,
        t: &TokenRecord,
        token_hash: &str,
        created_by: &str,
    ) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        sqlx::query(
            "INSERT INTO api_tokens (id, tenant_id, subject, role, token_hash, created_at, created_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&t.id)
        .bind(tenant)
        .bind(&t.subject)
        .bind(t.role.as_str())
        .bind(token_hash)
        .bind(&t.created_at)
        .bind(created_by)
        .bind(t.expires_at.as_deref())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Revoke a token of this tenant. `NotFound` if there is no such token or it is already revoked.
    pub async fn revoke_token(&mut self, id: TokenId, at: &str) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(tenant)
        .bind(id.to_string())
        .bind(at)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

impl TenantStore<'_> {
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let sql = format!("{TOKEN_SELECT} WHERE k.tenant_id = $1 ORDER BY k.id");
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(self.tenant.to_string()).fetch_all_in(self.scoped()).await?;
        rows.iter().map(token_from_row).collect()
    }

    /// One of this tenant's tokens by id, whatever its state.
    pub async fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("{TOKEN_SELECT} WHERE k.tenant_id = $1 AND k.id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant.to_string())
            .bind(id)
            .fetch_optional_in(self.scoped())
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }
}

impl Store {
    pub async fn tenant_by_id(&self, id: TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional_in(self.system())
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<TenantRecord>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional_in(self.system())
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    pub async fn tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY name").fetch_all_in(self.system()).await?;
        rows.iter().map(tenant_from_row).collect()
    }

    /// The token with this hash, whatever its state (the caller checks expiry and revocation).
    pub async fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("{TOKEN_SELECT} WHERE k.token_hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(token_hash).fetch_optional_in(self.system()).await?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub async fn token_by_id(&self, id: TokenId) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("{TOKEN_SELECT} WHERE k.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_string()).fetch_optional_in(self.system()).await?;
        row.as_ref().map(token_from_row).transpose()
    }
}
