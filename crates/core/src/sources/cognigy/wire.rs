//! Cognigy.AI wire types: OData v2.4 `Sessions`, `Conversations` and `Analytics` records, and REST
//! project log entries, as `../shared/api/cognigy.md` §1.7 and §2.3 document them.
//!
//! Record ids arrive as `id` (v2.4) or `_id` (v2.3 and REST); both are accepted. A Conversations
//! record's `inputData` is a JSON-encoded string in OData and an object over REST: it is decoded
//! here into the two things the diagnosis reads from it, a Voice Gateway call event and the CXone
//! SIP headers. A masked or non-JSON `inputData` decodes to "nothing known", never to an error.
//! These types do not fetch anything and do not correlate or judge.

use crate::sources::lenient;
use chrono::{DateTime, Utc};
use serde::de::Deserializer;
use serde::{Deserialize, Serialize};

/// One OData `Sessions` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    #[serde(default, alias = "_id", deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::string_or_empty")]
    pub session_id: String,
    #[serde(deserialize_with = "lenient::timestamp")]
    pub started_at: DateTime<Utc>,
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub user_id: String,
    #[serde(default, deserialize_with = "lenient::i64_or_zero")]
    pub handover_escalations: i64,
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub project_id: String,
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub endpoint_name: String,
}

/// One OData `Conversations` record (one message or call event of a session).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    #[serde(default, alias = "_id", deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::string_or_empty")]
    pub session_id: String,
    #[serde(deserialize_with = "lenient::timestamp")]
    pub timestamp: DateTime<Utc>,
    #[serde(
        default,
        rename = "type",
        deserialize_with = "lenient::string_or_empty"
    )]
    pub kind: String,
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub source: String,
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub channel: String,
    #[serde(default, deserialize_with = "lenient::bool_or_false")]
    pub in_handover_request: bool,
    #[serde(default, deserialize_with = "lenient::bool_or_false")]
    pub in_handover_conversation: bool,
    #[serde(default, deserialize_with = "decode_input_data")]
    pub input_data: InputData,
    /// The message text (`inputText`), kept only when it is an output of the CXone extension's
    /// handover node (`handoverToCXone Error: Missing Action parameter` in versions that report
    /// a bad action as a bot output, docs/log-lines.md): caller utterances are never kept.
    #[serde(
        default,
        rename = "inputText",
        deserialize_with = "handover_node_output",
        skip_serializing_if = "String::is_empty"
    )]
    pub node_output: String,
}

/// The prefix of every output text of the handover node.
const HANDOVER_NODE_OUTPUT: &str = "handoverToCXone";

/// Keeps a Conversations text only when the handover node wrote it.
fn handover_node_output<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = lenient::string_or_empty(d)?;
    Ok(if text.trim_start().starts_with(HANDOVER_NODE_OUTPUT) {
        text
    } else {
        String::new()
    })
}

/// What the diagnosis reads out of a Conversations record's `inputData`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputData {
    /// A Voice Gateway call event (`inputData.event`), e.g. `TRANSFER_REFER_ERROR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<VoiceGatewayEvent>,
    /// `X-InContact-MasterId` from `payload.sip.headers`: the CXone master contact id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_contact_id: Option<String>,
    /// `X-InContact-ContactId` from `payload.sip.headers`: the spawned backchannel contact id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawned_contact_id: Option<String>,
}

/// A Voice Gateway event carried in `inputData` (api/cognigy.md §3.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceGatewayEvent {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_status: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refer_status: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dial_call_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dial_sip_status: Option<i64>,
}

impl VoiceGatewayEvent {
    /// Whether the event belongs to a transfer attempt (and so marks an escalation).
    pub fn is_transfer(&self) -> bool {
        self.name.starts_with("TRANSFER_") || self.name == "NO_ANSWER"
    }
}

fn decode_input_data<'de, D: Deserializer<'de>>(d: D) -> Result<InputData, D::Error> {
    let raw = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match raw {
        Some(serde_json::Value::String(text)) => serde_json::from_str::<serde_json::Value>(&text)
            .map(|v| InputData::from_value(&v))
            .unwrap_or_default(),
        Some(value) => InputData::from_value(&value),
        None => InputData::default(),
    })
}

impl InputData {
    /// Extracts the event and SIP headers from a decoded `input.data` object.
    pub fn from_value(value: &serde_json::Value) -> InputData {
        // Already-decoded form (a record we serialized ourselves into the store).
        if value.get("master_contact_id").is_some() || value.get("spawned_contact_id").is_some() {
            if let Ok(data) = serde_json::from_value::<InputData>(value.clone()) {
                return data;
            }
        }
        let payload = value.get("payload");
        let event = match value.get("event") {
            Some(serde_json::Value::String(name)) if !name.is_empty() => Some(VoiceGatewayEvent {
                name: name.clone(),
                sip_status: payload.and_then(|p| int_field(p, "sip_status")),
                refer_status: payload.and_then(|p| int_field(p, "refer_status")),
                dial_call_status: payload
                    .and_then(|p| p.get("dial_call_status"))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
                dial_sip_status: payload.and_then(|p| int_field(p, "dial_sip_status")),
            }),
            Some(serde_json::Value::Object(obj)) => {
                // Already-decoded form.
                serde_json::from_value(serde_json::Value::Object(obj.clone())).ok()
            }
            _ => None,
        };
        let headers = payload
            .and_then(|p| p.get("sip"))
            .or_else(|| value.get("sip"))
            .and_then(|s| s.get("headers"))
            .and_then(|h| h.as_object());
        let header = |name: &str| {
            headers.and_then(|h| {
                h.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| match v {
                        serde_json::Value::String(s) => Some(s.trim().to_owned()),
                        serde_json::Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
            })
        };
        InputData {
            event,
            master_contact_id: header("X-InContact-MasterId"),
            spawned_contact_id: header("X-InContact-ContactId"),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.event.is_none()
            && self.master_contact_id.is_none()
            && self.spawned_contact_id.is_none()
    }
}

fn int_field(value: &serde_json::Value, key: &str) -> Option<i64> {
    match value.get(key)? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// One OData `Analytics` record (one per bot input; written when the session ends).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Analytics {
    #[serde(default, alias = "_id", deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::string_or_empty")]
    pub session_id: String,
    #[serde(deserialize_with = "lenient::timestamp")]
    pub timestamp: DateTime<Utc>,
    /// Milliseconds the bot spent on this input.
    #[serde(default, deserialize_with = "lenient::f64_or_zero")]
    pub execution_time: f64,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub custom1: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub custom2: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub custom3: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub custom4: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub custom5: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub custom6: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub custom7: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub custom8: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub custom9: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub custom10: Option<String>,
}

impl Analytics {
    /// The value of custom field `n` (1..=10), if set and not blank.
    pub fn custom(&self, n: u8) -> Option<&str> {
        let field = match n {
            1 => &self.custom1,
            2 => &self.custom2,
            3 => &self.custom3,
            4 => &self.custom4,
            5 => &self.custom5,
            6 => &self.custom6,
            7 => &self.custom7,
            8 => &self.custom8,
            9 => &self.custom9,
            10 => &self.custom10,
            _ => &None,
        };
        field.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }
}

/// An OData collection page: `{"@odata.context": ..., "value": [...]}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ODataPage<T> {
    pub value: Vec<T>,
    #[serde(default, rename = "@odata.nextLink")]
    pub next_link: Option<String>,
}

/// One REST project log entry (`GET /new/v2.0/projects/{id}/logs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    #[serde(
        default,
        rename = "_id",
        alias = "id",
        deserialize_with = "lenient::opt_string"
    )]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::timestamp")]
    pub timestamp: DateTime<Utc>,
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub msg: String,
    /// The level: `error`, `info`, ...
    #[serde(
        default,
        rename = "type",
        deserialize_with = "lenient::string_or_empty"
    )]
    pub level: String,
    #[serde(default)]
    pub meta: LogMeta,
    #[serde(default, rename = "traceId", deserialize_with = "lenient::opt_string")]
    pub trace_id: Option<String>,
}

/// The free-form `meta` of a log entry; only the session id is read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogMeta {
    #[serde(
        default,
        rename = "sessionId",
        deserialize_with = "lenient::opt_string"
    )]
    pub session_id: Option<String>,
}

/// A REST log page: `{"items": [...], "nextCursor": ...}` or the v2.0 spelling `next`, or HAL
/// (`_embedded.logEntry`, `_links.next.href`) when the server ignored our `Accept` header.
#[derive(Debug, Clone, Default)]
pub struct LogPage {
    pub items: Vec<LogEntry>,
    pub next_cursor: Option<String>,
}

/// Parses a REST log page in any of its documented envelopes.
pub fn parse_log_page(body: &[u8]) -> Result<LogPage, serde_json::Error> {
    #[derive(Deserialize)]
    struct Plain {
        #[serde(default)]
        items: Option<Vec<LogEntry>>,
        #[serde(default, rename = "nextCursor")]
        next_cursor: Option<String>,
        #[serde(default)]
        next: Option<String>,
        #[serde(default, rename = "_embedded")]
        embedded: Option<Embedded>,
        #[serde(default, rename = "_links")]
        links: Option<HalLinks>,
    }
    #[derive(Deserialize)]
    struct Embedded {
        #[serde(default, rename = "logEntry")]
        log_entry: Vec<LogEntry>,
    }
    #[derive(Deserialize)]
    struct HalLinks {
        #[serde(default)]
        next: Option<HalHref>,
    }
    #[derive(Deserialize)]
    struct HalHref {
        href: Option<String>,
    }
    let plain: Plain = serde_json::from_slice(body)?;
    let items = match (plain.items, plain.embedded) {
        (Some(items), _) => items,
        (None, Some(embedded)) => embedded.log_entry,
        (None, None) => {
            return Err(serde::de::Error::custom(
                "expected an `items` array or `_embedded.logEntry`",
            ))
        }
    };
    let next_cursor = plain
        .next_cursor
        .or(plain.next)
        .or_else(|| plain.links.and_then(|l| l.next).and_then(|n| n.href))
        .filter(|c| !c.is_empty());
    Ok(LogPage { items, next_cursor })
}
