//! Test support: throwaway databases (SQLite files, fresh PostgreSQL databases), the real binary as an
//! HTTP server or a stdio child process, and rmcp clients driving it as an MCP client would.
//!
//! PostgreSQL tests need `DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`). Without it
//! they print a visible SKIPPED line and pass, unless `MBM_REQUIRE_POSTGRES=1` (set by `.ci/run`), in
//! which case they fail.
#![allow(dead_code)]

pub mod channels;
pub mod fake_make;
pub mod in_memory;
pub mod in_process;

/// Run each listed `cases::NAME(db: TestDb)` against a fresh SQLite file and a fresh PostgreSQL
/// database (skipped, visibly, without `DATABASE_URL`). Invoked in a test module that has a `cases` module
/// (`tests/integration/main.rs` declares `support` first, with `#[macro_use]`).
#[allow(unused_macros)]
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(crate::support::sqlite_db()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let test = concat!(module_path!(), "::", stringify!($case));
                    let Some(db) = crate::support::postgres_db(test).await else { return };
                    super::cases::$case(db).await;
                }
            )*
        }
    };
}

use std::io::Write as _;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use make_budget_mcp::audit::{Actor, AuditEntry, AuditKeys, Outcome};
use make_budget_mcp::domain::{SystemClock, budget::BudgetDraft};
use make_budget_mcp::store::{Store, StoreOptions};
use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, CallToolResult, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, Peer, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, BufReader};

pub type Client = RunningService<RoleClient, ()>;

/// The master key every test server and CLI run gets unless a test overrides `MBM_MASTER_KEY`.
pub const TEST_MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LW9mLTMyLWJ5dGVzLW9rISE=";

/// The audit signing key (Ed25519 seed, base64) every test server and CLI run gets.
pub const TEST_AUDIT_KEY: &str = "dGVzdC1hdWRpdC1zaWduaW5nLWtleS0zMi1ieXRlcyE=";

/// Rate limits off: many tests make more calls than a tenant's default hourly allowance. The tests of the
/// limits set them explicitly.
pub const NO_RATE_LIMITS: [(&str, &str); 5] = [
    ("MBM_READS_PER_HOUR", "0"),
    ("MBM_MODIFICATIONS_PER_HOUR", "0"),
    ("MBM_AUTOMATED_ACTIONS_PER_HOUR", "0"),
    ("MBM_FAILED_AUTHS_PER_MINUTE", "0"),
    ("MBM_DENIED_AUDITS_PER_HOUR", "0"),
];

/// Every toolset: the tests call every tool (the default serves budgets, status, thresholds and make).
pub const ALL_TOOLSETS: (&str, &str) = ("MBM_TOOLSETS", "all");

/// Outbound requests may reach loopback: the fake Make and the webhook receivers listen there. Every server
/// and CLI run the helpers start gets it; `tests/outbound.rs` removes it (see [`UNSET`]) to test the default.
pub const ALLOW_LOOPBACK: (&str, &str) = ("MBM_OUTBOUND_ALLOW_LOOPBACK", "true");

/// As a value in a helper's `env`, removes that variable instead of setting it (e.g.
/// `("MBM_OUTBOUND_ALLOW_LOOPBACK", UNSET)` runs the server with the default outbound policy).
pub const UNSET: &str = "\u{0}unset";

/// Set (or, for [`UNSET`], remove) a test's extra environment variables on a command.
fn apply_env(cmd: &mut std::process::Command, env: &[(&str, &str)]) {
    for (key, value) in env {
        if *value == UNSET {
            cmd.env_remove(key);
        } else {
            cmd.env(key, value);
        }
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_make-budget-mcp")
}

/// Write straight to the process's stderr, past libtest's output capture, so the line is always seen.
pub fn notice(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

// ---------------------------------------------------------------------------------------------------
// Databases

/// A database that exists for one test and is removed afterwards.
pub struct TestDb {
    pub url: String,
    guard: DbGuard,
}

enum DbGuard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub fn is_postgres(&self) -> bool {
        matches!(self.guard, DbGuard::Postgres { .. })
    }
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        if let DbGuard::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime; use a thread with its own runtime for the async call.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    sqlx::any::install_default_drivers();
                    if let Ok(mut c) = sqlx::AnyConnection::connect(&admin_url).await {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                    }
                });
            })
            .join();
        }
    }
}

pub fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.sqlite3").display());
    TestDb { url, guard: DbGuard::Sqlite(dir) }
}

/// The PostgreSQL server to test against, or `None` (after a visible SKIPPED line) when there is none.
pub fn postgres_admin_url(test: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => Some(url),
        _ => {
            if std::env::var("MBM_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("{test}: MBM_REQUIRE_POSTGRES=1 but DATABASE_URL does not name a PostgreSQL server");
            }
            notice(&format!(
                "SKIPPED {test}: PostgreSQL tests need DATABASE_URL=postgres://... (see README, \"Running the tests\")"
            ));
            None
        }
    }
}

/// Replace the database name in a PostgreSQL URL.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[authority_start..].find('/').map(|i| i + authority_start).unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..host_end])
}

/// A fresh, empty PostgreSQL database for this test; dropped when the returned value is dropped.
pub async fn postgres_db(test: &str) -> Option<TestDb> {
    let admin_url = postgres_admin_url(test)?;
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("{test}: DATABASE_URL is set but PostgreSQL is unreachable: {e}"));
    let name = format!("mbm_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let url = with_database(&admin_url, &name);
    Some(TestDb { url, guard: DbGuard::Postgres { admin_url, name } })
}

/// Open and migrate a store on `url`.
pub async fn open_store(url: &str) -> Store {
    let store = Store::connect(url, &StoreOptions::default(), Arc::new(SystemClock)).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

/// The test audit signing key.
pub fn test_audit_keys() -> Arc<AuditKeys> {
    Arc::new(AuditKeys::from_seeds(&[(TEST_AUDIT_KEY, "TEST_AUDIT_KEY".into())]).expect("test audit key"))
}

/// Open and migrate a store on `url` that signs a checkpoint every `every` records with the test key
/// (as the server and CLI do).
pub async fn open_signing_store(url: &str, every: i64) -> Store {
    open_store(url).await.with_audit_keys(Some(test_audit_keys()), every)
}

/// Take away the append-only protection of the audit tables, as an attacker with superuser rights (or
/// write access to the SQLite file) would.
pub async fn bypass_audit_triggers(store: &Store) {
    let statements: &[&str] = if store.dialect() == make_budget_mcp::store::Dialect::Postgres {
        &["ALTER TABLE audit_log DISABLE TRIGGER USER", "ALTER TABLE audit_checkpoints DISABLE TRIGGER USER"]
    } else {
        &[
            "DROP TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_delete",
            "DROP TRIGGER audit_checkpoints_no_update",
            "DROP TRIGGER audit_checkpoints_no_delete",
        ]
    };
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(*sql)).execute(store.pool()).await.expect("bypass audit triggers");
    }
}

impl TestDb {
    /// A fresh copy of this database (which must have no open connections), dropped with the result.
    pub async fn copy(&self) -> TestDb {
        match &self.guard {
            DbGuard::Sqlite(dir) => {
                let copy = tempfile::tempdir().expect("temp dir");
                for file in ["test.sqlite3", "test.sqlite3-wal", "test.sqlite3-shm"] {
                    if dir.path().join(file).exists() {
                        std::fs::copy(dir.path().join(file), copy.path().join(file)).expect("copy db");
                    }
                }
                let url = format!("sqlite://{}", copy.path().join("test.sqlite3").display());
                TestDb { url, guard: DbGuard::Sqlite(copy) }
            }
            DbGuard::Postgres { admin_url, name } => {
                let mut admin = sqlx::AnyConnection::connect(admin_url).await.expect("admin connection");
                let copy = format!("mbm_test_{}", uuid::Uuid::new_v4().simple());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{copy}\" TEMPLATE \"{name}\"")))
                    .execute(&mut admin)
                    .await
                    .expect("copy database");
                let url = with_database(admin_url, &copy);
                TestDb { url, guard: DbGuard::Postgres { admin_url: admin_url.clone(), name: copy } }
            }
        }
    }
}

/// Row count of a table (optionally filtered by a WHERE clause), across tenants. In PostgreSQL the count
/// runs in system scope, so it counts every row also when the store's role is bound by row-level security
/// (see [`AppRole`]).
pub async fn count(store: &Store, table: &str, filter: &str) -> i64 {
    let sql = if filter.is_empty() {
        format!("SELECT COUNT(*) AS n FROM {table}")
    } else {
        format!("SELECT COUNT(*) AS n FROM {table} WHERE {filter}")
    };
    let mut tx = store.pool().begin().await.expect("begin");
    if store.dialect() == make_budget_mcp::store::Dialect::Postgres {
        sqlx::query("SELECT set_config('mbm.scope', 'system', true)").execute(&mut *tx).await.expect("system scope");
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(&mut *tx).await.expect("count");
    sqlx::Row::try_get::<i64, _>(&row, "n").expect("count value")
}

// ---------------------------------------------------------------------------------------------------
// Row-level security

/// A PostgreSQL login role of its own for one test, granted what the server needs on a migrated test
/// database (`make-budget-mcp db grant-app-role`), so row-level security binds it as it binds `serve` in
/// production. Dropped (with its grants) on drop.
pub struct AppRole {
    pub name: String,
    /// The test database's URL, logging in as this role.
    pub url: String,
    db_url: String,
    admin_url: String,
}

impl AppRole {
    /// Create the role and grant it the server's privileges on `db`, which `owner` (connected to `db` as
    /// its owner) has migrated.
    pub async fn create(db: &TestDb, owner: &Store) -> AppRole {
        let DbGuard::Postgres { admin_url, .. } = &db.guard else { panic!("roles exist only in PostgreSQL") };
        let name = format!("mbm_app_{}", uuid::Uuid::new_v4().simple());
        let password = uuid::Uuid::new_v4().simple().to_string();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")))
            .execute(owner.pool())
            .await
            .expect("create role");
        owner.grant_app_role(&name).await.expect("grant the app role");
        let url = with_user(&db.url, &format!("{name}:{password}"));
        AppRole { name, url, db_url: db.url.clone(), admin_url: admin_url.clone() }
    }

    /// A store connected as this role. It migrates as `serve` does at start: with nothing pending, that
    /// must succeed without the owner's rights.
    pub async fn store(&self) -> Store {
        open_store(&self.url).await
    }
}

impl Drop for AppRole {
    fn drop(&mut self) {
        let (name, db_url, admin_url) = (self.name.clone(), self.db_url.clone(), self.admin_url.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                sqlx::any::install_default_drivers();
                // The grants live in the test database (if it still exists); the role in the cluster.
                if let Ok(mut c) = sqlx::AnyConnection::connect(&db_url).await {
                    let sql = format!("DROP OWNED BY \"{name}\"");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                }
                if let Ok(mut c) = sqlx::AnyConnection::connect(&admin_url).await {
                    let sql = format!("DROP ROLE IF EXISTS \"{name}\"");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                }
            });
        })
        .join();
    }
}

/// Replace the user (and password) in a PostgreSQL URL.
fn with_user(url: &str, userinfo: &str) -> String {
    let authority_start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let rest = &url[authority_start..];
    let host_start = rest.find('/').map_or(rest.len(), |slash| rest[..slash].rfind('@').map_or(0, |at| at + 1));
    format!("{}{userinfo}@{}", &url[..authority_start], &rest[host_start..])
}

/// Make every audit append fail (as a full disk or a bug would), to prove the mutation rolls back too.
pub async fn break_audit_inserts(store: &Store) {
    if store.dialect() == make_budget_mcp::store::Dialect::Postgres {
        sqlx::query(
            "CREATE FUNCTION test_fail_audit() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'forced audit failure'; END $$",
        )
        .execute(store.pool())
        .await
        .unwrap();
        sqlx::query(
            "CREATE TRIGGER test_fail_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION test_fail_audit()",
        )
        .execute(store.pool())
        .await
        .unwrap();
    } else {
        sqlx::query(
            "CREATE TRIGGER test_fail_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'forced audit failure'); END",
        )
        .execute(store.pool())
        .await
        .unwrap();
    }
}

pub async fn repair_audit_inserts(store: &Store) {
    let sql = if store.dialect() == make_budget_mcp::store::Dialect::Postgres {
        "DROP TRIGGER test_fail_audit ON audit_log"
    } else {
        "DROP TRIGGER test_fail_audit"
    };
    sqlx::query(sql).execute(store.pool()).await.unwrap();
}

// ---------------------------------------------------------------------------------------------------
// Domain fixtures

pub fn budget_args(name: &str) -> Value {
    json!({
        "name": name,
        "description": "test budget",
        "unit": "credits",
        "limit": 40000,
        "money": {"currency": "EUR", "price_per_1000_units_minor": 900},
        "period": {"kind": "monthly"},
        "timezone": "Europe/Prague",
        "scope": {"organization_id": 10, "team_ids": [16], "excluded_scenario_ids": [99]}
    })
}

pub fn draft(name: &str) -> BudgetDraft {
    serde_json::from_value(budget_args(name)).unwrap()
}

pub fn test_entry(action: &str, target: &str) -> AuditEntry {
    AuditEntry {
        actor: Actor { subject: "tester".into(), role: "admin".into(), transport: "cli".into() },
        action: action.into(),
        target: target.into(),
        outcome: Outcome::Success,
        reason: None,
        request_id: uuid::Uuid::new_v4().to_string(),
        before: None,
        after: Some(json!({"note": "test"})),
    }
}

pub fn test_actor() -> Actor {
    Actor { subject: "tester".into(), role: "admin".into(), transport: "cli".into() }
}

// ---------------------------------------------------------------------------------------------------
// The binary

fn command(db_url: &str) -> std::process::Command {
    let mut c = std::process::Command::new(bin());
    c.env("MBM_DATABASE_URL", db_url)
        .env("MBM_CONFIG", "/dev/null")
        .env("MBM_LOG", "warn")
        .env("MBM_MASTER_KEY", TEST_MASTER_KEY)
        .env("MBM_AUDIT_SIGNING_KEY", TEST_AUDIT_KEY)
        .env(ALLOW_LOOPBACK.0, ALLOW_LOOPBACK.1)
        .env(ALL_TOOLSETS.0, ALL_TOOLSETS.1);
    c
}

/// Run a CLI command with extra environment variables (a value of [`UNSET`] removes one).
pub fn cli_env(db_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = command(db_url);
    apply_env(&mut c, env);
    c.args(args).output().expect("run make-budget-mcp")
}

/// Run a CLI command to completion.
pub fn cli(db_url: &str, args: &[&str]) -> Output {
    command(db_url).args(args).output().expect("run make-budget-mcp")
}

/// Run a CLI command that must succeed; returns its trimmed stdout.
pub fn cli_ok(db_url: &str, args: &[&str]) -> String {
    let out = cli(db_url, args);
    assert!(
        out.status.success(),
        "make-budget-mcp {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub fn create_tenant(db_url: &str, name: &str) -> String {
    cli_ok(db_url, &["tenant", "create", name])
}

pub fn issue_token(db_url: &str, tenant: &str, role: &str, subject: &str) -> String {
    cli_ok(db_url, &["token", "issue", "--tenant", tenant, "--role", role, "--subject", subject])
}

/// The server binary serving streamable HTTP on a free loopback port. Killed on drop.
pub struct HttpServer {
    child: tokio::process::Child,
    /// e.g. http://127.0.0.1:40123
    pub base: String,
    /// e.g. http://127.0.0.1:40123/mcp
    pub mcp_url: String,
    logs: Arc<Mutex<String>>,
}

impl HttpServer {
    pub async fn start(db_url: &str) -> Self {
        Self::start_with(db_url, &[]).await
    }

    pub async fn start_with(db_url: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = tokio::process::Command::new(bin());
        cmd.args(["serve", "--transport", "http", "--listen", "127.0.0.1:0"])
            .env("MBM_DATABASE_URL", db_url)
            .env("MBM_CONFIG", "/dev/null")
            .env("MBM_LOG", "info")
            .env("MBM_MASTER_KEY", TEST_MASTER_KEY)
            .env("MBM_AUDIT_SIGNING_KEY", TEST_AUDIT_KEY)
            .envs(NO_RATE_LIMITS)
            .env(ALLOW_LOOPBACK.0, ALLOW_LOOPBACK.1)
            .env(ALL_TOOLSETS.0, ALL_TOOLSETS.1)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        apply_env(cmd.as_std_mut(), env);
        let mut child = cmd.spawn().expect("spawn server");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let logs = Arc::new(Mutex::new(String::new()));
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read server stderr") {
                logs.lock().unwrap().push_str(&line);
                logs.lock().unwrap().push('\n');
                if let Some(rest) = line.strip_prefix("make-budget-mcp listening on ") {
                    return rest.trim_end_matches("/mcp").to_owned();
                }
            }
            panic!("server exited before listening:\n{}", logs.lock().unwrap());
        })
        .await
        .expect("server did not start within 30 s");
        let sink = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mcp_url = format!("{base}/mcp");
        HttpServer { child, base, mcp_url, logs }
    }

    /// The server's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("server still running")
    }

    /// Everything the server wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// Send SIGTERM, as an orchestrator does, and wait (at most 60 s) for the process to exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("server still running").to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("server exits within 60 s of SIGTERM")
            .expect("wait for server")
    }
}

/// Secrets the tests hand to servers; none may ever appear in a server's log.
pub const SECRETS: [&str; 3] = [MAKE_TOKEN, TEST_MASTER_KEY, TEST_AUDIT_KEY];

/// Every server the suite starts is checked when it goes away: its whole log must be free of secrets.
impl Drop for HttpServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let logs = self.logs();
        for secret in SECRETS {
            if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
                panic!("a secret appears in the server log: {}", &line[..line.len().min(300)]);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// `initialize` handshake (protocol 2025-11-25 with rmcp's client).
    Initialize,
    /// Stateless 2026-07-28 `server/discover` lifecycle.
    Discover,
}

impl Lifecycle {
    fn mode(self) -> ClientLifecycleMode {
        match self {
            Lifecycle::Initialize => ClientLifecycleMode::Initialize,
            Lifecycle::Discover => {
                ClientLifecycleMode::Discover { preferred_versions: vec![ProtocolVersion::V_2026_07_28] }
            }
        }
    }

    pub fn expected_version(self) -> ProtocolVersion {
        match self {
            Lifecycle::Initialize => ProtocolVersion::V_2025_11_25,
            Lifecycle::Discover => ProtocolVersion::V_2026_07_28,
        }
    }
}

/// A client handler that records the progress notifications it receives.
#[derive(Clone, Default)]
pub struct ProgressRecorder(pub Arc<Mutex<Vec<rmcp::model::ProgressNotificationParam>>>);

impl rmcp::ClientHandler for ProgressRecorder {
    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        self.0.lock().unwrap().push(params);
    }
}

pub type RecordingClient = RunningService<RoleClient, ProgressRecorder>;

/// An HTTP client that records progress notifications.
pub async fn http_recording_client(mcp_url: &str, token: &str) -> (RecordingClient, ProgressRecorder) {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(mcp_url.to_owned()).auth_header(token.to_owned()),
    );
    let recorder = ProgressRecorder::default();
    let client = recorder
        .clone()
        .serve_with_lifecycle(transport, ClientLifecycleMode::Initialize)
        .await
        .expect("connect MCP client over HTTP");
    (client, recorder)
}

pub async fn http_client(mcp_url: &str, token: &str, lifecycle: Lifecycle) -> Client {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(mcp_url.to_owned()).auth_header(token.to_owned()),
    );
    ().serve_with_lifecycle(transport, lifecycle.mode()).await.expect("connect MCP client over HTTP")
}

/// `make-budget-mcp serve` (stdio) on `db_url` with the test master key, logging at info, loopback allowed
/// for outbound requests, plus `env` (a value of [`UNSET`] removes a variable).
fn stdio_command(db_url: &str, env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.arg("serve")
        .env("MBM_DATABASE_URL", db_url)
        .env("MBM_CONFIG", "/dev/null")
        .env("MBM_LOG", "info")
        .env("MBM_MASTER_KEY", TEST_MASTER_KEY)
        .env("MBM_AUDIT_SIGNING_KEY", TEST_AUDIT_KEY)
        .envs(NO_RATE_LIMITS)
        .env(ALLOW_LOOPBACK.0, ALLOW_LOOPBACK.1)
        .env(ALL_TOOLSETS.0, ALL_TOOLSETS.1);
    apply_env(cmd.as_std_mut(), env);
    cmd
}

/// The binary as a stdio MCP server, as Claude Desktop runs it. Returns the client and a handle on the
/// child's stderr (its logs).
pub async fn stdio_client(db_url: &str, env: &[(&str, &str)], lifecycle: Lifecycle) -> (Client, Arc<Mutex<String>>) {
    let cmd = stdio_command(db_url, env);
    let (transport, stderr) =
        TokioChildProcess::builder(cmd).stderr(Stdio::piped()).spawn().expect("spawn stdio server");
    let logs = Arc::new(Mutex::new(String::new()));
    if let Some(stderr) = stderr {
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    let client = ().serve_with_lifecycle(transport, lifecycle.mode()).await.expect("connect MCP client over stdio");
    (client, logs)
}

// ---------------------------------------------------------------------------------------------------
// Tool calls

pub async fn call(client: &Peer<RoleClient>, tool: &str, args: Value) -> CallToolResult {
    let args = match args {
        Value::Object(m) => m,
        Value::Null => Default::default(),
        other => panic!("tool arguments must be an object, got {other}"),
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool}: protocol error {e}"))
}

pub fn text_of(r: &CallToolResult) -> String {
    r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join("\n")
}

/// The structured result of a successful call.
pub fn ok_json(r: &CallToolResult) -> Value {
    assert_ne!(r.is_error, Some(true), "expected success, got error: {}", text_of(r));
    r.structured_content.clone().unwrap_or_else(|| panic!("no structured content: {}", text_of(r)))
}

/// The message of a failed call.
pub fn err_text(r: &CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "expected an error, got: {}", text_of(r));
    text_of(r)
}

/// Call a tool and return its structured result, failing the test on error.
pub async fn call_ok(client: &Peer<RoleClient>, tool: &str, args: Value) -> Value {
    ok_json(&call(client, tool, args).await)
}

/// Call a tool that must fail; returns the error text.
pub async fn call_err(client: &Peer<RoleClient>, tool: &str, args: Value) -> String {
    err_text(&call(client, tool, args).await)
}

// ---------------------------------------------------------------------------------------------------
// A seeded fake Make (see fake_make.rs): what the Make-facing tests sync and control.

pub const MAKE_TOKEN: &str = "3b1f6c2a-8d4e-4f7a-9c1b-5e6d7f8a9b0c";
/// Organizations the token covers; ORG2 reports string counters and no centicredits (an older zone).
pub const ORG: i64 = 1054;
pub const ORG2: i64 = 1055;
/// An organization that exists in the fake but that MAKE_TOKEN does not cover.
pub const FOREIGN_ORG: i64 = 2001;
/// Scenarios of ORG: 501–503 active (501 every 15 min, 503 webhook), 504 inactive without usage, 505
/// inactive but with usage this period.
pub const ORG_SCENARIOS: [i64; 5] = [501, 502, 503, 504, 505];

/// The 30 days the fake's usage endpoints return (ending at its default "today").
pub fn usage_days() -> Vec<jiff::civil::Date> {
    usage_days_to(fake_make::DEFAULT_TODAY)
}

/// The 30 days ending with `today`.
pub fn usage_days_to(today: jiff::civil::Date) -> Vec<jiff::civil::Date> {
    (0..30).rev().map(|back| today.checked_sub(jiff::Span::new().days(back)).unwrap()).collect()
}

/// Today in UTC, by the system clock (the server's clock in tests that drive the binary).
pub fn utc_today() -> jiff::civil::Date {
    jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date()
}

/// Centicredits of `scenario` on the `i`-th of those days.
pub fn centicredits_on(scenario: i64, i: usize) -> u64 {
    match scenario {
        501 => 1_000 + 10 * i as u64,
        502 => 250,
        503 if i.is_multiple_of(2) => 5_000,
        // Inactive now, but it ran today: consumption in the current period, whatever the date.
        505 if i == 29 => 300,
        601 => 700,
        602 => 1_200,
        701 => 900,
        _ => 0,
    }
}

/// Total centicredits of `scenario` over the 30 days.
pub fn expected_centicredits(scenario: i64) -> i64 {
    (0..30).map(|i| centicredits_on(scenario, i) as i64).sum()
}

pub async fn seeded_fake() -> fake_make::FakeMake {
    seeded_fake_at(fake_make::DEFAULT_TODAY).await
}

/// The seeded fake with `today` as its current day and a billing period of `today`'s calendar month.
pub async fn seeded_fake_at(today: jiff::civil::Date) -> fake_make::FakeMake {
    use fake_make::{AuthKind, CounterStyle, FakeMake, OrgSpec, ScenarioSpec};
    let fake = FakeMake::start().await;
    fake.set_today(today);
    let utc = |d: jiff::civil::Date| d.to_zoned_datetime(jiff::tz::TimeZone::UTC).unwrap().timestamp();
    let month = today.first_of_month();
    let period = |org: OrgSpec| OrgSpec {
        last_reset: utc(month),
        next_reset: Some(utc(month.checked_add(jiff::Span::new().months(1)).unwrap())),
        api_limit: 60_000,
        // Served as the fake's own host: the zone a client reaches it at, as Make serves an
        // organization's zone.
        zone: String::new(),
        ..org
    };
    fake.add_token(MAKE_TOKEN, AuthKind::Token, &[ORG, ORG2]);
    // A high API limit keeps the client's pacing out of the way; pacing has its own test.
    fake.add_organization(period(OrgSpec::new(ORG, "Acme")));
    fake.add_organization(period(OrgSpec::new(ORG2, "Acme Legacy")));
    fake.add_organization(OrgSpec::new(FOREIGN_ORG, "Someone else"));
    fake.add_team(ORG, 16, "Marketing");
    fake.add_team(ORG, 17, "Operations");
    fake.add_team(ORG2, 30, "Legacy");
    fake.add_team(FOREIGN_ORG, 40, "Theirs");
    let scenario = |id, org, team, name: &str, active: bool, interval: Option<u64>, folder: Option<i64>| ScenarioSpec {
        is_active: active,
        interval_secs: interval,
        folder_id: folder,
        ..ScenarioSpec::new(id, org, team, name)
    };
    fake.add_scenario(scenario(501, ORG, 16, "Lead sync", true, Some(900), None));
    fake.add_scenario(scenario(502, ORG, 16, "Newsletter", true, Some(3600), Some(7)));
    fake.add_scenario(scenario(503, ORG, 17, "Order webhook", true, None, None));
    fake.add_scenario(scenario(504, ORG, 17, "Old report", false, Some(86_400), None));
    fake.add_scenario(scenario(505, ORG, 16, "Campaign", false, Some(900), Some(7)));
    fake.add_scenario(scenario(601, ORG2, 30, "Legacy import", true, Some(600), None));
    fake.add_scenario(scenario(602, ORG2, 30, "Legacy export", true, Some(600), None));
    fake.add_scenario(scenario(701, FOREIGN_ORG, 40, "Not ours", true, Some(600), None));
    for (i, day) in usage_days_to(today).into_iter().enumerate() {
        for id in [501, 502, 503, 504, 505, 601, 602, 701] {
            let cc = centicredits_on(id, i);
            if cc > 0 {
                fake.set_usage(id, day, cc, cc / 100);
            }
        }
    }
    fake.set_counter_style(ORG2, CounterStyle::Strings);
    fake.omit_centicredits(ORG2, true);
    fake
}

pub fn connect_args(fake: &fake_make::FakeMake, orgs: &[i64]) -> Value {
    json!({"zone": fake.base_url(), "auth_kind": "api_token", "token": MAKE_TOKEN, "organization_ids": orgs,
           "label": "test connection"})
}

// ---------------------------------------------------------------------------------------------------
// Webhook receiver

/// One request a [`WebhookReceiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub event_type: String,
    pub event_id: String,
    pub body: Value,
    /// Whether the signature checked out with the receiver's secret.
    pub signature_ok: bool,
}

/// A local HTTP endpoint that records webhook deliveries and checks their signatures; it answers with
/// the statuses queued by [`WebhookReceiver::fail_next`], then 200.
#[derive(Clone)]
pub struct WebhookReceiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    failures: Arc<Mutex<Vec<u16>>>,
}

impl WebhookReceiver {
    pub async fn start(secret: &str) -> Self {
        use axum::http::{HeaderMap, StatusCode};
        use make_budget_mcp::notify;
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let failures: Arc<Mutex<Vec<u16>>> = Arc::default();
        let (rec, fail, secret) = (received.clone(), failures.clone(), secret.to_owned());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (rec, fail, secret) = (rec.clone(), fail.clone(), secret.clone());
                async move {
                    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    let now = jiff::Timestamp::now().as_second();
                    let ok = notify::verify(
                        secret.as_bytes(),
                        &h(notify::TIMESTAMP_HEADER),
                        &body,
                        &h(notify::SIGNATURE_HEADER),
                        now,
                        300,
                    )
                    .is_ok();
                    let status = {
                        let mut f = fail.lock().unwrap();
                        if f.is_empty() { 200 } else { f.remove(0) }
                    };
                    if status == 200 {
                        rec.lock().unwrap().push(Received {
                            event_type: h(notify::EVENT_TYPE_HEADER),
                            event_id: h(notify::EVENT_ID_HEADER),
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                            signature_ok: ok,
                        });
                    }
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        WebhookReceiver { url, received, failures }
    }

    /// Answer the next requests with these statuses (then 200 again).
    pub fn fail_next(&self, statuses: &[u16]) {
        self.failures.lock().unwrap().extend_from_slice(statuses);
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn of_type(&self, event_type: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.event_type == event_type).collect()
    }
}

/// How many `method` requests for `path` the fake Make got.
pub fn requests_to(fake: &fake_make::FakeMake, method: &str, path: &str) -> usize {
    fake.requests().iter().filter(|r| r.method == method && r.path == path).count()
}

/// Poll `check` every 200 ms until it is true or `secs` pass; panics with `what` on timeout.
pub async fn wait_until<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out after {secs} s waiting for {what}");
}

/// Poll `check` every 20 ms until it is true or `secs` pass, without failing: the caller's assertions then
/// say what is wrong. For waits on something another task or process finishes (a delayed answer of the
/// fake Make) instead of sleeping for as long as it might take.
pub async fn settle(secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !check() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An MCP client that supports form elicitation and answers every confirmation with `confirm`, recording
/// the questions it was asked.
#[derive(Clone)]
pub struct Confirmer {
    pub confirm: bool,
    pub asked: Arc<Mutex<Vec<String>>>,
}

impl rmcp::ClientHandler for Confirmer {
    fn get_info(&self) -> rmcp::model::ClientConfig {
        let mut info = rmcp::model::ClientConfig::default();
        info.capabilities = rmcp::model::ClientCapabilities::builder().enable_elicitation().build();
        info
    }

    async fn create_elicitation(
        &self,
        request: rmcp::model::ElicitRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        if let rmcp::model::ElicitRequestParams::FormElicitationParams { message, .. } = &request {
            self.asked.lock().unwrap().push(message.clone());
        }
        Ok(rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Accept)
            .with_content(json!({"confirm": self.confirm})))
    }
}

/// The binary over stdio with a [`Confirmer`] as the client.
pub async fn stdio_confirmer(
    db_url: &str,
    env: &[(&str, &str)],
    confirm: bool,
) -> (RunningService<RoleClient, Confirmer>, Arc<Mutex<Vec<String>>>) {
    let cmd = stdio_command(db_url, env);
    let (transport, _) = TokioChildProcess::builder(cmd).stderr(Stdio::null()).spawn().expect("spawn stdio server");
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let handler = Confirmer { confirm, asked: asked.clone() };
    let client = handler.serve_with_lifecycle(transport, ClientLifecycleMode::Initialize).await.expect("connect");
    (client, asked)
}
