//! The README's first command (`cargo run --example demo`) must keep working: run the demo against the
//! binary under test and check it reaches every step.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_readme_demo_runs_end_to_end() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_make-budget-mcp"));
    let demo = bin.parent().unwrap().join("examples").join(format!("demo{}", std::env::consts::EXE_SUFFIX));
    // `cargo test` builds examples; when a single test file is run, build it here (a no-op when fresh).
    let built = Command::new(env!("CARGO")).args(["build", "--quiet", "--example", "demo"]).status().unwrap();
    assert!(built.success() && demo.exists(), "cannot build the demo at {}", demo.display());

    let out = Command::new(&demo).env("MBM_DEMO_SERVER_BIN", &bin).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for expected in [
        "SIMULATED Make API (a fake, for this demo only)",
        "39 tools: ",
        "preview_action (dry run): the highest-consuming active non-critical scenario in scope",
        "the crossing created pause plan ",
        "(awaiting_approval), requested by ",
        "permission_denied: `",
        "olga (operator, tenant local) approve_action: plan executed; scenario 501",
        "stopped -> simulated Make reports active = false",
        "olga reverse_action: plan reversed; scenario 501 resumed -> active = true",
        "connect_make: organization 1054 \"Acme Marketing\", plan allowance 40000 per period, API limit 240/min",
        "sync_usage: 2 teams, 6 scenarios (5 active)",
        "501 Lead enrichment (AI)     team 16  active ",
        "506 Old CRM import           team 17  inactive       0.00 credits in 30 days",
        "update_budget (version 1 -> limit 25000): {\"limit\":25000,\"version\":2}",
        "add_threshold: 50 % of the limit on actual spend (warning), 100 % on the forecast (critical)",
        "sync_usage recorded a crossing: warning threshold on actual spend",
        "get_budget_status: ",
        "data: usage is up to date",
        "make-budget-mcp-demo-chart.png",
        "pause_scenarios [501]: \"changed\" -> simulated Make now reports scenario 501 active = false",
        "resume_scenarios [501]: \"changed\" -> active = true",
        "warning: Make runs scenario 501 (scheduled every 15 min) immediately",
        "conflict: budget",
        "invalid_argument: invalid argument `timezone`",
        "a request without a token: HTTP 401",
        "victor (viewer) list_budgets: sees 1 budget(s)",
        "permission_denied: this call needs permission `budget:delete`",
        "ok      tenant \"acme\"",
        "ok      tenant \"local\"",
        "audit export --tenant local: ",
        "records verified, head hash",
        "(exit 1):",
        ": hash mismatch: the record's contents do not match its stored hash",
    ] {
        assert!(stdout.contains(expected), "demo output lacks {expected:?}:\n{stdout}");
    }
    let chart = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("chart: "))
        .and_then(|l| l.split(" (").next())
        .expect("the demo names its chart file");
    let png = std::fs::read(chart).expect("the chart file exists");
    let reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().expect("the chart is a PNG");
    assert_eq!((reader.info().width, reader.info().height), (1000, 560));
    let zero_active = stdout.lines().filter(|l| l.contains("  active ") && l.contains(" 0.00 credits")).count();
    assert_eq!(zero_active, 0, "every active scenario shows its usage:\n{stdout}");
}
