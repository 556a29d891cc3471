//! Scenarios as of the last sync, their activation state as Make reported it after a start or stop, and
//! the local `critical` mark (which automated selectors spare and which survives re-syncs).

use schemars::JsonSchema;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::sql::{Arg, Select};
use super::{InScope, MutationTx, StoreError, TenantStore, get_bool};

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

/// Filters for listing synced scenarios.
#[derive(Debug, Clone, Default)]
pub struct ScenarioFilter {
    pub organization_id: Option<i64>,
    pub team_id: Option<i64>,
    pub folder_id: Option<i64>,
    pub active: Option<bool>,
    pub critical: Option<bool>,
}

macro_rules! scenario_columns {
    () => {
        "scenario_id, organization_id, team_id, folder_id, name, is_active, is_paused, is_invalid, scheduling_type,
         interval_secs, critical, synced_at"
    };
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

impl MutationTx {
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

    /// Mark a synced scenario critical (or not). NotFound if the tenant has no such scenario.
    pub async fn set_scenario_critical(&mut self, scenario_id: i64, critical: bool) -> Result<bool, StoreError> {
        let tenant = self.tenant.to_string();
        let before = sqlx::query("SELECT critical FROM make_scenarios WHERE tenant_id = $1 AND scenario_id = $2")
            .bind(&tenant)
            .bind(scenario_id)
            .fetch_optional(self.conn())
            .await?
            .ok_or(StoreError::NotFound)?;
        let before = get_bool(&before, "critical")?;
        sqlx::query("UPDATE make_scenarios SET critical = $3 WHERE tenant_id = $1 AND scenario_id = $2")
            .bind(&tenant)
            .bind(scenario_id)
            .bind(critical)
            .execute(self.conn())
            .await?;
        Ok(before)
    }
}

impl TenantStore<'_> {
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
}
