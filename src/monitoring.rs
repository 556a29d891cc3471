//! Prometheus metrics, served at `/metrics` over HTTP.
//!
//! Code records through the `metrics` facade (cheap no-ops until [`install`] sets the recorder, as in
//! unit tests and CLI commands). Labels are tool names, classes and outcomes only: never tenant ids,
//! subjects or anything a tool was given, so the endpoint reveals no tenant's data.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `mbm_tool_calls_total` | counter | `tool`, `outcome` (ok, error, denied, rate_limited) |
//! | `mbm_tool_call_duration_seconds` | histogram | `tool` |
//! | `mbm_rate_limited_total` | counter | `class` (read, modification, automated_action, failed_auth) |
//! | `mbm_auth_failures_total` | counter | – |
//! | `mbm_make_api_requests_total` | counter | `outcome` (ok, client_error, rate_limited, server_error, timeout, transport) |
//! | `mbm_make_api_calls_total` | counter | `class` (organization, teams, scenarios, consumptions, team_usage, organization_usage, scenario_usage, scenario, scenario_control, timezones, authorization) |
//! | `mbm_make_sync_calls` | histogram | `kind` (core, backfill, reconcile): Make API calls one organization's sync used |
//! | `mbm_make_sync_budget_ratio` | histogram | – (calls a sync used ÷ the calls its share of the API limit allows in one evaluator interval) |
//! | `mbm_make_api_request_duration_seconds` | histogram | – |
//! | `mbm_evaluator_passes_total` | counter | `outcome` (ok, errors) |
//! | `mbm_evaluator_pass_duration_seconds` | histogram | – |
//! | `mbm_evaluator_lag_seconds` | gauge | – (seconds since the last completed pass, at scrape time) |
//! | `mbm_audit_append_duration_seconds` | histogram | – |

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: 1 ms to 30 s.
const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// Unix time (ms) at which the last evaluation pass completed; 0 before the first.
static LAST_PASS_MS: AtomicU64 = AtomicU64::new(0);

/// Install the process-wide recorder (once; later calls return the same handle).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
                .expect("bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!("mbm_tool_calls_total", "MCP tool calls by tool and outcome");
    describe_histogram!("mbm_tool_call_duration_seconds", metrics::Unit::Seconds, "Tool call latency");
    describe_counter!("mbm_rate_limited_total", "Calls and requests refused by a rate limit, by class");
    describe_counter!("mbm_auth_failures_total", "HTTP requests with missing or invalid credentials");
    describe_counter!("mbm_make_api_requests_total", "Requests to Make's API by outcome");
    describe_counter!("mbm_make_api_calls_total", "Requests to Make's API by endpoint class");
    describe_histogram!("mbm_make_sync_calls", "Make API calls one organization's sync used, by kind");
    describe_histogram!(
        "mbm_make_sync_budget_ratio",
        "Calls one organization's sync used, as a fraction of its share of the API limit per evaluator interval"
    );
    describe_histogram!("mbm_make_api_request_duration_seconds", metrics::Unit::Seconds, "Make API request latency");
    describe_counter!("mbm_evaluator_passes_total", "Background evaluation passes by outcome");
    describe_histogram!("mbm_evaluator_pass_duration_seconds", metrics::Unit::Seconds, "Evaluation pass duration");
    describe_gauge!(
        "mbm_evaluator_lag_seconds",
        metrics::Unit::Seconds,
        "Seconds since the last completed evaluation pass"
    );
    describe_histogram!("mbm_audit_append_duration_seconds", metrics::Unit::Seconds, "Audit record append latency");
}

/// The exposition text, with the evaluator lag brought up to date.
pub fn render(handle: &PrometheusHandle) -> String {
    let last = LAST_PASS_MS.load(Ordering::Relaxed);
    if last > 0 {
        gauge!("mbm_evaluator_lag_seconds").set(now_ms().saturating_sub(last) as f64 / 1000.0);
    }
    handle.render()
}

/// Drain histogram buffers now and then, so that memory stays flat between scrapes.
pub async fn upkeep(handle: PrometheusHandle, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            () = shutdown.cancelled() => return,
        }
    }
}

pub fn tool_call(tool: &str, outcome: &'static str, elapsed: Duration) {
    counter!("mbm_tool_calls_total", "tool" => tool.to_owned(), "outcome" => outcome).increment(1);
    histogram!("mbm_tool_call_duration_seconds", "tool" => tool.to_owned()).record(elapsed.as_secs_f64());
}

pub fn rate_limited(class: &'static str) {
    counter!("mbm_rate_limited_total", "class" => class).increment(1);
}

pub fn auth_failure() {
    counter!("mbm_auth_failures_total").increment(1);
}

pub fn make_request(class: &'static str, outcome: &'static str, elapsed: Duration) {
    counter!("mbm_make_api_requests_total", "outcome" => outcome).increment(1);
    counter!("mbm_make_api_calls_total", "class" => class).increment(1);
    histogram!("mbm_make_api_request_duration_seconds").record(elapsed.as_secs_f64());
}

/// One organization's sync: calls of each kind, and the share of its per-interval allowance they used.
pub fn make_sync(core: u32, backfill: u32, reconcile: u32, allowance: u32) {
    for (kind, n) in [("core", core), ("backfill", backfill), ("reconcile", reconcile)] {
        histogram!("mbm_make_sync_calls", "kind" => kind).record(f64::from(n));
    }
    if allowance > 0 {
        histogram!("mbm_make_sync_budget_ratio").record(f64::from(core + backfill + reconcile) / f64::from(allowance));
    }
}

pub fn evaluator_pass(ok: bool, elapsed: Duration) {
    counter!("mbm_evaluator_passes_total", "outcome" => if ok { "ok" } else { "errors" }).increment(1);
    histogram!("mbm_evaluator_pass_duration_seconds").record(elapsed.as_secs_f64());
    LAST_PASS_MS.store(now_ms(), Ordering::Relaxed);
}

pub fn audit_append(elapsed: Duration) {
    histogram!("mbm_audit_append_duration_seconds").record(elapsed.as_secs_f64());
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
