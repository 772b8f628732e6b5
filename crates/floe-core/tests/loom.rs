//! Loom model of the generator's atomic step: every interleaving of concurrent reservations,
//! high-water extension and shutdown keeps IDs unique, per-lane ordered and below the mark.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p floe-core --test loom --release`.
#![cfg(loom)]

use std::sync::Arc as StdArc;
use std::time::Duration;

use floe_core::{
    GenError, Generator, GeneratorConfig, HighWater, Layout, ManualClock, MemoryHighWater,
};
use floe_testkit::assert_increasing;
use loom::sync::Arc;
use loom::thread;

const T0: u64 = 1_795_000_000_000;

fn build(hw: &StdArc<MemoryHighWater>) -> Generator<ManualClock> {
    let layout = Layout::parse("time:40/1ms@2020-01-01 seq:2").unwrap();
    let identity = layout.identity(&[]).unwrap();
    let config = GeneratorConfig {
        lanes: 1,
        max_rollback: Duration::from_millis(10),
        max_drift: Duration::from_millis(2),
        high_water_window: Duration::from_millis(1),
        volume: None,
    };
    Generator::new(
        layout,
        identity,
        config,
        ManualClock::new(T0),
        Box::new(hw.clone()),
    )
    .unwrap()
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
        assert_increasing(&mine);
        assert_increasing(&theirs);
        let mut all: Vec<u64> = mine.iter().chain(&theirs).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 6, "duplicate among {mine:?} {theirs:?}");
        // Every issued tick lies below the persisted mark.
        let layout = Layout::parse("time:40/1ms@2020-01-01 seq:2").unwrap();
        let mark = hw.load().unwrap().unwrap();
        for id in all {
            assert!(layout.decode(id).unwrap().unix_ms < mark);
        }
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
            let layout = Layout::parse("time:40/1ms@2020-01-01 seq:2").unwrap();
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
