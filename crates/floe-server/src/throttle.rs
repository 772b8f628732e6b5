//! One rate-limited log line, shared by the listeners: a flood of one event (rejected
//! connections, failing accepts) must not flood the log too.

use std::sync::atomic::{AtomicU64, Ordering};

/// A log line that is written at most once a second, so a flood of the same event (rejected
/// connections, v1 clients reconnecting during a clock rollback) does not flood the log too.
pub(crate) struct Throttle {
    /// Unix second of the last line written.
    last: AtomicU64,
    /// Events since then that were not logged.
    suppressed: AtomicU64,
}

impl Throttle {
    pub(crate) const fn new() -> Throttle {
        Throttle {
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(events not logged since the last line)` when a line may be written now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.last.swap(now, Ordering::Relaxed) != now {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}
