//! The correlation steps of `check`: how sessions carry the CXone contact id, and how many bot
//! contacts find their session, with the daemon's own correlation.

use super::Steps;
use crate::config::TenantConfig;
use crate::engine::correlation::{correlate, usable_contact_id, Inputs, MatchKind};
use crate::sources::cognigy::wire::{Analytics, Conversation, Session};
use chrono::{DateTime, Duration, Utc};
use std::collections::{BTreeMap, HashSet};

/// How sessions carry the CXone contact id: custom field, SIP header, neither.
pub(super) fn contact_id_step(
    steps: &mut Steps,
    tenant: &TenantConfig,
    sessions: &[Session],
    conversations: &[Conversation],
    analytics: &[Analytics],
) {
    let field = tenant.rules.contact_id_field;
    let custom: HashSet<&str> = analytics
        .iter()
        .filter(|a| a.custom(field).and_then(usable_contact_id).is_some())
        .map(|a| a.session_id.as_str())
        .collect();
    let header: HashSet<&str> = conversations
        .iter()
        .filter(|c| {
            c.input_data
                .master_contact_id
                .as_deref()
                .or(c.input_data.spawned_contact_id.as_deref())
                .and_then(usable_contact_id)
                .is_some()
        })
        .map(|c| c.session_id.as_str())
        .collect();
    let ids: HashSet<&str> = sessions.iter().map(|s| s.session_id.as_str()).collect();
    let total = ids.len().max(1);
    let by_custom = ids.iter().filter(|s| custom.contains(*s)).count();
    let by_header = ids
        .iter()
        .filter(|s| !custom.contains(*s) && header.contains(*s))
        .count();
    let neither = ids.len() - by_custom - by_header;
    let pct = |n: usize| 100.0 * n as f64 / total as f64;
    let detail = format!(
        "of {} session(s): custom{field} {:.0} %, SIP header only {:.0} %, neither {:.0} %",
        ids.len(),
        pct(by_custom),
        pct(by_header),
        pct(neither)
    );
    let flow_change = format!(
        "make correlation exact: in the Cognigy flow, copy the CXone master contact id (the \
         X-InContact-MasterId SIP header) into Analytics custom field custom{field} with an \
         Overwrite Analytics node (or `analyticsdata.custom{field}` in a Code node) at the start \
         of the call (docs/setup.md, the flow change); \
         without it sessions are matched by caller number and time, which fails for hidden or \
         shared numbers"
    );
    if by_custom > 0 {
        steps.pass("correlation.contact_id", detail);
    } else if by_header > 0 {
        steps.warn(
            "correlation.contact_id",
            format!("{detail}: no session carries the id in custom{field}"),
            flow_change,
        );
    } else {
        steps.fail(
            "correlation.contact_id",
            format!("{detail}: no session carries the contact id"),
            flow_change,
        );
    }
}

/// The share of bot contacts (old enough for their session to be written) that correlate.
pub(super) fn bot_contacts_step(
    steps: &mut Steps,
    tenant: &TenantConfig,
    inputs: Inputs<'_>,
    now: DateTime<Utc>,
) {
    let cases = correlate(inputs, &tenant.rules);
    let due = now - Duration::seconds(tenant.rules.cognigy_lag_seconds as i64);
    let mut total = 0usize;
    let mut by_kind: BTreeMap<MatchKind, usize> = BTreeMap::new();
    for case in cases.iter().filter(|c| c.bot_entry && c.ended_at() <= due) {
        total += 1;
        if let Some(session) = &case.session {
            *by_kind.entry(session.match_kind).or_insert(0) += 1;
        }
    }
    if total == 0 {
        steps.skip(
            "correlation.bot_contacts",
            &format!(
                "no bot contact ended more than cognigy_lag_seconds ({}) ago",
                tenant.rules.cognigy_lag_seconds
            ),
        );
        return;
    }
    let matched: usize = by_kind.values().sum();
    let share = 100.0 * matched as f64 / total as f64;
    let kinds: Vec<String> = by_kind
        .iter()
        .map(|(k, n)| format!("{} {n}", k.as_str()))
        .collect();
    let detail = format!(
        "{matched} of {total} bot contact(s) ended more than cognigy_lag_seconds ago have their \
         session ({share:.0} %{}{})",
        if kinds.is_empty() { "" } else { ": " },
        kinds.join(", ")
    );
    let hint = "contacts without a session are counted as no_bot_session: check that the bot \
                entry ids route to this Cognigy project, that the flow change is in (custom \
                field), and that cognigy_lag_seconds covers how late sessions are written"
        .to_owned();
    if share >= 90.0 {
        steps.pass("correlation.bot_contacts", detail);
    } else if share >= 50.0 {
        steps.warn("correlation.bot_contacts", detail, hint);
    } else {
        steps.fail("correlation.bot_contacts", detail, hint);
    }
}
