//! Audit chain persistence: the append that runs inside every mutation's transaction, and the
//! streaming walk that verifies every tenant's chain.

use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Dialect, Store, StoreError};
use crate::audit::{Actor, AuditEntry, AuditRecord, ChainBreak, ChainVerifier, Outcome};
use crate::domain::TenantId;

/// Append `entry` as the next record of `tenant`'s chain. Must run inside the mutation's transaction.
pub(super) async fn append(
    conn: &mut AnyConnection,
    dialect: Dialect,
    tenant: TenantId,
    at: String,
    entry: AuditEntry,
) -> Result<AuditRecord, StoreError> {
    let tenant_id = tenant.to_string();
    let head_sql = dialect.pick(
        "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1",
        "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1 FOR UPDATE",
    );
    let head = sqlx::query(head_sql).bind(&tenant_id).fetch_optional(&mut *conn).await?;
    let Some(head) = head else {
        return Err(StoreError::Corrupt {
            table: "audit_heads",
            detail: format!("no chain head for tenant {tenant_id}"),
        });
    };
    let (seq, prev_hash): (i64, String) = (head.try_get("seq")?, head.try_get("hash")?);
    let record = AuditRecord::seal(tenant_id, seq + 1, at, entry, prev_hash);
    let e = &record.entry;
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, seq, at, actor_subject, actor_role, actor_transport, action, target,
                                outcome, reason, request_id, before_state, after_state, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&record.tenant_id)
    .bind(record.seq)
    .bind(&record.at)
    .bind(&e.actor.subject)
    .bind(&e.actor.role)
    .bind(&e.actor.transport)
    .bind(&e.action)
    .bind(&e.target)
    .bind(e.outcome.as_str())
    .bind(e.reason.as_deref())
    .bind(&e.request_id)
    .bind(e.before.as_ref().map(Value::to_string))
    .bind(e.after.as_ref().map(Value::to_string))
    .bind(&record.prev_hash)
    .bind(&record.hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE audit_heads SET seq = $2, hash = $3 WHERE tenant_id = $1")
        .bind(&record.tenant_id)
        .bind(record.seq)
        .bind(&record.hash)
        .execute(&mut *conn)
        .await?;
    Ok(record)
}

/// Create the (empty) chain head of a new tenant. Runs in the tenant-creation transaction.
pub(super) async fn init_head(conn: &mut AnyConnection, tenant: TenantId) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, 0, $2)")
        .bind(tenant.to_string())
        .bind(crate::audit::GENESIS_HASH)
        .execute(conn)
        .await?;
    Ok(())
}

fn record_from_row(row: &AnyRow) -> Result<AuditRecord, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt { table: "audit_log", detail };
    let json = |col: &str| -> Result<Option<Value>, StoreError> {
        row.try_get::<Option<String>, _>(col)?
            .map(|s| serde_json::from_str(&s).map_err(|e| corrupt(format!("{col} is not JSON: {e}"))))
            .transpose()
    };
    let outcome: String = row.try_get("outcome")?;
    Ok(AuditRecord {
        tenant_id: row.try_get("tenant_id")?,
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        entry: AuditEntry {
            actor: Actor {
                subject: row.try_get("actor_subject")?,
                role: row.try_get("actor_role")?,
                transport: row.try_get("actor_transport")?,
            },
            action: row.try_get("action")?,
            target: row.try_get("target")?,
            outcome: Outcome::parse(&outcome).ok_or_else(|| corrupt(format!("unknown outcome {outcome:?}")))?,
            reason: row.try_get("reason")?,
            request_id: row.try_get("request_id")?,
            before: json("before_state")?,
            after: json("after_state")?,
        },
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// The result of verifying one tenant's chain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChainReport {
    pub tenant_id: String,
    pub tenant_name: String,
    pub records_checked: i64,
    pub head_seq: i64,
    pub head_hash: String,
    /// The first problem found, if any: the record's sequence number and the reason.
    pub first_break: Option<String>,
}

/// The result of verifying every chain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub chains: Vec<ChainReport>,
}

impl VerifyReport {
    pub fn is_valid(&self) -> bool {
        self.chains.iter().all(|c| c.first_break.is_none())
    }
}

/// The columns `record_from_row` reads, as a literal so statements can be built with `concat!`.
macro_rules! record_columns {
    () => {
        "tenant_id, seq, at, actor_subject, actor_role, actor_transport, action, target, outcome, reason, request_id,
         before_state, after_state, prev_hash, hash"
    };
}

impl Store {
    /// Walk every tenant's chain (or one tenant's), streaming records in sequence order.
    pub async fn verify_audit(&self, only: Option<TenantId>) -> Result<VerifyReport, StoreError> {
        let heads = sqlx::query(
            "SELECT h.tenant_id, t.name, h.seq, h.hash FROM audit_heads h JOIN tenants t ON t.id = h.tenant_id
             ORDER BY t.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut chains = Vec::with_capacity(heads.len());
        for head in heads {
            let tenant_id: String = head.try_get("tenant_id")?;
            if only.is_some_and(|t| t.to_string() != tenant_id) {
                continue;
            }
            let (head_seq, head_hash): (i64, String) = (head.try_get("seq")?, head.try_get("hash")?);
            let mut verifier = ChainVerifier::new(tenant_id.clone());
            let sql = concat!(
                "SELECT ",
                record_columns!(),
                " FROM audit_log WHERE tenant_id = $1 AND seq <= $2 ORDER BY seq"
            );
            let mut rows = sqlx::query(sql).bind(&tenant_id).bind(head_seq).fetch(&self.pool);
            let mut first_break = None;
            while let Some(row) = rows.try_next().await? {
                let seq: i64 = row.try_get("seq")?;
                let checked = record_from_row(&row)
                    .map_err(|e| e.to_string())
                    .and_then(|r| verifier.check(&r).map_err(|b| b.to_string()));
                if let Err(reason) = checked {
                    first_break = Some(format!("record seq {seq}: {reason}"));
                    break;
                }
            }
            drop(rows);
            if first_break.is_none()
                && let Err(b) = verifier.finish(head_seq, &head_hash)
            {
                let seq = match &b {
                    ChainBreak::HeadMismatch { last_seq, .. } => last_seq + 1,
                    _ => head_seq,
                };
                first_break = Some(format!("record seq {seq}: {b}"));
            }
            chains.push(ChainReport {
                tenant_id,
                tenant_name: head.try_get("name")?,
                records_checked: verifier.checked(),
                head_seq,
                head_hash,
                first_break,
            });
        }
        Ok(VerifyReport { chains })
    }

    /// One tenant's records in sequence order (for tests and export; bounded by `limit`).
    pub async fn audit_records(
        &self,
        tenant: TenantId,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            record_columns!(),
            " FROM audit_log WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        );
        let rows = sqlx::query(sql).bind(tenant.to_string()).bind(after_seq).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(record_from_row).collect()
    }
}
