//! String forms of IDs: what `format=` asks for and what decoding accepts back.
//!
//! | form | example (`genid`) | width | order |
//! |---|---|---|---|
//! | `number` | `7301444403700237522` (a JSON number) | — | numeric |
//! | `string` | `"7301444403700237522"` (decimal text, safe in JavaScript) | 1..=20 | numeric only at equal length |
//! | `hex` | `"6553f1001dd104d2"` | 16, lowercase | = numeric |
//! | `radix62` | `"8hMgxFBdXKU"` (`0-9A-Za-z`) | 11 | = numeric |
//! | `radix36` | `"1jh0y11a75h3m"` (`0-9a-z`) | 13 | = numeric |
//! | `friendly` | `"20231114221320000-3-5-6-17-1234"` | — | by time, within one node |
//!
//! The fixed-width forms are zero-padded and their alphabets are in ASCII order, so comparing
//! two strings byte by byte gives the order of the numbers: they sort in a database column, a
//! URL, a file name exactly like the IDs. `friendly` is the UTC time of the ID's tick as
//! `yyyyMMddHHmmssSSS` followed by every other field (node fields, lane, sequence) in layout
//! order, `-`-separated; it needs the layout both ways.

use std::fmt;
use std::str::FromStr;

use chrono::{NaiveDateTime, TimeZone, Utc};

use crate::layout::{FieldKind, Layout};

/// `0-9A-Za-z`: ASCII order, so fixed-width strings sort like the numbers.
const RADIX62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// `0-9a-z`.
const RADIX36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// Characters of a `u64` in radix 62 (62^11 > 2^64 > 62^10).
pub const RADIX62_WIDTH: usize = 11;
/// Characters of a `u64` in radix 36 (36^13 > 2^64 > 36^12).
pub const RADIX36_WIDTH: usize = 13;
/// Hex digits of a `u64`.
pub const HEX_WIDTH: usize = 16;
/// `yyyyMMddHHmmssSSS`.
const FRIENDLY_TIME_WIDTH: usize = 17;

/// A form an ID can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdForm {
    /// A JSON number (the default).
    Number,
    /// Decimal text.
    String,
    /// 16 lowercase hex digits.
    Hex,
    /// 11 characters of `0-9A-Za-z`.
    Radix62,
    /// 13 characters of `0-9a-z`.
    Radix36,
    /// `yyyyMMddHHmmssSSS-<field>-…-<seq>` (snowflake IDs only: it needs the layout).
    Friendly,
}

impl IdForm {
    /// Every form, in the order the docs list them.
    pub const ALL: [IdForm; 6] = [
        IdForm::Number,
        IdForm::String,
        IdForm::Hex,
        IdForm::Radix62,
        IdForm::Radix36,
        IdForm::Friendly,
    ];

    /// The name used in `format=` and in decode replies.
    pub fn name(self) -> &'static str {
        match self {
            IdForm::Number => "number",
            IdForm::String => "string",
            IdForm::Hex => "hex",
            IdForm::Radix62 => "radix62",
            IdForm::Radix36 => "radix36",
            IdForm::Friendly => "friendly",
        }
    }

    /// Whether the form needs a layout (only `friendly`).
    pub fn needs_layout(self) -> bool {
        self == IdForm::Friendly
    }

    /// `id` in this form; `None` for `friendly` without a layout or an ID the layout cannot
    /// decode. `number` renders as decimal text (the JSON number's digits).
    pub fn render(self, id: u64, layout: Option<&Layout>) -> Option<String> {
        Some(match self {
            IdForm::Number | IdForm::String => id.to_string(),
            IdForm::Hex => format!("{id:016x}"),
            IdForm::Radix62 => to_radix(id, RADIX62, RADIX62_WIDTH),
            IdForm::Radix36 => to_radix(id, RADIX36, RADIX36_WIDTH),
            IdForm::Friendly => friendly(id, layout?)?,
        })
    }

    /// Reads `text` written in this form.
    pub fn parse(self, text: &str, layout: Option<&Layout>) -> Result<u64, IdFormError> {
        let bad = |why: String| IdFormError::Malformed {
            form: self,
            text: text.to_string(),
            why,
        };
        match self {
            IdForm::Number | IdForm::String => {
                if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("expected 1 to 20 decimal digits".into()));
                }
                text.parse()
                    .map_err(|_| bad(format!("above the largest ID {}", u64::MAX)))
            }
            IdForm::Hex => {
                let digits = text
                    .strip_prefix("0x")
                    .or_else(|| text.strip_prefix("0X"))
                    .unwrap_or(text);
                if digits.is_empty()
                    || digits.len() > HEX_WIDTH
                    || !digits.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(bad(format!("expected up to {HEX_WIDTH} hex digits")));
                }
                u64::from_str_radix(digits, 16).map_err(|e| bad(e.to_string()))
            }
            IdForm::Radix62 => from_radix(text, RADIX62, RADIX62_WIDTH).map_err(bad),
            IdForm::Radix36 => from_radix(text, RADIX36, RADIX36_WIDTH).map_err(bad),
            IdForm::Friendly => {
                let layout = layout.ok_or_else(|| bad("needs the layout".into()))?;
                parse_friendly(text, layout).map_err(bad)
            }
        }
    }

    /// Reads an ID in whichever form `text` is written, and says which, trying in this order:
    /// decimal digits only → a number (a 16-, 13- or 11-digit string is ambiguous; pass the form
    /// to [`IdForm::parse`] to read it otherwise); exactly 13 characters of `0-9a-z` → radix36;
    /// exactly 11 of `0-9A-Za-z` → radix62 (both before `0x`, since `x` and `X` are digits of
    /// theirs); `0x…` or 16 hex digits → hex; text with `-` → friendly. A string that matches no
    /// form is refused with every form's width and alphabet; one that matches a form's shape but
    /// not its value (a radix62 string above 2^64−1, a friendly time off a tick) names that form.
    pub fn detect(text: &str, layout: Option<&Layout>) -> Result<(u64, IdForm), IdFormError> {
        let t = text.trim();
        let form = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            IdForm::Number
        } else if t.len() == RADIX36_WIDTH && t.bytes().all(|b| RADIX36.contains(&b)) {
            IdForm::Radix36
        } else if t.len() == RADIX62_WIDTH && t.bytes().all(|b| RADIX62.contains(&b)) {
            IdForm::Radix62
        } else if t.starts_with("0x")
            || t.starts_with("0X")
            || (t.len() == HEX_WIDTH && t.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            IdForm::Hex
        } else if t.contains('-') {
            IdForm::Friendly
        } else {
            // Wrong width or characters: the message lists every form's width and alphabet.
            return Err(IdFormError::Unrecognised(t.to_string()));
        };
        Ok((form.parse(t, layout)?, form))
    }
}

impl fmt::Display for IdForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for IdForm {
    type Err = IdFormError;

    fn from_str(s: &str) -> Result<IdForm, IdFormError> {
        IdForm::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| IdFormError::UnknownForm(s.to_string()))
    }
}

/// Why a form name or an ID string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdFormError {
    /// `format=` names no form.
    #[error("format must be one of number, string, hex, radix62, radix36, friendly, got {0:?}")]
    UnknownForm(String),
    /// The text looked like `form` but is not a valid one.
    #[error("{text:?} looks like a {form} ID but is not one: {why}")]
    Malformed {
        /// The form it looked like.
        form: IdForm,
        /// The text.
        text: String,
        /// What is wrong.
        why: String,
    },
    /// The text matches no form.
    #[error("{0:?} is not an ID in any form: decimal (1..=20 digits), hex (0x… or 16 digits), radix62 (11 of 0-9A-Za-z), radix36 (13 of 0-9a-z) or friendly (yyyyMMddHHmmssSSS-…)")]
    Unrecognised(String),
}

fn to_radix(mut id: u64, alphabet: &[u8], width: usize) -> String {
    let base = alphabet.len() as u64;
    let mut out = vec![alphabet[0]; width];
    for slot in out.iter_mut().rev() {
        *slot = alphabet[(id % base) as usize];
        id /= base;
    }
    // The width holds every u64, and the alphabet is ASCII.
    String::from_utf8(out).unwrap_or_default()
}

fn from_radix(text: &str, alphabet: &[u8], width: usize) -> Result<u64, String> {
    if text.len() != width {
        return Err(format!(
            "expected exactly {width} characters, got {}",
            text.len()
        ));
    }
    let base = alphabet.len() as u64;
    text.bytes().try_fold(0u64, |acc, b| {
        let digit = alphabet
            .iter()
            .position(|&a| a == b)
            .ok_or_else(|| format!("`{}` is not in its alphabet", b as char))?;
        acc.checked_mul(base)
            .and_then(|v| v.checked_add(digit as u64))
            .ok_or_else(|| format!("above the largest ID {}", u64::MAX))
    })
}

fn friendly(id: u64, layout: &Layout) -> Option<String> {
    let decoded = layout.decode(id).ok()?;
    let time = Utc
        .timestamp_millis_opt(i64::try_from(decoded.unix_ms).ok()?)
        .single()?;
    let mut out = time.format("%Y%m%d%H%M%S%3f").to_string();
    for field in layout.fields() {
        if matches!(field.kind, FieldKind::Time | FieldKind::Sign) {
            continue;
        }
        out.push('-');
        out.push_str(&field.get(id).to_string());
    }
    Some(out)
}

fn parse_friendly(text: &str, layout: &Layout) -> Result<u64, String> {
    let mut parts = text.split('-');
    let time = parts.next().unwrap_or_default();
    if time.len() != FRIENDLY_TIME_WIDTH || !time.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "expected the time as {FRIENDLY_TIME_WIDTH} digits yyyyMMddHHmmssSSS first"
        ));
    }
    let at = NaiveDateTime::parse_from_str(time, "%Y%m%d%H%M%S%3f")
        .map_err(|e| format!("time `{time}`: {e}"))?
        .and_utc()
        .timestamp_millis();
    let ms = u64::try_from(at).map_err(|_| format!("time `{time}` is before 1970"))?;
    let tick = layout
        .tick_at(ms)
        .filter(|&t| layout.tick_start_ms(t) == ms && t <= layout.time_field().max())
        .ok_or_else(|| format!("time `{time}` is not the start of a tick of this layout"))?;
    let others: Vec<_> = layout
        .fields()
        .iter()
        .filter(|f| !matches!(f.kind, FieldKind::Time | FieldKind::Sign))
        .collect();
    let values: Vec<&str> = parts.collect();
    if values.len() != others.len() {
        let names: Vec<&str> = others.iter().map(|f| f.name.as_str()).collect();
        return Err(format!(
            "expected {} fields after the time ({}), got {}",
            others.len(),
            names.join("-"),
            values.len()
        ));
    }
    let mut id = tick << layout.time_field().shift;
    for (field, text) in others.iter().zip(values) {
        let v: u64 = text
            .parse()
            .ok()
            .filter(|&v| v <= field.max())
            .ok_or_else(|| {
                format!(
                    "{} = `{text}` is not an integer in 0..={}",
                    field.name,
                    field.max()
                )
            })?;
        id |= v << field.shift;
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_forms_of_the_extremes() {
        assert_eq!(IdForm::Hex.render(0, None).unwrap(), "0000000000000000");
        assert_eq!(IdForm::Radix62.render(0, None).unwrap(), "00000000000");
        assert_eq!(IdForm::Radix36.render(0, None).unwrap(), "0000000000000");
        assert_eq!(
            IdForm::Hex.render(u64::MAX, None).unwrap(),
            "ffffffffffffffff"
        );
        assert_eq!(
            IdForm::Radix62.render(u64::MAX, None).unwrap(),
            "LygHa16AHYF"
        );
        assert_eq!(
            IdForm::Radix36.render(u64::MAX, None).unwrap(),
            "3w5e11264sgsf"
        );
        assert_eq!(IdForm::Radix62.parse("LygHa16AHYF", None), Ok(u64::MAX));
        // One past the largest u64 in radix 62.
        assert!(matches!(
            IdForm::Radix62.parse("LygHa16AHYG", None),
            Err(IdFormError::Malformed {
                form: IdForm::Radix62,
                ..
            })
        ));
    }

    #[test]
    fn friendly_round_trips_on_genid() {
        let layout = Layout::parse("genid").unwrap();
        let identity = layout
            .identity(&[("zone".into(), 3), ("dc".into(), 2), ("machine".into(), 1)])
            .unwrap();
        let tick = layout.tick_at(1_796_304_770_000).unwrap();
        let id = layout.compose(tick, &identity, 4, 42);
        let text = IdForm::Friendly.render(id, Some(&layout)).unwrap();
        assert_eq!(text, "20261203133250000-3-2-1-4-42");
        assert_eq!(
            IdForm::detect(&text, Some(&layout)),
            Ok((id, IdForm::Friendly))
        );
        // Off a tick boundary (genid ticks are seconds), a field out of range, a missing field.
        for bad in [
            "20261203133250001-3-2-1-4-42",
            "20261203133250000-32-2-1-4-42",
            "20261203133250000-3-2-1-4",
        ] {
            let e = IdForm::detect(bad, Some(&layout)).unwrap_err();
            assert!(
                matches!(
                    &e,
                    IdFormError::Malformed {
                        form: IdForm::Friendly,
                        ..
                    }
                ),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn detect_names_the_form_and_refuses_what_fits_none() {
        assert_eq!(IdForm::detect("42", None), Ok((42, IdForm::Number)));
        assert_eq!(IdForm::detect("0x2a", None), Ok((42, IdForm::Hex)));
        assert_eq!(
            IdForm::detect("000000000000002a", None),
            Ok((42, IdForm::Hex))
        );
        assert_eq!(
            IdForm::detect("000000000000g", None),
            Ok((16, IdForm::Radix36))
        );
        assert_eq!(
            IdForm::detect("0000000000G", None),
            Ok((16, IdForm::Radix62))
        );
        assert_eq!(
            IdForm::detect("abc", None),
            Err(IdFormError::Unrecognised("abc".into()))
        );
        assert!(matches!(
            IdForm::detect("99999999999999999999", None),
            Err(IdFormError::Malformed {
                form: IdForm::Number,
                ..
            })
        ));
        assert_eq!("radix62".parse::<IdForm>(), Ok(IdForm::Radix62));
        assert_eq!(
            "base64".parse::<IdForm>(),
            Err(IdFormError::UnknownForm("base64".into()))
        );
    }
}
