//! Decide: loads, a bounded batch at a time, the pending contact groups that the read horizon may
//! let a cycle decide, with the Cognigy records of their time span; correlates and diagnoses
//! them; and commits each batch's diagnoses in one transaction, moving the counters right after
//! that commit and only for what it newly recorded. A group whose last contact ended after
//! `decidable_by` would only be found pending again, so it is not even loaded: memory stays
//! bounded by one batch however long a backlog is. Reading is not done here (see `read`).

use super::cursors::before;
use super::{CycleError, Poller};
use crate::config::Rules;
use crate::engine::correlation::Inputs;
use crate::engine::diagnosis::Horizon;
use crate::engine::{self, decide, Decision};
use crate::sources::cxone::wire::CompletedContact;
use crate::store::{CycleCommit, RipeKey};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashSet;
use std::time::Instant;

/// How many pending groups one decide batch loads (about 2.3 contacts and 10 Cognigy records
/// each at the simulator's mix): the bound on a cycle's working set (issue 5).
const DECIDE_BATCH_GROUPS: usize = 10_000;

/// What the decide step of one cycle did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Decided {
    pub cases: usize,
    pub diagnosed: usize,
    /// The deadline passed with batches left (they are decided next cycle).
    pub cut_short: bool,
}

impl Poller {
    /// Decides the pending groups that ended by `decidable_by`, batch by batch, until done or
    /// `deadline` (checked between batches; a batch once loaded is committed).
    pub(super) async fn decide(
        &self,
        horizon: Horizon,
        decidable_by: DateTime<Utc>,
        deadline: Option<Instant>,
    ) -> Result<Decided, CycleError> {
        let now = horizon.now;
        let settle = self.timing.settle;
        let lag = Duration::seconds(self.rules.cognigy_lag_seconds as i64);
        let window = Duration::seconds(self.rules.correlation_window_seconds as i64);
        // Sessions start after their contact (caller matching allows a window); every other
        // Cognigy record comes later still, and none is needed past the case's settle time.
        let lookback = window + Duration::minutes(1);
        let reach = settle + lag + window;
        let mut decided = Decided::default();
        let mut after: Option<RipeKey> = None;
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                decided.cut_short = true;
                break;
            }
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
            let decisions = decide(inputs, &self.rules, &horizon);
            decided.cases += decisions.len();
            let ignored = not_bot_contacts(&contacts, &decisions, &self.rules, &horizon, settle);
            let diagnoses = engine::diagnoses(decisions);
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
            decided.diagnosed += recorded;
            match last {
                Some(key) => after = Some(key),
                None => break,
            }
        }
        Ok(decided)
    }
}

/// Contacts that belong to no case and can no longer become one: Cognigy was read past their
/// lag (plus settle) and still no session points to them, and they did not enter the bot; or
/// Cognigy has been unavailable for `max_pending_seconds`, so none can be expected to.
fn not_bot_contacts(
    contacts: &[CompletedContact],
    decisions: &[Decision<'_>],
    rules: &Rules,
    horizon: &Horizon,
    settle: Duration,
) -> Vec<i64> {
    let max_pending = Duration::seconds(rules.max_pending_seconds as i64);
    let in_case: HashSet<i64> = decisions
        .iter()
        .flat_map(|d| d.case.contacts.iter().map(|x| x.contact_id))
        .collect();
    let lag = Duration::seconds(rules.cognigy_lag_seconds as i64) + settle;
    contacts
        .iter()
        .filter(|c| {
            !in_case.contains(&c.contact_id)
                && (c.ended_at() + lag <= horizon.cognigy_for(lag)
                    || horizon.cognigy_given_up(max_pending))
        })
        .map(|c| c.contact_id)
        .collect()
}
