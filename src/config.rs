//! Configuration: the TOML file of DESIGN §8, parsed into raw structs, then validated in one place
//! into [`Config`]. Unknown keys are rejected and every validation error names its key.
//!
//! This module only reads and checks configuration; it does not open connections or read secrets'
//! contents beyond loading them into [`secrecy::SecretString`] at validation time.

use regex::Regex;
use secrecy::SecretString;
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
    /// Sustained request rate allowed against this source.
    pub requests_per_second: f64,
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
            requests_per_second: 2.0,
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
    /// Pages read per collection per cycle at most.
    pub max_pages: u32,
    pub date_literal: DateLiteral,
    /// Treat HTTP 500 under a keyset filter as the end of data (api/cognigy.md §2.2, T3).
    pub end_of_keyset_500: bool,
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

/// Regular expressions for the handover log lines (DESIGN §3: the extension writing them will be
/// replaced, so they are configuration). Named groups: `action`, `contact_id`, `error`, `status`.
#[derive(Debug, Clone)]
pub struct LogPatterns {
    /// `handoverToCXone: Signaled CXone with: 'Escalate' for contactId: <id>`.
    pub signaled: Regex,
    /// `handoverToCXone: Error signaling CXone with: '<action>' for contactId: <id>; error: ...`.
    pub signal_error: Regex,
    /// Finds the HTTP status inside a signal error's text.
    pub signal_status: Regex,
    /// Error texts that mean the signal request timed out.
    pub timeout_text: Regex,
    /// `Missing or invalid Action parameter`.
    pub invalid_action: Regex,
    /// `handoverToCXone: Done. No output data sent`.
    pub no_output: Regex,
}

pub const DEFAULT_SIGNALED: &str =
    r"handoverToCXone: Signaled CXone with: '(?P<action>[^']*)' for contactId: (?P<contact_id>[^\s;]*)";
pub const DEFAULT_SIGNAL_ERROR: &str = r"handoverToCXone: Error signaling CXone with: '(?P<action>[^']*)' for contactId: (?P<contact_id>[^\s;]*)(?:; error: (?P<error>.*))?";
pub const DEFAULT_SIGNAL_STATUS: &str = r"Error sending handover signal: (?P<status>\d{3})\b";
pub const DEFAULT_TIMEOUT_TEXT: &str =
    r"(?i)timed? ?out|ETIMEDOUT|ESOCKETTIMEDOUT|ECONNABORTED|deadline exceeded";
pub const DEFAULT_INVALID_ACTION: &str = r"Missing or invalid Action parameter";
pub const DEFAULT_NO_OUTPUT: &str = r"handoverToCXone: Done\. No output data sent";

impl Default for LogPatterns {
    fn default() -> Self {
        // The defaults are constants checked by the `default_log_patterns_compile` test.
        let compile = |p: &str| Regex::new(p).expect("default log pattern compiles");
        LogPatterns {
            signaled: compile(DEFAULT_SIGNALED),
            signal_error: compile(DEFAULT_SIGNAL_ERROR),
            signal_status: compile(DEFAULT_SIGNAL_STATUS),
            timeout_text: compile(DEFAULT_TIMEOUT_TEXT),
            invalid_action: compile(DEFAULT_INVALID_ACTION),
            no_output: compile(DEFAULT_NO_OUTPUT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in log patterns are valid regular expressions.
    #[test]
    fn default_log_patterns_compile() {
        let p = LogPatterns::default();
        assert!(p.signaled.is_match(
            "handoverToCXone: Signaled CXone with: 'Escalate' for contactId: 700123456789"
        ));
    }
}
