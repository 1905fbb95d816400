//! Replay: reads a directory of raw API bodies (DESIGN §8) for offline diagnosis.
//!
//! Layout: `cxone/contacts-completed*.json`, optional `cxone/state-history/<id>.json` and
//! `cxone/custom-data/<id>.json`; `cognigy/Sessions*.json`, `cognigy/Conversations*.json`,
//! `cognigy/Analytics*.json` (OData `{"value": [...]}`), `cognigy/logs*.json` (REST
//! `{"items": [...]}`); optional `config.toml` with one `[rules]` table. A malformed file is
//! reported with its path and what was wrong, and the other files are still read. So is a file
//! that does not hold the envelope its name promises (a CXone page without `completedContacts`,
//! an OData file without `value`, a logs file without `items`), an entry that cannot be read as a
//! regular file (a dangling or looping symbolic link, a FIFO, a directory) and a name that is not
//! UTF-8: nothing is skipped silently. This module only reads; correlation and diagnosis are
//! called by [`diagnose_data`].

use crate::config::{file_kind, parse_replay_rules, Rules};
use crate::engine::correlation::Inputs;
use crate::engine::diagnosis::{Diagnosis, Horizon};
use crate::engine::{self, decide};
use crate::sources::cognigy::wire::{
    parse_log_page, Analytics, Conversation, LogEntry, LogPage, ODataPage, Session,
};
use crate::sources::cxone::wire::{
    CompletedContact, CompletedContactsPage, CustomData, StateHistory,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A file of the replay directory that could not be used.
#[derive(Debug, Clone, PartialEq)]
pub struct FileProblem {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// Everything read from a replay directory.
#[derive(Debug, Default)]
pub struct ReplayData {
    pub contacts: Vec<CompletedContact>,
    pub sessions: Vec<Session>,
    pub conversations: Vec<Conversation>,
    pub analytics: Vec<Analytics>,
    pub logs: Vec<LogEntry>,
    pub state_history: BTreeMap<i64, StateHistory>,
    pub custom_data: BTreeMap<i64, CustomData>,
    pub rules: Rules,
    /// Files that could not be read or parsed; the rest was still used.
    pub problems: Vec<FileProblem>,
}

/// Reading the directory itself failed (not one file in it).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: not a replay directory: {reason}")]
    NotADirectory { path: String, reason: String },
}

/// Reads a replay directory. Fails only when the directory itself is unusable; per-file problems
/// are collected in [`ReplayData::problems`].
pub fn read_dir(dir: &Path) -> Result<ReplayData, ReplayError> {
    let meta = std::fs::metadata(dir).map_err(|e| ReplayError::NotADirectory {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    if !meta.is_dir() {
        return Err(ReplayError::NotADirectory {
            path: dir.display().to_string(),
            reason: "it is a file".into(),
        });
    }
    let cxone = dir.join("cxone");
    let cognigy = dir.join("cognigy");
    if !cxone.is_dir() && !cognigy.is_dir() {
        return Err(ReplayError::NotADirectory {
            path: dir.display().to_string(),
            reason: "it has neither a cxone/ nor a cognigy/ folder".into(),
        });
    }
    let mut data = ReplayData::default();

    let config = dir.join("config.toml");
    // Present means any entry, also a dangling link: only a missing name means "default rules".
    if std::fs::symlink_metadata(&config).is_ok() {
        let text = check_regular(&config)
            .and_then(|()| std::fs::read(&config).map_err(|e| format!("cannot be read: {e}")))
            .and_then(|bytes| String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned()));
        match text {
            Ok(text) => match parse_replay_rules(&text, &config.display().to_string()) {
                Ok(rules) => data.rules = rules,
                Err(e) => data.problems.push(FileProblem {
                    path: config.clone(),
                    message: e.to_string(),
                }),
            },
            Err(message) => data.problems.push(FileProblem {
                path: config.clone(),
                message: format!("{message}; the default rules were used"),
            }),
        }
    }

    let cxone_entries = list(&cxone, &mut data.problems);
    let cognigy_entries = list(&cognigy, &mut data.problems);
    for path in select(&cxone_entries, "contacts-completed", &mut data.problems) {
        if let Some(bytes) = read(&path, &mut data.problems) {
            match parse_cxone_page(&bytes) {
                Ok(page) => data.contacts.extend(page.completed_contacts),
                Err(e) => data.problems.push(parse_problem(&path, e)),
            }
        }
    }
    read_per_contact(
        &cxone.join("state-history"),
        &["contactStateHistory"],
        &mut data.state_history,
        &mut data.problems,
    );
    read_per_contact(
        &cxone.join("custom-data"),
        &["contactCustomData", "ContactCustomData"],
        &mut data.custom_data,
        &mut data.problems,
    );

    let entries = &cognigy_entries;
    read_odata(entries, "Sessions", &mut data.sessions, &mut data.problems);
    read_odata(
        entries,
        "Conversations",
        &mut data.conversations,
        &mut data.problems,
    );
    read_odata(
        entries,
        "Analytics",
        &mut data.analytics,
        &mut data.problems,
    );
    for path in select(entries, "logs", &mut data.problems) {
        if let Some(bytes) = read(&path, &mut data.problems) {
            match parse_logs(&bytes) {
                Ok(page) => data.logs.extend(page.items),
                Err(e) => data.problems.push(parse_problem(&path, e)),
            }
        }
    }
    Ok(data)
}

/// Correlates and diagnoses everything in the replay with final data (nothing stays pending).
pub fn diagnose_data(data: &ReplayData) -> Vec<Diagnosis> {
    let inputs = Inputs {
        contacts: &data.contacts,
        sessions: &data.sessions,
        conversations: &data.conversations,
        analytics: &data.analytics,
        logs: &data.logs,
    };
    // Final data never leaves a case pending.
    engine::diagnoses(decide(inputs, &data.rules, &Horizon::final_data()))
}

/// A replay file's top-level JSON; an empty file is an error naming `what` was expected.
fn top(bytes: &[u8], what: &str) -> Result<Value, serde_json::Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(serde::de::Error::custom(format!(
            "the file is empty; expected {what}"
        )));
    }
    serde_json::from_slice(bytes)
}

/// Whether `value` is an object holding an array under `key`.
fn holds_array(value: &Value, key: &str) -> bool {
    value.get(key).is_some_and(Value::is_array)
}

/// The error for a file that parsed but is not the envelope its name promises.
fn wrong_envelope(what: &str, found: &Value) -> serde_json::Error {
    serde::de::Error::custom(format!("expected {what}, found {}", describe(found)))
}

/// `value` when it is an object holding an array under one of `keys`, else the error.
fn envelope(value: Value, keys: &[&str], what: &str) -> Result<Value, serde_json::Error> {
    if keys.iter().any(|k| holds_array(&value, k)) {
        Ok(value)
    } else {
        Err(wrong_envelope(what, &value))
    }
}

/// A short description of a JSON value's shape for error messages (never its content).
fn describe(value: &Value) -> String {
    match value {
        Value::Object(map) if map.is_empty() => "an empty object".to_owned(),
        Value::Object(map) => {
            let mut keys: Vec<String> = map.keys().take(5).map(|k| format!("{k:?}")).collect();
            if map.len() > keys.len() {
                keys.push("...".to_owned());
            }
            format!("an object with keys {}", keys.join(", "))
        }
        Value::Array(_) => "an array".to_owned(),
        Value::String(_) => "a string".to_owned(),
        Value::Number(_) => "a number".to_owned(),
        Value::Bool(_) => "a boolean".to_owned(),
        Value::Null => "null".to_owned(),
    }
}

/// A CXone `contacts/completed` page as the replay requires it: `{"completedContacts": [...]}`,
/// possibly inside the 2016-era `resultSet` wrapper. Unlike the live client (where HTTP 204 is
/// the empty page), an empty file or an envelope without the array is an error.
pub fn parse_cxone_page(bytes: &[u8]) -> Result<CompletedContactsPage, serde_json::Error> {
    const WHAT: &str =
        "a CXone contacts/completed page, an object with a `completedContacts` array";
    let mut value = top(bytes, WHAT)?;
    let inner = match value.get_mut("resultSet") {
        Some(result_set) if result_set.is_object() => result_set.take(),
        _ => value,
    };
    let inner = envelope(inner, &["completedContacts"], WHAT)?;
    serde_json::from_value(inner)
}

/// An OData page as the replay requires it: `{"value": [...]}`.
pub fn parse_odata<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<ODataPage<T>, serde_json::Error> {
    const WHAT: &str = "an OData page, an object with a `value` array";
    let value = envelope(top(bytes, WHAT)?, &["value"], WHAT)?;
    serde_json::from_value(value)
}

/// A Cognigy REST logs page as the replay requires it: `{"items": [...]}`, or the HAL
/// `{"_embedded": {"logEntry": [...]}}` of the same API.
pub fn parse_logs(bytes: &[u8]) -> Result<LogPage, serde_json::Error> {
    const WHAT: &str = "a Cognigy logs page, an object with an `items` array";
    let value = top(bytes, WHAT)?;
    let hal = value
        .get("_embedded")
        .is_some_and(|e| holds_array(e, "logEntry"));
    if !(hal || holds_array(&value, "items")) {
        return Err(wrong_envelope(WHAT, &value));
    }
    parse_log_page(bytes)
}

/// The entries of one folder of the replay, listed once, with their names; a name that is not
/// UTF-8 is reported (it cannot be matched to what it should hold). A missing folder is empty.
fn list(dir: &Path, problems: &mut Vec<FileProblem>) -> Vec<(String, PathBuf)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            problems.push(FileProblem {
                path: dir.to_path_buf(),
                message: format!("cannot list the folder: {e}"),
            });
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => match entry.file_name().into_string() {
                Ok(name) => out.push((name, entry.path())),
                Err(_) => problems.push(FileProblem {
                    path: entry.path(),
                    message: "the file name is not valid UTF-8; rename it".to_owned(),
                }),
            },
            Err(e) => problems.push(FileProblem {
                path: dir.to_path_buf(),
                message: format!("cannot list the folder: {e}"),
            }),
        }
    }
    out.sort();
    out
}

/// Why `path` cannot be read as a regular file (following symbolic links), if it cannot.
fn check_regular(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) => Err(format!(
            "is not a regular file (it is {})",
            file_kind(&meta)
        )),
        Err(e) => {
            let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            if link {
                Err(format!("is a symbolic link that cannot be followed: {e}"))
            } else {
                Err(format!("cannot be read: {e}"))
            }
        }
    }
}

/// The entries whose name starts with `prefix` and ends with `.json`, in name order; one that is
/// not a readable regular file is reported instead of returned.
fn select(
    entries: &[(String, PathBuf)],
    prefix: &str,
    problems: &mut Vec<FileProblem>,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (name, path) in entries {
        if !(name.starts_with(prefix) && name.ends_with(".json")) {
            continue;
        }
        match check_regular(path) {
            Ok(()) => out.push(path.clone()),
            Err(message) => problems.push(FileProblem {
                path: path.clone(),
                message,
            }),
        }
    }
    out
}

fn read(path: &Path, problems: &mut Vec<FileProblem>) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            problems.push(FileProblem {
                path: path.to_path_buf(),
                message: e.to_string(),
            });
            None
        }
    }
}

fn parse_problem(path: &Path, e: serde_json::Error) -> FileProblem {
    let what = if e.is_eof() {
        "the JSON is truncated"
    } else if e.is_syntax() {
        "the JSON is malformed"
    } else {
        "the JSON does not have the documented shape"
    };
    FileProblem {
        path: path.to_path_buf(),
        message: format!("{what}: {e}"),
    }
}

fn read_odata<T: serde::de::DeserializeOwned>(
    entries: &[(String, PathBuf)],
    prefix: &str,
    out: &mut Vec<T>,
    problems: &mut Vec<FileProblem>,
) {
    for path in select(entries, prefix, problems) {
        if let Some(bytes) = read(&path, problems) {
            match parse_odata::<T>(&bytes) {
                Ok(page) => out.extend(page.value),
                Err(e) => problems.push(parse_problem(&path, e)),
            }
        }
    }
}

fn read_per_contact<T: serde::de::DeserializeOwned>(
    dir: &Path,
    keys: &[&str],
    out: &mut BTreeMap<i64, T>,
    problems: &mut Vec<FileProblem>,
) {
    let entries = list(dir, problems);
    for path in select(&entries, "", problems) {
        let Some(id) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<i64>().ok())
        else {
            problems.push(FileProblem {
                path: path.clone(),
                message: "the file name must be <contact id>.json".into(),
            });
            continue;
        };
        if let Some(bytes) = read(&path, problems) {
            let what = format!(
                "an object with a `{}` array",
                keys.first().copied().unwrap_or_default()
            );
            match top(&bytes, &what)
                .and_then(|value| envelope(value, keys, &what))
                .and_then(serde_json::from_value::<T>)
            {
                Ok(v) => {
                    out.insert(id, v);
                }
                Err(e) => problems.push(parse_problem(&path, e)),
            }
        }
    }
}

/// `diagnose --replay DIR`: reads, diagnoses and prints; returns the process exit code.
/// Problems are printed to `err` naming each file; the remaining files are still diagnosed.
pub fn run(
    dir: &Path,
    format: crate::report::Format,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> u8 {
    let data = match read_dir(dir) {
        Ok(data) => data,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return 2;
        }
    };
    for problem in &data.problems {
        let _ = writeln!(err, "error: {problem}");
    }
    let diagnoses = diagnose_data(&data);
    for d in &diagnoses {
        let line = match format {
            crate::report::Format::Json => crate::report::json_line(d) + "\n",
            crate::report::Format::Text => {
                let history = d
                    .evidence
                    .contact_ids
                    .iter()
                    .find_map(|id| data.state_history.get(id));
                crate::report::text(d, history) + "\n"
            }
        };
        if out.write_all(line.as_bytes()).is_err() {
            return 2;
        }
    }
    if diagnoses.is_empty() && data.problems.is_empty() {
        let _ = writeln!(err, "note: {} holds no bot contact", dir.display());
    }
    crate::report::exit_code(&diagnoses, !data.problems.is_empty())
}
