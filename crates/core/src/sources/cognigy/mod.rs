//! Cognigy.AI: the OData and REST log client (see `wire` for the types it reads).
//!
//! [`CognigyClient`] reads the OData v2.4 `Sessions`, `Conversations` and `Analytics` collections
//! with keyset paging (`$filter=<field> gt '<t>'`, `$orderby` asc, `$top`; the `apikey` query
//! parameter; `$` names sent literally), and the REST project logs newest first with cursor paging
//! (`X-API-Key`, `Accept: application/json`), as api/cognigy.md §1.2-1.5 and §2 document them.
//!
//! `$select`: OData pages ask only for the fields the wire types read (a third of the bytes of a
//! whole Conversations or Sessions record, a seventh of an Analytics one). The record id is `id`
//! in v2.4 and `_id` before (api/cognigy.md §2.4); which one a v2.4 server really sends, and how
//! a server answers a selection it cannot serve (400, 500, 501), is unverified. So, per
//! collection: until a selected page has brought records with ids, an HTTP error answer to a
//! selected page is asked again without `$select`, and if that succeeds the collection is read
//! whole from then on; selected records without an id are asked for again whole, likewise.
//!
//! Keyset ties: after the first page, the next page asks for `ge <last timestamp>` and skips the
//! records at that timestamp it already has (`$skip`), and every record is also de-duplicated by
//! id, so records sharing the boundary timestamp are neither lost nor repeated, even when a whole
//! page shares one timestamp. When `max_pages` cuts a batch, its trailing records that share the
//! last timestamp are held back (and `newest` stays before them) so that the caller's next
//! `gt newest` read returns them whole.
//!
//! Logs `filter`: the pipeline reads only the handover node's lines, asking the server to filter
//! on a term (`filter`, which matches an entry's type, message or trace id) and for entries since
//! the lower bound (`startDate`), as Cognigy's API reference documents them (unverified in
//! detail). Until a filtered page has been answered, an HTTP error answer to one is asked again
//! without `filter` and `startDate`; if that succeeds, the logs are read unfiltered from then on
//! (the patterns still pick the lines), as with `$select`.
//!
//! It builds requests and parses bodies only: timeouts, retries, rate limits and accounting
//! belong to the shared [`HttpLayer`]. It does not correlate or judge sessions.

pub mod wire;

use crate::config::{CognigyConfig, DateLiteral};
use crate::sources::http::{
    percent_decode, query_string, BudgetHandle, Endpoint, HttpLayer, HttpRequest, RequestObserver,
    Source, SourceError,
};
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::HeaderName;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use wire::{Analytics, Conversation, LogEntry, ODataPage, Session};

/// The result of reading one collection since a watermark.
#[derive(Debug, Clone)]
pub struct Batch<T> {
    /// OData: oldest first. Logs: newest first.
    pub records: Vec<T>,
    /// The newest timestamp among `records` (the caller's next watermark).
    pub newest: Option<DateTime<Utc>>,
    /// Requests that returned a page (including an empty one).
    pub pages: u32,
    /// `max_pages` was reached while more data may follow.
    pub truncated: bool,
    /// The read ended on Cognigy's HTTP 500 under a keyset filter, taken as end of data.
    pub ended_on_500: bool,
    /// Logs only: where a truncated read stopped; pass it back to continue the same pass.
    pub resume_cursor: Option<String>,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Batch {
            records: Vec::new(),
            newest: None,
            pages: 0,
            truncated: false,
            ended_on_500: false,
            resume_cursor: None,
        }
    }
}

/// Where a keyset read of one OData collection continues: the records after `after`, less the
/// `tied` records stamped exactly `after` that were already read (`ge after` with `$skip=tied`
/// when `tied` > 0, `gt after` otherwise). Records never move in a keyset (their time is fixed),
/// so the tie count stays valid across pages and cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeysetPosition {
    pub after: DateTime<Utc>,
    #[serde(default)]
    pub tied: u64,
}

impl KeysetPosition {
    /// The records strictly after `after`.
    pub fn after(after: DateTime<Utc>) -> KeysetPosition {
        KeysetPosition { after, tied: 0 }
    }

    /// The position after reading records stamped `times`, in the order served (ascending).
    /// A time before the position (a server that does not keep the order) moves nothing.
    pub fn advanced(self, times: impl IntoIterator<Item = DateTime<Utc>>) -> KeysetPosition {
        let mut p = self;
        for t in times {
            if t > p.after {
                p.after = t;
                p.tied = 1;
            } else if t == p.after {
                p.tied += 1;
            }
        }
        p
    }
}

/// One page of an OData keyset read.
#[derive(Debug, Clone)]
pub struct KeysetPage<T> {
    /// Oldest first.
    pub records: Vec<T>,
    /// Where the next page starts.
    pub next: KeysetPosition,
    /// The page was short (or the server ended the keyset with a 500, see `ended_on_500`): this
    /// is the end of the data for now.
    pub end: bool,
    /// The read ended on Cognigy's HTTP 500 under a keyset filter, taken as end of data.
    pub ended_on_500: bool,
}

/// One page of a newest-first project log read.
#[derive(Debug, Clone, Default)]
pub struct LogsPage {
    /// The entries stamped at or after the read's lower bound, newest first.
    pub entries: Vec<LogEntry>,
    /// The server's cursor of the next (older) page; `None` at the end of the pass (no more
    /// pages, or this page reached the lower bound).
    pub next: Option<String>,
}

/// An OData record that can be paged by a timestamp keyset.
pub trait KeysetRecord: DeserializeOwned {
    /// The record's keyset timestamp (`startedAt` or `timestamp`).
    fn keyset_time(&self) -> DateTime<Utc>;
    /// The record's own id field (`id`/`_id`), if it has one.
    fn own_id(&self) -> Option<&str>;
    /// A unique id for de-duplication, if the record has one.
    fn record_id(&self) -> Option<&str> {
        self.own_id()
    }
}

impl KeysetRecord for Session {
    fn keyset_time(&self) -> DateTime<Utc> {
        self.started_at
    }
    fn own_id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    fn record_id(&self) -> Option<&str> {
        // A session is one record per `sessionId`, so that is an id too.
        self.own_id()
            .or(Some(self.session_id.as_str()).filter(|s| !s.is_empty()))
    }
}

impl KeysetRecord for Conversation {
    fn keyset_time(&self) -> DateTime<Utc> {
        self.timestamp
    }
    fn own_id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

impl KeysetRecord for Analytics {
    fn keyset_time(&self) -> DateTime<Utc> {
        self.timestamp
    }
    fn own_id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

/// One OData collection with its keyset field.
#[derive(Debug, Clone, Copy)]
struct Collection {
    /// Position in [`CognigyClient`]'s per-collection `$select` state.
    index: usize,
    name: &'static str,
    field: &'static str,
    endpoint: Endpoint,
    /// The fields the wire type reads, but the id (`$select`).
    fields: &'static str,
}

const SESSIONS: Collection = Collection {
    index: 0,
    name: "Sessions",
    field: "startedAt",
    endpoint: Endpoint::CognigySessions,
    fields: "sessionId,startedAt,userId,handoverEscalations,projectId,endpointName",
};
const CONVERSATIONS: Collection = Collection {
    index: 1,
    name: "Conversations",
    field: "timestamp",
    endpoint: Endpoint::CognigyConversations,
    fields: "sessionId,timestamp,type,source,channel,inHandoverRequest,inHandoverConversation,\
             inputData,inputText",
};
const ANALYTICS: Collection = Collection {
    index: 2,
    name: "Analytics",
    field: "timestamp",
    endpoint: Endpoint::CognigyAnalytics,
    fields: "sessionId,timestamp,executionTime,custom1,custom2,custom3,custom4,custom5,custom6,\
             custom7,custom8,custom9,custom10",
};

/// `$select` is sent, but no selected page has brought records with ids yet.
const SELECT_UNCONFIRMED: u8 = 0;
/// A selected page has brought records with ids: errors are errors.
const SELECT_CONFIRMED: u8 = 1;
/// Whole records are read (configured so, or the server could not serve the selection).
const SELECT_OFF: u8 = 2;

/// The Cognigy OData and REST log client of one tenant.
pub struct CognigyClient {
    http: HttpLayer,
    config: CognigyConfig,
    keyset_500_ends: AtomicU64,
    /// Per collection (`Collection::index`): what is known of its `$select` support.
    select: [AtomicU8; 3],
    /// The record id field to select, fixed by the configured OData version.
    id_field: &'static str,
    /// What is known of the logs API's `filter`/`startDate` support.
    logs_filter: AtomicU8,
}

impl std::fmt::Debug for CognigyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CognigyClient")
            .field("odata_base_url", &self.config.odata_base_url)
            .field("api_base_url", &self.config.api_base_url)
            .field("project_id", &self.config.project_id)
            .finish_non_exhaustive()
    }
}

impl CognigyClient {
    /// A client for one tenant with a request budget of its own; no request is made until the
    /// first call.
    pub fn new(
        config: &CognigyConfig,
        observer: Arc<dyn RequestObserver>,
    ) -> Result<CognigyClient, SourceError> {
        let budget = BudgetHandle::private(Source::Cognigy, "", &config.http);
        CognigyClient::with_budget(config, observer, budget)
    }

    /// A client for one tenant drawing on `budget` (its API host's, shared with other tenants;
    /// OData and the logs API count against the same one).
    pub fn with_budget(
        config: &CognigyConfig,
        observer: Arc<dyn RequestObserver>,
        budget: BudgetHandle,
    ) -> Result<CognigyClient, SourceError> {
        Ok(CognigyClient {
            http: HttpLayer::with_budget(Source::Cognigy, &config.http, observer, budget)?,
            config: config.clone(),
            keyset_500_ends: AtomicU64::new(0),
            id_field: id_field(&config.odata_base_url),
            logs_filter: AtomicU8::new(SELECT_UNCONFIRMED),
            select: std::array::from_fn(|_| {
                AtomicU8::new(if config.odata_select {
                    SELECT_UNCONFIRMED
                } else {
                    SELECT_OFF
                })
            }),
        })
    }

    /// How many keyset reads have ended on an HTTP 500 taken as end of data.
    pub fn keyset_500_ends(&self) -> u64 {
        self.keyset_500_ends.load(Ordering::Relaxed)
    }

    /// Sessions that started after `after`, oldest first.
    pub async fn sessions_since(
        &self,
        after: DateTime<Utc>,
        max_pages: u32,
    ) -> Result<Batch<Session>, SourceError> {
        self.keyset(SESSIONS, after, max_pages).await
    }

    /// Conversations records stamped after `after`, oldest first.
    pub async fn conversations_since(
        &self,
        after: DateTime<Utc>,
        max_pages: u32,
    ) -> Result<Batch<Conversation>, SourceError> {
        self.keyset(CONVERSATIONS, after, max_pages).await
    }

    /// Analytics records stamped after `after`, oldest first.
    pub async fn analytics_since(
        &self,
        after: DateTime<Utc>,
        max_pages: u32,
    ) -> Result<Batch<Analytics>, SourceError> {
        self.keyset(ANALYTICS, after, max_pages).await
    }

    /// One page of `Sessions` from `position`, oldest first.
    pub async fn sessions_page(
        &self,
        position: KeysetPosition,
    ) -> Result<KeysetPage<Session>, SourceError> {
        self.keyset_page(SESSIONS, position).await
    }

    /// One page of `Conversations` from `position`, oldest first.
    pub async fn conversations_page(
        &self,
        position: KeysetPosition,
    ) -> Result<KeysetPage<Conversation>, SourceError> {
        self.keyset_page(CONVERSATIONS, position).await
    }

    /// One page of `Analytics` from `position`, oldest first.
    pub async fn analytics_page(
        &self,
        position: KeysetPosition,
    ) -> Result<KeysetPage<Analytics>, SourceError> {
        self.keyset_page(ANALYTICS, position).await
    }

    /// Every `Conversations` record of one session, oldest first (the per-contact strategy the
    /// catch-up bench compares the daemon with).
    pub async fn conversations_for_session(
        &self,
        session_id: &str,
    ) -> Result<Batch<Conversation>, SourceError> {
        self.by_session(CONVERSATIONS, session_id, self.config.max_pages)
            .await
    }

    /// Project log entries (levels `error` and `info`) stamped at or after `after`, newest
    /// first. Entries at exactly `after` are returned again (de-duplicate by `_id`): losing a
    /// handover line is worse than reading it twice. When `truncated`, entries between `after`
    /// and the oldest returned one were not read.
    pub async fn logs_since(
        &self,
        after: DateTime<Utc>,
        max_pages: u32,
    ) -> Result<Batch<LogEntry>, SourceError> {
        self.logs_since_resuming(after, None, max_pages).await
    }

    /// [`CognigyClient::logs_since`], continuing a truncated pass from its `resume_cursor`
    /// (the pages newer than that were read by the earlier part of the pass).
    pub async fn logs_since_resuming(
        &self,
        after: DateTime<Utc>,
        resume: Option<&str>,
        max_pages: u32,
    ) -> Result<Batch<LogEntry>, SourceError> {
        let max_pages = max_pages.max(1);
        let mut batch = Batch::default();
        let mut cursor: Option<String> = resume.map(str::to_owned);
        let mut seen_cursors = HashSet::new();
        loop {
            let page = self.logs_page(after, cursor.as_deref(), None).await?;
            batch.pages += 1;
            for entry in page.entries {
                batch.newest = batch.newest.max(Some(entry.timestamp));
                batch.records.push(entry);
            }
            let Some(next) = page.next else { break };
            if !seen_cursors.insert(next.clone()) {
                return Err(SourceError::PageCap {
                    endpoint: Endpoint::CognigyLogs,
                    message: "the server returned a cursor it had already returned".to_owned(),
                });
            }
            if batch.pages >= max_pages {
                batch.truncated = true;
                batch.resume_cursor = Some(next);
                break;
            }
            cursor = Some(next);
        }
        Ok(batch)
    }

    /// Per OData collection (`Sessions`, `Conversations`, `Analytics`): whether its pages are
    /// still read with `$select` (false when configured off or once the server could not serve
    /// the selection).
    pub fn odata_select_on(&self) -> [(&'static str, bool); 3] {
        [SESSIONS, CONVERSATIONS, ANALYTICS].map(|c| {
            (
                c.name,
                self.select[c.index].load(Ordering::Relaxed) != SELECT_OFF,
            )
        })
    }

    /// Whether the logs are read with the server's `filter` (false once a server refused it).
    pub fn logs_filter_on(&self) -> bool {
        self.logs_filter.load(Ordering::Relaxed) != SELECT_OFF
    }

    /// One page of project log entries (levels `error` and `info`), newest first, from the
    /// server's `cursor` (the newest entries when `None`): the entries stamped at or after
    /// `after`, and the cursor of the next page unless this one reached `after` or was the last.
    /// With `filter`, only the entries whose type, message or trace id contain it are asked for
    /// (see the module doc for the fallback when a server refuses it).
    pub async fn logs_page(
        &self,
        after: DateTime<Utc>,
        cursor: Option<&str>,
        filter: Option<&str>,
    ) -> Result<LogsPage, SourceError> {
        let state = self.logs_filter.load(Ordering::Relaxed);
        let Some(term) = filter.filter(|_| state != SELECT_OFF) else {
            return self.logs_request(after, cursor, None).await;
        };
        match self.logs_request(after, cursor, Some(term)).await {
            Ok(page) => {
                self.logs_filter.store(SELECT_CONFIRMED, Ordering::Relaxed);
                Ok(page)
            }
            Err(e @ SourceError::HttpStatus { .. }) if state == SELECT_UNCONFIRMED => {
                let page = self.logs_request(after, cursor, None).await?;
                if self.logs_filter.swap(SELECT_OFF, Ordering::Relaxed) != SELECT_OFF {
                    tracing::warn!(
                        endpoint = %Endpoint::CognigyLogs,
                        "Cognigy logs filter stopped: the server answered a filtered page with: {e}; every line is read from now on"
                    );
                }
                Ok(page)
            }
            Err(e) => Err(e),
        }
    }

    /// One request of [`CognigyClient::logs_page`].
    async fn logs_request(
        &self,
        after: DateTime<Utc>,
        cursor: Option<&str>,
        filter: Option<&str>,
    ) -> Result<LogsPage, SourceError> {
        let base = format!(
            "{}/new/v2.0/projects/{}/logs",
            self.config.api_base_url.trim_end_matches('/'),
            crate::sources::http::percent_encode(&self.config.project_id)
        );
        let mut params = vec![
            (
                "limit",
                self.config.logs_page_size.clamp(1, 100).to_string(),
            ),
            ("sort", "timestamp:desc".to_owned()),
            ("type", "error".to_owned()),
            ("type", "info".to_owned()),
            ("type", "warn".to_owned()),
        ];
        if let Some(term) = filter {
            params.push(("filter", term.to_owned()));
            params.push((
                "startDate",
                after.to_rfc3339_opts(SecondsFormat::Millis, true),
            ));
        }
        if let Some(next) = cursor {
            params.push(("next", next.to_owned()));
        }
        let request = HttpRequest::get(
            Endpoint::CognigyLogs,
            format!("{base}?{}", query_string(&params)),
        )
        .accept_json()
        .secret_header(HeaderName::from_static("x-api-key"), &self.config.api_key);
        let response = self.http.send(&request).await?;
        let page = response.parse_with(wire::parse_log_page)?;
        let mut out = LogsPage::default();
        let mut reached_after = false;
        for entry in page.items {
            if entry.timestamp < after {
                reached_after = true;
                continue;
            }
            out.entries.push(entry);
        }
        let next = match page.next_cursor.map(|c| cursor_value(&c)) {
            Some(Ok(next)) => next,
            Some(Err(message)) => return Err(response.decode_error(message)),
            None => None,
        };
        out.next = next.filter(|_| !reached_after);
        Ok(out)
    }

    /// Reads one OData page, asking only for the fields read while the server takes `$select`
    /// (see the module doc); `final_500`: an HTTP 500 is not retried.
    async fn odata_page<T: KeysetRecord>(
        &self,
        collection: Collection,
        params: Vec<(&str, String)>,
        final_500: bool,
    ) -> Result<ODataPage<T>, SourceError> {
        let send = |params: &[(&str, String)]| {
            let mut request =
                HttpRequest::get(collection.endpoint, self.odata_url(collection, params))
                    .accept_json();
            if final_500 {
                request = request.final_status(500);
            }
            async move { self.http.send(&request).await }
        };
        let select = &self.select[collection.index];
        let state = select.load(Ordering::Relaxed);
        if state != SELECT_OFF {
            let mut selecting = params.clone();
            selecting.push((
                "$select",
                format!("{},{}", self.id_field, collection.fields),
            ));
            let why = match send(&selecting).await {
                Ok(response) => {
                    let page: ODataPage<T> = response.json()?;
                    if page.value.is_empty() {
                        return Ok(page);
                    }
                    if page.value.iter().any(|r| r.own_id().is_some()) {
                        select.store(SELECT_CONFIRMED, Ordering::Relaxed);
                        return Ok(page);
                    }
                    "its selected records had no id field".to_owned()
                }
                // The server answered: perhaps it cannot serve the selection. Whether it can is
                // told by the same request without it, below.
                Err(e @ SourceError::HttpStatus { .. }) if state == SELECT_UNCONFIRMED => {
                    format!("it answered a selected page with: {e}")
                }
                Err(e) => return Err(e),
            };
            // Only when the page reads without `$select` is the selection to blame.
            let page = send(&params).await?.json()?;
            if select.swap(SELECT_OFF, Ordering::Relaxed) != SELECT_OFF {
                tracing::warn!(
                    endpoint = %collection.endpoint,
                    "Cognigy OData $select stopped for {}: {why}; whole records are read from now on",
                    collection.name
                );
            }
            return Ok(page);
        }
        send(&params).await?.json()
    }

    /// The OData URL of one page.
    fn odata_url(&self, collection: Collection, params: &[(&str, String)]) -> String {
        use secrecy::ExposeSecret;
        let mut all = params.to_vec();
        all.push(("apikey", self.config.api_key.expose_secret().to_owned()));
        format!(
            "{}/{}?{}",
            self.config.odata_base_url.trim_end_matches('/'),
            collection.name,
            query_string(&all)
        )
    }

    /// `projectId eq '<project>'`: OData collections span the whole organisation, so every read is
    /// narrowed to the configured project (other projects' sessions would cost quota and could
    /// be matched to a call by caller and time).
    fn project_clause(&self) -> String {
        format!(
            "projectId eq '{}'",
            self.config.project_id.replace('\'', "''")
        )
    }

    /// A date-time literal for `$filter`, quoted or bare per config, UTC millis with `Z`.
    fn literal(&self, t: DateTime<Utc>) -> String {
        let text = t.to_rfc3339_opts(SecondsFormat::Millis, true);
        match self.config.date_literal {
            DateLiteral::Quoted => format!("'{text}'"),
            DateLiteral::Bare => text,
        }
    }

    /// Keyset paging over one collection (see the module doc for how ties are handled).
    async fn keyset<T: KeysetRecord>(
        &self,
        collection: Collection,
        after: DateTime<Utc>,
        max_pages: u32,
    ) -> Result<Batch<T>, SourceError> {
        let max_pages = max_pages.max(1);
        let mut batch: Batch<T> = Batch::default();
        let mut position = KeysetPosition::after(after);
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            let page: KeysetPage<T> = self.keyset_page(collection, position).await?;
            if page.ended_on_500 {
                batch.ended_on_500 = true;
                break;
            }
            batch.pages += 1;
            let mut fresh = 0usize;
            for record in page.records {
                if let Some(id) = record.record_id() {
                    if !seen.insert(id.to_owned()) {
                        continue;
                    }
                }
                fresh += 1;
                batch.records.push(record);
            }
            if page.end {
                break;
            }
            if fresh == 0 {
                return Err(SourceError::PageCap {
                    endpoint: collection.endpoint,
                    message: format!(
                        "a full page of {} brought no new records (unstable ordering?)",
                        collection.name
                    ),
                });
            }
            position = page.next;
            if batch.pages >= max_pages {
                batch.truncated = true;
                hold_back_last_tie(&mut batch.records);
                break;
            }
        }
        batch.newest = batch.records.iter().map(KeysetRecord::keyset_time).max();
        Ok(batch)
    }

    /// One page of a keyset read of `collection` from `position`.
    async fn keyset_page<T: KeysetRecord>(
        &self,
        collection: Collection,
        position: KeysetPosition,
    ) -> Result<KeysetPage<T>, SourceError> {
        let top = self.config.odata_page_size.max(1);
        let op = if position.tied > 0 { "ge" } else { "gt" };
        let mut params = vec![
            (
                "$filter",
                format!(
                    "{} {op} {} and {}",
                    collection.field,
                    self.literal(position.after),
                    self.project_clause()
                ),
            ),
            ("$orderby", format!("{} asc", collection.field)),
            ("$top", top.to_string()),
        ];
        if position.tied > 0 {
            params.push(("$skip", position.tied.to_string()));
        }
        // A 500 here means "nothing past the filter" (api/cognigy.md §2.2): do not retry it.
        let final_500 = self.config.end_of_keyset_500;
        let page: ODataPage<T> = match self.odata_page(collection, params, final_500).await {
            Err(SourceError::HttpStatus { status: 500, .. }) if final_500 => {
                self.keyset_500_ends.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    endpoint = %collection.endpoint,
                    "HTTP 500 under a keyset filter taken as end of data"
                );
                return Ok(KeysetPage {
                    records: Vec::new(),
                    next: position,
                    end: true,
                    ended_on_500: true,
                });
            }
            other => other?,
        };
        let end = page.value.len() < top as usize;
        let next = position.advanced(page.value.iter().map(KeysetRecord::keyset_time));
        Ok(KeysetPage {
            records: page.value,
            next,
            end,
            ended_on_500: false,
        })
    }

    /// All records of one session (`$filter=sessionId eq '<id>'`), oldest first, `$skip` paging.
    async fn by_session<T: KeysetRecord>(
        &self,
        collection: Collection,
        session_id: &str,
        max_pages: u32,
    ) -> Result<Batch<T>, SourceError> {
        let top = self.config.odata_page_size.max(1);
        let max_pages = max_pages.max(1);
        let filter = format!(
            "sessionId eq '{}' and {}",
            session_id.replace('\'', "''"),
            self.project_clause()
        );
        let mut batch: Batch<T> = Batch::default();
        loop {
            let mut params = vec![
                ("$filter", filter.clone()),
                ("$orderby", format!("{} asc", collection.field)),
                ("$top", top.to_string()),
            ];
            let skip = batch.records.len();
            if skip > 0 {
                params.push(("$skip", skip.to_string()));
            }
            let page: ODataPage<T> = self.odata_page(collection, params, false).await?;
            batch.pages += 1;
            let received = page.value.len();
            batch.records.extend(page.value);
            if received < top as usize {
                break;
            }
            if batch.pages >= max_pages {
                batch.truncated = true;
                break;
            }
        }
        batch.newest = batch.records.iter().map(KeysetRecord::keyset_time).max();
        Ok(batch)
    }
}

/// Drops the trailing records that share the last timestamp, unless every record shares it, so
/// a caller resuming with `gt newest` reads that tie group whole.
fn hold_back_last_tie<T: KeysetRecord>(records: &mut Vec<T>) {
    let Some(last) = records.last().map(KeysetRecord::keyset_time) else {
        return;
    };
    let keep = records
        .iter()
        .rposition(|r| r.keyset_time() != last)
        .map(|i| i + 1);
    match keep {
        Some(keep) => records.truncate(keep),
        None => tracing::warn!(
            "a whole truncated batch shares one timestamp; records at it may be skipped next read"
        ),
    }
}

/// The name of the record id field: `id` from OData v2.4 on, `_id` before (api/cognigy.md
/// §2.4), by the last `v<major>.<minor>` segment of `odata_base_url` (`id` when there is none; a
/// wrong guess costs one extra request, see [`CognigyClient::odata_page`]).
fn id_field(odata_base_url: &str) -> &'static str {
    match odata_version(odata_base_url) {
        Some(version) if version < (2, 4) => "_id",
        _ => "id",
    }
}

/// The OData version a base URL names: its last path segment of the form `v<major>.<minor>...`
/// (`v2.4`, `V2.3`, `v2.3.1`), as `(major, minor)`.
fn odata_version(base_url: &str) -> Option<(u32, u32)> {
    base_url.rsplit('/').find_map(|segment| {
        let rest = segment.strip_prefix(['v', 'V'])?;
        let mut parts = rest.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor_digits: String = parts
            .next()?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        Some((major, minor_digits.parse().ok()?))
    })
}

/// The cursor to send as `next=`: the value itself, or the `next` query parameter of a HAL
/// `_links.next.href` (never the href itself: it could point to another host).
fn cursor_value(raw: &str) -> Result<Option<String>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let is_href = raw.contains('?') || raw.starts_with("http://") || raw.starts_with("https://");
    if !is_href {
        return Ok(Some(raw.to_owned()));
    }
    let query = raw.split_once('?').map(|(_, q)| q).unwrap_or_default();
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "next")
        .map(|(_, value)| Some(percent_decode(value)).filter(|v| !v.is_empty()))
        .ok_or_else(|| "the HAL `_links.next.href` has no `next` cursor parameter".to_owned())
}

#[cfg(test)]
mod tests {
    /// The OData version is read from the last `v<major>.<minor>` segment of the base URL.
    #[test]
    fn odata_versions() {
        use super::odata_version;
        assert_eq!(
            odata_version("https://odata-app.cognigy.ai/v2.4"),
            Some((2, 4))
        );
        assert_eq!(
            odata_version("https://odata-app.cognigy.ai/v2.3/"),
            Some((2, 3))
        );
        assert_eq!(
            odata_version("https://proxy.example/V2.3.1/odata"),
            Some((2, 3))
        );
        assert_eq!(odata_version("https://proxy.example/odata"), None);
        assert_eq!(odata_version("https://proxy.example/vx.4"), None);
    }

    use super::*;

    /// A keyset position moves to the latest time read and counts the records read at it.
    #[test]
    fn keyset_position_counts_ties() {
        use chrono::TimeZone;
        let t = |s: u32| Utc.with_ymd_and_hms(2026, 3, 20, 9, 0, s).unwrap();
        let p = KeysetPosition::after(t(0));
        assert_eq!(p.advanced([]), p);
        let p = p.advanced([t(1), t(2), t(2)]);
        assert_eq!(
            p,
            KeysetPosition {
                after: t(2),
                tied: 2
            }
        );
        assert_eq!(p.advanced([t(2)]).tied, 3);
        assert_eq!(p.advanced([t(1)]), p, "an out-of-order time moves nothing");
        assert_eq!(
            p.advanced([t(3)]),
            KeysetPosition {
                after: t(3),
                tied: 1
            }
        );
    }

    /// Plain cursors pass through; HAL hrefs give their `next` parameter; a bare href is an error.
    #[test]
    fn cursor_values() {
        assert_eq!(
            cursor_value("65f0c1d2e3a4b5c6d7e8f901"),
            Ok(Some("65f0c1d2e3a4b5c6d7e8f901".into()))
        );
        assert_eq!(
            cursor_value("/new/v2.0/projects/p/logs?limit=2&next=abc%3D&type=error"),
            Ok(Some("abc=".into()))
        );
        assert!(cursor_value("https://x/logs?limit=2").is_err());
        assert_eq!(cursor_value(""), Ok(None));
    }
}
