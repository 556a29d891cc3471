//! Benchmark 8: runaway detection (`domain::runaway`) on a labelled synthetic corpus: false alarms on
//! normal behaviour; recall, precision and delay on injected spikes; and what one assessment costs.
//!
//! ```sh
//! cargo bench --bench runaway_detection
//! # RUNAWAY_BENCH_SEEDS=1,2 RUNAWAY_BENCH_SCENARIOS=200 RUNAWAY_BENCH_DAYS=28
//! ```
//!
//! Every scenario is walked pass by pass through the corpus as the sync would: each interval is
//! assessed against all the scenario's earlier intervals (at most 28 days are read) with the default
//! rules, and the returned episode is carried to the next pass. The same scenarios are walked twice:
//! once as generated (the *normal* corpus: every new episode is a false alarm), and once with spikes
//! injected (the *spike* corpus).
//!
//! # The model
//!
//! - **Passes**: shared by all scenarios, from Monday 2026-03-02 00:00 UTC, 5 minutes ± 30 s apart; 2 %
//!   of passes are missed (the next interval is twice as long) and 0.3 % of gaps last 15 minutes more.
//! - **Scenarios**: 60 % steady, 25 % intermittent, 15 % idle.
//! - **Steady**: base rate log-uniform from 1 to 20,000 centicredits per 5 minutes; growth uniform from
//!   −0.5 % to +1.5 % a day; half have a daily profile `1 + a·cos(2π(h − c)/24)` with `a` up to 0.8 and
//!   `c` between 08:00 and 18:00; 30 % are quieter at weekends (× 0.1–0.6); 25 % have a nightly peak
//!   between 00:00 and 06:00 at 5–25× lasting 5 to 60 minutes; 20 % run batches on 1–3 weekdays at a
//!   fixed hour, 5–15× for 1–2 hours; 30 % follow daylight saving time (their schedule moves one hour
//!   earlier in UTC from day 20). Noise: each interval's expected consumption is multiplied by a
//!   Gamma(k)/k factor (k log-uniform 2–50: coefficient of variation 0.14–0.71), then drawn from a
//!   Poisson law (negative-binomial counts). Blips: 0.1–1 % of passes start a 2–3× blip of 1–3 passes.
//! - **Intermittent**: runs of 1–3 passes, each pass burning a run size (log-uniform 50–50,000
//!   centicredits, × LogNormal(0, 0.4) per run); half run at random (a run starts in 0.3–10 % of
//!   passes), half on a schedule (every 1, 2, 4, 6, 12 or 24 hours at a fixed minute).
//! - **Idle**: 0.1 % of passes burn 1–50 centicredits.
//! - **Spikes** (spike corpus; steady and intermittent scenarios): two 10× spikes lasting 2 passes and
//!   one 30× spike lasting 3–36 passes, at random passes from 2 hours after warm-up, at least a day
//!   apart. A spike of m× adds (m − 1) times the scenario's ordinary rate at that moment (its base,
//!   growth, profile and weekend factor; peaks, batches and blips excluded); for an intermittent
//!   scenario it adds m times its run size per pass. A spike is *eligible* when m times that ordinary
//!   consumption per pass is at least twice `min_centicredits`: below that the floor keeps it silent by
//!   design. An eligible spike is *masked* when m times the ordinary consumption stays below twice the
//!   most the scenario regularly burns in one pass (noise and blips aside) within 75 minutes of the
//!   spike's start that day, i.e. under a nightly peak or a batch: by design that is normal. Masked and
//!   ineligible spikes are counted apart. Recall counts the other spikes flagged while they last; delay
//!   is in passes, 1 being the pass that reports the spike's first interval.
//!
//! False alarms are the new episodes of the normal corpus. Every scenario of the corpus is new at its
//! start, so the warm-up rule judges all of them during the first `warmup_hours`; alarms then (a
//! scenario that burns more than `new_scenario_centicredits_per_hour` from its first hour) are counted
//! apart, and the rate is per 100 scenario-days after warm-up. Precision: new episodes after warm-up
//! that begin inside a spike (or in the pass after it), among all new episodes after warm-up of the
//! spike corpus.
//!
//! Throughput: 500 scenarios with 28 days of history each (8,064 intervals) assessed once, as one
//! pass of the sync would; the median of 7 runs.

use std::time::Instant;

use jiff::Timestamp;
use make_budget_mcp::domain::runaway::{Episode, Interval, RunawayRules, Verdict, assess};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const DAY: i64 = 86_400;
const SLOT: i64 = 300;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn gaussian(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Gamma(k, 1) by Marsaglia and Tsang (k ≥ 1).
fn gamma(rng: &mut StdRng, k: f64) -> f64 {
    let d = k - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = gaussian(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = 1.0 - rng.random::<f64>();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

fn poisson(rng: &mut StdRng, lambda: f64) -> i64 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda > 30.0 {
        return (lambda + lambda.sqrt() * gaussian(rng)).round().max(0.0) as i64;
    }
    let limit = (-lambda).exp();
    let (mut k, mut p) = (0, 1.0);
    loop {
        p *= rng.random::<f64>();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

fn log_uniform(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    (lo.ln() + rng.random::<f64>() * (hi.ln() - lo.ln())).exp()
}

fn uniform(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    lo + rng.random::<f64>() * (hi - lo)
}

/// The passes: `(from, to)` in seconds since `t0`.
fn passes(rng: &mut StdRng, days: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut t = 0;
    while t < days * DAY {
        let mut len = SLOT + rng.random_range(-30..=30);
        if rng.random_bool(0.02) {
            len += SLOT + rng.random_range(-30..=30);
        }
        if rng.random_bool(0.003) {
            len += 900;
        }
        out.push((t, t + len));
        t += len;
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Steady,
    Peak,
    Batch,
    Intermittent,
    Idle,
}

/// One scenario of the corpus: its expected consumption per minute, its ordinary consumption per pass
/// (what a spike multiplies), and its noise.
struct Scenario {
    kind: Kind,
    per_minute: Vec<f64>,
    ordinary_per_minute: Vec<f64>,
    /// Without noise and blips, with peaks and batches: what the scenario regularly does.
    regular_per_minute: Vec<f64>,
    /// Gamma shape of the per-interval noise.
    shape: f64,
}

fn scenario(rng: &mut StdRng, days: i64) -> Scenario {
    let minutes = (days * DAY / 60) as usize + 60;
    let slots = minutes / 5 + 1;
    let mut per_minute = vec![0.0; minutes];
    let mut ordinary = vec![0.0; minutes];
    let roll: f64 = rng.random();
    if roll < 0.15 {
        for slot in 0..slots {
            if rng.random_bool(0.001) {
                let size = uniform(rng, 1.0, 50.0);
                let end = (slot * 5 + 5).min(minutes);
                per_minute[slot * 5..end].fill(size / 5.0);
            }
        }
        let regular = per_minute.clone();
        return Scenario {
            kind: Kind::Idle,
            per_minute,
            ordinary_per_minute: ordinary,
            regular_per_minute: regular,
            shape: 50.0,
        };
    }
    if roll < 0.40 {
        let size = log_uniform(rng, 50.0, 50_000.0);
        let scheduled = rng.random_bool(0.5);
        let p = log_uniform(rng, 0.003, 0.1);
        let every = [1, 2, 4, 6, 12, 24][rng.random_range(0..6)] * 12;
        let offset = rng.random_range(0..every);
        let mut slot = 0;
        while slot < slots {
            let start = if scheduled { slot % every == offset } else { rng.random_bool(p) };
            if start {
                let run = size * (0.4 * gaussian(rng)).exp();
                let len = rng.random_range(1..=3);
                for s in slot..(slot + len).min(slots) {
                    let end = (s * 5 + 5).min(minutes);
                    per_minute[s * 5..end].fill(run / 5.0);
                }
                slot += len;
            } else {
                slot += 1;
            }
        }
        ordinary.iter_mut().for_each(|o| *o = size / 5.0);
        let regular = ordinary.clone();
        return Scenario {
            kind: Kind::Intermittent,
            per_minute,
            ordinary_per_minute: ordinary,
            regular_per_minute: regular,
            shape: 20.0,
        };
    }
    let base = log_uniform(rng, 1.0, 20_000.0) / 5.0;
    let growth = uniform(rng, -0.005, 0.015);
    let (amp, centre) =
        if rng.random_bool(0.5) { (uniform(rng, 0.0, 0.8), uniform(rng, 8.0, 18.0)) } else { (0.0, 0.0) };
    let weekend = if rng.random_bool(0.3) { uniform(rng, 0.1, 0.6) } else { 1.0 };
    let peak = rng.random_bool(0.25).then(|| {
        let start = rng.random_range(0..72) * SLOT;
        (start, start + rng.random_range(1..=12) * SLOT, uniform(rng, 5.0, 25.0))
    });
    let batch = (peak.is_none() && rng.random_bool(0.27)).then(|| {
        let mut mask = [false; 7];
        for _ in 0..rng.random_range(1..=3) {
            mask[rng.random_range(0..5)] = true;
        }
        let start = rng.random_range(6..20) * 3600;
        (mask, start, start + rng.random_range(1..=2) * 3600, uniform(rng, 5.0, 15.0))
    });
    let dst = rng.random_bool(0.3);
    let blip_p = uniform(rng, 0.001, 0.01);
    let shape = log_uniform(rng, 2.0, 50.0);
    let mut blip = vec![1.0; slots];
    let mut slot = 0;
    while slot < slots {
        if rng.random_bool(blip_p) {
            let (len, m) = (rng.random_range(1..=3), uniform(rng, 2.0, 3.0));
            for b in blip.iter_mut().skip(slot).take(len) {
                *b = m;
            }
            slot += len;
        } else {
            slot += 1;
        }
    }
    let mut regular = vec![0.0; minutes];
    for (m, ((pm, om), rm)) in per_minute.iter_mut().zip(ordinary.iter_mut()).zip(regular.iter_mut()).enumerate() {
        let utc = m as i64 * 60;
        let local = if dst && utc >= 20 * DAY { utc + 3600 } else { utc };
        let (day, tod) = (local.div_euclid(DAY), local.rem_euclid(DAY));
        let hour = tod as f64 / 3600.0;
        let mut level = base * (1.0 + growth).powf(utc as f64 / DAY as f64);
        level *= 1.0 + amp * (std::f64::consts::TAU * (hour - centre) / 24.0).cos();
        if day.rem_euclid(7) >= 5 {
            level *= weekend;
        }
        *om = level;
        let mut x = level;
        if let Some((from, to, mult)) = peak
            && (from..to).contains(&tod)
        {
            x *= mult;
        }
        if let Some((mask, from, to, mult)) = batch
            && mask[day.rem_euclid(7) as usize]
            && (from..to).contains(&tod)
        {
            x *= mult;
        }
        *rm = x;
        *pm = x * blip[m / 5];
    }
    let kind = if peak.is_some() {
        Kind::Peak
    } else if batch.is_some() {
        Kind::Batch
    } else {
        Kind::Steady
    };
    Scenario { kind, per_minute, ordinary_per_minute: ordinary, regular_per_minute: regular, shape }
}

fn sum_minutes(v: &[f64], from: i64, to: i64) -> f64 {
    let (a, b) = ((from / 60) as usize, ((to / 60) as usize).min(v.len()));
    v[a..b].iter().sum()
}

/// A spike injected into the spike corpus: passes `start..end`, multiplier.
#[derive(Clone, Copy)]
struct Spike {
    start: usize,
    end: usize,
    mult: f64,
    eligible: bool,
    /// Below twice what the scenario regularly burns within 75 minutes (a nightly peak, a batch).
    masked: bool,
}

fn spikes(rng: &mut StdRng, s: &Scenario, passes: &[(i64, i64)], rules: &RunawayRules) -> Vec<Spike> {
    if s.kind == Kind::Idle {
        return Vec::new();
    }
    let min_centicredits = rules.min_centicredits;
    let first = passes.iter().position(|p| p.0 >= (rules.warmup_hours + 2) * 3600).unwrap_or(0);
    let last = passes.len().saturating_sub(40);
    let mut out: Vec<Spike> = Vec::new();
    for (mult, len) in [(10.0, 2), (10.0, 2), (30.0, rng.random_range(3..=36))] {
        for _ in 0..100 {
            let start = rng.random_range(first..last);
            if out.iter().all(|o| start.abs_diff(o.start) >= 300) {
                let (from, to) = (passes[start].0, passes[start].1);
                let ordinary = sum_minutes(&s.ordinary_per_minute, from, to) * SLOT as f64 / (to - from) as f64;
                let eligible = mult * ordinary >= 2.0 * min_centicredits as f64;
                let regular = (from - 75 * 60..from + 75 * 60)
                    .step_by(SLOT as usize)
                    .filter(|t| *t >= 0)
                    .map(|t| sum_minutes(&s.regular_per_minute, t, t + SLOT))
                    .fold(0.0, f64::max);
                let masked = s.kind != Kind::Intermittent && mult * ordinary < 2.0 * regular;
                out.push(Spike { start, end: start + len, mult, eligible, masked });
                break;
            }
        }
    }
    out
}

/// Draw the intervals of one scenario, with `spikes` added.
fn intervals(rng: &mut StdRng, s: &Scenario, passes: &[(i64, i64)], spikes: &[Spike], t0: i64) -> Vec<Interval> {
    passes
        .iter()
        .enumerate()
        .map(|(i, &(from, to))| {
            let mut lambda = sum_minutes(&s.per_minute, from, to);
            for sp in spikes.iter().filter(|sp| (sp.start..sp.end).contains(&i)) {
                let ordinary = sum_minutes(&s.ordinary_per_minute, from, to);
                lambda += if s.kind == Kind::Intermittent { sp.mult * ordinary } else { (sp.mult - 1.0) * ordinary };
            }
            let noisy = lambda * gamma(rng, s.shape) / s.shape;
            let ts = |x: i64| Timestamp::from_second(t0 + x).expect("in range");
            Interval { from: ts(from), to: ts(to), centicredits: poisson(rng, noisy) }
        })
        .collect()
}

/// Walk a scenario's intervals pass by pass; the passes at which a new episode began, and at which a
/// runaway was in progress.
fn walk(ivs: &[Interval], rules: &RunawayRules) -> (Vec<usize>, Vec<bool>) {
    let mut episode: Option<Episode> = None;
    let mut new = Vec::new();
    let mut running = vec![false; ivs.len()];
    for i in 0..ivs.len() {
        let lo = i.saturating_sub(8_200);
        let a = assess(&ivs[lo..i], &ivs[i], episode.as_ref(), rules, ivs[i].to);
        if let Verdict::Runaway { new_episode, .. } = a.verdict {
            running[i] = true;
            if new_episode {
                new.push(i);
            }
        }
        episode = a.episode;
    }
    (new, running)
}

fn percentile(v: &mut [usize], p: f64) -> usize {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[derive(Default)]
struct Tally {
    scenario_days: f64,
    false_alarms: usize,
    warmup_alarms: usize,
    false_by_kind: Vec<(Kind, usize, usize)>,
    eligible: [usize; 2],
    detected: [usize; 2],
    ineligible: [usize; 2],
    ineligible_detected: [usize; 2],
    masked: [usize; 2],
    masked_detected: [usize; 2],
    true_episodes: usize,
    spike_episodes: usize,
    delays: [Vec<usize>; 2],
}

fn run_seed(seed: u64, scenarios: usize, days: i64, rules: &RunawayRules, t0: i64) -> Tally {
    let mut rng = StdRng::seed_from_u64(seed);
    let passes = passes(&mut rng, days);
    let after_warmup = days as f64 - rules.warmup_hours as f64 / 24.0;
    let mut t = Tally { scenario_days: scenarios as f64 * after_warmup, ..Tally::default() };
    for kind in [Kind::Steady, Kind::Peak, Kind::Batch, Kind::Intermittent, Kind::Idle] {
        t.false_by_kind.push((kind, 0, 0));
    }
    for n in 0..scenarios {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(n as u64));
        let s = scenario(&mut rng, days);
        let normal = intervals(&mut rng, &s, &passes, &[], t0);
        let (new, _) = walk(&normal, rules);
        let warmup_end = Timestamp::from_second(t0 + rules.warmup_hours * 3600).expect("in range");
        let in_warmup = new.iter().filter(|&&i| normal[i].from < warmup_end).count();
        t.warmup_alarms += in_warmup;
        t.false_alarms += new.len() - in_warmup;
        let k = t.false_by_kind.iter_mut().find(|k| k.0 == s.kind).expect("every kind");
        k.1 += 1;
        k.2 += new.len() - in_warmup;

        let sp = spikes(&mut rng, &s, &passes, rules);
        let spiked = intervals(&mut rng, &s, &passes, &sp, t0);
        let (new, running) = walk(&spiked, rules);
        for e in new.iter().filter(|&&i| spiked[i].from >= warmup_end) {
            t.spike_episodes += 1;
            if sp.iter().any(|x| (x.start..=x.end).contains(e)) {
                t.true_episodes += 1;
            }
        }
        for x in &sp {
            let class = usize::from(x.mult > 10.0);
            let hit = (x.start..x.end).find(|&i| running[i]);
            if x.eligible && x.masked {
                t.masked[class] += 1;
                t.masked_detected[class] += usize::from(hit.is_some());
            } else if x.eligible {
                t.eligible[class] += 1;
                if let Some(i) = hit {
                    t.detected[class] += 1;
                    t.delays[class].push(i - x.start + 1);
                }
            } else {
                t.ineligible[class] += 1;
                t.ineligible_detected[class] += usize::from(hit.is_some());
            }
        }
    }
    t
}

/// CPU time this thread has run, in nanoseconds (Linux), so that a busy machine's waiting is not counted.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

/// 500 scenarios with 28 days of history each, assessed once; milliseconds per pass, wall clock and CPU
/// (medians of 7).
fn throughput(seed: u64, rules: &RunawayRules, t0: i64) -> (f64, Option<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let passes = passes(&mut rng, 29);
    let n = passes.iter().position(|p| p.0 >= 28 * DAY).expect("29 days");
    let corpus: Vec<Vec<Interval>> = (0..500)
        .map(|i| {
            let mut rng = StdRng::seed_from_u64(seed + 7 + i);
            let s = scenario(&mut rng, 29);
            let mut v = intervals(&mut rng, &s, &passes[..=n], &[], t0);
            v.drain(..v.len().saturating_sub(8_065));
            v
        })
        .collect();
    let mut times = Vec::new();
    let mut cpu = Vec::new();
    let mut runaways = 0;
    for _ in 0..7 {
        let started = Instant::now();
        let cpu_started = cpu_ns();
        for v in &corpus {
            let (history, latest) = v.split_at(v.len() - 1);
            let a = assess(history, &latest[0], None, rules, latest[0].to);
            runaways += usize::from(matches!(a.verdict, Verdict::Runaway { .. }));
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        if let (Some(a), Some(b)) = (cpu_started, cpu_ns()) {
            cpu.push(b.saturating_sub(a) as f64 / 1e6);
        }
    }
    std::hint::black_box(runaways);
    times.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    (times[3], cpu.get(3).copied())
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 { "–".into() } else { format!("{:.3} ({a}/{b})", a as f64 / b as f64) }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("runaway_detection: bench");
        return;
    }
    let seeds: Vec<u64> = std::env::var("RUNAWAY_BENCH_SEEDS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let scenarios: usize = env_or("RUNAWAY_BENCH_SCENARIOS", 200);
    let days: i64 = env_or("RUNAWAY_BENCH_DAYS", 28);
    let rules = RunawayRules::default();
    let t0 = "2026-03-02T00:00:00Z".parse::<Timestamp>().expect("a timestamp").as_second();
    println!("rules: {rules:?}");
    println!("{scenarios} scenarios × {days} days of passes per seed\n");
    println!(
        "| seed | false alarms after warm-up | per 100 scenario-days | alarms in warm-up | 10× × 2 passes: recall | \
         30×: recall | precision | delay 10× median / p95 | delay 30× median / p95 | masked by a peak: flagged | \
         below floor: flagged |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut kinds = Vec::new();
    for &seed in &seeds {
        let started = Instant::now();
        let mut t = run_seed(seed, scenarios, days, &rules, t0);
        let [d10, d30] = &mut t.delays;
        println!(
            "| {seed} | {} | {:.2} | {} | {} | {} | {} | {} / {} | {} / {} | {} | {} |",
            t.false_alarms,
            t.false_alarms as f64 * 100.0 / t.scenario_days,
            t.warmup_alarms,
            pct(t.detected[0], t.eligible[0]),
            pct(t.detected[1], t.eligible[1]),
            pct(t.true_episodes, t.spike_episodes),
            percentile(d10, 0.5),
            percentile(d10, 0.95),
            percentile(d30, 0.5),
            percentile(d30, 0.95),
            pct(t.masked_detected[0] + t.masked_detected[1], t.masked[0] + t.masked[1]),
            pct(t.ineligible_detected[0] + t.ineligible_detected[1], t.ineligible[0] + t.ineligible[1]),
        );
        kinds.push((seed, t.false_by_kind, started.elapsed().as_secs_f64()));
    }
    println!("\nfalse alarms after warm-up by kind of scenario (scenarios/alarms):\n");
    for (seed, k, secs) in &kinds {
        let parts: Vec<String> = k.iter().map(|(kind, n, a)| format!("{kind:?} {n}/{a}")).collect();
        println!("- seed {seed}: {} ({secs:.0} s)", parts.join(", "));
    }
    let (wall, cpu) = throughput(seeds.first().copied().unwrap_or(1), &rules, t0);
    let cpu = cpu.unwrap_or(wall);
    println!(
        "\n| assess, 500 scenarios × 28 days of history (8,064 intervals each) | ms per pass, wall | \
         ms per pass, CPU | scenarios/s (CPU) |"
    );
    println!("|---|---|---|---|");
    println!("| one sync pass | {wall:.1} | {cpu:.1} | {:.0} |", 500.0 / cpu * 1000.0);
}
