//! The Cognigy log steps of `check`: logs readable, the `filter` honoured, and which CXone
//! extension version's handover lines are present (told by the catalogue's distinguishing texts,
//! docs/log-lines.md) and whether the configured log patterns read them.

use super::{describe, Steps};
use crate::config::TenantConfig;
use crate::logline::classify;
use crate::sources::cognigy::wire::LogEntry;
use crate::sources::cognigy::CognigyClient;
use chrono::{DateTime, Utc};
use std::collections::HashSet;

/// Which CXone extension versions (docs/log-lines.md, "Version names") write a line containing
/// the text: the catalogue's distinguishing texts of the handover node's lines.
const VERSION_SIGNATURES: &[(&str, &[&str])] = &[
    (
        "Environment URL:",
        &["v5-2025-12", "v6-2026-03", "v7-1.0.13", "v8-1.0.18"],
    ),
    (
        "Environment Base URL:",
        &[
            "v1-2025-10-09",
            "v2-2025-10-10",
            "v3-2025-10",
            "v4-2025-11",
            "alt-1.2.1",
        ],
    ),
    ("Voice / Interactions Panel channel", &["v8-1.0.18"]),
    (
        "Voice / Cognigy Webchat / Cognigy Testchat channel",
        &[
            "v4-2025-11",
            "v5-2025-12",
            "v6-2026-03",
            "v7-1.0.13",
            "alt-1.2.1",
        ],
    ),
    ("Error signaling '", &["v1-2025-10-09", "v2-2025-10-10"]),
    (
        "Error signaling CXone with:",
        &[
            "v3-2025-10",
            "v4-2025-11",
            "v5-2025-12",
            "v6-2026-03",
            "v7-1.0.13",
            "v8-1.0.18",
            "alt-1.2.1",
        ],
    ),
    (
        "prepared optional parameters",
        &[
            "v3-2025-10",
            "v4-2025-11",
            "v5-2025-12",
            "v6-2026-03",
            "v7-1.0.13",
            "v8-1.0.18",
            "alt-1.2.1",
        ],
    ),
    ("handoverToCXone: Validation:", &["v7-1.0.13", "v8-1.0.18"]),
    ("sendSignalToCXone -> ", &["v1-2025-10-09"]),
    (
        "CXone -> ",
        &["v2-2025-10-10", "v3-2025-10", "v4-2025-11", "alt-1.2.1"],
    ),
    (
        "CXone API Client",
        &["v5-2025-12", "v6-2026-03", "v7-1.0.13", "v8-1.0.18"],
    ),
];

/// Every version name, oldest first (docs/log-lines.md).
const VERSIONS: &[&str] = &[
    "v1-2025-10-09",
    "v2-2025-10-10",
    "v3-2025-10",
    "v4-2025-11",
    "v5-2025-12",
    "v6-2026-03",
    "v7-1.0.13",
    "v8-1.0.18",
    "alt-1.2.1",
];

/// The versions whose lines are consistent with every signature `lines` show, and whether any
/// signature was seen at all.
pub fn extension_versions<'a>(lines: impl Iterator<Item = &'a str>) -> (Vec<&'static str>, bool) {
    let mut candidates: Vec<&'static str> = VERSIONS.to_vec();
    let mut seen = false;
    let mut matched: HashSet<&str> = HashSet::new();
    for line in lines {
        // v1's helper prefix `sendSignalToCXone -> ` ends like v2's `CXone -> `: tell it first.
        let v1_prefix = "sendSignalToCXone -> ";
        let rest = line.replace(v1_prefix, "");
        for (text, versions) in VERSION_SIGNATURES {
            let found = if *text == v1_prefix {
                line.contains(text)
            } else {
                rest.contains(text)
            };
            if found && matched.insert(text) {
                seen = true;
                candidates.retain(|v| versions.contains(v));
            }
        }
    }
    (candidates, seen)
}

/// Whether a handover node line carries a fact the diagnosis reads (docs/log-lines.md, "How
/// handover-exporter reads these lines"): the ids line, a signal result, a validation error.
fn is_fact_line(msg: &str) -> bool {
    msg.contains("handoverToCXone: Contact ID:")
        || msg.contains("sent signal to CXone")
        || msg.contains("Error signaling")
        || msg.contains("handoverToCXone: Validation:")
}

/// Whether a log line was written by the CXone extension's handover or signal node.
fn is_node_line(msg: &str) -> bool {
    msg.contains("handoverToCXone") || msg.contains("sendSignalToCXone")
}

/// Reads the project logs as the daemon does (each filter term in turn) and judges them.
pub(super) async fn logs_steps(
    steps: &mut Steps,
    tenant: &TenantConfig,
    cognigy: &CognigyClient,
    since: DateTime<Utc>,
) -> Vec<LogEntry> {
    let terms: Vec<Option<&str>> = if tenant.cognigy.logs_filter.is_empty() {
        vec![None]
    } else {
        tenant
            .cognigy
            .logs_filter
            .iter()
            .map(|t| Some(t.as_str()))
            .collect()
    };
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut seen_ids: HashSet<String> = HashSet::new();
    let mut pages = 0u32;
    let mut truncated = false;
    for term in &terms {
        let mut cursor: Option<String> = None;
        let mut term_pages = 0u32;
        loop {
            match cognigy.logs_page(since, cursor.as_deref(), *term).await {
                Ok(page) => {
                    pages += 1;
                    term_pages += 1;
                    for entry in page.entries {
                        let fresh = entry
                            .id
                            .as_ref()
                            .map_or(true, |id| seen_ids.insert(id.clone()));
                        if fresh {
                            entries.push(entry);
                        }
                    }
                    match page.next {
                        Some(next) if term_pages < tenant.cognigy.max_pages.max(1) => {
                            cursor = Some(next)
                        }
                        Some(_) => {
                            truncated = true;
                            break;
                        }
                        None => break,
                    }
                }
                Err(e) => {
                    let hint = match e.status() {
                        Some(401 | 403) => "the API key cannot read the project's logs: use a key \
                                            of a user with access to the project (docs/setup.md, \
                                            Cognigy)"
                            .to_owned(),
                        _ => "check api_base_url (the REST API host, e.g. \
                              https://api-app.cognigy.ai) and project_id"
                            .to_owned(),
                    };
                    steps.fail("cognigy.logs", describe(&e), hint);
                    steps.skip_rest(
                        &["cognigy.logs_filter", "cognigy.extension"],
                        "the project logs are not readable",
                    );
                    return Vec::new();
                }
            }
        }
    }
    steps.pass(
        "cognigy.logs",
        format!(
            "project logs readable: {} line(s) in {pages} page(s){}",
            entries.len(),
            if truncated {
                ", stopped at max_pages"
            } else {
                ""
            }
        ),
    );
    if tenant.cognigy.logs_filter.is_empty() {
        steps.pass(
            "cognigy.logs_filter",
            "no logs_filter configured: every line is read".into(),
        );
    } else if cognigy.logs_filter_on() {
        steps.pass(
            "cognigy.logs_filter",
            format!(
                "the server honours filter ({}) and startDate",
                tenant.cognigy.logs_filter.join(", ")
            ),
        );
    } else {
        steps.warn(
            "cognigy.logs_filter",
            "the server refused filter/startDate: every log line is read and the patterns pick \
             the handover lines"
                .into(),
            "nothing is lost, but reading every line costs more requests of the Cognigy quota; \
             set logs_filter = [] to skip the refused first attempt"
                .into(),
        );
    }
    extension_step(steps, tenant, &entries);
    entries
}

/// Which extension version's lines are present, and whether the configured patterns read them.
pub(super) fn extension_step(steps: &mut Steps, tenant: &TenantConfig, entries: &[LogEntry]) {
    let node: Vec<&str> = entries
        .iter()
        .map(|e| e.msg.as_str())
        .filter(|m| is_node_line(m))
        .collect();
    if node.is_empty() {
        steps.warn(
            "cognigy.extension",
            format!(
                "no line of the CXone extension's handover node (handoverToCXone) in {} log \
                 line(s) read",
                entries.len()
            ),
            "either no call reached the handover node in the look-back, or the flow hands over \
             with another node (NICE's native node): then set [tenant.rules.log_patterns] to \
             that node's lines (and logs_filter to a term they contain); docs/log-lines.md"
                .into(),
        );
        return;
    }
    let (versions, seen) = extension_versions(node.iter().copied());
    let version_text = match (seen, versions.as_slice()) {
        (false, _) => "version not told by these lines".to_owned(),
        (true, []) => "lines of more than one extension version".to_owned(),
        (true, [one]) => format!("lines of extension {one}"),
        (true, many) => format!("lines of extension {} .. {}", many[0], many[many.len() - 1]),
    };
    let facts: Vec<&str> = node.iter().copied().filter(|m| is_fact_line(m)).collect();
    let patterns = &tenant.rules.log_patterns;
    let unread: Vec<&str> = facts
        .iter()
        .copied()
        .filter(|m| classify(m, patterns).is_none())
        .collect();
    let detail = format!(
        "{version_text}; the configured log_patterns read {} of {} handover line(s)",
        facts.len() - unread.len(),
        facts.len()
    );
    if unread.is_empty() {
        steps.pass("cognigy.extension", detail);
        return;
    }
    let example: String = unread[0].chars().take(160).collect();
    let hint = "the configured [tenant.rules.log_patterns] do not match these lines: remove the \
                custom patterns (the defaults read every version in docs/log-lines.md) or adjust \
                them to this version's texts"
        .to_owned();
    let detail = format!("{detail}; unread, e.g. {example:?}");
    if unread.len() == facts.len() {
        steps.fail("cognigy.extension", detail, hint);
    } else {
        steps.warn("cognigy.extension", detail, hint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines of one version narrow the candidates to it; lines of the newest tell it alone.
    #[test]
    fn versions_are_told_by_their_lines() {
        let v8 = [
            "handoverToCXone: Contact ID: 1; Spawned Contact ID: 2; Action: Escalate; Environment URL: https://x",
            "handoverToCXone: Done. No output data sent to Voice / Interactions Panel channel.",
        ];
        assert_eq!(
            extension_versions(v8.into_iter()),
            (vec!["v8-1.0.18"], true)
        );
        let v1 = [
            "handoverToCXone: Contact ID: 1; Spawned Contact ID: 2; Action: Escalate; Environment: https://x; Environment Base URL: https://x",
            "handoverToCXone: Error signaling 'Escalate' for contactId: 1; error: sendSignalToCXone -> sendSignalHandover: Error sending signal: 404: Not Found",
        ];
        assert_eq!(
            extension_versions(v1.into_iter()),
            (vec!["v1-2025-10-09"], true)
        );
        assert!(!extension_versions(["other"].into_iter()).1);
    }

    /// For every version the simulator writes from the catalogue, the lines of a signalled run
    /// and of a failed run are told as that version (alone or among its look-alikes).
    #[test]
    fn every_catalogued_version_is_among_the_candidates_of_its_lines() {
        use handover_simulator::extension::{node_run_lines, NodeRun, RunResult};
        use handover_simulator::ExtensionVersion;
        for version in ExtensionVersion::ALL {
            let mut lines = Vec::new();
            for result in [
                RunResult::Signaled,
                RunResult::SignalStatus(503, "Unavailable"),
            ] {
                let run = NodeRun {
                    action: "Escalate",
                    contact_id: "1111111111",
                    spawned_contact_id: "2222222222",
                    result,
                };
                lines.extend(node_run_lines(version, &run).into_iter().map(|(_, t)| t));
            }
            let (candidates, seen) = extension_versions(lines.iter().map(String::as_str));
            assert!(seen, "{version}: no signature in {lines:#?}");
            assert!(
                candidates.contains(&version.as_str()),
                "{version} not among {candidates:?}"
            );
        }
    }
}
