//! The daemon's HTTP interface (DESIGN §8): the landing page, the OpenMetrics exposition (gzip
//! when asked), `/healthz`, `/readyz` (every tenant and source polled successfully within three
//! poll intervals) and the JSON drill-down API over the store (`/api/v1/diagnoses`,
//! `/api/v1/contacts/{id}`).
//!
//! Handlers only read: metrics are encoded from memory, store reads run on the blocking pool so
//! the async runtime never waits on SQLite, and readiness is fed by the pipeline through
//! [`Readiness`]. Responses never carry secrets or store error text. This module does not
//! poll, diagnose or write the store.
//!
//! [`serve`] runs its own accept loop on hyper under [`ServerLimits`]: a header-read timeout, an
//! idle timeout on every connection, a cap on open connections that closes the oldest idle one to
//! admit a new one, a cap on concurrent `/api/v1` requests (`503` beyond it) and a byte bound on
//! the diagnoses answer, the same for plain HTTP and TLS.
//!
//! [`WebConfig`] reads `--web.config.file` (the Prometheus exporter-toolkit format): bcrypt
//! `basic_auth_users` (cost at most [`MAX_BCRYPT_COST`], each user once) are enforced on every
//! route but `/healthz` and `/readyz`, with verified credentials remembered by a keyed hash and
//! bcrypt work bounded (see `AuthGuard`), and
//! `tls_server_config` (`cert_file`, `key_file`, `client_auth_type`, `client_ca_file`,
//! `min_version`, `max_version`; relative paths are resolved against the web config file's
//! directory, as exporter-toolkit does) switches the listener to TLS through rustls with the ring
//! provider. Certificates and keys are read once at start-up (a bad file is a start-up error naming
//! it; they are not reloaded on change), TLS handshakes run concurrently so one slow or hostile
//! client cannot stall the others, and failed handshakes are logged at debug level only. Keys this
//! build cannot honour (`cipher_suites`, `client_allowed_sans`, inline `cert`/`key`, TLS 1.0/1.1,
//! unverified client certificates, `http_server_config`) are refused by name, never ignored.

use crate::diagnosis::{Failure, Outcome, Reason};
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::store::{DiagnosisFilter, Store, StoreError};
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{
    ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, VARY,
    WWW_AUTHENTICATE,
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
use tokio_rustls::TlsAcceptor;

/// The content type of the metrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Default and maximum `limit` of `/api/v1/diagnoses`.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

const DIAGNOSES_PARAMETERS: &[&str] = &["tenant", "outcome", "failure", "reason", "since", "limit"];

/// What is wrong with a `--web.config.file`.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("web config file {path} {reason}")]
    Read {
        path: std::path::PathBuf,
        /// Why, e.g. "cannot be read: No such file or directory" or "is not a regular file".
        reason: String,
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
    basic_auth_users: Option<UserList>,
}

/// `basic_auth_users` in document order with every entry, so that a user named twice is seen
/// (a map would keep the last one silently).
struct UserList(Vec<(String, String)>);

impl<'de> Deserialize<'de> for UserList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UserList;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping of user names to bcrypt hashes")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<UserList, E> {
                Ok(UserList(Vec::new()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UserList, A::Error> {
                let mut users = Vec::new();
                while let Some(entry) = map.next_entry::<String, String>()? {
                    users.push(entry);
                }
                Ok(UserList(users))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// The highest bcrypt cost accepted in `basic_auth_users`. Each step doubles the work of every
/// check: cost 14 takes about a second of CPU on a current core, cost 31 about a day, which would
/// let any client stall the server with one request.
pub const MAX_BCRYPT_COST: u32 = 14;

/// The longest password bcrypt reads (it ignores what follows); a longer one is refused at
/// verification rather than silently truncated.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// The most bytes `--web.config.file` and each TLS file it names may hold.
const MAX_WEB_FILE_BYTES: u64 = 1024 * 1024;

/// Checks the form of a bcrypt hash and returns its cost, without running bcrypt (a cost of 31
/// would take a day): `$2a$`, `$2b$`, `$2x$` or `$2y$`, a cost from 4 to [`MAX_BCRYPT_COST`], and
/// 53 characters of bcrypt's base64 (salt and hash). Errors never contain the hash.
fn bcrypt_cost(hash: &str) -> Result<u32, String> {
    let not_bcrypt = || "the value is not a bcrypt hash ($2b$<cost>$<53 characters>)".to_owned();
    let parts: bcrypt::HashParts = hash.parse().map_err(|_| not_bcrypt())?;
    let rest = hash.rsplit('$').next().unwrap_or("");
    let alphabet = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '/';
    if !hash.starts_with('$') || rest.len() != 53 || !rest.chars().all(alphabet) {
        return Err(not_bcrypt());
    }
    let cost = parts.get_cost();
    if cost < 4 {
        return Err(format!("bcrypt cost {cost} is below bcrypt's minimum of 4"));
    }
    if cost > MAX_BCRYPT_COST {
        return Err(format!(
            "bcrypt cost {cost} is above the limit of {MAX_BCRYPT_COST}: every request would \
             spend 2^{cost} rounds of CPU checking the password, so a few requests could stall \
             the server; hash the password again with a cost of {MAX_BCRYPT_COST} or less \
             (10 is common)"
        ));
    }
    Ok(cost)
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

/// Reads a file named by a `tls_server_config` key (a regular file of at most 1 MiB); the error
/// names the key and the path.
fn read_tls_file(key: &str, path: &FsPath) -> Result<Vec<u8>, String> {
    crate::config::read_regular_file(path, MAX_WEB_FILE_BYTES).map_err(|e| {
        let e = e.strip_prefix("cannot be read: ").unwrap_or(&e).to_owned();
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
    /// The hash of the users' highest cost, verified (and its result ignored) for unknown user
    /// names so that the answer takes as long as for a known one and does not reveal which names
    /// exist.
    decoy_hash: Option<SecretString>,
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
        let read_error = |reason: String| WebConfigError::Read {
            path: path.to_owned(),
            reason,
        };
        let bytes =
            crate::config::read_regular_file(path, MAX_WEB_FILE_BYTES).map_err(read_error)?;
        let text = String::from_utf8(bytes).map_err(|_| read_error("is not UTF-8 text".into()))?;
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
        let mut decoy: Option<(u32, SecretString)> = None;
        for (user, hash) in raw.basic_auth_users.map(|u| u.0).unwrap_or_default() {
            if user.is_empty() || user.contains(':') {
                return Err(format!("basic_auth_users: invalid user name {user:?}"));
            }
            if users.contains_key(&user) {
                return Err(format!(
                    "basic_auth_users.{user}: the user is listed more than once; keep one entry"
                ));
            }
            // Checks the hash's form and cost now (without running bcrypt), so a typo or a cost
            // that would stall every request fails at start-up, not at the first scrape.
            let cost = bcrypt_cost(&hash).map_err(|e| format!("basic_auth_users.{user}: {e}"))?;
            if decoy.as_ref().map_or(true, |(highest, _)| cost > *highest) {
                decoy = Some((cost, SecretString::from(hash.clone())));
            }
            users.insert(user, SecretString::from(hash));
        }
        let decoy_hash = decoy.map(|(_, hash)| hash);
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
    /// A password longer than [`MAX_PASSWORD_BYTES`] is refused without running bcrypt, which
    /// would ignore its end.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        if password.len() > MAX_PASSWORD_BYTES {
            return false;
        }
        match self.basic_auth_users.get(user) {
            Some(hash) => bcrypt::verify(password, hash.expose_secret()).unwrap_or(false),
            None => {
                if let Some(decoy) = &self.decoy_hash {
                    let _ = bcrypt::verify(password, decoy.expose_secret());
                }
                false
            }
        }
    }
}

/// Limits of the HTTP server. [`ServerLimits::default`] is what the daemon runs with; tests and
/// embedders may shorten them.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// A connection must deliver a complete request head within this long of being accepted
    /// (after its TLS handshake) or of its previous answer; so an idle keep-alive connection is
    /// closed after this long too.
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed (for example a
    /// client that stopped reading its answer).
    pub idle_timeout: Duration,
    /// How long a client may take to complete its TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Connections open at once, TLS handshakes included. At the cap, a new connection closes the
    /// oldest connection that has no request in progress (a half-open or idle one); when every
    /// connection is busy, accepting waits.
    pub max_connections: usize,
    /// `/api/v1` requests in progress at once; more are answered `503` at once.
    pub max_api_requests: usize,
    /// The most bytes of one `/api/v1/diagnoses` answer: the newest rows that fit, with
    /// `"truncated": true` when rows were left out.
    pub max_api_response_bytes: usize,
    /// bcrypt checks of basic-auth passwords running at once.
    pub max_auth_checks: usize,
    /// Requests waiting for a bcrypt check; more are answered `503` at once.
    pub max_auth_waiting: usize,
    /// How long verified credentials are remembered after their last use (a keyed hash of them,
    /// never the password), so a regular scraper needs no bcrypt check.
    pub auth_cache_ttl: Duration,
    /// How many verified credentials are remembered.
    pub auth_cache_entries: usize,
    /// At shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
}

/// The most bytes hyper buffers per connection: a request head must fit.
const MAX_CONNECTION_BUFFER: usize = 64 * 1024;

/// The default cap on open connections (lowered to half the process's file descriptor limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
            max_connections: default_max_connections(),
            max_api_requests: 4,
            max_api_response_bytes: 4 * 1024 * 1024,
            max_auth_checks: 2,
            max_auth_waiting: 16,
            auth_cache_ttl: Duration::from_secs(300),
            auth_cache_entries: 256,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// [`DEFAULT_MAX_CONNECTIONS`], or half the soft `RLIMIT_NOFILE` when that is lower (at least 16),
/// so that the store, the API clients and the listener always have descriptors left.
fn default_max_connections() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    match limit.and_then(|n| usize::try_from(n).ok()) {
        Some(n) => (n / 2).clamp(16, DEFAULT_MAX_CONNECTIONS),
        None => DEFAULT_MAX_CONNECTIONS,
    }
}

/// The basic-auth check: verified credentials are remembered by a keyed hash (HMAC-SHA-256 with
/// a random per-process key) for [`ServerLimits::auth_cache_ttl`] after their last use, and
/// bcrypt runs on the blocking pool at most [`ServerLimits::max_auth_checks`] at a time with at
/// most [`ServerLimits::max_auth_waiting`] requests queued, so a flood of wrong passwords costs
/// bounded CPU and threads and cannot delay a scraper whose credentials are remembered.
struct AuthGuard {
    config: Arc<WebConfig>,
    key: ring::hmac::Key,
    /// Keyed hash of `user`, `password` -> when the entry expires.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    checks: Arc<tokio::sync::Semaphore>,
    waiting: std::sync::atomic::AtomicUsize,
    limits: ServerLimits,
}

impl std::fmt::Debug for AuthGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the key nor the remembered hashes are shown.
        f.debug_struct("AuthGuard")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What the basic-auth check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthVerdict {
    Allowed,
    Denied,
    /// Too many checks queued: try again shortly.
    Busy,
}

impl AuthGuard {
    fn new(config: Arc<WebConfig>, limits: &ServerLimits) -> AuthGuard {
        use rand::RngCore as _;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        AuthGuard {
            config,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            verified: Mutex::new(HashMap::new()),
            checks: Arc::new(tokio::sync::Semaphore::new(limits.max_auth_checks.max(1))),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            limits: limits.clone(),
        }
    }

    fn tag(&self, user: &str, password: &str) -> [u8; 32] {
        let mut context = ring::hmac::Context::with_key(&self.key);
        // The user's length first, so that no other split of the same bytes gives the same tag.
        context.update(&(user.len() as u64).to_be_bytes());
        context.update(user.as_bytes());
        context.update(password.as_bytes());
        let mut tag = [0u8; 32];
        // An HMAC-SHA-256 tag is always 32 bytes, so the lengths match.
        tag.copy_from_slice(context.sign().as_ref());
        tag
    }

    /// Whether `tag` was verified recently; a hit is remembered for another TTL.
    fn remembered(&self, tag: &[u8; 32], now: Instant) -> bool {
        // A poisoned lock only means a holder panicked between plain map operations.
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        match verified.get_mut(tag) {
            Some(expires) if *expires > now => {
                *expires = now + self.limits.auth_cache_ttl;
                true
            }
            Some(_) => {
                verified.remove(tag);
                false
            }
            None => false,
        }
    }

    fn remember(&self, tag: [u8; 32], now: Instant) {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= self.limits.auth_cache_entries {
            verified.retain(|_, expires| *expires > now);
        }
        if verified.len() >= self.limits.auth_cache_entries {
            let oldest = verified
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(tag, _)| *tag);
            if let Some(oldest) = oldest {
                verified.remove(&oldest);
            }
        }
        if self.limits.auth_cache_entries > 0 {
            verified.insert(tag, now + self.limits.auth_cache_ttl);
        }
    }

    async fn check(self: &Arc<Self>, user: String, password: String) -> AuthVerdict {
        use std::sync::atomic::Ordering;
        if password.len() > MAX_PASSWORD_BYTES {
            return AuthVerdict::Denied;
        }
        let tag = self.tag(&user, &password);
        if self.remembered(&tag, Instant::now()) {
            return AuthVerdict::Allowed;
        }
        // Queue for a bcrypt slot, or refuse at once when too many are queued already.
        let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
        if queued >= self.limits.max_auth_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return AuthVerdict::Busy;
        }
        let permit = self.checks.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let Ok(permit) = permit else {
            // The semaphore is never closed; refuse rather than panic if it were.
            return AuthVerdict::Busy;
        };
        let config = self.config.clone();
        // The permit moves into the blocking task: it is held until bcrypt is done, even when
        // the client has gone away meanwhile.
        let valid = tokio::task::spawn_blocking(move || {
            let valid = config.verify(&user, &password);
            drop(permit);
            valid
        })
        .await
        .unwrap_or(false);
        if valid {
            self.remember(tag, Instant::now());
            AuthVerdict::Allowed
        } else {
            AuthVerdict::Denied
        }
    }
}

/// Decodes `Authorization: Basic ...` into user and password.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let pair = String::from_utf8(bytes).ok()?;
    let (user, password) = pair.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Rejects requests without valid basic-auth credentials when users are configured.
async fn require_basic_auth(
    State(guard): State<Option<Arc<AuthGuard>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(guard) = guard else {
        return next.run(request).await;
    };
    let verdict = match basic_credentials(request.headers()) {
        Some((user, password)) => guard.check(user, password).await,
        None => AuthVerdict::Denied,
    };
    match verdict {
        AuthVerdict::Allowed => next.run(request).await,
        AuthVerdict::Denied => (
            StatusCode::UNAUTHORIZED,
            [(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"handover-exporter\""),
            )],
            "unauthorized\n",
        )
            .into_response(),
        AuthVerdict::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(RETRY_AFTER, HeaderValue::from_static("1"))],
            "too many password checks in progress; retry shortly\n",
        )
            .into_response(),
    }
}

/// Answers `503` at once when [`ServerLimits::max_api_requests`] API requests are in progress.
async fn limit_api(
    State(permits): State<Arc<tokio::sync::Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    match permits.try_acquire_owned() {
        Ok(permit) => {
            let response = next.run(request).await;
            drop(permit);
            response
        }
        Err(_) => {
            let mut response = error_json(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many API requests in progress; retry shortly".to_owned(),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
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
    /// `--web.config.file`, if given: basic-auth users enforced on every route but `/healthz`
    /// and `/readyz`, and TLS.
    pub web_config: Option<Arc<WebConfig>>,
    /// Timeouts and caps of the server.
    pub limits: ServerLimits,
}

/// Paths the telemetry path must not take: the routes of this server and the reserved pages.
const RESERVED_PATHS: &[&str] = &["/healthz", "/readyz", "/api", "/diagnoses", "/contacts"];

/// Checks `--web.telemetry-path`: a plain absolute path (printable ASCII, no `?`, `#`, `%` and no
/// route syntax `:`, `*`, `{`, `}`) that is not `/` and does not shadow `/healthz`, `/readyz`,
/// `/api/...`, `/diagnoses` or `/contacts/...`. The error names the flag and the value.
pub fn validate_telemetry_path(path: &str) -> Result<(), String> {
    let refuse = |why: String| Err(format!("--web.telemetry-path {path:?}: {why}"));
    if !path.starts_with('/') {
        return refuse("must start with '/', e.g. /metrics".to_owned());
    }
    if path == "/" {
        return refuse("must not be '/', which is the landing page".to_owned());
    }
    if !path.chars().all(|c| c.is_ascii_graphic()) || path.contains(['?', '#', '%']) {
        return refuse(
            "must be a plain path of printable ASCII without spaces, '?', '#' or '%'".to_owned(),
        );
    }
    if path.contains([':', '*', '{', '}']) {
        return refuse("must not contain ':', '*', '{' or '}' (route syntax)".to_owned());
    }
    let trimmed = path.trim_end_matches('/');
    for reserved in RESERVED_PATHS {
        if trimmed == *reserved || path.starts_with(&format!("{reserved}/")) {
            return refuse(format!(
                "{reserved} is taken by the server (reserved: {}, and everything under /api/, \
                 /diagnoses/ and /contacts/)",
                RESERVED_PATHS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Builds the router (exposed for embedding; [`serve`] is the usual entry point). With basic
/// auth configured, every route needs credentials except `/healthz` and `/readyz` (which reveal
/// no tenant or source names then), so that probes need none.
pub fn router(state: AppState) -> std::io::Result<Router> {
    let path = state.telemetry_path.clone();
    validate_telemetry_path(&path)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let guard = state
        .web_config
        .clone()
        .filter(|c| c.requires_auth())
        .map(|c| Arc::new(AuthGuard::new(c, &state.limits)));
    let api_permits = Arc::new(tokio::sync::Semaphore::new(
        state.limits.max_api_requests.max(1),
    ));
    // The pages for people read the store like the API and share its request limit.
    let api = Router::new()
        .route("/api/v1/diagnoses", get(diagnoses))
        .route("/api/v1/contacts/{id}", get(contact))
        .route("/diagnoses", get(diagnoses_html))
        .route("/contacts/{id}", get(contact_html))
        .route_layer(axum::middleware::from_fn_with_state(api_permits, limit_api));
    let protected = Router::new()
        .route("/", get(landing))
        .route(&path, get(metrics))
        .merge(api)
        .route_layer(axum::middleware::from_fn_with_state(
            guard,
            require_basic_auth,
        ));
    Ok(Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(protected)
        .with_state(state))
}

/// Serves the routes on `listener` until `shutdown` completes, then lets in-flight requests finish
/// (within [`ServerLimits::shutdown_grace`]). Speaks TLS when the web config has
/// `tls_server_config`, plain HTTP otherwise; both under the same [`ServerLimits`].
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = state
        .web_config
        .as_ref()
        .and_then(|c| c.tls.as_ref())
        .map(|t| TlsAcceptor::from(t.server_config.clone()));
    let limits = state.limits.clone();
    let app = router(state)?;
    if tls.is_some() {
        tracing::info!(address = %listener.local_addr()?, "serving HTTPS");
    }
    let connections = Arc::new(Connections::new(limits.max_connections));
    let (drain, draining) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    // Out of file descriptors and the like: wait for connections to close.
                    tracing::error!(%error, "accepting a connection failed; retrying in 1s");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match connections.try_slot() {
            Some(slot) => slot,
            None => {
                connections.evict_oldest_idle();
                tokio::select! {
                    slot = connections.slot() => slot,
                    () = &mut shutdown => break,
                }
            }
        };
        tasks.spawn(connection(
            tcp,
            peer,
            tls.clone(),
            app.clone(),
            limits.clone(),
            slot,
            draining.clone(),
        ));
    }
    drop(listener);
    let _ = drain.send(true);
    let finished = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            grace_ms = limits.shutdown_grace.as_millis() as u64,
            "shutdown: closed connections still busy after the grace period"
        );
    }
    tasks.abort_all();
    Ok(())
}

/// The open connections: a cap, and what is needed to close the oldest idle one.
struct Connections {
    slots: Arc<tokio::sync::Semaphore>,
    next_id: std::sync::atomic::AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<ConnectionState>>>,
}

/// One open connection as [`Connections`] sees it.
struct ConnectionState {
    /// Requests in progress (0 or 1 with HTTP/1.1).
    busy: std::sync::atomic::AtomicUsize,
    /// Notified to close the connection.
    close: tokio::sync::Notify,
}

/// A connection's place under the cap; dropping it frees the place.
struct Slot {
    id: u64,
    state: Arc<ConnectionState>,
    connections: Arc<Connections>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        open.remove(&self.id);
    }
}

impl Connections {
    fn new(max: usize) -> Connections {
        Connections {
            slots: Arc::new(tokio::sync::Semaphore::new(max.max(1))),
            next_id: std::sync::atomic::AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    fn register(self: &Arc<Self>, permit: tokio::sync::OwnedSemaphorePermit) -> Slot {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let state = Arc::new(ConnectionState {
            busy: std::sync::atomic::AtomicUsize::new(0),
            close: tokio::sync::Notify::new(),
        });
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.insert(id, state.clone());
        Slot {
            id,
            state,
            connections: self.clone(),
            _permit: permit,
        }
    }

    fn try_slot(self: &Arc<Self>) -> Option<Slot> {
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        Some(self.register(permit))
    }

    async fn slot(self: &Arc<Self>) -> Slot {
        match self.slots.clone().acquire_owned().await {
            Ok(permit) => self.register(permit),
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        }
    }

    /// Asks the oldest connection without a request in progress to close; false when every
    /// connection is busy.
    fn evict_oldest_idle(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let idle = open
            .values()
            .find(|c| c.busy.load(std::sync::atomic::Ordering::SeqCst) == 0);
        match idle {
            Some(connection) => {
                connection.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Marks its connection busy while a request is in progress.
struct BusyGuard(Arc<ConnectionState>);

impl BusyGuard {
    fn new(state: Arc<ConnectionState>) -> BusyGuard {
        state.busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        BusyGuard(state)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0
            .busy
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Serves one accepted connection: the TLS handshake if any, then HTTP/1.1 under the limits,
/// until the client closes, a timeout fires, it is evicted, or shutdown drains it.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: ServerLimits,
    slot: Slot,
    draining: tokio::sync::watch::Receiver<bool>,
) {
    // Small answers should not wait for Nagle; failure only costs latency.
    let _ = tcp.set_nodelay(true);
    match tls {
        None => serve_http(tcp, peer, app, limits, slot, draining).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp));
            let stream = tokio::select! {
                r = handshake => r,
                () = slot.state.close.notified() => return,
            };
            match stream {
                Ok(Ok(stream)) => serve_http(stream, peer, app, limits, slot, draining).await,
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_http<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    limits: ServerLimits,
    slot: Slot,
    mut draining: tokio::sync::watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(IdleTimeoutIo::new(stream, limits.idle_timeout));
    let state = slot.state.clone();
    let app = hyper_util::service::TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |request| {
        let busy = BusyGuard::new(state.clone());
        let response = hyper::service::Service::call(&app, request);
        async move {
            let response = response.await;
            drop(busy);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Bounds each connection's buffer, so a flood of connections sending huge heads costs
        // at most max_connections x 64 KiB (hyper's default is about 400 KiB).
        .max_buf_size(MAX_CONNECTION_BUFFER)
        .max_header_size(MAX_CONNECTION_BUFFER)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut drained = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = slot.state.close.notified() => {
                tracing::debug!(%peer, "connection closed to admit a new one (connection cap)");
                return;
            }
            changed = draining.wait_for(|d| *d), if !drained => {
                drained = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A stream that fails with `TimedOut` when no byte has moved either way for `timeout` while
/// a read or write waits.
struct IdleTimeoutIo<S> {
    inner: S,
    timeout: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<S> IdleTimeoutIo<S> {
    fn new(inner: S, timeout: Duration) -> IdleTimeoutIo<S> {
        IdleTimeoutIo {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Bytes moved: the connection is active until `timeout` from now.
    fn active(&mut self) {
        let next = tokio::time::Instant::now() + self.timeout;
        self.deadline.as_mut().reset(next);
    }

    /// The inner stream is waiting: still `Pending`, or the idle error once the deadline passed.
    fn waiting<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection idle too long",
            ))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for IdleTimeoutIo<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, buf) {
            std::task::Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.active();
                }
                std::task::Poll::Ready(result)
            }
            std::task::Poll::Pending => this.waiting(cx),
        }
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for IdleTimeoutIo<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_write(cx, buf) {
            std::task::Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.active();
                }
                std::task::Poll::Ready(result)
            }
            std::task::Poll::Pending => this.waiting(cx),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_flush(cx) {
            std::task::Poll::Pending => this.waiting(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_shutdown(cx) {
            std::task::Poll::Pending => this.waiting(cx),
            ready => ready,
        }
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

async fn landing(State(state): State<AppState>) -> Html<String> {
    let metrics = html_escape(&state.telemetry_path);
    Html(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>handover-exporter</title></head>\n\
         <body><h1>handover-exporter</h1>\n\
         <p>Diagnoses NICE CXone &harr; Cognigy.AI voicebot handovers.</p>\n<ul>\n\
         <li><a href=\"{metrics}\">Metrics</a></li>\n\
         <li><a href=\"/healthz\">Health</a></li>\n\
         <li><a href=\"/readyz\">Readiness</a></li>\n\
         <li><a href=\"/diagnoses\">Recent diagnoses</a> (<a href=\"/diagnoses?outcome=failed\">failures</a>; \
         one call: <code>/contacts/{{id}}</code>)</li>\n\
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
    } else if state.web_config.as_ref().is_some_and(|c| c.requires_auth()) {
        // Open without credentials, so it names no tenant or source; /metrics (handover_up)
        // tells which.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: {} source(s) without a recent successful poll (see handover_up in \
                 the metrics)\n",
                missing.len()
            ),
        )
            .into_response()
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

fn parse_filter(params: &[(String, String)]) -> Result<DiagnosisFilter, String> {
    let mut filter = DiagnosisFilter {
        limit: DEFAULT_LIMIT,
        ..DiagnosisFilter::default()
    };
    let mut seen = std::collections::HashSet::new();
    for (name, _) in params {
        if !seen.insert(name.as_str()) {
            return Err(format!(
                "parameter {name}: given more than once; give each parameter at most once"
            ));
        }
    }
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
            // The details (SQLite's text, paths) go to the log only.
            tracing::error!(%error, kind = "store", "API store read failed");
            Err(error_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the state file could not be read; the daemon's log has the details".to_owned(),
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
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let filter = match parse_filter(&params) {
        Ok(filter) => filter,
        Err(message) => return bad_request(message),
    };
    let max_bytes = state.limits.max_api_response_bytes;
    match read_store(state.store, move |store| {
        diagnoses_body(store, &filter, max_bytes)
    })
    .await
    {
        Ok(body) => (
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body,
        )
            .into_response(),
        Err(response) => response,
    }
}

/// `{"diagnoses": [...], "count": n, "truncated": bool}` written row by row, at most `max_bytes`
/// (the newest rows that fit; `truncated` says rows were left out). Memory is one answer and one
/// row, never the rows as a JSON tree.
fn diagnoses_body(
    store: &Store,
    filter: &DiagnosisFilter,
    max_bytes: usize,
) -> Result<Vec<u8>, StoreError> {
    /// Room kept for the closing `],"count":...,"truncated":...}`.
    const TAIL: usize = 64;
    let mut body = Vec::with_capacity(4096.min(max_bytes));
    body.extend_from_slice(b"{\"diagnoses\":[");
    let mut row_json = Vec::new();
    let mut count = 0usize;
    let mut truncated = false;
    store.visit_diagnoses(filter, |row| {
        row_json.clear();
        serde_json::to_writer(&mut row_json, &row).map_err(|source| StoreError::Json {
            what: "diagnosis",
            source,
        })?;
        if body.len() + 1 + row_json.len() + TAIL > max_bytes {
            truncated = true;
            return Ok(false);
        }
        if count > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&row_json);
        count += 1;
        Ok(true)
    })?;
    body.extend_from_slice(format!("],\"count\":{count},\"truncated\":{truncated}}}").as_bytes());
    Ok(body)
}

/// Rows per page of the `/diagnoses` page, unless `limit` says otherwise.
const PAGE_ROWS: usize = 50;
/// The deepest page the `/diagnoses` page serves (older rows: narrow the filter).
const MAX_PAGE: usize = 200;

fn html_response(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

/// `/diagnoses`: the API's filter parameters (empty form fields mean "any") plus `page`.
async fn diagnoses_html(
    State(state): State<AppState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let telemetry_path = state.telemetry_path.clone();
    let mut page = 0usize;
    let mut rest = Vec::new();
    for (name, value) in params {
        match (name.as_str(), value.trim()) {
            (_, "") => {}
            ("page", value) => match value.parse::<usize>() {
                Ok(n) if n <= MAX_PAGE && !rest.iter().any(|(n, _): &(String, String)| n == "page") => {
                    page = n;
                    rest.push((name, value.to_owned()));
                }
                _ => {
                    return html_response(
                        StatusCode::BAD_REQUEST,
                        crate::pages::bad_request_page(
                            &format!("parameter page: {value:?} is not a number from 0 to {MAX_PAGE} (or is repeated)"),
                            &telemetry_path,
                        ),
                    )
                }
            },
            (_, value) => rest.push((name, value.to_owned())),
        }
    }
    rest.retain(|(n, _)| n != "page");
    let mut filter = match parse_filter(&rest) {
        Ok(filter) => filter,
        Err(message) => {
            return html_response(
                StatusCode::BAD_REQUEST,
                crate::pages::bad_request_page(&message, &telemetry_path),
            )
        }
    };
    if !rest.iter().any(|(n, _)| n == "limit") {
        filter.limit = PAGE_ROWS;
    }
    let read = move |store: &Store| {
        let counts = store.reason_counts(&filter)?;
        let mut one_more = filter.clone();
        one_more.offset = page * filter.limit;
        one_more.limit = filter.limit + 1;
        let mut rows = store.diagnoses(&one_more)?;
        let has_more = rows.len() > filter.limit;
        rows.truncate(filter.limit);
        Ok((filter, counts, rows, has_more))
    };
    match read_store(state.store, read).await {
        Ok((filter, counts, rows, has_more)) => html_response(
            StatusCode::OK,
            crate::pages::diagnoses_page(&crate::pages::DiagnosesView {
                rows: &rows,
                filter: &filter,
                counts: &counts,
                page,
                has_more,
                telemetry_path: &telemetry_path,
            }),
        ),
        Err(response) => response,
    }
}

/// `/contacts/{id}`: one call's story, or a 404 page.
async fn contact_html(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let telemetry_path = state.telemetry_path.clone();
    let Ok(contact_id) = id.parse::<i64>() else {
        return html_response(
            StatusCode::BAD_REQUEST,
            crate::pages::bad_request_page(
                &format!("a contact id is a number, got {id:?}"),
                &telemetry_path,
            ),
        );
    };
    let read = move |store: &Store| {
        let Some(row) = store.diagnosis(contact_id)? else {
            return Ok(None);
        };
        let session = match &row.diagnosis.evidence.session_id {
            Some(session_id) => Some(store.session_records(&row.tenant, session_id)?),
            None => None,
        };
        Ok(Some((row, session)))
    };
    match read_store(state.store, read).await {
        Ok(Some((row, session))) => html_response(
            StatusCode::OK,
            crate::pages::contact_page(&row, session.as_ref(), &telemetry_path),
        ),
        Ok(None) => html_response(
            StatusCode::NOT_FOUND,
            crate::pages::contact_not_found_page(&id, &telemetry_path),
        ),
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
    use crate::metrics::PollSource;
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
        store: Arc<Mutex<Store>>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
        _dir: tempfile::TempDir,
    }

    async fn start() -> Running {
        start_with(None).await
    }

    async fn start_with(web_config: Option<WebConfig>) -> Running {
        start_limited(web_config, ServerLimits::default()).await
    }

    async fn start_limited(web_config: Option<WebConfig>, limits: ServerLimits) -> Running {
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
        let store = Arc::new(Mutex::new(store));
        let state = AppState {
            metrics: Arc::new(metrics),
            store: store.clone(),
            readiness: readiness.clone(),
            telemetry_path: "/metrics".to_owned(),
            web_config: web_config.map(Arc::new),
            limits,
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
            store,
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
    /// The pages for people: the list with counts per reason narrows by filter and pages, a
    /// contact page shows its deciding rule and timeline with outside text escaped, an unknown
    /// contact is a 404 page and a bad parameter a 400 page.
    #[tokio::test]
    async fn html_pages() {
        let server = start().await;
        {
            let mut d = diagnosis(1004, Reason::SignalUnavailable);
            d.evidence.timeline.push(crate::diagnosis::Fact {
                source: crate::diagnosis::FactSource::CognigyLog,
                id: "log-1".into(),
                at: Some(at(1)),
                detail: "handoverToCXone: <script>alert(1)</script>"
                    .to_owned()
                    .into(),
            });
            d.evidence.decided_by = vec![d.evidence.timeline[0].clone()];
            let store = server.store.clone();
            let one = [d];
            store
                .lock()
                .unwrap()
                .commit_cycle(
                    "acme",
                    CycleCommit {
                        diagnoses: &one,
                        ..CycleCommit::empty(at(8))
                    },
                )
                .unwrap();
        }
        let get = |path: &str| {
            let url = format!("{}{path}", server.base);
            async move {
                let r = client().get(url).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }
        };
        let (status, list) = get("/diagnoses").await;
        assert_eq!(status, 200);
        for id in [1001, 1002, 1003, 1004] {
            assert!(
                list.contains(&format!("href=\"/contacts/{id}\"")),
                "{id} in {list}"
            );
        }
        assert!(list.contains(">signal_rejected</a></td><td class=\"failed\">failed</td><td>invalid_handover</td><td>1</td>"), "{list}");
        let (_, failed) = get("/diagnoses?outcome=failed&failure=&reason=&since=&tenant=").await;
        assert!(!failed.contains("href=\"/contacts/1002\""), "{failed}");
        assert!(failed.contains("href=\"/contacts/1003\""), "{failed}");
        let (_, first) = get("/diagnoses?limit=2").await;
        assert!(
            first.contains("page=1\">Older</a>") && !first.contains(">Newer<"),
            "{first}"
        );
        let (_, second) = get("/diagnoses?limit=2&page=1").await;
        assert!(
            second.contains("href=\"/contacts/1002\"") && second.contains(">Newer<"),
            "{second}"
        );
        let (status, contact) = get("/contacts/1004").await;
        assert_eq!(status, 200);
        assert!(
            contact.contains("Rule 5 of the diagnosis table"),
            "{contact}"
        );
        assert!(
            contact.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{contact}"
        );
        assert!(!contact.contains("<script>"), "{contact}");
        assert!(contact.contains("(decided the outcome)"), "{contact}");
        let (status, missing) = get("/contacts/999").await;
        assert_eq!(status, 404);
        assert!(
            missing.contains("No diagnosis for contact 999"),
            "{missing}"
        );
        let (status, bad) = get("/diagnoses?outcome=maybe").await;
        assert_eq!(status, 400);
        assert!(bad.contains("parameter outcome"), "{bad}");
        let (status, _) = get("/diagnoses?page=1&page=2").await;
        assert_eq!(status, 400);
    }

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

    /// With basic_auth_users configured, every route but /healthz and /readyz needs a valid user
    /// and password; /readyz then names no tenant or source.
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
        let health = client()
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200, "/healthz is open for probes");
        let ready = client()
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 503, "/readyz is open for probes");
        let body = ready.text().await.unwrap();
        assert!(
            !body.contains("acme"),
            "an open /readyz named a tenant: {body}"
        );
        for path in [
            "/",
            "/metrics",
            "/api/v1/diagnoses",
            "/api/v1/contacts/1001",
            "/diagnoses",
            "/contacts/1001",
        ] {
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
            limits: ServerLimits::default(),
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

    /// Short limits for the hardening tests.
    fn short_limits() -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(2),
            ..ServerLimits::default()
        }
    }

    /// Reads from `stream` until the server closes it (EOF or reset), at most `within`; returns
    /// how long that took, or None when it stayed open.
    async fn closed_within(
        stream: &mut tokio::net::TcpStream,
        within: Duration,
    ) -> Option<Duration> {
        use tokio::io::AsyncReadExt as _;
        let started = Instant::now();
        let mut buffer = vec![0u8; 4096];
        let closed = tokio::time::timeout(within, async {
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        closed.ok().map(|()| started.elapsed())
    }

    /// A connection that sends nothing, one that sends half a request head, and a keep-alive
    /// connection idle after its answer are each closed within the header-read timeout.
    #[tokio::test]
    async fn idle_connections_are_closed_within_the_timeout() {
        use tokio::io::AsyncWriteExt as _;
        let server = start_limited(None, short_limits()).await;
        let address = server.base.trim_start_matches("http://").to_owned();
        let mut silent = tokio::net::TcpStream::connect(&address).await.unwrap();
        let mut half = tokio::net::TcpStream::connect(&address).await.unwrap();
        half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut kept = tokio::net::TcpStream::connect(&address).await.unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        for (name, stream) in [
            ("silent", &mut silent),
            ("half-sent", &mut half),
            ("keep-alive", &mut kept),
        ] {
            let took = closed_within(stream, Duration::from_secs(5)).await;
            let took = took.unwrap_or_else(|| panic!("{name} connection still open after 5 s"));
            assert!(
                took < Duration::from_secs(3),
                "{name}: closed after {took:?}"
            );
        }
    }

    /// A client that stops reading a large answer is disconnected after the idle timeout rather
    /// than holding its connection forever.
    #[tokio::test]
    async fn a_stalled_reader_is_disconnected() {
        let limits = ServerLimits {
            idle_timeout: Duration::from_millis(500),
            ..short_limits()
        };
        let server = start_limited(None, limits).await;
        let address = server.base.trim_start_matches("http://").to_owned();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(1024).unwrap();
        let mut stream = socket.connect(address.parse().unwrap()).await.unwrap();
        use tokio::io::AsyncWriteExt as _;
        // Pipelined requests whose answers fill both socket buffers; then never read.
        let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200);
        stream.write_all(&request).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let took = closed_within(&mut stream, Duration::from_secs(20)).await;
        assert!(took.is_some(), "a stalled reader kept its connection");
    }

    /// With the connection cap reached by 300 half-open connections, /metrics is still answered
    /// at once: the oldest connection without a request in progress makes room.
    #[tokio::test]
    async fn half_open_flood_leaves_metrics_answering() {
        use tokio::io::AsyncWriteExt as _;
        let limits = ServerLimits {
            header_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 64,
            ..ServerLimits::default()
        };
        let server = start_limited(None, limits).await;
        let address = server.base.trim_start_matches("http://").to_owned();
        let mut flood = Vec::new();
        for _ in 0..300 {
            let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
            let _ = stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .await;
            flood.push(stream);
        }
        let started = Instant::now();
        let response = tokio::time::timeout(
            Duration::from_secs(10),
            client().get(format!("{}/metrics", server.base)).send(),
        )
        .await
        .expect("/metrics did not answer during the flood")
        .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.text().await.unwrap().ends_with("# EOF\n"));
        eprintln!(
            "/metrics answered in {:?} during a flood of 300 half-open connections",
            started.elapsed()
        );
    }

    /// More concurrent API requests than the cap: the excess is answered 503 at once (never
    /// queued), every answer is within the byte bound, and `limit` above 1000 is refused.
    #[tokio::test]
    async fn concurrent_api_reads_are_bounded() {
        let limits = ServerLimits {
            max_api_requests: 2,
            max_api_response_bytes: 1200,
            ..ServerLimits::default()
        };
        let server = start_limited(None, limits).await;
        let url = format!("{}/api/v1/diagnoses?limit=1000", server.base);
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let url = url.clone();
            requests.spawn(async move {
                let response = client().get(&url).send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.bytes().await.unwrap())
            });
        }
        let (mut ok, mut busy, mut truncated) = (0, 0, false);
        while let Some(joined) = requests.join_next().await {
            let (status, body) = joined.unwrap();
            assert!(body.len() <= 1200, "an answer of {} bytes", body.len());
            match status {
                200 => {
                    ok += 1;
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let rows = v["diagnoses"].as_array().unwrap().len();
                    assert_eq!(v["count"], rows);
                    assert!(rows >= 1);
                    assert_eq!(v["truncated"], rows < 3, "{rows} of 3 rows");
                    truncated |= rows < 3;
                }
                503 => busy += 1,
                other => panic!("status {other}"),
            }
        }
        assert!(ok >= 1, "no request was served");
        assert!(truncated, "the byte bound was never reached");
        assert_eq!(ok + busy, 50);
        let (status, _) = get_json(&format!("{}/api/v1/diagnoses?limit=1001", server.base)).await;
        assert_eq!(status, 400);
    }

    /// A repeated query parameter is a 400 naming it, not "the last one wins".
    #[tokio::test]
    async fn repeated_parameters_are_refused() {
        let server = start().await;
        let (status, body) = get_json(&format!(
            "{}/api/v1/diagnoses?limit=1&outcome=failed&limit=2",
            server.base
        ))
        .await;
        assert_eq!(status, 400);
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains("parameter limit: given more than once"),
            "{message}"
        );
    }

    /// A store failure is a 500 whose body holds no SQLite text.
    #[tokio::test]
    async fn store_errors_are_not_returned() {
        let store = Store::open(":memory:").unwrap();
        store
            .conn_for_tests()
            .execute_batch("DROP TABLE contacts")
            .unwrap();
        let state = AppState {
            metrics: Arc::new(Metrics::new(&[], "test")),
            store: Arc::new(Mutex::new(store)),
            readiness: Arc::new(Readiness::new(&[], Duration::from_secs(60))),
            telemetry_path: "/metrics".to_owned(),
            web_config: None,
            limits: ServerLimits::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(listener, state, std::future::pending()));
        for path in ["/api/v1/diagnoses", "/api/v1/contacts/1"] {
            let (status, body) = get_json(&format!("{base}{path}")).await;
            assert_eq!(status, 500, "{path}");
            let message = body["error"].as_str().unwrap();
            assert!(
                !message.to_lowercase().contains("no such table"),
                "{message}"
            );
            assert!(!message.contains("contacts"), "{message}");
            assert!(
                message.contains("state file could not be read"),
                "{message}"
            );
        }
    }

    /// 200 concurrent wrong passwords (a flood) leave an authenticated scrape fast: its verified
    /// credentials are remembered, and bcrypt runs at most two at a time with a bounded queue.
    #[tokio::test]
    async fn wrong_password_flood_leaves_scrapes_fast() {
        // Cost 10 (what htpasswd -B uses): each wrong password costs real CPU.
        let hash = bcrypt::hash("s3cret", 10).unwrap();
        let config =
            WebConfig::parse(&format!("basic_auth_users:\n  prometheus: '{hash}'\n")).unwrap();
        let server = start_with(Some(config)).await;
        let url = format!("{}/metrics", server.base);
        let scrape = || {
            client()
                .get(&url)
                .basic_auth("prometheus", Some("s3cret"))
                .send()
        };
        assert_eq!(scrape().await.unwrap().status(), 200, "first scrape");
        let mut flood = tokio::task::JoinSet::new();
        for n in 0..200 {
            let url = url.clone();
            flood.spawn(async move {
                let response = client()
                    .get(&url)
                    .basic_auth("prometheus", Some(format!("wrong-{n}")))
                    .send()
                    .await;
                response.map(|r| r.status().as_u16()).unwrap_or(0)
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut slowest = Duration::ZERO;
        for _ in 0..5 {
            let started = Instant::now();
            let response = tokio::time::timeout(Duration::from_secs(5), scrape())
                .await
                .expect("the scrape waited behind the flood")
                .unwrap();
            assert_eq!(response.status(), 200);
            slowest = slowest.max(started.elapsed());
        }
        let mut statuses = BTreeMap::new();
        while let Some(status) = flood.join_next().await {
            *statuses.entry(status.unwrap()).or_insert(0) += 1;
        }
        assert_eq!(statuses.get(&200), None, "a wrong password was accepted");
        eprintln!("slowest authenticated scrape during the flood: {slowest:?}; flood answers: {statuses:?}");
        assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    }

    /// The credentials cache is keyed by a hash of user and password: a wrong password for a
    /// remembered user, or a password over 72 bytes whose first 72 are right, is still refused.
    #[tokio::test]
    async fn remembered_credentials_do_not_admit_others() {
        let long = "x".repeat(72);
        let hash = bcrypt::hash(&long, 4).unwrap();
        let config = Arc::new(
            WebConfig::parse(&format!("basic_auth_users:\n  prometheus: '{hash}'\n")).unwrap(),
        );
        let guard = Arc::new(AuthGuard::new(config, &ServerLimits::default()));
        let check = |user: &str, password: &str| guard.check(user.to_owned(), password.to_owned());
        assert_eq!(check("prometheus", &long).await, AuthVerdict::Allowed);
        assert_eq!(check("prometheus", &long).await, AuthVerdict::Allowed);
        assert_eq!(check("prometheus", "x").await, AuthVerdict::Denied);
        assert_eq!(
            check("prometheu", &format!("s{long}")).await,
            AuthVerdict::Denied
        );
        assert_eq!(
            check("prometheus", &format!("{long}y")).await,
            AuthVerdict::Denied,
            "bcrypt would have ignored the 73rd byte"
        );
    }

    /// A bcrypt cost above 14 (31 would take a day per check) is refused at once with the reason,
    /// and a user listed twice is refused; neither message holds the hash.
    #[test]
    fn web_config_refuses_high_costs_and_duplicate_users() {
        let started = Instant::now();
        let expensive = "$2b$31$abcdefghijklmnopqrstuuLr3Ku2qz5v6KChSmLEZ0vK0D2fGk2RW";
        let error =
            WebConfig::parse(&format!("basic_auth_users:\n  alice: '{expensive}'\n")).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "bcrypt ran");
        assert!(
            error.contains("basic_auth_users.alice: bcrypt cost 31 is above the limit of 14"),
            "{error}"
        );
        assert!(!error.contains(expensive), "{error}");
        let hash = bcrypt::hash("a", 4).unwrap();
        let twice = WebConfig::parse(&format!(
            "basic_auth_users:\n  alice: '{hash}'\n  bob: '{hash}'\n  alice: '{hash}'\n"
        ))
        .unwrap_err();
        assert!(
            twice.contains("basic_auth_users.alice: the user is listed more than once"),
            "{twice}"
        );
        assert!(!twice.contains(&hash), "{twice}");
        let short = WebConfig::parse("basic_auth_users:\n  alice: '$2b$10$short'\n").unwrap_err();
        assert!(short.contains("not a bcrypt hash"), "{short}");
    }

    /// A web config file that is a FIFO or a device is refused naming it, without hanging.
    #[cfg(unix)]
    #[test]
    fn web_config_file_must_be_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("web.yml");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let error = WebConfig::load(&fifo).unwrap_err().to_string();
        assert!(
            error.contains("web.yml is not a regular file (it is a FIFO)"),
            "{error}"
        );
        let error = WebConfig::load(FsPath::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/dev/zero is not a regular file"), "{error}");
    }

    /// Telemetry paths that would shadow a route, are route syntax or are not plain paths are
    /// refused naming the flag; ordinary ones pass.
    #[test]
    fn telemetry_path_validation() {
        for bad in [
            "",
            "metrics",
            "/",
            "/healthz",
            "/readyz",
            "/readyz/",
            "/api",
            "/api/v1/x",
            "/diagnoses",
            "/contacts/1",
            "/:x",
            "/{x}",
            "/*x",
            "/me trics",
            "/m?x",
            "/m#x",
            "/m%20",
        ] {
            let error = validate_telemetry_path(bad).expect_err(bad);
            assert!(error.starts_with("--web.telemetry-path"), "{error}");
        }
        for good in [
            "/metrics",
            "/prometheus/metrics",
            "/healthz-metrics",
            "/x.txt",
        ] {
            validate_telemetry_path(good).expect(good);
        }
    }
}
