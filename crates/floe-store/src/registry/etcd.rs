//! Worker ids leased from etcd: each grant is a key bound to an etcd **lease**, created by a
//! transaction that succeeds only while the key does not exist; renewals are lease keep-alives.
//!
//! Keys, per namespace and id (`{prefix}` defaults to `/floe`):
//!
//! | key | value | bound to a lease |
//! |---|---|---|
//! | `{prefix}/{namespace}/worker/{id}` | owner token of the live holder | yes, ttl = the lease ttl |
//! | `{prefix}/{namespace}/grant/{id}` | owner token of the last grant, empty once released | no |
//! | `{prefix}/{namespace}/hw/{id}` | highest high-water mark stored (Unix ms) | no |
//!
//! The fencing epoch is the etcd revision of the grant: the `mod_revision` of the `grant` key,
//! written in the same transaction that creates the `worker` key. etcd revisions only grow, so a
//! later grant or a release (which rewrites the `grant` key) always has a higher epoch, and every
//! renewal and release compares it. Expiry runs on etcd's clock: the lease lapses `ttl` after the
//! last keep-alive the leader received, and etcd deletes the `worker` key with it. etcd grants
//! leases in whole seconds and never below 1.5 election timeouts, so the store may keep an id a
//! little longer than the configured ttl — never shorter, which is what fencing needs (the node
//! stops issuing at its last successful renewal + ttl − margin).
//!
//! Every call goes through Raft, so a grant survives the loss of a minority of members, leader
//! included: a renewal or claim in flight when the leader dies either committed or fails, and the
//! next call goes to the new leader (`require_leader`, so a member cut off from the others
//! refuses instead of answering from a stale copy).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use tokio::sync::Mutex;

use super::{bounded, Lease, LeaseRequest, RegistryError, WorkerRegistry, WorkerSlot, MAX_LISTED};

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "/floe";
/// Default endpoint: a local etcd.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";
/// Time-to-live calls [`WorkerRegistry::list`] has in flight at once.
const TTL_QUERIES_AT_ONCE: usize = 64;
/// Pause before looking again when a lease lapsed between a read and its keep-alive: etcd
/// deletes the lease's keys right after, and a claim waits for that.
const LAPSE_RETRY: Duration = Duration::from_millis(50);

/// Files for TLS to etcd (`https://` endpoints).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EtcdTls {
    /// PEM file of the CA that signed the members' certificates (etcd clusters run on a
    /// private CA; required for `https://` endpoints).
    pub ca_file: Option<String>,
    /// PEM certificate and key of this client, when etcd requires client certificates.
    pub cert_file: Option<String>,
    /// See `cert_file`.
    pub key_file: Option<String>,
    /// Name the members' certificates carry, when it is not the endpoint's host.
    pub domain: Option<String>,
}

/// Where and how to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Members to talk to, `http://host:port` or `https://host:port`; the client balances
    /// between them and moves on when one fails.
    pub endpoints: Vec<String>,
    /// First part of every key.
    pub key_prefix: String,
    /// etcd user and password, when authentication is enabled.
    pub user: Option<(String, String)>,
    /// TLS files; required for `https://` endpoints with a private CA.
    pub tls: Option<EtcdTls>,
    /// Bound on each call (connecting included).
    pub call_timeout: Duration,
}

impl EtcdConfig {
    /// The defaults for `endpoints`: prefix `/floe`, no auth, no TLS, call timeout 2 s.
    pub fn new(endpoints: Vec<String>) -> EtcdConfig {
        EtcdConfig {
            endpoints,
            key_prefix: DEFAULT_PREFIX.to_string(),
            user: None,
            tls: None,
            call_timeout: super::DEFAULT_CALL_TIMEOUT,
        }
    }
}

/// A worker-id registry in etcd.
pub struct EtcdRegistry {
    /// Validated configuration.
    config: EtcdConfig,
    /// `etcd at …`, for errors.
    shown: String,
    /// One client per endpoint, made on first use (so a node can start while etcd is down) and
    /// dropped after a failed call, so a connection that hangs without closing is replaced.
    /// Not etcd-client's balanced channel over all endpoints: it keeps routing calls to a dead
    /// member, which would fence every node for as long as one member is down.
    clients: Mutex<Vec<Option<Client>>>,
    /// The endpoint calls go to until it fails; then the next one.
    current: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("endpoints", &self.config.endpoints)
            .field("prefix", &self.config.key_prefix)
            .field("call_timeout", &self.config.call_timeout)
            .finish_non_exhaustive()
    }
}

/// The three keys of an id, as read in one snapshot.
#[derive(Debug, Default)]
struct Record {
    /// The live holder's key, with its etcd lease.
    worker: Option<KeyValue>,
    /// The last grant (or release).
    grant: Option<KeyValue>,
    /// The stored high-water mark.
    hw: Option<KeyValue>,
}

/// `mod_revision` of a key that may be absent (etcd compares an absent key's revisions as 0).
fn mod_rev(kv: &Option<KeyValue>) -> i64 {
    kv.as_ref().map_or(0, KeyValue::mod_revision)
}

/// "The key does not exist", as a transaction compares it: an absent key's revisions are 0.
fn absent(key: &str) -> Compare {
    Compare::create_revision(key, CompareOp::Equal, 0)
}

impl EtcdRegistry {
    /// Checks the config; connects lazily, on the first call.
    pub fn new(config: &EtcdConfig) -> Result<EtcdRegistry, RegistryError> {
        if config.endpoints.is_empty() {
            return Err(RegistryError::Config(
                "etcd endpoints are empty; give at least one http://host:port".to_string(),
            ));
        }
        for e in &config.endpoints {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains('/')) {
                return Err(RegistryError::Config(format!(
                    "etcd endpoint `{e}` is invalid; expected http://host:port or https://host:port"
                )));
            }
        }
        let p = &config.key_prefix;
        if !p.starts_with('/') || p.ends_with('/') || p.contains(char::is_whitespace) {
            return Err(RegistryError::Config(format!(
                "etcd key prefix `{p}` must start with `/`, not end with `/`, and have no spaces (default {DEFAULT_PREFIX})"
            )));
        }
        if config.call_timeout.is_zero() {
            return Err(RegistryError::Config(
                "etcd call_timeout must be above zero (default 2 s)".to_string(),
            ));
        }
        let tls_needed = config.endpoints.iter().any(|e| e.starts_with("https://"));
        if config.tls.is_some() && !tls_needed {
            return Err(RegistryError::Config(
                "etcd TLS files are set but no endpoint is https://".to_string(),
            ));
        }
        if tls_needed && config.tls.as_ref().is_none_or(|t| t.ca_file.is_none()) {
            return Err(RegistryError::Config(
                "etcd https:// endpoints need the CA file that signed the members' certificates (registry.tls_ca_file)".to_string(),
            ));
        }
        if let Some(tls) = &config.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Err(RegistryError::Config(
                    "etcd TLS needs both cert_file and key_file, or neither".to_string(),
                ));
            }
        }
        Ok(EtcdRegistry {
            shown: format!("etcd at {}", config.endpoints.join(",")),
            config: config.clone(),
            clients: Mutex::new(vec![None; config.endpoints.len()]),
            current: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// An etcd failure as [`RegistryError::Unavailable`]; etcd's own words (`etcdserver: no
    /// leader`, `etcdserver: permission denied`) go into the message, which is what the keeper
    /// logs and `/readyz` shows, with a hint where the fix is the configuration.
    fn unavailable(&self, what: impl Into<String>, e: etcd_client::Error) -> RegistryError {
        let mut what = what.into();
        if let etcd_client::Error::GRpcStatus(status) = &e {
            what = format!("{what}: {}", status.message());
            // etcd's words for a refused user: "permission denied", "user name is empty",
            // "authentication failed, invalid user ID or password", "invalid auth token".
            let m = status.message();
            if [
                "permission denied",
                "user name",
                "authentication",
                "auth token",
            ]
            .iter()
            .any(|w| m.contains(w))
            {
                what = format!(
                    "{what}; check registry.user and registry.password, and that the user's role may read and write keys under {}/",
                    self.config.key_prefix
                );
            }
        }
        RegistryError::unavailable(&self.shown, what, e)
    }

    /// The TLS settings, reading the PEM files now (a missing file is a config error).
    fn tls(&self) -> Result<Option<TlsOptions>, RegistryError> {
        let needed = self
            .config
            .endpoints
            .iter()
            .any(|e| e.starts_with("https://"));
        if !needed {
            return Ok(None);
        }
        let read = |what: &str, path: &str| {
            std::fs::read(path).map_err(|e| {
                RegistryError::Config(format!("etcd TLS {what} `{path}` cannot be read: {e}"))
            })
        };
        let files = self.config.tls.clone().unwrap_or_default();
        let ca = files.ca_file.as_deref().unwrap_or_default();
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read("ca_file", ca)?));
        if let (Some(cert), Some(key)) = (&files.cert_file, &files.key_file) {
            tls = tls.identity(Identity::from_pem(
                read("cert_file", cert)?,
                read("key_file", key)?,
            ));
        }
        if let Some(domain) = &files.domain {
            tls = tls.domain_name(domain.clone());
        }
        Ok(Some(tls))
    }

    /// Bound on one attempt at one member: a share of the call timeout, so a member that hangs
    /// leaves time to try the others within the call.
    fn attempt_timeout(&self) -> Duration {
        let n = u32::try_from(self.config.endpoints.len()).unwrap_or(u32::MAX);
        (self.config.call_timeout / n).max(Duration::from_millis(100).min(self.config.call_timeout))
    }

    /// The client of endpoint `i`, made if there is none (no I/O: it connects on first use).
    async fn client(&self, i: usize) -> Result<Client, RegistryError> {
        let mut clients = self.clients.lock().await;
        if let Some(client) = &clients[i] {
            return Ok(client.clone());
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.attempt_timeout())
            .with_timeout(self.attempt_timeout())
            // A member cut off from the others refuses instead of serving a stale view.
            .with_require_leader(true);
        if let Some((user, password)) = &self.config.user {
            options = options.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = self.tls()? {
            options = options.with_tls(tls);
        }
        let endpoint = &self.config.endpoints[i];
        let client = Client::connect([endpoint], Some(options))
            .await
            .map_err(|e| self.unavailable(format!("cannot connect to {endpoint}"), e))?;
        clients[i] = Some(client.clone());
        Ok(client)
    }

    /// Runs `call` against the current member; when that member fails or does not answer in
    /// its share of the call timeout, against the next one, until each was tried once or the
    /// call timeout is spent. Every operation is guarded by compare-and-set, so repeating one
    /// that committed without its reply arriving either finds it done or fails cleanly.
    async fn run<T, F, Fut>(&self, call: F) -> Result<T, RegistryError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        use std::sync::atomic::Ordering;
        let n = self.config.endpoints.len();
        bounded(self.config.call_timeout, &self.shown, async {
            let mut last = None;
            for _ in 0..n {
                let i = self.current.load(Ordering::Relaxed) % n;
                let endpoint = &self.config.endpoints[i];
                let shown = format!("etcd at {endpoint}");
                let attempt = async { call(self.client(i).await?).await };
                match bounded(self.attempt_timeout(), &shown, attempt).await {
                    Err(e @ RegistryError::Unavailable { .. }) => {
                        tracing::debug!(endpoint, error = %e, "etcd member failed; trying the next");
                        self.clients.lock().await[i] = None;
                        let _ = self.current.compare_exchange(
                            i,
                            (i + 1) % n,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                        last = Some(e);
                    }
                    other => return other,
                }
            }
            Err(last.unwrap_or_else(|| RegistryError::Config("no etcd endpoint".to_string())))
        })
        .await
    }

    /// `{prefix}/{namespace}/`, the start of every key of a namespace.
    fn base(&self, namespace: &str) -> String {
        format!("{}/{namespace}/", self.config.key_prefix)
    }

    /// The worker, grant and hw keys of an id.
    fn keys(&self, namespace: &str, id: u32) -> [String; 3] {
        let base = self.base(namespace);
        [
            format!("{base}worker/{id}"),
            format!("{base}grant/{id}"),
            format!("{base}hw/{id}"),
        ]
    }

    /// The etcd lease ttl for a request: whole seconds, rounded up, so the store never keeps an
    /// id for less than the ttl the node fences by.
    fn lease_secs(req: &LeaseRequest) -> i64 {
        i64::try_from(req.ttl.as_millis().div_ceil(1000))
            .unwrap_or(i64::MAX)
            .max(1)
    }

    async fn txn(
        &self,
        client: &mut Client,
        what: &str,
        txn: Txn,
    ) -> Result<TxnResponse, RegistryError> {
        client
            .txn(txn)
            .await
            .map_err(|e| self.unavailable(format!("{what} failed"), e))
    }

    /// The worker, grant and hw keys of an id, read in one snapshot.
    async fn record(
        &self,
        client: &mut Client,
        keys: &[String; 3],
    ) -> Result<Record, RegistryError> {
        let txn = Txn::new().and_then(
            keys.iter()
                .map(|k| TxnOp::get(k.as_str(), None))
                .collect::<Vec<_>>(),
        );
        let resp = self.txn(client, "reading a lease", txn).await?;
        let mut kvs = resp.op_responses().into_iter().map(|r| match r {
            TxnOpResponse::Get(mut g) => g.take_kvs().into_iter().next(),
            _ => None,
        });
        Ok(Record {
            worker: kvs.next().flatten(),
            grant: kvs.next().flatten(),
            hw: kvs.next().flatten(),
        })
    }

    /// A stored high-water mark; a value that is not a number means another program writes
    /// Floe's keys, and nothing is granted on a mark that cannot be read.
    fn mark(&self, kv: &Option<KeyValue>) -> Result<Option<u64>, RegistryError> {
        let Some(kv) = kv else { return Ok(None) };
        let text = String::from_utf8_lossy(kv.value());
        text.parse::<u64>().map(Some).map_err(|_| RegistryError::Unavailable {
            store: self.shown.clone(),
            what: format!(
                "the high-water mark under `{}` is `{text}`, not a number; is another program writing Floe's keys?",
                String::from_utf8_lossy(kv.key())
            ),
            source: None,
        })
    }

    /// Grants an etcd lease for `req.ttl`.
    async fn grant_lease(
        &self,
        client: &mut Client,
        req: &LeaseRequest,
    ) -> Result<i64, RegistryError> {
        Ok(client
            .lease_grant(Self::lease_secs(req), None)
            .await
            .map_err(|e| self.unavailable("granting an etcd lease failed", e))?
            .id())
    }

    /// Revokes a lease nobody needs any more. Best effort: a lease left behind lapses by itself.
    async fn forget_lease(&self, client: &mut Client, lease: i64) {
        if let Err(e) = client.lease_revoke(lease).await {
            tracing::debug!(lease, error = %e, "revoking an unused etcd lease failed; it lapses by itself");
        }
    }

    /// One keep-alive of `lease`: its ttl after the renewal, 0 when it has lapsed.
    async fn keep_alive(&self, client: &mut Client, lease: i64) -> Result<i64, RegistryError> {
        let (mut keeper, mut stream) = client
            .lease_keep_alive(lease)
            .await
            .map_err(|e| self.unavailable("lease keep-alive failed", e))?;
        keeper
            .keep_alive()
            .await
            .map_err(|e| self.unavailable("lease keep-alive failed", e))?;
        let reply = stream
            .message()
            .await
            .map_err(|e| self.unavailable("lease keep-alive failed", e))?;
        Ok(reply.map_or(0, |r| r.ttl()))
    }

    fn lost(req: &LeaseRequest, lease: &Lease) -> RegistryError {
        RegistryError::Lost {
            namespace: req.namespace.clone(),
            id: lease.id,
            epoch: lease.epoch,
        }
    }

    /// Whether `rec` still shows `lease` as the last grant, held by its owner or lapsed with
    /// nobody else's claim since.
    fn still_ours(rec: &Record, lease: &Lease) -> bool {
        let grant_ok = rec.grant.as_ref().is_some_and(|g| {
            g.mod_revision() == i64::try_from(lease.epoch).unwrap_or(-1)
                && g.value() == lease.owner.as_bytes()
        });
        let worker_ok = rec
            .worker
            .as_ref()
            .is_none_or(|w| w.value() == lease.owner.as_bytes());
        grant_ok && worker_ok
    }

    /// The id's record, if it still shows `lease` as ours ([`Self::still_ours`]); `Lost` if not.
    async fn ours(
        &self,
        client: &mut Client,
        keys: &[String; 3],
        req: &LeaseRequest,
        lease: &Lease,
    ) -> Result<Record, RegistryError> {
        let rec = self.record(client, keys).await?;
        if Self::still_ours(&rec, lease) {
            Ok(rec)
        } else {
            Err(Self::lost(req, lease))
        }
    }

    async fn renew_once(
        &self,
        mut client: Client,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError> {
        let keys = self.keys(&req.namespace, lease.id);
        let [worker, grant, hw] = &keys;
        let epoch = i64::try_from(lease.epoch).map_err(|_| Self::lost(req, lease))?;
        loop {
            let rec = self.ours(&mut client, &keys, req, lease).await?;
            let stored = self.mark(&rec.hw)?;
            let raise = stored.is_none_or(|m| high_water_ms > m);
            let mark = stored.map_or(high_water_ms, |m| m.max(high_water_ms));
            let mark_ops = || {
                if raise {
                    vec![TxnOp::put(hw.as_str(), mark.to_string(), None)]
                } else {
                    Vec::new()
                }
            };
            match &rec.worker {
                Some(w) => {
                    if self.keep_alive(&mut client, w.lease()).await? <= 0 {
                        // Lapsed just now: etcd is deleting the key; look again.
                        tokio::time::sleep(LAPSE_RETRY).await;
                        continue;
                    }
                    if !raise {
                        return Ok(());
                    }
                    let txn = Txn::new()
                        .when(vec![
                            Compare::mod_revision(grant.as_str(), CompareOp::Equal, epoch),
                            Compare::mod_revision(
                                worker.as_str(),
                                CompareOp::Equal,
                                w.mod_revision(),
                            ),
                            Compare::mod_revision(hw.as_str(), CompareOp::Equal, mod_rev(&rec.hw)),
                        ])
                        .and_then(mark_ops());
                    if self.txn(&mut client, "renew", txn).await?.succeeded() {
                        return Ok(());
                    }
                }
                None => {
                    // The lease lapsed while this node was cut off, and nobody claimed the id
                    // since (the grant is still ours): take it back under a fresh etcd lease.
                    let fresh = self.grant_lease(&mut client, req).await?;
                    let mut ops = vec![TxnOp::put(
                        worker.as_str(),
                        lease.owner.as_str(),
                        Some(PutOptions::new().with_lease(fresh)),
                    )];
                    ops.extend(mark_ops());
                    let txn = Txn::new()
                        .when(vec![
                            absent(worker),
                            Compare::mod_revision(grant.as_str(), CompareOp::Equal, epoch),
                            Compare::mod_revision(hw.as_str(), CompareOp::Equal, mod_rev(&rec.hw)),
                        ])
                        .and_then(ops);
                    if self.txn(&mut client, "renew", txn).await?.succeeded() {
                        return Ok(());
                    }
                    self.forget_lease(&mut client, fresh).await;
                }
            }
        }
    }

    async fn release_once(
        &self,
        mut client: Client,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError> {
        let keys = self.keys(&req.namespace, lease.id);
        let [worker, grant, hw] = &keys;
        let epoch = i64::try_from(lease.epoch).map_err(|_| Self::lost(req, lease))?;
        loop {
            let rec = self.ours(&mut client, &keys, req, lease).await?;
            // The exact final mark: renewals may have stored one ahead of what was issued.
            let txn = Txn::new()
                .when(vec![
                    Compare::mod_revision(grant.as_str(), CompareOp::Equal, epoch),
                    Compare::mod_revision(worker.as_str(), CompareOp::Equal, mod_rev(&rec.worker)),
                ])
                .and_then(vec![
                    TxnOp::delete(worker.as_str(), None),
                    TxnOp::put(grant.as_str(), "", None),
                    TxnOp::put(hw.as_str(), high_water_ms.to_string(), None),
                ]);
            if self.txn(&mut client, "release", txn).await?.succeeded() {
                if let Some(w) = &rec.worker {
                    self.forget_lease(&mut client, w.lease()).await;
                }
                return Ok(());
            }
        }
    }

    async fn acquire_once(
        &self,
        mut client: Client,
        req: &LeaseRequest,
    ) -> Result<Lease, RegistryError> {
        let workers = format!("{}worker/", self.base(&req.namespace));
        let listed = client
            .get(workers.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.unavailable("listing held ids failed", e))?;
        let mut held = BTreeSet::new();
        for kv in listed.kvs() {
            let Some(id) = String::from_utf8_lossy(kv.key())
                .strip_prefix(&workers)
                .and_then(|i| i.parse::<u32>().ok())
            else {
                continue;
            };
            if kv.value() == req.owner.as_bytes() && id < req.pool_size {
                // An earlier attempt of this very request committed, but its reply was lost
                // (a member died, a timeout): the id is already ours. Hand it out instead of
                // claiming a second one.
                if let Some(lease) = self.adopt(&mut client, req, id).await? {
                    return Ok(lease);
                }
            }
            held.insert(id);
        }
        let lease_id = self.grant_lease(&mut client, req).await?;
        // Lowest free id first; a claim lost to another node moves on to the next free id, so
        // racing claimers spread over the pool instead of retrying one id.
        let mut id = 0u32;
        while id < req.pool_size {
            if held.contains(&id) {
                id += 1;
                continue;
            }
            let [worker, grant, hw] = self.keys(&req.namespace, id);
            let txn = Txn::new().when(vec![absent(&worker)]).and_then(vec![
                TxnOp::put(
                    worker.as_str(),
                    req.owner.as_str(),
                    Some(PutOptions::new().with_lease(lease_id)),
                ),
                TxnOp::put(grant.as_str(), req.owner.as_str(), None),
                TxnOp::get(hw.as_str(), None),
            ]);
            let resp = self.txn(&mut client, "acquire", txn).await?;
            if resp.succeeded() {
                let epoch = resp.header().map_or(0, |h| h.revision());
                let mark = resp.op_responses().into_iter().find_map(|r| match r {
                    TxnOpResponse::Get(mut g) => g.take_kvs().into_iter().next(),
                    _ => None,
                });
                return Ok(Lease {
                    id,
                    owner: req.owner.clone(),
                    epoch: u64::try_from(epoch).unwrap_or(0),
                    previous_high_water_ms: self.mark(&mark)?,
                });
            }
            id += 1;
        }
        self.forget_lease(&mut client, lease_id).await;
        Err(RegistryError::Exhausted {
            namespace: req.namespace.clone(),
            pool_size: req.pool_size,
        })
    }

    /// The lease on `id` that `req`'s owner already holds, as [`WorkerRegistry::acquire`] would
    /// have returned it; `None` if the record does not show one.
    async fn adopt(
        &self,
        client: &mut Client,
        req: &LeaseRequest,
        id: u32,
    ) -> Result<Option<Lease>, RegistryError> {
        let rec = self.record(client, &self.keys(&req.namespace, id)).await?;
        let owned = |kv: &Option<KeyValue>| {
            kv.as_ref()
                .is_some_and(|k| k.value() == req.owner.as_bytes())
        };
        if !(owned(&rec.worker) && owned(&rec.grant)) {
            return Ok(None);
        }
        Ok(Some(Lease {
            id,
            owner: req.owner.clone(),
            epoch: u64::try_from(mod_rev(&rec.grant)).unwrap_or(0),
            previous_high_water_ms: self.mark(&rec.hw)?,
        }))
    }

    async fn list_once(
        &self,
        mut client: Client,
        req: &LeaseRequest,
    ) -> Result<Vec<WorkerSlot>, RegistryError> {
        let base = self.base(&req.namespace);
        let resp = client
            .get(base.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.unavailable("listing ids failed", e))?;
        let mut records: BTreeMap<u32, Record> = BTreeMap::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let Some((kind, id)) = key.strip_prefix(&base).and_then(|r| r.split_once('/')) else {
                continue;
            };
            let Ok(id) = id.parse::<u32>() else { continue };
            if id >= req.pool_size {
                continue;
            }
            let rec = records.entry(id).or_default();
            match kind {
                "worker" => rec.worker = Some(kv.clone()),
                "grant" => rec.grant = Some(kv.clone()),
                "hw" => rec.hw = Some(kv.clone()),
                _ => {}
            }
        }
        let records: Vec<(u32, Record)> = records
            .into_iter()
            .filter(|(_, r)| r.grant.is_some())
            .take(MAX_LISTED)
            .collect();
        // One time-to-live call per held id, many at once: one after another, a pool of a
        // thousand held ids would not fit in the call timeout.
        let leases: BTreeSet<i64> = records
            .iter()
            .filter_map(|(_, r)| r.worker.as_ref().map(KeyValue::lease))
            .collect();
        let mut left: BTreeMap<i64, i64> = BTreeMap::new();
        let leases: Vec<i64> = leases.into_iter().collect();
        for chunk in leases.chunks(TTL_QUERIES_AT_ONCE) {
            let mut calls = tokio::task::JoinSet::new();
            for &lease in chunk {
                let mut client = client.clone();
                calls.spawn(async move { (lease, client.lease_time_to_live(lease, None).await) });
            }
            while let Some(done) = calls.join_next().await {
                let (lease, ttl) = done.map_err(|e| RegistryError::Unavailable {
                    store: self.shown.clone(),
                    what: format!("reading a lease's time to live failed: {e}"),
                    source: None,
                })?;
                let ttl = ttl
                    .map_err(|e| self.unavailable("reading a lease's time to live failed", e))?
                    .ttl();
                left.insert(lease, ttl.saturating_mul(1000));
            }
        }
        let mut slots = Vec::with_capacity(records.len());
        for (id, rec) in records {
            let left_ms = rec
                .worker
                .as_ref()
                .and_then(|w| left.get(&w.lease()).copied());
            slots.push(WorkerSlot {
                worker_id: id,
                owner: rec
                    .worker
                    .as_ref()
                    .map(|w| String::from_utf8_lossy(w.value()).into_owned()),
                epoch: u64::try_from(mod_rev(&rec.grant)).unwrap_or(0),
                // etcd deletes the key when its lease lapses; the time to live is whole seconds
                // rounded down, so it reads 0 during a held lease's last second.
                held: rec.worker.is_some(),
                expires_in_ms: left_ms.map(|ms| ms.max(0)),
                high_water_ms: self.mark(&rec.hw)?,
            });
        }
        Ok(slots)
    }
}

#[async_trait]
impl WorkerRegistry for EtcdRegistry {
    async fn acquire(&self, req: &LeaseRequest) -> Result<Lease, RegistryError> {
        req.validate()?;
        self.run(|c| self.acquire_once(c, req)).await
    }

    async fn renew(
        &self,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError> {
        req.validate()?;
        self.run(|c| self.renew_once(c, req, lease, high_water_ms))
            .await
    }

    async fn release(
        &self,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError> {
        req.validate()?;
        self.run(|c| self.release_once(c, req, lease, high_water_ms))
            .await
    }

    async fn list(&self, req: &LeaseRequest) -> Result<Vec<WorkerSlot>, RegistryError> {
        req.validate()?;
        self.run(|c| self.list_once(c, req)).await
    }

    fn describe(&self) -> String {
        format!("{} (prefix {})", self.shown, self.config.key_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked_before_any_io() {
        let ok = EtcdConfig::new(vec!["http://127.0.0.1:2379".into()]);
        EtcdRegistry::new(&ok).unwrap();
        let bad = |c: EtcdConfig| EtcdRegistry::new(&c).unwrap_err().to_string();
        let e = bad(EtcdConfig::new(vec![]));
        assert!(e.contains("endpoints are empty"), "{e}");
        let e = bad(EtcdConfig::new(vec!["127.0.0.1:2379".into()]));
        assert!(e.contains("`127.0.0.1:2379` is invalid"), "{e}");
        let e = bad(EtcdConfig {
            key_prefix: "floe".into(),
            ..ok.clone()
        });
        assert!(e.contains("must start with `/`"), "{e}");
        let e = bad(EtcdConfig {
            tls: Some(EtcdTls::default()),
            ..ok.clone()
        });
        assert!(e.contains("no endpoint is https://"), "{e}");
        let e = bad(EtcdConfig {
            endpoints: vec!["https://etcd:2379".into()],
            tls: Some(EtcdTls {
                ca_file: Some("ca.pem".into()),
                cert_file: Some("c.pem".into()),
                ..EtcdTls::default()
            }),
            ..ok.clone()
        });
        assert!(e.contains("both cert_file and key_file"), "{e}");
        let e = bad(EtcdConfig::new(vec!["https://etcd:2379".into()]));
        assert!(e.contains("need the CA file"), "{e}");
    }

    #[test]
    fn lease_ttl_rounds_up_to_whole_seconds() {
        let req = |ms| LeaseRequest::new("ns", 4, Duration::from_millis(ms));
        assert_eq!(EtcdRegistry::lease_secs(&req(300)), 1);
        assert_eq!(EtcdRegistry::lease_secs(&req(1_000)), 1);
        assert_eq!(EtcdRegistry::lease_secs(&req(1_001)), 2);
        assert_eq!(EtcdRegistry::lease_secs(&req(10_000)), 10);
    }
}
