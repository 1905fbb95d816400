//! The `handover-exporter` binary: parses flags, sets up logging, then makes one library call per
//! subcommand. Everything else lives in the library.

use clap::{Args, Parser, Subcommand};
use handover_exporter::daemon::{self, ServeOptions};
use handover_exporter::report::Format;
use handover_exporter::telemetry::{self, LogFormat, LogLevel};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Diagnose(args)) => diagnose(args),
        Some(Command::Serve(args)) => serve(args),
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
            eprintln!("error: live diagnose is not available in this build yet");
            ExitCode::from(2)
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
    if args.config_check {
        println!(
            "{}: configuration is valid ({} tenant(s))",
            args.config_file.display(),
            config.tenants.len()
        );
        return ExitCode::SUCCESS;
    }
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
    telemetry::init(args.log.log_level, args.log.log_format);
    let options = ServeOptions {
        telemetry_path: args.telemetry_path,
        web_config,
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
