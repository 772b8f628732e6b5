//! Business numbers: formatted sequences such as `ORD-20261130-000042` that restart every day,
//! month or year (Leaf issues #96 and #172, CosId's grouped segments).
//!
//! This module is the pure part: the format grammar, the period an instant falls in (in the
//! sequence's time zone) and the rendering of a number. Where the counter lives is the
//! server's business: one segment row per period, tagged `name@<period key>`, claimed like any
//! segment tag.
//!
//! A format is literal text with placeholders:
//!
//! - `{date:<strftime>}` — the issue time in the sequence's time zone (`{date}` alone is
//!   `{date:%Y%m%d}`); any number of them;
//! - `{seq}` or `{seq:0N}` — the counter, exactly once; `{seq:0N}` is zero-padded to N digits
//!   (1..=18) and never wider: past `10^N − 1` the period is exhausted;
//! - `{{` and `}}` — literal braces.
//!
//! [`Sequence::new`] refuses a format whose numbers could collide: a `{date}` that renders the
//! same text in two periods of its reset (`reset = "day"` with `%Y%m`), or two parts that both
//! vary in width (`{date:%-d}{seq}`: is `111` day 1 number 11 or day 11 number 1?). It checks
//! by rendering every day of the years [`SAMPLE_YEARS`], so any strftime field chrono knows is
//! judged by what it prints, not by a list of specifiers.
//!
//! ```
//! use floe_core::numbers::{Reset, Sequence, Zone};
//! let zone: Zone = "Asia/Shanghai".parse().unwrap();
//! let seq = Sequence::new("order_no", "ORD-{date:%Y%m%d}-{seq:06}", Reset::Day, zone, 1, 1000).unwrap();
//! // 2026-11-30 15:59:59 UTC is 23:59:59 in Shanghai; one second later it is the next day there.
//! let before = seq.stamp(1_796_054_399_000).unwrap();
//! let after = seq.stamp(1_796_054_400_000).unwrap();
//! assert_eq!((before.tag(), before.number(42)), ("order_no@20261130", "ORD-20261130-000042".to_string()));
//! assert_eq!((after.tag(), after.number(1)), ("order_no@20261201", "ORD-20261201-000001".to_string()));
//! assert_eq!(seq.end(), 1_000_000, "{{seq:06}} never goes past 999999");
//! ```

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::ops::RangeInclusive;
use std::str::FromStr;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use thiserror::Error;

/// Longest sequence name in bytes; with `@` and an 8-character period key its tags stay well
/// inside the segment table's 128-byte tag column.
pub const MAX_NAME_LEN: usize = 64;

/// Longest number in bytes: one length byte on the binary protocol.
pub const MAX_NUMBER_LEN: usize = 255;

/// Largest N of `{seq:0N}`: `10^18 − 1` is the widest all-nines value below 2^63.
pub const MAX_SEQ_WIDTH: u32 = 18;

/// What `{date}` without a format means.
pub const DEFAULT_DATE_FORMAT: &str = "%Y%m%d";

/// The years whose every day [`Sequence::new`] renders to judge a format (leap years, 53-week
/// ISO years and the 9-to-10-digit step of `%s` in 2001 included).
pub const SAMPLE_YEARS: RangeInclusive<i32> = 2000..=2030;

/// The period key of `reset = "never"`: its one row is `name@all`.
pub const NEVER_KEY: &str = "all";

/// Why a sequence definition was refused: names the field, the value and what is allowed, so
/// the configuration can prefix the key (`numbers.order_no.format`) and the admin API can
/// answer 400 with the same text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field} = {value} is invalid: {reason}")]
pub struct SequenceError {
    /// The field: `name`, `format`, `reset`, `time_zone`, `start` or `step`.
    pub field: &'static str,
    /// The value as given, quoted when it is text.
    pub value: String,
    /// What is wrong and what is allowed.
    pub reason: String,
}

impl SequenceError {
    fn new(field: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        SequenceError {
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// The rule for sequence names: 1..=[`MAX_NAME_LEN`] ASCII letters, digits, `_`, `-` and `.`,
/// so a name is a URL path segment as it is and `name@period` is a valid segment tag.
pub fn check_name(name: &str) -> Result<(), SequenceError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        return Ok(());
    }
    let shown: String = format!("{name:?}").chars().take(80).collect();
    Err(SequenceError::new(
        "name",
        shown,
        format!("allowed are 1..={MAX_NAME_LEN} ASCII letters, digits, _, - and ."),
    ))
}

/// When a sequence starts again from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reset {
    /// One sequence for all time.
    Never,
    /// Every calendar year in the sequence's time zone.
    Year,
    /// Every calendar month.
    Month,
    /// Every day.
    Day,
}

impl Reset {
    /// The allowed names, for messages.
    pub const ALLOWED: &'static str = "never, year, month, day";

    /// The name as written in a definition.
    pub fn as_str(self) -> &'static str {
        match self {
            Reset::Never => "never",
            Reset::Year => "year",
            Reset::Month => "month",
            Reset::Day => "day",
        }
    }

    /// The key of the period holding the local date `d`: `20261130`, `202611`, `2026` or `all`.
    pub fn key(self, d: NaiveDate) -> String {
        match self {
            Reset::Never => NEVER_KEY.to_owned(),
            Reset::Year => format!("{:04}", d.year()),
            Reset::Month => format!("{:04}{:02}", d.year(), d.month()),
            Reset::Day => format!("{:04}{:02}{:02}", d.year(), d.month(), d.day()),
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Reset::Never => "period",
            Reset::Year => "year",
            Reset::Month => "month",
            Reset::Day => "day",
        }
    }
}

impl fmt::Display for Reset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reset {
    type Err = SequenceError;

    fn from_str(s: &str) -> Result<Reset, SequenceError> {
        match s.trim() {
            "never" => Ok(Reset::Never),
            "year" => Ok(Reset::Year),
            "month" => Ok(Reset::Month),
            "day" => Ok(Reset::Day),
            _ => Err(SequenceError::new(
                "reset",
                format!("{s:?}"),
                format!("one of {}", Reset::ALLOWED),
            )),
        }
    }
}

/// The time zone a sequence's dates and periods are read in: an IANA name or a fixed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// An IANA zone (`Asia/Shanghai`, `UTC`), with its daylight-saving rules.
    Named(Tz),
    /// A fixed offset from UTC (`+08:00`).
    Fixed(FixedOffset),
}

impl Default for Zone {
    fn default() -> Zone {
        Zone::Named(Tz::UTC)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Named(tz) => f.write_str(tz.name()),
            Zone::Fixed(offset) => write!(f, "{offset}"),
        }
    }
}

impl FromStr for Zone {
    type Err = SequenceError;

    /// `Asia/Shanghai`, `UTC`, or `+08:00` / `-0530` / `+08`.
    fn from_str(s: &str) -> Result<Zone, SequenceError> {
        let text = s.trim();
        let bad = || {
            SequenceError::new(
                "time_zone",
                format!("{s:?}"),
                "an IANA zone name such as \"Asia/Shanghai\" or \"UTC\" (case matters), or a fixed offset such as \"+08:00\"",
            )
        };
        let Some(sign) = text.strip_prefix(['+', '-']).map(|_| &text[..1]) else {
            return text.parse::<Tz>().map(Zone::Named).map_err(|_| bad());
        };
        let digits: String = text[1..].chars().filter(|c| *c != ':').collect();
        let (h, m) = match digits.len() {
            2 => (&digits[..], "00"),
            4 => (&digits[..2], &digits[2..]),
            _ => return Err(bad()),
        };
        let (h, m): (i32, i32) = match (h.parse(), m.parse()) {
            (Ok(h), Ok(m)) if h <= 23 && m <= 59 && digits.bytes().all(|b| b.is_ascii_digit()) => {
                (h, m)
            }
            _ => return Err(bad()),
        };
        let secs = (h * 3600 + m * 60) * if sign == "-" { -1 } else { 1 };
        FixedOffset::east_opt(secs).map(Zone::Fixed).ok_or_else(bad)
    }
}

/// An instant seen in a zone, for formatting.
enum Local {
    Named(DateTime<Tz>),
    Fixed(DateTime<FixedOffset>),
}

impl Local {
    fn date(&self) -> NaiveDate {
        match self {
            Local::Named(d) => d.date_naive(),
            Local::Fixed(d) => d.date_naive(),
        }
    }

    /// The items rendered; `Err` when chrono cannot render one at this instant.
    fn format(&self, items: &[Item<'static>]) -> Result<String, fmt::Error> {
        let mut out = String::new();
        match self {
            Local::Named(d) => write!(out, "{}", d.format_with_items(items.iter()))?,
            Local::Fixed(d) => write!(out, "{}", d.format_with_items(items.iter()))?,
        }
        Ok(out)
    }
}

impl Zone {
    /// The instant `unix_ms` in this zone; `None` outside chrono's range.
    fn at(&self, unix_ms: i64) -> Option<Local> {
        let utc = Utc.timestamp_millis_opt(unix_ms).single()?;
        Some(match self {
            Zone::Named(tz) => Local::Named(utc.with_timezone(tz)),
            Zone::Fixed(o) => Local::Fixed(utc.with_timezone(o)),
        })
    }

    /// The local wall time `day` `time` in this zone (the earlier one in a fold); `None` in a
    /// gap.
    fn local(&self, day: NaiveDate, time: NaiveTime) -> Option<Local> {
        let wall = day.and_time(time);
        Some(match self {
            Zone::Named(tz) => Local::Named(tz.from_local_datetime(&wall).earliest()?),
            Zone::Fixed(o) => Local::Fixed(o.from_local_datetime(&wall).earliest()?),
        })
    }
}

/// One piece of a format.
#[derive(Debug, Clone)]
enum Part {
    /// Text copied as it is.
    Literal(String),
    /// `{date:<spec>}`, parsed once.
    Date {
        /// The strftime text, for messages.
        spec: String,
        /// What chrono renders.
        items: Vec<Item<'static>>,
    },
    /// `{seq}` (no width) or `{seq:0N}`.
    Seq(Option<u32>),
}

/// A parsed format: literal text, `{date:…}` parts and exactly one `{seq}`.
#[derive(Debug, Clone)]
pub struct Format {
    /// As written.
    text: String,
    /// In order.
    parts: Vec<Part>,
    /// N of `{seq:0N}`, `None` for `{seq}`.
    width: Option<u32>,
}

impl Format {
    /// Parses `text`; refuses unknown placeholders, unbalanced braces, bad strftime, and a
    /// `{seq}` missing or given twice.
    pub fn parse(text: &str) -> Result<Format, SequenceError> {
        let err = |reason: String| SequenceError::new("format", format!("{text:?}"), reason);
        if text.len() > MAX_NUMBER_LEN {
            return Err(err(format!("at most {MAX_NUMBER_LEN} bytes")));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            let (c, after) = (rest.as_bytes()[i], &rest[i + 1..]);
            if after.as_bytes().first() == Some(&c) {
                literal.push(char::from(c));
                rest = &after[1..];
                continue;
            }
            let at = text.len() - rest.len() + i;
            if c == b'}' {
                return Err(err(format!(
                    "unmatched `}}` at byte {at}; write `}}}}` for a literal `}}`"
                )));
            }
            let Some(end) = after.find('}') else {
                return Err(err(format!(
                    "`{{` at byte {at} is not closed; write `{{{{` for a literal `{{`"
                )));
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(placeholder(&after[..end]).map_err(err)?);
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if literal.chars().any(char::is_control) {
            return Err(err("control characters are not allowed".into()));
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let seqs: Vec<Option<u32>> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Seq(w) => Some(*w),
                _ => None,
            })
            .collect();
        let width =
            match seqs[..] {
                [w] => w,
                [] => return Err(err(
                    "it needs a `{seq}` or `{seq:0N}`: the counter that makes each number unique"
                        .into(),
                )),
                _ => return Err(err("`{seq}` may appear only once".into())),
            };
        Ok(Format {
            text: text.to_owned(),
            parts,
            width,
        })
    }

    /// The format as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// N of `{seq:0N}`; `None` for an unpadded `{seq}`.
    pub fn width(&self) -> Option<u32> {
        self.width
    }

    fn dates(&self) -> impl Iterator<Item = (&str, &[Item<'static>])> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Date { spec, items } => Some((spec.as_str(), items.as_slice())),
            _ => None,
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One `{…}` placeholder.
fn placeholder(inner: &str) -> Result<Part, String> {
    let (name, arg) = match inner.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (inner, None),
    };
    match (name, arg) {
        ("seq", None) => Ok(Part::Seq(None)),
        ("seq", Some(arg)) => {
            let n = arg
                .strip_prefix('0')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u32>().ok())
                .filter(|n| (1..=MAX_SEQ_WIDTH).contains(n));
            n.map(|n| Part::Seq(Some(n))).ok_or_else(|| {
                format!("`{{seq:{arg}}}`: the padding is written `{{seq:0N}}` with N in 1..={MAX_SEQ_WIDTH}, e.g. `{{seq:06}}`")
            })
        }
        ("date", None) => placeholder(&format!("date:{DEFAULT_DATE_FORMAT}")),
        ("date", Some(spec)) => {
            if spec.is_empty() || spec.chars().any(char::is_control) {
                return Err(format!(
                    "`{{date:{spec}}}`: the date format must be non-empty strftime text without control characters, e.g. `{{date:%Y%m%d}}`"
                ));
            }
            let items = StrftimeItems::new(spec).parse_to_owned().map_err(|e| {
                format!("`{{date:{spec}}}` is not a strftime format chrono understands ({e}), e.g. `{{date:%Y%m%d}}`")
            })?;
            Ok(Part::Date {
                spec: spec.to_owned(),
                items,
            })
        }
        _ => Err(format!(
            "unknown placeholder `{{{inner}}}`; allowed are `{{date:<strftime>}}`, `{{date}}`, `{{seq}}` and `{{seq:0N}}` (write `{{{{` and `}}}}` for literal braces)"
        )),
    }
}

/// A validated number sequence: what `[numbers.<name>]` or `POST /admin/numbers` declares.
#[derive(Debug, Clone)]
pub struct Sequence {
    /// The name (`order_no`).
    name: String,
    /// The format.
    format: Format,
    /// When the counter starts again.
    reset: Reset,
    /// Where the date and the period are read.
    zone: Zone,
    /// First value of each period.
    start: u64,
    /// Values claimed per segment, as in segment mode.
    step: u64,
}

impl Sequence {
    /// Validates a definition: the name, the format, the `{date}` against the reset (every
    /// period of [`SAMPLE_YEARS`] must render apart from every other), the widths (at most one
    /// part of variable width, so a number reads back one way), the longest number
    /// ([`MAX_NUMBER_LEN`]), `start` (1 up to the padding's limit) and `step` (1..=2^63−1).
    pub fn new(
        name: &str,
        format: &str,
        reset: Reset,
        zone: Zone,
        start: u64,
        step: u64,
    ) -> Result<Sequence, SequenceError> {
        check_name(name)?;
        let format = Format::parse(format)?;
        let sequence = Sequence {
            name: name.to_owned(),
            format,
            reset,
            zone,
            start,
            step,
        };
        sequence.check_dates()?;
        let last = sequence.end() - 1;
        if start == 0 || start > last {
            let why = match sequence.format.width {
                Some(n) => {
                    format!("1..={last} (`{{seq:0{n}}}` holds {n} digits; 0 is never issued)")
                }
                None => format!("1..={last} (0 is never issued)"),
            };
            return Err(SequenceError::new("start", start, why));
        }
        if step == 0 || step > i64::MAX as u64 {
            return Err(SequenceError::new(
                "step",
                step,
                format!("1..={} (values claimed per segment)", i64::MAX),
            ));
        }
        Ok(sequence)
    }

    /// [`new`](Self::new) with the reset and the zone as text, the way the configuration and
    /// the admin API give them (and the definitions table stores them).
    pub fn from_text(
        name: &str,
        format: &str,
        reset: &str,
        zone: &str,
        start: u64,
        step: u64,
    ) -> Result<Sequence, SequenceError> {
        Sequence::new(name, format, reset.parse()?, zone.parse()?, start, step)
    }

    /// Renders every sample day and refuses formats whose numbers could collide.
    fn check_dates(&self) -> Result<(), SequenceError> {
        let err = |reason: String| {
            SequenceError::new("format", format!("{:?}", self.format.text), reason)
        };
        let dates: Vec<(&str, &[Item<'static>])> = self.format.dates().collect();
        if dates.is_empty() && self.reset != Reset::Never {
            return Err(err(format!(
                "reset = \"{}\" needs a `{{date:…}}` that tells every {} apart, e.g. `{{date:{}}}`; without one the numbers of two {0} periods would collide",
                self.reset,
                self.reset.unit(),
                example(self.reset),
            )));
        }
        // Widths seen per date part (min, max), and which period each rendering belongs to.
        let mut widths = vec![(usize::MAX, 0usize); dates.len()];
        let mut seen: HashMap<String, (String, NaiveDate)> = HashMap::new();
        let times = [
            NaiveTime::MIN,
            NaiveTime::from_hms_opt(13, 59, 59).unwrap_or(NaiveTime::MIN),
        ];
        let first = NaiveDate::from_ymd_opt(*SAMPLE_YEARS.start(), 1, 1);
        let last = NaiveDate::from_ymd_opt(*SAMPLE_YEARS.end(), 12, 31);
        let (Some(first), Some(last)) = (first, last) else {
            return Err(err("internal: bad sample range".into()));
        };
        for day in first.iter_days().take_while(|d| *d <= last) {
            let key = self.reset.key(day);
            for time in times {
                let Some(local) = self.zone.local(day, time) else {
                    continue;
                };
                let mut joined = String::new();
                for (i, (spec, items)) in dates.iter().enumerate() {
                    let text = local.format(items).map_err(|_| {
                        err(format!("`{{date:{spec}}}` cannot be rendered for {day}"))
                    })?;
                    if text.chars().any(char::is_control) {
                        return Err(err(format!(
                            "`{{date:{spec}}}` renders a control character ({text:?})"
                        )));
                    }
                    let w = &mut widths[i];
                    *w = (w.0.min(text.len()), w.1.max(text.len()));
                    joined.push_str(&text);
                    joined.push('\u{0}');
                }
                if let Some((other, when)) = seen.get(&joined) {
                    if *other != key {
                        return Err(err(format!(
                            "reset = \"{}\" but the dates render {:?} on {when} and on {day}, two different {}s, so their numbers would collide; include every field of the {}, e.g. `{{date:{}}}`",
                            self.reset,
                            joined.trim_end_matches('\u{0}').replace('\u{0}', "|"),
                            self.reset.unit(),
                            self.reset.unit(),
                            example(self.reset),
                        )));
                    }
                } else {
                    seen.insert(joined, (key.clone(), day));
                }
            }
        }
        let mut variable: Vec<String> = dates
            .iter()
            .zip(&widths)
            .filter(|(_, (lo, hi))| lo != hi)
            .map(|((spec, _), _)| format!("`{{date:{spec}}}`"))
            .collect();
        if self.format.width.is_none() {
            variable.push("`{seq}`".into());
        }
        if variable.len() > 1 {
            return Err(err(format!(
                "{} all vary in width, so a number could be read two ways (is `111` 1 and 11, or 11 and 1?) and two numbers could collide; pad the counter (`{{seq:06}}`) or use fixed-width date fields (`%d`, not `%-d`)",
                variable.join(" and ")
            )));
        }
        let literal: usize = self
            .format
            .parts
            .iter()
            .map(|p| match p {
                Part::Literal(t) => t.len(),
                _ => 0,
            })
            .sum();
        let seq_digits = self.format.width.map_or(19, |n| n as usize);
        let longest = literal + widths.iter().map(|w| w.1).sum::<usize>() + seq_digits;
        if longest > MAX_NUMBER_LEN {
            return Err(err(format!(
                "its numbers can be {longest} bytes long; at most {MAX_NUMBER_LEN}"
            )));
        }
        Ok(())
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The format.
    pub fn format(&self) -> &Format {
        &self.format
    }

    /// When the counter starts again.
    pub fn reset(&self) -> Reset {
        self.reset
    }

    /// The zone of dates and periods.
    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// First value of each period.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Values claimed per segment.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// One past the largest value a period may issue: `10^N` for `{seq:0N}`, 2^63−1 (the
    /// segment table's limit) for `{seq}`. A period row's `max_id` never goes past it.
    pub fn end(&self) -> u64 {
        match self.format.width {
            Some(n) => 10u64.pow(n),
            None => i64::MAX as u64,
        }
    }

    /// The segment tag of the period `key`: `name@key`.
    pub fn tag(&self, key: &str) -> String {
        format!("{}@{key}", self.name)
    }

    /// What numbers issued at `unix_ms` look like: the period (decided by the date in the
    /// sequence's zone) and the text around the counter. All numbers of one request share one
    /// stamp, so a batch never straddles a period.
    pub fn stamp(&self, unix_ms: u64) -> Result<Stamp, SequenceError> {
        let bad =
            |why: String| SequenceError::new("format", format!("{:?}", self.format.text), why);
        let ms = i64::try_from(unix_ms)
            .map_err(|_| bad(format!("the clock reads {unix_ms} ms, out of range")))?;
        let local = self
            .zone
            .at(ms)
            .ok_or_else(|| bad(format!("the clock reads {unix_ms} ms, out of range")))?;
        let period = self.reset.key(local.date());
        let (mut before, mut after) = (String::new(), String::new());
        let mut out = &mut before;
        for part in &self.format.parts {
            match part {
                Part::Literal(t) => out.push_str(t),
                Part::Date { spec, items } => out.push_str(&local.format(items).map_err(|_| {
                    bad(format!(
                        "`{{date:{spec}}}` cannot be rendered at {unix_ms} ms"
                    ))
                })?),
                Part::Seq(_) => out = &mut after,
            }
        }
        Ok(Stamp {
            tag: self.tag(&period),
            at: self.name.len() + 1,
            before,
            after,
            width: self.format.width.unwrap_or(0) as usize,
        })
    }
}

/// An example `{date}` format for a reset, for messages.
fn example(reset: Reset) -> &'static str {
    match reset {
        Reset::Never | Reset::Day => "%Y%m%d",
        Reset::Month => "%Y%m",
        Reset::Year => "%Y",
    }
}

/// The numbers of one period at one instant: everything but the counter, rendered once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// The period's segment tag, `name@key`.
    tag: String,
    /// Where the key starts in `tag`.
    at: usize,
    /// Text before the counter.
    before: String,
    /// Text after it.
    after: String,
    /// Zero-padding width, 0 for none.
    width: usize,
}

impl Stamp {
    /// The segment tag of the period: `order_no@20261130`.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The period key: `20261130`, `202611`, `2026` or `all`.
    pub fn period(&self) -> &str {
        &self.tag[self.at..]
    }

    /// The number with counter value `seq`.
    pub fn number(&self, seq: u64) -> String {
        let mut out = String::with_capacity(self.before.len() + self.after.len() + 20);
        out.push_str(&self.before);
        // Writing to a String cannot fail.
        let _ = write!(out, "{seq:0width$}", width = self.width);
        out.push_str(&self.after);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(format: &str, reset: Reset) -> Result<Sequence, SequenceError> {
        Sequence::new("n", format, reset, Zone::default(), 1, 10)
    }

    fn ms(rfc3339: &str) -> u64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis() as u64
    }

    #[test]
    fn formats_render_around_the_counter() {
        let s = seq("ORD-{date:%Y%m%d}-{seq:06}", Reset::Day).unwrap();
        let st = s.stamp(ms("2026-11-30T10:00:00Z")).unwrap();
        assert_eq!(st.number(42), "ORD-20261130-000042");
        assert_eq!((st.tag(), st.period()), ("n@20261130", "20261130"));
        let s = seq("{{{date}}}/{seq}}}", Reset::Day).unwrap();
        assert_eq!(
            s.stamp(ms("2026-01-02T00:00:00Z")).unwrap().number(7),
            "{20260102}/7}"
        );
        let s = seq("INV{seq}", Reset::Never).unwrap();
        let st = s.stamp(0).unwrap();
        assert_eq!(
            (st.number(123_456), st.period()),
            ("INV123456".into(), NEVER_KEY)
        );
        assert_eq!(s.end(), i64::MAX as u64);
        assert_eq!(seq("{seq:02}", Reset::Never).unwrap().end(), 100);
    }

    #[test]
    fn periods_follow_the_zone() {
        let zone: Zone = "+08:00".parse().unwrap();
        let s = Sequence::new("o", "{date:%Y%m}{seq:04}", Reset::Month, zone, 1, 1).unwrap();
        // 16:00 UTC on the last day of November is midnight of December 1st at +08:00.
        assert_eq!(
            s.stamp(ms("2026-11-30T15:59:59.999Z")).unwrap().period(),
            "202611"
        );
        assert_eq!(
            s.stamp(ms("2026-11-30T16:00:00Z")).unwrap().period(),
            "202612"
        );
        let ny: Zone = "America/New_York".parse().unwrap();
        let s = Sequence::new("o", "{date:%Y}-{seq}", Reset::Year, ny, 1, 1).unwrap();
        assert_eq!(
            s.stamp(ms("2027-01-01T04:59:59Z")).unwrap().number(1),
            "2026-1"
        );
        assert_eq!(
            s.stamp(ms("2027-01-01T05:00:00Z")).unwrap().number(1),
            "2027-1"
        );
    }

    #[test]
    fn zones_parse() {
        for (text, shown) in [
            ("UTC", "UTC"),
            ("Asia/Shanghai", "Asia/Shanghai"),
            ("+08:00", "+08:00"),
            ("-0530", "-05:30"),
            ("+08", "+08:00"),
        ] {
            assert_eq!(text.parse::<Zone>().unwrap().to_string(), shown, "{text}");
        }
        for bad in [
            "Mars/Olympus",
            "asia/shanghai",
            "+24:00",
            "+8",
            "+08:60",
            "",
            "+0a:00",
        ] {
            let e = bad.parse::<Zone>().unwrap_err();
            assert_eq!(e.field, "time_zone", "{bad}");
        }
    }

    #[test]
    fn bad_formats_name_the_problem() {
        let cases = [
            ("ORD-{dat}-{seq}", "unknown placeholder `{dat}`"),
            ("{seq:6}", "`{seq:6}`: the padding is written `{seq:0N}`"),
            ("{seq:019}", "N in 1..=18"),
            ("{date:%Q}-{seq}", "is not a strftime format"),
            ("ORD-{date}", "it needs a `{seq}`"),
            ("{seq}{seq}", "only once"),
            ("{seq", "is not closed"),
            ("}{seq}", "unmatched `}`"),
        ];
        for (format, says) in cases {
            let e = seq(format, Reset::Never).unwrap_err();
            assert_eq!(e.field, "format");
            assert!(e.to_string().contains(says), "{format}: {e}");
        }
    }

    #[test]
    fn a_date_that_cannot_tell_periods_apart_is_refused() {
        for (format, reset) in [
            ("{date:%Y%m}-{seq:04}", Reset::Day),
            ("{date:%m%d}-{seq:04}", Reset::Day),
            ("{date:%Y}-{seq:04}", Reset::Month),
            ("{date:%j}-{seq:04}", Reset::Day),
            ("{date:%H}-{seq:04}", Reset::Day),
            ("ORD-{seq:06}", Reset::Day),
        ] {
            let e = seq(format, reset).unwrap_err();
            assert!(
                e.to_string().contains(&format!("reset = \"{reset}\"")),
                "{format}: {e}"
            );
        }
        for (format, reset) in [
            ("{date:%Y%m%d}-{seq:04}", Reset::Day),
            ("{date:%G-W%V-%u}-{seq:04}", Reset::Day),
            ("{date:%F}T{date:%H}-{seq:04}", Reset::Day),
            ("{date:%Y%m%d}-{seq:04}", Reset::Month),
            ("{date:%Y}{date:%m}-{seq:04}", Reset::Month),
            ("{date:%B %Y}-{seq:04}", Reset::Month),
            ("{date:%Y}{seq:04}", Reset::Never),
        ] {
            assert!(seq(format, reset).is_ok(), "{format} / {reset}");
        }
    }

    #[test]
    fn two_parts_of_variable_width_are_refused() {
        for format in [
            "{date:%-d}{seq}",
            "{date:%B}{date:%-d}{seq:02}",
            "{date:%s}-{seq}",
            "{date:%-H}{seq}",
        ] {
            let e = seq(format, Reset::Never).unwrap_err();
            assert!(e.to_string().contains("vary in width"), "{format}: {e}");
        }
        assert!(seq("{date:%-d}{seq:03}", Reset::Never).is_ok());
        assert!(seq("{date:%d}{seq}", Reset::Never).is_ok());
    }

    #[test]
    fn start_and_step_are_bounded_by_the_padding() {
        let e = Sequence::new("n", "{seq:02}", Reset::Never, Zone::default(), 0, 1).unwrap_err();
        assert_eq!((e.field, e.value.as_str()), ("start", "0"));
        let e = Sequence::new("n", "{seq:02}", Reset::Never, Zone::default(), 100, 1).unwrap_err();
        assert!(e.reason.contains("1..=99"), "{e}");
        assert!(Sequence::new("n", "{seq:02}", Reset::Never, Zone::default(), 99, 1).is_ok());
        let e = Sequence::new("n", "{seq}", Reset::Never, Zone::default(), 1, 0).unwrap_err();
        assert_eq!(e.field, "step");
    }

    #[test]
    fn names_are_path_segments() {
        for good in ["order_no", "inv-2", "a.b", &"x".repeat(MAX_NAME_LEN)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a@b", "a/b", "a b", "é", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert_eq!(check_name(bad).unwrap_err().field, "name", "{bad}");
        }
    }

    #[test]
    fn long_numbers_are_refused() {
        let e = seq(&format!("{}{{seq}}", "x".repeat(240)), Reset::Never).unwrap_err();
        assert!(e.reason.contains("at most 255"), "{e}");
    }
}
