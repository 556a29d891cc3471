//! What an outside review found, each defect shown on the real binary (issue 14): sessions bound to
//! their principal, no privilege escalation through automatic actions, denials that count and cannot
//! flood the audit log, bounded subscriptions, no echo of huge inputs, and the smaller gaps (unknown
//! fields of parameterless tools, periods with stray dates, RFC 3339 offsets).
#![allow(deprecated)] // resources/subscribe is legacy-only in MCP 2026-07-28 but still served.

use crate::support::*;
use serde_json::{Value, json};

on_both_stores!(
    automatic_actions_act_only_with_the_rights_of_whoever_configured_them,
    configuration_that_automatic_actions_depend_on_needs_their_rights,
);

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

fn raw(method: reqwest::Method, url: &str, token: &str, session: Option<&str>) -> reqwest::RequestBuilder {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    req
}

/// Open a session by hand (initialize, initialized) and return its id.
async fn open_session(url: &str, token: &str) -> reqwest::Response {
    raw(reqwest::Method::POST, url, token, None).body(INITIALIZE).send().await.unwrap()
}

async fn session_of(url: &str, token: &str) -> String {
    let resp = open_session(url, token).await;
    assert_eq!(resp.status(), 200, "initialize");
    let id = resp.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
    let r = raw(reqwest::Method::POST, url, token, Some(&id)).body(initialized).send().await.unwrap();
    assert!(r.status().is_success(), "initialized: {}", r.status());
    id
}

fn whoami_call(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}})
        .to_string()
}

/// Defect 1: a session answers only the principal (tenant and subject) that opened it. Another
/// tenant's token, or another subject of the same tenant, gets 404 on GET, POST and DELETE, exactly as
/// for an id that never existed, and the session is untouched. DELETE of one's own session answers 204.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_bound_to_the_principal_that_opened_it() {
    let db = sqlite_db();
    let a = create_tenant(&db.url, "tenant-a");
    let b = create_tenant(&db.url, "tenant-b");
    let alice = issue_token(&db.url, &a, "admin", "alice");
    let alice_again = issue_token(&db.url, &a, "viewer", "alice");
    let andy = issue_token(&db.url, &a, "admin", "andy");
    let bob = issue_token(&db.url, &b, "admin", "bob");
    let server = HttpServer::start(&db.url).await;
    let url = &server.mcp_url;
    let session = session_of(url, &alice).await;

    for (who, token) in [("another tenant", &bob), ("another subject of the tenant", &andy)] {
        let get = raw(reqwest::Method::GET, url, token, Some(&session)).send().await.unwrap();
        assert_eq!(get.status(), 404, "{who}: GET");
        let post = raw(reqwest::Method::POST, url, token, Some(&session)).body(whoami_call(7)).send().await.unwrap();
        assert_eq!(post.status(), 404, "{who}: POST");
        let body = post.text().await.unwrap();
        assert!(body.contains("Session not found") && !body.contains("alice"), "{who}: {body}");
        let delete = raw(reqwest::Method::DELETE, url, token, Some(&session)).send().await.unwrap();
        assert_eq!(delete.status(), 404, "{who}: DELETE");
    }
    // An id that never existed gets the very same answer (no oracle).
    let unknown = raw(reqwest::Method::DELETE, url, &bob, Some("no-such-session")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);

    // The session still serves its owner, also with another token of the same subject.
    for token in [&alice, &alice_again] {
        let r = raw(reqwest::Method::POST, url, token, Some(&session)).body(whoami_call(8)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(text.contains("\"subject\":\"alice\""), "{text}");
    }
    let bye = raw(reqwest::Method::DELETE, url, &alice, Some(&session)).send().await.unwrap();
    assert_eq!(bye.status(), 204, "a successful DELETE answers 204 No Content");
    let after = raw(reqwest::Method::POST, url, &alice, Some(&session)).body(whoami_call(9)).send().await.unwrap();
    assert_eq!(after.status(), 404, "an ended session is gone");
    assert!(server.logs().contains("another principal's session id"), "the attempt is logged");
}

/// Defect 4 (sessions): a principal may hold a bounded number of sessions; the next is refused with a
/// clear 429, other principals are unaffected, and ending one makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_principal_are_bounded() {
    let db = sqlite_db();
    let a = create_tenant(&db.url, "tenant-a");
    let alice = issue_token(&db.url, &a, "admin", "alice");
    let andy = issue_token(&db.url, &a, "admin", "andy");
    let server = HttpServer::start_with(&db.url, &[("MBM_HTTP_MAX_SESSIONS_PER_PRINCIPAL", "2")]).await;
    let url = &server.mcp_url;
    let first = session_of(url, &alice).await;
    let _second = session_of(url, &alice).await;
    let third = open_session(url, &alice).await;
    assert_eq!(third.status(), 429);
    let text = third.text().await.unwrap();
    assert!(text.contains("already has 2 open sessions"), "{text}");
    session_of(url, &andy).await;
    let bye = raw(reqwest::Method::DELETE, url, &alice, Some(&first)).send().await.unwrap();
    assert_eq!(bye.status(), 204);
    session_of(url, &alice).await;
}

/// Defect 4 (subscriptions): URIs are bounded in length and a session in how many it holds; 60 refused
/// subscriptions of 3 MiB each leave the server's memory where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_bounded() {
    use rmcp::model::SubscribeRequestParams;
    let db = sqlite_db();
    let a = create_tenant(&db.url, "tenant-a");
    let alice = issue_token(&db.url, &a, "admin", "alice");
    let server = HttpServer::start(&db.url).await;
    let client = http_client(&server.mcp_url, &alice, Lifecycle::Initialize).await;
    let rss = || rss_kib(server.pid());
    let before = rss();
    let huge = format!("budget://{}", "x".repeat(3 << 20));
    for _ in 0..60 {
        let e = client.subscribe(SubscribeRequestParams::new(huge.clone())).await.unwrap_err().to_string();
        assert!(e.contains("must be at most 512 bytes"), "{}", &e[..e.len().min(300)]);
    }
    let grown = rss().saturating_sub(before);
    assert!(grown < 64 * 1024, "refused subscriptions must not be kept: RSS grew by {grown} KiB");
    for i in 0..100 {
        client.subscribe(SubscribeRequestParams::new(format!("budget://{i}"))).await.unwrap();
    }
    let e = client.subscribe(SubscribeRequestParams::new("budget://one-more")).await.unwrap_err().to_string();
    assert!(e.contains("at most 100 subscriptions"), "{e}");
    // Subscribing again to a URI already held is fine (no new entry).
    client.subscribe(SubscribeRequestParams::new("budget://7")).await.unwrap();
}

/// Resident memory of a process in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Defect 3: denials count against the class's allowance (a denied delete is a modification), and
/// beyond that the audit log holds no more records of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_calls_are_rate_limited_and_bounded_in_the_audit_log() {
    let db = sqlite_db();
    let t = create_tenant(&db.url, "acme");
    let viewer = issue_token(&db.url, &t, "viewer", "vic");
    let server = HttpServer::start_with(&db.url, &[("MBM_MODIFICATIONS_PER_HOUR", "5")]).await;
    let client = http_client(&server.mcp_url, &viewer, Lifecycle::Initialize).await;
    let store = open_store(&db.url).await;
    let audit_before = count(&store, "audit_log", "").await;
    let id = uuid::Uuid::now_v7().to_string();
    let mut answers = Vec::new();
    for _ in 0..60 {
        let e = call_err(&client, "delete_budget", json!({"id": id})).await;
        answers.push(e.split(':').next().unwrap().to_owned());
    }
    assert_eq!(answers.iter().filter(|a| *a == "permission_denied").count(), 5, "{answers:?}");
    assert_eq!(answers.iter().filter(|a| *a == "rate_limited").count(), 55, "{answers:?}");
    assert_eq!(count(&store, "audit_log", "").await, audit_before + 5, "one record per admitted denial");
}

/// Defect 3, with the limits off: a principal's denials are audited up to its allowance, and the rest
/// are summarised in one `denials_suppressed` record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_over_the_audit_allowance_are_summarised() {
    let db = sqlite_db();
    let (client, _logs) = stdio_client(
        &db.url,
        &[("MBM_LOCAL_ROLE", "viewer"), ("MBM_DENIED_AUDITS_PER_HOUR", "3"), ("MBM_DENIAL_SUMMARY_SECS", "1")],
        Lifecycle::Initialize,
    )
    .await;
    for _ in 0..10 {
        call_err(&client, "create_budget", budget_args("nope")).await;
    }
    let store = open_store(&db.url).await;
    assert_eq!(count(&store, "audit_log", "outcome = 'denied' AND action = 'create_budget'").await, 3);
    wait_until(2, "the summary of suppressed denials", || async {
        count(&store, "audit_log", "action = 'denials_suppressed'").await == 1
    })
    .await;
    let summary = count(&store, "audit_log", "action = 'denials_suppressed' AND reason LIKE '7 denied calls%'").await;
    assert_eq!(summary, 1, "the summary counts the 7 unrecorded denials");
    client.cancel().await.unwrap();
}

struct Team {
    server: HttpServer,
    admin: Client,
    manager: Client,
    operator: Client,
    operator_token_id: String,
}

async fn team(db: &TestDb, fake: &crate::support::fake_make::FakeMake) -> Team {
    let tenant = create_tenant(&db.url, "acme");
    let admin_token = issue_token(&db.url, &tenant, "admin", "root");
    let manager_token = issue_token(&db.url, &tenant, "manager", "mia");
    let operator_token = issue_token(&db.url, &tenant, "operator", "otto");
    let listed = cli_ok(&db.url, &["token", "list", "--tenant", "acme"]);
    let operator_token_id = listed
        .lines()
        .find(|l| l.contains("otto"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the operator's token id")
        .to_owned();
    let server = HttpServer::start(&db.url).await;
    let admin = http_client(&server.mcp_url, &admin_token, Lifecycle::Initialize).await;
    let manager = http_client(&server.mcp_url, &manager_token, Lifecycle::Initialize).await;
    let operator = http_client(&server.mcp_url, &operator_token, Lifecycle::Initialize).await;
    call_ok(&admin, "connect_make", connect_args(fake, &[ORG])).await;
    Team { server, admin, manager, operator, operator_token_id }
}

async fn budget_with_threshold(client: &Client, name: &str, percent: i64) -> (Value, Value) {
    let budget = call_ok(
        client,
        "create_budget",
        json!({"name": name, "unit": "credits", "limit": 1_000, "period": {"kind": "monthly"}, "timezone": "UTC",
               "scope": {"organization_id": ORG}}),
    )
    .await;
    let threshold = call_ok(
        client,
        "add_threshold",
        json!({"budget_id": budget["id"], "kind": "percent", "value": percent, "basis": "actual", "severity": "critical"}),
    )
    .await;
    (budget, threshold)
}

fn pause(threshold: &Value, mode: &str) -> Value {
    json!({"threshold_id": threshold["id"], "kind": "pause_scenarios", "selector": {"kind": "top_n", "top_n": 1},
           "mode": mode})
}

fn stops(fake: &crate::support::fake_make::FakeMake) -> usize {
    fake.requests().iter().filter(|r| r.method == "POST" && r.path.ends_with("/stop")).count()
}

mod cases {
    use super::*;

    /// Defect 2: a manager cannot make Make stop scenarios by configuring automation. An automatic pause
    /// action needs the permission it exercises; a manager's approval-bound action creates a plan that waits
    /// for someone who holds it; and when the operator who attached an automatic action loses their token,
    /// its next plan waits for approval instead of running.
    pub async fn automatic_actions_act_only_with_the_rights_of_whoever_configured_them(db: TestDb) {
        let fake = seeded_fake_at(utc_today()).await;
        let t = team(&db, &fake).await;
        let (budget, threshold) = budget_with_threshold(&t.manager, "Manager's budget", 1).await;
        let e = call_err(&t.manager, "add_threshold_action", pause(&threshold, "automatic")).await;
        assert!(
            e.starts_with(
                "permission_denied: this call needs permission `budget:execute_automated_actions`, which role \
                           `manager` does not have"
            ),
            "{e}"
        );
        let store = open_store(&db.url).await;
        assert_eq!(count(&store, "threshold_actions", "").await, 0, "nothing attached");
        assert!(count(&store, "audit_log", "outcome = 'denied' AND action = 'add_threshold_action'").await >= 1);
        // What the manager may attach waits for a principal that holds the permission.
        call_ok(&t.manager, "add_threshold_action", pause(&threshold, "requires_approval")).await;
        call_ok(&t.manager, "sync_usage", json!({})).await;
        let plans = call_ok(&t.manager, "list_actions", json!({"budget_id": budget["id"]})).await;
        assert_eq!(plans["plans"][0]["state"], "awaiting_approval", "{plans}");
        assert_eq!(stops(&fake), 0, "Make received no stop");

        // An operator's automatic action runs...
        let (_, t2) = budget_with_threshold(&t.operator, "Operator's budget", 1).await;
        let action = call_ok(&t.operator, "add_threshold_action", pause(&t2, "automatic")).await;
        assert_eq!(action["created_role"], "operator");
        call_ok(&t.operator, "sync_usage", json!({})).await;
        wait_until(5, "the operator's automatic plan to stop a scenario", || async { stops(&fake) == 1 }).await;

        // ...until the operator's token is revoked: the next crossing's plan waits for approval. The operator
        // attaches the action while the threshold is far away, the admin then lowers the limit.
        let b3 = call_ok(
            &t.operator,
            "create_budget",
            json!({"name": "Later budget", "unit": "credits", "limit": 1_000_000_000, "period": {"kind": "monthly"},
                   "timezone": "UTC", "scope": {"organization_id": ORG}}),
        )
        .await;
        let t3 = call_ok(
            &t.operator,
            "add_threshold",
            json!({"budget_id": b3["id"], "kind": "percent", "value": 50, "basis": "actual", "severity": "critical"}),
        )
        .await;
        call_ok(&t.operator, "add_threshold_action", pause(&t3, "automatic")).await;
        cli_ok(&db.url, &["token", "revoke", &t.operator_token_id]);
        call_ok(&t.admin, "update_budget", json!({"id": b3["id"], "version": 1, "limit": 1})).await;
        call_ok(&t.admin, "sync_usage", json!({})).await;
        let plans = call_ok(&t.admin, "list_actions", json!({"budget_id": b3["id"]})).await;
        let plan = &plans["plans"][0];
        assert_eq!(plan["state"], "awaiting_approval", "{plan}");
        let why = plan["why"].as_str().unwrap();
        assert!(why.contains("Not run automatically") && why.contains("was revoked"), "{why}");
        assert_eq!(stops(&fake), 1, "no second stop");
        drop(t.server);
    }

    /// Defect 2, the other paths: a manager cannot change what an automatic action depends on (the budget's
    /// limit or scope, the threshold's value) or clear a critical mark, and each refusal is audited; a
    /// change that does not touch them (a description) is fine.
    pub async fn configuration_that_automatic_actions_depend_on_needs_their_rights(db: TestDb) {
        let fake = seeded_fake_at(utc_today()).await;
        let t = team(&db, &fake).await;
        call_ok(&t.admin, "sync_usage", json!({})).await;
        let (budget, threshold) = budget_with_threshold(&t.admin, "Guarded", 99).await;
        call_ok(&t.admin, "add_threshold_action", pause(&threshold, "automatic")).await;
        call_ok(&t.admin, "set_scenario_critical", json!({"scenario_id": 501, "critical": true})).await;
        let store = open_store(&db.url).await;
        let denied = count(&store, "audit_log", "outcome = 'denied'").await;
        for (tool, args) in [
            ("update_budget", json!({"id": budget["id"], "version": 1, "limit": 1})),
            (
                "update_budget",
                json!({"id": budget["id"], "version": 1, "scope": {"organization_id": ORG, "team_ids": [16]}}),
            ),
            ("update_threshold", json!({"id": threshold["id"], "version": 1, "value": 1})),
            ("set_scenario_critical", json!({"scenario_id": 501, "critical": false})),
        ] {
            let e = call_err(&t.manager, tool, args).await;
            assert!(
                e.contains("`budget:execute_automated_actions`, which role `manager` does not have"),
                "{tool}: {e}"
            );
        }
        assert_eq!(count(&store, "audit_log", "outcome = 'denied'").await, denied + 4, "each refusal audited");
        let b = call_ok(&t.manager, "get_budget", json!({"id": budget["id"]})).await;
        assert_eq!((b["limit"].as_i64(), b["version"].as_i64()), (Some(1_000), Some(1)), "unchanged");
        let scenarios = call_ok(&t.manager, "list_scenarios", json!({})).await;
        let s501 = scenarios["scenarios"].as_array().unwrap().iter().find(|s| s["scenario_id"] == 501).unwrap().clone();
        assert_eq!(s501["critical"], true, "the mark stays");
        // What does not change the automatic action's effect stays the manager's to change.
        call_ok(&t.manager, "update_budget", json!({"id": budget["id"], "version": 1, "description": "ok"})).await;
        call_ok(&t.manager, "update_threshold", json!({"id": threshold["id"], "version": 1, "label": "fine"})).await;
        call_ok(&t.manager, "set_scenario_critical", json!({"scenario_id": 502, "critical": true})).await;
        call_ok(&t.manager, "set_scenario_critical", json!({"scenario_id": 503, "critical": false})).await;
        // The operator may do what the manager may not.
        call_ok(&t.operator, "update_threshold", json!({"id": threshold["id"], "version": 2, "value": 98})).await;
        drop(t.server);
    }
}

/// Defect 8: a huge argument is refused by its bound without being repeated, and never reaches Make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_inputs_are_refused_without_echo() {
    let db = sqlite_db();
    let fake = seeded_fake().await;
    let (client, _logs) = stdio_client(&db.url, &[], Lifecycle::Initialize).await;
    let huge = "x".repeat(1 << 20);
    for (tool, args) in [
        ("remove_make_connection", json!({"id": huge})),
        (
            "connect_make",
            json!({"zone": huge, "auth_kind": "api_token", "token": MAKE_TOKEN, "organization_ids": [ORG]}),
        ),
        ("get_budget", json!({"id": huge})),
        (
            "create_budget",
            json!({"name": huge, "unit": "credits", "limit": 1, "period": {"kind": "daily"},
                                "scope": {"organization_id": 1}}),
        ),
        ("add_webhook", json!({"url": format!("https://{huge}.example.com/"), "secret": "0123456789abcdef"})),
        ("query_audit_log", json!({"actor": huge})),
        ("get_budget", json!({huge.clone(): 1})),
    ] {
        let e = call_err(&client, tool, args).await;
        assert!(e.len() < 500, "{tool}: error of {} bytes: {}", e.len(), &e[..300]);
        assert!(!e.contains(&"x".repeat(60)), "{tool}: the value is echoed: {e}");
    }
    let e = call_err(&client, "remove_make_connection", json!({"id": huge})).await;
    assert!(e.contains("invalid argument `id`: must be"), "{e}");
    assert!(fake.requests().is_empty(), "nothing reached Make");
    client.cancel().await.unwrap();
}

/// Defect 9 (smaller gaps): parameterless tools refuse unknown fields, a period carries only the fields
/// of its kind, and audit times take RFC 3339 offsets only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smaller_gaps_are_closed() {
    let db = sqlite_db();
    let (client, _logs) = stdio_client(&db.url, &[], Lifecycle::Initialize).await;
    for tool in ["whoami", "list_make_connections", "verify_audit_chain", "create_audit_checkpoint"] {
        let e = call_err(&client, tool, json!({"unexpected": 1})).await;
        assert!(e.contains("unknown field `unexpected`"), "{tool}: {e}");
    }
    let mut monthly = budget_args("Monthly with dates");
    monthly["period"] = json!({"kind": "monthly", "start": "2026-01-01", "end": "2026-01-31"});
    let e = call_err(&client, "create_budget", monthly).await;
    assert!(e.contains("`start` is only allowed with kind custom"), "{e}");
    let e = call_err(&client, "query_audit_log", json!({"since": "2026-11-01T00:00:00+25:00"})).await;
    assert!(e.contains("invalid argument `since`"), "{e}");
    call_ok(&client, "query_audit_log", json!({"since": "2026-11-01T00:00:00+01:00"})).await;
    client.cancel().await.unwrap();
}
