//! Fault tests of the segment store and service (docs/reliability.md): a full disk under the
//! SQLite store, a tag near 2^63 on every store, tags that differ only in case or hold a NUL,
//! a non-integer `max_id` in an old table, and a store that hands out a range twice.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use floe_core::{HandBack, Segment};
use floe_store::segment::{
    SegmentService, SegmentStore, ServiceConfig, ServiceError, SqlSegmentStore, StoreError,
    StoreOptions, TableSpec, TagRow,
};
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

/// A store that answers the same range for every claim: the service serves it once, then
/// refuses it (no ID twice), answers "unavailable", and counts no extra refill.
#[derive(Debug, Default)]
struct Liar {
    claims: AtomicU64,
}

#[async_trait]
impl SegmentStore for Liar {
    async fn claim(&self, _tag: &str, _step: u64) -> Result<Segment, StoreError> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        Ok(Segment { start: 1, end: 11 })
    }
    async fn tag(&self, tag: &str) -> Result<Option<TagRow>, StoreError> {
        Ok(Some(TagRow {
            tag: tag.into(),
            max_id: 1,
            step: 10,
        }))
    }
    async fn tags(&self) -> Result<Vec<TagRow>, StoreError> {
        Ok(Vec::new())
    }
    async fn create(&self, tag: &str, _start: u64, _step: u64) -> Result<TagRow, StoreError> {
        Err(StoreError::TagExists(tag.into()))
    }
    async fn set_step(&self, tag: &str, _step: u64) -> Result<TagRow, StoreError> {
        Err(StoreError::UnknownTag(tag.into()))
    }
    async fn hand_back(&self, _tag: &str, _back: HandBack) -> Result<bool, StoreError> {
        Ok(false)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_repeats_a_range_never_causes_a_duplicate() {
    let liar = Arc::new(Liar::default());
    let svc = SegmentService::new(
        liar.clone(),
        ServiceConfig {
            wait_timeout: Duration::from_millis(500),
            retry_backoff: (Duration::from_millis(5), Duration::from_millis(20)),
            ..ServiceConfig::default()
        },
    )
    .unwrap();
    let mut ids = HashSet::new();
    let mut refused = 0;
    for _ in 0..40 {
        match svc.take("t", 1).await {
            Ok(t) => {
                for id in t.iter() {
                    assert!(ids.insert(id), "ID {id} served twice");
                }
            }
            Err(ServiceError::Unavailable { reason, .. }) => {
                assert!(reason.contains("went backwards"), "{reason}");
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ids.len(), 10, "the one honest range is served whole");
    assert_eq!(refused, 30);
    assert!(
        liar.claims.load(Ordering::SeqCst) >= 2,
        "the repeat was tried"
    );
    svc.shutdown().await;
}

/// Through the service: the rest of the tag is served, then `Exhausted` at once (no waiting
/// for refills that can never come).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_tag_is_a_final_error_through_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&sqlite_url(dir.path()), "floe_segments").await);
    store.create("big", MAX - 25, 10).await.unwrap();
    let svc = SegmentService::new(store, ServiceConfig::default()).unwrap();
    let mut ids = Vec::new();
    for _ in 0..25 {
        ids.extend(svc.take("big", 1).await.unwrap().iter());
    }
    assert_eq!(ids, (MAX - 25..MAX).collect::<Vec<_>>());
    let started = std::time::Instant::now();
    match svc.take("big", 1).await {
        Err(ServiceError::Exhausted(m)) => assert!(m.contains("`big` is exhausted"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
}
