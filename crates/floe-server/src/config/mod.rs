//! Configuration, quickwit style: sources are merged into a private serde builder that denies
//! unknown keys, the builder is validated, and the result is the public, typed [`Config`].
//!
//! Every rejected value produces a message that names the key, the value and the allowed range;
//! the binary prints it and exits with 64 (`EX_USAGE`). `docs/configuration.md` lists every key.

mod sources;
mod value;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::Figment;
use floe_core::SegmentConfig;
use floe_core::{
    Clock, FieldKind, GenError, Generator, GeneratorConfig, Identity, IdentityError, Layout,
    MachineClock, MemoryHighWater, OffsetClock, SystemClock, VolumeHiding,
};
use floe_store::registry::{RedisConfig, RegistryConfig, SqlConfig};
use floe_store::segment::{ServiceConfig, StoreOptions, TableSpec};
use serde::Deserialize;

pub use crate::args::ServeArgs;
use sources::{describe, Sources};
use value::{IdentitySpec, List, Scalar};

/// Default binary TCP address (GenID's port, loopback only until configured otherwise).
pub const DEFAULT_TCP_LISTEN: &str = "127.0.0.1:3778";
/// Default HTTP address.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8880";
/// Default limit of open binary TCP connections.
pub const DEFAULT_MAX_CONNECTIONS: i64 = 10_000;
/// Default limit of IDs per request (v2 count, HTTP `count`).
pub const DEFAULT_MAX_COUNT: i64 = floe_proto::DEFAULT_MAX_COUNT as i64;

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
}

/// Validated `[registry]` settings: a leased worker id (SQL, Redis) or one derived from the host
/// name (Kubernetes), instead of a static identity.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrySettings {
    /// Which registry and how to reach it.
    pub registry: RegistryConfig,
    /// Ids are unique within a namespace; several clusters can share one store.
    pub namespace: String,
    /// How long the store keeps an id for a node that stops renewing.
    pub ttl: Duration,
    /// The layout's node fields the leased id fills (e.g. `machine` within GenID's zone/dc).
    pub fields: Vec<String>,
}

/// Validated `[segment]` settings: where the segment table is and how the buffers behave.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentSettings {
    /// Database URL (`sqlite:`, `postgres:`, `mysql:`); `None`: the SQLite file
    /// `<data_dir>/floe.db`, resolved at start so a changed `data_dir` moves it too.
    pub url: Option<String>,
    /// Table and column names (a preset, possibly with overrides).
    pub table: TableSpec,
    /// Pool size, call timeout, whether to create the table.
    pub store: StoreOptions,
    /// Buffer and refill behaviour.
    pub service: ServiceConfig,
}

/// Listener settings.
#[derive(Clone)]
pub struct ServerConfig {
    /// Binary TCP (GenID v1 + v2) address.
    pub tcp_listen: SocketAddr,
    /// HTTP address.
    pub http_listen: SocketAddr,
    /// Open binary TCP connections beyond this are closed at once, bounding memory.
    pub max_connections: usize,
    /// A connection with no complete request for this long is closed.
    pub idle_timeout: Duration,
    /// A partial frame must complete within this long (defends against slowloris).
    pub frame_timeout: Duration,
    /// A binary TCP connection whose pending replies make no write progress for this long is
    /// closed (a client that stopped reading must not hold its memory and slot forever).
    pub write_timeout: Duration,
    /// Most IDs one request may ask for.
    pub max_count: u32,
    /// How long graceful shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// Bearer token of the admin routes; `None` disables them (they answer 404).
    pub admin_token: Option<String>,
    /// HTTP limits: header and body deadlines, keep-alive idle time, connection cap.
    pub http: HttpLimits,
    /// HTTP addresses (`host:port`) of other nodes, asked at start whether they share this identity.
    pub peers: Vec<String>,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a secret: logs and panics must not show it.
        f.debug_struct("ServerConfig")
            .field("tcp_listen", &self.tcp_listen)
            .field("http_listen", &self.http_listen)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("frame_timeout", &self.frame_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("max_count", &self.max_count)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("peers", &self.peers)
            .field("http", &self.http)
            .finish()
    }
}

/// Limits of the HTTP listener, the counterparts of the binary TCP listener's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request head must arrive within this long of its first byte (slowloris).
    pub header_timeout: Duration,
    /// An admin request body must arrive within this long (a stalled body holds a buffer).
    pub body_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Open HTTP connections beyond this are closed at once, bounding memory and descriptors.
    pub max_connections: usize,
}

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

/// Snowflake generator settings.
#[derive(Debug, Clone)]
pub struct SnowflakeConfig {
    /// The bit layout of every ID.
    pub layout: Layout,
    /// This node's values of the layout's node fields.
    pub identity: Identity,
    /// Number of lanes; 0 means every lane the layout addresses.
    pub lanes: u32,
    /// A clock step back up to this much is served from logical time.
    pub max_rollback: Duration,
    /// How far logical time may run ahead of the wall clock.
    pub max_drift: Duration,
    /// How far ahead each high-water write reaches.
    pub high_water_window: Duration,
    /// MASA's machine clock: wall time at start plus monotonic time since.
    pub machine_clock: bool,
    /// Shifts the clock (negative: the past), to rehearse a rollback or test restarts.
    pub clock_offset_ms: i64,
    /// Volume hiding (GoldFlake), off when `None`.
    pub volume: Option<VolumeConfig>,
}

/// Volume hiding settings; the random seed is drawn from the OS at start.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeConfig {
    /// Probability per tick advance of a forward jump.
    pub jump_probability: f64,
    /// Largest jump in ticks.
    pub max_jump_ticks: u64,
    /// Start each tick's sequence at a random offset.
    pub random_seq_start: bool,
}

impl SnowflakeConfig {
    /// The clock this configuration asks for; build it once, since a machine clock anchors now.
    pub fn clock(&self) -> Arc<dyn Clock> {
        let wall: Arc<dyn Clock> = if self.clock_offset_ms == 0 {
            Arc::new(SystemClock)
        } else {
            Arc::new(OffsetClock::new(SystemClock, self.clock_offset_ms))
        };
        if self.machine_clock {
            Arc::new(MachineClock::new(&wall))
        } else {
            wall
        }
    }

    /// The generator settings, with `seed` for volume hiding.
    pub fn generator_config(&self, seed: u64) -> GeneratorConfig {
        GeneratorConfig {
            lanes: self.lanes,
            max_rollback: self.max_rollback,
            max_drift: self.max_drift,
            high_water_window: self.high_water_window,
            volume: self.volume.as_ref().map(|v| VolumeHiding {
                jump_probability: v.jump_probability,
                max_jump_ticks: v.max_jump_ticks,
                random_seq_start: v.random_seq_start,
                seed,
            }),
        }
    }
}

/// A validated configuration and the warnings found on the way (logged once logging is up).
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Legal but doubtful settings (identity 0, ignored GenID keys…).
    pub warnings: Vec<String>,
}

/// Reads and validates the configuration from the flags' files, the environment `env` and the
/// flags, in that order of precedence (later wins).
pub fn load(args: &ServeArgs, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let sources = Sources::gather(args, env)?;
    let first: Builder = sources.figment(false)?.extract().map_err(describe)?;
    let mut warnings = sources.warnings.clone();
    let builder = match sources.worker_var() {
        Some(_) if first.layout_has_worker() => {
            sources.figment(true)?.extract().map_err(describe)?
        }
        Some(var) => {
            if var == "FLOE_WORKER_ID" {
                warnings.push(format!(
                    "{var} is set but the layout has no `worker` field; ignoring it"
                ));
            }
            first
        }
        None => first,
    };
    let config = builder.build(&mut warnings)?;
    Ok(Loaded { config, warnings })
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
    data_dir: Option<Scalar>,
    server: ServerBuilder,
    log: LogBuilder,
    snowflake: SnowflakeBuilder,
    segment: SegmentBuilder,
    registry: RegistryBuilder,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RegistryBuilder {
    kind: Option<Scalar>,
    url: Option<Scalar>,
    namespace: Option<Scalar>,
    ttl: Option<Scalar>,
    table: Option<Scalar>,
    key_prefix: Option<Scalar>,
    fields: Option<List>,
    offset: Option<Scalar>,
    call_timeout: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SegmentBuilder {
    enabled: Option<Scalar>,
    url: Option<Scalar>,
    schema: Option<Scalar>,
    table: Option<Scalar>,
    tag_column: Option<Scalar>,
    max_id_column: Option<Scalar>,
    step_column: Option<Scalar>,
    create_table: Option<Scalar>,
    call_timeout: Option<Scalar>,
    max_connections: Option<Scalar>,
    refill_threshold: Option<Scalar>,
    target_lifetime: Option<Scalar>,
    min_step: Option<Scalar>,
    max_step: Option<Scalar>,
    default_step: Option<Scalar>,
    auto_create: Option<Scalar>,
    wait_timeout: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ServerBuilder {
    tcp_listen: Option<Scalar>,
    http_listen: Option<Scalar>,
    max_connections: Option<Scalar>,
    idle_timeout: Option<Scalar>,
    frame_timeout: Option<Scalar>,
    write_timeout: Option<Scalar>,
    max_count: Option<Scalar>,
    shutdown_timeout: Option<Scalar>,
    admin_token: Option<Scalar>,
    peers: Option<List>,
    http_header_timeout: Option<Scalar>,
    http_body_timeout: Option<Scalar>,
    http_idle_timeout: Option<Scalar>,
    http_max_connections: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LogBuilder {
    level: Option<Scalar>,
    format: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SnowflakeBuilder {
    layout: Option<Scalar>,
    identity: Option<IdentitySpec>,
    lanes: Option<Scalar>,
    max_rollback: Option<Scalar>,
    max_drift: Option<Scalar>,
    high_water_window: Option<Scalar>,
    machine_clock: Option<Scalar>,
    clock_offset_ms: Option<Scalar>,
    volume: VolumeBuilder,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct VolumeBuilder {
    jump_probability: Option<Scalar>,
    max_jump_ticks: Option<Scalar>,
    random_seq_start: Option<Scalar>,
}

fn invalid(key: &str, value: impl fmt::Display, allowed: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_string(),
        allowed: allowed.into(),
    }
}

fn int(
    key: &str,
    v: &Option<Scalar>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ConfigError> {
    let allowed = || format!("an integer in {min}..={max}");
    let n = match v {
        None => return Ok(default),
        Some(Scalar::Int(n)) => *n,
        Some(s @ Scalar::Str(text)) => text
            .trim()
            .parse::<i128>()
            .map_err(|_| invalid(key, s, allowed()))?,
        Some(other) => return Err(invalid(key, other, allowed())),
    };
    if n < i128::from(min) || n > i128::from(max) {
        return Err(invalid(key, n, allowed()));
    }
    Ok(n as i64)
}

fn float(
    key: &str,
    v: &Option<Scalar>,
    default: f64,
    min: f64,
    max: f64,
) -> Result<f64, ConfigError> {
    let allowed = || format!("a number in {min}..={max}");
    let x = match v {
        None => return Ok(default),
        Some(Scalar::Float(x)) => *x,
        Some(Scalar::Int(n)) => *n as f64,
        Some(s @ Scalar::Str(text)) => text
            .trim()
            .parse::<f64>()
            .map_err(|_| invalid(key, s, allowed()))?,
        Some(other) => return Err(invalid(key, other, allowed())),
    };
    if !(min..=max).contains(&x) {
        return Err(invalid(key, x, allowed()));
    }
    Ok(x)
}

fn boolean(key: &str, v: &Option<Scalar>, default: bool) -> Result<bool, ConfigError> {
    match v {
        None => Ok(default),
        Some(Scalar::Bool(b)) => Ok(*b),
        Some(s @ Scalar::Str(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(invalid(key, s, "true or false")),
        },
        Some(other) => Err(invalid(key, other, "true or false")),
    }
}

fn duration(
    key: &str,
    v: &Option<Scalar>,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let allowed = || {
        format!(
            "a duration with a unit in {}..={}, e.g. \"250ms\", \"5s\", \"5m\"",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )
    };
    let d = match v {
        None => return Ok(default),
        Some(s @ Scalar::Str(text)) => {
            humantime::parse_duration(text.trim()).map_err(|_| invalid(key, s, allowed()))?
        }
        Some(other) => return Err(invalid(key, other, allowed())),
    };
    if d < min || d > max {
        return Err(invalid(
            key,
            format!("{:?}", humantime::format_duration(d).to_string()),
            allowed(),
        ));
    }
    Ok(d)
}

fn text(v: &Option<Scalar>, default: &str) -> String {
    v.as_ref().map_or_else(|| default.to_owned(), Scalar::text)
}

/// A key whose value is text: a TOML number or boolean there is a mistake (`data_dir = 5`), not
/// something to turn into text. (The environment and flags always give strings.)
fn string(key: &str, v: &Option<Scalar>, default: &str) -> Result<String, ConfigError> {
    match v {
        None => Ok(default.to_owned()),
        Some(Scalar::Str(t)) => Ok(t.clone()),
        Some(other) => Err(invalid(
            key,
            other,
            format!("a string, e.g. {default:?} (write it in quotes)"),
        )),
    }
}

fn addr(key: &str, v: &Option<Scalar>, default: &str) -> Result<SocketAddr, ConfigError> {
    let t = string(key, v, default)?;
    t.trim().parse().map_err(|_| {
        invalid(
            key,
            format!("{t:?}"),
            "an IP address and port such as 127.0.0.1:3778 or [::1]:3778 (port 0 picks a free port)",
        )
    })
}

fn peer(key: &str, v: &Scalar) -> Result<String, ConfigError> {
    let Scalar::Str(raw) = v else {
        return Err(invalid(
            key,
            v,
            "a \"host:port\" string, e.g. \"10.0.0.2:8880\"",
        ));
    };
    let t = raw.trim();
    let t = t.strip_prefix("http://").unwrap_or(t).trim_end_matches('/');
    let ok = t
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        return Err(invalid(
            key,
            v,
            "host:port of another node's HTTP listener, e.g. 10.0.0.2:8880",
        ));
    }
    Ok(t.to_owned())
}

fn ms(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl Builder {
    /// Whether the layout as written has a `worker` node field (for `WORKER_ID`).
    fn layout_has_worker(&self) -> bool {
        Layout::parse(&text(&self.snowflake.layout, "genid")).is_ok_and(|l| {
            l.node_fields()
                .any(|f| f.name == "worker" && f.kind == FieldKind::Node)
        })
    }

    fn build(self, warnings: &mut Vec<String>) -> Result<Config, ConfigError> {
        let s = &self.server;
        let day = Duration::from_secs(86_400);
        let hour = Duration::from_secs(3_600);
        let idle_timeout = duration(
            "server.idle_timeout",
            &s.idle_timeout,
            Duration::from_secs(300),
            Duration::from_millis(100),
            7 * day,
        )?;
        let frame_timeout = duration(
            "server.frame_timeout",
            &s.frame_timeout,
            Duration::from_secs(10),
            Duration::from_millis(10),
            hour,
        )?;
        let admin_token = match &s.admin_token {
            None => None,
            Some(v) => {
                let t = string("server.admin_token", &Some(v.clone()), "")
                    .map_err(|_| invalid("server.admin_token", "<redacted>", "a string"))?;
                // An empty token must not silently disable admin: only an absent key does.
                // Non-ASCII is refused because clients send header values as bytes in
                // whatever encoding they like, so such a token could never match reliably.
                let printable = t.bytes().all(|b| b.is_ascii_graphic());
                if t.is_empty() || t.len() > 1024 || !printable {
                    return Err(invalid(
                        "server.admin_token",
                        if t.is_empty() { "\"\"" } else { "<redacted>" },
                        "1..=1024 ASCII characters without spaces or control characters \
                         (omit the key to disable the admin routes)",
                    ));
                }
                Some(t)
            }
        };
        let peers = s
            .peers
            .as_ref()
            .map(|l| {
                l.0.iter()
                    .enumerate()
                    .map(|(i, v)| peer(&format!("server.peers[{i}]"), v))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let server = ServerConfig {
            tcp_listen: addr("server.tcp_listen", &s.tcp_listen, DEFAULT_TCP_LISTEN)?,
            http_listen: addr("server.http_listen", &s.http_listen, DEFAULT_HTTP_LISTEN)?,
            max_connections: int(
                "server.max_connections",
                &s.max_connections,
                DEFAULT_MAX_CONNECTIONS,
                1,
                1_000_000,
            )? as usize,
            idle_timeout,
            frame_timeout,
            write_timeout: duration(
                "server.write_timeout",
                &s.write_timeout,
                Duration::from_secs(10),
                Duration::from_millis(10),
                hour,
            )?,
            max_count: int(
                "server.max_count",
                &s.max_count,
                DEFAULT_MAX_COUNT,
                1,
                1_000_000,
            )? as u32,
            shutdown_timeout: duration(
                "server.shutdown_timeout",
                &s.shutdown_timeout,
                Duration::from_secs(10),
                Duration::ZERO,
                hour,
            )?,
            admin_token,
            peers,
            http: HttpLimits {
                header_timeout: duration(
                    "server.http_header_timeout",
                    &s.http_header_timeout,
                    Duration::from_secs(10),
                    Duration::from_millis(10),
                    hour,
                )?,
                body_timeout: duration(
                    "server.http_body_timeout",
                    &s.http_body_timeout,
                    Duration::from_secs(10),
                    Duration::from_millis(10),
                    hour,
                )?,
                idle_timeout: duration(
                    "server.http_idle_timeout",
                    &s.http_idle_timeout,
                    Duration::from_secs(60),
                    Duration::from_millis(100),
                    7 * day,
                )?,
                max_connections: int(
                    "server.http_max_connections",
                    &s.http_max_connections,
                    DEFAULT_MAX_CONNECTIONS,
                    1,
                    1_000_000,
                )? as usize,
            },
        };

        let data_dir = string("data_dir", &self.data_dir, "./data")?;
        if data_dir.trim().is_empty() {
            return Err(invalid("data_dir", "\"\"", "a directory path"));
        }

        let level_text = string("log.level", &self.log.level, "info")?;
        let level = level_text
            .parse()
            .map_err(|allowed: String| invalid("log.level", format!("{level_text:?}"), allowed))?;
        let format_text = string("log.format", &self.log.format, "text")?;
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

        let snowflake = self.snowflake.build(warnings)?;
        let data_dir = PathBuf::from(data_dir);
        let segment = self.segment.build()?;
        let registry = self.registry.build(&snowflake)?;
        if registry.is_some() {
            // The registry hands out the identity; a static one of 0 is expected then.
            warnings.retain(|w| !w.starts_with("snowflake.identity is 0"));
        }
        Ok(Config {
            server,
            data_dir,
            log: LogConfig { level, format },
            snowflake,
            segment,
            registry,
        })
    }
}

impl RegistryBuilder {
    fn build(&self, sf: &SnowflakeConfig) -> Result<Option<RegistrySettings>, ConfigError> {
        let layout = &sf.layout;
        let kind = string("registry.kind", &self.kind, "static")?
            .trim()
            .to_ascii_lowercase();
        let call_timeout = duration(
            "registry.call_timeout",
            &self.call_timeout,
            Duration::from_secs(2),
            Duration::from_millis(10),
            Duration::from_secs(60),
        )?;
        let url = |default: Option<&str>| -> Result<String, ConfigError> {
            match (&self.url, default) {
                (Some(u), _) => Ok(u.text().trim().to_owned()),
                (None, Some(d)) => Ok(d.to_owned()),
                (None, None) => Err(invalid(
                    "registry.url",
                    "(missing)",
                    format!("a URL of the {kind} registry"),
                )),
            }
        };
        let registry = match kind.as_str() {
            "static" => return Ok(None),
            "kubernetes" => RegistryConfig::Kubernetes {
                offset: int("registry.offset", &self.offset, 0, 0, i64::from(u32::MAX))? as u32,
            },
            "sql" => {
                let url = url(None)?;
                floe_store::db::Dialect::of_url(&url).map_err(|why| {
                    invalid("registry.url", floe_store::db::redact_url(&url), why)
                })?;
                let mut c = SqlConfig::new(url);
                c.table = string("registry.table", &self.table, &c.table)?;
                c.call_timeout = call_timeout;
                RegistryConfig::Sql(c)
            }
            "redis" => {
                let url = url(Some("redis://127.0.0.1:6379"))?;
                if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                    return Err(invalid(
                        "registry.url",
                        floe_store::db::redact_url(&url),
                        "a redis:// or rediss:// URL",
                    ));
                }
                let mut c = RedisConfig::new(url);
                c.key_prefix = string("registry.key_prefix", &self.key_prefix, &c.key_prefix)?;
                c.call_timeout = call_timeout;
                RegistryConfig::Redis(c)
            }
            _ => {
                return Err(invalid(
                    "registry.kind",
                    format!("{kind:?}"),
                    "static, sql, redis or kubernetes",
                ))
            }
        };
        // Default pool: the `worker` field, else `machine` (GenID: within zone and dc), else the
        // least significant node field.
        let fields: Vec<String> = match &self.fields {
            Some(list) => list.0.iter().map(Scalar::text).collect(),
            None => {
                let names: Vec<&str> = layout.node_fields().map(|f| f.name.as_str()).collect();
                let pick = ["worker", "machine"]
                    .into_iter()
                    .find(|n| names.contains(n))
                    .or(names.last().copied())
                    .ok_or_else(|| {
                        invalid(
                            "registry.kind",
                            format!("{kind:?}"),
                            "static: the layout has no node field to lease",
                        )
                    })?;
                vec![pick.to_owned()]
            }
        };
        let names: Vec<&str> = fields.iter().map(String::as_str).collect();
        floe_store::registry::NodePool::new(layout, &names)
            .map_err(|e| invalid("registry.fields", format!("{fields:?}"), e.to_string()))?;
        let namespace = string("registry.namespace", &self.namespace, "floe")?;
        if namespace.is_empty() || namespace.len() > 64 || namespace.contains(char::is_whitespace) {
            return Err(invalid(
                "registry.namespace",
                format!("{namespace:?}"),
                "1..=64 characters without spaces",
            ));
        }
        let ttl = duration(
            "registry.ttl",
            &self.ttl,
            Duration::from_secs(10),
            Duration::from_secs(1),
            Duration::from_secs(600),
        )?;
        // The node stops issuing `margin` before its lease can expire; logical time may run
        // max_drift plus a tick ahead of the clock, plus skew between nodes (see lease.rs), and
        // a renewal every ttl/3 must land before the fence.
        let tick = Duration::from_millis(layout.time_spec().unit_ms);
        let margin = sf.max_drift + tick + Duration::from_millis(500);
        if margin * 2 > ttl {
            return Err(invalid(
                "registry.ttl",
                ms(ttl),
                format!(
                    "at least {} with this layout: twice the fence margin of snowflake.max_drift ({}) + one tick ({}) + 0.5 s clock skew",
                    ms(margin * 2),
                    ms(sf.max_drift),
                    ms(tick)
                ),
            ));
        }
        Ok(Some(RegistrySettings {
            registry,
            namespace,
            ttl,
            fields,
        }))
    }
}

impl SegmentBuilder {
    fn build(&self) -> Result<Option<SegmentSettings>, ConfigError> {
        if !boolean("segment.enabled", &self.enabled, true)? {
            return Ok(None);
        }
        let url = self.url.as_ref().map(|u| u.text().trim().to_owned());
        if let Some(url) = &url {
            floe_store::db::Dialect::of_url(url).map_err(|why| {
                invalid(
                    "segment.url",
                    floe_store::db::redact_url(url),
                    format!("a sqlite:, postgres: or mysql: URL ({why})"),
                )
            })?;
        }
        let schema = string("segment.schema", &self.schema, "floe")?;
        let mut table = TableSpec::preset(schema.trim()).map_err(|_| {
            invalid(
                "segment.schema",
                format!("{schema:?}"),
                "floe, leaf (leaf_alloc), featherid (id_segments) or dig (segments)",
            )
        })?;
        for (v, field) in [
            (&self.table, &mut table.table),
            (&self.tag_column, &mut table.tag_column),
            (&self.max_id_column, &mut table.max_id_column),
            (&self.step_column, &mut table.step_column),
        ] {
            if let Some(v) = v {
                *field = v.text();
            }
        }
        // Each name is checked on its own, so the error names the key that is wrong.
        for (key, name) in [
            ("segment.table", &table.table),
            ("segment.tag_column", &table.tag_column),
            ("segment.max_id_column", &table.max_id_column),
            ("segment.step_column", &table.step_column),
        ] {
            let single = TableSpec {
                table: name.clone(),
                tag_column: "t".into(),
                max_id_column: "m".into(),
                step_column: "s".into(),
            };
            single.validate().map_err(|_| {
                invalid(
                    key,
                    format!("{name:?}"),
                    "1..=64 letters, digits and _, not starting with a digit",
                )
            })?;
        }
        let store = StoreOptions {
            max_connections: int("segment.max_connections", &self.max_connections, 4, 1, 256)?
                as u32,
            call_timeout: duration(
                "segment.call_timeout",
                &self.call_timeout,
                Duration::from_secs(2),
                Duration::from_millis(10),
                Duration::from_secs(60),
            )?,
            // Floe's own table is created on first start; another system's table is used as is.
            create_table: boolean("segment.create_table", &self.create_table, schema == "floe")?,
        };
        let max_id = i64::MAX;
        let min_step = int("segment.min_step", &self.min_step, 1, 1, max_id)? as u64;
        let max_step = int("segment.max_step", &self.max_step, 100_000_000, 1, max_id)? as u64;
        if min_step > max_step {
            return Err(invalid(
                "segment.min_step",
                min_step,
                format!("at most segment.max_step ({max_step})"),
            ));
        }
        let buffer = SegmentConfig {
            refill_threshold: float(
                "segment.refill_threshold",
                &self.refill_threshold,
                0.1,
                0.001,
                0.999,
            )?,
            target_lifetime: duration(
                "segment.target_lifetime",
                &self.target_lifetime,
                Duration::from_secs(15 * 60),
                Duration::from_secs(1),
                Duration::from_secs(7 * 86_400),
            )?,
            min_step,
            max_step,
        };
        let service = ServiceConfig {
            buffer,
            wait_timeout: duration(
                "segment.wait_timeout",
                &self.wait_timeout,
                Duration::from_secs(2),
                Duration::ZERO,
                Duration::from_secs(60),
            )?,
            auto_create: boolean("segment.auto_create", &self.auto_create, false)?,
            default_step: int("segment.default_step", &self.default_step, 1000, 1, max_id)? as u64,
            ..ServiceConfig::default()
        };
        Ok(Some(SegmentSettings {
            url,
            table,
            store,
            service,
        }))
    }
}

impl SnowflakeBuilder {
    fn build(&self, warnings: &mut Vec<String>) -> Result<SnowflakeConfig, ConfigError> {
        let layout_text = string("snowflake.layout", &self.layout, "genid")?;
        let layout = Layout::parse(&layout_text).map_err(|e| {
            invalid(
                "snowflake.layout",
                format!("{layout_text:?}"),
                e.to_string(),
            )
        })?;
        let hour = Duration::from_secs(3_600);
        let day = Duration::from_secs(86_400);
        let clock_offset_ms = int(
            "snowflake.clock_offset_ms",
            &self.clock_offset_ms,
            0,
            -86_400_000,
            86_400_000,
        )?;
        let machine_clock = boolean("snowflake.machine_clock", &self.machine_clock, false)?;
        let jump_probability = float(
            "snowflake.volume.jump_probability",
            &self.volume.jump_probability,
            0.0,
            0.0,
            1.0,
        )?;
        let max_jump_ticks = int(
            "snowflake.volume.max_jump_ticks",
            &self.volume.max_jump_ticks,
            1,
            1,
            i64::MAX,
        )? as u64;
        let random_seq_start = boolean(
            "snowflake.volume.random_seq_start",
            &self.volume.random_seq_start,
            false,
        )?;
        let volume = (jump_probability > 0.0 || random_seq_start).then_some(VolumeConfig {
            jump_probability,
            max_jump_ticks,
            random_seq_start,
        });
        let identity = identity(&layout, &self.identity)?;
        if identity.is_zero() && !identity.values().is_empty() {
            warnings.push(format!(
                "snowflake.identity is 0 for every node field ({}): two nodes with the same identity issue the same IDs; give each node its own",
                layout.node_fields().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        let config = SnowflakeConfig {
            layout,
            identity,
            lanes: int("snowflake.lanes", &self.lanes, 0, 0, 65_536)? as u32,
            max_rollback: duration(
                "snowflake.max_rollback",
                &self.max_rollback,
                Duration::from_secs(5),
                Duration::ZERO,
                day,
            )?,
            max_drift: duration(
                "snowflake.max_drift",
                &self.max_drift,
                Duration::from_secs(1),
                Duration::ZERO,
                hour,
            )?,
            high_water_window: duration(
                "snowflake.high_water_window",
                &self.high_water_window,
                Duration::from_secs(2),
                Duration::from_millis(1),
                hour,
            )?,
            machine_clock,
            clock_offset_ms,
            volume,
        };
        check_generator(&config, &layout_text)?;
        Ok(config)
    }
}

/// Resolves the identity against the layout, naming the field in every error.
fn identity(layout: &Layout, spec: &Option<IdentitySpec>) -> Result<Identity, ConfigError> {
    let mut pairs = Vec::new();
    match spec {
        None => {}
        Some(IdentitySpec::Pairs(text)) => {
            pairs = floe_core::parse_identity_pairs(text)
                .map_err(|why| invalid("snowflake.identity", format!("{text:?}"), why))?;
        }
        Some(IdentitySpec::Table(table)) => {
            for (name, v) in table {
                let key = format!("snowflake.identity.{name}");
                let max = layout
                    .node_fields()
                    .find(|f| &f.name == name)
                    .map_or(u64::MAX, |f| f.max());
                let allowed = || format!("an integer in 0..={max}");
                let n = match v {
                    Scalar::Int(n) => *n,
                    Scalar::Str(t) => t
                        .trim()
                        .parse::<i128>()
                        .map_err(|_| invalid(&key, v, allowed()))?,
                    other => return Err(invalid(&key, other, allowed())),
                };
                let n = u64::try_from(n).map_err(|_| invalid(&key, n, allowed()))?;
                pairs.push((name.clone(), n));
            }
        }
    }
    layout.identity(&pairs).map_err(|e| match e {
        IdentityError::OutOfRange { field, value, max } => invalid(
            &format!("snowflake.identity.{field}"),
            value,
            format!("an integer in 0..={max} (the layout's {field} field)"),
        ),
        IdentityError::UnknownField { ref field, .. } => invalid(
            &format!("snowflake.identity.{field}"),
            pairs
                .iter()
                .find(|(n, _)| n == field)
                .map_or(0, |(_, v)| *v),
            e.to_string(),
        ),
    })
}

/// Checks the time-dependent parts (layout expired, epoch in the future) and the generator's own
/// rules (lanes, window + drift < rollback, volume ranges) by building a throwaway generator.
fn check_generator(config: &SnowflakeConfig, layout_text: &str) -> Result<(), ConfigError> {
    let clock = config.clock();
    if let Err(e) = config.layout.check_at(clock.now_ms()) {
        return Err(invalid(
            "snowflake.layout",
            format!("{layout_text:?}"),
            e.to_string(),
        ));
    }
    match Generator::new(
        config.layout.clone(),
        config.identity.clone(),
        config.generator_config(0),
        clock,
        Box::new(MemoryHighWater::new()),
    ) {
        Ok(_) => Ok(()),
        Err(GenError::Config {
            key,
            value,
            allowed,
        }) => {
            let value = if key == "high_water_window" {
                ms(config.high_water_window)
            } else {
                value
            };
            Err(invalid(&format!("snowflake.{key}"), value, allowed))
        }
        Err(e) => Err(invalid(
            "snowflake.layout",
            format!("{layout_text:?}"),
            e.to_string(),
        )),
    }
}

#[cfg(test)]
mod tests;
