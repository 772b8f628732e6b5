//! [`TickerClock`]: a wall clock whose reading costs one atomic load, because a ticker thread
//! reads the real clock once per period and publishes the reading.
//!
//! Reading the system clock costs 30–50 ns on a virtual machine, several times the rest of
//! issuing an ID; ferroid and others avoid it with a ticker thread. This one differs in what
//! it publishes: the *wall* reading of the clock it wraps, backwards steps included, so the
//! generator's rollback rules (serve from logical time up to `max_rollback`, refuse beyond)
//! keep working on it unchanged. Monotonicity is the generator's job (its lane words), not the
//! clock's.
//!
//! The bounds (docs/generator.md, "The ticker clock"):
//! - the published reading lags the source by at most one period plus the ticker's wake-up
//!   delay (the thread wakes just after each period boundary of the source clock);
//! - every reading the generator acts on to *wait or refuse* is a fresh one ([`Clock::now_us`],
//!   which also republishes), so a late or stalled ticker never makes a caller wait or fail;
//! - a stalled ticker only freezes the time field: IDs stay unique and ordered (they come from
//!   the lane words), logical time runs on by borrowing, and the first caller to reach the drift
//!   limit reads the real clock and republishes it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::sync::{AtomicU64, CacheLine, Mutex, Ordering};

/// The longest period [`TickerClock::for_tick`] picks, whatever the tick: rollbacks and clock
/// steps are seen within this time even for layouts with one-second ticks.
pub const MAX_TICKER_PERIOD: Duration = Duration::from_millis(10);

/// A [`Clock`] that caches another clock's reading, refreshed by a ticker thread.
///
/// `now_ms` is one relaxed atomic load. Cloning shares the cache and the ticker; the ticker
/// thread ends when the last clone is dropped. Build it with [`TickerClock::new`] (a thread of
/// its own) or [`TickerClock::driven`] (the owner calls [`TickerClock::tick`], e.g. from a timer
/// it already has, or a test).
#[derive(Clone)]
pub struct TickerClock {
    /// What every clone shares; the ticker thread holds only a weak reference.
    shared: Arc<Shared>,
}

/// The cache and its source.
struct Shared {
    /// The last reading of `source`, Unix ms; alone on its cache line because every ID reads it
    /// and the ticker writes it once per period.
    now_ms: CacheLine<AtomicU64>,
    /// The clock being cached.
    source: Box<dyn Clock>,
    /// Serialises refreshes: a reading taken earlier is never published after a later one,
    /// so the cache moves backwards only when the source did.
    writer: Mutex<()>,
    /// Refreshes so far (ticker and slow paths), so tests and benches can see the ticker work.
    refreshes: AtomicU64,
    /// The ticker thread, woken when the last clone is dropped so it exits at once.
    #[cfg(not(loom))]
    ticker: std::sync::OnceLock<std::thread::Thread>,
}

impl Shared {
    /// Reads the source and publishes the reading; returns it in microseconds.
    fn refresh(&self) -> u64 {
        let _order = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let us = self.source.now_us();
        self.now_ms.0.store(us / 1000, Ordering::Release);
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        us
    }
}

#[cfg(not(loom))]
impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.get() {
            t.unpark();
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TickerClock")
            .field("now_ms", &self.now_ms.0.load(Ordering::Relaxed))
            .field("source", &self.source)
            .field("refreshes", &self.refreshes.load(Ordering::Relaxed))
            .finish()
    }
}

impl fmt::Debug for TickerClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl TickerClock {
    /// A cache of `source` that only [`tick`](Self::tick) (and the slow paths) refresh: no
    /// thread. For owners that already run a periodic timer, and for tests.
    pub fn driven(source: impl Clock + 'static) -> TickerClock {
        let shared = Arc::new(Shared {
            now_ms: CacheLine(AtomicU64::new(0)),
            source: Box::new(source),
            writer: Mutex::new(()),
            refreshes: AtomicU64::new(0),
            #[cfg(not(loom))]
            ticker: std::sync::OnceLock::new(),
        });
        shared.refresh();
        TickerClock { shared }
    }

    /// A cache of `source` refreshed every `period` (at least 1 ms, the resolution of
    /// `now_ms`) by a thread named `floe-ticker`, which wakes just after each period boundary
    /// of the source clock and ends when the last clone is dropped.
    ///
    /// Costs one wake-up per period (1–3 % of a core at 1 ms on the development
    /// machine, docs/benchmarks.md). Fails only if the thread cannot be spawned.
    #[cfg(not(loom))]
    pub fn new(source: impl Clock + 'static, period: Duration) -> std::io::Result<TickerClock> {
        Self::spawn(source, period).map(|(clock, _)| clock)
    }

    /// A ticker for a layout whose tick lasts `tick`: period `tick`, at most
    /// [`MAX_TICKER_PERIOD`], so the time field is at most one tick stale (plus the ticker's
    /// wake-up delay) and rollbacks are seen within 10 ms.
    #[cfg(not(loom))]
    pub fn for_tick(source: impl Clock + 'static, tick: Duration) -> std::io::Result<TickerClock> {
        Self::new(source, tick.min(MAX_TICKER_PERIOD))
    }

    /// Builds the clock and its thread; the join handle lets tests see the thread end.
    #[cfg(not(loom))]
    fn spawn(
        source: impl Clock + 'static,
        period: Duration,
    ) -> std::io::Result<(TickerClock, std::thread::JoinHandle<()>)> {
        let clock = Self::driven(source);
        let period_us = (period.as_micros() as u64).max(1000);
        let weak = Arc::downgrade(&clock.shared);
        let handle = std::thread::Builder::new()
            .name("floe-ticker".into())
            .spawn(move || run_ticker(weak, period_us))?;
        // Set before anyone can drop the last clone (we hold one), so Drop always finds it.
        let _ = clock.shared.ticker.set(handle.thread().clone());
        Ok((clock, handle))
    }

    /// Reads the source now and publishes the reading, as the ticker does each period.
    pub fn tick(&self) {
        self.shared.refresh();
    }

    /// How many times the reading was refreshed (by the ticker, `tick` and slow paths).
    pub fn refreshes(&self) -> u64 {
        self.shared.refreshes.load(Ordering::Relaxed)
    }

    /// The clock being cached.
    pub fn source(&self) -> &dyn Clock {
        &*self.shared.source
    }
}

/// The ticker thread: publish, then park until just after the next period boundary of the
/// source clock (so the cached reading changes right after the source's); exit once every
/// clock is gone.
#[cfg(not(loom))]
fn run_ticker(weak: std::sync::Weak<Shared>, period_us: u64) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let us = shared.refresh();
        drop(shared);
        std::thread::park_timeout(Duration::from_micros(period_us - us % period_us));
    }
}

impl Clock for TickerClock {
    #[inline]
    fn now_ms(&self) -> u64 {
        self.shared.now_ms.0.load(Ordering::Relaxed)
    }

    /// A fresh reading of the source, published on the way so every later `now_ms` sees it:
    /// a stalled ticker is healed by the first caller on a slow path.
    fn now_us(&self) -> u64 {
        self.shared.refresh()
    }

    /// Sleeps on the source, then refreshes, so a caller that waited for the next tick sees it
    /// even if the ticker has not woken yet.
    fn sleep(&self, d: Duration) {
        self.shared.source.sleep(d);
        self.shared.refresh();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, SystemClock};
    use std::time::Instant;

    #[test]
    fn a_driven_clock_shows_the_source_only_after_a_refresh() {
        let source = Arc::new(ManualClock::new(5_000));
        let clock = TickerClock::driven(source.clone());
        assert_eq!(clock.now_ms(), 5_000);
        source.advance(7);
        assert_eq!(clock.now_ms(), 5_000, "cached until refreshed");
        clock.tick();
        assert_eq!(clock.now_ms(), 5_007);
        // Backwards steps are published as they are: the generator decides what they mean.
        source.rewind(3);
        assert_eq!(clock.now_us(), 5_004_000, "a fresh reading");
        assert_eq!(clock.now_ms(), 5_004, "and it was published");
    }

    #[test]
    fn sleeping_refreshes_the_cache() {
        let source = Arc::new(ManualClock::auto_advancing(1_000));
        let clock = TickerClock::driven(source.clone());
        clock.sleep(Duration::from_millis(4));
        assert_eq!(clock.now_ms(), 1_004);
    }

    #[test]
    fn the_ticker_follows_the_system_clock_and_ends_with_the_last_clone() {
        let (clock, thread) = TickerClock::spawn(SystemClock, Duration::from_millis(1)).unwrap();
        let first = clock.refreshes();
        let deadline = Instant::now() + Duration::from_secs(10);
        while clock.refreshes() < first + 5 {
            assert!(Instant::now() < deadline, "the ticker never refreshed");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Never ahead of its source (a cache only holds readings already taken).
        let cached = clock.now_ms();
        assert!(
            cached <= SystemClock.now_ms(),
            "cache {cached} ahead of the clock"
        );
        let copy = clock.clone();
        drop(clock);
        assert!(!thread.is_finished(), "a clone still uses the ticker");
        drop(copy);
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "the ticker outlived its clocks");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
