//! Reclaiming the worker ids a Meituan Leaf cluster burned.
//!
//! Leaf's `SnowflakeZookeeperHolder` creates one PERSISTENT_SEQUENTIAL node per endpoint that
//! ever ran, `/snowflake/{leaf_name}/forever/{ip}:{port}-{sequence}`, and never deletes it: with
//! pods that get new addresses, every pod that ever ran keeps one of the 1,024 worker ids, and a
//! Floe registry that takes over the cluster (see [the registry's documentation](super)) keeps
//! off all of them. [`list_leaf_nodes`] shows them; [`reclaim_leaf_nodes`] deletes the idle ones.
//!
//! A node is deleted only when all of these hold:
//!
//! - its stored `timestamp` (Leaf's last upload, or Floe's last mark) is older than `idle`
//!   by this machine's clock: a live Leaf process uploads it every 3 s;
//! - no live Floe lease (a `{root}/{namespace}/workers/{id}` node) holds its id;
//! - its endpoint is not the config's own `endpoint`;
//! - it is unchanged since it was read: the delete is checked against the Stat version read,
//!   so a Leaf or Floe process that wrote its timestamp meanwhile keeps it.
//!
//! The delete is one multi-op with a compare-and-set on Floe's `{root}/{namespace}/ids/{id}`
//! node, which it creates (epoch 0) if missing and whose `high_water_ms` it raises past the Leaf
//! node's timestamp (by Leaf's 3 s upload delay, as a takeover does, unless Floe wrote the node
//! last): the next Floe node leasing the id starts after Leaf's last IDs, and a Floe
//! node that takes or releases the id between the check and the delete (any grant or release
//! writes that node) makes the delete fail, and the node is kept.
//!
//! A freed id is Floe's from then on: Leaf's sequence counter never hands it out again, but a
//! Leaf process started on a *new* endpoint gets a fresh sequence that Floe does not know about
//! (the registry's rule: migrate one way).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zookeeper_client as zk;
use zookeeper_client::{Client, CreateMode, MultiReadResult, MultiWriteError};

use super::{
    bounded, check_endpoint, check_leaf_name, leaf_floor, leaf_forever, parse_leaf_name, Holder,
    IdRecord, RegistryError, ZookeeperConfig, ZookeeperRegistry, DEFAULT_TTL, LIST_CHUNK,
};

/// One of Leaf's nodes under `/snowflake/{leaf_name}/forever/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafNode {
    /// The node's name, `{ip}:{port}-{10-digit sequence}`.
    pub name: String,
    /// Its full path.
    pub path: String,
    /// `ip:port`.
    pub endpoint: String,
    /// The sequence: the endpoint's worker id.
    pub worker_id: u32,
    /// The stored `timestamp` (Unix ms); `None` if the data has no numeric one.
    pub timestamp_ms: Option<u64>,
    /// The node's Stat version (how many times its data was written).
    pub version: i32,
    /// The node's Stat mtime: when its data was last written, by the ZooKeeper server's clock
    /// (Unix ms).
    pub mtime_ms: i64,
    /// The owner of the live Floe lease on this worker id in the namespace asked about, if any
    /// (`None` as well when no namespace was asked about).
    pub floe_holder: Option<String>,
}

/// Why [`reclaim_leaf_nodes`] kept a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// The node is the config's own `endpoint`: a Floe node there takes its id over.
    OwnEndpoint,
    /// The data has no numeric `timestamp`, so how long the node has been idle is unknown.
    NoTimestamp,
    /// The stored timestamp is within `idle` of now (`age_ms` below zero: ahead of this clock).
    Recent {
        /// Now minus the stored timestamp.
        age_ms: i64,
        /// The idle time asked for.
        idle: Duration,
    },
    /// A live Floe lease holds the id in the namespace.
    HeldByFloe {
        /// The lease's owner token.
        owner: String,
    },
    /// The node or the id changed between the read and the delete; another run decides again.
    Changed(String),
    /// The delete failed (or was not tried after an earlier failure).
    Failed(String),
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kept::OwnEndpoint => f.write_str("it is this node's own endpoint"),
            Kept::NoTimestamp => {
                f.write_str("its data has no numeric timestamp, so its age is unknown")
            }
            Kept::Recent { age_ms, .. } if *age_ms < 0 => write!(
                f,
                "its timestamp is {} ahead of this clock",
                humantime::format_duration(whole_seconds(age_ms.unsigned_abs()))
            ),
            Kept::Recent { age_ms, idle } => write!(
                f,
                "its timestamp is only {} old, within the idle time of {}",
                humantime::format_duration(whole_seconds(age_ms.unsigned_abs())),
                humantime::format_duration(*idle)
            ),
            Kept::HeldByFloe { owner } => {
                write!(f, "a live Floe lease holds its id (owner {owner})")
            }
            Kept::Changed(what) | Kept::Failed(what) => f.write_str(what),
        }
    }
}

/// What to reclaim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReclaimOptions {
    /// The Floe namespace whose live leases keep their ids (`registry.namespace`).
    pub namespace: String,
    /// Delete only nodes whose stored timestamp is older than this.
    pub idle: Duration,
    /// Only report what would be deleted.
    pub dry_run: bool,
}

/// What [`reclaim_leaf_nodes`] did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReclaimReport {
    /// The namespace checked for live leases.
    pub namespace: String,
    /// Whether nothing was deleted: `deleted` then lists what would be.
    pub dry_run: bool,
    /// The nodes deleted, in worker-id order.
    pub deleted: Vec<LeafNode>,
    /// The nodes kept, with why, in worker-id order.
    pub kept: Vec<(LeafNode, Kept)>,
}

/// Lists Leaf's nodes of `config.leaf_name`, in worker-id order; with `namespace`, each with the
/// owner of the live Floe lease on its id in `config.root`'s namespace, if any.
///
/// [`RegistryError::Config`] if `leaf_name` is missing or Leaf has no such cluster (no
/// `/snowflake/{leaf_name}/forever`); [`RegistryError::Unavailable`] if ZooKeeper does not answer
/// within `config.call_timeout` (connecting, and each call after).
pub async fn list_leaf_nodes(
    config: &ZookeeperConfig,
    namespace: Option<&str>,
) -> Result<Vec<LeafNode>, RegistryError> {
    let admin = LeafAdmin::new(config)?;
    if let Some(ns) = namespace {
        admin.reg.check_namespace(ns)?;
    }
    let client = admin.connect().await?;
    admin.list(&client, namespace).await
}

/// Deletes Leaf's idle nodes (see [the module documentation](self) for which), or with
/// `dry_run` only reports which it would delete.
///
/// Errors as [`list_leaf_nodes`]; a failure after the listing ends the run with the nodes left
/// as [`Kept::Failed`], so the report still says what was deleted before it.
pub async fn reclaim_leaf_nodes(
    config: &ZookeeperConfig,
    options: &ReclaimOptions,
) -> Result<ReclaimReport, RegistryError> {
    let plan = plan_reclaim(config, options).await?;
    if options.dry_run {
        return Ok(plan);
    }
    apply_reclaim(config, plan).await
}

/// The dry run of [`reclaim_leaf_nodes`]: what it would delete, and what it keeps and why.
pub async fn plan_reclaim(
    config: &ZookeeperConfig,
    options: &ReclaimOptions,
) -> Result<ReclaimReport, RegistryError> {
    let admin = LeafAdmin::new(config)?;
    admin.reg.check_namespace(&options.namespace)?;
    let client = admin.connect().await?;
    let nodes = admin.list(&client, Some(&options.namespace)).await?;
    let now = unix_ms();
    let idle_ms = i64::try_from(options.idle.as_millis()).unwrap_or(i64::MAX);
    let mut report = ReclaimReport {
        namespace: options.namespace.clone(),
        dry_run: true,
        deleted: Vec::new(),
        kept: Vec::new(),
    };
    for node in nodes {
        let reason = if admin.endpoint.as_deref() == Some(node.endpoint.as_str()) {
            Some(Kept::OwnEndpoint)
        } else if let Some(owner) = &node.floe_holder {
            Some(Kept::HeldByFloe {
                owner: owner.clone(),
            })
        } else {
            match node.timestamp_ms {
                None => Some(Kept::NoTimestamp),
                Some(ts) => {
                    let age_ms = now - i64::try_from(ts).unwrap_or(i64::MAX);
                    (age_ms <= idle_ms).then_some(Kept::Recent {
                        age_ms,
                        idle: options.idle,
                    })
                }
            }
        };
        match reason {
            Some(reason) => report.kept.push((node, reason)),
            None => report.deleted.push(node),
        }
    }
    Ok(report)
}

/// Deletes the nodes a [`plan_reclaim`] would delete, each only if it is unchanged since the
/// plan read it (its Stat version) and no Floe node took or released its id since.
pub async fn apply_reclaim(
    config: &ZookeeperConfig,
    plan: ReclaimReport,
) -> Result<ReclaimReport, RegistryError> {
    let admin = LeafAdmin::new(config)?;
    let ns = plan.namespace.clone();
    admin.reg.check_namespace(&ns)?;
    let mut report = ReclaimReport {
        dry_run: false,
        deleted: Vec::new(),
        ..plan
    };
    if plan.deleted.is_empty() {
        return Ok(report);
    }
    let client = admin.connect().await?;
    // The ids nodes of the freed ids go under Floe's directories, as an acquire would make them.
    admin.step(admin.reg.make_dirs(&client, &ns)).await?;
    let mut failed: Option<String> = None;
    for node in plan.deleted {
        if let Some(first) = &failed {
            let why = format!("not tried after an earlier failure: {first}");
            report.kept.push((node, Kept::Failed(why)));
            continue;
        }
        match admin.step(admin.delete(&client, &ns, &node)).await {
            Ok(None) => report.deleted.push(node),
            Ok(Some(reason)) => report.kept.push((node, reason)),
            Err(e) => {
                failed = Some(e.to_string());
                report.kept.push((node, Kept::Failed(e.to_string())));
            }
        }
    }
    report.kept.sort_by_key(|(node, _)| node.worker_id);
    Ok(report)
}

/// Whole seconds of `ms`, for ages (milliseconds are noise there).
fn whole_seconds(ms: u64) -> Duration {
    Duration::from_secs(ms / 1000)
}

/// This machine's clock, Unix ms.
fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A checked config and the paths of one Leaf cluster.
struct LeafAdmin {
    /// The registry for Floe's nodes (no takeover: only its helpers are used).
    reg: ZookeeperRegistry,
    /// `leaf.name`.
    name: String,
    /// `/snowflake/{name}/forever`.
    forever: String,
    /// The config's own endpoint, never deleted.
    endpoint: Option<String>,
}

impl LeafAdmin {
    fn new(config: &ZookeeperConfig) -> Result<LeafAdmin, RegistryError> {
        let name = config.leaf_name.clone().ok_or_else(|| {
            RegistryError::Config(
                "zookeeper leaf_name is required to list or reclaim Leaf's nodes".to_string(),
            )
        })?;
        check_leaf_name(&name)?;
        if let Some(endpoint) = &config.endpoint {
            check_endpoint(endpoint)?;
        }
        // The registry's own checks of the connect string, root, timeout and auth; without
        // the takeover, which wants leaf_name and endpoint together.
        let reg = ZookeeperRegistry::new(&ZookeeperConfig {
            leaf_name: None,
            endpoint: None,
            ..config.clone()
        })?;
        Ok(LeafAdmin {
            reg,
            forever: leaf_forever(&name),
            name,
            endpoint: config.endpoint.clone(),
        })
    }

    /// Bounds one step by the call timeout.
    async fn step<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        bounded(self.reg.call_timeout, &self.reg.shown, call).await
    }

    /// A session of our own, closed when the last clone is dropped.
    async fn connect(&self) -> Result<Client, RegistryError> {
        self.step(self.reg.session(DEFAULT_TTL)).await
    }

    /// The nodes, read in multi-reads of [`LIST_CHUNK`] nodes.
    async fn list(
        &self,
        client: &Client,
        namespace: Option<&str>,
    ) -> Result<Vec<LeafNode>, RegistryError> {
        let children = self
            .step(async {
                match client.list_children(&self.forever).await {
                    Ok(children) => Ok(children),
                    Err(zk::Error::NoNode) => Err(RegistryError::Config(format!(
                        "no Leaf cluster named `{}` at zookeeper {}: {} does not exist (leaf_name is Leaf's leaf.name)",
                        self.name, self.reg.connect, self.forever
                    ))),
                    Err(e) => Err(self.reg.failed(&format!("listing {}", self.forever), e)),
                }
            })
            .await?;
        let mut named: Vec<(String, String, u32)> = children
            .iter()
            .filter_map(|name| {
                let (endpoint, id) = parse_leaf_name(name)?;
                Some((name.clone(), endpoint.to_string(), id))
            })
            .collect();
        named.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
        let mut nodes = Vec::with_capacity(named.len());
        for chunk in named.chunks(LIST_CHUNK) {
            let results = self
                .step(async {
                    let mut reader = client.new_multi_reader();
                    for (name, _, id) in chunk {
                        reader
                            .add_get_data(&format!("{}/{name}", self.forever))
                            .map_err(|e| self.reg.failed("listing Leaf's nodes", e))?;
                        if let Some(ns) = namespace {
                            let (_, worker_path) = self.reg.paths(ns, *id);
                            reader
                                .add_get_data(&worker_path)
                                .map_err(|e| self.reg.failed("listing Leaf's nodes", e))?;
                        }
                    }
                    reader
                        .commit()
                        .await
                        .map_err(|e| self.reg.failed("reading Leaf's nodes", e))
                })
                .await?;
            let mut results = results.into_iter();
            for (name, endpoint, id) in chunk {
                let path = format!("{}/{name}", self.forever);
                let leaf = match results.next() {
                    Some(MultiReadResult::Data { data, stat }) => Some((data, stat)),
                    Some(MultiReadResult::Error {
                        err: zk::Error::NoNode,
                    }) => None, // deleted since the listing
                    Some(MultiReadResult::Error { err }) => {
                        return Err(self.reg.failed(&format!("reading {path}"), err))
                    }
                    other => {
                        return Err(self.reg.failed(
                            &format!("reading {path}"),
                            zk::Error::UnexpectedError(format!("multi-read answered {other:?}")),
                        ))
                    }
                };
                // Any workers node keeps Floe off the id, whoever wrote it.
                let floe_holder = match namespace.map(|_| results.next()) {
                    Some(Some(MultiReadResult::Data { data, .. })) => Some(
                        serde_json::from_slice::<Holder>(&data)
                            .map_or_else(|_| "(not Floe's data)".to_string(), |h| h.owner),
                    ),
                    _ => None,
                };
                let Some((data, stat)) = leaf else { continue };
                let timestamp_ms = serde_json::from_slice::<serde_json::Value>(&data)
                    .ok()
                    .and_then(|v| v.get("timestamp")?.as_u64());
                nodes.push(LeafNode {
                    name: name.clone(),
                    path,
                    endpoint: endpoint.clone(),
                    worker_id: *id,
                    timestamp_ms,
                    version: stat.version,
                    mtime_ms: stat.mtime,
                    floe_holder,
                });
            }
        }
        Ok(nodes)
    }

    /// Deletes one node if it and its id are as planned: `Ok(Some(why))` when kept.
    async fn delete(
        &self,
        client: &Client,
        namespace: &str,
        node: &LeafNode,
    ) -> Result<Option<Kept>, RegistryError> {
        let id = node.worker_id;
        let (holder, record) = self
            .reg
            .read(client, &format!("reading worker id {id}"), namespace, id)
            .await?;
        if let Some((holder, _)) = holder {
            return Ok(Some(Kept::HeldByFloe {
                owner: holder.owner,
            }));
        }
        let Some(timestamp) = node.timestamp_ms else {
            return Ok(Some(Kept::NoTimestamp));
        };
        let (id_path, _) = self.reg.paths(namespace, id);
        let mut writer = client.new_multi_writer();
        let built = match record {
            Some((record, version)) => {
                let floor = leaf_floor(timestamp, record.high_water_ms);
                let raised = IdRecord {
                    high_water_ms: Some(record.high_water_ms.unwrap_or(0).max(floor)),
                    ..record
                };
                let json = serde_json::to_vec(&raised).expect("an id record serializes");
                writer.add_set_data(&id_path, &json, Some(version))
            }
            None => {
                // Epoch 0: no grant yet; the first acquire makes it 1, as on a missing node.
                let fresh = IdRecord {
                    epoch: 0,
                    high_water_ms: Some(leaf_floor(timestamp, None)),
                };
                let json = serde_json::to_vec(&fresh).expect("an id record serializes");
                writer.add_create(
                    &id_path,
                    &json,
                    &CreateMode::Persistent.with_acls(self.reg.acls()),
                )
            }
        }
        .and_then(|()| writer.add_delete(&node.path, Some(node.version)));
        built.map_err(|e| self.reg.failed(&format!("deleting {}", node.path), e))?;
        match writer.commit().await {
            Ok(_) => Ok(None),
            Err(MultiWriteError::OperationFailed {
                index: 0,
                source: zk::Error::BadVersion | zk::Error::NodeExists | zk::Error::NoNode,
            }) => Ok(Some(Kept::Changed(format!(
                "a Floe node took or released worker id {id} while it was being freed"
            )))),
            Err(MultiWriteError::OperationFailed {
                source: zk::Error::BadVersion,
                ..
            }) => Ok(Some(Kept::Changed(format!(
                "it was written since it was read (version {} then): a live Leaf or Floe process updates it",
                node.version
            )))),
            Err(MultiWriteError::OperationFailed {
                source: zk::Error::NoNode,
                ..
            }) => Ok(Some(Kept::Changed(
                "someone else deleted it meanwhile".to_string(),
            ))),
            Err(e) => Err(self.reg.failed(&format!("deleting {}", node.path), e)),
        }
    }
}
