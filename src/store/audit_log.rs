//! Audit chain persistence: the append that runs inside every mutation's transaction, and the
//! streaming walk that verifies every tenant's chain.

use std::sync::Arc;

use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::sql::{Arg, Select};
use super::{Dialect, InScope, Scope, Store, StoreError, TenantStore};
use crate::audit::{
    Actor, AuditEntry, AuditKeys, AuditRecord, BreakKind, ChainBreak, ChainVerifier, Checkpoint, Outcome, TrustedKeys,
    Verified,
};
use crate::domain::TenantId;

/// When appends sign checkpoints: with which keys, and every how many records.
#[derive(Debug)]
pub struct Checkpointing {
    pub keys: Arc<AuditKeys>,
    /// Sign a checkpoint whenever the chain grows this many records past the last one (0: only on demand
    /// and on the timer).
    pub every_records: i64,
}

/// Append `entry` as the next record of `tenant`'s chain. Must run inside the mutation's transaction.
/// Signs a checkpoint in the same transaction when the chain has grown `every_records` past the last one,
/// and returns it: the caller logs it once the transaction has committed (see [`log_signed`]).
pub(super) async fn append(
    conn: &mut AnyConnection,
    dialect: Dialect,
    checkpointing: Option<&Checkpointing>,
    tenant: TenantId,
    at: String,
    entry: AuditEntry,
) -> Result<(AuditRecord, Option<Checkpoint>), StoreError> {
    let started = std::time::Instant::now();
    let tenant_id = tenant.to_string();
    let (seq, prev_hash, mut checkpoint_seq) = lock_head(conn, dialect, &tenant_id).await?;
    let record = AuditRecord::seal(tenant_id, seq + 1, at, entry, prev_hash);
    let mut signed = None;
    if let Some(c) = checkpointing.filter(|c| c.every_records > 0 && record.seq - checkpoint_seq >= c.every_records) {
        let cp = c.keys.sign(&record.tenant_id, record.seq, &record.hash, &record.at);
        insert_checkpoint(conn, &cp).await?;
        checkpoint_seq = cp.seq;
        signed = Some(cp);
    }
    // The record and the new head. On PostgreSQL they go in one statement (a data-modifying CTE), so the
    // head stays locked for one round trip less; SQLite, with no round trips, runs the two statements.
    macro_rules! insert_record {
        () => {
            "INSERT INTO audit_log (tenant_id, seq, at, actor_subject, actor_role, actor_transport, action, target,
                                    outcome, reason, request_id, before_state, after_state, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        };
    }
    let with_head = dialect == Dialect::Postgres;
    let sql = dialect.pick(
        insert_record!(),
        concat!(
            "WITH appended AS (",
            insert_record!(),
            ") UPDATE audit_heads SET seq = $2, hash = $15, checkpoint_seq = $16 WHERE tenant_id = $1"
        ),
    );
    let e = &record.entry;
    let query = sqlx::query(sql)
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
        .bind(&record.hash);
    if with_head {
        query.bind(checkpoint_seq).execute(&mut *conn).await?;
    } else {
        query.execute(&mut *conn).await?;
        set_head(conn, &record.tenant_id, record.seq, &record.hash, checkpoint_seq).await?;
    }
    crate::monitoring::audit_append(started.elapsed());
    Ok((record, signed))
}

/// Log committed checkpoints, signature included: a log shipped elsewhere is a witness the database's
/// administrators cannot rewrite. Only after commit, so the log never shows a checkpoint that was rolled back.
pub(super) fn log_signed(cp: &Checkpoint) {
    tracing::info!(
        tenant = %cp.tenant_id, seq = cp.seq, head_hash = %cp.head_hash, key_id = %cp.key_id,
        signature = %cp.signature, "audit checkpoint signed"
    );
}

/// Read and lock a tenant's chain head: (seq, hash, seq of the latest checkpoint).
async fn lock_head(
    conn: &mut AnyConnection,
    dialect: Dialect,
    tenant_id: &str,
) -> Result<(i64, String, i64), StoreError> {
    let head_sql = dialect.pick(
        "SELECT seq, hash, checkpoint_seq FROM audit_heads WHERE tenant_id = $1",
        "SELECT seq, hash, checkpoint_seq FROM audit_heads WHERE tenant_id = $1 FOR UPDATE",
    );
    let head = sqlx::query(head_sql).bind(tenant_id).fetch_optional(&mut *conn).await?;
    let Some(head) = head else {
        return Err(StoreError::Corrupt {
            table: "audit_heads",
            detail: format!("no chain head for tenant {tenant_id}"),
        });
    };
    Ok((head.try_get("seq")?, head.try_get("hash")?, head.try_get("checkpoint_seq")?))
}

async fn set_head(
    conn: &mut AnyConnection,
    tenant_id: &str,
    seq: i64,
    hash: &str,
    checkpoint_seq: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE audit_heads SET seq = $2, hash = $3, checkpoint_seq = $4 WHERE tenant_id = $1")
        .bind(tenant_id)
        .bind(seq)
        .bind(hash)
        .bind(checkpoint_seq)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn insert_checkpoint(conn: &mut AnyConnection, cp: &Checkpoint) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_checkpoints (tenant_id, seq, head_hash, at, key_id, signature)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&cp.tenant_id)
    .bind(cp.seq)
    .bind(&cp.head_hash)
    .bind(&cp.at)
    .bind(&cp.key_id)
    .bind(&cp.signature)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Sign the current head of a tenant's chain unless the latest checkpoint already covers it; returns
/// the checkpoint that covers the head and whether it was signed now. Runs in the caller's transaction.
pub(super) async fn checkpoint_head(
    conn: &mut AnyConnection,
    dialect: Dialect,
    keys: &AuditKeys,
    tenant_id: &str,
    at: String,
) -> Result<(Checkpoint, bool), StoreError> {
    let (seq, hash, checkpoint_seq) = lock_head(conn, dialect, tenant_id).await?;
    if seq == 0 {
        return Err(StoreError::Config(format!("tenant {tenant_id} has no audit records to checkpoint")));
    }
    if checkpoint_seq == seq {
        let row = sqlx::query(
            "SELECT tenant_id, seq, head_hash, at, key_id, signature FROM audit_checkpoints
             WHERE tenant_id = $1 AND seq = $2",
        )
        .bind(tenant_id)
        .bind(seq)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            return Ok((checkpoint_from_row(&row)?, false));
        }
    }
    let cp = keys.sign(tenant_id, seq, &hash, &at);
    insert_checkpoint(conn, &cp).await?;
    set_head(conn, tenant_id, seq, &hash, seq).await?;
    Ok((cp, true))
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

/// The checkpoint joined to a record in the walk (`cp_*` columns), if the record has one.
fn joined_checkpoint(row: &AnyRow, tenant_id: &str, seq: i64) -> Result<Option<Checkpoint>, StoreError> {
    let Some(head_hash) = row.try_get::<Option<String>, _>("cp_head_hash")? else { return Ok(None) };
    Ok(Some(Checkpoint {
        tenant_id: tenant_id.into(),
        seq,
        head_hash,
        at: row.try_get("cp_at")?,
        key_id: row.try_get("cp_key_id")?,
        signature: row.try_get("cp_signature")?,
    }))
}

fn checkpoint_from_row(row: &AnyRow) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        tenant_id: row.try_get("tenant_id")?,
        seq: row.try_get("seq")?,
        head_hash: row.try_get("head_hash")?,
        at: row.try_get("at")?,
        key_id: row.try_get("key_id")?,
        signature: row.try_get("signature")?,
    })
}

/// The result of verifying one tenant's chain.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct ChainReport {
    pub tenant_id: String,
    pub tenant_name: String,
    pub records_checked: i64,
    /// The chain head as stored (sequence number and hash of the last record).
    pub head_seq: i64,
    pub head_hash: String,
    /// Whether checkpoint signatures were checked (false when no audit signing key is configured).
    pub checkpoints_checked: bool,
    /// The highest sequence number vouched for by a valid signed checkpoint (0 if none).
    pub anchored_seq: i64,
    pub latest_checkpoint: Option<Checkpoint>,
    /// The first problem found, if any.
    pub first_break: Option<ChainBreak>,
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

/// Told how far a long walk (verification, export) has come.
pub trait Progress: Sync {
    /// The number of records the walk will cover.
    fn total(&self, _records: u64) {}
    /// `records` more are done.
    fn advance(&self, _records: u64) {}
}

impl Progress for () {}

/// How often a walk reports progress, in records.
const PROGRESS_EVERY: u64 = 4096;

/// Records hashed per batch while walking a chain.
const HASH_BATCH: usize = 1024;

/// A row of the walk: the record with the checkpoint stored for it, or why the row is not a record.
type Walked = Result<(AuditRecord, Option<Checkpoint>), ChainBreak>;

/// Feed hashed rows of the walk to `verifier` in order; the first break is returned with its record.
fn feed_walked(
    verifier: &mut ChainVerifier<'_>,
    hashed: Vec<(Walked, bool)>,
    walked: &mut u64,
    progress: &dyn Progress,
) -> Option<(ChainBreak, Option<AuditRecord>)> {
    for (row, hash_ok) in hashed {
        let (record, checkpoint) = match row {
            Ok(r) => r,
            Err(b) => return Some((b, None)),
        };
        let mut step = verifier.check_link(&record.link(hash_ok));
        if step.is_ok()
            && let Some(cp) = &checkpoint
        {
            step = verifier.checkpoint(cp);
        }
        if let Err(b) = step {
            return Some((b, Some(record)));
        }
        *walked += 1;
        if walked.is_multiple_of(PROGRESS_EVERY) {
            progress.advance(PROGRESS_EVERY);
        }
    }
    None
}

/// The columns `record_from_row` reads, as a literal so statements can be built with `concat!`.
macro_rules! record_columns {
    () => {
        "tenant_id, seq, at, actor_subject, actor_role, actor_transport, action, target, outcome, reason, request_id,
         before_state, after_state, prev_hash, hash"
    };
}

/// One tenant's records in sequence order with the checkpoint of each record, if any (`cp_*` columns).
const WALK_SQL: &str = "SELECT a.tenant_id, a.seq, a.at, a.actor_subject, a.actor_role, a.actor_transport, a.action,
        a.target, a.outcome, a.reason, a.request_id, a.before_state, a.after_state, a.prev_hash, a.hash,
        c.head_hash AS cp_head_hash, c.at AS cp_at, c.key_id AS cp_key_id, c.signature AS cp_signature
     FROM audit_log a
     LEFT JOIN audit_checkpoints c ON c.tenant_id = a.tenant_id AND c.seq = a.seq
     WHERE a.tenant_id = $1 AND a.seq <= $2
     ORDER BY a.seq";

const CHECKPOINT_COLUMNS: &str = "tenant_id, seq, head_hash, at, key_id, signature";

/// A tenant's chain head as stored.
struct Head {
    tenant_id: String,
    tenant_name: String,
    seq: i64,
    hash: String,
}

/// What an export holds: records in order, each followed by its checkpoint when it has one.
pub enum ExportItem {
    Record(Box<AuditRecord>),
    Checkpoint(Checkpoint),
}

/// Filters of [`TenantStore::query_audit`]. Times are stored-format timestamps (RFC 3339 UTC, fixed width).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub since: Option<String>,
    pub until: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Exact target, or a prefix when it ends with `*` (e.g. `budget:*`).
    pub target: Option<String>,
    pub outcome: Option<Outcome>,
    /// Only records with a lower sequence number (the cursor of the previous page).
    pub before_seq: Option<i64>,
    pub limit: i64,
}

impl Store {
    /// Attach the audit signing key: appends then sign a checkpoint every `every_records` records, and
    /// verification checks checkpoints against the key (and its retired predecessors).
    pub fn with_audit_keys(mut self, keys: Option<Arc<AuditKeys>>, every_records: i64) -> Self {
        self.checkpointing = keys.map(|keys| Arc::new(Checkpointing { keys, every_records }));
        self
    }

    /// The audit signing keys, when configured.
    pub fn audit_keys(&self) -> Option<&Arc<AuditKeys>> {
        self.checkpointing.as_ref().map(|c| &c.keys)
    }

    fn trusted_keys(&self) -> Option<&TrustedKeys> {
        self.checkpointing.as_ref().map(|c| c.keys.trusted())
    }

    async fn heads(&self, only: Option<TenantId>) -> Result<Vec<Head>, StoreError> {
        let rows =
            match only {
                Some(t) => sqlx::query(
                    "SELECT h.tenant_id, t.name, h.seq, h.hash FROM audit_heads h JOIN tenants t ON t.id = h.tenant_id
                     WHERE h.tenant_id = $1",
                )
                .bind(t.to_string())
                .fetch_all_in(self.system())
                .await?,
                None => sqlx::query(
                    "SELECT h.tenant_id, t.name, h.seq, h.hash FROM audit_heads h JOIN tenants t ON t.id = h.tenant_id
                     ORDER BY t.name",
                )
                .fetch_all_in(self.system())
                .await?,
            };
        let mut heads = Vec::with_capacity(rows.len());
        for row in rows {
            let tenant_id: String = row.try_get("tenant_id")?;
            heads.push(Head {
                tenant_id,
                tenant_name: row.try_get("name")?,
                seq: row.try_get("seq")?,
                hash: row.try_get("hash")?,
            });
        }
        Ok(heads)
    }

    /// Walk every tenant's chain (or one tenant's), streaming records in sequence order.
    pub async fn verify_audit(&self, only: Option<TenantId>) -> Result<VerifyReport, StoreError> {
        self.verify_audit_with(only, &()).await
    }

    /// [`verify_audit`](Self::verify_audit), reporting progress.
    pub async fn verify_audit_with(
        &self,
        only: Option<TenantId>,
        progress: &dyn Progress,
    ) -> Result<VerifyReport, StoreError> {
        let heads = self.heads(only).await?;
        progress.total(heads.iter().map(|h| h.seq.max(0) as u64).sum());
        let mut chains = Vec::with_capacity(heads.len());
        for head in heads {
            chains.push(self.verify_chain(head, progress).await?);
        }
        Ok(VerifyReport { chains })
    }

    async fn verify_chain(&self, head: Head, progress: &dyn Progress) -> Result<ChainReport, StoreError> {
        let mut verifier = ChainVerifier::new(head.tenant_id.clone(), self.trusted_keys());
        let walked = self.walk(&head, &mut verifier, progress).await?;
        let records_checked = verifier.checked();
        let result = match walked {
            Err(b) => Err(b),
            Ok(()) => self.finish_chain(&head, verifier).await?,
        };
        let (anchored_seq, latest_checkpoint, first_break) = match result {
            Ok(v) => (v.anchored_seq, v.latest_checkpoint, None),
            Err(b) => (0, None, Some(b)),
        };
        Ok(ChainReport {
            tenant_id: head.tenant_id,
            tenant_name: head.tenant_name,
            records_checked,
            head_seq: head.seq,
            head_hash: head.hash,
            checkpoints_checked: self.checkpointing.is_some(),
            anchored_seq,
            latest_checkpoint,
            first_break,
        })
    }

    /// Feed the chain's records and their checkpoints to `verifier`; the first break ends the walk.
    async fn walk(
        &self,
        head: &Head,
        verifier: &mut ChainVerifier<'_>,
        progress: &dyn Progress,
    ) -> Result<Result<(), ChainBreak>, StoreError> {
        let mut tx = self.scoped_tx(Scope::System, false).await?;
        let mut rows = sqlx::query(WALK_SQL).bind(&head.tenant_id).bind(head.seq).fetch(&mut *tx);
        let mut walked = 0u64;
        let mut broken = None;
        // Rows are decoded here while the batch before them is hashed on a blocking thread; the verifier
        // then follows the links in order. A malformed row ends the batch it is in.
        let mut batch: Vec<Walked> = Vec::with_capacity(HASH_BATCH);
        let mut in_flight: Option<tokio::task::JoinHandle<Vec<(Walked, bool)>>> = None;
        loop {
            let row = rows.try_next().await?;
            let end = match row {
                None => true,
                Some(row) => {
                    let seq: i64 = row.try_get("seq")?;
                    match record_from_row(&row) {
                        Ok(r) => batch.push(Ok((r, joined_checkpoint(&row, &head.tenant_id, seq)?))),
                        Err(e) => batch.push(Err(ChainBreak::new(seq, BreakKind::Malformed, e.to_string()))),
                    }
                    matches!(batch.last(), Some(Err(_)))
                }
            };
            if batch.len() < HASH_BATCH && !end {
                continue;
            }
            let full = std::mem::replace(&mut batch, Vec::with_capacity(HASH_BATCH));
            let hashing = tokio::task::spawn_blocking(move || {
                full.into_iter()
                    .map(|w| {
                        let ok = matches!(&w, Ok((r, _)) if r.hash_matches());
                        (w, ok)
                    })
                    .collect()
            });
            let mut ready = in_flight.replace(hashing).into_iter().collect::<Vec<_>>();
            if end {
                ready.extend(in_flight.take());
            }
            for done in ready {
                let hashed = done.await.expect("hashing audit records does not panic");
                broken = feed_walked(verifier, hashed, &mut walked, progress);
                if broken.is_some() {
                    break;
                }
            }
            if end || broken.is_some() {
                break;
            }
        }
        drop(rows);
        drop(tx);
        progress.advance(walked % PROGRESS_EVERY);
        match broken {
            None => Ok(Ok(())),
            Some((b, None)) => Ok(Err(b)),
            Some((b, Some(record))) => {
                let tail = verifier.tail_hash().to_owned();
                Ok(Err(self.diagnose(head, b, &record, &tail).await?))
            }
        }
    }

    /// Refine a hash mismatch whose link is broken too: if the record is intact but sealed for another
    /// position (its successor there links to it), records were moved or swapped.
    async fn diagnose(
        &self,
        head: &Head,
        b: ChainBreak,
        record: &AuditRecord,
        tail: &str,
    ) -> Result<ChainBreak, StoreError> {
        if b.kind != BreakKind::HashMismatch || record.prev_hash == tail {
            return Ok(b);
        }
        let successor =
            sqlx::query("SELECT seq FROM audit_log WHERE tenant_id = $1 AND prev_hash = $2 ORDER BY seq LIMIT 1")
                .bind(&head.tenant_id)
                .bind(&record.hash)
                .fetch_optional_in(self.system())
                .await?;
        let sealed_as = match successor {
            Some(row) => Some(row.try_get::<i64, _>("seq")? - 1),
            None if record.hash == head.hash => Some(head.seq),
            None => None,
        };
        Ok(match sealed_as {
            Some(s) if s != record.seq => ChainBreak::new(
                record.seq,
                BreakKind::Reordered,
                format!("the record at seq {} was sealed as seq {s}: records were moved or swapped", record.seq),
            ),
            _ => b,
        })
    }

    /// After the walk: a signed checkpoint or the stored head beyond the last record means a cut tail.
    async fn finish_chain(
        &self,
        head: &Head,
        mut verifier: ChainVerifier<'_>,
    ) -> Result<Result<Verified, ChainBreak>, StoreError> {
        if self.checkpointing.is_some() {
            let sql = format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE tenant_id = $1 AND seq > $2 ORDER BY seq DESC LIMIT 1"
            );
            let latest = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&head.tenant_id)
                .bind(verifier.checked())
                .fetch_optional_in(self.system())
                .await?;
            if let Some(row) = latest {
                let cp = checkpoint_from_row(&row)?;
                // Signed after this walk read the head: the chain has grown meanwhile, nothing is missing.
                let grown = cp.seq > head.seq && self.head_seq(&head.tenant_id).await? >= cp.seq;
                if !grown && let Err(b) = verifier.checkpoint(&cp) {
                    return Ok(Err(b));
                }
            }
        }
        let v = match verifier.finish() {
            Ok(v) => v,
            Err(b) => return Ok(Err(b)),
        };
        if v.records_checked < head.seq {
            return Ok(Err(ChainBreak::new(
                v.records_checked + 1,
                BreakKind::MissingTail,
                format!("the chain head says {} records; only {} remain", head.seq, v.records_checked),
            )));
        }
        if v.head_hash != head.hash {
            return Ok(Err(ChainBreak::new(
                head.seq,
                BreakKind::HeadMismatch,
                format!("the stored chain head's hash is {}, the last record's is {}", head.hash, v.head_hash),
            )));
        }
        Ok(Ok(v))
    }

    /// The sequence number of a tenant's last audit record.
    pub async fn audit_head_seq(&self, tenant: TenantId) -> Result<i64, StoreError> {
        self.head_seq(&tenant.to_string()).await
    }

    async fn head_seq(&self, tenant_id: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT seq FROM audit_heads WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one_in(self.system())
            .await?;
        Ok(row.try_get("seq")?)
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
        let rows = sqlx::query(sql)
            .bind(tenant.to_string())
            .bind(after_seq)
            .bind(limit)
            .fetch_all_in(self.scoped_to(tenant))
            .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Sign the head of `tenant`'s chain unless the latest checkpoint already covers it; returns the
    /// checkpoint covering the head. Used by the checkpoint timer and before an export.
    pub async fn checkpoint_audit_head(&self, tenant: TenantId) -> Result<Checkpoint, StoreError> {
        let keys = self.audit_keys().cloned().ok_or_else(no_signing_key)?;
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let at = crate::domain::clock::format_timestamp(self.clock.now());
        let (cp, new) = checkpoint_head(&mut tx, self.dialect, &keys, &tenant.to_string(), at).await?;
        tx.commit().await?;
        if new {
            log_signed(&cp);
        }
        Ok(cp)
    }

    /// Sign a checkpoint for every chain that has grown since its last one (the checkpoint timer).
    /// Returns how many were signed.
    pub async fn checkpoint_grown_chains(&self) -> Result<usize, StoreError> {
        let rows = sqlx::query("SELECT tenant_id FROM audit_heads WHERE seq > checkpoint_seq ORDER BY tenant_id")
            .fetch_all_in(self.system())
            .await?;
        let mut signed = 0;
        for row in rows {
            let tenant: String = row.try_get("tenant_id")?;
            let tenant: TenantId = tenant
                .parse()
                .map_err(|_| StoreError::Corrupt { table: "audit_heads", detail: format!("bad tenant id {tenant}") })?;
            self.checkpoint_audit_head(tenant).await?;
            signed += 1;
        }
        Ok(signed)
    }

    /// Stream `tenant`'s chain for export: records 1..=`upto` in order, each followed by its checkpoint.
    /// `sink` errors (a full disk, a closed pipe) end the stream and are returned as [`StoreError::Io`].
    pub async fn export_audit(
        &self,
        tenant: TenantId,
        upto: i64,
        progress: &dyn Progress,
        mut sink: impl FnMut(ExportItem) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let tenant_id = tenant.to_string();
        progress.total(upto.max(0) as u64);
        let mut tx = self.scoped_tx(Scope::Tenant(tenant), false).await?;
        let mut rows = sqlx::query(WALK_SQL).bind(&tenant_id).bind(upto).fetch(&mut *tx);
        let mut n = 0u64;
        while let Some(row) = rows.try_next().await? {
            let record = record_from_row(&row)?;
            let cp = joined_checkpoint(&row, &tenant_id, record.seq)?;
            sink(ExportItem::Record(Box::new(record)))?;
            if let Some(cp) = cp {
                sink(ExportItem::Checkpoint(cp))?;
            }
            n += 1;
            if n.is_multiple_of(PROGRESS_EVERY) {
                progress.advance(PROGRESS_EVERY);
            }
        }
        progress.advance(n % PROGRESS_EVERY);
        Ok(())
    }
}

fn no_signing_key() -> StoreError {
    StoreError::Config(format!("{}; checkpoints cannot be signed", crate::audit::checkpoint::NO_SIGNING_KEY))
}

impl TenantStore<'_> {
    /// The tenant's audit records, newest first, filtered; at most `q.limit`.
    pub async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let mut select = Select::new(
            concat!("SELECT ", record_columns!(), " FROM audit_log WHERE tenant_id = $1"),
            vec![Arg::Text(self.tenant.to_string())],
        );
        if let Some(seq) = q.before_seq {
            select.push(" AND seq < #", Arg::Int(seq));
        }
        if let Some(since) = &q.since {
            select.push(" AND at >= #", Arg::Text(since.clone()));
        }
        if let Some(until) = &q.until {
            select.push(" AND at < #", Arg::Text(until.clone()));
        }
        if let Some(actor) = &q.actor {
            select.push(" AND actor_subject = #", Arg::Text(actor.clone()));
        }
        if let Some(action) = &q.action {
            select.push(" AND action = #", Arg::Text(action.clone()));
        }
        match q.target.as_deref().map(|t| (t.strip_suffix('*'), t)) {
            Some((Some(prefix), _)) => {
                // Not LIKE: no escaping of `%`/`_`, case-sensitive in both databases, independent of collation.
                select.push(" AND substr(target, 1, CAST(# AS INTEGER))", Arg::Int(prefix.chars().count() as i64));
                select.push(" = #", Arg::Text(prefix.to_owned()));
            }
            Some((None, exact)) => {
                select.push(" AND target = #", Arg::Text(exact.to_owned()));
            }
            None => {}
        }
        if let Some(outcome) = q.outcome {
            select.push(" AND outcome = #", Arg::Text(outcome.as_str().into()));
        }
        select.push(" ORDER BY seq DESC LIMIT #", Arg::Int(q.limit));
        select.fetch_all_in(self.scoped()).await?.iter().map(record_from_row).collect()
    }

    /// The tenant's chain head: its sequence number and its last record (`None` for an empty chain).
    pub async fn audit_head(&self) -> Result<(i64, Option<AuditRecord>), StoreError> {
        let tenant = self.tenant.to_string();
        let row = sqlx::query("SELECT seq FROM audit_heads WHERE tenant_id = $1")
            .bind(&tenant)
            .fetch_one_in(self.scoped())
            .await?;
        let seq: i64 = row.try_get("seq")?;
        let sql = concat!("SELECT ", record_columns!(), " FROM audit_log WHERE tenant_id = $1 AND seq = $2");
        let last = sqlx::query(sql).bind(&tenant).bind(seq).fetch_optional_in(self.scoped()).await?;
        Ok((seq, last.as_ref().map(record_from_row).transpose()?))
    }

    /// The tenant's latest checkpoint, if any.
    pub async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant.to_string())
            .fetch_optional_in(self.scoped())
            .await?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }
}

impl super::MutationTx {
    /// Append `entry` (the request for a checkpoint), sign the chain head it creates and commit, all in
    /// this one transaction: the checkpoint covers its own audit record.
    pub async fn commit_with_checkpoint(mut self, entry: AuditEntry) -> Result<(AuditRecord, Checkpoint), StoreError> {
        let keys = self.store.audit_keys().cloned().ok_or_else(no_signing_key)?;
        let record = self.record_also(entry).await?;
        let dialect = self.dialect();
        let tenant = self.tenant.to_string();
        let (cp, new) = checkpoint_head(self.conn(), dialect, &keys, &tenant, record.at.clone()).await?;
        self.tx.commit().await?;
        self.signed.iter().chain(new.then_some(&cp)).for_each(log_signed);
        Ok((record, cp))
    }
}
