//! The `[registry]` section: where the worker id comes from when it is not the static
//! `snowflake.identity`.

use std::time::Duration;

use floe_store::registry::{RedisConfig, RegistryConfig, SqlConfig};
use serde::Deserialize;

use super::snowflake::SnowflakeConfig;
use super::value::{Dur, Int, List, Scalar, Text};
use super::{invalid, ms, ConfigError};

/// Default `registry.kind`: no registry, the identity is `snowflake.identity`.
const DEFAULT_KIND: &str = "static";
/// Default `registry.url` of the Redis registry (SQL has no default: it names the database).
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default `registry.url` of the ZooKeeper registry (its connect string).
const DEFAULT_ZOOKEEPER: &str = "127.0.0.1:2181";
/// Default `registry.namespace`.
const DEFAULT_NAMESPACE: &str = "floe";
/// Default `registry.ttl`.
const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Default `registry.offset` of the Kubernetes registry, added to the ordinal of `HOSTNAME`.
const DEFAULT_OFFSET: u32 = 0;
/// Default `registry.call_timeout`.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Clock skew between nodes the fence margin allows for (see lease.rs).
const CLOCK_SKEW: Duration = Duration::from_millis(500);

/// Validated `[registry]` settings: a leased worker id (SQL, Redis) or one derived from the host
/// name (Kubernetes), instead of a static identity.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrySettings {
    /// Which registry and how to reach it.
    pub registry: RegistryConfig,
    /// Ids are unique within a namespace; several clusters can share one store.
    pub namespace: String,
    /// How long the store keeps an id for a node that stops renewing.
    pub ttl: Duration,
    /// The layout's node fields the leased id fills (e.g. `machine` within GenID's zone/dc).
    pub fields: Vec<String>,
}

/// `[registry]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RegistryBuilder {
    kind: Text,
    url: Text,
    namespace: Text,
    ttl: Dur,
    table: Text,
    key_prefix: Text,
    fields: Option<List>,
    offset: Int,
    call_timeout: Dur,
    // Read only by the etcd registry; parsed in every build so that a config naming them gets
    // "built without etcd" rather than "unknown field".
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    endpoints: Option<List>,
    user: Text,
    password: Text,
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    tls_ca_file: Text,
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    tls_cert_file: Text,
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    tls_key_file: Text,
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    tls_domain: Text,
    leaf_name: Text,
    endpoint: Text,
}

impl RegistryBuilder {
    /// The etcd registry: `endpoints` (a list, or `url` with comma-separated endpoints),
    /// `user`/`password`, `tls_*` files, `key_prefix`.
    #[cfg(feature = "etcd")]
    fn etcd(&self, call_timeout: Duration) -> Result<RegistryConfig, ConfigError> {
        use floe_store::registry::{EtcdConfig, EtcdRegistry, EtcdTls};
        let endpoints: Vec<String> = match (&self.endpoints, self.url.text()) {
            (Some(list), _) => list.0.iter().map(|e| e.text().trim().to_owned()).collect(),
            (None, Some(url)) => url.split(',').map(|e| e.trim().to_owned()).collect(),
            (None, None) => vec![floe_store::registry::etcd::DEFAULT_ENDPOINT.to_owned()],
        };
        let mut c = EtcdConfig::new(endpoints);
        c.key_prefix = self.key_prefix.get("registry.key_prefix", &c.key_prefix)?;
        c.call_timeout = call_timeout;
        c.user = self.user_password()?;
        let tls = EtcdTls {
            ca_file: self.tls_ca_file.text(),
            cert_file: self.tls_cert_file.text(),
            key_file: self.tls_key_file.text(),
            domain: self.tls_domain.text(),
        };
        if tls != EtcdTls::default() {
            c.tls = Some(tls);
        }
        // The same checks the registry makes, at start, naming the setting.
        EtcdRegistry::new(&c).map_err(|e| {
            invalid(
                "registry.endpoints",
                format!("{:?}", c.endpoints),
                e.to_string(),
            )
        })?;
        Ok(RegistryConfig::Etcd(c))
    }

    /// The ZooKeeper registry: `url` is the connect string (`host:port[,host:port…]`),
    /// `key_prefix` the root path, `user`/`password` digest auth, `leaf_name` and `endpoint` the
    /// Meituan Leaf node to take over.
    fn zookeeper(&self, call_timeout: Duration) -> Result<RegistryConfig, ConfigError> {
        use floe_store::registry::{ZookeeperConfig, ZookeeperRegistry};
        let connect = self
            .url
            .text()
            .map_or_else(|| DEFAULT_ZOOKEEPER.to_owned(), |u| u.trim().to_owned());
        let mut c = ZookeeperConfig::new(connect);
        c.root = self.key_prefix.get("registry.key_prefix", &c.root)?;
        c.call_timeout = call_timeout;
        c.auth = self.user_password()?.map(|(u, p)| format!("{u}:{p}"));
        c.leaf_name = self.leaf_name.text();
        c.endpoint = self.endpoint.text();
        // The same checks the registry makes, at start, naming the setting.
        ZookeeperRegistry::new(&c)
            .map_err(|e| invalid("registry.url", format!("{:?}", c.connect), e.to_string()))?;
        Ok(RegistryConfig::Zookeeper(c))
    }

    /// `registry.user` and `registry.password`, both or neither.
    fn user_password(&self) -> Result<Option<(String, String)>, ConfigError> {
        match (self.user.text(), self.password.text()) {
            (Some(user), Some(password)) => Ok(Some((user, password))),
            (None, None) => Ok(None),
            _ => Err(invalid(
                "registry.user",
                "(one of user and password)",
                "both registry.user and registry.password, or neither",
            )),
        }
    }

    /// Without the `etcd` feature, `kind = "etcd"` says how to get it.
    #[cfg(not(feature = "etcd"))]
    fn etcd(&self, _call_timeout: Duration) -> Result<RegistryConfig, ConfigError> {
        Err(invalid(
            "registry.kind",
            "\"etcd\"",
            "a registry this build has: it was built without the `etcd` feature; build with `cargo build --release -p floe --features etcd` (needs protoc)",
        ))
    }

    /// Validates `[registry]` against the validated snowflake settings (layout, drift);
    /// `None` for the static identity.
    pub(super) fn build(
        &self,
        sf: &SnowflakeConfig,
    ) -> Result<Option<RegistrySettings>, ConfigError> {
        let layout = &sf.layout;
        let kind = self
            .kind
            .get("registry.kind", DEFAULT_KIND)?
            .trim()
            .to_ascii_lowercase();
        let call_timeout = self.call_timeout.within(
            "registry.call_timeout",
            DEFAULT_CALL_TIMEOUT,
            Duration::from_millis(10)..=Duration::from_secs(60),
        )?;
        // The URL's own check refuses a number with a better message than "a string" would.
        let url = |default: Option<&str>| -> Result<String, ConfigError> {
            match (self.url.text(), default) {
                (Some(u), _) => Ok(u.trim().to_owned()),
                (None, Some(d)) => Ok(d.to_owned()),
                (None, None) => Err(invalid(
                    "registry.url",
                    "(missing)",
                    format!("a URL of the {kind} registry"),
                )),
            }
        };
        let registry = match kind.as_str() {
            "static" => return Ok(None),
            "kubernetes" => RegistryConfig::Kubernetes {
                offset: self.offset.within(
                    "registry.offset",
                    DEFAULT_OFFSET,
                    0..=i64::from(u32::MAX),
                )?,
            },
            "sql" => {
                let url = url(None)?;
                floe_store::db::Dialect::of_url(&url).map_err(|why| {
                    invalid(
                        "registry.url",
                        floe_store::db::redact_url(&url),
                        why.to_string(),
                    )
                })?;
                let mut c = SqlConfig::new(url);
                c.table = self.table.get("registry.table", &c.table)?;
                c.call_timeout = call_timeout;
                RegistryConfig::Sql(c)
            }
            "redis" => {
                let url = url(Some(DEFAULT_REDIS_URL))?;
                if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                    return Err(invalid(
                        "registry.url",
                        floe_store::db::redact_url(&url),
                        "a redis:// or rediss:// URL",
                    ));
                }
                let mut c = RedisConfig::new(url);
                c.key_prefix = self.key_prefix.get("registry.key_prefix", &c.key_prefix)?;
                c.call_timeout = call_timeout;
                RegistryConfig::Redis(c)
            }
            "etcd" => self.etcd(call_timeout)?,
            "zookeeper" => self.zookeeper(call_timeout)?,
            _ => {
                return Err(invalid(
                    "registry.kind",
                    format!("{kind:?}"),
                    "static, sql, redis, etcd, zookeeper or kubernetes",
                ))
            }
        };
        // Default pool: the `worker` field, else `machine` (GenID: within zone and dc), else the
        // least significant node field.
        let fields: Vec<String> = match &self.fields {
            Some(list) => list.0.iter().map(Scalar::text).collect(),
            None => {
                let names: Vec<&str> = layout.node_fields().map(|f| f.name.as_str()).collect();
                let pick = ["worker", "machine"]
                    .into_iter()
                    .find(|n| names.contains(n))
                    .or(names.last().copied())
                    .ok_or_else(|| {
                        invalid(
                            "registry.kind",
                            format!("{kind:?}"),
                            "static: the layout has no node field to lease",
                        )
                    })?;
                vec![pick.to_owned()]
            }
        };
        let names: Vec<&str> = fields.iter().map(String::as_str).collect();
        floe_store::registry::NodePool::new(layout, &names)
            .map_err(|e| invalid("registry.fields", format!("{fields:?}"), e.to_string()))?;
        let namespace = self
            .namespace
            .get("registry.namespace", DEFAULT_NAMESPACE)?;
        if namespace.is_empty() || namespace.len() > 64 || namespace.contains(char::is_whitespace) {
            return Err(invalid(
                "registry.namespace",
                format!("{namespace:?}"),
                "1..=64 characters without spaces",
            ));
        }
        // In etcd and ZooKeeper the namespace is one segment of a key path.
        if matches!(kind.as_str(), "etcd" | "zookeeper")
            && (namespace.contains('/') || namespace == "." || namespace == "..")
        {
            return Err(invalid(
                "registry.namespace",
                format!("{namespace:?}"),
                format!("one path segment in {kind}: no `/`, not `.` or `..`"),
            ));
        }
        let ttl = self.ttl.within(
            "registry.ttl",
            DEFAULT_TTL,
            Duration::from_secs(1)..=Duration::from_secs(600),
        )?;
        // The node stops issuing `margin` before its lease can expire; logical time may run
        // max_drift plus a tick ahead of the clock, plus skew between nodes (see lease.rs), and
        // a renewal every ttl/3 must land before the fence.
        let tick = Duration::from_millis(layout.time_spec().unit_ms);
        let margin = sf.max_drift + tick + CLOCK_SKEW;
        if margin * 2 > ttl {
            return Err(invalid(
                "registry.ttl",
                ms(ttl),
                format!(
                    "at least {} with this layout: twice the fence margin of snowflake.max_drift ({}) + one tick ({}) + 0.5 s clock skew",
                    ms(margin * 2),
                    ms(sf.max_drift),
                    ms(tick)
                ),
            ));
        }
        Ok(Some(RegistrySettings {
            registry,
            namespace,
            ttl,
            fields,
        }))
    }
}
