//! The command line: `serve` (stdio or HTTP), `migrate`, tenant and token administration, and
//! `audit verify`. Every option can also come from an `MBM_*` environment variable or the config file
//! (see `config.rs` for the layering).
//!
//! This file holds the arguments and the dispatch; each command group runs in a file of its own:
//! `serve.rs` (serve, evaluate and their background loops), `tenants.rs` (tenants and tokens), `audit.rs`
//! (verify, checkpoint, export, verify-file), `keys.rs` (the master key) and `budget.rs` (the chart). The
//! work they share with the server lives outside the CLI ([`crate::admin`], [`crate::engine`]).

mod audit;
mod budget;
mod keys;
mod serve;
mod tenants;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app::App;
use crate::audit::Actor;
use crate::auth::{Role, Transport};
use crate::config::{self, Config, FileConfig, LogFormat, Overrides};
use crate::domain::SystemClock;
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
    /// Share of each Make organization's API limit this server may use, 0.05-1 (the rest stays for the
    /// organization's other API clients).
    #[arg(long, global = true, env = "MBM_MAKE_API_SHARE")]
    pub make_api_share: Option<f64>,
    /// Milliseconds an organization's Make calls wait after a 429 without Retry-After (Make's window).
    #[arg(long, global = true, env = "MBM_MAKE_RATE_LIMIT_WAIT_MS")]
    pub make_rate_limit_wait_ms: Option<u64>,
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
    /// Percent probability of ending over the limit from which a pause on a forecast crossing runs as
    /// attached (default 95; an action's own gate wins).
    #[arg(long, global = true, env = "MBM_GATE_ACT_PERCENT")]
    pub gate_act_percent: Option<i64>,
    /// From which it is announced and run after a delay unless cancelled (default 80).
    #[arg(long, global = true, env = "MBM_GATE_DELAY_PERCENT")]
    pub gate_delay_percent: Option<i64>,
    /// From which the crossing only alerts (default 60).
    #[arg(long, global = true, env = "MBM_GATE_ALERT_PERCENT")]
    pub gate_alert_percent: Option<i64>,
    /// Minutes a pause the confidence gate delays waits, when its action has no delay of its own (default 60).
    #[arg(long, global = true, env = "MBM_GATED_DELAY_MINUTES")]
    pub gated_delay_minutes: Option<i64>,
    /// File holding the Ed25519 key that signs audit checkpoints (first key line signs, later lines are
    /// retired keys). The key itself can be given as MBM_AUDIT_SIGNING_KEY (environment only).
    #[arg(long, global = true, env = "MBM_AUDIT_SIGNING_KEY_FILE")]
    pub audit_signing_key_file: Option<PathBuf>,
    /// Sign a checkpoint whenever a chain grows this many records past its last one (0: never).
    #[arg(long, global = true, env = "MBM_CHECKPOINT_EVERY_RECORDS")]
    pub checkpoint_every_records: Option<i64>,
    /// Seconds between `serve`'s checkpoints of every chain that grew (0: never).
    #[arg(long, global = true, env = "MBM_CHECKPOINT_INTERVAL_SECS")]
    pub checkpoint_interval_secs: Option<u64>,
    /// Let webhook deliveries and Make calls reach loopback addresses (and plain http to them): true or
    /// false (also 1/0, yes/no). For local development and tests only.
    #[arg(long, global = true, env = "MBM_OUTBOUND_ALLOW_LOOPBACK", value_parser = BoolishValueParser::new())]
    pub outbound_allow_loopback: Option<bool>,
    /// Let webhook deliveries and Make calls reach private addresses (10/8, 172.16/12, 192.168/16,
    /// 100.64/10, fc00::/7): true or false. Never link-local or cloud metadata.
    #[arg(long, global = true, env = "MBM_OUTBOUND_ALLOW_PRIVATE", value_parser = BoolishValueParser::new())]
    pub outbound_allow_private: Option<bool>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// One value per process, parsed once: the size of `serve`'s many options does not matter.
#[allow(clippy::large_enum_variant)]
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
    /// Database administration (PostgreSQL), run with the owner's database URL.
    #[command(subcommand)]
    Db(DbCmd),
    /// Run the background evaluator: sync usage, evaluate budgets, run plans, deliver webhooks.
    Evaluate {
        /// One pass, then exit (for cron). Exits 1 if the pass met errors.
        #[arg(long)]
        once: bool,
        /// Evaluate against the usage last synced, without calling Make (with --once).
        #[arg(long, requires = "once")]
        no_sync: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCmd {
    /// Grant an existing role what `serve` needs, so it can run as that role under row-level security:
    /// read and write tenant data, only append to and read the audit tables, read the migration history.
    /// Refuses superusers, BYPASSRLS roles and the tables' owner, whom row-level security does not bind.
    GrantAppRole {
        /// The role's name (create it first: CREATE ROLE mbm_server LOGIN PASSWORD '…').
        role: String,
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
    /// Serve HTTP without authentication, as the local operator (`--local-*`), like stdio. Refused
    /// unless the listen address is loopback. For local clients and the conformance suite.
    #[arg(long, env = "MBM_HTTP_NO_AUTH")]
    pub no_auth: bool,
    /// Serve HTTPS with this PEM certificate chain (leaf first). Needs --tls-key. Reloaded on SIGHUP.
    #[arg(long, env = "MBM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert. Reloaded on SIGHUP.
    #[arg(long, env = "MBM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Tenant of the stdio operator (created on first run). Default "local".
    #[arg(long, env = "MBM_LOCAL_TENANT")]
    pub local_tenant: Option<String>,
    /// Subject of the stdio operator. Default: your OS user name.
    #[arg(long, env = "MBM_LOCAL_SUBJECT")]
    pub local_subject: Option<String>,
    /// Role of the stdio operator. Default admin.
    #[arg(long, env = "MBM_LOCAL_ROLE", value_enum)]
    pub local_role: Option<Role>,
    /// Serve only read tools (tools annotated readOnlyHint) and run no background writers.
    #[arg(long, env = "MBM_READ_ONLY")]
    pub read_only: bool,
    /// Toolsets to serve, comma-separated: identity (always), budgets, status, thresholds, make, actions,
    /// webhooks, audit, or all. Default: budgets,status,thresholds,make.
    #[arg(long, env = "MBM_TOOLSETS", value_delimiter = ',')]
    pub toolsets: Option<Vec<String>>,
    /// Single tools to serve on top of the toolsets, comma-separated.
    #[arg(long, env = "MBM_TOOLS", value_delimiter = ',')]
    pub tools: Option<Vec<String>>,
    /// HTTP without sessions: every request stands alone, so any instance behind a load balancer can
    /// answer any call. Server-to-client requests (elicitation) and subscriptions need sessions.
    #[arg(long, env = "MBM_HTTP_STATELESS")]
    pub stateless: bool,
    /// Seconds a client has to send a request body before it is answered 408.
    #[arg(long, env = "MBM_HTTP_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Seconds a connection has to send a complete request head (from opening, or from the first byte of
    /// its next request) before it is closed.
    #[arg(long, env = "MBM_HTTP_HEADER_READ_TIMEOUT_SECS")]
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a kept-alive connection may stay silent after a response before it is closed.
    #[arg(long, env = "MBM_HTTP_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Open HTTP connections at most (TLS handshakes included); further clients wait to be accepted.
    #[arg(long, env = "MBM_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<usize>,
    /// Reverse proxies (IP addresses or CIDR ranges; repeat or comma-separate) whose client-address
    /// header is believed for the failed-authentication limit. Default: none.
    #[arg(long = "trusted-proxy", env = "MBM_HTTP_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// The header trusted proxies name the client in: x-forwarded-for (default), forwarded, x-real-ip, ...
    #[arg(long, env = "MBM_HTTP_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
    /// On SIGTERM, seconds in-flight calls may take to finish before sessions are closed.
    #[arg(long, env = "MBM_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Serve /metrics (Prometheus text format) over HTTP: true or false.
    #[arg(long, env = "MBM_METRICS")]
    pub metrics: Option<bool>,
    /// Read tool calls per tenant per hour (0: unlimited).
    #[arg(long, env = "MBM_READS_PER_HOUR")]
    pub reads_per_hour: Option<u32>,
    /// Modifying tool calls per tenant per hour (0: unlimited).
    #[arg(long, env = "MBM_MODIFICATIONS_PER_HOUR")]
    pub modifications_per_hour: Option<u32>,
    /// Automated-action tool calls (pause, resume, approve, reject, reverse) per tenant per hour (0: unlimited).
    #[arg(long, env = "MBM_AUTOMATED_ACTIONS_PER_HOUR")]
    pub automated_actions_per_hour: Option<u32>,
    /// Failed HTTP authentications per client IP per minute before the IP is refused (0: unlimited).
    #[arg(long, env = "MBM_FAILED_AUTHS_PER_MINUTE")]
    pub failed_auths_per_minute: Option<u32>,
    /// Seconds after which a read tool call is cut off.
    #[arg(long, env = "MBM_READ_TOOL_TIMEOUT_SECS")]
    pub read_tool_timeout_secs: Option<u64>,
    /// Denied calls recorded in the audit log per principal per hour; further denials are counted and
    /// summarised (0: record every denial).
    #[arg(long, env = "MBM_DENIED_AUDITS_PER_HOUR")]
    pub denied_audits_per_hour: Option<u32>,
    /// Seconds between the records that summarise denials left out of the audit log.
    #[arg(long, env = "MBM_DENIAL_SUMMARY_SECS")]
    pub denial_summary_secs: Option<u64>,
    /// Open HTTP sessions per principal (tenant and subject); a session beyond it is refused with 429.
    #[arg(long, env = "MBM_HTTP_MAX_SESSIONS_PER_PRINCIPAL")]
    pub max_sessions_per_principal: Option<usize>,
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
    /// Verify every tenant's hash chain and signed checkpoints (or one tenant's). Exits 1 naming the
    /// first bad record.
    Verify {
        /// Tenant id or name.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Print the public key that verifies this server's checkpoints (base64), for `verify-file`.
    PublicKey,
    /// Sign a checkpoint of every chain that grew since its last one (or of one tenant's chain) now.
    Checkpoint {
        /// Tenant id or name.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Export a tenant's chain: JSON Lines with signed checkpoints (verifiable offline with
    /// `verify-file`), or ArcSight CEF lines for a SIEM. Signs a checkpoint of the head first.
    Export {
        /// Tenant id or name.
        #[arg(long)]
        tenant: String,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Verify a JSON Lines export with no database: the chain, every checkpoint's signature, and that
    /// the last checkpoint covers the last record. Exits 1 naming the first bad record.
    VerifyFile {
        file: PathBuf,
        /// Trusted public key(s), base64 and comma-separated, or a file with one per line.
        #[arg(long)]
        public_key: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// JSON Lines: records and signed checkpoints.
    Jsonl,
    /// ArcSight Common Event Format, one line per record.
    Cef,
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
            http_no_auth: serve.and_then(|s| s.no_auth.then_some(true)),
            tls_cert: serve.and_then(|s| s.tls_cert.clone()),
            tls_key: serve.and_then(|s| s.tls_key.clone()),
            master_key: std::env::var("MBM_MASTER_KEY").ok(),
            previous_master_keys: std::env::var("MBM_PREVIOUS_MASTER_KEYS").ok(),
            master_key_file: self.master_key_file.clone(),
            make_request_timeout_secs: self.make_request_timeout_secs,
            make_max_attempts: self.make_max_attempts,
            make_retry_base_delay_ms: self.make_retry_base_delay_ms,
            make_api_share: self.make_api_share,
            make_rate_limit_wait_ms: self.make_rate_limit_wait_ms,
            evaluate_interval_secs: self.evaluate_interval_secs,
            approval_ttl_minutes: self.approval_ttl_minutes,
            lease_secs: self.lease_secs,
            scenario_retry_delay_ms: self.scenario_retry_delay_ms,
            webhook_retry_base_ms: self.webhook_retry_base_ms,
            webhook_max_attempts: self.webhook_max_attempts,
            confirm_pause_over: self.confirm_pause_over,
            gate_act_percent: self.gate_act_percent,
            gate_delay_percent: self.gate_delay_percent,
            gate_alert_percent: self.gate_alert_percent,
            gated_delay_minutes: self.gated_delay_minutes,
            audit_signing_key: std::env::var("MBM_AUDIT_SIGNING_KEY").ok(),
            audit_signing_key_file: self.audit_signing_key_file.clone(),
            checkpoint_every_records: self.checkpoint_every_records,
            checkpoint_interval_secs: self.checkpoint_interval_secs,
            read_only: serve.and_then(|s| s.read_only.then_some(true)),
            toolsets: serve.and_then(|s| s.toolsets.clone()),
            tools: serve.and_then(|s| s.tools.clone()),
            stateless: serve.and_then(|s| s.stateless.then_some(true)),
            request_timeout_secs: serve.and_then(|s| s.request_timeout_secs),
            header_read_timeout_secs: serve.and_then(|s| s.header_read_timeout_secs),
            idle_timeout_secs: serve.and_then(|s| s.idle_timeout_secs),
            http_max_connections: serve.and_then(|s| s.http_max_connections),
            trusted_proxies: serve.and_then(|s| s.trusted_proxies.clone()),
            client_ip_header: serve.and_then(|s| s.client_ip_header.clone()),
            shutdown_grace_secs: serve.and_then(|s| s.shutdown_grace_secs),
            metrics: serve.and_then(|s| s.metrics),
            reads_per_hour: serve.and_then(|s| s.reads_per_hour),
            modifications_per_hour: serve.and_then(|s| s.modifications_per_hour),
            automated_actions_per_hour: serve.and_then(|s| s.automated_actions_per_hour),
            failed_auths_per_minute: serve.and_then(|s| s.failed_auths_per_minute),
            read_tool_timeout_secs: serve.and_then(|s| s.read_tool_timeout_secs),
            denied_audits_per_hour: serve.and_then(|s| s.denied_audits_per_hour),
            denial_summary_secs: serve.and_then(|s| s.denial_summary_secs),
            max_sessions_per_principal: serve.and_then(|s| s.max_sessions_per_principal),
            oauth: crate::auth::oauth::OAuthFile::from_env(),
            outbound_allow_loopback: self.outbound_allow_loopback,
            outbound_allow_private: self.outbound_allow_private,
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
    // Offline verification needs no configuration and no database: a third party runs it.
    if let Command::Audit(AuditCmd::VerifyFile { file, public_key }) = &cli.command {
        return audit::verify_file(file, public_key);
    }
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
    let audit_keys = config.audit.signing_key.load()?.map(Arc::new);
    if audit_keys.is_none() {
        tracing::warn!(
            "{}: audit checkpoints are neither signed nor checked",
            crate::audit::checkpoint::NO_SIGNING_KEY
        );
    }
    let store = store.with_audit_keys(audit_keys, config.audit.checkpoint_every_records);
    if matches!(cli.command, Command::Serve(_) | Command::Evaluate { .. })
        && store.bound_by_row_security().await? == Some(false)
    {
        tracing::warn!(
            "the database role is exempt from row-level security (superuser, BYPASSRLS or owner); \
             run the server as a role of its own (README, \"Row-level security\")"
        );
    }

    let code = match cli.command {
        Command::Serve(args) => serve::serve(build_app(store.clone(), &config).await?, &config, args.transport).await?,
        Command::Evaluate { once, no_sync } => {
            serve::evaluate(build_app(store.clone(), &config).await?, &config, once, no_sync).await?
        }
        Command::Migrate => {
            eprintln!("migrations applied to {}", crate::store::redact_url(&config.database_url));
            ExitCode::SUCCESS
        }
        Command::Tenant(cmd) => tenants::tenant(&store, cmd).await?,
        Command::Token(cmd) => tenants::token(&store, cmd).await?,
        Command::Audit(cmd) => audit::run(&store, cmd).await?,
        Command::Keys(cmd) => keys::run(&store, &config, cmd).await?,
        Command::Db(DbCmd::GrantAppRole { role }) => {
            for grant in store.grant_app_role(&role).await? {
                println!("{}\t{}", grant.table, grant.privileges);
            }
            eprintln!("granted {role} the server's privileges; run `serve` with a database URL for {role}");
            ExitCode::SUCCESS
        }
        Command::Budget(BudgetCmd::Chart { id, output, tenant, width, height }) => {
            budget::chart(&store, &id, &output, tenant.as_deref(), width, height).await?
        }
    };
    store.close().await;
    Ok(code)
}

/// Everything a server shares (see [`App::build`]).
async fn build_app(store: Store, config: &Config) -> anyhow::Result<Arc<App>> {
    Ok(Arc::new(App::build(store, config).await?))
}

/// The actor of administrative commands in the audit log: `cli:$USER` as admin.
fn cli_actor() -> Actor {
    let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown".into());
    Actor {
        subject: format!("cli:{user}"),
        role: Role::Admin.as_str().into(),
        transport: Transport::Cli.as_str().into(),
    }
}
