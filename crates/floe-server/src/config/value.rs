//! Lenient value types of the configuration builder.
//!
//! Environment variables and flags arrive as text, TOML values as typed scalars; every key accepts
//! any scalar here so that validation, not deserialisation, rejects a bad value, with one message
//! format that names the key, the value and the allowed range.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

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
