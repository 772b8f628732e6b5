//! The lease keeper (`floe_server::keeper`): on the in-memory registry in tokio's paused virtual
//! time (renewal cadence, the exact fence, recovery, loss, exhaustion, shutdown), and the fencing
//! scenario against real PostgreSQL, MariaDB and Redis behind a chaos proxy. A missing server fails
//! these tests.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use floe_server::keeper::{KeeperConfig, LeaseKeeper, LeaseState};
use floe_store::registry::memory::Outage;
use floe_store::registry::{
    LeaseRequest, MemoryRegistry, RedisConfig, RedisRegistry, RegistryError, SqlConfig,
    SqlRegistry, StaticRegistry, WorkerIdSource, WorkerRegistry,
};
use floe_testkit::{
    consistently_async, eventually_async, host_port, mysql_url, postgres_url, redis_url, unique,
    with_host_port, ChaosProxy,
};
use sqlx::Executor;
use tokio::time::{sleep, timeout, Instant};

fn request(namespace: &str, pool_size: u32, ttl: Duration) -> LeaseRequest {
    LeaseRequest::new(namespace, pool_size, ttl)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

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

/// One state change seen on a keeper's channel.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    state: LeaseState,
}

/// Records every state a keeper publishes, with the instant it was seen.
fn record(keeper: &LeaseKeeper) -> Arc<Mutex<Vec<Seen>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut rx = keeper.subscribe();
    let out = log.clone();
    tokio::spawn(async move {
        loop {
            let state = rx.borrow_and_update().clone();
            out.lock().unwrap().push(Seen {
                at: Instant::now(),
                state,
            });
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
    log
}

/// When the recorder first saw `Held` (waiting briefly for it to catch up).
#[track_caller]
fn first_held(log: &Mutex<Vec<Seen>>) -> impl Future<Output = Instant> + '_ {
    eventually_async(
        Duration::from_secs(1),
        "the recorder sees Held",
        async || {
            log.lock()
                .unwrap()
                .iter()
                .find(|s| matches!(s.state, LeaseState::Held { .. }))
                .map(|s| s.at)
        },
    )
}

/// Waits (bounded) until the keeper's state satisfies `pred`.
async fn wait_state(
    keeper: &LeaseKeeper,
    within: Duration,
    what: &str,
    pred: impl Fn(&LeaseState) -> bool,
) -> LeaseState {
    let mut rx = keeper.subscribe();
    let seen = timeout(within, async {
        rx.wait_for(|s| pred(s)).await.map(|state| state.clone())
    })
    .await;
    match seen {
        Ok(Ok(state)) => state,
        _ => panic!("{what}: not within {within:?}; state {:?}", keeper.state()),
    }
}

/// The fencing scenario. Node A reaches the store through `proxy`; node B directly; the pool
/// has one id. Cutting the proxy must make A stop (leave `Held`) by its fence
/// `last renewal sent + ttl − margin`; B must get the id only after that, with a higher epoch and
/// A's high-water mark; after healing, A must not hold the id again while B does.
async fn keeper_fences_before_another_node_takes_over(
    proxied: Arc<dyn WorkerRegistry>,
    direct: Arc<dyn WorkerRegistry>,
    proxy: &ChaosProxy,
) {
    let ns = unique("fence");
    let ttl = Duration::from_millis(1_500);
    let config = KeeperConfig::for_ttl(ttl);
    let margin = config.margin;
    // A's mark: the wall clock, as a generator's persisted mark would roughly be.
    let a_mark = Arc::new(AtomicU64::new(0));
    let mark = a_mark.clone();
    let a = LeaseKeeper::start(
        proxied,
        request(&ns, 1, ttl),
        config.clone(),
        Arc::new(move || {
            let now = unix_ms();
            mark.fetch_max(now, Ordering::SeqCst);
            now
        }),
    )
    .unwrap();
    let a_log = record(&a);
    let a_lease = timeout(Duration::from_secs(5), a.wait_held())
        .await
        .expect("A acquires within 5 s")
        .unwrap();
    let acquired_wall = unix_ms();
    // At least one renewal (every ttl/3 = 500 ms) stores A's mark: its fence moves.
    let acquired_fence = fence_of(&a.state()).expect("A's fence");
    wait_state(&a, ttl, "A renews its lease", |s| {
        fence_of(s).is_some_and(|f| f > acquired_fence)
    })
    .await;

    let cut_at = Instant::now();
    proxy.cut();
    let b = LeaseKeeper::start(
        direct,
        request(&ns, 1, ttl),
        KeeperConfig {
            backoff_max: Duration::from_millis(300),
            ..config.clone()
        },
        Arc::new(unix_ms),
    )
    .unwrap();
    let b_log = record(&b);

    // A leaves Held by its fence, which lies within ttl − margin of the cut.
    let slack = Duration::from_millis(500);
    wait_state(&a, ttl + slack, "A stops after the cut", |s| {
        !matches!(s, LeaseState::Held { .. })
    })
    .await;
    let left_at = Instant::now();
    let last_fence = a_log
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find_map(|s| match &s.state {
            LeaseState::Held { fence_deadline, .. } => *fence_deadline,
            _ => None,
        })
        .expect("A published a fence");
    assert!(
        last_fence <= cut_at + ttl - margin,
        "A's fence {:?} after the cut must be at most ttl − margin",
        last_fence - cut_at
    );
    assert!(
        left_at <= last_fence + slack,
        "A left Held {:?} after its fence",
        left_at - last_fence
    );

    // B gets the id once A's lease expired in the store.
    let b_lease = timeout(ttl * 3, b.wait_held())
        .await
        .expect("B acquires after A's lease expires")
        .unwrap();
    let b_held_at = first_held(&b_log).await;
    assert_eq!(b_lease.id, a_lease.id);
    assert!(b_lease.epoch > a_lease.epoch, "{b_lease:?} vs {a_lease:?}");
    assert!(
        last_fence < b_held_at,
        "held intervals overlap: A's fence is {:?} after B took over",
        last_fence - b_held_at
    );
    // Stronger: the store granted B the id only once A's lease expired, at least `margin` after
    // A's fence (A's renewal was sent before the store started its ttl).
    assert!(
        b_held_at >= last_fence + margin,
        "B took over {:?} after A's fence, less than the margin {margin:?}",
        b_held_at - last_fence
    );
    let stored = b_lease
        .previous_high_water_ms
        .expect("A's renewals stored its mark");
    assert!(
        stored >= acquired_wall && stored <= a_mark.load(Ordering::SeqCst),
        "B sees A's mark {stored}, A reported up to {}",
        a_mark.load(Ordering::SeqCst)
    );
    // B was not serving before A stopped either.
    assert!(b_log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.at <= last_fence)
        .all(|s| !matches!(s.state, LeaseState::Held { .. })));

    // Healed, A finds its lease lost and the pool full; it never holds the id beside B.
    let healed_at = Instant::now();
    proxy.heal();
    consistently_async(ttl, "B holds the id and A does not", async || {
        let (a_state, b_state) = (a.state(), b.state());
        (!matches!(a_state, LeaseState::Held { .. }) && matches!(b_state, LeaseState::Held { .. }))
            .then_some(())
            .ok_or(format!("A {a_state:?}, B {b_state:?}"))
    })
    .await;
    assert!(
        a_log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.at >= healed_at)
            .all(|s| !matches!(s.state, LeaseState::Held { .. })),
        "A held again while B holds: {:?}",
        a.state()
    );
    assert!(
        matches!(b.state(), LeaseState::Held { .. }),
        "{:?}",
        b.state()
    );
    assert!(
        matches!(
            a.state(),
            LeaseState::Exhausted { .. } | LeaseState::Acquiring { .. }
        ),
        "{:?}",
        a.state()
    );
    b.shutdown().await.unwrap();
    // A may still be retrying its old lease; handing it back then finds it lost.
    let a_end = a.shutdown().await;
    assert!(
        matches!(a_end, Ok(()) | Err(RegistryError::Lost { .. })),
        "{a_end:?}"
    );
}

/// A SQL registry on `url` using `table`.
fn sql_registry(url: &str, table: &str, call_timeout: Duration) -> Arc<dyn WorkerRegistry> {
    let config = SqlConfig {
        table: table.to_string(),
        call_timeout,
        ..SqlConfig::new(url)
    };
    Arc::new(SqlRegistry::new(&config).unwrap())
}

/// The fencing scenario on a SQL server, in a table of its own that is dropped afterwards.
async fn sql_keeper_fences(url: String) {
    let table = unique("floe_workers");
    let proxy = ChaosProxy::start(&host_port(&url)).await.unwrap();
    let proxied = sql_registry(
        &with_host_port(&url, proxy.addr()),
        &table,
        Duration::from_millis(400),
    );
    let direct = sql_registry(&url, &table, Duration::from_secs(2));
    keeper_fences_before_another_node_takes_over(proxied, direct, &proxy).await;
    sqlx::any::install_default_drivers();
    if let Ok(pool) = sqlx::AnyPool::connect(&url).await {
        let _ = pool
            .execute(format!("DROP TABLE IF EXISTS {table}").as_str())
            .await;
        pool.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeper_fences_before_another_node_takes_over() {
    sql_keeper_fences(postgres_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_keeper_fences_before_another_node_takes_over() {
    sql_keeper_fences(mysql_url()).await;
}

/// A Redis registry on `url` under `prefix`.
fn redis_registry(url: &str, prefix: &str, call_timeout: Duration) -> Arc<dyn WorkerRegistry> {
    let config = RedisConfig {
        key_prefix: prefix.to_string(),
        call_timeout,
        ..RedisConfig::new(url)
    };
    Arc::new(RedisRegistry::new(&config).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keeper_fences_before_another_node_takes_over() {
    let prefix = unique("floetest");
    let proxy = ChaosProxy::start(&host_port(&redis_url())).await.unwrap();
    let proxied = redis_registry(
        &with_host_port(&redis_url(), proxy.addr()),
        &prefix,
        Duration::from_millis(400),
    );
    let direct = redis_registry(&redis_url(), &prefix, Duration::from_secs(2));
    keeper_fences_before_another_node_takes_over(proxied, direct, &proxy).await;
    if let Ok(mut conn) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}
