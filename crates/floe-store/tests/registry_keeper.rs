//! The lease keeper on the in-memory registry, in tokio's paused virtual time: renewal cadence,
//! the exact fence, recovery, loss, exhaustion and shutdown. (The fence against real stores behind
//! a chaos proxy is in `registry_redis.rs` and `registry_sql.rs`.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{record, request, wait_state};
use floe_store::registry::memory::Outage;
use floe_store::registry::{
    KeeperConfig, LeaseKeeper, LeaseState, MemoryRegistry, RegistryError, StaticRegistry,
    WorkerIdSource, WorkerRegistry,
};
use tokio::time::{sleep, Instant};

const TTL: Duration = Duration::from_secs(10);

fn keeper(reg: Arc<dyn WorkerRegistry>, ns: &str, pool: u32, mark: u64) -> LeaseKeeper {
    LeaseKeeper::start(
        reg,
        request(ns, pool, TTL),
        KeeperConfig::for_ttl(TTL),
        Arc::new(move || mark),
    )
    .unwrap()
}

fn fence_of(state: &LeaseState) -> Option<Instant> {
    match state {
        LeaseState::Held { fence_deadline, .. } => *fence_deadline,
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn renews_every_third_of_the_ttl_within_the_round_trip_budget() {
    let reg = Arc::new(MemoryRegistry::default());
    let k = keeper(reg.clone(), "ns", 4, 42);
    let lease = k.wait_held().await.unwrap();
    sleep(Duration::from_secs(60)).await;
    // One acquire, then a renewal every ttl/3: 18 a minute for a 10 s ttl.
    let trips = k.round_trips();
    assert!(
        (18..=20).contains(&trips),
        "{trips} round trips in a minute"
    );
    let state = k.state();
    assert!(state.may_issue(Instant::now()), "{state:?}");
    assert_eq!(state.lease(), Some(&lease));
    assert_eq!(reg.high_water("ns", lease.id), Some(42));
}

/// Cuts the store off after the first renewal and checks the node stops at its fence.
async fn fences_on_time(outage: Outage, call_timeout: Duration) {
    let reg = Arc::new(MemoryRegistry::new(call_timeout));
    let k = keeper(reg.clone(), "ns", 4, 7);
    let log = record(&k);
    let lease = k.wait_held().await.unwrap();
    let first_fence = fence_of(&k.state()).unwrap();
    sleep(Duration::from_secs(4)).await; // the first renewal went out at ttl/3
    let fence = fence_of(&k.state()).unwrap();
    // The renewal went out at ttl/3 (timers fire on whole milliseconds).
    let moved = fence - first_fence;
    assert!(
        moved >= TTL / 3 && moved <= TTL / 3 + Duration::from_millis(1),
        "{moved:?}"
    );
    reg.set_outage(Some(outage));
    wait_state(&k, TTL, "fenced", |s| !matches!(s, LeaseState::Held { .. })).await;
    let left = Instant::now();
    assert!(
        left <= fence && fence - left <= Duration::from_millis(2),
        "the node stops at its fence, not {:?} before",
        fence - left
    );
    let first_out = log
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.state.clone())
        .skip_while(|s| matches!(s, LeaseState::Held { .. }))
        .find(|s| !matches!(s, LeaseState::Held { .. }))
        .unwrap();
    assert!(!first_out.may_issue(fence));
    assert!(
        matches!(&first_out, LeaseState::Acquiring { last_error: Some(e) } if e.contains("fence")),
        "{first_out:?}"
    );
    // Before the fence, the keeper retried the renewal several times.
    assert!(k.round_trips() >= 4, "{}", k.round_trips());

    // The store comes back before anyone took the id: the node keeps it.
    reg.set_outage(None);
    // A renewal attempt that hung during the outage first runs into its call timeout.
    let back = wait_state(&k, call_timeout + TTL * 2, "held again", |s| {
        matches!(s, LeaseState::Held { .. })
    })
    .await;
    assert_eq!(back.lease(), Some(&lease), "same id, same epoch");
    k.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn refused_registry_fences_on_time_then_recovers_the_same_id() {
    fences_on_time(Outage::Refuse, Duration::from_secs(2)).await;
}

#[tokio::test(start_paused = true)]
async fn hung_registry_fences_on_time_even_with_a_long_call_timeout() {
    fences_on_time(Outage::Hang, Duration::from_secs(30)).await;
}

#[tokio::test(start_paused = true)]
async fn lost_lease_is_replaced_by_another_id() {
    let reg = Arc::new(MemoryRegistry::default());
    let k = keeper(reg.clone(), "ns", 4, 1);
    let lease = k.wait_held().await.unwrap();
    assert_eq!(lease.id, 0);
    // The store hands the id to someone else behind the node's back (an operator, a bug).
    reg.release(&request("ns", 4, TTL), &lease, 0)
        .await
        .unwrap();
    let thief = reg.acquire(&request("ns", 4, TTL)).await.unwrap();
    assert_eq!(thief.id, 0);
    let after = wait_state(&k, TTL, "re-acquired", |s| {
        s.lease().is_some_and(|l| l.id != 0)
    })
    .await;
    assert_eq!(after.lease().unwrap().id, 1);
    k.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn exhausted_pool_is_retried_until_an_id_frees() {
    let reg = Arc::new(MemoryRegistry::default());
    let a = keeper(reg.clone(), "ns", 1, 777);
    a.wait_held().await.unwrap();
    let b = keeper(reg.clone(), "ns", 1, 1);
    let state = wait_state(&b, TTL, "exhausted", |s| {
        matches!(s, LeaseState::Exhausted { .. })
    })
    .await;
    let LeaseState::Exhausted { retry_in } = state else {
        unreachable!()
    };
    assert!(retry_in <= TTL, "{retry_in:?}");
    sleep(TTL * 3).await;
    assert!(matches!(b.state(), LeaseState::Exhausted { .. }));
    a.shutdown().await.unwrap();
    let lease = tokio::time::timeout(TTL, b.wait_held())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.id, 0);
    assert_eq!(lease.previous_high_water_ms, Some(777));
    b.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_issuing_then_hands_the_id_back() {
    let reg = Arc::new(MemoryRegistry::default());
    let k = keeper(reg.clone(), "ns", 2, 1_234);
    let log = record(&k);
    let lease = k.wait_held().await.unwrap();
    assert!(reg.holder("ns", lease.id).is_some());
    k.shutdown().await.unwrap();
    tokio::task::yield_now().await;
    assert!(matches!(
        log.lock().unwrap().last().unwrap().state,
        LeaseState::Stopped
    ));
    assert_eq!(reg.holder("ns", lease.id), None);
    assert_eq!(reg.high_water("ns", lease.id), Some(1_234));
}

#[tokio::test(start_paused = true)]
async fn static_ids_need_no_renewals_and_no_fence() {
    let reg = Arc::new(StaticRegistry::new(5, WorkerIdSource::Config));
    let k = keeper(reg, "ns", 32, 1);
    let lease = k.wait_held().await.unwrap();
    assert_eq!(lease.id, 5);
    assert_eq!(fence_of(&k.state()), None);
    sleep(Duration::from_secs(600)).await;
    assert!(k.state().may_issue(Instant::now()));
    assert_eq!(k.round_trips(), 1);
    k.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_impossible_config_fails_the_keeper() {
    let reg = Arc::new(StaticRegistry::new(40, WorkerIdSource::FloeEnv));
    let k = keeper(reg, "ns", 32, 1);
    let e = k.wait_held().await.unwrap_err();
    assert!(matches!(e, RegistryError::Config(_)), "{e:?}");
    assert!(
        e.to_string().contains("worker id 40 (from FLOE_WORKER_ID)"),
        "{e}"
    );
    assert!(matches!(k.state(), LeaseState::Failed(_)));
    k.shutdown().await.unwrap();

    let bad = KeeperConfig {
        margin: TTL,
        ..KeeperConfig::for_ttl(TTL)
    };
    let e = LeaseKeeper::start(
        Arc::new(MemoryRegistry::default()),
        request("ns", 4, TTL),
        bad,
        Arc::new(|| 0),
    )
    .unwrap_err();
    assert!(e.to_string().contains("at most half the ttl"), "{e}");

    // genid: max_drift 1 s plus one 1 s tick must fit in the margin.
    let genid = KeeperConfig::for_ttl(TTL).with_min_margin(Duration::from_secs(2));
    assert_eq!(genid.margin, Duration::from_secs(2));
    assert_eq!(
        KeeperConfig::for_ttl(TTL)
            .with_min_margin(Duration::from_millis(5))
            .margin,
        Duration::from_secs(1)
    );
}
