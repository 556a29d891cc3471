//! The server in this process on a [`ManualClock`], its MCP sessions served over in-memory pipes: for
//! tests of rules that take minutes of the server's time (an approval window closing), which move the
//! clock instead of sleeping. Everything the server reads the time from (the store, the engine, the tool
//! handlers) reads this clock.
//!
//! A session is what `serve` builds for a stdio connection (`BudgetServer` with a fixed principal, on the
//! server's own stdio transport), with the principal an API token authenticates to over HTTP, so the tools
//! see the same caller as they would behind `serve --transport http`. The configuration is the one
//! [`super::HttpServer`] starts the binary with: test keys, rate limits off, loopback reachable.

use std::sync::Arc;

use make_budget_mcp::app::App;
use make_budget_mcp::config::{Config, FileConfig, Overrides};
use make_budget_mcp::domain::clock::ManualClock;
use make_budget_mcp::mcp::BudgetServer;
use make_budget_mcp::mcp::stdio::StdioTransport;
use make_budget_mcp::store::{Store, StoreOptions};
use rmcp::ServiceExt;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::service::{ClientLifecycleMode, ClientServiceExt};

use super::{Client, TEST_AUDIT_KEY, TEST_MASTER_KEY};

/// One server in this process. Its sessions end when their clients are dropped.
pub struct LocalServer {
    pub app: Arc<App>,
    pub clock: Arc<ManualClock>,
    tools: Arc<ToolRouter<BudgetServer>>,
}

impl LocalServer {
    /// A server on `db_url` (migrated) whose clock starts at the system's now, configured as
    /// [`super::HttpServer::start_with`] configures the binary, then changed by `set`.
    pub async fn start_with(db_url: &str, set: impl FnOnce(&mut Overrides)) -> LocalServer {
        let mut overrides = Overrides {
            database_url: Some(db_url.to_owned()),
            master_key: Some(TEST_MASTER_KEY.to_owned()),
            audit_signing_key: Some(TEST_AUDIT_KEY.to_owned()),
            outbound_allow_loopback: Some(true),
            // NO_RATE_LIMITS
            reads_per_hour: Some(0),
            modifications_per_hour: Some(0),
            automated_actions_per_hour: Some(0),
            failed_auths_per_minute: Some(0),
            denied_audits_per_hour: Some(0),
            // ALL_TOOLSETS
            toolsets: Some(vec!["all".into()]),
            ..Default::default()
        };
        set(&mut overrides);
        let config = Config::resolve(FileConfig::default(), overrides).expect("config");
        let clock = Arc::new(ManualClock::new(jiff::Timestamp::now()));
        let store = Store::connect(db_url, &StoreOptions::default(), clock.clone()).await.expect("connect");
        store.migrate().await.expect("migrate");
        let audit_keys = config.audit.signing_key.load().expect("audit signing key").map(Arc::new);
        let store = store.with_audit_keys(audit_keys, config.audit.checkpoint_every_records);
        let app = Arc::new(App::build(store, &config).await.expect("app"));
        let tools = Arc::new(BudgetServer::router_for(&app.tools));
        LocalServer { app, clock, tools }
    }

    /// An MCP client (initialize handshake) whose session's principal is what `token` authenticates to.
    pub async fn client(&self, token: &str) -> Client {
        let principal = make_budget_mcp::http::authenticate(&self.app.store, token)
            .await
            .expect("token lookup")
            .expect("a valid token");
        let (client_end, server_end) = tokio::io::duplex(1 << 16);
        let (read, write) = tokio::io::split(server_end);
        let server = BudgetServer::new(self.app.clone(), self.tools.clone(), Some(principal));
        tokio::spawn(async move {
            if let Ok(running) = server.serve(StdioTransport::new(read, write)).await {
                let _ = running.waiting().await;
            }
        });
        ().serve_with_lifecycle(client_end, ClientLifecycleMode::Initialize)
            .await
            .expect("connect in-memory MCP client")
    }

    /// Close the store's connections.
    pub async fn stop(self) {
        self.app.store.close().await;
    }
}
