//! Synced usage: each subject's daily series (organization, team, scenario), each scenario's consumption in
//! the current reset period, and the usage of a budget's scope. Which rows count for a scope is a domain
//! rule (`domain::scope_usage`); this file reads the rows it needs.

use schemars::JsonSchema;
use serde::Serialize;
use sqlx::Row;

use super::{InScope, StoreError, TenantStore, get_bool};
use crate::domain::scope_usage::{DayUsage, OrgUsage, ScenarioMember, ScopeUsage, Series};

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

impl TenantStore<'_> {
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
            out.add_scenario(ScenarioMember {
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
            let snapshot: i64 = r.try_get("snapshot_centicredits")?;
            let u = DayUsage {
                centicredits: r.try_get("centicredits")?,
                operations: r.try_get("operations")?,
                estimated: get_bool(r, "estimated")?,
                unreconciled: snapshot > 0,
            };
            let series = match kind.as_str() {
                "organization" => Series::Organization,
                "team" => Series::Team(subject),
                _ => Series::Scenario(subject),
            };
            out.add_day(series, r.try_get("day")?, u);
        }
        Ok(out)
    }
}
