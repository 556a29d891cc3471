//! Resources, resource subscriptions, prompts, completion and logging, as an MCP client sees them: the
//! real binary over streamable HTTP (bearer tokens, and `--no-auth` on loopback) and over stdio.
#![allow(deprecated)] // logging and resources/subscribe are deprecated in MCP 2026-07-28 but still served.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use rmcp::model::{
    LoggingLevel, LoggingMessageNotificationParam, ReadResourceRequestParams, ResourceContents,
    ResourceUpdatedNotificationParam, SetLevelRequestParams, SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ErrorData, RoleClient, ServiceError};
use serde_json::{Value, json};

/// A client that records resource-updated and log notifications.
#[derive(Clone, Default)]
struct Recorder {
    updated: Arc<Mutex<Vec<String>>>,
    logs: Arc<Mutex<Vec<LoggingMessageNotificationParam>>>,
}

impl rmcp::ClientHandler for Recorder {
    async fn on_resource_updated(&self, p: ResourceUpdatedNotificationParam, _: NotificationContext<RoleClient>) {
        self.updated.lock().unwrap().push(p.uri);
    }
    async fn on_logging_message(&self, p: LoggingMessageNotificationParam, _: NotificationContext<RoleClient>) {
        self.logs.lock().unwrap().push(p);
    }
}

type Recording = RunningService<RoleClient, Recorder>;

async fn recording_client(mcp_url: &str, token: Option<&str>) -> (Recording, Recorder) {
    let mut config = StreamableHttpClientTransportConfig::with_uri(mcp_url.to_owned());
    if let Some(t) = token {
        config = config.auth_header(t.to_owned());
    }
    let recorder = Recorder::default();
    let client = recorder
        .clone()
        .serve_with_lifecycle(StreamableHttpClientTransport::from_config(config), ClientLifecycleMode::Initialize)
        .await
        .expect("connect MCP client over HTTP");
    (client, recorder)
}

async fn read(client: &Recording, uri: &str) -> Result<Value, ServiceError> {
    let r = client.read_resource(ReadResourceRequestParams::new(uri)).await?;
    match &r.contents[..] {
        [ResourceContents::TextResourceContents { text, uri: u, mime_type, .. }] => {
            assert_eq!((u.as_str(), mime_type.as_deref()), (uri, Some("application/json")));
            Ok(serde_json::from_str(text).expect("resource text is JSON"))
        }
        other => panic!("unexpected contents {other:?}"),
    }
}

fn mcp_error(e: ServiceError) -> ErrorData {
    match e {
        ServiceError::McpError(e) => e,
        other => panic!("expected an MCP error, got {other}"),
    }
}

/// Wait until `f` holds, or panic after 5 s.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_tenant_scoped_paged_and_permission_checked() {
    let db = sqlite_db();
    let (acme, other) = (create_tenant(&db.url, "acme"), create_tenant(&db.url, "other"));
    let admin = issue_token(&db.url, &acme, "admin", "alice");
    let viewer = issue_token(&db.url, &acme, "viewer", "victor");
    let outsider = issue_token(&db.url, &other, "admin", "oscar");
    let server = HttpServer::start(&db.url).await;
    let (a, _) = recording_client(&server.mcp_url, Some(&admin)).await;
    let (o, _) = recording_client(&server.mcp_url, Some(&outsider)).await;

    let mut ids = Vec::new();
    for i in 0..101 {
        ids.push(
            call_ok(&a, "create_budget", budget_args(&format!("Bulk {i:03}"))).await["id"].as_str().unwrap().to_owned(),
        );
    }
    let foreign = call_ok(&o, "create_budget", budget_args("Theirs")).await["id"].as_str().unwrap().to_owned();

    // Pages of 50 budgets; the audit head only on the first page, and only for audit readers.
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page =
            a.list_resources(Some(rmcp::model::PaginatedRequestParams::default().with_cursor(cursor))).await.unwrap();
        pages += 1;
        seen.extend(page.resources.iter().map(|r| r.uri.clone()));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen[0], "audit://head");
    let mut expected: Vec<String> = ids.iter().map(|id| format!("budget://{id}")).collect();
    expected.sort();
    assert_eq!(seen[1..], expected[..], "every budget of the tenant, once, and nothing of the other tenant");

    // A budget resource is the budget plus the status get_budget_status computes.
    let body = read(&a, &format!("budget://{}", ids[0])).await.unwrap();
    assert_eq!(body["budget"]["id"], ids[0].as_str());
    let status = call_ok(&a, "get_budget_status", json!({"id": ids[0]})).await;
    assert_eq!(body["status"]["budget_id"], status["budget_id"]);
    assert_eq!(
        (body["status"]["limit"].clone(), body["status"]["spent"].clone()),
        (status["limit"].clone(), status["spent"].clone())
    );

    // Foreign, malformed and unknown URIs are all just "not found".
    for uri in [format!("budget://{foreign}"), "budget://not-a-uuid".into(), "nothing://here".into()] {
        let e = mcp_error(read(&a, &uri).await.unwrap_err());
        assert_eq!(e.code, rmcp::model::ErrorCode::RESOURCE_NOT_FOUND, "{uri}: {e:?}");
    }

    let head = read(&a, "audit://head").await.unwrap();
    assert!(head["seq"].as_i64().unwrap() >= 101 && head["hash"].as_str().unwrap().len() == 64, "{head}");

    let templates = a.list_resource_templates(None).await.unwrap();
    assert_eq!(templates.resource_templates[0].uri_template, "budget://{id}");

    // A viewer reads budgets but not the audit head, and does not see it listed.
    let (v, _) = recording_client(&server.mcp_url, Some(&viewer)).await;
    let first = v.list_resources(None).await.unwrap();
    assert!(first.resources.iter().all(|r| r.uri != "audit://head"));
    read(&v, &format!("budget://{}", ids[1])).await.unwrap();
    let e = mcp_error(read(&v, "audit://head").await.unwrap_err());
    assert!(e.message.contains("budget:audit_read"), "{e:?}");

    // Completion: by name prefix (case-insensitive) and by id prefix, at most 100 with hasMore.
    let c = a.complete_prompt_argument("review_budget", "budget_id", "bULK", None).await.unwrap();
    assert_eq!((c.values.len(), c.has_more), (100, Some(true)));
    let c = a.complete_resource_argument("budget://{id}", "id", &ids[7][..30], None).await.unwrap();
    assert_eq!(c.values, vec![ids[7].clone()]);
    let c = o.complete_prompt_argument("review_budget", "budget_id", "bulk", None).await.unwrap();
    assert!(c.values.is_empty(), "completion never offers another tenant's budgets");
    let c = a.complete_prompt_argument("no_such_prompt", "x", "", None).await.unwrap();
    assert!(c.values.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_are_told_when_a_budget_changes_in_another_session() {
    let db = sqlite_db();
    let acme = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &acme, "admin", "alice");
    let server = HttpServer::start(&db.url).await;
    let (watcher, seen) = recording_client(&server.mcp_url, Some(&token)).await;
    let (writer, _) = recording_client(&server.mcp_url, Some(&token)).await;
    let b1 = call_ok(&writer, "create_budget", budget_args("Watched")).await;
    let b2 = call_ok(&writer, "create_budget", budget_args("Unwatched")).await;
    let (id1, id2) = (b1["id"].as_str().unwrap().to_owned(), b2["id"].as_str().unwrap().to_owned());
    let uri1 = format!("budget://{id1}");
    watcher.subscribe(SubscribeRequestParams::new(uri1.clone())).await.unwrap();

    call_ok(&writer, "update_budget", json!({"id": id2, "version": 1, "limit": 5})).await;
    call_ok(&writer, "update_budget", json!({"id": id1, "version": 1, "limit": 7})).await;
    eventually("the update notification", || seen.updated.lock().unwrap().contains(&uri1)).await;
    assert_eq!(*seen.updated.lock().unwrap(), vec![uri1.clone()], "only the subscribed budget is announced");

    // A threshold belongs to its budget: adding one is a change of the budget.
    call_ok(
        &writer,
        "add_threshold",
        json!({"budget_id": id1, "kind": "percent", "value": 80, "basis": "actual", "severity": "warning"}),
    )
    .await;
    eventually("the threshold notification", || seen.updated.lock().unwrap().len() == 2).await;

    watcher.unsubscribe(UnsubscribeRequestParams::new(uri1.clone())).await.unwrap();
    call_ok(&writer, "update_budget", json!({"id": id1, "version": 2, "limit": 9})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(seen.updated.lock().unwrap().len(), 2, "no notification after unsubscribing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_embed_the_status_and_validate_their_argument() {
    let db = sqlite_db();
    let (acme, other) = (create_tenant(&db.url, "acme"), create_tenant(&db.url, "other"));
    let token = issue_token(&db.url, &acme, "manager", "mia");
    let outsider = issue_token(&db.url, &other, "admin", "oscar");
    let server = HttpServer::start(&db.url).await;
    let (c, _) = recording_client(&server.mcp_url, Some(&token)).await;
    let (o, _) = recording_client(&server.mcp_url, Some(&outsider)).await;
    let id = call_ok(&c, "create_budget", budget_args("Marketing")).await["id"].as_str().unwrap().to_owned();

    let list = c.list_prompts(None).await.unwrap();
    let names: Vec<_> = list.prompts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["investigate_overrun", "review_budget"]);
    for p in &list.prompts {
        let args = p.arguments.as_ref().unwrap();
        assert_eq!((args[0].name.as_str(), args[0].required), ("budget_id", Some(true)), "{}", p.name);
        assert!(p.description.as_deref().is_some_and(|d| d.len() > 40));
    }

    for name in ["review_budget", "investigate_overrun"] {
        let args = json!({"budget_id": id}).as_object().unwrap().clone();
        let r = c.get_prompt(rmcp::model::GetPromptRequestParams::new(name).with_arguments(args)).await.unwrap();
        let text = match &r.messages[0].content {
            rmcp::model::ContentBlock::Text(t) => t.text.clone(),
            other => panic!("{other:?}"),
        };
        assert!(text.contains("\"Marketing\"") && text.contains(&format!("\"budget_id\": \"{id}\"")), "{text}");
        assert!(text.contains("get_scenario_usage") || text.contains("get_budget_history"), "{text}");
    }

    let bad = json!({"budget_id": "nope"}).as_object().unwrap().clone();
    let e = mcp_error(
        c.get_prompt(rmcp::model::GetPromptRequestParams::new("review_budget").with_arguments(bad)).await.unwrap_err(),
    );
    assert!(e.message.contains("budget_id") && e.message.contains("UUID"), "{e:?}");
    let e = mcp_error(c.get_prompt(rmcp::model::GetPromptRequestParams::new("review_budget")).await.unwrap_err());
    assert!(e.message.contains("budget_id"), "{e:?}");
    let theirs = json!({"budget_id": id}).as_object().unwrap().clone();
    let e = mcp_error(
        o.get_prompt(rmcp::model::GetPromptRequestParams::new("review_budget").with_arguments(theirs))
            .await
            .unwrap_err(),
    );
    assert!(e.message.contains("not found"), "another tenant's budget is not found: {e:?}");
}

/// Log messages: none until a level is set, then only the session's own events at or above it.
async fn check_logging(client: &Recording, seen: &Recorder) {
    call_ok(client, "whoami", json!({})).await;
    client.set_level(SetLevelRequestParams::new(LoggingLevel::Warning)).await.unwrap();
    call_ok(client, "whoami", json!({})).await;
    call_err(client, "get_budget", json!({"id": "not-a-uuid"})).await;
    eventually("the warning", || !seen.logs.lock().unwrap().is_empty()).await;
    client.set_level(SetLevelRequestParams::new(LoggingLevel::Info)).await.unwrap();
    call_ok(client, "list_budgets", json!({})).await;
    eventually("the info message", || seen.logs.lock().unwrap().len() == 2).await;
    let logs = seen.logs.lock().unwrap().clone();
    assert_eq!(logs[0].level, LoggingLevel::Warning);
    assert_eq!((logs[0].data["tool"].as_str(), logs[0].data["outcome"].as_str()), (Some("get_budget"), Some("error")));
    assert_eq!(logs[1].level, LoggingLevel::Info);
    assert_eq!((logs[1].data["tool"].as_str(), logs[1].data["outcome"].as_str()), (Some("list_budgets"), Some("ok")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_messages_follow_the_session_level_over_http_and_stdio() {
    let db = sqlite_db();
    let acme = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &acme, "admin", "alice");
    let server = HttpServer::start(&db.url).await;
    let (c, seen) = recording_client(&server.mcp_url, Some(&token)).await;
    let (quiet, quiet_seen) = recording_client(&server.mcp_url, Some(&token)).await;
    quiet.set_level(SetLevelRequestParams::new(LoggingLevel::Debug)).await.unwrap();
    check_logging(&c, &seen).await;
    assert!(quiet_seen.logs.lock().unwrap().is_empty(), "a session never gets another session's events");

    let mut cmd = tokio::process::Command::new(bin());
    cmd.arg("serve").env("MBM_DATABASE_URL", &db.url).env("MBM_CONFIG", "/dev/null").env("MBM_LOG", "warn");
    let (transport, _) = TokioChildProcess::builder(cmd).stderr(Stdio::null()).spawn().unwrap();
    let seen = Recorder::default();
    let c = seen.clone().serve_with_lifecycle(transport, ClientLifecycleMode::Initialize).await.unwrap();
    check_logging(&c, &seen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auth_serves_the_local_operator_on_loopback_only() {
    let db = sqlite_db();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(bin())
            .args(["serve", "--transport", "http", "--no-auth", "--listen", "0.0.0.0:0"])
            .env("MBM_DATABASE_URL", &db.url)
            .env("MBM_CONFIG", "/dev/null")
            .output(),
    )
    .await
    .expect("refusal is immediate")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("needs a loopback `http.listen` address") && stderr.contains("0.0.0.0:0"), "{stderr}");
    assert_eq!(cli_ok(&db.url, &["tenant", "list"]).trim(), "", "nothing was created before refusing");

    let server = HttpServer::start_with(
        &db.url,
        &[("MBM_HTTP_NO_AUTH", "true"), ("MBM_LOCAL_SUBJECT", "ops"), ("MBM_LOCAL_TENANT", "home")],
    )
    .await;
    assert!(server.logs().contains("authentication is OFF"), "{}", server.logs());
    let (c, _) = recording_client(&server.mcp_url, None).await;
    let me = call_ok(&c, "whoami", json!({})).await;
    assert_eq!(
        (me["subject"].as_str(), me["tenant_name"].as_str(), me["transport"].as_str()),
        (Some("ops"), Some("home"), Some("http_no_auth"))
    );
    let id = call_ok(&c, "create_budget", budget_args("Local")).await["id"].as_str().unwrap().to_owned();
    let body = read(&c, &format!("budget://{id}")).await.unwrap();
    assert_eq!(body["budget"]["created_by"], "ops");
    let log = call_ok(&c, "query_audit_log", json!({"tool": "create_budget"})).await;
    assert_eq!(log["records"][0]["actor"]["transport"], "http_no_auth", "{log}");
}
