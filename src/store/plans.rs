//! Action plans and their items: which scenarios a plan will pause and why, its state as it is approved,
//! executed and reversed, and each scenario's outcome. The plan states in queries are bound from
//! [`PlanState`], so their names live in the domain only.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::threshold_actions::{mode_from, selector_from};
use super::{InScope, MutationTx, Store, StoreError, TenantStore, corrupt, get_bool, tenant_of};
use crate::domain::TenantId;
use crate::domain::action::{ItemStatus, Mode, PlanOrigin, PlanState, Selector};

/// A stored action plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct PlanRecord {
    pub id: String,
    pub budget_id: String,
    /// The threshold whose crossing created the plan; None for ad-hoc plans.
    pub threshold_id: Option<String>,
    pub action_id: Option<String>,
    pub crossing_id: Option<String>,
    /// The budget period the plan belongs to.
    pub period_key: String,
    pub selector: Selector,
    pub mode: Mode,
    pub state: PlanState,
    /// Why the plan exists, in words.
    pub why: String,
    /// Sum of the items' expected savings, centi-units of the budget's unit.
    pub expected_saving_centi: i64,
    pub reverse_at_period_end: bool,
    pub requested_by: String,
    pub requested_at: String,
    /// When an approval request expires.
    pub expires_at: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub decision_reason: Option<String>,
    pub executed_at: Option<String>,
    pub reversed_by: Option<String>,
    pub reversed_at: Option<String>,
    pub updated_at: String,
    pub version: i64,
    /// What made the plan: a threshold crossing (`crossing_id` is the crossing) or a runaway detection
    /// (`crossing_id` is the detection).
    pub origin: PlanOrigin,
    /// A delayed plan runs this many minutes after it is created (or approved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_minutes: Option<i64>,
    /// When a scheduled plan runs unless it is cancelled first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// For a forecast crossing: the forecast's probability of ending the period over the limit, in
    /// thousandths, when the plan was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability_permille: Option<i64>,
}

/// One scenario of a plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct ItemRecord {
    pub scenario_id: i64,
    pub organization_id: i64,
    pub name: String,
    pub critical: bool,
    pub consumption_centi: i64,
    pub expected_saving_centi: i64,
    pub status: ItemStatus,
    /// Calls made to Make for this scenario (reads and changes).
    pub attempts: i64,
    pub last_error: Option<String>,
    pub updated_at: String,
}

/// Filters for [`TenantStore::plans`].
#[derive(Debug, Clone, Default)]
pub struct PlanFilter {
    pub budget_id: Option<String>,
    pub state: Option<PlanState>,
}

macro_rules! plan_columns {
    () => {
        "id, budget_id, threshold_id, action_id, crossing_id, period_key, selector, top_n, mode, state, why,
         expected_saving_centi, reverse_at_period_end, requested_by, requested_at, expires_at, decided_by, decided_at,
         decision_reason, executed_at, reversed_by, reversed_at, updated_at, version, origin, delay_minutes, run_at,
         cancelled_by, cancelled_at, cancel_reason, probability_permille"
    };
}

macro_rules! item_columns {
    () => {
        "scenario_id, organization_id, name, critical, consumption_centi, expected_saving_centi, status, attempts,
         last_error, updated_at"
    };
}

fn plan_from_row(row: &AnyRow) -> Result<PlanRecord, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(PlanRecord {
        id: row.try_get("id")?,
        budget_id: row.try_get("budget_id")?,
        threshold_id: row.try_get("threshold_id")?,
        action_id: row.try_get("action_id")?,
        crossing_id: row.try_get("crossing_id")?,
        period_key: row.try_get("period_key")?,
        selector: selector_from(row, "action_plans")?,
        mode: mode_from(row, "action_plans")?,
        state: PlanState::parse(&state).ok_or_else(|| corrupt("action_plans", format!("state {state:?}")))?,
        why: row.try_get("why")?,
        expected_saving_centi: row.try_get("expected_saving_centi")?,
        reverse_at_period_end: get_bool(row, "reverse_at_period_end")?,
        requested_by: row.try_get("requested_by")?,
        requested_at: row.try_get("requested_at")?,
        expires_at: row.try_get("expires_at")?,
        decided_by: row.try_get("decided_by")?,
        decided_at: row.try_get("decided_at")?,
        decision_reason: row.try_get("decision_reason")?,
        executed_at: row.try_get("executed_at")?,
        reversed_by: row.try_get("reversed_by")?,
        reversed_at: row.try_get("reversed_at")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
        origin: {
            let origin: String = row.try_get("origin")?;
            PlanOrigin::parse(&origin).ok_or_else(|| corrupt("action_plans", format!("origin {origin:?}")))?
        },
        delay_minutes: row.try_get("delay_minutes")?,
        run_at: row.try_get("run_at")?,
        cancelled_by: row.try_get("cancelled_by")?,
        cancelled_at: row.try_get("cancelled_at")?,
        cancel_reason: row.try_get("cancel_reason")?,
        probability_permille: row.try_get("probability_permille")?,
    })
}

fn item_from_row(row: &AnyRow) -> Result<ItemRecord, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(ItemRecord {
        scenario_id: row.try_get("scenario_id")?,
        organization_id: row.try_get("organization_id")?,
        name: row.try_get("name")?,
        critical: get_bool(row, "critical")?,
        consumption_centi: row.try_get("consumption_centi")?,
        expected_saving_centi: row.try_get("expected_saving_centi")?,
        status: ItemStatus::parse(&status).ok_or_else(|| corrupt("action_items", format!("status {status:?}")))?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl MutationTx {
    pub async fn insert_plan(&mut self, p: &PlanRecord, items: &[ItemRecord]) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        sqlx::query(concat!(
            "INSERT INTO action_plans (tenant_id, ",
            plan_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
                 $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32)"
        ))
        .bind(&tenant)
        .bind(&p.id)
        .bind(&p.budget_id)
        .bind(p.threshold_id.clone())
        .bind(p.action_id.clone())
        .bind(p.crossing_id.clone())
        .bind(&p.period_key)
        .bind(p.selector.kind.as_str())
        .bind(p.selector.top_n)
        .bind(p.mode.as_str())
        .bind(p.state.as_str())
        .bind(&p.why)
        .bind(p.expected_saving_centi)
        .bind(p.reverse_at_period_end)
        .bind(&p.requested_by)
        .bind(&p.requested_at)
        .bind(p.expires_at.clone())
        .bind(p.decided_by.clone())
        .bind(p.decided_at.clone())
        .bind(p.decision_reason.clone())
        .bind(p.executed_at.clone())
        .bind(p.reversed_by.clone())
        .bind(p.reversed_at.clone())
        .bind(&p.updated_at)
        .bind(p.version)
        .bind(p.origin.as_str())
        .bind(p.delay_minutes)
        .bind(p.run_at.clone())
        .bind(p.cancelled_by.clone())
        .bind(p.cancelled_at.clone())
        .bind(p.cancel_reason.clone())
        .bind(p.probability_permille)
        .execute(self.conn())
        .await?;
        for i in items {
            sqlx::query(concat!(
                "INSERT INTO action_items (tenant_id, plan_id, ",
                item_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ))
            .bind(&tenant)
            .bind(&p.id)
            .bind(i.scenario_id)
            .bind(i.organization_id)
            .bind(&i.name)
            .bind(i.critical)
            .bind(i.consumption_centi)
            .bind(i.expected_saving_centi)
            .bind(i.status.as_str())
            .bind(i.attempts)
            .bind(i.last_error.clone())
            .bind(&i.updated_at)
            .execute(self.conn())
            .await?;
        }
        Ok(())
    }

    /// The plan, locked until the transaction ends.
    pub async fn plan_for_update(&mut self, id: &str) -> Result<PlanRecord, StoreError> {
        let sql = self.dialect().pick(
            concat!("SELECT ", plan_columns!(), " FROM action_plans WHERE tenant_id = $1 AND id = $2"),
            concat!("SELECT ", plan_columns!(), " FROM action_plans WHERE tenant_id = $1 AND id = $2 FOR UPDATE"),
        );
        let tenant = self.tenant.to_string();
        let row =
            sqlx::query(sql).bind(tenant).bind(id).fetch_optional(self.conn()).await?.ok_or(StoreError::NotFound)?;
        plan_from_row(&row)
    }

    /// Write the plan's mutable fields, provided the stored version is `p.version - 1`.
    pub async fn update_plan(&mut self, p: &PlanRecord) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        let done = sqlx::query(
            "UPDATE action_plans SET state = $3, decided_by = $4, decided_at = $5, decision_reason = $6,
                 executed_at = $7, reversed_by = $8, reversed_at = $9, updated_at = $10, version = $11,
                 run_at = $13, cancelled_by = $14, cancelled_at = $15, cancel_reason = $16
             WHERE tenant_id = $1 AND id = $2 AND version = $12",
        )
        .bind(tenant)
        .bind(&p.id)
        .bind(p.state.as_str())
        .bind(p.decided_by.clone())
        .bind(p.decided_at.clone())
        .bind(p.decision_reason.clone())
        .bind(p.executed_at.clone())
        .bind(p.reversed_by.clone())
        .bind(p.reversed_at.clone())
        .bind(&p.updated_at)
        .bind(p.version)
        .bind(p.version - 1)
        .bind(p.run_at.clone())
        .bind(p.cancelled_by.clone())
        .bind(p.cancelled_at.clone())
        .bind(p.cancel_reason.clone())
        .execute(self.conn())
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::VersionConflict { expected: p.version - 1, current: -1 });
        }
        Ok(())
    }

    pub async fn update_item(&mut self, plan_id: &str, i: &ItemRecord) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        let done = sqlx::query(
            "UPDATE action_items SET status = $4, attempts = $5, last_error = $6, updated_at = $7
             WHERE tenant_id = $1 AND plan_id = $2 AND scenario_id = $3",
        )
        .bind(tenant)
        .bind(plan_id)
        .bind(i.scenario_id)
        .bind(i.status.as_str())
        .bind(i.attempts)
        .bind(i.last_error.clone())
        .bind(&i.updated_at)
        .execute(self.conn())
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Items of a plan, read inside the transaction.
    pub async fn plan_items(&mut self, plan_id: &str) -> Result<Vec<ItemRecord>, StoreError> {
        let tenant = self.tenant.to_string();
        let rows = sqlx::query(concat!(
            "SELECT ",
            item_columns!(),
            " FROM action_items WHERE tenant_id = $1 AND plan_id = $2 ORDER BY consumption_centi DESC, scenario_id"
        ))
        .bind(tenant)
        .bind(plan_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(item_from_row).collect()
    }
}

impl TenantStore<'_> {
    pub async fn plan(&self, id: &str) -> Result<(PlanRecord, Vec<ItemRecord>), StoreError> {
        let tenant = self.tenant.to_string();
        let row =
            sqlx::query(concat!("SELECT ", plan_columns!(), " FROM action_plans WHERE tenant_id = $1 AND id = $2"))
                .bind(&tenant)
                .bind(id)
                .fetch_optional_in(self.scoped())
                .await?
                .ok_or(StoreError::NotFound)?;
        let items = sqlx::query(concat!(
            "SELECT ",
            item_columns!(),
            " FROM action_items WHERE tenant_id = $1 AND plan_id = $2 ORDER BY consumption_centi DESC, scenario_id"
        ))
        .bind(&tenant)
        .bind(id)
        .fetch_all_in(self.scoped())
        .await?;
        Ok((plan_from_row(&row)?, items.iter().map(item_from_row).collect::<Result<_, _>>()?))
    }

    /// Plans, newest first, `limit` at a time, older than `before` (a plan id; ids sort by creation time).
    pub async fn plans(
        &self,
        filter: &PlanFilter,
        before: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<PlanRecord>, Option<String>), StoreError> {
        use super::sql::{Arg, Select};
        let mut q = Select::new(
            concat!("SELECT ", plan_columns!(), " FROM action_plans WHERE tenant_id = $1"),
            vec![Arg::Text(self.tenant.to_string())],
        );
        if let Some(b) = before {
            q.push(" AND id < #", Arg::Text(b.to_owned()));
        }
        if let Some(b) = &filter.budget_id {
            q.push(" AND budget_id = #", Arg::Text(b.clone()));
        }
        if let Some(s) = filter.state {
            q.push(" AND state = #", Arg::Text(s.as_str().to_owned()));
        }
        q.push(" ORDER BY id DESC LIMIT #", Arg::Int(i64::from(limit) + 1));
        let rows = q.fetch_all_in(self.scoped()).await?;
        let mut plans = rows.iter().map(plan_from_row).collect::<Result<Vec<_>, _>>()?;
        let next = if plans.len() > limit as usize {
            plans.truncate(limit as usize);
            plans.last().map(|p| p.id.clone())
        } else {
            None
        };
        Ok((plans, next))
    }

    /// Scenarios that plans other than `plan_id` (executing, executed or partially failed) stopped and have
    /// not resumed: a reversal of `plan_id` leaves them paused.
    pub async fn scenarios_held_by_other_plans(
        &self,
        plan_id: &str,
    ) -> Result<std::collections::HashSet<i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT i.scenario_id FROM action_items i
             JOIN action_plans p ON p.tenant_id = i.tenant_id AND p.id = i.plan_id
             WHERE i.tenant_id = $1 AND i.plan_id <> $2 AND i.status = $3
                 AND p.state IN ($4, $5, $6)",
        )
        .bind(self.tenant.to_string())
        .bind(plan_id)
        .bind(ItemStatus::Stopped.as_str())
        .bind(PlanState::Executing.as_str())
        .bind(PlanState::Executed.as_str())
        .bind(PlanState::PartiallyFailed.as_str())
        .fetch_all_in(self.scoped())
        .await?;
        rows.iter().map(|r| Ok(r.try_get("scenario_id")?)).collect()
    }
}

impl Store {
    /// Plans in any of `states`, across tenants: (tenant, plan id), oldest first.
    pub async fn plans_in_states(&self, states: &[PlanState]) -> Result<Vec<(TenantId, String)>, StoreError> {
        let mut out = Vec::new();
        for s in states {
            let rows = sqlx::query("SELECT tenant_id, id FROM action_plans WHERE state = $1 ORDER BY id")
                .bind(s.as_str())
                .fetch_all_in(self.system())
                .await?;
            for r in &rows {
                out.push((tenant_of(r, "action_plans")?, r.try_get("id")?));
            }
        }
        Ok(out)
    }

    /// Scheduled plans whose time has come (`run_at` at or before `now`), across tenants, soonest first.
    pub async fn scheduled_plans_due(&self, now: &str) -> Result<Vec<(TenantId, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT tenant_id, id FROM action_plans WHERE state = $1 AND run_at <= $2 ORDER BY run_at, id")
                .bind(PlanState::Scheduled.as_str())
                .bind(now)
                .fetch_all_in(self.system())
                .await?;
        rows.iter().map(|r| Ok((tenant_of(r, "action_plans")?, r.try_get("id")?))).collect()
    }

    /// Executed (or partially failed) plans marked `reverse_at_period_end`, across tenants, oldest first.
    pub async fn plans_reversing_at_period_end(&self) -> Result<Vec<(TenantId, PlanRecord)>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT tenant_id, ",
            plan_columns!(),
            " FROM action_plans WHERE state IN ($2, $3) AND reverse_at_period_end = $1 ORDER BY id"
        ))
        .bind(true)
        .bind(PlanState::Executed.as_str())
        .bind(PlanState::PartiallyFailed.as_str())
        .fetch_all_in(self.system())
        .await?;
        rows.iter().map(|r| Ok((tenant_of(r, "action_plans")?, plan_from_row(r)?))).collect()
    }
}
