//! Benchmark 2: read latency. `get_budget_status` p50/p99 at fixed request rates over streamable HTTP,
//! beside a trivial axum handler answering the same client on the same machine (the HTTP floor).
//!
//! ```sh
//! cargo bench --bench read_latency                      # SQLite (the embedded default)
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench read_latency   # and PostgreSQL
//! # READ_BENCH_RATES=50,200,500  READ_BENCH_SECS=10
//! ```
//!
//! The server gets one tenant connected to the simulated Make (one organization, 40 scenarios, 30 days of
//! usage, synced) and a monthly budget over a team with two thresholds. An open-loop driver starts calls
//! at a fixed rate whatever the answers' speed and times each from its scheduled start, so a stall shows
//! in every call it delays. The floor is this same binary re-run as an axum server whose one handler
//! parses the JSON-RPC body and answers with an empty result: the client, HTTP stack and loopback cost,
//! with no MCP, authentication, database or status work.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;

fn main() -> Result<(), Error> {
    if std::env::args().any(|a| a == "floor-server") {
        return run_floor_server();
    }
    answer_list("read_latency");
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench())
}

async fn bench() -> Result<(), Error> {
    let rates: Vec<u32> = std::env::var("READ_BENCH_RATES")
        .unwrap_or_else(|_| "50,200,500".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let secs = Duration::from_secs(env_or("READ_BENCH_SECS", 10));
    sqlx::any::install_default_drivers();

    let floor = start_floor().await?;
    let floor_session = Arc::new(HttpSession::open(&floor.url, None).await?);
    let mut rows = Vec::new();
    for &rate in &rates {
        eprintln!("floor at {rate}/s …");
        let s = floor_session.clone();
        let run = open_loop(rate, Duration::from_secs(2), secs, move |_| {
            let s = s.clone();
            async move { s.call("get_budget_status", json!({})).await.map(drop) }
        })
        .await?;
        rows.push(("axum floor".to_owned(), rate, run));
    }

    let dir = tempfile::tempdir()?;
    let mut stores =
        vec![("SQLite".to_owned(), format!("sqlite://{}", dir.path().join("bench.sqlite3").display()), None)];
    if let Ok(admin) = std::env::var("DATABASE_URL") {
        let db = ScratchDb::create(&admin, "mbm_bench_read").await?;
        stores.push(("PostgreSQL".to_owned(), db.url.clone(), Some(db)));
    }
    for (name, url, scratch) in stores {
        let result = measure_server(&url, &rates, secs).await;
        if let Some(db) = scratch {
            db.drop_now().await?;
        }
        for (rate, run) in result? {
            rows.push((format!("make-budget-mcp, {name}"), rate, run));
        }
    }

    println!();
    println!("get_budget_status over streamable HTTP, open loop, {} s per rate", secs.as_secs());
    println!();
    let floor_p99 =
        |rate: u32| rows.iter().find(|r| r.0 == "axum floor" && r.1 == rate).map_or(f64::NAN, |r| r.2.ms(99.0));
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(who, rate, run)| {
            vec![
                who.clone(),
                rate.to_string(),
                format!("{:.0}", run.per_sec),
                format!("{:.2}", run.ms(50.0)),
                format!("{:.2}", run.ms(99.0)),
                format!("{:.2}", run.ms(100.0)),
                format!("{:.1}", run.ms(99.0) / floor_p99(*rate)),
            ]
        })
        .collect();
    table(&["server", "rate/s", "done/s", "p50 ms", "p99 ms", "max ms", "p99 / floor p99"], &table_rows);
    Ok(())
}

async fn measure_server(url: &str, rates: &[u32], secs: Duration) -> Result<Vec<(u32, Run)>, Error> {
    let (_, token) = tenant_with_token(url, "bench", "admin").await?;
    let server = serve_mbm(url, &[]).await?;
    let fake = simulated_make(40).await;
    let admin = HttpSession::open(&server.url, Some(&token)).await?;
    connect_and_sync(&admin, &fake).await?;
    let b = admin.call("create_budget", budget_args("bench status", None)).await?;
    let id = b["structuredContent"]["id"].as_str().ok_or("create_budget returned no id")?.to_owned();
    for (value, basis, severity) in [(80, "forecast", "warning"), (100, "actual", "critical")] {
        let args = json!({"budget_id": id, "kind": "percent", "value": value, "basis": basis, "severity": severity});
        admin.call("add_threshold", args).await?;
    }
    let session = Arc::new(HttpSession::open(&server.url, Some(&token)).await?);
    let status = session.call("get_budget_status", json!({"id": id})).await?;
    assert!(
        status["structuredContent"]["spent_centi"].as_i64().unwrap_or(0) > 0,
        "the budget has synced usage: {status}"
    );
    let mut out = Vec::new();
    for &rate in rates {
        eprintln!("make-budget-mcp at {rate}/s …");
        let (s, id) = (session.clone(), id.clone());
        let run = open_loop(rate, Duration::from_secs(2), secs, move |_| {
            let (s, id) = (s.clone(), id.clone());
            async move { s.call("get_budget_status", json!({"id": id})).await.map(drop) }
        })
        .await?;
        out.push((rate, run));
    }
    Ok(out)
}
