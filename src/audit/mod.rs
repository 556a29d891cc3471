//! The tamper-evident audit log: what a record holds, how it is hashed, and how a chain is verified.
//!
//! Each tenant has its own chain. Record `n` stores the hash of record `n-1` (`prev_hash`; the first
//! record links to [`GENESIS_HASH`]) and its own `hash`:
//!
//! ```text
//! hash = hex(SHA-256(JCS({tenant_id, seq, at, actor:{subject, role, transport}, action, target,
//!                         outcome, reason, request_id, before, after, prev_hash})))
//! ```
//!
//! where JCS is RFC 8785 JSON canonicalization. Sequence numbers start at 1 and have no gaps.
//! Appending happens in the same database transaction as the mutation it records (see
//! `store::MutationTx::commit`), so the two exist together or not at all.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::Principal;

/// `prev_hash` of a chain's first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, as the caller describes it. The store adds tenant, sequence, time and hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub actor: Actor,
    /// The tool or CLI command, e.g. `create_budget` or `cli:token issue`.
    pub action: String,
    /// What was acted on, e.g. `budget:0193…`.
    pub target: String,
    pub outcome: Outcome,
    /// Why, when there is something to say (a denial's missing permission, a reason given by the caller).
    pub reason: Option<String>,
    /// Correlation id of the request; also in the server log and in internal error messages.
    pub request_id: String,
    /// State before the change, redacted. `None` for creations and denials.
    pub before: Option<Value>,
    /// State after the change, redacted. `None` for deletions and denials.
    pub after: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub subject: String,
    pub role: String,
    pub transport: String,
}

impl From<&Principal> for Actor {
    fn from(p: &Principal) -> Self {
        Actor { subject: p.subject.clone(), role: p.role.as_str().into(), transport: p.transport.as_str().into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The mutation was applied.
    Success,
    /// The guard refused the call.
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Outcome::Success),
            "denied" => Some(Outcome::Denied),
            _ => None,
        }
    }
}

/// A record as stored: the entry plus its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub tenant_id: String,
    pub seq: i64,
    /// RFC 3339 UTC, fixed width.
    pub at: String,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    /// Build the record that follows `prev_hash` at position `seq`, computing its hash.
    pub fn seal(tenant_id: String, seq: i64, at: String, entry: AuditEntry, prev_hash: String) -> Self {
        let mut r = AuditRecord { tenant_id, seq, at, entry, prev_hash, hash: String::new() };
        r.hash = r.compute_hash();
        r
    }

    /// The canonical JSON the hash covers (every field but `hash` itself).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let e = &self.entry;
        let doc = json!({
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "at": self.at,
            "actor": {"subject": e.actor.subject, "role": e.actor.role, "transport": e.actor.transport},
            "action": e.action,
            "target": e.target,
            "outcome": e.outcome.as_str(),
            "reason": e.reason,
            "request_id": e.request_id,
            "before": e.before,
            "after": e.after,
            "prev_hash": self.prev_hash,
        });
        serde_jcs::to_vec(&doc).expect("a JSON value always canonicalises")
    }

    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_bytes()))
    }
}

/// Keys whose values never reach the audit log (or any output): secrets of every kind.
const SECRET_KEYS: &[&str] =
    &["token", "secret", "password", "api_key", "authorization", "access_token", "refresh_token", "ciphertext"];

pub const REDACTED: &str = "[REDACTED]";

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_KEYS.contains(&k.as_str()) || k.ends_with("_token") || k.ends_with("_secret") || k.ends_with("_password")
}

/// Replace the value of every secret-looking key, at any depth.
pub fn redact(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, val) in map.iter_mut() {
                    if is_secret_key(k) {
                        *val = Value::String(REDACTED.into());
                    } else {
                        walk(val);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// Why a chain failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("sequence gap: expected seq {expected}, found {found}")]
    Gap { expected: i64, found: i64 },
    #[error("broken link: prev_hash does not match the hash of record {}", .seq - 1)]
    BrokenLink { seq: i64 },
    #[error("hash mismatch: the record's contents do not match its stored hash")]
    HashMismatch { seq: i64 },
    #[error("record belongs to tenant {found}, not {expected}")]
    WrongTenant { expected: String, found: String },
    #[error("chain head says seq {head_seq} / {head_hash}, but the last record is seq {last_seq} / {last_hash}")]
    HeadMismatch { head_seq: i64, head_hash: String, last_seq: i64, last_hash: String },
}

/// Walks one tenant's chain record by record, in sequence order, in constant memory.
#[derive(Debug)]
pub struct ChainVerifier {
    tenant_id: String,
    next_seq: i64,
    prev_hash: String,
}

impl ChainVerifier {
    pub fn new(tenant_id: impl Into<String>) -> Self {
        Self { tenant_id: tenant_id.into(), next_seq: 1, prev_hash: GENESIS_HASH.into() }
    }

    /// Check the next record; on success it becomes the new tail.
    pub fn check(&mut self, r: &AuditRecord) -> Result<(), ChainBreak> {
        if r.tenant_id != self.tenant_id {
            return Err(ChainBreak::WrongTenant { expected: self.tenant_id.clone(), found: r.tenant_id.clone() });
        }
        if r.seq != self.next_seq {
            return Err(ChainBreak::Gap { expected: self.next_seq, found: r.seq });
        }
        if r.compute_hash() != r.hash {
            return Err(ChainBreak::HashMismatch { seq: r.seq });
        }
        if r.prev_hash != self.prev_hash {
            return Err(ChainBreak::BrokenLink { seq: r.seq });
        }
        self.next_seq += 1;
        self.prev_hash = r.hash.clone();
        Ok(())
    }

    /// Records checked so far.
    pub fn checked(&self) -> i64 {
        self.next_seq - 1
    }

    /// Hash of the last checked record (the genesis hash if none).
    pub fn tail_hash(&self) -> &str {
        &self.prev_hash
    }

    /// Compare the walked tail with the stored chain head.
    pub fn finish(&self, head_seq: i64, head_hash: &str) -> Result<(), ChainBreak> {
        if head_seq != self.checked() || head_hash != self.prev_hash {
            return Err(ChainBreak::HeadMismatch {
                head_seq,
                head_hash: head_hash.into(),
                last_seq: self.checked(),
                last_hash: self.prev_hash.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: i64) -> AuditEntry {
        AuditEntry {
            actor: Actor { subject: "alice".into(), role: "admin".into(), transport: "stdio".into() },
            action: "update_budget".into(),
            target: format!("budget:{n}"),
            outcome: Outcome::Success,
            reason: None,
            request_id: format!("req-{n}"),
            before: Some(json!({"limit": n})),
            after: Some(json!({"limit": n + 1})),
        }
    }

    fn chain(len: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=len)
            .map(|seq| {
                let r = AuditRecord::seal(
                    "t1".into(),
                    seq,
                    format!("2026-01-01T00:00:{seq:02}.000000Z"),
                    entry(seq),
                    prev.clone(),
                );
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    fn verify(records: &[AuditRecord]) -> Result<(), ChainBreak> {
        let mut v = ChainVerifier::new("t1");
        records.iter().try_for_each(|r| v.check(r))?;
        let last = records.last().unwrap();
        v.finish(last.seq, &last.hash)
    }

    #[test]
    fn hash_is_sha256_of_rfc8785_canonical_json() {
        let r = &chain(1)[0];
        let canon = String::from_utf8(r.canonical_bytes()).unwrap();
        // Keys sorted by code point, no whitespace: the RFC 8785 form.
        assert!(canon.starts_with(r#"{"action":"update_budget","actor":{"role":"admin","subject":"alice","transport":"stdio"},"after":{"limit":2}"#), "{canon}");
        assert_eq!(r.hash, hex::encode(Sha256::digest(canon.as_bytes())));
        assert_eq!(r.hash.len(), 64);
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify(&chain(20)), Ok(()));
    }

    #[test]
    fn tampering_is_detected_and_located() {
        let mut c = chain(10);
        c[4].entry.after = Some(json!({"limit": 999}));
        assert_eq!(verify(&c), Err(ChainBreak::HashMismatch { seq: 5 }));

        let mut c = chain(10);
        c[4].entry.after = Some(json!({"limit": 999}));
        c[4].hash = c[4].compute_hash(); // attacker recomputes the hash: the next link breaks
        assert_eq!(verify(&c), Err(ChainBreak::BrokenLink { seq: 6 }));

        let mut c = chain(10);
        c.remove(3);
        assert_eq!(verify(&c), Err(ChainBreak::Gap { expected: 4, found: 5 }));

        let c = chain(10);
        let mut v = ChainVerifier::new("t1");
        c[..8].iter().for_each(|r| v.check(r).unwrap());
        assert!(
            matches!(v.finish(10, &c[9].hash), Err(ChainBreak::HeadMismatch { .. })),
            "a cut tail disagrees with the head"
        );
    }

    #[test]
    fn redaction_reaches_every_depth() {
        let v = redact(json!({
            "name": "x", "token": "mbm_abc", "nested": [{"api_key": "k", "make_token": "t", "token_id": "keep"}]
        }));
        assert_eq!(v["token"], REDACTED);
        assert_eq!(v["nested"][0]["api_key"], REDACTED);
        assert_eq!(v["nested"][0]["make_token"], REDACTED);
        assert_eq!(v["nested"][0]["token_id"], "keep");
        assert_eq!(v["name"], "x");
    }
}
