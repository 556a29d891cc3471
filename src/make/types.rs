//! Types mirroring Make's JSON (see `../shared/make-api.md`). Make is inconsistent about counters: the
//! organization's are strings, usage is usually numbers, team counters are mixed, and some fields exist
//! only on newer zones. Every counter therefore accepts a number or a string, and every field except `id`
//! is optional, so a missing or differently encoded field never fails a sync.

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

/// Make's error body. All Make API errors share it; every field may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema)]
pub struct MakeErrorBody {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
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
    #[serde(default)]
    pub teams: Vec<Team>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Team {
    #[serde(deserialize_with = "id")]
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ScenariosPage {
    #[serde(default)]
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
    #[serde(default)]
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
    #[serde(default)]
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
    fn scenarios_tolerate_sparse_columns() {
        let s: Scenario = serde_json::from_str(r#"{"id":5,"isActive":true,"folderId":null}"#).unwrap();
        assert_eq!((s.id, s.is_active, s.folder_id, s.team_id), (5, Some(true), None, None));
    }
}
