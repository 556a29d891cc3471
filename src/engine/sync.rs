//! Usage sync: what one pass reads from Make for an organization, and how it is written.
//!
//! A pass reads what changes cheaply, at a cost that does not grow with the number of scenarios beyond
//! their listing (pages of 100):
//!
//! | read | calls | fails the organization |
//! |---|---|---|
//! | `GET /organizations/{id}` (plan, limits, reset period, time zone) | 1 | yes |
//! | `GET /enums/timezones` (once per process and Make host, when the time zone is new) | 0–1 | no (UTC) |
//! | `GET /teams?includePrivateSpaces=true` | ⌈teams / 100⌉ | yes |
//! | `GET /scenarios` (only the columns needed) | ⌈scenarios / 100⌉ | yes |
//! | `GET /organizations/{id}/usage` (daily) | 1 | yes |
//! | per team: `GET /teams/{id}/usage` and `GET /scenarios/consumptions?teamId=` | 2 × teams | no: a 403/404 team is skipped with a warning |
//! | `GET /scenarios/{id}/usage`, to backfill new scenarios and reconcile known ones | what the budget leaves | no: a 404 scenario is skipped, a 429 defers the rest |
//!
//! Per-scenario consumption between passes is the difference of consecutive consumption readings within one
//! reset period (`domain::usage`), spread over the days of the organization's time zone it fell in, and
//! stored as an estimate (`snapshot_*` columns). Make's own daily figures, read for a bounded number of
//! scenarios per pass (new ones first to backfill their history, then the least recently read consuming ones,
//! so each is reconciled about once a day), replace the estimates for the days they cover, today's included
//! (Make documents no lag for its daily figures; if it has one, today is short by it until the next read).
//!
//! **Yearly plans.** Make reports consumptions there as running 60-day totals [DOC scenarios/consumptions],
//! whose difference is not the consumption in between, so no estimates are derived: per-scenario days come
//! from Make's daily figures only (refreshed by the same rotation), while organization and team series stay
//! current every pass.
//!
//! **The budget.** A pass may use what this server's share of the organization's `apiLimit` allows in one
//! evaluator interval, less a fifth for headroom (so a pass ends before the next begins). The core reads
//! are always made; backfill and reconciliation take what is left and are deferred to later passes when it
//! is spent. A 429 on a core read is waited out (Make's window is a minute); on a backfill or reconciliation
//! read it defers the rest of them to the next pass.
//!
//! Reading happens before any writing, and each organization commits on its own with its audit record
//! (`store::MutationTx::apply_org_sync`). A sync that fails midway has written nothing for that
//! organization.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use schemars::JsonSchema;
use serde::Serialize;

use super::caller::Caller;
use super::error::{Error, Result as UseCaseResult};
use crate::app::{App, SecretError};
use crate::audit::Target;
use crate::domain::ValidationError;
use crate::domain::clock::{format_timestamp, parse_timestamp};
use crate::domain::usage;
use crate::make::{self, CallLog, MakeError, MakeTarget, OnRateLimit, UsageDay, UsageOf};
use crate::store::{
    ConsumptionRow, OrgRecord, OrgSync, ScenarioRecord, ScenarioSeries, SyncState, UsageRow, UsageSubject,
};

/// The share of a pass's allowance the sync plans to use (the rest is headroom for pacing and retries).
const PASS_FRACTION: f64 = 0.8;

pub use crate::config::settings::SyncSettings;

/// A progress step: `done` of `total`, with a human message.
#[derive(Debug, Clone)]
pub struct Progress {
    pub done: u32,
    pub total: u32,
    pub message: String,
}

/// Make API calls one organization's sync used, against what its budget allows.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct ApiUse {
    /// Requests sent, by endpoint class (organization, teams, scenarios, organization_usage, team_usage,
    /// consumptions, scenario_usage, timezones), retries and 429s included.
    pub calls: BTreeMap<String, u32>,
    pub total: u32,
    /// Of `scenario_usage`: reads that backfilled new scenarios, and reads that reconciled known ones.
    pub backfill_reads: u32,
    pub reconcile_reads: u32,
    /// This server's calls per minute for the organization (its share of `apiLimit`).
    pub budget_per_minute: u32,
    /// Calls one pass may use (the budget over one evaluator interval, less headroom).
    pub allowed_per_pass: u32,
    /// 429 answers received.
    pub rate_limited: u32,
}

/// What a sync did for one organization.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OrgSyncReport {
    pub organization_id: i64,
    pub organization_name: Option<String>,
    /// "synced", "deferred" (Make's API limit was spent; nothing written, the next pass retries) or
    /// "failed".
    pub status: String,
    /// Why it failed or was deferred (Make's error, or a decryption problem).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was skipped and why (a team the token cannot read, a scenario deleted during the sync, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub teams: usize,
    pub scenarios: usize,
    pub active_scenarios: usize,
    /// Scenarios whose daily usage was read from Make in this sync (backfilled or reconciled).
    pub scenario_usage_series: usize,
    /// Scenarios whose history still waits for its first read (deferred for the API budget).
    pub backfill_pending: usize,
    /// Days of usage stored (organization, team and scenario series together).
    pub usage_days: usize,
    /// Credits consumed in the current reset period, in centicredits (sum over scenarios). On yearly
    /// plans, Make's running 60-day total.
    pub period_centicredits: i64,
    /// True when some figures were estimated as operations × 100 (Make reported no centicredits).
    pub estimated: bool,
    /// True on a yearly plan (per-scenario days come from Make's daily figures only).
    pub yearly_plan: bool,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub synced_at: Option<String>,
    pub api: ApiUse,
}

impl OrgSyncReport {
    fn failed(organization_id: i64, name: Option<String>, status: &str, error: String, api: ApiUse) -> Self {
        Self {
            organization_id,
            organization_name: name,
            status: status.into(),
            error: Some(error),
            warnings: Vec::new(),
            teams: 0,
            scenarios: 0,
            active_scenarios: 0,
            scenario_usage_series: 0,
            backfill_pending: 0,
            usage_days: 0,
            period_centicredits: 0,
            estimated: false,
            yearly_plan: false,
            period_start: None,
            period_end: None,
            synced_at: None,
            api,
        }
    }
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
                snapshot_centicredits: 0,
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
        // Extra purchased operations count in the allowance where Make reports them [SDK organizations.ts].
        allowance: license.operations.map(|v| to_i64(Some(v)).saturating_add(to_i64(o.operations_ext))),
        allowance_extra: o.operations_ext.map(|v| to_i64(Some(v))),
        operations_used: o.operations.map(|v| to_i64(Some(v))),
        last_reset: o.last_reset.clone(),
        next_reset: o.next_reset.clone(),
        restart_period: license.restart_period,
        is_paused: o.is_paused,
        timezone: None,
        timezone_id: o.timezone_id,
        validated_at: validated_at.to_owned(),
        synced_at: None,
    }
}

/// Why one organization's sync wrote nothing.
enum Failure {
    /// Make's allowance is spent: try again next pass.
    Deferred(MakeError),
    Failed(MakeError),
}

impl From<MakeError> for Failure {
    fn from(e: MakeError) -> Self {
        if e.is_rate_limited() { Failure::Deferred(e) } else { Failure::Failed(e) }
    }
}

/// A team-level read that may be skipped: 403/404 skip the team with a warning, anything else fails
/// the organization.
fn team_read<T>(
    r: Result<T, MakeError>,
    team: i64,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<T>, Failure> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_forbidden_or_missing() => {
            warnings.push(format!("team {team} skipped: its {what} could not be read ({e})"));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The organization's time zone: the stored one while Make's id is the same, else looked up.
async fn time_zone(
    app: &App,
    target: &MakeTarget,
    o: &make::Organization,
    state: &SyncState,
    warnings: &mut Vec<String>,
) -> (Option<String>, TimeZone) {
    let resolve = |name: &str| jiff::tz::db().get(name).ok();
    if let (Some(id), Some((known_id, name))) = (o.timezone_id, state.timezone.as_ref())
        && id == *known_id
        && let Some(tz) = resolve(name)
    {
        return (Some(name.clone()), tz);
    }
    let name = match o.timezone_id {
        Some(id) => match app.make.timezone_name(target, o.id, id).await {
            Ok(Some(n)) => Some(n),
            Ok(None) => {
                warnings
                    .push(format!("Make's timezone id {id} is not in GET /enums/timezones; days are counted in UTC"));
                None
            }
            Err(e) => {
                warnings.push(format!("the time zone could not be read ({e}); days are counted in UTC"));
                None
            }
        },
        None => None,
    };
    match name.as_deref().and_then(resolve) {
        Some(tz) => (name, tz),
        None => (None, TimeZone::UTC),
    }
}

/// Read one organization from Make for a pass at the API budget. Writes nothing.
pub async fn fetch_org(
    app: &App,
    target: &MakeTarget,
    base: &OrgRecord,
    state: &SyncState,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<OrgSync, (MakeError, bool)> {
    fetch(app, target, base, state, progress).await.map_err(|f| match f {
        Failure::Deferred(e) => (e, true),
        Failure::Failed(e) => (e, false),
    })
}

async fn fetch(
    app: &App,
    target: &MakeTarget,
    base: &OrgRecord,
    state: &SyncState,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<OrgSync, Failure> {
    let c = &app.make;
    let clock = app.store.clock();
    let org_id = base.organization_id;
    let mut warnings = Vec::new();
    let o = c.organization(target, org_id).await?;
    let (tz_name, tz) = time_zone(app, target, &o, state, &mut warnings).await;
    let teams = c.teams(target, org_id).await?;
    let scenarios = c.scenarios(target, org_id).await?;
    let mut done = 4;
    let mut total = 4 + 2 * teams.len() as u32;
    let step = |done: u32, total: u32, message: String| progress(Progress { done, total, message });
    step(done, total, format!("organization {org_id}: {} teams, {} scenarios", teams.len(), scenarios.len()));
    let mut usage =
        usage_rows(org_id, UsageSubject::Organization, org_id, &c.usage(target, org_id, UsageOf::Organization).await?)?;

    let mut record = org_record(&o, &base.connection_id, &base.validated_at);
    record.timezone = tz_name;
    let yearly = usage::is_yearly(
        record.restart_period.as_deref(),
        record.last_reset.as_deref().and_then(|s| parse_timestamp(s).ok()),
        record.next_reset.as_deref().and_then(|s| parse_timestamp(s).ok()),
    );
    let period_start = record.last_reset.clone();
    let period_ts = period_start.as_deref().and_then(|s| parse_timestamp(s).ok());

    // Per team: daily usage and current-period consumption.
    let mut consumptions = Vec::new();
    let mut read_teams = Vec::new();
    let mut observed_at: HashMap<i64, Timestamp> = HashMap::new();
    for team in &teams {
        if let Some(days) =
            team_read(c.usage(target, org_id, UsageOf::Team(team.id)).await, team.id, "usage", &mut warnings)?
        {
            usage.extend(usage_rows(org_id, UsageSubject::Team, team.id, &days)?);
        }
        if let Some(cons) =
            team_read(c.consumptions(target, org_id, team.id).await, team.id, "consumptions", &mut warnings)?
        {
            let at = clock.now();
            read_teams.push(team.id);
            for sc in cons.scenario_consumptions {
                let (centicredits, estimated) = make::centicredits_or_estimate(sc.centicredits, sc.operations);
                observed_at.insert(sc.scenario_id, at);
                consumptions.push(ConsumptionRow {
                    scenario_id: sc.scenario_id,
                    organization_id: org_id,
                    centicredits: i64::try_from(centicredits).unwrap_or(i64::MAX),
                    operations: to_i64(sc.operations),
                    transfer: to_i64(sc.transfer),
                    estimated,
                    period_start: period_start.clone(),
                    baseline_at: Some(format_timestamp(at)),
                });
            }
            // Scenarios of this team that Make did not list used less than 100 centicredits this period
            // [DOC scenarios/consumptions]: a reading of zero, so that their rise is counted from now.
            let unlisted: Vec<i64> = scenarios
                .iter()
                .filter(|s| s.team_id == Some(team.id) && !observed_at.contains_key(&s.id))
                .map(|s| s.id)
                .collect();
            for id in unlisted {
                observed_at.insert(id, at);
                consumptions.push(ConsumptionRow {
                    scenario_id: id,
                    organization_id: org_id,
                    centicredits: 0,
                    operations: 0,
                    transfer: 0,
                    estimated: false,
                    period_start: period_start.clone(),
                    baseline_at: Some(format_timestamp(at)),
                });
            }
        }
        done += 2;
        step(done, total, format!("organization {org_id}: team {} read", team.id));
    }
    // Make lists a scenario under each team it is asked about only once; keep one row per scenario.
    let mut seen = HashSet::new();
    consumptions.retain(|c| seen.insert(c.scenario_id));
    let current: HashMap<i64, &ConsumptionRow> = consumptions.iter().map(|c| (c.scenario_id, c)).collect();

    // Consumption since the last reading, per scenario and day (monthly plans only).
    let mut deltas = Vec::new();
    if !yearly {
        for (scenario, at) in &observed_at {
            let (cc, ops) = current.get(scenario).map_or((0, 0), |c| (c.centicredits, c.operations));
            let Some(d) = usage::delta(state.baselines.get(scenario), *at, period_ts, cc, ops, false) else { continue };
            let split_ops: HashMap<_, _> =
                usage::split_over_days(d.from, d.to, d.operations, &tz).into_iter().collect();
            for (day, part) in usage::split_over_days(d.from, d.to, d.centicredits, &tz) {
                deltas.push(UsageRow {
                    subject: UsageSubject::Scenario,
                    subject_id: *scenario,
                    organization_id: org_id,
                    day: day.to_string(),
                    centicredits: part,
                    operations: split_ops.get(&day).copied().unwrap_or(0),
                    data_transfer: 0,
                    estimated: current.get(scenario).is_some_and(|c| c.estimated),
                    snapshot_centicredits: part,
                });
            }
        }
    }

    // Backfill and reconciliation, within what the pass's budget leaves.
    let budget = c.budget_per_minute(target, org_id);
    let allowed = ((f64::from(budget) * app.sync.interval_secs.max(1) as f64 / 60.0) * PASS_FRACTION).floor() as u32;
    let used = target.calls.as_ref().map_or(0, |l| l.total());
    let mut extra = allowed.saturating_sub(used) as usize;
    let known: HashSet<i64> = scenarios.iter().map(|s| s.id).collect();
    let consuming = |id: &i64| current.get(id).is_some_and(|c| c.centicredits > 0 || c.operations > 0);
    let active: HashSet<i64> = scenarios.iter().filter(|s| s.is_active == Some(true)).map(|s| s.id).collect();
    let mut never_read: Vec<i64> = known
        .iter()
        .copied()
        .filter(|id| (active.contains(id) || consuming(id)) && state.read_at.get(id).is_none_or(Option::is_none))
        .collect();
    never_read.sort_by_key(|id| (std::cmp::Reverse(current.get(id).map_or(0, |c| c.centicredits)), *id));
    let mut stale: Vec<(&str, i64)> = known
        .iter()
        .filter(|id| consuming(id))
        .filter_map(|id| state.read_at.get(id).and_then(|r| r.as_deref()).map(|r| (r, *id)))
        .collect();
    stale.sort();
    let quota = usage::reconcile_quota(known.iter().filter(|id| consuming(id)).count(), app.sync.interval_secs);
    let reconcile: Vec<i64> = stale.iter().take(quota.min(extra)).map(|(_, id)| *id).collect();
    extra -= reconcile.len();
    let backfill: Vec<i64> = never_read.iter().take(extra).copied().collect();
    total += (reconcile.len() + backfill.len()) as u32;
    let mut series = Vec::new();
    let (mut backfilled, mut reconciled) = (0u32, 0u32);
    let mut deferred = false;
    for (kind, id) in reconcile.iter().map(|id| ("reconcile", *id)).chain(backfill.iter().map(|id| ("backfill", *id))) {
        if deferred {
            break;
        }
        match c.usage_with(target, org_id, UsageOf::Scenario(id), OnRateLimit::Defer).await {
            Ok(days) => {
                series.push(ScenarioSeries {
                    scenario_id: id,
                    read_at: format_timestamp(clock.now()),
                    days: usage_rows(org_id, UsageSubject::Scenario, id, &days)?,
                    consumption: current.get(&id).map(|c| (c.centicredits, c.operations)),
                });
                if kind == "backfill" { backfilled += 1 } else { reconciled += 1 }
            }
            Err(e) if e.is_forbidden_or_missing() => {
                warnings.push(format!(
                    "scenario {id} skipped: its usage could not be read ({e}); it may have been deleted"
                ));
            }
            Err(e) if e.is_rate_limited() => {
                warnings.push(format!("backfill and reconciliation deferred to the next sync: {e}"));
                deferred = true;
            }
            Err(e) => return Err(e.into()),
        }
        done += 1;
        step(
            done,
            total,
            format!("organization {org_id}: scenario usage {}/{}", series.len(), reconcile.len() + backfill.len()),
        );
    }
    let read_now: HashSet<i64> = series.iter().map(|s| s.scenario_id).collect();
    let backfill_pending = never_read.iter().filter(|id| !read_now.contains(id)).count();

    let today = clock.now().to_zoned_datetime(tz.clone()).date().to_string();
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
        org: record,
        teams: teams.iter().map(|t| (t.id, t.name.clone().unwrap_or_else(|| format!("team {}", t.id)))).collect(),
        scenarios: synced_scenarios,
        usage,
        consumptions,
        read_teams,
        deltas,
        series,
        today,
        yearly,
        warnings,
        backfilled,
        reconciled,
        backfill_pending,
    })
}

/// Sync every connected organization of the caller's tenant (or only `only`). Each organization is read
/// and written on its own; one organization's failure is reported and the others still sync.
pub async fn sync_tenant(
    c: &Caller<'_>,
    only: Option<i64>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> UseCaseResult<Vec<OrgSyncReport>> {
    let connections = c.store().connections().await?;
    let mut work = Vec::new();
    for conn in &connections {
        for o in &conn.organizations {
            if only.is_none_or(|id| id == o.organization_id) {
                work.push((conn, o));
            }
        }
    }
    if let Some(id) = only.filter(|_| work.is_empty()) {
        return Err(Error::Invalid(ValidationError::new(
            "organization_id",
            format!("organization {id} is not connected in this tenant; connect it with connect_make first"),
        )));
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
        reports.push(sync_org(c, conn, base, &continuous).await?);
    }
    Ok(reports)
}

/// Sync one organization of a connection: read, then write with its audit record.
async fn sync_org(
    c: &Caller<'_>,
    conn: &crate::store::ConnectionRecord,
    base: &OrgRecord,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> UseCaseResult<OrgSyncReport> {
    let (app, tenant) = (c.app, c.tenant);
    let ts = app.store.tenant(tenant);
    let org = base.organization_id;
    let log = Arc::new(CallLog::default());
    let target = match app.target(tenant, conn) {
        Ok(t) => t.counted(log.clone()),
        Err(e @ SecretError::Crypto(_) | e @ SecretError::NoKey(_)) => {
            return Ok(OrgSyncReport::failed(org, Some(base.name.clone()), "failed", e.to_string(), ApiUse::default()));
        }
    };
    if let Some(limit) = base.api_limit.and_then(|l| u32::try_from(l).ok()).filter(|l| *l > 0) {
        app.make.set_api_limit(&target, org, limit);
    }
    let state = ts.sync_state(org).await?;
    let fetched = fetch_org(app, &target, base, &state, progress).await;
    let budget = app.make.budget_per_minute(&target, org);
    let allowed = ((f64::from(budget) * app.sync.interval_secs.max(1) as f64 / 60.0) * PASS_FRACTION).floor() as u32;
    let api = |backfill: u32, reconcile: u32| ApiUse {
        calls: log.counts().into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        total: log.total(),
        backfill_reads: backfill,
        reconcile_reads: reconcile,
        budget_per_minute: budget,
        allowed_per_pass: allowed,
        rate_limited: log.rate_limited(),
    };
    let snapshot = match fetched {
        Ok(s) => s,
        Err((e, deferred)) => {
            let status = if deferred { "deferred" } else { "failed" };
            tracing::warn!(organization = org, status, error = %e, "sync did not complete; nothing written");
            let use_ = api(0, 0);
            crate::monitoring::make_sync(use_.total, 0, 0, allowed);
            return Ok(OrgSyncReport::failed(org, Some(base.name.clone()), status, e.to_string(), use_));
        }
    };
    let synced_at = format_timestamp(app.store.clock().now());
    let api = api(snapshot.backfilled, snapshot.reconciled);
    crate::monitoring::make_sync(
        api.total - snapshot.backfilled - snapshot.reconciled,
        snapshot.backfilled,
        snapshot.reconciled,
        allowed,
    );
    for w in &snapshot.warnings {
        tracing::warn!(organization = org, warning = w, "sync");
    }
    let scenario_days = snapshot.series.iter().map(|s| s.days.len()).sum::<usize>();
    let report = OrgSyncReport {
        organization_id: org,
        organization_name: Some(snapshot.org.name.clone()),
        status: "synced".into(),
        error: None,
        warnings: snapshot.warnings.clone(),
        teams: snapshot.teams.len(),
        scenarios: snapshot.scenarios.len(),
        active_scenarios: snapshot.scenarios.iter().filter(|s| s.is_active).count(),
        scenario_usage_series: snapshot.series.len(),
        backfill_pending: snapshot.backfill_pending,
        usage_days: snapshot.usage.len() + scenario_days,
        period_centicredits: snapshot.consumptions.iter().map(|c| c.centicredits).sum(),
        estimated: snapshot.usage.iter().any(|u| u.estimated) || snapshot.consumptions.iter().any(|c| c.estimated),
        yearly_plan: snapshot.yearly,
        period_start: snapshot.org.last_reset.clone(),
        period_end: snapshot.org.next_reset.clone(),
        synced_at: Some(synced_at.clone()),
        api,
    };
    let mut tx = ts.begin().await?;
    tx.apply_org_sync(&snapshot, &synced_at).await?;
    tx.commit(c.entry(Target::MakeOrganization(org), None::<&()>, Some(&report))).await?;
    Ok(report)
}
