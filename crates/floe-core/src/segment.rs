//! Segment ("number range") mode: per business tag, IDs handed out from ranges claimed in a
//! database, double-buffered so a request never waits on the database while the step keeps up.
//!
//! A [`SegmentBuffer`] holds the current segment and, once a threshold of it is used, the next
//! one. IDs are taken from a *virtual* cursor that runs through the segments back to back:
//! segment k covers virtual positions `[V_k, V_k + len_k)` and real IDs `[start_k, end_k)`.
//! Taking n IDs is one compare-and-swap on the cursor, done only when n IDs are already in the
//! buffer — so a batch is all or nothing (no ID is taken for a request that then fails) and
//! the mapping from a virtual position to a real ID never changes once published.
//!
//! The buffer does no I/O: it tells the caller when to refill and how big a step to claim
//! (adaptive, after Leaf), and the caller installs what the database returned.

use std::time::Duration;

use thiserror::Error;

use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering};

/// A claimed range of IDs, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First ID of the range.
    pub start: u64,
    /// One past the last ID.
    pub end: u64,
}

impl Segment {
    /// Number of IDs in the range.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Settings of a segment buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentConfig {
    /// Fraction of the current segment used before the next one is fetched (Leaf: 0.1).
    pub refill_threshold: f64,
    /// A segment that lasts less than this doubles the next step; one that lasts more than
    /// twice this halves it.
    pub target_lifetime: Duration,
    /// Smallest step the adaptive step goes down to.
    pub min_step: u64,
    /// Largest step the adaptive step goes up to.
    pub max_step: u64,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            refill_threshold: 0.1,
            target_lifetime: Duration::from_secs(15 * 60),
            min_step: 1,
            max_step: 100_000_000,
        }
    }
}

impl SegmentConfig {
    /// Checks the values, naming the key and the allowed range.
    pub fn validate(&self) -> Result<(), SegmentError> {
        if !(self.refill_threshold > 0.0 && self.refill_threshold < 1.0) {
            return Err(SegmentError::Config(format!(
                "segment.refill_threshold = {} is invalid: allowed is a fraction in (0, 1), e.g. 0.1",
                self.refill_threshold
            )));
        }
        if self.min_step == 0 || self.min_step > self.max_step {
            return Err(SegmentError::Config(format!(
                "segment.min_step = {} / max_step = {} are invalid: allowed is 1 <= min_step <= max_step",
                self.min_step, self.max_step
            )));
        }
        if self.target_lifetime.is_zero() {
            return Err(SegmentError::Config(
                "segment.target_lifetime must be more than 0 s".into(),
            ));
        }
        Ok(())
    }
}

/// Why IDs could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SegmentError {
    /// The buffer holds fewer IDs than asked for; a refill is needed (or under way).
    #[error("segment buffer holds {available} IDs, {wanted} wanted; waiting for the next segment")]
    Short {
        /// IDs asked for.
        wanted: u64,
        /// IDs in the buffer.
        available: u64,
    },
    /// The buffer was closed (shutdown).
    #[error("segment buffer is closed")]
    Closed,
    /// A settings value is out of range.
    #[error("{0}")]
    Config(String),
}

/// IDs taken in one step: one range, or two when the request spans into the next segment
/// (IDs are contiguous where the segments allow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// The first (or only) range.
    pub first: Segment,
    /// The rest, from the next segment.
    pub second: Option<Segment>,
    /// Whether the caller should start a refill now (the threshold was crossed).
    pub refill: bool,
}

impl Taken {
    /// Number of IDs.
    pub fn len(&self) -> u64 {
        self.first.len() + self.second.map_or(0, |s| s.len())
    }

    /// Whether no ID was taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The IDs in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u64> {
        let (a, b) = (
            self.first,
            self.second.unwrap_or(Segment { start: 0, end: 0 }),
        );
        (a.start..a.end).chain(b.start..b.end)
    }

    /// Appends the IDs to `out`.
    pub fn extend_into(&self, out: &mut Vec<u64>) {
        out.reserve(self.len() as usize);
        out.extend(self.iter());
    }
}

/// The range a refill should claim, decided by the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefillPlan {
    /// How many IDs to claim.
    pub step: u64,
}

/// What a graceful shutdown can give back to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandBack {
    /// The row's `max_id` if no other node claimed after us (the end of our last segment).
    pub expected_max_id: u64,
    /// The value to set it back to: the first ID we did not issue.
    pub new_max_id: u64,
}

/// Buffer state for health and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentState {
    /// IDs left in the buffer (current and next segment).
    pub remaining: u64,
    /// Whether the next segment is loaded.
    pub next_ready: bool,
    /// Step the next refill will claim.
    pub step: u64,
    /// Number of segments installed.
    pub refills: u64,
    /// The last refill error, cleared by a successful refill.
    pub last_error: Option<String>,
    /// The current segment, if any.
    pub current: Option<Segment>,
}

/// The published table: current and next segment, read through a seqlock.
#[derive(Debug)]
#[repr(align(128))]
struct Table {
    /// Even when stable, odd while being written.
    version: AtomicU64,
    /// Virtual position of the current segment's first ID.
    v0: AtomicU64,
    /// Real first ID of the current segment.
    s0: AtomicU64,
    /// Length of the current segment.
    len0: AtomicU64,
    /// Real first ID of the next segment (valid when `len1 > 0`).
    s1: AtomicU64,
    /// Length of the next segment; 0 while it is not loaded.
    len1: AtomicU64,
    /// Virtual position at which a refill is due; `u64::MAX` while the next segment is loaded,
    /// so the fast path needs one comparison.
    trigger: AtomicU64,
}

/// A consistent copy of the table.
#[derive(Debug, Clone, Copy)]
struct Snap {
    v0: u64,
    s0: u64,
    len0: u64,
    s1: u64,
    len1: u64,
    trigger: u64,
}

impl Snap {
    /// One past the last virtual position the buffer holds.
    #[inline]
    fn end(&self) -> u64 {
        self.v0 + self.len0 + self.len1
    }

    /// Maps virtual `[v, v + n)` (inside the buffer) to real ranges.
    #[inline]
    fn map(&self, v: u64, n: u64) -> (Segment, Option<Segment>) {
        let cur_end = self.v0 + self.len0;
        if v + n <= cur_end {
            let start = self.s0 + (v - self.v0);
            return (
                Segment {
                    start,
                    end: start + n,
                },
                None,
            );
        }
        if v >= cur_end {
            let start = self.s1 + (v - cur_end);
            return (
                Segment {
                    start,
                    end: start + n,
                },
                None,
            );
        }
        let head = cur_end - v;
        let first = Segment {
            start: self.s0 + (v - self.v0),
            end: self.s0 + self.len0,
        };
        let second = Segment {
            start: self.s1,
            end: self.s1 + (n - head),
        };
        // Consecutive segments (the usual case on one node) give one contiguous range.
        if first.end == second.start {
            (
                Segment {
                    start: first.start,
                    end: second.end,
                },
                None,
            )
        } else {
            (first, Some(second))
        }
    }
}

/// State only the slow path touches.
#[derive(Debug)]
struct Slow {
    /// Step of the next claim (adaptive).
    step: u64,
    /// When the last refill was planned (caller's clock, ms): the interval between two
    /// refills is how long a segment lasted (Leaf measures the same), for the adaptive step.
    last_plan_ms: Option<u64>,
    /// Segments installed so far.
    refills: u64,
    /// The last refill error.
    last_error: Option<String>,
    /// Whether a refill plan was handed out and not yet answered.
    in_flight: bool,
}

/// Marks a closed cursor; no real position reaches it.
const CLOSED: u64 = u64::MAX;

/// The double buffer of one tag.
#[derive(Debug)]
pub struct SegmentBuffer {
    /// Virtual position of the next ID to hand out, on its own cache line.
    taken: Cursor,
    /// The published segments.
    table: Table,
    /// Set once a refill was signalled and not yet planned, so only one caller signals.
    refill_wanted: AtomicBool,
    /// Slow-path state; never held while taking IDs.
    slow: Mutex<Slow>,
    /// Settings.
    config: SegmentConfig,
}

/// The cursor on its own cache line, away from the read-mostly table.
#[derive(Debug)]
#[repr(align(128))]
struct Cursor(AtomicU64);

impl SegmentBuffer {
    /// An empty buffer whose first claim will be `initial_step` IDs.
    pub fn new(initial_step: u64, config: SegmentConfig) -> Result<Self, SegmentError> {
        config.validate()?;
        let step = initial_step.clamp(config.min_step, config.max_step);
        Ok(SegmentBuffer {
            taken: Cursor(AtomicU64::new(0)),
            table: Table {
                version: AtomicU64::new(0),
                v0: AtomicU64::new(0),
                s0: AtomicU64::new(0),
                len0: AtomicU64::new(0),
                s1: AtomicU64::new(0),
                len1: AtomicU64::new(0),
                trigger: AtomicU64::new(0),
            },
            refill_wanted: AtomicBool::new(false),
            slow: Mutex::new(Slow {
                step,
                last_plan_ms: None,
                refills: 0,
                last_error: None,
                in_flight: false,
            }),
            config,
        })
    }

    #[inline]
    fn snapshot(&self) -> Snap {
        let t = &self.table;
        loop {
            let v1 = t.version.load(Ordering::Acquire);
            if v1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let snap = Snap {
                v0: t.v0.load(Ordering::Acquire),
                s0: t.s0.load(Ordering::Acquire),
                len0: t.len0.load(Ordering::Acquire),
                s1: t.s1.load(Ordering::Acquire),
                len1: t.len1.load(Ordering::Acquire),
                trigger: t.trigger.load(Ordering::Acquire),
            };
            // The Acquire loads above cannot move below this one, so an unchanged version
            // means no write overlapped the reads.
            if t.version.load(Ordering::Acquire) == v1 {
                return snap;
            }
        }
    }

    /// Publishes a new table; callers hold the slow lock, so there is one writer.
    fn publish(&self, snap: Snap) {
        let t = &self.table;
        let v = t.version.load(Ordering::Relaxed);
        t.version.store(v + 1, Ordering::Release);
        t.v0.store(snap.v0, Ordering::Release);
        t.s0.store(snap.s0, Ordering::Release);
        t.len0.store(snap.len0, Ordering::Release);
        t.s1.store(snap.s1, Ordering::Release);
        t.len1.store(snap.len1, Ordering::Release);
        t.trigger.store(snap.trigger, Ordering::Release);
        t.version.store(v + 2, Ordering::Release);
    }

    /// Takes `n` IDs if the buffer holds them; never blocks, never takes part of a request.
    #[inline]
    pub fn try_take(&self, n: u64) -> Result<Taken, SegmentError> {
        let snap = self.snapshot();
        let mut v = self.taken.0.load(Ordering::Acquire);
        loop {
            if v == CLOSED {
                return Err(SegmentError::Closed);
            }
            // v >= snap.v0 always: the current segment only moves on once the cursor passed it.
            let end = snap.end();
            if v + n > end {
                return Err(SegmentError::Short {
                    wanted: n,
                    available: end.saturating_sub(v),
                });
            }
            match self
                .taken
                .0
                .compare_exchange_weak(v, v + n, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    let (first, second) = snap.map(v, n);
                    let refill = v + n >= snap.trigger
                        && !self.refill_wanted.load(Ordering::Relaxed)
                        && !self.refill_wanted.swap(true, Ordering::AcqRel);
                    return Ok(Taken {
                        first,
                        second,
                        refill,
                    });
                }
                Err(actual) => {
                    std::hint::spin_loop();
                    v = actual;
                }
            }
        }
    }

    /// Whether a refill is due now: the buffer lacks `wanted` IDs or crossed the threshold,
    /// with no next segment loaded. Returns the step to claim and marks the refill in flight;
    /// answer with [`install`](Self::install) or [`refill_failed`](Self::refill_failed).
    pub fn plan_refill(&self, wanted: u64, now_ms: u64) -> Option<RefillPlan> {
        let mut slow = self.slow.lock().unwrap_or_else(|p| p.into_inner());
        if slow.in_flight {
            return None;
        }
        let held = self.due(wanted)?;
        slow.in_flight = true;
        self.adapt(&mut slow, now_ms);
        // A request bigger than a step still gets one claim that covers it.
        let step = slow.step.max(wanted.saturating_sub(held));
        Some(RefillPlan { step })
    }

    /// Whether a refill is due (see [`plan_refill`](Self::plan_refill)), without planning one.
    pub fn refill_due(&self, wanted: u64) -> bool {
        self.due(wanted).is_some()
    }

    /// `Some(IDs held)` when a refill is due: no next segment, and the threshold crossed or
    /// fewer than `wanted` IDs held.
    fn due(&self, wanted: u64) -> Option<u64> {
        let snap = self.snapshot();
        let v = self.taken.0.load(Ordering::Acquire);
        if v == CLOSED {
            return None;
        }
        let held = snap.end().saturating_sub(v);
        (snap.len1 == 0 && (v >= snap.trigger || held < wanted.max(1))).then_some(held)
    }

    /// Installs a segment the database returned. ID 0 is never issued: a segment starting at
    /// 0 starts at 1.
    pub fn install(&self, segment: Segment) {
        let mut slow = self.slow.lock().unwrap_or_else(|p| p.into_inner());
        slow.in_flight = false;
        slow.last_error = None;
        slow.refills += 1;

        let segment = Segment {
            start: segment.start.max(1),
            end: segment.end.max(1),
        };
        let mut snap = self.snapshot();
        let v = self.taken.0.load(Ordering::Acquire);
        if v == CLOSED {
            return;
        }
        // The current segment is used up: promote the next (if any) before adding.
        if v >= snap.v0 + snap.len0 && snap.len1 > 0 {
            Self::promote(&mut snap);
        }
        if v >= snap.v0 + snap.len0 && snap.len1 == 0 {
            // Nothing left at all: the new segment becomes current, at the cursor.
            snap.v0 += snap.len0;
            snap.s0 = segment.start;
            snap.len0 = segment.len();
        } else {
            snap.s1 = segment.start;
            snap.len1 = segment.len();
        }
        snap.trigger = self.trigger_of(&snap);
        self.publish(snap);
        self.refill_wanted.store(false, Ordering::Release);
    }

    /// Moves the next segment into the current slot (the current one is used up).
    fn promote(snap: &mut Snap) {
        snap.v0 += snap.len0;
        snap.s0 = snap.s1;
        snap.len0 = snap.len1;
        snap.len1 = 0;
    }

    /// Leaf's adaptive step: segments fetched less than the target lifetime apart double the
    /// step; more than twice the target apart halve it.
    fn adapt(&self, slow: &mut Slow, now_ms: u64) {
        if let Some(last) = slow.last_plan_ms {
            let interval = now_ms.saturating_sub(last);
            let target = self.config.target_lifetime.as_millis() as u64;
            if interval < target {
                slow.step = slow.step.saturating_mul(2).min(self.config.max_step);
            } else if interval > target.saturating_mul(2) {
                slow.step = (slow.step / 2).max(self.config.min_step);
            }
        }
        slow.last_plan_ms = Some(now_ms);
    }

    /// Makes a used-up current segment give way to a loaded next one; call when
    /// [`try_take`](Self::try_take) was short, before waiting for a refill.
    pub fn advance(&self) {
        let _slow = self.slow.lock().unwrap_or_else(|p| p.into_inner());
        let mut snap = self.snapshot();
        let v = self.taken.0.load(Ordering::Acquire);
        if v != CLOSED && v >= snap.v0 + snap.len0 && snap.len1 > 0 {
            Self::promote(&mut snap);
            snap.trigger = self.trigger_of(&snap);
            self.publish(snap);
        }
    }

    /// Virtual position at which the current segment's threshold is crossed (never while the
    /// next segment is loaded).
    fn trigger_of(&self, snap: &Snap) -> u64 {
        if snap.len1 > 0 {
            return u64::MAX;
        }
        snap.v0 + ((snap.len0 as f64 * self.config.refill_threshold).ceil() as u64).max(1)
    }

    /// Records a failed refill; the next [`plan_refill`](Self::plan_refill) tries again.
    pub fn refill_failed(&self, error: impl Into<String>) {
        let mut slow = self.slow.lock().unwrap_or_else(|p| p.into_inner());
        slow.in_flight = false;
        slow.last_error = Some(error.into());
    }

    /// Sets the step of the next claim (admin), within the configured bounds.
    pub fn set_step(&self, step: u64) {
        let mut slow = self.slow.lock().unwrap_or_else(|p| p.into_inner());
        slow.step = step.clamp(self.config.min_step, self.config.max_step);
    }

    /// Current state for health and metrics.
    pub fn state(&self) -> SegmentState {
        let slow = self.slow.lock().unwrap_or_else(|p| p.into_inner());
        let snap = self.snapshot();
        let v = self.taken.0.load(Ordering::Acquire);
        let remaining = if v == CLOSED {
            0
        } else {
            snap.end().saturating_sub(v)
        };
        SegmentState {
            remaining,
            next_ready: snap.len1 > 0,
            step: slow.step,
            refills: slow.refills,
            last_error: slow.last_error.clone(),
            current: (snap.len0 > 0).then_some(Segment {
                start: snap.s0,
                end: snap.s0 + snap.len0,
            }),
        }
    }

    /// Stops handing out IDs and says which unissued tail can go back to the database: the
    /// range from the first unissued ID to the end of the last claimed segment, when that is
    /// one unbroken range.
    pub fn close(&self) -> Option<HandBack> {
        let _slow = self.slow.lock().unwrap_or_else(|p| p.into_inner());
        let v = self.taken.0.swap(CLOSED, Ordering::AcqRel);
        if v == CLOSED {
            return None;
        }
        let snap = self.snapshot();
        let cur_end_v = snap.v0 + snap.len0;
        let cur_end = snap.s0 + snap.len0;
        let (last_end, first_unissued) = if snap.len1 > 0 {
            let next_end = snap.s1 + snap.len1;
            if v >= cur_end_v {
                (next_end, snap.s1 + (v - cur_end_v))
            } else if cur_end == snap.s1 {
                (next_end, snap.s0 + (v - snap.v0))
            } else {
                (next_end, snap.s1) // the current tail is not adjacent: only the next goes back
            }
        } else if snap.len0 > 0 && v < cur_end_v {
            (cur_end, snap.s0 + (v - snap.v0))
        } else {
            return None;
        };
        (first_unissued < last_end).then_some(HandBack {
            expected_max_id: last_end,
            new_max_id: first_unissued,
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn buffer(step: u64) -> SegmentBuffer {
        SegmentBuffer::new(step, SegmentConfig::default()).unwrap()
    }

    fn seg(start: u64, end: u64) -> Segment {
        Segment { start, end }
    }

    #[test]
    fn empty_buffer_asks_for_a_refill_and_serves_after_install() {
        let b = buffer(100);
        assert_eq!(
            b.try_take(1),
            Err(SegmentError::Short {
                wanted: 1,
                available: 0
            })
        );
        assert_eq!(b.plan_refill(1, 0), Some(RefillPlan { step: 100 }));
        assert_eq!(b.plan_refill(1, 0), None, "one refill in flight at a time");
        b.install(seg(0, 100));
        let t = b.try_take(3).unwrap();
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            [1, 2, 3],
            "ID 0 is never issued"
        );
    }

    #[test]
    fn threshold_triggers_one_refill_and_batches_span_segments() {
        let b = buffer(100);
        b.plan_refill(1, 0).unwrap();
        b.install(seg(1000, 1100));
        let t = b.try_take(9).unwrap();
        assert!(!t.refill);
        let t = b.try_take(1).unwrap();
        assert!(t.refill, "10% used");
        assert!(!b.try_take(1).unwrap().refill, "signalled once");
        let plan = b.plan_refill(1, 0).unwrap();
        b.install(seg(5000, 5000 + plan.step));
        // 89 left in the current segment; a batch of 100 takes them and 11 from the next.
        let t = b.try_take(100).unwrap();
        assert_eq!(t.first, seg(1011, 1100));
        assert_eq!(t.second, Some(seg(5000, 5011)));
        assert_eq!(t.iter().count(), 100);
    }

    #[test]
    fn consecutive_segments_give_contiguous_batches() {
        let b = buffer(10);
        b.plan_refill(1, 0).unwrap();
        b.install(seg(10, 20));
        b.try_take(5).unwrap();
        b.plan_refill(1, 0).unwrap();
        b.install(seg(20, 30));
        let t = b.try_take(10).unwrap();
        assert_eq!((t.first, t.second), (seg(15, 25), None));
    }

    #[test]
    fn a_short_batch_takes_nothing() {
        let b = buffer(10);
        b.plan_refill(1, 0).unwrap();
        b.install(seg(10, 20));
        assert!(matches!(
            b.try_take(11),
            Err(SegmentError::Short { available: 10, .. })
        ));
        assert_eq!(
            b.try_take(10).unwrap().first,
            seg(10, 20),
            "nothing was lost"
        );
        // A request larger than the step gets a claim that covers it.
        assert_eq!(b.plan_refill(25, 0).unwrap().step, 25);
    }

    #[test]
    fn adaptive_step_doubles_and_halves() {
        let config = SegmentConfig {
            target_lifetime: Duration::from_secs(60),
            min_step: 10,
            max_step: 1000,
            ..SegmentConfig::default()
        };
        let b = SegmentBuffer::new(100, config).unwrap();
        let mut next = 1;
        let mut cycle = |b: &SegmentBuffer, lived_ms: u64, now: &mut u64| {
            let plan = b.plan_refill(1, *now).unwrap();
            b.install(seg(next, next + plan.step));
            next += plan.step;
            *now += lived_ms;
            let left = b.state().remaining;
            b.try_take(left).unwrap();
            plan.step
        };
        let mut now = 0;
        // The step of each claim follows how long the previous segment lasted.
        assert_eq!(cycle(&b, 1_000, &mut now), 100); // first claim: the initial step
        assert_eq!(cycle(&b, 1_000, &mut now), 200); // previous lasted 1 s < 60 s: double
        assert_eq!(cycle(&b, 200_000, &mut now), 400);
        assert_eq!(cycle(&b, 200_000, &mut now), 200); // lasted 200 s > 120 s: halve
        assert_eq!(cycle(&b, 90_000, &mut now), 100);
        assert_eq!(cycle(&b, 1_000, &mut now), 100); // 90 s, within 60..=120 s: unchanged
        assert_eq!(cycle(&b, 1_000, &mut now), 200);
        for _ in 0..10 {
            cycle(&b, 1_000, &mut now);
        }
        assert_eq!(b.state().step, 1000, "capped at max_step");
    }

    #[test]
    fn close_hands_back_the_unissued_tail() {
        let b = buffer(100);
        b.plan_refill(1, 0).unwrap();
        b.install(seg(100, 200));
        b.try_take(30).unwrap();
        assert_eq!(
            b.close(),
            Some(HandBack {
                expected_max_id: 200,
                new_max_id: 130
            })
        );
        assert_eq!(b.try_take(1), Err(SegmentError::Closed));
        assert_eq!(b.close(), None);
        // With a non-adjacent next segment only the next one goes back.
        let b = buffer(100);
        b.plan_refill(1, 0).unwrap();
        b.install(seg(100, 200));
        b.try_take(50).unwrap();
        b.plan_refill(1, 0).unwrap();
        b.install(seg(500, 600));
        assert_eq!(
            b.close(),
            Some(HandBack {
                expected_max_id: 600,
                new_max_id: 500
            })
        );
    }

    #[test]
    fn failed_refill_is_retried_and_reported() {
        let b = buffer(10);
        b.plan_refill(1, 0).unwrap();
        b.refill_failed("db down");
        assert_eq!(b.state().last_error.as_deref(), Some("db down"));
        assert!(b.plan_refill(1, 0).is_some(), "never stuck after an error");
        b.install(seg(1, 11));
        assert_eq!(b.state().last_error, None);
    }

    #[test]
    fn threads_take_disjoint_ids() {
        use std::collections::HashSet;
        use std::sync::Arc;
        let b = Arc::new(buffer(1000));
        let mut next = 1u64;
        b.plan_refill(1, 0).unwrap();
        b.install(seg(next, next + 1000));
        next += 1000;
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut ids = Vec::new();
                    while ids.len() < 50_000 {
                        match b.try_take(7) {
                            Ok(t) => t.extend_into(&mut ids),
                            Err(SegmentError::Short { .. }) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                    ids
                })
            })
            .collect();
        // The refiller: keeps the buffer topped up until both takers are done.
        while !handles.iter().all(|h| h.is_finished()) {
            b.advance();
            if let Some(plan) = b.plan_refill(7, 0) {
                b.install(seg(next, next + plan.step));
                next += plan.step;
            }
            std::thread::yield_now();
        }
        let mut all = HashSet::new();
        for h in handles {
            let ids = h.join().unwrap();
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
            for id in ids {
                assert!(all.insert(id), "duplicate {id}");
            }
        }
    }
}
