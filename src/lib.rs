//! make-budget-mcp: an MCP server that keeps Make.com credit spend under budget.
//!
//! The request path (see `docs/architecture.md`):
//! transport (stdio | streamable HTTP) → [`mcp`] tool router → [`auth`] tenant-scoped RBAC guard →
//! [`domain`] pure rules → [`store`] (SQLite or PostgreSQL), where every mutation and its [`audit`] record
//! commit in one transaction.

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod chart;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod engine;
pub mod http;
pub mod limits;
pub mod make;
pub mod mcp;
pub mod monitoring;
pub mod notify;
pub mod outbound;
pub mod store;
pub mod telemetry;
