//! The audit tools as an auditor drives them over streamable HTTP: search the log with filters and
//! pages, verify the chain, and sign a checkpoint whose signature checks out with the published public
//! key. Also: the server signs checkpoints on its own, by record count and by timer.

mod cases {
    use std::collections::HashSet;

    use make_budget_mcp::audit::Checkpoint;
    use make_budget_mcp::audit::checkpoint::parse_public_keys;
    use serde_json::{Value, json};

    use crate::support::*;

    async fn page_through(client: &Client, filter: Value) -> Vec<Value> {
        let mut all = Vec::new();
        let mut args = filter.clone();
        loop {
            let page = call_ok(client, "query_audit_log", args.clone()).await;
            all.extend(page["records"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => args["cursor"] = json!(c),
                None => return all,
            }
        }
    }

    pub async fn auditors_search_verify_and_checkpoint_the_log(db: TestDb) {
        let tenant = create_tenant(&db.url, "acme");
        let admin_token = issue_token(&db.url, &tenant, "admin", "alice");
        let auditor_token = issue_token(&db.url, &tenant, "auditor", "audrey");
        let viewer_token = issue_token(&db.url, &tenant, "viewer", "vic");
        let other = create_tenant(&db.url, "zeta");
        let other_token = issue_token(&db.url, &other, "admin", "zed");
        let server = HttpServer::start(&db.url).await;
        let alice = http_client(&server.mcp_url, &admin_token, Lifecycle::Initialize).await;
        let audrey = http_client(&server.mcp_url, &auditor_token, Lifecycle::Initialize).await;
        let vic = http_client(&server.mcp_url, &viewer_token, Lifecycle::Initialize).await;
        let zed = http_client(&server.mcp_url, &other_token, Lifecycle::Initialize).await;

        let mut ids = Vec::new();
        for name in ["A", "B", "C"] {
            ids.push(call_ok(&alice, "create_budget", budget_args(name)).await["id"].as_str().unwrap().to_owned());
        }
        call_ok(&alice, "update_budget", json!({"id": ids[0], "version": 1, "limit": 777})).await;
        call_ok(&zed, "create_budget", budget_args("other tenant's")).await;
        let denied = call_err(&vic, "create_budget", budget_args("nope")).await;
        assert!(denied.starts_with("permission_denied"), "{denied}");

        // Everything, newest first, in pages of 2: no record twice, none missing, the tenant's own only.
        let all = page_through(&audrey, json!({"limit": 2})).await;
        let seqs: Vec<i64> = all.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
        // tenant_create, 3 token_issue, 3 create_budget, update_budget, the denial.
        assert_eq!(seqs, (1..=9).rev().collect::<Vec<i64>>());
        assert!(all.iter().all(|r| r["tenant_id"] == tenant.as_str()));
        let distinct: HashSet<&str> = all.iter().map(|r| r["hash"].as_str().unwrap()).collect();
        assert_eq!(distinct.len(), all.len());
        assert_eq!(all[0]["outcome"], "denied");
        assert_eq!(all[0]["actor"]["subject"], "vic");

        let denials = call_ok(&audrey, "query_audit_log", json!({"outcome": "denied"})).await;
        assert_eq!(denials["records"].as_array().unwrap().len(), 1);
        assert!(denials["next_cursor"].is_null());
        let creates = page_through(&audrey, json!({"actor": "alice", "tool": "create_budget", "limit": 1})).await;
        assert_eq!(creates.len(), 3);
        let targets: HashSet<String> = creates.iter().map(|r| r["target"].as_str().unwrap().to_owned()).collect();
        let expected: HashSet<String> = ids.iter().map(|id| format!("budget:{id}")).collect();
        assert_eq!(targets, expected);
        let one = call_ok(&audrey, "query_audit_log", json!({"target": format!("budget:{}", ids[0])})).await;
        let actions: Vec<&str> =
            one["records"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["update_budget", "create_budget"]);
        assert_eq!(one["records"][0]["after"]["limit"], 777);
        assert_eq!(one["records"][0]["before"]["limit"], 40000);
        let budgets = page_through(&audrey, json!({"target": "budget:*"})).await;
        assert_eq!(budgets.len(), 4, "three creations and an update");
        let tokens = call_ok(&audrey, "query_audit_log", json!({"tool": "token_issue"})).await;
        assert_eq!(tokens["records"].as_array().unwrap().len(), 3);
        let text = serde_json::to_string(&tokens).unwrap();
        for secret in [&admin_token, &auditor_token, &viewer_token] {
            assert!(!text.contains(secret.as_str()), "token secrets never reach the audit log");
        }
        let later = call_ok(&audrey, "query_audit_log", json!({"since": "2999-01-01T00:00:00Z"})).await;
        assert!(later["records"].as_array().unwrap().is_empty());
        let earlier = call_ok(&audrey, "query_audit_log", json!({"until": "2001-01-01T00:00:00Z"})).await;
        assert!(earlier["records"].as_array().unwrap().is_empty());
        let window =
            call_ok(&audrey, "query_audit_log", json!({"since": all[8]["at"], "until": "2999-01-01T00:00:00+02:00"}))
                .await;
        assert_eq!(window["records"].as_array().unwrap().len(), 9);

        let bad = call_err(&audrey, "query_audit_log", json!({"since": "yesterday"})).await;
        assert!(bad.starts_with("invalid_argument") && bad.contains("`since`"), "{bad}");
        let bad = call_err(&audrey, "query_audit_log", json!({"cursor": "abc"})).await;
        assert!(bad.contains("`cursor`"), "{bad}");
        let bad = call_err(&audrey, "query_audit_log", json!({"limit": 0})).await;
        assert!(bad.contains("`limit`"), "{bad}");
        for tool in ["query_audit_log", "verify_audit_chain", "create_audit_checkpoint"] {
            let e = call_err(&vic, tool, json!({})).await;
            assert!(e.starts_with("permission_denied") && e.contains("budget:audit_read"), "{tool}: {e}");
        }

        // Verify, sign a checkpoint, verify again: the checkpoint covers its own request.
        let v = call_ok(&audrey, "verify_audit_chain", json!({})).await;
        assert_eq!(v["valid"], true, "{v}");
        assert_eq!(v["checkpoints_checked"], true);
        let head = v["head_seq"].as_i64().unwrap();
        assert_eq!(v["records_checked"], head);
        let signed = call_ok(&audrey, "create_audit_checkpoint", json!({})).await;
        let cp: Checkpoint = serde_json::from_value(signed["checkpoint"].clone()).unwrap();
        assert_eq!((cp.tenant_id.as_str(), cp.seq), (tenant.as_str(), head + 1));
        let public_key = cli_ok(&db.url, &["audit", "public-key"]);
        assert_eq!(signed["public_key"], public_key.as_str());
        parse_public_keys(&public_key).unwrap().verify(&cp).expect("the signature checks out with the public key");
        let v = call_ok(&audrey, "verify_audit_chain", json!({})).await;
        assert_eq!((v["valid"].as_bool(), v["anchored_seq"].as_i64()), (Some(true), Some(cp.seq)));
        assert_eq!(v["latest_checkpoint"]["signature"], cp.signature.as_str());
        let last = call_ok(&audrey, "query_audit_log", json!({"limit": 1})).await;
        assert_eq!(last["records"][0]["action"], "create_audit_checkpoint");
        assert_eq!(last["records"][0]["hash"], cp.head_hash.as_str());

        for c in [alice, audrey, vic, zed] {
            c.cancel().await.unwrap();
        }
        server.stop().await;
    }

    pub async fn the_server_signs_checkpoints_by_count_and_by_timer(db: TestDb) {
        let tenant = create_tenant(&db.url, "acme");
        let token = issue_token(&db.url, &tenant, "admin", "alice");
        let server = HttpServer::start_with(
            &db.url,
            &[("MBM_CHECKPOINT_EVERY_RECORDS", "3"), ("MBM_CHECKPOINT_INTERVAL_SECS", "1")],
        )
        .await;
        let store = open_store(&db.url).await;
        let client = http_client(&server.mcp_url, &token, Lifecycle::Initialize).await;
        // Records 1-2 exist (tenant, token); 3 budgets make 5; the count rule signs at seq 3.
        for name in ["A", "B", "C"] {
            call_ok(&client, "create_budget", budget_args(name)).await;
        }
        let signed_at = |store: &make_budget_mcp::store::Store| {
            let store = store.clone();
            async move {
                let rows = sqlx::query("SELECT seq FROM audit_checkpoints ORDER BY seq")
                    .fetch_all(store.pool())
                    .await
                    .unwrap();
                rows.iter().map(|r| sqlx::Row::try_get::<i64, _>(r, "seq").unwrap()).collect::<Vec<i64>>()
            }
        };
        assert!(signed_at(&store).await.contains(&3), "{:?}", signed_at(&store).await);
        // Within a few seconds the timer covers the head (seq 5) too.
        wait_until(15, "the timer signs the head", || async { signed_at(&store).await.last() == Some(&5) }).await;
        let out = cli(&db.url, &["audit", "verify"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("signed checkpoint at seq 5"), "{out:?}");
        // Each committed checkpoint is in the server's log with its signature: a witness outside the database.
        let rows = sqlx::query("SELECT signature FROM audit_checkpoints").fetch_all(store.pool()).await.unwrap();
        let logs = server.logs();
        for row in rows {
            let signature: String = sqlx::Row::try_get(&row, "signature").unwrap();
            assert!(logs.contains(&signature), "checkpoint {signature} is not in the log:\n{logs}");
        }
        client.cancel().await.unwrap();
        server.stop().await;
        store.close().await;
    }
}

on_both_stores!(auditors_search_verify_and_checkpoint_the_log, the_server_signs_checkpoints_by_count_and_by_timer);
