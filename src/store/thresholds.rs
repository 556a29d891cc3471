//! Threshold rows, their crossing state, and recorded crossings.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{InScope, MutationTx, StoreError, TenantStore, get_bool};
use crate::domain::clock::{format_timestamp, parse_timestamp};
use crate::domain::threshold::{
    Basis, CrossingEvent, CrossingState, Severity, Threshold, ThresholdDraft, ThresholdKind, ThresholdSpec,
};

macro_rules! columns {
    () => {
        "id, budget_id, kind, value, basis, severity, cooldown_minutes, label, version, created_at, created_by,
         updated_at, updated_by"
    };
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt { table: "thresholds", detail }
}

fn threshold_from_row(row: &AnyRow) -> Result<Threshold, StoreError> {
    let (kind, basis, severity): (String, String, String) =
        (row.try_get("kind")?, row.try_get("basis")?, row.try_get("severity")?);
    let draft = ThresholdDraft {
        kind: ThresholdKind::parse(&kind).ok_or_else(|| corrupt(format!("kind {kind:?}")))?,
        value: row.try_get("value")?,
        basis: Basis::parse(&basis).ok_or_else(|| corrupt(format!("basis {basis:?}")))?,
        severity: Severity::parse(&severity).ok_or_else(|| corrupt(format!("severity {severity:?}")))?,
        cooldown_minutes: row.try_get("cooldown_minutes")?,
        label: row.try_get("label")?,
    };
    Ok(Threshold {
        id: row.try_get("id")?,
        budget_id: row.try_get("budget_id")?,
        spec: ThresholdSpec::from_stored(draft),
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

fn state_from_row(r: &AnyRow) -> Result<(String, CrossingState), StoreError> {
    let last: Option<String> = r.try_get("last_crossed_at")?;
    let last = last
        .map(|s| {
            parse_timestamp(&s).map_err(|e| StoreError::Corrupt { table: "threshold_states", detail: e.to_string() })
        })
        .transpose()?;
    Ok((
        r.try_get("threshold_id")?,
        CrossingState { period_key: r.try_get("period_key")?, above: get_bool(r, "above")?, last_crossed_at: last },
    ))
}

/// A tenant's thresholds by budget, and the crossing state of each threshold, as of one read
/// ([`TenantStore::threshold_book`]).
#[derive(Debug, Default)]
pub struct ThresholdBook {
    by_budget: HashMap<String, Vec<Threshold>>,
    states: HashMap<String, CrossingState>,
}

impl ThresholdBook {
    /// The budget's thresholds, ordered by id (none if it has none).
    pub fn thresholds(&self, budget_id: &str) -> &[Threshold] {
        self.by_budget.get(budget_id).map_or(&[], Vec::as_slice)
    }

    /// Crossing states by threshold id (thresholds never evaluated have none).
    pub fn states(&self) -> &HashMap<String, CrossingState> {
        &self.states
    }
}

impl MutationTx {
    pub async fn insert_threshold(&mut self, t: &Threshold) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        let s = &t.spec;
        sqlx::query(concat!(
            "INSERT INTO thresholds (tenant_id, ",
            columns!(),
            ")
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(tenant)
        .bind(&t.id)
        .bind(&t.budget_id)
        .bind(s.kind.as_str())
        .bind(s.value)
        .bind(s.basis.as_str())
        .bind(s.severity.as_str())
        .bind(s.cooldown_minutes)
        .bind(s.label.clone())
        .bind(t.version)
        .bind(&t.created_at)
        .bind(&t.created_by)
        .bind(&t.updated_at)
        .bind(&t.updated_by)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    pub async fn threshold_for_update(&mut self, id: &str) -> Result<Threshold, StoreError> {
        let sql = self.dialect().pick(
            concat!("SELECT ", columns!(), " FROM thresholds WHERE tenant_id = $1 AND id = $2"),
            concat!("SELECT ", columns!(), " FROM thresholds WHERE tenant_id = $1 AND id = $2 FOR UPDATE"),
        );
        let tenant = self.tenant.to_string();
        let row =
            sqlx::query(sql).bind(tenant).bind(id).fetch_optional(self.conn()).await?.ok_or(StoreError::NotFound)?;
        threshold_from_row(&row)
    }

    /// Write `t` over the stored row, provided the stored version is `t.version - 1`.
    pub async fn update_threshold(&mut self, t: &Threshold) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        let s = &t.spec;
        let done = sqlx::query(
            "UPDATE thresholds SET kind = $3, value = $4, basis = $5, severity = $6, cooldown_minutes = $7, label = $8,
                 version = $9, updated_at = $10, updated_by = $11
             WHERE tenant_id = $1 AND id = $2 AND version = $12",
        )
        .bind(tenant)
        .bind(&t.id)
        .bind(s.kind.as_str())
        .bind(s.value)
        .bind(s.basis.as_str())
        .bind(s.severity.as_str())
        .bind(s.cooldown_minutes)
        .bind(s.label.clone())
        .bind(t.version)
        .bind(&t.updated_at)
        .bind(&t.updated_by)
        .bind(t.version - 1)
        .execute(self.conn())
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::VersionConflict { expected: t.version - 1, current: -1 });
        }
        Ok(())
    }

    pub async fn delete_threshold(&mut self, id: &str) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        let done = sqlx::query("DELETE FROM thresholds WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn save_crossing_state(
        &mut self,
        threshold_id: &str,
        s: &CrossingState,
        now: &str,
    ) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        sqlx::query(
            "INSERT INTO threshold_states (tenant_id, threshold_id, period_key, above, last_crossed_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, threshold_id) DO UPDATE SET period_key = excluded.period_key,
                 above = excluded.above, last_crossed_at = excluded.last_crossed_at, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(threshold_id)
        .bind(&s.period_key)
        .bind(s.above)
        .bind(s.last_crossed_at.map(format_timestamp))
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// The crossing state of a threshold as this transaction sees it. With the threshold row locked first
    /// ([`MutationTx::threshold_for_update`]), two evaluators cannot both record the same crossing.
    pub async fn crossing_state(&mut self, threshold_id: &str) -> Result<Option<CrossingState>, StoreError> {
        let tenant = self.tenant.to_string();
        let row = sqlx::query(
            "SELECT period_key, above, last_crossed_at FROM threshold_states WHERE tenant_id = $1 AND threshold_id = $2",
        )
        .bind(tenant)
        .bind(threshold_id)
        .fetch_optional(self.conn())
        .await?;
        row.map(|r| {
            let last: Option<String> = r.try_get("last_crossed_at")?;
            Ok(CrossingState {
                period_key: r.try_get("period_key")?,
                above: get_bool(&r, "above")?,
                last_crossed_at: last
                    .map(|s| {
                        parse_timestamp(&s)
                            .map_err(|e| StoreError::Corrupt { table: "threshold_states", detail: e.to_string() })
                    })
                    .transpose()?,
            })
        })
        .transpose()
    }

    pub async fn insert_crossing(&mut self, e: &CrossingEvent) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        sqlx::query(
            "INSERT INTO threshold_events (tenant_id, id, threshold_id, budget_id, period_key, crossed_at, basis,
                 severity, value_centi, amount_centi)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(tenant)
        .bind(&e.id)
        .bind(&e.threshold_id)
        .bind(&e.budget_id)
        .bind(&e.period_key)
        .bind(&e.crossed_at)
        .bind(e.basis.as_str())
        .bind(e.severity.as_str())
        .bind(e.value_centi)
        .bind(e.amount_centi)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}

impl TenantStore<'_> {
    pub async fn thresholds(&self, budget_id: &str) -> Result<Vec<Threshold>, StoreError> {
        let rows = thresholds_query(&self.tenant.to_string(), budget_id).fetch_all_in(self.scoped()).await?;
        rows.iter().map(threshold_from_row).collect()
    }

    pub async fn threshold(&self, id: &str) -> Result<Threshold, StoreError> {
        let row = sqlx::query(concat!("SELECT ", columns!(), " FROM thresholds WHERE tenant_id = $1 AND id = $2"))
            .bind(self.tenant.to_string())
            .bind(id)
            .fetch_optional_in(self.scoped())
            .await?
            .ok_or(StoreError::NotFound)?;
        threshold_from_row(&row)
    }

    /// The crossing state of each threshold of a budget, by threshold id.
    pub async fn crossing_states(&self, budget_id: &str) -> Result<HashMap<String, CrossingState>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.threshold_id, s.period_key, s.above, s.last_crossed_at FROM threshold_states s
             JOIN thresholds t ON t.tenant_id = s.tenant_id AND t.id = s.threshold_id
             WHERE s.tenant_id = $1 AND t.budget_id = $2",
        )
        .bind(self.tenant.to_string())
        .bind(budget_id)
        .fetch_all_in(self.scoped())
        .await?;
        rows.iter().map(state_from_row).collect()
    }

    /// Every threshold of the tenant and every crossing state, read in one transaction: an evaluator pass
    /// takes its first look at all of a tenant's budgets from this instead of reading per budget.
    pub async fn threshold_book(&self) -> Result<ThresholdBook, StoreError> {
        let mut tx = self.scoped().read().await?;
        let tenant = self.tenant.to_string();
        let rows = sqlx::query(concat!("SELECT ", columns!(), " FROM thresholds WHERE tenant_id = $1 ORDER BY id"))
            .bind(&tenant)
            .fetch_all(&mut *tx)
            .await?;
        let mut by_budget: HashMap<String, Vec<Threshold>> = HashMap::new();
        for row in &rows {
            let t = threshold_from_row(row)?;
            by_budget.entry(t.budget_id.clone()).or_default().push(t);
        }
        let rows = sqlx::query(
            "SELECT threshold_id, period_key, above, last_crossed_at FROM threshold_states WHERE tenant_id = $1",
        )
        .bind(&tenant)
        .fetch_all(&mut *tx)
        .await?;
        let states = rows.iter().map(state_from_row).collect::<Result<_, _>>()?;
        Ok(ThresholdBook { by_budget, states })
    }

    /// A budget's thresholds and their crossings in one period (oldest first), read in one transaction:
    /// what a budget's status shows.
    pub async fn thresholds_with_crossings(
        &self,
        budget_id: &str,
        period_key: &str,
    ) -> Result<(Vec<Threshold>, Vec<CrossingEvent>), StoreError> {
        let mut tx = self.scoped().read().await?;
        let tenant = self.tenant.to_string();
        let thresholds = thresholds_query(&tenant, budget_id).fetch_all(&mut *tx).await?;
        let events = crossings_query(&tenant, budget_id, period_key).fetch_all(&mut *tx).await?;
        Ok((
            thresholds.iter().map(threshold_from_row).collect::<Result<_, _>>()?,
            events.iter().map(event_from_row).collect::<Result<_, _>>()?,
        ))
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

fn thresholds_query<'q>(tenant: &str, budget_id: &str) -> AnyQuery<'q> {
    sqlx::query(concat!("SELECT ", columns!(), " FROM thresholds WHERE tenant_id = $1 AND budget_id = $2 ORDER BY id"))
        .bind(tenant.to_owned())
        .bind(budget_id.to_owned())
}

fn crossings_query<'q>(tenant: &str, budget_id: &str, period_key: &str) -> AnyQuery<'q> {
    sqlx::query(
        "SELECT id, threshold_id, budget_id, period_key, crossed_at, basis, severity, value_centi, amount_centi
         FROM threshold_events WHERE tenant_id = $1 AND budget_id = $2 AND period_key = $3 ORDER BY crossed_at, id",
    )
    .bind(tenant.to_owned())
    .bind(budget_id.to_owned())
    .bind(period_key.to_owned())
}

fn event_from_row(r: &AnyRow) -> Result<CrossingEvent, StoreError> {
    let (basis, severity): (String, String) = (r.try_get("basis")?, r.try_get("severity")?);
    Ok(CrossingEvent {
        id: r.try_get("id")?,
        threshold_id: r.try_get("threshold_id")?,
        budget_id: r.try_get("budget_id")?,
        period_key: r.try_get("period_key")?,
        crossed_at: r.try_get("crossed_at")?,
        basis: Basis::parse(&basis).ok_or_else(|| corrupt(format!("basis {basis:?}")))?,
        severity: Severity::parse(&severity).ok_or_else(|| corrupt(format!("severity {severity:?}")))?,
        value_centi: r.try_get("value_centi")?,
        amount_centi: r.try_get("amount_centi")?,
    })
}
