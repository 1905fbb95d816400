//! The shared HTTP polling layer: per-request timeout, retries with backoff and `Retry-After`, one
//! request budget per API host shared by every tenant on it ([`HostBudget`]), a per-source
//! concurrency bound, and accounting of every request.
//!
//! API clients only build requests and parse responses; everything about how a request is sent,
//! retried, paced and counted lives here. This file starts with the bounded label sets the
//! accounting uses (the metrics module encodes them), then the host budgets, [`HttpLayer`] (one
//! per tenant and source), the request and response types the clients use, and [`SourceError`]. It never interprets a response body beyond
//! handing it to a client's parser, and it never writes a secret into an error or a log line:
//! URLs are redacted ([`redact_url`]) and credential headers are marked sensitive.

use crate::config::HttpSettings;
use crate::labels::label_enum;
use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Notify, Semaphore};

label_enum!(
    /// Which API a request went to (`source` label).
    pub Source {
        Cxone => "cxone",
        Cognigy => "cognigy",
    }
);

label_enum!(
    /// The fixed set of endpoints (`endpoint` label); never a URL.
    pub Endpoint {
        CxoneOpenidConfiguration => "openid_configuration",
        CxoneToken => "token",
        CxoneConfiguration => "cxone_configuration",
        CxoneContactsCompleted => "contacts_completed",
        CxoneContact => "contact",
        CxoneStateHistory => "state_history",
        CognigySessions => "odata_sessions",
        CognigyConversations => "odata_conversations",
        CognigyAnalytics => "odata_analytics",
        CognigyLogs => "logs",
    }
);

impl Endpoint {
    /// The source an endpoint belongs to.
    pub fn source(self) -> Source {
        match self {
            Endpoint::CognigySessions
            | Endpoint::CognigyConversations
            | Endpoint::CognigyAnalytics
            | Endpoint::CognigyLogs => Source::Cognigy,
            _ => Source::Cxone,
        }
    }
}

label_enum!(
    /// The outcome class of one HTTP attempt (`code` label).
    pub CodeClass {
        Success => "2xx",
        NoContent => "204",
        Unauthorized => "401",
        NotFound => "404",
        TooManyRequests => "429",
        ClientError => "4xx",
        ServerError => "5xx",
        Timeout => "timeout",
        Error => "error",
    }
);

impl CodeClass {
    /// Classifies an HTTP status.
    pub fn from_status(status: u16) -> CodeClass {
        match status {
            204 => CodeClass::NoContent,
            401 => CodeClass::Unauthorized,
            404 => CodeClass::NotFound,
            429 => CodeClass::TooManyRequests,
            200..=299 => CodeClass::Success,
            500..=599 => CodeClass::ServerError,
            _ => CodeClass::ClientError,
        }
    }
}

label_enum!(
    /// Why a request was retried (`cause` label).
    pub RetryCause {
        RateLimited => "rate_limited",
        ServerError => "server_error",
        RequestTimeout => "request_timeout",
        Timeout => "timeout",
        Connect => "connect",
        Reauthenticate => "reauthenticate",
    }
);

/// Receives the accounting of every HTTP attempt; implemented by the metrics registry.
pub trait RequestObserver: Send + Sync {
    /// One attempt finished (any outcome).
    fn observe_request(&self, endpoint: Endpoint, code: CodeClass, elapsed: Duration);
    /// An attempt is about to be retried.
    fn observe_retry(&self, source: Source, cause: RetryCause);
    /// The body of a 2xx answer returned to the caller (`capture` writes them to a replay
    /// directory; `check` looks at their shape). Never called for a token or discovery answer,
    /// whose bodies hold credentials or say nothing about the data. Default: ignored.
    fn observe_body(&self, _endpoint: Endpoint, _body: &[u8]) {}
}

/// An observer that discards everything (CLI one-shots, tests that do not count).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl RequestObserver for NoopObserver {
    fn observe_request(&self, _: Endpoint, _: CodeClass, _: Duration) {}
    fn observe_retry(&self, _: Source, _: RetryCause) {}
}

/// The header CXone uses for a 4xx error's description (api/cxone.md §4).
const IC_STATUS_DESCRIPTION: &str = "icstatusdescription";

/// Query parameters whose values are secrets and are redacted from every URL we print.
const SECRET_QUERY_KEYS: &[&str] = &[
    "apikey",
    "api_key",
    "access_token",
    "client_secret",
    "password",
];

/// Why a request through the layer failed. `Display` names the endpoint and, where there is one,
/// the (redacted) URL and HTTP status; it never contains an API key, token or password.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The API answered with a non-2xx status (after any retries).
    #[error("{endpoint}: HTTP {status} from {url}{}", describe_status(.description))]
    HttpStatus {
        endpoint: Endpoint,
        status: u16,
        /// Redacted URL.
        url: String,
        /// CXone's `icStatusDescription` response header, when sent.
        description: Option<String>,
    },
    /// No complete answer within the per-request timeout (after any retries).
    #[error("{endpoint}: no complete answer within {timeout:?} from {url}")]
    Timeout {
        endpoint: Endpoint,
        url: String,
        timeout: Duration,
    },
    /// The connection could not be established (after any retries).
    #[error("{endpoint}: cannot connect to {url}: {message}")]
    Connect {
        endpoint: Endpoint,
        url: String,
        message: String,
    },
    /// Another transport failure (reset connection, broken body, TLS, ...).
    #[error("{endpoint}: request to {url} failed: {message}")]
    Transport {
        endpoint: Endpoint,
        url: String,
        message: String,
    },
    /// The body is not what the endpoint documents (malformed or truncated JSON, wrong shape).
    #[error("{endpoint}: malformed response from {url}: {message}")]
    Decode {
        endpoint: Endpoint,
        url: String,
        message: String,
    },
    /// Authentication failed (token endpoint refused us, or the API kept answering 401).
    #[error("{endpoint}: authentication failed: {message}")]
    Auth { endpoint: Endpoint, message: String },
    /// Paging cannot make progress (a repeated cursor or a page of only already-seen records).
    #[error("{endpoint}: paging stopped: {message}")]
    PageCap { endpoint: Endpoint, message: String },
    /// The request could not be built (bad base URL in config, invalid header characters).
    #[error("{endpoint}: invalid request: {message}")]
    InvalidRequest { endpoint: Endpoint, message: String },
}

fn describe_status(description: &Option<String>) -> String {
    match description {
        Some(text) if !text.is_empty() => format!(" (icStatusDescription: {text})"),
        _ => String::new(),
    }
}

impl SourceError {
    /// A bounded, stable name of the error class (for logs and poll-failure accounting).
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::HttpStatus { .. } => "http_status",
            SourceError::Timeout { .. } => "timeout",
            SourceError::Connect { .. } => "connect",
            SourceError::Transport { .. } => "transport",
            SourceError::Decode { .. } => "decode",
            SourceError::Auth { .. } => "auth",
            SourceError::PageCap { .. } => "page_cap",
            SourceError::InvalidRequest { .. } => "invalid_request",
        }
    }

    /// The endpoint the failed request went to.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            SourceError::HttpStatus { endpoint, .. }
            | SourceError::Timeout { endpoint, .. }
            | SourceError::Connect { endpoint, .. }
            | SourceError::Transport { endpoint, .. }
            | SourceError::Decode { endpoint, .. }
            | SourceError::Auth { endpoint, .. }
            | SourceError::PageCap { endpoint, .. }
            | SourceError::InvalidRequest { endpoint, .. } => *endpoint,
        }
    }

    /// The HTTP status, for [`SourceError::HttpStatus`].
    pub fn status(&self) -> Option<u16> {
        match self {
            SourceError::HttpStatus { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Replaces the values of secret query parameters (`apikey`, `api_key`, ...) with `[redacted]`
/// and drops any user-info and fragment, so the URL can go into an error or a log line.
pub fn redact_url(url: &str) -> String {
    let without_fragment = url.split('#').next().unwrap_or_default();
    let (base, query) = match without_fragment.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (without_fragment, None),
    };
    // Drop `user:pass@` from the authority.
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}{path}")
        }
        None => base.to_owned(),
    };
    let Some(query) = query else { return base };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            let decoded = percent_decode(key).to_ascii_lowercase();
            if SECRET_QUERY_KEYS.contains(&decoded.as_str()) {
                format!("{key}=[redacted]")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// Percent-encodes a query value or form field: everything except RFC 3986 unreserved characters.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Decodes `%XX` escapes and `+` (form encoding); invalid escapes are kept as they are.
pub fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Builds a query string from `(name, value)` pairs: names are written literally (OData's `$top`
/// must not become `%24top`, api/cognigy.md §2.2), values are percent-encoded.
pub fn query_string(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One header of a request; credentials are marked sensitive so no `Debug` or log shows them.
#[derive(Clone)]
struct RequestHeader {
    name: HeaderName,
    /// Held as a secret so a credential never sits in a printable field.
    value: SecretString,
    sensitive: bool,
}

/// One request as a client describes it; the layer sends, retries and counts it.
#[derive(Clone)]
pub struct HttpRequest {
    endpoint: Endpoint,
    method: Method,
    url: String,
    headers: Vec<RequestHeader>,
    form_body: Option<String>,
    retryable: bool,
    final_statuses: Vec<u16>,
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("endpoint", &self.endpoint)
            .field("method", &self.method.as_str())
            .field("url", &redact_url(&self.url))
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("retryable", &self.retryable)
            .finish()
    }
}

impl HttpRequest {
    /// A GET: idempotent, so retried on 408, 429, 5xx, connect errors and timeouts.
    pub fn get(endpoint: Endpoint, url: impl Into<String>) -> HttpRequest {
        HttpRequest {
            endpoint,
            method: Method::GET,
            url: url.into(),
            headers: Vec::new(),
            form_body: None,
            retryable: true,
            final_statuses: Vec::new(),
        }
    }

    /// A form-encoded POST; not retried unless [`HttpRequest::side_effect_free`] says so.
    pub fn post_form(
        endpoint: Endpoint,
        url: impl Into<String>,
        fields: &[(&str, &str)],
    ) -> HttpRequest {
        let body = fields
            .iter()
            .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        HttpRequest {
            endpoint,
            method: Method::POST,
            url: url.into(),
            headers: Vec::new(),
            form_body: Some(body),
            retryable: false,
            final_statuses: Vec::new(),
        }
    }

    /// Marks a POST as safe to repeat because it changes nothing on the server (a token grant).
    pub fn side_effect_free(mut self) -> HttpRequest {
        self.retryable = true;
        self
    }

    /// A status that is final for this request: returned at once, never retried (e.g. Cognigy's
    /// HTTP 500 at the end of an OData keyset when the client treats it as end of data).
    pub fn final_status(mut self, status: u16) -> HttpRequest {
        self.final_statuses.push(status);
        self
    }

    /// A plain header.
    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> HttpRequest {
        self.headers.push(RequestHeader {
            name,
            value: SecretString::from(value.into()),
            sensitive: false,
        });
        self
    }

    /// A header carrying a secret (`X-API-Key`); marked sensitive.
    pub fn secret_header(mut self, name: HeaderName, value: &SecretString) -> HttpRequest {
        self.headers.push(RequestHeader {
            name,
            value: value.clone(),
            sensitive: true,
        });
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &SecretString) -> HttpRequest {
        let value = SecretString::from(format!("Bearer {}", token.expose_secret()));
        self.secret_header(AUTHORIZATION, &value)
    }

    /// `Authorization: Basic base64(user:password)`.
    pub fn basic_auth(self, user: &str, password: &SecretString) -> HttpRequest {
        use base64::Engine;
        let raw = format!("{user}:{}", password.expose_secret());
        let value = SecretString::from(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ));
        self.secret_header(AUTHORIZATION, &value)
    }

    /// `Accept: application/json`.
    pub fn accept_json(self) -> HttpRequest {
        self.header(ACCEPT, "application/json")
    }

    /// The endpoint this request goes to.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// The URL with secret query values redacted.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// A 2xx answer: status and the whole body, for the client to parse. `Debug` is written by hand:
/// a token endpoint's body holds the access token.
#[derive(Clone)]
pub struct HttpResponse {
    endpoint: Endpoint,
    url: String,
    status: u16,
    body: Vec<u8>,
}

impl std::fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponse")
            .field("endpoint", &self.endpoint)
            .field("url", &self.url)
            .field("status", &self.status)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

impl HttpResponse {
    /// The HTTP status (2xx).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The raw body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Whether there is nothing to parse: HTTP 204 or a blank body.
    pub fn is_empty(&self) -> bool {
        self.status == 204 || self.body.iter().all(u8::is_ascii_whitespace)
    }

    /// Parses the body as JSON into `T`; any error names the endpoint and serde's message.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, SourceError> {
        self.parse_with(|body| serde_json::from_slice(body))
    }

    /// Parses the body with a wire-type parser; any error names the endpoint and the message.
    pub fn parse_with<T>(
        &self,
        parse: impl FnOnce(&[u8]) -> Result<T, serde_json::Error>,
    ) -> Result<T, SourceError> {
        parse(&self.body).map_err(|e| self.decode_error(e))
    }

    /// A [`SourceError::Decode`] for this response.
    pub fn decode_error(&self, message: impl fmt::Display) -> SourceError {
        SourceError::Decode {
            endpoint: self.endpoint,
            url: self.url.clone(),
            message: message.to_string(),
        }
    }
}

/// The result of one attempt, before the retry decision.
enum Attempt {
    Answer {
        status: u16,
        body: Vec<u8>,
        retry_after: Option<Duration>,
        description: Option<String>,
    },
    Timeout,
    Connect(String),
    Transport(String),
}

/// How urgent a read is, for its host budget's queue. The pipeline sets it around each page
/// ([`with_priority`]); requests made outside such a scope (drill-down, discovery) go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadPriority {
    /// Backfill (a read far behind the present) waits while any read of the host near the
    /// present waits: those are the reads that let pending contacts be decided.
    pub backfill: bool,
    /// Where the read stands (its position, Unix milliseconds): among one tenant's waiting
    /// reads, the one furthest behind goes first, since the least-read stream holds that
    /// tenant's read horizon back.
    pub behind: i64,
}

impl ReadPriority {
    /// Before every read (no position).
    pub const FIRST: ReadPriority = ReadPriority {
        backfill: false,
        behind: i64::MIN,
    };
}

tokio::task_local! {
    static READ_PRIORITY: ReadPriority;
}

/// Runs `f` with the requests it makes queued at `priority` in their host budgets.
pub async fn with_priority<F: Future>(priority: ReadPriority, f: F) -> F::Output {
    READ_PRIORITY.scope(priority, f).await
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below only updates plain fields; a panic cannot leave them
    // half-written in a way later calls would misread, so a poisoned lock is taken over.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How many buckets the used share of a budget is counted in (over one window).
const USAGE_BUCKETS: usize = 60;

/// Requests are spaced this much wider than `window / requests`, so that the server, which sees
/// them with a little network jitter, never counts more than the budget in any window.
const BUDGET_SPACING_MARGIN: f64 = 1.01;

/// The request budget of one API host, shared by every tenant that uses it: at most
/// `requests` per `window` (a GCRA cell every `window / requests`, no burst beyond one, so no
/// window of that length ever holds more), granted one request at a time. Waiting requests are
/// served round-robin between tenants (the tenant served least recently first, so none is
/// starved, whatever its reads), then within a tenant reads near the present before backfill,
/// then the read furthest behind.
pub struct HostBudget {
    source: Source,
    host: String,
    requests: u32,
    window: Duration,
    limiter: DefaultDirectRateLimiter,
    queue: Mutex<BudgetQueue>,
    changed: Notify,
    usage: Mutex<Usage>,
}

impl fmt::Debug for HostBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostBudget")
            .field("source", &self.source)
            .field("host", &self.host)
            .field("requests", &self.requests)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// One request waiting for its turn.
struct Waiter {
    id: u64,
    tenant: usize,
    priority: ReadPriority,
}

#[derive(Default)]
struct BudgetQueue {
    waiters: Vec<Waiter>,
    next_id: u64,
    /// The waiter chosen to take the next request: only it waits for the limiter.
    head: Option<u64>,
    /// Per tenant slot: when it was last served (a sequence number; 0: never).
    served: Vec<u64>,
    served_seq: u64,
    tenants: Vec<String>,
}

impl BudgetQueue {
    /// The waiter to serve next (see [`HostBudget`]).
    fn pick(&self) -> Option<u64> {
        // Tenants first: a priority class across tenants let the live polling of tenants that had
        // caught up starve another tenant's backfill for good once their demand reached the
        // budget (30 tenants at 100 000 calls a day each, issue 16).
        self.waiters
            .iter()
            .min_by_key(|w| {
                let served = self.served.get(w.tenant).copied().unwrap_or(0);
                (
                    served,
                    w.tenant,
                    w.priority.backfill,
                    w.priority.behind,
                    w.id,
                )
            })
            .map(|w| w.id)
    }
}

/// Grants counted per bucket of `window / USAGE_BUCKETS`, the last `USAGE_BUCKETS` kept.
struct Usage {
    start: Instant,
    bucket: Duration,
    counts: [u32; USAGE_BUCKETS],
    /// Index (since `start`) of the newest bucket.
    current: u64,
}

impl Usage {
    fn advance(&mut self, now: Instant) {
        let index = (now.saturating_duration_since(self.start).as_nanos()
            / self.bucket.as_nanos().max(1)) as u64;
        let stale = index.saturating_sub(self.current).min(USAGE_BUCKETS as u64);
        for k in 1..=stale {
            self.counts[((self.current + k) % USAGE_BUCKETS as u64) as usize] = 0;
        }
        self.current = self.current.max(index);
    }
}

/// Removes its waiter from the queue when the request is served or abandoned (a dropped future).
struct WaiterGuard<'a> {
    budget: &'a HostBudget,
    id: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        let mut queue = lock(&self.budget.queue);
        queue.waiters.retain(|w| w.id != self.id);
        if queue.head == Some(self.id) {
            queue.head = None;
        }
        drop(queue);
        self.budget.changed.notify_waiters();
    }
}

impl HostBudget {
    /// A budget of `requests` per `window` for `host` (a key from the config, see
    /// [`crate::config::api_host`]; it is the `host` label of the quota metrics).
    pub fn new(source: Source, host: &str, requests: u32, window: Duration) -> HostBudget {
        let requests = requests.max(1);
        let period = window
            .mul_f64(BUDGET_SPACING_MARGIN / f64::from(requests))
            .max(Duration::from_nanos(1));
        // `period` is at least 1 ns, for which `with_period` always gives a quota.
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        HostBudget {
            source,
            host: host.to_owned(),
            requests,
            window,
            limiter: RateLimiter::direct(quota),
            queue: Mutex::new(BudgetQueue::default()),
            changed: Notify::new(),
            usage: Mutex::new(Usage {
                start: Instant::now(),
                bucket: (window / USAGE_BUCKETS as u32).max(Duration::from_millis(1)),
                counts: [0; USAGE_BUCKETS],
                current: 0,
            }),
        }
    }

    pub fn source(&self) -> Source {
        self.source
    }

    /// The host key this budget is for.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Requests allowed per window.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// The share of the budget granted over the last window (0 to about 1).
    pub fn used_ratio(&self) -> f64 {
        let mut usage = lock(&self.usage);
        usage.advance(Instant::now());
        let used: u64 = usage.counts.iter().map(|c| u64::from(*c)).sum();
        used as f64 / f64::from(self.requests)
    }

    /// The slot of `tenant` in the round-robin (one per tenant name).
    fn slot(&self, tenant: &str) -> usize {
        let mut queue = lock(&self.queue);
        if let Some(i) = queue.tenants.iter().position(|t| t == tenant) {
            return i;
        }
        queue.tenants.push(tenant.to_owned());
        queue.served.push(0);
        queue.tenants.len() - 1
    }

    /// Waits for this tenant's turn and for the budget, then counts one request. The priority is
    /// the one the caller runs under ([`with_priority`]).
    async fn acquire(&self, tenant: usize) {
        let priority = READ_PRIORITY
            .try_with(|p| *p)
            .unwrap_or(ReadPriority::FIRST);
        let id = {
            let mut queue = lock(&self.queue);
            let id = queue.next_id;
            queue.next_id += 1;
            queue.waiters.push(Waiter {
                id,
                tenant,
                priority,
            });
            id
        };
        let _guard = WaiterGuard { budget: self, id };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a change between the check and the wait wakes it.
            notified.as_mut().enable();
            {
                let mut queue = lock(&self.queue);
                if queue.head.is_none() {
                    queue.head = queue.pick();
                }
                if queue.head == Some(id) {
                    break;
                }
            }
            notified.await;
        }
        self.limiter.until_ready().await;
        {
            let mut queue = lock(&self.queue);
            queue.served_seq += 1;
            let seq = queue.served_seq;
            if let Some(served) = queue.served.get_mut(tenant) {
                *served = seq;
            }
        }
        let mut usage = lock(&self.usage);
        let now = Instant::now();
        usage.advance(now);
        let index = (usage.current % USAGE_BUCKETS as u64) as usize;
        usage.counts[index] = usage.counts[index].saturating_add(1);
    }
}

/// One tenant's share of a [`HostBudget`].
#[derive(Clone)]
pub struct BudgetHandle {
    budget: Arc<HostBudget>,
    tenant: usize,
}

impl fmt::Debug for BudgetHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetHandle")
            .field("budget", &self.budget)
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl BudgetHandle {
    /// A budget of its own (no other tenant shares it), from `settings`.
    pub fn private(source: Source, host: &str, settings: &HttpSettings) -> BudgetHandle {
        let budget = Arc::new(HostBudget::new(
            source,
            host,
            settings.quota_requests,
            settings.quota_window,
        ));
        let tenant = budget.slot("");
        BudgetHandle { budget, tenant }
    }

    /// The budget this handle draws on.
    pub fn budget(&self) -> &Arc<HostBudget> {
        &self.budget
    }
}

/// The budgets of one process, one per (source, API host).
#[derive(Debug, Default)]
pub struct Budgets {
    hosts: Mutex<Vec<Arc<HostBudget>>>,
}

impl Budgets {
    /// `tenant`'s share of the budget of `host` for `source`, created from `settings` by the
    /// first tenant on that host (the configuration requires tenants on one host to agree).
    pub fn handle(
        &self,
        source: Source,
        host: &str,
        settings: &HttpSettings,
        tenant: &str,
    ) -> BudgetHandle {
        let mut hosts = lock(&self.hosts);
        let budget = match hosts.iter().find(|b| b.source == source && b.host == host) {
            Some(b) => b.clone(),
            None => {
                let b = Arc::new(HostBudget::new(
                    source,
                    host,
                    settings.quota_requests,
                    settings.quota_window,
                ));
                hosts.push(b.clone());
                b
            }
        };
        drop(hosts);
        let tenant = budget.slot(tenant);
        BudgetHandle { budget, tenant }
    }

    /// Every budget made so far.
    pub fn all(&self) -> Vec<Arc<HostBudget>> {
        lock(&self.hosts).clone()
    }
}

/// The shared HTTP layer of one source: timeout, retries with backoff and `Retry-After`, rate
/// limit, concurrency bound and accounting. Cheap to share behind an `Arc`.
pub struct HttpLayer {
    source: Source,
    client: reqwest::Client,
    settings: HttpSettings,
    observer: Arc<dyn RequestObserver>,
    /// This tenant's own cap (`requests_per_second`), if set.
    limiter: Option<DefaultDirectRateLimiter>,
    budget: BudgetHandle,
    permits: Semaphore,
}

impl fmt::Debug for HttpLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpLayer")
            .field("source", &self.source)
            .field("settings", &self.settings)
            .finish()
    }
}

impl HttpLayer {
    /// Builds the layer of `source` from its settings, with a budget of its own; `observer` sees
    /// every attempt and retry.
    pub fn new(
        source: Source,
        settings: &HttpSettings,
        observer: Arc<dyn RequestObserver>,
    ) -> Result<HttpLayer, SourceError> {
        let budget = BudgetHandle::private(source, "", settings);
        HttpLayer::with_budget(source, settings, observer, budget)
    }

    /// Builds the layer of `source` drawing on `budget` (shared with the other tenants of its
    /// API host).
    pub fn with_budget(
        source: Source,
        settings: &HttpSettings,
        observer: Arc<dyn RequestObserver>,
        budget: BudgetHandle,
    ) -> Result<HttpLayer, SourceError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("handover-exporter/", env!("CARGO_PKG_VERSION")))
            // Never follow redirects: a redirect to another host would carry our API key header.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.timeout);
        if settings.http1_only {
            builder = builder.http1_only();
        }
        let client = builder.build().map_err(|e| SourceError::InvalidRequest {
            endpoint: match source {
                Source::Cxone => Endpoint::CxoneOpenidConfiguration,
                Source::Cognigy => Endpoint::CognigySessions,
            },
            message: format!("cannot build the HTTP client: {}", e.without_url()),
        })?;
        Ok(HttpLayer {
            source,
            client,
            settings: settings.clone(),
            observer,
            limiter: settings.requests_per_second.and_then(rate_limiter),
            budget,
            permits: Semaphore::new(settings.max_concurrency.max(1)),
        })
    }

    /// The source this layer serves.
    pub fn source(&self) -> Source {
        self.source
    }

    /// The settings this layer was built from.
    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// The observer, for accounting a client does itself (a re-authentication retry).
    pub fn observer(&self) -> &dyn RequestObserver {
        self.observer.as_ref()
    }

    /// Sends `request`, retrying it when it is retryable, and returns the 2xx answer or the
    /// final error. Every attempt is reported to the observer, every retry too.
    pub async fn send(&self, request: &HttpRequest) -> Result<HttpResponse, SourceError> {
        let url = request.redacted_url();
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.settings.initial_backoff)
            .with_max_delay(self.settings.max_backoff)
            .with_max_times(self.settings.max_retries as usize)
            .with_jitter()
            .build();
        loop {
            let attempt = self.attempt(request).await;
            let (cause, retry_after) = match &attempt {
                Attempt::Answer { status, .. } if (200..300).contains(status) => (None, None),
                Attempt::Answer { status, .. } if request.final_statuses.contains(status) => {
                    (None, None)
                }
                Attempt::Answer {
                    status,
                    retry_after,
                    ..
                } => (retry_cause(*status), *retry_after),
                Attempt::Timeout => (Some(RetryCause::Timeout), None),
                Attempt::Connect(_) => (Some(RetryCause::Connect), None),
                Attempt::Transport(_) => (None, None),
            };
            if let (Some(cause), true) = (cause, request.retryable) {
                if let Some(delay) = backoff.next() {
                    // Jitter may push the backoff past the cap; `Retry-After` replaces the
                    // backoff but is capped too, so a hostile header cannot stall a cycle.
                    let wait = retry_after.unwrap_or(delay).min(self.settings.max_backoff);
                    tracing::debug!(
                        source = %self.source,
                        endpoint = %request.endpoint,
                        cause = %cause,
                        wait_ms = wait.as_millis() as u64,
                        "retrying request"
                    );
                    self.observer.observe_retry(self.source, cause);
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            return self.finish(request, url, attempt);
        }
    }

    /// Turns the last attempt into the caller's result.
    fn finish(
        &self,
        request: &HttpRequest,
        url: String,
        attempt: Attempt,
    ) -> Result<HttpResponse, SourceError> {
        let endpoint = request.endpoint;
        match attempt {
            Attempt::Answer { status, body, .. } if (200..300).contains(&status) => {
                if !matches!(
                    endpoint,
                    Endpoint::CxoneToken
                        | Endpoint::CxoneOpenidConfiguration
                        | Endpoint::CxoneConfiguration
                ) {
                    self.observer.observe_body(endpoint, &body);
                }
                Ok(HttpResponse {
                    endpoint,
                    url,
                    status,
                    body,
                })
            }
            Attempt::Answer {
                status,
                description,
                ..
            } => Err(SourceError::HttpStatus {
                endpoint,
                status,
                // The description comes from the server; redact in case it echoes our URL.
                description: description.map(|d| redact_text(&d)),
                url,
            }),
            Attempt::Timeout => Err(SourceError::Timeout {
                endpoint,
                url,
                timeout: self.settings.timeout,
            }),
            Attempt::Connect(message) => Err(SourceError::Connect {
                endpoint,
                url,
                message,
            }),
            Attempt::Transport(message) => Err(SourceError::Transport {
                endpoint,
                url,
                message,
            }),
        }
    }

    /// One attempt: waits for a concurrency permit, the tenant's own rate cap and its turn in
    /// the host budget, sends, reads the whole body within the timeout, and reports the attempt.
    async fn attempt(&self, request: &HttpRequest) -> Attempt {
        // The semaphore is never closed, so acquiring only fails if it were; treat as no bound.
        let _permit = self.permits.acquire().await.ok();
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        self.budget.budget.acquire(self.budget.tenant).await;
        let started = Instant::now();
        let outcome = match self.build(request) {
            Ok(builder) => {
                let exchange = async {
                    let response = builder.send().await?;
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    let body = response.bytes().await?;
                    Ok::<_, reqwest::Error>((status, headers, body))
                };
                match tokio::time::timeout(self.settings.timeout, exchange).await {
                    Err(_) => Attempt::Timeout,
                    Ok(Err(e)) if e.is_timeout() => Attempt::Timeout,
                    Ok(Err(e)) if e.is_connect() => Attempt::Connect(error_chain(e)),
                    Ok(Err(e)) => Attempt::Transport(error_chain(e)),
                    Ok(Ok((status, headers, body))) => Attempt::Answer {
                        status,
                        body: body.to_vec(),
                        retry_after: headers
                            .get(RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| parse_retry_after(v, SystemTime::now())),
                        description: headers
                            .get(IC_STATUS_DESCRIPTION)
                            .and_then(|v| v.to_str().ok())
                            .map(|v| v.trim().to_owned()),
                    },
                }
            }
            Err(message) => Attempt::Transport(message),
        };
        let code = match &outcome {
            Attempt::Answer { status, .. } => CodeClass::from_status(*status),
            Attempt::Timeout => CodeClass::Timeout,
            Attempt::Connect(_) | Attempt::Transport(_) => CodeClass::Error,
        };
        self.observer
            .observe_request(request.endpoint, code, started.elapsed());
        outcome
    }

    /// The reqwest request of one attempt.
    fn build(&self, request: &HttpRequest) -> Result<reqwest::RequestBuilder, String> {
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| format!("invalid URL {}: {e}", redact_url(&request.url)))?;
        let mut builder = self
            .client
            .request(request.method.clone(), url)
            .timeout(self.settings.timeout);
        for header in &request.headers {
            let mut value = HeaderValue::from_str(header.value.expose_secret())
                .map_err(|_| format!("header {} has invalid characters", header.name))?;
            value.set_sensitive(header.sensitive);
            builder = builder.header(header.name.clone(), value);
        }
        if let Some(body) = &request.form_body {
            builder = builder
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body.clone());
        }
        Ok(builder)
    }
}

/// The governor limiter of a tenant's own `requests_per_second` cap; `None` when the rate is not
/// a positive number.
fn rate_limiter(requests_per_second: f64) -> Option<DefaultDirectRateLimiter> {
    if !requests_per_second.is_finite() || requests_per_second <= 0.0 {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / requests_per_second);
    // A burst of one second's worth lets a short paging run go at once after an idle poll.
    let burst = NonZeroU32::new(requests_per_second.ceil().min(u32::MAX as f64) as u32)
        .unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).map(|q| RateLimiter::direct(q.allow_burst(burst)))
}

/// Which statuses are worth retrying, and why (408, 429, 5xx).
fn retry_cause(status: u16) -> Option<RetryCause> {
    match status {
        408 => Some(RetryCause::RequestTimeout),
        429 => Some(RetryCause::RateLimited),
        500..=599 => Some(RetryCause::ServerError),
        _ => None,
    }
}

/// Parses `Retry-After`: delta-seconds or an HTTP-date (a date in the past means "now").
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A reqwest error and its causes as one line, without the URL (it may hold an API key).
fn error_chain(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    redact_text(&text)
}

/// Redacts `apikey=...`-style values anywhere in a free text (defence in depth for server texts).
fn redact_text(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let hit = SECRET_QUERY_KEYS.iter().find_map(|key| {
            let pattern = format!("{key}=");
            lower[i..].starts_with(&pattern).then_some(pattern.len())
        });
        let boundary = i == 0
            || !lower.as_bytes()[i - 1].is_ascii_alphanumeric() && lower.as_bytes()[i - 1] != b'_';
        match hit {
            Some(len) if boundary => {
                out.push_str(&text[i..i + len]);
                out.push_str("[redacted]");
                i += len;
                while i < text.len() && !matches!(text.as_bytes()[i], b'&' | b' ' | b'"' | b')') {
                    i += 1;
                }
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8().max(1);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Secret query values are redacted wherever they appear, other parameters are kept.
    #[test]
    fn redact_url_hides_api_keys() {
        let url = "https://u:p@odata.example/v2.4/Sessions?$top=5&apikey=s3cret&API_KEY=x&a=b#frag";
        let redacted = redact_url(url);
        assert_eq!(
            redacted,
            "https://odata.example/v2.4/Sessions?$top=5&apikey=[redacted]&API_KEY=[redacted]&a=b"
        );
    }

    /// Free texts lose secret values too (server error descriptions may echo the URL).
    #[test]
    fn redact_text_hides_api_keys() {
        let text = "bad request for /Sessions?apikey=s3cret&x=1 (api_key=abc)";
        let redacted = redact_text(text);
        assert!(
            !redacted.contains("s3cret") && !redacted.contains("abc"),
            "{redacted}"
        );
        assert!(redacted.contains("x=1"));
    }

    /// `Retry-After` is read as delta-seconds and as an HTTP-date; garbage is ignored.
    #[test]
    fn retry_after_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(5));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(5)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    /// Query values are percent-encoded while `$` names stay literal, and decoding inverts it.
    #[test]
    fn query_string_keeps_dollar_names() {
        let q = query_string(&[
            (
                "$filter",
                "timestamp gt '2026-01-01T00:00:00.000Z'".to_owned(),
            ),
            ("$top", "10".to_owned()),
        ]);
        assert_eq!(
            q,
            "$filter=timestamp%20gt%20%272026-01-01T00%3A00%3A00.000Z%27&$top=10"
        );
        assert_eq!(
            percent_decode("timestamp%20gt%20%272026%27+x"),
            "timestamp gt '2026' x"
        );
    }

    /// A request's `Debug` shows the endpoint, redacted URL and header names, never their values.
    #[test]
    fn request_debug_hides_credentials() {
        let request = HttpRequest::get(Endpoint::CognigyLogs, "https://x/logs?apikey=k3y&limit=1")
            .bearer(&SecretString::from("t0ken"))
            .secret_header(
                HeaderName::from_static("x-api-key"),
                &SecretString::from("k3y"),
            );
        let text = format!("{request:?}");
        assert!(!text.contains("k3y") && !text.contains("t0ken"), "{text}");
        assert!(
            text.contains("x-api-key") && text.contains("logs"),
            "{text}"
        );
        let form =
            HttpRequest::post_form(Endpoint::CxoneToken, "https://x/t", &[("password", "pw")]);
        assert!(!format!("{form:?}").contains("pw"));
    }

    /// Every error kind is a short snake_case name.
    #[test]
    fn error_kinds_are_bounded() {
        let e = SourceError::HttpStatus {
            endpoint: Endpoint::CxoneContact,
            status: 400,
            url: "u".into(),
            description: Some("Invalid contactId".into()),
        };
        assert_eq!(e.kind(), "http_status");
        assert_eq!(e.status(), Some(400));
        assert_eq!(
            e.to_string(),
            "contact: HTTP 400 from u (icStatusDescription: Invalid contactId)"
        );
    }

    /// Under contention the shared host budget is split evenly between tenants: with ten tenants
    /// waiting at once (one of them with eight requests in flight, as `max_concurrency` allows,
    /// the others with two), every tenant is granted the same number of requests, within two
    /// (a loaded machine may be late to queue a tenant's next request). The budget is raised to
    /// 200 requests per second (the default is 1000 per 5 minutes) so the test takes 2 s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn host_budget_is_split_evenly_between_tenants() {
        use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
        let budget = Arc::new(HostBudget::new(
            Source::Cognigy,
            "http://sim",
            200,
            Duration::from_secs(1),
        ));
        let tenants = 10;
        let slots: Vec<usize> = (0..tenants)
            .map(|i| budget.slot(&format!("tenant-{i}")))
            .collect();
        let granted: Arc<Vec<AtomicU32>> =
            Arc::new((0..tenants).map(|_| AtomicU32::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (i, slot) in slots.iter().copied().enumerate() {
            let in_flight = if i == 0 { 8 } else { 2 };
            for _ in 0..in_flight {
                let (budget, granted, stop) = (budget.clone(), granted.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        budget.acquire(slot).await;
                        granted[i].fetch_add(1, Ordering::SeqCst);
                    }
                }));
            }
        }
        while granted
            .iter()
            .map(|g| g.load(Ordering::SeqCst))
            .sum::<u32>()
            < 400
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::SeqCst);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        let counts: Vec<u32> = granted.iter().map(|g| g.load(Ordering::SeqCst)).collect();
        let (least, most) = (
            counts.iter().min().copied().unwrap_or(0),
            counts.iter().max().copied().unwrap_or(0),
        );
        assert!(least >= 35, "a tenant was starved: {counts:?}");
        assert!(most - least <= 2, "uneven split: {counts:?}");
    }
}
