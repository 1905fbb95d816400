//! CXone Reporting API wire types: completed contacts, the single-contact envelope, state history
//! and custom data, exactly as `../shared/api/cxone.md` §2 documents them.
//!
//! Both field-name generations are accepted through serde aliases (`contactStart` and
//! `contactStartDate`, `fromAddr` and `fromAddress`, `mediaType` and `mediaTypeId`, ...), and
//! numbers or booleans sent as strings are read leniently. Only the fields the diagnosis needs are
//! kept; unknown fields are ignored because CXone adds fields between versions. These types do
//! not fetch anything (see the client in the parent module) and do not judge a contact.

use crate::sources::lenient;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// One completed contact from `GET /contacts/completed` (or the body of `GET /contacts/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedContact {
    #[serde(deserialize_with = "lenient::i64_required")]
    pub contact_id: i64,
    /// The master contact; 0 or equal to `contact_id` on a master contact itself.
    #[serde(default, deserialize_with = "lenient::i64_or_zero")]
    pub master_contact_id: i64,
    #[serde(alias = "contactStart", deserialize_with = "lenient::timestamp")]
    pub contact_start_date: DateTime<Utc>,
    #[serde(default, deserialize_with = "lenient::opt_timestamp")]
    pub last_update_time: Option<DateTime<Utc>>,
    #[serde(default, alias = "mediaType", deserialize_with = "lenient::opt_i64")]
    pub media_type_id: Option<i64>,
    #[serde(
        default,
        alias = "fromAddr",
        deserialize_with = "lenient::string_or_empty"
    )]
    pub from_address: String,
    #[serde(
        default,
        alias = "toAddr",
        deserialize_with = "lenient::string_or_empty"
    )]
    pub to_address: String,
    #[serde(default, deserialize_with = "lenient::i64_or_zero")]
    pub point_of_contact_id: i64,
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub point_of_contact_name: String,
    #[serde(default, deserialize_with = "lenient::i64_or_zero")]
    pub skill_id: i64,
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub skill_name: String,
    #[serde(default, deserialize_with = "lenient::i64_or_zero")]
    pub agent_id: i64,
    #[serde(default, deserialize_with = "lenient::bool_or_false")]
    pub abandoned: bool,
    #[serde(default, deserialize_with = "lenient::f64_or_zero")]
    pub abandon_seconds: f64,
    #[serde(default, deserialize_with = "lenient::f64_or_zero")]
    pub pre_queue_seconds: f64,
    #[serde(default, deserialize_with = "lenient::f64_or_zero")]
    pub in_queue_seconds: f64,
    #[serde(default, deserialize_with = "lenient::f64_or_zero")]
    pub agent_seconds: f64,
    #[serde(default, deserialize_with = "lenient::f64_or_zero")]
    pub total_duration_seconds: f64,
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub end_reason: String,
    /// `None`, `ReSkill`, `ReAgent`, `Consult`, `TakeOver`, `External` (api/cxone.md §2.2).
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub transfer_indicator_name: String,
}

impl CompletedContact {
    /// The master contact id of this contact's group: its `masterContactId`, or itself when that is 0.
    pub fn group_id(&self) -> i64 {
        if self.master_contact_id == 0 {
            self.contact_id
        } else {
            self.master_contact_id
        }
    }

    /// When the contact ended: start plus `totalDurationSeconds`.
    pub fn ended_at(&self) -> DateTime<Utc> {
        self.contact_start_date + seconds(self.total_duration_seconds)
    }

    /// Whether this contact reached a skill queue or an agent.
    pub fn was_queued(&self) -> bool {
        self.in_queue_seconds > 0.0 || self.agent_id != 0
    }

    /// Whether the contact ended by being transferred on, so a later leg of its group exists.
    pub fn was_transferred(&self) -> bool {
        let indicator = self.transfer_indicator_name.trim();
        (!indicator.is_empty() && !indicator.eq_ignore_ascii_case("none"))
            || self
                .end_reason
                .as_bytes()
                .windows(8)
                .any(|w| w.eq_ignore_ascii_case(b"transfer"))
    }

    /// When it entered the queue: `contactStart + preQueueSeconds`.
    pub fn queued_at(&self) -> DateTime<Utc> {
        self.contact_start_date + seconds(self.pre_queue_seconds)
    }
}

/// The longest contact duration taken at face value; longer or negative values are clamped so
/// that no reported number can overflow a timestamp.
const MAX_CONTACT_SECONDS: f64 = 30.0 * 24.0 * 3600.0;

/// Converts fractional seconds to a chrono duration at millisecond precision, clamped to
/// 0..=30 days (a NaN counts as 0).
pub fn seconds(value: f64) -> Duration {
    let clamped = if value.is_nan() {
        0.0
    } else {
        value.clamp(0.0, MAX_CONTACT_SECONDS)
    };
    Duration::milliseconds((clamped * 1000.0).round() as i64)
}

/// The `GET /contacts/completed` envelope. HTTP 204 (no body) is the empty page and never reaches
/// this type. A `resultSet` wrapper (2016-era versions) is unwrapped by [`parse_completed_page`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedContactsPage {
    #[serde(default)]
    pub completed_contacts: Vec<CompletedContact>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub total_records: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_timestamp")]
    pub last_poll_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub business_unit_id: Option<i64>,
    #[serde(default, rename = "_links")]
    pub links: Option<Links>,
}

/// HAL-style `_links` of a CXone page.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Links {
    #[serde(default, rename = "self")]
    pub self_link: Option<String>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub previous: Option<String>,
}

/// Parses one `contacts/completed` body; an empty body (HTTP 204) is an empty page.
pub fn parse_completed_page(body: &[u8]) -> Result<CompletedContactsPage, serde_json::Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CompletedContactsPage::default());
    }
    let value: serde_json::Value = serde_json::from_slice(body)?;
    let inner = match value {
        serde_json::Value::Object(mut map) if map.contains_key("resultSet") => {
            map.remove("resultSet").unwrap_or_default()
        }
        other => other,
    };
    // A 200 answer always names the array, empty or not: anything else (`{}`, `[]`, another
    // API's envelope) is a malformed page, never an empty one, or contacts would be skipped.
    let has_array = inner
        .get("completedContacts")
        .is_some_and(serde_json::Value::is_array);
    if !has_array {
        return Err(serde::de::Error::custom(
            "the page has no `completedContacts` array (an empty page is HTTP 204 or an empty array)",
        ));
    }
    serde_json::from_value(inner)
}

/// `GET /contacts/{id}`: the contact is nested under a key named `contactId` (sic, api/cxone.md §2.3).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SingleContactEnvelope {
    #[serde(rename = "contactId")]
    pub contact: CompletedContact,
    #[serde(default, deserialize_with = "lenient::opt_timestamp")]
    pub last_poll_time: Option<DateTime<Utc>>,
}

/// One state of `GET /contacts/{id}/state-history` (`contactId` arrives as a string there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactState {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub state_index: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub contact_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub contact_state_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub contact_state_name: String,
    #[serde(default, deserialize_with = "lenient::opt_timestamp")]
    pub start_date: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient::i64_or_zero")]
    pub agent_id: i64,
    #[serde(default, deserialize_with = "lenient::i64_or_zero")]
    pub skill_id: i64,
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub skill_name: String,
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub duration: String,
}

/// `{"contactStateHistory": [...]}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateHistory {
    #[serde(default)]
    pub contact_state_history: Vec<ContactState>,
}

/// One name/value pair of `GET /contacts/{id}/custom-data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomDataItem {
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient::string_or_empty")]
    pub value: String,
}

/// `{"contactCustomData": [...]}` (the bulk variant spells it `ContactCustomData`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CustomData {
    #[serde(default, rename = "contactCustomData", alias = "ContactCustomData")]
    pub items: Vec<CustomDataItem>,
}

/// `GET {issuer}/.well-known/openid-configuration` (only what the daemon uses).
#[derive(Debug, Clone, Deserialize)]
pub struct OpenIdConfiguration {
    pub token_endpoint: String,
    #[serde(default)]
    pub issuer: Option<String>,
}

/// `POST /auth/token` response. `Debug` is written by hand so the tokens never reach a log.
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub expires_in: Option<i64>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// `GET {iss}/.well-known/cxone-configuration?tenantId=` (only `api_endpoint` is needed).
#[derive(Debug, Clone, Deserialize)]
pub struct CxoneConfiguration {
    pub api_endpoint: String,
    #[serde(default)]
    pub area: Option<String>,
}
