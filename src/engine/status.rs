//! Budget status: spend so far in the current period, where the period will end, and where each
//! threshold stands, computed from synced usage. Read-only; `engine::crossings` records crossings.
//!
//! Arithmetic is in centi-units (centicredits, or operations × 100) as integers; the forecast works in
//! floats and is rounded here, at the boundary. Today's usage is partial: the forecast covers today in
//! full, so the rest of today is forecast minus what today already spent (never below zero).

use std::collections::HashMap;
use std::sync::Arc;

use jiff::{SignedDuration, Span, Timestamp};
use schemars::JsonSchema;
use serde::Serialize;

use crate::domain::budget::{Period, Unit};
use crate::domain::clock::{format_timestamp, parse_timestamp};
use crate::domain::forecast::{self, BacktestScore, Method, SpendForecast};
use crate::domain::period::{BillingCycle, PeriodError, PeriodWindow, WindowView};
use crate::domain::threshold::{Basis, CrossingEvent, Severity, Threshold, ThresholdKind};
use crate::domain::{Budget, MoneyView, TenantId, ValidationError};
use crate::store::{DayUsage, OrgRecord, OrgUsage, ScopeUsage, Store, StoreError};

/// Usage older than this is flagged as stale.
pub const STALE_AFTER: SignedDuration = SignedDuration::from_hours(6);
/// Days of history the forecast learns from.
pub const HISTORY_DAYS: i64 = 90;
const TOP_SCENARIOS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{0}")]
    Period(#[from] PeriodError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Range {
    pub lower: i64,
    pub upper: i64,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ForecastView {
    pub method: Method,
    /// Expected spend at the end of the period, in whole units.
    pub period_end_total: i64,
    /// 80 % prediction interval of the period-end total.
    pub interval_80: Range,
    /// 95 % prediction interval of the period-end total.
    pub interval_95: Range,
    /// Chance that the period ends above the limit, 0–1.
    pub probability_over_limit: f64,
    /// Days of history the forecast is based on.
    pub based_on_days: usize,
    pub note: String,
    /// How well the method forecast this series' own past (mean absolute error per day, in whole units;
    /// mean absolute percentage error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backtest: Option<BacktestView>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BacktestView {
    pub mae: f64,
    pub mape_percent: Option<f64>,
    pub origins: usize,
}

impl From<&BacktestScore> for BacktestView {
    fn from(b: &BacktestScore) -> Self {
        BacktestView { mae: round2(b.mae / 100.0), mape_percent: b.mape.map(round2), origins: b.origins }
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct MoneyStatus {
    pub currency: String,
    /// Amounts in the currency's minor unit (e.g. cents).
    pub spent_minor: i64,
    pub limit_minor: i64,
    pub forecast_minor: i64,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TopScenario {
    pub scenario_id: i64,
    pub name: String,
    /// Whole units this period.
    pub spent: i64,
    pub share_percent: f64,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ThresholdStatus {
    pub id: String,
    pub label: Option<String>,
    pub kind: ThresholdKind,
    pub value: i64,
    pub basis: Basis,
    pub severity: Severity,
    /// The threshold's amount in whole units.
    pub amount: i64,
    /// The watched value (actual spend, or forecast period-end total) is at or above the amount now.
    pub crossed: bool,
    /// When a crossing was first recorded in this period (crossings are recorded when usage is synced).
    pub first_crossed_at: Option<String>,
    pub crossings_this_period: usize,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Freshness {
    /// When the organization's usage was last synced; absent if never.
    pub synced_at: Option<String>,
    pub age_minutes: Option<i64>,
    /// Older than 6 hours, or never synced: the figures may be behind Make's.
    pub stale: bool,
    /// Days of the period so far with synced usage, and days expected.
    pub days_with_data: usize,
    pub days_expected: usize,
    /// Days of the period so far without synced usage (at most 40 listed).
    pub missing_days: Vec<String>,
    /// Some figures were estimated as operations × 100 because Make reported no centicredits.
    pub estimated: bool,
    /// Days of the period so far whose figure includes per-scenario consumption estimated from Make's
    /// consumption snapshots between syncs and not yet reconciled with Make's daily figures (only scopes
    /// narrower than whole teams are read from scenario series).
    pub unreconciled_days: usize,
    /// Active scenarios in scope whose history from before this server first saw them is not read yet
    /// (the sync backfills them within its API budget, a few each pass).
    pub scenarios_without_history: usize,
    pub message: String,
}

/// Everything `get_budget_status` reports.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BudgetStatus {
    pub budget_id: String,
    pub name: String,
    pub unit: Unit,
    pub active: bool,
    pub period: Period,
    pub timezone: String,
    pub window: WindowView,
    /// Whole units per period.
    pub limit: i64,
    /// Spent so far this period, whole units (rounded down).
    pub spent: i64,
    /// Spent so far in hundredths of the unit (centicredits for credit budgets).
    pub spent_centi: i64,
    /// limit − spent; negative when over the limit.
    pub remaining: i64,
    pub percent_used: f64,
    pub over_limit: bool,
    /// Average spend per elapsed day of the period, whole units.
    pub daily_run_rate: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub money: Option<MoneyStatus>,
    pub forecast: ForecastView,
    pub top_scenarios: Vec<TopScenario>,
    pub thresholds: Vec<ThresholdStatus>,
    pub data: Freshness,
    pub computed_at: String,
}

/// A status plus what the chart needs.
#[derive(Debug, Clone)]
pub struct Computed {
    pub status: BudgetStatus,
    pub window: PeriodWindow,
    /// Spend per day of the window so far, in centi-units (missing days as 0).
    pub daily_actual_centi: Vec<i64>,
    /// Forecast per remaining day in centi-units (today's entry is the rest of today), and the
    /// forecast's intervals for the remaining total.
    pub remaining: Option<RemainingForecast>,
}

#[derive(Debug, Clone)]
pub struct RemainingForecast {
    pub daily_centi: Vec<f64>,
    pub total: f64,
    pub lower80: f64,
    pub upper80: f64,
    pub lower95: f64,
    pub upper95: f64,
}

impl Computed {
    /// What the chart shows: cumulative spend so far, the forecast to the end of the period with its
    /// bands, the limit and each threshold, in whole units. The forecast's intervals are for the period-end
    /// total; on earlier days the bands are drawn narrower, in proportion to the square root of the days
    /// ahead (the same growth the forecaster assumes when it scales errors).
    pub fn chart_input(&self, width: u32, height: u32) -> crate::chart::ChartInput {
        let s = &self.status;
        let mut cum = 0.0;
        let actual_cumulative: Vec<f64> = self
            .daily_actual_centi
            .iter()
            .map(|c| {
                cum += *c as f64 / 100.0;
                cum
            })
            .collect();
        let spent = s.spent_centi as f64 / 100.0;
        let forecast = match &self.remaining {
            None => Vec::new(),
            Some(r) => {
                let n = r.daily_centi.len().max(1) as f64;
                let mut point = spent;
                r.daily_centi
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        point += d / 100.0;
                        let scale = ((i + 1) as f64 / n).sqrt();
                        let below = |lo: f64| (point - (r.total - lo) / 100.0 * scale).max(spent);
                        let above = |hi: f64| point + (hi - r.total) / 100.0 * scale;
                        crate::chart::ForecastPoint {
                            point,
                            lower80: below(r.lower80),
                            upper80: above(r.upper80),
                            lower95: below(r.lower95),
                            upper95: above(r.upper95),
                        }
                    })
                    .collect()
            }
        };
        crate::chart::ChartInput {
            title: format!("{} — {} to {}", s.name, s.window.first_day, s.window.last_day),
            unit: match s.unit {
                Unit::Credits => "credits".into(),
                Unit::Operations => "operations".into(),
            },
            days: self.window.days(),
            actual_cumulative,
            forecast,
            limit: s.limit as f64,
            thresholds: s
                .thresholds
                .iter()
                .map(|t| {
                    let name = t.label.clone().unwrap_or_else(|| match t.kind {
                        ThresholdKind::Percent => format!("{} %", t.value),
                        ThresholdKind::Absolute => t.amount.to_string(),
                    });
                    (format!("{name} ({})", t.basis.as_str()), t.amount as f64)
                })
                .collect(),
            width,
            height,
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Whole units from centi-units, rounded down.
pub fn units(centi: i64) -> i64 {
    centi.div_euclid(100)
}

/// Whole units from centi-units computed in floats (forecasts), rounded to the nearest; 0 when not finite.
pub fn units_rounded(centi: f64) -> i64 {
    if centi.is_finite() { (centi / 100.0).round() as i64 } else { 0 }
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

/// The longest history one call may ask for.
pub const HISTORY_MAX_DAYS: i32 = 400;

/// Daily spend within `budget`'s scope from `from` (default: the current period's first day) to `to`
/// (default: today in the budget's time zone), with the days that have no synced data marked.
pub async fn history(
    store: &Store,
    tenant: TenantId,
    budget: &Budget,
    from: Option<jiff::civil::Date>,
    to: Option<jiff::civil::Date>,
    now: Timestamp,
) -> Result<History, super::Error> {
    let spec = &budget.spec;
    let today = now.to_zoned_datetime(jiff::tz::db().get(&spec.timezone).unwrap_or(jiff::tz::TimeZone::UTC)).date();
    let from = match from {
        Some(d) => d,
        None => current_window(store, tenant, budget, now).await?.first_day,
    };
    let to = to.unwrap_or(today);
    if to < from {
        return Err(ValidationError::new("to", format!("must not be before from ({from})")).into());
    }
    if from.until(to).map(|s| s.get_days()).unwrap_or(i32::MAX) >= HISTORY_MAX_DAYS {
        return Err(ValidationError::new("from", format!("the range may span at most {HISTORY_MAX_DAYS} days")).into());
    }
    let usage = store.tenant(tenant).scope_usage(&spec.scope, &from.to_string(), &to.to_string()).await?;
    let mut days = Vec::new();
    let mut d = from;
    while d <= to {
        let key = d.to_string();
        let centi = usage.days.get(&key).map_or(0, |u| centi_of(spec.unit, u));
        days.push(HistoryDay {
            spent: units(centi),
            spent_centi: centi,
            has_data: usage.covered.contains(&key),
            day: key,
        });
        let Ok(next) = d.tomorrow() else { break };
        d = next;
    }
    let total_centi: i64 = days.iter().map(|d| d.spent_centi).sum();
    Ok(History {
        budget_id: budget.id.clone(),
        unit: spec.unit,
        from: from.to_string(),
        to: to.to_string(),
        days_without_data: days.iter().filter(|d| !d.has_data).count(),
        total: units(total_centi),
        total_centi,
        days,
    })
}

/// A day's spend in centi-units of the budget's unit.
pub fn centi_of(unit: Unit, u: &DayUsage) -> i64 {
    centi_in(unit, u.centicredits, u.operations)
}

/// Spend given as centicredits and operations, in centi-units of the budget's unit.
pub fn centi_in(unit: Unit, centicredits: i64, operations: i64) -> i64 {
    match unit {
        Unit::Credits => centicredits,
        Unit::Operations => operations.saturating_mul(100),
    }
}

/// Money in minor units for an amount in centi-units: centi/100 units × price per 1,000 units.
fn money_minor(m: &MoneyView, centi: i64) -> i64 {
    let v = i128::from(centi) * i128::from(m.price_per_1000_units_minor);
    i64::try_from((v + 50_000) / 100_000).unwrap_or(i64::MAX)
}

fn billing_of(org: Option<&OrgRecord>) -> Option<BillingCycle> {
    let org = org?;
    let last = parse_timestamp(org.last_reset.as_deref()?).ok()?;
    Some(BillingCycle {
        last_reset: last,
        next_reset: org.next_reset.as_deref().and_then(|s| parse_timestamp(s).ok()),
        yearly: org.restart_period.as_deref().is_some_and(|p| p.contains("year")),
    })
}

fn day_offset(day: jiff::civil::Date, n: i64) -> jiff::civil::Date {
    day.checked_add(Span::new().days(n)).unwrap_or(day)
}

/// What status computations read, each read once: the tenant's organizations, and each organization's
/// usage per range of days. One lives for a `get_budget_status` call; an evaluator pass keeps one per
/// tenant, so budgets over the same organization and period share every read instead of querying per
/// budget.
pub struct UsageSnapshot<'a> {
    store: &'a Store,
    tenant: TenantId,
    orgs: Option<Vec<OrgRecord>>,
    usage: HashMap<(i64, String, String), Arc<OrgUsage>>,
}

impl<'a> UsageSnapshot<'a> {
    pub fn new(store: &'a Store, tenant: TenantId) -> Self {
        Self { store, tenant, orgs: None, usage: HashMap::new() }
    }

    pub fn store(&self) -> &'a Store {
        self.store
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The tenant's connected organizations.
    pub async fn organizations(&mut self) -> Result<&[OrgRecord], StoreError> {
        if self.orgs.is_none() {
            self.orgs = Some(self.store.tenant(self.tenant).organizations().await?);
        }
        Ok(self.orgs.as_deref().unwrap_or_default())
    }

    /// The organization a budget's scope is in, if it is connected.
    async fn organization(&mut self, organization_id: i64) -> Result<Option<OrgRecord>, StoreError> {
        Ok(self.organizations().await?.iter().find(|o| o.organization_id == organization_id).cloned())
    }

    /// Daily spend of `scope` from `from` to `to` (inclusive, YYYY-MM-DD).
    pub async fn scope_usage(
        &mut self,
        scope: &crate::domain::Scope,
        from: &str,
        to: &str,
    ) -> Result<ScopeUsage, StoreError> {
        let key = (scope.organization_id, from.to_owned(), to.to_owned());
        if !self.usage.contains_key(&key) {
            let org = self.org_usage(scope.organization_id, from, to).await?;
            self.usage.insert(key.clone(), org);
        }
        Ok(self.usage[&key].for_scope(scope))
    }

    /// An organization's usage over a range of days: from the process-wide cache when it holds this
    /// range as of the organization's last sync, else from the store.
    async fn org_usage(&mut self, organization_id: i64, from: &str, to: &str) -> Result<Arc<OrgUsage>, StoreError> {
        let generation = crate::store::usage_generation();
        let synced_at = self.organization(organization_id).await?.and_then(|o| o.synced_at);
        let Some(synced_at) = synced_at else {
            // Never synced: nothing to cache (and nothing much to read).
            return Ok(Arc::new(self.store.tenant(self.tenant).org_usage(organization_id, from, to).await?));
        };
        let key = UsageKey {
            tenant: self.tenant,
            organization_id,
            from: from.to_owned(),
            to: to.to_owned(),
            synced_at,
            generation,
        };
        if let Some(hit) = USAGE.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(hit.clone());
        }
        let read = Arc::new(self.store.tenant(self.tenant).org_usage(organization_id, from, to).await?);
        let mut cache = USAGE.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= USAGE_KEPT {
            cache.clear();
        }
        cache.insert(key, read.clone());
        Ok(read)
    }
}

/// What a cached organization's usage was read for. Usage changes only when a sync commits, which sets the
/// organization's `synced_at` (seen by every instance) and moves this process's usage generation on (so a
/// second sync within the same clock tick, as in tests with a frozen clock, is seen too).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct UsageKey {
    tenant: TenantId,
    organization_id: i64,
    from: String,
    to: String,
    synced_at: String,
    generation: u64,
}

/// Organizations' usage recently read, shared by every status and evaluation in the process: a
/// `get_budget_status` reads the organization's rows (thousands for a large organization) once per sync
/// rather than on every call.
static USAGE: std::sync::LazyLock<std::sync::Mutex<HashMap<UsageKey, Arc<OrgUsage>>>> =
    std::sync::LazyLock::new(Default::default);

/// At most this many organization ranges are kept (each a few hundred kilobytes at most); when full the
/// cache starts over.
const USAGE_KEPT: usize = 64;

/// Forecasts already made, by history and horizon. A forecast backtests several models over the history
/// (tens of milliseconds), and its inputs change only when usage is synced or the day turns, so every
/// status of a budget between two syncs, and every budget with the same history, shares one.
static FORECASTS: std::sync::LazyLock<std::sync::Mutex<HashMap<ForecastKey, Arc<SpendForecast>>>> =
    std::sync::LazyLock::new(Default::default);

/// A forecast's inputs: the history's values (as bits, so that they hash) and the horizon.
type ForecastKey = (Vec<u64>, usize);

/// The cache holds at most this many forecasts (a few kilobytes each); when full it starts over.
const FORECASTS_KEPT: usize = 1024;

/// [`forecast::forecast`] through the process-wide cache.
pub fn cached_forecast(series: &[f64], horizon: usize) -> Arc<SpendForecast> {
    let key = (series.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), horizon);
    if let Some(f) = FORECASTS.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return f.clone();
    }
    let made = Arc::new(forecast::forecast(series, horizon));
    let mut cache = FORECASTS.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= FORECASTS_KEPT {
        cache.clear();
    }
    cache.insert(key, made.clone());
    made
}

/// The budget's current period, with the billing cycle from its organization's stored plan facts.
pub async fn current_window(
    store: &Store,
    tenant: TenantId,
    budget: &Budget,
    now: Timestamp,
) -> Result<PeriodWindow, StatusError> {
    window_in(&mut UsageSnapshot::new(store, tenant), budget, now).await
}

async fn window_in(snap: &mut UsageSnapshot<'_>, budget: &Budget, now: Timestamp) -> Result<PeriodWindow, StatusError> {
    let org = snap.organization(budget.spec.scope.organization_id).await?;
    Ok(PeriodWindow::current(&budget.spec.period, &budget.spec.timezone, now, billing_of(org.as_ref()).as_ref())?)
}

/// Daily spend of the budget's scope, in centi-units, for the run of consecutive days with synced data
/// that ends at the latest such day before `today` (at most [`HISTORY_DAYS`]), oldest first: what the
/// forecast learns from. When syncs lag, the gap is reported by the status, not filled in here.
pub async fn history_series(
    store: &Store,
    tenant: TenantId,
    budget: &Budget,
    today: jiff::civil::Date,
) -> Result<Vec<f64>, StatusError> {
    history_in(&mut UsageSnapshot::new(store, tenant), budget, today).await
}

async fn history_in(
    snap: &mut UsageSnapshot<'_>,
    budget: &Budget,
    today: jiff::civil::Date,
) -> Result<Vec<f64>, StatusError> {
    let from = day_offset(today, -HISTORY_DAYS);
    let history = snap.scope_usage(&budget.spec.scope, &from.to_string(), &day_offset(today, -1).to_string()).await?;
    let mut series = Vec::new();
    let latest = history.covered.iter().next_back().and_then(|d| d.parse::<jiff::civil::Date>().ok());
    let mut d = latest.unwrap_or(day_offset(today, -1));
    while d >= from && history.covered.contains(&d.to_string()) {
        series.push(history.days.get(&d.to_string()).map_or(0, |u| centi_of(budget.spec.unit, u)) as f64);
        d = day_offset(d, -1);
    }
    series.reverse();
    Ok(series)
}

/// Compute a budget's status at `now`.
pub async fn compute(
    store: &Store,
    tenant: TenantId,
    budget: &Budget,
    now: Timestamp,
) -> Result<Computed, StatusError> {
    compute_in(&mut UsageSnapshot::new(store, tenant), budget, now).await
}

/// [`compute`], reading through `snap` (which may already hold what this budget needs).
pub async fn compute_in(
    snap: &mut UsageSnapshot<'_>,
    budget: &Budget,
    now: Timestamp,
) -> Result<Computed, StatusError> {
    let mut computed = compute_spend_in(snap, budget, now).await?;
    let (thresholds, events) =
        snap.store().tenant(snap.tenant()).thresholds_with_crossings(&budget.id, &computed.window.key()).await?;
    computed.status.thresholds = threshold_status(budget, &thresholds, &events, &computed);
    Ok(computed)
}

impl Computed {
    /// The forecast period-end total in centi-units: what `forecast` thresholds watch.
    pub fn forecast_total_centi(&self) -> i64 {
        period_end_centi(self.status.spent_centi, self.remaining.as_ref())
    }
}

/// The expected period-end total in centi-units: spent so far plus the forecast of what remains (none once
/// the period is over).
fn period_end_centi(spent_centi: i64, rest: Option<&RemainingForecast>) -> i64 {
    spent_centi + rest.map_or(0, |r| r.total.round() as i64)
}

/// Where each threshold stands against the computed spend, with its crossings this period.
fn threshold_status(
    budget: &Budget,
    thresholds: &[Threshold],
    events: &[CrossingEvent],
    computed: &Computed,
) -> Vec<ThresholdStatus> {
    let (actual, forecast) = (computed.status.spent_centi, computed.forecast_total_centi());
    thresholds
        .iter()
        .map(|t| {
            let amount = t.spec.amount_centi(budget.spec.limit);
            let value = match t.spec.basis {
                Basis::Actual => actual,
                Basis::Forecast => forecast,
            };
            let mine: Vec<_> = events.iter().filter(|e| e.threshold_id == t.id).collect();
            ThresholdStatus {
                id: t.id.clone(),
                label: t.spec.label.clone(),
                kind: t.spec.kind,
                value: t.spec.value,
                basis: t.spec.basis,
                severity: t.spec.severity,
                amount: units(amount),
                crossed: value >= amount,
                first_crossed_at: mine.first().map(|e| e.crossed_at.clone()),
                crossings_this_period: mine.len(),
            }
        })
        .collect()
}

/// Everything of a budget's status but its thresholds (left empty): spend, forecast, top scenarios and
/// freshness, from usage alone. The evaluator, which has the thresholds already, needs no more.
pub async fn compute_spend_in(
    snap: &mut UsageSnapshot<'_>,
    budget: &Budget,
    now: Timestamp,
) -> Result<Computed, StatusError> {
    let spec = &budget.spec;
    let org = snap.organization(spec.scope.organization_id).await?;
    let org = org.as_ref();
    let window = window_in(snap, budget, now).await?;
    let today = now.to_zoned_datetime(window.start.time_zone().clone()).date();
    let to_day = today.min(window.last_day);
    let in_window = window.first_day <= today;
    let usage = if in_window {
        snap.scope_usage(&spec.scope, &window.first_day.to_string(), &to_day.to_string()).await?
    } else {
        Default::default()
    };
    let series = history_in(snap, budget, today).await?;

    // Spend so far, per window day.
    let elapsed_days: Vec<jiff::civil::Date> = window.days().into_iter().filter(|d| *d <= to_day).collect();
    let daily_actual_centi: Vec<i64> =
        elapsed_days.iter().map(|d| usage.days.get(&d.to_string()).map_or(0, |u| centi_of(spec.unit, u))).collect();
    let spent_centi: i64 = daily_actual_centi.iter().sum();
    let limit_centi = spec.limit.saturating_mul(100);
    let today_actual = if in_window && today <= window.last_day { *daily_actual_centi.last().unwrap_or(&0) } else { 0 };

    // Forecast of what remains: today (in full) through the last day.
    let period_over = now >= window.end.timestamp();
    let (horizon, skip) = if period_over {
        (0, 0)
    } else if in_window {
        (today.until(window.last_day).map(|s| s.get_days() + 1).unwrap_or(1) as usize, 0)
    } else {
        // A custom period that has not begun: forecast up to its end and keep its own days.
        let lead = today.until(window.first_day).map(|s| s.get_days()).unwrap_or(0) as usize;
        (lead + window.day_count() as usize, lead)
    };
    let fc = cached_forecast(&series, horizon);
    let (rest, threshold_over) = if horizon == 0 {
        (None, if spent_centi > limit_centi { 1.0 } else { 0.0 })
    } else {
        let mut daily: Vec<f64> = fc.daily[skip..].to_vec();
        // Shift that turns the forecast's total into the remaining spend of the period.
        let mut shift = -fc.daily[..skip].iter().sum::<f64>();
        if in_window && let Some(first) = daily.first_mut() {
            let rest_today = (*first - today_actual as f64).max(0.0);
            shift += rest_today - *first;
            *first = rest_today;
        }
        let total = daily.iter().sum::<f64>();
        let clamp = |x: f64| (x + shift).max(0.0);
        let r = RemainingForecast {
            total,
            lower80: clamp(fc.interval_80.lower).min(total),
            upper80: clamp(fc.interval_80.upper).max(total),
            lower95: clamp(fc.interval_95.lower).min(total),
            upper95: clamp(fc.interval_95.upper).max(total),
            daily_centi: daily,
        };
        let p = fc.probability_total_exceeds((limit_centi - spent_centi) as f64 - shift);
        (Some(r), p)
    };
    let end_total = |x: f64| spent_centi + x.round() as i64;
    let point = period_end_centi(spent_centi, rest.as_ref());
    let (i80, i95) = match &rest {
        Some(r) => (
            Range { lower: units(end_total(r.lower80)), upper: units(end_total(r.upper80)) },
            Range { lower: units(end_total(r.lower95)), upper: units(end_total(r.upper95)) },
        ),
        None => (
            Range { lower: units(spent_centi), upper: units(spent_centi) },
            Range { lower: units(spent_centi), upper: units(spent_centi) },
        ),
    };
    let note = if period_over { "the period has ended: the total is final".to_owned() } else { fc.note.clone() };
    let forecast_view = ForecastView {
        method: fc.method,
        period_end_total: units_rounded(point as f64),
        interval_80: i80,
        interval_95: i95,
        probability_over_limit: (threshold_over.clamp(0.0, 1.0) * 1000.0).round() / 1000.0,
        based_on_days: fc.days_of_data,
        note,
        backtest: fc.backtest.as_ref().map(BacktestView::from),
    };

    // Freshness.
    let synced_at = org.and_then(|o| o.synced_at.clone());
    let age = synced_at.as_deref().and_then(|s| parse_timestamp(s).ok()).map(|t| now.duration_since(t));
    let stale = age.is_none_or(|a| a > STALE_AFTER);
    let missing: Vec<String> =
        elapsed_days.iter().map(|d| d.to_string()).filter(|d| !usage.covered.contains(d)).collect();
    let estimated = usage.days.values().any(|u| u.estimated);
    let unreconciled_days =
        elapsed_days.iter().filter(|d| usage.days.get(&d.to_string()).is_some_and(|u| u.unreconciled)).count();
    let without_history = usage.scenarios_without_history;
    let message = match (&synced_at, stale, missing.is_empty()) {
        (None, _, _) if org.is_none() => format!(
            "organization {} is not connected: no usage yet. An admin can connect it with connect_make",
            spec.scope.organization_id
        ),
        (None, _, _) => "usage has never been synced: run sync_usage".to_owned(),
        (Some(_), true, _) => format!(
            "usage was last synced {} minutes ago: figures may be behind Make; run sync_usage",
            age.map_or(0, |a| a.as_mins())
        ),
        (Some(_), false, false) => format!("{} day(s) of this period have no synced usage", missing.len()),
        (Some(_), false, true) if without_history > 0 => format!(
            "usage is up to date, but the history of {without_history} scenario(s) in scope is still being read \
             from Make (a few each sync)"
        ),
        (Some(_), false, true) if unreconciled_days > 0 => format!(
            "usage is up to date; {unreconciled_days} day(s) include per-scenario estimates from consumption \
             snapshots that are not yet reconciled with Make's daily figures"
        ),
        (Some(_), false, true) => "usage is up to date".to_owned(),
    };
    let data = Freshness {
        synced_at,
        age_minutes: age.map(|a| a.as_mins()),
        stale,
        days_with_data: elapsed_days.len() - missing.len(),
        days_expected: elapsed_days.len(),
        missing_days: missing.into_iter().take(40).collect(),
        estimated,
        unreconciled_days,
        scenarios_without_history: without_history,
        message,
    };

    let top_scenarios = usage
        .scenarios
        .iter()
        .filter(|s| s.centicredits > 0 || s.operations > 0)
        .take(TOP_SCENARIOS)
        .map(|s| {
            let centi = centi_in(spec.unit, s.centicredits, s.operations);
            TopScenario {
                scenario_id: s.scenario_id,
                name: s.name.clone(),
                spent: units(centi),
                share_percent: if spent_centi > 0 {
                    round2(centi as f64 * 100.0 / spent_centi as f64).min(100.0)
                } else {
                    0.0
                },
            }
        })
        .collect();

    let fraction_days = (window.fraction_elapsed(now) * window.day_count() as f64).max(1.0 / 24.0);
    let status = BudgetStatus {
        budget_id: budget.id.clone(),
        name: spec.name.clone(),
        unit: spec.unit,
        active: spec.active,
        period: spec.period.clone(),
        timezone: spec.timezone.clone(),
        window: window.view(now),
        limit: spec.limit,
        spent: units(spent_centi),
        spent_centi,
        remaining: spec.limit - units(spent_centi),
        percent_used: round2(spent_centi as f64 / limit_centi.max(1) as f64 * 100.0),
        over_limit: spent_centi > limit_centi,
        daily_run_rate: units_rounded(spent_centi as f64 / fraction_days),
        money: spec.money.as_ref().map(|m| MoneyStatus {
            currency: m.currency.clone(),
            spent_minor: money_minor(m, spent_centi),
            limit_minor: money_minor(m, limit_centi),
            forecast_minor: money_minor(m, point),
        }),
        forecast: forecast_view,
        top_scenarios,
        thresholds: Vec::new(),
        data,
        computed_at: format_timestamp(now),
    };
    Ok(Computed { status, window, daily_actual_centi, remaining: rest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_rounds_half_up_in_minor_units() {
        let m = MoneyView { currency: "EUR".into(), price_per_1000_units_minor: 900 };
        assert_eq!(money_minor(&m, 100_000), 900, "1,000 credits at 9.00");
        assert_eq!(money_minor(&m, 5_000), 45, "50 credits");
        assert_eq!(money_minor(&m, 5_556), 50, "55.56 credits = 50.004 cents");
        assert_eq!(money_minor(&m, 0), 0);
    }

    #[test]
    fn whole_units_round_down() {
        assert_eq!((units(199), units(200), units(0)), (1, 2, 0));
        assert_eq!(units_rounded(f64::NAN), 0);
    }
}
