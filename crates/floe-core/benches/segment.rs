//! Cost of taking IDs from a segment buffer in process, against a bare `AtomicU64::fetch_add`
//! measured in the same run. `cargo bench -p floe-core --bench segment`.

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use floe_core::{BufferError, Segment, SegmentBuffer, SegmentConfig};

/// A buffer with segments so large that a refill is rare: the fast path is what is measured.
fn buffer() -> (SegmentBuffer, u64) {
    let b = SegmentBuffer::new(
        1 << 40,
        SegmentConfig {
            max_step: 1 << 40,
            ..SegmentConfig::default()
        },
    )
    .unwrap();
    b.plan_refill(1, 0).unwrap();
    b.install(Segment {
        start: 1,
        end: 1 << 40,
    })
    .unwrap();
    (b, 1 << 40)
}

/// Takes `n` IDs, installing the next segment by hand when the buffer runs short.
#[inline]
fn take(b: &SegmentBuffer, next: &mut u64, n: u64) -> u64 {
    loop {
        match b.try_take(n) {
            Ok(t) => return t.first.start,
            Err(BufferError::Short { .. }) => {
                b.advance();
                if let Some(plan) = b.plan_refill(n, 0) {
                    b.install(Segment {
                        start: *next,
                        end: *next + plan.step,
                    })
                    .unwrap();
                    *next += plan.step;
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn single(c: &mut Criterion) {
    let mut group = c.benchmark_group("segment");
    group.throughput(Throughput::Elements(1));
    let (b, mut next) = buffer();
    group.bench_function("take-1", |bench| bench.iter(|| take(&b, &mut next, 1)));
    let counter = AtomicU64::new(0);
    group.bench_function("baseline-fetch_add", |bench| {
        bench.iter(|| counter.fetch_add(1, Ordering::AcqRel))
    });
    group.finish();
}

fn batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("segment");
    group.throughput(Throughput::Elements(1000));
    let (b, mut next) = buffer();
    let mut out = Vec::with_capacity(1000);
    group.bench_function("take-1000+extend", |bench| {
        bench.iter(|| {
            out.clear();
            loop {
                match b.try_take(1000) {
                    Ok(t) => break t.extend_into(&mut out),
                    Err(_) => {
                        take(&b, &mut next, 1000);
                    }
                }
            }
            std::hint::black_box(&out);
        })
    });
    group.finish();
}

criterion_group!(benches, single, batches);
criterion_main!(benches);
