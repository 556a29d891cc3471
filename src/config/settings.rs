//! The tunables of the rooms that `Config` resolves: automated actions, the usage sync and the rate limits.
//! They live here, not in their rooms, so the configuration depends on no room that depends on the app
//! (no import circle); each room re-exports its own.

use std::time::Duration;

/// Tunables of automated actions.
#[derive(Debug, Clone)]
pub struct ActionSettings {
    /// How long an approval request stays open.
    pub approval_ttl_minutes: i64,
    /// How long a lease (on a budget's evaluation, a plan's execution, a notification) lasts without renewal.
    pub lease: Duration,
    /// Rounds per scenario (read state, stop if needed) before it counts as failed.
    pub item_rounds: u32,
    /// Pause between rounds for one scenario.
    pub round_delay: Duration,
    /// Webhook delivery attempts before a notification counts as failed.
    pub webhook_max_attempts: u32,
    pub webhook_retry_base: Duration,
    pub webhook_retry_max: Duration,
    /// `pause_scenarios` asks the human to confirm (where the client supports elicitation) when pausing
    /// more scenarios than this at once.
    pub confirm_pause_over: usize,
    /// What pauses on forecast crossings may do at which probability of ending over the limit, unless an
    /// action has its own gate.
    pub gate: crate::domain::action::ConfidenceGate,
    /// The delay of a plan the gate delays, when its action has no delay of its own.
    pub gated_delay_minutes: i64,
}

impl Default for ActionSettings {
    fn default() -> Self {
        Self {
            approval_ttl_minutes: 24 * 60,
            lease: Duration::from_secs(60),
            item_rounds: 3,
            round_delay: Duration::from_secs(2),
            webhook_max_attempts: 8,
            webhook_retry_base: Duration::from_secs(5),
            webhook_retry_max: Duration::from_secs(3600),
            confirm_pause_over: 5,
            gate: crate::domain::action::ConfidenceGate::default(),
            gated_delay_minutes: 60,
        }
    }
}

/// How a sync spends its calls.
#[derive(Debug, Clone, Copy)]
pub struct SyncSettings {
    /// Seconds between passes (the evaluator's interval; 300 when the evaluator is off).
    pub interval_secs: u64,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self { interval_secs: 300 }
    }
}

/// Configured allowances; 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    pub reads_per_hour: u32,
    pub modifications_per_hour: u32,
    pub automated_actions_per_hour: u32,
    pub failed_auths_per_minute: u32,
    /// Denied calls written to the audit log per principal per hour (the rest are summarised).
    pub denied_audits_per_hour: u32,
    /// How often the summaries of unrecorded denials are written.
    pub denial_summary: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            reads_per_hour: 1000,
            modifications_per_hour: 100,
            automated_actions_per_hour: 50,
            failed_auths_per_minute: 10,
            denied_audits_per_hour: 20,
            denial_summary: Duration::from_secs(300),
        }
    }
}

/// Which tools a server offers: whole toolsets (the catalogue's groups, or `all`) and single tools on
/// top; `read_only` (from [`Config`](super::Config)) then keeps only the read tools of those. The names
/// are checked against the catalogue when `serve` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolChoice {
    pub toolsets: Vec<String>,
    pub tools: Vec<String>,
    pub read_only: bool,
}

/// The toolsets served when none are chosen: setting budgets up and watching them. `control`,
/// `actions`, `webhooks` and `audit` are asked for (or `all`).
pub const DEFAULT_TOOLSETS: &[&str] = &["budgets", "status", "thresholds", "make"];

impl Default for ToolChoice {
    fn default() -> Self {
        Self {
            toolsets: DEFAULT_TOOLSETS.iter().map(|s| (*s).to_owned()).collect(),
            tools: Vec::new(),
            read_only: false,
        }
    }
}

impl ToolChoice {
    /// Every tool (for tests, benchmarks and the catalogue).
    pub fn all() -> Self {
        Self { toolsets: vec!["all".into()], ..Self::default() }
    }
}
