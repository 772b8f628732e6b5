//! Worker ids leased from Redis: `SET NX PX` with an owner token, renewed and released by
//! compare-owner Lua scripts. No pub/sub: safety never depends on a message being delivered.
//!
//! Keys, per namespace and id:
//!
//! | key | value | expiry |
//! |---|---|---|
//! | `{prefix}:{namespace}:worker:{id}` | owner token of the holder | PX ttl |
//! | `{prefix}:{namespace}:epoch:{id}` | fencing epoch, `INCR` on every grant and release | none |
//! | `{prefix}:{namespace}:hw:{id}` | highest high-water mark stored (Unix ms) | none |
//!
//! Each operation is one script, so it is atomic on the server and costs one round trip. Expiry
//! runs on the Redis server's clock. Use one Redis primary: a replica promoted after a failover may
//! not have the latest grants (asynchronous replication), and the scripts touch keys they do not
//! declare, so Redis Cluster is not supported.

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::Script;
use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{
    bounded, redact_url, Lease, LeaseRequest, RegistryError, WorkerRegistry, WorkerSlot, MAX_LISTED,
};

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "floe";

/// Claims the lowest free id. ARGV: key base (`prefix:namespace`), pool size, owner, ttl ms.
/// Returns `{id, epoch, high_water or ''}`, or `{-1, 0, ''}` when the pool is exhausted.
/// The scan costs one `SET NX` per id below the first free one: O(live nodes).
const ACQUIRE: &str = r"
local base, pool, owner, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
for id = 0, pool - 1 do
  local worker = base .. ':worker:' .. id
  if redis.call('SET', worker, owner, 'NX', 'PX', ttl) then
    local epoch = redis.call('INCR', base .. ':epoch:' .. id)
    local hw = redis.call('GET', base .. ':hw:' .. id)
    return {id, epoch, hw or ''}
  end
end
return {-1, 0, ''}
";

/// Renews. KEYS: worker, epoch, hw. ARGV: owner, epoch, ttl ms, high-water ms.
/// The lease is still the caller's iff the epoch is unchanged (no grant or release since) and the
/// worker key holds the caller's token — or has expired, which lets a node that was cut off from
/// Redis keep its id when nobody took it meanwhile. Returns 1, or 0 when lost.
const RENEW: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
elseif not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
else
  return 0
end
local old = tonumber(redis.call('GET', KEYS[3]))
if old == nil or tonumber(ARGV[4]) > old then redis.call('SET', KEYS[3], ARGV[4]) end
return 1
";

/// Releases. KEYS and ARGV as for [`RENEW`] (ttl unused). Bumps the epoch so a stale renewal of
/// the released lease cannot revive it, and stores the holder's exact final mark: renewals may
/// have stored a mark ahead of time, which the holder, having stopped, can now lower to what
/// it really issued. Returns 1, or 0 when lost.
const RELEASE: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[3], ARGV[4])
return 1
";

/// Where and how to reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`.
    pub url: String,
    /// First part of every key, so Floe's keys are easy to find and cannot clash with others.
    pub key_prefix: String,
    /// Bound on each call (connecting included).
    pub call_timeout: Duration,
}

impl RedisConfig {
    /// The defaults for `url`: prefix `floe`, call timeout 2 s.
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            key_prefix: DEFAULT_PREFIX.to_string(),
            call_timeout: super::DEFAULT_CALL_TIMEOUT,
        }
    }
}

/// A worker-id registry in Redis.
pub struct RedisRegistry {
    /// Opens connections; parsed once from the URL.
    client: ::redis::Client,
    /// The URL without its password, for errors.
    shown: String,
    /// First part of every key.
    prefix: String,
    /// Bound on each call.
    call_timeout: Duration,
    /// The shared connection, made on first use (so a node can start while Redis is down) and
    /// dropped after a failed call, so a connection that hangs without closing is replaced.
    conn: Mutex<Option<ConnectionManager>>,
    /// The three scripts, sent by SHA after the first use.
    acquire: Script,
    /// See [`RENEW`].
    renew: Script,
    /// See [`RELEASE`].
    release: Script,
}

impl std::fmt::Debug for RedisRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRegistry")
            .field("url", &self.shown)
            .field("prefix", &self.prefix)
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisRegistry {
    /// Checks the config; connects lazily, on the first call.
    pub fn new(config: &RedisConfig) -> Result<RedisRegistry, RegistryError> {
        let shown = redact_url(&config.url);
        let client = ::redis::Client::open(config.url.as_str()).map_err(|e| {
            RegistryError::Config(format!(
                "redis URL `{shown}` is invalid ({e}); expected redis://[:password@]host:port[/db]"
            ))
        })?;
        if config.key_prefix.is_empty() || config.key_prefix.contains(char::is_whitespace) {
            return Err(RegistryError::Config(format!(
                "redis key prefix `{}` must be non-empty and without spaces",
                config.key_prefix
            )));
        }
        if config.call_timeout.is_zero() {
            return Err(RegistryError::Config(
                "redis call_timeout must be above zero (default 2 s)".to_string(),
            ));
        }
        Ok(RedisRegistry {
            client,
            shown: format!("redis at {shown}"),
            prefix: config.key_prefix.clone(),
            call_timeout: config.call_timeout,
            conn: Mutex::new(None),
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
        })
    }

    /// `{prefix}:{namespace}`, the start of every key of a namespace.
    fn base(&self, namespace: &str) -> String {
        format!("{}:{namespace}", self.prefix)
    }

    /// The worker, epoch and hw keys of an id.
    fn keys(&self, namespace: &str, id: u32) -> [String; 3] {
        let base = self.base(namespace);
        [
            format!("{base}:worker:{id}"),
            format!("{base}:epoch:{id}"),
            format!("{base}:hw:{id}"),
        ]
    }

    /// The shared connection, connecting if there is none.
    async fn connection(&self) -> Result<ConnectionManager, RegistryError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        // No retries inside the manager: the lease keeper owns the retry policy.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(self.call_timeout)
            .set_response_timeout(self.call_timeout);
        let conn = ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(|e| RegistryError::unavailable(&self.shown, "cannot connect", e))?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Runs a script within the call timeout; a failure drops the connection.
    async fn run<T: ::redis::FromRedisValue>(
        &self,
        what: &str,
        invocation: ::redis::ScriptInvocation<'_>,
    ) -> Result<T, RegistryError> {
        let result = bounded(self.call_timeout, &self.shown, async {
            let mut conn = self.connection().await?;
            invocation
                .invoke_async::<T>(&mut conn)
                .await
                .map_err(|e| RegistryError::unavailable(&self.shown, format!("{what} failed"), e))
        })
        .await;
        if result.is_err() {
            self.conn.lock().await.take();
        }
        result
    }

    /// The ids of a namespace that were ever granted (each has an epoch key), below `pool`,
    /// lowest first, at most [`MAX_LISTED`]; `SCAN`, so Redis is never blocked by a `KEYS`.
    async fn granted_ids(
        &self,
        conn: &mut ConnectionManager,
        namespace: &str,
        pool: u32,
    ) -> Result<Vec<u32>, RegistryError> {
        let prefix = format!("{}:epoch:", self.base(namespace));
        let pattern = format!("{prefix}*");
        let mut ids = std::collections::BTreeSet::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await
                .map_err(|e| RegistryError::unavailable(&self.shown, "listing ids failed", e))?;
            ids.extend(
                keys.iter()
                    .filter_map(|k| k.strip_prefix(&prefix)?.parse::<u32>().ok())
                    .filter(|id| *id < pool),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(ids.into_iter().take(MAX_LISTED).collect())
    }

    /// Runs the renew or release script for a lease.
    async fn if_held(
        &self,
        script: &Script,
        what: &str,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError> {
        req.validate()?;
        let [worker, epoch, hw] = self.keys(&req.namespace, lease.id);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(worker)
            .key(epoch)
            .key(hw)
            .arg(&lease.owner)
            .arg(lease.epoch)
            .arg(req.ttl_ms())
            .arg(high_water_ms);
        match self.run::<i64>(what, invocation).await? {
            1 => Ok(()),
            _ => Err(RegistryError::Lost {
                namespace: req.namespace.clone(),
                id: lease.id,
                epoch: lease.epoch,
            }),
        }
    }
}

#[async_trait]
impl WorkerRegistry for RedisRegistry {
    async fn acquire(&self, req: &LeaseRequest) -> Result<Lease, RegistryError> {
        req.validate()?;
        let mut invocation = self.acquire.prepare_invoke();
        invocation
            .arg(self.base(&req.namespace))
            .arg(req.pool_size)
            .arg(&req.owner)
            .arg(req.ttl_ms());
        let (id, epoch, hw): (i64, u64, String) = self.run("acquire", invocation).await?;
        if id < 0 {
            return Err(RegistryError::Exhausted {
                namespace: req.namespace.clone(),
                pool_size: req.pool_size,
            });
        }
        let bad = |what: &str| RegistryError::Unavailable {
            store: self.shown.clone(),
            what: format!("acquire returned {what}; is another program writing Floe's keys?"),
            source: None,
        };
        let id = u32::try_from(id).map_err(|_| bad(&format!("id {id}")))?;
        let previous_high_water_ms = if hw.is_empty() {
            None
        } else {
            Some(
                hw.parse::<u64>()
                    .map_err(|_| bad(&format!("high-water mark `{hw}`")))?,
            )
        };
        Ok(Lease {
            id,
            owner: req.owner.clone(),
            epoch,
            previous_high_water_ms,
        })
    }

    async fn list(&self, req: &LeaseRequest) -> Result<Vec<WorkerSlot>, RegistryError> {
        req.validate()?;
        let result = bounded(self.call_timeout, &self.shown, async {
            let mut conn = self.connection().await?;
            let ids = self
                .granted_ids(&mut conn, &req.namespace, req.pool_size)
                .await?;
            let mut pipe = ::redis::pipe();
            for id in &ids {
                let [worker, epoch, hw] = self.keys(&req.namespace, *id);
                pipe.get(&worker).pttl(&worker).get(epoch).get(hw);
            }
            type Row = (Option<String>, i64, Option<u64>, Option<u64>);
            let rows: Vec<Row> = if ids.is_empty() {
                Vec::new()
            } else {
                let flat: Vec<::redis::Value> = pipe.query_async(&mut conn).await.map_err(|e| {
                    RegistryError::unavailable(&self.shown, "listing ids failed", e)
                })?;
                flat.chunks(4)
                    .map(|c| ::redis::from_redis_value(&::redis::Value::Array(c.to_vec())))
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        RegistryError::unavailable(&self.shown, "a listed id is ill-formed", e)
                    })?
            };
            Ok(ids
                .into_iter()
                .zip(rows)
                .map(|(id, (owner, pttl, epoch, hw))| WorkerSlot {
                    worker_id: id,
                    held: owner.is_some() && pttl > 0,
                    expires_in_ms: owner.as_ref().map(|_| pttl.max(0)),
                    owner,
                    epoch: epoch.unwrap_or(0),
                    high_water_ms: hw,
                })
                .collect())
        })
        .await;
        if result.is_err() {
            self.conn.lock().await.take();
        }
        result
    }

    fn describe(&self) -> String {
        format!("{} (prefix {})", self.shown, self.prefix)
    }

    async fn renew(
        &self,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError> {
        self.if_held(&self.renew, "renew", req, lease, high_water_ms)
            .await
    }

    async fn release(
        &self,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError> {
        self.if_held(&self.release, "release", req, lease, high_water_ms)
            .await
    }
}
