//! Worker ids leased from a SQL table, on SQLite, PostgreSQL or MySQL/MariaDB (sqlx `Any`,
//! runtime queries; the dialects differ only in a few SQL fragments).
//!
//! The table (name configurable, default `floe_workers`), created on first use:
//!
//! ```sql
//! CREATE TABLE floe_workers (
//!     namespace     VARCHAR(191) NOT NULL,  -- several clusters share one database
//!     worker_id     BIGINT       NOT NULL,
//!     owner         VARCHAR(255) NULL,      -- the holder's token; NULL once released
//!     epoch         BIGINT       NOT NULL,  -- +1 on every grant: the fencing token
//!     expires_at_ms BIGINT       NOT NULL,  -- on the database's clock
//!     high_water_ms BIGINT       NULL,      -- highest mark any holder stored; never lowered
//!     PRIMARY KEY (namespace, worker_id)
//! )
//! ```
//!
//! Rows are created on demand, lowest id first, and never deleted: they carry the high-water mark
//! from one holder to the next. Every time comparison uses the database's clock, so clock skew
//! between nodes cannot make two of them see one id as free. Claims are conditional `UPDATE`s
//! (or an `INSERT` that only one claimer can win), atomic on every engine without transactions.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Executor, Row};
use tokio::sync::OnceCell;

use super::{
    bounded, redact_url, Lease, LeaseRequest, RegistryError, WorkerRegistry, WorkerSlot, MAX_LISTED,
};
use crate::db::{lazy_pool, sqlite_wal, Dialect};

/// Default table name.
pub const DEFAULT_TABLE: &str = "floe_workers";

/// A claimer that keeps losing races gives up after this many rounds (each lost round means
/// another claimer won an id, so this is only reached under extreme churn).
const MAX_CLAIM_ROUNDS: usize = 1000;

/// The statements, built once per registry from the dialect and the table name.
#[derive(Debug)]
struct Statements {
    /// Creates the table if missing.
    create: String,
    /// The lowest free or expired existing id below the pool size.
    select_free: String,
    /// Claims one free or expired id; wins iff one row changed.
    claim: String,
    /// Reads the epoch and high-water mark just claimed.
    read: String,
    /// The highest existing id below the pool size (−1 for none): rows are dense, so the next
    /// never-used id is one above it.
    max_id: String,
    /// Creates and claims a never-used id; a unique violation means another claimer won it.
    insert: String,
    /// Extends the lease and raises the mark iff the owner and epoch still match.
    renew: String,
    /// Frees the id and raises the mark iff the owner and epoch still match.
    release: String,
    /// Every row of a namespace below the pool size, with its expiry on the database's clock.
    list: String,
}

impl Statements {
    fn new(dialect: Dialect, table: &str) -> Statements {
        let now = dialect.now_ms();
        let raise_hw = "high_water_ms = CASE WHEN high_water_ms IS NULL OR high_water_ms < ? THEN ? ELSE high_water_ms END";
        let sql = |s: String| dialect.placeholders(&s);
        Statements {
            create: format!(
                "CREATE TABLE IF NOT EXISTS {table} (\
                 namespace VARCHAR(191) NOT NULL, \
                 worker_id BIGINT NOT NULL, \
                 owner VARCHAR(255) NULL, \
                 epoch BIGINT NOT NULL, \
                 expires_at_ms BIGINT NOT NULL, \
                 high_water_ms BIGINT NULL, \
                 PRIMARY KEY (namespace, worker_id))"
            ),
            select_free: sql(format!(
                "SELECT worker_id FROM {table} WHERE namespace = ? AND worker_id < ? \
                 AND (owner IS NULL OR expires_at_ms <= {now}) ORDER BY worker_id LIMIT 1"
            )),
            claim: sql(format!(
                "UPDATE {table} SET owner = ?, epoch = epoch + 1, expires_at_ms = {now} + ? \
                 WHERE namespace = ? AND worker_id = ? AND (owner IS NULL OR expires_at_ms <= {now})"
            )),
            read: sql(format!(
                "SELECT epoch, high_water_ms FROM {table} WHERE namespace = ? AND worker_id = ? AND owner = ?"
            )),
            max_id: sql(format!(
                "SELECT COALESCE(MAX(worker_id), -1) FROM {table} WHERE namespace = ? AND worker_id < ?"
            )),
            insert: sql(format!(
                "INSERT INTO {table} (namespace, worker_id, owner, epoch, expires_at_ms, high_water_ms) \
                 VALUES (?, ?, ?, 1, {now} + ?, NULL)"
            )),
            renew: sql(format!(
                "UPDATE {table} SET expires_at_ms = {now} + ?, {raise_hw} \
                 WHERE namespace = ? AND worker_id = ? AND owner = ? AND epoch = ?"
            )),
            // The holder's exact final mark (bound twice, like `raise_hw`): renewals may have
            // stored one ahead of time.
            release: sql(format!(
                "UPDATE {table} SET owner = NULL, expires_at_ms = 0, high_water_ms = COALESCE(?, ?) \
                 WHERE namespace = ? AND worker_id = ? AND owner = ? AND epoch = ?"
            )),
            list: sql(format!(
                "SELECT worker_id, owner, epoch, expires_at_ms - {now}, high_water_ms FROM {table} \
                 WHERE namespace = ? AND worker_id < ? ORDER BY worker_id LIMIT {MAX_LISTED}"
            )),
        }
    }
}

/// Where the table is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlConfig {
    /// `sqlite:path/floe.db`, `postgres://user@host/db` or `mysql://user@host/db`.
    pub url: String,
    /// The table; a plain identifier, since it is written into SQL, never bound.
    pub table: String,
    /// Bound on each call (waiting for a pooled connection included).
    pub call_timeout: Duration,
    /// Connections kept open; leases need few (one renewal per ttl/3).
    pub max_connections: u32,
}

impl SqlConfig {
    /// The defaults for `url`: table `floe_workers`, call timeout 2 s, 4 connections.
    pub fn new(url: impl Into<String>) -> SqlConfig {
        SqlConfig {
            url: url.into(),
            table: DEFAULT_TABLE.to_string(),
            call_timeout: super::DEFAULT_CALL_TIMEOUT,
            max_connections: 4,
        }
    }
}

/// A worker-id registry in a SQL table.
#[derive(Debug)]
pub struct SqlRegistry {
    /// Lazy pool: a node can start while the database is down and lease once it is back.
    pool: AnyPool,
    /// Which SQL fragments to use.
    dialect: Dialect,
    /// `sql at <url without password>`, for errors.
    shown: String,
    /// The table name, for errors.
    table: String,
    /// Bound on each call.
    call_timeout: Duration,
    /// The statements for this dialect and table.
    sql: Statements,
    /// Set once the table exists, so only the first call pays for `CREATE TABLE`.
    schema: OnceCell<()>,
}

impl SqlRegistry {
    /// Checks the config and builds a lazy pool; nothing is connected until the first call.
    pub fn new(config: &SqlConfig) -> Result<SqlRegistry, RegistryError> {
        let table = &config.table;
        crate::db::check_identifier(table)
            .map_err(|e| RegistryError::Config(format!("registry table name: {e}")))?;
        if config.call_timeout.is_zero() {
            return Err(RegistryError::Config(
                "registry call_timeout must be above zero (default 2 s)".to_string(),
            ));
        }
        let shown = redact_url(&config.url);
        let (pool, dialect) = lazy_pool(&config.url, config.max_connections, config.call_timeout)
            .map_err(|e| {
            RegistryError::Config(format!("registry {}", floe_core::report(&e)))
        })?;
        Ok(SqlRegistry {
            pool,
            dialect,
            shown: format!("sql at {shown}"),
            table: table.clone(),
            call_timeout: config.call_timeout,
            sql: Statements::new(dialect, table),
            schema: OnceCell::new(),
        })
    }

    /// Closes the pool's connections (tests and shutdown; the registry is unusable afterwards).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn err(&self, what: &str, e: sqlx::Error) -> RegistryError {
        RegistryError::unavailable(&self.shown, format!("{what} on table {}", self.table), e)
    }

    /// Creates the table (and switches SQLite to WAL) once per registry.
    async fn ensure_schema(&self) -> Result<(), RegistryError> {
        self.schema
            .get_or_try_init(|| async {
                if self.dialect == Dialect::Sqlite {
                    sqlite_wal(&self.pool)
                        .await
                        .map_err(|e| self.err("switching to WAL", e))?;
                }
                // Two nodes creating the table at once can collide in PostgreSQL's catalog
                // even with IF NOT EXISTS; the second attempt then sees the table.
                if let Err(first) = self.pool.execute(self.sql.create.as_str()).await {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    self.pool
                        .execute(self.sql.create.as_str())
                        .await
                        .map_err(|_| self.err("creating the table", first))?;
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// One claim attempt after another until one wins or the pool is full.
    async fn claim(&self, req: &LeaseRequest) -> Result<Lease, RegistryError> {
        let ns = req.namespace.as_str();
        let pool = i64::from(req.pool_size);
        let ttl = i64::try_from(req.ttl_ms()).unwrap_or(i64::MAX);
        for _ in 0..MAX_CLAIM_ROUNDS {
            let free: Option<AnyRow> = sqlx::query(&self.sql.select_free)
                .bind(ns)
                .bind(pool)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.err("looking for a free id", e))?;
            if let Some(row) = free {
                let id: i64 = row.try_get(0).map_err(|e| self.err("reading an id", e))?;
                let won = sqlx::query(&self.sql.claim)
                    .bind(&req.owner)
                    .bind(ttl)
                    .bind(ns)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.err("claiming an id", e))?
                    .rows_affected()
                    == 1;
                if !won {
                    continue;
                }
                let row = sqlx::query(&self.sql.read)
                    .bind(ns)
                    .bind(id)
                    .bind(&req.owner)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| self.err("reading a claimed id", e))?;
                let epoch: i64 = row.try_get(0).map_err(|e| self.err("reading epoch", e))?;
                let hw: Option<i64> = row
                    .try_get(1)
                    .map_err(|e| self.err("reading high_water_ms", e))?;
                return Ok(self.lease(req, id, epoch, hw));
            }
            let max: i64 = sqlx::query(&self.sql.max_id)
                .bind(ns)
                .bind(pool)
                .fetch_one(&self.pool)
                .await
                .and_then(|row| row.try_get(0))
                .map_err(|e| self.err("finding the next id", e))?;
            let next = max + 1;
            if next >= pool {
                return Err(RegistryError::Exhausted {
                    namespace: req.namespace.clone(),
                    pool_size: req.pool_size,
                });
            }
            let inserted = sqlx::query(&self.sql.insert)
                .bind(ns)
                .bind(next)
                .bind(&req.owner)
                .bind(ttl)
                .execute(&self.pool)
                .await;
            match inserted {
                Ok(_) => return Ok(self.lease(req, next, 1, None)),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(self.err("creating an id", e)),
            }
        }
        Err(RegistryError::Unavailable {
            store: self.shown.clone(),
            what: format!(
                "lost {MAX_CLAIM_ROUNDS} claim races in a row in namespace `{}`; too many nodes are starting at once",
                req.namespace
            ),
            source: None,
        })
    }

    fn lease(&self, req: &LeaseRequest, id: i64, epoch: i64, hw: Option<i64>) -> Lease {
        Lease {
            // Both were checked against the pool size and written by this code.
            id: u32::try_from(id).unwrap_or(u32::MAX),
            owner: req.owner.clone(),
            epoch: u64::try_from(epoch).unwrap_or(0),
            previous_high_water_ms: hw.and_then(|h| u64::try_from(h).ok()),
        }
    }

    /// Runs the renew or release statement; one changed row means the lease was still held.
    async fn if_held(
        &self,
        sql: &str,
        bind_ttl: bool,
        what: &str,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError> {
        req.validate()?;
        bounded(self.call_timeout, &self.shown, async {
            self.ensure_schema().await?;
            let hw = i64::try_from(high_water_ms).map_err(|_| {
                RegistryError::Config(format!(
                    "high-water mark {high_water_ms} does not fit a BIGINT column"
                ))
            })?;
            let mut query = sqlx::query(sql);
            if bind_ttl {
                query = query.bind(i64::try_from(req.ttl_ms()).unwrap_or(i64::MAX));
            }
            let changed = query
                .bind(hw)
                .bind(hw)
                .bind(req.namespace.as_str())
                .bind(i64::from(lease.id))
                .bind(&lease.owner)
                .bind(i64::try_from(lease.epoch).unwrap_or(i64::MAX))
                .execute(&self.pool)
                .await
                .map_err(|e| self.err(what, e))?
                .rows_affected();
            if changed == 1 {
                Ok(())
            } else {
                Err(RegistryError::Lost {
                    namespace: req.namespace.clone(),
                    id: lease.id,
                    epoch: lease.epoch,
                })
            }
        })
        .await
    }
}

#[async_trait]
impl WorkerRegistry for SqlRegistry {
    async fn acquire(&self, req: &LeaseRequest) -> Result<Lease, RegistryError> {
        req.validate()?;
        bounded(self.call_timeout, &self.shown, async {
            self.ensure_schema().await?;
            self.claim(req).await
        })
        .await
    }

    async fn list(&self, req: &LeaseRequest) -> Result<Vec<WorkerSlot>, RegistryError> {
        req.validate()?;
        bounded(self.call_timeout, &self.shown, async {
            self.ensure_schema().await?;
            let rows = sqlx::query(&self.sql.list)
                .bind(req.namespace.as_str())
                .bind(i64::from(req.pool_size))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err("listing ids", e))?;
            rows.iter()
                .map(|row| {
                    let read = |e| self.err("reading a listed id", e);
                    let id: i64 = row.try_get(0).map_err(read)?;
                    let owner: Option<String> = row.try_get(1).map_err(read)?;
                    let epoch: i64 = row.try_get(2).map_err(read)?;
                    let left: i64 = row.try_get(3).map_err(read)?;
                    let hw: Option<i64> = row.try_get(4).map_err(read)?;
                    Ok(WorkerSlot {
                        worker_id: u32::try_from(id).unwrap_or(u32::MAX),
                        held: owner.is_some() && left > 0,
                        expires_in_ms: owner.as_ref().map(|_| left),
                        owner,
                        epoch: u64::try_from(epoch).unwrap_or(0),
                        high_water_ms: hw.and_then(|h| u64::try_from(h).ok()),
                    })
                })
                .collect()
        })
        .await
    }

    fn describe(&self) -> String {
        format!("{} (table {})", self.shown, self.table)
    }

    async fn renew(
        &self,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError> {
        self.if_held(&self.sql.renew, true, "renewing", req, lease, high_water_ms)
            .await
    }

    async fn release(
        &self,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError> {
        self.if_held(
            &self.sql.release,
            false,
            "releasing",
            req,
            lease,
            high_water_ms,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_config_is_refused_before_io() {
        let e = SqlRegistry::new(&SqlConfig::new("oracle://x")).unwrap_err();
        assert!(e.to_string().contains("scheme `oracle`"), "{e}");
        let mut c = SqlConfig::new("sqlite:x.db");
        c.table = "workers; DROP TABLE x".to_string();
        let e = SqlRegistry::new(&c).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains(
                "registry table name: `workers; DROP TABLE x` is not a plain SQL identifier"
            ) && e.contains("1..=63"),
            "{e}"
        );
    }
}
