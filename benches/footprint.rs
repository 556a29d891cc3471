//! Benchmark 5: footprint. The release binary's size, its resident memory when idle (stdio and HTTP, on
//! SQLite; and on PostgreSQL when `DATABASE_URL` is set), and the time from spawning `serve` over stdio on
//! SQLite to the answer to `initialize`. (RSS under load is in the `mutations` bench's table.)
//!
//! ```sh
//! cargo bench --bench footprint
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench footprint   # adds PostgreSQL
//! # FOOTPRINT_BENCH_STARTS=30
//! ```
//!
//! Ready time is measured for a first start (the database file is created and migrated) and for a start on
//! an existing database, each the median and maximum of `FOOTPRINT_BENCH_STARTS` spawns.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Error> {
    answer_list("footprint");
    let starts: usize = env_or("FOOTPRINT_BENCH_STARTS", 30);
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    let size = std::fs::metadata(BIN)?.len();
    rows.push(vec!["binary size (release)".to_owned(), format!("{:.1} MiB", size as f64 / 1048576.0)]);

    // Ready: spawn → initialize answered.
    let mut first = Vec::new();
    let mut warm = Vec::new();
    for i in 0..starts {
        let db = format!("sqlite://{}", dir.path().join(format!("ready-{i}.sqlite3")).display());
        first.push(ready(&db).await?);
        warm.push(ready(&db).await?);
    }
    for (what, mut times) in [("first start, new database", first), ("start, existing database", warm)] {
        times.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        rows.push(vec![
            format!("stdio spawn → initialize answered, SQLite, {what} (median / max of {starts})"),
            format!("{:.1} ms / {:.1} ms", ms(times[times.len() / 2]), ms(times[times.len() - 1])),
        ]);
    }

    // Idle RSS after one call, stdio then HTTP.
    let db = format!("sqlite://{}", dir.path().join("idle.sqlite3").display());
    let mut cmd = mbm(&db);
    cmd.arg("serve");
    let (mut session, _) = StdioSession::spawn(cmd).await?;
    session.call("whoami", json!({})).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    rows.push(vec!["idle RSS, stdio, SQLite, after one call".to_owned(), rss_parts(session.child.id().unwrap_or(0))]);
    drop(session);

    let (_, token) = tenant_with_token(&db, "bench", "viewer").await?;
    rows.push(vec!["idle RSS, HTTP, SQLite, after one call".to_owned(), idle_http(&db, &token).await?]);
    if let Ok(admin) = std::env::var("DATABASE_URL") {
        let pg = ScratchDb::create(&admin, "mbm_bench_footprint").await?;
        let result = async {
            let (_, token) = tenant_with_token(&pg.url, "bench", "viewer").await?;
            idle_http(&pg.url, &token).await
        }
        .await;
        pg.drop_now().await?;
        rows.push(vec!["idle RSS, HTTP, PostgreSQL, after one call".to_owned(), result?]);
    }

    println!();
    table(&["measure", "value"], &rows);
    Ok(())
}

/// Time from spawn to the answer to `initialize` over stdio.
async fn ready(db: &str) -> Result<Duration, Error> {
    let mut cmd = mbm(db);
    cmd.arg("serve");
    let (session, took) = StdioSession::spawn(cmd).await?;
    drop(session);
    Ok(took)
}

/// RSS of an HTTP server that has served one session's call and then sat idle for two seconds.
async fn idle_http(db: &str, token: &str) -> Result<String, Error> {
    let server = serve_mbm(db, &[]).await?;
    let s = HttpSession::open(&server.url, Some(token)).await?;
    s.call("whoami", json!({})).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(rss_parts(server.pid()))
}

/// "RSS (anonymous + file-backed)": what the process wrote, and the pages of files it maps (mostly its
/// own binary's code, shared with the page cache and any other instance).
fn rss_parts(pid: u32) -> String {
    let [rss, anon, file] = proc_mib(pid, ["VmRSS", "RssAnon", "RssFile"]);
    format!("{rss:.1} MiB ({anon:.1} anonymous + {file:.1} file-backed)")
}
