//! `logging/setLevel` and the `notifications/message` a session receives.
//!
//! Each session chooses its own level; until it does, it gets no log messages (the spec leaves the
//! default to the server, and silence is what a client that never asked expects). What a session is
//! sent are events of that session only: the outcome of each of its tool calls (info), and its denials
//! and failed calls (warning). Nothing here carries secrets: the tool name, the error code and the
//! correlation id only.
#![allow(deprecated)] // MCP logging is deprecated by SEP-2577 (2026-07-28) but still served to older peers.

use std::sync::Mutex;

use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam};
use rmcp::{Peer, RoleServer};
use serde_json::json;

/// The logger name clients see on our messages.
pub const LOGGER: &str = "make-budget-mcp";

/// Syslog order (RFC 5424), as the MCP spec defines it: debug lowest, emergency highest.
pub fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// One session's chosen minimum level (`None`: not set, send nothing).
#[derive(Debug, Default)]
pub struct SessionLog {
    min: Mutex<Option<LoggingLevel>>,
}

impl SessionLog {
    pub fn set(&self, level: LoggingLevel) {
        *self.min.lock().expect("log level lock") = Some(level);
    }

    /// Would a message at `level` be sent?
    pub fn wants(&self, level: LoggingLevel) -> bool {
        self.min.lock().expect("log level lock").is_some_and(|min| rank(level) >= rank(min))
    }

    /// Send `data` to the client if the session's level lets it through. A failed send (client gone)
    /// is not the caller's problem and is only traced.
    pub async fn send(&self, peer: &Peer<RoleServer>, level: LoggingLevel, data: serde_json::Value) {
        if !self.wants(level) {
            return;
        }
        let mut param = LoggingMessageNotificationParam::new(level, data);
        param.logger = Some(LOGGER.to_owned());
        if let Err(e) = peer.notify_logging_message(param).await {
            tracing::debug!(error = %e, "could not send a log message to the client");
        }
    }
}

/// The message for a finished tool call: info when it succeeded, warning when it failed or was denied.
pub fn tool_outcome(tool: &str, request_id: &str, outcome: &str) -> (LoggingLevel, serde_json::Value) {
    let level = if outcome == "ok" { LoggingLevel::Info } else { LoggingLevel::Warning };
    (level, json!({"event": "tool_call", "tool": tool, "outcome": outcome, "request_id": request_id}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_wanted_until_a_level_is_set_then_only_that_level_and_above() {
        let log = SessionLog::default();
        assert!(!log.wants(LoggingLevel::Emergency));
        log.set(LoggingLevel::Warning);
        assert!(!log.wants(LoggingLevel::Info) && !log.wants(LoggingLevel::Debug));
        assert!(log.wants(LoggingLevel::Warning) && log.wants(LoggingLevel::Error));
        log.set(LoggingLevel::Debug);
        assert!(log.wants(LoggingLevel::Info));
    }

    #[test]
    fn failures_are_warnings_and_successes_info() {
        assert_eq!(tool_outcome("t", "r", "ok").0, LoggingLevel::Info);
        assert_eq!(tool_outcome("t", "r", "permission_denied").0, LoggingLevel::Warning);
    }
}
