//! Threshold actions: what a threshold does when it is crossed (notify, or plan a pause of scenarios), and
//! who configured it with which rights (automatic actions act with their configurer's rights).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{InScope, MutationTx, StoreError, TenantStore, corrupt, get_bool};
use crate::domain::action::{ActionKind, ConfidenceGate, Mode, Selector, SelectorKind, ThresholdAction};

macro_rules! action_columns {
    () => {
        "id, threshold_id, kind, selector, top_n, mode, reverse_at_period_end, created_at, created_by, \
         created_role, created_transport, created_token_id, delay_minutes, gate_act, gate_delay, gate_alert"
    };
}

pub(super) fn selector_from(row: &AnyRow, table: &'static str) -> Result<Selector, StoreError> {
    let kind: String = row.try_get("selector")?;
    Ok(Selector {
        kind: SelectorKind::parse(&kind).ok_or_else(|| corrupt(table, format!("selector {kind:?}")))?,
        top_n: row.try_get("top_n")?,
    })
}

pub(super) fn mode_from(row: &AnyRow, table: &'static str) -> Result<Mode, StoreError> {
    let mode: String = row.try_get("mode")?;
    Mode::parse(&mode).ok_or_else(|| corrupt(table, format!("mode {mode:?}")))
}

fn action_from_row(row: &AnyRow) -> Result<ThresholdAction, StoreError> {
    let kind: String = row.try_get("kind")?;
    let kind = ActionKind::parse(&kind).ok_or_else(|| corrupt("threshold_actions", format!("kind {kind:?}")))?;
    let pause = kind == ActionKind::PauseScenarios;
    Ok(ThresholdAction {
        id: row.try_get("id")?,
        threshold_id: row.try_get("threshold_id")?,
        kind,
        selector: if pause { Some(selector_from(row, "threshold_actions")?) } else { None },
        mode: if pause { Some(mode_from(row, "threshold_actions")?) } else { None },
        reverse_at_period_end: get_bool(row, "reverse_at_period_end")?,
        delay_minutes: row.try_get("delay_minutes")?,
        gate: match (row.try_get("gate_act")?, row.try_get("gate_delay")?, row.try_get("gate_alert")?) {
            (Some(act), Some(delay), Some(alert)) => Some(ConfidenceGate { act, delay, alert }),
            _ => None,
        },
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        created_role: row.try_get("created_role")?,
        created_transport: row.try_get("created_transport")?,
        created_token_id: row.try_get("created_token_id")?,
    })
}

impl MutationTx {
    pub async fn insert_action(&mut self, a: &ThresholdAction) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        sqlx::query(
            "INSERT INTO threshold_actions (tenant_id, id, threshold_id, kind, selector, top_n, mode,
                 reverse_at_period_end, created_at, created_by, created_role, created_transport, created_token_id,
                 delay_minutes, gate_act, gate_delay, gate_alert)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(tenant)
        .bind(&a.id)
        .bind(&a.threshold_id)
        .bind(a.kind.as_str())
        .bind(a.selector.map(|s| s.kind.as_str()))
        .bind(a.selector.and_then(|s| s.top_n))
        .bind(a.mode.map(Mode::as_str))
        .bind(a.reverse_at_period_end)
        .bind(&a.created_at)
        .bind(&a.created_by)
        .bind(&a.created_role)
        .bind(&a.created_transport)
        .bind(&a.created_token_id)
        .bind(a.delay_minutes)
        .bind(a.gate.map(|g| g.act))
        .bind(a.gate.map(|g| g.delay))
        .bind(a.gate.map(|g| g.alert))
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// The automatic pause actions on a budget's thresholds, or on one threshold: what a change to that
    /// budget or threshold would make act differently. Read inside the change's transaction.
    pub async fn automatic_actions(
        &mut self,
        budget_id: &str,
        threshold_id: Option<&str>,
    ) -> Result<Vec<ThresholdAction>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            action_columns!(),
            " FROM threshold_actions WHERE tenant_id = $1 AND mode = $4
                AND threshold_id IN (SELECT id FROM thresholds WHERE tenant_id = $1 AND budget_id = $2)
                AND ($3 = '' OR threshold_id = $3)
              ORDER BY created_at, id"
        ))
        .bind(self.tenant.to_string())
        .bind(budget_id)
        .bind(threshold_id.unwrap_or(""))
        .bind(Mode::Automatic.as_str())
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(action_from_row).collect()
    }

    /// Remove an action; returns it (NotFound if there is none).
    pub async fn delete_action(&mut self, id: &str) -> Result<ThresholdAction, StoreError> {
        let tenant = self.tenant.to_string();
        let row = sqlx::query(concat!(
            "SELECT ",
            action_columns!(),
            " FROM threshold_actions WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(&tenant)
        .bind(id)
        .fetch_optional(self.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
        let action = action_from_row(&row)?;
        sqlx::query("DELETE FROM threshold_actions WHERE tenant_id = $1 AND id = $2")
            .bind(&tenant)
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(action)
    }
}

impl TenantStore<'_> {
    /// Actions of a threshold, oldest first.
    pub async fn actions(&self, threshold_id: &str) -> Result<Vec<ThresholdAction>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            action_columns!(),
            " FROM threshold_actions WHERE tenant_id = $1 AND threshold_id = $2 ORDER BY created_at, id"
        ))
        .bind(self.tenant.to_string())
        .bind(threshold_id)
        .fetch_all_in(self.scoped())
        .await?;
        rows.iter().map(action_from_row).collect()
    }

    pub async fn action(&self, id: &str) -> Result<ThresholdAction, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            action_columns!(),
            " FROM threshold_actions WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(self.tenant.to_string())
        .bind(id)
        .fetch_optional_in(self.scoped())
        .await?
        .ok_or(StoreError::NotFound)?;
        action_from_row(&row)
    }
}
