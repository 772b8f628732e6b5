//! Value types of the configuration builders.
//!
//! Environment variables and flags arrive as text, TOML values as typed scalars. A key of a
//! given type ([`Int`], [`Float`], [`Bool`], [`Dur`], [`Text`]) reads either form, but a value
//! that is not of its type is kept as written rather than refused by serde, so that validation
//! rejects it with one message format that names the key, the value and the allowed range.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{invalid, ConfigError};

/// One configuration value as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    /// A TOML integer.
    Int(i128),
    /// A TOML float.
    Float(f64),
    /// A TOML boolean.
    Bool(bool),
    /// A string: TOML strings, and every environment variable and flag.
    Str(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(v) => write!(f, "{v}"),
            Scalar::Float(v) => write!(f, "{v}"),
            Scalar::Bool(v) => write!(f, "{v}"),
            Scalar::Str(v) => write!(f, "{v:?}"),
        }
    }
}

impl Scalar {
    /// The value as text, the way a user would have typed it.
    pub(crate) fn text(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Scalar, E> {
        Ok(Scalar::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_char<E: de::Error>(self, v: char) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(v))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// A list: a TOML array, or a comma-separated string from the environment or a flag.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct List(pub(crate) Vec<Scalar>);

impl<'de> Deserialize<'de> for List {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<List, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = List;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of strings or a comma-separated string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<List, E> {
                Ok(List(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Scalar::Str(s.to_owned()))
                        .collect(),
                ))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Scalar>()? {
                    out.push(item);
                }
                Ok(List(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A node identity: a table `{ zone = 1, dc = 2 }` or the pairs string `"zone=1,dc=2"`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum IdentitySpec {
    /// Field name to value, as written.
    Table(BTreeMap<String, Scalar>),
    /// The `name=value,…` form, parsed during validation.
    Pairs(String),
}

impl<'de> Deserialize<'de> for IdentitySpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IdentitySpec, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IdentitySpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of field = value, or a string such as \"zone=1,dc=2\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdentitySpec, E> {
                Ok(IdentitySpec::Pairs(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IdentitySpec, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, Scalar>()? {
                    out.insert(k, v);
                }
                Ok(IdentitySpec::Table(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One key's value as written, read as a `T` where it can be.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) enum Setting<T> {
    /// The key is absent: validation applies its default.
    #[default]
    Unset,
    /// The value, of the key's type (`"500"` from the environment is an integer here).
    Set(T),
    /// A value that is not a `T`, kept as written for the error message.
    Wrong(Scalar),
}

/// An integer key: a TOML integer or a decimal string.
pub(crate) type Int = Setting<i128>;
/// A number key: a TOML float or integer, or a decimal string.
pub(crate) type Float = Setting<f64>;
/// A boolean key: a TOML boolean or `true`/`false`/`1`/`0`/`yes`/`no`/`on`/`off`.
pub(crate) type Bool = Setting<bool>;
/// A duration key: a string with a unit (`"250ms"`, `"5s"`); a bare number has no unit.
pub(crate) type Dur = Setting<Duration>;
/// A text key: a string; a TOML number or boolean there is a mistake (`data_dir = 5`).
pub(crate) type Text = Setting<String>;

/// How a scalar reads as the type of a key, `None` when it does not.
pub(crate) trait FromScalar: Sized {
    /// The value of `s` as this type.
    fn from_scalar(s: &Scalar) -> Option<Self>;
}

impl FromScalar for i128 {
    fn from_scalar(s: &Scalar) -> Option<i128> {
        match s {
            Scalar::Int(n) => Some(*n),
            Scalar::Str(t) => t.trim().parse().ok(),
            _ => None,
        }
    }
}

impl FromScalar for f64 {
    fn from_scalar(s: &Scalar) -> Option<f64> {
        match s {
            Scalar::Float(x) => Some(*x),
            Scalar::Int(n) => Some(*n as f64),
            Scalar::Str(t) => t.trim().parse().ok(),
            Scalar::Bool(_) => None,
        }
    }
}

impl FromScalar for bool {
    fn from_scalar(s: &Scalar) -> Option<bool> {
        match s {
            Scalar::Bool(b) => Some(*b),
            Scalar::Str(t) => match t.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }
}

impl FromScalar for Duration {
    fn from_scalar(s: &Scalar) -> Option<Duration> {
        match s {
            Scalar::Str(t) => humantime::parse_duration(t.trim()).ok(),
            _ => None,
        }
    }
}

impl FromScalar for String {
    fn from_scalar(s: &Scalar) -> Option<String> {
        match s {
            Scalar::Str(t) => Some(t.clone()),
            _ => None,
        }
    }
}

impl<'de, T: FromScalar> Deserialize<'de> for Setting<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Setting<T>, D::Error> {
        let s = Scalar::deserialize(d)?;
        Ok(match T::from_scalar(&s) {
            Some(v) => Setting::Set(v),
            None => Setting::Wrong(s),
        })
    }
}

impl<T> Setting<T> {
    /// The value, `default` when unset, or the scalar that is not a `T`.
    fn or(&self, default: T) -> Result<T, &Scalar>
    where
        T: Clone,
    {
        match self {
            Setting::Unset => Ok(default),
            Setting::Set(v) => Ok(v.clone()),
            Setting::Wrong(s) => Err(s),
        }
    }
}

impl Int {
    /// The integer of `key` in `range`, as the field's type `N` (the range fits `N`).
    pub(crate) fn within<N: TryFrom<i64>>(
        &self,
        key: &str,
        default: N,
        range: RangeInclusive<i64>,
    ) -> Result<N, ConfigError> {
        let (min, max) = (*range.start(), *range.end());
        let allowed = || format!("an integer in {min}..={max}");
        let n = match self {
            Setting::Unset => return Ok(default),
            Setting::Set(n) => *n,
            Setting::Wrong(s) => return Err(invalid(key, s, allowed())),
        };
        if n < i128::from(min) || n > i128::from(max) {
            return Err(invalid(key, n, allowed()));
        }
        N::try_from(n as i64).map_err(|_| invalid(key, n, allowed()))
    }

    /// As [`Int::within`], for a key whose absence means "let something else decide": `None`.
    pub(crate) fn within_opt<N: TryFrom<i64> + Default>(
        &self,
        key: &str,
        range: RangeInclusive<i64>,
    ) -> Result<Option<N>, ConfigError> {
        match self {
            Setting::Unset => Ok(None),
            // Set, so the default is never returned.
            _ => self.within(key, N::default(), range).map(Some),
        }
    }
}

impl Float {
    /// The number of `key` in `range`.
    pub(crate) fn within(
        &self,
        key: &str,
        default: f64,
        range: RangeInclusive<f64>,
    ) -> Result<f64, ConfigError> {
        let allowed = || format!("a number in {}..={}", range.start(), range.end());
        let x = self.or(default).map_err(|s| invalid(key, s, allowed()))?;
        if !range.contains(&x) {
            return Err(invalid(key, x, allowed()));
        }
        Ok(x)
    }
}

impl Bool {
    /// The boolean of `key`.
    pub(crate) fn get(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        self.or(default)
            .map_err(|s| invalid(key, s, "true or false"))
    }
}

impl Dur {
    /// The duration of `key` in `range`.
    pub(crate) fn within(
        &self,
        key: &str,
        default: Duration,
        range: RangeInclusive<Duration>,
    ) -> Result<Duration, ConfigError> {
        let allowed = || {
            format!(
                "a duration with a unit in {}..={}, e.g. \"250ms\", \"5s\", \"5m\"",
                humantime::format_duration(*range.start()),
                humantime::format_duration(*range.end())
            )
        };
        let d = self.or(default).map_err(|s| invalid(key, s, allowed()))?;
        if !range.contains(&d) {
            // Shown normalised ("7200s" reads as "2h"), the way the range is written.
            return Err(invalid(
                key,
                format!("{:?}", humantime::format_duration(d).to_string()),
                allowed(),
            ));
        }
        Ok(d)
    }
}

impl Text {
    /// The string of `key`; a number or boolean is refused with `default` as the example.
    pub(crate) fn get(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        self.or(default.to_owned()).map_err(|s| {
            invalid(
                key,
                s,
                format!("a string, e.g. {default:?} (write it in quotes)"),
            )
        })
    }

    /// The value as text whatever its TOML type, for keys whose own check (a URL, a table name)
    /// refuses a number with a better message than "a string".
    pub(crate) fn text(&self) -> Option<String> {
        match self {
            Setting::Unset => None,
            Setting::Set(t) => Some(t.clone()),
            Setting::Wrong(s) => Some(s.text()),
        }
    }
}
