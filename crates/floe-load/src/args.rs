//! The command line of `floe load` and the validated [`Plan`] it turns into.
//!
//! Every range rule lives in [`Plan::validate`], so a plan built in code (tests, benchmarks) is held to the same
//! limits as one built from the command line, and every message names the option a user would change.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::LoadError;

/// Most connections one run opens; each is a task, a socket and a latency histogram.
pub const MAX_CONNECTIONS: u32 = 10_000;
/// Most requests in flight on one connection.
pub const MAX_PIPELINE: u32 = 1024;
/// Most IDs one v2 or HTTP request asks for: the server's default limit.
pub const MAX_BATCH: u32 = floe_proto::DEFAULT_MAX_COUNT;
/// Longest measured window, so every run stops by itself.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Most measured requests one run sends.
pub const MAX_REQUESTS: u64 = 1_000_000_000;
/// Highest `--rate`: requests per second over all connections.
pub const MAX_RATE: u64 = 100_000_000;
/// Longest a request may wait for its reply; also the top of the latency histograms.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Most runtime worker threads.
const MAX_THREADS: usize = 256;

/// Which of Floe's APIs to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// GenID-compatible binary TCP: `cmd, count`.
    V1,
    /// Binary TCP v2: request ids, status codes, segment tags.
    V2,
    /// HTTP/1.1 JSON API, one keep-alive connection per task.
    Http,
}

impl Protocol {
    fn default_port(self) -> u16 {
        match self {
            Protocol::V1 | Protocol::V2 => 3778,
            Protocol::Http => 8880,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
            Protocol::Http => "http",
        })
    }
}

/// The `--mode` values; [`Mode`] carries the tag with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModeArg {
    Snowflake,
    Segment,
}

/// Which IDs to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Time-based IDs from the snowflake generator.
    Snowflake,
    /// IDs from the number range of one business tag.
    Segment {
        /// The business tag.
        tag: String,
    },
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Snowflake => f.write_str("snowflake"),
            Mode::Segment { tag } => write!(f, "segment {tag:?}"),
        }
    }
}

/// Options of `floe load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Server address: `127.0.0.1:3778` for TCP, `http://127.0.0.1:8880` for HTTP. Loopback only.
    #[arg(long, value_name = "ADDR")]
    target: Option<String>,

    /// Which API to drive.
    #[arg(long, value_enum, default_value_t = Protocol::V1)]
    protocol: Protocol,

    /// Which IDs to ask for; segment needs --tag and v2 or http.
    #[arg(long, value_enum, default_value_t = ModeArg::Snowflake)]
    mode: ModeArg,

    /// Business tag for --mode segment.
    #[arg(long, value_name = "T")]
    tag: Option<String>,

    /// Connections, each one task (1..=10000).
    #[arg(long, value_name = "C", default_value_t = 16)]
    connections: u32,

    /// Requests in flight per connection (1..=1024; 1 for http).
    #[arg(long, value_name = "P", default_value_t = 1)]
    pipeline: u32,

    /// IDs per request (v1: 0..=255, 1 sends the single-ID command; v2, http: 1..=100000).
    #[arg(long, value_name = "N", default_value_t = 1)]
    batch: u32,

    /// How long to measure, e.g. 10s, 500ms, 2m (max 10m; 10s when --requests is not given either).
    #[arg(long, value_name = "TIME")]
    duration: Option<String>,

    /// Measured requests to send over all connections (1..=1000000000).
    #[arg(long, value_name = "N")]
    requests: Option<u64>,

    /// Open loop: send R requests per second over all connections on a fixed schedule, and measure each
    /// request's latency from when it was due, so a stall shows as latency (1..=100000000). Without it the
    /// loop is closed: each connection sends as fast as its pipeline allows.
    #[arg(long, value_name = "R")]
    rate: Option<u64>,

    /// Run this long before measuring; warm-up requests are not in the figures (max 10m).
    #[arg(long, value_name = "TIME", default_value = "0s")]
    warmup: String,

    /// Longest wait for one reply before the connection counts as timed out (1ms..=60s).
    #[arg(long, value_name = "TIME", default_value = "5s")]
    timeout: String,

    /// Check every ID received for duplicates (the default).
    #[arg(long, overrides_with = "no_check")]
    check: bool,

    /// Skip the duplicate check (it holds every ID until the end, up to 3.2 GB).
    #[arg(long, overrides_with = "check")]
    no_check: bool,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,

    /// Runtime worker threads (default: the number of cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

impl LoadArgs {
    /// Parses and validates the options into a [`Plan`].
    pub fn plan(&self) -> Result<Plan, LoadError> {
        let target = parse_target(self.target.as_deref(), self.protocol)?;
        let mode = match (self.mode, &self.tag) {
            (ModeArg::Snowflake, None) => Mode::Snowflake,
            (ModeArg::Snowflake, Some(_)) => {
                return Err(option(
                    "--tag",
                    "a tag is only used with --mode segment; drop --tag or add --mode segment",
                ))
            }
            (ModeArg::Segment, Some(tag)) => Mode::Segment { tag: tag.clone() },
            (ModeArg::Segment, None) => {
                return Err(option(
                    "--tag",
                    "--mode segment needs the business tag to ask for, e.g. --tag orders",
                ))
            }
        };
        let duration = self
            .duration
            .as_deref()
            .map(|text| parse_duration("--duration", text))
            .transpose()?;
        let duration = match (duration, self.requests) {
            (Some(duration), _) => duration,
            // --requests alone still gets a time bound, so a slow server cannot keep the run going for hours.
            (None, Some(_)) => MAX_DURATION,
            (None, None) => Duration::from_secs(10),
        };
        let plan = Plan {
            target,
            protocol: self.protocol,
            mode,
            connections: self.connections,
            pipeline: self.pipeline,
            batch: self.batch,
            duration,
            requests: self.requests,
            rate: self.rate,
            warmup: parse_duration("--warmup", &self.warmup)?,
            timeout: parse_duration("--timeout", &self.timeout)?,
            check: !self.no_check,
        };
        plan.validate()?;
        Ok(plan)
    }

    /// Whether the report is printed as JSON rather than a table.
    pub fn json(&self) -> bool {
        self.json
    }

    /// The runtime's worker threads: `--threads`, else the number of cores.
    pub fn threads(&self) -> Result<usize, LoadError> {
        let threads = self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        if !(1..=MAX_THREADS).contains(&threads) {
            return Err(option(
                "--threads",
                format!("{threads} is out of range; allowed 1..={MAX_THREADS}"),
            ));
        }
        Ok(threads)
    }
}

/// A validated description of one run: what to send, where, how much and for how long.
///
/// Fields are public so tests and benchmarks can build plans in code; [`crate::run`] validates them again.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where to connect; always a loopback address.
    pub target: SocketAddr,
    /// Which API to drive.
    pub protocol: Protocol,
    /// Which IDs to ask for.
    pub mode: Mode,
    /// Connections, each one task.
    pub connections: u32,
    /// Requests in flight per connection.
    pub pipeline: u32,
    /// IDs per request.
    pub batch: u32,
    /// Longest measured window; with `requests` set, the run usually ends earlier.
    pub duration: Duration,
    /// Measured requests over all connections, if the run is bounded by count.
    pub requests: Option<u64>,
    /// Open loop: requests per second over all connections on a fixed schedule; `None`: closed loop.
    pub rate: Option<u64>,
    /// Time before measuring starts.
    pub warmup: Duration,
    /// Longest wait for one reply.
    pub timeout: Duration,
    /// Whether every ID is kept and checked for duplicates at the end.
    pub check: bool,
}

impl Plan {
    /// The command line's defaults against `target`: snowflake IDs one at a time, 16 connections, 10 seconds.
    pub fn new(protocol: Protocol, target: SocketAddr) -> Plan {
        Plan {
            target,
            protocol,
            mode: Mode::Snowflake,
            connections: 16,
            pipeline: 1,
            batch: 1,
            duration: Duration::from_secs(10),
            requests: None,
            rate: None,
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(5),
            check: true,
        }
    }

    /// Checks every limit and combination, naming the option at fault.
    pub fn validate(&self) -> Result<(), LoadError> {
        check_loopback(self.target)?;
        in_range("--connections", self.connections, 1, MAX_CONNECTIONS)?;
        in_range("--pipeline", self.pipeline, 1, MAX_PIPELINE)?;
        if self.protocol == Protocol::Http && self.pipeline != 1 {
            return Err(option(
                "--pipeline",
                format!(
                    "{} is not supported with --protocol http, which sends one request at a time per \
                     connection; use --pipeline 1 and more --connections",
                    self.pipeline
                ),
            ));
        }
        match self.protocol {
            Protocol::V1 => {
                in_range("--batch", self.batch, 0, floe_proto::V1_MAX_BATCH as u32)
                    .map_err(|e| with_note(e, "v1 carries the count in one byte"))?;
            }
            Protocol::V2 | Protocol::Http => in_range("--batch", self.batch, 1, MAX_BATCH)?,
        }
        if let Mode::Segment { tag } = &self.mode {
            self.validate_tag(tag)?;
        }
        in_range(
            "--duration",
            self.duration,
            Duration::from_millis(1),
            MAX_DURATION,
        )?;
        if let Some(requests) = self.requests {
            in_range("--requests", requests, 1, MAX_REQUESTS)?;
        }
        if let Some(rate) = self.rate {
            in_range("--rate", rate, 1, MAX_RATE)?;
        }
        in_range("--warmup", self.warmup, Duration::ZERO, MAX_DURATION)?;
        in_range(
            "--timeout",
            self.timeout,
            Duration::from_millis(1),
            MAX_TIMEOUT,
        )?;
        Ok(())
    }

    fn validate_tag(&self, tag: &str) -> Result<(), LoadError> {
        if self.protocol == Protocol::V1 {
            return Err(option(
                "--mode",
                "segment is not part of v1, which only issues snowflake IDs; use --protocol v2 or http",
            ));
        }
        if tag.is_empty() || tag.len() > floe_proto::MAX_TAG_LEN {
            return Err(option(
                "--tag",
                format!(
                    "a tag of {} bytes is out of range; allowed 1..={} bytes",
                    tag.len(),
                    floe_proto::MAX_TAG_LEN
                ),
            ));
        }
        // The tag goes into the URL path as is, so it must not need percent-encoding.
        let url_safe = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
        if self.protocol == Protocol::Http && !tag.chars().all(url_safe) {
            return Err(option(
                "--tag",
                format!("{tag:?} has characters that need URL encoding; with --protocol http use A-Z a-z 0-9 - . _ ~"),
            ));
        }
        Ok(())
    }

    /// One line describing the run, for the start of the output.
    pub fn summary(&self) -> String {
        let mut stop = format!("for up to {:?}", self.duration);
        if let Some(requests) = self.requests {
            stop = format!("{requests} requests, {stop}");
        }
        if !self.warmup.is_zero() {
            stop = format!("{stop} after {:?} warm-up", self.warmup);
        }
        if let Some(rate) = self.rate {
            stop = format!("open loop at {rate} requests/s, {stop}");
        }
        format!(
            "{} {} batch {}, {} connections x pipeline {} -> {}, {stop}",
            self.protocol,
            self.mode,
            self.batch,
            self.connections,
            self.pipeline,
            self.target_display()
        )
    }

    /// The target as the user would write it.
    pub(crate) fn target_display(&self) -> String {
        match self.protocol {
            Protocol::Http => format!("http://{}", self.target),
            Protocol::V1 | Protocol::V2 => self.target.to_string(),
        }
    }
}

fn option(option: &'static str, message: impl Into<String>) -> LoadError {
    LoadError::Option {
        option,
        message: message.into(),
    }
}

fn with_note(e: LoadError, note: &str) -> LoadError {
    match e {
        LoadError::Option { option, message } => LoadError::Option {
            option,
            message: format!("{message} ({note})"),
        },
        other => other,
    }
}

fn in_range<T: PartialOrd + fmt::Debug>(
    name: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), LoadError> {
    if value < min || value > max {
        return Err(option(
            name,
            format!("{value:?} is out of range; allowed {min:?}..={max:?}"),
        ));
    }
    Ok(())
}

/// Refuses every address off this machine: the tool must never send load to another host.
fn check_loopback(addr: SocketAddr) -> Result<(), LoadError> {
    // to_canonical: ::ffff:127.0.0.1 is loopback too.
    if !addr.ip().to_canonical().is_loopback() {
        return Err(option(
            "--target",
            format!(
                "{addr} is not a loopback address; floe load only sends to 127.0.0.0/8, ::1 or localhost"
            ),
        ));
    }
    if addr.port() == 0 {
        return Err(option(
            "--target",
            "port 0 cannot be connected to; give the server's port",
        ));
    }
    Ok(())
}

/// Parses `--target` without any name lookup: only IP literals and `localhost` are accepted, so a name can never
/// resolve to another host.
fn parse_target(text: Option<&str>, protocol: Protocol) -> Result<SocketAddr, LoadError> {
    let default_port = protocol.default_port();
    let Some(text) = text else {
        return Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), default_port));
    };
    let bad = |why: &str| option("--target", format!("{text:?}: {why}"));
    let rest = match text.split_once("://") {
        Some(("http", rest)) if protocol == Protocol::Http => rest,
        Some(("http", _)) => {
            return Err(bad(&format!(
                "an http:// URL needs --protocol http; for --protocol {protocol} give host:port"
            )))
        }
        Some((scheme, _)) => {
            return Err(bad(&format!(
                "scheme {scheme:?} is not supported; use http:// or host:port"
            )))
        }
        None => text,
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') {
        return Err(bad("give only host and port; floe load chooses the path"));
    }
    let (host, port) = split_host_port(authority).ok_or_else(|| bad("expected host:port"))?;
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| bad("the port must be 1..=65535"))?,
        None => default_port,
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>().map_err(|_| {
            bad("not a loopback address; floe load only sends to 127.0.0.0/8, ::1 or localhost and looks up no names")
        })?
    };
    let addr = SocketAddr::new(ip, port);
    check_loopback(addr)?;
    Ok(addr)
}

/// Splits `host:port`, `[v6]:port`, `host` or a bare IPv6 address.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match authority.matches(':').count() {
        0 => Some((authority, None)),
        1 => authority.split_once(':').map(|(h, p)| (h, Some(p))),
        // An unbracketed IPv6 address has no port.
        _ => Some((authority, None)),
    }
}

/// Parses a duration in the grammar every Floe duration uses (humantime: `500ms`, `10s`, `2m`,
/// `1m 30s`), so a value that works in `floe.toml` works here and the other way round.
fn parse_duration(name: &'static str, text: &str) -> Result<Duration, LoadError> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        option(
            name,
            format!("{text:?} is not a duration ({e}); write e.g. 500ms, 10s, 2m or 1m 30s"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_each_unit() {
        let d = |s| parse_duration("--duration", s).unwrap();
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("10s"), Duration::from_secs(10));
        assert_eq!(d("2m"), Duration::from_secs(120));
        assert_eq!(d("1s 500ms"), Duration::from_millis(1500));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        // The server's grammar: no bare numbers (their unit would be a guess).
        for bad in ["ten", "3", "-1s", ""] {
            let e = parse_duration("--duration", bad).unwrap_err().to_string();
            assert!(
                e.contains("--duration") && e.contains("500ms"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn targets_parse_without_name_lookup() {
        let t = |s, p| parse_target(Some(s), p).map(|a| a.to_string());
        assert_eq!(t("127.0.0.1:3778", Protocol::V1).unwrap(), "127.0.0.1:3778");
        assert_eq!(t("localhost:9000", Protocol::V2).unwrap(), "127.0.0.1:9000");
        assert_eq!(t("127.1.2.3", Protocol::V1).unwrap(), "127.1.2.3:3778");
        assert_eq!(t("[::1]:80", Protocol::V1).unwrap(), "[::1]:80");
        assert_eq!(t("::1", Protocol::V1).unwrap(), "[::1]:3778");
        assert_eq!(
            t("http://127.0.0.1:8880/", Protocol::Http).unwrap(),
            "127.0.0.1:8880"
        );
        assert_eq!(
            t("http://localhost", Protocol::Http).unwrap(),
            "127.0.0.1:8880"
        );
        assert!(t("http://127.0.0.1:8880", Protocol::V1).is_err());
        assert!(t("https://127.0.0.1:8880", Protocol::Http).is_err());
        assert!(t("http://127.0.0.1:8880/v1", Protocol::Http).is_err());
        assert!(t("10.0.0.1:3778", Protocol::V1).is_err());
        assert!(t("[::ffff:10.0.0.1]:3778", Protocol::V1).is_err());
        assert!(t("example.com:80", Protocol::V1).is_err());
        assert!(t("127.0.0.1:0", Protocol::V1).is_err());
        assert!(t("127.0.0.1:http", Protocol::V1).is_err());
    }
}
