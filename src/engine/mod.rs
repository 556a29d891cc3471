//! Work that talks to Make on the tenant's behalf: usage sync and scenario control. Used by MCP tools
//! now and by the background evaluator later.

pub mod control;
pub mod evaluate;
pub mod status;
pub mod sync;
