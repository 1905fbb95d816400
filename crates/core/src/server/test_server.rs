//! A server started for a unit test: a real listener on a loopback port, a real SQLite store in a
//! temporary directory seeded with three diagnoses of tenant `acme`, and the clients the tests
//! use. Test code only (compiled under `cfg(test)`); it tests nothing itself.

use super::{serve, AppState, ServerLimits, WebConfig};
use crate::engine::diagnosis::{Diagnosis, Evidence, Reason};
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::store::{CycleCommit, Store};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use chrono::{DateTime, TimeZone, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(super) fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, minute, 0).unwrap()
}

pub(super) fn diagnosis(id: i64, reason: Reason) -> Diagnosis {
    Diagnosis {
        contact_id: id,
        outcome: reason.outcome(),
        failure: reason.failure(),
        reason,
        rule: reason.rule(),
        summary: reason.explain().into(),
        evidence: Evidence {
            contact_ids: vec![id],
            bot_entry: true,
            session_id: Some(format!("session-{id}")),
            match_kind: None,
            carried_contact_id: Some(id.to_string()),
            contact_started_at: at(0),
            contact_ended_at: at(2),
            escalated_at: Some(at(1)),
            queued_at: None,
            queue_skill_id: None,
            signal_to_queue_seconds: None,
            queue_wait_seconds: None,
            bot_turn_seconds: vec![],
            decided_by: vec![],
            timeline: vec![],
        },
    }
}

pub(super) struct Running {
    pub(super) base: String,
    pub(super) readiness: Arc<Readiness>,
    pub(super) store: Arc<Mutex<Store>>,
    pub(super) stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub(super) task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

pub(super) async fn start() -> Running {
    start_with(None).await
}

pub(super) async fn start_with(web_config: Option<WebConfig>) -> Running {
    start_limited(web_config, ServerLimits::default()).await
}

pub(super) async fn start_limited(web_config: Option<WebConfig>, limits: ServerLimits) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path().join("state.db")).unwrap();
    for (minute, d) in [
        (5, diagnosis(1001, Reason::SignalRejected)),
        (6, diagnosis(1002, Reason::AgentAnswered)),
        (7, diagnosis(1003, Reason::NotQueued)),
    ] {
        let one = [d];
        store
            .commit_cycle(
                "acme",
                CycleCommit {
                    diagnoses: &one,
                    ..CycleCommit::empty(at(minute))
                },
            )
            .unwrap();
    }
    let scheme = if web_config.as_ref().is_some_and(WebConfig::tls_enabled) {
        "https"
    } else {
        "http"
    };
    let tenants = vec!["acme".to_owned()];
    let metrics = Metrics::new(&tenants, "test");
    metrics.load_totals(&store.totals().unwrap());
    let readiness = Arc::new(Readiness::new(&tenants, Duration::from_secs(1)));
    let store = Arc::new(Mutex::new(store));
    let state = AppState {
        metrics: Arc::new(metrics),
        store: store.clone(),
        readiness: readiness.clone(),
        telemetry_path: "/metrics".to_owned(),
        web_config: web_config.map(Arc::new),
        limits,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("{scheme}://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    Running {
        base,
        readiness,
        store,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

pub(super) fn client() -> reqwest::Client {
    // No automatic decompression: the gzip test inspects the raw body.
    reqwest::Client::builder().no_gzip().build().unwrap()
}

pub(super) async fn get_json(url: &str) -> (StatusCode, serde_json::Value) {
    let response = client().get(url).send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    assert!(
        response.headers()[CONTENT_TYPE.as_str()]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{url}"
    );
    (status, response.json().await.unwrap())
}
