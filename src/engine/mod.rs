//! The use cases: everything that changes state or talks to Make on a tenant's behalf, one module per
//! subject, each function taking the [`Caller`] it acts for and returning the one [`Error`] type.
//!
//! - Configuration: `budgets`, `thresholds`, `threshold_actions` (and critical marks), `webhooks`,
//!   `connect` (Make connections, checked with Make), `checkpoints` (signed audit checkpoints).
//! - Make data: `sync` (one organization's read and write), `sync_usage` (sync on request, then evaluate).
//! - Spend: `status` (read-only computations), `crossings` (threshold evaluation).
//! - Acting: `actions` (pause plans: approve, execute, reverse), `control` (explicit pause and resume).
//! - Scheduling: `evaluator`, the background pass that runs all of the above on its own.

pub mod actions;
pub mod budgets;
pub mod caller;
pub mod checkpoints;
pub mod connect;
pub mod control;
pub mod crossings;
pub mod deliveries;
pub mod error;
pub mod evaluator;
pub mod status;
pub mod sync;
pub mod sync_usage;
pub mod threshold_actions;
pub mod thresholds;
pub mod webhooks;

pub use caller::Caller;
pub use error::{About, Error};
