//! Catch-up benchmark (issues 5 and 11): the simulator on loopback with a 24 h backlog of a tenant
//! taking 100 000 calls a day, and in the same run
//! (a) the daemon's pipeline (`Poller::run_cycle_until` back to back with the default 60 s cycle
//!     deadline, real SQLite file) catching up from an empty state file at the DEFAULT limits
//!     (Cognigy 1000 requests per 5 minutes, CXone 600 per 5 minutes, default page sizes; set
//!     `CATCHUP_LIMITS=off` for the simulator tenant's fast limits), in a child process of its own
//!     (this bench re-executed with `CATCHUP_ROLE=daemon`), so its peak RSS is the daemon's alone
//!     (runtime, SQLite, everything) and not the simulator's world; its wall time is set against
//!     the quota floor (the requests it made to each API divided by that API's allowed rate),
//! (b) the naive per-contact strategy (one `GET /contacts/{id}` and one OData
//!     `Conversations?$filter=sessionId eq '...'` per completed contact, sequentially) over a
//!     sample, scaled linearly to the whole backlog,
//! (c) the I/O floor: exactly the requests the daemon made, replayed with their auth and nothing
//!     else done (each stream in order, the five streams concurrently, as the daemon reads them).
//!
//! The parent process holds the simulator and its request log (requests and bytes are counted
//! there for every strategy); the child reports its cycles, wall and CPU time and memory in one
//! `CATCHUP_DAEMON_RESULT {json}` line on stdout. It prints figures and ratios; it asserts no
//! target. Settings via env: `CATCHUP_CALLS_PER_DAY` (100000), `CATCHUP_BACKLOG_HOURS` (24),
//! `CATCHUP_NAIVE_SAMPLE` (2000), `CATCHUP_SEED` (7), `CATCHUP_LATENCY_MS` (0: the simulator
//! delays every API answer this long, the same for all three strategies, to model the round trip
//! to a real API instead of loopback), `CATCHUP_LIMITS` (`default`), `CATCHUP_COGNIGY_OUTAGE`
//! (0; 1: Cognigy answers 503 while the daemon reads the CXone backlog, then recovers, and the
//! Cognigy catch-up after the outage is timed: with `CATCHUP_BACKLOG_HOURS=2`, a 2 h outage).
//! The naive strategy's requests are counted with fast limits and set against the quota too.
//! Command-line arguments (`cargo bench` passes `--bench`) are ignored.

/// The binary's allocator (src/main.rs), so these figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/mod.rs"]
mod support;

use chrono::Utc;
use handover_exporter::metrics::Metrics;
use handover_exporter::pipeline::{Poller, Timing};
use handover_exporter::readiness::Readiness;
use handover_exporter::sources::cognigy::CognigyClient;
use handover_exporter::sources::cxone::CxoneClient;
use handover_exporter::sources::http::{NoopObserver, RequestObserver};
use handover_exporter::store::Store;
use handover_simulator::{Faults, SimulatorOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{env_or, mb, Recorded, SimServer};

/// What one strategy cost.
#[derive(Debug, Default, Clone, Copy)]
struct Cost {
    wall: Duration,
    requests: u64,
    bytes: u64,
}

fn cost_of(log: &[Recorded], wall: Duration) -> Cost {
    Cost {
        wall,
        requests: log.len() as u64,
        bytes: log.iter().map(|r| r.bytes).sum(),
    }
}

/// The environment variable that makes this executable the daemon child.
const ROLE_VAR: &str = "CATCHUP_ROLE";
/// The prefix of the child's one machine-readable summary line on stdout.
const RESULT_MARKER: &str = "CATCHUP_DAEMON_RESULT ";

/// The bench settings, from the environment (the child gets the parent's values explicitly).
#[derive(Debug, Clone, Copy)]
struct Settings {
    calls_per_day: f64,
    backlog_hours: f64,
    sample: usize,
    seed: u64,
    latency_ms: u64,
    /// The default limits (quotas, page sizes); false: the simulator tenant's fast ones.
    default_limits: bool,
    /// Cognigy is down while the CXone backlog is read, then recovers.
    outage: bool,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            calls_per_day: env_or("CATCHUP_CALLS_PER_DAY", 100_000.0),
            backlog_hours: env_or("CATCHUP_BACKLOG_HOURS", 24.0),
            sample: env_or("CATCHUP_NAIVE_SAMPLE", 2000),
            seed: env_or("CATCHUP_SEED", 7),
            latency_ms: env_or("CATCHUP_LATENCY_MS", 0),
            default_limits: std::env::var("CATCHUP_LIMITS").as_deref() != Ok("off"),
            outage: env_or("CATCHUP_COGNIGY_OUTAGE", 0) == 1,
        }
    }

    /// The simulator's options; the daemon child derives its config from the same options.
    fn simulator_options(&self) -> SimulatorOptions {
        SimulatorOptions {
            seed: self.seed,
            rate_per_day: Some(self.calls_per_day),
            backlog_hours: self.backlog_hours,
            cognigy_lag_seconds: 60,
            faults: Faults {
                slow_ms: self.latency_ms,
                ..Faults::default()
            },
            ..SimulatorOptions::default()
        }
    }
}

/// What the daemon child reports about its catch-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DaemonResult {
    cycles: u32,
    diagnosed: usize,
    pending: u64,
    /// From opening the store to the end of the last cycle.
    wall_seconds: f64,
    /// User + system CPU time of the whole child process (`/proc/self/stat`).
    cpu_seconds: f64,
    /// `VmHWM` of the child at the end: its peak resident set, in kB.
    peak_rss_kb: u64,
    /// `VmRSS` of the child when it started, in kB.
    start_rss_kb: u64,
    /// Outage mode: seconds from Cognigy's recovery to the end, and the Cognigy pages read then.
    recovery_seconds: f64,
    recovery_cognigy_pages: u32,
    /// Stored diagnoses by reason (the persistent totals), to compare with the truth.
    reasons: BTreeMap<String, u64>,
}

fn main() -> anyhow::Result<()> {
    handover_exporter::allocator::tune();
    if std::env::var(ROLE_VAR).as_deref() == Ok("daemon") {
        return daemon_child();
    }
    let settings = Settings::from_env();
    let Settings {
        calls_per_day,
        backlog_hours,
        sample,
        ..
    } = settings;
    println!(
        "catch-up benchmark: {}; simulated API latency {} ms per request",
        support::machine(),
        settings.latency_ms
    );

    let options = settings.simulator_options();
    let sim = SimServer::start(options.clone(), 2)?;
    // Generate the backlog before measuring (the simulator would otherwise do it on the first
    // request, inside the daemon's time).
    let generated = Instant::now();
    let (calls, contact_ids, sessions_by_call) = {
        let world = sim.state.world_at(Utc::now());
        let now = Utc::now();
        let visible: Vec<_> = world.calls.iter().filter(|c| c.visible_at <= now).collect();
        let contacts: Vec<(i64, Option<String>)> = visible
            .iter()
            .flat_map(|c| {
                let sid = c.session.as_ref().map(|s| s.session_id.clone());
                c.contacts.iter().map(move |x| (x.contact_id, sid.clone()))
            })
            .collect();
        let with_session = visible.iter().filter(|c| c.session.is_some()).count();
        (world.calls.len(), contacts, with_session)
    };
    println!(
        "world: {calls} calls over {backlog_hours} h at {calls_per_day} calls/day, {} completed contacts, {sessions_by_call} bot sessions (generated in {:.1} s)",
        contact_ids.len(),
        generated.elapsed().as_secs_f64()
    );
    let rss_with_world = support::status_kb("VmRSS");

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("client")
        .enable_all()
        .build()?;

    // (a) the daemon's pipeline, in a child process; the parent only serves and records.
    let state_dir = tempfile::tempdir()?;
    let state_path = state_dir.path().join("state.db");
    let mark = sim.log.mark();
    let started = Instant::now();
    let result = run_daemon_child(&settings, &sim.base_url, &state_path)?;
    let child_wall = started.elapsed();
    let daemon_log = sim.log.since(mark);
    let daemon = cost_of(
        &daemon_log,
        Duration::from_secs_f64(result.wall_seconds.max(0.0)),
    );
    let DaemonResult {
        cycles,
        diagnosed,
        pending,
        ..
    } = result.clone();
    // The quota floor: each API's requests over its allowed rate (the two are read at once).
    let cognigy_requests = daemon_log.iter().filter(|r| is_cognigy(r)).count() as f64;
    let cxone_requests = daemon_log.len() as f64 - cognigy_requests;
    let (cognigy_rate, cxone_rate) = allowed_rates(&settings);
    let quota_floor = (cognigy_requests / cognigy_rate).max(cxone_requests / cxone_rate);
    // Every diagnosis the daemon stored, against the truth of the calls visible now (those that
    // ended in the last minutes may still be pending inside the Cognigy lag).
    let comparison = compare_with_truth(&sim, &state_path)?;

    // (c) the I/O floor: the same requests, replayed. Its peak RSS growth is what serving and
    // downloading the pages costs (mostly the simulator's), to set against the daemon's growth.
    support::reset_peak_rss();
    let rss_before_floor = support::status_kb("VmRSS");
    let mark = sim.log.mark();
    let started = Instant::now();
    let floor_bytes = client_rt.block_on(replay(&sim.base_url, &daemon_log))?;
    let floor_peak_growth = support::status_kb("VmHWM").saturating_sub(rss_before_floor);
    let floor = Cost {
        wall: started.elapsed(),
        requests: sim.log.since(mark).len() as u64,
        bytes: floor_bytes,
    };

    // (b) the naive per-contact strategy over a sample.
    let step = (contact_ids.len() / sample.max(1)).max(1);
    let picked: Vec<(i64, Option<String>)> = contact_ids
        .iter()
        .step_by(step)
        .take(sample)
        .cloned()
        .collect();
    let tenant = handover_simulator::demo::config(&sim.base_url, &options, Duration::from_secs(5))
        .tenants
        .remove(0);
    let mark = sim.log.mark();
    let started = Instant::now();
    client_rt.block_on(async {
        let observer: Arc<dyn RequestObserver> = Arc::new(NoopObserver);
        let cxone = CxoneClient::new(&tenant.cxone, observer.clone())?;
        let cognigy = CognigyClient::new(&tenant.cognigy, observer)?;
        for (id, session) in &picked {
            cxone.contact(*id).await?;
            // A naive client does not know whether the call reached the bot: it asks anyway.
            let sid = session
                .clone()
                .unwrap_or_else(|| format!("no-session-{id}"));
            cognigy.conversations_for_session(&sid).await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let sample_cost = cost_of(&sim.log.since(mark), started.elapsed());
    let scale = contact_ids.len() as f64 / picked.len().max(1) as f64;
    let naive = Cost {
        wall: sample_cost.wall.mul_f64(scale),
        requests: (sample_cost.requests as f64 * scale).round() as u64,
        bytes: (sample_cost.bytes as f64 * scale).round() as u64,
    };

    println!();
    println!(
        "(a) daemon catch-up: {cycles} cycles, {diagnosed} diagnosed, {pending} still pending (inside the Cognigy lag)"
    );
    println!(
        "    wall {:.2} s ({:.2} s for the child process including start-up), {} API requests, {:.1} MB downloaded, daemon process CPU {:.2} s",
        daemon.wall.as_secs_f64(),
        child_wall.as_secs_f64(),
        daemon.requests,
        daemon.bytes as f64 / 1e6,
        result.cpu_seconds
    );
    println!(
        "    daemon process peak RSS {:.1} MB (the whole child process: runtime, SQLite, everything; {:.1} MB at start) (target < 256 MB); the simulator's process holds the world: {:.1} MB",
        mb(result.peak_rss_kb),
        mb(result.start_rss_kb),
        mb(rss_with_world)
    );
    let by_endpoint = endpoint_counts(&daemon_log);
    println!("    requests by path: {by_endpoint:?}");
    println!(
        "    quota floor: {cognigy_requests} Cognigy requests at {:.3}/s, {cxone_requests} CXone requests at {:.3}/s: {:.1} s; daemon wall / quota floor {:.3}x (target <= 1.2x)",
        cognigy_rate,
        cxone_rate,
        quota_floor,
        daemon.wall.as_secs_f64() / quota_floor.max(1e-9)
    );
    if settings.outage {
        println!(
            "    after the Cognigy outage: recovery read {} Cognigy pages in {:.1} s (their quota floor {:.1} s)",
            result.recovery_cognigy_pages,
            result.recovery_seconds,
            f64::from(result.recovery_cognigy_pages) / cognigy_rate
        );
    }
    println!("    against the truth: {comparison}");
    println!(
        "(b) naive per-contact: sample of {} contacts (every {step}th), {} requests, {:.2} s, {:.1} MB; scaled x{scale:.1} to all {} contacts: {:.1} s, {} requests, {:.1} MB",
        picked.len(),
        sample_cost.requests,
        sample_cost.wall.as_secs_f64(),
        sample_cost.bytes as f64 / 1e6,
        contact_ids.len(),
        naive.wall.as_secs_f64(),
        naive.requests,
        naive.bytes as f64 / 1e6
    );
    println!(
        "(c) I/O floor: the daemon's {} requests replayed: {:.2} s ({:.1} ms per request), {:.1} MB; peak RSS growth {:.1} MB (simulator serving + download alone)",
        floor.requests,
        floor.wall.as_secs_f64(),
        floor.wall.as_secs_f64() * 1e3 / floor.requests.max(1) as f64,
        floor.bytes as f64 / 1e6,
        mb(floor_peak_growth)
    );
    println!();
    // The naive strategy at the same quotas: one CXone and one Cognigy request per contact.
    let naive_quota_floor =
        (naive.requests as f64 / 2.0 / cognigy_rate).max(naive.requests as f64 / 2.0 / cxone_rate);
    println!(
        "    naive at the quotas: {:.0} s ({:.1} h) at the least",
        naive_quota_floor,
        naive_quota_floor / 3600.0
    );
    println!(
        "ratios: naive/daemon API requests {:.1}x, naive quota floor / daemon wall {:.1}x, daemon/quota floor wall {:.3}x, daemon/I-O floor wall {:.2}x; daemon process peak RSS {:.1} MB (target < 256 MB)",
        naive.requests as f64 / daemon.requests.max(1) as f64,
        naive_quota_floor / daemon.wall.as_secs_f64().max(1e-9),
        daemon.wall.as_secs_f64() / quota_floor.max(1e-9),
        daemon.wall.as_secs_f64() / floor.wall.as_secs_f64().max(1e-9),
        mb(result.peak_rss_kb)
    );
    println!("finished with {}", support::machine());
    drop(state_dir);
    Ok(())
}

/// Runs this executable as the daemon child against `base_url`, echoing its stdout, and returns
/// its summary line.
fn run_daemon_child(
    settings: &Settings,
    base_url: &str,
    state_path: &Path,
) -> anyhow::Result<DaemonResult> {
    let mut child = Command::new(std::env::current_exe()?)
        .env(ROLE_VAR, "daemon")
        .env("CATCHUP_BASE_URL", base_url)
        .env("CATCHUP_STATE_PATH", state_path)
        .env("CATCHUP_CALLS_PER_DAY", settings.calls_per_day.to_string())
        .env("CATCHUP_BACKLOG_HOURS", settings.backlog_hours.to_string())
        .env("CATCHUP_SEED", settings.seed.to_string())
        .env("CATCHUP_LATENCY_MS", settings.latency_ms.to_string())
        .env(
            "CATCHUP_LIMITS",
            if settings.default_limits {
                "default"
            } else {
                "off"
            },
        )
        .env(
            "CATCHUP_COGNIGY_OUTAGE",
            if settings.outage { "1" } else { "0" },
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("the daemon child has no stdout pipe"))?;
    let mut result = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        match line.strip_prefix(RESULT_MARKER) {
            Some(json) => result = Some(serde_json::from_str::<DaemonResult>(json)?),
            None => println!("{line}"),
        }
    }
    let status = child.wait()?;
    if !status.success() {
        anyhow::bail!("the daemon child failed: {status}");
    }
    result.ok_or_else(|| anyhow::anyhow!("the daemon child printed no {RESULT_MARKER}line"))
}

/// The child's side: the daemon's catch-up loop (`Poller::run_cycle_until` with the default 60 s
/// deadline, back to back until two complete cycles in a row), each cycle printed, then one
/// `CATCHUP_DAEMON_RESULT {json}` line. In outage mode Cognigy is down (a simulator fault set
/// over its control API) until CXone has been read to the end.
fn daemon_child() -> anyhow::Result<()> {
    let start_rss_kb = support::status_kb("VmRSS");
    let settings = Settings::from_env();
    let base_url = std::env::var("CATCHUP_BASE_URL")
        .map_err(|_| anyhow::anyhow!("CATCHUP_BASE_URL is not set for the daemon child"))?;
    let state_path = std::env::var("CATCHUP_STATE_PATH")
        .map_err(|_| anyhow::anyhow!("CATCHUP_STATE_PATH is not set for the daemon child"))?;
    let options = settings.simulator_options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("daemon")
        .enable_all()
        .build()?;
    let mut config = handover_simulator::demo::config(&base_url, &options, Duration::from_secs(5));
    config.state_path = state_path;
    if settings.default_limits {
        default_limits(&mut config);
    }
    let tenant = config.tenants[0].clone();
    let names = vec![tenant.name.clone()];
    let deadline = config.cycle_deadline;
    let faults_url = format!("{base_url}/_sim/faults");
    let set_faults = |faults: Faults| {
        let url = faults_url.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&faults)
                .send()
                .await?
                .error_for_status()?;
            Ok::<_, anyhow::Error>(())
        }
    };
    let base_faults = options.faults.clone();
    let started = Instant::now();
    let mut recovery: Option<(Instant, u32)> = None;
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let (cycles, diagnosed, pending) = runtime.block_on(async {
        if settings.outage {
            set_faults(Faults {
                cognigy_down: true,
                ..base_faults.clone()
            })
            .await?;
        }
        let store = Arc::new(Mutex::new(Store::open(&config.state_path)?));
        let store_for_summary = store.clone();
        let metrics = Arc::new(Metrics::new(&names, "bench"));
        let readiness = Arc::new(Readiness::new(&names, config.poll_interval));
        let poller = Poller::new(
            &tenant,
            Timing::from_config(&config),
            store,
            metrics,
            readiness,
        )?;
        let mut cycles = 0u32;
        let mut diagnosed = 0usize;
        let mut previous_complete = false;
        loop {
            let report = poller
                .run_cycle_until(Utc::now(), Instant::now() + deadline)
                .await?;
            cycles += 1;
            diagnosed += report.diagnosed;
            if let Some((_, pages)) = recovery.as_mut() {
                *pages += report.cognigy_pages;
            }
            if settings.outage && recovery.is_none() && report.cxone_ok && !report.cxone_more {
                println!("  CXone read to the end; Cognigy recovers now");
                set_faults(base_faults.clone()).await?;
                recovery = Some((Instant::now(), 0));
            }
            println!(
                "  cycle {cycles}: read {} contacts, {} cognigy records; {} cases, {} diagnosed, {} pending, more={} (cxone {} ms, cognigy {} ms); RSS {:.1} MB, peak so far {:.1} MB",
                report.contacts_read, report.cognigy_records_read, report.cases, report.diagnosed,
                report.pending, report.more, report.cxone_ms, report.cognigy_ms,
                support::mb(support::status_kb("VmRSS")), support::mb(support::status_kb("VmHWM"))
            );
            let complete = !report.more && report.cxone_ok && report.cognigy_ok && !(settings.outage && recovery.is_none());
            if (complete && previous_complete) || cycles >= 500 {
                // The persistent totals: reading every stored diagnosis back would make the
                // bench, not the daemon, the peak of this process's memory.
                let totals = store_for_summary
                    .lock()
                    .map_err(|_| anyhow::anyhow!("store lock poisoned"))?
                    .totals()?;
                let mut outcomes: BTreeMap<&str, u64> = BTreeMap::new();
                for t in &totals {
                    *outcomes.entry(t.outcome.as_str()).or_insert(0) += t.count;
                    *reasons.entry(t.reason.as_str().to_owned()).or_insert(0) += t.count;
                }
                println!("  stored diagnoses by outcome: {outcomes:?}");
                break Ok::<_, anyhow::Error>((cycles, diagnosed, report.pending));
            }
            previous_complete = complete;
        }
    })?;
    let result = DaemonResult {
        cycles,
        diagnosed,
        pending,
        wall_seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: support::process_cpu_seconds().unwrap_or(0.0),
        peak_rss_kb: support::status_kb("VmHWM"),
        start_rss_kb,
        recovery_seconds: recovery.map_or(0.0, |(at, _)| at.elapsed().as_secs_f64()),
        recovery_cognigy_pages: recovery.map_or(0, |(_, pages)| pages),
        reasons,
    };
    println!("{RESULT_MARKER}{}", serde_json::to_string(&result)?);
    Ok(())
}

/// The daemon's settings at the defaults: the default HTTP settings (budgets of 1000 Cognigy and
/// 600 CXone requests per 5 minutes), page sizes, overlap, settle and 60 s cycles.
fn default_limits(config: &mut handover_exporter::config::Config) {
    use handover_exporter::config::HttpSettings;
    config.overlap = Duration::from_secs(300);
    config.settle = Duration::from_secs(60);
    config.poll_interval = Duration::from_secs(60);
    config.cycle_deadline = Duration::from_secs(60);
    let tenant = &mut config.tenants[0];
    tenant.cxone.http = HttpSettings::cxone_default();
    tenant.cognigy.http = HttpSettings::cognigy_default();
    tenant.cxone.page_size = 1000;
    tenant.cxone.max_pages = 50;
    tenant.cognigy.odata_page_size = 1000;
    tenant.cognigy.logs_page_size = 100;
    tenant.cognigy.max_pages = handover_exporter::config::DEFAULT_COGNIGY_MAX_PAGES;
}

/// The allowed request rates (Cognigy, CXone) per second of the daemon's settings.
fn allowed_rates(settings: &Settings) -> (f64, f64) {
    use handover_exporter::config::HttpSettings;
    let rate = |h: HttpSettings| f64::from(h.quota_requests) / h.quota_window.as_secs_f64();
    if settings.default_limits {
        (
            rate(HttpSettings::cognigy_default()),
            rate(HttpSettings::cxone_default()),
        )
    } else {
        // The simulator tenant's budgets.
        (1000.0, 1000.0)
    }
}

/// How the stored diagnoses compare with the truth.
struct Comparison {
    truth: usize,
    matching: usize,
    wrong: Vec<String>,
    pending: usize,
    undetermined: usize,
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bot contacts in the truth: {} diagnosed as the truth says, {} wrong {:?}, {} not yet diagnosed; {} undetermined",
            self.truth,
            self.matching,
            self.wrong.len(),
            self.wrong.iter().take(5).collect::<Vec<_>>(),
            self.pending,
            self.undetermined
        )
    }
}

/// Opens the daemon's state file (after the child exited) and compares every stored diagnosis
/// with the simulator's truth.
fn compare_with_truth(sim: &SimServer, state_path: &Path) -> anyhow::Result<Comparison> {
    let truth = sim.state.truth(Utc::now());
    let store = Store::open(state_path)?;
    let stored: BTreeMap<i64, String> = store
        .diagnoses(&handover_exporter::store::DiagnosisFilter {
            limit: usize::MAX,
            ..Default::default()
        })?
        .into_iter()
        .map(|r| {
            (
                r.diagnosis.contact_id,
                r.diagnosis.reason.as_str().to_owned(),
            )
        })
        .collect();
    let mut comparison = Comparison {
        truth: truth.contacts.len(),
        matching: 0,
        wrong: Vec::new(),
        pending: 0,
        undetermined: stored
            .values()
            .filter(|r| *r == "source_unavailable")
            .count(),
    };
    for c in &truth.contacts {
        match stored.get(&c.contact_id) {
            Some(r) if r == c.reason.as_str() => comparison.matching += 1,
            Some(r) => {
                comparison
                    .wrong
                    .push(format!("{}: {} not {}", c.contact_id, r, c.reason.as_str()))
            }
            None => comparison.pending += 1,
        }
    }
    Ok(comparison)
}

/// Whether a recorded request went to Cognigy (OData or the logs API).
fn is_cognigy(r: &Recorded) -> bool {
    r.path_and_query.starts_with("/odata/") || r.path_and_query.starts_with("/new/")
}

/// Requests per path (query dropped), for the report.
fn endpoint_counts(log: &[Recorded]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for r in log {
        let path = r.path_and_query.split('?').next().unwrap_or("").to_owned();
        *out.entry(format!("{} {path}", r.method)).or_insert(0) += 1;
    }
    out
}

/// Replays the GET requests of `log` with their auth headers: one sequential stream per path (as
/// the daemon pages each source in order), the streams concurrently. Returns the bytes received.
async fn replay(base_url: &str, log: &[Recorded]) -> anyhow::Result<u64> {
    let client = reqwest::Client::builder().build()?;
    let mut streams: BTreeMap<String, Vec<Recorded>> = BTreeMap::new();
    for r in log.iter().filter(|r| r.method == "GET") {
        let path = r.path_and_query.split('?').next().unwrap_or("").to_owned();
        streams.entry(path).or_default().push(r.clone());
    }
    let mut tasks = Vec::new();
    for (_, stream) in streams {
        let client = client.clone();
        let base = base_url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut bytes = 0u64;
            for r in stream {
                let mut request = client
                    .get(format!("{base}{}", r.path_and_query))
                    .header("accept", "application/json");
                if let Some(v) = &r.authorization {
                    request = request.header("authorization", v.clone());
                }
                if let Some(v) = &r.api_key {
                    request = request.header("x-api-key", v.clone());
                }
                bytes += request.send().await?.bytes().await?.len() as u64;
            }
            Ok::<u64, reqwest::Error>(bytes)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total)
}
