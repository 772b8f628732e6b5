//! Segment ("number range") mode: per business tag, IDs handed out from ranges claimed in a
//! database, double-buffered so a request never waits on the database while the step keeps up.
//!
//! A [`SegmentBuffer`] holds the segment in use and, once a threshold of the newest one is
//! used, the next one (more when a large request needs them). IDs are taken from a *virtual*
//! cursor that runs through the segments back to back: segment k covers virtual positions
//! `[V_k, V_k + len_k)` and real IDs `[start_k, end_k)`. Taking n IDs is one compare-and-swap
//! on the cursor, done only when n IDs are already held — so a batch is all or nothing (no ID is
//! taken for a request that then fails) and the mapping from a virtual position to a real ID
//! never changes once published. A request within the segment in use is lock-free; one that
//! spans segments is served under the slow lock, where the held segments cannot change.
//!
//! The buffer does no I/O: it tells the caller when to refill and how big a step to claim
//! (adaptive, after Leaf), and the caller installs what the database returned.

use std::collections::VecDeque;
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
    /// Fraction of the newest segment used before the next one is fetched (Leaf: 0.1).
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
    pub fn validate(&self) -> Result<(), BufferError> {
        if !(self.refill_threshold > 0.0 && self.refill_threshold < 1.0) {
            return Err(BufferError::Config(format!(
                "segment.refill_threshold = {} is invalid: allowed is a fraction in (0, 1), e.g. 0.1",
                self.refill_threshold
            )));
        }
        if self.min_step == 0 || self.min_step > self.max_step {
            return Err(BufferError::Config(format!(
                "segment.min_step = {} / max_step = {} are invalid: allowed is 1 <= min_step <= max_step",
                self.min_step, self.max_step
            )));
        }
        if self.target_lifetime.is_zero() {
            return Err(BufferError::Config(
                "segment.target_lifetime must be more than 0 s".into(),
            ));
        }
        Ok(())
    }
}

/// Why the double buffer could not give IDs or take a segment (named apart from the server's
/// `SegmentError`, the error of a whole segment request).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BufferError {
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
    /// The store returned a range that is not above every range this buffer already held:
    /// serving it could repeat IDs, so it was refused (a store bug, a restored backup, two
    /// tables mixed up).
    #[error("segment [{start}, {end}) refused: it is not above the ranges already served (up to {served_end}); the segment store went backwards")]
    Regressed {
        /// Start of the refused range.
        start: u64,
        /// End of the refused range.
        end: u64,
        /// End of the highest range installed before.
        served_end: u64,
    },
}

/// Longest business tag in bytes: fits the `VARCHAR(128)` tag column of every store.
pub const MAX_TAG_LEN: usize = 128;

/// Why a business tag was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("tag {shown} is invalid: {reason}; allowed are 1..={MAX_TAG_LEN} bytes of UTF-8 without control characters")]
pub struct TagError {
    /// The tag, escaped and shortened for a message.
    pub shown: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The one rule for business tags, applied at every edge and by every store, so a tag that one
/// store accepts (SQLite keeps NUL bytes) is not refused or mangled by another (PostgreSQL).
pub fn check_tag(tag: &str) -> Result<(), TagError> {
    let reason = if tag.is_empty() {
        "it is empty"
    } else if tag.len() > MAX_TAG_LEN {
        "it is too long"
    } else if tag.chars().any(char::is_control) {
        "it holds a control character"
    } else {
        return Ok(());
    };
    let mut shown: String = format!("{tag:?}").chars().take(72).collect();
    if shown.len() < format!("{tag:?}").len() {
        shown.push('…');
    }
    Err(TagError { shown, reason })
}

/// IDs taken in one step: increasing runs, one unless the request spans segments that are not
/// adjacent (IDs are contiguous where the segments allow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The first (usually only) run.
    pub first: Segment,
    /// Further runs, from later segments.
    pub rest: Vec<Segment>,
    /// Whether the caller should start a refill now (the threshold was crossed).
    pub refill: bool,
}

impl Taken {
    /// Number of IDs.
    pub fn len(&self) -> u64 {
        self.first.len() + self.rest.iter().map(Segment::len).sum::<u64>()
    }

    /// Whether no ID was taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The IDs in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::once(&self.first)
            .chain(&self.rest)
            .flat_map(|s| s.start..s.end)
    }

    /// Appends the IDs to `out`.
    pub fn extend_into(&self, out: &mut Vec<u64>) {
        out.reserve(self.len() as usize);
        for s in std::iter::once(&self.first).chain(&self.rest) {
            out.extend(s.start..s.end);
        }
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
    /// IDs left in the buffer (every held segment).
    pub remaining: u64,
    /// Whether a segment beyond the one in use is loaded.
    pub next_ready: bool,
    /// Step the next refill will claim.
    pub step: u64,
    /// Number of segments installed.
    pub refills: u64,
    /// The last refill error, cleared by a successful refill.
    pub last_error: Option<String>,
    /// The segment in use, if any.
    pub current: Option<Segment>,
    /// The next ID [`try_take`](SegmentBuffer::try_take) hands out, while the buffer holds any.
    pub next: Option<u64>,
    /// The segment loaded after the one in use, if any (consecutive claims merge into one).
    pub next_segment: Option<Segment>,
}

/// The published part of the buffer: the segment in use, read through a seqlock.
#[derive(Debug)]
#[repr(align(128))]
struct Table {
    /// Even when stable, odd while being written.
    version: AtomicU64,
    /// Virtual position of the current segment's first ID.
    v0: AtomicU64,
    /// Real first ID of the current segment.
    s0: AtomicU64,
    /// Virtual position one past the current segment.
    cur_end: AtomicU64,
    /// Virtual position at which a refill is due.
    trigger: AtomicU64,
}

/// A consistent copy of the table.
#[derive(Debug, Clone, Copy)]
struct Snap {
    v0: u64,
    s0: u64,
    cur_end: u64,
    trigger: u64,
}

/// A held segment placed in virtual space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Placed {
    /// Virtual position of its first ID.
    v: u64,
    /// The real range.
    seg: Segment,
}

impl Placed {
    fn v_end(&self) -> u64 {
        self.v + self.seg.len()
    }
}

/// Everything else, behind the slow lock: the held segments and the refill bookkeeping.
#[derive(Debug)]
struct Slow {
    /// The segment in use (mirrors the table) followed by the loaded ones, in virtual order.
    held: VecDeque<Placed>,
    /// One past the last virtual position held.
    end: u64,
    /// Virtual position of the newest segment, for the threshold and `next_ready`.
    newest: u64,
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
    /// End of the highest range ever installed: the buffer's own witness, so a store that
    /// returns an old range again cannot make it serve an ID twice.
    served_end: u64,
}

impl Slow {
    /// Maps virtual `[v, v + n)` (inside the held segments) to increasing real runs.
    fn map(&self, v: u64, n: u64) -> Taken {
        let mut runs: Vec<Segment> = Vec::new();
        let (mut at, end) = (v, v + n);
        for p in &self.held {
            if at >= end {
                break;
            }
            if at >= p.v_end() {
                continue;
            }
            let upto = end.min(p.v_end());
            let run = Segment {
                start: p.seg.start + (at - p.v),
                end: p.seg.start + (upto - p.v),
            };
            match runs.last_mut() {
                Some(last) if last.end == run.start => last.end = run.end,
                _ => runs.push(run),
            }
            at = upto;
        }
        let mut runs = runs.into_iter();
        Taken {
            first: runs.next().unwrap_or(Segment { start: 0, end: 0 }),
            rest: runs.collect(),
            refill: false,
        }
    }
}

/// Marks a closed cursor; no real position reaches it.
const CLOSED: u64 = u64::MAX;

/// The double (or deeper) buffer of one tag.
#[derive(Debug)]
pub struct SegmentBuffer {
    /// Virtual position of the next ID to hand out, on its own cache line.
    taken: Cursor,
    /// The segment in use, published for the lock-free path.
    table: Table,
    /// Set once a refill was signalled and not yet installed, so only one caller signals.
    refill_wanted: AtomicBool,
    /// Slow-path state; never held by a request served from the current segment.
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
    pub fn new(initial_step: u64, config: SegmentConfig) -> Result<Self, BufferError> {
        config.validate()?;
        let step = initial_step.clamp(config.min_step, config.max_step);
        Ok(SegmentBuffer {
            taken: Cursor(AtomicU64::new(0)),
            table: Table {
                version: AtomicU64::new(0),
                v0: AtomicU64::new(0),
                s0: AtomicU64::new(0),
                cur_end: AtomicU64::new(0),
                trigger: AtomicU64::new(0),
            },
            refill_wanted: AtomicBool::new(false),
            slow: Mutex::new(Slow {
                held: VecDeque::new(),
                end: 0,
                newest: 0,
                step,
                last_plan_ms: None,
                refills: 0,
                last_error: None,
                in_flight: false,
                served_end: 0,
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
                crate::sync::spin();
                continue;
            }
            let snap = Snap {
                v0: t.v0.load(Ordering::Acquire),
                s0: t.s0.load(Ordering::Acquire),
                cur_end: t.cur_end.load(Ordering::Acquire),
                trigger: t.trigger.load(Ordering::Acquire),
            };
            // The Acquire loads above cannot move below this one, so an unchanged version
            // means no write overlapped the reads.
            if t.version.load(Ordering::Acquire) == v1 {
                return snap;
            }
        }
    }

    /// Publishes the segment in use; callers hold the slow lock, so there is one writer.
    fn publish(&self, slow: &Slow) {
        let (v0, s0, cur_end) = match slow.held.front() {
            Some(p) => (p.v, p.seg.start, p.v_end()),
            None => (slow.end, 0, slow.end),
        };
        let newest_len = slow.held.back().map_or(0, |p| p.v_end() - slow.newest);
        let trigger =
            slow.newest + ((newest_len as f64 * self.config.refill_threshold).ceil() as u64).max(1);
        let t = &self.table;
        let v = t.version.load(Ordering::Relaxed);
        t.version.store(v + 1, Ordering::Release);
        t.v0.store(v0, Ordering::Release);
        t.s0.store(s0, Ordering::Release);
        t.cur_end.store(cur_end, Ordering::Release);
        t.trigger.store(trigger, Ordering::Release);
        t.version.store(v + 2, Ordering::Release);
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, Slow> {
        self.slow.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this take crossed the threshold and is the first to say so.
    #[inline]
    fn signal(&self, end: u64, trigger: u64) -> bool {
        end >= trigger
            && !self.refill_wanted.load(Ordering::Relaxed)
            && !self.refill_wanted.swap(true, Ordering::AcqRel)
    }

    /// Takes `n` IDs if the buffer holds them; never blocks on I/O, never takes part of a
    /// request. Requests within the segment in use take one compare-and-swap; a request that
    /// spans segments is served under the slow lock.
    #[inline]
    pub fn try_take(&self, n: u64) -> Result<Taken, BufferError> {
        let snap = self.snapshot();
        let mut v = self.taken.0.load(Ordering::Acquire);
        // v >= snap.v0 always: the segment in use only moves on once the cursor passed it.
        // `checked_add`: an absurd `n` must be short, never wrap the cursor backwards.
        while v != CLOSED && v.checked_add(n).is_some_and(|end| end <= snap.cur_end) {
            match self
                .taken
                .0
                .compare_exchange_weak(v, v + n, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    let start = snap.s0 + (v - snap.v0);
                    return Ok(Taken {
                        first: Segment {
                            start,
                            end: start + n,
                        },
                        rest: Vec::new(),
                        refill: self.signal(v + n, snap.trigger),
                    });
                }
                Err(actual) => {
                    crate::sync::spin();
                    v = actual;
                }
            }
        }
        if v == CLOSED {
            return Err(BufferError::Closed);
        }
        self.take_slow(n)
    }

    /// A request that does not fit the segment in use. Under the lock the held segments cannot
    /// change and lock-free takers cannot pass the current end, so the mapping is stable.
    fn take_slow(&self, n: u64) -> Result<Taken, BufferError> {
        let mut slow = self.lock();
        let mut v = self.taken.0.load(Ordering::Acquire);
        loop {
            if v == CLOSED {
                return Err(BufferError::Closed);
            }
            if v.checked_add(n).is_none_or(|end| end > slow.end) {
                self.promote(&mut slow, v);
                return Err(BufferError::Short {
                    wanted: n,
                    available: slow.end.saturating_sub(v),
                });
            }
            match self
                .taken
                .0
                .compare_exchange_weak(v, v + n, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(actual) => v = actual,
            }
        }
        let mut taken = slow.map(v, n);
        let trigger = self.table.trigger.load(Ordering::Acquire);
        taken.refill = self.signal(v + n, trigger);
        self.promote(&mut slow, v + n);
        Ok(taken)
    }

    /// Drops segments the cursor has passed, so the next one becomes the segment in use.
    fn promote(&self, slow: &mut Slow, cursor: u64) {
        let mut changed = false;
        while slow.held.len() > 1 && slow.held[0].v_end() <= cursor {
            slow.held.pop_front();
            changed = true;
        }
        if changed {
            self.publish(slow);
        }
    }

    /// Whether a refill is due now: the cursor is past the threshold of the newest segment,
    /// or fewer than `wanted` IDs are held. Returns the step to claim and marks the refill in
    /// flight; answer with [`install`](Self::install) or [`refill_failed`](Self::refill_failed).
    pub fn plan_refill(&self, wanted: u64, now_ms: u64) -> Option<RefillPlan> {
        let mut slow = self.lock();
        if slow.in_flight {
            return None;
        }
        let held = self.due(&slow, wanted)?;
        slow.in_flight = true;
        self.adapt(&mut slow, now_ms);
        // A request bigger than a step still gets one claim that covers it.
        let step = slow.step.max(wanted.saturating_sub(held));
        Some(RefillPlan { step })
    }

    /// Whether a refill is due (see [`plan_refill`](Self::plan_refill)), without planning one.
    pub fn refill_due(&self, wanted: u64) -> bool {
        let slow = self.lock();
        self.due(&slow, wanted).is_some()
    }

    /// `Some(IDs held)` when a refill is due.
    fn due(&self, slow: &Slow, wanted: u64) -> Option<u64> {
        let v = self.taken.0.load(Ordering::Acquire);
        if v == CLOSED {
            return None;
        }
        let held = slow.end.saturating_sub(v);
        let trigger = self.table.trigger.load(Ordering::Acquire);
        (v >= trigger || held < wanted.max(1)).then_some(held)
    }

    /// Installs a segment the database returned. A segment that continues the newest one
    /// merges into it, so one node's consecutive claims give unbroken runs. ID 0 is never
    /// issued: a segment starting at 0 starts at 1.
    ///
    /// A segment that starts below the end of any segment installed before is refused with
    /// [`BufferError::Regressed`] and recorded as a failed refill: whatever the store says,
    /// this buffer never hands out an ID twice.
    pub fn install(&self, segment: Segment) -> Result<(), BufferError> {
        let mut slow = self.lock();
        slow.in_flight = false;
        let segment = Segment {
            start: segment.start.max(1),
            end: segment.end.max(1),
        };
        if segment.start < slow.served_end || segment.end < segment.start {
            let e = BufferError::Regressed {
                start: segment.start,
                end: segment.end,
                served_end: slow.served_end,
            };
            slow.last_error = Some(e.to_string());
            return Err(e);
        }
        slow.last_error = None;
        slow.refills += 1;
        let v = self.taken.0.load(Ordering::Acquire);
        if v == CLOSED || segment.is_empty() {
            return Ok(());
        }
        slow.served_end = segment.end;
        // Segments the cursor has passed are gone for good.
        while slow.held.front().is_some_and(|p| p.v_end() <= v) {
            slow.held.pop_front();
        }
        let at = slow.end;
        match slow.held.back_mut() {
            Some(last) if last.seg.end == segment.start => last.seg.end = segment.end,
            _ => slow.held.push_back(Placed {
                v: at,
                seg: segment,
            }),
        }
        slow.newest = at;
        slow.end = at + segment.len();
        self.publish(&slow);
        self.refill_wanted.store(false, Ordering::Release);
        Ok(())
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

    /// Lets a used-up segment give way to the next one; harmless to call any time.
    pub fn advance(&self) {
        let mut slow = self.lock();
        let v = self.taken.0.load(Ordering::Acquire);
        if v != CLOSED {
            self.promote(&mut slow, v);
        }
    }

    /// Records a failed refill; the next [`plan_refill`](Self::plan_refill) tries again.
    pub fn refill_failed(&self, error: impl Into<String>) {
        let mut slow = self.lock();
        slow.in_flight = false;
        slow.last_error = Some(error.into());
    }

    /// Sets the step of the next claim (admin), within the configured bounds.
    pub fn set_step(&self, step: u64) {
        self.lock().step = step.clamp(self.config.min_step, self.config.max_step);
    }

    /// Current state for health and metrics.
    pub fn state(&self) -> SegmentState {
        let slow = self.lock();
        let v = self.taken.0.load(Ordering::Acquire);
        let remaining = if v == CLOSED {
            0
        } else {
            slow.end.saturating_sub(v)
        };
        // The segment the cursor is in (the table moves past a used-up one lazily).
        let at = slow.held.iter().position(|p| v < p.v_end()).unwrap_or(0);
        let next = slow
            .held
            .get(at)
            .filter(|p| v != CLOSED && p.v <= v && v < p.v_end())
            .map(|p| p.seg.start + (v - p.v));
        SegmentState {
            remaining,
            next_ready: v != CLOSED && v < slow.newest,
            step: slow.step,
            refills: slow.refills,
            last_error: slow.last_error.clone(),
            current: slow.held.get(at).map(|p| p.seg),
            next,
            next_segment: slow.held.get(at + 1).map(|p| p.seg),
        }
    }

    /// Stops handing out IDs and says which unissued tail can go back to the database: from
    /// the first unissued ID to the end of the last claimed segment, when that is one unbroken
    /// range; otherwise the last segment whole, if none of it was issued.
    pub fn close(&self) -> Option<HandBack> {
        let slow = self.lock();
        let v = self.taken.0.swap(CLOSED, Ordering::AcqRel);
        if v == CLOSED {
            return None;
        }
        let last = slow.held.back()?;
        let first_unissued = if v >= last.v {
            last.seg.start + (v - last.v)
        } else {
            last.seg.start
        };
        (first_unissued < last.seg.end).then_some(HandBack {
            expected_max_id: last.seg.end,
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
    fn state_shows_next_id_and_next_segment() {
        let b = buffer(100);
        assert_eq!(b.state().next, None);
        b.plan_refill(1, 0).unwrap();
        b.install(seg(1000, 1100)).unwrap();
        b.try_take(10).unwrap();
        let s = b.state();
        assert_eq!(
            (s.current, s.next, s.next_segment),
            (Some(seg(1000, 1100)), Some(1010), None)
        );
        b.plan_refill(1, 0).unwrap();
        b.install(seg(5000, 5100)).unwrap();
        assert_eq!(b.state().next_segment, Some(seg(5000, 5100)));
        b.try_take(90).unwrap();
        let s = b.state();
        assert_eq!(
            (s.current, s.next, s.next_segment),
            (Some(seg(5000, 5100)), Some(5000), None)
        );
    }

    #[test]
    fn empty_buffer_asks_for_a_refill_and_serves_after_install() {
        let b = buffer(100);
        assert_eq!(
            b.try_take(1),
            Err(BufferError::Short {
                wanted: 1,
                available: 0
            })
        );
        assert_eq!(b.plan_refill(1, 0), Some(RefillPlan { step: 100 }));
        assert_eq!(b.plan_refill(1, 0), None, "one refill in flight at a time");
        b.install(seg(0, 100)).unwrap();
        let t = b.try_take(3).unwrap();
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            [1, 2, 3],
            "ID 0 is never issued"
        );
        assert_eq!(b.state().next, Some(4));
        b.try_take(96).unwrap();
        assert_eq!(b.state().next, None, "nothing held");
    }

    #[test]
    fn threshold_triggers_one_refill_and_batches_span_segments() {
        let b = buffer(100);
        b.plan_refill(1, 0).unwrap();
        b.install(seg(1000, 1100)).unwrap();
        let t = b.try_take(9).unwrap();
        assert!(!t.refill);
        let t = b.try_take(1).unwrap();
        assert!(t.refill, "10% used");
        assert!(!b.try_take(1).unwrap().refill, "signalled once");
        let plan = b.plan_refill(1, 0).unwrap();
        b.install(seg(5000, 5000 + plan.step)).unwrap();
        // 89 left in the current segment; a batch of 100 takes them and 11 from the next.
        let t = b.try_take(100).unwrap();
        assert_eq!(t.first, seg(1011, 1100));
        assert_eq!(t.rest, [seg(5000, 5011)]);
        assert_eq!(t.iter().count(), 100);
    }

    #[test]
    fn consecutive_segments_give_contiguous_batches() {
        let b = buffer(10);
        b.plan_refill(1, 0).unwrap();
        b.install(seg(10, 20)).unwrap();
        b.try_take(5).unwrap();
        b.plan_refill(1, 0).unwrap();
        b.install(seg(20, 30)).unwrap();
        let t = b.try_take(10).unwrap();
        assert_eq!((t.first, t.rest.len()), (seg(15, 25), 0));
    }

    #[test]
    fn an_absurd_request_is_short_not_a_wrapped_cursor() {
        let b = buffer(10);
        b.plan_refill(1, 0).unwrap();
        b.install(seg(10, 20)).unwrap();
        b.try_take(3).unwrap();
        assert!(matches!(
            b.try_take(u64::MAX),
            Err(BufferError::Short { .. })
        ));
        assert!(matches!(
            b.try_take(u64::MAX - 2),
            Err(BufferError::Short { .. })
        ));
        assert_eq!(b.try_take(1).unwrap().first, seg(13, 14));
    }

    #[test]
    fn a_short_batch_takes_nothing() {
        let b = buffer(10);
        b.plan_refill(1, 0).unwrap();
        b.install(seg(10, 20)).unwrap();
        assert!(matches!(
            b.try_take(11),
            Err(BufferError::Short { available: 10, .. })
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
            b.install(seg(next, next + plan.step)).unwrap();
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
        b.install(seg(100, 200)).unwrap();
        b.try_take(30).unwrap();
        assert_eq!(
            b.close(),
            Some(HandBack {
                expected_max_id: 200,
                new_max_id: 130
            })
        );
        assert_eq!(b.try_take(1), Err(BufferError::Closed));
        assert_eq!(b.close(), None);
        // With a non-adjacent next segment only the next one goes back.
        let b = buffer(100);
        b.plan_refill(1, 0).unwrap();
        b.install(seg(100, 200)).unwrap();
        b.try_take(50).unwrap();
        b.plan_refill(1, 0).unwrap();
        b.install(seg(500, 600)).unwrap();
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
        b.install(seg(1, 11)).unwrap();
        assert_eq!(b.state().last_error, None);
    }

    #[test]
    fn threads_take_disjoint_ids() {
        use std::collections::HashSet;
        use std::sync::Arc;
        let b = Arc::new(buffer(1000));
        let mut next = 1u64;
        b.plan_refill(1, 0).unwrap();
        b.install(seg(next, next + 1000)).unwrap();
        next += 1000;
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut ids = Vec::new();
                    while ids.len() < 50_000 {
                        match b.try_take(7) {
                            Ok(t) => t.extend_into(&mut ids),
                            Err(BufferError::Short { .. }) => std::thread::yield_now(),
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
                b.install(seg(next, next + plan.step)).unwrap();
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
