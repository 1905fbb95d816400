//! Ingest: one page of one stream, written with the cursor it leads to in ONE store transaction,
//! so that a deadline, a crash or a shutdown loses at most the page in flight and never moves a
//! cursor past records that were not written. Nothing is decided here (see `decide`).

use super::cursors::{encode, Pass, Stored};
use super::{CycleError, Poller};
use crate::sources::cognigy::wire::{Analytics, Conversation, LogEntry, Session};
use crate::sources::cxone::wire::CompletedContact;
use crate::store::CycleCommit;

/// The records of one page.
pub(super) enum Records {
    Contacts(Vec<CompletedContact>),
    Sessions(Vec<Session>),
    Conversations(Vec<Conversation>),
    Analytics(Vec<Analytics>),
    Logs(Vec<LogEntry>),
}

impl Poller {
    /// Writes `records` and the stream's new cursor `pass` (under `name`) in one transaction.
    pub(super) async fn ingest_page<P: Stored>(
        &self,
        name: &'static str,
        records: Records,
        pass: &Pass<P>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), CycleError> {
        let (watermark, detail) = encode(pass);
        self.with_store(move |store, tenant| {
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
            store.commit_cycle(tenant, commit).map(|_| ())
        })
        .await
    }
}
