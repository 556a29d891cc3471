//! The streamable HTTP transport: axum serving MCP at `/mcp` behind bearer-token authentication,
//! plus `/healthz` (process is up), `/readyz` (database reachable) and `/metrics` (Prometheus).
//!
//! Layers on `/mcp`, outermost first:
//! 1. request id: `x-request-id` from the client (if sane) or a new UUIDv7, in every log line of the
//!    request (a tracing span), in audit records, and echoed in the response;
//! 2. in-flight tracking for graceful shutdown (POSTs, until their response body is sent);
//! 3. failed-authentication limit per client IP ([`client_ip`]: the peer, or behind a trusted proxy the
//!    forwarded client): a failed authentication over the limit gets 429 with `Retry-After`; valid
//!    credentials always pass;
//! 4. authentication: a request without a valid token gets `401` with `WWW-Authenticate: Bearer`; a
//!    valid token becomes a [`Principal`] in the request extensions, which rmcp hands to the tool call
//!    inside `http::request::Parts`. With `[oauth]` configured, JWT access tokens from the configured
//!    issuer are accepted too ([`crate::auth::oauth`]), the RFC 9728 metadata is served under
//!    `/.well-known/oauth-protected-resource`, and every 401 points at it;
//! 5. the body: declared or actual size over the limit gets 413, a body not received in time 408, and a
//!    body that is not a usable JSON-RPC message a JSON-RPC error ([`crate::mcp::jsonrpc`], shared with
//!    stdio; see `refuse_malformed` for the status codes).
//!
//! Connections are served by [`conn`] (header-read and idle timeouts, a connection bound, graceful
//! shutdown); HTTPS (rustls, certificate reload on SIGHUP, HSTS) is in [`tls`].

pub mod client_ip;
pub mod conn;
pub mod sessions;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::app::App;
use crate::auth::oauth::{self, OAuthError, OAuthSettings, OAuthVerifier};
use crate::auth::{Principal, Transport, token};
use crate::config::HttpSettings;
use crate::domain::clock::format_timestamp;
use crate::limits::retry_after_secs;
use crate::mcp::BudgetServer;
use crate::store::Store;

pub mod no_auth;

/// Largest accepted MCP request body. rmcp enforces it while reading; [`read_body`] also refuses
/// a larger declared `Content-Length` before reading anything.
pub const MAX_REQUEST_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The TCP peer's address, over plain HTTP and over TLS alike (in every request as `ConnectInfo<PeerAddr>`).
/// The failed-authentication limit counts per client address, which [`client_ip::ClientIp`] derives from
/// it and, behind a trusted proxy, from the forwarding header.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

pub use crate::auth::RequestId;

/// Build the application router. `sessions` ends every MCP session (and its SSE streams) when
/// cancelled; `inflight` counts MCP requests still being answered. With `local` (`--no-auth`), /mcp acts
/// as that principal without a token.
pub fn app(
    shared: Arc<App>,
    settings: &HttpSettings,
    local: Option<Principal>,
    sessions_ct: CancellationToken,
    inflight: InFlight,
) -> Router {
    let tools = Arc::new(BudgetServer::router_for(&shared.tools));
    let store = shared.store.clone();
    let auth_failures = FailedAuthLimit {
        app: shared.clone(),
        client_ip: Arc::new(client_ip::ClientIp::new(
            settings.trusted_proxies.clone(),
            settings.client_ip_header.clone(),
        )),
    };
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(settings.allowed_hosts.clone())
        .with_allowed_origins(settings.allowed_origins.clone())
        .enforce_origin_validation()
        .with_max_request_body_bytes(MAX_REQUEST_BODY_BYTES)
        .with_cancellation_token(sessions_ct.clone());
    let factory = move || Ok(BudgetServer::new(shared.clone(), tools.clone(), None));
    let mcp = if settings.stateless {
        // No sessions: each POST is answered on its own with a JSON body, so consecutive calls of one
        // client may go to different instances.
        mcp_router(
            factory,
            Arc::new(NeverSessionManager::default()),
            config.with_legacy_session_mode(false).with_json_response(true),
        )
    } else {
        let manager = Arc::new(LocalSessionManager::default());
        let guard = sessions::SessionGuard::new(manager.clone(), settings.max_sessions_per_principal);
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(guard.clone().prune_forever(sessions_ct.clone()));
        }
        // Behind authentication (layers run outermost first): every session is bound to its principal.
        mcp_router(factory, manager, config).layer(axum::middleware::from_fn_with_state(guard, sessions::bind_sessions))
    };
    let oauth = settings
        .oauth
        .clone()
        .map(|s| Arc::new(OAuthVerifier::new(s).expect("an HTTP client with default TLS settings builds")));
    let metadata = oauth.as_ref().map(|v| protected_resource_metadata(v.settings()));
    let auth = Auth { store: store.clone(), oauth };
    let body_timeout = settings.request_timeout;
    let mcp = mcp.layer(axum::middleware::from_fn_with_state(body_timeout, read_body));
    let mcp = match local {
        Some(p) => mcp.layer(axum::middleware::from_fn_with_state(p, no_auth::inject_local_principal)),
        None => mcp
            .layer(axum::middleware::from_fn_with_state(auth, require_bearer))
            .layer(axum::middleware::from_fn_with_state(auth_failures, limit_failed_auth)),
    };
    let mcp = mcp.layer(axum::middleware::from_fn_with_state(inflight, track_inflight));
    let mut router = Router::new()
        .merge(mcp)
        .merge(metadata.unwrap_or_default())
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz).with_state(store));
    if settings.metrics {
        let handle = crate::monitoring::install();
        router = router.route("/metrics", get(move || async move { metrics_text(&handle) }));
    }
    router.layer(axum::middleware::from_fn(request_id))
}

fn mcp_router<M: SessionManager>(
    factory: impl Fn() -> Result<BudgetServer, std::io::Error> + Send + Sync + Clone + 'static,
    sessions: Arc<M>,
    config: StreamableHttpServerConfig,
) -> Router {
    Router::new().nest_service("/mcp", StreamableHttpService::new(factory, sessions, config))
}

fn metrics_text(handle: &metrics_exporter_prometheus::PrometheusHandle) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))],
        crate::monitoring::render(handle),
    )
        .into_response()
}

/// Bind, announce the address on stderr, and serve until `shutdown` is cancelled. Then: stop accepting,
/// let in-flight calls finish (up to the grace period), end the sessions, and return once connections
/// are closed.
pub async fn serve(
    shared: Arc<App>,
    settings: HttpSettings,
    local: Option<Principal>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if local.is_some() {
        no_auth::check_listen(settings.listen)?;
    }
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    let addr: SocketAddr = listener.local_addr()?;
    if !addr.ip().is_loopback() && settings.allowed_hosts.iter().all(|h| is_loopback_name(h)) {
        tracing::warn!(%addr, "listening on a non-loopback address but only loopback Host headers are allowed; \
                               set http.allowed_hosts to the names clients use");
    }
    if let Some(p) = &local {
        tracing::warn!(%addr, tenant = %p.tenant_id, subject = p.subject, role = %p.role,
                       "authentication is OFF (--no-auth): every request on this loopback port acts as the local operator");
    }
    tracing::info!(%addr, stateless = settings.stateless, read_only = shared.policy.read_only, "listening");
    let sessions = CancellationToken::new();
    let inflight = InFlight::default();
    let app = app(shared, &settings, local, sessions.clone(), inflight.clone());
    if settings.metrics {
        tokio::spawn(crate::monitoring::upkeep(crate::monitoring::install(), shutdown.clone()));
    }
    let limits =
        conn::ConnLimits { header_read_timeout: settings.header_read_timeout, idle_timeout: settings.idle_timeout };
    let slots = conn::Slots::new(settings.max_connections);
    let mut server: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> = match settings
        .tls
        .clone()
    {
        None => {
            if !addr.ip().is_loopback() {
                tracing::warn!(%addr, "serving plain HTTP on a non-loopback address: bearer tokens travel in \
                                           clear text unless a proxy in front terminates TLS; see --tls-cert/--tls-key");
            }
            eprintln!("make-budget-mcp listening on http://{addr}/mcp");
            let listener = conn::PlainListener::new(listener, slots.clone());
            Box::pin(conn::serve(listener, app, limits, slots, shutdown.clone()))
        }
        Some(files) => {
            let certs = tls::CertStore::load(files).map_err(std::io::Error::other)?;
            let config = tls::server_config(certs.clone()).map_err(std::io::Error::other)?;
            tls::reload_on_sighup(certs, shutdown.clone())?;
            let listener = tls::TlsListener::bind(listener, config, slots.clone(), shutdown.clone())?;
            tracing::info!(%addr, "TLS on: TLS 1.2 and 1.3, certificate reloaded on SIGHUP");
            eprintln!("make-budget-mcp listening on https://{addr}/mcp");
            let app = app.layer(axum::middleware::map_response(add_hsts));
            Box::pin(conn::serve(listener, app, limits, slots, shutdown.clone()))
        }
    };
    tokio::select! {
        r = &mut server => return Ok(r?),
        () = shutdown.cancelled() => {}
    }
    Ok(drain(&inflight, settings.shutdown_grace, &sessions, &mut server).await?)
}

/// The shutdown sequence after the signal: wait for in-flight calls, end the sessions, wait for the
/// connections to close (at most a few seconds more).
async fn drain(
    inflight: &InFlight,
    grace: Duration,
    sessions: &CancellationToken,
    server: &mut (impl std::future::Future<Output = std::io::Result<()>> + Unpin),
) -> std::io::Result<()> {
    let busy = inflight.count();
    if busy > 0 {
        tracing::info!(in_flight = busy, grace_s = grace.as_secs(), "shutting down: finishing in-flight calls");
    }
    tokio::select! {
        r = &mut *server => return r,
        () = inflight.idle() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(in_flight = inflight.count(), "shutdown grace period over; closing with calls unfinished");
        }
    }
    sessions.cancel();
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!("connections still open 5 s after sessions ended; exiting anyway");
            Ok(())
        }
    }
}

/// Counts MCP requests whose responses are not yet fully sent.
#[derive(Clone, Default)]
pub struct InFlight {
    count: Arc<tokio::sync::watch::Sender<usize>>,
}

impl InFlight {
    pub fn count(&self) -> usize {
        *self.count.borrow()
    }

    fn enter(&self) -> InFlightGuard {
        self.count.send_modify(|n| *n += 1);
        InFlightGuard(self.count.clone())
    }

    async fn idle(&self) {
        let mut rx = self.count.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

struct InFlightGuard(Arc<tokio::sync::watch::Sender<usize>>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Count a POST to /mcp as in flight until its response body has been sent (or the client went away).
/// GETs (the long-lived notification stream) and DELETEs are not calls.
async fn track_inflight(State(inflight): State<InFlight>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let guard = inflight.enter();
    let (parts, body) = next.run(req).await.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &guard;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// Take the client's `x-request-id` if it is a plausible id (1-64 of `[A-Za-z0-9._-]`), else make one.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("http", request_id = %id, method = %req.method(), path = req.uri().path());
    let quiet = matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics");
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let _entered = span.enter();
    let (status, elapsed_ms) = (resp.status().as_u16(), started.elapsed().as_millis() as u64);
    if quiet && resp.status().is_success() {
        tracing::debug!(status, elapsed_ms, "http request");
    } else {
        tracing::info!(status, elapsed_ms, "http request");
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// What the failed-authentication limit needs: the counters and how to find the client's address.
#[derive(Clone)]
struct FailedAuthLimit {
    app: Arc<App>,
    client_ip: Arc<client_ip::ClientIp>,
}

/// Limit failed authentications per client address (see [`crate::limits::AuthFailures`]). Only failures
/// are limited: a request whose credentials are valid passes even while its address is refused (behind a
/// proxy without `http.trusted_proxies`, every client shares one address). A failure from a refused
/// address, or the one that goes over the limit, gets 429 instead of 401. Credentials are still checked
/// while an address is refused, which costs one indexed lookup; guessing a 256-bit token is hopeless at any
/// rate, so the limit is there to bound noise, not to make guessing slower.
async fn limit_failed_auth(State(limit): State<FailedAuthLimit>, req: Request, next: Next) -> Response {
    let failures = &limit.app.policy.auth_failures;
    let Some(peer) = req.extensions().get::<ConnectInfo<PeerAddr>>().map(|c| c.0.0.ip()) else {
        return next.run(req).await;
    };
    let ip = limit.client_ip.resolve(peer, req.headers());
    let resp = next.run(req).await;
    if resp.status() != StatusCode::UNAUTHORIZED {
        return resp;
    }
    crate::monitoring::auth_failure();
    if let Some(wait) = failures.blocked(ip) {
        crate::monitoring::rate_limited("failed_auth");
        return too_many_failures(failures.limit(), wait);
    }
    if let Some(wait) = failures.failed(ip) {
        tracing::warn!(%ip, %peer, limit_per_minute = failures.limit(),
                       "too many failed authentications; further failures from this address are refused");
        crate::monitoring::rate_limited("failed_auth");
        return too_many_failures(failures.limit(), wait);
    }
    resp
}

fn too_many_failures(limit: u32, wait: Duration) -> Response {
    let secs = retry_after_secs(wait);
    let mut resp = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"error": "too_many_requests",
                    "message": format!("more than {limit} failed authentications per minute from this address; \
                                        retry after {secs} s")})),
    )
        .into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// Over HTTPS every response tells browsers-based clients to stay on HTTPS.
async fn add_hsts(mut resp: Response) -> Response {
    resp.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(tls::HSTS));
    resp
}

fn is_loopback_name(h: &str) -> bool {
    matches!(h, "localhost" | "127.0.0.1" | "::1" | "[::1]")
}

async fn readyz(State(store): State<Store>) -> Response {
    match store.ping().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "database unavailable"}))).into_response()
        }
    }
}

/// Receive the whole body within `timeout` and at most [`MAX_REQUEST_BODY_BYTES`] (a larger declared
/// `Content-Length` is refused before reading), so a slow or endless client holds nothing for long.
async fn read_body(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({"error": "payload_too_large", "limit_bytes": MAX_REQUEST_BODY_BYTES})),
        )
            .into_response()
    };
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_REQUEST_BODY_BYTES as u64) {
        return too_large();
    }
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let read = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
            if buf.len() + chunk.len() > MAX_REQUEST_BODY_BYTES {
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(())) => match refuse_malformed(&parts.headers, &buf) {
            Some(refused) => refused,
            None => next.run(Request::from_parts(parts, Body::from(buf))).await,
        },
        Ok(Err(StatusCode::PAYLOAD_TOO_LARGE)) => too_large(),
        Ok(Err(status)) => {
            (status, Json(json!({"error": "bad_request", "message": "the request body could not be read"})))
                .into_response()
        }
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            Json(json!({"error": "request_timeout",
                        "message": format!("the request body did not arrive within {} s", timeout.as_secs())})),
        )
            .into_response(),
    }
}

/// Answer a POST body that is not a usable JSON-RPC message ([`crate::mcp::jsonrpc::classify`], shared
/// with stdio) with a JSON-RPC error as `application/json`, instead of rmcp's `415` with a text body or
/// `-32601` for wrong params. The status follows the MCP 2025-11-25 transport: input the server cannot
/// accept as a request, notification or response (not JSON, not JSON-RPC, or a notification with wrong
/// params) gets `400 Bad Request`, its body the error with id `null` (or the request's id, if readable); a
/// request that is valid JSON-RPC but has wrong params is a request, answered with one JSON object, so
/// `200` with the `-32602` error and its id, as rmcp answers its own JSON-RPC errors on this path.
/// Bodies rmcp refuses before reading them (a wrong `Accept` or `Content-Type`) are left to rmcp.
fn refuse_malformed(headers: &axum::http::HeaderMap, body: &[u8]) -> Option<Response> {
    if !rmcp_reads_body(headers) {
        return None;
    }
    let rejection = crate::mcp::jsonrpc::classify(body).err()?;
    rejection.log("http", body);
    let status = if rejection.code == crate::mcp::jsonrpc::INVALID_PARAMS && rejection.answer {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Some((status, Json(rejection.to_json())).into_response())
}

/// rmcp's checks before it reads a POST body: `Accept` lists `application/json` and `text/event-stream`
/// (entries weighted `q=0` do not count), and `Content-Type` is `application/json`.
fn rmcp_reads_body(headers: &axum::http::HeaderMap) -> bool {
    let (mut json, mut sse) = (false, false);
    for entry in headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')) {
        let mut parts = entry.split(';');
        let essence = parts.next().unwrap_or_default().trim();
        let zero = |q: &str| {
            let (whole, fraction) = q.split_once('.').unwrap_or((q, ""));
            whole == "0" && fraction.bytes().all(|b| b == b'0')
        };
        let refused =
            parts.any(|p| p.split_once('=').is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case("q") && zero(v.trim())));
        if !refused {
            json |= essence.eq_ignore_ascii_case("application/json");
            sse |= essence.eq_ignore_ascii_case("text/event-stream");
        }
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    json && sse && essence.eq_ignore_ascii_case("application/json")
}

/// What the bearer middleware needs: the store (API tokens, tenants) and, if configured, the OAuth verifier.
#[derive(Clone)]
struct Auth {
    store: Store,
    oauth: Option<Arc<OAuthVerifier>>,
}

/// RFC 9728 metadata, at the root well-known path and at the path-suffixed form for the resource.
fn protected_resource_metadata<S: Clone + Send + Sync + 'static>(settings: &OAuthSettings) -> Router<S> {
    let doc = Arc::new(settings.resource_metadata());
    let serve = move || {
        let doc = doc.clone();
        async move { Json((*doc).clone()) }
    };
    let suffixed = settings
        .resource_metadata_url()
        .split_once("/.well-known/oauth-protected-resource")
        .map(|(_, path)| path.to_owned())
        .filter(|p| !p.is_empty() && p != "/mcp")
        // Only plain path characters: anything else could read as an axum route pattern.
        .filter(|p| p.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b)));
    let mut router = Router::new()
        .route("/.well-known/oauth-protected-resource", get(serve.clone()))
        .route("/.well-known/oauth-protected-resource/mcp", get(serve.clone()));
    if let Some(path) = suffixed {
        router = router.route(&format!("/.well-known/oauth-protected-resource{path}"), get(serve));
    }
    router
}

/// Axum middleware in front of /mcp: resolve the bearer token to a principal or answer 401.
async fn require_bearer(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let metadata_url = auth.oauth.as_ref().map(|v| v.settings().resource_metadata_url());
    let metadata_url = metadata_url.as_deref();
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let Some(presented) = presented else {
        return unauthorized(None, metadata_url);
    };
    if let Some(oauth) = auth.oauth.as_ref().filter(|_| oauth::looks_like_jwt(&presented)) {
        return match oauth.authenticate(&auth.store, &presented).await {
            Ok(principal) => {
                req.extensions_mut().insert(principal);
                next.run(req).await
            }
            Err(OAuthError::Store(e)) => {
                tracing::error!(error = %e, "tenant lookup for an OAuth token failed");
                (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "temporarily unavailable"}))).into_response()
            }
            Err(OAuthError::KeysUnavailable) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "temporarily unavailable",
                            "message": "the authorization server's signing keys cannot be fetched"})),
            )
                .into_response(),
            Err(e) => {
                tracing::info!(reason = %e, "refused an OAuth access token");
                unauthorized(Some(&e.to_string()), metadata_url)
            }
        };
    }
    let store = auth.store;
    match authenticate(&store, &presented).await {
        Ok(Some(principal)) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Ok(None) => unauthorized(Some("the access token is invalid, expired or revoked"), metadata_url),
        Err(e) => {
            tracing::error!(error = %e, "token lookup failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "temporarily unavailable"}))).into_response()
        }
    }
}

/// The principal for a presented token, or `None` if it is unknown, revoked or expired.
pub async fn authenticate(store: &Store, presented: &str) -> Result<Option<Principal>, crate::store::StoreError> {
    if !token::looks_valid(presented) {
        return Ok(None);
    }
    let Some(rec) = store.token_by_hash(&token::hash(presented)).await? else {
        return Ok(None);
    };
    let now = format_timestamp(store.clock().now());
    if rec.revoked_at.is_some() || rec.expires_at.as_deref().is_some_and(|exp| exp <= now.as_str()) {
        tracing::info!(token_id = rec.id, "refused a revoked or expired token");
        return Ok(None);
    }
    let (Ok(tenant_id), Ok(token_id)) = (rec.tenant_id.parse(), rec.id.parse()) else {
        return Err(crate::store::StoreError::Corrupt {
            table: "api_tokens",
            detail: format!("bad ids in {}", rec.id),
        });
    };
    Ok(Some(Principal {
        tenant_id,
        tenant_name: rec.tenant_name,
        subject: rec.subject,
        role: rec.role,
        transport: Transport::Http,
        token_id: Some(token_id),
    }))
}

/// 401 with the RFC 6750 challenge. Without credentials the challenge carries no error code. With OAuth
/// configured it points at the RFC 9728 metadata (`resource_metadata`), which is how MCP clients discover
/// the authorization server.
fn unauthorized(error_description: Option<&str>, resource_metadata: Option<&str>) -> Response {
    let mut challenge = r#"Bearer realm="make-budget-mcp""#.to_owned();
    if let Some(url) = resource_metadata {
        challenge.push_str(&format!(r#", resource_metadata="{url}""#));
    }
    if let Some(d) = error_description {
        // Descriptions are our own fixed texts (and claim names from the config); keep them header-safe.
        let d: String =
            d.chars().filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\').collect();
        challenge.push_str(&format!(r#", error="invalid_token", error_description="{d}""#));
    }
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "unauthorized",
                    "message": error_description.unwrap_or("send Authorization: Bearer <token>; \
                                                            tokens come from `make-budget-mcp token issue`")})),
    )
        .into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_str(&challenge).expect("ASCII header"));
    resp
}
