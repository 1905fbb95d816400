//! Steady-state benchmark (issue 5): the simulator streams live traffic (100 000 calls a day by
//! default) from a CHILD process (`handover-exporter simulate`), so this process's memory is the
//! daemon's alone; the real daemon (`daemon::run`: poll loop, store file, HTTP server) runs here
//! with a short poll interval. Every interval it prints the process RSS and the CPU time the
//! daemon's threads used per cycle. It asserts nothing.
//!
//! Env: `STEADY_SECONDS` (180), `STEADY_INTERVAL_SECONDS` (5), `STEADY_CALLS_PER_DAY` (100000),
//! `STEADY_BACKLOG_HOURS` (0.25, caught up before measuring starts).

/// The binary's allocator (src/main.rs), so these figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/mod.rs"]
mod support;

use handover_exporter::daemon::{self, ServeOptions};
use handover_exporter::simulator::{self, SimCredentials};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{env_or, mb};

/// The simulator child; killed (by its own pid) when dropped.
struct SimChild(Child);

impl Drop for SimChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Total requests the simulator has answered, from `/_sim/stats`.
async fn sim_requests(client: &reqwest::Client, base: &str) -> Option<(u64, u64)> {
    let stats: serde_json::Value = client
        .get(format!("{base}/_sim/stats"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let map = stats
        .get("requests")
        .and_then(|r| r.as_object())
        .or_else(|| stats.as_object())?;
    let total = map.values().filter_map(|v| v.as_u64()).sum();
    let completed = map
        .iter()
        .filter(|(k, _)| k.ends_with("/contacts/completed"))
        .filter_map(|(_, v)| v.as_u64())
        .sum();
    Some((total, completed))
}

fn main() -> anyhow::Result<()> {
    handover_exporter::allocator::tune();
    let seconds: u64 = env_or("STEADY_SECONDS", 180);
    let interval: u64 = env_or("STEADY_INTERVAL_SECONDS", 5);
    let rate: f64 = env_or("STEADY_CALLS_PER_DAY", 100_000.0);
    let backlog: f64 = env_or("STEADY_BACKLOG_HOURS", 0.25);
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
        while sim_requests(&client, &base).await.is_none() {
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
            handover_exporter::demo::config(&base, &options, Duration::from_secs(interval));
        config.state_path = state_dir.path().join("state.db").display().to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let metrics_url = format!("http://{}/metrics", listener.local_addr()?);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let daemon_task = tokio::spawn(daemon::run(config, listener, ServeOptions::default(), async move {
            let _ = stop_rx.await;
        }));

        // Let the first cycles catch up with the backlog before measuring.
        tokio::time::sleep(Duration::from_secs(interval * 3)).await;
        println!(
            "{:>6} {:>9} {:>9} {:>7} {:>9} {:>13}",
            "t(s)", "RSS(MB)", "peak(MB)", "cycles", "requests", "CPU/cycle(ms)"
        );
        let started = Instant::now();
        let mut last_cpu = support::named_threads_cpu_seconds("daemon");
        let (mut last_req, mut last_cycles) = sim_requests(&client, &base).await.unwrap_or((0, 0));
        let mut rss_samples = Vec::new();
        let mut cpu_per_cycle = Vec::new();
        while started.elapsed() < Duration::from_secs(seconds) {
            tokio::time::sleep(Duration::from_secs(interval)).await;
            // A scrape per interval, as Prometheus would.
            let _ = client.get(&metrics_url).send().await;
            let cpu = support::named_threads_cpu_seconds("daemon");
            let (req, cycles) = sim_requests(&client, &base).await.unwrap_or((last_req, last_cycles));
            let rss = support::status_kb("VmRSS");
            let d_cycles = cycles.saturating_sub(last_cycles);
            let per_cycle = if d_cycles > 0 {
                (cpu - last_cpu) * 1000.0 / d_cycles as f64
            } else {
                f64::NAN
            };
            println!(
                "{:>6.0} {:>9.1} {:>9.1} {:>7} {:>9} {:>13.1}",
                started.elapsed().as_secs_f64(),
                mb(rss),
                mb(support::status_kb("VmHWM")),
                d_cycles,
                req.saturating_sub(last_req),
                per_cycle
            );
            rss_samples.push(rss);
            if per_cycle.is_finite() {
                cpu_per_cycle.push(per_cycle);
            }
            last_cpu = cpu;
            last_req = req;
            last_cycles = cycles;
        }
        let _ = stop_tx.send(());
        daemon_task.await??;
        let first = rss_samples.first().copied().unwrap_or(0);
        let last = rss_samples.last().copied().unwrap_or(0);
        let max = rss_samples.iter().copied().max().unwrap_or(0);
        let mean_cpu = cpu_per_cycle.iter().sum::<f64>() / cpu_per_cycle.len().max(1) as f64;
        println!(
            "summary: {seconds} s at {rate} calls/day, poll every {interval} s: RSS first {:.1} MB, last {:.1} MB, max {:.1} MB (target: flat, < 64 MB); daemon CPU {:.1} ms per cycle on average",
            mb(first), mb(last), mb(max), mean_cpu
        );
        println!("finished with {}", support::machine());
        Ok(())
    })
}
