//! Steady-state benchmark (issues 5 and 11): the simulator streams live traffic (100 000 calls a
//! day by default) from a CHILD process (`handover-exporter simulate`), so this process's memory
//! is the daemon's alone; the real daemon (`daemon::run`: poll loop, store file, HTTP server) runs
//! here at the DEFAULT limits (Cognigy 1000 requests per 5 minutes, default page sizes, a poll
//! every 60 s) with a late-record window of 60 minutes, while the simulator writes some
//! sessions' records late (`--cognigy-delay`, by default one session in ten at its 30-minute
//! expiry and one in twenty up to 55 minutes late). Every interval it prints the process RSS, the
//! CPU time the daemon's threads used per cycle and the Cognigy requests; at the end the share of
//! the Cognigy quota used while measuring, and every stored diagnosis against the truth. It
//! asserts nothing.
//!
//! Env: `STEADY_SECONDS` (2400), `STEADY_INTERVAL_SECONDS` (60), `STEADY_CALLS_PER_DAY` (100000),
//! `STEADY_BACKLOG_HOURS` (1.25, caught up before measuring starts), `STEADY_COGNIGY_DELAY`
//! (`0.85:60,0.1:1800-1900,0.05:3000-3300`), `STEADY_LATE_WINDOW_SECONDS` (3600).

/// The binary's allocator (src/main.rs), so these figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/mod.rs"]
mod support;

use handover_exporter::daemon::{self, ServeOptions};
use handover_simulator::{self as simulator, SimCredentials};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{env_or, mb, SimChild, SimStats};

/// Requests the simulator has answered: (all, `contacts/completed`, Cognigy).
fn request_counts(stats: &SimStats) -> (u64, u64, u64) {
    (
        stats.total(),
        stats.ending_with("/contacts/completed"),
        stats.cognigy(),
    )
}

/// Every diagnosis the daemon stored (its state file, after it stopped) against the truth:
/// (truth size, diagnosed as the truth says, wrong, not yet diagnosed, undetermined).
fn compare_with_truth(
    truth: &serde_json::Value,
    state_path: &std::path::Path,
) -> anyhow::Result<String> {
    let store = handover_exporter::store::Store::open(state_path)?;
    let stored: std::collections::BTreeMap<i64, String> = store
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
    let contacts = truth["contacts"].as_array().cloned().unwrap_or_default();
    let (mut matching, mut wrong, mut pending) = (0, Vec::new(), 0);
    for c in &contacts {
        let id = c["contact_id"].as_i64().unwrap_or(0);
        let reason = c["reason"].as_str().unwrap_or("");
        match stored.get(&id) {
            Some(r) if r == reason => matching += 1,
            Some(r) => wrong.push(format!("{id}: {r} not {reason}")),
            None => pending += 1,
        }
    }
    let undetermined = stored
        .values()
        .filter(|r| *r == "source_unavailable")
        .count();
    Ok(format!(
        "{} bot contacts in the truth: {matching} diagnosed as the truth says, {} wrong {:?}, {pending} not yet diagnosed (inside the late window); {undetermined} undetermined",
        contacts.len(),
        wrong.len(),
        wrong.iter().take(5).collect::<Vec<_>>()
    ))
}

fn main() -> anyhow::Result<()> {
    handover_exporter::allocator::tune();
    let seconds: u64 = env_or("STEADY_SECONDS", 2400);
    let interval: u64 = env_or("STEADY_INTERVAL_SECONDS", 60);
    let rate: f64 = env_or("STEADY_CALLS_PER_DAY", 100_000.0);
    let backlog: f64 = env_or("STEADY_BACKLOG_HOURS", 1.25);
    let delay: String = env_or(
        "STEADY_COGNIGY_DELAY",
        "0.85:60,0.1:1800-1900,0.05:3000-3300".to_owned(),
    );
    let late_window: u64 = env_or("STEADY_LATE_WINDOW_SECONDS", 3600);
    println!("steady-state benchmark: {}", support::machine());

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_handover-exporter"))
        .args([
            "simulate",
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
            "--rate",
            &rate.to_string(),
            "--backlog-hours",
            &backlog.to_string(),
            "--cognigy-lag-seconds",
            "10",
            "--cognigy-delay",
            &delay,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let _child = SimChild(child);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("daemon")
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while SimStats::fetch(&client, &base).await.is_none() {
            if Instant::now() > deadline {
                anyhow::bail!("the simulator at {base} did not answer within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let options = simulator::SimulatorOptions {
            rate_per_day: Some(rate),
            backlog_hours: backlog,
            cognigy_lag_seconds: 10,
            credentials: SimCredentials::default(),
            ..simulator::SimulatorOptions::default()
        };
        let state_dir = tempfile::tempdir()?;
        let mut config =
            handover_simulator::demo::config(&base, &options, Duration::from_secs(interval));
        let state_path = state_dir.path().join("state.db");
        config.state_path = state_path.display().to_string();
        // The defaults, but for a late-record window of `late_window` (and a Cognigy lag as
        // long, so a session written that late is waited for).
        {
            use handover_exporter::config::HttpSettings;
            config.overlap = Duration::from_secs(300);
            config.settle = Duration::from_secs(60);
            config.cycle_deadline = config.poll_interval;
            config.initial_lookback = Duration::from_secs(((backlog + 1.0) * 3600.0) as u64);
            let tenant = &mut config.tenants[0];
            tenant.cxone.http = HttpSettings::cxone_default();
            tenant.cognigy.http = HttpSettings::cognigy_default();
            tenant.cxone.page_size = 1000;
            tenant.cognigy.odata_page_size = 1000;
            tenant.cognigy.logs_page_size = 100;
            tenant.cognigy.late_window = Duration::from_secs(late_window);
            tenant.rules.cognigy_lag_seconds = late_window;
        }
        let quota_per_second = {
            let h = &config.tenants[0].cognigy.http;
            f64::from(h.quota_requests) / h.quota_window.as_secs_f64()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let metrics_url = format!("http://{}/metrics", listener.local_addr()?);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let daemon_task = tokio::spawn(daemon::run(config, listener, ServeOptions::default(), async move {
            let _ = stop_rx.await;
        }));

        // Let the first cycles catch up with the backlog before measuring: until a cycle ends
        // complete.
        let caught_up = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let text = match client.get(&metrics_url).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => continue,
            };
            let complete = text
                .lines()
                .find(|l| l.starts_with("handover_cycles_total{") && l.contains("outcome=\"complete\""))
                .and_then(|l| l.rsplit_once(' '))
                .and_then(|(_, v)| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            if complete >= 1.0 {
                break;
            }
        }
        println!(
            "caught up with the {backlog} h backlog in {:.0} s",
            caught_up.elapsed().as_secs_f64()
        );
        println!(
            "{:>6} {:>9} {:>9} {:>7} {:>9} {:>9} {:>13}",
            "t(s)", "RSS(MB)", "peak(MB)", "cycles", "requests", "cognigy", "CPU/cycle(ms)"
        );
        let started = Instant::now();
        let mut last_cpu = support::named_threads_cpu_seconds("daemon");
        let first_stats = SimStats::fetch(&client, &base).await;
        let (mut last_req, mut last_cycles, mut last_cognigy) =
            first_stats.as_ref().map_or((0, 0, 0), request_counts);
        let first_cognigy = last_cognigy;
        let mut last_stats = None;
        let mut rss_samples = Vec::new();
        let mut cpu_per_cycle = Vec::new();
        while started.elapsed() < Duration::from_secs(seconds) {
            tokio::time::sleep(Duration::from_secs(interval)).await;
            // A scrape per interval, as Prometheus would.
            let _ = client.get(&metrics_url).send().await;
            let cpu = support::named_threads_cpu_seconds("daemon");
            let stats = SimStats::fetch(&client, &base).await;
            let (req, cycles, cognigy) = stats
                .as_ref()
                .map_or((last_req, last_cycles, last_cognigy), request_counts);
            if stats.is_some() {
                last_stats = stats;
            }
            let rss = support::status_kb("VmRSS");
            let d_cycles = cycles.saturating_sub(last_cycles);
            // Threads that ended (the runtime's blocking pool) take their CPU time with them:
            // a negative difference is no measurement.
            let per_cycle = if d_cycles > 0 && cpu >= last_cpu {
                (cpu - last_cpu) * 1000.0 / d_cycles as f64
            } else {
                f64::NAN
            };
            println!(
                "{:>6.0} {:>9.1} {:>9.1} {:>7} {:>9} {:>9} {:>13.1}",
                started.elapsed().as_secs_f64(),
                mb(rss),
                mb(support::status_kb("VmHWM")),
                d_cycles,
                req.saturating_sub(last_req),
                cognigy.saturating_sub(last_cognigy),
                per_cycle
            );
            last_cognigy = cognigy;
            rss_samples.push(rss);
            if per_cycle.is_finite() {
                cpu_per_cycle.push(per_cycle);
            }
            last_cpu = cpu;
            last_req = req;
            last_cycles = cycles;
        }
        let measured = started.elapsed().as_secs_f64();
        let cognigy_used = last_cognigy.saturating_sub(first_cognigy);
        let by_path: Vec<String> = last_stats
            .iter()
            .flat_map(SimStats::cognigy_by_path)
            .map(|(path, n)| {
                let before = first_stats.as_ref().and_then(|s| s.0.get(path)).copied();
                format!("{path} {}", n.saturating_sub(before.unwrap_or(0)))
            })
            .collect();
        let truth: serde_json::Value = client
            .get(format!("{base}/_sim/truth"))
            .send()
            .await?
            .json()
            .await?;
        let _ = stop_tx.send(());
        daemon_task.await??;
        let comparison = compare_with_truth(&truth, &state_path)?;
        let first = rss_samples.first().copied().unwrap_or(0);
        let last = rss_samples.last().copied().unwrap_or(0);
        let max = rss_samples.iter().copied().max().unwrap_or(0);
        let mean_cpu = cpu_per_cycle.iter().sum::<f64>() / cpu_per_cycle.len().max(1) as f64;
        println!(
            "summary: {seconds} s at {rate} calls/day, poll every {interval} s: RSS first {:.1} MB, last {:.1} MB, max {:.1} MB (target: flat, < 64 MB); daemon CPU {:.1} ms per cycle on average",
            mb(first), mb(last), mb(max), mean_cpu
        );
        println!(
            "Cognigy quota: {cognigy_used} requests in {measured:.0} s = {:.2} % of {:.0} allowed (target <= 5 %), with a late window of {late_window} s and records written late by {delay}",
            100.0 * cognigy_used as f64 / (quota_per_second * measured),
            quota_per_second * measured
        );
        println!("Cognigy requests by path: {}", by_path.join(", "));
        println!("against the truth: {comparison}");
        println!("finished with {}", support::machine());
        Ok(())
    })
}
