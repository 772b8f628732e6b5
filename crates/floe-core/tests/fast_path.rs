//! The fast path keeps every invariant of docs/generator.md: the cached clock
//! ([`TickerClock`]) and the per-thread [`LaneHandle`], driven by a manual clock behind the cache
//! so a test decides when the cache is refreshed.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use floe_core::{
    Clock, GenError, Generator, GeneratorConfig, HighWater, Layout, ManualClock, MemoryHighWater,
    SystemClock, TickerClock,
};
use floe_testkit::assert_increasing;
use proptest::prelude::*;
use support::{build, ms, tiny, tiny_config, T0};

/// A manual source behind a cache that only the test (or the generator's fresh reads) refresh.
fn cached(start_ms: u64) -> (Arc<ManualClock>, TickerClock) {
    let source = Arc::new(ManualClock::new(start_ms));
    (source.clone(), TickerClock::driven(source))
}

fn unix_ms(layout: &Layout, id: u64) -> u64 {
    layout.decode(id).unwrap().unix_ms
}

#[test]
fn a_stalled_ticker_never_makes_a_caller_wait_once_the_clock_has_moved() {
    let (source, clock) = cached(T0);
    let hw = Arc::new(MemoryHighWater::new());
    let g = build(tiny(), tiny_config(), clock.clone(), &hw);
    // This tick and the two that max_drift lets it borrow: 12 IDs, then the drift limit.
    for _ in 0..12 {
        g.try_reserve(0, 1).unwrap();
    }
    // The wall clock moves on but the cache is not refreshed (a stalled ticker).
    source.advance(5);
    assert_eq!(clock.now_ms(), T0, "the cache is stale");
    let id = g
        .try_reserve(0, 1)
        .expect("the fresh reading shows time has passed");
    assert_eq!(unix_ms(&tiny(), id.first().unwrap()), T0 + 5);
    assert_eq!(clock.now_ms(), T0 + 5, "the fresh reading was published");
}

/// A clock whose cached reading lags its fresh one by a settable amount: a ticker late by that
/// much while another thread has already seen the fresh time.
#[derive(Debug, Default)]
struct Lagging {
    /// The true time, Unix ms.
    now: AtomicU64,
    /// How far `now_ms` lags behind it.
    lag: AtomicU64,
}

impl Clock for Lagging {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst) - self.lag.load(Ordering::SeqCst)
    }
    fn now_us(&self) -> u64 {
        self.now.load(Ordering::SeqCst) * 1000
    }
}

#[test]
fn a_lagging_cache_is_never_reported_as_a_rollback() {
    let clock = Arc::new(Lagging::default());
    clock.now.store(T0, Ordering::SeqCst);
    let hw = Arc::new(MemoryHighWater::new());
    let g = build(tiny(), tiny_config(), clock.clone(), &hw);
    let first = g.try_reserve(0, 1).unwrap().first().unwrap();
    // The generator has seen T0. A cache 30 ms behind (max_rollback is 10 ms) is a late
    // ticker, not a rollback: the fresh reading says the clock is fine.
    clock.now.store(T0 + 1, Ordering::SeqCst);
    clock.lag.store(30, Ordering::SeqCst);
    let second = g.try_reserve(0, 1).unwrap().first().unwrap();
    assert!(second > first);
    assert!(!g.clock_state().rollback_exceeded);
    assert_eq!(g.clock_state().behind_ms, 0);
}

#[test]
fn a_rollback_seen_through_the_cache_is_served_or_refused_as_on_the_wall_clock() {
    let (source, clock) = cached(T0);
    let hw = Arc::new(MemoryHighWater::new());
    let g = build(tiny(), tiny_config(), clock.clone(), &hw);
    let mut h = g.handle();
    let mut ids = vec![h.next_id().unwrap(), g.next_id(0).unwrap()];
    // Back 5 ms (within max_rollback): served from logical time, still increasing.
    source.rewind(5);
    clock.tick();
    ids.push(h.try_next_id().unwrap());
    ids.push(g.try_reserve(0, 1).unwrap().first().unwrap());
    assert_increasing(&ids);
    // Back 50 ms: refused by both APIs, with the typed error.
    source.rewind(45);
    clock.tick();
    assert!(matches!(
        h.try_next_id(),
        Err(GenError::ClockRollback { .. })
    ));
    assert!(matches!(
        g.try_reserve(0, 1),
        Err(GenError::ClockRollback { .. })
    ));
    assert!(g.clock_state().rollback_exceeded);
    // The clock comes back: both resume by themselves, above everything issued.
    source.advance(60);
    clock.tick();
    ids.push(h.try_next_id().unwrap());
    ids.push(g.try_reserve(0, 1).unwrap().first().unwrap());
    assert_increasing(&ids);
}

#[test]
fn a_handle_uses_every_id_of_the_tick_before_it_waits() {
    let (_, clock) = cached(T0);
    let hw = Arc::new(MemoryHighWater::new());
    let config = GeneratorConfig {
        max_drift: Duration::ZERO,
        ..tiny_config()
    };
    let g = build(tiny(), config, clock, &hw);
    let mut h = g.handle();
    // Blocks of 2 then 4 would overrun the 4 IDs of the tick; the second is cut to fit.
    let ids: Vec<u64> = (0..4).map(|_| h.try_next_id().unwrap()).collect();
    assert_increasing(&ids);
    assert!(ids.iter().all(|id| unix_ms(&tiny(), *id) == T0));
    match h.try_next_id() {
        Err(GenError::WouldWait { wait }) => assert_eq!(wait, ms(1)),
        other => panic!("expected WouldWait, got {other:?}"),
    }
}

#[test]
fn a_handle_stops_at_shutdown_and_what_it_issued_lies_below_the_mark() {
    let (_, clock) = cached(T0);
    let hw = Arc::new(MemoryHighWater::new());
    let layout = Layout::parse("time:40/1ms@2020-01-01 seq:12").unwrap();
    let g = build(layout.clone(), tiny_config(), clock, &hw);
    let mut h = g.handle();
    let ids: Vec<u64> = (0..20).map(|_| h.next_id().unwrap()).collect();
    g.shutdown().unwrap();
    assert!(matches!(h.try_next_id(), Err(GenError::Closed)));
    assert!(matches!(h.next_id(), Err(GenError::Closed)));
    let mark = hw.load().unwrap().unwrap();
    for id in ids {
        assert!(
            unix_ms(&layout, id) < mark,
            "ID {id} at or after mark {mark}"
        );
    }
}

/// One step of the model below.
#[derive(Debug, Clone)]
enum Step {
    /// Move the wall clock forward by this many ms, and refresh the cache or not.
    Advance(u64, bool),
    /// Move it back by this many ms (a step back the cache publishes).
    Rewind(u64),
    /// Take this many IDs from handle 0 or 1.
    Take(usize, u8),
    /// Take a batch through the generator (up to 2.5 ticks of IDs: it may span ticks).
    Batch(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..4, any::<bool>()).prop_map(|(d, t)| Step::Advance(d, t)),
        (1u64..15).prop_map(Step::Rewind),
        (0usize..2, 1u8..40).prop_map(|(h, n)| Step::Take(h, n)),
        (1u8..80).prop_map(Step::Batch),
    ]
}

proptest! {
    /// Whatever the clock does (forward, back, a cache refreshed or stale), two handles and the
    /// batch API on one lane never issue an ID twice; each handle's IDs increase; every ID lies
    /// below the persisted mark; and a handle's ID is at most one tick behind the cached clock
    /// it was issued at.
    #[test]
    fn handles_and_batches_keep_the_invariants(steps in prop::collection::vec(step(), 1..60)) {
        let layout = Layout::parse("time:40/1ms@2020-01-01 seq:5").unwrap();
        let (source, clock) = cached(T0);
        let hw = Arc::new(MemoryHighWater::new());
        let g = build(layout.clone(), tiny_config(), clock.clone(), &hw);
        let mut handles = [g.handle(), g.handle()];
        let mut per_handle: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        let mut all = HashSet::new();
        let mut issued = Vec::new();
        for s in steps {
            match s {
                Step::Advance(d, refresh) => {
                    source.advance(d);
                    if refresh {
                        clock.tick();
                    }
                }
                Step::Rewind(d) => {
                    source.rewind(d);
                    clock.tick();
                }
                Step::Take(i, n) => {
                    for _ in 0..n {
                        let at = clock.now_ms();
                        match handles[i].try_next_id() {
                            Ok(id) => {
                                // The block's tick or the next one, against the cached clock
                                // before the call (a fresh read can only move it forward).
                                prop_assert!(unix_ms(&layout, id) + 1 >= at,
                                    "ID at {} issued at {}", unix_ms(&layout, id), at);
                                per_handle[i].push(id);
                                issued.push(id);
                            }
                            Err(GenError::WouldWait { .. } | GenError::ClockRollback { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                Step::Batch(n) => match g.try_reserve(0, u64::from(n)) {
                    Ok(r) => {
                        // Composed by runs (fill, extend_into) or one by one (iter): the same.
                        let one_by_one: Vec<u64> = r.iter().collect();
                        let mut filled = vec![0; r.len() as usize];
                        r.fill(&mut filled);
                        let mut extended = vec![7];
                        r.extend_into(&mut extended);
                        prop_assert_eq!(&filled, &one_by_one);
                        prop_assert_eq!(&extended[1..], &one_by_one[..]);
                        issued.extend(one_by_one);
                    }
                    Err(GenError::WouldWait { .. } | GenError::ClockRollback { .. }) => {}
                    Err(e) => panic!("{e}"),
                },
            }
        }
        for ids in &per_handle {
            for w in ids.windows(2) {
                prop_assert!(w[0] < w[1], "a handle went back: {} then {}", w[0], w[1]);
            }
        }
        let mark = hw.load().unwrap().unwrap_or(0);
        for id in issued {
            prop_assert!(all.insert(id), "duplicate {}", id);
            prop_assert!(unix_ms(&layout, id) < mark, "ID {} past the mark {}", id, mark);
        }
    }
}

#[test]
fn handles_on_many_threads_never_share_an_id() {
    // One lane for everyone (no lane field): handles interleave by blocks on one lane word,
    // beside a thread on the plain single-ID API.
    let layout = Layout::parse("time:41/1ms@2020-01-01 worker:1 seq:12").unwrap();
    let hw = Arc::new(MemoryHighWater::new());
    let clock = TickerClock::for_tick(SystemClock, ms(1)).unwrap();
    let g: Generator<TickerClock> = build(layout.clone(), GeneratorConfig::default(), clock, &hw);
    let per_thread = 300_000;
    let lists: Vec<Vec<u64>> = std::thread::scope(|s| {
        let mut threads: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut h = g.handle();
                    (0..per_thread).map(|_| h.next_id().unwrap()).collect()
                })
            })
            .collect();
        threads.push(s.spawn(|| (0..per_thread).map(|_| g.next_id(0).unwrap()).collect()));
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mark = hw.load().unwrap().unwrap();
    let mut all = HashSet::new();
    for ids in lists {
        assert_increasing(&ids);
        for id in ids {
            assert!(unix_ms(&layout, id) < mark, "ID {id} past the mark {mark}");
            assert!(all.insert(id), "duplicate {id}");
        }
    }
    assert_eq!(all.len(), 4 * per_thread);
}
