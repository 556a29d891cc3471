//! Which synced usage counts for a budget's scope. Pure: the store reads one organization's series once
//! ([`OrgUsage`]), and [`OrgUsage::for_scope`] answers any number of scopes within it from memory.
//!
//! The rule, from widest to narrowest scope:
//! - a whole organization is read from the organization's own series;
//! - whole teams (teams given, nothing else narrowing) from the teams' series;
//! - anything narrower (folders, scenario lists, exclusions) from its scenarios' series, where a scenario
//!   belongs to the team and folder it had at the last sync.
//!
//! The organization and team series are Make's own and include scenarios deleted since, so they are
//! preferred wherever the scope allows. Days the organization's series covers are the days with synced data,
//! whatever the scope.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Scope;

/// One day of spend within a budget's scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayUsage {
    pub centicredits: i64,
    pub operations: i64,
    /// Some of it was estimated as operations × 100.
    pub estimated: bool,
    /// Some of it was estimated from consumption snapshots and not yet reconciled with Make's daily figure.
    pub unreconciled: bool,
}

/// A scenario's spend within a date range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioSpend {
    pub scenario_id: i64,
    pub name: String,
    pub centicredits: i64,
    pub operations: i64,
}

/// Usage of a budget's scope between two days.
#[derive(Debug, Clone, Default)]
pub struct ScopeUsage {
    /// Spend per day (YYYY-MM-DD), for days with synced data.
    pub days: BTreeMap<String, DayUsage>,
    /// Days for which the organization's usage has been synced (a day with no spend is still covered).
    pub covered: BTreeSet<String>,
    /// Scenarios in scope with their spend in the range, largest first.
    pub scenarios: Vec<ScenarioSpend>,
    /// For scopes read from scenario series: scenarios in scope whose history before the server first saw
    /// them has not been read from Make yet (backfill pending).
    pub scenarios_without_history: usize,
}

/// A scenario of an organization, as scopes select it: its team and folder as of the last sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioMember {
    pub id: i64,
    pub team_id: Option<i64>,
    pub folder_id: Option<i64>,
    pub name: String,
    /// Active, and its daily figures never read from Make.
    pub history_pending: bool,
}

/// Whose daily series a day of usage belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    Organization,
    Team(i64),
    Scenario(i64),
}

/// One organization's synced usage over a range of days, indexed by subject: the organization's own
/// series, each team's and each scenario's, and the organization's scenarios. Read once, it answers any
/// number of scopes (an evaluator pass over many budgets of one organization reads it once).
#[derive(Debug, Clone, Default)]
pub struct OrgUsage {
    organization: Vec<(String, DayUsage)>,
    teams: HashMap<i64, Vec<(String, DayUsage)>>,
    scenario_days: HashMap<i64, Vec<(String, DayUsage)>>,
    scenarios: Vec<ScenarioMember>,
}

impl OrgUsage {
    /// Add a scenario of the organization.
    pub fn add_scenario(&mut self, member: ScenarioMember) {
        self.scenarios.push(member);
    }

    /// Add one day (YYYY-MM-DD) of one series.
    pub fn add_day(&mut self, series: Series, day: String, usage: DayUsage) {
        let days = match series {
            Series::Organization => &mut self.organization,
            Series::Team(id) => self.teams.entry(id).or_default(),
            Series::Scenario(id) => self.scenario_days.entry(id).or_default(),
        };
        days.push((day, usage));
    }

    /// The usage of `scope` (which must be within this organization). A whole organization is read from
    /// the organization's own series, whole teams from the teams' series (these include scenarios that
    /// were deleted since), anything narrower from its scenarios. Days the organization's series covers
    /// are the days with synced data.
    pub fn for_scope(&self, scope: &Scope) -> ScopeUsage {
        fn add(days: &mut BTreeMap<String, DayUsage>, day: &str, u: &DayUsage) {
            let d = days.entry(day.to_owned()).or_default();
            d.centicredits += u.centicredits;
            d.operations += u.operations;
            d.estimated |= u.estimated;
            d.unreconciled |= u.unreconciled;
        }
        let mut out = ScopeUsage::default();
        for (day, u) in &self.organization {
            out.covered.insert(day.clone());
            if scope.is_whole_organization() {
                add(&mut out.days, day, u);
            }
        }
        if scope.is_whole_teams() {
            for team in &scope.team_ids {
                for (day, u) in self.teams.get(team).into_iter().flatten() {
                    add(&mut out.days, day, u);
                }
            }
        }
        let narrower = !scope.is_whole_organization() && !scope.is_whole_teams();
        for m in self.scenarios.iter().filter(|m| scope.includes(m.id, m.team_id, m.folder_id)) {
            if narrower && m.history_pending {
                out.scenarios_without_history += 1;
            }
            let (mut centicredits, mut operations) = (0, 0);
            for (day, u) in self.scenario_days.get(&m.id).into_iter().flatten() {
                centicredits += u.centicredits;
                operations += u.operations;
                if narrower {
                    add(&mut out.days, day, u);
                }
            }
            if self.scenario_days.contains_key(&m.id) {
                out.scenarios.push(ScenarioSpend { scenario_id: m.id, name: m.name.clone(), centicredits, operations });
            }
        }
        out.scenarios.sort_by(|a, b| b.centicredits.cmp(&a.centicredits).then(a.scenario_id.cmp(&b.scenario_id)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: i64 = 1;
    const MARKETING: i64 = 10;
    const SALES: i64 = 20;
    const NEWSLETTER: i64 = 100;
    const CRM_SYNC: i64 = 101;
    const LEAD_SCORING: i64 = 102;
    const FOLDER: i64 = 7;

    fn spend(centicredits: i64) -> DayUsage {
        DayUsage { centicredits, operations: centicredits / 100, ..DayUsage::default() }
    }

    fn scope(team_ids: &[i64], folder_ids: &[i64], scenario_ids: &[i64], excluded: &[i64]) -> Scope {
        Scope {
            organization_id: ORG,
            team_ids: team_ids.to_vec(),
            folder_ids: folder_ids.to_vec(),
            scenario_ids: scenario_ids.to_vec(),
            excluded_scenario_ids: excluded.to_vec(),
        }
    }

    fn member(id: i64, team: i64, folder: Option<i64>, name: &str) -> ScenarioMember {
        ScenarioMember { id, team_id: Some(team), folder_id: folder, name: name.into(), history_pending: false }
    }

    /// Two days. Marketing has a newsletter (in a folder) and a CRM sync; Sales has lead scoring. The
    /// organization's and the teams' series also hold a deleted Marketing scenario's 500 on day 1.
    /// Lead scoring moved from Marketing to Sales after day 1: Make's team series put its day 1 under
    /// Marketing and its day 2 under Sales.
    fn org() -> OrgUsage {
        let mut u = OrgUsage::default();
        u.add_scenario(member(NEWSLETTER, MARKETING, Some(FOLDER), "Newsletter"));
        u.add_scenario(member(CRM_SYNC, MARKETING, None, "CRM sync"));
        u.add_scenario(member(LEAD_SCORING, SALES, None, "Lead scoring"));
        let d1 = || "2026-11-01".to_owned();
        let d2 = || "2026-11-02".to_owned();
        u.add_day(Series::Scenario(NEWSLETTER), d1(), spend(1_000));
        u.add_day(Series::Scenario(NEWSLETTER), d2(), spend(1_100));
        u.add_day(Series::Scenario(CRM_SYNC), d1(), spend(200));
        u.add_day(Series::Scenario(CRM_SYNC), d2(), DayUsage { unreconciled: true, ..spend(300) });
        u.add_day(Series::Scenario(LEAD_SCORING), d1(), spend(40));
        u.add_day(Series::Scenario(LEAD_SCORING), d2(), DayUsage { estimated: true, ..spend(60) });
        u.add_day(Series::Team(MARKETING), d1(), spend(1_000 + 200 + 40 + 500));
        u.add_day(Series::Team(MARKETING), d2(), DayUsage { unreconciled: true, ..spend(1_100 + 300) });
        u.add_day(Series::Team(SALES), d2(), DayUsage { estimated: true, ..spend(60) });
        u.add_day(Series::Organization, d1(), spend(1_000 + 200 + 40 + 500));
        u.add_day(Series::Organization, d2(), DayUsage { estimated: true, unreconciled: true, ..spend(1_460) });
        u
    }

    fn totals(s: &ScopeUsage) -> Vec<(&str, i64)> {
        s.days.iter().map(|(d, u)| (d.as_str(), u.centicredits)).collect()
    }

    fn listed(s: &ScopeUsage) -> Vec<(i64, i64)> {
        s.scenarios.iter().map(|x| (x.scenario_id, x.centicredits)).collect()
    }

    #[test]
    fn a_whole_organization_counts_its_own_series_deleted_scenarios_included() {
        let s = org().for_scope(&scope(&[], &[], &[], &[]));
        assert_eq!(totals(&s), [("2026-11-01", 1_740), ("2026-11-02", 1_460)]);
        let day2 = s.days["2026-11-02"];
        assert!(day2.estimated && day2.unreconciled, "the flags of the day come along");
        assert_eq!(day2.operations, 14);
        assert_eq!(listed(&s), [(NEWSLETTER, 2_100), (CRM_SYNC, 500), (LEAD_SCORING, 100)], "largest first");
        assert_eq!(s.covered.len(), 2);
    }

    #[test]
    fn whole_teams_count_the_teams_series() {
        let s = org().for_scope(&scope(&[MARKETING], &[], &[], &[]));
        assert_eq!(totals(&s), [("2026-11-01", 1_740), ("2026-11-02", 1_400)], "the deleted scenario's 500 counts");
        assert!(s.days["2026-11-02"].unreconciled);
        assert_eq!(listed(&s), [(NEWSLETTER, 2_100), (CRM_SYNC, 500)], "the team's scenarios as of the last sync");

        let both = org().for_scope(&scope(&[MARKETING, SALES], &[], &[], &[]));
        assert_eq!(totals(&both), [("2026-11-01", 1_740), ("2026-11-02", 1_460)]);
    }

    #[test]
    fn a_folder_counts_its_scenarios_series() {
        let s = org().for_scope(&scope(&[], &[FOLDER], &[], &[]));
        assert_eq!(totals(&s), [("2026-11-01", 1_000), ("2026-11-02", 1_100)]);
        assert_eq!(listed(&s), [(NEWSLETTER, 2_100)]);
        assert_eq!(s.covered.len(), 2, "covered days are the organization's, whatever the scope");
    }

    #[test]
    fn scenario_lists_and_exclusions_count_the_scenarios_named() {
        let s = org().for_scope(&scope(&[], &[], &[CRM_SYNC, LEAD_SCORING], &[]));
        assert_eq!(totals(&s), [("2026-11-01", 240), ("2026-11-02", 360)]);
        let day2 = s.days["2026-11-02"];
        assert!(day2.estimated && day2.unreconciled);

        let s = org().for_scope(&scope(&[MARKETING], &[], &[], &[NEWSLETTER]));
        assert_eq!(totals(&s), [("2026-11-01", 200), ("2026-11-02", 300)], "an exclusion reads scenario series");
        assert_eq!(listed(&s), [(CRM_SYNC, 500)]);
    }

    #[test]
    fn a_scenario_that_moved_between_teams() {
        // Whole teams follow Make's team series: lead scoring's day 1 stays with Marketing, where it ran.
        let sales = org().for_scope(&scope(&[SALES], &[], &[], &[]));
        assert_eq!(totals(&sales), [("2026-11-02", 60)]);
        let marketing = org().for_scope(&scope(&[MARKETING], &[], &[], &[]));
        assert_eq!(marketing.days["2026-11-01"].centicredits, 1_740);
        // Narrower scopes follow the scenario's team at the last sync, with its whole series.
        let sales_narrowed = org().for_scope(&scope(&[SALES], &[], &[LEAD_SCORING], &[]));
        assert_eq!(totals(&sales_narrowed), [("2026-11-01", 40), ("2026-11-02", 60)]);
        assert_eq!(listed(&sales), [(LEAD_SCORING, 100)]);
        let marketing_narrowed = org().for_scope(&scope(&[MARKETING], &[], &[LEAD_SCORING], &[]));
        assert!(marketing_narrowed.days.is_empty() && marketing_narrowed.scenarios.is_empty());
    }

    #[test]
    fn scenarios_without_history_count_only_where_scenario_series_are_read() {
        let mut u = org();
        u.add_scenario(ScenarioMember { history_pending: true, ..member(103, MARKETING, Some(FOLDER), "New") });
        assert_eq!(u.for_scope(&scope(&[], &[FOLDER], &[], &[])).scenarios_without_history, 1);
        assert_eq!(u.for_scope(&scope(&[MARKETING], &[], &[], &[])).scenarios_without_history, 0);
        assert_eq!(u.for_scope(&scope(&[], &[], &[], &[])).scenarios_without_history, 0);
        let s = u.for_scope(&scope(&[], &[FOLDER], &[], &[]));
        assert_eq!(listed(&s), [(NEWSLETTER, 2_100)], "a scenario without synced days is not listed");
    }

    #[test]
    fn an_organization_without_synced_days_covers_none() {
        let mut u = OrgUsage::default();
        u.add_scenario(member(NEWSLETTER, MARKETING, None, "Newsletter"));
        let s = u.for_scope(&scope(&[], &[], &[], &[]));
        assert!(s.days.is_empty() && s.covered.is_empty() && s.scenarios.is_empty());
    }
}
