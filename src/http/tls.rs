//! HTTPS for the streamable HTTP transport: rustls (aws-lc-rs provider, TLS 1.2 and 1.3 only, ALPN
//! `http/1.1`) in front of the same axum app.
//!
//! Three things shape this file:
//! - **A slow client must not stall everyone else.** [`TlsListener::bind`] runs its own accept loop that
//!   hands every TCP connection to a task of its own for the handshake (bounded by
//!   [`HANDSHAKE_TIMEOUT`] and [`MAX_CONCURRENT_HANDSHAKES`]); only finished handshakes reach the server
//!   (`super::conn`), through a channel. Each connection holds one of the server's connection slots from
//!   before it is accepted until it closes, handshake included, so `http.max_connections` bounds TLS and
//!   plain connections alike.
//! - **Certificates are renewed without a restart.** The server config resolves its certificate through
//!   [`CertStore`], whose [`CertifiedKey`] is swapped whole on `SIGHUP`. Established connections keep the
//!   session they negotiated; new handshakes see the new certificate. A new pair that fails to load is
//!   refused with an error in the log and the old pair stays in service.
//! - **Start-up errors name the file and the problem** (missing, no certificate, key does not match), and
//!   never include key material.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::conn::{Accepted, Incoming, Slots};
use crate::config::TlsFiles;

/// A client that has not finished its handshake by then is disconnected.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; connections beyond this are closed straight away rather than queued,
/// so a flood of idle sockets costs one file descriptor each for a moment, not a task for ten seconds.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 1024;

/// The protocol versions offered. rustls cannot speak anything older, and 1.2 is the floor we accept.
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// `Strict-Transport-Security` sent on every HTTPS response: browsers-based clients stay on HTTPS for a year.
pub const HSTS: &str = "max-age=31536000";

/// Why a certificate or key could not be put in service. Every message names the file; none carries key
/// bytes (parse errors from the PEM layer are summarised, not echoed).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate file {path}: cannot read it: {source}")]
    ReadCert { path: PathBuf, source: std::io::Error },
    #[error("TLS private key file {path}: cannot read it: {source}")]
    ReadKey { path: PathBuf, source: std::io::Error },
    #[error("TLS certificate file {path}: contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("TLS certificate file {path}: a PEM certificate block is malformed")]
    BadCertificate { path: PathBuf },
    #[error(
        "TLS private key file {path}: contains no PEM private key \
         (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
    )]
    NoKey { path: PathBuf },
    #[error("TLS private key file {path}: the key type is not supported (use RSA, ECDSA P-256/P-384 or Ed25519)")]
    UnsupportedKey { path: PathBuf },
    #[error("TLS private key file {key} does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS certificate file {path}: the first certificate cannot be parsed: {reason}")]
    UnparsableCertificate { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// Read and check a certificate chain and its private key.
pub fn load_certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_pem =
        std::fs::read(&files.cert).map_err(|source| TlsError::ReadCert { path: files.cert.clone(), source })?;
    let key_pem = std::fs::read(&files.key).map_err(|source| TlsError::ReadKey { path: files.key.clone(), source })?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::BadCertificate { path: files.cert.clone() })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: files.cert.clone() });
    }
    // The PEM layer's errors may quote what it choked on; with a key file that could be key material.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey { path: files.key.clone() })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| TlsError::UnsupportedKey { path: files.key.clone() })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch { cert: files.cert.clone(), key: files.key.clone() })
        }
        // The provider could not tell (no public key exposed): accept, as rustls itself does.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(e) => Err(TlsError::UnparsableCertificate { path: files.cert.clone(), reason: e.to_string() }),
    }
}

/// The certificate in service, swapped whole on reload. Handshakes read it through a short read lock and
/// keep their own `Arc`, so a reload never disturbs a handshake in flight.
#[derive(Debug)]
pub struct CertStore {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    /// Load the pair; fails (naming the file) if it is unusable.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let provider = provider();
        let current = load_certified_key(&files, &provider)?;
        Ok(Arc::new(CertStore { files, provider, current: RwLock::new(Arc::new(current)) }))
    }

    /// Read the files again and put the new pair in service, or keep the old one and return why not.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_certified_key(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(())
    }

    /// The certificate chain in service (leaf first).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).cert.clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// The rustls server configuration: TLS 1.2/1.3, no client certificates, ALPN `http/1.1`.
pub fn server_config(certs: Arc<CertStore>) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(certs.provider.clone())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    // The server speaks HTTP/1.1 only (super::conn); offering h2 would break clients that pick it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Reload the certificate on every `SIGHUP` until `shutdown`. The handler is installed before this
/// returns, so a `SIGHUP` sent once the server announces itself never terminates the process.
#[cfg(unix)]
pub fn reload_on_sighup(certs: Arc<CertStore>, shutdown: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            match certs.reload() {
                Ok(()) => tracing::info!(cert = %certs.files.cert.display(), "TLS certificate reloaded"),
                Err(e) => tracing::error!(error = %e, "TLS certificate reload failed; still serving the previous one"),
            }
        }
    });
    Ok(())
}

#[cfg(not(unix))]
pub fn reload_on_sighup(_certs: Arc<CertStore>, _shutdown: CancellationToken) -> std::io::Result<()> {
    Ok(())
}

/// Connections whose TLS handshake has completed.
pub struct TlsListener {
    ready: mpsc::Receiver<Accepted<TlsStream<TcpStream>>>,
}

impl TlsListener {
    /// Start accepting on `tcp`: each connection takes one of `slots`, then handshakes in its own task; the
    /// accept loop and unfinished handshakes end with `shutdown`.
    pub fn bind(
        tcp: TcpListener,
        config: ServerConfig,
        slots: Slots,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(accept_loop(tcp, acceptor, slots, tx, shutdown));
        Ok(TlsListener { ready })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    slots: Slots,
    ready: mpsc::Sender<Accepted<TlsStream<TcpStream>>>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = accept_with_slot(&tcp, &slots) => accepted,
        };
        let Some((stream, peer, slot)) = accepted else { return };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many TLS handshakes in progress; closing the connection");
            continue;
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let outcome = tokio::select! {
                () = shutdown.cancelled() => return,
                outcome = handshake => outcome,
            };
            match outcome {
                Ok(Ok(io)) => {
                    let _ = ready.send(Accepted { io, peer, slot }).await;
                }
                // Port scanners, plain-HTTP clients and clients distrusting the certificate end up here:
                // routine, so not above debug.
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// A connection slot, then a TCP connection. `None` once the slots are closed.
async fn accept_with_slot(
    tcp: &TcpListener,
    slots: &Slots,
) -> Option<(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    let slot = slots.take().await?;
    loop {
        match tcp.accept().await {
            Ok((stream, peer)) => return Some((stream, peer, slot)),
            Err(e) => {
                // Mostly EMFILE/ENFILE: back off briefly instead of spinning (as axum does).
                tracing::warn!(error = %e, "accepting a TCP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Incoming for TlsListener {
    type Io = TlsStream<TcpStream>;

    async fn accept(&mut self) -> Option<Accepted<Self::Io>> {
        // `None` when the accept loop has ended (shutdown) and every finished handshake was taken.
        self.ready.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tls_12_and_13_are_offered() {
        let versions: Vec<_> = PROTOCOL_VERSIONS.iter().map(|v| v.version).collect();
        assert_eq!(versions, [rustls::ProtocolVersion::TLSv1_3, rustls::ProtocolVersion::TLSv1_2]);
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles { cert: dir.path().join("nope.pem"), key: dir.path().join("key.pem") };
        let e = load_certified_key(&files, &provider()).unwrap_err().to_string();
        assert!(e.contains("nope.pem") && e.contains("cannot read"), "{e}");
        std::fs::write(&files.cert, "not a certificate\n").unwrap();
        std::fs::write(&files.key, "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n").unwrap();
        let e = load_certified_key(&files, &provider()).unwrap_err().to_string();
        assert!(e.contains("nope.pem") && e.contains("no PEM certificate"), "{e}");
    }
}
