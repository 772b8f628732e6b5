//! When connections may send, shared by all of them, and the per-connection reply watchdog.
//!
//! Two loops. **Closed** (the default): a connection sends whenever its pipeline has room, so the
//! offered load adapts to the server, and a stall lowers the rate instead of showing as latency.
//! **Open** (`--rate R`): request `k` of the run is *due* at `start + k / R`, whatever the server
//! does; a connection sends every due request it has room for, and each request's latency is
//! measured from its due instant, not from when it was written. A server that stalls for 100 ms
//! therefore shows 100 ms of latency on every request due during the stall — the
//! coordinated-omission correction of wrk2 and HdrHistogram — and due requests that were never
//! sent (every pipeline full until the end) are counted as `missed`.

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
    /// The run's clock starts here (open loop: request 0 is due then).
    start: Instant,
    /// Requests sent (closed) or due (open) before this are warm-up: their replies are checked but not measured.
    measure_start: Instant,
    /// No request is sent from this instant on; in-flight ones are still awaited.
    stop_at: Instant,
    /// Measured requests over all connections, when the run is bounded by count.
    limit: Option<u64>,
    /// Closed loop: measured requests handed out so far (may run past `limit` by refused claims). Open loop: the
    /// next request number to hand out.
    claimed: AtomicU64,
    /// Open loop: nanoseconds between due instants (`1e9 / rate`); `None` for the closed loop.
    interval_ns: Option<f64>,
}

/// What a connection may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    /// Send `count` requests; the `i`-th was due at `first_due + i · spacing` (closed loop: now, no spacing).
    Send {
        /// How many.
        count: u32,
        /// When the first was due.
        first_due: Instant,
        /// Between due instants.
        spacing: Duration,
    },
    /// Open loop: nothing is due before this instant.
    Wait(Instant),
    /// The schedule has ended for every connection.
    Done,
}

impl Grant {
    /// The due instants of a `Send`; empty otherwise.
    pub(crate) fn due(self) -> impl Iterator<Item = Instant> {
        let (count, first, spacing) = match self {
            Grant::Send {
                count,
                first_due,
                spacing,
            } => (count, Some(first_due), spacing),
            Grant::Wait(_) | Grant::Done => (0, None, Duration::ZERO),
        };
        (0..count).filter_map(move |i| first.map(|f| f + spacing * i))
    }
}

impl Schedule {
    /// The schedule of `plan` with its clock starting at `start`.
    pub(crate) fn new(start: Instant, plan: &Plan) -> Schedule {
        let measure_start = start + plan.warmup;
        Schedule {
            start,
            measure_start,
            stop_at: measure_start + plan.duration,
            limit: plan.requests,
            claimed: AtomicU64::new(0),
            interval_ns: plan.rate.map(|r| 1e9 / r as f64),
        }
    }

    /// When measuring started.
    pub(crate) fn measure_start(&self) -> Instant {
        self.measure_start
    }

    /// What a connection with room for `want` more requests may do at `now`.
    pub(crate) fn claim(&self, now: Instant, want: u32) -> Grant {
        if let Some(interval) = self.interval_ns {
            return self.claim_due(now, want, interval);
        }
        let send = |count: u32| {
            if count == 0 {
                Grant::Done
            } else {
                Grant::Send {
                    count,
                    first_due: now,
                    spacing: Duration::ZERO,
                }
            }
        };
        if now < self.measure_start {
            return send(want);
        }
        if now >= self.stop_at {
            return Grant::Done;
        }
        let Some(limit) = self.limit else {
            return send(want);
        };
        // Relaxed: the counter only hands out numbers; it orders no other memory.
        let before = self.claimed.fetch_add(want.into(), Ordering::Relaxed);
        let left = limit.saturating_sub(before);
        // `left` is compared with a u32, so the cast cannot lose bits.
        send(left.min(want.into()) as u32)
    }

    /// When request `k` is due (open loop).
    fn due_at(&self, k: u64, interval_ns: f64) -> Instant {
        self.start + Duration::from_nanos((k as f64 * interval_ns) as u64)
    }

    /// The number of the first request due at or after `at` (open loop).
    fn first_due_from(&self, at: Instant, interval_ns: f64) -> u64 {
        (at.saturating_duration_since(self.start).as_nanos() as f64 / interval_ns).ceil() as u64
    }

    /// One past the last request number of the run (open loop): due before `stop_at`, and within `--requests`.
    fn end(&self, interval_ns: f64) -> u64 {
        let by_time = self.first_due_from(self.stop_at, interval_ns);
        match self.limit {
            Some(limit) => {
                by_time.min(self.first_due_from(self.measure_start, interval_ns) + limit)
            }
            None => by_time,
        }
    }

    /// Open loop: hands out the requests due by `now`, oldest first, at most `want`.
    fn claim_due(&self, now: Instant, want: u32, interval_ns: f64) -> Grant {
        let end = self.end(interval_ns);
        // Requests 0..=due_now are due (request 0 at `start`).
        let due_now =
            (now.saturating_duration_since(self.start).as_nanos() as f64 / interval_ns) as u64 + 1;
        let mut next = self.claimed.load(Ordering::Relaxed);
        loop {
            if next >= end || now >= self.stop_at {
                return Grant::Done;
            }
            if next >= due_now {
                return Grant::Wait(self.due_at(next, interval_ns));
            }
            let count = u64::from(want).min(due_now - next).min(end - next);
            // Relaxed: the counter only hands out numbers; the due instants are computed from them.
            match self.claimed.compare_exchange_weak(
                next,
                next + count,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Grant::Send {
                        // At most `want`, a u32.
                        count: count as u32,
                        first_due: self.due_at(next, interval_ns),
                        spacing: Duration::from_nanos(interval_ns as u64),
                    };
                }
                Err(actual) => next = actual,
            }
        }
    }

    /// Open loop: requests due in the measured window that were never sent (every pipeline was full until the
    /// end); `None` for the closed loop.
    pub(crate) fn missed(&self) -> Option<u64> {
        let interval = self.interval_ns?;
        let measured_from = self.first_due_from(self.measure_start, interval);
        let end = self.end(interval);
        let handed_out = self.claimed.load(Ordering::Relaxed).max(measured_from);
        Some(end.saturating_sub(handed_out))
    }

    /// Whether the `--requests` budget was used up, as opposed to the run running out of time.
    pub(crate) fn budget_spent(&self) -> bool {
        let Some(limit) = self.limit else {
            return false;
        };
        match self.interval_ns {
            None => self.claimed.load(Ordering::Relaxed) >= limit,
            Some(interval) => {
                let measured_from = self.first_due_from(self.measure_start, interval);
                self.claimed.load(Ordering::Relaxed) >= measured_from + limit
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Protocol;

    fn open_plan(rate: u64, duration: Duration, requests: Option<u64>) -> Plan {
        let mut plan = Plan::new(Protocol::V1, "127.0.0.1:3778".parse().unwrap());
        plan.rate = Some(rate);
        plan.duration = duration;
        plan.requests = requests;
        plan
    }

    fn dues(grant: Grant) -> Vec<Instant> {
        grant.due().collect()
    }

    #[test]
    fn open_loop_hands_out_exactly_the_due_requests_with_their_due_instants() {
        let t0 = Instant::now();
        // 1,000/s: request k is due at t0 + k ms.
        let s = Schedule::new(t0, &open_plan(1_000, Duration::from_secs(1), None));
        // At t0 + 2.5 ms requests 0, 1 and 2 are due; a connection with room for 10 gets those three.
        let at = t0 + Duration::from_micros(2_500);
        let ms = Duration::from_millis(1);
        assert_eq!(dues(s.claim(at, 10)), vec![t0, t0 + ms, t0 + 2 * ms]);
        // Nothing more is due: wait for request 3.
        assert_eq!(s.claim(at, 10), Grant::Wait(t0 + 3 * ms));
        // Late by 4 ms: the four due requests keep their due instants (latency counts from them), and room
        // limits the grant.
        let late = t0 + Duration::from_micros(6_900);
        assert_eq!(dues(s.claim(late, 2)), vec![t0 + 3 * ms, t0 + 4 * ms]);
        assert_eq!(dues(s.claim(late, 10)), vec![t0 + 5 * ms, t0 + 6 * ms]);
        // The run's 1,000 requests end before t0 + 1 s; after it, done.
        assert_eq!(s.claim(t0 + Duration::from_secs(1), 10), Grant::Done);
        assert_eq!(s.missed(), Some(1_000 - 7));
    }

    #[test]
    fn open_loop_stops_at_the_request_budget_and_counts_it_spent() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, &open_plan(1_000, Duration::from_secs(60), Some(5)));
        let late = t0 + Duration::from_millis(100);
        assert_eq!(s.claim(late, 1024).due().count(), 5);
        assert_eq!(s.claim(late, 1024), Grant::Done);
        assert!(s.budget_spent());
        assert_eq!(s.missed(), Some(0));
    }

    #[test]
    fn closed_loop_sends_now_and_reports_no_misses() {
        let t0 = Instant::now();
        let mut plan = open_plan(1, Duration::from_secs(1), Some(3));
        plan.rate = None;
        let s = Schedule::new(t0, &plan);
        let now = t0 + Duration::from_millis(1);
        assert_eq!(dues(s.claim(now, 2)), vec![now, now]);
        assert_eq!(dues(s.claim(now, 2)), vec![now]);
        assert_eq!(s.claim(now, 2), Grant::Done);
        assert_eq!(s.missed(), None);
    }
}
