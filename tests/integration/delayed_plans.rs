//! Delayed plans (issue 17), in this process on a virtual clock against the SIMULATED Make, on SQLite and
//! PostgreSQL: an automatic pause with `delay_minutes` is announced (`plan_scheduled`, with the time it
//! runs) and waits; cancelled inside the delay nothing is paused and the cancel is audited with its
//! reason; not cancelled it runs once after the delay, also when the server restarts in between.

use std::sync::Arc;

use crate::support::fake_make::{AuthKind, FakeMake, OrgSpec, ScenarioSpec};
use crate::support::in_process;
use crate::support::*;
use jiff::{SignedDuration, Timestamp};
use make_budget_mcp::auth::{Principal, Role, Transport};
use make_budget_mcp::domain::action::{ActionDraft, ActionKind, Mode, Selector, SelectorKind};
use make_budget_mcp::domain::budget::BudgetDraft;
use make_budget_mcp::domain::channel::ChannelKind;
use make_budget_mcp::domain::clock::VirtualClock;
use make_budget_mcp::domain::threshold::{Basis, Severity, ThresholdDraft, ThresholdKind, ThresholdSpec};
use make_budget_mcp::domain::{BudgetSpec, TenantId};
use make_budget_mcp::engine::evaluator::{UsageSource, run_once};
use make_budget_mcp::engine::webhooks::NewWebhook;
use make_budget_mcp::engine::{Caller, actions, budgets, threshold_actions, thresholds, webhooks};
use serde_json::json;

on_both_stores!(a_cancelled_delayed_plan_pauses_nothing, a_delayed_plan_runs_once_after_its_delay_across_a_restart);

const TOKEN: &str = "5f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5";
const HOOK_SECRET: &str = "whsec-0123456789abcdef";
/// Tuesday 2026-03-10, 10:00 UTC.
const START: &str = "2026-03-10T10:00:00Z";
const DELAY: i64 = 30;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn stop_path(id: i64) -> String {
    format!("/api/v2/scenarios/{id}/stop")
}

/// An organization with two active scenarios that consumed 40 credits each so far this month.
async fn simulated(clock: Arc<VirtualClock>) -> FakeMake {
    let fake = FakeMake::start_with_clock(clock).await;
    fake.add_token(TOKEN, AuthKind::Token, &[ORG]);
    fake.add_organization(OrgSpec {
        api_limit: 60_000,
        allowance: 100_000,
        last_reset: ts("2026-03-01T00:00:00Z"),
        next_reset: Some(ts("2026-04-01T00:00:00Z")),
        zone: String::new(),
        ..OrgSpec::new(ORG, "Acme")
    });
    fake.add_team(ORG, 16, "Marketing");
    fake.add_scenario(ScenarioSpec::new(501, ORG, 16, "Lead sync"));
    fake.add_scenario(ScenarioSpec::new(502, ORG, 16, "Newsletter"));
    for id in [501, 502] {
        fake.set_usage(id, jiff::civil::date(2026, 3, 9), 4_000, 40);
    }
    fake
}

fn alice(tenant: TenantId) -> Principal {
    Principal {
        tenant_id: tenant,
        tenant_name: "acme".into(),
        subject: "alice".into(),
        role: Role::Admin,
        transport: Transport::Stdio,
        token_id: None,
    }
}

struct World {
    i: in_process::Instance,
    fake: FakeMake,
    hook: WebhookReceiver,
    tenant: TenantId,
}

/// Synced, with a budget of 50 credits whose 100 % threshold pauses every non-critical scenario
/// automatically, `DELAY` minutes after the crossing; then one evaluator pass.
async fn world(db: &TestDb) -> World {
    let clock = Arc::new(VirtualClock::new(ts(START)));
    let fake = simulated(clock.clone()).await;
    let hook = WebhookReceiver::start(HOOK_SECRET).await;
    let i = in_process::instance(&db.url, clock, 0, 1.0).await;
    let tenant = in_process::connect(&i, "acme", &fake.base_url(), TOKEN, &[ORG]).await;
    in_process::sync(&i, tenant).await;
    let p = alice(tenant);
    let c = Caller::principal(&i.app, &p, "test", "setup");
    let receiver = NewWebhook {
        kind: ChannelKind::Webhook,
        url: Some(&hook.url),
        secret: Some(HOOK_SECRET),
        label: None,
        events: None,
        email: None,
    };
    webhooks::add(&c, receiver).await.unwrap();
    let draft: BudgetDraft = serde_json::from_value(json!({
        "name": "Acme", "unit": "credits", "limit": 50, "period": {"kind": "monthly"}, "timezone": "UTC",
        "scope": {"organization_id": ORG},
    }))
    .unwrap();
    let budget = budgets::create(&c, BudgetSpec::new(draft).unwrap()).await.unwrap();
    let spec = ThresholdSpec::new(ThresholdDraft {
        kind: ThresholdKind::Percent,
        value: 100,
        basis: Basis::Actual,
        severity: Severity::Critical,
        cooldown_minutes: 0,
        label: None,
    })
    .unwrap();
    let t = thresholds::add(&c, budget.id.parse().unwrap(), spec).await.unwrap();
    let draft = ActionDraft {
        kind: ActionKind::PauseScenarios,
        selector: Some(Selector { kind: SelectorKind::NonCritical, top_n: None }),
        mode: Some(Mode::Automatic),
        reverse_at_period_end: false,
        delay_minutes: Some(DELAY),
        gate: None,
    };
    threshold_actions::attach(&c, &t.id, draft).await.unwrap();
    let report = run_once(&i.app, UsageSource::Stored).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    World { i, fake, hook, tenant }
}

impl World {
    fn advance(&self, minutes: i64) {
        self.i.clock.advance(SignedDuration::from_mins(minutes));
    }

    async fn pass(&self) {
        let report = run_once(&self.i.app, UsageSource::Stored).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }

    /// The one plan: (id, state, run_at).
    async fn plan(&self) -> (String, String, Option<String>) {
        let (plans, _) = self.i.store().tenant(self.tenant).plans(&Default::default(), None, 10).await.unwrap();
        assert_eq!(plans.len(), 1, "one plan: {plans:?}");
        let p = &plans[0];
        (p.id.clone(), p.state.as_str().to_owned(), p.run_at.clone())
    }

    fn stops(&self) -> [usize; 2] {
        [501, 502].map(|id| requests_to(&self.fake, "POST", &stop_path(id)))
    }

    async fn audit(&self) -> Vec<(String, Option<String>)> {
        let records = self.i.store().audit_records(self.tenant, 0, 1000).await.unwrap();
        records.into_iter().map(|r| (r.entry.action, r.entry.reason)).collect()
    }
}

mod cases {
    use super::*;

    pub async fn a_cancelled_delayed_plan_pauses_nothing(db: TestDb) {
        let w = world(&db).await;
        let (id, state, run_at) = w.plan().await;
        assert_eq!(state, "scheduled");
        let due = ts(START).checked_add(SignedDuration::from_mins(DELAY)).unwrap();
        assert_eq!(run_at.as_deref().map(ts), Some(due), "it runs {DELAY} minutes after the crossing");
        let announced = w.hook.of_type("plan_scheduled");
        assert_eq!(announced.len(), 1, "announced once: {announced:?}");
        assert!(announced[0].body["text"].as_str().unwrap().contains("unless someone cancels it"));
        assert_eq!(w.hook.of_type("plan_created").len(), 0);

        w.advance(10);
        w.pass().await;
        assert_eq!(w.plan().await.1, "scheduled", "not yet due");
        let p = alice(w.tenant);
        let c = Caller::principal(&w.i.app, &p, "test", "cancel_action");
        let view = actions::cancel(&c, &id, "a planned campaign, not a runaway").await.unwrap();
        assert_eq!(view.plan.state.as_str(), "cancelled");
        assert_eq!(view.plan.cancelled_by.as_deref(), Some("alice"));
        let again = actions::cancel(&c, &id, "twice").await.unwrap_err().to_string();
        assert!(again.contains("only scheduled plans can be cancelled"), "{again}");

        w.advance(DELAY);
        w.pass().await;
        w.pass().await;
        assert_eq!(w.plan().await.1, "cancelled");
        assert_eq!(w.stops(), [0, 0], "nothing was paused");
        assert_eq!(w.fake.scenario_active(501), Some(true));
        let cancelled: Vec<_> = w.audit().await.into_iter().filter(|(a, _)| a == "action_cancelled").collect();
        assert_eq!(cancelled, vec![("action_cancelled".into(), Some("a planned campaign, not a runaway".into()))]);
        assert_eq!(w.hook.of_type("plan_cancelled").len(), 1);
        assert!(w.i.store().verify_audit(None).await.unwrap().is_valid());
    }

    pub async fn a_delayed_plan_runs_once_after_its_delay_across_a_restart(db: TestDb) {
        let w = world(&db).await;
        assert_eq!(w.plan().await.1, "scheduled");
        w.advance(DELAY - 1);
        w.pass().await;
        assert_eq!(w.plan().await.1, "scheduled", "a minute before its time");
        assert_eq!(w.stops(), [0, 0]);

        // The server restarts: a new instance on the same database and clock.
        let World { i, fake, hook, tenant } = w;
        let clock = i.clock.clone();
        i.app.store.close().await;
        drop(i);
        let i = in_process::instance(&db.url, clock, 0, 1.0).await;
        let w = World { i, fake, hook, tenant };
        w.advance(2);
        w.pass().await;
        assert_eq!(w.plan().await.1, "executed", "ran after its delay");
        assert_eq!(w.stops(), [1, 1], "each scenario stopped once");
        w.advance(10);
        w.pass().await;
        w.pass().await;
        assert_eq!(w.stops(), [1, 1], "and never again");
        assert_eq!(w.fake.scenario_active(501), Some(false));
        assert_eq!(w.hook.of_type("plan_executed").len(), 1);
        let audit = w.audit().await;
        assert!(audit.iter().any(|(a, _)| a == "action_execution_started"));
        assert!(!audit.iter().any(|(a, _)| a == "action_cancelled"));
    }
}
