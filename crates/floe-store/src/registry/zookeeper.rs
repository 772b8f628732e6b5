//! Worker ids leased from ZooKeeper: an EPHEMERAL node per live holder, one ZooKeeper session per
//! lease, so a node that dies or is cut off loses its id when the server expires its session
//! (Meituan Leaf's persistent sequential nodes are never reclaimed).
//!
//! Nodes, per namespace and id:
//!
//! | node | kind | data |
//! |---|---|---|
//! | `{root}/{namespace}/ids/{id}` | persistent, one per id ever granted (or freed from Leaf, epoch 0) | `{"epoch":n,"high_water_ms":m}` |
//! | `{root}/{namespace}/workers/{id}` | EPHEMERAL, owned by the holder's session | `{"owner":"…","epoch":n}` |
//!
//! - **acquire** opens a new session with the lease's ttl as its requested session timeout and
//!   refuses ([`RegistryError::Config`]) a server that negotiates a shorter one (its
//!   `maxSessionTimeout`, by default 20 × `tickTime`, is below the ttl). It then claims the lowest
//!   id without a workers node in ONE multi-op: create the ephemeral workers node, and create the
//!   ids node with epoch 1 or set it to epoch + 1 if its Stat version is unchanged. A lost race
//!   (node exists, bad version) tries the next id.
//! - **renew** checks, in one multi-read on the lease's session, that the workers node is this
//!   owner's with this epoch and that the lease's session owns it (`ephemeralOwner`), and that the
//!   ids node still has the lease's epoch; then it raises the stored high-water mark (never lowers
//!   it) by a set-data on the ids node's version. If the session has expired but nobody took the
//!   id (no workers node, ids epoch unchanged), it re-creates the workers node under a new session,
//!   with a CAS on the ids node in the same multi-op; the epoch stays the lease's.
//! - **release** makes the same checks, then deletes the workers node and bumps the epoch with the
//!   exact final mark in one multi-op, and closes the lease's session.
//! - **list** reads the ids nodes below the pool size and their workers nodes through a shared
//!   session (also used for the read-only checks that do not need the lease's own session).
//!
//! Every write to an ids node is compare-and-set on its Stat version, so its `epoch` increases on
//! every grant and every release, as the Redis registry's epoch key does.
//!
//! **Expiry.** ZooKeeper does not expose how long a session has left. [`WorkerRegistry::list`]
//! reports the negotiated session timeout of the holder as `expires_in_ms` when the lease is this
//! registry's, and the request's ttl otherwise (the requested timeout of every Floe holder with
//! the same config): an upper bound, not a countdown. A lease does not lapse just because `renew`
//! is not called: the client pings its sessions by itself, so a process that is alive and
//! connected keeps its id even if its keeper stalls (the keeper's fence still stops it issuing).
//!
//! **When the process holding a session is cut off** (partition, pause, crash), the server
//! expires the session one session timeout after it last heard from it, deletes the ephemeral
//! workers node, and another node may take the id. Each method then behaves as follows:
//!
//! - `renew` fails with [`RegistryError::Unavailable`] within `call_timeout`. The lease keeper
//!   (in `floe-server`) fences at `last successful renewal sent + ttl − margin`; the server heard
//!   from the session at or after that renewal was sent and keeps it for at least the negotiated
//!   timeout, which is at least the ttl (checked at acquire), so the fence comes before the id can
//!   be granted again. Once reachable again, `renew` is [`RegistryError::Lost`] if another node
//!   took the id, or revives the lease under a new session if nobody did.
//! - `acquire` fails with `Unavailable`. If the server applied the grant but the answer was lost,
//!   the new session is dropped unused: the server closes or expires it and frees the id after one
//!   session timeout.
//! - `release` fails with `Unavailable`: the id frees itself when the session expires, and the
//!   mark stored by the last renewal stays (the keeper's own rule for a failed release).
//! - `list` fails with `Unavailable`.
//!
//! The ZooKeeper client reconnects a session by itself while the session lives (so a short cut
//! that heals before the timeout keeps the ephemeral node), and declares it expired after 7/5 of
//! the timeout without an answer. Leases are kept in a map keyed by (namespace, id, epoch): a
//! lease this registry did not grant (another process's) can be found Lost or revived, never
//! renewed through a session it does not hold.
//!
//! With `auth` (`user:password`), every session adds the `digest` credentials and the nodes Floe
//! creates get the `creator_all` ACL; without it they are open to anyone (`world:anyone`).
//!
//! **Taking over a Meituan Leaf cluster** (`leaf_name` and `endpoint` set). Leaf's
//! `SnowflakeZookeeperHolder` keeps `/snowflake/{leaf_name}/forever/{ip}:{port}-{sequence}`,
//! PERSISTENT_SEQUENTIAL nodes whose 10-digit sequence is the endpoint's worker id, with data
//! `{"ip":"…","port":"…","timestamp":ms}`; Leaf never frees them. When this registry's endpoint
//! has such a node, acquire takes exactly that id (refused with [`RegistryError::Config`] if it is
//! outside the pool; [`RegistryError::Unavailable`], retried, while another live Floe lease holds
//! it), in Floe's own scheme above (ids and workers nodes), so Floe nodes never collide with
//! each other; the lease's previous mark is after Leaf's stored timestamp: one upload delay
//! (3 s) and a millisecond past it when Leaf wrote the node last (Leaf stores its clock at each
//! upload, every 3 s, and issues IDs in between), the timestamp itself when Floe did (then it is
//! Floe's exact mark). Every renewal that
//! raises the mark, and the release, also write Leaf's JSON with the mark as `timestamp` to that
//! node, in the same multi-op: a Leaf node restarted on the endpoint refuses to start until its
//! clock passes Floe's last IDs (Leaf checks that `timestamp` is not ahead of its clock). An
//! endpoint without a Leaf node takes the lowest free id that no Leaf endpoint has. Leaf's
//! sequence counter does not see Floe's ids, so start no Leaf node on a *new* endpoint once Floe
//! nodes lease ids beside Leaf's: migrate one way. Leaf never frees its nodes, so every endpoint
//! that ever ran keeps its id: [`reclaim_leaf_nodes`] (`floe leaf reclaim`) deletes the idle ones.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zookeeper_client as zk;
use zookeeper_client::{Acls, Client, CreateMode, MultiReadResult, MultiWriteError, Stat};

mod leaf;

pub use leaf::{
    apply_reclaim, list_leaf_nodes, plan_reclaim, reclaim_leaf_nodes, Kept, LeafNode,
    ReclaimOptions, ReclaimReport,
};

use super::{
    bounded, Lease, LeaseRequest, RegistryError, WorkerRegistry, WorkerSlot, DEFAULT_TTL,
    MAX_LISTED,
};

/// Default root path.
pub const DEFAULT_ROOT: &str = "/floe";

/// How many ids one multi-read of [`WorkerRegistry::list`] covers, so an answer stays far below
/// ZooKeeper's `jute.maxbuffer` (1 MiB).
const LIST_CHUNK: usize = 256;

/// How many times a call re-reads after a CAS lost to a concurrent write before giving up.
const CAS_TRIES: usize = 5;

/// Where and how to reach ZooKeeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZookeeperConfig {
    /// `host:port[,host:port…]`, as for the Java client.
    pub connect: String,
    /// Path under which Floe keeps its nodes (`/floe`); created on first use.
    pub root: String,
    /// Bound on each call (connecting included).
    pub call_timeout: Duration,
    /// `user:password` for ZooKeeper's `digest` scheme, if the ensemble requires it.
    pub auth: Option<String>,
    /// Meituan Leaf's `leaf.name`, to take over a Leaf cluster's worker ids (with `endpoint`):
    /// see [the module documentation](self).
    pub leaf_name: Option<String>,
    /// This node's Leaf endpoint, `ip:port`, as Leaf named its node under
    /// `/snowflake/{leaf_name}/forever/`.
    pub endpoint: Option<String>,
}

impl ZookeeperConfig {
    /// The defaults for `connect`: root `/floe`, call timeout 2 s, no auth.
    pub fn new(connect: impl Into<String>) -> ZookeeperConfig {
        ZookeeperConfig {
            connect: connect.into(),
            root: DEFAULT_ROOT.to_string(),
            call_timeout: super::DEFAULT_CALL_TIMEOUT,
            auth: None,
            leaf_name: None,
            endpoint: None,
        }
    }
}

/// `/snowflake/{leaf_name}/forever`, where Leaf keeps one node per endpoint.
fn leaf_forever(leaf_name: &str) -> String {
    format!("/snowflake/{leaf_name}/forever")
}

/// How often Leaf uploads its endpoint's `timestamp`: `SnowflakeZookeeperHolder` writes its
/// wall clock with a fixed delay of 3 s and issues IDs in between.
const LEAF_UPLOAD_DELAY_MS: u64 = 3_000;

/// The previous mark (exclusive end of the ticks issued, as Floe's marks are) that a Leaf node's
/// stored `timestamp` stands for, given Floe's own mark of the id. When Floe wrote the node last,
/// the two are equal (every write goes to both in one multi-op) and exact. When Leaf wrote it,
/// it is Leaf's clock at its last upload: Leaf issued IDs in that millisecond and kept issuing
/// until the next upload was due, so the mark lies one upload delay past the millisecond.
fn leaf_floor(timestamp: u64, floe_mark: Option<u64>) -> u64 {
    if floe_mark == Some(timestamp) {
        timestamp
    } else {
        timestamp.saturating_add(LEAF_UPLOAD_DELAY_MS + 1)
    }
}

/// Leaf's `leaf.name` is one path segment.
fn check_leaf_name(name: &str) -> Result<(), RegistryError> {
    if name.is_empty() || name.contains('/') || name.contains(char::is_control) {
        return Err(RegistryError::Config(format!(
            "zookeeper leaf_name `{name}` must be Leaf's non-empty leaf.name, without `/`"
        )));
    }
    Ok(())
}

/// A Leaf endpoint is `ip:port`, without the `-` that separates it from the sequence.
fn check_endpoint(endpoint: &str) -> Result<(), RegistryError> {
    let valid = endpoint.rsplit_once(':').is_some_and(|(ip, port)| {
        !ip.is_empty()
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && !endpoint.contains(['-', '/'])
            && !endpoint.contains(char::is_whitespace)
    });
    if !valid {
        return Err(RegistryError::Config(format!(
            "zookeeper endpoint `{endpoint}` must be Leaf's `ip:port` of this node (no `-` or `/`)"
        )));
    }
    Ok(())
}

/// A child of Leaf's forever directory, `{ip}:{port}-{10-digit sequence}`, as (endpoint, worker
/// id); `None` for a name that is not Leaf's or a sequence beyond any pool.
fn parse_leaf_name(name: &str) -> Option<(&str, u32)> {
    let (endpoint, seq) = name.rsplit_once('-')?;
    Some((endpoint, seq.parse().ok()?))
}

/// The data of an ids node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct IdRecord {
    /// Fencing epoch of the current or last grant.
    epoch: u64,
    /// Highest high-water mark stored (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    high_water_ms: Option<u64>,
}

/// The data of a workers node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    /// The holder's owner token.
    owner: String,
    /// The epoch of its grant.
    epoch: u64,
}

/// A lease's session, with the owner it was granted to.
#[derive(Debug)]
struct LeaseSession {
    /// The session owning the lease's ephemeral node.
    client: Client,
    /// The owner token of the lease.
    owner: String,
    /// The Leaf node of the lease's id, whose timestamp renewals keep after Floe's mark.
    leaf: Option<String>,
}

/// Meituan Leaf's nodes for this registry's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LeafTakeover {
    /// `/snowflake/{leaf_name}/forever`.
    forever: String,
    /// `ip:port`.
    endpoint: String,
}

/// What the Leaf forever directory says.
#[derive(Debug, Default)]
struct LeafScan {
    /// This endpoint's node: path, worker id, stored timestamp (Unix ms).
    mine: Option<(String, u32, u64)>,
    /// The worker ids of the other endpoints' nodes, reserved for them.
    others: HashSet<u32>,
}

/// (namespace, id, epoch) of a lease.
type LeaseKey = (String, u32, u64);

/// An id's workers node (holder, stat) and ids node (record, version), each if it exists.
type Read = (Option<(Holder, Stat)>, Option<(IdRecord, i32)>);

/// Why a check on the lease's own session could not decide.
enum Check {
    /// The session is gone or the workers node is missing: see if the lease can be revived.
    Dead,
    /// Decided.
    Done(Result<(), RegistryError>),
}

/// A worker-id registry in ZooKeeper.
pub struct ZookeeperRegistry {
    /// The connect string.
    connect: String,
    /// Root path, without a trailing `/`.
    root: String,
    /// `digest` credentials.
    auth: Option<String>,
    /// The Leaf cluster to take over, if any.
    leaf: Option<LeafTakeover>,
    /// `zookeeper at {connect}{root}`, for errors.
    shown: String,
    /// Bound on each call.
    call_timeout: Duration,
    /// The session for reads that need no lease's session, made on first use and replaced after
    /// a failed call or once terminated.
    shared: tokio::sync::Mutex<Option<Client>>,
    /// The sessions of the leases this registry granted or revived.
    leases: parking_lot::Mutex<HashMap<LeaseKey, LeaseSession>>,
}

impl std::fmt::Debug for ZookeeperRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZookeeperRegistry")
            .field("connect", &self.connect)
            .field("root", &self.root)
            .field("call_timeout", &self.call_timeout)
            .field("leases", &self.leases.lock().len())
            .finish_non_exhaustive()
    }
}

impl ZookeeperRegistry {
    /// Checks the config; connects lazily, on the first call.
    pub fn new(config: &ZookeeperConfig) -> Result<ZookeeperRegistry, RegistryError> {
        let connect = config.connect.trim();
        if connect.is_empty()
            || connect.contains(char::is_whitespace)
            || connect.split(',').any(|host| !host.contains(':'))
        {
            return Err(RegistryError::Config(format!(
                "zookeeper connect string `{}` is invalid; expected host:port[,host:port…]",
                config.connect
            )));
        }
        let root = config.root.as_str();
        if !root.starts_with('/')
            || root.len() < 2
            || root.ends_with('/')
            || root.contains("//")
            || root.split('/').any(|s| s == "." || s == "..")
            || root.contains(char::is_control)
        {
            return Err(RegistryError::Config(format!(
                "zookeeper root `{root}` must be an absolute path below `/` without a trailing `/` (default {DEFAULT_ROOT})"
            )));
        }
        if config.call_timeout.is_zero() {
            return Err(RegistryError::Config(
                "zookeeper call_timeout must be above zero (default 2 s)".to_string(),
            ));
        }
        if let Some(auth) = &config.auth {
            if !auth.contains(':') {
                return Err(RegistryError::Config(
                    "zookeeper auth must be `user:password` (the digest scheme)".to_string(),
                ));
            }
        }
        let leaf = match (&config.leaf_name, &config.endpoint) {
            (None, None) => None,
            (Some(name), Some(endpoint)) => {
                check_leaf_name(name)?;
                check_endpoint(endpoint)?;
                Some(LeafTakeover {
                    forever: leaf_forever(name),
                    endpoint: endpoint.clone(),
                })
            }
            _ => {
                return Err(RegistryError::Config(
                    "zookeeper leaf_name and endpoint go together: set both to take over a Leaf node's worker id, or neither".to_string(),
                ))
            }
        };
        Ok(ZookeeperRegistry {
            connect: connect.to_string(),
            root: root.to_string(),
            auth: config.auth.clone(),
            leaf,
            shown: format!("zookeeper at {connect}{root}"),
            call_timeout: config.call_timeout,
            shared: tokio::sync::Mutex::new(None),
            leases: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// A namespace is one path segment.
    fn check_namespace(&self, namespace: &str) -> Result<(), RegistryError> {
        if namespace.contains('/')
            || namespace == "."
            || namespace == ".."
            || namespace.contains(char::is_control)
        {
            return Err(RegistryError::Config(format!(
                "lease namespace `{namespace}` cannot be a zookeeper path segment: no `/`, control characters, `.` or `..`"
            )));
        }
        Ok(())
    }

    /// `{root}/{namespace}/ids`.
    fn ids_dir(&self, namespace: &str) -> String {
        format!("{}/{namespace}/ids", self.root)
    }

    /// `{root}/{namespace}/workers`.
    fn workers_dir(&self, namespace: &str) -> String {
        format!("{}/{namespace}/workers", self.root)
    }

    /// The ids node and the workers node of an id.
    fn paths(&self, namespace: &str, id: u32) -> (String, String) {
        (
            format!("{}/{id}", self.ids_dir(namespace)),
            format!("{}/{id}", self.workers_dir(namespace)),
        )
    }

    /// The ACL of the nodes Floe creates.
    fn acls(&self) -> Acls<'static> {
        if self.auth.is_some() {
            Acls::creator_all()
        } else {
            Acls::anyone_all()
        }
    }

    /// A ZooKeeper failure as [`RegistryError::Unavailable`].
    fn failed(&self, what: &str, e: impl Into<zk::Error>) -> RegistryError {
        let e = e.into();
        let hint = match e {
            zk::Error::NoAuth | zk::Error::AuthFailed => format!(
                "{what} failed: not authorized; check the registry's auth (digest user:password) and the ACLs of {}",
                self.root
            ),
            _ => format!(
                "{what} failed; check that ZooKeeper answers at {}",
                self.connect
            ),
        };
        RegistryError::unavailable(&self.shown, hint, e)
    }

    /// Data under Floe's nodes that Floe did not write.
    fn ill_formed(&self, path: &str, e: impl std::fmt::Display) -> RegistryError {
        RegistryError::Unavailable {
            store: self.shown.clone(),
            what: format!(
                "node {path} is ill-formed ({e}); is another program writing under {}?",
                self.root
            ),
            source: None,
        }
    }

    /// The lease is not this holder's.
    fn lost(req: &LeaseRequest, lease: &Lease) -> RegistryError {
        RegistryError::Lost {
            namespace: req.namespace.clone(),
            id: lease.id,
            epoch: lease.epoch,
        }
    }

    /// A new session asking for `timeout`.
    async fn session(&self, timeout: Duration) -> Result<Client, RegistryError> {
        let mut connector = Client::connector()
            .with_session_timeout(timeout)
            .with_fail_eagerly();
        if let Some(auth) = &self.auth {
            connector = connector.with_auth("digest", auth.as_bytes());
        }
        connector
            .connect(&self.connect)
            .await
            .map_err(|e| self.failed("connecting", e))
    }

    /// A new session for a lease, refused if the server grants less than the ttl.
    async fn lease_session(&self, req: &LeaseRequest) -> Result<Client, RegistryError> {
        let client = self.session(req.ttl).await?;
        let negotiated = client.session_timeout();
        if negotiated < req.ttl {
            return Err(RegistryError::Config(format!(
                "{} negotiated a session timeout of {negotiated:?}, below the lease ttl of {:?}: the server's maxSessionTimeout (default 20 × tickTime) is too low, so it could expire a lease while its holder still issues IDs; raise maxSessionTimeout in zoo.cfg or lower the ttl",
                self.shown, req.ttl
            )));
        }
        Ok(client)
    }

    /// The shared session, connecting if there is none or it ended.
    async fn shared(&self) -> Result<Client, RegistryError> {
        let mut slot = self.shared.lock().await;
        if let Some(client) = slot.as_ref() {
            if !client.state().is_terminated() {
                return Ok(client.clone());
            }
        }
        let client = self.session(DEFAULT_TTL).await?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs a call within the call timeout; a failure drops the shared session, so one that
    /// hangs without closing is replaced.
    async fn run<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        let result = bounded(self.call_timeout, &self.shown, call).await;
        if matches!(result, Err(RegistryError::Unavailable { .. })) {
            self.shared.lock().await.take();
        }
        result
    }

    /// Creates `{root}/{namespace}/ids` and `…/workers` if missing.
    async fn make_dirs(&self, client: &Client, namespace: &str) -> Result<(), RegistryError> {
        let options = CreateMode::Persistent.with_acls(self.acls());
        for dir in [self.ids_dir(namespace), self.workers_dir(namespace)] {
            client
                .mkdir(&dir, &options)
                .await
                .map_err(|e| self.failed(&format!("creating {dir}"), e))?;
        }
        Ok(())
    }

    /// Parses an ids node.
    fn id_record(&self, path: &str, data: &[u8]) -> Result<IdRecord, RegistryError> {
        serde_json::from_slice(data).map_err(|e| self.ill_formed(path, e))
    }

    /// Reads the workers node and the ids node of an id in one multi-read, raw: the outer error
    /// is ZooKeeper's (so callers can tell an expired session), the inner one ill-formed data.
    async fn read_id(
        &self,
        client: &Client,
        namespace: &str,
        id: u32,
    ) -> Result<Result<Read, RegistryError>, zk::Error> {
        let (id_path, worker_path) = self.paths(namespace, id);
        let mut reader = client.new_multi_reader();
        reader.add_get_data(&worker_path)?;
        reader.add_get_data(&id_path)?;
        let mut results = reader.commit().await?.into_iter();
        let mut next = || match results.next() {
            Some(MultiReadResult::Data { data, stat }) => Ok(Some((data, stat))),
            Some(MultiReadResult::Error {
                err: zk::Error::NoNode,
            }) => Ok(None),
            Some(MultiReadResult::Error { err }) => Err(err),
            other => Err(zk::Error::UnexpectedError(format!(
                "multi-read answered {other:?}"
            ))),
        };
        let (holder, record) = (next()?, next()?);
        Ok((|| {
            let holder = match holder {
                Some((data, stat)) => Some((
                    serde_json::from_slice::<Holder>(&data)
                        .map_err(|e| self.ill_formed(&worker_path, e))?,
                    stat,
                )),
                None => None,
            };
            let record = match record {
                Some((data, stat)) => Some((self.id_record(&id_path, &data)?, stat.version)),
                None => None,
            };
            Ok((holder, record))
        })())
    }

    /// [`Self::read_id`] with every error as a [`RegistryError`].
    async fn read(
        &self,
        client: &Client,
        what: &str,
        namespace: &str,
        id: u32,
    ) -> Result<Read, RegistryError> {
        self.read_id(client, namespace, id)
            .await
            .map_err(|e| self.failed(what, e))?
    }

    /// The lease's session and Leaf node, if this registry holds the lease: `Err(Lost)` if the
    /// lease's key is held by another owner (someone presenting another owner's id and epoch).
    fn lease_client(
        &self,
        req: &LeaseRequest,
        lease: &Lease,
    ) -> Result<Option<(Client, Option<String>)>, RegistryError> {
        let leases = self.leases.lock();
        match leases.get(&(req.namespace.clone(), lease.id, lease.epoch)) {
            Some(held) if held.owner != lease.owner => Err(Self::lost(req, lease)),
            Some(held) => Ok(Some((held.client.clone(), held.leaf.clone()))),
            None => Ok(None),
        }
    }

    /// Remembers a lease's session.
    fn remember(&self, req: &LeaseRequest, lease: &Lease, client: Client, leaf: Option<String>) {
        self.leases.lock().insert(
            (req.namespace.clone(), lease.id, lease.epoch),
            LeaseSession {
                client,
                owner: lease.owner.clone(),
                leaf,
            },
        );
    }

    /// Forgets a lease (closing its session once the last clone is dropped).
    fn forget(&self, req: &LeaseRequest, lease: &Lease) {
        let mut leases = self.leases.lock();
        let key = (req.namespace.clone(), lease.id, lease.epoch);
        if leases.get(&key).is_some_and(|h| h.owner == lease.owner) {
            leases.remove(&key);
        }
    }

    /// Reads Leaf's forever directory: this endpoint's node, and the ids of the others.
    async fn scan_leaf(&self, client: &Client) -> Result<LeafScan, RegistryError> {
        let Some(leaf) = &self.leaf else {
            return Ok(LeafScan::default());
        };
        let children = match client.list_children(&leaf.forever).await {
            Ok(children) => children,
            Err(zk::Error::NoNode) => return Ok(LeafScan::default()),
            Err(e) => return Err(self.failed(&format!("listing {}", leaf.forever), e)),
        };
        let mut scan = LeafScan::default();
        let mut mine = Vec::new();
        for name in &children {
            // `{ip}:{port}-{10-digit sequence}`; the sequence is the worker id.
            let Some((endpoint, id)) = parse_leaf_name(name) else {
                continue; // not Leaf's, or beyond any pool
            };
            if endpoint == leaf.endpoint {
                mine.push((name.clone(), id));
            } else {
                scan.others.insert(id);
            }
        }
        if mine.len() > 1 {
            return Err(RegistryError::Config(format!(
                "Leaf has several nodes for endpoint {} under {} ({}); delete the stale ones so the endpoint's worker id is known",
                leaf.endpoint,
                leaf.forever,
                mine.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        if let Some((name, id)) = mine.pop() {
            let path = format!("{}/{name}", leaf.forever);
            let (data, _) = client
                .get_data(&path)
                .await
                .map_err(|e| self.failed(&format!("reading {path}"), e))?;
            let timestamp = serde_json::from_slice::<serde_json::Value>(&data)
                .ok()
                .and_then(|v| v.get("timestamp")?.as_u64())
                .ok_or_else(|| {
                    self.ill_formed(&path, "no numeric `timestamp` in Leaf's endpoint data")
                })?;
            scan.mine = Some((path, id, timestamp));
        }
        Ok(scan)
    }

    /// Leaf's data for this registry's endpoint with `timestamp` (Unix ms), as Leaf writes it
    /// (`port` a string).
    fn leaf_data(&self, timestamp: u64) -> Vec<u8> {
        let endpoint = self.leaf.as_ref().map_or("", |l| l.endpoint.as_str());
        let (ip, port) = endpoint.rsplit_once(':').unwrap_or((endpoint, ""));
        serde_json::to_vec(&serde_json::json!({"ip": ip, "port": port, "timestamp": timestamp}))
            .expect("Leaf's data serializes")
    }

    /// The Leaf node of a lease this registry has no session for (revived from elsewhere).
    async fn leaf_node_of(
        &self,
        client: &Client,
        id: u32,
    ) -> Result<Option<String>, RegistryError> {
        if self.leaf.is_none() {
            return Ok(None);
        }
        Ok(self
            .scan_leaf(client)
            .await?
            .mine
            .filter(|(_, mine, _)| *mine == id)
            .map(|(path, _, _)| path))
    }

    /// Claims `id` if free; `Ok(None)` on a lost race. `floor`, Leaf's stored timestamp of the
    /// id, raises the previous mark (see [`leaf_floor`]).
    async fn try_claim(
        &self,
        client: &Client,
        req: &LeaseRequest,
        id: u32,
        floor: Option<u64>,
    ) -> Result<Option<Lease>, RegistryError> {
        let (id_path, worker_path) = self.paths(&req.namespace, id);
        let current = match client.get_data(&id_path).await {
            Ok((data, stat)) => Some((self.id_record(&id_path, &data)?, stat.version)),
            Err(zk::Error::NoNode) => None,
            Err(e) => return Err(self.failed("acquire", e)),
        };
        let record = IdRecord {
            epoch: current.map_or(1, |(r, _)| r.epoch + 1),
            high_water_ms: current.and_then(|(r, _)| r.high_water_ms),
        };
        let holder = Holder {
            owner: req.owner.clone(),
            epoch: record.epoch,
        };
        let record_json = serde_json::to_vec(&record).expect("an id record serializes");
        let holder_json = serde_json::to_vec(&holder).expect("a holder serializes");
        let mut writer = client.new_multi_writer();
        let built = match current {
            Some((_, version)) => writer.add_set_data(&id_path, &record_json, Some(version)),
            None => writer.add_create(
                &id_path,
                &record_json,
                &CreateMode::Persistent.with_acls(self.acls()),
            ),
        }
        .and_then(|()| {
            writer.add_create(
                &worker_path,
                &holder_json,
                &CreateMode::Ephemeral.with_acls(self.acls()),
            )
        });
        built.map_err(|e| self.failed("acquire", e))?;
        match writer.commit().await {
            Ok(_) => Ok(Some(Lease {
                id,
                owner: req.owner.clone(),
                epoch: record.epoch,
                previous_high_water_ms: record
                    .high_water_ms
                    .max(floor.map(|ts| leaf_floor(ts, record.high_water_ms))),
            })),
            Err(MultiWriteError::OperationFailed {
                source: zk::Error::NodeExists | zk::Error::BadVersion,
                ..
            }) => Ok(None),
            Err(e) => Err(self.failed("acquire", e)),
        }
    }

    /// Acquires within the call timeout.
    async fn acquire_bounded(&self, req: &LeaseRequest) -> Result<Lease, RegistryError> {
        let client = self.lease_session(req).await?;
        self.make_dirs(&client, &req.namespace).await?;
        let scan = self.scan_leaf(&client).await?;
        if let Some((path, id, timestamp)) = scan.mine {
            // This endpoint ran Leaf: its id is the Leaf node's sequence, nothing else.
            if id >= req.pool_size {
                return Err(RegistryError::Config(format!(
                    "Leaf node {path} gives this endpoint worker id {id}, outside the pool 0..{}; widen the layout's node field(s) to Leaf's",
                    req.pool_size
                )));
            }
            return match self.try_claim(&client, req, id, Some(timestamp)).await? {
                Some(lease) => {
                    self.remember(req, &lease, client, Some(path));
                    Ok(lease)
                }
                None => Err(RegistryError::Unavailable {
                    store: self.shown.clone(),
                    what: format!(
                        "worker id {id} of Leaf endpoint {} ({path}) is held by another live Floe lease; it frees when that holder's session expires (within its ttl): is another node configured with this endpoint?",
                        self.leaf.as_ref().map_or("", |l| l.endpoint.as_str())
                    ),
                    source: None,
                }),
            };
        }
        let workers = self.workers_dir(&req.namespace);
        let mut taken: HashSet<u32> = client
            .list_children(&workers)
            .await
            .map_err(|e| self.failed(&format!("listing {workers}"), e))?
            .iter()
            .filter_map(|name| name.parse().ok())
            .collect();
        // Ids Leaf gave other endpoints stay theirs.
        taken.extend(scan.others);
        for id in (0..req.pool_size).filter(|id| !taken.contains(id)) {
            if let Some(lease) = self.try_claim(&client, req, id, None).await? {
                self.remember(req, &lease, client, None);
                return Ok(lease);
            }
        }
        Err(RegistryError::Exhausted {
            namespace: req.namespace.clone(),
            pool_size: req.pool_size,
        })
    }

    /// Renews through the lease's own live session.
    async fn renew_live(
        &self,
        client: &Client,
        leaf: Option<&str>,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Check {
        let (id_path, _) = self.paths(&req.namespace, lease.id);
        for _ in 0..CAS_TRIES {
            let (holder, record) = match self.read_id(client, &req.namespace, lease.id).await {
                Ok(Ok(read)) => read,
                Ok(Err(e)) => return Check::Done(Err(e)),
                Err(zk::Error::SessionExpired | zk::Error::ClientClosed) => return Check::Dead,
                Err(e) => return Check::Done(Err(self.failed("renew", e))),
            };
            let Some((holder, stat)) = holder else {
                return Check::Dead;
            };
            if holder.owner != lease.owner
                || holder.epoch != lease.epoch
                || stat.ephemeral_owner != client.session_id().0
            {
                return Check::Done(Err(Self::lost(req, lease)));
            }
            let Some((record, version)) = record.filter(|(r, _)| r.epoch == lease.epoch) else {
                return Check::Done(Err(Self::lost(req, lease)));
            };
            if record.high_water_ms.is_some_and(|hw| hw >= high_water_ms) {
                return Check::Done(Ok(()));
            }
            let raised = IdRecord {
                high_water_ms: Some(high_water_ms),
                ..record
            };
            let json = serde_json::to_vec(&raised).expect("an id record serializes");
            let mut writer = client.new_multi_writer();
            let built = writer
                .add_set_data(&id_path, &json, Some(version))
                .and_then(|()| match leaf {
                    Some(path) => writer.add_set_data(path, &self.leaf_data(high_water_ms), None),
                    None => Ok(()),
                });
            if let Err(e) = built {
                return Check::Done(Err(self.failed("renew", e)));
            }
            match writer.commit().await {
                Ok(_) => return Check::Done(Ok(())),
                Err(MultiWriteError::OperationFailed {
                    source: zk::Error::BadVersion,
                    ..
                }) => continue,
                Err(MultiWriteError::RequestFailed {
                    source: zk::Error::SessionExpired | zk::Error::ClientClosed,
                }) => return Check::Dead,
                Err(e) => return Check::Done(Err(self.failed("renew", e))),
            }
        }
        Check::Done(Err(Self::lost(req, lease)))
    }

    /// Renews a lease whose session is gone: if nobody took the id meanwhile, re-creates the
    /// workers node under a new session (same epoch), raising the mark in the same multi-op.
    async fn revive(
        &self,
        req: &LeaseRequest,
        lease: &Lease,
        leaf: Option<String>,
        high_water_ms: u64,
    ) -> Result<(), RegistryError> {
        let shared = self.shared().await?;
        let (holder, record) = self
            .read(&shared, "renew", &req.namespace, lease.id)
            .await?;
        if holder.is_some() {
            return Err(Self::lost(req, lease));
        }
        let Some((record, version)) = record.filter(|(r, _)| r.epoch == lease.epoch) else {
            return Err(Self::lost(req, lease));
        };
        let leaf = match leaf {
            Some(path) => Some(path),
            None => self.leaf_node_of(&shared, lease.id).await?,
        };
        let client = self.lease_session(req).await?;
        let (id_path, worker_path) = self.paths(&req.namespace, lease.id);
        let mark = record.high_water_ms.unwrap_or(0).max(high_water_ms);
        let raised = IdRecord {
            high_water_ms: Some(mark),
            ..record
        };
        let record_json = serde_json::to_vec(&raised).expect("an id record serializes");
        let holder_json = serde_json::to_vec(&Holder {
            owner: lease.owner.clone(),
            epoch: lease.epoch,
        })
        .expect("a holder serializes");
        let mut writer = client.new_multi_writer();
        writer
            .add_set_data(&id_path, &record_json, Some(version))
            .and_then(|()| {
                writer.add_create(
                    &worker_path,
                    &holder_json,
                    &CreateMode::Ephemeral.with_acls(self.acls()),
                )
            })
            .and_then(|()| match &leaf {
                Some(path) => writer.add_set_data(path, &self.leaf_data(mark), None),
                None => Ok(()),
            })
            .map_err(|e| self.failed("renew", e))?;
        match writer.commit().await {
            Ok(_) => {
                self.remember(req, lease, client, leaf);
                Ok(())
            }
            Err(MultiWriteError::OperationFailed {
                source: zk::Error::NodeExists | zk::Error::BadVersion | zk::Error::NoNode,
                ..
            }) => Err(Self::lost(req, lease)),
            Err(e) => Err(self.failed("renew", e)),
        }
    }

    /// Releases: deletes the workers node (if the session still holds it) and bumps the epoch
    /// with the exact final mark, in one multi-op (with Leaf's timestamp, for a Leaf id).
    async fn release_checked(
        &self,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError> {
        let known = self.lease_client(req, lease)?;
        let mut leaf = known.as_ref().and_then(|(_, leaf)| leaf.clone());
        let mut own = known
            .map(|(client, _)| client)
            .filter(|c| !c.state().is_terminated());
        let (id_path, worker_path) = self.paths(&req.namespace, lease.id);
        for _ in 0..CAS_TRIES {
            let client = match &own {
                Some(client) => client.clone(),
                None => self.shared().await?,
            };
            let (holder, record) = match self.read_id(&client, &req.namespace, lease.id).await {
                Err(zk::Error::SessionExpired | zk::Error::ClientClosed) if own.is_some() => {
                    // The lease's session ended under us: check through the shared one.
                    own = None;
                    continue;
                }
                other => other.map_err(|e| self.failed("release", e))??,
            };
            let Some((record, version)) = record.filter(|(r, _)| r.epoch == lease.epoch) else {
                return Err(Self::lost(req, lease));
            };
            if leaf.is_none() {
                leaf = self.leaf_node_of(&client, lease.id).await?;
            }
            let mut writer = client.new_multi_writer();
            let final_record = IdRecord {
                epoch: record.epoch + 1,
                high_water_ms: Some(high_water_ms),
            };
            let json = serde_json::to_vec(&final_record).expect("an id record serializes");
            writer
                .add_set_data(&id_path, &json, Some(version))
                .and_then(|()| match &leaf {
                    Some(path) => writer.add_set_data(path, &self.leaf_data(high_water_ms), None),
                    None => Ok(()),
                })
                .map_err(|e| self.failed("release", e))?;
            if let Some((holder, stat)) = holder {
                let session = own.as_ref().map(|c| c.session_id().0);
                if holder.owner != lease.owner
                    || holder.epoch != lease.epoch
                    || Some(stat.ephemeral_owner) != session
                {
                    return Err(Self::lost(req, lease));
                }
                writer
                    .add_delete(&worker_path, Some(stat.version))
                    .map_err(|e| self.failed("release", e))?;
            }
            match writer.commit().await {
                Ok(_) => {
                    self.forget(req, lease);
                    return Ok(());
                }
                Err(MultiWriteError::OperationFailed {
                    source: zk::Error::BadVersion | zk::Error::NoNode,
                    ..
                }) => continue,
                Err(MultiWriteError::RequestFailed {
                    source: zk::Error::SessionExpired | zk::Error::ClientClosed,
                }) if own.is_some() => {
                    own = None;
                    continue;
                }
                Err(e) => return Err(self.failed("release", e)),
            }
        }
        Err(Self::lost(req, lease))
    }
}

#[async_trait]
impl WorkerRegistry for ZookeeperRegistry {
    async fn acquire(&self, req: &LeaseRequest) -> Result<Lease, RegistryError> {
        req.validate()?;
        self.check_namespace(&req.namespace)?;
        self.run(self.acquire_bounded(req)).await
    }

    async fn renew(
        &self,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError> {
        req.validate()?;
        self.check_namespace(&req.namespace)?;
        let result = self
            .run(async {
                let mut leaf = None;
                if let Some((client, node)) = self.lease_client(req, lease)? {
                    if !client.state().is_terminated() {
                        if let Check::Done(result) = self
                            .renew_live(&client, node.as_deref(), req, lease, high_water_ms)
                            .await
                        {
                            return result;
                        }
                    }
                    leaf = node;
                }
                self.revive(req, lease, leaf, high_water_ms).await
            })
            .await;
        if matches!(result, Err(RegistryError::Lost { .. })) {
            self.forget(req, lease);
        }
        result
    }

    async fn release(
        &self,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError> {
        req.validate()?;
        self.check_namespace(&req.namespace)?;
        let result = self
            .run(self.release_checked(req, lease, high_water_ms))
            .await;
        if matches!(result, Err(RegistryError::Lost { .. })) {
            self.forget(req, lease);
        }
        result
    }

    async fn list(&self, req: &LeaseRequest) -> Result<Vec<WorkerSlot>, RegistryError> {
        req.validate()?;
        self.check_namespace(&req.namespace)?;
        self.run(async {
            let client = self.shared().await?;
            let dir = self.ids_dir(&req.namespace);
            let mut ids: Vec<u32> = match client.list_children(&dir).await {
                Ok(names) => names
                    .iter()
                    .filter_map(|name| name.parse::<u32>().ok())
                    .filter(|id| *id < req.pool_size)
                    .collect(),
                Err(zk::Error::NoNode) => Vec::new(),
                Err(e) => return Err(self.failed(&format!("listing {dir}"), e)),
            };
            ids.sort_unstable();
            ids.truncate(MAX_LISTED);
            let mut slots = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(LIST_CHUNK) {
                let mut reader = client.new_multi_reader();
                for id in chunk {
                    let (id_path, worker_path) = self.paths(&req.namespace, *id);
                    reader
                        .add_get_data(&id_path)
                        .and_then(|()| reader.add_get_data(&worker_path))
                        .map_err(|e| self.failed("listing ids", e))?;
                }
                let results = reader
                    .commit()
                    .await
                    .map_err(|e| self.failed("listing ids", e))?;
                let mut results = results.into_iter();
                for id in chunk {
                    let (id_path, worker_path) = self.paths(&req.namespace, *id);
                    let record = match results.next() {
                        Some(MultiReadResult::Data { data, .. }) => {
                            Some(self.id_record(&id_path, &data)?)
                        }
                        _ => None, // deleted since the listing
                    };
                    let holder = match results.next() {
                        Some(MultiReadResult::Data { data, .. }) => Some(
                            serde_json::from_slice::<Holder>(&data)
                                .map_err(|e| self.ill_formed(&worker_path, e))?,
                        ),
                        _ => None,
                    };
                    let Some(record) = record else { continue };
                    let expires_in_ms = holder.as_ref().map(|h| {
                        let own = self
                            .leases
                            .lock()
                            .get(&(req.namespace.clone(), *id, h.epoch))
                            .map(|s| s.client.session_timeout());
                        i64::try_from(own.unwrap_or(req.ttl).as_millis()).unwrap_or(i64::MAX)
                    });
                    slots.push(WorkerSlot {
                        worker_id: *id,
                        held: holder.is_some(),
                        owner: holder.map(|h| h.owner),
                        epoch: record.epoch,
                        expires_in_ms,
                        high_water_ms: record.high_water_ms,
                    });
                }
            }
            Ok(slots)
        })
        .await
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::super::RegistryConfig;
    use super::*;

    fn refused(config: ZookeeperConfig, needle: &str) {
        match ZookeeperRegistry::new(&config) {
            Err(RegistryError::Config(msg)) => assert!(msg.contains(needle), "{msg}"),
            other => panic!("expected Config containing `{needle}`, got {other:?}"),
        }
    }

    #[test]
    fn config_is_checked_without_io() {
        let ok = ZookeeperConfig::new("10.0.0.1:2181,10.0.0.2:2181");
        let reg = ZookeeperRegistry::new(&ok).unwrap();
        assert_eq!(
            reg.describe(),
            "zookeeper at 10.0.0.1:2181,10.0.0.2:2181/floe"
        );
        let opened = RegistryConfig::Zookeeper(ok.clone())
            .open(|_| None)
            .unwrap();
        assert!(opened.leases_expire());
        refused(ZookeeperConfig::new(""), "connect string");
        refused(ZookeeperConfig::new("zk1"), "host:port");
        for root in ["floe", "/", "/floe/", "/a//b", "/a/../b"] {
            refused(
                ZookeeperConfig {
                    root: root.to_string(),
                    ..ok.clone()
                },
                "zookeeper root",
            );
        }
        refused(
            ZookeeperConfig {
                auth: Some("nopassword".to_string()),
                ..ok.clone()
            },
            "user:password",
        );
        refused(
            ZookeeperConfig {
                endpoint: Some("10.0.0.3:8080".to_string()),
                ..ok.clone()
            },
            "go together",
        );
        refused(
            ZookeeperConfig {
                leaf_name: Some("leaf".to_string()),
                endpoint: Some("host-1:8080".to_string()),
                ..ok.clone()
            },
            "endpoint",
        );
        ZookeeperRegistry::new(&ZookeeperConfig {
            leaf_name: Some("com.sankuai.leaf.opensource.test".to_string()),
            endpoint: Some("10.0.0.3:8080".to_string()),
            ..ok
        })
        .unwrap();
    }

    #[tokio::test]
    async fn namespace_must_be_a_path_segment() {
        let reg = ZookeeperRegistry::new(&ZookeeperConfig::new("127.0.0.1:1")).unwrap();
        let e = reg
            .acquire(&LeaseRequest::new("a/b", 4, DEFAULT_TTL))
            .await
            .unwrap_err();
        assert!(matches!(e, RegistryError::Config(_)), "{e}");
    }
}
