//! The Cognigy CXone extension's handover node ("Exit Interaction", `handoverToCXone`) as the
//! simulator writes it: the project log lines of one node run, for each published version of the
//! extension (docs/log-lines.md, read from the extension's source), including the run's info
//! lines that say nothing about the outcome and the `Done. No output data sent ...` line that
//! follows every voice run that did not fail.
//!
//! This module only produces `(level, text)` lines and, for the versions that report a missing
//! action as a bot output instead of a log line, that output's text. It does not choose what
//! happens to a call (`world.rs` does) and never reads the crate's log patterns: the lines are
//! written from the catalogue, so a pattern that misses one is caught by the tests.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// A published version of the CXone extension, named as in docs/log-lines.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
pub enum ExtensionVersion {
    /// 1.0.0, 2025-10-09: helper texts `sendSignalToCXone -> ...`; lines name the main id.
    V1,
    /// 1.0.0, 2025-10-10: helper texts `CXone -> ...`; lines still name the main id.
    V2,
    /// 1.0.0-1.0.6, 2025-10/11: lines name the spawned id; `Error signaling CXone with:`.
    V3,
    /// 1.0.8-1.0.9, 2025-11: the sentinel id skips the voice branch; the `Done.` line appears.
    V4,
    /// 1.0.10, 2025-12: the `CXone API Client: ...` texts; `Environment URL:` in the ids line.
    V5,
    /// 1.0.11, 2026-03: the signal's parameters move into the JSON body.
    V6,
    /// 1.0.13: validation errors are logged (`handoverToCXone: Validation: ...`).
    V7,
    /// 1.0.18: contact ids validated; the `Done.` text names the Interactions Panel.
    #[default]
    V8,
    /// 1.2.1: a separate line of development from v4, with v4's texts.
    Alt121,
}

impl ExtensionVersion {
    /// Every version, oldest first (the alternative line last).
    pub const ALL: [ExtensionVersion; 9] = [
        ExtensionVersion::V1,
        ExtensionVersion::V2,
        ExtensionVersion::V3,
        ExtensionVersion::V4,
        ExtensionVersion::V5,
        ExtensionVersion::V6,
        ExtensionVersion::V7,
        ExtensionVersion::V8,
        ExtensionVersion::Alt121,
    ];

    /// The `--extension-version` name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExtensionVersion::V1 => "v1-2025-10-09",
            ExtensionVersion::V2 => "v2-2025-10-10",
            ExtensionVersion::V3 => "v3-2025-10",
            ExtensionVersion::V4 => "v4-2025-11",
            ExtensionVersion::V5 => "v5-2025-12",
            ExtensionVersion::V6 => "v6-2026-03",
            ExtensionVersion::V7 => "v7-1.0.13",
            ExtensionVersion::V8 => "v8-1.0.18",
            ExtensionVersion::Alt121 => "alt-1.2.1",
        }
    }

    /// Versions of the API-client generation (`CXone API Client: ...` texts).
    fn api_client(self) -> bool {
        matches!(
            self,
            ExtensionVersion::V5
                | ExtensionVersion::V6
                | ExtensionVersion::V7
                | ExtensionVersion::V8
        )
    }

    /// v1 and v2 name the main contact id in the signal lines; later versions the spawned one.
    fn names_main_id(self) -> bool {
        matches!(self, ExtensionVersion::V1 | ExtensionVersion::V2)
    }

    /// From v4 on, a sentinel id skips the voice branch; before, it is signalled like an id.
    fn checks_sentinel(self) -> bool {
        !matches!(
            self,
            ExtensionVersion::V1 | ExtensionVersion::V2 | ExtensionVersion::V3
        )
    }

    /// Whether the version signals the sentinel id to CXone like a real id (before v4).
    pub fn signals_sentinel(self) -> bool {
        !self.checks_sentinel()
    }

    /// Whether the version refuses a non-empty action other than `Escalate` or `End` (v5 on,
    /// not the alternative line, which sends it to CXone as it is).
    pub fn refuses_unknown_action(self) -> bool {
        self.api_client()
    }

    /// How the version reports a missing or unknown action.
    pub fn invalid_action_report(self) -> InvalidActionReport {
        match self {
            ExtensionVersion::V1
            | ExtensionVersion::V2
            | ExtensionVersion::V3
            | ExtensionVersion::V4 => {
                InvalidActionReport::Output("handoverToCXone Error: Missing Action parameter")
            }
            ExtensionVersion::V5 | ExtensionVersion::V6 => InvalidActionReport::Output(
                "handoverToCXone Error: Missing or invalid Action parameter",
            ),
            ExtensionVersion::V7 | ExtensionVersion::V8 => InvalidActionReport::Log,
            // An empty action throws without a log line or an output; only an unknown non-empty
            // action, which this version sends to CXone as it is, leaves a trace.
            ExtensionVersion::Alt121 => InvalidActionReport::UnknownActionSent,
        }
    }
}

impl fmt::Display for ExtensionVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown `--extension-version` name.
#[derive(Debug, thiserror::Error)]
#[error("unknown extension version {0:?}: expected one of {names}", names = version_names())]
pub struct ExtensionVersionParseError(String);

fn version_names() -> String {
    let names: Vec<&str> = ExtensionVersion::ALL.iter().map(|v| v.as_str()).collect();
    names.join(", ")
}

impl FromStr for ExtensionVersion {
    type Err = ExtensionVersionParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        ExtensionVersion::ALL
            .into_iter()
            .find(|v| v.as_str() == wanted)
            .ok_or_else(|| ExtensionVersionParseError(s.to_owned()))
    }
}

/// Where a version reports a missing or unknown action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidActionReport {
    /// As a bot output (a Conversations record) with this text, and no log line.
    Output(&'static str),
    /// As the error line `handoverToCXone: Validation: Missing or invalid Action parameter`.
    Log,
    /// Not at all for an empty action; an unknown action is signalled like a valid one.
    UnknownActionSent,
}

/// What happens in one node run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunResult {
    /// CXone accepted the signal (202).
    Signaled,
    /// The signal request got this HTTP status and reason phrase.
    SignalStatus(u16, &'static str),
    /// The token request got this HTTP status and reason phrase.
    TokenStatus(u16, &'static str),
    /// The signal request got no HTTP answer (`fetch failed`).
    FetchFailed,
}

/// One run of the handover node.
#[derive(Debug, Clone)]
pub struct NodeRun<'a> {
    /// `Escalate`, `End`, or (invalid action) anything else.
    pub action: &'a str,
    /// The main contact id the flow passed (may be empty or the sentinel).
    pub contact_id: &'a str,
    /// The spawned contact id the flow passed (may be empty or the sentinel).
    pub spawned_contact_id: &'a str,
    pub result: RunResult,
}

const ENVIRONMENT: &str = "https://cxone.niceincontact.com";
const TOKEN_URL: &str = "https://cxone.niceincontact.com/auth/token";
const API_ENDPOINT: &str = "https://api-na1.niceincontact.com";
const SENTINEL: &str = "100000000000";

/// The log lines of one node run of `version`, in order, as `(level, text)`.
pub fn node_run_lines(version: ExtensionVersion, run: &NodeRun<'_>) -> Vec<(&'static str, String)> {
    if let Some(error) = validation_error(version, run) {
        return vec![error];
    }
    let mut lines: Vec<(&'static str, String)> = Vec::with_capacity(12);
    opening_lines(version, run, &mut lines);
    let (main, spawned) = (run.contact_id, run.spawned_contact_id);
    let has_ids = !main.is_empty() && !spawned.is_empty();
    let sentinel = main == SENTINEL || spawned == SENTINEL;
    let voice_branch = has_ids && !(sentinel && version.checks_sentinel());
    if !voice_branch {
        if let Some(done) = done_text(version) {
            lines.push(("info", done.to_owned()));
        }
        return lines;
    }
    voice_branch_lines(version, run, sentinel, &mut lines);
    lines
}

/// Validation, logged from v7 on (v8 also checks the ids): the one line written then.
fn validation_error(
    version: ExtensionVersion,
    run: &NodeRun<'_>,
) -> Option<(&'static str, String)> {
    use ExtensionVersion::*;
    let text = if matches!(version, V7 | V8) && !matches!(run.action, "Escalate" | "End") {
        "handoverToCXone: Validation: Missing or invalid Action parameter"
    } else if version == V8 && run.contact_id.trim().is_empty() {
        "handoverToCXone: Validation: Contact ID is required"
    } else if version == V8 && run.spawned_contact_id.trim().is_empty() {
        "handoverToCXone: Validation: Spawned Contact ID is required"
    } else {
        return None;
    };
    Some(("error", text.to_owned()))
}

/// The lines every run that passed validation starts with: the ids, the channel, the options.
fn opening_lines(
    version: ExtensionVersion,
    run: &NodeRun<'_>,
    lines: &mut Vec<(&'static str, String)>,
) {
    use ExtensionVersion::*;
    let mut info = |text: String| lines.push(("info", text));
    let (main, spawned, action) = (run.contact_id, run.spawned_contact_id, run.action);
    let environment = if version.api_client() {
        format!("Environment URL: {ENVIRONMENT}")
    } else {
        format!("Environment: {ENVIRONMENT}; Environment Base URL: {ENVIRONMENT}")
    };
    info(format!(
        "handoverToCXone: Contact ID: {main}; Spawned Contact ID: {spawned}; Action: {action}; {environment}"
    ));
    if early_token_url(version) {
        info(format!("handoverToCXone: got token URL: {TOKEN_URL}"));
    }
    info("handoverToCXone: Interaction channel: voiceGateway2".to_owned());
    info("handoverToCXone: isVoice: true".to_owned());
    if version != V1 && version != V2 {
        info("handoverToCXone: prepared optional parameters: []".to_owned());
    }
}

/// Versions up to v3 get the token URL before the channel lines, not in the voice branch.
fn early_token_url(version: ExtensionVersion) -> bool {
    matches!(
        version,
        ExtensionVersion::V1 | ExtensionVersion::V2 | ExtensionVersion::V3
    )
}

/// The `Done.` line closing a run that did not fail (from v4 on).
fn done_text(version: ExtensionVersion) -> Option<&'static str> {
    use ExtensionVersion::*;
    match version {
        V1 | V2 | V3 => None,
        V8 => Some("handoverToCXone: Done. No output data sent to Voice / Interactions Panel channel."),
        _ => Some(
            "handoverToCXone: Done. No output data sent to Voice / Cognigy Webchat / Cognigy Testchat channel.",
        ),
    }
}

/// The voice branch: token, API endpoint, signal, and how the signal ended.
fn voice_branch_lines(
    version: ExtensionVersion,
    run: &NodeRun<'_>,
    sentinel: bool,
    lines: &mut Vec<(&'static str, String)>,
) {
    use ExtensionVersion::*;
    let (main, spawned, action) = (run.contact_id, run.spawned_contact_id, run.action);
    let target = if spawned.is_empty() { main } else { spawned };
    let named = if version.names_main_id() {
        main
    } else {
        target
    };
    if !early_token_url(version) && !version.api_client() {
        lines.push((
            "info",
            format!("handoverToCXone: got token URL: {TOKEN_URL}"),
        ));
    }
    let (token_prefix, signal_prefix) = match version {
        V1 => (
            "sendSignalToCXone -> getToken",
            "sendSignalToCXone -> sendSignalHandover",
        ),
        V2 | V3 | V4 | Alt121 => ("CXone -> getToken", "CXone -> sendSignalHandover"),
        V5 | V6 | V7 | V8 => ("CXone API Client", "CXone API Client"),
    };
    let error_line = |message: String| {
        let text = if version.names_main_id() {
            format!("handoverToCXone: Error signaling '{action}' for contactId: {named}; error: {message}")
        } else {
            format!("handoverToCXone: Error signaling CXone with: '{action}' for contactId: {named}; error: {message}")
        };
        ("error", text)
    };
    if let RunResult::TokenStatus(status, text) = run.result {
        lines.push(error_line(format!(
            "{token_prefix}: Error getting bearer token: {status}: {text}"
        )));
        return;
    }
    let mut info = |text: String| lines.push(("info", text));
    match version {
        V1 => info(format!(
            "handoverToCXone: decoded id token:  {{\"iss\":\"{ENVIRONMENT}\",\"tenantId\":\"11eb0358\"}}"
        )),
        V2 | V3 | V4 | Alt121 => {
            info("CXone -> getToken: Cached new encrypted CXone token in context.".to_owned())
        }
        V5 | V6 | V7 | V8 => {
            info("CXone API Client: Cached new encrypted token in context".to_owned())
        }
    }
    if !version.api_client() {
        info(format!(
            "handoverToCXone: got API endpoint URL: {API_ENDPOINT}"
        ));
    }
    let url = format!("{API_ENDPOINT}/inContactAPI/services/v30.0/interactions/{target}/signal");
    info(match version {
        V1 | V2 | V3 => format!("{signal_prefix}: About to signal to URL: {url}?p1={action}"),
        V4 | Alt121 => format!("{signal_prefix}: Posting to URL: {url}?p1={action} with body: {{}}"),
        V5 => format!("{signal_prefix}: Posting handover signal to URL: {url}?p1={action} with body: {{}}"),
        V6 | V7 | V8 => format!(
            "{signal_prefix}: Posting handover signal to URL: {url} with body: {{\"p1\":\"{action}\"}}"
        ),
    });
    // Before v4 the sentinel is signalled like an id: CXone knows no such contact.
    let result = if sentinel {
        RunResult::SignalStatus(404, "Not Found")
    } else {
        run.result.clone()
    };
    let signal_error = if version.api_client() {
        "Error sending handover signal"
    } else {
        "Error sending signal"
    };
    match result {
        RunResult::Signaled => {
            info(format!(
                "handoverToCXone: sent signal to CXone for contactId: {named}; action: {action}; status: 202"
            ));
            if let Some(done) = done_text(version) {
                info(done.to_owned());
            }
        }
        RunResult::SignalStatus(status, text) => lines.push(error_line(format!(
            "{signal_prefix}: {signal_error}: {status}: {text}"
        ))),
        RunResult::FetchFailed => lines.push(error_line("fetch failed".to_owned())),
        // Handled before the signal (the token comes first).
        RunResult::TokenStatus(..) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(action: &'static str, result: RunResult) -> NodeRun<'static> {
        NodeRun {
            action,
            contact_id: "1111111111",
            spawned_contact_id: "2222222222",
            result,
        }
    }

    /// The newest version's successful escalation is the catalogue's example run, line for line.
    #[test]
    fn newest_success_run_matches_the_catalogue() {
        let lines = node_run_lines(ExtensionVersion::V8, &run("Escalate", RunResult::Signaled));
        let texts: Vec<String> = lines.iter().map(|(l, t)| format!("[{l}] {t}")).collect();
        assert_eq!(
            texts,
            [
                "[info] handoverToCXone: Contact ID: 1111111111; Spawned Contact ID: 2222222222; Action: Escalate; Environment URL: https://cxone.niceincontact.com",
                "[info] handoverToCXone: Interaction channel: voiceGateway2",
                "[info] handoverToCXone: isVoice: true",
                "[info] handoverToCXone: prepared optional parameters: []",
                "[info] CXone API Client: Cached new encrypted token in context",
                "[info] CXone API Client: Posting handover signal to URL: https://api-na1.niceincontact.com/inContactAPI/services/v30.0/interactions/2222222222/signal with body: {\"p1\":\"Escalate\"}",
                "[info] handoverToCXone: sent signal to CXone for contactId: 2222222222; action: Escalate; status: 202",
                "[info] handoverToCXone: Done. No output data sent to Voice / Interactions Panel channel.",
            ]
        );
    }

    /// The first version's 404 names the main id in its older error form, as catalogued.
    #[test]
    fn first_version_error_run_matches_the_catalogue() {
        let lines = node_run_lines(
            ExtensionVersion::V1,
            &run("Escalate", RunResult::SignalStatus(404, "Not Found")),
        );
        assert_eq!(
            lines.last().map(|(l, t)| format!("[{l}] {t}")).as_deref(),
            Some("[error] handoverToCXone: Error signaling 'Escalate' for contactId: 1111111111; error: sendSignalToCXone -> sendSignalHandover: Error sending signal: 404: Not Found")
        );
    }

    /// Every version name parses back; an unknown one is an error listing the names.
    #[test]
    fn version_names_round_trip() {
        for v in ExtensionVersion::ALL {
            assert_eq!(v.as_str().parse::<ExtensionVersion>().ok(), Some(v));
        }
        let err = "v9".parse::<ExtensionVersion>().unwrap_err().to_string();
        assert!(err.contains("v8-1.0.18") && err.contains("\"v9\""), "{err}");
    }
}
