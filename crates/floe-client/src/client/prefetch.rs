//! Local prefetch: a buffer of IDs per mode and tag, refilled in the background.
//!
//! The buffer is a bounded ring of atomics with one producer (whoever holds the fill lock) and
//! any number of consumers. Taking an ID is two loads, one load of the slot and one
//! compare-and-swap on the head, with no lock and no allocation, so one thread takes tens of
//! millions of IDs a second. A consumer reads the slot *before* its compare-and-swap claims it:
//! the producer overwrites a slot only after it has seen the head move past it, so a claim that
//! succeeded always read the value that was there before the claim.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Inner, Kind};
use crate::config::Prefetch;
use crate::error::Error;

/// Background refills that fail in a row before the refill task gives up until the next take.
const REFILL_TRIES: u32 = 3;

/// Keeps `T` on a cache line of its own, so consumers hammering the head do not slow the
/// producer's tail, and vice versa.
#[derive(Debug)]
#[repr(align(64))]
struct Padded<T>(T);

/// Proof of being the ring's only producer: it lives inside the fill lock and nowhere else.
#[derive(Debug)]
pub(crate) struct Producer(());

/// A bounded multi-consumer ring of IDs with a single producer.
#[derive(Debug)]
pub(crate) struct Ring {
    /// The IDs; position `p` lives in `slots[p & mask]`.
    slots: Box<[AtomicU64]>,
    /// `slots.len() - 1`; the length is a power of two.
    mask: u64,
    /// Position of the next ID to take; only ever grows.
    head: Padded<AtomicU64>,
    /// Position after the last ID published; only ever grows, written by the producer.
    tail: Padded<AtomicU64>,
}

impl Ring {
    /// A ring holding at least `capacity` IDs, and the token that lets its holder fill it.
    pub(crate) fn new(capacity: usize) -> (Ring, Producer) {
        let len = capacity.max(2).next_power_of_two();
        let ring = Ring {
            slots: (0..len).map(|_| AtomicU64::new(0)).collect(),
            mask: len as u64 - 1,
            head: Padded(AtomicU64::new(0)),
            tail: Padded(AtomicU64::new(0)),
        };
        (ring, Producer(()))
    }

    /// How many IDs it holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// How many IDs are buffered (a snapshot).
    pub(crate) fn len(&self) -> usize {
        // Head first: the tail read after it is at least as new, so the difference is never
        // negative.
        let head = self.head.0.load(Ordering::Acquire);
        let tail = self.tail.0.load(Ordering::Acquire);
        (tail - head) as usize
    }

    /// Takes one ID; returns it with how many remain, or `None` when empty.
    #[inline]
    pub(crate) fn pop(&self) -> Option<(u64, u64)> {
        let mut head = self.head.0.load(Ordering::Relaxed);
        loop {
            let tail = self.tail.0.load(Ordering::Acquire);
            if head >= tail {
                return None;
            }
            let id = self.slots[(head & self.mask) as usize].load(Ordering::Relaxed);
            match self.head.0.compare_exchange_weak(
                head,
                head + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some((id, tail - head - 1)),
                Err(now) => head = now,
            }
        }
    }

    /// Takes `n` IDs at once into `out` (cleared first), all or none; returns how many remain.
    pub(crate) fn take(&self, n: usize, out: &mut Vec<u64>) -> Option<u64> {
        let n64 = n as u64;
        let mut head = self.head.0.load(Ordering::Relaxed);
        loop {
            let tail = self.tail.0.load(Ordering::Acquire);
            if tail - head.min(tail) < n64 {
                return None;
            }
            out.clear();
            out.extend(
                (head..head + n64)
                    .map(|p| self.slots[(p & self.mask) as usize].load(Ordering::Relaxed)),
            );
            match self.head.0.compare_exchange_weak(
                head,
                head + n64,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(tail - head - n64),
                Err(now) => head = now,
            }
        }
    }

    /// Appends as many of `ids` as fit; returns how many were appended.
    pub(crate) fn push(&self, _producer: &mut Producer, ids: &[u64]) -> usize {
        let tail = self.tail.0.load(Ordering::Relaxed);
        // Acquire pairs with the consumers' release: a slot is reused only after its last
        // reader is done with it.
        let head = self.head.0.load(Ordering::Acquire);
        let free = self.slots.len() - (tail - head) as usize;
        let n = ids.len().min(free);
        for (p, &id) in (tail..).zip(&ids[..n]) {
            self.slots[(p & self.mask) as usize].store(id, Ordering::Relaxed);
        }
        self.tail.0.store(tail + n as u64, Ordering::Release);
        n
    }
}

/// The prefetch buffer of one mode or tag.
#[derive(Debug)]
pub(crate) struct Buffer {
    /// The IDs.
    pub ring: Ring,
    /// What to fetch.
    kind: Kind,
    /// IDs per refill.
    batch: usize,
    /// Refill below this many buffered IDs; a `u64` to compare with [`Ring::pop`]'s count.
    pub low_water: u64,
    /// Held while fetching for the ring, so one fetch fills it at a time and callers that find
    /// it empty queue behind the refill in flight instead of all asking the server.
    fill: tokio::sync::Mutex<Producer>,
    /// A background refill task is scheduled or running.
    refilling: AtomicBool,
}

impl Buffer {
    /// An empty buffer for `kind` with the given refill settings.
    pub(crate) fn new(kind: Kind, prefetch: Prefetch) -> Buffer {
        let (ring, producer) = Ring::new(prefetch.batch as usize + prefetch.low_water as usize);
        Buffer {
            ring,
            kind,
            batch: prefetch.batch as usize,
            low_water: u64::from(prefetch.low_water),
            fill: tokio::sync::Mutex::new(producer),
            refilling: AtomicBool::new(false),
        }
    }

    /// Largest `next_ids` call served from the buffer; larger ones go to the server directly,
    /// so one big call does not drain the buffer that single IDs are served from.
    pub(crate) fn max_take(&self) -> usize {
        (self.batch / 2).max(1)
    }

    /// Starts a background refill unless one is already under way.
    #[inline]
    pub(crate) fn refill_soon(self: &Arc<Buffer>, inner: &Arc<Inner>) {
        if self.refilling.load(Ordering::Relaxed) || self.refilling.swap(true, Ordering::Acquire) {
            return;
        }
        let buffer = self.clone();
        let client = inner.clone();
        inner.runtime.spawn(async move {
            buffer.refill(&client).await;
            buffer.refilling.store(false, Ordering::Release);
        });
    }

    /// Refills until the buffer is above its low water, giving up for now after a few failures
    /// (the next take below low water starts it again).
    async fn refill(&self, inner: &Inner) {
        let mut failures = 0;
        loop {
            {
                let mut producer = self.fill.lock().await;
                if self.ring.len() as u64 >= self.low_water {
                    return;
                }
                let want = self.batch.min(self.ring.capacity() - self.ring.len());
                if want == 0 {
                    return;
                }
                let deadline = Instant::now() + inner.config.request_timeout;
                match inner.fetch(&self.kind, want, deadline).await {
                    Ok(ids) => {
                        self.ring.push(&mut producer, &ids);
                        failures = 0;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(kind = ?self.kind, failures, "prefetch refill failed: {e}");
                        if !e.is_retryable() {
                            // A refused request fails again; the caller's own fetch reports it.
                            return;
                        }
                        failures += 1;
                    }
                }
            }
            if failures >= REFILL_TRIES {
                return;
            }
            let pause = crate::server::ejection(&inner.config.backoff, failures);
            tokio::time::sleep(pause.min(Duration::from_secs(5))).await;
        }
    }

    /// Fetches `n` IDs for a caller that found the buffer short, plus a batch for the buffer.
    ///
    /// Waits behind a refill in flight first: it may leave enough for this caller.
    pub(crate) async fn take_or_fetch(&self, inner: &Inner, n: usize) -> Result<Vec<u64>, Error> {
        let deadline = Instant::now() + inner.config.request_timeout;
        let mut producer = tokio::time::timeout_at(deadline, self.fill.lock())
            .await
            .map_err(|_| Error::Timeout)?;
        let mut out = Vec::with_capacity(n);
        if self.ring.take(n, &mut out).is_some() {
            return Ok(out);
        }
        let room = self.ring.capacity() - self.ring.len();
        let extra = self.batch.min(room);
        let mut ids = inner.fetch(&self.kind, n + extra, deadline).await?;
        let rest = ids.split_off(n);
        self.ring.push(&mut producer, &rest);
        Ok(ids)
    }

    /// Fetches one batch into the buffer now; returns how many IDs it then holds.
    pub(crate) async fn fill_once(&self, inner: &Inner) -> Result<usize, Error> {
        let deadline = Instant::now() + inner.config.request_timeout;
        let mut producer = tokio::time::timeout_at(deadline, self.fill.lock())
            .await
            .map_err(|_| Error::Timeout)?;
        let want = self.batch.min(self.ring.capacity() - self.ring.len());
        if want > 0 {
            let ids = inner.fetch(&self.kind, want, deadline).await?;
            self.ring.push(&mut producer, &ids);
        }
        Ok(self.ring.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn ring_keeps_order_and_bounds() {
        let (ring, mut producer) = Ring::new(5);
        assert_eq!(ring.capacity(), 8);
        assert_eq!(ring.pop(), None);
        assert_eq!(ring.push(&mut producer, &[1, 2, 3]), 3);
        assert_eq!(ring.pop(), Some((1, 2)));
        assert_eq!(ring.push(&mut producer, &[4, 5, 6, 7, 8, 9, 10, 11]), 6);
        assert_eq!(ring.len(), 8);
        let mut out = Vec::new();
        assert_eq!(ring.take(9, &mut out), None);
        assert_eq!(ring.take(3, &mut out), Some(5));
        assert_eq!(out, [2, 3, 4]);
        let rest: Vec<u64> = std::iter::from_fn(|| ring.pop().map(|(id, _)| id)).collect();
        assert_eq!(rest, [5, 6, 7, 8, 9]);
        assert_eq!(ring.len(), 0);
    }

    /// Many consumers against a producer that keeps the ring near empty and near full: every
    /// pushed ID is taken exactly once.
    #[test]
    fn ring_hands_out_each_id_once_under_contention() {
        const TOTAL: u64 = 400_000;
        let (ring, mut producer) = Ring::new(64);
        let ring = Arc::new(ring);
        let done = Arc::new(AtomicBool::new(false));
        let consumers: Vec<_> = (0..3)
            .map(|k| {
                let ring = ring.clone();
                let done = done.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut batch = Vec::new();
                    loop {
                        let took = if k == 0 {
                            ring.take(3, &mut batch)
                                .map(|_| got.extend_from_slice(&batch))
                        } else {
                            ring.pop().map(|(id, _)| got.push(id))
                        };
                        if took.is_none() {
                            if done.load(Ordering::Acquire) && ring.len() < 3 {
                                while let Some((id, _)) = ring.pop() {
                                    got.push(id);
                                }
                                return got;
                            }
                            std::hint::spin_loop();
                        }
                    }
                })
            })
            .collect();
        let mut next = 0;
        while next < TOTAL {
            let chunk: Vec<u64> = (next..(next + 17).min(TOTAL)).collect();
            next += ring.push(&mut producer, &chunk) as u64;
        }
        done.store(true, Ordering::Release);
        let mut seen = HashSet::new();
        for c in consumers {
            for id in c.join().unwrap() {
                assert!(seen.insert(id), "ID {id} taken twice");
            }
        }
        assert_eq!(seen.len() as u64, TOTAL);
    }
}
