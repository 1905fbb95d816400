//! `capture`: the raw API bodies behind one contact's diagnosis (or behind a time window), written
//! as a replay directory (the layout `diagnose --replay` reads, see [`crate::replay`]) that a user
//! can attach to a support request.
//!
//! A contact capture makes exactly the reads of the live `diagnose CONTACT_ID`
//! ([`crate::drilldown::diagnose_contact_observed`]) and keeps every 2xx data body the shared
//! HTTP layer hands back (token and discovery answers are never kept), so the replay of the
//! directory sees what the live diagnosis saw. A window capture reads contacts, sessions,
//! Conversations, Analytics and logs from `--since`, and keeps only the records of calls that
//! started by `--until`.
//!
//! Before anything is written, credentials are removed (every configured secret and id of the
//! tenant, and any `apikey=` query value, become `REDACTED`) and caller numbers are masked with
//! [`CallerMask`]: the numbers the bodies name as callers (CXone `fromAddress`/`fromAddr`, Cognigy
//! `userId`) are replaced wherever their digits appear, in every format, by a number of the
//! reserved country code +999 derived with HMAC-SHA-256 under a key drawn for this capture and
//! then forgotten. The same number always gets the same mask within a capture, so caller/time
//! matching works on the masked data; a mask cannot be traced back without the key. This module
//! does not diagnose anything itself and never writes outside the output directory.

use crate::config::{Rules, TenantConfig};
use crate::drilldown::{self, DrilldownError};
use crate::engine::correlation::normalize_e164;
use crate::sources::cognigy::CognigyClient;
use crate::sources::cxone::CxoneClient;
use crate::sources::http::{Endpoint, RequestObserver, Source, SourceError};
use chrono::{DateTime, Duration, Utc};
use secrecy::ExposeSecret;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The reserved ITU-T E.164 country code every mask starts with (`+999`, a spare code assigned
/// to no country), so a masked number can never be a real subscriber's.
const MASK_COUNTRY_CODE: &str = "999";

/// The fewest digits a mask has (country code included), so short numbers still look like one.
const MASK_MIN_DIGITS: usize = 10;

/// The most digits an E.164 number has.
const MASK_MAX_DIGITS: usize = 15;

/// How a window capture reaches back before `--since` for sessions (a session can start a little
/// before its contact, DESIGN §4's correlation window is added on top).
const WINDOW_MARGIN_MINUTES: i64 = 1;

/// What to capture.
#[derive(Debug, Clone)]
pub enum Target {
    /// The reads of `diagnose CONTACT_ID`.
    Contact(i64),
    /// Every call that started in `[since, until]`.
    Window {
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    },
}

/// Why a capture could not be made. No message holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{0}")]
    Drilldown(#[from] DrilldownError),
    #[error("cannot set up the {api} client: {error}")]
    Client {
        api: &'static str,
        error: SourceError,
    },
    #[error("{api} API failed while reading {reading}: {error}")]
    Source {
        api: &'static str,
        reading: &'static str,
        error: SourceError,
    },
    #[error("--out {path}: {message}")]
    Output { path: String, message: String },
    #[error("--until ({until}) is before --since ({since})")]
    EmptyWindow {
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    },
}

/// Keeps the body of every 2xx answer, in the order the layer returned them.
#[derive(Default)]
struct BodyRecorder {
    bodies: Mutex<Vec<(Endpoint, Vec<u8>)>>,
}

impl BodyRecorder {
    fn take(&self) -> Vec<(Endpoint, Vec<u8>)> {
        match self.bodies.lock() {
            Ok(mut bodies) => std::mem::take(&mut *bodies),
            // A panic while pushing cannot leave the vector half-written; keep what is there.
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

impl RequestObserver for BodyRecorder {
    fn observe_request(
        &self,
        _: Endpoint,
        _: crate::sources::http::CodeClass,
        _: std::time::Duration,
    ) {
    }
    fn observe_retry(&self, _: Source, _: crate::sources::http::RetryCause) {}
    fn observe_body(&self, endpoint: Endpoint, body: &[u8]) {
        if body.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match self.bodies.lock() {
            Ok(mut bodies) => bodies.push((endpoint, body.to_vec())),
            Err(poisoned) => poisoned.into_inner().push((endpoint, body.to_vec())),
        }
    }
}

/// What a capture wrote.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Files written, relative to the output directory.
    pub files: Vec<String>,
    /// Distinct caller numbers masked.
    pub masked_numbers: usize,
    /// The live verdict of a contact capture, as `diagnose CONTACT_ID --format json` prints it.
    pub live: Option<String>,
}

/// Masks caller numbers consistently: the same number (in any of its written forms) always gets
/// the same mask, `+999` followed by digits of a keyed hash, as long as the original (at least
/// [`MASK_MIN_DIGITS`], at most [`MASK_MAX_DIGITS`] digits). Two numbers never share a mask.
pub struct CallerMask {
    key: ring::hmac::Key,
    /// Normalised number (`+` and digits) to its mask's digits.
    masks: HashMap<String, String>,
    used: HashSet<String>,
}

impl std::fmt::Debug for CallerMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerMask")
            .field("numbers", &self.masks.len())
            .finish_non_exhaustive()
    }
}

impl CallerMask {
    /// A mask under a fresh random key.
    pub fn new() -> CallerMask {
        let key: [u8; 32] = rand::random();
        CallerMask::with_key(&key)
    }

    /// A mask under `key` (tests: a fixed key gives fixed masks).
    pub fn with_key(key: &[u8]) -> CallerMask {
        CallerMask {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            masks: HashMap::new(),
            used: HashSet::new(),
        }
    }

    /// Registers a caller number as written anywhere (`+1…`, `1…`, `001…`, `sip:+1…@host`);
    /// text that is not number-like is ignored.
    pub fn learn(&mut self, raw: &str) {
        let Some(number) = normalize_e164(raw) else {
            return;
        };
        let normal = number.to_string();
        if self.masks.contains_key(&normal) {
            return;
        }
        let digits = normal.len() - 1;
        let length = digits.clamp(MASK_MIN_DIGITS, MASK_MAX_DIGITS);
        let mut round: u32 = 0;
        let mask = loop {
            let mut message = normal.clone().into_bytes();
            message.extend_from_slice(&round.to_be_bytes());
            let tag = ring::hmac::sign(&self.key, &message);
            let mut candidate = MASK_COUNTRY_CODE.to_owned();
            for byte in tag.as_ref() {
                if candidate.len() >= length {
                    break;
                }
                candidate.push(char::from(b'0' + byte % 10));
            }
            if self.used.insert(candidate.clone()) {
                break candidate;
            }
            round += 1;
        };
        self.masks.insert(normal, mask);
    }

    /// How many distinct numbers are masked.
    pub fn len(&self) -> usize {
        self.masks.len()
    }

    /// Whether no number is masked.
    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    /// `text` with every digit run that is a learned number replaced by its mask, keeping how it
    /// was written (`+`, `00` or bare digits), so the masked text normalises to the mask.
    pub fn apply(&self, text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut i = 0;
        while i < bytes.len() {
            if !bytes[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let plus = start > 0 && bytes[start - 1] == b'+';
            let run = &text[start..i];
            let probe = if plus {
                format!("+{run}")
            } else {
                run.to_owned()
            };
            let Some(mask) = normalize_e164(&probe)
                .map(|n| n.to_string())
                .and_then(|n| self.masks.get(&n))
            else {
                continue;
            };
            out.push_str(&text[copied..start]);
            if !plus && run.starts_with("00") {
                out.push_str("00");
            }
            out.push_str(mask);
            copied = i;
        }
        out.push_str(&text[copied..]);
        out
    }
}

impl Default for CallerMask {
    fn default() -> Self {
        CallerMask::new()
    }
}

/// The JSON keys whose string values are caller numbers: CXone `fromAddress` (`fromAddr` in
/// older payloads, `ANI` in some reports) and Cognigy's `userId` (the caller on Voice Gateway).
const CALLER_KEYS: &[&str] = &["fromAddress", "fromAddr", "ani", "ANI", "userId"];

/// Learns every caller number a JSON value names under [`CALLER_KEYS`], at any depth.
fn learn_callers(value: &Value, mask: &mut CallerMask) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if CALLER_KEYS.contains(&k.as_str()) => mask.learn(s),
                    _ => learn_callers(v, mask),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| learn_callers(v, mask)),
        _ => {}
    }
}

/// The tenant's credentials and ids that must not leave the machine, longest first (so a secret
/// that contains another is replaced whole).
fn secrets_of(tenant: &TenantConfig) -> Vec<String> {
    let mut secrets: Vec<String> = [
        tenant.cxone.client_secret.expose_secret().to_owned(),
        tenant.cxone.access_key_secret.expose_secret().to_owned(),
        tenant.cognigy.api_key.expose_secret().to_owned(),
        tenant.cxone.client_id.clone(),
        tenant.cxone.access_key_id.clone(),
    ]
    .into_iter()
    .filter(|s| s.trim().len() >= 4)
    .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

/// `text` without credentials: each of `secrets` and every `apikey=`/`api_key=`/`access_token=`
/// query value replaced by `REDACTED`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        out = out.replace(secret.as_str(), "REDACTED");
    }
    for key in ["apikey=", "api_key=", "access_token=", "client_secret="] {
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.to_ascii_lowercase().find(key) {
            let value_start = at + key.len();
            result.push_str(&rest[..value_start]);
            let value_end = rest[value_start..]
                .find(['&', '"', '\'', ' ', '\\', '#'])
                .map_or(rest.len(), |e| value_start + e);
            if value_end > value_start {
                result.push_str("REDACTED");
            }
            rest = &rest[value_end..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// The replay file a body of `endpoint` goes to (`None`: not part of a replay directory), the
/// `n`th of its kind.
fn file_name(endpoint: Endpoint, n: usize) -> Option<String> {
    let name = match endpoint {
        Endpoint::CxoneContactsCompleted => format!("cxone/contacts-completed-{n:04}.json"),
        // Single contacts sort after the window's pages, as the drill-down adds them last.
        Endpoint::CxoneContact => format!("cxone/contacts-completed-single-{n:04}.json"),
        Endpoint::CognigySessions => format!("cognigy/Sessions-{n:04}.json"),
        Endpoint::CognigyConversations => format!("cognigy/Conversations-{n:04}.json"),
        Endpoint::CognigyAnalytics => format!("cognigy/Analytics-{n:04}.json"),
        Endpoint::CognigyLogs => format!("cognigy/logs-{n:04}.json"),
        _ => return None,
    };
    Some(name)
}

/// The `[rules]` table of a replay directory's `config.toml` for `rules`.
pub fn rules_toml(rules: &Rules) -> String {
    let list = |v: &[i64]| {
        let items: Vec<String> = v.iter().map(i64::to_string).collect();
        format!("[{}]", items.join(", "))
    };
    let quoted = |s: &str| {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    };
    let p = &rules.log_patterns;
    format!(
        "# The rules of the tenant this directory was captured from.\n[rules]\n\
         bot_entry_points_of_contact = {}\nbot_entry_skills = {}\nhandover_skills = {}\n\
         contact_id_field = \"custom{}\"\ncognigy_lag_seconds = {}\nhandover_deadline_seconds = {}\n\
         bot_turn_timeout_ms = {}\ncorrelation_window_seconds = {}\nmax_pending_seconds = {}\n\n\
         [rules.log_patterns]\nnode_ids = {}\nsignaled = {}\nsignal_error = {}\nsignal_status = {}\n\
         timeout_text = {}\ninvalid_action = {}\nmissing_contact_id = {}\n",
        list(&rules.bot_entry_points_of_contact),
        list(&rules.bot_entry_skills),
        list(&rules.handover_skills),
        rules.contact_id_field,
        rules.cognigy_lag_seconds,
        rules.handover_deadline_seconds,
        rules.bot_turn_timeout_ms,
        rules.correlation_window_seconds,
        rules.max_pending_seconds,
        quoted(p.node_ids.as_str()),
        quoted(p.signaled.as_str()),
        quoted(p.signal_error.as_str()),
        quoted(p.signal_status.as_str()),
        quoted(p.timeout_text.as_str()),
        quoted(p.invalid_action.as_str()),
        quoted(p.missing_contact_id.as_str()),
    )
}

/// Makes `dir` ready: created if missing, refused if it exists and is not an empty directory.
fn prepare_output(dir: &Path) -> Result<(), CaptureError> {
    let fail = |message: String| CaptureError::Output {
        path: dir.display().to_string(),
        message,
    };
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(fail(
                    "the directory is not empty; give a new or empty one".into(),
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot be created: {e}")))?;
        }
        Err(e) => return Err(fail(format!("cannot be used as a directory: {e}"))),
    }
    for sub in ["cxone", "cognigy"] {
        std::fs::create_dir_all(dir.join(sub))
            .map_err(|e| fail(format!("cannot create {sub}/: {e}")))?;
    }
    Ok(())
}

/// A body turned into the JSON a replay file of its endpoint holds: a single contact
/// (`{"contactId": {...}}`) becomes a one-contact `completedContacts` page; others stay as
/// they are. `None` when the body is not JSON (it is then not written; replay could not read it).
fn replay_json(endpoint: Endpoint, body: &[u8]) -> Option<Value> {
    let value: Value = serde_json::from_slice(body).ok()?;
    if endpoint == Endpoint::CxoneContact {
        let contact = value.get("contactId").filter(|c| c.is_object())?.clone();
        return Some(serde_json::json!({ "completedContacts": [contact] }));
    }
    Some(value)
}

/// Whether a record of a page is kept.
type RecordFilter<'a> = Box<dyn Fn(&Value) -> bool + 'a>;

/// Keeps in a window capture only the records of calls that started by `until` (and their
/// sessions' records); `sessions` is filled from the Sessions pages first.
fn keep_window(
    endpoint: Endpoint,
    value: &mut Value,
    until: DateTime<Utc>,
    session_slack: Duration,
    sessions: &mut HashSet<String>,
) {
    let time = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let session_of = |v: &Value| {
        v.get("sessionId")
            .or_else(|| v.get("meta").and_then(|m| m.get("sessionId")))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let (key, keep): (&str, RecordFilter<'_>) = match endpoint {
        Endpoint::CxoneContactsCompleted | Endpoint::CxoneContact => (
            "completedContacts",
            Box::new(|v: &Value| time(v, "contactStartDate").map_or(true, |t| t <= until)),
        ),
        Endpoint::CognigySessions => {
            let Some(items) = value.get_mut("value").and_then(Value::as_array_mut) else {
                return;
            };
            items.retain(|v| time(v, "startedAt").map_or(true, |t| t <= until + session_slack));
            sessions.extend(items.iter().filter_map(session_of));
            return;
        }
        Endpoint::CognigyConversations | Endpoint::CognigyAnalytics => (
            "value",
            Box::new(|v: &Value| session_of(v).is_some_and(|s| sessions.contains(&s))),
        ),
        Endpoint::CognigyLogs => (
            "items",
            Box::new(|v: &Value| match session_of(v) {
                Some(s) => sessions.contains(&s),
                None => time(v, "timestamp").map_or(true, |t| t <= until + Duration::hours(1)),
            }),
        ),
        _ => return,
    };
    if let Some(items) = value.get_mut(key).and_then(Value::as_array_mut) {
        items.retain(|v| keep(v));
    }
}

/// Writes the recorded bodies as a replay directory under `dir`, masked and redacted.
fn write_directory(
    dir: &Path,
    tenant: &TenantConfig,
    bodies: Vec<(Endpoint, Vec<u8>)>,
    window: Option<(DateTime<Utc>, Duration)>,
    notes: &str,
) -> Result<(Vec<String>, usize), CaptureError> {
    let fail = |path: &Path, e: std::io::Error| CaptureError::Output {
        path: path.display().to_string(),
        message: format!("cannot be written: {e}"),
    };
    let mut values: Vec<(Endpoint, Value)> = bodies
        .into_iter()
        .filter_map(|(e, b)| replay_json(e, &b).map(|v| (e, v)))
        .collect();
    if let Some((until, slack)) = window {
        // Sessions first: the other collections keep the records of the sessions kept.
        values.sort_by_key(|(e, _)| *e != Endpoint::CognigySessions);
        let mut sessions = HashSet::new();
        for (endpoint, value) in &mut values {
            keep_window(*endpoint, value, until, slack, &mut sessions);
        }
    }
    let mut mask = CallerMask::new();
    for (_, value) in &values {
        learn_callers(value, &mut mask);
    }
    let secrets = secrets_of(tenant);
    let mut counts: BTreeMap<Endpoint, usize> = BTreeMap::new();
    let mut files = Vec::new();
    for (endpoint, value) in &values {
        let n = counts.entry(*endpoint).or_insert(0);
        *n += 1;
        let Some(name) = file_name(*endpoint, *n) else {
            continue;
        };
        let text = mask.apply(&redact(&value.to_string(), &secrets));
        let path = dir.join(&name);
        std::fs::write(&path, text).map_err(|e| fail(&path, e))?;
        files.push(name);
    }
    let config = dir.join("config.toml");
    std::fs::write(&config, rules_toml(&tenant.rules)).map_err(|e| fail(&config, e))?;
    files.push("config.toml".to_owned());
    let about = dir.join("CAPTURE.txt");
    let text = format!(
        "{notes}\nCredentials were removed and {} caller number(s) masked (+999..., the same \
         number always the same mask, under a key that was not kept).\n\
         Diagnose offline with: handover-exporter diagnose --replay {}\n",
        mask.len(),
        dir.display()
    );
    std::fs::write(&about, mask.apply(&redact(&text, &secrets))).map_err(|e| fail(&about, e))?;
    files.push("CAPTURE.txt".to_owned());
    Ok((files, mask.len()))
}

/// Captures `target` of `tenant` into `dir` (new or empty).
pub async fn capture(
    tenant: &TenantConfig,
    target: &Target,
    dir: &Path,
) -> Result<Captured, CaptureError> {
    if let Target::Window { since, until } = target {
        if until < since {
            return Err(CaptureError::EmptyWindow {
                since: *since,
                until: *until,
            });
        }
    }
    prepare_output(dir)?;
    let recorder = Arc::new(BodyRecorder::default());
    let observer: Arc<dyn RequestObserver> = recorder.clone();
    let now = Utc::now();
    match target {
        Target::Contact(id) => {
            let drilldown =
                drilldown::diagnose_contact_observed(tenant, *id, now, observer).await?;
            let live = drilldown::render(&drilldown, crate::report::Format::Json);
            let notes = format!(
                "Captured {} for contact {id} (master contact {}) of tenant {}: the reads of \
                 `diagnose {id}`.\nLive diagnosis then: {}",
                now.to_rfc3339(),
                drilldown.master_contact_id,
                tenant.name,
                live.trim()
            );
            let (files, masked) = write_directory(dir, tenant, recorder.take(), None, &notes)?;
            Ok(Captured {
                files,
                masked_numbers: masked,
                live: Some(live.trim().to_owned()),
            })
        }
        Target::Window { since, until } => {
            let cxone = CxoneClient::new(&tenant.cxone, observer.clone()).map_err(|error| {
                CaptureError::Client {
                    api: "CXone",
                    error,
                }
            })?;
            let cognigy = CognigyClient::new(&tenant.cognigy, observer).map_err(|error| {
                CaptureError::Client {
                    api: "Cognigy",
                    error,
                }
            })?;
            let margin = Duration::minutes(WINDOW_MARGIN_MINUTES);
            let window = Duration::seconds(tenant.rules.correlation_window_seconds as i64);
            let since_m = *since - margin;
            let pages = tenant.cognigy.max_pages;
            let (contacts, sessions, conversations, analytics, logs) = tokio::join!(
                cxone.completed_contacts(since_m, tenant.cxone.max_pages),
                cognigy.sessions_since(since_m - window, pages),
                cognigy.conversations_since(since_m, pages),
                cognigy.analytics_since(since_m, pages),
                cognigy.logs_since(since_m, pages),
            );
            let failed = |api, reading| {
                move |error| CaptureError::Source {
                    api,
                    reading,
                    error,
                }
            };
            contacts.map_err(failed("CXone", "completed contacts"))?;
            sessions.map_err(failed("Cognigy", "OData Sessions"))?;
            conversations.map_err(failed("Cognigy", "OData Conversations"))?;
            analytics.map_err(failed("Cognigy", "OData Analytics"))?;
            logs.map_err(failed("Cognigy", "project logs"))?;
            let notes = format!(
                "Captured {} for the calls of tenant {} that started between {} and {}.",
                now.to_rfc3339(),
                tenant.name,
                since.to_rfc3339(),
                until.to_rfc3339()
            );
            let slack = window + margin;
            let (files, masked) =
                write_directory(dir, tenant, recorder.take(), Some((*until, slack)), &notes)?;
            Ok(Captured {
                files,
                masked_numbers: masked,
                live: None,
            })
        }
    }
}

/// `capture`: picks the tenant, captures, prints what was written to `out` (errors to `err`)
/// and returns the exit code: 0 written, 2 on error.
pub async fn run(
    config: &crate::config::Config,
    tenant: Option<&str>,
    target: &Target,
    dir: &Path,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> u8 {
    let tenant = match drilldown::select_tenant(config, tenant) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return 2;
        }
    };
    match capture(tenant, target, dir).await {
        Ok(captured) => {
            let _ = writeln!(
                out,
                "{}: replay directory with {} file(s) written; credentials removed, {} caller \
                 number(s) masked",
                dir.display(),
                captured.files.len(),
                captured.masked_numbers
            );
            if let Some(live) = &captured.live {
                let _ = writeln!(out, "live diagnosis: {live}");
            }
            let _ = writeln!(
                out,
                "check it with: handover-exporter diagnose --replay {}",
                dir.display()
            );
            0
        }
        Err(e) => {
            let _ = writeln!(err, "error: tenant {}: {e}", tenant.name);
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same number in every written form gets one mask of the reserved +999 range, and two
    /// numbers get two masks.
    #[test]
    fn masks_are_consistent_across_forms() {
        let mut mask = CallerMask::with_key(b"k");
        mask.learn("+12005550123");
        mask.learn("12005550123");
        mask.learn("+4930123456");
        assert_eq!(mask.len(), 2);
        let text = mask.apply(
            r#"{"a":"+12005550123","b":"12005550123","c":"<sip:+12005550123@x>","d":"0012005550123","e":"+4930123456","f":710000000000}"#,
        );
        assert!(
            !text.contains("2005550123") && !text.contains("4930123456"),
            "{text}"
        );
        assert!(text.contains("710000000000"), "other numbers stay: {text}");
        let found: Vec<String> = text
            .split(|c: char| !(c.is_ascii_digit() || c == '+'))
            .filter(|s| s.contains("999"))
            .filter_map(|s| normalize_e164(s).map(|n| n.to_string()))
            .collect();
        assert_eq!(found.len(), 5, "{text}");
        assert!(found[..4].iter().all(|n| *n == found[0]), "{found:?}");
        assert_ne!(found[0], found[4]);
        assert!(found[0].starts_with("+999") && found[0].len() == 12);
    }

    /// Configured secrets and `apikey=` values are replaced, the rest is kept.
    #[test]
    fn secrets_are_redacted() {
        let text = redact(
            r#"{"link":"https://x/odata/Sessions?$top=5&apikey=abc123&x=1","t":"the-secret-value"}"#,
            &["the-secret-value".to_owned()],
        );
        assert_eq!(
            text,
            r#"{"link":"https://x/odata/Sessions?$top=5&apikey=REDACTED&x=1","t":"REDACTED"}"#
        );
    }
}
