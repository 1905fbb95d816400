//! Correlation: the pure join of CXone contacts with Cognigy sessions into cases (DESIGN §4).
//!
//! A case is one contact group (a master contact plus every contact whose `masterContactId` points
//! to it) that is a bot contact, with the Cognigy session that belongs to it, if any, and that
//! session's Conversations, Analytics and log lines. A session gets its master contact id from,
//! in order, the configured Analytics custom field, the `X-InContact-MasterId` SIP header in a
//! Conversations record's `inputData`, or (fuzzy) the caller number and start time. The match kind
//! is kept as evidence. This module fetches nothing and judges nothing: see `diagnosis`.

use crate::config::Rules;
use crate::labels::label_enum;
use crate::logline::{classify, HandoverLog};
use crate::sources::cognigy::wire::{Analytics, Conversation, LogEntry, Session};
use crate::sources::cxone::wire::CompletedContact;
use chrono::{DateTime, Duration, Utc};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::collections::hash_map;

/// The contact id Cognigy's extension uses to mean "test, do not call CXone".
pub const SENTINEL_CONTACT_ID: &str = "100000000000";

/// CXone media type id of a phone call.
pub const MEDIA_TYPE_PHONE: i64 = 4;

label_enum!(
    /// How a session was tied to its contact.
    pub MatchKind {
        CustomField => "custom_field",
        SipHeader => "sip_header",
        CallerTime => "caller_time",
    }
);

/// Everything one correlation pass reads. Slices may hold records of many cycles; duplicates are
/// dropped, the first one winning: contacts and sessions by id, Cognigy records and log lines by
/// time and id within their session or case.
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
    pub event: HandoverLog<'a>,
    /// The node run the line belongs to (lines of one `traceId`): equal numbers, same run.
    pub run: u32,
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
    /// Handover log lines of the node runs tied to the group (by `meta.sessionId` or by an id
    /// a line of the run names), in time order.
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

/// A caller number in E.164 form, `+` and its digits, kept as a number so that comparing and
/// hashing numbers allocates nothing. `Display` writes it as text (`+4930123`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallerNumber {
    /// How many digits, leading zeros included.
    digits: u8,
    value: u128,
}

impl std::fmt::Display for CallerNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "+{:0width$}",
            self.value,
            width = usize::from(self.digits)
        )
    }
}

/// The most digits a [`CallerNumber`] holds (an E.164 number has at most 15).
const MAX_CALLER_DIGITS: usize = 38;

/// Normalises a phone number or SIP/tel URI to E.164 (`+` and digits) for caller matching.
/// Returns `None` when nothing number-like remains (fewer than 3 or more than 38 digits).
pub fn normalize_e164(raw: &str) -> Option<CallerNumber> {
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
    let digits = || s.bytes().filter(u8::is_ascii_digit);
    let count = digits().count();
    if count < 3 {
        return None;
    }
    // Without `+`, a leading `00` is the international call prefix.
    let skip = if !plus && digits().take(2).all(|d| d == b'0') {
        2
    } else {
        0
    };
    if count - skip > MAX_CALLER_DIGITS {
        return None;
    }
    let value = digits()
        .skip(skip)
        .fold(0u128, |value, d| value * 10 + u128::from(d - b'0'));
    Some(CallerNumber {
        // At most MAX_CALLER_DIGITS, checked above.
        digits: (count - skip) as u8,
        value,
    })
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
    /// The master contact id.
    id: i64,
    members: Vec<&'a CompletedContact>,
    bot_entry: bool,
    started_at: DateTime<Utc>,
    ended_at: DateTime<Utc>,
}

/// No group or no session, in the index vectors of [`correlate`].
const NONE: u32 = u32::MAX;

/// A session keyed to a group none of whose contacts has been read (yet).
const UNKNOWN_GROUP: u32 = u32::MAX - 1;

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
///
/// Groups and sessions are numbered in the order they are first read; the later passes index
/// flat vectors by those numbers rather than hashing ids again (issue 5: map lookups were most of
/// correlation's time). The passes: group the contacts (`Groups`), index the sessions' records
/// (`SessionRecords`), tie sessions by the id they carry (`tie_by_id`), then by caller and
/// time (`tie_by_caller_time`), attach the log lines' node runs (`attach_logs`) and
/// assemble the cases (`assemble`).
pub fn correlate<'a>(inputs: Inputs<'a>, rules: &Rules) -> Vec<Case<'a>> {
    let groups = Groups::build(inputs.contacts, rules);
    let records = SessionRecords::build(&inputs);
    let mut ties = tie_by_id(&groups, &records, rules);
    if !ties.unkeyed.is_empty() {
        tie_by_caller_time(&groups, &records, &mut ties, rules);
    }
    let logs_of_group = attach_logs(inputs.logs, &groups, &records, &ties, rules);
    assemble(groups, ties, logs_of_group)
}

/// Pass 1: the voice contacts grouped by master contact id, each contact once.
struct Groups<'a> {
    groups: Vec<Group<'a>>,
    /// Contact id to its group's number.
    group_of_contact: HashMap<i64, u32>,
    /// Master contact id to its group's number.
    number_of_group: HashMap<i64, u32>,
}

impl<'a> Groups<'a> {
    fn build(contacts: &'a [CompletedContact], rules: &Rules) -> Groups<'a> {
        let is_entry = |c: &CompletedContact| {
            rules
                .bot_entry_points_of_contact
                .contains(&c.point_of_contact_id)
                || rules.bot_entry_skills.contains(&c.skill_id)
        };
        let mut group_of_contact: HashMap<i64, u32> = HashMap::with_capacity(contacts.len());
        let mut number_of_group: HashMap<i64, u32> = HashMap::with_capacity(contacts.len());
        let mut groups: Vec<Group<'a>> = Vec::with_capacity(contacts.len());
        for contact in contacts {
            if contact.media_type_id.is_some_and(|m| m != MEDIA_TYPE_PHONE) {
                continue;
            }
            let hash_map::Entry::Vacant(contact_entry) = group_of_contact.entry(contact.contact_id)
            else {
                // A second copy of a contact already grouped: the first one wins.
                continue;
            };
            let group_id = contact.group_id();
            let started = contact.contact_start_date;
            let ended = contact.ended_at();
            let number = *number_of_group.entry(group_id).or_insert_with(|| {
                groups.push(Group {
                    id: group_id,
                    members: Vec::new(),
                    bot_entry: false,
                    started_at: started,
                    ended_at: ended,
                });
                // Fewer groups than contacts, and a poll reads far fewer than 4 billion contacts.
                (groups.len() - 1) as u32
            });
            contact_entry.insert(number);
            let group = &mut groups[number as usize];
            group.members.push(contact);
            group.bot_entry |= is_entry(contact);
            group.started_at = group.started_at.min(started);
            group.ended_at = group.ended_at.max(ended);
        }
        Groups {
            groups,
            group_of_contact,
            number_of_group,
        }
    }

    /// The group a carried contact id names: the group of that contact, else the group it is
    /// the master of (its legs were read, the master not yet); `Err(id)` for a group not read.
    fn named(&self, id: i64) -> Result<u32, i64> {
        self.group_of_contact
            .get(&id)
            .or_else(|| self.number_of_group.get(&id))
            .copied()
            .ok_or(id)
    }
}

/// The sessions, each id once (the first record wins), with their Cognigy records. The same
/// record can be in the inputs twice (re-read by an overlapping window and loaded from the
/// store): the first copy of an id wins, checked per session (a session holds a handful).
struct SessionRecords<'a> {
    /// Session id to its slot in `sessions`.
    slot_of: HashMap<&'a str, u32>,
    sessions: Vec<&'a Session>,
    conversations: BySession<'a, Conversation>,
    analytics: BySession<'a, Analytics>,
}

impl<'a> SessionRecords<'a> {
    fn build(inputs: &Inputs<'a>) -> SessionRecords<'a> {
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
        SessionRecords {
            slot_of,
            sessions,
            conversations,
            analytics,
        }
    }
}

/// Which session each group keeps, as passes 2 and 3 find them.
struct Ties<'a> {
    /// The session of each slot as a case will hold it (taken by the group that keeps it).
    case_sessions: Vec<Option<CaseSession<'a>>>,
    /// The slot of the session each group keeps (the stronger match kind, then the earlier
    /// start), or `NONE`.
    session_of_group: Vec<u32>,
    /// Sessions keyed to groups not read at all: they still claim their log lines.
    session_of_unknown_group: HashMap<i64, u32>,
    /// Slots of the sessions without a usable contact id, for caller/time matching.
    unkeyed: Vec<u32>,
}

/// Pass 2: ties each session to a group by the contact id it carries: custom field, then SIP
/// header; the rest are left for caller and time.
fn tie_by_id<'a>(groups: &Groups<'a>, records: &SessionRecords<'a>, rules: &Rules) -> Ties<'a> {
    let sessions = &records.sessions;
    let mut ties = Ties {
        case_sessions: Vec::with_capacity(sessions.len()),
        session_of_group: vec![NONE; groups.groups.len()],
        session_of_unknown_group: HashMap::new(),
        unkeyed: Vec::new(),
    };
    for (slot, session) in sessions.iter().enumerate() {
        let mut conv = records.conversations.of(slot);
        let mut anal = records.analytics.of(slot);
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
            Some((kind, text, groups.named(id)))
        });
        let (match_kind, carried) = match keyed {
            Some((kind, text, _)) => (kind, Some(text)),
            None => (MatchKind::CallerTime, custom.or(header)),
        };
        ties.case_sessions.push(Some(CaseSession {
            session,
            match_kind,
            carried_contact_id: carried.map(str::to_owned),
            conversations: conv,
            analytics: anal,
        }));
        // Fewer sessions than records read, far fewer than 4 billion.
        let slot = slot as u32;
        match keyed {
            Some((_, _, Ok(group))) => {
                let kept = ties.session_of_group[group as usize];
                if kept == NONE || ties.rank(slot) < ties.rank(kept) {
                    ties.session_of_group[group as usize] = slot;
                }
            }
            Some((_, _, Err(id))) => {
                let kept = *ties.session_of_unknown_group.entry(id).or_insert(slot);
                if ties.rank(slot) < ties.rank(kept) {
                    ties.session_of_unknown_group.insert(id, slot);
                }
            }
            None => ties.unkeyed.push(slot),
        }
    }
    ties
}

impl Ties<'_> {
    /// How strongly a slot's session is tied: the match kind, then the earlier start. Every
    /// slot still holds its session here: none is taken before the cases are assembled.
    fn rank(&self, slot: u32) -> Option<(MatchKind, DateTime<Utc>)> {
        let s = self.case_sessions[slot as usize].as_ref();
        s.map(|s| (s.match_kind, s.session.started_at))
    }
}

/// Pass 3: caller/time matching for the sessions without a usable id. The candidates are
/// bot-entry groups without a keyed session, by normalised caller number; a session takes the
/// closest group that started at most `correlation_window_seconds` before it.
fn tie_by_caller_time<'a>(
    groups: &Groups<'a>,
    records: &SessionRecords<'a>,
    ties: &mut Ties<'a>,
    rules: &Rules,
) {
    let groups = &groups.groups;
    let sessions = &records.sessions;
    let mut by_caller: HashMap<CallerNumber, Vec<(u32, &'a CompletedContact)>> = HashMap::new();
    for (number, group) in groups.iter().enumerate() {
        if !group.bot_entry || ties.session_of_group[number] != NONE {
            continue;
        }
        let members = &group.members;
        let master = members
            .iter()
            .find(|c| c.contact_id == group.id)
            .or_else(|| members.iter().min_by_key(|c| c.contact_start_date))
            .copied();
        if let Some(master) = master {
            if let Some(caller) = normalize_e164(&master.from_address) {
                by_caller
                    .entry(caller)
                    .or_default()
                    .push((number as u32, master));
            }
        }
    }
    let window = Duration::seconds(rules.correlation_window_seconds as i64);
    let mut unkeyed = std::mem::take(&mut ties.unkeyed);
    unkeyed.sort_by(|&a, &b| {
        let (a, b) = (sessions[a as usize], sessions[b as usize]);
        (a.started_at, &a.session_id).cmp(&(b.started_at, &b.session_id))
    });
    for slot in unkeyed {
        let session = sessions[slot as usize];
        let Some(caller) = normalize_e164(&session.user_id) else {
            continue;
        };
        let Some(candidates) = by_caller.get(&caller) else {
            continue;
        };
        let best = candidates
            .iter()
            .filter(|(group, _)| ties.session_of_group[*group as usize] == NONE)
            .filter_map(|(group, c)| {
                let gap = session.started_at - c.contact_start_date;
                (gap >= Duration::zero() && gap <= window).then_some((
                    gap,
                    groups[*group as usize].id,
                    *group,
                ))
            })
            .min();
        if let Some((_, _, group)) = best {
            ties.session_of_group[group as usize] = slot;
        }
    }
}

/// Pass 4: the handover log lines of each group. One node run is the lines of one `traceId` (a
/// line without one is a run of its own). A run is tied to a group by the `meta.sessionId` of
/// any of its lines (not documented, so not relied on), else by the ids its lines name: the ids
/// line's main and spawned contact ids, the signal lines' (spawned) contact id. The spawned id
/// is the backchannel leg, whose group is the call's. Every handover line of the run then goes
/// to that group.
fn attach_logs<'a>(
    logs: &'a [LogEntry],
    groups: &Groups<'a>,
    records: &SessionRecords<'a>,
    ties: &Ties<'a>,
    rules: &Rules,
) -> Vec<Vec<CaseLog<'a>>> {
    let mut group_of_session: Vec<u32> = vec![NONE; records.sessions.len()];
    for (group, &slot) in ties.session_of_group.iter().enumerate() {
        if slot != NONE {
            group_of_session[slot as usize] = group as u32;
        }
    }
    for &slot in ties.session_of_unknown_group.values() {
        group_of_session[slot as usize] = UNKNOWN_GROUP;
    }
    let mut logs_of_group: Vec<Vec<CaseLog<'a>>> = vec![Vec::new(); groups.groups.len()];
    for (run, lines) in node_runs(logs, rules).into_iter().enumerate() {
        let by_session = lines.iter().find_map(|(entry, _)| {
            entry
                .meta
                .session_id
                .as_deref()
                .and_then(|sid| records.slot_of.get(sid))
                .map(|&slot| group_of_session[slot as usize])
                .filter(|&group| group != NONE)
        });
        let by_contact = || {
            lines.iter().find_map(|(_, event)| {
                event
                    .contact_ids()
                    .filter_map(usable_contact_id)
                    .find_map(|id| groups.named(id).ok())
            })
        };
        match by_session.or_else(by_contact) {
            Some(UNKNOWN_GROUP) | None => {}
            Some(group) => {
                let logs = &mut logs_of_group[group as usize];
                for (entry, event) in lines {
                    logs.push(CaseLog {
                        entry,
                        event,
                        run: run as u32,
                    });
                }
            }
        }
    }
    logs_of_group
}

/// The handover lines among `logs`, classified, grouped into node runs by `traceId`.
fn node_runs<'a>(logs: &'a [LogEntry], rules: &Rules) -> Vec<Vec<(&'a LogEntry, HandoverLog<'a>)>> {
    let mut runs: Vec<Vec<(&'a LogEntry, HandoverLog<'a>)>> = Vec::new();
    let mut run_of_trace: HashMap<&'a str, u32> = HashMap::new();
    for entry in logs {
        let Some(event) = classify(&entry.msg, &rules.log_patterns) else {
            continue;
        };
        let run = match entry.trace_id.as_deref().filter(|t| !t.is_empty()) {
            Some(trace) => *run_of_trace.entry(trace).or_insert_with(|| {
                runs.push(Vec::new());
                // Fewer runs than log lines, far fewer than 4 billion.
                (runs.len() - 1) as u32
            }),
            None => {
                runs.push(Vec::new());
                (runs.len() - 1) as u32
            }
        };
        runs[run as usize].push((entry, event));
    }
    runs
}

/// Pass 5: the cases, one per group that entered the bot or kept a session, ordered by master
/// id (unique, so an unstable sort is exact).
fn assemble<'a>(
    groups: Groups<'a>,
    mut ties: Ties<'a>,
    mut logs_of_group: Vec<Vec<CaseLog<'a>>>,
) -> Vec<Case<'a>> {
    let mut groups = groups.groups;
    let mut order: Vec<(i64, u32)> = groups
        .iter()
        .enumerate()
        .filter(|(number, group)| group.bot_entry || ties.session_of_group[*number] != NONE)
        .map(|(number, group)| (group.id, number as u32))
        .collect();
    order.sort_unstable();
    order
        .into_iter()
        .map(|(group_id, number)| {
            let number = number as usize;
            let group = &mut groups[number];
            let mut members = std::mem::take(&mut group.members);
            // Contact ids are unique within a group, so the order is total and need not be stable.
            members.sort_unstable_by_key(|c| {
                (c.contact_id != group_id, c.contact_start_date, c.contact_id)
            });
            let session = match ties.session_of_group[number] {
                NONE => None,
                // A session is kept by one group at most, so it is still there.
                slot => ties.case_sessions[slot as usize].take(),
            };
            let mut logs = std::mem::take(&mut logs_of_group[number]);
            // The same line can be in the inputs twice, like the Cognigy records.
            keep_first_by_id(&mut logs, |l| (l.entry.timestamp, l.entry.id.as_deref()));
            logs.sort_by_key(|l| l.entry.timestamp);
            Case {
                master_contact_id: group_id,
                contacts: members,
                bot_entry: group.bot_entry,
                session,
                logs,
                started_at: group.started_at,
                ended_at: group.ended_at,
            }
        })
        .collect()
}

/// Drops every record whose time and id an earlier record of `records` already has (records
/// without an id are all kept). `key` gives a record's time and id: a copy of a record has the same time
/// (Cognigy records are immutable), so times are compared first and ids only when they agree.
/// A session or a case holds a handful of records, so pairwise comparison beats hashing.
fn keep_first_by_id<T>(records: &mut Vec<T>, key: impl Fn(&T) -> (DateTime<Utc>, Option<&str>)) {
    if records.len() < 2 {
        return;
    }
    if records.len() <= 64 {
        // Kept records are moved to the front in their order; what is left behind is dropped.
        let mut kept = 0;
        for i in 0..records.len() {
            let (at, id) = key(&records[i]);
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
        let keep: Vec<bool> = {
            let mut seen: HashSet<(DateTime<Utc>, &str)> = HashSet::with_capacity(records.len());
            records
                .iter()
                .map(|r| match key(r) {
                    (at, Some(id)) => seen.insert((at, id)),
                    (_, None) => true,
                })
                .collect()
        };
        let mut next = keep.iter();
        // `keep` has one entry per record, visited in the same order by `retain`.
        records.retain(|_| next.next().copied().unwrap_or(true));
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
        let text = |raw: &str| normalize_e164(raw).map(|n| n.to_string());
        assert_eq!(text("José"), None);
        assert_eq!(text("ßip:+491234"), Some("+491234".into()));
        assert_eq!(text("sip:+15551234567@host"), Some("+15551234567".into()));
        assert_eq!(text("0049 30 123"), Some("+4930123".into()));
        assert_eq!(text("+0049 30"), Some("+004930".into()));
        assert_eq!(text("001"), Some("+1".into()));
        assert_eq!(text("12"), None);
        assert_eq!(text(&"9".repeat(38)), Some(format!("+{}", "9".repeat(38))));
        assert_eq!(text(&"9".repeat(39)), None);
    }
}
