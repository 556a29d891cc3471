//! Threshold actions, action plans and their items, webhooks, the notification outbox and leases.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{InScope, MutationTx, Store, StoreError, TenantStore, get_bool};
use crate::crypto::Sealed;
use crate::domain::TenantId;
use crate::domain::action::{ActionKind, ItemStatus, Mode, PlanState, Selector, SelectorKind, ThresholdAction};

fn corrupt(table: &'static str, detail: String) -> StoreError {
    StoreError::Corrupt { table, detail }
}

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

/// A webhook; its secret stays sealed.
#[derive(Debug, Clone)]
pub struct WebhookRecord {
    pub id: String,
    pub url: String,
    pub label: Option<String>,
    pub sealed: Sealed,
    pub created_at: String,
    pub created_by: String,
}

/// A notification waiting for (or done with) delivery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct NotificationRecord {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub body: String,
    /// pending, delivered or failed.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

macro_rules! plan_columns {
    () => {
        "id, budget_id, threshold_id, action_id, crossing_id, period_key, selector, top_n, mode, state, why,
         expected_saving_centi, reverse_at_period_end, requested_by, requested_at, expires_at, decided_by, decided_at,
         decision_reason, executed_at, reversed_by, reversed_at, updated_at, version"
    };
}

macro_rules! item_columns {
    () => {
        "scenario_id, organization_id, name, critical, consumption_centi, expected_saving_centi, status, attempts,
         last_error, updated_at"
    };
}

macro_rules! action_columns {
    () => {
        "id, threshold_id, kind, selector, top_n, mode, reverse_at_period_end, created_at, created_by, \
         created_role, created_transport, created_token_id"
    };
}

macro_rules! webhook_columns {
    () => {
        "id, url, label, key_id, nonce, ciphertext, created_at, created_by"
    };
}

macro_rules! notification_columns {
    () => {
        "id, webhook_id, event_id, event_type, body, state, attempts, next_attempt_at, last_status, last_error,
         created_at, delivered_at"
    };
}

fn selector_from(row: &AnyRow, table: &'static str) -> Result<Selector, StoreError> {
    let kind: String = row.try_get("selector")?;
    Ok(Selector {
        kind: SelectorKind::parse(&kind).ok_or_else(|| corrupt(table, format!("selector {kind:?}")))?,
        top_n: row.try_get("top_n")?,
    })
}

fn mode_from(row: &AnyRow, table: &'static str) -> Result<Mode, StoreError> {
    let mode: String = row.try_get("mode")?;
    Mode::parse(&mode).ok_or_else(|| corrupt(table, format!("mode {mode:?}")))
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
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        created_role: row.try_get("created_role")?,
        created_transport: row.try_get("created_transport")?,
        created_token_id: row.try_get("created_token_id")?,
    })
}

fn notification_from_row(row: &AnyRow) -> Result<NotificationRecord, StoreError> {
    Ok(NotificationRecord {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        body: row.try_get("body")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

fn webhook_from_row(row: &AnyRow) -> Result<WebhookRecord, StoreError> {
    Ok(WebhookRecord {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        label: row.try_get("label")?,
        sealed: Sealed {
            key_id: row.try_get("key_id")?,
            nonce: row.try_get("nonce")?,
            ciphertext: row.try_get("ciphertext")?,
        },
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
    })
}

impl MutationTx {
    pub async fn insert_action(&mut self, a: &ThresholdAction) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        sqlx::query(
            "INSERT INTO threshold_actions (tenant_id, id, threshold_id, kind, selector, top_n, mode,
                 reverse_at_period_end, created_at, created_by, created_role, created_transport, created_token_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
            " FROM threshold_actions WHERE tenant_id = $1 AND mode = 'automatic'
                AND threshold_id IN (SELECT id FROM thresholds WHERE tenant_id = $1 AND budget_id = $2)
                AND ($3 = '' OR threshold_id = $3)
              ORDER BY created_at, id"
        ))
        .bind(self.tenant.to_string())
        .bind(budget_id)
        .bind(threshold_id.unwrap_or(""))
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

    pub async fn insert_plan(&mut self, p: &PlanRecord, items: &[ItemRecord]) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        sqlx::query(concat!(
            "INSERT INTO action_plans (tenant_id, ",
            plan_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
                 $21, $22, $23, $24, $25)"
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
                 executed_at = $7, reversed_by = $8, reversed_at = $9, updated_at = $10, version = $11
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

    pub async fn insert_webhook(&mut self, w: &WebhookRecord) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        sqlx::query(
            "INSERT INTO webhooks (tenant_id, id, url, label, key_id, nonce, ciphertext, created_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(tenant)
        .bind(&w.id)
        .bind(&w.url)
        .bind(w.label.clone())
        .bind(&w.sealed.key_id)
        .bind(w.sealed.nonce.clone())
        .bind(w.sealed.ciphertext.clone())
        .bind(&w.created_at)
        .bind(&w.created_by)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    pub async fn update_webhook_secret(&mut self, id: &str, sealed: &Sealed) -> Result<(), StoreError> {
        sqlx::query("UPDATE webhooks SET key_id = $3, nonce = $4, ciphertext = $5 WHERE tenant_id = $1 AND id = $2")
            .bind(self.tenant.to_string())
            .bind(id)
            .bind(&sealed.key_id)
            .bind(sealed.nonce.clone())
            .bind(sealed.ciphertext.clone())
            .execute(self.conn())
            .await?;
        Ok(())
    }

    pub async fn delete_webhook(&mut self, id: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2")
            .bind(self.tenant.to_string())
            .bind(id)
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Queue an event for every webhook of the tenant (the outbox), in this transaction. Returns how many
    /// notifications were queued.
    pub async fn enqueue_event(
        &mut self,
        event_id: &str,
        event_type: &str,
        body: &str,
        now: &str,
    ) -> Result<u64, StoreError> {
        let tenant = self.tenant.to_string();
        let done = sqlx::query(
            "INSERT INTO notifications (tenant_id, id, webhook_id, event_id, event_type, body, state, attempts,
                 next_attempt_at, created_at)
             SELECT tenant_id, $2 || ':' || id, id, $2, $3, $4, 'pending', 0, $5, $5 FROM webhooks WHERE tenant_id = $1",
        )
        .bind(tenant)
        .bind(event_id)
        .bind(event_type)
        .bind(body)
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected())
    }

    /// Record the end of a notification's delivery (delivered, or failed for good).
    pub async fn finish_notification(
        &mut self,
        id: &str,
        state: &str,
        delivered_at: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE notifications SET state = $3, delivered_at = $4 WHERE tenant_id = $1 AND id = $2")
            .bind(self.tenant.to_string())
            .bind(id)
            .bind(state)
            .bind(delivered_at.map(str::to_owned))
            .execute(self.conn())
            .await?;
        Ok(())
    }
}

/// Filters for [`TenantStore::plans`].
#[derive(Debug, Clone, Default)]
pub struct PlanFilter {
    pub budget_id: Option<String>,
    pub state: Option<PlanState>,
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

    pub async fn webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE tenant_id = $1 ORDER BY created_at, id"
        ))
        .bind(self.tenant.to_string())
        .fetch_all_in(self.scoped())
        .await?;
        rows.iter().map(webhook_from_row).collect()
    }

    pub async fn webhook(&self, id: &str) -> Result<WebhookRecord, StoreError> {
        let row =
            sqlx::query(concat!("SELECT ", webhook_columns!(), " FROM webhooks WHERE tenant_id = $1 AND id = $2"))
                .bind(self.tenant.to_string())
                .bind(id)
                .fetch_optional_in(self.scoped())
                .await?
                .ok_or(StoreError::NotFound)?;
        webhook_from_row(&row)
    }

    /// Notifications, newest first (at most `limit`), optionally of one webhook.
    pub async fn notifications(
        &self,
        webhook_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        use super::sql::{Arg, Select};
        let mut q = Select::new(
            concat!("SELECT ", notification_columns!(), " FROM notifications WHERE tenant_id = $1"),
            vec![Arg::Text(self.tenant.to_string())],
        );
        if let Some(w) = webhook_id {
            q.push(" AND webhook_id = #", Arg::Text(w.to_owned()));
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT #", Arg::Int(i64::from(limit)));
        q.fetch_all_in(self.scoped()).await?.iter().map(notification_from_row).collect()
    }

    pub async fn notification(&self, id: &str) -> Result<NotificationRecord, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            notification_columns!(),
            " FROM notifications WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(self.tenant.to_string())
        .bind(id)
        .fetch_optional_in(self.scoped())
        .await?
        .ok_or(StoreError::NotFound)?;
        notification_from_row(&row)
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
             WHERE i.tenant_id = $1 AND i.plan_id <> $2 AND i.status = 'stopped'
                 AND p.state IN ('executing', 'executed', 'partially_failed')",
        )
        .bind(self.tenant.to_string())
        .bind(plan_id)
        .fetch_all_in(self.scoped())
        .await?;
        rows.iter().map(|r| Ok(r.try_get("scenario_id")?)).collect()
    }

    /// Record one delivery attempt and when to try next. This is delivery bookkeeping, like leases, and is
    /// not itself audited; the final outcome is (see [`MutationTx::finish_notification`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn record_attempt(
        &self,
        id: &str,
        attempt: i64,
        at: &str,
        status: Option<i64>,
        error: Option<&str>,
        duration_ms: i64,
        next_attempt_at: &str,
    ) -> Result<(), StoreError> {
        let tenant = self.tenant.to_string();
        let mut tx = self.store.begin(super::Scope::Tenant(self.tenant)).await?;
        sqlx::query(
            "INSERT INTO notification_attempts (tenant_id, notification_id, attempt, at, status, error, duration_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&tenant)
        .bind(id)
        .bind(attempt)
        .bind(at)
        .bind(status)
        .bind(error.map(str::to_owned))
        .bind(duration_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE notifications SET attempts = $3, last_status = $4, last_error = $5, next_attempt_at = $6
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(&tenant)
        .bind(id)
        .bind(attempt)
        .bind(status)
        .bind(error.map(str::to_owned))
        .bind(next_attempt_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Delivery attempts of a notification: (attempt, at, status, error).
    pub async fn notification_attempts(
        &self,
        id: &str,
    ) -> Result<Vec<(i64, String, Option<i64>, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT attempt, at, status, error FROM notification_attempts
             WHERE tenant_id = $1 AND notification_id = $2 ORDER BY attempt",
        )
        .bind(self.tenant.to_string())
        .bind(id)
        .fetch_all_in(self.scoped())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("attempt")?, r.try_get("at")?, r.try_get("status")?, r.try_get("error")?)))
            .collect()
    }
}

fn tenant_of(row: &AnyRow) -> Result<TenantId, StoreError> {
    let t: String = row.try_get("tenant_id")?;
    t.parse().map_err(|_| corrupt("action_plans", format!("tenant id {t:?}")))
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
                out.push((tenant_of(r)?, r.try_get("id")?));
            }
        }
        Ok(out)
    }

    /// Every webhook of every tenant, as (tenant id, webhook): for key rotation.
    pub async fn all_webhooks(&self) -> Result<Vec<(String, WebhookRecord)>, StoreError> {
        let rows =
            sqlx::query(concat!("SELECT tenant_id, ", webhook_columns!(), " FROM webhooks ORDER BY tenant_id, id"))
                .fetch_all_in(self.system())
                .await?;
        rows.iter().map(|r| Ok((r.try_get("tenant_id")?, webhook_from_row(r)?))).collect()
    }

    /// Executed (or partially failed) plans marked `reverse_at_period_end`, across tenants, oldest first.
    pub async fn plans_reversing_at_period_end(&self) -> Result<Vec<(TenantId, PlanRecord)>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT tenant_id, ",
            plan_columns!(),
            " FROM action_plans WHERE state IN ('executed', 'partially_failed') AND reverse_at_period_end = $1
             ORDER BY id"
        ))
        .bind(true)
        .fetch_all_in(self.system())
        .await?;
        rows.iter().map(|r| Ok((tenant_of(r)?, plan_from_row(r)?))).collect()
    }

    /// Pending notifications due at `now`, across tenants, oldest first.
    pub async fn due_notifications(
        &self,
        now: &str,
        limit: u32,
    ) -> Result<Vec<(TenantId, NotificationRecord)>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT tenant_id, ",
            notification_columns!(),
            " FROM notifications WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all_in(self.system())
        .await?;
        rows.iter().map(|r| Ok((tenant_of(r)?, notification_from_row(r)?))).collect()
    }

    /// Take the lease `name` for `holder` until `expires_at`, if it is free, expired or already ours.
    /// Atomic in both databases (one upsert); returns whether `holder` has it now.
    pub async fn try_lease(&self, name: &str, holder: &str, now: &str, expires_at: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.expires_at <= $4 OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(expires_at)
        .bind(now)
        .execute_in(self.system())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Give a lease back (only if `holder` still has it).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute_in(self.system())
            .await?;
        Ok(())
    }
}
