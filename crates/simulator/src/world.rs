//! The simulated world: a deterministic stream of voice calls, each built to end in one chosen
//! reason of DESIGN §5, with consistent records on both sides (CXone contacts, Cognigy OData
//! Sessions / Conversations / Analytics, Cognigy project log lines) and its ground truth.
//!
//! Every call is generated from its own RNG seeded by `(seed, index)`, so the same seed gives the
//! same calls whether the world is built at once (`calls`) or grows in real time (`rate`). The truth
//! is known by construction: the generator picks the reason first and then writes exactly the
//! records that make it true under [`sim_rules`], respecting the rule order. It never calls the
//! crate's diagnosis. This module builds data only, plus the lookups that let a server find a
//! contact, a session's calls or a log entry without a scan (kept in step as calls are added and
//! forgotten) and the ordered log entries of each logs query (`log_index.rs`); serving it is
//! `cxone.rs` / `cognigy.rs`.

use crate::extension::{node_run_lines, ExtensionVersion, InvalidActionReport, NodeRun, RunResult};
use crate::log_index::{LogIndex, LogKey, LogSelector};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use handover_exporter::config::Rules;
use handover_exporter::engine::diagnosis::Reason;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};

/// The bot entry point of contact of the simulated tenant.
pub const BOT_ENTRY_POC: i64 = 3_189_288;
/// A point of contact that does not go to the bot (calls there must not be diagnosed).
pub const OTHER_POC: i64 = 3_189_300;
/// The Cognigy project id of the simulated tenant.
pub const PROJECT_ID: &str = "6601a2b3c4d5e6f708192a3b";
/// The CXone business unit of the simulated tenant.
pub const BUSINESS_UNIT_ID: i64 = 4_600_000;
/// The sentinel contact id the handover extension treats as "no id" (api/cognigy.md §3.4).
pub const SENTINEL_CONTACT_ID: &str = "100000000000";
const UNKNOWN_SKILL: i64 = 4050;
const ENTRY_SKILL: i64 = 4000;
const BACKCHANNEL_SKILL: i64 = 4900;

/// Seconds after a session ends before the world's Cognigy records appear, by default, and the
/// `cognigy_lag_seconds` of its rules.
pub const SIM_COGNIGY_LAG_SECONDS: u64 = 900;

/// The diagnosis rules the world is built for (the `[tenant.rules]` example of DESIGN §8) as the
/// `[rules]` table of a replay directory's `config.toml`, with `cognigy_lag_seconds` given: a
/// replay or a daemon waits at least as long as the world's records take to appear. Every other
/// key is what the world's generator builds for; the values are parsed by the real config code.
pub fn rules_table(cognigy_lag_seconds: u64) -> String {
    format!(
        "[rules]\n\
         bot_entry_points_of_contact = [{BOT_ENTRY_POC}]\n\
         bot_entry_skills = []\n\
         handover_skills = [4001, 4002]\n\
         contact_id_field = \"custom1\"\n\
         cognigy_lag_seconds = {cognigy_lag_seconds}\n\
         handover_deadline_seconds = 15\n\
         bot_turn_timeout_ms = 10000\n\
         correlation_window_seconds = 30\n\
         max_pending_seconds = 7200\n"
    )
}

/// The rules the simulator's world is built for, through the real config parser.
pub fn sim_rules() -> Rules {
    rules_with_lag(SIM_COGNIGY_LAG_SECONDS)
}

/// [`sim_rules`] with another `cognigy_lag_seconds`.
pub fn rules_with_lag(cognigy_lag_seconds: u64) -> Rules {
    // The table is a constant but for a number the parser accepts up to its bound; the test
    // `rules_table_parses_with_every_key` parses it, so this cannot fail for the lags in use.
    handover_exporter::config::parse_replay_rules(
        &rules_table(cognigy_lag_seconds),
        "the simulator's rules",
    )
    .expect("the simulator's rules table is valid")
}

/// How the generator ties a call's Cognigy session to its CXone contact (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchPath {
    CustomField,
    SipHeader,
    CallerTime,
    /// No session at all (`no_bot_session`).
    None,
}

impl MatchPath {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchPath::CustomField => "custom_field",
            MatchPath::SipHeader => "sip_header",
            MatchPath::CallerTime => "caller_time",
            MatchPath::None => "none",
        }
    }
}

/// Every reason the generator builds: all of DESIGN §5 except `source_unavailable`, which depends
/// on the daemon's reads, not on the data.
pub const GENERATED_REASONS: [Reason; 16] = [
    Reason::BotCompleted,
    Reason::AgentAnswered,
    Reason::NoBotSession,
    Reason::InvalidAction,
    Reason::NoContactId,
    Reason::SignalTimeout,
    Reason::SignalUnavailable,
    Reason::SignalRejected,
    Reason::TransferRejected,
    Reason::TransferNoAnswer,
    Reason::UnknownSkill,
    Reason::InQueue,
    Reason::Queued,
    Reason::BeforeQueue,
    Reason::NotQueued,
    Reason::BotTurnSlow,
];

/// Relative weights of the reasons after the first cycle (mostly contained or handed over).
const REASON_WEIGHTS: [(Reason, u32); 16] = [
    (Reason::BotCompleted, 380),
    (Reason::AgentAnswered, 260),
    (Reason::Queued, 40),
    (Reason::InQueue, 50),
    (Reason::BeforeQueue, 30),
    (Reason::NotQueued, 20),
    (Reason::BotTurnSlow, 25),
    (Reason::NoBotSession, 20),
    (Reason::InvalidAction, 15),
    (Reason::NoContactId, 20),
    (Reason::SignalTimeout, 20),
    (Reason::SignalUnavailable, 20),
    (Reason::SignalRejected, 20),
    (Reason::TransferRejected, 15),
    (Reason::TransferNoAnswer, 15),
    (Reason::UnknownSkill, 15),
];

/// What the world looks like: seed, call timing, lag, rules.
#[derive(Debug, Clone)]
pub struct WorldSpec {
    pub seed: u64,
    /// Start of the first call slot.
    pub origin: DateTime<Utc>,
    /// Time between call slots (each call starts at a random point in the first half of its slot).
    pub interval: Duration,
    /// A finite world of this many calls; `None` keeps generating as time passes.
    pub calls: Option<usize>,
    /// Cognigy OData records appear this long after their session ended.
    pub cognigy_lag: Duration,
    pub rules: Rules,
    pub scenario: Scenario,
    /// The CXone extension version whose handover log lines the calls write.
    pub extension_version: ExtensionVersion,
    /// A streaming world forgets calls that became visible longer ago than this (`None`: never).
    pub retention: Option<Duration>,
    /// When set, each session's OData records appear this long after it ends (drawn per call)
    /// instead of `cognigy_lag`.
    pub cognigy_delay: Option<super::cognigy::CognigyDelay>,
}

impl WorldSpec {
    /// `calls` calls spread over `window` ending early enough that, at `now`, every call has ended
    /// and its Cognigy records are visible.
    pub fn finite(
        seed: u64,
        calls: usize,
        window: Duration,
        cognigy_lag: Duration,
        now: DateTime<Utc>,
    ) -> WorldSpec {
        let calls = calls.max(1);
        // The longest generated call lasts well under 20 minutes.
        let origin = now - cognigy_lag - Duration::minutes(20) - window;
        let interval = Duration::milliseconds((window.num_milliseconds() / calls as i64).max(1000));
        WorldSpec {
            seed,
            origin,
            interval,
            calls: Some(calls),
            cognigy_lag,
            rules: sim_rules(),
            scenario: Scenario::Mixed,
            extension_version: ExtensionVersion::default(),
            retention: None,
            cognigy_delay: None,
        }
    }

    /// Calls at `rate_per_day`, starting `backlog` before `now` and continuing in real time.
    pub fn streaming(
        seed: u64,
        rate_per_day: f64,
        backlog: Duration,
        cognigy_lag: Duration,
        now: DateTime<Utc>,
    ) -> WorldSpec {
        let rate = if rate_per_day.is_finite() && rate_per_day > 0.0 {
            rate_per_day
        } else {
            1440.0
        };
        let interval_ms = ((86_400_000.0 / rate) as i64).max(50);
        WorldSpec {
            seed,
            origin: now - backlog,
            interval: Duration::milliseconds(interval_ms),
            calls: None,
            cognigy_lag,
            rules: sim_rules(),
            scenario: Scenario::Mixed,
            extension_version: ExtensionVersion::default(),
            retention: Some(Duration::hours(48).max(backlog + Duration::hours(24))),
            cognigy_delay: None,
        }
    }
}

/// One CXone completed contact, in the newer field generation with native JSON types.
#[derive(Debug, Clone)]
pub struct ContactRecord {
    pub contact_id: i64,
    pub started_at: DateTime<Utc>,
    pub last_update_time: DateTime<Utc>,
    pub skill_id: i64,
    pub json: Map<String, Value>,
}

/// One OData record (without its id field, added at serve time as `id` or `_id`).
#[derive(Debug, Clone)]
pub struct ODataRecord {
    pub id: String,
    pub json: Map<String, Value>,
    /// The record's natural time field (`startedAt` of a session, `timestamp` of a conversation
    /// or analytics record) exactly as a reader of `json` parses it: set once when the record is
    /// built, so serving a page does not parse a timestamp string per record and request.
    pub natural_time: Option<DateTime<Utc>>,
}

impl ODataRecord {
    /// A record whose natural time is the RFC 3339 string in `json[time_field]` (`None` when that
    /// field is missing or not such a string, as it then is for a reader of the JSON too).
    pub fn new(id: String, json: Map<String, Value>, time_field: &str) -> ODataRecord {
        let natural_time = json
            .get(time_field)
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
            .map(|d| d.with_timezone(&Utc));
        ODataRecord {
            id,
            json,
            natural_time,
        }
    }
}

/// A Cognigy session with its OData records. Its Sessions and Analytics records are visible
/// together once the session ended plus lag (or plus the drawn delay): Cognigy saves them at the
/// end of the session. Each Conversations record is visible `conversation_lag` after its own
/// timestamp: Cognigy writes it "immediately after a message arrives"
/// (docs.cognigy.com/ai/agents/analyze/collecting-data).
#[derive(Debug, Clone)]
pub struct SessionRecords {
    pub session_id: String,
    pub ended_at: DateTime<Utc>,
    pub visible_at: DateTime<Utc>,
    pub conversation_lag: Duration,
    pub session: ODataRecord,
    pub conversations: Vec<ODataRecord>,
    pub analytics: Vec<ODataRecord>,
}

/// One Cognigy project log entry (`_id`, `timestamp`, `msg`, `type`, `meta`, `traceId`).
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub id: String,
    pub timestamp: DateTime<Utc>,
    pub level: &'static str,
    pub json: Value,
    /// The lower-cased `msg` and `traceId`, NUL between them: what the logs `filter` searches,
    /// made once here (a selector of the log index searches each entry once, not lower-casing it).
    pub search_text: Box<str>,
}

/// The ground truth of one bot call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallTruth {
    pub reason: Reason,
    pub matched: MatchPath,
}

/// One generated call: its CXone contacts, its Cognigy data and (for bot calls) its truth.
#[derive(Debug, Clone)]
pub struct Call {
    pub index: usize,
    pub master_contact_id: i64,
    pub started_at: DateTime<Utc>,
    /// When the last contact of the group ended.
    pub ended_at: DateTime<Utc>,
    /// When the last contact of the group shows in `contacts/completed`.
    pub visible_at: DateTime<Utc>,
    pub contacts: Vec<ContactRecord>,
    pub session: Option<SessionRecords>,
    pub logs: Vec<LogRecord>,
    /// `None` for calls that never entered the bot (they must not be diagnosed).
    pub truth: Option<CallTruth>,
}

/// The generated calls so far.
#[derive(Debug, Clone)]
pub struct World {
    pub spec: WorldSpec,
    /// The calls kept, oldest first, with consecutive indices (a streaming world forgets calls
    /// past its retention). Only this module adds or removes calls, keeping the lookups in step.
    pub calls: Vec<Call>,
    next_index: usize,
    /// Contact id -> index of the call holding that contact (contact ids are unique by
    /// construction: four per call index).
    call_of_contact: HashMap<i64, usize>,
    /// `sessionId` value of any OData record -> indices of the calls holding such a record,
    /// ascending.
    calls_of_session: HashMap<String, Vec<usize>>,
    /// Whether every call generated so far starts no earlier than the one before it and every
    /// OData record of its session has a natural time no earlier than the call's start: then a
    /// scan in call order may stop once calls start after the last record it needs.
    records_follow_call_starts: bool,
    /// The start of the last call generated.
    last_start: Option<DateTime<Utc>>,
    /// The log entries each logs query asked so far selects, in order (brought up to date with
    /// the calls when asked for).
    log_index: LogIndex,
}

impl World {
    /// A world; a finite one is generated completely at once.
    pub fn new(spec: WorldSpec) -> World {
        let mut world = World {
            spec,
            calls: Vec::new(),
            next_index: 0,
            call_of_contact: HashMap::new(),
            calls_of_session: HashMap::new(),
            records_follow_call_starts: true,
            last_start: None,
            log_index: LogIndex::default(),
        };
        if let Some(n) = world.spec.calls {
            while world.next_index < n {
                world.push_next();
            }
        }
        world
    }

    /// Generates every call that starts at or before `t` (streaming worlds grow; finite ones don't).
    pub fn extend_until(&mut self, t: DateTime<Utc>) {
        loop {
            if self.spec.calls.is_some_and(|n| self.next_index >= n) {
                break;
            }
            let slot = self.slot_start(self.next_index);
            if slot > t {
                break;
            }
            self.push_next();
        }
        // Memory stays bounded in a long-running stream: calls past retention are forgotten.
        if let Some(retention) = self.spec.retention {
            let cutoff = t - retention;
            let keep_from = self
                .calls
                .iter()
                .take_while(|c| c.visible_at < cutoff)
                .count();
            for call in self.calls.drain(..keep_from) {
                for contact in &call.contacts {
                    if self.call_of_contact.get(&contact.contact_id) == Some(&call.index) {
                        self.call_of_contact.remove(&contact.contact_id);
                    }
                }
                for session_id in session_ids(&call) {
                    if let Some(indices) = self.calls_of_session.get_mut(session_id) {
                        indices.retain(|i| *i != call.index);
                        if indices.is_empty() {
                            self.calls_of_session.remove(session_id);
                        }
                    }
                }
            }
        }
    }

    /// Whether no OData record of a call is earlier than its call's start and calls come in start
    /// order (true of every generated world; checked as calls are generated, never assumed).
    pub fn records_follow_call_starts(&self) -> bool {
        self.records_follow_call_starts
    }

    /// The kept call with generator index `index`.
    pub fn call(&self, index: usize) -> Option<&Call> {
        let first = self.calls.first()?.index;
        self.calls
            .get(index.checked_sub(first)?)
            .filter(|c| c.index == index)
    }

    /// The kept contact with id `contact_id`, visible or not (a map lookup, not a scan).
    pub fn contact(&self, contact_id: i64) -> Option<&ContactRecord> {
        let call = self.call(*self.call_of_contact.get(&contact_id)?)?;
        call.contacts.iter().find(|c| c.contact_id == contact_id)
    }

    /// The kept calls, oldest first, holding an OData record whose `sessionId` is `session_id`:
    /// every call that can hold such a record (a map lookup, not a scan).
    pub fn calls_with_session<'a>(&'a self, session_id: &str) -> impl Iterator<Item = &'a Call> {
        self.calls_of_session
            .get(session_id)
            .into_iter()
            .flatten()
            .filter_map(|i| self.call(*i))
    }

    /// The keys of the kept log entries `selector` selects, in `(timestamp, id, world position)`
    /// order, with the kept calls that [`log_index::entry`] finds them in (a key whose call is
    /// no longer kept finds nothing).
    pub fn selected_logs(&mut self, selector: &LogSelector) -> (&BTreeSet<LogKey>, &[Call]) {
        let World {
            log_index, calls, ..
        } = self;
        (log_index.select(selector, calls), calls)
    }

    /// The kept log entry with id `id` (the first in world order): found through the call index
    /// the generated ids carry ([`object_id`]), or by a search for any other id.
    pub fn log_with_id(&self, id: &str) -> Option<&LogRecord> {
        let from_id = object_id_call_index(id)
            .and_then(|index| self.call(index))
            .and_then(|call| call.logs.iter().find(|l| l.id == id));
        from_id.or_else(|| {
            self.calls
                .iter()
                .flat_map(|c| c.logs.iter())
                .find(|l| l.id == id)
        })
    }

    fn slot_start(&self, index: usize) -> DateTime<Utc> {
        self.spec.origin
            + Duration::milliseconds(self.spec.interval.num_milliseconds() * index as i64)
    }

    fn push_next(&mut self) {
        let index = self.next_index;
        self.next_index += 1;
        let mut rng = StdRng::seed_from_u64(
            self.spec.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let half = (self.spec.interval.num_milliseconds() / 2).max(1);
        let start = self.slot_start(index) + Duration::milliseconds(rng.random_range(0..half));
        let mut call = generate_call(index, start, &mut rng, &self.spec);
        if let (Some(delay), Some(session)) = (&self.spec.cognigy_delay, call.session.as_mut()) {
            session.visible_at = session.ended_at + delay.sample(self.spec.seed, index);
        }
        let in_start_order = self.last_start.map_or(true, |last| last <= call.started_at);
        let records_after_start = call.session.iter().all(|s| {
            std::iter::once(&s.session)
                .chain(&s.conversations)
                .chain(&s.analytics)
                .all(|r| r.natural_time.is_some_and(|t| t >= call.started_at))
        });
        self.records_follow_call_starts &= in_start_order && records_after_start;
        self.last_start = Some(call.started_at);
        for contact in &call.contacts {
            self.call_of_contact
                .entry(contact.contact_id)
                .or_insert(call.index);
        }
        for session_id in session_ids(&call) {
            let indices = self
                .calls_of_session
                .entry(session_id.to_owned())
                .or_default();
            if indices.last() != Some(&call.index) {
                indices.push(call.index);
            }
        }
        self.calls.push(call);
    }
}

/// Every `sessionId` string of the OData records of `call` (usually one, repeated).
fn session_ids(call: &Call) -> impl Iterator<Item = &str> {
    call.session
        .iter()
        .flat_map(|s| {
            std::iter::once(&s.session)
                .chain(&s.conversations)
                .chain(&s.analytics)
        })
        .filter_map(|r| r.json.get("sessionId").and_then(Value::as_str))
}

/// A named mix of call reasons (`simulate --scenario`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Mostly contained or handed over, a few per cent of every failure; the first 16 calls cover
    /// every reason once.
    #[default]
    Mixed,
    /// Only contained and handed-over calls (and queue abandonment): no failures at all.
    Healthy,
    /// The CXone Signal API is failing: signal errors dominate.
    SignalOutage,
    /// Context does not reach Cognigy: `no_contact_id` and `no_bot_session` dominate.
    MissingContext,
    /// The handover node's log lines: the first calls are one of each node outcome
    /// ([`LOG_LINE_CALLS`]: success, End, 404, 504, 503, token 401, fetch failure, sentinel ids,
    /// missing action, ...), then the mixed scenario's calls.
    LogLines,
}

/// The calls the `log_lines` scenario starts with: a reason and how the node's run ends.
pub const LOG_LINE_CALLS: [(Reason, LogVariant); 12] = [
    (
        Reason::AgentAnswered,
        LogVariant::Result(RunResult::Signaled),
    ),
    (
        Reason::BotCompleted,
        LogVariant::Result(RunResult::Signaled),
    ),
    (
        Reason::SignalRejected,
        LogVariant::Result(RunResult::SignalStatus(404, "Not Found")),
    ),
    (
        Reason::SignalTimeout,
        LogVariant::Result(RunResult::SignalStatus(504, "Gateway Timeout")),
    ),
    (
        Reason::SignalUnavailable,
        LogVariant::Result(RunResult::SignalStatus(503, "Service Unavailable")),
    ),
    (
        Reason::SignalRejected,
        LogVariant::Result(RunResult::TokenStatus(401, "Unauthorized")),
    ),
    (
        Reason::SignalUnavailable,
        LogVariant::Result(RunResult::FetchFailed),
    ),
    (Reason::NoContactId, LogVariant::SentinelIds),
    (
        Reason::InvalidAction,
        LogVariant::Result(RunResult::Signaled),
    ),
    (Reason::NotQueued, LogVariant::OnlyInLog),
    (Reason::NoContactId, LogVariant::EmptyIds),
    (
        Reason::SignalTimeout,
        LogVariant::Result(RunResult::SignalStatus(408, "Request Timeout")),
    ),
];

/// How a call's handover node run is written, when the scenario fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogVariant {
    /// The run ends so.
    Result(RunResult),
    /// The flow passed the sentinel id `100000000000` for both ids.
    SentinelIds,
    /// The flow passed empty ids.
    EmptyIds,
    /// A successful escalation seen only in the node's lines: no `handoverEscalations`, no
    /// `meta.sessionId` (the run reaches its call through the spawned contact id).
    OnlyInLog,
}

/// Error for an unknown `--scenario` name.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown scenario {0:?}: expected mixed, healthy, signal_outage, missing_context or log_lines"
)]
pub struct ScenarioParseError(String);

impl std::str::FromStr for Scenario {
    type Err = ScenarioParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "mixed" => Ok(Scenario::Mixed),
            "healthy" => Ok(Scenario::Healthy),
            "signal_outage" => Ok(Scenario::SignalOutage),
            "missing_context" => Ok(Scenario::MissingContext),
            "log_lines" => Ok(Scenario::LogLines),
            _ => Err(ScenarioParseError(s.to_owned())),
        }
    }
}

impl Scenario {
    fn weight(self, reason: Reason, base: u32) -> u32 {
        use Reason::*;
        match self {
            Scenario::Mixed | Scenario::LogLines => base,
            Scenario::Healthy => match reason {
                BotCompleted | AgentAnswered | Queued | InQueue => base,
                _ => 0,
            },
            Scenario::SignalOutage => match reason {
                SignalTimeout | SignalUnavailable | SignalRejected => base * 15,
                _ => base,
            },
            Scenario::MissingContext => match reason {
                NoContactId | NoBotSession => base * 15,
                _ => base,
            },
        }
    }
}

fn pick_reason(index: usize, scenario: Scenario, rng: &mut StdRng) -> Option<Reason> {
    // In the mixed scenario the first slots cycle through every reason so any world of 16+ calls
    // covers them all; slot 16 and then about one in ten is a call that never enters the bot.
    if scenario == Scenario::Mixed && index < GENERATED_REASONS.len() {
        return Some(GENERATED_REASONS[index]);
    }
    if scenario == Scenario::LogLines && index < LOG_LINE_CALLS.len() {
        return Some(LOG_LINE_CALLS[index].0);
    }
    if index == GENERATED_REASONS.len() || rng.random_range(0..10) == 0 {
        return None;
    }
    let total: u32 = REASON_WEIGHTS
        .iter()
        .map(|(r, w)| scenario.weight(*r, *w))
        .sum();
    let mut pick = rng.random_range(0..total.max(1));
    for (reason, weight) in REASON_WEIGHTS {
        let weight = scenario.weight(reason, weight);
        if pick < weight {
            return Some(reason);
        }
        pick -= weight;
    }
    Some(Reason::BotCompleted)
}

fn pick_path(reason: Reason, index: usize, rng: &mut StdRng) -> MatchPath {
    use Reason::*;
    match reason {
        NoBotSession => MatchPath::None,
        // Rule 3: escalated and only matched by caller and time.
        NoContactId => MatchPath::CallerTime,
        // Not escalated: any path works.
        BotCompleted | BotTurnSlow | InvalidAction => {
            // In the first cycle each of these takes a different path, so the three match
            // kinds are all covered by any world of 16+ calls.
            let pick = if index < GENERATED_REASONS.len() {
                match reason {
                    BotCompleted => 2,
                    InvalidAction => 1,
                    _ => 0,
                }
            } else {
                rng.random_range(0..3)
            };
            [
                MatchPath::CustomField,
                MatchPath::SipHeader,
                MatchPath::CallerTime,
            ][pick]
        }
        // Escalated: a caller/time match would make it `no_contact_id`, so a carried id is needed.
        _ => {
            let pick = if index < GENERATED_REASONS.len() {
                index % 2
            } else {
                rng.random_range(0..2)
            };
            [MatchPath::CustomField, MatchPath::SipHeader][pick]
        }
    }
}

/// ISO-8601 UTC with milliseconds and `Z`, as both APIs write timestamps.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn ms(n: i64) -> Duration {
    Duration::milliseconds(n)
}

fn hex_id(rng: &mut StdRng, len: usize) -> String {
    (0..len)
        .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
        .collect()
}

fn uuid(rng: &mut StdRng) -> String {
    format!(
        "{}-{}-4{}-a{}-{}",
        hex_id(rng, 8),
        hex_id(rng, 4),
        hex_id(rng, 3),
        hex_id(rng, 3),
        hex_id(rng, 12)
    )
}

/// A 24-hex-digit Mongo-style id: creation seconds, then a per-call counter.
fn object_id(t: DateTime<Utc>, index: usize, k: usize) -> String {
    format!(
        "{:08x}{:016x}",
        t.timestamp().max(0) as u32,
        (index as u64) * 1024 + k as u64
    )
}

/// The call index an [`object_id`] carries (none for an id of another shape).
fn object_id_call_index(id: &str) -> Option<usize> {
    let serial = id.get(8..).filter(|_| id.len() == 24)?;
    usize::try_from(u64::from_str_radix(serial, 16).ok()? / 1024).ok()
}

struct Queueing {
    skill_id: i64,
    skill_name: &'static str,
    wait_seconds: i64,
    agent_id: i64,
    agent_seconds: i64,
    abandoned: bool,
    end_reason: &'static str,
}

#[allow(clippy::too_many_arguments)]
fn contact_json(
    contact_id: i64,
    master_id: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    last_update: DateTime<Utc>,
    from: &str,
    poc: (i64, &str),
    skill: (i64, &str),
    pre_queue: i64,
    queue: Option<&Queueing>,
    end_reason: &str,
) -> Map<String, Value> {
    let total = (end - start).num_seconds().max(1);
    let (in_queue, agent_id, agent_seconds, abandoned, abandon_seconds) = match queue {
        Some(q) => (
            q.wait_seconds,
            q.agent_id,
            q.agent_seconds,
            q.abandoned,
            if q.abandoned { q.wait_seconds } else { 0 },
        ),
        None => (0, 0, 0, false, 0),
    };
    let value = json!({
        "contactId": contact_id,
        "masterContactId": master_id,
        "contactStartDate": iso(start),
        "lastUpdateTime": iso(last_update),
        "mediaTypeId": 4,
        "mediaTypeName": "Phone Call",
        "mediaSubTypeId": 0,
        "mediaSubTypeName": "",
        "fromAddress": from,
        "toAddress": "+18005550100",
        "pointOfContactId": poc.0,
        "pointOfContactName": poc.1,
        "skillId": skill.0,
        "skillName": skill.1,
        "campaignId": 999_999,
        "campaignName": "Main Campaign",
        "teamId": if agent_id != 0 { 77 } else { 0 },
        "teamName": if agent_id != 0 { "Tier 1" } else { "" },
        "agentId": agent_id,
        "firstName": if agent_id != 0 { "Alex" } else { "" },
        "lastName": if agent_id != 0 { "Agent" } else { "" },
    });
    // Two literals: one `json!` this size exceeds the macro recursion limit.
    let timings = json!({
        "abandoned": abandoned,
        "abandonSeconds": abandon_seconds,
        "isShortAbandon": false,
        "preQueueSeconds": pre_queue,
        "inQueueSeconds": in_queue,
        "postQueueSeconds": 0,
        "agentSeconds": agent_seconds,
        "acwSeconds": if agent_id != 0 { 20 } else { 0 },
        "conferenceSeconds": 0,
        "holdSeconds": 0,
        "holdCount": 0,
        "releaseSeconds": 0,
        "totalDurationSeconds": total,
        "callbackTime": 0,
        "routingTime": 0,
        "primaryDispositionId": 0,
        "secondaryDispositionId": 0,
        "dispositionNotes": "",
        "transferIndicatorId": 0,
        "transferIndicatorName": "None",
        "refuseReason": "",
        "refuseTime": null,
        "isLogged": false,
        "isOutbound": false,
        "isRefused": false,
        "isTakeover": false,
        "isActive": false,
        "isWarehoused": true,
        "dateContactWarehoused": iso(last_update),
        "dateACWWarehoused": null,
        "serviceLevelFlag": 0,
        "endReason": end_reason,
        "stateId": 18,
        "stateName": "EndContact",
        "routingAttribute": 0,
        "highProficiency": 1,
        "lowProficiency": 20,
        "isAnalyticsProcessed": false,
        "analyticsProcessedDate": null,
        "tags": [],
        "divisionNo": 0
    });
    let mut map = object(value);
    map.extend(object(timings));
    map
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

struct SessionBuilder<'a> {
    index: usize,
    session_id: String,
    user_id: String,
    url_token: String,
    conversations: Vec<ODataRecord>,
    analytics: Vec<ODataRecord>,
    rng: &'a mut StdRng,
}

impl SessionBuilder<'_> {
    fn conversation(
        &mut self,
        t: DateTime<Utc>,
        kind: &str,
        source: &str,
        text: &str,
        input_data: Option<Value>,
    ) {
        let k = self.conversations.len();
        let input_id = uuid(self.rng);
        let data = input_data
            .map(|v| v.to_string())
            .unwrap_or_else(|| "{}".to_owned());
        self.conversations.push(ODataRecord::new(
            object_id(t, self.index, 100 + k),
            object(json!({
                "projectId": PROJECT_ID,
                "projectName": "Claims Voicebot",
                "inputId": input_id,
                "sessionId": self.session_id,
                "contactId": self.user_id,
                "organisation": "5f8833dae72b850ad2ed4d53",
                "inputText": text,
                "inputData": data,
                "type": kind,
                "source": source,
                "timestamp": iso(t),
                "flowName": "Main",
                "flowParentId": "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
                "channel": "voiceGateway2",
                "inHandoverRequest": false,
                "inHandoverConversation": false,
                "outputId": if kind == "output" { Value::String(uuid(self.rng)) } else { Value::Null },
                "inputAttachments": null,
                "reference": null,
                "localeReferenceId": "7eff993c-b801-4556-b111-1c319e8577cf",
                "endpointUrlToken": self.url_token,
                "endpointName": "VG Inbound",
                "snapshotId": null,
                "snapshotName": null,
                "rating": null,
                "ratingComment": null
            })),
            "timestamp",
        ));
    }

    fn analytics(
        &mut self,
        t: DateTime<Utc>,
        text: &str,
        execution_ms: i64,
        custom1: Option<&str>,
    ) {
        let k = self.analytics.len();
        let input_id = uuid(self.rng);
        let user_hash = hex_id(self.rng, 32);
        let mut record = object(json!({
                "organisation": "5f8833dae72b850ad2ed4d53",
                "projectId": PROJECT_ID,
                "flowReferenceId": "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
                "entrypoint": self.url_token,
                "ip": "",
                "contactId": user_hash,
                "sessionId": self.session_id,
                "inputId": input_id,
                "inputText": text,
                "inputData": "{}",
                "state": "default",
                "mode": "TextOnly",
                "userType": "external",
                "channel": "voiceGateway2",
                "flowLanguage": "en-US",
                "intent": if text.contains("agent") { "talk_to_agent" } else { "claim_status" },
                "intentFlow": "Main",
                "intentScore": 0.87,
                "completedGoalsList": [],
                "foundSlots": [],
                "foundSlotDetails": [],
                "understood": true
        }));
        let tail = object(json!({
                "timestamp": iso(t),
                "executionTime": execution_ms,
                "execution": 1,
                "custom1": custom1.unwrap_or(""),
                "custom2": "", "custom3": "", "custom4": "", "custom5": "",
                "custom6": "", "custom7": "", "custom8": "", "custom9": "", "custom10": "",
                "localeReferenceId": "7eff993c-b801-4556-b111-1c319e8577cf",
                "localeName": "English",
                "endpointUrlToken": self.url_token,
                "endpointName": "VG Inbound",
                "rating": null,
                "ratingComment": null,
                "snapshotName": null
        }));
        record.extend(tail);
        self.analytics.push(ODataRecord::new(
            object_id(t, self.index, 200 + k),
            record,
            "timestamp",
        ));
    }
}

#[allow(clippy::too_many_arguments)]
fn log_record(
    index: usize,
    k: usize,
    t: DateTime<Utc>,
    level: &'static str,
    msg: String,
    session_id: &str,
    user_id: &str,
    trace: &str,
) -> LogRecord {
    let id = object_id(t, index, 300 + k);
    let mut meta = json!({ "flowName": "Main", "userId": user_id });
    if !session_id.is_empty() {
        meta["sessionId"] = json!(session_id);
    }
    let search_text = format!("{}\u{0}{}", msg, trace)
        .to_ascii_lowercase()
        .into_boxed_str();
    LogRecord {
        id: id.clone(),
        timestamp: t,
        level,
        search_text,
        json: json!({
            "_id": id,
            "timestamp": iso(t),
            "msg": msg,
            "type": level,
            "meta": meta,
            "traceId": trace
        }),
    }
}

/// One call of the world: its ids, and for a bot call the session, the handover node's run, its
/// log lines, its CXone contacts and its truth. The parts draw from `rng` in this order, which
/// is what makes a seed's world: a part that draws more, less or earlier changes every call
/// after it.
fn generate_call(index: usize, t0: DateTime<Utc>, rng: &mut StdRng, spec: &WorldSpec) -> Call {
    let ids = CallIds::draw(index, rng);
    let Some(reason) = pick_reason(index, spec.scenario, rng) else {
        return non_bot_call(index, ids.master, t0, &ids.from_address, rng);
    };
    let plan = CallPlan::draw(index, reason, spec, rng);
    let (mut b, opening) = open_session(&ids, &plan, t0, rng);
    let esc = bot_turns(
        &mut b,
        &plan,
        &opening,
        spec.rules.bot_turn_timeout_ms as i64,
    );
    let node = handover_node_run(&mut b, &ids, &plan, &opening, esc);
    let log_session = if logs_carry_session_id(&plan, b.rng) {
        b.session_id.clone()
    } else {
        String::new()
    };
    let mut logs = flow_log_lines(&b, &ids, &log_session);
    logs.extend(node_log_lines(
        &ids,
        &plan,
        &node,
        esc,
        logs.len(),
        &log_session,
        &opening.trace,
    ));
    transfer_outcome(&mut b, reason, &ids.number, esc);
    let session_end = session_end(reason, esc);
    let queueing = queueing(reason, b.rng);
    let times = ContactTimes::draw(
        reason,
        t0,
        esc,
        session_end,
        spec.rules.handover_deadline_seconds as i64,
        b.rng,
    );
    let contacts = cxone_contacts(&ids, reason, queueing.as_ref(), &times, b.rng);
    let session = if reason == Reason::NoBotSession {
        logs.clear();
        None
    } else {
        Some(session_records(
            &mut b,
            &ids,
            &opening,
            session_end,
            spec.cognigy_lag,
            node.escalations,
        ))
    };
    let ended_at = contacts.iter().map(ended).max().unwrap_or(times.master_end);
    let visible_at = contacts
        .iter()
        .map(|c| c.last_update_time)
        .max()
        .unwrap_or(times.master_end);
    Call {
        index,
        master_contact_id: ids.master,
        started_at: t0,
        ended_at,
        visible_at,
        contacts,
        session,
        logs,
        truth: Some(CallTruth {
            reason,
            matched: plan.path,
        }),
    }
}

/// Who calls and under which CXone ids: four contact ids per call index, the caller's number.
struct CallIds {
    index: usize,
    master: i64,
    spawned: i64,
    leg: i64,
    number: String,
    /// The number as CXone's `fromAddress` writes it (with or without the plus).
    from_address: String,
}

impl CallIds {
    fn draw(index: usize, rng: &mut StdRng) -> CallIds {
        let master = 710_000_000_000 + index as i64 * 4;
        let number = format!(
            "+1{:03}{:07}",
            200 + (index / 10_000_000) % 800,
            index % 10_000_000
        );
        // Some CXone tenants send the ANI without the plus; correlation normalises both sides.
        let from_address = if rng.random_bool(0.3) {
            number.trim_start_matches('+').to_owned()
        } else {
            number.clone()
        };
        CallIds {
            index,
            master,
            spawned: master + 1,
            leg: master + 2,
            number,
            from_address,
        }
    }
}

/// What a bot call is built to show: its reason, how it matches, the extension version writing
/// its node's lines, and the node run the `log_lines` scenario fixes (if any).
struct CallPlan {
    reason: Reason,
    path: MatchPath,
    version: ExtensionVersion,
    fixed: Option<LogVariant>,
}

impl CallPlan {
    fn draw(index: usize, reason: Reason, spec: &WorldSpec, rng: &mut StdRng) -> CallPlan {
        let fixed = (spec.scenario == Scenario::LogLines && index < LOG_LINE_CALLS.len())
            .then(|| LOG_LINE_CALLS[index].1.clone());
        let path = match fixed {
            // The flow tied the session by its custom field but gave the node no usable spawned
            // id: only the node's own lines show the missing id.
            Some(LogVariant::SentinelIds | LogVariant::EmptyIds) => MatchPath::CustomField,
            _ => pick_path(reason, index, rng),
        };
        CallPlan {
            reason,
            path,
            version: spec.extension_version,
            fixed,
        }
    }
}

/// What the session's opening fixed for the parts after it.
struct SessionOpening {
    started_at: DateTime<Utc>,
    /// The trace id of the handover node's lines.
    trace: String,
    /// The `X-InContact-MasterId` / `X-InContact-ContactId` values of the INVITE, if any.
    header_ids: Option<(String, String)>,
    /// The contact id the flow writes to the Analytics `custom1` field, if it does.
    custom_id: Option<String>,
}

/// The session's ids, its SIP INVITE (with the contact ids the match path gives it) and the
/// bot's greeting.
fn open_session<'a>(
    ids: &CallIds,
    plan: &CallPlan,
    t0: DateTime<Utc>,
    rng: &'a mut StdRng,
) -> (SessionBuilder<'a>, SessionOpening) {
    let session_start = t0 + ms(rng.random_range(1500..9000));
    let session_id = uuid(rng);
    let url_token = hex_id(rng, 64);
    let trace = format!("endpoint-{}", uuid(rng));
    let mut b = SessionBuilder {
        index: ids.index,
        session_id,
        user_id: ids.number.clone(),
        url_token,
        conversations: Vec::new(),
        analytics: Vec::new(),
        rng,
    };
    let custom_id: Option<String> = match plan.path {
        MatchPath::CustomField => Some(ids.master.to_string()),
        _ => None,
    };
    let header_ids = sip_header_ids(ids, plan, b.rng);
    // The first record carries the SIP INVITE (api/cognigy.md §3.4).
    let invite = sip_invite(&ids.number, header_ids.as_ref());
    b.conversation(session_start, "input", "user", "", Some(invite));
    b.conversation(
        session_start + ms(400),
        "output",
        "bot",
        "Welcome to Claims. How can I help?",
        None,
    );
    let opening = SessionOpening {
        started_at: session_start,
        trace,
        header_ids,
        custom_id,
    };
    (b, opening)
}

/// The contact ids the INVITE's `X-InContact-*` headers carry, by match path and reason.
fn sip_header_ids(ids: &CallIds, plan: &CallPlan, rng: &mut StdRng) -> Option<(String, String)> {
    let (master, spawned) = (ids.master, ids.spawned);
    match (plan.path, plan.reason) {
        (MatchPath::SipHeader, _) => Some((master.to_string(), spawned.to_string())),
        // A well-built flow has both; the custom field wins correlation.
        (MatchPath::CustomField, _) if rng.random_bool(0.5) => {
            Some((master.to_string(), spawned.to_string()))
        }
        (MatchPath::CallerTime, Reason::NoContactId) => {
            let sentinel = match &plan.fixed {
                Some(LogVariant::SentinelIds) => true,
                Some(_) => false,
                None => rng.random_bool(0.5),
            };
            if sentinel {
                Some((
                    SENTINEL_CONTACT_ID.to_owned(),
                    SENTINEL_CONTACT_ID.to_owned(),
                ))
            } else {
                Some((String::new(), String::new()))
            }
        }
        _ => None,
    }
}

/// The `inputData` of the session's first record: the SIP INVITE's headers.
fn sip_invite(number: &str, header_ids: Option<&(String, String)>) -> Value {
    let mut headers = Map::new();
    headers.insert(
        "From".into(),
        json!(format!("<sip:{number}@cxone.example>")),
    );
    headers.insert("To".into(), json!("<sip:+18005550100@vg.example.net>"));
    headers.insert(
        "X-CXone".into(),
        json!(json!({"businessUnit": BUSINESS_UNIT_ID, "flowChannel": "VOICE"}).to_string()),
    );
    if let Some((m, s)) = header_ids {
        headers.insert("X-InContact-MasterId".into(), json!(m));
        headers.insert("X-InContact-ContactId".into(), json!(s));
    }
    json!({ "payload": { "sip": { "headers": Value::Object(headers) } } })
}

/// The caller's turns with the bot (one of them slow for `bot_turn_slow`, the last asking for an
/// agent when the call escalates), each with its Analytics record; returns when the node runs.
fn bot_turns(
    b: &mut SessionBuilder<'_>,
    plan: &CallPlan,
    opening: &SessionOpening,
    timeout_ms: i64,
) -> DateTime<Utc> {
    let reason = plan.reason;
    let turns = b.rng.random_range(1..4);
    let slow_turn = (reason == Reason::BotTurnSlow).then(|| b.rng.random_range(0..turns));
    let mut t = opening.started_at + ms(b.rng.random_range(3000..8000));
    let escalating = !matches!(
        reason,
        Reason::BotCompleted | Reason::BotTurnSlow | Reason::InvalidAction
    );
    for turn in 0..turns {
        let last = turn + 1 == turns;
        let text = if last && escalating {
            "I want to talk to an agent"
        } else {
            "What is the status of my claim"
        };
        let exec = if slow_turn == Some(turn) {
            b.rng.random_range(timeout_ms..timeout_ms + 5000)
        } else {
            b.rng.random_range(150..(timeout_ms / 3).max(151))
        };
        b.conversation(t, "input", "user", text, None);
        b.analytics(t, text, exec, opening.custom_id.as_deref());
        let reply = if last && escalating {
            "One moment, I am connecting you."
        } else {
            "Your claim is being processed."
        };
        b.conversation(t + ms(exec), "output", "bot", reply, None);
        t = t + ms(exec) + ms(b.rng.random_range(4000..12000));
    }
    t
}

/// The handover node's run as the call's reason needs it.
struct HandoverNode {
    /// The contact ids the flow passes the node.
    contact_id: String,
    spawned_contact_id: String,
    /// `(action, result)` of the run; `None`: the node did not run or wrote nothing.
    run: Option<(&'static str, RunResult)>,
    /// The session's `handoverEscalations` counter.
    escalations: i32,
}

/// The handover node's run (docs/log-lines.md): the ids the flow passes it, its action and how
/// it ends, whether the session counts the escalation, and (for the versions that report a
/// missing action so) the bot's error output.
fn handover_node_run(
    b: &mut SessionBuilder<'_>,
    ids: &CallIds,
    plan: &CallPlan,
    opening: &SessionOpening,
    esc: DateTime<Utc>,
) -> HandoverNode {
    use Reason::*;
    let (contact_id, spawned_contact_id) = node_contact_ids(ids, plan, opening, b.rng);
    let (version, fixed) = (plan.version, &plan.fixed);
    let mut escalations = 0;
    let run: Option<(&'static str, RunResult)> = match plan.reason {
        BotCompleted | BotTurnSlow => {
            (fixed.is_some() || b.rng.random_bool(0.7)).then_some(("End", RunResult::Signaled))
        }
        InvalidAction => match version.invalid_action_report() {
            InvalidActionReport::Log => Some(("", RunResult::Signaled)),
            InvalidActionReport::UnknownActionSent => Some(("Transfer", RunResult::Signaled)),
            // Before v5 only an empty action is refused; an unknown one is signalled as it is.
            InvalidActionReport::Output(_)
                if !version.refuses_unknown_action()
                    && fixed.is_none()
                    && b.rng.random_bool(0.5) =>
            {
                Some(("Transfer", RunResult::Signaled))
            }
            InvalidActionReport::Output(text) => {
                b.conversation(esc + ms(200), "output", "bot", text, None);
                None
            }
        },
        NoContactId => {
            // The escalation is in the session's counter too, except where the node's ids line
            // alone must show it (the `log_lines` scenario's sentinel call).
            if *fixed != Some(LogVariant::SentinelIds) {
                escalations = 1;
            }
            Some(("Escalate", RunResult::Signaled))
        }
        SignalTimeout | SignalUnavailable | SignalRejected => Some((
            "Escalate",
            pick_run_result(fixed, b.rng, signal_failures(plan.reason)),
        )),
        TransferRejected | TransferNoAnswer | NoBotSession => None,
        _ => {
            // `handoverEscalations` is set only by the newest version's optional toggle (or
            // the flow's own analytics node): often the node's lines are the only evidence.
            if *fixed != Some(LogVariant::OnlyInLog) && b.rng.random_bool(0.5) {
                escalations = 1;
            }
            Some(("Escalate", RunResult::Signaled))
        }
    };
    HandoverNode {
        contact_id,
        spawned_contact_id,
        run,
        escalations,
    }
}

/// The ids the flow passes the node: the SIP headers it got; without them (caller/time only),
/// nothing usable.
fn node_contact_ids(
    ids: &CallIds,
    plan: &CallPlan,
    opening: &SessionOpening,
    rng: &mut StdRng,
) -> (String, String) {
    let master_text = ids.master.to_string();
    let spawned_text = ids.spawned.to_string();
    let fixed = &plan.fixed;
    let (main, spawned): (&str, &str) = match &opening.header_ids {
        _ if *fixed == Some(LogVariant::SentinelIds) => (&master_text, SENTINEL_CONTACT_ID),
        _ if *fixed == Some(LogVariant::EmptyIds) => (&master_text, ""),
        _ if plan.path != MatchPath::CallerTime => (&master_text, &spawned_text),
        Some((m, s)) => (m, s),
        // Versions before v4 signal the sentinel like an id (and CXone refuses it): a flow
        // without context is given empty ids there, so an `End` run stays silent.
        None if plan.version.signals_sentinel() => ("", ""),
        None if rng.random_bool(0.5) => (SENTINEL_CONTACT_ID, SENTINEL_CONTACT_ID),
        None => ("", ""),
    };
    (main.to_owned(), spawned.to_owned())
}

/// The ways the node's signal fails for a signal reason.
fn signal_failures(reason: Reason) -> &'static [RunResult] {
    match reason {
        Reason::SignalTimeout => &[
            RunResult::SignalStatus(504, "Gateway Timeout"),
            RunResult::SignalStatus(408, "Request Timeout"),
        ],
        Reason::SignalUnavailable => &[
            RunResult::SignalStatus(503, "Service Unavailable"),
            RunResult::SignalStatus(429, "Too Many Requests"),
            RunResult::SignalStatus(500, "Internal Server Error"),
            RunResult::FetchFailed,
        ],
        _ => &[
            RunResult::SignalStatus(404, "Not Found"),
            RunResult::SignalStatus(400, "Bad Request"),
            RunResult::TokenStatus(401, "Unauthorized"),
        ],
    }
}

/// The run's result: the one the scenario fixes, else one of `options` at random.
fn pick_run_result(
    fixed: &Option<LogVariant>,
    rng: &mut StdRng,
    options: &[RunResult],
) -> RunResult {
    match fixed {
        Some(LogVariant::Result(result)) => result.clone(),
        _ => options[rng.random_range(0..options.len())].clone(),
    }
}

/// Whether the call's log lines carry `meta.sessionId` (UNVERIFIED in the real log API): a run
/// with no id in its text has only that to reach its call by.
fn logs_carry_session_id(plan: &CallPlan, rng: &mut StdRng) -> bool {
    let run_has_no_ids = (plan.reason == Reason::InvalidAction
        && plan.version.invalid_action_report() == InvalidActionReport::Log)
        || (plan.reason == Reason::NoContactId && plan.version == ExtensionVersion::V8);
    match &plan.fixed {
        Some(LogVariant::OnlyInLog | LogVariant::SentinelIds) => false,
        _ if run_has_no_ids => true,
        _ => rng.random_bool(0.5),
    }
}

/// Info lines of the flow's other nodes, one trace per user turn: log volume, never evidence.
fn flow_log_lines(b: &SessionBuilder<'_>, ids: &CallIds, log_session: &str) -> Vec<LogRecord> {
    let mut logs: Vec<LogRecord> = Vec::new();
    for (k, c) in b
        .conversations
        .iter()
        .filter(|c| c.json.get("source").and_then(Value::as_str) == Some("user"))
        .enumerate()
    {
        let Some(at) = c.natural_time else { continue };
        let turn_trace = format!("endpoint-{}", c.id);
        for (j, msg) in [
            "Code: looked up the caller's open claims",
            "Lookup: intent branch taken",
        ]
        .into_iter()
        .enumerate()
        {
            logs.push(log_record(
                ids.index,
                2 * k + j,
                at + ms(50 * (j as i64 + 1)),
                "info",
                msg.to_owned(),
                log_session,
                &ids.number,
                &turn_trace,
            ));
        }
    }
    logs
}

/// The handover node's own lines for its run (none when it did not run), numbered on from
/// `first` and a few milliseconds apart.
fn node_log_lines(
    ids: &CallIds,
    plan: &CallPlan,
    node: &HandoverNode,
    esc: DateTime<Utc>,
    first: usize,
    session_id: &str,
    trace: &str,
) -> Vec<LogRecord> {
    let Some((action, result)) = &node.run else {
        return Vec::new();
    };
    let lines = node_run_lines(
        plan.version,
        &NodeRun {
            action,
            contact_id: &node.contact_id,
            spawned_contact_id: &node.spawned_contact_id,
            result: result.clone(),
        },
    );
    lines
        .into_iter()
        .enumerate()
        .map(|(k, (level, msg))| {
            log_record(
                ids.index,
                first + k,
                esc + ms(200 + 20 * k as i64),
                level,
                msg,
                session_id,
                &ids.number,
                trace,
            )
        })
        .collect()
}

/// How a transfer after the node's signal fails, as the Voice Gateway event the session gets:
/// a refused REFER or dial for `transfer_rejected`, nobody answering for `transfer_no_answer`.
fn transfer_outcome(b: &mut SessionBuilder<'_>, reason: Reason, number: &str, esc: DateTime<Utc>) {
    match reason {
        Reason::TransferRejected => {
            let refer = b.rng.random_bool(0.5);
            let event = if refer {
                json!({
                    "event": "TRANSFER_REFER_ERROR",
                    "payload": {
                        "call_sid": uuid(b.rng), "direction": "inbound", "from": number, "to": "+18005550100",
                        "call_id": uuid(b.rng), "sip_status": 200, "sip_reason": "OK", "call_status": "in-progress",
                        "account_sid": uuid(b.rng), "trace_id": hex_id(b.rng, 32), "application_sid": uuid(b.rng),
                        "fs_sip_address": "10.0.0.12:5060", "originating_sip_ip": "203.0.113.10",
                        "originating_sip_trunk_name": "CXone", "api_base_url": "vg.example.net/v1", "refer_status": 603
                    },
                    "numberMetaData": { "number": number, "country": "US", "countryCallingCode": "1",
                        "nationalNumber": number.trim_start_matches("+1"), "valid": true, "type": "FIXED_LINE",
                        "uri": format!("tel:{number}") }
                })
            } else {
                json!({
                    "event": "TRANSFER_DIAL_ERROR",
                    "payload": {
                        "call_sid": uuid(b.rng), "direction": "inbound", "from": number, "to": "+18005550199",
                        "call_id": uuid(b.rng), "sip_status": 488, "sip_reason": "Not Acceptable Here",
                        "call_status": "failed", "caller_id": number, "parent_call_sid": uuid(b.rng),
                        "account_sid": uuid(b.rng), "trace_id": hex_id(b.rng, 32)
                    }
                })
            };
            b.conversation(esc + ms(1500), "input", "user", "", Some(event));
        }
        Reason::TransferNoAnswer => {
            let event = json!({
                "event": "NO_ANSWER",
                "payload": {
                    "call_sid": uuid(b.rng), "direction": "inbound", "from": number, "to": "+18005550199",
                    "call_status": "completed", "call_termination_by": "caller", "duration": 60,
                    "dial_call_status": "no-answer", "dial_sip_status": 487, "dial_call_sid": uuid(b.rng)
                }
            });
            b.conversation(esc + ms(60_000), "input", "user", "", Some(event));
        }
        _ => {}
    }
}

/// When the session ends, after the node ran at `esc`: soon when the bot ended the call, after
/// the signal's timeout, or after the failed transfer's event.
fn session_end(reason: Reason, esc: DateTime<Utc>) -> DateTime<Utc> {
    use Reason::*;
    match reason {
        SignalTimeout => esc + ms(12_000),
        TransferRejected => esc + ms(3000),
        TransferNoAnswer => esc + ms(61_000),
        BotCompleted | BotTurnSlow | InvalidAction => esc + ms(800),
        _ => esc + ms(1000),
    }
}

/// How the call waits in a CXone queue after the handover, for the reasons that reach one.
fn queueing(reason: Reason, rng: &mut StdRng) -> Option<Queueing> {
    match reason {
        Reason::AgentAnswered => Some(Queueing {
            skill_id: 4001 + rng.random_range(0..2),
            skill_name: "Claims_Voice",
            wait_seconds: rng.random_range(3..120),
            agent_id: 1_000 + rng.random_range(0..500),
            agent_seconds: rng.random_range(60..600),
            abandoned: false,
            end_reason: "Agent Disconnected",
        }),
        Reason::Queued => Some(Queueing {
            skill_id: 4001 + rng.random_range(0..2),
            skill_name: "Claims_Voice",
            wait_seconds: rng.random_range(30..300),
            agent_id: 0,
            agent_seconds: 0,
            abandoned: false,
            end_reason: "Transferred to Voicemail",
        }),
        Reason::InQueue => Some(Queueing {
            skill_id: 4001 + rng.random_range(0..2),
            skill_name: "Claims_Voice",
            wait_seconds: rng.random_range(5..200),
            agent_id: 0,
            agent_seconds: 0,
            abandoned: true,
            end_reason: "Contact Hung Up",
        }),
        Reason::UnknownSkill => {
            let answered = rng.random_bool(0.5);
            Some(Queueing {
                skill_id: UNKNOWN_SKILL,
                skill_name: "General_Voice",
                wait_seconds: rng.random_range(5..200),
                agent_id: if answered {
                    1_000 + rng.random_range(0..500)
                } else {
                    0
                },
                agent_seconds: if answered {
                    rng.random_range(60..600)
                } else {
                    0
                },
                abandoned: !answered,
                end_reason: if answered {
                    "Agent Disconnected"
                } else {
                    "Contact Hung Up"
                },
            })
        }
        _ => None,
    }
}

/// When the call's CXone contacts start and end.
struct ContactTimes {
    /// The master contact's start.
    t0: DateTime<Utc>,
    /// When the escalation shows on the CXone side.
    esc_log: DateTime<Utc>,
    spawned_start: DateTime<Utc>,
    spawned_end: DateTime<Utc>,
    /// The master contact's end when it is not queued.
    master_end: DateTime<Utc>,
}

impl ContactTimes {
    /// The master's end after the handover deadline (`not_queued`), before it (`before_queue`),
    /// soon after the bot ended the call, or a while after the session; never before the
    /// spawned contact ends.
    fn draw(
        reason: Reason,
        t0: DateTime<Utc>,
        esc: DateTime<Utc>,
        session_end: DateTime<Utc>,
        deadline_s: i64,
        rng: &mut StdRng,
    ) -> ContactTimes {
        use Reason::*;
        let esc_log = esc + ms(300);
        let spawned_end = session_end;
        let mut master_end = match reason {
            BeforeQueue => {
                esc_log + ms(rng.random_range(2000..(deadline_s * 1000 - 2000).max(2001)))
            }
            NotQueued => {
                esc_log
                    + ms(rng.random_range((deadline_s * 1000 + 5000)..(deadline_s * 1000 + 180_000)))
            }
            BotCompleted | BotTurnSlow | InvalidAction => {
                session_end + ms(rng.random_range(500..2000))
            }
            NoBotSession => t0 + ms(rng.random_range(20_000..90_000)),
            _ => session_end + ms(rng.random_range(3000..60_000)),
        };
        if master_end < spawned_end + ms(500) {
            master_end = spawned_end + ms(500);
        }
        ContactTimes {
            t0,
            esc_log,
            spawned_start: t0 + ms(500),
            spawned_end,
            master_end,
        }
    }
}

/// The call's CXone contacts: the master (queued itself, transferred to a queued leg, or ending
/// without a queue) and the bot's spawned backchannel contact.
fn cxone_contacts(
    ids: &CallIds,
    reason: Reason,
    queueing: Option<&Queueing>,
    times: &ContactTimes,
    rng: &mut StdRng,
) -> Vec<ContactRecord> {
    let (master, t0) = (ids.master, times.t0);
    let mut contacts = Vec::new();
    match queueing {
        Some(q) if rng.random_bool(0.5) => queued_on_master(&mut contacts, ids, q, times, rng),
        Some(q) => queued_on_leg(&mut contacts, ids, q, times, rng),
        None => {
            let end_reason = if matches!(reason, Reason::BotCompleted) {
                "Contact Released"
            } else {
                "Contact Hung Up"
            };
            let json = contact_json(
                master,
                master,
                t0,
                times.master_end,
                times.master_end,
                &ids.from_address,
                MASTER_POC,
                (ENTRY_SKILL, "IVA_Entry"),
                0,
                None,
                end_reason,
            );
            push_contact(
                &mut contacts,
                master,
                t0,
                times.master_end,
                json,
                ENTRY_SKILL,
                rng,
            );
        }
    }
    let json = contact_json(
        ids.spawned,
        master,
        times.spawned_start,
        times.spawned_end,
        times.spawned_end,
        &ids.from_address,
        (0, ""),
        (BACKCHANNEL_SKILL, "Cognigy_Backchannel"),
        0,
        None,
        "Contact Released",
    );
    push_contact(
        &mut contacts,
        ids.spawned,
        times.spawned_start,
        times.spawned_end,
        json,
        BACKCHANNEL_SKILL,
        rng,
    );
    contacts
}

/// The point of contact the bot's calls come in on.
const MASTER_POC: (i64, &str) = (BOT_ENTRY_POC, "Customer Line");

/// Queued on the master contact itself.
fn queued_on_master(
    contacts: &mut Vec<ContactRecord>,
    ids: &CallIds,
    q: &Queueing,
    times: &ContactTimes,
    rng: &mut StdRng,
) {
    let (master, t0) = (ids.master, times.t0);
    let queue_at = times.esc_log + ms(rng.random_range(1000..4000));
    let pre_queue = (queue_at - t0).num_seconds().max(1);
    let end = t0 + Duration::seconds(pre_queue + q.wait_seconds + q.agent_seconds + 1);
    let end = end.max(times.spawned_end + ms(500));
    let json = contact_json(
        master,
        master,
        t0,
        end,
        end,
        &ids.from_address,
        MASTER_POC,
        (q.skill_id, q.skill_name),
        pre_queue,
        Some(q),
        q.end_reason,
    );
    push_contact(contacts, master, t0, end, json, q.skill_id, rng);
}

/// Queued on a post-handover leg; the master ends when it transfers.
fn queued_on_leg(
    contacts: &mut Vec<ContactRecord>,
    ids: &CallIds,
    q: &Queueing,
    times: &ContactTimes,
    rng: &mut StdRng,
) {
    let (master, t0) = (ids.master, times.t0);
    let leg_start = times.esc_log + ms(rng.random_range(800..3000));
    let end_master = leg_start.max(times.spawned_end + ms(500));
    let json = contact_json(
        master,
        master,
        t0,
        end_master,
        end_master,
        &ids.from_address,
        MASTER_POC,
        (ENTRY_SKILL, "IVA_Entry"),
        0,
        None,
        "Transferred",
    );
    push_contact(contacts, master, t0, end_master, json, ENTRY_SKILL, rng);
    let pre_queue = rng.random_range(1..4);
    let leg_end = leg_start + Duration::seconds(pre_queue + q.wait_seconds + q.agent_seconds + 1);
    let json = contact_json(
        ids.leg,
        master,
        leg_start,
        leg_end,
        leg_end,
        &ids.from_address,
        (0, ""),
        (q.skill_id, q.skill_name),
        pre_queue,
        Some(q),
        q.end_reason,
    );
    push_contact(contacts, ids.leg, leg_start, leg_end, json, q.skill_id, rng);
}

/// Adds a contact, warehoused a few seconds after it ended (its `lastUpdateTime`).
fn push_contact(
    contacts: &mut Vec<ContactRecord>,
    id: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    mut json: Map<String, Value>,
    skill: i64,
    rng: &mut StdRng,
) {
    let last_update = end + ms(rng.random_range(500..5000));
    json.insert("lastUpdateTime".into(), json!(iso(last_update)));
    json.insert("dateContactWarehoused".into(), json!(iso(last_update)));
    contacts.push(ContactRecord {
        contact_id: id,
        started_at: start,
        last_update_time: last_update,
        skill_id: skill,
        json,
    });
}

/// The session's OData records: its Sessions record with the `handoverEscalations` counter, and
/// the Conversations and Analytics records written so far, visible `lag` after it ends (each
/// Conversations record `lag` after its own timestamp).
fn session_records(
    b: &mut SessionBuilder<'_>,
    ids: &CallIds,
    opening: &SessionOpening,
    session_end: DateTime<Utc>,
    lag: Duration,
    escalations: i32,
) -> SessionRecords {
    let steps = 2 + b.conversations.len();
    let session_json = object(json!({
        "goals": "",
        "stepPath": "1a2b3c4d-0000-4000-8000-000000000001,1a2b3c4d-0000-4000-8000-000000000002",
        "stepsCount": steps,
        "handoverEscalations": escalations,
        "startedAt": iso(opening.started_at),
        "userId": ids.number,
        "sessionId": b.session_id,
        "localeReferenceId": "7eff993c-b801-4556-b111-1c319e8577cf",
        "localeName": "English",
        "endpointReferenceId": "6601a2b3c4d5e6f708192a40",
        "endpointName": "VG Inbound",
        "projectName": "Claims Voicebot",
        "projectId": PROJECT_ID,
        "organisationId": "5f8833dae72b850ad2ed4d53",
        "snapshotId": null,
        "snapshotName": null,
        "endpointUrlToken": b.url_token,
        "rating": null,
        "ratingComment": null
    }));
    SessionRecords {
        session_id: b.session_id.clone(),
        ended_at: session_end,
        visible_at: session_end + lag,
        conversation_lag: lag,
        session: ODataRecord::new(
            object_id(opening.started_at, ids.index, 0),
            session_json,
            "startedAt",
        ),
        conversations: std::mem::take(&mut b.conversations),
        analytics: std::mem::take(&mut b.analytics),
    }
}

fn ended(c: &ContactRecord) -> DateTime<Utc> {
    let total = c
        .json
        .get("totalDurationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    c.started_at + Duration::seconds(total)
}

fn non_bot_call(
    index: usize,
    master: i64,
    t0: DateTime<Utc>,
    from: &str,
    rng: &mut StdRng,
) -> Call {
    let q = Queueing {
        skill_id: 4001,
        skill_name: "Claims_Voice",
        wait_seconds: rng.random_range(3..90),
        agent_id: 1_000 + rng.random_range(0..500),
        agent_seconds: rng.random_range(60..400),
        abandoned: false,
        end_reason: "Agent Disconnected",
    };
    let pre_queue = rng.random_range(5..30);
    let end = t0 + Duration::seconds(pre_queue + q.wait_seconds + q.agent_seconds + 1);
    let last_update = end + ms(rng.random_range(500..5000));
    let json = contact_json(
        master,
        master,
        t0,
        end,
        last_update,
        from,
        (OTHER_POC, "Sales Line"),
        (q.skill_id, q.skill_name),
        pre_queue,
        Some(&q),
        q.end_reason,
    );
    Call {
        index,
        master_contact_id: master,
        started_at: t0,
        ended_at: end,
        visible_at: last_update,
        contacts: vec![ContactRecord {
            contact_id: master,
            started_at: t0,
            last_update_time: last_update,
            skill_id: q.skill_id,
            json,
        }],
        session: None,
        logs: Vec::new(),
        truth: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log entry carries its message and trace id lower-cased once, for the logs `filter`.
    #[test]
    fn log_entries_carry_their_search_text() {
        let t = Utc::now();
        let r = log_record(
            1,
            0,
            t,
            "info",
            "handoverToCXone: Done".into(),
            "",
            "+1",
            "Endpoint-AB",
        );
        assert_eq!(&*r.search_text, "handovertocxone: done\u{0}endpoint-ab");
        assert_eq!(r.json["msg"], "handoverToCXone: Done");
    }

    fn reasons(scenario: Scenario) -> Vec<Reason> {
        let spec = WorldSpec {
            scenario,
            ..WorldSpec::finite(
                9,
                300,
                Duration::hours(1),
                Duration::seconds(60),
                Utc::now(),
            )
        };
        World::new(spec)
            .calls
            .iter()
            .filter_map(|c| c.truth.as_ref().map(|t| t.reason))
            .collect()
    }

    /// The healthy scenario has no failures; the outage scenario is dominated by signal errors.
    #[test]
    fn scenarios_shift_the_reason_mix() {
        assert!(reasons(Scenario::Healthy)
            .iter()
            .all(|r| r.failure().is_none()));
        let outage = reasons(Scenario::SignalOutage);
        let signal = outage
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    Reason::SignalTimeout | Reason::SignalUnavailable | Reason::SignalRejected
                )
            })
            .count();
        assert!(signal * 3 > outage.len(), "{signal} of {}", outage.len());
        assert!(
            "signal-outage".parse::<Scenario>().is_ok() && "chaos".parse::<Scenario>().is_err()
        );
    }

    /// Every bot call has a master on the bot entry point and a spawned contact pointing to it;
    /// escalations name the spawned id in their log line.
    #[test]
    fn bot_calls_have_master_and_spawned_contacts() {
        let world = World::new(WorldSpec::finite(
            4,
            40,
            Duration::hours(1),
            Duration::seconds(60),
            Utc::now(),
        ));
        for call in world.calls.iter().filter(|c| c.truth.is_some()) {
            let master = &call.contacts[0];
            assert_eq!(master.json["pointOfContactId"], json!(BOT_ENTRY_POC));
            let spawned = call
                .contacts
                .iter()
                .find(|c| c.contact_id == call.master_contact_id + 1)
                .expect("spawned");
            assert_eq!(
                spawned.json["masterContactId"],
                json!(call.master_contact_id)
            );
            for log in &call.logs {
                let msg = log.json["msg"].as_str().unwrap_or("");
                if msg.contains("for contactId:") {
                    assert!(msg.contains(&spawned.contact_id.to_string()), "{msg}");
                }
            }
        }
    }

    /// A streaming world keeps generating with stable indices while forgetting calls past retention.
    #[test]
    fn streaming_world_prunes_past_retention() {
        let now = Utc::now();
        let mut spec =
            WorldSpec::streaming(1, 2880.0, Duration::hours(3), Duration::seconds(60), now);
        spec.retention = Some(Duration::hours(1));
        let mut world = World::new(spec);
        world.extend_until(now);
        let first = world.calls.first().expect("calls kept").index;
        assert!(first > 0, "old calls are forgotten");
        assert!(world
            .calls
            .iter()
            .all(|c| c.visible_at >= now - Duration::hours(1) - Duration::minutes(30)));
        let last = world.calls.last().expect("calls").index;
        world.extend_until(now + Duration::minutes(5));
        assert!(world.calls.last().expect("calls").index > last);
        assert!(world.calls.windows(2).all(|w| w[1].index == w[0].index + 1));
    }

    /// The rules table parses through the real config code and carries every key it sets.
    #[test]
    fn rules_table_parses_with_every_key() {
        let table: toml::Table = toml::from_str(&rules_table(900)).expect("valid TOML");
        let rules = table["rules"].as_table().expect("[rules]");
        for key in [
            "bot_entry_points_of_contact",
            "bot_entry_skills",
            "handover_skills",
            "contact_id_field",
            "cognigy_lag_seconds",
            "handover_deadline_seconds",
            "bot_turn_timeout_ms",
            "correlation_window_seconds",
            "max_pending_seconds",
        ] {
            assert!(rules.contains_key(key), "{key}");
        }
        let parsed = sim_rules();
        assert_eq!(parsed.handover_skills, vec![4001, 4002]);
        assert_eq!(parsed.bot_entry_points_of_contact, vec![BOT_ENTRY_POC]);
        assert_eq!(parsed.cognigy_lag_seconds, SIM_COGNIGY_LAG_SECONDS);
        assert_eq!(rules_with_lag(31).cognigy_lag_seconds, 31);
    }

    /// The contact and session lookups agree with a scan of the kept calls, before and after a
    /// streaming world forgets calls past its retention, and forget the forgotten calls.
    #[test]
    fn lookups_agree_with_a_scan_across_pruning() {
        let now = Utc::now();
        let mut spec =
            WorldSpec::streaming(5, 2880.0, Duration::hours(3), Duration::seconds(60), now);
        spec.retention = Some(Duration::hours(1));
        let mut world = World::new(spec);
        world.extend_until(now - Duration::hours(2));
        let early: Vec<(i64, Option<String>)> = world
            .calls
            .iter()
            .map(|c| {
                let sid = c.session.as_ref().map(|s| s.session_id.clone());
                (c.contacts[0].contact_id, sid)
            })
            .collect();
        world.extend_until(now);
        let first_kept = world.calls.first().expect("calls kept").index;
        assert!(first_kept > 0, "old calls are forgotten");
        let check = |world: &World| {
            for call in &world.calls {
                for contact in &call.contacts {
                    let found = world.contact(contact.contact_id).expect("indexed");
                    assert_eq!(found.contact_id, contact.contact_id);
                    assert_eq!(found.last_update_time, contact.last_update_time);
                }
                if let Some(s) = &call.session {
                    let calls: Vec<usize> = world
                        .calls_with_session(&s.session_id)
                        .map(|c| c.index)
                        .collect();
                    assert_eq!(calls, vec![call.index]);
                }
            }
        };
        check(&world);
        let forgotten = early
            .iter()
            .filter(|(id, _)| !world.calls.iter().any(|c| c.contacts[0].contact_id == *id));
        let mut n = 0;
        for (id, sid) in forgotten {
            n += 1;
            assert!(world.contact(*id).is_none(), "{id} was forgotten");
            if let Some(sid) = sid {
                assert_eq!(world.calls_with_session(sid).count(), 0);
            }
        }
        assert!(n > 0, "some early calls were forgotten");
        assert!(world.contact(1).is_none());
    }
}
