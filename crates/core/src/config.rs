//! Configuration: the TOML file of DESIGN §8, parsed into raw serde structs (every table with
//! `deny_unknown_fields`), then checked in one place (`validate`) into [`Config`]. Every error
//! names the file (or other origin) and the key path that is wrong, e.g.
//! `handover-exporter.toml: tenant[0] (acme).cognigy.odata_page_size: must be between 1 and 10000,
//! got 20000`. Secrets come only from a file (`*_file`) or an environment variable (`*_env` names
//! it) and are loaded into [`secrecy::SecretString`]; errors name the key and the file path or the
//! variable's name, never the secret. [`parse_replay_rules`] reads a replay directory's
//! `config.toml` (one `[rules]` table) with the same rules code as `[tenant.rules]`.
//!
//! This module only reads and checks configuration; it opens no connection and does not decide
//! what the settings mean for polling or diagnosis. The reference for every key is
//! the README's Configuration section.

use regex::Regex;
use secrecy::SecretString;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The validated configuration of one process.
#[derive(Debug, Clone)]
pub struct Config {
    /// SQLite file, or `:memory:`.
    pub state_path: String,
    pub poll_interval: Duration,
    /// A cycle abandons its work after this long (default: the poll interval).
    pub cycle_deadline: Duration,
    /// How far back each cycle re-reads CXone beyond its cursor (late updates).
    pub overlap: Duration,
    /// How long after a contact ends its correlated session data is taken as complete.
    pub settle: Duration,
    /// Diagnosed rows and cached Cognigy records are pruned after this long.
    pub retention: Duration,
    /// On first start, how far back to read.
    pub initial_lookback: Duration,
    pub tenants: Vec<TenantConfig>,
}

/// One `[[tenant]]` block.
#[derive(Debug, Clone)]
pub struct TenantConfig {
    /// The `tenant` label value.
    pub name: String,
    pub cxone: CxoneConfig,
    pub cognigy: CognigyConfig,
    pub rules: Rules,
}

/// How the CXone client authenticates the registered application at `/auth/token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic base64(client_id:client_secret)` (NICE's own code).
    Basic,
    /// `client_id` and `client_secret` as form fields (`client_secret_post`).
    Form,
}

/// Shared HTTP settings of one source (DESIGN §3).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries after the first attempt, for idempotent requests only.
    pub max_retries: u32,
    /// First backoff delay; doubles per retry, with jitter.
    pub initial_backoff: Duration,
    /// Longest single wait, also the cap on `Retry-After`.
    pub max_backoff: Duration,
    /// This tenant's own cap on its request rate against this source, within the host's budget
    /// (`None`: only the budget limits it).
    pub requests_per_second: Option<f64>,
    /// The request budget of the API host, shared by every tenant on it: at most this many
    /// requests per `quota_window`.
    pub quota_requests: u32,
    pub quota_window: Duration,
    /// Requests in flight at once.
    pub max_concurrency: usize,
    /// Speak HTTP/1.1 only (api/cxone.md §1.1: HTTP/2 reportedly fails on the token endpoint).
    pub http1_only: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            timeout: Duration::from_secs(30),
            max_retries: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            requests_per_second: None,
            quota_requests: 600,
            quota_window: Duration::from_secs(300),
            max_concurrency: 4,
            http1_only: false,
        }
    }
}

/// `[tenant.cxone]`.
#[derive(Debug, Clone)]
pub struct CxoneConfig {
    /// OIDC issuer, e.g. `https://cxone.niceincontact.com`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub access_key_id: String,
    pub access_key_secret: SecretString,
    pub client_auth: ClientAuth,
    /// e.g. `v30.0`.
    pub api_version: String,
    /// Skips `cxone-configuration` discovery when set.
    pub api_endpoint: Option<String>,
    /// `top` of a `contacts/completed` page (at most 10 000).
    pub page_size: u32,
    /// Pages read per cycle at most; the cursor continues next cycle.
    pub max_pages: u32,
    pub http: HttpSettings,
}

/// How OData date-time literals are written in `$filter` (api/cognigy.md §2.2: both are seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateLiteral {
    /// `timestamp gt '2026-03-20T09:00:00.000Z'` (the v2.4 docs).
    Quoted,
    /// `timestamp gt 2026-03-20T09:00:00.000Z` (the v2.3 docs, third-party importers).
    Bare,
}

/// `[tenant.cognigy]`.
#[derive(Debug, Clone)]
pub struct CognigyConfig {
    /// REST API base, e.g. `https://api-app.cognigy.ai`.
    pub api_base_url: String,
    /// OData base including the version, e.g. `https://odata-app.cognigy.ai/v2.4`.
    pub odata_base_url: String,
    pub api_key: SecretString,
    pub project_id: String,
    /// `$top` of an OData page.
    pub odata_page_size: u32,
    /// `limit` of a REST log page (server cap 100).
    pub logs_page_size: u32,
    /// Server-side `filter` terms of the logs reads: only entries whose type, message or trace
    /// id contain one of them are read (each term in turn); empty reads every line.
    pub logs_filter: Vec<String>,
    /// Pages read per collection per cycle at most (default [`DEFAULT_COGNIGY_MAX_PAGES`]).
    pub max_pages: u32,
    pub date_literal: DateLiteral,
    /// Treat HTTP 500 under a keyset filter as the end of data (api/cognigy.md §2.2, T3).
    pub end_of_keyset_500: bool,
    /// Ask OData for only the fields read (`$select`), until the server refuses it.
    pub odata_select: bool,
    /// How long after its own timestamp an OData record may still be written (Analytics at
    /// session end, a session expiring 30 minutes after its last message): sweeps re-read this
    /// far back.
    pub late_window: Duration,
    /// How often a sweep re-reads the late window.
    pub late_sweep_interval: Duration,
    pub http: HttpSettings,
}

/// The diagnosis settings of one tenant (`[tenant.rules]`, or `[rules]` in a replay directory).
#[derive(Debug, Clone)]
pub struct Rules {
    /// CXone points of contact whose calls go to the bot first.
    pub bot_entry_points_of_contact: Vec<i64>,
    /// CXone skills whose calls go to the bot first.
    pub bot_entry_skills: Vec<i64>,
    /// Skills a handover may queue to; empty turns rule 9 off.
    pub handover_skills: Vec<i64>,
    /// The Analytics custom field (1..=10) the flow writes the master contact id into.
    pub contact_id_field: u8,
    pub cognigy_lag_seconds: u64,
    pub handover_deadline_seconds: u64,
    pub bot_turn_timeout_ms: u64,
    pub correlation_window_seconds: u64,
    pub max_pending_seconds: u64,
    /// How the Cognigy handover extension's log lines are recognised.
    pub log_patterns: LogPatterns,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            bot_entry_points_of_contact: Vec::new(),
            bot_entry_skills: Vec::new(),
            handover_skills: Vec::new(),
            contact_id_field: 1,
            cognigy_lag_seconds: 900,
            handover_deadline_seconds: 15,
            bot_turn_timeout_ms: 10_000,
            correlation_window_seconds: 30,
            max_pending_seconds: 7200,
            log_patterns: LogPatterns::default(),
        }
    }
}

/// Regular expressions for the handover node's log lines (DESIGN §3: the extension writing them
/// will be replaced by a native Cognigy node, so they are configuration). The defaults read every
/// published version of the CXone extension (docs/log-lines.md). Named groups: `action`,
/// `contact_id`, `spawned_contact_id`, `error`, `status`.
#[derive(Debug, Clone)]
pub struct LogPatterns {
    /// The ids line written before any API call:
    /// `handoverToCXone: Contact ID: <main>; Spawned Contact ID: <spawned>; Action: <action>`.
    pub node_ids: Regex,
    /// The success line: `handoverToCXone: sent signal to CXone for contactId: <id>; action:
    /// <action>; status: <n>` (and the send-signal node's, without `action`).
    pub signaled: Regex,
    /// The failure line: `handoverToCXone: Error signaling CXone with: '<action>' for contactId:
    /// <id>; error: <message>` (and the older form without `CXone with:`).
    pub signal_error: Regex,
    /// Finds the HTTP status inside a signal error's message (signal or token request).
    pub signal_status: Regex,
    /// Error texts that mean the signal request timed out.
    pub timeout_text: Regex,
    /// The validation error for a missing or invalid action, in a log line or in the node's
    /// older bot output (`handoverToCXone Error: Missing Action parameter`).
    pub invalid_action: Regex,
    /// The validation error for a missing main or spawned contact id.
    pub missing_contact_id: Regex,
}

pub const DEFAULT_NODE_IDS: &str = r"handoverToCXone: Contact ID: (?P<contact_id>[^;]*); Spawned Contact ID: (?P<spawned_contact_id>[^;]*); Action: (?P<action>[^;]*)";
pub const DEFAULT_SIGNALED: &str = r"(?:handoverToCXone|sendSignalToCXone): sent signal to CXone for contactId: (?P<contact_id>[^\s;]*)(?:; action: (?P<action>[^;]*))?(?:; status: (?P<status>\d{3}))?";
pub const DEFAULT_SIGNAL_ERROR: &str = r"(?:handoverToCXone|sendSignalToCXone): Error signaling (?:CXone with: )?'(?P<action>.*?)' for contactId: (?P<contact_id>[^\s;]*)(?:; error: (?P<error>.*))?";
pub const DEFAULT_SIGNAL_STATUS: &str = r"(?:Error sending (?:handover )?signal|Error getting bearer token|Error getting token URL|Error getting endpoint URL): (?P<status>\d{3})\b";
pub const DEFAULT_TIMEOUT_TEXT: &str =
    r"(?i)timed? ?out|ETIMEDOUT|ESOCKETTIMEDOUT|ECONNABORTED|deadline exceeded";
pub const DEFAULT_INVALID_ACTION: &str = r"Missing (?:or invalid )?Action parameter";
pub const DEFAULT_MISSING_CONTACT_ID: &str =
    r"handoverToCXone: Validation: (?:Spawned )?Contact ID is required";

impl Default for LogPatterns {
    fn default() -> Self {
        // The defaults are constants checked by the `default_log_patterns_compile` test.
        let compile = |p: &str| Regex::new(p).expect("default log pattern compiles");
        LogPatterns {
            node_ids: compile(DEFAULT_NODE_IDS),
            signaled: compile(DEFAULT_SIGNALED),
            signal_error: compile(DEFAULT_SIGNAL_ERROR),
            signal_status: compile(DEFAULT_SIGNAL_STATUS),
            timeout_text: compile(DEFAULT_TIMEOUT_TEXT),
            invalid_action: compile(DEFAULT_INVALID_ACTION),
            missing_contact_id: compile(DEFAULT_MISSING_CONTACT_ID),
        }
    }
}

impl HttpSettings {
    /// Defaults for the CXone client: [`HttpSettings::default`], a budget of 600 requests per
    /// 5 minutes (2/s) per API host (NICE publishes no numeric rate limit, api/cxone.md §4).
    pub fn cxone_default() -> Self {
        HttpSettings::default()
    }

    /// Defaults for the Cognigy client: the documented default quota, 1000 requests per 5
    /// minutes (api/cognigy.md §1.5, §3.6), per IP address and so per installation: one budget
    /// shared by the OData and the REST logs API and by every tenant on the host; two requests
    /// in flight.
    pub fn cognigy_default() -> Self {
        HttpSettings {
            quota_requests: 1000,
            quota_window: Duration::from_secs(300),
            max_concurrency: 2,
            ..HttpSettings::default()
        }
    }
}

/// The default `state_path`.
pub const DEFAULT_STATE_PATH: &str = "handover-exporter.db";
/// The default `poll_interval_seconds`.
pub const DEFAULT_POLL_INTERVAL_SECONDS: u64 = 60;
/// The default `overlap_seconds`.
pub const DEFAULT_OVERLAP_SECONDS: u64 = 300;
/// The default `settle_seconds`.
pub const DEFAULT_SETTLE_SECONDS: u64 = 60;
/// The default `retention_hours`.
pub const DEFAULT_RETENTION_HOURS: u64 = 48;
/// The default `initial_lookback_hours`: an hour less than the 24 h Cognigy keeps project log
/// lines, because a first start reads them newest first at the quota's pace (about 25 minutes for
/// a day of 100 000 calls) and the oldest calls' lines would expire before the read reaches them:
/// those contacts would be diagnosed without their handover lines, that is wrongly.
pub const DEFAULT_INITIAL_LOOKBACK_HOURS: u64 = 23;
/// The default `[tenant.cognigy] late_window_seconds`: a session expires 30 minutes after its
/// last message, and its Analytics may be written only then; plus a long call.
pub const DEFAULT_LATE_WINDOW_SECONDS: u64 = 2700;
/// The default `[tenant.cognigy] late_sweep_interval_seconds`.
pub const DEFAULT_LATE_SWEEP_INTERVAL_SECONDS: u64 = 900;
/// The default `[tenant.cognigy] logs_filter`: the lines of the CXone handover node, which every
/// default log pattern matches (api/cognigy.md §3.6: they are prefixed with the node type).
pub const DEFAULT_LOGS_FILTER: &[&str] = &["handoverToCXone"];
/// The default `[tenant.cognigy] max_pages`. A logs page holds at most 100 entries and a day of
/// 100 000 calls writes about 4 300 pages of the handover node's lines; a cap of 50 pages per
/// stream and cycle let a catch-up spend only about a quarter of what Cognigy's quota (200
/// requests a minute) allows. This is above what the quota lets one 60 s cycle read, so the
/// quota and the cycle deadline bound a catch-up, not the cap; the cap still stops a server that
/// pages without end.
pub const DEFAULT_COGNIGY_MAX_PAGES: u32 = 500;
/// The default `[tenant.cxone] api_version`.
pub const DEFAULT_CXONE_API_VERSION: &str = "v30.0";

/// The most bytes a secret file (`*_file`) may hold: a secret is short, and a bound keeps a
/// mistaken path (a log, `/dev/zero`) from being read into memory.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Reads the regular file at `path` (symbolic links are followed, as Kubernetes secret volumes
/// need) holding at most `max` bytes. Anything else is refused before it is opened, so a FIFO
/// cannot hang the reader and a device cannot fill memory. The error reads after the path, e.g.
/// "is not a regular file (it is a FIFO)".
pub fn read_regular_file(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "is not a regular file (it is {})",
            file_kind(&meta)
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("is larger than {max} bytes"));
    }
    Ok(bytes)
}

/// What kind of file `meta` describes, for error messages ("a FIFO", "a directory", ...).
pub fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else if meta.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Why a configuration was refused. Display is `<origin>: <message>`, where origin is the file
/// path (or whatever name the caller gave the text) and the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file itself could not be read.
    #[error("{origin}: cannot read the configuration file: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or a key that is unknown, missing or of the wrong type (found by serde).
    #[error("{origin}: {}", syntax_message(.key, .message, .position))]
    Syntax {
        origin: String,
        /// Key path where serde stopped, e.g. `tenant[0].cxone`; empty at the top level.
        key: String,
        message: String,
        /// 1-based line and column in the text, when known.
        position: Option<(usize, usize)>,
    },
    /// A value of the right type that is not acceptable.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        origin: String,
        /// Key path, e.g. `tenant[0] (acme).cognigy.odata_page_size`.
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// The key path the error is about (empty when it is about the whole file).
    pub fn key(&self) -> &str {
        match self {
            ConfigError::Read { .. } => "",
            ConfigError::Syntax { key, .. } | ConfigError::Invalid { key, .. } => key,
        }
    }
}

fn syntax_message(key: &str, message: &str, position: &Option<(usize, usize)>) -> String {
    let mut text = String::new();
    if !key.is_empty() {
        text.push_str(key);
        text.push_str(": ");
    }
    text.push_str(message);
    if let Some((line, column)) = position {
        text.push_str(&format!(" (line {line}, column {column})"));
    }
    text
}

/// Reads and validates the configuration file at `path`, taking `*_env` secrets from the process
/// environment. Relative `*_file` paths are resolved against the directory of `path`. This is
/// what `--config.check` runs.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, &|name| std::env::var(name).ok())
}

/// Like [`load`], with the environment lookup supplied by the caller (tests, embedding).
pub fn load_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        origin: origin.clone(),
        source,
    })?;
    let base_dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(Path::to_path_buf);
    parse_in(&text, &origin, base_dir.as_deref(), env)
}

/// Parses and validates configuration text. `origin` names the text in errors (usually its file
/// path); `env` looks up the environment variables named by `*_env` keys. Relative `*_file`
/// paths are resolved against the current directory.
pub fn parse(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    parse_in(text, origin, None, env)
}

/// Parses a replay directory's `config.toml`: exactly one `[rules]` table with the keys of
/// `[tenant.rules]`, validated by the same code.
pub fn parse_replay_rules(text: &str, origin: &str) -> Result<Rules, ConfigError> {
    let raw: RawReplayConfig = deserialize(text, origin)?;
    validate_rules(raw.rules, &KeyPath::root().key("rules")).map_err(|e| e.at(origin))
}

fn parse_in(
    text: &str,
    origin: &str,
    base_dir: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = deserialize(text, origin)?;
    let secrets = SecretSource { base_dir, env };
    validate(raw, &secrets).map_err(|e| e.at(origin))
}

/// TOML -> raw structs, keeping the key path (serde_path_to_error) and the position of a failure.
fn deserialize<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    let syntax = |key: String, error: toml::de::Error| ConfigError::Syntax {
        origin: origin.to_string(),
        key,
        message: error.message().trim_end().to_string(),
        position: error.span().map(|span| line_column(text, span.start)),
    };
    let deserializer = toml::Deserializer::parse(text).map_err(|e| syntax(String::new(), e))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = if e.path().iter().next().is_some() {
            e.path().to_string()
        } else {
            String::new()
        };
        syntax(key, e.into_inner())
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

// ---------------------------------------------------------------------------------------------
// Raw structs: exactly the TOML, nothing checked beyond types.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_path: Option<String>,
    poll_interval_seconds: Option<i64>,
    cycle_deadline_seconds: Option<i64>,
    overlap_seconds: Option<i64>,
    settle_seconds: Option<i64>,
    retention_hours: Option<i64>,
    initial_lookback_hours: Option<i64>,
    #[serde(default)]
    tenant: Vec<RawTenant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: String,
    cxone: RawCxone,
    cognigy: RawCognigy,
    #[serde(default)]
    rules: RawRules,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum RawClientAuth {
    Basic,
    Form,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum RawDateLiteral {
    Quoted,
    Bare,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCxone {
    issuer: String,
    client_id: String,
    client_secret_file: Option<PathBuf>,
    client_secret_env: Option<String>,
    access_key_id: String,
    access_key_secret_file: Option<PathBuf>,
    access_key_secret_env: Option<String>,
    client_auth: Option<RawClientAuth>,
    api_version: Option<String>,
    api_endpoint: Option<String>,
    page_size: Option<i64>,
    max_pages: Option<i64>,
    http: Option<RawHttp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCognigy {
    api_base_url: String,
    odata_base_url: String,
    api_key_file: Option<PathBuf>,
    api_key_env: Option<String>,
    project_id: String,
    odata_page_size: Option<i64>,
    logs_page_size: Option<i64>,
    logs_filter: Option<Vec<String>>,
    max_pages: Option<i64>,
    date_literal: Option<RawDateLiteral>,
    end_of_keyset_500: Option<bool>,
    odata_select: Option<bool>,
    late_window_seconds: Option<i64>,
    late_sweep_interval_seconds: Option<i64>,
    http: Option<RawHttp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    timeout_seconds: Option<i64>,
    max_retries: Option<i64>,
    initial_backoff_ms: Option<i64>,
    max_backoff_seconds: Option<i64>,
    requests_per_second: Option<f64>,
    quota_requests: Option<i64>,
    quota_window_seconds: Option<i64>,
    max_concurrency: Option<i64>,
    http1_only: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRules {
    bot_entry_points_of_contact: Option<Vec<i64>>,
    bot_entry_skills: Option<Vec<i64>>,
    handover_skills: Option<Vec<i64>>,
    contact_id_field: Option<String>,
    cognigy_lag_seconds: Option<i64>,
    handover_deadline_seconds: Option<i64>,
    bot_turn_timeout_ms: Option<i64>,
    correlation_window_seconds: Option<i64>,
    max_pending_seconds: Option<i64>,
    log_patterns: Option<RawLogPatterns>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLogPatterns {
    node_ids: Option<String>,
    signaled: Option<String>,
    signal_error: Option<String>,
    signal_status: Option<String>,
    timeout_text: Option<String>,
    invalid_action: Option<String>,
    missing_contact_id: Option<String>,
    /// Read only to refuse it with the reason (see `validate_log_patterns`).
    no_output: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplayConfig {
    rules: RawRules,
}

// ---------------------------------------------------------------------------------------------
// Validation: raw structs -> Config, the one place where values are checked.

/// A dotted key path for error messages, e.g. `tenant[0] (acme).cxone.page_size`.
#[derive(Clone)]
struct KeyPath(String);

impl KeyPath {
    fn root() -> Self {
        KeyPath(String::new())
    }

    fn key(&self, name: &str) -> KeyPath {
        if self.0.is_empty() {
            KeyPath(name.to_string())
        } else {
            KeyPath(format!("{}.{name}", self.0))
        }
    }

    fn invalid(&self, message: impl Into<String>) -> Invalid {
        Invalid {
            key: self.0.clone(),
            message: message.into(),
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validation failure before the origin is attached.
struct Invalid {
    key: String,
    message: String,
}

impl Invalid {
    fn at(self, origin: &str) -> ConfigError {
        ConfigError::Invalid {
            origin: origin.to_string(),
            key: self.key,
            message: self.message,
        }
    }
}

/// Where `*_file` and `*_env` secrets are read from.
struct SecretSource<'a> {
    base_dir: Option<&'a Path>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

fn validate(raw: RawConfig, secrets: &SecretSource<'_>) -> Result<Config, Invalid> {
    let root = KeyPath::root();
    let state_path = match raw.state_path {
        None => DEFAULT_STATE_PATH.to_string(),
        Some(path) if path.trim().is_empty() => {
            return Err(root.key("state_path").invalid("must not be empty"))
        }
        Some(path) => path,
    };
    let poll_interval_seconds = between(
        &root.key("poll_interval_seconds"),
        raw.poll_interval_seconds,
        DEFAULT_POLL_INTERVAL_SECONDS,
        1,
        86_400,
    )?;
    let cycle_deadline_seconds = between(
        &root.key("cycle_deadline_seconds"),
        raw.cycle_deadline_seconds,
        poll_interval_seconds,
        1,
        86_400,
    )?;
    let overlap_seconds = between(
        &root.key("overlap_seconds"),
        raw.overlap_seconds,
        DEFAULT_OVERLAP_SECONDS,
        0,
        86_400,
    )?;
    let settle_seconds = between(
        &root.key("settle_seconds"),
        raw.settle_seconds,
        DEFAULT_SETTLE_SECONDS,
        0,
        86_400,
    )?;
    let retention_hours = between(
        &root.key("retention_hours"),
        raw.retention_hours,
        DEFAULT_RETENTION_HOURS,
        1,
        8_760,
    )?;
    let initial_lookback_hours = between(
        &root.key("initial_lookback_hours"),
        raw.initial_lookback_hours,
        DEFAULT_INITIAL_LOOKBACK_HOURS,
        0,
        8_760,
    )?;

    if raw.tenant.is_empty() {
        return Err(root
            .key("tenant")
            .invalid("at least one [[tenant]] is required"));
    }
    // Names first, for every tenant: a wrong or duplicate name is reported before any secret
    // is read.
    for (index, tenant) in raw.tenant.iter().enumerate() {
        check_tenant_name(index, &tenant.name)?;
        if let Some(first) = raw.tenant[..index]
            .iter()
            .position(|t| t.name == tenant.name)
        {
            return Err(KeyPath(format!("tenant[{index}].name")).invalid(format!(
                "duplicate tenant name `{}` (also tenant[{first}])",
                tenant.name
            )));
        }
    }
    let tenants = raw
        .tenant
        .into_iter()
        .enumerate()
        .map(|(index, tenant)| validate_tenant(index, tenant, secrets))
        .collect::<Result<Vec<_>, _>>()?;
    check_shared_budgets(&tenants)?;

    Ok(Config {
        state_path,
        poll_interval: Duration::from_secs(poll_interval_seconds),
        cycle_deadline: Duration::from_secs(cycle_deadline_seconds),
        overlap: Duration::from_secs(overlap_seconds),
        settle: Duration::from_secs(settle_seconds),
        retention: Duration::from_secs(retention_hours * 3600),
        initial_lookback: Duration::from_secs(initial_lookback_hours * 3600),
        tenants,
    })
}

/// The API host a URL names, as the key of its request budget: `scheme://host[:port]` (the port
/// only when it is not the scheme's default). Tenants whose URLs give the same key share one
/// budget. A URL that does not parse is its own key.
pub fn api_host(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => parsed.origin().ascii_serialization(),
        Err(_) => url.to_owned(),
    }
}

impl TenantConfig {
    /// The API host whose budget this tenant's CXone requests count against: the configured
    /// `api_endpoint`, else the issuer (a discovered API host is not known before start-up).
    pub fn cxone_budget_host(&self) -> String {
        api_host(
            self.cxone
                .api_endpoint
                .as_deref()
                .unwrap_or(&self.cxone.issuer),
        )
    }

    /// The API host whose budget this tenant's Cognigy requests (OData and logs alike) count
    /// against: that of `api_base_url` (Cognigy's quota is per installation).
    pub fn cognigy_budget_host(&self) -> String {
        api_host(&self.cognigy.api_base_url)
    }
}

/// Tenants on one API host share one budget, so they must configure it alike.
fn check_shared_budgets(tenants: &[TenantConfig]) -> Result<(), Invalid> {
    for (index, tenant) in tenants.iter().enumerate() {
        for (source, host, http) in [
            ("cxone", tenant.cxone_budget_host(), &tenant.cxone.http),
            (
                "cognigy",
                tenant.cognigy_budget_host(),
                &tenant.cognigy.http,
            ),
        ] {
            let earlier = tenants[..index].iter().enumerate().find_map(|(i, t)| {
                let (h, other) = if source == "cxone" {
                    (t.cxone_budget_host(), &t.cxone.http)
                } else {
                    (t.cognigy_budget_host(), &t.cognigy.http)
                };
                (h == host).then_some((i, t, other))
            });
            let Some((i, other, other_http)) = earlier else {
                continue;
            };
            let key = KeyPath(format!("tenant[{index}] ({})", tenant.name))
                .key(source)
                .key("http");
            for (name, mine, theirs) in [
                (
                    "quota_requests",
                    u64::from(http.quota_requests),
                    u64::from(other_http.quota_requests),
                ),
                (
                    "quota_window_seconds",
                    http.quota_window.as_secs(),
                    other_http.quota_window.as_secs(),
                ),
            ] {
                if mine != theirs {
                    return Err(key.key(name).invalid(format!(
                        "is {mine}, but tenant[{i}] ({}) uses the same API host {host} with \
                         {theirs}; tenants on one host share one budget, so set it alike",
                        other.name
                    )));
                }
            }
        }
    }
    Ok(())
}

/// A tenant name is the `tenant` label value: non-empty, `[a-zA-Z0-9_-]+`.
fn check_tenant_name(index: usize, name: &str) -> Result<(), Invalid> {
    let key = KeyPath(format!("tenant[{index}].name"));
    if name.is_empty() {
        return Err(key.invalid("must not be empty"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(key.invalid(format!(
            "must contain only ASCII letters, digits, `_` and `-` (it is the `tenant` label \
             value), got `{name}`"
        )));
    }
    Ok(())
}

/// One tenant whose name [`check_tenant_name`] accepted.
fn validate_tenant(
    index: usize,
    raw: RawTenant,
    secrets: &SecretSource<'_>,
) -> Result<TenantConfig, Invalid> {
    let tenant_key = KeyPath(format!("tenant[{index}] ({})", raw.name));
    Ok(TenantConfig {
        cxone: validate_cxone(raw.cxone, &tenant_key.key("cxone"), secrets)?,
        cognigy: validate_cognigy(raw.cognigy, &tenant_key.key("cognigy"), secrets)?,
        rules: validate_rules(raw.rules, &tenant_key.key("rules"))?,
        name: raw.name,
    })
}

fn validate_cxone(
    raw: RawCxone,
    key: &KeyPath,
    secrets: &SecretSource<'_>,
) -> Result<CxoneConfig, Invalid> {
    let api_version = raw
        .api_version
        .unwrap_or_else(|| DEFAULT_CXONE_API_VERSION.to_string());
    if !is_api_version(&api_version) {
        return Err(key.key("api_version").invalid(format!(
            "must look like `v30.0` (`v<digits>.0`), got `{api_version}`"
        )));
    }
    Ok(CxoneConfig {
        issuer: http_url(&key.key("issuer"), &raw.issuer)?,
        client_id: non_empty(&key.key("client_id"), raw.client_id)?,
        client_secret: secrets.load(
            key,
            "client_secret",
            raw.client_secret_file.as_deref(),
            raw.client_secret_env.as_deref(),
        )?,
        access_key_id: non_empty(&key.key("access_key_id"), raw.access_key_id)?,
        access_key_secret: secrets.load(
            key,
            "access_key_secret",
            raw.access_key_secret_file.as_deref(),
            raw.access_key_secret_env.as_deref(),
        )?,
        client_auth: match raw.client_auth {
            None | Some(RawClientAuth::Basic) => ClientAuth::Basic,
            Some(RawClientAuth::Form) => ClientAuth::Form,
        },
        api_version,
        api_endpoint: raw
            .api_endpoint
            .map(|url| http_url(&key.key("api_endpoint"), &url))
            .transpose()?,
        page_size: between_u32(&key.key("page_size"), raw.page_size, 1000, 1, 10_000)?,
        max_pages: between_u32(&key.key("max_pages"), raw.max_pages, 50, 1, 100_000)?,
        http: validate_http(raw.http, &key.key("http"), HttpSettings::cxone_default())?,
    })
}

fn validate_cognigy(
    raw: RawCognigy,
    key: &KeyPath,
    secrets: &SecretSource<'_>,
) -> Result<CognigyConfig, Invalid> {
    Ok(CognigyConfig {
        api_base_url: http_url(&key.key("api_base_url"), &raw.api_base_url)?,
        odata_base_url: http_url(&key.key("odata_base_url"), &raw.odata_base_url)?,
        api_key: secrets.load(
            key,
            "api_key",
            raw.api_key_file.as_deref(),
            raw.api_key_env.as_deref(),
        )?,
        project_id: non_empty(&key.key("project_id"), raw.project_id)?,
        odata_page_size: between_u32(
            &key.key("odata_page_size"),
            raw.odata_page_size,
            1000,
            1,
            10_000,
        )?,
        logs_page_size: between_u32(&key.key("logs_page_size"), raw.logs_page_size, 100, 1, 100)?,
        logs_filter: logs_filter(&key.key("logs_filter"), raw.logs_filter)?,
        max_pages: between_u32(
            &key.key("max_pages"),
            raw.max_pages,
            DEFAULT_COGNIGY_MAX_PAGES,
            1,
            100_000,
        )?,
        date_literal: match raw.date_literal {
            None | Some(RawDateLiteral::Quoted) => DateLiteral::Quoted,
            Some(RawDateLiteral::Bare) => DateLiteral::Bare,
        },
        end_of_keyset_500: raw.end_of_keyset_500.unwrap_or(true),
        odata_select: raw.odata_select.unwrap_or(true),
        late_window: Duration::from_secs(between(
            &key.key("late_window_seconds"),
            raw.late_window_seconds,
            DEFAULT_LATE_WINDOW_SECONDS,
            0,
            7 * 86_400,
        )?),
        late_sweep_interval: Duration::from_secs(between(
            &key.key("late_sweep_interval_seconds"),
            raw.late_sweep_interval_seconds,
            DEFAULT_LATE_SWEEP_INTERVAL_SECONDS,
            1,
            86_400,
        )?),
        http: validate_http(raw.http, &key.key("http"), HttpSettings::cognigy_default())?,
    })
}

/// The logs filter terms: at most 10, each non-empty, without surrounding blanks, at most 200
/// characters.
fn logs_filter(key: &KeyPath, raw: Option<Vec<String>>) -> Result<Vec<String>, Invalid> {
    let Some(terms) = raw else {
        return Ok(DEFAULT_LOGS_FILTER
            .iter()
            .map(|t| (*t).to_owned())
            .collect());
    };
    if terms.len() > 10 {
        return Err(key.invalid(format!(
            "at most 10 terms (each costs a request per pass), got {}",
            terms.len()
        )));
    }
    for (i, term) in terms.iter().enumerate() {
        if term.is_empty() || term.trim() != term || term.chars().count() > 200 {
            return Err(KeyPath(format!("{key}[{i}]")).invalid(format!(
                "must be 1 to 200 characters without leading or trailing blanks, got {term:?}"
            )));
        }
    }
    Ok(terms)
}

fn validate_http(
    raw: Option<RawHttp>,
    key: &KeyPath,
    defaults: HttpSettings,
) -> Result<HttpSettings, Invalid> {
    let Some(raw) = raw else {
        return Ok(defaults);
    };
    let timeout_seconds = between(
        &key.key("timeout_seconds"),
        raw.timeout_seconds,
        defaults.timeout.as_secs(),
        1,
        3_600,
    )?;
    let max_retries = between_u32(
        &key.key("max_retries"),
        raw.max_retries,
        defaults.max_retries,
        0,
        20,
    )?;
    let initial_backoff_ms = between(
        &key.key("initial_backoff_ms"),
        raw.initial_backoff_ms,
        duration_millis(defaults.initial_backoff),
        1,
        600_000,
    )?;
    let max_backoff_seconds = between(
        &key.key("max_backoff_seconds"),
        raw.max_backoff_seconds,
        defaults.max_backoff.as_secs(),
        1,
        3_600,
    )?;
    if max_backoff_seconds * 1000 < initial_backoff_ms {
        return Err(key.key("max_backoff_seconds").invalid(format!(
            "must not be shorter than initial_backoff_ms ({initial_backoff_ms} ms), got \
             {max_backoff_seconds}"
        )));
    }
    let requests_per_second = raw.requests_per_second.or(defaults.requests_per_second);
    if let Some(rate) = requests_per_second {
        if !(rate > 0.0 && rate <= 1000.0) {
            return Err(key.key("requests_per_second").invalid(format!(
                "must be greater than 0 and at most 1000, got {rate}"
            )));
        }
    }
    let quota_requests = between_u32(
        &key.key("quota_requests"),
        raw.quota_requests,
        defaults.quota_requests,
        1,
        1_000_000,
    )?;
    let quota_window_seconds = between(
        &key.key("quota_window_seconds"),
        raw.quota_window_seconds,
        defaults.quota_window.as_secs(),
        1,
        86_400,
    )?;
    let max_concurrency = between(
        &key.key("max_concurrency"),
        raw.max_concurrency,
        defaults.max_concurrency as u64,
        1,
        256,
    )?;
    Ok(HttpSettings {
        timeout: Duration::from_secs(timeout_seconds),
        max_retries,
        initial_backoff: Duration::from_millis(initial_backoff_ms),
        max_backoff: Duration::from_secs(max_backoff_seconds),
        requests_per_second,
        quota_requests,
        quota_window: Duration::from_secs(quota_window_seconds),
        // At most 256 by the check above, so it fits any usize.
        max_concurrency: max_concurrency as usize,
        http1_only: raw.http1_only.unwrap_or(defaults.http1_only),
    })
}

/// The rules of one tenant (`[tenant.rules]`) or of a replay (`[rules]`), checked the same way.
fn validate_rules(raw: RawRules, key: &KeyPath) -> Result<Rules, Invalid> {
    let defaults = Rules::default();
    let contact_id_field = match raw.contact_id_field {
        None => defaults.contact_id_field,
        Some(field) => parse_custom_field(&field).ok_or_else(|| {
            key.key("contact_id_field").invalid(format!(
                "must be one of `custom1` .. `custom10`, got `{field}`"
            ))
        })?,
    };
    Ok(Rules {
        bot_entry_points_of_contact: id_list(
            &key.key("bot_entry_points_of_contact"),
            raw.bot_entry_points_of_contact,
        )?,
        bot_entry_skills: id_list(&key.key("bot_entry_skills"), raw.bot_entry_skills)?,
        handover_skills: id_list(&key.key("handover_skills"), raw.handover_skills)?,
        contact_id_field,
        cognigy_lag_seconds: between(
            &key.key("cognigy_lag_seconds"),
            raw.cognigy_lag_seconds,
            defaults.cognigy_lag_seconds,
            0,
            86_400,
        )?,
        handover_deadline_seconds: between(
            &key.key("handover_deadline_seconds"),
            raw.handover_deadline_seconds,
            defaults.handover_deadline_seconds,
            1,
            86_400,
        )?,
        bot_turn_timeout_ms: between(
            &key.key("bot_turn_timeout_ms"),
            raw.bot_turn_timeout_ms,
            defaults.bot_turn_timeout_ms,
            1,
            3_600_000,
        )?,
        correlation_window_seconds: between(
            &key.key("correlation_window_seconds"),
            raw.correlation_window_seconds,
            defaults.correlation_window_seconds,
            0,
            86_400,
        )?,
        max_pending_seconds: between(
            &key.key("max_pending_seconds"),
            raw.max_pending_seconds,
            defaults.max_pending_seconds,
            1,
            7 * 86_400,
        )?,
        log_patterns: validate_log_patterns(
            raw.log_patterns.unwrap_or_default(),
            &key.key("log_patterns"),
        )?,
    })
}

fn validate_log_patterns(raw: RawLogPatterns, key: &KeyPath) -> Result<LogPatterns, Invalid> {
    if raw.no_output.is_some() {
        // Older versions of this exporter read the `Done. No output data sent` line as "the node
        // skipped the call"; the extension writes it after every voice run (docs/log-lines.md).
        return Err(key.key("no_output").invalid(
            "is no longer read: the extension writes `Done. No output data sent` after every voice \
             run, so it says nothing about missing ids; remove the key (missing ids are read from \
             `node_ids` and `missing_contact_id`, docs/log-lines.md)",
        ));
    }
    Ok(LogPatterns {
        node_ids: pattern(
            &key.key("node_ids"),
            raw.node_ids,
            DEFAULT_NODE_IDS,
            &["contact_id", "spawned_contact_id", "action"],
        )?,
        signaled: pattern(
            &key.key("signaled"),
            raw.signaled,
            DEFAULT_SIGNALED,
            &["contact_id"],
        )?,
        signal_error: pattern(
            &key.key("signal_error"),
            raw.signal_error,
            DEFAULT_SIGNAL_ERROR,
            &["action", "contact_id"],
        )?,
        signal_status: pattern(
            &key.key("signal_status"),
            raw.signal_status,
            DEFAULT_SIGNAL_STATUS,
            &["status"],
        )?,
        timeout_text: pattern(
            &key.key("timeout_text"),
            raw.timeout_text,
            DEFAULT_TIMEOUT_TEXT,
            &[],
        )?,
        invalid_action: pattern(
            &key.key("invalid_action"),
            raw.invalid_action,
            DEFAULT_INVALID_ACTION,
            &[],
        )?,
        missing_contact_id: pattern(
            &key.key("missing_contact_id"),
            raw.missing_contact_id,
            DEFAULT_MISSING_CONTACT_ID,
            &[],
        )?,
    })
}

/// Compiles a configured (or the default) pattern and checks it has the named groups the log
/// line classifier reads.
fn pattern(
    key: &KeyPath,
    configured: Option<String>,
    default: &str,
    required_groups: &[&str],
) -> Result<Regex, Invalid> {
    let source = configured.as_deref().unwrap_or(default);
    if source.is_empty() {
        return Err(key.invalid("must not be empty (it would match every line)"));
    }
    let regex =
        Regex::new(source).map_err(|e| key.invalid(format!("invalid regular expression: {e}")))?;
    for group in required_groups {
        if !regex.capture_names().flatten().any(|name| name == *group) {
            return Err(key.invalid(format!("must contain the named group `(?P<{group}>...)`")));
        }
    }
    Ok(regex)
}

impl SecretSource<'_> {
    /// Loads the secret `name` of the table at `table` from exactly one of `<name>_file` and
    /// `<name>_env`. Errors name the key and the path or variable, never the content.
    fn load(
        &self,
        table: &KeyPath,
        name: &str,
        file: Option<&Path>,
        env_name: Option<&str>,
    ) -> Result<SecretString, Invalid> {
        let file_key = table.key(&format!("{name}_file"));
        let env_key = table.key(&format!("{name}_env"));
        let value = match (file, env_name) {
            (Some(_), Some(_)) => {
                return Err(table.key(name).invalid(format!(
                    "set exactly one of `{name}_file` and `{name}_env`, not both"
                )))
            }
            (None, None) => {
                return Err(table.key(name).invalid(format!(
                    "missing; set `{name}_file` (a file holding it) or `{name}_env` (the name of \
                     an environment variable holding it)"
                )))
            }
            (Some(path), None) => {
                if path.as_os_str().is_empty() {
                    return Err(file_key.invalid("must not be empty"));
                }
                let resolved = match self.base_dir {
                    Some(dir) if path.is_relative() => dir.join(path),
                    _ => path.to_path_buf(),
                };
                let bytes = read_regular_file(&resolved, MAX_SECRET_FILE_BYTES)
                    .map_err(|e| file_key.invalid(format!("`{}` {e}", resolved.display())))?;
                let content = String::from_utf8(bytes).map_err(|_| {
                    file_key.invalid(format!("`{}` is not UTF-8 text", resolved.display()))
                })?;
                let content = content.trim();
                if content.is_empty() {
                    return Err(file_key.invalid(format!("`{}` is empty", resolved.display())));
                }
                content.to_string()
            }
            (None, Some(var)) => {
                if var.is_empty() {
                    return Err(env_key.invalid("must not be empty"));
                }
                // A value that cannot be a variable name is most likely the secret pasted in by
                // mistake: say so without echoing it.
                if !is_env_var_name(var) {
                    return Err(env_key.invalid(
                        "must be the name of an environment variable (ASCII letters, digits and \
                         `_`, not starting with a digit), not the secret itself; the value is not \
                         shown",
                    ));
                }
                let content = (self.env)(var).ok_or_else(|| {
                    env_key.invalid(format!("environment variable `{var}` is not set"))
                })?;
                let content = content.trim();
                if content.is_empty() {
                    return Err(env_key.invalid(format!("environment variable `{var}` is empty")));
                }
                content.to_string()
            }
        };
        Ok(SecretString::from(value))
    }
}

/// An optional integer in `min..=max`, or `default` when absent.
fn between(
    key: &KeyPath,
    value: Option<i64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, Invalid> {
    let Some(value) = value else {
        return Ok(default);
    };
    match u64::try_from(value) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(key.invalid(format!("must be between {min} and {max}, got {value}"))),
    }
}

/// [`between`] for `u32` fields; `max` must fit `u32`.
fn between_u32(
    key: &KeyPath,
    value: Option<i64>,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, Invalid> {
    let v = between(
        key,
        value,
        u64::from(default),
        u64::from(min),
        u64::from(max),
    )?;
    // `v <= max`, a u32, by the check above.
    Ok(u32::try_from(v).unwrap_or(max))
}

fn duration_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// CXone ids (points of contact, skills) are positive integers.
fn id_list(key: &KeyPath, ids: Option<Vec<i64>>) -> Result<Vec<i64>, Invalid> {
    let ids = ids.unwrap_or_default();
    if let Some((index, id)) = ids.iter().enumerate().find(|(_, id)| **id <= 0) {
        return Err(KeyPath(format!("{key}[{index}]"))
            .invalid(format!("must be a positive CXone id, got {id}")));
    }
    Ok(ids)
}

/// `[A-Za-z_][A-Za-z0-9_]*`, the portable shell variable name.
fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `custom1`..`custom10` -> 1..=10.
fn parse_custom_field(field: &str) -> Option<u8> {
    let digits = field.strip_prefix("custom")?;
    if digits.starts_with('0') || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u8>().ok().filter(|n| (1..=10).contains(n))
}

/// `v<digits>.0`, e.g. `v30.0`.
fn is_api_version(version: &str) -> bool {
    version
        .strip_prefix('v')
        .and_then(|rest| rest.strip_suffix(".0"))
        .is_some_and(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()))
}

fn non_empty(key: &KeyPath, value: String) -> Result<String, Invalid> {
    if value.trim().is_empty() {
        return Err(key.invalid("must not be empty"));
    }
    Ok(value)
}

/// An absolute http(s) base URL, returned without one trailing slash. A URL with user
/// credentials is refused without echoing it, so a password never lands in an error.
fn http_url(key: &KeyPath, value: &str) -> Result<String, Invalid> {
    if value.contains('@') {
        return Err(key.invalid(
            "must not contain user credentials (`@`); give secrets through the *_file or *_env keys",
        ));
    }
    if !(value.starts_with("http://") || value.starts_with("https://")) {
        return Err(key.invalid(format!(
            "must start with http:// or https://, got `{value}`"
        )));
    }
    match reqwest::Url::parse(value) {
        Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) => {}
        Ok(_) => return Err(key.invalid(format!("has no host, got `{value}`"))),
        Err(e) => return Err(key.invalid(format!("is not a valid URL ({e}), got `{value}`"))),
    }
    if value.contains(['?', '#']) {
        return Err(key.invalid(format!(
            "must be a base URL without query or fragment, got `{value}`"
        )));
    }
    Ok(value.strip_suffix('/').unwrap_or(value).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in log patterns are valid regular expressions.
    #[test]
    fn default_log_patterns_compile() {
        let p = LogPatterns::default();
        assert!(p.signaled.is_match(
            "handoverToCXone: sent signal to CXone for contactId: 700123456789; action: Escalate; status: 202"
        ));
        assert!(p.node_ids.is_match(
            "handoverToCXone: Contact ID: 1; Spawned Contact ID: 2; Action: Escalate; Environment URL: x"
        ));
    }

    /// Only `custom1`..`custom10` name a custom field; no zero padding, nothing else.
    #[test]
    fn custom_field_names() {
        assert_eq!(parse_custom_field("custom1"), Some(1));
        assert_eq!(parse_custom_field("custom10"), Some(10));
        for bad in [
            "custom0", "custom11", "custom01", "custom", "Custom1", "custom1 ", "custom+1",
        ] {
            assert_eq!(parse_custom_field(bad), None, "{bad}");
        }
    }

    /// API versions must be `v<digits>.0`.
    #[test]
    fn api_versions() {
        assert!(is_api_version("v30.0"));
        assert!(is_api_version("v4.0"));
        for bad in ["30.0", "v30", "v30.1", "v.0", "vx.0", "V30.0", "v30.0 "] {
            assert!(!is_api_version(bad), "{bad}");
        }
    }

    /// Variable names are shell-portable; pasted secrets (with `-`, `/`, `+`, `=`) are not names.
    #[test]
    fn env_var_names() {
        for good in ["CXONE_SECRET", "_x", "a1"] {
            assert!(is_env_var_name(good), "{good}");
        }
        for bad in ["", "1ABC", "k3y-Zx9/q+Yw==", "A B", "Ä"] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
    }

    /// Base URLs: http(s) with a host, one trailing slash stripped, no query or credentials.
    #[test]
    fn base_urls() {
        let key = KeyPath::root().key("url");
        let ok = |v: &str| http_url(&key, v).ok();
        assert_eq!(
            ok("https://a.example/v2.4/").as_deref(),
            Some("https://a.example/v2.4")
        );
        assert_eq!(
            ok("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        for bad in [
            "ftp://a",
            "https://",
            "a.example",
            "https://a.example/?x=1",
            "https://u@a",
        ] {
            assert_eq!(ok(bad), None, "{bad}");
        }
    }

    /// Byte offsets become 1-based line and character columns, also after multi-byte text.
    #[test]
    fn line_columns() {
        let text = "a = 1\n# é\nbad";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, text.len() - 3), (3, 1));
        assert_eq!(line_column(text, 10), (2, 4));
    }
}
