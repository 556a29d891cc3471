//! Budget status, chart, history, forecast and thresholds through the real binary (HTTP, rmcp client),
//! on usage synced from the fake Make, anchored to today's date (the server runs on the system clock).

use crate::support::*;
use base64::Engine as _;
use serde_json::{Value, json};

on_both_stores!(
    status_of_a_synced_budget,
    a_budget_without_usage_gets_a_clear_status,
    thresholds_are_managed_and_crossings_recorded_once
);

/// The window's days (this calendar month, up to today) among the fake's 30 days of usage.
fn month_so_far(today: jiff::civil::Date) -> Vec<usize> {
    usage_days_to(today).iter().enumerate().filter(|(_, d)| **d >= today.first_of_month()).map(|(i, _)| i).collect()
}

fn org_scenarios_spend(days: &[usize]) -> i64 {
    [501, 502, 503, 505].iter().map(|s| days.iter().map(|i| centicredits_on(*s, *i) as i64).sum::<i64>()).sum()
}

async fn session(db: &TestDb) -> (HttpServer, Client, crate::support::fake_make::FakeMake) {
    let fake = seeded_fake_at(utc_today()).await;
    let tenant = create_tenant(&db.url, "acme");
    let token = issue_token(&db.url, &tenant, "admin", "alice");
    let server = HttpServer::start(&db.url).await;
    let client = http_client(&server.mcp_url, &token, Lifecycle::Initialize).await;
    call_ok(&client, "connect_make", connect_args(&fake, &[ORG])).await;
    (server, client, fake)
}

fn monthly_budget(name: &str, limit: i64) -> Value {
    json!({"name": name, "unit": "credits", "limit": limit, "money": {"currency": "EUR", "price_per_1000_units_minor": 900},
           "period": {"kind": "monthly"}, "timezone": "UTC", "scope": {"organization_id": ORG}})
}

fn assert_finite_numbers(v: &Value, path: &str) {
    match v {
        Value::Number(n) => assert!(n.as_f64().is_some_and(f64::is_finite), "{path} is not finite"),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| assert_finite_numbers(x, &format!("{path}[{i}]"))),
        Value::Object(o) => o.iter().for_each(|(k, x)| assert_finite_numbers(x, &format!("{path}.{k}"))),
        _ => {}
    }
}

fn decode_png(bytes: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let reader = decoder.read_info().expect("a valid PNG");
    let info = reader.info();
    (info.width, info.height)
}

fn image_of(r: &rmcp::model::CallToolResult) -> Vec<u8> {
    let img = r.content.iter().find_map(|c| c.as_image()).expect("an image content block");
    assert_eq!(img.mime_type, "image/png");
    base64::engine::general_purpose::STANDARD.decode(&img.data).unwrap()
}

mod cases {
    use super::*;

    pub async fn status_of_a_synced_budget(db: TestDb) {
        let today = utc_today();
        let (_server, client, _fake) = session(&db).await;
        let days = month_so_far(today);
        let spent_centi = org_scenarios_spend(&days);
        // A limit of forty average days: the month will end well inside it.
        let daily = org_scenarios_spend(&(0..30).collect::<Vec<_>>()) / 30;
        let limit = daily * 40 / 100;
        let b = call_ok(&client, "create_budget", monthly_budget("Acme monthly", limit)).await;
        call_ok(&client, "sync_usage", json!({})).await;

        let r = call(&client, "get_budget_status", json!({"id": b["id"], "chart": true})).await;
        let s = ok_json(&r);
        assert_finite_numbers(&s, "status");
        assert_eq!(s["spent_centi"], spent_centi, "this month's days of the organization's usage");
        assert_eq!(s["spent"], spent_centi / 100);
        assert_eq!(s["limit"], limit);
        assert_eq!(s["window"]["first_day"], today.first_of_month().to_string());
        assert_eq!(s["window"]["last_day"], today.last_of_month().to_string());
        assert_eq!(s["window"]["days_elapsed"], today.day() as i64);
        assert_eq!(s["data"]["stale"], false, "{}", s["data"]);
        assert_eq!(s["data"]["days_with_data"], days.len());
        assert_eq!(s["money"]["spent_minor"], (spent_centi * 900 + 50_000) / 100_000);
        let f = &s["forecast"];
        assert!(f["period_end_total"].as_i64().unwrap() >= s["spent"].as_i64().unwrap());
        for band in ["interval_80", "interval_95"] {
            assert!(f[band]["lower"].as_i64() <= f["period_end_total"].as_i64(), "{band}: {f}");
            assert!(f[band]["upper"].as_i64() >= f["period_end_total"].as_i64(), "{band}: {f}");
        }
        assert!(f["interval_95"]["upper"].as_i64() >= f["interval_80"]["upper"].as_i64());
        let p = f["probability_over_limit"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
        assert_eq!(f["based_on_days"], 29, "30 synced days, today excluded: {f}");
        let top = s["top_scenarios"].as_array().unwrap();
        let expected_top = [501, 502, 503, 505]
            .into_iter()
            .max_by_key(|sc| days.iter().map(|i| centicredits_on(*sc, *i)).sum::<u64>())
            .unwrap();
        assert_eq!(top[0]["scenario_id"], expected_top);
        let png = image_of(&r);
        assert_eq!(decode_png(&png), (1000, 560));

        let r = call(&client, "get_budget_chart", json!({"id": b["id"], "width": 800, "height": 400})).await;
        let info = ok_json(&r);
        assert_eq!((info["width"].as_i64(), info["height"].as_i64()), (Some(800), Some(400)));
        assert!(info["summary"].as_str().unwrap().starts_with("Acme monthly:"), "{info}");
        assert_eq!(decode_png(&image_of(&r)), (800, 400));
        let e = call_err(&client, "get_budget_chart", json!({"id": b["id"], "width": 10})).await;
        assert!(e.contains("`width`"), "{e}");

        let h = call_ok(&client, "get_budget_history", json!({"id": b["id"]})).await;
        assert_eq!(h["from"], today.first_of_month().to_string());
        assert_eq!(h["total_centi"], spent_centi);
        assert_eq!(h["days_without_data"], 0);
        let h =
            call_ok(&client, "get_budget_history", json!({"id": b["id"], "from": "2020-01-01", "to": "2020-01-03"}))
                .await;
        assert_eq!((h["days"].as_array().unwrap().len(), h["days_without_data"].as_i64()), (3, Some(3)));
        let e =
            call_err(&client, "get_budget_history", json!({"id": b["id"], "from": "2020-01-01", "to": "2026-01-03"}))
                .await;
        assert!(e.contains("invalid argument `from`: the range may span at most 400 days"), "{e}");

        let fc = call_ok(&client, "forecast_spend", json!({"id": b["id"], "horizon_days": 14})).await;
        assert_finite_numbers(&fc, "forecast");
        assert_eq!(fc["days"].as_array().unwrap().len(), 14);
        assert_eq!(fc["days"][0]["day"], today.to_string());
        assert_eq!(fc["days_of_data"], 29);
        assert_ne!(fc["method"], "no_data");
        assert!(!fc["candidates"].as_array().unwrap().is_empty(), "{fc}");
        for bad in [0, 91] {
            let e = call_err(&client, "forecast_spend", json!({"id": b["id"], "horizon_days": bad})).await;
            assert!(e.contains("`horizon_days`"), "{e}");
        }

        // The CLI writes the same picture.
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("chart.png");
        let id = b["id"].as_str().unwrap();
        cli_ok(&db.url, &["budget", "chart", id, "-o", file.to_str().unwrap(), "--width", "640", "--height", "360"]);
        assert_eq!(decode_png(&std::fs::read(&file).unwrap()), (640, 360));
    }

    pub async fn a_budget_without_usage_gets_a_clear_status(db: TestDb) {
        let (_server, client, _fake) = session(&db).await;
        // Before any sync, and for an organization that is not connected at all.
        for (name, org) in [("Not synced yet", ORG), ("Elsewhere", 4242)] {
            let mut args = monthly_budget(name, 1000);
            args["scope"]["organization_id"] = org.into();
            let b = call_ok(&client, "create_budget", args).await;
            let s = call_ok(&client, "get_budget_status", json!({"id": b["id"]})).await;
            assert_finite_numbers(&s, name);
            assert_eq!((s["spent"].as_i64(), s["percent_used"].as_f64()), (Some(0), Some(0.0)), "{name}");
            assert_eq!(s["forecast"]["method"], "no_data");
            assert_eq!(s["forecast"]["period_end_total"], 0);
            assert_eq!(s["forecast"]["probability_over_limit"], 0.0);
            assert_eq!(s["data"]["stale"], true);
            let msg = s["data"]["message"].as_str().unwrap();
            let expected = if org == ORG { "never been synced" } else { "is not connected" };
            assert!(msg.contains(expected), "{name}: {msg}");
            assert!(s["forecast"]["note"].as_str().unwrap().contains("no usage data"), "{}", s["forecast"]);
            // The chart of an empty budget still renders.
            let r = call(&client, "get_budget_chart", json!({"id": b["id"]})).await;
            assert_eq!(decode_png(&image_of(&r)), (1000, 560));
        }
        // A billing-cycle budget on an organization without plan facts says what is missing.
        let mut args = monthly_budget("Cycle", 1000);
        args["period"] = json!({"kind": "billing_cycle"});
        args["scope"]["organization_id"] = 4242.into();
        let b = call_ok(&client, "create_budget", args).await;
        let e = call_err(&client, "get_budget_status", json!({"id": b["id"]})).await;
        assert!(
            e.starts_with("unavailable: a billing_cycle budget needs its Make organization's billing period"),
            "{e}"
        );
        // With the organization synced, the billing cycle comes from Make's reset dates.
        let mut args = monthly_budget("Cycle synced", 1000);
        args["period"] = json!({"kind": "billing_cycle"});
        let b = call_ok(&client, "create_budget", args).await;
        call_ok(&client, "sync_usage", json!({})).await;
        let s = call_ok(&client, "get_budget_status", json!({"id": b["id"]})).await;
        assert_eq!(s["window"]["first_day"], utc_today().first_of_month().to_string());
    }

    pub async fn thresholds_are_managed_and_crossings_recorded_once(db: TestDb) {
        let (_server, client, _fake) = session(&db).await;
        let b = call_ok(&client, "create_budget", monthly_budget("Watched", 1_000_000)).await;
        let id = b["id"].clone();
        // 1 % of a million credits is crossed by any month's usage; 150 % of the forecast is not.
        let low = call_ok(
            &client,
            "add_threshold",
            json!({"budget_id": id, "kind": "absolute", "value": 1, "basis": "actual",
                                                          "severity": "warning", "label": "any spend"}),
        )
        .await;
        let high = call_ok(
            &client,
            "add_threshold",
            json!({"budget_id": id, "kind": "percent", "value": 150,
                                                           "basis": "forecast", "severity": "critical"}),
        )
        .await;
        assert_eq!((low["version"].as_i64(), low["cooldown_minutes"].as_i64()), (Some(1), Some(60)));
        for (args, field) in [
            (
                json!({"budget_id": id, "kind": "percent", "value": 201, "basis": "actual", "severity": "info"}),
                "`value`",
            ),
            (
                json!({"budget_id": id, "kind": "percent", "value": 50, "basis": "actual", "severity": "dire"}),
                "`severity`",
            ),
            (
                json!({"budget_id": id, "kind": "percent", "value": 50, "basis": "actual", "severity": "info", "cooldown_minutes": -5}),
                "`cooldown_minutes`",
            ),
            (
                json!({"budget_id": "00000000-0000-7000-8000-000000000000", "kind": "percent", "value": 50, "basis": "actual", "severity": "info"}),
                "not_found",
            ),
        ] {
            let e = call_err(&client, "add_threshold", args).await;
            assert!(e.contains(field), "{e}");
        }
        let listed = call_ok(&client, "list_thresholds", json!({"budget_id": id})).await;
        assert_eq!(listed["thresholds"].as_array().unwrap().len(), 2);

        let first = call_ok(&client, "sync_usage", json!({})).await;
        let crossings = first["threshold_crossings"].as_array().unwrap();
        assert_eq!(crossings.len(), 1, "{first}");
        assert_eq!(
            (crossings[0]["threshold_id"].as_str(), crossings[0]["severity"].as_str()),
            (low["id"].as_str(), Some("warning"))
        );
        let again = call_ok(&client, "sync_usage", json!({})).await;
        assert_eq!(again["threshold_crossings"], json!([]), "recorded once per period");

        let s = call_ok(&client, "get_budget_status", json!({"id": id})).await;
        let t: Vec<&Value> = s["thresholds"].as_array().unwrap().iter().collect();
        let low_status = t.iter().find(|x| x["id"] == low["id"]).unwrap();
        assert_eq!(
            (low_status["crossed"].as_bool(), low_status["crossings_this_period"].as_i64()),
            (Some(true), Some(1))
        );
        assert!(low_status["first_crossed_at"].is_string());
        let high_status = t.iter().find(|x| x["id"] == high["id"]).unwrap();
        assert_eq!((high_status["crossed"].as_bool(), high_status["first_crossed_at"].is_null()), (Some(false), true));

        let updated = call_ok(
            &client,
            "update_threshold",
            json!({"id": high["id"], "version": 1, "kind": "absolute", "value": 1, "label": "any forecast"}),
        )
        .await;
        assert_eq!(
            (updated["version"].as_i64(), updated["kind"].as_str(), updated["value"].as_i64()),
            (Some(2), Some("absolute"), Some(1))
        );
        let stale = call_err(&client, "update_threshold", json!({"id": high["id"], "version": 1, "value": 2})).await;
        assert!(stale.starts_with("conflict:"), "{stale}");
        let nothing = call_err(&client, "update_threshold", json!({"id": high["id"], "version": 2})).await;
        assert!(nothing.contains("nothing to update"), "{nothing}");
        let third = call_ok(&client, "sync_usage", json!({})).await;
        assert_eq!(third["threshold_crossings"][0]["threshold_id"], high["id"], "now crossed on the forecast");

        call_ok(&client, "remove_threshold", json!({"id": low["id"]})).await;
        let e = call_err(&client, "remove_threshold", json!({"id": low["id"]})).await;
        assert!(e.starts_with("not_found"), "{e}");
        // Deleting the budget removes its thresholds; their crossings stay as history.
        call_ok(&client, "delete_budget", json!({"id": id})).await;
        let store = open_store(&db.url).await;
        assert_eq!(count(&store, "thresholds", "").await, 0);
        assert_eq!(count(&store, "threshold_events", "").await, 2);
        assert_eq!(count(&store, "audit_log", "action = 'threshold_crossed'").await, 2);
        assert_eq!(
            count(&store, "audit_log", "action IN ('add_threshold', 'update_threshold', 'remove_threshold')").await,
            4
        );
        assert!(store.verify_audit(None).await.unwrap().is_valid());
        store.close().await;
    }
}
