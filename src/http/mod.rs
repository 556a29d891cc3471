//! The streamable HTTP transport: axum serving MCP at `/mcp` behind bearer-token authentication,
//! plus `/healthz` (process is up) and `/readyz` (database reachable).
//!
//! Authentication happens before any MCP processing: a request without a valid token gets `401` with
//! `WWW-Authenticate: Bearer`. A valid token becomes a [`Principal`] in the request extensions, which
//! rmcp hands to the tool call inside `http::request::Parts`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::auth::{Principal, Transport, token};
use crate::config::HttpSettings;
use crate::domain::clock::format_timestamp;
use crate::mcp::BudgetServer;
use crate::store::Store;

/// Largest accepted MCP request body. rmcp enforces it while reading; [`reject_oversized`] also refuses
/// a larger declared `Content-Length` before reading anything.
pub const MAX_REQUEST_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Build the application router.
pub fn app(shared: Arc<App>, settings: &HttpSettings, shutdown: CancellationToken) -> Router {
    let tools = Arc::new(BudgetServer::router());
    let store = shared.store.clone();
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(settings.allowed_hosts.clone())
        .with_allowed_origins(settings.allowed_origins.clone())
        .with_max_request_body_bytes(MAX_REQUEST_BODY_BYTES)
        .with_cancellation_token(shutdown);
    let mcp = StreamableHttpService::new(
        move || Ok(BudgetServer::new(shared.clone(), tools.clone(), None)),
        LocalSessionManager::default().into(),
        config,
    );
    // Layers run outside-in: authentication first (401 before anything else), then the size check.
    let authenticated = Router::new()
        .nest_service("/mcp", mcp)
        .layer(axum::middleware::from_fn(reject_oversized))
        .layer(axum::middleware::from_fn_with_state(store.clone(), require_bearer));
    Router::new()
        .merge(authenticated)
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state(store)
}

/// Bind, announce the address on stderr, and serve until `shutdown` is cancelled.
pub async fn serve(shared: Arc<App>, settings: HttpSettings, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    let addr: SocketAddr = listener.local_addr()?;
    if !addr.ip().is_loopback() && settings.allowed_hosts.iter().all(|h| is_loopback_name(h)) {
        tracing::warn!(%addr, "listening on a non-loopback address but only loopback Host headers are allowed; \
                               set http.allowed_hosts to the names clients use");
    }
    tracing::info!(%addr, "listening");
    eprintln!("make-budget-mcp listening on http://{addr}/mcp");
    let app = app(shared, &settings, shutdown.clone());
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
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

/// Refuse a request whose declared `Content-Length` exceeds the limit, without reading its body.
async fn reject_oversized(req: Request, next: Next) -> Response {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > MAX_REQUEST_BODY_BYTES as u64 => (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({"error": "payload_too_large", "limit_bytes": MAX_REQUEST_BODY_BYTES})),
        )
            .into_response(),
        _ => next.run(req).await,
    }
}

/// Axum middleware in front of /mcp: resolve the bearer token to a principal or answer 401.
async fn require_bearer(State(store): State<Store>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let Some(presented) = presented else {
        return unauthorized(None);
    };
    match authenticate(&store, &presented).await {
        Ok(Some(principal)) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Ok(None) => unauthorized(Some("the access token is invalid, expired or revoked")),
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

/// 401 with the RFC 6750 challenge. Without credentials the challenge carries no error code.
fn unauthorized(error_description: Option<&str>) -> Response {
    let challenge = match error_description {
        None => r#"Bearer realm="make-budget-mcp""#.to_owned(),
        Some(d) => format!(r#"Bearer realm="make-budget-mcp", error="invalid_token", error_description="{d}""#),
    };
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
