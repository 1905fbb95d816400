//! Ingest: one page of one stream, written with the cursor it leads to in ONE store transaction,
//! so that a deadline, a crash or a shutdown loses at most the page in flight and never moves a
//! cursor past records that were not written; and, for Cognigy OData pages, how late each record
//! stored for the first time appeared (first seen minus its own time). Nothing is decided here
//! (see `decide`).

use super::cursors::{encode, Pass, Stored};
use super::{CycleError, Poller};
use crate::metrics::OdataCollection;
use crate::sources::cognigy::wire::{Analytics, Conversation, LogEntry, Session};
use crate::sources::cxone::wire::CompletedContact;
use crate::store::CycleCommit;
use chrono::{DateTime, Duration, Utc};

/// The records of one page.
pub(super) enum Records {
    Contacts(Vec<CompletedContact>),
    Sessions(Vec<Session>),
    Conversations(Vec<Conversation>),
    Analytics(Vec<Analytics>),
    Logs(Vec<LogEntry>),
}

/// Which first-seen records of an OData page have a meaningful delay, and when one is late.
#[derive(Debug, Clone, Copy)]
pub(super) struct DelayMeasure {
    pub collection: OdataCollection,
    /// Records stamped before this are not measured: they were read for the first time by a
    /// catch-up (first start, or after the daemon was away), not because they appeared late.
    pub since: DateTime<Utc>,
    /// A record first seen longer than this after its own time counts as late.
    pub late_after: Duration,
}

impl DelayMeasure {
    /// The measure for a page read by `pass` (the cursor before the page) at `now`: records are
    /// measured only while the stream's passes keep up (the last completed one began within the
    /// late window), and only those stamped within the late window before that pass began.
    pub fn of<P>(
        collection: OdataCollection,
        pass: &Pass<P>,
        late_window: Duration,
        now: DateTime<Utc>,
    ) -> Option<DelayMeasure> {
        let began = pass.complete_at?;
        (now.signed_duration_since(began) <= late_window).then(|| DelayMeasure {
            collection,
            since: super::cursors::before(began, late_window),
            late_after: late_window,
        })
    }
}

impl Poller {
    /// Writes `records` and the stream's new cursor `pass` (under `name`) in one transaction;
    /// with `measure`, observes the delay of every record stored for the first time.
    pub(super) async fn ingest_page<P: Stored>(
        &self,
        name: &'static str,
        records: Records,
        pass: &Pass<P>,
        now: DateTime<Utc>,
        measure: Option<DelayMeasure>,
    ) -> Result<(), CycleError> {
        let (watermark, detail) = encode(pass);
        let first_seen = self
            .with_store(move |store, tenant| {
                let cursors = [(name, watermark, detail)];
                let mut commit = CycleCommit {
                    cursors: &cursors,
                    ..CycleCommit::empty(now)
                };
                match &records {
                    Records::Contacts(r) => commit.contacts = r,
                    Records::Sessions(r) => commit.sessions = r,
                    Records::Conversations(r) => commit.conversations = r,
                    Records::Analytics(r) => commit.analytics = r,
                    Records::Logs(r) => commit.logs = r,
                }
                store.commit_page(tenant, commit)
            })
            .await?;
        if let Some(m) = measure {
            let seen_at = Utc::now();
            for t in first_seen.into_iter().filter(|t| *t >= m.since) {
                let delay = seen_at.signed_duration_since(t).max(Duration::zero());
                let seconds = delay.num_milliseconds() as f64 / 1000.0;
                self.metrics.record_delay(
                    &self.tenant,
                    m.collection,
                    seconds,
                    delay > m.late_after,
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::cognigy::KeysetPosition;
    use chrono::TimeZone;

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 20, 9, 0, 0).unwrap() + Duration::minutes(minute)
    }

    fn pass(complete_at: Option<i64>) -> Pass<KeysetPosition> {
        Pass {
            position: KeysetPosition::after(at(0)),
            started: at(60),
            fresh: false,
            complete_at: complete_at.map(at),
            sweep: false,
            swept_at: None,
        }
    }

    /// Delays are measured only while passes keep up (not in a first catch-up, not after a
    /// long absence), for records stamped within the late window before the last pass began.
    #[test]
    fn delays_are_measured_only_while_passes_keep_up() {
        let window = Duration::minutes(45);
        let c = OdataCollection::Analytics;
        assert!(DelayMeasure::of(c, &pass(None), window, at(60)).is_none());
        assert!(DelayMeasure::of(c, &pass(Some(0)), window, at(60)).is_none());
        let m = DelayMeasure::of(c, &pass(Some(50)), window, at(60)).expect("keeping up");
        assert_eq!(m.since, at(5));
        assert_eq!(m.late_after, window);
    }
}
