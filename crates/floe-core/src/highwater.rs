//! The high-water mark: a persisted instant that no issued ID's time reaches past, so a
//! restarted node starts after it and never reissues an ID.
//!
//! The core defines the trait and an in-memory version; the file version (fsync, atomic rename,
//! advisory lock) lives in `floe-store`.

use std::fmt::Debug;

use thiserror::Error;

use crate::sync::{AtomicU64, Ordering};

/// Why the high-water mark could not be read or written.
#[derive(Debug, Error)]
#[error("high-water mark {what}")]
pub struct HighWaterError {
    /// What failed, naming the file or key and what to do.
    pub what: String,
    /// The underlying error, if any.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl HighWaterError {
    /// An error with a message and an optional cause.
    pub fn new(
        what: impl Into<String>,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        HighWaterError {
            what: what.into(),
            source,
        }
    }
}

/// Durable storage for the high-water instant (Unix ms; no issued ID has a time at or after it).
///
/// Stored in milliseconds rather than ticks so the mark stays valid if the layout's unit changes.
pub trait HighWater: Send + Sync + Debug {
    /// The persisted instant, or `None` when nothing was ever stored.
    fn load(&self) -> Result<Option<u64>, HighWaterError>;
    /// Persists the instant durably before returning.
    fn store(&self, unix_ms: u64) -> Result<(), HighWaterError>;
}

impl<H: HighWater + ?Sized> HighWater for Box<H> {
    fn load(&self) -> Result<Option<u64>, HighWaterError> {
        (**self).load()
    }
    fn store(&self, unix_ms: u64) -> Result<(), HighWaterError> {
        (**self).store(unix_ms)
    }
}

impl<H: HighWater + ?Sized> HighWater for &H {
    fn load(&self) -> Result<Option<u64>, HighWaterError> {
        (**self).load()
    }
    fn store(&self, unix_ms: u64) -> Result<(), HighWaterError> {
        (**self).store(unix_ms)
    }
}

impl<H: HighWater + ?Sized> HighWater for std::sync::Arc<H> {
    fn load(&self) -> Result<Option<u64>, HighWaterError> {
        (**self).load()
    }
    fn store(&self, unix_ms: u64) -> Result<(), HighWaterError> {
        (**self).store(unix_ms)
    }
}

/// A mark that never reads below `floor_ms`: how a node that takes over a leased worker id
/// starts after the previous holder's last tick (stored with the lease), whatever its own
/// file says. Writes go to the inner mark unchanged.
#[derive(Debug)]
pub struct Floored<H> {
    /// The node's own mark.
    inner: H,
    /// The previous holder's mark, in Unix ms.
    floor_ms: u64,
}

impl<H: HighWater> Floored<H> {
    /// Wraps `inner`, raising every read to at least `floor_ms`.
    pub fn new(inner: H, floor_ms: u64) -> Self {
        Floored { inner, floor_ms }
    }
}

impl<H: HighWater> HighWater for Floored<H> {
    fn load(&self) -> Result<Option<u64>, HighWaterError> {
        Ok(match self.inner.load()? {
            Some(ms) => Some(ms.max(self.floor_ms)),
            None => Some(self.floor_ms).filter(|ms| *ms != 0),
        })
    }

    fn store(&self, unix_ms: u64) -> Result<(), HighWaterError> {
        self.inner.store(unix_ms)
    }
}

/// A high-water mark kept in memory: survives generator restarts within one process (tests,
/// embedded use where the process lifetime is the ID lifetime).
#[derive(Debug, Default)]
pub struct MemoryHighWater {
    /// The stored instant; 0 means "never stored".
    ms: AtomicU64,
    /// How many times `store` was called, so tests can check the writes are amortised.
    writes: AtomicU64,
}

impl MemoryHighWater {
    /// An empty mark.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of `store` calls so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
}

impl HighWater for MemoryHighWater {
    fn load(&self) -> Result<Option<u64>, HighWaterError> {
        Ok(Some(self.ms.load(Ordering::SeqCst)).filter(|ms| *ms != 0))
    }

    fn store(&self, unix_ms: u64) -> Result<(), HighWaterError> {
        self.ms.store(unix_ms, Ordering::SeqCst);
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn floored_reads_never_go_below_the_floor() {
        let inner = MemoryHighWater::new();
        assert_eq!(Floored::new(&inner, 0).load().unwrap(), None);
        assert_eq!(Floored::new(&inner, 500).load().unwrap(), Some(500));
        inner.store(900).unwrap();
        assert_eq!(Floored::new(&inner, 500).load().unwrap(), Some(900));
        let f = Floored::new(&inner, 1000);
        assert_eq!(f.load().unwrap(), Some(1000));
        f.store(1200).unwrap();
        assert_eq!(inner.load().unwrap(), Some(1200));
    }
}
