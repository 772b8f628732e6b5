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

use std::time::Duration;

use thiserror::Error;

use crate::clock::Clock;
use crate::highwater::{HighWater, HighWaterError};
use crate::layout::{mask, rfc3339, FieldKind, Identity, Layout, LayoutError};
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};

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
}

/// One lane's word on its own cache line, so lanes on different cores do not false-share.
#[derive(Debug)]
#[repr(align(128))]
struct LaneWord(AtomicU64);

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

    /// Appends the IDs to `out`, reserving space once.
    pub fn extend_into(&self, out: &mut Vec<u64>) {
        out.reserve(self.len as usize);
        out.extend(self.iter());
    }

    /// Writes the IDs into `out`, which must hold exactly `len` elements.
    pub fn fill(&self, out: &mut [u64]) {
        assert_eq!(out.len() as u64, self.len, "buffer length must match");
        for (slot, w) in out.iter_mut().zip(self.first..) {
            *slot = self.id_at(w);
        }
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
                .map(|_| LaneWord(AtomicU64::new(start_word)))
                .collect(),
            next_lane: AtomicUsize::new(0),
            seen: LaneWord(AtomicU64::new(now_tick.max(floor))),
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

    /// Reads the clock as (Unix ms, tick).
    #[inline]
    fn wall(&self) -> Result<(u64, u64), GenError> {
        let ms = self.clock.now_ms();
        let since =
            ms.checked_sub(self.plan.epoch_ms)
                .ok_or_else(|| GenError::ClockBeforeEpoch {
                    now: rfc3339(ms),
                    epoch: rfc3339(self.plan.epoch_ms),
                })?;
        // A division costs more than the rest of the hot path; ms layouts skip it.
        let tick = if self.plan.unit_ms == 1 {
            since
        } else {
            since / self.plan.unit_ms
        };
        Ok((ms, tick))
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
        let s = self.plan.seq_bits;
        let (now_ms, now) = self.wall()?;
        let seen = self.observe(now);
        if seen - now > self.max_rollback {
            return Err(GenError::ClockRollback {
                behind_ms: (seen - now) * self.plan.unit_ms,
                limit_ms: self.max_rollback * self.plan.unit_ms,
            });
        }
        let limit = seen + self.max_drift;
        // Everything shared is read before the lane word, so the window between loading the
        // word and swapping it is a few instructions: under contention, fewer failed swaps.
        let mut hw_end = self.hw_end.load(Ordering::Acquire);
        let mut cur = word.load(Ordering::Relaxed);
        loop {
            if cur == CLOSED {
                return Err(GenError::Closed);
            }
            let base = if now > cur >> s {
                self.fresh_tick(now, limit, n)
            } else {
                cur
            };
            let end = base.checked_add(n).ok_or_else(|| self.exhausted())?;
            let last_tick = (end - 1) >> s;
            if last_tick >= hw_end || last_tick > limit {
                if last_tick > self.plan.max_tick {
                    return Err(self.exhausted());
                }
                if last_tick > limit {
                    let wake_ms = self.plan.tick_start_ms(last_tick - self.max_drift);
                    return Err(GenError::WouldWait {
                        wait: Duration::from_millis(wake_ms.saturating_sub(now_ms).max(1)),
                    });
                }
                self.extend_high_water(last_tick, self.window_end(last_tick, now))?;
                hw_end = self.hw_end.load(Ordering::Acquire);
                cur = word.load(Ordering::Relaxed);
                continue;
            }
            match word.compare_exchange_weak(cur, end, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(self.reservation(lane, base, n)),
                Err(actual) => {
                    // Lost the race for the lane word: a short pause lets the winner finish
                    // with the cache line instead of both cores bouncing it.
                    std::hint::spin_loop();
                    cur = actual;
                }
            }
        }
    }

    /// Reserves `n` IDs on `lane`, sleeping on the clock while the sequence is exhausted.
    pub fn reserve(&self, lane: usize, n: u64) -> Result<Reservation, GenError> {
        loop {
            match self.try_reserve(lane, n) {
                Err(GenError::WouldWait { wait }) => self.clock.sleep(wait),
                other => return other,
            }
        }
    }

    /// One ID on `lane`, blocking while the sequence is exhausted.
    pub fn next_id(&self, lane: usize) -> Result<u64, GenError> {
        Ok(self
            .reserve(lane, 1)?
            .first()
            .expect("a reservation of one holds one ID"))
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
        let (_, now) = self.wall()?;
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
        let wall_ms = self.clock.now_ms();
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
