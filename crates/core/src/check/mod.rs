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
//! classification are the daemon's own ([`crate::engine::correlation`], [`crate::logline`]). This module
//! judges configuration, not calls: it keeps no state, exports no metrics and writes nothing.
//! This file runs the steps in order and renders the report; the steps themselves live in one
//! submodule per subject (`cxone`, `odata`, `correlation`, `logs`, `quota`).

use crate::config::{Config, TenantConfig};
use crate::engine::correlation::Inputs;
use crate::sources::cognigy::wire::{Analytics, Conversation, Session};
use crate::sources::cognigy::CognigyClient;
use crate::sources::cxone::wire::CompletedContact;
use crate::sources::cxone::CxoneClient;
use crate::sources::http::{CodeClass, Endpoint, RequestObserver, RetryCause, Source, SourceError};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

mod correlation;
mod cxone;
mod logs;
mod odata;
mod quota;

pub use logs::extension_versions;
pub use quota::requests_per_quota_window;

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

/// Keeps the first data body with records of each OData collection (to see which id field the
/// server sends).
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

    let contacts = read_cxone(&mut steps, tenant, observer.clone(), since).await;
    let cxone_ok = steps
        .steps
        .get("cxone.reporting")
        .is_some_and(|s| s.status == Status::Pass);
    if cxone_ok {
        cxone::contacts_steps(&mut steps, tenant, &contacts, hours);
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
    let sessions_read_at = Utc::now();
    let (sessions, conversations, analytics) =
        read_odata(&mut steps, tenant, &cognigy, since).await;
    let odata_ok = steps
        .steps
        .get("cognigy.odata")
        .is_some_and(|s| s.status == Status::Pass);
    if odata_ok {
        odata::select_step(&mut steps, tenant, &cognigy, &watcher, !sessions.is_empty());
        odata::sessions_step(&mut steps, tenant, &sessions, hours);
    }

    // Logs: readable, filtered, whose lines.
    let logs = logs::logs_steps(&mut steps, tenant, &cognigy, since).await;

    if odata_ok && !sessions.is_empty() {
        correlation::contact_id_step(&mut steps, tenant, &sessions, &conversations, &analytics);
        if cxone_ok {
            correlation::bot_contacts_step(
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
        odata::record_delay_step(
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
        quota::quota_step(
            &mut steps,
            config,
            tenant,
            quota::Volume {
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

/// The CXone steps one read exercises: discovery, the token and the Reporting API in turn;
/// the completed contacts read (none when a step failed).
async fn read_cxone(
    steps: &mut Steps,
    tenant: &TenantConfig,
    observer: Arc<dyn RequestObserver>,
    since: DateTime<Utc>,
) -> Vec<CompletedContact> {
    match CxoneClient::new(&tenant.cxone, observer) {
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
                cxone::cxone_failure(steps, tenant, &e);
                Vec::new()
            }
        },
    }
}

/// The three collections the correlation reads, from a correlation window before `since`; the
/// `cognigy.odata` step (and, when it fails, the steps that need OData skipped).
async fn read_odata(
    steps: &mut Steps,
    tenant: &TenantConfig,
    cognigy: &CognigyClient,
    since: DateTime<Utc>,
) -> (Vec<Session>, Vec<Conversation>, Vec<Analytics>) {
    let window = Duration::seconds(tenant.rules.correlation_window_seconds as i64);
    let pages = tenant.cognigy.max_pages;
    let (sessions, conversations, analytics) = tokio::join!(
        cognigy.sessions_since(since - window, pages),
        cognigy.conversations_since(since - window, pages),
        cognigy.analytics_since(since - window, pages),
    );
    match (sessions, conversations, analytics) {
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
