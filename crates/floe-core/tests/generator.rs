//! The generator's invariants (DESIGN.md, "The snowflake generator"), driven by a fake clock.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use floe_core::{
    Clock, GenError, Generator, GeneratorConfig, Layout, MachineClock, ManualClock,
    MemoryHighWater, SystemClock, VolumeHiding,
};
use floe_testkit::assert_increasing;

mod support;

use support::{build, ms, tiny, tiny_config, T0};

#[test]
fn exhaustion_borrows_ahead_then_waits() {
    let clock = Arc::new(ManualClock::new(T0));
    let hw = Arc::new(MemoryHighWater::new());
    let g = build(tiny(), tiny_config(), clock.clone(), &hw);
    let layout = tiny();
    let mut ids = Vec::new();
    // 4 IDs per tick; max_drift 2 ticks: this tick and two borrowed ones.
    for _ in 0..12 {
        ids.push(g.try_reserve(0, 1).unwrap().first().unwrap());
    }
    assert_increasing(&ids);
    let last = layout.decode(*ids.last().unwrap()).unwrap();
    assert_eq!(last.unix_ms, T0 + 2, "borrowed two ticks ahead");
    match g.try_reserve(0, 1) {
        Err(GenError::WouldWait { wait }) => assert_eq!(wait, ms(1)),
        other => panic!("expected WouldWait, got {other:?}"),
    }
    // The blocking call waits on the clock, then continues after the borrowed ticks.
    let auto = Arc::new(ManualClock::auto_advancing(T0));
    let hw2 = Arc::new(MemoryHighWater::new());
    let g2 = build(tiny(), tiny_config(), auto.clone(), &hw2);
    let mut ids2 = Vec::new();
    for _ in 0..40 {
        ids2.push(g2.next_id(0).unwrap());
    }
    assert_increasing(&ids2);
    assert!(auto.slept_ms() >= 7, "waited {} ms", auto.slept_ms());
}

#[test]
fn rollback_within_tolerance_stays_monotonic_without_blocking() {
    let clock = Arc::new(ManualClock::new(T0));
    let hw = Arc::new(MemoryHighWater::new());
    let g = build(tiny(), tiny_config(), clock.clone(), &hw);
    let before = g.try_reserve(0, 1).unwrap().first().unwrap();
    clock.rewind(8); // within max_rollback = 10 ms
    let mut after = vec![before];
    for _ in 0..3 {
        after.push(g.try_reserve(0, 1).unwrap().first().unwrap());
    }
    assert_increasing(&after);
    assert_eq!(g.clock_state().behind_ms, 8);
    assert!(!g.clock_state().rollback_exceeded);
}

#[test]
fn rollback_beyond_tolerance_errors_then_recovers() {
    let clock = Arc::new(ManualClock::new(T0));
    let hw = Arc::new(MemoryHighWater::new());
    let g = build(tiny(), tiny_config(), clock.clone(), &hw);
    let before = g.try_reserve(0, 3).unwrap().last().unwrap();
    clock.rewind(50);
    match g.try_reserve(0, 1) {
        Err(
            e @ GenError::ClockRollback {
                behind_ms: 50,
                limit_ms: 10,
            },
        ) => {
            assert!(e.to_string().contains("max_rollback is 10 ms"), "{e}")
        }
        other => panic!("expected ClockRollback, got {other:?}"),
    }
    assert!(g.clock_state().rollback_exceeded);
    clock.advance(45); // now 5 ms behind: inside the tolerance again
    let after = g.try_reserve(0, 1).unwrap().first().unwrap();
    assert!(after > before);
    assert!(!g.clock_state().rollback_exceeded);
}

#[test]
fn restart_from_high_water_never_reissues() {
    let clock = Arc::new(ManualClock::new(T0));
    let hw = Arc::new(MemoryHighWater::new());
    let mut issued_ids = Vec::new();
    // Crash (drop without shutdown) and restart at the same instant, five times: each restart
    // starts after everything issued and, since a mark ahead of the wall clock only reaches a
    // stride past what was issued, every restart serves at once (no crash-loop ratchet).
    let mut refusals = 0;
    for restart in 0..5 {
        let g = build(tiny(), tiny_config(), clock.clone(), &hw);
        let mut issued = 0;
        while issued < 6 {
            match g.try_reserve(0, 1) {
                Ok(r) => {
                    issued_ids.push(r.first().unwrap());
                    issued += 1;
                }
                Err(GenError::ClockRollback { .. }) if restart > 0 => {
                    refusals += 1;
                    clock.advance(1);
                }
                Err(e) => panic!("restart {restart}: {e}"),
            }
        }
        drop(g);
    }
    // Per-lane order holds across the restarts, so no ID was issued twice.
    assert_increasing(&issued_ids);
    assert_eq!(refusals, 0, "a crash loop must not lengthen its own outage");
    // A graceful shutdown lowers the mark to the last issued tick: no skipped window.
    clock.advance(20); // let the clock catch up with the crash loop's lead
    let g = build(tiny(), tiny_config(), clock.clone(), &hw);
    let before_stop = g.try_reserve(0, 1).unwrap().first().unwrap();
    g.shutdown().unwrap();
    assert!(matches!(g.try_reserve(0, 1), Err(GenError::Closed)));
    let g = build(tiny(), tiny_config(), clock.clone(), &hw);
    let next = g.try_reserve(0, 1).unwrap().first().unwrap();
    let l = tiny();
    assert_eq!(
        l.decode(next).unwrap().tick,
        l.decode(before_stop).unwrap().tick + 1
    );
}

#[test]
fn an_idle_generator_leaves_the_mark_where_it_found_it() {
    let clock = Arc::new(ManualClock::new(T0));
    let hw = Arc::new(MemoryHighWater::new());
    let g = build(tiny(), tiny_config(), clock.clone(), &hw);
    let last = g.try_reserve(0, 1).unwrap().first().unwrap();
    g.shutdown().unwrap();
    let mark = floe_core::HighWater::load(&*hw).unwrap();
    // Prepared ahead, then stopped without issuing: the mark returns to the previous one.
    let g = build(tiny(), tiny_config(), clock.clone(), &hw);
    g.prepare().unwrap();
    assert!(floe_core::HighWater::load(&*hw).unwrap() > mark);
    g.shutdown().unwrap();
    assert_eq!(floe_core::HighWater::load(&*hw).unwrap(), mark);
    let g = build(tiny(), tiny_config(), clock.clone(), &hw);
    assert!(g.try_reserve(0, 1).unwrap().first().unwrap() > last);
}

#[test]
fn restart_with_clock_in_the_past_refuses_then_serves_after_the_mark() {
    let clock = Arc::new(ManualClock::new(T0));
    let hw = Arc::new(MemoryHighWater::new());
    let g = build(tiny(), tiny_config(), clock.clone(), &hw);
    let last = g.reserve(0, 4).unwrap().last().unwrap();
    drop(g);
    clock.set(T0 - 5_000); // restarted with the clock 5 s in the past
    let g = build(tiny(), tiny_config(), clock.clone(), &hw);
    assert!(matches!(
        g.try_reserve(0, 1),
        Err(GenError::ClockRollback { .. })
    ));
    clock.set(T0);
    let next = g.try_reserve(0, 1).unwrap().first().unwrap();
    assert!(next > last);
}

#[test]
fn high_water_writes_are_amortised() {
    let clock = Arc::new(ManualClock::new(T0));
    let hw = Arc::new(MemoryHighWater::new());
    let mut config = tiny_config();
    config.max_rollback = ms(200);
    config.high_water_window = ms(100);
    let g = build(tiny(), config, clock.clone(), &hw);
    for _ in 0..1_000 {
        g.try_reserve(0, 1).unwrap();
        clock.advance(1);
    }
    // 1000 ticks with a 100-tick window: one write per window.
    assert!((9..=11).contains(&hw.writes()), "{} writes", hw.writes());
    g.prepare().unwrap();
    let state = g.clock_state();
    assert!(state.high_water_ms >= state.wall_ms + 2 + 50, "{state:?}");
}

#[test]
fn high_water_far_in_the_future_is_refused() {
    let hw = Arc::new(MemoryHighWater::new());
    floe_core::HighWater::store(&*hw, T0 + 2 * 86_400_000).unwrap();
    let layout = tiny();
    let e = Generator::new(
        layout.clone(),
        layout.identity(&[]).unwrap(),
        tiny_config(),
        ManualClock::new(T0),
        Box::new(hw),
    )
    .unwrap_err();
    assert!(e.to_string().contains("more than a day ahead"), "{e}");
}

#[test]
fn machine_clock_mode_ignores_wall_clock_steps() {
    let wall = ManualClock::new(T0);
    let g = build(
        Layout::parse("twitter").unwrap(),
        GeneratorConfig::default(),
        MachineClock::new(&wall),
        &Arc::new(MemoryHighWater::new()),
    );
    let a = g.next_id(0).unwrap();
    wall.set(T0 - 3_600_000); // an hour back: the machine clock does not follow
    let b = g.next_id(0).unwrap();
    wall.set(T0 + 3_600_000);
    let c = g.next_id(0).unwrap();
    assert!(a < b && b < c);
    let l = Layout::parse("twitter").unwrap();
    assert!(l.decode(c).unwrap().unix_ms - T0 < 5_000);
}

#[test]
fn genid_lanes_in_the_same_second_never_collide() {
    let clock = Arc::new(ManualClock::new(T0));
    let g = build(
        Layout::parse("genid").unwrap(),
        GeneratorConfig::default(),
        clock.clone(),
        &Arc::new(MemoryHighWater::new()),
    );
    assert_eq!(g.lanes(), 32);
    let (l0, l1) = (g.assign_lane(), g.assign_lane());
    assert_ne!(l0, l1);
    let a: Vec<u64> = g.try_reserve(l0, 1000).unwrap().iter().collect();
    let b: Vec<u64> = g.try_reserve(l1, 1000).unwrap().iter().collect();
    let all: HashSet<u64> = a.iter().chain(&b).copied().collect();
    assert_eq!(all.len(), 2000, "lanes collided");
    let layout = Layout::parse("genid").unwrap();
    assert_eq!(layout.decode(a[0]).unwrap().get("lane"), Some(l0 as u64));
    assert_eq!(layout.decode(b[0]).unwrap().get("lane"), Some(l1 as u64));
    assert_eq!(a[0] >> 32, b[0] >> 32, "same second");
}

#[test]
fn genid_lane_past_65536_in_one_second_stays_unique_and_increasing() {
    // GenID's 16-bit counter wrapped silently; Floe borrows the next second instead.
    let clock = Arc::new(ManualClock::auto_advancing(T0));
    let g = build(
        Layout::parse("genid").unwrap(),
        GeneratorConfig::default(),
        clock.clone(),
        &Arc::new(MemoryHighWater::new()),
    );
    let mut ids = Vec::new();
    for _ in 0..100 {
        g.reserve(0, 1000).unwrap().extend_into(&mut ids);
    }
    assert_increasing(&ids);
    assert_eq!(clock.now_ms(), T0, "one second borrowed, no wait");
    assert_eq!(ids.last().unwrap() >> 32, T0 / 1000 + 1);
    // With one lane the bucket bits join the counter: 2^21 IDs per second.
    let one_lane = GeneratorConfig {
        lanes: 1,
        ..GeneratorConfig::default()
    };
    let g = build(
        Layout::parse("genid").unwrap(),
        one_lane,
        clock.clone(),
        &Arc::new(MemoryHighWater::new()),
    );
    let r = g.reserve(0, 2_097_152).unwrap();
    assert_eq!(r.first().unwrap() >> 32, r.last().unwrap() >> 32);
    let ids: Vec<u64> = r.iter().collect();
    assert_increasing(&ids);
}

#[test]
fn batches_are_contiguous_and_bounded() {
    let clock = Arc::new(ManualClock::new(T0));
    let g = build(
        Layout::parse("twitter").unwrap(),
        GeneratorConfig::default(),
        clock,
        &Arc::new(MemoryHighWater::new()),
    );
    let r = g.try_reserve(0, 1000).unwrap();
    assert_eq!(r.len(), 1000);
    let mut buf = vec![0; 1000];
    r.fill(&mut buf);
    assert_increasing(&buf);
    assert_eq!(
        buf[999] - buf[0],
        999,
        "within one tick the IDs are consecutive"
    );
    match g.try_reserve(0, g.max_batch() + 1) {
        Err(e @ GenError::BatchTooLarge { .. }) => assert!(e.to_string().contains("over the")),
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    assert!(g.try_reserve(0, 0).unwrap().is_empty());
    assert!(matches!(
        g.try_reserve(5, 1),
        Err(GenError::NoLane { lane: 5, lanes: 1 })
    ));
}

#[test]
fn volume_hiding_keeps_uniqueness_and_order_and_leaves_gaps() {
    let clock = Arc::new(ManualClock::new(T0));
    let config = GeneratorConfig {
        lanes: 4,
        volume: Some(VolumeHiding {
            jump_probability: 0.5,
            max_jump_ticks: 5,
            random_seq_start: true,
            seed: 42,
        }),
        ..GeneratorConfig::default()
    };
    let layout = Layout::parse("time:41/1ms@2020-01-01 lane:2 seq:12").unwrap();
    let hw = Arc::new(MemoryHighWater::new());
    let g = build(layout.clone(), config.clone(), clock.clone(), &hw);
    let mut all = HashSet::new();
    let mut per_lane: Vec<Vec<u64>> = vec![Vec::new(); 4];
    for step in 0..2_000 {
        let lane = step % 4;
        let r = g.reserve(lane, 3).unwrap();
        for id in r.iter() {
            assert!(all.insert(id), "duplicate {id}");
            per_lane[lane].push(id);
        }
        clock.advance(1);
    }
    // A restart keeps order even though jumps moved logical time ahead of the wall.
    drop(g);
    let g = build(layout.clone(), config, clock.clone(), &hw);
    for (lane, ids) in per_lane.iter_mut().enumerate() {
        let id = g.reserve(lane, 1).unwrap().first().unwrap();
        assert!(all.insert(id));
        ids.push(id);
        assert_increasing(ids);
    }
    let ticks: Vec<u64> = per_lane[0]
        .iter()
        .map(|id| layout.decode(*id).unwrap().tick)
        .collect();
    let gaps = ticks.windows(2).filter(|w| w[1] > w[0] + 4).count();
    assert!(gaps > 10, "expected visible jumps, saw {gaps}");
    let offsets = per_lane[0]
        .iter()
        .filter(|id| layout.decode(**id).unwrap().get("seq").unwrap() > 0)
        .count();
    assert!(
        offsets > per_lane[0].len() / 2,
        "sequences should start at random offsets"
    );
}

#[test]
fn config_and_layout_errors_name_the_key() {
    let clock = ManualClock::new(T0);
    let genid = Layout::parse("genid").unwrap();
    let e = Generator::new(
        genid.clone(),
        genid.identity(&[]).unwrap(),
        GeneratorConfig {
            lanes: 33,
            ..GeneratorConfig::default()
        },
        &clock as &dyn Clock,
        Box::new(MemoryHighWater::new()),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("lanes = 33 is invalid"), "{e}");
    let baidu = Layout::parse("baidu").unwrap();
    let e = Generator::new(
        baidu.clone(),
        baidu.identity(&[]).unwrap(),
        GeneratorConfig::default(),
        &clock as &dyn Clock,
        Box::new(MemoryHighWater::new()),
    )
    .unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    let e = Generator::new(
        genid.clone(),
        genid.identity(&[]).unwrap(),
        GeneratorConfig {
            max_rollback: Duration::from_secs(2),
            ..GeneratorConfig::default()
        },
        &clock as &dyn Clock,
        Box::new(MemoryHighWater::new()),
    )
    .unwrap_err();
    assert!(e.to_string().contains("high_water_window"), "{e}");
}

/// Runs `threads` threads, each taking `per_thread` IDs one at a time on its own lane choice.
fn concurrent(layout: &str, lanes: u32, threads: usize, per_thread: usize) {
    let layout = Layout::parse(layout).unwrap();
    let g = Arc::new(build(
        layout,
        GeneratorConfig {
            lanes,
            ..GeneratorConfig::default()
        },
        SystemClock,
        &Arc::new(MemoryHighWater::new()),
    ));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let g = g.clone();
            std::thread::spawn(move || {
                let lane = g.assign_lane();
                let mut ids = Vec::with_capacity(per_thread);
                while ids.len() < per_thread {
                    ids.push(g.next_id(lane).unwrap());
                }
                ids
            })
        })
        .collect();
    let mut all = HashSet::with_capacity(threads * per_thread);
    for h in handles {
        let ids = h.join().unwrap();
        assert_increasing(&ids);
        for id in ids {
            assert!(all.insert(id), "duplicate {id}");
        }
    }
    assert_eq!(all.len(), threads * per_thread);
}

#[test]
fn two_threads_share_one_lane_a_million_each() {
    concurrent("twitter", 1, 2, 1_000_000);
}

#[test]
fn threads_on_separate_lanes_a_million_each() {
    concurrent("time:41/1ms@2020-01-01 lane:2 seq:12", 0, 4, 1_000_000);
}
