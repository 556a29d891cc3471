//! `serve` and `evaluate`: the server over stdio or HTTP with its background loops (evaluator, checkpoints,
//! rate-limit upkeep, denial summaries), and the evaluator on its own.

use std::process::ExitCode;
use std::sync::Arc;

use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

use super::TransportArg;
use crate::admin;
use crate::app::App;
use crate::audit::Actor;
use crate::auth::{Principal, Transport};
use crate::config::Config;
use crate::domain::TenantId;
use crate::mcp::BudgetServer;
use crate::store::Store;

pub(super) async fn evaluate(app: Arc<App>, config: &Config, once: bool, no_sync: bool) -> anyhow::Result<ExitCode> {
    use crate::engine::evaluator::UsageSource;
    if once {
        let usage = if no_sync { UsageSource::Stored } else { UsageSource::SyncFromMake };
        let report = crate::engine::evaluator::run_once(&app, usage).await;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(if report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let interval = std::time::Duration::from_secs(config.evaluate_interval_secs.max(1));
    crate::engine::evaluator::run_forever(app, interval, shutdown).await;
    Ok(ExitCode::SUCCESS)
}

/// The configured local operator (created on first use): the principal of stdio and of `--no-auth` HTTP.
async fn local_principal(app: &App, config: &Config, transport: Transport) -> anyhow::Result<Principal> {
    let local = &config.local;
    let actor = Actor {
        subject: local.subject.clone(),
        role: local.role.as_str().into(),
        transport: transport.as_str().into(),
    };
    let tenant = admin::ensure_tenant(&app.store, &local.tenant, &actor).await?;
    Ok(Principal {
        tenant_id: tenant.id.parse::<TenantId>()?,
        tenant_name: tenant.name,
        subject: local.subject.clone(),
        role: local.role,
        transport,
        token_id: None,
    })
}

pub(super) async fn serve(app: Arc<App>, config: &Config, transport: TransportArg) -> anyhow::Result<ExitCode> {
    crate::mcp::catalog::check_choice(&config.tools).map_err(anyhow::Error::msg)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    tokio::spawn(forget_idle_forever(app.clone(), shutdown.clone()));
    let denial_summaries = tokio::spawn(crate::mcp::record_suppressed_denials_forever(app.clone(), shutdown.clone()));
    tracing::info!(toolsets = ?config.tools.toolsets, tools = ?config.tools.tools, "serving these tools");
    if config.read_only {
        tracing::info!("read-only mode: only read tools are served; no evaluator and no checkpoint timer run");
    }
    let evaluator = (config.evaluate_interval_secs > 0 && !config.read_only).then(|| {
        let interval = std::time::Duration::from_secs(config.evaluate_interval_secs);
        tokio::spawn(crate::engine::evaluator::run_forever(app.clone(), interval, shutdown.clone()))
    });
    let checkpointer = (config.audit.checkpoint_interval_secs > 0
        && app.store.audit_keys().is_some()
        && !config.read_only)
        .then(|| {
            let every = std::time::Duration::from_secs(config.audit.checkpoint_interval_secs);
            tokio::spawn(checkpoint_forever(app.store.clone(), every, shutdown.clone()))
        });
    match transport {
        TransportArg::Http => {
            let local = match config.http.no_auth {
                true => {
                    // Refuse an open address before creating the operator's tenant.
                    crate::http::no_auth::check_listen(config.http.listen)?;
                    Some(local_principal(&app, config, Transport::HttpNoAuth).await?)
                }
                false => None,
            };
            crate::http::serve(app, config.http.clone(), local, shutdown.clone()).await?;
        }
        TransportArg::Stdio => {
            let principal = local_principal(&app, config, Transport::Stdio).await?;
            tracing::info!(tenant = %principal.tenant_id, subject = principal.subject, role = %principal.role,
                           "serving MCP over stdio");
            let tools = Arc::new(BudgetServer::router_for(&app.tools));
            let server = BudgetServer::new(app, tools, Some(principal));
            let running = server.serve(crate::mcp::stdio::stdio()).await?;
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
    if let Some(c) = checkpointer {
        let _ = c.await;
    }
    let _ = denial_summaries.await;
    Ok(ExitCode::SUCCESS)
}

/// Every few minutes, forget the rate-limit state of tenants, addresses and principals whose allowances
/// are whole again.
async fn forget_idle_forever(app: Arc<App>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
    loop {
        tokio::select! {
            _ = tick.tick() => app.policy.forget_idle(),
            () = shutdown.cancelled() => return,
        }
    }
}

/// Every `every`, sign a checkpoint of each audit chain that grew since its last one. Several instances
/// may do this at once: the chain head's lock makes the second find the head already covered.
async fn checkpoint_forever(store: Store, every: std::time::Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match store.checkpoint_grown_chains().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(chains = n, "signed audit checkpoints"),
            Err(e) => tracing::error!(error = %e, "signing audit checkpoints failed"),
        }
    }
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
