//! `demo`: the simulator and the daemon in one process on loopback, with a ready configuration and
//! no credentials, so a first-time user sees real metrics within seconds.
//!
//! This only wires existing pieces together: the simulator (`simulator`), a tenant configuration
//! pointing at it, and the daemon (`daemon`). It adds no behaviour of its own.

use crate::{self as simulator, SimulatorOptions};
use handover_exporter::config::Config;
use handover_exporter::daemon::{self, ServeOptions};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// Seconds after a session ends before the simulator shows its OData records, in the demo.
const DEMO_COGNIGY_LAG_SECONDS: u64 = 10;

/// The demo's daemon configuration for a simulator at `base_url`, as TOML parsed by the real
/// config code: an in-memory store, a poll every `poll_interval`, the simulator's rules with a
/// Cognigy lag a little longer than the simulator's (before calling a contact `no_bot_session`).
pub fn config(base_url: &str, options: &SimulatorOptions, poll_interval: Duration) -> Config {
    let lookback_hours = (options.backlog_hours.max(0.0) + 1.0).ceil() as u64;
    let text = format!(
        "state_path = \":memory:\"\npoll_interval_seconds = {}\ncycle_deadline_seconds = 60\n\
         overlap_seconds = 120\nsettle_seconds = 5\ninitial_lookback_hours = {lookback_hours}\n\
         {}{}",
        poll_interval.as_secs().max(1),
        crate::simulated_tenant_toml("demo", base_url, &options.credentials),
        crate::rules_table(options.cognigy_lag_seconds * 2 + 10)
            .replace("[rules]", "[tenant.rules]"),
    );
    // Built from fixed templates and validated options (`SimulatorOptions::validate` bounds the
    // backlog); the test `demo_config_parses` parses it.
    crate::parse_simulated_config(&text, "the demo configuration", &options.credentials)
        .expect("the demo configuration is valid")
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo's configuration parses through the real config code with the demo's settings.
    #[test]
    fn demo_config_parses() {
        let options = simulator_options(7);
        let config = config("http://127.0.0.1:9", &options, Duration::from_secs(5));
        assert_eq!(config.poll_interval, Duration::from_secs(5));
        assert_eq!(config.state_path, ":memory:");
        assert_eq!(config.initial_lookback, Duration::from_secs(2 * 3600));
        assert_eq!(
            config.tenants[0].rules.cognigy_lag_seconds,
            DEMO_COGNIGY_LAG_SECONDS * 2 + 10
        );
    }
}
