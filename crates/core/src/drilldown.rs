//! Drill-down: `handover-exporter diagnose CONTACT_ID` against the configured (live or simulated)
//! APIs, with the same rules and report as `diagnose --replay` (DESIGN §8).
//!
//! It reads one contact (`/contacts/{id}`) to find its group and start, then reads bulk windows
//! around the call, never one request per session: CXone `contacts/completed` updated since the
//! master contact started (minus a minute), and the four Cognigy windows (Sessions from the
//! correlation window before the start, Conversations, Analytics and logs from a minute before
//! it, all up to now). Everything read is correlated as the daemon does (so caller/time matching
//! sees the other calls of the window too), and the case of the contact's group is diagnosed with
//! `now` as the horizon: a verdict, or pending with what it waits for. The state history of the
//! group's contacts is read per contact, as DESIGN §3 allows for drill-down only. This module
//! keeps no state and exports no metrics; it does not touch the store.

use crate::config::{Config, TenantConfig};
use crate::engine::correlation::Inputs;
use crate::engine::decide;
use crate::engine::diagnosis::{Diagnosis, Horizon, Verdict, WaitingFor};
use crate::report::Format;
use crate::sources::cognigy::wire::{Analytics, Conversation, LogEntry, Session};
use crate::sources::cognigy::CognigyClient;
use crate::sources::cxone::wire::{CompletedContact, StateHistory};
use crate::sources::cxone::CxoneClient;
use crate::sources::http::{NoopObserver, RequestObserver, Source, SourceError};
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How far before the master contact's start the windows open (clock skew, late updates).
const WINDOW_MARGIN_MINUTES: i64 = 1;

/// At most this many contacts of one group get their state history read.
const MAX_HISTORIES: usize = 10;

/// What the drill-down concluded about the contact's group.
#[derive(Debug, Clone, PartialEq)]
pub enum DrilldownVerdict {
    /// Diagnosed by the rules of DESIGN §5.
    Diagnosed(Box<Diagnosis>),
    /// Data the case needs may still arrive.
    Pending {
        waiting_for: WaitingFor,
        /// When the awaited data is due (call end plus lag or settle).
        due_at: DateTime<Utc>,
    },
    /// The group did not enter the bot (no bot entry point or skill) and no Cognigy session
    /// points to it.
    NotBotContact,
}

/// The result of diagnosing one contact live.
#[derive(Debug, Clone)]
pub struct Drilldown {
    /// The id that was asked for.
    pub contact_id: i64,
    /// Its group's master contact id (the diagnosis key).
    pub master_contact_id: i64,
    pub verdict: DrilldownVerdict,
    /// CXone state history per contact of the group (those that could be read).
    pub state_history: BTreeMap<i64, StateHistory>,
    /// Things the reader should know: reads cut short by `max_pages`, histories not readable.
    pub notes: Vec<String>,
}

/// Why a drill-down could not be made. Every message names what is wrong; none holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum DrilldownError {
    #[error("the configuration has no tenant")]
    NoTenant,
    #[error("the configuration has several tenants ({0}); choose one with --tenant")]
    TenantAmbiguous(String),
    #[error("no tenant named {name:?} in the configuration (tenants: {known})")]
    UnknownTenant { name: String, known: String },
    #[error("contact {0} not found in CXone")]
    ContactNotFound(i64),
    #[error("cannot set up the {} client: {error}", source_name(*.api))]
    Client { api: Source, error: SourceError },
    #[error("{} API failed while reading {reading}: {error}", source_name(*.api))]
    Source {
        api: Source,
        reading: &'static str,
        error: SourceError,
    },
}

fn source_name(source: Source) -> &'static str {
    match source {
        Source::Cxone => "CXone",
        Source::Cognigy => "Cognigy",
    }
}

/// The tenant to use: the one named, or the only one when none is named.
pub fn select_tenant<'a>(
    config: &'a Config,
    name: Option<&str>,
) -> Result<&'a TenantConfig, DrilldownError> {
    let names = || {
        config
            .tenants
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(name) => config
            .tenants
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| DrilldownError::UnknownTenant {
                name: name.to_owned(),
                known: names(),
            }),
        None => match config.tenants.as_slice() {
            [] => Err(DrilldownError::NoTenant),
            [only] => Ok(only),
            _ => Err(DrilldownError::TenantAmbiguous(names())),
        },
    }
}

/// The tenant's two API clients, and how a failed read is reported.
struct Apis {
    cxone: CxoneClient,
    cognigy: CognigyClient,
}

fn failed(api: Source, reading: &'static str) -> impl Fn(SourceError) -> DrilldownError {
    move |error| DrilldownError::Source {
        api,
        reading,
        error,
    }
}

impl Apis {
    fn new(
        tenant: &TenantConfig,
        observer: Arc<dyn RequestObserver>,
    ) -> Result<Apis, DrilldownError> {
        let cxone = CxoneClient::new(&tenant.cxone, observer.clone()).map_err(|error| {
            DrilldownError::Client {
                api: Source::Cxone,
                error,
            }
        })?;
        let cognigy = CognigyClient::new(&tenant.cognigy, observer).map_err(|error| {
            DrilldownError::Client {
                api: Source::Cognigy,
                error,
            }
        })?;
        Ok(Apis { cxone, cognigy })
    }
}

/// The contact asked for and its group's master contact (when it is another one).
struct Asked {
    asked: CompletedContact,
    master: Option<CompletedContact>,
}

impl Asked {
    fn master_id(&self) -> i64 {
        self.asked.group_id()
    }

    /// The earliest start of the two: where the windows open (less a margin).
    fn start(&self) -> DateTime<Utc> {
        self.master
            .iter()
            .chain(std::iter::once(&self.asked))
            .map(|c| c.contact_start_date)
            .min()
            .unwrap_or(self.asked.contact_start_date)
    }
}

/// Reads the contact asked for and its master contact singly.
async fn read_asked(
    apis: &Apis,
    contact_id: i64,
    notes: &mut Vec<String>,
) -> Result<Asked, DrilldownError> {
    let asked = apis
        .cxone
        .contact(contact_id)
        .await
        .map_err(failed(Source::Cxone, "the contact"))?
        .ok_or(DrilldownError::ContactNotFound(contact_id))?;
    let master_id = asked.group_id();
    if master_id == asked.contact_id {
        let master = Some(asked.clone());
        return Ok(Asked { asked, master });
    }
    let master = apis
        .cxone
        .contact(master_id)
        .await
        .map_err(failed(Source::Cxone, "the master contact"))?;
    if master.is_none() {
        notes.push(format!(
            "master contact {master_id} of contact {contact_id} not found in CXone; the window \
             starts at contact {contact_id}"
        ));
    }
    Ok(Asked { asked, master })
}

/// Everything read in the window around the call, owned, in the shape the engine takes.
struct Window {
    contacts: Vec<CompletedContact>,
    sessions: Vec<Session>,
    conversations: Vec<Conversation>,
    analytics: Vec<Analytics>,
    logs: Vec<LogEntry>,
}

impl Window {
    fn inputs(&self) -> Inputs<'_> {
        Inputs {
            contacts: &self.contacts,
            sessions: &self.sessions,
            conversations: &self.conversations,
            analytics: &self.analytics,
            logs: &self.logs,
        }
    }
}

/// Bulk reads of the window from `since` (sessions a correlation window earlier), all five at
/// once, as the daemon reads them; a read cut short by `max_pages` leaves a note.
async fn read_window(
    apis: &Apis,
    tenant: &TenantConfig,
    since: DateTime<Utc>,
    notes: &mut Vec<String>,
) -> Result<Window, DrilldownError> {
    let sessions_since = since - Duration::seconds(tenant.rules.correlation_window_seconds as i64);
    let pages = tenant.cognigy.max_pages;
    let cognigy = &apis.cognigy;
    let (contacts, sessions, conversations, analytics, logs) = tokio::join!(
        apis.cxone.completed_contacts(since, tenant.cxone.max_pages),
        cognigy.sessions_since(sessions_since, pages),
        cognigy.conversations_since(since, pages),
        cognigy.analytics_since(since, pages),
        cognigy.logs_since(since, pages),
    );
    let contacts = contacts.map_err(failed(Source::Cxone, "completed contacts"))?;
    let sessions = sessions.map_err(failed(Source::Cognigy, "OData Sessions"))?;
    let conversations = conversations.map_err(failed(Source::Cognigy, "OData Conversations"))?;
    let analytics = analytics.map_err(failed(Source::Cognigy, "OData Analytics"))?;
    let logs = logs.map_err(failed(Source::Cognigy, "project logs"))?;
    let truncated = [
        ("CXone completed contacts", contacts.truncated),
        ("Cognigy Sessions", sessions.truncated),
        ("Cognigy Conversations", conversations.truncated),
        ("Cognigy Analytics", analytics.truncated),
        ("Cognigy logs", logs.truncated),
    ];
    for (what, _) in truncated.iter().filter(|(_, cut)| *cut) {
        notes.push(format!(
            "{what}: the read stopped at max_pages, so records of this call may be missing; \
             raise max_pages to read the whole window"
        ));
    }
    Ok(Window {
        contacts: contacts.contacts,
        sessions: sessions.records,
        conversations: conversations.records,
        analytics: analytics.records,
        logs: logs.records,
    })
}

/// The engine's verdict on the master's group, with the group's contact ids. Everything was
/// read up to `now`, and a drill-down waits for no settle time: it reports what is there.
fn conclude(
    window: &Window,
    tenant: &TenantConfig,
    master_id: i64,
    now: DateTime<Utc>,
) -> (DrilldownVerdict, Vec<i64>) {
    let horizon = Horizon {
        now,
        cognigy_read_until: now,
        cognigy_swept_until: now,
        cognigy_short_seconds: i64::MAX,
        cxone_read_until: now,
        settle_seconds: 0,
        cognigy_unavailable_since: None,
        cxone_unavailable_since: None,
    };
    let decisions = decide(window.inputs(), &tenant.rules, &horizon);
    let Some(decision) = decisions
        .into_iter()
        .find(|d| d.case.master_contact_id == master_id)
    else {
        let group = window
            .contacts
            .iter()
            .filter(|c| c.group_id() == master_id)
            .map(|c| c.contact_id)
            .collect();
        return (DrilldownVerdict::NotBotContact, group);
    };
    let case = &decision.case;
    let group = case.contacts.iter().map(|c| c.contact_id).collect();
    let verdict = match decision.verdict {
        Verdict::Diagnosed(d) => DrilldownVerdict::Diagnosed(d),
        Verdict::Pending { waiting_for } => {
            let wait = if case.session.is_some() {
                Duration::zero()
            } else {
                Duration::seconds(tenant.rules.cognigy_lag_seconds as i64)
            };
            DrilldownVerdict::Pending {
                waiting_for,
                due_at: case.ended_at() + wait,
            }
        }
    };
    (verdict, group)
}

/// Diagnoses the group of `contact_id` from the tenant's APIs as they are at `now`.
pub async fn diagnose_contact(
    tenant: &TenantConfig,
    contact_id: i64,
    now: DateTime<Utc>,
) -> Result<Drilldown, DrilldownError> {
    diagnose_contact_observed(tenant, contact_id, now, Arc::new(NoopObserver)).await
}

/// [`diagnose_contact`] with every request reported to `observer` (`capture` keeps the bodies).
pub async fn diagnose_contact_observed(
    tenant: &TenantConfig,
    contact_id: i64,
    now: DateTime<Utc>,
    observer: Arc<dyn RequestObserver>,
) -> Result<Drilldown, DrilldownError> {
    let apis = Apis::new(tenant, observer)?;
    let mut notes = Vec::new();
    let asked = read_asked(&apis, contact_id, &mut notes).await?;
    let master_id = asked.master_id();
    let since = asked.start() - Duration::minutes(WINDOW_MARGIN_MINUTES);
    let mut window = read_window(&apis, tenant, since, &mut notes).await?;
    // The contacts read singly, if the window missed them (e.g. a contact updated before the
    // window opened).
    for single in asked.master.into_iter().chain(std::iter::once(asked.asked)) {
        if !window
            .contacts
            .iter()
            .any(|c| c.contact_id == single.contact_id)
        {
            window.contacts.push(single);
        }
    }
    let (verdict, group) = conclude(&window, tenant, master_id, now);

    let mut state_history = BTreeMap::new();
    for id in group.iter().take(MAX_HISTORIES) {
        match apis.cxone.state_history(*id).await {
            Ok(h) => {
                state_history.insert(*id, h);
            }
            Err(e) => notes.push(format!("state history of contact {id} not readable: {e}")),
        }
    }
    Ok(Drilldown {
        contact_id,
        master_contact_id: master_id,
        verdict,
        state_history,
        notes,
    })
}

/// Renders a drill-down as text (the replay report plus state history) or one JSON line.
pub fn render(drilldown: &Drilldown, format: Format) -> String {
    match (&drilldown.verdict, format) {
        (DrilldownVerdict::Diagnosed(d), Format::Json) => crate::report::json_line(d) + "\n",
        (DrilldownVerdict::Diagnosed(d), Format::Text) => {
            // The most telling history: the contact that queued or reached an agent, else the
            // first one with any state (the master contact comes first in the evidence).
            let histories: Vec<&StateHistory> = d
                .evidence
                .contact_ids
                .iter()
                .filter_map(|id| drilldown.state_history.get(id))
                .filter(|h| !h.contact_state_history.is_empty())
                .collect();
            let queued = histories.iter().copied().find(|h| {
                h.contact_state_history.iter().any(|s| {
                    s.agent_id != 0 || s.contact_state_name.eq_ignore_ascii_case("InQueue")
                })
            });
            crate::report::text(d, queued.or(histories.first().copied()))
        }
        (
            DrilldownVerdict::Pending {
                waiting_for,
                due_at,
            },
            Format::Json,
        ) => {
            serde_json::json!({
                "contact_id": drilldown.master_contact_id,
                "status": "pending",
                "waiting_for": waiting_for,
                "due_at": due_at,
            })
            .to_string()
                + "\n"
        }
        (
            DrilldownVerdict::Pending {
                waiting_for,
                due_at,
            },
            Format::Text,
        ) => {
            let why = waiting_for.explain();
            format!(
                "contact {}: pending, waiting for {waiting_for} until {}: {why}\n",
                drilldown.master_contact_id,
                due_at.to_rfc3339()
            )
        }
        (DrilldownVerdict::NotBotContact, Format::Json) => {
            serde_json::json!({
                "contact_id": drilldown.master_contact_id,
                "status": "not_a_bot_contact",
            })
            .to_string()
                + "\n"
        }
        (DrilldownVerdict::NotBotContact, Format::Text) => format!(
            "contact {}: not a bot contact: it did not enter a configured bot entry point of \
             contact or skill, and no Cognigy session points to it\n",
            drilldown.master_contact_id
        ),
    }
}

/// Exit code of a drill-down (DESIGN §8): 1 when a failure was diagnosed, else 0.
pub fn exit_code(drilldown: &Drilldown) -> u8 {
    match &drilldown.verdict {
        DrilldownVerdict::Diagnosed(d) => crate::report::exit_code(std::slice::from_ref(d), false),
        DrilldownVerdict::Pending { .. } | DrilldownVerdict::NotBotContact => 0,
    }
}

/// `diagnose CONTACT_ID`: picks the tenant, drills down at the current time, prints the report
/// to `out` (notes and errors to `err`) and returns the exit code: 0 no failure (or pending),
/// 1 failure found, 2 on error (tenant, unknown contact, unreachable or failing API).
pub async fn run(
    config: &Config,
    tenant: Option<&str>,
    contact_id: i64,
    format: Format,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> u8 {
    let tenant = match select_tenant(config, tenant) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return 2;
        }
    };
    let drilldown = match diagnose_contact(tenant, contact_id, Utc::now()).await {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(err, "error: tenant {}: {e}", tenant.name);
            return 2;
        }
    };
    for note in &drilldown.notes {
        let _ = writeln!(err, "note: {note}");
    }
    if out
        .write_all(render(&drilldown, format).as_bytes())
        .is_err()
    {
        return 2;
    }
    exit_code(&drilldown)
}
