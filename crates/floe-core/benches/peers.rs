//! Floe beside ferroid and snowflaked, same layouts, same run, real clocks
//! (`cargo bench -p floe-core --bench peers [-- criterion options]`):
//!
//! - the uncapped layout `time:41/1ms worker:1 seq:22` (4M IDs per ms: the sequence is never
//!   the limit) at 1 and 2 threads: Floe's `LaneHandle` and `Generator::next_id` on a
//!   `TickerClock` over the system clock, `next_id` on the bare `SystemClock`, and ferroid's
//!   `AtomicSnowflakeGenerator` on its own ticker clock (`MonotonicClock`); snowflaked has a
//!   fixed 12-bit sequence and cannot express this layout;
//! - batches of 1,000 (ferroid has no batch call: 1,000 `next_id`);
//! - the `twitter` preset (ceiling 4,096,000 IDs/s) sustained for 2 s, Floe with `max_drift`
//!   0 and the default, ferroid and snowflaked (their own twitter-shaped layouts), with the CPU
//!   of the issuing thread and of the process.
//!
//! At the end it prints the medians and the ratios (peer ns/ID ÷ Floe ns/ID: above 1 Floe is
//! faster).

mod support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use ferroid::generator::AtomicSnowflakeGenerator;
use ferroid::id::SnowflakeTwitterId;
use ferroid::time::{MonotonicClock, TWITTER_EPOCH};
use floe_core::{
    Clock, Generator, GeneratorConfig, Layout, MemoryHighWater, SystemClock, TickerClock,
};

/// 2020-01-01 in Unix ms, the epoch of the uncapped layout for everyone.
const EPOCH_MS: u64 = 1_577_836_800_000;
const UNCAPPED: &str = "time:41/1ms@2020-01-01 worker:1 seq:22";
/// Criterion samples per benchmark; the last this many calls of a routine are the measurement.
const SAMPLES: usize = 30;

ferroid::define_snowflake_id!(
    /// ferroid's spelling of the uncapped layout.
    UncappedId, u64,
    reserved: 0,
    timestamp: 41,
    machine_id: 1,
    sequence: 22
);

type Ferroid<ID> = AtomicSnowflakeGenerator<ID, MonotonicClock>;

fn floe<C: Clock>(spec: &str, max_drift: Duration, clock: C) -> Generator<C> {
    let layout = Layout::parse(spec).unwrap();
    let identity = layout.identity(&[]).unwrap();
    let config = GeneratorConfig {
        max_drift,
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

/// The clock Floe's fast path uses: the system clock behind a ticker, one period per tick.
fn ticker(spec: &str) -> TickerClock {
    let unit = Layout::parse(spec).unwrap().time_spec().unit_ms;
    TickerClock::for_tick(SystemClock, Duration::from_millis(unit)).unwrap()
}

/// Per-ID times (ns) of every call of each routine, to take the medians criterion measured.
#[derive(Default)]
struct Medians(RefCell<BTreeMap<String, Vec<f64>>>);

impl Medians {
    fn record(&self, name: &str, elapsed: Duration, ids: u64) {
        self.0
            .borrow_mut()
            .entry(name.to_string())
            .or_default()
            .push(elapsed.as_nanos() as f64 / ids as f64);
    }

    /// Median of the measured samples (criterion's warm-up calls come first and are dropped);
    /// `None` for a benchmark a filter left out.
    fn get(&self, name: &str) -> Option<f64> {
        let all = self.0.borrow();
        let v = all.get(name)?;
        let mut m: Vec<f64> = v[v.len().saturating_sub(SAMPLES)..].to_vec();
        m.sort_by(f64::total_cmp);
        Some(m[m.len() / 2])
    }
}

/// Times `iters` calls per thread on `threads` threads started together, each calling the
/// function `make` built inside it (monomorphised: no indirect call per ID for anyone); the
/// slower thread's time counts (per-ID time while the others run).
fn timed<M, F>(threads: usize, iters: u64, make: &M) -> Duration
where
    M: Fn() -> F + Sync,
    F: FnMut() -> u64,
{
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut id = make();
                    barrier.wait();
                    let start = Instant::now();
                    let mut acc = 0u64;
                    for _ in 0..iters {
                        acc ^= id();
                    }
                    std::hint::black_box(acc);
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
}

/// One single-ID benchmark at `threads` threads, its samples kept for the ratios.
fn single<M, F>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    medians: &Medians,
    threads: usize,
    name: &str,
    make: M,
) where
    M: Fn() -> F + Sync,
    F: FnMut() -> u64,
{
    let id = format!("{threads}-thread/{name}");
    group.bench_function(&id, |b| {
        b.iter_custom(|iters| {
            let d = timed(threads, iters, &make);
            medians.record(&id, d, iters);
            d
        })
    });
}

fn singles(c: &mut Criterion, medians: &Medians) {
    let fast = floe(UNCAPPED, Duration::from_secs(1), ticker(UNCAPPED));
    let slow = floe(UNCAPPED, Duration::from_secs(1), SystemClock);
    let peer: Ferroid<UncappedId> = AtomicSnowflakeGenerator::new(
        0,
        MonotonicClock::with_epoch(Duration::from_millis(EPOCH_MS)),
    );
    let mut group = c.benchmark_group("peers/uncapped");
    group.throughput(Throughput::Elements(1));
    group.sample_size(SAMPLES);
    for threads in [1usize, 2] {
        let g = &mut group;
        single(g, medians, threads, "floe-handle-ticker", || {
            let mut h = fast.handle();
            move || h.next_id().unwrap()
        });
        single(g, medians, threads, "floe-next_id-ticker", || {
            || fast.next_id(0).unwrap()
        });
        single(g, medians, threads, "floe-next_id-system", || {
            || slow.next_id(0).unwrap()
        });
        single(g, medians, threads, "ferroid", || {
            || peer.next_id(|_| std::thread::yield_now()).to_raw()
        });
    }
    group.finish();
}

fn batches(c: &mut Criterion, medians: &Medians) {
    let fast = floe(UNCAPPED, Duration::from_secs(1), ticker(UNCAPPED));
    let peer: Ferroid<UncappedId> = AtomicSnowflakeGenerator::new(
        0,
        MonotonicClock::with_epoch(Duration::from_millis(EPOCH_MS)),
    );
    let mut group = c.benchmark_group("peers/batch-1000");
    group.throughput(Throughput::Elements(1000));
    group.sample_size(SAMPLES);
    let mut buf = vec![0u64; 1000];
    group.bench_function("floe-reserve+fill", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                fast.reserve(0, 1000).unwrap().fill(&mut buf);
                std::hint::black_box(&buf);
            }
            let d = start.elapsed();
            medians.record("batch/floe", d, iters * 1000);
            d
        })
    });
    group.bench_function("ferroid-1000-next_id", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for slot in buf.iter_mut() {
                    *slot = peer.next_id(|_| std::thread::yield_now()).to_raw();
                }
                std::hint::black_box(&buf);
            }
            let d = start.elapsed();
            medians.record("batch/ferroid", d, iters * 1000);
            d
        })
    });
    group.finish();
}

/// The `twitter` preset at its ceiling for 2 s after a warm-up: Floe (drift 0 and default; handle and batches
/// of 64), ferroid and snowflaked with their documented waiting (a yield loop, a spin).
fn sustained() {
    let layout = Layout::parse("twitter").unwrap();
    let ceiling = layout.capacity().ids_per_second_per_node;
    // The warm-up spends the drift allowance: borrowing 1 s of IDs at 3× the ceiling takes 0.5 s.
    let (warmup, window) = (Duration::from_millis(1500), Duration::from_secs(2));
    println!("\nsustained, twitter preset (ceiling {ceiling:.0} IDs/s), {window:?} after a {warmup:?} warm-up:");
    for (drift, label) in [
        (Duration::ZERO, "max_drift 0"),
        (Duration::from_secs(1), "max_drift 1 s"),
    ] {
        {
            let g = floe("twitter", drift, ticker("twitter"));
            {
                let mut h = g.handle();
                support::sustain(warmup, window, || {
                    std::hint::black_box(h.next_id().unwrap());
                    1
                })
                .print(&format!("floe handle, ticker, {label}"), ceiling);
            }
            support::sustain(warmup, window, || {
                std::hint::black_box(g.reserve(0, 64).unwrap().last());
                64
            })
            .print(&format!("floe reserve(64), ticker, {label}"), ceiling);
        } // the ticker ends here, so the next line's CPU is the bare clock's
        let g = floe("twitter", drift, SystemClock);
        support::sustain(warmup, window, || {
            std::hint::black_box(g.next_id(0).unwrap());
            1
        })
        .print(&format!("floe next_id, SystemClock, {label}"), ceiling);
    }
    let peer: Ferroid<SnowflakeTwitterId> =
        AtomicSnowflakeGenerator::new(0, MonotonicClock::with_epoch(TWITTER_EPOCH));
    support::sustain(warmup, window, || {
        std::hint::black_box(peer.next_id(|_| std::thread::yield_now()));
        1
    })
    .print("ferroid AtomicSnowflakeGenerator", ceiling);
    let peer = snowflaked::sync::Generator::new(0);
    support::sustain(warmup, window, || {
        std::hint::black_box(peer.generate::<u64>());
        1
    })
    .print("snowflaked sync::Generator", ceiling);
}

fn ratios(m: &Medians) {
    println!("\nmedians (ns/ID) and ratios, same run (peer ÷ Floe: above 1, Floe is faster):");
    for t in ["1-thread", "2-thread"] {
        let Some(peer) = m.get(&format!("{t}/ferroid")) else {
            continue;
        };
        for name in [
            "floe-handle-ticker",
            "floe-next_id-ticker",
            "floe-next_id-system",
        ] {
            if let Some(f) = m.get(&format!("{t}/{name}")) {
                println!(
                    "  uncapped {t:<9} {name:<22} {f:>7.2}  ferroid {peer:>7.2}  ratio {:>5.2}",
                    peer / f
                );
            }
        }
    }
    if let (Some(f), Some(p)) = (m.get("batch/floe"), m.get("batch/ferroid")) {
        println!(
            "  batch of 1,000      floe {f:>7.3}  ferroid {p:>7.3}  ratio {:>5.1}",
            p / f
        );
    }
}

fn main() {
    let medians = Medians::default();
    let mut c = Criterion::default().configure_from_args();
    singles(&mut c, &medians);
    batches(&mut c, &medians);
    c.final_summary();
    ratios(&medians);
    sustained();
}
