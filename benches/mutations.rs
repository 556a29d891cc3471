//! Benchmark 1: mutation throughput over streamable HTTP against PostgreSQL, beside pgbench running the
//! same SQL the server runs per call.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench mutations
//! # MUTATIONS_BENCH_SECS=10 (per measurement), MUTATIONS_BENCH_CLIENTS=1,8,32
//! ```
//!
//! In a scratch database it starts the release server (`serve --transport http`, API-token auth, one
//! tenant) and, for each client count, opens that many MCP sessions, gives each a budget of its own and
//! has every session call `update_budget` back to back. Then pgbench runs `benches/sql/update_budget.sql`
//! (the transaction the server runs per call: lock the budget, update it, lock the tenant's audit chain
//! head, append the audit record, move the head, commit) with the same number of clients, on the same
//! budgets. Every mutation of a tenant appends to one hash chain, so all clients queue on its head row in
//! both columns: the ratio shows what HTTP, MCP, authentication and the Rust side add around that queue.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use sqlx::Connection;

#[tokio::main]
async fn main() -> Result<(), Error> {
    answer_list("mutations");
    let admin = postgres_admin_url("mutations");
    let secs: u64 = env_or("MUTATIONS_BENCH_SECS", 10);
    let clients: Vec<usize> = std::env::var("MUTATIONS_BENCH_CLIENTS")
        .unwrap_or_else(|_| "1,8,32".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    sqlx::any::install_default_drivers();
    let db = ScratchDb::create(&admin, "mbm_bench_mutations").await?;
    let result = run(&db.url, &clients, Duration::from_secs(secs)).await;
    db.drop_now().await?;
    result
}

async fn run(url: &str, counts: &[usize], duration: Duration) -> Result<(), Error> {
    let (tenant, token) = tenant_with_token(url, "bench", "admin").await?;
    let server = serve_mbm(url, &[]).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle_rss, _) = rss_mib(server.pid());
    let script = std::env::temp_dir().join(format!("mbm_update_budget_{}.sql", std::process::id()));
    std::fs::write(&script, include_str!("sql/update_budget.sql"))?;
    let mut pg = sqlx::PgConnection::connect(url).await?;
    sqlx::query("CREATE TABLE bench_budgets (client_id INT PRIMARY KEY, budget_id TEXT NOT NULL)")
        .execute(&mut pg)
        .await?;

    let mut rows = Vec::new();
    for &n in counts {
        let mut sessions = Vec::with_capacity(n);
        let mut budgets = Vec::with_capacity(n);
        for i in 0..n {
            let s = HttpSession::open(&server.url, Some(&token)).await?;
            let b = s.call("create_budget", budget_args(&format!("bench {n}-{i}"), None)).await?;
            budgets.push(b["structuredContent"]["id"].as_str().ok_or("create_budget returned no id")?.to_owned());
            sessions.push(s);
        }
        let (sessions, ids) = (Arc::new(sessions), Arc::new(budgets.clone()));
        eprintln!("{n} clients: server …");
        let served = closed_loop(n, Duration::from_secs(2), duration, move |w, k| {
            let (sessions, ids) = (sessions.clone(), ids.clone());
            async move {
                let args = json!({"id": ids[w], "version": k + 1, "limit": 1000 + k % 1000});
                sessions[w].call("update_budget", args).await.map(drop)
            }
        })
        .await?;
        let (_, peak_rss) = rss_mib(server.pid());

        sqlx::query("TRUNCATE bench_budgets").execute(&mut pg).await?;
        for (i, b) in budgets.iter().enumerate() {
            sqlx::query("INSERT INTO bench_budgets VALUES ($1, $2)").bind(i as i32).bind(b).execute(&mut pg).await?;
        }
        eprintln!("{n} clients: pgbench …");
        let tps = pgbench(url, &script, &tenant, n, duration).await?;
        rows.push(vec![
            n.to_string(),
            format!("{:.0}", served.per_sec),
            format!("{tps:.0}"),
            format!("{:.2}", served.per_sec / tps),
            format!("{:.1}", served.ms(50.0)),
            format!("{:.1}", served.ms(99.0)),
            format!("{peak_rss:.1}"),
        ]);
    }
    std::fs::remove_file(&script)?;
    println!();
    println!(
        "update_budget over streamable HTTP vs pgbench, {} s per cell, server idle RSS {idle_rss:.1} MiB",
        duration.as_secs()
    );
    println!();
    table(
        &[
            "clients",
            "server calls/s",
            "pgbench tx/s",
            "ratio",
            "server p50 ms",
            "server p99 ms",
            "server peak RSS MiB",
        ],
        &rows,
    );
    Ok(())
}

/// pgbench with `clients` connections for `duration`, prepared statements; its transactions/s.
async fn pgbench(
    url: &str,
    script: &std::path::Path,
    tenant: &str,
    clients: usize,
    duration: Duration,
) -> Result<f64, Error> {
    let out = tokio::process::Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-f"])
        .arg(script)
        .args(["-c", &clients.to_string(), "-j", &clients.min(2).to_string()])
        .args(["-T", &duration.as_secs().to_string()])
        .arg("-D")
        .arg(format!("tenant={tenant}"))
        .arg(url)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("pgbench failed: {}{stdout}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let failed = stdout.lines().find(|l| l.starts_with("number of failed transactions")).unwrap_or_default();
    if !failed.is_empty() && !failed.contains(": 0 ") {
        return Err(format!("pgbench transactions failed: {failed}").into());
    }
    stdout
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no tps in pgbench output: {stdout}").into())
}
