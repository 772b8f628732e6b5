//! Tight loops for instruction counting under callgrind (not a benchmark of time):
//! `valgrind --tool=callgrind target/release/examples/take_loop take|fetch_add N`.

use std::sync::atomic::{AtomicU64, Ordering};

use floe_core::{Segment, SegmentBuffer, SegmentConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut acc = 0u64;
    if args.get(1).map(String::as_str) == Some("fetch_add") {
        let c = AtomicU64::new(0);
        for _ in 0..n {
            acc ^= c.fetch_add(1, Ordering::AcqRel);
        }
    } else {
        let config = SegmentConfig {
            max_step: 1 << 40,
            ..SegmentConfig::default()
        };
        let b = SegmentBuffer::new(1 << 40, config).unwrap();
        b.plan_refill(1, 0).unwrap();
        b.install(Segment {
            start: 1,
            end: 1 << 40,
        })
        .unwrap();
        for _ in 0..n {
            acc ^= b.try_take(1).unwrap().first.start;
        }
    }
    println!("{acc}");
}
