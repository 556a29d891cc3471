//! What Make really returns, on the real binary against the simulated Make (issue 15, section 2): 429s with
//! plain-text bodies and no Retry-After, teams the token cannot read, scenarios deleted during a sync,
//! responses without their envelope key, errors with suberrors and non-JSON bodies, private spaces, yearly
//! plans, extra operations, token scopes and zones. On both stores wherever something is written.

use std::time::{Duration, Instant};

use crate::support::fake_make::{Fault, OrgSpec, ScenarioSpec};
use crate::support::*;
use serde_json::{Value, json};

on_both_stores!(
    a_429_is_waited_out_and_never_fails_the_organization,
    a_429_on_a_backfill_read_defers_the_rest_to_the_next_sync,
    a_team_the_token_cannot_read_is_skipped_with_a_warning,
    a_scenario_deleted_during_the_sync_is_skipped,
    a_response_without_its_key_fails_the_organization_and_writes_nothing,
    private_spaces_are_synced,
    yearly_plans_are_not_differenced,
    make_errors_keep_their_detail,
    extra_operations_count_in_the_allowance,
    a_token_without_the_write_scope_cannot_pause,
    an_organization_of_another_zone_is_refused,
);

/// Make's one-minute window, shortened for tests.
const WAIT: (&str, &str) = ("MBM_MAKE_RATE_LIMIT_WAIT_MS", "300");

async fn admin(db: &TestDb, env: &[(&str, &str)]) -> (HttpServer, Client) {
    let tenant = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &tenant, "admin", "alice");
    let server = HttpServer::start_with(&db.url, env).await;
    let client = http_client(&server.mcp_url, &token, Lifecycle::Initialize).await;
    (server, client)
}

fn org_report(r: &Value) -> &Value {
    &r["organizations"][0]
}

fn warnings(r: &Value) -> String {
    org_report(r)["warnings"]
        .as_array()
        .map(|w| w.iter().map(|x| x.as_str().unwrap_or("")).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

mod cases {
    use super::*;

    /// A 429 with a plain-text body and no Retry-After holds the organization for Make's window and the
    /// read is repeated: the organization syncs. A stop that met a 429 was not carried out; it is sent
    /// again after the wait, and the scenario is stopped exactly once.
    pub async fn a_429_is_waited_out_and_never_fails_the_organization(db: TestDb) {
        let fake = seeded_fake_at(utc_today()).await;
        fake.set_plain_text_429(true);
        let (_server, client) = admin(&db, &[WAIT]).await;
        call_ok(&client, "connect_make", connect_args(&fake, &[ORG])).await;
        fake.inject("/api/v2/teams", Fault::TooManyRequests { retry_after_secs: None }, 1);
        let started = Instant::now();
        let r = call_ok(&client, "sync_usage", json!({"organization_id": ORG})).await;
        assert_eq!(r["all_synced"], true, "{r}");
        assert!(started.elapsed() >= Duration::from_millis(300), "Make's window was waited out");
        let api = &org_report(&r)["api"];
        assert_eq!(api["rate_limited"], 1, "{api}");
        assert_eq!(api["calls"]["teams"], 2, "the teams list was read again: {api}");

        fake.inject("/api/v2/scenarios/501/stop", Fault::TooManyRequests { retry_after_secs: None }, 1);
        let p = call_ok(&client, "pause_scenarios", json!({"scenario_ids": [501], "reason": "runaway"})).await;
        assert_eq!(p["changed"], 1, "{p}");
        let stops: Vec<u16> =
            fake.requests().iter().filter(|q| q.path == "/api/v2/scenarios/501/stop").map(|q| q.status).collect();
        assert_eq!(stops, [429, 200], "one refused stop, then exactly one carried out");
        assert_eq!(fake.scenario_active(501), Some(false));
    }

    /// A 429 on a backfill read gives up at once: the organization's core figures are written and the
    /// rest of the backfill waits for the next sync, which completes it.
    pub async fn a_429_on_a_backfill_read_defers_the_rest_to_the_next_sync(db: TestDb) {
        let fake = seeded_fake_at(utc_today()).await;
        let (_server, client) = admin(&db, &[WAIT]).await;
        call_ok(&client, "connect_make", connect_args(&fake, &[ORG])).await;
        // Histories are read highest consumer first: 503 is the first.
        fake.inject("/api/v2/scenarios/503/usage", Fault::TooManyRequests { retry_after_secs: None }, 1);
        let r = call_ok(&client, "sync_usage", json!({"organization_id": ORG})).await;
        assert_eq!(org_report(&r)["status"], "synced", "{r}");
        assert!(warnings(&r).contains("deferred to the next sync"), "{r}");
        assert!(org_report(&r)["backfill_pending"].as_i64().unwrap() > 0, "{r}");
        let store = open_store(&db.url).await;
        assert!(count(&store, "usage_daily", "subject_kind = 'organization'").await > 0, "core figures written");
        let again = call_ok(&client, "sync_usage", json!({"organization_id": ORG})).await;
        assert_eq!(org_report(&again)["backfill_pending"], 0, "{again}");
        assert!(count(&store, "usage_daily", "subject_kind = 'scenario' AND subject_id = 503").await > 0);
    }

    /// A team the token cannot read (403) is skipped with a warning that names it; the rest syncs.
    pub async fn a_team_the_token_cannot_read_is_skipped_with_a_warning(db: TestDb) {
        let fake = seeded_fake_at(utc_today()).await;
        let (_server, client) = admin(&db, &[]).await;
        call_ok(&client, "connect_make", connect_args(&fake, &[ORG])).await;
        fake.forbid_team(17);
        let r = call_ok(&client, "sync_usage", json!({"organization_id": ORG})).await;
        assert_eq!(org_report(&r)["status"], "synced", "{r}");
        let w = warnings(&r);
        assert!(w.contains("team 17 skipped") && w.contains("403"), "{w}");
        let store = open_store(&db.url).await;
        assert!(count(&store, "usage_daily", "subject_kind = 'team' AND subject_id = 16").await > 0);
        assert_eq!(count(&store, "usage_daily", "subject_kind = 'team' AND subject_id = 17").await, 0);
    }

    /// A scenario deleted between the list and its usage read (404) is skipped with a warning naming it.
    pub async fn a_scenario_deleted_during_the_sync_is_skipped(db: TestDb) {
        let fake = seeded_fake_at(utc_today()).await;
        let (_server, client) = admin(&db, &[]).await;
        call_ok(&client, "connect_make", connect_args(&fake, &[ORG])).await;
        fake.vanish_after_listing(502);
        let r = call_ok(&client, "sync_usage", json!({"organization_id": ORG})).await;
        assert_eq!(org_report(&r)["status"], "synced", "{r}");
        assert!(warnings(&r).contains("scenario 502 skipped"), "{r}");
        assert!(!fake.scenario_exists(502));
    }

    /// A response without its envelope key is an error that names the endpoint and the key; nothing of the
    /// organization is written (never zero usage).
    pub async fn a_response_without_its_key_fails_the_organization_and_writes_nothing(db: TestDb) {
        let fake = seeded_fake_at(utc_today()).await;
        let (_server, client) = admin(&db, &[]).await;
        call_ok(&client, "connect_make", connect_args(&fake, &[ORG])).await;
        let store = open_store(&db.url).await;
        for (path, key) in [
            (format!("/api/v2/organizations/{ORG}/usage"), "data"),
            ("/api/v2/teams/16/usage".to_owned(), "data"),
            ("/api/v2/scenarios/consumptions".to_owned(), "scenarioConsumptions"),
            ("/api/v2/teams".to_owned(), "teams"),
            ("/api/v2/scenarios".to_owned(), "scenarios"),
        ] {
            fake.clear_faults();
            fake.inject(&path, Fault::OmitKey(key), 1);
            // Nothing could be synced: the call fails, naming the endpoint and the key.
            let e = call_err(&client, "sync_usage", json!({"organization_id": ORG})).await;
            assert!(e.starts_with("make_error: nothing could be synced"), "{path}: {e}");
            assert!(e.contains(&format!("has no `{key}` key")) && e.contains("GET /"), "{path}: {e}");
            assert_eq!(count(&store, "usage_daily", "").await, 0, "{path}: nothing written");
            assert_eq!(count(&store, "make_scenarios", "").await, 0, "{path}: nothing written");
        }
    }

    /// Private spaces are listed (includePrivateSpaces=true) and their usage counts.
    pub async fn private_spaces_are_synced(db: TestDb) {
        let fake = seeded_fake_at(utc_today()).await;
        fake.add_private_space(ORG, 18, "Jane's private space");
        fake.add_scenario(ScenarioSpec::new(506, ORG, 18, "Jane's helper"));
        for (i, day) in usage_days_to(utc_today()).into_iter().enumerate() {
            if i % 3 == 0 {
                fake.set_usage(506, day, 4_200, 42);
            }
        }
        let (_server, client) = admin(&db, &[]).await;
        call_ok(&client, "connect_make", connect_args(&fake, &[ORG])).await;
        let r = call_ok(&client, "sync_usage", json!({"organization_id": ORG})).await;
        assert_eq!(org_report(&r)["teams"], 3, "{r}");
        let store = open_store(&db.url).await;
        assert!(count(&store, "usage_daily", "subject_kind = 'team' AND subject_id = 18").await > 0);
        assert!(
            fake.requests().iter().any(|q| q.path == "/api/v2/teams" && q.query.contains("includePrivateSpaces=true"))
        );
        let scenarios = call_ok(&client, "list_scenarios", json!({"team_id": 18})).await;
        assert_eq!(scenarios["scenarios"][0]["scenario_id"], 506, "{scenarios}");
    }

    /// On a yearly plan consumptions are running 60-day totals: the sync derives no estimates from their
    /// differences, and says it is a yearly plan.
    pub async fn yearly_plans_are_not_differenced(db: TestDb) {
        let fake = seeded_fake_at(utc_today()).await;
        let year_start = utc_today().first_of_year().to_zoned_datetime(jiff::tz::TimeZone::UTC).unwrap().timestamp();
        fake.add_organization(OrgSpec {
            restart_period: "1 year".into(),
            last_reset: year_start,
            next_reset: Some(year_start.checked_add(jiff::SignedDuration::from_hours(366 * 24)).unwrap()),
            api_limit: 60_000,
            zone: String::new(),
            ..OrgSpec::new(ORG, "Acme")
        });
        let (_server, client) = admin(&db, &[]).await;
        call_ok(&client, "connect_make", connect_args(&fake, &[ORG])).await;
        let first = call_ok(&client, "sync_usage", json!({"organization_id": ORG})).await;
        assert_eq!(org_report(&first)["yearly_plan"], true, "{first}");
        fake.consume(501, jiff::Timestamp::now(), 90_000, 900);
        call_ok(&client, "sync_usage", json!({"organization_id": ORG})).await;
        let store = open_store(&db.url).await;
        assert_eq!(count(&store, "usage_daily", "snapshot_centicredits > 0").await, 0, "no estimates on a yearly plan");
    }

    /// Errors keep Make's detail: suberrors, and the start of a body that is not JSON.
    pub async fn make_errors_keep_their_detail(db: TestDb) {
        let fake = seeded_fake_at(utc_today()).await;
        let (_server, client) =
            admin(&db, &[("MBM_MAKE_MAX_ATTEMPTS", "2"), ("MBM_MAKE_RETRY_BASE_DELAY_MS", "10")]).await;
        call_ok(&client, "connect_make", connect_args(&fake, &[ORG])).await;
        fake.inject(
            "/api/v2/teams",
            Fault::WithSuberrors { status: 400, suberrors: vec!["teamId is invalid".into()] },
            1,
        );
        let e = call_err(&client, "sync_usage", json!({"organization_id": ORG})).await;
        assert!(e.contains("suberrors: teamId is invalid"), "{e}");
        fake.inject(
            "/api/v2/teams",
            Fault::PlainText { status: 502, body: "<html>Bad gateway from the proxy</html>".into() },
            2,
        );
        let e = call_err(&client, "sync_usage", json!({"organization_id": ORG})).await;
        assert!(e.contains("Bad gateway from the proxy"), "{e}");
        assert!(!e.contains(MAKE_TOKEN), "no secret in errors");
    }

    /// Extra operations bought count in the allowance.
    pub async fn extra_operations_count_in_the_allowance(db: TestDb) {
        let fake = seeded_fake_at(utc_today()).await;
        let month = utc_today().first_of_month().to_zoned_datetime(jiff::tz::TimeZone::UTC).unwrap().timestamp();
        fake.add_organization(OrgSpec {
            operations_ext: 5_000,
            last_reset: month,
            next_reset: Some(month.checked_add(jiff::SignedDuration::from_hours(31 * 24)).unwrap()),
            api_limit: 60_000,
            zone: String::new(),
            ..OrgSpec::new(ORG, "Acme")
        });
        let (_server, client) = admin(&db, &[]).await;
        let c = call_ok(&client, "connect_make", connect_args(&fake, &[ORG])).await;
        let org = &c["organizations"][0];
        assert_eq!((org["allowance"].as_i64(), org["allowance_extra"].as_i64()), (Some(45_000), Some(5_000)), "{c}");
    }

    /// A token without scenarios:write connects with a warning; pausing on it refuses with that reason and
    /// sends nothing to Make.
    pub async fn a_token_without_the_write_scope_cannot_pause(db: TestDb) {
        let fake = seeded_fake_at(utc_today()).await;
        fake.set_scopes(MAKE_TOKEN, &["organizations:read", "teams:read", "scenarios:read"]);
        let (_server, client) = admin(&db, &[]).await;
        let c = call_ok(&client, "connect_make", connect_args(&fake, &[ORG])).await;
        assert_eq!(c["can_control_scenarios"], false, "{c}");
        assert!(c["warnings"][0].as_str().unwrap().contains("lacks scenarios:write"), "{c}");
        call_ok(&client, "sync_usage", json!({})).await;
        let r = call_ok(&client, "pause_scenarios", json!({"scenario_ids": [501], "reason": "runaway"})).await;
        assert_eq!(r["failed"], 1, "{r}");
        let err = r["results"][0]["error"]["message"].as_str().unwrap_or_default().to_owned()
            + r["results"][0]["error"].to_string().as_str();
        assert!(err.contains("scenarios:write"), "{r}");
        assert!(!fake.requests().iter().any(|q| q.path.ends_with("/stop")), "nothing was sent to Make");
        let listed = call_ok(&client, "list_make_connections", json!({})).await;
        assert_eq!(listed["connections"][0]["can_control_scenarios"], false);
    }

    /// An organization of another zone is refused with the zone to use.
    pub async fn an_organization_of_another_zone_is_refused(db: TestDb) {
        let fake = seeded_fake_at(utc_today()).await;
        fake.add_organization(OrgSpec { zone: "eu2.make.com".into(), ..OrgSpec::new(ORG, "Acme") });
        let (_server, client) = admin(&db, &[]).await;
        let e = call_err(&client, "connect_make", connect_args(&fake, &[ORG])).await;
        assert!(e.contains("invalid argument `zone`") && e.contains("connect it with zone \"eu2.make.com\""), "{e}");
    }
}
