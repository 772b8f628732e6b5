//! The snowflake generator.
//!
//! Each lane keeps one atomic word, `tick << S | seq` (S = sequence bits). Reserving n IDs is one
//! compare-and-swap that moves the word forward by n: a batch costs one atomic operation, and a
//! sequence that overflows carries into the next tick, which is exactly "borrow the next tick".
//! Around that CAS the generator enforces the invariants of DESIGN.md:
//!
//! - logical time never runs more than `max_drift` ticks ahead of the highest wall time seen;
//!   past that the caller is told how long to wait ([`GenError::WouldWait`]), holding no lock;
//! - a wall clock that steps back by up to `max_rollback` is ignored (logical time goes on);
//!   further back, [`GenError::ClockRollback`] until the clock catches up;
//! - no ID is issued in a tick that the high-water mark does not cover yet, so a restarted node
//!   starts after every ID it ever issued.
//!
//! The issuing path trusts the clock's `now_ms`, which may be a cached reading
//! ([`TickerClock`](crate::TickerClock)); a decision to wait or to refuse is taken again on a
//! fresh reading (`now_us`) first, so a stale cache can delay the time field, never a caller.
//! [`LaneHandle`] hands single IDs out of small blocks reserved on its lane, so one ID costs
//! a clock load and no shared write.

use std::time::Duration;

use thiserror::Error;
use wide::u64x4;

use crate::clock::Clock;
use crate::highwater::{HighWater, HighWaterError};
use crate::layout::{mask, rfc3339, FieldKind, Identity, Layout, LayoutError};
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, CacheLine, Mutex, Ordering};

/// A lane word that marks the generator as shut down; no real state reaches it.
const CLOSED: u64 = u64::MAX;

/// How far in the future a high-water mark may lie before it is treated as corrupt.
pub const MAX_HIGH_WATER_LEAD_MS: u64 = 86_400_000;

/// Why the generator did not issue IDs.
#[derive(Debug, Error)]
pub enum GenError {
    /// The wall clock is further behind the logical time than `max_rollback` allows.
    #[error("clock moved back {behind_ms} ms behind the time this node already issued IDs for (max_rollback is {limit_ms} ms); refusing until the clock catches up")]
    ClockRollback {
        /// How far behind, in ms.
        behind_ms: u64,
        /// The configured tolerance, in ms.
        limit_ms: u64,
    },
    /// The clock reads a time before the layout's epoch.
    #[error("clock reads {now}, before the layout epoch {epoch}")]
    ClockBeforeEpoch {
        /// The clock reading (RFC 3339).
        now: String,
        /// The epoch (RFC 3339).
        epoch: String,
    },
    /// The sequence is used up as far ahead as `max_drift` allows: retry after `wait`.
    #[error("sequence exhausted up to max_drift; retry in {wait:?}")]
    WouldWait {
        /// How long until the wall clock has moved far enough.
        wait: Duration,
    },
    /// A batch larger than the layout can ever issue at once.
    #[error("batch of {count} IDs is over the {max} this layout can issue at once (sequence space within max_drift)")]
    BatchTooLarge {
        /// Requested.
        count: u64,
        /// Largest possible.
        max: u64,
    },
    /// The layout's time field is used up.
    #[error("the layout's time field ran out on {end}; move the epoch")]
    LayoutExhausted {
        /// When it ran out (RFC 3339).
        end: String,
    },
    /// The high-water mark could not be read or written; no ID was issued.
    #[error(transparent)]
    HighWater(#[from] HighWaterError),
    /// The persisted high-water mark lies implausibly far ahead of the clock.
    #[error("high-water mark {mark} is more than a day ahead of the clock ({now}): the clock is wrong or the mark is corrupt; fix the clock, or remove the mark if you are sure no ID was issued after now")]
    HighWaterFuture {
        /// The stored mark (RFC 3339).
        mark: String,
        /// The clock (RFC 3339).
        now: String,
    },
    /// The lane index is not one of this generator's lanes.
    #[error("lane {lane} is out of range 0..{lanes}")]
    NoLane {
        /// Requested lane.
        lane: usize,
        /// Number of lanes.
        lanes: usize,
    },
    /// The generator was shut down.
    #[error("generator is shut down")]
    Closed,
    /// A configuration value is out of range.
    #[error("{key} = {value} is invalid: {allowed}")]
    Config {
        /// The configuration key.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// The layout is unusable now (expired, epoch in the future).
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// Volume hiding (GoldFlake): random forward jumps of logical time and random sequence starts,
/// so the IDs do not reveal how many were issued.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeHiding {
    /// Probability, per tick advance, of jumping logical time forward.
    pub jump_probability: f64,
    /// Largest jump in ticks (a jump is uniform in 1..=max); must not exceed max_drift.
    pub max_jump_ticks: u64,
    /// Start each tick's sequence at a random offset in the lower half of the sequence space.
    pub random_seq_start: bool,
    /// Seed of the generator's random numbers (the caller supplies entropy; the core does no I/O).
    pub seed: u64,
}

/// Generator settings beyond the layout and identity.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    /// Number of lanes; 0 means every lane the layout's lane field can address. With 1 lane a
    /// lane field directly above the sequence is merged into it (one wider counter).
    pub lanes: u32,
    /// A clock step back up to this much is served from logical time without error.
    pub max_rollback: Duration,
    /// How far logical time may run ahead of the wall clock by borrowing future ticks.
    pub max_drift: Duration,
    /// How far ahead of issued IDs each high-water write reaches (one write per window).
    pub high_water_window: Duration,
    /// Volume hiding, off when `None`.
    pub volume: Option<VolumeHiding>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            lanes: 0,
            max_rollback: Duration::from_secs(5),
            max_drift: Duration::from_secs(1),
            high_water_window: Duration::from_secs(2),
            volume: None,
        }
    }
}

/// The shifts and masks that turn a lane word into an ID.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Sequence bits per tick (lane bits included when merged).
    seq_bits: u32,
    /// Shift of the time field.
    time_shift: u32,
    /// Shift of the (possibly merged) sequence field.
    seq_shift: u32,
    /// Shift of the lane field, if lanes are kept apart from the sequence.
    lane_shift: Option<u32>,
    /// Node identity bits, OR-ed into every ID.
    node_bits: u64,
    /// The largest tick the time field holds.
    max_tick: u64,
    /// Tick length in ms.
    unit_ms: u64,
    /// Epoch in Unix ms.
    epoch_ms: u64,
}

impl Plan {
    fn tick_start_ms(&self, tick: u64) -> u64 {
        self.epoch_ms
            .saturating_add(tick.saturating_mul(self.unit_ms))
    }

    /// The tick of a clock reading; a reading before the epoch wraps to a huge tick, which
    /// callers that cannot fail (the handle's freshness test) treat as "not fresh".
    #[inline(always)]
    fn tick_of(&self, ms: u64) -> u64 {
        let since = ms.wrapping_sub(self.epoch_ms);
        // A division costs more than the rest of the hot path; ms layouts skip it.
        if self.unit_ms == 1 {
            since
        } else {
            since / self.unit_ms
        }
    }

    /// The first lane word past tick `tick`.
    fn word_after(&self, tick: u64) -> u64 {
        word_after(tick, self.seq_bits)
    }
}

/// The first lane word past tick `tick` with `seq_bits` sequence bits (saturating: the last
/// tick of a word that fills 64 bits).
fn word_after(tick: u64, seq_bits: u32) -> u64 {
    tick.saturating_add(1).saturating_mul(1 << seq_bits)
}

/// One lane's word on its own cache line, so lanes on different cores do not false-share.
type LaneWord = CacheLine<AtomicU64>;

/// Why one attempt at a reservation, taken at one clock reading, did not issue.
enum Stop {
    /// The clock reads this many ticks behind the highest tick seen, more than `max_rollback`.
    Rollback {
        /// Ticks behind.
        behind: u64,
    },
    /// The reservation's last tick lies past the drift limit.
    Wait {
        /// The last tick the reservation needs.
        tick: u64,
    },
    /// Final, whatever the clock reads; boxed so the issuing path moves two words, not an
    /// error's worth of them.
    Fail(Box<GenError>),
}

impl From<GenError> for Stop {
    fn from(e: GenError) -> Self {
        Stop::Fail(Box::new(e))
    }
}

/// Random state for volume hiding; touched only when a tick advances.
#[derive(Debug)]
struct Volume {
    /// `jump_probability` scaled to the u64 range.
    threshold: u64,
    /// Largest jump in ticks.
    max_jump: u64,
    /// Whether sequences start at a random offset.
    random_seq: bool,
    /// splitmix64 counter; races between threads only mix the randomness, never correctness.
    rng: AtomicU64,
}

impl Volume {
    fn next(&self) -> u64 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A block of IDs reserved in one atomic step: consecutive lane words `first..first+len`.
#[derive(Debug, Clone, Copy)]
pub struct Reservation {
    /// First lane word reserved.
    first: u64,
    /// Number of IDs.
    len: u64,
    /// Sequence bits (lane bits included when merged).
    seq_bits: u32,
    /// Shift of the time field.
    time_shift: u32,
    /// Shift of the sequence field.
    seq_shift: u32,
    /// Node and lane bits, the same for every ID of the reservation.
    fixed: u64,
}

impl Reservation {
    #[inline(always)]
    fn id_at(&self, word: u64) -> u64 {
        ((word >> self.seq_bits) << self.time_shift)
            | ((word & mask(self.seq_bits)) << self.seq_shift)
            | self.fixed
    }

    /// Number of IDs reserved.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no ID was reserved.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first ID (the smallest, for layouts with time above the sequence).
    pub fn first(&self) -> Option<u64> {
        (self.len > 0).then(|| self.id_at(self.first))
    }

    /// The last ID.
    pub fn last(&self) -> Option<u64> {
        (self.len > 0).then(|| self.id_at(self.first + self.len - 1))
    }

    /// The tick of the last ID, e.g. for reporting logical time.
    pub fn last_tick(&self) -> Option<u64> {
        (self.len > 0).then(|| (self.first + self.len - 1) >> self.seq_bits)
    }

    /// The IDs in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u64> {
        let r = *self;
        (r.first..r.first + r.len).map(move |w| r.id_at(w))
    }

    /// The run of IDs from lane word `word` to `end` or to the end of that word's tick,
    /// whichever comes first: its first ID and length. Within a run only the sequence field
    /// counts up, so its IDs are `first + k * step` — an add per ID instead of composing each.
    #[inline]
    fn run_from(&self, word: u64, end: u64) -> (u64, u64) {
        let run_end = end.min(word_after(word >> self.seq_bits, self.seq_bits));
        (self.id_at(word), run_end - word)
    }

    /// One in the sequence field: the distance between consecutive IDs of a run.
    #[inline]
    fn step(&self) -> u64 {
        1 << self.seq_shift
    }

    /// Calls `each(first_id, len)` for the runs of the reservation, in order.
    #[inline]
    fn for_each_run(&self, mut each: impl FnMut(u64, u64)) {
        let (mut w, end) = (self.first, self.first + self.len);
        while w < end {
            let (id, len) = self.run_from(w, end);
            each(id, len);
            w += len;
        }
    }

    /// Appends the IDs to `out`, reserving space once.
    pub fn extend_into(&self, out: &mut Vec<u64>) {
        let start = out.len();
        out.resize(start + self.len as usize, 0);
        self.fill(&mut out[start..]);
    }

    /// Writes the IDs into `out`, which must hold exactly `len` elements.
    pub fn fill(&self, out: &mut [u64]) {
        assert_eq!(out.len() as u64, self.len, "buffer length must match");
        let step = self.step();
        let mut rest = out;
        self.for_each_run(|id, len| {
            let (run, tail) = std::mem::take(&mut rest).split_at_mut(len as usize);
            write_run(run, id, step);
            rest = tail;
        });
    }
}

/// Writes `id, id + step, id + 2·step, …` into `run`.
///
/// Eight IDs at a time from two 4-lane vectors advanced by `8 · step`, instead of `id + k · step` per ID: x86-64's
/// baseline vector ISA has no 64-bit multiply, so the multiply form compiled to ~3.4 instructions per ID, and the
/// plain induction form is scalarised by LLVM into one 8-byte store per ID. `wide`'s vectors keep it to one 16-byte
/// store (32 with AVX2) per two (four) IDs, which is what a batch of 1,000 is bound by. Additions wrap because the
/// vectors are advanced once past the run's last ID; those values are never written.
#[inline]
fn write_run(run: &mut [u64], id: u64, step: u64) {
    let lane = |k: u64| id.wrapping_add(k.wrapping_mul(step));
    let mut lo = u64x4::from([lane(0), lane(1), lane(2), lane(3)]);
    let mut hi = lo + u64x4::splat(step.wrapping_mul(4));
    let stride = u64x4::splat(step.wrapping_mul(8));
    let mut chunks = run.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let (a, b) = chunk.split_at_mut(4);
        a.copy_from_slice(&lo.to_array());
        b.copy_from_slice(&hi.to_array());
        lo += stride;
        hi += stride;
    }
    let next = lo.to_array()[0];
    for (k, slot) in chunks.into_remainder().iter_mut().enumerate() {
        *slot = next.wrapping_add((k as u64).wrapping_mul(step));
    }
}

/// Wall-clock position as seen by the generator, for health reports and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockState {
    /// Current wall time, Unix ms.
    pub wall_ms: u64,
    /// Start of the highest tick any lane has reached (issued or borrowed), Unix ms.
    pub logical_ms: u64,
    /// How far the wall clock is behind the highest wall time seen (a rollback), ms.
    pub behind_ms: u64,
    /// Whether the rollback exceeds `max_rollback`, so IDs are refused.
    pub rollback_exceeded: bool,
    /// End of the window covered by the persisted high-water mark, Unix ms.
    pub high_water_ms: u64,
}

/// The snowflake generator for one node identity.
#[derive(Debug)]
pub struct Generator<C> {
    /// The layout IDs follow.
    layout: Layout,
    /// This node's identity.
    identity: Identity,
    /// Shifts and masks derived from layout, identity and lane count.
    plan: Plan,
    /// One word per lane; a connection is bound to one lane so its IDs increase.
    lanes: Box<[LaneWord]>,
    /// Round-robin counter for binding connections to lanes.
    next_lane: AtomicUsize,
    /// Highest wall tick observed (or the restart floor): the reference for drift and rollback.
    seen: LaneWord,
    /// Exclusive end of the ticks covered by the persisted high-water mark.
    hw_end: AtomicU64,
    /// The lane words at start, to tell at shutdown whether anything was issued.
    start_word: u64,
    /// Serialises high-water writes; held only on the slow path, never while issuing.
    high_water: Mutex<Box<dyn HighWater>>,
    /// Set at shutdown; the lane words are then `CLOSED`.
    closed: AtomicBool,
    /// The time source.
    clock: C,
    /// `max_rollback` in ticks.
    max_rollback: u64,
    /// `max_drift` in ticks.
    max_drift: u64,
    /// High-water window in ticks.
    window: u64,
    /// Smallest step of a high-water write while logical time runs ahead of the wall clock
    /// (after a restart or during a rollback): small, so a crash there pushes the next start
    /// only this far ahead; not 1, so such writes stay rare.
    stride: u64,
    /// Largest batch that can ever be satisfied.
    max_batch: u64,
    /// Volume hiding state, if enabled.
    volume: Option<Volume>,
}

fn config_err(key: &'static str, value: impl ToString, allowed: impl Into<String>) -> GenError {
    GenError::Config {
        key,
        value: value.to_string(),
        allowed: allowed.into(),
    }
}

impl<C: Clock> Generator<C> {
    /// Builds a generator, reading the high-water mark so IDs start after any issued before.
    pub fn new(
        layout: Layout,
        identity: Identity,
        config: GeneratorConfig,
        clock: C,
        high_water: Box<dyn HighWater>,
    ) -> Result<Self, GenError> {
        let now_ms = clock.now_ms();
        layout.check_at(now_ms)?;
        let time = layout.time_spec();
        let unit = time.unit_ms;
        let ticks = |d: Duration| d.as_millis() as u64 / unit;

        let seq = layout.seq_field().clone();
        let lane_field = layout.field(FieldKind::Lane).cloned();
        let addressable = lane_field.as_ref().map_or(1, |f| 1u64 << f.width.min(16));
        let lanes = if config.lanes == 0 {
            addressable
        } else {
            u64::from(config.lanes)
        };
        if lanes > addressable {
            return Err(config_err(
                "lanes",
                config.lanes,
                format!("the layout's lane field addresses 1..={addressable} lanes"),
            ));
        }
        // With one lane, a lane field right above the sequence becomes more sequence bits.
        let merge = lanes == 1
            && lane_field
                .as_ref()
                .is_some_and(|l| l.shift == seq.shift + seq.width);
        let (seq_bits, lane_shift) = match (&lane_field, merge) {
            (Some(l), true) => (seq.width + l.width, None),
            (Some(l), false) => (seq.width, Some(l.shift)),
            (None, _) => (seq.width, None),
        };
        let time_field = layout.time_field();
        let plan = Plan {
            seq_bits,
            time_shift: time_field.shift,
            seq_shift: seq.shift,
            lane_shift,
            node_bits: layout.node_bits(&identity),
            max_tick: mask(time_field.width),
            unit_ms: unit,
            epoch_ms: time.epoch_ms,
        };

        let max_rollback = ticks(config.max_rollback);
        let max_drift = ticks(config.max_drift);
        let window = ticks(config.high_water_window).max(1);
        // After a crash the restart floor can lie window + drift + 1 ticks ahead of the clock;
        // within max_rollback the node serves at once instead of refusing until the clock
        // catches up.
        if window + max_drift >= max_rollback {
            return Err(config_err(
                "high_water_window",
                format!("{:?}", config.high_water_window),
                format!(
                    "high_water_window + max_drift ({:?} + {:?}) must be less than max_rollback ({:?}) by at least one tick ({unit} ms), so a crashed node can restart at once",
                    config.high_water_window, config.max_drift, config.max_rollback
                ),
            ));
        }
        let volume = match &config.volume {
            None => None,
            Some(v) => {
                if !(0.0..=1.0).contains(&v.jump_probability) {
                    return Err(config_err(
                        "volume.jump_probability",
                        v.jump_probability,
                        "a probability in 0.0..=1.0",
                    ));
                }
                if v.max_jump_ticks == 0 || v.max_jump_ticks > max_drift {
                    return Err(config_err(
                        "volume.max_jump_ticks",
                        v.max_jump_ticks,
                        format!("1..={max_drift} (max_drift in ticks; jumps borrow future ticks)"),
                    ));
                }
                Some(Volume {
                    threshold: (v.jump_probability * u64::MAX as f64) as u64,
                    max_jump: v.max_jump_ticks,
                    random_seq: v.random_seq_start,
                    rng: AtomicU64::new(v.seed),
                })
            }
        };
        let per_tick = 1u64 << seq_bits;
        let lost_to_offset = if volume.as_ref().is_some_and(|v| v.random_seq) {
            per_tick / 2
        } else {
            0
        };
        let max_batch = (max_drift + 1).saturating_mul(per_tick) - lost_to_offset;

        // Restart floor: the first tick that starts at or after the persisted mark.
        let floor = match high_water.load()? {
            Some(mark) if mark > now_ms.saturating_add(MAX_HIGH_WATER_LEAD_MS) => {
                return Err(GenError::HighWaterFuture {
                    mark: rfc3339(mark),
                    now: rfc3339(now_ms),
                })
            }
            Some(mark) => mark.saturating_sub(time.epoch_ms).div_ceil(unit),
            None => 0,
        };
        let now_tick = layout
            .tick_at(now_ms)
            .ok_or_else(|| GenError::ClockBeforeEpoch {
                now: rfc3339(now_ms),
                epoch: rfc3339(time.epoch_ms),
            })?;
        let start_word = floor << seq_bits;
        Ok(Generator {
            lanes: (0..lanes)
                .map(|_| CacheLine(AtomicU64::new(start_word)))
                .collect(),
            next_lane: AtomicUsize::new(0),
            seen: CacheLine(AtomicU64::new(now_tick.max(floor))),
            // The ticks below the floor are covered by the mark already (and never issued).
            hw_end: AtomicU64::new(floor),
            start_word,
            high_water: Mutex::new(high_water),
            closed: AtomicBool::new(false),
            clock,
            max_rollback,
            max_drift,
            window,
            stride: (window / 8).max(1),
            max_batch,
            volume,
            layout,
            identity,
            plan,
        })
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The node identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Number of lanes.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// The largest batch one call can reserve.
    pub fn max_batch(&self) -> u64 {
        self.max_batch
    }

    /// Binds a new connection (or thread) to the next lane, round-robin.
    pub fn assign_lane(&self) -> usize {
        self.next_lane.fetch_add(1, Ordering::Relaxed) % self.lanes.len()
    }

    /// Reads the clock (for a caching clock, its cached reading) as (Unix ms, tick).
    #[inline]
    fn wall(&self) -> Result<(u64, u64), GenError> {
        let ms = self.clock.now_ms();
        self.check_epoch(ms)?;
        Ok((ms, self.plan.tick_of(ms)))
    }

    /// A fresh reading as (Unix µs, tick), for the decisions to wait or to refuse.
    fn wall_fresh(&self) -> Result<(u64, u64), GenError> {
        let us = self.clock.now_us();
        self.check_epoch(us / 1000)?;
        Ok((us, self.plan.tick_of(us / 1000)))
    }

    #[inline]
    fn check_epoch(&self, ms: u64) -> Result<(), GenError> {
        if ms < self.plan.epoch_ms {
            return Err(GenError::ClockBeforeEpoch {
                now: rfc3339(ms),
                epoch: rfc3339(self.plan.epoch_ms),
            });
        }
        Ok(())
    }

    /// Records a wall tick; returns the highest seen so far.
    #[inline]
    fn observe(&self, now: u64) -> u64 {
        let seen = self.seen.0.load(Ordering::Relaxed);
        if now > seen {
            self.seen.0.fetch_max(now, Ordering::Relaxed);
            now
        } else {
            seen
        }
    }

    /// The lane word at which a fresh tick starts (volume hiding may jump or offset it).
    fn fresh_tick(&self, now: u64, limit: u64, n: u64) -> u64 {
        let s = self.plan.seq_bits;
        let Some(v) = &self.volume else {
            return now << s;
        };
        let offset = if v.random_seq && s > 0 {
            v.next() & mask(s - 1)
        } else {
            0
        };
        let mut tick = now;
        if v.threshold > 0 && v.next() <= v.threshold {
            let jumped = now + 1 + v.next() % v.max_jump;
            // A jump that would push this reservation past the drift limit is skipped, so
            // hiding never makes a caller wait.
            if ((jumped << s | offset) + n - 1) >> s <= limit {
                tick = jumped;
            }
        }
        tick << s | offset
    }

    /// Reserves `n` IDs on `lane` without blocking.
    ///
    /// [`GenError::WouldWait`] says how long to wait before trying again; every other error is
    /// final for this call.
    #[inline]
    pub fn try_reserve(&self, lane: usize, n: u64) -> Result<Reservation, GenError> {
        self.take(lane, n, false, &mut 0)
    }

    /// Reserves `n` IDs on `lane` or, with `partial`, as many of them (at least one) as fit
    /// below the drift limit, so a handle's block never waits while IDs of this tick are left.
    /// Sets `at` to the wall tick the reservation was decided at (an out-parameter: returning
    /// a tuple made the reservation take a detour through the stack, 20 ns per call).
    // Always inlined: as a call, its large `Result` goes back through memory, and reading it
    // there stalls on store forwarding (the peers bench: 27 ns per `next_id` instead of 5).
    #[inline(always)]
    fn take(
        &self,
        lane: usize,
        n: u64,
        partial: bool,
        at: &mut u64,
    ) -> Result<Reservation, GenError> {
        // The common case, kept small so the compiler keeps it in registers: a lane in range,
        // 0 < n <= max_batch, a clock after the epoch, one compare-and-swap. Validation errors,
        // and a wait or refusal to confirm on a fresh reading, go by the slow path, which
        // starts over (an attempt that stopped there issued nothing).
        if let Some(word) = self.lanes.get(lane) {
            if n != 0 && n <= self.max_batch {
                let ms = self.clock.now_ms();
                if ms >= self.plan.epoch_ms {
                    let now = self.plan.tick_of(ms);
                    *at = now;
                    match self.take_at(&word.0, n, partial, now) {
                        Ok((first, len)) => return Ok(self.reservation(lane, first, len)),
                        // Final (closed, exhausted, a failed high-water write): not tried twice.
                        Err(Stop::Fail(e)) => return Err(*e),
                        Err(Stop::Rollback { .. } | Stop::Wait { .. }) => {}
                    }
                }
            }
        }
        self.take_slow(lane, n, partial, at)
    }

    /// Everything `take` does not do inline: validation errors, empty requests, and a refusal
    /// to confirm on a fresh reading.
    #[cold]
    #[inline(never)]
    fn take_slow(
        &self,
        lane: usize,
        n: u64,
        partial: bool,
        at: &mut u64,
    ) -> Result<Reservation, GenError> {
        let word = &self
            .lanes
            .get(lane)
            .ok_or(GenError::NoLane {
                lane,
                lanes: self.lanes.len(),
            })?
            .0;
        if n == 0 {
            return Ok(self.reservation(lane, 0, 0));
        }
        if n > self.max_batch {
            return Err(GenError::BatchTooLarge {
                count: n,
                max: self.max_batch,
            });
        }
        let (_, now) = self.wall()?;
        *at = now;
        match self.take_at(word, n, partial, now) {
            Ok((first, len)) => Ok(self.reservation(lane, first, len)),
            Err(Stop::Fail(e)) => Err(*e),
            Err(Stop::Rollback { .. } | Stop::Wait { .. }) => {
                self.take_fresh(word, lane, n, partial, at)
            }
        }
    }

    /// The decision again on a fresh reading, which a caching clock also publishes: a cache
    /// that lags (a late or stalled ticker) never makes a caller wait or fail.
    #[cold]
    #[inline(never)]
    fn take_fresh(
        &self,
        word: &AtomicU64,
        lane: usize,
        n: u64,
        partial: bool,
        at: &mut u64,
    ) -> Result<Reservation, GenError> {
        let (now_us, now) = self.wall_fresh()?;
        *at = now;
        match self.take_at(word, n, partial, now) {
            Ok((first, len)) => Ok(self.reservation(lane, first, len)),
            Err(Stop::Fail(e)) => Err(*e),
            Err(Stop::Rollback { behind }) => Err(GenError::ClockRollback {
                behind_ms: behind * self.plan.unit_ms,
                limit_ms: self.max_rollback * self.plan.unit_ms,
            }),
            Err(Stop::Wait { tick }) => {
                // To the microsecond: sleeping whole milliseconds from an unknown phase would
                // overshoot the next tick about half the time and lose it (max_drift = 0).
                let wake_us = self
                    .plan
                    .tick_start_ms(tick - self.max_drift)
                    .saturating_mul(1000);
                Err(GenError::WouldWait {
                    wait: Duration::from_micros(wake_us.saturating_sub(now_us).max(1)),
                })
            }
        }
    }

    /// One attempt at the reservation with the wall clock at tick `now`: one compare-and-swap
    /// of the lane word, unless a high-water write is due first. Returns the first lane word
    /// and the number of IDs.
    #[inline(always)]
    fn take_at(
        &self,
        word: &AtomicU64,
        n: u64,
        partial: bool,
        now: u64,
    ) -> Result<(u64, u64), Stop> {
        let s = self.plan.seq_bits;
        let seen = self.observe(now);
        if seen - now > self.max_rollback {
            return Err(Stop::Rollback { behind: seen - now });
        }
        let limit = seen + self.max_drift;
        // Everything shared is read before the lane word, so the window between loading the
        // word and swapping it is a few instructions: under contention, fewer failed swaps.
        let mut hw_end = self.hw_end.load(Ordering::Acquire);
        let mut cur = word.load(Ordering::Relaxed);
        loop {
            if cur == CLOSED {
                return Err(GenError::Closed.into());
            }
            let base = if now > cur >> s {
                self.fresh_tick(now, limit, n)
            } else {
                cur
            };
            let mut end = base
                .checked_add(n)
                .ok_or_else(|| Stop::from(self.exhausted()))?;
            if partial && base >> s <= limit {
                end = end.min(self.plan.word_after(limit));
            }
            let last_tick = (end - 1) >> s;
            if last_tick >= hw_end || last_tick > limit {
                if last_tick > self.plan.max_tick {
                    return Err(self.exhausted().into());
                }
                if last_tick > limit {
                    return Err(Stop::Wait { tick: last_tick });
                }
                self.extend_high_water(last_tick, self.window_end(last_tick, now))?;
                hw_end = self.hw_end.load(Ordering::Acquire);
                cur = word.load(Ordering::Relaxed);
                continue;
            }
            match word.compare_exchange_weak(cur, end, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok((base, end - base)),
                Err(actual) => {
                    // Lost the race for the lane word: a short pause lets the winner finish
                    // with the cache line instead of both cores bouncing it.
                    std::hint::spin_loop();
                    cur = actual;
                }
            }
        }
    }

    /// A [`LaneHandle`] on the next lane (round-robin, as [`assign_lane`](Self::assign_lane)):
    /// the fast single-ID API, one per thread.
    pub fn handle(&self) -> LaneHandle<'_, C> {
        LaneHandle::new(self, self.assign_lane())
    }

    /// A [`LaneHandle`] on `lane`.
    pub fn handle_on(&self, lane: usize) -> Result<LaneHandle<'_, C>, GenError> {
        if lane >= self.lanes.len() {
            return Err(GenError::NoLane {
                lane,
                lanes: self.lanes.len(),
            });
        }
        Ok(LaneHandle::new(self, lane))
    }

    /// Reserves `n` IDs on `lane`, sleeping on the clock while the sequence is exhausted.
    #[inline]
    pub fn reserve(&self, lane: usize, n: u64) -> Result<Reservation, GenError> {
        // Tested in place rather than matched and moved: moving the large `Result` through
        // the stack cost more than the reservation itself.
        let r = self.try_reserve(lane, n);
        if let Err(GenError::WouldWait { wait }) = r {
            return self.reserve_after(wait, lane, n);
        }
        r
    }

    /// The waiting part of `reserve`, out of line so the issuing path carries no loop and no
    /// error handling beyond one test.
    #[cold]
    #[inline(never)]
    fn reserve_after(
        &self,
        mut wait: Duration,
        lane: usize,
        n: u64,
    ) -> Result<Reservation, GenError> {
        loop {
            self.clock.sleep(wait);
            match self.try_reserve(lane, n) {
                Err(GenError::WouldWait { wait: w }) => wait = w,
                other => return other,
            }
        }
    }

    /// One ID on `lane`, blocking while the sequence is exhausted. For many single IDs on one
    /// thread, a [`LaneHandle`] is cheaper.
    #[inline]
    pub fn next_id(&self, lane: usize) -> Result<u64, GenError> {
        // Not through `reserve`: the reservation is used where it is made instead of being
        // moved through the stack, and `n = 1` is never empty, so no Option to unwrap.
        match self.take(lane, 1, false, &mut 0) {
            Ok(r) => Ok(r.id_at(r.first)),
            Err(GenError::WouldWait { wait }) => {
                self.reserve_after(wait, lane, 1).map(|r| r.id_at(r.first))
            }
            Err(e) => Err(e),
        }
    }

    fn exhausted(&self) -> GenError {
        GenError::LayoutExhausted {
            end: rfc3339(self.layout.end_ms()),
        }
    }

    fn reservation(&self, lane: usize, first: u64, len: u64) -> Reservation {
        let lane_bits = self.plan.lane_shift.map_or(0, |sh| (lane as u64) << sh);
        Reservation {
            first,
            len,
            seq_bits: self.plan.seq_bits,
            time_shift: self.plan.time_shift,
            seq_shift: self.plan.seq_shift,
            fixed: self.plan.node_bits | lane_bits,
        }
    }

    /// Persists a high-water mark ending at tick `end` unless the current one covers `need`;
    /// the slow path, serialised by the mutex.
    fn extend_high_water(&self, need: u64, end: u64) -> Result<(), GenError> {
        let hw = self.high_water.lock().unwrap_or_else(|p| p.into_inner());
        if self.hw_end.load(Ordering::Acquire) > need {
            return Ok(()); // another thread extended it while we waited for the lock
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(GenError::Closed);
        }
        let end = end.min(self.plan.max_tick + 1);
        hw.store(self.plan.tick_start_ms(end))?;
        self.hw_end.store(end, Ordering::Release);
        Ok(())
    }

    /// The end of the window a high-water write covers when IDs up to tick `need` are to be
    /// issued and the wall clock reads tick `now`.
    ///
    /// The window reaches `window` ticks past the *wall clock*, not past `need`: when logical
    /// time runs ahead (a restart floor, a rollback), covering `window` ticks past it would let
    /// every crash push the next start a window further ahead — a crash loop lengthening its
    /// own outage. Ahead of the wall, each write covers `stride` ticks past `need`.
    fn window_end(&self, need: u64, now: u64) -> u64 {
        need.saturating_add(self.stride)
            .max(now.saturating_add(self.window + 1))
    }

    /// The highest tick any lane has issued an ID in since this generator started, if any.
    fn last_issued_tick(&self) -> Option<u64> {
        self.lanes
            .iter()
            .map(|l| l.0.load(Ordering::Relaxed))
            .filter(|w| *w != CLOSED && *w > self.start_word)
            .max()
            .map(|w| (w - 1) >> self.plan.seq_bits)
    }

    /// Extends the high-water mark ahead of need, so the issuing path never waits for a write.
    /// Servers call it periodically from a thread that may block.
    ///
    /// It reaches past what was issued and past the wall clock, never past a restart floor
    /// nothing was issued at: a node that only starts and stops does not move its mark.
    pub fn prepare(&self) -> Result<(), GenError> {
        // A fresh reading: this runs off the issuing path, and it refreshes a caching clock.
        let (_, now) = self.wall_fresh()?;
        self.observe(now);
        let base = self.last_issued_tick().map_or(now, |t| t.max(now));
        self.extend_high_water(base + self.window / 2, self.window_end(base, now))
    }

    /// Stops issuing and lowers the high-water mark to just after the last issued ID, so a
    /// clean restart does not skip ahead. Every later call returns [`GenError::Closed`].
    pub fn shutdown(&self) -> Result<(), GenError> {
        let hw = self.high_water.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Swapping every word to CLOSED makes any CAS still in flight fail, so nothing is
        // issued after the words are read.
        let mut last_issued = None;
        for lane in self.lanes.iter() {
            let w = lane.0.swap(CLOSED, Ordering::AcqRel);
            if w > self.start_word {
                let t = (w - 1) >> self.plan.seq_bits;
                last_issued = Some(last_issued.map_or(t, |m: u64| m.max(t)));
            }
        }
        // Nothing issued: the mark goes back to where this generator found it, so a node that
        // only prepared ahead (or a generator replaced before serving) pushes no time forward.
        let floor = self.start_word >> self.plan.seq_bits;
        let end = match last_issued {
            Some(t) => Some(t + 1),
            None if self.hw_end.load(Ordering::Acquire) > floor => Some(floor),
            None => None,
        };
        if let Some(end) = end {
            hw.store(self.plan.tick_start_ms(end))?;
            // Reported by `clock_state` from now on: a lease released after this carries it.
            self.hw_end.store(end, Ordering::Release);
        }
        Ok(())
    }

    /// Where the clock stands relative to logical time.
    pub fn clock_state(&self) -> ClockState {
        // Fresh, so health and metrics never report a cache's lag as a rollback.
        let wall_ms = self.clock.now_us() / 1000;
        let now = self.layout.tick_at(wall_ms).unwrap_or(0);
        let seen = self.seen.0.load(Ordering::Relaxed).max(now);
        let logical = self
            .lanes
            .iter()
            .map(|l| l.0.load(Ordering::Relaxed))
            .filter(|w| *w != CLOSED)
            .map(|w| w >> self.plan.seq_bits)
            .max()
            .unwrap_or(0);
        ClockState {
            wall_ms,
            logical_ms: self.plan.tick_start_ms(logical),
            behind_ms: (seen - now) * self.plan.unit_ms,
            rollback_exceeded: seen - now > self.max_rollback,
            high_water_ms: self.plan.tick_start_ms(self.hw_end.load(Ordering::Relaxed)),
        }
    }
}

/// Largest block a [`LaneHandle`] reserves at once.
const MAX_BLOCK: u64 = 1024;

/// Single IDs for one thread, from small blocks reserved on one lane: one ID costs a clock
/// read (one atomic load with a [`TickerClock`](crate::TickerClock)), a load of the shut-down
/// flag, two compares and an add; no atomic write, so threads with handles do not contend per
/// ID.
///
/// - IDs from one handle strictly increase (its blocks come from one lane word, in order);
///   handles sharing a lane interleave by blocks, so give each thread its own lane where the
///   layout has lanes.
/// - An ID is handed out only while the clock reads the tick its block was reserved at or the
///   next one: its time field is at most one tick behind the clock at issue. Otherwise the
///   rest of the block is dropped (never issued) and a new one reserved through the generator,
///   with every rule of [`Generator::try_reserve`] (drift, rollback, high-water mark).
/// - The block size adapts: it doubles while blocks are used up (up to 1,024 IDs and 1/16 of a
///   tick's sequence) and halves when one is dropped, so a handle called once a tick strands
///   no more than a couple of IDs per tick, and a busy one reserves once per thousand IDs.
/// - After [`Generator::shutdown`] every call returns [`GenError::Closed`]; IDs already reserved
///   lie below the lowered mark.
#[derive(Debug)]
pub struct LaneHandle<'g, C> {
    /// The generator the blocks come from.
    generator: &'g Generator<C>,
    /// The lane this handle reserves on.
    lane: usize,
    /// The next ID to hand out, followed by `left - 1` more in steps of `step`: the rest of the
    /// block within one tick, where only the sequence field counts up.
    id: u64,
    /// IDs left in the current run.
    left: u64,
    /// One in the sequence field (`1 << seq_shift`).
    step: u64,
    /// The current block (its shifts and fixed bits compose the first ID of each run).
    block: Reservation,
    /// The block's lane words after the current run; `end` is exclusive.
    next: u64,
    /// End of the current block.
    end: u64,
    /// Start (Unix ms) of the wall tick the block was reserved at: its IDs are handed out while
    /// the clock reads `fresh_from_ms .. fresh_from_ms + fresh_span_ms` (that tick and the next).
    fresh_from_ms: u64,
    /// Two ticks, in ms.
    fresh_span_ms: u64,
    /// Size of the last block reserved.
    size: u64,
    /// Largest block for this layout.
    max_size: u64,
}

impl<'g, C: Clock> LaneHandle<'g, C> {
    fn new(generator: &'g Generator<C>, lane: usize) -> Self {
        let per_tick = 1u64 << generator.plan.seq_bits;
        let empty = generator.reservation(lane, 0, 0);
        LaneHandle {
            generator,
            lane,
            id: 0,
            left: 0,
            step: empty.step(),
            block: empty,
            next: 0,
            end: 0,
            fresh_from_ms: 0,
            fresh_span_ms: 2 * generator.plan.unit_ms,
            size: 1,
            max_size: (per_tick / 16).clamp(1, MAX_BLOCK),
        }
    }

    /// The lane this handle is bound to.
    pub fn lane(&self) -> usize {
        self.lane
    }

    /// One ID without blocking; [`GenError::WouldWait`] as for [`Generator::try_reserve`].
    #[inline]
    pub fn try_next_id(&mut self) -> Result<u64, GenError> {
        match self.take_from_run() {
            Some(id) => Ok(id),
            None => self.refill(),
        }
    }

    /// One ID, sleeping on the clock while the sequence is exhausted.
    #[inline]
    pub fn next_id(&mut self) -> Result<u64, GenError> {
        match self.take_from_run() {
            Some(id) => Ok(id),
            None => self.next_id_slow(),
        }
    }

    #[cold]
    #[inline(never)]
    fn next_id_slow(&mut self) -> Result<u64, GenError> {
        loop {
            match self.try_next_id() {
                Err(GenError::WouldWait { wait }) => self.generator.clock.sleep(wait),
                other => return other,
            }
        }
    }

    /// Whether the block may still be handed out: the clock reads the block's tick or the
    /// next one (a step back, or more time passed, goes through the generator's rules), and
    /// the generator is not shut down.
    #[inline(always)]
    fn fresh(&self) -> bool {
        let g = self.generator;
        g.clock.now_ms().wrapping_sub(self.fresh_from_ms) < self.fresh_span_ms
            && !g.closed.load(Ordering::Relaxed)
    }

    /// The next ID of the current run, if there is one and the block is fresh.
    #[inline(always)]
    fn take_from_run(&mut self) -> Option<u64> {
        if self.left != 0 && self.fresh() {
            let id = self.id;
            // Wrapping: past the last ID of a run the value is never used.
            self.id = self.id.wrapping_add(self.step);
            self.left -= 1;
            return Some(id);
        }
        None
    }

    /// Starts the run at lane word `next`: up to the block's end or the end of that tick.
    fn start_run(&mut self) {
        let (id, len) = self.block.run_from(self.next, self.end);
        self.id = id;
        self.left = len;
        self.next += len;
    }

    /// Moves to the block's next tick, or reserves a new block, and hands out the first ID.
    #[cold]
    #[inline(never)]
    fn refill(&mut self) -> Result<u64, GenError> {
        if self.left == 0 && self.next < self.end && self.fresh() {
            self.start_run();
        } else {
            // A block used up asks for a larger one; one dropped with IDs left, a smaller one.
            let size = if self.left != 0 || self.next < self.end {
                (self.size / 2).max(1)
            } else {
                (self.size * 2).min(self.max_size)
            };
            // Nothing of the old block is handed out after this point, whatever happens below.
            self.left = 0;
            self.next = self.end;
            let mut tick = 0;
            let block = self.generator.take(self.lane, size, true, &mut tick)?;
            self.size = size;
            self.block = block;
            self.next = block.first;
            self.end = block.first + block.len;
            self.fresh_from_ms = self.generator.plan.tick_start_ms(tick);
            self.start_run();
        }
        let id = self.id;
        self.id = self.id.wrapping_add(self.step);
        self.left -= 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::write_run;

    #[test]
    fn write_run_matches_the_plain_sum_at_every_length_and_step() {
        for len in 0..=19usize {
            for (id, step) in [
                (0, 1),
                (7, 1 << 22),
                (u64::MAX - 100, 1),
                (1 << 62, 1 << 40),
            ] {
                let mut out = vec![0u64; len];
                write_run(&mut out, id, step);
                let want: Vec<u64> = (0..len as u64)
                    .map(|k| id.wrapping_add(k.wrapping_mul(step)))
                    .collect();
                assert_eq!(out, want, "len {len}, id {id}, step {step}");
            }
        }
    }
}
