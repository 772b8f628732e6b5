//! Floe's core: everything that decides what an ID is, with no I/O and no async runtime.
//!
//! - [`layout`]: bit layouts (presets, spec strings, compose/decode, capacity, validation);
//! - [`clock`]: the [`Clock`] trait, the system and machine clocks, a manual clock for tests;
//! - [`ticker`]: [`TickerClock`], a clock that costs one atomic load per reading (opt-in: it
//!   runs a thread);
//! - [`generator`]: the lock-free snowflake [`Generator`] and its per-thread [`LaneHandle`];
//! - [`highwater`]: the [`HighWater`] trait that makes restarts safe, and an in-memory mark;
//! - [`segment`]: the double-buffered [`SegmentBuffer`] of segment mode;
//! - [`numbers`]: business number sequences (`ORD-20261130-000042`): format, periods, rendering.
//!
//! ```
//! use floe_core::{Generator, GeneratorConfig, Layout, MemoryHighWater, SystemClock};
//! let layout = Layout::parse("twitter").unwrap();
//! let identity = layout.identity(&[("worker".into(), 7)]).unwrap();
//! let generator = Generator::new(
//!     layout, identity, GeneratorConfig::default(), SystemClock, Box::new(MemoryHighWater::new()),
//! ).unwrap();
//! let lane = generator.assign_lane();
//! let a = generator.next_id(lane).unwrap();
//! let b = generator.next_id(lane).unwrap();
//! assert!(b > a);
//! ```

#![warn(missing_docs)]

pub mod clock;
pub mod generator;
pub mod highwater;
pub mod idform;
pub mod layout;
pub mod numbers;
pub mod report;
pub mod segment;
mod sync;
pub mod ticker;

pub use clock::{Clock, MachineClock, ManualClock, OffsetClock, SystemClock};
pub use generator::{
    ClockState, GenError, Generator, GeneratorConfig, LaneHandle, Reservation, VolumeHiding,
};
pub use highwater::{Floored, HighWater, HighWaterError, MemoryHighWater};
pub use idform::{IdForm, IdFormError};
pub use layout::{
    parse_epoch, parse_identity_pairs, rfc3339, Capacity, DecodeError, Decoded, EpochError, Field,
    FieldKind, Identity, IdentityError, IdentityTextError, Layout, LayoutError, TimeSpec, PRESETS,
};
pub use report::report;
pub use segment::{
    check_tag, BufferError, HandBack, RefillPlan, Segment, SegmentBuffer, SegmentConfig,
    SegmentState, TagError, Taken, MAX_TAG_LEN,
};
pub use ticker::{TickerClock, MAX_TICKER_PERIOD};
