//! Make data: connections (with sealed tokens), organizations and their plan facts, and what a sync
//! brings back (teams, scenarios, daily usage, current-period consumption).
//!
//! A sync of one organization is written by [`MutationTx::apply_org_sync`] in one transaction: daily
//! usage is upserted by (subject, day), so syncing again replaces days instead of adding to them, and a
//! sync interrupted before its commit leaves nothing half-written.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::sql::{Arg, Select, bind_all, insert_rows};
use super::{InScope, MutationTx, Store, StoreError, TenantStore, get_bool, is_unique_violation};
use crate::crypto::Sealed;
use crate::make::AuthKind;

/// A stored Make connection. `sealed` is the encrypted token; it is never serialised.
#[derive(Debug, Clone)]
pub struct ConnectionRecord {
    pub id: String,
    pub label: String,
    pub base_url: String,
    pub auth_kind: AuthKind,
    pub sealed: Sealed,
    pub created_at: String,
    pub created_by: String,
    pub organizations: Vec<OrgRecord>,
    /// The token's scopes as Make reported them when connecting; `None` when unknown.
    pub token_scopes: Option<Vec<String>>,
}

/// A connected organization and the plan facts last read from Make.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct OrgRecord {
    pub organization_id: i64,
    pub connection_id: String,
    pub name: String,
    /// Make zone, e.g. "eu1.make.com".
    pub zone: Option<String>,
    /// API requests per minute allowed for the organization.
    pub api_limit: Option<i64>,
    /// Allowance per reset period: the plan's operations (equal to credits for non-AI modules) plus any
    /// extra operations bought (`allowance_extra`).
    pub allowance: Option<i64>,
    /// Extra operations bought on top of the plan, as Make reported them (`operationsExt`).
    pub allowance_extra: Option<i64>,
    /// Operations consumed in the current reset period, as Make reported it.
    pub operations_used: Option<i64>,
    /// Current reset (billing) period start, RFC 3339.
    pub last_reset: Option<String>,
    /// Current reset period end; absent on unlimited plans.
    pub next_reset: Option<String>,
    pub restart_period: Option<String>,
    /// Make paused the organization (subscription or credits).
    pub is_paused: Option<bool>,
    /// The organization's time zone (IANA), in which Make counts its days; absent until the first sync.
    pub timezone: Option<String>,
    /// Make's id of that time zone.
    #[serde(skip)]
    pub timezone_id: Option<i64>,
    pub validated_at: String,
    /// When usage was last synced; absent before the first sync.
    pub synced_at: Option<String>,
}

/// A scenario as of the last sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ScenarioRecord {
    pub scenario_id: i64,
    pub organization_id: i64,
    pub team_id: Option<i64>,
    pub folder_id: Option<i64>,
    pub name: String,
    /// Scheduling switched on in Make.
    pub is_active: bool,
    /// Paused by Make for the subscription (out of credits), separately from `is_active`.
    pub is_paused: bool,
    /// Stopped by Make because of an error.
    pub is_invalid: bool,
    /// Make's scheduling type, e.g. "indefinitely" (interval) or "immediately" (webhook).
    pub scheduling_type: Option<String>,
    /// Seconds between runs for interval scheduling.
    pub interval_secs: Option<i64>,
    /// Marked critical here: never paused by automated selectors.
    pub critical: bool,
    pub synced_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageSubject {
    Organization,
    Team,
    Scenario,
}

impl UsageSubject {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSubject::Organization => "organization",
            UsageSubject::Team => "team",
            UsageSubject::Scenario => "scenario",
        }
    }
}

/// One day of usage of one subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct UsageRow {
    #[serde(skip)]
    pub subject: UsageSubject,
    #[serde(skip)]
    pub subject_id: i64,
    #[serde(skip)]
    pub organization_id: i64,
    /// YYYY-MM-DD in the organization's time zone.
    pub day: String,
    /// Hundredths of a credit.
    pub centicredits: i64,
    pub operations: i64,
    /// Bytes.
    pub data_transfer: i64,
    /// True when Make reported no centicredits and they were computed as operations × 100.
    pub estimated: bool,
    /// The part of `centicredits` estimated from consumption snapshots between syncs and not yet replaced
    /// by Make's own daily figure (0 once reconciled; always 0 for organization and team series).
    pub snapshot_centicredits: i64,
}

/// A scenario's consumption in the organization's current reset period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ConsumptionRow {
    pub scenario_id: i64,
    #[serde(skip)]
    pub organization_id: i64,
    pub centicredits: i64,
    pub operations: i64,
    pub transfer: i64,
    pub estimated: bool,
    /// Start of the period these figures cover, as Make reported it. On yearly plans Make's figures are
    /// running 60-day totals.
    pub period_start: Option<String>,
    /// When these figures were read (the baseline of the next reading).
    #[serde(skip)]
    pub baseline_at: Option<String>,
}

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

/// Filters for listing synced scenarios.
#[derive(Debug, Clone, Default)]
pub struct ScenarioFilter {
    pub organization_id: Option<i64>,
    pub team_id: Option<i64>,
    pub folder_id: Option<i64>,
    pub active: Option<bool>,
    pub critical: Option<bool>,
}

macro_rules! org_columns {
    () => {
        "organization_id, connection_id, name, zone, api_limit, allowance, operations_used, last_reset, next_reset,
         restart_period, is_paused, validated_at, synced_at, allowance_extra, timezone, timezone_id"
    };
}

macro_rules! scenario_columns {
    () => {
        "scenario_id, organization_id, team_id, folder_id, name, is_active, is_paused, is_invalid, scheduling_type,
         interval_secs, critical, synced_at"
    };
}

fn opt_bool(row: &AnyRow, col: &str) -> Result<Option<bool>, sqlx::Error> {
    match row.try_get::<Option<bool>, _>(col) {
        Ok(b) => Ok(b),
        Err(_) => Ok(row.try_get::<Option<i64>, _>(col)?.map(|v| v != 0)),
    }
}

fn org_from_row(row: &AnyRow) -> Result<OrgRecord, StoreError> {
    Ok(OrgRecord {
        organization_id: row.try_get("organization_id")?,
        connection_id: row.try_get("connection_id")?,
        name: row.try_get("name")?,
        zone: row.try_get("zone")?,
        api_limit: row.try_get("api_limit")?,
        allowance: row.try_get("allowance")?,
        operations_used: row.try_get("operations_used")?,
        last_reset: row.try_get("last_reset")?,
        next_reset: row.try_get("next_reset")?,
        restart_period: row.try_get("restart_period")?,
        is_paused: opt_bool(row, "is_paused")?,
        validated_at: row.try_get("validated_at")?,
        synced_at: row.try_get("synced_at")?,
        allowance_extra: row.try_get("allowance_extra")?,
        timezone: row.try_get("timezone")?,
        timezone_id: row.try_get("timezone_id")?,
    })
}

fn scenario_from_row(row: &AnyRow) -> Result<ScenarioRecord, StoreError> {
    Ok(ScenarioRecord {
        scenario_id: row.try_get("scenario_id")?,
        organization_id: row.try_get("organization_id")?,
        team_id: row.try_get("team_id")?,
        folder_id: row.try_get("folder_id")?,
        name: row.try_get("name")?,
        is_active: get_bool(row, "is_active")?,
        is_paused: get_bool(row, "is_paused")?,
        is_invalid: get_bool(row, "is_invalid")?,
        scheduling_type: row.try_get("scheduling_type")?,
        interval_secs: row.try_get("interval_secs")?,
        critical: get_bool(row, "critical")?,
        synced_at: row.try_get("synced_at")?,
    })
}

fn connection_from_row(row: &AnyRow) -> Result<ConnectionRecord, StoreError> {
    let kind: String = row.try_get("auth_kind")?;
    Ok(ConnectionRecord {
        id: row.try_get("id")?,
        label: row.try_get("label")?,
        base_url: row.try_get("base_url")?,
        auth_kind: AuthKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt { table: "make_connections", detail: format!("auth_kind {kind:?}") })?,
        sealed: Sealed {
            key_id: row.try_get("key_id")?,
            nonce: row.try_get("nonce")?,
            ciphertext: row.try_get("ciphertext")?,
        },
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        organizations: Vec::new(),
        token_scopes: row
            .try_get::<Option<String>, _>("token_scopes")?
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| StoreError::Corrupt {
            table: "make_connections",
            detail: format!("token_scopes: {e}"),
        })?,
    })
}

fn org_args(tenant: &str, o: &OrgRecord) -> Vec<Arg> {
    vec![
        Arg::Text(tenant.to_owned()),
        Arg::Int(o.organization_id),
        Arg::Text(o.connection_id.clone()),
        Arg::Text(o.name.clone()),
        Arg::OptText(o.zone.clone()),
        Arg::OptInt(o.api_limit),
        Arg::OptInt(o.allowance),
        Arg::OptInt(o.operations_used),
        Arg::OptText(o.last_reset.clone()),
        Arg::OptText(o.next_reset.clone()),
        Arg::OptText(o.restart_period.clone()),
        Arg::OptBool(o.is_paused),
        Arg::Text(o.validated_at.clone()),
        Arg::OptText(o.synced_at.clone()),
        Arg::OptInt(o.allowance_extra),
        Arg::OptText(o.timezone.clone()),
        Arg::OptInt(o.timezone_id),
    ]
}

impl MutationTx {
    /// Store a new connection and the organizations it covers. An organization already connected in
    /// this tenant is a `Duplicate`.
    pub async fn insert_connection(&mut self, c: &ConnectionRecord) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        sqlx::query(
            "INSERT INTO make_connections (tenant_id, id, label, base_url, auth_kind, key_id, nonce, ciphertext,
                 created_at, created_by, token_scopes)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&tenant)
        .bind(&c.id)
        .bind(&c.label)
        .bind(&c.base_url)
        .bind(c.auth_kind.as_str())
        .bind(&c.sealed.key_id)
        .bind(c.sealed.nonce.clone())
        .bind(c.sealed.ciphertext.clone())
        .bind(&c.created_at)
        .bind(&c.created_by)
        .bind(c.token_scopes.as_ref().map(|s| serde_json::to_string(s).expect("a list of strings serialises")))
        .execute(self.conn())
        .await?;
        let rows = c.organizations.iter().map(|o| org_args(&tenant, o)).collect();
        insert_rows(
            self.conn(),
            concat!("INSERT INTO make_organizations (tenant_id, ", org_columns!(), ") VALUES"),
            "",
            rows,
        )
        .await
        .map_err(|e| match e {
            StoreError::Database(db)
                if is_unique_violation(&db, "make_organizations_pkey", "make_organizations.tenant_id") =>
            {
                StoreError::Duplicate("one of these organizations is already connected in this tenant".into())
            }
            other => other,
        })?;
        Ok(())
    }

    /// Remove a connection; its organizations go with it (synced usage history stays).
    pub async fn delete_connection(&mut self, id: &str) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        sqlx::query("DELETE FROM make_organizations WHERE tenant_id = $1 AND connection_id = $2")
            .bind(&tenant)
            .bind(id)
            .execute(self.conn())
            .await?;
        let done = sqlx::query("DELETE FROM make_connections WHERE tenant_id = $1 AND id = $2")
            .bind(&tenant)
            .bind(id)
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Replace a connection's sealed token (key rotation).
    pub async fn update_connection_secret(&mut self, id: &str, sealed: &Sealed) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        let done = sqlx::query(
            "UPDATE make_connections SET key_id = $3, nonce = $4, ciphertext = $5 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(&sealed.key_id)
        .bind(sealed.nonce.clone())
        .bind(sealed.ciphertext.clone())
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

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

    /// Record a scenario's activation state as Make reported it after a start/stop.
    pub async fn set_scenario_active(&mut self, scenario_id: i64, active: bool) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        sqlx::query("UPDATE make_scenarios SET is_active = $3 WHERE tenant_id = $1 AND scenario_id = $2")
            .bind(tenant)
            .bind(scenario_id)
            .bind(active)
            .execute(self.conn())
            .await?;
        Ok(())
    }
}

impl TenantStore<'_> {
    /// Every connection of the tenant, with its organizations, oldest first.
    pub async fn connections(&self) -> Result<Vec<ConnectionRecord>, StoreError> {
        let tenant = self.tenant.to_string();
        let rows = sqlx::query(
            "SELECT id, label, base_url, auth_kind, key_id, nonce, ciphertext, created_at, created_by, token_scopes
             FROM make_connections WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(&tenant)
        .fetch_all_in(self.scoped())
        .await?;
        let mut conns = rows.iter().map(connection_from_row).collect::<Result<Vec<_>, _>>()?;
        let orgs = self.organizations().await?;
        for c in &mut conns {
            c.organizations = orgs.iter().filter(|o| o.connection_id == c.id).cloned().collect();
        }
        Ok(conns)
    }

    pub async fn connection(&self, id: &str) -> Result<ConnectionRecord, StoreError> {
        self.connections().await?.into_iter().find(|c| c.id == id).ok_or(StoreError::NotFound)
    }

    pub async fn organizations(&self) -> Result<Vec<OrgRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            org_columns!(),
            " FROM make_organizations WHERE tenant_id = $1 ORDER BY organization_id"
        ))
        .bind(self.tenant.to_string())
        .fetch_all_in(self.scoped())
        .await?;
        rows.iter().map(org_from_row).collect()
    }

    /// Synced scenarios, by id, `limit` at a time after `cursor` (a scenario id).
    pub async fn scenarios(
        &self,
        f: &ScenarioFilter,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<ScenarioRecord>, Option<i64>), StoreError> {
        let mut q = Select::new(
            concat!("SELECT ", scenario_columns!(), " FROM make_scenarios WHERE tenant_id = $1"),
            vec![Arg::Text(self.tenant.to_string())],
        );
        if let Some(c) = cursor {
            q.push(" AND scenario_id > #", Arg::Int(c));
        }
        if let Some(v) = f.organization_id {
            q.push(" AND organization_id = #", Arg::Int(v));
        }
        if let Some(v) = f.team_id {
            q.push(" AND team_id = #", Arg::Int(v));
        }
        if let Some(v) = f.folder_id {
            q.push(" AND folder_id = #", Arg::Int(v));
        }
        if let Some(v) = f.active {
            q.push(" AND is_active = #", Arg::Bool(v));
        }
        if let Some(v) = f.critical {
            q.push(" AND critical = #", Arg::Bool(v));
        }
        q.push(" ORDER BY scenario_id LIMIT #", Arg::Int(i64::from(limit) + 1));
        let rows = q.fetch_all_in(self.scoped()).await?;
        let mut out = rows.iter().map(scenario_from_row).collect::<Result<Vec<_>, _>>()?;
        let next = if out.len() > limit as usize {
            out.truncate(limit as usize);
            out.last().map(|s| s.scenario_id)
        } else {
            None
        };
        Ok((out, next))
    }

    /// The scenarios with these ids that belong to an organization connected in this tenant.
    pub async fn connected_scenarios(&self, ids: &[i64]) -> Result<Vec<ScenarioRecord>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(
                "SELECT s.scenario_id, s.organization_id, s.team_id, s.folder_id, s.name, s.is_active, s.is_paused,
                        s.is_invalid, s.scheduling_type, s.interval_secs, s.critical, s.synced_at
                 FROM make_scenarios s
                 JOIN make_organizations o ON o.tenant_id = s.tenant_id AND o.organization_id = s.organization_id
                 WHERE s.tenant_id = $1 AND s.scenario_id = $2",
            )
            .bind(self.tenant.to_string())
            .bind(*id)
            .fetch_optional_in(self.scoped())
            .await?;
            if let Some(row) = row {
                found.push(scenario_from_row(&row)?);
            }
        }
        Ok(found)
    }

    /// Daily usage of one subject between two days (inclusive, YYYY-MM-DD), oldest first.
    pub async fn usage(
        &self,
        subject: UsageSubject,
        id: i64,
        from: &str,
        to: &str,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, organization_id, centicredits, operations, data_transfer, estimated, snapshot_centicredits
             FROM usage_daily
             WHERE tenant_id = $1 AND subject_kind = $2 AND subject_id = $3 AND day >= $4 AND day <= $5 ORDER BY day",
        )
        .bind(self.tenant.to_string())
        .bind(subject.as_str())
        .bind(id)
        .bind(from)
        .bind(to)
        .fetch_all_in(self.scoped())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageRow {
                    subject,
                    subject_id: id,
                    organization_id: r.try_get("organization_id")?,
                    day: r.try_get("day")?,
                    centicredits: r.try_get("centicredits")?,
                    operations: r.try_get("operations")?,
                    data_transfer: r.try_get("data_transfer")?,
                    estimated: get_bool(r, "estimated")?,
                    snapshot_centicredits: r.try_get("snapshot_centicredits")?,
                })
            })
            .collect()
    }

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

    pub async fn consumption(&self, scenario_id: i64) -> Result<Option<ConsumptionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT scenario_id, organization_id, centicredits, operations, transfer, estimated, period_start
             FROM scenario_consumptions WHERE tenant_id = $1 AND scenario_id = $2",
        )
        .bind(self.tenant.to_string())
        .bind(scenario_id)
        .fetch_optional_in(self.scoped())
        .await?;
        row.map(|r| {
            Ok(ConsumptionRow {
                scenario_id: r.try_get("scenario_id")?,
                organization_id: r.try_get("organization_id")?,
                centicredits: r.try_get("centicredits")?,
                operations: r.try_get("operations")?,
                transfer: r.try_get("transfer")?,
                estimated: get_bool(&r, "estimated")?,
                period_start: r.try_get("period_start")?,
                baseline_at: None,
            })
        })
        .transpose()
    }
}

impl Store {
    /// Every connection of every tenant with its sealed token: (tenant id, connection).
    pub async fn all_connections(&self) -> Result<Vec<(String, ConnectionRecord)>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, id, label, base_url, auth_kind, key_id, nonce, ciphertext, created_at, created_by,
                    token_scopes
             FROM make_connections ORDER BY tenant_id, id",
        )
        .fetch_all_in(self.system())
        .await?;
        rows.iter().map(|r| Ok((r.try_get("tenant_id")?, connection_from_row(r)?))).collect()
    }

    /// The master key ids that stored secrets are encrypted under.
    pub async fn secret_key_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT key_id FROM make_connections UNION SELECT key_id FROM webhooks ORDER BY key_id")
            .fetch_all_in(self.system())
            .await?;
        rows.iter().map(|r| Ok(r.try_get("key_id")?)).collect()
    }
}

/// One day of spend within a budget's scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayUsage {
    pub centicredits: i64,
    pub operations: i64,
    /// Some of it was estimated as operations × 100.
    pub estimated: bool,
    /// Some of it was estimated from consumption snapshots and not yet reconciled with Make's daily figure.
    pub unreconciled: bool,
}

/// A scenario's spend within a date range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioSpend {
    pub scenario_id: i64,
    pub name: String,
    pub centicredits: i64,
    pub operations: i64,
}

/// Usage of a budget's scope between two days.
#[derive(Debug, Clone, Default)]
pub struct ScopeUsage {
    /// Spend per day (YYYY-MM-DD), for days with synced data.
    pub days: std::collections::BTreeMap<String, DayUsage>,
    /// Days for which the organization's usage has been synced (a day with no spend is still covered).
    pub covered: std::collections::BTreeSet<String>,
    /// Scenarios in scope with their spend in the range, largest first.
    pub scenarios: Vec<ScenarioSpend>,
    /// For scopes read from scenario series: scenarios in scope whose history before the server first saw
    /// them has not been read from Make yet (backfill pending).
    pub scenarios_without_history: usize,
}

impl TenantStore<'_> {
    /// Daily spend of `scope` from `from` to `to` (inclusive, YYYY-MM-DD).
    pub async fn scope_usage(
        &self,
        scope: &crate::domain::Scope,
        from: &str,
        to: &str,
    ) -> Result<ScopeUsage, StoreError> {
        Ok(self.org_usage(scope.organization_id, from, to).await?.for_scope(scope))
    }

    /// Everything synced about one organization's usage from `from` to `to` (inclusive, YYYY-MM-DD), from
    /// which the usage of any scope within it follows ([`OrgUsage::for_scope`]) without another query.
    pub async fn org_usage(&self, organization_id: i64, from: &str, to: &str) -> Result<OrgUsage, StoreError> {
        let tenant = self.tenant.to_string();
        let rows = sqlx::query(
            "SELECT subject_kind, subject_id, day, centicredits, operations, estimated, snapshot_centicredits
             FROM usage_daily WHERE tenant_id = $1 AND organization_id = $2 AND day >= $3 AND day <= $4",
        )
        .bind(&tenant)
        .bind(organization_id)
        .bind(from)
        .bind(to)
        .fetch_all_in(self.scoped())
        .await?;
        let scenarios = sqlx::query(
            "SELECT scenario_id, team_id, folder_id, name, is_active, usage_read_at FROM make_scenarios
             WHERE tenant_id = $1 AND organization_id = $2",
        )
        .bind(&tenant)
        .bind(organization_id)
        .fetch_all_in(self.scoped())
        .await?;
        let mut out = OrgUsage::default();
        for r in &scenarios {
            let read_at: Option<String> = r.try_get("usage_read_at")?;
            out.scenarios.push(ScenarioMember {
                id: r.try_get("scenario_id")?,
                team_id: r.try_get("team_id")?,
                folder_id: r.try_get("folder_id")?,
                name: r.try_get("name")?,
                history_pending: read_at.is_none() && get_bool(r, "is_active")?,
            });
        }
        for r in &rows {
            let kind: String = r.try_get("subject_kind")?;
            let subject: i64 = r.try_get("subject_id")?;
            let day: String = r.try_get("day")?;
            let snapshot: i64 = r.try_get("snapshot_centicredits")?;
            let u = DayUsage {
                centicredits: r.try_get("centicredits")?,
                operations: r.try_get("operations")?,
                estimated: get_bool(r, "estimated")?,
                unreconciled: snapshot > 0,
            };
            let series = match kind.as_str() {
                "organization" => &mut out.organization,
                "team" => out.teams.entry(subject).or_default(),
                _ => out.scenario_days.entry(subject).or_default(),
            };
            series.push((day, u));
        }
        Ok(out)
    }
}

/// A scenario of an organization, as scopes select it.
#[derive(Debug, Clone)]
struct ScenarioMember {
    id: i64,
    team_id: Option<i64>,
    folder_id: Option<i64>,
    name: String,
    /// Active, and its daily figures never read from Make.
    history_pending: bool,
}

/// One organization's synced usage over a range of days, indexed by subject: the organization's own
/// series, each team's and each scenario's, and the organization's scenarios. Read once, it answers any
/// number of scopes (an evaluator pass over many budgets of one organization reads it once).
#[derive(Debug, Clone, Default)]
pub struct OrgUsage {
    organization: Vec<(String, DayUsage)>,
    teams: std::collections::HashMap<i64, Vec<(String, DayUsage)>>,
    scenario_days: std::collections::HashMap<i64, Vec<(String, DayUsage)>>,
    scenarios: Vec<ScenarioMember>,
}

impl OrgUsage {
    /// The usage of `scope` (which must be within this organization). A whole organization is read from
    /// the organization's own series, whole teams from the teams' series (these include scenarios that
    /// were deleted since), anything narrower from its scenarios. Days the organization's series covers
    /// are the days with synced data.
    pub fn for_scope(&self, scope: &crate::domain::Scope) -> ScopeUsage {
        fn add(days: &mut std::collections::BTreeMap<String, DayUsage>, day: &str, u: &DayUsage) {
            let d = days.entry(day.to_owned()).or_default();
            d.centicredits += u.centicredits;
            d.operations += u.operations;
            d.estimated |= u.estimated;
            d.unreconciled |= u.unreconciled;
        }
        let mut out = ScopeUsage::default();
        for (day, u) in &self.organization {
            out.covered.insert(day.clone());
            if scope.is_whole_organization() {
                add(&mut out.days, day, u);
            }
        }
        if scope.is_whole_teams() {
            for team in &scope.team_ids {
                for (day, u) in self.teams.get(team).into_iter().flatten() {
                    add(&mut out.days, day, u);
                }
            }
        }
        let narrower = !scope.is_whole_organization() && !scope.is_whole_teams();
        for m in self.scenarios.iter().filter(|m| scope.includes(m.id, m.team_id, m.folder_id)) {
            if narrower && m.history_pending {
                out.scenarios_without_history += 1;
            }
            let (mut centicredits, mut operations) = (0, 0);
            for (day, u) in self.scenario_days.get(&m.id).into_iter().flatten() {
                centicredits += u.centicredits;
                operations += u.operations;
                if narrower {
                    add(&mut out.days, day, u);
                }
            }
            if self.scenario_days.contains_key(&m.id) {
                out.scenarios.push(ScenarioSpend { scenario_id: m.id, name: m.name.clone(), centicredits, operations });
            }
        }
        out.scenarios.sort_by(|a, b| b.centicredits.cmp(&a.centicredits).then(a.scenario_id.cmp(&b.scenario_id)));
        out
    }
}
