//! The Make API client against the fake Make server: pagination, counter encodings, missing
//! centicredits, and every retry path (429 with and without Retry-After, 5xx, timeouts, give-up).

use std::time::{Duration, Instant};

use crate::support::fake_make::{self, CounterStyle, FakeMake, Fault, OrgSpec, ScenarioSpec};
use make_budget_mcp::crypto::SecretString;
use make_budget_mcp::make::{self, MakeClient, MakeClientConfig, MakeError, MakeTarget, UsageOf};
use make_budget_mcp::outbound::OutboundPolicy;

const TOKEN: &str = "6f1c5b9e-2d4a-4c3b-9e8f-7a6b5c4d3e2f";
const ORG: i64 = 10;

async fn fake_with_scenarios(n: i64) -> FakeMake {
    let fake = FakeMake::start().await;
    fake.add_token(TOKEN, fake_make::AuthKind::Token, &[ORG]);
    fake.add_organization(OrgSpec::new(ORG, "Acme"));
    fake.add_team(ORG, 16, "Marketing");
    for id in 1..=n {
        fake.add_scenario(ScenarioSpec::new(100 + id, ORG, 16, &format!("Scenario {id}")));
    }
    fake
}

fn target(fake: &FakeMake) -> MakeTarget {
    MakeTarget::new(
        make::api_base_url(&fake.base_url(), &OutboundPolicy::ALLOW_LOOPBACK).unwrap(),
        make::AuthKind::ApiToken,
        SecretString::new(TOKEN),
    )
}

/// Fast retries so the tests take milliseconds; the timing rules are the same (Make's one-minute 429 window
/// shortened to 300 ms). The whole API limit is used, so pacing shows with few calls. Loopback allowed: the
/// fake listens there.
fn client(timeout: Duration) -> MakeClient {
    MakeClient::new(
        MakeClientConfig {
            request_timeout: timeout,
            max_attempts: 4,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(400),
            max_retry_after: Duration::from_secs(5),
            page_size: 10,
            api_share: 1.0,
            rate_limit_wait: Duration::from_millis(300),
            max_rate_limited: 3,
        },
        OutboundPolicy::ALLOW_LOOPBACK,
    )
    .unwrap()
}

#[tokio::test]
async fn scenarios_are_read_across_pages() {
    let fake = fake_with_scenarios(27).await;
    let scenarios = client(Duration::from_secs(5)).scenarios(&target(&fake), ORG).await.unwrap();
    let ids: Vec<i64> = scenarios.iter().map(|s| s.id).collect();
    assert_eq!(ids, (101..=127).collect::<Vec<_>>());
    let pages: Vec<String> =
        fake.requests().into_iter().filter(|r| r.path == "/api/v2/scenarios").map(|r| r.query).collect();
    assert_eq!(pages.len(), 3, "27 scenarios at 10 per page: {pages:?}");
    // Each page asks for one more than it keeps, so a full last page needs no extra call.
    assert!(pages[2].contains("pg%5Boffset%5D=20") && pages[2].contains("pg%5Blimit%5D=11"), "{}", pages[2]);
    assert!(fake.requests().iter().all(|r| r.authorization.as_deref() == Some(&format!("Token {TOKEN}") as &str)));
}

#[tokio::test]
async fn a_list_of_whole_pages_costs_no_extra_call() {
    let fake = fake_with_scenarios(30).await;
    let scenarios = client(Duration::from_secs(5)).scenarios(&target(&fake), ORG).await.unwrap();
    assert_eq!(scenarios.len(), 30);
    let ids: std::collections::HashSet<i64> = scenarios.iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), 30, "no scenario twice");
    assert_eq!(fake.requests().iter().filter(|r| r.path == "/api/v2/scenarios").count(), 3, "30 at 10 a page: 3 calls");
}

#[tokio::test]
async fn organization_counters_are_strings_and_set_the_pace() {
    let fake = fake_with_scenarios(1).await;
    fake.set_usage(101, fake_make::DEFAULT_TODAY, 250_000, 2_500);
    let org = client(Duration::from_secs(5)).organization(&target(&fake), ORG).await.unwrap();
    assert_eq!(org.operations, Some(2_500), "\"operations\" arrives as a string");
    let license = org.license.unwrap();
    assert_eq!((license.operations, license.api_limit), (Some(40_000), Some(120)));
    assert!(org.last_reset.unwrap().starts_with("2026-03-01"));
}

#[tokio::test]
async fn usage_accepts_string_counters_and_missing_centicredits() {
    let fake = fake_with_scenarios(2).await;
    let day = fake_make::DEFAULT_TODAY;
    fake.set_usage(101, day, 12_345, 120);
    let c = client(Duration::from_secs(5));
    let t = target(&fake);

    for style in [CounterStyle::Numbers, CounterStyle::Strings] {
        fake.set_counter_style(ORG, style);
        let days = c.usage(&t, ORG, UsageOf::Scenario(101)).await.unwrap();
        assert_eq!(days.len(), 30);
        let last = days.last().unwrap();
        assert_eq!(
            (last.date.as_str(), last.centicredits, last.operations),
            ("2026-03-20", Some(12_345), Some(120)),
            "{style:?}"
        );
    }
    fake.omit_centicredits(ORG, true);
    let days = c.usage(&t, ORG, UsageOf::Organization).await.unwrap();
    let last = days.last().unwrap();
    assert_eq!((last.centicredits, last.operations), (None, Some(120)));
    assert_eq!(make::centicredits_or_estimate(last.centicredits, last.operations), (12_000, true));
    assert!(fake.requests().iter().all(|r| r.path.ends_with("/usage") && r.query == "organizationTimezone=true"));
}

#[tokio::test]
async fn too_many_requests_with_retry_after_waits_at_least_that_long() {
    let fake = fake_with_scenarios(1).await;
    fake.inject("/api/v2/organizations", Fault::TooManyRequests { retry_after_secs: Some(1) }, 1);
    let started = Instant::now();
    let org = client(Duration::from_secs(5)).organization(&target(&fake), ORG).await.unwrap();
    assert_eq!(org.id, ORG);
    let reqs = fake.requests();
    assert_eq!(reqs.iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200]);
    assert!(reqs[1].at.duration_since(reqs[0].at) >= Duration::from_secs(1), "honoured Retry-After: 1");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

/// Make documents no Retry-After: a 429 without one waits out Make's window (a minute; 300 ms here), not a
/// few seconds of backoff that end before Make's window does.
#[tokio::test]
async fn too_many_requests_without_retry_after_waits_out_makes_window() {
    let fake = fake_with_scenarios(1).await;
    fake.inject("/api/v2/organizations", Fault::TooManyRequests { retry_after_secs: None }, 3);
    client(Duration::from_secs(5)).organization(&target(&fake), ORG).await.unwrap();
    let at: Vec<Instant> = fake.requests().iter().map(|r| r.at).collect();
    assert_eq!(at.len(), 4);
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1].duration_since(w[0])).collect();
    for gap in &gaps {
        assert!(*gap >= Duration::from_millis(300), "each 429 waits the window: {gaps:?}");
    }
}

/// A call that can defer gives up at the first 429, and the organization's other callers wait the window.
#[tokio::test]
async fn a_deferrable_call_gives_up_at_once_and_holds_the_organization() {
    let fake = fake_with_scenarios(1).await;
    fake.inject("/api/v2/scenarios/101/usage", Fault::TooManyRequests { retry_after_secs: None }, 1);
    let (c, t) = (client(Duration::from_secs(5)), target(&fake));
    let err = c.usage_with(&t, ORG, UsageOf::Scenario(101), make::OnRateLimit::Defer).await.unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert!(err.to_string().contains("Requests limit for organization exceeded"), "Make's message is kept: {err}");
    let started = Instant::now();
    c.organization(&t, ORG).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250), "held: {:?}", started.elapsed());
}

#[tokio::test]
async fn server_errors_then_success() {
    let fake = fake_with_scenarios(1).await;
    fake.inject("/api/v2/organizations", Fault::Status(500), 1);
    fake.inject("/api/v2/organizations", Fault::Status(503), 1);
    let org = client(Duration::from_secs(5)).organization(&target(&fake), ORG).await.unwrap();
    assert_eq!(org.id, ORG, "500, 503, then success");
    assert_eq!(fake.requests().iter().map(|r| r.status).collect::<Vec<_>>(), [500, 503, 200]);

    // A client error is Make's final answer: reported at once with Make's body, not retried.
    fake.clear_requests();
    fake.inject("/api/v2/organizations", Fault::Status(400), 1);
    let err = client(Duration::from_secs(5)).organization(&target(&fake), ORG).await.unwrap_err();
    assert!(matches!(err, MakeError::Api { status: 400, .. }), "{err}");
    assert!(err.to_string().contains("SC400"), "Make's error body is carried: {err}");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_timeout_then_success() {
    let fake = fake_with_scenarios(1).await;
    fake.inject("/api/v2/organizations", Fault::Delay(Duration::from_millis(800)), 1);
    let started = Instant::now();
    let org = client(Duration::from_millis(300)).organization(&target(&fake), ORG).await.unwrap();
    assert_eq!(org.id, ORG);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The fake records the slow request when it finally answers it.
    crate::support::settle(10, || fake.requests().len() >= 2).await;
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses.len(), 2, "one timed-out attempt, one retry: {statuses:?}");
}

#[tokio::test]
async fn gives_up_after_the_retry_budget_with_a_clear_error() {
    let fake = fake_with_scenarios(1).await;
    fake.inject("/api/v2/scenarios", Fault::Status(502), 10);
    let err = client(Duration::from_secs(5)).scenarios(&target(&fake), ORG).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "gave up after 4 attempts; last error: Make answered 502: SC502 — Bad Gateway — Simulated failure injected into the fake Make API."
    );
    assert_eq!(fake.requests().len(), 4);

    // A Retry-After longer than the client is willing to wait gives up at once instead of stalling.
    fake.clear_faults();
    fake.inject("/api/v2/scenarios", Fault::TooManyRequests { retry_after_secs: Some(3600) }, 1);
    let err = client(Duration::from_secs(5)).scenarios(&target(&fake), ORG).await.unwrap_err();
    assert!(matches!(&err, MakeError::GaveUp { attempts: 1, .. }), "{err}");
    assert_eq!(err.api_error().unwrap().0, 429);
}

#[tokio::test]
async fn malformed_bodies_and_auth_failures_are_not_retried() {
    let fake = fake_with_scenarios(1).await;
    fake.inject("/api/v2/scenarios", Fault::MalformedBody, 1);
    let c = client(Duration::from_secs(5));
    let err = c.scenarios(&target(&fake), ORG).await.unwrap_err();
    assert!(matches!(err, MakeError::Decode(_)), "{err}");

    let mut wrong = target(&fake);
    wrong.token = SecretString::new("00000000-0000-4000-8000-000000000000");
    let err = c.organization(&wrong, ORG).await.unwrap_err();
    assert_eq!(err.api_error().map(|(s, b)| (s, b.code.clone())), Some((401, Some("SC401".into()))));
    assert!(!err.to_string().contains("00000000-0000-4000"), "the token never appears in errors: {err}");
    let bearer = MakeTarget { auth_kind: make::AuthKind::OauthAccessToken, ..target(&fake) };
    assert_eq!(c.organization(&bearer, ORG).await.unwrap_err().api_error().unwrap().0, 401, "wrong scheme");
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn start_and_stop_change_the_scenario() {
    let fake = fake_with_scenarios(1).await;
    let (c, t) = (client(Duration::from_secs(5)), target(&fake));
    assert!(!c.set_scenario_active(&t, ORG, 101, false).await.unwrap());
    assert_eq!(fake.scenario_active(101), Some(false));
    assert!(c.set_scenario_active(&t, ORG, 101, true).await.unwrap());
    assert_eq!(fake.scenario_active(101), Some(true));
    let consumptions = c.consumptions(&t, ORG, 16).await.unwrap();
    assert!(consumptions.last_reset.unwrap().starts_with("2026-03-01"));
}

#[tokio::test]
async fn requests_are_paced_at_the_plans_api_limit() {
    let fake = fake_with_scenarios(1).await; // api_limit 120/min: steady 108/min after a burst of 12
    let c = client(Duration::from_secs(5));
    let t = target(&fake);
    c.organization(&t, ORG).await.unwrap();
    let started = Instant::now();
    for _ in 0..14 {
        c.scenario(&t, ORG, 101).await.unwrap();
    }
    // The burst allowance was partly spent by the organization call; the rest wait 60/108 s each.
    assert!(started.elapsed() >= Duration::from_millis(1_000), "paced: {:?}", started.elapsed());

    // Another organization has its own allowance.
    c.set_api_limit(&t, 99, 60_000);
    let other = Instant::now();
    for _ in 0..5 {
        let _ = c.scenario(&t, 99, 101).await;
    }
    assert!(other.elapsed() < Duration::from_millis(500), "{:?}", other.elapsed());
}
