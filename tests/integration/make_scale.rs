//! The sync at scale, in this process on a virtual clock against the simulated Make (issue 15):
//! - a simulated day of passes with usage advancing: once reconciled, every scenario's days equal Make's daily
//!   figures to the centicredit, and budget status, forecasts, thresholds and `top_n` plans give the same
//!   answers as a full read of every scenario (what the sync did before);
//! - two instances on one PostgreSQL database together stay within the API share in every minute.

use crate::support::in_process;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::support::fake_make::{AuthKind, FakeMake, OrgSpec};
use crate::support::*;
use jiff::{SignedDuration, Timestamp};
use make_budget_mcp::domain::budget::BudgetDraft;
use make_budget_mcp::domain::clock::VirtualClock;
use make_budget_mcp::domain::{Budget, BudgetId, BudgetSpec, Clock, TenantId};
use serde_json::{Value, json};

on_both_stores!(a_simulated_day_of_syncs_agrees_with_a_full_read);

const TOKEN: &str = "9d3e1f4a-5b6c-4d7e-8f90-a1b2c3d4e5f6";
const ORG: i64 = 3001;
/// Monday 2026-03-16, 06:00 UTC (07:00 in Prague, the organization's time zone).
const START: &str = "2026-03-16T06:00:00Z";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A simulated organization on `clock`: 4 teams (one a private space), 40 scenarios, 30 active, apiLimit 60,
/// a monthly plan, with 30 days of usage before `START` and usage for the next `hours` hours.
async fn simulated(clock: Arc<VirtualClock>, hours: i64) -> FakeMake {
    let fake = FakeMake::start_with_clock(clock).await;
    fake.add_token(TOKEN, AuthKind::Token, &[ORG]);
    fake.add_organization(OrgSpec {
        api_limit: 60,
        allowance: 400_000,
        last_reset: ts("2026-03-01T00:00:00Z"),
        next_reset: Some(ts("2026-04-01T00:00:00Z")),
        zone: String::new(),
        ..OrgSpec::new(ORG, "Scale Co")
    });
    fake.populate(ORG, 4, 1, 40, 30, 7);
    fake.advance_usage(ts(START), ts(START).checked_add(SignedDuration::from_hours(hours)).unwrap());
    fake
}

/// Make's daily figures of every scenario, straight from the simulator: scenario → day → centicredits.
async fn makes_days(fake: &FakeMake, scenarios: &[i64]) -> BTreeMap<i64, BTreeMap<String, i64>> {
    let http = reqwest::Client::new();
    let mut out = BTreeMap::new();
    for id in scenarios {
        let url = format!("{}/api/v2/scenarios/{id}/usage?organizationTimezone=true", fake.base_url());
        let body: Value =
            http.get(url).header("authorization", format!("Token {TOKEN}")).send().await.unwrap().json().await.unwrap();
        let days = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["date"].as_str().unwrap().to_owned(), d["centicredits"].as_i64().unwrap()))
            .collect();
        out.insert(*id, days);
    }
    out
}

/// The stored scenario days: scenario → day → (centicredits, estimated part).
async fn stored_days(i: &in_process::Instance) -> BTreeMap<i64, BTreeMap<String, (i64, i64)>> {
    let rows = sqlx::query(
        "SELECT subject_id, day, centicredits, snapshot_centicredits FROM usage_daily WHERE subject_kind = 'scenario'",
    )
    .fetch_all(i.store().pool())
    .await
    .unwrap();
    let mut out: BTreeMap<i64, BTreeMap<String, (i64, i64)>> = BTreeMap::new();
    for r in rows {
        use sqlx::Row;
        out.entry(r.get::<i64, _>("subject_id"))
            .or_default()
            .insert(r.get("day"), (r.get("centicredits"), r.get("snapshot_centicredits")));
    }
    out
}

fn budget(name: &str, scope: Value) -> Budget {
    let draft: BudgetDraft = serde_json::from_value(json!({
        "name": name, "unit": "credits", "limit": 5_000, "period": {"kind": "monthly"}, "timezone": "Europe/Prague",
        "scope": scope,
    }))
    .unwrap();
    Budget::new(BudgetId::new(), BudgetSpec::new(draft).unwrap(), ts(START), "tester")
}

async fn insert(i: &in_process::Instance, tenant: TenantId, budgets: &[Budget]) {
    for b in budgets {
        let mut tx = i.store().tenant(tenant).begin().await.unwrap();
        tx.insert_budget(b).await.unwrap();
        tx.commit(test_entry("create_budget", &b.id)).await.unwrap();
    }
}

/// What a budget's status says, without the freshness of its data (which differs between the two syncs).
async fn answers(i: &in_process::Instance, tenant: TenantId, b: &Budget, now: Timestamp) -> Value {
    use make_budget_mcp::domain::action::{Selector, SelectorKind};
    let c = make_budget_mcp::engine::status::compute(i.store(), tenant, b, now).await.unwrap();
    let mut s = serde_json::to_value(&c.status).unwrap();
    s.as_object_mut().unwrap().remove("data");
    let top = Selector { kind: SelectorKind::TopN, top_n: Some(5) };
    let preview = make_budget_mcp::engine::actions::preview(&i.app, tenant, b, top, now).await.unwrap();
    let preview = serde_json::to_value(&preview).unwrap();
    assert!(preview["scenarios"].as_array().is_some_and(|p| !p.is_empty()), "top_n picks something: {preview}");
    json!({"status": s, "top_n": preview["scenarios"], "saving": preview["expected_saving"]})
}

mod cases {
    use super::*;

    pub async fn a_simulated_day_of_syncs_agrees_with_a_full_read(db: TestDb) {
        let clock = Arc::new(VirtualClock::new(ts(START)));
        let fake = simulated(clock.clone(), 24).await;
        // Passes every 15 minutes (96 a day) keep the test short; the rules are the same at 5 minutes.
        let i = in_process::instance(&db.url, clock.clone(), 900, 0.5).await;
        let tenant = in_process::connect(&i, "scale", &fake.base_url(), TOKEN, &[ORG]).await;
        // A full read of every scenario (what the sync did before), at the start: its interval of a day makes
        // its pass read every scenario's daily usage.
        let full_db = if db.is_postgres() { postgres_db("make_scale::full").await.unwrap() } else { sqlite_db() };
        let full = in_process::instance(&full_db.url, clock.clone(), 86_400, 1.0).await;
        let full_tenant = in_process::connect(&full, "scale", &fake.base_url(), TOKEN, &[ORG]).await;
        in_process::sync(&full, full_tenant).await;
        fake.clear_requests(); // what follows is the day of the sync under test
        let next_start = clock.now();
        let end = ts(START).checked_add(SignedDuration::from_hours(24)).unwrap();
        let mut next = next_start;
        let mut passes = 0;
        while clock.now() < end.checked_add(SignedDuration::from_mins(30)).unwrap() {
            if clock.now() < next {
                clock.advance(next.duration_since(clock.now()));
            }
            let r = in_process::sync(&i, tenant).await;
            assert_eq!(r[0].status, "synced", "{:?}", r[0]);
            assert!(r[0].api.total <= r[0].api.allowed_per_pass, "within the pass's budget: {:?}", r[0].api);
            next = next.checked_add(SignedDuration::from_secs(900)).unwrap();
            passes += 1;
        }
        assert!(passes >= 96);
        assert_eq!(fake.too_many_requests_served(ORG), 0, "never a 429");
        assert!(fake.peak_requests_per_minute(ORG) <= 30, "within the share: {}", fake.peak_requests_per_minute(ORG));

        // Between reconciliations the estimates track Make: today's scenario days, mostly derived from
        // consumption snapshots, add up to the organization's own figure for today (within the part of the
        // interval over midnight that was split by time).
        let today = clock.now().to_zoned_datetime(jiff::tz::TimeZone::get("Europe/Prague").unwrap()).date().to_string();
        let (org_today, scenarios_today, estimated_today): (i64, i64, i64) = {
            use sqlx::Row;
            let org: i64 =
                sqlx::query("SELECT centicredits FROM usage_daily WHERE subject_kind = 'organization' AND day = $1")
                    .bind(&today)
                    .fetch_one(i.store().pool())
                    .await
                    .unwrap()
                    .get("centicredits");
            let row = sqlx::query(
                "SELECT CAST(COALESCE(SUM(centicredits), 0) AS BIGINT) AS c,
                        CAST(COALESCE(SUM(snapshot_centicredits), 0) AS BIGINT) AS e
                 FROM usage_daily WHERE subject_kind = 'scenario' AND day = $1",
            )
            .bind(&today)
            .fetch_one(i.store().pool())
            .await
            .unwrap();
            (org, row.get("c"), row.get("e"))
        };
        assert!(estimated_today > 0, "today's scenario figures come mostly from snapshots");
        assert!(
            (scenarios_today - org_today).abs() * 50 <= org_today,
            "scenarios {scenarios_today} vs organization {org_today} today"
        );

        // One pass that reconciles every consuming scenario (its interval is a day).
        let reconciler = in_process::instance(&db.url, clock.clone(), 86_400, 0.5).await;
        let r = in_process::sync(&reconciler, tenant).await;
        assert_eq!(r[0].status, "synced");
        let stored = stored_days(&i).await;
        let scenarios: Vec<i64> = stored.keys().copied().collect();
        assert!(scenarios.len() >= 25, "the active scenarios have histories: {}", scenarios.len());
        let make = makes_days(&fake, &scenarios).await;
        for (id, days) in &make {
            for (day, cc) in days {
                let (got, estimate) = stored[id].get(day).copied().unwrap_or((0, 0));
                assert_eq!((got, estimate), (*cc, 0), "scenario {id} on {day}: stored vs Make's daily figure");
            }
        }

        // The same budgets against a full read of every scenario (what the sync did before), which ran at the
        // start and now ran again, so it holds the same days.
        let r = in_process::sync(&full, full_tenant).await;
        assert_eq!((r[0].status.as_str(), r[0].backfill_pending), ("synced", 0));
        let teams: Vec<i64> = {
            use sqlx::Row;
            sqlx::query("SELECT team_id FROM make_teams ORDER BY team_id")
                .fetch_all(i.store().pool())
                .await
                .unwrap()
                .iter()
                .map(|r| r.get("team_id"))
                .collect()
        };
        let budgets = [
            budget("Whole organization", json!({"organization_id": ORG})),
            budget("One team", json!({"organization_id": ORG, "team_ids": [teams[0]]})),
            budget("A few scenarios", json!({"organization_id": ORG, "scenario_ids": &scenarios[..5]})),
            budget("All but two", json!({"organization_id": ORG, "excluded_scenario_ids": &scenarios[..2]})),
        ];
        insert(&i, tenant, &budgets).await;
        insert(&full, full_tenant, &budgets).await;
        let now = clock.now();
        for b in &budgets {
            let (ours, theirs) = (answers(&i, tenant, b, now).await, answers(&full, full_tenant, b, now).await);
            assert_eq!(ours, theirs, "{}: status and top_n plan agree with a full read", b.spec.name);
        }
    }
}

/// Two instances on one PostgreSQL database, each syncing the same organization for three virtual hours,
/// together never exceed the share of the API limit in any minute, and Make never answers 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_stay_within_the_share() {
    let Some(db) = postgres_db("make_scale::two_instances").await else { return };
    let clock = Arc::new(VirtualClock::new(ts(START)));
    let fake = simulated(clock.clone(), 4).await;
    fake.enforce_rate_limit(ORG, std::time::Duration::from_secs(60));
    let a = in_process::instance(&db.url, clock.clone(), 300, 0.5).await;
    let b = in_process::instance(&db.url, clock.clone(), 300, 0.5).await;
    let tenant_a = in_process::connect(&a, "first", &fake.base_url(), TOKEN, &[ORG]).await;
    let tenant_b = in_process::connect(&b, "second", &fake.base_url(), TOKEN, &[ORG]).await;
    let end = ts(START).checked_add(SignedDuration::from_hours(3)).unwrap();
    let run = |i: &'static in_process::Instance, tenant: TenantId| async move {
        while i.clock.now() < end {
            in_process::sync(i, tenant).await;
        }
    };
    let (a, b): (&'static _, &'static _) = (Box::leak(Box::new(a)), Box::leak(Box::new(b)));
    tokio::join!(run(a, tenant_a), run(b, tenant_b));
    let peak = fake.peak_requests_per_minute(ORG);
    assert!(peak <= 30, "two instances together: {peak} calls in one minute, the share is 30");
    assert!(peak >= 25, "and they use it: {peak}");
    assert_eq!(fake.too_many_requests_served(ORG), 0);
}
