//! Period maths: which window of time a budget's limit applies to right now.
//!
//! A window is exact at two levels:
//! - instants: `start` (inclusive) and `end` (exclusive) are real moments, computed in the budget's time
//!   zone, so a day that loses or gains an hour to DST is 23 or 25 hours long, and elapsed fractions are
//!   measured in real time;
//! - days: `first_day..=last_day` are the civil dates the window touches in that time zone, which is how
//!   daily usage (one row per date) is attributed to it.
//!
//! Calendar periods (daily, weekly Monday–Sunday, monthly) and custom ranges start at midnight in the
//! budget's time zone. `billing_cycle` follows the Make organization's reset instants (`lastReset` and
//! `nextReset`); its days are the dates those instants fall on in the budget's time zone, so a budget that
//! should align exactly with Make's days uses the organization's time zone (UTC for most).

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp, ZonedDateTime};
use schemars::JsonSchema;
use serde::Serialize;

use super::budget::Period;

/// The Make organization's current reset (billing) period, from `GET /organizations/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingCycle {
    pub last_reset: Timestamp,
    /// `None` on unlimited plans (Make reports no next reset).
    pub next_reset: Option<Timestamp>,
    /// Length of a cycle when it must be inferred: Make's `restartPeriod` ("1 month" or "1 year").
    pub yearly: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("the budget's time zone {0:?} is not in the time zone database")]
    UnknownTimeZone(String),
    #[error(
        "a billing_cycle budget needs its Make organization's billing period; connect the organization and run sync_usage"
    )]
    NoBillingCycle,
    #[error("the period falls outside the supported calendar range")]
    OutOfRange,
}

/// One concrete period.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodWindow {
    pub start: ZonedDateTime,
    pub end: ZonedDateTime,
    pub first_day: Date,
    pub last_day: Date,
    /// True when the billing cycle's boundaries were extended past the last reset Make reported (the
    /// organization's plan facts are older than the current cycle).
    pub inferred: bool,
}

/// A window as shown to clients.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WindowView {
    /// Period start, RFC 3339 with the budget's offset.
    pub start: String,
    /// Period end (exclusive).
    pub end: String,
    pub first_day: String,
    pub last_day: String,
    pub days_total: i32,
    /// Days from the first day through today (today counts as begun).
    pub days_elapsed: i32,
    /// Whole days after today.
    pub days_remaining: i32,
    /// Share of the period's real time that has passed, 0–1 (DST-exact).
    pub fraction_elapsed: f64,
    /// The billing cycle was extended beyond the last reset Make reported; sync to refresh it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub inferred: bool,
}

fn tz_of(name: &str) -> Result<TimeZone, PeriodError> {
    jiff::tz::db().get(name).map_err(|_| PeriodError::UnknownTimeZone(name.to_owned()))
}

fn midnight(day: Date, tz: &TimeZone) -> Result<ZonedDateTime, PeriodError> {
    // Where midnight does not exist (a DST gap at 00:00), jiff's compatible disambiguation gives the first
    // instant of the day.
    day.to_zoned_datetime(tz.clone()).map_err(|_| PeriodError::OutOfRange)
}

fn add_days(day: Date, n: i64) -> Result<Date, PeriodError> {
    day.checked_add(Span::new().days(n)).map_err(|_| PeriodError::OutOfRange)
}

impl PeriodWindow {
    /// The calendar window covering `first_day..=last_day` in `tz`.
    fn calendar(first_day: Date, last_day: Date, tz: &TimeZone) -> Result<Self, PeriodError> {
        Ok(Self {
            start: midnight(first_day, tz)?,
            end: midnight(add_days(last_day, 1)?, tz)?,
            first_day,
            last_day,
            inferred: false,
        })
    }

    /// The window of `period` that contains `now` (for a custom range: the range itself, whether it has
    /// begun, is running or has ended).
    pub fn current(
        period: &Period,
        timezone: &str,
        now: Timestamp,
        billing: Option<&BillingCycle>,
    ) -> Result<Self, PeriodError> {
        let tz = tz_of(timezone)?;
        let today = now.to_zoned_datetime(tz.clone()).date();
        match period {
            Period::Daily => Self::calendar(today, today, &tz),
            Period::Weekly => {
                let monday = add_days(today, -i64::from(Weekday::Monday.until(today.weekday())))?;
                Self::calendar(monday, add_days(monday, 6)?, &tz)
            }
            Period::Monthly => Self::calendar(today.first_of_month(), today.last_of_month(), &tz),
            Period::Custom { start, end } => Self::calendar(*start, *end, &tz),
            Period::BillingCycle => Self::billing(billing.ok_or(PeriodError::NoBillingCycle)?, now, &tz),
        }
    }

    fn billing(b: &BillingCycle, now: Timestamp, tz: &TimeZone) -> Result<Self, PeriodError> {
        let step = if b.yearly { Span::new().years(1) } else { Span::new().months(1) };
        // Cycles are stepped in UTC, as Make's resets are reported in UTC.
        let advance = |t: Timestamp| -> Result<Timestamp, PeriodError> {
            t.to_zoned_datetime(TimeZone::UTC)
                .checked_add(step)
                .map(|z| z.timestamp())
                .map_err(|_| PeriodError::OutOfRange)
        };
        let mut start = b.last_reset;
        let mut end = match b.next_reset {
            Some(n) if n > start => n,
            _ => advance(start)?,
        };
        let mut inferred = false;
        // The stored plan facts may be older than the current cycle: step forward until `now` is inside.
        while now >= end {
            start = end;
            end = advance(end)?;
            inferred = true;
        }
        let start = start.to_zoned_datetime(tz.clone());
        let end = end.to_zoned_datetime(tz.clone());
        let last = end.timestamp().checked_sub(SignedDuration::from_nanos(1)).map_err(|_| PeriodError::OutOfRange)?;
        Ok(Self { first_day: start.date(), last_day: last.to_zoned_datetime(tz.clone()).date(), start, end, inferred })
    }

    /// Every day of the window, in order.
    pub fn days(&self) -> Vec<Date> {
        let mut out = Vec::new();
        let mut d = self.first_day;
        while d <= self.last_day {
            out.push(d);
            match d.tomorrow() {
                Ok(n) => d = n,
                Err(_) => break,
            }
        }
        out
    }

    pub fn day_count(&self) -> i32 {
        self.first_day.until(self.last_day).map(|s| s.get_days() + 1).unwrap_or(1)
    }

    /// Days from the first day through the day containing `now`, clamped to the window.
    pub fn days_elapsed(&self, now: Timestamp) -> i32 {
        if now < self.start.timestamp() {
            return 0;
        }
        if now >= self.end.timestamp() {
            return self.day_count();
        }
        let today = now.to_zoned_datetime(self.start.time_zone().clone()).date();
        self.first_day.until(today).map(|s| s.get_days() + 1).unwrap_or(0).clamp(0, self.day_count())
    }

    /// Share of the window's real duration that has passed at `now`, 0–1.
    pub fn fraction_elapsed(&self, now: Timestamp) -> f64 {
        let total = self.end.timestamp().duration_since(self.start.timestamp()).as_secs_f64();
        let done = now.duration_since(self.start.timestamp()).as_secs_f64();
        if total <= 0.0 { 1.0 } else { (done / total).clamp(0.0, 1.0) }
    }

    /// Real length of the window.
    pub fn duration(&self) -> SignedDuration {
        self.end.timestamp().duration_since(self.start.timestamp())
    }

    /// A stable key for "this period", e.g. for recording a threshold crossing once per period.
    pub fn key(&self) -> String {
        format!("{}/{}", self.first_day, self.last_day)
    }

    pub fn view(&self, now: Timestamp) -> WindowView {
        let elapsed = self.days_elapsed(now);
        WindowView {
            start: self.start.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            end: self.end.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            first_day: self.first_day.to_string(),
            last_day: self.last_day.to_string(),
            days_total: self.day_count(),
            days_elapsed: elapsed,
            days_remaining: self.day_count() - elapsed,
            fraction_elapsed: (self.fraction_elapsed(now) * 10_000.0).round() / 10_000.0,
            inferred: self.inferred,
        }
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn window(p: Period, tz: &str, now: &str) -> PeriodWindow {
        PeriodWindow::current(&p, tz, at(now), None).unwrap()
    }

    #[test]
    fn dst_days_are_23_and_25_hours_long() {
        // Europe/Prague: spring forward 2026-03-29 02:00 → 03:00; fall back 2026-10-25 03:00 → 02:00.
        let spring = window(Period::Daily, "Europe/Prague", "2026-03-29T12:00:00Z");
        assert_eq!((spring.first_day, spring.last_day), (date(2026, 3, 29), date(2026, 3, 29)));
        assert_eq!(spring.duration(), SignedDuration::from_hours(23));
        assert_eq!(spring.start.timestamp(), at("2026-03-28T23:00:00Z"));
        let fall = window(Period::Daily, "Europe/Prague", "2026-10-25T12:00:00Z");
        assert_eq!(fall.duration(), SignedDuration::from_hours(25));
        // America/New_York: 2026-03-08 and 2026-11-01.
        assert_eq!(
            window(Period::Daily, "America/New_York", "2026-03-08T17:00:00Z").duration(),
            SignedDuration::from_hours(23)
        );
        assert_eq!(
            window(Period::Daily, "America/New_York", "2026-11-01T17:00:00Z").duration(),
            SignedDuration::from_hours(25)
        );
    }

    #[test]
    fn weeks_and_months_across_dst() {
        let week = window(Period::Weekly, "Europe/Prague", "2026-03-29T20:00:00Z");
        assert_eq!((week.first_day, week.last_day), (date(2026, 3, 23), date(2026, 3, 29)));
        assert_eq!(week.duration(), SignedDuration::from_hours(7 * 24 - 1));
        let march = window(Period::Monthly, "America/New_York", "2026-03-15T12:00:00Z");
        assert_eq!(march.day_count(), 31);
        assert_eq!(march.duration(), SignedDuration::from_hours(31 * 24 - 1));
        let nov = window(Period::Monthly, "America/New_York", "2026-11-15T12:00:00Z");
        assert_eq!(nov.duration(), SignedDuration::from_hours(30 * 24 + 1));
        // Half the real time of a DST month has passed at the real midpoint, not at the 16th's midnight.
        let mid = march.start.timestamp() + SignedDuration::from_secs(march.duration().as_secs() / 2);
        assert!((march.fraction_elapsed(mid) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn the_period_is_chosen_in_the_budgets_time_zone() {
        // 22:30 UTC on 31 March is already 1 April in Prague (UTC+2) but still 31 March in New York.
        let now = "2026-03-31T22:30:00Z";
        assert_eq!(window(Period::Monthly, "Europe/Prague", now).first_day, date(2026, 4, 1));
        assert_eq!(window(Period::Monthly, "America/New_York", now).first_day, date(2026, 3, 1));
        assert_eq!(window(Period::Monthly, "UTC", now).last_day, date(2026, 3, 31));
    }

    #[test]
    fn month_ends_and_leap_years() {
        assert_eq!(window(Period::Monthly, "UTC", "2024-02-10T00:00:00Z").day_count(), 29);
        assert_eq!(window(Period::Monthly, "UTC", "2026-02-10T00:00:00Z").day_count(), 28);
        let jan = window(Period::Monthly, "UTC", "2026-01-31T23:59:59Z");
        assert_eq!((jan.first_day, jan.last_day), (date(2026, 1, 1), date(2026, 1, 31)));
        let feb1 = window(Period::Monthly, "UTC", "2026-02-01T00:00:00Z");
        assert_eq!(feb1.first_day, date(2026, 2, 1));
        let leap_week = window(Period::Weekly, "UTC", "2024-02-29T12:00:00Z");
        assert_eq!((leap_week.first_day, leap_week.last_day), (date(2024, 2, 26), date(2024, 3, 3)));
        let year_end = window(Period::Weekly, "UTC", "2026-12-31T12:00:00Z");
        assert_eq!((year_end.first_day, year_end.last_day), (date(2026, 12, 28), date(2027, 1, 3)));
    }

    #[test]
    fn custom_ranges_before_during_and_after() {
        let p = Period::Custom { start: date(2024, 2, 28), end: date(2024, 3, 1) };
        let before = window(p.clone(), "UTC", "2024-02-01T00:00:00Z");
        assert_eq!(before.day_count(), 3, "28 Feb, 29 Feb, 1 Mar");
        assert_eq!(
            (before.days_elapsed(at("2024-02-01T00:00:00Z")), before.fraction_elapsed(at("2024-02-01T00:00:00Z"))),
            (0, 0.0)
        );
        assert_eq!(before.days_elapsed(at("2024-02-29T06:00:00Z")), 2);
        assert_eq!(before.days_elapsed(at("2024-03-05T00:00:00Z")), 3);
        assert_eq!(before.fraction_elapsed(at("2024-03-05T00:00:00Z")), 1.0);
        assert_eq!(before.days(), vec![date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1)]);
    }

    #[test]
    fn billing_cycles_follow_makes_resets() {
        let b = BillingCycle {
            last_reset: at("2026-03-01T00:00:00Z"),
            next_reset: Some(at("2026-04-01T00:00:00Z")),
            yearly: false,
        };
        let w = PeriodWindow::current(&Period::BillingCycle, "UTC", at("2026-03-20T10:00:00Z"), Some(&b)).unwrap();
        assert_eq!((w.first_day, w.last_day, w.inferred), (date(2026, 3, 1), date(2026, 3, 31), false));
        // In Prague the same instants end at 02:00 local on 1 April: that day is touched too.
        let prague =
            PeriodWindow::current(&Period::BillingCycle, "Europe/Prague", at("2026-03-20T10:00:00Z"), Some(&b))
                .unwrap();
        assert_eq!((prague.first_day, prague.last_day), (date(2026, 3, 1), date(2026, 4, 1)));
        assert_eq!(prague.duration(), SignedDuration::from_hours(31 * 24));
        // Plan facts from last cycle: the cycle is stepped forward and marked as inferred.
        let later = PeriodWindow::current(&Period::BillingCycle, "UTC", at("2026-05-10T00:00:00Z"), Some(&b)).unwrap();
        assert_eq!((later.first_day, later.last_day, later.inferred), (date(2026, 5, 1), date(2026, 5, 31), true));
        // Mid-month resets and unlimited plans (no next reset).
        let mid = BillingCycle { last_reset: at("2026-01-15T09:30:00Z"), next_reset: None, yearly: false };
        let w = PeriodWindow::current(&Period::BillingCycle, "UTC", at("2026-02-01T00:00:00Z"), Some(&mid)).unwrap();
        assert_eq!((w.first_day, w.last_day), (date(2026, 1, 15), date(2026, 2, 15)));
        assert_eq!(
            PeriodWindow::current(&Period::BillingCycle, "UTC", at("2026-02-01T00:00:00Z"), None),
            Err(PeriodError::NoBillingCycle)
        );
    }

    #[test]
    fn elapsed_days_count_today_as_begun() {
        let w = window(Period::Monthly, "UTC", "2026-03-10T12:00:00Z");
        let v = w.view(at("2026-03-10T12:00:00Z"));
        assert_eq!((v.days_total, v.days_elapsed, v.days_remaining), (31, 10, 21));
        assert_eq!(v.first_day, "2026-03-01");
        assert!(v.start.ends_with("+00:00"));
        assert_eq!(w.key(), "2026-03-01/2026-03-31");
    }
}
