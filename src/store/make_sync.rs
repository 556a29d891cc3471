//! The write side of a usage sync: everything one sync read about one organization
//! ([`OrgSync`]), written by [`MutationTx::apply_org_sync`] in one transaction, and what the next sync
//! compares with ([`TenantStore::sync_state`]).
//!
//! Daily usage is upserted by (subject, day), so syncing again replaces days instead of adding to them,
//! and a sync interrupted before its commit leaves nothing half-written.

use std::collections::HashMap;

use sqlx::Row;

use super::sql::{Arg, bind_all, insert_rows};
use super::{ConsumptionRow, MutationTx, OrgRecord, ScenarioRecord, StoreError, TenantStore, UsageRow};

/// Make's daily figures of one scenario, read in one sync to backfill or reconcile it.
#[derive(Debug, Clone)]
pub struct ScenarioSeries {
    pub scenario_id: i64,
    /// When Make's figures were read.
    pub read_at: String,
    pub days: Vec<UsageRow>,
    /// The scenario's consumption reading of the same sync (centicredits, operations), if Make listed it.
    pub consumption: Option<(i64, i64)>,
}

/// Everything one sync read about one organization.
#[derive(Debug, Clone, Default)]
pub struct OrgSync {
    pub org: OrgRecord,
    pub teams: Vec<(i64, String)>,
    pub scenarios: Vec<ScenarioRecord>,
    /// Daily figures Make reported; they replace the stored days (organization and team series).
    pub usage: Vec<UsageRow>,
    /// Consumption readings of the teams in `read_teams`.
    pub consumptions: Vec<ConsumptionRow>,
    /// Teams whose consumptions were read (the stored readings of the others are kept).
    pub read_teams: Vec<i64>,
    /// Per-scenario consumption since the last readings, by day: added to the stored days as estimates.
    pub deltas: Vec<UsageRow>,
    /// Scenarios whose daily figures were read from Make: their days are replaced.
    pub series: Vec<ScenarioSeries>,
    /// Today in the organization's time zone (YYYY-MM-DD).
    pub today: String,
    pub yearly: bool,
    pub warnings: Vec<String>,
    pub backfilled: u32,
    pub reconciled: u32,
    pub backfill_pending: usize,
}

/// What a sync needs to know from the last one: each scenario's last consumption reading, when each
/// scenario's daily figures were last read, and the organization's time zone.
#[derive(Debug, Clone, Default)]
pub struct SyncState {
    pub baselines: HashMap<i64, crate::domain::usage::Baseline>,
    /// `None`: known scenario whose daily figures were never read.
    pub read_at: HashMap<i64, Option<String>>,
    /// Make's timezone id and its IANA name.
    pub timezone: Option<(i64, String)>,
}

impl MutationTx {
    /// Write one organization's sync (see `engine::sync`). Scenarios that no longer exist in Make are
    /// removed; the `critical` mark of scenarios that remain is kept. In order:
    /// 1. the organization's plan facts, its teams and scenarios;
    /// 2. `usage`: Make's daily figures replace the stored days;
    /// 3. `deltas`: consumption since the last readings is added to the stored days, as estimates;
    /// 4. `series`: Make's daily figures of single scenarios replace their days (today's too), and the
    ///    scenario's baseline moves to the time of the read, so consumption that Make's figure already holds
    ///    is not counted again by the next reading;
    /// 5. the consumption readings of the teams read (the readings of skipped teams stay).
    pub async fn apply_org_sync(&mut self, s: &OrgSync, synced_at: &str) -> Result<(), StoreError> {
        self.usage_written = true;
        let tenant = self.tenant.to_string();
        let org = s.org.organization_id;
        let updated = bind_all(
            sqlx::query(
                "UPDATE make_organizations SET name = $3, zone = $4, api_limit = $5, allowance = $6,
                     operations_used = $7, last_reset = $8, next_reset = $9, restart_period = $10, is_paused = $11,
                     synced_at = $12, allowance_extra = $13, timezone = $14, timezone_id = $15
                 WHERE tenant_id = $1 AND organization_id = $2",
            ),
            vec![
                Arg::Text(tenant.clone()),
                Arg::Int(org),
                Arg::Text(s.org.name.clone()),
                Arg::OptText(s.org.zone.clone()),
                Arg::OptInt(s.org.api_limit),
                Arg::OptInt(s.org.allowance),
                Arg::OptInt(s.org.operations_used),
                Arg::OptText(s.org.last_reset.clone()),
                Arg::OptText(s.org.next_reset.clone()),
                Arg::OptText(s.org.restart_period.clone()),
                Arg::OptBool(s.org.is_paused),
                Arg::Text(synced_at.to_owned()),
                Arg::OptInt(s.org.allowance_extra),
                Arg::OptText(s.org.timezone.clone()),
                Arg::OptInt(s.org.timezone_id),
            ],
        )
        .execute(self.conn())
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }

        sqlx::query("DELETE FROM make_teams WHERE tenant_id = $1 AND organization_id = $2")
            .bind(&tenant)
            .bind(org)
            .execute(self.conn())
            .await?;
        let teams = s
            .teams
            .iter()
            .map(|(id, name)| {
                vec![
                    Arg::Text(tenant.clone()),
                    Arg::Int(org),
                    Arg::Int(*id),
                    Arg::Text(name.clone()),
                    Arg::Text(synced_at.into()),
                ]
            })
            .collect();
        insert_rows(
            self.conn(),
            "INSERT INTO make_teams (tenant_id, organization_id, team_id, name, synced_at) VALUES",
            "",
            teams,
        )
        .await?;

        let read_at: HashMap<i64, &str> = s.series.iter().map(|x| (x.scenario_id, x.read_at.as_str())).collect();
        let scenarios = s
            .scenarios
            .iter()
            .map(|sc| {
                vec![
                    Arg::Text(tenant.clone()),
                    Arg::Int(sc.scenario_id),
                    Arg::Int(org),
                    Arg::OptInt(sc.team_id),
                    Arg::OptInt(sc.folder_id),
                    Arg::Text(sc.name.clone()),
                    Arg::Bool(sc.is_active),
                    Arg::Bool(sc.is_paused),
                    Arg::Bool(sc.is_invalid),
                    Arg::OptText(sc.scheduling_type.clone()),
                    Arg::OptInt(sc.interval_secs),
                    Arg::Text(synced_at.into()),
                    Arg::OptText(read_at.get(&sc.scenario_id).map(|r| (*r).to_owned())),
                ]
            })
            .collect();
        insert_rows(
            self.conn(),
            "INSERT INTO make_scenarios (tenant_id, scenario_id, organization_id, team_id, folder_id, name, is_active,
                 is_paused, is_invalid, scheduling_type, interval_secs, synced_at, usage_read_at) VALUES",
            "ON CONFLICT (tenant_id, scenario_id) DO UPDATE SET organization_id = excluded.organization_id,
                 team_id = excluded.team_id, folder_id = excluded.folder_id, name = excluded.name,
                 is_active = excluded.is_active, is_paused = excluded.is_paused, is_invalid = excluded.is_invalid,
                 scheduling_type = excluded.scheduling_type, interval_secs = excluded.interval_secs,
                 synced_at = excluded.synced_at,
                 usage_read_at = COALESCE(excluded.usage_read_at, make_scenarios.usage_read_at)",
            scenarios,
        )
        .await?;
        sqlx::query("DELETE FROM make_scenarios WHERE tenant_id = $1 AND organization_id = $2 AND synced_at <> $3")
            .bind(&tenant)
            .bind(org)
            .bind(synced_at)
            .execute(self.conn())
            .await?;

        let day_args = |u: &UsageRow, snapshot_ops: i64| {
            vec![
                Arg::Text(tenant.clone()),
                Arg::Text(u.subject.as_str().into()),
                Arg::Int(u.subject_id),
                Arg::Text(u.day.clone()),
                Arg::Int(u.organization_id),
                Arg::Int(u.centicredits),
                Arg::Int(u.operations),
                Arg::Int(u.data_transfer),
                Arg::Bool(u.estimated),
                Arg::Text(synced_at.into()),
                Arg::Int(u.snapshot_centicredits),
                Arg::Int(snapshot_ops),
            ]
        };
        const DAY_INSERT: &str = "INSERT INTO usage_daily (tenant_id, subject_kind, subject_id, day, organization_id,
                 centicredits, operations, data_transfer, estimated, synced_at, snapshot_centicredits,
                 snapshot_operations) VALUES";
        const REPLACE: &str = "ON CONFLICT (tenant_id, subject_kind, subject_id, day) DO UPDATE SET
                 organization_id = excluded.organization_id, centicredits = excluded.centicredits,
                 operations = excluded.operations, data_transfer = excluded.data_transfer,
                 estimated = excluded.estimated, synced_at = excluded.synced_at,
                 snapshot_centicredits = excluded.snapshot_centicredits,
                 snapshot_operations = excluded.snapshot_operations";
        insert_rows(self.conn(), DAY_INSERT, REPLACE, s.usage.iter().map(|u| day_args(u, 0)).collect()).await?;

        // Estimates from consumption snapshots add to what the day holds.
        insert_rows(
            self.conn(),
            DAY_INSERT,
            "ON CONFLICT (tenant_id, subject_kind, subject_id, day) DO UPDATE SET
                 centicredits = usage_daily.centicredits + excluded.centicredits,
                 operations = usage_daily.operations + excluded.operations,
                 estimated = (usage_daily.estimated OR excluded.estimated), synced_at = excluded.synced_at,
                 snapshot_centicredits = usage_daily.snapshot_centicredits + excluded.snapshot_centicredits,
                 snapshot_operations = usage_daily.snapshot_operations + excluded.snapshot_operations",
            s.deltas.iter().map(|u| day_args(u, u.operations)).collect(),
        )
        .await?;

        // Make's figures of single scenarios replace their days; today keeps the higher figure.
        let mut baseline_moves: HashMap<i64, (String, i64, i64)> = HashMap::new();
        let mut rows = Vec::new();
        for series in &s.series {
            let stored = sqlx::query(
                "SELECT centicredits, operations FROM usage_daily
                 WHERE tenant_id = $1 AND subject_kind = 'scenario' AND subject_id = $2 AND day = $3",
            )
            .bind(&tenant)
            .bind(series.scenario_id)
            .bind(&s.today)
            .fetch_optional(self.conn())
            .await?;
            let (stored_cc, stored_ops): (i64, i64) = match &stored {
                Some(r) => (r.try_get("centicredits")?, r.try_get("operations")?),
                None => (0, 0),
            };
            let mut make_today = (0, 0);
            for day in series.days.iter().filter(|d| d.day <= s.today) {
                if day.day == s.today {
                    make_today = (day.centicredits, day.operations);
                }
                rows.push(day_args(day, 0));
            }
            // What Make's figure for today holds beyond the stored one was consumed after the last reading:
            // the next reading is compared with the reading plus that.
            if let Some((cc, ops)) = series.consumption {
                let (extra_cc, extra_ops) = ((make_today.0 - stored_cc).max(0), (make_today.1 - stored_ops).max(0));
                baseline_moves.insert(series.scenario_id, (series.read_at.clone(), cc + extra_cc, ops + extra_ops));
            }
        }
        insert_rows(self.conn(), DAY_INSERT, REPLACE, rows).await?;

        // Consumption readings: those of the teams read replace theirs; the others stay.
        let read: std::collections::HashSet<i64> = s.read_teams.iter().copied().collect();
        let skipped_team_scenarios: Vec<i64> = s
            .scenarios
            .iter()
            .filter(|sc| sc.team_id.is_some_and(|t| !read.contains(&t)))
            .map(|sc| sc.scenario_id)
            .collect();
        if skipped_team_scenarios.is_empty() {
            sqlx::query("DELETE FROM scenario_consumptions WHERE tenant_id = $1 AND organization_id = $2")
                .bind(&tenant)
                .bind(org)
                .execute(self.conn())
                .await?;
        } else {
            for sc in s.scenarios.iter().filter(|sc| !skipped_team_scenarios.contains(&sc.scenario_id)) {
                sqlx::query("DELETE FROM scenario_consumptions WHERE tenant_id = $1 AND scenario_id = $2")
                    .bind(&tenant)
                    .bind(sc.scenario_id)
                    .execute(self.conn())
                    .await?;
            }
        }
        let consumptions = s
            .consumptions
            .iter()
            .map(|c| {
                let moved = baseline_moves.get(&c.scenario_id);
                vec![
                    Arg::Text(tenant.clone()),
                    Arg::Int(c.scenario_id),
                    Arg::Int(org),
                    Arg::Int(c.centicredits),
                    Arg::Int(c.operations),
                    Arg::Int(c.transfer),
                    Arg::Bool(c.estimated),
                    Arg::OptText(c.period_start.clone()),
                    Arg::Text(synced_at.into()),
                    Arg::OptText(moved.map(|m| m.0.clone()).or_else(|| c.baseline_at.clone())),
                    Arg::OptInt(moved.map(|m| m.1)),
                    Arg::OptInt(moved.map(|m| m.2)),
                ]
            })
            .collect();
        insert_rows(
            self.conn(),
            "INSERT INTO scenario_consumptions (tenant_id, scenario_id, organization_id, centicredits, operations,
                 transfer, estimated, period_start, synced_at, baseline_at, baseline_centicredits,
                 baseline_operations) VALUES",
            "ON CONFLICT (tenant_id, scenario_id) DO UPDATE SET organization_id = excluded.organization_id,
                 centicredits = excluded.centicredits, operations = excluded.operations, transfer = excluded.transfer,
                 estimated = excluded.estimated, period_start = excluded.period_start, synced_at = excluded.synced_at,
                 baseline_at = excluded.baseline_at, baseline_centicredits = excluded.baseline_centicredits,
                 baseline_operations = excluded.baseline_operations",
            consumptions,
        )
        .await?;
        Ok(())
    }
}

impl TenantStore<'_> {
    /// What the next sync of `organization_id` compares with (see [`SyncState`]).
    pub async fn sync_state(&self, organization_id: i64) -> Result<SyncState, StoreError> {
        use crate::domain::clock::parse_timestamp;
        let tenant = self.tenant.to_string();
        let mut tx = self.scoped().read().await?;
        let rows = sqlx::query(
            "SELECT scenario_id, period_start, synced_at, baseline_at, centicredits, operations, baseline_centicredits,
                    baseline_operations
             FROM scenario_consumptions WHERE tenant_id = $1 AND organization_id = $2",
        )
        .bind(&tenant)
        .bind(organization_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut state = SyncState::default();
        for r in &rows {
            let at: Option<String> = r.try_get("baseline_at")?;
            let at = match at {
                Some(a) => a,
                None => r.try_get("synced_at")?,
            };
            let Ok(at) = parse_timestamp(&at) else { continue };
            let period: Option<String> = r.try_get("period_start")?;
            let cc: Option<i64> = r.try_get("baseline_centicredits")?;
            let ops: Option<i64> = r.try_get("baseline_operations")?;
            state.baselines.insert(
                r.try_get("scenario_id")?,
                crate::domain::usage::Baseline {
                    at,
                    period_start: period.as_deref().and_then(|p| parse_timestamp(p).ok()),
                    centicredits: match cc {
                        Some(v) => v,
                        None => r.try_get("centicredits")?,
                    },
                    operations: match ops {
                        Some(v) => v,
                        None => r.try_get("operations")?,
                    },
                },
            );
        }
        let scenarios = sqlx::query(
            "SELECT scenario_id, usage_read_at FROM make_scenarios WHERE tenant_id = $1 AND organization_id = $2",
        )
        .bind(&tenant)
        .bind(organization_id)
        .fetch_all(&mut *tx)
        .await?;
        for r in &scenarios {
            state.read_at.insert(r.try_get("scenario_id")?, r.try_get("usage_read_at")?);
        }
        let org = sqlx::query(
            "SELECT timezone_id, timezone FROM make_organizations WHERE tenant_id = $1 AND organization_id = $2",
        )
        .bind(&tenant)
        .bind(organization_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(r) = org {
            let (id, name): (Option<i64>, Option<String>) = (r.try_get("timezone_id")?, r.try_get("timezone")?);
            state.timezone = id.zip(name);
        }
        Ok(state)
    }
}
