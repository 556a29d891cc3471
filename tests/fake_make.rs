//! Tests of the SIMULATED Make API itself (`tests/support/fake_make.rs`), so that the client's tests can trust it.
mod support;

use std::time::{Duration, Instant};

use jiff::civil::date;
use serde_json::Value;
use support::fake_make::*;

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
    tokio::time::sleep(Duration::from_millis(400)).await;
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
