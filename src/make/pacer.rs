//! The API budget: how many Make API calls this server may make for an organization, and when.
//!
//! Make limits API requests per organization per minute (`license.apiLimit`: 60 on Core, 120 on Pro, …)
//! and counts every API client of the organization against that one limit [DOC getting-started/
//! rate-limiting; make-api.md §4, §6]. This server takes a configurable share of it (`make.api_share`,
//! default 0.5) and leaves the rest to the organization's other integrations.
//!
//! Calls are paced with a GCRA per organization (keyed by Make host and organization id): with a budget
//! of `M` calls a minute, a burst of `b = max(1, M / 10)` and a steady spacing of `60 s / (M - b)`, so no
//! 60-second span holds more than `M` calls. The state lives in the database ([`PacingStore`], one upsert per
//! call), so every caller in the process (syncs, pauses, resumes, tools) and every instance on one
//! database share one budget. When Make answers 429 anyway (another client used the allowance), the key is
//! held for Make's window and every caller waits it out.
//!
//! Time comes from an injected [`Clock`]: the benchmark runs hours of syncs in virtual time.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::Clock;
use crate::store::{Store, StoreError};

/// Where the GCRA state of every key lives.
pub trait PacingStore: Send + Sync + 'static {
    /// Take one call for `key` at `now_us`: `Ok(None)` taken, `Ok(Some(wait_us))` refused for that long.
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        now_us: i64,
        period_us: i64,
        tolerance_us: i64,
    ) -> Pin<Box<dyn Future<Output = Result<Option<i64>, StoreError>> + Send + 'a>>;

    /// Admit nothing for `key` before `until_us`.
    fn hold<'a>(
        &'a self,
        key: &'a str,
        until_us: i64,
        tolerance_us: i64,
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;
}

impl PacingStore for Store {
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        now_us: i64,
        period_us: i64,
        tolerance_us: i64,
    ) -> Pin<Box<dyn Future<Output = Result<Option<i64>, StoreError>> + Send + 'a>> {
        Box::pin(self.reserve_make_call(key, now_us, period_us, tolerance_us))
    }

    fn hold<'a>(
        &'a self,
        key: &'a str,
        until_us: i64,
        tolerance_us: i64,
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>> {
        Box::pin(self.hold_make_calls(key, until_us, tolerance_us))
    }
}

/// The same GCRA in memory, for one process without a database (unit tests, tools that make one call).
#[derive(Debug, Default)]
pub struct MemoryPacing(Mutex<HashMap<String, i64>>);

impl PacingStore for MemoryPacing {
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        now_us: i64,
        period_us: i64,
        tolerance_us: i64,
    ) -> Pin<Box<dyn Future<Output = Result<Option<i64>, StoreError>> + Send + 'a>> {
        let mut map = self.0.lock().expect("pacing lock");
        let tat = map.get(key).copied().unwrap_or(i64::MIN);
        let result = if tat <= now_us + tolerance_us {
            map.insert(key.to_owned(), tat.max(now_us) + period_us);
            None
        } else {
            Some((tat - tolerance_us - now_us).max(1))
        };
        Box::pin(std::future::ready(Ok(result)))
    }

    fn hold<'a>(
        &'a self,
        key: &'a str,
        until_us: i64,
        tolerance_us: i64,
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>> {
        let mut map = self.0.lock().expect("pacing lock");
        let held = until_us + tolerance_us;
        let tat = map.entry(key.to_owned()).or_insert(held);
        *tat = (*tat).max(held);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The GCRA parameters of a budget of `per_minute` calls: (spacing, burst tolerance), in microseconds. At most
/// `burst + 60 s / spacing` calls are admitted in any minute; one call of the budget is kept back, because
/// Make counts a call when it arrives, and a late arrival can move one call into the next minute.
pub fn gcra(per_minute: u32) -> (i64, i64) {
    let m = i64::from(per_minute.max(1));
    let burst = (m / 10).max(1);
    let steady = (m - burst - 1).max(1);
    let period = 60_000_000 / steady;
    (period, (burst - 1) * period)
}

/// Calls a minute this server may make for an organization whose plan allows `api_limit`.
pub fn budget_per_minute(api_limit: u32, share: f64) -> u32 {
    ((f64::from(api_limit) * share.clamp(0.0, 1.0)).floor() as u32).max(1)
}

/// Paces every Make call of the process; see the module documentation.
pub struct Pacer {
    store: Arc<dyn PacingStore>,
    clock: Arc<dyn Clock>,
    share: f64,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer").field("share", &self.share).finish_non_exhaustive()
    }
}

fn micros(t: jiff::Timestamp) -> i64 {
    t.as_microsecond()
}

impl Pacer {
    pub fn new(store: Arc<dyn PacingStore>, clock: Arc<dyn Clock>, share: f64) -> Self {
        Self { store, clock, share }
    }

    /// In memory, on the system clock (for tests and one-off clients).
    pub fn local(share: f64) -> Self {
        Self::new(Arc::new(MemoryPacing::default()), Arc::new(crate::domain::SystemClock), share)
    }

    pub fn share(&self) -> f64 {
        self.share
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// This server's calls per minute for an organization with `api_limit`.
    pub fn budget(&self, api_limit: u32) -> u32 {
        budget_per_minute(api_limit, self.share)
    }

    /// Wait (on the clock) until `key` may make one more call, and take it.
    pub async fn admit(&self, key: &str, api_limit: u32) -> Result<(), StoreError> {
        let (period, tolerance) = gcra(self.budget(api_limit));
        loop {
            let now = micros(self.clock.now());
            match self.store.reserve(key, now, period, tolerance).await? {
                None => return Ok(()),
                Some(wait_us) => {
                    let wait = Duration::from_micros(u64::try_from(wait_us).unwrap_or(1).max(1));
                    tracing::debug!(key, wait_ms = wait.as_millis() as u64, "pacing a Make call");
                    self.clock.sleep(wait).await;
                }
            }
        }
    }

    /// Make said the organization's allowance is spent: no caller of `key` calls again for `wait`.
    pub async fn hold(&self, key: &str, api_limit: u32, wait: Duration) -> Result<(), StoreError> {
        let (_, tolerance) = gcra(self.budget(api_limit));
        let until = micros(self.clock.now()) + i64::try_from(wait.as_micros()).unwrap_or(i64::MAX / 2);
        self.store.hold(key, until, tolerance).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::VirtualClock;

    #[test]
    fn the_share_of_the_limit_is_the_budget() {
        assert_eq!(budget_per_minute(60, 0.5), 30);
        assert_eq!(budget_per_minute(120, 0.5), 60);
        assert_eq!(budget_per_minute(60, 0.0), 1);
        assert_eq!(budget_per_minute(1000, 1.0), 1000);
    }

    /// However calls arrive, no 60-second span holds more than the budget, and the budget is used.
    #[tokio::test]
    async fn no_minute_holds_more_than_the_budget() {
        let clock = Arc::new(VirtualClock::new("2026-03-10T10:00:00Z".parse().unwrap()));
        let pacer = Pacer::new(Arc::new(MemoryPacing::default()), clock.clone(), 0.5);
        let mut at = Vec::new();
        for _ in 0..200 {
            pacer.admit("eu1|1", 60).await.unwrap();
            at.push(clock.now());
        }
        let span = jiff::SignedDuration::from_secs(60);
        for (i, t) in at.iter().enumerate() {
            let within = at[i..].iter().take_while(|u| u.duration_since(*t) < span).count();
            assert!(within <= 30, "{within} calls within a minute from call {i}");
        }
        let total = at.last().unwrap().duration_since(at[0]);
        // 200 calls at 26 a minute after a burst of 3: a little over 7.5 minutes.
        assert!(
            total > jiff::SignedDuration::from_secs(440) && total < jiff::SignedDuration::from_secs(470),
            "{total:?}"
        );
        // Another organization has its own budget.
        let before = clock.now();
        pacer.admit("eu1|2", 60).await.unwrap();
        assert_eq!(clock.now(), before);
    }

    #[tokio::test]
    async fn a_hold_makes_every_caller_wait_it_out() {
        let clock = Arc::new(VirtualClock::new("2026-03-10T10:00:00Z".parse().unwrap()));
        let pacer = Pacer::new(Arc::new(MemoryPacing::default()), clock.clone(), 0.5);
        pacer.admit("k", 60).await.unwrap();
        let start = clock.now();
        pacer.hold("k", 60, Duration::from_secs(60)).await.unwrap();
        pacer.admit("k", 60).await.unwrap();
        let waited = clock.now().duration_since(start);
        assert!(
            waited >= jiff::SignedDuration::from_secs(60) && waited < jiff::SignedDuration::from_secs(62),
            "{waited:?}"
        );
    }
}
