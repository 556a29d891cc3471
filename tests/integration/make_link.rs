//! The Make.com link end to end: the real binary (HTTP, rmcp client) against the fake Make API.
//! Connecting (validated, token sealed), syncing (progress, idempotency, interruption, cancellation),
//! reading scenarios and usage, pausing/resuming in Make, and keeping the token secret throughout.

use std::time::Duration;

use crate::support::fake_make::Fault;
use crate::support::*;
use rmcp::model::{CallToolRequestParams, NumberOrString, ProgressToken, RequestMetaObject};
use serde_json::{Value, json};

on_both_stores!(
    connect_validates_and_never_reveals_the_token,
    sync_stores_usage_and_is_idempotent,
    an_interrupted_sync_rerun_matches_a_clean_sync,
    pause_and_resume_change_make_and_are_audited,
    a_ciphertext_moved_to_another_tenant_does_not_decrypt,
    keys_rotate_keeps_connections_working,
    evaluate_no_sync_uses_stored_usage_and_calls_no_make,
);

/// A server on `db`, an admin client for a fresh tenant, and that tenant's id.
async fn admin_session(db: &TestDb, tenant: &str, env: &[(&str, &str)]) -> (HttpServer, Client, String) {
    let id = create_tenant(&db.url, tenant);
    let token = issue_token(&db.url, &id, "admin", "alice");
    let server = HttpServer::start_with(&db.url, env).await;
    let client = http_client(&server.mcp_url, &token, Lifecycle::Initialize).await;
    (server, client, id)
}

/// Every stored usage row, for comparing two databases.
async fn usage_snapshot(db: &TestDb) -> Vec<(String, i64, String, i64, i64, bool)> {
    let store = open_store(&db.url).await;
    let rows = sqlx::query(
        "SELECT subject_kind, subject_id, day, centicredits, operations, estimated FROM usage_daily
         ORDER BY subject_kind, subject_id, day",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let out = rows
        .iter()
        .map(|r| {
            use sqlx::Row;
            let est = r.try_get::<bool, _>("estimated").or_else(|_| r.try_get::<i64, _>("estimated").map(|v| v != 0));
            (
                r.try_get("subject_kind").unwrap(),
                r.try_get("subject_id").unwrap(),
                r.try_get("day").unwrap(),
                r.try_get("centicredits").unwrap(),
                r.try_get("operations").unwrap(),
                est.unwrap(),
            )
        })
        .collect();
    store.close().await;
    out
}

fn scenario_total(rows: &[(String, i64, String, i64, i64, bool)], id: i64) -> i64 {
    rows.iter().filter(|r| r.0 == "scenario" && r.1 == id).map(|r| r.3).sum()
}

mod cases {
    use super::*;

    pub async fn connect_validates_and_never_reveals_the_token(db: TestDb) {
        let fake = seeded_fake().await;
        let (server, admin, _) = admin_session(&db, "acme", &[("MBM_LOG", "trace")]).await;
        let store = open_store(&db.url).await;

        // Make is asked, and its refusals are passed on; nothing is stored.
        let mut wrong = connect_args(&fake, &[ORG]);
        wrong["token"] = "00000000-1111-4222-8333-444444444444".into();
        let e = call_err(&admin, "connect_make", wrong).await;
        assert!(
            e.starts_with("make_error: Make did not confirm access to organization 1054: Make answered 401: SC401"),
            "{e}"
        );
        assert!(!e.contains("00000000-1111"), "{e}");
        let e = call_err(&admin, "connect_make", connect_args(&fake, &[ORG, FOREIGN_ORG])).await;
        assert!(e.contains("organization 2001: Make answered 403: SC403"), "{e}");
        let mut plain = connect_args(&fake, &[ORG]);
        plain["zone"] = "http://make.example.com".into();
        let e = call_err(&admin, "connect_make", plain).await;
        assert!(e.contains("invalid argument `zone`: plain http is allowed only for loopback hosts"), "{e}");
        assert_eq!(count(&store, "make_connections", "").await, 0);

        let conn = call_ok(&admin, "connect_make", connect_args(&fake, &[ORG, ORG2])).await;
        let text = conn.to_string();
        assert!(!text.contains(MAKE_TOKEN) && !text.contains("token\":"), "no token in the result: {text}");
        let orgs = conn["organizations"].as_array().unwrap();
        assert_eq!(orgs.len(), 2);
        assert_eq!((orgs[0]["organization_id"].as_i64(), orgs[0]["api_limit"].as_i64()), (Some(ORG), Some(60_000)));
        assert_eq!(orgs[0]["allowance"], 40_000);
        assert!(orgs[0]["last_reset"].as_str().unwrap().starts_with("2026-03-01"));
        let listed = call_ok(&admin, "list_make_connections", json!({})).await;
        assert_eq!(listed["connections"][0]["id"], conn["id"]);
        assert!(!listed.to_string().contains(MAKE_TOKEN));

        // At rest: ciphertext only, under a named key.
        let row = sqlx::query("SELECT key_id, nonce, ciphertext FROM make_connections")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let (key_id, nonce, ciphertext): (String, Vec<u8>, Vec<u8>) = {
            use sqlx::Row;
            (row.try_get("key_id").unwrap(), row.try_get("nonce").unwrap(), row.try_get("ciphertext").unwrap())
        };
        assert_eq!((key_id.len(), nonce.len()), (16, 12));
        assert!(
            !ciphertext.windows(8).any(|w| MAKE_TOKEN.as_bytes().windows(8).any(|t| t == w)),
            "token in ciphertext"
        );
        let all_audit =
            sqlx::query("SELECT before_state, after_state FROM audit_log").fetch_all(store.pool()).await.unwrap();
        for r in &all_audit {
            use sqlx::Row;
            for col in ["before_state", "after_state"] {
                let v: Option<String> = r.try_get(col).unwrap();
                assert!(!v.unwrap_or_default().contains(MAKE_TOKEN), "token in the audit log");
            }
        }

        let again = call_err(&admin, "connect_make", connect_args(&fake, &[ORG2])).await;
        assert!(again.starts_with("conflict: organization 1055 is already connected"), "{again}");

        call_ok(&admin, "sync_usage", json!({})).await;
        call_ok(&admin, "pause_scenarios", json!({"scenario_ids": [501], "reason": "log check"})).await;
        let logs = server.logs();
        assert!(logs.contains("make call"), "trace logs were captured: {}", &logs[..logs.len().min(500)]);
        if let Some(line) = logs.lines().find(|l| l.contains(MAKE_TOKEN)) {
            panic!("the Make token appears in the server log: {}", &line[..line.len().min(400)]);
        }

        let removed = call_ok(&admin, "remove_make_connection", json!({"id": conn["id"]})).await;
        assert_eq!(removed["organization_ids"], json!([ORG, ORG2]));
        assert_eq!(count(&store, "make_connections", "").await, 0);
        assert!(count(&store, "usage_daily", "").await > 0, "history is kept");
        store.close().await;
    }

    pub async fn sync_stores_usage_and_is_idempotent(db: TestDb) {
        let fake = seeded_fake().await;
        let (server, admin, tenant) = admin_session(&db, "acme", &[]).await;
        call_ok(&admin, "connect_make", connect_args(&fake, &[ORG, ORG2])).await;
        let token = issue_token(&db.url, &tenant, "manager", "maria");
        let (client, progress) = http_recording_client(&server.mcp_url, &token).await;

        let mut params = CallToolRequestParams::new("sync_usage").with_arguments(Default::default());
        let mut meta = RequestMetaObject::new();
        meta.set_progress_token(ProgressToken(NumberOrString::String("sync-1".into())));
        params.meta = Some(meta);
        let first = ok_json(&client.call_tool(params).await.unwrap());
        assert_eq!(first["all_synced"], true);
        let orgs = first["organizations"].as_array().unwrap();
        assert_eq!((orgs[0]["scenarios"].as_i64(), orgs[0]["active_scenarios"].as_i64()), (Some(5), Some(3)));
        assert_eq!(orgs[0]["scenario_usage_series"], 4, "active scenarios plus 505, which consumed this period");
        assert_eq!(orgs[1]["estimated"], true, "ORG2 reports no centicredits");
        // One note per organization read, per team and per scenario whose usage is fetched: 1054 has 2 teams
        // and 4 such scenarios, 1055 has 1 team and 2. rmcp's client handles each notification in a task of
        // its own, so they reach the recorder in any order and possibly after the result: wait for all 11,
        // then check the server's numbering in progress order.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while progress.0.lock().unwrap().len() < 11 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut notes = progress.0.lock().unwrap().clone();
        assert_eq!(notes.len(), 11, "progress notifications: {notes:?}");
        notes.sort_by(|a, b| a.progress.total_cmp(&b.progress));
        assert!(notes.windows(2).all(|w| w[0].progress < w[1].progress), "progress strictly increases: {notes:?}");
        let orgs_in_order: Vec<bool> =
            notes.iter().map(|n| n.message.as_deref().is_some_and(|m| m.contains(&ORG2.to_string()))).collect();
        assert!(orgs_in_order.is_sorted(), "the second organization continues the numbering: {notes:?}");
        let last = notes.last().unwrap();
        assert_eq!((last.progress, last.total), (20.0, Some(20.0)), "the last note completes the sync");
        assert!(notes.iter().any(|n| n.message.as_deref().is_some_and(|m| m.contains("scenario usage"))));
        // Scenario 504 is inactive and consumed nothing: its daily usage is not fetched.
        assert!(!fake.requests().iter().any(|r| r.path == "/api/v2/scenarios/504/usage"));

        let once = usage_snapshot(&db).await;
        for id in [501, 502, 503, 505, 601, 602] {
            assert_eq!(scenario_total(&once, id), expected_centicredits(id), "scenario {id}");
        }
        assert!(
            once.iter().filter(|r| r.1 == 601).all(|r| r.5),
            "estimated = operations x 100 where centicredits are absent"
        );
        let org_total: i64 = once.iter().filter(|r| r.0 == "organization" && r.1 == ORG).map(|r| r.3).sum();
        assert_eq!(org_total, [501, 502, 503, 505].iter().map(|id| expected_centicredits(*id)).sum::<i64>());

        call_ok(&client, "sync_usage", json!({})).await;
        assert_eq!(usage_snapshot(&db).await, once, "syncing again never double counts");

        let page = call_ok(&client, "list_scenarios", json!({"organization_id": ORG, "limit": 2})).await;
        assert_eq!(page["scenarios"].as_array().unwrap().len(), 2);
        assert_eq!(page["next_cursor"], 502);
        let active = call_ok(&client, "list_scenarios", json!({"active": true, "organization_id": ORG})).await;
        let ids: Vec<i64> =
            active["scenarios"].as_array().unwrap().iter().map(|s| s["scenario_id"].as_i64().unwrap()).collect();
        assert_eq!(ids, [501, 502, 503]);
        let team = call_ok(&client, "list_scenarios", json!({"team_id": 17})).await;
        assert_eq!(team["scenarios"].as_array().unwrap().len(), 2);
        let folder = call_ok(&client, "list_scenarios", json!({"folder_id": 7})).await;
        assert_eq!(folder["scenarios"].as_array().unwrap().len(), 2);

        let usage = call_ok(
            &client,
            "get_scenario_usage",
            json!({"scenario_id": 501, "from": "2026-02-01", "to": "2026-03-31"}),
        )
        .await;
        assert_eq!(usage["total_centicredits"], expected_centicredits(501));
        assert_eq!(usage["days"].as_array().unwrap().len(), 30);
        let period: i64 = usage_days()
            .iter()
            .enumerate()
            .filter(|(_, d)| **d >= jiff::civil::date(2026, 3, 1))
            .map(|(i, _)| centicredits_on(501, i) as i64)
            .sum();
        assert_eq!(usage["current_period"]["centicredits"], period, "consumption since the org's last reset");
        let e = call_err(&client, "get_scenario_usage", json!({"scenario_id": 701})).await;
        assert_eq!(e, "not_found: scenario 701 not found", "a scenario of an unconnected organization");
        let e = call_err(
            &client,
            "get_scenario_usage",
            json!({"scenario_id": 501, "from": "2026-03-10", "to": "2026-03-01"}),
        )
        .await;
        assert!(e.contains("invalid argument `to`"), "{e}");

        // Each organization's sync is one audit record.
        let store = open_store(&db.url).await;
        assert_eq!(count(&store, "audit_log", "action = 'sync_usage'").await, 4);
        assert!(store.verify_audit(None).await.unwrap().is_valid());
        store.close().await;
    }

    pub async fn an_interrupted_sync_rerun_matches_a_clean_sync(db: TestDb) {
        let fake = seeded_fake().await;
        // One attempt per call, so an injected failure ends the organization's sync at once.
        let env = [("MBM_MAKE_MAX_ATTEMPTS", "1")];
        let (_server, admin, _) = admin_session(&db, "acme", &env).await;
        call_ok(&admin, "connect_make", connect_args(&fake, &[ORG, ORG2])).await;
        fake.inject("/api/v2/scenarios/602/usage", Fault::Status(503), 1);
        let first = call_ok(&admin, "sync_usage", json!({})).await;
        assert_eq!(first["all_synced"], false);
        assert_eq!(first["organizations"][0]["status"], "synced");
        assert_eq!(first["organizations"][1]["status"], "failed");
        assert!(first["organizations"][1]["error"].as_str().unwrap().contains("503"), "{first}");
        let partial = usage_snapshot(&db).await;
        assert!(
            partial.iter().all(|r| r.1 != 601 && r.1 != ORG2 && r.1 != 30),
            "nothing of the interrupted organization"
        );
        call_ok(&admin, "sync_usage", json!({})).await;
        let rerun = usage_snapshot(&db).await;

        let clean_db = sqlite_db();
        let clean_fake = seeded_fake().await;
        let (_s, clean_admin, _) = admin_session(&clean_db, "acme", &[]).await;
        call_ok(&clean_admin, "connect_make", connect_args(&clean_fake, &[ORG, ORG2])).await;
        call_ok(&clean_admin, "sync_usage", json!({})).await;
        assert_eq!(rerun, usage_snapshot(&clean_db).await, "interrupted + rerun = one clean sync");

        // Only the organization that failed is missing an audit record for the first run.
        let store = open_store(&db.url).await;
        assert_eq!(count(&store, "audit_log", "action = 'sync_usage'").await, 3);
        store.close().await;
    }

    pub async fn pause_and_resume_change_make_and_are_audited(db: TestDb) {
        let fake = seeded_fake().await;
        let (server, admin, tenant) = admin_session(&db, "acme", &[]).await;
        call_ok(&admin, "connect_make", connect_args(&fake, &[ORG])).await;
        call_ok(&admin, "sync_usage", json!({})).await;
        let operator =
            http_client(&server.mcp_url, &issue_token(&db.url, &tenant, "operator", "olga"), Lifecycle::Discover).await;

        let paused =
            call_ok(&operator, "pause_scenarios", json!({"scenario_ids": [501, 504], "reason": "budget at 100 %"}))
                .await;
        assert_eq!(
            (paused["changed"].as_i64(), paused["already_in_state"].as_i64(), paused["failed"].as_i64()),
            (Some(1), Some(1), Some(0))
        );
        assert_eq!(paused["results"][0]["outcome"], "changed");
        assert_eq!(paused["results"][1]["outcome"], "already_in_state");
        assert_eq!(fake.scenario_active(501), Some(false));
        assert!(
            !fake.requests().iter().any(|r| r.path == "/api/v2/scenarios/504/stop"),
            "no stop for an inactive scenario"
        );
        let listed = call_ok(&operator, "list_scenarios", json!({"active": false})).await;
        assert!(listed["scenarios"].as_array().unwrap().iter().any(|s| s["scenario_id"] == 501));

        // Resume warns that Make runs an interval scenario at once; the webhook one gets no warning.
        call_ok(&operator, "pause_scenarios", json!({"scenario_ids": [503], "reason": "x"})).await;
        let resumed =
            call_ok(&operator, "resume_scenarios", json!({"scenario_ids": [501, 503], "reason": "new period"})).await;
        assert_eq!(resumed["changed"], 2);
        let w = resumed["results"][0]["warning"].as_str().unwrap();
        assert!(w.contains("Make runs scenario 501 (scheduled every 15 min) immediately"), "{w}");
        assert!(resumed["results"][1].get("warning").is_none());
        assert_eq!(fake.scenario_active(501), Some(true));

        // Make's refusal is reported per scenario, with Make's error.
        fake.inject("/api/v2/scenarios/502/stop", Fault::Status(403), 1);
        let r = call_ok(&operator, "pause_scenarios", json!({"scenario_ids": [502, 501], "reason": "y"})).await;
        assert_eq!((r["failed"].as_i64(), r["changed"].as_i64()), (Some(1), Some(1)));
        assert_eq!(r["results"][0]["error"]["status"], 403);
        assert_eq!(r["results"][0]["error"]["code"], "SC403");
        assert_eq!(fake.scenario_active(502), Some(true));

        // Ids outside the tenant's connected organizations are refused before Make is called.
        let calls = fake.requests().len();
        for ids in [json!([701]), json!([501, 999_999])] {
            let e = call_err(&operator, "pause_scenarios", json!({"scenario_ids": ids, "reason": "z"})).await;
            assert!(e.contains("are not in any Make organization connected to this tenant (as of the last sync); nothing was changed"), "{e}");
        }
        let e = call_err(&operator, "pause_scenarios", json!({"scenario_ids": [501, 501], "reason": "z"})).await;
        assert!(e.contains("invalid argument `scenario_ids`: lists 501 twice"), "{e}");
        let e = call_err(&operator, "pause_scenarios", json!({"scenario_ids": [501], "reason": " "})).await;
        assert!(e.contains("invalid argument `reason`"), "{e}");
        assert_eq!(fake.requests().len(), calls, "refused calls never reach Make");
        assert_eq!(fake.scenario_active(701), Some(true));

        let store = open_store(&db.url).await;
        let records = store.audit_records(tenant.parse().unwrap(), 0, 100).await.unwrap();
        let pause = records.iter().find(|r| r.entry.action == "pause_scenarios").unwrap();
        assert_eq!(pause.entry.reason.as_deref(), Some("budget at 100 %"));
        assert_eq!(
            (pause.entry.actor.subject.as_str(), pause.entry.target.as_str()),
            ("olga", "make_scenarios:501,504")
        );
        assert_eq!(pause.entry.after.as_ref().unwrap()["results"][0]["outcome"], "changed");
        assert_eq!(count(&store, "audit_log", "action IN ('pause_scenarios', 'resume_scenarios')").await, 4);
        assert!(store.verify_audit(None).await.unwrap().is_valid());
        store.close().await;
    }

    pub async fn a_ciphertext_moved_to_another_tenant_does_not_decrypt(db: TestDb) {
        let fake = seeded_fake().await;
        let (server, admin_a, _) = admin_session(&db, "tenant-a", &[]).await;
        call_ok(&admin_a, "connect_make", connect_args(&fake, &[ORG])).await;
        let b = create_tenant(&db.url, "tenant-b");
        let admin_b =
            http_client(&server.mcp_url, &issue_token(&db.url, &b, "admin", "bob"), Lifecycle::Initialize).await;
        call_ok(&admin_b, "connect_make", connect_args(&fake, &[ORG2])).await;

        // An attacker with database access copies A's sealed token into B's row.
        let store = open_store(&db.url).await;
        sqlx::query(
            "UPDATE make_connections SET key_id = a.key_id, nonce = a.nonce, ciphertext = a.ciphertext
             FROM (SELECT key_id, nonce, ciphertext FROM make_connections WHERE tenant_id <> $1) AS a
             WHERE make_connections.tenant_id = $1",
        )
        .bind(&b)
        .execute(store.pool())
        .await
        .unwrap();
        let e = call_err(&admin_b, "sync_usage", json!({})).await;
        assert!(e.contains("failed authentication"), "{e}");
        let calls = fake.requests().len();
        let e = call_err(&admin_b, "sync_usage", json!({})).await;
        assert!(e.contains("it was altered, or it belongs to another record or tenant"), "{e}");
        assert_eq!(fake.requests().len(), calls, "a secret that fails to decrypt is never sent anywhere");
        call_ok(&admin_a, "sync_usage", json!({})).await;
        store.close().await;
    }

    pub async fn keys_rotate_keeps_connections_working(db: TestDb) {
        let fake = seeded_fake_at(utc_today()).await;
        let (server, admin, _) = admin_session(&db, "acme", &[]).await;
        call_ok(&admin, "connect_make", connect_args(&fake, &[ORG])).await;
        let hook = WebhookReceiver::start("rotation-secret-0123456789").await;
        call_ok(&admin, "add_webhook", json!({"url": hook.url, "secret": "rotation-secret-0123456789"})).await;
        server.stop().await;

        let new_key = cli_ok(&db.url, &["keys", "generate"]);
        let new_id =
            String::from_utf8(cli_env(&db.url, &["keys", "current"], &[("MBM_MASTER_KEY", &new_key)]).stdout).unwrap();

        // The new key alone cannot read what the old key sealed: the server refuses to start, clearly.
        let out = cli_env(
            &db.url,
            &["serve", "--transport", "http", "--listen", "127.0.0.1:0"],
            &[("MBM_MASTER_KEY", &new_key)],
        );
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("the stored Make credentials are encrypted under master key id"), "{err}");
        assert!(err.contains(&format!("key id {}", new_id.trim())), "{err}");
        assert!(!err.contains(&new_key) && !err.contains(TEST_MASTER_KEY), "no key material in errors: {err}");

        let rotate = cli_env(
            &db.url,
            &["keys", "rotate"],
            &[("MBM_MASTER_KEY", &new_key), ("MBM_PREVIOUS_MASTER_KEYS", TEST_MASTER_KEY)],
        );
        assert!(rotate.status.success(), "{}", String::from_utf8_lossy(&rotate.stderr));
        assert!(
            String::from_utf8_lossy(&rotate.stderr).contains("re-encrypted 2 secret(s)"),
            "the Make token and the webhook secret: {}",
            String::from_utf8_lossy(&rotate.stderr)
        );

        let server = HttpServer::start_with(&db.url, &[("MBM_MASTER_KEY", &new_key)]).await;
        let tenant_token = issue_token(&db.url, "acme", "admin", "after-rotation");
        let client = http_client(&server.mcp_url, &tenant_token, Lifecycle::Initialize).await;
        let synced = call_ok(&client, "sync_usage", json!({})).await;
        assert_eq!(synced["all_synced"], true, "the connection works under the new key alone");
        let store = open_store(&db.url).await;
        assert_eq!(count(&store, "make_connections", &format!("key_id = '{}'", new_id.trim())).await, 1);
        assert_eq!(count(&store, "webhooks", &format!("key_id = '{}'", new_id.trim())).await, 1);
        assert_eq!(count(&store, "audit_log", "action = 'keys_rotate'").await, 2);
        store.close().await;
        // The webhook secret still signs correctly under the new key.
        let budget = call_ok(
            &client,
            "create_budget",
            json!({"name": "r", "unit": "credits", "limit": 1,
            "period": {"kind": "monthly"}, "timezone": "UTC", "scope": {"organization_id": ORG}}),
        )
        .await;
        let t = call_ok(
            &client,
            "add_threshold",
            json!({"budget_id": budget["id"], "kind": "percent", "value": 50,
            "basis": "actual", "severity": "info"}),
        )
        .await;
        call_ok(&client, "add_threshold_action", json!({"threshold_id": t["id"], "kind": "notify"})).await;
        call_ok(&client, "sync_usage", json!({})).await;
        let out = cli_env(&db.url, &["evaluate", "--once"], &[("MBM_MASTER_KEY", &new_key)]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        let got = hook.of_type("threshold_crossed");
        assert_eq!(got.len(), 1);
        assert!(got[0].signature_ok);
    }

    /// `evaluate --once --no-sync` evaluates budgets against the usage last synced, without a call to Make,
    /// and reports how long the pass took.
    pub async fn evaluate_no_sync_uses_stored_usage_and_calls_no_make(db: TestDb) {
        // The CLI evaluates at the real time: usage must be in this month.
        let fake = seeded_fake_at(utc_today()).await;
        let (_server, client, _) = admin_session(&db, "acme", &[]).await;
        call_ok(&client, "connect_make", connect_args(&fake, &[ORG])).await;
        call_ok(&client, "sync_usage", json!({})).await;
        let budget = call_ok(
            &client,
            "create_budget",
            json!({"name": "stored", "unit": "credits", "limit": 1,
            "period": {"kind": "monthly"}, "timezone": "UTC", "scope": {"organization_id": ORG}}),
        )
        .await;
        let args = json!({"budget_id": budget["id"], "kind": "percent", "value": 100, "basis": "actual", "severity": "critical"});
        call_ok(&client, "add_threshold", args).await;
        fake.clear_requests();

        let out = cli_env(&db.url, &["evaluate", "--once", "--no-sync"], &[]);
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["organizations_synced"], 0, "{report}");
        assert_eq!(report["budgets_evaluated"], 1, "{report}");
        assert_eq!(report["crossings"], 1, "the stored usage is over the 1-credit limit: {report}");
        assert!(report["duration_ms"].is_u64(), "{report}");
        assert!(fake.requests().is_empty(), "no Make calls: {:?}", fake.requests());

        let plain = cli_env(&db.url, &["evaluate", "--no-sync"], &[]);
        assert!(!plain.status.success(), "--no-sync needs --once");
        assert!(String::from_utf8_lossy(&plain.stderr).contains("--once"));
    }
}

/// Cancelling a sync stops it: no further Make calls, nothing half-written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_sync_writes_nothing_and_stops_calling_make() {
    let db = sqlite_db();
    let fake = seeded_fake().await;
    let (_server, admin, _) = admin_session(&db, "acme", &[]).await;
    call_ok(&admin, "connect_make", connect_args(&fake, &[ORG])).await;
    // Scenario histories are read highest consumer first: 503 is the first, 502 comes later.
    fake.inject("/api/v2/scenarios/503/usage", Fault::Delay(Duration::from_millis(1_500)), 1);
    let call = admin.call_tool(CallToolRequestParams::new("sync_usage").with_arguments(Default::default()));
    assert!(tokio::time::timeout(Duration::from_millis(700), call).await.is_err(), "the sync was still running");
    // The fake records the slow request when it finally answers it.
    settle(10, || fake.requests().iter().any(|r| r.path == "/api/v2/scenarios/503/usage")).await;
    let seen = fake.requests().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.requests().len(), seen, "no Make calls after cancellation");
    assert!(!fake.requests().iter().any(|r| r.path == "/api/v2/scenarios/502/usage"), "the sync stopped where it was");
    let store = open_store(&db.url).await;
    assert_eq!(count(&store, "usage_daily", "").await, 0);
    assert_eq!(count(&store, "audit_log", "action = 'sync_usage'").await, 0);
    // The server is fine and a new sync completes.
    let done: Value = call_ok(&admin, "sync_usage", json!({})).await;
    assert_eq!(done["all_synced"], true);
}
