//! Fault tests of the segment service over misbehaving stores (docs/reliability.md): a store
//! that hands out a range twice, and a tag that reaches the BIGINT limit. The store's own fault
//! tests (full disk, the limit on every database, the tag rule) are in
//! `crates/floe-store/tests/faults_segment.rs`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use floe_core::{HandBack, Segment};
use floe_server::segment::{SegmentError, SegmentService, ServiceConfig};
use floe_store::segment::{
    SegmentStore, SqlSegmentStore, StoreError, StoreOptions, TableSpec, TagRow,
};

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

fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite:{}", dir.join("floe.db").display())
}

const MAX: u64 = i64::MAX as u64;

/// A store that answers the same range for every claim: the service serves it once, then
/// refuses it (no ID twice), answers "unavailable", and counts no extra refill.
#[derive(Debug, Default)]
struct Liar {
    claims: AtomicU64,
}

#[async_trait]
impl SegmentStore for Liar {
    async fn claim_within(&self, _tag: &str, _step: u64, _end: u64) -> Result<Segment, StoreError> {
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
            Err(SegmentError::Unavailable { reason, .. }) => {
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
        Err(SegmentError::Exhausted(m)) => assert!(m.contains("`big` is exhausted"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
}
