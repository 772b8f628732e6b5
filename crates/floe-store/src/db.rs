//! What the SQL adapters share: the dialect of a URL, lazy pools with the right per-connection
//! settings, SQLite's one-time switch to WAL, and URLs safe to print.

#[cfg(feature = "sql")]
use std::path::Path;
#[cfg(feature = "sql")]
use std::time::Duration;

#[cfg(feature = "sql")]
use sqlx::any::AnyPoolOptions;
#[cfg(feature = "sql")]
use sqlx::{AnyPool, Executor};

/// Longest SQL identifier (table or column name) Floe accepts: PostgreSQL keeps 63 bytes of a
/// name and silently cuts the rest, MySQL allows 64, SQLite more; the tightest holds on all three.
pub const MAX_IDENTIFIER_LEN: usize = 63;

/// Why a database URL or a table or column name was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbConfigError {
    /// The URL's scheme names no supported database.
    #[error(
        "URL `{url}` has scheme `{scheme}`; allowed are sqlite:, postgres:, mysql: (or mariadb:)"
    )]
    Scheme {
        /// The URL, password redacted.
        url: String,
        /// The scheme found.
        scheme: String,
    },
    /// A name written into SQL (never bound) that is not a plain identifier.
    #[error("`{0}` is not a plain SQL identifier: allowed are 1..={MAX_IDENTIFIER_LEN} ASCII letters, digits and _, not starting with a digit")]
    Identifier(String),
    /// The directory of a SQLite file could not be created.
    #[error("cannot create directory {}", dir.display())]
    CreateDir {
        /// The directory.
        dir: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    /// The driver refused the URL.
    #[error("URL `{url}` is invalid")]
    Url {
        /// The URL, password redacted.
        url: String,
        /// The driver's error.
        #[source]
        source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
    },
}

/// The one rule for table and column names, which are written into SQL statements: 1..=63 ASCII
/// letters, digits and `_`, not starting with a digit (no quoting needed on any dialect).
pub fn check_identifier(name: &str) -> Result<(), DbConfigError> {
    let plain = !name.is_empty()
        && name.len() <= MAX_IDENTIFIER_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if plain {
        Ok(())
    } else {
        Err(DbConfigError::Identifier(name.to_string()))
    }
}

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
    /// Reads the dialect from a database URL; the error names the scheme and the allowed ones.
    pub fn of_url(url: &str) -> Result<Dialect, DbConfigError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Dialect::Sqlite),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "mysql" | "mariadb" => Ok(Dialect::MySql),
            _ => Err(DbConfigError::Scheme {
                url: redact_url(url),
                scheme: scheme.to_string(),
            }),
        }
    }

    /// Rewrites `?` placeholders as PostgreSQL's `$1, $2…` (statements hold no `?` literals).
    #[cfg(feature = "sql")]
    pub(crate) fn placeholders(self, sql: &str) -> String {
        if self != Dialect::Postgres {
            return sql.to_string();
        }
        let mut out = String::with_capacity(sql.len() + 8);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    }

    /// The type a BIGINT is cast to, so every driver decodes an i64.
    #[cfg(feature = "sql")]
    pub(crate) fn bigint(self) -> &'static str {
        match self {
            Dialect::MySql => "SIGNED",
            Dialect::Sqlite | Dialect::Postgres => "BIGINT",
        }
    }

    /// The database's current time in Unix ms, as a BIGINT expression.
    #[cfg(feature = "sql")]
    pub(crate) fn now_ms(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
            Dialect::Postgres => "(extract(epoch from clock_timestamp()) * 1000)::bigint",
            // The session time zone is set to UTC on connect, so no DST hour is ambiguous.
            Dialect::MySql => "CAST(ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000) AS SIGNED)",
        }
    }
}

/// Removes the password from a URL so it can appear in errors and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{path}")
            } else {
                format!("{scheme}://{user}@{host}{path}")
            }
        }
        None => url.to_string(),
    }
}

/// Turns `sqlite:path` into a URL that creates the file, creating its directory too.
#[cfg(feature = "sql")]
fn sqlite_url(url: &str) -> Result<String, DbConfigError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:" {
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| DbConfigError::CreateDir {
                dir: dir.to_path_buf(),
                source: std::sync::Arc::new(e),
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

#[cfg(feature = "sql")]
/// A lazy pool (nothing connects until the first call, so a node starts while its database is
/// down) with each connection set up for Floe: SQLite waits on the write lock instead of
/// failing, MySQL reads times in UTC. The error names the URL without its password.
pub(crate) fn lazy_pool(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<(AnyPool, Dialect), DbConfigError> {
    let dialect = Dialect::of_url(url)?;
    sqlx::any::install_default_drivers();
    let connect_url = match dialect {
        Dialect::Sqlite => sqlite_url(url)?,
        _ => url.to_string(),
    };
    let pool = AnyPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(acquire_timeout)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                match dialect {
                    Dialect::Sqlite => conn.execute("PRAGMA busy_timeout = 5000").await?,
                    Dialect::MySql => conn.execute("SET time_zone = '+00:00'").await?,
                    Dialect::Postgres => return Ok(()),
                };
                Ok(())
            })
        })
        .connect_lazy(&connect_url)
        .map_err(|e| DbConfigError::Url {
            url: redact_url(url),
            source: std::sync::Arc::new(e),
        })?;
    Ok((pool, dialect))
}

#[cfg(feature = "sql")]
/// Switches a SQLite database to WAL, which lets readers overlap the writer. The switch needs
/// an exclusive lock that busy_timeout does not wait for, so it retries while other connections
/// hold the file; the mode is stored in the file, so this happens once per database.
pub(crate) async fn sqlite_wal(pool: &AnyPool) -> Result<(), sqlx::Error> {
    let mut tries = 0;
    loop {
        match pool.execute("PRAGMA journal_mode = WAL").await {
            Ok(_) => return Ok(()),
            Err(e) if tries >= 50 => return Err(e),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects() {
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
    fn one_identifier_rule_of_63_bytes() {
        let at_limit = "a".repeat(MAX_IDENTIFIER_LEN);
        assert!(check_identifier(&at_limit).is_ok());
        assert!(check_identifier("_leaf_alloc2").is_ok());
        for bad in [
            "a".repeat(MAX_IDENTIFIER_LEN + 1),
            String::new(),
            "2tables".into(),
            "drop table".into(),
            "t;--".into(),
            "tä".into(),
        ] {
            let e = check_identifier(&bad).unwrap_err();
            assert!(
                matches!(&e, DbConfigError::Identifier(n) if *n == bad),
                "{e:?}"
            );
            assert!(e.to_string().contains("1..=63"), "{e}");
        }
    }

    #[test]
    #[cfg(feature = "sql")]
    fn postgres_placeholders_are_numbered() {
        assert_eq!(
            Dialect::Postgres.placeholders("a = ? AND b = ?"),
            "a = $1 AND b = $2"
        );
        assert_eq!(Dialect::MySql.placeholders("a = ?"), "a = ?");
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("redis://:secret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("postgres://floe:pw@db/floe"),
            "postgres://floe:***@db/floe"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1/test"),
            "mysql://root@127.0.0.1/test"
        );
        assert_eq!(redact_url("sqlite:data/floe.db"), "sqlite:data/floe.db");
    }

    #[test]
    #[cfg(feature = "sql")]
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
