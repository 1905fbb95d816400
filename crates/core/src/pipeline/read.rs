//! Read: the five streams of one tenant (CXone completed contacts, the three Cognigy OData
//! collections, the Cognigy project logs), each read page by page from its cursor, every page
//! ingested with the cursor it leads to before the next one is asked for.
//!
//! A stream stops at the end of its data (its pass completes, see `cursors`), at its page cap,
//! at the cycle's read deadline (the page in flight is dropped: it is the only thing lost), or at
//! an error, which leaves its cursor where the last page put it. A failing stream never stops the
//! others. This module does not decide anything and does not schedule cycles.

use super::cursors::{CxonePosition, LogsPosition, Pass, Windows, LOGS_WRITE_MARGIN};
use super::ingest::{DelayMeasure, Records};
use super::{CycleError, Poller};
use crate::metrics::OdataCollection;
use crate::sources::cognigy::{KeysetPage, KeysetPosition};
use crate::sources::http::{with_priority, Endpoint, ReadPriority, SourceError};
use chrono::{DateTime, Duration, Utc};
use std::future::Future;
use std::time::Instant;

/// What one stream did in one cycle.
#[derive(Debug, Default, Clone)]
pub(super) struct StreamRead {
    /// Pages read and ingested.
    pub pages: u32,
    pub records: usize,
    /// Stopped with more to read (page cap or deadline).
    pub more: bool,
    /// Stopped at the read deadline.
    pub deadline: bool,
    /// Failed with this error kind; its cursor stays where the last page left it.
    pub failed: Option<&'static str>,
    pub elapsed: std::time::Duration,
}

/// How much one stream may read this cycle.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub max_pages: u32,
    /// No page is asked for, and none in flight is waited for, past this.
    pub deadline: Option<Instant>,
}

/// `f`, or `None` when `deadline` passes first (the future is dropped).
async fn within<F: Future>(deadline: Option<Instant>, f: F) -> Option<F::Output> {
    match deadline {
        None => Some(f.await),
        Some(d) => tokio::time::timeout_at(d.into(), f).await.ok(),
    }
}

impl StreamRead {
    /// Whether another page may be asked for; marks why not.
    fn may_read(&mut self, limits: &Limits) -> bool {
        if self.pages >= limits.max_pages.max(1) {
            self.more = true;
            return false;
        }
        if limits.deadline.is_some_and(|d| Instant::now() >= d) {
            self.more = true;
            self.deadline = true;
            return false;
        }
        true
    }

    fn stopped_at_deadline(&mut self) {
        self.more = true;
        self.deadline = true;
    }
}

impl Poller {
    /// Reads CXone completed contacts from `pass`.
    pub(super) async fn read_cxone(
        &self,
        mut pass: Pass<CxonePosition>,
        limits: Limits,
    ) -> Result<StreamRead, CycleError> {
        let started = Instant::now();
        let mut read = StreamRead::default();
        while read.may_read(&limits) {
            let asked_at = Utc::now();
            let position = pass.position;
            let priority = read_priority(position.since, self.timing.overlap, asked_at);
            let Some(result) = within(
                limits.deadline,
                with_priority(
                    priority,
                    self.cxone.completed_page(position.since, position.skip),
                ),
            )
            .await
            else {
                read.stopped_at_deadline();
                break;
            };
            let page = match result {
                Ok(page) => page,
                Err(e) => {
                    self.stream_failed("cxone", "contacts_completed", &e);
                    read.failed = Some(e.kind());
                    break;
                }
            };
            let newest = page
                .contacts
                .iter()
                .filter_map(|c| c.last_update_time)
                .max();
            let mut next =
                pass.after_page(position.advanced(page.contacts.len(), newest), asked_at);
            if !page.more {
                next = next.completed(Windows::single(self.timing.overlap), Utc::now());
            }
            read.pages += 1;
            read.records += page.contacts.len();
            let records = Records::Contacts(page.contacts);
            self.ingest_page(super::cursors::CXONE, records, &next, asked_at, None)
                .await?;
            pass = next;
            if !page.more {
                break;
            }
        }
        read.elapsed = started.elapsed();
        Ok(read)
    }

    /// Reads one OData collection from `pass`; `fetch` asks for one page at a position.
    pub(super) async fn read_keyset<T, F, Fut>(
        &self,
        name: &'static str,
        collection: OdataCollection,
        mut pass: Pass<KeysetPosition>,
        limits: Limits,
        fetch: F,
        wrap: fn(Vec<T>) -> Records,
    ) -> Result<StreamRead, CycleError>
    where
        F: Fn(KeysetPosition) -> Fut,
        Fut: Future<Output = Result<KeysetPage<T>, SourceError>>,
    {
        let started = Instant::now();
        let mut read = StreamRead::default();
        let windows = self.windows_of(collection);
        while read.may_read(&limits) {
            let asked_at = Utc::now();
            let priority = read_priority(pass.position.after, windows.long, asked_at);
            let page = with_priority(priority, fetch(pass.position));
            let Some(result) = within(limits.deadline, page).await else {
                read.stopped_at_deadline();
                break;
            };
            let page = match result {
                Ok(page) => page,
                Err(e) => {
                    self.stream_failed("cognigy", name, &e);
                    read.failed = Some(e.kind());
                    break;
                }
            };
            // A 500 taken as "end of keyset" is believable only near the present: in the middle
            // of a backlog it is an outage, and completing the pass would skip data.
            let believable_end = before(asked_at, windows.long * 2);
            if page.ended_on_500 && pass.position.after < believable_end {
                tracing::warn!(tenant = %self.tenant, source = "cognigy", collection = name, kind = "keyset_500", "HTTP 500 far behind the present taken as an outage, not the end of data");
                read.failed = Some("keyset_500");
                break;
            }
            let mut next = pass.after_page(page.next, asked_at);
            if page.end {
                next = next.completed(windows, Utc::now());
            }
            read.pages += 1;
            read.records += page.records.len();
            let measure = DelayMeasure::of(collection, &pass, windows.long, asked_at);
            self.ingest_page(name, wrap(page.records), &next, asked_at, measure)
                .await?;
            pass = next;
            if page.end {
                break;
            }
        }
        read.elapsed = started.elapsed();
        Ok(read)
    }

    /// Reads the project logs, newest first, from `pass`. Logs are written in real time, so a
    /// pass reaches back only a few seconds before the newest entry the previous one read (see
    /// [`Pass::completed_logs`]). With filter terms configured, a pass reads the lines of each
    /// term in turn (the server filters them).
    pub(super) async fn read_logs(
        &self,
        mut pass: Pass<LogsPosition>,
        limits: Limits,
    ) -> Result<StreamRead, CycleError> {
        let started = Instant::now();
        let mut read = StreamRead::default();
        while read.may_read(&limits) {
            let asked_at = Utc::now();
            let position = pass.position.clone();
            let priority = read_priority(position.after, LOGS_WRITE_MARGIN, asked_at);
            let term = self.logs_filter.get(position.term).map(String::as_str);
            let Some(result) = within(
                limits.deadline,
                with_priority(
                    priority,
                    self.cognigy
                        .logs_page(position.after, position.resume.as_deref(), term),
                ),
            )
            .await
            else {
                read.stopped_at_deadline();
                break;
            };
            let page = match result {
                Ok(page) if page.next.is_some() && page.next == position.resume => {
                    let e = SourceError::PageCap {
                        endpoint: Endpoint::CognigyLogs,
                        message: "the server returned the cursor it was asked for".to_owned(),
                    };
                    Err(e)
                }
                other => other,
            };
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    self.stream_failed("cognigy", super::cursors::LOGS, &e);
                    read.failed = Some(e.kind());
                    if position.resume.is_some() {
                        // The saved server cursor may have expired: the next cycle reads this
                        // term again from the newest entry down to the same lower bound (the
                        // pass keeps its start: what it read so far was visible then).
                        let restart = Pass {
                            position: LogsPosition {
                                resume: None,
                                ..position.clone()
                            },
                            ..pass.clone()
                        };
                        self.ingest_page(
                            super::cursors::LOGS,
                            Records::Logs(Vec::new()),
                            &restart,
                            asked_at,
                            None,
                        )
                        .await?;
                    }
                    break;
                }
            };
            // The end of this term's lines; the pass ends with the last term (or at once when
            // the server refused the filter and every line is read).
            let term_done = page.next.is_none();
            let next_term = position.term + 1;
            let end = term_done
                && (next_term >= self.logs_filter.len() || !self.cognigy.logs_filter_on());
            let position = position.saw(page.entries.iter().map(|e| e.timestamp));
            let position = if term_done && !end {
                LogsPosition {
                    resume: None,
                    term: next_term,
                    ..position
                }
            } else {
                LogsPosition {
                    resume: page.next,
                    ..position
                }
            };
            let mut next = pass.after_page(position, asked_at);
            if end {
                next = next.completed_logs(Utc::now());
            }
            read.pages += 1;
            read.records += page.entries.len();
            self.ingest_page(
                super::cursors::LOGS,
                Records::Logs(page.entries),
                &next,
                asked_at,
                None,
            )
            .await?;
            pass = next;
            if end {
                break;
            }
        }
        read.elapsed = started.elapsed();
        Ok(read)
    }

    fn stream_failed(&self, source: &'static str, stream: &str, e: &SourceError) {
        tracing::warn!(tenant = %self.tenant, source, stream, kind = e.kind(), error = %e, "poll failed");
    }
}

impl Poller {
    /// The pass windows of one OData collection.
    fn windows_of(&self, collection: OdataCollection) -> Windows {
        match collection {
            OdataCollection::Conversations => self.conversation_windows,
            OdataCollection::Sessions | OdataCollection::Analytics => self.odata_windows,
        }
    }
}

/// How much older than the window a stream re-reads anyway a read must start to be backfill.
const BACKFILL_AFTER: Duration = Duration::hours(1);

/// The priority of a page read starting at `position` by a stream that re-reads `reread` each
/// pass: backfill when it starts more than an hour before that window (it then only brings
/// old data in), otherwise a read near the present, which lets pending contacts be decided.
fn read_priority(position: DateTime<Utc>, reread: Duration, now: DateTime<Utc>) -> ReadPriority {
    ReadPriority {
        backfill: position < before(before(now, reread), BACKFILL_AFTER),
        behind: position.timestamp_millis(),
    }
}

/// `t - d`, or the earliest time when that is out of range.
fn before(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    super::cursors::before(t, d)
}
