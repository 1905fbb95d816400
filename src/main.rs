//! The `handover-exporter` binary: parses flags, sets up logging, then makes one library call per
//! subcommand. Everything else lives in the library.

use clap::{Args, Parser, Subcommand};
use handover_exporter::daemon::{self, ServeOptions};
use handover_exporter::report::Format;
use handover_exporter::simulator::{
    ExtensionVersion, Faults, RetryAfter, Scenario, SimulatorOptions,
};
use handover_exporter::telemetry::{self, LogFormat, LogLevel};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// mimalloc rather than the system allocator: correlation and diagnosis allocate many small
/// records, and glibc malloc was about a third of the engine's time (README, Performance). The
/// benches declare the same allocator so their figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "handover-exporter",
    version,
    about = "Diagnoses NICE CXone <-> Cognigy.AI voicebot handovers and exports Prometheus metrics",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon (the default command).
    Serve(ServeArgs),
    /// Diagnose one contact against the live APIs, or every contact of a replay directory.
    Diagnose(DiagnoseArgs),
    /// Run the simulator and the daemon together on loopback (no credentials needed).
    Demo(DemoArgs),
    /// Run the simulated CXone and Cognigy APIs alone, with ground truth at /_sim/truth.
    Simulate(SimulateArgs),
    /// Move one tenant's state to the state file of the shard that owns it under a new shard
    /// count (every daemon stopped; README, Scale-out).
    ShardHandover(ShardHandoverArgs),
}

#[derive(Args, Debug)]
struct ShardHandoverArgs {
    /// The state file of the shard that polled the tenant until now.
    #[arg(long)]
    from: PathBuf,
    /// The state file of the shard that owns the tenant under the new shard count.
    #[arg(long)]
    to: PathBuf,
    /// The tenant to move.
    #[arg(long)]
    tenant: String,
    /// The new owner's shard (must be the tenant's hash modulo --total-shards).
    #[arg(long)]
    shard: u32,
    /// The new shard count.
    #[arg(long = "total-shards")]
    total_shards: u32,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Address of the daemon's web interface.
    #[arg(
        long = "web.listen-address",
        env = "HANDOVER_WEB_LISTEN_ADDRESS",
        default_value = "127.0.0.1:10042"
    )]
    listen_address: String,
    #[command(flatten)]
    world: WorldArgs,
    #[command(flatten)]
    log: LogArgs,
}

/// What the simulated world is made of, for `demo` and `simulate` alike.
#[derive(Args, Debug)]
struct WorldArgs {
    /// Seed of the generated world (same seed, same world).
    #[arg(long, env = "HANDOVER_SEED", default_value_t = 42)]
    seed: u64,
    /// Mix of call outcomes: mixed, healthy, signal_outage, missing_context, log_lines.
    #[arg(long, env = "HANDOVER_SCENARIO", default_value = "mixed")]
    scenario: Scenario,
    /// The CXone extension version whose handover log lines the calls write (docs/log-lines.md):
    /// v1-2025-10-09, v2-2025-10-10, v3-2025-10, v4-2025-11, v5-2025-12, v6-2026-03,
    /// v7-1.0.13, v8-1.0.18 (the newest), alt-1.2.1.
    #[arg(
        long = "extension-version",
        env = "HANDOVER_EXTENSION_VERSION",
        default_value = "v8-1.0.18"
    )]
    extension_version: ExtensionVersion,
}

#[derive(Args, Debug)]
struct SimulateArgs {
    /// Address of the simulated APIs.
    #[arg(
        long = "web.listen-address",
        env = "HANDOVER_WEB_LISTEN_ADDRESS",
        default_value = "127.0.0.1:10043"
    )]
    listen_address: String,
    #[command(flatten)]
    world: WorldArgs,
    /// A finite world of this many calls, all ended (instead of a stream).
    #[arg(long, env = "HANDOVER_CALLS")]
    calls: Option<usize>,
    /// Calls per day of a streaming world.
    #[arg(long, env = "HANDOVER_RATE", default_value_t = 2880.0)]
    rate: f64,
    /// Hours of calls before start-up (the window of a finite world).
    #[arg(
        long = "backlog-hours",
        env = "HANDOVER_BACKLOG_HOURS",
        default_value_t = 1.0
    )]
    backlog_hours: f64,
    /// Seconds after a session ends before its Cognigy OData records appear.
    #[arg(
        long = "cognigy-lag-seconds",
        env = "HANDOVER_COGNIGY_LAG_SECONDS",
        default_value_t = 60
    )]
    cognigy_lag_seconds: u64,
    /// How long after a session ends its OData records appear, drawn per session instead of the
    /// lag: WEIGHT:SECONDS or WEIGHT:MIN-MAX, comma-separated (e.g. `0.8:60,0.2:1800-1900`: one
    /// session in five only at its 30-minute expiry).
    #[arg(long = "cognigy-delay", env = "HANDOVER_COGNIGY_DELAY")]
    cognigy_delay: Option<handover_exporter::simulator::cognigy::CognigyDelay>,
    /// Write the world as a replay directory and exit, instead of serving.
    #[arg(long, env = "HANDOVER_DUMP")]
    dump: Option<PathBuf>,
    /// Fault: every Nth API request answers 429.
    #[arg(
        long = "fault.rate-limit-429",
        env = "HANDOVER_FAULT_RATE_LIMIT_429",
        default_value_t = 0
    )]
    rate_limit_429: u64,
    /// Fault: the Retry-After of those 429s: none, seconds (e.g. 2) or date:SECONDS.
    #[arg(
        long = "fault.retry-after",
        env = "HANDOVER_FAULT_RETRY_AFTER",
        default_value = "none"
    )]
    retry_after: RetryAfter,
    /// Fault: the first N API requests answer 503.
    #[arg(
        long = "fault.server-error-burst",
        env = "HANDOVER_FAULT_SERVER_ERROR_BURST",
        default_value_t = 0
    )]
    server_error_burst: u64,
    /// Fault: delay every API answer by this many milliseconds.
    #[arg(
        long = "fault.slow-ms",
        env = "HANDOVER_FAULT_SLOW_MS",
        default_value_t = 0
    )]
    slow_ms: u64,
    /// Fault: cut the body of the next N data pages in half.
    #[arg(
        long = "fault.truncated-pages",
        env = "HANDOVER_FAULT_TRUNCATED_PAGES",
        default_value_t = 0
    )]
    truncated_pages: u64,
    /// Fault: answer the next N data pages with invalid JSON.
    #[arg(
        long = "fault.malformed-pages",
        env = "HANDOVER_FAULT_MALFORMED_PAGES",
        default_value_t = 0
    )]
    malformed_pages: u64,
    /// Fault: CXone tokens say and live this many seconds.
    #[arg(
        long = "fault.token-ttl-seconds",
        env = "HANDOVER_FAULT_TOKEN_TTL_SECONDS"
    )]
    token_ttl_seconds: Option<u64>,
    /// Fault: CXone tokens stop working after this many seconds, whatever expires_in says.
    #[arg(
        long = "fault.token-dies-after-seconds",
        env = "HANDOVER_FAULT_TOKEN_DIES_AFTER_SECONDS"
    )]
    token_dies_after_seconds: Option<u64>,
    /// Fault: Cognigy OData answers 500 at the end of a keyset instead of an empty page.
    #[arg(long = "fault.keyset-end-500", env = "HANDOVER_FAULT_KEYSET_END_500")]
    keyset_end_500: bool,
    /// Fault: CXone contacts use the old field names with numbers and booleans as strings.
    #[arg(
        long = "fault.old-cxone-fields",
        env = "HANDOVER_FAULT_OLD_CXONE_FIELDS"
    )]
    old_cxone_fields: bool,
    /// Fault: Cognigy OData v2.4 records carry `_id` instead of `id`.
    #[arg(
        long = "fault.odata-underscore-id",
        env = "HANDOVER_FAULT_ODATA_UNDERSCORE_ID"
    )]
    odata_underscore_id: bool,
    /// Fault: the Cognigy logs API answers 400 to requests with `filter` or `startDate`.
    #[arg(
        long = "fault.logs-filter-refused",
        env = "HANDOVER_FAULT_LOGS_FILTER_REFUSED"
    )]
    logs_filter_refused: bool,
    /// Fault: Cognigy (OData and logs) answers 503 to every request; CXone is unaffected.
    #[arg(long = "fault.cognigy-down", env = "HANDOVER_FAULT_COGNIGY_DOWN")]
    cognigy_down: bool,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Args, Debug, Clone)]
struct ServeArgs {
    /// Configuration file (TOML).
    #[arg(
        long = "config.file",
        env = "HANDOVER_CONFIG_FILE",
        default_value = "handover-exporter.toml"
    )]
    config_file: PathBuf,
    /// Validate the configuration and exit (0 valid, 2 invalid).
    #[arg(long = "config.check", env = "HANDOVER_CONFIG_CHECK")]
    config_check: bool,
    /// Address to listen on for the web interface and telemetry.
    #[arg(
        long = "web.listen-address",
        env = "HANDOVER_WEB_LISTEN_ADDRESS",
        default_value = ":10042"
    )]
    listen_address: String,
    /// Path under which to expose metrics.
    #[arg(
        long = "web.telemetry-path",
        env = "HANDOVER_WEB_TELEMETRY_PATH",
        default_value = "/metrics"
    )]
    telemetry_path: String,
    /// Web configuration file (exporter-toolkit format: `basic_auth_users` with bcrypt hashes).
    #[arg(long = "web.config.file", env = "HANDOVER_WEB_CONFIG_FILE")]
    web_config_file: Option<PathBuf>,
    /// This replica's shard: it polls the tenants whose stable hash falls on it.
    #[arg(long, env = "HANDOVER_SHARD", default_value_t = 0)]
    shard: u32,
    /// Number of shards (replicas); each tenant is polled by exactly one.
    #[arg(
        long = "total-shards",
        env = "HANDOVER_TOTAL_SHARDS",
        default_value_t = 1
    )]
    total_shards: u32,
    /// Poll this shard's tenants even where the state file says another shard owns them (after
    /// a hand-over was checked by hand; README, Scale-out).
    #[arg(long = "shard.takeover", env = "HANDOVER_SHARD_TAKEOVER")]
    shard_takeover: bool,
    /// Take --shard from the host name's trailing `-N` (a StatefulSet pod's ordinal, e.g.
    /// handover-exporter-2), for clusters without the pod-index label.
    #[arg(
        long = "shard.from-hostname",
        env = "HANDOVER_SHARD_FROM_HOSTNAME",
        conflicts_with = "shard"
    )]
    shard_from_hostname: bool,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Args, Debug, Clone)]
struct LogArgs {
    /// Only log messages with the given severity or above.
    #[arg(
        long = "log.level",
        env = "HANDOVER_LOG_LEVEL",
        value_enum,
        default_value = "info"
    )]
    log_level: LogLevel,
    /// Output format of log messages.
    #[arg(
        long = "log.format",
        env = "HANDOVER_LOG_FORMAT",
        value_enum,
        default_value = "logfmt"
    )]
    log_format: LogFormat,
}

#[derive(Args, Debug)]
struct DiagnoseArgs {
    /// The CXone master contact id to diagnose against the configured APIs.
    #[arg(required_unless_present = "replay", conflicts_with = "replay")]
    contact_id: Option<i64>,
    /// Diagnose every bot contact of a replay directory instead (offline).
    #[arg(long, env = "HANDOVER_REPLAY")]
    replay: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, env = "HANDOVER_FORMAT", default_value = "text")]
    format: Format,
    /// Configuration file (TOML) naming the APIs, for a live diagnosis.
    #[arg(
        long = "config.file",
        env = "HANDOVER_CONFIG_FILE",
        default_value = "handover-exporter.toml"
    )]
    config_file: PathBuf,
    /// The tenant to diagnose in (default: the only tenant of the configuration).
    #[arg(long, env = "HANDOVER_TENANT")]
    tenant: Option<String>,
}

fn main() -> ExitCode {
    handover_exporter::allocator::tune();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Diagnose(args)) => diagnose(args),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Demo(args)) => demo(args),
        Some(Command::Simulate(args)) => simulate(args),
        Some(Command::ShardHandover(args)) => shard_handover(args),
        None => serve(cli.serve),
    }
}

fn diagnose(args: DiagnoseArgs) -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    match args.replay {
        Some(dir) => ExitCode::from(handover_exporter::replay::run(
            &dir,
            args.format,
            &mut stdout.lock(),
            &mut stderr.lock(),
        )),
        None => {
            // clap requires CONTACT_ID when --replay is absent.
            let Some(contact_id) = args.contact_id else {
                eprintln!("error: give a CONTACT_ID or --replay DIR");
                return ExitCode::from(2);
            };
            let config = match handover_exporter::config::load(&args.config_file) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::from(2);
                }
            };
            ExitCode::from(runtime.block_on(handover_exporter::drilldown::run(
                &config,
                args.tenant.as_deref(),
                contact_id,
                args.format,
                &mut stdout.lock(),
                &mut stderr.lock(),
            )))
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match handover_exporter::config::load(&args.config_file) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut args = args;
    if args.shard_from_hostname {
        // HOSTNAME is set by Kubernetes (the pod name); else ask the kernel.
        let hostname = std::env::var("HOSTNAME").ok().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default()
        });
        match handover_exporter::sharding::shard_from_hostname(&hostname) {
            Ok(shard) => args.shard = shard,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let config = match daemon::select_shard(config, args.shard, args.total_shards) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let web_config = match &args.web_config_file {
        Some(path) => match handover_exporter::server::WebConfig::load(path) {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    if let Err(e) = handover_exporter::server::validate_telemetry_path(&args.telemetry_path) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if args.config_check {
        let state_path = std::path::Path::new(&config.state_path);
        if let Err(e) = handover_exporter::store::check_path(state_path) {
            eprintln!("error: {}: state_path: {e}", args.config_file.display());
            return ExitCode::from(2);
        }
        println!(
            "{}: configuration is valid ({} tenant(s){})",
            args.config_file.display(),
            config.tenants.len(),
            if web_config.is_some() {
                ", web configuration too"
            } else {
                ""
            }
        );
        return ExitCode::SUCCESS;
    }
    telemetry::init(args.log.log_level, args.log.log_format);
    let options = ServeOptions {
        telemetry_path: args.telemetry_path,
        web_config,
        placement: handover_exporter::sharding::Placement {
            shard: args.shard,
            total: args.total_shards,
            takeover: args.shard_takeover,
        },
        ..ServeOptions::default()
    };
    let address = daemon::listen_address(&args.listen_address);
    run_async(async move {
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|e| anyhow::anyhow!("--web.listen-address {address}: {e}"))?;
        tracing::info!(address = %address, "listening");
        daemon::run(config, listener, options, daemon::shutdown_signal()).await
    })
}

/// Runs a future on a multi-threaded runtime; an error is printed and exits 2.
fn run_async(future: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(future) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn shard_handover(args: ShardHandoverArgs) -> ExitCode {
    match handover_exporter::sharding::hand_over(
        &args.from,
        &args.to,
        &args.tenant,
        args.shard,
        args.total_shards,
    ) {
        Ok(report) => {
            let rows: Vec<String> = report
                .rows
                .iter()
                .map(|(table, n)| format!("{table} {n}"))
                .collect();
            println!(
                "tenant {} handed over from {} to {} (shard {} of {}): {}",
                args.tenant,
                args.from.display(),
                args.to.display(),
                args.shard,
                args.total_shards,
                rows.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn demo(args: DemoArgs) -> ExitCode {
    telemetry::init(args.log.log_level, args.log.log_format);
    let address = daemon::listen_address(&args.listen_address);
    run_async(async move {
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|e| anyhow::anyhow!("--web.listen-address {address}: {e}"))?;
        let simulator = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        handover_exporter::demo::run(
            listener,
            simulator,
            SimulatorOptions {
                scenario: args.world.scenario,
                extension_version: args.world.extension_version,
                ..handover_exporter::demo::simulator_options(args.world.seed)
            },
            daemon::shutdown_signal(),
        )
        .await
    })
}

fn simulate(args: SimulateArgs) -> ExitCode {
    let options = SimulatorOptions {
        seed: args.world.seed,
        scenario: args.world.scenario,
        extension_version: args.world.extension_version,
        calls: args.calls,
        rate_per_day: Some(args.rate),
        backlog_hours: args.backlog_hours,
        cognigy_lag_seconds: args.cognigy_lag_seconds,
        cognigy_delay: args.cognigy_delay,
        faults: Faults {
            rate_limit_429: args.rate_limit_429,
            retry_after: args.retry_after,
            server_error_burst: args.server_error_burst,
            slow_ms: args.slow_ms,
            truncated_pages: args.truncated_pages,
            malformed_pages: args.malformed_pages,
            token_ttl_seconds: args.token_ttl_seconds,
            token_dies_after_seconds: args.token_dies_after_seconds,
            keyset_end_500: args.keyset_end_500,
            old_cxone_fields: args.old_cxone_fields,
            odata_underscore_id: args.odata_underscore_id,
            logs_filter_refused: args.logs_filter_refused,
            cognigy_down: args.cognigy_down,
            // Mid-body resets and slow bursts are switched at run time
            // (`POST /_sim/faults`), as the fault-matrix harness does.
            ..Faults::default()
        },
        ..SimulatorOptions::default()
    };
    if let Some(dir) = args.dump {
        return match handover_exporter::simulator::dump(&options, &dir) {
            Ok(truth) => {
                println!(
                    "{}: replay directory with {} bot contact(s) written",
                    dir.display(),
                    truth.contacts.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: --dump {}: {e:#}", dir.display());
                ExitCode::from(2)
            }
        };
    }
    telemetry::init(args.log.log_level, args.log.log_format);
    let address = daemon::listen_address(&args.listen_address);
    run_async(async move {
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|e| anyhow::anyhow!("--web.listen-address {address}: {e}"))?;
        println!(
            "simulated CXone + Cognigy APIs at http://{}",
            listener.local_addr()?
        );
        println!(
            "  ground truth: http://{}/_sim/truth",
            listener.local_addr()?
        );
        handover_exporter::simulator::run(listener, options, daemon::shutdown_signal()).await
    })
}
