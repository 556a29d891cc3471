//! OAuth 2.1 resource server: accept access tokens (JWTs) issued by an external authorization server,
//! as the MCP authorization specification describes, alongside this server's own API tokens.
//!
//! A token is trusted only if its signature verifies against a key from the issuer's JWKS, with an
//! algorithm on the allow-list that matches the key's type (no `alg` confusion, no symmetric keys), and its
//! `iss`, `aud` (this server's resource URI), `exp` and `nbf` check out. The tenant and role come from two
//! configurable claims; the tenant must exist here, the role must be one of ours. Nothing about the token
//! itself is ever logged or echoed; refusals say which check failed.
//!
//! Keys are cached. An unknown `kid` (the issuer rotated its keys) triggers a refetch, but at most once per
//! [`REFETCH_MIN_INTERVAL`], and concurrent requests share one fetch: a stream of forged kids cannot turn
//! into a stream of requests to the issuer. The JWKS response is bounded in size and time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};

use crate::auth::{Principal, Role, Transport};
use crate::config::error::ConfigError;
use crate::domain::TenantId;
use crate::store::{Store, StoreError};

/// Keys are refetched when this old, even if every kid is known (picks up revocations).
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// An unknown kid refetches the JWKS at most this often.
pub const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// Largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Time allowed for fetching the JWKS.
pub const JWKS_TIMEOUT: Duration = Duration::from_secs(10);

pub const DEFAULT_TENANT_CLAIM: &str = "mbm_tenant";
pub const DEFAULT_ROLE_CLAIM: &str = "mbm_role";
pub const DEFAULT_LEEWAY_SECS: u64 = 60;
/// The asymmetric algorithms we can verify. Symmetric ones (HS*) are never accepted: the verification key
/// would be public in the JWKS.
pub const SUPPORTED_ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// The `[oauth]` section as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthFile {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub jwks_url: Option<String>,
    pub tenant_claim: Option<String>,
    pub role_claim: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub leeway_secs: Option<u64>,
    pub authorization_servers: Option<Vec<String>>,
}

impl OAuthFile {
    /// The `MBM_OAUTH_*` environment variables (lists comma-separated).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let list = |name: &str| var(name).map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
        OAuthFile {
            issuer: var("MBM_OAUTH_ISSUER"),
            audience: var("MBM_OAUTH_AUDIENCE"),
            jwks_url: var("MBM_OAUTH_JWKS_URL"),
            tenant_claim: var("MBM_OAUTH_TENANT_CLAIM"),
            role_claim: var("MBM_OAUTH_ROLE_CLAIM"),
            algorithms: list("MBM_OAUTH_ALGORITHMS"),
            // Parsed here so a typo is reported against the variable rather than silently ignored.
            leeway_secs: var("MBM_OAUTH_LEEWAY_SECS").map(|v| v.trim().parse().unwrap_or(u64::MAX)),
            authorization_servers: list("MBM_OAUTH_AUTHORIZATION_SERVERS"),
        }
    }

    /// `self` with every key `over` sets replaced.
    pub fn overridden_by(self, over: OAuthFile) -> OAuthFile {
        OAuthFile {
            issuer: over.issuer.or(self.issuer),
            audience: over.audience.or(self.audience),
            jwks_url: over.jwks_url.or(self.jwks_url),
            tenant_claim: over.tenant_claim.or(self.tenant_claim),
            role_claim: over.role_claim.or(self.role_claim),
            algorithms: over.algorithms.or(self.algorithms),
            leeway_secs: over.leeway_secs.or(self.leeway_secs),
            authorization_servers: over.authorization_servers.or(self.authorization_servers),
        }
    }
}

/// The effective OAuth settings; present only when `issuer`, `audience` and `jwks_url` are all set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    /// Expected `iss`, exactly.
    pub issuer: String,
    /// Expected `aud`: this server's resource URI, e.g. `https://mcp.example.com/mcp`.
    pub audience: String,
    pub jwks_url: String,
    pub tenant_claim: String,
    pub role_claim: String,
    pub algorithms: Vec<Algorithm>,
    pub leeway_secs: u64,
    /// Advertised in the protected-resource metadata.
    pub authorization_servers: Vec<String>,
}

fn invalid(key: &'static str, rule: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, rule: rule.into() }
}

fn is_loopback_http(url: &str) -> bool {
    ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| url.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/'])))
}

impl OAuthSettings {
    /// Check the merged section. `None` when OAuth is not configured at all.
    pub fn resolve(f: OAuthFile) -> Result<Option<Self>, ConfigError> {
        let (issuer, audience, jwks_url) = match (f.issuer, f.audience, f.jwks_url) {
            (None, None, None) => return Ok(None),
            (Some(i), Some(a), Some(j)) => (i, a, j),
            (i, a, _) => {
                let missing = if i.is_none() {
                    "oauth.issuer"
                } else if a.is_none() {
                    "oauth.audience"
                } else {
                    "oauth.jwks_url"
                };
                return Err(invalid(missing, "must be set: OAuth needs issuer, audience and jwks_url together"));
            }
        };
        if !audience.starts_with("https://") && !is_loopback_http(&audience) {
            return Err(invalid(
                "oauth.audience",
                format!(
                    "must be this server's https:// resource URI, e.g. https://mcp.example.com/mcp (got {audience:?})"
                ),
            ));
        }
        if !audience.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
            return Err(invalid("oauth.audience", "must be a URI of printable ASCII without quotes or backslashes"));
        }
        if !jwks_url.starts_with("https://") && !is_loopback_http(&jwks_url) {
            return Err(invalid("oauth.jwks_url", "must be an https:// URL (plain http only on loopback)"));
        }
        let claim = |key: &'static str, v: Option<String>, default: &str| -> Result<String, ConfigError> {
            let v = v.unwrap_or_else(|| default.to_owned());
            if v.trim().is_empty() { Err(invalid(key, "must not be empty")) } else { Ok(v) }
        };
        let tenant_claim = claim("oauth.tenant_claim", f.tenant_claim, DEFAULT_TENANT_CLAIM)?;
        let role_claim = claim("oauth.role_claim", f.role_claim, DEFAULT_ROLE_CLAIM)?;
        let algorithms = match f.algorithms {
            None => SUPPORTED_ALGORITHMS.to_vec(),
            Some(names) => {
                let mut algs = Vec::new();
                for name in names {
                    let alg = match name.as_str() {
                        "RS256" => Algorithm::RS256,
                        "ES256" => Algorithm::ES256,
                        "EdDSA" => Algorithm::EdDSA,
                        other => {
                            return Err(invalid(
                                "oauth.algorithms",
                                format!("{other:?} is not supported; use RS256, ES256 and/or EdDSA"),
                            ));
                        }
                    };
                    algs.push(alg);
                }
                if algs.is_empty() {
                    return Err(invalid("oauth.algorithms", "must list at least one of RS256, ES256, EdDSA"));
                }
                algs
            }
        };
        let leeway_secs = f.leeway_secs.unwrap_or(DEFAULT_LEEWAY_SECS);
        if leeway_secs > 300 {
            return Err(invalid("oauth.leeway_secs", format!("must be 0 to 300 (got {leeway_secs})")));
        }
        let authorization_servers = f.authorization_servers.unwrap_or_else(|| vec![issuer.clone()]);
        if authorization_servers.is_empty() || authorization_servers.iter().any(|s| s.trim().is_empty()) {
            return Err(invalid("oauth.authorization_servers", "must list at least one non-empty issuer URL"));
        }
        Ok(Some(OAuthSettings {
            issuer,
            audience,
            jwks_url,
            tenant_claim,
            role_claim,
            algorithms,
            leeway_secs,
            authorization_servers,
        }))
    }

    /// Where the RFC 9728 metadata for [`Self::audience`] lives: the well-known path inserted between the
    /// resource's origin and its path (`https://h/mcp` → `https://h/.well-known/oauth-protected-resource/mcp`).
    pub fn resource_metadata_url(&self) -> String {
        let after_scheme = self.audience.find("://").map(|i| i + 3).unwrap_or(0);
        let path_start =
            self.audience[after_scheme..].find('/').map(|i| i + after_scheme).unwrap_or(self.audience.len());
        let (origin, path) = self.audience.split_at(path_start);
        let path = path.trim_end_matches('/');
        format!("{origin}/.well-known/oauth-protected-resource{path}")
    }

    /// The RFC 9728 protected-resource metadata document.
    pub fn resource_metadata(&self) -> Value {
        serde_json::json!({
            "resource": self.audience,
            "authorization_servers": self.authorization_servers,
            "bearer_methods_supported": ["header"],
            "resource_name": "make-budget-mcp",
        })
    }
}

/// Does `presented` have the shape of a JWT (three base64url segments)? API tokens (`mbm_…`) never do.
pub fn looks_like_jwt(presented: &str) -> bool {
    let parts: Vec<&str> = presented.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// Why an access token was refused. The message is safe to send back (`error_description`): it names the
/// failed check and never contains the token or its claims' values.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error("the token's {0}")]
    Claim(String),
    /// The issuer's keys could not be fetched and none are cached: not the client's fault.
    #[error("the authorization server's keys are unavailable")]
    KeysUnavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One verification key from the JWKS, bound to the single algorithm its type allows.
struct Key {
    alg: Algorithm,
    key: DecodingKey,
}

#[derive(Default)]
struct KeyCache {
    /// By kid; a key without a kid is stored under "".
    keys: HashMap<String, Arc<Key>>,
    fetched_at: Option<Instant>,
}

/// Verifies OAuth access tokens; shared by every request.
pub struct OAuthVerifier {
    settings: OAuthSettings,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    /// Held while fetching, so concurrent misses wait for one fetch instead of starting their own.
    fetching: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for OAuthVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthVerifier").field("issuer", &self.settings.issuer).finish_non_exhaustive()
    }
}

impl OAuthVerifier {
    pub fn new(settings: OAuthSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("make-budget-mcp/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(OAuthVerifier { settings, http, cache: RwLock::new(KeyCache::default()), fetching: Mutex::new(None) })
    }

    pub fn settings(&self) -> &OAuthSettings {
        &self.settings
    }

    /// The principal for a presented JWT, or why it is refused.
    pub async fn authenticate(&self, store: &Store, token: &str) -> Result<Principal, OAuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| OAuthError::Invalid("token is not a well-formed JWT"))?;
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(OAuthError::Invalid("token's signing algorithm is not accepted"));
        }
        let kid = header.kid.unwrap_or_default();
        let key = self.key(&kid).await?;
        if key.alg != header.alg {
            return Err(OAuthError::Invalid("token's signing algorithm does not match its key"));
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![key.alg];
        validation.leeway = self.settings.leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation).map_err(describe)?;
        self.principal(store, data.claims).await
    }

    async fn principal(&self, store: &Store, claims: Map<String, Value>) -> Result<Principal, OAuthError> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).filter(|v| !v.is_empty());
        let subject = text("sub").ok_or_else(|| OAuthError::Claim("`sub` claim is missing or not a string".into()))?;
        let (tc, rc) = (&self.settings.tenant_claim, &self.settings.role_claim);
        let tenant = text(tc).ok_or_else(|| OAuthError::Claim(format!("`{tc}` claim (the tenant) is missing")))?;
        let role_name = text(rc).ok_or_else(|| OAuthError::Claim(format!("`{rc}` claim (the role) is missing")))?;
        let role: Role = role_name.parse().map_err(|_| {
            OAuthError::Claim(format!("`{rc}` claim is not one of viewer, auditor, manager, operator, admin"))
        })?;
        let found = match tenant.parse::<TenantId>() {
            Ok(id) => store.tenant_by_id(id).await?,
            Err(_) => store.tenant_by_name(tenant).await?,
        };
        let record = found.ok_or_else(|| OAuthError::Claim(format!("`{tc}` claim names no tenant on this server")))?;
        let tenant_id = record
            .id
            .parse()
            .map_err(|_| StoreError::Corrupt { table: "tenants", detail: format!("bad id {}", record.id) })?;
        Ok(Principal {
            tenant_id,
            tenant_name: record.name,
            subject: subject.chars().take(200).collect(),
            role,
            transport: Transport::Http,
            token_id: None,
        })
    }

    /// The key for `kid`: from the cache if fresh, else after a (rate-limited, shared) fetch.
    async fn key(&self, kid: &str) -> Result<Arc<Key>, OAuthError> {
        if let Some(key) = self.cached(kid, false).await {
            return Ok(key);
        }
        let mut last_fetch = self.fetching.lock().await;
        // Someone else may have fetched while we waited for the lock.
        if let Some(key) = self.cached(kid, false).await {
            return Ok(key);
        }
        let have_keys = self.cache.read().await.fetched_at.is_some();
        let stale = self.cache.read().await.fetched_at.is_none_or(|t| t.elapsed() >= JWKS_MAX_AGE);
        let may_refetch = last_fetch.is_none_or(|t| t.elapsed() >= REFETCH_MIN_INTERVAL);
        if stale || may_refetch {
            *last_fetch = Some(Instant::now());
            match self.fetch().await {
                Ok(keys) => {
                    tracing::info!(keys = keys.len(), "fetched the OAuth issuer's signing keys");
                    *self.cache.write().await = KeyCache { keys, fetched_at: Some(Instant::now()) };
                }
                Err(e) => {
                    tracing::warn!(error = %e, url = %self.settings.jwks_url, "cannot fetch the OAuth JWKS");
                    if !have_keys {
                        return Err(OAuthError::KeysUnavailable);
                    }
                }
            }
        }
        self.cached(kid, true).await.ok_or(OAuthError::Invalid("token's signing key (kid) is not known to its issuer"))
    }

    async fn cached(&self, kid: &str, allow_stale: bool) -> Option<Arc<Key>> {
        let cache = self.cache.read().await;
        let fresh = cache.fetched_at.is_some_and(|t| t.elapsed() < JWKS_MAX_AGE);
        if !fresh && !allow_stale {
            return None;
        }
        match cache.keys.get(kid) {
            Some(k) => Some(k.clone()),
            // A token without a kid is fine when the issuer publishes exactly one key.
            None if kid.is_empty() && cache.keys.len() == 1 => cache.keys.values().next().cloned(),
            None => None,
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<Key>>, String> {
        let mut resp = self.http.get(&self.settings.jwks_url).send().await.map_err(|e| e.without_url().to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        if resp.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
            return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.without_url().to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<Value>,
        }
        let set: RawSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = HashMap::new();
        for raw in set.keys {
            // Keys of types we do not handle are skipped, not fatal: issuers publish several kinds.
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw) else { continue };
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            match usable_key(&jwk) {
                Some(key) => {
                    keys.insert(kid, Arc::new(key));
                }
                None => tracing::debug!(kid, "skipping a JWKS key that is not an RS256/ES256/EdDSA signing key"),
            }
        }
        Ok(keys)
    }
}

/// The key and the one algorithm it may verify, or `None` for encryption keys, symmetric keys, other
/// curves, or a declared `alg` that contradicts the key type.
fn usable_key(jwk: &Jwk) -> Option<Key> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))) {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        _ => return None,
    };
    let declared_ok = match jwk.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(KeyAlgorithm::EdDSA) => alg == Algorithm::EdDSA,
        Some(_) => false,
    };
    if !declared_ok {
        return None;
    }
    Some(Key { alg, key: DecodingKey::from_jwk(jwk).ok()? })
}

/// A validation failure as a description a client can act on.
fn describe(e: jsonwebtoken::errors::Error) -> OAuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    OAuthError::Invalid(match e.kind() {
        K::ExpiredSignature => "token has expired",
        K::ImmatureSignature => "token is not valid yet (nbf)",
        K::InvalidAudience => "token's audience (aud) is not this server",
        K::InvalidIssuer => "token's issuer (iss) is not the configured authorization server",
        K::InvalidSignature => "token's signature does not verify",
        K::InvalidAlgorithm | K::MissingAlgorithm => "token's signing algorithm is not accepted",
        K::MissingRequiredClaim(c) => match c.as_str() {
            "exp" => "token has no expiry (exp)",
            "aud" => "token has no audience (aud)",
            "iss" => "token has no issuer (iss)",
            _ => "token has no subject (sub)",
        },
        _ => "token is malformed",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> OAuthFile {
        OAuthFile {
            issuer: Some("https://idp.example.com/".into()),
            audience: Some("https://mcp.example.com/mcp".into()),
            jwks_url: Some("https://idp.example.com/.well-known/jwks.json".into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_and_metadata_location() {
        let s = OAuthSettings::resolve(section()).unwrap().unwrap();
        assert_eq!((s.tenant_claim.as_str(), s.role_claim.as_str()), ("mbm_tenant", "mbm_role"));
        assert_eq!(s.algorithms, SUPPORTED_ALGORITHMS);
        assert_eq!(s.leeway_secs, 60);
        assert_eq!(s.authorization_servers, ["https://idp.example.com/"]);
        assert_eq!(s.resource_metadata_url(), "https://mcp.example.com/.well-known/oauth-protected-resource/mcp");
        let root = OAuthSettings { audience: "https://mcp.example.com".into(), ..s };
        assert_eq!(root.resource_metadata_url(), "https://mcp.example.com/.well-known/oauth-protected-resource");
        assert_eq!(OAuthSettings::resolve(OAuthFile::default()).unwrap(), None);
    }

    #[test]
    fn bad_sections_name_their_key() {
        let err = |f: OAuthFile| OAuthSettings::resolve(f).unwrap_err().to_string();
        assert!(err(OAuthFile { audience: None, ..section() }).contains("`oauth.audience`"));
        assert!(err(OAuthFile { algorithms: Some(vec!["HS256".into()]), ..section() }).contains("`oauth.algorithms`"));
        assert!(err(OAuthFile { leeway_secs: Some(u64::MAX), ..section() }).contains("`oauth.leeway_secs`"));
        let plain = OAuthFile { jwks_url: Some("http://idp.example.com/jwks".into()), ..section() };
        assert!(err(plain).contains("`oauth.jwks_url`"));
        let local = OAuthFile { jwks_url: Some("http://127.0.0.1:9000/jwks".into()), ..section() };
        assert!(OAuthSettings::resolve(local).is_ok());
        let over = section().overridden_by(OAuthFile { role_claim: Some("roles".into()), ..Default::default() });
        assert_eq!(OAuthSettings::resolve(over).unwrap().unwrap().role_claim, "roles");
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(!looks_like_jwt(&crate::auth::token::mint().secret));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a..c"));
        assert!(!looks_like_jwt("a.b.c=="));
    }

    #[test]
    fn symmetric_and_mismatched_keys_are_unusable() {
        let jwk = |v: Value| serde_json::from_value::<Jwk>(v).unwrap();
        let oct = jwk(serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"}));
        assert!(usable_key(&oct).is_none());
        let ed =
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        assert_eq!(usable_key(&jwk(ed.clone())).unwrap().alg, Algorithm::EdDSA);
        let mut lying = ed;
        lying["alg"] = "RS256".into();
        assert!(usable_key(&jwk(lying)).is_none());
    }
}
