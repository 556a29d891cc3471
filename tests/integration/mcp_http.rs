//! The real binary serving streamable HTTP, driven by rmcp's client with bearer tokens, in both
//! lifecycles (`initialize` and the stateless 2026-07-28 `server/discover`), on SQLite and PostgreSQL:
//! authentication, the RBAC matrix, tenant isolation, request size limits and log secrecy.

use crate::support::*;
use make_budget_mcp::auth::{Permission, Role, TOOL_PERMISSIONS};
use serde_json::{Value, json};

on_both_stores!(
    crud_in_both_lifecycles,
    every_tool_for_every_role,
    tenants_cannot_see_or_touch_each_other,
    unauthenticated_requests_get_401_before_mcp,
    oversized_requests_write_nothing,
);

async fn raw_post(url: &str, auth: Option<&str>, body: &str) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.expect("HTTP request")
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

mod cases {
    use super::*;

    pub async fn crud_in_both_lifecycles(db: TestDb) {
        let tenant = create_tenant(&db.url, "acme");
        let token = issue_token(&db.url, &tenant, "admin", "alice");
        let server = HttpServer::start(&db.url).await;
        for lifecycle in [Lifecycle::Initialize, Lifecycle::Discover] {
            let client = http_client(&server.mcp_url, &token, lifecycle).await;
            let info = client.peer_info().expect("server info");
            assert_eq!(info.protocol_version, lifecycle.expected_version(), "{lifecycle:?}");

            let me = call_ok(&client, "whoami", json!({})).await;
            assert_eq!(me["tenant_id"], tenant.as_str());
            assert_eq!(
                (me["subject"].as_str(), me["role"].as_str(), me["transport"].as_str()),
                (Some("alice"), Some("admin"), Some("http"))
            );

            let name = format!("Ops {lifecycle:?}");
            let b = call_ok(&client, "create_budget", budget_args(&name)).await;
            let id = b["id"].as_str().unwrap().to_owned();
            assert_eq!((b["version"].as_i64(), b["created_by"].as_str()), (Some(1), Some("alice")));
            assert_eq!(call_ok(&client, "get_budget", json!({"id": id})).await, b);

            let page = call_ok(&client, "list_budgets", json!({"name_contains": name})).await;
            assert_eq!(page["budgets"].as_array().unwrap().len(), 1);
            assert!(page.get("next_cursor").is_none());

            let v2 =
                call_ok(&client, "update_budget", json!({"id": id, "version": 1, "limit": 50000, "money": null})).await;
            assert_eq!((v2["version"].as_i64(), v2["limit"].as_i64()), (Some(2), Some(50000)));
            assert!(v2["money"].is_null(), "money: null removes the money view");
            assert_eq!(v2["name"], b["name"], "fields not given are kept");

            let stale = call_err(&client, "update_budget", json!({"id": id, "version": 1, "limit": 1})).await;
            assert!(
                stale.starts_with(&format!(
                    "conflict: budget {id} was changed by someone else (you sent version 1, the current version is 2)"
                )),
                "{stale}"
            );

            let gone = call_ok(&client, "delete_budget", json!({"id": id, "version": 2})).await;
            assert_eq!(gone["deleted"], true);
            let missing = call_err(&client, "get_budget", json!({"id": id})).await;
            assert_eq!(missing, format!("not_found: budget {id} not found"));
            client.cancel().await.unwrap();
        }

        // Every mutation above is in the chain, which verifies.
        let store = open_store(&db.url).await;
        let t = tenant.parse().unwrap();
        let actions: Vec<String> =
            store.audit_records(t, 0, 100).await.unwrap().into_iter().map(|r| r.entry.action).collect();
        let per_round = ["create_budget", "update_budget", "delete_budget"];
        let expected: Vec<&str> =
            ["tenant_create", "token_issue"].into_iter().chain(per_round).chain(per_round).collect();
        assert_eq!(actions, expected);
        assert!(cli_ok(&db.url, &["audit", "verify"]).starts_with("ok"));
        assert!(!server.logs().contains(&token), "the bearer token must never be logged");
        store.close().await;
    }

    /// The connection covering ORG2, connecting it first if needed (as admin).
    async fn org2_connection(admin: &Client, fake: &crate::support::fake_make::FakeMake) -> String {
        let conns = call_ok(admin, "list_make_connections", json!({})).await;
        let existing =
            conns["connections"].as_array().unwrap().iter().find(|c| c["organizations"][0]["organization_id"] == ORG2);
        match existing {
            Some(c) => c["id"].as_str().unwrap().to_owned(),
            None => {
                call_ok(admin, "connect_make", connect_args(fake, &[ORG2])).await["id"].as_str().unwrap().to_owned()
            }
        }
    }

    /// A budget over ORG for March 2026 (the fake's month) whose 1 % threshold pauses non-critical scenarios
    /// in `mode`, synced by the admin so that its crossing created a plan: (budget id, plan id).
    /// A budget whose crossing made a plan: `mode` "automatic", "requires_approval", or "delayed" (automatic,
    /// an hour after the crossing: scheduled).
    async fn plan_budget(admin: &Client, n: usize, mode: &str) -> (Value, Value) {
        let b = call_ok(
            admin,
            "create_budget",
            json!({"name": format!("plan {n}"), "unit": "credits", "limit": 1, "timezone": "UTC",
                   "period": {"kind": "custom", "start": "2026-03-01", "end": "2026-03-31"},
                   "scope": {"organization_id": ORG}}),
        )
        .await;
        let t = call_ok(
            admin,
            "add_threshold",
            json!({"budget_id": b["id"], "kind": "percent", "value": 1, "basis": "actual", "severity": "info"}),
        )
        .await;
        let mut action = json!({"threshold_id": t["id"], "kind": "pause_scenarios", "selector": {"kind": "non_critical"},
                                "mode": mode});
        if mode == "delayed" {
            action["mode"] = json!("automatic");
            action["delay_minutes"] = json!(60);
        }
        call_ok(admin, "add_threshold_action", action).await;
        call_ok(admin, "sync_usage", json!({"organization_id": ORG})).await;
        let plans = call_ok(admin, "list_actions", json!({"budget_id": b["id"]})).await;
        (b["id"].clone(), plans["plans"][0]["id"].clone())
    }

    /// Arguments that would succeed for `tool`, preparing what it needs as admin.
    async fn valid_args(tool: &str, admin: &Client, fake: &crate::support::fake_make::FakeMake, n: usize) -> Value {
        let target = || async { call_ok(admin, "create_budget", budget_args(&format!("target {n}"))).await };
        match tool {
            "whoami" | "list_budgets" | "list_make_connections" | "list_scenarios" => json!({}),
            "create_budget" => budget_args(&format!("created by matrix {n}")),
            "get_budget" | "delete_budget" => json!({"id": target().await["id"]}),
            "update_budget" => {
                let t = target().await;
                json!({"id": t["id"], "version": t["version"], "limit": 1234})
            }
            "connect_make" => {
                let id = org2_connection(admin, fake).await;
                call_ok(admin, "remove_make_connection", json!({"id": id})).await;
                connect_args(fake, &[ORG2])
            }
            "remove_make_connection" => json!({"id": org2_connection(admin, fake).await}),
            "sync_usage" => json!({"organization_id": ORG}),
            "get_scenario_usage" => json!({"scenario_id": 501}),
            "pause_scenarios" | "resume_scenarios" => json!({"scenario_ids": [501], "reason": "RBAC matrix"}),
            "get_budget_status" | "get_budget_chart" | "get_budget_history" => json!({"id": target().await["id"]}),
            "forecast_spend" => json!({"id": target().await["id"], "horizon_days": 7}),
            "list_thresholds" => json!({"budget_id": target().await["id"]}),
            "add_threshold" => json!({"budget_id": target().await["id"], "kind": "percent", "value": 80,
                                      "basis": "actual", "severity": "warning"}),
            "update_threshold" | "remove_threshold" => {
                let t = call_ok(admin, "add_threshold", json!({"budget_id": target().await["id"], "kind": "percent",
                                                               "value": 90, "basis": "forecast", "severity": "critical"})).await;
                if tool == "update_threshold" {
                    json!({"id": t["id"], "version": 1, "value": 70})
                } else {
                    json!({"id": t["id"]})
                }
            }
            "add_threshold_action" | "list_threshold_actions" => {
                let t = call_ok(
                    admin,
                    "add_threshold",
                    json!({"budget_id": target().await["id"], "kind": "percent",
                                                               "value": 95, "basis": "actual", "severity": "info"}),
                )
                .await;
                if tool == "add_threshold_action" {
                    json!({"threshold_id": t["id"], "kind": "notify"})
                } else {
                    json!({"threshold_id": t["id"]})
                }
            }
            "remove_threshold_action" => {
                let t = call_ok(
                    admin,
                    "add_threshold",
                    json!({"budget_id": target().await["id"], "kind": "percent",
                                                               "value": 95, "basis": "actual", "severity": "info"}),
                )
                .await;
                let a =
                    call_ok(admin, "add_threshold_action", json!({"threshold_id": t["id"], "kind": "notify"})).await;
                json!({"action_id": a["id"]})
            }
            "set_scenario_critical" => json!({"scenario_id": 502, "critical": false}),
            "preview_action" => json!({"budget_id": plan_budget(admin, n, "requires_approval").await.0,
                                       "selector": {"kind": "non_critical"}}),
            "list_actions" | "list_webhooks" => json!({}),
            "get_action" | "approve_action" => {
                json!({"plan_id": plan_budget(admin, n, "requires_approval").await.1})
            }
            "reject_action" => {
                json!({"plan_id": plan_budget(admin, n, "requires_approval").await.1, "reason": "RBAC matrix"})
            }
            "reverse_action" => json!({"plan_id": plan_budget(admin, n, "automatic").await.1, "reason": "RBAC matrix"}),
            "cancel_action" => json!({"plan_id": plan_budget(admin, n, "delayed").await.1, "reason": "RBAC matrix"}),
            "add_webhook" => json!({"url": "http://127.0.0.1:9/hook", "secret": "matrix-secret-0123456789"}),
            "remove_webhook" => {
                let w = call_ok(
                    admin,
                    "add_webhook",
                    json!({"url": "http://127.0.0.1:9/hook",
                                                             "secret": "matrix-secret-0123456789"}),
                )
                .await;
                json!({"webhook_id": w["id"]})
            }
            "query_audit_log" => json!({"outcome": "denied", "limit": 5}),
            "verify_audit_chain" | "create_audit_checkpoint" => json!({}),
            other => panic!("the RBAC matrix test does not know tool {other}; add it"),
        }
    }

    pub async fn every_tool_for_every_role(db: TestDb) {
        // Written out independently of the server's table, so a change to either is caught.
        let expected_permission: &[(&str, Option<Permission>)] = &[
            ("whoami", None),
            ("create_budget", Some(Permission::BudgetCreate)),
            ("get_budget", Some(Permission::BudgetRead)),
            ("list_budgets", Some(Permission::BudgetRead)),
            ("update_budget", Some(Permission::BudgetUpdate)),
            ("delete_budget", Some(Permission::BudgetDelete)),
            ("connect_make", Some(Permission::ManageConnections)),
            ("list_make_connections", Some(Permission::BudgetRead)),
            ("remove_make_connection", Some(Permission::ManageConnections)),
            ("sync_usage", Some(Permission::BudgetUpdate)),
            ("list_scenarios", Some(Permission::BudgetRead)),
            ("get_scenario_usage", Some(Permission::BudgetRead)),
            ("pause_scenarios", Some(Permission::ExecuteAutomatedActions)),
            ("resume_scenarios", Some(Permission::ExecuteAutomatedActions)),
            ("get_budget_status", Some(Permission::BudgetRead)),
            ("get_budget_chart", Some(Permission::BudgetRead)),
            ("get_budget_history", Some(Permission::BudgetRead)),
            ("forecast_spend", Some(Permission::BudgetRead)),
            ("add_threshold", Some(Permission::ThresholdManagement)),
            ("update_threshold", Some(Permission::ThresholdManagement)),
            ("remove_threshold", Some(Permission::ThresholdManagement)),
            ("list_thresholds", Some(Permission::BudgetRead)),
            ("add_threshold_action", Some(Permission::ThresholdManagement)),
            ("remove_threshold_action", Some(Permission::ThresholdManagement)),
            ("list_threshold_actions", Some(Permission::BudgetRead)),
            ("set_scenario_critical", Some(Permission::ThresholdManagement)),
            ("preview_action", Some(Permission::BudgetRead)),
            ("list_actions", Some(Permission::BudgetRead)),
            ("get_action", Some(Permission::BudgetRead)),
            ("approve_action", Some(Permission::ExecuteAutomatedActions)),
            ("reject_action", Some(Permission::ExecuteAutomatedActions)),
            ("reverse_action", Some(Permission::ExecuteAutomatedActions)),
            ("cancel_action", Some(Permission::ExecuteAutomatedActions)),
            ("add_webhook", Some(Permission::ThresholdManagement)),
            ("list_webhooks", Some(Permission::BudgetRead)),
            ("remove_webhook", Some(Permission::ThresholdManagement)),
            ("query_audit_log", Some(Permission::AuditRead)),
            ("verify_audit_chain", Some(Permission::AuditRead)),
            ("create_audit_checkpoint", Some(Permission::AuditRead)),
        ];
        assert_eq!(TOOL_PERMISSIONS, expected_permission);

        let fake = seeded_fake().await;
        let tenant = create_tenant(&db.url, "acme");
        let admin_token = issue_token(&db.url, &tenant, "admin", "root");
        let server = HttpServer::start(&db.url).await;
        let admin = http_client(&server.mcp_url, &admin_token, Lifecycle::Initialize).await;
        let tools: Vec<String> =
            admin.list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
        assert_eq!(tools.len(), expected_permission.len(), "served tools: {tools:?}");
        call_ok(&admin, "connect_make", connect_args(&fake, &[ORG])).await;
        call_ok(&admin, "sync_usage", json!({})).await;

        let store = open_store(&db.url).await;
        let mut n = 0;
        for role in Role::ALL {
            let token = issue_token(&db.url, &tenant, role.as_str(), &format!("{role}-user"));
            let client = http_client(&server.mcp_url, &token, Lifecycle::Initialize).await;
            for (tool, needed) in expected_permission {
                n += 1;
                let args = valid_args(tool, &admin, &fake, n).await;
                let denied_before = count(&store, "audit_log", "outcome = 'denied'").await;
                let (budgets, make_calls) = (count(&store, "budgets", "").await, fake.requests().len());
                let result = call(&client, tool, args).await;
                let allowed = needed.is_none_or(|p| role.allows(p));
                if allowed {
                    assert_ne!(result.is_error, Some(true), "{role} {tool}: {}", text_of(&result));
                } else {
                    let text = err_text(&result);
                    let p = needed.unwrap();
                    assert_eq!(
                        text,
                        format!(
                            "permission_denied: this call needs permission `{p}`, which role `{role}` does not have"
                        ),
                        "{role} {tool}"
                    );
                    assert_eq!(
                        count(&store, "audit_log", "outcome = 'denied'").await,
                        denied_before + 1,
                        "denial audited"
                    );
                    assert_eq!(count(&store, "budgets", "").await, budgets, "a denied call changes nothing");
                    assert_eq!(fake.requests().len(), make_calls, "a denied call never reaches Make");
                }
                println!("{role:<8} {tool:<24} {}", if allowed { "allowed" } else { "denied" });
            }
            client.cancel().await.unwrap();
        }
        let denials = store.audit_records(tenant.parse().unwrap(), 0, 1000).await.unwrap();
        let d = denials.iter().find(|r| r.entry.outcome == make_budget_mcp::audit::Outcome::Denied).unwrap();
        assert_eq!((d.entry.actor.role.as_str(), d.entry.actor.transport.as_str()), ("viewer", "http"));
        assert!(d.entry.reason.as_deref().unwrap().contains("budget:create"));
        assert!(store.verify_audit(None).await.unwrap().is_valid());
        store.close().await;
    }

    pub async fn tenants_cannot_see_or_touch_each_other(db: TestDb) {
        let a = create_tenant(&db.url, "tenant-a");
        let b = create_tenant(&db.url, "tenant-b");
        let token_a = issue_token(&db.url, &a, "admin", "alice");
        let token_b = issue_token(&db.url, &b, "admin", "bob");
        let server = HttpServer::start(&db.url).await;
        let client_a = http_client(&server.mcp_url, &token_a, Lifecycle::Discover).await;
        let client_b = http_client(&server.mcp_url, &token_b, Lifecycle::Initialize).await;

        let theirs = call_ok(&client_b, "create_budget", budget_args("B's budget")).await;
        let id = theirs["id"].as_str().unwrap();
        let store = open_store(&db.url).await;
        let b_head = store.verify_audit(Some(b.parse().unwrap())).await.unwrap().chains[0].head_hash.clone();

        // A foreign id answers exactly like an id that does not exist anywhere.
        let missing = uuid::Uuid::now_v7().to_string();
        let same = |text: String, asked: &str| text.replace(asked, "<id>");
        for (tool, args) in [
            ("get_budget", json!({"id": "<id>"})),
            ("update_budget", json!({"id": "<id>", "version": 1, "limit": 1})),
            ("delete_budget", json!({"id": "<id>"})),
        ] {
            let with = |x: &str| serde_json::from_str::<Value>(&args.to_string().replace("<id>", x)).unwrap();
            let foreign = call_err(&client_a, tool, with(id)).await;
            let absent = call_err(&client_a, tool, with(&missing)).await;
            assert!(foreign.starts_with("not_found:"), "{tool}: {foreign}");
            assert_eq!(same(foreign, id), same(absent, &missing), "{tool}: no existence oracle");
        }
        let listed = call_ok(&client_a, "list_budgets", json!({})).await;
        assert_eq!(listed["budgets"], json!([]));
        assert_eq!(call_ok(&client_a, "whoami", json!({})).await["tenant_id"], a.as_str());
        // No tool takes a tenant: trying to pass one is an unknown argument.
        let mut smuggled = budget_args("smuggled");
        smuggled["tenant_id"] = b.clone().into();
        let e = call_err(&client_a, "create_budget", smuggled).await;
        assert!(e.contains("unknown field `tenant_id`"), "{e}");
        // Names are per tenant: A may use B's budget name, and learns nothing from it.
        call_ok(&client_a, "create_budget", budget_args("B's budget")).await;

        assert_eq!(call_ok(&client_b, "get_budget", json!({"id": id})).await, theirs, "B's budget is untouched");
        let b_after = store.verify_audit(Some(b.parse().unwrap())).await.unwrap().chains[0].head_hash.clone();
        assert_eq!(b_after, b_head, "nothing was appended to B's audit chain");
        store.close().await;
    }

    pub async fn unauthenticated_requests_get_401_before_mcp(db: TestDb) {
        let tenant = create_tenant(&db.url, "acme");
        let token = issue_token(&db.url, &tenant, "viewer", "v");
        let server = HttpServer::start(&db.url).await;
        let url = &server.mcp_url;

        let none = raw_post(url, None, "this is not even JSON").await;
        assert_eq!(none.status(), 401);
        let challenge = none.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Bearer "), "{challenge}");
        assert!(!challenge.contains("error="), "no error code when no credentials were sent: {challenge}");

        for bad in [
            format!("Bearer mbm_{}", "0".repeat(64)),
            "Bearer nonsense".into(),
            format!("Basic {token}"),
            "Bearer".into(),
        ] {
            let r = raw_post(url, Some(&bad), INITIALIZE).await;
            assert_eq!(r.status(), 401, "{bad}");
            assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer "));
        }
        let good = raw_post(url, Some(&format!("Bearer {token}")), INITIALIZE).await;
        assert_eq!(good.status(), 200);

        // Revoked and expired tokens stop working at once.
        let store = open_store(&db.url).await;
        let token_id = cli_ok(&db.url, &["token", "list", "--tenant", "acme"]).split('\t').next().unwrap().to_owned();
        cli_ok(&db.url, &["token", "revoke", &token_id]);
        let r = raw_post(url, Some(&format!("Bearer {token}")), INITIALIZE).await;
        assert_eq!(r.status(), 401);
        assert!(r.headers()["www-authenticate"].to_str().unwrap().contains(r#"error="invalid_token""#));

        let expiring = issue_token(&db.url, &tenant, "viewer", "temp");
        assert_eq!(raw_post(url, Some(&format!("Bearer {expiring}")), INITIALIZE).await.status(), 200);
        sqlx::query("UPDATE api_tokens SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE subject = 'temp'")
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(raw_post(url, Some(&format!("Bearer {expiring}")), INITIALIZE).await.status(), 401);

        // Health needs no token.
        let health = reqwest::get(format!("{}/healthz", server.base)).await.unwrap();
        assert_eq!(health.status(), 200);
        assert_eq!(reqwest::get(format!("{}/readyz", server.base)).await.unwrap().status(), 200);
        let logs = server.logs();
        assert!(!logs.contains(&token) && !logs.contains(&expiring), "tokens must never be logged");
        store.close().await;
    }

    pub async fn oversized_requests_write_nothing(db: TestDb) {
        let tenant = create_tenant(&db.url, "acme");
        let token = issue_token(&db.url, &tenant, "admin", "alice");
        let server = HttpServer::start(&db.url).await;
        let store = open_store(&db.url).await;
        let audit_before = count(&store, "audit_log", "").await;

        let client = http_client(&server.mcp_url, &token, Lifecycle::Initialize).await;
        let session_probe = call_ok(&client, "whoami", json!({})).await;
        assert_eq!(session_probe["role"], "admin");
        let mut args = budget_args("huge");
        args["name"] = "x".repeat(10 * 1024 * 1024).into();
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                          "params": {"name": "create_budget", "arguments": args}})
        .to_string();
        // Declared size: refused from the headers alone, before the body is read.
        let authority = server.base.trim_start_matches("http://").to_owned();
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        let mut conn = tokio::net::TcpStream::connect(&authority).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut conn, head.as_bytes()).await.unwrap();
        let mut status_line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(&mut conn), &mut status_line)
            .await
            .unwrap();
        assert!(status_line.starts_with("HTTP/1.1 413"), "a 10 MB request is refused: {status_line:?}");

        // Actually sent: the server may answer 413 and close while the client is still writing, which
        // the client sees as a broken pipe. Either way nothing may be written.
        let sent = reqwest::Client::new()
            .post(&server.mcp_url)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body)
            .send()
            .await;
        if let Ok(r) = sent {
            assert_eq!(r.status(), 413);
        }

        assert_eq!(count(&store, "budgets", "").await, 0);
        assert_eq!(count(&store, "audit_log", "").await, audit_before);
        store.close().await;
    }
}

/// DNS-rebinding protection: only configured Host names reach /mcp (loopback names by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_must_be_allowed() {
    let db = sqlite_db();
    let tenant = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &tenant, "viewer", "v");
    let auth = format!("Bearer {token}");
    let post_with_host = |url: String, host: &'static str| {
        let auth = auth.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .header("host", host)
                .header("authorization", auth)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(INITIALIZE)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let default = HttpServer::start(&db.url).await;
    assert_eq!(post_with_host(default.mcp_url.clone(), "localhost").await, 200);
    assert_eq!(post_with_host(default.mcp_url.clone(), "evil.example").await, 403);

    let public = HttpServer::start_with(&db.url, &[("MBM_ALLOWED_HOSTS", "budget.example.com")]).await;
    assert_eq!(post_with_host(public.mcp_url.clone(), "budget.example.com:8080").await, 200);
    assert_eq!(post_with_host(public.mcp_url.clone(), "localhost").await, 403);
}

/// A body that is not a usable JSON-RPC message gets a JSON-RPC error as `application/json`, with the
/// status of the MCP transport: `400` for input that is not a request the server can accept (not JSON,
/// not JSON-RPC, a notification with wrong params), `200` for a request with wrong params (a request is
/// answered with one JSON object). Media-type problems keep rmcp's answers, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_json_rpc_errors() {
    let db = sqlite_db();
    let tenant = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &tenant, "viewer", "v");
    let server = HttpServer::start(&db.url).await;
    let auth = format!("Bearer {token}");
    let cases: [(&str, u16, i64, Value, &str); 7] = [
        ("this is not even JSON", 400, -32700, Value::Null, "Parse error: "),
        (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"#, 400, -32700, Value::Null, "EOF while parsing"),
        ("[\"\\ud800\"]", 400, -32700, Value::Null, "hex escape"),
        (r#"{"foo":"bar"}"#, 400, -32600, Value::Null, "Invalid Request: "),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":42}}"#,
            200,
            -32602,
            json!(4),
            "Invalid params: params.name: invalid type: integer `42`, expected a string",
        ),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":["x"]}}"#,
            200,
            -32602,
            json!(5),
            "params.uri",
        ),
        (
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":{}}}"#,
            400,
            -32602,
            Value::Null,
            "params.requestId",
        ),
    ];
    for (body, status, code, id, needle) in cases {
        let resp = raw_post(&server.mcp_url, Some(&auth), body).await;
        assert_eq!(resp.status(), status, "{body}");
        assert_eq!(resp.headers()["content-type"], "application/json", "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!((&v["jsonrpc"], &v["id"], &v["error"]["code"]), (&json!("2.0"), &id, &json!(code)), "{body}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(needle), "{body}: {v}");
    }
    // rmcp still answers media-type problems itself.
    let wrong_type = reqwest::Client::new()
        .post(&server.mcp_url)
        .header("authorization", &auth)
        .header("content-type", "text/plain")
        .header("accept", "application/json, text/event-stream")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
    let no_accept = reqwest::Client::new()
        .post(&server.mcp_url)
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(no_accept.status(), 406);
    assert_eq!(raw_post(&server.mcp_url, Some(&auth), INITIALIZE).await.status(), 200, "still serving");
    assert!(server.logs().contains("refused a malformed MCP message"), "refusals are logged");
}
