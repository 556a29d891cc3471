//! The store conformance suite: every case runs against SQLite and against PostgreSQL, so the two
//! backends behave identically for everything the server relies on.

use std::sync::Arc;

use crate::support::*;
use make_budget_mcp::admin;
use make_budget_mcp::auth::Role;
use make_budget_mcp::domain::{Budget, BudgetId, BudgetPatch, BudgetSpec, TenantId};
use make_budget_mcp::store::{Attempt, BudgetFilter, Store, StoreError};

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::sqlite_db();
                    super::cases::$case(super::open_store(&db.url).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = super::postgres_db(concat!("store_conformance::postgres::", stringify!($case))).await
                    else { return };
                    let store = super::open_store(&db.url).await;
                    super::cases::$case(store.clone()).await;
                    store.close().await;
                }
            )*
        }
    };
}

conformance!(
    migrations_are_idempotent,
    tenant_creation_starts_its_audit_chain,
    budgets_round_trip_every_field,
    stale_versions_are_refused,
    duplicate_names_are_refused_and_write_nothing,
    tenants_are_isolated,
    pagination_and_filters,
    failed_audit_append_rolls_back_the_mutation,
    concurrent_mutations_leave_a_gapless_chain,
    tokens_issue_resolve_and_revoke,
    verification_locates_tampering,
    leases_are_exclusive_until_they_expire,
    plans_round_trip_and_refuse_stale_versions,
    scheduled_plans_come_due_at_their_time,
    events_queue_one_notification_per_webhook_with_their_transaction,
    thresholds_and_their_states_are_read_per_tenant_at_once,
);

/// The PostgreSQL half once more, with the store connected as a role of its own that row-level security
/// binds, as `serve` runs in production (README, "Row-level security"): a query that forgot its scope sees
/// no rows there, and its case fails. Left out are the cases that act as the database owner or a
/// superuser (breaking the audit triggers, tampering with records, reading a raw column).
macro_rules! as_app_role {
    ($($case:ident),* $(,)?) => {
        mod postgres_app_role {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let test = concat!("store_conformance::postgres_app_role::", stringify!($case));
                    let Some(db) = super::postgres_db(test).await else { return };
                    let owner = super::open_store(&db.url).await;
                    let role = super::AppRole::create(&db, &owner).await;
                    owner.close().await;
                    let store = role.store().await;
                    super::cases::$case(store.clone()).await;
                    store.close().await;
                }
            )*
        }
    };
}

as_app_role!(
    migrations_are_idempotent,
    tenant_creation_starts_its_audit_chain,
    budgets_round_trip_every_field,
    stale_versions_are_refused,
    duplicate_names_are_refused_and_write_nothing,
    tenants_are_isolated,
    pagination_and_filters,
    concurrent_mutations_leave_a_gapless_chain,
    leases_are_exclusive_until_they_expire,
    plans_round_trip_and_refuse_stale_versions,
    scheduled_plans_come_due_at_their_time,
    events_queue_one_notification_per_webhook_with_their_transaction,
    thresholds_and_their_states_are_read_per_tenant_at_once,
);

async fn tenant(store: &Store, name: &str) -> TenantId {
    admin::create_tenant(store, name, &test_actor()).await.unwrap().id.parse().unwrap()
}

async fn create_budget(store: &Store, t: TenantId, name: &str) -> Budget {
    let b = Budget::new(BudgetId::new(), BudgetSpec::new(draft(name)).unwrap(), store.clock().now(), "tester");
    let mut tx = store.tenant(t).begin().await.unwrap();
    tx.insert_budget(&b).await.unwrap();
    tx.commit(test_entry("create_budget", &format!("budget:{}", b.id))).await.unwrap();
    b
}

mod cases {
    use super::*;
    use make_budget_mcp::crypto::Sealed;
    use make_budget_mcp::domain::action::{ItemStatus, Mode, PlanOrigin, PlanState, Selector, SelectorKind};
    use make_budget_mcp::domain::channel::{ChannelKind, EventType};
    use make_budget_mcp::store::{ItemRecord, PlanFilter, PlanRecord, WebhookRecord};

    pub async fn leases_are_exclusive_until_they_expire(store: Store) {
        let (t0, t1, t2) =
            ("2026-03-20T10:00:00.000000Z", "2026-03-20T10:00:30.000000Z", "2026-03-20T10:01:00.000000Z");
        let later = "2026-03-20T10:02:00.000000Z";
        assert!(store.try_lease("budget:x", "a", t0, t2).await.unwrap(), "a free lease is taken");
        assert!(!store.try_lease("budget:x", "b", t1, later).await.unwrap(), "a held lease is refused");
        assert!(store.try_lease("budget:x", "a", t1, later).await.unwrap(), "the holder renews it");
        assert!(!store.try_lease("budget:x", "b", t2, later).await.unwrap(), "the renewal counts");
        assert!(
            store.try_lease("budget:x", "b", later, "2026-03-20T10:03:00.000000Z").await.unwrap(),
            "expired: taken over"
        );
        store.release_lease("budget:x", "a").await.unwrap();
        assert!(!store.try_lease("budget:x", "a", later, later).await.unwrap(), "only the holder can release it");
        store.release_lease("budget:x", "b").await.unwrap();
        assert!(store.try_lease("budget:x", "a", later, later).await.unwrap());
        assert!(store.try_lease("budget:y", "b", t0, t2).await.unwrap(), "leases are independent");
    }

    fn plan(budget: &Budget, n: u32) -> (PlanRecord, Vec<ItemRecord>) {
        let at = "2026-03-20T10:00:00.000000Z".to_owned();
        let p = PlanRecord {
            id: uuid::Uuid::now_v7().to_string(),
            budget_id: budget.id.clone(),
            threshold_id: None,
            action_id: None,
            crossing_id: None,
            period_key: "2026-03-01/2026-03-31".into(),
            selector: Selector { kind: SelectorKind::TopN, top_n: Some(2) },
            mode: Mode::RequiresApproval,
            state: PlanState::AwaitingApproval,
            why: format!("plan {n}"),
            expected_saving_centi: 1234,
            reverse_at_period_end: true,
            requested_by: "alice".into(),
            requested_at: at.clone(),
            expires_at: Some("2026-03-21T10:00:00.000000Z".into()),
            decided_by: None,
            decided_at: None,
            decision_reason: None,
            executed_at: None,
            reversed_by: None,
            reversed_at: None,
            updated_at: at.clone(),
            version: 1,
            origin: PlanOrigin::Threshold,
            delay_minutes: Some(30),
            run_at: None,
            cancelled_by: None,
            cancelled_at: None,
            cancel_reason: None,
            probability_permille: Some(971),
        };
        let items = [501, 502]
            .iter()
            .map(|id| ItemRecord {
                scenario_id: *id,
                organization_id: 1054,
                name: format!("s{id}"),
                critical: false,
                consumption_centi: 100 * id,
                expected_saving_centi: 617,
                status: ItemStatus::Pending,
                attempts: 0,
                last_error: None,
                updated_at: at.clone(),
            })
            .collect();
        (p, items)
    }

    pub async fn scheduled_plans_come_due_at_their_time(store: Store) {
        let t = tenant(&store, "acme").await;
        let other = tenant(&store, "other").await;
        let (b, ob) = (create_budget(&store, t, "Delayed").await, create_budget(&store, other, "Theirs").await);
        let mut scheduled = Vec::new();
        for (tenant, budget, run_at) in [
            (t, &b, "2026-03-20T10:30:00.000000Z"),
            (other, &ob, "2026-03-20T10:20:00.000000Z"),
            (t, &b, "2026-03-20T11:00:00.000000Z"),
        ] {
            let (mut p, items) = plan(budget, 1);
            p.mode = Mode::Automatic;
            p.state = PlanState::Scheduled;
            p.expires_at = None;
            p.run_at = Some(run_at.into());
            let mut tx = store.tenant(tenant).begin().await.unwrap();
            tx.insert_plan(&p, &items).await.unwrap();
            tx.commit(test_entry("action_planned", "p")).await.unwrap();
            scheduled.push((tenant, p));
        }
        let due = |at: &'static str| {
            let store = store.clone();
            async move { store.scheduled_plans_due(at).await.unwrap() }
        };
        assert_eq!(due("2026-03-20T10:19:59.000000Z").await, vec![], "none before its time");
        let ids = |v: &[usize]| v.iter().map(|i| (scheduled[*i].0, scheduled[*i].1.id.clone())).collect::<Vec<_>>();
        assert_eq!(due("2026-03-20T10:30:00.000000Z").await, ids(&[1, 0]), "across tenants, earliest first");
        // A cancelled plan is never due, and it keeps who cancelled it and why.
        let mut cancelled = scheduled[0].1.clone();
        cancelled.state = PlanState::Cancelled;
        cancelled.cancelled_by = Some("bob".into());
        cancelled.cancelled_at = Some("2026-03-20T10:05:00.000000Z".into());
        cancelled.cancel_reason = Some("planned campaign".into());
        cancelled.version = 2;
        let mut tx = store.tenant(t).begin().await.unwrap();
        tx.update_plan(&cancelled).await.unwrap();
        tx.commit(test_entry("action_cancelled", "p")).await.unwrap();
        assert_eq!(due("2026-03-21T00:00:00.000000Z").await, ids(&[1, 2]));
        let (read, _) = store.tenant(t).plan(&cancelled.id).await.unwrap();
        assert_eq!(read, cancelled);
    }

    pub async fn plans_round_trip_and_refuse_stale_versions(store: Store) {
        let t = tenant(&store, "acme").await;
        let other = tenant(&store, "other").await;
        let b = create_budget(&store, t, "Planned").await;
        let (p, items) = plan(&b, 1);
        let mut tx = store.tenant(t).begin().await.unwrap();
        tx.insert_plan(&p, &items).await.unwrap();
        tx.commit(test_entry("action_planned", "p")).await.unwrap();
        let (read, read_items) = store.tenant(t).plan(&p.id).await.unwrap();
        assert_eq!(read, p);
        assert_eq!(read_items.iter().map(|i| i.scenario_id).collect::<Vec<_>>(), vec![502, 501], "largest first");
        assert_eq!(read_items[1], items[0]);
        assert!(matches!(store.tenant(other).plan(&p.id).await, Err(StoreError::NotFound)), "tenant-scoped");

        let mut approved = read.clone();
        approved.state = PlanState::Approved;
        approved.decided_by = Some("bob".into());
        approved.version = 2;
        let mut tx = store.tenant(t).begin().await.unwrap();
        tx.update_plan(&approved).await.unwrap();
        tx.commit(test_entry("action_approved", "p")).await.unwrap();
        let mut stale = read.clone();
        stale.state = PlanState::Rejected;
        stale.version = 2;
        let mut tx = store.tenant(t).begin().await.unwrap();
        assert!(matches!(tx.update_plan(&stale).await, Err(StoreError::VersionConflict { .. })));
        drop(tx);
        assert_eq!(store.tenant(t).plan(&p.id).await.unwrap().0.state, PlanState::Approved);

        let (p2, items2) = plan(&b, 2);
        let mut tx = store.tenant(t).begin().await.unwrap();
        tx.insert_plan(&p2, &items2).await.unwrap();
        tx.commit(test_entry("action_planned", "p2")).await.unwrap();
        let ts = store.tenant(t);
        let (page, next) = ts.plans(&PlanFilter::default(), None, 1).await.unwrap();
        assert_eq!((page[0].id.as_str(), next.as_deref()), (p2.id.as_str(), Some(p2.id.as_str())), "newest first");
        let (page, next) = ts.plans(&PlanFilter::default(), next.as_deref(), 1).await.unwrap();
        assert_eq!((page[0].id.as_str(), next), (p.id.as_str(), None));
        let awaiting = PlanFilter { state: Some(PlanState::AwaitingApproval), ..Default::default() };
        assert_eq!(ts.plans(&awaiting, None, 10).await.unwrap().0.len(), 1);
        let runnable = store.plans_in_states(&[PlanState::Approved]).await.unwrap();
        assert_eq!(runnable, vec![(t, p.id.clone())]);
        assert!(store.plans_reversing_at_period_end().await.unwrap().is_empty(), "not executed yet");
        let mut executed = approved.clone();
        executed.state = PlanState::Executed;
        executed.version = 3;
        let mut tx = store.tenant(t).begin().await.unwrap();
        tx.update_plan(&executed).await.unwrap();
        let mut items_done = items[0].clone();
        items_done.status = ItemStatus::Stopped;
        tx.update_item(&p.id, &items_done).await.unwrap();
        tx.commit(test_entry("action_executed", "p")).await.unwrap();
        let due = store.plans_reversing_at_period_end().await.unwrap();
        assert_eq!(due.iter().map(|(tt, pp)| (*tt, pp.id.clone())).collect::<Vec<_>>(), vec![(t, p.id.clone())]);
        let held = ts.scenarios_held_by_other_plans(&p2.id).await.unwrap();
        assert_eq!(held.into_iter().collect::<Vec<_>>(), vec![501], "what the executed plan stopped");
        assert!(ts.scenarios_held_by_other_plans(&p.id).await.unwrap().is_empty(), "not its own items");
    }

    pub async fn events_queue_one_notification_per_webhook_with_their_transaction(store: Store) {
        let t = tenant(&store, "acme").await;
        let other = tenant(&store, "other").await;
        let sealed = Sealed { key_id: "k".into(), nonce: vec![0; 12], ciphertext: vec![1, 2, 3] };
        for (tenant, n) in [(t, 2), (other, 1)] {
            for i in 0..n {
                let w = WebhookRecord {
                    id: uuid::Uuid::now_v7().to_string(),
                    kind: ChannelKind::Webhook,
                    url: format!("https://hooks.example.com/{i}"),
                    label: None,
                    sealed: sealed.clone(),
                    events: None,
                    email: None,
                    created_at: "2026-03-20T10:00:00.000000Z".into(),
                    created_by: "alice".into(),
                };
                let mut tx = store.tenant(tenant).begin().await.unwrap();
                tx.insert_webhook(&w).await.unwrap();
                tx.commit(test_entry("add_webhook", "w")).await.unwrap();
            }
        }
        // A Slack channel subscribed to plan_executed only: threshold_crossed passes it by.
        let filtered = WebhookRecord {
            id: uuid::Uuid::now_v7().to_string(),
            kind: ChannelKind::Slack,
            url: "https://hooks.slack.com/…".into(),
            label: None,
            sealed: sealed.clone(),
            events: Some(vec![EventType::PlanExecuted]),
            email: None,
            created_at: "2026-03-20T10:00:00.000000Z".into(),
            created_by: "alice".into(),
        };
        let mut tx = store.tenant(t).begin().await.unwrap();
        tx.insert_webhook(&filtered).await.unwrap();
        tx.commit(test_entry("add_webhook", "w")).await.unwrap();
        let read = store.tenant(t).webhook(&filtered.id).await.unwrap();
        assert_eq!((read.kind, read.events), (ChannelKind::Slack, Some(vec![EventType::PlanExecuted])));
        let now = "2026-03-20T10:00:00.000000Z";
        let mut tx = store.tenant(t).begin().await.unwrap();
        assert_eq!(tx.enqueue_event("e1", "threshold_crossed", "{}", now).await.unwrap(), 2, "one per webhook");
        tx.commit(test_entry("threshold_crossed", "t")).await.unwrap();
        // An event whose transaction rolls back queues nothing.
        let mut tx = store.tenant(t).begin().await.unwrap();
        tx.enqueue_event("e2", "plan_created", "{}", now).await.unwrap();
        drop(tx);
        assert_eq!(count(&store, "notifications", "").await, 2);
        let due = store.due_notifications(now, 10).await.unwrap();
        assert_eq!(due.len(), 2);
        assert!(due.iter().all(|(tenant, n)| *tenant == t && n.event_id == "e1" && n.state == "pending"));
        let ts = store.tenant(t);
        let n = &due[0].1;
        let attempt = Attempt {
            number: 1,
            at: now,
            status: Some(500),
            error: Some("HTTP 500"),
            duration_ms: 12,
            next_attempt_at: "2026-03-20T10:00:05.000000Z",
        };
        ts.record_attempt(&n.id, &attempt).await.unwrap();
        assert_eq!(store.due_notifications(now, 10).await.unwrap().len(), 1, "retried later, not now");
        assert_eq!(ts.notification_attempts(&n.id).await.unwrap().len(), 1);
        let read = ts.notification(&n.id).await.unwrap();
        assert_eq!((read.attempts, read.last_status, read.state.as_str()), (1, Some(500), "pending"));
        assert!(matches!(store.tenant(other).notification(&n.id).await, Err(StoreError::NotFound)));
        assert!(store.tenant(other).notifications(None, 10).await.unwrap().is_empty(), "tenant-scoped");
        // The filter matches the name exactly: `_` is no wildcard.
        let mut tx = store.tenant(t).begin().await.unwrap();
        assert_eq!(tx.enqueue_event("e3", "plan_executed", "{}", now).await.unwrap(), 3);
        assert_eq!(tx.enqueue_event("e4", "planXexecuted", "{}", now).await.unwrap(), 2);
        tx.commit(test_entry("plan_executed", "p")).await.unwrap();
    }

    /// The evaluator's tenant-wide read (`threshold_book`) and the status's read of one budget
    /// (`thresholds_with_crossings`) hold exactly the tenant's thresholds, states and this period's crossings.
    pub async fn thresholds_and_their_states_are_read_per_tenant_at_once(store: Store) {
        use make_budget_mcp::domain::threshold::{
            Basis, CrossingEvent, CrossingState, Severity, Threshold, ThresholdDraft, ThresholdKind, ThresholdSpec,
        };
        let (a, b) = (tenant(&store, "a").await, tenant(&store, "b").await);
        let (first, second, theirs) = (
            create_budget(&store, a, "First").await,
            create_budget(&store, a, "Second").await,
            create_budget(&store, b, "Theirs").await,
        );
        let now = make_budget_mcp::domain::clock::format_timestamp(store.clock().now());
        let add = |t: TenantId, budget: &Budget, value: i64| {
            let (store, budget_id, now) = (store.clone(), budget.id.clone(), now.clone());
            async move {
                let spec = ThresholdSpec::new(ThresholdDraft {
                    kind: ThresholdKind::Percent,
                    value,
                    basis: Basis::Actual,
                    severity: Severity::Warning,
                    cooldown_minutes: 60,
                    label: None,
                })
                .unwrap();
                let th = Threshold {
                    id: uuid::Uuid::now_v7().to_string(),
                    budget_id,
                    spec,
                    version: 1,
                    created_at: now.clone(),
                    created_by: "tester".into(),
                    updated_at: now,
                    updated_by: "tester".into(),
                };
                let mut tx = store.tenant(t).begin().await.unwrap();
                tx.insert_threshold(&th).await.unwrap();
                tx.commit(test_entry("add_threshold", &format!("threshold:{}", th.id))).await.unwrap();
                th
            }
        };
        let (t50, t80, t90, foreign) =
            (add(a, &first, 50).await, add(a, &first, 80).await, add(a, &second, 90).await, add(b, &theirs, 50).await);
        let state = |key: &str| CrossingState {
            period_key: key.into(),
            above: true,
            last_crossed_at: Some(store.clock().now()),
        };
        let event = |t: &Threshold, key: &str| CrossingEvent {
            id: uuid::Uuid::now_v7().to_string(),
            threshold_id: t.id.clone(),
            budget_id: t.budget_id.clone(),
            period_key: key.into(),
            crossed_at: now.clone(),
            basis: Basis::Actual,
            severity: Severity::Warning,
            value_centi: 5_000,
            amount_centi: 4_000,
        };
        for (t, th, key) in [
            (a, &t80, "2026-03-01/2026-03-31"),
            (a, &t50, "2026-02-01/2026-02-28"),
            (b, &foreign, "2026-03-01/2026-03-31"),
        ] {
            let mut tx = store.tenant(t).begin().await.unwrap();
            tx.save_crossing_state(&th.id, &state(key), &now).await.unwrap();
            tx.insert_crossing(&event(th, key)).await.unwrap();
            tx.commit(test_entry("threshold_crossed", &format!("threshold:{}", th.id))).await.unwrap();
        }

        let book = store.tenant(a).threshold_book().await.unwrap();
        let ids = |ts: &[Threshold]| ts.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(book.thresholds(&first.id)), ids(&[t50.clone(), t80.clone()]), "ordered by id");
        assert_eq!(book.thresholds(&second.id), std::slice::from_ref(&t90));
        assert!(book.thresholds(&theirs.id).is_empty(), "another tenant's thresholds are not in the book");
        let mut states: Vec<_> =
            book.states().iter().map(|(id, s)| (id.clone(), s.period_key.clone(), s.above)).collect();
        states.sort();
        let mut expected = vec![
            (t50.id.clone(), "2026-02-01/2026-02-28".to_owned(), true),
            (t80.id.clone(), "2026-03-01/2026-03-31".to_owned(), true),
        ];
        expected.sort();
        assert_eq!(states, expected);

        let (thresholds, events) =
            store.tenant(a).thresholds_with_crossings(&first.id, "2026-03-01/2026-03-31").await.unwrap();
        assert_eq!(ids(&thresholds), ids(&[t50, t80.clone()]));
        assert_eq!(events.iter().map(|e| e.threshold_id.clone()).collect::<Vec<_>>(), vec![t80.id], "this period only");
        let (thresholds, events) =
            store.tenant(a).thresholds_with_crossings(&theirs.id, "2026-03-01/2026-03-31").await.unwrap();
        assert!(thresholds.is_empty() && events.is_empty(), "another tenant's budget reads as empty");
    }

    pub async fn migrations_are_idempotent(store: Store) {
        store.migrate().await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(count(&store, "tenants", "").await, 0);
    }

    pub async fn tenant_creation_starts_its_audit_chain(store: Store) {
        let t = tenant(&store, "acme").await;
        let report = store.verify_audit(Some(t)).await.unwrap();
        assert!(report.is_valid());
        assert_eq!(report.chains.len(), 1);
        assert_eq!((report.chains[0].records_checked, report.chains[0].head_seq), (1, 1));
        let recs = store.audit_records(t, 0, 10).await.unwrap();
        assert_eq!(recs[0].entry.action, "tenant_create");
        assert_eq!(recs[0].prev_hash, make_budget_mcp::audit::GENESIS_HASH);
        assert_eq!(store.tenant_by_name("acme").await.unwrap().unwrap().id, t.to_string());

        let dup = admin::create_tenant(&store, "acme", &test_actor()).await.unwrap_err();
        assert!(dup.to_string().contains("already exists"), "{dup}");
        assert_eq!(count(&store, "tenants", "").await, 1);
        assert_eq!(count(&store, "audit_log", "").await, 1);
    }

    pub async fn budgets_round_trip_every_field(store: Store) {
        let t = tenant(&store, "acme").await;
        let mut d = draft("Custom quarter");
        d.period =
            serde_json::from_value(serde_json::json!({"kind": "custom", "start": "2024-02-29", "end": "2024-05-31"}))
                .unwrap();
        d.active = false;
        d.scope.folder_ids = vec![7, 3];
        d.scope.scenario_ids = vec![1000, 1001];
        d.money = None;
        let b = Budget::new(BudgetId::new(), BudgetSpec::new(d).unwrap(), store.clock().now(), "tester");
        let mut tx = store.tenant(t).begin().await.unwrap();
        tx.insert_budget(&b).await.unwrap();
        tx.commit(test_entry("create_budget", "b")).await.unwrap();
        let read = store.tenant(t).budget(b.id.parse().unwrap()).await.unwrap();
        assert_eq!(read, b);
        assert_eq!(read.spec.scope.folder_ids, vec![3, 7], "normalised on the way in");

        let with_money = create_budget(&store, t, "Money").await;
        assert_eq!(store.tenant(t).budget(with_money.id.parse().unwrap()).await.unwrap(), with_money);
    }

    pub async fn stale_versions_are_refused(store: Store) {
        let t = tenant(&store, "acme").await;
        let b = create_budget(&store, t, "B").await;
        let id: BudgetId = b.id.parse().unwrap();
        let spec = b.spec.patched(BudgetPatch { limit: Some(5), ..Default::default() }).unwrap();
        let v2 = b.updated(spec.clone(), store.clock().now(), "tester");
        let mut tx = store.tenant(t).begin().await.unwrap();
        assert_eq!(tx.budget_for_update(id).await.unwrap(), b);
        tx.update_budget(&v2).await.unwrap();
        tx.commit(test_entry("update_budget", "b")).await.unwrap();
        assert_eq!(store.tenant(t).budget(id).await.unwrap().version, 2);

        // Writing a second "version 2" computed from the stale version 1 must not overwrite.
        let stale = b.updated(spec, store.clock().now(), "someone-else");
        let mut tx = store.tenant(t).begin().await.unwrap();
        let e = tx.update_budget(&stale).await.unwrap_err();
        assert!(matches!(e, StoreError::VersionConflict { .. }), "{e:?}");
        drop(tx);
        assert_eq!(store.tenant(t).budget(id).await.unwrap().updated_by, "tester");
    }

    pub async fn duplicate_names_are_refused_and_write_nothing(store: Store) {
        let t = tenant(&store, "acme").await;
        create_budget(&store, t, "Same").await;
        let audit_before = count(&store, "audit_log", "").await;
        let b = Budget::new(BudgetId::new(), BudgetSpec::new(draft("Same")).unwrap(), store.clock().now(), "x");
        let mut tx = store.tenant(t).begin().await.unwrap();
        let e = tx.insert_budget(&b).await.unwrap_err();
        assert!(matches!(&e, StoreError::Duplicate(m) if m.contains("\"Same\"")), "{e:?}");
        drop(tx);
        assert_eq!(count(&store, "budgets", "").await, 1);
        assert_eq!(count(&store, "audit_log", "").await, audit_before);

        // The same name in another tenant is fine.
        let other = tenant(&store, "other").await;
        create_budget(&store, other, "Same").await;
    }

    pub async fn tenants_are_isolated(store: Store) {
        let a = tenant(&store, "a").await;
        let b = tenant(&store, "b").await;
        let theirs = create_budget(&store, b, "Theirs").await;
        let id: BudgetId = theirs.id.parse().unwrap();
        let b_head = store.verify_audit(Some(b)).await.unwrap().chains[0].head_hash.clone();

        assert!(matches!(store.tenant(a).budget(id).await, Err(StoreError::NotFound)));
        let page = store.tenant(a).list_budgets(&BudgetFilter::default(), None, 50).await.unwrap();
        assert!(page.budgets.is_empty());
        let mut tx = store.tenant(a).begin().await.unwrap();
        assert!(matches!(tx.budget_for_update(id).await, Err(StoreError::NotFound)));
        assert!(matches!(tx.delete_budget(id).await, Err(StoreError::NotFound)));
        let mut forged = theirs.clone();
        forged.version += 1;
        assert!(matches!(tx.update_budget(&forged).await, Err(StoreError::VersionConflict { .. })));
        drop(tx);

        assert_eq!(store.tenant(b).budget(id).await.unwrap(), theirs);
        assert_eq!(store.verify_audit(Some(b)).await.unwrap().chains[0].head_hash, b_head);
    }

    pub async fn pagination_and_filters(store: Store) {
        let t = tenant(&store, "acme").await;
        let mut made = Vec::new();
        for i in 0..7 {
            made.push(create_budget(&store, t, &format!("Budget {i}")).await.id);
        }
        // A name with LIKE wildcards must match literally.
        let mut d = draft("50%_off");
        d.active = false;
        d.unit = make_budget_mcp::domain::Unit::Operations;
        d.scope.organization_id = 77;
        let odd = Budget::new(BudgetId::new(), BudgetSpec::new(d).unwrap(), store.clock().now(), "x");
        let mut tx = store.tenant(t).begin().await.unwrap();
        tx.insert_budget(&odd).await.unwrap();
        tx.commit(test_entry("create_budget", "odd")).await.unwrap();
        made.push(odd.id.clone());

        let ts = store.tenant(t);
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = ts.list_budgets(&BudgetFilter::default(), cursor, 3).await.unwrap();
            pages += 1;
            assert!(page.budgets.len() <= 3);
            seen.extend(page.budgets.iter().map(|b| b.id.clone()));
            match page.next_cursor {
                Some(c) => cursor = Some(c.parse().unwrap()),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, made, "every budget once, in creation order");

        let only = |f: BudgetFilter| async move { ts.list_budgets(&f, None, 50).await.unwrap().budgets };
        assert_eq!(only(BudgetFilter { active: Some(false), ..Default::default() }).await.len(), 1);
        assert_eq!(only(BudgetFilter { active: Some(true), ..Default::default() }).await.len(), 7);
        assert_eq!(
            only(BudgetFilter { unit: Some(make_budget_mcp::domain::Unit::Operations), ..Default::default() })
                .await
                .len(),
            1
        );
        assert_eq!(only(BudgetFilter { organization_id: Some(77), ..Default::default() }).await.len(), 1);
        assert_eq!(only(BudgetFilter { period_kind: Some("monthly".into()), ..Default::default() }).await.len(), 8);
        assert_eq!(only(BudgetFilter { name_contains: Some("BUDGET 3".into()), ..Default::default() }).await.len(), 1);
        assert_eq!(only(BudgetFilter { name_contains: Some("%_".into()), ..Default::default() }).await.len(), 1);
        assert_eq!(only(BudgetFilter { name_contains: Some("_".into()), ..Default::default() }).await.len(), 1);
    }

    pub async fn failed_audit_append_rolls_back_the_mutation(store: Store) {
        let t = tenant(&store, "acme").await;
        let audit_before = count(&store, "audit_log", "").await;
        break_audit_inserts(&store).await;

        let b = Budget::new(BudgetId::new(), BudgetSpec::new(draft("Doomed")).unwrap(), store.clock().now(), "x");
        let mut tx = store.tenant(t).begin().await.unwrap();
        tx.insert_budget(&b).await.unwrap();
        let e = tx.commit(test_entry("create_budget", "b")).await.unwrap_err();
        assert!(e.to_string().contains("forced audit failure"), "{e}");
        assert_eq!(count(&store, "budgets", "").await, 0, "the budget must not survive its failed audit record");

        let tenant_rec = store.tenant_by_id(t).await.unwrap().unwrap();
        assert!(admin::issue_token(&store, &tenant_rec, Role::Viewer, "bob", None, &test_actor()).await.is_err());
        assert_eq!(count(&store, "api_tokens", "").await, 0, "nor may a token");
        assert!(admin::create_tenant(&store, "ghost", &test_actor()).await.is_err());
        assert!(store.tenant_by_name("ghost").await.unwrap().is_none(), "nor a tenant");

        repair_audit_inserts(&store).await;
        assert_eq!(count(&store, "audit_log", "").await, audit_before);
        assert!(store.verify_audit(None).await.unwrap().is_valid());
    }

    pub async fn concurrent_mutations_leave_a_gapless_chain(store: Store) {
        let t = tenant(&store, "acme").await;
        let store = Arc::new(store);
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { create_budget(&store, t, &format!("Concurrent {i}")).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let report = store.verify_audit(Some(t)).await.unwrap();
        assert!(report.is_valid(), "{report:?}");
        assert_eq!(report.chains[0].records_checked, 33);
        let seqs: Vec<i64> = store.audit_records(t, 0, 100).await.unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=33).collect::<Vec<_>>());
    }

    pub async fn tokens_issue_resolve_and_revoke(store: Store) {
        tenant(&store, "acme").await;
        let t = store.tenant_by_name("acme").await.unwrap().unwrap();
        let (rec, secret) =
            admin::issue_token(&store, &t, Role::Operator, "ci-bot", Some(30), &test_actor()).await.unwrap();
        assert!(rec.expires_at.is_some());
        let stored: String = sqlx::Row::try_get(
            &sqlx::query("SELECT token_hash FROM api_tokens").fetch_one(store.pool()).await.unwrap(),
            "token_hash",
        )
        .unwrap();
        assert_ne!(stored, secret, "only the hash is stored");
        let found = store.token_by_hash(&make_budget_mcp::auth::token::hash(&secret)).await.unwrap().unwrap();
        assert_eq!(
            (found.subject.as_str(), found.role, found.tenant_name.as_str()),
            ("ci-bot", Role::Operator, "acme")
        );

        let revoked = admin::revoke_token(&store, &rec.id, &test_actor()).await.unwrap();
        assert!(revoked.revoked_at.is_some());
        assert!(admin::revoke_token(&store, &rec.id, &test_actor()).await.is_err(), "revoking twice is refused");
        let audit = store.audit_records(t.id.parse().unwrap(), 0, 10).await.unwrap();
        let actions: Vec<&str> = audit.iter().map(|r| r.entry.action.as_str()).collect();
        assert_eq!(actions, ["tenant_create", "token_issue", "token_revoke"]);
        assert!(!serde_json::to_string(&audit).unwrap().contains(&secret), "the secret never reaches the audit log");
    }

    pub async fn verification_locates_tampering(store: Store) {
        let t = tenant(&store, "acme").await;
        for i in 0..4 {
            create_budget(&store, t, &format!("B{i}")).await;
        }
        assert!(store.verify_audit(None).await.unwrap().is_valid());
        bypass_audit_triggers(&store).await;
        sqlx::query("UPDATE audit_log SET target = 'budget:forged' WHERE seq = 3").execute(store.pool()).await.unwrap();
        let report = store.verify_audit(None).await.unwrap();
        let broken = report.chains[0].first_break.clone().unwrap().to_string();
        assert!(broken.starts_with("record seq 3: hash mismatch"), "{broken}");
    }
}
