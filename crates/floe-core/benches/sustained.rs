//! Sustained rate on the system clock with the `twitter` layout (ceiling 4,096,000 IDs/s):
//! after a warm-up that spends the max_drift allowance, IDs/s over a measured window against
//! the ceiling, and the CPU the process burns (waiting must sleep, not spin).
//! `cargo bench -p floe-core --bench sustained [-- SECONDS]`.

mod support;

use std::time::{Duration, Instant};

use floe_core::{Generator, GeneratorConfig, Layout, MemoryHighWater, SystemClock};

fn main() {
    let secs: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let layout = Layout::parse("twitter").unwrap();
    let ceiling = layout.capacity().ids_per_second_per_node;
    let identity = layout.identity(&[]).unwrap();
    let config = GeneratorConfig {
        max_drift: Duration::from_millis(100),
        ..GeneratorConfig::default()
    };
    let g = Generator::new(
        layout,
        identity,
        config,
        SystemClock,
        Box::new(MemoryHighWater::new()),
    )
    .unwrap();
    let run = |d: Duration| {
        let (start, cpu0) = (Instant::now(), support::process_cpu());
        let mut n = 0u64;
        let mut acc = 0u64;
        while start.elapsed() < d {
            // Batches of 64: the per-call cost is already measured by the criterion bench;
            // here the question is whether the clock's ceiling is reached.
            let r = g.reserve(0, 64).unwrap();
            acc ^= r.last().unwrap();
            n += 64;
        }
        std::hint::black_box(acc);
        (n, start.elapsed(), support::process_cpu() - cpu0)
    };
    run(Duration::from_millis(500)); // spend the drift allowance: measure the steady state
    let (n, wall, cpu) = run(Duration::from_secs(secs));
    let rate = n as f64 / wall.as_secs_f64();
    println!("sustained/twitter/system-clock: {secs} s");
    println!("  IDs/s           {rate:.0}");
    println!(
        "  of ceiling      {:.2}% (ceiling {ceiling:.0} IDs/s)",
        100.0 * rate / ceiling
    );
    println!(
        "  CPU             {:.1}% of one core ({} ms CPU in {} ms)",
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        cpu.as_millis(),
        wall.as_millis()
    );
}
