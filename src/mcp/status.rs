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
use crate::domain::forecast::{BacktestScore, Interval, IntervalSource, Method};
use crate::domain::{BudgetId, ValidationError, validation};
use crate::engine::About;
use crate::engine::status::{self, BudgetStatus, History};

pub const CHART_MIN_WIDTH: u32 = 400;
pub const CHART_MAX_WIDTH: u32 = 2000;
pub const CHART_MIN_HEIGHT: u32 = 300;
pub const CHART_MAX_HEIGHT: u32 = 1500;
const HORIZON_MAX_DAYS: u32 = 90;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {
    /// Budget id (a UUID).
    #[schemars(length(min = 36, max = 36))]
    pub id: String,
    /// Also return a PNG chart.
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
    /// First day, YYYY-MM-DD. Default: the period's first.
    #[serde(default)]
    #[schemars(with = "Option<String>", length(min = 10, max = 10), extend("format" = "date"))]
    pub from: Option<jiff::civil::Date>,
    /// Last day, YYYY-MM-DD (≤ 400 days after `from`). Default: today.
    #[serde(default)]
    #[schemars(with = "Option<String>", length(min = 10, max = 10), extend("format" = "date"))]
    pub to: Option<jiff::civil::Date>,
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

pub(super) fn parse_id<T: std::str::FromStr>(field: &str, s: &str, what: &str) -> Result<T, ValidationError> {
    s.parse().map_err(|_| ValidationError::new(field, format!("must be a {what} id (UUID)")))
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

impl BudgetServer {
    pub(super) async fn budget_of(&self, call: &CallCtx, id: &str, field: &str) -> Result<Budget, ToolError> {
        let bid: BudgetId = parse_id(field, id, "budget")?;
        Ok(self.tenant(call).budget(bid).await.about("budget", id)?)
    }

    /// One page of the caller's budgets in creation order.
    pub(super) async fn budget_page(
        &self,
        call: &CallCtx,
        after: Option<BudgetId>,
        limit: u32,
    ) -> Result<crate::store::BudgetPage, ToolError> {
        Ok(self.tenant(call).list_budgets(&crate::store::BudgetFilter::default(), after, limit).await?)
    }

    pub(super) async fn status_of(&self, call: &CallCtx, budget: &Budget) -> Result<status::Computed, ToolError> {
        Ok(status::compute(&self.app.store, call.principal.tenant_id, budget, self.now()).await?)
    }

    fn render(c: &status::Computed, width: u32, height: u32) -> Result<Vec<u8>, ToolError> {
        crate::chart::render_png(&c.chart_input(width, height)).map_err(|e| ToolError::internal(&e))
    }
}

#[tool_router(router = status_tools, vis = "pub(super)")]
impl BudgetServer {
    /// A budget's current period: spent, limit, remaining, run rate, the forecast period-end total with
    /// its intervals and probability of going over, top scenarios, thresholds, and data freshness.
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
        let json = serde_json::to_value(&computed.status)?;
        let mut result = CallToolResult::structured(json);
        if args.chart {
            let png = Self::render(&computed, crate::chart::DEFAULT_WIDTH, crate::chart::DEFAULT_HEIGHT)?;
            result.content.push(png_content(&png));
        }
        Ok(result)
    }

    /// A PNG chart of a budget's current period: spend so far, the forecast with its bands, the limit and
    /// thresholds, with a one-line summary.
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
        let png = Self::render(&computed, args.width, args.height)?;
        let info = ChartInfo {
            budget_id: budget.id.clone(),
            width: args.width,
            height: args.height,
            mime_type: "image/png".into(),
            summary: chart_summary(&computed.status),
        };
        let json = serde_json::to_value(&info)?;
        let mut result = CallToolResult::structured(json);
        result.content.insert(0, png_content(&png));
        Ok(result)
    }

    /// Daily spend in a budget's scope between two days (default: this period so far); days without
    /// synced data are marked.
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
        Ok(Json(
            status::history(&self.app.store, call.principal.tenant_id, &budget, args.from, args.to, self.now()).await?,
        ))
    }

    /// Forecast a budget's daily spend for 1–90 days from today, with the method its own backtest chose,
    /// its errors, and 80 % / 95 % intervals of the total.
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
        let series = status::history_series(&self.app.store, call.principal.tenant_id, &budget, today).await?;
        let fc = status::cached_forecast(&series, args.horizon_days as usize);
        let to_units = |x: f64| status::units_rounded(x) as f64;
        let days = fc
            .daily
            .iter()
            .enumerate()
            .map(|(i, v)| ForecastDay {
                day: today.checked_add(jiff::Span::new().days(i as i64)).unwrap_or(today).to_string(),
                expected: status::units_rounded(*v),
            })
            .collect();
        Ok(Json(SpendForecastView {
            budget_id: budget.id.clone(),
            unit: spec.unit,
            method: fc.method,
            horizon_days: args.horizon_days,
            days,
            total: status::units_rounded(fc.total),
            interval_80: Interval { lower: to_units(fc.interval_80.lower), upper: to_units(fc.interval_80.upper) },
            interval_95: Interval { lower: to_units(fc.interval_95.lower), upper: to_units(fc.interval_95.upper) },
            interval_source: fc.interval_source.clone(),
            backtest: fc.backtest.clone(),
            candidates: fc.candidates.clone(),
            days_of_data: fc.days_of_data,
            note: fc.note.clone(),
        }))
    }
}
