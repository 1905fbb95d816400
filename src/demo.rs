//! `demo`: the simulator and the daemon in one process on loopback, with a ready configuration and
//! no credentials, so a first-time user sees real metrics within seconds.
//!
//! This only wires existing pieces together: the simulator (`simulator`), a tenant configuration
//! pointing at it, and the daemon (`daemon`). It adds no behaviour of its own.

use crate::config::Config;
use crate::daemon::{self, ServeOptions};
use crate::simulator::{self, SimulatorOptions};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// Seconds after a session ends before the simulator shows its OData records, in the demo.
const DEMO_COGNIGY_LAG_SECONDS: u64 = 10;

/// The demo's daemon configuration for a simulator at `base_url`.
pub fn config(base_url: &str, options: &SimulatorOptions, poll_interval: Duration) -> Config {
    let mut rules = simulator::sim_rules();
    // Wait a little longer than the simulator's lag before calling a contact `no_bot_session`.
    rules.cognigy_lag_seconds = options.cognigy_lag_seconds * 2 + 10;
    Config {
        state_path: ":memory:".into(),
        poll_interval,
        cycle_deadline: Duration::from_secs(60),
        overlap: Duration::from_secs(120),
        settle: Duration::from_secs(5),
        retention: Duration::from_secs(48 * 3600),
        initial_lookback: Duration::from_secs(
            ((options.backlog_hours.max(0.0) + 1.0) * 3600.0) as u64,
        ),
        tenants: vec![simulator::simulated_tenant(
            "demo",
            base_url,
            &options.credentials,
            rules,
        )],
    }
}

/// The simulator options of the demo: a streaming world with an hour of backlog.
pub fn simulator_options(seed: u64) -> SimulatorOptions {
    SimulatorOptions {
        seed,
        rate_per_day: Some(20_000.0),
        backlog_hours: 1.0,
        cognigy_lag_seconds: DEMO_COGNIGY_LAG_SECONDS,
        ..SimulatorOptions::default()
    }
}

/// Runs the demo: the daemon on `listener`, the simulator on `simulator_listener`, until `shutdown`.
pub async fn run(
    listener: TcpListener,
    simulator_listener: TcpListener,
    options: SimulatorOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let sim = simulator::spawn(simulator_listener, options.clone()).await?;
    let config = config(&sim.base_url, &options, Duration::from_secs(5));
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    println!("handover-exporter demo: a simulated CXone + Cognigy tenant, polled every 5 s");
    println!("  metrics:        http://{host}/metrics");
    println!("  diagnoses:      http://{host}/api/v1/diagnoses?outcome=failed");
    println!("  one contact:    http://{host}/api/v1/contacts/<contact_id>");
    println!("  readiness:      http://{host}/readyz");
    println!("  ground truth:   {}/_sim/truth", sim.base_url);
    println!("Press Ctrl-C to stop.");
    let result = daemon::run(config, listener, ServeOptions::default(), shutdown).await;
    sim.stop().await?;
    result
}
