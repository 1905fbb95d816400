//! [`WebConfig`] reads `--web.config.file` (the Prometheus exporter-toolkit format) and enforces
//! its basic auth. bcrypt `basic_auth_users` (cost at most [`MAX_BCRYPT_COST`], each user once)
//! are enforced on every route but `/healthz` and `/readyz`, with verified credentials remembered
//! by a keyed hash and bcrypt work bounded (see `AuthGuard`). `tls_server_config` is handed to
//! the `tls` module, which builds the rustls settings; `http_server_config` is refused by name.
//! Hashes and passwords never appear in errors or `Debug` output. This module does not accept
//! connections or speak TLS itself.

use super::tls::{parse_tls, TlsSettings};
use super::ServerLimits;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
pub(super) const MAX_WEB_FILE_BYTES: u64 = 1024 * 1024;

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

/// The parsed `--web.config.file`: user names and their bcrypt hashes, and the TLS settings.
pub struct WebConfig {
    pub(super) tls: Option<TlsSettings>,
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

/// The basic-auth check: verified credentials are remembered by a keyed hash (HMAC-SHA-256 with
/// a random per-process key) for [`ServerLimits::auth_cache_ttl`] after their last use, and
/// bcrypt runs on the blocking pool at most [`ServerLimits::max_auth_checks`] at a time with at
/// most [`ServerLimits::max_auth_waiting`] requests queued, so a flood of wrong passwords costs
/// bounded CPU and threads and cannot delay a scraper whose credentials are remembered.
pub(super) struct AuthGuard {
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
    pub(super) fn new(config: Arc<WebConfig>, limits: &ServerLimits) -> AuthGuard {
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
pub(super) async fn require_basic_auth(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::test_server::{client, start_with};
    use std::time::Duration;

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
}
