//! Benchmark 9: calibration of the spend forecast (`domain::forecast`) on synthetic daily series of known
//! shape, against what the same process actually did next.
//!
//! ```sh
//! cargo bench --bench forecast_calibration
//! # FORECAST_BENCH_SERIES=40   series per family and history length
//! ```
//!
//! # The corpus
//!
//! Five families of daily spend series, each generated from its own parameters with `StdRng` seeded from
//! (family, history length, series number), so every run sees the same series. Day `t` (0 = first day of the
//! history) is drawn independently given the parameters; `Z` is a standard normal draw, `U(a, b)` uniform:
//!
//! | family | level `L ~ U(500, 2000)`, and then |
//! |---|---|
//! | trend | `L · (1 + g·t) · w(t) · (1 + 0.08 Z)`, growth `g ~ U(−0.5 %, 2 %)` of `L` a day, weekly `w` ±10 % |
//! | weekly | `L · w(t) · (1 + 0.08 Z)`, weekday factors `w` of amplitude `U(0.2, 0.5)` (a random phase of a sine, or weekends at `U(0.1, 0.5)` of weekdays) |
//! | level shift | `L · w(t) · (1 + 0.08 Z)` before day `s`, times `f` from `s` on: `f ~ U(1.5, 3)` or `U(0.35, 0.7)` (even odds), `s` drawn so that the shift is 7 to `n/2` days before the end of the history; weekly ±15 % |
//! | intermittent | 0 on most days; on a day with probability `p ~ U(0.1, 0.4)`, `M · exp(0.5 Z)` with `M ~ U(500, 3000)` |
//! | heavy tails | `L · w(t) · exp(0.7 Z − 0.245)` (log-normal day noise, mean 1), weekly ±10 % |
//!
//! Values are clamped at 0. For every family, history length `n` ∈ {30, 60, 90} and series, the history is
//! days `0..n` and the process continues for 30 more days with the same generator: that is the actual future.
//! The forecast is made from the history for horizons 7, 14 and 30 days (so each family × history × horizon
//! cell has `FORECAST_BENCH_SERIES` forecasts, 40 by default: 1,800 forecasts in all).
//!
//! # What is measured
//!
//! 1. Reliability of [`SpendForecast::probability_total_exceeds`]: each forecast is asked for the probability
//!    that the actual total exceeds 14 limits, `c × h × r`, with `r` the mean of the last 14 days of the history
//!    (of the whole history if those were all 0) and `c` one of 0.4, 0.6, 0.75, 0.85, 0.92, 0.96, 1, 1.04,
//!    1.08, 1.15, 1.25, 1.4, 1.6 and 2. The limits depend only on the history (what a budget set from recent
//!    spend would look like), so they are the same before and after a change to the forecast, and a forecast
//!    that knew the true distribution of the total given the history would be reliable (limits placed at
//!    quantiles of the true future distribution would not do: for them the outcome frequency does not depend
//!    on anything a forecast can know). Per probability bin: cases, mean predicted probability, observed
//!    frequency of `actual > limit`; then the difference per bin and family.
//! 2. Coverage of the 80 % and 95 % intervals of the total, per family and horizon (and per history length).
//! 3. Point error: mean absolute error of the period total, scaled by the period's mean spend in the history
//!    (`h · mean(history)`), for the forecast and for seasonal naive (each weekday repeats the last week of the
//!    history), per family.
//!
//! Also printed: in how many forecasts of each family a level shift was seen (the forecast fitted on fewer days
//! than the history has, [`SpendForecast::fitted_days`]), and for the level-shift family how many fitted across
//! the true shift day.
//!
//! 4. Timing: forecasts per second on one thread, for 90-day histories at horizon 30 (the costliest case the
//!    status tools ask for).

use std::time::Instant;

use make_budget_mcp::domain::forecast::{SpendForecast, forecast};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const HISTORIES: [usize; 3] = [30, 60, 90];
const HORIZONS: [usize; 3] = [7, 14, 30];
const FUTURE: usize = 30;
/// The limits tested, relative to the run rate of the last 14 days of history times the horizon.
const LIMIT_FACTORS: [f64; 14] = [0.4, 0.6, 0.75, 0.85, 0.92, 0.96, 1.0, 1.04, 1.08, 1.15, 1.25, 1.4, 1.6, 2.0];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Trend,
    Weekly,
    LevelShift,
    Intermittent,
    HeavyTails,
}

const FAMILIES: [Family; 5] =
    [Family::Trend, Family::Weekly, Family::LevelShift, Family::Intermittent, Family::HeavyTails];

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Trend => "trend",
            Family::Weekly => "weekly",
            Family::LevelShift => "level shift",
            Family::Intermittent => "intermittent",
            Family::HeavyTails => "heavy tails",
        }
    }
}

/// Standard normal draw (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The parameters of one series.
struct Process {
    family: Family,
    level: f64,
    growth: f64,
    weekly: [f64; 7],
    shift_day: usize,
    shift_factor: f64,
    active: f64,
}

impl Process {
    fn draw(family: Family, n: usize, rng: &mut StdRng) -> Process {
        let level = rng.random_range(500.0..2000.0);
        let sine = |amplitude: f64, rng: &mut StdRng| {
            let phase = rng.random_range(0.0..std::f64::consts::TAU);
            std::array::from_fn(|d| 1.0 + amplitude * (std::f64::consts::TAU * d as f64 / 7.0 + phase).sin())
        };
        let mut p = Process {
            family,
            level,
            growth: 0.0,
            weekly: [1.0; 7],
            shift_day: usize::MAX,
            shift_factor: 1.0,
            active: 1.0,
        };
        match family {
            Family::Trend => {
                p.growth = rng.random_range(-0.005..0.02);
                p.weekly = sine(0.1, rng);
            }
            Family::Weekly => {
                let amplitude = rng.random_range(0.2..0.5);
                if rng.random_bool(0.5) {
                    p.weekly = sine(amplitude, rng);
                } else {
                    let weekend = rng.random_range(0.1..0.5);
                    let start = rng.random_range(0..7);
                    p.weekly = std::array::from_fn(|d| if (d + 7 - start) % 7 >= 5 { weekend } else { 1.0 });
                }
            }
            Family::LevelShift => {
                p.weekly = sine(0.15, rng);
                let before_end = rng.random_range(7..=(n / 2).max(7));
                p.shift_day = n - before_end;
                p.shift_factor =
                    if rng.random_bool(0.5) { rng.random_range(1.5..3.0) } else { rng.random_range(0.35..0.7) };
            }
            Family::Intermittent => {
                p.active = rng.random_range(0.1..0.4);
                p.level = rng.random_range(500.0..3000.0);
            }
            Family::HeavyTails => p.weekly = sine(0.1, rng),
        }
        p
    }

    fn day(&self, t: usize, rng: &mut StdRng) -> f64 {
        let w = self.weekly[t % 7];
        let v = match self.family {
            Family::Trend => self.level * (1.0 + self.growth * t as f64) * w * (1.0 + 0.08 * gaussian(rng)),
            Family::Weekly => self.level * w * (1.0 + 0.08 * gaussian(rng)),
            Family::LevelShift => {
                let f = if t >= self.shift_day { self.shift_factor } else { 1.0 };
                self.level * f * w * (1.0 + 0.08 * gaussian(rng))
            }
            Family::Intermittent => {
                if rng.random::<f64>() < self.active {
                    self.level * (0.5 * gaussian(rng)).exp()
                } else {
                    0.0
                }
            }
            Family::HeavyTails => self.level * w * (0.7 * gaussian(rng) - 0.245).exp(),
        };
        v.max(0.0)
    }
}

/// One series of the corpus: history, actual future, and the limits for each horizon.
struct Case {
    family: Family,
    history: Vec<f64>,
    future: Vec<f64>,
    /// Day of the level shift, for that family.
    shift_day: Option<usize>,
}

fn corpus(series_per_cell: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    for (fi, &family) in FAMILIES.iter().enumerate() {
        for &n in &HISTORIES {
            for s in 0..series_per_cell {
                let seed = 1_000_000 * (fi as u64 + 1) + 1_000 * n as u64 + s as u64;
                let mut rng = StdRng::seed_from_u64(seed);
                let process = Process::draw(family, n, &mut rng);
                let series: Vec<f64> = (0..n + FUTURE).map(|t| process.day(t, &mut rng)).collect();
                let shift_day = (family == Family::LevelShift).then_some(process.shift_day);
                cases.push(Case { family, history: series[..n].to_vec(), future: series[n..].to_vec(), shift_day });
            }
        }
    }
    cases
}

/// What one forecast gave, for the tables.
struct Outcome {
    family: Family,
    n: usize,
    horizon: usize,
    covered80: bool,
    covered95: bool,
    /// |actual − forecast| and |actual − seasonal naive| of the total, over h · mean(history).
    scaled_error: f64,
    scaled_naive_error: f64,
    /// (predicted probability, the event happened) per limit.
    probabilities: Vec<(f64, bool)>,
    /// The forecast fitted on fewer days than the history had (it saw a level shift).
    shift_seen: bool,
    /// The true shift is in the days the forecast fitted on (level-shift family only).
    fitted_across_shift: bool,
}

fn evaluate(case: &Case) -> Vec<Outcome> {
    let n = case.history.len();
    let mean = case.history.iter().sum::<f64>() / n as f64;
    HORIZONS
        .iter()
        .map(|&h| {
            let f: SpendForecast = forecast(&case.history, h);
            let actual: f64 = case.future[..h].iter().sum();
            let naive: f64 = (0..h).map(|k| case.history[n - 7 + k % 7]).sum();
            let scale = (h as f64 * mean).max(1e-9);
            let recent = &case.history[n - 14..];
            let r = recent.iter().sum::<f64>() / recent.len() as f64;
            let run_rate = h as f64 * if r > 0.0 { r } else { mean };
            Outcome {
                family: case.family,
                n,
                horizon: h,
                covered80: f.interval_80.lower <= actual && actual <= f.interval_80.upper,
                covered95: f.interval_95.lower <= actual && actual <= f.interval_95.upper,
                scaled_error: (actual - f.total).abs() / scale,
                scaled_naive_error: (actual - naive).abs() / scale,
                shift_seen: f.fitted_days < n,
                fitted_across_shift: case.shift_day.is_some_and(|s| n - f.fitted_days < s),
                probabilities: LIMIT_FACTORS
                    .iter()
                    .map(|&factor| (f.probability_total_exceeds(factor * run_rate), actual > factor * run_rate))
                    .collect(),
            }
        })
        .collect()
}

fn percent(hits: usize, of: usize) -> String {
    if of == 0 { "-".to_owned() } else { format!("{:.1}", 100.0 * hits as f64 / of as f64) }
}

fn main() {
    let series_per_cell: usize = std::env::var("FORECAST_BENCH_SERIES").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let cases = corpus(series_per_cell);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let chunk = cases.len().div_ceil(threads);
        let handles: Vec<_> = cases
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().flat_map(evaluate).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("worker panicked")).collect()
    });
    let elapsed = started.elapsed();
    println!(
        "forecast calibration: {} series, {} forecasts, {} probability cases ({:.1} s on {threads} threads)\n",
        cases.len(),
        outcomes.len(),
        outcomes.len() * LIMIT_FACTORS.len(),
        elapsed.as_secs_f64()
    );

    // 1. Reliability.
    println!("1. Reliability of the over-limit probability (all families, histories and horizons)\n");
    println!("| predicted | cases | mean predicted | observed | difference |");
    println!("|---|---:|---:|---:|---:|");
    let mut bins = vec![(0usize, 0.0f64, 0usize); 10];
    let mut brier = 0.0;
    let mut all = 0usize;
    for (p, happened) in outcomes.iter().flat_map(|o| o.probabilities.iter().copied()) {
        let b = ((p * 10.0) as usize).min(9);
        bins[b].0 += 1;
        bins[b].1 += p;
        bins[b].2 += usize::from(happened);
        brier += (p - f64::from(u8::from(happened))).powi(2);
        all += 1;
    }
    let mut worst: f64 = 0.0;
    for (b, &(count, sum, hits)) in bins.iter().enumerate() {
        if count == 0 {
            println!("| {:.1}–{:.1} | 0 | - | - | - |", b as f64 / 10.0, (b + 1) as f64 / 10.0);
            continue;
        }
        let mean = sum / count as f64;
        let observed = hits as f64 / count as f64;
        worst = worst.max((observed - mean).abs());
        println!(
            "| {:.1}–{:.1} | {count} | {:.3} | {:.3} | {:+.1} pt |",
            b as f64 / 10.0,
            (b + 1) as f64 / 10.0,
            mean,
            observed,
            100.0 * (observed - mean)
        );
    }
    println!("\nlargest gap {:.1} points; Brier score {:.4} over {all} cases\n", 100.0 * worst, brier / all as f64);

    println!("difference (observed − mean predicted, points) per bin and family:\n");
    println!(
        "| family | {} |",
        (0..10).map(|b| format!("{:.1}–{:.1}", b as f64 / 10.0, (b + 1) as f64 / 10.0)).collect::<Vec<_>>().join(" | ")
    );
    println!("|---|{}", (0..10).map(|_| "---:|").collect::<String>());
    for &family in &FAMILIES {
        let mut bins = vec![(0usize, 0.0f64, 0usize); 10];
        for (p, happened) in
            outcomes.iter().filter(|o| o.family == family).flat_map(|o| o.probabilities.iter().copied())
        {
            let b = ((p * 10.0) as usize).min(9);
            bins[b].0 += 1;
            bins[b].1 += p;
            bins[b].2 += usize::from(happened);
        }
        let cells: Vec<String> = bins
            .iter()
            .map(|&(c, sum, hits)| {
                if c == 0 {
                    "-".to_owned()
                } else {
                    format!("{:+.0} ({c})", 100.0 * (hits as f64 / c as f64 - sum / c as f64))
                }
            })
            .collect();
        println!("| {} | {} |", family.name(), cells.join(" | "));
    }
    println!();

    // 2. Coverage.
    println!("2. Interval coverage, 80 % / 95 % (%), per family and horizon (all histories)\n");
    let header: Vec<String> = HORIZONS.iter().map(|h| format!("{h} days")).collect();
    println!("| family | {} |", header.join(" | "));
    println!("|---|{}", HORIZONS.iter().map(|_| "---:|").collect::<String>());
    let coverage = |select: &dyn Fn(&Outcome) -> bool| {
        let chosen: Vec<&Outcome> = outcomes.iter().filter(|o| select(o)).collect();
        let c80 = chosen.iter().filter(|o| o.covered80).count();
        let c95 = chosen.iter().filter(|o| o.covered95).count();
        format!("{} / {}", percent(c80, chosen.len()), percent(c95, chosen.len()))
    };
    for family in FAMILIES.iter().map(|f| Some(*f)).chain([None]) {
        let cells: Vec<String> = HORIZONS
            .iter()
            .map(|&h| coverage(&|o: &Outcome| o.horizon == h && family.is_none_or(|f| o.family == f)))
            .collect();
        println!("| {} | {} |", family.map_or("all", Family::name), cells.join(" | "));
    }
    println!("\nper history length (all families):\n");
    println!("| history | {} |", header.join(" | "));
    println!("|---|{}", HORIZONS.iter().map(|_| "---:|").collect::<String>());
    for &n in &HISTORIES {
        let cells: Vec<String> =
            HORIZONS.iter().map(|&h| coverage(&|o: &Outcome| o.horizon == h && o.n == n)).collect();
        println!("| {n} days | {} |", cells.join(" | "));
    }

    // 3. Point error.
    println!("\n3. Point error of the period total: MAE in % of the period's mean spend, forecast vs seasonal naive\n");
    println!(
        "| family | forecast | seasonal naive | ratio | {} |",
        header.iter().map(|h| format!("ratio {h}")).collect::<Vec<_>>().join(" | ")
    );
    println!("|---|---:|---:|---:|{}", HORIZONS.iter().map(|_| "---:|").collect::<String>());
    let errors = |select: &dyn Fn(&Outcome) -> bool| {
        let chosen: Vec<&Outcome> = outcomes.iter().filter(|o| select(o)).collect();
        let m = chosen.len().max(1) as f64;
        (
            chosen.iter().map(|o| o.scaled_error).sum::<f64>() / m,
            chosen.iter().map(|o| o.scaled_naive_error).sum::<f64>() / m,
        )
    };
    for family in FAMILIES.iter().map(|f| Some(*f)).chain([None]) {
        let in_family = |o: &Outcome| family.is_none_or(|f| o.family == f);
        let (model, naive) = errors(&in_family);
        let per_h: Vec<String> = HORIZONS
            .iter()
            .map(|&h| {
                let (m, s) = errors(&|o: &Outcome| o.horizon == h && in_family(o));
                format!("{:.2}", m / s)
            })
            .collect();
        println!(
            "| {} | {:.1} | {:.1} | {:.2} | {} |",
            family.map_or("all", Family::name),
            100.0 * model,
            100.0 * naive,
            model / naive,
            per_h.join(" | ")
        );
    }

    println!("\nlevel shifts seen (forecasts fitted on the days after a detected shift), per family:\n");
    for &family in &FAMILIES {
        let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.family == family).collect();
        let seen = of.iter().filter(|o| o.shift_seen).count();
        let across = of.iter().filter(|o| o.fitted_across_shift).count();
        println!(
            "- {}: {seen} of {} ({} %); fitted across the true shift: {across}",
            family.name(),
            of.len(),
            percent(seen, of.len())
        );
    }

    // 4. Timing.
    let long: Vec<&Case> = cases.iter().filter(|c| c.history.len() == 90).collect();
    let started = Instant::now();
    let mut checksum = 0.0;
    for case in &long {
        checksum += forecast(&case.history, 30).total;
    }
    let per = started.elapsed().as_secs_f64() / long.len() as f64;
    println!(
        "\n4. Timing: {:.0} forecasts/s on one thread for 90-day histories at horizon 30 ({:.2} ms each, {} \
         series; checksum {checksum:.0})",
        1.0 / per,
        1000.0 * per,
        long.len()
    );
}
