//! The diagnosis rules of DESIGN §5 and the correlation of DESIGN §4, table-tested through the
//! public pure functions: one test per rule, per match kind, and per overlap of adjacent rules.

use chrono::{DateTime, Duration, TimeZone, Utc};
use handover_exporter::config::Rules;
use handover_exporter::engine::correlation::{Inputs, MatchKind};
use handover_exporter::engine::decide;
use handover_exporter::engine::diagnosis::{Diagnosis, Horizon, Reason, Verdict, WaitingFor};
use handover_exporter::sources::cognigy::wire::{
    Analytics, Conversation, InputData, LogEntry, LogMeta, Session, VoiceGatewayEvent,
};
use handover_exporter::sources::cxone::wire::CompletedContact;

const MASTER: i64 = 5_000_000_001;
const SPAWNED: i64 = 5_000_000_002;
const BOT_POC: i64 = 3189288;
const CALLER: &str = "+15551234567";
const SID: &str = "session-1";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 20, 9, 0, 0).unwrap()
}

fn at(seconds: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(seconds)
}

fn rules() -> Rules {
    Rules {
        bot_entry_points_of_contact: vec![BOT_POC],
        handover_skills: vec![4001, 4002],
        ..Rules::default()
    }
}

fn contact(id: i64, master: i64, start: i64, duration: f64) -> CompletedContact {
    CompletedContact {
        contact_id: id,
        master_contact_id: master,
        contact_start_date: at(start),
        last_update_time: Some(at(start) + Duration::seconds(duration as i64)),
        media_type_id: Some(4),
        from_address: CALLER.into(),
        to_address: "+15559870000".into(),
        point_of_contact_id: if id == master { BOT_POC } else { 0 },
        point_of_contact_name: String::new(),
        skill_id: 0,
        skill_name: String::new(),
        agent_id: 0,
        abandoned: false,
        abandon_seconds: 0.0,
        pre_queue_seconds: 0.0,
        in_queue_seconds: 0.0,
        agent_seconds: 0.0,
        total_duration_seconds: duration,
        end_reason: String::new(),
        transfer_indicator_name: String::new(),
    }
}

/// A test world: one bot call (master + spawned contact) and its Cognigy records.
struct World {
    contacts: Vec<CompletedContact>,
    sessions: Vec<Session>,
    conversations: Vec<Conversation>,
    analytics: Vec<Analytics>,
    logs: Vec<LogEntry>,
}

impl World {
    /// A 120 s bot call whose session carries the master id in the SIP header; no escalation.
    fn call() -> World {
        let mut w = World {
            contacts: vec![
                contact(MASTER, MASTER, 0, 120.0),
                contact(SPAWNED, MASTER, 0, 119.0),
            ],
            sessions: vec![session(SID, 2, 0)],
            conversations: vec![],
            analytics: vec![analytics(SID, 3, 400.0, None)],
            logs: vec![],
        };
        w.conversations.push(conversation(
            SID,
            2,
            InputData {
                master_contact_id: Some(MASTER.to_string()),
                spawned_contact_id: Some(SPAWNED.to_string()),
                ..InputData::default()
            },
        ));
        w
    }

    /// Same call, but the session carries no id at all (only caller and time can match it).
    fn call_without_context() -> World {
        let mut w = World::call();
        w.conversations.clear();
        w
    }

    fn escalate_at(mut self, seconds: i64) -> World {
        self.sessions[0].handover_escalations = 1;
        let mut c = conversation(SID, seconds, InputData::default());
        c.in_handover_request = true;
        self.conversations.push(c);
        self
    }

    fn log(mut self, seconds: i64, msg: &str) -> World {
        self.logs.push(log(SID, seconds, msg));
        self
    }

    /// A log line of node run `trace` (lines of one run share their `traceId`).
    fn log_in_run(mut self, seconds: i64, trace: &str, msg: &str) -> World {
        let mut entry = log(SID, seconds, msg);
        entry.trace_id = Some(trace.into());
        self.logs.push(entry);
        self
    }

    fn vg_event(mut self, seconds: i64, name: &str) -> World {
        self.conversations.push(conversation(
            SID,
            seconds,
            InputData {
                event: Some(VoiceGatewayEvent {
                    name: name.into(),
                    sip_status: Some(200),
                    refer_status: Some(603),
                    dial_call_status: None,
                    dial_sip_status: None,
                }),
                ..InputData::default()
            },
        ));
        self
    }

    /// The master contact queued after `pre` seconds to `skill`, waited `wait` seconds.
    fn queue(mut self, skill: i64, pre: f64, wait: f64, agent: i64, abandoned: bool) -> World {
        let m = &mut self.contacts[0];
        m.skill_id = skill;
        m.pre_queue_seconds = pre;
        m.in_queue_seconds = wait;
        m.agent_id = agent;
        m.abandoned = abandoned;
        self
    }

    fn slow_turn(mut self, ms: f64) -> World {
        self.analytics.push(analytics(SID, 30, ms, None));
        self
    }

    fn diagnose_with(&self, rules: &Rules, horizon: &Horizon) -> Vec<Verdict> {
        let inputs = Inputs {
            contacts: &self.contacts,
            sessions: &self.sessions,
            conversations: &self.conversations,
            analytics: &self.analytics,
            logs: &self.logs,
        };
        decide(inputs, rules, horizon)
            .into_iter()
            .map(|d| d.verdict)
            .collect()
    }

    fn diagnosis(&self) -> Diagnosis {
        self.diagnosis_with(&rules())
    }

    fn diagnosis_with(&self, rules: &Rules) -> Diagnosis {
        let verdicts = self.diagnose_with(rules, &Horizon::final_data());
        assert_eq!(verdicts.len(), 1, "expected exactly one case: {verdicts:?}");
        match verdicts.into_iter().next() {
            Some(Verdict::Diagnosed(d)) => *d,
            other => panic!("expected a diagnosis, got {other:?}"),
        }
    }

    fn reason(&self) -> Reason {
        self.diagnosis().reason
    }
}

fn session(id: &str, start: i64, escalations: i64) -> Session {
    Session {
        id: Some(format!("oid-{id}")),
        session_id: id.into(),
        started_at: at(start),
        user_id: CALLER.into(),
        handover_escalations: escalations,
        project_id: "p".into(),
        endpoint_name: "VG".into(),
    }
}

fn conversation(sid: &str, seconds: i64, input_data: InputData) -> Conversation {
    Conversation {
        id: Some(format!("conv-{sid}-{seconds}")),
        session_id: sid.into(),
        timestamp: at(seconds),
        kind: "input".into(),
        source: "user".into(),
        channel: "voiceGateway2".into(),
        in_handover_request: false,
        in_handover_conversation: false,
        input_data,
        node_output: String::new(),
    }
}

fn analytics(sid: &str, seconds: i64, ms: f64, custom1: Option<&str>) -> Analytics {
    Analytics {
        id: Some(format!("an-{sid}-{seconds}-{ms}")),
        session_id: sid.into(),
        timestamp: at(seconds),
        execution_time: ms,
        custom1: custom1.map(str::to_owned),
        custom2: None,
        custom3: None,
        custom4: None,
        custom5: None,
        custom6: None,
        custom7: None,
        custom8: None,
        custom9: None,
        custom10: None,
    }
}

fn log(sid: &str, seconds: i64, msg: &str) -> LogEntry {
    LogEntry {
        id: Some(format!("log-{seconds}-{}", msg.len())),
        timestamp: at(seconds),
        msg: msg.into(),
        level: "error".into(),
        meta: LogMeta {
            session_id: Some(sid.into()),
        },
        trace_id: None,
    }
}

fn signaled(action: &str) -> String {
    format!("handoverToCXone: sent signal to CXone for contactId: {SPAWNED}; action: {action}; status: 202")
}

fn node_ids(main: &str, spawned: &str, action: &str) -> String {
    format!("handoverToCXone: Contact ID: {main}; Spawned Contact ID: {spawned}; Action: {action}; Environment URL: https://na1.nice-incontact.com")
}

fn signal_error(tail: &str) -> String {
    format!("handoverToCXone: Error signaling CXone with: 'Escalate' for contactId: {SPAWNED}; error: {tail}")
}

fn status_error(status: u16, text: &str) -> String {
    signal_error(&format!(
        "CXone API Client: Error sending handover signal: {status}: {text}"
    ))
}

const INVALID_ACTION: &str = "handoverToCXone: Missing or invalid Action parameter";
const DONE: &str =
    "handoverToCXone: Done. No output data sent to Voice / Cognigy Webchat / Cognigy Testchat channel.";

// ---- Rule 1 ----

/// Rule 1: a bot-entry contact with no session at all is `no_bot_session` once the lag passed.
#[test]
fn rule_01_no_bot_session() {
    let mut w = World::call();
    w.sessions.clear();
    w.conversations.clear();
    w.analytics.clear();
    let d = w.diagnosis();
    assert_eq!(d.reason, Reason::NoBotSession);
    assert_eq!(d.failure.map(|f| f.as_str()), Some("missing_context"));
}

/// Rule 1 waits: before `cognigy_lag_seconds` has passed the contact stays pending, and only
/// once Cognigy has been unavailable for `max_pending_seconds` of wall time (not because the
/// contact is old) is it `source_unavailable`, with evidence that names no sentinel date.
#[test]
fn rule_01_waits_for_lag_then_source_unavailable() {
    let mut w = World::call();
    w.sessions.clear();
    let r = rules();
    let ended = at(120);
    let early = Horizon {
        now: ended + Duration::seconds(60),
        cognigy_read_until: ended + Duration::seconds(60),
        cognigy_swept_until: ended + Duration::seconds(60),
        cognigy_short_seconds: i64::MAX,
        cxone_read_until: DateTime::<Utc>::MAX_UTC,
        settle_seconds: 60,
        cognigy_unavailable_since: None,
        cxone_unavailable_since: None,
    };
    assert!(matches!(
        w.diagnose_with(&r, &early)[0],
        Verdict::Pending { .. }
    ));
    let late_but_ok = Horizon {
        now: ended + Duration::seconds(901),
        cognigy_read_until: ended + Duration::seconds(901),
        cognigy_swept_until: ended + Duration::seconds(901),
        cognigy_short_seconds: i64::MAX,
        cxone_read_until: DateTime::<Utc>::MAX_UTC,
        settle_seconds: 60,
        cognigy_unavailable_since: None,
        cxone_unavailable_since: None,
    };
    assert!(
        matches!(&w.diagnose_with(&r, &late_but_ok)[0], Verdict::Diagnosed(d) if d.reason == Reason::NoBotSession)
    );
    let old_but_answering = Horizon {
        now: ended + Duration::seconds(86_400),
        cognigy_read_until: DateTime::<Utc>::MIN_UTC,
        cognigy_swept_until: DateTime::<Utc>::MIN_UTC,
        cognigy_short_seconds: i64::MAX,
        cxone_read_until: DateTime::<Utc>::MAX_UTC,
        settle_seconds: 60,
        cognigy_unavailable_since: None,
        cxone_unavailable_since: None,
    };
    assert!(
        matches!(
            w.diagnose_with(&r, &old_but_answering)[0],
            Verdict::Pending { .. }
        ),
        "an old contact whose source answers is waited for, not given up"
    );
    let briefly_down = Horizon {
        cognigy_unavailable_since: Some(old_but_answering.now - Duration::seconds(7199)),
        ..old_but_answering
    };
    assert!(matches!(
        w.diagnose_with(&r, &briefly_down)[0],
        Verdict::Pending { .. }
    ));
    let source_down = Horizon {
        cognigy_unavailable_since: Some(old_but_answering.now - Duration::seconds(7200)),
        ..old_but_answering
    };
    let Verdict::Diagnosed(d) = &w.diagnose_with(&r, &source_down)[0] else {
        panic!("a source down for max_pending_seconds gives the contact up");
    };
    assert_eq!(d.reason, Reason::SourceUnavailable);
    let text = serde_json::to_string(&d.evidence).unwrap();
    assert!(text.contains("read up to never"), "{text}");
    assert!(
        !text.contains("262143") && !text.contains("262142"),
        "{text}"
    );
}

/// A case waits until CXone, too, was read past the contact's end plus settle (late legs).
#[test]
fn waits_for_cxone_to_settle() {
    let w = World::call();
    let ended = at(120);
    let horizon = Horizon {
        now: ended + Duration::seconds(61),
        cognigy_read_until: ended + Duration::seconds(61),
        cognigy_swept_until: ended + Duration::seconds(61),
        cognigy_short_seconds: i64::MAX,
        cxone_read_until: ended + Duration::seconds(30),
        settle_seconds: 60,
        cognigy_unavailable_since: None,
        cxone_unavailable_since: None,
    };
    assert!(matches!(
        w.diagnose_with(&rules(), &horizon)[0],
        Verdict::Pending {
            waiting_for: WaitingFor::CxoneSettle
        }
    ));
}

/// A correlated session settles quickly: it is diagnosed once Cognigy was read past the settle time.
#[test]
fn correlated_case_waits_only_for_settle() {
    let w = World::call();
    let ended = at(120);
    let before = Horizon {
        now: ended,
        cognigy_read_until: ended,
        cognigy_swept_until: ended,
        cognigy_short_seconds: i64::MAX,
        cxone_read_until: DateTime::<Utc>::MAX_UTC,
        settle_seconds: 60,
        cognigy_unavailable_since: None,
        cxone_unavailable_since: None,
    };
    assert!(matches!(
        w.diagnose_with(&rules(), &before)[0],
        Verdict::Pending { .. }
    ));
    let after = Horizon {
        now: ended + Duration::seconds(61),
        cognigy_read_until: ended + Duration::seconds(61),
        cognigy_swept_until: ended + Duration::seconds(61),
        cognigy_short_seconds: i64::MAX,
        cxone_read_until: DateTime::<Utc>::MAX_UTC,
        settle_seconds: 60,
        cognigy_unavailable_since: None,
        cxone_unavailable_since: None,
    };
    assert!(matches!(
        w.diagnose_with(&rules(), &after)[0],
        Verdict::Diagnosed(_)
    ));
}

// ---- Rule 2 ----

/// Rule 2: `Missing or invalid Action parameter` for the session is `invalid_action`.
#[test]
fn rule_02_invalid_action() {
    let d = World::call().log(50, INVALID_ACTION).diagnosis();
    assert_eq!(d.reason, Reason::InvalidAction);
    assert_eq!(d.failure.map(|f| f.as_str()), Some("invalid_handover"));
}

/// Rule 2 before rule 3: an invalid action wins over an escalation without a contact id.
#[test]
fn rule_02_precedes_rule_03() {
    let w = World::call_without_context()
        .escalate_at(40)
        .log(50, INVALID_ACTION);
    assert_eq!(w.reason(), Reason::InvalidAction);
}

// ---- Rule 3 ----

/// Rule 3: escalated, and matched only by caller and time, is `no_contact_id`.
#[test]
fn rule_03_no_contact_id_caller_time() {
    let d = World::call_without_context().escalate_at(40).diagnosis();
    assert_eq!(d.evidence.match_kind, Some(MatchKind::CallerTime));
    assert_eq!(d.reason, Reason::NoContactId);
}

/// Rule 3: the sentinel id `100000000000` in the custom field counts as no contact id.
#[test]
fn rule_03_sentinel_contact_id() {
    let mut w = World::call_without_context().escalate_at(40);
    w.analytics[0].custom1 = Some("100000000000".into());
    let d = w.diagnosis();
    assert_eq!(d.reason, Reason::NoContactId);
    assert_eq!(
        d.evidence.carried_contact_id.as_deref(),
        Some("100000000000")
    );
}

/// Rule 3: the node's ids line with a sentinel or `undefined` id and no signal after it is
/// `no_contact_id` even when the session carried an id.
#[test]
fn rule_03_node_ids_without_signal() {
    for (main, spawned) in [
        ("100000000000", "100000000000"),
        ("undefined", "undefined"),
        ("", ""),
        (&*MASTER.to_string(), "100000000000"),
    ] {
        let w = World::call().log(40, &node_ids(main, spawned, "Escalate"));
        assert_eq!(w.reason(), Reason::NoContactId, "ids {main:?} {spawned:?}");
    }
}

/// Rule 3 does not fire when the same run signalled after its ids line (the node fell back to
/// the main id), nor for an `End` run, nor for ids that are present.
#[test]
fn rule_03_node_ids_followed_by_signal_or_not_escalation() {
    let w = World::call()
        .log_in_run(
            40,
            "run-1",
            &node_ids(&MASTER.to_string(), "undefined", "Escalate"),
        )
        .log_in_run(41, "run-1", &signaled("Escalate"));
    assert_ne!(w.reason(), Reason::NoContactId);
    let w = World::call().log(40, &node_ids("100000000000", "100000000000", "End"));
    assert_eq!(w.reason(), Reason::BotCompleted);
    let w = World::call().log(
        40,
        &node_ids(&MASTER.to_string(), &SPAWNED.to_string(), "Escalate"),
    );
    assert_eq!(w.reason(), Reason::NotQueued);
}

/// Rule 3: a validation error naming a missing contact id is `no_contact_id`.
#[test]
fn rule_03_validation_error_missing_id() {
    let w = World::call().escalate_at(40).log(
        41,
        "handoverToCXone: Validation: Spawned Contact ID is required",
    );
    assert_eq!(w.reason(), Reason::NoContactId);
}

/// The `Done. No output data sent` line is no evidence: it changes no outcome, escalated or not.
#[test]
fn done_line_changes_nothing() {
    let cases = [
        World::call(),
        World::call().escalate_at(40),
        World::call()
            .log(40, &signaled("Escalate"))
            .queue(4001, 45.0, 10.0, 1234, false),
        World::call().log(40, &signaled("End")),
    ];
    for w in cases {
        let without = w.reason();
        assert_eq!(w.log(41, DONE).reason(), without);
    }
}

/// Rule 3 needs an escalation: without one the same session is contained.
#[test]
fn rule_03_needs_escalation() {
    assert_eq!(World::call_without_context().reason(), Reason::BotCompleted);
}

/// Rule 3 before rule 4: no contact id wins over a signal timeout.
#[test]
fn rule_03_precedes_rule_04() {
    let w = World::call()
        .log(41, &node_ids("100000000000", "100000000000", "Escalate"))
        .log(42, &status_error(504, "Gateway Timeout"));
    assert_eq!(w.reason(), Reason::NoContactId);
}

// ---- Rule 4 ----

/// Rule 4: a signal error with status 504 or 408 is `signal_timeout`.
#[test]
fn rule_04_signal_timeout_status() {
    for status in [504, 408] {
        let w = World::call()
            .escalate_at(40)
            .log(41, &status_error(status, "Timeout"));
        assert_eq!(w.reason(), Reason::SignalTimeout, "status {status}");
    }
}

/// Rule 4: an error text saying the request timed out is `signal_timeout`.
#[test]
fn rule_04_signal_timeout_text() {
    let w = World::call().log(41, &signal_error("timeout of 10000ms exceeded"));
    let d = w.diagnosis();
    assert_eq!(d.reason, Reason::SignalTimeout);
    assert_eq!(d.failure.map(|f| f.as_str()), Some("timeout"));
}

/// Rule 4 before rule 5: a timeout line wins over a 503 line of the same session.
#[test]
fn rule_04_precedes_rule_05() {
    let w = World::call()
        .log(41, &status_error(503, "Service Unavailable"))
        .log(45, &status_error(504, "Gateway Timeout"));
    assert_eq!(w.reason(), Reason::SignalTimeout);
}

// ---- Rule 5 ----

/// Rule 5: 429, other 5xx, and a connection error without status are `signal_unavailable`.
#[test]
fn rule_05_signal_unavailable() {
    for msg in [
        status_error(429, "Too Many Requests"),
        status_error(503, "Service Unavailable"),
        status_error(500, "Internal Server Error"),
        signal_error("connect ECONNREFUSED 10.0.0.1:443"),
    ] {
        assert_eq!(
            World::call().log(41, &msg).reason(),
            Reason::SignalUnavailable,
            "{msg}"
        );
    }
}

/// Rule 5 before rule 6: unavailable wins over rejected.
#[test]
fn rule_05_precedes_rule_06() {
    let w = World::call()
        .log(41, &status_error(404, "Not Found"))
        .log(45, &status_error(503, "Service Unavailable"));
    assert_eq!(w.reason(), Reason::SignalUnavailable);
}

// ---- Rule 6 ----

/// Rule 6: any other 4xx (wrong contact id, credentials) is `signal_rejected`.
#[test]
fn rule_06_signal_rejected() {
    for status in [400, 401, 403, 404] {
        let w = World::call().log(41, &status_error(status, "x"));
        let d = w.diagnosis();
        assert_eq!(d.reason, Reason::SignalRejected, "status {status}");
        assert_eq!(d.failure.map(|f| f.as_str()), Some("invalid_handover"));
    }
}

/// Rule 6 before rule 7: a rejected signal wins over a rejected transfer.
#[test]
fn rule_06_precedes_rule_07() {
    let w = World::call()
        .log(41, &status_error(404, "Not Found"))
        .vg_event(42, "TRANSFER_REFER_ERROR");
    assert_eq!(w.reason(), Reason::SignalRejected);
}

// ---- Rule 7 ----

/// Rule 7: Voice Gateway REFER and DIAL errors are `transfer_rejected`.
#[test]
fn rule_07_transfer_rejected() {
    for name in ["TRANSFER_REFER_ERROR", "TRANSFER_DIAL_ERROR"] {
        assert_eq!(
            World::call().vg_event(42, name).reason(),
            Reason::TransferRejected,
            "{name}"
        );
    }
}

/// Rule 7 before rule 8: a rejected transfer wins over an unanswered one.
#[test]
fn rule_07_precedes_rule_08() {
    let w = World::call()
        .vg_event(42, "NO_ANSWER")
        .vg_event(43, "TRANSFER_DIAL_ERROR");
    assert_eq!(w.reason(), Reason::TransferRejected);
}

// ---- Rule 8 ----

/// Rule 8: Voice Gateway `NO_ANSWER` is `transfer_no_answer`, a timeout.
#[test]
fn rule_08_transfer_no_answer() {
    let d = World::call().vg_event(42, "NO_ANSWER").diagnosis();
    assert_eq!(d.reason, Reason::TransferNoAnswer);
    assert_eq!(d.failure.map(|f| f.as_str()), Some("timeout"));
}

/// Rule 8 before rule 9: an unanswered transfer wins over queueing to an unknown skill.
#[test]
fn rule_08_precedes_rule_09() {
    let w = World::call()
        .vg_event(42, "NO_ANSWER")
        .queue(9999, 50.0, 10.0, 0, false);
    assert_eq!(w.reason(), Reason::TransferNoAnswer);
}

// ---- Rule 9 ----

/// Rule 9: queued to a skill outside `handover_skills` is `unknown_skill`.
#[test]
fn rule_09_unknown_skill() {
    let d = World::call()
        .escalate_at(40)
        .queue(9999, 45.0, 10.0, 77, false)
        .diagnosis();
    assert_eq!(d.reason, Reason::UnknownSkill);
    assert_eq!(d.evidence.queue_skill_id, Some(9999));
}

/// Rule 9 is off when `handover_skills` is empty.
#[test]
fn rule_09_off_without_handover_skills() {
    let r = Rules {
        handover_skills: vec![],
        ..rules()
    };
    let d = World::call()
        .escalate_at(40)
        .queue(9999, 45.0, 10.0, 77, false)
        .diagnosis_with(&r);
    assert_eq!(d.reason, Reason::AgentAnswered);
}

/// Rule 9 before rule 10: wrong skill wins over abandonment in queue.
#[test]
fn rule_09_precedes_rule_10() {
    let w = World::call()
        .escalate_at(40)
        .queue(9999, 45.0, 30.0, 0, true);
    assert_eq!(w.reason(), Reason::UnknownSkill);
}

// ---- Rule 10 ----

/// Rule 10: queued, no agent, abandoned is `abandoned` / `in_queue`.
#[test]
fn rule_10_abandoned_in_queue() {
    let d = World::call()
        .escalate_at(40)
        .queue(4001, 45.0, 30.0, 0, true)
        .diagnosis();
    assert_eq!(d.reason, Reason::InQueue);
    assert_eq!(d.outcome.as_str(), "abandoned");
    assert_eq!(d.failure, None);
    assert_eq!(d.evidence.queue_wait_seconds, Some(30.0));
}

/// Rule 10 before rule 11: an abandoned queued call is not counted as handed over.
#[test]
fn rule_10_precedes_rule_11() {
    let w = World::call().queue(4001, 45.0, 30.0, 0, true);
    assert_eq!(w.reason(), Reason::InQueue);
}

// ---- Rule 11 ----

/// Rule 11: queued and answered is `handed_over` / `agent_answered`, with signal-to-queue latency.
#[test]
fn rule_11_agent_answered() {
    let d = World::call()
        .escalate_at(40)
        .queue(4001, 45.0, 12.0, 77, false)
        .diagnosis();
    assert_eq!(d.reason, Reason::AgentAnswered);
    assert_eq!(d.outcome.as_str(), "handed_over");
    assert_eq!(d.evidence.signal_to_queue_seconds, Some(5.0));
}

/// Rule 11: queued without an agent and not abandoned is `handed_over` / `queued`.
#[test]
fn rule_11_queued() {
    let w = World::call()
        .escalate_at(40)
        .queue(4002, 45.0, 12.0, 0, false);
    assert_eq!(w.reason(), Reason::Queued);
}

/// Rule 11 via a post-handover leg: a group member queued makes the master handed over.
#[test]
fn rule_11_post_handover_leg() {
    let mut w = World::call().escalate_at(40);
    let mut leg = contact(SPAWNED + 1, MASTER, 45, 200.0);
    leg.skill_id = 4001;
    leg.in_queue_seconds = 8.0;
    leg.agent_id = 12;
    w.contacts.push(leg);
    let d = w.diagnosis();
    assert_eq!(d.reason, Reason::AgentAnswered);
    assert_eq!(d.evidence.contact_ids.len(), 3);
}

/// Rule 11 before rule 12: escalated and queued is handed over even when the call was short.
#[test]
fn rule_11_precedes_rule_12() {
    let mut w = World::call()
        .escalate_at(110)
        .queue(4001, 112.0, 5.0, 0, false);
    w.contacts[0].total_duration_seconds = 120.0;
    assert_eq!(w.reason(), Reason::Queued);
}

// ---- Rules 12 and 13 ----

/// Rule 12: escalated, not queued, ended within `handover_deadline_seconds` is `before_queue`.
#[test]
fn rule_12_abandoned_before_queue() {
    let d = World::call().escalate_at(110).diagnosis();
    assert_eq!(d.reason, Reason::BeforeQueue);
    assert_eq!(d.outcome.as_str(), "abandoned");
}

/// Rule 13: escalated, not queued, lasting past the deadline is `not_queued`, a timeout.
#[test]
fn rule_13_not_queued() {
    let d = World::call().escalate_at(40).diagnosis();
    assert_eq!(d.reason, Reason::NotQueued);
    assert_eq!(d.failure.map(|f| f.as_str()), Some("timeout"));
}

/// Rules 12/13 boundary: exactly the deadline is still `before_queue`, one second more is not.
#[test]
fn rule_12_13_deadline_boundary() {
    assert_eq!(World::call().escalate_at(105).reason(), Reason::BeforeQueue);
    assert_eq!(World::call().escalate_at(104).reason(), Reason::NotQueued);
}

/// Rule 13 before rule 14: an unqueued escalation wins over a slow bot turn.
#[test]
fn rule_13_precedes_rule_14() {
    let w = World::call().escalate_at(40).slow_turn(15_000.0);
    assert_eq!(w.reason(), Reason::NotQueued);
}

/// Rules 12/13 wait for the later leg of a transferred contact while it may still complete; with
/// final data the verdict is given.
#[test]
fn transferred_contact_waits_for_its_leg() {
    let mut w = World::call().escalate_at(40);
    w.contacts[0].end_reason = "Transferred".into();
    let ended = at(120);
    let live = Horizon {
        now: ended + Duration::seconds(600),
        cognigy_read_until: ended + Duration::seconds(600),
        cognigy_swept_until: ended + Duration::seconds(600),
        cognigy_short_seconds: i64::MAX,
        cxone_read_until: ended + Duration::seconds(600),
        settle_seconds: 60,
        cognigy_unavailable_since: None,
        cxone_unavailable_since: None,
    };
    assert!(matches!(
        w.diagnose_with(&rules(), &live)[0],
        Verdict::Pending {
            waiting_for: WaitingFor::CxoneTransferLeg
        }
    ));
    assert_eq!(w.reason(), Reason::NotQueued);
}

/// A case of which only the spawned leg was read waits for the master contact.
#[test]
fn case_without_master_waits_for_it() {
    let mut w = World::call();
    w.contacts.remove(0);
    let ended = at(120);
    let live = Horizon {
        now: ended + Duration::seconds(600),
        cognigy_read_until: ended + Duration::seconds(600),
        cognigy_swept_until: ended + Duration::seconds(600),
        cognigy_short_seconds: i64::MAX,
        cxone_read_until: ended + Duration::seconds(600),
        settle_seconds: 60,
        cognigy_unavailable_since: None,
        cxone_unavailable_since: None,
    };
    assert!(matches!(
        w.diagnose_with(&rules(), &live)[0],
        Verdict::Pending {
            waiting_for: WaitingFor::CxoneMaster
        }
    ));
}

// ---- Rules 14 and 15 ----

/// Rule 14: not escalated and a turn reaching `bot_turn_timeout_ms` is `bot_turn_slow`.
#[test]
fn rule_14_bot_turn_slow() {
    let d = World::call().slow_turn(10_000.0).diagnosis();
    assert_eq!(d.reason, Reason::BotTurnSlow);
    assert_eq!(d.failure.map(|f| f.as_str()), Some("timeout"));
}

/// Rule 15: not escalated and no slow turn is `contained` / `bot_completed`.
#[test]
fn rule_15_contained() {
    let d = World::call()
        .slow_turn(9_999.0)
        .log(100, &signaled("End"))
        .diagnosis();
    assert_eq!(d.reason, Reason::BotCompleted);
    assert_eq!(d.outcome.as_str(), "contained");
}

// ---- Escalation signals ----

/// Each of the four escalation signals alone makes a call escalated (and so not contained).
#[test]
fn every_escalation_signal_counts() {
    // `handoverEscalations` has no time of its own: the session's last message stands for it.
    let mut by_counter = World::call();
    by_counter.sessions[0].handover_escalations = 1;
    by_counter
        .conversations
        .push(conversation(SID, 110, InputData::default()));
    assert_eq!(
        by_counter.reason(),
        Reason::BeforeQueue,
        "handoverEscalations"
    );

    let mut by_flag = World::call();
    let mut c = conversation(SID, 40, InputData::default());
    c.in_handover_request = true;
    by_flag.conversations.push(c);
    assert_eq!(by_flag.reason(), Reason::NotQueued, "inHandoverRequest");

    assert_eq!(
        World::call().log(40, &signaled("Escalate")).reason(),
        Reason::NotQueued,
        "log"
    );

    assert_eq!(
        World::call()
            .vg_event(40, "TRANSFER_REFER_SUCCESS")
            .reason(),
        Reason::NotQueued,
        "vg"
    );
}

/// The escalation time is the earliest signal.
#[test]
fn escalation_time_is_earliest_signal() {
    let d = World::call()
        .log(50, &signaled("Escalate"))
        .escalate_at(30)
        .diagnosis();
    assert_eq!(d.evidence.escalated_at, Some(at(30)));
}

// ---- Correlation ----

/// Match kind `custom_field`: the configured Analytics custom field carries the master id.
#[test]
fn match_custom_field() {
    let mut w = World::call_without_context();
    w.analytics[0].custom1 = Some(MASTER.to_string());
    w.sessions[0].user_id = "anonymous".into();
    let d = w.diagnosis();
    assert_eq!(d.evidence.match_kind, Some(MatchKind::CustomField));
    assert_eq!(d.reason, Reason::BotCompleted);
}

/// The custom field is read from the configured field only.
#[test]
fn match_custom_field_uses_configured_field() {
    let mut w = World::call_without_context();
    w.analytics[0].custom3 = Some(MASTER.to_string());
    w.sessions[0].user_id = "anonymous".into();
    let r = Rules {
        contact_id_field: 3,
        ..rules()
    };
    assert_eq!(
        w.diagnosis_with(&r).evidence.match_kind,
        Some(MatchKind::CustomField)
    );
    assert_eq!(
        w.diagnosis().reason,
        Reason::NoBotSession,
        "custom1 is empty"
    );
}

/// Match kind `sip_header`: `X-InContact-MasterId` in a Conversations record's inputData.
#[test]
fn match_sip_header() {
    let mut w = World::call();
    w.sessions[0].user_id = "anonymous".into();
    assert_eq!(
        w.diagnosis().evidence.match_kind,
        Some(MatchKind::SipHeader)
    );
}

/// The custom field is preferred over the SIP header.
#[test]
fn custom_field_preferred_over_sip_header() {
    let mut w = World::call();
    w.analytics[0].custom1 = Some(MASTER.to_string());
    assert_eq!(
        w.diagnosis().evidence.match_kind,
        Some(MatchKind::CustomField)
    );
}

/// A SIP header naming the spawned contact still finds the master's group.
#[test]
fn sip_header_spawned_id_finds_group() {
    let mut w = World::call();
    w.conversations[0].input_data.master_contact_id = None;
    let d = w.diagnosis();
    assert_eq!(d.contact_id, MASTER);
    assert_eq!(d.evidence.match_kind, Some(MatchKind::SipHeader));
}

/// Match kind `caller_time`: same E.164 caller, session started within the window.
#[test]
fn match_caller_time_with_normalisation() {
    let mut w = World::call_without_context();
    w.contacts[0].from_address = "+1 (555) 123-4567".into();
    w.sessions[0].user_id = "sip:+15551234567@vg.example.net".into();
    assert_eq!(
        w.diagnosis().evidence.match_kind,
        Some(MatchKind::CallerTime)
    );
}

/// Caller/time does not match outside `correlation_window_seconds`, nor before the contact.
#[test]
fn caller_time_window_is_enforced() {
    let mut late = World::call_without_context();
    late.sessions[0].started_at = at(31);
    assert_eq!(late.reason(), Reason::NoBotSession);
    let mut early = World::call_without_context();
    early.sessions[0].started_at = at(-1);
    assert_eq!(early.reason(), Reason::NoBotSession);
}

/// A contact outside the bot entry with no session is not a bot contact and is not diagnosed.
#[test]
fn non_bot_contact_is_not_diagnosed() {
    let mut w = World::call();
    w.sessions.clear();
    w.contacts
        .iter_mut()
        .for_each(|c| c.point_of_contact_id = 1);
    assert!(w.diagnose_with(&rules(), &Horizon::final_data()).is_empty());
}

/// A contact outside the bot entry that a session points to is a bot contact.
#[test]
fn session_makes_bot_contact() {
    let mut w = World::call();
    w.contacts
        .iter_mut()
        .for_each(|c| c.point_of_contact_id = 1);
    let d = w.diagnosis();
    assert!(!d.evidence.bot_entry);
    assert_eq!(d.reason, Reason::BotCompleted);
}

/// A log line without `meta.sessionId` is tied to the case by the contact id in its text.
#[test]
fn log_tied_by_contact_id() {
    let mut w = World::call().log(41, &status_error(404, "Not Found"));
    w.logs[0].meta.session_id = None;
    assert_eq!(w.reason(), Reason::SignalRejected);
}

/// How many facts of a diagnosis's timeline read as starting with `prefix`.
fn timeline_facts_starting_with(d: &Diagnosis, prefix: &str) -> usize {
    d.evidence
        .timeline
        .iter()
        .filter(|f| f.detail.to_string().starts_with(prefix))
        .count()
}

/// A record present twice (re-read and loaded from the store) counts once in the evidence.
#[test]
fn duplicate_records_count_once() {
    let mut w = World::call();
    w.analytics.push(w.analytics[0].clone());
    w.conversations.push(w.conversations[0].clone());
    let d = w.diagnosis();
    assert_eq!(d.evidence.bot_turn_seconds, vec![0.4]);
    assert_eq!(timeline_facts_starting_with(&d, "SIP"), 1);
}

/// A log line present twice (re-read and loaded from the store) is one fact of the timeline.
#[test]
fn duplicate_log_lines_count_once() {
    let mut w = World::call().log(41, &status_error(404, "Not Found"));
    w.logs.push(w.logs[0].clone());
    let d = w.diagnosis();
    assert_eq!(d.reason, Reason::SignalRejected);
    assert_eq!(timeline_facts_starting_with(&d, "handoverToCXone"), 1);
}

/// A session tied to a group whose contacts were not read keeps its log lines: they are not
/// given to another group because they name one of its contacts.
#[test]
fn log_of_session_keyed_to_unread_group_stays_with_it() {
    let mut w = World::call();
    w.sessions.push(session("session-2", 5, 0));
    w.conversations.push(conversation(
        "session-2",
        6,
        InputData {
            master_contact_id: Some("7000000001".into()),
            ..InputData::default()
        },
    ));
    w.logs
        .push(log("session-2", 41, &status_error(404, "Not Found")));
    assert_eq!(w.reason(), Reason::BotCompleted);
}

/// Non-voice contacts are ignored.
#[test]
fn non_voice_contacts_are_ignored() {
    let mut w = World::call();
    w.contacts
        .iter_mut()
        .for_each(|c| c.media_type_id = Some(3));
    assert!(w.diagnose_with(&rules(), &Horizon::final_data()).is_empty());
}

// ---- Node runs and the lines of every extension version ----

fn unsessioned(mut w: World, seconds: i64, trace: Option<&str>, msg: &str) -> World {
    let mut entry = log(SID, seconds, msg);
    entry.meta.session_id = None;
    entry.trace_id = trace.map(str::to_owned);
    w.logs.push(entry);
    w
}

/// A success line without `meta.sessionId` reaches its call through the spawned contact id it
/// names; an escalation seen only there that never queued is `not_queued`.
#[test]
fn line_without_session_id_reaches_the_call_by_spawned_id() {
    let w = unsessioned(World::call(), 40, None, &signaled("Escalate"));
    let d = w.diagnosis();
    assert_eq!(d.reason, Reason::NotQueued);
    assert!(d.evidence.escalated_at.is_some());
}

/// The lines of one `traceId` form a run tied as a whole: the ids line names the main contact,
/// so the run's error line (naming an id CXone never reported) decides the call.
#[test]
fn a_run_is_tied_by_its_ids_line() {
    let w = unsessioned(
        World::call(),
        40,
        Some("trace-7"),
        &node_ids(&MASTER.to_string(), "999999", "Escalate"),
    );
    let w = unsessioned(
        w,
        41,
        Some("trace-7"),
        "handoverToCXone: Error signaling CXone with: 'Escalate' for contactId: 999999; error: CXone API Client: Error sending handover signal: 404: Not Found",
    );
    assert_eq!(w.reason(), Reason::SignalRejected);
}

/// A token failure of the node's CXone credentials is `signal_rejected`; a fetch failure
/// without any status is `signal_unavailable`.
#[test]
fn token_failure_rejected_fetch_failure_unavailable() {
    let w = World::call().log(
        41,
        &signal_error("CXone API Client: Error getting bearer token: 401: Unauthorized"),
    );
    assert_eq!(w.reason(), Reason::SignalRejected);
    let w = World::call().log(41, &signal_error("fetch failed"));
    assert_eq!(w.reason(), Reason::SignalUnavailable);
}

/// A signal that failed and then landed on a retry broke nothing: the queue decides.
#[test]
fn a_retried_signal_that_landed_is_not_a_failure() {
    let w = World::call()
        .log(40, &status_error(503, "Service Unavailable"))
        .log(45, &signaled("Escalate"))
        .queue(4001, 50.0, 10.0, 1234, false);
    assert_eq!(w.reason(), Reason::AgentAnswered);
}

/// Rule 2 from a node run whose action is neither `Escalate` nor `End` (older versions send it
/// to CXone as it is), and from the node's bot output in the versions that report it so.
#[test]
fn rule_02_unknown_action_run_and_bot_output() {
    let w = World::call().log(
        40,
        &node_ids(&MASTER.to_string(), &SPAWNED.to_string(), "Transfer"),
    );
    assert_eq!(w.reason(), Reason::InvalidAction);
    let mut w = World::call();
    let mut output = conversation(SID, 40, InputData::default());
    output.kind = "output".into();
    output.source = "bot".into();
    output.node_output = "handoverToCXone Error: Missing Action parameter".into();
    w.conversations.push(output);
    let d = w.diagnosis();
    assert_eq!(d.reason, Reason::InvalidAction);
    assert!(d.evidence.decided_by[0]
        .detail
        .to_string()
        .contains("Missing Action parameter"));
}

/// Rule 3 before rule 6: versions before v4 send the sentinel to CXone, which refuses it; the
/// cause is the missing id, not the signal.
#[test]
fn rule_03_sentinel_signalled_by_older_versions() {
    let w = World::call()
        .log_in_run(40, "run-1", &node_ids(&MASTER.to_string(), "100000000000", "Escalate"))
        .log_in_run(
            41,
            "run-1",
            "handoverToCXone: Error signaling CXone with: 'Escalate' for contactId: 100000000000; error: CXone -> sendSignalHandover: Error sending signal: 404: Not Found",
        );
    assert_eq!(w.reason(), Reason::NoContactId);
}
