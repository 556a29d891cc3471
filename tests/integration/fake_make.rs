//! Tests of the SIMULATED Make API itself (`tests/support/fake_make.rs`), so that the client's tests can trust it.

use std::time::{Duration, Instant};

use crate::support::fake_make::*;
use jiff::civil::date;
use serde_json::Value;

const TOKEN: &str = "0b6d7d3a-8f39-4c55-9d63-6a3a0e2f7c11";
const OAUTH: &str = "oauth-access-token";
const OTHER: &str = "5f0f7c7e-1d2b-4a8e-9a51-3f0c7c2e9b42";

/// Org 10 (teams 16 and 17) and org 20 (team 26). `TOKEN` and `OAUTH` cover org 10, `OTHER` covers org 20.
async fn fake() -> FakeMake {
    let fake = FakeMake::start().await;
    fake.add_token(TOKEN, AuthKind::Token, &[10]);
    fake.add_token(OAUTH, AuthKind::Bearer, &[10]);
    fake.add_token(OTHER, AuthKind::Token, &[20]);
    fake.add_organization(OrgSpec::new(10, "Acme"));
    fake.add_organization(OrgSpec::new(20, "Other"));
    fake.add_team(10, 16, "Marketing");
    fake.add_team(10, 17, "Finance");
    fake.add_team(20, 26, "Elsewhere");
    fake
}

async fn send(fake: &FakeMake, method: &str, path_and_query: &str, auth: Option<&str>) -> (u16, String) {
    let (status, _, body) = send_full(fake, method, path_and_query, auth).await;
    (status, body)
}

async fn send_full(
    fake: &FakeMake,
    method: &str,
    path_and_query: &str,
    auth: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let url = format!("{}/api/v2{path_and_query}", fake.base_url());
    let client = reqwest::Client::new();
    let mut req = match method {
        "GET" => client.get(&url),
        "POST" => client.post(&url),
        other => panic!("unsupported method {other}"),
    };
    if let Some(auth) = auth {
        req = req.header("Authorization", auth);
    }
    let resp = req.send().await.expect("request to the fake");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.expect("body"))
}

async fn get_json(fake: &FakeMake, path_and_query: &str) -> Value {
    let (status, body) = send(fake, "GET", path_and_query, Some(&format!("Token {TOKEN}"))).await;
    assert_eq!(status, 200, "GET {path_and_query}: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn get_err(fake: &FakeMake, path_and_query: &str, auth: Option<&str>) -> (u16, Value) {
    let (status, body) = send(fake, "GET", path_and_query, auth).await;
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("error body {body:?}: {e}")))
}

fn token() -> String {
    format!("Token {TOKEN}")
}

#[tokio::test]
async fn auth_gives_401_for_bad_tokens_and_403_outside_the_token_orgs() {
    let fake = fake().await;
    fake.add_scenario(ScenarioSpec::new(5, 20, 26, "Not yours"));

    let (status, body) = get_err(&fake, "/organizations/10", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "SC401");
    assert_eq!(body["message"], "Unauthorized");
    assert_eq!(body["detail"], "Invalid token.");

    for bad in ["Token nope", &format!("Bearer {TOKEN}"), &format!("Token {OAUTH}"), TOKEN] {
        let (status, body) = get_err(&fake, "/organizations/10", Some(bad)).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("SC401")), "{bad}");
    }

    // Both kinds work with their own scheme.
    let (status, _) = send(&fake, "GET", "/organizations/10", Some(&token())).await;
    assert_eq!(status, 200);
    let (status, _) = send(&fake, "GET", "/organizations/10", Some(&format!("Bearer {OAUTH}"))).await;
    assert_eq!(status, 200);

    // A valid token asking about another organization, its teams or scenarios.
    for path in [
        "/organizations/20",
        "/organizations/20/usage",
        "/teams?organizationId=20",
        "/teams/26/usage",
        "/scenarios?organizationId=20",
        "/scenarios?teamId=26",
        "/scenarios/5",
        "/scenarios/5/usage",
        "/scenarios/consumptions?teamId=26",
    ] {
        let (status, body) = get_err(&fake, path, Some(&token())).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["code"], "SC403");
        assert_eq!(body["message"], "Permission denied");
        assert_eq!(body["detail"], "Access denied.");
    }
    let (status, _) = send(&fake, "POST", "/scenarios/5/stop", Some(&token())).await;
    assert_eq!(status, 403);
    assert_eq!(fake.scenario_active(5), Some(true), "a refused stop changes nothing");

    // Unknown ids.
    for path in ["/organizations/99", "/scenarios/404", "/teams/404/usage", "/nothing/here"] {
        let (status, body) = get_err(&fake, path, Some(&token())).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("SC404")), "{path}");
    }
}

#[tokio::test]
async fn organization_detail_has_string_counters_since_last_reset() {
    let fake = fake().await;
    fake.add_scenario(ScenarioSpec::new(1, 10, 16, "A"));
    let mut b = ScenarioSpec::new(2, 10, 17, "B");
    b.is_active = false;
    fake.add_scenario(b);
    fake.set_usage(1, date(2026, 2, 28), 50_000, 500); // before lastReset (2026-03-01): not counted
    fake.set_usage(1, date(2026, 3, 1), 10_000, 100);
    fake.set_usage(2, date(2026, 3, 20), 2_500, 25);
    fake.set_usage(2, date(2026, 3, 21), 9_900, 99); // after "today": not counted

    let org = &get_json(&fake, "/organizations/10").await["organization"];
    assert_eq!(org["id"], 10);
    assert_eq!(org["zone"], "eu1.make.com");
    assert_eq!(org["operations"], "125");
    assert_eq!(org["unusedOperations"], "39875");
    assert_eq!(org["transfer"], (125 * TRANSFER_BYTES_PER_OPERATION).to_string());
    assert_eq!(org["operationsExt"], "0");
    assert_eq!(org["lastReset"], "2026-03-01T00:00:00.000Z");
    assert_eq!(org["nextReset"], "2026-04-01T00:00:00.000Z");
    assert_eq!(org["license"]["operations"], 40_000);
    assert_eq!(org["license"]["apiLimit"], 120);
    assert_eq!(org["license"]["restartPeriod"], "1 month");
    assert_eq!(org["activeScenarios"], 1);
    assert_eq!(org["teams"].as_array().unwrap().len(), 2);

    let mut spec = OrgSpec::new(10, "Acme");
    spec.allowance = 100;
    spec.next_reset = None;
    fake.add_organization(spec);
    let org = &get_json(&fake, "/organizations/10").await["organization"];
    assert_eq!(org["unusedOperations"], "0", "floored at zero");
    assert!(org["nextReset"].is_null());
}

#[tokio::test]
async fn scenarios_paginate_by_id_with_encoded_or_raw_brackets() {
    let fake = fake().await;
    for id in (1..=25).rev() {
        let mut s = ScenarioSpec::new(id, 10, if id % 2 == 0 { 16 } else { 17 }, &format!("S{id}"));
        s.folder_id = (id <= 5).then_some(7);
        s.is_active = id % 3 != 0;
        s.interval_secs = (id != 1).then_some(900);
        fake.add_scenario(s);
    }
    fake.add_scenario(ScenarioSpec::new(100, 20, 26, "other org"));

    let ids = |v: &Value| -> Vec<i64> {
        v["scenarios"].as_array().unwrap().iter().map(|s| s["id"].as_i64().unwrap()).collect()
    };

    let mut all = Vec::new();
    for offset in [0, 10, 20] {
        let page =
            get_json(&fake, &format!("/scenarios?organizationId=10&pg%5Boffset%5D={offset}&pg%5Blimit%5D=10")).await;
        assert_eq!(page["pg"]["offset"], offset);
        assert_eq!(page["pg"]["limit"], 10);
        assert_eq!(page["pg"]["sortBy"], "id");
        all.extend(ids(&page));
    }
    assert_eq!(all, (1..=25).collect::<Vec<_>>());

    // Raw brackets and the defaults (offset 0, limit 10).
    let page = get_json(&fake, "/scenarios?organizationId=10&pg[offset]=20&pg[limit]=3").await;
    assert_eq!(ids(&page), vec![21, 22, 23]);
    let page = get_json(&fake, "/scenarios?organizationId=10").await;
    assert_eq!(ids(&page), (1..=10).collect::<Vec<_>>());
    assert_eq!(page["pg"]["offset"], 0);

    // Team, folder and isActive filters.
    let page = get_json(&fake, "/scenarios?teamId=16&pg%5Blimit%5D=100").await;
    assert_eq!(ids(&page), (1..=25).filter(|i| i % 2 == 0).collect::<Vec<_>>());
    let page = get_json(&fake, "/scenarios?organizationId=10&folderId=7").await;
    assert_eq!(ids(&page), vec![1, 2, 3, 4, 5]);
    let page = get_json(&fake, "/scenarios?organizationId=10&isActive=true&pg%5Blimit%5D=100").await;
    assert_eq!(ids(&page), (1..=25).filter(|i| i % 3 != 0).collect::<Vec<_>>());

    // The shape of one scenario.
    let one = &get_json(&fake, "/scenarios/1").await["scenario"];
    assert_eq!(one["teamId"], 17);
    assert_eq!(one["folderId"], 7);
    assert_eq!(one["isActive"], true);
    assert_eq!(one["islinked"], true);
    assert_eq!(one["isPaused"], false);
    assert_eq!(one["scheduling"], serde_json::json!({"type": "immediately"}));
    assert!(one["hookId"].is_null());
    let two = &get_json(&fake, "/scenarios/2").await["scenario"];
    assert_eq!(two["scheduling"], serde_json::json!({"type": "indefinitely", "interval": 900}));
    assert_eq!(get_json(&fake, "/scenarios/3").await["scenario"]["isActive"], false);
}

#[tokio::test]
async fn scenario_list_needs_exactly_one_of_team_and_organization() {
    let fake = fake().await;
    let (status, body) = get_err(&fake, "/scenarios?teamId=16&organizationId=10", Some(&token())).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "SC400");
    assert_eq!(body["message"], "Bad Request");
    assert_eq!(body["detail"], "teamId and organizationId cannot be used together");

    let (status, body) = get_err(&fake, "/scenarios?pg%5Blimit%5D=5", Some(&token())).await;
    assert_eq!(status, 400);
    assert_eq!(body["detail"], "Missing required parameter teamId or organizationId");

    let (status, body) = get_err(&fake, "/teams", Some(&token())).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("SC400")));
    let (status, _) = get_err(&fake, "/scenarios/consumptions?organizationId=10", Some(&token())).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn teams_list_and_team_detail() {
    let fake = fake().await;
    let teams = get_json(&fake, "/teams?organizationId=10").await;
    let names: Vec<&str> = teams["teams"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["Finance", "Marketing"]);
    assert_eq!(teams["teams"][0]["organizationId"], 10);
    assert_eq!(teams["pg"]["limit"], 10_000);
    let teams = get_json(&fake, "/teams?organizationId=10&pg%5Boffset%5D=1&pg%5Blimit%5D=1").await;
    assert_eq!(teams["teams"][0]["id"], 16);

    fake.add_scenario(ScenarioSpec::new(1, 10, 16, "A"));
    fake.set_usage(1, date(2026, 3, 10), 12_345, 120);
    let team = &get_json(&fake, "/teams/16").await["team"];
    assert_eq!(team["consumedCenticredits"], 12_345);
    assert_eq!(team["operations"], 120);
    fake.set_counter_style(10, CounterStyle::Strings);
    fake.omit_centicredits(10, true);
    let team = &get_json(&fake, "/teams/16").await["team"];
    assert_eq!(team["consumedOperations"], "120");
    assert!(team.get("centicredits").is_none() && team.get("consumedCenticredits").is_none());
}

#[tokio::test]
async fn usage_is_thirty_days_ending_today_with_zero_days_and_counter_styles() {
    let fake = fake().await;
    fake.add_scenario(ScenarioSpec::new(1, 10, 16, "A"));
    fake.add_scenario(ScenarioSpec::new(2, 10, 17, "B"));
    fake.set_today(date(2026, 3, 15));
    fake.set_usage(1, date(2026, 3, 15), 1_000, 10);
    fake.set_usage(2, date(2026, 3, 15), 500, 5);
    fake.set_usage(1, date(2026, 2, 14), 300, 3); // the oldest day of the window
    fake.set_usage(1, date(2026, 2, 13), 999, 9); // just outside it
    fake.set_usage(1, date(2026, 3, 16), 999, 9); // the future
    fake.set_usage(1, date(2026, 3, 15), 1_200, 12); // replaces the first value

    let data = get_json(&fake, "/organizations/10/usage?organizationTimezone=true").await;
    let days = data["data"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(days[0]["date"], "2026-02-14");
    assert_eq!(days[29]["date"], "2026-03-15");
    assert_eq!(days[0]["operations"], 3);
    assert_eq!(
        days[1],
        serde_json::json!({"date": "2026-02-15", "operations": 0, "dataTransfer": 0, "centicredits": 0})
    );
    assert_eq!(days[29]["centicredits"], 1_700);
    assert_eq!(days[29]["operations"], 17);
    assert_eq!(days[29]["dataTransfer"], 17 * TRANSFER_BYTES_PER_OPERATION);

    let team = get_json(&fake, "/teams/17/usage").await;
    assert_eq!(team["data"][29]["centicredits"], 500);
    let scenario = get_json(&fake, "/scenarios/1/usage").await;
    assert_eq!(scenario["data"][29]["centicredits"], 1_200);
    assert_eq!(scenario["data"].as_array().unwrap().len(), 30);

    fake.set_counter_style(10, CounterStyle::Strings);
    let data = get_json(&fake, "/organizations/10/usage").await;
    assert_eq!(data["data"][29]["centicredits"], "1700");
    assert_eq!(data["data"][29]["operations"], "17");
    assert_eq!(data["data"][0]["centicredits"], "300");
    assert_eq!(data["data"][5]["dataTransfer"], "0");
    assert_eq!(data["data"][29]["date"], "2026-03-15");
}

#[tokio::test]
async fn omit_centicredits_removes_the_key_everywhere() {
    let fake = fake().await;
    fake.add_scenario(ScenarioSpec::new(1, 10, 16, "A"));
    fake.set_usage(1, date(2026, 3, 10), 1_000, 10);
    fake.omit_centicredits(10, true);
    for path in ["/organizations/10/usage", "/teams/16/usage", "/scenarios/1/usage"] {
        let data = get_json(&fake, path).await;
        for day in data["data"].as_array().unwrap() {
            assert!(day.get("centicredits").is_none(), "{path}: {day}");
            assert!(day.get("operations").is_some());
        }
    }
    let c = get_json(&fake, "/scenarios/consumptions?teamId=16").await;
    let list = c["scenarioConsumptions"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].get("centicredits").is_none());
    assert_eq!(list[0]["operations"], 10);

    fake.omit_centicredits(10, false);
    let data = get_json(&fake, "/scenarios/1/usage").await;
    assert_eq!(
        data["data"][19],
        serde_json::json!({"date": "2026-03-10", "operations": 10, "dataTransfer": 10 * TRANSFER_BYTES_PER_OPERATION, "centicredits": 1_000})
    );
}

#[tokio::test]
async fn consumptions_list_scenarios_with_at_least_100_centicredits_since_last_reset() {
    let fake = fake().await;
    for (id, team) in [(1, 16), (2, 16), (3, 16), (4, 17), (5, 16)] {
        fake.add_scenario(ScenarioSpec::new(id, 10, team, &format!("S{id}")));
    }
    fake.set_usage(1, date(2026, 3, 1), 60, 1); // 60 + 40 = 100 since the reset: listed
    fake.set_usage(1, date(2026, 3, 20), 40, 1);
    fake.set_usage(2, date(2026, 3, 5), 99, 1); // 99: not listed
    fake.set_usage(3, date(2026, 2, 28), 100_000, 1_000); // before the reset only: not listed
    fake.set_usage(4, date(2026, 3, 5), 5_000, 50); // other team
    fake.set_usage(5, date(2026, 2, 28), 100_000, 1_000);
    fake.set_usage(5, date(2026, 3, 2), 250, 3);

    let c = get_json(&fake, "/scenarios/consumptions?teamId=16").await;
    assert_eq!(c["lastReset"], "2026-03-01T00:00:00.000Z");
    assert_eq!(
        c["scenarioConsumptions"],
        serde_json::json!([
            {"scenarioId": 1, "operations": 2, "transfer": 2 * TRANSFER_BYTES_PER_OPERATION, "centicredits": 100},
            {"scenarioId": 5, "operations": 3, "transfer": 3 * TRANSFER_BYTES_PER_OPERATION, "centicredits": 250},
        ])
    );

    // organizationId is only an extra filter.
    let c = get_json(&fake, "/scenarios/consumptions?teamId=16&organizationId=10").await;
    assert_eq!(c["scenarioConsumptions"].as_array().unwrap().len(), 2);
    let c = get_json(&fake, "/scenarios/consumptions?teamId=16&organizationId=20").await;
    assert_eq!(c["scenarioConsumptions"].as_array().unwrap().len(), 0);

    fake.set_counter_style(10, CounterStyle::Strings);
    let c = get_json(&fake, "/scenarios/consumptions?teamId=17").await;
    assert_eq!(c["scenarioConsumptions"][0]["centicredits"], "5000");
    assert_eq!(c["scenarioConsumptions"][0]["scenarioId"], 4);
}

#[tokio::test]
async fn start_and_stop_change_the_scenario_and_are_idempotent() {
    let fake = fake().await;
    fake.add_scenario(ScenarioSpec::new(5, 10, 16, "A"));
    assert_eq!(fake.scenario_active(5), Some(true));
    assert_eq!(fake.scenario_active(6), None);

    for _ in 0..2 {
        let (status, body) = send(&fake, "POST", "/scenarios/5/stop", Some(&token())).await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v, serde_json::json!({"scenario": {"id": 5, "isActive": false, "islinked": false}}));
        assert_eq!(fake.scenario_active(5), Some(false));
    }
    assert_eq!(get_json(&fake, "/scenarios/5").await["scenario"]["isActive"], false);

    for _ in 0..2 {
        let (status, body) = send(&fake, "POST", "/scenarios/5/start", Some(&format!("Bearer {OAUTH}"))).await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v, serde_json::json!({"scenario": {"id": 5, "isActive": true, "islinked": true}}));
        assert_eq!(fake.scenario_active(5), Some(true));
    }

    // A human toggles it in the UI.
    fake.set_scenario_active(5, false);
    assert_eq!(get_json(&fake, "/scenarios/5").await["scenario"]["isActive"], false);

    let (status, _) = send(&fake, "POST", "/scenarios/6/stop", Some(&token())).await;
    assert_eq!(status, 404);
    let (status, _) = send(&fake, "GET", "/scenarios/5/stop", Some(&token())).await;
    assert_eq!(status, 404, "start/stop are POST only");
}

#[tokio::test]
async fn too_many_requests_with_and_without_retry_after() {
    let fake = fake().await;
    fake.add_scenario(ScenarioSpec::new(5, 10, 16, "A"));
    fake.inject("/api/v2/scenarios", Fault::TooManyRequests { retry_after_secs: Some(7) }, 2);
    fake.inject("/api/v2/scenarios", Fault::TooManyRequests { retry_after_secs: None }, 1);

    // Other paths are untouched.
    let (status, _) = send(&fake, "GET", "/organizations/10", Some(&token())).await;
    assert_eq!(status, 200);

    for _ in 0..2 {
        let (status, headers, body) = send_full(&fake, "GET", "/scenarios/5", Some(&token())).await;
        assert_eq!(status, 429);
        assert_eq!(headers.get("retry-after").unwrap(), "7");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], "SC429");
        assert_eq!(v["detail"], "Requests limit for organization exceeded, please try again later.");
    }
    // Faults come before auth.
    let (status, headers, _) = send_full(&fake, "GET", "/scenarios/5", None).await;
    assert_eq!(status, 429);
    assert!(headers.get("retry-after").is_none());

    let (status, _) = send(&fake, "GET", "/scenarios/5", Some(&token())).await;
    assert_eq!(status, 200, "the faults are used up");
}

#[tokio::test]
async fn status_fault_gives_that_status_with_a_make_error_body() {
    let fake = fake().await;
    fake.add_scenario(ScenarioSpec::new(5, 10, 16, "A"));
    fake.inject("/api/v2/scenarios/5/stop", Fault::Status(503), 1);
    let (status, body) = send(&fake, "POST", "/scenarios/5/stop", Some(&token())).await;
    assert_eq!(status, 503);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "SC503");
    assert_eq!(v["message"], "Service Unavailable");
    assert!(v["detail"].is_string());
    assert_eq!(fake.scenario_active(5), Some(true), "a faulted request does not reach the endpoint");

    let (status, _) = send(&fake, "POST", "/scenarios/5/stop", Some(&token())).await;
    assert_eq!(status, 200);
    assert_eq!(fake.scenario_active(5), Some(false));
}

#[tokio::test]
async fn delay_fault_answers_normally_after_the_delay() {
    let fake = fake().await;
    fake.inject("/api/v2/organizations", Fault::Delay(Duration::from_millis(300)), 1);
    let started = Instant::now();
    let (status, body) = send(&fake, "GET", "/organizations/10", Some(&token())).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["organization"]["id"], 10);

    let started = Instant::now();
    let (status, _) = send(&fake, "GET", "/organizations/10", Some(&token())).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_millis(300), "used up");

    // A client that gives up still leaves a recorded request behind.
    fake.clear_requests();
    fake.inject("/api/v2/organizations", Fault::Delay(Duration::from_millis(300)), 1);
    let url = format!("{}/api/v2/organizations/10", fake.base_url());
    let err = reqwest::Client::new()
        .get(&url)
        .header("Authorization", token())
        .timeout(Duration::from_millis(50))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    crate::support::settle(10, || !fake.requests().is_empty()).await;
    let recorded = fake.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].status, 200);
}

#[tokio::test]
async fn malformed_body_is_invalid_json_with_status_200() {
    let fake = fake().await;
    fake.inject("/api/v2/", Fault::MalformedBody, 1);
    let (status, body) = send(&fake, "GET", "/organizations/10", Some(&token())).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
    let (status, body) = send(&fake, "GET", "/organizations/10", Some(&token())).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&body).is_ok());
}

#[tokio::test]
async fn faults_are_used_in_the_order_they_were_injected() {
    let fake = fake().await;
    fake.inject("/api/v2/organizations", Fault::Status(500), 2);
    fake.inject("/api/v2/organizations/10", Fault::Status(502), 1);
    fake.inject("/api/v2/teams", Fault::Status(504), 1);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(send(&fake, "GET", "/organizations/10", Some(&token())).await.0);
    }
    assert_eq!(seen, vec![500, 500, 502, 200]);
    assert_eq!(send(&fake, "GET", "/teams?organizationId=10", Some(&token())).await.0, 504);
    assert_eq!(send(&fake, "GET", "/teams?organizationId=10", Some(&token())).await.0, 200);

    fake.inject("/api/v2/", Fault::Status(500), 5);
    fake.clear_faults();
    assert_eq!(send(&fake, "GET", "/organizations/10", Some(&token())).await.0, 200);
}

#[tokio::test]
async fn requests_are_recorded_with_authorization_and_status() {
    let fake = fake().await;
    fake.add_scenario(ScenarioSpec::new(5, 10, 16, "A"));
    let before = Instant::now();
    send(&fake, "GET", "/scenarios?teamId=16&pg%5Blimit%5D=2", Some(&token())).await;
    send(&fake, "POST", "/scenarios/5/stop", Some(&format!("Bearer {OAUTH}"))).await;
    send(&fake, "GET", "/organizations/10", None).await;
    fake.inject("/api/v2/organizations", Fault::TooManyRequests { retry_after_secs: None }, 1);
    send(&fake, "GET", "/organizations/10", Some(&token())).await;

    let r = fake.requests();
    assert_eq!(r.len(), 4);
    assert_eq!((r[0].method.as_str(), r[0].path.as_str()), ("GET", "/api/v2/scenarios"));
    assert_eq!(r[0].query, "teamId=16&pg%5Blimit%5D=2");
    assert_eq!(r[0].authorization.as_deref(), Some(token().as_str()));
    assert_eq!(r[0].status, 200);
    assert!(r[0].at >= before);
    assert_eq!(
        (r[1].method.as_str(), r[1].path.as_str(), r[1].query.as_str()),
        ("POST", "/api/v2/scenarios/5/stop", "")
    );
    assert_eq!(r[1].authorization.as_deref(), Some(format!("Bearer {OAUTH}").as_str()));
    assert_eq!(r[2].authorization, None);
    assert_eq!(r[2].status, 401);
    assert_eq!(r[3].status, 429);
    assert!(r.windows(2).all(|w| w[0].at <= w[1].at));

    fake.clear_requests();
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn the_server_stops_when_the_last_handle_is_dropped() {
    let fake = fake().await;
    let url = format!("{}/api/v2/organizations/10", fake.base_url());
    let clone = fake.clone();
    drop(fake);
    let (status, _) = send(&clone, "GET", "/organizations/10", Some(&token())).await;
    assert_eq!(status, 200, "a clone keeps it alive");
    drop(clone);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let result = reqwest::Client::new().get(&url).timeout(Duration::from_secs(2)).send().await;
    assert!(result.is_err(), "still answering after the last handle was dropped");
}

// ---------------------------------------------------------------------------------------------------
// Clock, timed usage, time zones

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use make_budget_mcp::domain::Clock;
use make_budget_mcp::domain::clock::ManualClock;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The same data as `fake()`, on a manual clock starting at `start`.
async fn clocked(start: &str) -> (FakeMake, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(ts(start)));
    let fake = FakeMake::start_with_clock(clock.clone()).await;
    fake.add_token(TOKEN, AuthKind::Token, &[10]);
    fake.add_token(OAUTH, AuthKind::Bearer, &[10]);
    fake.add_token(OTHER, AuthKind::Token, &[20]);
    fake.add_organization(OrgSpec::new(10, "Acme"));
    fake.add_organization(OrgSpec::new(20, "Other"));
    fake.add_team(10, 16, "Marketing");
    fake.add_team(10, 17, "Finance");
    fake.add_team(20, 26, "Elsewhere");
    (fake, clock)
}

fn minutes(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n * 60)
}

fn last_day(v: &Value) -> &Value {
    v["data"].as_array().unwrap().last().unwrap()
}

#[tokio::test]
async fn the_clock_gives_requests_their_time_and_usage_its_today() {
    let (fake, clock) = clocked("2026-05-10T12:00:00Z").await;
    fake.add_scenario(ScenarioSpec::new(5, 10, 16, "A"));
    assert_eq!(fake.now(), ts("2026-05-10T12:00:00Z"));
    let usage = get_json(&fake, "/scenarios/5/usage?organizationTimezone=true").await;
    assert_eq!(last_day(&usage)["date"], "2026-05-10", "today is the clock's date (Europe/Prague)");
    assert_eq!(usage["data"].as_array().unwrap().len(), 30);

    clock.advance(SignedDuration::from_hours(24));
    send(&fake, "POST", "/scenarios/5/stop", Some(&token())).await;
    send(&fake, "GET", "/enums/timezones", Some(&token())).await;
    let r = fake.requests();
    assert_eq!(r[0].at_time, ts("2026-05-10T12:00:00Z"));
    assert_eq!(r[0].organization_id, Some(10));
    assert_eq!(r[1].at_time, ts("2026-05-11T12:00:00Z"));
    assert_eq!(r[1].organization_id, Some(10), "a scenario's organization");
    assert_eq!(r[2].organization_id, None);
    let usage = get_json(&fake, "/scenarios/5/usage").await;
    assert_eq!(last_day(&usage)["date"], "2026-05-11");

    // set_today still wins, for the old tests.
    fake.set_today(date(2026, 3, 15));
    assert_eq!(last_day(&get_json(&fake, "/scenarios/5/usage").await)["date"], "2026-03-15");
}

#[tokio::test]
async fn daily_buckets_follow_the_organization_time_zone_across_midnight() {
    // 03:30Z on 20 March is 23:30 on the 19th in New York (EDT, UTC-4) and 04:30 on the 20th in Prague.
    let (fake, clock) = clocked("2026-03-20T03:30:00Z").await;
    fake.add_organization(OrgSpec { timezone: "America/New_York".into(), ..OrgSpec::new(10, "Acme") });
    fake.add_scenario(ScenarioSpec::new(1, 10, 16, "A"));
    fake.consume(1, ts("2026-03-20T03:00:00Z"), 500, 5); // 23:00 on the 19th, New York
    fake.consume(1, ts("2026-03-20T04:30:00Z"), 700, 7); // 00:30 on the 20th, New York; after "now"

    let org = &get_json(&fake, "/organizations/10").await["organization"];
    assert_eq!(org["timezoneId"], 201);
    let usage = get_json(&fake, "/scenarios/1/usage?organizationTimezone=true").await;
    assert_eq!(last_day(&usage)["date"], "2026-03-19", "today in New York");
    assert_eq!(last_day(&usage)["centicredits"], 500, "only what happened up to now");

    clock.advance(minutes(90)); // 05:00Z: 01:00 on the 20th in New York
    for path in ["/scenarios/1/usage", "/teams/16/usage", "/organizations/10/usage"] {
        let usage = get_json(&fake, path).await;
        let days = usage["data"].as_array().unwrap();
        assert_eq!(days[29]["date"], "2026-03-20", "{path}");
        assert_eq!(days[29]["centicredits"], 700, "{path}");
        assert_eq!(days[29]["operations"], 7, "{path}");
        assert_eq!(days[28]["date"], "2026-03-19", "{path}");
        assert_eq!(days[28]["centicredits"], 500, "{path}");
    }

    // The same events, bucketed in Prague: both on the 20th.
    fake.add_organization(OrgSpec::new(10, "Acme"));
    let usage = get_json(&fake, "/scenarios/1/usage").await;
    assert_eq!(last_day(&usage)["date"], "2026-03-20");
    assert_eq!(last_day(&usage)["centicredits"], 1_200);
    assert_eq!(usage["data"][28]["centicredits"], 0);
    // Whole-day figures and events add up.
    fake.set_usage(1, date(2026, 3, 20), 50, 1);
    assert_eq!(last_day(&get_json(&fake, "/scenarios/1/usage").await)["centicredits"], 1_250);
}

#[tokio::test]
async fn consumptions_and_counters_are_period_to_date_up_to_now() {
    let (fake, clock) = clocked("2026-03-20T12:00:00Z").await;
    fake.add_scenario(ScenarioSpec::new(1, 10, 16, "A"));
    fake.consume(1, ts("2026-02-28T23:30:00Z"), 10_000, 100); // before lastReset (2026-03-01T00:00Z)
    fake.consume(1, ts("2026-03-05T10:00:00Z"), 300, 3);
    fake.consume(1, ts("2026-03-20T13:00:00Z"), 400, 4); // in an hour

    let c = get_json(&fake, "/scenarios/consumptions?teamId=16").await;
    assert_eq!(c["scenarioConsumptions"][0]["centicredits"], 300);
    assert_eq!(get_json(&fake, "/organizations/10").await["organization"]["operations"], "3");
    assert_eq!(get_json(&fake, "/teams/16").await["team"]["consumedCenticredits"], 300);
    assert_eq!(get_json(&fake, "/scenarios/1").await["scenario"]["operations"], 3);

    clock.advance(minutes(60));
    let c = get_json(&fake, "/scenarios/consumptions?teamId=16").await;
    assert_eq!(c["scenarioConsumptions"][0]["centicredits"], 700, "the event at now counts");
    assert_eq!(get_json(&fake, "/organizations/10").await["organization"]["operations"], "7");

    // An event recorded late, between earlier ones, counts in its own day.
    fake.consume(1, ts("2026-03-10T08:00:00Z"), 50, 1);
    let c = get_json(&fake, "/scenarios/consumptions?teamId=16").await;
    assert_eq!(c["scenarioConsumptions"][0]["centicredits"], 750);
    let usage = get_json(&fake, "/scenarios/1/usage").await;
    let on =
        |d: &str| usage["data"].as_array().unwrap().iter().find(|x| x["date"] == d).unwrap()["centicredits"].clone();
    assert_eq!((on("2026-03-05"), on("2026-03-10"), on("2026-03-20")), (300.into(), 50.into(), 400.into()));
}

#[tokio::test]
async fn yearly_consumptions_are_running_60_day_totals_that_can_go_down() {
    // 2026-03-01 is the 60th day of a period that began on 1 January.
    let (fake, clock) = clocked("2026-03-01T12:00:00Z").await;
    let yearly = OrgSpec {
        restart_period: "1 year".into(),
        timezone: "UTC".into(),
        last_reset: ts("2026-01-01T00:00:00Z"),
        next_reset: Some(ts("2027-01-01T00:00:00Z")),
        ..OrgSpec::new(10, "Acme")
    };
    fake.add_organization(yearly.clone());
    fake.add_scenario(ScenarioSpec::new(1, 10, 16, "A"));
    fake.consume(1, ts("2026-01-01T10:00:00Z"), 5_000, 50);
    let mut day = ts("2026-01-02T10:00:00Z");
    while day < ts("2026-03-10T00:00:00Z") {
        fake.consume(1, day, 100, 1);
        day = day.checked_add(SignedDuration::from_hours(24)).unwrap();
    }
    let centicredits = |c: &Value| c["scenarioConsumptions"][0]["centicredits"].as_u64().unwrap();

    let org = &get_json(&fake, "/organizations/10").await["organization"];
    assert_eq!(org["license"]["restartPeriod"], "1 year");
    let day60 = centicredits(&get_json(&fake, "/scenarios/consumptions?teamId=16").await);
    assert_eq!(day60, 5_000 + 59 * 100, "1 January to 1 March");

    clock.advance(SignedDuration::from_hours(24));
    let day61 = centicredits(&get_json(&fake, "/scenarios/consumptions?teamId=16").await);
    assert_eq!(day61, 60 * 100, "2 January to 2 March: 1 January left the window");
    assert!(day61 < day60, "running totals go down");

    // The same events on a monthly plan only grow.
    fake.add_organization(OrgSpec { restart_period: "1 month".into(), ..yearly });
    let monthly = centicredits(&get_json(&fake, "/scenarios/consumptions?teamId=16").await);
    assert_eq!(monthly, 5_000 + 60 * 100);
}

#[tokio::test]
async fn timezones_enum_and_org_timezone_ids_agree() {
    let fake = fake().await;
    let zones = get_json(&fake, "/enums/timezones").await;
    let list = zones["timezones"].as_array().unwrap();
    let find = |code: &str| list.iter().find(|z| z["code"] == code).cloned().unwrap();
    assert_eq!(
        find("Europe/Prague"),
        serde_json::json!({"id": 113, "name": "(GMT+01:00) Europe/Prague", "code": "Europe/Prague", "offset": "+0100"})
    );
    assert!(find("UTC")["id"].is_i64());
    assert!(find("America/New_York")["id"].is_i64());
    let ids: std::collections::HashSet<i64> = list.iter().map(|z| z["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), list.len(), "ids are unique");
    assert_eq!(get_json(&fake, "/organizations/10").await["organization"]["timezoneId"], 113);
    fake.add_organization(OrgSpec { timezone: "UTC".into(), ..OrgSpec::new(10, "Acme") });
    assert_eq!(get_json(&fake, "/organizations/10").await["organization"]["timezoneId"], find("UTC")["id"]);
}

// ---------------------------------------------------------------------------------------------------
// Rate limit

#[tokio::test]
async fn rate_limit_per_organization_in_fixed_clock_minutes() {
    let (fake, clock) = clocked("2026-03-20T10:00:00Z").await;
    fake.add_organization(OrgSpec { api_limit: 60, ..OrgSpec::new(10, "Acme") });
    fake.add_scenario(ScenarioSpec::new(5, 10, 16, "A"));
    fake.enforce_rate_limit(10, Duration::from_secs(60));
    fake.set_plain_text_429(true);
    // Every endpoint family of the organization counts.
    let paths = [
        "/organizations/10",
        "/organizations/10/usage",
        "/teams?organizationId=10",
        "/teams/16",
        "/teams/16/usage",
        "/scenarios?organizationId=10",
        "/scenarios/5",
        "/scenarios/5/usage",
        "/scenarios/consumptions?teamId=16",
        "/scenarios?teamId=16",
    ];
    for i in 0..60 {
        let (status, _) = send(&fake, "GET", paths[i % paths.len()], Some(&token())).await;
        assert_eq!(status, 200, "request {i}");
    }
    let (status, headers, body) = send_full(&fake, "POST", "/scenarios/5/stop", Some(&token())).await;
    assert_eq!(status, 429);
    assert!(headers.get("retry-after").is_none());
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(body, RATE_LIMIT_MESSAGE);
    assert_eq!(fake.scenario_active(5), Some(true), "a refused stop changes nothing");

    // Other organizations and organization-less endpoints are not limited.
    assert_eq!(send(&fake, "GET", "/organizations/20", Some(&format!("Token {OTHER}"))).await.0, 200);
    assert_eq!(send(&fake, "GET", "/enums/timezones", Some(&token())).await.0, 200);
    assert_eq!(send(&fake, "GET", "/users/me/current-authorization", Some(&token())).await.0, 200);

    // The next clock minute is a new window.
    clock.advance(minutes(1));
    assert_eq!(send(&fake, "GET", "/organizations/10", Some(&token())).await.0, 200);
    assert_eq!(fake.peak_requests_per_minute(10), 60);
    assert_eq!(fake.too_many_requests_served(10), 1);
    assert_eq!(fake.peak_requests_per_minute(20), 1);

    // Windows are aligned to clock minutes: 59 more at 10:01:59 fill the window, one more at 10:02:00 passes.
    clock.advance(SignedDuration::from_secs(59));
    for _ in 0..59 {
        assert_eq!(send(&fake, "GET", "/teams/16", Some(&token())).await.0, 200);
    }
    fake.set_plain_text_429(false);
    let (status, headers, body) = send_full(&fake, "GET", "/teams/16", Some(&token())).await;
    assert_eq!(status, 429);
    assert!(headers.get("retry-after").is_none());
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "SC429");
    assert_eq!(v["message"], RATE_LIMIT_MESSAGE);
    clock.advance(SignedDuration::from_secs(1));
    for _ in 0..60 {
        assert_eq!(send(&fake, "GET", "/teams/16", Some(&token())).await.0, 200);
    }
    // Fixed windows let 119 through within one sliding minute (10:01:59–10:02:58); the reader shows it.
    assert_eq!(fake.peak_requests_per_minute(10), 119);
    assert_eq!(fake.too_many_requests_served(10), 2);
}

// ---------------------------------------------------------------------------------------------------
// Private spaces, forbidden teams, vanishing scenarios

#[tokio::test]
async fn private_spaces_are_listed_only_when_asked_for() {
    let fake = fake().await;
    fake.add_private_space(10, 18, "Becca's space");
    fake.add_scenario(ScenarioSpec::new(7, 10, 18, "Mine"));
    fake.set_usage(7, date(2026, 3, 19), 2_500, 25);

    let names = |v: &Value| -> Vec<String> {
        v["teams"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    };
    let teams = get_json(&fake, "/teams?organizationId=10").await;
    assert_eq!(names(&teams), vec!["Finance", "Marketing"]);
    let teams = get_json(&fake, "/teams?organizationId=10&includePrivateSpaces=false").await;
    assert_eq!(names(&teams), vec!["Finance", "Marketing"]);
    let teams =
        get_json(&fake, "/teams?organizationId=10&includePrivateSpaces=true&cols%5B%5D=name&cols%5B%5D=type").await;
    assert_eq!(names(&teams), vec!["Becca's space", "Finance", "Marketing"]);
    assert_eq!(teams["teams"][0], serde_json::json!({"id": 18, "name": "Becca's space", "type": "personal"}));
    assert_eq!(teams["teams"][1]["type"], "standard");

    let team = &get_json(&fake, "/teams/18").await["team"];
    assert_eq!(team["type"], "personal");
    assert_eq!(team["consumedCenticredits"], 2_500);
    assert_eq!(get_json(&fake, "/teams/18/usage").await["data"][28]["centicredits"], 2_500);
    let c = get_json(&fake, "/scenarios/consumptions?teamId=18").await;
    assert_eq!(c["scenarioConsumptions"][0]["scenarioId"], 7);

    let org = &get_json(&fake, "/organizations/10").await["organization"];
    assert_eq!(org["teams"].as_array().unwrap().len(), 2, "teams lists standard teams");
    assert!(org.get("privateSpaces").is_none());
    let org = &get_json(&fake, "/organizations/10?cols%5B%5D=privateSpaces").await["organization"];
    assert_eq!(org["privateSpaces"][0]["id"], 18);
}

#[tokio::test]
async fn a_forbidden_team_is_listed_but_not_readable() {
    let fake = fake().await;
    fake.add_scenario(ScenarioSpec::new(5, 10, 16, "A"));
    fake.forbid_team(16);
    let teams = get_json(&fake, "/teams?organizationId=10").await;
    assert!(teams["teams"].as_array().unwrap().iter().any(|t| t["id"] == 16));
    for path in ["/teams/16", "/teams/16/usage", "/scenarios/consumptions?teamId=16"] {
        let (status, body) = get_err(&fake, path, Some(&token())).await;
        assert_eq!(status, 403, "{path}");
        assert_eq!(
            body,
            serde_json::json!({"detail": "Access denied.", "message": "Permission denied", "code": "SC403"})
        );
    }
    assert_eq!(send(&fake, "GET", "/teams/17", Some(&token())).await.0, 200);
}

#[tokio::test]
async fn a_vanishing_scenario_is_gone_after_the_page_that_listed_it() {
    let fake = fake().await;
    for id in 1..=3 {
        fake.add_scenario(ScenarioSpec::new(id, 10, 16, &format!("S{id}")));
    }
    fake.set_usage(2, date(2026, 3, 19), 1_000, 10);
    fake.vanish_after_listing(2);
    // Not listed yet: nothing happens.
    assert_eq!(send(&fake, "GET", "/scenarios/2/usage", Some(&token())).await.0, 200);

    let page = get_json(&fake, "/scenarios?organizationId=10").await;
    assert_eq!(page["scenarios"].as_array().unwrap().len(), 3, "listed once");
    assert!(!fake.scenario_exists(2));
    for path in ["/scenarios/2/usage", "/scenarios/2"] {
        let (status, body) = get_err(&fake, path, Some(&token())).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("SC404")), "{path}");
    }
    assert_eq!(send(&fake, "POST", "/scenarios/2/stop", Some(&token())).await.0, 404);
    let page = get_json(&fake, "/scenarios?organizationId=10").await;
    assert_eq!(page["scenarios"].as_array().unwrap().len(), 2);
    // Its usage was consumed: the team and the organization still count it.
    assert_eq!(get_json(&fake, "/teams/16/usage").await["data"][28]["centicredits"], 1_000);
    assert_eq!(get_json(&fake, "/organizations/10").await["organization"]["operations"], "10");
    let c = get_json(&fake, "/scenarios/consumptions?teamId=16").await;
    assert_eq!(c["scenarioConsumptions"].as_array().unwrap().len(), 0);
}

// ---------------------------------------------------------------------------------------------------
// Organization fields, scopes, zones

#[tokio::test]
async fn extra_operations_and_restart_period_are_served() {
    let fake = fake().await;
    fake.add_scenario(ScenarioSpec::new(1, 10, 16, "A"));
    fake.set_usage(1, date(2026, 3, 10), 4_500_000, 45_000);
    fake.add_organization(OrgSpec { operations_ext: 10_000, ..OrgSpec::new(10, "Acme") });
    let org = &get_json(&fake, "/organizations/10").await["organization"];
    assert_eq!(org["operationsExt"], "10000");
    assert_eq!(org["unusedOperations"], "5000", "40 000 + 10 000 − 45 000");
    assert_eq!(org["license"]["restartPeriod"], "1 month");
}

#[tokio::test]
async fn token_scopes_are_reported_and_enforced() {
    let fake = fake().await;
    fake.add_scenario(ScenarioSpec::new(5, 10, 16, "A"));
    let auth = get_json(&fake, "/users/me/current-authorization").await;
    assert_eq!(auth["authorization"]["authUsed"], "token");
    assert_eq!(
        auth["authorization"]["scope"],
        serde_json::json!(["organizations:read", "teams:read", "scenarios:read", "scenarios:write"])
    );
    let (status, body) = send(&fake, "GET", "/users/me/current-authorization", Some(&format!("Bearer {OAUTH}"))).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["authorization"]["authUsed"], "oauth");
    assert_eq!(get_err(&fake, "/users/me/current-authorization", None).await.0, 401);

    fake.set_scopes(TOKEN, &["scenarios:read"]);
    let auth = get_json(&fake, "/users/me/current-authorization").await;
    assert_eq!(auth["authorization"]["scope"], serde_json::json!(["scenarios:read"]));
    let (status, body) = send(&fake, "POST", "/scenarios/5/stop", Some(&token())).await;
    assert_eq!(status, 403);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["code"].as_str(), v["message"].as_str()), (Some("SC403"), Some("Permission denied")));
    assert_eq!(fake.scenario_active(5), Some(true));
    for path in
        ["/teams/16", "/teams?organizationId=10", "/teams/16/usage", "/organizations/10", "/organizations/10/usage"]
    {
        assert_eq!(get_err(&fake, path, Some(&token())).await.0, 403, "{path}");
    }
    for path in ["/scenarios/5", "/scenarios/5/usage", "/scenarios?teamId=16", "/scenarios/consumptions?teamId=16"] {
        assert_eq!(send(&fake, "GET", path, Some(&token())).await.0, 200, "{path}");
    }
    // Another token keeps the default scopes.
    assert_eq!(send(&fake, "POST", "/scenarios/5/stop", Some(&format!("Bearer {OAUTH}"))).await.0, 200);
}

#[tokio::test]
async fn an_empty_zone_is_the_host_called_and_the_list_hides_license_elsewhere() {
    let fake = fake().await;
    const BOTH: &str = "9a6c2f0e-7b1d-4e3a-8c5f-2d9e0b1a4c7e";
    fake.add_token(BOTH, AuthKind::Token, &[10, 20]);
    fake.add_organization(OrgSpec { zone: String::new(), ..OrgSpec::new(10, "Acme") });
    fake.add_organization(OrgSpec { zone: "eu2.make.com".into(), ..OrgSpec::new(20, "Other") });
    let host = fake.base_url().trim_start_matches("http://").to_owned();

    let org = &get_json(&fake, "/organizations/10").await["organization"];
    assert_eq!(org["zone"], host.as_str());

    let (status, body) = send(&fake, "GET", "/organizations", Some(&format!("Token {BOTH}"))).await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    let orgs = list["organizations"].as_array().unwrap();
    assert_eq!(orgs.len(), 2);
    assert_eq!(orgs[0]["name"], "Acme", "sorted by name");
    assert_eq!(orgs[0]["zone"], host.as_str());
    assert_eq!(orgs[0]["license"]["apiLimit"], 120, "license only in the zone called");
    assert_eq!(orgs[0]["timezoneId"], 113);
    assert_eq!(orgs[1]["zone"], "eu2.make.com");
    assert!(orgs[1].get("license").is_none() && orgs[1].get("serviceName").is_none());
    let (_, body) = send(&fake, "GET", "/organizations?zone=eu2.make.com", Some(&format!("Token {BOTH}"))).await;
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["organizations"].as_array().unwrap().len(), 1);
    assert_eq!(list["organizations"][0]["id"], 20);
    // TOKEN covers org 10 only.
    let list = get_json(&fake, "/organizations").await;
    assert_eq!(list["organizations"].as_array().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------------------
// Columns, page sizes, faults

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn cols_select_columns_and_page_limits_have_a_maximum() {
    let fake = fake().await;
    for id in 1..=25 {
        fake.add_scenario(ScenarioSpec::new(id, 10, 16, &format!("S{id}")));
    }
    let page = get_json(&fake, "/scenarios?organizationId=10&cols%5B%5D=isActive&cols%5B%5D=name").await;
    assert_eq!(keys(&page["scenarios"][0]), vec!["id", "isActive", "name"]);
    let one = get_json(&fake, "/scenarios/3?cols[]=isActive").await;
    assert_eq!(one["scenario"], serde_json::json!({"id": 3, "isActive": true}));
    let teams = get_json(&fake, "/teams?organizationId=10&cols%5B%5D=consumedOperations").await;
    assert_eq!(keys(&teams["teams"][0]), vec!["consumedOperations", "id"]);
    let teams = get_json(&fake, "/teams?organizationId=10&cols%5B%5D=*").await;
    assert!(teams["teams"][0].get("activeScenarios").is_some());
    let team = get_json(&fake, "/teams/16?cols%5B%5D=consumedCenticredits&cols%5B%5D=isPaused").await;
    assert_eq!(keys(&team["team"]), vec!["consumedCenticredits", "id", "isPaused"]);
    let org = get_json(&fake, "/organizations/10?cols%5B%5D=license&cols%5B%5D=nextReset").await;
    assert_eq!(keys(&org["organization"]), vec!["id", "license", "nextReset"]);

    let page = get_json(&fake, "/scenarios?organizationId=10&pg%5Blimit%5D=500").await;
    assert_eq!(page["scenarios"].as_array().unwrap().len(), 25);
    assert_eq!(page["pg"]["limit"], 500);
    assert_eq!(send(&fake, "GET", "/scenarios?organizationId=10&pg%5Blimit%5D=10000", Some(&token())).await.0, 200);
    let (status, body) = get_err(&fake, "/scenarios?organizationId=10&pg%5Blimit%5D=10001", Some(&token())).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("SC400")));
    assert_eq!(get_err(&fake, "/teams?organizationId=10&pg%5Blimit%5D=20000", Some(&token())).await.0, 400);
}

#[tokio::test]
async fn omit_key_plain_text_and_suberror_faults() {
    let fake = fake().await;
    fake.add_scenario(ScenarioSpec::new(5, 10, 16, "A"));
    fake.inject("/api/v2/scenarios/5/usage", Fault::OmitKey("data"), 1);
    fake.inject("/api/v2/scenarios/consumptions", Fault::OmitKey("scenarioConsumptions"), 1);
    fake.inject("/api/v2/teams", Fault::OmitKey("teams"), 1);
    fake.inject("/api/v2/scenarios/5/stop", Fault::OmitKey("scenario"), 1);

    assert_eq!(get_json(&fake, "/scenarios/5/usage").await, serde_json::json!({}));
    let c = get_json(&fake, "/scenarios/consumptions?teamId=16").await;
    assert!(c.get("scenarioConsumptions").is_none() && c.get("lastReset").is_some());
    let t = get_json(&fake, "/teams?organizationId=10").await;
    assert!(t.get("teams").is_none() && t.get("pg").is_some());
    let (status, body) = send(&fake, "POST", "/scenarios/5/stop", Some(&token())).await;
    assert_eq!((status, body.as_str()), (200, "{}"));
    assert_eq!(fake.scenario_active(5), Some(false), "the request reached the endpoint");
    assert!(get_json(&fake, "/scenarios/5/usage").await.get("data").is_some(), "used up");

    fake.inject("/api/v2/organizations", Fault::PlainText { status: 502, body: "Bad Gateway".into() }, 1);
    let (status, headers, body) = send_full(&fake, "GET", "/organizations/10", Some(&token())).await;
    assert_eq!((status, body.as_str()), (502, "Bad Gateway"));
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain"));

    fake.inject(
        "/api/v2/scenarios/5/start",
        Fault::WithSuberrors { status: 400, suberrors: vec!["Invalid interval.".into(), "Second".into()] },
        1,
    );
    let (status, body) = send(&fake, "POST", "/scenarios/5/start", Some(&token())).await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "SC400");
    assert_eq!(v["message"], "Bad Request");
    assert_eq!(v["suberrors"], serde_json::json!([{"message": "Invalid interval."}, {"message": "Second"}]));
    // Ordinary errors have no suberrors key.
    let (_, v) = get_err(&fake, "/scenarios/404", Some(&token())).await;
    assert!(v.get("suberrors").is_none());
}

// ---------------------------------------------------------------------------------------------------
// The generator

/// An organization with nothing but a token, on a clock (Wednesday 18 March 2026, 10:00 in Prague).
async fn empty_org(at: &str) -> (FakeMake, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(ts(at)));
    let fake = FakeMake::start_with_clock(clock.clone()).await;
    fake.add_token(TOKEN, AuthKind::Token, &[10]);
    fake.add_organization(OrgSpec { api_limit: 60, ..OrgSpec::new(10, "Big") });
    (fake, clock)
}

async fn org_totals(fake: &FakeMake) -> Value {
    let org = get_json(fake, "/organizations/10").await;
    let usage = get_json(fake, "/organizations/10/usage").await;
    serde_json::json!({"operations": org["organization"]["operations"], "usage": usage["data"]})
}

#[tokio::test]
async fn the_generator_builds_the_benchmark_organization_deterministically() {
    let (fake, _) = empty_org("2026-03-18T09:00:00Z").await;
    let p = fake.populate(10, 20, 2, 1_000, 800, 42);
    assert_eq!(p.team_ids.len(), 20);
    assert_eq!(p.private_space_ids.len(), 2);
    assert_eq!(p.scenario_ids.len(), 1_000);
    assert_eq!(p.active_ids.len(), 800);

    let teams = get_json(&fake, "/teams?organizationId=10").await;
    assert_eq!(teams["teams"].as_array().unwrap().len(), 18);
    let teams = get_json(&fake, "/teams?organizationId=10&includePrivateSpaces=true").await;
    assert_eq!(teams["teams"].as_array().unwrap().len(), 20);
    let all = get_json(&fake, "/scenarios?organizationId=10&pg%5Blimit%5D=10000").await;
    let all = all["scenarios"].as_array().unwrap();
    assert_eq!(all.len(), 1_000);
    assert_eq!(all.iter().filter(|s| s["isActive"] == true).count(), 800);
    let in_folders = all.iter().filter(|s| !s["folderId"].is_null()).count();
    assert!((200..600).contains(&in_folders), "some in folders: {in_folders}");
    let in_spaces = all.iter().filter(|s| p.private_space_ids.contains(&s["teamId"].as_i64().unwrap())).count();
    assert!(in_spaces > 0 && in_spaces < 200, "private spaces hold a few: {in_spaces}");
    assert_eq!(get_json(&fake, "/organizations/10").await["organization"]["license"]["apiLimit"], 60);

    // Realistic spread: idle ones, many small ones, a few heavy ones.
    let mut ops: Vec<u64> = all.iter().map(|s| s["operations"].as_u64().unwrap()).collect();
    ops.sort();
    let idle = ops.iter().filter(|o| **o == 0).count();
    assert!(idle > 50, "some use nothing: {idle}");
    let median = ops[ops.len() / 2];
    let top = ops[ops.len() - 1];
    assert!(median > 0 && top > 100 * median, "a few heavy consumers: median {median}, top {top}");
    // 30 days of history, today included.
    let usage = get_json(&fake, "/organizations/10/usage").await;
    let days = usage["data"].as_array().unwrap();
    assert!(days.iter().all(|d| d["centicredits"].as_u64().unwrap() > 0), "every day has usage");
    let weekday = days.iter().find(|d| d["date"] == "2026-03-16").unwrap()["operations"].as_u64().unwrap();
    let sunday = days.iter().find(|d| d["date"] == "2026-03-15").unwrap()["operations"].as_u64().unwrap();
    assert!(sunday < weekday, "weekends are lighter: Sunday {sunday}, Monday {weekday}");

    // Same seed, same state and clock: the same organization. Another seed: another one.
    let (same, _) = empty_org("2026-03-18T09:00:00Z").await;
    assert_eq!(same.populate(10, 20, 2, 1_000, 800, 42), p);
    assert_eq!(org_totals(&same).await, org_totals(&fake).await);
    assert_eq!(same.event_count(), fake.event_count());
    let (other, _) = empty_org("2026-03-18T09:00:00Z").await;
    other.populate(10, 20, 2, 1_000, 800, 43);
    assert_ne!(org_totals(&other).await, org_totals(&fake).await);
}

#[tokio::test]
async fn advance_usage_follows_the_patterns_of_active_scenarios() {
    let (fake, clock) = empty_org("2026-03-18T09:00:00Z").await;
    fake.populate(10, 5, 1, 200, 160, 7);
    let before = fake.event_count();
    let ops = |v: &Value| v["operations"].as_str().unwrap().parse::<u64>().unwrap();
    let org_before = ops(&get_json(&fake, "/organizations/10").await["organization"]);

    let t0 = clock.now();
    clock.advance(minutes(5));
    let t1 = clock.now();
    // Nothing moves until asked to.
    assert_eq!(ops(&get_json(&fake, "/organizations/10").await["organization"]), org_before);
    fake.advance_usage(t0, t1);
    assert!(fake.event_count() > before, "five busy minutes add events");
    assert!(ops(&get_json(&fake, "/organizations/10").await["organization"]) > org_before);

    // Generating up to t1 at once gives the same figures as generating up to t0 and advancing.
    let (direct, _) = empty_org("2026-03-18T09:05:00Z").await;
    direct.populate(10, 5, 1, 200, 160, 7);
    assert_eq!(org_totals(&direct).await, org_totals(&fake).await);

    // Stopped scenarios consume nothing more.
    let page = get_json(&fake, "/scenarios?organizationId=10&isActive=true&pg%5Blimit%5D=1000").await;
    for s in page["scenarios"].as_array().unwrap() {
        fake.set_scenario_active(s["id"].as_i64().unwrap(), false);
    }
    let count = fake.event_count();
    clock.advance(SignedDuration::from_hours(6));
    fake.advance_usage(t1, clock.now());
    assert_eq!(fake.event_count(), count);
}
