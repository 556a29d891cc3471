//! Benchmark 3: protocol overhead against peer MCP servers. A trivial read tool (`whoami`) called back to
//! back over streamable HTTP and over stdio, on this server and on the same tool written with the official
//! TypeScript SDK and with Python FastMCP (benches/peers/, installed from npm and PyPI by
//! benches/peers/install.sh, which this bench runs first).
//!
//! ```sh
//! cargo bench --bench peers
//! # PEERS_BENCH_SECS=10  PEERS_BENCH_CLIENTS=8
//! ```
//!
//! Every server is driven by the same lean client (benches/common): raw JSON-RPC over HTTP with one MCP
//! session per client, or newline-delimited JSON-RPC over the child's stdin and stdout, one call at a time.
//! The last HTTP row is the floor of read_latency (a trivial axum handler, no MCP) under the same driver:
//! on a 2-core machine the driver shares the cores with the server, and no server can go faster than that.
//! This server runs on SQLite, over HTTP once with an API token (each call authenticated, as in
//! production), once with `--no-auth` (no authentication, as the peers) and once `--stateless` with an API
//! token (no session: each POST answered on its own with a JSON body), and over stdio as the local operator.

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;

fn main() -> Result<(), Error> {
    if std::env::args().any(|a| a == "floor-server") {
        return run_floor_server();
    }
    answer_list("peers");
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench())
}

async fn bench() -> Result<(), Error> {
    let secs = Duration::from_secs(env_or("PEERS_BENCH_SECS", 10));
    let clients: usize = env_or("PEERS_BENCH_CLIENTS", 8);
    let peers = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peers");
    eprintln!("installing the peers …");
    let status = std::process::Command::new("bash").arg(peers.join("install.sh")).status()?;
    if !status.success() {
        return Err("benches/peers/install.sh failed".into());
    }
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite://{}", dir.path().join("bench.sqlite3").display());
    let (_, token) = tenant_with_token(&db, "bench", "viewer").await?;

    let node = |mode: &str| {
        let mut c = tokio::process::Command::new("node");
        c.arg(peers.join("typescript/server.mjs")).arg(mode).current_dir(peers.join("typescript"));
        c
    };
    let python = |mode: &str| {
        let mut c = tokio::process::Command::new(peers.join("python/.venv/bin/python"));
        c.arg(peers.join("python/server.py")).arg(mode).current_dir(peers.join("python"));
        c
    };

    let mut http = Vec::new();
    {
        let server = serve_mbm(&db, &[]).await?;
        http.push(("make-budget-mcp (API token)", http_run(&server.url, Some(&token), clients, secs).await?));
    }
    {
        let server = serve_mbm(&db, &["--no-auth"]).await?;
        http.push(("make-budget-mcp (--no-auth)", http_run(&server.url, None, clients, secs).await?));
    }
    {
        let server = serve_mbm(&db, &["--stateless"]).await?;
        http.push((
            "make-budget-mcp (--stateless, API token)",
            http_run(&server.url, Some(&token), clients, secs).await?,
        ));
    }
    {
        let (mut cmd, port) = (node("http"), free_port()?);
        cmd.arg(port.to_string());
        let server = serve_on_port(cmd, port, "/mcp").await?;
        http.push(("TypeScript SDK", http_run(&server.url, None, clients, secs).await?));
    }
    {
        let (mut cmd, port) = (python("http"), free_port()?);
        cmd.arg(port.to_string());
        let server = serve_on_port(cmd, port, "/mcp").await?;
        http.push(("Python FastMCP", http_run(&server.url, None, clients, secs).await?));
    }

    {
        let floor = start_floor().await?;
        http.push(("axum floor (no MCP)", http_run(&floor.url, None, clients, secs).await?));
    }

    let mut stdio = Vec::new();
    let mut ours = mbm(&db);
    ours.arg("serve");
    stdio.push(("make-budget-mcp", stdio_run(ours, secs).await?));
    stdio.push(("TypeScript SDK", stdio_run(node("stdio"), secs).await?));
    stdio.push(("Python FastMCP", stdio_run(python("stdio"), secs).await?));

    println!();
    println!("whoami calls/s: HTTP with {clients} clients, stdio with one call at a time; {} s each", secs.as_secs());
    println!();
    let mut rows = Vec::new();
    for (transport, runs) in [("HTTP", &http), ("stdio", &stdio)] {
        let ours = runs[0].1.per_sec;
        for (who, run) in runs.iter() {
            rows.push(vec![
                transport.to_owned(),
                (*who).to_owned(),
                format!("{:.0}", run.per_sec),
                format!("{:.2}", run.ms(50.0)),
                format!("{:.2}", run.ms(99.0)),
                format!("{:.1}×", ours / run.per_sec),
            ]);
        }
    }
    table(&["transport", "server", "calls/s", "p50 ms", "p99 ms", "make-budget-mcp (first row) ÷ this"], &rows);
    Ok(())
}

async fn http_run(url: &str, bearer: Option<&str>, clients: usize, secs: Duration) -> Result<Run, Error> {
    eprintln!("HTTP {url} …");
    let mut sessions = Vec::new();
    for _ in 0..clients {
        sessions.push(HttpSession::open(url, bearer).await?);
    }
    let sessions = Arc::new(sessions);
    closed_loop(clients, Duration::from_secs(2), secs, move |w, _| {
        let sessions = sessions.clone();
        async move { sessions[w].call("whoami", json!({})).await.map(drop) }
    })
    .await
}

async fn stdio_run(cmd: tokio::process::Command, secs: Duration) -> Result<Run, Error> {
    eprintln!("stdio {:?} …", cmd.as_std().get_program());
    let (session, _) = StdioSession::spawn(cmd).await?;
    let session = Arc::new(tokio::sync::Mutex::new(session));
    closed_loop(1, Duration::from_secs(2), secs, move |_, _| {
        let session = session.clone();
        async move { session.lock().await.call("whoami", json!({})).await.map(drop) }
    })
    .await
}
