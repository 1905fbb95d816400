//! Diagnosis: the pure rules of DESIGN §5, one outcome per bot contact, first match wins.
//!
//! [`diagnose`] takes one correlated [`Case`], the tenant's [`Rules`] and a [`Horizon`] (what time
//! it is and how far each source has been read) and returns either a [`Diagnosis`] with the
//! evidence that decided it, or [`Verdict::Pending`] while the data it needs may still arrive. The
//! label enums here ([`Outcome`], [`Failure`], [`Reason`]) are the only source of the `outcome`,
//! `failure` and `reason` label values. Nothing here reads a clock, a file or the network.

use crate::config::Rules;
use crate::engine::correlation::{usable_contact_id, Case, CaseLog, CaseSession, MatchKind};
use crate::labels::label_enum;
use crate::logline::{is_missing_id, HandoverLog};
use crate::sources::cognigy::wire::{Conversation, LogEntry, Session};
use crate::sources::cxone::wire::CompletedContact;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

label_enum!(
    /// What happened to a bot contact.
    pub Outcome {
        Contained => "contained",
        HandedOver => "handed_over",
        Abandoned => "abandoned",
        Failed => "failed",
        Undetermined => "undetermined",
    }
);

label_enum!(
    /// Where a failed handover broke.
    pub Failure {
        Timeout => "timeout",
        MissingContext => "missing_context",
        InvalidHandover => "invalid_handover",
    }
);

label_enum!(
    /// The reason of an outcome: one per row of the DESIGN §5 table.
    pub Reason {
        NoBotSession => "no_bot_session",
        InvalidAction => "invalid_action",
        NoContactId => "no_contact_id",
        SignalTimeout => "signal_timeout",
        SignalUnavailable => "signal_unavailable",
        SignalRejected => "signal_rejected",
        TransferRejected => "transfer_rejected",
        TransferNoAnswer => "transfer_no_answer",
        UnknownSkill => "unknown_skill",
        InQueue => "in_queue",
        AgentAnswered => "agent_answered",
        Queued => "queued",
        BeforeQueue => "before_queue",
        NotQueued => "not_queued",
        BotTurnSlow => "bot_turn_slow",
        BotCompleted => "bot_completed",
        SourceUnavailable => "source_unavailable",
    }
);

impl Reason {
    /// The outcome this reason belongs to.
    pub fn outcome(self) -> Outcome {
        use Reason::*;
        match self {
            InQueue | BeforeQueue => Outcome::Abandoned,
            AgentAnswered | Queued => Outcome::HandedOver,
            BotCompleted => Outcome::Contained,
            SourceUnavailable => Outcome::Undetermined,
            _ => Outcome::Failed,
        }
    }

    /// The failure class, for failed outcomes only.
    pub fn failure(self) -> Option<Failure> {
        use Reason::*;
        match self {
            NoBotSession | NoContactId => Some(Failure::MissingContext),
            SignalTimeout | SignalUnavailable | TransferNoAnswer | NotQueued | BotTurnSlow => {
                Some(Failure::Timeout)
            }
            InvalidAction | SignalRejected | TransferRejected | UnknownSkill => {
                Some(Failure::InvalidHandover)
            }
            _ => None,
        }
    }

    /// The rule number of DESIGN §5 (0 for `source_unavailable`, which has no number there).
    pub fn rule(self) -> u8 {
        use Reason::*;
        match self {
            NoBotSession => 1,
            InvalidAction => 2,
            NoContactId => 3,
            SignalTimeout => 4,
            SignalUnavailable => 5,
            SignalRejected => 6,
            TransferRejected => 7,
            TransferNoAnswer => 8,
            UnknownSkill => 9,
            InQueue => 10,
            AgentAnswered | Queued => 11,
            BeforeQueue => 12,
            NotQueued => 13,
            BotTurnSlow => 14,
            BotCompleted => 15,
            SourceUnavailable => 0,
        }
    }

    /// What the reason means, in plain words (reports and the README table).
    pub fn explain(self) -> &'static str {
        use Reason::*;
        match self {
            NoBotSession => "the call entered the bot but no Cognigy session could be tied to it",
            InvalidAction => {
                "the flow asked the handover node for an action other than Escalate or End"
            }
            NoContactId => {
                "the bot escalated without the CXone contact id, so the signal could not be sent"
            }
            SignalTimeout => "the CXone Signal API call timed out (408/504 or a client timeout)",
            SignalUnavailable => "the CXone Signal API was unavailable (429, 5xx or no connection)",
            SignalRejected => {
                "the CXone Signal API rejected the signal (4xx: wrong contact id or credentials)"
            }
            TransferRejected => "the Voice Gateway transfer (REFER or DIAL) was rejected",
            TransferNoAnswer => "the Voice Gateway transfer was not answered",
            UnknownSkill => "the call queued to a skill that is not a configured handover skill",
            InQueue => "the caller hung up while waiting in the agent queue",
            AgentAnswered => "the call was handed over and an agent answered",
            Queued => "the call was handed over to the agent queue",
            BeforeQueue => {
                "the caller hung up within the handover deadline, before the call queued"
            }
            NotQueued => "the bot escalated but the call never reached a queue within the deadline",
            BotTurnSlow => "a bot turn took longer than the bot turn timeout",
            BotCompleted => "the bot handled the call without a handover",
            SourceUnavailable => "a data source stayed unreadable until the pending limit",
        }
    }
}

/// What the caller of [`diagnose`] knows about time and the sources.
#[derive(Debug, Clone, Copy)]
pub struct Horizon {
    /// The current time.
    pub now: DateTime<Utc>,
    /// Every Cognigy source has been read successfully up to this wall-clock time, for records
    /// written within `cognigy_short_seconds` after their own time.
    pub cognigy_read_until: DateTime<Utc>,
    /// The same for records written later, up to the late-record window (what the sweeps
    /// cover); at most `cognigy_read_until`.
    pub cognigy_swept_until: DateTime<Utc>,
    /// How late a record may be written for `cognigy_read_until` to cover it.
    pub cognigy_short_seconds: i64,
    /// CXone completed contacts have been read up to this time (their `lastUpdateTime`).
    pub cxone_read_until: DateTime<Utc>,
    /// How long after a contact ends its already-correlated session data is taken as complete.
    pub settle_seconds: i64,
    /// Since when every read of Cognigy has failed (wall-clock time of the first failure of the
    /// current run of failures); `None` while it answers. Only a source unavailable for
    /// `max_pending_seconds` of wall time lets a contact be given up as `source_unavailable`,
    /// never the contact's age: a source that answers, however far behind, is waited for.
    pub cognigy_unavailable_since: Option<DateTime<Utc>>,
    /// The same for CXone.
    pub cxone_unavailable_since: Option<DateTime<Utc>>,
}

impl Horizon {
    /// A horizon for final data (replay): every lag and deadline has passed.
    pub fn final_data() -> Horizon {
        Horizon {
            now: DateTime::<Utc>::MAX_UTC,
            cognigy_read_until: DateTime::<Utc>::MAX_UTC,
            cognigy_swept_until: DateTime::<Utc>::MAX_UTC,
            cognigy_short_seconds: i64::MAX,
            cxone_read_until: DateTime::<Utc>::MAX_UTC,
            settle_seconds: 0,
            cognigy_unavailable_since: None,
            cxone_unavailable_since: None,
        }
    }

    /// How far Cognigy is known read for data expected `wait` after a contact ended.
    pub fn cognigy_for(&self, wait: Duration) -> DateTime<Utc> {
        if wait.num_seconds() <= self.cognigy_short_seconds {
            self.cognigy_read_until
        } else {
            self.cognigy_swept_until
        }
    }

    /// Whether Cognigy has been unavailable for at least `max_pending`.
    pub fn cognigy_given_up(&self, max_pending: Duration) -> bool {
        given_up(self.cognigy_unavailable_since, self.now, max_pending)
    }

    /// Whether CXone has been unavailable for at least `max_pending`.
    pub fn cxone_given_up(&self, max_pending: Duration) -> bool {
        given_up(self.cxone_unavailable_since, self.now, max_pending)
    }
}

fn given_up(since: Option<DateTime<Utc>>, now: DateTime<Utc>, max_pending: Duration) -> bool {
    since.is_some_and(|s| now.signed_duration_since(s) >= max_pending)
}

/// A read horizon as evidence text: the time, or `never` for a source not read yet (no sentinel
/// date ever reaches the evidence).
fn describe_read_until(t: DateTime<Utc>) -> String {
    if t <= DateTime::<Utc>::UNIX_EPOCH {
        "never".to_owned()
    } else {
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

/// Where a fact came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactSource {
    CxoneContact,
    CognigySession,
    CognigyConversation,
    CognigyAnalytics,
    CognigyLog,
    Rule,
}

/// One record or line that the diagnosis read, with when and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    pub source: FactSource,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    pub detail: Detail,
}

/// What a fact says. It keeps the values it is made of and is rendered as one line of text only
/// when shown or stored (`Display`, and a JSON string): diagnosing a case then formats no text,
/// which was about a third of the engine's time (issue 5). Read back from JSON it is the text.
#[derive(Debug, Clone)]
pub enum Detail {
    /// Text as it is: a log line, a fixed phrase, a rule's explanation, or a stored detail.
    Text(Cow<'static, str>),
    /// A CXone contact's queueing facts.
    Contact {
        what: &'static str,
        point_of_contact_id: i64,
        skill_id: i64,
        pre_queue_seconds: f64,
        in_queue_seconds: f64,
        agent_id: i64,
        abandoned: bool,
        total_duration_seconds: f64,
    },
    /// A Cognigy session's start.
    SessionStarted {
        user_id: String,
        handover_escalations: i64,
        matched_by: MatchKind,
    },
    /// The session's `handoverEscalations` counter.
    HandoverEscalations(i64),
    /// A Voice Gateway event in a Conversations record.
    VoiceGateway {
        name: String,
        sip_status: Option<i64>,
        refer_status: Option<i64>,
        dial_call_status: Option<String>,
    },
    /// The `X-InContact-MasterId` SIP header of a Conversations record.
    SipMasterId(String),
    /// Any other Conversations record.
    Message { kind: String, source: String },
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detail::Text(text) => f.write_str(text),
            Detail::Contact {
                what,
                point_of_contact_id,
                skill_id,
                pre_queue_seconds,
                in_queue_seconds,
                agent_id,
                abandoned,
                total_duration_seconds,
            } => write!(
                f,
                "{what}: point of contact {point_of_contact_id}, skill {skill_id}, preQueue \
                 {pre_queue_seconds} s, inQueue {in_queue_seconds} s, agent {agent_id}, abandoned \
                 {abandoned}, duration {total_duration_seconds} s"
            ),
            Detail::SessionStarted {
                user_id,
                handover_escalations,
                matched_by,
            } => write!(
                f,
                "session started (user {user_id}, handoverEscalations {handover_escalations}, \
                 matched by {})",
                matched_by.as_str()
            ),
            Detail::HandoverEscalations(n) => write!(f, "handoverEscalations = {n}"),
            Detail::VoiceGateway {
                name,
                sip_status,
                refer_status,
                dial_call_status,
            } => {
                write!(f, "Voice Gateway {name}")?;
                if let Some(v) = sip_status {
                    write!(f, " sip_status={v}")?;
                }
                if let Some(v) = refer_status {
                    write!(f, " refer_status={v}")?;
                }
                if let Some(v) = dial_call_status {
                    write!(f, " dial_call_status={v}")?;
                }
                Ok(())
            }
            Detail::SipMasterId(id) => write!(f, "SIP X-InContact-MasterId {id}"),
            Detail::Message { kind, source } => write!(f, "{kind} message from {source}"),
        }
    }
}

/// Two details are equal when they read the same (a detail read back from the store is text).
impl PartialEq for Detail {
    fn eq(&self, other: &Detail) -> bool {
        match (self, other) {
            (Detail::Text(a), Detail::Text(b)) => a == b,
            _ => self.to_string() == other.to_string(),
        }
    }
}

impl From<String> for Detail {
    fn from(text: String) -> Detail {
        Detail::Text(Cow::Owned(text))
    }
}

impl From<&'static str> for Detail {
    fn from(text: &'static str) -> Detail {
        Detail::Text(Cow::Borrowed(text))
    }
}

impl Serialize for Detail {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Detail {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Detail, D::Error> {
        String::deserialize(deserializer).map(Detail::from)
    }
}

/// Everything that decided a diagnosis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub contact_ids: Vec<i64>,
    pub bot_entry: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_kind: Option<MatchKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carried_contact_id: Option<String>,
    pub contact_started_at: DateTime<Utc>,
    pub contact_ended_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_skill_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_to_queue_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_wait_seconds: Option<f64>,
    /// Every bot turn's execution time in seconds (for the bot turn histogram).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bot_turn_seconds: Vec<f64>,
    /// The facts that decided the rule.
    pub decided_by: Vec<Fact>,
    /// Every fact read for the case, in time order.
    pub timeline: Vec<Fact>,
}

/// The one outcome of one bot contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The master contact id.
    pub contact_id: i64,
    pub outcome: Outcome,
    pub failure: Option<Failure>,
    pub reason: Reason,
    pub rule: u8,
    pub summary: Cow<'static, str>,
    pub evidence: Evidence,
}

label_enum!(
    /// What a pending case waits for: the data the rules need that may still arrive.
    pub WaitingFor {
        /// No session matched yet and Cognigy has not been read `cognigy_lag_seconds` past
        /// the call.
        CognigyLag => "cognigy_lag",
        /// A session matched; its later records (settle time) have not been read yet.
        CognigySettle => "cognigy_settle",
        /// CXone has not been read past the group's end plus the settle time.
        CxoneSettle => "cxone_settle",
        /// Only legs of the group were read; the master contact has not completed yet.
        CxoneMaster => "cxone_master",
        /// A leg ended by transfer; the later leg with the queue facts has not completed yet.
        CxoneTransferLeg => "cxone_transfer_leg",
    }
);

impl WaitingFor {
    /// Why the case waits, for a person reading a drill-down.
    pub fn explain(self) -> &'static str {
        match self {
            WaitingFor::CognigyLag => {
                "no Cognigy session matches yet, and Cognigy records can appear until the \
                 configured cognigy_lag_seconds after the call ended"
            }
            WaitingFor::CognigySettle => "its Cognigy session is still settling",
            WaitingFor::CxoneSettle => "CXone has not been read past the call's end yet",
            WaitingFor::CxoneMaster => {
                "only legs of the call completed; its master contact has not"
            }
            WaitingFor::CxoneTransferLeg => {
                "a leg ended by transfer; the leg that carries the queue facts has not completed"
            }
        }
    }
}

/// The result of looking at a case now.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The data this case needs may still arrive; `waiting_for` says which.
    Pending {
        waiting_for: WaitingFor,
    },
    Diagnosed(Box<Diagnosis>),
}

/// Applies the rules of DESIGN §5 in order to one case: first the data gates (is everything the
/// rules need read, or has its source been down too long?), then `RULES`, first match wins,
/// with rule 15 (`bot_completed`) when none matched.
pub fn diagnose(case: &Case<'_>, rules: &Rules, horizon: &Horizon) -> Verdict {
    let started = case.started_at();
    let ended = case.ended_at();
    if let Some(verdict) = await_data(case, rules, horizon, started, ended) {
        return verdict;
    }
    let derived = Derived::compute(case, started, ended);
    let look = Look {
        case,
        rules,
        horizon,
        derived: &derived,
    };
    let finding = RULES
        .iter()
        .find_map(|rule| rule(&look))
        .unwrap_or_else(|| bot_completed(&look));
    match finding {
        Finding::Wait(waiting_for) => Verdict::Pending { waiting_for },
        Finding::Decide(reason, facts) => done(case, reason, facts, derived),
    }
}

/// What a rule found in a case.
enum Finding {
    /// The rule needs data that may still arrive.
    Wait(WaitingFor),
    /// The case is decided, by these facts.
    Decide(Reason, Vec<Fact>),
}

/// What every rule may look at.
struct Look<'c, 'a> {
    case: &'c Case<'a>,
    rules: &'c Rules,
    horizon: &'c Horizon,
    derived: &'c Derived<'a>,
}

impl<'a> Look<'_, 'a> {
    fn max_pending(&self) -> Duration {
        Duration::seconds(self.rules.max_pending_seconds as i64)
    }

    /// CXone has been read past `t`, or has been unavailable longer than `max_pending_seconds`.
    fn cxone_past(&self, t: DateTime<Utc>) -> bool {
        cxone_past(self.horizon, self.max_pending(), t)
    }

    /// The matched session; the rules after rule 1 only run on cases that have one.
    fn session(&self) -> Option<&CaseSession<'a>> {
        self.case.session.as_ref()
    }
}

/// A rule of DESIGN §5: `None` when it does not apply, so the next one is asked.
type Rule = fn(&Look<'_, '_>) -> Option<Finding>;

/// The rules after the data gates, in DESIGN §5 order; the first that finds something decides.
const RULES: &[Rule] = &[
    no_session,           // 1
    invalid_action,       // 2
    no_contact_id,        // 3
    signal_timeout,       // 4
    signal_unavailable,   // 5
    signal_rejected,      // 6
    transfer_rejected,    // 7
    transfer_no_answer,   // 8
    queued,               // 9-11
    escalated_not_queued, // 12-13
    bot_turn_slow,        // 14
];

fn cxone_past(horizon: &Horizon, max_pending: Duration, t: DateTime<Utc>) -> bool {
    horizon.cxone_read_until >= t || horizon.cxone_given_up(max_pending)
}

/// A source not yet read as far as a case needs.
struct Lagging {
    source: &'static str,
    read_until: DateTime<Utc>,
    needed: DateTime<Utc>,
    waiting_for: WaitingFor,
    unavailable_since: Option<DateTime<Utc>>,
}

/// The data gates: a case waits while a source has not been read as far as it needs (or is
/// decided `source_unavailable` once that source has been down `max_pending_seconds`), and
/// while only legs of its group have completed.
fn await_data(
    case: &Case<'_>,
    rules: &Rules,
    horizon: &Horizon,
    started: DateTime<Utc>,
    ended: DateTime<Utc>,
) -> Option<Verdict> {
    let max_pending = Duration::seconds(rules.max_pending_seconds as i64);
    if let Some(lagging) = lagging_source(case, rules, horizon, ended) {
        let Some(since) = lagging
            .unavailable_since
            .filter(|s| given_up(Some(*s), horizon.now, max_pending))
        else {
            return Some(Verdict::Pending {
                waiting_for: lagging.waiting_for,
            });
        };
        let fact = unavailable_fact(&lagging, since, horizon.now, rules);
        return Some(done(
            case,
            Reason::SourceUnavailable,
            vec![fact],
            Derived::empty(started, ended),
        ));
    }
    // Only legs of the group were read so far: the master contact ends last and carries the
    // bot entry and queue facts, so wait for it while CXone has not been read `max_pending`
    // past the legs (a master ends within that) and answers.
    if !case.has_master() && !cxone_past(horizon, max_pending, ended + max_pending) {
        return Some(Verdict::Pending {
            waiting_for: WaitingFor::CxoneMaster,
        });
    }
    None
}

/// The first source (Cognigy, then CXone) not read as far as the case needs: Cognigy its lag
/// past the call when no session matched yet, else the settle time; CXone the settle time, so
/// that every leg of the group (a post-handover leg carries the queue and agent facts) is in.
fn lagging_source(
    case: &Case<'_>,
    rules: &Rules,
    horizon: &Horizon,
    ended: DateTime<Utc>,
) -> Option<Lagging> {
    let settle = Duration::seconds(horizon.settle_seconds);
    let lag = Duration::seconds(rules.cognigy_lag_seconds as i64);
    let matched = case.session.is_some();
    let wait = if matched { settle } else { lag };
    let cognigy_read_until = horizon.cognigy_for(wait);
    if cognigy_read_until < ended + wait {
        return Some(Lagging {
            source: "cognigy",
            read_until: cognigy_read_until,
            needed: ended + wait,
            waiting_for: if matched {
                WaitingFor::CognigySettle
            } else {
                WaitingFor::CognigyLag
            },
            unavailable_since: horizon.cognigy_unavailable_since,
        });
    }
    if horizon.cxone_read_until < ended + settle {
        return Some(Lagging {
            source: "cxone",
            read_until: horizon.cxone_read_until,
            needed: ended + settle,
            waiting_for: WaitingFor::CxoneSettle,
            unavailable_since: horizon.cxone_unavailable_since,
        });
    }
    None
}

fn unavailable_fact(
    lagging: &Lagging,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    rules: &Rules,
) -> Fact {
    let down = now.signed_duration_since(since).num_seconds();
    Fact {
        source: FactSource::Rule,
        id: lagging.source.into(),
        at: Some(since),
        detail: format!(
            "{} unavailable since {} ({down} s, max_pending_seconds {}); read up to {}, needed \
             up to {}",
            lagging.source,
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            rules.max_pending_seconds,
            describe_read_until(lagging.read_until),
            lagging
                .needed
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
        .into(),
    }
}

/// Rule 1: no session.
fn no_session(look: &Look<'_, '_>) -> Option<Finding> {
    if look.case.session.is_some() {
        return None;
    }
    let rules = look.rules;
    let fact = Fact {
        source: FactSource::Rule,
        id: "correlation".into(),
        at: Some(look.derived.ended),
        detail: format!(
            "no Cognigy session matched by custom field, SIP header or caller within {} s; \
             Cognigy lag of {} s has passed",
            rules.correlation_window_seconds, rules.cognigy_lag_seconds
        )
        .into(),
    };
    Some(Finding::Decide(Reason::NoBotSession, vec![fact]))
}

/// Rule 2: invalid action: the node's validation error, its bot output in versions that report
/// it so, or a run whose action is neither `Escalate` nor `End` (versions before v5 and the 1.2
/// line send such an action to CXone as it is).
fn invalid_action(look: &Look<'_, '_>) -> Option<Finding> {
    let invalid_log = look.case.logs.iter().find(|l| match l.event {
        HandoverLog::InvalidAction => true,
        HandoverLog::NodeIds { action, .. } => !matches!(action, "Escalate" | "End"),
        _ => false,
    });
    if let Some(log) = invalid_log {
        return Some(Finding::Decide(
            Reason::InvalidAction,
            vec![log_fact(log.entry)],
        ));
    }
    let pattern = &look.rules.log_patterns.invalid_action;
    let output = look
        .session()?
        .conversations
        .iter()
        .find(|c| !c.node_output.is_empty() && pattern.is_match(&c.node_output))?;
    let fact = Fact {
        source: FactSource::CognigyConversation,
        id: output
            .id
            .clone()
            .unwrap_or_else(|| output.session_id.clone()),
        at: Some(output.timestamp),
        detail: format!("bot output: {}", output.node_output).into(),
    };
    Some(Finding::Decide(Reason::InvalidAction, vec![fact]))
}

/// Rule 3: escalated without a contact id: matched only by caller and time, or the node itself
/// showed it had no id (never the `Done. No output data sent` line: it follows every voice run).
fn no_contact_id(look: &Look<'_, '_>) -> Option<Finding> {
    look.derived.escalated_at?;
    let session = look.session()?;
    let missing_ids = missing_ids_line(look.case);
    let carried_ok = session
        .carried_contact_id
        .as_deref()
        .and_then(usable_contact_id)
        .is_some();
    if session.match_kind != MatchKind::CallerTime && carried_ok && missing_ids.is_none() {
        return None;
    }
    let mut facts = look.derived.escalation_facts();
    facts.push(Fact {
        source: FactSource::CognigySession,
        id: session.session.session_id.clone(),
        at: Some(session.session.started_at),
        detail: format!(
            "matched by {}; carried contact id {:?}",
            session.match_kind.as_str(),
            session.carried_contact_id.as_deref().unwrap_or("")
        )
        .into(),
    });
    if let Some(log) = missing_ids {
        let log_id = log.entry.id.as_deref().unwrap_or_default();
        if !facts.iter().any(|f| f.id == log_id) {
            facts.push(log_fact(log.entry));
        }
    }
    Some(Finding::Decide(Reason::NoContactId, facts))
}

/// The signal error lines that no later successful signal of the same kind (escalation or
/// not) superseded: a retry that landed broke nothing. With each, its status and timeout flag.
fn open_signal_errors<'c, 'a>(
    case: &'c Case<'a>,
) -> impl Iterator<Item = (&'c CaseLog<'a>, Option<u16>, bool)> + 'c {
    case.logs
        .iter()
        .filter_map(|l| match l.event {
            HandoverLog::SignalError {
                status, timed_out, ..
            } => Some((l, status, timed_out)),
            _ => None,
        })
        .filter(|(error, ..)| {
            !case.logs.iter().any(|l| {
                matches!(l.event, HandoverLog::Signaled { .. })
                    && l.event.is_escalation() == error.event.is_escalation()
                    && l.entry.timestamp >= error.entry.timestamp
            })
        })
}

/// Rules 4-6 take the first open signal error that `matches`, in rule order across all lines.
fn signal_error(
    look: &Look<'_, '_>,
    reason: Reason,
    matches: fn(Option<u16>, bool) -> bool,
) -> Option<Finding> {
    let (log, ..) = open_signal_errors(look.case)
        .find(|(_, status, timed_out)| matches(*status, *timed_out))?;
    Some(Finding::Decide(reason, vec![log_fact(log.entry)]))
}

/// Rule 4: the signal timed out (408, 504, or a timeout without a status).
fn signal_timeout(look: &Look<'_, '_>) -> Option<Finding> {
    signal_error(look, Reason::SignalTimeout, |status, timed_out| {
        matches!(status, Some(408 | 504)) || (timed_out && status.is_none())
    })
}

/// Rule 5: CXone could not take the signal (429, 5xx, or no status at all).
fn signal_unavailable(look: &Look<'_, '_>) -> Option<Finding> {
    signal_error(look, Reason::SignalUnavailable, |status, _| match status {
        Some(s) => s == 429 || (500..600).contains(&s),
        None => true,
    })
}

/// Rule 6: CXone refused the signal (another 4xx, a token 401 among them).
fn signal_rejected(look: &Look<'_, '_>) -> Option<Finding> {
    signal_error(look, Reason::SignalRejected, |status, _| {
        status.is_some_and(|s| (400..500).contains(&s))
    })
}

/// The session's first Voice Gateway event named one of `names`.
fn transfer_event<'c>(look: &Look<'c, '_>, names: &[&str]) -> Option<&'c Conversation> {
    look.case
        .session
        .as_ref()?
        .conversations
        .iter()
        .copied()
        .find(|c| {
            c.input_data
                .event
                .as_ref()
                .is_some_and(|e| names.contains(&e.name.as_str()))
        })
}

/// Rule 7: Voice Gateway reports the transfer refused or not dialled.
fn transfer_rejected(look: &Look<'_, '_>) -> Option<Finding> {
    let c = transfer_event(look, &["TRANSFER_REFER_ERROR", "TRANSFER_DIAL_ERROR"])?;
    Some(Finding::Decide(
        Reason::TransferRejected,
        vec![conversation_fact(c)],
    ))
}

/// Rule 8: Voice Gateway reports the transfer target did not answer.
fn transfer_no_answer(look: &Look<'_, '_>) -> Option<Finding> {
    let c = transfer_event(look, &["NO_ANSWER"])?;
    Some(Finding::Decide(
        Reason::TransferNoAnswer,
        vec![conversation_fact(c)],
    ))
}

/// Rules 9-11: queued: to a skill not configured as a handover skill, abandoned in the queue,
/// answered by an agent, or queued.
fn queued(look: &Look<'_, '_>) -> Option<Finding> {
    let queued = look.derived.queued_contact?;
    let fact = contact_fact(queued, "queued");
    let skills = &look.rules.handover_skills;
    let contacts = &look.case.contacts;
    let answered = contacts.iter().any(|c| c.agent_id != 0);
    let reason = if !skills.is_empty() && !skills.contains(&queued.skill_id) {
        Reason::UnknownSkill
    } else if !answered && contacts.iter().any(|c| c.abandoned) {
        Reason::InQueue
    } else if answered {
        Reason::AgentAnswered
    } else {
        Reason::Queued
    };
    Some(Finding::Decide(reason, vec![fact]))
}

/// Rules 12-13: escalated, not queued. A contact that ended by being transferred has a later
/// leg that carries the queue facts; it shows up in CXone only when it completes, so wait for it
/// (up to the pending limit) rather than call the handover lost.
fn escalated_not_queued(look: &Look<'_, '_>) -> Option<Finding> {
    let escalated_at = look.derived.escalated_at?;
    let case = look.case;
    let ended = look.derived.ended;
    if case.contacts.iter().any(|c| c.was_transferred())
        && !look.cxone_past(ended + look.max_pending())
    {
        return Some(Finding::Wait(WaitingFor::CxoneTransferLeg));
    }
    let deadline = Duration::seconds(look.rules.handover_deadline_seconds as i64);
    let mut facts = look.derived.escalation_facts();
    facts.push(contact_fact(case.primary(), "ended without queueing"));
    let reason = if ended - escalated_at <= deadline {
        Reason::BeforeQueue
    } else {
        Reason::NotQueued
    };
    Some(Finding::Decide(reason, facts))
}

/// Rule 14: a bot turn at or over `bot_turn_timeout_ms` (the slowest is reported).
fn bot_turn_slow(look: &Look<'_, '_>) -> Option<Finding> {
    let timeout_ms = look.rules.bot_turn_timeout_ms;
    let slow = look
        .session()?
        .analytics
        .iter()
        .filter(|a| a.execution_time >= timeout_ms as f64)
        .max_by(|a, b| a.execution_time.total_cmp(&b.execution_time))?;
    let fact = Fact {
        source: FactSource::CognigyAnalytics,
        id: slow.id.clone().unwrap_or_else(|| slow.session_id.clone()),
        at: Some(slow.timestamp),
        detail: format!(
            "executionTime {} ms >= bot_turn_timeout_ms {timeout_ms}",
            slow.execution_time
        )
        .into(),
    };
    Some(Finding::Decide(Reason::BotTurnSlow, vec![fact]))
}

/// Rule 15, when no rule of [`RULES`] matched: the bot completed without any escalation.
fn bot_completed(look: &Look<'_, '_>) -> Finding {
    let fact = look.session().map_or_else(
        // Rule 1 decides every case without a session, so this is not reached; say so rather
        // than panic.
        || Fact {
            source: FactSource::Rule,
            id: "correlation".into(),
            at: Some(look.derived.ended),
            detail: "no escalation signal of any kind".into(),
        },
        |session| Fact {
            source: FactSource::CognigySession,
            id: session.session.session_id.clone(),
            at: Some(session.session.started_at),
            detail: "no escalation signal of any kind".into(),
        },
    );
    Finding::Decide(Reason::BotCompleted, vec![fact])
}

/// The line that shows the handover node had no usable contact id for an escalation: a
/// validation error naming a missing id, or an escalation run's ids line with an empty,
/// `undefined` or sentinel id after which no signal landed (from v4 on the node then skips the
/// API call without a word; before, it sends the sentinel to CXone, which refuses it).
fn missing_ids_line<'c, 'a>(case: &'c Case<'a>) -> Option<&'c CaseLog<'a>> {
    case.logs.iter().find(|l| match l.event {
        HandoverLog::MissingContactId => true,
        HandoverLog::NodeIds {
            contact_id,
            spawned_contact_id,
            ..
        } => {
            l.event.is_escalation()
                && (is_missing_id(contact_id) || is_missing_id(spawned_contact_id))
                && !case.logs.iter().any(|other| {
                    other.run == l.run
                        && matches!(other.event, HandoverLog::Signaled { .. })
                        && other.entry.timestamp >= l.entry.timestamp
                })
        }
        _ => false,
    })
}

/// One escalation signal of a case, kept as a reference: most diagnoses never show the
/// escalation facts, so they are only made into [`Fact`]s when a rule reports them.
#[derive(Debug, Clone, Copy)]
enum Escalation<'a> {
    /// The session's `handoverEscalations` counter, dated by its latest message (no real time).
    Counter(&'a Session, DateTime<Utc>),
    /// A Conversations record with `inHandoverRequest = true`.
    HandoverRequest(&'a Conversation),
    /// A Voice Gateway transfer event.
    Transfer(&'a Conversation),
    /// An escalation log line of the CXone extension.
    Log(&'a LogEntry),
}

impl Escalation<'_> {
    fn at(&self) -> DateTime<Utc> {
        match self {
            Escalation::Counter(_, at) => *at,
            Escalation::HandoverRequest(c) | Escalation::Transfer(c) => c.timestamp,
            Escalation::Log(l) => l.timestamp,
        }
    }

    fn fact(&self) -> Fact {
        match self {
            Escalation::Counter(s, at) => Fact {
                source: FactSource::CognigySession,
                id: s.session_id.clone(),
                at: Some(*at),
                detail: Detail::HandoverEscalations(s.handover_escalations),
            },
            Escalation::HandoverRequest(c) => handover_request_fact(c),
            Escalation::Transfer(c) => conversation_fact(c),
            Escalation::Log(l) => log_fact(l),
        }
    }
}

/// Facts derived once per case: escalation, queueing, latencies, the timeline.
struct Derived<'a> {
    started: DateTime<Utc>,
    ended: DateTime<Utc>,
    escalated_at: Option<DateTime<Utc>>,
    /// The escalation signals in time order.
    escalations: Vec<Escalation<'a>>,
    queued_contact: Option<&'a CompletedContact>,
    timeline: Vec<Fact>,
}

impl<'a> Derived<'a> {
    fn empty(started: DateTime<Utc>, ended: DateTime<Utc>) -> Derived<'a> {
        Derived {
            started,
            ended,
            escalated_at: None,
            escalations: Vec::new(),
            queued_contact: None,
            timeline: Vec::new(),
        }
    }

    /// The escalation signals as facts (for the rules that report them).
    fn escalation_facts(&self) -> Vec<Fact> {
        self.escalations.iter().map(Escalation::fact).collect()
    }

    fn compute(case: &Case<'a>, started: DateTime<Utc>, ended: DateTime<Utc>) -> Derived<'a> {
        let mut d = Derived::empty(started, ended);
        let conversations = case.session.as_ref().map_or(0, |s| s.conversations.len());
        d.timeline
            .reserve(1 + conversations + case.logs.len() + case.contacts.len());
        let mut escalations: Vec<Escalation<'a>> = Vec::new();
        if let Some(cs) = &case.session {
            let s = cs.session;
            d.timeline.push(Fact {
                source: FactSource::CognigySession,
                id: s.session_id.clone(),
                at: Some(s.started_at),
                detail: Detail::SessionStarted {
                    user_id: s.user_id.clone(),
                    handover_escalations: s.handover_escalations,
                    matched_by: cs.match_kind,
                },
            });
            if s.handover_escalations > 0 {
                // The session record has no escalation time; fall back to the latest message or
                // the session start so the earliest real signal wins when there is one.
                let at = cs
                    .conversations
                    .iter()
                    .map(|c| c.timestamp)
                    .max()
                    .unwrap_or(s.started_at);
                escalations.push(Escalation::Counter(s, at));
            }
            for c in &cs.conversations {
                if c.in_handover_request {
                    escalations.push(Escalation::HandoverRequest(c));
                }
                if c.input_data.event.as_ref().is_some_and(|e| e.is_transfer()) {
                    escalations.push(Escalation::Transfer(c));
                }
                if c.in_handover_request {
                    d.timeline.push(handover_request_fact(c));
                } else if c.input_data.event.is_some() || c.input_data.master_contact_id.is_some() {
                    d.timeline.push(conversation_fact(c));
                }
            }
        }
        for l in &case.logs {
            d.timeline.push(log_fact(l.entry));
            if l.event.is_escalation() {
                escalations.push(Escalation::Log(l.entry));
            }
        }
        // The earliest escalation signal; signals with a real timestamp come before the counter.
        d.escalated_at = escalations
            .iter()
            .filter(|e| !matches!(e, Escalation::Counter(..)))
            .map(Escalation::at)
            .min()
            .or_else(|| escalations.iter().map(Escalation::at).min());
        escalations.sort_by_key(Escalation::at);
        d.escalations = escalations;
        d.queued_contact = case
            .contacts
            .iter()
            .filter(|c| c.was_queued())
            .min_by_key(|c| c.queued_at())
            .copied();
        for c in &case.contacts {
            d.timeline.push(contact_fact(c, "contact"));
        }
        d.timeline.sort_by_key(|f| f.at);
        d
    }
}

fn done(case: &Case<'_>, reason: Reason, decided_by: Vec<Fact>, derived: Derived<'_>) -> Verdict {
    let queued_at = derived.queued_contact.map(|c| c.queued_at());
    let signal_to_queue_seconds = match (derived.escalated_at, queued_at) {
        (Some(e), Some(q)) if q >= e => Some((q - e).num_milliseconds() as f64 / 1000.0),
        (Some(_), Some(_)) => Some(0.0),
        _ => None,
    };
    let session = case.session.as_ref();
    let evidence = Evidence {
        contact_ids: case.contacts.iter().map(|c| c.contact_id).collect(),
        bot_entry: case.bot_entry,
        session_id: session.map(|s| s.session.session_id.clone()),
        match_kind: session.map(|s| s.match_kind),
        carried_contact_id: session.and_then(|s| s.carried_contact_id.clone()),
        contact_started_at: derived.started,
        contact_ended_at: derived.ended,
        escalated_at: derived.escalated_at,
        queued_at,
        queue_skill_id: derived.queued_contact.map(|c| c.skill_id),
        signal_to_queue_seconds,
        queue_wait_seconds: derived.queued_contact.map(|c| c.in_queue_seconds),
        bot_turn_seconds: session
            .map(|s| {
                s.analytics
                    .iter()
                    .map(|a| a.execution_time / 1000.0)
                    .collect()
            })
            .unwrap_or_default(),
        decided_by,
        timeline: derived.timeline,
    };
    Verdict::Diagnosed(Box::new(Diagnosis {
        contact_id: case.master_contact_id,
        outcome: reason.outcome(),
        failure: reason.failure(),
        reason,
        rule: reason.rule(),
        summary: reason.explain().into(),
        evidence,
    }))
}

fn handover_request_fact(c: &Conversation) -> Fact {
    Fact {
        source: FactSource::CognigyConversation,
        id: c.id.clone().unwrap_or_else(|| c.session_id.clone()),
        at: Some(c.timestamp),
        detail: "inHandoverRequest = true".into(),
    }
}

fn log_fact(entry: &LogEntry) -> Fact {
    Fact {
        source: FactSource::CognigyLog,
        id: entry.id.clone().unwrap_or_default(),
        at: Some(entry.timestamp),
        detail: entry.msg.clone().into(),
    }
}

fn conversation_fact(c: &Conversation) -> Fact {
    let detail = match &c.input_data.event {
        Some(e) => Detail::VoiceGateway {
            name: e.name.clone(),
            sip_status: e.sip_status,
            refer_status: e.refer_status,
            dial_call_status: e.dial_call_status.clone(),
        },
        None => match &c.input_data.master_contact_id {
            Some(id) => Detail::SipMasterId(id.clone()),
            None => Detail::Message {
                kind: c.kind.clone(),
                source: c.source.clone(),
            },
        },
    };
    Fact {
        source: FactSource::CognigyConversation,
        id: c.id.clone().unwrap_or_else(|| c.session_id.clone()),
        at: Some(c.timestamp),
        detail,
    }
}

fn contact_fact(c: &CompletedContact, what: &'static str) -> Fact {
    Fact {
        source: FactSource::CxoneContact,
        id: c.contact_id.to_string(),
        at: Some(c.contact_start_date),
        detail: Detail::Contact {
            what,
            point_of_contact_id: c.point_of_contact_id,
            skill_id: c.skill_id,
            pre_queue_seconds: c.pre_queue_seconds,
            in_queue_seconds: c.in_queue_seconds,
            agent_id: c.agent_id,
            abandoned: c.abandoned,
            total_duration_seconds: c.total_duration_seconds,
        },
    }
}
