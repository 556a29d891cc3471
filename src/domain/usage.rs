//! Per-scenario usage between syncs, from Make's consumption snapshots. Pure: no IO.
//!
//! Reading every scenario's daily usage (`GET /scenarios/{id}/usage`) costs one Make API call per
//! scenario; a sync instead reads each team's current-period consumptions (one call per team) and takes
//! the difference between consecutive readings of a scenario as what it consumed in between.
//!
//! - [`Baseline`] is the last reading: when it was taken, in which reset period, and the consumption then.
//! - [`delta`] compares a new reading with it. Within one reset period a rise is consumption in between;
//!   a fall (Make corrected a figure) gives nothing and starts again from the new reading. In a new period
//!   the whole new figure was consumed since the period began. On yearly plans Make reports running 60-day
//!   totals, whose difference is not the consumption in between, so nothing is derived there.
//! - [`split_over_days`] attributes an amount consumed over an interval to the days (in the
//!   organization's time zone) it fell in, in proportion to the time of the interval in each day. An
//!   interval from 23:58 to 00:03 gives two fifths to the day that ended and three fifths to the new one.
//!   Make's own daily figures (read when a scenario is backfilled or reconciled) later replace these
//!   estimates for the days they cover.
//! - [`reconcile_quota`] is how many scenarios a sync reconciles, so that each consuming scenario is
//!   reconciled about once a day.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// A scenario's last consumption reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    pub at: Timestamp,
    /// Start of the reset period the reading belongs to (Make's `lastReset`).
    pub period_start: Option<Timestamp>,
    pub centicredits: i64,
    pub operations: i64,
}

/// What a new reading says was consumed since the baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub from: Timestamp,
    pub to: Timestamp,
    pub centicredits: i64,
    pub operations: i64,
}

/// The consumption between `prev` and a reading of `centicredits`/`operations` at `now` in the period
/// that began at `period_start`; `None` when nothing can be derived (no earlier reading, a fall, a yearly
/// plan, or a reading not later than the baseline).
pub fn delta(
    prev: Option<&Baseline>,
    now: Timestamp,
    period_start: Option<Timestamp>,
    centicredits: i64,
    operations: i64,
    yearly: bool,
) -> Option<Delta> {
    let prev = prev?;
    if yearly || now <= prev.at {
        return None;
    }
    if prev.period_start == period_start {
        let (c, o) = (centicredits - prev.centicredits, operations - prev.operations);
        if c < 0 || o < 0 || (c == 0 && o == 0) {
            return None;
        }
        return Some(Delta { from: prev.at, to: now, centicredits: c, operations: o });
    }
    // A new period: everything reported was consumed since it began (or since the last reading, if the
    // period began before it, which happens when Make's lastReset moves back).
    let from = period_start.map_or(prev.at, |s| s.max(prev.at)).min(now);
    if from >= now || (centicredits == 0 && operations == 0) {
        return None;
    }
    Some(Delta { from, to: now, centicredits, operations })
}

/// `amount` spread over the days of `[from, to)` in `tz`, in proportion to the time of the interval in each
/// day (largest remainders get the odd units, so the parts add up to `amount` exactly). Days come oldest
/// first; an empty or reversed interval puts everything on the day of `to`.
pub fn split_over_days(from: Timestamp, to: Timestamp, amount: i64, tz: &TimeZone) -> Vec<(Date, i64)> {
    let day_of = |t: Timestamp| t.to_zoned_datetime(tz.clone()).date();
    if to <= from || amount == 0 {
        return if amount == 0 { Vec::new() } else { vec![(day_of(to), amount)] };
    }
    // The pieces of the interval in each day: (day, seconds).
    let mut pieces: Vec<(Date, i128)> = Vec::new();
    let mut start = from;
    while start < to {
        let day = day_of(start);
        let next_midnight = day
            .tomorrow()
            .ok()
            .and_then(|d| d.to_zoned_datetime(tz.clone()).ok())
            .map(|z| z.timestamp())
            .filter(|t| *t > start)
            .unwrap_or(to);
        let end = next_midnight.min(to);
        let secs = end.duration_since(start).as_nanos();
        pieces.push((day, secs));
        start = end;
    }
    let total: i128 = pieces.iter().map(|(_, s)| *s).sum::<i128>().max(1);
    let amount128 = i128::from(amount);
    let mut parts: Vec<(Date, i128, i128)> = pieces
        .iter()
        .map(|(d, s)| {
            let exact = amount128 * s;
            (*d, exact / total, exact % total)
        })
        .collect();
    let mut left = amount128 - parts.iter().map(|(_, p, _)| *p).sum::<i128>();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    // Largest remainder first; ties to the later day (the interval's end is the better known).
    order.sort_by(|a, b| parts[*b].2.cmp(&parts[*a].2).then(b.cmp(a)));
    for i in order {
        if left == 0 {
            break;
        }
        parts[i].1 += 1;
        left -= 1;
    }
    parts
        .into_iter()
        .filter(|(_, p, _)| *p != 0)
        .map(|(d, p, _)| (d, i64::try_from(p).expect("a part is at most the amount")))
        .collect()
}

/// Whether a plan resets yearly. Make documents no format for `restartPeriod` (third parties show
/// "1 month"), so a plan counts as yearly when the text says so ("year", "annual", "12 month") or when
/// its current period spans more than 62 days.
pub fn is_yearly(restart_period: Option<&str>, last_reset: Option<Timestamp>, next_reset: Option<Timestamp>) -> bool {
    let text = restart_period.unwrap_or("").to_ascii_lowercase();
    if text.contains("year") || text.contains("annual") || text.contains("12 month") {
        return true;
    }
    match (last_reset, next_reset) {
        (Some(a), Some(b)) => b.duration_since(a) > SignedDuration::from_hours(62 * 24),
        _ => false,
    }
}

/// How many scenarios one sync should reconcile so that each of `consuming` scenarios is reconciled
/// about once a day, with syncs every `interval_secs` (at least one while any scenario consumes).
pub fn reconcile_quota(consuming: usize, interval_secs: u64) -> usize {
    if consuming == 0 {
        return 0;
    }
    let per_day = 86_400u64.div_ceil(interval_secs.clamp(1, 86_400)) as usize;
    consuming.div_ceil(per_day).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn base(at: &str, period: &str, c: i64) -> Baseline {
        Baseline { at: ts(at), period_start: Some(ts(period)), centicredits: c, operations: c / 100 }
    }

    #[test]
    fn a_rise_within_a_period_is_consumption_in_between() {
        let prev = base("2026-03-10T10:00:00Z", "2026-03-01T00:00:00Z", 5_000);
        let d = delta(Some(&prev), ts("2026-03-10T10:05:00Z"), Some(ts("2026-03-01T00:00:00Z")), 5_700, 57, false);
        assert_eq!(
            d,
            Some(Delta {
                from: ts("2026-03-10T10:00:00Z"),
                to: ts("2026-03-10T10:05:00Z"),
                centicredits: 700,
                operations: 7
            })
        );
        // Nothing new, a fall, no baseline, a yearly plan, a reading not after the baseline: nothing derived.
        let period = Some(ts("2026-03-01T00:00:00Z"));
        assert_eq!(delta(Some(&prev), ts("2026-03-10T10:05:00Z"), period, 5_000, 50, false), None);
        assert_eq!(delta(Some(&prev), ts("2026-03-10T10:05:00Z"), period, 4_000, 40, false), None);
        assert_eq!(delta(None, ts("2026-03-10T10:05:00Z"), period, 9_000, 90, false), None);
        assert_eq!(delta(Some(&prev), ts("2026-03-10T10:05:00Z"), period, 9_000, 90, true), None);
        assert_eq!(delta(Some(&prev), ts("2026-03-10T10:00:00Z"), period, 9_000, 90, false), None);
    }

    #[test]
    fn a_new_period_counts_everything_since_it_began() {
        let prev = base("2026-03-31T23:58:00Z", "2026-03-01T00:00:00Z", 90_000);
        let d =
            delta(Some(&prev), ts("2026-04-01T00:03:00Z"), Some(ts("2026-04-01T00:00:00Z")), 300, 3, false).unwrap();
        assert_eq!((d.from, d.centicredits), (ts("2026-04-01T00:00:00Z"), 300));
    }

    #[test]
    fn an_interval_over_midnight_is_split_by_time_in_the_organizations_zone() {
        let prague = TimeZone::get("Europe/Prague").unwrap();
        // 22:58 to 23:03 UTC is 23:58 to 00:03 in Prague (CET, UTC+1): 2 minutes, then 3.
        let parts = split_over_days(ts("2026-03-10T22:58:00Z"), ts("2026-03-10T23:03:00Z"), 500, &prague);
        assert_eq!(parts, vec![(jiff::civil::date(2026, 3, 10), 200), (jiff::civil::date(2026, 3, 11), 300)]);
        // In UTC the same interval lies within one day.
        let parts = split_over_days(ts("2026-03-10T22:58:00Z"), ts("2026-03-10T23:03:00Z"), 500, &TimeZone::UTC);
        assert_eq!(parts, vec![(jiff::civil::date(2026, 3, 10), 500)]);
    }

    #[test]
    fn splits_add_up_exactly() {
        let utc = TimeZone::UTC;
        for amount in [1, 2, 3, 7, 100, 99_999, 1_000_000_007] {
            let parts = split_over_days(ts("2026-03-10T23:59:59Z"), ts("2026-03-13T00:00:01Z"), amount, &utc);
            assert_eq!(parts.iter().map(|(_, p)| *p).sum::<i64>(), amount, "{amount}: {parts:?}");
            assert!(parts.iter().all(|(_, p)| *p > 0));
        }
        // Three equal seconds and one unit: it goes to the latest day of the largest remainders.
        let parts = split_over_days(ts("2026-03-10T23:59:59Z"), ts("2026-03-11T00:00:01Z"), 1, &utc);
        assert_eq!(parts, vec![(jiff::civil::date(2026, 3, 11), 1)]);
        assert_eq!(split_over_days(ts("2026-03-10T10:00:00Z"), ts("2026-03-10T10:00:00Z"), 5, &utc).len(), 1);
        assert!(split_over_days(ts("2026-03-10T10:00:00Z"), ts("2026-03-10T11:00:00Z"), 0, &utc).is_empty());
    }

    #[test]
    fn a_day_of_daylight_saving_change_has_its_real_length() {
        let prague = TimeZone::get("Europe/Prague").unwrap();
        // 2026-03-29 in Prague has 23 hours; a 48-hour interval from its start gives 23:25 parts.
        let start = jiff::civil::date(2026, 3, 29).to_zoned_datetime(prague.clone()).unwrap().timestamp();
        let end = start.checked_add(SignedDuration::from_hours(48)).unwrap();
        let parts = split_over_days(start, end, 48_000, &prague);
        assert_eq!(
            parts,
            vec![
                (jiff::civil::date(2026, 3, 29), 23_000),
                (jiff::civil::date(2026, 3, 30), 24_000),
                (jiff::civil::date(2026, 3, 31), 1_000)
            ]
        );
    }

    #[test]
    fn yearly_plans_are_recognised_by_their_text_or_their_length() {
        assert!(is_yearly(Some("1 year"), None, None));
        assert!(is_yearly(Some("Annual"), None, None));
        assert!(!is_yearly(Some("1 month"), Some(ts("2026-03-01T00:00:00Z")), Some(ts("2026-04-01T00:00:00Z"))));
        assert!(is_yearly(None, Some(ts("2026-01-01T00:00:00Z")), Some(ts("2027-01-01T00:00:00Z"))));
        assert!(!is_yearly(None, None, None));
    }

    #[test]
    fn each_consuming_scenario_is_reconciled_about_once_a_day() {
        assert_eq!(reconcile_quota(0, 300), 0);
        assert_eq!(reconcile_quota(1, 300), 1);
        assert_eq!(reconcile_quota(800, 300), 3); // 288 syncs a day
        assert_eq!(reconcile_quota(800, 3600), 34); // 24 syncs a day
        assert_eq!(reconcile_quota(5, 86_400), 5);
        assert_eq!(reconcile_quota(5, 0), 1);
    }
}
