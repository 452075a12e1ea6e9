//! Log set-up shared by the subcommands: `--log-level` beside `RUST_LOG`, text or JSON lines on
//! stderr, colour only on a terminal.

use clap::ValueEnum;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn directive(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// kube's client logs every failed request at ERROR on its own, and the operator then logs the
/// same failure with what it was doing and the API server's address: one line per failure, so
/// that one is silenced unless the filter names kube_client itself.
const DUPLICATE_REQUEST_ERRORS: &str = "kube_client::client::builder=off";

/// The filter: `--log-level` when given (one level for every module; it wins over RUST_LOG),
/// else `RUST_LOG` (per-module directives allowed), else `default`.
fn filter(level: Option<LogLevel>, default: LogLevel) -> EnvFilter {
    let text = match level {
        Some(level) => level.directive().to_owned(),
        None => std::env::var("RUST_LOG")
            .ok()
            .filter(|value| !value.trim().is_empty() && EnvFilter::try_new(value).is_ok())
            .unwrap_or_else(|| default.directive().to_owned()),
    };
    let text = if text.contains("kube_client") {
        text
    } else {
        format!("{text},{DUPLICATE_REQUEST_ERRORS}")
    };
    EnvFilter::try_new(&text).unwrap_or_else(|_| EnvFilter::new(default.directive()))
}

/// Colour (ANSI escapes) only when stderr is a terminal and NO_COLOR is unset.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn init(format: LogFormat, level: Option<LogLevel>, default: LogLevel) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level, default))
        .with_writer(std::io::stderr)
        .with_ansi(colour());
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
