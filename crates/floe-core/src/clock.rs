//! Clocks: where the generator reads the time, and how it waits.
//!
//! The generator never calls the OS directly; it asks a [`Clock`]. Production uses
//! [`SystemClock`] or [`MachineClock`], or either behind a [`TickerClock`](crate::TickerClock)
//! that caches the reading so the issuing path pays one atomic load instead of a system call;
//! tests use [`ManualClock`] to step time by hand.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::sync::{AtomicBool, AtomicU64, Ordering};

/// A source of wall-clock time in Unix milliseconds.
pub trait Clock: Send + Sync + Debug {
    /// The current time in Unix milliseconds; the generator reads it for every reservation.
    fn now_ms(&self) -> u64;

    /// A fresh reading in Unix microseconds. The generator asks for it only on its slow paths:
    /// before it tells a caller to wait (and for how long, to the microsecond) or refuses on a
    /// rollback, so a clock that caches `now_ms` never makes a caller wait or fail on a stale
    /// reading. The default is `now_ms` in microseconds.
    fn now_us(&self) -> u64 {
        self.now_ms().saturating_mul(1000)
    }

    /// Blocks the calling thread for `d`; only the blocking generator API calls it.
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
    fn now_us(&self) -> u64 {
        (**self).now_us()
    }
    fn sleep(&self, d: Duration) {
        (**self).sleep(d)
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
    fn now_us(&self) -> u64 {
        (**self).now_us()
    }
    fn sleep(&self, d: Duration) {
        (**self).sleep(d)
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
    fn now_us(&self) -> u64 {
        (**self).now_us()
    }
    fn sleep(&self, d: Duration) {
        (**self).sleep(d)
    }
}

/// The operating system's wall clock: follows NTP steps in both directions.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
    fn now_us(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    }
}

/// MASA's "machine clock": wall time read once at start, then advanced by the monotonic clock,
/// so wall-clock steps while running change nothing.
#[derive(Debug, Clone)]
pub struct MachineClock {
    /// Wall time at construction, in Unix ms.
    start_ms: u64,
    /// Monotonic instant of construction.
    start: Instant,
}

impl MachineClock {
    /// Anchors the clock at the given wall clock's current reading.
    pub fn new(wall: &dyn Clock) -> MachineClock {
        MachineClock {
            start_ms: wall.now_ms(),
            start: Instant::now(),
        }
    }

    /// Anchors at an explicit wall time and monotonic instant (for tests).
    pub fn anchored(start_ms: u64, start: Instant) -> MachineClock {
        MachineClock { start_ms, start }
    }
}

impl Clock for MachineClock {
    fn now_ms(&self) -> u64 {
        self.start_ms + self.start.elapsed().as_millis() as u64
    }
    fn now_us(&self) -> u64 {
        self.start_ms * 1000 + self.start.elapsed().as_micros() as u64
    }
}

/// A wall clock shifted by a fixed offset: lets a test (or an operator rehearsing a rollback)
/// run a node "in the past" without faketime.
#[derive(Debug, Clone)]
pub struct OffsetClock<C> {
    /// The clock being shifted.
    inner: C,
    /// Milliseconds added to every reading (negative: the past).
    offset_ms: i64,
}

impl<C: Clock> OffsetClock<C> {
    /// Wraps `inner`, adding `offset_ms` to every reading.
    pub fn new(inner: C, offset_ms: i64) -> Self {
        OffsetClock { inner, offset_ms }
    }
}

impl<C: Clock> Clock for OffsetClock<C> {
    fn now_ms(&self) -> u64 {
        self.inner.now_ms().saturating_add_signed(self.offset_ms)
    }
    fn now_us(&self) -> u64 {
        self.inner
            .now_us()
            .saturating_add_signed(self.offset_ms.saturating_mul(1000))
    }
    fn sleep(&self, d: Duration) {
        self.inner.sleep(d)
    }
}

/// A clock that moves only when told to: the fake clock of the tests.
///
/// With `auto_advance`, `sleep` moves the clock forward by the requested time instead of
/// blocking, so a single-threaded test can observe "the generator waited this long".
#[derive(Debug, Default)]
pub struct ManualClock {
    /// Current time in Unix ms.
    now: AtomicU64,
    /// Whether `sleep` advances time rather than blocking.
    auto_advance: AtomicBool,
    /// Total time requested through `sleep`, in ms, so tests can assert that waiting happened.
    slept_ms: AtomicU64,
}

impl ManualClock {
    /// A clock reading `now_ms` that blocks for real in `sleep`.
    pub fn new(now_ms: u64) -> ManualClock {
        let c = ManualClock::default();
        c.now.store(now_ms, Ordering::SeqCst);
        c
    }

    /// A clock reading `now_ms` whose `sleep` advances it instead of blocking.
    pub fn auto_advancing(now_ms: u64) -> ManualClock {
        let c = ManualClock::new(now_ms);
        c.auto_advance.store(true, Ordering::SeqCst);
        c
    }

    /// Sets the time (it may go backwards, like a stepped wall clock).
    pub fn set(&self, ms: u64) {
        self.now.store(ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    /// Moves the time backward by `ms`.
    pub fn rewind(&self, ms: u64) {
        self.now.fetch_sub(ms, Ordering::SeqCst);
    }

    /// Total ms requested through `sleep` so far.
    pub fn slept_ms(&self) -> u64 {
        self.slept_ms.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }

    fn sleep(&self, d: Duration) {
        let ms = (d.as_millis() as u64).max(1);
        self.slept_ms.fetch_add(ms, Ordering::SeqCst);
        if self.auto_advance.load(Ordering::SeqCst) {
            self.advance(ms);
        } else {
            #[cfg(not(loom))]
            std::thread::sleep(d);
            #[cfg(loom)]
            loom::thread::yield_now();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn machine_clock_ignores_wall_steps() {
        let wall = ManualClock::new(1_000_000);
        let mc = MachineClock::new(&wall);
        wall.set(10); // a large step back on the wall clock
        let read = mc.now_ms();
        assert!((1_000_000..1_000_000 + 5_000).contains(&read), "{read}");
    }

    #[test]
    fn offset_clock_shifts_both_ways() {
        let wall = ManualClock::new(10_000);
        assert_eq!(
            OffsetClock::new(&wall as &dyn Clock, -5_000).now_ms(),
            5_000
        );
        assert_eq!(
            OffsetClock::new(&wall as &dyn Clock, 5_000).now_ms(),
            15_000
        );
    }
}
