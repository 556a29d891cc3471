//! Spend forecasting: from a daily usage series (complete days, oldest first) to a forecast of the next days,
//! with prediction intervals for the total and the probability of exceeding a limit.
//!
//! # Candidates
//!
//! Several simple, well-understood models compete; which ones are tried depends on how many days of history
//! (`n`) there are:
//!
//! | method | fitted when | backtested from origin |
//! |---|---|---|
//! | [`Method::RunRate`]: mean of the last 7 or 14 days (all days below 7) | n ≥ 1 | t ≥ 3 |
//! | [`Method::SeasonalNaive`]: same weekday last week | n ≥ 7 | t ≥ 7 |
//! | [`Method::DampedTrend`]: ETS(A,Ad,N) from augurs-ets | n ≥ 10 | t ≥ 10 |
//! | [`Method::SeasonalEts`]: MSTL (period 7) + AutoETS trend, augurs-mstl | n ≥ 21 | t ≥ 21 |
//!
//! The exponential smoothing models come from augurs (no hand-rolled optimisation here). A model that fails to
//! fit, or whose forecast is not finite or is implausible (a day above [`PLAUSIBLE_FACTOR`] × the largest day
//! seen), is dropped silently (logged at debug level). Point forecasts are clamped at 0.
//!
//! Before fitting, isolated one-day outliers (a day far from the same weekday in the surrounding weeks, with
//! neighbours that are not) are replaced by that weekday's median, so that one spike in the recent past is not
//! repeated by the seasonal naive forecast or taken as a new level by exponential smoothing. Backtests still
//! compare with what actually happened, spikes included, so the intervals keep the risk of spikes.
//!
//! # Level shifts
//!
//! When spend moves to a new level (a scenario goes live or is switched off), the days before the move describe
//! a past regime: exponential smoothing takes weeks to forget them, a run rate mixes both levels, and backtest
//! errors across the move make the intervals too wide. So before anything is fitted, the most recent level shift
//! is looked for ([`SHIFT_THRESHOLD`], from [`SHIFT_MIN_HISTORY`] days of history): with the weekly differences
//! `d(t) = y(t) − y(t − 7)`, which a weekly pattern and a steady trend only shift by a constant, a level shift
//! on day `s` is a week `s..s + 7` in which both the mean and the median of `d` stand out from the median of
//! all `d` by more than the threshold in standard errors (the spread of `d` is estimated from the days outside
//! that week). The mean keeps sparse series, whose `d` are mostly 0, from passing for shifts; the median keeps
//! one or two spikes from doing so. If a shift is found, everything below (backtests, fits, intervals) uses
//! only the days from it on ([`SpendForecast::fitted_days`]), and the note says so. A shift is seen once a
//! week has passed since it.
//!
//! # Choosing a model
//!
//! Each candidate is backtested on rolling origins over the recent past: at origin `t` it is fitted on
//! `history[..t]` and forecasts the following days, compared with what actually happened. The origins are the
//! last [`MAX_ORIGINS`] days (every [`LONG_HISTORY_ORIGIN_STEP`] days once the history is long enough), so the
//! cost is bounded whatever the history length, and only from the candidate's minimum history on. A candidate
//! needs [`MIN_ORIGINS`] origins to be backtested at all.
//!
//! The candidates are compared on the same origins (those every backtested candidate has), by the mean absolute
//! error of the daily forecasts at horizons 1..=7, each origin weighted by its recency (the weight halves every
//! [`SELECTION_HALF_LIFE`] days), so that how a model has done lately counts most. The simplest candidate
//! (order: run rate, seasonal naive, damped trend, seasonal ETS) is the incumbent, and a more complex one
//! replaces it only if its MAE is lower by more than [`SELECTION_MARGIN`] (relative). A small margin keeps the
//! choice from chasing noise between nearly equal candidates, and ties go to the simpler model. If nothing can
//! be backtested (fewer than 6 days), the forecast is the run rate and the note says so.
//!
//! # Intervals for the total
//!
//! For the chosen model, the backtest gives cumulative errors `C(t, k) = Σ_{j ≤ k} (actual − forecast)` at every
//! origin `t` that has `k` days of actuals after it: errors of the total of the same kind as the one forecast,
//! on this series. With `h` the horizon, the span used is the longest `k ≤ h` with at least
//! [`MIN_INTERVAL_SAMPLES`] samples worth at least [`MIN_EFFECTIVE_WINDOWS`] independent windows (windows `d`
//! days apart share `k − d` days, see `effective_windows`):
//!
//! 1. `k = h`: the errors of past `h`-day totals as they are ([`IntervalSource::Backtest`]);
//! 2. `k < h`: those errors scaled by `(h / k)^β` ([`IntervalSource::ScaledBacktest`]), where `β` is how the
//!    error of the total grows with the span on this series: the slope of `log rms C(·, j)` against `log j` over
//!    the upper half of the spans `j ≤ k` (at least three; 1 with fewer), within [`MIN_ERROR_GROWTH`]..=[`MAX_ERROR_GROWTH`] (½ for
//!    independent day errors, 1 for an error in the level, 2 for an error in the trend). A square root, as if day
//!    errors were independent, understates long horizons badly on trending series;
//! 3. no such span: a normal approximation from the day-to-day noise `s` of the history (the spread of the
//!    weekly differences over √2 from two weeks on, so that neither the weekly pattern nor a trend counts as
//!    noise; the plain spread before): `sd(total) = s · sqrt(h · (1 + h / m))`, where `m` is the number of days
//!    the run rate averages (the second term is the uncertainty of the estimated mean) ([`IntervalSource::Model`]);
//! 4. with 0 or 1 day of data there is no spread to learn from and the interval is the point
//!    ([`IntervalSource::None`]).
//!
//! From the error samples (cases 1 and 2), a Student-t for the actual total is fitted: location `total + mean
//! error`, and the textbook prediction interval for one more draw (`s · sqrt(1 + 1/m)`) with the sample size `m`
//! replaced by the effective number of independent windows and `s` corrected for the overlap; its degrees of
//! freedom are 3/2 × (effective windows − 1) ([`OVERLAP_DOF_FACTOR`]: overlapping windows estimate a variance
//! better than the disjoint ones they are worth), at most `m − 1`. The samples are then dressed with Student-t
//! kernels of that shape ([`TotalDistribution::Dressed`]): the average of one kernel per sample, centred at
//! `total + error`, with the kernel scale chosen so that the mixture has the fitted variance. The mixture keeps
//! the skew of the errors (sparse or spiky spend: usually a little below the forecast, sometimes far above),
//! which a symmetric distribution would lose, and the width the fit adds for few independent windows.
//!
//! The 80 % and 95 % bounds are that distribution's 10/90 and 2.5/97.5 % quantiles; they are widened if needed
//! to contain the point forecast (a biased backtest could otherwise give an interval beside the point), and
//! lower bounds are clamped at 0. [`SpendForecast::probability_total_exceeds`] reads the same distribution
//! ([`SpendForecast::total_distribution`]); the error samples used are kept in
//! [`SpendForecast::total_error_samples`].
//!
//! Values are in the caller's unit (centicredits as `f64`); nothing is rounded here.

use augurs_core::{Fit, Predict};
use augurs_ets::AutoETS;
use augurs_mstl::MSTLModel;
use schemars::JsonSchema;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Length of the weekly season, in days.
pub const SEASON: usize = 7;
/// The run rate averages at most this many recent days (whole weeks once there is one).
pub const RUN_RATE_WINDOW: usize = 14;
/// Backtest origins per candidate, at most (the most recent ones). Bounds the cost of a forecast.
pub const MAX_ORIGINS: usize = 30;
/// Days between backtest origins once the history is long enough for every candidate to get
/// [`MAX_ORIGINS`] origins at this spacing; 1 below that.
pub const LONG_HISTORY_ORIGIN_STEP: usize = 2;
/// A candidate with fewer backtest origins than this is not backtested (and so not selectable).
pub const MIN_ORIGINS: usize = 3;
/// The selection metric is the MAE of daily forecasts at horizons `1..=SELECTION_HORIZON`.
pub const SELECTION_HORIZON: usize = 7;
/// Days after which a backtest origin's weight in the selection metric halves.
pub const SELECTION_HALF_LIFE: f64 = 14.0;
/// A more complex candidate must beat the incumbent's MAE by more than this fraction to be chosen.
pub const SELECTION_MARGIN: f64 = 0.02;
/// Fewest cumulative error samples for intervals from the backtest.
pub const MIN_INTERVAL_SAMPLES: usize = 8;
/// Least growth exponent of the total's error with the span (independent day errors).
pub const MIN_ERROR_GROWTH: f64 = 0.5;
/// Largest growth exponent of the total's error with the span (an error in the trend).
pub const MAX_ERROR_GROWTH: f64 = 2.0;
/// Degrees of freedom of a variance estimated from fully overlapping windows, per effectively independent
/// window (overlapping batch means: the estimator's variance is 2/3 of that from disjoint windows).
pub const OVERLAP_DOF_FACTOR: f64 = 1.5;
/// Bisection steps for a quantile of [`TotalDistribution::Dressed`] (the bracket shrinks 2^-this).
const QUANTILE_ITERATIONS: usize = 50;
/// Fewest effectively independent error windows for intervals from the backtest (see the module docs).
pub const MIN_EFFECTIVE_WINDOWS: f64 = 3.0;
/// A level shift must stand out by more than this many standard errors (see the module docs).
pub const SHIFT_THRESHOLD: f64 = 4.0;
/// Fewest days of history in which level shifts are looked for (three weeks: two to compare, one to see it).
pub const SHIFT_MIN_HISTORY: usize = 3 * SEASON;
/// A day further than this many robust standard deviations from its weekday's neighbours is an outlier.
pub const OUTLIER_THRESHOLD: f64 = 5.0;
/// If more than this share of days would be outliers, none are: the jumps are how the series behaves.
pub const OUTLIER_MAX_SHARE: f64 = 0.1;
/// A forecast day above this multiple of the largest day in the history counts as a failed fit.
pub const PLAUSIBLE_FACTOR: f64 = 10.0;
/// Longest horizon forecast; longer requests are shortened to this (ten years and a bit).
pub const MAX_HORIZON: usize = 4_000;

/// Which model produced a forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    NoData,
    RunRate,
    SeasonalNaive,
    DampedTrend,
    SeasonalEts,
}

impl Method {
    /// The forecasting candidates, simplest first (the order also breaks ties).
    pub const CANDIDATES: [Method; 4] =
        [Method::RunRate, Method::SeasonalNaive, Method::DampedTrend, Method::SeasonalEts];

    /// Fewest days of history the method can be fitted on.
    pub fn min_history(self) -> usize {
        match self {
            Method::NoData => 0,
            Method::RunRate => 1,
            Method::SeasonalNaive => SEASON,
            Method::DampedTrend => 10,
            Method::SeasonalEts => 3 * SEASON,
        }
    }

    /// Fewest days of history at a backtest origin. The run rate is not backtested on one or two days: such a
    /// mean says little about how the 14-day run rate performs.
    fn min_backtest_history(self) -> usize {
        match self {
            Method::RunRate => 3,
            other => other.min_history(),
        }
    }

    /// Short plain-language name for notes.
    pub fn label(self) -> &'static str {
        match self {
            Method::NoData => "no data",
            Method::RunRate => "the run rate (average daily spend of the last one or two weeks)",
            Method::SeasonalNaive => "seasonal naive (each weekday repeats last week)",
            Method::DampedTrend => "a damped trend (exponential smoothing)",
            Method::SeasonalEts => "exponential smoothing with a weekly pattern",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

/// How the intervals were obtained.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IntervalSource {
    /// Backtest errors of the same horizon, over `origins` forecast origins.
    Backtest { origins: usize },
    /// Backtest errors at `from_horizon` days, scaled by (horizon / from_horizon)^β with β the growth of the
    /// error with the span on this series (see the module docs).
    ScaledBacktest { from_horizon: usize, origins: usize },
    /// The model's own (normal) prediction intervals / normal approximation from daily spread.
    Model,
    /// Not enough data for any interval (0 or 1 day of data): the interval is the point itself.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct BacktestScore {
    pub method: Method,
    /// Mean absolute error of daily forecasts (same unit as the series), horizons 1..=7, over the compared
    /// origins, each weighted by its recency (the weight halves every [`SELECTION_HALF_LIFE`] days).
    pub mae: f64,
    /// Mean absolute percentage error in percent over days with non-zero actuals, weighted as `mae`; None if all
    /// actuals were 0.
    pub mape: Option<f64>,
    pub origins: usize,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SpendForecast {
    pub method: Method,
    /// Days of history the forecast is based on.
    pub days_of_data: usize,
    /// The last days of the history the models were fitted and backtested on: all of them, unless a level
    /// shift was detected (see the module docs), then the days since the shift.
    pub fitted_days: usize,
    pub horizon: usize,
    /// Point forecast for each future day (never negative).
    pub daily: Vec<f64>,
    /// Sum of `daily`.
    pub total: f64,
    /// Prediction intervals for `total` (lower bounds never below 0).
    pub interval_80: Interval,
    pub interval_95: Interval,
    pub interval_source: IntervalSource,
    /// Backtest of the chosen method on this series (None when too little data to backtest).
    pub backtest: Option<BacktestScore>,
    /// Every candidate that was backtested, best first.
    pub candidates: Vec<BacktestScore>,
    /// Plain-language note for users, e.g. "based on 3 days of data; too little history to backtest, so the
    /// forecast is the average daily spend (run rate)".
    pub note: String,
    /// Error samples for `total` (actual − forecast) used for the intervals; skipped in output.
    #[serde(skip)]
    #[schemars(skip)]
    pub total_error_samples: Vec<f64>,
    /// The distribution of the actual total the intervals were read from; skipped in output.
    #[serde(skip)]
    #[schemars(skip)]
    pub total_distribution: TotalDistribution,
}

impl SpendForecast {
    /// Probability (0..=1) that the actual future total exceeds `amount`.
    /// From the same distribution the intervals were read from ([`SpendForecast::total_distribution`]): the
    /// backtest errors dressed with Student-t kernels (or the Student-t fitted to them), or the normal
    /// approximation, or (no spread known) 0 or 1 by
    /// comparing the point with `amount`. Spend is never negative, so a negative amount is exceeded with
    /// probability 1.
    pub fn probability_total_exceeds(&self, amount: f64) -> f64 {
        if amount.is_nan() {
            return 0.0;
        }
        if amount < 0.0 {
            return 1.0;
        }
        self.total_distribution.probability_above(amount)
    }
}

/// Forecast the next `horizon` days from `history` (complete days, oldest first, non-negative values; the
/// caller excludes the current, incomplete day). horizon 0 gives an empty forecast with total 0.
///
/// Non-finite or negative values in `history` are read as 0. A horizon above [`MAX_HORIZON`] is shortened to it.
pub fn forecast(history: &[f64], horizon: usize) -> SpendForecast {
    let history: Vec<f64> = history.iter().map(|&v| if v.is_finite() && v > 0.0 { v } else { 0.0 }).collect();
    let n = history.len();
    let horizon = horizon.min(MAX_HORIZON);
    if n == 0 {
        return SpendForecast::point_only(
            Method::NoData,
            0,
            vec![0.0; horizon],
            "no usage data yet, so the forecast is 0".to_owned(),
        );
    }
    let based_on = format!("based on {n} {} of data", days(n));
    if horizon == 0 {
        return SpendForecast::point_only(
            Method::RunRate,
            n,
            Vec::new(),
            format!("{based_on}; nothing to forecast: the horizon is 0 days"),
        );
    }

    // After a level shift only the days since it say how spend behaves now.
    let regime = regime_start(&history);
    let all_days = history;
    let history = &all_days[regime..];
    let fitted = history.len();
    let based_on = if regime > 0 {
        format!("{based_on}, of which the last {fitted} are used: spend shifted to a new level {fitted} days ago")
    } else {
        based_on
    };

    let steps = horizon.max(SELECTION_HORIZON);
    let backtests: Vec<Backtest> =
        Method::CANDIDATES.iter().filter_map(|&method| Backtest::run(method, history, steps)).collect();
    let common_origin = backtests.iter().map(Backtest::first_origin).max().unwrap_or(n);
    let scores: Vec<BacktestScore> = backtests.iter().map(|b| b.score(history, common_origin)).collect();
    let ranking = rank(&scores);

    // The chosen model, or the next best if its final fit fails (rare: it fitted at every origin).
    for &i in &ranking {
        let method = scores[i].method;
        let Some(daily) = fit_predict(method, history, horizon) else { continue };
        let total: f64 = daily.iter().sum();
        let intervals = backtest_intervals(&backtests[i], horizon, total)
            .unwrap_or_else(|| model_intervals(history, horizon, total));
        let candidates: Vec<BacktestScore> = ranking.iter().map(|&j| scores[j].clone()).collect();
        let note = format!("{based_on}; {}; {}", choice_note(&scores[i], &candidates, fitted), intervals.note(horizon));
        return SpendForecast {
            method,
            days_of_data: n,
            fitted_days: fitted,
            horizon,
            daily,
            total,
            interval_80: intervals.i80,
            interval_95: intervals.i95,
            interval_source: intervals.source,
            backtest: Some(scores[i].clone()),
            candidates,
            note,
            total_error_samples: intervals.samples,
            total_distribution: intervals.distribution,
        };
    }

    // Nothing could be backtested: the run rate, which fits on any non-empty history.
    let daily = fit_predict(Method::RunRate, history, horizon).unwrap_or_else(|| vec![0.0; horizon]);
    let total: f64 = daily.iter().sum();
    let intervals = model_intervals(history, horizon, total);
    let reason =
        if backtests.is_empty() { "too little history to backtest" } else { "no backtested model could be fitted" };
    let note = format!(
        "{based_on}; {reason}, so the forecast is the average daily spend (run rate); {}",
        intervals.note(horizon)
    );
    SpendForecast {
        method: Method::RunRate,
        days_of_data: n,
        fitted_days: fitted,
        horizon,
        daily,
        total,
        interval_80: intervals.i80,
        interval_95: intervals.i95,
        interval_source: intervals.source,
        backtest: None,
        candidates: Vec::new(),
        note,
        total_error_samples: intervals.samples,
        total_distribution: intervals.distribution,
    }
}

impl SpendForecast {
    /// A forecast without any interval (no data, or nothing to forecast).
    fn point_only(method: Method, days_of_data: usize, daily: Vec<f64>, note: String) -> Self {
        let total: f64 = daily.iter().sum();
        let point = Interval { lower: total, upper: total };
        SpendForecast {
            method,
            days_of_data,
            fitted_days: days_of_data,
            horizon: daily.len(),
            daily,
            total,
            interval_80: point.clone(),
            interval_95: point,
            interval_source: IntervalSource::None,
            backtest: None,
            candidates: Vec::new(),
            note,
            total_error_samples: Vec::new(),
            total_distribution: TotalDistribution::Point { value: total },
        }
    }
}

fn days(n: usize) -> &'static str {
    if n == 1 { "day" } else { "days" }
}

/// Indices of `scores` (which are in [`Method::CANDIDATES`] order), the chosen one first, then the others by
/// MAE (simpler first on ties).
fn rank(scores: &[BacktestScore]) -> Vec<usize> {
    let Some(first) = scores.first() else { return Vec::new() };
    let mut chosen = 0;
    let mut chosen_mae = first.mae;
    for (i, s) in scores.iter().enumerate().skip(1) {
        if s.mae < chosen_mae * (1.0 - SELECTION_MARGIN) {
            chosen = i;
            chosen_mae = s.mae;
        }
    }
    let mut rest: Vec<usize> = (0..scores.len()).filter(|&i| i != chosen).collect();
    rest.sort_by(|&a, &b| scores[a].mae.total_cmp(&scores[b].mae).then(a.cmp(&b)));
    std::iter::once(chosen).chain(rest).collect()
}

fn choice_note(chosen: &BacktestScore, candidates: &[BacktestScore], n: usize) -> String {
    let error = match chosen.mape {
        Some(mape) => format!("typical daily error {mape:.0}%"),
        None => "no past spend to compare with".to_owned(),
    };
    let forecasts = format!("{} past forecast{}", chosen.origins, if chosen.origins == 1 { "" } else { "s" });
    let mut note = if candidates.len() == 1 {
        format!("the forecast is {}, checked against {forecasts} ({error})", chosen.method.label())
    } else {
        format!(
            "the forecast uses {}, which forecast the past best of {} methods ({forecasts}, {error})",
            chosen.method.label(),
            candidates.len()
        )
    };
    if let Some(next) = Method::CANDIDATES.iter().find(|m| m.min_backtest_history() + MIN_ORIGINS > n) {
        let more = next.min_backtest_history() + MIN_ORIGINS - n;
        note.push_str(&format!("; {} more {} of data will allow {}", more, days(more), next.label()));
    }
    note
}

/// Spacing of backtest origins: every day, or every [`LONG_HISTORY_ORIGIN_STEP`] days when the history is long
/// enough that even the seasonal ETS gets [`MAX_ORIGINS`] origins so. The wider spacing makes the backtest span
/// more weeks, so its errors overlap less and say more about the spread of future totals.
fn origin_step(n: usize) -> usize {
    if n >= Method::SeasonalEts.min_backtest_history() + LONG_HISTORY_ORIGIN_STEP * MAX_ORIGINS {
        LONG_HISTORY_ORIGIN_STEP
    } else {
        1
    }
}

/// A candidate's rolling-origin backtest.
struct Backtest {
    method: Method,
    /// Forecast origins (days of history fitted on), most recent first. Every candidate uses the same grid.
    origins: Vec<usize>,
    /// `errors[i][k - 1]` is actual − forecast on day `k` after `origins[i]`, for as many days as have actuals
    /// (at most the backtest's steps).
    errors: Vec<Vec<f64>>,
}

impl Backtest {
    /// Backtest `method` on the last [`MAX_ORIGINS`] origins, forecasting `steps` days at each. None if it has
    /// fewer than [`MIN_ORIGINS`] origins or fails to fit at any of them.
    fn run(method: Method, history: &[f64], steps: usize) -> Option<Backtest> {
        let n = history.len();
        let origins: Vec<usize> = (1..n)
            .rev()
            .step_by(origin_step(n))
            .take_while(|&t| t >= method.min_backtest_history())
            .take(MAX_ORIGINS)
            .collect();
        if origins.len() < MIN_ORIGINS {
            return None;
        }
        let mut errors = Vec::with_capacity(origins.len());
        for &t in &origins {
            let ahead = steps.min(n - t);
            let Some(predicted) = fit_predict(method, &history[..t], ahead) else {
                tracing::debug!(?method, origin = t, "forecast candidate dropped: it failed to fit in the backtest");
                return None;
            };
            errors.push(history[t..t + ahead].iter().zip(&predicted).map(|(a, f)| a - f).collect());
        }
        Some(Backtest { method, origins, errors })
    }

    /// Earliest origin.
    fn first_origin(&self) -> usize {
        self.origins.last().copied().unwrap_or(usize::MAX)
    }

    /// MAE and MAPE at horizons `1..=SELECTION_HORIZON` over the origins from `from_origin` on, each origin
    /// weighted by its recency: `2^(−(t_last − t) / SELECTION_HALF_LIFE)`, so that how a model did lately counts
    /// more than how it did at the start of the history.
    fn score(&self, history: &[f64], from_origin: usize) -> BacktestScore {
        let last = self.origins.first().copied().unwrap_or(0);
        let (mut abs_sum, mut weights, mut pct_sum, mut pct_weights, mut origins) = (0.0, 0.0, 0.0, 0.0, 0);
        for (&t, errors) in self.origins.iter().zip(&self.errors).filter(|(t, _)| **t >= from_origin) {
            origins += 1;
            let w = (-((last - t) as f64) / SELECTION_HALF_LIFE).exp2();
            for (k, e) in errors.iter().take(SELECTION_HORIZON).enumerate() {
                abs_sum += w * e.abs();
                weights += w;
                let actual = history[t + k];
                if actual > 0.0 {
                    pct_sum += w * e.abs() / actual;
                    pct_weights += w;
                }
            }
        }
        BacktestScore {
            method: self.method,
            mae: if weights > 0.0 { abs_sum / weights } else { 0.0 },
            mape: (pct_weights > 0.0).then(|| 100.0 * pct_sum / pct_weights),
            origins,
        }
    }

    /// (origin, cumulative error over the first `k` days) for every origin with `k` days of actuals.
    fn cumulative_errors(&self, k: usize) -> Vec<(usize, f64)> {
        self.origins
            .iter()
            .zip(&self.errors)
            .filter(|(_, e)| e.len() >= k)
            .map(|(t, e)| (*t, e[..k].iter().sum()))
            .collect()
    }
}

/// Isolated outliers in `history`, as (day, replacement). A day is an outlier if it differs from the median of
/// the same weekday one to three weeks before and after (those that exist, at least three) by more than
/// [`OUTLIER_THRESHOLD`] robust standard deviations (1.4826 × the median absolute difference over all days).
/// Only isolated outliers count: neither neighbouring day may be an outlier in the same direction, and the last
/// day never counts, because the start of a level shift looks like a spike until the next day. Nothing is
/// flagged with fewer than four weeks of history, with no spread at all (e.g. mostly zero days), or when more
/// than [`OUTLIER_MAX_SHARE`] of the days would be flagged (then the jumps are how the series behaves).
fn isolated_outliers(history: &[f64]) -> Vec<(usize, f64)> {
    let n = history.len();
    if n < 4 * SEASON {
        return Vec::new();
    }
    let references: Vec<f64> = (0..n)
        .map(|i| {
            let same_weekday: Vec<f64> = (1..=3)
                .flat_map(|w| [i.checked_sub(w * SEASON), Some(i + w * SEASON)])
                .flatten()
                .filter_map(|j| history.get(j).copied())
                .collect();
            median(same_weekday)
        })
        .collect();
    let deviations: Vec<f64> = history.iter().zip(&references).map(|(y, r)| y - r).collect();
    let scale = 1.4826 * median(deviations.iter().map(|d| d.abs()).collect());
    if scale.is_nan() || scale <= 0.0 {
        return Vec::new();
    }
    let direction = |i: usize| {
        let z = deviations[i] / scale;
        if z > OUTLIER_THRESHOLD {
            1
        } else if z < -OUTLIER_THRESHOLD {
            -1
        } else {
            0
        }
    };
    let outliers: Vec<(usize, f64)> = (0..n - 1)
        .filter(|&i| {
            let d = direction(i);
            d != 0 && (i == 0 || direction(i - 1) != d) && direction(i + 1) != d
        })
        .map(|i| (i, references[i]))
        .collect();
    if outliers.len() as f64 > OUTLIER_MAX_SHARE * n as f64 { Vec::new() } else { outliers }
}

/// Where the current regime of `history` starts: the day of the most recent level shift, or 0 if there is
/// none (see the module docs). A shift is only seen once a full week has passed since it, and only with at
/// least [`SHIFT_MIN_HISTORY`] days of history.
///
/// With `d(t) = y(t) − y(t − 7)` (weekly differences, free of the weekly pattern and, up to a constant, of a
/// linear trend), a shift by `Δ` on day `s` makes `d` about `Δ` on the seven days `s..s + 7` and leaves it
/// about the same constant elsewhere. So for each `s` the mean and the median of `d` over `s..s + 7`, minus the
/// median of all `d`, are compared with their standard errors under no shift (`σ / √7` for the mean, `1.25 σ
/// / √7` for the median, `σ` the spread of `d` estimated as 1.2533 × its mean absolute deviation from the
/// median, which is robust enough to a few shifted days and, unlike the median absolute deviation, not 0 on
/// series with many zero days). A day is a candidate if both exceed [`SHIFT_THRESHOLD`] in the same direction:
/// the median keeps one or two spikes from passing for a shift, the mean keeps sparse series (where most `d`
/// are 0) from passing for one. Of the most recent run of consecutive candidates, the day with the largest
/// mean is the shift.
fn regime_start(history: &[f64]) -> usize {
    let n = history.len();
    if n < SHIFT_MIN_HISTORY {
        return 0;
    }
    let d: Vec<f64> = (SEASON..n).map(|t| history[t] - history[t - SEASON]).collect();
    let centre = median(d.clone());
    let deviations: Vec<f64> = d.iter().map(|x| (x - centre).abs()).collect();
    let total_deviation: f64 = deviations.iter().sum();
    let root = (SEASON as f64).sqrt();
    // Score of a shift on day s (d[i] is day i + SEASON), positive up, negative down, 0 if not a candidate.
    let score = |s: usize| -> f64 {
        let window = &d[s - SEASON..s];
        // The spread of d outside the window: the shift itself must not make it look like noise.
        let outside = total_deviation - deviations[s - SEASON..s].iter().sum::<f64>();
        let sigma = 1.2533 * outside / (d.len() - SEASON) as f64;
        if !(sigma > 0.0 && sigma.is_finite()) {
            // No spread outside the window: any change of the weekly differences in it is a shift.
            let change = window.iter().sum::<f64>() / SEASON as f64 - centre;
            let med = median(window.to_vec()) - centre;
            return if change != 0.0 && med.signum() == change.signum() && med != 0.0 { change } else { 0.0 };
        }
        let mean = (window.iter().sum::<f64>() / SEASON as f64 - centre) / (sigma / root);
        let med = (median(window.to_vec()) - centre) / (1.25 * sigma / root);
        if mean.abs() > SHIFT_THRESHOLD && med.abs() > SHIFT_THRESHOLD && mean.signum() == med.signum() {
            mean
        } else {
            0.0
        }
    };
    // A shift on day s is seen in d over days s..s + 7, which needs a week before s and a week from s on.
    let scores: Vec<(usize, f64)> = (SEASON..=n - SEASON).map(|s| (s, score(s))).collect();
    let Some(last) = scores.iter().rposition(|(_, z)| *z != 0.0) else { return 0 };
    let direction = scores[last].1.signum();
    let mut best = scores[last];
    for &(s, z) in scores[..last].iter().rev() {
        if z == 0.0 || z.signum() != direction {
            break;
        }
        if z.abs() > best.1.abs() {
            best = (s, z);
        }
    }
    best.0
}

/// How many of the last `n` days the run rate averages: [`RUN_RATE_WINDOW`] at most, and whole weeks once
/// there is one, so that the weekly pattern does not tilt the average (ten days would count three weekdays
/// twice).
fn run_rate_days(n: usize) -> usize {
    if n < SEASON { n } else { n.min(RUN_RATE_WINDOW) / SEASON * SEASON }
}

/// Median of a non-empty list (0 for an empty one).
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 }
}

/// Point forecasts of `method` fitted on `history` with its isolated outliers replaced (see
/// [`isolated_outliers`]), `steps` days ahead, clamped at 0. None if the method cannot be fitted on this
/// history or gives a non-finite or implausible forecast.
fn fit_predict(method: Method, history: &[f64], steps: usize) -> Option<Vec<f64>> {
    let n = history.len();
    if n < method.min_history() {
        return None;
    }
    let largest = history.iter().copied().fold(0.0, f64::max);
    let mut cleaned = history.to_vec();
    for (i, replacement) in isolated_outliers(history) {
        cleaned[i] = replacement;
    }
    let history = &cleaned[..];
    let raw = match method {
        Method::NoData => vec![0.0; steps],
        Method::RunRate => {
            let window = &history[n - run_rate_days(n)..];
            vec![window.iter().sum::<f64>() / window.len() as f64; steps]
        }
        Method::SeasonalNaive => (0..steps).map(|i| history[n - SEASON + i % SEASON]).collect(),
        Method::DampedTrend => match damped_trend(history, steps) {
            Ok(points) => points,
            Err(error) => {
                tracing::debug!(%error, "damped trend failed to fit");
                return None;
            }
        },
        Method::SeasonalEts => match seasonal_ets(history, steps) {
            Ok(points) => points,
            Err(error) => {
                tracing::debug!(%error, "seasonal ETS failed to fit");
                return None;
            }
        },
    };
    if raw.len() != steps || raw.iter().any(|v| !v.is_finite() || *v > PLAUSIBLE_FACTOR * largest) {
        tracing::debug!(?method, "forecast discarded: not finite, or implausibly large");
        return None;
    }
    Some(raw.into_iter().map(|v| v.max(0.0)).collect())
}

/// ETS(A,Ad,N): additive errors, additive damped trend, no season (augurs-ets).
fn damped_trend(history: &[f64], steps: usize) -> Result<Vec<f64>, augurs_ets::Error> {
    let model = AutoETS::new(1, "AAN")?.damped(true)?;
    Ok(model.fit(history)?.predict(steps, None)?.point)
}

/// MSTL with a weekly season; the deseasonalised series is forecast by AutoETS (augurs-mstl, augurs-ets).
fn seasonal_ets(history: &[f64], steps: usize) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let model = MSTLModel::new(vec![SEASON], AutoETS::new(1, "AZN")?.into_trend_model());
    Ok(model.fit(history)?.predict(steps, None)?.point)
}

/// The distribution of the actual future total that the intervals and probabilities are read from.
#[derive(Debug, Clone, PartialEq)]
pub enum TotalDistribution {
    /// Nothing is known about the spread: the total is taken to be exactly this value.
    Point { value: f64 },
    /// Normal: the approximation from the day-to-day spread of a short history.
    Normal { mean: f64, sd: f64 },
    /// Location–scale Student-t fitted to backtest errors (see the module docs).
    StudentT { location: f64, scale: f64, dof: f64 },
    /// The backtest errors dressed with Student-t kernels: the average of Student-t distributions of this
    /// scale and degrees of freedom centred at the point forecast plus each error (see the module docs).
    Dressed { centres: Vec<f64>, scale: f64, dof: f64 },
}

impl TotalDistribution {
    /// A normal, or a point if the spread is 0 or not finite.
    fn normal(mean: f64, sd: f64) -> Self {
        if sd > 0.0 && sd.is_finite() { Self::Normal { mean, sd } } else { Self::Point { value: mean } }
    }

    /// A Student-t, or a point if the scale is 0 or a parameter is not usable.
    fn student_t(location: f64, scale: f64, dof: f64) -> Self {
        if scale > 0.0 && scale.is_finite() && dof > 0.0 && dof.is_finite() {
            Self::StudentT { location, scale, dof }
        } else {
            Self::Point { value: location }
        }
    }

    /// The value below which the total falls with probability `p` (0 < p < 1).
    pub fn quantile(&self, p: f64) -> f64 {
        let q = match self {
            Self::Point { value } => *value,
            Self::Normal { mean, sd } => Normal::new(*mean, *sd).map_or(*mean, |d| d.inverse_cdf(p)),
            Self::StudentT { location, scale, dof } => {
                StudentsT::new(*location, *scale, *dof).map_or(*location, |d| d.inverse_cdf(p))
            }
            Self::Dressed { centres, scale, dof } => {
                // The mixture's CDF is increasing: bisect between quantiles of its outermost components.
                let Ok(kernel) = StudentsT::new(0.0, *scale, *dof) else { return self.centre() };
                let low = centres.iter().copied().fold(f64::INFINITY, f64::min) + kernel.inverse_cdf(p.min(0.5));
                let high = centres.iter().copied().fold(f64::NEG_INFINITY, f64::max) + kernel.inverse_cdf(p.max(0.5));
                let (mut low, mut high) = (low, high);
                for _ in 0..QUANTILE_ITERATIONS {
                    let mid = 0.5 * (low + high);
                    if 1.0 - self.probability_above(mid) < p { low = mid } else { high = mid }
                }
                0.5 * (low + high)
            }
        };
        if q.is_finite() { q } else { self.centre() }
    }

    /// Probability that the total exceeds `amount`.
    pub fn probability_above(&self, amount: f64) -> f64 {
        let p = match self {
            Self::Point { value } => f64::from(*value > amount),
            Self::Normal { mean, sd } => Normal::new(*mean, *sd).map_or(f64::NAN, |d| d.sf(amount)),
            Self::StudentT { location, scale, dof } => {
                StudentsT::new(*location, *scale, *dof).map_or(f64::NAN, |d| d.sf(amount))
            }
            Self::Dressed { centres, scale, dof } => StudentsT::new(0.0, *scale, *dof).map_or(f64::NAN, |kernel| {
                centres.iter().map(|c| kernel.sf(amount - c)).sum::<f64>() / centres.len() as f64
            }),
        };
        if p.is_finite() { p.clamp(0.0, 1.0) } else { f64::from(self.centre() > amount) }
    }

    fn centre(&self) -> f64 {
        match self {
            Self::Point { value } => *value,
            Self::Normal { mean, .. } => *mean,
            Self::StudentT { location, .. } => *location,
            Self::Dressed { centres, .. } => centres.iter().sum::<f64>() / centres.len().max(1) as f64,
        }
    }
}

/// Intervals for a total and where they came from.
struct TotalIntervals {
    i80: Interval,
    i95: Interval,
    source: IntervalSource,
    distribution: TotalDistribution,
    samples: Vec<f64>,
}

impl TotalIntervals {
    fn new(total: f64, distribution: TotalDistribution, source: IntervalSource, samples: Vec<f64>) -> Self {
        let q = |p: f64| distribution.quantile(p);
        TotalIntervals {
            i80: bounded(total, q(0.10), q(0.90)),
            i95: bounded(total, q(0.025), q(0.975)),
            source,
            distribution,
            samples,
        }
    }

    fn note(&self, horizon: usize) -> String {
        match &self.source {
            IntervalSource::Backtest { origins } => format!(
                "the ranges come from the errors of {origins} past {horizon}-day forecasts, widened for how few \
                 separate periods they cover"
            ),
            IntervalSource::ScaledBacktest { from_horizon, origins } => format!(
                "the ranges come from the errors of {origins} past {from_horizon}-day forecasts, widened for \
                 {horizon} days and for how few separate periods they cover"
            ),
            IntervalSource::Model => "too few past forecasts to judge the error, so the ranges assume days keep \
                                      varying as much as they have (normal approximation)"
                .to_owned(),
            IntervalSource::None => {
                "one day of data says nothing about how spend varies, so there is no range".to_owned()
            }
        }
    }
}

/// Intervals from the chosen model's backtest errors, if there are enough of them: at the horizon itself, or
/// else at the longest shorter span `k` that has enough, scaled by `(horizon / k)^β` with `β` the growth of the
/// error with the span on this series ([`error_growth`]).
fn backtest_intervals(backtest: &Backtest, horizon: usize, total: f64) -> Option<TotalIntervals> {
    (1..=horizon).rev().find_map(|k| {
        let (origins, errors): (Vec<usize>, Vec<f64>) = backtest.cumulative_errors(k).into_iter().unzip();
        let m_eff = effective_windows(&origins, k);
        if errors.len() < MIN_INTERVAL_SAMPLES || m_eff < MIN_EFFECTIVE_WINDOWS {
            return None;
        }
        let scale = if k == horizon { 1.0 } else { (horizon as f64 / k as f64).powf(error_growth(backtest, k)) };
        let samples: Vec<f64> = errors.iter().map(|e| e * scale).collect();
        let distribution = dress(total, &samples, fit_student_t(total, &samples, &origins, k)?);
        let source = if k == horizon {
            IntervalSource::Backtest { origins: samples.len() }
        } else {
            IntervalSource::ScaledBacktest { from_horizon: k, origins: samples.len() }
        };
        Some(TotalIntervals::new(total, distribution, source, samples))
    })
}

/// How the backtest's error of the total grows with the span: the exponent `β` of `rms(k) ∝ k^β`, where
/// `rms(j)` is the root mean square of the cumulative errors over the first `j` days, fitted by least squares on
/// `log rms(j)` against `log j` over the upper half of the spans (`j` from `min(⌈k/2⌉, k − 2)` to `k`, so at
/// least three when `k ≥ 3`), and kept within [`MIN_ERROR_GROWTH`]..=[`MAX_ERROR_GROWTH`]:
/// independent day errors give ½, a persistent level error 1, an error in the trend 2. With fewer than three
/// spans (or no spread), 1: an error in the level is what a forecast gets wrong first.
fn error_growth(backtest: &Backtest, k: usize) -> f64 {
    let points: Vec<(f64, f64)> = (k.div_ceil(2).min(k.saturating_sub(2)).max(1)..=k)
        .filter_map(|j| {
            let errors = backtest.cumulative_errors(j);
            let mean_square = errors.iter().map(|(_, e)| e * e).sum::<f64>() / errors.len().max(1) as f64;
            (mean_square > 0.0).then(|| ((j as f64).ln(), 0.5 * mean_square.ln()))
        })
        .collect();
    if points.len() < 3 {
        return 1.0;
    }
    let m = points.len() as f64;
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / m, points.iter().map(|p| p.1).sum::<f64>() / m);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let beta = sxy / sxx;
    if beta.is_finite() { beta.clamp(MIN_ERROR_GROWTH, MAX_ERROR_GROWTH) } else { 1.0 }
}

/// How many independent samples `k`-day cumulative errors at these origins are worth. Windows of `k` days
/// that start `d` days apart share `k − d` days; with independent day errors their correlation is
/// `max(0, 1 − d / k)`, and the effective size is `m² / Σᵢ Σⱼ ρᵢⱼ`.
fn effective_windows(origins: &[usize], k: usize) -> f64 {
    let m = origins.len() as f64;
    let correlation_sum: f64 = origins
        .iter()
        .flat_map(|a| origins.iter().map(move |b| (1.0 - a.abs_diff(*b) as f64 / k as f64).max(0.0)))
        .sum();
    if correlation_sum > 0.0 { m * m / correlation_sum } else { 0.0 }
}

/// Student-t for the actual total from `samples` of (actual − forecast) of the total, at `origins`, each over
/// `k` days: location `total + mean`, and the textbook prediction interval for one more draw from a normal
/// sample (`s · sqrt(1 + 1/m)`), with the sample size `m` replaced by the effective number of independent
/// windows and `s` corrected for the overlap; [`OVERLAP_DOF_FACTOR`] × (effective windows − 1) degrees of
/// freedom, at most `m − 1`. None if there are fewer than
/// [`MIN_INTERVAL_SAMPLES`] samples or fewer than [`MIN_EFFECTIVE_WINDOWS`] independent windows.
fn fit_student_t(total: f64, samples: &[f64], origins: &[usize], k: usize) -> Option<TotalDistribution> {
    let m = samples.len();
    let m_eff = effective_windows(origins, k);
    if m < MIN_INTERVAL_SAMPLES || m_eff < MIN_EFFECTIVE_WINDOWS {
        return None;
    }
    let mean = samples.iter().sum::<f64>() / m as f64;
    let squares: f64 = samples.iter().map(|e| (e - mean).powi(2)).sum();
    // E[Σ (eᵢ − ē)²] = σ² (m − m / m_eff) for correlated samples (m − 1 when independent).
    let variance = squares / (m as f64 - m as f64 / m_eff);
    let scale = (variance * (1.0 + 1.0 / m_eff)).sqrt();
    // Overlapping windows estimate the variance better than the m_eff disjoint ones they are worth for the
    // mean: 3/2 the degrees of freedom when they overlap fully (overlapping batch means), never more than m − 1.
    let dof = (OVERLAP_DOF_FACTOR * (m_eff - 1.0)).min(m as f64 - 1.0);
    Some(TotalDistribution::student_t(total + mean, scale, dof))
}

/// The backtest errors themselves, dressed with Student-t kernels, instead of the Student-t fitted to them: a
/// kernel at `total + e` for every sample `e`, all with the fitted degrees of freedom `ν` and a scale `b` chosen
/// so that the mixture has the fitted distribution's variance, `v + b² ν/(ν − 2) = scale² ν/(ν − 2)` with `v`
/// the plain variance of the samples (with `ν ≤ 2` there is no variance to match, and the fit is kept). The mixture has the samples' skew (a total that is usually a little below the
/// forecast and sometimes far above, as with sparse spend) and the fit's width; with many independent windows
/// `b` shrinks and the mixture tends to the samples' empirical distribution.
fn dress(total: f64, samples: &[f64], fitted: TotalDistribution) -> TotalDistribution {
    let TotalDistribution::StudentT { scale, dof, .. } = fitted else { return fitted };
    if dof <= 2.0 {
        // No finite variance to match: the fitted Student-t as it is.
        return fitted;
    }
    let m = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / m;
    let variance = samples.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / m;
    let t_variance = dof / (dof - 2.0);
    let kernel = ((scale * scale * t_variance - variance) / t_variance).max(0.0).sqrt();
    if !(kernel > 0.0 && kernel.is_finite()) {
        return fitted;
    }
    TotalDistribution::Dressed { centres: samples.iter().map(|e| total + e).collect(), scale: kernel, dof }
}

/// Normal approximation from the day-to-day spread of the history; no interval with a single day.
fn model_intervals(history: &[f64], horizon: usize, total: f64) -> TotalIntervals {
    let n = history.len();
    if n < 2 {
        return TotalIntervals::new(total, TotalDistribution::Point { value: total }, IntervalSource::None, Vec::new());
    }
    let sd = day_noise(history);
    let averaged_days = run_rate_days(n) as f64;
    let h = horizon as f64;
    let sd_total = sd * (h * (1.0 + h / averaged_days)).sqrt();
    TotalIntervals::new(total, TotalDistribution::normal(total, sd_total), IntervalSource::Model, Vec::new())
}

/// Spread of a day around what a forecast can know: from two weeks of history on, the standard deviation of the
/// weekly differences `y(t) − y(t − 7)` over √2 (the weekly pattern and a level or trend cancel in them, the
/// noise of two days adds up), else the plain standard deviation of the days.
fn day_noise(history: &[f64]) -> f64 {
    let n = history.len();
    let spread = |values: &[f64]| {
        let m = values.len() as f64;
        let mean = values.iter().sum::<f64>() / m;
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (m - 1.0)).sqrt()
    };
    if n >= 2 * SEASON {
        let weekly: Vec<f64> = (SEASON..n).map(|t| history[t] - history[t - SEASON]).collect();
        spread(&weekly) / std::f64::consts::SQRT_2
    } else {
        spread(history)
    }
}

/// An interval that contains the point, never goes below 0 and is finite.
fn bounded(point: f64, lower: f64, upper: f64) -> Interval {
    let finite_or = |v: f64| if v.is_finite() { v } else { point };
    Interval { lower: finite_or(lower).min(point).max(0.0), upper: finite_or(upper).max(point) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    /// Standard normal draw (Box–Muller).
    fn gaussian(rng: &mut StdRng) -> f64 {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn weekly(t: usize, amplitude: f64) -> f64 {
        1.0 + amplitude * (std::f64::consts::TAU * t as f64 / 7.0).sin()
    }

    /// Level 1000, linear trend, weekly seasonality ±30 %, noise sd 5 % of the level.
    fn structured(seed: u64, n: usize) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|t| {
                let level = 1000.0 + 5.0 * t as f64;
                (level * weekly(t, 0.3) + 0.05 * level * gaussian(&mut rng)).max(0.0)
            })
            .collect()
    }

    /// Level 1000 that jumps to 1600 at `shift`, weekly ±20 %, noise 5 %.
    fn level_shift(seed: u64, n: usize, shift: usize) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|t| {
                let level = if t < shift { 1000.0 } else { 1600.0 };
                (level * weekly(t, 0.2) + 0.05 * level * gaussian(&mut rng)).max(0.0)
            })
            .collect()
    }

    /// Level 1000, weekly ±20 %, noise 5 %, and a spike (×4) on about one day in 25.
    fn spiky(seed: u64, n: usize) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|t| {
                let spike = if rng.random::<f64>() < 0.04 { 4.0 } else { 1.0 };
                (1000.0 * weekly(t, 0.2) * spike + 50.0 * gaussian(&mut rng)).max(0.0)
            })
            .collect()
    }

    /// Flat level with count-like noise (sd 15 %), no season: the kind of series a quiet account has.
    fn flat_noisy(seed: u64, n: usize) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| (400.0 + 60.0 * gaussian(&mut rng)).max(0.0)).collect()
    }

    /// Business use: weekdays around 800 with sd 10 %, weekends near 0 (Poisson-like small counts).
    fn weekdays_only(seed: u64, n: usize) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|t| {
                if t % 7 < 5 {
                    (800.0 + 80.0 * gaussian(&mut rng)).max(0.0)
                } else {
                    (rng.random::<f64>() * 10.0).floor()
                }
            })
            .collect()
    }

    fn assert_well_formed(f: &SpendForecast) {
        let mut numbers =
            vec![f.total, f.interval_80.lower, f.interval_80.upper, f.interval_95.lower, f.interval_95.upper];
        numbers.extend(&f.daily);
        numbers.extend(&f.total_error_samples);
        for s in f.backtest.iter().chain(&f.candidates) {
            numbers.push(s.mae);
            numbers.extend(s.mape);
        }
        assert!(numbers.iter().all(|v| v.is_finite()), "non-finite value in {f:#?}");
        assert!(f.daily.iter().all(|v| *v >= 0.0), "negative day in {f:#?}");
        assert_eq!(f.daily.len(), f.horizon);
        assert!((f.total - f.daily.iter().sum::<f64>()).abs() <= 1e-9 * f.total.abs().max(1.0));
        let (i80, i95) = (&f.interval_80, &f.interval_95);
        assert!(i95.lower >= 0.0 && i95.lower <= i80.lower, "{f:#?}");
        assert!(i80.lower <= f.total && f.total <= i80.upper, "{f:#?}");
        assert!(i80.upper <= i95.upper, "{f:#?}");
        for amount in [0.0, f.total, 2.0 * f.total + 1.0] {
            let p = f.probability_total_exceeds(amount);
            assert!((0.0..=1.0).contains(&p), "probability {p} for {amount}");
        }
        assert!(serde_json::to_value(f).is_ok());
    }

    #[test]
    fn little_data_gives_a_run_rate_and_says_so() {
        let f = forecast(&[], 7);
        assert_well_formed(&f);
        assert_eq!((f.method, f.total, f.interval_source.clone()), (Method::NoData, 0.0, IntervalSource::None));
        assert!(f.note.contains("no usage data"), "{}", f.note);

        let f = forecast(&[500.0], 7);
        assert_well_formed(&f);
        assert_eq!((f.method, f.total, f.interval_source.clone()), (Method::RunRate, 3500.0, IntervalSource::None));
        assert!(f.note.contains("based on 1 day of data"), "{}", f.note);
        assert_eq!(f.probability_total_exceeds(3000.0), 1.0);
        assert_eq!(f.probability_total_exceeds(4000.0), 0.0);

        let f = forecast(&[300.0, 500.0, 400.0], 7);
        assert_well_formed(&f);
        assert_eq!((f.method, f.total, f.interval_source.clone()), (Method::RunRate, 2800.0, IntervalSource::Model));
        assert!(f.note.contains("based on 3 days of data; too little history to backtest"), "{}", f.note);
        assert!(f.backtest.is_none() && f.candidates.is_empty());
        assert!(f.interval_80.lower < f.total && f.interval_95.upper > f.interval_80.upper);

        let six = [300.0, 500.0, 400.0, 450.0, 380.0, 420.0];
        let f = forecast(&six, 7);
        assert_well_formed(&f);
        assert_eq!(f.method, Method::RunRate);
        assert!(f.note.contains("based on 6 days of data"), "{}", f.note);
        assert_eq!(f.backtest.as_ref().map(|b| b.origins), Some(3), "run rate is backtested from day 3 on");
        assert_eq!(f.interval_source, IntervalSource::Model, "3 origins are too few for empirical intervals");
    }

    #[test]
    fn zero_horizon_is_empty() {
        let f = forecast(&structured(1, 30), 0);
        assert_well_formed(&f);
        assert!(f.daily.is_empty() && f.total == 0.0);
        assert_eq!(f.probability_total_exceeds(1.0), 0.0);
    }

    #[test]
    fn all_zero_series_forecasts_zero() {
        for n in [1, 2, 5, 12, 30, 90] {
            let f = forecast(&vec![0.0; n], 14);
            assert_well_formed(&f);
            assert_eq!(f.total, 0.0, "n = {n}: {f:#?}");
            assert_eq!(f.interval_95.upper, 0.0, "n = {n}");
            for amount in [1e-9, 1.0, 1e6] {
                assert_eq!(f.probability_total_exceeds(amount), 0.0, "n = {n}, amount {amount}");
            }
            if n >= 6 {
                assert!(f.candidates.iter().all(|c| c.mape.is_none() && c.mae == 0.0), "{f:#?}");
            }
        }
    }

    #[test]
    fn bad_values_and_odd_series_never_give_nan() {
        let odd: Vec<Vec<f64>> = vec![
            vec![f64::NAN, -5.0, f64::INFINITY, 100.0],
            vec![700.0; 40],
            (0..40).map(|t| if t % 7 == 0 { 1000.0 } else { 0.0 }).collect(),
            (0..60).map(|t| if t < 50 { 0.0 } else { 200.0 }).collect(),
            (0..60).map(|t| if t < 50 { 500.0 } else { 0.0 }).collect(),
            (0..30).map(|t| 1e9 * (1.0 + (t % 3) as f64)).collect(),
        ];
        for series in odd {
            for horizon in [1, 7, 31] {
                assert_well_formed(&forecast(&series, horizon));
            }
        }
        let flat = forecast(&[700.0; 40], 7);
        assert_eq!(flat.total, 4900.0);
        assert_eq!(flat.method, Method::RunRate, "ties go to the simplest model");
    }

    #[test]
    fn candidates_grow_with_history() {
        let methods = |n: usize| -> Vec<Method> {
            let mut m: Vec<Method> = forecast(&structured(3, n), 7).candidates.iter().map(|c| c.method).collect();
            m.sort_by_key(|m| Method::CANDIDATES.iter().position(|c| c == m));
            m
        };
        assert_eq!(methods(5), vec![]);
        assert_eq!(methods(9), vec![Method::RunRate]);
        assert_eq!(methods(10), vec![Method::RunRate, Method::SeasonalNaive]);
        assert_eq!(methods(13), vec![Method::RunRate, Method::SeasonalNaive, Method::DampedTrend]);
        assert_eq!(methods(24), Method::CANDIDATES.to_vec());
        let f = forecast(&structured(3, 90), 7);
        assert!(f.candidates.iter().all(|c| c.origins == MAX_ORIGINS), "{:#?}", f.candidates);
        assert_eq!(f.backtest.as_ref().map(|b| b.method), Some(f.method));
        assert_eq!(f.candidates[0].method, f.method, "best first");
        assert!(f.note.contains("based on 90 days of data"), "{}", f.note);
    }

    /// MAPE over the 14 days after each training window: (chosen model, seasonal naive).
    fn holdout_mape(series: &[f64], train: usize, starts: &[usize]) -> (f64, f64, Vec<Method>) {
        let (mut chosen, mut naive, mut count, mut methods) = (0.0, 0.0, 0, Vec::new());
        for &s in starts {
            let history = &series[s..s + train];
            let actual = &series[s + train..s + train + 14];
            let f = forecast(history, 14);
            assert_well_formed(&f);
            methods.push(f.method);
            let sn: Vec<f64> = (0..14).map(|k| history[history.len() - 7 + k % 7]).collect();
            for (k, a) in actual.iter().enumerate() {
                chosen += (a - f.daily[k]).abs() / a;
                naive += (a - sn[k]).abs() / a;
                count += 1;
            }
        }
        (100.0 * chosen / count as f64, 100.0 * naive / count as f64, methods)
    }

    #[test]
    fn chosen_model_beats_seasonal_naive_where_there_is_structure() {
        let starts = [0, 5, 10, 15, 20];
        let (mut chosen, mut naive) = (0.0, 0.0);
        let mut methods = Vec::new();
        for seed in [11, 12, 13] {
            let (c, s, m) = holdout_mape(&structured(seed, 90 + 14 + 20), 90, &starts);
            chosen += c / 3.0;
            naive += s / 3.0;
            methods.extend(m);
        }
        assert!(chosen < naive, "trend + season: chosen MAPE {chosen:.2}% vs seasonal naive {naive:.2}% ({methods:?})");
        eprintln!("trend + season: chosen MAPE {chosen:.2}% vs seasonal naive {naive:.2}% ({methods:?})");
    }

    #[test]
    fn chosen_model_holds_up_on_level_shifts_and_spikes() {
        let starts = [0, 5, 10, 15, 20];
        for (name, series) in [
            ("level shift", level_shift(21, 90 + 14 + 20, 80)),
            ("level shift early", level_shift(22, 90 + 14 + 20, 60)),
            ("spikes", spiky(23, 90 + 14 + 20)),
            ("spikes 2", spiky(24, 90 + 14 + 20)),
        ] {
            let (chosen, naive, methods) = holdout_mape(&series, 90, &starts);
            eprintln!("{name}: chosen MAPE {chosen:.2}% vs seasonal naive {naive:.2}% ({methods:?})");
            assert!(
                chosen <= naive * 1.10 + 0.5,
                "{name}: chosen MAPE {chosen:.2}% vs seasonal naive {naive:.2}% ({methods:?})"
            );
        }
    }

    /// Several kinds of series, 130 days each, for calibration.
    fn calibration_series() -> Vec<(String, Vec<f64>)> {
        let n = 130;
        let mut series = Vec::new();
        for seed in [31, 32, 33, 34] {
            series.push((format!("trend+season {seed}"), structured(seed, n)));
        }
        for seed in [35, 36] {
            series.push((format!("flat noisy {seed}"), flat_noisy(seed, n)));
        }
        for seed in [37, 38] {
            series.push((format!("spiky {seed}"), spiky(seed, n)));
        }
        series.push(("level shift at day 70".into(), level_shift(39, n, 70)));
        series.push(("weekdays only".into(), weekdays_only(40, n)));
        series
    }

    #[test]
    fn interval_80_covers_about_80_percent() {
        let horizon = 7;
        let series = calibration_series();
        // Forecast from every other day between day 90 and the last day with 7 actuals after it.
        let results: Vec<(String, usize, usize, usize)> = std::thread::scope(|scope| {
            let handles: Vec<_> = series
                .iter()
                .map(|(name, y)| {
                    scope.spawn(move || {
                        let (mut hit80, mut hit95, mut count) = (0, 0, 0);
                        for t in (90..=y.len() - horizon).step_by(2) {
                            let f = forecast(&y[..t], horizon);
                            assert_well_formed(&f);
                            let actual: f64 = y[t..t + horizon].iter().sum();
                            hit80 += usize::from(f.interval_80.lower <= actual && actual <= f.interval_80.upper);
                            hit95 += usize::from(f.interval_95.lower <= actual && actual <= f.interval_95.upper);
                            count += 1;
                        }
                        (name.clone(), hit80, hit95, count)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let total: usize = results.iter().map(|r| r.3).sum();
        let rate80 = results.iter().map(|r| r.1).sum::<usize>() as f64 / total as f64;
        let rate95 = results.iter().map(|r| r.2).sum::<usize>() as f64 / total as f64;
        let per_series: Vec<String> = results.iter().map(|(n, h80, h95, c)| format!("{n}: {h80}/{h95}/{c}")).collect();
        let report = format!(
            "80% interval covered {rate80:.3}, 95% interval covered {rate95:.3} of {total} 7-day totals \
             (per series, 80%/95%/count: {per_series:?})"
        );
        eprintln!("{report}");
        assert!(total >= 100, "{report}");
        assert!((0.70..=0.90).contains(&rate80), "{report}");
        assert!(rate95 >= 0.85, "{report}");
    }

    #[test]
    fn probability_of_exceeding_is_monotone_and_sensible() {
        let f = forecast(&structured(41, 90), 7);
        assert!(matches!(f.interval_source, IntervalSource::Backtest { .. }), "{:?}", f.interval_source);
        let amounts: Vec<f64> = (0..=200).map(|i| f.total * (0.5 + i as f64 / 200.0)).collect();
        let probabilities: Vec<f64> = amounts.iter().map(|&a| f.probability_total_exceeds(a)).collect();
        assert!(probabilities.windows(2).all(|w| w[1] <= w[0]), "{probabilities:?}");
        assert!(f.probability_total_exceeds(0.0) > 0.999);
        assert!(f.probability_total_exceeds(f.total * 0.5) > 0.999);
        assert!(f.probability_total_exceeds(f.total * 2.0) < 0.001);
        assert_eq!(f.probability_total_exceeds(-1.0), 1.0);

        // Backtest errors that are nearly symmetric: about 0.5 at the point.
        let p = f.probability_total_exceeds(f.total);
        assert!((0.3..=0.7).contains(&p), "{p}");
        // The interval bounds are the distribution's quantiles.
        if f.interval_80.upper > f.total {
            assert!((f.probability_total_exceeds(f.interval_80.upper) - 0.10).abs() < 1e-6);
        }

        // Normal approximation (short history): 0.5 at the point, monotone, ~0/1 far away.
        let f = forecast(&[300.0, 500.0, 400.0, 450.0], 7);
        assert_eq!(f.interval_source, IntervalSource::Model);
        assert!((f.probability_total_exceeds(f.total) - 0.5).abs() < 1e-9);
        let p80 = f.probability_total_exceeds(f.interval_80.upper);
        assert!((p80 - 0.10).abs() < 1e-6, "the 80% upper bound is exceeded with probability 0.1, got {p80}");
        assert!(f.probability_total_exceeds(f.total * 0.2) > 0.999);
        assert!(f.probability_total_exceeds(f.total * 3.0) < 0.001);
        let ps: Vec<f64> = (0..100).map(|i| f.probability_total_exceeds(f.total * i as f64 / 40.0)).collect();
        assert!(ps.windows(2).all(|w| w[1] <= w[0]), "{ps:?}");
    }

    #[test]
    fn intervals_come_from_backtests_of_the_horizon_or_are_scaled() {
        // 90 days: origins 89, 87, …, 31. Seven days of actuals follow origins up to 83: 27 windows, about 8
        // of them independent. Thirty-day windows overlap too much, so longer horizons are scaled.
        let y = structured(51, 90);
        assert_eq!(forecast(&y, 7).interval_source, IntervalSource::Backtest { origins: 27 });
        for horizon in [30, 60] {
            let f = forecast(&y, horizon);
            assert_well_formed(&f);
            let IntervalSource::ScaledBacktest { from_horizon, origins } = f.interval_source else {
                panic!("{:?}", f.interval_source)
            };
            assert!(
                (7..horizon).contains(&from_horizon) && origins >= MIN_INTERVAL_SAMPLES,
                "{from_horizon} {origins}"
            );
            assert_eq!(f.total_error_samples.len(), origins);
            assert!(f.note.contains(&format!("widened for {horizon} days")), "{}", f.note);
        }
    }

    #[test]
    fn effective_windows_count_overlap() {
        // Disjoint windows are independent; identical ones are one window.
        assert!((effective_windows(&[0, 7, 14, 21], 7) - 4.0).abs() < 1e-12);
        assert!((effective_windows(&[5, 5, 5], 7) - 1.0).abs() < 1e-12);
        // Daily origins of 7-day windows: roughly one window in seven.
        let daily: Vec<usize> = (0..70).collect();
        let m_eff = effective_windows(&daily, 7);
        assert!((9.0..11.0).contains(&m_eff), "{m_eff}");
    }

    #[test]
    fn student_t_from_errors_is_centred_and_widened_for_few_windows() {
        let origins: Vec<usize> = (0..20).map(|i| 7 * i).collect();
        let symmetric: Vec<f64> = (0..20).map(|i| if i % 2 == 0 { 100.0 } else { -100.0 }).collect();
        let d = fit_student_t(1000.0, &symmetric, &origins, 7).unwrap();
        let TotalDistribution::StudentT { location, scale, dof } = d else { panic!("{d:?}") };
        assert!((location - 1000.0).abs() < 1e-9 && (dof - 19.0).abs() < 1e-9);
        // s = sqrt(20 · 100² / 19), times sqrt(1 + 1/20) for the uncertainty of the mean.
        assert!((scale - (20.0 * 1e4 / 19.0 * 1.05_f64).sqrt()).abs() < 1e-9, "{scale}");
        assert!((d.probability_above(1000.0) - 0.5).abs() < 1e-9);
        // A bias moves the centre.
        let biased: Vec<f64> = symmetric.iter().map(|e| e + 50.0).collect();
        assert!((fit_student_t(1000.0, &biased, &origins, 7).unwrap().quantile(0.5) - 1050.0).abs() < 1e-6);
        // Too few samples, or samples that are really one window, give nothing.
        assert!(fit_student_t(1000.0, &symmetric[..7], &origins[..7], 7).is_none());
        assert!(fit_student_t(1000.0, &symmetric[..10], &[3; 10], 7).is_none());
        // Zero spread is a point.
        assert_eq!(fit_student_t(0.0, &[0.0; 10], &origins[..10], 7), Some(TotalDistribution::Point { value: 0.0 }));
    }

    #[test]
    fn output_serialises_with_snake_case_tags() {
        let v = serde_json::to_value(forecast(&structured(61, 40), 7)).unwrap();
        assert!(v.get("total_error_samples").is_none());
        assert!(v["interval_source"]["kind"].is_string());
        assert!(v["method"].as_str().unwrap().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
    }

    #[test]
    fn a_level_shift_is_found_and_only_the_days_after_it_are_fitted() {
        for (seed, shift) in [(71, 70), (72, 80), (73, 60)] {
            let y = level_shift(seed, 90, shift);
            let start = regime_start(&y);
            assert!(start.abs_diff(shift) <= 1, "shift on day {shift}, found {start}");
            let f = forecast(&y, 7);
            assert_well_formed(&f);
            assert_eq!((f.days_of_data, f.fitted_days), (90, 90 - start));
            assert!(f.note.contains(&format!("the last {} are used", 90 - start)), "{}", f.note);
            // The new level (1600 a day) is forecast, not a mix of the two.
            assert!((f.total / 7.0 - 1600.0).abs() < 120.0, "{} a day", f.total / 7.0);
        }
        // Down as well as up.
        let down: Vec<f64> = level_shift(74, 90, 75).iter().map(|v| 2000.0 - v).collect();
        assert!(regime_start(&down).abs_diff(75) <= 1, "{}", regime_start(&down));
    }

    #[test]
    fn no_level_shift_in_series_without_one() {
        let series: Vec<(&str, Vec<f64>)> = vec![
            ("trend + season", structured(81, 90)),
            ("flat noisy", flat_noisy(82, 90)),
            ("spikes", spiky(83, 90)),
            ("weekdays only", weekdays_only(84, 90)),
            ("sparse", (0..90).map(|t| if t % 5 == 0 { 900.0 } else { 0.0 }).collect()),
            ("flat", vec![700.0; 60]),
        ];
        for (name, y) in series {
            assert_eq!(regime_start(&y), 0, "{name}");
            assert_eq!(forecast(&y, 14).fitted_days, y.len(), "{name}");
        }
        // Too short to tell.
        assert_eq!(regime_start(&level_shift(85, SHIFT_MIN_HISTORY - 1, 10)), 0);
    }

    #[test]
    fn intervals_widen_faster_than_the_square_root_on_a_trending_series() {
        // A steep trend: errors of the level and the trend persist, so the range of the total grows faster
        // than with independent days.
        let mut rng = StdRng::seed_from_u64(91);
        let y: Vec<f64> = (0..60).map(|t| 500.0 + 25.0 * t as f64 + 60.0 * gaussian(&mut rng)).collect();
        let widths: Vec<f64> = [7, 14, 30]
            .iter()
            .map(|&h| {
                let f = forecast(&y, h);
                assert_well_formed(&f);
                f.interval_80.upper - f.interval_80.lower
            })
            .collect();
        assert!(widths.windows(2).all(|w| w[1] > w[0]), "{widths:?}");
        assert!(widths[2] / widths[0] > (30.0_f64 / 7.0).sqrt(), "{widths:?}");
        let f = forecast(&y, 30);
        assert!(matches!(f.interval_source, IntervalSource::ScaledBacktest { .. }), "{:?}", f.interval_source);
    }

    #[test]
    fn error_growth_tells_independent_from_persistent_errors() {
        let origins: Vec<usize> = (0..30).map(|i| 100 - 2 * i).collect();
        let mut rng = StdRng::seed_from_u64(92);
        let backtest = |errors: Vec<Vec<f64>>| Backtest { method: Method::RunRate, origins: origins.clone(), errors };
        // Independent day errors: the total's error grows like sqrt(k).
        let independent = backtest((0..30).map(|_| (0..14).map(|_| gaussian(&mut rng)).collect()).collect());
        let beta = error_growth(&independent, 14);
        assert!((0.5..0.75).contains(&beta), "{beta}");
        // A level error that persists over the window: linearly.
        let level = backtest((0..30).map(|_| vec![gaussian(&mut rng); 14]).collect());
        assert!((error_growth(&level, 14) - 1.0).abs() < 1e-9);
        // An error in the trend: the day errors grow with the day, the total's about like k².
        let trend = backtest(
            (0..30)
                .map(|_| {
                    let slope = gaussian(&mut rng);
                    (1..=14).map(|j| slope * j as f64).collect()
                })
                .collect(),
        );
        let beta = error_growth(&trend, 14);
        assert!((1.7..=MAX_ERROR_GROWTH).contains(&beta), "{beta}");
        // Too few spans: a level error.
        assert_eq!(error_growth(&independent, 2), 1.0);
    }

    #[test]
    fn dressed_errors_keep_their_skew_and_the_fitted_variance() {
        // Mostly a little below, sometimes far above: the median is below the mean.
        let samples: Vec<f64> = (0..30).map(|i| if i % 6 == 0 { 500.0 } else { -100.0 }).collect();
        let origins: Vec<usize> = (0..30).map(|i| 7 * i).collect();
        let fitted = fit_student_t(1000.0, &samples, &origins, 7).unwrap();
        let dressed = dress(1000.0, &samples, fitted.clone());
        let TotalDistribution::Dressed { ref centres, scale, dof } = dressed else { panic!("{dressed:?}") };
        assert_eq!(centres.len(), 30);
        let TotalDistribution::StudentT { scale: t_scale, dof: t_dof, .. } = fitted else { panic!() };
        assert_eq!(dof, t_dof);
        let mean = samples.iter().sum::<f64>() / 30.0;
        let v = samples.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / 30.0;
        let t_var = dof / (dof - 2.0);
        assert!((v + scale * scale * t_var - t_scale * t_scale * t_var).abs() < 1e-6 * v, "variance matched");
        assert!(dressed.quantile(0.5) < 1000.0 + mean, "median below the mean: {}", dressed.quantile(0.5));
        assert!(dressed.probability_above(1000.0 + mean) < 0.5);
        // Quantiles and probabilities agree, and are monotone.
        for p in [0.025, 0.1, 0.5, 0.9, 0.975] {
            let q = dressed.quantile(p);
            assert!((dressed.probability_above(q) - (1.0 - p)).abs() < 1e-9, "p {p}: q {q}");
        }
        let ps: Vec<f64> = (0..100).map(|i| dressed.probability_above(500.0 + 20.0 * i as f64)).collect();
        assert!(ps.windows(2).all(|w| w[1] <= w[0]), "{ps:?}");
        // Few degrees of freedom: no variance to match, the fit is kept.
        let wide = TotalDistribution::StudentT { location: 1000.0, scale: 100.0, dof: 2.0 };
        assert_eq!(dress(1000.0, &samples, wide.clone()), wide);
    }

    #[test]
    fn day_noise_ignores_the_weekly_pattern_and_the_trend() {
        let pattern: Vec<f64> = (0..42).map(|t| 1000.0 + 10.0 * t as f64 + 400.0 * weekly(t, 1.0)).collect();
        assert!(day_noise(&pattern) < 1e-9, "{}", day_noise(&pattern));
        let mut rng = StdRng::seed_from_u64(93);
        let noisy: Vec<f64> = (0..700).map(|_| 1000.0 + 50.0 * gaussian(&mut rng)).collect();
        assert!((day_noise(&noisy) - 50.0).abs() < 5.0, "{}", day_noise(&noisy));
        // Under two weeks: the plain spread.
        assert!((day_noise(&[1.0, 3.0]) - 2.0_f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn recent_origins_weigh_more_in_the_selection() {
        // Errors of 10 at the latest origin, 0 fourteen days earlier: weights 1 and ½.
        let b = Backtest { method: Method::RunRate, origins: vec![40, 26], errors: vec![vec![10.0; 7], vec![0.0; 7]] };
        let history = vec![100.0; 60];
        let score = b.score(&history, 0);
        assert!((score.mae - 10.0 / 1.5).abs() < 1e-9, "{}", score.mae);
        assert_eq!(score.origins, 2);
    }

    #[test]
    fn the_run_rate_averages_whole_weeks() {
        assert_eq!([1, 6, 7, 10, 13, 14, 30].map(run_rate_days), [1, 6, 7, 7, 7, 14, 14]);
        // Ten days of a weekly pattern: the last seven average to the weekly mean.
        let y: Vec<f64> = (0..10).map(|t| 1000.0 * weekly(t, 0.5)).collect();
        let daily = fit_predict(Method::RunRate, &y, 1).unwrap();
        assert!((daily[0] - 1000.0).abs() < 1e-9, "{daily:?}");
    }
}
