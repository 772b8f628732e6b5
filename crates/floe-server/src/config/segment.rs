//! The `[segment]` section: where the segment table is and how the buffers behave.

use std::time::Duration;

use floe_core::SegmentConfig;
use floe_store::segment::{StoreOptions, TableSpec};
use serde::Deserialize;

use super::value::{Bool, Dur, Float, Int, Text};
use super::{invalid, ConfigError};

/// Default `segment.enabled`: segment mode is on.
const DEFAULT_ENABLED: bool = true;
/// Default `segment.auto_create`: an unknown tag is an error, not a new row.
const DEFAULT_AUTO_CREATE: bool = false;
/// Default `segment.schema`: Floe's own table.
const DEFAULT_SCHEMA: &str = "floe";
/// Default `segment.max_connections` (the store's pool size).
const DEFAULT_MAX_CONNECTIONS: u32 = 4;
/// Default `segment.call_timeout`.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Default `segment.min_step`.
const DEFAULT_MIN_STEP: u64 = 1;
/// Default `segment.max_step`.
const DEFAULT_MAX_STEP: u64 = 100_000_000;
/// Default `segment.default_step`, the step of a tag created on first use.
const DEFAULT_STEP: u64 = 1000;
/// Default `segment.refill_threshold`: refill when a tenth of the buffer is left.
const DEFAULT_REFILL_THRESHOLD: f64 = 0.1;
/// Default `segment.target_lifetime`: how long one segment should last at the current rate.
const DEFAULT_TARGET_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Default `segment.wait_timeout`.
const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Validated `[segment]` settings: where the segment table is and how the buffers behave.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentSettings {
    /// Database URL (`sqlite:`, `postgres:`, `mysql:`); `None`: the SQLite file
    /// `<data_dir>/floe.db`, resolved at start so a changed `data_dir` moves it too.
    pub url: Option<String>,
    /// Table and column names (a preset, possibly with overrides).
    pub table: TableSpec,
    /// Pool size, call timeout, whether to create the table.
    pub store: StoreOptions,
    /// Buffer and refill behaviour.
    pub service: ServiceConfig,
}

/// Settings of the segment service (`crate::segment::SegmentService`): kept here, below the
/// service, so the configuration does not depend on the code it configures.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// Buffer settings (threshold, adaptive step bounds).
    pub buffer: SegmentConfig,
    /// How long a request waits for a refill when the buffer is short.
    pub wait_timeout: Duration,
    /// Create unknown tags on first use with `default_step` (off: unknown tags are errors).
    pub auto_create: bool,
    /// Step of tags created automatically or without a step.
    pub default_step: u64,
    /// First and largest pause between failed refills.
    pub retry_backoff: (Duration, Duration),
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            buffer: SegmentConfig::default(),
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            auto_create: DEFAULT_AUTO_CREATE,
            default_step: DEFAULT_STEP,
            retry_backoff: (Duration::from_millis(50), Duration::from_millis(500)),
        }
    }
}

/// `[segment]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct SegmentBuilder {
    enabled: Bool,
    url: Text,
    schema: Text,
    table: Text,
    tag_column: Text,
    max_id_column: Text,
    step_column: Text,
    numbers_table: Text,
    create_table: Bool,
    call_timeout: Dur,
    max_connections: Int,
    refill_threshold: Float,
    target_lifetime: Dur,
    min_step: Int,
    max_step: Int,
    default_step: Int,
    auto_create: Bool,
    wait_timeout: Dur,
}

impl SegmentBuilder {
    /// Validates `[segment]`; `None` when `segment.enabled = false`.
    pub(super) fn build(&self) -> Result<Option<SegmentSettings>, ConfigError> {
        if !self.enabled.get("segment.enabled", DEFAULT_ENABLED)? {
            return Ok(None);
        }
        // The dialect check refuses a number with a better message than "a string" would.
        let url = self.url.text().map(|u| u.trim().to_owned());
        if let Some(url) = &url {
            floe_store::db::Dialect::of_url(url).map_err(|why| {
                invalid(
                    "segment.url",
                    floe_store::db::redact_url(url),
                    format!("a sqlite:, postgres: or mysql: URL ({why})"),
                )
            })?;
        }
        let schema = self.schema.get("segment.schema", DEFAULT_SCHEMA)?;
        let mut table = TableSpec::preset(schema.trim()).map_err(|_| {
            invalid(
                "segment.schema",
                format!("{schema:?}"),
                "floe, leaf (leaf_alloc), featherid (id_segments) or dig (segments)",
            )
        })?;
        for (v, field) in [
            (&self.table, &mut table.table),
            (&self.tag_column, &mut table.tag_column),
            (&self.max_id_column, &mut table.max_id_column),
            (&self.step_column, &mut table.step_column),
            (&self.numbers_table, &mut table.numbers_table),
        ] {
            if let Some(v) = v.text() {
                *field = v;
            }
        }
        // Each name is checked on its own, so the error names the key that is wrong.
        for (key, name) in [
            ("segment.table", &table.table),
            ("segment.tag_column", &table.tag_column),
            ("segment.max_id_column", &table.max_id_column),
            ("segment.step_column", &table.step_column),
            ("segment.numbers_table", &table.numbers_table),
        ] {
            floe_store::db::check_identifier(name).map_err(|_| {
                invalid(
                    key,
                    format!("{name:?}"),
                    format!(
                        "1..={} ASCII letters, digits and _, not starting with a digit",
                        floe_store::db::MAX_IDENTIFIER_LEN
                    ),
                )
            })?;
        }
        let store = StoreOptions {
            max_connections: self.max_connections.within(
                "segment.max_connections",
                DEFAULT_MAX_CONNECTIONS,
                1..=256,
            )?,
            call_timeout: self.call_timeout.within(
                "segment.call_timeout",
                DEFAULT_CALL_TIMEOUT,
                Duration::from_millis(10)..=Duration::from_secs(60),
            )?,
            // Floe's own table is created on first start; another system's table is used as is.
            create_table: self
                .create_table
                .get("segment.create_table", schema == DEFAULT_SCHEMA)?,
        };
        let steps = 1..=i64::MAX;
        let min_step = self
            .min_step
            .within("segment.min_step", DEFAULT_MIN_STEP, steps.clone())?;
        let max_step = self
            .max_step
            .within("segment.max_step", DEFAULT_MAX_STEP, steps.clone())?;
        if min_step > max_step {
            return Err(invalid(
                "segment.min_step",
                min_step,
                format!("at most segment.max_step ({max_step})"),
            ));
        }
        let buffer = SegmentConfig {
            refill_threshold: self.refill_threshold.within(
                "segment.refill_threshold",
                DEFAULT_REFILL_THRESHOLD,
                0.001..=0.999,
            )?,
            target_lifetime: self.target_lifetime.within(
                "segment.target_lifetime",
                DEFAULT_TARGET_LIFETIME,
                Duration::from_secs(1)..=Duration::from_secs(7 * 86_400),
            )?,
            min_step,
            max_step,
        };
        let service = ServiceConfig {
            buffer,
            wait_timeout: self.wait_timeout.within(
                "segment.wait_timeout",
                DEFAULT_WAIT_TIMEOUT,
                Duration::ZERO..=Duration::from_secs(60),
            )?,
            auto_create: self
                .auto_create
                .get("segment.auto_create", DEFAULT_AUTO_CREATE)?,
            default_step: self
                .default_step
                .within("segment.default_step", DEFAULT_STEP, steps)?,
            ..ServiceConfig::default()
        };
        Ok(Some(SegmentSettings {
            url,
            table,
            store,
            service,
        }))
    }
}
