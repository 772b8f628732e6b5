//! Code cost of the generator: ns per ID on a fake clock that advances, so the clock is never the
//! limit and neither is the sequence (22 bits per ms). `cargo bench -p floe-core --bench generator`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use floe_core::{Generator, GeneratorConfig, Layout, ManualClock, MemoryHighWater};

const T0: u64 = 1_795_000_000_000;

fn generator(clock: Arc<ManualClock>, lanes: u32) -> Generator<Arc<ManualClock>> {
    let layout = Layout::parse("time:41/1ms@2020-01-01 lane:1 seq:21").unwrap();
    let identity = layout.identity(&[]).unwrap();
    let config = GeneratorConfig {
        lanes,
        ..GeneratorConfig::default()
    };
    Generator::new(
        layout,
        identity,
        config,
        clock,
        Box::new(MemoryHighWater::new()),
    )
    .unwrap()
}

/// Takes `n` IDs one at a time, moving the fake clock 1 ms every 1M IDs (below the 2M per tick).
fn run_singles(g: &Generator<Arc<ManualClock>>, clock: &ManualClock, lane: usize, n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        if i % 1_000_000 == 999_999 {
            clock.advance(1);
        }
        acc ^= g.try_reserve(lane, 1).unwrap().first().unwrap();
    }
    acc
}

fn single_thread(c: &mut Criterion) {
    let clock = Arc::new(ManualClock::new(T0));
    let g = generator(clock.clone(), 1);
    let mut group = c.benchmark_group("generator");
    group.throughput(Throughput::Elements(1));
    group.bench_function("next_id/1-thread", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::hint::black_box(run_singles(&g, &clock, 0, iters));
            start.elapsed()
        })
    });
    group.finish();
}

fn two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("generator");
    group.throughput(Throughput::Elements(1));
    // Both threads on one lane: the CAS is contended on every call (worst case).
    for (name, lanes) in [
        ("next_id/2-threads-one-lane", 1),
        ("next_id/2-threads-two-lanes", 2),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let clock = Arc::new(ManualClock::new(T0));
                let g = Arc::new(generator(clock.clone(), lanes));
                let barrier = Arc::new(Barrier::new(2));
                let handles: Vec<_> = (0..2)
                    .map(|_| {
                        let (g, clock, barrier) = (g.clone(), clock.clone(), barrier.clone());
                        std::thread::spawn(move || {
                            let lane = g.assign_lane();
                            barrier.wait();
                            let start = Instant::now();
                            std::hint::black_box(run_singles(&g, &clock, lane, iters));
                            start.elapsed()
                        })
                    })
                    .collect();
                // Per-ID time of each thread while the other runs: the slower one counts.
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .max()
                    .unwrap_or(Duration::ZERO)
            })
        });
    }
    group.finish();
}

fn batches(c: &mut Criterion) {
    let clock = Arc::new(ManualClock::new(T0));
    let g = generator(clock.clone(), 1);
    let mut group = c.benchmark_group("generator");
    group.throughput(Throughput::Elements(1000));
    let mut buf = vec![0u64; 1000];
    let mut taken = 0u64;
    group.bench_function("batch-1000/fill", |b| {
        b.iter(|| {
            taken += 1000;
            if taken >= 1_000_000 {
                taken = 0;
                clock.advance(1);
            }
            g.try_reserve(0, 1000).unwrap().fill(&mut buf);
            std::hint::black_box(&buf);
        })
    });
    group.finish();
}

fn baseline(c: &mut Criterion) {
    let counter = AtomicU64::new(0);
    let mut group = c.benchmark_group("baseline");
    group.throughput(Throughput::Elements(1));
    group.bench_function("atomic-fetch_add", |b| {
        b.iter(|| counter.fetch_add(1, Ordering::AcqRel))
    });
    // The floor for two threads sharing one lane: the cache line ping-pongs on every call.
    group.bench_function("atomic-fetch_add/2-threads-one-word", |b| {
        b.iter_custom(|iters| {
            let word = Arc::new(AtomicU64::new(0));
            let barrier = Arc::new(Barrier::new(2));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let (word, barrier) = (word.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let start = Instant::now();
                        for _ in 0..iters {
                            std::hint::black_box(word.fetch_add(1, Ordering::AcqRel));
                        }
                        start.elapsed()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .max()
                .unwrap_or(Duration::ZERO)
        })
    });
    group.bench_function("fake-clock-read", |b| {
        let clock = ManualClock::new(T0);
        b.iter_batched(
            || (),
            |_| floe_core::Clock::now_ms(&clock),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, single_thread, two_threads, batches, baseline);
criterion_main!(benches);
