//! Classifies Cognigy project log messages into the handover events the diagnosis uses.
//!
//! The CXone extension for Cognigy writes fixed-format lines when it signals CXone (DESIGN §2). The
//! patterns come from config ([`crate::config::LogPatterns`]) because NICE will replace the
//! extension. This module only reads message text; tying a line to a session or contact is
//! correlation's job, and judging it is diagnosis's.

use crate::config::LogPatterns;
use serde::Serialize;

/// A recognised handover log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HandoverLog {
    /// The signal call succeeded.
    Signaled { action: String, contact_id: String },
    /// The signal call failed; `status` is the HTTP status when the text carries one.
    SignalError {
        action: String,
        contact_id: String,
        status: Option<u16>,
        timed_out: bool,
        error: String,
    },
    /// The flow passed an action other than `Escalate` or `End`.
    InvalidAction,
    /// The node skipped the call because it had no contact ids.
    NoOutput,
}

impl HandoverLog {
    /// The CXone contact id the line names, if any and not blank.
    pub fn contact_id(&self) -> Option<&str> {
        match self {
            HandoverLog::Signaled { contact_id, .. } | HandoverLog::SignalError { contact_id, .. } => {
                Some(contact_id.as_str()).filter(|c| !c.is_empty())
            }
            _ => None,
        }
    }

    /// Whether the line shows an escalation attempt (successful or not).
    pub fn is_escalation(&self) -> bool {
        match self {
            HandoverLog::Signaled { action, .. } | HandoverLog::SignalError { action, .. } => {
                action.eq_ignore_ascii_case("escalate")
            }
            _ => false,
        }
    }
}

/// Recognises one log message; `None` when it is not a handover line.
pub fn classify(msg: &str, patterns: &LogPatterns) -> Option<HandoverLog> {
    let group = |caps: &regex::Captures, name: &str| {
        caps.name(name)
            .map(|m| m.as_str().trim().to_owned())
            .unwrap_or_default()
    };
    // Error first: a custom `signaled` pattern could be loose enough to match error lines too.
    if let Some(caps) = patterns.signal_error.captures(msg) {
        let error = group(&caps, "error");
        let status_source = if error.is_empty() { msg } else { error.as_str() };
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
            .and_then(|s| s.parse::<u16>().ok());
        return Some(HandoverLog::SignalError {
            action: group(&caps, "action"),
            contact_id: group(&caps, "contact_id"),
            status,
            timed_out: patterns.timeout_text.is_match(status_source),
            error,
        });
    }
    if let Some(caps) = patterns.signaled.captures(msg) {
        return Some(HandoverLog::Signaled {
            action: group(&caps, "action"),
            contact_id: group(&caps, "contact_id"),
        });
    }
    if patterns.invalid_action.is_match(msg) {
        return Some(HandoverLog::InvalidAction);
    }
    if patterns.no_output.is_match(msg) {
        return Some(HandoverLog::NoOutput);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> LogPatterns {
        LogPatterns::default()
    }

    /// The success line of the CXone extension is read with its action and contact id.
    #[test]
    fn reads_signaled_line() {
        let got = classify(
            "handoverToCXone: Signaled CXone with: 'Escalate' for contactId: 700123456789",
            &p(),
        );
        assert_eq!(
            got,
            Some(HandoverLog::Signaled {
                action: "Escalate".into(),
                contact_id: "700123456789".into()
            })
        );
    }

    /// A signal error line yields the HTTP status from the client's error text.
    #[test]
    fn reads_signal_error_with_status() {
        let got = classify("handoverToCXone: Error signaling CXone with: 'Escalate' for contactId: 700123456789; error: CXone API Client: Error sending handover signal: 404: Not Found", &p()).unwrap();
        match got {
            HandoverLog::SignalError { status, timed_out, contact_id, .. } => {
                assert_eq!(status, Some(404));
                assert!(!timed_out);
                assert_eq!(contact_id, "700123456789");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A signal error without a status but saying it timed out is flagged as a timeout.
    #[test]
    fn reads_signal_error_timeout_text() {
        let got = classify("handoverToCXone: Error signaling CXone with: 'Escalate' for contactId: 7001; error: timeout of 10000ms exceeded", &p()).unwrap();
        assert!(matches!(got, HandoverLog::SignalError { status: None, timed_out: true, .. }));
    }

    /// The invalid-action and skip lines are recognised; other lines are not.
    #[test]
    fn reads_invalid_action_and_no_output() {
        assert_eq!(
            classify("handoverToCXone: Missing or invalid Action parameter", &p()),
            Some(HandoverLog::InvalidAction)
        );
        assert_eq!(
            classify("handoverToCXone: Done. No output data sent", &p()),
            Some(HandoverLog::NoOutput)
        );
        assert_eq!(classify("Flow started", &p()), None);
    }
}
