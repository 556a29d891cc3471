//! The integration tests, one test binary: `tests/support` and the dependency tree are compiled and
//! linked once instead of once per file. Each file here is a module, so a test's full name starts with
//! its file's name: `cargo test --test integration actions::` runs `actions.rs`,
//! `cargo test --test integration actions::sqlite::approvals_expire` one case.

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod actions;
mod audit_concurrency;
mod audit_tamper;
mod audit_tools;
mod budget_status;
mod channels;
mod cli;
mod delayed_plans;
mod demo;
mod fake_make;
mod http_oauth;
mod http_ops;
mod http_tls;
mod interop;
mod make_client;
mod make_faults;
mod make_link;
mod make_scale;
mod mcp_features;
mod mcp_http;
mod mcp_stdio;
mod outbound;
mod package;
mod row_level_security;
mod security;
mod store_conformance;
mod thresholds_engine;
