//! The binary TCP listener: GenID-compatible v1 and Floe's v2 on one port.
//!
//! Each connection is bound to one generator lane (round-robin), so a client sees increasing
//! IDs. A read decodes every complete frame in the buffer, encodes all their replies into one
//! buffer and writes it with one `write_all`: pipelined requests cost one syscall, and replies
//! keep request order. While a reply is being written nothing is read, which is the
//! back-pressure: a client that does not read its replies stops being served.
//!
//! v1 has no error reply, so when the generator cannot issue IDs (clock rollback beyond
//! tolerance, shutdown, high-water failure) a v1 connection is closed after the replies to the
//! requests before it; v2 gets a status 3 reply and the connection stays open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use floe_proto::{
    encode_v1_batch, encode_v1_single, encode_v2_error, encode_v2_ok, Op, ProtoError, Request,
    ServerCodec, Status, V2Request,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::node::{IssueError, Node};
use crate::segment::SegmentError;
use crate::throttle::Throttle;

/// Initial read buffer: a few requests; idle connections must stay small (10,000 of them
/// within 64 MB).
const READ_INITIAL: usize = 128;
/// Largest read buffer growth step, reached only while a client pipelines heavily.
const READ_MAX_STEP: usize = 64 * 1024;
/// Replies buffered beyond this are written before more frames are decoded: the bound on
/// memory per connection for a deep pipeline.
const WRITE_FLUSH_AT: usize = 1024 * 1024;
/// Buffers above this capacity are released whenever the connection waits for a request: a v1
/// batch of 255 IDs leaves 4 KB of buffers, which over 10,000 idle connections would be 40 MB
/// (and freed heap memory stays resident, so they must not even pile up at once).
const KEEP_WHILE_IDLE: usize = 512;
/// Buffers above this capacity are kept until the connection has been quiet for
/// [`RELEASE_AFTER`], so a client streaming large batches does not pay a fresh large allocation
/// per request.
const KEEP_WHILE_BUSY: usize = 64 * 1024;
/// How long a connection may sit quiet before its large buffers are released.
const RELEASE_AFTER: Duration = Duration::from_secs(1);
/// How long a closing connection waits for the client to read its last replies.
const LINGER: Duration = Duration::from_secs(1);

/// Accepts connections until `shutdown`, then returns the live ones so the caller can let them
/// finish within the shutdown bound.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: CancellationToken,
) -> JoinSet<()> {
    // Bounds open connections; a permit travels with each connection task.
    let limit = Arc::new(Semaphore::new(node.config.server.max_connections));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!("a TCP connection task panicked: {e}");
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let conn = Connection::new(stream, peer, node.clone(), shutdown.clone());
                        conns.spawn(conn.run(permit));
                    }
                    Err(_) => {
                        node.metrics.tcp_rejected.increment(1);
                        reject_log(peer, node.config.server.max_connections);
                        drop(stream);
                    }
                },
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning, and let
                    // the connections that hold them finish.
                    warn!("accepting a TCP connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    conns
}

fn reject_log(peer: SocketAddr, max: usize) {
    static THROTTLE: Throttle = Throttle::new();
    if let Some(more) = THROTTLE.allow() {
        warn!(
            "closed TCP connection from {peer}: server.max_connections ({max}) reached ({more} more rejections not logged)"
        );
    }
}

/// Why a connection ends.
#[derive(Debug)]
enum Close {
    /// The client closed its side.
    Eof,
    /// A first byte that is neither v1 nor v2: GenID closes without a reply.
    UnknownCommand(u8),
    /// The generator could not serve a v1 request, which has no error reply.
    V1Unavailable(String),
    /// Reading or writing failed.
    Io(std::io::Error),
    /// No complete request for `idle_timeout`, or a partial frame for `frame_timeout`.
    Timeout(&'static str),
    /// Graceful shutdown.
    Shutdown,
}

/// One client connection.
struct Connection {
    /// The socket.
    stream: TcpStream,
    /// The client, for logs.
    peer: SocketAddr,
    /// Shared server state.
    node: Arc<Node>,
    /// The generator lane every request of this connection uses, so its IDs increase.
    lane: usize,
    /// Frame decoder, holding the request size limit.
    codec: ServerCodec,
    /// Bytes read and not yet decoded.
    rbuf: BytesMut,
    /// Replies encoded and not yet written.
    wbuf: BytesMut,
    /// Scratch space for one request's IDs, reused across requests.
    ids: Vec<u64>,
    /// Graceful shutdown.
    shutdown: CancellationToken,
}

/// Keeps the open-connections gauge right however the task ends.
struct OpenGuard(&'static crate::metrics::Metrics);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.tcp_open.decrement(1.0);
    }
}

impl Connection {
    fn new(
        stream: TcpStream,
        peer: SocketAddr,
        node: Arc<Node>,
        shutdown: CancellationToken,
    ) -> Connection {
        let lane = node.generator.load().assign_lane();
        node.metrics.lane_assigned(lane);
        let codec = ServerCodec::new(node.config.server.max_count);
        Connection {
            stream,
            peer,
            node,
            lane,
            codec,
            rbuf: BytesMut::with_capacity(READ_INITIAL),
            wbuf: BytesMut::new(),
            ids: Vec::new(),
            shutdown,
        }
    }

    async fn run(mut self, _permit: OwnedSemaphorePermit) {
        self.node.metrics.tcp_open.increment(1.0);
        let _open = OpenGuard(self.node.metrics);
        // Replies are written whole, once per read; Nagle would only delay them.
        let _ = self.stream.set_nodelay(true);
        debug!(peer = %self.peer, lane = self.lane, "TCP connection opened");
        let reason = self.serve().await;
        match &reason {
            Close::Eof | Close::Shutdown => {
                debug!(peer = %self.peer, "TCP connection closed: {reason:?}")
            }
            Close::UnknownCommand(b) => debug!(
                peer = %self.peer,
                "TCP connection closed: unknown command byte {b:#04x} (not v1 0/1 nor v2 0xf1)"
            ),
            Close::V1Unavailable(m) => {
                static THROTTLE: Throttle = Throttle::new();
                if let Some(more) = THROTTLE.allow() {
                    warn!(
                        peer = %self.peer,
                        "v1 connection closed (v1 has no error reply), no IDs could be issued: {m} ({more} more not logged)"
                    );
                }
            }
            Close::Io(e) => debug!(peer = %self.peer, "TCP connection closed: {e}"),
            Close::Timeout(what) => {
                self.node.metrics.tcp_timeouts.increment(1);
                debug!(peer = %self.peer, "TCP connection closed: {what}")
            }
        }
        if matches!(reason, Close::Shutdown) {
            self.linger().await;
        }
    }

    async fn serve(&mut self) -> Close {
        let idle = self.node.config.server.idle_timeout;
        let frame = self.node.config.server.frame_timeout;
        let mut last_request = Instant::now();
        let mut partial_since: Option<Instant> = None;
        let mut release_at: Option<Instant> = None;
        loop {
            let processed = self.process().await;
            // Replies to the requests before a failure are still owed.
            if let Err(e) = self.flush().await {
                return Close::Io(e);
            }
            let handled = match processed {
                Ok(n) => n,
                Err(close) => return close,
            };
            let now = Instant::now();
            if handled > 0 {
                last_request = now;
                partial_since = None;
            }
            if self.rbuf.is_empty() {
                partial_since = None;
            } else if partial_since.is_none() {
                partial_since = Some(now);
            }
            // Small buffers go back now; large ones after RELEASE_AFTER without a request.
            self.release_buffers(KEEP_WHILE_BUSY);
            if !self.holds_large_buffers() {
                release_at = None;
            } else if handled > 0 || release_at.is_none() {
                release_at = Some(now + RELEASE_AFTER);
            }

            let idle_deadline = last_request + idle;
            let frame_deadline = partial_since.map(|t| t + frame);
            let mut deadline = frame_deadline.map_or(idle_deadline, |f| f.min(idle_deadline));
            if let Some(r) = release_at {
                deadline = deadline.min(r);
            }
            self.make_room();
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Close::Shutdown,
                read = timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)) => match read {
                    Ok(Ok(0)) => return Close::Eof,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Close::Io(e),
                    Err(_) => {
                        let now = Instant::now();
                        if frame_deadline.is_some_and(|f| now >= f) {
                            return Close::Timeout("partial frame not completed within server.frame_timeout");
                        }
                        if now >= idle_deadline {
                            return Close::Timeout("no request within server.idle_timeout");
                        }
                        // Only the quiet period ended: give back the large buffers.
                        self.release_buffers(usize::MAX);
                        release_at = None;
                    }
                }
            }
        }
    }

    /// Decodes and answers every complete frame in the read buffer; returns how many.
    async fn process(&mut self) -> Result<usize, Close> {
        let mut handled = 0;
        loop {
            let item = match self.codec.decode(&mut self.rbuf) {
                Ok(Some(item)) => item,
                Ok(None) => return Ok(handled),
                Err(ProtoError::UnknownCommand(b)) => return Err(Close::UnknownCommand(b)),
                Err(ProtoError::Io(e)) => return Err(Close::Io(e)),
                Err(e) => {
                    return Err(Close::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        e.to_string(),
                    )))
                }
            };
            handled += 1;
            match item {
                Ok(request) => self.handle(request).await?,
                Err(rejection) => {
                    self.node
                        .metrics
                        .request_error("tcp_v2", status_label(rejection.status));
                    self.v2_error(rejection.req_id, rejection.status, &rejection.message);
                }
            }
            if self.wbuf.len() >= WRITE_FLUSH_AT {
                self.flush().await.map_err(Close::Io)?;
            }
        }
    }

    async fn handle(&mut self, request: Request) -> Result<(), Close> {
        let started = Instant::now();
        let metrics = self.node.metrics;
        match request {
            Request::V1Single => {
                self.issue_v1(1).await?;
                let Some(&id) = self.ids.first() else {
                    return Err(Close::V1Unavailable("internal error: no ID issued".into()));
                };
                encode_v1_single(id, &mut self.wbuf);
                metrics.ids_tcp_v1.increment(1);
                metrics
                    .tcp_v1_single
                    .record(started.elapsed().as_secs_f64());
            }
            Request::V1Batch { count } => {
                self.issue_v1(count).await?;
                if encode_v1_batch(&self.ids, &mut self.wbuf).is_err() {
                    return Err(Close::V1Unavailable(format!(
                        "internal error: {} IDs do not fit a v1 batch",
                        self.ids.len()
                    )));
                }
                metrics.ids_tcp_v1.increment(u64::from(count));
                metrics.tcp_v1_batch.record(started.elapsed().as_secs_f64());
            }
            Request::V2(req) => {
                self.handle_v2(req).await;
            }
        }
        Ok(())
    }

    async fn issue_v1(&mut self, count: u8) -> Result<(), Close> {
        if count == 0 {
            self.ids.clear();
            return Ok(());
        }
        self.node
            .issue(self.lane, u64::from(count), &mut self.ids)
            .await
            .map_err(|e| {
                self.node.metrics.request_error("tcp_v1", "unavailable");
                Close::V1Unavailable(e.message().to_owned())
            })
    }

    async fn handle_v2(&mut self, req: V2Request) {
        let started = Instant::now();
        let metrics = self.node.metrics;
        match req.op {
            Op::Ping => {
                self.ids.clear();
                self.v2_ok(req.req_id);
                metrics.tcp_v2_ping.record(started.elapsed().as_secs_f64());
            }
            Op::Snowflake => {
                match self
                    .node
                    .issue(self.lane, u64::from(req.count), &mut self.ids)
                    .await
                {
                    Ok(()) => {
                        self.v2_ok(req.req_id);
                        metrics.ids_tcp_v2.increment(u64::from(req.count));
                    }
                    Err(e) => {
                        let status = match e {
                            IssueError::Unavailable(_) => Status::Unavailable,
                            IssueError::Internal(_) => Status::Internal,
                        };
                        metrics.request_error("tcp_v2", status_label(status));
                        self.v2_error(req.req_id, status, e.message());
                    }
                }
                metrics
                    .tcp_v2_snowflake
                    .record(started.elapsed().as_secs_f64());
            }
            Op::Segment => {
                let segments = self.node.segments.clone();
                match segments.allocate(&req.tag, req.count).await {
                    Ok(ids) => {
                        self.ids = ids;
                        self.v2_ok(req.req_id);
                    }
                    Err(e) => {
                        let status = match e {
                            SegmentError::NotConfigured | SegmentError::Unavailable(_) => {
                                Status::Unavailable
                            }
                            SegmentError::UnknownTag(_) => Status::UnknownTag,
                            SegmentError::Exhausted(_) => Status::OverLimit,
                            SegmentError::Invalid(_) | SegmentError::TagExists(_) => {
                                Status::BadRequest
                            }
                        };
                        metrics.request_error("tcp_v2", status_label(status));
                        self.v2_error(req.req_id, status, &e.to_string());
                    }
                }
                metrics
                    .tcp_v2_segment
                    .record(started.elapsed().as_secs_f64());
            }
        }
    }

    /// Appends an ok reply carrying `self.ids`.
    fn v2_ok(&mut self, req_id: u32) {
        if encode_v2_ok(req_id, &self.ids, &mut self.wbuf).is_err() {
            self.v2_error(req_id, Status::Internal, "reply too large to encode");
        }
        self.ids.clear();
    }

    fn v2_error(&mut self, req_id: u32, status: Status, message: &str) {
        // Only Status::Ok is refused by the encoder, and no caller passes it.
        let _ = encode_v2_error(req_id, status, message, &mut self.wbuf);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.wbuf).await;
        self.wbuf.clear();
        result
    }

    /// Makes sure the next read has room, growing with the client's pipelining depth.
    fn make_room(&mut self) {
        let spare = self.rbuf.capacity() - self.rbuf.len();
        if spare < READ_INITIAL / 2 {
            let step = self.rbuf.capacity().clamp(READ_INITIAL, READ_MAX_STEP);
            self.rbuf.reserve(step);
        }
    }

    /// Whether a buffer waits for the quiet period to be released: the read buffer whenever it
    /// grew (only pipelining clients grow it, and they would pay for regrowing it on every read),
    /// the others above [`KEEP_WHILE_BUSY`].
    fn holds_large_buffers(&self) -> bool {
        self.rbuf.capacity() > KEEP_WHILE_IDLE
            || self.wbuf.capacity() > KEEP_WHILE_BUSY
            || self.ids.capacity() * 8 > KEEP_WHILE_BUSY
    }

    /// Drops the reply buffers whose capacity is above [`KEEP_WHILE_IDLE`] and at most `upto`;
    /// with `upto == usize::MAX` (the quiet period ended) also a grown read buffer, keeping a
    /// pending partial frame.
    fn release_buffers(&mut self, upto: usize) {
        let release = |capacity: usize| capacity > KEEP_WHILE_IDLE && capacity <= upto;
        if upto == usize::MAX && self.rbuf.capacity() > KEEP_WHILE_IDLE {
            let mut small = BytesMut::with_capacity(READ_INITIAL.max(self.rbuf.len()));
            small.extend_from_slice(&self.rbuf);
            self.rbuf = small;
        }
        if release(self.wbuf.capacity()) {
            self.wbuf = BytesMut::new();
        }
        if release(self.ids.capacity() * 8) {
            self.ids = Vec::new();
        }
    }

    /// Half-closes and waits briefly for the client to finish reading, so the last replies are
    /// not destroyed by a reset (closing with unread input makes the kernel send RST).
    async fn linger(&mut self) {
        let _ = self.stream.shutdown().await;
        let until = Instant::now() + LINGER;
        let mut sink = [0u8; 1024];
        while let Ok(Ok(n)) = timeout_at(until, self.stream.read(&mut sink)).await {
            if n == 0 {
                break;
            }
        }
    }
}

fn status_label(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::BadRequest => "bad_request",
        Status::UnknownTag => "unknown_tag",
        Status::Unavailable => "unavailable",
        Status::OverLimit => "over_limit",
        Status::Internal => "internal",
    }
}
