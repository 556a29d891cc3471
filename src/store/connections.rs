//! Make connections (with sealed tokens) and the organizations each covers, with the plan facts last read
//! from Make. The sync moves an organization's plan facts on (see `make_sync.rs`).

use schemars::JsonSchema;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::sql::{Arg, insert_rows};
use super::{InScope, MutationTx, Store, StoreError, TenantStore, is_unique_violation};
use crate::crypto::Sealed;
use crate::make::AuthKind;

/// A stored Make connection. `sealed` is the encrypted token; it is never serialised.
#[derive(Debug, Clone)]
pub struct ConnectionRecord {
    pub id: String,
    pub label: String,
    pub base_url: String,
    pub auth_kind: AuthKind,
    pub sealed: Sealed,
    pub created_at: String,
    pub created_by: String,
    pub organizations: Vec<OrgRecord>,
    /// The token's scopes as Make reported them when connecting; `None` when unknown.
    pub token_scopes: Option<Vec<String>>,
}

/// A connected organization and the plan facts last read from Make.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct OrgRecord {
    pub organization_id: i64,
    pub connection_id: String,
    pub name: String,
    /// Make zone, e.g. "eu1.make.com".
    pub zone: Option<String>,
    /// API requests per minute allowed for the organization.
    pub api_limit: Option<i64>,
    /// Allowance per reset period: the plan's operations (equal to credits for non-AI modules) plus any
    /// extra operations bought (`allowance_extra`).
    pub allowance: Option<i64>,
    /// Extra operations bought on top of the plan, as Make reported them (`operationsExt`).
    pub allowance_extra: Option<i64>,
    /// Operations consumed in the current reset period, as Make reported it.
    pub operations_used: Option<i64>,
    /// Current reset (billing) period start, RFC 3339.
    pub last_reset: Option<String>,
    /// Current reset period end; absent on unlimited plans.
    pub next_reset: Option<String>,
    pub restart_period: Option<String>,
    /// Make paused the organization (subscription or credits).
    pub is_paused: Option<bool>,
    /// The organization's time zone (IANA), in which Make counts its days; absent until the first sync.
    pub timezone: Option<String>,
    /// Make's id of that time zone.
    #[serde(skip)]
    pub timezone_id: Option<i64>,
    pub validated_at: String,
    /// When usage was last synced; absent before the first sync.
    pub synced_at: Option<String>,
}

macro_rules! org_columns {
    () => {
        "organization_id, connection_id, name, zone, api_limit, allowance, operations_used, last_reset, next_reset,
         restart_period, is_paused, validated_at, synced_at, allowance_extra, timezone, timezone_id"
    };
}

fn opt_bool(row: &AnyRow, col: &str) -> Result<Option<bool>, sqlx::Error> {
    match row.try_get::<Option<bool>, _>(col) {
        Ok(b) => Ok(b),
        Err(_) => Ok(row.try_get::<Option<i64>, _>(col)?.map(|v| v != 0)),
    }
}

fn org_from_row(row: &AnyRow) -> Result<OrgRecord, StoreError> {
    Ok(OrgRecord {
        organization_id: row.try_get("organization_id")?,
        connection_id: row.try_get("connection_id")?,
        name: row.try_get("name")?,
        zone: row.try_get("zone")?,
        api_limit: row.try_get("api_limit")?,
        allowance: row.try_get("allowance")?,
        operations_used: row.try_get("operations_used")?,
        last_reset: row.try_get("last_reset")?,
        next_reset: row.try_get("next_reset")?,
        restart_period: row.try_get("restart_period")?,
        is_paused: opt_bool(row, "is_paused")?,
        validated_at: row.try_get("validated_at")?,
        synced_at: row.try_get("synced_at")?,
        allowance_extra: row.try_get("allowance_extra")?,
        timezone: row.try_get("timezone")?,
        timezone_id: row.try_get("timezone_id")?,
    })
}

fn connection_from_row(row: &AnyRow) -> Result<ConnectionRecord, StoreError> {
    let kind: String = row.try_get("auth_kind")?;
    Ok(ConnectionRecord {
        id: row.try_get("id")?,
        label: row.try_get("label")?,
        base_url: row.try_get("base_url")?,
        auth_kind: AuthKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt { table: "make_connections", detail: format!("auth_kind {kind:?}") })?,
        sealed: Sealed {
            key_id: row.try_get("key_id")?,
            nonce: row.try_get("nonce")?,
            ciphertext: row.try_get("ciphertext")?,
        },
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        organizations: Vec::new(),
        token_scopes: row
            .try_get::<Option<String>, _>("token_scopes")?
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| StoreError::Corrupt {
            table: "make_connections",
            detail: format!("token_scopes: {e}"),
        })?,
    })
}

fn org_args(tenant: &str, o: &OrgRecord) -> Vec<Arg> {
    vec![
        Arg::Text(tenant.to_owned()),
        Arg::Int(o.organization_id),
        Arg::Text(o.connection_id.clone()),
        Arg::Text(o.name.clone()),
        Arg::OptText(o.zone.clone()),
        Arg::OptInt(o.api_limit),
        Arg::OptInt(o.allowance),
        Arg::OptInt(o.operations_used),
        Arg::OptText(o.last_reset.clone()),
        Arg::OptText(o.next_reset.clone()),
        Arg::OptText(o.restart_period.clone()),
        Arg::OptBool(o.is_paused),
        Arg::Text(o.validated_at.clone()),
        Arg::OptText(o.synced_at.clone()),
        Arg::OptInt(o.allowance_extra),
        Arg::OptText(o.timezone.clone()),
        Arg::OptInt(o.timezone_id),
    ]
}

impl MutationTx {
    /// Store a new connection and the organizations it covers. An organization already connected in
    /// this tenant is a `Duplicate`.
    pub async fn insert_connection(&mut self, c: &ConnectionRecord) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        sqlx::query(
            "INSERT INTO make_connections (tenant_id, id, label, base_url, auth_kind, key_id, nonce, ciphertext,
                 created_at, created_by, token_scopes)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&tenant)
        .bind(&c.id)
        .bind(&c.label)
        .bind(&c.base_url)
        .bind(c.auth_kind.as_str())
        .bind(&c.sealed.key_id)
        .bind(c.sealed.nonce.clone())
        .bind(c.sealed.ciphertext.clone())
        .bind(&c.created_at)
        .bind(&c.created_by)
        .bind(c.token_scopes.as_ref().map(|s| serde_json::to_string(s).expect("a list of strings serialises")))
        .execute(self.conn())
        .await?;
        let rows = c.organizations.iter().map(|o| org_args(&tenant, o)).collect();
        insert_rows(
            self.conn(),
            concat!("INSERT INTO make_organizations (tenant_id, ", org_columns!(), ") VALUES"),
            "",
            rows,
        )
        .await
        .map_err(|e| match e {
            StoreError::Database(db)
                if is_unique_violation(&db, "make_organizations_pkey", "make_organizations.tenant_id") =>
            {
                StoreError::Duplicate("one of these organizations is already connected in this tenant".into())
            }
            other => other,
        })?;
        Ok(())
    }

    /// Remove a connection; its organizations go with it (synced usage history stays).
    pub async fn delete_connection(&mut self, id: &str) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        sqlx::query("DELETE FROM make_organizations WHERE tenant_id = $1 AND connection_id = $2")
            .bind(&tenant)
            .bind(id)
            .execute(self.conn())
            .await?;
        let done = sqlx::query("DELETE FROM make_connections WHERE tenant_id = $1 AND id = $2")
            .bind(&tenant)
            .bind(id)
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Replace a connection's sealed token (key rotation).
    pub async fn update_connection_secret(&mut self, id: &str, sealed: &Sealed) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        let done = sqlx::query(
            "UPDATE make_connections SET key_id = $3, nonce = $4, ciphertext = $5 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(&sealed.key_id)
        .bind(sealed.nonce.clone())
        .bind(sealed.ciphertext.clone())
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

impl TenantStore<'_> {
    /// Every connection of the tenant, with its organizations, oldest first.
    pub async fn connections(&self) -> Result<Vec<ConnectionRecord>, StoreError> {
        let tenant = self.tenant.to_string();
        let rows = sqlx::query(
            "SELECT id, label, base_url, auth_kind, key_id, nonce, ciphertext, created_at, created_by, token_scopes
             FROM make_connections WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(&tenant)
        .fetch_all_in(self.scoped())
        .await?;
        let mut conns = rows.iter().map(connection_from_row).collect::<Result<Vec<_>, _>>()?;
        let orgs = self.organizations().await?;
        for c in &mut conns {
            c.organizations = orgs.iter().filter(|o| o.connection_id == c.id).cloned().collect();
        }
        Ok(conns)
    }

    pub async fn connection(&self, id: &str) -> Result<ConnectionRecord, StoreError> {
        self.connections().await?.into_iter().find(|c| c.id == id).ok_or(StoreError::NotFound)
    }

    pub async fn organizations(&self) -> Result<Vec<OrgRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            org_columns!(),
            " FROM make_organizations WHERE tenant_id = $1 ORDER BY organization_id"
        ))
        .bind(self.tenant.to_string())
        .fetch_all_in(self.scoped())
        .await?;
        rows.iter().map(org_from_row).collect()
    }
}

impl Store {
    /// Every connection of every tenant with its sealed token: (tenant id, connection).
    pub async fn all_connections(&self) -> Result<Vec<(String, ConnectionRecord)>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, id, label, base_url, auth_kind, key_id, nonce, ciphertext, created_at, created_by,
                    token_scopes
             FROM make_connections ORDER BY tenant_id, id",
        )
        .fetch_all_in(self.system())
        .await?;
        rows.iter().map(|r| Ok((r.try_get("tenant_id")?, connection_from_row(r)?))).collect()
    }

    /// The master key ids that stored secrets are encrypted under.
    pub async fn secret_key_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT key_id FROM make_connections UNION SELECT key_id FROM webhooks ORDER BY key_id")
            .fetch_all_in(self.system())
            .await?;
        rows.iter().map(|r| Ok(r.try_get("key_id")?)).collect()
    }
}
