//! One poll cycle for one tenant: the only place that joins the stages (DESIGN §7).
//!
//! A cycle loads the tenant's cursors, reads its five streams concurrently page by page (each
//! page written with the cursor it leads to in one transaction: `read`, `ingest`), computes from
//! the cursors how far each source has been read (`cursors`), and decides the pending contact
//! groups that horizon allows, a batch per transaction (`decide`); the counters move right after
//! each batch's commit, only for what it newly recorded. A crash, a deadline or a shutdown at any
//! point loses at most the page in flight, and neither loses a contact nor counts one twice. A
//! cycle given a deadline stops reading at four fifths of it and deciding at it, and reports that
//! it has more to do. A failing source never stops the others: its cursor simply does not move.
//! This module does not schedule cycles (see `daemon`).

pub mod cursors;
mod decide;
mod ingest;
mod read;

use crate::config::{Config, Rules, TenantConfig};
use crate::engine::diagnosis::Horizon;
use crate::metrics::{Metrics, OdataCollection};
use crate::readiness::Readiness;
use crate::sources::cognigy::wire::{Analytics, Conversation, Session};
use crate::sources::cognigy::CognigyClient;
use crate::sources::cxone::CxoneClient;
use crate::sources::http::{Budgets, RequestObserver, Source, SourceError};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Duration, Utc};
use cursors::{decode, Cursors, Pass, Stored};
use ingest::Records;
use read::{Limits, StreamRead};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    /// Pages read and written (every stream).
    pub pages: u32,
    /// Of those, the Cognigy pages (OData and logs).
    pub cognigy_pages: u32,
    pub cases: usize,
    pub diagnosed: usize,
    pub pending: u64,
    pub cxone_ok: bool,
    pub cognigy_ok: bool,
    /// A stream stopped at its page cap or the deadline, or deciding did: there is more to do
    /// right away.
    pub more: bool,
    /// The cycle stopped at its deadline.
    pub deadline: bool,
    /// CXone stopped with more to read.
    pub cxone_more: bool,
    pub cxone_ms: u64,
    pub cognigy_ms: u64,
}

impl CycleReport {
    /// Whether the cycle moved anything forward (a page written or a contact decided).
    pub fn progressed(&self) -> bool {
        self.pages > 0 || self.diagnosed > 0
    }
}

/// The pass windows of the OData collections Cognigy writes when a session ends (Sessions,
/// Analytics; see `Poller::odata_windows`).
fn odata_windows(tenant: &TenantConfig, timing: &Timing) -> cursors::Windows {
    let d = |v: std::time::Duration| Duration::milliseconds(v.as_millis() as i64);
    let lag = Duration::seconds(tenant.rules.cognigy_lag_seconds as i64);
    cursors::Windows {
        short: timing.overlap,
        long: d(tenant.cognigy.late_window).max(lag + timing.overlap),
        sweep_every: d(tenant.cognigy.late_sweep_interval),
    }
}

/// The pass windows of the Conversations collection. Cognigy writes a Conversations record
/// "immediately after a message arrives" (docs.cognigy.com/ai/agents/analyze/collecting-data,
/// 2026.1), not when the session ends, so its short passes re-read only
/// [`CONVERSATIONS_REREAD`] (or the overlap, if shorter) and its sweeps reach back the overlap,
/// not the late window (nor the Cognigy lag, which is how long a *session* may take to appear).
/// Conversations are the largest OData collection (a record per message): re-reading five
/// minutes of them every cycle, and an hour every sweep, was most of the steady-state OData
/// requests. A record written later than the overlap is counted in
/// `handover_cognigy_late_records_total{collection="conversations"}` (and alerted on) when a
/// sweep still finds it.
fn conversation_windows(tenant: &TenantConfig, timing: &Timing) -> cursors::Windows {
    cursors::Windows {
        short: timing.overlap.min(CONVERSATIONS_REREAD),
        long: timing.overlap,
        sweep_every: odata_windows(tenant, timing).sweep_every,
    }
}

/// How far before the previous Conversations pass began the next one starts (see
/// `conversation_windows`).
const CONVERSATIONS_REREAD: Duration = Duration::seconds(60);

/// Everything one tenant's cycles need.
pub struct Poller {
    tenant: String,
    rules: Rules,
    cxone: CxoneClient,
    cognigy: CognigyClient,
    cxone_max_pages: u32,
    cognigy_max_pages: u32,
    timing: Timing,
    /// How far back Sessions and Analytics passes start (records appear after their session
    /// ends): `overlap` before the previous pass began, and every `late_sweep_interval` a sweep
    /// `late_window` (at least the Cognigy lag plus the overlap) before the previous sweep began.
    odata_windows: cursors::Windows,
    /// The same for Conversations, whose passes re-read 60 s and sweeps the overlap.
    conversation_windows: cursors::Windows,
    /// The server-side filter terms of the logs (empty: every line is read).
    logs_filter: Vec<String>,
    store: Arc<Mutex<Store>>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    last_prune: Mutex<Option<DateTime<Utc>>>,
}

impl Poller {
    /// Builds the clients of one tenant with request budgets of their own; they report every
    /// request to `metrics`.
    pub fn new(
        tenant: &TenantConfig,
        timing: Timing,
        store: Arc<Mutex<Store>>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
    ) -> Result<Poller, SourceError> {
        let budgets = Budgets::default();
        Poller::with_budgets(tenant, timing, store, metrics, readiness, &budgets)
    }

    /// Builds the clients of one tenant drawing on the budgets of their API hosts in `budgets`
    /// (shared with every other tenant on the same host); they report every request, and the
    /// budgets' use, to `metrics`.
    pub fn with_budgets(
        tenant: &TenantConfig,
        timing: Timing,
        store: Arc<Mutex<Store>>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
        budgets: &Budgets,
    ) -> Result<Poller, SourceError> {
        let cxone_budget = budgets.handle(
            Source::Cxone,
            &tenant.cxone_budget_host(),
            &tenant.cxone.http,
            &tenant.name,
        );
        let cognigy_budget = budgets.handle(
            Source::Cognigy,
            &tenant.cognigy_budget_host(),
            &tenant.cognigy.http,
            &tenant.name,
        );
        metrics.watch_budget(cxone_budget.budget().clone());
        metrics.watch_budget(cognigy_budget.budget().clone());
        let observer: Arc<dyn RequestObserver> = metrics.clone();
        Ok(Poller {
            tenant: tenant.name.clone(),
            rules: tenant.rules.clone(),
            cxone: CxoneClient::with_budget(&tenant.cxone, observer.clone(), cxone_budget)?,
            cognigy: CognigyClient::with_budget(&tenant.cognigy, observer, cognigy_budget)?,
            cxone_max_pages: tenant.cxone.max_pages,
            cognigy_max_pages: tenant.cognigy.max_pages,
            odata_windows: odata_windows(tenant, &timing),
            conversation_windows: conversation_windows(tenant, &timing),
            logs_filter: tenant.cognigy.logs_filter.clone(),
            timing,
            store,
            metrics,
            readiness,
            last_prune: Mutex::new(None),
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The metrics this poller reports to.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Runs one cycle at wall-clock time `now`, reading every stream up to its page cap.
    pub async fn run_cycle(&self, now: DateTime<Utc>) -> Result<CycleReport, CycleError> {
        self.cycle(now, None).await
    }

    /// Runs one cycle that stops cleanly by `deadline`: it asks for no page (and waits for none
    /// in flight) after four fifths of the time left, and decides no further batch after it.
    pub async fn run_cycle_until(
        &self,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<CycleReport, CycleError> {
        self.cycle(now, Some(deadline)).await
    }

    async fn cycle(
        &self,
        now: DateTime<Utc>,
        deadline: Option<Instant>,
    ) -> Result<CycleReport, CycleError> {
        let start = Instant::now();
        let read_deadline =
            deadline.map(|d| start + d.saturating_duration_since(start).mul_f64(0.8));
        let mut report = self.read_all(now, read_deadline).await?;
        let (horizon, read, decidable_by) = self.horizon_after(&report, now).await?;
        let decided = self.decide(horizon, decidable_by, deadline).await?;
        report.cases = decided.cases;
        report.diagnosed = decided.diagnosed;
        report.more |= decided.cut_short;
        report.deadline |= decided.cut_short;

        self.housekeeping(now, &mut report).await;
        self.publish_source(Source::Cxone, report.cxone_ok, now);
        self.publish_source(Source::Cognigy, report.cognigy_ok, now);
        if read.cxone > DateTime::<Utc>::UNIX_EPOCH {
            self.metrics
                .set_watermark(&self.tenant, Source::Cxone, read.cxone);
        }
        if read.cognigy > DateTime::<Utc>::UNIX_EPOCH {
            self.metrics
                .set_watermark(&self.tenant, Source::Cognigy, read.cognigy);
        }
        Ok(report)
    }

    /// Reads the five streams at once, each from its cursor (or the initial lookback), page by
    /// page, each page stored with its cursor; the report says what was read and how it ended.
    async fn read_all(
        &self,
        now: DateTime<Utc>,
        read_deadline: Option<Instant>,
    ) -> Result<CycleReport, CycleError> {
        let loaded = self.load_cursors().await?;
        let lookback_start = cursors::before(now, self.timing.initial_lookback);
        fn first<P: cursors::Position>(
            p: &Option<Pass<P>>,
            lookback_start: DateTime<Utc>,
            now: DateTime<Utc>,
        ) -> Pass<P> {
            p.clone()
                .unwrap_or_else(|| Pass::first(lookback_start, now))
        }
        let cxone_limits = Limits {
            max_pages: self.cxone_max_pages,
            deadline: read_deadline,
        };
        let cognigy_limits = Limits {
            max_pages: self.cognigy_max_pages,
            deadline: read_deadline,
        };
        let (cxone, sessions, conversations, analytics, logs) = tokio::join!(
            self.read_cxone(first(&loaded.cxone, lookback_start, now), cxone_limits),
            self.read_keyset(
                cursors::SESSIONS,
                OdataCollection::Sessions,
                first(&loaded.sessions, lookback_start, now),
                cognigy_limits,
                |p| self.cognigy.sessions_page(p),
                Records::Sessions as fn(Vec<Session>) -> Records,
            ),
            self.read_keyset(
                cursors::CONVERSATIONS,
                OdataCollection::Conversations,
                first(&loaded.conversations, lookback_start, now),
                cognigy_limits,
                |p| self.cognigy.conversations_page(p),
                Records::Conversations as fn(Vec<Conversation>) -> Records,
            ),
            self.read_keyset(
                cursors::ANALYTICS,
                OdataCollection::Analytics,
                first(&loaded.analytics, lookback_start, now),
                cognigy_limits,
                |p| self.cognigy.analytics_page(p),
                Records::Analytics as fn(Vec<Analytics>) -> Records,
            ),
            self.read_logs(first(&loaded.logs, lookback_start, now), cognigy_limits),
        );
        let cxone = cxone?;
        let cognigy = [sessions?, conversations?, analytics?, logs?];
        let cognigy_pages = cognigy.iter().map(|s| s.pages).sum::<u32>();
        Ok(CycleReport {
            cxone_ok: cxone.failed.is_none(),
            cognigy_ok: cognigy.iter().all(|s| s.failed.is_none()),
            contacts_read: cxone.records,
            cognigy_records_read: cognigy.iter().map(|s| s.records).sum(),
            cognigy_pages,
            pages: cxone.pages + cognigy_pages,
            cxone_more: cxone.more,
            more: cxone.more || cognigy.iter().any(|s| s.more),
            deadline: cxone.deadline || cognigy.iter().any(|s| s.deadline),
            cxone_ms: cxone.elapsed.as_millis() as u64,
            cognigy_ms: cognigy
                .iter()
                .map(|s: &StreamRead| s.elapsed.as_millis() as u64)
                .max()
                .unwrap_or(0),
            ..CycleReport::default()
        })
    }

    /// After the reads: records each source's health (since when it has been failing, kept in
    /// the store across restarts: only a source unavailable for `max_pending_seconds` of wall
    /// time gives a contact up) and returns the horizon the rules see, how far each source was
    /// read, and the end time up to which contact groups can be decided.
    async fn horizon_after(
        &self,
        report: &CycleReport,
        now: DateTime<Utc>,
    ) -> Result<(Horizon, cursors::ReadHorizon, DateTime<Utc>), CycleError> {
        let (cxone_failed, cognigy_failed) = (!report.cxone_ok, !report.cognigy_ok);
        let (cxone_down, cognigy_down) = self
            .with_store(move |store, tenant| {
                Ok((
                    store.record_source_health(tenant, cursors::CXONE, cxone_failed, now)?,
                    store.record_source_health(tenant, "cognigy", cognigy_failed, now)?,
                ))
            })
            .await?;
        let read = self.load_cursors().await?.horizon();
        let horizon = Horizon {
            now,
            cognigy_read_until: read.cognigy,
            cognigy_swept_until: read.cognigy_swept,
            cognigy_short_seconds: self.odata_windows.short.num_seconds(),
            cxone_read_until: read.cxone,
            settle_seconds: self.timing.settle.num_seconds(),
            cognigy_unavailable_since: cognigy_down,
            cxone_unavailable_since: cxone_down,
        };
        let max_pending = Duration::seconds(self.rules.max_pending_seconds as i64);
        let given_up = cursors::GivenUp {
            cxone: horizon.cxone_given_up(max_pending),
            cognigy: horizon.cognigy_given_up(max_pending),
        };
        let decidable_by = cursors::decidable_by(
            read,
            self.timing.settle,
            Duration::seconds(self.rules.cognigy_lag_seconds as i64),
            self.odata_windows.short,
            given_up,
            now,
        );
        Ok((horizon, read, decidable_by))
    }

    /// The tenant's cursors as the store holds them.
    async fn load_cursors(&self) -> Result<Cursors, CycleError> {
        self.with_store(|store, tenant| {
            let mut rows = std::collections::HashMap::new();
            for name in cursors::NAMES {
                if let Some(c) = store.cursor(tenant, name)? {
                    rows.insert(name, c);
                }
            }
            let legacy = rows
                .get(cursors::LEGACY_COGNIGY_READ_UNTIL)
                .map(|c| c.watermark);
            fn pass<P: Stored>(
                rows: &std::collections::HashMap<&str, crate::store::Cursor>,
                name: &str,
                legacy: impl FnOnce(&crate::store::Cursor) -> Option<DateTime<Utc>>,
            ) -> Option<Pass<P>> {
                rows.get(name)
                    .map(|c| decode(c.watermark, &c.detail, legacy(c)))
            }
            Ok(Cursors {
                // An old CXone row without detail was a completed read up to its watermark.
                cxone: pass(&rows, cursors::CXONE, |c| {
                    c.detail.is_empty().then_some(c.watermark)
                }),
                sessions: pass(&rows, cursors::SESSIONS, |_| legacy),
                conversations: pass(&rows, cursors::CONVERSATIONS, |_| legacy),
                analytics: pass(&rows, cursors::ANALYTICS, |_| legacy),
                logs: pass(&rows, cursors::LOGS, |_| legacy),
            })
        })
        .await
    }

    /// Pruning and the pending count, after the cycle's commits: a failure here is logged, and
    /// loses nothing.
    async fn housekeeping(&self, now: DateTime<Utc>, report: &mut CycleReport) {
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
    }

    fn publish_source(&self, source: Source, ok: bool, now: DateTime<Utc>) {
        if ok {
            self.metrics.poll_succeeded(&self.tenant, source, now);
            self.readiness.mark_success(&self.tenant, source);
        } else {
            self.metrics.poll_failed(&self.tenant, source);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// At the defaults, Sessions and Analytics re-read five minutes each pass and sweep the late
    /// window every 15 minutes, while Conversations (written as each message arrives) re-read
    /// 60 s and sweep only the overlap, whatever the Cognigy lag.
    #[test]
    fn conversations_re_read_less_than_the_collections_written_at_session_end() {
        let text = include_str!("../../../../tests/fixtures/config/minimal.toml");
        let config = crate::config::parse(text, "minimal.toml", &|_| Some("s".into()))
            .expect("the minimal fixture parses");
        let timing = Timing::from_config(&config);
        let tenant = &config.tenants[0];
        let at_session_end = odata_windows(tenant, &timing);
        assert_eq!(
            at_session_end,
            cursors::Windows {
                short: Duration::minutes(5),
                long: Duration::minutes(45),
                sweep_every: Duration::minutes(15),
            }
        );
        assert_eq!(
            conversation_windows(tenant, &timing),
            cursors::Windows {
                short: Duration::seconds(60),
                long: Duration::minutes(5),
                sweep_every: Duration::minutes(15),
            }
        );
    }
}
