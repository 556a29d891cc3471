//! Benchmark 7: the usage sync at a real organization's size (issue 15), in virtual time.
//!
//! ```sh
//! cargo bench --bench sync_scale
//! # SYNC_BENCH_SCENARIOS=1000 SYNC_BENCH_ACTIVE=800 SYNC_BENCH_TEAMS=20 SYNC_BENCH_PRIVATE=2
//! # SYNC_BENCH_API_LIMIT=60 SYNC_BENCH_SHARE=0.5 SYNC_BENCH_INTERVAL=300 SYNC_BENCH_STEADY_PASSES=24
//! ```
//!
//! The server's engine runs in this process on a virtual clock (every wait of the Make client's pacer moves
//! the clock; no real time passes) against the simulated Make (`tests/support/fake_make.rs`): one
//! organization with 1,000 scenarios (800 active) in 20 teams, 2 of them private spaces, 30 days of usage and
//! usage advancing every minute, `apiLimit` 60, with Make's per-minute limit enforced (over it, a plain-text
//! 429). The store is an SQLite file. Evaluator passes start every `SYNC_BENCH_INTERVAL` seconds, or when the
//! previous one ends if it ran longer. Reported, for the first pass, for every pass until the history of every
//! scenario is backfilled, and for the steady state after: calls per pass, pass duration (virtual), the peak
//! number of calls in any 60 seconds, and 429s received.
//!
//! The last row is the sync before this work, computed for the same organization from its rule (per pass:
//! the organization, teams and scenarios pages, the organization's usage, per team its usage and
//! consumptions, and one usage read per active or consuming scenario) and its pacer (90 % of `apiLimit`, a
//! tenth as burst). It cannot be run here in virtual time: its pacer waited in real time.

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/in_process.rs"]
mod in_process;

use std::sync::Arc;

use common::{Error, answer_list, env_or, fake_make, table};
use jiff::{SignedDuration, Timestamp};
use make_budget_mcp::domain::Clock;
use make_budget_mcp::domain::clock::VirtualClock;

const TOKEN: &str = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
const ORG: i64 = 4242;
/// Monday 2026-03-16, 08:00 UTC (09:00 in Prague, the organization's time zone).
const START: &str = "2026-03-16T08:00:00Z";

struct Pass {
    calls: u32,
    seconds: f64,
    rate_limited: u32,
    backfill_pending: usize,
    reconciled: u32,
    backfilled: u32,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    answer_list("sync_scale");
    sqlx::any::install_default_drivers();
    let scenarios: usize = env_or("SYNC_BENCH_SCENARIOS", 1000);
    let active: usize = env_or("SYNC_BENCH_ACTIVE", 800);
    let teams: usize = env_or("SYNC_BENCH_TEAMS", 20);
    let private: usize = env_or("SYNC_BENCH_PRIVATE", 2);
    let api_limit: u32 = env_or("SYNC_BENCH_API_LIMIT", 60);
    let share: f64 = env_or("SYNC_BENCH_SHARE", 0.5);
    let interval: u64 = env_or("SYNC_BENCH_INTERVAL", 300);
    let steady_passes: usize = env_or("SYNC_BENCH_STEADY_PASSES", 24);

    let start: Timestamp = START.parse()?;
    let clock = Arc::new(VirtualClock::new(start));
    let fake = fake_make::FakeMake::start_with_clock(clock.clone()).await;
    fake.add_token(TOKEN, fake_make::AuthKind::Token, &[ORG]);
    fake.add_organization(fake_make::OrgSpec {
        api_limit,
        allowance: 4_000_000,
        last_reset: "2026-03-01T00:00:00Z".parse()?,
        next_reset: Some("2026-04-01T00:00:00Z".parse()?),
        zone: String::new(),
        ..fake_make::OrgSpec::new(ORG, "Scale benchmark")
    });
    let population = fake.populate(ORG, teams, private, scenarios, active, 42);
    fake.advance_usage(start, start.checked_add(SignedDuration::from_hours(48))?);
    fake.enforce_rate_limit(ORG, std::time::Duration::from_secs(60));
    fake.set_plain_text_429(true);

    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.sqlite3").display());
    let i = in_process::instance(&url, clock.clone(), interval, share).await;
    let tenant = in_process::connect(&i, "bench", &fake.base_url(), TOKEN, &[ORG]).await;
    fake.clear_requests();

    let mut passes: Vec<Pass> = Vec::new();
    let mut next = clock.now();
    let mut steady_left = steady_passes;
    let mut backfill_done_at = None;
    while steady_left > 0 {
        if clock.now() < next {
            clock.advance(next.duration_since(clock.now()));
        }
        let started = clock.now();
        let r = in_process::sync(&i, tenant).await.remove(0);
        if r.status != "synced" {
            return Err(format!("pass {} did not sync: {:?}", passes.len() + 1, r.error).into());
        }
        passes.push(Pass {
            calls: r.api.total,
            seconds: clock.now().duration_since(started).as_secs_f64(),
            rate_limited: r.api.rate_limited,
            backfill_pending: r.backfill_pending,
            reconciled: r.api.reconcile_reads,
            backfilled: r.api.backfill_reads,
        });
        if backfill_done_at.is_none() && r.backfill_pending == 0 {
            backfill_done_at = Some(passes.len());
        } else if backfill_done_at.is_some() {
            steady_left -= 1;
        }
        next = started.checked_add(SignedDuration::from_secs(interval as i64))?.max(clock.now());
        if passes.len() > 1000 {
            return Err("the backfill did not finish within 1000 passes".into());
        }
    }
    let backfill_passes = backfill_done_at.unwrap_or(passes.len());
    let peak_first_sync = peak(&fake, &passes, 0, backfill_passes);
    let steady = &passes[backfill_passes..];
    let peak_steady = peak(&fake, &passes, backfill_passes, passes.len());
    let sum = |ps: &[Pass], f: fn(&Pass) -> f64| ps.iter().map(f).sum::<f64>();
    let max = |ps: &[Pass], f: fn(&Pass) -> f64| ps.iter().map(f).fold(0.0, f64::max);

    let pages = |n: usize| n.div_ceil(100);
    let target = 2 * teams + pages(scenarios) + 3;
    let reconcile_allowance = make_budget_mcp::domain::usage::reconcile_quota(active, interval);
    // The sync before this work, from its rule and its pacer, on the same organization: it read the usage
    // of every active or consuming scenario each pass, which are the ones this sync backfills.
    let consuming_or_active =
        (passes[0].backfilled as usize + passes[0].backfill_pending).max(population.active_ids.len());
    let old_calls = 1 + pages(teams) + pages(scenarios) + 1 + 2 * teams + consuming_or_active;
    let old_rate = f64::from(api_limit) * 0.9;
    let old_burst = (f64::from(api_limit) / 10.0).floor();
    let old_minutes = (old_calls as f64 - old_burst).max(0.0) / (old_rate - old_burst);

    println!();
    println!(
        "usage sync of one organization: {scenarios} scenarios ({active} active) in {teams} teams ({private} private \
         spaces), apiLimit {api_limit}, share {share}, interval {interval} s; virtual time"
    );
    println!();
    let f1 = &passes[0];
    let rows = vec![
        vec![
            "first pass".into(),
            f1.calls.to_string(),
            format!("{:.0}", f1.seconds),
            peak(&fake, &passes, 0, 1).to_string(),
            f1.rate_limited.to_string(),
            format!("{} backfilled, {} still to backfill", f1.backfilled, f1.backfill_pending),
        ],
        vec![
            format!("first sync: {backfill_passes} passes until every history is backfilled"),
            format!("{:.0} per pass", sum(&passes[..backfill_passes], |p| f64::from(p.calls)) / backfill_passes as f64),
            format!("{:.0} at most", max(&passes[..backfill_passes], |p| p.seconds)),
            peak_first_sync.to_string(),
            passes[..backfill_passes].iter().map(|p| p.rate_limited).sum::<u32>().to_string(),
            format!("{:.1} h to a full history", backfill_passes as f64 * interval as f64 / 3600.0),
        ],
        vec![
            format!("steady state: {} passes", steady.len()),
            format!(
                "{:.1} per pass, {} at most",
                sum(steady, |p| f64::from(p.calls)) / steady.len() as f64,
                steady.iter().map(|p| p.calls).max().unwrap_or(0)
            ),
            format!("{:.0} at most", max(steady, |p| p.seconds)),
            peak_steady.to_string(),
            steady.iter().map(|p| p.rate_limited).sum::<u32>().to_string(),
            format!(
                "{:.1} reconciliations per pass; target ≤ 2×teams + ⌈scenarios/100⌉ + 3 + {reconcile_allowance} = {}",
                sum(steady, |p| f64::from(p.reconciled)) / steady.len() as f64,
                target + reconcile_allowance
            ),
        ],
        vec![
            "before this work (computed)".into(),
            old_calls.to_string(),
            format!("{:.0}", old_minutes * 60.0),
            format!("{}", api_limit),
            "—".into(),
            format!(
                "90 % of apiLimit; longer than the {interval} s interval: {}",
                old_minutes * 60.0 > interval as f64
            ),
        ],
    ];
    table(&["", "calls", "pass seconds", "peak calls / 60 s", "429s", "notes"], &rows);
    println!();
    println!(
        "share × apiLimit = {} calls a minute; the organization's other API clients keep the rest",
        make_budget_mcp::make::pacer::budget_per_minute(api_limit, share)
    );
    Ok(())
}

/// The peak number of calls in any 60 seconds during passes `from..to` (by the simulator's record).
fn peak(fake: &fake_make::FakeMake, _passes: &[Pass], from: usize, to: usize) -> usize {
    // The simulator's record spans every pass; the per-phase figures take the requests of that phase.
    let requests = fake.requests();
    let starts = phase_bounds(&requests, from, to);
    let times: Vec<Timestamp> = requests
        .iter()
        .enumerate()
        .filter(|(n, r)| *n >= starts.0 && *n < starts.1 && r.status != 429)
        .map(|(_, r)| r.at_time)
        .collect();
    let span = SignedDuration::from_secs(60);
    let (mut best, mut lo) = (0, 0);
    for hi in 0..times.len() {
        while times[hi].duration_since(times[lo]) >= span {
            lo += 1;
        }
        best = best.max(hi + 1 - lo);
    }
    best
}

/// The indexes of the requests of passes `from..to`: each pass begins with its organization read.
fn phase_bounds(requests: &[fake_make::RecordedRequest], from: usize, to: usize) -> (usize, usize) {
    let pass_starts: Vec<usize> = requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.method == "GET" && r.path == format!("/api/v2/organizations/{ORG}"))
        .map(|(n, _)| n)
        .collect();
    let at = |p: usize| pass_starts.get(p).copied().unwrap_or(requests.len());
    (at(from), at(to))
}
