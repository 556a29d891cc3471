//! Injected time. The domain and the engine never read the system clock directly, so period maths,
//! expiries and ordering are tested with a fixed or stepped clock.

use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
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

/// The one textual form of an instant in storage and in tool output: RFC 3339, UTC, always six
/// fractional digits, so that stored values sort correctly as text in both databases.
pub fn format_timestamp(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn parse_timestamp(s: &str) -> Result<Timestamp, jiff::Error> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

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
