//! The client's options as the rest of the crate reads them, below both the builder that
//! validates them and the client that uses them (so neither depends on the other for them).

use std::time::Duration;

use floe_proto::MAX_TAG_LEN;

use crate::error::Error;

/// Which wire protocol the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Ask each server with a v2 ping first and fall back to v1 when it closes the connection on
    /// the v2 magic byte, as a plain GenID server does.
    #[default]
    Auto,
    /// Floe's v2 only: request ids, error statuses, segment mode.
    V2,
    /// GenID's v1 only: snowflake IDs, at most 255 per request, no error replies.
    V1,
}

/// In which order servers are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerOrder {
    /// The first healthy server in list order takes every request; the others are standbys.
    #[default]
    Failover,
    /// Requests rotate over the healthy servers, spreading the load.
    RoundRobin,
}

/// How long a failed server is left out: exponential in its consecutive failures, capped, and
/// jittered so many clients do not come back at the same moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ejection after the first failure.
    pub base: Duration,
    /// Longest ejection, however often the server failed.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

/// Local prefetch: keep a buffer of IDs and refill it in the background, so most calls are
/// answered from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefetch {
    /// IDs fetched by one refill.
    pub batch: u32,
    /// A refill starts when fewer IDs than this remain in the buffer.
    pub low_water: u32,
}

impl Prefetch {
    /// Refill `batch` IDs whenever fewer than `low_water` remain.
    pub fn new(batch: u32, low_water: u32) -> Prefetch {
        Prefetch { batch, low_water }
    }
}

impl Default for Prefetch {
    fn default() -> Prefetch {
        Prefetch::new(1_000, 250)
    }
}

/// Largest prefetch batch: the buffer is allocated whole, 8 bytes per ID.
pub(crate) const MAX_PREFETCH: u32 = 10_000_000;

/// The validated options every part of the client reads.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Bound on one TCP connect plus the protocol probe.
    pub connect_timeout: Duration,
    /// Bound on a whole call, failover included.
    pub request_timeout: Duration,
    /// Bound on one server's attempt, so a hung server leaves time to try the next.
    pub attempt_timeout: Duration,
    /// Long-lived connections kept per server.
    pub connections_per_server: usize,
    /// Protocol choice.
    pub protocol: Protocol,
    /// Server order.
    pub order: ServerOrder,
    /// Ejection backoff.
    pub backoff: Backoff,
    /// Most IDs per v2 request; larger calls are split into pipelined requests.
    pub max_count: u32,
    /// Prefetch for snowflake IDs (`Client::next_id`), if any.
    pub snowflake_prefetch: Option<Prefetch>,
    /// Prefetch for each segment tag, if any.
    pub segment_prefetch: Option<Prefetch>,
}

/// Checks a segment tag locally, so a request the server would refuse is never sent.
pub(crate) fn check_tag(tag: &str) -> Result<(), Error> {
    if tag.is_empty() {
        return Err(Error::BadRequest("segment tag must not be empty".into()));
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(Error::BadRequest(format!(
            "segment tag of {} bytes is over the limit of {MAX_TAG_LEN} bytes",
            tag.len()
        )));
    }
    Ok(())
}
