//! The one place where errors become what an MCP client sees.
//!
//! - Argument problems and domain refusals (invalid value, not found, conflict, permission denied) are
//!   tool results with `isError: true` and a message an agent can act on.
//! - Internal errors (database down, corrupt row) answer a generic message with a correlation id; the
//!   detail goes to the log only, never to the client.

use rmcp::model::{ContentBlock, IntoContents};

use crate::auth::Denied;
use crate::domain::ValidationError;
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
    pub fn internal(request_id: &str, err: &dyn std::fmt::Display) -> Self {
        tracing::error!(request_id, error = %err, "tool call failed");
        ToolError::Internal { correlation_id: request_id.to_owned() }
    }

    /// Map a store error for an operation on `what` `id`.
    pub fn from_store(request_id: &str, what: &'static str, id: &str, err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ToolError::NotFound { what, id: id.to_owned() },
            StoreError::VersionConflict { expected, current } => ToolError::Conflict(format!(
                "{what} {id} was changed by someone else (you sent version {expected}, the current version is \
                 {current}); read it again with get_{what}, re-apply your change and retry with the new version"
            )),
            StoreError::Duplicate(msg) => ToolError::Conflict(msg),
            other => ToolError::internal(request_id, &other),
        }
    }
}

impl IntoContents for ToolError {
    fn into_contents(self) -> Vec<ContentBlock> {
        vec![ContentBlock::text(format!("{}: {self}", self.code()))]
    }
}
