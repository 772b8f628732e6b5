//! The `[log]` section: initial level and line format.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use super::value::Text;
use super::{invalid, ConfigError};

/// Default `log.level`.
const DEFAULT_LEVEL: &str = "info";
/// Default `log.format`.
const DEFAULT_FORMAT: &str = "text";

/// Logging settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Initial level; the admin API changes it at run time.
    pub level: LogLevel,
    /// Human-readable text or one JSON object per line.
    pub format: LogFormat,
}

/// A log level, as accepted by the config and the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Per-connection detail.
    Debug,
    /// Start, stop, configuration.
    Info,
    /// Problems the node survives.
    Warn,
    /// Failures only.
    Error,
}

/// The names [`LogLevel`] parses, for messages.
pub const LOG_LEVELS: &str = "trace, debug, info, warn, error";

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<LogLevel, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trace" => Ok(LogLevel::Trace),
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "error" => Ok(LogLevel::Error),
            _ => Err(format!("one of {LOG_LEVELS}")),
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        })
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[log]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct LogBuilder {
    level: Text,
    format: Text,
}

impl LogBuilder {
    /// Validates `[log]`.
    pub(super) fn build(&self) -> Result<LogConfig, ConfigError> {
        let level_text = self.level.get("log.level", DEFAULT_LEVEL)?;
        let level = level_text
            .parse()
            .map_err(|allowed: String| invalid("log.level", format!("{level_text:?}"), allowed))?;
        let format_text = self.format.get("log.format", DEFAULT_FORMAT)?;
        let format = match format_text.trim().to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                return Err(invalid(
                    "log.format",
                    format!("{format_text:?}"),
                    "text or json",
                ))
            }
        };
        Ok(LogConfig { level, format })
    }
}
