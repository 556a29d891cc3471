//! The one error of the engine's use cases, in the spirit of realworld-axum-sqlx's `Error`: each variant
//! is something the caller can act on, and `?` gets there from every lower layer.
//!
//! Store errors carry no context ("not found" of what?), so reads and writes by id say what they were
//! about with [`About::about`]: `tx.budget_for_update(id).await.about("budget", &id)?` turns a missing row
//! into `NotFound { what: "budget", id }` and a stale version into a `Conflict` that says how to recover.
//! A bare `?` on a store error is an internal failure (with duplicates and version conflicts still
//! reported as conflicts, since their messages are the caller's to read).

use crate::app::SecretError;
use crate::auth::Denied;
use crate::domain::ValidationError;
use crate::domain::period::PeriodError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument broke a rule; names the field and the rule.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    /// No such object in the caller's tenant (deliberately the same for one of another tenant).
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The request conflicts with the current state (stale version, duplicate, wrong plan state, busy).
    #[error("{0}")]
    Conflict(String),
    /// The caller's role lacks a permission this call needs because of its arguments or the data it
    /// touches; `why` says what made it needed. The MCP layer audits it like the guard's denials.
    #[error("{denied}: {why}")]
    Denied { denied: Denied, why: String },
    /// A rule about who may do this refused it (approving one's own plan, an expired approval).
    #[error("{0}")]
    Refused(String),
    /// Make refused or failed; the message carries Make's status and error body.
    #[error("{0}")]
    Make(String),
    /// The server cannot do this as configured (no master key, a billing cycle not known yet).
    #[error("{0}")]
    Unavailable(String),
    /// A failure on our side (database, corrupt row); logged, never shown in detail.
    #[error(transparent)]
    Store(StoreError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate(m) => Error::Conflict(m),
            StoreError::VersionConflict { expected, current } => Error::Conflict(format!(
                "it was changed meanwhile (version {expected} expected, {current} found); read it again and retry"
            )),
            other => Error::Store(other),
        }
    }
}

impl From<SecretError> for Error {
    fn from(e: SecretError) -> Self {
        Error::Unavailable(e.to_string())
    }
}

impl From<PeriodError> for Error {
    fn from(e: PeriodError) -> Self {
        Error::Unavailable(e.to_string())
    }
}

impl From<super::status::StatusError> for Error {
    fn from(e: super::status::StatusError) -> Self {
        match e {
            super::status::StatusError::Period(p) => p.into(),
            super::status::StatusError::Store(s) => s.into(),
        }
    }
}

/// Say what a store call was about, so a missing row or a stale version reads as the caller's object.
pub trait About<T> {
    fn about(self, what: &'static str, id: &str) -> Result<T>;
}

impl<T> About<T> for std::result::Result<T, StoreError> {
    fn about(self, what: &'static str, id: &str) -> Result<T> {
        self.map_err(|e| match e {
            StoreError::NotFound => Error::NotFound { what, id: id.to_owned() },
            StoreError::VersionConflict { expected, current } => version_conflict(what, id, expected, current),
            other => other.into(),
        })
    }
}

/// The conflict for a stale `expected` version of `what` `id`, saying how to recover.
pub fn version_conflict(what: &'static str, id: &str, expected: i64, current: i64) -> Error {
    Error::Conflict(format!(
        "{what} {} was changed by someone else (you sent version {expected}, the current version is {current}); \
         read it again with get_{what}, re-apply your change and retry with the new version",
        short(id)
    ))
}

/// At most 40 characters of an id a caller sent, for messages.
pub fn short(id: &str) -> String {
    match id.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &id[..cut]),
        None => id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_say_what_they_were_about() {
        let missing: std::result::Result<(), StoreError> = Err(StoreError::NotFound);
        match missing.about("budget", "b1") {
            Err(Error::NotFound { what: "budget", id }) => assert_eq!(id, "b1"),
            other => panic!("{other:?}"),
        }
        let stale: std::result::Result<(), StoreError> = Err(StoreError::VersionConflict { expected: 1, current: 2 });
        let e = stale.about("budget", "b1").unwrap_err();
        assert!(matches!(&e, Error::Conflict(m) if m.contains("version 1") && m.contains("get_budget")), "{e}");
        // Without context a missing row is our bug, not the caller's.
        assert!(matches!(Error::from(StoreError::NotFound), Error::Store(StoreError::NotFound)));
        assert!(
            matches!(Error::from(StoreError::Duplicate("name taken".into())), Error::Conflict(m) if m == "name taken")
        );
    }

    #[test]
    fn long_ids_are_cut_in_messages() {
        assert_eq!(short("abc"), "abc");
        let long = "x".repeat(100);
        assert_eq!(short(&long).chars().count(), 41);
    }
}
