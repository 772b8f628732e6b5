//! Worker-id registries: where a node leases the node-identity part of its IDs.
//!
//! A registry hands out ids from a pool `0..pool_size` within a namespace, one holder at a time:
//!
//! - [`StaticRegistry`]: a fixed id from the environment (`FLOE_WORKER_ID`, MASA's `WORKER_ID`)
//!   or the config; never expires;
//! - [`KubernetesRegistry`]: the StatefulSet ordinal from the host name, plus an offset; never expires;
//! - [`SqlRegistry`]: a table in SQLite, PostgreSQL or MySQL/MariaDB, expiry on the database's clock;
//! - [`RedisRegistry`]: `SET NX PX` with an owner token, compare-owner Lua scripts, no pub/sub;
//! - `EtcdRegistry` (feature `etcd`): keys bound to etcd leases, claimed by transactions,
//!   fenced by the grant's revision;
//! - [`ZookeeperRegistry`]: an ephemeral node per holder, one ZooKeeper session per lease;
//! - [`MemoryRegistry`]: in-process, for tests (works with tokio's paused clock).
//!
//! Expiring leases are kept by the server's lease keeper (`floe_server::keeper`), which renews them every `ttl / 3` and *fences*
//! them: the node must stop issuing IDs at `last successful renewal sent + ttl − margin`, before the
//! store can grant the id to anyone else. `docs/leases.md` explains the model and how MASA's options
//! map onto it.
//!
//! Every lease carries a fencing epoch (it increases each time the id changes hands) and the
//! high-water mark (Unix ms) stored by earlier holders; a new holder starts issuing after it.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use floe_core::{FieldKind, Layout};
use thiserror::Error;

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod fixed;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sql")]
pub mod sql;
#[cfg(feature = "zookeeper")]
pub mod zookeeper;

#[cfg(feature = "etcd")]
pub use self::etcd::{EtcdConfig, EtcdRegistry, EtcdTls};
#[cfg(feature = "redis")]
pub use self::redis::{RedisConfig, RedisRegistry};
#[cfg(feature = "zookeeper")]
pub use self::zookeeper::{ZookeeperConfig, ZookeeperRegistry};
pub use fixed::{resolve_worker_id, KubernetesRegistry, StaticRegistry, WorkerIdSource};
pub use memory::MemoryRegistry;
#[cfg(feature = "sql")]
pub use sql::{SqlConfig, SqlRegistry};

/// Default bound on one registry call: a hung store must never hang the caller.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Default lease time to live (MASA's `MaxExpirationTime`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Longest namespace, in bytes (it is part of a primary key in MySQL, where keys are size-bounded).
pub const MAX_NAMESPACE_LEN: usize = 191;
/// Longest owner token, in bytes (the SQL column is `VARCHAR(255)`).
pub const MAX_OWNER_LEN: usize = 255;
/// Shortest lease time to live: the keeper renews every `ttl / 3` and fences at least 100 ms early.
pub const MIN_TTL: Duration = Duration::from_millis(300);
/// Widest pool in bits, so every id fits `u32` and every store's integer columns.
pub const MAX_POOL_BITS: u32 = 31;

/// What a node asks a registry for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    /// Several clusters share one Redis or database; ids are unique only within a namespace.
    pub namespace: String,
    /// Ids handed out are `0..pool_size`: the range of the layout's node field(s) (see [`NodePool`]).
    pub pool_size: u32,
    /// Unique per process (see [`default_owner`]), so a renewal can prove who holds the id.
    pub owner: String,
    /// How long the store keeps an id for a holder that stops renewing.
    pub ttl: Duration,
}

impl LeaseRequest {
    /// A request with a fresh owner token ([`default_owner`]).
    pub fn new(namespace: impl Into<String>, pool_size: u32, ttl: Duration) -> LeaseRequest {
        LeaseRequest {
            namespace: namespace.into(),
            pool_size,
            owner: default_owner(),
            ttl,
        }
    }

    /// Checks the limits every store relies on; registries call this before any I/O.
    pub fn validate(&self) -> Result<(), RegistryError> {
        if self.namespace.is_empty() || self.namespace.len() > MAX_NAMESPACE_LEN {
            return Err(RegistryError::Config(format!(
                "lease namespace `{}` must be 1..={MAX_NAMESPACE_LEN} bytes long",
                self.namespace
            )));
        }
        if self.owner.is_empty() || self.owner.len() > MAX_OWNER_LEN {
            return Err(RegistryError::Config(format!(
                "lease owner `{}` must be 1..={MAX_OWNER_LEN} bytes long",
                self.owner
            )));
        }
        if self.pool_size == 0 || self.pool_size > 1 << MAX_POOL_BITS {
            return Err(RegistryError::Config(format!(
                "lease pool size {} must be 1..=2^{MAX_POOL_BITS}; it comes from the width of the layout's node field(s)",
                self.pool_size
            )));
        }
        if self.ttl < MIN_TTL {
            return Err(RegistryError::Config(format!(
                "lease ttl {:?} is below the minimum of {MIN_TTL:?}; use a few seconds (default {DEFAULT_TTL:?})",
                self.ttl
            )));
        }
        Ok(())
    }

    /// The ttl in whole milliseconds, as the stores take it.
    #[cfg(any(feature = "sql", feature = "redis"))]
    pub(crate) fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A worker id held by one owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The id, in `0..pool_size`.
    pub id: u32,
    /// The owner token the store recorded; renewals and releases must present it.
    pub owner: String,
    /// Fencing token: increases every time the id changes hands, so a stale holder's renewal fails
    /// even when it presents the right owner token (same process, earlier lease).
    pub epoch: u64,
    /// Highest high-water mark (Unix ms) stored for this id by any earlier holder; the new holder
    /// must start issuing after it. `None` when the id was never held or no mark was stored.
    pub previous_high_water_ms: Option<u64>,
}

/// One id of a namespace as the registry's store sees it (for the console's cluster view).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerSlot {
    /// The id, in `0..pool_size`.
    pub worker_id: u32,
    /// The holder's owner token; `None` once released.
    pub owner: Option<String>,
    /// Fencing epoch of the current or last grant.
    pub epoch: u64,
    /// Milliseconds until the grant lapses, on the store's clock (negative: lapsed); `None` when
    /// the id is free.
    pub expires_in_ms: Option<i64>,
    /// Highest high-water mark (Unix ms) stored for the id.
    pub high_water_ms: Option<u64>,
    /// Whether a live holder has it now (an owner and an expiry in the future).
    pub held: bool,
}

/// Most ids [`WorkerRegistry::list`] returns: a console needs the live part of a pool, not a
/// 2^31-row answer.
pub const MAX_LISTED: usize = 4096;

/// Why a registry call failed. Each variant is something the caller acts on differently.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// Every id of the pool is held by a live lease.
    #[error("no free worker id in namespace `{namespace}`: all {pool_size} ids (0..{pool_size}) are leased by live nodes; stop a node, wait for a dead node's lease to expire, or widen the layout's node field(s)")]
    Exhausted {
        /// The namespace asked.
        namespace: String,
        /// The pool size asked.
        pool_size: u32,
    },
    /// The lease is no longer this holder's: it was released, or it expired and another node took it.
    #[error("lease on worker id {id} (epoch {epoch}) in namespace `{namespace}` is lost: it was released, or it expired and was granted again; stop issuing IDs with it and acquire a new lease")]
    Lost {
        /// The namespace of the lease.
        namespace: String,
        /// The id of the lease.
        id: u32,
        /// The epoch of the lease.
        epoch: u64,
    },
    /// The store did not answer in time or failed; a held lease stays valid until its fence.
    #[error("worker-id registry {store} is unavailable: {what}")]
    Unavailable {
        /// The store, with any password removed from its URL.
        store: String,
        /// What failed and what to check.
        what: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The configuration or request cannot work; retrying will not help.
    #[error("worker-id registry configuration: {0}")]
    Config(String),
}

impl RegistryError {
    /// An [`RegistryError::Unavailable`] with a cause.
    #[cfg(any(
        feature = "sql",
        feature = "redis",
        feature = "etcd",
        feature = "zookeeper"
    ))]
    pub(crate) fn unavailable(
        store: &str,
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> RegistryError {
        RegistryError::Unavailable {
            store: store.to_string(),
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }

    /// Whether retrying later can succeed (everything but a configuration error).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, RegistryError::Config(_))
    }
}

/// A store that leases worker ids. Dyn-compatible, so the server picks one at run time.
#[async_trait]
pub trait WorkerRegistry: Send + Sync + Debug {
    /// Claims the lowest id of `0..pool_size` that is free or whose lease expired;
    /// [`RegistryError::Exhausted`] when every id is held.
    async fn acquire(&self, req: &LeaseRequest) -> Result<Lease, RegistryError>;

    /// Extends the lease to `now + ttl` and raises the id's stored high-water mark to
    /// `high_water_ms` (never lowers it), iff no one else acquired the id since this lease was
    /// granted and it was not released; [`RegistryError::Lost`] otherwise. An expired lease that
    /// nobody took yet is renewed: no one else can have issued IDs with it.
    async fn renew(
        &self,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError>;

    /// Raises the stored high-water mark and frees the id, iff the lease is still this holder's
    /// (as for [`WorkerRegistry::renew`]); [`RegistryError::Lost`] otherwise.
    async fn release(
        &self,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError>;

    /// Every id of `req.namespace` below `req.pool_size` the store has a record of, lowest first
    /// and at most [`MAX_LISTED`], with its holder, epoch and expiry. Registries without a
    /// shared store (static, Kubernetes) know of no other node and list nothing.
    async fn list(&self, req: &LeaseRequest) -> Result<Vec<WorkerSlot>, RegistryError> {
        let _ = req;
        Ok(Vec::new())
    }

    /// Where the registry keeps its leases, without any password (`sql at …`, `redis at …`).
    fn describe(&self) -> String {
        "static".to_string()
    }

    /// Whether leases expire (and so need heartbeats and a fence); false for static ids.
    fn leases_expire(&self) -> bool {
        true
    }

    /// What can be known without a store call: a fixed id (static, Kubernetes ordinal) that
    /// does not fit the pool is refused here, so the node exits at start (64) instead of starting
    /// and giving up. Stores that hand out ids themselves have nothing to check.
    fn precheck(&self, req: &LeaseRequest) -> Result<(), RegistryError> {
        let _ = req;
        Ok(())
    }
}

/// Which registry a node uses, as the server's validated config gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryConfig {
    /// A fixed id: `FLOE_WORKER_ID`, else MASA's `WORKER_ID`, else `worker_id`, else 0.
    Static {
        /// The configured id, if any.
        worker_id: Option<u32>,
    },
    /// The StatefulSet ordinal from `HOSTNAME`, plus `offset`.
    Kubernetes {
        /// Added to the ordinal, so several StatefulSets can share one id space.
        offset: u32,
    },
    /// Leases in a SQL table.
    #[cfg(feature = "sql")]
    Sql(SqlConfig),
    /// Leases in Redis.
    #[cfg(feature = "redis")]
    Redis(RedisConfig),
    /// Leases in etcd.
    #[cfg(feature = "etcd")]
    Etcd(EtcdConfig),
    /// Leases as ephemeral nodes in ZooKeeper.
    #[cfg(feature = "zookeeper")]
    Zookeeper(ZookeeperConfig),
}

impl RegistryConfig {
    /// Builds the registry; `env` reads environment variables (`|k| std::env::var(k).ok()`).
    /// No I/O happens here: the stores connect on the first call.
    pub fn open(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<std::sync::Arc<dyn WorkerRegistry>, RegistryError> {
        Ok(match self {
            RegistryConfig::Static { worker_id } => {
                let registry = StaticRegistry::from_env(*worker_id, env)?.unwrap_or_else(|| {
                    tracing::warn!(
                        "no worker id configured (worker_id, FLOE_WORKER_ID or WORKER_ID): using 0, which is only safe for a single node"
                    );
                    StaticRegistry::new(0, WorkerIdSource::Default)
                });
                std::sync::Arc::new(registry)
            }
            RegistryConfig::Kubernetes { offset } => {
                std::sync::Arc::new(KubernetesRegistry::from_env(*offset, env)?)
            }
            #[cfg(feature = "sql")]
            RegistryConfig::Sql(config) => std::sync::Arc::new(SqlRegistry::new(config)?),
            #[cfg(feature = "redis")]
            RegistryConfig::Redis(config) => std::sync::Arc::new(RedisRegistry::new(config)?),
            #[cfg(feature = "etcd")]
            RegistryConfig::Etcd(config) => std::sync::Arc::new(EtcdRegistry::new(config)?),
            #[cfg(feature = "zookeeper")]
            RegistryConfig::Zookeeper(config) => {
                std::sync::Arc::new(ZookeeperRegistry::new(config)?)
            }
        })
    }
}

/// Runs one registry call, turning a store that does not answer within `limit` into
/// [`RegistryError::Unavailable`] instead of a hang.
pub(crate) async fn bounded<T>(
    limit: Duration,
    store: &str,
    call: impl Future<Output = Result<T, RegistryError>>,
) -> Result<T, RegistryError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(RegistryError::Unavailable {
            store: store.to_string(),
            what: format!(
                "no answer within the call timeout of {limit:?}; check the store, or raise call_timeout if it is merely slow"
            ),
            source: None,
        }),
    }
}

/// A fresh owner token, `host:pid:random`, unique per process and per call.
pub fn default_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_string());
    // Keep the token within the column limit whatever the host name.
    let host: String = host.chars().take(200).collect();
    format!("{host}:{}:{:016x}", std::process::id(), fastrand::u64(..))
}

#[cfg(any(feature = "sql", feature = "redis"))]
pub(crate) use crate::db::redact_url;

/// The node field(s) a registry hands out, seen as one number.
///
/// A single field (`worker` for `twitter`) gives a pool of `2^width` ids. Several fields
/// (GenID's `dc` and `machine`) are concatenated, most significant first, so a pool id splits into
/// one value per field; node fields left out of the pool keep their configured values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePool {
    /// `(name, width)` of each pooled field, most significant first.
    fields: Vec<(String, u32)>,
}

impl NodePool {
    /// The pool made of the named node fields of `layout`, in the order given.
    pub fn new(layout: &Layout, names: &[&str]) -> Result<NodePool, RegistryError> {
        if names.is_empty() {
            return Err(RegistryError::Config(
                "the lease pool names no node field; name one or more of the layout's node fields"
                    .to_string(),
            ));
        }
        let mut fields = Vec::with_capacity(names.len());
        for name in names {
            let field = layout
                .node_fields()
                .find(|f| f.name == *name && f.kind == FieldKind::Node)
                .ok_or_else(|| {
                    RegistryError::Config(format!(
                        "lease pool field `{name}` is not a node field of the layout; its node fields are: {}",
                        layout
                            .node_fields()
                            .map(|f| f.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            if fields.iter().any(|(n, _)| n == name) {
                return Err(RegistryError::Config(format!(
                    "lease pool names field `{name}` twice"
                )));
            }
            fields.push((field.name.clone(), field.width));
        }
        let bits: u32 = fields.iter().map(|(_, w)| w).sum();
        if bits > MAX_POOL_BITS {
            return Err(RegistryError::Config(format!(
                "lease pool fields {} are {bits} bits wide together; at most {MAX_POOL_BITS} can be leased",
                names.join("+")
            )));
        }
        Ok(NodePool { fields })
    }

    /// Number of ids in the pool (`2^total width`).
    pub fn size(&self) -> u32 {
        1u32 << self.fields.iter().map(|(_, w)| w).sum::<u32>()
    }

    /// Splits a pool id into one value per pooled field, ready for [`Layout::identity`].
    pub fn values(&self, id: u32) -> Vec<(String, u64)> {
        let mut rest = u64::from(id);
        let mut out: Vec<(String, u64)> = self
            .fields
            .iter()
            .rev()
            .map(|(name, width)| {
                let v = rest & ((1u64 << width) - 1);
                rest >>= width;
                (name.clone(), v)
            })
            .collect();
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_differ() {
        let a = default_owner();
        let b = default_owner();
        assert_ne!(a, b);
        assert!(a.len() <= MAX_OWNER_LEN);
    }

    #[test]
    fn request_limits_are_checked() {
        let ok = LeaseRequest::new("ns", 32, Duration::from_secs(10));
        ok.validate().unwrap();
        let e = LeaseRequest {
            pool_size: 0,
            ..ok.clone()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("pool size 0"), "{e}");
        let e = LeaseRequest {
            ttl: Duration::from_millis(10),
            ..ok.clone()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("below the minimum"), "{e}");
        let e = LeaseRequest {
            namespace: String::new(),
            ..ok
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("namespace"), "{e}");
    }

    #[tokio::test]
    #[cfg(all(feature = "sql", feature = "redis"))]
    async fn config_opens_each_kind() {
        let env = |k: &str| match k {
            "HOSTNAME" => Some("floe-2".to_string()),
            "WORKER_ID" => Some("9".to_string()),
            _ => None,
        };
        let req = LeaseRequest::new("ns", 16, DEFAULT_TTL);
        let open = |c: RegistryConfig| c.open(env).unwrap();
        let masa = open(RegistryConfig::Static { worker_id: None });
        assert_eq!(masa.acquire(&req).await.unwrap().id, 9);
        let k8s = open(RegistryConfig::Kubernetes { offset: 4 });
        assert_eq!(k8s.acquire(&req).await.unwrap().id, 6);
        let none = RegistryConfig::Static { worker_id: None }
            .open(|_| None)
            .unwrap();
        assert_eq!(none.acquire(&req).await.unwrap().id, 0);
        open(RegistryConfig::Sql(SqlConfig::new(
            "postgres://u:pw@db/floe",
        )));
        open(RegistryConfig::Redis(RedisConfig::new(
            "redis://127.0.0.1:6379",
        )));
        let e = RegistryConfig::Redis(RedisConfig::new("http://x"))
            .open(env)
            .unwrap_err();
        assert!(
            e.to_string().contains("redis URL `http://x` is invalid"),
            "{e}"
        );
    }

    #[test]
    fn genid_pool_concatenates_dc_and_machine() {
        let layout = Layout::parse("genid").unwrap();
        let machine = NodePool::new(&layout, &["machine"]).unwrap();
        assert_eq!(machine.size(), 8);
        let pool = NodePool::new(&layout, &["dc", "machine"]).unwrap();
        assert_eq!(pool.size(), 64);
        assert_eq!(
            pool.values(0b101_011),
            vec![("dc".to_string(), 0b101), ("machine".to_string(), 0b011)]
        );
        layout.identity(&pool.values(63)).unwrap();
        let e = NodePool::new(&layout, &["seq"]).unwrap_err();
        assert!(e.to_string().contains("zone, dc, machine"), "{e}");
    }
}
