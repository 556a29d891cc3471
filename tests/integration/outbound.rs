//! Server-side request forgery through the URLs the server fetches, against the real binary as an MCP
//! client. With the default outbound policy, `add_webhook` and `connect_make` refuse internal addresses and
//! names, write nothing and call nothing. A webhook stored while loopback was allowed is refused at delivery
//! by a server restarted without the allowance: the name is judged by what it resolves to when the
//! connection is made, and the refusal is recorded as a failed delivery.

use crate::support::*;
use serde_json::{Value, json};
use sqlx::Row;

on_both_stores!(
    internal_webhook_urls_and_make_zones_are_refused_and_nothing_is_written,
    a_webhook_stored_while_loopback_was_allowed_fails_at_delivery_when_it_is_not,
);

const HOOK_SECRET: &str = "whsec-0123456789abcdef";

/// The server's default outbound policy: the helpers' loopback allowance removed.
const DEFAULT_POLICY: (&str, &str) = (ALLOW_LOOPBACK.0, UNSET);

/// The rows a refused call must not add: webhooks, Make connections, audit records.
async fn written(store: &make_budget_mcp::store::Store) -> [i64; 3] {
    [
        count(store, "webhooks", "").await,
        count(store, "make_connections", "").await,
        count(store, "audit_log", "").await,
    ]
}

mod cases {
    use super::*;

    pub async fn internal_webhook_urls_and_make_zones_are_refused_and_nothing_is_written(db: TestDb) {
        let fake = seeded_fake().await;
        let (client, logs) = stdio_client(&db.url, &[DEFAULT_POLICY], Lifecycle::Initialize).await;
        call_ok(&client, "whoami", json!({})).await;
        let store = open_store(&db.url).await;
        let before = written(&store).await;

        for (url, says) in [
            ("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
            ("https://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254 is a cloud metadata address"),
            ("https://10.0.0.1/hook", "10.0.0.1 is a private address"),
            ("https://192.168.1.1/hook", "192.168.1.1 is a private address"),
            ("https://[fd00::1]/hook", "fd00::1 is a unique-local address"),
            ("https://0.0.0.0/hook", "0.0.0.0 is an unspecified address"),
            (
                "https://metadata.google.internal/computeMetadata/v1/",
                "metadata.google.internal is a cloud metadata name",
            ),
            ("http://localhost:5432/", "localhost is a loopback name"),
            ("http://2130706433/", "127.0.0.1 is a loopback address"),
            ("http://0x7f000001/", "127.0.0.1 is a loopback address"),
        ] {
            let e = call_err(&client, "add_webhook", json!({"url": url, "secret": HOOK_SECRET})).await;
            assert!(
                e.starts_with(
                    "invalid_argument: invalid argument `url`: must not point at a private, loopback, link-local or \
                     metadata address"
                ),
                "{url}: {e}"
            );
            assert!(e.contains(says), "{url}: {e}");
            assert_eq!(written(&store).await, before, "{url}: no webhook and no audit record written");
        }

        for (zone, says) in [
            (fake.base_url(), "127.0.0.1 is a loopback address"),
            ("https://10.0.0.1".to_owned(), "10.0.0.1 is a private address"),
            ("https://169.254.169.254".to_owned(), "169.254.169.254 is a cloud metadata address"),
            ("https://[::1]".to_owned(), "::1 is a loopback address"),
            ("metadata.google.internal".to_owned(), "metadata.google.internal is a cloud metadata name"),
        ] {
            let mut args = connect_args(&fake, &[ORG]);
            args["zone"] = Value::from(zone.clone());
            let e = call_err(&client, "connect_make", args).await;
            assert!(e.starts_with("invalid_argument: invalid argument `zone`: must not point at"), "{zone}: {e}");
            assert!(e.contains(says), "{zone}: {e}");
            assert_eq!(written(&store).await, before, "{zone}: no connection and no audit record written");
        }
        let mut args = connect_args(&fake, &[ORG]);
        args["zone"] = Value::from(fake.base_url());
        let e = call_err(&client, "connect_make", args).await;
        assert!(e.contains("set outbound.allow_loopback"), "the error says how to allow it: {e}");
        assert_eq!(fake.requests().len(), 0, "no request reached the fake Make: {:?}", fake.requests());

        client.cancel().await.unwrap();
        store.close().await;
        let logs = logs.lock().unwrap().clone();
        assert!(!logs.contains(MAKE_TOKEN) && !logs.contains(HOOK_SECRET), "no secret in the log");
        assert!(!logs.contains("may reach loopback"), "no allowance, no warning:\n{logs}");
    }

    pub async fn a_webhook_stored_while_loopback_was_allowed_fails_at_delivery_when_it_is_not(db: TestDb) {
        let fake = seeded_fake_at(utc_today()).await;
        let hook = WebhookReceiver::start(HOOK_SECRET).await;
        // A name, not an address: only resolving it at delivery shows where it leads.
        let by_name = hook.url.replacen("127.0.0.1", "localhost", 1);
        let tenant = create_tenant(&db.url, "acme");
        let token = issue_token(&db.url, &tenant, "admin", "alice");

        // Loopback allowed (as the helpers set it): connect the fake Make, add the webhook, cross a threshold
        // whose action notifies. The evaluator does not run yet (its first pass is 5 minutes away).
        let server = HttpServer::start(&db.url).await;
        assert!(server.logs().contains("may reach loopback addresses"), "a warning says loopback is allowed");
        let alice = http_client(&server.mcp_url, &token, Lifecycle::Initialize).await;
        call_ok(&alice, "connect_make", connect_args(&fake, &[ORG])).await;
        call_ok(&alice, "add_webhook", json!({"url": by_name, "secret": HOOK_SECRET})).await;
        call_ok(&alice, "sync_usage", json!({})).await;
        let budget = call_ok(
            &alice,
            "create_budget",
            json!({"name": "Acme monthly", "unit": "credits", "limit": 1, "period": {"kind": "monthly"},
                   "timezone": "UTC", "scope": {"organization_id": ORG}}),
        )
        .await;
        let t = call_ok(
            &alice,
            "add_threshold",
            json!({"budget_id": budget["id"], "kind": "percent", "value": 50, "basis": "actual", "severity": "info"}),
        )
        .await;
        call_ok(&alice, "add_threshold_action", json!({"threshold_id": t["id"], "kind": "notify"})).await;
        call_ok(&alice, "sync_usage", json!({})).await;
        let hooks = call_ok(&alice, "list_webhooks", json!({})).await;
        assert_eq!(hooks["webhooks"][0]["recent"][0]["state"], "pending", "{hooks:#}");
        alice.cancel().await.unwrap();
        server.stop().await;
        let make_requests = fake.requests().len();

        // Restarted with the default policy, evaluating every second, one attempt per notification.
        let env = [DEFAULT_POLICY, ("MBM_EVALUATE_INTERVAL_SECS", "1"), ("MBM_WEBHOOK_MAX_ATTEMPTS", "1")];
        let server = HttpServer::start_with(&db.url, &env).await;
        assert!(!server.logs().contains("may reach loopback"), "{}", server.logs());
        let alice = http_client(&server.mcp_url, &token, Lifecycle::Initialize).await;
        let client = &alice;
        wait_until(30, "the notification to be recorded as failed", move || async move {
            let hooks = call_ok(client, "list_webhooks", json!({})).await;
            hooks["webhooks"][0]["recent"][0]["state"] == "failed"
        })
        .await;
        let hooks = call_ok(&alice, "list_webhooks", json!({})).await;
        let failed = &hooks["webhooks"][0]["recent"][0];
        assert_eq!(failed["attempts"], 1, "{failed:#}");
        let reason = failed["last_error"].as_str().unwrap_or_default();
        assert!(reason.starts_with("refused: localhost resolves only to loopback addresses"), "{failed:#}");
        assert!(!hooks.to_string().contains("/hook"), "the URL's path is never shown: {hooks}");
        assert!(hook.received().is_empty(), "the receiver got nothing: {:?}", hook.received());
        // The evaluator's sync was refused too: the stored zone is a loopback address.
        assert_eq!(fake.requests().len(), make_requests, "no call reached the fake Make after the restart");
        alice.cancel().await.unwrap();
        server.stop().await;

        let store = open_store(&db.url).await;
        let rows = sqlx::query("SELECT reason FROM audit_log WHERE action = 'webhook_delivery_failed'")
            .fetch_all(store.pool())
            .await
            .unwrap();
        let reasons: Vec<Option<String>> = rows.iter().map(|r| r.try_get("reason").unwrap()).collect();
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        let audited = reasons[0].as_deref().unwrap_or_default();
        assert!(audited.contains("refused") && audited.contains("loopback"), "{audited}");
        assert!(!audited.contains("/hook"), "{audited}");
        store.close().await;
    }
}
