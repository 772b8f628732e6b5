//! Tight loops for profiling the single-ID paths (not a benchmark of time):
//! `target/release/examples/handle_loop handle|next_id N`, e.g. under `perf record` or callgrind.

use std::time::{Duration, Instant};

use floe_core::{Generator, GeneratorConfig, Layout, MemoryHighWater, SystemClock, TickerClock};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000_000);
    let layout = Layout::parse("time:41/1ms@2020-01-01 worker:1 seq:22").unwrap();
    let identity = layout.identity(&[]).unwrap();
    let clock = TickerClock::for_tick(SystemClock, Duration::from_millis(1)).unwrap();
    let g = Generator::new(
        layout,
        identity,
        GeneratorConfig::default(),
        clock,
        Box::new(MemoryHighWater::new()),
    )
    .unwrap();
    let start = Instant::now();
    let mut acc = 0u64;
    if args.get(1).map(String::as_str) == Some("next_id") {
        for _ in 0..n {
            acc ^= g.next_id(0).unwrap();
        }
    } else {
        let mut h = g.handle();
        for _ in 0..n {
            acc ^= h.next_id().unwrap();
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "{ns:.2} ns/ID ({acc:x}), {} refreshes",
        g.clock().refreshes()
    );
}
