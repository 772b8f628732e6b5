//! The segment store on SQLite, PostgreSQL and MySQL/MariaDB (sqlx `Any`, runtime queries).

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use floe_core::{HandBack, Segment};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use super::{SegmentStore, StoreError, TagRow};

/// The SQL dialect, from the URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `sqlite:` — the embedded default.
    Sqlite,
    /// `postgres:` / `postgresql:`.
    Postgres,
    /// `mysql:` / `mariadb:`.
    MySql,
}

impl Dialect {
    /// Reads the dialect from a database URL.
    pub fn of_url(url: &str) -> Result<Dialect, StoreError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Dialect::Sqlite),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "mysql" | "mariadb" => Ok(Dialect::MySql),
            _ => Err(StoreError::Invalid(format!(
                "segment.url `{}` has scheme `{scheme}`; allowed are sqlite:, postgres:, mysql: (or mariadb:)",
                redact(url)
            ))),
        }
    }

    /// The n-th bind placeholder (1-based).
    fn arg(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Sqlite | Dialect::MySql => "?".to_string(),
        }
    }

    /// The type a BIGINT is cast to, so every driver decodes an i64.
    fn bigint(self) -> &'static str {
        match self {
            Dialect::MySql => "SIGNED",
            Dialect::Sqlite | Dialect::Postgres => "BIGINT",
        }
    }
}

/// Hides a password in a URL for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

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

    /// Names must be plain identifiers: they are written into SQL, never bound.
    fn validate(&self) -> Result<(), StoreError> {
        for (key, name) in [
            ("table", &self.table),
            ("tag_column", &self.tag_column),
            ("max_id_column", &self.max_id_column),
            ("step_column", &self.step_column),
        ] {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit();
            if !ok {
                return Err(StoreError::Invalid(format!(
                    "segment.{key} = `{name}` is invalid: allowed are 1..=64 letters, digits and _, not starting with a digit"
                )));
            }
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
    claim: String,
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
        let claim = match d {
            // MariaDB has no UPDATE … RETURNING: LAST_INSERT_ID(expr) keeps the new value for
            // this connection, read right after on the same connection.
            Dialect::MySql => {
                format!("UPDATE {t} SET {max} = LAST_INSERT_ID({max} + ?) WHERE {tag} = ?")
            }
            _ => format!(
                "UPDATE {t} SET {max} = {max} + {} WHERE {tag} = {} RETURNING CAST({max} AS {big})",
                d.arg(1),
                d.arg(2)
            ),
        };
        let (text, int) = match d {
            Dialect::Sqlite => ("TEXT", "INTEGER"),
            _ => ("VARCHAR(128)", "BIGINT"),
        };
        Statements {
            claim,
            mysql_last_id: "SELECT CAST(LAST_INSERT_ID() AS SIGNED)",
            select_one: format!("SELECT {cols} FROM {t} WHERE {tag} = {}", d.arg(1)),
            select_all: format!("SELECT {cols} FROM {t} ORDER BY {tag}"),
            insert: format!(
                "INSERT INTO {t} ({tag}, {max}, {step}) VALUES ({}, {}, {})",
                d.arg(1),
                d.arg(2),
                d.arg(3)
            ),
            set_step: format!("UPDATE {t} SET {step} = {} WHERE {tag} = {}", d.arg(1), d.arg(2)),
            hand_back: format!(
                "UPDATE {t} SET {max} = {} WHERE {tag} = {} AND {max} = {}",
                d.arg(1),
                d.arg(2),
                d.arg(3)
            ),
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} ({tag} {text} NOT NULL PRIMARY KEY, {max} {int} NOT NULL, {step} {int} NOT NULL)"
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
    /// Bound on every call.
    timeout: Duration,
}

fn to_i64(what: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v)
        .map_err(|_| StoreError::Invalid(format!("{what} = {v} is out of range 0..={}", i64::MAX)))
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
        let dialect = Dialect::of_url(url)?;
        sqlx::any::install_default_drivers();
        let mut url = url.to_string();
        if dialect == Dialect::Sqlite {
            url = sqlite_url(&url)?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.call_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL lets readers and the one writer overlap; the busy timeout makes
                        // concurrent claimers queue instead of failing with SQLITE_BUSY.
                        conn.execute("PRAGMA journal_mode=WAL").await?;
                        conn.execute("PRAGMA busy_timeout=5000").await?;
                    }
                    Ok(())
                })
            })
            .connect_lazy(&url)
            .map_err(|e| StoreError::Invalid(format!("segment.url `{}`: {e}", redact(&url))))?;
        let store = SqlSegmentStore {
            pool,
            dialect,
            sql: Statements::new(dialect, &spec),
            timeout: options.call_timeout,
        };
        if options.create_table {
            store.ensure_table().await?;
        }
        Ok(store)
    }

    /// Creates the table if it does not exist.
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        self.timed(sqlx::query(&self.sql.create_table).execute(&self.pool))
            .await
            .map(|_| ())
    }

    /// The dialect in use.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {:?} (segment.call_timeout)",
                self.timeout
            ))),
        }
    }

    async fn claim_mysql(&self, tag: &str, step: i64) -> Result<i64, StoreError> {
        let mut conn = self.timed(self.pool.acquire()).await?;
        let done = self
            .timed(
                sqlx::query(&self.sql.claim)
                    .bind(step)
                    .bind(tag)
                    .execute(&mut *conn),
            )
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::UnknownTag(tag.into()));
        }
        let r = self
            .timed(sqlx::query(self.sql.mysql_last_id).fetch_one(&mut *conn))
            .await?;
        r.try_get(0).map_err(unavailable)
    }
}

/// Turns `sqlite:path` into a URL that creates the file, creating its directory too.
fn sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:" {
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Invalid(format!(
                    "segment.url: cannot create directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
    }
    let query = if query.contains("mode=") {
        query.to_string()
    } else if query.is_empty() {
        "mode=rwc".to_string()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

#[async_trait]
impl SegmentStore for SqlSegmentStore {
    async fn claim(&self, tag: &str, step: u64) -> Result<Segment, StoreError> {
        if step == 0 {
            return Err(StoreError::Invalid("step must be at least 1".into()));
        }
        let step_i = to_i64("step", step)?;
        let end = if self.dialect == Dialect::MySql {
            self.claim_mysql(tag, step_i).await?
        } else {
            let r = self
                .timed(
                    sqlx::query(&self.sql.claim)
                        .bind(step_i)
                        .bind(tag)
                        .fetch_optional(&self.pool),
                )
                .await?
                .ok_or_else(|| StoreError::UnknownTag(tag.into()))?;
            r.try_get::<i64, _>(0).map_err(unavailable)?
        };
        let end = u64::try_from(end)
            .map_err(|_| StoreError::Invalid(format!("tag `{tag}`: max_id {end} is negative")))?;
        Ok(Segment {
            start: end - step,
            end,
        })
    }

    async fn tag(&self, tag: &str) -> Result<Option<TagRow>, StoreError> {
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
        if tag.is_empty() || tag.len() > 128 {
            return Err(StoreError::Invalid(format!(
                "tag `{tag}` is invalid: allowed are 1..=128 bytes"
            )));
        }
        if step == 0 {
            return Err(StoreError::Invalid("step must be at least 1".into()));
        }
        let q = sqlx::query(&self.sql.insert)
            .bind(tag)
            .bind(to_i64("start", start)?)
            .bind(to_i64("step", step)?)
            .execute(&self.pool);
        match tokio::time::timeout(self.timeout, q).await {
            Ok(Ok(_)) => Ok(TagRow {
                tag: tag.into(),
                max_id: start,
                step,
            }),
            Ok(Err(e))
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                Err(StoreError::TagExists(tag.into()))
            }
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {:?} (segment.call_timeout)",
                self.timeout
            ))),
        }
    }

    async fn set_step(&self, tag: &str, step: u64) -> Result<TagRow, StoreError> {
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
    fn dialects_and_redaction() {
        assert_eq!(
            Dialect::of_url("sqlite:data/floe.db").unwrap(),
            Dialect::Sqlite
        );
        assert_eq!(
            Dialect::of_url("postgresql://u@h/db").unwrap(),
            Dialect::Postgres
        );
        assert_eq!(Dialect::of_url("mariadb://u@h/db").unwrap(), Dialect::MySql);
        let e = Dialect::of_url("oracle://u:secret@h/db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("u:***@h") && !e.contains("secret"), "{e}");
    }

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

    #[test]
    fn sqlite_urls_create_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.db");
        let url = sqlite_url(&format!("sqlite:{}", path.display())).unwrap();
        assert_eq!(url, format!("sqlite://{}?mode=rwc", path.display()));
        assert!(dir.path().join("sub").is_dir());
        assert_eq!(
            sqlite_url("sqlite::memory:").unwrap(),
            "sqlite://:memory:?mode=rwc"
        );
    }
}
