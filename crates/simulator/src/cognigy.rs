//! The simulated Cognigy.AI: the OData analytics endpoint (`/odata/v2.4/{Sessions,Conversations,
//! Analytics}` with `apikey`, `$filter`/`$orderby`/`$top`/`$skip`/`$select`/`$count`) and the REST
//! project logs (`/new/v2.0|v2.1/projects/{id}/logs` with `X-API-Key`, `limit` capped at 100,
//! `sort`, repeatable `type`, `next`/`previous` cursors, HAL on request), as api/cognigy.md §1.2-1.5
//! and §2 describe them.
//!
//! Quirks reproduced: records appear only after their session ended plus the configured lag, or
//! plus a delay drawn per session from a [`CognigyDelay`] distribution (`--cognigy-delay`, e.g.
//! some sessions only at their 30-minute expiry);
//! `inputData` is a JSON string; only a literal `$top` is an option (`%24top` is rejected); v2.4
//! records carry `id` and v2.3 `_id`; log entries are kept 24 h; and, behind a fault flag, a 500
//! instead of an empty page at the end of a keyset. It serves what the world holds and judges
//! nothing.

use super::log_index::{self, LogKey, LogSelector};
use super::selection::keep_first_sorted;
use super::world::{Call, LogRecord, ODataRecord, World};
use super::{json_response, ApiRequest, PageKind, SimState};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};
use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap};
use std::ops::Bound;

/// How long after a session ends its OData records appear: weighted ranges of seconds, one drawn
/// per session (deterministically, from the world's seed and the call's index). Written
/// `WEIGHT:SECONDS` or `WEIGHT:MIN-MAX`, comma-separated: `0.8:60,0.2:1800-1900` makes four
/// sessions in five appear a minute after they end and one at its 30-minute expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct CognigyDelay {
    /// (weight, shortest, longest) in seconds.
    parts: Vec<(f64, u64, u64)>,
}

/// Error for a `--cognigy-delay` value that does not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid Cognigy delay {text:?}: {why} (expected WEIGHT:SECONDS or WEIGHT:MIN-MAX, comma-separated, e.g. 0.8:60,0.2:1800-1900)")]
pub struct CognigyDelayParseError {
    text: String,
    why: &'static str,
}

impl std::str::FromStr for CognigyDelay {
    type Err = CognigyDelayParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |why| CognigyDelayParseError {
            text: text.to_owned(),
            why,
        };
        let mut parts = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (weight, range) = term
                .split_once(':')
                .ok_or_else(|| error("a term has no `:`"))?;
            let weight: f64 = weight
                .trim()
                .parse()
                .map_err(|_| error("a weight is not a number"))?;
            if !(weight.is_finite() && weight > 0.0) {
                return Err(error("a weight is not positive"));
            }
            let (low, high) = range.split_once('-').unwrap_or((range, range));
            let seconds = |s: &str| {
                s.trim()
                    .parse::<u64>()
                    .map_err(|_| error("a delay is not whole seconds"))
            };
            let (low, high) = (seconds(low)?, seconds(high)?);
            if low > high {
                return Err(error("a range ends before it starts"));
            }
            parts.push((weight, low, high));
        }
        if parts.is_empty() {
            return Err(error("no term"));
        }
        Ok(CognigyDelay { parts })
    }
}

impl CognigyDelay {
    /// The longest delay it can draw.
    pub fn longest(&self) -> Duration {
        Duration::seconds(self.parts.iter().map(|p| p.2).max().unwrap_or(0) as i64)
    }

    /// The delay of the session of call `index` in a world seeded `seed`.
    pub fn sample(&self, seed: u64, index: usize) -> Duration {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            seed ^ 0xde1a_7000_0000_0000 ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407),
        );
        let total: f64 = self.parts.iter().map(|p| p.0).sum();
        let mut pick = rng.random_range(0.0..total);
        let part = self
            .parts
            .iter()
            .find(|p| {
                pick -= p.0;
                pick < 0.0
            })
            .or(self.parts.last());
        let seconds = part.map_or(0, |&(_, low, high)| rng.random_range(low..=high));
        Duration::seconds(seconds as i64)
    }
}

/// The server's cap on a REST page (api/cognigy.md §1.4).
pub const MAX_LOG_LIMIT: usize = 100;
/// How long the REST API keeps log entries.
pub const LOG_RETENTION_HOURS: i64 = 24;

fn odata_error(status: StatusCode, message: &str) -> (Response, PageKind) {
    (
        json_response(
            status,
            &json!({"error": {"code": status.as_u16().to_string(), "message": message}}),
        ),
        PageKind::Other,
    )
}

fn rest_error(status: StatusCode, detail: &str, code: u32, instance: &str) -> (Response, PageKind) {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = json!({
        "type": reason,
        "title": format!("{reason} Error"),
        "status": status.as_u16(),
        "detail": detail,
        "instance": instance,
        "code": code,
        "traceId": "api--00000000-0000-4000-8000-000000000000",
        "details": {}
    });
    (json_response(status, &body), PageKind::Other)
}

/// A request the OData API refuses: the status and message of its error.
struct ODataRefusal {
    status: StatusCode,
    message: String,
}

impl ODataRefusal {
    fn new(status: StatusCode, message: &str) -> ODataRefusal {
        ODataRefusal {
            status,
            message: message.to_owned(),
        }
    }

    fn answer(self) -> (Response, PageKind) {
        odata_error(self.status, &self.message)
    }
}

/// A request the logs API refuses: the status, detail and code of its error.
struct RestRefusal {
    status: StatusCode,
    detail: String,
    code: u32,
}

impl RestRefusal {
    fn new(status: StatusCode, detail: &str, code: u32) -> RestRefusal {
        RestRefusal {
            status,
            detail: detail.to_owned(),
            code,
        }
    }

    /// The error answer, naming the request's path as its `instance`.
    fn answer(self, instance: &str) -> (Response, PageKind) {
        rest_error(self.status, &self.detail, self.code, instance)
    }
}

/// Which collection a request reads, and the field its keyset runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collection {
    Sessions,
    Conversations,
    Analytics,
    /// Documented v2.4 collections the simulator keeps empty.
    Unsimulated,
}

/// The collection an OData request reads, from its path, once the request may read it.
struct ODataTarget<'a> {
    version: &'a str,
    name: &'a str,
    collection: Collection,
    /// `/$count`: the number of matching records as plain text.
    count_only: bool,
    /// Whether records carry `_id` (v2.3, or v2.4 under the fault) instead of `id`.
    underscore_id: bool,
}

/// The request's collection, or the refusal of its method, path, version, key or query options,
/// in that order.
fn odata_target<'a>(
    state: &SimState,
    req: &'a ApiRequest,
) -> Result<ODataTarget<'a>, ODataRefusal> {
    if req.method != Method::GET {
        return Err(ODataRefusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Only GET is supported",
        ));
    }
    let segments: Vec<&str> = req
        .path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .collect();
    let (version, name, count_only) = match segments.as_slice() {
        ["odata", v, c] => (*v, *c, false),
        ["odata", v, c, "$count"] => (*v, *c, true),
        _ => {
            return Err(ODataRefusal::new(
                StatusCode::NOT_FOUND,
                "Resource not found",
            ))
        }
    };
    let underscore_id = match version {
        "v2.4" => state.faults().odata_underscore_id,
        "v2.3" => true,
        _ => {
            return Err(ODataRefusal::new(
                StatusCode::NOT_FOUND,
                "Unknown OData version",
            ))
        }
    };
    let Some(collection) = Collection::named(name) else {
        return Err(ODataRefusal::new(
            StatusCode::NOT_FOUND,
            &format!("Resource not found for the segment '{name}'"),
        ));
    };
    let key = req.param("apikey").or_else(|| req.header("apikey"));
    if key != Some(state.credentials.api_key.as_str()) {
        return Err(ODataRefusal::new(StatusCode::UNAUTHORIZED, "Unauthorized"));
    }
    refuse_unsupported_options(req)?;
    Ok(ODataTarget {
        version,
        name,
        collection,
        count_only,
        underscore_id,
    })
}

impl Collection {
    /// The collection a path segment names (`None`: no such OData collection).
    fn named(name: &str) -> Option<Collection> {
        match name {
            "Sessions" => Some(Collection::Sessions),
            "Conversations" => Some(Collection::Conversations),
            "Analytics" => Some(Collection::Analytics),
            "Steps"
            | "ExecutedSteps"
            | "LiveAgentEscalations"
            | "Goals"
            | "GoalSteps"
            | "GoalStepMetrics"
            | "GoalEvents" => Some(Collection::Unsimulated),
            _ => None,
        }
    }
}

/// Refuses a system query option the API does not support.
fn refuse_unsupported_options(req: &ApiRequest) -> Result<(), ODataRefusal> {
    // Only literal `$` options are system query options; an encoded `%24top` is rejected (T3).
    for (k, _) in &req.query {
        if k.len() >= 3 && k[..3].eq_ignore_ascii_case("%24") {
            return Err(ODataRefusal::new(
                StatusCode::BAD_REQUEST,
                &format!("The query parameter '{k}' is not supported. Query options must start with a literal '$'."),
            ));
        }
        if k.starts_with('$')
            && !matches!(
                k.as_str(),
                "$filter" | "$orderby" | "$top" | "$skip" | "$select" | "$count"
            )
        {
            return Err(ODataRefusal::new(
                StatusCode::BAD_REQUEST,
                &format!("The query parameter '{k}' is not supported."),
            ));
        }
    }
    Ok(())
}

/// Whether `$count=true` asks for `@odata.count`.
fn count_asked(req: &ApiRequest) -> bool {
    req.param("$count")
        .is_some_and(|c| c.eq_ignore_ascii_case("true"))
}

/// `$top` (if any) and `$skip` (0 if none), or the message naming the one that is not a number.
fn top_and_skip(req: &ApiRequest) -> Result<(Option<usize>, usize), String> {
    let parse_usize = |k: &str| -> Result<Option<usize>, String> {
        req.param(k)
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("Invalid value for {k}: '{v}'"))
            })
            .transpose()
    };
    match (parse_usize("$top"), parse_usize("$skip")) {
        (Ok(t), Ok(s)) => Ok((t, s.unwrap_or(0))),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// What an OData request selects and in which order, parsed once per request.
struct ODataQuery {
    collection: Collection,
    filter: Vec<Clause>,
    /// `$orderby` keys (or the natural time), each with whether it is descending.
    keys: Vec<(String, bool)>,
    /// The collection's natural time field.
    time_field: &'static str,
    /// `id`, or `_id` where records carry that.
    id_field: &'static str,
    /// Whether a clause or key reads the id, which is then copied into a value per record.
    needs_id: bool,
}

impl ODataQuery {
    /// `$filter` (its fields known to the collection) and `$orderby`, or the refusal naming
    /// what is wrong.
    fn parse(
        req: &ApiRequest,
        collection: Collection,
        name: &str,
        underscore_id: bool,
    ) -> Result<ODataQuery, ODataRefusal> {
        let time_field = if collection == Collection::Sessions {
            "startedAt"
        } else {
            "timestamp"
        };
        let filter = match req.param("$filter").map(parse_filter).transpose() {
            Ok(f) => f.unwrap_or_default(),
            Err(e) => return Err(ODataRefusal::new(StatusCode::BAD_REQUEST, &e)),
        };
        if collection != Collection::Unsimulated {
            if let Some(clause) = filter.iter().find(|c| !known_field(collection, &c.field)) {
                return Err(ODataRefusal::new(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "Could not find a property named '{}' on type 'Cognigy.{name}'.",
                        clause.field
                    ),
                ));
            }
        }
        let keys = parse_orderby(req, time_field)?;
        let id_field = if underscore_id { "_id" } else { "id" };
        // The id is a field of its own in the world; it is copied into a value only when asked for.
        let needs_id =
            filter.iter().any(|c| c.field == id_field) || keys.iter().any(|(f, _)| f == id_field);
        Ok(ODataQuery {
            collection,
            filter,
            keys,
            time_field,
            id_field,
            needs_id,
        })
    }

    /// Ordered by the natural time alone, ascending.
    fn in_natural_order(&self) -> bool {
        matches!(self.keys.as_slice(), [(f, false)] if f == self.time_field && f != self.id_field)
    }

    /// Whether the filter reads a keyset (`gt`/`ge` on the natural time or the id).
    fn is_keyset(&self) -> bool {
        self.filter.iter().any(|c| {
            matches!(c.op.as_str(), "gt" | "ge")
                && (c.field == self.time_field || c.field == "id" || c.field == "_id")
        })
    }

    /// The visible records of the collection that match the filter, in world order, each with
    /// its id as a value when the query reads it. Filter borrowed records, put in order only
    /// those up to the end of the page and copy only the page served: a request costs one cheap
    /// scan of the world (or of one session's calls), not a full sort or a deep copy, so the
    /// simulator stays far cheaper than its clients. With `page_end`, the scan stops at the first
    /// call that starts after the latest of the first `page_end` matching records.
    fn matching_records<'w>(
        &self,
        world: &'w World,
        now: DateTime<Utc>,
        page_end: Option<usize>,
    ) -> Vec<(&'w ODataRecord, Value)> {
        // `sessionId eq '<id>'` can only match records of the calls the world indexes under that id.
        let calls: Box<dyn Iterator<Item = &Call>> =
            match self.filter.iter().find_map(Clause::exact_session_id) {
                Some(session_id) => Box::new(world.calls_with_session(session_id)),
                None => Box::new(world.calls.iter()),
            };
        let mut records: Vec<(&ODataRecord, Value)> = Vec::new();
        // The natural times of the first `page_end` matching records so far (its top: the latest).
        let mut page_times: BinaryHeap<DateTime<Utc>> = BinaryHeap::new();
        for call in calls {
            if let Some(end) = page_end {
                if page_times.len() >= end
                    && page_times.peek().is_some_and(|t| call.started_at > *t)
                {
                    break;
                }
            }
            let Some(session) = call.session.as_ref() else {
                continue;
            };
            // Sessions and Analytics appear when the session is saved; each Conversations record
            // its lag after its own message.
            let conversations = self.collection == Collection::Conversations;
            if !conversations && session.visible_at > now {
                continue;
            }
            let of_collection: &[ODataRecord] = match self.collection {
                Collection::Sessions => std::slice::from_ref(&session.session),
                Collection::Conversations => &session.conversations,
                Collection::Analytics => &session.analytics,
                Collection::Unsimulated => &[],
            };
            for r in of_collection {
                if conversations
                    && r.natural_time
                        .map_or(session.visible_at, |t| t + session.conversation_lag)
                        > now
                {
                    continue;
                }
                let id = if self.needs_id {
                    Value::String(r.id.clone())
                } else {
                    Value::Null
                };
                if !self
                    .filter
                    .iter()
                    .all(|c| c.matches_record(r, &id, self.id_field, self.time_field))
                {
                    continue;
                }
                if let (Some(end), Some(t)) = (page_end, r.natural_time) {
                    page_times.push(t);
                    if page_times.len() > end {
                        page_times.pop();
                    }
                }
                records.push((r, id));
            }
        }
        records
    }

    /// The first `end` of `records` in the query's order, as (sort keys, position in `records`).
    /// Each sort key is read (a timestamp parsed, or the natural time taken as built) once per
    /// record, not once per comparison; the record's world position is the last key, so equal
    /// keys keep world order in either direction, as a stable sort leaves them.
    fn sorted<'r>(
        &self,
        records: &'r [(&ODataRecord, Value)],
        end: usize,
    ) -> Vec<(Vec<SortKey<'r>>, usize)> {
        let mut sorted: Vec<(Vec<SortKey>, usize)> = records
            .iter()
            .enumerate()
            .map(|(i, (r, id))| {
                let k = self
                    .keys
                    .iter()
                    .map(|(f, _)| SortKey::of_record(r, id, self.id_field, self.time_field, f))
                    .collect();
                (k, i)
            })
            .collect();
        keep_first_sorted(&mut sorted, end, |(a, i), (b, j)| {
            for (n, (_, desc)) in self.keys.iter().enumerate() {
                let o = a[n].compare(&b[n]);
                if o != Ordering::Equal {
                    return if *desc { o.reverse() } else { o };
                }
            }
            i.cmp(j)
        });
        sorted
    }
}

/// `$orderby`'s keys, or the collection's natural time order; a direction other than `asc` or
/// `desc` is refused.
fn parse_orderby(req: &ApiRequest, time_field: &str) -> Result<Vec<(String, bool)>, ODataRefusal> {
    let order = req.param("$orderby").unwrap_or(time_field).to_owned();
    let mut keys: Vec<(String, bool)> = Vec::new();
    for part in order.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut words = part.split_whitespace();
        let field = words.next().unwrap_or(time_field).to_owned();
        let desc = match words.next().map(str::to_ascii_lowercase).as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(ODataRefusal::new(
                    StatusCode::BAD_REQUEST,
                    &format!("Invalid $orderby direction '{other}'"),
                ))
            }
        };
        keys.push((field, desc));
    }
    Ok(keys)
}

/// The answer to `/$count`: the number as plain text.
fn count_response(total: usize) -> (Response, PageKind) {
    let mut resp = (StatusCode::OK, total.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    (resp, PageKind::Other)
}

/// Serves `/odata/{version}/{Collection}[/$count]`.
pub fn handle_odata(state: &SimState, req: &ApiRequest) -> (Response, PageKind) {
    let ODataTarget {
        version,
        name,
        collection,
        count_only,
        underscore_id,
    } = match odata_target(state, req) {
        Ok(target) => target,
        Err(refused) => return refused.answer(),
    };
    let query = match ODataQuery::parse(req, collection, name, underscore_id) {
        Ok(query) => query,
        Err(refused) => return refused.answer(),
    };
    let count_wanted = count_only || count_asked(req);
    let top_and_skip = top_and_skip(req);
    let world = state.world_at(req.now);
    // Ordered by the natural time alone, ascending, with no count asked for and a bounded page:
    // the scan can stop at the first call that starts after the page's last record, since no
    // record of that call or a later one is earlier than its call's start (checked by the world).
    let page_end = match &top_and_skip {
        Ok((Some(top), skip))
            if !count_wanted && query.in_natural_order() && world.records_follow_call_starts() =>
        {
            Some(skip.saturating_add(*top))
        }
        _ => None,
    };
    let records = query.matching_records(&world, req.now, page_end);

    // (Every matching record when a count is wanted: a stopped scan is never counted.)
    let total = records.len();
    if count_only {
        return count_response(total);
    }
    let (top, skip) = match top_and_skip {
        Ok(v) => v,
        Err(e) => return odata_error(StatusCode::BAD_REQUEST, &e),
    };
    let sorted = query.sorted(&records, skip.saturating_add(top.unwrap_or(usize::MAX)));
    let mut page: Vec<Map<String, Value>> = sorted
        .iter()
        .skip(skip)
        .take(top.unwrap_or(usize::MAX))
        .map(|(_, i)| with_id(records[*i].0, underscore_id))
        .collect();
    if collection == Collection::Analytics && state.faults().custom_field_unset {
        // The flow never copies the contact id into an Analytics custom field.
        for r in &mut page {
            for (k, v) in r.iter_mut() {
                if k.starts_with("custom") {
                    *v = Value::String(String::new());
                }
            }
        }
    }
    drop(sorted);
    drop(records);
    drop(world);

    if page.is_empty() && query.is_keyset() && state.faults().keyset_end_500 {
        return odata_error(StatusCode::INTERNAL_SERVER_ERROR, "An error has occurred.");
    }
    if let Some(select) = req.param("$select") {
        let fields: Vec<&str> = select.split(',').map(str::trim).collect();
        for r in &mut page {
            r.retain(|k, _| fields.contains(&k.as_str()));
        }
    }
    odata_page_response(state, req, version, name, page, total)
}

/// The OData envelope of a page: its context, its records and, when asked, the count.
fn odata_page_response(
    state: &SimState,
    req: &ApiRequest,
    version: &str,
    name: &str,
    page: Vec<Map<String, Value>>,
    total: usize,
) -> (Response, PageKind) {
    let mut body = json!({
        "@odata.context": format!("{}/odata/{version}/$metadata#{name}", state.base_url),
        "value": page
    });
    if count_asked(req) {
        body["@odata.count"] = json!(total);
    }
    let mut resp = json_response(StatusCode::OK, &body);
    resp.headers_mut()
        .insert("OData-Version", HeaderValue::from_static("4.0"));
    (resp, PageKind::Data)
}

fn with_id(record: &ODataRecord, underscore: bool) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert(
        if underscore { "_id" } else { "id" }.to_owned(),
        Value::String(record.id.clone()),
    );
    for (k, v) in &record.json {
        out.insert(k.clone(), v.clone());
    }
    out
}

fn known_field(collection: Collection, field: &str) -> bool {
    const SESSIONS: &[&str] = &[
        "id",
        "_id",
        "goals",
        "stepPath",
        "stepsCount",
        "handoverEscalations",
        "startedAt",
        "userId",
        "sessionId",
        "localeReferenceId",
        "localeName",
        "endpointReferenceId",
        "endpointName",
        "projectName",
        "projectId",
        "organisationId",
        "snapshotId",
        "snapshotName",
        "endpointUrlToken",
        "rating",
        "ratingComment",
    ];
    const CONVERSATIONS: &[&str] = &[
        "id",
        "_id",
        "projectId",
        "projectName",
        "inputId",
        "sessionId",
        "contactId",
        "organisation",
        "inputText",
        "inputData",
        "type",
        "source",
        "timestamp",
        "flowName",
        "flowParentId",
        "channel",
        "inHandoverRequest",
        "inHandoverConversation",
        "outputId",
        "inputAttachments",
        "reference",
        "localeReferenceId",
        "endpointUrlToken",
        "endpointName",
        "snapshotId",
        "snapshotName",
        "rating",
        "ratingComment",
    ];
    match collection {
        Collection::Sessions => SESSIONS.contains(&field),
        Collection::Conversations => CONVERSATIONS.contains(&field),
        Collection::Analytics => {
            field == "id"
                || field == "_id"
                || (field.starts_with("custom")
                    && field[6..]
                        .parse::<u8>()
                        .is_ok_and(|n| (1..=10).contains(&n)))
                || [
                    "organisation",
                    "projectId",
                    "flowReferenceId",
                    "entrypoint",
                    "ip",
                    "contactId",
                    "sessionId",
                    "inputId",
                    "inputText",
                    "inputData",
                    "state",
                    "mode",
                    "userType",
                    "channel",
                    "flowLanguage",
                    "intent",
                    "intentFlow",
                    "intentScore",
                    "completedGoalsList",
                    "foundSlots",
                    "foundSlotDetails",
                    "understood",
                    "timestamp",
                    "executionTime",
                    "execution",
                    "localeReferenceId",
                    "localeName",
                    "endpointUrlToken",
                    "endpointName",
                    "rating",
                    "ratingComment",
                    "snapshotName",
                ]
                .contains(&field)
        }
        Collection::Unsimulated => true,
    }
}

/// A literal on the right of a `$filter` comparison.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Quoted(String),
    Bare(String),
}

/// One `field op literal` clause of a `$filter`.
#[derive(Debug, Clone, PartialEq)]
struct Clause {
    field: String,
    op: String,
    literal: Literal,
    /// The literal read as a timestamp, parsed once per request rather than once per record.
    literal_time: Option<DateTime<Utc>>,
}

/// Parses `a gt '...' and b eq 1 and c eq true`; only `and` joins are supported.
fn parse_filter(text: &str) -> Result<Vec<Clause>, String> {
    let mut clauses = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (field, after) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("Syntax error in $filter at '{rest}'"))?;
        let after = after.trim_start();
        let (op, after) = after
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("Syntax error in $filter at '{after}'"))?;
        let op = op.to_ascii_lowercase();
        if !matches!(op.as_str(), "eq" | "ne" | "gt" | "ge" | "lt" | "le") {
            return Err(format!("Unsupported operator '{op}' in $filter"));
        }
        let after = after.trim_start();
        let (literal, after) = if let Some(quoted) = after.strip_prefix('\'') {
            // '' escapes a quote inside an OData string literal.
            let mut value = String::new();
            let mut chars = quoted.char_indices().peekable();
            let mut end = None;
            while let Some((i, ch)) = chars.next() {
                if ch == '\'' {
                    if chars.peek().is_some_and(|(_, c)| *c == '\'') {
                        value.push('\'');
                        chars.next();
                        continue;
                    }
                    end = Some(i + 1);
                    break;
                }
                value.push(ch);
            }
            let end = end.ok_or_else(|| "Unterminated string literal in $filter".to_owned())?;
            (Literal::Quoted(value), &quoted[end..])
        } else {
            let (word, after) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
            (Literal::Bare(word.to_owned()), after)
        };
        if field.starts_with('(') || field.contains('(') {
            return Err(format!("Unsupported expression '{field}' in $filter"));
        }
        let literal_time = match &literal {
            Literal::Quoted(t) | Literal::Bare(t) => parse_time(t),
        };
        clauses.push(Clause {
            field: field.to_owned(),
            op,
            literal,
            literal_time,
        });
        let after = after.trim_start();
        if after.is_empty() {
            break;
        }
        let (joiner, next) = after
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("Syntax error in $filter at '{after}'"))?;
        if !joiner.eq_ignore_ascii_case("and") {
            return Err(format!(
                "Unsupported operator '{joiner}' in $filter (only 'and' is supported)"
            ));
        }
        rest = next.trim_start();
    }
    if clauses.is_empty() {
        return Err("Empty $filter".to_owned());
    }
    Ok(clauses)
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

impl Clause {
    /// The session id of a `sessionId eq '<id>'` clause that compares text (not a date literal),
    /// for which only records whose `sessionId` is exactly that string match.
    fn exact_session_id(&self) -> Option<&str> {
        match &self.literal {
            Literal::Quoted(q)
                if self.field == "sessionId" && self.op == "eq" && self.literal_time.is_none() =>
            {
                Some(q)
            }
            _ => None,
        }
    }

    /// Whether `record` matches, its natural time field compared as the instant set when it was
    /// built (the same instant [`Clause::matches`] would parse from its string).
    fn matches_record(
        &self,
        record: &ODataRecord,
        id: &Value,
        id_field: &str,
        time_field: &str,
    ) -> bool {
        if self.field == time_field && self.field != id_field {
            if let (Some(time), Some(literal)) = (record.natural_time, self.literal_time) {
                return self.holds(Some(time.cmp(&literal)));
            }
        }
        self.matches(field_of(record, id, id_field, &self.field))
    }

    fn matches(&self, value: Option<&Value>) -> bool {
        let value = value.unwrap_or(&Value::Null);
        let ordering = match (value, &self.literal) {
            (Value::Null, Literal::Bare(b)) if b == "null" => Some(Ordering::Equal),
            (Value::Null, _) => None,
            (Value::String(s), _) if self.literal_time.is_some() && parse_time(s).is_some() => {
                parse_time(s).zip(self.literal_time).map(|(a, b)| a.cmp(&b))
            }
            (Value::Number(n), Literal::Bare(b)) => n
                .as_f64()
                .zip(b.parse::<f64>().ok())
                .and_then(|(a, b)| a.partial_cmp(&b)),
            (Value::Bool(v), Literal::Bare(b)) => match b.as_str() {
                "true" => Some(v.cmp(&true)),
                "false" => Some(v.cmp(&false)),
                _ => None,
            },
            (Value::String(s), Literal::Quoted(q)) => Some(s.as_str().cmp(q.as_str())),
            _ => None,
        };
        self.holds(ordering)
    }

    /// Whether the operator holds for a value that compares to the literal as `ordering` (`None`:
    /// not comparable).
    fn holds(&self, ordering: Option<Ordering>) -> bool {
        match (ordering, self.op.as_str()) {
            (None, "ne") => true,
            (None, _) => false,
            (Some(o), "eq") => o == Ordering::Equal,
            (Some(o), "ne") => o != Ordering::Equal,
            (Some(o), "gt") => o == Ordering::Greater,
            (Some(o), "ge") => o != Ordering::Less,
            (Some(o), "lt") => o == Ordering::Less,
            (Some(o), "le") => o != Ordering::Greater,
            _ => false,
        }
    }
}

/// A record's field, where the id field is served as `id` or `_id`.
fn field_of<'a>(
    record: &'a ODataRecord,
    id: &'a Value,
    id_field: &str,
    field: &str,
) -> Option<&'a Value> {
    if field == id_field {
        Some(id)
    } else {
        record.json.get(field)
    }
}

/// One `$orderby` key of one record, with a timestamp string parsed once.
struct SortKey<'a> {
    value: Option<&'a Value>,
    time: Option<DateTime<Utc>>,
}

impl<'a> SortKey<'a> {
    /// The key `field` of `record`; its natural time field is taken as parsed when the record was
    /// built (the same instant [`SortKey::of`] parses from its string).
    fn of_record(
        record: &'a ODataRecord,
        id: &'a Value,
        id_field: &str,
        time_field: &str,
        field: &str,
    ) -> SortKey<'a> {
        let value = field_of(record, id, id_field, field);
        if field == time_field && field != id_field && record.natural_time.is_some() {
            return SortKey {
                value,
                time: record.natural_time,
            };
        }
        SortKey::of(value)
    }

    fn of(value: Option<&'a Value>) -> SortKey<'a> {
        let time = match value {
            Some(Value::String(s)) => parse_time(s),
            _ => None,
        };
        SortKey { value, time }
    }

    /// The same order as [`compare_values`] on the raw values.
    fn compare(&self, other: &SortKey<'_>) -> Ordering {
        match (self.time, other.time) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => compare_values(self.value, other.value),
        }
    }
}

fn compare_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::String(x)), Some(Value::String(y))) => match (parse_time(x), parse_time(y)) {
            (Some(p), Some(q)) => p.cmp(&q),
            _ => x.cmp(y),
        },
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (None | Some(Value::Null), None | Some(Value::Null)) => Ordering::Equal,
        (None | Some(Value::Null), _) => Ordering::Less,
        (_, None | Some(Value::Null)) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// Serves `/new/v2.0|v2.1/projects/{projectId}/logs`.
pub fn handle_rest(state: &SimState, req: &ApiRequest) -> (Response, PageKind) {
    let instance = req.path.trim_start_matches("/new");
    let query = match logs_route(state, req).and_then(|()| LogsQuery::parse(state, req)) {
        Ok(query) => query,
        Err(refused) => return refused.answer(instance),
    };
    // Borrowed from the world (held for the request): the page is a range read of the entries
    // the query selects, kept in order by the world's log index; only the page served is copied.
    let mut world = state.world_at(req.now);
    let LogsPage {
        entries: page,
        has_before,
        has_after,
        total,
    } = match query.page(&mut world, req) {
        Ok(page) => page,
        Err(refused) => return refused.answer(instance),
    };
    let next_cursor = if has_after {
        page.last().map(|e| e.id.clone())
    } else {
        None
    };
    let previous_cursor = if has_before {
        page.first().map(|e| e.id.clone())
    } else {
        None
    };
    let items: Vec<Value> = page.iter().map(|e| e.json.clone()).collect();
    logs_page_response(
        state,
        req,
        query.limit,
        items,
        total,
        next_cursor,
        previous_cursor,
    )
}

/// Refuses a request for an unknown route, with another method than GET, without the API key
/// or for another project, in that order.
fn logs_route(state: &SimState, req: &ApiRequest) -> Result<(), RestRefusal> {
    let segments: Vec<&str> = req
        .path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .collect();
    let project = match segments.as_slice() {
        ["new", "v2.0" | "v2.1", "projects", project, "logs"] => *project,
        _ => {
            return Err(RestRefusal::new(
                StatusCode::NOT_FOUND,
                "Route not found",
                1002,
            ))
        }
    };
    if req.method != Method::GET {
        return Err(RestRefusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            405,
        ));
    }
    let key = req.header("x-api-key").or_else(|| req.param("api_key"));
    if key != Some(state.credentials.api_key.as_str()) {
        return Err(RestRefusal::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            401,
        ));
    }
    if project != state.credentials.project_id {
        return Err(RestRefusal::new(
            StatusCode::NOT_FOUND,
            &format!("Project {project} not found"),
            1002,
        ));
    }
    Ok(())
}

/// The `(timestamp, id)` of the entry a logs cursor names.
type CursorKey = (DateTime<Utc>, Box<str>);

/// One logs page: its entries in serving order, whether entries come before and after it, and
/// how many entries the query sees in all.
struct LogsPage<'w> {
    entries: Vec<&'w LogRecord>,
    has_before: bool,
    has_after: bool,
    total: usize,
}

/// What a logs request selects: page size, order, levels, text and start.
struct LogsQuery {
    limit: usize,
    descending: bool,
    /// The `type` values and the `filter` text asked for.
    selector: LogSelector,
    /// The earliest timestamp served: `startDate`, never before the retention.
    since: DateTime<Utc>,
}

impl LogsQuery {
    /// The query's options, or the refusal of the first that is wrong (`limit`, `sort`, a
    /// refused `filter`/`startDate` under the fault, `startDate`).
    fn parse(state: &SimState, req: &ApiRequest) -> Result<LogsQuery, RestRefusal> {
        let limit = match req.param("limit").map(|l| l.trim().parse::<usize>()) {
            None => 25,
            Some(Ok(n)) if n >= 1 => n.min(MAX_LOG_LIMIT),
            Some(_) => {
                return Err(RestRefusal::new(
                    StatusCode::BAD_REQUEST,
                    "limit must be an integer between 1 and 100",
                    1005,
                ))
            }
        };
        let descending = match req
            .param("sort")
            .map(|s| s.replace(' ', "").to_ascii_lowercase())
            .as_deref()
        {
            None | Some("timestamp:desc") | Some("-timestamp") => true,
            Some("timestamp:asc") | Some("timestamp") => false,
            Some(other) => {
                return Err(RestRefusal::new(
                    StatusCode::BAD_REQUEST,
                    &format!("Invalid sort '{other}'"),
                    1005,
                ))
            }
        };
        if state.faults().logs_filter_refused
            && (req.param("filter").is_some() || req.param("startDate").is_some())
        {
            return Err(RestRefusal::new(
                StatusCode::BAD_REQUEST,
                "filter and startDate are not supported",
                1005,
            ));
        }
        let selector = LogSelector::new(&req.params("type"), req.param("filter"));
        let retained = req.now - Duration::hours(LOG_RETENTION_HOURS);
        // `startDate`: entries stamped at or after it (an ISO-8601 date-time).
        let since = match req
            .param("startDate")
            .map(|d| DateTime::parse_from_rfc3339(d.trim()))
        {
            None => retained,
            Some(Ok(d)) => retained.max(d.with_timezone(&Utc)),
            Some(Err(_)) => {
                return Err(RestRefusal::new(
                    StatusCode::BAD_REQUEST,
                    "startDate must be an ISO-8601 date-time",
                    1005,
                ))
            }
        };
        Ok(LogsQuery {
            limit,
            descending,
            selector,
            since,
        })
    }

    /// The page the request's cursor (`next`, `previous`) or `skip` selects among the entries
    /// visible at `now` that the query selects, with whether entries come before and after it and
    /// how many there are in all; refused for a cursor naming no kept entry. Entries are served
    /// in `(timestamp, id)` order (descending: reversed), equal keys in world order (reversed).
    fn page<'w>(
        &self,
        world: &'w mut World,
        req: &ApiRequest,
    ) -> Result<LogsPage<'w>, RestRefusal> {
        let limit = self.limit;
        let cursor = |name: &str| -> Result<Option<CursorKey>, RestRefusal> {
            match req.param(name) {
                None => Ok(None),
                Some(id) => world
                    .log_with_id(id)
                    .map(|l| Some((l.timestamp, l.id.as_str().into())))
                    .ok_or_else(invalid_cursor),
            }
        };
        let next = cursor("next")?;
        let previous = if next.is_none() {
            cursor("previous")?
        } else {
            None
        };
        let (keys, calls) = world.selected_logs(&self.selector);
        // Visible: stamped from `since` to `now`, both included.
        let visible_from = Bound::Included((self.since, Box::<str>::from(""), 0, 0));
        let visible_to: LogKey = (
            req.now + Duration::nanoseconds(1),
            Box::<str>::from(""),
            0,
            0,
        );
        // Keys before every key of the cursor's `(timestamp, id)`, and after every one.
        let below = |k: &CursorKey| -> LogKey { (k.0, k.1.clone(), 0, 0) };
        let above = |k: &CursorKey| -> LogKey { (k.0, k.1.clone(), usize::MAX, usize::MAX) };
        let entries = |from: Bound<LogKey>, to: LogKey, descending: bool| {
            let range = key_range(keys, from, to).filter_map(|k| log_index::entry(calls, k));
            let ordered: Box<dyn Iterator<Item = &'w LogRecord>> = if descending {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
            ordered
        };
        let total = entries(visible_from.clone(), visible_to.clone(), false).count();
        let (from, to) = match (&next, &previous, self.descending) {
            // After `next` descending, or before `previous` ascending: older than the cursor.
            (Some(k), _, true) | (None, Some(k), false) => (visible_from, visible_to.min(below(k))),
            // After `next` ascending, or before `previous` descending: newer than the cursor.
            (Some(k), _, false) | (None, Some(k), true) => (
                later_lower_bound(visible_from, Bound::Excluded(above(k))),
                visible_to,
            ),
            (None, None, _) => (visible_from, visible_to),
        };
        if previous.is_some() {
            // The last `limit` before the cursor: the nearest ones, turned back.
            let mut page: Vec<&LogRecord> = entries(from, to, !self.descending)
                .take(limit + 1)
                .collect();
            let start = page.len() > limit;
            page.truncate(limit);
            page.reverse();
            Ok(LogsPage {
                entries: page,
                has_before: start,
                has_after: true,
                total,
            })
        } else {
            let skip = if next.is_some() {
                0
            } else {
                req.param("skip")
                    .and_then(|s| s.parse::<usize>().ok())
                    .unwrap_or(0)
            };
            let mut page: Vec<&LogRecord> = entries(from, to, self.descending)
                .skip(skip)
                .take(limit + 1)
                .collect();
            let more = page.len() > limit;
            page.truncate(limit);
            Ok(LogsPage {
                entries: page,
                has_before: next.is_some() || skip > 0,
                has_after: more,
                total,
            })
        }
    }
}

/// The keys from `from` to `to` (excluded), none when that range is empty.
fn key_range(
    keys: &BTreeSet<LogKey>,
    from: Bound<LogKey>,
    to: LogKey,
) -> impl DoubleEndedIterator<Item = &LogKey> {
    let empty = match &from {
        Bound::Included(f) => *f > to,
        Bound::Excluded(f) => *f >= to,
        Bound::Unbounded => false,
    };
    // `BTreeSet::range` panics on a range that ends before it starts.
    (!empty)
        .then(|| keys.range((from, Bound::Excluded(to))))
        .into_iter()
        .flatten()
}

/// The later of two lower bounds (the excluded one when both name the same key).
fn later_lower_bound(a: Bound<LogKey>, b: Bound<LogKey>) -> Bound<LogKey> {
    let key = |bound: &Bound<LogKey>| match bound {
        Bound::Included(k) | Bound::Excluded(k) => Some(k.clone()),
        Bound::Unbounded => None,
    };
    match key(&a).cmp(&key(&b)) {
        Ordering::Greater => a,
        Ordering::Less => b,
        Ordering::Equal if matches!(a, Bound::Excluded(_)) => a,
        Ordering::Equal => b,
    }
}

fn invalid_cursor() -> RestRefusal {
    RestRefusal::new(StatusCode::BAD_REQUEST, "Invalid cursor", 1005)
}

/// A logs page as HAL (asked for, or no Accept header) or as plain JSON, with its cursors.
fn logs_page_response(
    state: &SimState,
    req: &ApiRequest,
    limit: usize,
    items: Vec<Value>,
    total: usize,
    next_cursor: Option<String>,
    previous_cursor: Option<String>,
) -> (Response, PageKind) {
    let accept = req.header("accept").unwrap_or("").to_ascii_lowercase();
    // A real poller that sent no Accept header got HAL (api/cognigy.md §1.3).
    let hal = accept.contains("application/hal+json") || accept.is_empty();
    let body = if hal {
        let link = |param: &str, c: &Option<String>| match c {
            Some(c) => {
                json!({"href": format!("{}{}?limit={limit}&{param}={c}", state.base_url, req.path)})
            }
            None => Value::Null,
        };
        json!({
            "_embedded": { "logEntry": items },
            "_links": {
                "self": {"href": format!("{}{}?{}", state.base_url, req.path, req.raw_query)},
                "next": link("next", &next_cursor),
                "previous": link("previous", &previous_cursor)
            },
            "total": total
        })
    } else {
        json!({ "items": items, "total": total, "nextCursor": next_cursor, "previousCursor": previous_cursor })
    };
    let mut resp = json_response(StatusCode::OK, &body);
    if hal {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/hal+json; charset=utf-8"),
        );
    }
    (resp, PageKind::Data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delay distribution parses from flag text, draws only values it allows, in about the
    /// weights given, the same for the same call; nonsense is refused with the reason.
    #[test]
    fn cognigy_delay_parses_and_samples() {
        let d: CognigyDelay = "0.8:60, 0.2:1800-1900".parse().expect("parses");
        assert_eq!(d.longest(), Duration::seconds(1900));
        let draws: Vec<i64> = (0..1000).map(|i| d.sample(7, i).num_seconds()).collect();
        assert!(draws.iter().all(|s| *s == 60 || (1800..=1900).contains(s)));
        let late = draws.iter().filter(|s| **s >= 1800).count();
        assert!((120..=280).contains(&late), "{late} of 1000 late");
        assert_eq!(d.sample(7, 3), d.sample(7, 3));
        for bad in ["", "60", "x:60", "0:60", "1:60-30", "1:1.5"] {
            assert!(bad.parse::<CognigyDelay>().is_err(), "{bad}");
        }
    }

    /// Quoted and bare date literals, `and` joins and `''` escapes parse; `or` is refused.
    #[test]
    fn filter_parses_quoted_bare_and_joined_clauses() {
        let f = parse_filter("timestamp gt '2026-03-20T09:00:00.000Z' and sessionId eq 'a''b' and inHandoverRequest eq true")
            .expect("parses");
        assert_eq!(f.len(), 3);
        assert_eq!(
            f[0].literal,
            Literal::Quoted("2026-03-20T09:00:00.000Z".into())
        );
        assert_eq!(f[1].literal, Literal::Quoted("a'b".into()));
        assert_eq!(f[2].literal, Literal::Bare("true".into()));
        let bare = parse_filter("startedAt ge 2026-03-20T09:00:00Z").expect("parses");
        assert_eq!(bare[0].op, "ge");
        assert!(parse_filter("a eq 1 or b eq 2").is_err());
        assert!(parse_filter("a like 1").is_err());
        assert!(parse_filter("a eq 'open").is_err());
    }

    /// Date comparison is by instant, not by text, for both literal forms.
    #[test]
    fn filter_compares_times_as_instants() {
        let record: Map<String, Value> =
            serde_json::from_value(json!({"timestamp": "2026-03-20T09:00:01.000Z", "n": 5}))
                .expect("object");
        let yes = parse_filter("timestamp gt 2026-03-20T10:00:00+02:00").expect("parses");
        let field = |c: &Clause| record.get(&c.field);
        assert!(yes[0].matches(field(&yes[0])));
        let no = parse_filter("timestamp gt '2026-03-20T09:00:01Z'").expect("parses");
        assert!(!no[0].matches(field(&no[0])));
        let ge = parse_filter("timestamp ge '2026-03-20T09:00:01Z' and n lt 6").expect("parses");
        assert!(ge.iter().all(|c| c.matches(field(c))));
    }

    fn odata_ids(state: &SimState, collection: &str, query: &str) -> Vec<String> {
        let req = get_request(
            format!("/odata/v2.4/{collection}"),
            format!("apikey=sim-api-key&{query}"),
            axum::http::HeaderMap::new(),
            Utc::now(),
        );
        let (response, _) = handle_odata(state, &req);
        assert_eq!(response.status(), StatusCode::OK, "{query}");
        body_json(response)["value"]
            .as_array()
            .expect("value")
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_owned())
            .collect()
    }

    /// OData pages (several `$top`/`$skip`, both directions, heavily tied keys, the natural time
    /// filter and the `sessionId` lookup) hold exactly the records, in exactly the order, of a full
    /// stable sort of a scan of the world, as the simulator served them before partial selection.
    #[test]
    fn odata_pages_equal_a_full_stable_sort_of_a_scan() {
        use crate::world::{World, WorldSpec};
        let now = Utc::now();
        let world = World::new(WorldSpec::finite(
            11,
            300,
            // Dense (a call every 2 s), so calls overlap and records interleave across calls.
            Duration::minutes(10),
            Duration::seconds(60),
            now,
        ));
        let conversations: Vec<ODataRecord> = world
            .calls
            .iter()
            .filter_map(|c| c.session.clone())
            .flat_map(|s| s.conversations)
            .collect();
        let session_id = world
            .calls
            .iter()
            .find_map(|c| c.session.as_ref().filter(|s| s.conversations.len() > 3))
            .map(|s| s.session_id.clone())
            .expect("a session with conversations");
        let middle = conversations[conversations.len() / 2]
            .json
            .get("timestamp")
            .and_then(Value::as_str)
            .expect("timestamp")
            .to_owned();
        let state = SimState::new(
            "http://sim".into(),
            world,
            super::super::Faults::default(),
            super::super::SimCredentials::default(),
        );
        let text = |r: &ODataRecord, f: &str| r.json[f].as_str().unwrap_or("").to_owned();
        let time = |r: &ODataRecord| parse_time(&text(r, "timestamp"));
        // The page `query` serves is `top` records of `expected` from `skip` on.
        let assert_page = |query: &str, expected: &[&ODataRecord], top: usize, skip: usize| {
            let want: Vec<String> = expected
                .iter()
                .skip(skip)
                .take(top)
                .map(|r| r.id.clone())
                .collect();
            assert_eq!(odata_ids(&state, "Conversations", query), want, "{query}");
        };
        for descending in [false, true] {
            // `type` has two values: almost every comparison is a tie, broken by world order.
            let mut expected: Vec<&ODataRecord> = conversations.iter().collect();
            expected.sort_by(|a, b| {
                let o = text(a, "type").cmp(&text(b, "type"));
                if descending {
                    o.reverse()
                } else {
                    o
                }
            });
            let direction = if descending { "desc" } else { "asc" };
            for (top, skip) in [
                (1, 0),
                (25, 0),
                (25, 40),
                (500, 3),
                (100_000, 0),
                (7, 100_000),
            ] {
                let query = format!("$orderby=type {direction}&$top={top}&$skip={skip}");
                assert_page(&query, &expected, top, skip);
            }
            // The natural time as filter and key, ties (same millisecond) in world order.
            let mut expected: Vec<&ODataRecord> = conversations
                .iter()
                .filter(|r| time(r) > parse_time(&middle))
                .collect();
            expected.sort_by(|a, b| {
                let o = time(a).cmp(&time(b));
                if descending {
                    o.reverse()
                } else {
                    o
                }
            });
            // Ascending with `$top`, the scan stops early; these pages prove it stops late enough.
            for (top, skip) in [(1, 0), (30, 5), (500, 100), (100_000, 0)] {
                let query = format!(
                    "$filter=timestamp gt '{middle}'&$orderby=timestamp {direction}&$top={top}&$skip={skip}"
                );
                assert_page(&query, &expected, top, skip);
            }
        }
        assert!(state.world_at(now).records_follow_call_starts());
        // The session lookup finds exactly what a scan finds.
        let want: Vec<String> = conversations
            .iter()
            .filter(|r| text(r, "sessionId") == session_id)
            .map(|r| r.id.clone())
            .collect();
        let ids = odata_ids(
            &state,
            "Conversations",
            &format!("$filter=sessionId eq '{session_id}'&$orderby=timestamp asc"),
        );
        assert_eq!(ids, want);
        let ids = odata_ids(
            &state,
            "Conversations",
            &format!("$filter=sessionId eq '{session_id}'&$orderby=timestamp asc&$top=2&$skip=1"),
        );
        assert_eq!(ids, want[1..3].to_vec());
        assert!(odata_ids(&state, "Conversations", "$filter=sessionId eq 'nobody'").is_empty());
    }

    /// One logs request's JSON answer (plain JSON: `items`, `total`, the cursors).
    fn logs_page(state: &SimState, query: &str, now: DateTime<Utc>) -> Value {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("sim-api-key"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let req = get_request(
            format!("/new/v2.0/projects/{}/logs", crate::world::PROJECT_ID),
            query.to_owned(),
            headers,
            now,
        );
        let (response, _) = handle_rest(state, &req);
        assert_eq!(response.status(), StatusCode::OK, "{query}");
        body_json(response)
    }

    /// A GET of `path?raw_query` with `headers`, received at `now`.
    fn get_request(
        path: String,
        raw_query: String,
        headers: axum::http::HeaderMap,
        now: DateTime<Utc>,
    ) -> ApiRequest {
        ApiRequest {
            method: Method::GET,
            path,
            query: super::super::parse_query(&raw_query),
            raw_query,
            headers,
            body: axum::body::Bytes::new(),
            now,
        }
    }

    /// A response's body as JSON.
    fn body_json(response: Response) -> Value {
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .expect("body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    fn item_ids(page: &Value) -> Vec<String> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| e["_id"].as_str().expect("_id").to_owned())
            .collect()
    }

    /// Logs pages (both orders, `filter`, `type`, `startDate`, `skip`, `next` and `previous`
    /// cursors) hold exactly the entries, in exactly the order, of a search of every entry visible
    /// at the request's time sorted by (timestamp, id, world position), and `total` counts them.
    #[test]
    fn logs_pages_equal_a_sorted_search_of_every_entry() {
        use crate::world::{World, WorldSpec};
        let now = Utc::now();
        let world = World::new(WorldSpec::finite(
            13,
            200,
            Duration::minutes(10),
            Duration::seconds(60),
            now,
        ));
        let all: Vec<(usize, LogRecord)> = world
            .calls
            .iter()
            .flat_map(|c| c.logs.iter().cloned())
            .enumerate()
            .collect();
        let state = SimState::new(
            "http://sim".into(),
            world,
            super::super::Faults::default(),
            super::super::SimCredentials::default(),
        );
        let times: Vec<DateTime<Utc>> = {
            let mut t: Vec<DateTime<Utc>> = all.iter().map(|(_, l)| l.timestamp).collect();
            t.sort();
            t
        };
        // Asked at a time in the middle of the entries: later ones are not visible yet.
        let asked_at = times[times.len() * 2 / 3];
        let start = times[times.len() / 4];
        let selectors = [
            ("", None, None),
            ("&filter=HANDOVERtoCXone", None, None),
            ("&type=error", None, None),
            ("&type=info&filter=handover", None, Some(start)),
            ("&filter=nothing-matches-this", None, None),
            ("", Some("info"), Some(start)),
        ];
        for (params, level, since) in selectors {
            let text = params
                .split('&')
                .find_map(|p| p.strip_prefix("filter="))
                .map(str::to_ascii_lowercase);
            let level = level.or_else(|| params.split('&').find_map(|p| p.strip_prefix("type=")));
            let level_param = if params.contains("type=") {
                String::new()
            } else {
                level.map_or(String::new(), |l| format!("&type={l}"))
            };
            let since_param = since.map_or(String::new(), |t| {
                format!(
                    "&startDate={}",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                )
            });
            for descending in [false, true] {
                let mut want: Vec<&(usize, LogRecord)> = all
                    .iter()
                    .filter(|(_, l)| l.timestamp <= asked_at)
                    .filter(|(_, l)| since.map_or(true, |s| l.timestamp >= s))
                    .filter(|(_, l)| level.map_or(true, |v| l.level == v))
                    .filter(|(_, l)| {
                        text.as_deref().map_or(true, |f| {
                            l.json["msg"]
                                .as_str()
                                .unwrap_or("")
                                .to_ascii_lowercase()
                                .contains(f)
                                || l.json["traceId"]
                                    .as_str()
                                    .unwrap_or("")
                                    .to_ascii_lowercase()
                                    .contains(f)
                                || l.level.contains(f)
                        })
                    })
                    .collect();
                want.sort_by(|(i, a), (j, b)| {
                    let o = (a.timestamp, &a.id, i).cmp(&(b.timestamp, &b.id, j));
                    if descending {
                        o.reverse()
                    } else {
                        o
                    }
                });
                let want: Vec<String> = want.iter().map(|(_, l)| l.id.clone()).collect();
                assert_eq!(want.is_empty(), params.contains("nothing"), "{params}");
                let sort = if descending {
                    "timestamp:desc"
                } else {
                    "timestamp:asc"
                };
                let base = format!("sort={sort}{params}{level_param}{since_param}");
                // Every page, following `next`.
                let mut got: Vec<String> = Vec::new();
                let mut pages: Vec<Value> = Vec::new();
                let mut query = format!("{base}&limit=7");
                loop {
                    let page = logs_page(&state, &query, asked_at);
                    assert_eq!(page["total"], json!(want.len()), "{query}");
                    got.extend(item_ids(&page));
                    pages.push(page.clone());
                    match page["nextCursor"].as_str() {
                        Some(c) => query = format!("{base}&limit=7&next={c}"),
                        None => break,
                    }
                    assert!(pages.len() <= want.len() / 7 + 2, "{query}: too many pages");
                }
                assert_eq!(got, want, "{base}");
                // `previous` from each page serves the page before it.
                for pair in pages.windows(2) {
                    let c = pair[1]["previousCursor"].as_str().expect("previousCursor");
                    let back = logs_page(&state, &format!("{base}&limit=7&previous={c}"), asked_at);
                    assert_eq!(item_ids(&back), item_ids(&pair[0]), "{base} previous={c}");
                }
                assert!(pages[0]["previousCursor"].is_null(), "{base}");
                // `skip` serves the same slice.
                for skip in [0, 5, want.len().saturating_sub(3), want.len() + 4] {
                    let page = logs_page(&state, &format!("{base}&limit=9&skip={skip}"), asked_at);
                    let slice: Vec<String> = want.iter().skip(skip).take(9).cloned().collect();
                    assert_eq!(item_ids(&page), slice, "{base} skip={skip}");
                    assert_eq!(page["nextCursor"].is_string(), want.len() > skip + 9);
                }
            }
        }
    }
}
