//! The `[numbers.<name>]` sections: number sequences declared in the configuration, validated at
//! start like every key (exit 64 naming `numbers.<name>.<key>`). Sequences declared through the
//! admin API live in the database instead (`segment.numbers_table`).

use std::collections::BTreeMap;

use floe_core::numbers::{Sequence, Zone};
use serde::Deserialize;

use super::value::{Int, Text};
use super::{invalid, ConfigError};

/// Default `reset`: one sequence for all time.
const DEFAULT_RESET: &str = "never";
/// Default `start`.
const DEFAULT_START: u64 = 1;
/// Default `step`, as segment mode's `default_step`.
const DEFAULT_STEP: u64 = 1000;

/// One `[numbers.<name>]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct NumberBuilder {
    format: Text,
    reset: Text,
    time_zone: Text,
    start: Int,
    step: Int,
}

/// Every `[numbers.<name>]` table, by name.
pub(super) type NumbersBuilder = BTreeMap<String, NumberBuilder>;

/// Validates every declared sequence; `segment_on` is whether segment mode, which stores their
/// counters, is enabled.
pub(super) fn build(
    numbers: &NumbersBuilder,
    segment_on: bool,
) -> Result<Vec<Sequence>, ConfigError> {
    let mut out = Vec::with_capacity(numbers.len());
    for (name, b) in numbers {
        let key = |field: &str| format!("numbers.{name}.{field}");
        if !segment_on {
            return Err(invalid(
                &format!("numbers.{name}"),
                "a number sequence",
                "number sequences keep their counters in the segment table: set segment.enabled = true",
            ));
        }
        let format = b.format.text().ok_or_else(|| {
            invalid(
                &key("format"),
                "missing",
                "a format such as \"ORD-{date:%Y%m%d}-{seq:06}\" (see docs/numbers.md)",
            )
        })?;
        let reset = b.reset.get(&key("reset"), DEFAULT_RESET)?;
        let zone = b
            .time_zone
            .get(&key("time_zone"), &Zone::default().to_string())?;
        let start = b.start.within(&key("start"), DEFAULT_START, 0..=i64::MAX)?;
        let step = b.step.within(&key("step"), DEFAULT_STEP, 1..=i64::MAX)?;
        let sequence = Sequence::from_text(name, &format, &reset, &zone, start, step)
            .map_err(|e| invalid(&key(e.field), e.value, e.reason))?;
        out.push(sequence);
    }
    Ok(out)
}
