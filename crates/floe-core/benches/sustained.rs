//! Sustained rate on the system clock with the `twitter` layout (ceiling 4,096,000 IDs/s):
//! after a warm-up that spends the max_drift allowance, IDs/s over a measured window against
//! the ceiling, and the CPU the thread burns (waiting must sleep, not spin).
//! `cargo bench -p floe-core --bench sustained [-- SECONDS]`.

use std::time::{Duration, Instant};

use floe_core::{Generator, GeneratorConfig, Layout, MemoryHighWater, SystemClock};

/// User + system CPU time of this process, from /proc (Linux).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("Linux /proc");
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ = 100 on Linux
}

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
        let (start, cpu0) = (Instant::now(), cpu_time());
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
        (n, start.elapsed(), cpu_time() - cpu0)
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
