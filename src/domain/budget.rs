//! Budgets: what a budget is, the bounds every field obeys, and how a budget is created and patched.
//!
//! Input arrives as a [`BudgetDraft`] (deserialised straight from tool arguments; it may be invalid).
//! [`BudgetSpec::new`] is the only way to obtain a `BudgetSpec`, and it checks and normalises every field,
//! so a stored or audited budget is always valid. The bounds below are used both by the JSON schemas
//! that agents see and by the checks themselves, so the two cannot drift apart.

use std::ops::Deref;

use jiff::Timestamp;
use jiff::civil::Date;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ids::BudgetId;
use super::validation::{self, ValidationError};

pub const NAME_MAX_CHARS: usize = 120;
pub const DESCRIPTION_MAX_CHARS: usize = 2_000;
/// Upper bound of a limit: far above any Make plan, and below 2^53 so it survives JSON in every client.
pub const LIMIT_MAX: i64 = 1_000_000_000_000;
pub const PRICE_PER_1000_MAX_MINOR: i64 = 1_000_000_000;
/// Make ids are positive integers; this bound keeps them exact in JSON numbers.
pub const MAKE_ID_MAX: i64 = validation::JSON_INT_MAX;
pub const SCOPE_LIST_MAX: usize = 500;
pub const TIMEZONE_MAX_CHARS: usize = 64;
/// Longest custom period: ten years.
pub const CUSTOM_PERIOD_MAX_DAYS: i32 = 3_660;

/// The unit a budget counts in. Make bills credits (since August 2025); plans on the older model count
/// operations. One operation of a non-AI module costs one credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Credits,
    Operations,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Credits => "credits",
            Unit::Operations => "operations",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "credits" => Some(Unit::Credits),
            "operations" => Some(Unit::Operations),
            _ => None,
        }
    }
}

/// Optional money view: what the budget's units cost, so spend can also be shown in a currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyView {
    /// ISO 4217 code, e.g. "EUR".
    #[schemars(length(min = 3, max = 3), pattern(r"^[A-Z]{3}$"))]
    pub currency: String,
    /// Price of 1,000 units in the currency's minor unit: 9.00 USD per 1,000 credits is 900.
    #[schemars(range(min = 1, max = PRICE_PER_1000_MAX_MINOR))]
    pub price_per_1000_units_minor: i64,
}

/// The window a budget's limit applies to. Calendar periods are computed in the budget's time zone.
//
// Deserialised by hand (through [`PeriodArgs`]): serde's internally tagged enums ignore extra fields of
// unit variants, so `{"kind":"monthly","start":…}` would pass silently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Period {
    /// Each calendar day.
    Daily,
    /// Each ISO week, Monday to Sunday.
    Weekly,
    /// Each calendar month.
    Monthly,
    /// The Make organization's own billing (reset) period, as reported by Make.
    BillingCycle,
    /// A fixed range of calendar days, both ends included.
    Custom {
        /// First day, YYYY-MM-DD.
        #[schemars(with = "String", length(min = 10, max = 10), extend("format" = "date"))]
        start: Date,
        /// Last day (included), YYYY-MM-DD; not before `start`.
        #[schemars(with = "String", length(min = 10, max = 10), extend("format" = "date"))]
        end: Date,
    },
}

/// The kinds of [`Period`], as a caller names them.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum PeriodKindArg {
    Daily,
    Weekly,
    Monthly,
    BillingCycle,
    Custom,
}

/// A period as sent: every field a period may have, checked against its kind in [`Period`]'s deserialiser.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeriodArgs {
    kind: PeriodKindArg,
    #[serde(default)]
    start: Option<Date>,
    #[serde(default)]
    end: Option<Date>,
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let PeriodArgs { kind, start, end } = PeriodArgs::deserialize(d)?;
        let only_custom = |field: &str| D::Error::custom(format!("`{field}` is only allowed with kind custom"));
        Ok(match (kind, start, end) {
            (PeriodKindArg::Custom, Some(start), Some(end)) => Period::Custom { start, end },
            (PeriodKindArg::Custom, None, _) => return Err(D::Error::missing_field("start")),
            (PeriodKindArg::Custom, _, None) => return Err(D::Error::missing_field("end")),
            (_, Some(_), _) => return Err(only_custom("start")),
            (_, _, Some(_)) => return Err(only_custom("end")),
            (PeriodKindArg::Daily, None, None) => Period::Daily,
            (PeriodKindArg::Weekly, None, None) => Period::Weekly,
            (PeriodKindArg::Monthly, None, None) => Period::Monthly,
            (PeriodKindArg::BillingCycle, None, None) => Period::BillingCycle,
        })
    }
}

impl Period {
    pub fn kind(&self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::BillingCycle => "billing_cycle",
            Period::Custom { .. } => "custom",
        }
    }

    /// Rebuild from stored columns; `None` if they do not describe a period.
    pub fn from_parts(kind: &str, start: Option<Date>, end: Option<Date>) -> Option<Self> {
        Some(match (kind, start, end) {
            ("daily", None, None) => Period::Daily,
            ("weekly", None, None) => Period::Weekly,
            ("monthly", None, None) => Period::Monthly,
            ("billing_cycle", None, None) => Period::BillingCycle,
            ("custom", Some(start), Some(end)) => Period::Custom { start, end },
            _ => return None,
        })
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if let Period::Custom { start, end } = self {
            if end < start {
                return Err(ValidationError::new("end", format!("must not be before start ({start})")));
            }
            let days = start.until(*end).map(|s| s.get_days()).unwrap_or(i32::MAX);
            if days >= CUSTOM_PERIOD_MAX_DAYS {
                return Err(ValidationError::new(
                    "end",
                    format!("a custom period may span at most {CUSTOM_PERIOD_MAX_DAYS} days"),
                ));
            }
        }
        Ok(())
    }
}

/// Which Make scenarios a budget counts. A scenario is in scope when it belongs to the organization,
/// and to one of `team_ids` (if any are given), and to one of `folder_ids` (if any), and is one of
/// `scenario_ids` (if any), and is not in `excluded_scenario_ids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Make organization id (in the Make URL).
    #[schemars(range(min = 1, max = MAKE_ID_MAX))]
    pub organization_id: i64,
    /// Only these Make team ids (empty: all).
    #[serde(default)]
    #[schemars(length(max = SCOPE_LIST_MAX), inner(range(min = 1, max = MAKE_ID_MAX)))]
    pub team_ids: Vec<i64>,
    /// Only scenarios in these folder ids (empty: any).
    #[serde(default)]
    #[schemars(length(max = SCOPE_LIST_MAX), inner(range(min = 1, max = MAKE_ID_MAX)))]
    pub folder_ids: Vec<i64>,
    /// Only these scenario ids (empty: all that match).
    #[serde(default)]
    #[schemars(length(max = SCOPE_LIST_MAX), inner(range(min = 1, max = MAKE_ID_MAX)))]
    pub scenario_ids: Vec<i64>,
    /// Never count these Make scenario ids.
    #[serde(default)]
    #[schemars(length(max = SCOPE_LIST_MAX), inner(range(min = 1, max = MAKE_ID_MAX)))]
    pub excluded_scenario_ids: Vec<i64>,
}

impl Scope {
    /// Whether a scenario of the scope's organization, in `team` and `folder`, counts toward the budget.
    pub fn includes(&self, scenario: i64, team: Option<i64>, folder: Option<i64>) -> bool {
        let listed = |ids: &[i64], v: Option<i64>| ids.is_empty() || v.is_some_and(|v| ids.binary_search(&v).is_ok());
        listed(&self.team_ids, team)
            && listed(&self.folder_ids, folder)
            && (self.scenario_ids.is_empty() || self.scenario_ids.binary_search(&scenario).is_ok())
            && self.excluded_scenario_ids.binary_search(&scenario).is_err()
    }

    /// True when the scope is a whole organization (no narrowing filter).
    pub fn is_whole_organization(&self) -> bool {
        self.team_ids.is_empty()
            && self.folder_ids.is_empty()
            && self.scenario_ids.is_empty()
            && self.excluded_scenario_ids.is_empty()
    }

    /// True when the scope is whole teams (teams given, nothing else narrowing).
    pub fn is_whole_teams(&self) -> bool {
        !self.team_ids.is_empty()
            && self.folder_ids.is_empty()
            && self.scenario_ids.is_empty()
            && self.excluded_scenario_ids.is_empty()
    }

    fn normalised(mut self) -> Result<Self, ValidationError> {
        validation::int_range("organization_id", self.organization_id, 1, MAKE_ID_MAX)?;
        for (field, list) in [
            ("team_ids", &mut self.team_ids),
            ("folder_ids", &mut self.folder_ids),
            ("scenario_ids", &mut self.scenario_ids),
            ("excluded_scenario_ids", &mut self.excluded_scenario_ids),
        ] {
            if list.len() > SCOPE_LIST_MAX {
                return Err(ValidationError::new(
                    field,
                    format!("may hold at most {SCOPE_LIST_MAX} ids (got {})", list.len()),
                ));
            }
            for (i, id) in list.iter().enumerate() {
                validation::int_range(&format!("[{i}]"), *id, 1, MAKE_ID_MAX).map_err(|e| e.within(field))?;
            }
            list.sort_unstable();
            list.dedup();
        }
        if let Some(both) = self.excluded_scenario_ids.iter().find(|id| self.scenario_ids.binary_search(id).is_ok()) {
            return Err(ValidationError::new(
                "excluded_scenario_ids",
                format!(
                    "scenario {both} is also listed in scenario_ids; a scenario cannot be both included and excluded"
                ),
            ));
        }
        Ok(self)
    }
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

fn default_true() -> bool {
    true
}

/// A budget as submitted: every field a caller sets. Not yet checked; see [`BudgetSpec::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetDraft {
    /// Short name, unique within the tenant.
    #[schemars(length(min = 1, max = NAME_MAX_CHARS))]
    pub name: String,
    /// What this budget is for and who owns it.
    #[serde(default)]
    #[schemars(length(max = DESCRIPTION_MAX_CHARS))]
    pub description: String,
    /// "credits" (Make's billing) or "operations" (legacy plans).
    pub unit: Unit,
    /// Spend allowed per period, in whole units of `unit`.
    #[schemars(range(min = 1, max = LIMIT_MAX))]
    pub limit: i64,
    /// Optional price of the unit, to also report spend in money.
    #[serde(default)]
    pub money: Option<MoneyView>,
    /// e.g. {"kind":"monthly"} or {"kind":"custom","start":"2026-01-01","end":"2026-03-31"}.
    pub period: Period,
    /// IANA time zone of the period, e.g. "Europe/Prague". Default "UTC".
    #[serde(default = "default_timezone")]
    #[schemars(length(min = 1, max = TIMEZONE_MAX_CHARS))]
    pub timezone: String,
    /// Which Make scenarios count toward this budget.
    pub scope: Scope,
    /// Inactive budgets are kept but not evaluated. Default true.
    #[serde(default = "default_true")]
    pub active: bool,
}

/// A checked and normalised budget definition. Obtainable only through [`BudgetSpec::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct BudgetSpec(BudgetDraft);

impl Deref for BudgetSpec {
    type Target = BudgetDraft;
    fn deref(&self) -> &BudgetDraft {
        &self.0
    }
}

impl BudgetSpec {
    /// Check every rule; trim and normalise (sorted, de-duplicated id lists).
    pub fn new(draft: BudgetDraft) -> Result<Self, ValidationError> {
        let BudgetDraft { name, description, unit, limit, money, period, timezone, scope, active } = draft;
        let name = validation::text("name", &name, 1, NAME_MAX_CHARS)?;
        let description = validation::text("description", &description, 0, DESCRIPTION_MAX_CHARS)?;
        let limit = validation::int_range("limit", limit, 1, LIMIT_MAX)?;
        let money = money.map(validate_money).transpose().map_err(|e| e.within("money"))?;
        period.validate().map_err(|e| e.within("period"))?;
        let timezone = validate_timezone(&timezone)?;
        let scope = scope.normalised().map_err(|e| e.within("scope"))?;
        Ok(Self(BudgetDraft { name, description, unit, limit, money, period, timezone, scope, active }))
    }

    /// Apply a patch and check the result as a whole (a patch can only produce a valid budget).
    pub fn patched(&self, patch: BudgetPatch) -> Result<Self, ValidationError> {
        if patch.is_empty() {
            return Err(ValidationError::new(
                "(arguments)",
                "nothing to update: give at least one budget field besides id and version",
            ));
        }
        let mut d = self.0.clone();
        let BudgetPatch { name, description, unit, limit, money, period, timezone, scope, active } = patch;
        if let Some(v) = name {
            d.name = v;
        }
        if let Some(v) = description {
            d.description = v;
        }
        if let Some(v) = unit {
            d.unit = v;
        }
        if let Some(v) = limit {
            d.limit = v;
        }
        if let Some(v) = money {
            d.money = v;
        }
        if let Some(v) = period {
            d.period = v;
        }
        if let Some(v) = timezone {
            d.timezone = v;
        }
        if let Some(v) = scope {
            d.scope = v;
        }
        if let Some(v) = active {
            d.active = v;
        }
        Self::new(d)
    }

    /// Rebuild a spec read back from the store. Rows were checked when written; checking them again
    /// on read would make budgets unreadable whenever a bound is tightened in a later release.
    pub(crate) fn from_stored(draft: BudgetDraft) -> Self {
        Self(draft)
    }
}

fn validate_money(m: MoneyView) -> Result<MoneyView, ValidationError> {
    if !(m.currency.len() == 3 && m.currency.bytes().all(|b| b.is_ascii_uppercase())) {
        return Err(ValidationError::new(
            "currency",
            "must be an ISO 4217 code of three upper-case letters, e.g. \"EUR\"",
        ));
    }
    validation::int_range("price_per_1000_units_minor", m.price_per_1000_units_minor, 1, PRICE_PER_1000_MAX_MINOR)?;
    Ok(m)
}

/// A time zone must be a name in the IANA database bundled into the binary (so the answer does not
/// depend on the host), e.g. "Europe/Prague", "America/New_York" or "UTC".
pub fn validate_timezone(tz: &str) -> Result<String, ValidationError> {
    let tz = tz.trim();
    if tz.is_empty() || tz.len() > TIMEZONE_MAX_CHARS || jiff::tz::db().get(tz).is_err() {
        return Err(ValidationError::new(
            "timezone",
            "must be an IANA time zone name such as \"Europe/Prague\" or \"UTC\"",
        ));
    }
    Ok(tz.to_owned())
}

/// Fields to change on an existing budget; `None` leaves a field as it is. For `money`,
/// `Some(None)` removes the money view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub unit: Option<Unit>,
    pub limit: Option<i64>,
    pub money: Option<Option<MoneyView>>,
    pub period: Option<Period>,
    pub timezone: Option<String>,
    pub scope: Option<Scope>,
    pub active: Option<bool>,
}

impl BudgetPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the patch changes when the budget's thresholds cross or what their actions pick: its
    /// limit, unit, period, time zone, scope or active flag (not its name, description or money view).
    pub fn changes_evaluation(&self) -> bool {
        self.limit.is_some()
            || self.unit.is_some()
            || self.period.is_some()
            || self.timezone.is_some()
            || self.scope.is_some()
            || self.active.is_some()
    }
}

/// A stored budget: its definition plus identity, optimistic-concurrency version and provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Budget {
    /// Budget id (UUID).
    pub id: String,
    #[serde(flatten)]
    pub spec: BudgetSpec,
    /// Starts at 1 and grows by one with every update; pass it back to `update_budget`.
    pub version: i64,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// Subject of the principal that created the budget.
    pub created_by: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
    pub updated_by: String,
}

impl Budget {
    pub fn new(id: BudgetId, spec: BudgetSpec, at: Timestamp, by: &str) -> Self {
        let at = super::clock::format_timestamp(at);
        Self {
            id: id.to_string(),
            spec,
            version: 1,
            created_at: at.clone(),
            created_by: by.to_owned(),
            updated_at: at,
            updated_by: by.to_owned(),
        }
    }

    /// The next version of this budget after an update.
    pub fn updated(&self, spec: BudgetSpec, at: Timestamp, by: &str) -> Self {
        Self {
            spec,
            version: self.version + 1,
            updated_at: super::clock::format_timestamp(at),
            updated_by: by.to_owned(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> BudgetDraft {
        serde_json::from_value(serde_json::json!({
            "name": "  Marketing  ",
            "unit": "credits",
            "limit": 40000,
            "period": {"kind": "monthly"},
            "timezone": "Europe/Prague",
            "scope": {"organization_id": 10, "team_ids": [3, 1, 3]}
        }))
        .unwrap()
    }

    fn field_of(d: BudgetDraft) -> String {
        BudgetSpec::new(d).unwrap_err().field
    }

    #[test]
    fn valid_draft_is_normalised() {
        let s = BudgetSpec::new(draft()).unwrap();
        assert_eq!(s.name, "Marketing");
        assert_eq!(s.scope.team_ids, vec![1, 3]);
        assert!(s.active);
        assert_eq!(s.description, "");
    }

    #[test]
    fn each_rule_names_its_field() {
        let mut d = draft();
        d.name = " ".into();
        assert_eq!(field_of(d), "name");

        let mut d = draft();
        d.limit = 0;
        assert_eq!(field_of(d), "limit");

        let mut d = draft();
        d.limit = LIMIT_MAX + 1;
        assert_eq!(field_of(d), "limit");

        let mut d = draft();
        d.timezone = "Mars/Olympus_Mons".into();
        assert_eq!(field_of(d), "timezone");

        let mut d = draft();
        d.description = "x".repeat(DESCRIPTION_MAX_CHARS + 1);
        assert_eq!(field_of(d), "description");

        let mut d = draft();
        d.money = Some(MoneyView { currency: "eur".into(), price_per_1000_units_minor: 900 });
        assert_eq!(field_of(d), "money.currency");

        let mut d = draft();
        d.money = Some(MoneyView { currency: "EUR".into(), price_per_1000_units_minor: 0 });
        assert_eq!(field_of(d), "money.price_per_1000_units_minor");

        let mut d = draft();
        d.scope.organization_id = 0;
        assert_eq!(field_of(d), "scope.organization_id");

        let mut d = draft();
        d.scope.folder_ids = vec![5, -1];
        assert_eq!(field_of(d), "scope.folder_ids[1]");

        let mut d = draft();
        d.scope.scenario_ids = vec![7];
        d.scope.excluded_scenario_ids = vec![7];
        assert_eq!(field_of(d), "scope.excluded_scenario_ids");

        let mut d = draft();
        d.scope.team_ids = (1..=(SCOPE_LIST_MAX as i64 + 1)).collect();
        assert_eq!(field_of(d), "scope.team_ids");
    }

    #[test]
    fn scope_membership() {
        let s = BudgetSpec::new(draft()).unwrap(); // organization 10, teams [1, 3]
        assert!(s.scope.includes(5, Some(1), None));
        assert!(!s.scope.includes(5, Some(2), None));
        assert!(!s.scope.includes(5, None, None), "a scenario of unknown team is not in a team scope");
        let mut d = draft();
        d.scope.team_ids = vec![];
        d.scope.folder_ids = vec![7];
        d.scope.excluded_scenario_ids = vec![9];
        let s = BudgetSpec::new(d).unwrap();
        assert!(s.scope.includes(5, Some(2), Some(7)));
        assert!(!s.scope.includes(5, Some(2), Some(8)));
        assert!(!s.scope.includes(9, Some(2), Some(7)));
        assert!(!s.scope.is_whole_organization() && !s.scope.is_whole_teams());
    }

    #[test]
    fn custom_period_end_must_not_precede_start() {
        let mut d = draft();
        d.period = Period::Custom { start: jiff::civil::date(2026, 3, 31), end: jiff::civil::date(2026, 3, 1) };
        let e = BudgetSpec::new(d).unwrap_err();
        assert_eq!(e.field, "period.end");
        assert!(e.rule.contains("before start"), "{e}");

        let mut d = draft();
        d.period = Period::Custom { start: jiff::civil::date(2024, 2, 29), end: jiff::civil::date(2024, 2, 29) };
        assert!(BudgetSpec::new(d).is_ok(), "a one-day custom period (on a leap day) is fine");

        let mut d = draft();
        d.period = Period::Custom { start: jiff::civil::date(2020, 1, 1), end: jiff::civil::date(2031, 1, 1) };
        assert_eq!(field_of(d), "period.end");
    }

    #[test]
    fn period_parts_round_trip() {
        for p in [
            Period::Daily,
            Period::Weekly,
            Period::Monthly,
            Period::BillingCycle,
            Period::Custom { start: jiff::civil::date(2026, 1, 1), end: jiff::civil::date(2026, 1, 31) },
        ] {
            let (s, e) = match &p {
                Period::Custom { start, end } => (Some(*start), Some(*end)),
                _ => (None, None),
            };
            assert_eq!(Period::from_parts(p.kind(), s, e), Some(p));
        }
        assert_eq!(Period::from_parts("custom", None, None), None);
    }

    #[test]
    fn periods_take_only_the_fields_of_their_kind() {
        let p = |v: serde_json::Value| serde_json::from_value::<Period>(v).map_err(|e| e.to_string());
        assert_eq!(p(serde_json::json!({"kind": "monthly"})), Ok(Period::Monthly));
        let e = p(serde_json::json!({"kind": "monthly", "start": "2026-01-01", "end": "2026-01-31"})).unwrap_err();
        assert!(e.contains("`start` is only allowed with kind custom"), "{e}");
        let e = p(serde_json::json!({"kind": "daily", "end": "2026-01-31"})).unwrap_err();
        assert!(e.contains("`end` is only allowed with kind custom"), "{e}");
        let e = p(serde_json::json!({"kind": "custom", "start": "2026-01-01"})).unwrap_err();
        assert!(e.contains("missing field `end`"), "{e}");
        let e = p(serde_json::json!({"kind": "weekly", "colour": "red"})).unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let custom = serde_json::json!({"kind": "custom", "start": "2026-01-01", "end": "2026-01-31"});
        let period = p(custom.clone()).unwrap();
        assert_eq!(serde_json::to_value(&period).unwrap(), custom, "serialises as it is read");
    }

    #[test]
    fn unknown_fields_and_enum_values_are_rejected_by_serde() {
        let mut v = serde_json::to_value(draft()).unwrap();
        v["colour"] = "red".into();
        assert!(serde_json::from_value::<BudgetDraft>(v).unwrap_err().to_string().contains("colour"));
        let mut v = serde_json::to_value(draft()).unwrap();
        v["unit"] = "euros".into();
        assert!(serde_json::from_value::<BudgetDraft>(v).unwrap_err().to_string().contains("euros"));
    }

    #[test]
    fn patch_revalidates_the_whole_budget() {
        let s = BudgetSpec::new(draft()).unwrap();
        assert_eq!(s.patched(BudgetPatch::default()).unwrap_err().field, "(arguments)");
        let p = BudgetPatch { limit: Some(-5), ..Default::default() };
        assert_eq!(s.patched(p).unwrap_err().field, "limit");
        let p = BudgetPatch { limit: Some(500), money: Some(None), ..Default::default() };
        let t = s.patched(p).unwrap();
        assert_eq!(t.limit, 500);
        assert_eq!(t.name, s.name);
    }

    #[test]
    fn updated_bumps_version_and_keeps_provenance() {
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let b = Budget::new(BudgetId::new(), BudgetSpec::new(draft()).unwrap(), at, "alice");
        let later: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let c = b.updated(b.spec.clone(), later, "bob");
        assert_eq!((c.version, c.created_by.as_str(), c.updated_by.as_str()), (2, "alice", "bob"));
        assert_eq!(c.created_at, b.created_at);
        assert_ne!(c.updated_at, b.updated_at);
    }
}
