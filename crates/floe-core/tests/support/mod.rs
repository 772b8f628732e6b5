//! Helpers shared by the generator's test files.

#![allow(dead_code)] // each test file uses part of it

use std::sync::Arc;
use std::time::Duration;

use floe_core::{Clock, Generator, GeneratorConfig, Layout, MemoryHighWater};

/// 2026-11-18T00:53:20Z, a whole second.
pub const T0: u64 = 1_795_000_000_000;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A tiny layout (4 IDs per tick) so exhaustion is easy to reach.
pub fn tiny() -> Layout {
    Layout::parse("time:40/1ms@2020-01-01 worker:4 seq:2").unwrap()
}

pub fn tiny_config() -> GeneratorConfig {
    GeneratorConfig {
        lanes: 1,
        max_rollback: ms(10),
        max_drift: ms(2),
        high_water_window: ms(3),
        volume: None,
    }
}

pub fn build<C: Clock>(
    layout: Layout,
    config: GeneratorConfig,
    clock: C,
    hw: &Arc<MemoryHighWater>,
) -> Generator<C> {
    let identity = layout.identity(&[]).unwrap();
    Generator::new(layout, identity, config, clock, Box::new(hw.clone())).unwrap()
}
