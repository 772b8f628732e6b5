//! Loom model of the generator's atomic step: every interleaving of concurrent reservations,
//! high-water extension and shutdown keeps IDs unique, per-lane ordered and below the mark; the
//! same for per-thread handles and a cached clock refreshed concurrently, and the cache never
//! publishes a reading older than one it already published.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p floe-core --test loom --release`.
#![cfg(loom)]

use std::sync::Arc as StdArc;
use std::time::Duration;

use floe_core::{
    Clock, GenError, Generator, GeneratorConfig, HighWater, Layout, ManualClock, MemoryHighWater,
    TickerClock,
};
use floe_testkit::assert_increasing;
use loom::sync::Arc;
use loom::thread;

const T0: u64 = 1_795_000_000_000;

const TINY: &str = "time:40/1ms@2020-01-01 seq:2";
/// 64 IDs per tick, so a handle's blocks grow past one ID (2, then 4).
const SMALL: &str = "time:40/1ms@2020-01-01 seq:6";

fn build(hw: &StdArc<MemoryHighWater>) -> Generator<ManualClock> {
    build_on(TINY, hw, ManualClock::new(T0))
}

fn build_on<C: Clock>(spec: &str, hw: &StdArc<MemoryHighWater>, clock: C) -> Generator<C> {
    let layout = Layout::parse(spec).unwrap();
    let identity = layout.identity(&[]).unwrap();
    let config = GeneratorConfig {
        lanes: 1,
        max_rollback: Duration::from_millis(10),
        max_drift: Duration::from_millis(2),
        high_water_window: Duration::from_millis(1),
        volume: None,
    };
    Generator::new(layout, identity, config, clock, Box::new(hw.clone())).unwrap()
}

/// IDs of one thread in order, all of them unique with the other thread's, and below the mark.
#[track_caller]
fn check(spec: &str, mine: &[u64], theirs: &[u64], hw: &MemoryHighWater) {
    assert_increasing(mine);
    assert_increasing(theirs);
    let mut all: Vec<u64> = mine.iter().chain(theirs).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len(),
        mine.len() + theirs.len(),
        "duplicate among {mine:?} {theirs:?}"
    );
    let layout = Layout::parse(spec).unwrap();
    if let Some(mark) = hw.load().unwrap() {
        for id in all {
            assert!(
                layout.decode(id).unwrap().unix_ms < mark,
                "ID {id} past mark {mark}"
            );
        }
    }
}

#[test]
fn the_cache_never_publishes_an_older_reading_than_it_did() {
    loom::model(|| {
        let source = StdArc::new(ManualClock::new(T0));
        let clock = TickerClock::driven(source.clone());
        let (c1, c2) = (clock.clone(), clock.clone());
        // A refresh (the ticker) racing a fresh read (a slow path), while time moves on.
        let a = thread::spawn(move || {
            source.advance(1);
            c1.tick();
        });
        let b = thread::spawn(move || {
            c2.now_us();
        });
        let first = clock.now_ms();
        let second = clock.now_ms();
        a.join().unwrap();
        b.join().unwrap();
        let last = clock.now_ms();
        assert!(first <= second && second <= last, "{first} {second} {last}");
        assert_eq!(last, T0 + 1, "the last refresh shows the last reading");
    });
}

#[test]
fn handles_on_one_lane_with_a_cache_refreshed_meanwhile_never_share_an_id() {
    loom::model(|| {
        let hw = StdArc::new(MemoryHighWater::new());
        let source = StdArc::new(ManualClock::new(T0));
        let clock = TickerClock::driven(source.clone());
        let g = Arc::new(build_on(SMALL, &hw, clock.clone()));
        let g2 = g.clone();
        let t = thread::spawn(move || {
            let mut h = g2.handle();
            (0..3)
                .map(|_| h.try_next_id().unwrap())
                .collect::<Vec<u64>>()
        });
        let mut h = g.handle();
        let mut mine = vec![h.try_next_id().unwrap()];
        // The ticker fires between this thread's IDs.
        source.advance(1);
        clock.tick();
        mine.push(h.try_next_id().unwrap());
        let theirs = t.join().unwrap();
        check(SMALL, &mine, &theirs, &hw);
    });
}

#[test]
fn shutdown_racing_a_handle_never_leaves_an_id_above_the_mark() {
    loom::model(|| {
        let hw = StdArc::new(MemoryHighWater::new());
        let clock = TickerClock::driven(ManualClock::new(T0));
        let g = Arc::new(build_on(SMALL, &hw, clock));
        let g2 = g.clone();
        let t = thread::spawn(move || g2.shutdown().unwrap());
        let mut h = g.handle();
        let mut got = Vec::new();
        for _ in 0..3 {
            match h.try_next_id() {
                Ok(id) => got.push(id),
                Err(GenError::Closed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        t.join().unwrap();
        // Shut down now: the block in hand is not handed out any more.
        assert!(matches!(h.try_next_id(), Err(GenError::Closed)));
        if !got.is_empty() {
            assert!(
                hw.load().unwrap().is_some(),
                "a mark was written before issuing"
            );
        }
        check(SMALL, &got, &[], &hw);
    });
}

#[test]
fn concurrent_reservations_are_disjoint_and_ordered() {
    loom::model(|| {
        let hw = StdArc::new(MemoryHighWater::new());
        let g = Arc::new(build(&hw));
        let g2 = g.clone();
        let t = thread::spawn(move || g2.try_reserve(0, 3).unwrap().iter().collect::<Vec<u64>>());
        let mut mine: Vec<u64> = g.try_reserve(0, 1).unwrap().iter().collect();
        mine.extend(g.try_reserve(0, 2).unwrap().iter());
        let theirs = t.join().unwrap();
        check(TINY, &mine, &theirs, &hw);
        assert_eq!(mine.len() + theirs.len(), 6);
        assert!(
            hw.load().unwrap().is_some(),
            "every issued tick lies below a persisted mark"
        );
    });
}

#[test]
fn shutdown_racing_a_reservation_never_leaves_an_id_above_the_mark() {
    loom::model(|| {
        let hw = StdArc::new(MemoryHighWater::new());
        let g = Arc::new(build(&hw));
        let g2 = g.clone();
        let t = thread::spawn(move || match g2.try_reserve(0, 5) {
            Ok(r) => Some(r.last().unwrap()),
            Err(GenError::Closed) => None,
            Err(e) => panic!("{e}"),
        });
        g.shutdown().unwrap();
        let issued = t.join().unwrap();
        assert!(matches!(g.try_reserve(0, 1), Err(GenError::Closed)));
        if let Some(last) = issued {
            let layout = Layout::parse(TINY).unwrap();
            let mark = hw
                .load()
                .unwrap()
                .expect("a mark was written before issuing");
            assert!(
                layout.decode(last).unwrap().unix_ms < mark,
                "ID {last} at or after mark {mark}"
            );
        }
    });
}

#[test]
fn segment_takers_on_the_lock_free_path_get_disjoint_ids() {
    use floe_core::{Segment, SegmentBuffer, SegmentConfig};
    loom::model(|| {
        let b = Arc::new(SegmentBuffer::new(4, SegmentConfig::default()).unwrap());
        b.plan_refill(1, 0).unwrap();
        b.install(Segment { start: 10, end: 14 }).unwrap();
        let b2 = b.clone();
        let t = thread::spawn(move || b2.try_take(2).unwrap().iter().collect::<Vec<u64>>());
        let mine: Vec<u64> = b.try_take(2).unwrap().iter().collect();
        let mut all = t.join().unwrap();
        all.extend(mine);
        all.sort_unstable();
        assert_eq!(all, [10, 11, 12, 13]);
    });
}

#[test]
fn a_segment_taker_racing_an_install_never_duplicates() {
    use floe_core::{BufferError, Segment, SegmentBuffer, SegmentConfig};
    loom::model(|| {
        let b = Arc::new(SegmentBuffer::new(2, SegmentConfig::default()).unwrap());
        b.plan_refill(1, 0).unwrap();
        b.install(Segment { start: 10, end: 12 }).unwrap();
        let b2 = b.clone();
        // Takes across the end of the first segment, into the second once it is installed.
        let t = thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..3 {
                match b2.try_take(1) {
                    Ok(t) => got.extend(t.iter()),
                    Err(BufferError::Short { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            got
        });
        // A non-adjacent next segment: the taker must switch mappings, never mix them.
        if b.plan_refill(3, 0).is_some() {
            b.install(Segment { start: 20, end: 22 }).unwrap();
        }
        b.advance();
        let got = t.join().unwrap();
        assert_increasing(&got);
        assert!(
            got.iter().all(|id| [10, 11, 20, 21].contains(id)),
            "{got:?}"
        );
        let rest: Vec<u64> = match b.try_take(1) {
            Ok(t) => t.iter().collect(),
            Err(_) => Vec::new(),
        };
        assert!(
            rest.iter().all(|id| !got.contains(id)),
            "{got:?} then {rest:?}"
        );
    });
}
