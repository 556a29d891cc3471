//! The background evaluator: on a schedule (in `serve`) or once (`make-budget-mcp evaluate --once`), it
//! syncs usage, evaluates every active budget, expires overdue approvals, executes automatic and approved
//! plans (resuming interrupted ones), reverses plans due for reversal at a new period, and delivers
//! notifications (`engine::deliveries`).
//!
//! Several instances may run it against one PostgreSQL database. Each unit of work is taken under a lease
//! (`store::Store::try_lease`): syncing an organization, evaluating a budget, executing a plan, delivering a
//! notification. A lease expires if its holder dies, and the next pass of any instance takes the work over.
//! Crossings are additionally decided under a row lock (see `engine::crossings`), so even an expired lease
//! cannot produce a second crossing, plan or notification.

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::actions::{self, take_lease};
use super::caller::Caller;
use super::error::Error;
use super::{crossings, status, sync};
use crate::app::App;
use crate::domain::TenantId;
use crate::domain::action::PlanState;

/// Budgets evaluated under one lease.
const BUDGETS_PER_LEASE: usize = 100;

/// What one pass did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PassReport {
    pub organizations_synced: usize,
    pub sync_failures: usize,
    pub budgets_evaluated: usize,
    pub crossings: usize,
    pub plans_expired: usize,
    pub plans_executed: usize,
    pub plans_reversed: usize,
    pub notifications_delivered: usize,
    pub notifications_failed: usize,
    pub errors: Vec<String>,
    /// How long the pass took, in milliseconds.
    pub duration_ms: u64,
}

/// Where a pass takes usage from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSource {
    /// Sync every connected organization from Make first (the scheduled evaluator).
    SyncFromMake,
    /// Evaluate against the usage last synced; no Make calls (`evaluate --no-sync`).
    Stored,
}

/// One full pass over every tenant. Errors of one unit of work are logged and reported; the pass goes on.
pub async fn run_once(app: &App, usage: UsageSource) -> PassReport {
    let started = std::time::Instant::now();
    let request_id = format!("evaluator-{}", uuid::Uuid::now_v7());
    let mut report = PassReport::default();
    let tenants = match app.store.tenants().await {
        Ok(t) => t,
        Err(e) => {
            report.errors.push(format!("listing tenants: {e}"));
            return report;
        }
    };
    let ids: Vec<TenantId> = tenants.iter().filter_map(|t| t.id.parse().ok()).collect();
    if usage == UsageSource::SyncFromMake {
        sync_all(app, &ids, &request_id, &mut report).await;
    }
    for t in tenants {
        let Ok(tenant) = t.id.parse::<TenantId>() else { continue };
        if let Err(e) = evaluate_tenant(app, tenant, &request_id, &mut report).await {
            tracing::warn!(tenant = %tenant, error = %e, "evaluation of a tenant failed");
            report.errors.push(format!("tenant {}: {e}", t.name));
        }
    }
    match actions::expire_overdue(app, &request_id).await {
        Ok(n) => report.plans_expired = n,
        Err(e) => report.errors.push(format!("expiring approvals: {e}")),
    }
    run_plans(app, None, &request_id, &mut report).await;
    reverse_due(app, &request_id, &mut report).await;
    super::deliveries::deliver_due(app, &mut report).await;
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

/// Syncs running at once in a pass. Each organization has its own API budget, so their syncs do not slow
/// each other down; a pass over many organizations takes about as long as its slowest one.
const CONCURRENT_SYNCS: usize = 4;

/// Sync every connected organization of every tenant, a few at a time, each under a lease as long as an
/// evaluator interval (a sync paced at the API budget can take minutes; another instance must not start
/// the same one meanwhile).
async fn sync_all(app: &App, tenants: &[TenantId], request_id: &str, report: &mut PassReport) {
    use futures_util::StreamExt;
    let mut work = Vec::new();
    for tenant in tenants {
        match app.store.tenant(*tenant).connections().await {
            Ok(conns) => {
                for c in conns {
                    work.extend(c.organizations.iter().map(|o| (*tenant, o.organization_id)));
                }
            }
            Err(e) => report.errors.push(format!("tenant {tenant}: listing connections: {e}")),
        }
    }
    let holder = actions::holder(app);
    let lease_for = Duration::from_secs(app.sync.interval_secs.max(1)).max(app.actions.lease);
    let results: Vec<Result<Vec<sync::OrgSyncReport>, String>> = futures_util::stream::iter(work)
        .map(|(tenant, org)| {
            let holder = holder.clone();
            async move {
                let lease = format!("sync:{tenant}:{org}");
                match actions::take_lease_for(app, &lease, &holder, lease_for).await {
                    Ok(true) => {}
                    Ok(false) => return Ok(Vec::new()),
                    Err(e) => return Err(format!("sync of organization {org}: {e}")),
                }
                let c = Caller::system(app, tenant, request_id, "usage_synced");
                let result = sync::sync_tenant(&c, Some(org), &|_| {})
                    .await
                    .map_err(|e| format!("sync of organization {org}: {e}"));
                if let Err(e) = app.store.release_lease(&lease, &holder).await {
                    tracing::warn!(lease, error = %e, "could not release a sync lease");
                }
                result
            }
        })
        .buffer_unordered(CONCURRENT_SYNCS)
        .collect()
        .await;
    for r in results {
        match r {
            Ok(reports) => {
                for r in reports {
                    if r.status == "synced" {
                        report.organizations_synced += 1;
                    } else {
                        report.sync_failures += 1;
                        report.errors.push(format!(
                            "sync of organization {} {}: {}",
                            r.organization_id,
                            r.status,
                            r.error.unwrap_or_default()
                        ));
                    }
                }
            }
            Err(e) => {
                report.sync_failures += 1;
                report.errors.push(e);
            }
        }
    }
}

async fn evaluate_tenant(app: &App, tenant: TenantId, request_id: &str, report: &mut PassReport) -> Result<(), Error> {
    let c = Caller::system(app, tenant, request_id, "threshold_evaluation");
    let ts = c.store();
    let holder = actions::holder(app);
    // Budgets are leased a chunk at a time: one lease write and one release per chunk rather than per
    // budget. Instances that list the same budgets name the same chunks; if the lists differ (a budget was
    // created meanwhile), two instances may evaluate a budget twice, which the row lock in
    // `crossings::evaluate_with` makes harmless. Thresholds and their states are read once for the tenant,
    // not per budget.
    let budgets = ts.active_budgets().await?;
    let book = ts.threshold_book().await?;
    let mut snap = status::UsageSnapshot::new(&app.store, tenant);
    for chunk in budgets.chunks(BUDGETS_PER_LEASE) {
        let lease = format!("budgets:{tenant}:{}..{}", chunk[0].id, chunk[chunk.len() - 1].id);
        if !take_lease(app, &lease, &holder).await? {
            continue;
        }
        for b in chunk {
            let run = crossings::Run { settings: &app.actions, now: c.now(), by: c.attribution() };
            match crossings::evaluate_with(&mut snap, b, book.thresholds(&b.id), book.states(), &run).await {
                Ok(c) => {
                    report.budgets_evaluated += 1;
                    report.crossings += c.len();
                }
                Err(status::StatusError::Period(e)) => {
                    tracing::info!(budget = b.id, error = %e, "budget not evaluated");
                }
                Err(e) => report.errors.push(format!("budget {}: {e}", b.id)),
            }
        }
        app.store.release_lease(&lease, &holder).await?;
    }
    Ok(())
}

/// Execute every plan that is planned (automatic), approved, scheduled and due, or was left executing by a
/// crashed instance, optionally only of one tenant. Plans another instance holds are skipped.
pub async fn run_plans(app: &App, only: Option<TenantId>, request_id: &str, report: &mut PassReport) {
    let states = [PlanState::Planned, PlanState::Approved, PlanState::Executing];
    let now = crate::domain::clock::format_timestamp(app.store.clock().now());
    let listed = match app.store.plans_in_states(&states).await {
        Ok(p) => app.store.scheduled_plans_due(&now).await.map(|due| p.into_iter().chain(due).collect::<Vec<_>>()),
        Err(e) => Err(e),
    };
    let plans = match listed {
        Ok(p) => p,
        Err(e) => {
            report.errors.push(format!("listing plans: {e}"));
            return;
        }
    };
    for (tenant, id) in plans.into_iter().filter(|(t, _)| only.is_none_or(|o| o == *t)) {
        match actions::execute(&Caller::system(app, tenant, request_id, "execute_action"), &id).await {
            Ok(_) => report.plans_executed += 1,
            Err(e) if actions::is_busy(&e) => {}
            Err(e) => {
                tracing::warn!(plan = id, error = %e, "plan execution failed");
                report.errors.push(format!("plan {id}: {e}"));
            }
        }
    }
}

/// Reverse executed plans marked `reverse_at_period_end` once their budget is in a later period.
async fn reverse_due(app: &App, request_id: &str, report: &mut PassReport) {
    let plans = match app.store.plans_reversing_at_period_end().await {
        Ok(p) => p,
        Err(e) => {
            report.errors.push(format!("listing plans: {e}"));
            return;
        }
    };
    for (tenant, plan) in plans {
        let (ts, id) = (app.store.tenant(tenant), &plan.id);
        let Ok(budget_id) = plan.budget_id.parse() else { continue };
        let Ok(budget) = ts.budget(budget_id).await else { continue };
        let now = app.store.clock().now();
        let Ok(window) = status::current_window(&app.store, tenant, &budget, now).await else { continue };
        if window.key() == plan.period_key {
            continue;
        }
        let reason = format!("a new budget period began ({})", window.key());
        match actions::reverse(&Caller::system(app, tenant, request_id, "reverse_action"), id, &reason).await {
            Ok(_) => report.plans_reversed += 1,
            Err(e) if actions::is_busy(&e) => {}
            Err(e) => report.errors.push(format!("reversing plan {id}: {e}")),
        }
    }
}

/// Run a pass every `interval` (the first one after `interval`) until `shutdown`.
pub async fn run_forever(app: std::sync::Arc<App>, interval: Duration, shutdown: CancellationToken) {
    tracing::info!(interval_secs = interval.as_secs_f64(), instance = app.instance, "background evaluator started");
    let mut wait = interval;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => break,
        }
        let started = Timestamp::now();
        let report = tokio::select! {
            r = run_once(&app, UsageSource::SyncFromMake) => r,
            () = shutdown.cancelled() => break,
        };
        crate::monitoring::evaluator_pass(
            report.errors.is_empty(),
            Timestamp::now().duration_since(started).unsigned_abs(),
        );
        if report.errors.is_empty() {
            tracing::debug!(?report, "evaluation pass done");
        } else {
            tracing::warn!(errors = ?report.errors, "evaluation pass done with errors");
        }
        wait = interval.saturating_sub(Timestamp::now().duration_since(started).unsigned_abs());
    }
    tracing::info!("background evaluator stopped");
}
