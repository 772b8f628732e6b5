//! One binary-TCP connection (v1 or v2): keeps `--pipeline` requests in flight and records every reply.
//!
//! Reading and writing are driven by socket readiness in one loop rather than by a blocking `write_all`: with deep
//! pipelines and big replies, a client that insists on finishing its write before reading can deadlock against a
//! server that is blocked writing replies nobody reads.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use floe_proto::{ClientCodec, Reply, Request, V2Request};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

use crate::args::{Mode, Plan, Protocol};
use crate::pace::DueTimer;
use crate::report::{ConnStats, ErrorKind};
use crate::schedule::{Grant, Schedule, Watchdog};

/// Free space kept in the read buffer before each read; a v2 reply bigger than this makes the codec reserve the
/// rest of its frame.
const READ_CHUNK: usize = 64 * 1024;

/// Runs one connection until the schedule stops and every reply is in, or until it breaks.
pub(crate) async fn drive(
    stream: TcpStream,
    plan: &Plan,
    schedule: &Schedule,
    stats: &mut ConnStats,
) {
    let mut conn = Conn::new(stream, plan);
    if let Err((kind, message)) = conn.run(schedule, stats).await {
        stats.broke(kind, &message, conn.sent.len());
    }
}

/// A connection's reusable state: nothing here is allocated per request.
struct Conn {
    stream: TcpStream,
    /// Remembers what each outstanding request asked, since v1 replies do not say.
    codec: ClientCodec,
    /// The one request this connection sends over and over; only a v2 req_id changes.
    request: Request,
    /// The next v2 req_id.
    next_req_id: u32,
    /// Encoded requests not yet written.
    out: BytesMut,
    /// Reply bytes not yet decoded.
    inb: BytesMut,
    /// Send instants of outstanding requests, oldest first, for latency and the timeout.
    sent: VecDeque<Instant>,
    /// Requests to keep in flight.
    pipeline: usize,
    /// Fires when the oldest outstanding request has waited `--timeout`.
    watchdog: Watchdog,
    /// A deadline that never comes, for the `select!` branch that is disabled in the closed loop.
    far_future: Instant,
    /// Open loop: wakes the connection when its next request falls due.
    timer: DueTimer,
}

/// Why a connection stopped early: the kind to count and a message.
type Broken = (ErrorKind, String);

impl Conn {
    fn new(stream: TcpStream, plan: &Plan) -> Conn {
        let batch = plan.batch;
        let request = match (plan.protocol, &plan.mode) {
            (Protocol::V1, _) if batch == 1 => Request::V1Single,
            // Validation keeps v1 batches within 0..=255.
            (Protocol::V1, _) => Request::V1Batch { count: batch as u8 },
            (_, Mode::Snowflake) => Request::V2(V2Request::snowflake(0, batch)),
            (_, Mode::Segment { tag }) => Request::V2(V2Request::segment(0, batch, tag.as_str())),
        };
        let pipeline = plan.pipeline as usize;
        Conn {
            stream,
            // The exact batch as the limit: a reply announcing more IDs than asked is refused before buffering.
            codec: ClientCodec::new(batch.max(1)),
            request,
            next_req_id: 0,
            out: BytesMut::with_capacity(pipeline * 16),
            inb: BytesMut::with_capacity(READ_CHUNK),
            sent: VecDeque::with_capacity(pipeline),
            pipeline,
            watchdog: Watchdog::new(plan.timeout),
            far_future: Instant::now() + Duration::from_secs(86_400),
            timer: DueTimer::new(),
        }
    }

    async fn run(&mut self, schedule: &Schedule, stats: &mut ConnStats) -> Result<(), Broken> {
        let mut sending = true;
        loop {
            // Open loop: when the next request falls due, if nothing else wakes the loop first.
            let mut next_due = None;
            if sending && self.sent.len() < self.pipeline {
                match self.refill(schedule)? {
                    Grant::Wait(at) => next_due = Some(at),
                    Grant::Done => sending = false,
                    Grant::Send { .. } => {}
                }
            }
            if self.sent.is_empty() {
                match next_due {
                    Some(at) => {
                        self.timer.wait_until(at).await;
                        continue;
                    }
                    None if !sending => return Ok(()),
                    // A closed-loop grant always sends; nothing to wait for.
                    None => continue,
                }
            }
            self.flush()?;
            let oldest = self.sent[0];
            let due = next_due.unwrap_or(self.far_future);
            self.inb.reserve(READ_CHUNK);
            // Reading through `AsyncRead` ends a wake-up at a short read: a readiness check followed by
            // `try_read` until `WouldBlock` cost one more `recv` per wake-up (42 % of this tool's `recv`s, on
            // every one of which the server's replies waited).
            let (mut rd, wr) = self.stream.split();
            let read = tokio::select! {
                biased;
                read = rd.read_buf(&mut self.inb) => read.map_err(io_error)?,
                writable = wr.writable(), if !self.out.is_empty() => {
                    writable.map_err(io_error)?;
                    self.flush()?;
                    continue;
                }
                () = self.watchdog.expired(oldest) => return Err(self.timed_out()),
                () = self.timer.wait_until(due), if next_due.is_some() => continue,
            };
            if read == 0 {
                return Err((
                    ErrorKind::Closed,
                    format!(
                        "the server closed the connection with {} requests outstanding",
                        self.sent.len()
                    ),
                ));
            }
            // Every reply completed by this read was complete when the read returned.
            let done = Instant::now();
            self.take_replies(stats, done)?;
            // The watchdog only fires while the loop waits, and a server that trickles bytes keeps the loop from
            // waiting, so the oldest request is checked against the read's clock as well.
            if let Some(&oldest) = self.sent.front() {
                if done.saturating_duration_since(oldest) >= self.watchdog.timeout() {
                    return Err(self.timed_out());
                }
            }
        }
    }

    fn timed_out(&self) -> Broken {
        let message = format!("no reply within --timeout {:?}", self.watchdog.timeout());
        (ErrorKind::Timeout, message)
    }

    /// Encodes as many requests as the pipeline has room for and the schedule allows, each remembered with the
    /// instant it was due (closed loop: now; they leave in the same syscall).
    fn refill(&mut self, schedule: &Schedule) -> Result<Grant, Broken> {
        let now = Instant::now();
        // The pipeline is at most 1024, so the cast cannot lose bits.
        let room = (self.pipeline - self.sent.len()) as u32;
        let grant = schedule.claim(now, room);
        for due in grant.due() {
            if let Request::V2(req) = &mut self.request {
                req.req_id = self.next_req_id;
                self.next_req_id = self.next_req_id.wrapping_add(1);
            }
            self.codec
                .encode(&self.request, &mut self.out)
                .map_err(|e| (ErrorKind::Protocol, e.to_string()))?;
            self.sent.push_back(due);
        }
        Ok(grant)
    }

    /// Writes what the socket takes without waiting; the rest goes when it is writable again.
    fn flush(&mut self) -> Result<(), Broken> {
        while !self.out.is_empty() {
            match self.stream.try_write(&self.out) {
                Ok(n) => self.out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(io_error(e)),
            }
        }
        Ok(())
    }

    /// Records every reply that the bytes read so far complete, as done at `done`.
    fn take_replies(&mut self, stats: &mut ConnStats, done: Instant) -> Result<(), Broken> {
        while let Some(reply) = self
            .codec
            .decode(&mut self.inb)
            .map_err(|e| (ErrorKind::Protocol, e.to_string()))?
        {
            // The codec only yields replies to encoded requests, so a send instant is always there.
            let sent = self.sent.pop_front().unwrap_or(done);
            match reply {
                Reply::V1Single(id) => stats.ok(sent, done, std::slice::from_ref(&id)),
                Reply::V1Batch(ids) | Reply::V2Ok { ids, .. } => stats.ok(sent, done, &ids),
                Reply::V2Error {
                    status, message, ..
                } => stats.failed(sent, done, ErrorKind::Status(status.into()), &message),
                // The load generator asks for IDs only; a number reply is a peer out of step.
                Reply::V2Numbers { .. } => {
                    return Err((
                        ErrorKind::Protocol,
                        "a number reply to an ID request".into(),
                    ))
                }
            }
        }
        Ok(())
    }
}

fn io_error(e: io::Error) -> Broken {
    let kind = match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => ErrorKind::Closed,
        _ => ErrorKind::Io,
    };
    (kind, e.to_string())
}
