//! Where configuration comes from, lowest precedence first: the TOML file, GenID's `config.json`,
//! `FLOE_…` environment variables, the shorthand variables (`FLOE_LAYOUT`, `FLOE_IDENTITY`,
//! `FLOE_ADMIN_TOKEN`, MASA's `WORKER_ID` and `FLOE_WORKER_ID`), then command-line flags.
//!
//! Each source becomes a figment layer, so a later one overrides single keys of an earlier one
//! (an identity is merged field by field). The environment is passed in, never read here, so
//! the whole flow is testable.

use std::path::Path;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use floe_core::parse_identity_pairs;

use super::{ConfigError, ConfigWarning, ServeArgs};

/// Environment variables that are not `FLOE_<SECTION>__<KEY>` paths but shorthands.
const SHORTHANDS: &[&str] = &[
    "FLOE_LAYOUT",
    "FLOE_IDENTITY",
    "FLOE_ADMIN_TOKEN",
    "FLOE_WORKER_ID",
];

/// What kind of source a layer is, for error messages that say where a bad value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// `FLOE_SECTION__KEY` variables: a key path maps back to the variable name.
    Env,
    /// Any other source, named by its description.
    Other,
}

/// One source of configuration as a figment provider.
#[derive(Debug)]
struct Layer {
    /// Describes the source in error messages ("command-line flags", "GenID config x.json").
    name: String,
    /// How key paths are shown in error messages.
    origin: Origin,
    /// The values this source sets.
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let md = Metadata::named(self.name.clone());
        match self.origin {
            Origin::Env => md.interpolater(|_: &Profile, path: &[&str]| env_name(path)),
            Origin::Other => md.interpolater(|_: &Profile, path: &[&str]| path.join(".")),
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// The environment variable that sets a key path.
fn env_name(path: &[&str]) -> String {
    format!("FLOE_{}", path.join("__").to_ascii_uppercase())
}

/// Sets `path` to `value` in `dict`, creating tables on the way.
fn insert(dict: &mut Dict, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry((*first).to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// An identity written as `name=value,…` turned into a table, so layers merge field by field.
fn identity_table(key: &str, text: &str) -> Result<Value, ConfigError> {
    let pairs = parse_identity_pairs(text).map_err(|why| ConfigError::Invalid {
        key: key.to_owned(),
        value: format!("{text:?}"),
        allowed: why.to_string(),
    })?;
    let mut dict = Dict::new();
    for (name, value) in pairs {
        dict.insert(name, Value::from(value));
    }
    Ok(Value::from(dict))
}

/// Everything [`super::load`] reads, gathered into one figment.
#[derive(Debug)]
pub(crate) struct Sources {
    /// The TOML file, if any.
    file: Option<std::path::PathBuf>,
    /// Layers above the file, lowest precedence first, without the worker layer.
    layers: Vec<Layer>,
    /// Index in `layers` where a worker-id layer goes (just below the flags).
    worker_at: usize,
    /// `WORKER_ID` / `FLOE_WORKER_ID`, applied only when the layout has a `worker` field.
    worker: Option<(String, String)>,
    /// Things worth a log line once logging is up.
    pub(crate) warnings: Vec<ConfigWarning>,
}

impl Sources {
    /// Reads the files named by the flags and sorts the environment into layers.
    pub(crate) fn gather(
        args: &ServeArgs,
        env: &[(String, String)],
    ) -> Result<Sources, ConfigError> {
        let mut warnings = Vec::new();
        let mut layers = Vec::new();
        if let Some(path) = &args.config {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::Source(format!(
                    "--config {}: cannot read the file: {e}",
                    path.display()
                ))
            })?;
            check_lists(&text)?;
        }
        if let Some(path) = &args.genid_config {
            let host = args
                .config
                .as_deref()
                .and_then(|p| {
                    Figment::from(Toml::file_exact(p))
                        .extract_inner::<super::value::Scalar>("server.tcp_listen")
                        .ok()
                })
                .and_then(|s| s.text().rsplit_once(':').map(|(h, _)| h.to_owned()))
                .unwrap_or_else(|| "127.0.0.1".to_owned());
            layers.push(genid_layer(path, &host, &mut warnings)?);
        }

        let mut nested = Dict::new();
        let mut shorthand = Dict::new();
        let mut worker = None;
        for (name, value) in env {
            // FLOE_WORKER_ID wins over MASA's WORKER_ID whatever their order.
            if name == "WORKER_ID" && worker.is_none() {
                worker = Some((name.clone(), value.clone()));
                continue;
            }
            let Some(rest) = name.strip_prefix("FLOE_") else {
                continue;
            };
            match name.as_str() {
                "FLOE_LAYOUT" => insert(
                    &mut shorthand,
                    &["snowflake", "layout"],
                    Value::from(value.clone()),
                ),
                "FLOE_IDENTITY" => insert(
                    &mut shorthand,
                    &["snowflake", "identity"],
                    identity_table(name, value)?,
                ),
                "FLOE_ADMIN_TOKEN" => insert(
                    &mut shorthand,
                    &["server", "admin_token"],
                    Value::from(value.clone()),
                ),
                "FLOE_WORKER_ID" => worker = Some((name.clone(), value.clone())),
                _ if rest.is_empty() => {}
                _ => {
                    let lower = rest.to_ascii_lowercase();
                    let path: Vec<&str> = lower.split("__").collect();
                    if path.iter().any(|p| p.is_empty()) {
                        return Err(ConfigError::Source(format!(
                            "environment variable {name}: empty key segment; use FLOE_<SECTION>__<KEY>, e.g. FLOE_SERVER__TCP_LISTEN"
                        )));
                    }
                    let value = if path == ["snowflake", "identity"] {
                        identity_table(name, value)?
                    } else {
                        Value::from(value.clone())
                    };
                    insert(&mut nested, &path, value);
                }
            }
        }
        layers.push(Layer {
            name: "environment variable".into(),
            origin: Origin::Env,
            dict: nested,
        });
        layers.push(Layer {
            name: format!("environment variables ({})", SHORTHANDS.join(", ")),
            origin: Origin::Other,
            dict: shorthand,
        });
        let worker_at = layers.len();
        layers.push(flags_layer(args)?);
        Ok(Sources {
            file: args.config.clone(),
            layers,
            worker_at,
            worker,
            warnings,
        })
    }

    /// The merged figment; with `with_worker`, the worker-id variable sets `snowflake.identity.worker`.
    pub(crate) fn figment(&self, with_worker: bool) -> Result<Figment, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = &self.file {
            figment = figment.merge(Toml::file_exact(path));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            if i == self.worker_at && with_worker {
                if let Some(w) = self.worker_layer()? {
                    figment = figment.merge(w);
                }
            }
            figment = figment.merge(Layer {
                name: layer.name.clone(),
                origin: layer.origin,
                dict: layer.dict.clone(),
            });
        }
        Ok(figment)
    }

    /// The name of the worker-id variable, if one is set.
    pub(crate) fn worker_var(&self) -> Option<&str> {
        self.worker.as_ref().map(|(n, _)| n.as_str())
    }

    fn worker_layer(&self) -> Result<Option<Layer>, ConfigError> {
        let Some((name, text)) = &self.worker else {
            return Ok(None);
        };
        let value: u64 = text.trim().parse().map_err(|_| ConfigError::Invalid {
            key: name.clone(),
            value: format!("{text:?}"),
            allowed: "a non-negative integer that fits the layout's worker field".into(),
        })?;
        let mut dict = Dict::new();
        insert(
            &mut dict,
            &["snowflake", "identity", "worker"],
            Value::from(value),
        );
        Ok(Some(Layer {
            name: format!("environment variable {name}"),
            origin: Origin::Other,
            dict,
        }))
    }
}

/// List keys. A list may come from the environment as one comma-separated string, so the
/// builder accepts a string there; in the TOML file only an array is meant, and
/// `peers = "h:p"` is the mistake of a user who forgot the brackets.
const LIST_KEYS: [(&str, &str); 2] = [("server", "peers"), ("registry", "fields")];

/// Refuses a TOML string where a list is expected (figment would take it for a one-item list).
pub(crate) fn check_lists(text: &str) -> Result<(), ConfigError> {
    // A file that does not parse is reported by figment, with the line.
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    for (section, key) in LIST_KEYS {
        let Some(value) = doc.get(section).and_then(|t| t.get(key)) else {
            continue;
        };
        if !value.is_array() {
            let env = env_name(&[section, key]);
            return Err(ConfigError::Invalid {
                key: format!("{section}.{key}"),
                value: value.to_string(),
                allowed: format!(
                    "an array of strings, e.g. [\"10.0.0.2:8880\"] (one comma-separated string is for {env})"
                ),
            });
        }
    }
    Ok(())
}

fn flags_layer(args: &ServeArgs) -> Result<Layer, ConfigError> {
    let mut dict = Dict::new();
    let mut set = |path: &[&str], v: &Option<String>| {
        if let Some(v) = v {
            insert(&mut dict, path, Value::from(v.clone()));
        }
    };
    set(&["server", "tcp_listen"], &args.tcp_listen);
    set(&["server", "http_listen"], &args.http_listen);
    set(&["snowflake", "layout"], &args.layout);
    set(&["log", "level"], &args.log_level);
    set(&["log", "format"], &args.log_format);
    let data_dir = args
        .data_dir
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    set(&["data_dir"], &data_dir);
    if let Some(text) = &args.identity {
        insert(
            &mut dict,
            &["snowflake", "identity"],
            identity_table("--identity", text)?,
        );
    }
    Ok(Layer {
        name: "command-line flags".into(),
        origin: Origin::Other,
        dict,
    })
}

/// GenID's `config.json` (`port`, `zone_id`, `dc_id`, `machine_id`), checked with the ranges its
/// own validation meant to enforce (it let 32 and negative values through).
fn genid_layer(
    path: &Path,
    host: &str,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Layer, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Source(format!("--genid-config {shown}: cannot read the file: {e}"))
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ConfigError::Source(format!("--genid-config {shown}: not valid JSON: {e}")))?;
    let serde_json::Value::Object(obj) = json else {
        return Err(ConfigError::Source(format!(
            "--genid-config {shown}: expected a JSON object such as {{\"port\":3778,\"zone_id\":1,\"dc_id\":2,\"machine_id\":3}}"
        )));
    };
    let field = |key: &'static str, max: i64, what: &str| -> Result<u64, ConfigError> {
        let bad = |value: String| ConfigError::Genid {
            path: shown.clone(),
            key,
            value,
            allowed: format!("an integer in 0..={max} ({what})"),
        };
        let v = obj.get(key).ok_or_else(|| bad("missing".into()))?;
        match v.as_i64() {
            Some(n) if (0..=max).contains(&n) => Ok(n as u64),
            _ => Err(bad(v.to_string())),
        }
    };
    let port = field("port", 65_535, "the TCP port")?;
    let zone = field("zone_id", 31, "GenID's 5-bit zone field")?;
    let dc = field("dc_id", 7, "GenID's 3-bit dc field")?;
    let machine = field("machine_id", 7, "GenID's 3-bit machine field")?;
    let extra: Vec<String> = obj
        .keys()
        .filter(|k| !["port", "zone_id", "dc_id", "machine_id"].contains(&k.as_str()))
        .cloned()
        .collect();
    if !extra.is_empty() {
        warnings.push(ConfigWarning::GenidKeysIgnored {
            path: shown.clone(),
            keys: extra,
        });
    }
    let mut dict = Dict::new();
    insert(
        &mut dict,
        &["server", "tcp_listen"],
        Value::from(format!("{host}:{port}")),
    );
    insert(&mut dict, &["snowflake", "layout"], Value::from("genid"));
    let mut identity = Dict::new();
    identity.insert("zone".into(), Value::from(zone));
    identity.insert("dc".into(), Value::from(dc));
    identity.insert("machine".into(), Value::from(machine));
    insert(&mut dict, &["snowflake", "identity"], Value::from(identity));
    Ok(Layer {
        name: format!("GenID config {shown}"),
        origin: Origin::Other,
        dict,
    })
}

/// Turns figment's errors into one message per problem, naming the key and where it was set.
pub(crate) fn describe(e: figment::Error) -> ConfigError {
    let lines: Vec<String> = e
        .into_iter()
        .map(|e| {
            let mut path: Vec<&str> = e.path.iter().map(String::as_str).collect();
            if let figment::error::Kind::UnknownField(name, _) = &e.kind {
                if path.last() != Some(&name.as_str()) {
                    path.push(name);
                }
            }
            let key = path.join(".");
            let origin = match &e.metadata {
                Some(md) if md.name == "environment variable" => {
                    format!("environment variable {}", env_name(&path))
                }
                Some(md) => match &md.source {
                    Some(src) => format!("{} {src}", md.name),
                    None => md.name.to_string(),
                },
                None => "configuration".into(),
            };
            let what = match &e.kind {
                figment::error::Kind::UnknownField(name, expected) => format!(
                    "unknown key `{name}`; the keys here are: {}",
                    expected.join(", ")
                ),
                other => other.to_string(),
            };
            if key.is_empty() {
                format!("{what} (in {origin})")
            } else {
                format!("{key}: {what} (in {origin})")
            }
        })
        .collect();
    ConfigError::Source(lines.join("\n"))
}
