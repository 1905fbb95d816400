//! The simulated NICE CXone: OIDC discovery, `POST /auth/token` (password grant, client
//! credentials by HTTP Basic or form fields), `cxone-configuration`, and the Reporting API
//! (`contacts/completed` with `skip`/`top` paging capped at 10 000 and 204 on empty, single
//! contact nested under `contactId`, state history under both spellings, custom data) plus the
//! Signal API, as api/cxone.md §1, §2, §4 and §6 describe them.
//!
//! Paths under `/inContactAPI/services/v{N}.0/` match in any case. It serves what the world holds;
//! it does not generate data or decide faults other than the CXone-specific ones (token lifetime,
//! old field names).

use super::selection::keep_first_sorted;
use super::world::{iso, ContactRecord, World, BUSINESS_UNIT_ID};
use super::{json_response, json_text_response, ApiRequest, PageKind, SimState};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Map, Value};

/// The page size cap of `contacts/completed` (api/cxone.md §4).
pub const MAX_TOP: usize = 10_000;

/// An unsigned JWT (`header.payload.signature`, base64url) around `claims`.
pub fn jwt(claims: &Value) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "sim"});
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(b"simulator-signature-not-checked")
    )
}

fn error(status: StatusCode, text: &str) -> (Response, PageKind) {
    let mut resp = json_response(status, &json!({"error": text, "error_description": text}));
    if let Ok(v) = HeaderValue::from_str(text) {
        resp.headers_mut().insert("icStatusDescription", v);
    }
    (resp, PageKind::Other)
}

/// Routes one CXone request (`lower` is the lower-cased path).
pub fn handle(state: &SimState, req: &ApiRequest, lower: &str) -> (Response, PageKind) {
    match (lower, &req.method) {
        ("/.well-known/openid-configuration", &Method::GET) => {
            let b = &state.base_url;
            let body = json!({
                "issuer": b,
                "authorization_endpoint": format!("{b}/auth/authorize"),
                "token_endpoint": format!("{b}/auth/token"),
                "end_session_endpoint": format!("{b}/auth/authorize/logout"),
                "jwks_uri": format!("{b}/.well-known/jwks"),
                "response_types_supported": ["code", "id_token", "token id_token"],
                "grant_types_supported": ["authorization_code", "password", "refresh_token"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "display_values_supported": ["page", "popup"],
                "code_challenge_methods_supported": ["S256"]
            });
            (json_response(StatusCode::OK, &body), PageKind::Other)
        }
        ("/.well-known/cxone-configuration", &Method::GET) => {
            if req.param("tenantId") != Some(state.credentials.tenant_id.as_str()) {
                return error(StatusCode::NOT_FOUND, "Unknown tenantId");
            }
            let body = json!({
                "api_endpoint": state.base_url,
                "area": "na1",
                "cluster": "C32",
                "domain": "niceincontact.com",
                "acdDomain": "niceincontact.com",
                "uhDomain": "nice-incontact.com",
                "globaldomain_v1": "nicecxone.com"
            });
            (json_response(StatusCode::OK, &body), PageKind::Other)
        }
        ("/auth/token", &Method::POST) => token(state, req),
        _ if lower.starts_with("/incontactapi/services/") => reporting(state, req, lower),
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn token(state: &SimState, req: &ApiRequest) -> (Response, PageKind) {
    let form = super::parse_query(&String::from_utf8_lossy(&req.body));
    let field = |k: &str| {
        form.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    };
    // Client credentials: HTTP Basic (NICE's code) or form fields (client_secret_post).
    let basic = req
        .header("authorization")
        .and_then(|h| {
            h.strip_prefix("Basic ")
                .or_else(|| h.strip_prefix("basic "))
        })
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(a, b)| (super::percent_decode(a), super::percent_decode(b)))
        });
    let client = basic.or_else(|| Some((field("client_id")?, field("client_secret")?)));
    let creds = &state.credentials;
    match client {
        Some((id, secret)) if id == creds.client_id && secret == creds.client_secret => {}
        _ => return error(StatusCode::UNAUTHORIZED, "invalid_client"),
    }
    match field("grant_type").as_deref() {
        Some("password") => {
            if field("username").as_deref() != Some(creds.access_key_id.as_str())
                || field("password").as_deref() != Some(creds.access_key_secret.as_str())
            {
                return error(StatusCode::UNAUTHORIZED, "invalid_grant");
            }
        }
        Some("refresh_token") => {
            let ok = field("refresh_token").is_some_and(|t| state.take_refresh_token(&t));
            if !ok {
                return error(StatusCode::UNAUTHORIZED, "invalid_grant");
            }
        }
        _ => return error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
    let (access, refresh, ttl) = state.issue_token(req.now);
    let id_token = jwt(&json!({
        "icAgentId": "31000001",
        "icSPId": "1",
        "sub": "user:11eb0358-0000-4000-8000-000000000001",
        "icDomain": "niceincontact.com",
        "iss": state.base_url,
        "given_name": "Sim",
        "aud": creds.client_id,
        "icBUId": BUSINESS_UNIT_ID,
        "tenantId": creds.tenant_id,
        "name": "Sim User",
        "family_name": "User",
        "tenant": "simtenant",
        "icClusterId": "C32",
        "userId": "11eb0358-0000-4000-8000-000000000001",
        "area": "na1",
        "iat": req.now.timestamp(),
        "exp": req.now.timestamp() + ttl as i64
    }));
    let body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl,
        "refresh_token": refresh,
        "id_token": id_token,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"
    });
    let mut resp = json_response(StatusCode::OK, &body);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    (resp, PageKind::Other)
}

fn authorized(state: &SimState, req: &ApiRequest) -> bool {
    req.header("authorization")
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .is_some_and(|t| state.token_valid(t.trim(), req.now))
}

fn reporting(state: &SimState, req: &ApiRequest, lower: &str) -> (Response, PageKind) {
    if !authorized(state, req) {
        return error(StatusCode::UNAUTHORIZED, "Invalid or expired token");
    }
    // /incontactapi/services/v{N}.0/<resource...>
    let rest = &lower["/incontactapi/services/".len()..];
    let Some((version, resource)) = rest.split_once('/') else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let valid_version = version
        .strip_prefix('v')
        .and_then(|v| v.strip_suffix(".0"))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if !valid_version {
        return error(StatusCode::NOT_FOUND, "Unknown API version");
    }
    let segments: Vec<&str> = resource.trim_end_matches('/').split('/').collect();
    match (segments.as_slice(), &req.method) {
        (["contacts", "completed"], &Method::GET) => completed(state, req),
        (["contacts", id], &Method::GET) => single(state, req, id),
        (["contacts", id, "state-history" | "statehistory"], &Method::GET) => {
            state_history(state, req, id)
        }
        (["contacts", id, "custom-data"], &Method::GET) => custom_data(state, req, id),
        (["interactions", id, "signal"], &Method::POST) => {
            if id.parse::<i64>().is_err() {
                return error(StatusCode::BAD_REQUEST, "Invalid contactId");
            }
            (StatusCode::NO_CONTENT.into_response(), PageKind::Other)
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn parse_date(req: &ApiRequest, key: &str) -> Result<Option<DateTime<Utc>>, String> {
    match req.param(key) {
        None | Some("") => Ok(None),
        Some(text) => {
            let text = text.trim();
            // Offsets and `Z` are both accepted; a time without either is taken as UTC.
            DateTime::parse_from_rfc3339(text)
                .map(|d| d.with_timezone(&Utc))
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                        .map(|n| n.and_utc())
                })
                .map(Some)
                .map_err(|_| format!("Invalid {key}: {text:?} is not an ISO-8601 date-time"))
        }
    }
}

fn parse_number(req: &ApiRequest, key: &str) -> Result<Option<i64>, String> {
    match req.param(key) {
        None | Some("") => Ok(None),
        Some(text) => text
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("Invalid {key}")),
    }
}

/// Renders a contact as the API would, honouring the old-field-names fault.
fn render(contact: &ContactRecord, old_fields: bool) -> Value {
    if !old_fields {
        return Value::Object(contact.json.clone());
    }
    let rename = |k: &str| -> String {
        match k {
            "contactStartDate" => "contactStart",
            "fromAddress" => "fromAddr",
            "toAddress" => "toAddr",
            "mediaTypeId" => "mediaType",
            "acwSeconds" => "ACWSeconds",
            "conferenceSeconds" => "confSeconds",
            other => other,
        }
        .to_owned()
    };
    let mut out = Map::new();
    for (k, v) in &contact.json {
        let v = match v {
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(if *b { "True" } else { "False" }.to_owned()),
            other => other.clone(),
        };
        out.insert(rename(k), v);
    }
    Value::Object(out)
}

fn select_fields(contact: Value, fields: Option<&[String]>) -> Value {
    match (contact, fields) {
        (Value::Object(mut map), Some(fields)) => {
            map.retain(|k, _| fields.contains(&k.to_ascii_lowercase()));
            Value::Object(map)
        }
        (other, _) => other,
    }
}

/// The contacts of `world` visible at `now`, borrowed: a page clones only what it serves, so a
/// request costs a scan of the world, not a deep copy of it.
fn visible_contacts(world: &World, now: DateTime<Utc>) -> impl Iterator<Item = &ContactRecord> {
    world
        .calls
        .iter()
        .flat_map(|c| c.contacts.iter())
        .filter(move |c| c.last_update_time <= now)
}

fn completed(state: &SimState, req: &ApiRequest) -> (Response, PageKind) {
    let (updated_since, start, end) = match (
        parse_date(req, "updatedSince"),
        parse_date(req, "startDate"),
        parse_date(req, "endDate"),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return error(StatusCode::BAD_REQUEST, &e)
        }
    };
    let (top, skip, media, skill) = match (
        parse_number(req, "top"),
        parse_number(req, "skip"),
        parse_number(req, "mediaTypeId"),
        parse_number(req, "skillId"),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
            return error(StatusCode::BAD_REQUEST, &e)
        }
    };
    let top = top.map_or(MAX_TOP, |t| (t.max(1) as usize).min(MAX_TOP));
    let skip = skip.unwrap_or(0).max(0) as usize;
    let descending = req
        .param("orderBy")
        .is_some_and(|o| o.to_ascii_lowercase().contains("desc"));
    let world = state.world_at(req.now);
    // Each matching contact with its position in the world, the last key of the order: equal
    // (lastUpdateTime, contactId) keys keep world order ascending and reversed descending, as a
    // stable sort followed by a reversal leaves them.
    let mut contacts: Vec<(usize, &ContactRecord)> = visible_contacts(&world, req.now)
        .filter(|c| updated_since.map_or(true, |t| c.last_update_time >= t))
        .filter(|c| start.map_or(true, |t| c.started_at >= t))
        .filter(|c| end.map_or(true, |t| c.started_at < t))
        .filter(|c| {
            media.map_or(true, |m| {
                c.json.get("mediaTypeId").and_then(Value::as_i64) == Some(m)
            })
        })
        .filter(|c| skill.map_or(true, |s| s == c.skill_id))
        .enumerate()
        .collect();
    let total = contacts.len();
    // Only the contacts up to the end of the page are put in order.
    keep_first_sorted(&mut contacts, skip.saturating_add(top), |a, b| {
        let o = (a.1.last_update_time, a.1.contact_id, a.0).cmp(&(
            b.1.last_update_time,
            b.1.contact_id,
            b.0,
        ));
        if descending {
            o.reverse()
        } else {
            o
        }
    });
    let page: Vec<&ContactRecord> = contacts.iter().skip(skip).take(top).map(|c| c.1).collect();
    if page.is_empty() {
        return (StatusCode::NO_CONTENT.into_response(), PageKind::Other);
    }
    let old = state.faults().old_cxone_fields;
    // `fields=contactId,masterContactId`: a comma-separated list, matched without regard to case.
    let fields: Option<Vec<String>> =
        req.param("fields")
            .filter(|f| !f.trim().is_empty())
            .map(|f| {
                f.split(',')
                    .map(|x| x.trim().to_ascii_lowercase())
                    .collect()
            });
    let link = |skip: usize| {
        let mut q: Vec<String> = req
            .raw_query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("skip=") && !p.starts_with("top="))
            .map(str::to_owned)
            .collect();
        q.push(format!("skip={skip}"));
        q.push(format!("top={top}"));
        format!("{}{}?{}", state.base_url, req.path, q.join("&"))
    };
    let next = (skip + page.len() < total).then(|| link(skip + top));
    let previous = (skip > 0).then(|| link(skip.saturating_sub(top)));
    let fast = !old && fields.is_none();
    let mut body = json!({
        "_links": { "self": link(skip), "next": next, "previous": previous },
        "businessUnitId": BUSINESS_UNIT_ID,
        "lastPollTime": iso(req.now),
        "totalRecords": total,
        "completedContacts": if fast {
            Vec::new()
        } else {
            page.iter().map(|c| select_fields(render(c, old), fields.as_deref())).collect::<Vec<_>>()
        }
    });
    if fast {
        // The contacts serialized where the world holds them rather than cloned into the body.
        if let Value::Object(envelope) = &body {
            if let Ok(text) = serde_json::to_string(&BorrowedPage {
                envelope,
                contacts: &page,
            }) {
                return (json_text_response(StatusCode::OK, text), PageKind::Data);
            }
        }
        // Serializing JSON maps cannot fail; were it to, the page is built by copying instead.
        body["completedContacts"] = Value::Array(page.iter().map(|c| render(c, false)).collect());
    }
    if old {
        body["businessUnitId"] = json!(BUSINESS_UNIT_ID.to_string());
        body["totalRecords"] = json!(total.to_string());
    }
    (json_response(StatusCode::OK, &body), PageKind::Data)
}

/// A `contacts/completed` body whose contacts are serialized from the world by reference: the
/// same bytes as `envelope` with `completedContacts` holding copies of them, without the copies.
struct BorrowedPage<'a> {
    envelope: &'a Map<String, Value>,
    contacts: &'a [&'a ContactRecord],
}

impl Serialize for BorrowedPage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The envelope's own key order, as serializing it as a value would give.
        let mut map = serializer.serialize_map(Some(self.envelope.len()))?;
        for (key, value) in self.envelope {
            if key == "completedContacts" {
                map.serialize_entry(key, &ContactList(self.contacts))?;
            } else {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

/// Contacts serialized as a JSON array of their objects.
struct ContactList<'a>(&'a [&'a ContactRecord]);

impl Serialize for ContactList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|c| &c.json))
    }
}

/// The contact `id` if it is visible at the request's time: a lookup in the world's contact
/// index (contact ids are unique, so this is the contact a scan of the visible ones would find).
fn find_contact(state: &SimState, req: &ApiRequest, id: &str) -> Option<ContactRecord> {
    let id: i64 = id.parse().ok()?;
    let world = state.world_at(req.now);
    let found = world
        .contact(id)
        .filter(|c| c.last_update_time <= req.now)
        .cloned();
    found
}

fn single(state: &SimState, req: &ApiRequest, id: &str) -> (Response, PageKind) {
    let Some(contact) = find_contact(state, req, id) else {
        return error(StatusCode::NOT_FOUND, "Contact not found");
    };
    let body = json!({
        "businessUnitId": BUSINESS_UNIT_ID,
        "lastPollTime": iso(req.now),
        "contactId": render(&contact, state.faults().old_cxone_fields)
    });
    (json_response(StatusCode::OK, &body), PageKind::Data)
}

fn state_history(state: &SimState, req: &ApiRequest, id: &str) -> (Response, PageKind) {
    let Some(c) = find_contact(state, req, id) else {
        return error(StatusCode::NOT_FOUND, "Contact not found");
    };
    let num = |k: &str| c.json.get(k).and_then(Value::as_i64).unwrap_or(0);
    let pre = num("preQueueSeconds");
    let queue = num("inQueueSeconds");
    let agent = num("agentSeconds");
    let agent_id = num("agentId");
    let total = num("totalDurationSeconds");
    let mut states = vec![(
        "PreQueue",
        1,
        0,
        pre.max(if queue == 0 { total } else { 0 }),
        0,
    )];
    let mut at = pre;
    if queue > 0 {
        states.push(("InQueue", 2, at, queue, 0));
        at += queue;
    }
    if agent_id != 0 {
        states.push(("Active", 3, at, agent, agent_id));
        at += agent;
    }
    states.push(("Released", 4, at.min(total.max(at)), 0, agent_id));
    let items: Vec<Value> = states
        .iter()
        .enumerate()
        .map(|(i, (name, state_id, offset, duration, agent))| {
            json!({
                "stateIndex": i + 1,
                "contactId": c.contact_id.to_string(),
                "contactStateId": state_id,
                "contactStateName": name,
                "startDate": iso(c.started_at + chrono::Duration::seconds(*offset)),
                "isWarehoused": true,
                "agentId": agent,
                "skillId": c.skill_id,
                "skillName": c.json.get("skillName").cloned().unwrap_or(Value::Null),
                "duration": format!("PT{duration}S"),
                "divisionNo": 0
            })
        })
        .collect();
    (
        json_response(StatusCode::OK, &json!({"contactStateHistory": items})),
        PageKind::Data,
    )
}

fn custom_data(state: &SimState, req: &ApiRequest, id: &str) -> (Response, PageKind) {
    let Some(c) = find_contact(state, req, id) else {
        return error(StatusCode::NOT_FOUND, "Contact not found");
    };
    let items = if c.json.get("pointOfContactId").and_then(Value::as_i64)
        == Some(super::world::BOT_ENTRY_POC)
    {
        json!([
            {"name": "BotName", "value": "Claims Voicebot"},
            {"name": "EntryPoint", "value": "Customer Line"}
        ])
    } else {
        json!([])
    };
    (
        json_response(StatusCode::OK, &json!({"contactCustomData": items})),
        PageKind::Data,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::WorldSpec;
    use chrono::Duration;

    /// A page serialized with its contacts borrowed is byte for byte the page built by copying the
    /// contacts into the envelope (key order, nulls, numbers and all).
    #[test]
    fn borrowed_page_serializes_as_the_copied_page() {
        let world = World::new(WorldSpec::finite(
            5,
            60,
            Duration::hours(1),
            Duration::seconds(60),
            Utc::now(),
        ));
        let page: Vec<&ContactRecord> = world.calls.iter().flat_map(|c| &c.contacts).collect();
        assert!(page.len() > 60);
        let envelope = json!({
            "_links": { "self": "http://sim/x?skip=0&top=3", "next": null, "previous": null },
            "businessUnitId": BUSINESS_UNIT_ID,
            "lastPollTime": iso(Utc::now()),
            "totalRecords": page.len(),
            "completedContacts": []
        });
        let Value::Object(map) = &envelope else {
            panic!("an object");
        };
        let borrowed = serde_json::to_string(&BorrowedPage {
            envelope: map,
            contacts: &page,
        })
        .expect("serializes");
        let mut copied = envelope.clone();
        copied["completedContacts"] = Value::Array(page.iter().map(|c| render(c, false)).collect());
        assert_eq!(borrowed, copied.to_string());
        let empty = serde_json::to_string(&BorrowedPage {
            envelope: map,
            contacts: &[],
        })
        .expect("serializes");
        assert_eq!(empty, envelope.to_string());
    }
}
