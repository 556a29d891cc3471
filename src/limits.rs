//! Rate limits: per tenant and tool class (reads, modifications, automated actions), per client IP for
//! failed authentications, and per principal for the audit records of denied calls.
//!
//! Limits are GCRA buckets from `governor`: a tenant may spend its whole hourly allowance in a burst,
//! after which calls are admitted again at the sustained rate (for 100 an hour: one every 36 s). The
//! state lives in this process: behind a load balancer with N instances a tenant's effective limit is up
//! to N times the configured one (README, "Rate limits").

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::Permission;
use crate::domain::TenantId;

/// What a tool call costs against a tenant's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolClass {
    /// Tools annotated read-only.
    Read,
    /// Every other tool that changes this server's state.
    Modification,
    /// Tools that change scenarios in Make or decide on plans that do (permission
    /// `budget:execute_automated_actions`): pause, resume, approve, reject, reverse.
    AutomatedAction,
}

impl ToolClass {
    pub fn of(read_only: bool, permission: Option<Permission>) -> Self {
        if permission == Some(Permission::ExecuteAutomatedActions) {
            ToolClass::AutomatedAction
        } else if read_only {
            ToolClass::Read
        } else {
            ToolClass::Modification
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ToolClass::Read => "read",
            ToolClass::Modification => "modification",
            ToolClass::AutomatedAction => "automated_action",
        }
    }
}

pub use crate::config::settings::LimitSettings;

/// A refused call: which limit, and when the next call of this class will be admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this tenant has used its {limit} {} calls per {per}; retry after {} s",
    class.as_str().replace('_', " "),
    retry_after_secs(*retry_after)
)]
pub struct RateLimited {
    pub class: ToolClass,
    pub limit: u32,
    pub per: &'static str,
    pub retry_after: Duration,
}

/// Whole seconds to wait, rounded up so that a client retrying then is admitted.
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

struct Bucket<K: std::hash::Hash + Eq + Clone> {
    limit: u32,
    limiter: DefaultKeyedRateLimiter<K>,
}

impl<K: std::hash::Hash + Eq + Clone> Bucket<K> {
    fn new(limit: u32, quota: fn(NonZeroU32) -> Quota) -> Option<Self> {
        NonZeroU32::new(limit).map(|n| Bucket { limit, limiter: RateLimiter::keyed(quota(n)) })
    }

    /// Take one cell for `key`; `Err(wait)` when none is left.
    fn take(&self, key: &K) -> Result<(), Duration> {
        self.limiter.check_key(key).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// How tool calls are admitted and bounded in this process.
pub struct CallPolicy {
    pub limits: ToolLimits,
    /// A read tool still running after this is stopped. Mutations are never cut off: stopping one between
    /// a call to Make and its record would leave the two disagreeing.
    pub read_tool_timeout: Duration,
    /// Serve only read tools.
    pub read_only: bool,
    /// Failed HTTP authentications per client address.
    pub auth_failures: AuthFailures,
    /// Which denied calls get an audit record of their own.
    pub denials: DenialAudits,
}

impl CallPolicy {
    pub fn new(limits: &LimitSettings, read_tool_timeout: Duration, read_only: bool) -> Self {
        Self {
            limits: ToolLimits::new(limits),
            read_tool_timeout,
            read_only,
            auth_failures: AuthFailures::new(limits),
            denials: DenialAudits::new(limits),
        }
    }

    /// Forget tenants, addresses and principals whose allowances are whole again, so memory stays bounded
    /// however many come and go (`serve` calls it every few minutes).
    pub fn forget_idle(&self) {
        self.limits.forget_idle();
        self.auth_failures.forget_idle();
        self.denials.forget_idle();
    }
}

/// Per-tenant allowances for tool calls.
pub struct ToolLimits {
    reads: Option<Bucket<TenantId>>,
    modifications: Option<Bucket<TenantId>>,
    automated: Option<Bucket<TenantId>>,
}

impl ToolLimits {
    pub fn new(s: &LimitSettings) -> Self {
        Self {
            reads: Bucket::new(s.reads_per_hour, Quota::per_hour),
            modifications: Bucket::new(s.modifications_per_hour, Quota::per_hour),
            automated: Bucket::new(s.automated_actions_per_hour, Quota::per_hour),
        }
    }

    /// Admit one call of `class` for `tenant`, or say when to retry.
    pub fn admit(&self, tenant: TenantId, class: ToolClass) -> Result<(), RateLimited> {
        let refused =
            |b: &Bucket<TenantId>, class, wait| RateLimited { class, limit: b.limit, per: "hour", retry_after: wait };
        let bucket = match class {
            ToolClass::Read => &self.reads,
            ToolClass::Modification => &self.modifications,
            ToolClass::AutomatedAction => &self.automated,
        };
        if let Some(b) = bucket {
            b.take(&tenant).map_err(|wait| refused(b, class, wait))?;
        }
        Ok(())
    }

    /// Forget tenants whose buckets are full again (bounded memory over many tenants).
    pub fn forget_idle(&self) {
        for b in [&self.reads, &self.modifications, &self.automated].into_iter().flatten() {
            b.limiter.retain_recent();
            b.limiter.shrink_to_fit();
        }
    }
}

/// Who was denied: a principal within its tenant.
pub type DeniedPrincipal = (TenantId, String);

/// Denials of one principal that were counted instead of audited one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressedDenials {
    pub role: String,
    pub transport: String,
    pub count: u64,
    /// Denials per tool (or resource request), in name order.
    pub tools: std::collections::BTreeMap<String, u64>,
    pub first_at: jiff::Timestamp,
    pub last_at: jiff::Timestamp,
}

/// Bounds what the lowest role can write into the audit log by being refused: each principal's denials
/// are audited one by one up to an hourly allowance; beyond it they are counted, and a periodic summary
/// record (`denials_suppressed`) says how many, of which tools, between which times.
pub struct DenialAudits {
    bucket: Option<Bucket<DeniedPrincipal>>,
    suppressed: Mutex<HashMap<DeniedPrincipal, SuppressedDenials>>,
    /// How often the summaries are written.
    pub summary_every: Duration,
}

impl DenialAudits {
    pub fn new(s: &LimitSettings) -> Self {
        Self {
            bucket: Bucket::new(s.denied_audits_per_hour, Quota::per_hour),
            suppressed: Mutex::default(),
            summary_every: s.denial_summary,
        }
    }

    /// Whether this denial gets its own audit record; if not, it is counted for the next summary.
    pub fn admit(&self, who: &DeniedPrincipal, role: &str, transport: &str, tool: &str, now: jiff::Timestamp) -> bool {
        let Some(bucket) = &self.bucket else { return true };
        if bucket.take(who).is_ok() {
            return true;
        }
        let mut suppressed = self.suppressed.lock().expect("denial lock");
        let entry = suppressed.entry(who.clone()).or_insert_with(|| SuppressedDenials {
            role: role.to_owned(),
            transport: transport.to_owned(),
            count: 0,
            tools: Default::default(),
            first_at: now,
            last_at: now,
        });
        entry.count += 1;
        entry.last_at = now;
        *entry.tools.entry(tool.to_owned()).or_default() += 1;
        false
    }

    /// The counted denials since the last call, per principal (and forget them).
    pub fn take_suppressed(&self) -> Vec<(DeniedPrincipal, SuppressedDenials)> {
        std::mem::take(&mut *self.suppressed.lock().expect("denial lock")).into_iter().collect()
    }

    pub fn forget_idle(&self) {
        if let Some(b) = &self.bucket {
            b.limiter.retain_recent();
            b.limiter.shrink_to_fit();
        }
    }
}

/// Failed authentications per client IP. Every failure takes a cell; the failure that finds none left
/// blocks the address until a cell is back, and while blocked every request from it is refused (429)
/// before its credentials are looked at.
pub struct AuthFailures {
    bucket: Option<Bucket<IpAddr>>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl AuthFailures {
    pub fn new(s: &LimitSettings) -> Self {
        Self { bucket: Bucket::new(s.failed_auths_per_minute, Quota::per_minute), blocked: Mutex::default() }
    }

    pub fn limit(&self) -> u32 {
        self.bucket.as_ref().map_or(0, |b| b.limit)
    }

    /// `Some(wait)` while `ip` is blocked.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let mut blocked = self.blocked.lock().expect("auth limiter lock");
        let until = *blocked.get(&ip)?;
        let now = Instant::now();
        if until > now {
            return Some(until - now);
        }
        blocked.remove(&ip);
        None
    }

    /// Count a failed authentication from `ip`; `Some(wait)` if this one exceeded the limit.
    pub fn failed(&self, ip: IpAddr) -> Option<Duration> {
        let wait = self.bucket.as_ref()?.take(&ip).err()?;
        let now = Instant::now();
        let mut blocked = self.blocked.lock().expect("auth limiter lock");
        blocked.retain(|_, until| *until > now);
        blocked.insert(ip, now + wait);
        Some(wait)
    }

    pub fn forget_idle(&self) {
        if let Some(b) = &self.bucket {
            b.limiter.retain_recent();
            b.limiter.shrink_to_fit();
        }
        let now = Instant::now();
        self.blocked.lock().expect("auth limiter lock").retain(|_, until| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(n: u128) -> TenantId {
        uuid::Uuid::from_u128(n).to_string().parse().unwrap()
    }

    #[test]
    fn classes_follow_annotations_and_permissions() {
        assert_eq!(ToolClass::of(true, Some(Permission::BudgetRead)), ToolClass::Read);
        assert_eq!(ToolClass::of(false, Some(Permission::BudgetUpdate)), ToolClass::Modification);
        assert_eq!(ToolClass::of(false, Some(Permission::ExecuteAutomatedActions)), ToolClass::AutomatedAction);
        assert_eq!(ToolClass::of(true, None), ToolClass::Read);
    }

    #[test]
    fn a_tenant_gets_its_allowance_and_no_more_and_others_are_unaffected() {
        let limits = ToolLimits::new(&LimitSettings { modifications_per_hour: 3, ..Default::default() });
        for _ in 0..3 {
            limits.admit(tenant(1), ToolClass::Modification).unwrap();
        }
        let refused = limits.admit(tenant(1), ToolClass::Modification).unwrap_err();
        assert_eq!((refused.limit, refused.class), (3, ToolClass::Modification));
        // One cell comes back every 20 minutes.
        assert!(refused.retry_after > Duration::from_secs(19 * 60) && refused.retry_after <= Duration::from_secs(1200));
        let msg = refused.to_string();
        assert!(msg.starts_with("this tenant has used its 3 modification calls per hour; retry after"), "{msg}");
        limits.admit(tenant(2), ToolClass::Modification).unwrap();
        limits.admit(tenant(1), ToolClass::Read).unwrap();
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let limits = ToolLimits::new(&LimitSettings { reads_per_hour: 0, ..Default::default() });
        for _ in 0..5000 {
            limits.admit(tenant(1), ToolClass::Read).unwrap();
        }
    }

    #[test]
    fn denials_are_audited_up_to_the_allowance_then_counted() {
        let d = DenialAudits::new(&LimitSettings { denied_audits_per_hour: 2, ..Default::default() });
        let who = (tenant(1), "vic".to_owned());
        let t0: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let t1: jiff::Timestamp = "2026-12-01T00:05:00Z".parse().unwrap();
        assert!(d.admit(&who, "viewer", "http", "delete_budget", t0));
        assert!(d.admit(&who, "viewer", "http", "delete_budget", t0));
        for _ in 0..5 {
            assert!(!d.admit(&who, "viewer", "http", "delete_budget", t0));
        }
        assert!(!d.admit(&who, "viewer", "http", "connect_make", t1));
        assert!(d.admit(&(tenant(2), "vic".to_owned()), "viewer", "http", "delete_budget", t0), "per principal");
        let taken = d.take_suppressed();
        assert_eq!(taken.len(), 1);
        let (p, s) = &taken[0];
        assert_eq!((p, s.count, s.first_at, s.last_at), (&who, 6, t0, t1));
        assert_eq!(s.tools.get("delete_budget"), Some(&5));
        assert!(d.take_suppressed().is_empty(), "taken once");
        let off = DenialAudits::new(&LimitSettings { denied_audits_per_hour: 0, ..Default::default() });
        assert!((0..100).all(|_| off.admit(&who, "viewer", "http", "x", t0)));
    }

    #[test]
    fn an_address_is_blocked_after_its_failures_and_only_that_address() {
        let auth = AuthFailures::new(&LimitSettings { failed_auths_per_minute: 2, ..Default::default() });
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        assert_eq!(auth.failed(a), None);
        assert_eq!(auth.failed(a), None);
        assert_eq!(auth.blocked(a), None);
        let wait = auth.failed(a).expect("third failure is over the limit");
        assert!(wait <= Duration::from_secs(30));
        assert!(auth.blocked(a).is_some());
        assert_eq!(auth.blocked(b), None);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
    }
}
