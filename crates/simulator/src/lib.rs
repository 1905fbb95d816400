//! The simulator behind `handover-exporter simulate` and `demo`: NICE CXone and Cognigy.AI served
//! on one loopback listener with the real APIs' paths, auth, envelopes, paging caps, 204s and
//! quirks (api/cxone.md §6, api/cognigy.md §1-§2), fed by a generated [`world::World`] whose
//! ground truth is served at `/_sim/truth`, with fault injection switchable by flag or at runtime
//! (`POST /_sim/faults`) and request counts at `/_sim/stats`.
//!
//! Routing is by path prefix: `/.well-known/*`, `/auth/token` and `/inContactAPI/*` (any case) are
//! CXone; `/odata/v2.4/*` (and `v2.3`) is Cognigy OData; `/new/v2.0|v2.1/projects/{id}/logs` is the
//! Cognigy REST API; `/_sim/*` is the simulator's own control surface. It is a test double, not a
//! proxy: it never talks to the real services, and it does not diagnose anything.
//!
//! A crate of its own (`handover_simulator`), so that the library (`handover_exporter`) does not
//! carry it: the binary links it for `demo` and `simulate` (feature `simulator`, on by default),
//! the tests and benches as a dev-dependency. Its tenant configuration and rules go through the
//! library's real config parser ([`simulated_tenant`], [`sim_rules`]).

pub mod cli;
pub mod cognigy;
pub mod cxone;
pub mod demo;
pub mod extension;
pub mod log_index;
pub mod selection;
pub mod truth;
pub mod world;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::{DateTime, Duration, Utc};
use handover_exporter::config::{Config, Rules, TenantConfig};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

pub use extension::ExtensionVersion;
pub use truth::{dump_replay, Truth};
pub use world::{
    rules_table, rules_with_lag, sim_rules, MatchPath, Scenario, World, WorldSpec,
    SIM_COGNIGY_LAG_SECONDS,
};

/// Fixed credentials of the simulated tenant (the simulator is a local test double; these are not
/// secrets of any real system).
#[derive(Clone, PartialEq, Eq)]
pub struct SimCredentials {
    pub client_id: String,
    pub client_secret: String,
    pub access_key_id: String,
    pub access_key_secret: String,
    /// Cognigy API key (OData `apikey`, REST `X-API-Key`).
    pub api_key: String,
    pub project_id: String,
    pub tenant_id: String,
}

impl Default for SimCredentials {
    fn default() -> Self {
        SimCredentials {
            client_id: "sim-client".into(),
            client_secret: "sim-client-secret".into(),
            access_key_id: "sim-access-key".into(),
            access_key_secret: "sim-access-key-secret".into(),
            api_key: "sim-api-key".into(),
            project_id: world::PROJECT_ID.into(),
            tenant_id: "11eb0358-d3b4-4c1f-9a51-0242ac110003".into(),
        }
    }
}

impl fmt::Debug for SimCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimCredentials")
            .field("client_id", &self.client_id)
            .field("access_key_id", &self.access_key_id)
            .field("project_id", &self.project_id)
            .field("tenant_id", &self.tenant_id)
            .finish_non_exhaustive()
    }
}

/// What a 429 answer says about when to retry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryAfter {
    /// No `Retry-After` header.
    #[default]
    None,
    /// `Retry-After: <seconds>`.
    Seconds(u64),
    /// `Retry-After: <HTTP-date this many seconds from now>`.
    HttpDate(u64),
}

/// Error for a `--fault.retry-after` value that is none of `none`, `N`, `date:N`.
#[derive(Debug, thiserror::Error)]
#[error("invalid Retry-After mode {0:?}: expected `none`, seconds (`2`) or `date:SECONDS`")]
pub struct RetryAfterParseError(String);

impl FromStr for RetryAfter {
    type Err = RetryAfterParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("none") || t.is_empty() {
            return Ok(RetryAfter::None);
        }
        let date = t
            .strip_prefix("date:")
            .or_else(|| t.strip_prefix("http-date:"));
        match date {
            Some(n) => n.parse().map(RetryAfter::HttpDate),
            None => t.parse().map(RetryAfter::Seconds),
        }
        .map_err(|_| RetryAfterParseError(s.to_owned()))
    }
}

/// Fault injection. Counters (`server_error_burst`, `truncated_pages`, `malformed_pages`) count
/// down as they fire; flags stay on until switched off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Every Nth API request answers 429 (0 = off).
    pub rate_limit_429: u64,
    /// The `Retry-After` of those 429s.
    pub retry_after: RetryAfter,
    /// The next N API requests answer 503.
    pub server_error_burst: u64,
    /// Every API answer is delayed this long.
    pub slow_ms: u64,
    /// The next N successful data pages have their body cut in half.
    pub truncated_pages: u64,
    /// The next N successful data pages are not JSON.
    pub malformed_pages: u64,
    /// CXone tokens say and live this long (default 3600 s).
    pub token_ttl_seconds: Option<u64>,
    /// CXone tokens stop working after this long although `expires_in` says otherwise.
    pub token_dies_after_seconds: Option<u64>,
    /// Cognigy OData answers 500 instead of an empty `value` under a keyset filter at the end.
    pub keyset_end_500: bool,
    /// CXone contacts use the older field names and send numbers and booleans as strings.
    pub old_cxone_fields: bool,
    /// Cognigy OData v2.4 records carry `_id` instead of `id`.
    pub odata_underscore_id: bool,
    /// The next N successful data pages send half their body, then the connection is reset.
    pub reset_pages: u64,
    /// The next N API requests answer only after `slow_burst_ms` (slower than a client timeout).
    pub slow_burst: u64,
    pub slow_burst_ms: u64,
    /// The Cognigy logs API answers 400 to a request with `filter` or `startDate`.
    pub logs_filter_refused: bool,
    /// Cognigy (OData and logs) is down: every request answers 503; CXone is unaffected.
    pub cognigy_down: bool,
    /// The flow never copies the contact id into an Analytics custom field: every `customN`
    /// of every Analytics record is served empty.
    pub custom_field_unset: bool,
}

/// Everything `simulate` needs.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    pub seed: u64,
    /// The mix of reasons (`--scenario`).
    pub scenario: Scenario,
    /// The CXone extension version whose log lines the calls write (`--extension-version`).
    pub extension_version: ExtensionVersion,
    /// A finite world of this many calls, all ended before start-up.
    pub calls: Option<usize>,
    /// A streaming world: calls per day, generated in real time (used when `calls` is `None`).
    pub rate_per_day: Option<f64>,
    /// How far back the world starts: the window of a finite world, the backlog of a streaming one.
    pub backlog_hours: f64,
    /// Seconds after a session ends before its OData records appear.
    pub cognigy_lag_seconds: u64,
    /// When set, how long after a session ends its OData records appear, drawn per session
    /// (replaces `cognigy_lag_seconds` for that; `--cognigy-delay`).
    pub cognigy_delay: Option<cognigy::CognigyDelay>,
    pub faults: Faults,
    pub credentials: SimCredentials,
    /// The base URL to advertise (issuer, `api_endpoint`, links); default `http://<bound addr>`.
    pub public_base_url: Option<String>,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            seed: 42,
            scenario: Scenario::Mixed,
            extension_version: ExtensionVersion::default(),
            calls: None,
            rate_per_day: Some(2880.0),
            backlog_hours: 1.0,
            cognigy_lag_seconds: 60,
            cognigy_delay: None,
            faults: Faults::default(),
            credentials: SimCredentials::default(),
            public_base_url: None,
        }
    }
}

/// Simulator options that cannot describe a world.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimOptionsError {
    #[error("--calls must be at least 1")]
    NoCalls,
    #[error("--rate must be a positive number of calls per day, got {0}")]
    BadRate(f64),
    #[error("--backlog-hours must be between 0 and 720, got {0}")]
    BadBacklog(f64),
}

impl SimulatorOptions {
    /// Checks the options, naming the flag that is wrong.
    pub fn validate(&self) -> Result<(), SimOptionsError> {
        if self.calls == Some(0) {
            return Err(SimOptionsError::NoCalls);
        }
        if self.calls.is_none() {
            let rate = self.rate_per_day.unwrap_or(2880.0);
            if !(rate.is_finite() && rate > 0.0) {
                return Err(SimOptionsError::BadRate(rate));
            }
        }
        if !(self.backlog_hours.is_finite() && (0.0..=720.0).contains(&self.backlog_hours)) {
            return Err(SimOptionsError::BadBacklog(self.backlog_hours));
        }
        Ok(())
    }

    /// The world these options describe, anchored at `now`.
    pub fn world_spec(&self, now: DateTime<Utc>) -> WorldSpec {
        let window = Duration::milliseconds((self.backlog_hours.max(0.0) * 3_600_000.0) as i64);
        let lag = Duration::seconds(self.cognigy_lag_seconds as i64);
        // A finite world ends early enough for every record to be visible at `now`.
        let longest = self
            .cognigy_delay
            .as_ref()
            .map_or(lag, |d| d.longest().max(lag));
        let mut spec = match self.calls {
            Some(n) => {
                let mut spec =
                    WorldSpec::finite(self.seed, n, window.max(Duration::minutes(1)), longest, now);
                spec.cognigy_lag = lag;
                spec
            }
            None => WorldSpec::streaming(
                self.seed,
                self.rate_per_day.unwrap_or(2880.0),
                window,
                lag,
                now,
            ),
        };
        spec.rules.cognigy_lag_seconds = spec
            .rules
            .cognigy_lag_seconds
            .max(longest.num_seconds().max(0) as u64);
        spec.cognigy_delay = self.cognigy_delay.clone();
        spec.scenario = self.scenario;
        spec.extension_version = self.extension_version;
        spec
    }
}

/// One issued CXone access token.
#[derive(Debug, Clone)]
struct IssuedToken {
    dies_at: DateTime<Utc>,
}

/// Shared state of a running simulator.
pub struct SimState {
    pub base_url: String,
    pub credentials: SimCredentials,
    world: Mutex<World>,
    faults: Mutex<Faults>,
    stats: Mutex<BTreeMap<String, u64>>,
    tokens: Mutex<HashMap<String, IssuedToken>>,
    refresh_tokens: Mutex<HashMap<String, ()>>,
    api_requests: Mutex<u64>,
    /// When each Cognigy API request (OData or logs) arrived, the latest
    /// [`ARRIVALS_KEPT`] of them.
    cognigy_arrivals: Mutex<std::collections::VecDeque<std::time::Instant>>,
}

/// How many Cognigy request arrival times the simulator keeps (for quota checks).
pub const ARRIVALS_KEPT: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-written in a way that
    // matters to a test double, so a poisoned lock is simply taken over.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SimState {
    /// A simulator state over `world`.
    pub fn new(
        base_url: String,
        world: World,
        faults: Faults,
        credentials: SimCredentials,
    ) -> SimState {
        SimState {
            base_url: base_url.trim_end_matches('/').to_owned(),
            credentials,
            world: Mutex::new(world),
            faults: Mutex::new(faults),
            stats: Mutex::new(BTreeMap::new()),
            tokens: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
            api_requests: Mutex::new(0),
            cognigy_arrivals: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// The world, grown to `now`.
    pub fn world_at(&self, now: DateTime<Utc>) -> MutexGuard<'_, World> {
        let mut w = lock(&self.world);
        w.extend_until(now);
        w
    }

    /// The current faults.
    pub fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    /// Replaces the faults.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    /// Requests per path so far.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        lock(&self.stats).clone()
    }

    /// When each Cognigy API request (OData or REST logs, whatever its answer) arrived, oldest
    /// first: what a Cognigy server counts against its quota.
    pub fn cognigy_arrivals(&self) -> Vec<std::time::Instant> {
        lock(&self.cognigy_arrivals).iter().copied().collect()
    }

    /// The ground truth of every call visible at `until`.
    pub fn truth(&self, until: DateTime<Utc>) -> Truth {
        let world = self.world_at(until);
        Truth::of(&world, until)
    }

    fn issue_token(&self, now: DateTime<Utc>) -> (String, String, u64) {
        let faults = self.faults();
        let ttl = faults.token_ttl_seconds.unwrap_or(3600);
        let life = faults.token_dies_after_seconds.map_or(ttl, |d| d.min(ttl));
        let mut tokens = lock(&self.tokens);
        let n = tokens.len() + 1;
        let access = cxone::jwt(&serde_json::json!({
            "iss": self.base_url, "jti": format!("sim-at-{n}"), "iat": now.timestamp(),
            "exp": now.timestamp() + ttl as i64, "tenantId": self.credentials.tenant_id,
        }));
        tokens.insert(
            access.clone(),
            IssuedToken {
                dies_at: now + Duration::seconds(life as i64),
            },
        );
        let refresh = format!("sim-rt-{n}-{}", now.timestamp_millis());
        lock(&self.refresh_tokens).insert(refresh.clone(), ());
        (access, refresh, ttl)
    }

    fn token_valid(&self, token: &str, now: DateTime<Utc>) -> bool {
        lock(&self.tokens)
            .get(token)
            .is_some_and(|t| t.dies_at > now)
    }

    fn take_refresh_token(&self, token: &str) -> bool {
        lock(&self.refresh_tokens).remove(token).is_some()
    }
}

/// A running simulator started by [`spawn`]: its URL, its state, and a way to stop it.
pub struct SimHandle {
    pub base_url: String,
    pub addr: SocketAddr,
    pub state: Arc<SimState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl SimHandle {
    /// Stops the server and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Builds the state for `listener` and `options`.
pub fn build_state(
    listener: &tokio::net::TcpListener,
    options: &SimulatorOptions,
) -> anyhow::Result<Arc<SimState>> {
    options.validate()?;
    let addr = listener.local_addr()?;
    let base_url = options
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let world = World::new(options.world_spec(Utc::now()));
    Ok(Arc::new(SimState::new(
        base_url,
        world,
        options.faults.clone(),
        options.credentials.clone(),
    )))
}

/// Starts the simulator on `listener` in a background task.
pub async fn spawn(
    listener: tokio::net::TcpListener,
    options: SimulatorOptions,
) -> anyhow::Result<SimHandle> {
    let addr = listener.local_addr()?;
    let state = build_state(&listener, &options)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(state.clone());
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .map_err(anyhow::Error::from)
    });
    Ok(SimHandle {
        base_url: state.base_url.clone(),
        addr,
        state,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// Serves the simulator on `listener` until `shutdown` completes.
pub async fn run(
    listener: tokio::net::TcpListener,
    options: SimulatorOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = build_state(&listener, &options)?;
    tracing::info!(url = %state.base_url, seed = options.seed, "simulator listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// The simulator's whole HTTP surface.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

/// The parsed request the API handlers see.
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub raw_query: String,
    pub headers: axum::http::HeaderMap,
    pub body: Bytes,
    pub now: DateTime<Utc>,
}

impl ApiRequest {
    /// The first value of a query parameter (key compared literally, value percent-decoded).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable query parameter.
    pub fn params(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Splits a raw query string into pairs. Keys stay exactly as sent (so `%24top` is not `$top`, as
/// with the real OData service); values are percent-decoded with `+` as space.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (k.to_owned(), percent_decode(v)),
            None => (pair.to_owned(), String::new()),
        })
        .collect()
}

/// Percent-decodes a form value (`+` is a space); invalid escapes are kept as written.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JSON answer.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    json_text_response(status, value.to_string())
}

/// A JSON response from already serialized text.
pub fn json_text_response(status: StatusCode, text: String) -> Response {
    let mut resp = (status, text).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// Which data pages the truncation / malformation faults apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    Data,
    Other,
}

async fn dispatch(State(state): State<Arc<SimState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 4 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response(),
    };
    let raw_query = parts.uri.query().unwrap_or("").to_owned();
    let req = ApiRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parse_query(&raw_query),
        raw_query,
        headers: parts.headers.clone(),
        body,
        now: Utc::now(),
    };
    if req.path.starts_with("/_sim/") {
        return truth::control(&state, &req);
    }
    *lock(&state.stats).entry(req.path.clone()).or_insert(0) += 1;
    let cognigy_path = req.path.starts_with("/odata/") || req.path.starts_with("/new/");
    if cognigy_path {
        let mut arrivals = lock(&state.cognigy_arrivals);
        if arrivals.len() >= ARRIVALS_KEPT {
            arrivals.pop_front();
        }
        arrivals.push_back(std::time::Instant::now());
    }
    let faults = state.faults();
    if faults.slow_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(faults.slow_ms)).await;
    }
    let slow_burst = {
        let mut f = lock(&state.faults);
        let fire = f.slow_burst > 0;
        if fire {
            f.slow_burst -= 1;
        }
        fire
    };
    if slow_burst {
        tokio::time::sleep(std::time::Duration::from_millis(faults.slow_burst_ms)).await;
    }
    // Faults that replace the answer.
    if faults.cognigy_down && cognigy_path {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "Service Unavailable", "status": 503}),
        );
    }
    {
        let mut f = lock(&state.faults);
        if f.server_error_burst > 0 {
            f.server_error_burst -= 1;
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"error": "Service Unavailable", "status": 503}),
            );
        }
    }
    let n = {
        let mut count = lock(&state.api_requests);
        *count += 1;
        *count
    };
    if faults.rate_limit_429 > 0 && n % faults.rate_limit_429 == 0 {
        let mut resp = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &serde_json::json!({"type": "Too Many Requests", "title": "Too Many Requests", "status": 429, "code": 429}),
        );
        let value = match faults.retry_after {
            RetryAfter::None => None,
            RetryAfter::Seconds(s) => Some(s.to_string()),
            RetryAfter::HttpDate(s) => Some(httpdate::fmt_http_date(
                std::time::SystemTime::now() + std::time::Duration::from_secs(s),
            )),
        };
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }

    let lower = req.path.to_ascii_lowercase();
    let (resp, kind) = if lower.starts_with("/.well-known/")
        || lower == "/auth/token"
        || lower.starts_with("/incontactapi/")
    {
        cxone::handle(&state, &req, &lower)
    } else if lower.starts_with("/odata/") {
        cognigy::handle_odata(&state, &req)
    } else if lower.starts_with("/new/") {
        cognigy::handle_rest(&state, &req)
    } else {
        (
            json_response(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "Not Found", "path": req.path}),
            ),
            PageKind::Other,
        )
    };
    if kind == PageKind::Data && resp.status() == StatusCode::OK {
        return damage_page(&state, resp).await;
    }
    resp
}

async fn damage_page(state: &SimState, resp: Response) -> Response {
    let (truncate, malform, reset) = {
        let mut f = lock(&state.faults);
        if f.malformed_pages > 0 {
            f.malformed_pages -= 1;
            (false, true, false)
        } else if f.truncated_pages > 0 {
            f.truncated_pages -= 1;
            (true, false, false)
        } else if f.reset_pages > 0 {
            f.reset_pages -= 1;
            (false, false, true)
        } else {
            (false, false, false)
        }
    };
    if reset {
        // Half the body, then an error from the body stream: hyper aborts the connection, which
        // the client sees as a reset in the middle of the body.
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let half = Bytes::copy_from_slice(&bytes[..bytes.len() / 2]);
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(half),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "simulated reset mid-body",
            )),
        ];
        return Response::from_parts(parts, Body::from_stream(futures_util::stream::iter(chunks)));
    }
    if !truncate && !malform {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let damaged: Vec<u8> = if malform {
        b"<html><body>502 Bad Gateway</body></html>{\"value\": [".to_vec()
    } else {
        bytes[..bytes.len() / 2].to_vec()
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(damaged))
}

/// The environment variables the simulated tenant's configuration names for its secrets; they
/// are looked up in the simulator's credentials, never in the process environment.
const SECRET_VARS: [&str; 3] = [
    "SIM_CXONE_CLIENT_SECRET",
    "SIM_CXONE_ACCESS_KEY_SECRET",
    "SIM_COGNIGY_API_KEY",
];

/// The `[[tenant]]` block of a tenant polling a simulator at `base_url`, with the limits lifted
/// (tests and the demo run far faster than the real quotas allow: 1000 requests per second,
/// 8 at a time, short timeouts and backoff); secrets by `*_env` names (see [`SECRET_VARS`]).
pub fn simulated_tenant_toml(name: &str, base_url: &str, credentials: &SimCredentials) -> String {
    let http = "timeout_seconds = 10\nmax_retries = 3\ninitial_backoff_ms = 100\n\
                max_backoff_seconds = 2\nquota_requests = 1000\nquota_window_seconds = 1\n\
                max_concurrency = 8\n";
    format!(
        "[[tenant]]\nname = \"{name}\"\n\
         [tenant.cxone]\nissuer = \"{base_url}\"\nclient_id = \"{client_id}\"\n\
         client_secret_env = \"{}\"\naccess_key_id = \"{access_key_id}\"\n\
         access_key_secret_env = \"{}\"\n\
         [tenant.cxone.http]\n{http}\
         [tenant.cognigy]\napi_base_url = \"{base_url}\"\n\
         odata_base_url = \"{base_url}/odata/v2.4\"\napi_key_env = \"{}\"\n\
         project_id = \"{project_id}\"\n\
         [tenant.cognigy.http]\n{http}",
        SECRET_VARS[0],
        SECRET_VARS[1],
        SECRET_VARS[2],
        client_id = credentials.client_id,
        access_key_id = credentials.access_key_id,
        project_id = credentials.project_id,
    )
}

/// Parses a configuration that names the simulated tenants' secrets (see
/// [`simulated_tenant_toml`]) through the real config code, taking those secrets from
/// `credentials`.
pub fn parse_simulated_config(
    text: &str,
    origin: &str,
    credentials: &SimCredentials,
) -> Result<Config, handover_exporter::config::ConfigError> {
    let env = |var: &str| match var {
        v if v == SECRET_VARS[0] => Some(credentials.client_secret.clone()),
        v if v == SECRET_VARS[1] => Some(credentials.access_key_secret.clone()),
        v if v == SECRET_VARS[2] => Some(credentials.api_key.clone()),
        _ => None,
    };
    handover_exporter::config::parse(text, origin, &env)
}

/// A tenant configuration pointing at a simulator at `base_url` with `credentials` (used by
/// `demo`, the tests and the benches), parsed from [`simulated_tenant_toml`] by the real config
/// code, with `rules` as its rules.
pub fn simulated_tenant(
    name: &str,
    base_url: &str,
    credentials: &SimCredentials,
    rules: Rules,
) -> TenantConfig {
    let text = simulated_tenant_toml(name, base_url, credentials);
    // The text is built from a fixed template; the test `simulated_tenant_parses` parses it,
    // and names, URLs and ids are quoted strings the parser takes as they are.
    let mut config = parse_simulated_config(&text, "the simulated tenant", credentials)
        .expect("the simulated tenant's configuration is valid");
    let mut tenant = config.tenants.remove(0);
    tenant.rules = rules;
    tenant
}

/// `simulate --dump DIR`: writes the world these options describe, as of now, as a replay
/// directory, and returns its ground truth.
pub fn dump(options: &SimulatorOptions, dir: &std::path::Path) -> anyhow::Result<Truth> {
    options.validate()?;
    let now = Utc::now();
    let mut world = World::new(options.world_spec(now));
    world.extend_until(now);
    Ok(dump_replay(&world, dir, now)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Query keys stay literal (`%24top` is not `$top`) while values are decoded.
    #[test]
    fn query_keys_stay_literal_and_values_decode() {
        let q = parse_query("%24top=5&$filter=timestamp%20gt%20'x'&a=b+c&flag");
        assert_eq!(q[0], ("%24top".to_owned(), "5".to_owned()));
        assert_eq!(q[1], ("$filter".to_owned(), "timestamp gt 'x'".to_owned()));
        assert_eq!(q[2].1, "b c");
        assert_eq!(q[3], ("flag".to_owned(), String::new()));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    /// `Retry-After` modes parse from flag text and reject nonsense with a message naming it.
    #[test]
    fn retry_after_parses_from_flag_text() {
        assert_eq!(
            "none".parse::<RetryAfter>().expect("none"),
            RetryAfter::None
        );
        assert_eq!(
            "7".parse::<RetryAfter>().expect("seconds"),
            RetryAfter::Seconds(7)
        );
        assert_eq!(
            "date:9".parse::<RetryAfter>().expect("date"),
            RetryAfter::HttpDate(9)
        );
        let err = "soon".parse::<RetryAfter>().expect_err("invalid");
        assert!(err.to_string().contains("soon"));
    }

    /// Impossible options are refused with the flag named.
    #[test]
    fn options_validation_names_the_flag() {
        let zero = SimulatorOptions {
            calls: Some(0),
            ..SimulatorOptions::default()
        };
        assert_eq!(zero.validate(), Err(SimOptionsError::NoCalls));
        let rate = SimulatorOptions {
            rate_per_day: Some(-1.0),
            ..SimulatorOptions::default()
        };
        assert!(rate
            .validate()
            .expect_err("bad rate")
            .to_string()
            .contains("--rate"));
        assert!(SimulatorOptions::default().validate().is_ok());
    }

    /// The simulated tenant's configuration parses through the real config code with the
    /// simulator's secrets, the limits it documents and the defaults for everything else.
    #[test]
    fn simulated_tenant_parses() {
        let creds = SimCredentials::default();
        let tenant = simulated_tenant("t", "http://127.0.0.1:9", &creds, sim_rules());
        assert_eq!(tenant.name, "t");
        assert_eq!(
            tenant.cognigy.odata_base_url,
            "http://127.0.0.1:9/odata/v2.4"
        );
        assert_eq!(tenant.cxone.http.quota_requests, 1000);
        assert_eq!(tenant.cognigy.http.max_concurrency, 8);
        assert_eq!(tenant.cxone.page_size, 1000);
        use secrecy::ExposeSecret;
        assert_eq!(tenant.cognigy.api_key.expose_secret(), creds.api_key);
    }

    /// Credentials' `Debug` never shows the secrets.
    #[test]
    fn credentials_debug_hides_secrets() {
        let text = format!("{:?}", SimCredentials::default());
        assert!(!text.contains("sim-client-secret"));
        assert!(!text.contains("sim-api-key") && !text.contains("sim-access-key-secret"));
    }
}
