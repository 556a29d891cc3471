//! Operating the HTTP server: rate limits (per tenant and tool class, per IP for failed
//! authentication), Prometheus metrics, request ids in JSON logs, request timeouts, read-only mode,
//! graceful shutdown, and stateless mode with two instances serving one client.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};

on_both_stores!(two_stateless_instances_serve_one_client_alternately);

async fn post_json(url: &str, auth: &str, body: &Value, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("authorization", auth)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string());
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.expect("HTTP request")
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

/// The 101st modification in an hour is refused for the tenant that made 100, with a retry time;
/// another tenant, and the first tenant's reads, are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_101st_modification_is_refused_and_other_tenants_are_unaffected() {
    let db = sqlite_db();
    let a = create_tenant(&db.url, "tenant-a");
    let b = create_tenant(&db.url, "tenant-b");
    let token_a = issue_token(&db.url, &a, "admin", "alice");
    let token_b = issue_token(&db.url, &b, "admin", "bob");
    // The documented defaults, set explicitly (the test harness turns limits off for other tests).
    let server = HttpServer::start_with(
        &db.url,
        &[
            ("MBM_MODIFICATIONS_PER_HOUR", "100"),
            ("MBM_READS_PER_HOUR", "1000"),
            ("MBM_AUTOMATED_ACTIONS_PER_HOUR", "50"),
        ],
    )
    .await;
    let client_a = http_client(&server.mcp_url, &token_a, Lifecycle::Initialize).await;
    let client_b = http_client(&server.mcp_url, &token_b, Lifecycle::Initialize).await;
    let first = call_ok(&client_a, "create_budget", budget_args("Ops")).await;
    let id = first["id"].as_str().unwrap().to_owned();
    let mut version = first["version"].as_i64().unwrap();
    for i in 1..100 {
        let b = call_ok(&client_a, "update_budget", json!({"id": id, "version": version, "limit": 1000 + i})).await;
        version = b["version"].as_i64().unwrap();
    }
    let refused = call(&client_a, "update_budget", json!({"id": id, "version": version, "limit": 5})).await;
    let text = err_text(&refused);
    assert!(
        text.starts_with("rate_limited: this tenant has used its 100 modification calls per hour; retry after "),
        "{text}"
    );
    let secs: u64 = text.rsplit("retry after ").next().unwrap().trim_end_matches(" s").parse().unwrap();
    assert!((1..=36).contains(&secs), "one call comes back every 36 s: {secs}");
    // Nothing was written by the refused call.
    assert_eq!(call_ok(&client_a, "get_budget", json!({"id": id})).await["version"], version);
    // Tenant B's allowance is its own.
    call_ok(&client_b, "create_budget", budget_args("Other")).await;
    let logs = server.logs();
    assert!(logs.contains("rate limited"), "refusals are logged");
}

/// Ten failed authentications a minute from one address are answered 401; the eleventh, and every
/// failed one from that address for a while after it, 429 with Retry-After. A valid token is never
/// refused for its address's failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_limited_per_address() {
    let db = sqlite_db();
    let tenant = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &tenant, "viewer", "v");
    let server = HttpServer::start_with(&db.url, &[("MBM_FAILED_AUTHS_PER_MINUTE", "10")]).await;
    let init: Value = serde_json::from_str(INITIALIZE).unwrap();
    let bad = format!("Bearer mbm_{}", "0".repeat(64));
    for i in 1..=10 {
        assert_eq!(post_json(&server.mcp_url, &bad, &init, &[]).await.status(), 401, "failure {i}");
    }
    let eleventh = post_json(&server.mcp_url, &bad, &init, &[]).await;
    assert_eq!(eleventh.status(), 429);
    let retry: u64 = eleventh.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry), "a cell comes back every 6 s: {retry}");
    let good = post_json(&server.mcp_url, &format!("Bearer {token}"), &init, &[]).await;
    assert_eq!(good.status(), 200, "a valid token passes while the address is refused");
    assert_eq!(
        post_json(&server.mcp_url, &bad, &init, &[]).await.status(),
        429,
        "failures stay refused until the wait is over"
    );
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(
        post_json(&server.mcp_url, &bad, &init, &[]).await.status(),
        401,
        "failures are counted again after Retry-After"
    );
    let good = post_json(&server.mcp_url, &format!("Bearer {token}"), &init, &[]).await;
    assert_eq!(good.status(), 200);
}

/// Only failures are limited: with 2 a minute, the third bad token gets 429, a good token from the same
/// address still works, and the fourth bad one gets 429. Behind a trusted proxy each forwarded client has
/// its own allowance (the right-most untrusted address counts, so a client cannot pick another's); from
/// an untrusted peer the header is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_failed_authentications_are_limited_and_trusted_proxies_name_the_client() {
    let db = sqlite_db();
    let tenant = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &tenant, "viewer", "v");
    let limit = ("MBM_FAILED_AUTHS_PER_MINUTE", "2");
    let envs: [&[(&str, &str)]; 3] = [
        &[limit],
        &[limit, ("MBM_HTTP_TRUSTED_PROXIES", "10.0.0.0/8,127.0.0.1")],
        &[limit, ("MBM_HTTP_TRUSTED_PROXIES", "10.0.0.0/8")],
    ];
    let (direct, proxied, untrusted) = tokio::join!(
        HttpServer::start_with(&db.url, envs[0]),
        HttpServer::start_with(&db.url, envs[1]),
        HttpServer::start_with(&db.url, envs[2]),
    );
    let init: Value = serde_json::from_str(INITIALIZE).unwrap();
    let (bad, good) = (format!("Bearer mbm_{}", "0".repeat(64)), format!("Bearer {token}"));
    let status = |server: &HttpServer, auth: &str, forwarded: Option<&'static str>| {
        let (url, auth, init) = (server.mcp_url.clone(), auth.to_owned(), init.clone());
        async move {
            let extra: Vec<(&str, &str)> = forwarded.map(|f| vec![("x-forwarded-for", f)]).unwrap_or_default();
            post_json(&url, &auth, &init, &extra).await.status().as_u16()
        }
    };

    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(status(&direct, &bad, None).await);
    }
    assert_eq!(seen, [401, 401, 429], "the third failure is over the limit");
    assert_eq!(status(&direct, &good, None).await, 200, "a valid token from the refused address passes");
    assert_eq!(status(&direct, &bad, None).await, 429, "the fourth failure is refused");

    let a = Some("198.51.100.20, 203.0.113.5");
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(status(&proxied, &bad, a).await);
    }
    assert_eq!(seen, [401, 401, 429]);
    assert_eq!(status(&proxied, &good, a).await, 200);
    assert_eq!(status(&proxied, &bad, Some("203.0.113.6")).await, 401, "another client has its own allowance");
    assert_eq!(status(&proxied, &bad, Some("203.0.113.6, 10.1.2.3")).await, 401, "internal hops are skipped");
    assert_eq!(
        status(&proxied, &bad, Some("203.0.113.6, 203.0.113.5")).await,
        429,
        "the right-most untrusted address counts, not one the client wrote further left"
    );
    assert_eq!(status(&proxied, &bad, None).await, 401, "the proxy's own address has its own allowance");
    assert!(proxied.logs().contains("203.0.113.5"), "the refused client's address is logged");

    let mut seen = Vec::new();
    for f in ["203.0.113.7", "203.0.113.8", "203.0.113.9"] {
        seen.push(status(&untrusted, &bad, Some(f)).await);
    }
    assert_eq!(seen, [401, 401, 429], "from an untrusted peer the header is ignored: one address");
}

/// Parse Prometheus text exposition into `name{labels}` → value.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad metrics line {l:?}"));
            (key.to_owned(), value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {l:?}")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_by_tool_and_outcome_and_time_them() {
    let db = sqlite_db();
    let tenant = create_tenant(&db.url, "acme");
    let admin = issue_token(&db.url, &tenant, "admin", "alice");
    let viewer = issue_token(&db.url, &tenant, "viewer", "vic");
    let server = HttpServer::start(&db.url).await;
    let client = http_client(&server.mcp_url, &admin, Lifecycle::Initialize).await;
    for i in 0..3 {
        call_ok(&client, "create_budget", budget_args(&format!("B{i}"))).await;
    }
    let missing = call(&client, "get_budget", json!({"id": uuid::Uuid::now_v7().to_string()})).await;
    assert_eq!(missing.is_error, Some(true));
    let viewer_client = http_client(&server.mcp_url, &viewer, Lifecycle::Initialize).await;
    assert_eq!(call(&viewer_client, "create_budget", budget_args("No")).await.is_error, Some(true));
    let bad = post_json(&server.mcp_url, "Bearer nope", &serde_json::from_str(INITIALIZE).unwrap(), &[]).await;
    assert_eq!(bad.status(), 401);

    let resp = reqwest::get(format!("{}/metrics", server.base)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    let m = parse_metrics(&text);
    let get = |k: &str| m.get(k).copied().unwrap_or_else(|| panic!("no {k} in\n{text}"));
    assert_eq!(get(r#"mbm_tool_calls_total{tool="create_budget",outcome="ok"}"#), 3.0);
    assert_eq!(get(r#"mbm_tool_calls_total{tool="get_budget",outcome="error"}"#), 1.0);
    assert_eq!(get(r#"mbm_tool_calls_total{tool="create_budget",outcome="denied"}"#), 1.0);
    assert_eq!(get(r#"mbm_tool_call_duration_seconds_count{tool="create_budget"}"#), 4.0);
    assert!(get(r#"mbm_tool_call_duration_seconds_sum{tool="create_budget"}"#) > 0.0);
    assert_eq!(get(r#"mbm_tool_call_duration_seconds_bucket{tool="create_budget",le="+Inf"}"#), 4.0);
    // Three budgets and one audited denial.
    assert_eq!(get("mbm_audit_append_duration_seconds_count"), 4.0);
    assert_eq!(get("mbm_auth_failures_total"), 1.0);
    assert!(text.contains("# HELP mbm_tool_calls_total"), "metrics are described");
    assert!(!text.contains(&tenant), "no tenant ids in metrics");
}

/// Make API calls are counted by outcome; a call in flight when SIGTERM arrives is answered before the
/// process exits, cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_completes_an_in_flight_call_and_make_calls_are_measured() {
    let db = sqlite_db();
    let fake = seeded_fake().await;
    let tenant = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &tenant, "admin", "alice");
    let mut server = HttpServer::start_with(&db.url, &[("MBM_EVALUATE_INTERVAL_SECS", "0")]).await;
    let client = http_client(&server.mcp_url, &token, Lifecycle::Initialize).await;
    call_ok(&client, "connect_make", connect_args(&fake, &[ORG])).await;
    let m = parse_metrics(&reqwest::get(format!("{}/metrics", server.base)).await.unwrap().text().await.unwrap());
    assert!(m[r#"mbm_make_api_requests_total{outcome="ok"}"#] >= 1.0, "connect_make called Make");

    fake.clear_requests();
    fake.inject("/", crate::support::fake_make::Fault::Delay(Duration::from_secs(2)), 1);
    let peer = client.peer().clone();
    let in_flight = tokio::spawn(async move { call(&peer, "sync_usage", json!({})).await });
    // Wait until the call is inside Make's (delayed) answer, then ask the server to stop.
    tokio::time::timeout(Duration::from_secs(20), async {
        while fake.requests().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("sync_usage reached Make");
    let status = server.terminate().await;
    let result = in_flight.await.unwrap();
    assert_ne!(result.is_error, Some(true), "the in-flight call finished: {}", text_of(&result));
    assert!(ok_json(&result)["organizations"].is_array() || !text_of(&result).is_empty());
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    let logs = server.logs();
    assert!(logs.contains("finishing in-flight calls"), "{logs}");
    // The sync was committed and audited before the exit.
    let store = open_store(&db.url).await;
    assert_eq!(count(&store, "audit_log", "action = 'sync_usage' AND outcome = 'success'").await, 1);
    store.close().await;
}

/// A client's `x-request-id` is echoed, appears in the JSON log lines of its tool call and in the
/// audit record; without one the server makes one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_reach_json_logs_and_audit_records() {
    let db = sqlite_db();
    let tenant = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &tenant, "admin", "alice");
    let server = HttpServer::start_with(&db.url, &[("MBM_LOG_FORMAT", "json"), ("MBM_HTTP_STATELESS", "true")]).await;
    let auth = format!("Bearer {token}");
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "create_budget", "arguments": budget_args("Traced")}});
    let resp = post_json(&server.mcp_url, &auth, &call, &[("x-request-id", "trace-abc.123")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "trace-abc.123");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["result"]["isError"], false, "{body}");

    let generated = post_json(&server.mcp_url, &auth, &serde_json::from_str(INITIALIZE).unwrap(), &[]).await;
    let id = generated.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "a UUID when the client sends none: {id}");
    let hostile =
        post_json(&server.mcp_url, &auth, &serde_json::from_str(INITIALIZE).unwrap(), &[("x-request-id", "a b\"c")])
            .await;
    assert_ne!(hostile.headers()["x-request-id"], "a b\"c", "implausible ids are replaced");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = server.logs();
    let tool_line = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "tool call" && v["tool"] == "create_budget")
        .unwrap_or_else(|| panic!("a JSON 'tool call' line:\n{logs}"));
    assert_eq!(tool_line["request_id"], "trace-abc.123");
    let http_line = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "http request" && v["span"]["request_id"] == "trace-abc.123")
        .unwrap_or_else(|| panic!("a JSON 'http request' line in the request's span:\n{logs}"));
    assert_eq!(http_line["status"], 200);
    let store = open_store(&db.url).await;
    assert_eq!(count(&store, "audit_log", "action = 'create_budget' AND request_id = 'trace-abc.123'").await, 1);
    store.close().await;
}

/// Origin validation (DNS-rebinding protection): an allowed Origin passes, any other is refused with
/// 403 before authentication matters, and a request without one (a non-browser client) passes; by
/// default only loopback origins are allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_are_validated() {
    let db = sqlite_db();
    let tenant = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &tenant, "viewer", "v");
    let auth = format!("Bearer {token}");
    let init: Value = serde_json::from_str(INITIALIZE).unwrap();
    let default = HttpServer::start(&db.url).await;
    let status = |url: String, origin: Option<&'static str>| {
        let (auth, init) = (auth.clone(), init.clone());
        async move {
            match origin {
                Some(o) => post_json(&url, &auth, &init, &[("origin", o)]).await.status(),
                None => post_json(&url, &auth, &init, &[]).await.status(),
            }
        }
    };
    assert_eq!(status(default.mcp_url.clone(), Some("http://localhost:5173")).await, 200);
    assert_eq!(status(default.mcp_url.clone(), Some("https://evil.example")).await, 403);
    assert_eq!(status(default.mcp_url.clone(), None).await, 200);

    let configured = HttpServer::start_with(&db.url, &[("MBM_ALLOWED_ORIGINS", "https://app.example.com")]).await;
    assert_eq!(status(configured.mcp_url.clone(), Some("https://app.example.com")).await, 200);
    assert_eq!(status(configured.mcp_url.clone(), Some("http://localhost:5173")).await, 403);
    assert_eq!(status(configured.mcp_url.clone(), Some("https://app.example.com.evil.example")).await, 403);
    assert_eq!(status(configured.mcp_url.clone(), None).await, 200);
    assert!(configured.logs().contains("disallowed Origin"), "refusals are logged");
}

/// A body that does not arrive in time gets 408 and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_body_times_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = sqlite_db();
    let tenant = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &tenant, "admin", "alice");
    let server = HttpServer::start_with(&db.url, &[("MBM_HTTP_REQUEST_TIMEOUT_SECS", "1")]).await;
    let authority = server.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: 1000\r\n\r\n{{\"jsonrpc\":"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server answers without waiting for the rest of the body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 1 s"), "{answer}");
}

/// `--read-only` lists and serves only read tools; everything else is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mode_serves_only_read_tools() {
    let db = sqlite_db();
    let tenant = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &tenant, "admin", "alice");
    let server = HttpServer::start_with(&db.url, &[("MBM_READ_ONLY", "true")]).await;
    let client = http_client(&server.mcp_url, &token, Lifecycle::Initialize).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.len() >= 15, "read tools are served: {}", tools.len());
    for t in &tools {
        assert_eq!(t.annotations.as_ref().and_then(|a| a.read_only_hint), Some(true), "{} is not a read tool", t.name);
    }
    assert!(tools.iter().any(|t| t.name == "get_budget_status"));
    let refused = client
        .call_tool(
            rmcp::model::CallToolRequestParams::new("create_budget")
                .with_arguments(budget_args("Nope").as_object().unwrap().clone()),
        )
        .await;
    assert!(refused.is_err(), "create_budget does not exist in read-only mode: {refused:?}");
    assert!(call_ok(&client, "list_budgets", json!({})).await["budgets"].as_array().unwrap().is_empty());
    let store = open_store(&db.url).await;
    assert_eq!(count(&store, "budgets", "").await, 0);
    store.close().await;
    assert!(server.logs().contains("read-only mode"));
}

mod cases {
    use super::*;

    /// Two instances on one database, no sessions: one client's calls go to each in turn and every call
    /// sees the previous one's effect.
    pub async fn two_stateless_instances_serve_one_client_alternately(db: TestDb) {
        let tenant = create_tenant(&db.url, "acme");
        let token = issue_token(&db.url, &tenant, "admin", "alice");
        let env = [("MBM_HTTP_STATELESS", "true"), ("MBM_EVALUATE_INTERVAL_SECS", "0")];
        let a = HttpServer::start_with(&db.url, &env).await;
        let b = HttpServer::start_with(&db.url, &env).await;
        let urls = [a.mcp_url.as_str(), b.mcp_url.as_str()];
        let auth = format!("Bearer {token}");

        let init = post_json(urls[0], &auth, &serde_json::from_str(INITIALIZE).unwrap(), &[]).await;
        assert_eq!(init.status(), 200);
        assert!(init.headers().get("mcp-session-id").is_none(), "stateless: no session");
        let init: Value = init.json().await.unwrap();
        assert_eq!(init["result"]["serverInfo"]["name"], "make-budget-mcp");

        let mut next_id = 10;
        let mut tool = |name: &str, args: Value| {
            next_id += 1;
            json!({"jsonrpc": "2.0", "id": next_id, "method": "tools/call",
                   "params": {"name": name, "arguments": args}})
        };
        let result = |v: Value| -> Value {
            assert_eq!(v["result"]["isError"], false, "{v}");
            v["result"]["structuredContent"].clone()
        };
        let created: Value =
            post_json(urls[1], &auth, &tool("create_budget", budget_args("Shared")), &[]).await.json().await.unwrap();
        let created = result(created);
        let id = created["id"].as_str().unwrap().to_owned();
        let mut version = created["version"].as_i64().unwrap();
        for (i, url) in urls.iter().cycle().take(6).enumerate() {
            let got: Value =
                post_json(url, &auth, &tool("get_budget", json!({"id": id})), &[]).await.json().await.unwrap();
            assert_eq!(result(got)["version"].as_i64(), Some(version), "instance {} sees the last change", i % 2);
            let updated: Value = post_json(
                url,
                &auth,
                &tool("update_budget", json!({"id": id, "version": version, "limit": 2000 + i})),
                &[],
            )
            .await
            .json()
            .await
            .unwrap();
            version = result(updated)["version"].as_i64().unwrap();
        }
        assert_eq!(version, 7);
        let store = open_store(&db.url).await;
        assert_eq!(count(&store, "audit_log", "action = 'update_budget'").await, 6);
        assert!(store.verify_audit(None).await.unwrap().is_valid(), "both instances appended to one chain");
        store.close().await;
        for s in [&a, &b] {
            assert!(s.logs().contains("tool call"), "each instance served calls");
        }
    }
}

/// Read from a raw connection until the server closes it (EOF or reset); how long that took, and what it
/// sent. Gives up after 5 s (the server is then holding the connection).
async fn until_closed(conn: &mut tokio::net::TcpStream) -> (Duration, String) {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server still holds the connection after 5 s: {}", String::from_utf8_lossy(&got));
    (started.elapsed(), String::from_utf8_lossy(&got).into_owned())
}

/// Slow or silent clients are disconnected: half a request line and then nothing, nothing at all, and a
/// kept-alive connection that goes quiet after its response, each within about a second (the timeouts
/// are set to 1 s here; the defaults are 10 s for the head and 60 s idle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_connections_are_closed_after_the_header_and_idle_timeouts() {
    use tokio::io::AsyncWriteExt;
    let db = sqlite_db();
    let server = HttpServer::start_with(
        &db.url,
        &[("MBM_HTTP_HEADER_READ_TIMEOUT_SECS", "1"), ("MBM_HTTP_IDLE_TIMEOUT_SECS", "1")],
    )
    .await;
    let authority = server.base.trim_start_matches("http://").to_owned();
    let connect = || tokio::net::TcpStream::connect(authority.clone());
    let (mut half, mut silent, mut kept) =
        (connect().await.unwrap(), connect().await.unwrap(), connect().await.unwrap());
    half.write_all(b"POST /mcp HTT").await.unwrap();
    kept.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes()).await.unwrap();
    let ((half_after, _), (silent_after, _), (kept_after, kept_got)) =
        tokio::join!(until_closed(&mut half), until_closed(&mut silent), until_closed(&mut kept));
    for (what, after) in
        [("half a request line", half_after), ("nothing", silent_after), ("idle keep-alive", kept_after)]
    {
        assert!(
            after >= Duration::from_millis(800) && after < Duration::from_millis(2500),
            "{what}: closed after {after:?}"
        );
    }
    assert!(kept_got.starts_with("HTTP/1.1 200"), "the kept-alive connection was served first: {kept_got}");
    // The server itself is fine.
    assert!(reqwest::get(format!("{}/healthz", server.base)).await.unwrap().status().is_success());
}

/// Idle connections do not keep a new client out: with 50 silent connections open the next client is
/// served at once; with `http.max_connections` taken by silent connections the next one waits in the
/// backlog and is served as soon as the header timeout frees a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_keep_new_clients_out() {
    let db = sqlite_db();
    cli_ok(&db.url, &["migrate"]); // before two servers start on the one database
    let timeout = ("MBM_HTTP_HEADER_READ_TIMEOUT_SECS", "1");
    let envs: [&[(&str, &str)]; 2] = [&[timeout], &[timeout, ("MBM_HTTP_MAX_CONNECTIONS", "4")]];
    let (roomy, full) =
        tokio::join!(HttpServer::start_with(&db.url, envs[0]), HttpServer::start_with(&db.url, envs[1]));
    let idle = |server: &HttpServer, n: usize| {
        let authority = server.base.trim_start_matches("http://").to_owned();
        async move {
            let mut conns = Vec::new();
            for _ in 0..n {
                conns.push(tokio::net::TcpStream::connect(&authority).await.unwrap());
            }
            conns
        }
    };
    let healthz = |server: &HttpServer| {
        let url = format!("{}/healthz", server.base);
        async move {
            let started = std::time::Instant::now();
            let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            let status = client.get(url).send().await.expect("served").status();
            (status, started.elapsed())
        }
    };
    let _held = idle(&roomy, 50).await;
    let (status, took) = healthz(&roomy).await;
    assert!(status.is_success() && took < Duration::from_millis(900), "served at once beside 50 idle ones: {took:?}");

    let mut held = idle(&full, 4).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, took) = healthz(&full).await;
    assert!(status.is_success(), "the fifth client is served");
    assert!(took >= Duration::from_millis(500), "it waited for a slot ({took:?}): the limit holds");
    assert!(took < Duration::from_millis(2500), "and got one when the header timeout closed a silent one: {took:?}");
    let (_, got) = until_closed(&mut held[0]).await;
    assert!(!got.starts_with("HTTP/1.1 2"), "the silent connections were closed, not served: {got}");
    assert!(full.logs().contains("every HTTP connection slot is taken"), "{}", full.logs());
}
