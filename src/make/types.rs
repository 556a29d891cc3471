//! Types mirroring Make's JSON (see `../shared/make-api.md`). Make is inconsistent about counters: the
//! organization's are strings, usage is usually numbers, team counters are mixed, and some fields exist
//! only on newer zones. Every counter therefore accepts a number or a string, and every field of an item
//! except `id` is optional (`cols[]` changes which fields come back).
//!
//! The wrapper of a response is not optional: a usage response without `data`, a consumptions response
//! without `scenarioConsumptions`, a teams or scenarios page without its list is a decode error that names
//! the endpoint and the key (make-api.md §6). Reading a missing list as an empty one would read as zero
//! usage, and budgets would silently never fire.

use serde::{Deserialize, Deserializer};

/// A non-negative counter sent as a JSON number or a string (`"26338"`); `null` or absent is `None`.
fn counter<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Float(f64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Int(n)) => Ok(Some(n)),
        Some(Raw::Float(f)) if f >= 0.0 && f.is_finite() => Ok(Some(f.round() as u64)),
        Some(Raw::Float(f)) => Err(serde::de::Error::custom(format!("counter out of range: {f}"))),
        Some(Raw::Text(s)) if s.trim().is_empty() => Ok(None),
        Some(Raw::Text(s)) => s.trim().parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// An id sent as a number or a numeric string.
fn id<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) => Ok(n),
        Raw::Text(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Int(n)) => Ok(Some(n)),
        Some(Raw::Text(s)) if s.trim().is_empty() => Ok(None),
        Some(Raw::Text(s)) => s.trim().parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// Make's error body. All Make API errors share it; every field may be missing [DOC http-status-codes,
/// SDK src/utils.ts createMakeError]. A body that is not JSON is kept, shortened, in `text`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema)]
pub struct MakeErrorBody {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    /// Details Make adds to some errors, each with its own message.
    #[serde(default)]
    pub suberrors: Vec<Suberror>,
    /// The start of a body that was not Make's JSON error (some 429s are plain text).
    #[serde(skip_deserializing)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema)]
pub struct Suberror {
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrganizationEnvelope {
    pub organization: Organization,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    #[serde(deserialize_with = "id")]
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub is_paused: Option<bool>,
    /// Start of the current reset (billing) period, RFC 3339.
    #[serde(default)]
    pub last_reset: Option<String>,
    /// End of the current reset period; `null` on unlimited plans.
    #[serde(default)]
    pub next_reset: Option<String>,
    /// Operations consumed this period (a string in Make's responses).
    #[serde(default, deserialize_with = "counter")]
    pub operations: Option<u64>,
    #[serde(default, deserialize_with = "counter")]
    pub unused_operations: Option<u64>,
    /// Credits model fields, seen on newer accounts only.
    #[serde(default, deserialize_with = "counter")]
    pub centicredits_consumed: Option<u64>,
    /// Extra operations purchased on top of the plan's allowance (a string) [SDK organizations.ts].
    #[serde(default, deserialize_with = "counter")]
    pub operations_ext: Option<u64>,
    /// The organization's time zone, an id of `GET /enums/timezones` [SDK organizations.ts, enums.ts].
    #[serde(default, deserialize_with = "opt_id")]
    pub timezone_id: Option<i64>,
    #[serde(default)]
    pub license: Option<License>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct License {
    /// Plan allowance per reset period.
    #[serde(default, deserialize_with = "counter")]
    pub operations: Option<u64>,
    /// API requests per minute for the organization.
    #[serde(default, deserialize_with = "counter")]
    pub api_limit: Option<u64>,
    #[serde(default)]
    pub restart_period: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TeamsPage {
    pub teams: Vec<Team>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Team {
    #[serde(deserialize_with = "id")]
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    /// "personal" for a private space [SDK private-spaces.ts]; absent on older zones.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ScenariosPage {
    pub scenarios: Vec<Scenario>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ScenarioEnvelope {
    pub scenario: Scenario,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scenario {
    #[serde(deserialize_with = "id")]
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    pub team_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_id")]
    pub folder_id: Option<i64>,
    /// Scheduling is switched on.
    #[serde(default)]
    pub is_active: Option<bool>,
    /// Paused by Make because of the subscription (out of credits); separate from `is_active`.
    #[serde(default)]
    pub is_paused: Option<bool>,
    /// Stopped because of an error.
    #[serde(default, rename = "isinvalid")]
    pub is_invalid: Option<bool>,
    #[serde(default)]
    pub scheduling: Option<Scheduling>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Scheduling {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Seconds between runs, for `indefinitely`.
    #[serde(default, deserialize_with = "counter")]
    pub interval: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UsageEnvelope {
    pub data: Vec<UsageDay>,
}

/// One day of usage.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageDay {
    /// `YYYY-MM-DD`, or a full timestamp on some zones (the date part is used).
    pub date: String,
    #[serde(default, deserialize_with = "counter")]
    pub operations: Option<u64>,
    #[serde(default, deserialize_with = "counter")]
    pub data_transfer: Option<u64>,
    #[serde(default, deserialize_with = "counter")]
    pub centicredits: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumptionsEnvelope {
    pub scenario_consumptions: Vec<ScenarioConsumption>,
    #[serde(default)]
    pub last_reset: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioConsumption {
    #[serde(deserialize_with = "id")]
    pub scenario_id: i64,
    #[serde(default, deserialize_with = "counter")]
    pub operations: Option<u64>,
    #[serde(default, deserialize_with = "counter")]
    pub transfer: Option<u64>,
    #[serde(default, deserialize_with = "counter")]
    pub centicredits: Option<u64>,
}

/// `GET /users/me/current-authorization` [SDK test/mocks/users/current-authorization.json].
#[derive(Debug, Clone, Deserialize)]
pub struct CurrentAuthorizationEnvelope {
    pub authorization: CurrentAuthorization,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentAuthorization {
    /// The token's scopes, e.g. "scenarios:read".
    pub scope: Vec<String>,
    #[serde(default)]
    pub auth_used: Option<String>,
}

/// `GET /enums/timezones` [SDK src/endpoints/enums.ts].
#[derive(Debug, Clone, Deserialize)]
pub struct TimezonesEnvelope {
    pub timezones: Vec<TimezoneEntry>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TimezoneEntry {
    #[serde(deserialize_with = "id")]
    pub id: i64,
    /// The IANA name, e.g. "Europe/Prague".
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Centicredits for a usage figure: the reported value, or operations × 100 where Make does not report
/// centicredits (older zones, self-hosted). The flag says whether it was estimated that way.
pub fn centicredits_or_estimate(centicredits: Option<u64>, operations: Option<u64>) -> (u64, bool) {
    match centicredits {
        Some(c) => (c, false),
        None => (operations.unwrap_or(0).saturating_mul(100), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_accept_numbers_strings_and_absence() {
        let d: UsageDay =
            serde_json::from_str(r#"{"date":"2026-03-01","operations":"1234","dataTransfer":5,"centicredits":null}"#)
                .unwrap();
        assert_eq!((d.operations, d.data_transfer, d.centicredits), (Some(1234), Some(5), None));
        let o: Organization = serde_json::from_str(
            r#"{"id":"10","operations":"26338","license":{"operations":40000,"apiLimit":"120"},"nextReset":null}"#,
        )
        .unwrap();
        assert_eq!((o.id, o.operations, o.license.unwrap().api_limit), (10, Some(26338), Some(120)));
        assert!(serde_json::from_str::<UsageDay>(r#"{"date":"x","operations":"lots"}"#).is_err());
    }

    #[test]
    fn missing_centicredits_fall_back_to_operations() {
        assert_eq!(centicredits_or_estimate(Some(250), Some(1)), (250, false));
        assert_eq!(centicredits_or_estimate(None, Some(7)), (700, true));
        assert_eq!(centicredits_or_estimate(None, None), (0, true));
    }

    #[test]
    fn a_missing_envelope_key_is_an_error_not_an_empty_list() {
        for (json, key) in [(r#"{"pg":{}}"#, "teams"), (r#"{}"#, "data")] {
            let e = match key {
                "teams" => serde_json::from_str::<TeamsPage>(json).unwrap_err().to_string(),
                _ => serde_json::from_str::<UsageEnvelope>(json).unwrap_err().to_string(),
            };
            assert!(e.contains(&format!("missing field `{key}`")), "{e}");
        }
        assert!(serde_json::from_str::<ScenariosPage>("{}").is_err());
        assert!(serde_json::from_str::<ConsumptionsEnvelope>(r#"{"lastReset":null}"#).is_err());
        let ok: ConsumptionsEnvelope = serde_json::from_str(r#"{"scenarioConsumptions":[]}"#).unwrap();
        assert!(ok.scenario_consumptions.is_empty());
    }

    #[test]
    fn error_bodies_keep_suberrors() {
        let b: MakeErrorBody = serde_json::from_str(
            r#"{"message":"Validation failed","code":"IM005","suberrors":[{"message":"teamId is invalid"}]}"#,
        )
        .unwrap();
        assert_eq!(b.suberrors[0].message.as_deref(), Some("teamId is invalid"));
    }

    #[test]
    fn scenarios_tolerate_sparse_columns() {
        let s: Scenario = serde_json::from_str(r#"{"id":5,"isActive":true,"folderId":null}"#).unwrap();
        assert_eq!((s.id, s.is_active, s.folder_id, s.team_id), (5, Some(true), None, None));
    }
}
