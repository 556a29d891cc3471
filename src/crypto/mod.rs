//! The secret box: Make credentials are encrypted at rest with AES-256-GCM.
//!
//! - A random 96-bit nonce per encryption.
//! - The id of the key is stored beside the ciphertext, so keys can be rotated: the keyring holds the
//!   current key (used to encrypt) and any previous keys (used only to decrypt until `keys rotate` has
//!   re-encrypted everything).
//! - The additional authenticated data binds a ciphertext to its tenant and record, so a ciphertext
//!   copied into another row or another tenant fails to decrypt instead of yielding a usable secret.
//!
//! Keys are 32 random bytes, written in base64 (`make-budget-mcp keys generate` makes one). A key's id is
//! derived from the key itself, so a wrong key is recognised by its id before any decryption is tried.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

/// A secret held in memory: never printed, never serialised.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself; call only where it is about to be used (an HTTP header, encryption).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([REDACTED])")
    }
}

/// One encryption key and its id.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(b"make-budget-mcp key id v1\0");
        h.update(bytes);
        let id = hex::encode(&h.finalize()[..8]);
        Self { id, cipher: Aes256Gcm::new(&bytes.into()) }
    }

    /// Parse a key written as base64 (or 64 hex digits) of 32 bytes. `source` names where it came from.
    pub fn parse(text: &str, source: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            B64.decode(text).ok()
        };
        let bytes: [u8; 32] =
            bytes.and_then(|b| b.try_into().ok()).ok_or_else(|| KeyError::Malformed { origin: source.to_owned() })?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn generate() -> Self {
        Self::from_bytes(random_bytes())
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system's random source is available");
    b
}

/// A fresh key in its textual (base64) form, for `keys generate`.
pub fn generate_key_text() -> String {
    B64.encode(random_bytes::<32>())
}

/// What an encrypted value is bound to. Part of the AAD: changing any field makes decryption fail.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// What kind of secret, e.g. "make_connection".
    pub purpose: &'a str,
    pub tenant_id: &'a str,
    pub record_id: &'a str,
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        format!("make-budget-mcp/v1\0{}\0{}\0{}", self.purpose, self.tenant_id, self.record_id).into_bytes()
    }
}

/// An encrypted value as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the master key from {origin} is not 32 bytes in base64 (or 64 hex digits); generate one with `make-budget-mcp keys generate`"
    )]
    Malformed { origin: String },
    #[error("cannot read the master key file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("cannot create the master key file {path}: {error}")]
    Create { path: PathBuf, error: std::io::Error },
    #[error("the master key file {path} holds no key")]
    Empty { path: PathBuf },
    #[error(
        "no master key is configured: set MBM_MASTER_KEY or MBM_MASTER_KEY_FILE (the same key on every instance); generate one with `make-budget-mcp keys generate`"
    )]
    Missing,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error(
        "this secret is encrypted under master key id {key_id}, which is not configured; configure that key (as MBM_MASTER_KEY or in MBM_PREVIOUS_MASTER_KEYS)"
    )]
    UnknownKey { key_id: String },
    #[error(
        "the secret failed authentication: it was altered, or it belongs to another record or tenant (key id {key_id})"
    )]
    Unauthentic { key_id: String },
}

/// The current key and any previous ones.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(current: MasterKey, previous: Vec<MasterKey>) -> Self {
        Self { current, previous }
    }

    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    pub fn has_key(&self, id: &str) -> bool {
        self.key(id).is_some()
    }

    fn key(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current).chain(&self.previous).find(|k| k.id == id)
    }

    /// Encrypt under the current key.
    pub fn seal(&self, plaintext: &[u8], binding: Binding<'_>) -> Sealed {
        let nonce = random_bytes::<12>();
        let aad = binding.aad();
        let ciphertext = self
            .current
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad })
            .expect("AES-GCM encryption of a bounded message cannot fail");
        Sealed { key_id: self.current.id.clone(), nonce: nonce.to_vec(), ciphertext }
    }

    pub fn open(&self, sealed: &Sealed, binding: Binding<'_>) -> Result<Vec<u8>, CryptoError> {
        let key = self.key(&sealed.key_id).ok_or_else(|| CryptoError::UnknownKey { key_id: sealed.key_id.clone() })?;
        if sealed.nonce.len() != 12 {
            return Err(CryptoError::Unauthentic { key_id: sealed.key_id.clone() });
        }
        let aad = binding.aad();
        key.cipher
            .decrypt(Nonce::from_slice(&sealed.nonce), Payload { msg: &sealed.ciphertext, aad: &aad })
            .map_err(|_| CryptoError::Unauthentic { key_id: sealed.key_id.clone() })
    }

    pub fn seal_secret(&self, secret: &SecretString, binding: Binding<'_>) -> Sealed {
        self.seal(secret.expose().as_bytes(), binding)
    }

    pub fn open_secret(&self, sealed: &Sealed, binding: Binding<'_>) -> Result<SecretString, CryptoError> {
        let bytes = self.open(sealed, binding)?;
        String::from_utf8(bytes)
            .map(SecretString)
            .map_err(|_| CryptoError::Unauthentic { key_id: sealed.key_id.clone() })
    }
}

/// Where the keyring comes from, in order of precedence.
#[derive(Debug, Clone, Default)]
pub struct KeySources {
    /// `MBM_MASTER_KEY`: the current key.
    pub master_key: Option<String>,
    /// `MBM_PREVIOUS_MASTER_KEYS`: comma-separated keys that still decrypt, during a rotation.
    pub previous_keys: Option<String>,
    /// `MBM_MASTER_KEY_FILE` / `secrets.master_key_file`: first key line is current, later ones previous.
    pub key_file: Option<PathBuf>,
    /// Used when nothing else is configured: created on first use with owner-only permissions. Set for
    /// the embedded SQLite store only; a shared PostgreSQL deployment must configure its key explicitly.
    pub default_file: Option<PathBuf>,
}

impl KeySources {
    /// Load the keyring. `Ok(None)` when no key is configured and there is no default file to use.
    pub fn load(&self) -> Result<Option<Keyring>, KeyError> {
        let mut previous = Vec::new();
        if let Some(list) = &self.previous_keys {
            for (i, k) in list.split(',').map(str::trim).filter(|k| !k.is_empty()).enumerate() {
                previous.push(MasterKey::parse(k, &format!("MBM_PREVIOUS_MASTER_KEYS (entry {})", i + 1))?);
            }
        }
        if let Some(k) = &self.master_key {
            return Ok(Some(Keyring::new(MasterKey::parse(k, "MBM_MASTER_KEY")?, previous)));
        }
        if let Some(path) = &self.key_file {
            let mut ring = read_key_file(path)?;
            ring.previous.extend(previous);
            return Ok(Some(ring));
        }
        match &self.default_file {
            Some(path) if path.exists() => read_key_file(path).map(Some),
            Some(path) => {
                create_key_file(path)?;
                tracing::info!(path = %path.display(), "created a master key for encrypting Make credentials");
                read_key_file(path).map(Some)
            }
            None => Ok(None),
        }
    }
}

fn read_key_file(path: &Path) -> Result<Keyring, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|error| KeyError::Read { path: path.into(), error })?;
    let mut keys = key_lines(&text, path).into_iter().map(|(line, origin)| MasterKey::parse(&line, &origin));
    let current = keys.next().ok_or_else(|| KeyError::Empty { path: path.into() })??;
    Ok(Keyring::new(current, keys.collect::<Result<_, _>>()?))
}

fn create_key_file(path: &Path) -> Result<(), KeyError> {
    let contents = format!(
        "# make-budget-mcp master key: encrypts the Make credentials in the database next to it.\n\
         # Back it up; without it the stored credentials cannot be decrypted.\n{}\n",
        generate_key_text()
    );
    create_private_file(path, &contents).map_err(|error| KeyError::Create { path: path.into(), error })
}

/// The key lines of a key file (trimmed; blank lines and `#` comments skipped), each with where it came
/// from for messages: `path (line n)`, counting key lines.
pub(crate) fn key_lines(text: &str, path: &Path) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .enumerate()
        .map(|(i, l)| (l.to_owned(), format!("{} (line {})", path.display(), i + 1)))
        .collect()
}

/// Create `path` (and its directory) readable and writable by its owner only, holding `contents`. Fails
/// if it exists, so a key is never overwritten.
pub(crate) fn create_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    std::io::Write::write_all(&mut f, contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding<'a>(tenant: &'a str, record: &'a str) -> Binding<'a> {
        Binding { purpose: "make_connection", tenant_id: tenant, record_id: record }
    }

    #[test]
    fn sealed_secrets_open_only_in_their_own_row() {
        let ring = Keyring::new(MasterKey::generate(), vec![]);
        let secret = SecretString::new("0b6c1f8e-6a3b-4b7e-9f1a-2d3c4b5a6978");
        let sealed = ring.seal_secret(&secret, binding("t1", "c1"));
        assert!(!sealed.ciphertext.windows(8).any(|w| secret.expose().as_bytes().windows(8).any(|s| s == w)));
        assert_eq!(ring.open_secret(&sealed, binding("t1", "c1")).unwrap(), secret);
        assert!(matches!(ring.open_secret(&sealed, binding("t2", "c1")), Err(CryptoError::Unauthentic { .. })));
        assert!(matches!(ring.open_secret(&sealed, binding("t1", "c2")), Err(CryptoError::Unauthentic { .. })));
        let mut flipped = sealed.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(ring.open_secret(&flipped, binding("t1", "c1")).is_err());
        let again = ring.seal_secret(&secret, binding("t1", "c1"));
        assert_ne!(again.nonce, sealed.nonce, "a fresh nonce every time");
    }

    #[test]
    fn wrong_keys_are_named_not_tried() {
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let sealed = Keyring::new(old.clone(), vec![]).seal(b"x", binding("t", "r"));
        let wrong = Keyring::new(new.clone(), vec![]);
        assert_eq!(wrong.open(&sealed, binding("t", "r")), Err(CryptoError::UnknownKey { key_id: old.id().into() }));
        let rotating = Keyring::new(new, vec![old]);
        assert_eq!(rotating.open(&sealed, binding("t", "r")).unwrap(), b"x");
    }

    #[test]
    fn keys_parse_from_base64_or_hex_and_ids_are_stable() {
        let text = generate_key_text();
        let a = MasterKey::parse(&text, "test").unwrap();
        let b = MasterKey::parse(&format!("  {text}\n"), "test").unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(a.id().len(), 16);
        let hexed = hex::encode(B64.decode(&text).unwrap());
        assert_eq!(MasterKey::parse(&hexed, "test").unwrap().id(), a.id());
        let e = MasterKey::parse("too-short", "MBM_MASTER_KEY").unwrap_err().to_string();
        assert!(e.contains("MBM_MASTER_KEY") && !e.contains("too-short"), "{e}");
    }

    #[test]
    fn default_key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let sources = KeySources { default_file: Some(path.clone()), ..Default::default() };
        let first = sources.load().unwrap().unwrap();
        let second = sources.load().unwrap().unwrap();
        assert_eq!(first.current_id(), second.current_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(KeySources::default().load().unwrap().is_none());
    }

    #[test]
    fn key_files_list_current_then_previous() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let (new, old) = (generate_key_text(), generate_key_text());
        std::fs::write(&path, format!("# rotated\n{new}\n\n{old}\n")).unwrap();
        let ring = KeySources { key_file: Some(path), ..Default::default() }.load().unwrap().unwrap();
        assert_eq!(ring.current_id(), MasterKey::parse(&new, "t").unwrap().id());
        assert!(ring.has_key(MasterKey::parse(&old, "t").unwrap().id()));
    }

    #[test]
    fn secrets_do_not_print() {
        let s = SecretString::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
