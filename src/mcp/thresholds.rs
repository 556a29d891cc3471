//! Threshold tools: add, update (optimistic concurrency), remove and list a budget's thresholds. The
//! mutations are `engine::thresholds`' use cases.

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Json;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::Parameters;
use super::status::parse_id;
use super::{BudgetServer, CallCtx, ToolError};
use crate::domain::threshold::{
    Basis, COOLDOWN_MAX_MINUTES, LABEL_MAX_CHARS, Severity, Threshold, ThresholdDraft, ThresholdKind, ThresholdPatch,
    ThresholdSpec,
};
use crate::domain::{BudgetId, ValidationError};
use crate::engine::thresholds;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddThresholdArgs {
    /// Budget id (a UUID).
    #[schemars(length(min = 36, max = 36))]
    pub budget_id: String,
    /// "percent" of the limit, or an "absolute" amount in the budget's unit.
    pub kind: ThresholdKind,
    /// 1–200 for percent; for absolute, an amount in the budget's unit.
    #[schemars(range(min = 1, max = crate::domain::threshold::ABSOLUTE_MAX))]
    pub value: i64,
    /// "actual" spend so far, or the "forecast" period-end total.
    pub basis: Basis,
    pub severity: Severity,
    /// Minutes before it may cross again after going back below. Default 60.
    #[serde(default = "crate::domain::threshold::default_cooldown")]
    #[schemars(range(min = 0, max = COOLDOWN_MAX_MINUTES))]
    pub cooldown_minutes: i64,
    /// Optional name, e.g. "80 % warning".
    #[serde(default)]
    #[schemars(length(min = 1, max = LABEL_MAX_CHARS))]
    pub label: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateThresholdArgs {
    /// Threshold id (a UUID).
    #[schemars(length(min = 36, max = 36))]
    pub id: String,
    /// The `version` you last read; a stale one is refused with `conflict`.
    #[schemars(range(min = 1))]
    pub version: i64,
    #[serde(default)]
    pub kind: Option<ThresholdKind>,
    #[serde(default)]
    #[schemars(range(min = 1, max = crate::domain::threshold::ABSOLUTE_MAX))]
    pub value: Option<i64>,
    #[serde(default)]
    pub basis: Option<Basis>,
    #[serde(default)]
    pub severity: Option<Severity>,
    #[serde(default)]
    #[schemars(range(min = 0, max = COOLDOWN_MAX_MINUTES))]
    pub cooldown_minutes: Option<i64>,
    /// New label; `null` removes it.
    #[serde(default, deserialize_with = "super::params::present")]
    #[schemars(with = "Option<String>", length(max = LABEL_MAX_CHARS))]
    pub label: Option<Option<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRef {
    /// Threshold id (a UUID).
    #[schemars(length(min = 36, max = 36))]
    pub id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsOf {
    /// Budget id (a UUID).
    #[schemars(length(min = 36, max = 36))]
    pub budget_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ThresholdList {
    pub thresholds: Vec<Threshold>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ThresholdRemoved {
    pub id: String,
    pub removed: bool,
}

fn threshold_version(v: i64) -> Result<i64, ValidationError> {
    if v < 1 {
        return Err(ValidationError::new(
            "version",
            format!("must be at least 1 (got {v}): pass the version you read"),
        ));
    }
    Ok(v)
}

#[tool_router(router = threshold_tools, vis = "pub(super)")]
impl BudgetServer {
    /// Add a threshold to a budget: a percentage of the limit or an amount, on `actual` spend or the
    /// `forecast` period-end total. Crossings are recorded once per period, and audited.
    #[tool(annotations(
        title = "Add threshold",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn add_threshold(
        &self,
        Parameters(args): Parameters<AddThresholdArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<Threshold>, ToolError> {
        let budget_id: BudgetId = parse_id("budget_id", &args.budget_id, "budget")?;
        let spec = ThresholdSpec::new(ThresholdDraft {
            kind: args.kind,
            value: args.value,
            basis: args.basis,
            severity: args.severity,
            cooldown_minutes: args.cooldown_minutes,
            label: args.label,
        })?;
        Ok(Json(thresholds::add(&call.caller(&self.app), budget_id, spec).await?))
    }

    /// Change some fields of a threshold: its `id`, the `version` you read, and the fields to change.
    #[tool(annotations(
        title = "Update threshold",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn update_threshold(
        &self,
        Parameters(args): Parameters<UpdateThresholdArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<Threshold>, ToolError> {
        parse_id::<uuid::Uuid>("id", &args.id, "threshold")?;
        threshold_version(args.version)?;
        let patch = ThresholdPatch {
            kind: args.kind,
            value: args.value,
            basis: args.basis,
            severity: args.severity,
            cooldown_minutes: args.cooldown_minutes,
            label: args.label,
        };
        Ok(Json(thresholds::update(&call.caller(&self.app), &args.id, args.version, patch).await?))
    }

    /// Remove a threshold. Its recorded crossings stay in the history and the audit log.
    #[tool(annotations(
        title = "Remove threshold",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn remove_threshold(
        &self,
        Parameters(args): Parameters<ThresholdRef>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<ThresholdRemoved>, ToolError> {
        parse_id::<uuid::Uuid>("id", &args.id, "threshold")?;
        thresholds::remove(&call.caller(&self.app), &args.id).await?;
        Ok(Json(ThresholdRemoved { id: args.id, removed: true }))
    }

    /// List a budget's thresholds, with the id and version update_threshold needs.
    #[tool(annotations(
        title = "List thresholds",
        read_only_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn list_thresholds(
        &self,
        Parameters(args): Parameters<ThresholdsOf>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<ThresholdList>, ToolError> {
        let budget = self.budget_of(&call, &args.budget_id, "budget_id").await?;
        let thresholds = self.tenant(&call).thresholds(&budget.id).await?;
        Ok(Json(ThresholdList { thresholds }))
    }
}
