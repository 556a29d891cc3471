//! Webhook notifications: the transport only — signing, one delivery attempt, the retry schedule and
//! the event body. Which events exist, when they fire and how attempts are queued and recorded live
//! elsewhere; this file knows nothing about budgets.
//!
//! - Every POST carries four headers: [`SIGNATURE_HEADER`] (`v1=<hex HMAC-SHA256>` over
//!   `"{timestamp}." + body` with the subscription's secret), [`TIMESTAMP_HEADER`] (unix seconds),
//!   [`EVENT_ID_HEADER`] (so receivers can drop duplicates: a retried event keeps its id) and
//!   [`EVENT_TYPE_HEADER`]. Receivers check them with [`verify`], which compares in constant time and
//!   refuses old timestamps, so a captured request cannot be replayed later.
//! - The body ([`event_body`]) has a one-line `text`, so a Slack incoming-webhook URL works as a receiver
//!   as it is.
//! - URLs are checked when a user gives them ([`validate_url`]): https only, except plain http to loopback
//!   hosts with `outbound.allow_loopback` on, and never to an address or name the [`OutboundPolicy`] refuses
//!   (loopback, private, link-local, metadata, …; see `outbound.rs`). Before each attempt the URL is checked
//!   again, and the client's resolver admits only addresses the policy allows, so a name that resolves to an
//!   internal address now (DNS rebinding, or a URL stored while loopback was allowed) fails as a refused
//!   delivery.
//! - [`WebhookClient::deliver`] makes exactly one attempt and never panics: redirects are not followed, no
//!   proxy is used, and the outcome is an [`AttemptResult`] whose error text is short, single-line and free
//!   of the secret and the URL's path (a Slack URL's path is itself a credential).
//! - [`retry_delay`] gives the backoff between attempts; the caller owns the loop and the clock.
//!
//! Besides the signed webhook, channels of other kinds get the same event in their service's format, made
//! by pure functions from the stored event ([`Event`], summarised once by [`Summary::of`]):
//! [`slack`] (Block Kit for an incoming webhook), [`teams`] (an Adaptive Card for a Workflows webhook) and
//! [`email`] (a text/plain message, sent over SMTP with TLS). Slack and Teams POSTs go through
//! [`WebhookClient::post_json`]: the same URL checks, resolver and error scrubbing, without the signature
//! headers (their URL is the credential, and is scrubbed from errors like a secret).

pub mod email;
pub mod slack;
pub mod teams;

use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use sha2::Sha256;

use crate::outbound::{self, OutboundPolicy, Refused};

/// The signature header: `v1=<lowercase hex HMAC-SHA256>`; see [`sign`].
pub const SIGNATURE_HEADER: &str = "x-make-budget-signature";
/// The signing time, in unix seconds, decimal.
pub const TIMESTAMP_HEADER: &str = "x-make-budget-timestamp";
/// The event id; the same on every attempt of one event, so receivers can deduplicate.
pub const EVENT_ID_HEADER: &str = "x-make-budget-event-id";
/// The event type, e.g. `threshold_crossed`.
pub const EVENT_TYPE_HEADER: &str = "x-make-budget-event";

/// The longest webhook URL accepted, in characters.
const MAX_URL_CHARS: usize = 2048;
/// How much of a failed response's body goes into [`AttemptResult::error`], in characters.
const MAX_BODY_SNIPPET_CHARS: usize = 300;
/// How many bytes of a failed response's body are read at most (enough for the snippet in any UTF-8).
const MAX_BODY_READ_BYTES: usize = MAX_BODY_SNIPPET_CHARS * 4;
/// The longest error text for failures without a response.
const MAX_ERROR_CHARS: usize = 300;
/// Retry jitter: the delay is shortened by up to this fraction, so it never exceeds the cap.
const JITTER: f64 = 0.2;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// HMAC-SHA256 over `"{timestamp}." + body` with `secret`; returns the header value `"v1=<lowercase hex>"`.
///
/// The timestamp is part of the signed message, so a receiver that checks its age (see [`verify`]) cannot
/// be fed an old request again.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("v1={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

/// Why [`verify`] refused a request.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// A header is absent or not in the expected form; nothing was compared.
    #[error(
        "the signature or timestamp header is missing or malformed (expected `x-make-budget-signature: v1=<64 hex digits>` and `x-make-budget-timestamp: <unix seconds>`)"
    )]
    MissingOrMalformed,
    /// Well-formed, but not made with this secret over this body and timestamp.
    #[error("the signature does not match (wrong secret, or the body or timestamp was altered)")]
    Mismatch,
    /// Genuine, but signed too long ago (or too far in the future): a replay or a badly wrong clock.
    #[error("the signature is genuine but its timestamp is outside the accepted window (replay or clock skew)")]
    Stale,
}

/// For receivers (and tests): check a request's signature and timestamp headers against its raw body.
///
/// The signature is compared in constant time (`hmac`'s `verify_slice`). The timestamp must be the
/// canonical decimal form (as [`sign`] uses it) and within `tolerance_secs` of `now`, either way
/// (`|now - timestamp| <= tolerance_secs`; a negative tolerance counts as 0). The signature is checked
/// first, so [`VerifyError::Stale`] means the request was genuine but old.
pub fn verify(
    secret: &[u8],
    timestamp_header: &str,
    body: &[u8],
    signature_header: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let ts_text = timestamp_header.trim();
    let timestamp: i64 = ts_text.parse().map_err(|_| VerifyError::MissingOrMalformed)?;
    if timestamp.to_string() != ts_text {
        return Err(VerifyError::MissingOrMalformed);
    }
    let tag = signature_header
        .trim()
        .strip_prefix("v1=")
        .and_then(|h| hex::decode(h).ok())
        .filter(|t| t.len() == 32)
        .ok_or(VerifyError::MissingOrMalformed)?;
    mac(secret, timestamp, body).verify_slice(&tag).map_err(|_| VerifyError::Mismatch)?;
    if now.abs_diff(timestamp) > tolerance_secs.max(0).unsigned_abs() {
        return Err(VerifyError::Stale);
    }
    Ok(())
}

/// A webhook URL as it may be shown: scheme, host and port only. Many webhook URLs carry their credential
/// in the path or query (Slack's, for one), so the rest is replaced by `/…`.
pub fn masked_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}/…", u.scheme(), u.host_str().unwrap_or("?"))
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// The rules of form every webhook URL must meet; returns it parsed, or the rule it breaks.
fn parse_url(url: &str) -> Result<Url, String> {
    let url = url.trim();
    let too_long = || format!("must be at most {MAX_URL_CHARS} characters");
    if url.chars().count() > MAX_URL_CHARS {
        return Err(too_long());
    }
    let parsed = Url::parse(url).map_err(|e| format!("must be an absolute http(s) URL ({e})"))?;
    let scheme = parsed.scheme();
    if scheme != "https" && scheme != "http" {
        return Err("the scheme must be https (plain http is allowed only for loopback hosts)".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not contain credentials (user:pass@); the signing secret authenticates requests".into());
    }
    if parsed.host().is_none() {
        return Err("must name a host".into());
    }
    if parsed.fragment().is_some() {
        return Err("must not contain a fragment (#…)".into());
    }
    // Percent-encoding can lengthen a URL: the normalised form must fit too.
    if parsed.as_str().chars().count() > MAX_URL_CHARS {
        return Err(too_long());
    }
    Ok(parsed)
}

const HTTPS_ONLY: &str = "must use https; plain http is allowed only for loopback hosts (localhost, 127.0.0.0/8, ::1) \
     with outbound.allow_loopback on";

/// Check a webhook URL given by a user and return it normalised (lower-case scheme and host, a path of
/// at least `/`).
///
/// Rules: an absolute `http(s)` URL of at most 2048 characters, with a host, without credentials
/// (`user:pass@`) and without a fragment; not pointing at an address or name `policy` refuses (a literal
/// internal address, `localhost`, `metadata.google.internal`, …; see `outbound.rs`); `https` is required
/// except for loopback hosts (`localhost`, `127.0.0.0/8`, `::1`) when `policy.allow_loopback` is on, where
/// plain `http` is allowed for local receivers. The error text names the rule; the caller prefixes the field
/// name. The URL is not resolved here: DNS can change, so deliveries check the addresses they connect to.
pub fn validate_url(url: &str, policy: &OutboundPolicy) -> Result<String, String> {
    let parsed = parse_url(url)?;
    policy.check_host(&parsed).map_err(|r| r.rule())?;
    if parsed.scheme() == "http" && !(policy.allow_loopback && outbound::is_loopback_host(&parsed)) {
        return Err(HTTPS_ONLY.into());
    }
    Ok(String::from(parsed))
}

/// Why a stored URL cannot be delivered to.
#[derive(Debug)]
enum UrlProblem {
    /// It breaks a rule of form (scheme, credentials, length, …); the text names the rule.
    Invalid(String),
    /// It points where the outbound policy refuses to connect.
    Refused(outbound::Refusal),
}

/// The check before each attempt: the rules of form, plain http only to a loopback host, and a literal
/// address or metadata name the policy refuses. A loopback *name* passes here when loopback is not allowed:
/// the resolver refuses the addresses it resolves to, which is the check that counts.
fn request_url(url: &str, policy: &OutboundPolicy) -> Result<Url, UrlProblem> {
    let parsed = parse_url(url).map_err(UrlProblem::Invalid)?;
    policy.check_request(&parsed).map_err(UrlProblem::Refused)?;
    if parsed.scheme() == "http" && !outbound::is_loopback_host(&parsed) {
        return Err(UrlProblem::Invalid(HTTPS_ONLY.into()));
    }
    Ok(parsed)
}

/// The JSON body of an event, in this field order.
#[derive(serde::Serialize)]
struct EventBody<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    occurred_at: &'a str,
    text: &'a str,
    data: &'a serde_json::Value,
}

/// The JSON body of an event: `{"id","type","occurred_at","text","data"}` in that order, serialised
/// compactly.
///
/// `text` is a one-line summary, the field Slack incoming webhooks display; line breaks in it are replaced
/// by spaces so that it stays one line. `occurred_at` is passed through as given (RFC 3339 by convention).
pub fn event_body(id: &str, event_type: &str, occurred_at: &str, text: &str, data: &serde_json::Value) -> Vec<u8> {
    let text = text.replace(['\r', '\n'], " ");
    let body = EventBody { id, event_type, occurred_at, text: &text, data };
    serde_json::to_vec(&body).expect("string fields and a JSON value always serialise")
}

/// Delay before retry number `attempt` (1 = the first retry after the first failure).
///
/// Exponential: `base`, `2 × base`, `4 × base`, …, capped at `max`; then shortened by a random 0–20 % so
/// that receivers coming back from an outage are not hit in lockstep. The result never exceeds `max`.
/// `attempt` 0 is treated as 1; no input panics.
pub fn retry_delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let doublings = attempt.max(1) - 1;
    let nominal = base.saturating_mul(2u32.saturating_pow(doublings)).min(max);
    let factor = 1.0 - rand::random_range(0.0..=JITTER);
    Duration::try_from_secs_f64(nominal.as_secs_f64() * factor).map_or(nominal, |d| d.min(nominal))
}

/// What makes a POST a signed webhook delivery.
#[derive(Debug, Clone, Copy)]
struct Signing<'a> {
    event_type: &'a str,
    event_id: &'a str,
    now_unix: i64,
}

/// A stored event, as [`event_body`] wrote it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub occurred_at: String,
    pub text: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Event {
    /// Read a stored body; `None` if it is not one.
    pub fn parse(body: &str) -> Option<Self> {
        serde_json::from_str(body).ok()
    }
}

/// The most scenarios a formatted message lists; the rest are counted.
pub const MAX_LISTED_SCENARIOS: usize = 10;

/// What every channel format shows of an event: a title, the budget, the one-line text, the figures and,
/// for plans, the plan and its scenarios. Read leniently from the event's `data`: a field that is absent
/// is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// e.g. "Threshold crossed".
    pub title: String,
    /// The budget's name, else its id.
    pub budget: Option<String>,
    /// The event's one-line text.
    pub text: String,
    /// (label, value) pairs, e.g. ("Spent", "120").
    pub figures: Vec<(String, String)>,
    /// The plan's scenarios as "name (status)", at most [`MAX_LISTED_SCENARIOS`].
    pub scenarios: Vec<String>,
    /// How many scenarios were not listed.
    pub more_scenarios: usize,
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: String,
}

impl Summary {
    pub fn of(e: &Event) -> Self {
        use crate::domain::channel::EventType;
        let d = &e.data;
        let text_of = |k: &str| match d.get(k) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(v @ serde_json::Value::Number(_)) => Some(v.to_string()),
            Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
            _ => None,
        };
        let title = EventType::parse(&e.event_type).map_or_else(|| e.event_type.clone(), |t| t.title().to_owned());
        let budget = text_of("budget_name").or_else(|| text_of("budget_id"));
        let mut figures = Vec::new();
        let mut add = |label: &str, v: Option<String>| {
            if let Some(v) = v {
                figures.push((label.to_owned(), v));
            }
        };
        add("Severity", text_of("severity"));
        add("Threshold", text_of("label"));
        add("Basis", text_of("basis"));
        add("Value", text_of("value"));
        add("Threshold amount", text_of("amount"));
        add(
            "Probability over limit",
            d.get("probability_over_limit_permille")
                .and_then(serde_json::Value::as_i64)
                .map(|p| format!("{}.{} %", p / 10, (p % 10).abs())),
        );
        let plan = d.get("plan_id").or_else(|| d.get("items").and(d.get("id"))).and_then(|v| v.as_str());
        add("Plan", plan.map(str::to_owned));
        add("Plan state", text_of("state"));
        add("Mode", text_of("mode"));
        add("Expected saving", text_of("expected_saving"));
        add("Period", text_of("period_key"));
        add("By", text_of("by"));
        add("Reason", text_of("reason"));
        add("Why", text_of("why"));
        let items = d.get("items").and_then(|v| v.as_array()).map(Vec::as_slice).unwrap_or_default();
        let scenarios = items
            .iter()
            .take(MAX_LISTED_SCENARIOS)
            .map(|i| {
                let name = i.get("name").and_then(|v| v.as_str()).unwrap_or("?");
                match i.get("status").and_then(|v| v.as_str()) {
                    Some(s) => format!("{name} ({s})"),
                    None => name.to_owned(),
                }
            })
            .collect();
        Self {
            title,
            budget,
            text: e.text.clone(),
            figures,
            scenarios,
            more_scenarios: items.len().saturating_sub(MAX_LISTED_SCENARIOS),
            event_id: e.id.clone(),
            event_type: e.event_type.clone(),
            occurred_at: e.occurred_at.clone(),
        }
    }

    /// "Title: budget", or the title alone.
    pub fn headline(&self) -> String {
        match &self.budget {
            Some(b) => format!("{}: {b}", self.title),
            None => self.title.clone(),
        }
    }
}

/// At most `max` characters of `s` on one line; an ellipsis marks a cut.
pub fn clip(s: &str, max: usize) -> String {
    let line = s.replace(['\r', '\n'], " ");
    if line.chars().count() <= max {
        return line;
    }
    let mut out: String = line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The outcome of one delivery attempt, ready to be stored beside the event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttemptResult {
    /// The receiver answered 2xx.
    pub delivered: bool,
    /// The HTTP status, when the receiver answered at all.
    pub status: Option<u16>,
    /// Why it was not delivered: the status and up to 300 characters of the response body, a timeout, or a
    /// connection error. Single-line; never contains the secret or the URL. `None` when delivered.
    pub error: Option<String>,
    /// Wall time of the attempt, in milliseconds.
    pub duration_ms: u64,
}

/// Sends webhook notifications; one per process, cheap to clone.
#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    timeout: Duration,
    policy: OutboundPolicy,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("timeout", &self.timeout)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A single line of at most `max` characters, with every occurrence of the secret removed.
fn scrub(text: &str, secret: &[u8], max: usize) -> String {
    let text = match std::str::from_utf8(secret) {
        Ok(s) if !s.is_empty() => text.replace(s, "[redacted]"),
        _ => text.to_owned(),
    };
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(max).collect()
}

/// A transport error with its causes, without the URL.
fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

impl WebhookClient {
    /// A client with this per-request timeout (connecting, sending and reading the answer), rustls, no
    /// redirects followed (a redirect counts as a failure with its status), no proxy, connections only to
    /// addresses `policy` admits (names resolved by the system resolver through it) and the User-Agent
    /// `make-budget-mcp/<version>`.
    ///
    /// Panics only if the TLS backend cannot be initialised, as `reqwest::Client::new` does.
    pub fn new(timeout: Duration, policy: OutboundPolicy) -> Self {
        let http = policy
            .client_builder()
            .timeout(timeout)
            .user_agent(concat!("make-budget-mcp/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client (rustls) initialises");
        Self { http, timeout, policy }
    }

    /// One POST of `body` (`Content-Type: application/json`) to `url` with the four `x-make-budget-*`
    /// headers, signed with `secret` at `now_unix`.
    ///
    /// 2xx means delivered. Any other status (redirects included), a timeout, a connection error, a URL that
    /// breaks the rules of [`validate_url`], a host the outbound policy refuses (the error then starts with
    /// `refused:`) or an id or type that cannot be a header value means not delivered, with the
    /// status when there was one and a short error text. Never panics; retrying is the caller's decision
    /// (see [`retry_delay`]), and safe, since receivers deduplicate on the event id.
    pub async fn deliver(
        &self,
        url: &str,
        secret: &[u8],
        event_type: &str,
        event_id: &str,
        body: &[u8],
        now_unix: i64,
    ) -> AttemptResult {
        let signing = Signing { event_type, event_id, now_unix };
        self.timed(url, secret, Some(signing), body).await
    }

    /// One POST of `body` (`Content-Type: application/json`) to `url` without signature headers, for
    /// services whose URL is itself the credential (Slack and Teams webhooks). Outcomes as for
    /// [`WebhookClient::deliver`]; the URL, which `credential` names, never appears in the error.
    pub async fn post_json(&self, url: &str, credential: &[u8], body: &[u8]) -> AttemptResult {
        self.timed(url, credential, None, body).await
    }

    async fn timed(&self, url: &str, secret: &[u8], signing: Option<Signing<'_>>, body: &[u8]) -> AttemptResult {
        let started = Instant::now();
        let (status, error) = self.attempt(url, secret, signing, body).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let delivered = error.is_none();
        let (event_type, event_id) = signing.map_or(("", ""), |s| (s.event_type, s.event_id));
        tracing::debug!(event_type, event_id, delivered, status, duration_ms, "webhook attempt");
        AttemptResult { delivered, status, error, duration_ms }
    }

    /// The status, if any, and the error, if not delivered.
    async fn attempt(
        &self,
        url: &str,
        secret: &[u8],
        signing: Option<Signing<'_>>,
        body: &[u8],
    ) -> (Option<u16>, Option<String>) {
        let url = match request_url(url, &self.policy) {
            Ok(u) => u,
            Err(UrlProblem::Invalid(rule)) => {
                return (None, Some(scrub(&format!("invalid webhook URL: {rule}"), secret, MAX_ERROR_CHARS)));
            }
            Err(UrlProblem::Refused(r)) => {
                return (None, Some(scrub(&Refused::from(r).to_string(), secret, MAX_ERROR_CHARS)));
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(Signing { event_type, event_id, now_unix }) = signing {
            headers.insert(TIMESTAMP_HEADER, HeaderValue::from(now_unix));
            for (name, value, what) in [
                (SIGNATURE_HEADER, sign(secret, now_unix, body), "signature"),
                (EVENT_ID_HEADER, event_id.to_owned(), "event id"),
                (EVENT_TYPE_HEADER, event_type.to_owned(), "event type"),
            ] {
                match HeaderValue::from_str(&value) {
                    Ok(v) => {
                        headers.insert(name, v);
                    }
                    Err(_) => return (None, Some(format!("the {what} contains characters not allowed in a header"))),
                }
            }
        }
        let sent = self.http.post(url).headers(headers).body(body.to_vec()).send().await;
        match sent {
            Ok(resp) if resp.status().is_success() => (Some(resp.status().as_u16()), None),
            Ok(resp) => {
                let status = resp.status();
                let snippet = body_snippet(resp, secret).await;
                (Some(status.as_u16()), Some(status_error(status, &snippet)))
            }
            Err(e) if e.is_timeout() => (None, Some(format!("timed out after {} ms", self.timeout.as_millis()))),
            Err(e) => match outbound::refusal_in(&e) {
                Some(refused) => (None, Some(scrub(&refused.to_string(), secret, MAX_ERROR_CHARS))),
                None => (None, Some(scrub(&format!("cannot connect: {}", error_chain(e)), secret, MAX_ERROR_CHARS))),
            },
        }
    }
}

/// Up to [`MAX_BODY_SNIPPET_CHARS`] characters of a response body, single-line and scrubbed; reads at most
/// [`MAX_BODY_READ_BYTES`] and stops early on a read error or the timeout.
async fn body_snippet(mut resp: reqwest::Response, secret: &[u8]) -> String {
    let mut buf = Vec::new();
    while buf.len() < MAX_BODY_READ_BYTES {
        match resp.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    buf.truncate(MAX_BODY_READ_BYTES);
    scrub(&String::from_utf8_lossy(&buf), secret, MAX_BODY_SNIPPET_CHARS)
}

fn status_error(status: StatusCode, snippet: &str) -> String {
    let redirect = if status.is_redirection() { " (redirects are not followed)" } else { "" };
    if snippet.is_empty() { format!("HTTP {status}{redirect}") } else { format!("HTTP {status}{redirect}: {snippet}") }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap as AxumHeaders, StatusCode as AxumStatus};
    use axum::routing::post;

    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    /// The test receivers listen on loopback.
    const LOCAL: OutboundPolicy = OutboundPolicy::ALLOW_LOOPBACK;

    #[test]
    fn shown_urls_hide_path_and_query() {
        assert_eq!(masked_url("https://hooks.slack.com/services/T0/B0/secret?x=1"), "https://hooks.slack.com/…");
        assert_eq!(masked_url("http://127.0.0.1:9000/hook"), "http://127.0.0.1:9000/…");
        assert_eq!(masked_url("nonsense"), "(invalid URL)");
    }

    #[test]
    fn sign_matches_a_known_answer() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"whsec_test",
        //   b"1700000000."+b"{\"id\":\"evt_1\",\"type\":\"threshold_crossed\"}",hashlib.sha256).hexdigest())'
        let body = br#"{"id":"evt_1","type":"threshold_crossed"}"#;
        assert_eq!(
            sign(SECRET, 1_700_000_000, body),
            "v1=7ad3cd36823e50bd56c3a9e7398a748a1ddf9f9846cd94aea6be6c5a0e1ba4d3"
        );
    }

    #[test]
    fn verify_accepts_genuine_and_refuses_the_rest() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_700_000_000;
        let sig = sign(SECRET, now, body);
        let ts = now.to_string();
        assert_eq!(verify(SECRET, &ts, body, &sig, now, 300), Ok(()));
        assert_eq!(verify(SECRET, &ts, body, &sig, now + 300, 300), Ok(()));
        assert_eq!(verify(SECRET, &ts, body, &sig, now - 300, 300), Ok(()));
        assert_eq!(verify(SECRET, &format!(" {ts} "), body, &format!(" {sig}"), now, 300), Ok(()));

        assert_eq!(verify(SECRET, &ts, br#"{"id":"evt_2"}"#, &sig, now, 300), Err(VerifyError::Mismatch));
        assert_eq!(verify(b"another secret", &ts, body, &sig, now, 300), Err(VerifyError::Mismatch));
        // The timestamp is signed: moving it forward to look fresh breaks the signature.
        assert_eq!(verify(SECRET, &(now + 1).to_string(), body, &sig, now, 300), Err(VerifyError::Mismatch));

        assert_eq!(verify(SECRET, &ts, body, &sig, now + 301, 300), Err(VerifyError::Stale));
        assert_eq!(verify(SECRET, &ts, body, &sig, now - 301, 300), Err(VerifyError::Stale));
        assert_eq!(verify(SECRET, &ts, body, &sig, i64::MIN, 300), Err(VerifyError::Stale));

        let upper = sig.to_uppercase().replacen("V1=", "v1=", 1);
        for (t, s) in [
            ("", sig.as_str()),
            ("soon", sig.as_str()),
            ("+1700000000", sig.as_str()),
            ("01700000000", sig.as_str()),
            (ts.as_str(), ""),
            (ts.as_str(), &sig[3..]),
            (ts.as_str(), &sig.replacen("v1=", "v0=", 1)),
            (ts.as_str(), &sig[..sig.len() - 2]),
            (ts.as_str(), &format!("{sig}00")),
            (ts.as_str(), &format!("v1={}", "zz".repeat(32))),
        ] {
            assert_eq!(verify(SECRET, t, body, s, now, 300), Err(VerifyError::MissingOrMalformed), "{t:?} {s:?}");
        }
        // Hex digits in either case decode to the same tag.
        assert_eq!(verify(SECRET, &ts, body, &upper, now, 300), Ok(()));
        assert!(VerifyError::Stale.to_string().contains("timestamp"));
    }

    #[test]
    fn urls_must_be_https_except_on_loopback() {
        for (given, normalised) in [
            ("https://hooks.slack.com/x", "https://hooks.slack.com/x"),
            ("  HTTPS://Hooks.Slack.com/services/T0/B0/abc?x=1 ", "https://hooks.slack.com/services/T0/B0/abc?x=1"),
            ("https://example.com", "https://example.com/"),
            ("http://127.0.0.1:9/x", "http://127.0.0.1:9/x"),
            ("http://127.1.2.3/x", "http://127.1.2.3/x"),
            ("http://localhost:8080/hook", "http://localhost:8080/hook"),
            ("http://[::1]:8080/hook", "http://[::1]:8080/hook"),
        ] {
            assert_eq!(validate_url(given, &LOCAL).as_deref(), Ok(normalised), "{given}");
        }
        for (bad, rule) in [
            ("http://example.com", "https"),
            ("http://128.0.0.1/x", "https"),
            ("http://localhost.example.com/x", "https"),
            ("http://[::2]/x", "unspecified"),
            ("ftp://x", "scheme"),
            ("javascript:alert(1)", "scheme"),
            ("not a url", "absolute"),
            ("/relative/path", "absolute"),
            ("", "absolute"),
            ("https://user:pass@hooks.slack.com/x", "credentials"),
            ("https://user@hooks.slack.com/x", "credentials"),
            ("http://user:pass@127.0.0.1/x", "credentials"),
            ("https://hooks.slack.com/x#frag", "fragment"),
        ] {
            let e = validate_url(bad, &LOCAL).unwrap_err();
            assert!(e.contains(rule), "{bad}: {e}");
        }
        let prefix = "https://hooks.slack.com/";
        let fits = format!("{prefix}{}", "a".repeat(MAX_URL_CHARS - prefix.len()));
        assert_eq!(validate_url(&fits, &LOCAL), Ok(fits.clone()));
        let e = validate_url(&format!("{fits}a"), &LOCAL).unwrap_err();
        assert!(e.contains("2048"), "{e}");
        // Percent-encoding can lengthen a URL past the limit; the normalised form is checked too.
        let grows = format!("{prefix}{}", "é".repeat(1000));
        assert!(validate_url(&grows, &LOCAL).unwrap_err().contains("2048"));
    }

    #[test]
    fn internal_addresses_and_names_are_refused_when_given() {
        let default = OutboundPolicy::default();
        for (url, class) in [
            ("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
            ("https://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254 is a cloud metadata address"),
            ("https://10.0.0.1/x", "10.0.0.1 is a private address"),
            ("https://192.168.1.1/x", "192.168.1.1 is a private address"),
            ("https://[fd00::1]/x", "fd00::1 is a unique-local address"),
            ("https://0.0.0.0/x", "0.0.0.0 is an unspecified address"),
            ("https://[::]/x", ":: is an unspecified address"),
            (
                "https://metadata.google.internal/computeMetadata/v1/",
                "metadata.google.internal is a cloud metadata name",
            ),
            ("http://localhost:5432/", "localhost is a loopback name"),
            ("http://2130706433/", "127.0.0.1 is a loopback address"),
            ("http://0x7f000001/", "127.0.0.1 is a loopback address"),
            ("https://127.0.0.1/x", "127.0.0.1 is a loopback address"),
        ] {
            let e = validate_url(url, &default).unwrap_err();
            assert!(
                e.starts_with("must not point at a private, loopback, link-local or metadata address"),
                "{url}: {e}"
            );
            assert!(e.contains(class), "{url}: {e}");
        }
        let e = validate_url("http://localhost:8080/hook", &default).unwrap_err();
        assert!(e.contains("set outbound.allow_loopback"), "{e}");
        // Loopback allowed admits loopback only; metadata stays refused whatever is allowed.
        let all = OutboundPolicy { allow_loopback: true, allow_private: true };
        assert!(validate_url("https://169.254.169.254/", &all).unwrap_err().contains("metadata"));
        assert!(validate_url("https://metadata.google.internal/", &all).unwrap_err().contains("metadata"));
        assert!(validate_url("https://10.0.0.1/", &LOCAL).unwrap_err().contains("private"));
        assert_eq!(validate_url("https://10.0.0.1/", &all).as_deref(), Ok("https://10.0.0.1/"));
        // Plain http only to loopback, and only with loopback allowed.
        assert!(validate_url("http://10.0.0.1/", &all).unwrap_err().contains("must use https"));
        assert_eq!(validate_url("http://2130706433/x", &LOCAL).as_deref(), Ok("http://127.0.0.1/x"));
    }

    #[test]
    fn event_body_is_compact_ordered_json_with_a_one_line_text() {
        let data = serde_json::json!({"budget_id": "b1", "percent": 80});
        let body = event_body("evt_1", "threshold_crossed", "2025-01-02T03:04:05Z", "Budget b1\nat 80 %", &data);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"id":"evt_1","type":"threshold_crossed","occurred_at":"2025-01-02T03:04:05Z","text":"Budget b1 at 80 %","data":{"budget_id":"b1","percent":80}}"#
        );
    }

    #[test]
    fn retry_delay_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(1000);
        let max = Duration::from_millis(10_000);
        for (attempt, nominal) in
            [(0u32, 1000u128), (1, 1000), (2, 2000), (3, 4000), (4, 8000), (5, 10_000), (64, 10_000)]
        {
            for _ in 0..50 {
                let d = retry_delay(attempt, base, max).as_millis();
                assert!((nominal * 8 / 10..=nominal).contains(&d), "attempt {attempt}: {d} ms");
            }
        }
        // The jitter is random, not a fixed factor.
        let seen: std::collections::HashSet<_> = (0..50).map(|_| retry_delay(3, base, max)).collect();
        assert!(seen.len() > 1);
        // Extreme inputs neither panic nor exceed the cap.
        assert!(retry_delay(u32::MAX, Duration::MAX, Duration::MAX) <= Duration::MAX);
        assert_eq!(retry_delay(7, Duration::ZERO, max), Duration::ZERO);
    }

    /// What the test receiver saw of one request.
    #[derive(Debug, Clone)]
    struct Seen {
        headers: AxumHeaders,
        body: Bytes,
        verified: Result<(), VerifyError>,
    }

    type Log = Arc<Mutex<Vec<Seen>>>;

    /// A receiver that verifies signatures with [`verify`] (answering 401 when they fail) and records
    /// every request, plus routes that fail in the ways a real receiver can.
    async fn receiver() -> (String, Log) {
        async fn hook(State(log): State<Log>, headers: AxumHeaders, body: Bytes) -> AxumStatus {
            let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let now = h(TIMESTAMP_HEADER).parse().unwrap_or(0);
            let verified = verify(SECRET, &h(TIMESTAMP_HEADER), &body, &h(SIGNATURE_HEADER), now, 300);
            let ok = verified.is_ok();
            log.lock().unwrap().push(Seen { headers, body, verified });
            if ok { AxumStatus::NO_CONTENT } else { AxumStatus::UNAUTHORIZED }
        }
        let log: Log = Default::default();
        let app = Router::new()
            .route("/hook", post(hook))
            .route(
                "/fail",
                post(|| async {
                    let s = String::from_utf8_lossy(SECRET);
                    (AxumStatus::INTERNAL_SERVER_ERROR, format!("database on fire\nsecret={s} {}", "x".repeat(5000)))
                }),
            )
            .route("/moved", post(|| async { (AxumStatus::FOUND, [(axum::http::header::LOCATION, "/hook")], "moved") }))
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    AxumStatus::OK
                }),
            )
            .with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), log)
    }

    fn sample_body() -> Vec<u8> {
        event_body("evt_42", "threshold_crossed", "2025-01-02T03:04:05Z", "Budget at 80 %", &serde_json::json!({}))
    }

    #[tokio::test]
    async fn delivers_a_signed_request_with_all_headers() {
        let (base, log) = receiver().await;
        let client = WebhookClient::new(Duration::from_secs(5), LOCAL);
        let body = sample_body();
        let r =
            client.deliver(&format!("{base}/hook"), SECRET, "threshold_crossed", "evt_42", &body, 1_700_000_000).await;
        assert_eq!(r.error, None);
        assert!(r.delivered);
        assert_eq!(r.status, Some(204));

        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        let s = &seen[0];
        assert_eq!(s.verified, Ok(()));
        assert_eq!(s.body.as_ref(), body.as_slice());
        let h = |n: &str| s.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(h(TIMESTAMP_HEADER).as_deref(), Some("1700000000"));
        assert_eq!(h(SIGNATURE_HEADER), Some(sign(SECRET, 1_700_000_000, &body)));
        assert_eq!(h(EVENT_ID_HEADER).as_deref(), Some("evt_42"));
        assert_eq!(h(EVENT_TYPE_HEADER).as_deref(), Some("threshold_crossed"));
        assert_eq!(h("content-type").as_deref(), Some("application/json"));
        assert_eq!(h("user-agent"), Some(format!("make-budget-mcp/{}", env!("CARGO_PKG_VERSION"))));
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_by_the_receiver() {
        let (base, log) = receiver().await;
        let client = WebhookClient::new(Duration::from_secs(5), LOCAL);
        let r = client.deliver(&format!("{base}/hook"), b"not the secret", "t", "evt_1", b"{}", 1_700_000_000).await;
        assert!(!r.delivered);
        assert_eq!(r.status, Some(401));
        assert_eq!(log.lock().unwrap()[0].verified, Err(VerifyError::Mismatch));
    }

    #[tokio::test]
    async fn an_error_status_is_not_delivered_and_carries_a_short_scrubbed_body() {
        let (base, _) = receiver().await;
        let client = WebhookClient::new(Duration::from_secs(5), LOCAL);
        let r = client.deliver(&format!("{base}/fail"), SECRET, "t", "evt_1", b"{}", 1_700_000_000).await;
        assert!(!r.delivered);
        assert_eq!(r.status, Some(500));
        let e = r.error.unwrap();
        assert!(e.starts_with("HTTP 500 Internal Server Error: database on fire secret=[redacted] xxx"), "{e}");
        assert!(!e.contains("whsec_test"), "{e}");
        assert!(!e.contains('\n'));
        let snippet = e.split_once(": ").unwrap().1;
        assert_eq!(snippet.chars().count(), MAX_BODY_SNIPPET_CHARS);
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        let (base, log) = receiver().await;
        let client = WebhookClient::new(Duration::from_secs(5), LOCAL);
        let r = client.deliver(&format!("{base}/moved"), SECRET, "t", "evt_1", b"{}", 1_700_000_000).await;
        assert!(!r.delivered);
        assert_eq!(r.status, Some(302));
        assert!(r.error.unwrap().contains("redirects are not followed"));
        assert!(log.lock().unwrap().is_empty(), "the redirect target must not be called");
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connection_error_without_the_url() {
        let port = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let client = WebhookClient::new(Duration::from_secs(5), LOCAL);
        let url = format!("http://127.0.0.1:{port}/services/T0/B0/secretpath");
        let r = client.deliver(&url, SECRET, "t", "evt_1", b"{}", 1_700_000_000).await;
        assert!(!r.delivered);
        assert_eq!(r.status, None);
        let e = r.error.unwrap();
        assert!(e.starts_with("cannot connect"), "{e}");
        assert!(!e.contains("secretpath"), "{e}");
        assert!(e.chars().count() <= MAX_ERROR_CHARS);
    }

    #[tokio::test]
    async fn a_slow_receiver_times_out() {
        let (base, _) = receiver().await;
        let client = WebhookClient::new(Duration::from_millis(300), LOCAL);
        let r = client.deliver(&format!("{base}/slow"), SECRET, "t", "evt_1", b"{}", 1_700_000_000).await;
        assert!(!r.delivered);
        assert_eq!(r.status, None);
        assert_eq!(r.error.as_deref(), Some("timed out after 300 ms"));
        assert!((300..5000).contains(&r.duration_ms), "{} ms", r.duration_ms);
    }

    #[tokio::test]
    async fn a_url_stored_while_loopback_was_allowed_is_refused_at_delivery() {
        let (base, log) = receiver().await;
        let port = base.rsplit(':').next().unwrap();
        let client = WebhookClient::new(Duration::from_secs(5), OutboundPolicy::default());
        // A literal address is judged before the request; a name by the resolver (the system's, here).
        for (url, expected) in [
            (format!("{base}/hook/secretpath"), "refused: 127.0.0.1 is a loopback address"),
            (format!("http://localhost:{port}/hook/secretpath"), "refused: localhost resolves only to loopback"),
        ] {
            let r = client.deliver(&url, SECRET, "t", "evt_1", b"{}", 1_700_000_000).await;
            assert!(!r.delivered);
            assert_eq!(r.status, None);
            let e = r.error.unwrap();
            assert!(e.starts_with(expected), "{url}: {e}");
            assert!(e.contains("outbound.allow_loopback"), "{e}");
            assert!(!e.contains("secretpath") && !e.contains("/hook"), "no URL path in the error: {e}");
        }
        let r = client.deliver("https://metadata.google.internal/x", SECRET, "t", "evt_1", b"{}", 0).await;
        assert!(r.error.unwrap().starts_with("refused: metadata.google.internal is a cloud metadata name"));
        assert!(log.lock().unwrap().is_empty(), "the receiver got nothing");
    }

    #[tokio::test]
    async fn bad_inputs_fail_without_sending() {
        let (base, log) = receiver().await;
        let client = WebhookClient::new(Duration::from_secs(5), LOCAL);
        let r = client.deliver("http://example.com/hook", SECRET, "t", "evt_1", b"{}", 0).await;
        assert!(!r.delivered);
        assert!(r.error.unwrap().starts_with("invalid webhook URL: must use https"));
        let r = client.deliver(&format!("{base}/hook"), SECRET, "bad\ntype", "evt_1", b"{}", 0).await;
        assert_eq!(r.status, None);
        assert!(r.error.unwrap().contains("event type"));
        assert!(log.lock().unwrap().is_empty());
    }
}
