//! What every request shares: the store, the process-wide Make client and the keyring that seals Make
//! credentials. Built once at start-up (see `cli/serve.rs`).

use crate::config::settings::{ActionSettings, SyncSettings};
use crate::crypto::{Binding, CryptoError, KeyError, Keyring};
use crate::domain::TenantId;
use crate::make::{MakeClient, MakeTarget};
use crate::notify::WebhookClient;
use crate::store::{ConnectionRecord, Store, StoreError};

/// The AAD purpose of sealed Make tokens.
pub const CONNECTION_SECRET: &str = "make_connection";
/// The AAD purpose of sealed webhook signing secrets.
pub const WEBHOOK_SECRET: &str = "webhook";

/// A name for this process in leases: host, process id and 8 random hex digits.
pub fn instance_name() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "host".into());
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).expect("the OS random source works");
    let random: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}:{}:{random}", std::process::id())
}

pub struct App {
    pub store: Store,
    pub make: MakeClient,
    /// Where outbound HTTP (webhooks, Make) may connect; the clients below are built with it, and URLs
    /// given by users are checked against it.
    pub outbound: crate::outbound::OutboundPolicy,
    /// `None` when no master key is configured (then Make connections cannot be stored or used).
    pub keys: Option<Keyring>,
    /// Tunables of automated actions and notifications.
    pub actions: ActionSettings,
    /// Delivers webhook, Slack and Teams notifications.
    pub webhooks: WebhookClient,
    /// Sends email notifications (same timeout and outbound policy).
    pub mailer: crate::notify::email::Mailer,
    /// This process's name in leases, unique across instances (host, process id and a random part).
    pub instance: String,
    /// Rate limits, the read timeout and read-only mode.
    pub policy: crate::limits::CallPolicy,
    /// How a usage sync spends its Make API calls.
    pub sync: SyncSettings,
    /// The tools served.
    pub tools: crate::config::settings::ToolChoice,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{0}")]
    NoKey(#[from] KeyError),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
}

impl App {
    /// Everything a server shares, from the configuration. Fails with a clear message when stored Make
    /// credentials cannot be decrypted with the configured master key.
    pub async fn build(store: Store, config: &crate::config::Config) -> anyhow::Result<App> {
        let keys = config.keys.load()?;
        let outbound = config.outbound;
        if outbound.allow_loopback || outbound.allow_private {
            tracing::warn!(
                allow_loopback = outbound.allow_loopback,
                allow_private = outbound.allow_private,
                "outbound requests (webhooks, Make) may reach {}; \
                 link-local and cloud metadata addresses stay refused",
                match (outbound.allow_loopback, outbound.allow_private) {
                    (true, true) => "loopback and private network addresses",
                    (true, false) => "loopback addresses (for local development and tests only)",
                    _ => "private network addresses",
                }
            );
        }
        // The API budget is shared through the database by every caller of every instance, on the store's clock.
        let pacer = crate::make::pacer::Pacer::new(
            std::sync::Arc::new(store.clone()),
            store.clock().clone(),
            config.make.api_share,
        );
        let make = crate::make::MakeClient::new(config.make.clone(), outbound)?.with_pacer(std::sync::Arc::new(pacer));
        let sync = SyncSettings {
            interval_secs: if config.evaluate_interval_secs > 0 { config.evaluate_interval_secs } else { 300 },
        };
        let app = App {
            store,
            make,
            keys,
            outbound,
            actions: config.actions.clone(),
            webhooks: crate::notify::WebhookClient::new(config.webhook_timeout, outbound),
            mailer: crate::notify::email::Mailer::new(config.webhook_timeout, outbound),
            instance: crate::app::instance_name(),
            policy: crate::limits::CallPolicy::new(&config.limits, config.read_tool_timeout, config.read_only),
            sync,
            tools: config.tools.clone(),
        };
        app.check_secret_keys().await?;
        Ok(app)
    }

    pub fn keyring(&self) -> Result<&Keyring, SecretError> {
        self.keys.as_ref().ok_or(SecretError::NoKey(KeyError::Missing))
    }

    /// The AAD binding of a connection's token.
    pub fn binding<'a>(tenant: &'a str, connection_id: &'a str) -> Binding<'a> {
        Binding { purpose: CONNECTION_SECRET, tenant_id: tenant, record_id: connection_id }
    }

    /// Decrypt a connection's token into a call target.
    pub fn target(&self, tenant: TenantId, c: &ConnectionRecord) -> Result<MakeTarget, SecretError> {
        let tenant = tenant.to_string();
        let token = self.keyring()?.open_secret(&c.sealed, Self::binding(&tenant, &c.id))?;
        Ok(MakeTarget::new(c.base_url.clone(), c.auth_kind, token).with_scopes(c.token_scopes.clone()))
    }

    /// The AAD binding of a webhook's signing secret.
    pub fn webhook_binding<'a>(tenant: &'a str, webhook_id: &'a str) -> Binding<'a> {
        Binding { purpose: WEBHOOK_SECRET, tenant_id: tenant, record_id: webhook_id }
    }

    /// Start-up check: every stored secret must be decryptable with the configured keys. A wrong or
    /// missing master key is reported here, clearly, rather than as failures on first use.
    pub async fn check_secret_keys(&self) -> Result<(), StartupKeyError> {
        let stored = self.store.secret_key_ids().await?;
        let missing: Vec<String> =
            stored.into_iter().filter(|id| !self.keys.as_ref().is_some_and(|k| k.has_key(id))).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(StartupKeyError::Mismatch {
            missing: missing.join(", "),
            configured: self
                .keys
                .as_ref()
                .map_or_else(|| "no master key".into(), |k| format!("key id {}", k.current_id())),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupKeyError {
    #[error(
        "the stored Make credentials are encrypted under master key id {missing}, but the configuration has {configured}; \
         set MBM_MASTER_KEY (or MBM_MASTER_KEY_FILE) to the key they were encrypted with, or list it in \
         MBM_PREVIOUS_MASTER_KEYS and run `make-budget-mcp keys rotate`"
    )]
    Mismatch { missing: String, configured: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}
