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
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::auth::Principal;

pub mod checkpoint;
pub mod export;
pub mod target;

pub use checkpoint::{AuditKeys, Checkpoint, TrustedKeys};
pub use target::Target;

/// `prev_hash` of a chain's first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, as the caller describes it. The store adds tenant, sequence, time and hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditEntry {
    pub actor: Actor,
    /// The tool or CLI command, e.g. `create_budget` or `cli:token issue`.
    pub action: String,
    /// What was acted on, e.g. `budget:0193…`; written from a [`Target`].
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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

    /// The canonical JSON the hash covers (every field but `hash` itself), in RFC 8785 form.
    ///
    /// The top level has a fixed set of keys, so it is written directly in JCS key order (sorted by UTF-16
    /// code units), with strings escaped as JCS prescribes (which is serde_json's escaping: `"`, `\\` and
    /// control characters only, lowercase `\u00xx`). Only the free-form `before`/`after` states go through
    /// `serde_jcs`. A unit test holds this equal to `serde_jcs` over the whole document.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let e = &self.entry;
        let mut out = Vec::with_capacity(512);
        let key = |out: &mut Vec<u8>, first: bool, k: &str| {
            out.extend_from_slice(if first { b"{\"" } else { b",\"" });
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
        };
        let string = |out: &mut Vec<u8>, v: &str| {
            serde_json::to_writer(&mut *out, v).expect("writing a string to a Vec cannot fail");
        };
        let state = |out: &mut Vec<u8>, v: &Option<Value>| match v {
            Some(v) => out.extend_from_slice(&serde_jcs::to_vec(v).expect("a JSON value always canonicalises")),
            None => out.extend_from_slice(b"null"),
        };
        key(&mut out, true, "action");
        string(&mut out, &e.action);
        key(&mut out, false, "actor");
        key(&mut out, true, "role");
        string(&mut out, &e.actor.role);
        key(&mut out, false, "subject");
        string(&mut out, &e.actor.subject);
        key(&mut out, false, "transport");
        string(&mut out, &e.actor.transport);
        out.push(b'}');
        key(&mut out, false, "after");
        state(&mut out, &e.after);
        key(&mut out, false, "at");
        string(&mut out, &self.at);
        key(&mut out, false, "before");
        state(&mut out, &e.before);
        key(&mut out, false, "outcome");
        string(&mut out, e.outcome.as_str());
        key(&mut out, false, "prev_hash");
        string(&mut out, &self.prev_hash);
        key(&mut out, false, "reason");
        match &e.reason {
            Some(r) => string(&mut out, r),
            None => out.extend_from_slice(b"null"),
        }
        key(&mut out, false, "request_id");
        string(&mut out, &e.request_id);
        key(&mut out, false, "seq");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        key(&mut out, false, "target");
        string(&mut out, &e.target);
        key(&mut out, false, "tenant_id");
        string(&mut out, &self.tenant_id);
        out.push(b'}');
        out
    }

    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_bytes()))
    }

    /// The record's contents hash to its stored `hash`.
    pub fn hash_matches(&self) -> bool {
        self.compute_hash() == self.hash
    }

    /// What [`ChainVerifier`] follows of this record, with whether its contents hash to its `hash`.
    pub fn link(&self, hash_ok: bool) -> Link<'_> {
        Link { seq: self.seq, tenant_id: &self.tenant_id, prev_hash: &self.prev_hash, hash: &self.hash, hash_ok }
    }
}

/// A record's place in its chain: what [`ChainVerifier`] checks once the record's hash has been recomputed.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    pub seq: i64,
    pub tenant_id: &'a str,
    pub prev_hash: &'a str,
    pub hash: &'a str,
    /// The record's contents hash to `hash`.
    pub hash_ok: bool,
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

/// What kind of problem a verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// A record's contents do not hash to its stored hash: it was edited.
    HashMismatch,
    /// A record's hash is not the one its successor links to: it was rewritten with a recomputed hash
    /// (or its successor's link was edited).
    BrokenLink,
    /// A sequence number is missing: a record was deleted.
    Gap,
    /// Records are out of order, or a record sits at a position it was not sealed for.
    Reordered,
    /// Two records claim the same predecessor: one of them was inserted.
    Inserted,
    /// A signed checkpoint (or the stored chain head) vouches for more records than exist: the tail was cut.
    MissingTail,
    /// The chain's hash at a checkpoint's sequence number differs from the signed one: records up to it
    /// were rewritten and their hashes recomputed.
    CheckpointMismatch,
    /// A checkpoint's signature is invalid or from an untrusted key.
    BadCheckpoint,
    /// The stored chain head disagrees with the last record.
    HeadMismatch,
    /// A record of another tenant is in this chain.
    WrongTenant,
    /// Records after the last signed checkpoint of an export: nothing vouches for them.
    Unanchored,
    /// A line of an export is not a record, checkpoint or header.
    Malformed,
}

impl BreakKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::HashMismatch => "hash mismatch",
            BreakKind::BrokenLink => "broken link",
            BreakKind::Gap => "gap in sequence",
            BreakKind::Reordered => "reordering",
            BreakKind::Inserted => "inserted record",
            BreakKind::MissingTail => "missing tail",
            BreakKind::CheckpointMismatch => "checkpoint mismatch",
            BreakKind::BadCheckpoint => "bad checkpoint",
            BreakKind::HeadMismatch => "head mismatch",
            BreakKind::WrongTenant => "wrong tenant",
            BreakKind::Unanchored => "unanchored records",
            BreakKind::Malformed => "malformed",
        }
    }
}

/// Why a chain failed verification: the first sequence number the verifier cannot vouch for, the kind of
/// problem, and what exactly it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, thiserror::Error)]
#[error("record seq {seq}: {}: {detail}", kind.as_str())]
pub struct ChainBreak {
    /// The lowest sequence number that cannot be trusted. Records before it verified (and, up to the last
    /// good checkpoint, are vouched for by a signature).
    pub seq: i64,
    pub kind: BreakKind,
    pub detail: String,
}

impl ChainBreak {
    pub fn new(seq: i64, kind: BreakKind, detail: impl Into<String>) -> Self {
        Self { seq, kind, detail: detail.into() }
    }
}

/// A verified chain: how far it goes and how much of it a signature vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Verified {
    pub records_checked: i64,
    /// Hash of the last record (the genesis hash for an empty chain).
    pub head_hash: String,
    /// The highest sequence number covered by a valid signed checkpoint (0 if none).
    pub anchored_seq: i64,
    /// The last valid checkpoint seen, if any.
    pub latest_checkpoint: Option<Checkpoint>,
}

/// Walks one tenant's chain record by record, in sequence order, in constant memory, together with the
/// signed checkpoints of that chain.
///
/// Feed records with [`check`](Self::check) and, right after the record a checkpoint covers (or whenever a
/// checkpoint claims more records than were fed), the checkpoint with [`checkpoint`](Self::checkpoint);
/// then call [`finish`](Self::finish). The first error is the verdict; stop feeding after it.
#[derive(Debug)]
pub struct ChainVerifier<'k> {
    tenant_id: String,
    keys: Option<&'k TrustedKeys>,
    next_seq: i64,
    prev_hash: String,
    /// `prev_hash` of the last accepted record: a record linking here too means one was inserted.
    prev_link: String,
    /// A record jumped ahead of `next_seq`: a gap, or a reordering if a lower one follows.
    pending_jump: Option<i64>,
    anchored_seq: i64,
    latest_checkpoint: Option<Checkpoint>,
    /// A valid checkpoint for a record not yet seen.
    claim: Option<Checkpoint>,
}

impl<'k> ChainVerifier<'k> {
    /// Verify `tenant_id`'s chain; checkpoints are checked against `keys` (and ignored when `None`).
    pub fn new(tenant_id: impl Into<String>, keys: Option<&'k TrustedKeys>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            keys,
            next_seq: 1,
            prev_hash: GENESIS_HASH.into(),
            prev_link: String::new(),
            pending_jump: None,
            anchored_seq: 0,
            latest_checkpoint: None,
            claim: None,
        }
    }

    /// Check the next record; on success it becomes the new tail.
    pub fn check(&mut self, r: &AuditRecord) -> Result<(), ChainBreak> {
        self.check_link(&r.link(r.hash_matches()))
    }

    /// [`check`](Self::check) for a record known by its [`Link`], its hash already recomputed (e.g. on
    /// another thread).
    pub fn check_link(&mut self, r: &Link<'_>) -> Result<(), ChainBreak> {
        let expected = self.next_seq;
        if let Some(found) = self.pending_jump.take() {
            return Err(if r.seq < found {
                ChainBreak::new(
                    expected,
                    BreakKind::Reordered,
                    format!("expected seq {expected}, found seq {found} followed by seq {}", r.seq),
                )
            } else {
                ChainBreak::new(expected, BreakKind::Gap, format!("expected seq {expected}, found seq {found}"))
            });
        }
        if r.tenant_id != self.tenant_id {
            return Err(ChainBreak::new(
                expected,
                BreakKind::WrongTenant,
                format!("record seq {} belongs to tenant {}, not {}", r.seq, r.tenant_id, self.tenant_id),
            ));
        }
        if r.seq > expected {
            self.pending_jump = Some(r.seq);
            return Ok(());
        }
        if r.seq < expected {
            return Err(if r.seq == expected - 1 && r.prev_hash == self.prev_link {
                ChainBreak::new(
                    r.seq,
                    BreakKind::Inserted,
                    format!("two records claim seq {} and both follow the same predecessor", r.seq),
                )
            } else {
                ChainBreak::new(
                    expected,
                    BreakKind::Reordered,
                    format!("seq {} appears after seq {}", r.seq, expected - 1),
                )
            });
        }
        if r.prev_hash != self.prev_hash {
            if expected > 1 && r.prev_hash == self.prev_link {
                return Err(ChainBreak::new(
                    expected - 1,
                    BreakKind::Inserted,
                    format!(
                        "records {} and {expected} both follow record {}: one of them was inserted",
                        expected - 1,
                        expected - 2
                    ),
                ));
            }
            if !r.hash_ok {
                return Err(ChainBreak::new(
                    expected,
                    BreakKind::HashMismatch,
                    "neither its contents nor its link match: the record was edited or does not belong here",
                ));
            }
            // Record `expected - 1` has a valid hash of its own, but not the one this record committed to:
            // it was rewritten and re-hashed, unless a checkpoint vouches for it (then this link was edited).
            let rewritten = if self.anchored_seq >= expected - 1 { expected } else { (expected - 1).max(1) };
            return Err(ChainBreak::new(
                rewritten,
                BreakKind::BrokenLink,
                format!("record {expected}'s prev_hash does not match the hash of record {}", expected - 1),
            ));
        }
        if !r.hash_ok {
            return Err(ChainBreak::new(
                expected,
                BreakKind::HashMismatch,
                "the record's contents do not match its stored hash",
            ));
        }
        self.next_seq += 1;
        // The record linked to the old tail, which becomes `prev_link`; its own hash is the new tail.
        std::mem::swap(&mut self.prev_link, &mut self.prev_hash);
        self.prev_hash.clear();
        self.prev_hash.push_str(r.hash);
        if let Some(claim) = self.claim.take_if(|c| c.seq == r.seq) {
            self.match_checkpoint(claim)?;
        }
        Ok(())
    }

    /// Check a signed checkpoint. One for the last checked record is compared with it; one for a later
    /// record is held until that record arrives (or [`finish`](Self::finish) finds it missing).
    pub fn checkpoint(&mut self, cp: &Checkpoint) -> Result<(), ChainBreak> {
        let Some(keys) = self.keys else { return Ok(()) };
        if self.pending_jump.is_some() {
            return Ok(()); // the next record decides the break
        }
        if let Err(e) = keys.verify(cp) {
            return Err(ChainBreak::new(
                self.anchored_seq + 1,
                BreakKind::BadCheckpoint,
                format!("checkpoint at seq {}: {e}", cp.seq),
            ));
        }
        if cp.tenant_id != self.tenant_id {
            return Err(ChainBreak::new(
                self.anchored_seq + 1,
                BreakKind::WrongTenant,
                format!("checkpoint at seq {} is for tenant {}", cp.seq, cp.tenant_id),
            ));
        }
        let checked = self.checked();
        if cp.seq == checked {
            self.match_checkpoint(cp.clone())
        } else if cp.seq > checked {
            if self.claim.as_ref().is_none_or(|c| c.seq < cp.seq) {
                self.claim = Some(cp.clone());
            }
            Ok(())
        } else if cp.seq <= self.anchored_seq {
            Ok(()) // an older checkpoint of a part already vouched for
        } else {
            Err(ChainBreak::new(
                self.anchored_seq + 1,
                BreakKind::Reordered,
                format!("checkpoint for seq {} appears after record {checked}", cp.seq),
            ))
        }
    }

    fn match_checkpoint(&mut self, cp: Checkpoint) -> Result<(), ChainBreak> {
        if cp.head_hash != self.prev_hash {
            return Err(ChainBreak::new(
                self.anchored_seq + 1,
                BreakKind::CheckpointMismatch,
                format!(
                    "the chain's hash at seq {} differs from the checkpoint signed at {}: records {}..={} were \
                     rewritten and re-hashed",
                    cp.seq,
                    cp.at,
                    self.anchored_seq + 1,
                    cp.seq
                ),
            ));
        }
        self.anchored_seq = cp.seq;
        self.latest_checkpoint = Some(cp);
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

    /// The end of the walk: a pending jump is a gap, a checkpoint beyond the last record a cut tail.
    pub fn finish(self) -> Result<Verified, ChainBreak> {
        let expected = self.next_seq;
        if let Some(found) = self.pending_jump {
            return Err(ChainBreak::new(
                expected,
                BreakKind::Gap,
                format!("expected seq {expected}, found seq {found}"),
            ));
        }
        if let Some(claim) = &self.claim {
            return Err(ChainBreak::new(
                expected,
                BreakKind::MissingTail,
                format!(
                    "the checkpoint signed at {} vouches for {} records; only {} remain",
                    claim.at,
                    claim.seq,
                    self.checked()
                ),
            ));
        }
        Ok(Verified {
            records_checked: self.checked(),
            head_hash: self.prev_hash,
            anchored_seq: self.anchored_seq,
            latest_checkpoint: self.latest_checkpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    fn verify(records: &[AuditRecord]) -> Result<Verified, ChainBreak> {
        let mut v = ChainVerifier::new("t1", None);
        records.iter().try_for_each(|r| v.check(r))?;
        v.finish()
    }

    /// Re-seal records `from..` (0-based) in place, as an attacker who knows the algorithm would.
    fn reseal_from(c: &mut [AuditRecord], from: usize) {
        for i in from..c.len() {
            if i > 0 {
                c[i].prev_hash = c[i - 1].hash.clone();
            }
            c[i].hash = c[i].compute_hash();
        }
    }

    fn broken(r: Result<Verified, ChainBreak>) -> (i64, BreakKind) {
        let b = r.expect_err("tampering must be detected");
        (b.seq, b.kind)
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

    /// The whole document through serde_jcs: the definition `canonical_bytes` must match byte for byte.
    fn canonical_by_jcs(r: &AuditRecord) -> Vec<u8> {
        let e = &r.entry;
        let doc = json!({
            "tenant_id": r.tenant_id, "seq": r.seq, "at": r.at,
            "actor": {"subject": e.actor.subject, "role": e.actor.role, "transport": e.actor.transport},
            "action": e.action, "target": e.target, "outcome": e.outcome.as_str(), "reason": e.reason,
            "request_id": e.request_id, "before": e.before, "after": e.after, "prev_hash": r.prev_hash,
        });
        serde_jcs::to_vec(&doc).unwrap()
    }

    #[test]
    fn direct_canonical_form_equals_serde_jcs() {
        let tricky = "quote \" backslash \\ slash / tab \t nl \n cr \r bell \u{7} del \u{7f} é 中 😀 \u{2028}";
        let mut cases = chain(3);
        let mut r = cases[0].clone();
        r.entry.actor.subject = tricky.into();
        r.entry.target = tricky.into();
        r.entry.reason = Some(tricky.into());
        r.entry.before = Some(
            json!({"z": 1, "a": [1.5, -0.0, 1e21, 123456789012345678u64, null, true], "é": {"b": tricky, "B": 2}}),
        );
        r.entry.after = None;
        r.seq = 9_007_199_254_740_991;
        cases.push(r);
        let mut denied = cases[1].clone();
        denied.entry.outcome = Outcome::Denied;
        denied.entry.before = Some(json!([]));
        cases.push(denied);
        for r in &cases {
            assert_eq!(
                String::from_utf8(r.canonical_bytes()).unwrap(),
                String::from_utf8(canonical_by_jcs(r)).unwrap()
            );
        }
    }

    #[test]
    fn intact_chain_verifies() {
        let v = verify(&chain(20)).unwrap();
        assert_eq!((v.records_checked, v.anchored_seq), (20, 0));
        assert_eq!(verify(&[]).unwrap().head_hash, GENESIS_HASH);
    }

    #[test]
    fn tampering_is_detected_and_located() {
        let mut c = chain(10);
        c[4].entry.after = Some(json!({"limit": 999}));
        assert_eq!(broken(verify(&c)), (5, BreakKind::HashMismatch));

        let mut c = chain(10);
        c[4].entry.after = Some(json!({"limit": 999}));
        c[4].hash = c[4].compute_hash(); // attacker recomputes the hash: the next link breaks
        assert_eq!(broken(verify(&c)), (5, BreakKind::BrokenLink));

        let mut c = chain(10);
        c.remove(3);
        assert_eq!(broken(verify(&c)), (4, BreakKind::Gap));

        let mut c = chain(10);
        c.truncate(9);
        c.remove(8); // the last-but-one: the gap shows at the end of the walk
        c.push(chain(10)[9].clone());
        assert_eq!(broken(verify(&c)), (9, BreakKind::Gap));

        let mut c = chain(10);
        c.swap(4, 6); // lines moved in an export: seq 7 where 5 belongs
        assert_eq!(broken(verify(&c)), (5, BreakKind::Reordered));

        // A forged record sealed after record 3, placed before the real record 4.
        let mut c = chain(10);
        let forged = AuditRecord::seal("t1".into(), 4, c[3].at.clone(), entry(99), c[2].hash.clone());
        c.insert(3, forged.clone());
        assert_eq!(broken(verify(&c)), (4, BreakKind::Inserted));
        // The same, with the later records renumbered to make room (their hashes then fail too).
        let mut c = chain(10);
        c.insert(3, forged);
        c[4..].iter_mut().for_each(|r| r.seq += 1);
        assert_eq!(broken(verify(&c)), (4, BreakKind::Inserted));
    }

    #[test]
    fn checkpoints_catch_cut_tails_and_recomputed_chains() {
        let keys = AuditKeys::generate();
        let cp = |c: &[AuditRecord], seq: usize| {
            keys.sign("t1", seq as i64, &c[seq - 1].hash, "2026-01-01T01:00:00.000000Z")
        };
        let walk = |c: &[AuditRecord], cps: &[Checkpoint]| {
            let mut v = ChainVerifier::new("t1", Some(keys.trusted()));
            for r in c {
                v.check(r)?;
                for p in cps.iter().filter(|p| p.seq == r.seq) {
                    v.checkpoint(p)?;
                }
            }
            for p in cps.iter().filter(|p| p.seq > c.len() as i64) {
                v.checkpoint(p)?;
            }
            v.finish()
        };
        let c = chain(10);
        let cps = [cp(&c, 3), cp(&c, 6), cp(&c, 10)];
        let ok = walk(&c, &cps).unwrap();
        assert_eq!((ok.records_checked, ok.anchored_seq), (10, 10));

        // The last 3 records cut off: the checkpoint at 10 says they existed.
        assert_eq!(broken(walk(&c[..7], &cps)), (8, BreakKind::MissingTail));
        // Without that checkpoint the cut is invisible to the chain itself: exactly the gap checkpoints close.
        assert!(walk(&c[..7], &cps[..2]).is_ok());

        // Record 5 rewritten and every later hash recomputed: consistent, but not what was signed at 6.
        let mut t = c.clone();
        t[4].entry.target = "budget:forged".into();
        reseal_from(&mut t, 4);
        assert!(verify(&t).is_ok(), "the recomputed chain is self-consistent");
        assert_eq!(broken(walk(&t, &cps)), (4, BreakKind::CheckpointMismatch));
        // ... and re-signing with a key of one's own does not help.
        let forged_keys = AuditKeys::generate();
        let forged = forged_keys.sign("t1", 6, &t[5].hash, "2026-01-01T01:00:00.000000Z");
        assert_eq!(broken(walk(&t, &[cps[0].clone(), forged])), (4, BreakKind::BadCheckpoint));
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
