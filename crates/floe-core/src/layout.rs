//! ID layouts: which bits of a 64-bit ID hold the time, the node identity, the lane and the sequence.
//!
//! A layout is an ordered list of fields from the most significant bit down. It is parsed from a
//! preset name (`genid`, `twitter(epoch=2020-01-01)`, `masa(seq_bits=10)`) or a spec string
//! (`time:41/1ms@2020-01-01 worker:10 seq:12`), and printed back as a spec string that parses to
//! the same layout.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};
use thiserror::Error;

/// Milliseconds in one day, for printing epochs that fall on midnight as plain dates.
const DAY_MS: u64 = 86_400_000;

/// What a field of the layout holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// A leading zero bit, so the ID stays positive as a signed 64-bit integer (Java/.NET longs).
    Sign,
    /// Ticks since the epoch.
    Time,
    /// Part of the node identity (zone, dc, machine, worker…), fixed per node.
    Node,
    /// An independent sequence space (GenID's bucket); a connection is bound to one lane.
    Lane,
    /// The counter within one tick of one lane.
    Seq,
}

/// One bit field of a layout.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Field {
    /// Name as written in a spec string (`time`, `seq`, `lane`, `sign` or a node field name).
    pub name: String,
    /// What the field holds.
    pub kind: FieldKind,
    /// Width in bits.
    pub width: u32,
    /// Position of the least significant bit of the field within the ID.
    pub shift: u32,
}

impl Field {
    /// The largest value the field can hold.
    pub fn max(&self) -> u64 {
        mask(self.width)
    }

    /// Extracts this field's value from an ID.
    pub fn get(&self, id: u64) -> u64 {
        (id >> self.shift) & self.max()
    }
}

/// A mask of the `width` low bits.
pub(crate) fn mask(width: u32) -> u64 {
    if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    }
}

/// The unit and epoch of the time field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeSpec {
    /// Length of one tick in milliseconds (1 ms for Twitter, 10 ms for Sonyflake, 1000 for GenID).
    pub unit_ms: u64,
    /// The instant of tick 0, in Unix milliseconds.
    pub epoch_ms: u64,
}

/// A validated ID layout.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Layout {
    fields: Vec<Field>,
    time: TimeSpec,
}

/// Why a layout, spec string or preset was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LayoutError {
    /// The spec string could not be read.
    #[error("bad layout spec `{token}`: {why}")]
    Syntax {
        /// The offending token.
        token: String,
        /// What is wrong with it.
        why: String,
    },
    /// No preset of that name.
    #[error("unknown layout `{name}`: use a preset ({}) or a spec string such as `time:41/1ms@2020-01-01 worker:10 seq:12`", PRESETS.join(", "))]
    UnknownPreset {
        /// The name given.
        name: String,
    },
    /// A preset option is unknown or out of range.
    #[error("layout `{preset}`: option `{option}` {why}")]
    PresetOption {
        /// The preset.
        preset: String,
        /// The option.
        option: String,
        /// What is wrong.
        why: String,
    },
    /// The fields add up to more than 64 bits.
    #[error("layout fields add up to {total} bits; the limit is 64")]
    TooWide {
        /// Sum of the widths.
        total: u32,
    },
    /// A field has a width the layout cannot use.
    #[error("field `{field}` has width {width}; allowed is {min}..={max}")]
    Width {
        /// The field.
        field: String,
        /// The width given.
        width: u32,
        /// Smallest allowed.
        min: u32,
        /// Largest allowed.
        max: u32,
    },
    /// A field that must appear once is missing or repeated.
    #[error("field `{field}` must appear exactly once (found {count})")]
    Count {
        /// The field.
        field: String,
        /// How often it appears.
        count: usize,
    },
    /// A field name appears twice.
    #[error("field `{field}` appears twice")]
    Duplicate {
        /// The field.
        field: String,
    },
    /// The sign bit is not the most significant field.
    #[error("field `sign` must come first (most significant bit)")]
    SignNotFirst,
    /// A field that must lie below the time field lies above it.
    #[error("field `{field}` must come after `time` (less significant), or IDs of one lane would not increase")]
    AboveTime {
        /// The field.
        field: String,
    },
    /// The tick length is zero.
    #[error("time unit must be at least 1 ms")]
    ZeroUnit,
    /// The epoch lies in the future.
    #[error("layout epoch {epoch} is in the future (now {now}); pick an epoch in the past")]
    EpochInFuture {
        /// The epoch (RFC 3339).
        epoch: String,
        /// The current time (RFC 3339).
        now: String,
    },
    /// The time field has run out.
    #[error("layout expired on {end}: its {bits}-bit time field from epoch {epoch} is used up; move the epoch (e.g. `{hint}`) or widen the time field")]
    Expired {
        /// When the time field ran out (RFC 3339).
        end: String,
        /// Width of the time field.
        bits: u32,
        /// The epoch (RFC 3339).
        epoch: String,
        /// A spec the user could use instead.
        hint: String,
    },
}

/// Names of the built-in presets, for messages and `floe layout --list`.
pub const PRESETS: &[&str] = &[
    "genid",
    "twitter",
    "masa",
    "sonyflake",
    "baidu",
    "goldflake",
    "js53",
];

/// Unix ms of a UTC calendar date; presets use only valid constant dates.
fn date_ms(y: i32, m: u32, d: u32) -> u64 {
    let date = NaiveDate::from_ymd_opt(y, m, d).expect("valid preset date");
    let ms = date
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_millis();
    u64::try_from(ms).expect("preset epoch after 1970")
}

impl Layout {
    /// Builds a layout from fields listed most significant first; shifts are computed here.
    pub fn new(
        fields: Vec<(String, FieldKind, u32)>,
        time: TimeSpec,
    ) -> Result<Layout, LayoutError> {
        if time.unit_ms == 0 {
            return Err(LayoutError::ZeroUnit);
        }
        let total: u32 = fields.iter().map(|f| f.2).sum();
        if total > 64 {
            return Err(LayoutError::TooWide { total });
        }
        let count = |k: FieldKind| fields.iter().filter(|f| f.1 == k).count();
        for (kind, name) in [(FieldKind::Time, "time"), (FieldKind::Seq, "seq")] {
            if count(kind) != 1 {
                return Err(LayoutError::Count {
                    field: name.into(),
                    count: count(kind),
                });
            }
        }
        if count(FieldKind::Lane) > 1 {
            return Err(LayoutError::Duplicate {
                field: "lane".into(),
            });
        }
        let mut out = Vec::with_capacity(fields.len());
        let mut shift = total;
        for (i, (name, kind, width)) in fields.into_iter().enumerate() {
            let (min, max) = match kind {
                FieldKind::Sign => (1, 1),
                FieldKind::Time => (1, 63),
                FieldKind::Seq => (1, 62),
                FieldKind::Lane | FieldKind::Node => (1, 62),
            };
            if width < min || width > max {
                return Err(LayoutError::Width {
                    field: name,
                    width,
                    min,
                    max,
                });
            }
            if kind == FieldKind::Sign && i != 0 {
                return Err(LayoutError::SignNotFirst);
            }
            if out.iter().any(|f: &Field| f.name == name) {
                return Err(LayoutError::Duplicate { field: name });
            }
            shift -= width;
            out.push(Field {
                name,
                kind,
                width,
                shift,
            });
        }
        let time_shift = out
            .iter()
            .find(|f| f.kind == FieldKind::Time)
            .map(|f| f.shift);
        if let Some(f) = out.iter().find(|f| {
            matches!(f.kind, FieldKind::Seq | FieldKind::Lane) && Some(f.shift) > time_shift
        }) {
            return Err(LayoutError::AboveTime {
                field: f.name.clone(),
            });
        }
        // Fields are packed against bit 0; with fewer than 64 bits the top bits stay zero.
        Ok(Layout { fields: out, time })
    }

    /// Parses a preset name (optionally with options) or a spec string.
    pub fn parse(text: &str) -> Result<Layout, LayoutError> {
        let text = text.trim();
        if text.contains(':') {
            parse_spec(text)
        } else {
            parse_preset(text)
        }
    }

    /// Every field, most significant first.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The time unit and epoch.
    pub fn time_spec(&self) -> TimeSpec {
        self.time
    }

    /// The first field of a kind.
    pub fn field(&self, kind: FieldKind) -> Option<&Field> {
        self.fields.iter().find(|f| f.kind == kind)
    }

    /// The time field (every layout has exactly one).
    pub fn time_field(&self) -> &Field {
        self.field(FieldKind::Time)
            .expect("validated layout has a time field")
    }

    /// The sequence field (every layout has exactly one).
    pub fn seq_field(&self) -> &Field {
        self.field(FieldKind::Seq)
            .expect("validated layout has a seq field")
    }

    /// The node identity fields, most significant first.
    pub fn node_fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.kind == FieldKind::Node)
    }

    /// Total width in bits (≤ 64).
    pub fn total_bits(&self) -> u32 {
        self.fields.iter().map(|f| f.width).sum()
    }

    /// Unix ms at which `tick` starts.
    pub fn tick_start_ms(&self, tick: u64) -> u64 {
        self.time
            .epoch_ms
            .saturating_add(tick.saturating_mul(self.time.unit_ms))
    }

    /// The tick that contains Unix ms `ms`, or `None` before the epoch.
    pub fn tick_at(&self, ms: u64) -> Option<u64> {
        ms.checked_sub(self.time.epoch_ms)
            .map(|d| d / self.time.unit_ms)
    }

    /// Unix ms at which the time field runs out (saturating for very wide fields).
    pub fn end_ms(&self) -> u64 {
        let ticks = 1u128 << self.time_field().width;
        let end = u128::from(self.time.epoch_ms) + ticks * u128::from(self.time.unit_ms);
        u64::try_from(end).unwrap_or(u64::MAX)
    }

    /// Checks the parts of validity that depend on the current time: the epoch is in the past
    /// and the time field has not run out.
    pub fn check_at(&self, now_ms: u64) -> Result<(), LayoutError> {
        if self.time.epoch_ms > now_ms {
            return Err(LayoutError::EpochInFuture {
                epoch: rfc3339(self.time.epoch_ms),
                now: rfc3339(now_ms),
            });
        }
        if self.end_ms() <= now_ms {
            let year_start = now_ms - now_ms % DAY_MS;
            let mut hint = self.clone();
            hint.time.epoch_ms = year_start;
            return Err(LayoutError::Expired {
                end: rfc3339(self.end_ms()),
                bits: self.time_field().width,
                epoch: rfc3339(self.time.epoch_ms),
                hint: hint.to_string(),
            });
        }
        Ok(())
    }

    /// Capacity figures of this layout.
    pub fn capacity(&self) -> Capacity {
        let seq = self.seq_field().width;
        let lanes = self.field(FieldKind::Lane).map_or(1, |f| 1u64 << f.width);
        let node_bits: u32 = self.node_fields().map(|f| f.width).sum();
        let per_tick_lane = 1u64 << seq;
        let per_tick_node = u128::from(per_tick_lane) * u128::from(lanes);
        Capacity {
            ids_per_tick_per_lane: per_tick_lane,
            lanes,
            ids_per_second_per_node: per_tick_node as f64 * 1000.0 / self.time.unit_ms as f64,
            nodes: 1u128 << node_bits,
            tick_ms: self.time.unit_ms,
            end_ms: self.end_ms(),
        }
    }

    /// Builds the node-identity bits from named values; missing fields are 0.
    pub fn identity(&self, values: &[(String, u64)]) -> Result<Identity, IdentityError> {
        let mut out = vec![0u64; self.node_fields().count()];
        for (name, value) in values {
            let (i, field) = self
                .node_fields()
                .enumerate()
                .find(|(_, f)| &f.name == name)
                .ok_or_else(|| IdentityError::UnknownField {
                    field: name.clone(),
                    known: self.node_fields().map(|f| f.name.clone()).collect(),
                })?;
            if *value > field.max() {
                return Err(IdentityError::OutOfRange {
                    field: name.clone(),
                    value: *value,
                    max: field.max(),
                });
            }
            out[i] = *value;
        }
        Ok(Identity { values: out })
    }

    /// The ID bits contributed by a node identity.
    pub fn node_bits(&self, identity: &Identity) -> u64 {
        self.node_fields()
            .zip(&identity.values)
            .fold(0, |acc, (f, v)| acc | (v << f.shift))
    }

    /// Puts an ID together from its parts; values are masked to their field widths.
    pub fn compose(&self, tick: u64, identity: &Identity, lane: u64, seq: u64) -> u64 {
        let mut id = self.node_bits(identity);
        for f in &self.fields {
            let v = match f.kind {
                FieldKind::Time => tick,
                FieldKind::Lane => lane,
                FieldKind::Seq => seq,
                FieldKind::Sign | FieldKind::Node => continue,
            };
            id |= (v & f.max()) << f.shift;
        }
        id
    }

    /// Takes an ID apart into every field and its time.
    pub fn decode(&self, id: u64) -> Result<Decoded, DecodeError> {
        let total = self.total_bits();
        if total < 64 && id >> total != 0 {
            return Err(DecodeError::TooWide { id, bits: total });
        }
        if let Some(sign) = self.field(FieldKind::Sign) {
            if sign.get(id) != 0 {
                return Err(DecodeError::SignSet { id });
            }
        }
        let tick = self.time_field().get(id);
        let unix_ms = self.tick_start_ms(tick);
        let fields = self
            .fields
            .iter()
            .filter(|f| f.kind != FieldKind::Sign)
            .map(|f| (f.name.clone(), f.get(id)))
            .collect();
        Ok(Decoded {
            id,
            tick,
            unix_ms,
            fields,
        })
    }
}

/// Why an ID could not be decoded with a layout.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Bits above the layout's width are set.
    #[error("ID {id} has bits set above this layout's {bits} bits; is it from another layout?")]
    TooWide {
        /// The ID.
        id: u64,
        /// The layout's width.
        bits: u32,
    },
    /// The sign bit is set.
    #[error("ID {id} has the sign bit set; this layout never issues such IDs")]
    SignSet {
        /// The ID.
        id: u64,
    },
}

/// The parts of a decoded ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The ID itself.
    pub id: u64,
    /// Ticks since the epoch.
    pub tick: u64,
    /// Unix ms at the start of the tick.
    pub unix_ms: u64,
    /// Every field but the sign bit, most significant first, with its value.
    pub fields: Vec<(String, u64)>,
}

impl Decoded {
    /// A field's value by name.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// The time as RFC 3339 in UTC.
    pub fn time_rfc3339(&self) -> String {
        rfc3339(self.unix_ms)
    }
}

impl Serialize for Decoded {
    /// `{"id", "id_hex", "time", "unix_ms", "fields": {name: value, …}}`, fields in layout order;
    /// the one JSON shape of a decoded ID (CLI and HTTP).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Fields<'a>(&'a [(String, u64)]);
        impl Serialize for Fields<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
        let mut st = s.serialize_struct("Decoded", 5)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("id_hex", &format!("{:#018x}", self.id))?;
        st.serialize_field("time", &self.time_rfc3339())?;
        st.serialize_field("unix_ms", &self.unix_ms)?;
        st.serialize_field("fields", &Fields(&self.fields))?;
        st.end()
    }
}

/// Parses `name=value` pairs separated by commas (`zone=1,dc=2,machine=3`), the one textual
/// form of an identity for flags and environment variables.
pub fn parse_identity_pairs(text: &str) -> Result<Vec<(String, u64)>, IdentityTextError> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| IdentityTextError::NotAPair(pair.to_string()))?;
            let v = v
                .trim()
                .parse::<u64>()
                .map_err(|_| IdentityTextError::NotANumber {
                    pair: pair.to_string(),
                    value: v.trim().to_string(),
                })?;
            Ok((k.trim().to_string(), v))
        })
        .collect()
}

/// Why `name=value,…` identity text did not parse (whether the names and values fit a layout is
/// [`IdentityError`]'s part).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityTextError {
    /// A piece without `=`.
    #[error("identity `{0}` is not name=value (e.g. zone=1,dc=2)")]
    NotAPair(String),
    /// A value that is not a non-negative integer.
    #[error("identity `{pair}`: `{value}` is not a non-negative integer")]
    NotANumber {
        /// The pair as written.
        pair: String,
        /// The value part.
        value: String,
    },
}

/// The node identity: one value per node field, in layout order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Identity {
    values: Vec<u64>,
}

impl Identity {
    /// Values in layout order.
    pub fn values(&self) -> &[u64] {
        &self.values
    }

    /// Whether every field is 0 (the unconfigured default, worth a warning).
    pub fn is_zero(&self) -> bool {
        self.values.iter().all(|v| *v == 0)
    }
}

/// Why a node identity was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentityError {
    /// The layout has no such node field.
    #[error("identity field `{field}` is not in the layout; its node fields are: {}", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownField {
        /// The name given.
        field: String,
        /// The layout's node fields.
        known: Vec<String>,
    },
    /// The value does not fit the field.
    #[error("identity field `{field}` = {value} is out of range 0..={max}")]
    OutOfRange {
        /// The field.
        field: String,
        /// The value given.
        value: u64,
        /// The largest allowed.
        max: u64,
    },
}

/// What a layout can issue.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Capacity {
    /// IDs one lane can issue in one tick.
    pub ids_per_tick_per_lane: u64,
    /// Lanes per node (1 without a lane field).
    pub lanes: u64,
    /// IDs one node can issue per second with every lane busy.
    pub ids_per_second_per_node: f64,
    /// Distinct node identities.
    pub nodes: u128,
    /// Length of one tick.
    pub tick_ms: u64,
    /// Unix ms at which the time field runs out.
    pub end_ms: u64,
}

/// Formats Unix ms as RFC 3339 UTC with millisecond precision when needed.
pub fn rfc3339(ms: u64) -> String {
    match i64::try_from(ms)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
    {
        Some(t) if ms.is_multiple_of(1000) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => format!("beyond year 262143 ({ms} ms)"),
    }
}

/// Why an epoch did not parse; the text is the epoch as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochError {
    /// Digits only, but too many for a u64 of milliseconds.
    #[error("epoch `{0}` is not a number of milliseconds")]
    NotMillis(String),
    /// No accepted form.
    #[error(
        "epoch `{0}` is not `unix`, a date (2020-01-01), an RFC 3339 time or Unix milliseconds"
    )]
    Unrecognised(String),
    /// A time before the Unix epoch.
    #[error("epoch `{0}` is before 1970-01-01")]
    BeforeUnix(String),
}

/// Parses an epoch: `unix`, a date, an RFC 3339 time or Unix milliseconds.
pub fn parse_epoch(text: &str) -> Result<u64, EpochError> {
    let text = text.trim();
    if text == "unix" {
        return Ok(0);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| EpochError::NotMillis(text.to_string()));
    }
    let ms = if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis()
    } else if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        t.timestamp_millis()
    } else {
        return Err(EpochError::Unrecognised(text.to_string()));
    };
    u64::try_from(ms).map_err(|_| EpochError::BeforeUnix(text.to_string()))
}

/// Prints an epoch the shortest way that parses back to the same value.
fn format_epoch(ms: u64) -> String {
    if ms.is_multiple_of(DAY_MS) {
        rfc3339(ms)[..10].to_string()
    } else if ms.is_multiple_of(1000) {
        rfc3339(ms)
    } else {
        ms.to_string()
    }
}

/// Parses a tick length: `1ms`, `10ms`, `1s`.
fn parse_unit(text: &str) -> Result<u64, String> {
    let (num, mult) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000)
    } else {
        return Err(format!(
            "time unit `{text}` needs a suffix: ms or s (e.g. 1ms, 10ms, 1s)"
        ));
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("time unit `{text}` is not a whole number of ms or s"))?;
    if n == 0 {
        return Err("time unit must be at least 1 ms".into());
    }
    n.checked_mul(mult)
        .ok_or_else(|| format!("time unit `{text}` is too long"))
}

fn format_unit(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn syntax(token: &str, why: impl Into<String>) -> LayoutError {
    LayoutError::Syntax {
        token: token.into(),
        why: why.into(),
    }
}

fn parse_spec(text: &str) -> Result<Layout, LayoutError> {
    let mut fields = Vec::new();
    let mut time = TimeSpec {
        unit_ms: 1,
        epoch_ms: 0,
    };
    for token in text.split_whitespace() {
        let (name, rest) = token
            .split_once(':')
            .ok_or_else(|| syntax(token, "expected name:width, e.g. seq:12"))?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            || name.as_bytes()[0].is_ascii_digit()
        {
            return Err(syntax(
                token,
                "field names are lowercase letters, digits and _",
            ));
        }
        let kind = match name {
            "time" => FieldKind::Time,
            "seq" => FieldKind::Seq,
            "lane" => FieldKind::Lane,
            "sign" => FieldKind::Sign,
            _ => FieldKind::Node,
        };
        let (width_text, suffix) = match rest.find(['/', '@']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let width: u32 = width_text
            .parse()
            .map_err(|_| syntax(token, format!("width `{width_text}` is not a number")))?;
        if kind == FieldKind::Time {
            let (unit, epoch) = match suffix.split_once('@') {
                Some((u, e)) => (u, Some(e)),
                None => (suffix, None),
            };
            if let Some(u) = unit.strip_prefix('/') {
                time.unit_ms = parse_unit(u).map_err(|why| syntax(token, why))?;
            } else if !unit.is_empty() {
                return Err(syntax(token, "expected time:BITS/UNIT@EPOCH"));
            }
            if let Some(e) = epoch {
                time.epoch_ms = parse_epoch(e).map_err(|why| syntax(token, why.to_string()))?;
            }
        } else if !suffix.is_empty() {
            return Err(syntax(token, "only the time field takes /unit and @epoch"));
        }
        fields.push((name.to_string(), kind, width));
    }
    Layout::new(fields, time)
}

/// A preset name and its `key=value` options, in order.
type PresetCall<'a> = (&'a str, Vec<(&'a str, &'a str)>);

/// Splits `name(k=v, …)` into the name and its options.
fn preset_options(text: &str) -> Result<PresetCall<'_>, LayoutError> {
    let Some((name, rest)) = text.split_once('(') else {
        return Ok((text, Vec::new()));
    };
    let inner = rest
        .strip_suffix(')')
        .ok_or_else(|| syntax(text, "missing `)` after preset options"))?;
    let mut opts = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| syntax(part, "preset options are key=value"))?;
        opts.push((k.trim(), v.trim()));
    }
    Ok((name.trim(), opts))
}

fn parse_preset(text: &str) -> Result<Layout, LayoutError> {
    let (name, opts) = preset_options(text)?;
    let opt_err = |option: &str, why: String| LayoutError::PresetOption {
        preset: name.into(),
        option: option.into(),
        why,
    };
    let mut epoch = None;
    let mut seq_bits = 12u32;
    let mut worker_bits = 10u32;
    let mut unit_ms = 1u64;
    for (k, v) in &opts {
        let number = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| opt_err(k, format!("`{v}` is not a number")))
        };
        match (name, *k) {
            (_, "epoch" | "base_time") => {
                epoch = Some(parse_epoch(v).map_err(|why| opt_err(k, why.to_string()))?);
            }
            ("masa", "seq_bits" | "sequence_bits") => seq_bits = number(v)?,
            ("masa", "worker_bits" | "worker_id_bits") => worker_bits = number(v)?,
            ("masa", "timestamp" | "unit" | "timestamp_type") => {
                unit_ms = match *v {
                    "ms" | "1" | "milliseconds" => 1,
                    "s" | "2" | "seconds" => 1000,
                    _ => return Err(opt_err(k, format!("`{v}` is not ms (1) or s (2)"))),
                }
            }
            _ => {
                let known = if name == "masa" {
                    "epoch, seq_bits, worker_bits, timestamp"
                } else {
                    "epoch"
                };
                return Err(opt_err(
                    k,
                    format!("is unknown; this preset takes: {known}"),
                ));
            }
        }
    }
    let f = |n: &str, k: FieldKind, w: u32| (n.to_string(), k, w);
    use FieldKind::*;
    let (fields, unit, default_epoch) = match name {
        "genid" => (
            vec![
                f("time", Time, 32),
                f("zone", Node, 5),
                f("dc", Node, 3),
                f("machine", Node, 3),
                f("lane", Lane, 5),
                f("seq", Seq, 16),
            ],
            1000,
            0,
        ),
        "twitter" => (
            vec![
                f("sign", Sign, 1),
                f("time", Time, 41),
                f("dc", Node, 5),
                f("worker", Node, 5),
                f("seq", Seq, 12),
            ],
            1,
            1_288_834_974_657,
        ),
        "masa" => {
            // MASA: SequenceBits + WorkerIdBits ≤ 22 with ms timestamps, ≤ 31 with seconds.
            let limit = if unit_ms == 1 { 22 } else { 31 };
            if seq_bits == 0 || worker_bits == 0 || seq_bits + worker_bits > limit {
                return Err(opt_err(
                    "seq_bits + worker_bits",
                    format!(
                        "= {} + {}; each must be ≥ 1 and their sum ≤ {limit} with {} timestamps",
                        seq_bits,
                        worker_bits,
                        if unit_ms == 1 { "ms" } else { "s" }
                    ),
                ));
            }
            (
                vec![
                    f("sign", Sign, 1),
                    f("time", Time, 63 - worker_bits - seq_bits),
                    f("worker", Node, worker_bits),
                    f("seq", Seq, seq_bits),
                ],
                unit_ms,
                date_ms(2020, 1, 1),
            )
        }
        "sonyflake" => (
            vec![
                f("sign", Sign, 1),
                f("time", Time, 39),
                f("seq", Seq, 8),
                f("machine", Node, 16),
            ],
            10,
            date_ms(2014, 9, 1),
        ),
        "baidu" => (
            vec![
                f("sign", Sign, 1),
                f("time", Time, 28),
                f("worker", Node, 22),
                f("seq", Seq, 13),
            ],
            1000,
            date_ms(2016, 5, 20),
        ),
        "goldflake" => (
            vec![
                f("time", Time, 42),
                f("worker", Node, 10),
                f("seq", Seq, 12),
            ],
            1,
            1_652_284_800_000,
        ),
        // 53 bits: every ID is exact in a JavaScript number (Number.MAX_SAFE_INTEGER = 2^53 - 1).
        "js53" => (
            vec![f("time", Time, 41), f("worker", Node, 4), f("seq", Seq, 8)],
            1,
            date_ms(2020, 1, 1),
        ),
        _ => return Err(LayoutError::UnknownPreset { name: name.into() }),
    };
    Layout::new(
        fields,
        TimeSpec {
            unit_ms: unit,
            epoch_ms: epoch.unwrap_or(default_epoch),
        },
    )
}

impl fmt::Display for Layout {
    /// The canonical spec string; `Layout::parse` reads it back to an equal layout.
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                out.write_str(" ")?;
            }
            write!(out, "{}:{}", field.name, field.width)?;
            if field.kind == FieldKind::Time {
                write!(
                    out,
                    "/{}@{}",
                    format_unit(self.time.unit_ms),
                    format_epoch(self.time.epoch_ms)
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_text_and_epoch_errors_are_typed() {
        assert_eq!(
            parse_identity_pairs("zone=1, dc"),
            Err(IdentityTextError::NotAPair("dc".into()))
        );
        assert_eq!(
            parse_identity_pairs("zone=-1"),
            Err(IdentityTextError::NotANumber {
                pair: "zone=-1".into(),
                value: "-1".into()
            })
        );
        assert_eq!(
            parse_identity_pairs(" zone=1,dc=2 ,"),
            Ok(vec![("zone".into(), 1), ("dc".into(), 2)])
        );
        assert_eq!(parse_epoch("2020-01-01"), Ok(1_577_836_800_000));
        assert_eq!(
            parse_epoch("1969-12-31"),
            Err(EpochError::BeforeUnix("1969-12-31".into()))
        );
        assert_eq!(
            parse_epoch("99999999999999999999"),
            Err(EpochError::NotMillis("99999999999999999999".into()))
        );
        assert_eq!(
            parse_epoch("yesterday"),
            Err(EpochError::Unrecognised("yesterday".into()))
        );
    }

    #[test]
    fn genid_preset_matches_seed_000() {
        let l = Layout::parse("genid").unwrap();
        assert_eq!(
            l.to_string(),
            "time:32/1s@1970-01-01 zone:5 dc:3 machine:3 lane:5 seq:16"
        );
        assert_eq!(l.time_field().shift, 32);
        assert_eq!(l.total_bits(), 64);
    }

    #[test]
    fn masa_rules_are_enforced() {
        assert!(Layout::parse("masa(seq_bits=12, worker_bits=10)").is_ok());
        let e = Layout::parse("masa(seq_bits=12, worker_bits=11)").unwrap_err();
        assert!(e.to_string().contains("≤ 22"), "{e}");
        let l = Layout::parse("masa(seq_bits=16, worker_bits=15, timestamp=s)").unwrap();
        assert_eq!(l.time_field().width, 32);
        assert_eq!(l.time_spec().unit_ms, 1000);
        assert!(Layout::parse("masa(seq_bits=16, worker_bits=16, timestamp=s)").is_err());
    }

    #[test]
    fn baidu_is_expired_unless_the_epoch_moves() {
        let now = date_ms(2026, 11, 21);
        let e = Layout::parse("baidu").unwrap().check_at(now).unwrap_err();
        assert!(matches!(e, LayoutError::Expired { .. }), "{e}");
        assert!(e.to_string().contains("2024-11-"), "{e}");
        let moved = Layout::parse("baidu(epoch=2025-01-01)").unwrap();
        moved.check_at(now).unwrap();
    }

    #[test]
    fn epoch_in_future_is_refused() {
        let l = Layout::parse("time:41/1ms@2030-01-01 seq:22").unwrap();
        let e = l.check_at(date_ms(2026, 1, 1)).unwrap_err();
        assert!(matches!(e, LayoutError::EpochInFuture { .. }), "{e}");
    }

    #[test]
    fn bad_specs_name_the_problem() {
        let cases = [
            ("time:41/1ms seq:12 worker:12", "65 bits"),
            ("seq:12 worker:10", "`time` must appear exactly once"),
            ("time:41 worker:10", "`seq` must appear exactly once"),
            ("time:41/1h seq:12", "needs a suffix"),
            ("time:41@yesterday seq:12", "is not `unix`"),
            ("time:41 seq:x", "width `x`"),
            ("time:41 seq:12 sign:1", "must come first"),
            ("time:41 seq:0", "allowed is 1..=62"),
            ("time:41 seq:12 a:1 a:2", "appears twice"),
            ("seq:12 time:41", "must come after `time`"),
            ("Time:41 seq:12", "lowercase"),
            ("nosuch", "unknown layout"),
            ("genid(seq_bits=3)", "is unknown"),
        ];
        for (spec, want) in cases {
            let e = Layout::parse(spec).unwrap_err().to_string();
            assert!(e.contains(want), "{spec}: {e}");
        }
    }

    #[test]
    fn identity_ranges() {
        let l = Layout::parse("genid").unwrap();
        let e = l.identity(&[("zone".into(), 32)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "identity field `zone` = 32 is out of range 0..=31"
        );
        let e = l.identity(&[("worker".into(), 1)]).unwrap_err();
        assert!(e.to_string().contains("zone, dc, machine"), "{e}");
        let id = l
            .identity(&[("zone".into(), 31), ("dc".into(), 7), ("machine".into(), 7)])
            .unwrap();
        assert_eq!(l.node_bits(&id), 0xFFE0_0000);
    }

    #[test]
    fn capacity_of_presets() {
        let c = Layout::parse("genid").unwrap().capacity();
        assert_eq!(c.ids_per_tick_per_lane, 65_536);
        assert_eq!(c.lanes, 32);
        assert_eq!(c.ids_per_second_per_node, 2_097_152.0);
        assert_eq!(c.nodes, 2048);
        assert_eq!(rfc3339(c.end_ms), "2106-02-07T06:28:16Z");
        let t = Layout::parse("twitter").unwrap().capacity();
        assert_eq!(t.ids_per_second_per_node, 4_096_000.0);
        assert_eq!(t.nodes, 1024);
    }
}
