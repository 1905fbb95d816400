//! The daemon's HTTP interface (DESIGN §8): the landing page, the OpenMetrics exposition (gzip
//! when asked), `/healthz`, `/readyz` (every tenant and source polled successfully within three
//! poll intervals) and the JSON drill-down API over the store (`/api/v1/diagnoses`,
//! `/api/v1/contacts/{id}`).
//!
//! Handlers only read: metrics are encoded from memory, store reads run on the blocking pool so
//! the async runtime never waits on SQLite, and readiness is fed by the pipeline through
//! [`Readiness`]. Responses never carry secrets (nothing here holds one). This module does not
//! poll, diagnose or write the store. [`WebConfig`] reads `--web.config.file` (the Prometheus
//! exporter-toolkit format): bcrypt `basic_auth_users` are enforced on every route, and
//! `tls_server_config` (`cert_file`, `key_file`, `client_auth_type`, `client_ca_file`,
//! `min_version`, `max_version`; relative paths are resolved against the web config file's
//! directory, as exporter-toolkit does) switches the listener to TLS through rustls with the ring
//! provider. Certificates and keys are read once at start-up (a bad file is a start-up error naming
//! it; they are not reloaded on change), TLS handshakes run concurrently so one slow or hostile
//! client cannot stall the others, and failed handshakes are logged at debug level only. Keys this
//! build cannot honour (`cipher_suites`, `client_allowed_sans`, inline `cert`/`key`, TLS 1.0/1.1,
//! unverified client certificates, `http_server_config`) are refused by name, never ignored.

use crate::diagnosis::{Failure, Outcome, Reason};
use crate::metrics::{Metrics, PollSource};
use crate::store::{DiagnosisFilter, Store, StoreError};
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{
    ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, VARY, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The content type of the metrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Default and maximum `limit` of `/api/v1/diagnoses`.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

const DIAGNOSES_PARAMETERS: &[&str] = &["tenant", "outcome", "failure", "reason", "since", "limit"];

/// When each tenant's sources last polled successfully; `/readyz` reads it, the pipeline writes it.
#[derive(Debug)]
pub struct Readiness {
    poll_interval: Duration,
    last_success: Mutex<BTreeMap<(String, PollSource), Option<Instant>>>,
}

impl Readiness {
    /// Expects a successful poll of every source of every tenant within three `poll_interval`s.
    pub fn new(tenants: &[String], poll_interval: Duration) -> Readiness {
        let mut last_success = BTreeMap::new();
        for tenant in tenants {
            for source in PollSource::ALL {
                last_success.insert((tenant.clone(), *source), None);
            }
        }
        Readiness {
            poll_interval,
            last_success: Mutex::new(last_success),
        }
    }

    /// Records a successful poll now.
    pub fn mark_success(&self, tenant: &str, source: PollSource) {
        self.mark_success_at(tenant, source, Instant::now());
    }

    /// Records a successful poll at `at`.
    pub fn mark_success_at(&self, tenant: &str, source: PollSource, at: Instant) {
        // A poisoned lock only means a writer panicked between two plain stores; the map is intact.
        let mut map = self.last_success.lock().unwrap_or_else(|e| e.into_inner());
        map.insert((tenant.to_owned(), source), Some(at));
    }

    /// What is not ready at `now`, one line each; empty when ready.
    pub fn not_ready(&self, now: Instant) -> Vec<String> {
        let limit = self.poll_interval * 3;
        let map = self.last_success.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter_map(|((tenant, source), last)| match last {
                None => Some(format!("{tenant}/{source}: no successful poll yet")),
                Some(at) => {
                    let age = now.saturating_duration_since(*at);
                    (age > limit).then(|| {
                        format!(
                            "{tenant}/{source}: last successful poll {}s ago (limit {}s)",
                            age.as_secs(),
                            limit.as_secs()
                        )
                    })
                }
            })
            .collect()
    }
}

/// What is wrong with a `--web.config.file`.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("cannot read web config file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("web config file {path} is invalid: {message}")]
    Invalid {
        path: std::path::PathBuf,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<serde_norway::Value>,
    #[serde(default)]
    http_server_config: Option<serde_norway::Value>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

/// The `tls_server_config` keys this build honours; any other key is refused by name.
const TLS_KEYS: &[&str] = &[
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
];

/// How long a client may take to complete its TLS handshake before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsConfig {
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
}

/// Which client certificates the TLS server asks for (exporter-toolkit `client_auth_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthType {
    /// No client certificate is requested (the default).
    NoClientCert,
    /// A client certificate is optional, but verified against `client_ca_file` when sent.
    VerifyClientCertIfGiven,
    /// Every client must present a certificate that verifies against `client_ca_file`.
    RequireAndVerifyClientCert,
}

impl ClientAuthType {
    fn parse(value: &str) -> Result<ClientAuthType, String> {
        match value {
            "" | "NoClientCert" => Ok(ClientAuthType::NoClientCert),
            "VerifyClientCertIfGiven" => Ok(ClientAuthType::VerifyClientCertIfGiven),
            "RequireAndVerifyClientCert" => Ok(ClientAuthType::RequireAndVerifyClientCert),
            "RequestClientCert" | "RequireAnyClientCert" => Err(format!(
                "tls_server_config.client_auth_type: {value} (client certificates accepted \
                 without verification) is not supported by this build; use \
                 VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"
            )),
            other => Err(format!(
                "tls_server_config.client_auth_type: unknown value {other:?}; valid values: \
                 NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
            )),
        }
    }
}

/// The TLS half of a web config: the ready rustls settings and, for Debug, where they came from.
pub struct TlsSettings {
    cert_file: PathBuf,
    client_auth: ClientAuthType,
    server_config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of Debug output; the certificate's path and the policy are not secret.
        f.debug_struct("TlsSettings")
            .field("cert_file", &self.cert_file)
            .field("client_auth", &self.client_auth)
            .finish()
    }
}

fn tls_version(
    key: &str,
    value: &str,
) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    match value {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(format!(
            "tls_server_config.{key}: {value} is not supported by this build (it speaks TLS12 \
             and TLS13 only)"
        )),
        other => Err(format!(
            "tls_server_config.{key}: unknown value {other:?}; valid values: TLS12, TLS13"
        )),
    }
}

/// Reads a file named by a `tls_server_config` key; the error names the key and the path.
fn read_tls_file(key: &str, path: &FsPath) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!(
            "tls_server_config.{key}: cannot read {}: {e}",
            path.display()
        )
    })
}

/// Every certificate of a PEM file, in order; an empty or malformed file is an error naming it.
fn read_certificates(
    key: &str,
    path: &FsPath,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let pem = read_tls_file(key, path)?;
    let certificates = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "tls_server_config.{key}: {} is not valid PEM: {e}",
                path.display()
            )
        })?;
    if certificates.is_empty() {
        return Err(format!(
            "tls_server_config.{key}: {} contains no PEM CERTIFICATE block",
            path.display()
        ));
    }
    Ok(certificates)
}

/// Resolves a configured path against the web config file's directory (exporter-toolkit does).
fn resolve(base: &FsPath, path: &str) -> PathBuf {
    let path = FsPath::new(path);
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// Builds the TLS settings from `tls_server_config`; `None` when it is absent or empty.
fn parse_tls(value: &serde_norway::Value, base: &FsPath) -> Result<Option<TlsSettings>, String> {
    let mapping = match value {
        serde_norway::Value::Null => return Ok(None),
        serde_norway::Value::Mapping(m) if m.is_empty() => return Ok(None),
        serde_norway::Value::Mapping(m) => m,
        _ => return Err("tls_server_config: expected a mapping of settings".to_owned()),
    };
    for key in mapping.keys() {
        let name = key
            .as_str()
            .map_or_else(|| format!("{key:?}"), str::to_owned);
        if !TLS_KEYS.contains(&name.as_str()) {
            return Err(format!(
                "tls_server_config.{name}: not supported by this build (supported keys: {})",
                TLS_KEYS.join(", ")
            ));
        }
    }
    let raw: RawTlsConfig =
        serde_norway::from_value(value.clone()).map_err(|e| format!("tls_server_config: {e}"))?;
    let required = |key: &str, value: Option<String>| {
        value
            .filter(|v| !v.is_empty())
            .map(|v| resolve(base, &v))
            .ok_or_else(|| format!("tls_server_config.{key}: required when TLS is configured"))
    };
    let cert_file = required("cert_file", raw.cert_file)?;
    let key_file = required("key_file", raw.key_file)?;
    let client_auth = ClientAuthType::parse(raw.client_auth_type.as_deref().unwrap_or(""))?;
    let client_ca_file = raw
        .client_ca_file
        .filter(|v| !v.is_empty())
        .map(|v| resolve(base, &v));
    match (client_auth, &client_ca_file) {
        (ClientAuthType::NoClientCert, Some(_)) => {
            return Err(
                "tls_server_config.client_ca_file: set, but client_auth_type is \
                        NoClientCert; set client_auth_type to RequireAndVerifyClientCert or \
                        VerifyClientCertIfGiven"
                    .to_owned(),
            )
        }
        (ClientAuthType::NoClientCert, None) | (_, Some(_)) => {}
        (_, None) => {
            return Err(
                "tls_server_config.client_ca_file: required to verify client certificates"
                    .to_owned(),
            )
        }
    }
    let min = match raw.min_version.as_deref() {
        None | Some("") => &rustls::version::TLS12,
        Some(v) => tls_version("min_version", v)?,
    };
    let max = match raw.max_version.as_deref() {
        None | Some("") => &rustls::version::TLS13,
        Some(v) => tls_version("max_version", v)?,
    };
    let rank = |v: &rustls::SupportedProtocolVersion| u16::from(v.version);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| rank(v) >= rank(min) && rank(v) <= rank(max))
            .collect();
    if versions.is_empty() {
        return Err("tls_server_config: min_version is above max_version".to_owned());
    }

    let certificates = read_certificates("cert_file", &cert_file)?;
    let key = {
        use rustls::pki_types::pem::PemObject as _;
        let pem = read_tls_file("key_file", &key_file)?;
        rustls::pki_types::PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
            format!(
                "tls_server_config.key_file: {} holds no usable PEM private key (PKCS#8, \
                 PKCS#1 or SEC1): {e}",
                key_file.display()
            )
        })?
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let builder = match (client_auth, client_ca_file) {
        (ClientAuthType::NoClientCert, _) | (_, None) => builder.with_no_client_auth(),
        (_, Some(ca_file)) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in read_certificates("client_ca_file", &ca_file)? {
                roots.add(certificate).map_err(|e| {
                    format!(
                        "tls_server_config.client_ca_file: {}: {e}",
                        ca_file.display()
                    )
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if client_auth == ClientAuthType::VerifyClientCertIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| {
                format!(
                    "tls_server_config.client_ca_file: {}: {e}",
                    ca_file.display()
                )
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server_config = builder.with_single_cert(certificates, key).map_err(|e| {
        format!(
            "tls_server_config: the key in {} does not serve the certificate in {}: {e}",
            key_file.display(),
            cert_file.display()
        )
    })?;
    // The router speaks HTTP/1.1 only (axum's http2 feature is off).
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsSettings {
        cert_file,
        client_auth,
        server_config: Arc::new(server_config),
    }))
}

/// The parsed `--web.config.file`: user names and their bcrypt hashes, and the TLS settings.
pub struct WebConfig {
    tls: Option<TlsSettings>,
    basic_auth_users: BTreeMap<String, SecretString>,
    /// A hash of the users' highest cost, verified for unknown user names so that the answer
    /// takes as long as for a known one and does not reveal which names exist.
    decoy_hash: Option<String>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hashes stay out of Debug output; the user names are not secret.
        f.debug_struct("WebConfig")
            .field("users", &self.basic_auth_users.keys())
            .field("tls", &self.tls)
            .finish()
    }
}

impl WebConfig {
    /// Reads and validates a web config file; TLS file paths are relative to its directory.
    pub fn load(path: &std::path::Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(FsPath::new(""));
        WebConfig::parse_in(&text, base).map_err(|message| WebConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses the YAML text of a web config file; TLS file paths are relative to the working
    /// directory.
    pub fn parse(text: &str) -> Result<WebConfig, String> {
        WebConfig::parse_in(text, FsPath::new(""))
    }

    /// Parses the YAML text of a web config file; relative TLS file paths are resolved in `base`.
    pub fn parse_in(text: &str, base: &FsPath) -> Result<WebConfig, String> {
        let raw: RawWebConfig = if text.trim().is_empty() {
            RawWebConfig {
                tls_server_config: None,
                http_server_config: None,
                basic_auth_users: None,
            }
        } else {
            serde_norway::from_str(text).map_err(|e| e.to_string())?
        };
        let present = |v: &Option<serde_norway::Value>| {
            v.as_ref()
                .is_some_and(|v| !v.is_null() && v.as_mapping().map_or(true, |m| !m.is_empty()))
        };
        if present(&raw.http_server_config) {
            return Err("http_server_config: not supported by this build".to_owned());
        }
        let mut users = BTreeMap::new();
        for (user, hash) in raw.basic_auth_users.unwrap_or_default() {
            if user.is_empty() || user.contains(':') {
                return Err(format!("basic_auth_users: invalid user name {user:?}"));
            }
            // Validate the hash's form now, so a typo fails at start-up, not at the first scrape.
            if bcrypt::verify("", &hash).is_err() {
                return Err(format!(
                    "basic_auth_users.{user}: the value is not a bcrypt hash"
                ));
            }
            users.insert(user, SecretString::from(hash));
        }
        let highest_cost = users
            .values()
            .filter_map(|h| {
                h.expose_secret()
                    .split('$')
                    .nth(2)
                    .and_then(|c| c.parse::<u32>().ok())
            })
            .max();
        let decoy_hash = match highest_cost {
            Some(cost) => Some(
                bcrypt::hash("handover-exporter decoy", cost)
                    .map_err(|e| format!("basic_auth_users: cannot prepare bcrypt: {e}"))?,
            ),
            None => None,
        };
        let tls = match &raw.tls_server_config {
            Some(value) => parse_tls(value, base)?,
            None => None,
        };
        Ok(WebConfig {
            tls,
            basic_auth_users: users,
            decoy_hash,
        })
    }

    /// Whether connections are served over TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether any route needs authentication.
    pub fn requires_auth(&self) -> bool {
        !self.basic_auth_users.is_empty()
    }

    /// Whether the `user`/`password` pair is valid (bcrypt; slow by design, call off the runtime).
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.basic_auth_users.get(user) {
            Some(hash) => bcrypt::verify(password, hash.expose_secret()).unwrap_or(false),
            None => {
                if let Some(decoy) = &self.decoy_hash {
                    let _ = bcrypt::verify(password, decoy);
                }
                false
            }
        }
    }
}

/// Rejects requests without valid basic-auth credentials when users are configured.
async fn require_basic_auth(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(config) = state.web_config.clone().filter(|c| c.requires_auth()) else {
        return next.run(request).await;
    };
    let credentials = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(u, p)| (u.to_owned(), p.to_owned()))
        });
    let valid = match credentials {
        Some((user, password)) => {
            tokio::task::spawn_blocking(move || config.verify(&user, &password))
                .await
                .unwrap_or(false)
        }
        None => false,
    };
    if valid {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"handover-exporter\""),
            )],
            "unauthorized\n",
        )
            .into_response()
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub store: Arc<Mutex<Store>>,
    pub readiness: Arc<Readiness>,
    /// Where the exposition is served (`--web.telemetry-path`, default `/metrics`).
    pub telemetry_path: String,
    /// `--web.config.file`, if given: basic-auth users enforced on every route.
    pub web_config: Option<Arc<WebConfig>>,
}

/// Builds the router (exposed for embedding; [`serve`] is the usual entry point).
pub fn router(state: AppState) -> std::io::Result<Router> {
    let path = state.telemetry_path.clone();
    if !path.starts_with('/') || path == "/" || path.starts_with("/api/") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("--web.telemetry-path must start with '/' and not be '/' or under /api/, got {path:?}"),
        ));
    }
    Ok(Router::new()
        .route("/", get(landing))
        .route(&path, get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/diagnoses", get(diagnoses))
        .route("/api/v1/contacts/{id}", get(contact))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_basic_auth,
        ))
        .with_state(state))
}

/// Serves the routes on `listener` until `shutdown` completes, then finishes in-flight requests.
/// Speaks TLS when the web config has `tls_server_config`, plain HTTP otherwise.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = state
        .web_config
        .as_ref()
        .and_then(|c| c.tls.as_ref())
        .map(|t| t.server_config.clone());
    let app = router(state)?;
    match tls {
        Some(server_config) => {
            tracing::info!(address = %listener.local_addr()?, "serving HTTPS");
            let listener = TlsListener::start(listener, TlsAcceptor::from(server_config))?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// A listener that hands axum only connections whose TLS handshake completed.
///
/// A background task accepts TCP connections and runs every handshake as its own task (bounded by
/// [`TLS_HANDSHAKE_TIMEOUT`]), so a client that stalls mid-handshake holds up nobody else.
/// Dropping the listener (at shutdown) stops the accepting and all pending handshakes.
struct TlsListener {
    local_addr: SocketAddr,
    handshaken: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn start(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<TlsListener> {
        let local_addr = listener.local_addr()?;
        let (ready, handshaken) = tokio::sync::mpsc::channel(64);
        let acceptor_task = tokio::spawn(accept_tls(listener, acceptor, ready));
        Ok(TlsListener {
            local_addr,
            handshaken,
            acceptor_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Closes the listening socket and, through the JoinSet, every pending handshake.
        self.acceptor_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            None => {
                // Only reachable if the accepting task died (it never returns while we listen).
                tracing::error!("TLS accept task ended; no further connections are accepted");
                std::future::pending().await
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Whether an accept error concerns one connection only (retry at once) rather than the process.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Accepts TCP connections forever, handshakes each concurrently and queues the finished ones.
async fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: tokio::sync::mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let mut handshakes = tokio::task::JoinSet::new();
    loop {
        while handshakes.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = ready.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(connection) => connection,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                // Out of file descriptors and the like: wait for connections to close, as axum's
                // own TcpListener does.
                tracing::error!(%error, "accepting a connection failed; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Small TLS records should not wait for Nagle; failure only costs latency.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        handshakes.spawn(async move {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    // A send error means the server is shutting down; the connection just closes.
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

async fn landing(State(state): State<AppState>) -> Html<String> {
    let metrics = html_escape(&state.telemetry_path);
    Html(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>handover-exporter</title></head>\n\
         <body><h1>handover-exporter</h1>\n\
         <p>Diagnoses NICE CXone &harr; Cognigy.AI voicebot handovers.</p>\n<ul>\n\
         <li><a href=\"{metrics}\">Metrics</a></li>\n\
         <li><a href=\"/healthz\">Health</a></li>\n\
         <li><a href=\"/readyz\">Readiness</a></li>\n\
         <li><a href=\"/api/v1/diagnoses\">Recent diagnoses (JSON)</a></li>\n\
         <li>One contact: <code>/api/v1/contacts/{{id}}</code></li>\n\
         </ul>\n<p>Version {}</p></body></html>\n",
        env!("CARGO_PKG_VERSION")
    ))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Whether the Accept-Encoding header lists gzip with a non-zero quality.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|value| {
            value.split(',').any(|item| {
                let mut parts = item.split(';').map(str::trim);
                let coding = parts.next().unwrap_or("");
                let zero_quality = parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f64>().ok())
                        == Some(0.0)
                });
                (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero_quality
            })
        })
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let text = state.metrics.encode();
    let content_type = [(
        CONTENT_TYPE,
        HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
    )];
    if accepts_gzip(&headers) {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        match encoder
            .write_all(text.as_bytes())
            .and_then(|()| encoder.finish())
        {
            Ok(body) => {
                return (
                    content_type,
                    [
                        (CONTENT_ENCODING, HeaderValue::from_static("gzip")),
                        (VARY, HeaderValue::from_static("Accept-Encoding")),
                    ],
                    body,
                )
                    .into_response()
            }
            Err(error) => tracing::warn!(%error, "gzip of the exposition failed; sending it plain"),
        }
    }
    (
        content_type,
        [(VARY, HeaderValue::from_static("Accept-Encoding"))],
        text,
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let missing = state.readiness.not_ready(Instant::now());
    if missing.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", missing.join("\n")),
        )
            .into_response()
    }
}

fn error_json(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

fn bad_request(message: String) -> Response {
    error_json(StatusCode::BAD_REQUEST, message)
}

fn valid_values<T: Copy>(all: &[T], as_str: fn(T) -> &'static str) -> String {
    all.iter()
        .map(|v| as_str(*v))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_filter(params: &HashMap<String, String>) -> Result<DiagnosisFilter, String> {
    let mut filter = DiagnosisFilter {
        limit: DEFAULT_LIMIT,
        ..DiagnosisFilter::default()
    };
    for (name, value) in params {
        // `?outcome=&reason=x` (DESIGN §8 writes the empty form): an empty value means "any".
        if value.is_empty() && name != "limit" {
            continue;
        }
        match name.as_str() {
            "tenant" => filter.tenant = Some(value.clone()),
            "outcome" => {
                filter.outcome = Some(Outcome::parse(value).ok_or_else(|| {
                    format!(
                        "parameter outcome: unknown value {value:?}; valid values: {}",
                        valid_values(Outcome::ALL, Outcome::as_str)
                    )
                })?)
            }
            "failure" => {
                filter.failure = Some(Failure::parse(value).ok_or_else(|| {
                    format!(
                        "parameter failure: unknown value {value:?}; valid values: {}",
                        valid_values(Failure::ALL, Failure::as_str)
                    )
                })?)
            }
            "reason" => {
                filter.reason = Some(Reason::parse(value).ok_or_else(|| {
                    format!(
                        "parameter reason: unknown value {value:?}; valid values: {}",
                        valid_values(Reason::ALL, Reason::as_str)
                    )
                })?)
            }
            "since" => {
                filter.since = Some(
                    DateTime::parse_from_rfc3339(value)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| {
                            format!(
                                "parameter since: {value:?} is not an RFC 3339 time \
                                 (e.g. 2026-03-01T10:00:00Z)"
                            )
                        })?,
                )
            }
            "limit" => {
                filter.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        format!("parameter limit: {value:?} is not a number from 1 to {MAX_LIMIT}")
                    })?
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?}; valid parameters: {}",
                    DIAGNOSES_PARAMETERS.join(", ")
                ))
            }
        }
    }
    Ok(filter)
}

/// Runs a store read on the blocking pool and maps its failures to a 500 JSON response.
async fn read_store<T: Send + 'static>(
    store: Arc<Mutex<Store>>,
    read: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response> {
    let joined = tokio::task::spawn_blocking(move || {
        // A poisoned lock means a writer panicked mid-call; SQLite rolled its transaction back.
        let store = store.lock().unwrap_or_else(|e| e.into_inner());
        read(&store)
    })
    .await;
    match joined {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            tracing::error!(%error, "store read failed");
            Err(error_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("store read failed: {error}"),
            ))
        }
        Err(error) => {
            tracing::error!(%error, "store read task failed");
            Err(error_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store read task failed".to_owned(),
            ))
        }
    }
}

async fn diagnoses(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let filter = match parse_filter(&params) {
        Ok(filter) => filter,
        Err(message) => return bad_request(message),
    };
    match read_store(state.store, move |store| store.diagnoses(&filter)).await {
        Ok(rows) => {
            Json(serde_json::json!({ "count": rows.len(), "diagnoses": rows })).into_response()
        }
        Err(response) => response,
    }
}

async fn contact(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(contact_id) = id.parse::<i64>() else {
        return bad_request(format!("contact id must be a number, got {id:?}"));
    };
    match read_store(state.store, move |store| store.diagnosis(contact_id)).await {
        Ok(Some(row)) => Json(row).into_response(),
        Ok(None) => error_json(
            StatusCode::NOT_FOUND,
            format!("no diagnosis recorded for contact {contact_id} (unknown, pending or pruned)"),
        ),
        Err(response) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::{Diagnosis, Evidence};
    use crate::store::CycleCommit;
    use chrono::TimeZone;
    use std::io::Read as _;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 10, minute, 0).unwrap()
    }

    fn diagnosis(id: i64, reason: Reason) -> Diagnosis {
        Diagnosis {
            contact_id: id,
            outcome: reason.outcome(),
            failure: reason.failure(),
            reason,
            rule: reason.rule(),
            summary: reason.explain().into(),
            evidence: Evidence {
                contact_ids: vec![id],
                bot_entry: true,
                session_id: Some(format!("session-{id}")),
                match_kind: None,
                carried_contact_id: Some(id.to_string()),
                contact_started_at: at(0),
                contact_ended_at: at(2),
                escalated_at: Some(at(1)),
                queued_at: None,
                queue_skill_id: None,
                signal_to_queue_seconds: None,
                queue_wait_seconds: None,
                bot_turn_seconds: vec![],
                decided_by: vec![],
                timeline: vec![],
            },
        }
    }

    struct Running {
        base: String,
        readiness: Arc<Readiness>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
        _dir: tempfile::TempDir,
    }

    async fn start() -> Running {
        start_with(None).await
    }

    async fn start_with(web_config: Option<WebConfig>) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("state.db")).unwrap();
        for (minute, d) in [
            (5, diagnosis(1001, Reason::SignalRejected)),
            (6, diagnosis(1002, Reason::AgentAnswered)),
            (7, diagnosis(1003, Reason::NotQueued)),
        ] {
            let one = [d];
            store
                .commit_cycle(
                    "acme",
                    CycleCommit {
                        diagnoses: &one,
                        ..CycleCommit::empty(at(minute))
                    },
                )
                .unwrap();
        }
        let scheme = if web_config.as_ref().is_some_and(WebConfig::tls_enabled) {
            "https"
        } else {
            "http"
        };
        let tenants = vec!["acme".to_owned()];
        let metrics = Metrics::new(&tenants, "test");
        metrics.load_totals(&store.totals().unwrap());
        let readiness = Arc::new(Readiness::new(&tenants, Duration::from_secs(1)));
        let state = AppState {
            metrics: Arc::new(metrics),
            store: Arc::new(Mutex::new(store)),
            readiness: readiness.clone(),
            telemetry_path: "/metrics".to_owned(),
            web_config: web_config.map(Arc::new),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("{scheme}://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, async {
            let _ = stopped.await;
        }));
        Running {
            base,
            readiness,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    fn client() -> reqwest::Client {
        // No automatic decompression: the gzip test inspects the raw body.
        reqwest::Client::builder().no_gzip().build().unwrap()
    }

    async fn get_json(url: &str) -> (StatusCode, serde_json::Value) {
        let response = client().get(url).send().await.unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        assert!(
            response.headers()[CONTENT_TYPE.as_str()]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{url}"
        );
        (status, response.json().await.unwrap())
    }

    /// The landing page links every other route; /healthz answers ok.
    #[tokio::test]
    async fn landing_and_health() {
        let server = start().await;
        let page = client().get(&server.base).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.headers()[CONTENT_TYPE.as_str()]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let body = page.text().await.unwrap();
        for link in [
            "href=\"/metrics\"",
            "href=\"/healthz\"",
            "href=\"/readyz\"",
            "href=\"/api/v1/diagnoses\"",
        ] {
            assert!(body.contains(link), "{link} missing in {body}");
        }
        let health = client()
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        assert_eq!(health.text().await.unwrap(), "ok");
    }

    /// /metrics serves OpenMetrics text with its content type, including store-seeded totals.
    #[tokio::test]
    async fn metrics_plain() {
        let server = start().await;
        let response = client()
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[CONTENT_TYPE.as_str()],
            OPENMETRICS_CONTENT_TYPE
        );
        assert!(response.headers().get(CONTENT_ENCODING.as_str()).is_none());
        let body = response.text().await.unwrap();
        assert!(
            body.contains(r#"handover_contacts_total{tenant="acme",outcome="failed"} 2"#),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"));
    }

    /// /metrics is gzip-compressed when the client accepts gzip, and decompresses to the text.
    #[tokio::test]
    async fn metrics_gzip() {
        let server = start().await;
        let response = client()
            .get(format!("{}/metrics", server.base))
            .header("Accept-Encoding", "deflate, gzip;q=0.8")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[CONTENT_ENCODING.as_str()], "gzip");
        assert_eq!(
            response.headers()[CONTENT_TYPE.as_str()],
            OPENMETRICS_CONTENT_TYPE
        );
        let raw = response.bytes().await.unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.contains("# TYPE handover_contacts counter"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        let refused = client()
            .get(format!("{}/metrics", server.base))
            .header("Accept-Encoding", "gzip;q=0")
            .send()
            .await
            .unwrap();
        assert!(refused.headers().get(CONTENT_ENCODING.as_str()).is_none());
    }

    /// /readyz is 503 naming each source until every source polled recently, then 200.
    #[tokio::test]
    async fn readyz_turns_ready() {
        let server = start().await;
        let url = format!("{}/readyz", server.base);
        let response = client().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 503);
        let body = response.text().await.unwrap();
        assert!(
            body.contains("acme/cxone: no successful poll yet"),
            "{body}"
        );
        assert!(
            body.contains("acme/cognigy: no successful poll yet"),
            "{body}"
        );

        server.readiness.mark_success("acme", PollSource::Cxone);
        let stale = Instant::now().checked_sub(Duration::from_secs(10)).unwrap();
        server
            .readiness
            .mark_success_at("acme", PollSource::Cognigy, stale);
        let response = client().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 503);
        let body = response.text().await.unwrap();
        assert!(!body.contains("acme/cxone"), "{body}");
        assert!(
            body.contains("acme/cognigy: last successful poll 10s ago (limit 3s)"),
            "{body}"
        );

        server.readiness.mark_success("acme", PollSource::Cognigy);
        let response = client().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }

    /// /api/v1/diagnoses lists newest first, filters, and honours limit.
    #[tokio::test]
    async fn diagnoses_api() {
        let server = start().await;
        let ids = |v: &serde_json::Value| -> Vec<i64> {
            v["diagnoses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["diagnosis"]["contact_id"].as_i64().unwrap())
                .collect()
        };
        let (status, all) = get_json(&format!("{}/api/v1/diagnoses", server.base)).await;
        assert_eq!(status, 200);
        assert_eq!(ids(&all), vec![1003, 1002, 1001]);
        assert_eq!(all["count"], 3);
        assert_eq!(all["diagnoses"][0]["tenant"], "acme");
        let (_, failed) = get_json(&format!(
            "{}/api/v1/diagnoses?tenant=acme&outcome=failed&limit=1",
            server.base
        ))
        .await;
        assert_eq!(ids(&failed), vec![1003]);
        let (_, rejected) = get_json(&format!(
            "{}/api/v1/diagnoses?failure=invalid_handover&reason=signal_rejected",
            server.base
        ))
        .await;
        assert_eq!(ids(&rejected), vec![1001]);
        let (status, empty) = get_json(&format!(
            "{}/api/v1/diagnoses?outcome=&failure=&reason=signal_rejected&since=",
            server.base
        ))
        .await;
        assert_eq!(status, 200, "empty parameters mean any value");
        assert_eq!(ids(&empty), vec![1001]);
        let (_, since) = get_json(&format!(
            "{}/api/v1/diagnoses?since=2026-03-01T10:06:00Z",
            server.base
        ))
        .await;
        assert_eq!(ids(&since), vec![1003, 1002]);
    }

    /// Bad parameters are 400 with a message naming the parameter and the valid values.
    #[tokio::test]
    async fn diagnoses_api_rejects_bad_parameters() {
        let server = start().await;
        let (status, body) =
            get_json(&format!("{}/api/v1/diagnoses?outcome=broken", server.base)).await;
        assert_eq!(status, 400);
        let message = body["error"].as_str().unwrap();
        assert!(message.contains("parameter outcome"), "{message}");
        assert!(
            message.contains("contained, handed_over, abandoned, failed, undetermined"),
            "{message}"
        );
        for (query, names) in [
            ("failure=MissingContext", "parameter failure"),
            ("reason=nope", "parameter reason"),
            ("since=yesterday", "parameter since"),
            ("limit=1001", "parameter limit"),
            ("limit=0", "parameter limit"),
            ("limit=ten", "parameter limit"),
            ("colour=red", "unknown parameter \"colour\""),
        ] {
            let (status, body) =
                get_json(&format!("{}/api/v1/diagnoses?{query}", server.base)).await;
            assert_eq!(status, 400, "{query}");
            assert!(
                body["error"].as_str().unwrap().contains(names),
                "{query}: {body}"
            );
        }
    }

    /// /api/v1/contacts/{id} returns the diagnosis with evidence; 404 unknown; 400 non-numeric.
    #[tokio::test]
    async fn contact_api() {
        let server = start().await;
        let (status, body) = get_json(&format!("{}/api/v1/contacts/1001", server.base)).await;
        assert_eq!(status, 200);
        assert_eq!(body["diagnosis"]["reason"], "signal_rejected");
        assert_eq!(body["diagnosis"]["failure"], "invalid_handover");
        assert_eq!(body["diagnosis"]["evidence"]["session_id"], "session-1001");
        assert_eq!(body["diagnosed_at"], "2026-03-01T10:05:00Z");
        let (status, body) = get_json(&format!("{}/api/v1/contacts/424242", server.base)).await;
        assert_eq!(status, 404);
        assert!(body["error"].as_str().unwrap().contains("424242"));
        let (status, body) = get_json(&format!("{}/api/v1/contacts/abc", server.base)).await;
        assert_eq!(status, 400);
        assert!(body["error"]
            .as_str()
            .unwrap()
            .contains("contact id must be a number"));
    }

    /// Completing the shutdown future makes serve return Ok and stop accepting connections.
    #[tokio::test]
    async fn graceful_shutdown_returns() {
        let mut server = start().await;
        assert_eq!(
            client()
                .get(format!("{}/healthz", server.base))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        server.stop.take().unwrap().send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), &mut server.task).await;
        assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
        assert!(client()
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_err());
    }

    /// With basic_auth_users configured, every route needs a valid user and password.
    #[tokio::test]
    async fn basic_auth_guards_every_route() {
        // Cost 4 keeps the test fast; the check is the same bcrypt verification.
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let config =
            WebConfig::parse(&format!("basic_auth_users:\n  prometheus: '{hash}'\n")).unwrap();
        assert!(
            !format!("{config:?}").contains(&hash),
            "hash leaked into Debug"
        );
        let server = start_with(Some(config)).await;
        for path in ["/", "/metrics", "/healthz", "/api/v1/diagnoses"] {
            let url = format!("{}{path}", server.base);
            let anonymous = client().get(&url).send().await.unwrap();
            assert_eq!(anonymous.status(), 401, "{path}");
            assert_eq!(
                anonymous.headers()[WWW_AUTHENTICATE.as_str()],
                "Basic realm=\"handover-exporter\""
            );
            let wrong = client()
                .get(&url)
                .basic_auth("prometheus", Some("nope"))
                .send()
                .await
                .unwrap();
            assert_eq!(wrong.status(), 401, "{path}");
            let stranger = client()
                .get(&url)
                .basic_auth("mallory", Some("s3cret"))
                .send()
                .await
                .unwrap();
            assert_eq!(stranger.status(), 401, "{path}");
            let right = client()
                .get(&url)
                .basic_auth("prometheus", Some("s3cret"))
                .send()
                .await
                .unwrap();
            assert_eq!(right.status(), 200, "{path}");
        }
    }

    /// Web config files with unsupported TLS keys, unknown keys or non-bcrypt values are refused
    /// by name.
    #[test]
    fn web_config_rejects_what_it_cannot_honour() {
        let tls = WebConfig::parse(
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  cipher_suites: []\n",
        )
        .unwrap_err();
        assert!(tls.contains("tls_server_config.cipher_suites"), "{tls}");
        let unknown = WebConfig::parse("basic_auth_user:\n  a: b\n").unwrap_err();
        assert!(unknown.contains("basic_auth_user"), "{unknown}");
        let plain = WebConfig::parse("basic_auth_users:\n  alice: hunter2\n").unwrap_err();
        assert!(plain.contains("basic_auth_users.alice"), "{plain}");
        assert!(!plain.contains("hunter2"), "{plain}");
        assert!(!WebConfig::parse("").unwrap().requires_auth());
        let dir = tempfile::tempdir().unwrap();
        let missing = WebConfig::load(&dir.path().join("web.yml")).unwrap_err();
        assert!(missing.to_string().contains("web.yml"), "{missing}");
    }

    /// A telemetry path that would shadow the landing page or the API is refused.
    #[test]
    fn bad_telemetry_path_is_refused() {
        let state = AppState {
            metrics: Arc::new(Metrics::new(&[], "test")),
            store: Arc::new(Mutex::new(Store::open(":memory:").unwrap())),
            readiness: Arc::new(Readiness::new(&[], Duration::from_secs(60))),
            telemetry_path: "metrics".to_owned(),
            web_config: None,
        };
        let error = router(state).unwrap_err();
        assert!(
            error.to_string().contains("--web.telemetry-path"),
            "{error}"
        );
    }
    const TLS_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{TLS_FIXTURES}/{name}")).unwrap()
    }

    /// Copies the TLS fixtures into a fresh directory beside a web.yml holding `yaml`, so that the
    /// relative paths in `yaml` only resolve against the web config file's own directory.
    fn tls_web_config(yaml: &str) -> (tempfile::TempDir, Result<WebConfig, WebConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "ca.crt",
            "server.crt",
            "server.key",
            "client.crt",
            "client.key",
        ] {
            std::fs::write(dir.path().join(name), fixture(name)).unwrap();
        }
        let path = dir.path().join("web.yml");
        std::fs::write(&path, yaml).unwrap();
        let config = WebConfig::load(&path);
        (dir, config)
    }

    const SERVER_TLS: &str =
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

    /// A client that trusts only the test CA.
    fn tls_client() -> reqwest::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(&fixture("ca.crt")).unwrap();
        reqwest::Client::builder()
            .no_gzip()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
    }

    /// With tls_server_config (paths relative to the web config file), /metrics and /healthz are
    /// served over HTTPS to a client trusting the test CA, and shutdown still completes.
    #[tokio::test]
    async fn tls_serves_metrics_and_health() {
        let (_dir, config) = tls_web_config(SERVER_TLS);
        let config = config.unwrap();
        assert!(config.tls_enabled());
        assert!(
            !format!("{config:?}").contains("PRIVATE KEY"),
            "key leaked into Debug"
        );
        let mut server = start_with(Some(config)).await;
        assert!(
            server.base.starts_with("https://127.0.0.1:"),
            "{}",
            server.base
        );
        let client = tls_client().build().unwrap();
        let metrics = client
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(metrics.status(), 200);
        assert_eq!(
            metrics.headers()[CONTENT_TYPE.as_str()],
            OPENMETRICS_CONTENT_TYPE
        );
        assert!(metrics.text().await.unwrap().ends_with("# EOF\n"));
        let health = client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        assert_eq!(health.text().await.unwrap(), "ok");

        server.stop.take().unwrap().send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), &mut server.task).await;
        assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
        assert!(tls_client()
            .build()
            .unwrap()
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_err());
    }

    /// Plain HTTP to the TLS port and a client not trusting the CA both fail, and neither the
    /// failed handshakes nor a client stalled mid-handshake keep others from being served.
    #[tokio::test]
    async fn tls_refuses_plain_http_and_survives_bad_clients() {
        let (_dir, config) = tls_web_config(SERVER_TLS);
        let server = start_with(Some(config.unwrap())).await;
        let address = server.base.trim_start_matches("https://").to_owned();
        let plain = client()
            .get(format!("http://{address}/healthz"))
            .send()
            .await;
        assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
        let untrusting = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .build()
            .unwrap()
            .get(format!("{}/healthz", server.base))
            .send()
            .await;
        assert!(untrusting.is_err(), "{untrusting:?}");
        // A connection that never starts its handshake must not hold up the next client.
        let _stalled = tokio::net::TcpStream::connect(&address).await.unwrap();
        let served = tokio::time::timeout(
            Duration::from_secs(5),
            tls_client()
                .build()
                .unwrap()
                .get(format!("{}/healthz", server.base))
                .send(),
        )
        .await
        .expect("a stalled handshake blocked another client")
        .unwrap();
        assert_eq!(served.status(), 200);
    }

    /// Basic auth is still enforced, and accepted, over TLS.
    #[tokio::test]
    async fn tls_with_basic_auth() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let (_dir, config) = tls_web_config(&format!(
            "{SERVER_TLS}basic_auth_users:\n  prometheus: '{hash}'\n"
        ));
        let server = start_with(Some(config.unwrap())).await;
        let client = tls_client().build().unwrap();
        let url = format!("{}/metrics", server.base);
        let anonymous = client.get(&url).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        let right = client
            .get(&url)
            .basic_auth("prometheus", Some("s3cret"))
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), 200);
    }

    /// RequireAndVerifyClientCert serves a client with a CA-signed certificate and refuses one
    /// without.
    #[tokio::test]
    async fn tls_requires_client_certificate() {
        let (_dir, config) = tls_web_config(&format!(
            "{SERVER_TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
        ));
        let server = start_with(Some(config.unwrap())).await;
        let url = format!("{}/healthz", server.base);
        let anonymous = tls_client().build().unwrap().get(&url).send().await;
        assert!(
            anonymous.is_err(),
            "served without a client certificate: {anonymous:?}"
        );
        let mut pem = fixture("client.crt");
        pem.extend(fixture("client.key"));
        let identity = reqwest::Identity::from_pem(&pem).unwrap();
        let response = tls_client()
            .identity(identity)
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// VerifyClientCertIfGiven serves a client without a certificate and one with a CA-signed
    /// certificate, but refuses a certificate the CA did not sign.
    #[tokio::test]
    async fn tls_verifies_client_certificate_if_given() {
        let (_dir, config) = tls_web_config(&format!(
            "{SERVER_TLS}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n"
        ));
        let server = start_with(Some(config.unwrap())).await;
        let url = format!("{}/healthz", server.base);
        let anonymous = tls_client()
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 200);
        let identity = |cert: &str, key: &str| {
            let mut pem = fixture(cert);
            pem.extend(fixture(key));
            reqwest::Identity::from_pem(&pem).unwrap()
        };
        let signed = tls_client()
            .identity(identity("client.crt", "client.key"))
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(signed.status(), 200);
        // The server certificate is CA-signed but only for serverAuth, so it is no client identity.
        let misused = tls_client()
            .identity(identity("server.crt", "server.key"))
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await;
        assert!(
            misused.is_err(),
            "a serverAuth-only certificate was accepted: {misused:?}"
        );
    }

    /// min_version TLS13 refuses a client limited to TLS 1.2 and serves a TLS 1.3 one.
    #[tokio::test]
    async fn tls_min_version_is_enforced() {
        let (_dir, config) = tls_web_config(&format!("{SERVER_TLS}  min_version: TLS13\n"));
        let server = start_with(Some(config.unwrap())).await;
        let url = format!("{}/healthz", server.base);
        let old = tls_client()
            .max_tls_version(reqwest::tls::Version::TLS_1_2)
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await;
        assert!(old.is_err(), "TLS 1.2 was served: {old:?}");
        let new = tls_client()
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(new.status(), 200);
    }

    /// Missing or unusable TLS files and settings this build cannot honour are start-up errors
    /// naming the key, the file or the value.
    #[test]
    fn tls_config_errors_name_the_problem() {
        let error = |yaml: &str| -> String {
            let (dir, config) = tls_web_config(yaml);
            let message = config.unwrap_err().to_string();
            assert!(message.contains("web.yml"), "{message}");
            message.replace(&dir.path().display().to_string(), "DIR")
        };
        let missing = error("tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n");
        assert!(
            missing.contains("tls_server_config.cert_file: cannot read DIR/nope.crt"),
            "{missing}"
        );
        let not_a_key =
            error("tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n");
        assert!(
            not_a_key.contains("tls_server_config.key_file: DIR/server.crt"),
            "{not_a_key}"
        );
        let not_a_cert =
            error("tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n");
        assert!(
            not_a_cert.contains("DIR/server.key contains no PEM CERTIFICATE"),
            "{not_a_cert}"
        );
        let wrong_key =
            error("tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n");
        assert!(wrong_key.contains("DIR/client.key"), "{wrong_key}");
        for (yaml, names) in [
            (
                "tls_server_config:\n  key_file: server.key\n",
                "tls_server_config.cert_file: required",
            ),
            (
                &format!("{SERVER_TLS}  client_allowed_sans: [a]\n"),
                "tls_server_config.client_allowed_sans: not supported",
            ),
            (
                &format!("{SERVER_TLS}  min_version: TLS10\n"),
                "tls_server_config.min_version: TLS10 is not supported",
            ),
            (
                &format!("{SERVER_TLS}  max_version: TLS14\n"),
                "tls_server_config.max_version: unknown value \"TLS14\"",
            ),
            (
                &format!("{SERVER_TLS}  min_version: TLS13\n  max_version: TLS12\n"),
                "min_version is above max_version",
            ),
            (
                &format!("{SERVER_TLS}  client_auth_type: RequireAnyClientCert\n"),
                "tls_server_config.client_auth_type: RequireAnyClientCert",
            ),
            (
                &format!("{SERVER_TLS}  client_auth_type: RequireAndVerifyClientCert\n"),
                "tls_server_config.client_ca_file: required",
            ),
            (
                &format!("{SERVER_TLS}  client_ca_file: ca.crt\n"),
                "tls_server_config.client_ca_file: set, but client_auth_type is NoClientCert",
            ),
        ] {
            let message = error(yaml);
            assert!(message.contains(names), "{yaml}: {message}");
        }
        // An empty tls_server_config means plain HTTP, as in exporter-toolkit.
        assert!(!WebConfig::parse("tls_server_config: {}\n")
            .unwrap()
            .tls_enabled());
    }
}
