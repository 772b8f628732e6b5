//! When connections may send, shared by all of them, and the per-connection reply watchdog.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::time::Sleep;

use crate::args::Plan;

/// The run's clock and request budget, shared by every connection.
///
/// Connections ask it before each write, so a `--requests` budget is spread over the connections by demand: a fast
/// connection takes more, and no connection idles at the end while another still has a fixed share to send.
#[derive(Debug)]
pub(crate) struct Schedule {
    /// Requests sent before this are warm-up: their replies are checked but not measured.
    measure_start: Instant,
    /// No request is sent from this instant on; in-flight ones are still awaited.
    stop_at: Instant,
    /// Measured requests over all connections, when the run is bounded by count.
    limit: Option<u64>,
    /// Measured requests handed out so far; may run past `limit` by refused claims.
    claimed: AtomicU64,
}

impl Schedule {
    /// The schedule of `plan` with its clock starting at `start`.
    pub(crate) fn new(start: Instant, plan: &Plan) -> Schedule {
        let measure_start = start + plan.warmup;
        Schedule {
            measure_start,
            stop_at: measure_start + plan.duration,
            limit: plan.requests,
            claimed: AtomicU64::new(0),
        }
    }

    /// When measuring started.
    pub(crate) fn measure_start(&self) -> Instant {
        self.measure_start
    }

    /// How many of `want` more requests may be sent at `now`; 0 means this connection is done sending.
    pub(crate) fn claim(&self, now: Instant, want: u32) -> u32 {
        if now < self.measure_start {
            return want;
        }
        if now >= self.stop_at {
            return 0;
        }
        let Some(limit) = self.limit else {
            return want;
        };
        // Relaxed: the counter only hands out numbers; it orders no other memory.
        let before = self.claimed.fetch_add(want.into(), Ordering::Relaxed);
        let left = limit.saturating_sub(before);
        // `left` is compared with a u32, so the cast cannot lose bits.
        left.min(want.into()) as u32
    }

    /// Whether the `--requests` budget was used up, as opposed to the run running out of time.
    pub(crate) fn budget_spent(&self) -> bool {
        self.limit
            .is_some_and(|limit| self.claimed.load(Ordering::Relaxed) >= limit)
    }
}

/// Fires when the oldest outstanding request of a connection has waited `timeout`.
///
/// The oldest request changes with nearly every reply; re-arming a timer each time would cost a timer-wheel update
/// per reply. Instead the timer stays armed at a possibly stale, earlier deadline and is moved only when it fires,
/// so it is touched about once per `timeout` rather than once per request.
#[derive(Debug)]
pub(crate) struct Watchdog {
    /// Armed at or before the real deadline, never after it.
    sleep: Pin<Box<Sleep>>,
    /// Longest wait for one reply.
    timeout: Duration,
}

impl Watchdog {
    /// A watchdog for replies that may take up to `timeout`.
    pub(crate) fn new(timeout: Duration) -> Watchdog {
        Watchdog {
            sleep: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }

    /// The longest wait for one reply.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Completes once the request sent at `oldest` has waited the timeout; cancel-safe, so it can sit in a
    /// `select!` that is rebuilt on every turn.
    pub(crate) async fn expired(&mut self, oldest: Instant) {
        let deadline = tokio::time::Instant::from_std(oldest + self.timeout);
        loop {
            if self.sleep.deadline() > deadline {
                self.sleep.as_mut().reset(deadline);
            }
            self.sleep.as_mut().await;
            if self.sleep.deadline() >= deadline {
                return;
            }
            self.sleep.as_mut().reset(deadline);
        }
    }
}
