//! Injected time. The domain and the engine never read the system clock directly, so period maths,
//! expiries and ordering are tested with a fixed or stepped clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Wait `d` on this clock: real time for the system clock (and [`ManualClock`], whose time tests move
    /// themselves); a [`VirtualClock`] moves forward instead, so hours of pacing pass in no real time.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Mutex::new(start))
    }

    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.0.lock().expect("clock lock");
        *now = now.checked_add(by).expect("clock overflow");
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock lock")
    }
}

/// A clock whose waits take no real time: [`Clock::sleep`] moves it forward by the wait. For benchmarks
/// and tests that run long paced work (hours of Make syncs) in a moment.
#[derive(Debug)]
pub struct VirtualClock(Mutex<Timestamp>);

impl VirtualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Mutex::new(start))
    }

    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.0.lock().expect("clock lock");
        *now = now.checked_add(by).expect("clock overflow");
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock lock")
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.advance(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX));
        Box::pin(tokio::task::yield_now())
    }
}

/// The one textual form of an instant in storage and in tool output: RFC 3339, UTC, always six
/// fractional digits, so that stored values sort correctly as text in both databases.
pub fn format_timestamp(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn parse_timestamp(s: &str) -> Result<Timestamp, jiff::Error> {
    s.parse()
}

/// A time given by a caller: RFC 3339 with an offset of `Z` or `±HH:MM` where HH is at most 23 (jiff
/// itself accepts offsets up to ±25:59, which RFC 3339 does not). `None` if it is not one.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let ts = parse_timestamp(s).ok()?;
    if s.ends_with(['Z', 'z']) {
        return Some(ts);
    }
    let offset = s.get(s.len().checked_sub(6)?..)?.as_bytes();
    let digits = |a: u8, b: u8| (a.is_ascii_digit() && b.is_ascii_digit()).then(|| (a - b'0') * 10 + (b - b'0'));
    match offset {
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let _ = sign;
            let (hours, minutes) = (digits(*h1, *h2)?, digits(*m1, *m2)?);
            (hours <= 23 && minutes <= 59).then_some(ts)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_times_follow_rfc_3339_offsets() {
        assert!(parse_rfc3339("2026-11-01T00:00:00Z").is_some());
        assert!(parse_rfc3339("2026-11-01T00:00:00+01:00").is_some());
        assert!(parse_rfc3339("2026-11-01T00:00:00-23:59").is_some());
        assert!(parse_rfc3339("2026-11-01T00:00:00+25:00").is_none());
        assert!(parse_rfc3339("2026-11-01T00:00:00+24:00").is_none());
        assert!(parse_rfc3339("2026-11-01T00:00:00+01:60").is_none());
        assert!(parse_rfc3339("2026-11-01T00:00:00+0100").is_none());
        assert!(parse_rfc3339("yesterday").is_none());
    }

    #[test]
    fn timestamps_have_fixed_width_and_sort_as_text() {
        let a: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let b: Timestamp = "2026-03-01T00:00:00.5Z".parse().unwrap();
        let (fa, fb) = (format_timestamp(a), format_timestamp(b));
        assert_eq!(fa, "2026-03-01T00:00:00.000000Z");
        assert_eq!(fb, "2026-03-01T00:00:00.500000Z");
        assert!(fa < fb);
        assert_eq!(parse_timestamp(&fb).unwrap(), b);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(SignedDuration::from_secs(60));
        assert_eq!(c.now().duration_since(t0), SignedDuration::from_secs(60));
    }
}
