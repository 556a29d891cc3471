//! DEMO — a guided walkthrough of make-budget-mcp on the embedded SQLite store, with nothing to install
//! and no Make account: Make.com is played by a SIMULATED Make API (tests/support/fake_make.rs) on
//! loopback, seeded with one organization, two teams and six scenarios with 30 days of usage.
//!
//! Run it with `cargo run --example demo`. It builds the server binary, then:
//!   1. starts `make-budget-mcp serve` over stdio, exactly as Claude Desktop would, and acts as its MCP
//!      client: connects the (simulated) Make organization, syncs usage, lists scenarios with their
//!      credits, creates a budget over a team with two thresholds, syncs again (crossings are recorded),
//!      shows the budget's status with its forecast and writes its chart to a PNG, pauses and resumes a
//!      scenario (the simulated Make's state changes), and shows a refused stale update and a refused bad
//!      argument;
//!   2. creates a tenant and API tokens with the CLI, serves streamable HTTP, and calls tools as two
//!      principals with different roles (a denied call included), plus a request with no token;
//!   3. exports the tamper-evident audit chain with a signed checkpoint, verifies it in the database and
//!      offline from the file with only the public key, and shows a tampered copy being caught.
//!
//! Everything happens in a temporary directory that is removed at the end; only the chart PNG is left in
//! the system's temporary directory, for you to open. Set `MBM_DEMO_SERVER_BIN`
//! to use an already built server binary instead of building one.

#[path = "../tests/support/fake_make.rs"]
mod fake_make;

/// The simulated Make listens on loopback, which the server refuses to call unless this is on (the
/// setting is for local development and tests; see docs/outbound.md). The server logs a warning about it.
const ALLOW_LOOPBACK: &str = "MBM_OUTBOUND_ALLOW_LOOPBACK";

use std::path::PathBuf;
use std::process::{Command, Stdio};

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

type Client = RunningService<RoleClient, ()>;

/// The simulated Make organization's token (a made-up UUID, as Make API tokens are).
const MAKE_TOKEN: &str = "9d3f2b1c-7a6e-4c5d-8b9a-0f1e2d3c4b5a";
const ORG: i64 = 1054;

/// Seed the SIMULATED Make: one organization, two teams, six scenarios, 30 days of usage.
async fn simulated_make() -> fake_make::FakeMake {
    use fake_make::{AuthKind, FakeMake, OrgSpec, ScenarioSpec};
    let fake = FakeMake::start().await;
    // The simulated Make lives in the present: today's date, and a monthly billing cycle that began 23 days
    // ago (Make's cycles start on the subscription's day, not on the 1st). A cycle of this month would
    // hold a single day on the 1st, and the demo's crossing would not happen then.
    let today = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
    let cycle_start = today.checked_sub(jiff::Span::new().days(23)).unwrap();
    let utc = |d: jiff::civil::Date| d.to_zoned_datetime(jiff::tz::TimeZone::UTC).unwrap().timestamp();
    fake.set_today(today);
    fake.add_token(MAKE_TOKEN, AuthKind::Token, &[ORG]);
    fake.add_organization(OrgSpec {
        api_limit: 240,
        allowance: 40_000,
        last_reset: utc(cycle_start),
        next_reset: Some(utc(cycle_start.checked_add(jiff::Span::new().months(1)).unwrap())),
        zone: String::new(), // the simulator's own host, the zone the demo connects to
        ..OrgSpec::new(ORG, "Acme Marketing")
    });
    fake.add_team(ORG, 16, "Campaigns");
    fake.add_team(ORG, 17, "Operations");
    struct Seed {
        id: i64,
        team: i64,
        name: &'static str,
        active: bool,
        interval_secs: Option<u64>,
        /// Centicredits on a weekday near the end of the month.
        per_day: u64,
    }
    let seed = |id, team, name, active, interval_secs, per_day| Seed { id, team, name, active, interval_secs, per_day };
    let scenarios = [
        seed(501, 16, "Lead enrichment (AI)", true, Some(900), 42_000),
        seed(502, 16, "Newsletter sync", true, Some(3_600), 6_000),
        seed(503, 16, "Social listening", true, Some(900), 15_000),
        seed(504, 17, "Order webhook", true, None, 9_000),
        seed(505, 17, "Invoice export", true, Some(86_400), 1_200),
        seed(506, 17, "Old CRM import", false, Some(3_600), 0),
    ];
    for Seed { id, team, name, active, interval_secs: interval, per_day } in scenarios {
        fake.add_scenario(ScenarioSpec {
            is_active: active,
            interval_secs: interval,
            ..ScenarioSpec::new(id, ORG, team, name)
        });
        for back in 0..30i64 {
            let day = today.checked_sub(jiff::Span::new().days(back)).unwrap();
            // Usage grows towards today (a busy month), with a weekly dip.
            let weekend = matches!(day.weekday(), jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday);
            let cc = per_day * (130 - back as u64) / 100 * if weekend { 6 } else { 10 } / 10;
            if cc > 0 {
                fake.set_usage(id, day, cc, cc / 100);
            }
        }
    }
    fake
}
type Error = Box<dyn std::error::Error + Send + Sync>;

fn step(title: &str) {
    println!("\n== {title}");
}

fn show(label: &str, v: &Value) {
    println!("   {label}: {v}");
}

/// The server binary: the one named by MBM_DEMO_SERVER_BIN, or a build next to this example. It is built
/// together with this example (`--example demo`), so that Cargo resolves the same features as for
/// `cargo run --example demo` and reuses every crate it just compiled: only the binary's own `main.rs` is
/// compiled and linked, instead of the whole tree a second time with the features of a plain build.
fn server_binary() -> Result<PathBuf, Error> {
    if let Ok(bin) = std::env::var("MBM_DEMO_SERVER_BIN") {
        return Ok(bin.into());
    }
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().and_then(|examples| examples.parent()).ok_or("unexpected example location")?;
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "--locked", "--bin", "make-budget-mcp", "--example", "demo"]);
    if release {
        build.arg("--release");
    }
    if !build.status()?.success() {
        return Err("building make-budget-mcp failed".into());
    }
    Ok(profile_dir.join("make-budget-mcp"))
}

async fn call(client: &Client, tool: &str, args: Value) -> Result<CallToolResult, Error> {
    let args = args.as_object().cloned().unwrap_or_default();
    Ok(client.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args)).await?)
}

async fn ok(client: &Client, tool: &str, args: Value) -> Result<Value, Error> {
    let r = call(client, tool, args).await?;
    match (r.is_error, r.structured_content) {
        (Some(true), _) | (_, None) => Err(format!("{tool} failed: {:?}", r.content).into()),
        (_, Some(v)) => Ok(v),
    }
}

async fn refused(client: &Client, tool: &str, args: Value) -> Result<String, Error> {
    let r = call(client, tool, args).await?;
    if r.is_error != Some(true) {
        return Err(format!("{tool} was expected to be refused").into());
    }
    Ok(r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join(" "))
}

fn cli(bin: &PathBuf, db: &str, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(bin).args(args).env("MBM_DATABASE_URL", db).env("MBM_CONFIG", "/dev/null").output()?;
    if !out.status.success() {
        return Err(format!("make-budget-mcp {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Run a command that needs no database; returns its exit code and stdout whatever they are.
fn cli_status(bin: &PathBuf, args: &[&str]) -> Result<(i32, String), Error> {
    let out = Command::new(bin).args(args).env("MBM_CONFIG", "/dev/null").output()?;
    Ok((out.status.code().unwrap_or(-1), String::from_utf8(out.stdout)?.trim().to_owned()))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    println!("make-budget-mcp demo: budgets over MCP on the embedded SQLite store (no server to install)");
    let bin = server_binary()?;
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite://{}", dir.path().join("demo.sqlite3").display());
    println!("   server binary: {}\n   database: {db}", bin.display());

    let make = simulated_make().await;
    println!("   SIMULATED Make API (a fake, for this demo only): {}", make.base_url());

    step("1. Claude Desktop's view: the server over stdio, the local operator as principal");
    let (db_c, bin_c) = (db.clone(), bin.clone());
    let transport = TokioChildProcess::builder(tokio::process::Command::new(&bin_c).configure(move |c| {
        // Every toolset: the demo walks through all of them (the default serves budgets, status,
        // thresholds and make; see the README's "Toolsets").
        c.args(["serve", "--toolsets", "all"])
            .env("MBM_DATABASE_URL", &db_c)
            .env("MBM_CONFIG", "/dev/null")
            .env("MBM_LOG", "warn")
            .env(ALLOW_LOOPBACK, "true");
    }))
    .stderr(Stdio::null())
    .spawn()?
    .0;
    let client = ().serve(transport).await?;
    let tools = client.list_all_tools().await?;
    println!("   {} tools: {}", tools.len(), tools.iter().map(|t| t.name.to_string()).collect::<Vec<_>>().join(", "));
    let me = ok(&client, "whoami", json!({})).await?;
    show("whoami", &json!({"tenant": me["tenant_name"], "subject": me["subject"], "role": me["role"]}));

    let conn = ok(
        &client,
        "connect_make",
        json!({"zone": make.base_url(), "auth_kind": "api_token", "token": MAKE_TOKEN,
               "organization_ids": [ORG], "label": "Acme (simulated)"}),
    )
    .await?;
    let org = &conn["organizations"][0];
    println!(
        "   connect_make: organization {} \"{}\", plan allowance {} per period, API limit {}/min, period {} .. {}",
        org["organization_id"],
        org["name"].as_str().unwrap_or(""),
        org["allowance"],
        org["api_limit"],
        org["last_reset"].as_str().unwrap_or("?"),
        org["next_reset"].as_str().unwrap_or("?")
    );
    println!(
        "   (the token is stored encrypted with AES-256-GCM under master.key beside the database; it is never shown again)"
    );
    let synced = ok(&client, "sync_usage", json!({})).await?;
    let o = &synced["organizations"][0];
    println!(
        "   sync_usage: {} teams, {} scenarios ({} active), {} daily usage rows stored, {:.2} credits used this period",
        o["teams"],
        o["scenarios"],
        o["active_scenarios"],
        o["usage_days"],
        o["period_centicredits"].as_i64().unwrap_or(0) as f64 / 100.0
    );
    let listed = ok(&client, "list_scenarios", json!({"organization_id": ORG})).await?;
    println!("   list_scenarios:");
    for sc in listed["scenarios"].as_array().cloned().unwrap_or_default() {
        let usage = ok(&client, "get_scenario_usage", json!({"scenario_id": sc["scenario_id"]})).await?;
        println!(
            "     {} {:<24} team {}  {:<8}  {:>9.2} credits in 30 days",
            sc["scenario_id"],
            sc["name"].as_str().unwrap_or(""),
            sc["team_id"],
            if sc["is_active"] == true { "active" } else { "inactive" },
            usage["total_centicredits"].as_i64().unwrap_or(0) as f64 / 100.0
        );
    }

    let budget = ok(
        &client,
        "create_budget",
        json!({
            "name": "Campaigns team",
            "description": "All scenarios of the Campaigns team",
            "unit": "credits", "limit": 20000,
            "money": {"currency": "EUR", "price_per_1000_units_minor": 900},
            "period": {"kind": "billing_cycle"}, "timezone": "UTC",
            "scope": {"organization_id": ORG, "team_ids": [16]}
        }),
    )
    .await?;
    let id = budget["id"].as_str().ok_or("no id")?.to_owned();
    show(
        "create_budget",
        &json!({"id": id, "name": budget["name"], "limit": budget["limit"], "version": budget["version"]}),
    );
    let v2 = ok(&client, "update_budget", json!({"id": id, "version": 1, "limit": 25000})).await?;
    show("update_budget (version 1 -> limit 25000)", &json!({"limit": v2["limit"], "version": v2["version"]}));
    println!(
        "   update_budget with the stale version 1 is refused:\n     {}",
        refused(&client, "update_budget", json!({"id": id, "version": 1, "limit": 1})).await?
    );
    println!(
        "   create_budget with a bad time zone is refused and writes nothing:\n     {}",
        refused(
            &client,
            "create_budget",
            json!({"name": "x", "unit": "credits", "limit": 5, "period": {"kind": "daily"},
                   "timezone": "Mars/Olympus", "scope": {"organization_id": 1}})
        )
        .await?
    );

    // Thresholds, then a sync: crossings are recorded (once per period) and audited.
    let mut threshold_ids = Vec::new();
    for (kind, value, basis, severity) in
        [("percent", 50, "actual", "warning"), ("percent", 100, "forecast", "critical")]
    {
        let t = ok(
            &client,
            "add_threshold",
            json!({"budget_id": id, "kind": kind, "value": value, "basis": basis, "severity": severity}),
        )
        .await?;
        threshold_ids.push(t["id"].clone());
    }
    println!("   add_threshold: 50 % of the limit on actual spend (warning), 100 % on the forecast (critical)");
    ok(
        &client,
        "add_threshold_action",
        json!({"threshold_id": threshold_ids[0], "kind": "pause_scenarios",
               "selector": {"kind": "top_n", "top_n": 1}, "mode": "requires_approval"}),
    )
    .await?;
    let preview =
        ok(&client, "preview_action", json!({"budget_id": id, "selector": {"kind": "top_n", "top_n": 1}})).await?;
    println!(
        "   add_threshold_action: at 50 %, pause the top consumer after approval; preview_action (dry run): {}",
        preview["why"].as_str().unwrap_or("")
    );
    let synced = ok(&client, "sync_usage", json!({})).await?;
    for c in synced["threshold_crossings"].as_array().cloned().unwrap_or_default() {
        println!(
            "   sync_usage recorded a crossing: {} threshold on {} spend, {} >= {} credits",
            c["severity"].as_str().unwrap_or(""),
            c["basis"].as_str().unwrap_or(""),
            c["value"],
            c["amount"]
        );
    }
    let plans = ok(&client, "list_actions", json!({"state": "awaiting_approval"})).await?;
    let plan_id = plans["plans"][0]["id"].clone();
    println!(
        "   the crossing created pause plan {} ({}), requested by {}: it needs another principal's approval",
        plan_id.as_str().unwrap_or("-"),
        plans["plans"][0]["state"].as_str().unwrap_or("-"),
        plans["plans"][0]["requested_by"].as_str().unwrap_or("-")
    );
    println!(
        "   approve_action by the requester itself is refused:\n     {}",
        refused(&client, "approve_action", json!({"plan_id": plan_id})).await?
    );
    let status = call(&client, "get_budget_status", json!({"id": id, "chart": true})).await?;
    let s = status.structured_content.clone().ok_or("no status")?;
    let f = &s["forecast"];
    println!(
        "   get_budget_status: {} of {} credits spent ({} %), day {} of {}, {} credits/day\n     forecast {} credits by {} (80 %: {}–{}, 95 %: {}–{}), P(over limit) = {}\n     method {}: {}\n     top scenario: {} ({} credits); data: {}",
        s["spent"],
        s["limit"],
        s["percent_used"],
        s["window"]["days_elapsed"],
        s["window"]["days_total"],
        s["daily_run_rate"],
        f["period_end_total"],
        s["window"]["last_day"].as_str().unwrap_or(""),
        f["interval_80"]["lower"],
        f["interval_80"]["upper"],
        f["interval_95"]["lower"],
        f["interval_95"]["upper"],
        f["probability_over_limit"],
        f["method"].as_str().unwrap_or(""),
        f["note"].as_str().unwrap_or(""),
        s["top_scenarios"][0]["name"].as_str().unwrap_or("-"),
        s["top_scenarios"][0]["spent"],
        s["data"]["message"].as_str().unwrap_or("")
    );
    let chart_path = std::env::temp_dir().join("make-budget-mcp-demo-chart.png");
    if let Some(img) = status.content.iter().find_map(|c| c.as_image()) {
        use base64::Engine as _;
        std::fs::write(&chart_path, base64::engine::general_purpose::STANDARD.decode(&img.data)?)?;
        println!("   chart: {} (open it to see spend, forecast bands, limit and thresholds)", chart_path.display());
    }

    let paused = ok(
        &client,
        "pause_scenarios",
        json!({"scenario_ids": [501], "reason": "demo: AI enrichment is eating the budget"}),
    )
    .await?;
    println!(
        "   pause_scenarios [501]: {} -> simulated Make now reports scenario 501 active = {:?}",
        paused["results"][0]["outcome"],
        make.scenario_active(501).unwrap_or(true)
    );
    let resumed = ok(&client, "resume_scenarios", json!({"scenario_ids": [501], "reason": "demo: new period"})).await?;
    println!(
        "   resume_scenarios [501]: {} -> active = {:?}\n     warning: {}",
        resumed["results"][0]["outcome"],
        make.scenario_active(501).unwrap_or(false),
        resumed["results"][0]["warning"].as_str().unwrap_or("-")
    );
    client.cancel().await?;

    step("2. A team deployment's view: tenants and tokens from the CLI, MCP over streamable HTTP");
    let tenant = cli(&bin, &db, &["tenant", "create", "acme"])?;
    println!("   tenant create acme -> {tenant}");
    let manager = cli(&bin, &db, &["token", "issue", "--tenant", "acme", "--role", "manager", "--subject", "maria"])?;
    let viewer = cli(&bin, &db, &["token", "issue", "--tenant", "acme", "--role", "viewer", "--subject", "victor"])?;
    let operator = cli(&bin, &db, &["token", "issue", "--tenant", "local", "--role", "operator", "--subject", "olga"])?;
    println!(
        "   token issue: a manager token for maria and a viewer token for victor in acme, an operator token for olga \
         in local (shown once, stored hashed)"
    );
    let mut server = tokio::process::Command::new(&bin)
        .args(["serve", "--transport", "http", "--listen", "127.0.0.1:0", "--toolsets", "all"])
        .env("MBM_DATABASE_URL", &db)
        .env("MBM_CONFIG", "/dev/null")
        .env("MBM_LOG", "warn")
        .env(ALLOW_LOOPBACK, "true")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(server.stderr.take().ok_or("no stderr")?).lines();
    let url = loop {
        let line = lines.next_line().await?.ok_or("server exited")?;
        if let Some(url) = line.strip_prefix("make-budget-mcp listening on ") {
            break url.to_owned();
        }
    };
    println!("   serving {url}");
    let status = reqwest::Client::new().post(&url).body("{}").send().await?.status();
    println!("   a request without a token: HTTP {status}");

    let connect = |token: String| {
        let url = url.clone();
        async move {
            let t = StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(url).auth_header(token),
            );
            ().serve(t).await
        }
    };
    let maria = connect(manager).await?;
    let b = ok(
        &maria,
        "create_budget",
        json!({"name": "Ops weekly", "unit": "operations", "limit": 25000, "period": {"kind": "weekly"},
               "scope": {"organization_id": 2001}}),
    )
    .await?;
    show("maria (manager) create_budget", &json!({"id": b["id"], "name": b["name"], "created_by": b["created_by"]}));
    let victor = connect(viewer).await?;
    let seen = ok(&victor, "list_budgets", json!({})).await?;
    println!(
        "   victor (viewer) list_budgets: sees {} budget(s) of tenant acme only",
        seen["budgets"].as_array().map_or(0, Vec::len)
    );
    println!(
        "   victor (viewer) delete_budget is refused and audited:\n     {}",
        refused(&victor, "delete_budget", json!({"id": b["id"]})).await?
    );
    let olga = connect(operator).await?;
    let done = ok(&olga, "approve_action", json!({"plan_id": plan_id, "reason": "demo: agreed"})).await?;
    let item = &done["items"][0];
    println!(
        "   olga (operator, tenant local) approve_action: plan {}; scenario {} \"{}\" {} -> simulated Make reports active = {:?}",
        done["state"].as_str().unwrap_or("-"),
        item["scenario_id"],
        item["name"].as_str().unwrap_or(""),
        item["status"].as_str().unwrap_or("-"),
        make.scenario_active(item["scenario_id"].as_i64().unwrap_or(0)).unwrap_or(true)
    );
    let back = ok(&olga, "reverse_action", json!({"plan_id": plan_id, "reason": "demo: limit raised"})).await?;
    println!(
        "   olga reverse_action: plan {}; scenario {} {} -> active = {:?}",
        back["state"].as_str().unwrap_or("-"),
        back["items"][0]["scenario_id"],
        back["items"][0]["status"].as_str().unwrap_or("-"),
        make.scenario_active(back["items"][0]["scenario_id"].as_i64().unwrap_or(0)).unwrap_or(false)
    );
    maria.cancel().await?;
    victor.cancel().await?;
    olga.cancel().await?;
    server.kill().await?;

    step("3. The tamper-evident audit log");
    let indent = |text: String| text.lines().map(|l| format!("   {l}")).collect::<Vec<_>>().join("\n");
    let export = dir.path().join("local-audit.jsonl");
    cli(&bin, &db, &["audit", "export", "--tenant", "local", "--output", &export.display().to_string()])?;
    let records = std::fs::read_to_string(&export)?.lines().filter(|l| l.contains("\"type\":\"record\"")).count();
    println!("   audit export --tenant local: {records} records and a signed checkpoint of the head (Ed25519)");
    println!("{}", indent(cli(&bin, &db, &["audit", "verify"])?));
    let public_key = cli(&bin, &db, &["audit", "public-key"])?;
    println!("   audit public-key: {public_key}");
    let (_, verdict) =
        cli_status(&bin, &["audit", "verify-file", &export.display().to_string(), "--public-key", &public_key])?;
    println!("   audit verify-file (no database, only the export and the public key):\n{}", indent(verdict));
    // Tamper with a copy the way someone with the file would: change who did something.
    let tampered = dir.path().join("tampered.jsonl");
    let text = std::fs::read_to_string(&export)?.replacen("\"subject\":\"olga\"", "\"subject\":\"mallory\"", 1);
    std::fs::write(&tampered, text)?;
    let (code, verdict) =
        cli_status(&bin, &["audit", "verify-file", &tampered.display().to_string(), "--public-key", &public_key])?;
    println!("   the same export with olga's name replaced by mallory's (exit {code}):\n{}", indent(verdict));
    println!("\nDone. Every mutation above, and the refused delete, is a record in a per-tenant SHA-256 hash chain.");
    make.shutdown();
    Ok(())
}
