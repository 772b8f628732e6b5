//! One long-lived connection: a task owns the socket, takes calls from a queue and pipelines
//! them, and answers each call's oneshot when its last reply arrives.
//!
//! Reading, writing and taking calls run in one `select!`, so a large pipeline never deadlocks
//! against a server that stops reading while its replies are unread. Replies come back in
//! request order (both protocols promise it), which is how a reply finds its call; the codec
//! checks v2 request ids and v1 batch sizes on the way.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::Arc;

use bytes::BytesMut;
use floe_proto::{ClientCodec, ProtoError, Reply, Request, V2Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;

/// Calls queued per connection before senders wait; bounds memory under a burst.
const QUEUE: usize = 1024;
/// Encoded requests buffered before the task stops taking calls until the socket drains.
const WRITE_HIGH: usize = 64 * 1024;
/// Read buffer headroom kept before each read.
const READ_CHUNK: usize = 16 * 1024;

/// One request frame, before the connection gives it a request id.
#[derive(Debug, Clone)]
pub(crate) enum Ask {
    /// v2 liveness check, used to tell a Floe server from a plain GenID server.
    Ping,
    /// v2 snowflake IDs.
    Snowflake(u32),
    /// v2 IDs of one segment tag.
    Segment(Arc<str>, u32),
    /// v2 numbers of one number sequence.
    Number(Arc<str>, u32),
    /// v1 `cmd 0`.
    V1Single,
    /// v1 `cmd 1`.
    V1Batch(u8),
}

/// Why a connection could not answer a call.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// The peer closed or reset the connection, as a GenID server does on the v2 magic byte.
    pub closed: bool,
    /// What happened, for the caller's error list.
    pub message: String,
}

impl Failure {
    fn closed(message: impl Into<String>) -> Failure {
        Failure {
            closed: true,
            message: message.into(),
        }
    }

    fn broken(message: impl Into<String>) -> Failure {
        Failure {
            closed: false,
            message: message.into(),
        }
    }

    fn io(e: &io::Error) -> Failure {
        let closed = matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        );
        Failure {
            closed,
            message: format!("connection error: {e}"),
        }
    }

    fn proto(e: &ProtoError) -> Failure {
        match e {
            ProtoError::Io(io) => Failure::io(io),
            ProtoError::Unanswered { .. } => {
                Failure::closed(format!("server closed the connection: {e}"))
            }
            other => Failure::broken(format!("protocol error: {other}")),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Requests pipelined together whose replies answer one caller.
#[derive(Debug)]
struct Call {
    /// The frames, sent back to back.
    asks: Vec<Ask>,
    /// Gets every reply in order, or the failure that ended the connection.
    reply: oneshot::Sender<Result<Vec<Reply>, Failure>>,
}

/// A call whose frames were encoded and whose replies are still coming.
#[derive(Debug)]
struct InFlight {
    /// Replies the call waits for.
    expected: usize,
    /// Replies received so far.
    replies: Vec<Reply>,
    /// The caller.
    reply: oneshot::Sender<Result<Vec<Reply>, Failure>>,
}

/// A handle to a connection task; cloning it shares the connection.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    /// The task's call queue; closed once the task ends.
    calls: mpsc::Sender<Call>,
    /// Ends the task, e.g. after a timeout left the stream in doubt.
    cancel: CancellationToken,
}

impl Conn {
    /// Connects to `addr` and starts the connection task on `runtime`.
    pub(crate) async fn connect(addr: &str, max_count: u32, runtime: &Handle) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        // Requests are small and latency-bound; Nagle would hold them back.
        stream.set_nodelay(true)?;
        let (calls, rx) = mpsc::channel(QUEUE);
        let cancel = CancellationToken::new();
        runtime.spawn(run(stream, rx, cancel.clone(), max_count));
        Ok(Conn { calls, cancel })
    }

    /// Sends `asks` pipelined and returns their replies in order.
    pub(crate) async fn call(&self, asks: Vec<Ask>) -> Result<Vec<Reply>, Failure> {
        let (reply, rx) = oneshot::channel();
        self.calls
            .send(Call { asks, reply })
            .await
            .map_err(|_| Failure::closed("connection already closed"))?;
        rx.await
            .map_err(|_| Failure::closed("connection task ended"))?
    }

    /// Whether the task has ended, so the pool must connect anew.
    pub(crate) fn is_closed(&self) -> bool {
        self.calls.is_closed()
    }

    /// Ends the connection; its outstanding calls fail.
    pub(crate) fn close(&self) {
        self.cancel.cancel();
    }
}

/// The connection task's state besides the socket.
struct Task {
    /// Encodes requests and decodes replies, checking them against what was asked.
    codec: ClientCodec,
    /// Bytes read and not yet decoded.
    rbuf: BytesMut,
    /// Encoded requests not yet written.
    wbuf: BytesMut,
    /// Calls waiting for replies, oldest first.
    inflight: VecDeque<InFlight>,
    /// Next v2 request id; per connection, since replies are matched per connection.
    next_req_id: u32,
}

async fn run(
    stream: TcpStream,
    mut calls: mpsc::Receiver<Call>,
    cancel: CancellationToken,
    max_count: u32,
) {
    let mut task = Task {
        codec: ClientCodec::new(max_count),
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        wbuf: BytesMut::new(),
        inflight: VecDeque::new(),
        next_req_id: 1,
    };
    let failure = task.serve(stream, &mut calls, &cancel).await;
    // Refuse new calls first, so nothing slips in after the queue is drained.
    calls.close();
    let failure = failure.unwrap_or_else(|| Failure::closed("connection closed"));
    for call in task.inflight.drain(..) {
        let _ = call.reply.send(Err(failure.clone()));
    }
    while let Ok(call) = calls.try_recv() {
        let _ = call.reply.send(Err(failure.clone()));
    }
}

impl Task {
    /// Runs until the connection fails (`Some`) or the client drops it with nothing in flight.
    async fn serve(
        &mut self,
        stream: TcpStream,
        calls: &mut mpsc::Receiver<Call>,
        cancel: &CancellationToken,
    ) -> Option<Failure> {
        let (mut rd, mut wr) = stream.into_split();
        let mut accepting = true;
        loop {
            if !accepting && self.inflight.is_empty() && self.wbuf.is_empty() {
                return None;
            }
            self.rbuf.reserve(READ_CHUNK);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Some(Failure::broken("connection closed by the client")),
                read = rd.read_buf(&mut self.rbuf) => match read {
                    Ok(0) => return Some(self.eof()),
                    Ok(_) => {
                        if let Err(f) = self.decode() {
                            return Some(f);
                        }
                    }
                    Err(e) => return Some(Failure::io(&e)),
                },
                written = wr.write_buf(&mut self.wbuf), if !self.wbuf.is_empty() => {
                    if let Err(e) = written {
                        return Some(Failure::io(&e));
                    }
                }
                call = calls.recv(), if accepting && self.wbuf.len() < WRITE_HIGH => match call {
                    Some(call) => {
                        if let Err(f) = self.encode(call) {
                            return Some(f);
                        }
                        // Calls that queued meanwhile go out in the same write.
                        while self.wbuf.len() < WRITE_HIGH {
                            let Ok(call) = calls.try_recv() else { break };
                            if let Err(f) = self.encode(call) {
                                return Some(f);
                            }
                        }
                    }
                    None => accepting = false,
                },
            }
        }
    }

    fn encode(&mut self, call: Call) -> Result<(), Failure> {
        let expected = call.asks.len();
        for ask in call.asks {
            let request = match ask {
                Ask::Ping => Request::V2(V2Request::ping(self.req_id())),
                Ask::Snowflake(n) => Request::V2(V2Request::snowflake(self.req_id(), n)),
                Ask::Segment(tag, n) => {
                    Request::V2(V2Request::segment(self.req_id(), n, tag.as_ref()))
                }
                Ask::Number(name, n) => {
                    Request::V2(V2Request::number(self.req_id(), n, name.as_ref()))
                }
                Ask::V1Single => Request::V1Single,
                Ask::V1Batch(count) => Request::V1Batch { count },
            };
            // Tags are checked before they get here; should one slip through, the frames of
            // this call already encoded would desynchronise the stream, so the connection ends.
            if let Err(e) = self.codec.encode(request, &mut self.wbuf) {
                let failure = Failure::broken(format!("cannot encode request: {e}"));
                let _ = call.reply.send(Err(failure.clone()));
                return Err(failure);
            }
        }
        self.inflight.push_back(InFlight {
            expected,
            replies: Vec::with_capacity(expected),
            reply: call.reply,
        });
        Ok(())
    }

    fn req_id(&mut self) -> u32 {
        let id = self.next_req_id;
        self.next_req_id = self.next_req_id.wrapping_add(1);
        id
    }

    fn decode(&mut self) -> Result<(), Failure> {
        while let Some(reply) = self
            .codec
            .decode(&mut self.rbuf)
            .map_err(|e| Failure::proto(&e))?
        {
            self.deliver(reply)?;
        }
        Ok(())
    }

    fn eof(&mut self) -> Failure {
        loop {
            match self.codec.decode_eof(&mut self.rbuf) {
                Ok(Some(reply)) => {
                    if let Err(f) = self.deliver(reply) {
                        return f;
                    }
                }
                Ok(None) => return Failure::closed("server closed the connection"),
                Err(e) => return Failure::proto(&e),
            }
        }
    }

    fn deliver(&mut self, reply: Reply) -> Result<(), Failure> {
        let Some(front) = self.inflight.front_mut() else {
            return Err(Failure::broken(
                "protocol error: a reply arrived with no call waiting",
            ));
        };
        front.replies.push(reply);
        if front.replies.len() == front.expected {
            if let Some(done) = self.inflight.pop_front() {
                // The caller may have timed out and gone; the stream stays in step regardless.
                let _ = done.reply.send(Ok(done.replies));
            }
        }
        Ok(())
    }
}
