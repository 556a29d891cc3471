//! `--no-auth`: serve /mcp without tokens, as the configured local operator, for local clients and the
//! MCP conformance suite.
//!
//! Safe only when nothing but this machine can connect, so [`check_listen`] refuses any listen address
//! that is not loopback, before anything else happens. The principal is fixed at start-up, exactly as
//! over stdio, and carries [`Transport::HttpNoAuth`](crate::auth::Transport) so the audit log shows that
//! no token was involved. Host/Origin checks (DNS-rebinding protection) still apply.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::Principal;

#[derive(Debug, thiserror::Error)]
#[error(
    "`http.no_auth` (--no-auth, MBM_HTTP_NO_AUTH) needs a loopback `http.listen` address such as \
     127.0.0.1:8080 or [::1]:8080 (got {0}); without authentication anyone who can reach the port would act \
     as the local operator"
)]
pub struct OpenListenRefused(pub SocketAddr);

/// Refuse `--no-auth` on an address other machines can reach.
pub fn check_listen(listen: SocketAddr) -> Result<(), OpenListenRefused> {
    if listen.ip().is_loopback() { Ok(()) } else { Err(OpenListenRefused(listen)) }
}

/// Axum middleware in front of /mcp: every request acts as the local operator.
pub async fn inject_local_principal(State(principal): State<Principal>, mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_may_serve_without_auth() {
        for ok in ["127.0.0.1:8080", "127.0.0.2:1", "[::1]:8080"] {
            assert!(check_listen(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for refused in ["0.0.0.0:8080", "[::]:8080", "192.168.1.10:8080"] {
            let e = check_listen(refused.parse().unwrap()).unwrap_err().to_string();
            assert!(e.contains("needs a loopback") && e.contains(refused), "{e}");
        }
    }
}
