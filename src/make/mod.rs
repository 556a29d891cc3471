//! The Make.com API client: one per process, shared by every tenant and task.
//!
//! - reqwest with rustls; the `Authorization` header is marked sensitive so it never appears in debug
//!   output, and the token is held as a [`SecretString`].
//! - Requests are paced per Make organization within this server's share of the plan's `apiLimit`
//!   (`make.api_share`, default half; `pacer.rs`), shared by every caller and every instance on one
//!   database. Every request is counted by endpoint class on its target's [`CallLog`].
//! - A 429 holds the organization's calls for Make's window (`Retry-After` if sent, else a minute, as Make
//!   advises; no header is documented and some bodies are plain text) and the call waits it out, or, for
//!   work that can wait for the next sync ([`OnRateLimit::Defer`]), gives up at once.
//! - 500, 502, 503, 504, timeouts and connection failures of reads are retried with exponential backoff and
//!   jitter, up to a retry budget; then the call fails with an error that says how many attempts were made
//!   and carries Make's last error body. State changes (start/stop) are not retried after those: Make may
//!   have acted, so the caller reads the state first.
//! - Errors are typed and carry Make's error body (`message`, `detail`, `code`, `suberrors`, or the start of
//!   a body that is not JSON, with the token removed). A response without its envelope key is a decode
//!   error naming the endpoint and the key.
//! - Outbound rules ([`OutboundPolicy`], `outbound.rs`): zones that name an internal address or name are
//!   refused when given ([`api_base_url`]); every call checks a literal address first, names are resolved
//!   only to addresses the policy admits, redirects are not followed and no proxy is used. A refused call
//!   fails with [`MakeError::Refused`] and is not retried.
//!
//! Facts about the API are in `../shared/make-api.md`.

pub mod pacer;
pub mod types;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::crypto::SecretString;
use crate::domain::ValidationError;
use crate::outbound::{self, OutboundPolicy, Refused};
pub use types::*;

/// The token scope that starting and stopping scenarios needs [DOC api-scopes-overview].
pub const WRITE_SCOPE: &str = "scenarios:write";

/// Make's documented default when the plan's limit is not yet known (the Free plan is not documented).
pub const DEFAULT_API_LIMIT: u32 = 60;

/// How a connection authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// A Make API token, sent as `Authorization: Token …`.
    ApiToken,
    /// An OAuth 2.0 access token, sent as `Authorization: Bearer …`.
    OauthAccessToken,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::ApiToken => "api_token",
            AuthKind::OauthAccessToken => "oauth_access_token",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api_token" => Some(AuthKind::ApiToken),
            "oauth_access_token" => Some(AuthKind::OauthAccessToken),
            _ => None,
        }
    }

    fn scheme(self) -> &'static str {
        match self {
            AuthKind::ApiToken => "Token",
            AuthKind::OauthAccessToken => "Bearer",
        }
    }
}

/// Make's public zones.
pub const ZONES: &[&str] =
    &["eu1.make.com", "eu2.make.com", "us1.make.com", "us2.make.com", "eu1.make.celonis.com", "us1.make.celonis.com"];

/// Turn a zone as a user gives it into the API base URL.
///
/// Accepted: a zone host (`eu1.make.com`), any other host name for private instances
/// (`make.example.com`, https assumed), or a URL `https://host[:port]`; never a host `policy` refuses (a
/// literal loopback, private, link-local or metadata address, `localhost`, `metadata.google.internal`, …; see
/// `outbound.rs`). Plain `http://` is accepted only for loopback hosts with `policy.allow_loopback` on (a
/// local test server): a token must never cross a network unencrypted. The host is not resolved here; every
/// call checks the addresses it connects to.
pub fn api_base_url(zone: &str, policy: &OutboundPolicy) -> Result<String, ValidationError> {
    let zone = zone.trim().trim_end_matches('/');
    let invalid = |rule: &str| ValidationError::new("zone", rule.to_owned());
    let shape = "must be a Make zone such as \"eu1.make.com\", a private instance host, or https://host[:port]";
    let (scheme, rest) = match zone.split_once("://") {
        Some((s, rest)) => (s.to_ascii_lowercase(), rest),
        None => ("https".to_owned(), zone),
    };
    let authority = rest.strip_suffix("/api/v2").unwrap_or(rest);
    if authority.is_empty()
        || authority.contains('/')
        || authority.contains('@')
        || !authority.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
    {
        return Err(invalid(shape));
    }
    if scheme != "https" && scheme != "http" {
        return Err(invalid("the scheme must be https"));
    }
    let url = reqwest::Url::parse(&format!("{scheme}://{authority}/")).map_err(|_| invalid(shape))?;
    let host = url.host_str().ok_or_else(|| invalid(shape))?;
    policy.check_host(&url).map_err(|r| invalid(&r.rule()))?;
    if scheme == "http" && !(policy.allow_loopback && outbound::is_loopback_host(&url)) {
        return Err(invalid(
            "plain http is allowed only for loopback hosts with outbound.allow_loopback on; use https",
        ));
    }
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!("{scheme}://{host}{port}/api/v2"))
}

/// Where and as whom to call Make, and where the calls are counted.
#[derive(Debug, Clone)]
pub struct MakeTarget {
    /// e.g. `https://eu1.make.com/api/v2`
    pub base_url: String,
    pub auth_kind: AuthKind,
    pub token: SecretString,
    /// Counts every request sent for this target, by endpoint class (a sync's report).
    pub calls: Option<Arc<CallLog>>,
    /// The token's scopes, when known (read when the connection was made).
    pub scopes: Option<Arc<Vec<String>>>,
}

impl MakeTarget {
    pub fn new(base_url: String, auth_kind: AuthKind, token: SecretString) -> Self {
        Self { base_url, auth_kind, token, calls: None, scopes: None }
    }

    /// The same target, with the token's known scopes.
    pub fn with_scopes(mut self, scopes: Option<Vec<String>>) -> Self {
        self.scopes = scopes.map(Arc::new);
        self
    }

    /// Whether the token is known to lack `scope` (unknown scopes lack nothing).
    pub fn lacks_scope(&self, scope: &str) -> bool {
        self.scopes.as_ref().is_some_and(|s| !s.iter().any(|x| x == scope))
    }

    /// The same target, counting its requests in `log`.
    pub fn counted(mut self, log: Arc<CallLog>) -> Self {
        self.calls = Some(log);
        self
    }

    /// The pacing key of one of its organizations: the Make host and the organization id (an id is unique
    /// within a zone; two tenants connecting the same organization share its budget).
    pub fn pace_key(&self, org: i64) -> String {
        format!("{}|{org}", self.base_url)
    }
}

/// Requests sent, by endpoint class (see [`endpoint_class`]), 429s included.
#[derive(Debug, Default)]
pub struct CallLog {
    counts: Mutex<std::collections::BTreeMap<&'static str, u32>>,
    rate_limited: std::sync::atomic::AtomicU32,
}

impl CallLog {
    fn record(&self, class: &'static str) {
        *self.counts.lock().expect("call log lock").entry(class).or_default() += 1;
    }

    /// Requests per class so far.
    pub fn counts(&self) -> std::collections::BTreeMap<&'static str, u32> {
        self.counts.lock().expect("call log lock").clone()
    }

    pub fn total(&self) -> u32 {
        self.counts.lock().expect("call log lock").values().sum()
    }

    /// How many answers were 429.
    pub fn rate_limited(&self) -> u32 {
        self.rate_limited.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The class of a request, for counting: the endpoint without ids.
pub fn endpoint_class(method: &Method, path: &str) -> &'static str {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["organizations", _]) => "organization",
        ("GET", ["organizations", _, "usage"]) => "organization_usage",
        ("GET", ["teams"]) => "teams",
        ("GET", ["teams", _, "usage"]) => "team_usage",
        ("GET", ["scenarios"]) => "scenarios",
        ("GET", ["scenarios", "consumptions"]) => "consumptions",
        ("GET", ["scenarios", _, "usage"]) => "scenario_usage",
        ("GET", ["scenarios", _]) => "scenario",
        ("POST", ["scenarios", _, _]) => "scenario_control",
        ("GET", ["enums", "timezones"]) => "timezones",
        ("GET", ["users", "me", "current-authorization"]) => "authorization",
        _ => "other",
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct MakeClientConfig {
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Attempts per call, the first included (timeouts and 5xx).
    pub max_attempts: u32,
    /// First backoff delay; doubles per attempt.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Longest `Retry-After` that is honoured; beyond it the call gives up rather than stall.
    pub max_retry_after: Duration,
    /// `pg[limit]` for list endpoints.
    pub page_size: u32,
    /// The share of each organization's `apiLimit` this server may use (the rest stays for the
    /// organization's other API clients).
    pub api_share: f64,
    /// How long an organization's calls wait after a 429 without `Retry-After`: Make's window is a minute
    /// and its advice is to wait one [DOC getting-started/rate-limiting].
    pub rate_limit_wait: Duration,
    /// 429s one call waits out before it gives up (a call that may defer gives up at the first).
    pub max_rate_limited: u32,
}

impl Default for MakeClientConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            page_size: 100,
            api_share: 0.5,
            rate_limit_wait: Duration::from_secs(60),
            max_rate_limited: 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MakeError {
    /// Make answered with an error status. `body` is Make's error body when it sent one.
    #[error("Make answered {status}{}", describe(.body))]
    Api { status: u16, body: Box<MakeErrorBody> },
    /// Make's allowance for the organization is spent (429): its calls wait `wait` (Make's window), and a
    /// caller that can defer its work does so.
    #[error("Make's API limit for organization {organization} is spent (429{}); calls resume in {} s",
            describe(.body), .wait.as_secs())]
    RateLimited { organization: i64, wait: Duration, body: Box<MakeErrorBody> },
    #[error("Make did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach Make: {0}")]
    Transport(String),
    /// A response that could not be read; the message names the endpoint (and the missing key).
    #[error("Make sent a response that could not be read ({0})")]
    Decode(String),
    /// The outbound policy refused the connection (`refused: …`): the host is, or resolves only to, an
    /// address this server may not contact. Not retried.
    #[error("{0}")]
    Refused(String),
    /// The shared API budget could not be consulted (the database).
    #[error("the Make API budget could not be read: {0}")]
    Pacing(String),
    /// The connection's token lacks the scope the call needs; nothing was sent.
    #[error("the token of this Make connection lacks the {0} scope, so Make would refuse; connect a token that has it")]
    MissingScope(&'static str),
    /// Retried errors persisted past the retry budget.
    #[error("gave up after {attempts} attempts; last error: {last}")]
    GaveUp { attempts: u32, last: Box<MakeError> },
}

fn describe(b: &MakeErrorBody) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &b.code {
        parts.push(c.clone());
    }
    if let Some(m) = &b.message {
        parts.push(m.clone());
    }
    if let Some(d) = error_details(b) {
        parts.push(d);
    }
    if parts.is_empty() { String::new() } else { format!(": {}", parts.join(" — ")) }
}

/// Make's detail, its suberrors and the start of a body that was not JSON, in one line (or `None`).
pub fn error_details(b: &MakeErrorBody) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    if let Some(d) = b.detail.as_ref().filter(|d| Some(*d) != b.message.as_ref()) {
        parts.push(d.clone());
    }
    let subs: Vec<&str> = b.suberrors.iter().filter_map(|s| s.message.as_deref()).collect();
    if !subs.is_empty() {
        parts.push(format!("suberrors: {}", subs.join("; ")));
    }
    if let Some(t) = &b.text {
        parts.push(t.clone());
    }
    (!parts.is_empty()).then(|| parts.join(" — "))
}

impl MakeError {
    /// The final HTTP status and Make's error body, looking through a give-up.
    pub fn api_error(&self) -> Option<(u16, &MakeErrorBody)> {
        match self {
            MakeError::Api { status, body } => Some((*status, body.as_ref())),
            MakeError::RateLimited { body, .. } => Some((429, body.as_ref())),
            MakeError::GaveUp { last, .. } => last.api_error(),
            _ => None,
        }
    }

    /// Make answered 403 or 404: the token may not read this, or it does not exist (any more).
    pub fn is_forbidden_or_missing(&self) -> bool {
        matches!(self.api_error(), Some((403 | 404, _)))
    }

    /// The organization's allowance is spent (waiting would not have helped within this call).
    pub fn is_rate_limited(&self) -> bool {
        match self {
            MakeError::RateLimited { .. } => true,
            MakeError::GaveUp { last, .. } => last.is_rate_limited(),
            _ => false,
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            MakeError::Api { status, .. } => matches!(status, 500 | 502 | 503 | 504),
            MakeError::Timeout(_) | MakeError::Transport(_) => true,
            MakeError::RateLimited { .. }
            | MakeError::Decode(_)
            | MakeError::Refused(_)
            | MakeError::Pacing(_)
            | MakeError::MissingScope(_)
            | MakeError::GaveUp { .. } => false,
        }
    }
}

/// What a call does when Make answers 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRateLimit {
    /// Wait out Make's window (every caller of the organization waits with it) and try again, up to
    /// `max_rate_limited` times.
    Wait,
    /// Give up at once with [`MakeError::RateLimited`]: the caller defers this work to a later pass.
    Defer,
}

/// The process-wide Make client.
#[derive(Clone)]
pub struct MakeClient {
    http: reqwest::Client,
    config: Arc<MakeClientConfig>,
    policy: OutboundPolicy,
    pacer: Arc<pacer::Pacer>,
    /// The `apiLimit` learned per pacing key.
    limits: Arc<Mutex<HashMap<String, u32>>>,
    /// `GET /enums/timezones`, read once per Make host: timezone id → IANA name.
    timezones: Arc<tokio::sync::Mutex<HashMap<String, HashMap<i64, String>>>>,
}

impl std::fmt::Debug for MakeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MakeClient").field("config", &self.config).field("policy", &self.policy).finish_non_exhaustive()
    }
}

/// A response body as one short line for an error message, with `secret` removed.
fn body_text(bytes: &[u8], secret: &str) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let text = if secret.is_empty() { text.into_owned() } else { text.replace(secret, "[redacted]") };
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return None;
    }
    let mut short: String = line.chars().take(300).collect();
    if line.chars().count() > 300 {
        short.push('…');
    }
    Some(short)
}

/// Make's error body, or the start of a body that is not one.
fn error_body(bytes: &[u8], secret: &str) -> MakeErrorBody {
    match serde_json::from_slice::<MakeErrorBody>(bytes) {
        Ok(b) if b.message.is_some() || b.detail.is_some() || b.code.is_some() => b,
        _ => MakeErrorBody { text: body_text(bytes, secret), ..Default::default() },
    }
}

/// A decode failure that names the endpoint and, for a missing envelope key, the key.
fn decode_error(method: &Method, path: &str, e: &serde_json::Error) -> MakeError {
    let msg = e.to_string();
    let detail = match msg.strip_prefix("missing field `").and_then(|r| r.split_once('`')) {
        Some((key, _)) => format!("the response has no `{key}` key"),
        None => msg,
    };
    MakeError::Decode(format!("{method} {path}: {detail}"))
}

impl MakeClient {
    /// A client that connects only where `policy` allows (see the module documentation), follows no
    /// redirects, uses no proxy, and paces in memory on the system clock (see [`MakeClient::with_pacer`]).
    pub fn new(config: MakeClientConfig, policy: OutboundPolicy) -> Result<Self, MakeError> {
        let http = policy
            .client_builder()
            .timeout(config.request_timeout)
            .user_agent(concat!("make-budget-mcp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| MakeError::Transport(e.to_string()))?;
        let pacer = Arc::new(pacer::Pacer::local(config.api_share));
        Ok(Self {
            http,
            config: Arc::new(config),
            policy,
            pacer,
            limits: Default::default(),
            timezones: Default::default(),
        })
    }

    /// Pace with `pacer` (the database-backed one `serve` uses, shared by every instance).
    pub fn with_pacer(mut self, pacer: Arc<pacer::Pacer>) -> Self {
        self.pacer = pacer;
        self
    }

    pub fn config(&self) -> &MakeClientConfig {
        &self.config
    }

    pub fn pacer(&self) -> &pacer::Pacer {
        &self.pacer
    }

    /// The `apiLimit` known for an organization of `target` (Make's documented default until read).
    pub fn api_limit(&self, target: &MakeTarget, org: i64) -> u32 {
        self.limits.lock().expect("limits lock").get(&target.pace_key(org)).copied().unwrap_or(DEFAULT_API_LIMIT)
    }

    /// Pace calls for an organization of `target` at its plan's limit from now on.
    pub fn set_api_limit(&self, target: &MakeTarget, org: i64, api_limit: u32) {
        self.limits.lock().expect("limits lock").insert(target.pace_key(org), api_limit.max(1));
    }

    /// This server's calls per minute for an organization of `target` (its share of `apiLimit`).
    pub fn budget_per_minute(&self, target: &MakeTarget, org: i64) -> u32 {
        self.pacer.budget(self.api_limit(target, org))
    }

    /// How long to wait before attempt `attempt + 1` (attempt counts from 1).
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra;
        }
        let exp = self.config.base_delay.saturating_mul(2u32.saturating_pow(attempt - 1)).min(self.config.max_delay);
        // ±20 % jitter so that many clients do not retry in lockstep.
        exp.mul_f64(rand::random_range(0.8..=1.2))
    }

    /// One call with pacing and retries; `org` is the organization the call counts against.
    async fn call<T: DeserializeOwned>(
        &self,
        target: &MakeTarget,
        org: i64,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, MakeError> {
        let request = Request { method, path, query, retry: Retry::Any, on_rate_limit: OnRateLimit::Wait };
        self.call_with(target, org, request).await
    }

    async fn call_with<T: DeserializeOwned>(
        &self,
        target: &MakeTarget,
        org: i64,
        request: Request<'_>,
    ) -> Result<T, MakeError> {
        let Request { method, path, query, retry, on_rate_limit } = request;
        let url = reqwest::Url::parse(&format!("{}{path}", target.base_url))
            .map_err(|e| MakeError::Transport(format!("the connection's base URL is not a URL ({e})")))?;
        // Literal addresses never reach the resolver: judge them here, before any request.
        self.policy.check_request(&url).map_err(|r| MakeError::Refused(Refused::from(r).to_string()))?;
        let mut auth = HeaderValue::from_str(&format!("{} {}", target.auth_kind.scheme(), target.token.expose()))
            .map_err(|_| MakeError::Transport("the token contains characters not allowed in a header".into()))?;
        auth.set_sensitive(true);
        let key = target.pace_key(org);
        let class = endpoint_class(&method, path);
        let clock = self.pacer.clock().clone();
        let (mut attempt, mut limited) = (0, 0);
        loop {
            attempt += 1;
            let limit = self.api_limit(target, org);
            self.pacer.admit(&key, limit).await.map_err(|e| MakeError::Pacing(e.to_string()))?;
            if let Some(log) = &target.calls {
                log.record(class);
            }
            let started = std::time::Instant::now();
            let sent = self
                .http
                .request(method.clone(), url.clone())
                .query(query)
                .header(AUTHORIZATION, auth.clone())
                .send()
                .await;
            crate::monitoring::make_request(class, request_outcome(&sent), started.elapsed());
            let (err, retry_after) = match sent {
                Ok(resp) if resp.status().is_success() => {
                    let bytes = resp.bytes().await.map_err(|e| MakeError::Transport(e.to_string()))?;
                    tracing::debug!(%method, path, attempt, "make call ok");
                    return serde_json::from_slice(&bytes).map_err(|e| decode_error(&method, path, &e));
                }
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = retry_after(resp.headers().get(RETRY_AFTER), clock.now());
                    let bytes = resp.bytes().await.unwrap_or_default();
                    let body = Box::new(error_body(&bytes, target.token.expose()));
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        // Make's window is spent for the whole organization: every caller waits it out.
                        if let Some(log) = &target.calls {
                            log.rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        limited += 1;
                        let wait = retry_after.unwrap_or(self.config.rate_limit_wait);
                        self.pacer.hold(&key, limit, wait).await.map_err(|e| MakeError::Pacing(e.to_string()))?;
                        let err = MakeError::RateLimited { organization: org, wait, body };
                        tracing::warn!(%method, path, organization = org, wait_ms = wait.as_millis() as u64,
                                       error = %err, "Make's API limit is spent; holding this organization's calls");
                        if wait > self.config.max_retry_after {
                            // Longer than a call should stall: give up now (the hold stays for the others).
                            return Err(MakeError::GaveUp { attempts: attempt, last: Box::new(err) });
                        }
                        if on_rate_limit == OnRateLimit::Defer || limited > self.config.max_rate_limited {
                            return Err(err);
                        }
                        attempt -= 1; // waiting out a 429 is not a failed attempt
                        continue;
                    }
                    (MakeError::Api { status: status.as_u16(), body }, retry_after)
                }
                Err(e) if e.is_timeout() => (MakeError::Timeout(self.config.request_timeout), None),
                Err(e) => match outbound::refusal_in(&e) {
                    Some(refused) => return Err(MakeError::Refused(refused.to_string())),
                    None => (MakeError::Transport(error_chain(&e)), None),
                },
            };
            tracing::info!(%method, path, attempt, error = %err, "make call failed");
            let retryable = match retry {
                Retry::Any => err.is_retryable(),
                Retry::NotProcessed => false,
            };
            if !retryable {
                return Err(err);
            }
            let too_long = retry_after.is_some_and(|ra| ra > self.config.max_retry_after);
            if attempt >= self.config.max_attempts || too_long {
                return Err(MakeError::GaveUp { attempts: attempt, last: Box::new(err) });
            }
            clock.sleep(self.backoff(attempt, retry_after)).await;
        }
    }

    /// Every item of a paged list endpoint (`pg[offset]`/`pg[limit]` [DOC pagination-and-sorting]). Make
    /// returns no total by default, so each page asks for one item more than it keeps: a page that brings
    /// the extra item is not the last, and a list of exactly N pages costs N calls, not N + 1 (the extra
    /// item is read again as the first of the next page).
    async fn all_pages<P: DeserializeOwned, T>(
        &self,
        target: &MakeTarget,
        org: i64,
        path: &str,
        query: &[(&str, String)],
        items: impl Fn(P) -> Vec<T>,
    ) -> Result<Vec<T>, MakeError> {
        let limit = self.config.page_size.max(1);
        let mut out = Vec::new();
        for page in 0u32.. {
            let mut q = query.to_vec();
            q.push(("pg[offset]", (page * limit).to_string()));
            q.push(("pg[limit]", (limit + 1).to_string()));
            let mut got = items(self.call::<P>(target, org, Method::GET, path, &q).await?);
            let more = got.len() > limit as usize;
            got.truncate(limit as usize);
            out.extend(got);
            if !more || page >= 100_000 {
                break;
            }
        }
        Ok(out)
    }

    pub async fn organization(&self, t: &MakeTarget, org: i64) -> Result<Organization, MakeError> {
        let o: OrganizationEnvelope = self.call(t, org, Method::GET, &format!("/organizations/{org}"), &[]).await?;
        if let Some(limit) = o.organization.license.as_ref().and_then(|l| l.api_limit) {
            self.set_api_limit(t, org, u32::try_from(limit).unwrap_or(u32::MAX).max(1));
        }
        Ok(o.organization)
    }

    /// The organization's teams, private spaces included (`includePrivateSpaces=true` [SDK teams.ts]:
    /// without it their usage would be missing), only the columns a sync needs.
    pub async fn teams(&self, t: &MakeTarget, org: i64) -> Result<Vec<Team>, MakeError> {
        let q = [
            ("organizationId", org.to_string()),
            ("includePrivateSpaces", "true".to_owned()),
            ("cols[]", "id".to_owned()),
            ("cols[]", "name".to_owned()),
        ];
        self.all_pages(t, org, "/teams", &q, |p: TeamsPage| p.teams).await
    }

    /// The organization's scenarios, only the columns a sync needs [DOC filtering: `cols[]`].
    pub async fn scenarios(&self, t: &MakeTarget, org: i64) -> Result<Vec<Scenario>, MakeError> {
        let mut q = vec![("organizationId", org.to_string())];
        for col in ["id", "name", "teamId", "folderId", "isActive", "isPaused", "isinvalid", "scheduling"] {
            q.push(("cols[]", col.to_owned()));
        }
        self.all_pages(t, org, "/scenarios", &q, |p: ScenariosPage| p.scenarios).await
    }

    pub async fn scenario(&self, t: &MakeTarget, org: i64, scenario: i64) -> Result<Scenario, MakeError> {
        let s: ScenarioEnvelope = self.call(t, org, Method::GET, &format!("/scenarios/{scenario}"), &[]).await?;
        Ok(s.scenario)
    }

    /// Daily usage of the last 30 days, with day boundaries in the organization's time zone.
    pub async fn usage(&self, t: &MakeTarget, org: i64, of: UsageOf) -> Result<Vec<UsageDay>, MakeError> {
        self.usage_with(t, org, of, OnRateLimit::Wait).await
    }

    /// [`Self::usage`], choosing what a 429 does (a backfill defers, a core read waits).
    pub async fn usage_with(
        &self,
        t: &MakeTarget,
        org: i64,
        of: UsageOf,
        on_rate_limit: OnRateLimit,
    ) -> Result<Vec<UsageDay>, MakeError> {
        let path = match of {
            UsageOf::Organization => format!("/organizations/{org}/usage"),
            UsageOf::Team(id) => format!("/teams/{id}/usage"),
            UsageOf::Scenario(id) => format!("/scenarios/{id}/usage"),
        };
        let q = [("organizationTimezone", "true".to_owned())];
        let request = Request { method: Method::GET, path: &path, query: &q, retry: Retry::Any, on_rate_limit };
        let u: UsageEnvelope = self.call_with(t, org, request).await?;
        Ok(u.data)
    }

    /// Per-scenario consumption in the current reset period, for one team.
    pub async fn consumptions(&self, t: &MakeTarget, org: i64, team: i64) -> Result<ConsumptionsEnvelope, MakeError> {
        let q = [("teamId", team.to_string()), ("organizationId", org.to_string())];
        self.call(t, org, Method::GET, "/scenarios/consumptions", &q).await
    }

    /// The token's scopes [SDK test/mocks/users/current-authorization.json]; counted against `org`.
    pub async fn token_scopes(&self, t: &MakeTarget, org: i64) -> Result<Vec<String>, MakeError> {
        let a: CurrentAuthorizationEnvelope =
            self.call(t, org, Method::GET, "/users/me/current-authorization", &[]).await?;
        Ok(a.authorization.scope)
    }

    /// The IANA name of Make timezone `id`, from `GET /enums/timezones` (read once per Make host).
    pub async fn timezone_name(&self, t: &MakeTarget, org: i64, id: i64) -> Result<Option<String>, MakeError> {
        let mut cache = self.timezones.lock().await;
        if let Some(names) = cache.get(&t.base_url) {
            return Ok(names.get(&id).cloned());
        }
        let z: TimezonesEnvelope = self.call(t, org, Method::GET, "/enums/timezones", &[]).await?;
        let names: HashMap<i64, String> = z.timezones.into_iter().filter_map(|e| Some((e.id, e.code?))).collect();
        let name = names.get(&id).cloned();
        cache.insert(t.base_url.clone(), names);
        Ok(name)
    }

    /// Activate (`true`, `POST …/start`) or deactivate (`false`, `POST …/stop`) a scenario; returns the
    /// state Make reports afterwards. A 429 is waited out (Make did not act); after a timeout or a 5xx the
    /// change may have happened, so the caller reads the scenario before asking again.
    pub async fn set_scenario_active(
        &self,
        t: &MakeTarget,
        org: i64,
        scenario: i64,
        active: bool,
    ) -> Result<bool, MakeError> {
        if t.lacks_scope(WRITE_SCOPE) {
            return Err(MakeError::MissingScope(WRITE_SCOPE));
        }
        let verb = if active { "start" } else { "stop" };
        let path = format!("/scenarios/{scenario}/{verb}");
        let s: ScenarioEnvelope = self
            .call_with(
                t,
                org,
                Request {
                    method: Method::POST,
                    path: &path,
                    query: &[],
                    retry: Retry::NotProcessed,
                    on_rate_limit: OnRateLimit::Wait,
                },
            )
            .await?;
        Ok(s.scenario.is_active.unwrap_or(active))
    }
}

/// One call to Make: what to ask and how to handle failures.
struct Request<'a> {
    method: Method,
    path: &'a str,
    query: &'a [(&'a str, String)],
    retry: Retry,
    on_rate_limit: OnRateLimit,
}

/// Which failures a call retries by itself (a 429 is always waited out: Make did not act).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Every retryable failure (reads: repeating them is harmless).
    Any,
    /// None: a state change that timed out or met a 5xx may have taken effect, so the caller reads the
    /// state before deciding to send it again.
    NotProcessed,
}

/// Which usage series to read.
#[derive(Debug, Clone, Copy)]
pub enum UsageOf {
    Organization,
    Team(i64),
    Scenario(i64),
}

/// The `outcome` label of a Make request in the metrics.
fn request_outcome(sent: &Result<reqwest::Response, reqwest::Error>) -> &'static str {
    match sent {
        Ok(r) if r.status().is_success() => "ok",
        Ok(r) if r.status().as_u16() == 429 => "rate_limited",
        Ok(r) if r.status().is_client_error() => "client_error",
        Ok(_) => "server_error",
        Err(e) if e.is_timeout() => "timeout",
        Err(_) => "transport",
    }
}

/// `Retry-After` as seconds or an HTTP date (Make documents none; the official SDK honours it [SDK src/make.ts]).
fn retry_after(v: Option<&HeaderValue>, now: jiff::Timestamp) -> Option<Duration> {
    let s = v?.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(s).ok()?.timestamp();
    Some(Duration::try_from(when.duration_since(now)).unwrap_or(Duration::ZERO))
}

/// A transport error with its causes ("error sending request: connection refused"). URLs carry no
/// secrets (the token travels in a header).
fn error_chain(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

impl From<StatusCode> for MakeError {
    fn from(s: StatusCode) -> Self {
        MakeError::Api { status: s.as_u16(), body: Box::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_become_https_base_urls() {
        let p = OutboundPolicy::default();
        let local = OutboundPolicy::ALLOW_LOOPBACK;
        assert_eq!(api_base_url("eu1.make.com", &p).unwrap(), "https://eu1.make.com/api/v2");
        assert_eq!(api_base_url("https://Make.Example.com:8443/", &p).unwrap(), "https://make.example.com:8443/api/v2");
        assert_eq!(api_base_url("https://us2.make.com/api/v2", &p).unwrap(), "https://us2.make.com/api/v2");
        assert_eq!(api_base_url("https://eu1.make.com:443", &p).unwrap(), "https://eu1.make.com/api/v2");
        assert_eq!(api_base_url("http://127.0.0.1:4010", &local).unwrap(), "http://127.0.0.1:4010/api/v2");
        assert_eq!(api_base_url("http://localhost:4010", &local).unwrap(), "http://localhost:4010/api/v2");
        for bad in
            ["http://eu1.make.com", "ftp://x", "", "eu1.make.com/evil", "user@host", "https://a b", "https://[::1"]
        {
            let e = api_base_url(bad, &local).unwrap_err();
            assert_eq!(e.field, "zone", "{bad}");
        }
        for z in ZONES {
            assert!(api_base_url(z, &p).is_ok());
        }
    }

    #[test]
    fn zones_that_name_internal_hosts_are_refused() {
        let p = OutboundPolicy::default();
        for (zone, says) in [
            ("http://127.0.0.1:4010", "127.0.0.1 is a loopback address"),
            ("https://10.0.0.1", "10.0.0.1 is a private address"),
            ("https://169.254.169.254", "169.254.169.254 is a cloud metadata address"),
            ("https://[::1]", "::1 is a loopback address"),
            ("metadata.google.internal", "metadata.google.internal is a cloud metadata name"),
            ("https://2130706433", "127.0.0.1 is a loopback address"),
            ("localhost:8443", "localhost is a loopback name"),
            ("make.corp.internal", "make.corp.internal is a private name"),
        ] {
            let e = api_base_url(zone, &p).unwrap_err();
            assert_eq!(e.field, "zone");
            assert!(
                e.rule.contains("must not point at a private, loopback, link-local or metadata address"),
                "{zone}: {e}"
            );
            assert!(e.rule.contains(says), "{zone}: {e}");
        }
        let e = api_base_url("http://127.0.0.1:4010", &p).unwrap_err();
        assert!(e.rule.contains("outbound.allow_loopback"), "{e}");
        let private = OutboundPolicy { allow_loopback: false, allow_private: true };
        assert_eq!(api_base_url("https://10.0.0.1", &private).unwrap(), "https://10.0.0.1/api/v2");
        assert!(api_base_url("http://10.0.0.1", &private).unwrap_err().rule.contains("plain http"));
        assert!(api_base_url("https://169.254.169.254", &private).is_err());
    }

    #[tokio::test]
    async fn calls_to_refused_hosts_send_nothing_and_are_not_retried() {
        let c = MakeClient::new(MakeClientConfig::default(), OutboundPolicy::default()).unwrap();
        for base_url in ["http://127.0.0.1:9/api/v2", "https://169.254.169.254/api/v2", "https://metadata/api/v2"] {
            let t = MakeTarget::new(base_url.into(), AuthKind::ApiToken, SecretString::new("secret-token-value"));
            let e = c.organization(&t, 1).await.unwrap_err();
            assert!(matches!(e, MakeError::Refused(_)), "{base_url}: {e:?}");
            assert!(e.to_string().starts_with("refused: "), "{e}");
            assert!(!e.to_string().contains("secret-token-value"));
        }
        // A stored connection to a loopback name is refused by the resolver at call time.
        let t = MakeTarget::new(
            "http://localhost:9/api/v2".into(),
            AuthKind::ApiToken,
            SecretString::new("secret-token-value"),
        );
        let e = c.organization(&t, 1).await.unwrap_err();
        assert!(e.to_string().starts_with("refused: localhost resolves only to loopback"), "{e}");
    }

    #[test]
    fn pacing_keeps_every_minute_under_the_limit() {
        for limit in [2u32, 60, 120, 240, 1000] {
            let budget = pacer::budget_per_minute(limit, 1.0);
            let (period_us, tolerance_us) = pacer::gcra(budget);
            // At most burst + 60 s / spacing calls in any minute (GCRA), where burst = 1 + tolerance / spacing.
            let per_minute = 60_000_000 / period_us;
            let burst = 1 + tolerance_us / period_us;
            assert!(per_minute + burst <= i64::from(limit), "{limit}");
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        let c = MakeClient::new(
            MakeClientConfig {
                base_delay: Duration::from_millis(100),
                max_delay: Duration::from_millis(1000),
                ..Default::default()
            },
            OutboundPolicy::default(),
        )
        .unwrap();
        for (attempt, nominal) in [(1, 100u64), (2, 200), (3, 400), (5, 1000), (9, 1000)] {
            let d = c.backoff(attempt, None).as_millis() as u64;
            assert!((nominal * 8 / 10..=nominal * 12 / 10).contains(&d), "attempt {attempt}: {d} ms");
        }
        assert_eq!(c.backoff(1, Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert_eq!(
            retry_after(Some(&HeaderValue::from_static("3")), jiff::Timestamp::now()),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(Some(&HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT")), jiff::Timestamp::now()),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(Some(&HeaderValue::from_static("soon")), jiff::Timestamp::now()), None);
    }

    #[test]
    fn errors_carry_makes_body() {
        let e = MakeError::Api {
            status: 403,
            body: Box::new(MakeErrorBody {
                message: Some("Permission denied".into()),
                detail: Some("Access denied.".into()),
                code: Some("SC403".into()),
                ..Default::default()
            }),
        };
        assert_eq!(e.to_string(), "Make answered 403: SC403 — Permission denied — Access denied.");
        let g = MakeError::GaveUp { attempts: 5, last: Box::new(e) };
        assert_eq!(g.api_error().unwrap().1.code.as_deref(), Some("SC403"));
    }
}
