//! The command line: `serve` (stdio or HTTP), `migrate`, tenant and token administration, and
//! `audit verify`. Every option can also come from an `MBM_*` environment variable or the config file
//! (see `config.rs` for the layering).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::app::App;
use crate::audit::Actor;
use crate::auth::{Principal, Role, Transport};
use crate::config::{self, Config, FileConfig, LogFormat, Overrides};
use crate::domain::{SystemClock, TenantId};
use crate::make::MakeClient;
use crate::mcp::BudgetServer;
use crate::store::{Store, StoreOptions};

#[derive(Debug, Parser)]
#[command(name = "make-budget-mcp", version, about = "MCP server that keeps Make.com credit spend under budget")]
pub struct Cli {
    /// Config file (TOML). Default: <config dir>/make-budget-mcp/config.toml if it exists.
    #[arg(long, global = true, env = "MBM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database: sqlite://PATH (default: a file in your data directory) or postgres://USER@HOST/DB.
    #[arg(long, global = true, env = "MBM_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Largest number of pooled database connections.
    #[arg(long, global = true, env = "MBM_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// Log filter in RUST_LOG syntax, e.g. "info" or "debug,sqlx=warn". Logs go to stderr.
    #[arg(long, global = true, env = "MBM_LOG")]
    pub log: Option<String>,
    #[arg(long, global = true, env = "MBM_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// File holding the master key that encrypts Make credentials (first key line current, later lines
    /// previous). The key itself can be given as MBM_MASTER_KEY (environment only).
    #[arg(long, global = true, env = "MBM_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Timeout of each Make API request, in seconds.
    #[arg(long, global = true, env = "MBM_MAKE_REQUEST_TIMEOUT_SECS")]
    pub make_request_timeout_secs: Option<u64>,
    /// Attempts per Make API call, the first included.
    #[arg(long, global = true, env = "MBM_MAKE_MAX_ATTEMPTS")]
    pub make_max_attempts: Option<u32>,
    /// First retry delay for Make API calls, in milliseconds.
    #[arg(long, global = true, env = "MBM_MAKE_RETRY_BASE_DELAY_MS")]
    pub make_retry_base_delay_ms: Option<u64>,
    /// Seconds between background evaluator passes in `serve`; 0 switches it off.
    #[arg(long, global = true, env = "MBM_EVALUATE_INTERVAL_SECS")]
    pub evaluate_interval_secs: Option<u64>,
    /// Minutes a pause plan waits for approval before it expires.
    #[arg(long, global = true, env = "MBM_APPROVAL_TTL_MINUTES")]
    pub approval_ttl_minutes: Option<i64>,
    /// Seconds a lease on a unit of work lasts (how soon another instance takes over a crashed one's work).
    #[arg(long, global = true, env = "MBM_LEASE_SECS")]
    pub lease_secs: Option<u64>,
    /// Milliseconds between attempts on one scenario while executing a plan.
    #[arg(long, global = true, env = "MBM_SCENARIO_RETRY_DELAY_MS")]
    pub scenario_retry_delay_ms: Option<u64>,
    /// First retry delay of a webhook delivery, in milliseconds.
    #[arg(long, global = true, env = "MBM_WEBHOOK_RETRY_BASE_MS")]
    pub webhook_retry_base_ms: Option<u64>,
    /// Webhook delivery attempts before a notification counts as failed.
    #[arg(long, global = true, env = "MBM_WEBHOOK_MAX_ATTEMPTS")]
    pub webhook_max_attempts: Option<u32>,
    /// pause_scenarios asks the human to confirm pausing more than this many scenarios at once.
    #[arg(long, global = true, env = "MBM_CONFIRM_PAUSE_OVER")]
    pub confirm_pause_over: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MCP over stdio (the default, for Claude Desktop and other local clients) or streamable HTTP.
    Serve(ServeArgs),
    /// Apply database migrations and exit (serve also applies them at start).
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Manage API tokens for the HTTP transport.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Inspect the tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Manage the master key that encrypts Make credentials.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Budget reports.
    #[command(subcommand)]
    Budget(BudgetCmd),
    /// Run the background evaluator: sync usage, evaluate budgets, run plans, deliver webhooks.
    Evaluate {
        /// One pass, then exit (for cron). Exits 1 if the pass met errors.
        #[arg(long)]
        once: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BudgetCmd {
    /// Write a PNG chart of a budget's current period (the same picture as the get_budget_chart tool).
    Chart {
        /// Budget id.
        id: String,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
        /// Tenant id or name (default: the budget's own tenant).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = crate::chart::DEFAULT_WIDTH)]
        width: u32,
        #[arg(long, default_value_t = crate::chart::DEFAULT_HEIGHT)]
        height: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Print a new random master key (base64). Store it as MBM_MASTER_KEY or in a key file.
    Generate,
    /// Print the id of the configured master key (ids are stored beside every encrypted secret).
    Current,
    /// Re-encrypt every stored secret under the current master key. Configure the new key as
    /// MBM_MASTER_KEY and the old one in MBM_PREVIOUS_MASTER_KEYS (or list both in the key file).
    Rotate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    Stdio,
    Http,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, value_enum, default_value = "stdio", env = "MBM_TRANSPORT")]
    pub transport: TransportArg,
    /// HTTP listen address.
    #[arg(long, env = "MBM_LISTEN")]
    pub listen: Option<String>,
    /// Host header values accepted over HTTP (repeat or comma-separate). Default: loopback names.
    #[arg(long = "allowed-host", env = "MBM_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Option<Vec<String>>,
    /// Origin header values accepted over HTTP (repeat or comma-separate).
    #[arg(long = "allowed-origin", env = "MBM_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Tenant of the stdio operator (created on first run). Default "local".
    #[arg(long, env = "MBM_LOCAL_TENANT")]
    pub local_tenant: Option<String>,
    /// Subject of the stdio operator. Default: your OS user name.
    #[arg(long, env = "MBM_LOCAL_SUBJECT")]
    pub local_subject: Option<String>,
    /// Role of the stdio operator. Default admin.
    #[arg(long, env = "MBM_LOCAL_ROLE", value_enum)]
    pub local_role: Option<Role>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant and print its id.
    Create { name: String },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Issue an API token and print it (once; only its hash is stored).
    Issue {
        /// Tenant id or name.
        #[arg(long)]
        tenant: String,
        #[arg(long, value_enum)]
        role: Role,
        /// Who the token is for, e.g. "ci-bot" or "alice@example.com"; recorded in the audit log.
        #[arg(long)]
        subject: String,
        /// Expire the token after this many days (1–3650). Default: never.
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
    /// Revoke a token by its id.
    Revoke { token_id: String },
    /// List a tenant's tokens (ids and metadata, never secrets).
    List {
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Verify every tenant's hash chain (or one tenant's). Exits 1 naming the first bad record.
    Verify {
        /// Tenant id or name.
        #[arg(long)]
        tenant: Option<String>,
    },
}

impl Cli {
    fn overrides(&self) -> Overrides {
        let serve = match &self.command {
            Command::Serve(s) => Some(s),
            _ => None,
        };
        Overrides {
            database_url: self.database_url.clone(),
            log: self.log.clone(),
            log_format: self.log_format,
            max_connections: self.db_max_connections,
            local_tenant: serve.and_then(|s| s.local_tenant.clone()),
            local_subject: serve.and_then(|s| s.local_subject.clone()),
            local_role: serve.and_then(|s| s.local_role),
            listen: serve.and_then(|s| s.listen.clone()),
            allowed_hosts: serve.and_then(|s| s.allowed_hosts.clone()),
            allowed_origins: serve.and_then(|s| s.allowed_origins.clone()),
            master_key: std::env::var("MBM_MASTER_KEY").ok(),
            previous_master_keys: std::env::var("MBM_PREVIOUS_MASTER_KEYS").ok(),
            master_key_file: self.master_key_file.clone(),
            make_request_timeout_secs: self.make_request_timeout_secs,
            make_max_attempts: self.make_max_attempts,
            make_retry_base_delay_ms: self.make_retry_base_delay_ms,
            evaluate_interval_secs: self.evaluate_interval_secs,
            approval_ttl_minutes: self.approval_ttl_minutes,
            lease_secs: self.lease_secs,
            scenario_retry_delay_ms: self.scenario_retry_delay_ms,
            webhook_retry_base_ms: self.webhook_retry_base_ms,
            webhook_max_attempts: self.webhook_max_attempts,
            confirm_pause_over: self.confirm_pause_over,
        }
    }
}

/// Run the CLI; the returned code is the process exit status (0 ok, 1 audit chain broken, 2 error).
pub async fn run(cli: Cli) -> ExitCode {
    match run_inner(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run_inner(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = match cli.config.clone().or_else(config::default_config_path) {
        Some(path) => config::read_file(&path)?,
        None => FileConfig::default(),
    };
    let config = Config::resolve(file, cli.overrides())?;
    crate::telemetry::init(&config.log, config.log_format);

    let store = Store::connect(
        &config.database_url,
        &StoreOptions { max_connections: config.max_connections, ..Default::default() },
        Arc::new(SystemClock),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", crate::store::redact_url(&config.database_url)))?;
    store.migrate().await?;

    let code = match cli.command {
        Command::Serve(args) => serve(build_app(store.clone(), &config).await?, &config, args.transport).await?,
        Command::Evaluate { once } => evaluate(build_app(store.clone(), &config).await?, &config, once).await?,
        Command::Migrate => {
            eprintln!("migrations applied to {}", crate::store::redact_url(&config.database_url));
            ExitCode::SUCCESS
        }
        Command::Tenant(cmd) => tenant(&store, cmd).await?,
        Command::Token(cmd) => token(&store, cmd).await?,
        Command::Audit(AuditCmd::Verify { tenant }) => audit_verify(&store, tenant.as_deref()).await?,
        Command::Keys(cmd) => keys(&store, &config, cmd).await?,
        Command::Budget(BudgetCmd::Chart { id, output, tenant, width, height }) => {
            budget_chart(&store, &id, &output, tenant.as_deref(), width, height).await?
        }
    };
    store.close().await;
    Ok(code)
}

/// Everything a server shares. Fails with a clear message when stored Make credentials cannot be
/// decrypted with the configured master key.
async fn build_app(store: Store, config: &Config) -> anyhow::Result<Arc<App>> {
    let keys = config.keys.load()?;
    let make = MakeClient::new(config.make.clone())?;
    let app = App {
        store,
        make,
        keys,
        actions: config.actions.clone(),
        webhooks: crate::notify::WebhookClient::new(config.webhook_timeout),
        instance: crate::app::instance_name(),
    };
    app.check_secret_keys().await?;
    Ok(Arc::new(app))
}

fn cli_actor() -> Actor {
    let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown".into());
    Actor {
        subject: format!("cli:{user}"),
        role: Role::Admin.as_str().into(),
        transport: Transport::Cli.as_str().into(),
    }
}

async fn evaluate(app: Arc<App>, config: &Config, once: bool) -> anyhow::Result<ExitCode> {
    if once {
        let report = crate::engine::evaluator::run_once(&app).await;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(if report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let interval = std::time::Duration::from_secs(config.evaluate_interval_secs.max(1));
    crate::engine::evaluator::run_forever(app, interval, shutdown).await;
    Ok(ExitCode::SUCCESS)
}

async fn serve(app: Arc<App>, config: &Config, transport: TransportArg) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let evaluator = (config.evaluate_interval_secs > 0).then(|| {
        let interval = std::time::Duration::from_secs(config.evaluate_interval_secs);
        tokio::spawn(crate::engine::evaluator::run_forever(app.clone(), interval, shutdown.clone()))
    });
    match transport {
        TransportArg::Http => {
            crate::http::serve(app, config.http.clone(), shutdown.clone()).await?;
        }
        TransportArg::Stdio => {
            let local = &config.local;
            let actor = Actor {
                subject: local.subject.clone(),
                role: local.role.as_str().into(),
                transport: Transport::Stdio.as_str().into(),
            };
            let tenant = admin::ensure_tenant(&app.store, &local.tenant, &actor).await?;
            let principal = Principal {
                tenant_id: tenant.id.parse::<TenantId>()?,
                tenant_name: tenant.name,
                subject: local.subject.clone(),
                role: local.role,
                transport: Transport::Stdio,
                token_id: None,
            };
            tracing::info!(tenant = %principal.tenant_id, subject = principal.subject, role = %principal.role,
                           "serving MCP over stdio");
            let server = BudgetServer::new(app, Arc::new(BudgetServer::router()), Some(principal));
            let running = server.serve(rmcp::transport::stdio()).await?;
            let ct = running.cancellation_token();
            tokio::select! {
                r = running.waiting() => { r?; }
                _ = shutdown.cancelled() => { ct.cancel(); }
            }
        }
    }
    shutdown.cancel();
    if let Some(e) = evaluator {
        let _ = e.await;
    }
    Ok(ExitCode::SUCCESS)
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}

async fn tenant(store: &Store, cmd: TenantCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TenantCmd::Create { name } => {
            let t = admin::create_tenant(store, &name, &cli_actor()).await?;
            eprintln!("created tenant {:?}", t.name);
            println!("{}", t.id);
        }
        TenantCmd::List => {
            for t in store.tenants().await? {
                println!("{}\t{}\t{}", t.id, t.name, t.created_at);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn token(store: &Store, cmd: TokenCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCmd::Issue { tenant, role, subject, expires_in_days } => {
            let t = admin::find_tenant(store, &tenant).await?;
            let (rec, secret) = admin::issue_token(store, &t, role, &subject, expires_in_days, &cli_actor()).await?;
            eprintln!(
                "issued token {} for {:?} ({}) in tenant {:?}{}; it is shown once, store it now",
                rec.id,
                rec.subject,
                rec.role,
                rec.tenant_name,
                rec.expires_at.as_deref().map(|e| format!(", expires {e}")).unwrap_or_default()
            );
            println!("{secret}");
        }
        TokenCmd::Revoke { token_id } => {
            let rec = admin::revoke_token(store, &token_id, &cli_actor()).await?;
            eprintln!("revoked token {} of {:?} in tenant {:?}", rec.id, rec.subject, rec.tenant_name);
        }
        TokenCmd::List { tenant } => {
            let t = admin::find_tenant(store, &tenant).await?;
            let id: TenantId = t.id.parse()?;
            for k in store.tenant(id).tokens().await? {
                let state = match (&k.revoked_at, &k.expires_at) {
                    (Some(r), _) => format!("revoked {r}"),
                    (None, Some(e)) => format!("expires {e}"),
                    (None, None) => "active".into(),
                };
                println!("{}\t{}\t{}\t{}", k.id, k.subject, k.role, state);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit_verify(store: &Store, tenant: Option<&str>) -> anyhow::Result<ExitCode> {
    let only = match tenant {
        Some(t) => Some(admin::find_tenant(store, t).await?.id.parse::<TenantId>()?),
        None => None,
    };
    let report = store.verify_audit(only).await?;
    for c in &report.chains {
        match &c.first_break {
            None => println!(
                "ok      tenant {:?} ({}): {} records, head seq {} hash {}",
                c.tenant_name, c.tenant_id, c.records_checked, c.head_seq, c.head_hash
            ),
            Some(reason) => println!("BROKEN  tenant {:?} ({}): {reason}", c.tenant_name, c.tenant_id),
        }
    }
    Ok(if report.is_valid() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A sealed secret that `keys rotate` re-encrypts.
enum StoredSecret {
    Connection(String),
    Webhook(String),
}

impl StoredSecret {
    fn target(&self) -> String {
        match self {
            StoredSecret::Connection(id) => format!("make_connection:{id}"),
            StoredSecret::Webhook(id) => format!("webhook:{id}"),
        }
    }
}

async fn keys(store: &Store, config: &Config, cmd: KeysCmd) -> anyhow::Result<ExitCode> {
    if let KeysCmd::Generate = cmd {
        println!("{}", crate::crypto::generate_key_text());
        return Ok(ExitCode::SUCCESS);
    }
    let ring = config.keys.load()?.ok_or(crate::crypto::KeyError::Missing)?;
    if let KeysCmd::Current = cmd {
        println!("{}", ring.current_id());
        return Ok(ExitCode::SUCCESS);
    }
    let mut secrets: Vec<(String, StoredSecret, crate::crypto::Sealed)> = Vec::new();
    for (tenant, conn) in store.all_connections().await? {
        secrets.push((tenant, StoredSecret::Connection(conn.id), conn.sealed));
    }
    for (tenant, hook) in store.all_webhooks().await? {
        secrets.push((tenant, StoredSecret::Webhook(hook.id), hook.sealed));
    }
    let (mut rotated, mut current, mut failed) = (0, 0, 0);
    for (tenant, which, old) in secrets {
        if old.key_id == ring.current_id() {
            current += 1;
            continue;
        }
        let binding = match &which {
            StoredSecret::Connection(id) => App::binding(&tenant, id),
            StoredSecret::Webhook(id) => App::webhook_binding(&tenant, id),
        };
        let plain = match ring.open(&old, binding) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{} of tenant {tenant}: {e}", which.target());
                failed += 1;
                continue;
            }
        };
        let sealed = ring.seal(&plain, binding);
        let mut tx = store.tenant(tenant.parse::<TenantId>()?).begin().await?;
        match &which {
            StoredSecret::Connection(id) => tx.update_connection_secret(id, &sealed).await?,
            StoredSecret::Webhook(id) => tx.update_webhook_secret(id, &sealed).await?,
        }
        tx.commit(crate::audit::AuditEntry {
            actor: cli_actor(),
            action: "keys_rotate".into(),
            target: which.target(),
            outcome: crate::audit::Outcome::Success,
            reason: None,
            request_id: uuid::Uuid::now_v7().to_string(),
            before: Some(serde_json::json!({"key_id": old.key_id})),
            after: Some(serde_json::json!({"key_id": sealed.key_id})),
        })
        .await?;
        rotated += 1;
    }
    eprintln!(
        "re-encrypted {rotated} secret(s) under key id {}; {current} already used it; {failed} could not be decrypted",
        ring.current_id()
    );
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn budget_chart(
    store: &Store,
    id: &str,
    output: &std::path::Path,
    tenant: Option<&str>,
    width: u32,
    height: u32,
) -> anyhow::Result<ExitCode> {
    let budget_id: crate::domain::BudgetId =
        id.parse().map_err(|_| anyhow::anyhow!("{id:?} is not a budget id (a UUID)"))?;
    let tenant_id = match tenant {
        Some(t) => admin::find_tenant(store, t).await?.id.parse::<TenantId>()?,
        None => store.budget_tenant(budget_id).await?.ok_or_else(|| anyhow::anyhow!("no budget with id {id}"))?,
    };
    let budget = store.tenant(tenant_id).budget(budget_id).await.map_err(|e| match e {
        crate::store::StoreError::NotFound => anyhow::anyhow!("no budget with id {id} in that tenant"),
        e => e.into(),
    })?;
    let computed = crate::engine::status::compute(store, tenant_id, &budget, store.clock().now()).await?;
    let png = crate::chart::render_png(&computed.chart_input(width, height))?;
    std::fs::write(output, &png).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", output.display()))?;
    let s = &computed.status;
    eprintln!(
        "wrote {} ({width}x{height}): {} — {} of {} spent, forecast {} by {}",
        output.display(),
        s.name,
        s.spent,
        s.limit,
        s.forecast.period_end_total,
        s.window.last_day
    );
    Ok(ExitCode::SUCCESS)
}
