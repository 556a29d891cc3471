//! OAuth 2.1 resource server: the real binary accepting JWT access tokens from an "issuer" that lives in
//! the test (its JWKS served by a small axum server on loopback, its keys generated here), alongside
//! API tokens; every refusal is a 401 whose `WWW-Authenticate` points MCP clients at the RFC 9728 metadata.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::*;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.example.test/";
const AUDIENCE: &str = "https://mcp.example.test/mcp";
const METADATA_URL: &str = "https://mcp.example.test/.well-known/oauth-protected-resource/mcp";

/// A signing key of the test issuer: what signs tokens, and its public JWK.
struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    fn ed25519(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}),
        }
    }

    fn p256(kid: &str) -> Self {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref(); // 0x04 || x || y
        let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..65]));
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig"}),
        }
    }

    /// A token with `claims`, signed by this key but announcing `kid`.
    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims(tenant: &str, role: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice@example.test", "iat": now(), "nbf": now() - 5,
           "exp": now() + 600, "mbm_tenant": tenant, "mbm_role": role})
}

/// The test issuer's JWKS endpoint; counts how often it is fetched.
struct Jwks {
    url: String,
    fetches: Arc<AtomicUsize>,
}

async fn serve_jwks(keys: &[&SigningKey]) -> Jwks {
    let doc = json!({"keys": keys.iter().map(|k| k.jwk.clone()).chain([
        // Issuers publish other keys too; these must be skipped, not break the set.
        json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}),
        json!({"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"}),
    ]).collect::<Vec<_>>()});
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let doc = doc.clone();
            async move { axum::Json(doc) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Jwks { url, fetches }
}

async fn start_oauth_server(db_url: &str, jwks: &Jwks) -> HttpServer {
    HttpServer::start_with(
        db_url,
        &[
            ("MBM_OAUTH_ISSUER", ISSUER),
            ("MBM_OAUTH_AUDIENCE", AUDIENCE),
            ("MBM_OAUTH_JWKS_URL", &jwks.url),
            ("MBM_OAUTH_ALGORITHMS", "ES256,EdDSA"),
        ],
    )
    .await
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

/// POST an MCP initialize with `token` (if any); returns the status and the WWW-Authenticate header.
async fn post_initialize(server: &HttpServer, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(&server.mcp_url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INITIALIZE);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (resp.status().as_u16(), challenge)
}

/// The token is refused with 401, `invalid_token`, the metadata pointer, and a description containing
/// `why` (and not the token).
async fn assert_refused(server: &HttpServer, token: &str, why: &str) {
    let (status, challenge) = post_initialize(server, Some(token)).await;
    assert_eq!(status, 401, "{why}: {challenge}");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains(&format!(r#"resource_metadata="{METADATA_URL}""#)), "{challenge}");
    assert!(challenge.contains(r#"error="invalid_token""#), "{challenge}");
    let description = challenge.split("error_description=").nth(1).unwrap_or_default();
    assert!(description.contains(why), "expected {why:?} in {challenge}");
    for part in token.split('.') {
        assert!(!challenge.contains(part), "the challenge echoes the token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_access_tokens_are_validated_and_api_tokens_still_work() {
    let db = sqlite_db();
    let tenant_id = create_tenant(&db.url, "acme");
    let api_token = issue_token(&db.url, &tenant_id, "auditor", "ci-bot");
    let (ed, ec) = (SigningKey::ed25519("ed-1"), SigningKey::p256("ec-1"));
    let jwks = serve_jwks(&[&ed, &ec]).await;
    let server = start_oauth_server(&db.url, &jwks).await;

    // Valid tokens (tenant by name and by id, both key types) become the claimed principal.
    for (token, role) in
        [(ed.sign(&claims("acme", "manager")), "manager"), (ec.sign(&claims(&tenant_id, "viewer")), "viewer")]
    {
        let client = http_client(&server.mcp_url, &token, Lifecycle::Initialize).await;
        let me = call_ok(&client, "whoami", json!({})).await;
        assert_eq!(me["tenant_id"], tenant_id.as_str());
        assert_eq!(me["tenant_name"], "acme");
        assert_eq!((me["subject"].as_str(), me["role"].as_str()), (Some("alice@example.test"), Some(role)));
        assert_eq!(me["transport"], "http");
        client.cancel().await.unwrap();
    }
    // The role is enforced as for API tokens: a viewer cannot create a budget.
    let viewer = http_client(&server.mcp_url, &ed.sign(&claims("acme", "viewer")), Lifecycle::Initialize).await;
    let denied = call_err(&viewer, "create_budget", budget_args("Ops")).await;
    assert!(denied.contains("budget:create"), "{denied}");
    viewer.cancel().await.unwrap();

    // An API token works alongside.
    let client = http_client(&server.mcp_url, &api_token, Lifecycle::Initialize).await;
    let me = call_ok(&client, "whoami", json!({})).await;
    assert_eq!((me["subject"].as_str(), me["role"].as_str()), (Some("ci-bot"), Some("auditor")));
    client.cancel().await.unwrap();

    // Every way a token can be wrong.
    let mut c = claims("acme", "admin");
    c["exp"] = json!(now() - 3600);
    assert_refused(&server, &ed.sign(&c), "has expired").await;
    let mut c = claims("acme", "admin");
    c["nbf"] = json!(now() + 3600);
    assert_refused(&server, &ed.sign(&c), "not valid yet").await;
    let mut c = claims("acme", "admin");
    c["aud"] = json!("https://other.example.test/mcp");
    assert_refused(&server, &ed.sign(&c), "audience").await;
    let mut c = claims("acme", "admin");
    c["iss"] = json!("https://evil.example.test/");
    assert_refused(&server, &ed.sign(&c), "issuer").await;
    let forger = SigningKey::ed25519("ed-1");
    assert_refused(&server, &forger.sign(&claims("acme", "admin")), "signature does not verify").await;
    assert_refused(&server, &ed.sign_as("ed-404", &claims("acme", "admin")), "kid").await;
    assert_refused(&server, &ec.sign_as("ed-1", &claims("acme", "admin")), "does not match its key").await;
    let mut c = claims("acme", "admin");
    c.as_object_mut().unwrap().remove("mbm_tenant");
    assert_refused(&server, &ed.sign(&c), "`mbm_tenant` claim (the tenant) is missing").await;
    assert_refused(&server, &ed.sign(&claims("globex", "admin")), "names no tenant").await;
    let mut c = claims("acme", "admin");
    c.as_object_mut().unwrap().remove("mbm_role");
    assert_refused(&server, &ed.sign(&c), "`mbm_role` claim (the role) is missing").await;
    assert_refused(&server, &ed.sign(&claims("acme", "root")), "not one of viewer").await;
    // A symmetric token signed with the (public) "hmac" key's bytes: the classic algorithm confusion.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("hmac".into());
    let forged = jsonwebtoken::encode(&hs, &claims("acme", "admin"), &EncodingKey::from_secret(b"secret")).unwrap();
    assert_refused(&server, &forged, "algorithm is not accepted").await;
    // Not allowed by MBM_OAUTH_ALGORITHMS even though the key would verify it.
    assert_refused(&server, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "algorithm is not accepted").await;

    // No token at all: a challenge without an error code, still pointing at the metadata.
    let (status, challenge) = post_initialize(&server, None).await;
    assert_eq!(status, 401);
    assert!(challenge.contains(&format!(r#"resource_metadata="{METADATA_URL}""#)), "{challenge}");
    assert!(!challenge.contains("error="), "{challenge}");
    // A wrong API token gets the same pointer.
    let (status, challenge) = post_initialize(&server, Some(&format!("mbm_{}", "0".repeat(64)))).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("resource_metadata=") && challenge.contains("invalid_token"), "{challenge}");

    // Unknown kids did not turn into a stream of JWKS requests.
    for i in 0..10 {
        assert_refused(&server, &ed.sign_as(&format!("storm-{i}"), &claims("acme", "admin")), "kid").await;
    }
    let fetches = jwks.fetches.load(Ordering::SeqCst);
    assert!((1..=2).contains(&fetches), "JWKS fetched {fetches} times");

    let logs = server.logs();
    assert!(!logs.contains(&forged) && !logs.contains(ed.sign(&claims("acme", "admin")).split('.').nth(2).unwrap()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_resource_metadata_is_published() {
    let db = sqlite_db();
    let key = SigningKey::ed25519("k");
    let jwks = serve_jwks(&[&key]).await;
    let server = start_oauth_server(&db.url, &jwks).await;
    let expected = json!({
        "resource": AUDIENCE,
        "authorization_servers": [ISSUER],
        "bearer_methods_supported": ["header"],
        "resource_name": "make-budget-mcp",
    });
    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"] {
        let resp = reqwest::get(format!("{}{path}", server.base)).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.json::<Value>().await.unwrap(), expected, "{path}");
    }
    server.stop().await;

    // Without [oauth] there is no metadata and the challenge has no pointer.
    let plain = HttpServer::start(&db.url).await;
    let resp = reqwest::get(format!("{}/.well-known/oauth-protected-resource", plain.base)).await.unwrap();
    assert_eq!(resp.status(), 404);
    let (status, challenge) = post_initialize(&plain, None).await;
    assert_eq!(status, 401);
    assert!(!challenge.contains("resource_metadata"), "{challenge}");
    plain.stop().await;
}
