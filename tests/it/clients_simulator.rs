//! The real CXone and Cognigy clients against the simulator over loopback, for every fault the
//! simulator injects: each read ends with the complete data or a typed error, never a panic and
//! never a silent partial page.

use chrono::{Duration as ChronoDuration, Utc};
use handover_exporter::config::{CognigyConfig, CxoneConfig};
use handover_exporter::sources::cognigy::CognigyClient;
use handover_exporter::sources::cxone::CxoneClient;
use handover_exporter::sources::http::{NoopObserver, RequestObserver};
use handover_simulator::{self as simulator, Faults, RetryAfter, SimHandle, SimulatorOptions};
use std::sync::Arc;
use std::time::Duration;

async fn sim() -> SimHandle {
    let options = SimulatorOptions {
        seed: 99,
        calls: Some(120),
        backlog_hours: 1.0,
        cognigy_lag_seconds: 0,
        ..SimulatorOptions::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    simulator::spawn(listener, options).await.unwrap()
}

fn configs(sim: &SimHandle) -> (CxoneConfig, CognigyConfig) {
    let mut tenant = simulator::simulated_tenant(
        "t",
        &sim.base_url,
        &sim.state.credentials,
        simulator::sim_rules(),
    );
    for http in [&mut tenant.cxone.http, &mut tenant.cognigy.http] {
        http.initial_backoff = Duration::from_millis(20);
        http.max_backoff = Duration::from_secs(2);
        http.timeout = Duration::from_secs(2);
        http.max_retries = 4;
    }
    tenant.cxone.page_size = 40;
    tenant.cognigy.odata_page_size = 100;
    (tenant.cxone, tenant.cognigy)
}

fn observer() -> Arc<dyn RequestObserver> {
    Arc::new(NoopObserver)
}

fn since() -> chrono::DateTime<Utc> {
    Utc::now() - ChronoDuration::hours(3)
}

/// Contact ids and session ids read without any fault: the reference the faulty reads must match.
async fn clean_read(sim: &SimHandle) -> (Vec<i64>, Vec<String>) {
    let (cx, cg) = configs(sim);
    let contacts = CxoneClient::new(&cx, observer())
        .unwrap()
        .completed_contacts(since(), 100)
        .await
        .unwrap();
    let sessions = CognigyClient::new(&cg, observer())
        .unwrap()
        .sessions_since(since(), 100)
        .await
        .unwrap();
    let mut ids: Vec<i64> = contacts.contacts.iter().map(|c| c.contact_id).collect();
    ids.sort();
    let mut sids: Vec<String> = sessions
        .records
        .iter()
        .map(|s| s.session_id.clone())
        .collect();
    sids.sort();
    assert!(ids.len() > 100 && sids.len() > 50, "the world has data");
    (ids, sids)
}

async fn read_all(sim: &SimHandle) -> Result<(Vec<i64>, Vec<String>), String> {
    let (cx, cg) = configs(sim);
    let contacts = CxoneClient::new(&cx, observer())
        .unwrap()
        .completed_contacts(since(), 100)
        .await
        .map_err(|e| format!("cxone {}: {e}", e.kind()))?;
    let sessions = CognigyClient::new(&cg, observer())
        .unwrap()
        .sessions_since(since(), 100)
        .await
        .map_err(|e| format!("cognigy {}: {e}", e.kind()))?;
    let mut ids: Vec<i64> = contacts.contacts.iter().map(|c| c.contact_id).collect();
    ids.sort();
    let mut sids: Vec<String> = sessions
        .records
        .iter()
        .map(|s| s.session_id.clone())
        .collect();
    sids.sort();
    Ok((ids, sids))
}

fn count(sim: &SimHandle, needle: &str) -> u64 {
    sim.state
        .stats()
        .iter()
        .filter(|(k, _)| k.contains(needle))
        .map(|(_, v)| *v)
        .sum()
}

/// 429 answers with `Retry-After` (seconds and HTTP-date) and without it are retried to the
/// complete data.
#[tokio::test]
async fn rate_limited_reads_complete() {
    let sim = sim().await;
    let reference = clean_read(&sim).await;
    for retry_after in [
        RetryAfter::Seconds(1),
        RetryAfter::HttpDate(1),
        RetryAfter::None,
    ] {
        sim.state.set_faults(Faults {
            rate_limit_429: 3,
            retry_after,
            ..Faults::default()
        });
        assert_eq!(read_all(&sim).await.unwrap(), reference, "{retry_after:?}");
    }
}

/// A burst of 503s is retried to the complete data.
#[tokio::test]
async fn server_error_burst_is_retried() {
    let sim = sim().await;
    let reference = clean_read(&sim).await;
    sim.state.set_faults(Faults {
        server_error_burst: 3,
        ..Faults::default()
    });
    assert_eq!(read_all(&sim).await.unwrap(), reference);
}

/// Answers slower than the client timeout end in a typed timeout error, not a hang or a panic.
#[tokio::test]
async fn slow_answers_are_a_timeout_error() {
    let sim = sim().await;
    let (mut cx, _) = configs(&sim);
    cx.http.timeout = Duration::from_millis(200);
    cx.http.max_retries = 1;
    sim.state.set_faults(Faults {
        slow_ms: 600,
        ..Faults::default()
    });
    let err = CxoneClient::new(&cx, observer())
        .unwrap()
        .completed_contacts(since(), 100)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "timeout", "{err}");
}

/// A truncated or malformed page is a typed decode error naming the endpoint, never a partial batch.
#[tokio::test]
async fn broken_pages_are_decode_errors() {
    let sim = sim().await;
    for faults in [
        Faults {
            truncated_pages: 1,
            ..Faults::default()
        },
        Faults {
            malformed_pages: 1,
            ..Faults::default()
        },
    ] {
        sim.state.set_faults(faults.clone());
        let (cx, _) = configs(&sim);
        let err = CxoneClient::new(&cx, observer())
            .unwrap()
            .completed_contacts(since(), 100)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "decode", "{faults:?}: {err}");
        assert!(err.to_string().contains("contacts_completed"), "{err}");
        sim.state.set_faults(faults);
        let (_, cg) = configs(&sim);
        let err = CognigyClient::new(&cg, observer())
            .unwrap()
            .sessions_since(since(), 100)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "decode", "{err}");
    }
}

/// A token that dies before its `expires_in` causes one re-authentication and the read completes.
#[tokio::test]
async fn token_dying_early_reauthenticates() {
    let sim = sim().await;
    let reference = clean_read(&sim).await;
    sim.state.set_faults(Faults {
        token_dies_after_seconds: Some(1),
        ..Faults::default()
    });
    let (cx, _) = configs(&sim);
    let client = CxoneClient::new(&cx, observer()).unwrap();
    client.completed_contacts(since(), 100).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let tokens_before = count(&sim, "auth/token");
    let again = client.completed_contacts(since(), 100).await.unwrap();
    let mut ids: Vec<i64> = again.contacts.iter().map(|c| c.contact_id).collect();
    ids.sort();
    assert_eq!(ids, reference.0);
    assert!(
        count(&sim, "auth/token") > tokens_before,
        "a new token was requested"
    );
}

/// Cognigy's 500 at the end of a keyset is the end of data when configured, an error otherwise.
#[tokio::test]
async fn keyset_end_500() {
    let sim = sim().await;
    let reference = clean_read(&sim).await;
    sim.state.set_faults(Faults {
        keyset_end_500: true,
        ..Faults::default()
    });
    assert_eq!(read_all(&sim).await.unwrap().1, reference.1);
    // A keyset past the newest record is where the real service answers 500.
    let (_, mut cg) = configs(&sim);
    let newest = CognigyClient::new(&cg, observer())
        .unwrap()
        .sessions_since(since(), 100)
        .await
        .unwrap()
        .newest
        .unwrap();
    let past_end = CognigyClient::new(&cg, observer())
        .unwrap()
        .sessions_since(newest, 100)
        .await
        .unwrap();
    assert!(
        past_end.records.is_empty() && past_end.ended_on_500,
        "{past_end:?}"
    );
    cg.end_of_keyset_500 = false;
    cg.http.max_retries = 0;
    let err = CognigyClient::new(&cg, observer())
        .unwrap()
        .sessions_since(newest, 100)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500), "{err}");
}

/// Old-generation CXone field names and string values read as the same contacts.
#[tokio::test]
async fn old_cxone_fields_read_the_same() {
    let sim = sim().await;
    let (cx, _) = configs(&sim);
    let client = CxoneClient::new(&cx, observer()).unwrap();
    let new = client
        .completed_contacts(since(), 100)
        .await
        .unwrap()
        .contacts;
    sim.state.set_faults(Faults {
        old_cxone_fields: true,
        odata_underscore_id: true,
        ..Faults::default()
    });
    let old = client
        .completed_contacts(since(), 100)
        .await
        .unwrap()
        .contacts;
    assert_eq!(old, new);
}

/// Conversations and Analytics read with `$select` equal the whole records read without it, and
/// a v2.4 server that names the id `_id` (an unverified variant) still yields every id: the
/// client notices the selected records lack it and reads whole records.
#[tokio::test]
async fn selected_cognigy_records_equal_whole_records() {
    let sim = sim().await;
    let (_, mut cg) = configs(&sim);
    let read = |cg: CognigyConfig| async move {
        let client = CognigyClient::new(&cg, observer()).unwrap();
        let conversations = client.conversations_since(since(), 100).await.unwrap();
        let analytics = client.analytics_since(since(), 100).await.unwrap();
        (conversations.records, analytics.records)
    };
    cg.odata_select = false;
    let whole = read(cg.clone()).await;
    assert!(
        whole.0.len() > 100 && whole.1.len() > 50,
        "the world has data"
    );
    cg.odata_select = true;
    assert_eq!(read(cg.clone()).await, whole);
    sim.state.set_faults(Faults {
        odata_underscore_id: true,
        ..Faults::default()
    });
    let renamed = read(cg).await;
    assert_eq!(renamed, whole);
    assert!(renamed.0.iter().all(|c| c.id.is_some()));
}
