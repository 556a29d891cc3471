//! SIMULATED Make.com API v2, for tests and the demo ONLY.
//!
//! This is a fake: an in-process HTTP server on `127.0.0.1` that imitates the Make.com endpoints the budget
//! controller uses (organizations, teams, scenarios, usage, consumptions, start/stop, token scopes, time
//! zones), following the facts collected in `make-api.md`. It holds made-up data set by the caller, can
//! inject faults (429, 5xx, delays, malformed or plain-text bodies, missing keys) and records every request.
//! It never talks to Make.com and is never used by `serve`.
//!
//! Every simulated behaviour names its source in a comment:
//! * `[DOC page]`: a page of Make's API documentation, `https://developers.make.com/api-documentation/page`;
//! * `[SDK file]`: a file of Make's official TypeScript SDK, `github.com/integromat/make-typescript-sdk`;
//! * `[3P …]`: third-party material, as tagged in `make-api.md`;
//! * `[no source: chosen]`: Make documents nothing about it; the fake had to choose.
//!
//! Defaults are those the existing tests rely on; everything added later (a clock, usage events, rate
//! limits, private spaces, forbidden teams, vanishing scenarios, scopes, the generator) is opt-in.
//!
//! The file is self-contained (it only uses normal dependencies of the package, plus
//! `make_budget_mcp::domain::Clock`) because the demo example and the benches include it with
//! `#[path = "../tests/support/fake_make.rs"] mod fake_make;`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use make_budget_mcp::domain::Clock;
use serde_json::{Map, Value, json};

/// The "today" of the usage endpoints until [`FakeMake::set_today`] changes it, when the fake has no clock.
pub const DEFAULT_TODAY: Date = jiff::civil::date(2026, 3, 20);

/// The fake has no separate data-transfer figures: every operation counts as this many bytes of transfer
/// (`dataTransfer` in usage, `transfer` in consumptions, scenarios, teams and organizations).
// [no source: chosen] Make reports transfer separately; the fake derives it.
pub const TRANSFER_BYTES_PER_OPERATION: u64 = 1024;

/// Largest `pg[limit]` the fake accepts; a larger one is a 400.
// [no source: chosen] [DOC pagination-sorting-filtering/pagination-and-sorting] documents no maximum; the SDK
// mocks show `"limit": 10000` (test/mocks/teams/list.json, organizations/list.json), so that is the cap here.
pub const MAX_PAGE_LIMIT: usize = 10_000;

/// An organization's time zone unless its [`OrgSpec`] says otherwise.
// [DOC api-reference/organizations] the example organization has `timezoneId: 113`, which is Europe/Prague in
// [SDK test/mocks/enums/timezones.json].
pub const DEFAULT_TIMEZONE: &str = "Europe/Prague";

/// The text of Make's 429. [DOC getting-started/rate-limiting]
pub const RATE_LIMIT_MESSAGE: &str = "Requests limit for organization exceeded, please try again later.";

/// The scopes a token has unless [`FakeMake::set_scopes`] says otherwise: all the budget controller needs.
// [DOC authentication/api-scopes-overview], make-api.md §1.
pub const DEFAULT_SCOPES: [&str; 4] = ["organizations:read", "teams:read", "scenarios:read", "scenarios:write"];

/// `GET /enums/timezones`: `(id, code, name, offset)`.
// [SDK src/endpoints/enums.ts] the shape `{id, name, code, offset}`; [SDK test/mocks/enums/timezones.json] the
// first two rows (113 Europe/Prague, 164 Europe/Rome) and the name/offset format (standard-time offset).
// [no source: chosen] every other id: Make's real ids for these zones are not published anywhere seen; they
// are fixed here so tests can rely on them.
pub const TIMEZONES: &[(i64, &str, &str, &str)] = &[
    (113, "Europe/Prague", "(GMT+01:00) Europe/Prague", "+0100"),
    (164, "Europe/Rome", "(GMT+01:00) Europe/Rome", "+0100"),
    (1, "UTC", "(GMT+00:00) UTC", "+0000"),
    (90, "Europe/London", "(GMT+00:00) Europe/London", "+0000"),
    (201, "America/New_York", "(GMT-05:00) America/New_York", "-0500"),
    (204, "America/Los_Angeles", "(GMT-08:00) America/Los_Angeles", "-0800"),
    (301, "Asia/Kolkata", "(GMT+05:30) Asia/Kolkata", "+0530"),
    (305, "Asia/Tokyo", "(GMT+09:00) Asia/Tokyo", "+0900"),
    (401, "Australia/Sydney", "(GMT+10:00) Australia/Sydney", "+1000"),
];

/// Timestamp used for every scenario's `created` and `lastEdit`.
const SCENARIO_CREATED: &str = "2026-01-15T09:30:00.000Z";

/// How a token is presented: `Authorization: Token <t>` (API token) or `Authorization: Bearer <t>` (OAuth).
// [DOC getting-started/making-your-first-api-request] Token; [SDK src/make.ts prepareHeaders] Bearer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    Token,
    Bearer,
}

/// Encoding of counters in the usage, consumption and team responses of one organization.
// [SDK src/endpoints/teams.ts vs private-spaces.ts] the same team counters are typed number in one and string
// in the other; make-api.md §5 tells clients to accept both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterStyle {
    /// `"operations": 1234`
    Numbers,
    /// `"operations": "1234"`
    Strings,
}

/// Which scenarios a `GET /scenarios` request selects.
type ScenarioFilterFn = Box<dyn Fn(&ScenarioSpec) -> bool>;

/// A failure injected with [`FakeMake::inject`].
#[derive(Clone, Debug)]
pub enum Fault {
    /// 429 with Make's error body; a `Retry-After: N` header only when `Some(N)`.
    // [DOC getting-started/rate-limiting] 429 and its message; Retry-After is not documented but
    // [SDK src/make.ts] honours it, so tests can add it.
    TooManyRequests { retry_after_secs: Option<u64> },
    /// That status with Make's error body (e.g. 500, 502, 503).
    // [DOC troubleshooting/http-status-codes] "All Make API errors have the same schema".
    Status(u16),
    /// Sleep this long, then answer normally.
    Delay(Duration),
    /// 200 with a truncated, invalid JSON body.
    MalformedBody,
    /// 200 with the endpoint's normal JSON minus this top-level key (`data`, `scenarioConsumptions`, `teams`,
    /// `scenarios`, `organization`, …). The request reaches the endpoint (a start/stop still happens).
    // [no source: chosen] make-api.md §6: a missing envelope key must be a decode error, never an empty list;
    // this fault lets tests check that.
    OmitKey(&'static str),
    /// That status with a non-JSON body, `Content-Type: text/plain`.
    // [3P make-api.md §6] a live test saw a plain-text 429 body; proxies answer 502/504 in plain text too.
    PlainText { status: u16, body: String },
    /// That status with Make's error body carrying `suberrors: [{"message": …}, …]`.
    // [DOC troubleshooting/http-status-codes] the schema; [SDK src/utils.ts createMakeError] reads
    // `suberrors[].message` and appends them to the message.
    WithSuberrors { status: u16, suberrors: Vec<String> },
}

/// An organization as `GET /organizations/{id}` describes it.
#[derive(Clone, Debug)]
pub struct OrgSpec {
    pub id: i64,
    pub name: String,
    /// e.g. `"eu1.make.com"`. Empty: the fake serves the `host:port` the client called it at, so a client
    /// that compares `zone` with the host it called sees a match.
    // [DOC api-reference/organizations] `zone`; [DOC api-reference/organizations] `GET /organizations` returns
    // license data only for organizations in the zone called.
    pub zone: String,
    /// `license.apiLimit` (requests per minute). [DOC getting-started/rate-limiting]
    pub api_limit: u32,
    /// `license.operations` (plan allowance per period). [SDK src/endpoints/organizations.ts]
    pub allowance: u64,
    pub last_reset: Timestamp,
    pub next_reset: Option<Timestamp>,
    /// IANA name of the organization's time zone; must be one of [`TIMEZONES`]. Served as `timezoneId`; the
    /// usage endpoints' days (`organizationTimezone=true`) are days in this zone.
    // [DOC api-reference/organizations] timezoneId; [DOC api-reference/scenarios, teams, organizations]
    // organizationTimezone.
    pub timezone: String,
    /// `license.restartPeriod`: `"1 month"` (monthly plan) or `"1 year"` (yearly plan). The fake treats any
    /// value containing "year" as yearly.
    // [SDK src/endpoints/organizations.ts] restartPeriod?: string; [3P make-api.md §3.5] "1 month".
    // [no source: chosen] "1 year" and the "contains year" rule.
    pub restart_period: String,
    /// `operationsExt`: extra purchased operations, served as a string. [SDK src/endpoints/organizations.ts]
    pub operations_ext: u64,
}

impl OrgSpec {
    /// A Pro-like organization: zone eu1.make.com, 120 requests/min, 40 000 operations per month, period
    /// 2026-03-01 → 2026-04-01 (UTC), time zone Europe/Prague, no extra operations.
    ///
    /// The zone stays `"eu1.make.com"` (not empty) because `tests/fake_make.rs` asserts it; set `zone` to
    /// `""` to serve the host the client called.
    pub fn new(id: i64, name: &str) -> OrgSpec {
        OrgSpec {
            id,
            name: name.to_owned(),
            zone: "eu1.make.com".to_owned(),
            api_limit: 120,
            allowance: 40_000,
            last_reset: "2026-03-01T00:00:00Z".parse().expect("valid timestamp"),
            next_reset: Some("2026-04-01T00:00:00Z".parse().expect("valid timestamp")),
            timezone: DEFAULT_TIMEZONE.to_owned(),
            restart_period: "1 month".to_owned(),
            operations_ext: 0,
        }
    }
}

/// A scenario as `GET /scenarios` describes it.
#[derive(Clone, Debug)]
pub struct ScenarioSpec {
    pub id: i64,
    pub organization_id: i64,
    pub team_id: i64,
    pub folder_id: Option<i64>,
    pub name: String,
    pub is_active: bool,
    pub is_paused: bool,
    /// `Some(n)`: scheduling `{"type":"indefinitely","interval":n}`; `None`: `{"type":"immediately"}` (webhook/instant).
    pub interval_secs: Option<u64>,
}

impl ScenarioSpec {
    /// An active, unpaused scenario outside any folder, scheduled every 15 minutes.
    pub fn new(id: i64, organization_id: i64, team_id: i64, name: &str) -> ScenarioSpec {
        ScenarioSpec {
            id,
            organization_id,
            team_id,
            folder_id: None,
            name: name.to_owned(),
            is_active: true,
            is_paused: false,
            interval_secs: Some(900),
        }
    }
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// e.g. `"/api/v2/scenarios/5/stop"` (no query).
    pub path: String,
    /// Raw query string, `""` if none.
    pub query: String,
    /// Raw `Authorization` header.
    pub authorization: Option<String>,
    /// When the request arrived (monotonic, real time).
    pub at: Instant,
    /// When the request arrived, by the fake's clock ([`FakeMake::start_with_clock`]; real time otherwise).
    pub at_time: Timestamp,
    /// The organization the request concerns (its path or query names it, its team or its scenario), if any.
    pub organization_id: Option<i64>,
    /// Status the fake answered.
    pub status: u16,
}

/// What [`FakeMake::populate`] created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Population {
    /// Every team created, private spaces included, in id order.
    pub team_ids: Vec<i64>,
    /// The teams among them that are private spaces.
    pub private_space_ids: Vec<i64>,
    /// Every scenario created, in id order.
    pub scenario_ids: Vec<i64>,
    /// The active ones among them.
    pub active_ids: Vec<i64>,
}

/// The fake Make API server. Clones share one server and one state; the server stops when the last clone is
/// dropped or [`FakeMake::shutdown`] is called.
#[derive(Clone)]
pub struct FakeMake {
    inner: Arc<Inner>,
}

struct Inner {
    state: Shared,
    addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

type Shared = Arc<Mutex<FakeState>>;

struct TokenEntry {
    kind: AuthKind,
    organization_ids: Vec<i64>,
    scopes: Vec<String>,
}

struct TeamEntry {
    organization_id: i64,
    name: String,
    /// A private space: a team of type `personal`. [SDK src/endpoints/teams.ts, private-spaces.ts]
    personal: bool,
}

struct FaultEntry {
    prefix: String,
    fault: Fault,
    remaining: usize,
}

/// Usage of one scenario on one day, or of one event.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Usage {
    centicredits: u64,
    operations: u64,
}

impl Usage {
    fn add(&mut self, other: Usage) {
        self.centicredits += other.centicredits;
        self.operations += other.operations;
    }

    fn minus(self, other: Usage) -> Usage {
        Usage {
            centicredits: self.centicredits.saturating_sub(other.centicredits),
            operations: self.operations.saturating_sub(other.operations),
        }
    }

    fn transfer(&self) -> u64 {
        self.operations * TRANSFER_BYTES_PER_OPERATION
    }
}

/// One scenario's usage events, in time order, with running sums so that any time range sums in O(log n).
#[derive(Default)]
struct Series {
    at: Vec<Timestamp>,
    /// `cum[i]`: the sum of events `0..=i`.
    cum: Vec<Usage>,
}

impl Series {
    fn add(&mut self, at: Timestamp, u: Usage) {
        if self.at.last().is_none_or(|last| *last <= at) {
            let mut total = self.cum.last().copied().unwrap_or_default();
            total.add(u);
            self.at.push(at);
            self.cum.push(total);
            return;
        }
        let i = self.at.partition_point(|t| *t <= at);
        self.at.insert(i, at);
        let mut total = if i == 0 { Usage::default() } else { self.cum[i - 1] };
        total.add(u);
        self.cum.insert(i, total);
        // The later running sums lack `u`.
        for j in i + 1..self.cum.len() {
            self.cum[j].add(u);
        }
    }

    /// Sum of the events at `from <= t < to`.
    fn sum(&self, from: Timestamp, to: Timestamp) -> Usage {
        if from >= to {
            return Usage::default();
        }
        let lo = self.at.partition_point(|t| *t < from);
        let hi = self.at.partition_point(|t| *t < to);
        if hi <= lo {
            return Usage::default();
        }
        let below = if lo == 0 { Usage::default() } else { self.cum[lo - 1] };
        self.cum[hi - 1].minus(below)
    }

    fn len(&self) -> usize {
        self.at.len()
    }
}

/// The per-organization rate limiter's current window.
struct RateWindow {
    window_ns: i128,
    /// Index of the current fixed window (`now / window`), `None` before the first request.
    index: Option<i128>,
    count: u32,
}

struct FakeState {
    addr: SocketAddr,
    clock: Option<Arc<dyn Clock>>,
    tokens: HashMap<String, TokenEntry>,
    orgs: BTreeMap<i64, OrgSpec>,
    org_tz: HashMap<i64, TimeZone>,
    teams: BTreeMap<i64, TeamEntry>,
    scenarios: BTreeMap<i64, ScenarioSpec>,
    /// Scenarios deleted by [`FakeMake::vanish_after_listing`]: gone from the API, their usage still counted
    /// in their team's and organization's figures.
    deleted: BTreeMap<i64, ScenarioSpec>,
    /// Whole-day figures ([`FakeMake::set_usage`]), by scenario and day (a day in the organization's zone).
    usage: BTreeMap<(i64, Date), Usage>,
    /// Timed events ([`FakeMake::consume`], the generator), by scenario.
    events: HashMap<i64, Series>,
    /// Usage patterns of generated scenarios, for [`FakeMake::advance_usage`].
    patterns: BTreeMap<i64, Pattern>,
    /// [`FakeMake::set_today`]: overrides the clock's date.
    today: Option<Date>,
    styles: HashMap<i64, CounterStyle>,
    omit_centicredits: HashMap<i64, bool>,
    faults: Vec<FaultEntry>,
    requests: Vec<RecordedRequest>,
    forbidden_teams: HashSet<i64>,
    vanishing: HashSet<i64>,
    rate_limits: HashMap<i64, RateWindow>,
    plain_text_429: bool,
}

impl FakeMake {
    /// Bind `127.0.0.1:0` and serve in a spawned tokio task. Time is real time; "today" is
    /// [`DEFAULT_TODAY`] until [`FakeMake::set_today`].
    pub async fn start() -> FakeMake {
        FakeMake::start_inner(None).await
    }

    /// Like [`FakeMake::start`], with every notion of time taken from `clock`: "now" for usage events and
    /// rate-limit windows, each request's `at_time`, and "today" (the clock's date in each organization's
    /// time zone, unless [`FakeMake::set_today`] overrides it).
    pub async fn start_with_clock(clock: Arc<dyn Clock>) -> FakeMake {
        FakeMake::start_inner(Some(clock)).await
    }

    async fn start_inner(clock: Option<Arc<dyn Clock>>) -> FakeMake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fake Make: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake Make: local address");
        let state: Shared = Arc::new(Mutex::new(FakeState {
            addr,
            clock,
            tokens: HashMap::new(),
            orgs: BTreeMap::new(),
            org_tz: HashMap::new(),
            teams: BTreeMap::new(),
            scenarios: BTreeMap::new(),
            deleted: BTreeMap::new(),
            usage: BTreeMap::new(),
            events: HashMap::new(),
            patterns: BTreeMap::new(),
            today: None,
            styles: HashMap::new(),
            omit_centicredits: HashMap::new(),
            faults: Vec::new(),
            requests: Vec::new(),
            forbidden_teams: HashSet::new(),
            vanishing: HashSet::new(),
            rate_limits: HashMap::new(),
            plain_text_429: false,
        }));
        let (shutdown, mut stop) = tokio::sync::watch::channel(false);
        let app = Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move {
            let signal = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            let _ = axum::serve(listener, app).with_graceful_shutdown(signal).await;
        });
        FakeMake { inner: Arc::new(Inner { state, addr, shutdown }) }
    }

    /// Stop serving now (also happens when the last clone is dropped).
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// `http://127.0.0.1:PORT`; the client appends `/api/v2/...`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        self.inner.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The fake's "now": its clock's, or real time.
    pub fn now(&self) -> Timestamp {
        self.state().now()
    }

    /// Accept `token` presented as `kind`, for these organizations (and their teams and scenarios), with
    /// [`DEFAULT_SCOPES`]. Adding the same token again replaces it (and its scopes).
    pub fn add_token(&self, token: &str, kind: AuthKind, organization_ids: &[i64]) {
        let scopes = DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect();
        self.state()
            .tokens
            .insert(token.to_owned(), TokenEntry { kind, organization_ids: organization_ids.to_vec(), scopes });
    }

    /// Replace the scopes of a token added before (panics for an unknown token). Served by
    /// `GET /users/me/current-authorization`; a request outside them gets 403.
    pub fn set_scopes(&self, token: &str, scopes: &[&str]) {
        let mut st = self.state();
        let entry = st.tokens.get_mut(token).unwrap_or_else(|| panic!("fake Make: set_scopes for unknown token"));
        entry.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Add or replace an organization. Panics if its time zone is not in [`TIMEZONES`].
    pub fn add_organization(&self, org: OrgSpec) {
        let tz = org_time_zone(&org.timezone);
        let mut st = self.state();
        st.org_tz.insert(org.id, tz);
        st.orgs.insert(org.id, org);
    }

    /// Add or replace a team.
    pub fn add_team(&self, organization_id: i64, team_id: i64, name: &str) {
        self.state().teams.insert(team_id, TeamEntry { organization_id, name: name.to_owned(), personal: false });
    }

    /// Add or replace a private space: a team of type `personal`, listed by `GET /teams` only with
    /// `includePrivateSpaces=true`; its usage and consumptions work like any team's.
    // [SDK src/endpoints/teams.ts] ListTeamsOptions.includePrivateSpaces, Team.type 'personal' | 'standard';
    // [SDK src/endpoints/private-spaces.ts] "A private space is a per-user personal workspace".
    // [no source: chosen] that private spaces are missing without the flag (make-api.md §6: "probably"), and
    // that `GET /scenarios?organizationId=` lists their scenarios like any team's (the token's user is taken
    // to be a member or an observer of every space).
    pub fn add_private_space(&self, organization_id: i64, team_id: i64, name: &str) {
        self.state().teams.insert(team_id, TeamEntry { organization_id, name: name.to_owned(), personal: true });
    }

    /// Add or replace a scenario. Its team is created (named "Team {id}") if it was not added before.
    pub fn add_scenario(&self, s: ScenarioSpec) {
        let mut st = self.state();
        st.teams.entry(s.team_id).or_insert_with(|| TeamEntry {
            organization_id: s.organization_id,
            name: format!("Team {}", s.team_id),
            personal: false,
        });
        st.deleted.remove(&s.id);
        st.scenarios.insert(s.id, s);
    }

    /// "Today" for the usage and consumption endpoints. Without a clock the default is [`DEFAULT_TODAY`]
    /// (2026-03-20); with one it is the clock's date in each organization's zone. Once set, this date wins
    /// over the clock for every organization.
    // [no source: chosen] an explicit date overrides the clock, so the old tests keep their fixed day.
    pub fn set_today(&self, date: Date) {
        self.state().today = Some(date);
    }

    /// Replace one scenario's usage on one day (a day in its organization's time zone).
    pub fn set_usage(&self, scenario_id: i64, date: Date, centicredits: u64, operations: u64) {
        self.state().usage.insert((scenario_id, date), Usage { centicredits, operations });
    }

    /// Record that the scenario consumed this much at `at`. Usage endpoints count it in the day of `at` in the
    /// organization's zone, and only once the fake's clock has reached `at`.
    pub fn consume(&self, scenario_id: i64, at: Timestamp, centicredits: u64, operations: u64) {
        self.state().events.entry(scenario_id).or_default().add(at, Usage { centicredits, operations });
    }

    /// Encoding of counters in that organization's usage, consumption and team responses (default Numbers).
    pub fn set_counter_style(&self, organization_id: i64, style: CounterStyle) {
        self.state().styles.insert(organization_id, style);
    }

    /// Leave out every `centicredits` field of that organization's data (as older zones do).
    // [3P make-api.md §3.7] centicredits came with the credits model; older or self-hosted zones lack it.
    pub fn omit_centicredits(&self, organization_id: i64, omit: bool) {
        self.state().omit_centicredits.insert(organization_id, omit);
    }

    /// The next `times` requests whose path starts with `path_prefix` get `fault`. Entries are used in the order
    /// they were injected: a request takes the oldest unexhausted entry whose prefix matches.
    pub fn inject(&self, path_prefix: &str, fault: Fault, times: usize) {
        if times > 0 {
            self.state().faults.push(FaultEntry { prefix: path_prefix.to_owned(), fault, remaining: times });
        }
    }

    /// Remove every pending fault.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Every request received since the start or the last [`FakeMake::clear_requests`], in the order they were
    /// answered.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// The scenario's `isActive`, or `None` for an unknown (or deleted) scenario.
    pub fn scenario_active(&self, id: i64) -> Option<bool> {
        self.state().scenarios.get(&id).map(|s| s.is_active)
    }

    /// Whether the scenario still exists (see [`FakeMake::vanish_after_listing`]).
    pub fn scenario_exists(&self, id: i64) -> bool {
        self.state().scenarios.contains_key(&id)
    }

    /// A human toggling the scenario in Make's UI.
    pub fn set_scenario_active(&self, id: i64, active: bool) {
        if let Some(s) = self.state().scenarios.get_mut(&id) {
            s.is_active = active;
        }
    }

    /// Make pausing (or resuming) the scenario itself, e.g. when the organization runs out of credits.
    pub fn set_scenario_paused(&self, id: i64, paused: bool) {
        if let Some(s) = self.state().scenarios.get_mut(&id) {
            s.is_paused = paused;
        }
    }

    /// Limit the organization to `license.apiLimit` requests per `window` (Make: per minute), measured on the
    /// fake's clock. Over the limit the fake answers 429 without `Retry-After`.
    ///
    /// Counted: every authenticated request that concerns the organization (its detail and usage, its teams'
    /// list, detail and usage, its scenarios' list, detail, usage, consumptions, start and stop), before its
    /// scopes are checked. Not counted: requests refused with 429 themselves, requests answered by an injected
    /// fault, 401s, and requests naming no organization (`/enums`, `/users/me/…`, `GET /organizations`).
    /// Windows are fixed and aligned to whole multiples of `window` since the Unix epoch on the clock (with a
    /// 60 s window: each clock minute).
    // [DOC getting-started/rate-limiting] per-organization limits per minute, 429 with its message, apiLimit in
    // the organization's license; no rate-limit headers are documented.
    // [no source: chosen] Make does not document its algorithm (fixed or sliding window, what counts): fixed
    // aligned windows are the simplest that honour "N per minute"; a client that stays within the limit in
    // every sliding 60 s span (see peak_requests_per_minute) is safe under any algorithm.
    pub fn enforce_rate_limit(&self, organization_id: i64, window: Duration) {
        let window_ns = window.as_nanos() as i128;
        assert!(window_ns > 0, "fake Make: the rate-limit window must be longer than zero");
        self.state().rate_limits.insert(organization_id, RateWindow { window_ns, index: None, count: 0 });
    }

    /// Answer 429s (rate limiter and [`Fault::TooManyRequests`]) with a plain-text body (the same sentence,
    /// `Content-Type: text/plain`) instead of Make's JSON error.
    // [3P make-api.md §6] one third-party live test saw a plain-text 429 body.
    pub fn set_plain_text_429(&self, plain: bool) {
        self.state().plain_text_429 = plain;
    }

    /// The largest number of requests concerning the organization that arrived within any 60 seconds
    /// (`at_time` in `[t, t + 60 s)`) among the recorded requests, leaving out those answered 429: the load the
    /// organization's limit had to absorb.
    // [no source: chosen] a sliding measure, because Make does not document its window (see enforce_rate_limit).
    pub fn peak_requests_per_minute(&self, organization_id: i64) -> usize {
        let st = self.state();
        let mut times: Vec<Timestamp> = st
            .requests
            .iter()
            .filter(|r| r.organization_id == Some(organization_id) && r.status != 429)
            .map(|r| r.at_time)
            .collect();
        times.sort();
        let span = SignedDuration::from_secs(60);
        let mut peak = 0;
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi].duration_since(times[lo]) >= span {
                lo += 1;
            }
            peak = peak.max(hi + 1 - lo);
        }
        peak
    }

    /// How many recorded requests concerning the organization were answered 429 (by the rate limiter or an
    /// injected fault).
    pub fn too_many_requests_served(&self, organization_id: i64) -> usize {
        self.state().requests.iter().filter(|r| r.organization_id == Some(organization_id) && r.status == 429).count()
    }

    /// The token can no longer read this team: `GET /teams/{id}`, `GET /teams/{id}/usage` and
    /// `GET /scenarios/consumptions?teamId={id}` answer 403 `SC403` while `GET /teams` still lists it.
    // [DOC troubleshooting/http-status-codes] the 403 body {"detail":"Access denied.","message":"Permission
    // denied","code":"SC403"} for "a resource you do not have access to".
    // [no source: chosen] which endpoints refuse (the team's own ones); its scenarios stay listed.
    pub fn forbid_team(&self, team_id: i64) {
        self.state().forbidden_teams.insert(team_id);
    }

    /// The next time `GET /scenarios` lists this scenario, it is deleted right after that page is served: later
    /// `GET /scenarios/{id}`, `/scenarios/{id}/usage` and start/stop answer 404 and it is no longer listed.
    /// Its usage stays in its team's and organization's figures.
    // [DOC troubleshooting/http-status-codes] 404 for a resource that does not exist.
    // [no source: chosen] that consumed usage of a deleted scenario still counts for its team and organization
    // (it was consumed), and that consumptions no longer list it.
    pub fn vanish_after_listing(&self, scenario_id: i64) {
        self.state().vanishing.insert(scenario_id);
    }

    /// Create a big organization's teams and scenarios, with 30 days of usage events up to now, deterministically
    /// from `seed`: `teams` teams, the last `private_spaces` of them private spaces; `scenarios` scenarios spread
    /// unevenly over them (about 40 % in folders), `active` of them active. Usage patterns, in the organization's
    /// local time: interval schedules (every 15 min to 4 h, lighter at weekends), nightly runs (01:00–04:00),
    /// weekday batches (07:00–10:00, Monday to Friday), webhook bursts in business hours, and idle scenarios;
    /// mostly small consumers (1–5 operations per run), some medium (5–30), a few heavy batch jobs (100–600,
    /// nightly or on weekday mornings), some with AI credits on top; about 50 000 operations a day for 800
    /// active scenarios. Inactive scenarios have usage until the day they were (notionally) switched off.
    ///
    /// Ids continue after the largest team and scenario ids already present. The organization must have been
    /// added. Same state, clock and seed → the same population and usage.
    // [no source: chosen] the whole generator: Make publishes no usage distributions. Scheduling types follow
    // [SDK src/endpoints/scenarios.ts] (indefinitely with an interval, immediately for webhooks); operations
    // per run and credits (1 operation = 100 centicredits for non-AI modules) follow make-api.md §3.7.
    pub fn populate(
        &self,
        organization_id: i64,
        teams: usize,
        private_spaces: usize,
        scenarios: usize,
        active: usize,
        seed: u64,
    ) -> Population {
        assert!(private_spaces <= teams, "fake Make: populate: more private spaces than teams");
        assert!(active <= scenarios, "fake Make: populate: more active than scenarios");
        assert!(teams > 0 || scenarios == 0, "fake Make: populate: scenarios need at least one team");
        let mut st = self.state();
        assert!(
            st.orgs.contains_key(&organization_id),
            "fake Make: populate: add_organization({organization_id}) first"
        );
        let mut rng = Rng::new(seed ^ mix(organization_id as u64));

        let first_team = st.teams.keys().next_back().map_or(1, |m| m + 1);
        let mut team_ids = Vec::with_capacity(teams);
        let mut private_space_ids = Vec::new();
        let mut weights = Vec::with_capacity(teams);
        for i in 0..teams {
            let id = first_team + i as i64;
            let personal = i >= teams - private_spaces;
            let name =
                if personal { format!("{}'s space", OWNERS[i % OWNERS.len()]) } else { format!("Team {:02}", i + 1) };
            st.teams.insert(id, TeamEntry { organization_id, name, personal });
            team_ids.push(id);
            if personal {
                private_space_ids.push(id);
            }
            // Uneven teams: a private space holds a few scenarios, a standard team 2–12 times as many.
            weights.push(if personal { 1 } else { 2 + rng.below(11) });
        }
        let total_weight: u64 = weights.iter().sum();

        let mut order: Vec<usize> = (0..scenarios).collect();
        for i in (1..order.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        let mut is_active = vec![false; scenarios];
        for &i in order.iter().take(active) {
            is_active[i] = true;
        }

        let view = st.view(organization_id);
        let lo = ceil_second(day_start(&view.tz, add_days(view.today, -29)));
        let hi = ceil_second(view.end);
        let first_scenario = st.scenarios.keys().chain(st.deleted.keys()).max().map_or(1, |m| m + 1);
        let mut scenario_ids = Vec::with_capacity(scenarios);
        let mut active_ids = Vec::new();
        for (i, active) in is_active.into_iter().enumerate() {
            let id = first_scenario + i as i64;
            let mut pick = rng.below(total_weight.max(1));
            let mut team_index = 0;
            for (k, w) in weights.iter().enumerate() {
                if pick < *w {
                    team_index = k;
                    break;
                }
                pick -= w;
            }
            let team_id = team_ids[team_index];
            let folder_id = rng.chance(400).then(|| team_id * 100 + 1 + rng.below(3) as i64);
            let pattern = Pattern::random(&mut rng, seed);
            // An inactive scenario ran until it was switched off 1–30 days ago.
            let until = if active {
                hi
            } else {
                let back = 1 + rng.below(30) as i64;
                hi.min(ceil_second(day_start(&view.tz, add_days(view.today, 1 - back))))
            };
            let spec = ScenarioSpec {
                id,
                organization_id,
                team_id,
                folder_id,
                name: format!("{} {:04}", SCENARIO_NAMES[i % SCENARIO_NAMES.len()], i + 1),
                is_active: active,
                is_paused: false,
                interval_secs: pattern.interval_secs(),
            };
            let mut out = Vec::new();
            pattern.events(id, &view.tz, lo, until, &mut out);
            let series = st.events.entry(id).or_default();
            for (at, u) in out {
                series.add(at, u);
            }
            st.patterns.insert(id, pattern);
            st.scenarios.insert(id, spec);
            scenario_ids.push(id);
            if active {
                active_ids.push(id);
            }
        }
        Population { team_ids, private_space_ids, scenario_ids, active_ids }
    }

    /// Add usage events, following each generated scenario's pattern, for the runs at `from < t <= to` of every
    /// generated scenario that is active and not paused now (a scenario stopped through the API consumes no
    /// more). A bench moves its clock by 5 minutes and calls this with the old and new time.
    // [no source: chosen] see populate.
    pub fn advance_usage(&self, from: Timestamp, to: Timestamp) {
        let mut st = self.state();
        let lo = from.as_second() + 1;
        let hi = to.as_second() + 1;
        if lo >= hi {
            return;
        }
        let runnable: Vec<(i64, Pattern, TimeZone)> = st
            .patterns
            .iter()
            .filter_map(|(id, p)| {
                let s = st.scenarios.get(id)?;
                (s.is_active && !s.is_paused).then(|| (*id, *p, st.tz(s.organization_id)))
            })
            .collect();
        for (id, pattern, tz) in runnable {
            let mut out = Vec::new();
            pattern.events(id, &tz, lo, hi, &mut out);
            let series = st.events.entry(id).or_default();
            for (at, u) in out {
                series.add(at, u);
            }
        }
    }

    /// Number of usage events the fake holds (all scenarios).
    pub fn event_count(&self) -> usize {
        self.state().events.values().map(Series::len).sum()
    }
}

/// The time zone of an organization's spec; panics if it is not in [`TIMEZONES`] or unknown to jiff.
fn org_time_zone(name: &str) -> TimeZone {
    assert!(
        TIMEZONES.iter().any(|(_, code, _, _)| *code == name),
        "fake Make: time zone {name:?} is not in the fake's /enums/timezones table ({:?})",
        TIMEZONES.iter().map(|t| t.1).collect::<Vec<_>>()
    );
    TimeZone::get(name).unwrap_or_else(|e| panic!("fake Make: time zone {name:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------------
// Request handling

/// An answer before it becomes an HTTP response.
struct Reply {
    status: u16,
    body: String,
    retry_after: Option<u64>,
    content_type: &'static str,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Reply {
        Reply { status, body: body.to_string(), retry_after: None, content_type: "application/json; charset=utf-8" }
    }

    fn plain(status: u16, body: &str) -> Reply {
        Reply { status, body: body.to_owned(), retry_after: None, content_type: "text/plain; charset=utf-8" }
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = Response::new(Body::from(self.body));
        *resp.status_mut() = status;
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// An error in Make's schema: `{"detail", "message", "code"}`, plus `suberrors` when there are any.
// [DOC troubleshooting/http-status-codes] "All Make API errors have the same schema"; codes `SC{status}`;
// [SDK src/utils.ts createMakeError] message, detail, suberrors[].message. No statusCode field in the body.
struct ApiError {
    status: u16,
    detail: String,
    message: String,
    code: String,
    suberrors: Vec<String>,
}

impl ApiError {
    fn new(status: u16, message: &str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: detail.into(),
            message: message.to_owned(),
            code: format!("SC{status}"),
            suberrors: Vec::new(),
        }
    }

    fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(400, "Bad Request", detail)
    }

    fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Invalid token.")
    }

    /// [DOC troubleshooting/http-status-codes] the documented 403 example.
    fn forbidden() -> ApiError {
        ApiError::new(403, "Permission denied", "Access denied.")
    }

    fn not_found(what: &str) -> ApiError {
        ApiError::new(404, "Not Found", format!("{what} not found."))
    }

    fn reply(&self) -> Reply {
        let mut body = json!({"detail": self.detail, "message": self.message, "code": self.code});
        if !self.suberrors.is_empty() {
            let subs: Vec<Value> = self.suberrors.iter().map(|m| json!({"message": m})).collect();
            body["suberrors"] = Value::Array(subs);
        }
        Reply::json(self.status, &body)
    }
}

type ApiResult = Result<Value, ApiError>;

/// What `route` needs to know about a request.
struct Incoming {
    method: Method,
    path: String,
    query: String,
    authorization: Option<String>,
    /// The `Host` header (the zone the client called), or the fake's own address.
    host: String,
}

async fn handle(State(state): State<Shared>, req: Request) -> Response {
    let at = Instant::now();
    let incoming = {
        let header_text = |name: header::HeaderName| {
            req.headers().get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let authorization = header_text(header::AUTHORIZATION);
        let host = header_text(header::HOST).unwrap_or_else(|| lock(&state).addr.to_string());
        Incoming {
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            query: req.uri().query().unwrap_or("").to_owned(),
            authorization,
            host,
        }
    };
    drop(req);
    // A task of its own, so a request is answered and recorded even if the client gives up waiting (Delay).
    let task = tokio::spawn(process(state, incoming, at));
    match task.await {
        Ok(reply) => reply.into_response(),
        Err(_) => ApiError::new(500, "Internal Server Error", "The fake Make API panicked.").reply().into_response(),
    }
}

async fn process(state: Shared, req: Incoming, at: Instant) -> Reply {
    let (at_time, organization_id) = {
        let st = lock(&state);
        (st.now(), st.request_org(&req.path, &Query::parse(&req.query)))
    };
    let fault = take_fault(&state, &req.path);
    let reply = match fault {
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut r = if lock(&state).plain_text_429 {
                Reply::plain(429, RATE_LIMIT_MESSAGE)
            } else {
                ApiError::new(429, "Too Many Requests", RATE_LIMIT_MESSAGE).reply()
            };
            r.retry_after = retry_after_secs;
            r
        }
        Some(Fault::Status(status)) => {
            ApiError::new(status, reason(status), "Simulated failure injected into the fake Make API.").reply()
        }
        Some(Fault::WithSuberrors { status, suberrors }) => {
            let mut e = ApiError::new(status, reason(status), "Simulated failure injected into the fake Make API.");
            e.suberrors = suberrors;
            e.reply()
        }
        Some(Fault::PlainText { status, body }) => Reply::plain(status, &body),
        Some(Fault::MalformedBody) => Reply {
            status: 200,
            body: r#"{"scenarios":[{"id":1,"name":"Trunc"#.to_owned(),
            retry_after: None,
            content_type: "application/json; charset=utf-8",
        },
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            route(&state, &req)
        }
        Some(Fault::OmitKey(key)) => {
            let mut r = route(&state, &req);
            if r.status == 200
                && let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(&r.body)
            {
                m.remove(key);
                r.body = Value::Object(m).to_string();
            }
            r
        }
        None => route(&state, &req),
    };
    let record = RecordedRequest {
        method: req.method.to_string(),
        path: req.path,
        query: req.query,
        authorization: req.authorization,
        at,
        at_time,
        organization_id,
        status: reply.status,
    };
    lock(&state).requests.push(record);
    reply
}

fn reason(status: u16) -> &'static str {
    StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Simulated Failure")
}

fn lock(state: &Shared) -> MutexGuard<'_, FakeState> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn take_fault(state: &Shared, path: &str) -> Option<Fault> {
    let mut st = lock(state);
    let i = st.faults.iter().position(|f| f.remaining > 0 && path.starts_with(&f.prefix))?;
    let entry = &mut st.faults[i];
    entry.remaining -= 1;
    let fault = entry.fault.clone();
    if entry.remaining == 0 {
        st.faults.remove(i);
    }
    Some(fault)
}

/// The scope an endpoint needs, by endpoint family. [DOC authentication/api-scopes-overview] (`:read` for GET,
/// `:write` for POST/PUT/PATCH/DELETE), make-api.md §1.
// [no source: chosen] `/users/me/current-authorization` and `/enums/*` need no scope here, so a client can
// always find out what its token may do.
fn required_scope(method: &Method, segs: &[&str]) -> Option<&'static str> {
    let get = *method == Method::GET;
    match segs {
        ["organizations", ..] if get => Some("organizations:read"),
        ["teams", ..] if get => Some("teams:read"),
        ["scenarios", _, "start" | "stop"] if *method == Method::POST => Some("scenarios:write"),
        ["scenarios", ..] if get => Some("scenarios:read"),
        _ => None,
    }
}

fn route(state: &Shared, req: &Incoming) -> Reply {
    let mut st = lock(state);
    let auth = match st.authenticate(req.authorization.as_deref()) {
        Ok(auth) => auth,
        Err(e) => return e.reply(),
    };
    let q = Query::parse(&req.query);
    let Some(rest) = req.path.strip_prefix("/api/v2/") else {
        return ApiError::not_found("Endpoint").reply();
    };
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    if let Some(org) = st.request_org(&req.path, &q)
        && !st.admit(org)
    {
        return st.rate_limited();
    }
    if let Some(scope) = required_scope(&req.method, &segs)
        && !auth.scopes.iter().any(|s| s == scope)
    {
        // [DOC make-api.md §3.2] a token without scenarios:write gets 403 SC403 "Permission denied".
        return ApiError::forbidden().reply();
    }
    let orgs = &auth.organization_ids;
    let get = req.method == Method::GET;
    let post = req.method == Method::POST;
    let host = req.host.as_str();
    let result = (|| match segs.as_slice() {
        ["organizations"] if get => st.organizations(orgs, &q, host),
        ["organizations", id] if get => st.organization(orgs, parse_id(id, "Organization")?, &q, host),
        ["organizations", id, "usage"] if get => st.organization_usage(orgs, parse_id(id, "Organization")?),
        ["teams"] if get => st.teams(orgs, &q),
        ["teams", id] if get => st.team(orgs, parse_id(id, "Team")?, &q),
        ["teams", id, "usage"] if get => st.team_usage(orgs, parse_id(id, "Team")?),
        ["scenarios"] if get => st.scenarios(orgs, &q),
        ["scenarios", "consumptions"] if get => st.consumptions(orgs, &q),
        ["scenarios", id] if get => st.scenario(orgs, parse_id(id, "Scenario")?, &q),
        ["scenarios", id, "usage"] if get => st.scenario_usage(orgs, parse_id(id, "Scenario")?),
        ["scenarios", id, "start"] if post => st.set_active(orgs, parse_id(id, "Scenario")?, true),
        ["scenarios", id, "stop"] if post => st.set_active(orgs, parse_id(id, "Scenario")?, false),
        ["users", "me", "current-authorization"] if get => Ok(current_authorization(&auth)),
        ["enums", "timezones"] if get => Ok(timezones()),
        _ => Err(ApiError::not_found("Endpoint")),
    })();
    match result {
        Ok(body) => Reply::json(200, &body),
        Err(e) => e.reply(),
    }
}

fn parse_id(s: &str, what: &str) -> Result<i64, ApiError> {
    s.parse().map_err(|_| ApiError::not_found(what))
}

/// The token behind a request.
struct Auth {
    kind: AuthKind,
    organization_ids: Vec<i64>,
    scopes: Vec<String>,
}

// GET /users/me/current-authorization
// [SDK src/endpoints/users.ts] `{authorization: {authUsed: string, scope: string[]}}`;
// [SDK test/mocks/users/current-authorization.json] `"authUsed": "token"`.
// [no source: chosen] `"authUsed": "oauth"` for a Bearer token.
fn current_authorization(auth: &Auth) -> Value {
    let used = match auth.kind {
        AuthKind::Token => "token",
        AuthKind::Bearer => "oauth",
    };
    json!({"authorization": {"authUsed": used, "scope": auth.scopes}})
}

// GET /enums/timezones  [SDK src/endpoints/enums.ts] `{timezones: [{id, name, code, offset}]}`.
fn timezones() -> Value {
    let list: Vec<Value> = TIMEZONES
        .iter()
        .map(|(id, code, name, offset)| json!({"id": id, "name": name, "code": code, "offset": offset}))
        .collect();
    json!({ "timezones": list })
}

fn timezone_id(code: &str) -> Option<i64> {
    TIMEZONES.iter().find(|t| t.1 == code).map(|t| t.0)
}

// ---------------------------------------------------------------------------------------------------
// Time

/// What one organization's figures cover at the moment of a request.
struct View {
    tz: TimeZone,
    /// The last day of the usage series.
    today: Date,
    /// Events count if they happened before this instant: the clock's now (inclusive) or the end of `today`,
    /// whichever is earlier.
    end: Timestamp,
}

/// Midnight starting `d` in `tz` (the first instant of that day).
fn day_start(tz: &TimeZone, d: Date) -> Timestamp {
    d.to_zoned_datetime(tz.clone()).map(|z| z.timestamp()).unwrap_or(Timestamp::MIN)
}

fn local_date(tz: &TimeZone, ts: Timestamp) -> Date {
    tz.to_datetime(ts).date()
}

fn add_days(d: Date, n: i64) -> Date {
    d.checked_add(jiff::Span::new().days(n)).unwrap_or(if n < 0 { Date::MIN } else { Date::MAX })
}

/// The smallest whole second at or after `ts`.
fn ceil_second(ts: Timestamp) -> i64 {
    ts.as_second() + i64::from(ts.subsec_nanosecond() > 0)
}

fn at_second(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap_or(Timestamp::MAX)
}

// ---------------------------------------------------------------------------------------------------
// Endpoints

/// `cols[]` of a request. [DOC pagination-sorting-filtering/filtering] `cols[]=a&cols[]=b`;
/// [SDK src/utils.ts buildUrl] arrays as `key[]=v`; [SDK src/endpoints/teams.ts] `cols?: C[] | ['*']`.
enum Cols {
    Default,
    All,
    Only(Vec<String>),
}

/// The columns of `full` that a request gets: the endpoint's default ones, all (`cols[]=*`), or `id` plus the
/// requested ones.
// [no source: chosen] an unknown column is ignored (absent from the answer), not a 400.
fn pick(full: Map<String, Value>, cols: &Cols, default: impl Fn(&str) -> bool) -> Value {
    let keep = |k: &str| match cols {
        Cols::Default => default(k),
        Cols::All => true,
        Cols::Only(list) => k == "id" || list.iter().any(|c| c == k),
    };
    Value::Object(full.into_iter().filter(|(k, _)| keep(k)).collect())
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl FakeState {
    fn now(&self) -> Timestamp {
        self.clock.as_ref().map_or_else(Timestamp::now, |c| c.now())
    }

    /// The organization's time zone ([`DEFAULT_TIMEZONE`] for one known only through its teams).
    fn tz(&self, org: i64) -> TimeZone {
        self.org_tz.get(&org).cloned().unwrap_or_else(|| org_time_zone(DEFAULT_TIMEZONE))
    }

    fn view(&self, org: i64) -> View {
        let tz = self.tz(org);
        let now = self.now();
        let today = self.today.or_else(|| self.clock.as_ref().map(|_| local_date(&tz, now))).unwrap_or(DEFAULT_TODAY);
        let after_now = now.checked_add(SignedDuration::from_nanos(1)).unwrap_or(now);
        let end = after_now.min(day_start(&tz, add_days(today, 1)));
        View { tz, today, end }
    }

    /// The organization a request concerns, from its path and query. [DOC getting-started/rate-limiting]
    /// the limit is per organization.
    fn request_org(&self, path: &str, q: &Query) -> Option<i64> {
        let rest = path.strip_prefix("/api/v2/")?;
        let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        let team_org = |id: i64| self.teams.get(&id).map(|t| t.organization_id);
        let scenario_org =
            |id: i64| self.scenarios.get(&id).or_else(|| self.deleted.get(&id)).map(|s| s.organization_id);
        let query_int = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok());
        match segs.as_slice() {
            ["organizations", id, ..] => id.parse().ok(),
            ["teams"] => query_int("organizationId"),
            ["teams", id, ..] => team_org(id.parse().ok()?),
            ["scenarios"] | ["scenarios", "consumptions"] => {
                query_int("teamId").and_then(team_org).or_else(|| query_int("organizationId"))
            }
            ["scenarios", id, ..] => scenario_org(id.parse().ok()?),
            _ => None,
        }
    }

    /// Count a request against the organization's rate limit; `false` if it is over the limit.
    fn admit(&mut self, org: i64) -> bool {
        let now = self.now().as_nanosecond();
        let limit = self.orgs.get(&org).map_or(u32::MAX, |o| o.api_limit);
        let Some(w) = self.rate_limits.get_mut(&org) else {
            return true;
        };
        let index = now.div_euclid(w.window_ns);
        if w.index != Some(index) {
            w.index = Some(index);
            w.count = 0;
        }
        if w.count >= limit {
            return false;
        }
        w.count += 1;
        true
    }

    /// 429 from the rate limiter: no `Retry-After` [DOC getting-started/rate-limiting documents no header].
    // [no source: chosen] the sentence in both `message` and `detail` (the docs call it "the message"; the
    // SDK shows `detail` first); plain text on request (set_plain_text_429).
    fn rate_limited(&self) -> Reply {
        if self.plain_text_429 {
            Reply::plain(429, RATE_LIMIT_MESSAGE)
        } else {
            ApiError::new(429, RATE_LIMIT_MESSAGE, RATE_LIMIT_MESSAGE).reply()
        }
    }

    /// The organizations the request's token covers, its kind and scopes.
    fn authenticate(&self, authorization: Option<&str>) -> Result<Auth, ApiError> {
        let header = authorization.ok_or_else(ApiError::unauthorized)?;
        let (kind, token) = if let Some(t) = header.strip_prefix("Token ") {
            (AuthKind::Token, t)
        } else if let Some(t) = header.strip_prefix("Bearer ") {
            (AuthKind::Bearer, t)
        } else {
            return Err(ApiError::unauthorized());
        };
        match self.tokens.get(token.trim()) {
            Some(entry) if entry.kind == kind => {
                Ok(Auth { kind, organization_ids: entry.organization_ids.clone(), scopes: entry.scopes.clone() })
            }
            _ => Err(ApiError::unauthorized()),
        }
    }

    fn org_known(&self, id: i64) -> bool {
        self.orgs.contains_key(&id) || self.teams.values().any(|t| t.organization_id == id)
    }

    /// 404 for an organization the fake does not know, 403 for one the token does not cover.
    fn check_org(&self, orgs: &[i64], id: i64) -> Result<(), ApiError> {
        if !self.org_known(id) {
            return Err(ApiError::not_found("Organization"));
        }
        if !orgs.contains(&id) {
            return Err(ApiError::forbidden());
        }
        Ok(())
    }

    fn org_spec(&self, orgs: &[i64], id: i64) -> Result<&OrgSpec, ApiError> {
        self.check_org(orgs, id)?;
        self.orgs.get(&id).ok_or_else(|| ApiError::not_found("Organization"))
    }

    fn team_entry(&self, orgs: &[i64], id: i64) -> Result<&TeamEntry, ApiError> {
        let team = self.teams.get(&id).ok_or_else(|| ApiError::not_found("Team"))?;
        if !orgs.contains(&team.organization_id) {
            return Err(ApiError::forbidden());
        }
        Ok(team)
    }

    /// Like `team_entry`, and 403 for a team the token may list but not read (forbid_team).
    fn readable_team(&self, orgs: &[i64], id: i64) -> Result<&TeamEntry, ApiError> {
        let team = self.team_entry(orgs, id)?;
        if self.forbidden_teams.contains(&id) {
            return Err(ApiError::forbidden());
        }
        Ok(team)
    }

    fn scenario_spec(&self, orgs: &[i64], id: i64) -> Result<&ScenarioSpec, ApiError> {
        let s = self.scenarios.get(&id).ok_or_else(|| ApiError::not_found("Scenario"))?;
        if !orgs.contains(&s.organization_id) {
            return Err(ApiError::forbidden());
        }
        Ok(s)
    }

    fn style(&self, org: i64) -> CounterStyle {
        self.styles.get(&org).copied().unwrap_or(CounterStyle::Numbers)
    }

    fn omits_centicredits(&self, org: i64) -> bool {
        self.omit_centicredits.get(&org).copied().unwrap_or(false)
    }

    /// A counter of `org`'s data in its counter style.
    fn counter(&self, org: i64, n: u64) -> Value {
        match self.style(org) {
            CounterStyle::Numbers => json!(n),
            CounterStyle::Strings => json!(n.to_string()),
        }
    }

    fn is_yearly(&self, org: i64) -> bool {
        self.orgs.get(&org).is_some_and(|o| o.restart_period.contains("year"))
    }

    /// Start of the organization's current period: its `lastReset`, and that instant's day in its zone (no
    /// limit for an unknown organization). Whole-day figures count from that day on.
    // [DOC api-reference/scenarios/consumptions] "current reset period", lastReset.
    fn period_start(&self, org: i64, view: &View) -> (Date, Timestamp) {
        match self.orgs.get(&org) {
            Some(o) => (local_date(&view.tz, o.last_reset), o.last_reset),
            None => (Date::MIN, Timestamp::MIN),
        }
    }

    /// What `GET /scenarios/consumptions` sums: the current period; on a yearly plan only its last 60 days
    /// (today and the 59 days before, in the organization's zone), so the figures are running totals.
    // [DOC api-reference/scenarios/consumptions] "If you have the yearly reset period, the response contains
    // … the last 60 days, or from the last reset if that period is shorter than 60 days"; on the 61st day "the
    // endpoint doesn't collect data from the first day anymore" (so the window counts whole days).
    fn consumption_start(&self, org: i64, view: &View) -> (Date, Timestamp) {
        let (day, at) = self.period_start(org, view);
        if !self.is_yearly(org) {
            return (day, at);
        }
        let first = add_days(view.today, -59);
        (day.max(first), at.max(day_start(&view.tz, first)))
    }

    /// Usage of one scenario: whole-day figures of the days `from_day..=to_day` plus events at
    /// `from <= t < to`.
    fn usage_of(&self, id: i64, from_day: Date, to_day: Date, from: Timestamp, to: Timestamp) -> Usage {
        let mut sum = Usage::default();
        if from_day <= to_day {
            for (_, u) in self.usage.range((id, from_day)..=(id, to_day)) {
                sum.add(*u);
            }
        }
        if let Some(series) = self.events.get(&id) {
            sum.add(series.sum(from, to));
        }
        sum
    }

    /// Usage of these scenarios since `start` (a `period_start` or `consumption_start`) up to now/today.
    fn total(&self, ids: &[i64], start: (Date, Timestamp), view: &View) -> Usage {
        let mut sum = Usage::default();
        for id in ids {
            sum.add(self.usage_of(*id, start.0, view.today, start.1, view.end));
        }
        sum
    }

    /// Every scenario of the organization, deleted ones included (their usage was consumed).
    fn org_scenarios(&self, org: i64) -> Vec<i64> {
        self.scenarios
            .values()
            .chain(self.deleted.values())
            .filter(|s| s.organization_id == org)
            .map(|s| s.id)
            .collect()
    }

    /// Every scenario of the team, deleted ones included.
    fn team_scenarios(&self, team: i64) -> Vec<i64> {
        self.scenarios.values().chain(self.deleted.values()).filter(|s| s.team_id == team).map(|s| s.id).collect()
    }

    /// `{"data": [...]}`: the 30 days ending today, oldest first, zero days included.
    // [DOC api-reference/scenarios, teams, organizations] daily usage of the past 30 days; with
    // organizationTimezone=true the days are the organization's. [3P make-api.md §3.3] the `data` wrapper and
    // `YYYY-MM-DD` dates. [no source: chosen] the fake ignores the parameter: it always uses the
    // organization's zone (it has no users' zones).
    fn usage_series(&self, org: i64, scenario_ids: &[i64]) -> Value {
        let view = self.view(org);
        let days: Vec<Date> = (0..30).rev().map(|back| add_days(view.today, -back)).collect();
        let omit = self.omits_centicredits(org);
        let data: Vec<Value> = days
            .iter()
            .map(|day| {
                let from = day_start(&view.tz, *day);
                let to = day_start(&view.tz, add_days(*day, 1)).min(view.end);
                let mut u = Usage::default();
                for id in scenario_ids {
                    u.add(self.usage_of(*id, *day, *day, from, to));
                }
                let mut m = Map::new();
                m.insert("date".into(), json!(day.to_string()));
                m.insert("operations".into(), self.counter(org, u.operations));
                m.insert("dataTransfer".into(), self.counter(org, u.transfer()));
                if !omit {
                    m.insert("centicredits".into(), self.counter(org, u.centicredits));
                }
                Value::Object(m)
            })
            .collect();
        json!({ "data": data })
    }

    // [SDK test/mocks/scenarios/list.json, get.json, src/endpoints/scenarios.ts] the fields; `operations` and
    // `transfer` are "consumed in the current period".
    fn scenario_json(&self, s: &ScenarioSpec, view: &View) -> Map<String, Value> {
        let used = self.total(&[s.id], self.period_start(s.organization_id, view), view);
        let scheduling = match s.interval_secs {
            Some(n) => json!({"type": "indefinitely", "interval": n}),
            None => json!({"type": "immediately"}),
        };
        let user = json!({"id": 1, "name": "Fake User", "email": "fake@example.com"});
        object(json!({
            "id": s.id,
            "name": s.name,
            "teamId": s.team_id,
            "folderId": s.folder_id,
            "hookId": null,
            "deviceId": null,
            "deviceScope": null,
            "concept": false,
            "description": "",
            "isinvalid": false,
            "islinked": s.is_active,
            "isActive": s.is_active,
            "islocked": false,
            "isPaused": s.is_paused,
            "usedPackages": [],
            "lastEdit": SCENARIO_CREATED,
            "scheduling": scheduling,
            "iswaiting": false,
            "dlqCount": 0,
            "createdByUser": user,
            "updatedByUser": user,
            "nextExec": null,
            "created": SCENARIO_CREATED,
            "operations": used.operations,
            "transfer": used.transfer(),
        }))
    }

    /// The organization's `zone`: its spec's, or the host the client called when that is empty.
    fn zone(&self, o: &OrgSpec, host: &str) -> String {
        if o.zone.is_empty() { host.to_owned() } else { o.zone.clone() }
    }

    // GET /organizations  [DOC api-reference/organizations] `zone` filter, cols[], pg[*], default sort name
    // asc; `license`, `serviceName` and `isPaused` only for organizations in the zone called.
    // [SDK src/endpoints/organizations.ts list, test/mocks/organizations/list.json] `{organizations, pg}`.
    // [no source: chosen] "in the zone called": the org's zone equals the request's Host.
    fn organizations(&self, orgs: &[i64], q: &Query, host: &str) -> ApiResult {
        let zone_filter = q.get("zone");
        let (offset, limit) = q.page(10_000)?;
        let cols = q.cols();
        let mut list: Vec<&OrgSpec> = self
            .orgs
            .values()
            .filter(|o| orgs.contains(&o.id))
            .filter(|o| zone_filter.is_none_or(|z| self.zone(o, host) == z))
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        let page: Vec<Value> = list
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|o| {
                let zone = self.zone(o, host);
                let here = zone == host;
                let mut m = Map::new();
                m.insert("id".into(), json!(o.id));
                m.insert("name".into(), json!(o.name));
                m.insert("countryId".into(), json!(1));
                m.insert("timezoneId".into(), json!(timezone_id(&o.timezone)));
                m.insert("zone".into(), json!(zone));
                if here {
                    m.insert("license".into(), self.license(o));
                    m.insert("serviceName".into(), json!("pro"));
                    m.insert("isPaused".into(), json!(false));
                }
                pick(m, &cols, |_| true)
            })
            .collect();
        Ok(json!({
            "organizations": page,
            "pg": {"sortBy": "name", "sortDir": "asc", "limit": limit, "offset": offset},
        }))
    }

    // [SDK src/endpoints/organizations.ts, test/mocks/organizations/get.json] license fields.
    fn license(&self, o: &OrgSpec) -> Value {
        json!({
            "operations": o.allowance,
            "transfer": 21_474_836_480_u64,
            "apiLimit": o.api_limit,
            "restartPeriod": o.restart_period,
            "interval": 1,
            "teamOperationsLimits": true,
        })
    }

    // GET /organizations/{id}  [DOC api-reference/organizations] [SDK src/endpoints/organizations.ts]
    // counters as strings; cols[] [DOC pagination-sorting-filtering/filtering]; `privateSpaces` only when
    // requested via cols [SDK src/endpoints/organizations.ts].
    // [no source: chosen] `teams` lists standard teams only (private spaces have their own `privateSpaces`);
    // `unusedOperations` = license.operations + operationsExt − operations, floored at 0.
    fn organization(&self, orgs: &[i64], id: i64, q: &Query, host: &str) -> ApiResult {
        let o = self.org_spec(orgs, id)?;
        let view = self.view(id);
        let scenarios = self.org_scenarios(id);
        let used = self.total(&scenarios, self.period_start(id, &view), &view);
        let teams: Vec<Value> = self
            .teams
            .iter()
            .filter(|(_, t)| t.organization_id == id && !t.personal)
            .map(|(tid, t)| json!({"id": tid, "name": t.name}))
            .collect();
        let spaces: Vec<Value> = self
            .teams
            .iter()
            .filter(|(_, t)| t.organization_id == id && t.personal)
            .map(|(tid, t)| json!({"id": tid, "name": t.name, "isOwner": true, "hasAdminVisibility": false}))
            .collect();
        let active = self.scenarios.values().filter(|s| s.organization_id == id && s.is_active).count();
        let full = object(json!({
            "id": o.id,
            "name": o.name,
            "zone": self.zone(o, host),
            "countryId": 1,
            "timezoneId": timezone_id(&o.timezone),
            "serviceName": "pro",
            "productName": "Pro",
            "isPaused": false,
            "lastReset": timestamp(o.last_reset),
            "nextReset": o.next_reset.map(timestamp),
            "operations": used.operations.to_string(),
            "transfer": used.transfer().to_string(),
            "operationsExt": o.operations_ext.to_string(),
            "transferExt": "0",
            "unusedOperations": (o.allowance + o.operations_ext).saturating_sub(used.operations).to_string(),
            "unusedTransfer": "0",
            "license": self.license(o),
            "teams": teams,
            "privateSpaces": spaces,
            "activeScenarios": active,
        }));
        Ok(json!({"organization": pick(full, &q.cols(), |k| k != "privateSpaces")}))
    }

    // GET /organizations/{id}/usage
    fn organization_usage(&self, orgs: &[i64], id: i64) -> ApiResult {
        self.check_org(orgs, id)?;
        Ok(self.usage_series(id, &self.org_scenarios(id)))
    }

    /// Every column of a team. [DOC api-reference/teams] the documented cols[];
    /// [SDK src/endpoints/private-spaces.ts, teams.ts] types, `type` 'personal' | 'standard'.
    fn team_json(&self, id: i64, t: &TeamEntry) -> Map<String, Value> {
        let org = t.organization_id;
        let view = self.view(org);
        let scenarios = self.team_scenarios(id);
        let used = self.total(&scenarios, self.period_start(org, &view), &view);
        let active = self.scenarios.values().filter(|s| s.team_id == id && s.is_active).count();
        let mut m = Map::new();
        m.insert("id".into(), json!(id));
        m.insert("name".into(), json!(t.name));
        m.insert("organizationId".into(), json!(org));
        m.insert("type".into(), json!(if t.personal { "personal" } else { "standard" }));
        m.insert("operationsLimit".into(), Value::Null);
        m.insert("transferLimit".into(), json!("0"));
        m.insert("consumedOperations".into(), self.counter(org, used.operations));
        m.insert("consumedTransfer".into(), self.counter(org, used.transfer()));
        m.insert("isPaused".into(), json!(false));
        m.insert("activeScenarios".into(), json!(active));
        m.insert("activeApps".into(), json!(0));
        m.insert("operations".into(), self.counter(org, used.operations));
        m.insert("transfer".into(), self.counter(org, used.transfer()));
        if !self.omits_centicredits(org) {
            m.insert("consumedCenticredits".into(), self.counter(org, used.centicredits));
            m.insert("centicredits".into(), self.counter(org, used.centicredits));
        }
        m
    }

    // GET /teams?organizationId=[&includePrivateSpaces=true]
    // [DOC api-reference/teams] [SDK src/endpoints/teams.ts] includePrivateSpaces;
    // [SDK test/mocks/teams/list.json] items `{id, name, organizationId}` (other columns via cols[]), sorted by
    // name, default limit 10000.
    fn teams(&self, orgs: &[i64], q: &Query) -> ApiResult {
        let org = q
            .int::<i64>("organizationId")?
            .ok_or_else(|| ApiError::bad_request("Missing required parameter organizationId"))?;
        self.check_org(orgs, org)?;
        let private = q.bool("includePrivateSpaces")?.unwrap_or(false);
        let (offset, limit) = q.page(10_000)?;
        let cols = q.cols();
        let mut teams: Vec<(&i64, &TeamEntry)> =
            self.teams.iter().filter(|(_, t)| t.organization_id == org && (private || !t.personal)).collect();
        teams.sort_by(|a, b| a.1.name.cmp(&b.1.name).then(a.0.cmp(b.0)));
        let page: Vec<Value> = teams
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(id, t)| {
                let full = match cols {
                    Cols::Default => object(json!({"id": id, "name": t.name, "organizationId": t.organization_id})),
                    _ => self.team_json(*id, t),
                };
                pick(full, &cols, |_| true)
            })
            .collect();
        Ok(json!({
            "teams": page,
            "pg": {"sortBy": "name", "sortDir": "asc", "limit": limit, "offset": offset},
        }))
    }

    // GET /teams/{id}  [DOC api-reference/teams] `{"team": {...}}`, cols[].
    fn team(&self, orgs: &[i64], id: i64, q: &Query) -> ApiResult {
        let t = self.readable_team(orgs, id)?;
        Ok(json!({ "team": pick(self.team_json(id, t), &q.cols(), |_| true) }))
    }

    // GET /teams/{id}/usage
    fn team_usage(&self, orgs: &[i64], id: i64) -> ApiResult {
        let t = self.readable_team(orgs, id)?;
        Ok(self.usage_series(t.organization_id, &self.team_scenarios(id)))
    }

    // GET /scenarios?teamId=|organizationId=
    // [DOC api-reference/scenarios] exactly one of teamId and organizationId (the two 400 texts from
    // [DOC troubleshooting/http-status-codes]), folderId, isActive, cols[], pg[*].
    // [no source: chosen] sorted by id ascending (Make's default is "proprietal" descending, which the fake
    // cannot reproduce); default limit 10.
    fn scenarios(&mut self, orgs: &[i64], q: &Query) -> ApiResult {
        let team = q.int::<i64>("teamId")?;
        let org = q.int::<i64>("organizationId")?;
        let folder = q.int::<i64>("folderId")?;
        let active = q.bool("isActive")?;
        let (offset, limit) = q.page(10)?;
        let cols = q.cols();
        let (keep, view_org): (ScenarioFilterFn, i64) = match (team, org) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request("teamId and organizationId cannot be used together"));
            }
            (None, None) => return Err(ApiError::bad_request("Missing required parameter teamId or organizationId")),
            (Some(team), None) => {
                let org = self.team_entry(orgs, team)?.organization_id;
                (Box::new(move |s| s.team_id == team), org)
            }
            (None, Some(org)) => {
                self.check_org(orgs, org)?;
                (Box::new(move |s| s.organization_id == org), org)
            }
        };
        let view = self.view(view_org);
        let listed: Vec<&ScenarioSpec> = self
            .scenarios
            .values()
            .filter(|s| keep(s))
            .filter(|s| folder.is_none_or(|f| s.folder_id == Some(f)))
            .filter(|s| active.is_none_or(|a| s.is_active == a))
            .skip(offset)
            .take(limit)
            .collect();
        let ids: Vec<i64> = listed.iter().map(|s| s.id).collect();
        let page: Vec<Value> =
            listed.into_iter().map(|s| pick(self.scenario_json(s, &view), &cols, |_| true)).collect();
        drop(keep);
        // vanish_after_listing: deleted right after this page is served.
        for id in ids {
            if self.vanishing.remove(&id)
                && let Some(s) = self.scenarios.remove(&id)
            {
                self.deleted.insert(id, s);
            }
        }
        Ok(json!({
            "scenarios": page,
            "pg": {"sortBy": "id", "sortDir": "asc", "limit": limit, "offset": offset, "returnTotalCount": false},
        }))
    }

    // GET /scenarios/{id}  [DOC api-reference/scenarios] [SDK] `{"scenario": {...}}`; cols[] [?] make-api.md §3.2.
    fn scenario(&self, orgs: &[i64], id: i64, q: &Query) -> ApiResult {
        let s = self.scenario_spec(orgs, id)?;
        let view = self.view(s.organization_id);
        Ok(json!({ "scenario": pick(self.scenario_json(s, &view), &q.cols(), |_| true) }))
    }

    // GET /scenarios/{id}/usage
    fn scenario_usage(&self, orgs: &[i64], id: i64) -> ApiResult {
        let s = self.scenario_spec(orgs, id)?;
        Ok(self.usage_series(s.organization_id, &[id]))
    }

    // GET /scenarios/consumptions?teamId=[&organizationId=]
    // [DOC api-reference/scenarios/consumptions] teamId required, organizationId an extra filter; only
    // scenarios with at least 100 centicredits (1 operation); `lastReset`; monthly: the current period,
    // yearly: running 60-day totals (see consumption_start). [3P make-api.md §3.4] element field names.
    fn consumptions(&self, orgs: &[i64], q: &Query) -> ApiResult {
        let team = q.int::<i64>("teamId")?.ok_or_else(|| ApiError::bad_request("Missing required parameter teamId"))?;
        let org_filter = q.int::<i64>("organizationId")?;
        let t = self.readable_team(orgs, team)?;
        let org = t.organization_id;
        let o = self.orgs.get(&org).ok_or_else(|| ApiError::not_found("Organization"))?;
        let view = self.view(org);
        let start = self.consumption_start(org, &view);
        let omit = self.omits_centicredits(org);
        let list: Vec<Value> = self
            .scenarios
            .values()
            .filter(|s| s.team_id == team && org_filter.is_none_or(|f| f == s.organization_id))
            .filter_map(|s| {
                let u = self.total(&[s.id], start, &view);
                let listed = if omit { u.operations >= 1 } else { u.centicredits >= 100 };
                if !listed {
                    return None;
                }
                let mut m = Map::new();
                m.insert("scenarioId".into(), json!(s.id));
                m.insert("operations".into(), self.counter(org, u.operations));
                m.insert("transfer".into(), self.counter(org, u.transfer()));
                if !omit {
                    m.insert("centicredits".into(), self.counter(org, u.centicredits));
                }
                Some(Value::Object(m))
            })
            .collect();
        Ok(json!({ "scenarioConsumptions": list, "lastReset": timestamp(o.last_reset) }))
    }

    // POST /scenarios/{id}/start and /stop  [DOC api-reference/scenarios] [SDK test/mocks] the 200 bodies.
    // [no source: chosen] idempotent (make-api.md §3.2: "already active" is not documented as an error).
    fn set_active(&mut self, orgs: &[i64], id: i64, active: bool) -> ApiResult {
        self.scenario_spec(orgs, id)?;
        if let Some(s) = self.scenarios.get_mut(&id) {
            s.is_active = active;
        }
        Ok(json!({"scenario": {"id": id, "isActive": active, "islinked": active}}))
    }
}

/// Make's timestamp style: `2026-03-01T00:00:00.000Z`.
fn timestamp(ts: Timestamp) -> String {
    format!("{ts:.3}")
}

// ---------------------------------------------------------------------------------------------------
// The generator ([no source: chosen] throughout: Make publishes no usage distributions)

const SCENARIO_NAMES: [&str; 10] = [
    "CRM sync",
    "Invoice export",
    "Lead enrichment",
    "Slack digest",
    "Order webhook",
    "Inventory import",
    "Report builder",
    "Email triage",
    "Backup",
    "Ticket router",
];

const OWNERS: [&str; 6] = ["Becca", "Jan", "Petra", "Tomas", "Alice", "Omar"];

/// SplitMix64's finaliser: a fixed, well-mixing 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64: small, deterministic, no crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `permille / 1000`.
    fn chance(&mut self, permille: u64) -> bool {
        self.below(1000) < permille
    }
}

/// When a generated scenario runs, in its organization's local time.
#[derive(Clone, Copy, Debug)]
enum Schedule {
    /// Every `secs` seconds, at `phase + k * secs` (Unix seconds).
    Every { secs: i64, phase: i64 },
    /// Once a day, `minute` minutes after local midnight.
    Nightly { minute: i64 },
    /// Monday to Friday, `runs` runs 10 minutes apart from `minute` minutes after local midnight.
    WeekdayBatch { minute: i64, runs: i64 },
    /// In each business hour (08:00–19:00) a burst with probability `permille / 1000`.
    Webhook { permille: u64 },
    /// Active, but nothing triggers it.
    Idle,
}

/// A generated scenario's usage pattern.
#[derive(Clone, Copy, Debug)]
struct Pattern {
    seed: u64,
    schedule: Schedule,
    /// Mean operations per run (each run varies 50–150 %).
    ops_per_run: u64,
    /// Mean extra centicredits per run from AI modules (credits beyond 1 operation = 100 centicredits).
    ai_per_run: u64,
    /// Interval and webhook runs at weekends cost this percentage.
    weekend_pct: u64,
}

impl Pattern {
    /// A pattern drawn from `rng`: 3 % heavy batch jobs (100–600 operations per run, nightly or on weekday
    /// mornings), 17 % medium (5–30), the rest small (1–5); 10 % with AI credits on top. Schedules: 10 % idle,
    /// 25 % intervals (15 min to 4 h, mostly hourly or slower), 20 % nightly, 15 % weekday batches, 30 %
    /// webhooks. About 50 000 operations a day for 800 active scenarios.
    fn random(rng: &mut Rng, seed: u64) -> Pattern {
        let size = rng.below(100);
        let heavy = size < 3;
        let ops_per_run = match size {
            0..3 => 100 + rng.below(501),
            3..20 => 5 + rng.below(26),
            _ => 1 + rng.below(5),
        };
        let ai_per_run = if rng.chance(100) { 200 + rng.below(5_000) } else { 0 };
        let nightly = |rng: &mut Rng| Schedule::Nightly { minute: 60 + rng.below(180) as i64 };
        let batch = |rng: &mut Rng| Schedule::WeekdayBatch {
            minute: 7 * 60 + rng.below(180) as i64,
            runs: 1 + rng.below(3) as i64,
        };
        let schedule = if heavy {
            if rng.chance(500) { nightly(rng) } else { batch(rng) }
        } else {
            match rng.below(100) {
                0..10 => Schedule::Idle,
                10..35 => {
                    let secs = [900, 1_800, 3_600, 3_600, 14_400, 14_400][rng.below(6) as usize];
                    Schedule::Every { secs, phase: rng.below(secs as u64) as i64 }
                }
                35..55 => nightly(rng),
                55..70 => batch(rng),
                _ => Schedule::Webhook { permille: 100 + rng.below(500) },
            }
        };
        Pattern { seed, schedule, ops_per_run, ai_per_run, weekend_pct: 30 + rng.below(71) }
    }

    /// The `interval_secs` of the scenario's spec.
    fn interval_secs(&self) -> Option<u64> {
        match self.schedule {
            Schedule::Every { secs, .. } => Some(secs as u64),
            Schedule::Nightly { .. } | Schedule::WeekdayBatch { .. } => Some(86_400),
            Schedule::Webhook { .. } | Schedule::Idle => None,
        }
    }

    /// The cost of the run of scenario `id` at second `t`: a function of the run alone, so that generating an
    /// interval in one piece or several gives the same events.
    fn run(&self, id: i64, t: i64, weekend: bool) -> (Timestamp, Usage) {
        let noise = mix(self.seed ^ mix(id as u64) ^ mix(t as u64).rotate_left(17));
        let pct = 50 + noise % 101;
        let mut ops = (self.ops_per_run * pct / 100).max(1);
        let lighter = weekend && matches!(self.schedule, Schedule::Every { .. } | Schedule::Webhook { .. });
        if lighter {
            ops = (ops * self.weekend_pct / 100).max(1);
        }
        let centicredits = ops * 100 + self.ai_per_run * pct / 100;
        (at_second(t), Usage { centicredits, operations: ops })
    }

    /// Events of scenario `id` for its runs at whole seconds `lo <= t < hi`, in time order.
    fn events(&self, id: i64, tz: &TimeZone, lo: i64, hi: i64, out: &mut Vec<(Timestamp, Usage)>) {
        if lo >= hi || matches!(self.schedule, Schedule::Idle) {
            return;
        }
        let last = local_date(tz, at_second(hi - 1));
        let mut day = local_date(tz, at_second(lo));
        while day <= last {
            let ds = day_start(tz, day).as_second();
            let de = day_start(tz, add_days(day, 1)).as_second();
            let (a, b) = (lo.max(ds), hi.min(de));
            let weekend = matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday);
            let mut emit = |t: i64| {
                if a <= t && t < b {
                    out.push(self.run(id, t, weekend));
                }
            };
            match self.schedule {
                Schedule::Every { secs, phase } => {
                    let mut t = phase + (a - phase).div_euclid(secs) * secs;
                    if t < a {
                        t += secs;
                    }
                    while t < b {
                        emit(t);
                        t += secs;
                    }
                }
                Schedule::Nightly { minute } => emit(ds + minute * 60),
                Schedule::WeekdayBatch { minute, runs } => {
                    if !weekend {
                        for i in 0..runs {
                            emit(ds + (minute + 10 * i) * 60);
                        }
                    }
                }
                Schedule::Webhook { permille } => {
                    for hour in 8..19_i64 {
                        let h = mix(self.seed ^ mix(id as u64) ^ mix((ds + hour * 3_600) as u64));
                        if h % 1000 < permille {
                            emit(ds + hour * 3_600 + ((h >> 20) % 3_600) as i64);
                        }
                    }
                }
                Schedule::Idle => {}
            }
            day = add_days(day, 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Query strings

/// A raw query string, parsed by hand so that bracketed keys (`pg[offset]`, sent as `pg%5Boffset%5D`) work.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Query {
        Query(
            raw.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    fn cols(&self) -> Cols {
        let cols = self.all("cols[]");
        if cols.is_empty() {
            Cols::Default
        } else if cols.contains(&"*") {
            Cols::All
        } else {
            Cols::Only(cols.into_iter().map(str::to_owned).collect())
        }
    }

    fn int<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| ApiError::bad_request(format!("Invalid value of {key}: {v:?}"))),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(v) => Err(ApiError::bad_request(format!("Invalid value of {key}: {v:?}"))),
        }
    }

    /// `pg[offset]` (default 0) and `pg[limit]` (default `default_limit`, at most [`MAX_PAGE_LIMIT`]).
    // [DOC pagination-sorting-filtering/pagination-and-sorting] pg[offset], pg[limit]; defaults per endpoint.
    fn page(&self, default_limit: usize) -> Result<(usize, usize), ApiError> {
        let offset = self.int::<usize>("pg[offset]")?.unwrap_or(0);
        let limit = self.int::<usize>("pg[limit]")?.unwrap_or(default_limit);
        if limit > MAX_PAGE_LIMIT {
            return Err(ApiError::bad_request(format!("pg[limit] must be at most {MAX_PAGE_LIMIT}")));
        }
        Ok((offset, limit))
    }
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
