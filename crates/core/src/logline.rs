//! Classifies Cognigy project log messages into the handover facts the diagnosis uses.
//!
//! The CXone extension's handover node ("Exit Interaction", `handoverToCXone`) and its send-signal
//! node (`sendSignalToCXone`) write fixed-format lines; docs/log-lines.md catalogues them for
//! every published version, with what each means. The patterns come from config
//! ([`crate::config::LogPatterns`]) because NICE will replace the extension with a native node.
//! This module only reads message text: grouping lines into node runs (by `traceId`) and tying a
//! run to a contact is correlation's job, and judging it is diagnosis's. Lines that say nothing
//! about the handover (the node's other info lines, `Done. No output data sent ...`, which follows
//! every voice run) are not classified at all, so they cannot change an outcome.

use crate::config::LogPatterns;
use serde::Serialize;

/// A recognised handover log line; its text fields are trimmed slices of the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HandoverLog<'m> {
    /// The ids the node had, written before any API call (`Contact ID: ..; Spawned Contact ID:
    /// ..; Action: ..`). Empty, `undefined` or the sentinel mean the flow lacked the SIP headers.
    NodeIds {
        contact_id: &'m str,
        spawned_contact_id: &'m str,
        action: &'m str,
    },
    /// The signal call succeeded (`sent signal to CXone ...`); `action` is empty for the generic
    /// send-signal node's lines that do not name one.
    Signaled {
        action: &'m str,
        contact_id: &'m str,
        status: Option<u16>,
    },
    /// The signal call failed; `status` is the HTTP status (of the signal or token request) when
    /// the text carries one.
    SignalError {
        action: &'m str,
        contact_id: &'m str,
        status: Option<u16>,
        timed_out: bool,
        error: &'m str,
    },
    /// The flow passed no action or one other than `Escalate` or `End`.
    InvalidAction,
    /// A validation error: the node was given no main or no spawned contact id.
    MissingContactId,
}

/// Texts a flow leaves in an id variable that is not set (`${undefined}` in a template).
const UNSET_ID_TEXTS: [&str; 3] = ["", "undefined", "null"];

/// Whether a node's id is missing: empty, an unset variable's text, or the sentinel
/// `100000000000` the extension treats as "skip the API calls".
pub fn is_missing_id(id: &str) -> bool {
    let id = id.trim();
    UNSET_ID_TEXTS.contains(&id) || id == crate::engine::correlation::SENTINEL_CONTACT_ID
}

impl<'m> HandoverLog<'m> {
    /// The CXone contact ids the line names and that are not blank: the main id first.
    pub fn contact_ids(&self) -> impl Iterator<Item = &'m str> {
        let (first, second) = match *self {
            HandoverLog::NodeIds {
                contact_id,
                spawned_contact_id,
                ..
            } => (Some(contact_id), Some(spawned_contact_id)),
            HandoverLog::Signaled { contact_id, .. }
            | HandoverLog::SignalError { contact_id, .. } => (Some(contact_id), None),
            HandoverLog::InvalidAction | HandoverLog::MissingContactId => (None, None),
        };
        first
            .into_iter()
            .chain(second)
            .filter(|id| !is_missing_id(id))
    }

    /// The action the line names, if any.
    pub fn action(&self) -> Option<&'m str> {
        match *self {
            HandoverLog::NodeIds { action, .. }
            | HandoverLog::Signaled { action, .. }
            | HandoverLog::SignalError { action, .. } => Some(action),
            HandoverLog::InvalidAction | HandoverLog::MissingContactId => None,
        }
    }

    /// Whether the line shows an escalation attempt: a node run with action `Escalate`, whether
    /// it signalled, failed or skipped the call. `End` is the bot finishing, not an escalation.
    pub fn is_escalation(&self) -> bool {
        self.action()
            .is_some_and(|a| a.trim().eq_ignore_ascii_case("escalate"))
    }
}

/// Recognises one log message; `None` when it says nothing about the handover.
pub fn classify<'m>(msg: &'m str, patterns: &LogPatterns) -> Option<HandoverLog<'m>> {
    // Error first: a custom `signaled` pattern could be loose enough to match error lines too.
    if let Some(caps) = patterns.signal_error.captures(msg) {
        let text = |name: &str| caps.name(name).map_or("", |m| m.as_str().trim());
        let error = text("error");
        let status_source = if error.is_empty() { msg } else { error };
        let status = caps
            .name("status")
            .map(|m| m.as_str())
            .or_else(|| {
                patterns
                    .signal_status
                    .captures(status_source)
                    .and_then(|c| c.name("status"))
                    .map(|m| m.as_str())
            })
            .and_then(|s| s.trim().parse::<u16>().ok());
        return Some(HandoverLog::SignalError {
            action: text("action"),
            contact_id: text("contact_id"),
            status,
            timed_out: patterns.timeout_text.is_match(status_source),
            error,
        });
    }
    if let Some(caps) = patterns.signaled.captures(msg) {
        let text = |name: &str| caps.name(name).map_or("", |m| m.as_str().trim());
        return Some(HandoverLog::Signaled {
            action: text("action"),
            contact_id: text("contact_id"),
            status: text("status").parse().ok(),
        });
    }
    if let Some(caps) = patterns.node_ids.captures(msg) {
        let text = |name: &str| caps.name(name).map_or("", |m| m.as_str().trim());
        return Some(HandoverLog::NodeIds {
            contact_id: text("contact_id"),
            spawned_contact_id: text("spawned_contact_id"),
            action: text("action"),
        });
    }
    if patterns.invalid_action.is_match(msg) {
        return Some(HandoverLog::InvalidAction);
    }
    if patterns.missing_contact_id.is_match(msg) {
        return Some(HandoverLog::MissingContactId);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> LogPatterns {
        LogPatterns::default()
    }

    /// The success line of the handover node is read with its action, contact id and status.
    #[test]
    fn reads_sent_signal_line() {
        let got = classify(
            "handoverToCXone: sent signal to CXone for contactId: 700123456789; action: Escalate; status: 202",
            &p(),
        );
        assert_eq!(
            got,
            Some(HandoverLog::Signaled {
                action: "Escalate",
                contact_id: "700123456789",
                status: Some(202),
            })
        );
    }

    /// The send-signal node's success line has no action: a signal, not an escalation.
    #[test]
    fn reads_send_signal_node_line_without_action() {
        let got = classify(
            "sendSignalToCXone: sent signal to CXone for contactId: 700123456789; status: 202",
            &p(),
        )
        .unwrap();
        assert_eq!(got.action(), Some(""));
        assert!(!got.is_escalation());
        assert_eq!(got.contact_ids().collect::<Vec<_>>(), ["700123456789"]);
    }

    /// The ids line gives both ids and the action; a sentinel or `undefined` id is not an id.
    #[test]
    fn reads_node_ids_line() {
        let got = classify(
            "handoverToCXone: Contact ID: 100000000000; Spawned Contact ID: undefined; Action: Escalate; Environment URL: https://na1.nice-incontact.com",
            &p(),
        )
        .unwrap();
        assert!(got.is_escalation());
        assert_eq!(got.contact_ids().count(), 0);
        let got = classify(
            "handoverToCXone: Contact ID: 11; Spawned Contact ID: 22; Action: End; Environment URL: x",
            &p(),
        )
        .unwrap();
        assert!(!got.is_escalation());
        assert_eq!(got.contact_ids().collect::<Vec<_>>(), ["11", "22"]);
    }

    /// A signal error line yields the HTTP status from the client's error text.
    #[test]
    fn reads_signal_error_with_status() {
        let got = classify("handoverToCXone: Error signaling CXone with: 'Escalate' for contactId: 700123456789; error: CXone API Client: Error sending handover signal: 404: Not Found", &p()).unwrap();
        match got {
            HandoverLog::SignalError {
                status,
                timed_out,
                contact_id,
                ..
            } => {
                assert_eq!(status, Some(404));
                assert!(!timed_out);
                assert_eq!(contact_id, "700123456789");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A token failure carries the token request's status.
    #[test]
    fn reads_token_failure_status() {
        let got = classify("handoverToCXone: Error signaling CXone with: 'Escalate' for contactId: 7001; error: CXone API Client: Error getting bearer token: 401: Unauthorized", &p()).unwrap();
        assert!(matches!(
            got,
            HandoverLog::SignalError {
                status: Some(401),
                ..
            }
        ));
    }

    /// The older error form without `CXone with:` is read too.
    #[test]
    fn reads_older_signal_error_form() {
        let got = classify(
            "handoverToCXone: Error signaling 'Escalate' for contactId: 7001; error: fetch failed",
            &p(),
        )
        .unwrap();
        assert!(matches!(
            got,
            HandoverLog::SignalError {
                action: "Escalate",
                contact_id: "7001",
                status: None,
                timed_out: false,
                ..
            }
        ));
    }

    /// A signal error without a status but saying it timed out is flagged as a timeout.
    #[test]
    fn reads_signal_error_timeout_text() {
        let got = classify("handoverToCXone: Error signaling CXone with: 'Escalate' for contactId: 7001; error: timeout of 10000ms exceeded", &p()).unwrap();
        assert!(matches!(
            got,
            HandoverLog::SignalError {
                status: None,
                timed_out: true,
                ..
            }
        ));
    }

    /// Validation errors are recognised; the `Done. No output data sent` line and the node's
    /// other info lines are not handover facts at all.
    #[test]
    fn reads_validation_and_ignores_done_line() {
        assert_eq!(
            classify("handoverToCXone: Missing or invalid Action parameter", &p()),
            Some(HandoverLog::InvalidAction)
        );
        assert_eq!(
            classify(
                "handoverToCXone: Validation: Spawned Contact ID is required",
                &p()
            ),
            Some(HandoverLog::MissingContactId)
        );
        for ignored in [
            "handoverToCXone: Done. No output data sent to Voice / Cognigy Webchat / Cognigy Testchat channel.",
            "handoverToCXone: Done. No output data sent to Voice / Interactions Panel channel.",
            "handoverToCXone: Interaction channel: voiceGateway2",
            "handoverToCXone: isVoice: true",
            "Flow started",
        ] {
            assert_eq!(classify(ignored, &p()), None, "{ignored}");
        }
    }
}
