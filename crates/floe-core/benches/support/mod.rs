//! What the `sustained` and `peers` benches share: CPU time from /proc (Linux, nanoseconds)
//! and the loop that measures a sustained rate.

#![allow(dead_code)] // each bench uses part of it

use std::time::{Duration, Instant};

/// CPU time of one task from its `schedstat` file (first field: ns on a CPU).
fn schedstat(path: &str) -> Duration {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> Duration {
    schedstat("/proc/thread-self/schedstat")
}

/// CPU time of the live threads of this process whose name passes `keep`.
fn threads_cpu(keep: impl Fn(&str) -> bool) -> Duration {
    std::fs::read_dir("/proc/self/task")
        .expect("Linux /proc")
        .filter_map(Result::ok)
        .filter(|t| {
            keep(
                std::fs::read_to_string(t.path().join("comm"))
                    .unwrap_or_default()
                    .trim(),
            )
        })
        .map(|t| schedstat(&format!("{}/schedstat", t.path().display())))
        .sum()
}

/// CPU time of every live thread of this process (ticker threads included).
pub fn process_cpu() -> Duration {
    threads_cpu(|_| true)
}

/// CPU time of Floe's ticker threads (`TickerClock`).
pub fn ticker_cpu() -> Duration {
    threads_cpu(|name| name == "floe-ticker")
}

/// One sustained run: IDs issued, wall time, CPU of the issuing thread and of the process.
#[derive(Debug, Clone, Copy)]
pub struct Sustained {
    /// IDs issued in the window.
    pub ids: u64,
    /// The window's length.
    pub wall: Duration,
    /// CPU of the thread that issued (and waited).
    pub thread_cpu: Duration,
    /// CPU of Floe's ticker threads.
    pub ticker_cpu: Duration,
    /// CPU of the whole process (the issuing thread, tickers, anything else running).
    pub process_cpu: Duration,
}

impl Sustained {
    /// IDs per second.
    pub fn rate(&self) -> f64 {
        self.ids as f64 / self.wall.as_secs_f64()
    }

    /// Prints one line: rate, share of `ceiling`, CPU (% of a core) of the issuing thread, of
    /// Floe's ticker and of the whole process.
    pub fn print(&self, name: &str, ceiling: f64) {
        let pct = |d: Duration| 100.0 * d.as_secs_f64() / self.wall.as_secs_f64();
        println!(
            "{name:<36} {:>8.0} IDs/s {:>6.2} % of ceiling | CPU % of a core: thread {:>4.1}, floe-ticker {:>3.1}, process {:>4.1}",
            self.rate(),
            100.0 * self.rate() / ceiling,
            pct(self.thread_cpu),
            pct(self.ticker_cpu),
            pct(self.process_cpu),
        );
    }
}

/// Runs `issue` (which issues some IDs, waiting as it must, and returns how many) for
/// `warmup`, which spends the drift allowance, then measures it for `window`. The clock is
/// read once per 64 calls, so single-ID loops do not pay a clock read per ID.
pub fn sustain(warmup: Duration, window: Duration, mut issue: impl FnMut() -> u64) -> Sustained {
    let mut run = |d: Duration| {
        let (start, cpu, tcpu, pcpu) = (Instant::now(), thread_cpu(), ticker_cpu(), process_cpu());
        let mut ids = 0u64;
        while start.elapsed() < d {
            for _ in 0..64 {
                ids += issue();
            }
        }
        Sustained {
            ids,
            wall: start.elapsed(),
            thread_cpu: thread_cpu() - cpu,
            ticker_cpu: ticker_cpu().saturating_sub(tcpu),
            process_cpu: process_cpu().saturating_sub(pcpu),
        }
    };
    run(warmup);
    run(window)
}
