//! Budget rows: insert, read, list with cursor pagination, update under optimistic concurrency, delete.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::sql::{Arg, Select};
use super::{InScope, MutationTx, StoreError, TenantStore, get_bool, is_unique_violation};
use crate::domain::budget::{BudgetDraft, MoneyView, Period, Scope, Unit};
use crate::domain::{Budget, BudgetId, BudgetSpec};

/// The columns `budget_from_row` reads, as a literal so statements can be built with `concat!`.
macro_rules! columns {
    () => {
        "id, name, description, unit, limit_amount, currency, price_per_1000_minor, period_kind, period_start,
         period_end, timezone, organization_id, team_ids, folder_ids, scenario_ids, excluded_scenario_ids, active,
         version, created_at, created_by, updated_at, updated_by"
    };
}

/// Filters for listing budgets; every `Some` narrows the result.
#[derive(Debug, Clone, Default)]
pub struct BudgetFilter {
    pub active: Option<bool>,
    pub unit: Option<Unit>,
    pub period_kind: Option<String>,
    pub organization_id: Option<i64>,
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
}

/// One page of budgets, in creation order.
#[derive(Debug, Clone)]
pub struct BudgetPage {
    pub budgets: Vec<Budget>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

fn corrupt(detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt { table: "budgets", detail: detail.into() }
}

fn ids_json(ids: &[i64]) -> String {
    serde_json::to_string(ids).expect("integers serialise")
}

fn budget_from_row(row: &AnyRow) -> Result<Budget, StoreError> {
    let ids = |col: &str| -> Result<Vec<i64>, StoreError> {
        let s: String = row.try_get(col)?;
        serde_json::from_str(&s).map_err(|e| corrupt(format!("{col}: {e}")))
    };
    let date = |col: &str| -> Result<Option<jiff::civil::Date>, StoreError> {
        row.try_get::<Option<String>, _>(col)?
            .map(|s| s.parse().map_err(|e| corrupt(format!("{col}: {e}"))))
            .transpose()
    };
    let unit: String = row.try_get("unit")?;
    let kind: String = row.try_get("period_kind")?;
    let money =
        match (row.try_get::<Option<String>, _>("currency")?, row.try_get::<Option<i64>, _>("price_per_1000_minor")?) {
            (Some(currency), Some(price_per_1000_units_minor)) => {
                Some(MoneyView { currency, price_per_1000_units_minor })
            }
            _ => None,
        };
    let draft = BudgetDraft {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        unit: Unit::parse(&unit).ok_or_else(|| corrupt(format!("unit {unit:?}")))?,
        limit: row.try_get("limit_amount")?,
        money,
        period: Period::from_parts(&kind, date("period_start")?, date("period_end")?)
            .ok_or_else(|| corrupt(format!("period {kind:?}")))?,
        timezone: row.try_get("timezone")?,
        scope: Scope {
            organization_id: row.try_get("organization_id")?,
            team_ids: ids("team_ids")?,
            folder_ids: ids("folder_ids")?,
            scenario_ids: ids("scenario_ids")?,
            excluded_scenario_ids: ids("excluded_scenario_ids")?,
        },
        active: get_bool(row, "active")?,
    };
    Ok(Budget {
        id: row.try_get("id")?,
        spec: BudgetSpec::from_stored(draft),
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

fn period_dates(p: &Period) -> (Option<String>, Option<String>) {
    match p {
        Period::Custom { start, end } => (Some(start.to_string()), Some(end.to_string())),
        _ => (None, None),
    }
}

fn map_name_conflict(e: sqlx::Error, name: &str) -> StoreError {
    if is_unique_violation(&e, "budgets_name_unique", "budgets.tenant_id, budgets.name") {
        StoreError::Duplicate(format!("a budget named {name:?} already exists in this tenant; choose another name"))
    } else {
        e.into()
    }
}

impl MutationTx {
    pub async fn insert_budget(&mut self, b: &Budget) -> Result<(), StoreError> {
        let s = &b.spec;
        let (start, end) = period_dates(&s.period);
        let tenant = self.tenant.to_string();
        sqlx::query(
            "INSERT INTO budgets (tenant_id, id, name, description, unit, limit_amount, currency, price_per_1000_minor,
                 period_kind, period_start, period_end, timezone, organization_id, team_ids, folder_ids, scenario_ids,
                 excluded_scenario_ids, active, version, created_at, created_by, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)",
        )
        .bind(tenant)
        .bind(&b.id)
        .bind(&s.name)
        .bind(&s.description)
        .bind(s.unit.as_str())
        .bind(s.limit)
        .bind(s.money.as_ref().map(|m| m.currency.clone()))
        .bind(s.money.as_ref().map(|m| m.price_per_1000_units_minor))
        .bind(s.period.kind())
        .bind(start)
        .bind(end)
        .bind(&s.timezone)
        .bind(s.scope.organization_id)
        .bind(ids_json(&s.scope.team_ids))
        .bind(ids_json(&s.scope.folder_ids))
        .bind(ids_json(&s.scope.scenario_ids))
        .bind(ids_json(&s.scope.excluded_scenario_ids))
        .bind(s.active)
        .bind(b.version)
        .bind(&b.created_at)
        .bind(&b.created_by)
        .bind(&b.updated_at)
        .bind(&b.updated_by)
        .execute(self.conn())
        .await
        .map_err(|e| map_name_conflict(e, &s.name))?;
        Ok(())
    }

    /// Read a budget and lock it for the rest of the transaction.
    pub async fn budget_for_update(&mut self, id: BudgetId) -> Result<Budget, StoreError> {
        let sql = self.dialect().pick(
            concat!("SELECT ", columns!(), " FROM budgets WHERE tenant_id = $1 AND id = $2"),
            concat!("SELECT ", columns!(), " FROM budgets WHERE tenant_id = $1 AND id = $2 FOR UPDATE"),
        );
        let tenant = self.tenant.to_string();
        let row = sqlx::query(sql)
            .bind(tenant)
            .bind(id.to_string())
            .fetch_optional(self.conn())
            .await?
            .ok_or(StoreError::NotFound)?;
        budget_from_row(&row)
    }

    /// Write `b` over the stored row, provided the stored version is `b.version - 1`.
    pub async fn update_budget(&mut self, b: &Budget) -> Result<(), StoreError> {
        let s = &b.spec;
        let (start, end) = period_dates(&s.period);
        let tenant = self.tenant.to_string();
        let done = sqlx::query(
            "UPDATE budgets SET name = $3, description = $4, unit = $5, limit_amount = $6, currency = $7,
                 price_per_1000_minor = $8, period_kind = $9, period_start = $10, period_end = $11, timezone = $12,
                 organization_id = $13, team_ids = $14, folder_ids = $15, scenario_ids = $16,
                 excluded_scenario_ids = $17, active = $18, version = $19, updated_at = $20, updated_by = $21
             WHERE tenant_id = $1 AND id = $2 AND version = $22",
        )
        .bind(tenant)
        .bind(&b.id)
        .bind(&s.name)
        .bind(&s.description)
        .bind(s.unit.as_str())
        .bind(s.limit)
        .bind(s.money.as_ref().map(|m| m.currency.clone()))
        .bind(s.money.as_ref().map(|m| m.price_per_1000_units_minor))
        .bind(s.period.kind())
        .bind(start)
        .bind(end)
        .bind(&s.timezone)
        .bind(s.scope.organization_id)
        .bind(ids_json(&s.scope.team_ids))
        .bind(ids_json(&s.scope.folder_ids))
        .bind(ids_json(&s.scope.scenario_ids))
        .bind(ids_json(&s.scope.excluded_scenario_ids))
        .bind(s.active)
        .bind(b.version)
        .bind(&b.updated_at)
        .bind(&b.updated_by)
        .bind(b.version - 1)
        .execute(self.conn())
        .await
        .map_err(|e| map_name_conflict(e, &s.name))?;
        if done.rows_affected() != 1 {
            // The row was locked by `budget_for_update`, so this only happens if the caller skipped it.
            return Err(StoreError::VersionConflict { expected: b.version - 1, current: -1 });
        }
        Ok(())
    }

    pub async fn delete_budget(&mut self, id: BudgetId) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        let done = sqlx::query("DELETE FROM budgets WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id.to_string())
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

impl super::Store {
    /// The tenant a budget belongs to (for administrative commands that are given only a budget id).
    pub async fn budget_tenant(&self, id: BudgetId) -> Result<Option<crate::domain::TenantId>, StoreError> {
        let row = sqlx::query("SELECT tenant_id FROM budgets WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional_in(self.system())
            .await?;
        row.map(|r| {
            let t: String = r.try_get("tenant_id")?;
            t.parse().map_err(|_| StoreError::Corrupt { table: "budgets", detail: format!("tenant id {t:?}") })
        })
        .transpose()
    }
}

impl TenantStore<'_> {
    pub async fn budget(&self, id: BudgetId) -> Result<Budget, StoreError> {
        let sql = concat!("SELECT ", columns!(), " FROM budgets WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(sql)
            .bind(self.tenant.to_string())
            .bind(id.to_string())
            .fetch_optional_in(self.scoped())
            .await?
            .ok_or(StoreError::NotFound)?;
        budget_from_row(&row)
    }

    /// Budgets in creation order, `limit` at a time, starting after `cursor` (a budget id). The filters
    /// make this statement dynamic; see `store::sql`.
    pub async fn list_budgets(
        &self,
        filter: &BudgetFilter,
        cursor: Option<BudgetId>,
        limit: u32,
    ) -> Result<BudgetPage, StoreError> {
        let mut q = Select::new(
            concat!("SELECT ", columns!(), " FROM budgets WHERE tenant_id = $1"),
            vec![Arg::Text(self.tenant.to_string())],
        );
        if let Some(c) = cursor {
            q.push(" AND id > #", Arg::Text(c.to_string()));
        }
        if let Some(active) = filter.active {
            q.push(" AND active = #", Arg::Bool(active));
        }
        if let Some(unit) = filter.unit {
            q.push(" AND unit = #", Arg::Text(unit.as_str().to_owned()));
        }
        if let Some(kind) = &filter.period_kind {
            q.push(" AND period_kind = #", Arg::Text(kind.clone()));
        }
        if let Some(org) = filter.organization_id {
            q.push(" AND organization_id = #", Arg::Int(org));
        }
        if let Some(needle) = &filter.name_contains {
            let escaped = needle.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            q.push(" AND LOWER(name) LIKE # ESCAPE '\\'", Arg::Text(format!("%{escaped}%")));
        }
        q.push(" ORDER BY id LIMIT #", Arg::Int(i64::from(limit) + 1));
        let rows = q.fetch_all_in(self.scoped()).await?;
        let mut budgets = rows.iter().map(budget_from_row).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if budgets.len() > limit as usize {
            budgets.truncate(limit as usize);
            budgets.last().map(|b| b.id.clone())
        } else {
            None
        };
        Ok(BudgetPage { budgets, next_cursor })
    }

    /// Every active budget of the tenant, in creation order (all pages of [`TenantStore::list_budgets`]).
    pub async fn active_budgets(&self) -> Result<Vec<Budget>, StoreError> {
        let filter = BudgetFilter { active: Some(true), ..Default::default() };
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.list_budgets(&filter, cursor, 200).await?;
            out.extend(page.budgets);
            match page.next_cursor {
                Some(c) => cursor = Some(c.parse().map_err(|_| StoreError::Corrupt { table: "budgets", detail: c })?),
                None => return Ok(out),
            }
        }
    }
}
