//! HTTPS: the real binary serving MCP over rustls with a certificate from a CA made in the test.
//! Clients trust only that CA, so a handshake succeeds only if the server presents what it should.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// A test certificate authority and the server certificates it signs.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate (leaf) and its key, as PEM, plus the DER a client sees.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "make-budget-mcp test CA");
        TestCa { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    fn leaf(&self, name: &str) -> Leaf {
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &*self.issuer).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    fn reqwest_root(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.issuer.pem().as_bytes()).unwrap()
    }

    /// An HTTPS client trusting only this CA.
    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder().tls_certs_only([self.reqwest_root()]).build().unwrap()
    }

    /// A raw rustls client config trusting only this CA, restricted to `versions`.
    fn rustls_config(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

fn write_pair(dir: &Path, leaf: &Leaf) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    (cert.display().to_string(), key.display().to_string())
}

async fn start_tls(db_url: &str, cert: &str, key: &str) -> HttpServer {
    let server = HttpServer::start_with(db_url, &[("MBM_TLS_CERT", cert), ("MBM_TLS_KEY", key)]).await;
    assert!(server.base.starts_with("https://127.0.0.1:"), "announced {}", server.base);
    server
}

fn port(server: &HttpServer) -> u16 {
    server.base.rsplit(':').next().unwrap().parse().unwrap()
}

type RawTls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A raw TLS connection to the server.
async fn connect_raw(server: &HttpServer, config: Arc<ClientConfig>) -> std::io::Result<RawTls> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port(server))).await?;
    tokio_rustls::TlsConnector::from(config).connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

fn presented_leaf(tls: &RawTls) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().expect("server certificate")[0].clone().into_owned()
}

/// `GET /healthz` on an open HTTP/1.1 connection (kept alive); returns the response head and body.
async fn healthz_on(tls: &mut RawTls) -> String {
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&response).contains(r#""status":"ok"}"#) {
            let n = tls.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed: {}", String::from_utf8_lossy(&response));
            response.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("healthz answered on the open connection");
    String::from_utf8(response).unwrap()
}

async fn https_mcp_client(ca: &TestCa, server: &HttpServer, token: &str) -> Client {
    let transport = StreamableHttpClientTransport::with_client(
        ca.client(),
        StreamableHttpClientTransportConfig::with_uri(server.mcp_url.clone()).auth_header(token.to_owned()),
    );
    ().serve_with_lifecycle(transport, ClientLifecycleMode::Initialize).await.expect("MCP over HTTPS")
}

async fn wait_for_log(server: &HttpServer, needle: &str) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !server.logs().contains(needle) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with {needle:?}:\n{}", server.logs()));
}

fn sighup(server: &HttpServer) {
    let status = std::process::Command::new("kill").args(["-HUP", &server.pid().to_string()]).status().unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_over_https_with_hsts_and_no_plain_http() {
    let db = sqlite_db();
    let tenant = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &tenant, "viewer", "alice");
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_pair(dir.path(), &ca.leaf("server-a"));
    let server = start_tls(&db.url, &cert, &key).await;

    let client = https_mcp_client(&ca, &server, &token).await;
    let me = call_ok(&client, "whoami", json!({})).await;
    assert_eq!((me["tenant_id"].as_str(), me["subject"].as_str()), (Some(tenant.as_str()), Some("alice")));
    client.cancel().await.unwrap();

    for path in ["/healthz", "/mcp"] {
        let resp = ca.client().get(format!("{}{path}", server.base)).send().await.unwrap();
        assert_eq!(
            resp.headers().get("strict-transport-security").and_then(|v| v.to_str().ok()),
            Some("max-age=31536000"),
            "HSTS on {path} ({})",
            resp.status()
        );
    }

    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{}/healthz", port(&server))).send().await;
    assert!(plain.is_err(), "plain HTTP to the TLS port must not get an answer: {plain:?}");
    let raw_post = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/mcp", port(&server)))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#)
        .send()
        .await;
    assert!(raw_post.is_err(), "an MCP request over plain HTTP must fail: {raw_post:?}");

    // Both supported versions work, and ALPN settles on HTTP/1.1 even when the client prefers h2.
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let tls = connect_raw(&server, ca.rustls_config(&[version])).await.expect("handshake");
        let session = tls.get_ref().1;
        assert_eq!(session.protocol_version(), Some(version.version));
        assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
    }
    server.stop().await;

    // Without TLS there is no HSTS header (it would pin browsers to a scheme the server does not speak).
    let plain_server = HttpServer::start(&db.url).await;
    assert!(plain_server.base.starts_with("http://"));
    let resp = reqwest::get(format!("{}/healthz", plain_server.base)).await.unwrap();
    assert!(resp.status().is_success());
    assert!(resp.headers().get("strict-transport-security").is_none());
    plain_server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_without_dropping_connections() {
    let db = sqlite_db();
    let tenant = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &tenant, "viewer", "alice");
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (ca.leaf("server-old"), ca.leaf("server-new"));
    let (cert, key) = write_pair(dir.path(), &old);
    let server = start_tls(&db.url, &cert, &key).await;
    // A fresh client config per connection: a shared one would resume the earlier TLS session, and a
    // resumed session reports the certificate of the session it resumes.
    let config = || ca.rustls_config(&[&rustls::version::TLS13, &rustls::version::TLS12]);

    let session = https_mcp_client(&ca, &server, &token).await;
    assert_eq!(call_ok(&session, "whoami", json!({})).await["subject"], "alice");
    let mut kept = connect_raw(&server, config()).await.unwrap();
    assert_eq!(presented_leaf(&kept), old.der);
    assert!(healthz_on(&mut kept).await.starts_with("HTTP/1.1 200"));

    write_pair(dir.path(), &new);
    sighup(&server);
    wait_for_log(&server, "TLS certificate reloaded").await;

    let fresh = connect_raw(&server, config()).await.unwrap();
    assert_eq!(presented_leaf(&fresh), new.der, "new connections get the new certificate");
    assert!(healthz_on(&mut kept).await.starts_with("HTTP/1.1 200"), "the open connection still works");
    assert_eq!(call_ok(&session, "whoami", json!({})).await["subject"], "alice", "the MCP session still works");

    // A broken replacement (the old key with the new certificate) is refused; the current pair stays.
    std::fs::write(dir.path().join("key.pem"), &old.key_pem).unwrap();
    sighup(&server);
    wait_for_log(&server, "TLS certificate reload failed").await;
    let logs = server.logs();
    assert!(logs.contains("does not match the certificate"), "{logs}");
    let key_body = old.key_pem.lines().nth(1).unwrap();
    assert!(!logs.contains(key_body), "key material in the log");
    let after = connect_raw(&server, config()).await.unwrap();
    assert_eq!(presented_leaf(&after), new.der);
    assert_eq!(call_ok(&session, "whoami", json!({})).await["subject"], "alice");
    session.cancel().await.unwrap();
    server.stop().await;
}

/// `serve` with a bad pair exits at once with a message naming the file and the problem.
async fn start_error(db_url: &str, cert: &Path, key: &Path) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(bin())
            .args(["serve", "--transport", "http", "--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .env("MBM_DATABASE_URL", db_url)
            .env("MBM_CONFIG", "/dev/null")
            .env("MBM_MASTER_KEY", TEST_MASTER_KEY)
            .env("MBM_AUDIT_SIGNING_KEY", TEST_AUDIT_KEY)
            .env(ALL_TOOLSETS.0, ALL_TOOLSETS.1)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("serve with a bad TLS pair must exit")
    .unwrap();
    assert!(!out.status.success());
    String::from_utf8(out.stderr).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificate_files_stop_the_server_with_a_clear_message() {
    let db = sqlite_db();
    let ca = TestCa::new();
    let (a, b) = (ca.leaf("a"), ca.leaf("b"));
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&key, &a.key_pem).unwrap();

    let err = start_error(&db.url, &cert, &key).await;
    assert!(err.contains(&cert.display().to_string()) && err.contains("cannot read"), "{err}");

    std::fs::write(&cert, "hello\n").unwrap();
    let err = start_error(&db.url, &cert, &key).await;
    assert!(err.contains("cert.pem") && err.contains("no PEM certificate"), "{err}");

    std::fs::write(&cert, &b.cert_pem).unwrap();
    let err = start_error(&db.url, &cert, &key).await;
    assert!(err.contains("key.pem") && err.contains("does not match the certificate in"), "{err}");

    std::fs::write(&key, &b.cert_pem).unwrap();
    let err = start_error(&db.url, &cert, &key).await;
    assert!(err.contains("key.pem") && err.contains("no PEM private key"), "{err}");
    for pem in [&a.key_pem, &b.key_pem] {
        assert!(!err.contains(pem.lines().nth(1).unwrap()), "key material in the error");
    }
}

/// Over TLS too, a client that completes the handshake and then sends nothing is disconnected after the
/// header timeout (1 s here), and a new client is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_after_the_handshake_is_disconnected_after_the_header_timeout() {
    let db = sqlite_db();
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_pair(dir.path(), &ca.leaf("server"));
    let server = HttpServer::start_with(
        &db.url,
        &[("MBM_TLS_CERT", &cert), ("MBM_TLS_KEY", &key), ("MBM_HTTP_HEADER_READ_TIMEOUT_SECS", "1")],
    )
    .await;
    let mut silent = connect_raw(&server, ca.rustls_config(&[&rustls::version::TLS13])).await.expect("handshake");
    let started = std::time::Instant::now();
    let mut fresh = connect_raw(&server, ca.rustls_config(&[&rustls::version::TLS13])).await.unwrap();
    assert!(healthz_on(&mut fresh).await.starts_with("HTTP/1.1 200"), "another client is served meanwhile");
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    let closed_after = started.elapsed();
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the silent connection is closed: {read:?}");
    assert!(
        closed_after >= Duration::from_millis(800) && closed_after < Duration::from_millis(2500),
        "closed after {closed_after:?}"
    );
}
