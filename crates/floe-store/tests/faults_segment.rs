//! Fault tests of the segment store (docs/reliability.md): a full disk under the SQLite store, a
//! tag near 2^63 on every store, tags that differ only in case or hold a NUL, a non-integer
//! `max_id` in an old table. The service over a lying or exhausted store is tested in
//! `crates/floe-server/tests/faults_segment.rs`.

use std::collections::HashSet;
use std::time::Duration;

use floe_core::Segment;
use floe_store::segment::{SegmentStore, SqlSegmentStore, StoreError, StoreOptions, TableSpec};
use floe_testkit::{mysql_url, postgres_url, unique, Tmpfs};

fn spec(table: &str) -> TableSpec {
    TableSpec {
        table: table.into(),
        ..TableSpec::floe()
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        max_connections: 4,
        call_timeout: Duration::from_secs(10),
        create_table: true,
    }
}

async fn open(url: &str, table: &str) -> SqlSegmentStore {
    SqlSegmentStore::connect(url, spec(table), options())
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

async fn drop_table(url: &str, table: &str) {
    if url.starts_with("sqlite:") {
        return;
    }
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await
        .unwrap();
}

fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite:{}", dir.join("floe.db").display())
}

const MAX: u64 = i64::MAX as u64;

/// A tag 2,500 below the BIGINT limit with step 1,000: two full claims, then the 500 left,
/// then `Exhausted` — never a wrapped, repeated or REAL range.
async fn near_the_limit(url: &str) {
    let table = unique("near");
    let store = open(url, &table).await;
    store.create("big", MAX - 2500, 1000).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(store.claim("big", 1000).await.unwrap());
    }
    assert_eq!(
        got,
        [
            Segment {
                start: MAX - 2500,
                end: MAX - 1500
            },
            Segment {
                start: MAX - 1500,
                end: MAX - 500
            },
            Segment {
                start: MAX - 500,
                end: MAX
            },
        ],
        "{url}"
    );
    for _ in 0..2 {
        match store.claim("big", 1000).await {
            Err(e @ StoreError::Exhausted { .. }) => {
                let text = e.to_string();
                assert!(text.contains("`big`") && text.contains("2^63-1"), "{text}");
            }
            other => panic!("{url}: expected Exhausted, got {other:?}"),
        }
    }
    assert_eq!(store.tag("big").await.unwrap().unwrap().max_id, MAX);
    drop_table(url, &table).await;
}

#[tokio::test]
async fn sqlite_tag_near_the_limit_is_served_to_the_end_then_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    near_the_limit(&sqlite_url(dir.path())).await;
}

#[tokio::test]
async fn postgres_tag_near_the_limit_is_served_to_the_end_then_exhausted() {
    near_the_limit(&postgres_url()).await;
}

#[tokio::test]
async fn mysql_tag_near_the_limit_is_served_to_the_end_then_exhausted() {
    near_the_limit(&mysql_url()).await;
}

/// `Orders` and `orders` are two tags on every store; a NUL or an over-long tag is refused
/// with the same `Invalid` error on every store, before the database sees it.
async fn one_tag_rule(url: &str) {
    let table = unique("tags");
    let store = open(url, &table).await;
    store.create("Orders", 100, 10).await.unwrap();
    store.create("orders", 5000, 10).await.unwrap();
    assert_eq!(store.claim("Orders", 10).await.unwrap().start, 100, "{url}");
    assert_eq!(
        store.claim("orders", 10).await.unwrap().start,
        5000,
        "{url}"
    );
    let long = "x".repeat(129);
    for bad in ["nul\u{0}x", "", long.as_str()] {
        for result in [
            store.claim(bad, 1).await.map(|_| ()),
            store.create(bad, 1, 1).await.map(|_| ()),
            store.tag(bad).await.map(|_| ()),
        ] {
            match result {
                Err(StoreError::Invalid(m)) => assert!(m.contains("1..=128 bytes"), "{m}"),
                other => panic!("{url}: {bad:?} gave {other:?}"),
            }
        }
    }
    drop_table(url, &table).await;
}

#[tokio::test]
async fn sqlite_has_one_tag_rule() {
    let dir = tempfile::tempdir().unwrap();
    one_tag_rule(&sqlite_url(dir.path())).await;
}

#[tokio::test]
async fn postgres_has_one_tag_rule() {
    one_tag_rule(&postgres_url()).await;
}

#[tokio::test]
async fn mysql_has_one_tag_rule() {
    one_tag_rule(&mysql_url()).await;
}

/// An old (not STRICT) SQLite table whose `max_id` holds a REAL: the claim is refused and the
/// row stays as it was, instead of SQLite's float arithmetic repeating ranges.
#[tokio::test]
async fn sqlite_non_integer_max_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE legacy (biz_tag TEXT PRIMARY KEY, max_id, step)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO legacy VALUES ('t', 9.3e18, 1000)")
        .execute(&pool)
        .await
        .unwrap();
    let store = SqlSegmentStore::connect(
        &url,
        spec("legacy"),
        StoreOptions {
            create_table: false,
            ..options()
        },
    )
    .await
    .unwrap();
    match store.claim("t", 1000).await {
        Err(StoreError::Invalid(m)) => assert!(m.contains("not an integer"), "{m}"),
        other => panic!("{other:?}"),
    }
    let kind: String = sqlx::query_scalar("SELECT typeof(max_id) FROM legacy")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kind, "real", "the row was not touched");
}

/// The default store on a full disk (a 256 KiB tmpfs): every claim either fails or returns a
/// range no other claim returned, and once space is back the claims go on above all of them.
#[tokio::test]
async fn sqlite_full_disk_never_repeats_a_range() {
    let fs = Tmpfs::mount(256);
    let url = sqlite_url(fs.path());
    let store = open(&url, "floe_segments").await;
    store.create("orders", 1, 10).await.unwrap();
    store.claim("orders", 10).await.unwrap();
    let filler = fs.fill();
    let (mut seen, mut failures) = (Vec::new(), 0);
    for i in 0..300u64 {
        match store.claim("orders", 10 + i % 7).await {
            Ok(seg) => seen.push(seg),
            Err(StoreError::Unavailable(m)) => {
                failures += 1;
                if failures == 1 {
                    assert!(
                        m.contains("full") || m.contains("disk") || m.contains("space"),
                        "the error names the cause: {m}"
                    );
                }
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert!(
        failures > 0,
        "the disk never filled: the test proves nothing"
    );
    std::fs::remove_file(filler).unwrap();
    let after = store.claim("orders", 10).await.unwrap();
    seen.push(after);
    let mut ids = HashSet::new();
    for s in &seen {
        for id in s.start..s.end {
            assert!(ids.insert(id), "ID {id} was claimed twice: {seen:?}");
        }
    }
    let highest = seen.iter().map(|s| s.end).max().unwrap();
    assert_eq!(
        after.end, highest,
        "the first claim after the outage is above all"
    );
}
