//! The `[server]` section: listeners, their limits and timeouts, the admin token, the peers.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::value::{Dur, Int, List, Scalar, Text};
use super::{invalid, ConfigError};

/// Default binary TCP address (GenID's port, loopback only until configured otherwise).
pub const DEFAULT_TCP_LISTEN: &str = "127.0.0.1:3778";
/// Default HTTP address.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8880";
/// Default limit of open connections, binary TCP and HTTP alike.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default limit of IDs per request (v2 count, HTTP `count`).
pub const DEFAULT_MAX_COUNT: u32 = floe_proto::DEFAULT_MAX_COUNT;
/// Default `server.idle_timeout`.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default `server.frame_timeout`.
const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `server.write_timeout`.
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `server.shutdown_timeout`.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `server.http_header_timeout`.
const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `server.http_body_timeout`.
const DEFAULT_HTTP_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `server.http_idle_timeout`.
const DEFAULT_HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Most connections either listener may be limited to.
const MAX_CONNECTIONS_LIMIT: i64 = 1_000_000;
/// Most worker threads `server.workers` may ask for.
const MAX_WORKERS: i64 = 1_024;
/// Most IDs `server.max_count` may allow per request.
const MAX_COUNT_LIMIT: i64 = 1_000_000;
/// Shortest idle timeout: below it a client between two requests is cut off.
const MIN_IDLE: Duration = Duration::from_millis(100);
/// Shortest frame, write, header or body deadline.
const MIN_DEADLINE: Duration = Duration::from_millis(10);
const HOUR: Duration = Duration::from_secs(3_600);
const WEEK: Duration = Duration::from_secs(7 * 86_400);

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
    /// Threads of the async runtime that serve every listener; `None`: one per core (tokio's
    /// default, which `TOKIO_WORKER_THREADS` also sets). Fewer leave cores to a program that
    /// shares the machine, e.g. a load generator: on 2 cores one worker halves the p99.
    pub workers: Option<usize>,
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
            .field("workers", &self.workers)
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

/// `[server]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ServerBuilder {
    tcp_listen: Text,
    http_listen: Text,
    max_connections: Int,
    idle_timeout: Dur,
    frame_timeout: Dur,
    write_timeout: Dur,
    max_count: Int,
    shutdown_timeout: Dur,
    admin_token: Text,
    peers: Option<List>,
    workers: Int,
    http_header_timeout: Dur,
    http_body_timeout: Dur,
    http_idle_timeout: Dur,
    http_max_connections: Int,
}

impl ServerBuilder {
    /// Validates `[server]`.
    pub(super) fn build(&self) -> Result<ServerConfig, ConfigError> {
        let idle_timeout = self.idle_timeout.within(
            "server.idle_timeout",
            DEFAULT_IDLE_TIMEOUT,
            MIN_IDLE..=WEEK,
        )?;
        let frame_timeout = self.frame_timeout.within(
            "server.frame_timeout",
            DEFAULT_FRAME_TIMEOUT,
            MIN_DEADLINE..=HOUR,
        )?;
        let admin_token = self.admin_token()?;
        let peers = self
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
        Ok(ServerConfig {
            tcp_listen: addr("server.tcp_listen", &self.tcp_listen, DEFAULT_TCP_LISTEN)?,
            http_listen: addr("server.http_listen", &self.http_listen, DEFAULT_HTTP_LISTEN)?,
            max_connections: self.max_connections.within(
                "server.max_connections",
                DEFAULT_MAX_CONNECTIONS,
                1..=MAX_CONNECTIONS_LIMIT,
            )?,
            idle_timeout,
            frame_timeout,
            write_timeout: self.write_timeout.within(
                "server.write_timeout",
                DEFAULT_WRITE_TIMEOUT,
                MIN_DEADLINE..=HOUR,
            )?,
            max_count: self.max_count.within(
                "server.max_count",
                DEFAULT_MAX_COUNT,
                1..=MAX_COUNT_LIMIT,
            )?,
            shutdown_timeout: self.shutdown_timeout.within(
                "server.shutdown_timeout",
                DEFAULT_SHUTDOWN_TIMEOUT,
                Duration::ZERO..=HOUR,
            )?,
            admin_token,
            peers,
            workers: self.workers.within_opt("server.workers", 1..=MAX_WORKERS)?,
            http: HttpLimits {
                header_timeout: self.http_header_timeout.within(
                    "server.http_header_timeout",
                    DEFAULT_HTTP_HEADER_TIMEOUT,
                    MIN_DEADLINE..=HOUR,
                )?,
                body_timeout: self.http_body_timeout.within(
                    "server.http_body_timeout",
                    DEFAULT_HTTP_BODY_TIMEOUT,
                    MIN_DEADLINE..=HOUR,
                )?,
                idle_timeout: self.http_idle_timeout.within(
                    "server.http_idle_timeout",
                    DEFAULT_HTTP_IDLE_TIMEOUT,
                    MIN_IDLE..=WEEK,
                )?,
                max_connections: self.http_max_connections.within(
                    "server.http_max_connections",
                    DEFAULT_MAX_CONNECTIONS,
                    1..=MAX_CONNECTIONS_LIMIT,
                )?,
            },
        })
    }

    /// The admin token; every message about it hides the value, which is a secret.
    fn admin_token(&self) -> Result<Option<String>, ConfigError> {
        if matches!(self.admin_token, Text::Unset) {
            return Ok(None);
        }
        let t = self
            .admin_token
            .get("server.admin_token", "")
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
        Ok(Some(t))
    }
}

/// A listen address.
fn addr(key: &str, v: &Text, default: &str) -> Result<SocketAddr, ConfigError> {
    let t = v.get(key, default)?;
    t.trim().parse().map_err(|_| {
        invalid(
            key,
            format!("{t:?}"),
            "an IP address and port such as 127.0.0.1:3778 or [::1]:3778 (port 0 picks a free port)",
        )
    })
}

/// A peer's `host:port`, with an `http://` prefix and a trailing `/` forgiven.
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
