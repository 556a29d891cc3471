//! API tokens for the HTTP transport. A token is 32 random bytes, shown once as `mbm_<64 hex>`; only its
//! SHA-256 is stored. Tokens carry full entropy, so a fast hash is the right tool (no password KDF needed),
//! and lookups by hash leak nothing useful through timing.

use sha2::{Digest, Sha256};

pub const TOKEN_PREFIX: &str = "mbm_";

/// A freshly minted token: the secret to hand out once, and the hash to store.
pub struct MintedToken {
    pub secret: String,
    pub hash: String,
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedToken").field("secret", &"[REDACTED]").field("hash", &self.hash).finish()
    }
}

pub fn mint() -> MintedToken {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    let secret = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let hash = hash(&secret);
    MintedToken { secret, hash }
}

/// The stored form of a presented token.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Cheap shape check before touching the database.
pub fn looks_valid(secret: &str) -> bool {
    secret.len() == TOKEN_PREFIX.len() + 64
        && secret.starts_with(TOKEN_PREFIX)
        && secret[TOKEN_PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_are_unique_and_hash_consistently() {
        let a = mint();
        let b = mint();
        assert_ne!(a.secret, b.secret);
        assert!(looks_valid(&a.secret));
        assert_eq!(hash(&a.secret), a.hash);
        assert!(!a.hash.contains(&a.secret[4..]));
        assert!(!format!("{a:?}").contains(&a.secret));
        assert!(!looks_valid("mbm_xyz"));
        assert!(!looks_valid(&a.secret.replace("mbm_", "abc_")));
    }
}
