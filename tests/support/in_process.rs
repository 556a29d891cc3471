//! The server's engine in this process, on a virtual clock, against the SIMULATED Make: for tests and
//! benchmarks that run hours of paced syncs in seconds (every wait of the Make client's pacer moves the
//! clock instead of sleeping). The store, the pacer and the simulator share the clock.
//!
//! Self-contained like `fake_make.rs` (the benchmarks include both with `#[path]`).
#![allow(dead_code)]

use std::sync::Arc;

use make_budget_mcp::app::App;
use make_budget_mcp::audit::Actor;
use make_budget_mcp::config::{Config, FileConfig, Overrides};
use make_budget_mcp::crypto::SecretString;
use make_budget_mcp::domain::clock::VirtualClock;
use make_budget_mcp::domain::{Clock, TenantId};
use make_budget_mcp::engine::sync::OrgSyncReport;
use make_budget_mcp::make::{self, AuthKind, MakeTarget};
use make_budget_mcp::outbound::OutboundPolicy;
use make_budget_mcp::store::{ConnectionRecord, Store, StoreOptions};

/// The master key of in-process apps (base64 of 32 bytes).
pub const MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LW9mLTMyLWJ5dGVzLW9rISE=";

/// One server instance's engine.
pub struct Instance {
    pub app: Arc<App>,
    pub clock: Arc<VirtualClock>,
}

impl Instance {
    pub fn store(&self) -> &Store {
        &self.app.store
    }
}

pub fn actor() -> Actor {
    Actor { subject: "evaluator".into(), role: "admin".into(), transport: "cli".into() }
}

/// An instance on `db_url` (migrated), with the evaluator interval and API share given.
pub async fn instance(db_url: &str, clock: Arc<VirtualClock>, interval_secs: u64, api_share: f64) -> Instance {
    let store = Store::connect(db_url, &StoreOptions::default(), clock.clone()).await.expect("connect");
    store.migrate().await.expect("migrate");
    let overrides = Overrides {
        database_url: Some(db_url.to_owned()),
        master_key: Some(MASTER_KEY.to_owned()),
        outbound_allow_loopback: Some(true),
        evaluate_interval_secs: Some(interval_secs),
        make_api_share: Some(api_share),
        ..Default::default()
    };
    let config = Config::resolve(FileConfig::default(), overrides).expect("config");
    let app = App::build(store, &config).await.expect("app");
    Instance { app: Arc::new(app), clock }
}

/// A tenant with a connection to `organizations` of the simulated Make at `base_url`, as `connect_make`
/// stores it (checked with Make, token sealed).
pub async fn connect(i: &Instance, tenant_name: &str, base_url: &str, token: &str, organizations: &[i64]) -> TenantId {
    let store = i.store();
    let tenant: TenantId = match store.tenant_by_name(tenant_name).await.expect("tenant lookup") {
        Some(t) => t.id.parse().expect("tenant id"),
        None => make_budget_mcp::admin::create_tenant(store, tenant_name, &actor())
            .await
            .expect("create tenant")
            .id
            .parse()
            .expect("tenant id"),
    };
    let base = make::api_base_url(base_url, &OutboundPolicy::ALLOW_LOOPBACK).expect("base url");
    let secret = SecretString::new(token);
    let target = MakeTarget::new(base.clone(), AuthKind::ApiToken, secret.clone());
    let id = uuid::Uuid::now_v7().to_string();
    let checked = make_budget_mcp::engine::connect::check(&i.app, &target, organizations, &id).await.expect("check");
    let keys = i.app.keyring().expect("keyring");
    let t = tenant.to_string();
    let record = ConnectionRecord {
        id: id.clone(),
        label: "simulated Make".into(),
        base_url: base,
        auth_kind: AuthKind::ApiToken,
        sealed: keys.seal_secret(&secret, App::binding(&t, &id)),
        created_at: make_budget_mcp::domain::clock::format_timestamp(i.clock.now()),
        created_by: "tester".into(),
        organizations: checked.organizations,
        token_scopes: checked.scopes,
    };
    let mut tx = store.tenant(tenant).begin().await.expect("begin");
    tx.insert_connection(&record).await.expect("insert connection");
    tx.commit(make_budget_mcp::audit::AuditEntry {
        actor: actor(),
        action: "connect_make".into(),
        target: format!("make_connection:{id}"),
        outcome: make_budget_mcp::audit::Outcome::Success,
        reason: None,
        request_id: uuid::Uuid::now_v7().to_string(),
        before: None,
        after: None,
    })
    .await
    .expect("commit");
    tenant
}

/// One sync pass of every organization of `tenant`, as the evaluator runs it.
pub async fn sync(i: &Instance, tenant: TenantId) -> Vec<OrgSyncReport> {
    let caller =
        make_budget_mcp::engine::Caller::system(&i.app, tenant, "in-process", "usage_synced").as_actor(actor());
    make_budget_mcp::engine::sync::sync_tenant(&caller, None, &|_| {}).await.expect("sync")
}
