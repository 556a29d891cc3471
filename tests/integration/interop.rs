//! Interoperability with MCP clients nobody on this project wrote: the official Python SDK (`mcp`, pinned in
//! tests/interop/python/requirements.txt) and the official TypeScript SDK (`@modelcontextprotocol/sdk`,
//! pinned in tests/interop/typescript/package-lock.json) drive the real binary over stdio and over
//! streamable HTTP. Each driver lists the tools, calls every tool with valid arguments with the SDK's own
//! output-schema validation on, and reads the resources and prompts (see the drivers' headers). A result an
//! SDK rejects, an unexpected tool error or a protocol error makes the driver exit non-zero, and this test
//! fails with the driver's report.
//!
//! The SDKs are installed by `tests/interop/setup.sh`. Without them each test prints a SKIPPED line and
//! passes, unless `MBM_REQUIRE_INTEROP=1` (set by `.ci/run`), in which case it fails.
//!
//! Every run gets its own SQLite database, simulated Make, webhook receiver and principals: admin `alice`
//! (who requests the plans) and operator `bob` (who approves one, since a requester may not approve its
//! own plan). Over HTTP they are two API tokens of one tenant; over stdio, where the principal is the
//! local operator, they are two server processes on the same database with different
//! `MBM_LOCAL_SUBJECT`/`MBM_LOCAL_ROLE`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{Value, json};

const HOOK_SECRET: &str = "whsec-interop-0123456789abcdef";
/// How long one driver may take before it is stopped (a run takes a few seconds).
const DRIVER_TIMEOUT: Duration = Duration::from_secs(60);
/// The scenario the plans pause (the highest consumer of team 16) and the one paused by hand.
const TOP: i64 = 501;
const OTHER: i64 = 502;

#[derive(Clone, Copy)]
enum Sdk {
    Python,
    TypeScript,
}

#[derive(Clone, Copy, PartialEq)]
enum Via {
    Stdio,
    Http,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Stdio => "stdio",
            Via::Http => "http",
        }
    }
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("interop")
}

/// The driver's command line, or what is missing.
fn driver(sdk: Sdk) -> Result<(PathBuf, Vec<PathBuf>), String> {
    let dir = interop_dir();
    match sdk {
        Sdk::Python => {
            let python = dir.join("python/.venv/bin/python");
            if !python.exists() {
                return Err("tests/interop/python/.venv is missing".into());
            }
            Ok((python, vec![dir.join("python/client.py")]))
        }
        Sdk::TypeScript => {
            if !dir.join("typescript/node_modules/@modelcontextprotocol/sdk/package.json").exists() {
                return Err("tests/interop/typescript/node_modules is missing".into());
            }
            Ok(("node".into(), vec![dir.join("typescript/client.mjs")]))
        }
    }
}

/// The driver to run, or `None` after a visible SKIPPED line (a failure with `MBM_REQUIRE_INTEROP=1`).
fn driver_or_skip(sdk: Sdk, test: &str) -> Option<(PathBuf, Vec<PathBuf>)> {
    match driver(sdk) {
        Ok(d) => Some(d),
        Err(missing) => {
            if std::env::var("MBM_REQUIRE_INTEROP").as_deref() == Ok("1") {
                panic!("{test}: MBM_REQUIRE_INTEROP=1 but {missing}; run tests/interop/setup.sh");
            }
            notice(&format!("SKIPPED interop: run tests/interop/setup.sh ({test}: {missing})"));
            None
        }
    }
}

/// What every server the drivers reach is started with, on top of what `HttpServer` and the stdio
/// environment already set.
const SERVER_ENV: [(&str, &str); 3] = [
    // The drivers call every tool (older binaries ignore it).
    ("MBM_TOOLSETS", "all"),
    // The simulated Make and the webhook receiver are on loopback; servers that refuse outbound requests
    // to loopback addresses by default allow them with this (older binaries ignore it).
    ("MBM_OUTBOUND_ALLOW_LOOPBACK", "1"),
    // No background evaluator: the drivers' own sync_usage records the crossing, so the plans are
    // requested by alice, and nothing runs behind the drivers' backs.
    ("MBM_EVALUATE_INTERVAL_SECS", "0"),
];

/// The environment of a stdio server, as `crate::support::stdio_command` sets it, for `subject` with `role`.
fn stdio_principal(db_url: &str, subject: &str, role: &str, log: &Path) -> Value {
    let mut env = serde_json::Map::new();
    let mut set = |k: &str, v: &str| {
        env.insert(k.to_owned(), Value::String(v.to_owned()));
    };
    set("MBM_DATABASE_URL", db_url);
    set("MBM_CONFIG", "/dev/null");
    set("MBM_LOG", "info");
    set("MBM_MASTER_KEY", TEST_MASTER_KEY);
    set("MBM_AUDIT_SIGNING_KEY", TEST_AUDIT_KEY);
    for (k, v) in NO_RATE_LIMITS.into_iter().chain(SERVER_ENV) {
        set(k, v);
    }
    set("MBM_LOCAL_TENANT", "interop");
    set("MBM_LOCAL_SUBJECT", subject);
    set("MBM_LOCAL_ROLE", role);
    json!({"subject": subject, "stdio": {"command": bin(), "args": ["serve"], "env": env,
                                         "stderr_log": log.display().to_string()}})
}

/// Run `sdk`'s driver over `via`; `client_mode` is the Python SDK's connect mode (`None`: its default).
async fn interop(sdk: Sdk, via: Via, client_mode: Option<&str>, test: &str) {
    let Some((program, args)) = driver_or_skip(sdk, test) else { return };
    let started = Instant::now();
    let db = sqlite_db();
    let fake = seeded_fake_at(utc_today()).await;
    let hook = WebhookReceiver::start(HOOK_SECRET).await;
    let work = tempfile::tempdir().expect("temp dir");
    let stdio_log = work.path().join("stdio-servers.log");

    let mut server = None;
    let (requester, approver) = match via {
        Via::Stdio => (
            stdio_principal(&db.url, "alice", "admin", &stdio_log),
            stdio_principal(&db.url, "bob", "operator", &stdio_log),
        ),
        Via::Http => {
            let tenant = create_tenant(&db.url, "acme");
            let alice = issue_token(&db.url, &tenant, "admin", "alice");
            let bob = issue_token(&db.url, &tenant, "operator", "bob");
            let s = HttpServer::start_with(&db.url, &SERVER_ENV).await;
            let principals = (
                json!({"subject": "alice", "http": {"url": s.mcp_url, "token": alice}}),
                json!({"subject": "bob", "http": {"url": s.mcp_url, "token": bob}}),
            );
            server = Some(s);
            principals
        }
    };
    let config = json!({
        "transport": via.name(),
        "client_mode": client_mode,
        "requester": requester,
        "approver": approver,
        "make": {"zone": fake.base_url(), "token": MAKE_TOKEN, "organization_ids": [ORG]},
        "organization_id": ORG,
        "team_id": 16,
        "scenarios": {"top": TOP, "other": OTHER},
        "webhook": {"url": hook.url, "secret": HOOK_SECRET},
    });
    let config_path = work.path().join("config.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).expect("write the driver's config");

    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&args)
        .arg(&config_path)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("{test}: cannot start {}: {e}", program.display()));
    let outcome = tokio::time::timeout(DRIVER_TIMEOUT, child.wait_with_output()).await;
    let elapsed = started.elapsed();

    let server_logs = |server: &Option<HttpServer>| match server {
        Some(s) => s.logs(),
        None => std::fs::read_to_string(&stdio_log).unwrap_or_default(),
    };
    let tail = |text: &str, lines: usize| {
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    };
    let Ok(output) = outcome else {
        panic!(
            "{test}: the driver did not finish within {} s\n--- server log (tail) ---\n{}",
            DRIVER_TIMEOUT.as_secs(),
            tail(&server_logs(&server), 40)
        );
    };
    let output = output.expect("wait for the driver");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);

    // What the simulated Make saw: the approved plan stopped the top consumer once and the reversal started
    // it once; the ad-hoc pause and resume did the same to the other scenario.
    let mut make_problems = Vec::new();
    for (id, verb, want) in [(TOP, "stop", 1), (TOP, "start", 1), (OTHER, "stop", 1), (OTHER, "start", 1)] {
        let got = requests_to(&fake, "POST", &format!("/api/v2/scenarios/{id}/{verb}"));
        if got != want {
            make_problems.push(format!("Make got {got} {verb} requests for scenario {id}, expected {want}"));
        }
    }
    let logs = server_logs(&server);
    for secret in SECRETS {
        if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
            make_problems.push(format!("a secret appears in the server log: {}", &line[..line.len().min(300)]));
        }
    }

    if !output.status.success() || !make_problems.is_empty() {
        panic!(
            "{test}: interop run failed (driver {}, {:.1} s)\n{}\n--- driver stdout ---\n{stdout}\n--- driver stderr ---\n{stderr}\n--- server log (tail) ---\n{}",
            output.status,
            elapsed.as_secs_f64(),
            make_problems.join("\n"),
            tail(&logs, 40)
        );
    }
    // A short visible record of what ran (protocol versions, the SDK's summary), past libtest's capture.
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| (l.starts_with("note ") && l.contains("connected")) || l.starts_with("summary "))
        .collect();
    notice(&format!("interop {test} ({:.1} s):\n  {}", elapsed.as_secs_f64(), summary.join("\n  ")));
    if let Some(s) = server {
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_stdio() {
    interop(Sdk::Python, Via::Stdio, None, "interop::python_sdk_over_stdio").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_http() {
    interop(Sdk::Python, Via::Http, None, "interop::python_sdk_over_http").await;
}

/// The Python SDK's default probes `server/discover` and settles on the stateless 2026-07-28 lifecycle;
/// this run forces the `initialize` handshake and so the session-based HTTP path (as SDK 1.x clients use).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_http_with_initialize() {
    interop(Sdk::Python, Via::Http, Some("legacy"), "interop::python_sdk_over_http_with_initialize").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_over_stdio() {
    interop(Sdk::TypeScript, Via::Stdio, None, "interop::typescript_sdk_over_stdio").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_over_http() {
    interop(Sdk::TypeScript, Via::Http, None, "interop::typescript_sdk_over_http").await;
}
