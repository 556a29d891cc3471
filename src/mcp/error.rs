//! The one place where errors become what an MCP client sees.
//!
//! - Argument problems and domain refusals (invalid value, not found, conflict, permission denied) are
//!   tool results with `isError: true` and a message an agent can act on.
//! - Internal errors (database down, corrupt row) answer a generic message with a correlation id; the
//!   detail goes to the log once, under the request's id, never to the client.
//!
//! Every lower error converts with `?`: [`ToolError`] has `From` impls for the engine's [`Error`], the
//! store's [`StoreError`], status computations and validation. A conversion needs the request's id (to
//! log internal errors under it) and may find a permission denial a use case made from stored data: both
//! live in the request's [`scope`], which the guard opens around every request it admits. The guard audits
//! such a denial after the tool returned, when no transaction of the tool is open any more.

use rmcp::model::{ContentBlock, IntoContents};

use crate::auth::Denied;
use crate::domain::ValidationError;
use crate::engine::Error;
use crate::engine::status::StatusError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// An argument broke a rule. Names the field and the rule.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    /// No such object in the caller's tenant. Deliberately identical for "exists in another tenant".
    #[error("{what} {} not found", super::params::echo(.id))]
    NotFound { what: &'static str, id: String },
    /// The request conflicts with the current state (stale version, duplicate name).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Denied(#[from] Denied),
    /// A rule about who may do this refused the call (e.g. approving one's own plan).
    #[error("{0}")]
    Forbidden(String),
    /// Make refused or failed; the message carries Make's status and error body.
    #[error("{0}")]
    Make(String),
    /// The server cannot do this as configured (e.g. no master key for Make credentials).
    #[error("{0}")]
    Unavailable(String),
    /// The human did not confirm (declined, cancelled or did not answer an elicitation).
    #[error("{0}")]
    NotConfirmed(String),
    /// The tenant used up its allowance for this class of call; the message says when to retry.
    #[error("{0}")]
    RateLimited(#[from] crate::limits::RateLimited),
    /// The client cancelled the call.
    #[error("the call was cancelled; work already committed (see the audit log) stays")]
    Cancelled,
    /// Something failed on our side; the correlation id finds the detail in the server log.
    #[error("internal error (correlation id {correlation_id}); the server log has the details")]
    Internal { correlation_id: String },
}

impl ToolError {
    pub fn code(&self) -> &'static str {
        match self {
            ToolError::Invalid(_) => "invalid_argument",
            ToolError::NotFound { .. } => "not_found",
            ToolError::Conflict(_) => "conflict",
            ToolError::Denied(_) | ToolError::Forbidden(_) => "permission_denied",
            ToolError::Make(_) => "make_error",
            ToolError::Unavailable(_) => "unavailable",
            ToolError::RateLimited(_) => "rate_limited",
            ToolError::Cancelled | ToolError::NotConfirmed(_) => "cancelled",
            ToolError::Internal { .. } => "internal",
        }
    }

    /// Log an internal failure under the request's id and return the opaque error for the client.
    pub fn internal(err: &dyn std::fmt::Display) -> Self {
        let request_id = scope::request_id();
        tracing::error!(request_id, error = %err, "request failed");
        ToolError::Internal { correlation_id: request_id }
    }
}

impl From<Error> for ToolError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(v) => ToolError::Invalid(v),
            Error::NotFound { what, id } => ToolError::NotFound { what, id },
            Error::Conflict(m) => ToolError::Conflict(m),
            Error::Denied { denied, why } => {
                scope::denied(&denied, &why);
                ToolError::Forbidden(format!("{denied}: {why}"))
            }
            Error::Refused(m) => ToolError::Forbidden(m),
            Error::Make(m) => ToolError::Make(m),
            Error::Unavailable(m) => ToolError::Unavailable(m),
            Error::Store(s) => ToolError::internal(&s),
        }
    }
}

impl From<StoreError> for ToolError {
    fn from(e: StoreError) -> Self {
        Error::from(e).into()
    }
}

impl From<StatusError> for ToolError {
    fn from(e: StatusError) -> Self {
        Error::from(e).into()
    }
}

impl From<serde_json::Error> for ToolError {
    fn from(e: serde_json::Error) -> Self {
        ToolError::internal(&e)
    }
}

impl IntoContents for ToolError {
    fn into_contents(self) -> Vec<ContentBlock> {
        vec![ContentBlock::text(format!("{}: {self}", self.code()))]
    }
}

impl From<ToolError> for rmcp::ErrorData {
    fn from(e: ToolError) -> Self {
        protocol_error(e)
    }
}

/// A tool-layer error as the protocol error a resource or prompt request answers with.
pub fn protocol_error(e: ToolError) -> rmcp::ErrorData {
    use rmcp::ErrorData;
    let message = format!("{}: {e}", e.code());
    match e {
        ToolError::NotFound { .. } => ErrorData::resource_not_found(message, None),
        ToolError::Invalid(_) => ErrorData::invalid_params(message, None),
        ToolError::Denied(_) | ToolError::Forbidden(_) | ToolError::RateLimited(_) => {
            ErrorData::invalid_request(message, None)
        }
        _ => ErrorData::internal_error(message, None),
    }
}

/// What one admitted request carries through its task: its id, and a denial a use case made that the
/// guard must still audit.
pub mod scope {
    use std::future::Future;
    use std::sync::Mutex;

    use crate::auth::Denied;

    struct Scope {
        request_id: String,
        /// The audit reason of the first denial found while serving the request.
        denial: Mutex<Option<String>>,
    }

    tokio::task_local! {
        static SCOPE: Scope;
    }

    /// Run `work` as request `request_id`; returns its output and the reason of a denial to audit.
    pub async fn run<T>(request_id: String, work: impl Future<Output = T>) -> (T, Option<String>) {
        let scope = Scope { request_id, denial: Mutex::new(None) };
        SCOPE
            .scope(scope, async move {
                let out = work.await;
                let denial = SCOPE.with(|s| s.denial.lock().expect("scope lock").take());
                (out, denial)
            })
            .await
    }

    /// The id of the request being served (a new one outside any request, which never happens in the
    /// server: the guard opens a scope for every request it admits).
    pub fn request_id() -> String {
        SCOPE.try_with(|s| s.request_id.clone()).unwrap_or_else(|_| uuid::Uuid::now_v7().to_string())
    }

    /// Note a denial made while serving this request, for the guard to audit.
    pub(super) fn denied(denied: &Denied, why: &str) {
        let _ = SCOPE.try_with(|s| {
            s.denial.lock().expect("scope lock").get_or_insert_with(|| format!("{denied} ({why})"));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Permission, Role};

    #[tokio::test]
    async fn internal_errors_carry_the_request_id_and_denials_reach_the_guard() {
        let (e, denial) = scope::run("req-1".into(), async { ToolError::from(StoreError::NotFound) }).await;
        assert!(matches!(&e, ToolError::Internal { correlation_id } if correlation_id == "req-1"), "{e}");
        assert_eq!(denial, None);
        let denied = Denied { permission: Permission::EmergencyControls, role: Role::Manager };
        let (e, denial) = scope::run("req-2".into(), async {
            ToolError::from(Error::Denied { denied: denied.clone(), why: "selector `all`".into() })
        })
        .await;
        assert_eq!(e.code(), "permission_denied");
        assert!(e.to_string().ends_with(": selector `all`"), "{e}");
        assert_eq!(denial.as_deref(), Some(format!("{denied} (selector `all`)").as_str()));
    }

    #[test]
    fn engine_errors_keep_their_meaning() {
        let e: ToolError = Error::NotFound { what: "budget", id: "b1".into() }.into();
        assert_eq!(e.to_string(), "budget b1 not found");
        assert_eq!(ToolError::from(Error::Conflict("stale".into())).code(), "conflict");
        assert_eq!(ToolError::from(Error::Refused("own plan".into())).code(), "permission_denied");
        assert_eq!(ToolError::from(Error::Make("403".into())).code(), "make_error");
        assert_eq!(ToolError::from(Error::Unavailable("no key".into())).code(), "unavailable");
    }
}
