//! Two server processes on one database, 16 MCP clients each, mutating at once: the audit chain must
//! come out valid and gapless. On PostgreSQL this is the multi-instance deployment; on SQLite it shows
//! two processes sharing one file (WAL, `BEGIN IMMEDIATE`) behave too.

use crate::support::*;
use serde_json::json;

const SERVERS: usize = 2;
const CLIENTS_PER_SERVER: usize = 16;
/// Each client creates a budget and then updates it this many times.
const UPDATES_PER_CLIENT: usize = 3;

async fn hammer(db: TestDb) {
    let tenant = create_tenant(&db.url, "busy");
    let token = issue_token(&db.url, &tenant, "operator", "load");
    let mut servers = Vec::new();
    for _ in 0..SERVERS {
        // A checkpoint every 10 records: signed inside the appends, under the same head lock.
        servers.push(HttpServer::start_with(&db.url, &[("MBM_CHECKPOINT_EVERY_RECORDS", "10")]).await);
    }
    let mut tasks = Vec::new();
    for (s, server) in servers.iter().enumerate() {
        for c in 0..CLIENTS_PER_SERVER {
            let (url, token) = (server.mcp_url.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let client = http_client(&url, &token, Lifecycle::Initialize).await;
                let b = call_ok(&client, "create_budget", budget_args(&format!("server {s} client {c}"))).await;
                let mut version = 1;
                for i in 0..UPDATES_PER_CLIENT {
                    let v = call_ok(
                        &client,
                        "update_budget",
                        json!({"id": b["id"], "version": version, "limit": 1000 + i}),
                    )
                    .await;
                    version = v["version"].as_i64().unwrap();
                }
                client.cancel().await.unwrap();
            }));
        }
    }
    for t in tasks {
        t.await.expect("client task");
    }

    let store = open_store(&db.url).await;
    let mutations = (SERVERS * CLIENTS_PER_SERVER * (1 + UPDATES_PER_CLIENT)) as i64;
    let expected = 2 + mutations; // tenant_create + token_issue + the clients' mutations
    assert_eq!(count(&store, "audit_log", "").await, expected);
    let (max_seq, min_seq): (i64, i64) = {
        let row =
            sqlx::query("SELECT MAX(seq) AS hi, MIN(seq) AS lo FROM audit_log").fetch_one(store.pool()).await.unwrap();
        (sqlx::Row::try_get(&row, "hi").unwrap(), sqlx::Row::try_get(&row, "lo").unwrap())
    };
    assert_eq!((min_seq, max_seq), (1, expected), "gapless: seq runs 1..={expected}");
    let store = store.with_audit_keys(Some(test_audit_keys()), 0);
    let report = store.verify_audit(None).await.unwrap();
    assert!(report.is_valid(), "{report:?}");
    // Tokens and tenant came from the CLI (default interval), so the first checkpoint is at 10.
    let checkpoints = count(&store, "audit_checkpoints", "").await;
    assert_eq!(checkpoints, expected / 10, "one checkpoint per 10 records, none twice");
    assert_eq!(report.chains[0].anchored_seq, expected / 10 * 10);
    // The CLI agrees, the way an operator would check.
    let out = cli(&db.url, &["audit", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{expected} records")));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("signed checkpoint at seq {}", expected / 10 * 10)));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_postgres_keep_one_gapless_chain() {
    let Some(db) = postgres_db("audit_concurrency::two_servers_on_postgres_keep_one_gapless_chain").await else {
        return;
    };
    hammer(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_sqlite_file_keep_one_gapless_chain() {
    hammer(sqlite_db()).await;
}
