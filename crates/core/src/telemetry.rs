//! Logging set-up: logfmt (the Prometheus exporters' default) or JSON lines on stderr.
//!
//! Only formatting lives here; what is logged, and that secrets never are, is each module's job.

use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Log line format (`--log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// Log level (`--log.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    fn directive(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// The logging flags every command takes (`--log.level`, `--log.format`).
#[derive(clap::Args, Debug, Clone)]
pub struct LogArgs {
    /// Only log messages with the given severity or above.
    #[arg(
        long = "log.level",
        env = "HANDOVER_LOG_LEVEL",
        value_enum,
        default_value = "info"
    )]
    pub log_level: LogLevel,
    /// Output format of log messages.
    #[arg(
        long = "log.format",
        env = "HANDOVER_LOG_FORMAT",
        value_enum,
        default_value = "logfmt"
    )]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the global subscriber these flags describe.
    pub fn init(&self) {
        init(self.log_level, self.log_format);
    }
}

/// Installs the global subscriber. Our crates log at `level`; dependencies only at warn and up.
pub fn init(level: LogLevel, format: LogFormat) {
    let level = level.directive();
    let filter = EnvFilter::new(format!(
        "warn,handover_exporter={level},handover_simulator={level}"
    ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Logfmt => builder.event_format(Logfmt).try_init(),
    };
}

/// `ts=... level=info msg="cycle" tenant=acme diagnosed=3`.
struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        let mut fields = LogfmtFields::default();
        event.record(&mut fields);
        write!(w, "ts={now} level={level}")?;
        if let Some(msg) = fields.message {
            write!(w, " msg={}", quote(&msg))?;
        }
        write!(w, " target={}", event.metadata().target())?;
        for (k, v) in fields.pairs {
            write!(w, " {k}={}", quote(&v))?;
        }
        writeln!(w)
    }
}

#[derive(Default)]
struct LogfmtFields {
    message: Option<String>,
    pairs: Vec<(&'static str, String)>,
}

impl Visit for LogfmtFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, format!("{value:?}"));
    }
}

impl LogfmtFields {
    fn push(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = Some(value);
        } else {
            self.pairs.push((field.name(), value));
        }
    }
}

/// Quotes a logfmt value when it needs it.
fn quote(value: &str) -> String {
    if !value.is_empty()
        && !value
            .chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c.is_control())
    {
        value.to_owned()
    } else {
        format!("{value:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::quote;

    /// logfmt values with spaces, quotes or equals signs are quoted; plain ones are not.
    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(quote("acme"), "acme");
        assert_eq!(quote("poll failed"), "\"poll failed\"");
        assert_eq!(quote("a=b"), "\"a=b\"");
        assert_eq!(quote(""), "\"\"");
    }
}
