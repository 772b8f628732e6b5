//! The `[snowflake]` section: layout, identity, clock tolerance, volume hiding.

use std::sync::Arc;
use std::time::Duration;

use floe_core::{
    Clock, FieldKind, GenError, Generator, GeneratorConfig, Identity, IdentityError, Layout,
    MachineClock, MemoryHighWater, OffsetClock, SystemClock, TickerClock, VolumeHiding,
};
use serde::Deserialize;

use super::value::{Bool, Dur, Float, FromScalar, IdentitySpec, Int, Text};
use super::{invalid, ms, ConfigError, ConfigWarning};

/// Default `snowflake.layout`: GenID's, so a GenID deployment needs no configuration.
const DEFAULT_LAYOUT: &str = "genid";
/// Default `snowflake.lanes`: every lane the layout addresses.
const DEFAULT_LANES: u32 = 0;
/// Default `snowflake.max_rollback`.
const DEFAULT_MAX_ROLLBACK: Duration = Duration::from_secs(5);
/// Default `snowflake.max_drift`.
const DEFAULT_MAX_DRIFT: Duration = Duration::from_secs(1);
/// Default `snowflake.high_water_window`.
const DEFAULT_HIGH_WATER_WINDOW: Duration = Duration::from_secs(2);
/// Default `snowflake.machine_clock`: the wall clock, which follows NTP.
const DEFAULT_MACHINE_CLOCK: bool = false;
/// Default `snowflake.clock_offset_ms`: the clock as it is.
const DEFAULT_CLOCK_OFFSET_MS: i64 = 0;
/// Default `snowflake.volume.jump_probability`: no jumps.
const DEFAULT_JUMP_PROBABILITY: f64 = 0.0;
/// Default `snowflake.volume.max_jump_ticks`.
const DEFAULT_MAX_JUMP_TICKS: u64 = 1;
/// Default `snowflake.volume.random_seq_start`: sequences start at 0.
const DEFAULT_RANDOM_SEQ_START: bool = false;

/// Most lanes a generator may have.
const MAX_LANES: i64 = 65_536;
/// Largest `snowflake.clock_offset_ms` either way: one day.
const MAX_CLOCK_OFFSET_MS: i64 = 86_400_000;
const HOUR: Duration = Duration::from_secs(3_600);
const DAY: Duration = Duration::from_secs(86_400);

/// Snowflake generator settings.
#[derive(Debug, Clone)]
pub struct SnowflakeConfig {
    /// The bit layout of every ID.
    pub layout: Layout,
    /// This node's values of the layout's node fields.
    pub identity: Identity,
    /// Number of lanes; 0 means every lane the layout addresses.
    pub lanes: u32,
    /// A clock step back up to this much is served from logical time.
    pub max_rollback: Duration,
    /// How far logical time may run ahead of the wall clock.
    pub max_drift: Duration,
    /// How far ahead each high-water write reaches.
    pub high_water_window: Duration,
    /// MASA's machine clock: wall time at start plus monotonic time since.
    pub machine_clock: bool,
    /// Shifts the clock (negative: the past), to rehearse a rollback or test restarts.
    pub clock_offset_ms: i64,
    /// Volume hiding (GoldFlake), off when `None`.
    pub volume: Option<VolumeConfig>,
}

/// Volume hiding settings; the random seed is drawn from the OS at start.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeConfig {
    /// Probability per tick advance of a forward jump.
    pub jump_probability: f64,
    /// Largest jump in ticks.
    pub max_jump_ticks: u64,
    /// Start each tick's sequence at a random offset.
    pub random_seq_start: bool,
}

impl SnowflakeConfig {
    /// The clock this configuration asks for; build it once, since a machine clock anchors now.
    /// It is cached by a `TickerClock` (one refresh per tick, at least every 10 ms), so issuing
    /// reads an atomic instead of the system clock; the plain clock if no thread can start.
    pub fn clock(&self) -> Arc<dyn Clock> {
        let wall: Arc<dyn Clock> = if self.clock_offset_ms == 0 {
            Arc::new(SystemClock)
        } else {
            Arc::new(OffsetClock::new(SystemClock, self.clock_offset_ms))
        };
        let clock = if self.machine_clock {
            Arc::new(MachineClock::new(&wall))
        } else {
            wall
        };
        let tick = Duration::from_millis(self.layout.time_spec().unit_ms);
        match TickerClock::for_tick(clock.clone(), tick) {
            Ok(cached) => Arc::new(cached),
            Err(_) => clock,
        }
    }

    /// The generator settings, with `seed` for volume hiding.
    pub fn generator_config(&self, seed: u64) -> GeneratorConfig {
        GeneratorConfig {
            lanes: self.lanes,
            max_rollback: self.max_rollback,
            max_drift: self.max_drift,
            high_water_window: self.high_water_window,
            volume: self.volume.as_ref().map(|v| VolumeHiding {
                jump_probability: v.jump_probability,
                max_jump_ticks: v.max_jump_ticks,
                random_seq_start: v.random_seq_start,
                seed,
            }),
        }
    }

    /// The warning for a static identity of 0 in every node field, which two nodes would share.
    pub(super) fn zero_identity_warning(&self) -> Option<ConfigWarning> {
        (self.identity.is_zero() && !self.identity.values().is_empty()).then(|| {
            ConfigWarning::ZeroIdentity {
                fields: self.layout.node_fields().map(|f| f.name.clone()).collect(),
            }
        })
    }
}

/// `[snowflake]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct SnowflakeBuilder {
    layout: Text,
    identity: Option<IdentitySpec>,
    lanes: Int,
    max_rollback: Dur,
    max_drift: Dur,
    high_water_window: Dur,
    machine_clock: Bool,
    clock_offset_ms: Int,
    volume: VolumeBuilder,
}

/// `[snowflake.volume]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct VolumeBuilder {
    jump_probability: Float,
    max_jump_ticks: Int,
    random_seq_start: Bool,
}

impl SnowflakeBuilder {
    /// Whether the layout as written has a `worker` node field (for `WORKER_ID`).
    pub(super) fn layout_has_worker(&self) -> bool {
        let text = self
            .layout
            .text()
            .unwrap_or_else(|| DEFAULT_LAYOUT.to_owned());
        Layout::parse(&text).is_ok_and(|l| {
            l.node_fields()
                .any(|f| f.name == "worker" && f.kind == FieldKind::Node)
        })
    }

    /// Validates `[snowflake]`, down to building a throwaway generator.
    pub(super) fn build(&self) -> Result<SnowflakeConfig, ConfigError> {
        let layout_text = self.layout.get("snowflake.layout", DEFAULT_LAYOUT)?;
        let layout = Layout::parse(&layout_text).map_err(|e| {
            invalid(
                "snowflake.layout",
                format!("{layout_text:?}"),
                e.to_string(),
            )
        })?;
        let clock_offset_ms = self.clock_offset_ms.within(
            "snowflake.clock_offset_ms",
            DEFAULT_CLOCK_OFFSET_MS,
            -MAX_CLOCK_OFFSET_MS..=MAX_CLOCK_OFFSET_MS,
        )?;
        let machine_clock = self
            .machine_clock
            .get("snowflake.machine_clock", DEFAULT_MACHINE_CLOCK)?;
        let volume = self.volume.build()?;
        let identity = identity(&layout, &self.identity)?;
        let config = SnowflakeConfig {
            layout,
            identity,
            lanes: self
                .lanes
                .within("snowflake.lanes", DEFAULT_LANES, 0..=MAX_LANES)?,
            max_rollback: self.max_rollback.within(
                "snowflake.max_rollback",
                DEFAULT_MAX_ROLLBACK,
                Duration::ZERO..=DAY,
            )?,
            max_drift: self.max_drift.within(
                "snowflake.max_drift",
                DEFAULT_MAX_DRIFT,
                Duration::ZERO..=HOUR,
            )?,
            high_water_window: self.high_water_window.within(
                "snowflake.high_water_window",
                DEFAULT_HIGH_WATER_WINDOW,
                Duration::from_millis(1)..=HOUR,
            )?,
            machine_clock,
            clock_offset_ms,
            volume,
        };
        check_generator(&config, &layout_text)?;
        Ok(config)
    }
}

impl VolumeBuilder {
    /// Validates `[snowflake.volume]`; `None` when neither kind of hiding is on.
    fn build(&self) -> Result<Option<VolumeConfig>, ConfigError> {
        let jump_probability = self.jump_probability.within(
            "snowflake.volume.jump_probability",
            DEFAULT_JUMP_PROBABILITY,
            0.0..=1.0,
        )?;
        let max_jump_ticks = self.max_jump_ticks.within(
            "snowflake.volume.max_jump_ticks",
            DEFAULT_MAX_JUMP_TICKS,
            1..=i64::MAX,
        )?;
        let random_seq_start = self.random_seq_start.get(
            "snowflake.volume.random_seq_start",
            DEFAULT_RANDOM_SEQ_START,
        )?;
        Ok(
            (jump_probability > 0.0 || random_seq_start).then_some(VolumeConfig {
                jump_probability,
                max_jump_ticks,
                random_seq_start,
            }),
        )
    }
}

/// Resolves the identity against the layout, naming the field in every error.
fn identity(layout: &Layout, spec: &Option<IdentitySpec>) -> Result<Identity, ConfigError> {
    let mut pairs = Vec::new();
    match spec {
        None => {}
        Some(IdentitySpec::Pairs(text)) => {
            pairs = floe_core::parse_identity_pairs(text).map_err(|why| {
                invalid("snowflake.identity", format!("{text:?}"), why.to_string())
            })?;
        }
        Some(IdentitySpec::Table(table)) => {
            for (name, v) in table {
                let key = format!("snowflake.identity.{name}");
                let max = layout
                    .node_fields()
                    .find(|f| &f.name == name)
                    .map_or(u64::MAX, |f| f.max());
                let allowed = || format!("an integer in 0..={max}");
                let n = i128::from_scalar(v).ok_or_else(|| invalid(&key, v, allowed()))?;
                let n = u64::try_from(n).map_err(|_| invalid(&key, n, allowed()))?;
                pairs.push((name.clone(), n));
            }
        }
    }
    layout.identity(&pairs).map_err(|e| match e {
        IdentityError::OutOfRange { field, value, max } => invalid(
            &format!("snowflake.identity.{field}"),
            value,
            format!("an integer in 0..={max} (the layout's {field} field)"),
        ),
        IdentityError::UnknownField { ref field, .. } => invalid(
            &format!("snowflake.identity.{field}"),
            pairs
                .iter()
                .find(|(n, _)| n == field)
                .map_or(0, |(_, v)| *v),
            e.to_string(),
        ),
    })
}

/// Checks the time-dependent parts (layout expired, epoch in the future) and the generator's own
/// rules (lanes, window + drift < rollback, volume ranges) by building a throwaway generator.
fn check_generator(config: &SnowflakeConfig, layout_text: &str) -> Result<(), ConfigError> {
    let clock = config.clock();
    if let Err(e) = config.layout.check_at(clock.now_ms()) {
        return Err(invalid(
            "snowflake.layout",
            format!("{layout_text:?}"),
            e.to_string(),
        ));
    }
    match Generator::new(
        config.layout.clone(),
        config.identity.clone(),
        config.generator_config(0),
        clock,
        Box::new(MemoryHighWater::new()),
    ) {
        Ok(_) => Ok(()),
        Err(GenError::Config {
            key,
            value,
            allowed,
        }) => {
            let value = if key == "high_water_window" {
                ms(config.high_water_window)
            } else {
                value
            };
            Err(invalid(&format!("snowflake.{key}"), value, allowed))
        }
        Err(e) => Err(invalid(
            "snowflake.layout",
            format!("{layout_text:?}"),
            e.to_string(),
        )),
    }
}
