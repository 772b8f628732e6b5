//! The segment store on SQLite, PostgreSQL and MySQL/MariaDB (sqlx `Any`, runtime queries).

use std::time::Duration;

use async_trait::async_trait;
use floe_core::{HandBack, Segment};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::sequences::SequenceStatements;
use super::{check_tag, SegmentStore, StoreError, TagRow};
use crate::db::{lazy_pool, sqlite_wal, Dialect};

/// Table and column names, so Floe runs on Leaf's, FeatherID's or another existing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// The table.
    pub table: String,
    /// Column of the business tag (primary key).
    pub tag_column: String,
    /// Column of the end of the last claimed range.
    pub max_id_column: String,
    /// Column of the default step.
    pub step_column: String,
    /// The table of number sequence definitions declared through the admin API
    /// (`floe_numbers`); Floe's own, created beside any segment table.
    pub numbers_table: String,
}

impl TableSpec {
    /// Floe's own table, created on first start.
    pub fn floe() -> Self {
        Self::named("floe_segments", "biz_tag")
    }

    fn named(table: &str, tag: &str) -> Self {
        TableSpec {
            table: table.into(),
            tag_column: tag.into(),
            max_id_column: "max_id".into(),
            step_column: "step".into(),
            numbers_table: "floe_numbers".into(),
        }
    }

    /// A preset by name: `floe`, `leaf` (`leaf_alloc`), `featherid` (`id_segments`),
    /// `dig` (the Distributed ID Generator's `segments`).
    pub fn preset(name: &str) -> Result<Self, StoreError> {
        match name {
            "floe" => Ok(Self::floe()),
            "leaf" => Ok(Self::named("leaf_alloc", "biz_tag")),
            "featherid" => Ok(Self::named("id_segments", "biz_tag")),
            "dig" => Ok(Self::named("segments", "app_tag")),
            _ => Err(StoreError::Invalid(format!(
                "segment.schema `{name}` is unknown; allowed are floe, leaf, featherid, dig"
            ))),
        }
    }

    /// Checks the names: they must be plain identifiers, written into SQL, never bound.
    pub fn validate(&self) -> Result<(), StoreError> {
        for (key, name) in [
            ("table", &self.table),
            ("tag_column", &self.tag_column),
            ("max_id_column", &self.max_id_column),
            ("step_column", &self.step_column),
            ("numbers_table", &self.numbers_table),
        ] {
            crate::db::check_identifier(name)
                .map_err(|e| StoreError::Invalid(format!("segment.{key}: {e}")))?;
        }
        Ok(())
    }
}

/// Connection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// Pool size.
    pub max_connections: u32,
    /// Bound on every database call (acquire + statement): a hung database never hangs a
    /// refill forever.
    pub call_timeout: Duration,
    /// Create the table if it does not exist.
    pub create_table: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 4,
            call_timeout: Duration::from_secs(2),
            create_table: true,
        }
    }
}

/// The statements, written once per store.
#[derive(Debug)]
struct Statements {
    /// Moves `max_id` forward by a step, only while the sum stays within the tag's end (a
    /// BIGINT, and on SQLite only while the column holds an integer): an overflow can never
    /// wrap or turn into a REAL.
    claim: String,
    /// Why a claim matched no row: the row's `max_id` and whether it is an integer.
    diagnose: String,
    mysql_last_id: &'static str,
    select_one: String,
    select_all: String,
    insert: String,
    set_step: String,
    hand_back: String,
    create_table: String,
}

impl Statements {
    fn new(d: Dialect, s: &TableSpec) -> Self {
        let (t, tag, max, step) = (&s.table, &s.tag_column, &s.max_id_column, &s.step_column);
        let big = d.bigint();
        let cols = format!("{tag}, CAST({max} AS {big}) AS max_id, CAST({step} AS {big}) AS step");
        // SQLite stores whatever it is given in a column of a table that is not STRICT (an
        // existing Leaf table, say): a REAL max_id must stop the claim, not be rounded.
        let is_int = match d {
            Dialect::Sqlite => format!("typeof({max}) = 'integer'"),
            _ => "1 = 1".to_string(),
        };
        let guard = format!("{tag} = ? AND {max} <= ? AND {is_int}");
        let claim = match d {
            // MariaDB has no UPDATE … RETURNING: LAST_INSERT_ID(expr) keeps the new value for
            // this connection, read right after on the same connection.
            Dialect::MySql => {
                format!("UPDATE {t} SET {max} = LAST_INSERT_ID({max} + ?) WHERE {guard}")
            }
            _ => format!(
                "UPDATE {t} SET {max} = {max} + ? WHERE {guard} RETURNING CAST({max} AS {big})"
            ),
        };
        let diagnose = format!(
            "SELECT CAST({max} AS {big}), CAST(CASE WHEN {is_int} THEN 1 ELSE 0 END AS {big}) FROM {t} WHERE {tag} = ?"
        );
        // Tags are compared byte for byte on every store: MariaDB's default collation would
        // make `Orders` and `orders` one row. SQLite tables are STRICT, so a value that is not
        // an integer is refused at write time.
        let (text, int, strict) = match d {
            Dialect::Sqlite => ("TEXT", "INTEGER", " STRICT"),
            Dialect::MySql => (
                "VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
                "BIGINT",
                "",
            ),
            Dialect::Postgres => ("VARCHAR(128)", "BIGINT", ""),
        };
        let sql = |q: String| d.placeholders(&q);
        Statements {
            claim: sql(claim),
            diagnose: sql(diagnose),
            mysql_last_id: "SELECT CAST(LAST_INSERT_ID() AS SIGNED)",
            select_one: sql(format!("SELECT {cols} FROM {t} WHERE {tag} = ?")),
            select_all: format!("SELECT {cols} FROM {t} ORDER BY {tag}"),
            insert: sql(format!("INSERT INTO {t} ({tag}, {max}, {step}) VALUES (?, ?, ?)")),
            set_step: sql(format!("UPDATE {t} SET {step} = ? WHERE {tag} = ?")),
            hand_back: sql(format!("UPDATE {t} SET {max} = ? WHERE {tag} = ? AND {max} = ?")),
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} ({tag} {text} NOT NULL PRIMARY KEY, {max} {int} NOT NULL CHECK ({max} >= 0), {step} {int} NOT NULL CHECK ({step} >= 1)){strict}"
            ),
        }
    }
}

/// The segment store on a SQL database.
#[derive(Debug)]
pub struct SqlSegmentStore {
    /// The pool (lazy: the store exists while the database is down, and calls fail fast).
    pool: AnyPool,
    /// Which SQL to speak.
    dialect: Dialect,
    /// Prepared SQL text.
    sql: Statements,
    /// Prepared SQL text of the number definitions table.
    sequences: SequenceStatements,
    /// Bound on every call.
    timeout: Duration,
}

fn to_i64(what: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v)
        .map_err(|_| StoreError::Invalid(format!("{what} = {v} is out of range 0..={}", i64::MAX)))
}

/// The range `[end - step, end)` a claim returned, checked: a store that answers an end below
/// its step is broken, and the range must not be computed by wrapping arithmetic.
fn segment_ending(tag: &str, end: i64, step: i64) -> Result<Segment, StoreError> {
    let start = end.checked_sub(step).filter(|s| *s >= 0).ok_or_else(|| {
        StoreError::Invalid(format!(
            "tag `{tag}`: the store returned max_id {end} after adding {step}; the row is corrupt"
        ))
    })?;
    Ok(Segment {
        start: start as u64,
        end: end as u64,
    })
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn row(r: &AnyRow) -> Result<TagRow, StoreError> {
    let get = |i: usize| -> Result<u64, StoreError> {
        let v: i64 = r.try_get(i).map_err(unavailable)?;
        u64::try_from(v)
            .map_err(|_| StoreError::Invalid(format!("negative value {v} in the segment table")))
    };
    Ok(TagRow {
        tag: r.try_get(0).map_err(unavailable)?,
        max_id: get(1)?,
        step: get(2)?,
    })
}

impl SqlSegmentStore {
    /// Opens a store. SQLite files (and their directory) are created if missing; the table is
    /// created if `create_table` is set and the database answers (otherwise on first use).
    pub async fn connect(
        url: &str,
        spec: TableSpec,
        options: StoreOptions,
    ) -> Result<SqlSegmentStore, StoreError> {
        spec.validate()?;
        let (pool, dialect) = lazy_pool(url, options.max_connections, options.call_timeout)
            .map_err(|e| StoreError::Invalid(format!("segment.url: {}", floe_core::report(&e))))?;
        let store = SqlSegmentStore {
            pool,
            dialect,
            sql: Statements::new(dialect, &spec),
            sequences: SequenceStatements::new(dialect, &spec.numbers_table),
            timeout: options.call_timeout,
        };
        if options.create_table {
            store.ensure_table().await?;
        }
        Ok(store)
    }

    /// Creates the table if it does not exist (and switches SQLite to WAL).
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        if self.dialect == Dialect::Sqlite {
            self.timed(sqlite_wal(&self.pool)).await?;
        }
        self.timed(sqlx::query(&self.sql.create_table).execute(&self.pool))
            .await
            .map(|_| ())
    }

    /// The dialect in use.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The pool, for the definitions table.
    pub(super) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The statements of the definitions table.
    pub(super) fn sequences(&self) -> &SequenceStatements {
        &self.sequences
    }

    /// `fut` bounded by `segment.call_timeout`, its database error as `Unavailable`.
    pub(super) async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        self.timed_raw(fut).await?.map_err(unavailable)
    }

    /// `fut` bounded by `segment.call_timeout`, its database error kept for the caller to
    /// look at (a unique violation is an answer, not an outage).
    pub(super) async fn timed_raw<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<Result<T, sqlx::Error>, StoreError> {
        tokio::time::timeout(self.timeout, fut).await.map_err(|_| {
            StoreError::Unavailable(format!(
                "no answer within {:?} (segment.call_timeout)",
                self.timeout
            ))
        })
    }

    /// One guarded claim of `step` IDs inside a transaction; `None` when no row matched.
    ///
    /// The new end is served only after the commit succeeded: SQLite reports a full disk at
    /// commit, and a range read from an `UPDATE … RETURNING` whose commit failed was never
    /// stored, so the next claim would return it again.
    async fn claim_once(&self, tag: &str, step: i64, end: i64) -> Result<Option<i64>, StoreError> {
        let mut conn = self.timed(self.pool.acquire()).await?;
        let result = self.claim_on(&mut conn, tag, step, end).await;
        if result.is_err() {
            // After a failed statement or COMMIT (SQLite on a full disk) the connection may still
            // sit inside the transaction while sqlx believes it rolled back; reused, its next
            // "transaction" would be a savepoint in that one, whose commit is never durable and
            // whose write lock stalls every other connection. Closing it ends the transaction.
            conn.close_on_drop();
        }
        result
    }

    /// [`claim_once`](Self::claim_once) on one connection.
    async fn claim_on(
        &self,
        conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
        tag: &str,
        step: i64,
        end: i64,
    ) -> Result<Option<i64>, StoreError> {
        use sqlx::Connection;
        // `end - step` may be negative (a step larger than the whole range): then the guard
        // matches nothing and `claim` claims the rest.
        let limit = end - step;
        let mut tx = self.timed(conn.begin()).await?;
        let claim = sqlx::query(&self.sql.claim)
            .bind(step)
            .bind(tag)
            .bind(limit);
        let end = if self.dialect == Dialect::MySql {
            let done = self.timed(claim.execute(&mut *tx)).await?;
            if done.rows_affected() == 0 {
                None
            } else {
                let r = self
                    .timed(sqlx::query(self.sql.mysql_last_id).fetch_one(&mut *tx))
                    .await?;
                Some(r.try_get::<i64, _>(0).map_err(unavailable)?)
            }
        } else {
            // fetch_all steps the statement to its end, so its errors are seen here.
            let rows = self.timed(claim.fetch_all(&mut *tx)).await?;
            match rows.as_slice() {
                [] => None,
                [r] => Some(r.try_get::<i64, _>(0).map_err(unavailable)?),
                more => {
                    return Err(StoreError::Invalid(format!(
                        "tag `{tag}` has {} rows in the segment table; the tag column must be its primary key",
                        more.len()
                    )))
                }
            }
        };
        if end.is_some() {
            self.timed(tx.commit()).await.map_err(|e| match e {
                StoreError::Unavailable(m) => {
                    StoreError::Unavailable(format!("the claim was not committed: {m}"))
                }
                other => other,
            })?;
        }
        Ok(end)
    }

    /// The row's `max_id` and whether the column holds an integer, or `None` for no row.
    async fn diagnose(&self, tag: &str) -> Result<Option<(i64, bool)>, StoreError> {
        let r = self
            .timed(
                sqlx::query(&self.sql.diagnose)
                    .bind(tag)
                    .fetch_optional(&self.pool),
            )
            .await?;
        r.map(|r| {
            let max: i64 = r.try_get(0).map_err(unavailable)?;
            let int: i64 = r.try_get(1).map_err(unavailable)?;
            Ok((max, int == 1))
        })
        .transpose()
    }
}

/// Claims racing with other nodes are retried this often before the claim reports
/// "unavailable"; each retry follows a claim that another node won.
const CLAIM_ATTEMPTS: usize = 8;

#[async_trait]
impl SegmentStore for SqlSegmentStore {
    async fn claim_within(&self, tag: &str, step: u64, end: u64) -> Result<Segment, StoreError> {
        if step == 0 {
            return Err(StoreError::Invalid("step must be at least 1".into()));
        }
        check_tag(tag)?;
        let end = to_i64("end", end)?;
        let full = to_i64("step", step)?;
        let mut step = full;
        for _ in 0..CLAIM_ATTEMPTS {
            if let Some(got) = self.claim_once(tag, step, end).await? {
                return segment_ending(tag, got, step);
            }
            match self.diagnose(tag).await? {
                None => return Err(StoreError::UnknownTag(tag.into())),
                Some((_, false)) => {
                    return Err(StoreError::Invalid(format!(
                        "tag `{tag}`: the max_id column holds a value that is not an integer; fix the row (the segment table must hold BIGINT values)"
                    )))
                }
                Some((max, true)) if max < 0 => {
                    return Err(StoreError::Invalid(format!(
                        "tag `{tag}`: max_id {max} is negative"
                    )))
                }
                Some((max, true)) if max >= end => {
                    return Err(StoreError::Exhausted {
                        tag: tag.into(),
                        max_id: max as u64,
                        end: end as u64,
                    })
                }
                // Less than a step is left: claim the rest, so every ID up to the end is
                // served once.
                Some((max, true)) if max > end - full => step = end - max,
                // Another node moved the row between the claim and the look: try again.
                Some(_) => step = full,
            }
        }
        Err(StoreError::Unavailable(format!(
            "tag `{tag}`: {CLAIM_ATTEMPTS} claims in a row lost a race with other nodes"
        )))
    }

    async fn tag(&self, tag: &str) -> Result<Option<TagRow>, StoreError> {
        check_tag(tag)?;
        let r = self
            .timed(
                sqlx::query(&self.sql.select_one)
                    .bind(tag)
                    .fetch_optional(&self.pool),
            )
            .await?;
        r.as_ref().map(row).transpose()
    }

    async fn tags(&self) -> Result<Vec<TagRow>, StoreError> {
        let rows = self
            .timed(sqlx::query(&self.sql.select_all).fetch_all(&self.pool))
            .await?;
        rows.iter().map(row).collect()
    }

    async fn create(&self, tag: &str, start: u64, step: u64) -> Result<TagRow, StoreError> {
        check_tag(tag)?;
        if step == 0 {
            return Err(StoreError::Invalid("step must be at least 1".into()));
        }
        let q = sqlx::query(&self.sql.insert)
            .bind(tag)
            .bind(to_i64("start", start)?)
            .bind(to_i64("step", step)?)
            .execute(&self.pool);
        match self.timed_raw(q).await? {
            Ok(_) => Ok(TagRow {
                tag: tag.into(),
                max_id: start,
                step,
            }),
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                Err(StoreError::TagExists(tag.into()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn set_step(&self, tag: &str, step: u64) -> Result<TagRow, StoreError> {
        check_tag(tag)?;
        if step == 0 {
            return Err(StoreError::Invalid("step must be at least 1".into()));
        }
        let done = self
            .timed(
                sqlx::query(&self.sql.set_step)
                    .bind(to_i64("step", step)?)
                    .bind(tag)
                    .execute(&self.pool),
            )
            .await?;
        if done.rows_affected() == 0 && self.tag(tag).await?.is_none() {
            return Err(StoreError::UnknownTag(tag.into()));
        }
        self.tag(tag)
            .await?
            .ok_or_else(|| StoreError::UnknownTag(tag.into()))
    }

    async fn hand_back(&self, tag: &str, back: HandBack) -> Result<bool, StoreError> {
        let done = self
            .timed(
                sqlx::query(&self.sql.hand_back)
                    .bind(to_i64("max_id", back.new_max_id)?)
                    .bind(tag)
                    .bind(to_i64("max_id", back.expected_max_id)?)
                    .execute(&self.pool),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_identifiers() {
        let mut s = TableSpec::floe();
        s.table = "x; DROP TABLE y".into();
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("segment.table"));
        assert!(TableSpec::preset("leaf").unwrap().validate().is_ok());
        assert!(TableSpec::preset("nope").is_err());
    }
}
