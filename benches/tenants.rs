//! Many tenants in one process (issue 16): for each tenant count (1 to 30 by default), a fresh
//! simulator CHILD process (`handover-exporter simulate`, so this process's CPU and memory are the
//! daemon's) streams live traffic of 100 000 calls a day, and the real daemon (`daemon::run`)
//! runs here with that many tenants, all on the simulator's one CXone and one Cognigy host, at
//! the DEFAULT limits: Cognigy 1000 requests per 5 minutes SHARED by every tenant, the CXone
//! default budget, default page sizes, a poll every 60 s. Each tenant reads the same simulated
//! world (the simulator serves one), so each carries 100 000 calls a day. After every tenant
//! has completed a cycle it measures for a while and prints, per tenant count: the process CPU
//! per tenant cycle and as a share of one core, peak RSS, the requests per tenant per cycle
//! interval (all and Cognigy), the share of the shared Cognigy quota used, and how far the
//! tenants' Cognigy watermarks lag behind the present at the end. Figures are ratios against
//! the 1-tenant run of the same invocation. It asserts nothing.
//!
//! Env: `TENANTS_COUNTS` (`1,10,30`), `TENANTS_SECONDS` (600, measured per count),
//! `TENANTS_INTERVAL_SECONDS` (60), `TENANTS_CALLS_PER_DAY` (100000), `TENANTS_BACKLOG_HOURS`
//! (0.05).

/// The binary's allocator (src/main.rs), so these figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/mod.rs"]
mod support;

use handover_exporter::config::HttpSettings;
use handover_exporter::daemon::{self, ServeOptions};
use handover_simulator::{self as simulator, SimCredentials};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{env_or, mb, SimChild, SimStats};

/// Requests the simulator has answered: (all, Cognigy).
async fn sim_requests(client: &reqwest::Client, base: &str) -> Option<(u64, u64)> {
    let stats = SimStats::fetch(client, base).await?;
    Some((stats.total(), stats.cognigy()))
}

/// Sums the samples of `family` on an exposition whose line matches `filter`, per tenant.
fn per_tenant(text: &str, family: &str, filter: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains(filter))
        .filter_map(|l| {
            let tenant = l.split("tenant=\"").nth(1)?.split('"').next()?.to_owned();
            let value = l.split(" # ").next()?.rsplit_once(' ')?.1.parse().ok()?;
            Some((tenant, value))
        })
        .collect()
}

/// One tenant count's figures.
struct Row {
    tenants: usize,
    catch_up_s: f64,
    cpu_ms_per_cycle: f64,
    core_share: f64,
    peak_rss_mb: f64,
    requests_per_tenant: f64,
    cognigy_per_tenant: f64,
    quota_share: f64,
    max_lag_s: f64,
    cycles: f64,
}

async fn measure(
    tenants: usize,
    seconds: u64,
    interval: u64,
    rate: f64,
    backlog: f64,
) -> anyhow::Result<Row> {
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
        handover_simulator::demo::config(&base, &options, Duration::from_secs(interval));
    config.state_path = state_dir.path().join("state.db").display().to_string();
    config.overlap = Duration::from_secs(300);
    config.settle = Duration::from_secs(60);
    config.cycle_deadline = config.poll_interval;
    config.initial_lookback = Duration::from_secs(((backlog + 1.0) * 3600.0) as u64);
    let mut template = config.tenants[0].clone();
    // The defaults (the demo's configuration lifts the limits).
    template.cxone.http = HttpSettings::cxone_default();
    template.cognigy.http = HttpSettings::cognigy_default();
    template.cxone.page_size = 1000;
    template.cognigy.odata_page_size = 1000;
    template.cognigy.logs_page_size = 100;
    config.tenants = (0..tenants)
        .map(|i| {
            let mut t = template.clone();
            t.name = format!("tenant-{i:02}");
            t
        })
        .collect();
    let quota_per_second = f64::from(template.cognigy.http.quota_requests)
        / template.cognigy.http.quota_window.as_secs_f64();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let metrics_url = format!("http://{}/metrics", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon_task = tokio::spawn(daemon::run(
        config,
        listener,
        ServeOptions::default(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let scrape = || async {
        match client.get(&metrics_url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    };
    // Until every tenant has completed a cycle (or ten intervals passed).
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let text = scrape().await;
        let complete = per_tenant(&text, "handover_cycles_total", "outcome=\"complete\"")
            .iter()
            .filter(|(_, v)| *v >= 1.0)
            .count();
        if complete >= tenants || started.elapsed() > Duration::from_secs(10 * interval) {
            break;
        }
    }
    let catch_up_s = started.elapsed().as_secs_f64();
    let cycles_now = |text: &str| -> f64 {
        per_tenant(text, "handover_cycles_total", "")
            .iter()
            .map(|(_, v)| v)
            .sum()
    };
    support::reset_peak_rss();
    let cycles_before = cycles_now(&scrape().await);
    let cpu_before = support::process_cpu_seconds().unwrap_or(0.0);
    let (req_before, cognigy_before) = sim_requests(&client, &base).await.unwrap_or((0, 0));
    let measuring = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let text = scrape().await;
    let cpu = support::process_cpu_seconds().unwrap_or(0.0) - cpu_before;
    let wall = measuring.elapsed().as_secs_f64();
    let (req, cognigy) = sim_requests(&client, &base).await.unwrap_or((0, 0));
    let cycles = cycles_now(&text) - cycles_before;
    let peak = support::status_kb("VmHWM");
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let max_lag_s = per_tenant(
        &text,
        "handover_watermark_timestamp_seconds",
        "source=\"cognigy\"",
    )
    .iter()
    .map(|(_, at)| now - at)
    .fold(0.0, f64::max);
    let _ = stop_tx.send(());
    daemon_task.await??;
    let intervals = wall / interval as f64;
    Ok(Row {
        tenants,
        catch_up_s,
        cpu_ms_per_cycle: cpu * 1000.0 / cycles.max(1.0),
        core_share: cpu / wall,
        peak_rss_mb: mb(peak),
        requests_per_tenant: (req - req_before) as f64 / tenants as f64 / intervals,
        cognigy_per_tenant: (cognigy - cognigy_before) as f64 / tenants as f64 / intervals,
        quota_share: (cognigy - cognigy_before) as f64 / (quota_per_second * wall),
        max_lag_s,
        cycles,
    })
}

fn main() -> anyhow::Result<()> {
    handover_exporter::allocator::tune();
    let counts: String = env_or("TENANTS_COUNTS", "1,10,30".to_owned());
    let seconds: u64 = env_or("TENANTS_SECONDS", 600);
    let interval: u64 = env_or("TENANTS_INTERVAL_SECONDS", 60);
    let rate: f64 = env_or("TENANTS_CALLS_PER_DAY", 100_000.0);
    let backlog: f64 = env_or("TENANTS_BACKLOG_HOURS", 0.05);
    println!("tenants benchmark: {}", support::machine());
    println!(
        "{rate} calls/day per tenant, poll every {interval} s, {seconds} s measured per count, default limits (Cognigy 1000 requests / 5 min shared)"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("daemon")
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for count in counts
        .split(',')
        .filter_map(|c| c.trim().parse::<usize>().ok())
    {
        let row = runtime.block_on(measure(count, seconds, interval, rate, backlog))?;
        println!(
            "measured {} tenant(s): first cycles done in {:.0} s, {:.0} tenant cycles measured",
            row.tenants, row.catch_up_s, row.cycles
        );
        rows.push(row);
    }
    let base = rows.first().map_or(1.0, |r| r.cpu_ms_per_cycle.max(1e-9));
    println!("| tenants | CPU per tenant cycle (ms) | vs 1st row | CPU (share of one core) | peak RSS (MB) | requests per tenant per interval | Cognigy requests per tenant per interval | Cognigy quota used | max Cognigy watermark lag (s) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.2}x | {:.2} % | {:.1} | {:.1} | {:.1} | {:.0} % | {:.0} |",
            r.tenants,
            r.cpu_ms_per_cycle,
            r.cpu_ms_per_cycle / base,
            100.0 * r.core_share,
            r.peak_rss_mb,
            r.requests_per_tenant,
            r.cognigy_per_tenant,
            100.0 * r.quota_share,
            r.max_lag_s
        );
    }
    println!("finished with {}", support::machine());
    Ok(())
}
