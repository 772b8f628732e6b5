//! Segment stores against real databases: a SQLite file, PostgreSQL and MariaDB on loopback
//! (URLs from FLOE_TEST_POSTGRES_URL / FLOE_TEST_MYSQL_URL). A missing database fails the test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use floe_core::{HandBack, Segment};
use floe_store::segment::{SegmentStore, SqlSegmentStore, StoreError, StoreOptions, TableSpec};

fn pg_url() -> String {
    std::env::var("FLOE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn mysql_url() -> String {
    std::env::var("FLOE_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A table name no other test (or earlier run) uses.
fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn spec(table: &str) -> TableSpec {
    TableSpec {
        table: table.into(),
        ..TableSpec::floe()
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        max_connections: 8,
        call_timeout: Duration::from_secs(10),
        create_table: true,
    }
}

enum Db {
    Sqlite(tempfile::TempDir),
    Postgres,
    MySql,
}

impl Db {
    fn url(&self) -> String {
        match self {
            Db::Sqlite(dir) => format!("sqlite:{}", dir.path().join("floe.db").display()),
            Db::Postgres => pg_url(),
            Db::MySql => mysql_url(),
        }
    }
}

async fn open(db: &Db, table: &str) -> SqlSegmentStore {
    SqlSegmentStore::connect(&db.url(), spec(table), options())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", db.url()))
}

async fn drop_table(db: &Db, table: &str) {
    if let Db::Sqlite(_) = db {
        return;
    }
    sqlx::any::install_default_drivers();
    if let Ok(pool) = sqlx::AnyPool::connect(&db.url()).await {
        let _ = sqlx::query(&format!("DROP TABLE {table}"))
            .execute(&pool)
            .await;
    }
}

/// 8 claimers × 25 claims with steps of 1..=9: every range disjoint, and together they tile
/// `[start, max_id)` exactly.
async fn concurrent_claims_are_disjoint(db: Db) {
    let table = unique("seg");
    let store = Arc::new(open(&db, &table).await);
    store.create("orders", 1, 10).await.unwrap();
    let tasks: Vec<_> = (0..8u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for j in 0..25u64 {
                    let step = 1 + (i + j) % 9;
                    let seg = store.claim("orders", step).await.unwrap();
                    assert_eq!(seg.len(), step);
                    got.push(seg);
                }
                got
            })
        })
        .collect();
    let mut all: Vec<Segment> = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by_key(|s| s.start);
    assert_eq!(all[0].start, 1, "the custom start is honoured");
    for w in all.windows(2) {
        assert_eq!(w[0].end, w[1].start, "ranges overlap or leave a gap: {w:?}");
    }
    let row = store.tag("orders").await.unwrap().unwrap();
    assert_eq!(row.max_id, all.last().unwrap().end);
    drop_table(&db, &table).await;
}

/// Create, look up, change the step, unknown tags, duplicates, hand-back.
async fn admin_and_hand_back(db: Db) {
    let table = unique("seg");
    let store = open(&db, &table).await;
    assert!(matches!(store.claim("nope", 10).await, Err(StoreError::UnknownTag(t)) if t == "nope"));
    assert_eq!(store.tag("nope").await.unwrap(), None);
    store.create("a", 1000, 100).await.unwrap();
    assert!(matches!(
        store.create("a", 0, 1).await,
        Err(StoreError::TagExists(_))
    ));
    store.create("b", 0, 5).await.unwrap();
    let names: Vec<String> = store
        .tags()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.tag)
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(store.set_step("a", 250).await.unwrap().step, 250);
    assert!(matches!(
        store.set_step("zz", 1).await,
        Err(StoreError::UnknownTag(_))
    ));
    // Adaptive steps: each claim takes the step the node asks for, not the row's default.
    assert_eq!(
        store.claim("a", 100).await.unwrap(),
        Segment {
            start: 1000,
            end: 1100
        }
    );
    assert_eq!(
        store.claim("a", 400).await.unwrap(),
        Segment {
            start: 1100,
            end: 1500
        }
    );
    // Hand back the tail: works while nobody claimed after us…
    let back = HandBack {
        expected_max_id: 1500,
        new_max_id: 1234,
    };
    assert!(store.hand_back("a", back).await.unwrap());
    assert_eq!(
        store.claim("a", 10).await.unwrap(),
        Segment {
            start: 1234,
            end: 1244
        }
    );
    // …and is refused once someone did.
    assert!(!store.hand_back("a", back).await.unwrap());
    assert_eq!(store.tag("a").await.unwrap().unwrap().max_id, 1244);
    drop_table(&db, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_claims_are_disjoint() {
    concurrent_claims_are_disjoint(Db::Sqlite(tempfile::tempdir().unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_claims_are_disjoint() {
    concurrent_claims_are_disjoint(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_concurrent_claims_are_disjoint() {
    concurrent_claims_are_disjoint(Db::MySql).await;
}

#[tokio::test]
async fn sqlite_admin_and_hand_back() {
    admin_and_hand_back(Db::Sqlite(tempfile::tempdir().unwrap())).await;
}

#[tokio::test]
async fn postgres_admin_and_hand_back() {
    admin_and_hand_back(Db::Postgres).await;
}

#[tokio::test]
async fn mysql_admin_and_hand_back() {
    admin_and_hand_back(Db::MySql).await;
}

/// Runs on a table created with another system's own DDL, found by its preset.
async fn foreign_schema(url: String, ddl: &str, table: &str, preset: &str, insert: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query(&ddl.replace("TABLE_NAME", table))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&insert.replace("TABLE_NAME", table))
        .execute(&pool)
        .await
        .unwrap();
    let mut spec = TableSpec::preset(preset).unwrap();
    spec.table = table.into();
    let store = SqlSegmentStore::connect(
        &url,
        spec,
        StoreOptions {
            create_table: false,
            ..options()
        },
    )
    .await
    .unwrap();
    let row = store.tag("leaf-segment-test").await.unwrap().unwrap();
    assert_eq!((row.max_id, row.step), (1, 2000));
    assert_eq!(
        store.claim("leaf-segment-test", 2000).await.unwrap(),
        Segment {
            start: 1,
            end: 2001
        }
    );
    let _ = sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await;
}

/// Leaf's published DDL (MySQL) with its sample row.
const LEAF_DDL: &str = "CREATE TABLE TABLE_NAME (
  biz_tag varchar(128) NOT NULL DEFAULT '',
  max_id bigint(20) NOT NULL DEFAULT '1',
  step int(11) NOT NULL,
  description varchar(256) DEFAULT NULL,
  update_time timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (biz_tag)
) ENGINE=InnoDB";
const LEAF_ROW: &str = "INSERT INTO TABLE_NAME (biz_tag, max_id, step, description) VALUES ('leaf-segment-test', 1, 2000, 'Test leaf Segment Mode Get Id')";

#[tokio::test]
async fn runs_on_leafs_own_table() {
    foreign_schema(
        mysql_url(),
        LEAF_DDL,
        &unique("leaf_alloc"),
        "leaf",
        LEAF_ROW,
    )
    .await;
    // Leaf's table on PostgreSQL, as Leaf's PostgreSQL users create it.
    let pg_ddl = "CREATE TABLE TABLE_NAME (biz_tag varchar(128) NOT NULL DEFAULT '' PRIMARY KEY, max_id bigint NOT NULL DEFAULT 1, step int NOT NULL, description varchar(256) DEFAULT NULL, update_time timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP)";
    foreign_schema(pg_url(), pg_ddl, &unique("leaf_alloc"), "leaf", LEAF_ROW).await;
}

#[tokio::test]
async fn runs_on_featherids_own_table() {
    // FeatherID's DDL from its README (seed 004).
    let ddl = "CREATE TABLE TABLE_NAME (
  `biz_tag` varchar(64) NOT NULL,
  `max_id` bigint NOT NULL DEFAULT '0',
  `step` int NOT NULL DEFAULT '1000',
  `update_time` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`biz_tag`)
)";
    let row =
        "INSERT INTO TABLE_NAME (biz_tag, max_id, step) VALUES ('leaf-segment-test', 1, 2000)";
    foreign_schema(mysql_url(), ddl, &unique("id_segments"), "featherid", row).await;
}

#[tokio::test]
async fn a_dead_database_is_a_timely_error() {
    // Nothing listens on port 1: every call fails fast with Unavailable, none hangs.
    let store = SqlSegmentStore::connect(
        "postgres://postgres@127.0.0.1:1/test",
        spec("unused"),
        StoreOptions {
            create_table: false,
            call_timeout: Duration::from_millis(500),
            ..options()
        },
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(
        store.claim("x", 1).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(3));
}
