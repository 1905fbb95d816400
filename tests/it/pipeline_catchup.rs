//! End-to-end catch-up through `Poller::run_cycle`: a finite simulated world on loopback, a real
//! SQLite file, OData page caps small enough that catching up takes several cycles. Proves the pipeline
//! diagnoses every bot contact exactly as the ground truth says, once, and persists the Cognigy
//! records it read; and that a transient source failure during a catch-up never makes a contact
//! `undetermined` (issue 17, item 1).

use chrono::Utc;
use handover_exporter::config::TenantConfig;
use handover_exporter::metrics::Metrics;
use handover_exporter::pipeline::{CycleReport, Poller, Timing};
use handover_exporter::readiness::Readiness;
use handover_exporter::store::{DiagnosisFilter, Store};
use handover_simulator::{self as simulator, Faults, SimHandle, SimulatorOptions};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A poller of one simulated tenant over a fresh state file.
struct Rig {
    sim: SimHandle,
    poller: Poller,
    store: Arc<Mutex<Store>>,
    tenant: TenantConfig,
    _dir: tempfile::TempDir,
}

/// Starts the simulator with `options` and a poller for it; `tweak` adjusts the config first.
async fn rig(
    options: SimulatorOptions,
    tweak: impl FnOnce(&mut handover_exporter::config::Config),
) -> Rig {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sim = simulator::spawn(listener, options.clone())
        .await
        .expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config =
        handover_simulator::demo::config(&sim.base_url, &options, Duration::from_secs(5));
    config.state_path = dir.path().join("state.db").display().to_string();
    tweak(&mut config);
    let tenant = config.tenants[0].clone();
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
    Rig {
        sim,
        poller,
        store,
        tenant,
        _dir: dir,
    }
}

impl Rig {
    /// Runs cycles until two in a row read every source to the end without an error; returns
    /// every cycle's report.
    async fn run_until_caught_up(&self) -> Vec<CycleReport> {
        let mut reports = Vec::new();
        let mut clean_in_a_row = 0;
        while clean_in_a_row < 2 {
            let report = self.poller.run_cycle(Utc::now()).await.expect("cycle");
            let clean = report.cxone_ok && report.cognigy_ok && !report.more;
            clean_in_a_row = if clean { clean_in_a_row + 1 } else { 0 };
            reports.push(report);
            assert!(reports.len() < 200, "catch-up did not converge");
        }
        reports
    }

    /// Every stored diagnosis by contact: asserts none is stored twice.
    fn diagnoses(&self) -> BTreeMap<i64, String> {
        let rows = self
            .store
            .lock()
            .expect("store lock")
            .diagnoses(&DiagnosisFilter {
                limit: 100_000,
                ..DiagnosisFilter::default()
            })
            .expect("diagnoses");
        let found: BTreeMap<i64, String> = rows
            .iter()
            .map(|r| {
                (
                    r.diagnosis.contact_id,
                    r.diagnosis.reason.as_str().to_owned(),
                )
            })
            .collect();
        assert_eq!(rows.len(), found.len(), "a contact was diagnosed twice");
        found
    }

    /// The simulator's ground truth in the same shape.
    fn truth(&self) -> BTreeMap<i64, String> {
        self.sim
            .state
            .truth(Utc::now())
            .contacts
            .iter()
            .map(|t| (t.contact_id, t.reason.as_str().to_owned()))
            .collect()
    }
}

/// A capped catch-up over many cycles ends with every bot contact diagnosed as the truth says,
/// each exactly once, and every Cognigy session of the world stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_catch_up_matches_the_truth_and_stores_cognigy_reads() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let options = SimulatorOptions {
        seed: 5,
        calls: Some(300),
        rate_per_day: None,
        backlog_hours: 1.0,
        cognigy_lag_seconds: 5,
        ..SimulatorOptions::default()
    };
    let rig = rig(options, |config| {
        let cognigy = &mut config.tenants[0].cognigy;
        cognigy.odata_page_size = 20;
        cognigy.max_pages = 30;
    })
    .await;
    let reports = rig.run_until_caught_up().await;
    assert!(
        reports.len() > 3,
        "the page caps should force several cycles, got {}",
        reports.len()
    );
    let diagnosed: usize = reports.iter().map(|r| r.diagnosed).sum();
    let found = rig.diagnoses();
    assert_eq!(
        diagnosed,
        found.len(),
        "counted diagnoses differ from stored ones"
    );
    assert_eq!(found, rig.truth());

    let sessions = {
        let world = rig.sim.state.world_at(Utc::now());
        world.calls.iter().filter(|c| c.session.is_some()).count()
    };
    let stored = rig
        .store
        .lock()
        .expect("store lock")
        .cognigy_since(&rig.tenant.name, chrono::DateTime::<Utc>::MIN_UTC)
        .expect("cognigy records");
    assert_eq!(stored.sessions.len(), sessions);
    assert!(!stored.conversations.is_empty() && !stored.analytics.is_empty());
}

/// Issue 17 item 1: one transient Cognigy failure (two malformed pages) during the first cycle of
/// a 2.5 h catch-up with `initial_lookback_hours = 24` (calls older than `max_pending_seconds`)
/// leaves the totals equal to the truth with 0 undetermined: a contact is given up only when its
/// source has been unavailable for `max_pending_seconds`, never because it is old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failure_during_catch_up_gives_up_nothing() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let options = SimulatorOptions {
        seed: 5,
        calls: Some(600),
        rate_per_day: None,
        backlog_hours: 2.5,
        cognigy_lag_seconds: 1,
        faults: Faults {
            malformed_pages: 2,
            ..Faults::default()
        },
        ..SimulatorOptions::default()
    };
    let rig = rig(options, |config| {
        config.initial_lookback = Duration::from_secs(24 * 3600);
    })
    .await;
    let reports = rig.run_until_caught_up().await;
    assert!(
        !reports[0].cxone_ok || !reports[0].cognigy_ok,
        "the first cycle meets the malformed pages: {:?}",
        reports[0]
    );
    let found = rig.diagnoses();
    let undetermined = found
        .values()
        .filter(|r| r.as_str() == "source_unavailable")
        .count();
    assert_eq!(undetermined, 0);
    assert_eq!(found, rig.truth());
}

/// A cycle whose deadline is shorter than its backlog (every answer 200 ms late, small pages)
/// stops at it with the pages it read written and says so; cycle after cycle the backlog is read
/// and every bot contact is diagnosed as the truth says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_cut_cycles_keep_their_pages_and_converge() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let options = SimulatorOptions {
        seed: 9,
        calls: Some(120),
        rate_per_day: None,
        backlog_hours: 1.0,
        cognigy_lag_seconds: 1,
        faults: Faults {
            slow_ms: 200,
            ..Faults::default()
        },
        ..SimulatorOptions::default()
    };
    let rig = rig(options, |config| {
        let tenant = &mut config.tenants[0];
        tenant.cxone.page_size = 10;
        tenant.cognigy.odata_page_size = 10;
        tenant.cognigy.logs_page_size = 10;
    })
    .await;
    let first = rig
        .poller
        .run_cycle_until(
            Utc::now(),
            std::time::Instant::now() + Duration::from_secs(2),
        )
        .await
        .expect("cycle");
    assert!(first.deadline && first.more, "{first:?}");
    assert!(first.progressed(), "pages were written: {first:?}");
    let mut cycles = 1;
    loop {
        let report = rig
            .poller
            .run_cycle_until(
                Utc::now(),
                std::time::Instant::now() + Duration::from_secs(2),
            )
            .await
            .expect("cycle");
        assert!(report.progressed() || !report.more, "{report:?}");
        cycles += 1;
        if !report.more && rig.diagnoses().len() == rig.truth().len() {
            break;
        }
        assert!(cycles < 200, "the backlog was never read");
    }
    assert_eq!(rig.diagnoses(), rig.truth());
}

/// The most requests that arrived within any `window` (a sliding window over arrival times).
fn max_in_window(arrivals: &[std::time::Instant], window: Duration) -> usize {
    let mut most = 0;
    let mut first = 0;
    for (last, at) in arrivals.iter().enumerate() {
        while at.duration_since(arrivals[first]) >= window {
            first += 1;
        }
        most = most.max(last + 1 - first);
    }
    most
}

/// Two tenants on one simulated Cognigy host share its budget: counted where the server counts
/// them, their requests together never exceed it in any window, and neither is starved (when
/// the first has caught up, the other has read at least half as many pages), and both end with
/// the truth. The budget is lowered to 60 requests per 10 s (and pages made small) so the test
/// stays fast; the default is 1000 per 5 minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_share_one_host_budget_fairly() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    use handover_exporter::sources::http::Budgets;
    use std::sync::atomic::{AtomicU32, Ordering};
    let options = SimulatorOptions {
        seed: 11,
        calls: Some(60),
        rate_per_day: None,
        backlog_hours: 1.0,
        cognigy_lag_seconds: 1,
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
        handover_simulator::demo::config(&sim.base_url, &options, Duration::from_secs(5));
    config.state_path = dir.path().join("state.db").display().to_string();
    let mut acme = config.tenants[0].clone();
    acme.name = "acme".into();
    acme.cognigy.odata_page_size = 20;
    acme.cognigy.logs_page_size = 10;
    acme.cognigy.max_pages = 2;
    acme.cognigy.http.quota_requests = 60;
    acme.cognigy.http.quota_window = Duration::from_secs(10);
    let mut beta = acme.clone();
    beta.name = "beta".into();
    let names = vec![acme.name.clone(), beta.name.clone()];
    let store = Arc::new(Mutex::new(
        Store::open(&config.state_path).expect("store opens"),
    ));
    let metrics = Arc::new(Metrics::new(&names, "test"));
    let readiness = Arc::new(Readiness::new(&names, config.poll_interval));
    let budgets = Budgets::default();
    let pollers: Vec<Poller> = [&acme, &beta]
        .iter()
        .map(|t| {
            Poller::with_budgets(
                t,
                Timing::from_config(&config),
                store.clone(),
                metrics.clone(),
                readiness.clone(),
                &budgets,
            )
            .expect("poller")
        })
        .collect();
    assert_eq!(budgets.all().len(), 2, "one Cognigy and one CXone budget");
    let pages = [AtomicU32::new(0), AtomicU32::new(0)];
    // The other tenant's Cognigy pages when one first caught up: (who, own pages, other's).
    let first_done: Mutex<Option<(usize, u32, u32)>> = Mutex::new(None);
    let run = |i: usize| {
        let (poller, pages, first_done) = (&pollers[i], &pages, &first_done);
        async move {
            let mut clean_in_a_row = 0;
            let mut cycles = 0;
            while clean_in_a_row < 2 {
                let report = poller.run_cycle(Utc::now()).await.expect("cycle");
                pages[i].fetch_add(report.cognigy_pages, Ordering::SeqCst);
                let clean = report.cxone_ok && report.cognigy_ok && !report.more;
                if clean {
                    let mut done = first_done.lock().expect("lock");
                    if done.is_none() {
                        *done = Some((
                            i,
                            pages[i].load(Ordering::SeqCst),
                            pages[1 - i].load(Ordering::SeqCst),
                        ));
                    }
                }
                clean_in_a_row = if clean { clean_in_a_row + 1 } else { 0 };
                cycles += 1;
                assert!(cycles < 300, "tenant {i} never caught up");
            }
        }
    };
    tokio::join!(run(0), run(1));

    let arrivals = sim.state.cognigy_arrivals();
    let most = max_in_window(&arrivals, Duration::from_secs(10));
    assert!(
        arrivals.len() > 80,
        "the test must need more than one window of budget: {} requests",
        arrivals.len()
    );
    assert!(most <= 60, "{most} Cognigy requests arrived within 10 s");
    let (who, own, other) = first_done.lock().expect("lock").expect("one caught up");
    assert!(
        other * 2 >= own,
        "tenant {} had read {other} pages when tenant {who} caught up with {own}",
        1 - who
    );
    let truth: BTreeMap<i64, String> = sim
        .state
        .truth(Utc::now())
        .contacts
        .iter()
        .map(|t| (t.contact_id, t.reason.as_str().to_owned()))
        .collect();
    for name in &names {
        let rows = store
            .lock()
            .expect("store lock")
            .diagnoses(&DiagnosisFilter {
                tenant: Some(name.clone()),
                limit: 100_000,
                ..DiagnosisFilter::default()
            })
            .expect("diagnoses");
        let found: BTreeMap<i64, String> = rows
            .iter()
            .map(|r| {
                (
                    r.diagnosis.contact_id,
                    r.diagnosis.reason.as_str().to_owned(),
                )
            })
            .collect();
        assert_eq!(found, truth, "tenant {name}");
    }
}

/// Late Cognigy records: half the sessions' records appear 20-30 s after the session ends,
/// later than the 10 s each ordinary pass re-reads, so only the sweeps of the 100 s late window
/// find them. Every contact of the calls visible early in the run is diagnosed as the truth
/// says, and the delay of the records (first seen minus their own time) is measured, beyond the
/// short window too. Times are scaled down (10 s overlap, 100 s window, a sweep every 10 s)
/// so the test takes minutes, not hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_late_are_swept_up_and_measured() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let options = SimulatorOptions {
        seed: 13,
        calls: None,
        rate_per_day: Some(5760.0),
        backlog_hours: 2.0 / 60.0,
        cognigy_lag_seconds: 1,
        cognigy_delay: Some("0.5:1,0.5:20-30".parse().expect("delay")),
        ..SimulatorOptions::default()
    };
    let rig = rig(options, |config| {
        config.overlap = Duration::from_secs(10);
        config.settle = Duration::from_secs(1);
        let tenant = &mut config.tenants[0];
        tenant.cognigy.late_window = Duration::from_secs(100);
        tenant.cognigy.late_sweep_interval = Duration::from_secs(10);
        tenant.rules.cognigy_lag_seconds = 100;
    })
    .await;
    let start = Utc::now();
    // The calls whose contacts were all visible 20 s into the run; their records are visible
    // within the late window after that.
    let judged_at = start + chrono::Duration::seconds(20);
    let mut cycles = 0;
    let expected = loop {
        let report = rig.poller.run_cycle(Utc::now()).await.expect("cycle");
        assert!(report.cxone_ok && report.cognigy_ok, "{report:?}");
        cycles += 1;
        if Utc::now() > judged_at {
            let expected: BTreeMap<i64, String> = rig
                .sim
                .state
                .truth(judged_at)
                .contacts
                .iter()
                .map(|t| (t.contact_id, t.reason.as_str().to_owned()))
                .collect();
            let found = rig.diagnoses();
            if expected.keys().all(|id| found.contains_key(id)) {
                break expected;
            }
        }
        assert!(cycles < 600, "the late records were never read");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let found = rig.diagnoses();
    for (id, reason) in &expected {
        assert_eq!(found.get(id), Some(reason), "contact {id}");
    }
    let metrics = rig.poller.metrics().encode();
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    let measured = sample("handover_cognigy_record_delay_seconds_count{");
    let within_5s = sample("handover_cognigy_record_delay_seconds_bucket{tenant=\"demo\",collection=\"sessions\",le=\"5.0\"}")
        + sample("handover_cognigy_record_delay_seconds_bucket{tenant=\"demo\",collection=\"conversations\",le=\"5.0\"}")
        + sample("handover_cognigy_record_delay_seconds_bucket{tenant=\"demo\",collection=\"analytics\",le=\"5.0\"}");
    assert!(measured > 0.0, "record delays are measured");
    assert!(
        within_5s < measured,
        "some records appeared later than 5 s: {within_5s} of {measured}"
    );
    assert_eq!(sample("handover_cognigy_late_records_total{"), 0.0);
}

/// The logs are read with the server's `filter`: a term no line contains reads no line (the
/// simulator filtered server-side); two terms are read in turn within one pass and the totals
/// equal the truth; and a server that refuses `filter` is read unfiltered, to the same totals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_filtered_server_side_with_fallback() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let options = |refused: bool| SimulatorOptions {
        seed: 17,
        calls: Some(120),
        rate_per_day: None,
        backlog_hours: 1.0,
        cognigy_lag_seconds: 1,
        faults: Faults {
            logs_filter_refused: refused,
            ..Faults::default()
        },
        ..SimulatorOptions::default()
    };
    let stored_logs = |rig: &Rig| {
        rig.store
            .lock()
            .expect("store lock")
            .cognigy_since(&rig.tenant.name, chrono::DateTime::<Utc>::MIN_UTC)
            .expect("cognigy records")
            .logs
            .len()
    };
    let none = rig(options(false), |config| {
        config.tenants[0].cognigy.logs_filter = vec!["noSuchNode".into()];
    })
    .await;
    none.run_until_caught_up().await;
    assert_eq!(stored_logs(&none), 0, "the server filtered every line out");

    let two_terms = rig(options(false), |config| {
        let tenant = &mut config.tenants[0];
        tenant.cognigy.logs_filter = vec!["handoverToCXone".into(), "sendSignalToCXone".into()];
        tenant.cognigy.logs_page_size = 5;
    })
    .await;
    two_terms.run_until_caught_up().await;
    assert!(stored_logs(&two_terms) > 0);
    assert_eq!(two_terms.diagnoses(), two_terms.truth());

    let refused = rig(options(true), |_| {}).await;
    refused.run_until_caught_up().await;
    assert!(stored_logs(&refused) > 0, "read unfiltered");
    assert_eq!(refused.diagnoses(), refused.truth());
}
