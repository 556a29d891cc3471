//! Threshold crossings over time, with an injected clock, on SQLite and PostgreSQL: a crossing is recorded
//! once, the cooldown is respected, a new period re-arms, forecast thresholds fire on the forecast and not
//! the actual, and every crossing is audited.

use std::sync::Arc;

use crate::support::*;
use jiff::civil::{Date, date};
use jiff::{SignedDuration, Timestamp};
use make_budget_mcp::admin;
use make_budget_mcp::app::App;
use make_budget_mcp::crypto::{Keyring, MasterKey, Sealed, SecretString};
use make_budget_mcp::domain::action::{ActionKind, Mode, Selector, SelectorKind, ThresholdAction};
use make_budget_mcp::domain::clock::{ManualClock, format_timestamp};
use make_budget_mcp::domain::threshold::{Basis, Severity, Threshold, ThresholdDraft, ThresholdKind, ThresholdSpec};
use make_budget_mcp::domain::{Budget, BudgetId, BudgetSpec, Clock, TenantId};
use make_budget_mcp::engine::caller::Attribution;
use make_budget_mcp::engine::crossings::evaluate_budget;
use make_budget_mcp::make::AuthKind;
use make_budget_mcp::store::{
    ConnectionRecord, OrgRecord, OrgSync, ScenarioRecord, Store, StoreOptions, UsageRow, UsageSubject, WebhookRecord,
};

on_both_stores!(
    crossings_follow_the_rule_over_time,
    forecast_thresholds_fire_on_the_forecast,
    the_confidence_gate_decides_what_a_forecast_pause_may_do
);

const START: &str = "2026-03-10T12:00:00Z";

struct World {
    store: Store,
    clock: Arc<ManualClock>,
    tenant: TenantId,
    budget: Budget,
}

async fn world(db: &TestDb, limit: i64) -> World {
    let clock = Arc::new(ManualClock::new(START.parse().unwrap()));
    let store = Store::connect(&db.url, &StoreOptions::default(), clock.clone()).await.unwrap();
    store.migrate().await.unwrap();
    let tenant: TenantId = admin::create_tenant(&store, "acme", &test_actor()).await.unwrap().id.parse().unwrap();
    let now = format_timestamp(clock.now());
    let org = OrgRecord {
        organization_id: ORG,
        connection_id: "c1".into(),
        name: "Acme".into(),
        zone: None,
        api_limit: None,
        allowance: None,
        operations_used: None,
        last_reset: Some("2026-03-01T00:00:00.000Z".into()),
        next_reset: Some("2026-04-01T00:00:00.000Z".into()),
        restart_period: None,
        is_paused: None,
        validated_at: now.clone(),
        synced_at: None,
        ..Default::default()
    };
    let conn = ConnectionRecord {
        id: "c1".into(),
        label: "test".into(),
        base_url: "https://eu1.make.com/api/v2".into(),
        auth_kind: AuthKind::ApiToken,
        // Never decrypted in this test: evaluation reads only stored usage.
        sealed: Sealed { key_id: "unused".into(), nonce: vec![0; 12], ciphertext: vec![0; 16] },
        created_at: now.clone(),
        created_by: "tester".into(),
        organizations: vec![org],
        token_scopes: None,
    };
    let mut tx = store.tenant(tenant).begin().await.unwrap();
    tx.insert_connection(&conn).await.unwrap();
    tx.commit(test_entry("connect_make", "c1")).await.unwrap();
    let mut d = draft("Watched");
    d.limit = limit;
    d.money = None;
    d.timezone = "UTC".into();
    d.scope = serde_json::from_value(serde_json::json!({"organization_id": ORG})).unwrap();
    let budget = Budget::new(BudgetId::new(), BudgetSpec::new(d).unwrap(), clock.now(), "tester");
    let mut tx = store.tenant(tenant).begin().await.unwrap();
    tx.insert_budget(&budget).await.unwrap();
    tx.commit(test_entry("create_budget", &budget.id)).await.unwrap();
    World { store, clock, tenant, budget }
}

impl World {
    /// Replace the synced usage: `credits` per day for each listed day.
    async fn sync(&self, days: &[(Date, i64)]) {
        let synced = format_timestamp(self.clock.now());
        let row = |subject, id, (day, credits): &(Date, i64)| UsageRow {
            subject,
            subject_id: id,
            organization_id: ORG,
            day: day.to_string(),
            centicredits: credits * 100,
            operations: *credits,
            data_transfer: 0,
            estimated: false,
            snapshot_centicredits: 0,
        };
        let org = self.store.tenant(self.tenant).organizations().await.unwrap().remove(0);
        let snapshot = OrgSync {
            org,
            teams: vec![],
            scenarios: vec![ScenarioRecord {
                scenario_id: 501,
                organization_id: ORG,
                team_id: None,
                folder_id: None,
                name: "Lead sync".into(),
                is_active: true,
                is_paused: false,
                is_invalid: false,
                scheduling_type: None,
                interval_secs: None,
                critical: false,
                synced_at: synced.clone(),
            }],
            usage: days
                .iter()
                .flat_map(|d| [row(UsageSubject::Organization, ORG, d), row(UsageSubject::Scenario, 501, d)])
                .collect(),
            consumptions: vec![],
            ..Default::default()
        };
        let mut tx = self.store.tenant(self.tenant).begin().await.unwrap();
        tx.apply_org_sync(&snapshot, &synced).await.unwrap();
        tx.commit(test_entry("sync_usage", "org")).await.unwrap();
    }

    async fn threshold(&self, kind: ThresholdKind, value: i64, basis: Basis, cooldown_minutes: i64) -> Threshold {
        let spec = ThresholdSpec::new(ThresholdDraft {
            kind,
            value,
            basis,
            severity: Severity::Critical,
            cooldown_minutes,
            label: None,
        })
        .unwrap();
        let at = format_timestamp(self.clock.now());
        let t = Threshold {
            id: uuid::Uuid::now_v7().to_string(),
            budget_id: self.budget.id.clone(),
            spec,
            version: 1,
            created_at: at.clone(),
            created_by: "tester".into(),
            updated_at: at,
            updated_by: "tester".into(),
        };
        let mut tx = self.store.tenant(self.tenant).begin().await.unwrap();
        tx.insert_threshold(&t).await.unwrap();
        tx.commit(test_entry("add_threshold", &t.id)).await.unwrap();
        t
    }

    /// Evaluate now; the ids of the thresholds that crossed.
    async fn evaluate(&self) -> Vec<String> {
        evaluate_budget(
            &self.store,
            &Default::default(),
            self.tenant,
            &self.budget,
            self.clock.now(),
            Attribution { actor: &test_actor(), request_id: "req" },
        )
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.threshold_id)
        .collect()
    }

    /// Another budget like the world's, with `limit`, stored.
    async fn budget_with_limit(&self, limit: i64) -> Budget {
        let mut d = (*self.budget.spec).clone();
        d.limit = limit;
        d.name = format!("Limit {limit}");
        let b = Budget::new(BudgetId::new(), BudgetSpec::new(d).unwrap(), self.clock.now(), "tester");
        let mut tx = self.store.tenant(self.tenant).begin().await.unwrap();
        tx.insert_budget(&b).await.unwrap();
        tx.commit(test_entry("create_budget", &b.id)).await.unwrap();
        b
    }

    /// The forecast's probability that `budget` with `limit` ends its period over the limit.
    async fn probability_at(&self, limit: i64) -> f64 {
        let mut d = (*self.budget.spec).clone();
        d.limit = limit;
        let b = Budget { spec: BudgetSpec::new(d).unwrap(), ..self.budget.clone() };
        let c = make_budget_mcp::engine::status::compute(&self.store, self.tenant, &b, self.clock.now()).await.unwrap();
        c.status.forecast.probability_over_limit
    }

    /// The limit at which the probability of ending over it is `target` (it falls as the limit rises).
    async fn limit_for_probability(&self, target: f64) -> (i64, f64) {
        let (mut lo, mut hi) = (1_i64, 10_000_000_i64);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.probability_at(mid).await >= target { lo = mid } else { hi = mid }
        }
        (lo, self.probability_at(lo).await)
    }

    /// A forecast threshold at 100 % of `budget` with an automatic pause of every non-critical scenario.
    async fn forecast_pause(&self, budget: &Budget) -> ThresholdAction {
        let spec = ThresholdSpec::new(ThresholdDraft {
            kind: ThresholdKind::Percent,
            value: 100,
            basis: Basis::Forecast,
            severity: Severity::Critical,
            cooldown_minutes: 0,
            label: None,
        })
        .unwrap();
        let t = Threshold::new(budget.id.clone(), spec, self.clock.now(), "tester");
        let action = ThresholdAction {
            id: uuid::Uuid::now_v7().to_string(),
            threshold_id: t.id.clone(),
            kind: ActionKind::PauseScenarios,
            selector: Some(Selector { kind: SelectorKind::NonCritical, top_n: None }),
            mode: Some(Mode::Automatic),
            reverse_at_period_end: false,
            delay_minutes: None,
            gate: None,
            created_at: format_timestamp(self.clock.now()),
            created_by: "tester".into(),
            created_role: Some("admin".into()),
            created_transport: Some("cli".into()),
            created_token_id: None,
        };
        let mut tx = self.store.tenant(self.tenant).begin().await.unwrap();
        tx.insert_threshold(&t).await.unwrap();
        tx.insert_action(&action).await.unwrap();
        tx.commit(test_entry("add_threshold_action", &action.id)).await.unwrap();
        action
    }

    /// Evaluate `budget` now; the crossings recorded.
    async fn evaluate_one(&self, budget: &Budget) -> Vec<make_budget_mcp::engine::crossings::Crossing> {
        evaluate_budget(
            &self.store,
            &Default::default(),
            self.tenant,
            budget,
            self.clock.now(),
            Attribution { actor: &test_actor(), request_id: "req" },
        )
        .await
        .unwrap()
    }

    fn advance(&self, mins: i64) {
        self.clock.advance(SignedDuration::from_mins(mins));
    }

    fn set(&self, at: &str) {
        let target: Timestamp = at.parse().unwrap();
        self.clock.advance(target.duration_since(self.clock.now()));
    }
}

/// Every day of March up to `last`, each with `credits`.
fn march(last: u8, credits: i64) -> Vec<(Date, i64)> {
    (1..=last).map(|d| (date(2026, 3, d as i8), credits)).collect()
}

mod cases {
    use super::*;

    pub async fn crossings_follow_the_rule_over_time(db: TestDb) {
        let w = world(&db, 1_000).await;
        let half = w.threshold(ThresholdKind::Percent, 50, Basis::Actual, 60).await;

        w.sync(&march(10, 40)).await; // 400 of 1000: below
        assert_eq!(w.evaluate().await, Vec::<String>::new());
        w.sync(&march(10, 60)).await; // 600: crosses
        assert_eq!(w.evaluate().await, vec![half.id.clone()]);
        w.advance(5);
        assert_eq!(w.evaluate().await, Vec::<String>::new(), "fires once while above");

        w.sync(&march(10, 30)).await; // back below: re-armed, no event
        w.advance(5);
        assert_eq!(w.evaluate().await, Vec::<String>::new());
        w.sync(&march(10, 70)).await; // above again 10 minutes after the crossing: inside the cooldown
        w.advance(5);
        assert_eq!(w.evaluate().await, Vec::<String>::new(), "cooldown respected");
        w.advance(60);
        assert_eq!(w.evaluate().await, vec![half.id.clone()], "crossed anew after the cooldown");

        // April: a new period re-arms, whatever the cooldown.
        w.set("2026-04-02T00:30:00Z");
        w.sync(&[(date(2026, 4, 1), 300), (date(2026, 4, 2), 300)]).await;
        assert_eq!(w.evaluate().await, vec![half.id.clone()], "re-armed in the next period");

        let records = w.store.audit_records(w.tenant, 0, 1000).await.unwrap();
        let crossed: Vec<_> = records.iter().filter(|r| r.entry.action == "threshold_crossed").collect();
        assert_eq!(crossed.len(), 3);
        assert_eq!(
            records.iter().filter(|r| r.entry.action == "threshold_rearmed").count(),
            1,
            "April starts afresh without one"
        );
        let after = crossed[0].entry.after.as_ref().unwrap();
        assert_eq!((after["value_centi"].as_i64(), after["amount_centi"].as_i64()), (Some(60_000), Some(50_000)));
        assert_eq!(after["period"], "2026-03-01/2026-03-31");
        assert_eq!(count(&w.store, "threshold_events", "").await, 3);
        let s = make_budget_mcp::engine::status::compute(&w.store, w.tenant, &w.budget, w.clock.now()).await.unwrap();
        assert_eq!(s.status.thresholds[0].crossings_this_period, 1, "April's crossing only");
        assert!(w.store.verify_audit(None).await.unwrap().is_valid());
        w.store.close().await;
    }

    pub async fn forecast_thresholds_fire_on_the_forecast(db: TestDb) {
        let w = world(&db, 1_000).await;
        let actual = w.threshold(ThresholdKind::Percent, 100, Basis::Actual, 0).await;
        let forecast = w.threshold(ThresholdKind::Percent, 100, Basis::Forecast, 0).await;
        // 40 a day for 10 days: 400 spent, on course for ~1240 by 31 March.
        w.sync(&march(10, 40)).await;
        let crossed = w.evaluate().await;
        assert_eq!(crossed, vec![forecast.id.clone()], "the forecast is over the limit, the actual is not");
        assert!(!crossed.contains(&actual.id));
        let s = make_budget_mcp::engine::status::compute(&w.store, w.tenant, &w.budget, w.clock.now()).await.unwrap();
        assert_eq!(s.status.spent, 400);
        assert!(s.status.forecast.period_end_total > 1_000, "{:?}", s.status.forecast);
        assert!(s.status.forecast.probability_over_limit > 0.5, "{:?}", s.status.forecast);
        // Spending stops: the forecast comes back under the limit and the threshold re-arms.
        w.sync(&[march(9, 40), vec![(date(2026, 3, 10), 0)]].concat()).await;
        w.set("2026-03-25T12:00:00Z");
        let mut quiet = march(9, 40);
        quiet.extend((10..=25).map(|d| (date(2026, 3, d), 0)));
        w.sync(&quiet).await;
        assert_eq!(w.evaluate().await, Vec::<String>::new());
        let records = w.store.audit_records(w.tenant, 0, 1000).await.unwrap();
        let rearmed: Vec<_> = records.iter().filter(|r| r.entry.action == "threshold_rearmed").collect();
        assert_eq!(rearmed.len(), 1);
        assert_eq!(rearmed[0].entry.target, format!("threshold:{}", forecast.id));
        w.store.close().await;
    }

    pub async fn the_confidence_gate_decides_what_a_forecast_pause_may_do(db: TestDb) {
        let w = world(&db, 1_000).await;
        // Ten days of uneven spend: a forecast with a real spread.
        let daily = [2_600, 3_400, 2_900, 3_700, 2_500, 3_300, 3_100, 2_700, 3_600, 3_200];
        let days: Vec<(Date, i64)> = daily.iter().enumerate().map(|(i, c)| (date(2026, 3, i as i8 + 1), *c)).collect();
        w.sync(&days).await;
        // A receiver, so that events are queued (never delivered here).
        let keys = Keyring::new(MasterKey::from_bytes([7; 32]), vec![]);
        let hook = WebhookRecord {
            id: uuid::Uuid::now_v7().to_string(),
            kind: make_budget_mcp::domain::channel::ChannelKind::Webhook,
            events: None,
            email: None,
            url: "https://hooks.example.com/budget".into(),
            label: None,
            sealed: keys.seal_secret(&SecretString::new("whsec-0123456789abcdef"), App::webhook_binding("t", "w")),
            created_at: format_timestamp(w.clock.now()),
            created_by: "tester".into(),
        };
        let mut tx = w.store.tenant(w.tenant).begin().await.unwrap();
        tx.insert_webhook(&hook).await.unwrap();
        tx.commit(test_entry("add_webhook", &hook.id)).await.unwrap();

        let (unsure_limit, unsure) = w.limit_for_probability(0.70).await;
        let (sure_limit, sure) = w.limit_for_probability(0.97).await;
        assert!((0.69..=0.71).contains(&unsure) && (0.965..=0.975).contains(&sure), "{unsure} {sure}");
        let unsure_budget = w.budget_with_limit(unsure_limit).await;
        let sure_budget = w.budget_with_limit(sure_limit).await;
        let held = w.forecast_pause(&unsure_budget).await;
        let acting = w.forecast_pause(&sure_budget).await;

        // 70 %: the crossing alerts, the pause is held back.
        let crossed = w.evaluate_one(&unsure_budget).await;
        assert_eq!(crossed.len(), 1, "the forecast crosses the limit");
        let permille = crossed[0].probability_over_limit_permille.unwrap();
        assert!((690..=710).contains(&permille), "{permille}");
        assert_eq!(serde_json::to_value(&crossed[0].gate).unwrap()[0]["verdict"], "alert_only");
        let plans = format!("budget_id = '{}'", unsure_budget.id);
        assert_eq!(count(&w.store, "action_plans", &plans).await, 0, "nothing is paused at 70 %");
        let alerts = "event_type = 'threshold_crossed' AND body LIKE '%a pause was held back%'";
        assert_eq!(count(&w.store, "notifications", alerts).await, 1, "it notifies instead");

        // 97 %: the pause acts as attached.
        let crossed = w.evaluate_one(&sure_budget).await;
        assert_eq!(crossed.len(), 1);
        let permille = crossed[0].probability_over_limit_permille.unwrap();
        assert!((965..=975).contains(&permille), "{permille}");
        assert_eq!(serde_json::to_value(&crossed[0].gate).unwrap()[0]["verdict"], "act");
        let (plans, _) = w.store.tenant(w.tenant).plans(&Default::default(), None, 10).await.unwrap();
        assert_eq!(plans.len(), 1, "{plans:?}");
        assert_eq!((plans[0].budget_id.as_str(), plans[0].state.as_str()), (sure_budget.id.as_str(), "planned"));
        assert_eq!(plans[0].action_id.as_deref(), Some(acting.id.as_str()));
        assert_eq!(plans[0].probability_permille, Some(permille));

        // Both crossings are audited with the probability and the gate's verdict.
        let records = w.store.audit_records(w.tenant, 0, 1000).await.unwrap();
        let audited: Vec<_> = records
            .iter()
            .filter(|r| r.entry.action == "threshold_crossed")
            .map(|r| r.entry.after.clone().unwrap())
            .collect();
        assert_eq!(audited.len(), 2);
        for (after, (action, verdict)) in audited.iter().zip([(&held, "alert_only"), (&acting, "act")]) {
            assert!(after["probability_over_limit_permille"].as_i64().is_some(), "{after}");
            assert_eq!(after["gate"][0]["action_id"], action.id.as_str());
            assert_eq!(after["gate"][0]["verdict"], verdict);
        }
        w.store.close().await;
    }
}
