//! The binary TCP listener: GenID-compatible v1 and Floe's v2 on one port.
//!
//! Each connection is bound to one generator lane (round-robin), so a client sees increasing
//! IDs. A read decodes every complete frame in the buffer, encodes all their replies into one
//! buffer and hands it to the socket with one non-blocking write: pipelined requests cost one
//! syscall per read batch, and replies keep request order.
//!
//! Memory per connection is bounded. Unsent replies are capped at [`WRITE_CAP`] (1 MiB): a
//! frame is decoded only while the largest reply it can get still fits (one reply is always
//! allowed, so a single reply above the cap is possible only with `server.max_count` raised).
//! Over the cap nothing more is read or decoded (back-pressure: the read buffer holds at most
//! one read's worth of requests), the connection waits for the socket to take its output, and a
//! connection whose writes make no progress for `server.write_timeout` is closed.
//!
//! v1 has no error reply, so when the generator cannot issue IDs (clock rollback beyond
//! tolerance, shutdown, high-water failure) a v1 connection is closed after the replies to the
//! requests before it; v2 gets a status 3 reply and the connection stays open. Whenever a
//! connection is closed with replies owed (a v1 "unavailable", an unknown command byte, the
//! client's EOF, shutdown), they are written first, then the server half-closes and drains the
//! input for up to [`LINGER`]: closing with unread input would send a reset, which destroys the
//! replies still in the client's receive buffer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::io::ErrorKind;

use bytes::{Buf, BytesMut};
use floe_proto::{
    encode_v1_batch, encode_v1_single, encode_v2_error, encode_v2_numbers, encode_v2_ok,
    number_body_bound, Op, ProtoError, Request, ServerCodec, Status, V2Request, MAX_MESSAGE_LEN,
    V1_CMD_BATCH, V1_CMD_SINGLE, V2_MAGIC, V2_REPLY_HEADER_LEN,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::accept::Listener;
use crate::issue::IssueError;
use crate::node::Node;
use crate::numbers::NumberError;
use crate::segment::SegmentError;
use crate::throttle::Throttle;

/// Why a connection whose client stopped reading was closed.
const WRITE_TIMED_OUT: &str = "replies not read by the client within server.write_timeout";

/// Initial read buffer: a few requests; idle connections must stay small (10,000 of them
/// within 64 MB).
const READ_INITIAL: usize = 128;
/// Largest read buffer growth step, reached only while a client pipelines heavily.
const READ_MAX_STEP: usize = 64 * 1024;
/// Most reply bytes a connection holds unsent. A frame is decoded only while the largest reply
/// it can produce still fits, so a client that pipelines without reading costs at most this
/// much (or one reply, when a single reply is larger: `server.max_count` above 131,000).
const WRITE_CAP: usize = 1024 * 1024;
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

/// Accepts binary TCP connections until `shutdown` (the shared loop of [`crate::accept`]), then
/// returns the live ones so the caller can let them finish within the shutdown bound.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: CancellationToken,
) -> JoinSet<()> {
    static REJECTED: Throttle = Throttle::new();
    static FAILED: Throttle = Throttle::new();
    let spec = Listener {
        name: "TCP",
        cap_key: "server.max_connections",
        max_connections: node.config.server.max_connections,
        rejected: node.metrics.tcp_rejected.clone(),
        failures: node.metrics.tcp_accept_failures.clone(),
        reject_log: &REJECTED,
        failure_log: &FAILED,
    };
    crate::accept::accept_loop(listener, spec, &shutdown, |stream, peer, permit| {
        Connection::new(stream, peer, node.clone(), shutdown.clone()).run(permit)
    })
    .await
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
    /// A frame the decoder cannot delimit; the replies before it are still owed.
    Malformed(String),
    /// Reading or writing failed.
    Io(std::io::Error),
    /// No complete request for `idle_timeout`, a partial frame for `frame_timeout`, or no
    /// write progress for `write_timeout`.
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
            Close::Malformed(m) => {
                debug!(peer = %self.peer, "TCP connection closed: malformed frame: {m}")
            }
            Close::Io(e) => debug!(peer = %self.peer, "TCP connection closed: {e}"),
            Close::Timeout(what) => {
                self.node.metrics.tcp_timeouts.increment(1);
                debug!(peer = %self.peer, "TCP connection closed: {what}")
            }
        }
        match reason {
            // The replies to the frames read before the end are owed: write them, then end
            // the stream cleanly, so that a reset does not destroy them in the client's
            // receive buffer.
            Close::Eof
            | Close::Shutdown
            | Close::UnknownCommand(_)
            | Close::V1Unavailable(_)
            | Close::Malformed(_) => {
                if self.flush().await.is_ok() {
                    self.linger().await;
                }
            }
            // A broken socket, or a client that does not read or send: nothing to save.
            Close::Io(_) | Close::Timeout(_) => {}
        }
    }

    async fn serve(&mut self) -> Close {
        let server = &self.node.config.server;
        let (idle, frame, write) = (
            server.idle_timeout,
            server.frame_timeout,
            server.write_timeout,
        );
        let mut last_request = Instant::now();
        // When the unsent replies were last all written: the idle timeout counts from the
        // later of this and the last request, so time spent serving a slow reader is not idle.
        let mut drained_at = Instant::now();
        // When the unsent replies last made progress (or appeared): the write deadline.
        let mut last_write = Instant::now();
        let mut partial_since: Option<Instant> = None;
        let mut release_at: Option<Instant> = None;
        loop {
            let (handled, output_full) = match self.process().await {
                Ok(progress) => progress,
                Err(close) => return close,
            };
            let now = Instant::now();
            if handled > 0 {
                last_request = now;
                partial_since = None;
            }
            // One write per read batch, without waiting: what the socket does not take now
            // waits for the next readiness, while more requests are read.
            let pending_before = self.wbuf.len();
            match self.write_some() {
                Ok(0) if pending_before > 0 => {}
                Ok(_) => last_write = now,
                Err(e) => return Close::Io(e),
            }
            if pending_before > 0 && self.wbuf.is_empty() {
                drained_at = now;
            }

            if output_full {
                if !self.output_full() {
                    // The write made room: answer the next frames already read.
                    continue;
                }
                // Over the cap: read and decode nothing more until the client takes some of
                // its replies (back-pressure), and give up on it after write_timeout.
                self.release_scratch();
                match timeout_at(last_write + write, self.stream.writable()).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => return Close::Io(e),
                    Err(_) => return Close::Timeout(WRITE_TIMED_OUT),
                }
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

            let pending = !self.wbuf.is_empty();
            // While replies are pending the write deadline governs, not the idle one.
            let idle_deadline = (!pending).then(|| last_request.max(drained_at) + idle);
            let write_deadline = pending.then(|| last_write + write);
            let frame_deadline = partial_since.map(|t| t + frame);
            let deadline = [idle_deadline, write_deadline, frame_deadline, release_at]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + idle);
            self.make_room();
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Close::Shutdown,
                read = timeout_at(deadline, Self::read_or_writable(&mut self.stream, &mut self.rbuf, pending)) => match read {
                    Ok(Ok(Some(0))) => return Close::Eof,
                    // Read something, or (replies pending) the socket can take output, which the top of
                    // the loop writes.
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Close::Io(e),
                    Err(_) => {
                        let now = Instant::now();
                        if write_deadline.is_some_and(|w| now >= w) {
                            return Close::Timeout(WRITE_TIMED_OUT);
                        }
                        if frame_deadline.is_some_and(|f| now >= f) {
                            return Close::Timeout("partial frame not completed within server.frame_timeout");
                        }
                        if idle_deadline.is_some_and(|i| now >= i) {
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

    /// Decodes and answers the complete frames in the read buffer, stopping early when the next
    /// reply might not fit under [`WRITE_CAP`]; returns how many it answered and whether it
    /// stopped early.
    async fn process(&mut self) -> Result<(usize, bool), Close> {
        let mut handled = 0;
        loop {
            if self.output_full() {
                return Ok((handled, true));
            }
            let item = match self.codec.decode(&mut self.rbuf) {
                Ok(Some(item)) => item,
                Ok(None) => return Ok((handled, false)),
                Err(ProtoError::UnknownCommand(b)) => return Err(Close::UnknownCommand(b)),
                Err(ProtoError::Io(e)) => return Err(Close::Io(e)),
                Err(e) => return Err(Close::Malformed(e.to_string())),
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
        }
    }

    /// Whether the reply to the next frame might take the unsent replies over [`WRITE_CAP`].
    /// With nothing pending one reply is always allowed, however large, so every request is
    /// answered.
    fn output_full(&self) -> bool {
        !self.wbuf.is_empty() && self.wbuf.len() + self.next_reply_bound() > WRITE_CAP
    }

    /// The largest reply the frame at the start of the read buffer can get, read from its
    /// header without decoding it: a few byte loads, no allocation. Assumes the worst where
    /// the header is not complete yet.
    fn next_reply_bound(&self) -> usize {
        let max_count = self.codec.max_count();
        match self.rbuf.first() {
            None => 0,
            Some(&V1_CMD_SINGLE) => 8,
            Some(&V1_CMD_BATCH) => {
                1 + 8 * usize::from(self.rbuf.get(1).copied().unwrap_or(u8::MAX))
            }
            Some(&V2_MAGIC) => {
                let count = match self.rbuf.get(6..10) {
                    Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]).min(max_count),
                    _ => max_count,
                };
                // Numbers (op 4, or an op not read yet) are strings, IDs 8 bytes; an error
                // reply's message is cut at MAX_MESSAGE_LEN.
                let body = match self.rbuf.get(1).map(|&op| Op::try_from(op)) {
                    Some(Ok(Op::Snowflake | Op::Segment | Op::Ping)) => 8 * count as usize,
                    _ => number_body_bound(count),
                };
                V2_REPLY_HEADER_LEN + body.max(MAX_MESSAGE_LEN)
            }
            // Not a request: the decoder closes the connection on it.
            Some(_) => 0,
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
                let node = &self.node;
                let allocated =
                    async { node.segments()?.allocate(&req.tag, req.count).await }.await;
                match allocated {
                    Ok(ids) => {
                        self.ids = ids;
                        self.v2_ok(req.req_id);
                    }
                    Err(e) => {
                        let status = segment_status(&e);
                        metrics.request_error("tcp_v2", status_label(status));
                        self.v2_error(req.req_id, status, &e.to_string());
                    }
                }
                metrics
                    .tcp_v2_segment
                    .record(started.elapsed().as_secs_f64());
            }
            Op::Number => {
                let node = &self.node;
                let issued = async {
                    let numbers = node.numbers()?;
                    numbers.issue(&req.tag, req.count, node.now_ms()).await
                }
                .await;
                let encoded = issued.and_then(|numbers| {
                    encode_v2_numbers(req.req_id, &numbers, &mut self.wbuf)
                        .map_err(|e| NumberError::Definition(format!("reply not encoded: {e}")))
                });
                if let Err(e) = encoded {
                    let status = number_status(&e);
                    metrics.request_error("tcp_v2", status_label(status));
                    self.v2_error(req.req_id, status, &e.to_string());
                }
                metrics
                    .tcp_v2_number
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

    /// Waits for input and reads it (`Some(bytes read)`, 0 at the client's end of input), or, with
    /// replies `pending`, returns `None` once the socket can take output.
    ///
    /// The read goes through `AsyncRead`, which on Linux takes a short read as "drained" and waits
    /// for the next readiness event instead of trying again: with a readiness check and
    /// `try_read`, every wake-up ended in one more `recv` that returned `EAGAIN` (35,080
    /// `recvfrom` for 21,695 `sendto` at 100,000 requests/s). Cancel-safe: a read that loses
    /// the `select!` has read nothing.
    async fn read_or_writable(
        stream: &mut TcpStream,
        rbuf: &mut BytesMut,
        pending: bool,
    ) -> std::io::Result<Option<usize>> {
        let (mut rd, wr) = stream.split();
        tokio::select! {
            biased;
            read = rd.read_buf(rbuf) => read.map(Some),
            writable = wr.writable(), if pending => writable.map(|()| None),
        }
    }

    /// Writes what the socket takes now without waiting; returns how many bytes.
    fn write_some(&mut self) -> std::io::Result<usize> {
        if self.wbuf.is_empty() {
            return Ok(0);
        }
        match self.stream.try_write(&self.wbuf) {
            Ok(n) => {
                self.wbuf.advance(n);
                Ok(n)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Writes every pending reply, failing when a write makes no progress for
    /// `server.write_timeout`: a closing connection owes its replies, but not forever.
    async fn flush(&mut self) -> std::io::Result<()> {
        let write = self.node.config.server.write_timeout;
        while !self.wbuf.is_empty() {
            match tokio::time::timeout(write, self.stream.write(&self.wbuf)).await {
                Ok(Ok(0)) => return Err(ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => self.wbuf.advance(n),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(std::io::Error::new(ErrorKind::TimedOut, WRITE_TIMED_OUT)),
            }
        }
        Ok(())
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
        // Pending replies are kept, whatever their size.
        if self.wbuf.is_empty() && release(self.wbuf.capacity()) {
            self.wbuf = BytesMut::new();
        }
        if release(self.ids.capacity() * 8) {
            self.ids = Vec::new();
        }
    }

    /// Drops the scratch space of one request's IDs while the connection waits for its client
    /// to read: a stalled connection then holds only its unsent replies.
    fn release_scratch(&mut self) {
        if self.ids.capacity() * 8 > KEEP_WHILE_IDLE {
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

/// The one v2 mapping of segment errors.
fn segment_status(e: &SegmentError) -> Status {
    match e {
        SegmentError::NotConfigured
        | SegmentError::Unavailable { .. }
        | SegmentError::Store(_)
        | SegmentError::Closed => Status::Unavailable,
        SegmentError::UnknownTag(_) => Status::UnknownTag,
        SegmentError::Exhausted(_) => Status::OverLimit,
        SegmentError::Invalid(_) | SegmentError::TagExists(_) => Status::BadRequest,
    }
}

/// The one v2 mapping of number errors: an unknown name is "unknown tag" (2), an exhausted
/// period "over limit" (4), as for segments.
fn number_status(e: &NumberError) -> Status {
    match e {
        NumberError::NotConfigured => Status::Unavailable,
        NumberError::UnknownName(_) => Status::UnknownTag,
        NumberError::NameExists(_) | NumberError::Invalid(_) => Status::BadRequest,
        NumberError::Exhausted(_) => Status::OverLimit,
        NumberError::Definition(_) => Status::Internal,
        NumberError::Segment(e) => segment_status(e),
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
