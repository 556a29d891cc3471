//! Automated actions: what a threshold does when it is crossed, which scenarios a pause plan picks, and
//! the life of a plan. Pure: no IO, time comes in as arguments.
//!
//! Plan states:
//!
//! ```text
//! planned ─────────────────────────────┐ (automatic)
//! awaiting_approval ─┬─ approved ──────┴─ executing ─┬─ executed ──────────┬─ reversed
//!                    ├─ rejected                     └─ partially_failed ──┘
//!                    └─ expired
//! ```
//!
//! A pause plan never touches a scenario that was already inactive when it ran, and a reversal only
//! resumes scenarios the plan itself stopped (see [`ItemStatus`]).

use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validation::ValidationError;

/// Largest `top_n`.
pub const TOP_N_MAX: i64 = 1000;
/// Longest approval window: 30 days.
pub const APPROVAL_TTL_MAX_MINUTES: i64 = 43_200;

/// What a threshold action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Send a `threshold_crossed` event to the tenant's webhooks.
    Notify,
    /// Create a plan that deactivates the scenarios the selector picks.
    PauseScenarios,
}

/// Which scenarios a pause plan picks, among the active scenarios in the budget's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SelectorKind {
    /// Every active scenario in scope, critical ones included (needs budget:emergency_controls).
    All,
    /// Every active scenario in scope not marked critical.
    NonCritical,
    /// The `top_n` active, non-critical scenarios with the highest consumption this period.
    TopN,
}

/// Run at once, or wait for a second principal's approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Automatic,
    RequiresApproval,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    /// Created by an automatic action; runs at the evaluator's next pass (or at once).
    Planned,
    AwaitingApproval,
    Approved,
    Rejected,
    /// Not approved in time.
    Expired,
    Executing,
    Executed,
    /// Executed, but Make refused or could not be reached for some scenarios (see the items).
    PartiallyFailed,
    Reversed,
    /// Announced, and runs at `run_at` unless a principal cancels it first (a delayed plan).
    Scheduled,
    /// Cancelled while scheduled; nothing was paused.
    Cancelled,
}

/// What happened to one scenario of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// Not handled yet.
    Pending,
    /// A stop request is (or was) on its way to Make; if the scenario is inactive now, this plan stopped it.
    StopSent,
    /// Deactivated by this plan.
    Stopped,
    /// Already inactive when the plan ran: someone else stopped it, and a reversal leaves it alone.
    AlreadyInactive,
    /// Make refused the stop, or could not be reached, after every attempt.
    Failed,
    /// Activated again by a reversal.
    Resumed,
    /// Found active at reversal (someone started it since): left as it is.
    LeftActive,
    /// At reversal, another executed plan still holds it paused: left paused (that plan's reversal resumes it).
    HeldByOtherPlan,
    /// The reversal could not start it (see the error).
    ResumeFailed,
}

str_enum!(ActionKind { Notify => "notify", PauseScenarios => "pause_scenarios" });
str_enum!(SelectorKind { All => "all", NonCritical => "non_critical", TopN => "top_n" });
str_enum!(Mode { Automatic => "automatic", RequiresApproval => "requires_approval" });
str_enum!(PlanState {
    Planned => "planned", AwaitingApproval => "awaiting_approval", Approved => "approved", Rejected => "rejected",
    Expired => "expired", Executing => "executing", Executed => "executed", PartiallyFailed => "partially_failed",
    Reversed => "reversed", Scheduled => "scheduled", Cancelled => "cancelled",
});
/// What made a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanOrigin {
    /// A threshold's crossing and one of its pause actions.
    Threshold,
    /// A runaway detection and the budget's runaway rule.
    Runaway,
}

str_enum!(PlanOrigin { Threshold => "threshold", Runaway => "runaway" });
str_enum!(ItemStatus {
    Pending => "pending", StopSent => "stop_sent", Stopped => "stopped", AlreadyInactive => "already_inactive",
    Failed => "failed", Resumed => "resumed", LeftActive => "left_active", HeldByOtherPlan => "held_by_other_plan",
    ResumeFailed => "resume_failed",
});

impl PlanState {
    /// May a plan go from `self` to `to`?
    pub fn can_become(self, to: PlanState) -> bool {
        use PlanState::*;
        matches!(
            (self, to),
            (AwaitingApproval, Approved | Rejected | Expired | Scheduled)
                | (Planned | Approved, Executing)
                | (Scheduled, Executing | Cancelled)
                | (Executing, Executing | Executed | PartiallyFailed)
                | (Executed | PartiallyFailed, Reversed)
        )
    }

    /// Waiting for, or in the middle of, execution: the executor picks these up (a scheduled plan once
    /// its time has come).
    pub fn is_runnable(self) -> bool {
        matches!(self, PlanState::Planned | PlanState::Approved | PlanState::Executing | PlanState::Scheduled)
    }

    /// Whether a principal may still cancel the plan before it acts.
    pub fn is_cancellable(self) -> bool {
        self == PlanState::Scheduled
    }
}

/// A scenario selector as given: a kind and, for `top_n`, how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// "all", "non_critical" or "top_n".
    pub kind: SelectorKind,
    /// For "top_n" only: how many scenarios, 1–1000.
    #[serde(default)]
    #[schemars(range(min = 1, max = TOP_N_MAX))]
    pub top_n: Option<i64>,
}

impl Selector {
    /// Check the pairing of kind and `top_n`; `field` is the selector's path in the call.
    pub fn check(self, field: &str) -> Result<Self, ValidationError> {
        match (self.kind, self.top_n) {
            (SelectorKind::TopN, None) => Err(ValidationError::new(format!("{field}.top_n"), "is required for top_n")),
            (SelectorKind::TopN, Some(n)) if !(1..=TOP_N_MAX).contains(&n) => {
                Err(ValidationError::new(format!("{field}.top_n"), format!("must be between 1 and {TOP_N_MAX}")))
            }
            (SelectorKind::All | SelectorKind::NonCritical, Some(_)) => {
                Err(ValidationError::new(format!("{field}.top_n"), "is only allowed with kind top_n"))
            }
            _ => Ok(self),
        }
    }

    /// Whether configuring or running this selector needs budget:emergency_controls.
    pub fn needs_emergency_controls(self) -> bool {
        self.kind == SelectorKind::All
    }

    pub fn describe(self) -> String {
        match (self.kind, self.top_n) {
            (SelectorKind::All, _) => "all active scenarios in scope".into(),
            (SelectorKind::NonCritical, _) => "all active non-critical scenarios in scope".into(),
            (SelectorKind::TopN, Some(1)) => "the highest-consuming active non-critical scenario in scope".into(),
            (SelectorKind::TopN, n) => {
                format!("the {} highest-consuming active non-critical scenarios in scope", n.unwrap_or(0))
            }
        }
    }
}

/// An action attached to a threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ThresholdAction {
    pub id: String,
    pub threshold_id: String,
    pub kind: ActionKind,
    /// For pause_scenarios.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
    /// For pause_scenarios.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// For pause_scenarios: resume the paused scenarios when the next period starts.
    pub reverse_at_period_end: bool,
    /// For pause_scenarios: announce the plan and run it this many minutes later (after approval, with
    /// requires_approval) unless someone cancels it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_minutes: Option<i64>,
    /// For pause_scenarios on forecast thresholds: this action's own confidence gate (else the server's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<ConfidenceGate>,
    pub created_at: String,
    pub created_by: String,
    /// The role `created_by` held when attaching it. An automatic pause action runs on its own only while
    /// that principal still holds what it does; otherwise its plans wait for approval. Absent for actions
    /// attached before roles were recorded (they wait for approval too).
    pub created_role: Option<String>,
    /// The transport `created_by` came through (stdio, http, …).
    #[serde(skip)]
    pub created_transport: Option<String>,
    /// The API token `created_by` used, if any: a revoked or expired token suspends automatic runs.
    #[serde(skip)]
    pub created_token_id: Option<String>,
}

impl ThresholdAction {
    /// Whether this action changes scenarios in Make without a human approving each plan.
    pub fn acts_automatically(&self) -> bool {
        self.kind == ActionKind::PauseScenarios && self.mode == Some(Mode::Automatic)
    }
}

/// An action as asked for, before it is checked: what `add_threshold_action` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionDraft {
    pub kind: ActionKind,
    pub selector: Option<Selector>,
    pub mode: Option<Mode>,
    pub reverse_at_period_end: bool,
    pub delay_minutes: Option<i64>,
    pub gate: Option<ConfidenceGate>,
}

/// A checked [`ActionDraft`]: what a stored action holds besides its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedAction {
    pub selector: Option<Selector>,
    pub mode: Option<Mode>,
    pub delay_minutes: Option<i64>,
    pub gate: Option<ConfidenceGate>,
}

impl ActionDraft {
    /// What a valid action holds: a pause needs a selector and a mode, and may have a delay and a
    /// confidence gate; a notification takes none of these, nor a reversal at the period's end.
    pub fn check(self) -> Result<CheckedAction, ValidationError> {
        match self.kind {
            ActionKind::Notify => {
                let only_for_pause = "is only allowed with kind pause_scenarios";
                let given = [
                    ("selector", self.selector.is_some()),
                    ("mode", self.mode.is_some()),
                    ("reverse_at_period_end", self.reverse_at_period_end),
                    ("delay_minutes", self.delay_minutes.is_some()),
                    ("gate", self.gate.is_some()),
                ];
                if let Some((field, _)) = given.iter().find(|(_, given)| *given) {
                    return Err(ValidationError::new(*field, only_for_pause));
                }
                Ok(CheckedAction { selector: None, mode: None, delay_minutes: None, gate: None })
            }
            ActionKind::PauseScenarios => {
                let selector = self
                    .selector
                    .ok_or_else(|| ValidationError::new("selector", "is required for pause_scenarios"))?
                    .check("selector")?;
                let mode = self.mode.ok_or_else(|| ValidationError::new("mode", "is required for pause_scenarios"))?;
                if let Some(d) = self.delay_minutes
                    && !(1..=DELAY_MAX_MINUTES).contains(&d)
                {
                    return Err(ValidationError::new(
                        "delay_minutes",
                        format!("must be 1 to {DELAY_MAX_MINUTES} minutes (got {d})"),
                    ));
                }
                let gate = self.gate.map(|g| g.check("gate")).transpose()?;
                Ok(CheckedAction {
                    selector: Some(selector),
                    mode: Some(mode),
                    delay_minutes: self.delay_minutes,
                    gate,
                })
            }
        }
    }
}

/// Bounds of an action's delay: up to a week.
pub const DELAY_MAX_MINUTES: i64 = 10_080;

/// The confidence levels, in percent, that gate what a pause may do on a forecast crossing (seed 000
/// §5.1, false-positive mitigation): at or above `act` the pause runs as attached; at or above `delay`
/// it is announced and runs after a delay unless someone cancels it; at or above `alert` the crossing
/// only alerts; below that it does nothing beyond being recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfidenceGate {
    /// Percent probability of ending over the limit from which the pause acts as attached. Default 95.
    #[schemars(range(min = 1, max = 100))]
    pub act: i64,
    /// From which it is scheduled with a delay instead. Default 80.
    #[schemars(range(min = 1, max = 100))]
    pub delay: i64,
    /// From which it only alerts. Default 60.
    #[schemars(range(min = 1, max = 100))]
    pub alert: i64,
}

impl Default for ConfidenceGate {
    fn default() -> Self {
        Self { act: 95, delay: 80, alert: 60 }
    }
}

/// What the gate lets a pause on a forecast crossing do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GateVerdict {
    /// Plan as attached.
    Act,
    /// Plan, scheduled to run after a delay unless cancelled.
    Delay,
    /// No plan; an alert says what the forecast sees.
    AlertOnly,
    /// No plan, no alert: the crossing is recorded, that is all.
    Nothing,
}

impl ConfidenceGate {
    /// The levels must be percentages in order: `alert ≤ delay ≤ act`.
    pub fn check(self, field: &str) -> Result<Self, ValidationError> {
        for (name, v) in [("act", self.act), ("delay", self.delay), ("alert", self.alert)] {
            if !(1..=100).contains(&v) {
                return Err(ValidationError::new(format!("{field}.{name}"), format!("must be 1 to 100 (got {v})")));
            }
        }
        if !(self.alert <= self.delay && self.delay <= self.act) {
            return Err(ValidationError::new(field, "needs alert ≤ delay ≤ act"));
        }
        Ok(self)
    }

    /// The verdict for a probability of ending over the limit, in permille (0–1000).
    pub fn verdict(self, probability_permille: i64) -> GateVerdict {
        let p = probability_permille;
        if p >= self.act * 10 {
            GateVerdict::Act
        } else if p >= self.delay * 10 {
            GateVerdict::Delay
        } else if p >= self.alert * 10 {
            GateVerdict::AlertOnly
        } else {
            GateVerdict::Nothing
        }
    }
}

/// A scenario in scope as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub scenario_id: i64,
    pub organization_id: i64,
    pub name: String,
    pub critical: bool,
    pub is_active: bool,
    /// Consumption this period, centi-units of the budget's unit.
    pub consumption_centi: i64,
}

/// A scenario a plan will pause, with what pausing it is expected to save.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Pick {
    pub scenario_id: i64,
    pub organization_id: i64,
    pub name: String,
    pub critical: bool,
    /// Consumption this period so far, in centi-units of the budget's unit.
    pub consumption_centi: i64,
    /// Its average daily consumption this period times the days left, in centi-units.
    pub expected_saving_centi: i64,
}

/// Pick the scenarios `selector` pauses, highest consumption first (ties by id). Only active scenarios are
/// picked: an inactive one has nothing to pause, and a later reversal must not start it. `elapsed_days`
/// (at least 1) and `remaining_days` give the expected saving: the average daily consumption so far
/// times the days left.
pub fn select(candidates: &[Candidate], selector: Selector, elapsed_days: i64, remaining_days: i64) -> Vec<Pick> {
    let mut eligible: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.is_active)
        .filter(|c| selector.kind == SelectorKind::All || !c.critical)
        .collect();
    eligible.sort_by(|a, b| b.consumption_centi.cmp(&a.consumption_centi).then(a.scenario_id.cmp(&b.scenario_id)));
    if selector.kind == SelectorKind::TopN {
        let n = usize::try_from(selector.top_n.unwrap_or(0)).unwrap_or(0);
        eligible.retain(|c| c.consumption_centi > 0);
        eligible.truncate(n);
    }
    eligible
        .into_iter()
        .map(|c| Pick {
            scenario_id: c.scenario_id,
            organization_id: c.organization_id,
            name: c.name.clone(),
            critical: c.critical,
            consumption_centi: c.consumption_centi,
            expected_saving_centi: expected_saving(c.consumption_centi, elapsed_days, remaining_days),
        })
        .collect()
}

/// Average daily consumption so far times the days left, rounded down (integers throughout).
pub fn expected_saving(consumption_centi: i64, elapsed_days: i64, remaining_days: i64) -> i64 {
    let per_day = i128::from(consumption_centi.max(0));
    let saved = per_day * i128::from(remaining_days.max(0)) / i128::from(elapsed_days.max(1));
    i64::try_from(saved).unwrap_or(i64::MAX)
}

/// When an approval request expires.
pub fn approval_deadline(requested_at: Timestamp, ttl_minutes: i64) -> Timestamp {
    requested_at
        .checked_add(SignedDuration::from_mins(ttl_minutes.clamp(1, APPROVAL_TTL_MAX_MINUTES)))
        .unwrap_or(Timestamp::MAX)
}

/// Why an approval is refused, if it is.
pub fn approval_refusal(
    requested_by: &str,
    approver: &str,
    deadline: Option<Timestamp>,
    now: Timestamp,
) -> Option<String> {
    if requested_by == approver {
        return Some(format!(
            "`{approver}` requested this plan and cannot approve it; another principal with \
             budget:execute_automated_actions must"
        ));
    }
    match deadline {
        Some(d) if now >= d => Some(format!("the approval window closed at {d}; the plan has expired")),
        _ => None,
    }
}

/// The final state of an execution from its items' statuses.
pub fn outcome(items: &[ItemStatus]) -> PlanState {
    if items.contains(&ItemStatus::Failed) { PlanState::PartiallyFailed } else { PlanState::Executed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_follows_the_seed_levels() {
        let g = ConfidenceGate::default();
        assert_eq!(g.verdict(970), GateVerdict::Act);
        assert_eq!(g.verdict(950), GateVerdict::Act, "at the level counts");
        assert_eq!(g.verdict(949), GateVerdict::Delay);
        assert_eq!(g.verdict(800), GateVerdict::Delay);
        assert_eq!(g.verdict(700), GateVerdict::AlertOnly);
        assert_eq!(g.verdict(599), GateVerdict::Nothing);
        assert!(ConfidenceGate { act: 90, delay: 95, alert: 60 }.check("gate").is_err(), "out of order");
        assert_eq!(ConfidenceGate { act: 101, ..g }.check("gate").unwrap_err().field, "gate.act");
        let all_or_nothing = ConfidenceGate { act: 70, delay: 70, alert: 70 }.check("gate").unwrap();
        assert_eq!(
            (all_or_nothing.verdict(700), all_or_nothing.verdict(699)),
            (GateVerdict::Act, GateVerdict::Nothing)
        );
    }

    #[test]
    fn scheduled_plans_run_or_are_cancelled() {
        use PlanState::*;
        assert!(AwaitingApproval.can_become(Scheduled), "approved with a delay");
        assert!(Scheduled.can_become(Executing) && Scheduled.can_become(Cancelled));
        assert!(!Cancelled.can_become(Executing), "a cancelled plan never runs");
        assert!(Scheduled.is_cancellable() && !Executing.is_cancellable() && !Planned.is_cancellable());
    }

    #[test]
    fn action_drafts_pair_kind_selector_and_mode() {
        let top = Selector { kind: SelectorKind::TopN, top_n: Some(3) };
        let draft = |kind, selector, mode, reverse| ActionDraft {
            kind,
            selector,
            mode,
            reverse_at_period_end: reverse,
            delay_minutes: None,
            gate: None,
        };
        let field = |d: ActionDraft| d.check().unwrap_err().field;
        let none = CheckedAction { selector: None, mode: None, delay_minutes: None, gate: None };
        assert_eq!(draft(ActionKind::Notify, None, None, false).check().unwrap(), none);
        let pause = draft(ActionKind::PauseScenarios, Some(top), Some(Mode::Automatic), true).check().unwrap();
        assert_eq!(pause, CheckedAction { selector: Some(top), mode: Some(Mode::Automatic), ..none });
        let delayed = ActionDraft {
            delay_minutes: Some(30),
            gate: Some(ConfidenceGate::default()),
            ..draft(ActionKind::PauseScenarios, Some(top), Some(Mode::Automatic), false)
        };
        let checked = delayed.check().unwrap();
        assert_eq!((checked.delay_minutes, checked.gate), (Some(30), Some(ConfidenceGate::default())));
        assert_eq!(field(ActionDraft { delay_minutes: Some(0), ..delayed }), "delay_minutes");
        assert_eq!(field(ActionDraft { delay_minutes: Some(DELAY_MAX_MINUTES + 1), ..delayed }), "delay_minutes");
        let upside_down = ConfidenceGate { act: 60, delay: 80, alert: 95 };
        assert_eq!(field(ActionDraft { gate: Some(upside_down), ..delayed }), "gate");
        let notify_delay = ActionDraft { delay_minutes: Some(5), ..draft(ActionKind::Notify, None, None, false) };
        assert_eq!(field(notify_delay), "delay_minutes");
        assert_eq!(field(draft(ActionKind::Notify, Some(top), None, false)), "selector");
        assert_eq!(field(draft(ActionKind::Notify, None, Some(Mode::Automatic), false)), "mode");
        assert_eq!(field(draft(ActionKind::Notify, None, None, true)), "reverse_at_period_end");
        assert_eq!(field(draft(ActionKind::PauseScenarios, None, Some(Mode::Automatic), false)), "selector");
        assert_eq!(field(draft(ActionKind::PauseScenarios, Some(top), None, false)), "mode");
        let no_n = Selector { kind: SelectorKind::TopN, top_n: None };
        assert_eq!(
            field(draft(ActionKind::PauseScenarios, Some(no_n), Some(Mode::Automatic), false)),
            "selector.top_n"
        );
    }

    fn c(id: i64, critical: bool, active: bool, consumption: i64) -> Candidate {
        Candidate {
            scenario_id: id,
            organization_id: 1,
            name: format!("s{id}"),
            critical,
            is_active: active,
            consumption_centi: consumption,
        }
    }

    fn ids(p: &[Pick]) -> Vec<i64> {
        p.iter().map(|p| p.scenario_id).collect()
    }

    #[test]
    fn selectors_pick_active_scenarios_and_spare_critical_ones() {
        let cands = [c(1, false, true, 500), c(2, true, true, 900), c(3, false, false, 800), c(4, false, true, 700)];
        let all = Selector { kind: SelectorKind::All, top_n: None };
        let non_critical = Selector { kind: SelectorKind::NonCritical, top_n: None };
        let top1 = Selector { kind: SelectorKind::TopN, top_n: Some(1) };
        assert_eq!(ids(&select(&cands, all, 10, 20)), vec![2, 4, 1], "inactive 3 is never picked");
        assert_eq!(ids(&select(&cands, non_critical, 10, 20)), vec![4, 1]);
        assert_eq!(ids(&select(&cands, top1, 10, 20)), vec![4], "the critical top consumer is spared");
        let top9 = Selector { kind: SelectorKind::TopN, top_n: Some(9) };
        let quiet = [c(5, false, true, 0), c(6, false, true, 10)];
        assert_eq!(ids(&select(&quiet, top9, 10, 20)), vec![6], "top_n skips scenarios that consumed nothing");
    }

    #[test]
    fn expected_saving_is_the_daily_average_times_days_left() {
        assert_eq!(expected_saving(1000, 10, 20), 2000);
        assert_eq!(expected_saving(1000, 3, 1), 333, "rounded down");
        assert_eq!(expected_saving(1000, 0, 5), 5000, "day one counts as one elapsed day");
        assert_eq!(expected_saving(1000, 10, 0), 0);
        let p = select(&[c(1, false, true, 3100)], Selector { kind: SelectorKind::All, top_n: None }, 31, 0);
        assert_eq!(p[0].expected_saving_centi, 0);
    }

    #[test]
    fn selector_rules_name_the_field() {
        let e = Selector { kind: SelectorKind::TopN, top_n: None }.check("selector").unwrap_err();
        assert_eq!(e.field, "selector.top_n");
        let e = Selector { kind: SelectorKind::TopN, top_n: Some(0) }.check("selector").unwrap_err();
        assert!(e.rule.contains("between 1 and 1000"), "{e}");
        let e = Selector { kind: SelectorKind::All, top_n: Some(3) }.check("selector").unwrap_err();
        assert!(e.rule.contains("only allowed with kind top_n"), "{e}");
        assert!(Selector { kind: SelectorKind::All, top_n: None }.needs_emergency_controls());
        assert!(!Selector { kind: SelectorKind::NonCritical, top_n: None }.needs_emergency_controls());
    }

    #[test]
    fn plan_states_follow_the_diagram() {
        use PlanState::*;
        assert!(AwaitingApproval.can_become(Approved));
        assert!(Approved.can_become(Executing));
        assert!(Planned.can_become(Executing));
        assert!(Executing.can_become(PartiallyFailed));
        assert!(Executed.can_become(Reversed));
        assert!(!AwaitingApproval.can_become(Executing), "approval cannot be skipped");
        assert!(!Rejected.can_become(Approved));
        assert!(!Expired.can_become(Approved));
        assert!(!Reversed.can_become(Executing));
        assert!(!Planned.can_become(Reversed));
        for s in
            [Planned, AwaitingApproval, Approved, Rejected, Expired, Executing, Executed, PartiallyFailed, Reversed]
        {
            assert_eq!(PlanState::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn requesters_cannot_approve_and_approvals_expire() {
        let t0: Timestamp = "2026-03-20T10:00:00Z".parse().unwrap();
        let deadline = approval_deadline(t0, 60);
        assert!(approval_refusal("alice", "alice", Some(deadline), t0).unwrap().contains("cannot approve"));
        assert_eq!(approval_refusal("alice", "bob", Some(deadline), t0), None);
        let late = t0.checked_add(SignedDuration::from_mins(60)).unwrap();
        assert!(approval_refusal("alice", "bob", Some(deadline), late).unwrap().contains("expired"));
    }

    #[test]
    fn one_failure_makes_a_partial_failure() {
        use ItemStatus::*;
        assert_eq!(outcome(&[Stopped, AlreadyInactive]), PlanState::Executed);
        assert_eq!(outcome(&[Stopped, Failed]), PlanState::PartiallyFailed);
        assert_eq!(outcome(&[]), PlanState::Executed);
    }
}
