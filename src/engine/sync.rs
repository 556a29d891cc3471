//! Usage sync: read an organization's plan, teams, scenarios, daily usage and current-period
//! consumption from Make, then write it all, with its audit record, in one transaction.
//!
//! Reading happens before any writing, and each organization commits on its own. A sync that fails or
//! is cancelled midway has written nothing for the organization it was on; running it again gives the
//! same totals as one clean run, because days are replaced, not added (`store::MutationTx::apply_org_sync`).
//!
//! Per-scenario daily usage costs one API call per scenario, so it is read for the scenarios that can
//! have usage: the active ones and those with consumption in the current period.

use std::collections::HashSet;

use schemars::JsonSchema;
use serde::Serialize;

use crate::app::{App, SecretError};
use crate::audit::{Actor, AuditEntry, Outcome};
use crate::domain::TenantId;
use crate::domain::clock::format_timestamp;
use crate::make::{self, MakeError, MakeTarget, UsageDay, UsageOf};
use crate::store::{ConsumptionRow, OrgRecord, OrgSync, ScenarioRecord, StoreError, UsageRow, UsageSubject};

/// A progress step: `done` of `total`, with a human message.
#[derive(Debug, Clone)]
pub struct Progress {
    pub done: u32,
    pub total: u32,
    pub message: String,
}

/// What a sync did for one organization.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OrgSyncReport {
    pub organization_id: i64,
    pub organization_name: Option<String>,
    /// "synced" or "failed".
    pub status: String,
    /// Why it failed (Make's error, or a decryption problem).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub teams: usize,
    pub scenarios: usize,
    pub active_scenarios: usize,
    /// Scenarios whose daily usage was read (active, or with consumption this period).
    pub scenario_usage_series: usize,
    /// Days of usage stored (organization, team and scenario series together).
    pub usage_days: usize,
    /// Credits consumed in the current reset period, in centicredits (sum over scenarios).
    pub period_centicredits: i64,
    /// True when some figures were estimated as operations × 100 (Make reported no centicredits).
    pub estimated: bool,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub synced_at: Option<String>,
}

impl OrgSyncReport {
    fn failed(organization_id: i64, name: Option<String>, error: String) -> Self {
        Self {
            organization_id,
            organization_name: name,
            status: "failed".into(),
            error: Some(error),
            teams: 0,
            scenarios: 0,
            active_scenarios: 0,
            scenario_usage_series: 0,
            usage_days: 0,
            period_centicredits: 0,
            estimated: false,
            period_start: None,
            period_end: None,
            synced_at: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("organization {0} is not connected in this tenant; connect it with connect_make first")]
    NotConnected(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn to_i64(v: Option<u64>) -> i64 {
    v.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// Make's `date` as YYYY-MM-DD (some zones send a full timestamp).
fn day_of(d: &UsageDay) -> Result<String, MakeError> {
    let head = d.date.get(..10).unwrap_or(&d.date);
    head.parse::<jiff::civil::Date>()
        .map(|day| day.to_string())
        .map_err(|_| MakeError::Decode(format!("usage date {:?} is not a date", d.date)))
}

fn usage_rows(org: i64, subject: UsageSubject, id: i64, days: &[UsageDay]) -> Result<Vec<UsageRow>, MakeError> {
    days.iter()
        .map(|d| {
            let (centicredits, estimated) = make::centicredits_or_estimate(d.centicredits, d.operations);
            Ok(UsageRow {
                subject,
                subject_id: id,
                organization_id: org,
                day: day_of(d)?,
                centicredits: i64::try_from(centicredits).unwrap_or(i64::MAX),
                operations: to_i64(d.operations),
                data_transfer: to_i64(d.data_transfer),
                estimated,
            })
        })
        .collect()
}

/// An organization's plan facts as Make reported them (`GET /organizations/{id}`).
pub fn org_record(o: &make::Organization, connection_id: &str, validated_at: &str) -> OrgRecord {
    let license = o.license.clone().unwrap_or_default();
    OrgRecord {
        organization_id: o.id,
        connection_id: connection_id.to_owned(),
        name: o.name.clone().unwrap_or_else(|| format!("organization {}", o.id)),
        zone: o.zone.clone(),
        api_limit: license.api_limit.map(|v| to_i64(Some(v))),
        allowance: license.operations.map(|v| to_i64(Some(v))),
        operations_used: o.operations.map(|v| to_i64(Some(v))),
        last_reset: o.last_reset.clone(),
        next_reset: o.next_reset.clone(),
        restart_period: license.restart_period,
        is_paused: o.is_paused,
        validated_at: validated_at.to_owned(),
        synced_at: None,
    }
}

/// Read everything about one organization from Make. Writes nothing.
pub async fn fetch_org(
    app: &App,
    target: &MakeTarget,
    base: &OrgRecord,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<OrgSync, MakeError> {
    let c = &app.make;
    let org_id = base.organization_id;
    let o = c.organization(target, org_id).await?;
    let teams = c.teams(target, org_id).await?;
    let scenarios = c.scenarios(target, org_id).await?;
    let mut done = 3;
    // Known now: 3 reads done; 1 organization usage; per team usage + consumptions; scenario usage to come.
    let mut total = 3 + 1 + 2 * teams.len() as u32;
    let step = |done: u32, total: u32, message: String| progress(Progress { done, total, message });
    step(done, total, format!("organization {org_id}: {} teams, {} scenarios", teams.len(), scenarios.len()));

    let mut usage =
        usage_rows(org_id, UsageSubject::Organization, org_id, &c.usage(target, org_id, UsageOf::Organization).await?)?;
    done += 1;
    let mut consumptions = Vec::new();
    let mut period_start = None;
    for team in &teams {
        usage.extend(usage_rows(
            org_id,
            UsageSubject::Team,
            team.id,
            &c.usage(target, org_id, UsageOf::Team(team.id)).await?,
        )?);
        let cons = c.consumptions(target, org_id, team.id).await?;
        period_start = period_start.or(cons.last_reset);
        for sc in cons.scenario_consumptions {
            let (centicredits, estimated) = make::centicredits_or_estimate(sc.centicredits, sc.operations);
            consumptions.push(ConsumptionRow {
                scenario_id: sc.scenario_id,
                organization_id: org_id,
                centicredits: i64::try_from(centicredits).unwrap_or(i64::MAX),
                operations: to_i64(sc.operations),
                transfer: to_i64(sc.transfer),
                estimated,
                period_start: None,
            });
        }
        done += 2;
        step(done, total, format!("organization {org_id}: team {} read", team.id));
    }
    for cons in &mut consumptions {
        cons.period_start = period_start.clone();
    }
    // Make lists a scenario under each team it is asked about only once; keep one row per scenario.
    let mut seen = HashSet::new();
    consumptions.retain(|c| seen.insert(c.scenario_id));

    let consuming: HashSet<i64> = consumptions.iter().filter(|c| c.centicredits > 0).map(|c| c.scenario_id).collect();
    let with_usage: Vec<i64> =
        scenarios.iter().filter(|s| s.is_active == Some(true) || consuming.contains(&s.id)).map(|s| s.id).collect();
    total += with_usage.len() as u32;
    for (i, id) in with_usage.iter().enumerate() {
        let days = c.usage(target, org_id, UsageOf::Scenario(*id)).await?;
        usage.extend(usage_rows(org_id, UsageSubject::Scenario, *id, &days)?);
        done += 1;
        step(done, total, format!("organization {org_id}: scenario usage {}/{}", i + 1, with_usage.len()));
    }

    let org = org_record(&o, &base.connection_id, &base.validated_at);
    let synced_scenarios = scenarios
        .iter()
        .map(|s| ScenarioRecord {
            scenario_id: s.id,
            organization_id: org_id,
            team_id: s.team_id,
            folder_id: s.folder_id,
            name: s.name.clone().unwrap_or_else(|| format!("scenario {}", s.id)),
            is_active: s.is_active.unwrap_or(false),
            is_paused: s.is_paused.unwrap_or(false),
            is_invalid: s.is_invalid.unwrap_or(false),
            scheduling_type: s.scheduling.as_ref().and_then(|x| x.kind.clone()),
            interval_secs: s.scheduling.as_ref().and_then(|x| x.interval).map(|v| to_i64(Some(v))),
            critical: false,
            synced_at: String::new(),
        })
        .collect();
    Ok(OrgSync {
        org,
        teams: teams.iter().map(|t| (t.id, t.name.clone().unwrap_or_else(|| format!("team {}", t.id)))).collect(),
        scenarios: synced_scenarios,
        usage,
        consumptions,
    })
}

/// Sync every connected organization of a tenant (or only `only`). Each organization is read and
/// written on its own; one organization's failure is reported and the others still sync.
pub async fn sync_tenant(
    app: &App,
    tenant: TenantId,
    actor: &Actor,
    action: &str,
    request_id: &str,
    only: Option<i64>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Vec<OrgSyncReport>, SyncError> {
    let ts = app.store.tenant(tenant);
    let connections = ts.connections().await?;
    let mut work = Vec::new();
    for c in &connections {
        for o in &c.organizations {
            if only.is_none_or(|id| id == o.organization_id) {
                work.push((c, o));
            }
        }
    }
    if let Some(id) = only.filter(|_| work.is_empty()) {
        return Err(SyncError::NotConnected(id));
    }
    let mut reports = Vec::with_capacity(work.len());
    // MCP requires progress to increase with every notification: number steps across organizations.
    let offset = std::sync::atomic::AtomicU32::new(0);
    let last = std::sync::atomic::AtomicU32::new(0);
    let continuous = |p: Progress| {
        let base = offset.load(std::sync::atomic::Ordering::Relaxed);
        last.store(base + p.done, std::sync::atomic::Ordering::Relaxed);
        progress(Progress { done: base + p.done, total: base + p.total, message: p.message });
    };
    for (conn, base) in work {
        offset.store(last.load(std::sync::atomic::Ordering::Relaxed), std::sync::atomic::Ordering::Relaxed);
        let target = match app.target(tenant, conn) {
            Ok(t) => t,
            Err(e @ SecretError::Crypto(_) | e @ SecretError::NoKey(_)) => {
                reports.push(OrgSyncReport::failed(base.organization_id, Some(base.name.clone()), e.to_string()));
                continue;
            }
        };
        let snapshot = match fetch_org(app, &target, base, &continuous).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(organization = base.organization_id, error = %e, "sync failed");
                reports.push(OrgSyncReport::failed(base.organization_id, Some(base.name.clone()), e.to_string()));
                continue;
            }
        };
        let synced_at = format_timestamp(app.store.clock().now());
        let report = OrgSyncReport {
            organization_id: base.organization_id,
            organization_name: Some(snapshot.org.name.clone()),
            status: "synced".into(),
            error: None,
            teams: snapshot.teams.len(),
            scenarios: snapshot.scenarios.len(),
            active_scenarios: snapshot.scenarios.iter().filter(|s| s.is_active).count(),
            scenario_usage_series: snapshot
                .usage
                .iter()
                .filter(|u| u.subject == UsageSubject::Scenario)
                .map(|u| u.subject_id)
                .collect::<HashSet<_>>()
                .len(),
            usage_days: snapshot.usage.len(),
            period_centicredits: snapshot.consumptions.iter().map(|c| c.centicredits).sum(),
            estimated: snapshot.usage.iter().any(|u| u.estimated) || snapshot.consumptions.iter().any(|c| c.estimated),
            period_start: snapshot.org.last_reset.clone(),
            period_end: snapshot.org.next_reset.clone(),
            synced_at: Some(synced_at.clone()),
        };
        let mut tx = ts.begin().await?;
        tx.apply_org_sync(&snapshot, &synced_at).await?;
        tx.commit(AuditEntry {
            actor: actor.clone(),
            action: action.to_owned(),
            target: format!("make_organization:{}", base.organization_id),
            outcome: Outcome::Success,
            reason: None,
            request_id: request_id.to_owned(),
            before: None,
            after: Some(serde_json::to_value(&report).expect("report serialises")),
        })
        .await?;
        reports.push(report);
    }
    Ok(reports)
}
