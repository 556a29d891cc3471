//! Work that talks to Make on the tenant's behalf: usage sync, scenario control, threshold evaluation,
//! automated actions and the background evaluator that runs them on a schedule.

pub mod actions;
pub mod connect;
pub mod control;
pub mod evaluate;
pub mod evaluator;
pub mod status;
pub mod sync;
