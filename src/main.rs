//! The `handover-exporter` binary: parses flags, then makes one library call per subcommand.
//! Every command returns its exit code (0, or 1 when `diagnose` found a failure) or an error,
//! and [`exit_code`] is the one place an error becomes `error: ...` on stderr and exit 2.
//! Everything else lives in the libraries: `handover_exporter` (crates/core) and, for `demo`
//! and `simulate`, `handover_simulator` (crates/simulator, feature `simulator`).

use clap::{Args, Parser, Subcommand};
use handover_exporter::daemon::{self, ServeOptions};
use handover_exporter::report::Format;
use handover_exporter::telemetry::LogArgs;
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
    /// Check a tenant's configuration against its live APIs, one pass/warn/fail line per step.
    Check(CheckArgs),
    /// Write the raw API bodies of one contact (or a window) as a replay directory.
    Capture(CaptureArgs),
    /// Move one tenant's state to the state file of the shard that owns it under a new shard
    /// count (every daemon stopped; README, Scale-out).
    ShardHandover(ShardHandoverArgs),
    /// Run the simulator and the daemon together on loopback (no credentials needed).
    #[cfg(feature = "simulator")]
    Demo(handover_simulator::cli::DemoArgs),
    /// Run the simulated CXone and Cognigy APIs alone, with ground truth at /_sim/truth.
    #[cfg(feature = "simulator")]
    Simulate(handover_simulator::cli::SimulateArgs),
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

#[derive(Args, Debug)]
struct CheckArgs {
    /// Configuration file (TOML).
    #[arg(
        long = "config.file",
        env = "HANDOVER_CONFIG_FILE",
        default_value = "handover-exporter.toml"
    )]
    config_file: PathBuf,
    /// The tenant to check (default: the only tenant of the configuration).
    #[arg(long, env = "HANDOVER_TENANT")]
    tenant: Option<String>,
    /// Output format.
    #[arg(long, value_enum, env = "HANDOVER_FORMAT", default_value = "text")]
    format: Format,
    /// How far back contacts, sessions and logs are read.
    #[arg(
        long = "lookback-hours",
        env = "HANDOVER_LOOKBACK_HOURS",
        default_value_t = 2.0
    )]
    lookback_hours: f64,
    /// How long to watch for Cognigy records written late (0 skips that step).
    #[arg(
        long = "watch-seconds",
        env = "HANDOVER_WATCH_SECONDS",
        default_value_t = 60
    )]
    watch_seconds: u64,
}

#[derive(Args, Debug)]
struct CaptureArgs {
    /// The CXone contact id whose diagnosis data to capture (the reads of `diagnose ID`).
    #[arg(long, required_unless_present = "since", conflicts_with_all = ["since", "until"])]
    contact: Option<i64>,
    /// Instead: capture every call that started from this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// With --since: up to this time (RFC 3339; default now).
    #[arg(long, requires = "since")]
    until: Option<String>,
    /// The replay directory to write (new or empty).
    #[arg(long)]
    out: PathBuf,
    /// Configuration file (TOML).
    #[arg(
        long = "config.file",
        env = "HANDOVER_CONFIG_FILE",
        default_value = "handover-exporter.toml"
    )]
    config_file: PathBuf,
    /// The tenant (default: the only tenant of the configuration).
    #[arg(long, env = "HANDOVER_TENANT")]
    tenant: Option<String>,
}

fn main() -> ExitCode {
    handover_exporter::allocator::tune();
    let cli = Cli::parse();
    exit_code(match cli.command {
        Some(Command::Diagnose(args)) => diagnose(args),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Check(args)) => check(args),
        Some(Command::Capture(args)) => capture(args),
        Some(Command::ShardHandover(args)) => shard_handover(args),
        #[cfg(feature = "simulator")]
        Some(Command::Demo(args)) => handover_simulator::cli::demo(args),
        #[cfg(feature = "simulator")]
        Some(Command::Simulate(args)) => handover_simulator::cli::simulate(args),
        None => serve(cli.serve),
    })
}

/// The one way out: a command's own code, or `error: ...` and 2 for an error.
fn exit_code(outcome: anyhow::Result<u8>) -> ExitCode {
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// An error's message as it is, for errors whose `Display` already says everything (the
/// library's errors name the key, flag or file that is wrong).
fn message(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn diagnose(args: DiagnoseArgs) -> anyhow::Result<u8> {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    if let Some(dir) = args.replay {
        return Ok(handover_exporter::replay::run(
            &dir,
            args.format,
            &mut stdout.lock(),
            &mut stderr.lock(),
        ));
    }
    // clap requires CONTACT_ID when --replay is absent.
    let contact_id = args
        .contact_id
        .ok_or_else(|| anyhow::anyhow!("give a CONTACT_ID or --replay DIR"))?;
    let config = handover_exporter::config::load(&args.config_file).map_err(message)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    Ok(runtime.block_on(handover_exporter::drilldown::run(
        &config,
        args.tenant.as_deref(),
        contact_id,
        args.format,
        &mut stdout.lock(),
        &mut stderr.lock(),
    )))
}

/// The configuration and a single-threaded runtime, for a one-shot command.
fn one_shot(
    config_file: &std::path::Path,
) -> anyhow::Result<(handover_exporter::config::Config, tokio::runtime::Runtime)> {
    let config = handover_exporter::config::load(config_file).map_err(message)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    Ok((config, runtime))
}

fn check(args: CheckArgs) -> anyhow::Result<u8> {
    if !(args.lookback_hours.is_finite()
        && args.lookback_hours > 0.0
        && args.lookback_hours <= 168.0)
    {
        anyhow::bail!(
            "--lookback-hours must be more than 0 and at most 168, got {}",
            args.lookback_hours
        );
    }
    let (config, runtime) = one_shot(&args.config_file)?;
    let options = handover_exporter::check::CheckOptions {
        lookback: chrono::Duration::milliseconds((args.lookback_hours * 3_600_000.0) as i64),
        watch: std::time::Duration::from_secs(args.watch_seconds),
    };
    Ok(runtime.block_on(handover_exporter::check::run(
        &config,
        args.tenant.as_deref(),
        options,
        args.format,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )))
}

/// An RFC 3339 time given to `flag`; the error names the flag and shows the form.
fn rfc3339(flag: &str, text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| {
            anyhow::anyhow!(
                "{flag} {text:?}: not an RFC 3339 time ({e}), e.g. 2026-03-20T09:00:00Z"
            )
        })
}

fn capture(args: CaptureArgs) -> anyhow::Result<u8> {
    use handover_exporter::capture::Target;
    let target = match (args.contact, &args.since) {
        (Some(id), _) => Target::Contact(id),
        (None, Some(since)) => Target::Window {
            since: rfc3339("--since", since)?,
            until: match &args.until {
                Some(until) => rfc3339("--until", until)?,
                None => chrono::Utc::now(),
            },
        },
        // clap requires --contact or --since.
        (None, None) => anyhow::bail!("give --contact ID or --since TIME"),
    };
    let (config, runtime) = one_shot(&args.config_file)?;
    Ok(runtime.block_on(handover_exporter::capture::run(
        &config,
        args.tenant.as_deref(),
        &target,
        &args.out,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )))
}

fn serve(mut args: ServeArgs) -> anyhow::Result<u8> {
    let config = handover_exporter::config::load(&args.config_file).map_err(message)?;
    if args.shard_from_hostname {
        // HOSTNAME is set by Kubernetes (the pod name); else ask the kernel.
        let hostname = std::env::var("HOSTNAME").ok().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default()
        });
        args.shard =
            handover_exporter::sharding::shard_from_hostname(&hostname).map_err(message)?;
    }
    let config = daemon::select_shard(config, args.shard, args.total_shards).map_err(message)?;
    let web_config = match &args.web_config_file {
        Some(path) => Some(Arc::new(
            handover_exporter::server::WebConfig::load(path).map_err(message)?,
        )),
        None => None,
    };
    handover_exporter::server::validate_telemetry_path(&args.telemetry_path).map_err(message)?;
    if args.config_check {
        let state_path = std::path::Path::new(&config.state_path);
        handover_exporter::store::check_path(state_path)
            .map_err(|e| anyhow::anyhow!("{}: state_path: {e}", args.config_file.display()))?;
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
        return Ok(0);
    }
    args.log.init();
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
    daemon::block_on(async move {
        let listener = daemon::bind(&args.listen_address).await?;
        tracing::info!(address = %listener.local_addr()?, "listening");
        daemon::run(config, listener, options, daemon::shutdown_signal()).await
    })?;
    Ok(0)
}

fn shard_handover(args: ShardHandoverArgs) -> anyhow::Result<u8> {
    let report = handover_exporter::sharding::hand_over(
        &args.from,
        &args.to,
        &args.tenant,
        args.shard,
        args.total_shards,
    )
    .map_err(message)?;
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
    Ok(0)
}
