//! The simulator's commands as the binary offers them: `demo` (simulator and daemon together)
//! and `simulate` (the simulated APIs alone, or `--dump DIR`), with their flags as clap `Args`
//! the binary flattens. Fault flags are one struct ([`FaultArgs`]) turned into [`Faults`]. This
//! module parses nothing by hand and serves nothing itself: it calls [`crate::demo::run`],
//! [`crate::run`] and [`crate::dump`].

use crate::cognigy::CognigyDelay;
use crate::{ExtensionVersion, Faults, RetryAfter, Scenario, SimulatorOptions};
use clap::Args;
use handover_exporter::daemon;
use handover_exporter::telemetry::LogArgs;
use std::path::PathBuf;

/// What the simulated world is made of, for `demo` and `simulate` alike.
#[derive(Args, Debug)]
pub struct WorldArgs {
    /// Seed of the generated world (same seed, same world).
    #[arg(long, env = "HANDOVER_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Mix of call outcomes: mixed, healthy, signal_outage, missing_context, log_lines.
    #[arg(long, env = "HANDOVER_SCENARIO", default_value = "mixed")]
    pub scenario: Scenario,
    /// The CXone extension version whose handover log lines the calls write (docs/log-lines.md):
    /// v1-2025-10-09, v2-2025-10-10, v3-2025-10, v4-2025-11, v5-2025-12, v6-2026-03,
    /// v7-1.0.13, v8-1.0.18 (the newest), alt-1.2.1.
    #[arg(
        long = "extension-version",
        env = "HANDOVER_EXTENSION_VERSION",
        default_value = "v8-1.0.18"
    )]
    pub extension_version: ExtensionVersion,
}

/// `demo`: the simulator and the daemon in one process on loopback.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Address of the daemon's web interface.
    #[arg(
        long = "web.listen-address",
        env = "HANDOVER_WEB_LISTEN_ADDRESS",
        default_value = "127.0.0.1:10042"
    )]
    pub listen_address: String,
    #[command(flatten)]
    pub world: WorldArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// `simulate`: the simulated APIs alone.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Address of the simulated APIs.
    #[arg(
        long = "web.listen-address",
        env = "HANDOVER_WEB_LISTEN_ADDRESS",
        default_value = "127.0.0.1:10043"
    )]
    pub listen_address: String,
    #[command(flatten)]
    pub world: WorldArgs,
    /// A finite world of this many calls, all ended (instead of a stream).
    #[arg(long, env = "HANDOVER_CALLS")]
    pub calls: Option<usize>,
    /// Calls per day of a streaming world.
    #[arg(long, env = "HANDOVER_RATE", default_value_t = 2880.0)]
    pub rate: f64,
    /// Hours of calls before start-up (the window of a finite world).
    #[arg(
        long = "backlog-hours",
        env = "HANDOVER_BACKLOG_HOURS",
        default_value_t = 1.0
    )]
    pub backlog_hours: f64,
    /// Seconds after a session ends before its Cognigy Sessions and Analytics records appear
    /// (each Conversations record appears this long after its own message).
    #[arg(
        long = "cognigy-lag-seconds",
        env = "HANDOVER_COGNIGY_LAG_SECONDS",
        default_value_t = 60
    )]
    pub cognigy_lag_seconds: u64,
    /// How long after a session ends its Sessions and Analytics records appear, drawn per
    /// session instead of the lag: WEIGHT:SECONDS or WEIGHT:MIN-MAX, comma-separated (e.g.
    /// `0.8:60,0.2:1800-1900`: one session in five only at its 30-minute expiry). Conversations
    /// records still appear the lag after their message, as Cognigy writes them.
    #[arg(long = "cognigy-delay", env = "HANDOVER_COGNIGY_DELAY")]
    pub cognigy_delay: Option<CognigyDelay>,
    /// Write the world as a replay directory and exit, instead of serving.
    #[arg(long, env = "HANDOVER_DUMP")]
    pub dump: Option<PathBuf>,
    #[command(flatten)]
    pub faults: FaultArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// The faults `simulate` injects from start-up (`--fault.*`); mid-body resets and slow bursts
/// are switched at run time (`POST /_sim/faults`), as the fault-matrix harness does.
#[derive(Args, Debug)]
pub struct FaultArgs {
    /// Fault: every Nth API request answers 429.
    #[arg(
        long = "fault.rate-limit-429",
        env = "HANDOVER_FAULT_RATE_LIMIT_429",
        default_value_t = 0
    )]
    pub rate_limit_429: u64,
    /// Fault: the Retry-After of those 429s: none, seconds (e.g. 2) or date:SECONDS.
    #[arg(
        long = "fault.retry-after",
        env = "HANDOVER_FAULT_RETRY_AFTER",
        default_value = "none"
    )]
    pub retry_after: RetryAfter,
    /// Fault: the first N API requests answer 503.
    #[arg(
        long = "fault.server-error-burst",
        env = "HANDOVER_FAULT_SERVER_ERROR_BURST",
        default_value_t = 0
    )]
    pub server_error_burst: u64,
    /// Fault: delay every API answer by this many milliseconds.
    #[arg(
        long = "fault.slow-ms",
        env = "HANDOVER_FAULT_SLOW_MS",
        default_value_t = 0
    )]
    pub slow_ms: u64,
    /// Fault: cut the body of the next N data pages in half.
    #[arg(
        long = "fault.truncated-pages",
        env = "HANDOVER_FAULT_TRUNCATED_PAGES",
        default_value_t = 0
    )]
    pub truncated_pages: u64,
    /// Fault: answer the next N data pages with invalid JSON.
    #[arg(
        long = "fault.malformed-pages",
        env = "HANDOVER_FAULT_MALFORMED_PAGES",
        default_value_t = 0
    )]
    pub malformed_pages: u64,
    /// Fault: CXone tokens say and live this many seconds.
    #[arg(
        long = "fault.token-ttl-seconds",
        env = "HANDOVER_FAULT_TOKEN_TTL_SECONDS"
    )]
    pub token_ttl_seconds: Option<u64>,
    /// Fault: CXone tokens stop working after this many seconds, whatever expires_in says.
    #[arg(
        long = "fault.token-dies-after-seconds",
        env = "HANDOVER_FAULT_TOKEN_DIES_AFTER_SECONDS"
    )]
    pub token_dies_after_seconds: Option<u64>,
    /// Fault: Cognigy OData answers 500 at the end of a keyset instead of an empty page.
    #[arg(long = "fault.keyset-end-500", env = "HANDOVER_FAULT_KEYSET_END_500")]
    pub keyset_end_500: bool,
    /// Fault: CXone contacts use the old field names with numbers and booleans as strings.
    #[arg(
        long = "fault.old-cxone-fields",
        env = "HANDOVER_FAULT_OLD_CXONE_FIELDS"
    )]
    pub old_cxone_fields: bool,
    /// Fault: Cognigy OData v2.4 records carry `_id` instead of `id`.
    #[arg(
        long = "fault.odata-underscore-id",
        env = "HANDOVER_FAULT_ODATA_UNDERSCORE_ID"
    )]
    pub odata_underscore_id: bool,
    /// Fault: the Cognigy logs API answers 400 to requests with `filter` or `startDate`.
    #[arg(
        long = "fault.logs-filter-refused",
        env = "HANDOVER_FAULT_LOGS_FILTER_REFUSED"
    )]
    pub logs_filter_refused: bool,
    /// Fault: Cognigy (OData and logs) answers 503 to every request; CXone is unaffected.
    #[arg(long = "fault.cognigy-down", env = "HANDOVER_FAULT_COGNIGY_DOWN")]
    pub cognigy_down: bool,
    /// Fault: the flow never sets the Analytics custom field (every `customN` served empty).
    #[arg(
        long = "fault.custom-field-unset",
        env = "HANDOVER_FAULT_CUSTOM_FIELD_UNSET"
    )]
    pub custom_field_unset: bool,
}

impl From<FaultArgs> for Faults {
    fn from(f: FaultArgs) -> Faults {
        Faults {
            rate_limit_429: f.rate_limit_429,
            retry_after: f.retry_after,
            server_error_burst: f.server_error_burst,
            slow_ms: f.slow_ms,
            truncated_pages: f.truncated_pages,
            malformed_pages: f.malformed_pages,
            token_ttl_seconds: f.token_ttl_seconds,
            token_dies_after_seconds: f.token_dies_after_seconds,
            keyset_end_500: f.keyset_end_500,
            old_cxone_fields: f.old_cxone_fields,
            odata_underscore_id: f.odata_underscore_id,
            logs_filter_refused: f.logs_filter_refused,
            cognigy_down: f.cognigy_down,
            custom_field_unset: f.custom_field_unset,
            ..Faults::default()
        }
    }
}

/// `demo`: runs until SIGINT or SIGTERM; an error (a listener that cannot bind) is returned.
pub fn demo(args: DemoArgs) -> anyhow::Result<u8> {
    args.log.init();
    daemon::block_on(async move {
        let listener = daemon::bind(&args.listen_address).await?;
        let simulator = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let options = SimulatorOptions {
            scenario: args.world.scenario,
            extension_version: args.world.extension_version,
            ..crate::demo::simulator_options(args.world.seed)
        };
        crate::demo::run(listener, simulator, options, daemon::shutdown_signal()).await
    })?;
    Ok(0)
}

/// `simulate`: serves until SIGINT or SIGTERM, or with `--dump DIR` writes the world and exits.
pub fn simulate(args: SimulateArgs) -> anyhow::Result<u8> {
    let options = SimulatorOptions {
        seed: args.world.seed,
        scenario: args.world.scenario,
        extension_version: args.world.extension_version,
        calls: args.calls,
        rate_per_day: Some(args.rate),
        backlog_hours: args.backlog_hours,
        cognigy_lag_seconds: args.cognigy_lag_seconds,
        cognigy_delay: args.cognigy_delay,
        faults: args.faults.into(),
        ..SimulatorOptions::default()
    };
    if let Some(dir) = args.dump {
        let truth = crate::dump(&options, &dir)
            .map_err(|e| anyhow::anyhow!("--dump {}: {e:#}", dir.display()))?;
        println!(
            "{}: replay directory with {} bot contact(s) written",
            dir.display(),
            truth.contacts.len()
        );
        return Ok(0);
    }
    args.log.init();
    daemon::block_on(async move {
        let listener = daemon::bind(&args.listen_address).await?;
        let address = listener.local_addr()?;
        println!("simulated CXone + Cognigy APIs at http://{address}");
        println!("  ground truth: http://{address}/_sim/truth");
        crate::run(listener, options, daemon::shutdown_signal()).await
    })?;
    Ok(0)
}
