//! Budget status, chart, history and forecast tools, and threshold management.

use base64::Engine as _;
use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Json;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::Parameters;
use super::{BudgetServer, CallCtx, ToolError};
use crate::domain::budget::{Budget, Unit};
use crate::domain::clock::format_timestamp;
use crate::domain::forecast::{BacktestScore, Interval, IntervalSource, Method};
use crate::domain::threshold::{
    Basis, COOLDOWN_MAX_MINUTES, LABEL_MAX_CHARS, Severity, Threshold, ThresholdDraft, ThresholdKind, ThresholdSpec,
};
use crate::domain::{BudgetId, ValidationError, validation};
use crate::engine::status::{self, BudgetStatus, StatusError};

pub const CHART_MIN_WIDTH: u32 = 400;
pub const CHART_MAX_WIDTH: u32 = 2000;
pub const CHART_MIN_HEIGHT: u32 = 300;
pub const CHART_MAX_HEIGHT: u32 = 1500;
const HISTORY_MAX_DAYS: i32 = 400;
const HORIZON_MAX_DAYS: u32 = 90;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {
    /// Budget id (a UUID).
    #[schemars(length(min = 36, max = 36))]
    pub id: String,
    /// Also return a PNG chart of this period (cumulative spend, forecast bands, limit, thresholds).
    #[serde(default)]
    pub chart: bool,
}

fn default_width() -> u32 {
    crate::chart::DEFAULT_WIDTH
}

fn default_height() -> u32 {
    crate::chart::DEFAULT_HEIGHT
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartArgs {
    /// Budget id (a UUID).
    #[schemars(length(min = 36, max = 36))]
    pub id: String,
    /// Image width in pixels, 400–2000. Default 1000.
    #[serde(default = "default_width")]
    #[schemars(range(min = CHART_MIN_WIDTH, max = CHART_MAX_WIDTH))]
    pub width: u32,
    /// Image height in pixels, 300–1500. Default 560.
    #[serde(default = "default_height")]
    #[schemars(range(min = CHART_MIN_HEIGHT, max = CHART_MAX_HEIGHT))]
    pub height: u32,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ChartInfo {
    pub budget_id: String,
    pub width: u32,
    pub height: u32,
    pub mime_type: String,
    /// What the picture shows, in words.
    pub summary: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryArgs {
    /// Budget id (a UUID).
    #[schemars(length(min = 36, max = 36))]
    pub id: String,
    /// First day, YYYY-MM-DD. Default: the first day of the current period.
    #[serde(default)]
    #[schemars(with = "Option<String>", length(min = 10, max = 10), extend("format" = "date"))]
    pub from: Option<jiff::civil::Date>,
    /// Last day, YYYY-MM-DD. Default: today (in the budget's time zone). At most 400 days after `from`.
    #[serde(default)]
    #[schemars(with = "Option<String>", length(min = 10, max = 10), extend("format" = "date"))]
    pub to: Option<jiff::civil::Date>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct HistoryDay {
    pub day: String,
    /// Whole units (rounded down); `spent_centi` is exact.
    pub spent: i64,
    pub spent_centi: i64,
    /// False when no usage was synced for that day (the figures are then 0 but unknown).
    pub has_data: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct History {
    pub budget_id: String,
    pub unit: Unit,
    pub from: String,
    pub to: String,
    pub days: Vec<HistoryDay>,
    pub total: i64,
    pub total_centi: i64,
    pub days_without_data: usize,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForecastArgs {
    /// Budget id (a UUID).
    #[schemars(length(min = 36, max = 36))]
    pub id: String,
    /// Days to forecast, starting today, 1–90.
    #[schemars(range(min = 1, max = HORIZON_MAX_DAYS))]
    pub horizon_days: u32,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ForecastDay {
    pub day: String,
    /// Expected spend that day, whole units (rounded).
    pub expected: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SpendForecastView {
    pub budget_id: String,
    pub unit: Unit,
    pub method: Method,
    pub horizon_days: u32,
    pub days: Vec<ForecastDay>,
    /// Expected total over the horizon, whole units.
    pub total: i64,
    pub interval_80: Interval,
    pub interval_95: Interval,
    pub interval_source: IntervalSource,
    /// The chosen method's backtest on this series (errors in hundredths of the unit per day).
    pub backtest: Option<BacktestScore>,
    /// Every method tried, best first.
    pub candidates: Vec<BacktestScore>,
    pub days_of_data: usize,
    pub note: String,
}

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
    /// Minutes before a threshold that went back below may be recorded as crossed again. Default 60.
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

pub(super) fn parse_id<T: std::str::FromStr>(field: &str, s: &str, what: &str) -> Result<T, ValidationError> {
    s.parse().map_err(|_| ValidationError::new(field, format!("must be a {what} id (UUID)")))
}

pub(super) fn status_error(call: &CallCtx, e: StatusError) -> ToolError {
    match e {
        StatusError::Period(p) => ToolError::Unavailable(p.to_string()),
        StatusError::Store(s) => ToolError::internal(&call.request_id, &s),
    }
}

fn png_content(png: &[u8]) -> ContentBlock {
    ContentBlock::image(base64::engine::general_purpose::STANDARD.encode(png), "image/png")
}

fn chart_summary(s: &BudgetStatus) -> String {
    format!(
        "{}: {} of {} {} spent ({} %) by {}; forecast {} (80 %: {}–{}); {} threshold(s)",
        s.name,
        s.spent,
        s.limit,
        match s.unit {
            Unit::Credits => "credits",
            Unit::Operations => "operations",
        },
        s.percent_used,
        s.window.last_day,
        s.forecast.period_end_total,
        s.forecast.interval_80.lower,
        s.forecast.interval_80.upper,
        s.thresholds.len()
    )
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

impl BudgetServer {
    pub(super) async fn budget_of(&self, call: &CallCtx, id: &str, field: &str) -> Result<Budget, ToolError> {
        let bid: BudgetId = parse_id(field, id, "budget")?;
        self.tenant(call).budget(bid).await.map_err(call.store_err("budget", id))
    }

    pub(super) async fn status_of(&self, call: &CallCtx, budget: &Budget) -> Result<status::Computed, ToolError> {
        status::compute(&self.app.store, call.principal.tenant_id, budget, self.now())
            .await
            .map_err(|e| status_error(call, e))
    }

    fn render(&self, call: &CallCtx, c: &status::Computed, width: u32, height: u32) -> Result<Vec<u8>, ToolError> {
        crate::chart::render_png(&c.chart_input(width, height)).map_err(|e| ToolError::internal(&call.request_id, &e))
    }
}

#[tool_router(router = status_tools, vis = "pub(super)")]
impl BudgetServer {
    /// The current period of a budget: spent (whole units and exact hundredths; money if configured),
    /// limit, percent used, remaining, days elapsed/remaining, daily run rate, the forecast period-end total
    /// with 80 % and 95 % intervals and the probability of going over the limit, top scenarios, each
    /// threshold (crossed now? first recorded when?), and how fresh the synced usage is (`data.stale`).
    /// Set `chart: true` to also get a PNG chart.
    #[tool(
        annotations(title = "Budget status", read_only_hint = true, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<BudgetStatus>()
    )]
    async fn get_budget_status(
        &self,
        Parameters(args): Parameters<StatusArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<CallToolResult, ToolError> {
        let budget = self.budget_of(&call, &args.id, "id").await?;
        let computed = self.status_of(&call, &budget).await?;
        let json = serde_json::to_value(&computed.status).map_err(|e| ToolError::internal(&call.request_id, &e))?;
        let mut result = CallToolResult::structured(json);
        if args.chart {
            let png = self.render(&call, &computed, crate::chart::DEFAULT_WIDTH, crate::chart::DEFAULT_HEIGHT)?;
            result.content.push(png_content(&png));
        }
        Ok(result)
    }

    /// A PNG chart of a budget's current period: cumulative spend so far, the forecast to the period end
    /// with its 80 % and 95 % bands, the limit (red) and each threshold (amber). Returns the image and a
    /// one-line summary.
    #[tool(
        annotations(title = "Budget chart", read_only_hint = true, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<ChartInfo>()
    )]
    async fn get_budget_chart(
        &self,
        Parameters(args): Parameters<ChartArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<CallToolResult, ToolError> {
        validation::int_range("width", i64::from(args.width), i64::from(CHART_MIN_WIDTH), i64::from(CHART_MAX_WIDTH))?;
        validation::int_range(
            "height",
            i64::from(args.height),
            i64::from(CHART_MIN_HEIGHT),
            i64::from(CHART_MAX_HEIGHT),
        )?;
        let budget = self.budget_of(&call, &args.id, "id").await?;
        let computed = self.status_of(&call, &budget).await?;
        let png = self.render(&call, &computed, args.width, args.height)?;
        let info = ChartInfo {
            budget_id: budget.id.clone(),
            width: args.width,
            height: args.height,
            mime_type: "image/png".into(),
            summary: chart_summary(&computed.status),
        };
        let json = serde_json::to_value(&info).map_err(|e| ToolError::internal(&call.request_id, &e))?;
        let mut result = CallToolResult::structured(json);
        result.content.insert(0, png_content(&png));
        Ok(result)
    }

    /// Daily spend within a budget's scope between two days (default: this period so far), from synced
    /// usage; days without synced data are marked.
    #[tool(annotations(
        title = "Budget history",
        read_only_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn get_budget_history(
        &self,
        Parameters(args): Parameters<HistoryArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<History>, ToolError> {
        let budget = self.budget_of(&call, &args.id, "id").await?;
        let spec = &budget.spec;
        let now = self.now();
        let today = now.to_zoned_datetime(jiff::tz::db().get(&spec.timezone).unwrap_or(jiff::tz::TimeZone::UTC)).date();
        let from = match args.from {
            Some(d) => d,
            None => {
                status::current_window(&self.app.store, call.principal.tenant_id, &budget, now)
                    .await
                    .map_err(|e| status_error(&call, e))?
                    .first_day
            }
        };
        let to = args.to.unwrap_or(today);
        if to < from {
            return Err(ValidationError::new("to", format!("must not be before from ({from})")).into());
        }
        if from.until(to).map(|s| s.get_days()).unwrap_or(i32::MAX) >= HISTORY_MAX_DAYS {
            return Err(
                ValidationError::new("from", format!("the range may span at most {HISTORY_MAX_DAYS} days")).into()
            );
        }
        let usage = self
            .tenant(&call)
            .scope_usage(&spec.scope, &from.to_string(), &to.to_string())
            .await
            .map_err(call.internal())?;
        let mut days = Vec::new();
        let mut d = from;
        while d <= to {
            let key = d.to_string();
            let centi = usage.days.get(&key).map_or(0, |u| status::centi_of(spec.unit, u));
            days.push(HistoryDay {
                spent: status::units(centi),
                spent_centi: centi,
                has_data: usage.covered.contains(&key),
                day: key,
            });
            d = d.tomorrow().map_err(|e| ToolError::internal(&call.request_id, &e))?;
        }
        let total_centi: i64 = days.iter().map(|d| d.spent_centi).sum();
        Ok(Json(History {
            budget_id: budget.id.clone(),
            unit: spec.unit,
            from: from.to_string(),
            to: to.to_string(),
            days_without_data: days.iter().filter(|d| !d.has_data).count(),
            total: status::units(total_centi),
            total_centi,
            days,
        }))
    }

    /// Forecast a budget's scope for the next 1–90 days (starting today), with the method chosen by
    /// backtesting on this series' own history, its backtest error, every candidate's error, and 80 % /
    /// 95 % intervals of the total. Says so when there is little data.
    #[tool(annotations(
        title = "Forecast spend",
        read_only_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn forecast_spend(
        &self,
        Parameters(args): Parameters<ForecastArgs>,
        Extension(call): Extension<CallCtx>,
    ) -> Result<Json<SpendForecastView>, ToolError> {
        validation::int_range("horizon_days", i64::from(args.horizon_days), 1, i64::from(HORIZON_MAX_DAYS))?;
        let budget = self.budget_of(&call, &args.id, "id").await?;
        let spec = &budget.spec;
        let now = self.now();
        let tz = jiff::tz::db().get(&spec.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        let today = now.to_zoned_datetime(tz).date();
        let series = status::history_series(&self.app.store, call.principal.tenant_id, &budget, today)
            .await
            .map_err(|e| status_error(&call, e))?;
        let fc = status::cached_forecast(&series, args.horizon_days as usize);
        let to_units = |x: f64| (x / 100.0).round();
        let days = fc
            .daily
            .iter()
            .enumerate()
            .map(|(i, v)| ForecastDay {
                day: today.checked_add(jiff::Span::new().days(i as i64)).unwrap_or(today).to_string(),
                expected: to_units(*v) as i64,
            })
            .collect();
        Ok(Json(SpendForecastView {
            budget_id: budget.id.clone(),
            unit: spec.unit,
            method: fc.method,
            horizon_days: args.horizon_days,
            days,
            total: to_units(fc.total) as i64,
            interval_80: Interval { lower: to_units(fc.interval_80.lower), upper: to_units(fc.interval_80.upper) },
            interval_95: Interval { lower: to_units(fc.interval_95.lower), upper: to_units(fc.interval_95.upper) },
            interval_source: fc.interval_source.clone(),
            backtest: fc.backtest.clone(),
            candidates: fc.candidates.clone(),
            days_of_data: fc.days_of_data,
            note: fc.note.clone(),
        }))
    }

    /// Add a threshold to a budget: a percentage of the limit (1–200) or an absolute amount, watched on
    /// `actual` spend or on the `forecast` period-end total, with a severity and a cooldown. Crossings are
    /// recorded (once per period) when usage is synced, and audited.
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
        let ts = self.tenant(&call);
        let mut tx = ts.begin().await.map_err(call.internal())?;
        // Lock the budget so it cannot be deleted under the new threshold.
        let budget = tx.budget_for_update(budget_id).await.map_err(call.store_err("budget", &args.budget_id))?;
        let at = format_timestamp(self.now());
        let t = Threshold {
            id: uuid::Uuid::now_v7().to_string(),
            budget_id: budget.id,
            spec,
            version: 1,
            created_at: at.clone(),
            created_by: call.principal.subject.clone(),
            updated_at: at,
            updated_by: call.principal.subject.clone(),
        };
        tx.insert_threshold(&t).await.map_err(call.internal())?;
        tx.commit(call.audit(format!("threshold:{}", t.id), None::<&Threshold>, Some(&t)))
            .await
            .map_err(call.internal())?;
        Ok(Json(t))
    }

    /// Change some fields of a threshold. Pass its `id`, the `version` you read, and the fields to change
    /// (`label: null` removes the label). A stale version is refused with `conflict`.
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
        if args.kind.is_none()
            && args.value.is_none()
            && args.basis.is_none()
            && args.severity.is_none()
            && args.cooldown_minutes.is_none()
            && args.label.is_none()
        {
            return Err(ValidationError::new(
                "(arguments)",
                "nothing to update: give at least one field besides id and version",
            )
            .into());
        }
        let mut tx = self.tenant(&call).begin().await.map_err(call.internal())?;
        let current = tx.threshold_for_update(&args.id).await.map_err(call.store_err("threshold", &args.id))?;
        if current.version != args.version {
            return Err(ToolError::from_store(
                &call.request_id,
                "threshold",
                &args.id,
                crate::store::StoreError::VersionConflict { expected: args.version, current: current.version },
            ));
        }
        if args.kind.is_some() || args.value.is_some() || args.basis.is_some() || args.cooldown_minutes.is_some() {
            let automatic =
                tx.automatic_actions(&current.budget_id, Some(&current.id)).await.map_err(call.internal())?;
            if let Some(denied) = super::actions::missing(&call, &super::actions::automation_rights(&automatic)) {
                drop(tx);
                let why = "the threshold has automatic pause actions, and its kind, value, basis and cooldown \
                           decide when they pause";
                return Err(self.refuse(&call, denied, why).await);
            }
        }
        let d = &current.spec;
        let spec = ThresholdSpec::new(ThresholdDraft {
            kind: args.kind.unwrap_or(d.kind),
            value: args.value.unwrap_or(d.value),
            basis: args.basis.unwrap_or(d.basis),
            severity: args.severity.unwrap_or(d.severity),
            cooldown_minutes: args.cooldown_minutes.unwrap_or(d.cooldown_minutes),
            label: args.label.unwrap_or_else(|| d.label.clone()),
        })?;
        let updated = Threshold {
            spec,
            version: current.version + 1,
            updated_at: format_timestamp(self.now()),
            updated_by: call.principal.subject.clone(),
            ..current.clone()
        };
        tx.update_threshold(&updated).await.map_err(call.store_err("threshold", &args.id))?;
        tx.commit(call.audit(format!("threshold:{}", updated.id), Some(&current), Some(&updated)))
            .await
            .map_err(call.internal())?;
        Ok(Json(updated))
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
        let mut tx = self.tenant(&call).begin().await.map_err(call.internal())?;
        let current = tx.threshold_for_update(&args.id).await.map_err(call.store_err("threshold", &args.id))?;
        tx.delete_threshold(&args.id).await.map_err(call.store_err("threshold", &args.id))?;
        tx.commit(call.audit(format!("threshold:{}", args.id), Some(&current), None::<&Threshold>))
            .await
            .map_err(call.internal())?;
        Ok(Json(ThresholdRemoved { id: args.id, removed: true }))
    }

    /// List a budget's thresholds: kind, value, basis (actual or forecast), severity, cooldown, label, and
    /// the id and version needed by update_threshold and remove_threshold.
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
        let thresholds = self.tenant(&call).thresholds(&budget.id).await.map_err(call.internal())?;
        Ok(Json(ThresholdList { thresholds }))
    }
}
