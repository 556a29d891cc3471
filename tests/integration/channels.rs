//! Notification channels end to end: the real binary (HTTP, rmcp client) against the fake Make API and
//! local stand-ins for Slack, Teams Workflows and an SMTP server (tests/support/channels.rs), each checking
//! the shape the real service requires. Formats, a failure retried and recorded, per-channel filters, and
//! the sealed credentials (Slack URL path, Teams URL, SMTP password) kept out of tool output, the audit
//! log and the logs.

use std::time::Duration;

use crate::support::channels::{SMTP_USER, SlackReceiver, SmtpReceiver, TeamsReceiver};
use crate::support::*;
use serde_json::{Value, json};
use sqlx::Row;

on_both_stores!(slack_teams_and_email_get_their_formats_with_filters_retries_and_no_leaks, email_over_implicit_tls,);

const SLACK_SECRET: &str = "slackpathsecret0123456789";
const FILTERED_SECRET: &str = "filteredslacksecret987654";
const TEAMS_SECRET: &str = "teamsworkflowsecret4242";
const SMTP_PASSWORD: &str = "smtp-pass-Vq9!zz-7781";

fn org_budget(limit: i64) -> Value {
    json!({"name": "Acme monthly", "unit": "credits", "limit": limit, "period": {"kind": "monthly"},
           "timezone": "UTC", "scope": {"organization_id": ORG}})
}

/// The whole audit log as text, every column.
async fn audit_text(db: &TestDb) -> String {
    let store = open_store(&db.url).await;
    let rows =
        sqlx::query("SELECT action, target, reason, before_state, after_state FROM audit_log ORDER BY tenant_id, seq")
            .fetch_all(store.pool())
            .await
            .unwrap();
    store.close().await;
    rows.iter()
        .map(|r| {
            (0..5)
                .map(|i| r.try_get::<Option<String>, _>(i).unwrap().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_no_secrets(what: &str, text: &str) {
    for s in [SLACK_SECRET, FILTERED_SECRET, TEAMS_SECRET, SMTP_PASSWORD] {
        assert!(!text.contains(s), "{what} contains a sealed credential ({s}):\n{text}");
    }
}

/// A session (admin alice) with Make connected and synced once, and a CA file for the SMTP receiver.
async fn session(db: &TestDb, fake: &crate::support::fake_make::FakeMake) -> (HttpServer, Client) {
    let tenant = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &tenant, "admin", "alice");
    let server = HttpServer::start_with(&db.url, &[]).await;
    let alice = http_client(&server.mcp_url, &token, Lifecycle::Initialize).await;
    call_ok(&alice, "connect_make", connect_args(fake, &[ORG])).await;
    call_ok(&alice, "sync_usage", json!({})).await;
    (server, alice)
}

/// Run `evaluate --once` `n` times trusting `ca_pem` (for the SMTP receiver's certificate); returns the
/// runs' stderr.
async fn evaluate(db: &TestDb, ca_pem: &str, n: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let ca = ca.display().to_string();
    let env = [
        ("MBM_WEBHOOK_MAX_ATTEMPTS", "3"),
        ("MBM_WEBHOOK_RETRY_BASE_MS", "1"),
        ("SSL_CERT_FILE", ca.as_str()),
        ("MBM_LOG", "debug"),
    ];
    let mut logs = String::new();
    for _ in 0..n {
        let out = cli_env(&db.url, &["evaluate", "--once", "--no-sync"], &env);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.code().is_some(), "{err}");
        logs.push_str(&err);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    logs
}

fn channel<'a>(list: &'a Value, id: &Value) -> &'a Value {
    list["webhooks"].as_array().unwrap().iter().find(|w| w["id"] == *id).unwrap()
}

mod cases {
    use super::*;

    pub async fn slack_teams_and_email_get_their_formats_with_filters_retries_and_no_leaks(db: TestDb) {
        let today = utc_today();
        let fake = seeded_fake_at(today).await;
        let slack = SlackReceiver::start().await;
        let teams = TeamsReceiver::start().await;
        let smtp = SmtpReceiver::start(false).await;
        let (server, alice) = session(&db, &fake).await;

        let s =
            call_ok(&alice, "add_webhook", json!({"kind": "slack", "url": slack.url(SLACK_SECRET), "label": "ops"}))
                .await;
        let filtered = call_ok(
            &alice,
            "add_webhook",
            json!({"kind": "slack", "url": slack.url(FILTERED_SECRET), "events": ["plan_executed"]}),
        )
        .await;
        let t = call_ok(&alice, "add_webhook", json!({"kind": "teams", "url": teams.url(TEAMS_SECRET)})).await;
        let e = call_ok(
            &alice,
            "add_webhook",
            json!({"kind": "email", "secret": SMTP_PASSWORD, "events": ["threshold_crossed", "plan_executed"],
                   "smtp": {"host": "127.0.0.1", "port": smtp.port, "from": "budget@example.com",
                            "to": ["ops@example.com", "cfo@example.com"], "username": SMTP_USER}}),
        )
        .await;
        for added in [&s, &filtered, &t, &e] {
            assert_no_secrets("add_webhook's answer", &added.to_string());
        }
        assert_eq!((s["kind"].as_str(), s["url"].as_str()), (Some("slack"), Some(&*format!("{}/…", slack.base))));
        assert_eq!(filtered["events"], json!(["plan_executed"]));
        assert_eq!(e["url"], format!("smtp://127.0.0.1:{}/…", smtp.port));
        assert_eq!(e["smtp"]["tls"], "starttls");
        assert_eq!(e["smtp"]["username"], SMTP_USER);

        // Refusals name the field and the rule.
        for (args, field) in [
            (json!({"kind": "slack", "url": slack.url("x"), "secret": "not-for-slack-1234"}), "`secret`"),
            (json!({"kind": "teams"}), "`url`"),
            (json!({"kind": "email", "url": slack.url("x")}), "`url`"),
            (json!({"kind": "email"}), "`smtp`"),
            (json!({"kind": "email", "smtp": {"host": "10.0.0.1", "from": "a@b.c", "to": ["d@e.f"]}}), "`smtp.host`"),
            (
                json!({"kind": "email", "smtp": {"host": "smtp.example.com", "tls": "none", "from": "a@b.c", "to": ["d@e.f"]}}),
                "`smtp.host`",
            ),
            (
                json!({"kind": "email", "smtp": {"host": "smtp.example.com", "from": "a@b.c", "to": ["x"]}}),
                "`smtp.to[0]`",
            ),
            (
                json!({"kind": "email", "smtp": {"host": "smtp.example.com", "from": "a@b.c", "to": ["d@e.f"], "username": "u"}}),
                "`secret`",
            ),
            (json!({"kind": "slack", "url": slack.url("x"), "events": ["no_such_event"]}), "events"),
        ] {
            let err = call_err(&alice, "add_webhook", args.clone()).await;
            assert!(err.contains(field), "{args}: {err}");
        }

        // A crossing that notifies, and an automatic pause that executes at once.
        let budget = call_ok(&alice, "create_budget", org_budget(1)).await;
        let th = call_ok(
            &alice,
            "add_threshold",
            json!({"budget_id": budget["id"], "kind": "percent", "value": 50, "basis": "actual", "severity": "critical"}),
        )
        .await;
        call_ok(&alice, "add_threshold_action", json!({"threshold_id": th["id"], "kind": "notify"})).await;
        call_ok(
            &alice,
            "add_threshold_action",
            json!({"threshold_id": th["id"], "kind": "pause_scenarios", "selector": {"kind": "top_n", "top_n": 1},
                   "mode": "automatic"}),
        )
        .await;
        slack.fail_next(SLACK_SECRET, &[503]);
        let synced = call_ok(&alice, "sync_usage", json!({})).await;
        assert_eq!(synced["automatic_plans_run"], 1, "{synced:#}");
        let logs = evaluate(&db, &smtp.ca_pem, 3).await;

        // Slack: every payload passed the Block Kit checks; the unfiltered channel got all three events
        // (the first attempt answered 503 and was retried), the filtered one only plan_executed.
        let posted = slack.posted();
        for p in &posted {
            assert!(p.problems.is_empty(), "{}: {:?}\n{:#}", p.path, p.problems, p.body);
        }
        let to = |secret: &str| -> Vec<Value> {
            posted.iter().filter(|p| p.path.ends_with(secret)).map(|p| p.body.clone()).collect()
        };
        let main = to(SLACK_SECRET);
        assert_eq!(main.len(), 3, "{main:#?}");
        let crossing =
            main.iter().find(|m| m["blocks"][0]["text"]["text"] == "Threshold crossed: Acme monthly").unwrap();
        let all = crossing.to_string();
        assert!(all.contains("*Severity*\\ncritical") && all.contains("*Value*\\n"), "{all}");
        let only = to(FILTERED_SECRET);
        assert_eq!(only.len(), 1, "{only:#?}");
        assert!(only[0]["blocks"][0]["text"]["text"].as_str().unwrap().starts_with("Plan executed"), "{:#}", only[0]);
        assert!(only[0].to_string().contains("*Scenarios*"), "the plan's scenarios are listed");

        // Teams: three Adaptive Cards, all valid.
        let cards = teams.posted();
        assert_eq!(cards.len(), 3);
        assert!(cards.iter().all(|c| c.problems.is_empty()), "{cards:#?}");
        assert!(cards.iter().any(|c| c.body.to_string().contains("Threshold crossed: Acme monthly")));

        // Email: two messages (its filter), over STARTTLS, authenticated, to both recipients.
        let mails = smtp.mails();
        assert_eq!(mails.len(), 2, "{:?}", smtp.transcript());
        for m in &mails {
            assert!(m.encrypted, "MAIL FROM before STARTTLS: {:?}", smtp.transcript());
            assert_eq!(m.auth, Some((SMTP_USER.to_owned(), SMTP_PASSWORD.to_owned())));
            assert_eq!(m.mail_from, "budget@example.com");
            assert_eq!(m.rcpt_to, ["ops@example.com", "cfo@example.com"]);
            assert!(m.header("From").unwrap().contains("budget@example.com"), "{:?}", m.header("From"));
            let to = m.header("To").unwrap();
            assert!(to.contains("ops@example.com") && to.contains("cfo@example.com"), "{to}");
            assert!(m.header("Content-Type").unwrap().starts_with("text/plain"), "{:?}", m.header("Content-Type"));
            assert!(m.header("Date").is_some());
        }
        let crossing = mails.iter().find(|m| m.header("Subject").unwrap().contains("Threshold crossed")).unwrap();
        assert_eq!(crossing.header("Subject").as_deref(), Some("[make-budget] Threshold crossed: Acme monthly"));
        let body = crossing.body();
        assert!(body.contains("Budget: Acme monthly") && body.contains("Severity: critical"), "{body}");
        let executed = mails.iter().find(|m| m.header("Subject").unwrap().contains("Plan executed")).unwrap();
        assert!(executed.body().contains("Scenarios:"), "{}", executed.body());

        // Deliveries recorded: the retried Slack notification took two attempts; the filtered channel's
        // outbox holds only its one event.
        let list = call_ok(&alice, "list_webhooks", json!({})).await;
        assert_no_secrets("list_webhooks", &list.to_string());
        let recent = |id: &Value| channel(&list, id)["recent"].as_array().unwrap().clone();
        let main_recent = recent(&s["id"]);
        assert_eq!(main_recent.len(), 3);
        assert!(main_recent.iter().all(|n| n["state"] == "delivered"), "{main_recent:#?}");
        let retried: Vec<_> = main_recent.iter().filter(|n| n["attempts"] == 2).collect();
        assert_eq!(retried.len(), 1, "{main_recent:#?}");
        let only_recent = recent(&filtered["id"]);
        assert_eq!(only_recent.len(), 1);
        assert_eq!(only_recent[0]["event_type"], "plan_executed");
        assert!(recent(&t["id"]).iter().all(|n| n["state"] == "delivered" && n["last_status"] == 202));
        let mail_recent = recent(&e["id"]);
        assert_eq!(mail_recent.len(), 2);
        assert!(mail_recent.iter().all(|n| n["state"] == "delivered" && n["last_status"] == 250), "{mail_recent:#?}");

        let store = open_store(&db.url).await;
        let attempts = count(&store, "notification_attempts", "").await;
        assert_eq!(attempts, 3 + 1 + 1 + 3 + 2, "slack 3 + one retry, filtered 1, teams 3, email 2");
        let errors: Vec<String> = sqlx::query("SELECT error FROM notification_attempts WHERE error IS NOT NULL")
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get("error").unwrap())
            .collect();
        store.close().await;
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("HTTP 503"), "{errors:?}");
        assert_no_secrets("attempt errors", &errors.join("\n"));

        let audit = audit_text(&db).await;
        assert_eq!(audit.matches("webhook_delivered").count(), 3 + 1 + 3 + 2, "{audit}");
        assert_no_secrets("the audit log", &audit);
        assert_no_secrets("evaluate's stderr", &logs);
        assert_no_secrets("the server's stderr", &server.logs());
        assert!(logs.contains("attempt"), "debug logs were on: {logs}");
        server.stop().await;
    }

    /// Implicit TLS (port 465 style), a refusal at the end of DATA retried and recorded, no AUTH.
    pub async fn email_over_implicit_tls(db: TestDb) {
        let today = utc_today();
        let fake = seeded_fake_at(today).await;
        let smtp = SmtpReceiver::start(true).await;
        let (server, alice) = session(&db, &fake).await;
        let e = call_ok(
            &alice,
            "add_webhook",
            json!({"kind": "email", "smtp": {"host": "localhost", "port": smtp.port, "tls": "tls",
                   "from": "budget@example.com", "to": ["ops@example.com"]}}),
        )
        .await;
        assert_eq!(e["url"], format!("smtps://localhost:{}/…", smtp.port));
        let budget = call_ok(&alice, "create_budget", org_budget(1)).await;
        let th = call_ok(
            &alice,
            "add_threshold",
            json!({"budget_id": budget["id"], "kind": "percent", "value": 50, "basis": "actual", "severity": "warning"}),
        )
        .await;
        call_ok(&alice, "add_threshold_action", json!({"threshold_id": th["id"], "kind": "notify"})).await;
        call_ok(&alice, "sync_usage", json!({})).await;
        smtp.refuse_next(&["451 4.3.0 try again later"]);
        evaluate(&db, &smtp.ca_pem, 2).await;
        let mails = smtp.mails();
        assert_eq!(mails.len(), 1, "{:?}", smtp.transcript());
        assert!(mails[0].encrypted && mails[0].auth.is_none());
        let list = call_ok(&alice, "list_webhooks", json!({})).await;
        let n = &channel(&list, &e["id"])["recent"][0];
        assert_eq!((n["state"].as_str(), n["attempts"].as_i64()), (Some("delivered"), Some(2)), "{n:#}");
        let store = open_store(&db.url).await;
        let first: Option<String> = sqlx::query("SELECT error FROM notification_attempts WHERE attempt = 1")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .try_get("error")
            .unwrap();
        let status: Option<i64> = sqlx::query("SELECT status FROM notification_attempts WHERE attempt = 1")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .try_get("status")
            .unwrap();
        store.close().await;
        assert_eq!(status, Some(451));
        assert!(first.unwrap().contains("try again later"));
        server.stop().await;
    }
}
