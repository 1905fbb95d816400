//! Report: renders diagnoses for people (`--format text`) and for programs (`--format json`,
//! one JSON object per line), and picks the `diagnose` exit code (DESIGN §8).
//!
//! Rendering only: nothing here diagnoses, reads files or talks to an API.

use crate::engine::diagnosis::{Diagnosis, Fact, Outcome};
use crate::sources::cxone::wire::StateHistory;
use std::fmt::Write as _;

/// Output formats of `diagnose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Exit code: 0 when no failure was found, 1 when one was, 2 on error (which wins).
pub fn exit_code(diagnoses: &[Diagnosis], had_error: bool) -> u8 {
    if had_error {
        2
    } else if diagnoses.iter().any(|d| d.outcome == Outcome::Failed) {
        1
    } else {
        0
    }
}

/// One JSON line: `contact_id`, `outcome`, `failure`, `reason`, `rule`, `summary`, `evidence`.
pub fn json_line(d: &Diagnosis) -> String {
    // Serializing a tree of strings, numbers and timestamps cannot fail.
    serde_json::to_string(d).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// A readable report of one diagnosis, with optional CXone state history.
pub fn text(d: &Diagnosis, history: Option<&StateHistory>) -> String {
    let mut out = String::new();
    let verdict = match d.failure {
        Some(f) => format!("{} / {} / {}", d.outcome, f, d.reason),
        None => format!("{} / {}", d.outcome, d.reason),
    };
    let e = &d.evidence;
    let _ = writeln!(out, "contact {}: {verdict} (rule {})", d.contact_id, d.rule);
    let _ = writeln!(out, "  why:        {}", d.summary);
    let ids: Vec<String> = e.contact_ids.iter().map(i64::to_string).collect();
    let _ = writeln!(
        out,
        "  contacts:   {} (bot entry: {})",
        ids.join(", "),
        if e.bot_entry { "yes" } else { "no" }
    );
    let _ = writeln!(
        out,
        "  call:       {} .. {}",
        e.contact_started_at.to_rfc3339(),
        e.contact_ended_at.to_rfc3339()
    );
    match (&e.session_id, e.match_kind) {
        (Some(sid), Some(kind)) => {
            let carried = e.carried_contact_id.as_deref().unwrap_or("none");
            let _ = writeln!(
                out,
                "  session:    {sid} (matched by {}; carried contact id {carried})",
                kind.as_str()
            );
        }
        _ => {
            let _ = writeln!(out, "  session:    none");
        }
    }
    if let Some(t) = e.escalated_at {
        let _ = writeln!(out, "  escalated:  {}", t.to_rfc3339());
    }
    if let Some(t) = e.queued_at {
        let skill = e.queue_skill_id.map(|s| s.to_string()).unwrap_or_default();
        let _ = writeln!(out, "  queued:     {} (skill {skill})", t.to_rfc3339());
    }
    if let Some(s) = e.signal_to_queue_seconds {
        let _ = writeln!(out, "  signal->queue: {s:.1} s");
    }
    if let Some(s) = e.queue_wait_seconds {
        let _ = writeln!(out, "  queue wait: {s:.1} s");
    }
    let _ = writeln!(out, "  decided by:");
    for f in &e.decided_by {
        let _ = writeln!(out, "    {}", fact_line(f));
    }
    if !e.timeline.is_empty() {
        let _ = writeln!(out, "  timeline:");
        for f in &e.timeline {
            let _ = writeln!(out, "    {}", fact_line(f));
        }
    }
    if let Some(h) = history.filter(|h| !h.contact_state_history.is_empty()) {
        let _ = writeln!(out, "  state history:");
        for s in &h.contact_state_history {
            let at = s.start_date.map(|t| t.to_rfc3339()).unwrap_or_default();
            let _ = writeln!(
                out,
                "    {at}  {} (skill {}, agent {}, {})",
                s.contact_state_name, s.skill_id, s.agent_id, s.duration
            );
        }
    }
    out
}

fn fact_line(f: &Fact) -> String {
    let at = f.at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into());
    let source = serde_json::to_value(f.source)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!("{at}  {source} {}: {}", f.id, f.detail)
}
