//! The handover node's real log lines, one replay directory per published version of the CXone
//! extension (tests/fixtures/replay/<version>/, written by `simulate --scenario log_lines
//! --extension-version <version> --calls 12 --seed 7 --dump`), through the real binary's
//! `diagnose --replay`: each node outcome gets the outcome DESIGN §5 gives, and the
//! `Done. No output data sent ...` line can change none of them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every version directory, named as `--extension-version` names it (docs/log-lines.md).
const VERSIONS: [&str; 9] = [
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

/// The calls of each directory in contact id order: what the node run did, and the outcome
/// DESIGN §5 gives it (outcome, failure, reason).
const EXPECTED: [(&str, &str, &str, &str); 12] = [
    (
        "success Escalate, queued, answered",
        "handed_over",
        "",
        "agent_answered",
    ),
    ("success End", "contained", "", "bot_completed"),
    (
        "signal 404",
        "failed",
        "invalid_handover",
        "signal_rejected",
    ),
    ("signal 504", "failed", "timeout", "signal_timeout"),
    ("signal 503", "failed", "timeout", "signal_unavailable"),
    ("token 401", "failed", "invalid_handover", "signal_rejected"),
    (
        "fetch failure, no status",
        "failed",
        "timeout",
        "signal_unavailable",
    ),
    (
        "sentinel spawned id",
        "failed",
        "missing_context",
        "no_contact_id",
    ),
    (
        "missing or unknown action",
        "failed",
        "invalid_handover",
        "invalid_action",
    ),
    (
        "escalation only in the sent signal line, never queued",
        "failed",
        "timeout",
        "not_queued",
    ),
    (
        "empty spawned id",
        "failed",
        "missing_context",
        "no_contact_id",
    ),
    ("signal 408", "failed", "timeout", "signal_timeout"),
];

fn fixture(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/replay")
        .join(version)
}

/// `diagnose --replay DIR --format json`: (outcome, failure, reason) per contact, in order.
fn diagnose(dir: &Path) -> Vec<(String, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_handover-exporter"))
        .args([
            "diagnose",
            "--replay",
            dir.to_str().unwrap(),
            "--format",
            "json",
        ])
        .output()
        .expect("the binary runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "failures found, exit 1; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            (text("outcome"), text("failure"), text("reason"))
        })
        .collect()
}

fn expected() -> Vec<(String, String, String)> {
    EXPECTED
        .iter()
        .map(|(_, o, f, r)| (o.to_string(), f.to_string(), r.to_string()))
        .collect()
}

/// Copies a replay directory, rewriting the log entries of every `cognigy/logs*.json` page.
fn rewrite_logs(
    from: &Path,
    to: &Path,
    edit: &dyn Fn(Vec<serde_json::Value>) -> Vec<serde_json::Value>,
) {
    for sub in ["cxone", "cognigy"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for entry in std::fs::read_dir(from.join(sub)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let text = if sub == "cognigy" && name.starts_with("logs") {
                let mut page: serde_json::Value = serde_json::from_str(&text).unwrap();
                let items = page["items"].as_array().cloned().unwrap_or_default();
                page["items"] = serde_json::Value::Array(edit(items));
                page.to_string()
            } else {
                text
            };
            std::fs::write(to.join(sub).join(name), text).unwrap();
        }
    }
    std::fs::copy(from.join("config.toml"), to.join("config.toml")).unwrap();
}

fn is_done_line(entry: &serde_json::Value) -> bool {
    entry["msg"]
        .as_str()
        .is_some_and(|m| m.contains("Done. No output data sent"))
}

/// Each version's lines for each node outcome give the outcome DESIGN §5 gives.
#[test]
fn every_version_gives_each_outcome() {
    for version in VERSIONS {
        let got = diagnose(&fixture(version));
        let want = expected();
        for (i, ((what, ..), (g, w))) in EXPECTED.iter().zip(got.iter().zip(&want)).enumerate() {
            assert_eq!(g, w, "{version}, call {i} ({what})");
        }
        assert_eq!(got.len(), want.len(), "{version}: one diagnosis per call");
    }
}

/// The `Done. No output data sent` line changes no outcome: removing every one, or adding one
/// to every node run that lacks it (failed runs, and versions before v4 that never wrote it),
/// gives the same outcomes.
#[test]
fn the_done_line_alone_changes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let mut done_lines = 0;
    for version in VERSIONS {
        let dir = fixture(version);
        let without = scratch.path().join(format!("{version}-without"));
        rewrite_logs(&dir, &without, &|items| {
            items.into_iter().filter(|e| !is_done_line(e)).collect()
        });
        let with_everywhere = scratch.path().join(format!("{version}-with"));
        rewrite_logs(&dir, &with_everywhere, &|items| {
            let mut out = items.clone();
            let mut traces: Vec<String> = Vec::new();
            for e in &items {
                let trace = e["traceId"].as_str().unwrap_or_default().to_owned();
                let node = e["msg"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("handoverToCXone"));
                let has_done = items
                    .iter()
                    .any(|o| o["traceId"] == e["traceId"] && is_done_line(o));
                if node && !has_done && !traces.contains(&trace) {
                    let mut done = e.clone();
                    done["_id"] =
                        serde_json::json!(format!("{}-done", e["_id"].as_str().unwrap_or("x")));
                    done["type"] = serde_json::json!("info");
                    done["msg"] = serde_json::json!(
                        "handoverToCXone: Done. No output data sent to Voice / Interactions Panel channel."
                    );
                    out.push(done);
                    traces.push(trace);
                }
            }
            out
        });
        done_lines += std::fs::read_dir(dir.join("cognigy"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .map(|t| t.matches("Done. No output data sent").count())
            .sum::<usize>();
        let original = diagnose(&dir);
        assert_eq!(
            diagnose(&without),
            original,
            "{version} without the Done lines"
        );
        assert_eq!(
            diagnose(&with_everywhere),
            original,
            "{version} with Done lines added"
        );
    }
    assert!(done_lines > 0, "the fixtures hold Done lines to remove");
}

/// The fixtures are really each version's lines: the older error form, the API client's texts,
/// the validation lines and the Done texts are where the catalogue says, and some lines carry
/// no `meta.sessionId` (they reach their call through the ids in their text).
#[test]
fn fixtures_hold_each_versions_own_lines() {
    let logs = |version: &str| -> String {
        std::fs::read_dir(fixture(version).join("cognigy"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("logs"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    };
    for version in VERSIONS {
        let text = logs(version);
        let older_error = version.starts_with("v1") || version.starts_with("v2");
        assert_eq!(
            text.contains("Error signaling 'Escalate'"),
            older_error,
            "{version}"
        );
        let client = ["v5", "v6", "v7", "v8"]
            .iter()
            .any(|v| version.starts_with(v));
        assert_eq!(
            text.contains("CXone API Client: Error sending handover signal"),
            client,
            "{version}"
        );
        let validation = version.starts_with("v7") || version.starts_with("v8");
        assert_eq!(
            text.contains("Validation: Missing or invalid Action parameter"),
            validation,
            "{version}"
        );
        let done = !["v1", "v2", "v3"].iter().any(|v| version.starts_with(v));
        assert_eq!(
            text.contains("Done. No output data sent"),
            done,
            "{version}"
        );
        assert_eq!(
            text.contains("Interactions Panel"),
            version.starts_with("v8"),
            "{version}"
        );
        let page: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(version).join("cognigy/logs-001.json")).unwrap(),
        )
        .unwrap();
        let unsessioned = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["meta"].get("sessionId").is_none())
            .count();
        assert!(
            unsessioned > 0,
            "{version}: some lines without meta.sessionId"
        );
    }
}
