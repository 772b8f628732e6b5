//! One configured server: its connection pool, the protocol it speaks, and its health.
//!
//! Health is passive: a server that failed a request is ejected for a backoff period and not
//! tried until it ends; the first request after that is the probe. The hot path (a healthy
//! server) reads two atomics and takes no lock.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::time::timeout;

use crate::config::{Backoff, Config, Protocol};
use crate::conn::{Ask, Conn, Failure};

/// The server's protocol is not known yet: probe it with a v2 ping.
const SPEAKS_UNKNOWN: u8 = 0;
/// The server closed the connection on the v2 magic byte: a plain GenID server.
const SPEAKS_V1: u8 = 1;
/// The server answered a v2 ping.
const SPEAKS_V2: u8 = 2;

/// A pooled connection lent to one attempt.
#[derive(Debug)]
pub(crate) struct Lease {
    /// The connection.
    pub conn: Conn,
    /// Whether the connection speaks v2 (else v1).
    pub v2: bool,
    /// Pool slot it came from, so a stale connection can be replaced in place.
    pub slot: usize,
    /// Whether it was opened earlier (and may have gone stale since) rather than just now.
    pub reused: bool,
}

/// A pooled connection and the protocol it was opened for.
#[derive(Debug, Clone)]
struct Pooled {
    /// The connection.
    conn: Conn,
    /// Whether it speaks v2.
    v2: bool,
}

/// One server of the client's list.
#[derive(Debug)]
pub(crate) struct Server {
    /// The address as configured, `host:port`; resolved on every connect, so DNS changes apply.
    pub addr: String,
    /// Long-lived connections; each slot's lock also serialises connecting it.
    slots: Box<[tokio::sync::Mutex<Option<Pooled>>]>,
    /// Round-robin cursor over `slots`.
    next_slot: AtomicUsize,
    /// `SPEAKS_*`: what the last probe found, so later connections skip it.
    speaks: AtomicU8,
    /// Consecutive failures; 0 on the hot path, where no lock is taken.
    failures: AtomicU32,
    /// End of the ejection, in nanoseconds after `epoch`; 0 when not ejected.
    ejected_until: AtomicU64,
    /// Reference point of `ejected_until`.
    epoch: Instant,
    /// The last error, for [`crate::Error::Unavailable`].
    last_error: Mutex<String>,
}

impl Server {
    /// A server with `connections` empty pool slots.
    pub(crate) fn new(addr: String, connections: usize, epoch: Instant) -> Server {
        Server {
            addr,
            slots: (0..connections)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next_slot: AtomicUsize::new(0),
            speaks: AtomicU8::new(SPEAKS_UNKNOWN),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            epoch,
            last_error: Mutex::new(String::from("not tried yet")),
        }
    }

    /// How much longer the server stays ejected, if it is.
    pub(crate) fn ejected_for(&self, now: Instant) -> Option<Duration> {
        let until = self.ejected_until.load(Ordering::Acquire);
        if until == 0 {
            return None;
        }
        let now = self.nanos(now);
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    /// Marks a successful exchange: the failure count starts over.
    pub(crate) fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
            self.ejected_until.store(0, Ordering::Release);
        }
    }

    /// Ejects the server for a jittered, exponentially growing period after a failure.
    pub(crate) fn eject(&self, error: String, backoff: &Backoff) {
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let period = ejection(backoff, failures);
        let until = self.nanos(Instant::now()) + period.as_nanos() as u64;
        self.ejected_until.store(until.max(1), Ordering::Release);
        // It may come back as another program (an upgrade, a GenID stand-in): probe again.
        self.speaks.store(SPEAKS_UNKNOWN, Ordering::Relaxed);
        tracing::debug!(server = %self.addr, ?period, failures, "server ejected: {error}");
        self.note(error);
    }

    /// Records an error that does not eject the server (it cannot serve this kind of request).
    pub(crate) fn note(&self, error: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = error;
        }
    }

    /// The last error and the ejection, for [`crate::Error::Unavailable`].
    pub(crate) fn describe(&self, now: Instant) -> String {
        let last = self
            .last_error
            .lock()
            .map_or_else(|_| String::from("unknown"), |e| e.clone());
        match self.ejected_for(now) {
            Some(left) => format!("{last}; ejected for another {} ms", left.as_millis()),
            None => last,
        }
    }

    /// Lends a pooled connection, opening it first if the slot is empty or its connection died.
    ///
    /// With `slot`, that slot is used (to replace a stale connection); otherwise slots rotate.
    pub(crate) async fn lease(
        &self,
        slot: Option<usize>,
        config: &Config,
        runtime: &Handle,
    ) -> Result<Lease, Failure> {
        let slot = slot.unwrap_or_else(|| self.next_slot.fetch_add(1, Ordering::Relaxed))
            % self.slots.len();
        let mut pooled = self.slots[slot].lock().await;
        if let Some(p) = pooled.as_ref().filter(|p| !p.conn.is_closed()) {
            return Ok(Lease {
                conn: p.conn.clone(),
                v2: p.v2,
                slot,
                reused: true,
            });
        }
        *pooled = None;
        let fresh = self.open(config, runtime).await?;
        *pooled = Some(fresh.clone());
        Ok(Lease {
            conn: fresh.conn,
            v2: fresh.v2,
            slot,
            reused: false,
        })
    }

    /// Connects, and in [`Protocol::Auto`] finds out which protocol the server speaks.
    async fn open(&self, config: &Config, runtime: &Handle) -> Result<Pooled, Failure> {
        let conn = self.connect(config, runtime).await?;
        let speaks = match config.protocol {
            Protocol::V1 => return Ok(Pooled { conn, v2: false }),
            Protocol::V2 => return Ok(Pooled { conn, v2: true }),
            Protocol::Auto => self.speaks.load(Ordering::Relaxed),
        };
        match speaks {
            SPEAKS_V1 => return Ok(Pooled { conn, v2: false }),
            SPEAKS_V2 => return Ok(Pooled { conn, v2: true }),
            _ => {}
        }
        match timeout(config.connect_timeout, conn.call(vec![Ask::Ping])).await {
            Ok(Ok(_)) => {
                self.speaks.store(SPEAKS_V2, Ordering::Relaxed);
                Ok(Pooled { conn, v2: true })
            }
            // A GenID server closes the connection on a first byte it does not know: it speaks
            // v1 only, and the probe's connection is gone, so open another.
            Ok(Err(f)) if f.closed => {
                tracing::debug!(server = %self.addr, "no answer to the v2 ping ({f}): using v1");
                self.speaks.store(SPEAKS_V1, Ordering::Relaxed);
                let conn = self.connect(config, runtime).await?;
                Ok(Pooled { conn, v2: false })
            }
            Ok(Err(f)) => Err(f),
            Err(_) => {
                conn.close();
                Err(Failure {
                    closed: false,
                    message: format!(
                        "no answer to the v2 ping within the connect timeout ({} ms)",
                        config.connect_timeout.as_millis()
                    ),
                })
            }
        }
    }

    async fn connect(&self, config: &Config, runtime: &Handle) -> Result<Conn, Failure> {
        match timeout(
            config.connect_timeout,
            Conn::connect(&self.addr, config.max_count, runtime),
        )
        .await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(Failure {
                closed: false,
                message: format!("connect failed: {e}"),
            }),
            Err(_) => Err(Failure {
                closed: false,
                message: format!(
                    "connect timed out after {} ms",
                    config.connect_timeout.as_millis()
                ),
            }),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        // Saturates after 584 years of uptime.
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

/// Ejection period after `failures` consecutive failures (also the prefetch's pause between
/// failed refills: the client's one backoff): base·2^(failures−1), capped at max,
/// then a random point in its upper half, so clients do not return in lockstep.
pub(crate) fn ejection(backoff: &Backoff, failures: u32) -> Duration {
    let doubled = backoff
        .base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let period = doubled.min(backoff.max);
    let half = period / 2;
    let nanos = half.as_nanos() as u64;
    half + Duration::from_nanos(fastrand::u64(..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_doubles_caps_and_jitters_in_the_upper_half() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let first = ejection(&backoff, 1);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
            let third = ejection(&backoff, 3);
            assert!((Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third));
            let capped = ejection(&backoff, 1000);
            assert!((Duration::from_millis(500)..=Duration::from_secs(1)).contains(&capped));
        }
    }

    #[test]
    fn ejection_ends_and_success_clears_it() {
        let server = Server::new("127.0.0.1:1".into(), 1, Instant::now());
        assert_eq!(server.ejected_for(Instant::now()), None);
        let backoff = Backoff {
            base: Duration::from_secs(60),
            max: Duration::from_secs(60),
        };
        server.eject("connect failed".into(), &backoff);
        let left = server.ejected_for(Instant::now()).unwrap();
        assert!(left > Duration::from_secs(29));
        assert_eq!(
            server.ejected_for(Instant::now() + Duration::from_secs(61)),
            None
        );
        assert!(server
            .describe(Instant::now())
            .starts_with("connect failed; ejected for"));
        server.succeeded();
        assert_eq!(server.ejected_for(Instant::now()), None);
    }
}
