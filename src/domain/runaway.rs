//! Runaway detection: is a scenario burning credits far faster than it normally does, right now?
//!
//! Each usage-sync pass yields, per scenario, the centicredits it consumed since the previous pass: an
//! [`Interval`] `[from, to)`. Passes are about five minutes apart but may be irregular or missed, so
//! intervals are compared as **rates**: centicredits per hour = centicredits × 3600 / seconds (an
//! interval shorter than a minute counts as a minute, a negative correction as nothing). [`assess`]
//! compares the latest interval's rate with a baseline computed from the scenario's own previous
//! intervals and carries an [`Episode`] between passes. It is pure: the caller passes the history, the
//! stored episode and `now`, and stores the episode it gets back.
//!
//! # The baseline
//!
//! Only the [`HISTORY_DAYS`] (28) days before the latest interval are read; the caller may pass more.
//! The history should include the passes in which the scenario burnt nothing; a caller that keeps
//! only non-zero intervals makes detection more lenient, never more eager. In time order (as a store
//! returns it) a call reads the last 7 days and, of the 21 before, the four hours around this time of
//! each day; in any other order it reads everything once. Time of day and week are UTC. Views:
//!
//! - `recent`: for each of the last [`RECENT_DAYS`] (7) days, the median rate of the intervals in which
//!   the scenario burnt anything; the baseline is the median of these daily medians (all 28 days are
//!   used when the last 7 have fewer than [`MIN_SAMPLES`] active intervals). Counting only active
//!   intervals keeps scenarios that run now and then (hourly, daily, on a webhook) from alerting on
//!   every ordinary run: their baseline is how hard they burn *when they run*. Taking the median of
//!   days keeps one day's runaway from becoming the normal.
//! - `hour_of_day`, level: the median rate of active intervals in the same hour of the day, and
//!   separately in the hour before and after, on past days (the largest of the three counts). An hour
//!   counts when it has [`MIN_SAMPLES`] active intervals on at least two days and on half the days with
//!   data; it may set the baseline below `recent`, to a quarter of it at most. This is what lets a quiet
//!   night have a lower baseline than the busy day.
//! - `hour_of_day`, peak: for each past day, the highest rate within 75 minutes of this time of day;
//!   their median (the lower one) is the *typical peak*, and the baseline is at least
//!   `2 × typical peak / factor`, so that a rate must be twice what the scenario regularly peaks at,
//!   at this time, to count as anomalous. This learns a nightly job of one pass as well as an hour-long
//!   peak; the 75 minutes absorb a shift by daylight saving time.
//! - `hour_of_week`, peak: the same for the same time of the week in past weeks, which learns batches
//!   that run on some weekdays only.
//!
//! The `hour_of_day` and `hour_of_week` views leave out the last three hours, so they describe past
//! days only. The baseline `B` is the `hour_of_day` level if it counts, else `recent`, raised to a peak
//! view where that is higher; the evidence names the view. Its spread `σ` is the MAD (× 1.4826) of the
//! same samples (none for a peak view). A floor keeps scenarios without a baseline from producing
//! infinite ratios: `B` is at least `min_centicredits × 12 / factor` per hour, so a scenario that never
//! burnt anything must burn `min_centicredits` per five minutes to be anomalous.
//!
//! # The rule
//!
//! With `T = max(factor × B, B + 4σ)`, and only intervals holding at least `min_centicredits`, a runaway
//! begins
//!
//! - on its **first interval** when the rate is at least `2 × T` (so a 30× jump is flagged in the pass
//!   right after it starts: with the default factor 5 the bar is 10×), or
//! - over **two consecutive intervals** whose mean rate is at least `T`, neither below `T / 2`. A
//!   borderline 5–10× rise must last two passes, which keeps noise and the occasional 2–3× blip from
//!   alerting; the episode then began with the first of the two.
//!
//! The episode lasts while the rate stays at or above `T / 2` (a runaway hovering near the threshold
//! does not flap) and ends at the first interval below. A step up that persists becomes the new normal
//! once it fills most of the recent days (about four) and the episode then ends by itself.
//!
//! **Warm-up.** Until the history spans `warmup_hours`, a scenario is judged by an absolute rule: a
//! runaway when the centicredits of the last hour (the latest interval and those that began in the
//! hour before it ended) reach `new_scenario_centicredits_per_hour`, the latest interval holds at least
//! `min_centicredits`, and, once [`MIN_SAMPLES`] active intervals are known, the latest rate is at least
//! `factor` times their median (a scenario that has burnt this much since it appeared is not new). The
//! evidence then reports the hour's centicredits as the rate and the limit as the baseline, with basis
//! `absolute_new_scenario`; the episode lasts while the hour holds half the limit.
//!
//! **Cooldown.** A new episode is reported at once; while it lasts, it is reported again only once
//! `cooldown_minutes` have passed since the last report. Every assessment during the episode still says
//! it is running away, and the episode accumulates the centicredits burnt since it began. An episode
//! that ended and a new one that begins are reported as new.
//!
//! # Defaults, and why
//!
//! See [`RunawayRules::default`]: factor 5 (one interval must reach 10×), 1,000 centicredits (10
//! credits) per interval, 48 hours of warm-up, 60 minutes of cooldown, and 50,000 centicredits (500
//! credits) per hour for scenarios in warm-up. On the synthetic corpus of
//! `benches/runaway_detection.rs` (docs/performance.md, section 8) they give under one false alarm per
//! 100 scenario-days after warm-up while catching 10× spikes that last two passes.
//!
//! # What it cannot see
//!
//! Make reports consumption only as often as the server asks for it: a runaway is seen at the earliest
//! in the pass after it starts, and a burst shorter than a pass is averaged over the whole interval.
//! Consumption below Make's reporting floor is invisible, and so is a runaway below `min_centicredits`
//! per interval, by design. A spike that stays under twice the scenario's regular peak near that time
//! (a nightly job, a weekday batch) is, by this measure, normal; a runaway that repeats at the same
//! hour on most days becomes that hour's normal; and a scenario that has always been as wild as it is
//! now is not running away.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validation::{ValidationError, int_range};

/// How much history [`assess`] reads: the 28 days before the latest interval (8,064 five-minute passes).
pub const HISTORY_DAYS: i64 = 28;
/// The window of the `recent` baseline.
pub const RECENT_DAYS: i64 = 7;
/// Intervals a baseline view needs before it counts (one hour of five-minute passes).
pub const MIN_SAMPLES: usize = 12;
/// How many spreads above the baseline an anomalous rate must also be.
pub const MAD_SIGMAS: f64 = 4.0;
/// A rate this many times the threshold is a runaway on its first interval.
pub const INSTANT_MULTIPLE: f64 = 2.0;
/// An episode lasts while the rate stays at or above this share of the threshold.
pub const END_FRACTION: f64 = 0.5;
/// Bounds of `factor`.
pub const FACTOR_MIN: f64 = 1.5;
pub const FACTOR_MAX: f64 = 1000.0;
/// Bound of the centicredit fields (ten billion credits).
pub const CENTICREDITS_MAX: i64 = 1_000_000_000_000;
/// Bound of `warmup_hours`: the history read.
pub const WARMUP_HOURS_MAX: i64 = HISTORY_DAYS * 24;
/// Bound of `cooldown_minutes`: a week.
pub const COOLDOWN_MINUTES_MAX: i64 = 10_080;

/// Passes per hour at the nominal five-minute interval, for the per-interval floor as a rate.
const PASSES_PER_HOUR: f64 = 12.0;
/// MAD to standard deviation for normally distributed data.
const MAD_TO_SIGMA: f64 = 1.4826;
/// The hour-of-day and hour-of-week views read only intervals that began this long before the latest,
/// so they describe past days and weeks and never the hours just gone (nor a runaway in progress).
const PATTERN_GAP_SECS: i64 = 3 * 3600;
/// Two peaks reach further than one: a time of day or week may lower the baseline to this share of the
/// `recent` one, no further.
const RECENT_SHARE: f64 = 0.25;
/// How far around this time of day (and of the week) a past day's peak is looked for: an hour and a
/// quarter, which covers a shift by daylight saving time and a schedule that drifts a little.
const PEAK_WINDOW_SECS: i64 = 75 * 60;
/// A rate is anomalous only at `PEAK_MARGIN` times the typical peak at this time of day or week.
const PEAK_MARGIN: f64 = 2.0;
/// The latest interval's predecessor counts as the previous pass when it ended at most this long before.
const ADJACENT_GAP_SECS: i64 = 600;
const DAY_SECS: i64 = 86_400;
const WEEK_SECS: i64 = 7 * DAY_SECS;

/// What counts as a runaway: tenant defaults, merged with a budget's [`RunawayOverrides`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunawayRules {
    /// How many times the baseline rate an interval must reach to be anomalous; two anomalous intervals
    /// in a row, or one at twice this, start a runaway. 1.5 to 1000. Default 5.
    #[schemars(range(min = 1.5, max = 1000.0))]
    pub factor: f64,
    /// Centicredits an interval must hold before it can be anomalous, so tiny scenarios never alert.
    /// Default 1,000 (10 credits).
    #[schemars(range(min = 0, max = CENTICREDITS_MAX))]
    pub min_centicredits: i64,
    /// Hours of history before the scenario's own baseline is used; until then the absolute rule
    /// `new_scenario_centicredits_per_hour` applies. 1 to 672. Default 48.
    #[schemars(range(min = 1, max = WARMUP_HOURS_MAX))]
    pub warmup_hours: i64,
    /// Minutes before a runaway that goes on is reported again. 0 to 10,080. Default 60.
    #[schemars(range(min = 0, max = COOLDOWN_MINUTES_MAX))]
    pub cooldown_minutes: i64,
    /// During warm-up, the rate in centicredits per hour (whatever the interval length) from which a
    /// scenario is running away. Default 50,000 (500 credits an hour).
    #[schemars(range(min = 1, max = CENTICREDITS_MAX))]
    pub new_scenario_centicredits_per_hour: i64,
}

impl Default for RunawayRules {
    /// Factor 5: ordinary variation (weekday batches, blips of 2–3×, noise) stays below it, while a loop
    /// or a webhook storm is usually tens of times the normal rate; a single interval must reach 10×.
    /// 10 credits per interval: below that a runaway costs less than the alert is worth. 48 hours of
    /// warm-up: two days show the daily pattern twice, so one odd day does not define it (with 24 the
    /// bench caught 0.94 of its 10× spikes instead of 0.97–0.98, with more false alarms). 60 minutes of
    /// cooldown: one report an hour while a runaway goes on. 500 credits an hour for new scenarios: a
    /// Core plan's month in a day.
    fn default() -> Self {
        Self {
            factor: 5.0,
            min_centicredits: 1_000,
            warmup_hours: 48,
            cooldown_minutes: 60,
            new_scenario_centicredits_per_hour: 50_000,
        }
    }
}

/// A budget's changes to the tenant's [`RunawayRules`]; every field left out keeps the tenant's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunawayOverrides {
    /// See [`RunawayRules::factor`]. 1.5 to 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.5, max = 1000.0))]
    pub factor: Option<f64>,
    /// See [`RunawayRules::min_centicredits`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = CENTICREDITS_MAX))]
    pub min_centicredits: Option<i64>,
    /// See [`RunawayRules::warmup_hours`]. 1 to 672.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = WARMUP_HOURS_MAX))]
    pub warmup_hours: Option<i64>,
    /// See [`RunawayRules::cooldown_minutes`]. 0 to 10,080.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = COOLDOWN_MINUTES_MAX))]
    pub cooldown_minutes: Option<i64>,
    /// See [`RunawayRules::new_scenario_centicredits_per_hour`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = CENTICREDITS_MAX))]
    pub new_scenario_centicredits_per_hour: Option<i64>,
}

impl RunawayRules {
    /// These rules with every field the overrides set replaced. The result is not validated; call
    /// [`RunawayRules::validate`] on it.
    pub fn merged(&self, overrides: &RunawayOverrides) -> Self {
        Self {
            factor: overrides.factor.unwrap_or(self.factor),
            min_centicredits: overrides.min_centicredits.unwrap_or(self.min_centicredits),
            warmup_hours: overrides.warmup_hours.unwrap_or(self.warmup_hours),
            cooldown_minutes: overrides.cooldown_minutes.unwrap_or(self.cooldown_minutes),
            new_scenario_centicredits_per_hour: overrides
                .new_scenario_centicredits_per_hour
                .unwrap_or(self.new_scenario_centicredits_per_hour),
        }
    }

    /// Check every field against its bounds; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_factor(self.factor)?;
        int_range("min_centicredits", self.min_centicredits, 0, CENTICREDITS_MAX)?;
        int_range("warmup_hours", self.warmup_hours, 1, WARMUP_HOURS_MAX)?;
        int_range("cooldown_minutes", self.cooldown_minutes, 0, COOLDOWN_MINUTES_MAX)?;
        int_range("new_scenario_centicredits_per_hour", self.new_scenario_centicredits_per_hour, 1, CENTICREDITS_MAX)?;
        Ok(())
    }
}

impl RunawayOverrides {
    /// Check the fields that are set, with the same rules as [`RunawayRules::validate`].
    pub fn validate(&self) -> Result<(), ValidationError> {
        RunawayRules::default().merged(self).validate()
    }
}

fn check_factor(factor: f64) -> Result<(), ValidationError> {
    if !factor.is_finite() || !(FACTOR_MIN..=FACTOR_MAX).contains(&factor) {
        return Err(ValidationError::new("factor", format!("must be between 1.5 and 1000 (got {factor})")));
    }
    Ok(())
}

/// What a scenario consumed over one pass: `[from, to)`, in centicredits (1 credit = 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    pub from: Timestamp,
    pub to: Timestamp,
    pub centicredits: i64,
}

impl Interval {
    /// Centicredits actually burnt (a negative correction counts as nothing).
    fn burnt(&self) -> i64 {
        self.centicredits.max(0)
    }

    /// The consumption rate in centicredits per hour.
    pub fn rate_per_hour(&self) -> f64 {
        rate_per_hour(self.centicredits, self.to.as_second() - self.from.as_second())
    }
}

/// Centicredits per hour for `centicredits` over `secs` seconds (at least 60: a shorter or inverted
/// interval counts as a minute; a negative correction counts as nothing).
fn rate_per_hour(centicredits: i64, secs: i64) -> f64 {
    centicredits.max(0) as f64 * 3600.0 / secs.max(60) as f64
}

/// A runaway in progress: stored by the caller between passes (one row per scenario) and passed back to
/// the next [`assess`]; an assessment that returns no episode ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    /// Start of the first anomalous interval.
    pub since: Timestamp,
    /// Centicredits burnt from `since` up to the end of the latest interval.
    pub burnt: i64,
    /// When the episode was last reported (the `now` of that assessment).
    pub last_reported: Timestamp,
}

/// Which baseline the latest interval was compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The same hour of the week (or the hour before or after) in past weeks.
    HourOfWeek,
    /// The same hour of the day (or the hour before or after) in past days.
    HourOfDay,
    /// The median rate of the active intervals of the last 7 days (or 28).
    Recent,
    /// Warm-up: the absolute `new_scenario_centicredits_per_hour`.
    AbsoluteNewScenario,
}

str_enum!(Basis {
    HourOfWeek => "hour_of_week",
    HourOfDay => "hour_of_day",
    Recent => "recent",
    AbsoluteNewScenario => "absolute_new_scenario",
});

/// The assessment's verdict on the latest interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// Within the scenario's normal behaviour (or an episode just ended).
    Normal,
    /// Not enough history for a baseline, and below the absolute rule for new scenarios.
    WarmingUp,
    /// Running away. `new_episode`: this pass began it. `report`: tell someone now (a new episode, or
    /// the cooldown since the last report has passed).
    Runaway { new_episode: bool, report: bool },
}

/// What the verdict rests on, in integers except the ratio.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, JsonSchema)]
pub struct Evidence {
    /// The latest interval's rate, centicredits per hour.
    pub rate_per_hour: i64,
    /// The baseline it was compared with, centicredits per hour (with the floor applied); in warm-up,
    /// the absolute limit.
    pub baseline_per_hour: i64,
    /// `rate_per_hour / baseline_per_hour`, rounded to 0.1.
    pub ratio: f64,
    /// When the runaway began, if one is in progress.
    #[schemars(with = "Option<String>")]
    pub since: Option<Timestamp>,
    /// Centicredits burnt since it began (0 when none is in progress).
    pub burnt_since: i64,
    /// The latest interval's centicredits.
    pub interval_centicredits: i64,
    pub basis: Basis,
}

/// The result of [`assess`]: the caller stores `episode` (or deletes its row when it is `None`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Assessment {
    pub verdict: Verdict,
    pub evidence: Evidence,
    pub episode: Option<Episode>,
}

/// Baseline level and spread of one view of the history.
#[derive(Debug, Clone, Copy)]
struct Stats {
    median: f64,
    sigma: f64,
}

/// The median (the lower one of an even count, so that a view half filled with a past runaway does not
/// take its level); reorders `v`. `None` when `v` is empty.
fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mid = (v.len() - 1) / 2;
    Some(*v.select_nth_unstable_by(mid, f64::total_cmp).1)
}

/// The MAD around `median`, scaled to estimate a standard deviation; overwrites `v`.
fn spread(v: &mut [f64], median_of_v: f64) -> f64 {
    for x in v.iter_mut() {
        *x = (*x - median_of_v).abs();
    }
    median(v).unwrap_or(0.0) * MAD_TO_SIGMA
}

/// Whole days between `from` and `cut`.
fn days_back(cut: i64, from: i64) -> u32 {
    ((cut - from) / DAY_SECS).clamp(0, HISTORY_DAYS) as u32
}

/// The `recent` view: the lower median over days of each day's median rate, and likewise of each day's
/// spread, so that one day's runaway cannot become the normal. Reorders `pairs`; `None` when empty.
fn daily_median(pairs: &mut [(u32, f64)]) -> Option<Stats> {
    if !(pairs.is_sorted_by(|a, b| a.0 <= b.0) || pairs.is_sorted_by(|a, b| a.0 >= b.0)) {
        pairs.sort_unstable_by_key(|p| p.0);
    }
    let by_rate = |a: &(u32, f64), b: &(u32, f64)| a.1.total_cmp(&b.1);
    let mut medians = [0.0; HISTORY_DAYS as usize + 1];
    let mut spreads = [0.0; HISTORY_DAYS as usize + 1];
    let mut n = 0;
    for day in pairs.chunk_by_mut(|a, b| a.0 == b.0) {
        let mid = (day.len() - 1) / 2;
        let m = day.select_nth_unstable_by(mid, by_rate).1.1;
        day.iter_mut().for_each(|p| p.1 = (p.1 - m).abs());
        spreads[n] = day.select_nth_unstable_by(mid, by_rate).1.1 * MAD_TO_SIGMA;
        medians[n] = m;
        n += 1;
    }
    Some(Stats { median: median(&mut medians[..n])?, sigma: median(&mut spreads[..n])? })
}

/// The views of the history around the latest interval, and how far back it reaches.
struct Views {
    /// (days back, rate) of the active intervals of the last 7 days (of all 28 when 7 have too few).
    active_recent: Vec<(u32, f64)>,
    /// Rates of the active intervals in the hour of day before, the same, and the hour after.
    day: [Vec<f64>; 3],
    /// Per bucket, the days back (bit k: k days ago) on which it had an active interval; and the days
    /// that had any interval in the three hours.
    day_active: [u32; 3],
    days_seen: u32,
    /// Per past day (index = days back), the largest rate within [`PEAK_WINDOW_SECS`] of this time of
    /// day; negative when that day has no interval there.
    day_peaks: [f64; HISTORY_DAYS as usize + 1],
    /// Per past week, the same around this time of the week.
    week_peaks: [f64; HISTORY_DAYS as usize / 7 + 1],
    earliest: Option<i64>,
    previous: Option<Interval>,
    /// Centicredits of the intervals that began in the hour before the latest one ended.
    last_hour: i64,
}

/// The hour index (hours since the Unix epoch) of a second.
fn hour_index(second: i64) -> i64 {
    second.div_euclid(3600)
}

fn midpoint(from: i64, to: i64) -> i64 {
    from + (to - from).max(0) / 2
}

/// Which of the three neighbouring hours of the day (`h − 1`, `h`, `h + 1`) the hour `x` is.
fn neighbour_hour(x: i64, h: i64) -> Option<usize> {
    match (x - h).rem_euclid(24) {
        0 => Some(1),
        1 => Some(2),
        23 => Some(0),
        _ => None,
    }
}

/// How many periods back `dt` seconds is, when it lies within [`PEAK_WINDOW_SECS`] of a whole number
/// of periods.
fn periods_back(dt: i64, period: i64) -> Option<usize> {
    let phase = dt.rem_euclid(period);
    (phase <= PEAK_WINDOW_SECS || phase >= period - PEAK_WINDOW_SECS)
        .then(|| ((dt + PEAK_WINDOW_SECS) / period) as usize)
}

fn views(history: &[Interval], latest: &Interval) -> Views {
    let cut = latest.from.as_second();
    let now_mid = midpoint(cut, latest.to.as_second());
    let ctx = Window {
        start: cut - HISTORY_DAYS * DAY_SECS,
        recent_start: cut - RECENT_DAYS * DAY_SECS,
        pattern_end: cut - PATTERN_GAP_SECS,
        hour_start: latest.to.as_second() - 3600,
        cut,
        now_mid,
        hod: hour_index(now_mid).rem_euclid(24),
    };
    let mut v = Views {
        active_recent: Vec::with_capacity(history.len().min(2_100)),
        day: [Vec::with_capacity(350), Vec::with_capacity(350), Vec::with_capacity(350)],
        day_active: [0; 3],
        days_seen: 0,
        day_peaks: [-1.0; HISTORY_DAYS as usize + 1],
        week_peaks: [-1.0; HISTORY_DAYS as usize / 7 + 1],
        earliest: None,
        previous: None,
        last_hour: 0,
    };
    let mut latest_end = None;
    if history.is_sorted_by_key(|iv| iv.from) {
        // In time order (as a caller keeps it): read the last 7 days whole, and of the 21 before only
        // the four hours around this time on each day.
        let lo = history.partition_point(|iv| iv.from.as_second() < ctx.start);
        let hi = history.partition_point(|iv| iv.from.as_second() < cut);
        let mid = lo + history[lo..hi].partition_point(|iv| iv.from.as_second() < ctx.recent_start);
        for iv in &history[mid..hi] {
            visit(&mut v, &mut latest_end, iv, &ctx);
        }
        for k in 1..=HISTORY_DAYS {
            let centre = now_mid - k * DAY_SECS;
            let a = lo + history[lo..mid].partition_point(|iv| iv.from.as_second() < centre - 3 * 3600);
            if a == mid {
                continue;
            }
            let b = a + history[a..mid].partition_point(|iv| iv.from.as_second() <= centre + 2 * 3600);
            for iv in &history[a..b] {
                visit(&mut v, &mut latest_end, iv, &ctx);
            }
        }
        v.earliest = history[lo..hi].iter().find(|iv| iv.to.as_second() <= cut).map(|iv| iv.from.as_second());
    } else {
        for iv in history {
            visit(&mut v, &mut latest_end, iv, &ctx);
        }
    }
    if v.active_recent.len() < MIN_SAMPLES {
        // Too few active intervals in 7 days: read all 28 (rare, so a second pass is cheap overall).
        v.active_recent.clear();
        v.active_recent.extend(
            history
                .iter()
                .filter(|iv| iv.centicredits > 0 && iv.from.as_second() >= ctx.start && iv.to.as_second() <= cut)
                .map(|iv| (days_back(cut, iv.from.as_second()), iv.rate_per_hour())),
        );
    }
    if latest_end.is_none_or(|e| cut - e > ADJACENT_GAP_SECS) {
        v.previous = None;
    }
    v
}

/// The bounds [`views`] reads the history with.
struct Window {
    start: i64,
    recent_start: i64,
    pattern_end: i64,
    hour_start: i64,
    cut: i64,
    now_mid: i64,
    hod: i64,
}

/// Add one past interval to the views it belongs to.
#[inline]
fn visit(v: &mut Views, latest_end: &mut Option<i64>, iv: &Interval, w: &Window) {
    let (from, to) = (iv.from.as_second(), iv.to.as_second());
    if from < w.start || to > w.cut {
        return;
    }
    if latest_end.is_none_or(|e| to > e) {
        *latest_end = Some(to);
        v.previous = Some(*iv);
    }
    v.earliest = Some(v.earliest.map_or(from, |e| e.min(from)));
    if from >= w.hour_start {
        v.last_hour = v.last_hour.saturating_add(iv.burnt());
    }
    let recent = from >= w.recent_start && iv.centicredits > 0;
    let (mut hour, mut day, mut week) = (None, None, None);
    // Only intervals of up to two hours describe a time of day.
    if from < w.pattern_end && to - from <= 2 * 3600 {
        let mid = midpoint(from, to);
        let dt = w.now_mid - mid;
        if let Some(b) = neighbour_hour(hour_index(mid).rem_euclid(24), w.hod) {
            let bit = 1u32 << ((dt + 2 * 3600) / DAY_SECS).clamp(0, 31);
            v.days_seen |= bit;
            if iv.centicredits > 0 {
                v.day_active[b] |= bit;
                hour = Some(b);
            }
        }
        day = periods_back(dt, DAY_SECS).filter(|&k| k < v.day_peaks.len());
        if day.is_some() {
            week = periods_back(dt, WEEK_SECS).filter(|&k| k < v.week_peaks.len());
        }
    }
    if !recent && hour.is_none() && day.is_none() {
        return;
    }
    let rate = rate_per_hour(iv.centicredits, to - from);
    if recent {
        v.active_recent.push((days_back(w.cut, from), rate));
    }
    if let Some(k) = hour {
        v.day[k].push(rate);
    }
    if let Some(k) = day {
        v.day_peaks[k] = v.day_peaks[k].max(rate);
    }
    if let Some(k) = week {
        v.week_peaks[k] = v.week_peaks[k].max(rate);
    }
}

/// The typical peak: the lower median of the periods that have data.
fn typical_peak(peaks: &[f64]) -> Option<f64> {
    let mut seen: Vec<f64> = peaks.iter().copied().filter(|p| *p >= 0.0).collect();
    median(&mut seen)
}

/// The baseline (before the floor) and spread from the views, and which view gave it.
fn baseline(v: &mut Views, factor: f64) -> (Stats, Basis) {
    let recent = daily_median(&mut v.active_recent).unwrap_or(Stats { median: 0.0, sigma: 0.0 });
    // An hour counts when the scenario was active in it on at least two days and on half the days
    // seen, so that one past runaway cannot become the hour's normal.
    let days_needed = (v.days_seen.count_ones() as usize).div_ceil(2).max(2);
    let hour = v
        .day
        .iter_mut()
        .zip(v.day_active)
        .filter(|(b, days)| b.len() >= MIN_SAMPLES && days.count_ones() as usize >= days_needed)
        .filter_map(|(b, _)| median(b).map(|m| (m, b)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let mut best = match hour {
        Some((m, b)) => (Stats { median: m.max(recent.median * RECENT_SHARE), sigma: spread(b, m) }, Basis::HourOfDay),
        None => (recent, Basis::Recent),
    };
    for (peaks, basis) in [(&v.day_peaks[..], Basis::HourOfDay), (&v.week_peaks[..], Basis::HourOfWeek)] {
        if let Some(p) = typical_peak(peaks) {
            let level = p * PEAK_MARGIN / factor;
            if level > best.0.median {
                best = (Stats { median: level, sigma: 0.0 }, basis);
            }
        }
    }
    best
}

fn round_tenth(x: f64) -> f64 {
    if x.is_finite() { (x * 10.0).round() / 10.0 } else { 0.0 }
}

/// Assess the latest interval of one scenario against its history.
///
/// `history` is the scenario's previous intervals, in any order; only those inside the 28 days before
/// `latest.from` that end by `latest.from` are read, so the caller may pass more. `episode` is the one
/// the previous assessment returned. `now` is when the pass runs (used for the cooldown only).
/// One call reads the history once: about 8,064 entries for 28 days of five-minute passes.
pub fn assess(
    history: &[Interval],
    latest: &Interval,
    episode: Option<&Episode>,
    rules: &RunawayRules,
    now: Timestamp,
) -> Assessment {
    let mut v = views(history, latest);
    let span = v.earliest.map_or(0, |e| latest.from.as_second() - e);
    let warming = span < rules.warmup_hours * 3600;

    // The rate judged, the threshold T, and what the evidence reports as the baseline. In warm-up the
    // rate is what the last hour burnt; otherwise the latest interval's.
    let mut relative_ok = true;
    let (rate, threshold, baseline_rate, basis) = if warming {
        let hour = v.last_hour.saturating_add(latest.burnt()) as f64;
        let limit = rules.new_scenario_centicredits_per_hour as f64;
        // Once an hour of activity is known, a scenario that has always burnt this much is not new.
        if v.active_recent.len() >= MIN_SAMPLES
            && let Some(s) = daily_median(&mut v.active_recent)
        {
            relative_ok = latest.rate_per_hour() >= rules.factor * s.median;
        }
        (hour, limit, limit, Basis::AbsoluteNewScenario)
    } else {
        let (s, basis) = baseline(&mut v, rules.factor);
        let floor = rules.min_centicredits as f64 * PASSES_PER_HOUR / rules.factor;
        let b = s.median.max(floor);
        (latest.rate_per_hour(), (rules.factor * b).max(b + MAD_SIGMAS * s.sigma), b, basis)
    };
    let floor_met = |iv: &Interval| iv.centicredits >= rules.min_centicredits;
    let above = |iv: &Interval, t: f64| floor_met(iv) && iv.rate_per_hour() >= t;
    let begin = |since: Timestamp, burnt: i64| Some((Episode { since, burnt, last_reported: now }, true, true));

    let next = match episode {
        Some(ep) if rate >= END_FRACTION * threshold => {
            let report = now.as_second() - ep.last_reported.as_second() >= rules.cooldown_minutes * 60;
            let last_reported = if report { now } else { ep.last_reported };
            let burnt = ep.burnt.saturating_add(latest.burnt());
            Some((Episode { since: ep.since, burnt, last_reported }, false, report))
        }
        Some(_) => None,
        None if warming && floor_met(latest) && rate >= threshold && relative_ok => begin(latest.from, latest.burnt()),
        None if warming => None,
        None if above(latest, INSTANT_MULTIPLE * threshold) => begin(latest.from, latest.burnt()),
        None => match v.previous {
            Some(prev)
                if above(latest, threshold / 2.0)
                    && above(&prev, threshold / 2.0)
                    && (rate + prev.rate_per_hour()) / 2.0 >= threshold =>
            {
                begin(prev.from, prev.burnt().saturating_add(latest.burnt()))
            }
            _ => None,
        },
    };

    let ratio = if baseline_rate > 0.0 { round_tenth(rate / baseline_rate) } else { 0.0 };
    let evidence = Evidence {
        rate_per_hour: rate.round() as i64,
        baseline_per_hour: baseline_rate.round() as i64,
        ratio,
        since: next.map(|(e, _, _)| e.since),
        burnt_since: next.map_or(0, |(e, _, _)| e.burnt),
        interval_centicredits: latest.centicredits,
        basis,
    };
    let verdict = match next {
        Some((_, new_episode, report)) => Verdict::Runaway { new_episode, report },
        None if warming => Verdict::WarmingUp,
        None => Verdict::Normal,
    };
    Assessment { verdict, evidence, episode: next.map(|(e, _, _)| e) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Monday 2026-03-02 00:00 UTC.
    fn t0() -> Timestamp {
        "2026-03-02T00:00:00Z".parse().unwrap()
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(t0().as_second() + secs).unwrap()
    }

    /// Five-minute intervals from `start` (seconds after `t0`) for `n` passes, with the centicredits
    /// `f(start of interval in seconds after t0)`.
    fn series(start: i64, n: i64, f: impl Fn(i64) -> i64) -> Vec<Interval> {
        (0..n).map(|i| start + i * 300).map(|s| Interval { from: at(s), to: at(s + 300), centicredits: f(s) }).collect()
    }

    /// A small deterministic wobble of ±10 % around `base`.
    fn wobble(base: i64, s: i64) -> i64 {
        let k = (s / 300).wrapping_mul(2_654_435_761).rem_euclid(21) - 10;
        base + base * k / 100
    }

    const DAY: i64 = 86_400;
    const HOUR: i64 = 3_600;

    /// Assess each of `next` in turn, growing the history and carrying the episode, with `now` at the end
    /// of each interval.
    fn walk(history: &mut Vec<Interval>, next: &[Interval], rules: &RunawayRules) -> Vec<Assessment> {
        let mut episode = None;
        let mut out = Vec::new();
        for iv in next {
            let a = assess(history, iv, episode.as_ref(), rules, iv.to);
            episode = a.episode;
            history.push(*iv);
            out.push(a);
        }
        out
    }

    fn runaways(assessments: &[Assessment]) -> usize {
        assessments.iter().filter(|a| matches!(a.verdict, Verdict::Runaway { .. })).count()
    }

    #[test]
    fn flat_scenario_is_normal() {
        // Given 14 days of a steady 20 credits per pass
        let mut history = series(0, 14 * 288, |s| wobble(2_000, s));
        // When the next day arrives just as steady
        let next = series(14 * DAY, 288, |s| wobble(2_000, s));
        let out = walk(&mut history, &next, &RunawayRules::default());
        // Then nothing is flagged, and the baseline is the median of the same hours on past days
        assert_eq!(runaways(&out), 0);
        assert!(out.iter().all(|a| a.verdict == Verdict::Normal && a.evidence.basis == Basis::HourOfDay));
        let e = out[0].evidence;
        assert!((22_000..=26_000).contains(&e.baseline_per_hour), "{e:?}");
        assert!((0.8..=1.2).contains(&e.ratio), "{e:?}");
    }

    #[test]
    fn thirty_fold_jump_is_flagged_on_its_first_interval() {
        // Given 3 days of 20 credits per pass
        let history = series(0, 3 * 288, |s| wobble(2_000, s));
        // When the next pass shows 30 times that
        let latest = Interval { from: at(3 * DAY), to: at(3 * DAY + 300), centicredits: 60_000 };
        let a = assess(&history, &latest, None, &RunawayRules::default(), latest.to);
        // Then it is a new, reported runaway with its evidence
        assert_eq!(a.verdict, Verdict::Runaway { new_episode: true, report: true });
        let e = a.evidence;
        assert_eq!(e.rate_per_hour, 720_000);
        assert_eq!(e.interval_centicredits, 60_000);
        assert_eq!(e.since, Some(latest.from));
        assert_eq!(e.burnt_since, 60_000);
        assert_eq!(e.basis, Basis::HourOfDay);
        assert!((27.0..=33.0).contains(&e.ratio), "{e:?}");
        assert_eq!(a.episode, Some(Episode { since: latest.from, burnt: 60_000, last_reported: latest.to }));
    }

    #[test]
    fn threefold_rise_is_not_flagged_with_the_default_factor() {
        let mut history = series(0, 7 * 288, |s| wobble(2_000, s));
        // When the scenario triples for a day
        let next = series(7 * DAY, 288, |s| wobble(6_000, s));
        let out = walk(&mut history, &next, &RunawayRules::default());
        assert_eq!(runaways(&out), 0);
    }

    #[test]
    fn borderline_rise_needs_two_intervals() {
        let history = series(0, 3 * 288, |_| 2_000);
        // Given a 6× interval: anomalous, but under twice the factor
        let first = Interval { from: at(3 * DAY), to: at(3 * DAY + 300), centicredits: 12_000 };
        let a = assess(&history, &first, None, &RunawayRules::default(), first.to);
        assert_eq!(a.verdict, Verdict::Normal);
        assert!(a.episode.is_none());
        // When the next one is 6× again, then the runaway began with the first
        let mut history = history;
        history.push(first);
        let second = Interval { from: first.to, to: at(3 * DAY + 600), centicredits: 12_000 };
        let a = assess(&history, &second, None, &RunawayRules::default(), second.to);
        assert_eq!(a.verdict, Verdict::Runaway { new_episode: true, report: true });
        assert_eq!(a.evidence.since, Some(first.from));
        assert_eq!(a.evidence.burnt_since, 24_000);
        assert_eq!(a.evidence.ratio, 6.0);
    }

    #[test]
    fn nightly_peak_is_learned_but_an_afternoon_burst_is_not_excused() {
        // Given 14 nights with 20× the usual rate from 02:00 to 03:00 UTC
        let nightly = |s: i64| if (s % DAY) / HOUR == 2 { wobble(20_000, s) } else { wobble(1_000, s) };
        let history = series(0, 14 * 288, nightly);
        let rules = RunawayRules::default();
        // When the 15th night's peak arrives, it is normal, with the hour of day as its basis
        let mut h = history.clone();
        let night = series(14 * DAY + HOUR, 36, nightly);
        let out = walk(&mut h, &night, &rules);
        assert_eq!(runaways(&out), 0);
        let peak = &out[18];
        assert_eq!(peak.evidence.basis, Basis::HourOfDay);
        assert!(peak.evidence.ratio < 2.0, "{:?}", peak.evidence);
        // But the same 20× at 14:00 is a runaway on its first interval
        let mut h = history.clone();
        h.extend(series(14 * DAY, 14 * 12, nightly));
        let burst =
            Interval { from: at(14 * DAY + 14 * HOUR), to: at(14 * DAY + 14 * HOUR + 300), centicredits: 20_000 };
        let a = assess(&h, &burst, None, &rules, burst.to);
        assert_eq!(a.verdict, Verdict::Runaway { new_episode: true, report: true });
        assert_eq!(a.evidence.basis, Basis::HourOfDay);
        assert!(a.evidence.ratio >= 15.0, "{:?}", a.evidence);
    }

    #[test]
    fn nightly_five_minute_job_is_learned() {
        // Given a scenario whose nightly job burns 300 credits in the one pass after 02:00
        let job = |s: i64| if s % DAY == 2 * HOUR { 30_000 } else { wobble(1_000, s) };
        let mut history = series(0, 10 * 288, job);
        // When the next night's job runs, it is excused by the typical peak at that time of day
        let next = series(10 * DAY, 288, job);
        let out = walk(&mut history, &next, &RunawayRules::default());
        assert_eq!(runaways(&out), 0);
        assert_eq!(out[24].evidence.basis, Basis::HourOfDay);
        // But the same job at 14:00 is a runaway
        let odd = Interval { from: at(11 * DAY + 14 * HOUR), to: at(11 * DAY + 14 * HOUR + 300), centicredits: 30_000 };
        let mut h = history.clone();
        h.extend(series(11 * DAY, 14 * 12, job));
        let a = assess(&h, &odd, None, &RunawayRules::default(), odd.to);
        assert_eq!(a.verdict, Verdict::Runaway { new_episode: true, report: true });
    }

    #[test]
    fn a_quiet_hour_lowers_the_baseline() {
        // Given a scenario at 20 credits a pass by day and 5 at night (00:00–06:00)
        let daily = |s: i64| if (s % DAY) / HOUR < 6 { wobble(500, s) } else { wobble(2_000, s) };
        let mut history = series(0, 14 * 288, daily);
        history.extend(series(14 * DAY, 3 * 12, daily));
        // When at 03:00 it burns 30 credits a pass, twice: 6× the night's rate, 1.5× the day's
        let next = series(14 * DAY + 3 * HOUR, 2, |_| 3_000);
        let out = walk(&mut history, &next, &RunawayRules::default());
        assert_eq!(out[0].verdict, Verdict::Normal);
        assert_eq!(out[1].verdict, Verdict::Runaway { new_episode: true, report: true });
        assert_eq!(out[1].evidence.basis, Basis::HourOfDay);
        assert_eq!(out[1].evidence.baseline_per_hour, 6_000);
    }

    #[test]
    fn weekday_batches_are_normal() {
        // Given 3 weeks with 15× batches from 09:00 to 11:00 on weekdays, and a 25× batch every Monday
        // 06:00–07:00 only
        let batches = |s: i64| {
            let (day, hour) = ((s / DAY) % 7, (s % DAY) / HOUR);
            match (day, hour) {
                (0, 6) => 25_000,
                (0..=4, 9 | 10) => wobble(15_000, s),
                _ => wobble(1_000, s),
            }
        };
        let mut history = series(0, 21 * 288, batches);
        // When the fourth week's Monday and Tuesday run as usual
        let next = series(21 * DAY, 2 * 288, batches);
        let out = walk(&mut history, &next, &RunawayRules::default());
        // Then nothing is flagged; Monday 06:00 is excused by its hour of the week
        assert_eq!(runaways(&out), 0);
        assert_eq!(out[6 * 12 + 3].evidence.basis, Basis::HourOfWeek);
        assert_eq!(out[9 * 12 + 3].evidence.basis, Basis::HourOfDay);
    }

    #[test]
    fn slow_growth_is_normal() {
        // Given 27 days growing 1 % a day
        let growing = |s: i64| (3_000.0 * 1.01_f64.powf(s as f64 / DAY as f64)) as i64;
        let mut history = series(0, 27 * 288, |s| wobble(growing(s), s));
        // When the 28th day grows on
        let next = series(27 * DAY, 288, |s| wobble(growing(s), s));
        let out = walk(&mut history, &next, &RunawayRules::default());
        assert_eq!(runaways(&out), 0);
    }

    #[test]
    fn tiny_scenario_never_alerts() {
        // Given a scenario burning 0.1 credit per pass
        let mut history = series(0, 3 * 288, |_| 10);
        // When it jumps 99× for an hour, still under the 10-credit floor per interval
        let next = series(3 * DAY, 12, |_| 990);
        let out = walk(&mut history, &next, &RunawayRules::default());
        assert_eq!(runaways(&out), 0);
        // The baseline is the floor (1,000 × 12 / 5 per hour), not the scenario's 120
        assert_eq!((out[0].evidence.baseline_per_hour, out[0].evidence.ratio), (2_400, 5.0));
    }

    #[test]
    fn intermittent_scenario_runs_are_normal() {
        // Given a scenario that runs once an hour for 50 credits, idle otherwise
        let hourly = |s: i64| if s % HOUR == 0 { 5_000 } else { 0 };
        let mut history = series(0, 7 * 288, hourly);
        let next = series(7 * DAY, 288, hourly);
        let out = walk(&mut history, &next, &RunawayRules::default());
        assert_eq!(runaways(&out), 0);
        assert_eq!(out[0].evidence.basis, Basis::Recent);
        assert_eq!(out[0].evidence.baseline_per_hour, 60_000);
        // But a run ten times as big is flagged
        let big = Interval { from: at(8 * DAY), to: at(8 * DAY + 300), centicredits: 60_000 };
        let a = assess(&history, &big, None, &RunawayRules::default(), big.to);
        assert!(matches!(a.verdict, Verdict::Runaway { new_episode: true, .. }));
    }

    #[test]
    fn new_scenario_is_judged_by_the_absolute_rule() {
        let rules = RunawayRules::default();
        // Given two hours of history (under the 48 hours of warm-up) at 10 credits a pass
        let history = series(0, 24, |_| 1_000);
        // When the last hour (11 earlier passes and this one) burns 14,000 centicredits: warming up
        let calm = Interval { from: at(2 * HOUR), to: at(2 * HOUR + 300), centicredits: 3_000 };
        let a = assess(&history, &calm, None, &rules, calm.to);
        assert_eq!(a.verdict, Verdict::WarmingUp);
        assert_eq!(a.evidence.basis, Basis::AbsoluteNewScenario);
        assert_eq!((a.evidence.rate_per_hour, a.evidence.baseline_per_hour), (14_000, 50_000));
        // When it burns 51,000: a runaway at once
        let hot = Interval { from: at(2 * HOUR), to: at(2 * HOUR + 300), centicredits: 40_000 };
        let a = assess(&history, &hot, None, &rules, hot.to);
        assert_eq!(a.verdict, Verdict::Runaway { new_episode: true, report: true });
        assert_eq!((a.evidence.rate_per_hour, a.evidence.ratio), (51_000, 1.0));
        // A brand-new scenario is judged by what its first pass burnt, not by that pass's hourly rate
        let a = assess(&[], &hot, None, &rules, hot.to);
        assert_eq!(a.verdict, Verdict::WarmingUp, "one 400-credit run is not yet 500 credits an hour");
        let first = Interval { centicredits: 60_000, ..hot };
        let a = assess(&[], &first, None, &rules, first.to);
        assert_eq!(a.verdict, Verdict::Runaway { new_episode: true, report: true });
        assert_eq!(a.evidence.since, Some(first.from));
    }

    #[test]
    fn cooldown_suppresses_reports_while_the_episode_accumulates() {
        let mut history = series(0, 3 * 288, |_| 2_000);
        // When a 30× runaway lasts 90 minutes
        let next = series(3 * DAY, 18, |_| 60_000);
        let out = walk(&mut history, &next, &RunawayRules::default());
        // Then every pass says runaway, only the first and the one an hour later report
        assert_eq!(runaways(&out), 18);
        let reports: Vec<usize> = out
            .iter()
            .enumerate()
            .filter(|(_, a)| matches!(a.verdict, Verdict::Runaway { report: true, .. }))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(reports, vec![0, 12]);
        assert_eq!(out[0].verdict, Verdict::Runaway { new_episode: true, report: true });
        assert_eq!(out[5].verdict, Verdict::Runaway { new_episode: false, report: false });
        // And the episode keeps its start and adds up what was burnt
        let last = out[17];
        assert_eq!(last.evidence.since, Some(at(3 * DAY)));
        assert_eq!(last.evidence.burnt_since, 18 * 60_000);
        assert_eq!(last.episode.unwrap().last_reported, at(3 * DAY + 13 * 300));
    }

    #[test]
    fn episode_ends_when_the_rate_returns_to_normal() {
        let mut history = series(0, 3 * 288, |_| 2_000);
        let mut next = series(3 * DAY, 6, |_| 60_000);
        next.extend(series(3 * DAY + 1_800, 3, |_| 2_000));
        let out = walk(&mut history, &next, &RunawayRules::default());
        assert_eq!(runaways(&out), 6);
        assert_eq!(out[6].verdict, Verdict::Normal);
        assert_eq!(out[6].episode, None);
        assert_eq!(out[6].evidence.since, None);
        assert_eq!(out[6].evidence.burnt_since, 0);
        assert_eq!(out[8].verdict, Verdict::Normal);
    }

    #[test]
    fn irregular_intervals_are_compared_as_rates() {
        // Given 3 days of passes alternating 4 and 15 minutes, at a steady 24,000 centicredits an hour
        let mut history = Vec::new();
        let mut s = 0;
        while s < 3 * DAY {
            let len = if history.len() % 2 == 0 { 240 } else { 900 };
            history.push(Interval { from: at(s), to: at(s + len), centicredits: 24_000 * len / 3_600 });
            s += len;
        }
        let rules = RunawayRules::default();
        // When a missed pass makes a 30-minute interval at the same rate: normal
        let long = Interval { from: at(s), to: at(s + 1_800), centicredits: 12_000 };
        let a = assess(&history, &long, None, &rules, long.to);
        assert_eq!(a.verdict, Verdict::Normal);
        assert_eq!(a.evidence.rate_per_hour, 24_000);
        assert_eq!(a.evidence.baseline_per_hour, 24_000);
        assert_eq!(a.evidence.ratio, 1.0);
        // When a 10-minute interval holds 30× the rate: a runaway
        let hot = Interval { from: at(s), to: at(s + 600), centicredits: 120_000 };
        let a = assess(&history, &hot, None, &rules, hot.to);
        assert_eq!(a.verdict, Verdict::Runaway { new_episode: true, report: true });
        assert_eq!(a.evidence.rate_per_hour, 720_000);
        assert_eq!(a.evidence.ratio, 30.0);
    }

    #[test]
    fn history_outside_the_window_and_after_the_latest_is_ignored() {
        // Given a loud month long ago and a calm last 3 days
        let mut history = series(0, 30 * 288, |_| 100_000);
        history.extend(series(30 * DAY, 3 * 288, |_| 2_000));
        // And an interval that (wrongly) lies after the latest
        history.push(Interval { from: at(70 * DAY), to: at(70 * DAY + 300), centicredits: 1_000_000 });
        // When the latest comes 25 days after the calm days, only those count
        let latest = Interval { from: at(58 * DAY), to: at(58 * DAY + 300), centicredits: 2_000 };
        let a = assess(&history, &latest, None, &RunawayRules::default(), latest.to);
        assert_eq!(a.verdict, Verdict::Normal);
        assert_eq!(a.evidence.baseline_per_hour, 24_000);
        // And 28 days after them, nothing is left: the scenario warms up again
        let latest = Interval { from: at(61 * DAY), to: at(61 * DAY + 300), centicredits: 2_000 };
        let a = assess(&history, &latest, None, &RunawayRules::default(), latest.to);
        assert_eq!(a.verdict, Verdict::WarmingUp, "history older than 28 days is not read");
    }

    #[test]
    fn history_in_any_order_gives_the_same_assessment() {
        // Given 20 days with a nightly peak, Monday batches, a missed pass every 50 and some idle passes
        let shape = |s: i64| match ((s / DAY) % 7, (s % DAY) / HOUR) {
            (_, 2) => wobble(20_000, s),
            (0, 9) => 15_000,
            _ if (s / 300) % 17 == 0 => 0,
            _ => wobble(1_000, s),
        };
        let mut sorted = Vec::new();
        let mut s = 0;
        while s < 20 * DAY {
            let len = if (s / 300) % 50 == 0 { 600 } else { 300 };
            sorted.push(Interval { from: at(s), to: at(s + len), centicredits: shape(s) });
            s += len;
        }
        let mut shuffled = sorted.clone();
        shuffled.reverse();
        shuffled.rotate_left(1_234);
        // When intervals across a day are assessed against either, the assessments are the same
        for k in 0..48 {
            let from = 20 * DAY + k * 1_800;
            let latest = Interval { from: at(from), to: at(from + 300), centicredits: 3_000 + 1_000 * (k % 5) };
            let cut = sorted.partition_point(|iv| iv.from < latest.from);
            let rules = RunawayRules::default();
            let a = assess(&sorted[..cut], &latest, None, &rules, latest.to);
            let b = assess(&shuffled, &latest, None, &rules, latest.to);
            assert_eq!(a, b, "at {}", latest.from);
        }
    }

    #[test]
    fn validation_names_the_field_and_the_rule() {
        assert_eq!(RunawayRules::default().validate(), Ok(()));
        let bad = |r: RunawayRules| r.validate().unwrap_err();
        let d = RunawayRules::default();
        let e = bad(RunawayRules { factor: 1.0, ..d });
        assert_eq!((e.field.as_str(), e.rule.as_str()), ("factor", "must be between 1.5 and 1000 (got 1)"));
        assert_eq!(bad(RunawayRules { factor: f64::NAN, ..d }).field, "factor");
        assert_eq!(bad(RunawayRules { factor: f64::INFINITY, ..d }).field, "factor");
        assert_eq!(bad(RunawayRules { factor: 1000.5, ..d }).field, "factor");
        assert_eq!(bad(RunawayRules { min_centicredits: -1, ..d }).field, "min_centicredits");
        let e = bad(RunawayRules { warmup_hours: 0, ..d });
        assert_eq!(e.to_string(), "invalid argument `warmup_hours`: must be between 1 and 672 (got 0)");
        assert_eq!(bad(RunawayRules { cooldown_minutes: 10_081, ..d }).field, "cooldown_minutes");
        assert_eq!(
            bad(RunawayRules { new_scenario_centicredits_per_hour: 0, ..d }).field,
            "new_scenario_centicredits_per_hour"
        );
        let o = RunawayOverrides { cooldown_minutes: Some(-5), ..Default::default() };
        assert_eq!(o.validate().unwrap_err().field, "cooldown_minutes");
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let o: RunawayOverrides = serde_json::from_str(r#"{"factor": 8, "cooldown_minutes": 15}"#).unwrap();
        let r = RunawayRules::default().merged(&o);
        assert_eq!(r, RunawayRules { factor: 8.0, cooldown_minutes: 15, ..RunawayRules::default() });
        assert_eq!(RunawayRules::default().merged(&RunawayOverrides::default()), RunawayRules::default());
        assert!(serde_json::from_str::<RunawayOverrides>(r#"{"tenant_id": 1}"#).is_err());
        assert_eq!(serde_json::to_string(&o).unwrap(), r#"{"factor":8.0,"cooldown_minutes":15}"#);
        // The schema carries the bounds
        let schema = serde_json::to_value(schemars::schema_for!(RunawayOverrides)).unwrap();
        let factor = &schema["properties"]["factor"];
        assert_eq!((factor["minimum"].as_f64(), factor["maximum"].as_f64()), (Some(1.5), Some(1000.0)));
        assert_eq!(schema["properties"]["warmup_hours"]["maximum"], 672);
        assert_eq!(schema["additionalProperties"], false);
    }

    #[test]
    fn evidence_serialises_with_snake_case_basis() {
        assert_eq!(Basis::parse("hour_of_week"), Some(Basis::HourOfWeek));
        assert_eq!(Basis::AbsoluteNewScenario.as_str(), "absolute_new_scenario");
        let v = serde_json::to_value(Verdict::Runaway { new_episode: true, report: false }).unwrap();
        assert_eq!(v, serde_json::json!({"kind": "runaway", "new_episode": true, "report": false}));
        assert_eq!(serde_json::to_value(Basis::HourOfDay).unwrap(), "hour_of_day");
    }
}
