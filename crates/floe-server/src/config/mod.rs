//! Configuration, quickwit style: sources are merged into a private serde builder that denies
//! unknown keys, each section's builder is validated, and the result is the public, typed
//! [`Config`].
//!
//! One module per section (`server`, `log`, `snowflake`, `segment`, `registry`, `numbers`) holds
//! its public struct, its named defaults, its builder and the builder's `build`; `value` holds the
//! typed wrappers that read a key from TOML or from the text of a variable or flag, and `sources`
//! the layering of file, environment and flags.
//!
//! Every rejected value produces a message that names the key, the value and the allowed range;
//! the binary prints it and exits with 64 (`EX_USAGE`). `docs/configuration.md` lists every key.

mod log;
mod numbers;
mod registry;
mod segment;
mod server;
mod snowflake;
mod sources;
mod value;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::Figment;
// The tests compare layouts and reach every name through `super::*`.
#[cfg(test)]
use floe_core::Layout;
use serde::Deserialize;

use self::log::LogBuilder;
pub use self::log::{LogConfig, LogFormat, LogLevel, LOG_LEVELS};
use self::registry::RegistryBuilder;
pub use self::registry::RegistrySettings;
use self::segment::SegmentBuilder;
pub use self::segment::{SegmentSettings, ServiceConfig};
use self::server::ServerBuilder;
pub use self::server::{
    HttpLimits, ServerConfig, DEFAULT_HTTP_LISTEN, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_COUNT,
    DEFAULT_TCP_LISTEN,
};
use self::snowflake::SnowflakeBuilder;
pub use self::snowflake::{SnowflakeConfig, VolumeConfig};
use self::sources::{describe, Sources};
use self::value::Text;
pub use crate::args::ServeArgs;

/// Default `data_dir`, relative to the working directory.
const DEFAULT_DATA_DIR: &str = "./data";

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key has a value outside its allowed range.
    #[error("{key} = {value} is invalid: {allowed}")]
    Invalid {
        /// The key (`server.max_count`) or the flag or variable that set it.
        key: String,
        /// The value as given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A key of GenID's `config.json` is missing or out of range.
    #[error("GenID config {path}: {key} = {value} is invalid: {allowed}")]
    Genid {
        /// The file.
        path: String,
        /// The JSON key.
        key: &'static str,
        /// The value as given (`missing` when absent).
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A source could not be read or has the wrong shape (unknown key, unreadable file).
    #[error("{0}")]
    Source(String),
}

/// sysexits' `EX_USAGE`, the exit code for every configuration error.
pub const EX_USAGE: u8 = 64;

/// A legal but doubtful setting, logged once logging is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    /// The static identity is 0 in every node field, so two such nodes issue the same IDs.
    ZeroIdentity {
        /// The layout's node fields.
        fields: Vec<String>,
    },
    /// `FLOE_WORKER_ID` is set but the layout has no `worker` field to put it in.
    WorkerIdIgnored {
        /// The variable.
        var: String,
    },
    /// GenID's `config.json` has keys Floe does not read.
    GenidKeysIgnored {
        /// The file, as named by the flag.
        path: String,
        /// The keys ignored.
        keys: Vec<String>,
    },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::ZeroIdentity { fields } => write!(
                f,
                "snowflake.identity is 0 for every node field ({}): two nodes with the same identity issue the same IDs; give each node its own",
                fields.join(", ")
            ),
            ConfigWarning::WorkerIdIgnored { var } => write!(
                f,
                "{var} is set but the layout has no `worker` field; ignoring it"
            ),
            ConfigWarning::GenidKeysIgnored { path, keys } => write!(
                f,
                "GenID config {path}: ignoring keys Floe does not use: {}",
                keys.join(", ")
            ),
        }
    }
}

/// The validated configuration of one Floe node.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listeners and their limits.
    pub server: ServerConfig,
    /// Where the high-water file (and later the SQLite store) lives.
    pub data_dir: PathBuf,
    /// Log level and format.
    pub log: LogConfig,
    /// The snowflake generator: layout, identity, clock tolerance.
    pub snowflake: SnowflakeConfig,
    /// Segment mode, or `None` when `segment.enabled = false`.
    pub segment: Option<SegmentSettings>,
    /// Where the worker id comes from; `None`: the static `snowflake.identity`.
    pub registry: Option<RegistrySettings>,
    /// Number sequences declared in `[numbers.<name>]`, by name.
    pub numbers: Vec<floe_core::numbers::Sequence>,
}

/// A validated configuration and the warnings found on the way (logged once logging is up).
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Legal but doubtful settings (identity 0, ignored GenID keys…), as [`ConfigWarning`] text.
    pub warnings: Vec<String>,
}

/// Reads and validates the configuration from the flags' files, the environment `env` and the
/// flags, in that order of precedence (later wins).
pub fn load(args: &ServeArgs, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let sources = Sources::gather(args, env)?;
    let first: Builder = sources.figment(false)?.extract().map_err(describe)?;
    let mut warnings = sources.warnings.clone();
    let builder = match sources.worker_var() {
        Some(_) if first.snowflake.layout_has_worker() => {
            sources.figment(true)?.extract().map_err(describe)?
        }
        Some(var) => {
            // MASA's own WORKER_ID is set for MASA, not for Floe: ignoring it needs no word.
            if var == "FLOE_WORKER_ID" {
                warnings.push(ConfigWarning::WorkerIdIgnored {
                    var: var.to_owned(),
                });
            }
            first
        }
        None => first,
    };
    let config = builder.build(&mut warnings)?;
    Ok(Loaded {
        config,
        warnings: warnings.iter().map(ToString::to_string).collect(),
    })
}

impl Config {
    /// Validates a configuration given as TOML text, with no environment and no flags.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        sources::check_lists(text)?;
        let builder: Builder = Figment::from(Toml::string(text))
            .extract()
            .map_err(describe)?;
        builder.build(&mut Vec::new())
    }
}

impl Default for Config {
    /// Every key at its default.
    fn default() -> Config {
        Builder::default()
            .build(&mut Vec::new())
            .expect("the default configuration is valid")
    }
}

/// The configuration as written, before validation; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Builder {
    data_dir: Text,
    server: ServerBuilder,
    log: LogBuilder,
    snowflake: SnowflakeBuilder,
    segment: SegmentBuilder,
    registry: RegistryBuilder,
    numbers: numbers::NumbersBuilder,
}

impl Builder {
    /// Validates every section, in the order the checks of one section need the results of
    /// another (the registry's ttl depends on the snowflake's drift and tick).
    fn build(self, warnings: &mut Vec<ConfigWarning>) -> Result<Config, ConfigError> {
        let server = self.server.build()?;
        let data_dir = self.data_dir.get("data_dir", DEFAULT_DATA_DIR)?;
        if data_dir.trim().is_empty() {
            return Err(invalid("data_dir", "\"\"", "a directory path"));
        }
        let log = self.log.build()?;
        let snowflake = self.snowflake.build()?;
        let segment = self.segment.build()?;
        let registry = self.registry.build(&snowflake)?;
        let numbers = numbers::build(&self.numbers, segment.is_some())?;
        // A registry hands out the identity, so a static one of 0 is expected then.
        if registry.is_none() {
            warnings.extend(snowflake.zero_identity_warning());
        }
        Ok(Config {
            server,
            data_dir: PathBuf::from(data_dir),
            log,
            snowflake,
            segment,
            registry,
            numbers,
        })
    }
}

/// The error for `key = value`, which is outside what is `allowed`.
fn invalid(key: &str, value: impl fmt::Display, allowed: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_string(),
        allowed: allowed.into(),
    }
}

/// A duration the way a user writes it (`1s 500ms`).
fn ms(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests;
