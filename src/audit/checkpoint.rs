//! Signed checkpoints: an Ed25519 signature over a tenant's chain head (tenant, sequence number, head
//! hash, time), in the manner of Certificate Transparency's signed tree heads.
//!
//! A hash chain alone cannot see its own tail cut off, and whoever can write the database can rewrite a
//! record and recompute every hash after it. A checkpoint closes both gaps: it says "this chain had `seq`
//! records ending in `head_hash`", and only the holder of the signing key can say it. The key lives outside
//! the database (an environment variable or a file), so an attacker with database access alone cannot
//! forge one, and anyone with the public key (`make-budget-mcp audit public-key`) can check one offline.
//!
//! What is signed is the RFC 8785 canonical JSON of
//! `{"format": "make-budget-mcp/audit-checkpoint/v1", "tenant_id", "seq", "head_hash", "at"}`.
//!
//! Keys are 32-byte Ed25519 seeds written in base64 (as `make-budget-mcp keys generate` prints them). A
//! key file holds one per line: the first signs, later ones are retired keys whose old checkpoints still
//! verify. A key's id is the first 8 bytes of SHA-256 of its public key, in hex.

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What every refusal to sign or to print the public key says.
pub const NO_SIGNING_KEY: &str =
    "no audit signing key is configured (set MBM_AUDIT_SIGNING_KEY or audit.signing_key_file)";

/// What the format field of a signed checkpoint says; a signature over any other format is not one of ours.
pub const CHECKPOINT_FORMAT: &str = "make-budget-mcp/audit-checkpoint/v1";

/// A signed statement about one tenant's chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Checkpoint {
    pub tenant_id: String,
    /// The number of records the chain had (the sequence number of its last record).
    pub seq: i64,
    /// The hash of record `seq`.
    pub head_hash: String,
    /// When the checkpoint was signed (RFC 3339 UTC).
    pub at: String,
    /// Id of the signing key (first 8 bytes of SHA-256 of the public key, hex).
    pub key_id: String,
    /// Ed25519 signature, base64.
    pub signature: String,
}

impl Checkpoint {
    /// The bytes the signature covers.
    pub fn signed_bytes(tenant_id: &str, seq: i64, head_hash: &str, at: &str) -> Vec<u8> {
        let doc = serde_json::json!({
            "format": CHECKPOINT_FORMAT,
            "tenant_id": tenant_id,
            "seq": seq,
            "head_hash": head_hash,
            "at": at,
        });
        serde_jcs::to_vec(&doc).expect("a JSON value always canonicalises")
    }
}

/// A public key that checkpoints are checked against.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    id: String,
    bytes: [u8; 32],
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

impl PublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self { id: hex::encode(&Sha256::digest(bytes)[..8]), bytes }
    }

    /// Parse the base64 form that `audit public-key` prints.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bytes: [u8; 32] = B64
            .decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "a public key is 32 bytes in base64 (as `audit public-key` prints it)".to_owned())?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The base64 text form.
    pub fn to_text(&self) -> String {
        B64.encode(self.bytes)
    }
}

/// Why a checkpoint is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("signed by key {key_id}, which is not a trusted key")]
    UnknownKey { key_id: String },
    #[error("the signature does not match its contents (key {key_id})")]
    BadSignature { key_id: String },
}

/// The public keys a verifier trusts.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
}

impl TrustedKeys {
    pub fn new(keys: Vec<PublicKey>) -> Self {
        Self { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id.clone()).collect()
    }

    /// Check a checkpoint's signature.
    pub fn verify(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == cp.key_id)
            .ok_or_else(|| CheckpointError::UnknownKey { key_id: cp.key_id.clone() })?;
        let bad = || CheckpointError::BadSignature { key_id: cp.key_id.clone() };
        let signature = B64.decode(&cp.signature).map_err(|_| bad())?;
        UnparsedPublicKey::new(&ED25519, key.bytes)
            .verify(&Checkpoint::signed_bytes(&cp.tenant_id, cp.seq, &cp.head_hash, &cp.at), &signature)
            .map_err(|_| bad())
    }
}

/// The server's signing key, with the retired keys whose checkpoints it still accepts.
pub struct AuditKeys {
    signer: Ed25519KeyPair,
    public: PublicKey,
    trusted: TrustedKeys,
}

impl fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKeys").field("key_id", &self.public.id).finish_non_exhaustive()
    }
}

/// A signing key could not be loaded. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("{origin}: an audit signing key is 32 bytes in base64 (`make-budget-mcp keys generate` makes one)")]
    Malformed { origin: String },
    #[error("cannot read audit signing key file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("audit signing key file {path} holds no key")]
    Empty { path: PathBuf },
    #[error("cannot create audit signing key file {path}: {error}")]
    Create { path: PathBuf, error: std::io::Error },
}

fn parse_seed(text: &str, origin: &str) -> Result<[u8; 32], SigningKeyError> {
    B64.decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| SigningKeyError::Malformed { origin: origin.to_owned() })
}

fn key_pair(seed: &[u8; 32], origin: &str) -> Result<(Ed25519KeyPair, PublicKey), SigningKeyError> {
    let pair =
        Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| SigningKeyError::Malformed { origin: origin.into() })?;
    let public: [u8; 32] = pair.public_key().as_ref().try_into().expect("an Ed25519 public key is 32 bytes");
    Ok((pair, PublicKey::from_bytes(public)))
}

impl AuditKeys {
    /// Build from base64 seeds: the first signs, the rest are retired (verify only).
    pub fn from_seeds(seeds: &[(&str, String)]) -> Result<Self, SigningKeyError> {
        let mut iter = seeds.iter();
        let (current, origin) = match iter.next() {
            Some((text, origin)) => (parse_seed(text, origin)?, origin),
            None => return Err(SigningKeyError::Malformed { origin: "audit signing key".into() }),
        };
        let (signer, public) = key_pair(&current, origin)?;
        let mut trusted = vec![public.clone()];
        for (text, origin) in iter {
            trusted.push(key_pair(&parse_seed(text, origin)?, origin)?.1);
        }
        Ok(Self { signer, public, trusted: TrustedKeys::new(trusted) })
    }

    /// A fresh random key (tests and the demo).
    pub fn generate() -> Self {
        let text = crate::crypto::generate_key_text();
        Self::from_seeds(&[(text.as_str(), "generated".into())]).expect("a generated key is well formed")
    }

    /// The current public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The current and retired public keys.
    pub fn trusted(&self) -> &TrustedKeys {
        &self.trusted
    }

    /// Sign a chain head.
    pub fn sign(&self, tenant_id: &str, seq: i64, head_hash: &str, at: &str) -> Checkpoint {
        let sig = self.signer.sign(&Checkpoint::signed_bytes(tenant_id, seq, head_hash, at));
        Checkpoint {
            tenant_id: tenant_id.into(),
            seq,
            head_hash: head_hash.into(),
            at: at.into(),
            key_id: self.public.id.clone(),
            signature: B64.encode(sig.as_ref()),
        }
    }
}

/// Where the audit signing key comes from, in order of precedence.
#[derive(Debug, Clone, Default)]
pub struct SigningKeySources {
    /// `MBM_AUDIT_SIGNING_KEY`: the current key (base64).
    pub key: Option<String>,
    /// `MBM_AUDIT_SIGNING_KEY_FILE` / `audit.signing_key_file`: first key line signs, later ones are retired.
    pub key_file: Option<PathBuf>,
    /// Used when nothing else is configured: created on first use, owner-only. Set for the embedded SQLite
    /// store only; a PostgreSQL deployment configures its key explicitly (several servers must share it).
    pub default_file: Option<PathBuf>,
}

impl SigningKeySources {
    /// Load the keys. `Ok(None)` when none is configured and there is no default file to use.
    pub fn load(&self) -> Result<Option<AuditKeys>, SigningKeyError> {
        if let Some(k) = &self.key {
            return AuditKeys::from_seeds(&[(k.as_str(), "MBM_AUDIT_SIGNING_KEY".into())]).map(Some);
        }
        if let Some(path) = &self.key_file {
            return read_key_file(path).map(Some);
        }
        match &self.default_file {
            Some(path) if path.exists() => read_key_file(path).map(Some),
            Some(path) => {
                create_key_file(path)?;
                tracing::info!(path = %path.display(), "created the audit signing key");
                read_key_file(path).map(Some)
            }
            None => Ok(None),
        }
    }
}

fn read_key_file(path: &Path) -> Result<AuditKeys, SigningKeyError> {
    let text = std::fs::read_to_string(path).map_err(|error| SigningKeyError::Read { path: path.into(), error })?;
    let lines = crate::crypto::key_lines(&text, path);
    if lines.is_empty() {
        return Err(SigningKeyError::Empty { path: path.into() });
    }
    let seeds: Vec<(&str, String)> = lines.iter().map(|(line, origin)| (line.as_str(), origin.clone())).collect();
    AuditKeys::from_seeds(&seeds)
}

fn create_key_file(path: &Path) -> Result<(), SigningKeyError> {
    let contents = format!(
        "# make-budget-mcp audit signing key (Ed25519 seed): signs the audit chain's checkpoints.\n\
         # Keep it away from the database's administrators; publish `make-budget-mcp audit public-key`.\n{}\n",
        crate::crypto::generate_key_text()
    );
    crate::crypto::create_private_file(path, &contents)
        .map_err(|error| SigningKeyError::Create { path: path.into(), error })
}

/// Parse `--public-key`: base64 keys separated by commas, or the path of a file with one per line.
pub fn parse_public_keys(arg: &str) -> Result<TrustedKeys, String> {
    let from_text = |text: &str| -> Result<Vec<PublicKey>, String> {
        text.split([',', '\n'])
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(PublicKey::parse)
            .collect()
    };
    let keys = match from_text(arg) {
        Ok(keys) => keys,
        Err(rule) => match std::fs::read_to_string(arg) {
            Ok(text) => from_text(&text).map_err(|r| format!("public key file {arg}: {r}"))?,
            Err(_) => return Err(format!("--public-key: {rule}, or the path of a file holding such keys")),
        },
    };
    if keys.is_empty() {
        return Err("--public-key: no key given".into());
    }
    Ok(TrustedKeys::new(keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_verify_only_unaltered_and_with_a_trusted_key() {
        let keys = AuditKeys::generate();
        let cp = keys.sign("t1", 42, &"ab".repeat(32), "2026-01-01T00:00:00.000000Z");
        assert_eq!(keys.trusted().verify(&cp), Ok(()));

        let mut moved = cp.clone();
        moved.seq = 41;
        assert!(matches!(keys.trusted().verify(&moved), Err(CheckpointError::BadSignature { .. })));
        let mut rehashed = cp.clone();
        rehashed.head_hash = "cd".repeat(32);
        assert!(matches!(keys.trusted().verify(&rehashed), Err(CheckpointError::BadSignature { .. })));
        let mut other_tenant = cp.clone();
        other_tenant.tenant_id = "t2".into();
        assert!(keys.trusted().verify(&other_tenant).is_err());

        let stranger = AuditKeys::generate();
        let forged = stranger.sign("t1", 42, &cp.head_hash, &cp.at);
        assert!(matches!(keys.trusted().verify(&forged), Err(CheckpointError::UnknownKey { .. })));
        let mut relabelled = forged.clone();
        relabelled.key_id = cp.key_id.clone();
        assert!(matches!(keys.trusted().verify(&relabelled), Err(CheckpointError::BadSignature { .. })));
    }

    #[test]
    fn retired_keys_still_verify_and_public_keys_round_trip() {
        let old = crate::crypto::generate_key_text();
        let new = crate::crypto::generate_key_text();
        let before = AuditKeys::from_seeds(&[(old.as_str(), "old".into())]).unwrap();
        let cp = before.sign("t", 1, &"00".repeat(32), "2026-01-01T00:00:00.000000Z");
        let after = AuditKeys::from_seeds(&[(new.as_str(), "new".into()), (old.as_str(), "old".into())]).unwrap();
        assert_ne!(after.public_key().id(), before.public_key().id());
        assert_eq!(after.trusted().verify(&cp), Ok(()));

        let text = before.public_key().to_text();
        let parsed = parse_public_keys(&text).unwrap();
        assert_eq!(parsed.verify(&cp), Ok(()));
        assert!(parse_public_keys("not-a-key").unwrap_err().contains("32 bytes"));
    }

    #[test]
    fn key_errors_name_the_source_not_the_key() {
        let e = AuditKeys::from_seeds(&[("c2VjcmV0", "MBM_AUDIT_SIGNING_KEY".into())]).unwrap_err().to_string();
        assert!(e.contains("MBM_AUDIT_SIGNING_KEY") && !e.contains("c2VjcmV0"), "{e}");
    }

    #[test]
    fn signed_bytes_are_canonical_json() {
        let bytes = Checkpoint::signed_bytes("t", 7, "ff", "2026-01-01T00:00:00.000000Z");
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"at":"2026-01-01T00:00:00.000000Z","format":"make-budget-mcp/audit-checkpoint/v1","head_hash":"ff","seq":7,"tenant_id":"t"}"#
        );
    }
}
