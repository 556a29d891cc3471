//! Entry point: parse the command line and run it. See `cli/mod.rs`.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    make_budget_mcp::cli::run(make_budget_mcp::cli::Cli::parse()).await
}
