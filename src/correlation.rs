//! Correlation: the pure join of CXone contacts with Cognigy sessions into cases (DESIGN §4).
//!
//! A case is one contact group (a master contact plus every contact whose `masterContactId` points
//! to it) that is a bot contact, with the Cognigy session that belongs to it, if any, and that
//! session's Conversations, Analytics and log lines. A session gets its master contact id from,
//! in order, the configured Analytics custom field, the `X-InContact-MasterId` SIP header in a
//! Conversations record's `inputData`, or (fuzzy) the caller number and start time. The match kind
//! is kept as evidence. This module fetches nothing and judges nothing: see `diagnosis`.

use crate::config::Rules;
use crate::logline::{classify, HandoverLog};
use crate::sources::cognigy::wire::{Analytics, Conversation, LogEntry, Session};
use crate::sources::cxone::wire::CompletedContact;
use chrono::{DateTime, Duration, Utc};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use serde::{Deserialize, Serialize};
use std::collections::hash_map;

/// The contact id Cognigy's extension uses to mean "test, do not call CXone".
pub const SENTINEL_CONTACT_ID: &str = "100000000000";

/// CXone media type id of a phone call.
pub const MEDIA_TYPE_PHONE: i64 = 4;

/// How a session was tied to its contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    CustomField,
    SipHeader,
    CallerTime,
}

impl MatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKind::CustomField => "custom_field",
            MatchKind::SipHeader => "sip_header",
            MatchKind::CallerTime => "caller_time",
        }
    }
}

/// Everything one correlation pass reads. Slices may hold records of many cycles; duplicates by
/// id are dropped (the first one wins).
#[derive(Debug, Default, Clone, Copy)]
pub struct Inputs<'a> {
    pub contacts: &'a [CompletedContact],
    pub sessions: &'a [Session],
    pub conversations: &'a [Conversation],
    pub analytics: &'a [Analytics],
    pub logs: &'a [LogEntry],
}

/// A log line with its classification.
#[derive(Debug, Clone)]
pub struct CaseLog<'a> {
    pub entry: &'a LogEntry,
    pub event: HandoverLog,
}

/// The Cognigy side of a case.
#[derive(Debug, Clone)]
pub struct CaseSession<'a> {
    pub session: &'a Session,
    pub match_kind: MatchKind,
    /// The contact id the session itself carried (custom field or SIP header), as text, if any;
    /// may be empty or the sentinel when the flow lacked context.
    pub carried_contact_id: Option<String>,
    pub conversations: Vec<&'a Conversation>,
    pub analytics: Vec<&'a Analytics>,
}

/// One bot contact group with everything correlated to it.
#[derive(Debug, Clone)]
pub struct Case<'a> {
    /// The master contact id: the join key and the id a diagnosis is reported under.
    pub master_contact_id: i64,
    /// The group's contacts, master first when present, then by start time.
    pub contacts: Vec<&'a CompletedContact>,
    /// Whether a contact of the group entered through a configured bot point of contact or skill.
    pub bot_entry: bool,
    pub session: Option<CaseSession<'a>>,
    /// Handover log lines tied to the session (by `meta.sessionId`) or naming a group contact.
    pub logs: Vec<CaseLog<'a>>,
    /// When the group's first contact started.
    started_at: DateTime<Utc>,
    /// When the group's last known contact ended.
    ended_at: DateTime<Utc>,
}

impl Case<'_> {
    /// The master contact record, or the earliest contact when the master is not (yet) known.
    pub fn primary(&self) -> &CompletedContact {
        // A case is only ever built from a group holding at least one contact (`correlate`).
        self.contacts[0]
    }

    /// When the group's last known contact ended.
    pub fn ended_at(&self) -> DateTime<Utc> {
        self.ended_at
    }

    /// When the group's first contact started.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.started_at
    }

    /// Whether the master contact's own record is among the group's contacts.
    pub fn has_master(&self) -> bool {
        // `correlate` puts the master contact first when the group has it.
        self.contacts
            .first()
            .is_some_and(|c| c.contact_id == self.master_contact_id)
    }
}

/// Normalises a phone number or SIP/tel URI to E.164 (`+` and digits) for caller matching.
/// Returns `None` when nothing number-like remains.
pub fn normalize_e164(raw: &str) -> Option<String> {
    let mut s = raw.trim();
    for prefix in ["sip:", "sips:", "tel:"] {
        // `get` rather than slicing: a caller id may hold non-ASCII text (webchat user names).
        if s.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        {
            s = &s[prefix.len()..];
        }
    }
    if let Some(at) = s.find('@') {
        s = &s[..at];
    }
    let plus = s.starts_with('+');
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 3 {
        return None;
    }
    if plus {
        Some(format!("+{digits}"))
    } else if let Some(rest) = digits.strip_prefix("00") {
        Some(format!("+{rest}"))
    } else {
        Some(format!("+{digits}"))
    }
}

/// Parses a carried contact id; `None` for empty, non-numeric or the sentinel.
pub fn usable_contact_id(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.is_empty() || t == SENTINEL_CONTACT_ID {
        return None;
    }
    t.parse::<i64>().ok().filter(|id| *id > 0)
}

/// A contact group being collected, with what the cases need of its members computed while
/// the contacts are read in order (later passes then need not revisit every member).
struct Group<'a> {
    members: Vec<&'a CompletedContact>,
    bot_entry: bool,
    started_at: DateTime<Utc>,
    ended_at: DateTime<Utc>,
}

/// Records of one kind grouped by the session they belong to: `of(slot)` is every record of the
/// session in input order. Built by counting (one hash lookup per record, two flat arrays)
/// rather than a map of growing vectors, which was a third of correlation's time (issue 5).
struct BySession<'a, T> {
    starts: Vec<u32>,
    records: Vec<&'a T>,
}

impl<'a, T> BySession<'a, T> {
    fn build(
        records: &'a [T],
        slot_of: &HashMap<&str, u32>,
        sessions: usize,
        session_id: impl Fn(&T) -> &str,
    ) -> BySession<'a, T> {
        let slots: Vec<u32> = records
            .iter()
            .map(|r| slot_of.get(session_id(r)).copied().unwrap_or(u32::MAX))
            .collect();
        let mut starts = vec![0u32; sessions + 1];
        for &slot in &slots {
            if slot != u32::MAX {
                starts[slot as usize + 1] += 1;
            }
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next: Vec<u32> = starts[..sessions].to_vec();
        let mut grouped: Vec<Option<&'a T>> = vec![None; starts[sessions] as usize];
        for (record, &slot) in records.iter().zip(&slots) {
            if slot != u32::MAX {
                let at = &mut next[slot as usize];
                grouped[*at as usize] = Some(record);
                *at += 1;
            }
        }
        BySession {
            starts,
            // Every position was filled: the counts above were taken over the same records.
            records: grouped.into_iter().flatten().collect(),
        }
    }

    fn of(&self, slot: usize) -> Vec<&'a T> {
        let (from, to) = (self.starts[slot] as usize, self.starts[slot + 1] as usize);
        self.records[from..to].to_vec()
    }
}

/// Joins contacts and sessions into cases, one per bot contact group, ordered by master id.
pub fn correlate<'a>(inputs: Inputs<'a>, rules: &Rules) -> Vec<Case<'a>> {
    let is_entry = |c: &CompletedContact| {
        rules
            .bot_entry_points_of_contact
            .contains(&c.point_of_contact_id)
            || rules.bot_entry_skills.contains(&c.skill_id)
    };

    // Contact groups, deduplicated by contact id.
    let mut group_of: HashMap<i64, i64> = HashMap::with_capacity(inputs.contacts.len());
    let mut groups: HashMap<i64, Group<'a>> = HashMap::with_capacity(inputs.contacts.len());
    for contact in inputs.contacts {
        if contact.media_type_id.is_some_and(|m| m != MEDIA_TYPE_PHONE) {
            continue;
        }
        let group_id = contact.group_id();
        if group_of.insert(contact.contact_id, group_id).is_some() {
            // A second copy of a contact already grouped: the first one wins.
            continue;
        }
        let started = contact.contact_start_date;
        let ended = contact.ended_at();
        let group = groups.entry(group_id).or_insert_with(|| Group {
            members: Vec::new(),
            bot_entry: false,
            started_at: started,
            ended_at: ended,
        });
        group.members.push(contact);
        group.bot_entry |= is_entry(contact);
        group.started_at = group.started_at.min(started);
        group.ended_at = group.ended_at.max(ended);
    }

    // Sessions, each id once (the first record wins), and their Cognigy records. The same record
    // can be in the inputs twice (re-read by an overlapping window and loaded from the store):
    // the first copy of an id wins, checked per session (a session holds a handful of records).
    let mut slot_of: HashMap<&str, u32> = HashMap::with_capacity(inputs.sessions.len());
    let mut sessions: Vec<&'a Session> = Vec::with_capacity(inputs.sessions.len());
    for session in inputs.sessions {
        let next = sessions.len() as u32;
        if let hash_map::Entry::Vacant(v) = slot_of.entry(session.session_id.as_str()) {
            v.insert(next);
            sessions.push(session);
        }
    }
    let conversations = BySession::build(inputs.conversations, &slot_of, sessions.len(), |c| {
        c.session_id.as_str()
    });
    let analytics = BySession::build(inputs.analytics, &slot_of, sessions.len(), |a| {
        a.session_id.as_str()
    });

    // Tie each session to a group: custom field, then SIP header; the rest wait for caller/time.
    let mut session_for_group: HashMap<i64, CaseSession<'a>> =
        HashMap::with_capacity(sessions.len());
    let mut unkeyed: Vec<CaseSession<'a>> = Vec::new();
    for (slot, session) in sessions.iter().enumerate() {
        let mut conv = conversations.of(slot);
        let mut anal = analytics.of(slot);
        keep_first_by_id(&mut conv, |c| (c.timestamp, c.id.as_deref()));
        keep_first_by_id(&mut anal, |a| (a.timestamp, a.id.as_deref()));
        let custom = anal.iter().find_map(|a| a.custom(rules.contact_id_field));
        let header = conv
            .iter()
            .find_map(|c| c.input_data.master_contact_id.as_deref())
            .or_else(|| {
                conv.iter()
                    .find_map(|c| c.input_data.spawned_contact_id.as_deref())
            });
        let keyed = [
            (MatchKind::CustomField, custom),
            (MatchKind::SipHeader, header),
        ]
        .into_iter()
        .find_map(|(kind, text)| {
            let text = text?;
            let id = usable_contact_id(text)?;
            let group = group_of.get(&id).copied().unwrap_or(id);
            Some((kind, text, group))
        });
        match keyed {
            Some((kind, text, group)) => {
                let candidate = CaseSession {
                    session,
                    match_kind: kind,
                    carried_contact_id: Some(text.to_owned()),
                    conversations: conv,
                    analytics: anal,
                };
                insert_preferred(&mut session_for_group, group, candidate);
            }
            None => unkeyed.push(CaseSession {
                session,
                match_kind: MatchKind::CallerTime,
                carried_contact_id: custom.or(header).map(str::to_owned),
                conversations: conv,
                analytics: anal,
            }),
        }
    }

    // Caller/time matching for sessions without a usable id: candidates are bot-entry groups
    // without a keyed session, by normalised caller number.
    if !unkeyed.is_empty() {
        let mut by_caller: HashMap<String, Vec<(i64, &'a CompletedContact)>> = HashMap::new();
        for (group_id, group) in &groups {
            if !group.bot_entry || session_for_group.contains_key(group_id) {
                continue;
            }
            let members = &group.members;
            let master = members
                .iter()
                .find(|c| c.contact_id == *group_id)
                .or_else(|| members.iter().min_by_key(|c| c.contact_start_date))
                .copied();
            if let Some(master) = master {
                if let Some(number) = normalize_e164(&master.from_address) {
                    by_caller
                        .entry(number)
                        .or_default()
                        .push((*group_id, master));
                }
            }
        }
        let window = Duration::seconds(rules.correlation_window_seconds as i64);
        unkeyed.sort_by(|a, b| {
            (a.session.started_at, &a.session.session_id)
                .cmp(&(b.session.started_at, &b.session.session_id))
        });
        for candidate in unkeyed {
            let session = candidate.session;
            let Some(number) = normalize_e164(&session.user_id) else {
                continue;
            };
            let Some(candidates) = by_caller.get(&number) else {
                continue;
            };
            let best = candidates
                .iter()
                .filter(|(group_id, _)| !session_for_group.contains_key(group_id))
                .filter_map(|(group_id, c)| {
                    let gap = session.started_at - c.contact_start_date;
                    (gap >= Duration::zero() && gap <= window).then_some((gap, *group_id))
                })
                .min();
            if let Some((_, group_id)) = best {
                session_for_group.insert(group_id, candidate);
            }
        }
    }

    // Log lines: by session id, else by the contact id in the message.
    let mut session_group: HashMap<&str, i64> = HashMap::with_capacity(session_for_group.len());
    for (group_id, cs) in &session_for_group {
        session_group.insert(cs.session.session_id.as_str(), *group_id);
    }
    let mut logs_for_group: HashMap<i64, Vec<CaseLog<'a>>> = HashMap::new();
    let mut seen_logs: HashSet<&str> = HashSet::with_capacity(inputs.logs.len());
    for entry in inputs.logs {
        if let Some(id) = entry.id.as_deref() {
            if !seen_logs.insert(id) {
                continue;
            }
        }
        let Some(event) = classify(&entry.msg, &rules.log_patterns) else {
            continue;
        };
        let by_session = entry
            .meta
            .session_id
            .as_deref()
            .and_then(|sid| session_group.get(sid).copied());
        let by_contact = || {
            let id = usable_contact_id(event.contact_id()?)?;
            Some(group_of.get(&id).copied().unwrap_or(id))
        };
        if let Some(group_id) = by_session.or_else(by_contact) {
            logs_for_group
                .entry(group_id)
                .or_default()
                .push(CaseLog { entry, event });
        }
    }

    let mut cases = Vec::with_capacity(session_for_group.len());
    for (group_id, group) in groups {
        let session = session_for_group.remove(&group_id);
        if !group.bot_entry && session.is_none() {
            continue;
        }
        let mut members = group.members;
        // Contact ids are unique within a group, so the order is total and need not be stable.
        members.sort_unstable_by_key(|c| {
            (c.contact_id != group_id, c.contact_start_date, c.contact_id)
        });
        let mut logs = logs_for_group.remove(&group_id).unwrap_or_default();
        logs.sort_by_key(|l| l.entry.timestamp);
        cases.push(Case {
            master_contact_id: group_id,
            contacts: members,
            bot_entry: group.bot_entry,
            session,
            logs,
            started_at: group.started_at,
            ended_at: group.ended_at,
        });
    }
    // Ordered by master id (unique, so unstable is exact). A case is large, so the ids are
    // sorted and each case moved once, rather than the cases being swapped around by the sort.
    let mut order: Vec<(i64, usize)> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| (c.master_contact_id, i))
        .collect();
    order.sort_unstable();
    let mut slots: Vec<Option<Case<'a>>> = cases.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(_, i)| slots[i].take())
        .collect()
}

/// Drops every record whose id an earlier record of `records` already has (records without an
/// id are all kept). `key` gives a record's time and id: a copy of a record has the same time
/// (Cognigy records are immutable), so times are compared first and ids only when they agree.
/// Sessions hold a handful of records, so pairwise comparison beats hashing.
fn keep_first_by_id<'a, T>(
    records: &mut Vec<&'a T>,
    key: impl Fn(&'a T) -> (DateTime<Utc>, Option<&'a str>),
) {
    if records.len() < 2 {
        return;
    }
    if records.len() <= 64 {
        // Kept records are moved to the front in their order; what is left behind is dropped.
        let mut kept = 0;
        for i in 0..records.len() {
            let (at, id) = key(records[i]);
            let duplicate = id.is_some()
                && records[..kept].iter().any(|earlier| {
                    let (earlier_at, earlier_id) = key(earlier);
                    earlier_at == at && earlier_id == id
                });
            if !duplicate {
                records.swap(kept, i);
                kept += 1;
            }
        }
        records.truncate(kept);
    } else {
        let mut seen: HashSet<(DateTime<Utc>, &'a str)> = HashSet::with_capacity(records.len());
        records.retain(|r| match key(r) {
            (at, Some(id)) => seen.insert((at, id)),
            (_, None) => true,
        });
    }
}

/// Keeps the better of two sessions pointing at one group: stronger match kind, then earlier start.
fn insert_preferred<'a>(
    map: &mut HashMap<i64, CaseSession<'a>>,
    group: i64,
    candidate: CaseSession<'a>,
) {
    match map.get(&group) {
        Some(existing)
            if (existing.match_kind, existing.session.started_at)
                <= (candidate.match_kind, candidate.session.started_at) => {}
        _ => {
            map.insert(group, candidate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{keep_first_by_id, normalize_e164};

    /// Deduplication keeps the first record of each id in input order, keeps every record
    /// without an id, and does so the same way for small and large sessions.
    #[test]
    fn keep_first_by_id_keeps_first_copies_in_order() {
        for size in [0usize, 1, 5, 64, 65, 300] {
            let at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
            let records: Vec<(usize, Option<String>)> = (0..size)
                .map(|i| (i, (i % 7 != 3).then(|| format!("id-{}", i % 11))))
                .collect();
            let mut refs: Vec<&(usize, Option<String>)> = records.iter().collect();
            keep_first_by_id(&mut refs, |r| (at, r.1.as_deref()));
            let mut seen = std::collections::HashSet::new();
            let expected: Vec<usize> = records
                .iter()
                .filter(|r| r.1.as_ref().map_or(true, |id| seen.insert(id.clone())))
                .map(|r| r.0)
                .collect();
            let got: Vec<usize> = refs.iter().map(|r| r.0).collect();
            assert_eq!(got, expected, "size {size}");
        }
    }

    /// Non-ASCII caller ids (webchat user names) neither panic nor normalise to a number.
    #[test]
    fn non_ascii_caller_ids_do_not_panic() {
        assert_eq!(normalize_e164("José"), None);
        assert_eq!(normalize_e164("ßip:+491234"), Some("+491234".into()));
        assert_eq!(
            normalize_e164("sip:+15551234567@host"),
            Some("+15551234567".into())
        );
        assert_eq!(normalize_e164("0049 30 123"), Some("+4930123".into()));
    }
}
