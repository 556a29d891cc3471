//! The real binary over stdio, as Claude Desktop runs it, driven by rmcp's client: both lifecycles, the
//! tool catalogue an agent sees, the local operator principal, bad input, and stdout purity.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use crate::support::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_lifecycle_over_stdio_in_both_lifecycles() {
    let db = sqlite_db();
    for lifecycle in [Lifecycle::Initialize, Lifecycle::Discover] {
        let (client, _logs) = stdio_client(&db.url, &[("MBM_LOCAL_SUBJECT", "desk-user")], lifecycle).await;
        assert_eq!(client.peer_info().unwrap().protocol_version, lifecycle.expected_version());

        let me = call_ok(&client, "whoami", json!({})).await;
        assert_eq!((me["tenant_name"].as_str(), me["role"].as_str()), (Some("local"), Some("admin")));
        assert_eq!((me["subject"].as_str(), me["transport"].as_str()), (Some("desk-user"), Some("stdio")));
        assert_eq!(me["permissions"].as_array().unwrap().len(), 9);

        let name = format!("Team budget {lifecycle:?}");
        let mut args = budget_args(&name);
        args["period"] = json!({"kind": "custom", "start": "2026-01-01", "end": "2026-03-31"});
        let b = call_ok(&client, "create_budget", args).await;
        let id = b["id"].as_str().unwrap();
        assert_eq!(b["period"], json!({"kind": "custom", "start": "2026-01-01", "end": "2026-03-31"}));
        let v2 = call_ok(&client, "update_budget", json!({"id": id, "version": 1, "active": false})).await;
        assert_eq!((v2["active"].as_bool(), v2["version"].as_i64()), (Some(false), Some(2)));
        let inactive = call_ok(&client, "list_budgets", json!({"active": false})).await;
        assert!(inactive["budgets"].as_array().unwrap().iter().any(|x| x["id"] == id));
        call_ok(&client, "delete_budget", json!({"id": id})).await;
        client.cancel().await.unwrap();
    }
    // The local tenant was created once, on the first run, and everything was audited.
    let store = open_store(&db.url).await;
    assert_eq!(count(&store, "tenants", "").await, 1);
    assert_eq!(count(&store, "audit_log", "action = 'tenant_create'").await, 1);
    assert_eq!(count(&store, "audit_log", "actor_transport = 'stdio' AND actor_subject = 'desk-user'").await, 7);
    assert!(store.verify_audit(None).await.unwrap().is_valid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_catalogue_has_schemas_with_bounds_and_honest_annotations() {
    let db = sqlite_db();
    let (client, _logs) = stdio_client(&db.url, &[], Lifecycle::Initialize).await;
    let tools = client.list_all_tools().await.unwrap();
    let by_name = |n: &str| tools.iter().find(|t| t.name == n).unwrap_or_else(|| panic!("no tool {n}"));
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "add_threshold",
            "add_threshold_action",
            "add_webhook",
            "approve_action",
            "cancel_action",
            "connect_make",
            "create_audit_checkpoint",
            "create_budget",
            "delete_budget",
            "forecast_spend",
            "get_action",
            "get_budget",
            "get_budget_chart",
            "get_budget_history",
            "get_budget_status",
            "get_scenario_usage",
            "list_actions",
            "list_budgets",
            "list_make_connections",
            "list_scenarios",
            "list_threshold_actions",
            "list_thresholds",
            "list_webhooks",
            "pause_scenarios",
            "preview_action",
            "query_audit_log",
            "reject_action",
            "remove_make_connection",
            "remove_threshold",
            "remove_threshold_action",
            "remove_webhook",
            "resume_scenarios",
            "reverse_action",
            "set_scenario_critical",
            "sync_usage",
            "update_budget",
            "update_threshold",
            "verify_audit_chain",
            "whoami"
        ]
    );

    let hints = |n: &str| {
        let a = by_name(n).annotations.clone().unwrap();
        (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint)
    };
    assert_eq!(hints("whoami"), (Some(true), None, Some(true), Some(false)));
    assert_eq!(hints("get_budget"), (Some(true), None, Some(true), Some(false)));
    assert_eq!(hints("list_budgets"), (Some(true), None, Some(true), Some(false)));
    assert_eq!(hints("create_budget"), (Some(false), Some(false), Some(false), Some(false)));
    assert_eq!(hints("update_budget"), (Some(false), Some(true), Some(true), Some(false)));
    assert_eq!(hints("delete_budget"), (Some(false), Some(true), Some(true), Some(false)));
    // Tools that call Make are open-world; reads of synced data are not.
    assert_eq!(hints("connect_make"), (Some(false), Some(false), Some(false), Some(true)));
    assert_eq!(hints("sync_usage"), (Some(false), Some(false), Some(true), Some(true)));
    assert_eq!(hints("pause_scenarios"), (Some(false), Some(true), Some(true), Some(true)));
    assert_eq!(hints("resume_scenarios"), (Some(false), Some(false), Some(true), Some(true)));
    assert_eq!(hints("remove_make_connection"), (Some(false), Some(true), Some(true), Some(false)));
    // Approving runs the plan against Make (destructive); reversing activates scenarios again.
    assert_eq!(hints("approve_action"), (Some(false), Some(true), Some(false), Some(true)));
    assert_eq!(hints("reverse_action"), (Some(false), Some(false), Some(false), Some(true)));
    assert_eq!(hints("reject_action"), (Some(false), Some(false), Some(false), Some(false)));
    assert_eq!(hints("set_scenario_critical"), (Some(false), Some(false), Some(true), Some(false)));
    // A checkpoint adds a signature and an audit record; it changes nothing else.
    assert_eq!(hints("create_audit_checkpoint"), (Some(false), Some(false), Some(false), Some(false)));
    for read in [
        "query_audit_log",
        "verify_audit_chain",
        "list_make_connections",
        "list_scenarios",
        "get_scenario_usage",
        "get_budget_status",
        "get_budget_chart",
        "get_budget_history",
        "forecast_spend",
        "list_thresholds",
        "list_threshold_actions",
        "preview_action",
        "list_actions",
        "get_action",
        "list_webhooks",
    ] {
        assert_eq!(hints(read), (Some(true), None, Some(true), Some(false)), "{read}");
    }
    let connect = Value::Object((*by_name("connect_make").input_schema).clone());
    assert_eq!(connect["properties"]["organization_ids"]["maxItems"], 20);
    let kinds: Vec<&Value> =
        connect["properties"]["auth_kind"]["oneOf"].as_array().unwrap().iter().map(|k| &k["const"]).collect();
    assert_eq!(kinds, [&json!("api_token"), &json!("oauth_access_token")], "{}", connect["properties"]["auth_kind"]);

    let schema = Value::Object((*by_name("create_budget").input_schema).clone());
    let props = &schema["properties"];
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        (props["limit"]["minimum"].as_i64(), props["limit"]["maximum"].as_i64()),
        (Some(1), Some(1_000_000_000_000))
    );
    assert_eq!((props["name"]["minLength"].as_i64(), props["name"]["maxLength"].as_i64()), (Some(1), Some(120)));
    assert_eq!(props["unit"]["enum"], json!(["credits", "operations"]), "{}", props["unit"]);
    let required: Vec<&str> = schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for field in ["name", "unit", "limit", "period", "scope"] {
        assert!(required.contains(&field), "{field} is required: {required:?}");
    }
    assert!(!schema.to_string().contains("$ref"), "input schemas are self-contained: {schema}");
    assert_eq!(props["scope"]["properties"]["team_ids"]["items"]["minimum"], 1);
    assert_eq!(props["scope"]["properties"]["team_ids"]["maxItems"], 500);
    let list = Value::Object((*by_name("list_budgets").input_schema).clone());
    assert_eq!(list["properties"]["limit"]["maximum"], 200);
    let audit = Value::Object((*by_name("query_audit_log").input_schema).clone());
    assert_eq!(
        (audit["properties"]["limit"]["maximum"].as_i64(), audit["additionalProperties"].as_bool()),
        (Some(500), Some(false))
    );
    for t in &tools {
        let out = t.output_schema.as_ref().unwrap_or_else(|| panic!("{} has no outputSchema", t.name));
        assert_eq!(out["type"], "object", "{}", t.name);
        assert!(
            t.description.as_ref().is_some_and(|d| d.len() > 60),
            "{} needs a description an agent can act on",
            t.name
        );
    }
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_operator_role_comes_from_configuration() {
    let db = sqlite_db();
    let (client, _logs) =
        stdio_client(&db.url, &[("MBM_LOCAL_ROLE", "viewer"), ("MBM_LOCAL_TENANT", "team-x")], Lifecycle::Initialize)
            .await;
    let me = call_ok(&client, "whoami", json!({})).await;
    assert_eq!((me["tenant_name"].as_str(), me["role"].as_str()), (Some("team-x"), Some("viewer")));
    let e = call_err(&client, "create_budget", budget_args("nope")).await;
    assert_eq!(e, "permission_denied: this call needs permission `budget:create`, which role `viewer` does not have");
    call_ok(&client, "list_budgets", json!({})).await;
    client.cancel().await.unwrap();
    let store = open_store(&db.url).await;
    assert_eq!(count(&store, "budgets", "").await, 0);
    assert_eq!(
        count(&store, "audit_log", "outcome = 'denied' AND actor_role = 'viewer' AND action = 'create_budget'").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_the_field_and_writes_nothing() {
    let db = sqlite_db();
    let (client, _logs) = stdio_client(&db.url, &[], Lifecycle::Initialize).await;
    let existing = call_ok(&client, "create_budget", budget_args("Existing")).await;
    let id = existing["id"].as_str().unwrap();
    let store = open_store(&db.url).await;
    let (budgets, audit) = (count(&store, "budgets", "").await, count(&store, "audit_log", "").await);

    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = budget_args("Fresh");
        f(&mut v);
        v
    };
    let huge = "x".repeat(10 * 1024 * 1024);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("create_budget", with(&|v| v["limit"] = "many".into()), "invalid argument `limit`: invalid type: string"),
        (
            "create_budget",
            with(&|v| {
                v.as_object_mut().unwrap().remove("unit");
            }),
            "missing field `unit`",
        ),
        (
            "create_budget",
            with(&|v| v["limit"] = 0.into()),
            "invalid argument `limit`: must be between 1 and 1000000000000 (got 0)",
        ),
        (
            "create_budget",
            with(&|v| v["limit"] = 10_000_000_000_000i64.into()),
            "invalid argument `limit`: must be between 1",
        ),
        ("create_budget", with(&|v| v["limit"] = 1.5.into()), "invalid argument `limit`"),
        (
            "create_budget",
            with(&|v| v["scope"]["organization_id"] = (-3).into()),
            "invalid argument `scope.organization_id`",
        ),
        ("create_budget", with(&|v| v["unit"] = "euros".into()), "invalid argument `unit`: unknown variant `euros`"),
        (
            "create_budget",
            with(&|v| v["period"] = json!({"kind": "fortnightly"})),
            "invalid argument `period.kind`: unknown variant `fortnightly`",
        ),
        (
            "create_budget",
            with(&|v| v["name"] = huge.clone().into()),
            "invalid argument `name`: must be 1 to 120 characters",
        ),
        (
            "create_budget",
            with(&|v| v["description"] = huge.clone().into()),
            "invalid argument `description`: must be at most 2000 characters",
        ),
        ("create_budget", with(&|v| v["owner"] = "me".into()), "unknown field `owner`"),
        (
            "create_budget",
            with(&|v| v["scope"]["colour"] = "red".into()),
            "invalid argument `scope.colour`: unknown field `colour`",
        ),
        (
            "create_budget",
            with(&|v| v["timezone"] = "Europe/Atlantis".into()),
            "invalid argument `timezone`: must be an IANA time zone name",
        ),
        (
            "create_budget",
            with(&|v| v["period"] = json!({"kind": "custom", "start": "2026-03-31", "end": "2026-03-01"})),
            "invalid argument `period.end`: must not be before start (2026-03-31)",
        ),
        (
            "create_budget",
            with(&|v| v["scope"]["team_ids"] = json!([1, "two"])),
            "invalid argument `scope.team_ids[1]`: invalid type: string",
        ),
        (
            "create_budget",
            with(&|v| v["scope"]["scenario_ids"] = json!([0])),
            "invalid argument `scope.scenario_ids[0]`: must be between 1",
        ),
        (
            "create_budget",
            with(&|v| v["money"] = json!({"currency": "euro", "price_per_1000_units_minor": 1})),
            "invalid argument `money.currency`",
        ),
        ("create_budget", budget_args("Existing"), "conflict: a budget named \"Existing\" already exists"),
        ("update_budget", json!({"id": id, "version": 1}), "nothing to update"),
        (
            "update_budget",
            json!({"id": "budget-1", "version": 1, "limit": 5}),
            "invalid argument `id`: must be a budget id",
        ),
        (
            "update_budget",
            json!({"id": id, "version": 0, "limit": 5}),
            "invalid argument `version`: must be at least 1",
        ),
        ("update_budget", json!({"id": id, "version": 1, "limit": -5}), "invalid argument `limit`: must be between 1"),
        ("update_budget", json!({"id": id, "version": 1, "timezone": ""}), "invalid argument `timezone`"),
        ("delete_budget", json!({"id": id, "version": -1}), "invalid argument `version`: must be at least 1"),
        ("get_budget", json!({"id": 42}), "invalid argument `id`: invalid type: integer"),
        ("get_budget", json!({}), "missing field `id`"),
        ("list_budgets", json!({"limit": 0}), "invalid argument `limit`: must be between 1 and 200 (got 0)"),
        ("list_budgets", json!({"limit": -1}), "invalid argument `limit`: invalid value: integer `-1`"),
        ("list_budgets", json!({"cursor": "page-2"}), "invalid argument `cursor`: must be a budget id"),
        ("list_budgets", json!({"name_contains": ""}), "invalid argument `name_contains`"),
    ];
    for (tool, args, expected) in cases {
        let text = call_err(&client, tool, args).await;
        let text = text.strip_prefix("failed to deserialize parameters: ").unwrap_or(&text);
        let text = text.strip_prefix("invalid_argument: ").unwrap_or(text);
        assert!(text.contains(expected), "{tool}: expected {expected:?} in {:?}", &text[..text.len().min(300)]);
        assert_eq!(count(&store, "budgets", "").await, budgets, "{tool} {expected}: no row written");
        assert_eq!(count(&store, "audit_log", "").await, audit, "{tool} {expected}: no audit record written");
    }
    assert_eq!(call_ok(&client, "get_budget", json!({"id": id})).await, existing, "the existing budget is untouched");
    client.cancel().await.unwrap();
}

/// In stdio mode stdout carries the protocol and nothing else; logs go to stderr.
#[test]
fn stdout_carries_only_json_rpc() {
    let db = sqlite_db();
    let mut child = Command::new(bin())
        .arg("serve")
        .env("MBM_DATABASE_URL", &db.url)
        .env("MBM_CONFIG", "/dev/null")
        .env("MBM_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let requests = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "create_budget", "arguments": budget_args("stdout test")}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "get_budget", "arguments": {"id": "nope"}}}),
    ];
    for r in &requests {
        writeln!(stdin, "{r}").unwrap();
    }
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut answered = 0;
    let mut line = String::new();
    while answered < 3 {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "server closed stdout early");
        let msg: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("non-JSON on stdout ({e}): {line:?}"));
        assert_eq!(msg["jsonrpc"], "2.0", "{msg}");
        if msg["id"] == 1 {
            assert_eq!(msg["result"]["protocolVersion"], "2025-06-18", "a 2025-06-18 client is served in its version");
        }
        if msg.get("id").is_some() {
            answered += 1;
        }
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("serving MCP over stdio"), "logs go to stderr: {stderr}");
    assert!(stderr.contains("tool call"), "{stderr}");
    let rest = String::from_utf8_lossy(&out.stdout);
    assert!(rest.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()), "stdout after the answers: {rest:?}");
}

/// Pausing more than the configured number of scenarios asks the human first (MCP elicitation); a "no"
/// pauses nothing, a "yes" pauses them, and a small pause asks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_pauses_are_confirmed_by_the_human() {
    let db = sqlite_db();
    let fake = seeded_fake().await;
    let env = [("MBM_CONFIRM_PAUSE_OVER", "1")];
    let (no, asked) = stdio_confirmer(&db.url, &env, false).await;
    call_ok(&no, "connect_make", connect_args(&fake, &[ORG])).await;
    call_ok(&no, "sync_usage", json!({})).await;
    let e = call_err(&no, "pause_scenarios", json!({"scenario_ids": [501, 502], "reason": "runaway"})).await;
    assert!(e.starts_with("cancelled: the user did not confirm pausing 2 scenarios; nothing was paused"), "{e}");
    assert_eq!(asked.lock().unwrap().len(), 1);
    assert!(asked.lock().unwrap()[0].contains("Pause 2 Make scenarios (501, 502) now? Reason given: runaway"));
    assert_eq!((fake.scenario_active(501), fake.scenario_active(502)), (Some(true), Some(true)));
    assert!(!fake.requests().iter().any(|r| r.path.ends_with("/stop")), "Make was not asked to stop anything");
    let one = call_ok(&no, "pause_scenarios", json!({"scenario_ids": [501], "reason": "just one"})).await;
    assert_eq!(one["changed"], 1, "one scenario is within the limit: no question");
    assert_eq!(asked.lock().unwrap().len(), 1);
    no.cancel().await.unwrap();

    let (yes, asked) = stdio_confirmer(&db.url, &env, true).await;
    let both = call_ok(&yes, "pause_scenarios", json!({"scenario_ids": [502, 503], "reason": "confirmed"})).await;
    assert_eq!(both["changed"], 2, "{both:#}");
    assert_eq!(asked.lock().unwrap().len(), 1);
    assert_eq!((fake.scenario_active(502), fake.scenario_active(503)), (Some(false), Some(false)));
    yes.cancel().await.unwrap();
}

/// The binary over stdio with raw pipes: lines go in as written, answers come out parsed (stdout must carry
/// JSON only), stderr is collected.
struct RawStdio {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    answers: std::sync::mpsc::Receiver<Value>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl RawStdio {
    fn start(db_url: &str) -> Self {
        let mut child = Command::new(bin())
            .arg("serve")
            .env("MBM_DATABASE_URL", db_url)
            .env("MBM_CONFIG", "/dev/null")
            .env("MBM_LOG", "info")
            .env("MBM_MASTER_KEY", TEST_MASTER_KEY)
            .env("MBM_AUDIT_SIGNING_KEY", TEST_AUDIT_KEY)
            .env(ALL_TOOLSETS.0, ALL_TOOLSETS.1)
            .envs(NO_RATE_LIMITS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, answers) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let line = line.expect("stdout is UTF-8");
                let v: Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("non-JSON on stdout ({e}): {line:?}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let stderr_pipe = BufReader::new(child.stderr.take().unwrap());
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in stderr_pipe.lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let stdin = child.stdin.take();
        RawStdio { child, stdin, answers, stderr }
    }

    fn send(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// The next line the server writes; a server that drops the input never writes one.
    fn next(&self, what: &str) -> Value {
        self.answers
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no answer to {what} (the client would hang)"))
    }

    fn finish(mut self) -> String {
        drop(self.stdin.take());
        self.child.wait().unwrap();
        self.stderr.lock().unwrap().clone()
    }
}

/// Input that is not JSON, JSON that is not JSON-RPC, and wrong params of known methods each get their
/// JSON-RPC error (-32700 with id null, -32600 with the id when it can be read, -32602 naming the field)
/// instead of silence or "method not found"; refused notifications get none; a line over 16 MiB is
/// answered without being buffered; the server keeps serving throughout and logs why at WARN, without
/// the content.
#[test]
fn unusable_lines_are_answered_and_the_server_keeps_serving() {
    let db = sqlite_db();
    let mut s = RawStdio::start(&db.url);
    s.send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        .to_string()
        .as_bytes(),
    );
    assert_eq!(s.next("initialize")["id"], 1);
    s.send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);

    let deep = "[".repeat(10_000);
    let long_secret = format!("{MAKE_TOKEN}{}", "z".repeat(1000));
    let wrong_args = json!({"jsonrpc": "2.0", "id": 10, "method": "tools/call",
                            "params": {"name": "connect_make", "arguments": long_secret}})
    .to_string();
    let cases: Vec<(&[u8], i64, Value, &str)> = vec![
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\",\"x\":\"\xff\xfe\"}",
            -32700,
            Value::Null,
            "Parse error: ",
        ),
        (
            br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"\ud800"}}"#,
            -32700,
            Value::Null,
            "hex escape",
        ),
        (deep.as_bytes(), -32700, Value::Null, "recursion limit"),
        (br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"whoami""#, -32700, Value::Null, "EOF"),
        (b"NaN", -32700, Value::Null, "Parse error: "),
        (br#"{"jsonrpc":"2.0","id":5,"method":"ping","params":{"n":1e400}}"#, -32700, Value::Null, "out of range"),
        (br#"{"foo":"bar"}"#, -32600, Value::Null, "Invalid Request: "),
        (br#"[{"jsonrpc":"2.0","id":6,"method":"ping"}]"#, -32600, Value::Null, "batches"),
        (br#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#, -32600, json!(7), "`jsonrpc`"),
        (
            br#"{"jsonrpc":"2.0","id":"eight","method":"tools/call","params":{"name":42}}"#,
            -32602,
            json!("eight"),
            "Invalid params: params.name: invalid type: integer `42`, expected a string",
        ),
        (
            br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"whoami","arguments":[1,2]}}"#,
            -32602,
            json!(9),
            "params.arguments: invalid type: sequence",
        ),
        (wrong_args.as_bytes(), -32602, json!(10), "params.arguments: invalid type: string"),
        (br#"{"jsonrpc":"2.0","id":11,"method":"resources/read","params":{"uri":5}}"#, -32602, json!(11), "params.uri"),
        (br#"{"jsonrpc":"2.0","id":12,"method":"prompts/get","params":{"name":[]}}"#, -32602, json!(12), "params.name"),
        (
            br#"{"jsonrpc":"2.0","id":13,"method":"tools/call","params":"whoami"}"#,
            -32602,
            json!(13),
            "params: invalid type",
        ),
    ];
    for (line, code, id, needle) in &cases {
        s.send(line);
        let what = String::from_utf8_lossy(&line[..line.len().min(60)]).into_owned();
        let a = s.next(&what);
        assert_eq!((&a["jsonrpc"], &a["id"], &a["error"]["code"]), (&json!("2.0"), id, &json!(code)), "{what}: {a}");
        let message = a["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{what}: {message}");
        assert!(message.len() < 250, "no long echo: {message}");
    }

    // A refused notification is not answered: the next line out is the ping's answer.
    s.send(br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":[]}}"#);
    s.send(br#"{"jsonrpc":"2.0","id":20,"method":"ping"}"#);
    let a = s.next("ping");
    assert_eq!((&a["id"], a.get("error")), (&json!(20), None), "{a}");

    // 16 MiB and more on one line: answered with its id, skipped, and the next line is served.
    let mut big =
        br#"{"jsonrpc":"2.0","id":30,"method":"tools/call","params":{"name":"whoami","arguments":{"pad":""#.to_vec();
    big.resize(big.len() + 16 * 1024 * 1024, b'x');
    big.extend_from_slice(br#""}}}"#);
    s.send(&big);
    let a = s.next("the 16 MiB line");
    assert_eq!((&a["id"], &a["error"]["code"]), (&json!(30), &json!(-32600)), "{a}");
    assert!(a["error"]["message"].as_str().unwrap().contains("longer than 16777216 bytes"), "{a}");

    s.send(br#"{"jsonrpc":"2.0","id":31,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#);
    let a = s.next("whoami");
    assert_eq!((&a["id"], &a["result"]["isError"]), (&json!(31), &json!(false)), "still serving: {a}");

    let stderr = s.finish();
    let warnings = stderr.lines().filter(|l| l.contains("WARN") && l.contains("refused a malformed MCP message"));
    assert!(warnings.count() >= cases.len() + 2, "each refusal is logged at WARN:\n{stderr}");
    assert!(stderr.contains("recursion limit") && stderr.contains("params.name"), "with its reason:\n{stderr}");
    assert!(!stderr.contains(&MAKE_TOKEN[..12]), "no argument values in the log:\n{stderr}");
    assert!(!stderr.contains("xxxxxxxxxxxxxxxxxxxx"), "no content of the long line in the log");
}
