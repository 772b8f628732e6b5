//! The SQL worker-id registry against SQLite (a temporary file), PostgreSQL
//! (`FLOE_TEST_POSTGRES_URL`) and MariaDB/MySQL (`FLOE_TEST_MYSQL_URL`). A missing server fails
//! these tests. Each test uses a table of its own, dropped at the end.

mod common;

use std::sync::Arc;
use std::time::Duration;

use floe_store::registry::{SqlConfig, SqlRegistry, WorkerRegistry};
use floe_testkit::{mysql_url, postgres_url, unique, with_host_port};
use sqlx::Executor;

/// A registry on `url` using `table`.
fn registry(url: &str, table: &str, call_timeout: Duration) -> Arc<dyn WorkerRegistry> {
    let config = SqlConfig {
        table: table.to_string(),
        call_timeout,
        ..SqlConfig::new(url)
    };
    Arc::new(SqlRegistry::new(&config).unwrap())
}

/// A table of its own for one test (in a temporary SQLite file, or on a server).
struct Table {
    url: String,
    name: String,
    /// Keeps the SQLite file's directory alive.
    _dir: Option<tempfile::TempDir>,
}

impl Table {
    fn sqlite() -> Table {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("floe.db").display());
        Table {
            url,
            name: "floe_workers".to_string(),
            _dir: Some(dir),
        }
    }

    fn server(url: String) -> Table {
        Table {
            url,
            name: unique("floe_workers"),
            _dir: None,
        }
    }
}

impl common::Store for Table {
    fn registry(&self) -> Arc<dyn WorkerRegistry> {
        // Generous: 40 claimers on a loaded 2-core machine queue for SQLite's write lock.
        registry(&self.url, &self.name, Duration::from_secs(10))
    }

    async fn finish(self) {
        if self._dir.is_some() {
            return;
        }
        sqlx::any::install_default_drivers();
        if let Ok(pool) = sqlx::AnyPool::connect(&self.url).await {
            let _ = pool
                .execute(format!("DROP TABLE IF EXISTS {}", self.name).as_str())
                .await;
            pool.close().await;
        }
    }
}

common::contract!(sqlite, Table::sqlite());
common::contract!(postgres, Table::server(postgres_url()));
common::contract!(mysql, Table::server(mysql_url()));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_database_is_unavailable_within_the_call_timeout() {
    let (addr, hole) = common::black_hole().await;
    let timeout = Duration::from_millis(500);
    for url in [postgres_url(), mysql_url()] {
        let reg = registry(&with_host_port(&url, addr), "floe_workers", timeout);
        common::hung_store_is_unavailable(reg, timeout).await;
    }
    hole.abort();
}
