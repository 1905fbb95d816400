//! End-to-end catch-up through `Poller::run_cycle`: a finite simulated world on loopback, a real
//! SQLite file, OData page caps small enough that catching up takes several cycles. Proves the pipeline
//! diagnoses every bot contact exactly as the ground truth says, once, and persists the Cognigy
//! records it read (the cycle hands the store its own reads without copying them first).

use chrono::Utc;
use handover_exporter::metrics::Metrics;
use handover_exporter::pipeline::{Poller, Timing};
use handover_exporter::server::Readiness;
use handover_exporter::simulator::{self, SimulatorOptions};
use handover_exporter::store::{DiagnosisFilter, Store};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A capped catch-up over many cycles ends with every bot contact diagnosed as the truth says,
/// each exactly once, and every Cognigy session of the world stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_catch_up_matches_the_truth_and_stores_cognigy_reads() {
    let options = SimulatorOptions {
        seed: 5,
        calls: Some(300),
        rate_per_day: None,
        // Younger than `max_pending_seconds` (2 h): a capped catch-up of older calls ends them
        // as `source_unavailable` (reported in issue 5).
        backlog_hours: 1.0,
        cognigy_lag_seconds: 5,
        ..SimulatorOptions::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sim = simulator::spawn(listener, options.clone())
        .await
        .expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config =
        handover_exporter::demo::config(&sim.base_url, &options, Duration::from_secs(5));
    config.state_path = dir.path().join("state.db").display().to_string();
    let mut tenant = config.tenants[0].clone();
    // Only the OData reads are capped. A capped log read (newest first) loses the older lines,
    // and a capped CXone read lets a group be diagnosed before its agent leg is read: both are
    // known catch-up defects reported in issue 5, not what this test is about.
    tenant.cognigy.odata_page_size = 20;
    tenant.cognigy.max_pages = 30;
    let names = vec![tenant.name.clone()];
    let store = Arc::new(Mutex::new(
        Store::open(&config.state_path).expect("store opens"),
    ));
    let poller = Poller::new(
        &tenant,
        Timing::from_config(&config),
        store.clone(),
        Arc::new(Metrics::new(&names, "test")),
        Arc::new(Readiness::new(&names, config.poll_interval)),
    )
    .expect("poller");

    let mut cycles = 0;
    let mut diagnosed = 0;
    let mut complete_in_a_row = 0;
    while complete_in_a_row < 2 {
        let report = poller.run_cycle(Utc::now()).await.expect("cycle");
        assert!(report.cxone_ok && report.cognigy_ok, "{report:?}");
        diagnosed += report.diagnosed;
        complete_in_a_row = if report.more {
            0
        } else {
            complete_in_a_row + 1
        };
        cycles += 1;
        assert!(cycles < 200, "catch-up did not converge");
    }
    assert!(
        cycles > 2,
        "the page caps should force several cycles, got {cycles}"
    );

    let truth = sim.state.truth(Utc::now());
    let expected: BTreeMap<i64, &str> = truth
        .contacts
        .iter()
        .map(|t| (t.contact_id, t.reason.as_str()))
        .collect();
    let rows = store
        .lock()
        .expect("store lock")
        .diagnoses(&DiagnosisFilter {
            limit: 100_000,
            ..DiagnosisFilter::default()
        })
        .expect("diagnoses");
    let found: BTreeMap<i64, &str> = rows
        .iter()
        .map(|r| (r.diagnosis.contact_id, r.diagnosis.reason.as_str()))
        .collect();
    assert_eq!(rows.len(), found.len(), "a contact was diagnosed twice");
    assert_eq!(
        diagnosed,
        rows.len(),
        "counted diagnoses differ from stored ones"
    );
    assert_eq!(found, expected);

    let sessions = {
        let world = sim.state.world_at(Utc::now());
        world.calls.iter().filter(|c| c.session.is_some()).count()
    };
    let stored = store
        .lock()
        .expect("store lock")
        .cognigy_since(&tenant.name, chrono::DateTime::<Utc>::MIN_UTC)
        .expect("cognigy records");
    assert_eq!(stored.sessions.len(), sessions);
    assert!(!stored.conversations.is_empty() && !stored.analytics.is_empty());
    sim.stop().await.expect("simulator stops");
}
