//! The HTTP accept loop: hyper HTTP/1 connections serving the axum router, with the limits the
//! binary TCP listener has — a connection cap, a header deadline (slowloris), a keep-alive idle
//! deadline — and graceful shutdown.
//!
//! hyper's own `header_read_timeout` starts whenever a connection waits for a request head,
//! including the quiet time between keep-alive requests, so it would cut every idle connection
//! at the header deadline. Each connection has its own watchdog instead: the socket wrapper
//! records when the first byte of a head arrives, the service wrapper when a request starts
//! and ends, and the watchdog closes a connection whose head has been arriving for longer than
//! `http_header_timeout`, or that sat without a request for `http_idle_timeout`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::accept::Listener;
use crate::config::HttpLimits;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::throttle::Throttle;

/// Largest read (and header) buffer of one connection. hyper's default is about 400 KB, which
/// over 10,000 connections sending near-complete huge heads would be 4 GB; a head larger than
/// this gets hyper's 431.
const MAX_BUF: usize = 64 * 1024;

/// Accepts HTTP connections until `shutdown` (the shared loop of [`crate::accept`]), then returns
/// the live ones so the caller can let them finish within `server.shutdown_timeout` (each was
/// told to close after its current request).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: CancellationToken,
) -> JoinSet<()> {
    static REJECTED: Throttle = Throttle::new();
    static FAILED: Throttle = Throttle::new();
    let router = super::router(node.clone());
    let limits = node.config.server.http;
    let spec = Listener {
        name: "HTTP",
        cap_key: "server.http_max_connections",
        max_connections: limits.max_connections,
        rejected: node.metrics.http_rejected.clone(),
        failures: node.metrics.http_accept_failures.clone(),
        reject_log: &REJECTED,
        failure_log: &FAILED,
    };
    crate::accept::accept_loop(listener, spec, &shutdown, |stream, peer, permit| {
        serve_connection(
            stream,
            peer,
            router.clone(),
            node.metrics,
            limits,
            shutdown.clone(),
            permit,
        )
    })
    .await
}

/// Lowers the open-connections gauge when a connection task ends, however it ends.
struct OpenGuard(&'static Metrics);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.http_open.decrement(1.0);
    }
}

/// Why the watchdog woke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// A head has been arriving for `http_header_timeout`.
    Header,
    /// No request for `http_idle_timeout`.
    Idle,
    /// A connection told to close after the idle deadline still has not.
    Grace,
    /// A request is running: nothing to enforce, look again later.
    Recheck,
}

/// Serves one connection until the client closes it, a deadline passes, or shutdown.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    metrics: &'static Metrics,
    limits: HttpLimits,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    metrics.http_open.increment(1.0);
    let _open = OpenGuard(metrics);
    // Responses are written whole; Nagle would only delay them.
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = Tracked {
        inner: TowerToHyperService::new(router),
        activity: activity.clone(),
    };
    let conn = http1::Builder::new()
        // The watchdog below enforces it, without cutting idle keep-alive connections.
        .header_read_timeout(None)
        .max_buf_size(MAX_BUF)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut grace: Option<Instant> = None;
    let mut shutting_down = false;
    loop {
        let (at, _) = activity.due(&limits, grace);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(%peer, "HTTP connection closed: {e}");
                }
                return;
            }
            _ = shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                // Finishes the request in flight, then closes.
                conn.as_mut().graceful_shutdown();
            }
            _ = activity.changed.notified() => {}
            _ = sleep_until(at) => {
                // Look again: a byte or a request may have moved the deadline since.
                let (at, due) = activity.due(&limits, grace);
                if at > Instant::now() {
                    continue;
                }
                match due {
                    Due::Header | Due::Grace => {
                        metrics.http_timeouts.increment(1);
                        debug!(%peer, "HTTP connection closed: {due:?} deadline passed");
                        return;
                    }
                    Due::Idle => {
                        metrics.http_timeouts.increment(1);
                        conn.as_mut().graceful_shutdown();
                        // A response still being written to a client that does not read gets
                        // one more header timeout, then the socket is closed under it.
                        grace = Some(Instant::now() + limits.header_timeout);
                    }
                    Due::Recheck => {}
                }
            }
        }
    }
}

/// What one connection is doing, shared by its socket, its service and its watchdog. Times are
/// milliseconds since the connection opened, plus one, so 0 means "not set".
#[derive(Debug)]
struct Activity {
    /// When the connection opened.
    opened: Instant,
    /// When the first byte of the request head now arriving came; 0 while none is.
    head_since: AtomicU64,
    /// When the connection last became idle: opened, or the last response was produced.
    idle_since: AtomicU64,
    /// Requests being handled; no deadline of this module applies while one is (the admin
    /// body deadline and the handlers' own timeouts do).
    busy: AtomicUsize,
    /// Wakes the watchdog when a deadline may have come closer (a head started, a request
    /// ended); it sleeps until the deadline it computed last.
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(1),
            busy: AtomicUsize::new(0),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn at(&self, stamp: u64) -> Instant {
        self.opened + Duration::from_millis(stamp.saturating_sub(1))
    }

    /// Bytes arrived; outside a request they are (the start of) the next head.
    fn read(&self) {
        if self.busy.load(Ordering::Acquire) == 0 && self.head_since.load(Ordering::Relaxed) == 0 {
            let started = self.head_since.compare_exchange(
                0,
                self.now(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            if started.is_ok() {
                self.changed.notify_one();
            }
        }
    }

    /// hyper parsed a head and calls the service.
    fn begin(&self) {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
    }

    /// The service produced its response.
    fn end(&self) {
        if self.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since.store(self.now(), Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// The next deadline and what it is.
    fn due(&self, limits: &HttpLimits, grace: Option<Instant>) -> (Instant, Due) {
        let own = if self.busy.load(Ordering::Acquire) > 0 {
            (Instant::now() + limits.header_timeout, Due::Recheck)
        } else {
            match self.head_since.load(Ordering::Acquire) {
                0 if grace.is_some() => (Instant::now() + limits.header_timeout, Due::Recheck),
                0 => (
                    self.at(self.idle_since.load(Ordering::Acquire)) + limits.idle_timeout,
                    Due::Idle,
                ),
                head => (self.at(head) + limits.header_timeout, Due::Header),
            }
        };
        match grace {
            Some(g) if g < own.0 => (g, Due::Grace),
            _ => own,
        }
    }
}

/// The socket, recording reads in [`Activity`].
struct Watched {
    /// The client's socket.
    inner: TcpStream,
    /// Where reads are recorded.
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The router, recording in [`Activity`] when each request starts and ends.
#[derive(Clone)]
struct Tracked {
    /// The axum router as a hyper service.
    inner: TowerToHyperService<Router>,
    /// Where requests are recorded.
    activity: Arc<Activity>,
}

/// Ends the request in [`Activity`] even if hyper drops the response future (client gone).
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end();
    }
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.activity.begin();
        let busy = Busy(self.activity.clone());
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await;
            drop(busy);
            response
        })
    }
}
