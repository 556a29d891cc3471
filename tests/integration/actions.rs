//! Automated actions end to end: the real binary (HTTP, rmcp client) against the fake Make API and a
//! local webhook receiver. Plans, four-eyes approval, pausing exactly the right scenarios, reversal,
//! signed notifications, faults, a crash mid-plan, and two instances sharing one PostgreSQL.

use std::time::Duration;

use crate::support::fake_make::Fault;
use crate::support::in_memory::LocalServer;
use crate::support::*;
use serde_json::{Value, json};
use sqlx::Row;

on_both_stores!(
    crossings_plan_approve_pause_and_reverse_exactly_the_right_scenarios,
    faults_are_retried_and_no_scenario_is_stopped_twice,
    a_plan_interrupted_by_a_crash_resumes_without_double_actions,
    webhook_failures_are_retried_and_recorded,
    approvals_expire,
    automatic_plans_run_at_once_and_reverse_when_a_new_period_begins,
);

const HOOK_SECRET: &str = "whsec-0123456789abcdef";

fn stop_path(id: i64) -> String {
    format!("/api/v2/scenarios/{id}/stop")
}

fn start_path(id: i64) -> String {
    format!("/api/v2/scenarios/{id}/start")
}

/// Centicredits the seeded fake's organization ORG consumed this month up to `today` (UTC).
fn month_to_date_centi(today: jiff::civil::Date) -> i64 {
    usage_days_to(today)
        .into_iter()
        .enumerate()
        .filter(|(_, d)| *d >= today.first_of_month())
        .map(|(i, _)| ORG_SCENARIOS.iter().map(|s| centicredits_on(*s, i) as i64).sum::<i64>())
        .sum()
}

fn org_budget(limit: i64) -> Value {
    json!({"name": "Acme monthly", "unit": "credits", "limit": limit, "period": {"kind": "monthly"},
           "timezone": "UTC", "scope": {"organization_id": ORG}})
}

struct Session {
    server: HttpServer,
    alice: Client,
    bob: Client,
}

/// A tenant with an admin (alice) and an operator (bob), Make connected and synced once.
async fn session(db: &TestDb, fake: &crate::support::fake_make::FakeMake, env: &[(&str, &str)]) -> Session {
    let tenant = create_tenant(&db.url, "acme");
    let alice_token = issue_token(&db.url, &tenant, "admin", "alice");
    let bob_token = issue_token(&db.url, &tenant, "operator", "bob");
    let server = HttpServer::start_with(&db.url, env).await;
    let alice = http_client(&server.mcp_url, &alice_token, Lifecycle::Initialize).await;
    let bob = http_client(&server.mcp_url, &bob_token, Lifecycle::Initialize).await;
    call_ok(&alice, "connect_make", connect_args(fake, &[ORG])).await;
    Session { server, alice, bob }
}

struct LocalSession {
    server: LocalServer,
    alice: Client,
    bob: Client,
}

/// [`session`] with the server in this process on a manual clock (`support::in_memory`), configured as
/// the binary is plus `set`.
async fn local_session(
    db: &TestDb,
    fake: &crate::support::fake_make::FakeMake,
    set: impl FnOnce(&mut make_budget_mcp::config::Overrides),
) -> LocalSession {
    let tenant = create_tenant(&db.url, "acme");
    let alice_token = issue_token(&db.url, &tenant, "admin", "alice");
    let bob_token = issue_token(&db.url, &tenant, "operator", "bob");
    let server = LocalServer::start_with(&db.url, set).await;
    let alice = server.client(&alice_token).await;
    let bob = server.client(&bob_token).await;
    call_ok(&alice, "connect_make", connect_args(fake, &[ORG])).await;
    LocalSession { server, alice, bob }
}

/// A budget on ORG with a 100 % actual threshold that pauses non-critical scenarios after approval.
async fn budget_with_pause(client: &Client, limit: i64, mode: &str) -> (String, String) {
    let budget = call_ok(client, "create_budget", org_budget(limit)).await;
    let id = budget["id"].as_str().unwrap().to_owned();
    let t = call_ok(
        client,
        "add_threshold",
        json!({"budget_id": id, "kind": "percent", "value": 100, "basis": "actual", "severity": "critical"}),
    )
    .await;
    let action = call_ok(
        client,
        "add_threshold_action",
        json!({"threshold_id": t["id"], "kind": "pause_scenarios", "selector": {"kind": "non_critical"}, "mode": mode}),
    )
    .await;
    (id, action["id"].as_str().unwrap().to_owned())
}

async fn only_plan(client: &Client) -> Value {
    let plans = call_ok(client, "list_actions", json!({})).await;
    let plans = plans["plans"].as_array().unwrap();
    assert_eq!(plans.len(), 1, "{plans:?}");
    call_ok(client, "get_action", json!({"plan_id": plans[0]["id"]})).await
}

fn item_status(plan: &Value, scenario: i64) -> String {
    plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["scenario_id"] == scenario)
        .map(|i| i["status"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("scenario {scenario} not in plan {plan:#}"))
}

async fn audit_actions(db: &TestDb) -> Vec<(String, String)> {
    let store = open_store(&db.url).await;
    let rows = sqlx::query("SELECT action, outcome FROM audit_log ORDER BY tenant_id, seq")
        .fetch_all(store.pool())
        .await
        .unwrap();
    store.close().await;
    rows.iter().map(|r| (r.try_get("action").unwrap(), r.try_get("outcome").unwrap())).collect()
}

mod cases {
    use super::*;

    pub async fn crossings_plan_approve_pause_and_reverse_exactly_the_right_scenarios(db: TestDb) {
        let today = utc_today();
        let fake = seeded_fake_at(today).await;
        let hook = WebhookReceiver::start(HOOK_SECRET).await;
        let s = session(&db, &fake, &[]).await;
        let (alice, bob) = (&s.alice, &s.bob);
        call_ok(alice, "add_webhook", json!({"url": hook.url, "secret": HOOK_SECRET, "label": "ops"})).await;
        call_ok(alice, "sync_usage", json!({})).await;
        let marked = call_ok(alice, "set_scenario_critical", json!({"scenario_id": 503, "critical": true})).await;
        assert_eq!((marked["critical"].as_bool(), marked["was_critical"].as_bool()), (Some(true), Some(false)));

        // The limit sits just above what was spent, so the forecast is past 80 % and the actual below 100 %.
        let spent = month_to_date_centi(today) / 100;
        let (budget, _) = budget_with_pause(alice, spent + 1, "requires_approval").await;
        let t80 = call_ok(
            alice,
            "add_threshold",
            json!({"budget_id": budget, "kind": "percent", "value": 80, "basis": "forecast", "severity": "warning"}),
        )
        .await;
        call_ok(alice, "add_threshold_action", json!({"threshold_id": t80["id"], "kind": "notify"})).await;
        let preview =
            call_ok(alice, "preview_action", json!({"budget_id": budget, "selector": {"kind": "non_critical"}})).await;
        let picked: Vec<i64> =
            preview["scenarios"].as_array().unwrap().iter().map(|p| p["scenario_id"].as_i64().unwrap()).collect();
        assert_eq!(picked, vec![501, 502], "active, non-critical, highest consumption first: {preview:#}");
        assert!(preview["expected_saving"].as_i64().unwrap() > 0, "{preview:#}");
        let left_out = preview["left_out"].to_string();
        assert!(left_out.contains("marked critical") && left_out.contains("inactive"), "{left_out}");

        let first = call_ok(alice, "sync_usage", json!({})).await;
        let crossed: Vec<&str> =
            first["threshold_crossings"].as_array().unwrap().iter().map(|c| c["basis"].as_str().unwrap()).collect();
        assert_eq!(crossed, vec!["forecast"], "only the forecast threshold is crossed yet: {first:#}");
        let none = call_ok(alice, "list_actions", json!({})).await;
        assert_eq!(none["plans"], json!([]));

        // Usage grows: a big day for 501 takes the actual past the limit.
        fake.set_usage(501, today, 60_000 + centicredits_on(501, 29), 600);
        let second = call_ok(alice, "sync_usage", json!({})).await;
        assert_eq!(second["threshold_crossings"][0]["basis"], "actual", "{second:#}");
        let plan = only_plan(alice).await;
        assert_eq!(plan["state"], "awaiting_approval");
        assert_eq!(plan["requested_by"], "alice");
        assert!(plan["why"].as_str().unwrap().contains("Acme monthly"), "{plan:#}");
        let items: Vec<i64> =
            plan["items"].as_array().unwrap().iter().map(|i| i["scenario_id"].as_i64().unwrap()).collect();
        assert_eq!(items, vec![501, 502], "{plan:#}");
        assert!(fake.scenario_active(501) == Some(true), "nothing is paused before approval");

        // Four eyes: the requester cannot approve; a viewer-level refusal names the rule.
        let e = call_err(alice, "approve_action", json!({"plan_id": plan["id"]})).await;
        assert!(e.starts_with("permission_denied:") && e.contains("cannot approve"), "{e}");
        assert_eq!(fake.scenario_active(501), Some(true));
        let done = call_ok(bob, "approve_action", json!({"plan_id": plan["id"], "reason": "agreed in chat"})).await;
        assert_eq!(done["state"], "executed", "{done:#}");
        assert_eq!(done["decided_by"], "bob");
        assert_eq!((item_status(&done, 501), item_status(&done, 502)), ("stopped".into(), "stopped".into()));
        let states: Vec<Option<bool>> = [501, 502, 503, 504, 505].iter().map(|id| fake.scenario_active(*id)).collect();
        assert_eq!(states, vec![Some(false), Some(false), Some(true), Some(false), Some(false)]);
        for id in [503, 504, 505] {
            assert_eq!(requests_to(&fake, "POST", &stop_path(id)), 0, "scenario {id} must not be touched");
        }
        let again = call_err(bob, "approve_action", json!({"plan_id": plan["id"]})).await;
        assert!(again.starts_with("conflict:") && again.contains("executed"), "{again}");

        // Someone resumes 502 by hand; the reversal then starts only 501 and leaves 504/505 alone.
        fake.set_scenario_active(502, true);
        let e = call_err(bob, "reverse_action", json!({"plan_id": plan["id"]})).await;
        assert!(e.contains("invalid argument `reason`: is required"), "{e}");
        let reversed = call_ok(bob, "reverse_action", json!({"plan_id": plan["id"], "reason": "budget raised"})).await;
        assert_eq!(reversed["state"], "reversed");
        assert_eq!(
            (item_status(&reversed, 501), item_status(&reversed, 502)),
            ("resumed".into(), "left_active".into())
        );
        assert_eq!(fake.scenario_active(501), Some(true));
        assert_eq!(requests_to(&fake, "POST", &start_path(501)), 1);
        for id in [502, 503, 504, 505] {
            assert_eq!(requests_to(&fake, "POST", &start_path(id)), 0, "scenario {id} must not be started");
        }

        // The evaluator delivers the events, signed.
        let out = cli_env(&db.url, &["evaluate", "--once"], &[]);
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<String> = hook.received().iter().map(|r| r.event_type.clone()).collect();
        for kind in ["threshold_crossed", "approval_needed", "plan_approved", "plan_executed", "plan_reversed"] {
            assert_eq!(got.iter().filter(|k| *k == kind).count(), 1, "one {kind} event: {got:?}");
        }
        assert!(hook.received().iter().all(|r| r.signature_ok), "every delivery is signed with the secret");
        let crossed = &hook.of_type("threshold_crossed")[0];
        assert_eq!(crossed.body["data"]["basis"], "forecast");
        assert!(crossed.body["text"].as_str().unwrap().contains("[warning]"), "{:#}", crossed.body);
        let hooks = call_ok(alice, "list_webhooks", json!({})).await;
        assert!(!hooks.to_string().contains(HOOK_SECRET), "the secret is never shown");
        assert!(!hooks.to_string().contains("/hook"), "nor the URL's path: {hooks}");
        assert!(hooks["webhooks"][0]["recent"].as_array().unwrap().iter().all(|n| n["state"] == "delivered"));

        // Every step is in the audit chain, and the chain verifies.
        let audit = audit_actions(&db).await;
        for action in [
            "threshold_crossed",
            "action_planned",
            "action_approved",
            "action_execution_started",
            "action_item_stop_sent",
            "action_item_stopped",
            "action_executed",
            "action_item_resumed",
            "action_item_left_active",
            "action_reversed",
            "webhook_delivered",
        ] {
            assert!(audit.iter().any(|(a, _)| a == action), "{action} missing from the audit log");
        }
        assert!(audit.iter().any(|(a, o)| a == "approve_action" && o == "denied"), "the refused approval is audited");
        let verify = cli_env(&db.url, &["audit", "verify"], &[]);
        assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
        s.server.stop().await;
    }

    pub async fn faults_are_retried_and_no_scenario_is_stopped_twice(db: TestDb) {
        let today = utc_today();
        let fake = seeded_fake_at(today).await;
        let env = [
            ("MBM_MAKE_REQUEST_TIMEOUT_SECS", "1"),
            ("MBM_MAKE_MAX_ATTEMPTS", "2"),
            ("MBM_MAKE_RETRY_BASE_DELAY_MS", "10"),
            // Longer than the slow stop below takes to land, so the re-read sees it.
            ("MBM_SCENARIO_RETRY_DELAY_MS", "2500"),
        ];
        let s = session(&db, &fake, &env).await;
        call_ok(&s.alice, "sync_usage", json!({})).await;
        let spent = month_to_date_centi(today) / 100;
        budget_with_pause(&s.alice, spent.max(2) - 1, "requires_approval").await;
        call_ok(&s.alice, "sync_usage", json!({})).await;
        let plan = only_plan(&s.alice).await;
        assert_eq!(plan["items"].as_array().unwrap().len(), 3, "501, 502 and 503 are active and not critical");

        // 501: rate limited, then a 500, then fine. 502: the stop is slow (the client times out, Make
        // still stops it). 503: Make keeps failing.
        fake.inject(&stop_path(501), Fault::TooManyRequests { retry_after_secs: Some(1) }, 1);
        fake.inject(&stop_path(501), Fault::Status(500), 1);
        fake.inject(&stop_path(502), Fault::Delay(Duration::from_millis(1800)), 1);
        fake.inject("/api/v2/scenarios/503", Fault::Status(502), 100);
        fake.clear_requests();
        let done = call_ok(&s.bob, "approve_action", json!({"plan_id": plan["id"]})).await;
        assert_eq!(done["state"], "partially_failed", "{done:#}");
        assert_eq!(item_status(&done, 501), "stopped");
        assert_eq!(item_status(&done, 502), "stopped");
        assert_eq!(item_status(&done, 503), "failed");
        let failed = done["items"].as_array().unwrap().iter().find(|i| i["scenario_id"] == 503).unwrap();
        assert!(failed["last_error"].as_str().unwrap().contains("502"), "{failed:#}");

        assert_eq!(fake.scenario_active(501), Some(false));
        assert_eq!(fake.scenario_active(502), Some(false));
        assert_eq!(fake.scenario_active(503), Some(true));
        // 501: the 429 was retried by the client, the 500 by the engine after reading the state again.
        assert_eq!(requests_to(&fake, "POST", &stop_path(501)), 3);
        // 502: the timed-out stop took effect, and the re-read found it stopped: no second stop.
        assert_eq!(requests_to(&fake, "POST", &stop_path(502)), 1);
        let reread = fake.requests().iter().filter(|r| r.method == "GET" && r.path == "/api/v2/scenarios/502").count();
        assert!(reread >= 2, "502 was read before and after the slow stop ({reread} reads)");

        // Running the plan again changes nothing.
        let again = call_err(&s.bob, "approve_action", json!({"plan_id": plan["id"]})).await;
        assert!(again.starts_with("conflict:"), "{again}");
        assert_eq!(requests_to(&fake, "POST", &stop_path(502)), 1);
        s.server.stop().await;
    }

    pub async fn a_plan_interrupted_by_a_crash_resumes_without_double_actions(db: TestDb) {
        let today = utc_today();
        let fake = seeded_fake_at(today).await;
        let env = [("MBM_LEASE_SECS", "2"), ("MBM_SCENARIO_RETRY_DELAY_MS", "50")];
        let s = session(&db, &fake, &env).await;
        call_ok(&s.alice, "sync_usage", json!({})).await;
        call_ok(&s.alice, "set_scenario_critical", json!({"scenario_id": 503, "critical": true})).await;
        let spent = month_to_date_centi(today) / 100;
        budget_with_pause(&s.alice, spent.max(2) - 1, "requires_approval").await;
        call_ok(&s.alice, "sync_usage", json!({})).await;
        let plan = only_plan(&s.alice).await;
        let plan_id = plan["id"].as_str().unwrap().to_owned();

        // 502's stop hangs; the server is killed while it waits. Make carries the stop out anyway.
        fake.inject(&stop_path(502), Fault::Delay(Duration::from_secs(4)), 1);
        let bob = s.bob;
        let approving = tokio::spawn(async move {
            let r = call(&bob, "approve_action", json!({"plan_id": plan_id})).await;
            (bob, r)
        });
        let store = open_store(&db.url).await;
        let status_of = |id: i64| {
            let store = store.clone();
            async move {
                sqlx::query("SELECT status FROM action_items WHERE scenario_id = $1")
                    .bind(id)
                    .fetch_one(store.pool())
                    .await
                    .map(|r| r.try_get::<String, _>("status").unwrap())
                    .unwrap_or_default()
            }
        };
        wait_until(20, "501 stopped and 502's stop sent", || async {
            status_of(501).await == "stopped" && status_of(502).await == "stop_sent"
        })
        .await;
        s.server.stop().await;
        approving.abort();
        wait_until(10, "Make to finish the slow stop", || async { fake.scenario_active(502) == Some(false) }).await;

        // A new instance (evaluating every second) takes over once the lease has expired.
        let env = [("MBM_LEASE_SECS", "2"), ("MBM_EVALUATE_INTERVAL_SECS", "1"), ("MBM_SCENARIO_RETRY_DELAY_MS", "50")];
        let restarted = HttpServer::start_with(&db.url, &env).await;
        let plan_state = || {
            let store = store.clone();
            async move {
                sqlx::query("SELECT state FROM action_plans")
                    .fetch_one(store.pool())
                    .await
                    .map(|r| r.try_get::<String, _>("state").unwrap())
                    .unwrap_or_default()
            }
        };
        wait_until(30, "the plan to be resumed and executed", || async { plan_state().await == "executed" }).await;
        assert_eq!(status_of(501).await, "stopped");
        assert_eq!(status_of(502).await, "stopped", "the stop that landed after the crash counts as this plan's");
        assert_eq!(requests_to(&fake, "POST", &stop_path(501)), 1, "501 was not stopped again");
        assert_eq!(requests_to(&fake, "POST", &stop_path(502)), 1, "502 was not stopped again");
        assert_eq!(requests_to(&fake, "POST", &stop_path(503)), 0);
        let audit = audit_actions(&db).await;
        assert!(audit.iter().any(|(a, _)| a == "action_execution_resumed"), "the resumption is audited");
        store.close().await;
        restarted.stop().await;
    }

    pub async fn automatic_plans_run_at_once_and_reverse_when_a_new_period_begins(db: TestDb) {
        let today = utc_today();
        let fake = seeded_fake_at(today).await;
        let s = session(&db, &fake, &[]).await;
        call_ok(&s.alice, "sync_usage", json!({})).await;
        call_ok(&s.alice, "set_scenario_critical", json!({"scenario_id": 503, "critical": true})).await;
        let spent = month_to_date_centi(today) / 100;
        let budget = call_ok(&s.alice, "create_budget", org_budget(spent.max(2) - 1)).await;
        let t = call_ok(
            &s.alice,
            "add_threshold",
            json!({"budget_id": budget["id"], "kind": "percent", "value": 100, "basis": "actual", "severity": "emergency"}),
        )
        .await;
        // Only the top consumer, and it comes back when the period is over.
        let action = call_ok(
            &s.alice,
            "add_threshold_action",
            json!({"threshold_id": t["id"], "kind": "pause_scenarios", "selector": {"kind": "top_n", "top_n": 1},
                   "mode": "automatic", "reverse_at_period_end": true}),
        )
        .await;
        let preview = call_ok(&s.alice, "preview_action", json!({"action_id": action["id"]})).await;
        assert_eq!(preview["scenarios"].as_array().unwrap().len(), 1, "{preview:#}");
        let top = preview["scenarios"][0]["scenario_id"].as_i64().unwrap();
        assert_ne!(top, 503, "the critical scenario is spared even though it consumes most");

        let synced = call_ok(&s.alice, "sync_usage", json!({})).await;
        assert_eq!(synced["automatic_plans_run"], 1, "{synced:#}");
        let plan = only_plan(&s.alice).await;
        assert_eq!((plan["state"].as_str(), plan["mode"].as_str()), (Some("executed"), Some("automatic")));
        assert_eq!(fake.scenario_active(top), Some(false));
        let others_stopped = [501, 502, 503]
            .iter()
            .filter(|id| **id != top)
            .filter(|id| fake.scenario_active(**id) == Some(false))
            .count();
        assert_eq!(others_stopped, 0, "only the top consumer is paused");

        // Still the same period: the evaluator leaves the plan alone.
        let out = cli_env(&db.url, &["evaluate", "--once"], &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(only_plan(&s.alice).await["state"], "executed");
        let first_plan = only_plan(&s.alice).await["id"].clone();

        // Someone resumes it by hand, and a second budget's automatic plan pauses it again.
        fake.set_scenario_active(top, true);
        let second = call_ok(
            &s.alice,
            "create_budget",
            json!({"name": "Second", "unit": "credits",
            "limit": spent.max(2) - 1, "period": {"kind": "monthly"}, "timezone": "UTC",
            "scope": {"organization_id": ORG}}),
        )
        .await;
        let t2 = call_ok(
            &s.alice,
            "add_threshold",
            json!({"budget_id": second["id"], "kind": "percent",
            "value": 100, "basis": "actual", "severity": "emergency"}),
        )
        .await;
        call_ok(
            &s.alice,
            "add_threshold_action",
            json!({"threshold_id": t2["id"], "kind": "pause_scenarios",
            "selector": {"kind": "top_n", "top_n": 1}, "mode": "automatic"}),
        )
        .await;
        call_ok(&s.alice, "sync_usage", json!({})).await;
        assert_eq!(fake.scenario_active(top), Some(false), "the second plan paused it");
        // The budget moves to another period (here by changing its period): the plan is reversed.
        let b = call_ok(&s.alice, "get_budget", json!({"id": budget["id"]})).await;
        call_ok(
            &s.alice,
            "update_budget",
            json!({"id": budget["id"], "version": b["version"],
                   "period": {"kind": "custom", "start": "2026-03-01", "end": "2026-03-31"}}),
        )
        .await;
        let out = cli_env(&db.url, &["evaluate", "--once"], &[]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["plans_reversed"], 1, "{report:#}");
        let plan = call_ok(&s.alice, "get_action", json!({"plan_id": first_plan})).await;
        assert_eq!(plan["state"], "reversed");
        assert_eq!(plan["reversed_by"], "system:evaluator");
        assert_eq!(item_status(&plan, top), "held_by_other_plan", "the second plan still holds it");
        assert_eq!(fake.scenario_active(top), Some(false));
        assert_eq!(requests_to(&fake, "POST", &start_path(top)), 0);
        // Reversing the second plan resumes it.
        let plans = call_ok(&s.alice, "list_actions", json!({"budget_id": second["id"]})).await;
        let back =
            call_ok(&s.alice, "reverse_action", json!({"plan_id": plans["plans"][0]["id"], "reason": "done"})).await;
        assert_eq!(item_status(&back, top), "resumed");
        assert_eq!(fake.scenario_active(top), Some(true));
        s.server.stop().await;
    }

    pub async fn approvals_expire(db: TestDb) {
        let today = utc_today();
        let fake = seeded_fake_at(today).await;
        let hook = WebhookReceiver::start(HOOK_SECRET).await;
        // The server in this process, on a clock the test moves: the window closes without waiting for it.
        let s = local_session(&db, &fake, |o| o.approval_ttl_minutes = Some(1)).await;
        call_ok(&s.alice, "add_webhook", json!({"url": hook.url, "secret": HOOK_SECRET})).await;
        call_ok(&s.alice, "sync_usage", json!({})).await;
        let spent = month_to_date_centi(today) / 100;
        budget_with_pause(&s.alice, spent.max(2) - 1, "requires_approval").await;
        call_ok(&s.alice, "sync_usage", json!({})).await;
        let plan = only_plan(&s.alice).await;
        let requested: jiff::Timestamp = plan["requested_at"].as_str().unwrap().parse().unwrap();
        let expires: jiff::Timestamp = plan["expires_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(expires.duration_since(requested), jiff::SignedDuration::from_mins(1));

        s.server.clock.advance(jiff::SignedDuration::from_secs(61));
        let e = call_err(&s.bob, "approve_action", json!({"plan_id": plan["id"]})).await;
        assert!(e.starts_with("conflict:") && e.contains("expired"), "{e}");
        let after = only_plan(&s.alice).await;
        assert_eq!(after["state"], "expired");
        assert!(
            plan["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| fake.scenario_active(i["scenario_id"].as_i64().unwrap()) == Some(true))
        );
        assert_eq!(requests_to(&fake, "POST", &stop_path(501)), 0, "nothing was paused");
        let audit = audit_actions(&db).await;
        assert!(audit.iter().any(|(a, _)| a == "action_expired"));
        s.server.stop().await;
    }

    pub async fn webhook_failures_are_retried_and_recorded(db: TestDb) {
        let today = utc_today();
        let fake = seeded_fake_at(today).await;
        let hook = WebhookReceiver::start(HOOK_SECRET).await;
        let s = session(&db, &fake, &[]).await;
        let up = call_ok(&s.alice, "add_webhook", json!({"url": hook.url, "secret": HOOK_SECRET})).await;
        // Nothing listens here.
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_url = format!("http://{}/hook", dead.local_addr().unwrap());
        drop(dead);
        let down = call_ok(&s.alice, "add_webhook", json!({"url": dead_url, "secret": HOOK_SECRET})).await;
        let e = call_err(&s.alice, "add_webhook", json!({"url": "http://example.com/x", "secret": HOOK_SECRET})).await;
        assert!(e.starts_with("invalid_argument: invalid argument `url`"), "{e}");
        let e = call_err(&s.alice, "add_webhook", json!({"url": hook.url, "secret": "short"})).await;
        assert!(e.contains("`secret`"), "{e}");

        call_ok(&s.alice, "sync_usage", json!({})).await;
        let budget = call_ok(&s.alice, "create_budget", org_budget(1)).await;
        let t = call_ok(
            &s.alice,
            "add_threshold",
            json!({"budget_id": budget["id"], "kind": "percent", "value": 50, "basis": "actual", "severity": "info"}),
        )
        .await;
        call_ok(&s.alice, "add_threshold_action", json!({"threshold_id": t["id"], "kind": "notify"})).await;
        hook.fail_next(&[503]);
        call_ok(&s.alice, "sync_usage", json!({})).await;

        let env = [("MBM_WEBHOOK_MAX_ATTEMPTS", "3"), ("MBM_WEBHOOK_RETRY_BASE_MS", "1")];
        for _ in 0..3 {
            let out = cli_env(&db.url, &["evaluate", "--once"], &env);
            assert!(out.status.code().is_some(), "{}", String::from_utf8_lossy(&out.stderr));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The working receiver answered 503 once, then took the retry.
        let got = hook.of_type("threshold_crossed");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].signature_ok);
        let hooks = call_ok(&s.alice, "list_webhooks", json!({})).await;
        let by_id = |id: &Value| {
            hooks["webhooks"].as_array().unwrap().iter().find(|w| w["id"] == *id).unwrap()["recent"][0].clone()
        };
        let ok = by_id(&up["id"]);
        assert_eq!((ok["state"].as_str(), ok["attempts"].as_i64()), (Some("delivered"), Some(2)), "{ok:#}");
        let failed = by_id(&down["id"]);
        assert_eq!((failed["state"].as_str(), failed["attempts"].as_i64()), (Some("failed"), Some(3)), "{failed:#}");
        assert!(failed["last_error"].as_str().unwrap().contains("connect"), "{failed:#}");

        let store = open_store(&db.url).await;
        assert_eq!(count(&store, "notification_attempts", "").await, 5, "2 attempts to one, 3 to the other");
        store.close().await;
        let audit = audit_actions(&db).await;
        assert!(audit.iter().any(|(a, _)| a == "webhook_delivery_failed"));
        assert!(audit.iter().any(|(a, _)| a == "webhook_delivered"));
        s.server.stop().await;
    }
}

/// Two server processes on one PostgreSQL database, each evaluating every second: every crossing yields
/// one plan and one notification, and every scenario is stopped once. The test waits for each outcome,
/// then for [`PASSES_AFTER`] more passes of both instances, in which a second plan, notification or stop
/// would have happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_act_once() {
    let Some(db) = postgres_db("actions::two_instances_on_one_postgres_act_once").await else { return };
    let today = utc_today();
    let fake = seeded_fake_at(today).await;
    let hook = WebhookReceiver::start(HOOK_SECRET).await;
    let tenant = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &tenant, "admin", "alice");
    let env = [
        // Each evaluator pass logs a line at DEBUG: the test counts them.
        ("MBM_LOG", "info,make_budget_mcp::engine::evaluator=debug"),
        ("MBM_EVALUATE_INTERVAL_SECS", "1"),
        ("MBM_LEASE_SECS", "5"),
        ("MBM_WEBHOOK_RETRY_BASE_MS", "200"),
        ("MBM_SCENARIO_RETRY_DELAY_MS", "50"),
    ];
    let one = HttpServer::start_with(&db.url, &env).await;
    let two = HttpServer::start_with(&db.url, &env).await;
    let alice = http_client(&one.mcp_url, &token, Lifecycle::Initialize).await;
    call_ok(&alice, "connect_make", connect_args(&fake, &[ORG])).await;
    call_ok(&alice, "add_webhook", json!({"url": hook.url, "secret": HOOK_SECRET})).await;
    let spent = month_to_date_centi(today) / 100;
    let budget = call_ok(&alice, "create_budget", org_budget(spent.max(2) - 1)).await;
    let t100 = call_ok(
        &alice,
        "add_threshold",
        json!({"budget_id": budget["id"], "kind": "percent", "value": 100, "basis": "actual", "severity": "critical"}),
    )
    .await;
    call_ok(&alice, "add_threshold_action", json!({"threshold_id": t100["id"], "kind": "notify"})).await;
    call_ok(
        &alice,
        "add_threshold_action",
        json!({"threshold_id": t100["id"], "kind": "pause_scenarios", "selector": {"kind": "non_critical"},
               "mode": "automatic"}),
    )
    .await;
    // A second crossing half-way through: an absolute threshold above today's spend.
    let t_abs = call_ok(
        &alice,
        "add_threshold",
        json!({"budget_id": budget["id"], "kind": "absolute", "value": spent + 300, "basis": "actual",
               "severity": "emergency"}),
    )
    .await;
    call_ok(&alice, "add_threshold_action", json!({"threshold_id": t_abs["id"], "kind": "notify"})).await;

    wait_until(60, "the first crossing's plan executed and notified", || async {
        !hook.of_type("plan_executed").is_empty() && !hook.of_type("threshold_crossed").is_empty()
    })
    .await;
    more_passes_of_both(&one, &two).await;
    fake.set_usage(502, today, 50_000, 500);
    wait_until(60, "the second crossing notified", || async { hook.of_type("threshold_crossed").len() >= 2 }).await;
    more_passes_of_both(&one, &two).await;

    let store = open_store(&db.url).await;
    assert_eq!(count(&store, "threshold_events", "").await, 2, "two crossings, each recorded once");
    assert_eq!(count(&store, "action_plans", "").await, 1, "one plan");
    let state: String =
        sqlx::query("SELECT state FROM action_plans").fetch_one(store.pool()).await.unwrap().try_get("state").unwrap();
    assert_eq!(state, "executed");
    let crossed = hook.of_type("threshold_crossed");
    assert_eq!(crossed.len(), 2, "one notification per crossing: {crossed:?}");
    assert_ne!(crossed[0].event_id, crossed[1].event_id);
    assert_eq!(hook.of_type("plan_created").len(), 1);
    assert_eq!(hook.of_type("plan_executed").len(), 1);
    for id in [501, 502, 503] {
        assert_eq!(requests_to(&fake, "POST", &stop_path(id)), 1, "scenario {id} stopped exactly once");
    }
    assert!(one.logs().contains("background evaluator started") && two.logs().contains("background evaluator started"));
    store.close().await;
    one.stop().await;
    two.stop().await;
}

/// Evaluator passes each instance runs after an outcome before the test checks it happened only once.
const PASSES_AFTER: usize = 4;

/// The evaluator passes `server` has logged so far.
fn passes(server: &HttpServer) -> usize {
    server.logs().matches("evaluation pass done").count()
}

/// Wait until both instances have run [`PASSES_AFTER`] more evaluator passes.
async fn more_passes_of_both(one: &HttpServer, two: &HttpServer) {
    let (a, b) = (passes(one), passes(two));
    wait_until(60, "more evaluator passes of both instances", || async {
        passes(one) >= a + PASSES_AFTER && passes(two) >= b + PASSES_AFTER
    })
    .await;
}
