//! SIMULATED Make.com API v2, for tests and the demo ONLY.
//!
//! This is a fake: an in-process HTTP server on `127.0.0.1` that imitates the few Make.com endpoints the budget
//! controller uses (organizations, teams, scenarios, usage, consumptions, start/stop), following the facts
//! collected in `make-api.md`. It holds made-up data set by the caller, can inject faults (429, 5xx, delays,
//! malformed bodies) and records every request. It never talks to Make.com and is never used by `serve`.
//!
//! The file is self-contained (it only uses normal dependencies of the package) because the demo example
//! includes it with `#[path = "../tests/support/fake_make.rs"] mod fake_make;`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use jiff::Timestamp;
use jiff::civil::Date;
use serde_json::{Map, Value, json};

/// The "today" of the usage endpoints until [`FakeMake::set_today`] changes it.
pub const DEFAULT_TODAY: Date = jiff::civil::date(2026, 3, 20);

/// The fake has no separate data-transfer figures: every operation counts as this many bytes of transfer
/// (`dataTransfer` in usage, `transfer` in consumptions, scenarios, teams and organizations).
pub const TRANSFER_BYTES_PER_OPERATION: u64 = 1024;

/// Timestamp used for every scenario's `created` and `lastEdit`.
const SCENARIO_CREATED: &str = "2026-01-15T09:30:00.000Z";

/// How a token is presented: `Authorization: Token <t>` (API token) or `Authorization: Bearer <t>` (OAuth).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    Token,
    Bearer,
}

/// Encoding of counters in the usage, consumption and team responses of one organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterStyle {
    /// `"operations": 1234`
    Numbers,
    /// `"operations": "1234"`
    Strings,
}

/// A failure injected with [`FakeMake::inject`].
#[derive(Clone, Debug)]
pub enum Fault {
    /// 429 with Make's error body; a `Retry-After: N` header only when `Some(N)`.
    TooManyRequests { retry_after_secs: Option<u64> },
    /// That status with Make's error body (e.g. 500, 502, 503).
    Status(u16),
    /// Sleep this long, then answer normally.
    Delay(Duration),
    /// 200 with a truncated, invalid JSON body.
    MalformedBody,
}

/// An organization as `GET /organizations/{id}` describes it.
#[derive(Clone, Debug)]
pub struct OrgSpec {
    pub id: i64,
    pub name: String,
    /// e.g. `"eu1.make.com"`
    pub zone: String,
    /// `license.apiLimit` (requests per minute).
    pub api_limit: u32,
    /// `license.operations` (plan allowance per period).
    pub allowance: u64,
    pub last_reset: Timestamp,
    pub next_reset: Option<Timestamp>,
}

impl OrgSpec {
    /// A Pro-like organization: zone eu1.make.com, 120 requests/min, 40 000 operations per month, period
    /// 2026-03-01 → 2026-04-01 (UTC).
    pub fn new(id: i64, name: &str) -> OrgSpec {
        OrgSpec {
            id,
            name: name.to_owned(),
            zone: "eu1.make.com".to_owned(),
            api_limit: 120,
            allowance: 40_000,
            last_reset: "2026-03-01T00:00:00Z".parse().expect("valid timestamp"),
            next_reset: Some("2026-04-01T00:00:00Z".parse().expect("valid timestamp")),
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
    /// When the request arrived.
    pub at: Instant,
    /// Status the fake answered.
    pub status: u16,
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
}

struct TeamEntry {
    organization_id: i64,
    name: String,
}

struct FaultEntry {
    prefix: String,
    fault: Fault,
    remaining: usize,
}

/// Usage of one scenario on one day.
#[derive(Clone, Copy, Default)]
struct Usage {
    centicredits: u64,
    operations: u64,
}

impl Usage {
    fn add(&mut self, other: Usage) {
        self.centicredits += other.centicredits;
        self.operations += other.operations;
    }

    fn transfer(&self) -> u64 {
        self.operations * TRANSFER_BYTES_PER_OPERATION
    }
}

struct FakeState {
    tokens: HashMap<String, TokenEntry>,
    orgs: BTreeMap<i64, OrgSpec>,
    teams: BTreeMap<i64, TeamEntry>,
    scenarios: BTreeMap<i64, ScenarioSpec>,
    usage: HashMap<(i64, Date), Usage>,
    today: Date,
    styles: HashMap<i64, CounterStyle>,
    omit_centicredits: HashMap<i64, bool>,
    faults: Vec<FaultEntry>,
    requests: Vec<RecordedRequest>,
}

impl FakeMake {
    /// Bind `127.0.0.1:0` and serve in a spawned tokio task.
    pub async fn start() -> FakeMake {
        let state: Shared = Arc::new(Mutex::new(FakeState {
            tokens: HashMap::new(),
            orgs: BTreeMap::new(),
            teams: BTreeMap::new(),
            scenarios: BTreeMap::new(),
            usage: HashMap::new(),
            today: DEFAULT_TODAY,
            styles: HashMap::new(),
            omit_centicredits: HashMap::new(),
            faults: Vec::new(),
            requests: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fake Make: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake Make: local address");
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

    /// Accept `token` presented as `kind`, for these organizations (and their teams and scenarios).
    /// Adding the same token again replaces it.
    pub fn add_token(&self, token: &str, kind: AuthKind, organization_ids: &[i64]) {
        self.state().tokens.insert(token.to_owned(), TokenEntry { kind, organization_ids: organization_ids.to_vec() });
    }

    /// Add or replace an organization.
    pub fn add_organization(&self, org: OrgSpec) {
        self.state().orgs.insert(org.id, org);
    }

    /// Add or replace a team.
    pub fn add_team(&self, organization_id: i64, team_id: i64, name: &str) {
        self.state().teams.insert(team_id, TeamEntry { organization_id, name: name.to_owned() });
    }

    /// Add or replace a scenario. Its team is created (named "Team {id}") if it was not added before.
    pub fn add_scenario(&self, s: ScenarioSpec) {
        let mut st = self.state();
        st.teams
            .entry(s.team_id)
            .or_insert_with(|| TeamEntry { organization_id: s.organization_id, name: format!("Team {}", s.team_id) });
        st.scenarios.insert(s.id, s);
    }

    /// "Today" for the usage and consumption endpoints (default [`DEFAULT_TODAY`], 2026-03-20).
    pub fn set_today(&self, date: Date) {
        self.state().today = date;
    }

    /// Replace one scenario's usage on one day.
    pub fn set_usage(&self, scenario_id: i64, date: Date, centicredits: u64, operations: u64) {
        self.state().usage.insert((scenario_id, date), Usage { centicredits, operations });
    }

    /// Encoding of counters in that organization's usage, consumption and team responses (default Numbers).
    pub fn set_counter_style(&self, organization_id: i64, style: CounterStyle) {
        self.state().styles.insert(organization_id, style);
    }

    /// Leave out every `centicredits` field of that organization's data (as older zones do).
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

    /// The scenario's `isActive`, or `None` for an unknown scenario.
    pub fn scenario_active(&self, id: i64) -> Option<bool> {
        self.state().scenarios.get(&id).map(|s| s.is_active)
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
}

// ---------------------------------------------------------------------------------------------------
// Request handling

/// An answer before it becomes an HTTP response.
struct Reply {
    status: u16,
    body: String,
    retry_after: Option<u64>,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Reply {
        Reply { status, body: body.to_string(), retry_after: None }
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = Response::new(Body::from(self.body));
        *resp.status_mut() = status;
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// An error in Make's schema: `{"detail", "message", "code"}`.
struct ApiError {
    status: u16,
    detail: String,
    message: &'static str,
    code: String,
}

impl ApiError {
    fn new(status: u16, message: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError { status, detail: detail.into(), message, code: format!("SC{status}") }
    }

    fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(400, "Bad Request", detail)
    }

    fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Invalid token.")
    }

    fn forbidden() -> ApiError {
        ApiError::new(403, "Permission denied", "Access denied.")
    }

    fn not_found(what: &str) -> ApiError {
        ApiError::new(404, "Not Found", format!("{what} not found."))
    }

    fn reply(&self) -> Reply {
        Reply::json(self.status, &json!({"detail": self.detail, "message": self.message, "code": self.code}))
    }
}

type ApiResult = Result<Value, ApiError>;

async fn handle(State(state): State<Shared>, req: Request) -> Response {
    let at = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let authorization =
        req.headers().get(header::AUTHORIZATION).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    // A task of its own, so a request is answered and recorded even if the client gives up waiting (Delay).
    let task = tokio::spawn(process(state, method, path, query, authorization, at));
    match task.await {
        Ok(reply) => reply.into_response(),
        Err(_) => ApiError::new(500, "Internal Server Error", "The fake Make API panicked.").reply().into_response(),
    }
}

async fn process(
    state: Shared,
    method: Method,
    path: String,
    query: String,
    authorization: Option<String>,
    at: Instant,
) -> Reply {
    let fault = take_fault(&state, &path);
    let reply = match fault {
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut r = ApiError::new(
                429,
                "Too Many Requests",
                "Requests limit for organization exceeded, please try again later.",
            )
            .reply();
            r.retry_after = retry_after_secs;
            r
        }
        Some(Fault::Status(status)) => {
            let message =
                StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Simulated Failure");
            ApiError::new(status, message, "Simulated failure injected into the fake Make API.").reply()
        }
        Some(Fault::MalformedBody) => {
            Reply { status: 200, body: r#"{"scenarios":[{"id":1,"name":"Trunc"#.to_owned(), retry_after: None }
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            route(&state, &method, &path, &query, authorization.as_deref())
        }
        None => route(&state, &method, &path, &query, authorization.as_deref()),
    };
    let record = RecordedRequest { method: method.to_string(), path, query, authorization, at, status: reply.status };
    lock(&state).requests.push(record);
    reply
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

fn route(state: &Shared, method: &Method, path: &str, query: &str, authorization: Option<&str>) -> Reply {
    let mut st = lock(state);
    let result = st.authenticate(authorization).and_then(|orgs| {
        let q = Query::parse(query);
        let rest = path.strip_prefix("/api/v2/").ok_or_else(|| ApiError::not_found("Endpoint"))?;
        let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        let get = *method == Method::GET;
        let post = *method == Method::POST;
        match segs.as_slice() {
            ["organizations", id] if get => st.organization(&orgs, parse_id(id, "Organization")?),
            ["organizations", id, "usage"] if get => st.organization_usage(&orgs, parse_id(id, "Organization")?),
            ["teams"] if get => st.teams(&orgs, &q),
            ["teams", id] if get => st.team(&orgs, parse_id(id, "Team")?),
            ["teams", id, "usage"] if get => st.team_usage(&orgs, parse_id(id, "Team")?),
            ["scenarios"] if get => st.scenarios(&orgs, &q),
            ["scenarios", "consumptions"] if get => st.consumptions(&orgs, &q),
            ["scenarios", id] if get => st.scenario(&orgs, parse_id(id, "Scenario")?),
            ["scenarios", id, "usage"] if get => st.scenario_usage(&orgs, parse_id(id, "Scenario")?),
            ["scenarios", id, "start"] if post => st.set_active(&orgs, parse_id(id, "Scenario")?, true),
            ["scenarios", id, "stop"] if post => st.set_active(&orgs, parse_id(id, "Scenario")?, false),
            _ => Err(ApiError::not_found("Endpoint")),
        }
    });
    match result {
        Ok(body) => Reply::json(200, &body),
        Err(e) => e.reply(),
    }
}

fn parse_id(s: &str, what: &str) -> Result<i64, ApiError> {
    s.parse().map_err(|_| ApiError::not_found(what))
}

// ---------------------------------------------------------------------------------------------------
// Endpoints

impl FakeState {
    /// The organizations the request's token covers.
    fn authenticate(&self, authorization: Option<&str>) -> Result<Vec<i64>, ApiError> {
        let header = authorization.ok_or_else(ApiError::unauthorized)?;
        let (kind, token) = if let Some(t) = header.strip_prefix("Token ") {
            (AuthKind::Token, t)
        } else if let Some(t) = header.strip_prefix("Bearer ") {
            (AuthKind::Bearer, t)
        } else {
            return Err(ApiError::unauthorized());
        };
        match self.tokens.get(token.trim()) {
            Some(entry) if entry.kind == kind => Ok(entry.organization_ids.clone()),
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

    /// First day of `org`'s current period: the UTC date of its `lastReset` (no limit for an unknown org).
    fn period_start(&self, org: i64) -> Date {
        match self.orgs.get(&org) {
            Some(o) => jiff::tz::TimeZone::UTC.to_datetime(o.last_reset).date(),
            None => Date::MIN,
        }
    }

    /// Usage of these scenarios, summed over the days `from..=today`.
    fn total(&self, scenario_ids: &[i64], from: Date) -> Usage {
        let mut sum = Usage::default();
        for ((id, day), u) in &self.usage {
            if *day >= from && *day <= self.today && scenario_ids.contains(id) {
                sum.add(*u);
            }
        }
        sum
    }

    fn org_scenarios(&self, org: i64) -> Vec<i64> {
        self.scenarios.values().filter(|s| s.organization_id == org).map(|s| s.id).collect()
    }

    fn team_scenarios(&self, team: i64) -> Vec<i64> {
        self.scenarios.values().filter(|s| s.team_id == team).map(|s| s.id).collect()
    }

    /// `{"data": [...]}`: the 30 days ending today, oldest first, zero days included.
    fn usage_series(&self, org: i64, scenario_ids: &[i64]) -> Value {
        let mut days = vec![self.today];
        while days.len() < 30 {
            let earlier = days.last().and_then(|d| d.yesterday().ok());
            match earlier {
                Some(d) => days.push(d),
                None => break,
            }
        }
        days.reverse();
        let omit = self.omits_centicredits(org);
        let data: Vec<Value> = days
            .iter()
            .map(|day| {
                let mut u = Usage::default();
                for id in scenario_ids {
                    if let Some(x) = self.usage.get(&(*id, *day)) {
                        u.add(*x);
                    }
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

    fn scenario_json(&self, s: &ScenarioSpec) -> Value {
        let used = self.total(&[s.id], self.period_start(s.organization_id));
        let scheduling = match s.interval_secs {
            Some(n) => json!({"type": "indefinitely", "interval": n}),
            None => json!({"type": "immediately"}),
        };
        let user = json!({"id": 1, "name": "Fake User", "email": "fake@example.com"});
        json!({
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
        })
    }

    // GET /organizations/{id}
    fn organization(&self, orgs: &[i64], id: i64) -> ApiResult {
        let o = self.org_spec(orgs, id)?;
        let scenarios = self.org_scenarios(id);
        let used = self.total(&scenarios, self.period_start(id));
        let teams: Vec<Value> = self
            .teams
            .iter()
            .filter(|(_, t)| t.organization_id == id)
            .map(|(tid, t)| json!({"id": tid, "name": t.name}))
            .collect();
        let active = self.scenarios.values().filter(|s| s.organization_id == id && s.is_active).count();
        Ok(json!({"organization": {
            "id": o.id,
            "name": o.name,
            "zone": o.zone,
            "countryId": 1,
            "timezoneId": 113,
            "serviceName": "pro",
            "productName": "Pro",
            "isPaused": false,
            "lastReset": timestamp(o.last_reset),
            "nextReset": o.next_reset.map(timestamp),
            "operations": used.operations.to_string(),
            "transfer": used.transfer().to_string(),
            "operationsExt": "0",
            "transferExt": "0",
            "unusedOperations": o.allowance.saturating_sub(used.operations).to_string(),
            "unusedTransfer": "0",
            "license": {
                "operations": o.allowance,
                "transfer": 21_474_836_480_u64,
                "apiLimit": o.api_limit,
                "restartPeriod": "1 month",
                "interval": 1,
                "teamOperationsLimits": true,
            },
            "teams": teams,
            "activeScenarios": active,
        }}))
    }

    // GET /organizations/{id}/usage
    fn organization_usage(&self, orgs: &[i64], id: i64) -> ApiResult {
        self.check_org(orgs, id)?;
        Ok(self.usage_series(id, &self.org_scenarios(id)))
    }

    // GET /teams?organizationId=
    fn teams(&self, orgs: &[i64], q: &Query) -> ApiResult {
        let org = q
            .int::<i64>("organizationId")?
            .ok_or_else(|| ApiError::bad_request("Missing required parameter organizationId"))?;
        self.check_org(orgs, org)?;
        let (offset, limit) = q.page(10_000)?;
        let mut teams: Vec<(&i64, &TeamEntry)> = self.teams.iter().filter(|(_, t)| t.organization_id == org).collect();
        teams.sort_by(|a, b| a.1.name.cmp(&b.1.name).then(a.0.cmp(b.0)));
        let page: Vec<Value> = teams
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(id, t)| json!({"id": id, "name": t.name, "organizationId": t.organization_id}))
            .collect();
        Ok(json!({
            "teams": page,
            "pg": {"sortBy": "name", "sortDir": "asc", "limit": limit, "offset": offset},
        }))
    }

    // GET /teams/{id}
    fn team(&self, orgs: &[i64], id: i64) -> ApiResult {
        let t = self.team_entry(orgs, id)?;
        let org = t.organization_id;
        let scenarios = self.team_scenarios(id);
        let used = self.total(&scenarios, self.period_start(org));
        let active = self.scenarios.values().filter(|s| s.team_id == id && s.is_active).count();
        let mut m = Map::new();
        m.insert("id".into(), json!(id));
        m.insert("name".into(), json!(t.name));
        m.insert("organizationId".into(), json!(org));
        m.insert("type".into(), json!("standard"));
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
        Ok(json!({ "team": Value::Object(m) }))
    }

    // GET /teams/{id}/usage
    fn team_usage(&self, orgs: &[i64], id: i64) -> ApiResult {
        let t = self.team_entry(orgs, id)?;
        Ok(self.usage_series(t.organization_id, &self.team_scenarios(id)))
    }

    // GET /scenarios?teamId=|organizationId=
    fn scenarios(&self, orgs: &[i64], q: &Query) -> ApiResult {
        let team = q.int::<i64>("teamId")?;
        let org = q.int::<i64>("organizationId")?;
        let folder = q.int::<i64>("folderId")?;
        let active = q.bool("isActive")?;
        let (offset, limit) = q.page(10)?;
        let keep: Box<dyn Fn(&ScenarioSpec) -> bool> = match (team, org) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request("teamId and organizationId cannot be used together"));
            }
            (None, None) => return Err(ApiError::bad_request("Missing required parameter teamId or organizationId")),
            (Some(team), None) => {
                self.team_entry(orgs, team)?;
                Box::new(move |s| s.team_id == team)
            }
            (None, Some(org)) => {
                self.check_org(orgs, org)?;
                Box::new(move |s| s.organization_id == org)
            }
        };
        let page: Vec<Value> = self
            .scenarios
            .values()
            .filter(|s| keep(s))
            .filter(|s| folder.is_none_or(|f| s.folder_id == Some(f)))
            .filter(|s| active.is_none_or(|a| s.is_active == a))
            .skip(offset)
            .take(limit)
            .map(|s| self.scenario_json(s))
            .collect();
        Ok(json!({
            "scenarios": page,
            "pg": {"sortBy": "id", "sortDir": "asc", "limit": limit, "offset": offset, "returnTotalCount": false},
        }))
    }

    // GET /scenarios/{id}
    fn scenario(&self, orgs: &[i64], id: i64) -> ApiResult {
        let s = self.scenario_spec(orgs, id)?;
        Ok(json!({ "scenario": self.scenario_json(s) }))
    }

    // GET /scenarios/{id}/usage
    fn scenario_usage(&self, orgs: &[i64], id: i64) -> ApiResult {
        let s = self.scenario_spec(orgs, id)?;
        Ok(self.usage_series(s.organization_id, &[id]))
    }

    // GET /scenarios/consumptions?teamId=[&organizationId=]
    fn consumptions(&self, orgs: &[i64], q: &Query) -> ApiResult {
        let team = q.int::<i64>("teamId")?.ok_or_else(|| ApiError::bad_request("Missing required parameter teamId"))?;
        let org_filter = q.int::<i64>("organizationId")?;
        let t = self.team_entry(orgs, team)?;
        let org = t.organization_id;
        let o = self.orgs.get(&org).ok_or_else(|| ApiError::not_found("Organization"))?;
        let from = self.period_start(org);
        let omit = self.omits_centicredits(org);
        let list: Vec<Value> = self
            .scenarios
            .values()
            .filter(|s| s.team_id == team && org_filter.is_none_or(|f| f == s.organization_id))
            .filter_map(|s| {
                let u = self.total(&[s.id], from);
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

    // POST /scenarios/{id}/start and /stop
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

    /// `pg[offset]` (default 0) and `pg[limit]` (default `default_limit`).
    fn page(&self, default_limit: usize) -> Result<(usize, usize), ApiError> {
        let offset = self.int::<usize>("pg[offset]")?.unwrap_or(0);
        let limit = self.int::<usize>("pg[limit]")?.unwrap_or(default_limit);
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
