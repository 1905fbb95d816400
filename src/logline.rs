//! Classifies Cognigy project log messages into the handover events the diagnosis uses.
//!
//! The CXone extension for Cognigy writes fixed-format lines when it signals CXone (DESIGN §2). The
//! patterns come from config ([`crate::config::LogPatterns`]) because NICE will replace the
//! extension. This module only reads message text; tying a line to a session or contact is
//! correlation's job, and judging it is diagnosis's.

use crate::config::{LogPatterns, DEFAULT_SIGNALED, DEFAULT_SIGNAL_ERROR};
use memchr::memmem::Finder;
use serde::Serialize;
use std::sync::LazyLock;

/// A recognised handover log line; its text fields are trimmed slices of the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HandoverLog<'m> {
    /// The signal call succeeded.
    Signaled {
        action: &'m str,
        contact_id: &'m str,
    },
    /// The signal call failed; `status` is the HTTP status when the text carries one.
    SignalError {
        action: &'m str,
        contact_id: &'m str,
        status: Option<u16>,
        timed_out: bool,
        error: &'m str,
    },
    /// The flow passed an action other than `Escalate` or `End`.
    InvalidAction,
    /// The node skipped the call because it had no contact ids.
    NoOutput,
}

impl<'m> HandoverLog<'m> {
    /// The CXone contact id the line names, if any and not blank.
    pub fn contact_id(&self) -> Option<&'m str> {
        match *self {
            HandoverLog::Signaled { contact_id, .. }
            | HandoverLog::SignalError { contact_id, .. } => {
                Some(contact_id).filter(|c| !c.is_empty())
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

/// The named groups of a matched signal line.
struct SignalLine<'m> {
    action: &'m str,
    contact_id: &'m str,
    error: Option<&'m str>,
    status: Option<&'m str>,
}

/// Finds a signal line with `regex`, or, when `regex` is the default pattern `default`, with the
/// equivalent literal scan `literal` (the default patterns are fixed text around three groups;
/// capturing them with the regex engine was a fifth of correlation's time, issue 5). The
/// `literal_scans_agree_with_the_default_regexes` test holds the two to the same answers.
fn find_signal<'m>(
    msg: &'m str,
    regex: &regex::Regex,
    default: &str,
    literal: fn(&'m str) -> Option<SignalLine<'m>>,
) -> Option<SignalLine<'m>> {
    if regex.as_str() == default {
        return literal(msg);
    }
    let caps = regex.captures(msg)?;
    let text = |name: &str| caps.name(name).map(|m| m.as_str());
    Some(SignalLine {
        action: text("action").unwrap_or_default(),
        contact_id: text("contact_id").unwrap_or_default(),
        error: text("error"),
        status: text("status"),
    })
}

/// `DEFAULT_SIGNALED` and `DEFAULT_SIGNAL_ERROR` without the regex engine: the leftmost
/// occurrence of `prefix` (a searcher built once: building it per line was a tenth of the scan)
/// followed by `<action>' for contactId: <contact_id>` (the action has no
/// quote; the contact id runs to whitespace or `;`) and, when `error` is set, an optional
/// `; error: <rest of the line>`.
fn scan_signal<'m>(msg: &'m str, prefix: &Finder, with_error: bool) -> Option<SignalLine<'m>> {
    const AFTER_ACTION: &str = "' for contactId: ";
    const ERROR: &str = "; error: ";
    for at in prefix.find_iter(msg.as_bytes()) {
        // The prefix is text that starts and ends with an ASCII character, so a match of it
        // starts and ends on character boundaries.
        let rest = &msg[at + prefix.needle().len()..];
        let Some(quote) = rest.find('\'') else {
            // No closing quote after this occurrence, so none after any later one either.
            return None;
        };
        let action = &rest[..quote];
        let Some(rest) = rest[quote..].strip_prefix(AFTER_ACTION) else {
            continue;
        };
        let id_end = rest
            .find(|c: char| c.is_whitespace() || c == ';')
            .unwrap_or(rest.len());
        let contact_id = &rest[..id_end];
        let error = if with_error {
            rest[id_end..]
                .strip_prefix(ERROR)
                .map(|e| e.split('\n').next().unwrap_or(e))
        } else {
            None
        };
        return Some(SignalLine {
            action,
            contact_id,
            error,
            status: None,
        });
    }
    None
}

fn scan_signaled(msg: &str) -> Option<SignalLine<'_>> {
    static PREFIX: LazyLock<Finder<'static>> =
        LazyLock::new(|| Finder::new("handoverToCXone: Signaled CXone with: '"));
    scan_signal(msg, &PREFIX, false)
}

fn scan_signal_error(msg: &str) -> Option<SignalLine<'_>> {
    static PREFIX: LazyLock<Finder<'static>> =
        LazyLock::new(|| Finder::new("handoverToCXone: Error signaling CXone with: '"));
    scan_signal(msg, &PREFIX, true)
}

/// Recognises one log message; `None` when it is not a handover line.
pub fn classify<'m>(msg: &'m str, patterns: &LogPatterns) -> Option<HandoverLog<'m>> {
    // Error first: a custom `signaled` pattern could be loose enough to match error lines too.
    if let Some(line) = find_signal(
        msg,
        &patterns.signal_error,
        DEFAULT_SIGNAL_ERROR,
        scan_signal_error,
    ) {
        let error = line.error.unwrap_or_default().trim();
        let status_source = if error.is_empty() { msg } else { error };
        let status = line
            .status
            .or_else(|| {
                patterns
                    .signal_status
                    .captures(status_source)
                    .and_then(|c| c.name("status"))
                    .map(|m| m.as_str())
            })
            .and_then(|s| s.parse::<u16>().ok());
        return Some(HandoverLog::SignalError {
            action: line.action.trim(),
            contact_id: line.contact_id.trim(),
            status,
            timed_out: patterns.timeout_text.is_match(status_source),
            error,
        });
    }
    if let Some(line) = find_signal(msg, &patterns.signaled, DEFAULT_SIGNALED, scan_signaled) {
        return Some(HandoverLog::Signaled {
            action: line.action.trim(),
            contact_id: line.contact_id.trim(),
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
                action: "Escalate",
                contact_id: "700123456789"
            })
        );
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

    /// The literal scans used for the default patterns give exactly what the regexes give,
    /// including repeated prefixes, missing quotes, Unicode spaces, newlines and empty groups.
    #[test]
    fn literal_scans_agree_with_the_default_regexes() {
        // The same patterns in a non-capturing group: equivalent, but not the default text, so
        // `classify` takes the regex path with them.
        let wrap = |p: &str| regex::Regex::new(&format!("(?:{p})")).expect("compiles");
        let by_regex = LogPatterns {
            signaled: wrap(crate::config::DEFAULT_SIGNALED),
            signal_error: wrap(crate::config::DEFAULT_SIGNAL_ERROR),
            ..p()
        };
        let s = "handoverToCXone: Signaled CXone with: '";
        let e = "handoverToCXone: Error signaling CXone with: '";
        let mut corpus = vec![
            String::new(),
            "Flow started".to_owned(),
            format!("{s}Escalate' for contactId: 700123456789"),
            format!("{s}End' for contactId: 7001;rest"),
            format!("{s}' for contactId: "),
            format!("{s}Escalate' for contactId:7001"),
            format!("{s}Escalate for contactId: 7001"),
            format!("{s}a' b {s}Escalate' for contactId: 42 tail"),
            format!("x {s}Esc' for contactId: 42\u{2003}more"),
            format!("{s}Esc' for contactId: 4\u{a0}2"),
            format!("{s}Esc' for contactId:  42"),
            format!("{e}Escalate' for contactId: 7001; error: timeout of 10000ms exceeded"),
            format!("{e}Escalate' for contactId: 7001; error: Error sending handover signal: 404: Not Found"),
            format!("{e}Escalate' for contactId: 7001;error: x"),
            format!("{e}Escalate' for contactId: 7001 ; error: x"),
            format!("{e}Escalate' for contactId: 7001; error: line one\nline two 500"),
            format!("{e}Escalate' for contactId: ; error: "),
            format!("{e}Escalate' for contactId: 7001"),
            format!("{e}no quote {e}Escalate' for contactId: 9; error: y"),
            format!("{e}x' for contact: 1 {e}Escalate' for contactId: 9; error: ETIMEDOUT"),
            format!("{e}Esc' for contactId: 9; error: z {s}End' for contactId: 8"),
            format!("{s}End' for contactId: 8 {e}Esc' for contactId: 9; error: z"),
            "handoverToCXone: Missing or invalid Action parameter".to_owned(),
            "handoverToCXone: Done. No output data sent".to_owned(),
            format!("{s}\u{e9}t\u{e9}' for contactId: \u{661}\u{662}"),
        ];
        // Every prefix of every line too: truncated lines are where scanners go wrong.
        let whole = corpus.clone();
        for line in &whole {
            for (i, _) in line.char_indices() {
                corpus.push(line[..i].to_owned());
            }
        }
        for msg in &corpus {
            assert_eq!(
                classify(msg, &p()),
                classify(msg, &by_regex),
                "the literal scan and the regex disagree on {msg:?}"
            );
        }
    }
}
