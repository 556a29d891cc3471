//! Thresholds on a budget and the rule for when a crossing is recorded.
//!
//! A threshold is a percentage of the limit (1–200 %) or an absolute amount, watched on `actual` spend so
//! far or on the `forecast` of the period-end total. Amounts are compared in centi-units: centicredits for
//! credit budgets, operations × 100 for operation budgets, so both compare exactly as integers.
//!
//! The crossing rule ([`decide`]) is pure and takes the time as an argument:
//! - a threshold crosses when its value reaches the amount while it was below; that is recorded once;
//! - it is not recorded again in the same period until it has gone back below, and the cooldown since its
//!   last crossing has passed, and it reaches the amount anew;
//! - a new period starts it afresh.

use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::budget::LIMIT_MAX;
use super::validation::{self, ValidationError};

pub const PERCENT_MAX: i64 = 200;
/// Absolute thresholds may reach twice the largest limit (an overrun alarm on a large budget).
pub const ABSOLUTE_MAX: i64 = 2 * LIMIT_MAX;
/// Longest cooldown: 30 days.
pub const COOLDOWN_MAX_MINUTES: i64 = 43_200;
pub const LABEL_MAX_CHARS: usize = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdKind {
    /// `value` is a percentage of the budget's limit, 1–200.
    Percent,
    /// `value` is an amount in the budget's unit (credits or operations).
    Absolute,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Spend so far in the period.
    Actual,
    /// The forecast of the period-end total.
    Forecast,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
    Emergency,
}

str_enum!(ThresholdKind { Percent => "percent", Absolute => "absolute" });
str_enum!(Basis { Actual => "actual", Forecast => "forecast" });
str_enum!(Severity { Info => "info", Warning => "warning", Critical => "critical", Emergency => "emergency" });

/// The cooldown when none is given: an hour.
pub fn default_cooldown() -> i64 {
    60
}

/// A threshold as submitted. Checked by [`ThresholdSpec::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdDraft {
    /// "percent" of the limit or an "absolute" amount.
    pub kind: ThresholdKind,
    /// 1–200 for percent; for absolute, an amount in the budget's unit.
    #[schemars(range(min = 1, max = ABSOLUTE_MAX))]
    pub value: i64,
    /// Watch "actual" spend so far or the "forecast" period-end total.
    pub basis: Basis,
    pub severity: Severity,
    /// After a crossing, another crossing in the same period is recorded only once the value has gone
    /// back below and this many minutes have passed. Default 60; at most 43200 (30 days).
    #[serde(default = "default_cooldown")]
    #[schemars(range(min = 0, max = COOLDOWN_MAX_MINUTES))]
    pub cooldown_minutes: i64,
    /// Optional name, e.g. "80 % warning".
    #[serde(default)]
    #[schemars(length(max = LABEL_MAX_CHARS))]
    pub label: Option<String>,
}

/// A checked threshold definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct ThresholdSpec(ThresholdDraft);

impl std::ops::Deref for ThresholdSpec {
    type Target = ThresholdDraft;
    fn deref(&self) -> &ThresholdDraft {
        &self.0
    }
}

impl ThresholdSpec {
    pub fn new(d: ThresholdDraft) -> Result<Self, ValidationError> {
        let max = match d.kind {
            ThresholdKind::Percent => PERCENT_MAX,
            ThresholdKind::Absolute => ABSOLUTE_MAX,
        };
        validation::int_range("value", d.value, 1, max)?;
        validation::int_range("cooldown_minutes", d.cooldown_minutes, 0, COOLDOWN_MAX_MINUTES)?;
        let label = d.label.as_deref().map(|l| validation::text("label", l, 1, LABEL_MAX_CHARS)).transpose()?;
        Ok(Self(ThresholdDraft { label, ..d }))
    }

    pub(crate) fn from_stored(d: ThresholdDraft) -> Self {
        Self(d)
    }

    /// The amount in centi-units for a budget with this limit (whole units).
    pub fn amount_centi(&self, limit: i64) -> i64 {
        match self.kind {
            ThresholdKind::Percent => limit.saturating_mul(self.value),
            ThresholdKind::Absolute => self.value.saturating_mul(100),
        }
    }

    pub fn cooldown(&self) -> SignedDuration {
        SignedDuration::from_mins(self.cooldown_minutes)
    }

    /// A short description, e.g. "80 % of the limit on forecast" or "30000 on actual".
    pub fn describe(&self) -> String {
        let what = match self.kind {
            ThresholdKind::Percent => format!("{} % of the limit", self.value),
            ThresholdKind::Absolute => self.value.to_string(),
        };
        format!("{what} on {} spend", self.basis.as_str())
    }
}

/// A stored threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Threshold {
    /// Threshold id (UUID).
    pub id: String,
    pub budget_id: String,
    #[serde(flatten)]
    pub spec: ThresholdSpec,
    /// Pass it back to `update_threshold`.
    pub version: i64,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
    pub updated_by: String,
}

impl Threshold {
    /// A new threshold of `budget_id`, at version 1.
    pub fn new(budget_id: String, spec: ThresholdSpec, at: jiff::Timestamp, by: &str) -> Self {
        let at = super::clock::format_timestamp(at);
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            budget_id,
            spec,
            version: 1,
            created_at: at.clone(),
            created_by: by.to_owned(),
            updated_at: at,
            updated_by: by.to_owned(),
        }
    }

    /// This threshold with `patch` applied and checked, at the next version.
    pub fn patched(&self, patch: ThresholdPatch, at: jiff::Timestamp, by: &str) -> Result<Self, ValidationError> {
        if patch.is_empty() {
            return Err(ValidationError::new(
                "(arguments)",
                "nothing to update: give at least one field besides id and version",
            ));
        }
        let d = &self.spec;
        let spec = ThresholdSpec::new(ThresholdDraft {
            kind: patch.kind.unwrap_or(d.kind),
            value: patch.value.unwrap_or(d.value),
            basis: patch.basis.unwrap_or(d.basis),
            severity: patch.severity.unwrap_or(d.severity),
            cooldown_minutes: patch.cooldown_minutes.unwrap_or(d.cooldown_minutes),
            label: patch.label.unwrap_or_else(|| d.label.clone()),
        })?;
        Ok(Self {
            spec,
            version: self.version + 1,
            updated_at: super::clock::format_timestamp(at),
            updated_by: by.to_owned(),
            ..self.clone()
        })
    }
}

/// Fields to change on a threshold; `None` leaves a field as it is. For `label`, `Some(None)` removes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThresholdPatch {
    pub kind: Option<ThresholdKind>,
    pub value: Option<i64>,
    pub basis: Option<Basis>,
    pub severity: Option<Severity>,
    pub cooldown_minutes: Option<i64>,
    pub label: Option<Option<String>>,
}

impl ThresholdPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the patch changes when the threshold crosses (kind, value, basis, cooldown), which is what
    /// its automatic actions depend on; severity and label do not.
    pub fn changes_crossing(&self) -> bool {
        self.kind.is_some() || self.value.is_some() || self.basis.is_some() || self.cooldown_minutes.is_some()
    }
}

/// A recorded crossing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct CrossingEvent {
    pub id: String,
    pub threshold_id: String,
    pub budget_id: String,
    /// The period it happened in, "first_day/last_day".
    pub period_key: String,
    /// RFC 3339 UTC.
    pub crossed_at: String,
    pub basis: Basis,
    pub severity: Severity,
    /// The watched value when it crossed, in centi-units.
    pub value_centi: i64,
    /// The threshold's amount, in centi-units.
    pub amount_centi: i64,
}

/// What is remembered about a threshold between evaluations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossingState {
    /// The period this state belongs to (`PeriodWindow::key`).
    pub period_key: String,
    /// The value was at or above the amount at the last evaluation that changed the state.
    pub above: bool,
    pub last_crossed_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Record a crossing now.
    Cross,
    /// The value went back below: re-arm (no event).
    Rearm,
    Unchanged,
}

/// The crossing rule; see the module docs. `state` may belong to an earlier period.
pub fn decide(
    state: Option<&CrossingState>,
    period_key: &str,
    value: i64,
    amount: i64,
    now: Timestamp,
    cooldown: SignedDuration,
) -> Decision {
    let current = state.filter(|s| s.period_key == period_key);
    let above = current.is_some_and(|s| s.above);
    let last = current.and_then(|s| s.last_crossed_at);
    if value >= amount {
        let cooled = last.is_none_or(|t| now.duration_since(t) >= cooldown);
        if !above && cooled { Decision::Cross } else { Decision::Unchanged }
    } else if above {
        Decision::Rearm
    } else {
        Decision::Unchanged
    }
}

/// The state after applying `decision`.
pub fn next_state(
    state: Option<&CrossingState>,
    period_key: &str,
    decision: Decision,
    now: Timestamp,
) -> Option<CrossingState> {
    let current = state.filter(|s| s.period_key == period_key).cloned();
    match decision {
        Decision::Cross => {
            Some(CrossingState { period_key: period_key.into(), above: true, last_crossed_at: Some(now) })
        }
        Decision::Rearm => Some(CrossingState {
            period_key: period_key.into(),
            above: false,
            last_crossed_at: current.and_then(|s| s.last_crossed_at),
        }),
        Decision::Unchanged => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(value: i64) -> Threshold {
        let spec = ThresholdSpec::new(ThresholdDraft {
            kind: ThresholdKind::Percent,
            value,
            basis: Basis::Actual,
            severity: Severity::Warning,
            cooldown_minutes: 60,
            label: Some("early".into()),
        })
        .unwrap();
        Threshold::new("b1".into(), spec, jiff::Timestamp::UNIX_EPOCH, "alice")
    }

    #[test]
    fn a_patch_changes_only_what_it_names_and_bumps_the_version() {
        let t = stored(80);
        let at = jiff::Timestamp::from_second(60).unwrap();
        let p = t.patched(ThresholdPatch { value: Some(90), ..Default::default() }, at, "bob").unwrap();
        assert_eq!((p.spec.value, p.spec.label.as_deref(), p.version), (90, Some("early"), 2));
        assert_eq!((p.updated_by.as_str(), p.created_by.as_str(), &p.id), ("bob", "alice", &t.id));
        let unlabelled = t.patched(ThresholdPatch { label: Some(None), ..Default::default() }, at, "bob").unwrap();
        assert_eq!(unlabelled.spec.label, None);
        let e = t.patched(ThresholdPatch::default(), at, "bob").unwrap_err();
        assert_eq!(e.field, "(arguments)");
        let e = t.patched(ThresholdPatch { value: Some(201), ..Default::default() }, at, "bob").unwrap_err();
        assert_eq!(e.field, "value", "the patched threshold is checked like a new one");
    }

    #[test]
    fn only_crossing_fields_change_the_crossing() {
        assert!(
            !ThresholdPatch { severity: Some(Severity::Critical), label: Some(None), ..Default::default() }
                .changes_crossing()
        );
        for p in [
            ThresholdPatch { kind: Some(ThresholdKind::Absolute), ..Default::default() },
            ThresholdPatch { value: Some(1), ..Default::default() },
            ThresholdPatch { basis: Some(Basis::Forecast), ..Default::default() },
            ThresholdPatch { cooldown_minutes: Some(0), ..Default::default() },
        ] {
            assert!(p.changes_crossing(), "{p:?}");
        }
    }

    fn t(mins: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_mins(mins)
    }

    /// Drive the rule through a sequence of (minute, value) readings; returns the minutes of crossings.
    fn run(readings: &[(i64, &str, i64)], amount: i64, cooldown_mins: i64) -> Vec<i64> {
        let mut state: Option<CrossingState> = None;
        let mut crossings = Vec::new();
        for (minute, period, value) in readings {
            let d =
                decide(state.as_ref(), period, *value, amount, t(*minute), SignedDuration::from_mins(cooldown_mins));
            if d == Decision::Cross {
                crossings.push(*minute);
            }
            if let Some(s) = next_state(state.as_ref(), period, d, t(*minute)) {
                state = Some(s);
            }
        }
        crossings
    }

    #[test]
    fn fires_once_while_above() {
        let r = [(0, "p1", 50), (10, "p1", 80), (20, "p1", 90), (30, "p1", 120)];
        assert_eq!(run(&r, 80, 60), vec![10]);
    }

    #[test]
    fn refires_only_after_dropping_below_and_the_cooldown() {
        // Crosses at 10, drops at 20, back above at 30 (inside the 60 min cooldown): nothing; at 80 it is
        // still above and the cooldown has passed, and it had gone below: crosses anew.
        let r = [(10, "p1", 90), (20, "p1", 70), (30, "p1", 95), (80, "p1", 95)];
        assert_eq!(run(&r, 80, 60), vec![10, 80]);
        // Without dropping below, the cooldown alone never re-fires.
        let r = [(10, "p1", 90), (100, "p1", 90), (500, "p1", 99)];
        assert_eq!(run(&r, 80, 60), vec![10]);
        // Zero cooldown: every fresh crossing counts.
        let r = [(10, "p1", 90), (11, "p1", 10), (12, "p1", 90)];
        assert_eq!(run(&r, 80, 0), vec![10, 12]);
    }

    #[test]
    fn re_arms_in_the_next_period() {
        let r = [(10, "march", 90), (20, "march", 95), (30, "april", 85), (40, "april", 90)];
        assert_eq!(run(&r, 80, 60), vec![10, 30], "a new period fires even inside the cooldown");
    }

    #[test]
    fn amounts_are_exact_in_centi_units() {
        let d = |kind, value| ThresholdDraft {
            kind,
            value,
            basis: Basis::Actual,
            severity: Severity::Warning,
            cooldown_minutes: 60,
            label: None,
        };
        assert_eq!(ThresholdSpec::new(d(ThresholdKind::Percent, 80)).unwrap().amount_centi(40_000), 3_200_000);
        assert_eq!(ThresholdSpec::new(d(ThresholdKind::Absolute, 30_000)).unwrap().amount_centi(40_000), 3_000_000);
        assert_eq!(ThresholdSpec::new(d(ThresholdKind::Percent, 201)).unwrap_err().field, "value");
        assert_eq!(ThresholdSpec::new(d(ThresholdKind::Percent, 0)).unwrap_err().field, "value");
        let mut cd = d(ThresholdKind::Percent, 80);
        cd.cooldown_minutes = -1;
        assert_eq!(ThresholdSpec::new(cd).unwrap_err().field, "cooldown_minutes");
        assert_eq!(
            ThresholdSpec::new(d(ThresholdKind::Percent, 80)).unwrap().describe(),
            "80 % of the limit on actual spend"
        );
    }
}
