//! The async client: requests with failover over the server list, and the per-mode and per-tag
//! sources that serve IDs from a prefetch buffer or the network.

// Prefetch reaches into the client's shared state, so it is a part of the client, not a peer.
mod prefetch;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use floe_proto::{Reply, Status, V1_MAX_BATCH};
use tokio::runtime::Handle;
use tokio::time::{timeout_at, Instant};

use crate::config::{check_tag, Config, Protocol, ServerOrder};
use crate::conn::Ask;
use crate::error::Error;
use crate::server::Server;
use prefetch::Buffer;

/// What a request asks for.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Snowflake IDs.
    Snowflake,
    /// IDs from the segment of a tag.
    Segment(Arc<str>),
    /// Business numbers of a number sequence.
    Number(Arc<str>),
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Snowflake => f.write_str("snowflake"),
            Kind::Segment(tag) => write!(f, "segment {tag:?}"),
            Kind::Number(name) => write!(f, "number {name:?}"),
        }
    }
}

/// How one server's attempt ended, when it did not deliver.
#[derive(Debug)]
enum Attempt {
    /// The server failed (connection, timeout, "unavailable"): eject it and try the next.
    Down(String),
    /// The server cannot serve this kind of request (v1 only, asked for a segment or numbers):
    /// try the next without ejecting it.
    Skip(String),
    /// The server refused the request itself: no other server would take it either.
    Refused(Error),
    /// The call's deadline passed.
    OutOfTime,
}

/// State shared by every clone of a client and by its tasks.
#[derive(Debug)]
pub(crate) struct Inner {
    /// The servers, in configuration order.
    servers: Box<[Server]>,
    /// Validated options.
    pub config: Config,
    /// Runs connection and refill tasks, also when a call comes from outside the runtime.
    pub runtime: Handle,
    /// Rotates the first server tried under [`ServerOrder::RoundRobin`].
    next_server: AtomicUsize,
    /// Segment prefetch buffers by tag, kept for the client's life so that a handle made per
    /// call still finds its tag's IDs; a tag the server refuses is dropped again.
    segments: Mutex<HashMap<Arc<str>, Arc<Buffer>>>,
}

/// What an ok reply carries for the caller: IDs (snowflake, segment) or numbers.
pub(crate) trait Item: Sized {
    /// The items of an ok reply, or `None` when it carries the other kind.
    fn of(reply: Reply) -> Option<Vec<Self>>;
}

impl Item for u64 {
    fn of(reply: Reply) -> Option<Vec<u64>> {
        match reply {
            Reply::V1Single(id) => Some(vec![id]),
            Reply::V1Batch(ids) | Reply::V2Ok { ids, .. } => Some(ids),
            Reply::V2Numbers { .. } | Reply::V2Error { .. } => None,
        }
    }
}

impl Item for String {
    fn of(reply: Reply) -> Option<Vec<String>> {
        match reply {
            Reply::V2Numbers { numbers, .. } => Some(numbers),
            _ => None,
        }
    }
}

impl Inner {
    /// Fetches exactly `n` items (IDs or numbers), trying servers in order until one delivers,
    /// by `deadline`.
    pub(crate) async fn fetch<T: Item>(
        &self,
        kind: &Kind,
        n: usize,
        deadline: Instant,
    ) -> Result<Vec<T>, Error> {
        if n == 0 {
            return Ok(Vec::new());
        }
        if let Kind::Segment(name) | Kind::Number(name) = kind {
            check_tag(name)?;
            if self.config.protocol == Protocol::V1 {
                return Err(Error::Protocol(format!(
                    "{} needs protocol v2, and this client is set to v1",
                    v2_only(kind)
                )));
            }
        }
        let count = self.servers.len();
        let first = match self.config.order {
            ServerOrder::Failover => 0,
            ServerOrder::RoundRobin => self.next_server.fetch_add(1, Ordering::Relaxed),
        };
        let mut skipped = 0;
        for k in 0..count {
            let server = &self.servers[(first + k) % count];
            if server.ejected_for(std::time::Instant::now()).is_some() {
                continue;
            }
            match self.attempt(server, kind, n, deadline).await {
                Ok(ids) => {
                    server.succeeded();
                    return Ok(ids);
                }
                Err(Attempt::Refused(e)) => {
                    server.succeeded();
                    return Err(e);
                }
                Err(Attempt::Down(error)) => {
                    tracing::debug!(server = %server.addr, "request failed: {error}");
                    server.eject(error, &self.config.backoff);
                }
                Err(Attempt::Skip(error)) => {
                    skipped += 1;
                    server.note(error);
                }
                Err(Attempt::OutOfTime) => return Err(Error::Timeout),
            }
        }
        if skipped == count {
            return Err(Error::Protocol(format!(
                "{} needs v2, and every server speaks only GenID v1",
                v2_only(kind)
            )));
        }
        let now = std::time::Instant::now();
        Err(Error::Unavailable {
            servers: self
                .servers
                .iter()
                .map(|s| (s.addr.clone(), s.describe(now)))
                .collect(),
        })
    }

    /// One server's try: a pooled connection, the request pipelined on it, the replies checked.
    /// A pooled connection that turns out dead gets one retry on a new connection.
    async fn attempt<T: Item>(
        &self,
        server: &Server,
        kind: &Kind,
        n: usize,
        deadline: Instant,
    ) -> Result<Vec<T>, Attempt> {
        let own = Instant::now() + self.config.attempt_timeout;
        let until = own.min(deadline);
        let timed_out = || {
            if own < deadline {
                Attempt::Down(format!(
                    "no reply within the attempt timeout ({} ms)",
                    self.config.attempt_timeout.as_millis()
                ))
            } else {
                Attempt::OutOfTime
            }
        };
        let mut slot = None;
        loop {
            let lease =
                match timeout_at(until, server.lease(slot, &self.config, &self.runtime)).await {
                    Ok(Ok(lease)) => lease,
                    Ok(Err(failure)) => return Err(Attempt::Down(failure.message)),
                    Err(_) => return Err(timed_out()),
                };
            let Some(asks) = asks(kind, n, lease.v2, self.config.max_count) else {
                return Err(Attempt::Skip(format!(
                    "speaks only GenID v1, which has no {}",
                    v2_only(kind)
                )));
            };
            match timeout_at(until, lease.conn.call(asks)).await {
                Ok(Ok(replies)) => return collect(kind, n, replies),
                // The server may have closed an idle connection just as it was lent out.
                Ok(Err(_)) if lease.reused && slot.is_none() => slot = Some(lease.slot),
                Ok(Err(failure)) => return Err(Attempt::Down(failure.message)),
                Err(_) => {
                    let outcome = timed_out();
                    if matches!(outcome, Attempt::Down(_)) {
                        // The server is taken for hung: a stream this slow is not worth
                        // keeping. When only the caller's deadline ran out, the late replies
                        // are read and dropped and the connection stays.
                        lease.conn.close();
                    }
                    return Err(outcome);
                }
            }
        }
    }

    /// The shared prefetch buffer of `tag`, made on first use.
    fn segment_buffer(&self, tag: &Arc<str>) -> Option<Arc<Buffer>> {
        let prefetch = self.config.segment_prefetch?;
        check_tag(tag).ok()?;
        let mut buffers = self.segments.lock();
        let buffer = buffers
            .entry(tag.clone())
            .or_insert_with(|| Arc::new(Buffer::new(Kind::Segment(tag.clone()), prefetch)));
        Some(buffer.clone())
    }

    /// Drops the buffer of a tag the server refused, so unknown tags take no memory.
    fn forget_segment(&self, kind: &Kind, error: &Error) {
        if let (Kind::Segment(tag), Error::UnknownTag(_) | Error::BadRequest(_)) = (kind, error) {
            let mut buffers = self.segments.lock();
            buffers.remove(tag);
        }
    }
}

/// What only v2 serves, for messages.
fn v2_only(kind: &Kind) -> &'static str {
    match kind {
        Kind::Number(_) => "number sequences",
        _ => "segment mode",
    }
}

/// The frames for `n` IDs: split to the protocol's per-request limit, pipelined on one
/// connection. `None` when the protocol cannot ask for `kind`.
fn asks(kind: &Kind, n: usize, v2: bool, max_count: u32) -> Option<Vec<Ask>> {
    let chunks = |limit: usize| {
        (0..n)
            .step_by(limit)
            .map(move |start| (n - start).min(limit))
    };
    Some(match (kind, v2) {
        (Kind::Segment(_) | Kind::Number(_), false) => return None,
        (Kind::Number(name), true) => chunks(max_count as usize)
            .map(|c| Ask::Number(name.clone(), c as u32))
            .collect(),
        (Kind::Segment(tag), true) => chunks(max_count as usize)
            .map(|c| Ask::Segment(tag.clone(), c as u32))
            .collect(),
        (Kind::Snowflake, true) => chunks(max_count as usize)
            .map(|c| Ask::Snowflake(c as u32))
            .collect(),
        (Kind::Snowflake, false) if n == 1 => vec![Ask::V1Single],
        (Kind::Snowflake, false) => chunks(V1_MAX_BATCH)
            .map(|c| Ask::V1Batch(c as u8))
            .collect(),
    })
}

/// The items of a whole call, or why none: a call never yields part of its IDs or numbers.
fn collect<T: Item>(kind: &Kind, n: usize, replies: Vec<Reply>) -> Result<Vec<T>, Attempt> {
    let mut items = Vec::new();
    for reply in replies {
        if let Reply::V2Error {
            status, message, ..
        } = reply
        {
            return Err(match status {
                Status::BadRequest => Attempt::Refused(Error::BadRequest(message)),
                Status::UnknownTag => Attempt::Refused(match kind {
                    Kind::Segment(tag) => Error::UnknownTag(tag.to_string()),
                    Kind::Number(name) => Error::UnknownName(name.to_string()),
                    Kind::Snowflake => Error::UnknownTag(message),
                }),
                Status::OverLimit => Attempt::Refused(Error::OverLimit(message)),
                Status::Unavailable => Attempt::Down(format!("unavailable: {message}")),
                Status::Internal | Status::Ok => {
                    Attempt::Down(format!("internal error: {message}"))
                }
            });
        }
        let Some(mut more) = T::of(reply) else {
            return Err(Attempt::Down(format!(
                "protocol error: a reply of the wrong kind for a {kind:?} request"
            )));
        };
        if items.is_empty() {
            items = more;
        } else {
            items.append(&mut more);
        }
    }
    if items.len() != n {
        return Err(Attempt::Down(format!(
            "protocol error: asked for {n}, got {}",
            items.len()
        )));
    }
    Ok(items)
}

/// IDs of one mode or tag: from the prefetch buffer when there is one, else from the servers.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// The client.
    pub inner: Arc<Inner>,
    /// What to ask for.
    kind: Kind,
    /// The prefetch buffer, when configured.
    buffer: Option<Arc<Buffer>>,
}

impl Source {
    /// One ID from the buffer, or `None` when there is no buffer or it is empty; never waits.
    #[inline]
    pub(crate) fn try_next_id(&self) -> Option<u64> {
        let buffer = self.buffer.as_ref()?;
        match buffer.ring.pop() {
            Some((id, left)) => {
                if left < buffer.low_water {
                    buffer.refill_soon(&self.inner);
                }
                Some(id)
            }
            None => {
                buffer.refill_soon(&self.inner);
                None
            }
        }
    }

    /// One ID.
    pub(crate) async fn next_id(&self) -> Result<u64, Error> {
        if let Some(id) = self.try_next_id() {
            return Ok(id);
        }
        let ids = self.next_ids(1).await?;
        ids.first()
            .copied()
            .ok_or_else(|| Error::Protocol("a call for one ID returned none".into()))
    }

    /// `n` IDs, all or none.
    pub(crate) async fn next_ids(&self, n: usize) -> Result<Vec<u64>, Error> {
        match &self.buffer {
            Some(buffer) if n <= buffer.max_take() => {
                let mut out = Vec::with_capacity(n);
                match buffer.ring.take(n, &mut out) {
                    Some(left) => {
                        if left < buffer.low_water {
                            buffer.refill_soon(&self.inner);
                        }
                        Ok(out)
                    }
                    None => {
                        let taken = buffer.take_or_fetch(&self.inner, n).await;
                        if let Err(e) = &taken {
                            self.inner.forget_segment(&self.kind, e);
                        }
                        taken
                    }
                }
            }
            _ => {
                let deadline = Instant::now() + self.inner.config.request_timeout;
                self.inner.fetch(&self.kind, n, deadline).await
            }
        }
    }

    /// IDs in the buffer now.
    pub(crate) fn buffered(&self) -> usize {
        self.buffer.as_ref().map_or(0, |b| b.ring.len())
    }

    /// Fetches one batch into the buffer; returns how many IDs it then holds.
    pub(crate) async fn warm_up(&self) -> Result<usize, Error> {
        match &self.buffer {
            Some(buffer) => buffer.fill_once(&self.inner).await,
            None => Ok(0),
        }
    }
}

/// An async Floe client: pooled, pipelined connections to a list of servers with failover.
///
/// Cheap to clone; clones share connections and prefetch buffers. Build it with
/// [`crate::ClientBuilder`] inside a tokio runtime.
#[derive(Debug, Clone)]
pub struct Client {
    /// Snowflake IDs, and the way to the shared state.
    source: Source,
}

impl Client {
    pub(crate) fn from_parts(servers: Vec<String>, config: Config, runtime: Handle) -> Client {
        let epoch = std::time::Instant::now();
        let servers = servers
            .into_iter()
            .map(|addr| Server::new(addr, config.connections_per_server, epoch))
            .collect();
        let snowflake = config
            .snowflake_prefetch
            .map(|p| Arc::new(Buffer::new(Kind::Snowflake, p)));
        let inner = Arc::new(Inner {
            servers,
            config,
            runtime,
            next_server: AtomicUsize::new(0),
            segments: Mutex::new(HashMap::new()),
        });
        Client {
            source: Source {
                inner,
                kind: Kind::Snowflake,
                buffer: snowflake,
            },
        }
    }

    /// One snowflake ID: from the prefetch buffer if configured, else one round trip.
    pub async fn next_id(&self) -> Result<u64, Error> {
        self.source.next_id().await
    }

    /// `n` snowflake IDs, all or none; without prefetch they increase (one connection, one lane).
    pub async fn next_ids(&self, n: usize) -> Result<Vec<u64>, Error> {
        self.source.next_ids(n).await
    }

    /// One snowflake ID from the prefetch buffer, or `None` when it is empty (a refill is then
    /// started) or prefetch is off; never waits, never touches the network.
    #[inline]
    pub fn try_next_id(&self) -> Option<u64> {
        self.source.try_next_id()
    }

    /// Snowflake IDs in the prefetch buffer now.
    pub fn buffered(&self) -> usize {
        self.source.buffered()
    }

    /// Fills the snowflake prefetch buffer by one batch now (e.g. at startup); returns how many
    /// IDs it then holds, 0 without prefetch.
    pub async fn warm_up(&self) -> Result<usize, Error> {
        self.source.warm_up().await
    }

    /// One business number of the sequence `name` (`ORD-20261130-000042`), in one round trip.
    ///
    /// Numbers are never prefetched: a buffered number would carry the date of when it was
    /// fetched, not of when it is used.
    pub async fn number(&self, name: &str) -> Result<String, Error> {
        let numbers = self.numbers(name, 1).await?;
        numbers
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("a call for one number returned none".into()))
    }

    /// `n` numbers of `name`, all or none, increasing within their period. A call for more
    /// than `max_count` is sent as several requests, which may fall in two periods.
    pub async fn numbers(&self, name: &str, n: usize) -> Result<Vec<String>, Error> {
        let inner = &self.source.inner;
        let deadline = Instant::now() + inner.config.request_timeout;
        inner.fetch(&Kind::Number(name.into()), n, deadline).await
    }

    /// A handle for the segment IDs of `tag`; handles of one tag share its prefetch buffer.
    ///
    /// The tag is checked on use: an empty tag or one over 255 bytes fails with
    /// [`Error::BadRequest`].
    pub fn segment(&self, tag: &str) -> SegmentHandle {
        let inner = self.source.inner.clone();
        let tag: Arc<str> = tag.into();
        let buffer = inner.segment_buffer(&tag);
        SegmentHandle {
            source: Source {
                inner,
                kind: Kind::Segment(tag),
                buffer,
            },
        }
    }
}

/// Segment IDs of one tag; cheap to clone, clones share the tag's prefetch buffer.
#[derive(Debug, Clone)]
pub struct SegmentHandle {
    /// The tag's IDs.
    source: Source,
}

impl SegmentHandle {
    /// The tag this handle serves.
    pub fn tag(&self) -> &str {
        match &self.source.kind {
            Kind::Segment(tag) => tag,
            Kind::Snowflake | Kind::Number(_) => "",
        }
    }

    /// One ID of the tag: from the prefetch buffer if configured, else one round trip.
    pub async fn next_id(&self) -> Result<u64, Error> {
        self.source.next_id().await
    }

    /// `n` IDs of the tag, all or none.
    pub async fn next_ids(&self, n: usize) -> Result<Vec<u64>, Error> {
        self.source.next_ids(n).await
    }

    /// One ID from the tag's prefetch buffer, or `None` when it is empty (a refill is then
    /// started) or prefetch is off; never waits, never touches the network.
    #[inline]
    pub fn try_next_id(&self) -> Option<u64> {
        self.source.try_next_id()
    }

    /// IDs in the tag's prefetch buffer now.
    pub fn buffered(&self) -> usize {
        self.source.buffered()
    }

    /// Fills the tag's prefetch buffer by one batch now; returns how many IDs it then holds,
    /// 0 without prefetch.
    pub async fn warm_up(&self) -> Result<usize, Error> {
        self.source.warm_up().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(asks: &[Ask]) -> Vec<u32> {
        asks.iter()
            .map(|a| match a {
                Ask::Snowflake(n) | Ask::Segment(_, n) | Ask::Number(_, n) => *n,
                Ask::V1Batch(n) => u32::from(*n),
                Ask::V1Single => 1,
                Ask::Ping => 0,
            })
            .collect()
    }

    #[test]
    fn large_calls_are_split_to_the_protocol_limit() {
        let v1 = asks(&Kind::Snowflake, 600, false, 100_000).unwrap();
        assert_eq!(sizes(&v1), [255, 255, 90]);
        assert!(matches!(
            asks(&Kind::Snowflake, 1, false, 100_000).unwrap()[..],
            [Ask::V1Single]
        ));
        let v2 = asks(&Kind::Snowflake, 250_001, true, 100_000).unwrap();
        assert_eq!(sizes(&v2), [100_000, 100_000, 50_001]);
        let tag = Kind::Segment("orders".into());
        assert_eq!(sizes(&asks(&tag, 7, true, 5).unwrap()), [5, 2]);
        assert!(asks(&tag, 7, false, 5).is_none());
    }

    #[test]
    fn replies_are_whole_or_an_error() {
        let ok = collect::<u64>(
            &Kind::Snowflake,
            3,
            vec![Reply::V1Batch(vec![1, 2]), Reply::V1Single(3)],
        );
        assert_eq!(ok.unwrap(), [1, 2, 3]);
        let short = collect::<u64>(&Kind::Snowflake, 3, vec![Reply::V1Batch(vec![1, 2])]);
        assert!(matches!(short, Err(Attempt::Down(_))));
        let numbers = collect::<String>(
            &Kind::Number("n".into()),
            2,
            vec![Reply::V2Numbers {
                req_id: 1,
                numbers: vec!["A-1".into(), "A-2".into()],
            }],
        );
        assert_eq!(numbers.unwrap(), ["A-1", "A-2"]);
        let wrong = collect::<String>(&Kind::Number("n".into()), 1, vec![Reply::V1Single(1)]);
        assert!(matches!(wrong, Err(Attempt::Down(_))));
        let unknown_name = collect::<String>(
            &Kind::Number("n".into()),
            1,
            vec![Reply::V2Error {
                req_id: 1,
                status: Status::UnknownTag,
                message: "unknown number sequence `n`".into(),
            }],
        );
        assert!(matches!(unknown_name, Err(Attempt::Refused(Error::UnknownName(n))) if n == "n"));
        let unknown = collect::<u64>(
            &Kind::Segment("t".into()),
            1,
            vec![Reply::V2Error {
                req_id: 1,
                status: Status::UnknownTag,
                message: "unknown tag `t`".into(),
            }],
        );
        assert!(matches!(unknown, Err(Attempt::Refused(Error::UnknownTag(t))) if t == "t"));
    }
}
