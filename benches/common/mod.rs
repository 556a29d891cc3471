//! Shared pieces of the load benchmarks: scratch databases, the server under test as a child process, a
//! lean MCP client that speaks JSON-RPC over streamable HTTP or stdio directly (so the driver costs the
//! same whichever server it measures), closed- and open-loop drivers, and table printing.
//!
//! Each bench is a `harness = false` binary; `cargo bench --bench <name>` builds the release server
//! binary beside it and runs it.
#![allow(dead_code)] // each bench uses a different part of this module

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub const BIN: &str = env!("CARGO_BIN_EXE_make-budget-mcp");
pub const MASTER_KEY: &str = "YmVuY2gtbWFzdGVyLWtleS1vZi0zMi1ieXRlcy1vayE=";
pub const SIGNING_KEY: &str = "YmVuY2gtYXVkaXQtc2lnbmluZy1rZXktMzItYnl0ZXM=";
pub const PROTOCOL: &str = "2025-06-18";

/// `cargo bench` asks every bench binary for its list first; answer it and stop.
pub fn answer_list(name: &str) {
    if std::env::args().any(|a| a == "--list") {
        println!("{name}: bench");
        std::process::exit(0);
    }
}

/// A number from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `DATABASE_URL`, or exit with a message saying what the bench needs.
pub fn postgres_admin_url(bench: &str) -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        eprintln!("{bench} needs DATABASE_URL=postgres://… (a server it may create a scratch database on)");
        std::process::exit(2);
    })
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, String::new()), |(b, q)| (b, format!("?{q}")));
    let start = base.find("://").map_or(0, |i| i + 3);
    let end = base[start..].find('/').map_or(base.len(), |i| i + start);
    format!("{}/{name}{query}", &base[..end])
}

/// A PostgreSQL database of its own for one bench run; [`ScratchDb::drop_now`] removes it.
pub struct ScratchDb {
    admin_url: String,
    name: String,
    pub url: String,
}

impl ScratchDb {
    pub async fn create(admin_url: &str, prefix: &str) -> Result<Self, Error> {
        let name = format!("{prefix}_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
            .execute(&mut admin)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut admin).await?;
        Ok(Self { admin_url: admin_url.to_owned(), url: with_database(admin_url, &name), name })
    }

    pub async fn drop_now(self) -> Result<(), Error> {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)))
            .execute(&mut admin)
            .await?;
        Ok(())
    }
}

/// The release binary with the bench's keys, no config file, warnings-only logs, no rate limits, no
/// background evaluator and loopback allowed for outbound requests (the simulated Make).
pub fn mbm(db_url: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(BIN);
    c.env("MBM_DATABASE_URL", db_url)
        .env("MBM_CONFIG", "/dev/null")
        .env("MBM_LOG", "warn")
        .env("MBM_MASTER_KEY", MASTER_KEY)
        .env("MBM_AUDIT_SIGNING_KEY", SIGNING_KEY)
        .env("MBM_READS_PER_HOUR", "0")
        .env("MBM_MODIFICATIONS_PER_HOUR", "0")
        .env("MBM_AUTOMATED_ACTIONS_PER_HOUR", "0")
        .env("MBM_FAILED_AUTHS_PER_MINUTE", "0")
        // No background evaluator in `serve`: a pass mid-measurement would measure it instead.
        .env("MBM_EVALUATE_INTERVAL_SECS", "0")
        // The simulated Make listens on loopback, which outbound requests may reach only when allowed.
        .env("MBM_OUTBOUND_ALLOW_LOOPBACK", "true")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

/// Run a CLI command of the binary; its trimmed stdout.
pub async fn cli(db_url: &str, args: &[&str]) -> Result<String, Error> {
    let out = mbm(db_url).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).output().await?;
    if !out.status.success() {
        return Err(format!("make-budget-mcp {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// A tenant with an API token of `role`: (tenant id, token).
pub async fn tenant_with_token(db_url: &str, name: &str, role: &str) -> Result<(String, String), Error> {
    let tenant = cli(db_url, &["tenant", "create", name]).await?;
    let token = cli(db_url, &["token", "issue", "--tenant", name, "--role", role, "--subject", "bench"]).await?;
    Ok((tenant, token))
}

/// A child process serving HTTP; killed on drop.
pub struct Served {
    pub child: tokio::process::Child,
    pub url: String,
}

impl Served {
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

/// Start `cmd` and wait until a line of its stderr contains "listening on "; the address after it, up to
/// the first space, with `path` appended unless it is already there.
pub async fn serve(mut cmd: tokio::process::Command, path: &str) -> Result<Served, Error> {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Some((_, rest)) = line.split_once("listening on ") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let addr = if addr.starts_with("http") { addr.to_owned() } else { format!("http://{addr}") };
                return Ok::<_, Error>(Some(addr));
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        Ok(None)
    })
    .await
    .map_err(|_| "the server did not report listening within 60 s")??;
    let Some(addr) = found else { return Err(format!("the server exited before listening:\n{seen}").into()) };
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = if addr.ends_with(path) { addr } else { format!("{}{path}", addr.trim_end_matches('/')) };
    Ok(Served { child, url })
}

/// Start `cmd`, which serves HTTP on `127.0.0.1:port` at `path`, and wait until the port accepts
/// connections.
pub async fn serve_on_port(mut cmd: tokio::process::Command, port: u16, path: &str) -> Result<Served, Error> {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if let Some(status) = child.try_wait()? {
            return Err(format!("{:?} exited before listening: {status}", cmd.as_std().get_program()).into());
        }
        if Instant::now() > deadline {
            return Err("the server did not listen within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Served { child, url: format!("http://127.0.0.1:{port}{path}") })
}

/// A port that was free a moment ago.
pub fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The HTTP floor, run as `<bench binary> floor-server`: an axum server with two worker threads (as many
/// as the machine has cores) and one handler that parses the JSON-RPC body and answers an empty result
/// with the request's id (202 to a notification). The client, HTTP stack and loopback cost, with no MCP,
/// authentication or database. A bench's `main` calls this when it sees the argument.
pub fn run_floor_server() -> Result<(), Error> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(async {
        async fn handler(body: axum::body::Bytes) -> axum::response::Response {
            use axum::response::IntoResponse;
            let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                return axum::http::StatusCode::BAD_REQUEST.into_response();
            };
            match v.get("id") {
                Some(id) => axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {}})).into_response(),
                None => axum::http::StatusCode::ACCEPTED.into_response(),
            }
        }
        let app = axum::Router::new().route("/mcp", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        eprintln!("floor listening on http://{}/mcp", listener.local_addr()?);
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// Start the HTTP floor ([`run_floor_server`]) as a child process of this bench binary.
pub async fn start_floor() -> Result<Served, Error> {
    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    cmd.arg("floor-server");
    serve(cmd, "/mcp").await
}

/// `make-budget-mcp serve --transport http` on a free loopback port, plus `extra` arguments.
pub async fn serve_mbm(db_url: &str, extra: &[&str]) -> Result<Served, Error> {
    let mut cmd = mbm(db_url);
    cmd.args(["serve", "--transport", "http", "--listen", "127.0.0.1:0"]).args(extra);
    serve(cmd, "/mcp").await
}

/// Memory figures of a process in MiB, by their names in /proc/<pid>/status (e.g. "VmRSS", "RssAnon");
/// NaN for a figure it does not report.
pub fn proc_mib<const N: usize>(pid: u32, names: [&str; N]) -> [f64; N] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    names.map(|name| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(':')))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    })
}

/// Resident set size and its peak of a process, in MiB.
pub fn rss_mib(pid: u32) -> (f64, f64) {
    let [rss, peak] = proc_mib(pid, ["VmRSS", "VmHWM"]);
    (rss, peak)
}

/// A JSON-RPC request body.
pub fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

pub fn initialize(id: u64) -> Value {
    request(
        id,
        "initialize",
        json!({"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "mbm-bench", "version": "1"}}),
    )
}

pub fn tool_call(id: u64, tool: &str, args: Value) -> Value {
    request(id, "tools/call", json!({"name": tool, "arguments": args}))
}

/// The JSON-RPC response in a body that is either JSON or an SSE stream of `data:` events.
fn response_in(body: &str, id: u64) -> Result<Value, Error> {
    let trimmed = body.trim_start();
    if trimmed.starts_with('{') {
        return Ok(serde_json::from_str(trimmed)?);
    }
    for line in body.lines() {
        if let Some(data) = line.strip_prefix("data:") {
            let data = data.trim();
            if data.is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(data)?;
            if v["id"] == json!(id) {
                return Ok(v);
            }
        }
    }
    Err(format!("no response to request {id} in: {}", &body[..body.len().min(300)]).into())
}

/// The tool result of a response, or an error carrying the JSON-RPC or tool error.
pub fn tool_result(v: Value) -> Result<Value, Error> {
    if let Some(e) = v.get("error") {
        return Err(format!("JSON-RPC error: {e}").into());
    }
    let result = v.get("result").cloned().ok_or("a response without result")?;
    if result["isError"] == json!(true) {
        return Err(format!("tool error: {}", result["content"]).into());
    }
    Ok(result)
}

/// One MCP session over streamable HTTP, spoken directly: initialize, the initialized notification, then
/// requests with the session id, over keep-alive connections (one per request in flight).
pub struct HttpSession {
    http: reqwest::Client,
    url: String,
    bearer: Option<String>,
    session: Option<String>,
    next: AtomicU64,
}

impl HttpSession {
    pub async fn open(url: &str, bearer: Option<&str>) -> Result<Self, Error> {
        let http = reqwest::Client::builder().build()?;
        let mut s = Self {
            http,
            url: url.to_owned(),
            bearer: bearer.map(str::to_owned),
            session: None,
            next: AtomicU64::new(1),
        };
        let resp = s.post(&initialize(0)).await?;
        s.session = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            return Err(format!("initialize: {status}: {body}").into());
        }
        response_in(&body, 0)?;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let resp = s.post(&note).await?;
        if !resp.status().is_success() {
            return Err(format!("notifications/initialized: {}", resp.status()).into());
        }
        Ok(s)
    }

    async fn post(&self, body: &Value) -> Result<reqwest::Response, Error> {
        let mut req = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", PROTOCOL)
            .body(body.to_string());
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        Ok(req.send().await?)
    }

    /// Call a tool; its result, or an error if the call failed in any way.
    pub async fn call(&self, tool: &str, args: Value) -> Result<Value, Error> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let resp = self.post(&tool_call(id, tool, args)).await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            return Err(format!("{tool}: HTTP {status}: {body}").into());
        }
        tool_result(response_in(&body, id)?)
    }
}

/// One MCP session with a child process over stdio (newline-delimited JSON-RPC), one request at a time.
pub struct StdioSession {
    pub child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    next: u64,
}

impl StdioSession {
    /// Spawn `cmd` and initialize. Returns the session and the time from spawn to the initialize answer.
    pub async fn spawn(mut cmd: tokio::process::Command) -> Result<(Self, Duration), Error> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
        let started = Instant::now();
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut s = Self { child, stdin, stdout, next: 1 };
        s.send(&initialize(0)).await?;
        s.answer(0).await?;
        let ready = started.elapsed();
        s.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
        Ok((s, ready))
    }

    async fn send(&mut self, v: &Value) -> Result<(), Error> {
        let mut line = v.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    async fn answer(&mut self, id: u64) -> Result<Value, Error> {
        while let Some(line) = self.stdout.next_line().await? {
            let v: Value = serde_json::from_str(&line)?;
            if v["id"] == json!(id) {
                return Ok(v);
            }
        }
        Err("the server closed stdout".into())
    }

    pub async fn call(&mut self, tool: &str, args: Value) -> Result<Value, Error> {
        let id = self.next;
        self.next += 1;
        self.send(&tool_call(id, tool, args)).await?;
        tool_result(self.answer(id).await?)
    }
}

/// Run `clients` closed-loop workers for `duration` (after `warmup`), each calling `op(worker, n)` back to
/// back. Returns completed calls/s and the sorted latencies of the measured calls. Any failed call aborts
/// the run: a benchmark of errors measures nothing.
pub async fn closed_loop<F, Fut>(clients: usize, warmup: Duration, duration: Duration, op: F) -> Result<Run, Error>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), Error>> + Send,
{
    let op = Arc::new(op);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let (op, measuring, stop) = (op.clone(), measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                op(worker, n).await?;
                n += 1;
                if measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    latencies.push(started.elapsed());
                }
            }
            Ok::<_, Error>(latencies)
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    latencies.sort_unstable();
    Ok(Run { per_sec: latencies.len() as f64 / elapsed.as_secs_f64(), latencies })
}

/// Open loop: start `op` at a fixed `rate` per second for `duration`, whatever the answers' speed, and
/// measure each call from its scheduled start (so a stall shows in every call it delays).
pub async fn open_loop<F, Fut>(rate: u32, warmup: Duration, duration: Duration, op: F) -> Result<Run, Error>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), Error>> + Send + 'static,
{
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let total = ((warmup + duration).as_secs_f64() * f64::from(rate)) as u64;
    let skip = (warmup.as_secs_f64() * f64::from(rate)) as u64;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let at = start + interval.mul_f64(n as f64);
        tokio::time::sleep_until(at).await;
        let fut = op(n);
        tasks.push(tokio::spawn(async move {
            fut.await?;
            Ok::<_, Error>(at.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    for (n, t) in tasks.into_iter().enumerate() {
        let latency = t.await??;
        if n as u64 >= skip {
            latencies.push(latency);
        }
    }
    latencies.sort_unstable();
    Ok(Run { per_sec: latencies.len() as f64 / duration.as_secs_f64(), latencies })
}

/// Completed calls/s and sorted latencies of a run.
pub struct Run {
    pub per_sec: f64,
    pub latencies: Vec<Duration>,
}

impl Run {
    /// The `p`-th percentile latency in milliseconds (nearest rank).
    pub fn ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1].as_secs_f64() * 1000.0
    }
}

/// Print a Markdown table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    println!("| {} |", headers.join(" | "));
    println!("|{}", headers.iter().enumerate().map(|(i, _)| if i == 0 { "---|" } else { "---:|" }).collect::<String>());
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
}

/// The SIMULATED Make API of the tests and the demo (tests/support/fake_make.rs): an in-process fake on
/// loopback. The benches use it only to give the server real synced usage to work on.
#[path = "../../tests/support/fake_make.rs"]
pub mod fake_make;

pub const MAKE_TOKEN: &str = "5b0c6a8e-2f47-4d1b-9e3a-7c6d5e4f3a2b";
pub const ORG: i64 = 1054;
pub const TEAMS: [i64; 2] = [16, 17];
pub const FIRST_SCENARIO: i64 = 501;

/// Seed the simulated Make: one organization in its current monthly period, two teams and `scenarios`
/// active scenarios, each with 30 days of usage up to today.
pub async fn simulated_make(scenarios: i64) -> fake_make::FakeMake {
    use fake_make::{AuthKind, FakeMake, OrgSpec, ScenarioSpec};
    let fake = FakeMake::start().await;
    let today = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
    let month = today.first_of_month();
    let utc = |d: jiff::civil::Date| d.to_zoned_datetime(jiff::tz::TimeZone::UTC).unwrap().timestamp();
    fake.set_today(today);
    fake.add_token(MAKE_TOKEN, AuthKind::Token, &[ORG]);
    fake.add_organization(OrgSpec {
        api_limit: 1_000_000,
        allowance: 4_000_000,
        last_reset: utc(month),
        next_reset: Some(utc(month.checked_add(jiff::Span::new().months(1)).unwrap())),
        zone: String::new(), // the simulator's own host
        ..OrgSpec::new(ORG, "Bench organization")
    });
    for t in TEAMS {
        fake.add_team(ORG, t, &format!("team {t}"));
    }
    for i in 0..scenarios {
        let id = FIRST_SCENARIO + i;
        fake.add_scenario(ScenarioSpec::new(id, ORG, TEAMS[(i % 2) as usize], &format!("scenario {id}")));
        for back in 0..30i64 {
            let day = today.checked_sub(jiff::Span::new().days(back)).unwrap();
            let cc = 1_000 + ((id * 37 + back * 11) % 900) as u64 * 10;
            fake.set_usage(id, day, cc, cc / 100);
        }
    }
    fake
}

/// Connect the tenant of `s` to the simulated Make and sync its usage.
pub async fn connect_and_sync(s: &HttpSession, fake: &fake_make::FakeMake) -> Result<(), Error> {
    s.call(
        "connect_make",
        json!({"zone": fake.base_url(), "auth_kind": "api_token", "token": MAKE_TOKEN,
               "organization_ids": [ORG], "label": "simulated Make (bench)"}),
    )
    .await?;
    s.call("sync_usage", json!({})).await?;
    Ok(())
}

/// `create_budget` arguments: a monthly credit budget over the bench organization, or over one scenario.
pub fn budget_args(name: &str, scenario: Option<i64>) -> Value {
    let scope = match scenario {
        Some(id) => json!({"organization_id": ORG, "scenario_ids": [id]}),
        None => json!({"organization_id": ORG, "team_ids": [TEAMS[0]]}),
    };
    json!({
        "name": name,
        "description": "benchmark budget",
        "unit": "credits",
        "limit": 40000,
        "money": {"currency": "EUR", "price_per_1000_units_minor": 900},
        "period": {"kind": "monthly"},
        "timezone": "Europe/Prague",
        "scope": scope
    })
}
