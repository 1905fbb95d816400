//! The drill-down pages for people: `/diagnoses` (recent diagnoses, filtered and paged, with
//! counts per reason) and `/contacts/{id}` (one call's outcome, the rule that decided it in plain
//! words, its evidence, and one timeline of what the diagnosis read), rendered on the server as
//! plain HTML that works without JavaScript.
//!
//! Every value that comes from the outside (tenant names, contact and session ids, log lines,
//! caller ids) goes through [`escape`], so a log line holding `<script>` shows as text. This
//! module renders only: it reads no store and serves no route (the server does both), and it
//! decides nothing.

use crate::engine::diagnosis::{Diagnosis, Fact, FactSource, Failure, Outcome, Reason};
use crate::store::{CognigySet, DiagnosisFilter, DiagnosisRow};
use chrono::{DateTime, SecondsFormat, Utc};
use std::fmt::Write;

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query parameter value (links built from filter values).
fn query_value(text: &str) -> String {
    crate::sources::http::percent_encode(text)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em;\
text-align:left;vertical-align:top}th{background:#f3f3f3}.failed{color:#b00020;font-weight:600}\
.handed_over,.contained{color:#1b5e20}.abandoned{color:#8a5a00}.decided{background:#fff3cd}\
nav a{margin-right:1em}form label{margin-right:1em}code{font-size:.95em}";

/// A whole page around `body`.
fn page(title: &str, telemetry_path: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title} - handover-exporter</title>\
         <style>{STYLE}</style></head>\n<body>\n<nav><a href=\"/\">handover-exporter</a>\
         <a href=\"/diagnoses\">Diagnoses</a><a href=\"/diagnoses?outcome=failed\">Failures</a>\
         <a href=\"{metrics}\">Metrics</a></nav>\n{body}</body></html>\n",
        title = escape(title),
        metrics = escape(telemetry_path),
    )
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One `<select>` of a label enum, the current value selected.
fn select<T: Copy + PartialEq>(
    name: &str,
    label: &str,
    all: &[T],
    current: Option<T>,
    text: fn(T) -> &'static str,
) -> String {
    let mut out = format!("<label>{label} <select name=\"{name}\"><option value=\"\">any</option>");
    for &value in all {
        let selected = if current == Some(value) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<option value=\"{v}\"{selected}>{v}</option>",
            v = text(value)
        );
    }
    out.push_str("</select></label>");
    out
}

/// What the `/diagnoses` page shows.
#[derive(Debug)]
pub struct DiagnosesView<'a> {
    pub rows: &'a [DiagnosisRow],
    pub filter: &'a DiagnosisFilter,
    /// Diagnoses per reason under the filter (its reason left out), most first.
    pub counts: &'a [(Reason, u64)],
    /// The page shown, from 0.
    pub page: usize,
    /// Whether an older page exists.
    pub has_more: bool,
    pub telemetry_path: &'a str,
}

/// The filter as query parameters (without the page), for links that keep it.
fn filter_query(filter: &DiagnosisFilter) -> String {
    let mut parts = Vec::new();
    if let Some(t) = &filter.tenant {
        parts.push(format!("tenant={}", query_value(t)));
    }
    if let Some(o) = filter.outcome {
        parts.push(format!("outcome={}", o.as_str()));
    }
    if let Some(f) = filter.failure {
        parts.push(format!("failure={}", f.as_str()));
    }
    if let Some(r) = filter.reason {
        parts.push(format!("reason={}", r.as_str()));
    }
    if let Some(s) = filter.since {
        parts.push(format!("since={}", query_value(&time(s))));
    }
    parts.push(format!("limit={}", filter.limit));
    parts.join("&")
}

/// The `/diagnoses` page.
pub fn diagnoses_page(view: &DiagnosesView<'_>) -> String {
    let filter = view.filter;
    let mut body = String::from("<h1>Diagnoses</h1>\n<form method=\"get\" action=\"/diagnoses\">");
    let _ = write!(
        body,
        "<label>Tenant <input name=\"tenant\" value=\"{}\" size=\"12\"></label>",
        escape(filter.tenant.as_deref().unwrap_or(""))
    );
    body.push_str(&select(
        "outcome",
        "Outcome",
        Outcome::ALL,
        filter.outcome,
        Outcome::as_str,
    ));
    body.push_str(&select(
        "failure",
        "Failure",
        Failure::ALL,
        filter.failure,
        Failure::as_str,
    ));
    body.push_str(&select(
        "reason",
        "Reason",
        Reason::ALL,
        filter.reason,
        Reason::as_str,
    ));
    let _ = writeln!(
        body,
        "<label>Since <input name=\"since\" value=\"{}\" placeholder=\"2026-03-20T09:00:00Z\" size=\"22\"></label>\
         <input type=\"hidden\" name=\"limit\" value=\"{}\"><button type=\"submit\">Filter</button></form>",
        escape(&filter.since.map(time).unwrap_or_default()),
        filter.limit
    );

    body.push_str("<h2>By reason</h2>\n");
    if view.counts.is_empty() {
        body.push_str("<p>No diagnoses match.</p>\n");
    } else {
        body.push_str(
            "<table><tr><th>reason</th><th>outcome</th><th>failure</th><th>diagnoses</th></tr>\n",
        );
        let mut narrowed = filter.clone();
        for &(reason, count) in view.counts {
            narrowed.reason = Some(reason);
            let _ = writeln!(
                body,
                "<tr><td><a href=\"/diagnoses?{q}\">{r}</a></td><td class=\"{o}\">{o}</td><td>{f}</td><td>{count}</td></tr>",
                q = escape(&filter_query(&narrowed)),
                r = reason.as_str(),
                o = reason.outcome().as_str(),
                f = reason.failure().map_or("", Failure::as_str),
            );
        }
        body.push_str("</table>\n");
    }

    let _ = writeln!(body, "<h2>Newest first (page {})</h2>", view.page + 1);
    if view.rows.is_empty() {
        body.push_str("<p>No diagnoses on this page.</p>\n");
    } else {
        body.push_str(
            "<table id=\"diagnoses\"><tr><th>diagnosed</th><th>tenant</th><th>contact</th><th>outcome</th>\
             <th>failure</th><th>reason</th><th>what happened</th></tr>\n",
        );
        for row in view.rows {
            let d = &row.diagnosis;
            let _ = writeln!(
                body,
                "<tr><td>{at}</td><td>{tenant}</td><td><a href=\"/contacts/{id}\">{id}</a></td>\
                 <td class=\"{o}\">{o}</td><td>{f}</td><td>{r}</td><td>{summary}</td></tr>",
                at = time(row.diagnosed_at),
                tenant = escape(&row.tenant),
                id = d.contact_id,
                o = d.outcome.as_str(),
                f = d.failure.map_or("", Failure::as_str),
                r = d.reason.as_str(),
                summary = escape(&d.summary),
            );
        }
        body.push_str("</table>\n");
    }
    let query = escape(&filter_query(filter));
    body.push_str("<p>");
    if view.page > 0 {
        let _ = write!(
            body,
            "<a href=\"/diagnoses?{query}&amp;page={}\">Newer</a> ",
            view.page - 1
        );
    }
    if view.has_more {
        let _ = write!(
            body,
            "<a href=\"/diagnoses?{query}&amp;page={}\">Older</a>",
            view.page + 1
        );
    }
    let _ = writeln!(
        body,
        "</p>\n<p>As JSON: <a href=\"/api/v1/diagnoses?{query}\">/api/v1/diagnoses</a></p>"
    );
    page("Diagnoses", view.telemetry_path, &body)
}

fn source_name(source: FactSource) -> &'static str {
    match source {
        FactSource::CxoneContact => "CXone contact",
        FactSource::CognigySession => "Cognigy session",
        FactSource::CognigyConversation => "Cognigy conversation",
        FactSource::CognigyAnalytics => "Cognigy analytics",
        FactSource::CognigyLog => "Cognigy log",
        FactSource::Rule => "rule",
    }
}

/// Seconds from the call's start, signed (`+12.3 s`, `-0.5 s`).
fn offset(from: DateTime<Utc>, at: DateTime<Utc>) -> String {
    let ms = (at - from).num_milliseconds();
    format!(
        "{}{:.1} s",
        if ms < 0 { "-" } else { "+" },
        ms.abs() as f64 / 1000.0
    )
}

fn timeline_row(out: &mut String, fact: &Fact, start: DateTime<Utc>, deciding: bool) {
    let (at, off) = match fact.at {
        Some(at) => (time(at), offset(start, at)),
        None => (String::new(), String::new()),
    };
    let _ = writeln!(
        out,
        "<tr{class}><td>{at}</td><td>{off}</td><td>{source}</td><td><code>{id}</code></td><td>{detail}{mark}</td></tr>",
        class = if deciding { " class=\"decided\"" } else { "" },
        source = source_name(fact.source),
        id = escape(&fact.id),
        detail = escape(&fact.detail.to_string()),
        mark = if deciding { " <strong>(decided the outcome)</strong>" } else { "" },
    );
}

/// The session's turns as timeline facts: what the caller and the bot said (not the words,
/// which the exporter does not keep) and how long each bot turn took.
fn turn_facts(session: &CognigySet) -> Vec<Fact> {
    let mut facts = Vec::new();
    for c in &session.conversations {
        let what = match (c.kind.as_str(), c.source.as_str()) {
            ("input", "user") if c.input_data.event.is_none() => "the caller spoke".to_owned(),
            ("output", "bot") => "the bot answered".to_owned(),
            (kind, source) => format!("{kind} from {source}"),
        };
        facts.push(Fact {
            source: FactSource::CognigyConversation,
            id: c.id.clone().unwrap_or_else(|| c.session_id.clone()),
            at: Some(c.timestamp),
            detail: what.into(),
        });
    }
    for a in &session.analytics {
        facts.push(Fact {
            source: FactSource::CognigyAnalytics,
            id: a.id.clone().unwrap_or_else(|| a.session_id.clone()),
            at: Some(a.timestamp),
            detail: format!("bot turn took {} ms", a.execution_time).into(),
        });
    }
    facts
}

/// The `/contacts/{id}` page of one diagnosis, with the turns of its session when the store
/// still holds them.
pub fn contact_page(
    row: &DiagnosisRow,
    session: Option<&CognigySet>,
    telemetry_path: &str,
) -> String {
    let d: &Diagnosis = &row.diagnosis;
    let e = &d.evidence;
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1>Contact {id}</h1>\n<p class=\"{o}\" id=\"outcome\">{o}{f} / {r}</p>\n\
         <p id=\"rule\">Rule {rule} of the diagnosis table decided it: {explain}.</p>",
        id = d.contact_id,
        o = d.outcome.as_str(),
        f = d
            .failure
            .map(|f| format!(" / {}", f.as_str()))
            .unwrap_or_default(),
        r = d.reason.as_str(),
        rule = d.rule,
        explain = escape(d.reason.explain()),
    );
    body.push_str("<h2>Evidence</h2>\n<table>\n");
    let mut field = |name: &str, value: String| {
        if !value.is_empty() {
            let _ = writeln!(body, "<tr><th>{name}</th><td>{}</td></tr>", escape(&value));
        }
    };
    field("tenant", row.tenant.clone());
    field("diagnosed at", time(row.diagnosed_at));
    field(
        "contacts of the call",
        e.contact_ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    );
    field("entered through the bot", e.bot_entry.to_string());
    field("Cognigy session", e.session_id.clone().unwrap_or_default());
    field(
        "session tied by",
        e.match_kind
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default(),
    );
    field(
        "contact id the session carried",
        e.carried_contact_id.clone().unwrap_or_default(),
    );
    field("call started", time(e.contact_started_at));
    field("call ended", time(e.contact_ended_at));
    field("escalated", e.escalated_at.map(time).unwrap_or_default());
    field("queued", e.queued_at.map(time).unwrap_or_default());
    field(
        "queue skill",
        e.queue_skill_id.map(|s| s.to_string()).unwrap_or_default(),
    );
    field(
        "escalation to queue",
        e.signal_to_queue_seconds
            .map(|s| format!("{s:.1} s"))
            .unwrap_or_default(),
    );
    field(
        "queue wait",
        e.queue_wait_seconds
            .map(|s| format!("{s:.1} s"))
            .unwrap_or_default(),
    );
    body.push_str("</table>\n<h2>Timeline</h2>\n");
    body.push_str(
        "<table id=\"timeline\"><tr><th>time</th><th>from call start</th><th>source</th><th>record</th><th>what</th></tr>\n",
    );
    // The timeline and the deciding facts, merged in time order; a deciding fact that is also on
    // the timeline is shown once, marked.
    let mut facts: Vec<(&Fact, bool)> = e
        .timeline
        .iter()
        .map(|f| (f, e.decided_by.contains(f)))
        .collect();
    for f in &e.decided_by {
        if !e.timeline.contains(f) {
            facts.push((f, true));
        }
    }
    let turns = session.map(turn_facts).unwrap_or_default();
    for f in &turns {
        // A turn already on the timeline (a Voice Gateway event, a handover request) stays once.
        if !facts
            .iter()
            .any(|(t, _)| t.id == f.id && t.source == f.source)
        {
            facts.push((f, false));
        }
    }
    facts.sort_by_key(|(f, _)| f.at);
    for (fact, deciding) in facts {
        timeline_row(&mut body, fact, e.contact_started_at, deciding);
    }
    body.push_str("</table>\n");
    let _ = writeln!(
        body,
        "<p>As JSON: <a href=\"/api/v1/contacts/{id}\">/api/v1/contacts/{id}</a>. Re-diagnose it live: \
         <code>handover-exporter diagnose {id}</code></p>",
        id = d.contact_id
    );
    page(&format!("Contact {}", d.contact_id), telemetry_path, &body)
}

/// The page for a contact without a recorded diagnosis (answered with 404).
pub fn contact_not_found_page(id: &str, telemetry_path: &str) -> String {
    let body = format!(
        "<h1>No diagnosis for contact {id}</h1>\n<p>The exporter has recorded no diagnosis for \
         <code>{id}</code>: it is not a bot contact, it is still pending, it was pruned after \
         <code>retention_hours</code>, or the id is wrong.</p>\n<p><a href=\"/diagnoses\">Recent diagnoses</a></p>\n",
        id = escape(id)
    );
    page("Not found", telemetry_path, &body)
}

/// A page saying the request was wrong (answered with 400).
pub fn bad_request_page(message: &str, telemetry_path: &str) -> String {
    let body = format!(
        "<h1>Bad request</h1>\n<p>{}</p>\n<p><a href=\"/diagnoses\">Recent diagnoses</a></p>\n",
        escape(message)
    );
    page("Bad request", telemetry_path, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Markup in outside text is shown as text, quotes included.
    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    /// Offsets from the call start are signed seconds with one decimal.
    #[test]
    fn offsets_are_signed_seconds() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        assert_eq!(
            offset(t0, t0 + chrono::Duration::milliseconds(12_340)),
            "+12.3 s"
        );
        assert_eq!(
            offset(t0, t0 - chrono::Duration::milliseconds(500)),
            "-0.5 s"
        );
    }
}
