//! Layered configuration: built-in defaults < TOML file < `MBM_*` environment variables < command-line
//! flags. Flags and environment variables are declared together in `cli/mod.rs` (clap reads both, flags
//! winning); this module merges them over the file and checks the result. `config/example.toml`
//! documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod error;
pub mod settings;

pub use error::ConfigError;

use crate::audit::checkpoint::SigningKeySources;
use crate::auth::Role;
use crate::auth::oauth::{OAuthFile, OAuthSettings};
use crate::crypto::KeySources;
use crate::http::client_ip::{self, IpNet};
use crate::make::MakeClientConfig;

/// The config file as written (every key optional).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<LogFormat>,
    #[serde(default)]
    pub database: DatabaseFile,
    #[serde(default)]
    pub local: LocalFile,
    #[serde(default)]
    pub http: HttpFile,
    #[serde(default)]
    pub secrets: SecretsFile,
    #[serde(default)]
    pub make: MakeFile,
    #[serde(default)]
    pub actions: ActionsFile,
    #[serde(default)]
    pub audit: AuditFile,
    #[serde(default)]
    pub oauth: OAuthFile,
    /// Expose only read tools and run no background writers.
    /// Toolsets to serve (catalogue groups or "all"); default budgets, status, thresholds, make.
    pub toolsets: Option<Vec<String>>,
    /// Single tools to serve on top of the toolsets.
    pub tools: Option<Vec<String>>,
    pub read_only: Option<bool>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub outbound: OutboundFile,
}

/// `[outbound]`: where webhook deliveries and Make calls may connect besides the public internet.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundFile {
    pub allow_loopback: Option<bool>,
    pub allow_private: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub reads_per_hour: Option<u32>,
    pub modifications_per_hour: Option<u32>,
    pub automated_actions_per_hour: Option<u32>,
    pub failed_auths_per_minute: Option<u32>,
    pub read_tool_timeout_secs: Option<u64>,
    pub denied_audits_per_hour: Option<u32>,
    pub denial_summary_secs: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    pub signing_key_file: Option<PathBuf>,
    pub checkpoint_every_records: Option<i64>,
    pub checkpoint_interval_secs: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsFile {
    pub evaluate_interval_secs: Option<u64>,
    pub approval_ttl_minutes: Option<i64>,
    pub lease_secs: Option<u64>,
    pub scenario_retry_delay_ms: Option<u64>,
    pub webhook_timeout_secs: Option<u64>,
    pub webhook_max_attempts: Option<u32>,
    pub webhook_retry_base_ms: Option<u64>,
    pub confirm_pause_over: Option<usize>,
    pub gate_act_percent: Option<i64>,
    pub gate_delay_percent: Option<i64>,
    pub gate_alert_percent: Option<i64>,
    pub gated_delay_minutes: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsFile {
    pub master_key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MakeFile {
    pub request_timeout_secs: Option<u64>,
    pub max_attempts: Option<u32>,
    pub retry_base_delay_ms: Option<u64>,
    pub api_share: Option<f64>,
    pub rate_limit_wait_ms: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFile {
    pub max_connections: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalFile {
    pub tenant: Option<String>,
    pub subject: Option<String>,
    pub role: Option<Role>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub listen: Option<String>,
    pub allowed_hosts: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub stateless: Option<bool>,
    pub request_timeout_secs: Option<u64>,
    pub shutdown_grace_secs: Option<u64>,
    pub metrics: Option<bool>,
    pub no_auth: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_sessions_per_principal: Option<usize>,
    pub header_read_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub trusted_proxies: Option<Vec<String>>,
    pub client_ip_header: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// Values given on the command line or in the environment (clap has already merged those two).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub database_url: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<LogFormat>,
    pub max_connections: Option<u32>,
    pub local_tenant: Option<String>,
    pub local_subject: Option<String>,
    pub local_role: Option<Role>,
    pub listen: Option<String>,
    pub allowed_hosts: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    /// `--no-auth` / `MBM_HTTP_NO_AUTH`: `Some(true)` only when given (a flag cannot say "false").
    pub http_no_auth: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `MBM_MASTER_KEY` (environment only: a secret never goes on a command line).
    pub master_key: Option<String>,
    /// `MBM_PREVIOUS_MASTER_KEYS` (environment only).
    pub previous_master_keys: Option<String>,
    pub master_key_file: Option<PathBuf>,
    pub make_request_timeout_secs: Option<u64>,
    pub make_max_attempts: Option<u32>,
    pub make_retry_base_delay_ms: Option<u64>,
    pub make_api_share: Option<f64>,
    pub make_rate_limit_wait_ms: Option<u64>,
    pub evaluate_interval_secs: Option<u64>,
    pub approval_ttl_minutes: Option<i64>,
    pub lease_secs: Option<u64>,
    pub scenario_retry_delay_ms: Option<u64>,
    pub webhook_retry_base_ms: Option<u64>,
    pub webhook_max_attempts: Option<u32>,
    pub confirm_pause_over: Option<usize>,
    pub gate_act_percent: Option<i64>,
    pub gate_delay_percent: Option<i64>,
    pub gate_alert_percent: Option<i64>,
    pub gated_delay_minutes: Option<i64>,
    /// `MBM_AUDIT_SIGNING_KEY` (environment only).
    pub audit_signing_key: Option<String>,
    pub audit_signing_key_file: Option<PathBuf>,
    pub checkpoint_every_records: Option<i64>,
    pub checkpoint_interval_secs: Option<u64>,
    pub read_only: Option<bool>,
    pub toolsets: Option<Vec<String>>,
    pub tools: Option<Vec<String>>,
    pub stateless: Option<bool>,
    pub request_timeout_secs: Option<u64>,
    pub shutdown_grace_secs: Option<u64>,
    pub metrics: Option<bool>,
    pub header_read_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub http_max_connections: Option<usize>,
    /// `--trusted-proxy` / `MBM_HTTP_TRUSTED_PROXIES` (comma-separated).
    pub trusted_proxies: Option<Vec<String>>,
    pub client_ip_header: Option<String>,
    pub reads_per_hour: Option<u32>,
    pub modifications_per_hour: Option<u32>,
    pub automated_actions_per_hour: Option<u32>,
    pub failed_auths_per_minute: Option<u32>,
    pub read_tool_timeout_secs: Option<u64>,
    pub denied_audits_per_hour: Option<u32>,
    pub denial_summary_secs: Option<u64>,
    pub max_sessions_per_principal: Option<usize>,
    /// `MBM_OAUTH_*` (environment only), merged key by key over the file's `[oauth]`.
    pub oauth: OAuthFile,
    pub outbound_allow_loopback: Option<bool>,
    pub outbound_allow_private: Option<bool>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub log: String,
    pub log_format: LogFormat,
    pub max_connections: u32,
    pub local: LocalOperator,
    pub http: HttpSettings,
    /// Where the master key for Make credentials comes from.
    pub keys: KeySources,
    pub make: MakeClientConfig,
    /// Seconds between background evaluator passes in `serve`; 0 switches it off.
    pub evaluate_interval_secs: u64,
    pub actions: settings::ActionSettings,
    pub webhook_timeout: std::time::Duration,
    pub audit: AuditSettings,
    /// Only read tools are served, and `serve` runs no evaluator and no checkpoint timer.
    pub read_only: bool,
    /// The tools served (toolsets, single tools, read-only).
    pub tools: settings::ToolChoice,
    pub limits: settings::LimitSettings,
    /// A read tool running longer than this is cut off (mutations always run to completion).
    pub read_tool_timeout: std::time::Duration,
    /// Where webhook deliveries and Make calls may connect (`[outbound]`).
    pub outbound: crate::outbound::OutboundPolicy,
}

/// Signed checkpoints of the audit chains.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Where the Ed25519 signing key comes from.
    pub signing_key: SigningKeySources,
    /// An append that takes a chain this many records past its last checkpoint signs a new one; 0: never.
    pub checkpoint_every_records: i64,
    /// `serve` signs every chain that grew since its last checkpoint this often, in seconds; 0: never.
    pub checkpoint_interval_secs: u64,
}

/// The principal used over stdio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOperator {
    pub tenant: String,
    pub subject: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// `Host` header values accepted on /mcp (DNS-rebinding protection). Default: loopback names only.
    pub allowed_hosts: Vec<String>,
    /// `Origin` header values accepted on /mcp (default: loopback origins). A request with any other
    /// Origin gets 403, also when the list is empty; requests without one (non-browser clients) pass.
    pub allowed_origins: Vec<String>,
    /// Serve every request on its own, with no session: any instance behind a load balancer can answer.
    pub stateless: bool,
    /// A request whose body has not arrived within this time is answered 408.
    pub request_timeout: std::time::Duration,
    /// On SIGTERM: how long in-flight calls may take to finish before sessions are closed.
    pub shutdown_grace: std::time::Duration,
    /// Serve `/metrics`.
    pub metrics: bool,
    /// Serve /mcp without authentication, as the local operator (like stdio). Only allowed on a loopback
    /// listen address: [`crate::http::serve`] refuses to start otherwise.
    pub no_auth: bool,
    /// Serve HTTPS with this certificate and key; `None` serves plain HTTP (e.g. behind a TLS proxy).
    pub tls: Option<TlsFiles>,
    /// Accept OAuth access tokens (JWTs) from this issuer besides API tokens; from the `[oauth]` section.
    pub oauth: Option<OAuthSettings>,
    /// Open sessions per principal (tenant and subject).
    pub max_sessions_per_principal: usize,
    /// A connection that has not sent a complete request head this long after opening (or after the first
    /// byte of its next request) is closed.
    pub header_read_timeout: std::time::Duration,
    /// A kept-alive connection that sends nothing this long after a response is closed.
    pub idle_timeout: std::time::Duration,
    /// Open connections (TLS handshakes included) at most; beyond it the listener stops accepting.
    pub max_connections: usize,
    /// Peers whose `client_ip_header` is believed (see `crate::http::client_ip`); empty: none.
    pub trusted_proxies: Vec<IpNet>,
    /// The header a trusted proxy names the client in (`x-forwarded-for` by default).
    pub client_ip_header: axum::http::HeaderName,
}

/// PEM files for HTTPS. Both are read at start and again on every `SIGHUP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

pub const DEFAULT_LOG: &str = "info,sqlx=warn";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Browser origins accepted on /mcp by default: pages served from this machine, any port.
pub const DEFAULT_ALLOWED_ORIGINS: [&str; 6] = [
    "http://localhost:*",
    "http://127.0.0.1:*",
    "http://[::1]:*",
    "https://localhost:*",
    "https://127.0.0.1:*",
    "https://[::1]:*",
];
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// The config file used when none is named: `<config dir>/make-budget-mcp/config.toml`, if it exists.
pub fn default_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "make-budget-mcp")
        .map(|d| d.config_dir().join("config.toml"))
        .filter(|p| p.is_file())
}

pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
}

fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "local-operator".to_owned())
}

impl Config {
    /// Merge overrides over the file over defaults, and check the result.
    pub fn resolve(file: FileConfig, o: Overrides) -> Result<Self, ConfigError> {
        let make = make_settings(&o, &file.make)?;
        let (evaluate_interval_secs, actions, webhook_timeout) = action_settings(&o, &file.actions)?;
        let (limits, read_tool_timeout) = limit_settings(&o, &file.limits)?;
        let oauth = OAuthSettings::resolve(file.oauth.overridden_by(o.oauth))?;
        let database_url = match o.database_url.or(file.database_url) {
            Some(url) => url,
            None => {
                let path = crate::store::default_sqlite_path().ok_or(ConfigError::NoDataDir)?;
                format!("sqlite://{}", path.display())
            }
        };
        crate::store::Dialect::from_url(&database_url)
            .map_err(|e| ConfigError::Invalid { key: "database_url", rule: e.to_string() })?;
        let max_connections = o.max_connections.or(file.database.max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if !(1..=1000).contains(&max_connections) {
            return Err(ConfigError::Invalid {
                key: "database.max_connections",
                rule: format!("must be between 1 and 1000 (got {max_connections})"),
            });
        }
        let tenant = o.local_tenant.or(file.local.tenant).unwrap_or_else(|| "local".to_owned());
        let tenant = crate::domain::validation::text("local.tenant", &tenant, 1, 100)
            .map_err(|e| ConfigError::Invalid { key: "local.tenant", rule: e.rule })?;
        let subject = o.local_subject.or(file.local.subject).unwrap_or_else(os_user);
        let subject = crate::domain::validation::text("local.subject", &subject, 1, 200)
            .map_err(|e| ConfigError::Invalid { key: "local.subject", rule: e.rule })?;
        let role = o.local_role.or(file.local.role).unwrap_or(Role::Admin);
        let listen_text = o.listen.or(file.http.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| ConfigError::Invalid {
            key: "http.listen",
            rule: format!("must be an IP address and port such as 127.0.0.1:8080 (got {listen_text:?})"),
        })?;
        let allowed_hosts = o
            .allowed_hosts
            .or(file.http.allowed_hosts)
            .unwrap_or_else(|| vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]);
        let allowed_origins = o
            .allowed_origins
            .or(file.http.allowed_origins)
            .unwrap_or_else(|| DEFAULT_ALLOWED_ORIGINS.iter().map(|o| (*o).to_owned()).collect());
        let no_auth = o.http_no_auth.or(file.http.no_auth).unwrap_or(false);
        let tls = match (o.tls_cert.or(file.http.tls_cert), o.tls_key.or(file.http.tls_key)) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    key: "http.tls_key",
                    rule: "must be set when http.tls_cert is (a certificate needs its private key)".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "http.tls_cert",
                    rule: "must be set when http.tls_key is (a private key needs its certificate)".into(),
                });
            }
        };
        let keys = KeySources {
            master_key: o.master_key.filter(|k| !k.trim().is_empty()),
            previous_keys: o.previous_master_keys.filter(|k| !k.trim().is_empty()),
            key_file: o.master_key_file.or(file.secrets.master_key_file),
            default_file: default_key_file(&database_url),
        };
        let audit = AuditSettings {
            signing_key: SigningKeySources {
                key: o.audit_signing_key.filter(|k| !k.trim().is_empty()),
                key_file: o.audit_signing_key_file.or(file.audit.signing_key_file),
                default_file: default_key_file(&database_url).map(|p| p.with_file_name("audit-signing.key")),
            },
            checkpoint_every_records: within(
                "audit.checkpoint_every_records",
                o.checkpoint_every_records.or(file.audit.checkpoint_every_records).unwrap_or(1000),
                0,
                1_000_000,
            )?,
            checkpoint_interval_secs: within(
                "audit.checkpoint_interval_secs",
                o.checkpoint_interval_secs.or(file.audit.checkpoint_interval_secs).unwrap_or(3600),
                0,
                604_800,
            )?,
        };
        let http = HttpSettings {
            listen,
            allowed_hosts,
            allowed_origins,
            no_auth,
            tls,
            oauth,
            stateless: o.stateless.or(file.http.stateless).unwrap_or(false),
            request_timeout: std::time::Duration::from_secs(within(
                "http.request_timeout_secs",
                o.request_timeout_secs.or(file.http.request_timeout_secs).unwrap_or(30),
                1,
                3600,
            )?),
            shutdown_grace: std::time::Duration::from_secs(within(
                "http.shutdown_grace_secs",
                o.shutdown_grace_secs.or(file.http.shutdown_grace_secs).unwrap_or(30),
                0,
                3600,
            )?),
            metrics: o.metrics.or(file.http.metrics).unwrap_or(true),
            header_read_timeout: std::time::Duration::from_secs(within(
                "http.header_read_timeout_secs",
                o.header_read_timeout_secs.or(file.http.header_read_timeout_secs).unwrap_or(10),
                1,
                3600,
            )?),
            idle_timeout: std::time::Duration::from_secs(within(
                "http.idle_timeout_secs",
                o.idle_timeout_secs.or(file.http.idle_timeout_secs).unwrap_or(60),
                1,
                86_400,
            )?),
            max_connections: within(
                "http.max_connections",
                o.http_max_connections.or(file.http.max_connections).unwrap_or(1024),
                1,
                1_000_000,
            )?,
            trusted_proxies: o
                .trusted_proxies
                .or(file.http.trusted_proxies)
                .unwrap_or_default()
                .iter()
                .filter(|p| !p.trim().is_empty())
                .map(|p| p.parse::<IpNet>())
                .collect::<Result<_, _>>()
                .map_err(|rule| ConfigError::Invalid { key: "http.trusted_proxies", rule })?,
            client_ip_header: {
                let name = o.client_ip_header.or(file.http.client_ip_header);
                let name =
                    name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or(client_ip::DEFAULT_HEADER);
                axum::http::HeaderName::try_from(name.to_ascii_lowercase()).map_err(|_| ConfigError::Invalid {
                    key: "http.client_ip_header",
                    rule: format!("must be an HTTP header name such as x-forwarded-for (got {name:?})"),
                })?
            },
            max_sessions_per_principal: within(
                "http.max_sessions_per_principal",
                o.max_sessions_per_principal.or(file.http.max_sessions_per_principal).unwrap_or(32),
                1,
                10_000,
            )?,
        };
        let outbound = crate::outbound::OutboundPolicy {
            allow_loopback: o.outbound_allow_loopback.or(file.outbound.allow_loopback).unwrap_or(false),
            allow_private: o.outbound_allow_private.or(file.outbound.allow_private).unwrap_or(false),
        };
        let read_only = o.read_only.or(file.read_only).unwrap_or(false);
        Ok(Config {
            outbound,
            read_only,
            tools: settings::ToolChoice {
                toolsets: o
                    .toolsets
                    .or(file.toolsets)
                    .unwrap_or_else(|| settings::DEFAULT_TOOLSETS.iter().map(|s| (*s).to_owned()).collect()),
                tools: o.tools.or(file.tools).unwrap_or_default(),
                read_only,
            },
            limits,
            read_tool_timeout,
            audit,
            database_url,
            log: o.log.or(file.log).unwrap_or_else(|| DEFAULT_LOG.to_owned()),
            log_format: o.log_format.or(file.log_format).unwrap_or(LogFormat::Text),
            max_connections,
            local: LocalOperator { tenant, subject, role },
            http,
            keys,
            make,
            evaluate_interval_secs,
            actions,
            webhook_timeout,
        })
    }
}

/// With the embedded SQLite store and no key configured, the master key lives in `master.key` beside the
/// database file (created on first use, owner-only). PostgreSQL deployments must configure their key:
/// every instance needs the same one.
fn default_key_file(database_url: &str) -> Option<PathBuf> {
    let path = database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    Some(Path::new(path).parent().unwrap_or(Path::new(".")).join("master.key"))
}

fn within<T: PartialOrd + std::fmt::Display + Copy>(
    key: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::Invalid { key, rule: format!("must be {min} to {max} (got {value})") });
    }
    Ok(value)
}

fn action_settings(
    o: &Overrides,
    f: &ActionsFile,
) -> Result<(u64, settings::ActionSettings, std::time::Duration), ConfigError> {
    use std::time::Duration;
    let d = settings::ActionSettings::default();
    let interval = o.evaluate_interval_secs.or(f.evaluate_interval_secs).unwrap_or(300);
    let interval = within("actions.evaluate_interval_secs", interval, 0, 86_400)?;
    let ttl = o.approval_ttl_minutes.or(f.approval_ttl_minutes).unwrap_or(d.approval_ttl_minutes);
    let ttl = within("actions.approval_ttl_minutes", ttl, 1, crate::domain::action::APPROVAL_TTL_MAX_MINUTES)?;
    let lease = o.lease_secs.or(f.lease_secs).unwrap_or(d.lease.as_secs());
    let lease = within("actions.lease_secs", lease, 1, 3600)?;
    let round = o.scenario_retry_delay_ms.or(f.scenario_retry_delay_ms).unwrap_or(d.round_delay.as_millis() as u64);
    let round = within("actions.scenario_retry_delay_ms", round, 1, 60_000)?;
    let timeout = within("actions.webhook_timeout_secs", f.webhook_timeout_secs.unwrap_or(10), 1, 120)?;
    let attempts = within(
        "actions.webhook_max_attempts",
        o.webhook_max_attempts.or(f.webhook_max_attempts).unwrap_or(d.webhook_max_attempts),
        1,
        50,
    )?;
    let base = o.webhook_retry_base_ms.or(f.webhook_retry_base_ms).unwrap_or(d.webhook_retry_base.as_millis() as u64);
    let base = within("actions.webhook_retry_base_ms", base, 1, 3_600_000)?;
    let confirm = o.confirm_pause_over.or(f.confirm_pause_over).unwrap_or(d.confirm_pause_over);
    let confirm = within("actions.confirm_pause_over", confirm, 0, 1000)?;
    let gate = crate::domain::action::ConfidenceGate {
        act: o.gate_act_percent.or(f.gate_act_percent).unwrap_or(d.gate.act),
        delay: o.gate_delay_percent.or(f.gate_delay_percent).unwrap_or(d.gate.delay),
        alert: o.gate_alert_percent.or(f.gate_alert_percent).unwrap_or(d.gate.alert),
    }
    .check("gate")
    .map_err(|e| ConfigError::Invalid { key: "actions.gate_{act,delay,alert}_percent", rule: e.to_string() })?;
    let gated_delay = o.gated_delay_minutes.or(f.gated_delay_minutes).unwrap_or(d.gated_delay_minutes);
    let gated_delay = within("actions.gated_delay_minutes", gated_delay, 1, crate::domain::action::DELAY_MAX_MINUTES)?;
    Ok((
        interval,
        settings::ActionSettings {
            approval_ttl_minutes: ttl,
            lease: Duration::from_secs(lease),
            round_delay: Duration::from_millis(round),
            webhook_max_attempts: attempts,
            webhook_retry_base: Duration::from_millis(base),
            confirm_pause_over: confirm,
            gate,
            gated_delay_minutes: gated_delay,
            ..d
        },
        Duration::from_secs(timeout),
    ))
}

fn limit_settings(
    o: &Overrides,
    f: &LimitsFile,
) -> Result<(settings::LimitSettings, std::time::Duration), ConfigError> {
    let d = settings::LimitSettings::default();
    let per_hour = 1_000_000;
    let limits = settings::LimitSettings {
        reads_per_hour: within(
            "limits.reads_per_hour",
            o.reads_per_hour.or(f.reads_per_hour).unwrap_or(d.reads_per_hour),
            0,
            per_hour,
        )?,
        modifications_per_hour: within(
            "limits.modifications_per_hour",
            o.modifications_per_hour.or(f.modifications_per_hour).unwrap_or(d.modifications_per_hour),
            0,
            per_hour,
        )?,
        automated_actions_per_hour: within(
            "limits.automated_actions_per_hour",
            o.automated_actions_per_hour.or(f.automated_actions_per_hour).unwrap_or(d.automated_actions_per_hour),
            0,
            per_hour,
        )?,
        failed_auths_per_minute: within(
            "limits.failed_auths_per_minute",
            o.failed_auths_per_minute.or(f.failed_auths_per_minute).unwrap_or(d.failed_auths_per_minute),
            0,
            100_000,
        )?,
        denied_audits_per_hour: within(
            "limits.denied_audits_per_hour",
            o.denied_audits_per_hour.or(f.denied_audits_per_hour).unwrap_or(d.denied_audits_per_hour),
            0,
            per_hour,
        )?,
        denial_summary: std::time::Duration::from_secs(within(
            "limits.denial_summary_secs",
            o.denial_summary_secs.or(f.denial_summary_secs).unwrap_or(d.denial_summary.as_secs()),
            1,
            86_400,
        )?),
    };
    let timeout = o.read_tool_timeout_secs.or(f.read_tool_timeout_secs).unwrap_or(120);
    let timeout = within("limits.read_tool_timeout_secs", timeout, 1, 3600)?;
    Ok((limits, std::time::Duration::from_secs(timeout)))
}

fn make_settings(o: &Overrides, f: &MakeFile) -> Result<MakeClientConfig, ConfigError> {
    let d = MakeClientConfig::default();
    let timeout = o.make_request_timeout_secs.or(f.request_timeout_secs).unwrap_or(d.request_timeout.as_secs());
    let timeout = within("make.request_timeout_secs", timeout, 1, 600)?;
    let attempts = o.make_max_attempts.or(f.max_attempts).unwrap_or(d.max_attempts);
    let attempts = within("make.max_attempts", attempts, 1, 20)?;
    let base = o.make_retry_base_delay_ms.or(f.retry_base_delay_ms).unwrap_or(d.base_delay.as_millis() as u64);
    let base = within("make.retry_base_delay_ms", base, 1, 60_000)?;
    let share = o.make_api_share.or(f.api_share).unwrap_or(d.api_share);
    if !(0.05..=1.0).contains(&share) {
        return Err(ConfigError::Invalid { key: "make.api_share", rule: format!("must be 0.05 to 1 (got {share})") });
    }
    let wait = o.make_rate_limit_wait_ms.or(f.rate_limit_wait_ms).unwrap_or(d.rate_limit_wait.as_millis() as u64);
    let wait = within("make.rate_limit_wait_ms", wait, 1, 600_000)?;
    Ok(MakeClientConfig {
        request_timeout: std::time::Duration::from_secs(timeout),
        max_attempts: attempts,
        base_delay: std::time::Duration::from_millis(base),
        api_share: share,
        rate_limit_wait: std::time::Duration::from_millis(wait),
        ..d
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let file: FileConfig = toml::from_str(
            r#"
            database_url = "sqlite:///from/file.db"
            log = "debug"
            [local]
            tenant = "acme"
            role = "viewer"
            [http]
            listen = "127.0.0.1:9000"
            "#,
        )
        .unwrap();
        let o = Overrides {
            database_url: Some("postgres://u@h/db".into()),
            local_role: Some(Role::Operator),
            ..Default::default()
        };
        let c = Config::resolve(file, o).unwrap();
        assert_eq!(c.database_url, "postgres://u@h/db", "flag/env beats file");
        assert_eq!(c.log, "debug", "file beats default");
        assert_eq!(c.local.tenant, "acme");
        assert_eq!(c.local.role, Role::Operator);
        assert_eq!(c.http.listen.port(), 9000);
        assert_eq!(c.max_connections, DEFAULT_MAX_CONNECTIONS, "default when nothing is set");
        let h = &c.http;
        assert_eq!((h.header_read_timeout.as_secs(), h.idle_timeout.as_secs(), h.max_connections), (10, 60, 1024));
        assert!(h.trusted_proxies.is_empty() && h.client_ip_header == "x-forwarded-for");
        let c = Config::resolve(
            FileConfig::default(),
            Overrides {
                trusted_proxies: Some(vec!["10.0.0.0/8".into(), "".into(), "192.0.2.7".into()]),
                client_ip_header: Some("X-Real-IP".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.http.trusted_proxies.len(), 2, "empty entries (MBM_HTTP_TRUSTED_PROXIES=\"\") are ignored");
        assert_eq!(c.http.client_ip_header, "x-real-ip");
    }

    #[test]
    fn outbound_settings_default_off_and_layer() {
        let c = Config::resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(c.outbound, crate::outbound::OutboundPolicy::default(), "neither is allowed by default");
        let file: FileConfig = toml::from_str("[outbound]\nallow_loopback = true\nallow_private = true").unwrap();
        let c = Config::resolve(file.clone(), Overrides::default()).unwrap();
        assert!(c.outbound.allow_loopback && c.outbound.allow_private);
        let o = Overrides { outbound_allow_loopback: Some(false), ..Default::default() };
        let c = Config::resolve(file, o).unwrap();
        assert!(!c.outbound.allow_loopback && c.outbound.allow_private, "the environment beats the file");
        assert!(toml::from_str::<FileConfig>("[outbound]\nallow_metadata = true").is_err());
    }

    #[test]
    fn the_embedded_store_keeps_its_key_beside_the_database() {
        assert_eq!(
            default_key_file("sqlite:///var/lib/mbm/db.sqlite3?mode=rwc"),
            Some(PathBuf::from("/var/lib/mbm/master.key"))
        );
        assert_eq!(default_key_file("postgres://u@h/db"), None);
        assert_eq!(default_key_file("sqlite::memory:"), None);
        let c = Config::resolve(FileConfig::default(), Overrides { make_max_attempts: Some(0), ..Default::default() });
        assert!(c.unwrap_err().to_string().contains("`make.max_attempts`"));
        let c = Config::resolve(FileConfig::default(), Overrides { lease_secs: Some(0), ..Default::default() });
        assert!(c.unwrap_err().to_string().contains("`actions.lease_secs`"));
    }

    #[test]
    fn bad_settings_name_their_key() {
        let e =
            Config::resolve(FileConfig::default(), Overrides { listen: Some("nowhere".into()), ..Default::default() });
        assert!(e.unwrap_err().to_string().contains("`http.listen`"));
        let e = Config::resolve(
            FileConfig::default(),
            Overrides { database_url: Some("mysql://x".into()), ..Default::default() },
        );
        assert!(e.unwrap_err().to_string().contains("`database_url`"));
        let e = Config::resolve(
            FileConfig::default(),
            Overrides { tls_cert: Some("/etc/mbm/cert.pem".into()), ..Default::default() },
        );
        assert!(e.unwrap_err().to_string().contains("`http.tls_key`"));
        let e = Config::resolve(
            FileConfig::default(),
            Overrides {
                trusted_proxies: Some(vec!["10.0.0.0/8".into(), "proxy.internal".into()]),
                ..Default::default()
            },
        );
        assert!(e.unwrap_err().to_string().contains("`http.trusted_proxies`: \"proxy.internal\" is not an IP address"));
        let e = Config::resolve(
            FileConfig::default(),
            Overrides { client_ip_header: Some("x forwarded".into()), ..Default::default() },
        );
        assert!(e.unwrap_err().to_string().contains("`http.client_ip_header`"));
        let e = Config::resolve(
            FileConfig::default(),
            Overrides { header_read_timeout_secs: Some(0), ..Default::default() },
        );
        assert!(e.unwrap_err().to_string().contains("`http.header_read_timeout_secs`"));
        let e =
            Config::resolve(FileConfig::default(), Overrides { http_max_connections: Some(0), ..Default::default() });
        assert!(e.unwrap_err().to_string().contains("`http.max_connections`"));
        let e = Config::resolve(
            FileConfig::default(),
            Overrides { gate_act_percent: Some(70), gate_delay_percent: Some(80), ..Default::default() },
        );
        let e = e.unwrap_err().to_string();
        assert!(e.contains("`actions.gate_{act,delay,alert}_percent`") && e.contains("alert ≤ delay ≤ act"), "{e}");
        let e = toml::from_str::<FileConfig>("colour = 1").unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn the_example_config_parses_and_covers_every_key() {
        let text = include_str!("../../config/example.toml");
        let uncommented: String = text
            .lines()
            .map(|l| l.strip_prefix("# ").filter(|r| r.contains(" = ") || r.starts_with('[')).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let file: FileConfig = toml::from_str(&uncommented).expect("example config parses");
        assert!(file.database_url.is_some() && file.log.is_some() && file.log_format.is_some());
        assert!(file.database.max_connections.is_some());
        assert!(file.local.tenant.is_some() && file.local.subject.is_some() && file.local.role.is_some());
        assert!(file.http.listen.is_some() && file.http.allowed_hosts.is_some() && file.http.allowed_origins.is_some());
        assert!(file.http.tls_cert.is_some() && file.http.tls_key.is_some());
        let o = &file.oauth;
        assert!(o.issuer.is_some() && o.audience.is_some() && o.jwks_url.is_some() && o.algorithms.is_some());
        assert!(o.tenant_claim.is_some() && o.role_claim.is_some() && o.leeway_secs.is_some());
        assert!(o.authorization_servers.is_some());
        assert!(file.secrets.master_key_file.is_some());
        assert!(file.make.request_timeout_secs.is_some() && file.make.max_attempts.is_some());
        assert!(file.make.retry_base_delay_ms.is_some());
        let a = &file.actions;
        assert!(a.evaluate_interval_secs.is_some() && a.approval_ttl_minutes.is_some() && a.lease_secs.is_some());
        assert!(a.scenario_retry_delay_ms.is_some() && a.webhook_timeout_secs.is_some());
        assert!(a.webhook_max_attempts.is_some() && a.webhook_retry_base_ms.is_some());
        assert!(a.confirm_pause_over.is_some() && a.gated_delay_minutes.is_some());
        assert!(a.gate_act_percent.is_some() && a.gate_delay_percent.is_some() && a.gate_alert_percent.is_some());
        let au = &file.audit;
        assert!(au.signing_key_file.is_some() && au.checkpoint_every_records.is_some());
        assert!(au.checkpoint_interval_secs.is_some());
        assert!(file.read_only.is_some() && file.toolsets.is_some() && file.tools.is_some());
        let h = &file.http;
        assert!(h.stateless.is_some() && h.request_timeout_secs.is_some() && h.shutdown_grace_secs.is_some());
        assert!(h.metrics.is_some());
        assert!(h.header_read_timeout_secs.is_some() && h.idle_timeout_secs.is_some() && h.max_connections.is_some());
        assert!(h.trusted_proxies.is_some() && h.client_ip_header.is_some());
        let l = &file.limits;
        assert!(l.reads_per_hour.is_some() && l.modifications_per_hour.is_some());
        assert!(l.automated_actions_per_hour.is_some() && l.failed_auths_per_minute.is_some());
        assert!(l.read_tool_timeout_secs.is_some());
        assert!(file.outbound.allow_loopback.is_some() && file.outbound.allow_private.is_some());
        Config::resolve(file, Overrides::default()).expect("example config is valid");
    }
}
