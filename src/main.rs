//! The `handover-exporter` binary: parses flags, sets up logging, then makes one library call per
//! subcommand. Everything else lives in the library.

use clap::{Args, Parser, Subcommand};
use handover_exporter::report::Format;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Log level: debug, info, warn, error.
    #[arg(long = "log.level", env = "HANDOVER_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log format: logfmt or json.
    #[arg(
        long = "log.format",
        env = "HANDOVER_LOG_FORMAT",
        default_value = "logfmt"
    )]
    log_format: String,
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

fn serve(_args: ServeArgs) -> ExitCode {
    eprintln!("error: serve is not available in this build yet");
    ExitCode::from(2)
}
