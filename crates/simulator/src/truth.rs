//! The simulator's ground truth and control surface: `GET /_sim/truth[?until=]` (what each visible
//! bot contact must be diagnosed as, and totals), `GET /_sim/stats` (requests per path),
//! `GET|POST /_sim/faults` (switch fault injection at runtime), and [`dump_replay`], which writes
//! the world as a replay directory of DESIGN §8 plus `truth.json`.
//!
//! The truth is what the generator built (see `world.rs`); nothing here runs the diagnosis.

use super::world::{iso, rules_table, Call, World};
use super::{json_response, ApiRequest, Faults, SimState};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use handover_exporter::engine::diagnosis::{Failure, Outcome, Reason};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The expected diagnosis of one bot contact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TruthContact {
    /// The master contact id (the diagnosis key).
    pub contact_id: i64,
    pub outcome: Outcome,
    pub failure: Option<Failure>,
    pub reason: Reason,
    /// `custom_field`, `sip_header`, `caller_time` or `none`.
    #[serde(rename = "match")]
    pub match_kind: super::MatchPath,
    pub started_at: String,
    pub ended_at: String,
}

/// Totals of a truth.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TruthTotals {
    pub contacts: usize,
    pub outcome: BTreeMap<String, u64>,
    /// Keyed `failure/reason`, e.g. `timeout/signal_timeout`.
    pub failure_reason: BTreeMap<String, u64>,
    pub reason: BTreeMap<String, u64>,
    #[serde(rename = "match")]
    pub match_kind: BTreeMap<String, u64>,
    /// Contacts of calls that never entered the bot (present in CXone, never diagnosed).
    pub non_bot_contacts: usize,
}

/// The ground truth of every bot contact visible at a time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Truth {
    pub until: String,
    pub contacts: Vec<TruthContact>,
    pub totals: TruthTotals,
}

impl Truth {
    /// The truth of every call whose contacts are all visible in CXone at `until`.
    pub fn of(world: &World, until: DateTime<Utc>) -> Truth {
        let visible: Vec<&Call> = world
            .calls
            .iter()
            .filter(|c| c.visible_at <= until)
            .collect();
        Truth::of_calls(&visible, until)
    }

    fn of_calls(calls: &[&Call], until: DateTime<Utc>) -> Truth {
        let mut contacts = Vec::new();
        let mut totals = TruthTotals::default();
        for outcome in Outcome::ALL {
            if *outcome != Outcome::Undetermined {
                totals.outcome.insert(outcome.as_str().to_owned(), 0);
            }
        }
        for call in calls {
            let Some(truth) = &call.truth else {
                totals.non_bot_contacts += 1;
                continue;
            };
            let reason = truth.reason;
            *totals
                .outcome
                .entry(reason.outcome().as_str().to_owned())
                .or_default() += 1;
            if let Some(f) = reason.failure() {
                *totals
                    .failure_reason
                    .entry(format!("{}/{}", f.as_str(), reason.as_str()))
                    .or_default() += 1;
            }
            *totals.reason.entry(reason.as_str().to_owned()).or_default() += 1;
            *totals
                .match_kind
                .entry(truth.matched.as_str().to_owned())
                .or_default() += 1;
            contacts.push(TruthContact {
                contact_id: call.master_contact_id,
                outcome: reason.outcome(),
                failure: reason.failure(),
                reason,
                match_kind: truth.matched,
                started_at: iso(call.started_at),
                ended_at: iso(call.ended_at),
            });
        }
        totals.contacts = contacts.len();
        Truth {
            until: iso(until),
            contacts,
            totals,
        }
    }
}

/// Serves `/_sim/*`.
pub fn control(state: &SimState, req: &ApiRequest) -> Response {
    match (req.path.as_str(), &req.method) {
        ("/_sim/truth", &Method::GET) => {
            let until = match req.param("until") {
                None | Some("") => req.now,
                Some(t) => match DateTime::parse_from_rfc3339(t.trim()) {
                    Ok(d) => d.with_timezone(&Utc).min(req.now),
                    Err(_) => {
                        return json_response(
                            StatusCode::BAD_REQUEST,
                            &json!({"error": "until must be an RFC 3339 time"}),
                        )
                    }
                },
            };
            let truth = state.truth(until);
            json_response(
                StatusCode::OK,
                &serde_json::to_value(truth).unwrap_or(Value::Null),
            )
        }
        ("/_sim/stats", &Method::GET) => {
            let stats = state.stats();
            let total: u64 = stats.values().sum();
            json_response(StatusCode::OK, &json!({"requests": stats, "total": total}))
        }
        ("/_sim/faults", &Method::GET) => json_response(
            StatusCode::OK,
            &serde_json::to_value(state.faults()).unwrap_or(Value::Null),
        ),
        ("/_sim/faults", &Method::POST | &Method::PUT) => {
            // PUT replaces every fault; POST changes only the keys it names.
            let merged = match (
                req.method == Method::POST,
                serde_json::from_slice::<Value>(&req.body),
            ) {
                (true, Ok(Value::Object(changes))) => {
                    let mut current = serde_json::to_value(state.faults()).unwrap_or(Value::Null);
                    if let Value::Object(map) = &mut current {
                        map.extend(changes);
                    }
                    current
                }
                (_, Ok(other)) => other,
                (_, Err(e)) => {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        &json!({"error": format!("invalid faults JSON: {e}")}),
                    )
                }
            };
            match serde_json::from_value::<Faults>(merged) {
                Ok(f) => {
                    state.set_faults(f.clone());
                    json_response(
                        StatusCode::OK,
                        &serde_json::to_value(f).unwrap_or(Value::Null),
                    )
                }
                Err(e) => json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": format!("invalid faults: {e}")}),
                ),
            }
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "unknown simulator endpoint"}),
        ),
    }
}

/// Errors writing a replay directory.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("cannot write replay file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot encode replay file {path}: {source}")]
    Encode {
        path: String,
        source: serde_json::Error,
    },
}

fn write_json(dir: &Path, rel: &str, value: &Value) -> Result<(), DumpError> {
    let path = dir.join(rel);
    let text = serde_json::to_string_pretty(value).map_err(|source| DumpError::Encode {
        path: path.display().to_string(),
        source,
    })?;
    write_text(&path, &text)
}

fn write_text(path: &Path, text: &str) -> Result<(), DumpError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| DumpError::Write {
            path: parent.display().to_string(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| DumpError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// Contacts per `cxone/contacts-completed-NNN.json` page of a dump.
pub const DUMP_CONTACT_PAGE: usize = 1000;
/// Records per OData page of a dump.
pub const DUMP_ODATA_PAGE: usize = 1000;
/// Entries per log page of a dump (the REST cap).
pub const DUMP_LOG_PAGE: usize = 100;

/// Writes every call of `world` that ended by `until` as a replay directory (DESIGN §8): raw API
/// bodies in pages, `config.toml` with the world's `[rules]`, and `truth.json`. In a replay the
/// data is final, so Cognigy lag does not hide anything here.
pub fn dump_replay(world: &World, dir: &Path, until: DateTime<Utc>) -> Result<Truth, DumpError> {
    let calls: Vec<&Call> = world
        .calls
        .iter()
        .filter(|c| c.visible_at <= until)
        .collect();
    let base = "http://simulator.invalid/inContactAPI/services/v30.0/contacts/completed";
    let mut contacts: Vec<&super::world::ContactRecord> =
        calls.iter().flat_map(|c| c.contacts.iter()).collect();
    contacts.sort_by_key(|c| (c.last_update_time, c.contact_id));
    let total = contacts.len();
    for (n, chunk) in contacts.chunks(DUMP_CONTACT_PAGE).enumerate() {
        let skip = n * DUMP_CONTACT_PAGE;
        let next = (skip + chunk.len() < total).then(|| {
            format!(
                "{base}?skip={}&top={DUMP_CONTACT_PAGE}",
                skip + DUMP_CONTACT_PAGE
            )
        });
        let body = json!({
            "_links": { "self": format!("{base}?skip={skip}&top={DUMP_CONTACT_PAGE}"), "next": next, "previous": null },
            "businessUnitId": super::world::BUSINESS_UNIT_ID,
            "lastPollTime": iso(until),
            "totalRecords": total,
            "completedContacts": chunk.iter().map(|c| Value::Object(c.json.clone())).collect::<Vec<_>>()
        });
        write_json(
            dir,
            &format!("cxone/contacts-completed-{:03}.json", n + 1),
            &body,
        )?;
    }
    let sessions: Vec<&super::world::SessionRecords> =
        calls.iter().filter_map(|c| c.session.as_ref()).collect();
    let collections: [(&str, Vec<&super::world::ODataRecord>); 3] = [
        ("Sessions", sessions.iter().map(|s| &s.session).collect()),
        (
            "Conversations",
            sessions
                .iter()
                .flat_map(|s| s.conversations.iter())
                .collect(),
        ),
        (
            "Analytics",
            sessions.iter().flat_map(|s| s.analytics.iter()).collect(),
        ),
    ];
    for (name, records) in collections {
        let values: Vec<Value> = records
            .iter()
            .map(|r| {
                let mut m = serde_json::Map::new();
                m.insert("id".into(), Value::String(r.id.clone()));
                m.extend(r.json.clone());
                Value::Object(m)
            })
            .collect();
        let pages: Vec<&[Value]> = if values.is_empty() {
            vec![&[][..]]
        } else {
            values.chunks(DUMP_ODATA_PAGE).collect()
        };
        for (n, chunk) in pages.into_iter().enumerate() {
            let body = json!({
                "@odata.context": format!("http://simulator.invalid/odata/v2.4/$metadata#{name}"),
                "value": chunk
            });
            write_json(dir, &format!("cognigy/{name}-{:03}.json", n + 1), &body)?;
        }
    }
    let mut logs: Vec<&super::world::LogRecord> = calls
        .iter()
        .flat_map(|c| c.logs.iter())
        .filter(|l| l.timestamp <= until)
        .collect();
    logs.sort_by(|a, b| (b.timestamp, &b.id).cmp(&(a.timestamp, &a.id)));
    let log_total = logs.len();
    let log_pages: Vec<&[&super::world::LogRecord]> = if logs.is_empty() {
        vec![&[][..]]
    } else {
        logs.chunks(DUMP_LOG_PAGE).collect()
    };
    let page_count = log_pages.len();
    for (n, chunk) in log_pages.into_iter().enumerate() {
        let next = if n + 1 < page_count {
            chunk.last().map(|l| l.id.clone())
        } else {
            None
        };
        let previous = if n > 0 {
            chunk.first().map(|l| l.id.clone())
        } else {
            None
        };
        let body = json!({
            "items": chunk.iter().map(|l| l.json.clone()).collect::<Vec<_>>(),
            "total": log_total,
            "nextCursor": next,
            "previousCursor": previous
        });
        write_json(dir, &format!("cognigy/logs-{:03}.json", n + 1), &body)?;
    }
    let lag = world
        .spec
        .rules
        .cognigy_lag_seconds
        .max(world.spec.cognigy_lag.num_seconds().max(0) as u64);
    write_text(&dir.join("config.toml"), &rules_table(lag))?;
    let truth = Truth::of_calls(&calls, until);
    write_json(
        dir,
        "truth.json",
        &serde_json::to_value(&truth).map_err(|source| DumpError::Encode {
            path: "truth.json".into(),
            source,
        })?,
    )?;
    Ok(truth)
}
