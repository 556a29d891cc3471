//! Benchmark 6: one evaluator pass over 10,000 active budgets whose usage is already synced (no Make
//! calls), on SQLite and, when `DATABASE_URL` is set, on PostgreSQL.
//!
//! ```sh
//! cargo bench --bench evaluator
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench evaluator   # and PostgreSQL
//! # EVALUATOR_BENCH_BUDGETS=10000
//! ```
//!
//! Through the server's own tools, one tenant is connected to the simulated Make (one organization, 100
//! scenarios with 30 days of usage) and synced, then gets `EVALUATOR_BENCH_BUDGETS` monthly budgets, each
//! over one scenario with a warning threshold at 80 % of the forecast. The server is stopped and
//! `make-budget-mcp evaluate --once --no-sync` runs twice; its report says how many budgets the pass
//! evaluated and how long the pass took (process start and migration check excluded). The first pass
//! records each threshold's state; the second is the steady state a scheduled evaluator repeats.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use serde_json::{Value, json};

const SCENARIOS: i64 = 100;
const CREATORS: usize = 8;

#[tokio::main]
async fn main() -> Result<(), Error> {
    answer_list("evaluator");
    let budgets: usize = env_or("EVALUATOR_BENCH_BUDGETS", 10_000);
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    let sqlite = format!("sqlite://{}", dir.path().join("bench.sqlite3").display());
    rows.extend(measure("SQLite", &sqlite, budgets).await?);
    if let Ok(admin) = std::env::var("DATABASE_URL") {
        let db = ScratchDb::create(&admin, "mbm_bench_evaluator").await?;
        let result = measure("PostgreSQL", &db.url, budgets).await;
        db.drop_now().await?;
        rows.extend(result?);
    }
    println!();
    println!("evaluate --once --no-sync over {budgets} active budgets with synced usage");
    println!();
    table(&["store", "pass", "budgets evaluated", "crossings", "pass seconds", "budgets/s"], &rows);
    Ok(())
}

async fn measure(store: &str, url: &str, budgets: usize) -> Result<Vec<Vec<String>>, Error> {
    let (_, token) = tenant_with_token(url, "bench", "admin").await?;
    {
        let server = serve_mbm(url, &[]).await?;
        let fake = simulated_make(SCENARIOS).await;
        connect_and_sync(&HttpSession::open(&server.url, Some(&token)).await?, &fake).await?;
        eprintln!("{store}: creating {budgets} budgets …");
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..CREATORS {
            let (next, url, token) = (next.clone(), server.url.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let s = HttpSession::open(&url, Some(&token)).await?;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= budgets {
                        return Ok::<_, Error>(());
                    }
                    let scenario = FIRST_SCENARIO + (i as i64 % SCENARIOS);
                    let b = s.call("create_budget", budget_args(&format!("budget {i}"), Some(scenario))).await?;
                    let args = json!({"budget_id": b["structuredContent"]["id"], "kind": "percent", "value": 80,
                                      "basis": "forecast", "severity": "warning"});
                    s.call("add_threshold", args).await?;
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
    }
    let mut rows = Vec::new();
    for pass in ["first", "second"] {
        eprintln!("{store}: {pass} pass …");
        let out = mbm(url)
            .args(["evaluate", "--once", "--no-sync"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output()
            .await?;
        let report: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("evaluate --once: {e}: {}", String::from_utf8_lossy(&out.stderr)))?;
        if !out.status.success() {
            return Err(format!("evaluate --once failed: {report}").into());
        }
        let evaluated = report["budgets_evaluated"].as_u64().unwrap_or(0);
        if evaluated != budgets as u64 {
            return Err(format!("the pass evaluated {evaluated} budgets, not {budgets}: {report}").into());
        }
        let secs = report["duration_ms"].as_f64().ok_or("the report has no duration_ms")? / 1000.0;
        rows.push(vec![
            store.to_owned(),
            pass.to_owned(),
            evaluated.to_string(),
            report["crossings"].to_string(),
            format!("{secs:.2}"),
            format!("{:.0}", evaluated as f64 / secs),
        ]);
    }
    Ok(rows)
}
