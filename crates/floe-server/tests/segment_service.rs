//! The segment service end to end on real stores: refills, unknown tags, an outage through a
//! chaos proxy, hand-back on shutdown, all-or-nothing batches.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_core::SegmentConfig;
use floe_server::segment::{SegmentError, SegmentService, ServiceConfig};
use floe_store::segment::{SegmentStore, SqlSegmentStore, StoreOptions, TableSpec};
use floe_testkit::{
    assert_increasing, eventually_async, postgres_url, unique, with_host_port, ChaosProxy,
};

/// Upper bound of a wait for the service's background work.
const WAIT: Duration = Duration::from_secs(5);

fn table() -> TableSpec {
    TableSpec {
        table: unique("svc"),
        ..TableSpec::floe()
    }
}

async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<SqlSegmentStore> {
    let url = format!("sqlite:{}", dir.path().join("floe.db").display());
    Arc::new(
        SqlSegmentStore::connect(&url, table(), StoreOptions::default())
            .await
            .unwrap(),
    )
}

fn config() -> ServiceConfig {
    ServiceConfig {
        wait_timeout: Duration::from_secs(2),
        ..ServiceConfig::default()
    }
}

async fn take(svc: &Arc<SegmentService>, tag: &str, n: u64) -> Result<Vec<u64>, SegmentError> {
    let t = svc.take(tag, n).await?;
    let mut v = Vec::new();
    t.extend_into(&mut v);
    Ok(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_across_many_refills_unique_and_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    store.create("orders", 0, 50).await.unwrap();
    let svc = SegmentService::new(store, config()).unwrap();
    let mut ids = Vec::new();
    for i in 0..500u64 {
        ids.extend(take(&svc, "orders", 1 + i % 13).await.unwrap());
    }
    // One node's IDs increase.
    assert_increasing(&ids);
    assert_eq!(ids[0], 1, "ID 0 is never issued");
    let state = &svc.states()[0];
    assert!(state.refills > 5, "{state:?}");
    assert!(state.step > 50, "fast use doubles the step: {state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tags_are_errors_and_keep_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    store.create("known", 1, 10).await.unwrap();
    let svc = SegmentService::new(store, config()).unwrap();
    for i in 0..100_000 {
        let tag = format!("nope-{i}");
        match svc.take(&tag, 1).await {
            Err(SegmentError::UnknownTag(t)) => assert_eq!(t, tag),
            other => panic!("{other:?}"),
        }
    }
    assert!(svc.states().is_empty(), "unknown tags must not be buffered");
    take(&svc, "known", 1).await.unwrap();
    assert_eq!(svc.states().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_create_makes_unknown_tags() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let svc = SegmentService::new(
        store.clone(),
        ServiceConfig {
            auto_create: true,
            default_step: 7,
            ..config()
        },
    )
    .unwrap();
    assert_eq!(take(&svc, "fresh", 3).await.unwrap(), [1, 2, 3]);
    assert_eq!(store.tag("fresh").await.unwrap().unwrap().step, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_hands_back_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    store.create("t", 1, 1000).await.unwrap();
    let svc = SegmentService::new(store.clone(), config()).unwrap();
    let first = take(&svc, "t", 42).await.unwrap();
    assert_eq!(svc.shutdown().await, 1);
    assert!(matches!(svc.take("t", 1).await, Err(SegmentError::Closed)));
    let svc = SegmentService::new(store.clone(), config()).unwrap();
    let next = take(&svc, "t", 1).await.unwrap();
    assert_eq!(
        next[0],
        first.last().unwrap() + 1,
        "a clean restart wastes no IDs"
    );
}

/// The store behind a chaos proxy on PostgreSQL.
async fn proxied_postgres(call_timeout: Duration) -> (ChaosProxy, Arc<SqlSegmentStore>) {
    let url = postgres_url();
    let proxy = ChaosProxy::start(&floe_testkit::host_port(&url))
        .await
        .unwrap();
    let store = SqlSegmentStore::connect(
        &with_host_port(&url, proxy.addr()),
        table(),
        StoreOptions {
            max_connections: 2,
            call_timeout,
            create_table: true,
        },
    )
    .await
    .unwrap();
    (proxy, Arc::new(store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_serves_the_buffer_then_errors_then_recovers_without_restart() {
    let (proxy, store) = proxied_postgres(Duration::from_millis(500)).await;
    store.create("pay", 1, 100).await.unwrap();
    let svc = SegmentService::new(
        store.clone(),
        ServiceConfig {
            buffer: SegmentConfig {
                max_step: 100, // keep the buffer small: the outage must drain it
                ..SegmentConfig::default()
            },
            ..config()
        },
    )
    .unwrap();
    let mut seen = HashSet::new();
    // Warm: the current segment and the prefetched next one.
    for id in take(&svc, "pay", 20).await.unwrap() {
        assert!(seen.insert(id));
    }
    eventually_async(WAIT, "the next segment is prefetched", async || {
        let state = svc.states()[0].clone();
        state.next_ready.then_some(()).ok_or(format!("{state:?}"))
    })
    .await;
    proxy.cut();
    // Everything buffered is still served, without error.
    let mut served_during_outage = 0;
    let first_error = loop {
        match take(&svc, "pay", 1).await {
            Ok(ids) => {
                served_during_outage += 1;
                assert!(seen.insert(ids[0]), "duplicate {}", ids[0]);
            }
            Err(e) => break e,
        }
        assert!(served_during_outage <= 200, "the buffer should run dry");
    };
    assert!(
        served_during_outage >= 100,
        "served {served_during_outage} during the outage"
    );
    assert!(
        matches!(first_error, SegmentError::Unavailable { .. }),
        "{first_error:?}"
    );
    // Errors stay prompt while the database is down (no request hangs).
    let t = Instant::now();
    assert!(take(&svc, "pay", 1).await.is_err());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    // Heal: service resumes by itself, within about a second.
    proxy.heal();
    let healed = Instant::now();
    let ids = eventually_async(
        Duration::from_secs(5),
        "recovery after the heal",
        async || take(&svc, "pay", 1).await,
    )
    .await;
    assert!(seen.insert(ids[0]));
    assert!(
        healed.elapsed() < Duration::from_secs(2),
        "recovered after {:?}",
        healed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_cannot_be_served_takes_nothing() {
    let (proxy, store) = proxied_postgres(Duration::from_millis(500)).await;
    store.create("b", 1, 10).await.unwrap();
    let svc = SegmentService::new(
        store.clone(),
        ServiceConfig {
            buffer: SegmentConfig {
                max_step: 10,
                ..SegmentConfig::default()
            },
            ..config()
        },
    )
    .unwrap();
    assert_eq!(take(&svc, "b", 1).await.unwrap(), [1]);
    eventually_async(WAIT, "the next segment is prefetched", async || {
        let state = svc.states()[0].clone();
        state.next_ready.then_some(()).ok_or(format!("{state:?}"))
    })
    .await;
    proxy.cut();
    let held = svc.states()[0].remaining;
    assert!(held > 0);
    // A batch larger than what is held fails whole…
    assert!(take(&svc, "b", held + 5).await.is_err());
    // …and the IDs it could have taken are still there, in order, with no hole.
    let rest = take(&svc, "b", held).await.unwrap();
    assert_eq!(rest[0], 2);
    assert!(rest.windows(2).all(|w| w[1] == w[0] + 1), "{rest:?}");
}
