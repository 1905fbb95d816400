//! One poll cycle for one tenant: the only place that joins the stages (DESIGN §7).
//!
//! A cycle reads CXone completed contacts since the cursor minus the overlap and the four
//! Cognigy windows, and writes what it read with the advanced cursors in ONE store transaction
//! (ingest). It then decides: it loads, a bounded batch at a time, the pending contact groups
//! that the read horizon may let it decide, with the Cognigy records of their time span,
//! correlates and diagnoses them, and commits each batch's diagnoses in one transaction; the
//! counters are incremented right after that commit, and only for the diagnoses the store
//! reports as newly recorded. A crash at any point neither loses a contact nor counts one twice.
//! A failing source never stops the others: its cursor simply does not move. This module does
//! not schedule cycles (see `daemon`).

use crate::config::{Config, Rules, TenantConfig};
use crate::correlation::{correlate, Inputs};
use crate::diagnosis::{diagnose, Diagnosis, Horizon, Verdict};
use crate::metrics::{Metrics, PollSource};
use crate::server::Readiness;
use crate::sources::cognigy::wire::{Analytics, Conversation, LogEntry, Session};
use crate::sources::cognigy::CognigyClient;
use crate::sources::cxone::wire::CompletedContact;
use crate::sources::cxone::{ContactsBatch, CxoneClient};
use crate::sources::http::{RequestObserver, SourceError};
use crate::store::{Cursor, CycleCommit, RipeKey, Store, StoreError};
use chrono::{DateTime, Duration, SubsecRound, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How many pending groups one decide batch loads (about 2.3 contacts and 10 Cognigy records
/// each at the simulator's mix): the bound on a cycle's working set (issue 5).
const DECIDE_BATCH_GROUPS: usize = 10_000;

/// Cursor names in the store.
const CURSOR_CXONE: &str = "cxone";
const CURSOR_SESSIONS: &str = "cognigy_sessions";
const CURSOR_CONVERSATIONS: &str = "cognigy_conversations";
const CURSOR_ANALYTICS: &str = "cognigy_analytics";
const CURSOR_LOGS: &str = "cognigy_logs";
/// Wall-clock time up to which every Cognigy source was read completely.
const CURSOR_COGNIGY_READ_UNTIL: &str = "cognigy_read_until";
/// Every cursor, in the order a cycle loads them.
const CURSOR_NAMES: [&str; 6] = [
    CURSOR_CXONE,
    CURSOR_SESSIONS,
    CURSOR_CONVERSATIONS,
    CURSOR_ANALYTICS,
    CURSOR_LOGS,
    CURSOR_COGNIGY_READ_UNTIL,
];

/// Cursor detail of a read cut short by its page cap: the next read continues without overlap.
const CONTINUE: &str = "continue";

/// A newest-first log pass cut short by the page cap (kept in the logs cursor's detail).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct LogsPass {
    /// The server's cursor where the pass stopped.
    resume: String,
    /// The newest entry time when the pass began.
    top: DateTime<Utc>,
}

/// Timing settings of a cycle, from the config.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub overlap: Duration,
    pub settle: Duration,
    pub initial_lookback: Duration,
    pub retention: Duration,
}

impl Timing {
    pub fn from_config(config: &Config) -> Timing {
        let d = |v: std::time::Duration| Duration::milliseconds(v.as_millis() as i64);
        Timing {
            overlap: d(config.overlap),
            settle: d(config.settle),
            initial_lookback: d(config.initial_lookback),
            retention: d(config.retention),
        }
    }
}

/// Why a whole cycle failed (a single source failing is not a cycle failure).
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    #[error("state store task failed: {0}")]
    Task(String),
}

impl CycleError {
    /// A bounded error kind for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CycleError::Store(_) => "store",
            CycleError::Task(_) => "store_task",
        }
    }
}

/// What one cycle did, for the one log line per cycle.
#[derive(Debug, Default, Clone)]
pub struct CycleReport {
    pub contacts_read: usize,
    pub cognigy_records_read: usize,
    pub cases: usize,
    pub diagnosed: usize,
    pub pending: u64,
    pub cxone_ok: bool,
    pub cognigy_ok: bool,
    /// A source hit its page cap: there is more to read right away.
    pub more: bool,
    pub cxone_ms: u64,
    pub cognigy_ms: u64,
}

/// Everything one tenant's cycles need.
pub struct Poller {
    tenant: String,
    rules: Rules,
    cxone: CxoneClient,
    cognigy: CognigyClient,
    cxone_max_pages: u32,
    cognigy_max_pages: u32,
    timing: Timing,
    store: Arc<Mutex<Store>>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    last_prune: Mutex<Option<DateTime<Utc>>>,
    read_ahead: Mutex<Option<ReadAhead>>,
}

/// What the Cognigy reads of one cycle produced.
#[derive(Default)]
struct CognigyRead {
    sessions: Vec<Session>,
    conversations: Vec<Conversation>,
    analytics: Vec<Analytics>,
    logs: Vec<LogEntry>,
    cursors: Vec<(&'static str, DateTime<Utc>, String)>,
    complete: bool,
    truncated: bool,
    ok: bool,
}

impl Poller {
    /// Builds the clients of one tenant; they report every request to `metrics`.
    pub fn new(
        tenant: &TenantConfig,
        timing: Timing,
        store: Arc<Mutex<Store>>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
    ) -> Result<Poller, SourceError> {
        let observer: Arc<dyn RequestObserver> = metrics.clone();
        Ok(Poller {
            tenant: tenant.name.clone(),
            rules: tenant.rules.clone(),
            cxone: CxoneClient::new(&tenant.cxone, observer.clone())?,
            cognigy: CognigyClient::new(&tenant.cognigy, observer)?,
            cxone_max_pages: tenant.cxone.max_pages,
            cognigy_max_pages: tenant.cognigy.max_pages,
            timing,
            store,
            metrics,
            readiness,
            last_prune: Mutex::new(None),
            read_ahead: Mutex::new(None),
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The metrics this poller reports to.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Runs one cycle at wall-clock time `now`.
    ///
    /// A cycle that hit a page cap reads the next pages while its own are being written
    /// (read-ahead): the next cycle uses them if the cursors it finds in the store are exactly
    /// the ones they were read from, and then runs as of the time that read began; otherwise it
    /// drops them and reads afresh.
    pub async fn run_cycle(&self, now: DateTime<Utc>) -> Result<CycleReport, CycleError> {
        let mut report = CycleReport::default();
        let rows = self
            .with_store(|store, tenant| {
                let mut rows = Vec::new();
                for name in CURSOR_NAMES {
                    if let Some(c) = store.cursor(tenant, name)? {
                        rows.push((name, c));
                    }
                }
                Ok(rows)
            })
            .await?;
        let ahead = self
            .read_ahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|a| a.rows == rows);
        let (now, read) = match ahead {
            Some(a) => (a.now, a.read),
            None => (now, self.read_sources(now, &rows).await),
        };
        let SourcesRead {
            cxone_result,
            cxone_elapsed,
            cxone_since,
            cognigy,
            cognigy_elapsed,
        } = read;
        let cursors = watermarks(&rows);
        report.cxone_ms = cxone_elapsed.as_millis() as u64;
        report.cognigy_ms = cognigy_elapsed.as_millis() as u64;

        let mut cursor_updates: Vec<(&'static str, DateTime<Utc>, String)> = Vec::new();
        let mut cxone_watermark = None;
        let new_contacts = match cxone_result {
            Ok(batch) => {
                report.cxone_ok = true;
                report.more |= batch.truncated;
                let newest_update = batch
                    .contacts
                    .iter()
                    .filter_map(|c| c.last_update_time)
                    .max();
                let (watermark, detail) = if batch.truncated {
                    let newest = newest_update.unwrap_or(cxone_since).min(now);
                    if newest <= cxone_since {
                        // A whole capped read shares one `lastUpdateTime`: without a step the
                        // same pages would be read forever. Step past it and say so.
                        tracing::error!(tenant = %self.tenant, source = "cxone", kind = "cursor_stalled", "a page-capped read made no progress; stepping the cursor by 1 ms (raise page_size or max_pages)");
                        (cxone_since + Duration::milliseconds(1), CONTINUE)
                    } else {
                        (newest, CONTINUE)
                    }
                } else {
                    (batch.last_poll_time.unwrap_or(now).min(now), "")
                };
                let previous = cursors.get(CURSOR_CXONE).copied();
                let watermark = previous.map_or(watermark, |p| p.min(now).max(watermark));
                cursor_updates.push((CURSOR_CXONE, watermark, detail.to_owned()));
                cxone_watermark = Some(watermark);
                batch.contacts
            }
            Err(e) => {
                tracing::warn!(tenant = %self.tenant, source = "cxone", kind = e.kind(), error = %e, "poll failed");
                Vec::new()
            }
        };
        report.contacts_read = new_contacts.len();
        report.cognigy_ok = cognigy.ok;
        report.more |= cognigy.truncated;
        for (name, at, detail) in &cognigy.cursors {
            cursor_updates.push((name, *at, detail.clone()));
        }
        let read_until = if cognigy.complete {
            cursor_updates.push((CURSOR_COGNIGY_READ_UNTIL, now, String::new()));
            now
        } else {
            cursors
                .get(CURSOR_COGNIGY_READ_UNTIL)
                .copied()
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        };
        report.cognigy_records_read = cognigy.sessions.len()
            + cognigy.conversations.len()
            + cognigy.analytics.len()
            + cognigy.logs.len();

        let horizon = Horizon {
            now,
            cognigy_read_until: read_until,
            cxone_read_until: cxone_watermark
                .or_else(|| cursors.get(CURSOR_CXONE).copied())
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            settle_seconds: self.timing.settle.num_seconds(),
            catching_up: report.cxone_ok && report.cognigy_ok && report.more,
        };

        // 1. Ingest: what was read and the cursors, in one transaction. Nothing is decided here;
        //    a crash after it loses nothing (the contacts wait in the store as pending). When a
        //    source is page-capped, the next pages are read meanwhile, from the cursors this
        //    commit writes.
        let next_rows = report.more.then(|| {
            let mut next = rows.clone();
            for (name, watermark, detail) in &cursor_updates {
                // As the store will give it back: it keeps microseconds.
                let cursor = Cursor {
                    watermark: watermark.trunc_subsecs(6),
                    detail: detail.clone(),
                };
                match next.iter_mut().find(|(n, _)| n == name) {
                    Some((_, c)) => *c = cursor,
                    None => next.push((*name, cursor)),
                }
            }
            next.sort_by_key(|(n, _)| CURSOR_NAMES.iter().position(|x| x == n));
            next
        });
        let ingest = Ingest {
            contacts: new_contacts,
            cognigy,
            cursors: cursor_updates,
        };
        let commit = self.with_store(move |store, tenant| {
            let cursor_refs: Vec<(&str, DateTime<Utc>, String)> = ingest
                .cursors
                .iter()
                .map(|(n, w, d)| (*n, *w, d.clone()))
                .collect();
            store.commit_cycle(
                tenant,
                CycleCommit {
                    contacts: &ingest.contacts,
                    sessions: &ingest.cognigy.sessions,
                    conversations: &ingest.cognigy.conversations,
                    analytics: &ingest.cognigy.analytics,
                    logs: &ingest.cognigy.logs,
                    cursors: &cursor_refs,
                    ..CycleCommit::empty(now)
                },
            )
        });
        match next_rows {
            Some(next_rows) => {
                let next_now = Utc::now();
                let (committed, read) =
                    tokio::join!(commit, self.read_sources(next_now, &next_rows));
                committed?;
                *self.read_ahead.lock().unwrap_or_else(|p| p.into_inner()) = Some(ReadAhead {
                    rows: next_rows,
                    now: next_now,
                    read,
                });
            }
            None => {
                commit.await?;
            }
        }

        // 2. Decide: the pending groups that may be decidable now, a batch at a time, each batch
        //    with the Cognigy records of its time span, correlated, diagnosed and committed in
        //    its own transaction. A group whose last contact ended after `decidable_by` would
        //    only be found pending again, so it is not even loaded: memory stays bounded by the
        //    batch however long a backlog is, and a cycle during a long Cognigy catch-up costs
        //    no correlation at all.
        let settle = self.timing.settle;
        let lag = Duration::seconds(self.rules.cognigy_lag_seconds as i64);
        let max_pending = Duration::seconds(self.rules.max_pending_seconds as i64);
        let window = Duration::seconds(self.rules.correlation_window_seconds as i64);
        let read_through = before(horizon.cognigy_read_until, settle.min(lag))
            .min(before(horizon.cxone_read_until, settle));
        // Past `max_pending` a case is decided whatever was read, except while a source is
        // still catching up (then it is waited for: `Horizon::catching_up`).
        let decidable_by = if horizon.catching_up {
            read_through
        } else {
            read_through.max(before(now, max_pending))
        };
        // Sessions start after their contact (caller matching allows a window); every other
        // Cognigy record comes later still, and none is needed past the case's settle time.
        let lookback = window + Duration::minutes(1);
        let reach = settle + lag + window;
        let mut after: Option<RipeKey> = None;
        loop {
            let from_key = after.take();
            let batch = self
                .with_store(move |store, tenant| {
                    let (contacts, last) = store.ripe_pending(
                        tenant,
                        decidable_by,
                        from_key.as_ref(),
                        DECIDE_BATCH_GROUPS,
                    )?;
                    let span = contacts
                        .iter()
                        .map(|c| c.contact_start_date)
                        .min()
                        .zip(contacts.iter().map(|c| c.ended_at()).max());
                    let Some((first_start, last_end)) = span else {
                        return Ok(None);
                    };
                    let cognigy = store.cognigy_between(
                        tenant,
                        before(first_start, lookback),
                        last_end
                            .checked_add_signed(reach)
                            .unwrap_or(DateTime::<Utc>::MAX_UTC),
                    )?;
                    Ok(Some((contacts, cognigy, last)))
                })
                .await?;
            let Some((contacts, cognigy, last)) = batch else {
                break;
            };
            let inputs = Inputs {
                contacts: &contacts,
                sessions: &cognigy.sessions,
                conversations: &cognigy.conversations,
                analytics: &cognigy.analytics,
                logs: &cognigy.logs,
            };
            let cases = correlate(inputs, &self.rules);
            report.cases += cases.len();
            let ignored = not_bot_contacts(&contacts, &cases, &self.rules, read_until, now, settle);
            let diagnoses: Vec<Diagnosis> = cases
                .iter()
                .filter_map(|case| match diagnose(case, &self.rules, &horizon) {
                    Verdict::Diagnosed(d) => Some(*d),
                    Verdict::Pending { .. } => None,
                })
                .collect();
            drop(cases);
            drop(cognigy);
            drop(contacts);

            // One transaction per batch. The counters move in the same blocking task, right
            // after the commit: once the commit has happened, neither a deadline nor a shutdown
            // that drops this future can keep them from moving (a blocking task runs to its end).
            let metrics = self.metrics.clone();
            let recorded = self
                .with_store(move |store, tenant| {
                    let recorded = store.commit_cycle(
                        tenant,
                        CycleCommit {
                            diagnoses: &diagnoses,
                            ignored: &ignored,
                            ..CycleCommit::empty(now)
                        },
                    )?;
                    for d in &recorded {
                        metrics.record_diagnosis(tenant, d);
                    }
                    Ok(recorded.len())
                })
                .await?;
            report.diagnosed += recorded;
            match last {
                Some(key) => after = Some(key),
                None => break,
            }
        }

        // Housekeeping after the commit: a failure here is logged, and loses nothing.
        let prune_before = self.prune_due(now).then(|| now - self.timing.retention);
        let housekeeping = self
            .with_store(move |store, tenant| {
                if let Some(before) = prune_before {
                    let pruned = store.prune(before)?;
                    tracing::debug!(tenant, pruned, "pruned rows past retention");
                }
                store.pending_count(tenant)
            })
            .await;
        match housekeeping {
            Ok(count) => {
                if prune_before.is_some() {
                    self.mark_pruned(now);
                }
                report.pending = count;
                self.metrics.set_pending(&self.tenant, count);
            }
            Err(e) => {
                tracing::warn!(tenant = %self.tenant, kind = e.kind(), error = %e, "pruning or counting pending contacts failed");
            }
        }
        self.publish_source(PollSource::Cxone, report.cxone_ok, now);
        self.publish_source(PollSource::Cognigy, report.cognigy_ok, now);
        if let Some(w) = cxone_watermark {
            self.metrics
                .set_watermark(&self.tenant, PollSource::Cxone, w);
        }
        if read_until > DateTime::<Utc>::UNIX_EPOCH {
            self.metrics
                .set_watermark(&self.tenant, PollSource::Cognigy, read_until);
        }
        Ok(report)
    }

    fn publish_source(&self, source: PollSource, ok: bool, now: DateTime<Utc>) {
        if ok {
            self.metrics.poll_succeeded(&self.tenant, source, now);
            self.readiness.mark_success(&self.tenant, source);
        } else {
            self.metrics.poll_failed(&self.tenant, source);
        }
    }

    /// Reads the four Cognigy windows. Each collection re-reads `cognigy_lag + overlap` back from
    /// the present, because OData records appear only after their session ends.
    /// Reads CXone and Cognigy from the cursors `rows`, concurrently (each has its own rate
    /// limit). After a read cut short by the page cap, the next one continues where it stopped
    /// (no overlap), or the overlap alone could exceed the page cap and the cursor would never
    /// move.
    async fn read_sources(
        &self,
        now: DateTime<Utc>,
        rows: &[(&'static str, Cursor)],
    ) -> SourcesRead {
        let cursors = watermarks(rows);
        let cursor_detail = |name: &str| {
            rows.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| c.detail.as_str())
        };
        let cxone_continues = cursor_detail(CURSOR_CXONE) == Some(CONTINUE);
        let logs_pass =
            cursor_detail(CURSOR_LOGS).and_then(|d| serde_json::from_str::<LogsPass>(d).ok());
        let start_of_history = now - self.timing.initial_lookback;
        let overlap = if cxone_continues {
            Duration::zero()
        } else {
            self.timing.overlap
        };
        let cxone_since = cursors
            .get(CURSOR_CXONE)
            .map(|w| *w - overlap)
            .unwrap_or(start_of_history);
        let started = std::time::Instant::now();
        let (cxone, cognigy) = tokio::join!(
            async {
                let r = self
                    .cxone
                    .completed_contacts(cxone_since, self.cxone_max_pages)
                    .await;
                (r, started.elapsed())
            },
            async {
                let r = self
                    .read_cognigy(now, &cursors, logs_pass.as_ref(), start_of_history)
                    .await;
                (r, started.elapsed())
            }
        );
        SourcesRead {
            cxone_result: cxone.0,
            cxone_elapsed: cxone.1,
            cxone_since,
            cognigy: cognigy.0,
            cognigy_elapsed: cognigy.1,
        }
    }

    async fn read_cognigy(
        &self,
        now: DateTime<Utc>,
        cursors: &HashMap<&'static str, DateTime<Utc>>,
        logs_pass: Option<&LogsPass>,
        start_of_history: DateTime<Utc>,
    ) -> CognigyRead {
        let window = Duration::seconds(self.rules.cognigy_lag_seconds as i64) + self.timing.overlap;
        let since = |name: &str| cursors.get(name).copied().unwrap_or(start_of_history);
        let pages = self.cognigy_max_pages;
        let (sessions, conversations, analytics, logs) = tokio::join!(
            self.cognigy.sessions_since(since(CURSOR_SESSIONS), pages),
            self.cognigy
                .conversations_since(since(CURSOR_CONVERSATIONS), pages),
            self.cognigy.analytics_since(since(CURSOR_ANALYTICS), pages),
            self.cognigy.logs_since_resuming(
                since(CURSOR_LOGS),
                logs_pass.map(|p| p.resume.as_str()),
                pages
            ),
        );
        let mut read = CognigyRead {
            complete: true,
            ok: true,
            ..CognigyRead::default()
        };
        // A 500 taken as "end of keyset" is believable only near the present: in the middle of a
        // backlog it is an outage, and moving the cursor past it would skip data.
        let believable_end = now - window - window;
        let next_cursor = |name: &'static str,
                           result: Result<(bool, bool, Option<DateTime<Utc>>), &SourceError>,
                           read: &mut CognigyRead| {
            match result {
                Ok((_, true, newest)) if newest.unwrap_or_else(|| since(name)) < believable_end => {
                    read.ok = false;
                    read.complete = false;
                    tracing::warn!(tenant = %self.tenant, source = "cognigy", collection = name, kind = "keyset_500", "HTTP 500 far behind the present taken as an outage, not the end of data");
                }
                Ok((truncated, _, newest)) => {
                    let cursor = if truncated {
                        read.truncated = true;
                        read.complete = false;
                        newest.unwrap_or_else(|| since(name))
                    } else {
                        now - window
                    };
                    read.cursors.push((name, cursor, String::new()));
                }
                Err(e) => {
                    read.ok = false;
                    read.complete = false;
                    tracing::warn!(tenant = %self.tenant, source = "cognigy", collection = name, kind = e.kind(), error = %e, "poll failed");
                }
            }
        };
        next_cursor(
            CURSOR_SESSIONS,
            sessions.as_ref().map(keyset_state),
            &mut read,
        );
        read.sessions = sessions.map(|b| b.records).unwrap_or_default();
        next_cursor(
            CURSOR_CONVERSATIONS,
            conversations.as_ref().map(keyset_state),
            &mut read,
        );
        read.conversations = conversations.map(|b| b.records).unwrap_or_default();
        next_cursor(
            CURSOR_ANALYTICS,
            analytics.as_ref().map(keyset_state),
            &mut read,
        );
        read.analytics = analytics.map(|b| b.records).unwrap_or_default();
        // Logs are written in real time, so each pass re-reads only the overlap. They are read
        // newest first down to the cursor. A pass cut short by the page cap keeps its starting
        // point and continues from the server's cursor next cycle; the pass that completes it
        // leaves Cognigy incomplete, and the next, fresh pass reaches back to where the
        // interrupted one began (`top`), so entries written meanwhile are read too.
        match logs {
            Ok(b) if b.truncated => {
                read.truncated = true;
                read.complete = false;
                let pass = LogsPass {
                    resume: b.resume_cursor.clone().unwrap_or_default(),
                    top: logs_pass.map(|p| p.top).or(b.newest).unwrap_or(now),
                };
                read.cursors.push((
                    CURSOR_LOGS,
                    since(CURSOR_LOGS),
                    serde_json::to_string(&pass).unwrap_or_default(),
                ));
                read.logs = b.records;
            }
            Ok(b) => {
                let next = match logs_pass {
                    Some(p) => {
                        read.complete = false;
                        read.truncated = true;
                        (now - self.timing.overlap).min(p.top)
                    }
                    None => now - self.timing.overlap,
                };
                read.cursors.push((CURSOR_LOGS, next, String::new()));
                read.logs = b.records;
            }
            Err(e) => {
                next_cursor(CURSOR_LOGS, Err(&e), &mut read);
                if logs_pass.is_some() {
                    // The saved server cursor may have expired: start a fresh pass next cycle.
                    read.cursors
                        .push((CURSOR_LOGS, since(CURSOR_LOGS), String::new()));
                }
            }
        }
        read
    }

    /// Runs `f` on the store off the async runtime.
    async fn with_store<T, F>(&self, f: F) -> Result<T, CycleError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store, &str) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        let tenant = self.tenant.clone();
        tokio::task::spawn_blocking(move || {
            // A poisoned lock means another thread panicked mid-transaction; SQLite rolled it
            // back, so the connection is still consistent and can be used.
            let mut guard = store.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard, &tenant)
        })
        .await
        .map_err(|e| CycleError::Task(e.to_string()))?
        .map_err(CycleError::from)
    }

    fn prune_due(&self, now: DateTime<Utc>) -> bool {
        let last = self.last_prune.lock().map(|g| *g).unwrap_or(None);
        match last {
            Some(t) => now - t >= Duration::hours(1),
            None => true,
        }
    }

    fn mark_pruned(&self, now: DateTime<Utc>) {
        if let Ok(mut g) = self.last_prune.lock() {
            *g = Some(now);
        }
    }
}

/// The cursors a cycle reads from, in [`CURSOR_NAMES`] order.
type CursorRows = Vec<(&'static str, Cursor)>;

/// What one cycle's reads of both sources produced.
struct SourcesRead {
    cxone_result: Result<ContactsBatch, SourceError>,
    cxone_elapsed: std::time::Duration,
    cxone_since: DateTime<Utc>,
    cognigy: CognigyRead,
    cognigy_elapsed: std::time::Duration,
}

/// Pages read ahead by a page-capped cycle for the next one, with the cursors they were read
/// from and when the read began.
struct ReadAhead {
    rows: CursorRows,
    now: DateTime<Utc>,
    read: SourcesRead,
}

/// The watermark of each cursor.
fn watermarks(rows: &[(&'static str, Cursor)]) -> HashMap<&'static str, DateTime<Utc>> {
    rows.iter().map(|(n, c)| (*n, c.watermark)).collect()
}

/// What one cycle read, written before anything is decided.
struct Ingest {
    contacts: Vec<CompletedContact>,
    cognigy: CognigyRead,
    cursors: Vec<(&'static str, DateTime<Utc>, String)>,
}

/// `t - d`, or the earliest time when that is out of range.
fn before(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Contacts that belong to no case and can no longer become one: Cognigy was read past their
/// lag (plus settle) and still no session points to them, and they did not enter the bot.
fn not_bot_contacts(
    contacts: &[CompletedContact],
    cases: &[crate::correlation::Case<'_>],
    rules: &Rules,
    read_until: DateTime<Utc>,
    now: DateTime<Utc>,
    settle: Duration,
) -> Vec<i64> {
    let max_pending = Duration::seconds(rules.max_pending_seconds as i64);
    let in_case: std::collections::HashSet<i64> = cases
        .iter()
        .flat_map(|c| c.contacts.iter().map(|x| x.contact_id))
        .collect();
    let lag = Duration::seconds(rules.cognigy_lag_seconds as i64) + settle;
    contacts
        .iter()
        .filter(|c| {
            !in_case.contains(&c.contact_id)
                && (c.ended_at() + lag <= read_until || c.ended_at() + max_pending <= now)
        })
        .map(|c| c.contact_id)
        .collect()
}

/// How an OData keyset read ended: (page-capped, ended on a 500, newest record time).
fn keyset_state<T>(
    batch: &crate::sources::cognigy::Batch<T>,
) -> (bool, bool, Option<DateTime<Utc>>) {
    (batch.truncated, batch.ended_on_500, batch.newest)
}
