//! End to end: the real binary (`serve`) polls the in-process simulator over loopback HTTP with a
//! real SQLite file, and its counters must equal the simulator's ground truth exactly, also when
//! the daemon is SIGKILLed and restarted mid-run.

use crate::support::free_port;
use handover_simulator::{
    self as simulator, ExtensionVersion, Faults, RetryAfter, Scenario, SimulatorOptions,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A daemon process killed when dropped (also when a test panics).
struct Daemon {
    child: Child,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(config: &Path) -> Daemon {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_handover-exporter"))
            .args([
                "serve",
                "--config.file",
                config.to_str().unwrap(),
                "--web.listen-address",
                &format!("127.0.0.1:{port}"),
                "--log.level",
                "warn",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the daemon starts");
        Daemon { child, port }
    }

    /// SIGKILL: no shutdown code runs.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the daemon");
        let _ = self.child.wait();
    }

    async fn get(&self, path: &str) -> Option<String> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let response = reqwest::get(url).await.ok()?;
        response.text().await.ok()
    }

    async fn counts(&self) -> Option<Counts> {
        self.get("/metrics").await.map(|t| Counts::parse(&t))
    }
}

/// The diagnosis counters read from an exposition.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    outcome: BTreeMap<String, u64>,
    failure_reason: BTreeMap<String, u64>,
    pending: u64,
}

impl Counts {
    fn parse(text: &str) -> Counts {
        let mut c = Counts::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let sample = line.split(" # ").next().unwrap_or(line);
            let Some((series, value)) = sample.rsplit_once(' ') else {
                continue;
            };
            let value: f64 = value.parse().unwrap_or(0.0);
            let label = |name: &str| {
                series
                    .split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .unwrap_or("")
                    .to_owned()
            };
            if series.starts_with("handover_contacts_total{") && value > 0.0 {
                c.outcome.insert(label("outcome"), value as u64);
            } else if series.starts_with("handover_failures_total{") && value > 0.0 {
                c.failure_reason.insert(
                    format!("{}/{}", label("failure"), label("reason")),
                    value as u64,
                );
            } else if series.starts_with("handover_pending_contacts{") {
                c.pending = value as u64;
            }
        }
        c
    }

    fn total(&self) -> u64 {
        self.outcome.values().sum()
    }
}

/// The truth's totals in the same shape.
fn truth_counts(truth: &serde_json::Value) -> Counts {
    let map = |key: &str| -> BTreeMap<String, u64> {
        truth["totals"][key]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| v.as_u64().filter(|n| *n > 0).map(|n| (k.clone(), n)))
                    .collect()
            })
            .unwrap_or_default()
    };
    Counts {
        outcome: map("outcome"),
        failure_reason: map("failure_reason"),
        pending: 0,
    }
}

struct World {
    sim: simulator::SimHandle,
    options: SimulatorOptions,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

/// A finite simulated world (all calls ended) and a daemon config pointing at it.
async fn world(calls: usize, cxone_page_size: u32, cxone_max_pages: u32) -> World {
    let options = SimulatorOptions {
        seed: 20261124,
        calls: Some(calls),
        backlog_hours: 1.0,
        cognigy_lag_seconds: 1,
        ..SimulatorOptions::default()
    };
    world_with(options, cxone_page_size, cxone_max_pages).await
}

/// [`world`] with the simulator's options given.
async fn world_with(
    options: SimulatorOptions,
    cxone_page_size: u32,
    cxone_max_pages: u32,
) -> World {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = simulator::spawn(listener, options.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let creds = &options.credentials;
    for (name, value) in [
        ("client_secret", &creds.client_secret),
        ("access_key_secret", &creds.access_key_secret),
        ("api_key", &creds.api_key),
    ] {
        std::fs::write(dir.path().join(name), value).unwrap();
    }
    let rules = simulator::sim_rules();
    let list = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let http = "quota_requests = 500\nquota_window_seconds = 1\nmax_concurrency = 8\ninitial_backoff_ms = 50\nmax_backoff_seconds = 1\n";
    let config = format!(
        r#"state_path = "{state}"
poll_interval_seconds = 1
cycle_deadline_seconds = 60
settle_seconds = 1
overlap_seconds = 60
initial_lookback_hours = 3

[[tenant]]
name = "e2e"

[tenant.cxone]
issuer = "{base}"
client_id = "{client_id}"
client_secret_file = "client_secret"
access_key_id = "{access_key_id}"
access_key_secret_file = "access_key_secret"
page_size = {cxone_page_size}
max_pages = {cxone_max_pages}

[tenant.cxone.http]
{http}
[tenant.cognigy]
api_base_url = "{base}"
odata_base_url = "{base}/odata/v2.4"
api_key_file = "api_key"
project_id = "{project}"

[tenant.cognigy.http]
{http}
[tenant.rules]
bot_entry_points_of_contact = [{entry}]
handover_skills = [{skills}]
contact_id_field = "custom{field}"
cognigy_lag_seconds = 3
handover_deadline_seconds = {deadline}
bot_turn_timeout_ms = {turn}
correlation_window_seconds = {window}
"#,
        state = dir.path().join("state.db").display(),
        base = sim.base_url,
        client_id = creds.client_id,
        access_key_id = creds.access_key_id,
        project = creds.project_id,
        entry = list(&rules.bot_entry_points_of_contact),
        skills = list(&rules.handover_skills),
        field = rules.contact_id_field,
        deadline = rules.handover_deadline_seconds,
        turn = rules.bot_turn_timeout_ms,
        window = rules.correlation_window_seconds,
    );
    let path = dir.path().join("handover-exporter.toml");
    std::fs::write(&path, config).unwrap();
    World {
        sim,
        options,
        dir,
        config: path,
    }
}

async fn truth(w: &World) -> serde_json::Value {
    reqwest::get(format!("{}/_sim/truth", w.sim.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until the daemon has diagnosed `expected` contacts and has none pending.
async fn wait_for_total(daemon: &Daemon, expected: u64, limit: Duration) -> Counts {
    let deadline = Instant::now() + limit;
    let mut last = Counts::default();
    while Instant::now() < deadline {
        if let Some(c) = daemon.counts().await {
            if c.total() >= expected && c.pending == 0 {
                return c;
            }
            last = c;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("daemon did not reach {expected} diagnosed contacts in {limit:?}; last: {last:?}");
}

/// Waits until the daemon has counted or holds pending at least one contact, or five seconds
/// passed (so a kill lands mid-run whatever the faults allow).
async fn wait_for_any_progress(daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(c) = daemon.counts().await {
            if c.total() + c.pending > 0 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the daemon has counted at least `at_least` contacts (so a kill lands mid-run).
async fn wait_for_progress(daemon: &Daemon, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(c) = daemon.counts().await {
            if c.total() >= at_least {
                return c.total();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("daemon made no progress to {at_least}");
}

/// After several cycles the counters equal the ground truth exactly, per outcome and per
/// failure/reason, and the drill-down API returns the evidence of a failed contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_equal_truth_and_drilldown_has_evidence() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let w = world(300, 1000, 50).await;
    let truth = truth(&w).await;
    let expected = truth_counts(&truth);
    assert!(
        expected.total() > 250,
        "the world has bot contacts: {expected:?}"
    );
    let daemon = Daemon::start(&w.config);
    let got = wait_for_total(&daemon, expected.total(), Duration::from_secs(90)).await;
    assert_eq!(got.outcome, expected.outcome);
    assert_eq!(got.failure_reason, expected.failure_reason);

    // The histograms and the escalation counter agree with an offline replay of the same
    // (seeded) world: every bot turn, queue wait and escalation observed exactly once.
    let replay_dir = tempfile::tempdir().unwrap();
    simulator::dump(&w.options, replay_dir.path()).unwrap();
    let data = handover_exporter::replay::read_dir(replay_dir.path()).unwrap();
    let offline = handover_exporter::replay::diagnose_data(&data);
    let metrics = daemon.get("/metrics").await.unwrap();
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split(" # ").next())
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let turns: usize = offline
        .iter()
        .map(|d| d.evidence.bot_turn_seconds.len())
        .sum();
    let escalated = offline
        .iter()
        .filter(|d| d.evidence.escalated_at.is_some())
        .count();
    let waited = offline
        .iter()
        .filter(|d| d.evidence.queue_wait_seconds.is_some())
        .count();
    assert_eq!(
        sample("handover_bot_turn_seconds_count{tenant=\"e2e\"}"),
        turns as f64
    );
    assert_eq!(
        sample("handover_escalations_total{tenant=\"e2e\"}"),
        escalated as f64
    );
    assert_eq!(
        sample("handover_queue_wait_seconds_count{tenant=\"e2e\"}"),
        waited as f64
    );

    let failed = truth["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["reason"] == "signal_rejected")
        .expect("the world has a signal_rejected contact");
    let id = failed["contact_id"].as_i64().unwrap();
    let body = daemon.get(&format!("/api/v1/contacts/{id}")).await.unwrap();
    let row: serde_json::Value = serde_json::from_str(&body).unwrap();
    let d = &row["diagnosis"];
    assert_eq!(d["contact_id"], id);
    assert_eq!(d["reason"], "signal_rejected");
    assert_eq!(d["failure"], "invalid_handover");
    let decided = d["evidence"]["decided_by"][0]["detail"].as_str().unwrap();
    assert!(decided.contains("Error signaling CXone"), "{decided}");
    assert!(d["evidence"]["session_id"].is_string());
    drop(w.dir);
}

/// SIGKILL twice mid-run and restart on the same state file: the final counters still equal the
/// truth exactly (no contact lost, none counted twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_neither_lose_nor_double_count() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    // Small pages on every source make the backlog take many cycles, so the kills land
    // mid-run and every cursor (CXone skip pages, OData keysets, resumed log passes) is
    // exercised across restarts. (A call writes a dozen log lines, the node run's and its
    // flow's, so the log pages are the API's largest.)
    let w = world(300, 20, 1).await;
    let text = std::fs::read_to_string(&w.config).unwrap().replace(
        "\n[tenant.cognigy.http]",
        "odata_page_size = 60\nlogs_page_size = 100\nmax_pages = 2\n\n[tenant.cognigy.http]",
    );
    std::fs::write(&w.config, text).unwrap();
    let expected = truth_counts(&truth(&w).await);

    let first = Daemon::start(&w.config);
    let seen = wait_for_progress(&first, 1).await;
    first.kill();

    let second = Daemon::start(&w.config);
    let resumed = second.counts_after_start().await;
    assert!(
        resumed >= seen,
        "counters continue from the state file: {resumed} < {seen}"
    );
    wait_for_progress(&second, resumed + 1).await;
    second.kill();

    let third = Daemon::start(&w.config);
    let got = wait_for_total(&third, expected.total(), Duration::from_secs(120)).await;
    assert_eq!(got.outcome, expected.outcome);
    assert_eq!(got.failure_reason, expected.failure_reason);
    drop(w.dir);
}

impl Daemon {
    /// The total right after start-up (loaded from the state file).
    async fn counts_after_start(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(c) = self.counts().await {
                return c.total();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("restarted daemon never served /metrics");
    }
}

/// Under injected faults (429 with and without `Retry-After`, a 5xx burst, truncated and malformed
/// pages, tokens that die early, Cognigy's 500 at the end of a keyset, old CXone field names) the
/// daemon still ends with counters equal to the truth, and counts the failed requests and retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_do_not_change_the_totals() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let w = world(200, 50, 2).await;
    let expected = truth_counts(&truth(&w).await);
    w.sim.state.set_faults(Faults {
        rate_limit_429: 9,
        retry_after: RetryAfter::Seconds(1),
        server_error_burst: 4,
        truncated_pages: 2,
        malformed_pages: 2,
        token_ttl_seconds: Some(3),
        token_dies_after_seconds: Some(2),
        keyset_end_500: true,
        old_cxone_fields: true,
        ..Faults::default()
    });
    let daemon = Daemon::start(&w.config);
    let got = wait_for_total(&daemon, expected.total(), Duration::from_secs(120)).await;
    assert_eq!(got.outcome, expected.outcome);
    assert_eq!(got.failure_reason, expected.failure_reason);
    let metrics = daemon.get("/metrics").await.unwrap();
    let value = |prefix: &str, part: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix) && l.contains(part))
            .filter_map(|l| l.split(" # ").next())
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    assert!(
        value("handover_api_requests_total{", "code=\"429\"") > 0.0,
        "429s are counted"
    );
    assert!(
        value("handover_api_requests_total{", "code=\"5xx\"") > 0.0,
        "5xx are counted"
    );
    assert!(
        value("handover_api_retries_total{", "") > 0.0,
        "retries are counted"
    );
    assert!(
        value("handover_poll_failures_total{", "") > 0.0,
        "malformed pages fail a poll"
    );
    drop(w.dir);
}

/// An unreachable Cognigy never stops CXone polling or `/metrics`: each source reports its own
/// `up`, the failure is counted, readiness names the source, and nothing is diagnosed on half
/// the data (the contacts wait as pending).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_source_is_isolated() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let w = world(50, 1000, 50).await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    let text = std::fs::read_to_string(&w.config).unwrap();
    let text = text
        .replace(&format!("api_base_url = \"{}\"", w.sim.base_url), &format!("api_base_url = \"{closed}\""))
        .replace(
            &format!("odata_base_url = \"{}/odata/v2.4\"", w.sim.base_url),
            &format!("odata_base_url = \"{closed}/odata/v2.4\""),
        )
        .replace("quota_requests = 500\nquota_window_seconds = 1\nmax_concurrency = 8\ninitial_backoff_ms = 50\nmax_backoff_seconds = 1\n\n[tenant.rules]", "max_retries = 0\n\n[tenant.rules]");
    std::fs::write(&w.config, text).unwrap();
    let daemon = Daemon::start(&w.config);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = daemon.get("/metrics").await.unwrap_or_default();
        let up = |source: &str| {
            metrics.contains(&format!(
                "handover_up{{tenant=\"e2e\",source=\"{source}\"}} 1"
            ))
        };
        let cognigy_failed = metrics.lines().any(|l| {
            l.starts_with("handover_poll_failures_total{tenant=\"e2e\",source=\"cognigy\"}")
                && !l.ends_with(" 0")
        });
        let pending = Counts::parse(&metrics).pending;
        if up("cxone") && !up("cognigy") && cognigy_failed && pending > 0 {
            assert_eq!(
                Counts::parse(&metrics).total(),
                0,
                "nothing is diagnosed without Cognigy"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sources were not reported separately: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = reqwest::get(format!("http://127.0.0.1:{}/readyz", daemon.port))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let body = ready.text().await.unwrap();
    assert!(body.contains("cognigy"), "{body}");
    drop(w.dir);
}

/// SIGTERM shuts the daemon down cleanly: it stops polling, finishes serving, and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let w = world(20, 1000, 50).await;
    let mut daemon = Daemon::start(&w.config);
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.get("/healthz").await.as_deref() != Some("ok") {
        assert!(Instant::now() < deadline, "daemon never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = daemon.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "daemon did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(w.dir);
}

/// For every published version of the CXone extension, the daemon's totals over a world whose
/// calls write that version's log lines (one of each node outcome first, then a mixed stream,
/// about half of the lines without `meta.sessionId`) equal the truth exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_extension_version_gives_the_truth() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    for version in ExtensionVersion::ALL {
        let options = SimulatorOptions {
            seed: 20261129,
            calls: Some(80),
            backlog_hours: 1.0,
            cognigy_lag_seconds: 1,
            scenario: Scenario::LogLines,
            extension_version: version,
            ..SimulatorOptions::default()
        };
        let w = world_with(options, 100, 5).await;
        let expected = truth_counts(&truth(&w).await);
        let daemon = Daemon::start(&w.config);
        let got = wait_for_total(&daemon, expected.total(), Duration::from_secs(120)).await;
        assert_eq!(got.outcome, expected.outcome, "extension {version}");
        assert_eq!(
            got.failure_reason, expected.failure_reason,
            "extension {version}"
        );
        drop(daemon);
        drop(w.dir);
    }
}

/// A world behind an API that answers every request 200 ms late, polled every 2 s (the cycle
/// deadline is the poll interval), with page sizes small enough that every source has many
/// pages of backlog: no cycle can read it all.
async fn slow_world(calls: usize) -> World {
    let w = world(calls, 20, 50).await;
    let text = std::fs::read_to_string(&w.config)
        .unwrap()
        .replace(
            "poll_interval_seconds = 1\ncycle_deadline_seconds = 60\n",
            "poll_interval_seconds = 2\n",
        )
        .replace(
            "\n[tenant.cognigy.http]",
            "odata_page_size = 20\nlogs_page_size = 100\n\n[tenant.cognigy.http]",
        );
    assert!(text.contains("poll_interval_seconds = 2\n") && !text.contains("cycle_deadline"));
    std::fs::write(&w.config, text).unwrap();
    w.sim.state.set_faults(Faults {
        slow_ms: 200,
        ..Faults::default()
    });
    w
}

/// A counter's value in an exposition, summed over the series whose line contains `part`.
fn counter(metrics: &str, family: &str, part: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(family) && l.contains(part))
        .filter_map(|l| l.split(" # ").next())
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Issue 11: with every answer 200 ms late, a 2 s poll interval and many pages of backlog per
/// source, every cycle makes progress (none fails at its deadline; they end `catching_up` until
/// the backlog is read) and the final totals equal the truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_api_short_deadline_progresses_every_cycle() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let w = slow_world(200).await;
    let expected = truth_counts(&truth(&w).await);
    let daemon = Daemon::start(&w.config);
    let got = wait_for_total(&daemon, expected.total(), Duration::from_secs(240)).await;
    assert_eq!(got.outcome, expected.outcome);
    assert_eq!(got.failure_reason, expected.failure_reason);
    let metrics = daemon.get("/metrics").await.unwrap();
    assert_eq!(
        counter(&metrics, "handover_cycle_failures_total{", ""),
        0.0,
        "no cycle failed, at its deadline or otherwise"
    );
    let catching_up = counter(
        &metrics,
        "handover_cycles_total{",
        "outcome=\"catching_up\"",
    );
    assert!(
        catching_up >= 3.0,
        "the backlog took several cycles that stopped at their deadline: {catching_up}"
    );
    drop(w.dir);
}

/// The cursors the daemon has written so far, as text (read from its state file while it runs).
fn cursors_written(w: &World) -> String {
    let path = w.dir.path().join("state.db");
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return String::new();
    };
    let rows = conn
        .prepare("SELECT source, watermark, detail FROM cursors ORDER BY source")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| {
                Ok(format!(
                    "{} {} {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?
                ))
            })?
            .collect::<Result<Vec<_>, _>>()
        });
    rows.map(|r| r.join("\n")).unwrap_or_default()
}

/// Issue 11: SIGKILL of the real binary in the middle of such a slow cycle (pages already
/// written since it started, the backlog not yet read), three times, each time restarted on the same state file, loses
/// nothing and double-counts nothing: the final totals equal the truth exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_slow_cycle_loses_and_doubles_nothing() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let w = slow_world(200).await;
    let expected = truth_counts(&truth(&w).await);
    for round in 0..3 {
        let daemon = Daemon::start(&w.config);
        let deadline = Instant::now() + Duration::from_secs(60);
        // Mid-cycle: a few pages written since this start (every answer takes 200 ms, so the
        // daemon is always inside a cycle), and the backlog not read yet.
        let before = cursors_written(&w);
        loop {
            tokio::time::sleep(Duration::from_millis(100 + 300 * round)).await;
            if cursors_written(&w) != before {
                break;
            }
            assert!(Instant::now() < deadline, "the daemon wrote no page");
        }
        let counted = daemon.counts().await.map(|c| c.total()).unwrap_or(0);
        assert!(
            counted < expected.total(),
            "the kill must land before the end"
        );
        daemon.kill();
    }
    let last = Daemon::start(&w.config);
    let got = wait_for_total(&last, expected.total(), Duration::from_secs(240)).await;
    assert_eq!(got.outcome, expected.outcome);
    assert_eq!(got.failure_reason, expected.failure_reason);
    assert_eq!(got.total(), expected.total(), "nothing counted twice");
    drop(w.dir);
}

/// One row of the fault matrix: faults set before the daemon starts, optionally a Cognigy outage
/// from the start for some seconds, SIGKILL restarts, and daemon config tweaks.
struct FaultRow {
    name: &'static str,
    faults: Faults,
    /// Cognigy answers 503 for this long from the start.
    cognigy_outage: Option<Duration>,
    /// The rules' `max_pending_seconds`.
    max_pending_seconds: u64,
    /// SIGKILL and restart the daemon this many times mid-run.
    kills: u32,
    /// The HTTP `timeout_seconds` of both APIs (only the slow-answer rows lower it).
    timeout_seconds: Option<u64>,
}

impl FaultRow {
    fn new(name: &'static str, faults: Faults) -> FaultRow {
        FaultRow {
            name,
            faults,
            cognigy_outage: None,
            max_pending_seconds: 7200,
            kills: 0,
            timeout_seconds: None,
        }
    }

    /// Whether the outage outlasts `max_pending_seconds`: every contact then waits for Cognigy
    /// until the limit and is `undetermined` by design (the truth "lost to a long outage").
    fn long_outage(&self) -> bool {
        self.cognigy_outage
            .is_some_and(|d| d.as_secs() > self.max_pending_seconds)
    }
}

/// The fault matrix of issue 17 at the default limits (request budgets, retries, backoff: no
/// `[http]` overrides but a lower timeout where a row needs answers slower than it): each fault
/// alone, then together, against a finite world; after each, the totals equal the truth, except
/// that an outage longer than `max_pending_seconds` makes every contact `undetermined`. It prints
/// the table the README's Reliability section holds. `FAULT_MATRIX_CALLS` sets the calls per row
/// (default 60, small for CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_at_the_default_limits() {
    let _one_at_a_time = crate::support::one_at_a_time().await;
    let calls: usize = std::env::var("FAULT_MATRIX_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let storm = |retry_after| Faults {
        rate_limit_429: 3,
        retry_after,
        ..Faults::default()
    };
    let mut rows = vec![
        FaultRow::new("none", Faults::default()),
        FaultRow::new("429 storm, Retry-After 1 s", storm(RetryAfter::Seconds(1))),
        FaultRow::new("429 storm, no Retry-After", storm(RetryAfter::None)),
        FaultRow::new(
            "5xx burst (20 requests)",
            Faults {
                server_error_burst: 20,
                ..Faults::default()
            },
        ),
        FaultRow {
            timeout_seconds: Some(2),
            ..FaultRow::new(
                "answers slower than the timeout (3)",
                Faults {
                    slow_burst: 3,
                    slow_burst_ms: 4000,
                    ..Faults::default()
                },
            )
        },
        FaultRow::new(
            "connection reset mid-body (4 pages)",
            Faults {
                reset_pages: 4,
                ..Faults::default()
            },
        ),
        FaultRow::new(
            "truncated pages (3)",
            Faults {
                truncated_pages: 3,
                ..Faults::default()
            },
        ),
        FaultRow::new(
            "malformed pages (3)",
            Faults {
                malformed_pages: 3,
                ..Faults::default()
            },
        ),
        FaultRow::new(
            "tokens dying mid-cycle",
            Faults {
                token_ttl_seconds: Some(3),
                token_dies_after_seconds: Some(2),
                ..Faults::default()
            },
        ),
        FaultRow {
            cognigy_outage: Some(Duration::from_secs(8)),
            max_pending_seconds: 120,
            ..FaultRow::new("Cognigy outage 8 s < max_pending 120 s", Faults::default())
        },
        FaultRow {
            // Long enough past the limit that the retries and backoff of the default limits (a
            // failing read takes seconds to give up) still leave time to give the contacts up.
            cognigy_outage: Some(Duration::from_secs(60)),
            max_pending_seconds: 10,
            ..FaultRow::new("Cognigy outage 60 s > max_pending 10 s", Faults::default())
        },
        FaultRow {
            kills: 2,
            ..FaultRow::new("SIGKILL restarts (2)", Faults::default())
        },
        FaultRow {
            cognigy_outage: Some(Duration::from_secs(6)),
            max_pending_seconds: 120,
            kills: 2,
            timeout_seconds: Some(2),
            ..FaultRow::new(
                "all of the above but the long outage",
                Faults {
                    rate_limit_429: 5,
                    retry_after: RetryAfter::Seconds(1),
                    server_error_burst: 6,
                    slow_burst: 2,
                    slow_burst_ms: 4000,
                    reset_pages: 2,
                    truncated_pages: 2,
                    malformed_pages: 2,
                    token_ttl_seconds: Some(3),
                    token_dies_after_seconds: Some(2),
                    ..Faults::default()
                },
            )
        },
    ];
    let mut table = vec![
        "| faults | contacts | match the truth | undetermined by a long outage | lost | duplicated |"
            .to_owned(),
        "|---|---|---|---|---|---|".to_owned(),
    ];
    let mut failures = Vec::new();
    for (i, row) in rows.drain(..).enumerate() {
        let options = SimulatorOptions {
            seed: 7000 + i as u64,
            calls: Some(calls),
            backlog_hours: 1.0,
            cognigy_lag_seconds: 1,
            ..SimulatorOptions::default()
        };
        let w = world_with(options, 100, 5).await;
        let mut text = std::fs::read_to_string(&w.config).unwrap();
        // The default limits: no request budget, retry or backoff overrides.
        text = text.replace(
            "quota_requests = 500\nquota_window_seconds = 1\nmax_concurrency = 8\ninitial_backoff_ms = 50\nmax_backoff_seconds = 1\n",
            &row.timeout_seconds
                .map(|t| format!("timeout_seconds = {t}\n"))
                .unwrap_or_default(),
        );
        text = text.replace(
            "correlation_window_seconds",
            &format!(
                "max_pending_seconds = {}\ncorrelation_window_seconds",
                row.max_pending_seconds
            ),
        );
        std::fs::write(&w.config, text).unwrap();
        let truth_counts = truth_counts(&truth(&w).await);
        let contacts = truth_counts.total();
        let expected = if row.long_outage() {
            Counts {
                outcome: [("undetermined".to_owned(), contacts)]
                    .into_iter()
                    .collect(),
                failure_reason: BTreeMap::new(),
                pending: 0,
            }
        } else {
            truth_counts
        };
        w.sim.state.set_faults(Faults {
            cognigy_down: row.cognigy_outage.is_some(),
            ..row.faults.clone()
        });
        // The outage ends on its own clock, whatever the daemon is doing (restarts included).
        let outage_end = row.cognigy_outage.map(|outage| {
            let state = w.sim.state.clone();
            tokio::spawn(async move {
                tokio::time::sleep(outage).await;
                let mut faults = state.faults();
                faults.cognigy_down = false;
                state.set_faults(faults);
            })
        });
        let mut daemon = Daemon::start(&w.config);
        for _ in 0..row.kills {
            // Kill mid-run: after the first poll wrote something (a counted contact, or pending
            // contacts while Cognigy is down).
            wait_for_any_progress(&daemon).await;
            daemon.kill();
            daemon = Daemon::start(&w.config);
        }
        if let Some(task) = outage_end {
            let _ = task.await;
        }
        let got = wait_for_total(&daemon, expected.total(), Duration::from_secs(300)).await;
        let matches: u64 = expected
            .outcome
            .iter()
            .map(|(k, want)| (*want).min(got.outcome.get(k).copied().unwrap_or(0)))
            .sum();
        let undetermined = if row.long_outage() { contacts } else { 0 };
        let lost = expected.total().saturating_sub(got.total());
        let duplicated = got.total().saturating_sub(expected.total());
        table.push(format!(
            "| {} | {contacts} | {} | {undetermined} | {lost} | {duplicated} |",
            row.name,
            matches.saturating_sub(undetermined)
        ));
        if got.outcome != expected.outcome || got.failure_reason != expected.failure_reason {
            failures.push(format!(
                "{}: got {:?} / {:?}, want {:?} / {:?}",
                row.name,
                got.outcome,
                got.failure_reason,
                expected.outcome,
                expected.failure_reason
            ));
        }
        drop(daemon);
        drop(w.dir);
    }
    println!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}\n{failures:#?}", table.join("\n"));
}
