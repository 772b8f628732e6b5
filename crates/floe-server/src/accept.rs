//! The one accept loop of both listeners (binary TCP and HTTP): a connection cap, throttled
//! logging of rejections and failures, and a back-off when the process is out of descriptors.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics::Counter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::throttle::Throttle;

/// Pause after an accept that failed for want of descriptors or memory: the same error repeats
/// until a connection closes, so the loop lets the connections holding them finish instead of
/// spinning.
const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(100);
/// Pause after an accept that failed for one connection only (e.g. `ECONNABORTED`).
const ONE_OFF_BACKOFF: Duration = Duration::from_millis(1);

/// What differs between the listeners.
pub(crate) struct Listener {
    /// `TCP` or `HTTP`, for the log.
    pub(crate) name: &'static str,
    /// The config key of the cap, for the log.
    pub(crate) cap_key: &'static str,
    /// Most open connections; beyond it a new connection is closed at once.
    pub(crate) max_connections: usize,
    /// Counts connections closed at the cap.
    pub(crate) rejected: Counter,
    /// Counts failed accepts (`floe_accept_failures_total{listener}`).
    pub(crate) failures: Counter,
    /// Limits the rejection log lines of this listener.
    pub(crate) reject_log: &'static Throttle,
    /// Limits the failure log lines of this listener.
    pub(crate) failure_log: &'static Throttle,
}

/// Accepts connections until `shutdown`, running `serve` for each one within the cap (the permit
/// travels with the connection's task), then returns the live ones so the caller can let them
/// finish within the shutdown bound.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    spec: Listener,
    shutdown: &CancellationToken,
    mut serve: F,
) -> JoinSet<()>
where
    F: FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let cap = Arc::new(Semaphore::new(spec.max_connections));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!("a {} connection task panicked: {e}", spec.name);
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match cap.clone().try_acquire_owned() {
                    Ok(permit) => {
                        conns.spawn(serve(stream, peer, permit));
                    }
                    Err(_) => {
                        spec.rejected.increment(1);
                        if let Some(more) = spec.reject_log.allow() {
                            warn!(
                                "closed {} connection from {peer}: {} ({}) reached ({more} more rejections not logged)",
                                spec.name, spec.cap_key, spec.max_connections
                            );
                        }
                        drop(stream);
                    }
                },
                Err(e) => {
                    spec.failures.increment(1);
                    if let Some(more) = spec.failure_log.allow() {
                        warn!(
                            "accepting a {} connection failed: {e} ({more} more failures not logged; all counted in floe_accept_failures_total)",
                            spec.name
                        );
                    }
                    let pause = if crate::limits::is_exhaustion(&e) {
                        EXHAUSTED_BACKOFF
                    } else {
                        ONE_OFF_BACKOFF
                    };
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
    conns
}
