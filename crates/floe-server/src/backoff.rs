//! The one retry backoff of the server: the lease keeper's acquire, the segment refill loop and
//! the segment store's start-up wait all pause with it.

use std::time::Duration;

/// Exponential backoff with "equal jitter": the `n`-th delay lies in `[d/2, d]` for
/// `d = min(min · 2ⁿ, max)`, so nodes that failed together do not retry in lockstep, and no
/// delay exceeds `max`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    /// First delay (before jitter).
    min: Duration,
    /// Cap.
    max: Duration,
    /// The next delay before jitter.
    next: Duration,
}

impl Backoff {
    /// Starts at `min`, doubling up to `max` (`max` below `min` is raised to `min`).
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The delay before the next retry; doubles the one after, up to the cap.
    pub(crate) fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = d.saturating_mul(2).min(self.max);
        let half = d / 2;
        let spread = u64::try_from((d - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(fastrand::u64(..=spread))
    }

    /// After a success: the next failure starts again at `min`.
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every delay lies in [d/2, d] of the doubling, capped sequence; reset starts over.
        #[test]
        fn delays_double_within_equal_jitter_and_never_pass_the_cap(
            min_ms in 1u64..2_000,
            max_ms in 1u64..60_000,
            failures in 1usize..40,
        ) {
            let (min, max) = (Duration::from_millis(min_ms), Duration::from_millis(max_ms));
            let mut b = Backoff::new(min, max);
            let cap = max.max(min);
            let mut d = min;
            for _ in 0..failures {
                let delay = b.next();
                prop_assert!(delay >= d / 2 && delay <= d, "{delay:?} outside [{:?}, {d:?}]", d / 2);
                prop_assert!(delay <= cap);
                d = (d * 2).min(cap);
            }
            b.reset();
            let first = b.next();
            prop_assert!(first >= min / 2 && first <= min, "{first:?} after reset");
        }
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            seen.insert(Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next());
        }
        assert!(
            seen.len() > 10,
            "50 first delays took only {} values",
            seen.len()
        );
    }
}
