//! Replay: reads a directory of raw API bodies (DESIGN §8) for offline diagnosis.
//!
//! Layout: `cxone/contacts-completed*.json`, optional `cxone/state-history/<id>.json` and
//! `cxone/custom-data/<id>.json`; `cognigy/Sessions*.json`, `cognigy/Conversations*.json`,
//! `cognigy/Analytics*.json` (OData `{"value": [...]}`), `cognigy/logs*.json` (REST
//! `{"items": [...]}`); optional `config.toml` with one `[rules]` table. A malformed file is
//! reported with its path and what was wrong, and the other files are still read. This module only
//! reads; correlation and diagnosis are called by [`diagnose_dir`].

use crate::config::{parse_replay_rules, Rules};
use crate::correlation::{correlate, Inputs};
use crate::diagnosis::{diagnose, Diagnosis, Horizon, Verdict};
use crate::sources::cognigy::wire::{
    parse_log_page, Analytics, Conversation, LogEntry, ODataPage, Session,
};
use crate::sources::cxone::wire::{
    parse_completed_page, CompletedContact, CustomData, StateHistory,
};
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
    if config.exists() {
        match std::fs::read_to_string(&config) {
            Ok(text) => match parse_replay_rules(&text, &config.display().to_string()) {
                Ok(rules) => data.rules = rules,
                Err(e) => data.problems.push(FileProblem {
                    path: config.clone(),
                    message: e.to_string(),
                }),
            },
            Err(e) => data.problems.push(FileProblem {
                path: config.clone(),
                message: e.to_string(),
            }),
        }
    }

    for path in files(&cxone, "contacts-completed", &mut data.problems) {
        if let Some(bytes) = read(&path, &mut data.problems) {
            match parse_completed_page(&bytes) {
                Ok(page) => data.contacts.extend(page.completed_contacts),
                Err(e) => data.problems.push(parse_problem(&path, e)),
            }
        }
    }
    read_per_contact(
        &cxone.join("state-history"),
        &mut data.state_history,
        &mut data.problems,
    );
    read_per_contact(
        &cxone.join("custom-data"),
        &mut data.custom_data,
        &mut data.problems,
    );

    read_odata(&cognigy, "Sessions", &mut data.sessions, &mut data.problems);
    read_odata(
        &cognigy,
        "Conversations",
        &mut data.conversations,
        &mut data.problems,
    );
    read_odata(
        &cognigy,
        "Analytics",
        &mut data.analytics,
        &mut data.problems,
    );
    for path in files(&cognigy, "logs", &mut data.problems) {
        if let Some(bytes) = read(&path, &mut data.problems) {
            match parse_log_page(&bytes) {
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
    let horizon = Horizon::final_data();
    let cases = correlate(inputs, &data.rules);
    let mut diagnoses = Vec::with_capacity(cases.len());
    diagnoses.extend(
        cases
            .iter()
            .filter_map(|case| match diagnose(case, &data.rules, &horizon) {
                Verdict::Diagnosed(d) => Some(*d),
                // Final data never leaves a case pending; skip defensively rather than panic.
                Verdict::Pending { .. } => None,
            }),
    );
    diagnoses
}

/// Files in `dir` whose name starts with `prefix` and ends with `.json`, sorted by name.
fn files(dir: &Path, prefix: &str, problems: &mut Vec<FileProblem>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            problems.push(FileProblem {
                path: dir.to_path_buf(),
                message: e.to_string(),
            });
            return Vec::new();
        }
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|x| x == "json")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    out.sort();
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
    dir: &Path,
    prefix: &str,
    out: &mut Vec<T>,
    problems: &mut Vec<FileProblem>,
) {
    for path in files(dir, prefix, problems) {
        if let Some(bytes) = read(&path, problems) {
            match serde_json::from_slice::<ODataPage<T>>(&bytes) {
                Ok(page) => out.extend(page.value),
                Err(e) => problems.push(parse_problem(&path, e)),
            }
        }
    }
}

fn read_per_contact<T: serde::de::DeserializeOwned>(
    dir: &Path,
    out: &mut BTreeMap<i64, T>,
    problems: &mut Vec<FileProblem>,
) {
    for path in files(dir, "", problems) {
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
            match serde_json::from_slice::<T>(&bytes) {
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
