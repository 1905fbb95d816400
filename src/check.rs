//! `check`: a live preflight of one tenant's configuration against its real APIs, one pass / warn
//! / fail line per step with a hint for each that is not a pass.
//!
//! The steps follow what a first hour with a tenant needs to know: CXone OIDC discovery, token and
//! Reporting API; completed voice contacts in the look-back and whether the configured bot-entry
//! points of contact and skills occur in them; Cognigy OData reachable, `$select` honoured, the
//! record id field; sessions seen; how sessions carry the CXone contact id (Analytics custom
//! field, SIP header, neither); how many bot contacts correlate; project logs readable, the logs
//! `filter` honoured, which CXone extension version's lines are present and whether the
//! configured log patterns read them; how late Cognigy writes its records (watched for
//! `--watch-seconds`) against `late_window_seconds`; and the share of the Cognigy quota the
//! daemon would use at the observed volume.
//!
//! Every read goes through the existing clients and the shared HTTP layer; correlation and log
//! classification are the daemon's own ([`crate::correlation`], [`crate::logline`]). This module
//! judges configuration, not calls: it keeps no state, exports no metrics and writes nothing.

use crate::config::{Config, TenantConfig};
use crate::correlation::{correlate, usable_contact_id, Inputs, MatchKind};
use crate::logline::classify;
use crate::sources::cognigy::wire::{Analytics, Conversation, LogEntry, Session};
use crate::sources::cognigy::CognigyClient;
use crate::sources::cxone::wire::CompletedContact;
use crate::sources::cxone::CxoneClient;
use crate::sources::http::{CodeClass, Endpoint, RequestObserver, RetryCause, Source, SourceError};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// The outcome of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    /// Not run: it needs what an earlier failed step should have given, or was switched off.
    Skip,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Stable name, e.g. `cxone.token`.
    pub step: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it (every warn and fail has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// How far back and how long `check` looks.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// How far back contacts, sessions and logs are read.
    pub lookback: Duration,
    /// How long to watch for Cognigy records that appear late (0: the step is skipped).
    pub watch: std::time::Duration,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            lookback: Duration::hours(2),
            watch: std::time::Duration::from_secs(60),
        }
    }
}

/// The whole report of one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tenant: String,
    pub status: Status,
    pub steps: Vec<Step>,
}

impl Report {
    /// 0 when every step passed (or was switched off), 1 on any warning or failure.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            Status::Pass | Status::Skip => 0,
            Status::Warn | Status::Fail => 1,
        }
    }
}

/// The steps in report order (a step not reached is reported as skipped).
const STEPS: &[&str] = &[
    "cxone.discovery",
    "cxone.token",
    "cxone.reporting",
    "cxone.contacts",
    "cxone.bot_entry",
    "cognigy.odata",
    "cognigy.odata_select",
    "cognigy.sessions",
    "correlation.contact_id",
    "correlation.bot_contacts",
    "cognigy.logs",
    "cognigy.logs_filter",
    "cognigy.extension",
    "cognigy.record_delay",
    "cognigy.quota",
];

/// Collects the report, filling steps not reached with a skip naming what blocked them.
struct Steps {
    steps: BTreeMap<&'static str, Step>,
}

impl Steps {
    fn put(&mut self, step: &'static str, status: Status, detail: String, hint: Option<String>) {
        self.steps.insert(
            step,
            Step {
                step,
                status,
                detail,
                hint,
            },
        );
    }
    fn pass(&mut self, step: &'static str, detail: String) {
        self.put(step, Status::Pass, detail, None);
    }
    fn warn(&mut self, step: &'static str, detail: String, hint: String) {
        self.put(step, Status::Warn, detail, Some(hint));
    }
    fn fail(&mut self, step: &'static str, detail: String, hint: String) {
        self.put(step, Status::Fail, detail, Some(hint));
    }
    fn skip(&mut self, step: &'static str, why: &str) {
        self.put(step, Status::Skip, format!("not run: {why}"), None);
    }
    fn skip_rest(&mut self, steps: &[&'static str], why: &str) {
        for step in steps {
            if !self.steps.contains_key(step) {
                self.skip(step, why);
            }
        }
    }
    fn into_report(mut self, tenant: &str) -> Report {
        self.skip_rest(STEPS, "an earlier step failed");
        let steps: Vec<Step> = STEPS.iter().filter_map(|s| self.steps.remove(s)).collect();
        let status = steps
            .iter()
            .map(|s| s.status)
            .filter(|s| *s != Status::Skip)
            .max()
            .unwrap_or(Status::Pass);
        Report {
            tenant: tenant.to_owned(),
            status,
            steps,
        }
    }
}

/// Counts requests per source (the volume estimate's own cost) and keeps the first data body of
/// each OData collection (to see which id field the server sends).
#[derive(Default)]
struct Watcher {
    first_bodies: Mutex<HashMap<Endpoint, Vec<u8>>>,
}

impl RequestObserver for Watcher {
    fn observe_request(&self, _: Endpoint, _: CodeClass, _: std::time::Duration) {}
    fn observe_retry(&self, _: Source, _: RetryCause) {}
    fn observe_body(&self, endpoint: Endpoint, body: &[u8]) {
        let odata = matches!(
            endpoint,
            Endpoint::CognigySessions | Endpoint::CognigyConversations | Endpoint::CognigyAnalytics
        );
        if !odata {
            return;
        }
        // Only a page with records tells the id field.
        let has_records = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                v.get("value")
                    .and_then(|a| a.as_array())
                    .map(|a| !a.is_empty())
            })
            .unwrap_or(false);
        if !has_records {
            return;
        }
        if let Ok(mut bodies) = self.first_bodies.lock() {
            bodies.entry(endpoint).or_insert_with(|| body.to_vec());
        }
    }
}

impl Watcher {
    /// The id field (`id` or `_id`) of the first record of `endpoint`'s first non-empty page.
    fn id_field(&self, endpoint: Endpoint) -> Option<&'static str> {
        let bodies = self.first_bodies.lock().ok()?;
        let value: serde_json::Value = serde_json::from_slice(bodies.get(&endpoint)?).ok()?;
        let first = value.get("value")?.as_array()?.first()?.as_object()?;
        if first.contains_key("id") {
            Some("id")
        } else if first.contains_key("_id") {
            Some("_id")
        } else {
            Some("none")
        }
    }
}

/// A short, secret-free account of an API error for a detail line.
fn describe(error: &SourceError) -> String {
    error.to_string()
}

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

/// Runs every step against `tenant`'s APIs.
pub async fn check(config: &Config, tenant: &TenantConfig, options: CheckOptions) -> Report {
    let mut steps = Steps {
        steps: BTreeMap::new(),
    };
    let watcher = Arc::new(Watcher::default());
    let observer: Arc<dyn RequestObserver> = watcher.clone();
    let started = Utc::now();
    let since = started - options.lookback;
    let hours = options.lookback.num_minutes() as f64 / 60.0;

    // CXone: one read exercises discovery, the token and the Reporting API in turn.
    let contacts: Vec<CompletedContact> = match CxoneClient::new(&tenant.cxone, observer.clone()) {
        Err(e) => {
            steps.fail(
                "cxone.discovery",
                format!("the CXone client cannot be set up: {}", describe(&e)),
                "check tenant.cxone.issuer and api_endpoint (full https:// URLs)".into(),
            );
            Vec::new()
        }
        Ok(cxone) => match cxone
            .completed_contacts(since, tenant.cxone.max_pages)
            .await
        {
            Ok(batch) => {
                steps.pass(
                    "cxone.discovery",
                    format!(
                        "{}/.well-known/openid-configuration names the token endpoint",
                        tenant.cxone.issuer.trim_end_matches('/')
                    ),
                );
                steps.pass(
                    "cxone.token",
                    "the access key and the application client got a token".into(),
                );
                steps.pass(
                    "cxone.reporting",
                    format!(
                        "contacts/completed answered ({} page(s){})",
                        batch.pages,
                        if batch.truncated {
                            ", stopped at max_pages"
                        } else {
                            ""
                        }
                    ),
                );
                batch.contacts
            }
            Err(e) => {
                cxone_failure(&mut steps, tenant, &e);
                Vec::new()
            }
        },
    };
    let cxone_ok = steps
        .steps
        .get("cxone.reporting")
        .is_some_and(|s| s.status == Status::Pass);
    if cxone_ok {
        contacts_steps(&mut steps, tenant, &contacts, hours);
    }

    // Cognigy OData: the three collections the correlation reads.
    let cognigy = match CognigyClient::new(&tenant.cognigy, observer.clone()) {
        Ok(c) => c,
        Err(e) => {
            steps.fail(
                "cognigy.odata",
                format!("the Cognigy client cannot be set up: {}", describe(&e)),
                "check tenant.cognigy.odata_base_url and api_base_url (full https:// URLs)".into(),
            );
            return steps.into_report(&tenant.name);
        }
    };
    let window = Duration::seconds(tenant.rules.correlation_window_seconds as i64);
    let pages = tenant.cognigy.max_pages;
    let sessions_read_at = Utc::now();
    let (sessions, conversations, analytics) = tokio::join!(
        cognigy.sessions_since(since - window, pages),
        cognigy.conversations_since(since - window, pages),
        cognigy.analytics_since(since - window, pages),
    );
    let (sessions, conversations, analytics) = match (sessions, conversations, analytics) {
        (Ok(s), Ok(c), Ok(a)) => {
            steps.pass(
                "cognigy.odata",
                format!(
                    "Sessions, Conversations and Analytics answered ({} + {} + {} page(s){})",
                    s.pages,
                    c.pages,
                    a.pages,
                    if s.truncated || c.truncated || a.truncated {
                        ", stopped at max_pages"
                    } else {
                        ""
                    }
                ),
            );
            (s.records, c.records, a.records)
        }
        (s, c, a) => {
            let error = [s.err(), c.err(), a.err()].into_iter().flatten().next();
            let detail = error.as_ref().map(describe).unwrap_or_default();
            let hint = match error.as_ref().and_then(SourceError::status) {
                Some(401 | 403) => {
                    "the API key is refused: create one under My Profile > API Keys \
                                    in Cognigy.AI (a user with access to the project's OData \
                                    analytics) and set api_key_file or api_key_env"
                        .to_owned()
                }
                Some(404) => "check odata_base_url: it ends in the OData version, e.g. \
                              https://odata-app.cognigy.ai/v2.4"
                    .to_owned(),
                _ => "check odata_base_url and that this host can reach it".to_owned(),
            };
            steps.fail("cognigy.odata", detail, hint);
            steps.skip_rest(
                &[
                    "cognigy.odata_select",
                    "cognigy.sessions",
                    "correlation.contact_id",
                    "correlation.bot_contacts",
                ],
                "Cognigy OData did not answer",
            );
            (Vec::new(), Vec::new(), Vec::new())
        }
    };
    let odata_ok = steps
        .steps
        .get("cognigy.odata")
        .is_some_and(|s| s.status == Status::Pass);
    if odata_ok {
        select_step(&mut steps, tenant, &cognigy, &watcher, !sessions.is_empty());
        sessions_step(&mut steps, tenant, &sessions, hours);
    }

    // Logs: readable, filtered, whose lines.
    let logs = logs_steps(&mut steps, tenant, &cognigy, since).await;

    if odata_ok && !sessions.is_empty() {
        contact_id_step(&mut steps, tenant, &sessions, &conversations, &analytics);
        if cxone_ok {
            bot_contacts_step(
                &mut steps,
                tenant,
                Inputs {
                    contacts: &contacts,
                    sessions: &sessions,
                    conversations: &conversations,
                    analytics: &analytics,
                    logs: &logs,
                },
                started,
            );
        }
    }
    if !cxone_ok {
        steps.skip_rest(&["correlation.bot_contacts"], "CXone did not answer");
    }

    // Late records: what appears during the watch.
    if !odata_ok {
        steps.skip("cognigy.record_delay", "Cognigy OData did not answer");
    } else if options.watch.is_zero() {
        steps.skip("cognigy.record_delay", "--watch-seconds 0");
    } else {
        let known: HashSet<String> = sessions.iter().map(|s| s.session_id.clone()).collect();
        record_delay_step(
            &mut steps,
            tenant,
            &cognigy,
            options.watch,
            sessions_read_at,
            &known,
        )
        .await;
    }

    if odata_ok {
        quota_step(
            &mut steps,
            config,
            tenant,
            Volume {
                hours,
                sessions: sessions.len(),
                conversations: conversations.len(),
                analytics: analytics.len(),
                log_lines: logs.len(),
            },
        );
    }
    steps.into_report(&tenant.name)
}

/// Which of the three CXone steps failed, by the endpoint of the error.
fn cxone_failure(steps: &mut Steps, tenant: &TenantConfig, e: &SourceError) {
    let detail = describe(e);
    let issuer = tenant.cxone.issuer.trim_end_matches('/');
    match e.endpoint() {
        Endpoint::CxoneOpenidConfiguration => steps.fail(
            "cxone.discovery",
            detail,
            format!(
                "{issuer}/.well-known/openid-configuration must answer: set tenant.cxone.issuer \
                 to your CXone environment's issuer, e.g. https://cxone.niceincontact.com"
            ),
        ),
        Endpoint::CxoneToken | Endpoint::CxoneConfiguration => {
            steps.pass(
                "cxone.discovery",
                format!("{issuer}/.well-known/openid-configuration names the token endpoint"),
            );
            let hint = if e.endpoint() == Endpoint::CxoneConfiguration {
                "the API host could not be discovered: set tenant.cxone.api_endpoint to your \
                 area's API host (e.g. https://api-na1.niceincontact.com)"
                    .to_owned()
            } else {
                "the token endpoint refused the credentials: check access_key_id and \
                 access_key_secret (an access key of a CXone user, My Profile > Access Keys), \
                 client_id and client_secret (the registered application) and client_auth \
                 (basic or form); docs/setup.md, CXone"
                    .to_owned()
            };
            steps.fail("cxone.token", detail, hint);
        }
        _ => {
            steps.pass(
                "cxone.discovery",
                format!("{issuer}/.well-known/openid-configuration names the token endpoint"),
            );
            steps.pass("cxone.token", "a token was issued".into());
            let hint = match e.status() {
                Some(401 | 403) => "the token works but the Reporting API refuses it: give the \
                                    access key's user the Reporting API permissions (docs/setup.md, \
                                    CXone)"
                    .to_owned(),
                _ => "check tenant.cxone.api_endpoint and api_version (v30.0 or later)".to_owned(),
            };
            steps.fail("cxone.reporting", detail, hint);
        }
    }
    steps.skip_rest(
        &[
            "cxone.discovery",
            "cxone.token",
            "cxone.reporting",
            "cxone.contacts",
            "cxone.bot_entry",
        ],
        "CXone did not answer",
    );
}

/// Completed voice contacts in the look-back, and the bot entry points among them.
fn contacts_steps(
    steps: &mut Steps,
    tenant: &TenantConfig,
    contacts: &[CompletedContact],
    hours: f64,
) {
    let voice: Vec<&CompletedContact> = contacts
        .iter()
        .filter(|c| {
            c.media_type_id
                .map_or(true, |m| m == crate::correlation::MEDIA_TYPE_PHONE)
        })
        .collect();
    if voice.is_empty() {
        steps.warn(
            "cxone.contacts",
            format!("no completed voice contact in the last {hours:.1} h"),
            "run check at a busier time or with a longer --lookback-hours; if calls did come \
             in, the access key's user may not see this business unit's contacts"
                .into(),
        );
        steps.skip("cxone.bot_entry", "no contact to look at");
        return;
    }
    steps.pass(
        "cxone.contacts",
        format!(
            "{} completed voice contact(s) in the last {hours:.1} h",
            voice.len()
        ),
    );
    let rules = &tenant.rules;
    let mut pocs: BTreeMap<i64, (String, usize)> = BTreeMap::new();
    let mut skills: BTreeMap<i64, (String, usize)> = BTreeMap::new();
    for c in &voice {
        let e = pocs
            .entry(c.point_of_contact_id)
            .or_insert_with(|| (c.point_of_contact_name.clone(), 0));
        e.1 += 1;
        let e = skills
            .entry(c.skill_id)
            .or_insert_with(|| (c.skill_name.clone(), 0));
        e.1 += 1;
    }
    let seen = |map: &BTreeMap<i64, (String, usize)>, id: &i64| map.get(id).map_or(0, |e| e.1);
    let busiest = |map: &BTreeMap<i64, (String, usize)>| {
        let mut all: Vec<(&i64, &(String, usize))> = map.iter().collect();
        all.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(b.0)));
        all.iter()
            .take(5)
            .map(|(id, (name, n))| format!("{id} {name:?} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let configured: Vec<String> = rules
        .bot_entry_points_of_contact
        .iter()
        .map(|id| format!("point of contact {id}: {}", seen(&pocs, id)))
        .chain(
            rules
                .bot_entry_skills
                .iter()
                .map(|id| format!("skill {id}: {}", seen(&skills, id))),
        )
        .collect();
    let listing = format!(
        "busiest points of contact: {}; busiest skills: {}",
        busiest(&pocs),
        busiest(&skills)
    );
    let handover: Vec<String> = rules
        .handover_skills
        .iter()
        .map(|id| format!("{id}: {}", seen(&skills, id)))
        .collect();
    let handover_text = if handover.is_empty() {
        "no handover_skills configured (rule 9 off)".to_owned()
    } else {
        format!("handover skills seen: {}", handover.join(", "))
    };
    if configured.is_empty() {
        steps.fail(
            "cxone.bot_entry",
            format!("no bot_entry_points_of_contact or bot_entry_skills configured; {listing}"),
            "list the point of contact the callers dial (or the skill that routes to the bot) in \
             [tenant.rules] bot_entry_points_of_contact / bot_entry_skills (docs/setup.md)"
                .into(),
        );
        return;
    }
    let missing: Vec<&String> = configured.iter().filter(|s| s.ends_with(": 0")).collect();
    let detail = format!("{}; {handover_text}", configured.join(", "));
    if missing.len() == configured.len() {
        steps.fail(
            "cxone.bot_entry",
            format!("no contact entered a configured bot entry: {detail}; {listing}"),
            "the configured ids never occur in the traffic: pick the bot's point of contact or \
             skill from the busiest ones listed (docs/setup.md, bot_entry)"
                .into(),
        );
    } else if !missing.is_empty() {
        steps.warn(
            "cxone.bot_entry",
            format!("some configured bot entries saw no contact: {detail}"),
            "remove ids that are no longer used, or run check when they take calls".into(),
        );
    } else {
        steps.pass("cxone.bot_entry", detail);
    }
}

/// `$select` and the record id field.
fn select_step(
    steps: &mut Steps,
    tenant: &TenantConfig,
    cognigy: &CognigyClient,
    watcher: &Watcher,
    any_records: bool,
) {
    let id = watcher.id_field(Endpoint::CognigySessions);
    let id_text = match id {
        Some("none") => "records carry no id field".to_owned(),
        Some(field) => format!("records carry `{field}`"),
        None => "no record to see the id field".to_owned(),
    };
    if !tenant.cognigy.odata_select {
        steps.pass(
            "cognigy.odata_select",
            format!("$select off by configuration (whole records are read); {id_text}"),
        );
        return;
    }
    let dropped: Vec<&str> = cognigy
        .odata_select_on()
        .iter()
        .filter(|(_, on)| !on)
        .map(|(name, _)| *name)
        .collect();
    if dropped.is_empty() {
        let confirmed = if any_records {
            "$select honoured"
        } else {
            "$select accepted (no record yet to confirm it)"
        };
        steps.pass("cognigy.odata_select", format!("{confirmed}; {id_text}"));
    } else {
        let expected = if tenant.cognigy.odata_base_url.contains("v2.4") {
            "`id` (v2.4)"
        } else {
            "`_id` (before v2.4)"
        };
        steps.warn(
            "cognigy.odata_select",
            format!(
                "the server did not serve $select for {}: whole records are read (about three \
                 times the bytes); {id_text}, the URL's version expects {expected}",
                dropped.join(", ")
            ),
            "nothing breaks; if the records carry `_id` on a v2.4 URL, the server is older than \
             its URL says: set odata_base_url to its real version, or odata_select = false to \
             skip the failed first attempt"
                .into(),
        );
    }
}

/// Sessions of the project in the look-back.
fn sessions_step(steps: &mut Steps, tenant: &TenantConfig, sessions: &[Session], hours: f64) {
    if sessions.is_empty() {
        steps.fail(
            "cognigy.sessions",
            format!(
                "no Sessions record of project {} in the last {hours:.1} h",
                tenant.cognigy.project_id
            ),
            "check project_id (the id in the project's URL in Cognigy.AI) and that the API key's \
             user belongs to the project's organisation; recent sessions appear only after \
             Cognigy has written them"
                .into(),
        );
        steps.skip_rest(
            &["correlation.contact_id", "correlation.bot_contacts"],
            "no Cognigy session",
        );
    } else {
        steps.pass(
            "cognigy.sessions",
            format!(
                "{} session(s) of project {} in the last {hours:.1} h",
                sessions.len(),
                tenant.cognigy.project_id
            ),
        );
    }
}

/// How sessions carry the CXone contact id: custom field, SIP header, neither.
fn contact_id_step(
    steps: &mut Steps,
    tenant: &TenantConfig,
    sessions: &[Session],
    conversations: &[Conversation],
    analytics: &[Analytics],
) {
    let field = tenant.rules.contact_id_field;
    let custom: HashSet<&str> = analytics
        .iter()
        .filter(|a| a.custom(field).and_then(usable_contact_id).is_some())
        .map(|a| a.session_id.as_str())
        .collect();
    let header: HashSet<&str> = conversations
        .iter()
        .filter(|c| {
            c.input_data
                .master_contact_id
                .as_deref()
                .or(c.input_data.spawned_contact_id.as_deref())
                .and_then(usable_contact_id)
                .is_some()
        })
        .map(|c| c.session_id.as_str())
        .collect();
    let ids: HashSet<&str> = sessions.iter().map(|s| s.session_id.as_str()).collect();
    let total = ids.len().max(1);
    let by_custom = ids.iter().filter(|s| custom.contains(*s)).count();
    let by_header = ids
        .iter()
        .filter(|s| !custom.contains(*s) && header.contains(*s))
        .count();
    let neither = ids.len() - by_custom - by_header;
    let pct = |n: usize| 100.0 * n as f64 / total as f64;
    let detail = format!(
        "of {} session(s): custom{field} {:.0} %, SIP header only {:.0} %, neither {:.0} %",
        ids.len(),
        pct(by_custom),
        pct(by_header),
        pct(neither)
    );
    let flow_change = format!(
        "make correlation exact: in the Cognigy flow, copy the CXone master contact id (the \
         X-InContact-MasterId SIP header) into Analytics custom field custom{field} with a Code \
         or Set Analytics node at the start of the call (docs/setup.md, the flow change); \
         without it sessions are matched by caller number and time, which fails for hidden or \
         shared numbers"
    );
    if by_custom > 0 {
        steps.pass("correlation.contact_id", detail);
    } else if by_header > 0 {
        steps.warn(
            "correlation.contact_id",
            format!("{detail}: no session carries the id in custom{field}"),
            flow_change,
        );
    } else {
        steps.fail(
            "correlation.contact_id",
            format!("{detail}: no session carries the contact id"),
            flow_change,
        );
    }
}

/// The share of bot contacts (old enough for their session to be written) that correlate.
fn bot_contacts_step(
    steps: &mut Steps,
    tenant: &TenantConfig,
    inputs: Inputs<'_>,
    now: DateTime<Utc>,
) {
    let cases = correlate(inputs, &tenant.rules);
    let due = now - Duration::seconds(tenant.rules.cognigy_lag_seconds as i64);
    let mut total = 0usize;
    let mut by_kind: BTreeMap<MatchKind, usize> = BTreeMap::new();
    for case in cases.iter().filter(|c| c.bot_entry && c.ended_at() <= due) {
        total += 1;
        if let Some(session) = &case.session {
            *by_kind.entry(session.match_kind).or_insert(0) += 1;
        }
    }
    if total == 0 {
        steps.skip(
            "correlation.bot_contacts",
            &format!(
                "no bot contact ended more than cognigy_lag_seconds ({}) ago",
                tenant.rules.cognigy_lag_seconds
            ),
        );
        return;
    }
    let matched: usize = by_kind.values().sum();
    let share = 100.0 * matched as f64 / total as f64;
    let kinds: Vec<String> = by_kind
        .iter()
        .map(|(k, n)| format!("{} {n}", k.as_str()))
        .collect();
    let detail = format!(
        "{matched} of {total} bot contact(s) ended more than cognigy_lag_seconds ago have their \
         session ({share:.0} %{}{})",
        if kinds.is_empty() { "" } else { ": " },
        kinds.join(", ")
    );
    let hint = "contacts without a session are counted as no_bot_session: check that the bot \
                entry ids route to this Cognigy project, that the flow change is in (custom \
                field), and that cognigy_lag_seconds covers how late sessions are written"
        .to_owned();
    if share >= 90.0 {
        steps.pass("correlation.bot_contacts", detail);
    } else if share >= 50.0 {
        steps.warn("correlation.bot_contacts", detail, hint);
    } else {
        steps.fail("correlation.bot_contacts", detail, hint);
    }
}

/// Reads the project logs as the daemon does (each filter term in turn) and judges them.
async fn logs_steps(
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
fn extension_step(steps: &mut Steps, tenant: &TenantConfig, entries: &[LogEntry]) {
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

/// Watches for session records that appear during `watch` and compares how late they were with
/// `late_window_seconds`.
async fn record_delay_step(
    steps: &mut Steps,
    tenant: &TenantConfig,
    cognigy: &CognigyClient,
    watch: std::time::Duration,
    first_read_at: DateTime<Utc>,
    known: &HashSet<String>,
) {
    let late_window = Duration::seconds(tenant.cognigy.late_window.as_secs() as i64);
    let elapsed = (Utc::now() - first_read_at).to_std().unwrap_or_default();
    if let Some(rest) = watch.checked_sub(elapsed) {
        tokio::time::sleep(rest).await;
    }
    // Far enough back for records as late as twice the window.
    let from = first_read_at - late_window - late_window;
    let read_at = Utc::now();
    let batch = match cognigy.sessions_since(from, tenant.cognigy.max_pages).await {
        Ok(b) => b,
        Err(e) => {
            steps.fail(
                "cognigy.record_delay",
                describe(&e),
                "Cognigy OData stopped answering during the watch; run check again".into(),
            );
            return;
        }
    };
    let new: Vec<&Session> = batch
        .records
        .iter()
        .filter(|s| !known.contains(&s.session_id))
        .collect();
    let window_s = late_window.num_seconds();
    if new.is_empty() {
        steps.warn(
            "cognigy.record_delay",
            format!(
                "no session record appeared during the {} s watch; nothing to measure",
                watch.as_secs()
            ),
            "run check at a busier time or with a longer --watch-seconds to see how late \
             Cognigy writes its records"
                .into(),
        );
        return;
    }
    // A record that appeared between the two reads was written at least `first_read_at - own
    // time` and at most `read_at - own time` after its own time.
    let at_least = new
        .iter()
        .map(|s| (first_read_at - s.started_at).num_seconds())
        .max()
        .unwrap_or(0);
    let at_most = new
        .iter()
        .map(|s| (read_at - s.started_at).num_seconds())
        .max()
        .unwrap_or(0);
    let late = new
        .iter()
        .filter(|s| first_read_at - s.started_at > late_window)
        .count();
    let detail = format!(
        "{} session record(s) appeared during the {} s watch, the latest {at_least}-{at_most} s \
         after its own time (startedAt); late_window_seconds = {window_s}",
        new.len(),
        watch.as_secs()
    );
    if late > 0 {
        steps.warn(
            "cognigy.record_delay",
            format!("{detail}: {late} appeared later than the window"),
            format!(
                "records written later than late_window_seconds are read only if a sweep still \
                 covers them: raise [tenant.cognigy] late_window_seconds to at least {at_most} \
                 (and [tenant.rules] cognigy_lag_seconds with it)"
            ),
        );
    } else {
        steps.pass("cognigy.record_delay", detail);
    }
}

/// What the look-back held, for the quota estimate.
#[derive(Debug, Clone, Copy)]
struct Volume {
    hours: f64,
    sessions: usize,
    conversations: usize,
    analytics: usize,
    log_lines: usize,
}

/// Pages one keyset read of `records` needs at `page`: a read ends on a short page.
fn pages_for(records: f64, page: u32) -> f64 {
    (records / f64::from(page.max(1))).floor() + 1.0
}

/// The Cognigy requests the daemon would make per quota window at `volume`, as the pipeline
/// reads (api/cognigy.md §1.5: the quota is per IP address, shared by OData and the logs API):
/// every poll one keyset pass per collection over `poll_interval + overlap`, one logs pass per
/// filter term over `poll_interval + 60 s`, and every `late_sweep_interval` a sweep over
/// `late_window + late_sweep_interval`.
pub fn requests_per_quota_window(
    config: &Config,
    tenant: &TenantConfig,
    per_hour: [f64; 4],
) -> f64 {
    let [sessions, conversations, analytics, log_lines] = per_hour;
    let cg = &tenant.cognigy;
    let quota_window = cg.http.quota_window.as_secs_f64().max(1.0);
    let poll = config.poll_interval.as_secs_f64().max(1.0);
    let pass = (poll + config.overlap.as_secs_f64()) / 3600.0;
    let page = cg.odata_page_size;
    let per_pass = pages_for(sessions * pass, page)
        + pages_for(conversations * pass, page)
        + pages_for(analytics * pass, page);
    let terms = cg.logs_filter.len().max(1) as f64;
    let logs_pass = (poll + 60.0) / 3600.0;
    let logs = terms
        * pages_for(
            log_lines * logs_pass / terms,
            cg.logs_page_size.clamp(1, 100),
        );
    let sweep_span = (cg.late_window.as_secs_f64() + cg.late_sweep_interval.as_secs_f64()) / 3600.0;
    let sweep = pages_for(sessions * sweep_span, page)
        + pages_for(conversations * sweep_span, page)
        + pages_for(analytics * sweep_span, page);
    let sweeps_per_window = quota_window / cg.late_sweep_interval.as_secs_f64().max(1.0);
    (quota_window / poll) * (per_pass + logs) + sweeps_per_window * sweep
}

/// The expected share of the Cognigy quota at the observed volume.
fn quota_step(steps: &mut Steps, config: &Config, tenant: &TenantConfig, volume: Volume) {
    let hours = volume.hours.max(1.0 / 60.0);
    let rate = |n: usize| n as f64 / hours;
    let per_hour = [
        rate(volume.sessions),
        rate(volume.conversations),
        rate(volume.analytics),
        rate(volume.log_lines),
    ];
    let requests = requests_per_quota_window(config, tenant, per_hour);
    let quota = f64::from(tenant.cognigy.http.quota_requests.max(1));
    let share = 100.0 * requests / quota;
    let detail = format!(
        "at {:.0} sessions, {:.0} Conversations, {:.0} Analytics records and {:.0} handover log \
         lines per hour, polling every {} s uses about {requests:.0} of {quota:.0} requests per \
         {} s ({share:.0} % of the Cognigy quota, this tenant alone)",
        per_hour[0],
        per_hour[1],
        per_hour[2],
        per_hour[3],
        config.poll_interval.as_secs(),
        tenant.cognigy.http.quota_window.as_secs()
    );
    let hint = "the quota is per IP address and shared by every tenant on the installation: \
                raise poll_interval_seconds or odata_page_size, or lower overlap_seconds, \
                late_window_seconds or the number of logs_filter terms"
        .to_owned();
    if share >= 100.0 {
        steps.fail("cognigy.quota", detail, hint);
    } else if share >= 80.0 {
        steps.warn("cognigy.quota", detail, hint);
    } else {
        steps.pass("cognigy.quota", detail);
    }
}

/// Renders the report as text: one line per step, a hint line under each warn and fail.
pub fn render_text(report: &Report, options: &CheckOptions) -> String {
    let mut out = format!(
        "check of tenant {} (look-back {:.1} h, watch {} s)\n",
        report.tenant,
        options.lookback.num_minutes() as f64 / 60.0,
        options.watch.as_secs()
    );
    let width = report.steps.iter().map(|s| s.step.len()).max().unwrap_or(0);
    for step in &report.steps {
        out.push_str(&format!(
            "{:<4}  {:<width$}  {}\n",
            step.status.as_str().to_uppercase(),
            step.step,
            step.detail
        ));
        if let Some(hint) = &step.hint {
            out.push_str(&format!("      {:<width$}  hint: {hint}\n", ""));
        }
    }
    let count = |s: Status| report.steps.iter().filter(|x| x.status == s).count();
    out.push_str(&format!(
        "result: {} ({} pass, {} warn, {} fail, {} skipped)\n",
        report.status.as_str(),
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Skip)
    ));
    out
}

/// `check`: picks the tenant, runs the steps, prints the report to `out` (errors to `err`) and
/// returns the exit code: 0 all pass, 1 a warning or failure, 2 an error (tenant, output).
pub async fn run(
    config: &Config,
    tenant: Option<&str>,
    options: CheckOptions,
    format: crate::report::Format,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> u8 {
    let tenant = match crate::drilldown::select_tenant(config, tenant) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return 2;
        }
    };
    let report = check(config, tenant, options).await;
    let text = match format {
        crate::report::Format::Text => render_text(&report, &options),
        crate::report::Format::Json => match serde_json::to_string(&report) {
            Ok(json) => json + "\n",
            Err(e) => {
                let _ = writeln!(err, "error: cannot render the report: {e}");
                return 2;
            }
        },
    };
    if out.write_all(text.as_bytes()).is_err() {
        return 2;
    }
    report.exit_code()
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
        use crate::simulator::extension::{node_run_lines, NodeRun, RunResult};
        use crate::simulator::ExtensionVersion;
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

    /// The report's status is its worst step, skips aside; exit 1 on a warning.
    #[test]
    fn report_status_is_the_worst_step() {
        let mut steps = Steps {
            steps: BTreeMap::new(),
        };
        steps.pass("cxone.token", "ok".into());
        steps.warn("cognigy.quota", "high".into(), "poll less".into());
        let report = steps.into_report("t");
        assert_eq!(report.status, Status::Warn);
        assert_eq!(report.exit_code(), 1);
        assert_eq!(report.steps.len(), STEPS.len());
    }
}
