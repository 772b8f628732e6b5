//! Client benchmarks.
//!
//! - `prefetch/*`: IDs served from a segment prefetch buffer on one thread (the fast path;
//!   target ≥ 50 M IDs/s). The buffer is filled outside the timed part from a fake server, so
//!   only taking IDs from memory is measured.
//! - `roundtrip/*`: one ID per round trip without prefetch, against a real `floe serve`
//!   (release build: `FLOE_BIN`, else built with `cargo build --release -p floe`). Besides
//!   criterion's time per iteration, it prints p50/p99/p99.9 of 20,000 single round trips.
//!
//! Run: `cargo bench -p floe-client --bench client`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use floe_client::{ClientBuilder, Prefetch, Protocol, SegmentHandle};
use support::fake::FakeServer;
use support::real::{floe_bin_release, Floe};

/// IDs taken per timed stretch; the buffer holds more, so no stretch waits for a refill.
const STRETCH: u64 = 500_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Times `iters` takes by `take`, refilling the buffer between stretches outside the clock.
fn timed_stretches(
    runtime: &tokio::runtime::Runtime,
    handle: &SegmentHandle,
    iters: u64,
    mut take: impl FnMut(u64) -> Duration,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let stretch = left.min(STRETCH);
        while (handle.buffered() as u64) < stretch {
            runtime.block_on(handle.warm_up()).unwrap();
        }
        total += take(stretch);
        left -= stretch;
    }
    total
}

fn prefetch(c: &mut Criterion) {
    let server = FakeServer::floe();
    let runtime = runtime();
    let handle = {
        let _entered = runtime.enter();
        ClientBuilder::new([server.address()])
            .protocol(Protocol::V2)
            .segment_prefetch(Prefetch::new(1_000_000, 1_000))
            .build()
            .unwrap()
            .segment("orders")
    };
    let mut group = c.benchmark_group("prefetch");
    group.throughput(Throughput::Elements(1));
    group.bench_function("try_next_id", |b| {
        b.iter_custom(|iters| {
            timed_stretches(&runtime, &handle, iters, |n| {
                let started = Instant::now();
                for _ in 0..n {
                    black_box(handle.try_next_id());
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("next_id_await", |b| {
        b.iter_custom(|iters| {
            timed_stretches(&runtime, &handle, iters, |n| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..n {
                        black_box(handle.next_id().await.unwrap());
                    }
                    started.elapsed()
                })
            })
        })
    });
    group.finish();
}

fn roundtrip(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let server = Floe::spawn(floe_bin_release(), dir.path(), "127.0.0.1:0", 3, &[]);
    // One thread runs the caller and the connection task, so a round trip has no cross-thread
    // wake-up in the client: what remains is the network stack and the server.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("roundtrip");
    for (name, protocol) in [("v2_next_id", Protocol::V2), ("v1_next_id", Protocol::V1)] {
        let client = {
            let _entered = runtime.enter();
            ClientBuilder::new([server.address()])
                .protocol(protocol)
                .connections_per_server(1)
                .build()
                .unwrap()
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        black_box(client.next_id().await.unwrap());
                    }
                    started.elapsed()
                })
            })
        });
        let mut samples: Vec<Duration> = runtime.block_on(async {
            let mut samples = Vec::with_capacity(20_000);
            for _ in 0..20_000 {
                let started = Instant::now();
                black_box(client.next_id().await.unwrap());
                samples.push(started.elapsed());
            }
            samples
        });
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        println!(
            "roundtrip/{name}: 20000 single-ID round trips: p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
            at(0.50),
            at(0.99),
            at(0.999),
            samples[samples.len() - 1]
        );
    }
    group.finish();
}

criterion_group!(benches, prefetch, roundtrip);
criterion_main!(benches);
