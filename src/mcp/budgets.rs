//! Budget tools: create, read, list, update (optimistic concurrency), delete. The mutations are
//! `engine::budgets`' use cases.

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Json;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::Parameters;
use super::{BudgetServer, CallCtx, ToolError};
use crate::domain::budget::{BudgetDraft, MoneyView, NAME_MAX_CHARS, Period, Scope, Unit};
use crate::domain::budget::{DESCRIPTION_MAX_CHARS, LIMIT_MAX, MAKE_ID_MAX, TIMEZONE_MAX_CHARS};
use crate::domain::{Budget, BudgetId, BudgetPatch, BudgetSpec, ValidationError};
use crate::engine::{About, budgets};
use crate::store::BudgetFilter;

pub const PAGE_MAX: u32 = 200;
const PAGE_DEFAULT: u32 = 50;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetRef {
    /// Budget id (a UUID) as returned by `create_budget` or `list_budgets`.
    #[schemars(length(min = 36, max = 36))]
    pub id: String,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    Daily,
    Weekly,
    Monthly,
    BillingCycle,
    Custom,
}

impl PeriodKind {
    fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Daily => "daily",
            PeriodKind::Weekly => "weekly",
            PeriodKind::Monthly => "monthly",
            PeriodKind::BillingCycle => "billing_cycle",
            PeriodKind::Custom => "custom",
        }
    }
}

fn default_page() -> u32 {
    PAGE_DEFAULT
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListBudgetsArgs {
    /// Only active (true) or inactive (false) ones.
    #[serde(default)]
    pub active: Option<bool>,
    /// Only budgets counting this unit.
    #[serde(default)]
    pub unit: Option<Unit>,
    /// Only budgets with this period kind.
    #[serde(default)]
    pub period_kind: Option<PeriodKind>,
    /// Only budgets scoped to this Make organization id.
    #[serde(default)]
    #[schemars(range(min = 1, max = MAKE_ID_MAX))]
    pub organization_id: Option<i64>,
    /// Name contains this (case-insensitive).
    #[serde(default)]
    #[schemars(length(min = 1, max = NAME_MAX_CHARS))]
    pub name_contains: Option<String>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    #[schemars(length(min = 36, max = 36))]
    pub cursor: Option<String>,
    /// Page size, 1–200. Default 50.
    #[serde(default = "default_page")]
    #[schemars(range(min = 1, max = PAGE_MAX))]
    pub limit: u32,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBudgetArgs {
    /// Budget id (a UUID).
    #[schemars(length(min = 36, max = 36))]
    pub id: String,
    /// The `version` you last read.
    #[schemars(range(min = 1))]
    pub version: i64,
    /// New name (unique within the tenant).
    #[serde(default)]
    #[schemars(length(min = 1, max = NAME_MAX_CHARS))]
    pub name: Option<String>,
    /// New description ("" clears it).
    #[serde(default)]
    #[schemars(length(max = DESCRIPTION_MAX_CHARS))]
    pub description: Option<String>,
    /// New unit: "credits" or "operations".
    #[serde(default)]
    pub unit: Option<Unit>,
    /// New limit per period, in whole units.
    #[serde(default)]
    #[schemars(range(min = 1, max = LIMIT_MAX))]
    pub limit: Option<i64>,
    /// New money view; `null` removes it.
    #[serde(default, deserialize_with = "super::params::present")]
    #[schemars(with = "Option<MoneyView>")]
    pub money: Option<Option<MoneyView>>,
    /// New period, e.g. {"kind":"weekly"}.
    #[serde(default)]
    pub period: Option<Period>,
    /// New IANA time zone.
    #[serde(default)]
    #[schemars(length(min = 1, max = TIMEZONE_MAX_CHARS))]
    pub timezone: Option<String>,
    /// New scope; replaces the whole scope object.
    #[serde(default)]
    pub scope: Option<Scope>,
    /// Activate (true) or deactivate (false) the budget.
    #[serde(default)]
    pub active: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteBudgetArgs {
    /// Budget id (a UUID).
    #[schemars(length(min = 36, max = 36))]
    pub id: String,
    /// If given, delete only if the budget is still at this version.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub version: Option<i64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BudgetList {
    pub budgets: Vec<Budget>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
    /// The version that was deleted.
    pub version: i64,
}

fn budget_id(field: &str, s: &str) -> Result<BudgetId, ValidationError> {
    s.parse().map_err(|_| {
        ValidationError::new(field, "must be a budget id (UUID) as returned by create_budget or list_budgets")
    })
}

fn version(v: i64) -> Result<i64, ValidationError> {
    if v < 1 {
        return Err(ValidationError::new(
            "version",
            format!("must be at least 1 (got {v}): pass the version you read with get_budget"),
        ));
    }
    Ok(v)
}

#[tool_router(router = budget_tools, vis = "pub(super)")]
impl BudgetServer {
    /// Create a budget: a spend limit per period over a Make organization, optionally narrowed to teams,
    /// folders or scenarios. Example: {"name":"Marketing","unit":"credits","limit":40000,
    /// "period":{"kind":"monthly"},"timezone":"Europe/Prague","scope":{"organization_id":123,"team_ids":[45]}}.
    #[tool(annotations(
        title = "Create budget",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn create_budget(
        &self,
        Parameters(draft): Parameters<BudgetDraft>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<Budget>, ToolError> {
        Ok(Json(budgets::create(&call.caller(&self.app), BudgetSpec::new(draft)?).await?))
    }

    /// Get one budget by id, with its current `version` (needed by `update_budget`).
    #[tool(annotations(title = "Get budget", read_only_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn get_budget(
        &self,
        Parameters(args): Parameters<BudgetRef>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<Budget>, ToolError> {
        let id = budget_id("id", &args.id)?;
        Ok(Json(self.tenant(&call).budget(id).await.about("budget", &args.id)?))
    }

    /// List budgets in creation order, optionally filtered; pass `next_cursor` back as `cursor` for the
    /// next page.
    #[tool(annotations(
        title = "List budgets",
        read_only_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn list_budgets(
        &self,
        Parameters(args): Parameters<ListBudgetsArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<BudgetList>, ToolError> {
        if !(1..=PAGE_MAX).contains(&args.limit) {
            return Err(ValidationError::new(
                "limit",
                format!("must be between 1 and {PAGE_MAX} (got {})", args.limit),
            )
            .into());
        }
        if let Some(org) = args.organization_id {
            crate::domain::validation::int_range("organization_id", org, 1, MAKE_ID_MAX)?;
        }
        let name_contains = match args.name_contains.as_deref() {
            Some(n) => Some(crate::domain::validation::text("name_contains", n, 1, NAME_MAX_CHARS)?),
            None => None,
        };
        let cursor = args.cursor.as_deref().map(|c| budget_id("cursor", c)).transpose()?;
        let filter = BudgetFilter {
            active: args.active,
            unit: args.unit,
            period_kind: args.period_kind.map(|k| k.as_str().to_owned()),
            organization_id: args.organization_id,
            name_contains,
        };
        let page = self.tenant(&call).list_budgets(&filter, cursor, args.limit).await?;
        Ok(Json(BudgetList { budgets: page.budgets, next_cursor: page.next_cursor }))
    }

    /// Change some fields of a budget: pass `id`, the `version` you last read and only the fields to
    /// change. A stale version fails with `conflict`: read again and retry.
    #[tool(annotations(
        title = "Update budget",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn update_budget(
        &self,
        Parameters(args): Parameters<UpdateBudgetArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<Budget>, ToolError> {
        let id = budget_id("id", &args.id)?;
        version(args.version)?;
        let patch = BudgetPatch {
            name: args.name,
            description: args.description,
            unit: args.unit,
            limit: args.limit,
            money: args.money,
            period: args.period,
            timezone: args.timezone,
            scope: args.scope,
            active: args.active,
        };
        Ok(Json(budgets::update(&call.caller(&self.app), id, args.version, patch).await?))
    }

    /// Delete a budget permanently (its audit history stays). Pass `version` to delete only if nobody
    /// changed it since you read it.
    #[tool(annotations(
        title = "Delete budget",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn delete_budget(
        &self,
        Parameters(args): Parameters<DeleteBudgetArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<Deleted>, ToolError> {
        let id = budget_id("id", &args.id)?;
        args.version.map(version).transpose()?;
        let deleted = budgets::delete(&call.caller(&self.app), id, args.version).await?;
        Ok(Json(Deleted { id: deleted.id, deleted: true, version: deleted.version }))
    }
}
