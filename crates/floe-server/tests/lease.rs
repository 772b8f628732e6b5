//! Worker-id leases in a running server (issue #5), against the real Redis
//! (`FLOE_TEST_REDIS_URL`, default 127.0.0.1:6379; a missing Redis fails the tests).
//!
//! The layout is `time:41/1ms@2020-01-01 worker:1 seq:12` with `max_drift = 50ms`: a pool of two
//! worker ids, so a third node is exhausted, and a 1 ms tick, so the fence margin is
//! `max(ttl/10, 50 ms + 1 ms + 500 ms skew) = 551 ms` and a 2 s ttl keeps the tests short.
//!
//! - fencing: node A reaches Redis through a `ChaosProxy`; after the cut it serves until its fence,
//!   then answers "unavailable" and `/readyz` turns 503, all before the store's expiry (read with
//!   `PTTL`) and before `cut + ttl`; node B, exhausted until then, gets A's id only after the
//!   expiry, and every ID of B decodes to a later time than every ID of A (a third node C holds
//!   the other id). After healing, A gets nothing back while B holds the id; once B stops, A
//!   takes the id back under a new epoch, after B's mark.
//! - recovery: a node fenced by an outage longer than the ttl keeps its id (same epoch) when
//!   nobody took it, and serves again after healing; a node started while Redis is unreachable
//!   is not ready, says why, and serves once Redis is back.
//! - exhaustion: a third node on the two-id pool is not ready, says why, and gets ready with the
//!   id of a node that stops gracefully (released, not expired), continuing after its mark.

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use floe_server::{Config, LogLevel};
use floe_testkit::http::get;
use floe_testkit::{
    assert_increasing, consistently_async, eventually_async, host_port, redis_url, unique,
    with_host_port, ChaosProxy,
};
use redis::aio::MultiplexedConnection;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

/// 41 bits of ms since 2020-01-01, one worker bit, 12 sequence bits.
const LAYOUT: &str = "time:41/1ms@2020-01-01 worker:1 seq:12";
/// 2020-01-01T00:00:00Z in Unix ms.
const EPOCH_MS: u64 = 1_577_836_800_000;
const TTL: Duration = Duration::from_secs(2);
/// `max(ttl / 10, max_drift + 1 tick + 500 ms)`, as the server chooses it.
const MARGIN: Duration = Duration::from_millis(551);
/// IDs per request of the load loops.
const BATCH: u32 = 100;

fn time_ms(id: u64) -> u64 {
    EPOCH_MS + (id >> 13)
}

fn worker(id: u64) -> u64 {
    (id >> 12) & 1
}

/// A node leasing its worker id from the Redis at `url`, in `namespace`.
#[track_caller]
fn lease_config(url: &str, namespace: &str, ttl: Duration) -> Config {
    let mut c = Config::from_toml(&format!(
        r#"
[snowflake]
layout = "{LAYOUT}"
max_drift = "50ms"

[segment]
enabled = false

[registry]
kind = "redis"
url = "{url}"
namespace = "{namespace}"
ttl = "{}ms"
fields = ["worker"]
call_timeout = "500ms"
"#,
        ttl.as_millis()
    ))
    .expect("valid lease configuration");
    c.log.level = LogLevel::Warn;
    c
}

async fn redis_conn() -> MultiplexedConnection {
    let url = redis_url();
    redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is required for these tests: {e}"))
}

/// Deletes the keys a test created (they carry no expiry).
async fn cleanup(con: &mut MultiplexedConnection, namespace: &str) {
    for id in 0..2 {
        for kind in ["worker", "epoch", "hw"] {
            let _: Result<i64, _> = redis::cmd("DEL")
                .arg(format!("floe:{namespace}:{kind}:{id}"))
                .query_async(con)
                .await;
        }
    }
}

/// `/v1/info`'s `lease` object (a plain function returning a future, so a failure names the
/// test's line).
#[track_caller]
fn lease_info(http: SocketAddr) -> impl Future<Output = serde_json::Value> {
    let at = Location::caller();
    async move {
        let r = get(http, "/v1/info").await;
        assert_eq!(r.status, 200, "{} (at {at})", r.body);
        r.json()["lease"].clone()
    }
}

/// When A's fence falls, as `/v1/info` reports it: moves forward with every renewal.
async fn fence_at(http: SocketAddr) -> Instant {
    let lease = lease_info(http).await;
    let fence_in = lease["fence_in_ms"].as_i64().expect("fence_in_ms");
    Instant::now() + Duration::from_millis(fence_in.max(0) as u64)
}

async fn readyz(http: SocketAddr) -> (u16, String) {
    let r = get(http, "/readyz").await;
    (r.status, r.body)
}

/// Polls `/readyz` until it is 200.
#[track_caller]
fn wait_ready(http: SocketAddr, what: &str, within: Duration) -> impl Future<Output = ()> {
    eventually_async(within, &format!("{what} is ready"), async move || {
        let (status, body) = readyz(http).await;
        (status == 200).then_some(()).ok_or(body)
    })
}

/// Waits until `/readyz` gives a reason containing `reason` (returning it), failing the test if
/// `who` is ready meanwhile.
#[track_caller]
fn unready_because<'a>(
    http: SocketAddr,
    reason: &'a str,
    who: &'a str,
) -> impl Future<Output = String> + 'a {
    eventually_async(
        WAIT,
        &format!("{who}: /readyz names {reason:?}"),
        async move || {
            let (status, body) = readyz(http).await;
            assert_eq!(status, 503, "{who} must not be ready: {body}");
            if body.contains(reason) {
                Ok(body)
            } else {
                Err(body)
            }
        },
    )
}

/// Checks that `/readyz` answers 503 throughout `during`.
#[track_caller]
fn stays_unready(http: SocketAddr, during: Duration, what: &str) -> impl Future<Output = ()> {
    consistently_async(during, what, async move || {
        let (status, body) = readyz(http).await;
        (status == 503).then_some(()).ok_or(body)
    })
}

/// One v2 snowflake request on a fresh connection.
async fn v2_once(addr: SocketAddr, count: u32) -> V2Reply {
    let mut s = connect(addr).await;
    s.write_all(&v2_request(1, 1, count, b"")).await.unwrap();
    read_v2(&mut s).await
}

/// One request of a load loop.
#[derive(Debug)]
struct Sample {
    sent: Instant,
    recv: Instant,
    ids: Vec<u64>,
    /// Status and message of a refused request.
    error: Option<(u8, String)>,
}

/// Requests `BATCH` IDs over and over on one v2 connection until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    /// What was asked and answered so far, so a test can wait for progress.
    samples: Arc<Mutex<Vec<Sample>>>,
    task: JoinHandle<()>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let log = samples.clone();
        let task = tokio::spawn(async move {
            let mut s = connect(addr).await;
            let mut req_id = 0u32;
            while !flag.load(Ordering::Acquire) {
                req_id += 1;
                let sent = Instant::now();
                s.write_all(&v2_request(1, req_id, BATCH, b""))
                    .await
                    .unwrap();
                let r = read_v2(&mut s).await;
                let recv = Instant::now();
                assert_eq!(r.req_id, req_id, "replies keep request order");
                log.lock().unwrap().push(Sample {
                    sent,
                    recv,
                    error: (r.status != 0).then_some((r.status, r.message)),
                    ids: r.ids,
                });
                // Pacing of the load, not a wait.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Load {
            stop,
            samples,
            task,
        }
    }

    /// How many requests sent after `since` were served.
    fn served_since(&self, since: Instant) -> usize {
        let samples = self.samples.lock().unwrap();
        ok(&samples).filter(|s| s.sent > since).count()
    }

    /// Waits until a request sent after `since` was served.
    #[track_caller]
    fn serves_after(&self, since: Instant, what: &str) -> impl Future<Output = ()> + '_ {
        eventually_async(WAIT, what, async move || self.served_since(since) > 0)
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Release);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("load loop ends")
            .expect("load loop does not panic");
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

/// Polls `/readyz` every 20 ms until stopped: (when asked, status, body).
struct ReadyLog {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<(Instant, u16, String)>>,
}

impl ReadyLog {
    fn start(http: SocketAddr) -> ReadyLog {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut log = Vec::new();
            while !flag.load(Ordering::Acquire) {
                let at = Instant::now();
                let (status, body) = readyz(http).await;
                log.push((at, status, body));
                // The poller's pace, not a wait.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            log
        });
        ReadyLog { stop, task }
    }

    async fn finish(self) -> Vec<(Instant, u16, String)> {
        self.stop.store(true, Ordering::Release);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("readiness poller ends")
            .expect("readiness poller does not panic")
    }
}

fn ok(samples: &[Sample]) -> impl Iterator<Item = &Sample> {
    samples.iter().filter(|s| s.error.is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_node_stops_at_its_fence_before_its_id_is_granted_again() {
    let redis = redis_url();
    let mut con = redis_conn().await;
    let ns = unique("lease_fence");
    let worker_key = format!("floe:{ns}:worker:0");
    let proxy = ChaosProxy::start(&host_port(&redis))
        .await
        .expect("start the proxy");

    // A holds id 0 through the proxy; C holds id 1 directly, so the only id B can ever get is A's.
    let a = TestServer::start(lease_config(
        &with_host_port(&redis, proxy.addr()),
        &ns,
        TTL,
    ))
    .await;
    wait_ready(a.http, "A", WAIT).await;
    let a_lease = lease_info(a.http).await;
    assert_eq!(a_lease["held"], true, "{a_lease}");
    assert_eq!(a_lease["worker_id"], 0, "{a_lease}");
    let a_epoch = a_lease["epoch"].as_u64().expect("epoch");
    let fence_in = a_lease["fence_in_ms"].as_i64().expect("fence_in_ms");
    assert!(
        0 < fence_in && fence_in <= (TTL - MARGIN).as_millis() as i64,
        "A's fence must lie within ttl − margin of its last renewal: {a_lease}"
    );
    let c = TestServer::start(lease_config(&redis, &ns, TTL)).await;
    wait_ready(c.http, "C", WAIT).await;
    assert_eq!(lease_info(c.http).await["worker_id"], 1);

    let b = TestServer::start(lease_config(&redis, &ns, TTL)).await;
    let b_load = Load::start(b.tcp);
    unready_because(
        b.http,
        "every worker id of the pool is held by a live node",
        "B, while A and C hold the pool",
    )
    .await;
    let b_lease = lease_info(b.http).await;
    assert_eq!(b_lease["held"], false, "{b_lease}");

    let load_from = Instant::now();
    let a_load = Load::start(a.tcp);
    let a_ready = ReadyLog::start(a.http);
    // At least one renewal (every ttl/3) while A serves: its fence moves forward.
    let fence_from = fence_at(a.http).await;
    eventually_async(WAIT, "A renews its lease while serving", async || {
        let moved = fence_at(a.http).await.saturating_duration_since(fence_from);
        let served = a_load.served_since(load_from);
        (moved > Duration::from_millis(100) && served > 0)
            .then_some(())
            .ok_or(format!("fence moved {moved:?}, {served} requests served"))
    })
    .await;

    let cut_at = Instant::now();
    proxy.cut();
    // The store's expiry of A's lease, measured once its key counts down between two reads:
    // a renewal already past the proxy at the cut has landed by then.
    let mut previous = None;
    let (asked, pttl) = eventually_async(
        WAIT,
        "A's lease key counts down after the cut",
        async || {
            let asked = Instant::now();
            let pttl: i64 = redis::cmd("PTTL")
                .arg(&worker_key)
                .query_async(&mut con)
                .await
                .unwrap();
            let counting_down = previous.is_some_and(|p| pttl < p);
            previous = Some(pttl);
            counting_down
                .then_some((asked, pttl))
                .ok_or(format!("PTTL {pttl}"))
        },
    )
    .await;
    assert!(
        pttl > 0,
        "A's lease key must still be live right after the cut (PTTL {pttl})"
    );
    // The key expires at (server time of PTTL) + pttl, and that server time is after `asked`.
    let expiry_lower = asked + Duration::from_millis(pttl as u64);

    // B gets the id once it expires, and serves.
    wait_ready(b.http, "B after A's lease expired", Duration::from_secs(10)).await;
    let b_ready_at = Instant::now();
    let b_lease = lease_info(b.http).await;
    assert_eq!(b_lease["worker_id"], 0, "B must get A's id: {b_lease}");
    let b_epoch = b_lease["epoch"].as_u64().expect("epoch");
    assert!(
        b_epoch > a_epoch,
        "the epoch must grow: A {a_epoch}, B {b_epoch}"
    );
    // A, still cut off, answers over HTTP too: 503, with a JSON error.
    let r = get(a.http, "/v1/snowflake?count=1").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("lease"), "{}", r.body);
    b_load.serves_after(b_ready_at, "B serves once ready").await;

    // Healing does not give A anything back: B holds id 0, C id 1.
    let heal_at = Instant::now();
    proxy.heal();
    eventually_async(
        Duration::from_secs(8),
        "A learns that its id is gone",
        async || {
            let lease = lease_info(a.http).await;
            assert_eq!(lease["held"], false, "A holds a lease beside B: {lease}");
            lease["status"]
                .as_str()
                .is_some_and(|s| s.contains("every worker id of the pool is held"))
                .then_some(())
                .ok_or(lease)
        },
    )
    .await;
    // A stays out for a while longer, while B keeps serving.
    stays_unready(
        a.http,
        Duration::from_secs(1),
        "A stays unready while B holds its id",
    )
    .await;
    b_load
        .serves_after(heal_at, "B serves after A is healed")
        .await;
    let end_at = Instant::now();

    let a_samples = a_load.finish().await;
    let b_samples = b_load.finish().await;
    let a_readiness = a_ready.finish().await;
    let c_ids = v2_once(c.tcp, 1_000).await;
    assert_eq!(c_ids.status, 0, "{}", c_ids.message);

    // A served before the cut without a hitch, and after it until its fence.
    for s in a_samples.iter().filter(|s| s.recv < cut_at) {
        assert!(s.error.is_none(), "A refused before the cut: {:?}", s.error);
    }
    let a_last_ok = ok(&a_samples).map(|s| s.recv).max().expect("A served");
    assert!(
        ok(&a_samples).any(|s| s.sent > cut_at),
        "A must keep serving after the cut until its fence"
    );
    let a_served_for = a_last_ok - cut_at;
    assert!(
        a_last_ok < cut_at + TTL,
        "A served {a_served_for:?} after the cut, not less than the ttl {TTL:?}"
    );
    assert!(
        a_last_ok < expiry_lower,
        "A served until {:?} after the cut, after the store expired its lease ({:?})",
        a_served_for,
        expiry_lower - cut_at
    );
    // After its last ID, A only refuses, with status 3 and the lease as the reason.
    let a_after: Vec<&Sample> = a_samples.iter().filter(|s| s.sent > a_last_ok).collect();
    assert!(!a_after.is_empty(), "A was not asked after its fence");
    for s in &a_after {
        let (status, message) = s.error.as_ref().expect("A served after its fence");
        assert_eq!(*status, 3, "{message}");
        assert!(message.contains("lease"), "{message}");
    }
    assert!(
        ok(&a_samples).all(|s| s.sent < heal_at),
        "A served after healing while B holds its id"
    );
    // `/readyz` turned 503 by the fence, before the ttl ran out, and stayed 503.
    let first_unready = a_readiness
        .iter()
        .find(|(at, status, _)| *at > cut_at && *status == 503)
        .map(|(at, _, body)| (*at, body.clone()))
        .expect("A's /readyz turned 503");
    assert!(
        first_unready.0 < cut_at + TTL,
        "A's /readyz was 200 until {:?} after the cut",
        first_unready.0 - cut_at
    );
    assert!(first_unready.1.contains("lease"), "{}", first_unready.1);
    assert!(
        a_readiness
            .iter()
            .filter(|(at, _, _)| *at > first_unready.0)
            .all(|(_, status, _)| *status == 503),
        "A's /readyz came back while B holds its id"
    );

    // B served only after the store expired A's lease, and only once it held the lease.
    let b_first_ok = ok(&b_samples)
        .map(|s| s.recv)
        .min()
        .expect("B served after A's lease expired");
    assert!(
        b_first_ok >= expiry_lower,
        "B served {:?} after the cut, before A's lease expired ({:?})",
        b_first_ok - cut_at,
        expiry_lower - cut_at
    );
    assert!(a_last_ok < b_first_ok, "A and B served at the same time");
    for s in b_samples.iter().filter(|s| s.recv < b_first_ok) {
        let (status, message) = s.error.as_ref().unwrap();
        assert_eq!(*status, 3, "{message}");
        assert!(
            message.contains("no worker-id lease held"),
            "B's refusal should say why: {message}"
        );
    }
    assert!(
        ok(&b_samples).any(|s| s.sent > heal_at),
        "B must keep serving after A is healed"
    );

    // The IDs: A's and B's share worker id 0, so only time separates them.
    let a_ids: Vec<u64> = ok(&a_samples).flat_map(|s| s.ids.iter().copied()).collect();
    let b_ids: Vec<u64> = ok(&b_samples).flat_map(|s| s.ids.iter().copied()).collect();
    assert!(a_ids.iter().chain(&b_ids).all(|id| worker(*id) == 0));
    assert!(c_ids.ids.iter().all(|id| worker(*id) == 1));
    assert_increasing(&a_ids);
    assert_increasing(&b_ids);
    let mut all = HashSet::new();
    for id in a_ids.iter().chain(&b_ids).chain(&c_ids.ids) {
        assert!(all.insert(*id), "duplicate ID {id}");
    }
    let a_last_time = a_ids.iter().map(|id| time_ms(*id)).max().unwrap();
    let b_first_time = b_ids.iter().map(|id| time_ms(*id)).min().unwrap();
    assert!(
        a_last_time < b_first_time,
        "B's first ID ({b_first_time} ms) does not decode to a time after A's last ({a_last_time} ms)"
    );
    println!(
        "fencing: A served {a_served_for:?} after the cut (fence ≤ ttl − margin = {:?}), /readyz 503 after {:?}; \
         the store expired A's lease ≥ {:?} after the cut; B ready {:?} and serving {:?} after it; \
         B's IDs start {} ms after A's; {} IDs from A, {} from B; A refused {} requests after healing (until {:?})",
        TTL - MARGIN,
        first_unready.0 - cut_at,
        expiry_lower - cut_at,
        b_ready_at - cut_at,
        b_first_ok - cut_at,
        b_first_time - a_last_time,
        a_ids.len(),
        b_ids.len(),
        a_samples.iter().filter(|s| s.sent > heal_at).count(),
        end_at - heal_at,
    );

    // B stops gracefully: A, exhausted until now, gets id 0 back under a new epoch, and its new
    // generator starts after B's released mark.
    b.stop().await.0.unwrap();
    wait_ready(a.http, "A after B released id 0", Duration::from_secs(10)).await;
    let again = lease_info(a.http).await;
    assert_eq!(again["worker_id"], 0, "{again}");
    let again_epoch = again["epoch"].as_u64().expect("epoch");
    assert!(again_epoch > b_epoch, "{again}");
    let r = v2_once(a.tcp, 5_000).await;
    assert_eq!(r.status, 0, "{}", r.message);
    let b_last_time = b_ids.iter().map(|id| time_ms(*id)).max().unwrap();
    assert!(
        r.ids
            .iter()
            .all(|id| worker(*id) == 0 && time_ms(*id) > b_last_time),
        "A's IDs after taking id 0 back must follow B's"
    );
    for id in &r.ids {
        assert!(all.insert(*id), "duplicate ID {id}");
    }

    a.stop().await.0.unwrap();
    c.stop().await.0.unwrap();
    cleanup(&mut con, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fenced_node_gets_its_own_id_back_when_nobody_took_it() {
    let redis = redis_url();
    let mut con = redis_conn().await;
    let ns = unique("lease_recover");
    let proxy = ChaosProxy::start(&host_port(&redis))
        .await
        .expect("start the proxy");
    let a = TestServer::start(lease_config(
        &with_host_port(&redis, proxy.addr()),
        &ns,
        TTL,
    ))
    .await;
    wait_ready(a.http, "A", WAIT).await;
    let before = lease_info(a.http).await;
    let load_from = Instant::now();
    let load = Load::start(a.tcp);
    load.serves_after(load_from, "A serves before the cut")
        .await;

    // Cut for longer than the ttl: A is fenced and its key expires in Redis, but no other node
    // asks for the id.
    let cut_at = Instant::now();
    proxy.cut();
    eventually_async(
        TTL + Duration::from_millis(500),
        "A's lease expires during the cut",
        async || {
            let exists: i64 = redis::cmd("EXISTS")
                .arg(format!("floe:{ns}:worker:0"))
                .query_async(&mut con)
                .await
                .unwrap();
            exists == 0
        },
    )
    .await;
    let (status, body) = readyz(a.http).await;
    assert_eq!(status, 503, "{body}");
    let heal_at = Instant::now();
    proxy.heal();
    wait_ready(a.http, "A after healing", Duration::from_secs(10)).await;
    let back = Instant::now();
    let after = lease_info(a.http).await;
    assert_eq!(after["worker_id"], before["worker_id"], "{after}");
    assert_eq!(
        after["epoch"], before["epoch"],
        "the same lease, renewed: {after}"
    );
    load.serves_after(back, "A serves again after healing")
        .await;
    let samples = load.finish().await;

    let refused: Vec<&Sample> = samples.iter().filter(|s| s.error.is_some()).collect();
    assert!(!refused.is_empty(), "A must refuse while fenced");
    assert!(
        refused
            .iter()
            .all(|s| s.recv > cut_at && s.sent < back + Duration::from_millis(100)),
        "A refused outside the outage"
    );
    assert!(
        ok(&samples).all(|s| s.recv < cut_at + TTL || s.sent > heal_at),
        "A served between its fence and the heal"
    );
    assert!(ok(&samples).any(|s| s.sent > back), "A serves again");
    // One connection, one lane: the IDs keep increasing across the outage.
    let ids: Vec<u64> = ok(&samples).flat_map(|s| s.ids.iter().copied()).collect();
    assert_increasing(&ids);
    println!(
        "recovery: A ready again {:?} after healing, same id and epoch; {} refusals, {} IDs",
        back - heal_at,
        refused.len(),
        ids.len()
    );
    a.stop().await.0.unwrap();
    cleanup(&mut con, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_beyond_the_pool_waits_until_a_node_stops() {
    let redis = redis_url();
    let mut con = redis_conn().await;
    let ns = unique("lease_pool");
    // A ttl far beyond the test's waits: the third node can only get an id that is released.
    let ttl = Duration::from_secs(30);
    let first = TestServer::start(lease_config(&redis, &ns, ttl)).await;
    wait_ready(first.http, "first node", WAIT).await;
    let second = TestServer::start(lease_config(&redis, &ns, ttl)).await;
    wait_ready(second.http, "second node", WAIT).await;
    let first_id = lease_info(first.http).await["worker_id"].as_u64().unwrap();
    let second_id = lease_info(second.http).await["worker_id"].as_u64().unwrap();
    assert_eq!(
        (first_id, second_id),
        (0, 1),
        "lowest free id first, one per node"
    );

    let third = TestServer::start(lease_config(&redis, &ns, ttl)).await;
    let expected = "every worker id of the pool is held by a live node";
    unready_because(third.http, expected, "a third node on a two-id pool").await;
    let lease = lease_info(third.http).await;
    assert_eq!(lease["held"], false, "{lease}");
    assert!(lease["worker_id"].is_null(), "{lease}");
    assert!(
        lease["status"].as_str().unwrap().contains(expected),
        "{lease}"
    );
    let r = v2_once(third.tcp, 10).await;
    assert_eq!(r.status, 3, "{r:?}");
    assert!(r.message.contains(expected), "{}", r.message);
    let r = get(third.http, "/v1/snowflake?count=1").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains(expected), "{}", r.body);

    // It stays out while the pool is full.
    let mut ids: HashSet<u64> = HashSet::new();
    let first_ids = v2_once(first.tcp, 5_000).await;
    let second_ids = v2_once(second.tcp, 5_000).await;
    for id in first_ids.ids.iter().chain(&second_ids.ids) {
        assert!(ids.insert(*id), "duplicate ID {id}");
    }
    assert!(first_ids.ids.iter().all(|id| worker(*id) == 0));
    assert!(second_ids.ids.iter().all(|id| worker(*id) == 1));
    stays_unready(
        third.http,
        Duration::from_millis(1_500),
        "the third node stays unready while the pool is full",
    )
    .await;

    // An exhausted node stops gracefully (it has nothing to release) and changes nothing.
    let fourth = TestServer::start(lease_config(&redis, &ns, ttl)).await;
    unready_because(fourth.http, expected, "a fourth node on a two-id pool").await;
    fourth.stop().await.0.unwrap();
    assert_eq!(lease_info(second.http).await["held"], true);

    // A graceful stop releases id 0 at once, with the exact mark of its last ID.
    let last_first_ms = first_ids.ids.iter().map(|id| time_ms(*id)).max().unwrap();
    let (result, _dir) = first.stop().await;
    result.unwrap();
    let stopped_at = Instant::now();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(format!("floe:{ns}:worker:0"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(exists, 0, "a graceful stop must release the lease");
    let mark: u64 = redis::cmd("GET")
        .arg(format!("floe:{ns}:hw:0"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        last_first_ms < mark,
        "the released mark {mark} must lie after the last ID issued ({last_first_ms})"
    );

    wait_ready(third.http, "third node after the first stopped", ttl / 2).await;
    let waited = stopped_at.elapsed();
    let lease = lease_info(third.http).await;
    assert_eq!(lease["worker_id"], 0, "{lease}");
    let third_ids = v2_once(third.tcp, 5_000).await;
    assert_eq!(third_ids.status, 0, "{}", third_ids.message);
    assert!(third_ids.ids.iter().all(|id| worker(*id) == 0));
    assert!(
        third_ids.ids.iter().all(|id| time_ms(*id) >= mark),
        "the new holder of id 0 must start at the released mark"
    );
    for id in &third_ids.ids {
        assert!(ids.insert(*id), "duplicate ID {id}");
    }
    println!("pool: the third node got id 0 {waited:?} after the first node stopped");

    second.stop().await.0.unwrap();
    third.stop().await.0.unwrap();
    cleanup(&mut con, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_started_while_redis_is_down_serves_once_it_is_back() {
    let redis = redis_url();
    let mut con = redis_conn().await;
    let ns = unique("lease_late");
    let proxy = ChaosProxy::start(&host_port(&redis))
        .await
        .expect("start the proxy");
    proxy.cut();
    let a = TestServer::start(lease_config(
        &with_host_port(&redis, proxy.addr()),
        &ns,
        TTL,
    ))
    .await;
    // It starts (listeners up, /healthz 200) but is not ready, and says why.
    let reason = unready_because(a.http, "redis", "A, without a lease").await;
    assert!(reason.contains("acquiring a worker id"), "{reason}");
    let r = v2_once(a.tcp, 10).await;
    assert_eq!(r.status, 3, "{r:?}");
    assert!(
        r.message.contains("no worker-id lease held"),
        "{}",
        r.message
    );
    // A node that never got a lease stops gracefully at once, the store still unreachable.
    let d = TestServer::start(lease_config(
        &with_host_port(&redis, proxy.addr()),
        &ns,
        TTL,
    ))
    .await;
    let stopping = Instant::now();
    d.stop().await.0.unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stopping without a lease took {:?}",
        stopping.elapsed()
    );

    let healed_at = Instant::now();
    proxy.heal();
    wait_ready(a.http, "A once Redis is reachable", Duration::from_secs(10)).await;
    let waited = healed_at.elapsed();
    let r = v2_once(a.tcp, 1_000).await;
    assert_eq!(r.status, 0, "{}", r.message);
    assert_increasing(&r.ids);
    println!("late store: ready {waited:?} after Redis became reachable");
    a.stop().await.0.unwrap();
    cleanup(&mut con, &ns).await;
}
