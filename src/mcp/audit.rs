//! Audit tools: verify the caller's tenant's chain, sign a checkpoint of it, and search it.

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Json;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::Parameters;
use super::{BudgetServer, CallCtx, ToolError};
use crate::audit::{AuditRecord, Checkpoint, Outcome};
use crate::domain::clock::{format_timestamp, parse_rfc3339};
use crate::domain::{ValidationError, validation};
use crate::engine::checkpoints;
use crate::store::{AuditQuery, ChainReport, StoreError};

const PAGE_MAX: u32 = 500;

#[derive(Debug, Serialize, JsonSchema)]
pub struct ChainVerification {
    /// True when every record and checkpoint checked out.
    pub valid: bool,
    /// Records checked, the stored head, whether checkpoints were checked (false when the server has no
    /// signing key), how far signatures vouch for the chain (`anchored_seq`), the latest checkpoint, and
    /// the first problem: the lowest sequence number that cannot be trusted, the kind (hash_mismatch,
    /// broken_link, gap, reordered, inserted, missing_tail, checkpoint_mismatch, bad_checkpoint,
    /// head_mismatch, …) and what was seen.
    #[serde(flatten)]
    pub chain: ChainReport,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// The public key that verifies it (base64 Ed25519), as `make-budget-mcp audit public-key` prints it.
    pub public_key: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryAuditArgs {
    /// Only records at or after this time (RFC 3339, e.g. "2026-11-01T00:00:00Z").
    #[serde(default)]
    #[schemars(length(min = 10, max = 40))]
    pub since: Option<String>,
    /// Only records before this time (RFC 3339).
    #[serde(default)]
    #[schemars(length(min = 10, max = 40))]
    pub until: Option<String>,
    /// Only records by this actor: a token subject, the local operator, or "system:evaluator" for automated work.
    #[serde(default)]
    #[schemars(length(min = 1, max = 200))]
    pub actor: Option<String>,
    /// Only records of this tool or command, e.g. "update_budget" or "cli:token issue".
    #[serde(default)]
    #[schemars(length(min = 1, max = 100))]
    pub tool: Option<String>,
    /// Only records about this target, e.g. "budget:0193…"; end with `*` for a prefix, e.g. "budget:*".
    #[serde(default)]
    #[schemars(length(min = 1, max = 300))]
    pub target: Option<String>,
    /// Only "success" (applied mutations) or "denied" (refused calls).
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// 1–500, default 50.
    #[serde(default = "default_limit")]
    #[schemars(range(min = 1, max = PAGE_MAX))]
    pub limit: u32,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    #[schemars(length(min = 1, max = 16))]
    pub cursor: Option<String>,
}

fn default_limit() -> u32 {
    50
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AuditPage {
    /// Newest first. Secrets were redacted before the records were written and stay redacted.
    pub records: Vec<AuditRecord>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn time_arg(field: &str, value: &Option<String>) -> Result<Option<String>, ValidationError> {
    value
        .as_deref()
        .map(|v| {
            parse_rfc3339(v.trim()).map(format_timestamp).ok_or_else(|| {
                ValidationError::new(
                    field,
                    "must be an RFC 3339 time with an offset of Z or ±HH:MM (hours 00-23), e.g. 2026-11-01T00:00:00Z",
                )
            })
        })
        .transpose()
}

fn optional_text(field: &str, value: &Option<String>, max: usize) -> Result<Option<String>, ValidationError> {
    value.as_deref().map(|v| validation::text(field, v, 1, max)).transpose()
}

impl QueryAuditArgs {
    fn to_query(&self) -> Result<AuditQuery, ValidationError> {
        let limit = validation::int_range("limit", i64::from(self.limit), 1, i64::from(PAGE_MAX))?;
        let since = time_arg("since", &self.since)?;
        let until = time_arg("until", &self.until)?;
        if let (Some(s), Some(u)) = (&since, &until)
            && u <= s
        {
            return Err(ValidationError::new("until", "must be later than `since`"));
        }
        let before_seq = self
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<i64>().ok().filter(|n| (1..=validation::JSON_INT_MAX).contains(n)).ok_or_else(|| {
                    ValidationError::new("cursor", "must be the `next_cursor` of a previous page (a sequence number)")
                })
            })
            .transpose()?;
        Ok(AuditQuery {
            since,
            until,
            actor: optional_text("actor", &self.actor, 200)?,
            action: optional_text("tool", &self.tool, 100)?,
            target: optional_text("target", &self.target, 300)?,
            outcome: self.outcome,
            before_seq,
            limit,
        })
    }
}

#[tool_router(router = audit_tools, vis = "pub(super)")]
impl BudgetServer {
    /// Verify your tenant's tamper-evident audit log: recompute every record's hash and link in order, and
    /// check every signed checkpoint against the server's public key. Reports records checked, the head,
    /// how far signatures vouch for the chain, and the first record that cannot be trusted with the reason
    /// (edited, deleted, reordered, inserted, tail cut off, rewritten after a checkpoint). Takes no
    /// arguments; on long chains it takes a few seconds per million records.
    #[tool(annotations(
        title = "Verify audit chain",
        read_only_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn verify_audit_chain(
        &self,
        Parameters(_): Parameters<super::params::NoArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<ChainVerification>, ToolError> {
        let report = self.app.store.verify_audit(Some(call.principal.tenant_id)).await?;
        let c = report.chains.into_iter().next().ok_or_else(|| {
            ToolError::from(StoreError::Corrupt { table: "audit_heads", detail: "no chain head".into() })
        })?;
        Ok(Json(ChainVerification { valid: c.first_break.is_none(), chain: c }))
    }

    /// Sign a checkpoint of your tenant's audit chain now: an Ed25519 signature over the tenant, the
    /// number of records, the last record's hash and the time. Anyone holding the server's public key can
    /// later prove the chain had exactly those records, so keep the returned checkpoint somewhere outside
    /// this server (a ticket, an email, your SIEM). The request itself is audited and covered. The server
    /// also signs checkpoints on its own every N records and every T minutes. Takes no arguments.
    #[tool(annotations(
        title = "Create audit checkpoint",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn create_audit_checkpoint(
        &self,
        Parameters(_): Parameters<super::params::NoArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<SignedCheckpoint>, ToolError> {
        let (checkpoint, public_key) = checkpoints::sign(&call.caller(&self.app)).await?;
        Ok(Json(SignedCheckpoint { checkpoint, public_key }))
    }

    /// Search your tenant's audit log, newest first: filter by time range (`since`, `until`), `actor`,
    /// `tool`, `target` (exact, or a prefix ending in `*`) and `outcome`; page with `cursor`. Every
    /// mutation and every denied call is in it, with redacted before/after states, the request id and the
    /// record's place in the hash chain.
    #[tool(annotations(
        title = "Query audit log",
        read_only_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn query_audit_log(
        &self,
        Parameters(args): Parameters<QueryAuditArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<AuditPage>, ToolError> {
        let query = args.to_query()?;
        let records = self.tenant(&call).query_audit(&query).await?;
        let next_cursor =
            (records.len() as i64 == query.limit).then(|| records.last().map(|r| r.seq.to_string())).flatten();
        Ok(Json(AuditPage { records, next_cursor }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: serde_json::Value) -> QueryAuditArgs {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn query_arguments_are_checked_and_named() {
        let q =
            args(serde_json::json!({"since": "2026-11-01T00:00:00+01:00", "target": "budget:*"})).to_query().unwrap();
        assert_eq!(q.since.as_deref(), Some("2026-10-31T23:00:00.000000Z"));
        assert_eq!(q.limit, 50);
        let e = args(serde_json::json!({"since": "yesterday"})).to_query().unwrap_err();
        assert_eq!(e.field, "since");
        let e = args(serde_json::json!({"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}))
            .to_query()
            .unwrap_err();
        assert_eq!(e.field, "until");
        assert_eq!(args(serde_json::json!({"cursor": "0"})).to_query().unwrap_err().field, "cursor");
        assert_eq!(args(serde_json::json!({"limit": 501})).to_query().unwrap_err().field, "limit");
        assert_eq!(args(serde_json::json!({"actor": "  "})).to_query().unwrap_err().field, "actor");
    }
}
