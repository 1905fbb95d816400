//! The Cognigy OData steps of `check`: `$select` and the record id field, sessions seen, and how
//! late session records are written (watched) against `late_window_seconds`.

use super::{describe, Steps, Watcher};
use crate::config::TenantConfig;
use crate::sources::cognigy::wire::Session;
use crate::sources::cognigy::CognigyClient;
use crate::sources::http::Endpoint;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashSet;

/// `$select` and the record id field.
pub(super) fn select_step(
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
pub(super) fn sessions_step(
    steps: &mut Steps,
    tenant: &TenantConfig,
    sessions: &[Session],
    hours: f64,
) {
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

/// Watches for session records that appear during `watch` and compares how late they were with
/// `late_window_seconds`.
pub(super) async fn record_delay_step(
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
