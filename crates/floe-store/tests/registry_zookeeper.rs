//! The ZooKeeper worker-id registry against the real ZooKeeper (`FLOE_TEST_ZOOKEEPER`, default
//! `127.0.0.1:2181`; `scripts/services` starts one with `tickTime=200`, so sessions can time out
//! after 400 ms). A missing ZooKeeper fails these tests. Each test works under a root of its own,
//! deleted when the test ends.
//!
//! A ZooKeeper lease does not lapse while its holder is connected (the client pings its session),
//! so the checks that need a lapse connect their registries through a [`ChaosProxy`] and cut it
//! until the sessions expired.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use common::{request, LONG_TTL};
use floe_store::registry::zookeeper::{
    apply_reclaim, list_leaf_nodes, plan_reclaim, reclaim_leaf_nodes, Kept, LeafNode,
    ReclaimOptions,
};
use floe_store::registry::{RegistryError, WorkerRegistry, ZookeeperConfig, ZookeeperRegistry};
use floe_testkit::{unique, ChaosProxy};
use tokio::time::{sleep, Instant};
use zookeeper_client::{Acls, Client, CreateMode};

/// The ZooKeeper under test.
fn zookeeper() -> String {
    std::env::var("FLOE_TEST_ZOOKEEPER").unwrap_or_else(|_| "127.0.0.1:2181".into())
}

/// A registry on `connect` under `root`.
fn registry(connect: &str, root: &str, call_timeout: Duration) -> Arc<dyn WorkerRegistry> {
    let config = ZookeeperConfig {
        root: root.to_string(),
        call_timeout,
        ..ZookeeperConfig::new(connect)
    };
    Arc::new(ZookeeperRegistry::new(&config).unwrap())
}

/// Long enough for a session to expire on the server (400 ms for a `SHORT_TTL` lease, plus a
/// tick) and for its client to conclude so (7/5 of the timeout without an answer).
const EXPIRY_WAIT: Duration = Duration::from_millis(1_500);

/// A root of its own for one test, with a chaos proxy in front of ZooKeeper.
struct Root {
    path: String,
    proxy: Arc<ChaosProxy>,
    /// Other trees the test made (Leaf's), deleted with the root.
    also: Vec<String>,
}

impl Root {
    async fn new() -> Root {
        Root {
            path: format!("/{}", unique("floetest")),
            proxy: Arc::new(ChaosProxy::start(&zookeeper()).await.unwrap()),
            also: Vec::new(),
        }
    }
}

impl common::Store for Root {
    /// Registries straight to ZooKeeper.
    fn registry(&self) -> Arc<dyn WorkerRegistry> {
        registry(&zookeeper(), &self.path, Duration::from_secs(5))
    }

    /// Registries through the proxy.
    fn lapsing(&self) -> Arc<dyn WorkerRegistry> {
        registry(
            &self.proxy.addr().to_string(),
            &self.path,
            Duration::from_secs(5),
        )
    }

    /// Cuts the proxy until the short sessions behind it expired, then heals it.
    fn lapse(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.proxy.cut();
            sleep(EXPIRY_WAIT).await;
            self.proxy.heal();
        })
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        // Best effort, on a runtime of its own so it also runs when a test panics.
        let paths: Vec<String> = std::iter::once(self.path.clone())
            .chain(self.also.iter().cloned())
            .collect();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                for path in &paths {
                    let _ = tokio::time::timeout(Duration::from_secs(10), delete_tree(path)).await;
                }
                // Leaf's shared parent, if no other test uses it any more.
                if let Ok(client) = Client::connect(&zookeeper()).await {
                    let _ = client.delete("/snowflake", None).await;
                }
            });
        })
        .join();
    }
}

/// Deletes `path` and everything below it.
async fn delete_tree(path: &str) {
    let Ok(client) = Client::connect(&zookeeper()).await else {
        return;
    };
    let mut nodes = vec![path.to_string()];
    let mut i = 0;
    while i < nodes.len() {
        let parent = nodes[i].clone();
        for child in client.list_children(&parent).await.unwrap_or_default() {
            nodes.push(format!("{parent}/{child}"));
        }
        i += 1;
    }
    for node in nodes.iter().rev() {
        let _ = client.delete(node, None).await;
    }
}

common::contract!(contract, Root::new().await);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_zookeeper_is_unavailable_within_the_call_timeout() {
    let (addr, hole) = common::black_hole().await;
    let timeout = Duration::from_millis(500);
    common::hung_store_is_unavailable(registry(&addr.to_string(), "/floetest", timeout), timeout)
        .await;
    hole.abort();
}

/// A holder cut off by the proxy gets `Unavailable` within the call timeout and keeps its id
/// while its session lives; once the server expired the session another registry takes the id
/// with a higher epoch and the holder's mark, and the old holder's renewal is `Lost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_holder_loses_its_id_after_its_session_expired() {
    let root = Root::new().await;
    let call_timeout = Duration::from_millis(700);
    let ttl = Duration::from_secs(2);
    let cut = registry(&root.proxy.addr().to_string(), &root.path, call_timeout);
    let other = registry(&zookeeper(), &root.path, Duration::from_secs(5));
    let ns = unique("cut");
    let req = request(&ns, 1, ttl);
    let lease = cut.acquire(&req).await.unwrap();
    cut.renew(&req, &lease, 1_000).await.unwrap();
    root.proxy.cut();
    let cut_at = Instant::now();
    let other_req = request(&ns, 1, ttl);
    match other.acquire(&other_req).await {
        Err(RegistryError::Exhausted { .. }) => {}
        r => panic!("the id of a live session is not granted again: {r:?}"),
    }
    let started = Instant::now();
    match cut.renew(&req, &lease, 2_000).await {
        Err(RegistryError::Unavailable { .. }) => {}
        r => panic!("a cut-off holder's renewal: expected Unavailable, got {r:?}"),
    }
    assert!(
        started.elapsed() < call_timeout + Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let taken = loop {
        match other.acquire(&other_req).await {
            Ok(taken) => break taken,
            Err(RegistryError::Exhausted { .. }) if Instant::now() < deadline => {
                sleep(Duration::from_millis(100)).await;
            }
            r => panic!("the expired id is granted again: {r:?}"),
        }
    };
    assert!(
        cut_at.elapsed() >= ttl,
        "granted again {:?} after the cut, before the ttl of {ttl:?}",
        cut_at.elapsed()
    );
    assert_eq!(taken.id, lease.id);
    assert!(taken.epoch > lease.epoch, "{taken:?} after {lease:?}");
    assert_eq!(taken.previous_high_water_ms, Some(1_000));
    root.proxy.heal();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cut.renew(&req, &lease, 3_000).await {
            Err(RegistryError::Lost { .. }) => break,
            Err(RegistryError::Unavailable { .. }) if Instant::now() < deadline => {
                sleep(Duration::from_millis(100)).await;
            }
            r => panic!("the old holder's renewal after the id changed hands: {r:?}"),
        }
    }
    other.renew(&other_req, &taken, 4_000).await.unwrap();
}

/// A server that grants shorter sessions than the ttl is refused: it could expire a lease while
/// its holder still issues IDs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_above_the_servers_max_session_timeout_is_refused() {
    let root = Root::new().await;
    let reg = common::Store::registry(&root);
    // scripts/services sets maxSessionTimeout=60000.
    let req = request(&unique("long"), 4, Duration::from_secs(120));
    match reg.acquire(&req).await {
        Err(RegistryError::Config(msg)) => {
            assert!(
                msg.contains("60s") && msg.contains("120s") && msg.contains("maxSessionTimeout"),
                "{msg}"
            );
        }
        r => panic!("expected Config, got {r:?}"),
    }
}

/// The nodes are the documented ones: a persistent ids node with the epoch and mark as JSON, an
/// ephemeral workers node owned by the lease's session; a release deletes the workers node and
/// bumps the epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_as_documented() {
    let root = Root::new().await;
    let reg = common::Store::registry(&root);
    assert_eq!(
        reg.describe(),
        format!("zookeeper at {}{}", zookeeper(), root.path)
    );
    let ns = unique("nodes");
    let req = request(&ns, 4, LONG_TTL);
    let lease = reg.acquire(&req).await.unwrap();
    reg.renew(&req, &lease, 1_234).await.unwrap();
    let zk = Client::connect(&zookeeper()).await.unwrap();
    let (data, stat) = zk
        .get_data(&format!("{}/{ns}/ids/0", root.path))
        .await
        .unwrap();
    assert_eq!(stat.ephemeral_owner, 0);
    let record: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(
        record,
        serde_json::json!({"epoch": lease.epoch, "high_water_ms": 1_234})
    );
    let worker = format!("{}/{ns}/workers/0", root.path);
    let (data, stat) = zk.get_data(&worker).await.unwrap();
    assert_ne!(stat.ephemeral_owner, 0, "the workers node is ephemeral");
    let holder: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(
        holder,
        serde_json::json!({"owner": req.owner, "epoch": lease.epoch})
    );
    reg.release(&req, &lease, 1_000).await.unwrap();
    assert!(zk.check_stat(&worker).await.unwrap().is_none());
    let (data, _) = zk
        .get_data(&format!("{}/{ns}/ids/0", root.path))
        .await
        .unwrap();
    let record: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(
        record,
        serde_json::json!({"epoch": lease.epoch + 1, "high_water_ms": 1_000})
    );
    // Another program's ephemeral node on an id keeps Floe off it.
    zk.create(
        &format!("{}/{ns}/workers/0", root.path),
        b"{\"owner\":\"someone\",\"epoch\":99}",
        &CreateMode::Ephemeral.with_acls(Acls::anyone_all()),
    )
    .await
    .unwrap();
    assert_eq!(reg.acquire(&req).await.unwrap().id, 1);
}

/// A lease whose session expired while nobody took the id is revived by `renew` under a new
/// session: the ephemeral node is gone after the lapse and back, with another session, after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_revives_an_expired_session() {
    let root = Root::new().await;
    let reg = common::Store::lapsing(&root);
    let ns = unique("revive");
    let req = request(&ns, 4, common::SHORT_TTL);
    let lease = reg.acquire(&req).await.unwrap();
    let zk = Client::connect(&zookeeper()).await.unwrap();
    let worker = format!("{}/{ns}/workers/0", root.path);
    let before = zk.check_stat(&worker).await.unwrap().expect("held");
    root.proxy.cut();
    sleep(EXPIRY_WAIT).await;
    assert!(
        zk.check_stat(&worker).await.unwrap().is_none(),
        "the server expired the session and its node"
    );
    root.proxy.heal();
    reg.renew(&req, &lease, 77).await.unwrap();
    let after = zk.check_stat(&worker).await.unwrap().expect("held again");
    assert_ne!(after.ephemeral_owner, before.ephemeral_owner);
    let slots = reg.list(&req).await.unwrap();
    assert!(slots[0].held && slots[0].epoch == lease.epoch, "{slots:?}");
    assert_eq!(slots[0].high_water_ms, Some(77));
    reg.renew(&req, &lease, 78).await.unwrap();
    reg.release(&req, &lease, 78).await.unwrap();
    assert!(zk.check_stat(&worker).await.unwrap().is_none());
}

/// A registry taking over Leaf's endpoint `endpoint` of cluster `leaf_name`.
fn leaf_registry(root: &str, leaf_name: &str, endpoint: &str) -> Arc<dyn WorkerRegistry> {
    let config = ZookeeperConfig {
        root: root.to_string(),
        call_timeout: Duration::from_secs(5),
        leaf_name: Some(leaf_name.to_string()),
        endpoint: Some(endpoint.to_string()),
        ..ZookeeperConfig::new(zookeeper())
    };
    Arc::new(ZookeeperRegistry::new(&config).unwrap())
}

/// Registers endpoints the way Leaf's `SnowflakeZookeeperHolder` does (a PERSISTENT_SEQUENTIAL
/// node `{ip}:{port}-` under the forever path, JSON data with the port as a string); returns
/// each endpoint's sequence number, its worker id.
async fn leaf_nodes(leaf_name: &str, endpoints: &[(&str, u64)]) -> Vec<u32> {
    let zk = Client::connect(&zookeeper()).await.unwrap();
    let forever = format!("/snowflake/{leaf_name}/forever");
    zk.mkdir(
        &forever,
        &CreateMode::Persistent.with_acls(Acls::anyone_all()),
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for (endpoint, timestamp) in endpoints {
        let (ip, port) = endpoint.rsplit_once(':').unwrap();
        let data = serde_json::json!({"ip": ip, "port": port, "timestamp": timestamp});
        let (_, seq) = zk
            .create(
                &format!("{forever}/{endpoint}-"),
                data.to_string().as_bytes(),
                &CreateMode::PersistentSequential.with_acls(Acls::anyone_all()),
            )
            .await
            .unwrap();
        ids.push(u32::try_from(seq.into_i64()).unwrap());
    }
    ids
}

/// Leaf's data for the node of `endpoint`.
async fn leaf_data(leaf_name: &str, endpoint: &str, id: u32) -> serde_json::Value {
    let zk = Client::connect(&zookeeper()).await.unwrap();
    let path = format!("/snowflake/{leaf_name}/forever/{endpoint}-{id:010}");
    let (data, _) = zk.get_data(&path).await.unwrap();
    serde_json::from_slice(&data).unwrap()
}

/// An endpoint Leaf ran on keeps its Leaf worker id, starts after Leaf's stored timestamp and
/// writes its own marks back for Leaf; endpoints new to Leaf get ids no Leaf node has; two Floe
/// nodes on one endpoint never share the id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_endpoint_keeps_its_worker_id() {
    let mut root = Root::new().await;
    let leaf = unique("leaf");
    root.also.push(format!("/snowflake/{leaf}"));
    let now = common::unix_ms();
    let ids = leaf_nodes(
        &leaf,
        &[
            ("10.0.0.1:8080", now - 60_000),
            ("10.0.0.2:8080", now - 30_000),
            ("10.0.0.3:8080", now + 5_000),
        ],
    )
    .await;
    assert_eq!(ids, [0, 1, 2], "Leaf's sequence numbers");
    let ns = unique("leafns");
    let taker = leaf_registry(&root.path, &leaf, "10.0.0.3:8080");
    let req = request(&ns, 8, LONG_TTL);
    let lease = taker.acquire(&req).await.unwrap();
    assert_eq!(lease.id, 2, "the endpoint's Leaf worker id");
    assert_eq!(lease.epoch, 1);
    // Leaf wrote the node: its IDs may reach one upload delay (3 s) past its timestamp.
    assert_eq!(lease.previous_high_water_ms, Some(now + 5_000 + 3_001));
    taker.renew(&req, &lease, now + 6_000).await.unwrap();
    assert_eq!(
        leaf_data(&leaf, "10.0.0.3:8080", 2).await,
        serde_json::json!({"ip": "10.0.0.3", "port": "8080", "timestamp": now + 6_000})
    );
    // Other endpoints' Leaf nodes are not touched.
    assert_eq!(
        leaf_data(&leaf, "10.0.0.1:8080", 0).await["timestamp"],
        now - 60_000
    );
    // A Floe node on an endpoint new to Leaf skips every Leaf id.
    let newcomer = leaf_registry(&root.path, &leaf, "10.0.0.9:8080");
    let other_req = request(&ns, 8, LONG_TTL);
    assert_eq!(newcomer.acquire(&other_req).await.unwrap().id, 3);
    // A second Floe node configured with the same endpoint waits for the id.
    let twin = leaf_registry(&root.path, &leaf, "10.0.0.3:8080");
    let twin_req = request(&ns, 8, LONG_TTL);
    match twin.acquire(&twin_req).await {
        Err(e @ RegistryError::Unavailable { .. }) => {
            assert!(
                e.to_string().contains("held by another live Floe lease"),
                "{e}"
            );
        }
        r => panic!("a held Leaf id is not granted twice: {r:?}"),
    }
    taker.release(&req, &lease, now + 5_500).await.unwrap();
    assert_eq!(
        leaf_data(&leaf, "10.0.0.3:8080", 2).await["timestamp"],
        now + 5_500,
        "the exact final mark"
    );
    let next = twin.acquire(&twin_req).await.unwrap();
    assert_eq!(next.id, 2);
    assert!(next.epoch > lease.epoch);
    // Floe wrote it: its exact mark, no upload delay.
    assert_eq!(next.previous_high_water_ms, Some(now + 5_500));
    let slots = twin.list(&twin_req).await.unwrap();
    assert_eq!(
        slots
            .iter()
            .map(|s| (s.worker_id, s.held))
            .collect::<Vec<_>>(),
        [(2, true), (3, true)]
    );
}

/// A Leaf worker id outside the pool cannot be taken over; leaf_name and endpoint go together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_id_outside_the_pool_is_refused() {
    let mut root = Root::new().await;
    let leaf = unique("leaf");
    root.also.push(format!("/snowflake/{leaf}"));
    let now = common::unix_ms();
    let ids = leaf_nodes(
        &leaf,
        &[
            ("10.0.1.1:80", now),
            ("10.0.1.2:80", now),
            ("10.0.1.3:80", now),
        ],
    )
    .await;
    let reg = leaf_registry(&root.path, &leaf, "10.0.1.3:80");
    match reg.acquire(&request(&unique("small"), 2, LONG_TTL)).await {
        Err(RegistryError::Config(msg)) => {
            assert!(msg.contains(&format!("worker id {}", ids[2])), "{msg}");
        }
        r => panic!("expected Config, got {r:?}"),
    }
    let half = ZookeeperConfig {
        leaf_name: Some(leaf.clone()),
        ..ZookeeperConfig::new(zookeeper())
    };
    assert!(matches!(
        ZookeeperRegistry::new(&half),
        Err(RegistryError::Config(_))
    ));
}

/// The config `floe leaf` uses: Leaf cluster `leaf_name`, Floe's nodes under `root`, and
/// `endpoint` (if any) the one never deleted.
fn leaf_admin(root: &str, leaf_name: &str, endpoint: Option<&str>) -> ZookeeperConfig {
    ZookeeperConfig {
        root: root.to_string(),
        call_timeout: Duration::from_secs(5),
        leaf_name: Some(leaf_name.to_string()),
        endpoint: endpoint.map(str::to_string),
        ..ZookeeperConfig::new(zookeeper())
    }
}

/// The names of Leaf's nodes left under the forever path, sorted.
async fn leaf_children(leaf_name: &str) -> Vec<String> {
    let zk = Client::connect(&zookeeper()).await.unwrap();
    let mut names = zk
        .list_children(&format!("/snowflake/{leaf_name}/forever"))
        .await
        .unwrap();
    names.sort();
    names
}

fn ids_of(nodes: &[LeafNode]) -> Vec<u32> {
    nodes.iter().map(|n| n.worker_id).collect()
}

/// Reclaim deletes exactly the idle Leaf nodes, raising Floe's mark of each freed id to Leaf's
/// timestamp in the same multi-op; it keeps recent ones, one a live Floe lease holds, its own
/// endpoint's and one without a timestamp; a dry run deletes nothing; a freed id is leased by
/// the next Floe node and starts after Leaf's timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_reclaim_frees_idle_ids() {
    let mut root = Root::new().await;
    let leaf = unique("leaf");
    root.also.push(format!("/snowflake/{leaf}"));
    let now = common::unix_ms();
    let old = now - 48 * 3_600_000;
    let endpoints = [
        "10.2.0.1:8080",
        "10.2.0.2:8080",
        "10.2.0.3:8080",
        "10.2.0.4:8080",
        "10.2.0.5:8080",
    ];
    let ids = leaf_nodes(
        &leaf,
        &[
            (endpoints[0], old),
            (endpoints[1], now - 1_000),
            (endpoints[2], old),
            (endpoints[3], old),
            (endpoints[4], old),
        ],
    )
    .await;
    assert_eq!(ids, [0, 1, 2, 3, 4]);
    let zk = Client::connect(&zookeeper()).await.unwrap();
    let forever = format!("/snowflake/{leaf}/forever");
    // A node whose data is not Leaf's JSON: its age is unknown.
    zk.set_data(
        &format!("{forever}/{}-0000000004", endpoints[4]),
        b"not json",
        None,
    )
    .await
    .unwrap();
    let ns = unique("reclaim");
    // A Floe node took over endpoint 2 and holds its id.
    let taker = leaf_registry(&root.path, &leaf, endpoints[2]);
    let taker_req = request(&ns, 1024, LONG_TTL);
    let held = taker.acquire(&taker_req).await.unwrap();
    assert_eq!(held.id, 2);
    let config = leaf_admin(&root.path, &leaf, Some(endpoints[3]));

    let listed = list_leaf_nodes(&config, Some(&ns)).await.unwrap();
    assert_eq!(ids_of(&listed), [0, 1, 2, 3, 4]);
    assert_eq!(listed[0].name, format!("{}-0000000000", endpoints[0]));
    assert_eq!(
        listed[0].path,
        format!("{forever}/{}-0000000000", endpoints[0])
    );
    assert_eq!(listed[0].endpoint, endpoints[0]);
    assert_eq!(listed[0].timestamp_ms, Some(old));
    assert_eq!(listed[0].version, 0);
    assert!(listed[0].mtime_ms.abs_diff(i64::try_from(now).unwrap()) < 60_000);
    assert_eq!(listed[1].timestamp_ms, Some(now - 1_000));
    assert_eq!(listed[4].timestamp_ms, None);
    assert_eq!(listed[4].version, 1);
    assert_eq!(
        listed
            .iter()
            .map(|n| n.floe_holder.is_some())
            .collect::<Vec<_>>(),
        [false, false, true, false, false]
    );
    assert_eq!(
        listed[2].floe_holder.as_deref(),
        Some(taker_req.owner.as_str())
    );
    // Without a namespace, no lease is looked up.
    let bare = list_leaf_nodes(&config, None).await.unwrap();
    assert!(bare.iter().all(|n| n.floe_holder.is_none()), "{bare:?}");

    let idle = Duration::from_secs(3_600);
    let options = ReclaimOptions {
        namespace: ns.clone(),
        idle,
        dry_run: true,
    };
    let before = leaf_children(&leaf).await;
    let dry = reclaim_leaf_nodes(&config, &options).await.unwrap();
    assert!(dry.dry_run);
    assert_eq!(ids_of(&dry.deleted), [0]);
    let kept: Vec<(u32, Kept)> = dry
        .kept
        .iter()
        .map(|(n, k)| (n.worker_id, k.clone()))
        .collect();
    assert!(
        matches!(
            kept.as_slice(),
            [
                (1, Kept::Recent { age_ms, .. }),
                (2, Kept::HeldByFloe { owner }),
                (3, Kept::OwnEndpoint),
                (4, Kept::NoTimestamp),
            ] if (1_000..60_000).contains(age_ms) && *owner == taker_req.owner
        ),
        "{kept:?}"
    );
    assert_eq!(
        leaf_children(&leaf).await,
        before,
        "a dry run deletes nothing"
    );

    let done = reclaim_leaf_nodes(
        &config,
        &ReclaimOptions {
            dry_run: false,
            ..options.clone()
        },
    )
    .await
    .unwrap();
    assert!(!done.dry_run);
    assert_eq!(ids_of(&done.deleted), [0]);
    assert_eq!(done.kept.len(), 4, "{:?}", done.kept);
    assert_eq!(
        leaf_children(&leaf).await,
        [1, 2, 3, 4]
            .map(|i| format!("{}-{i:010}", endpoints[i]))
            .to_vec()
    );
    // Floe's record of the freed id covers Leaf's IDs (its timestamp plus one upload delay),
    // with no grant yet.
    let (data, _) = zk
        .get_data(&format!("{}/{ns}/ids/0", root.path))
        .await
        .unwrap();
    let record: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(
        record,
        serde_json::json!({"epoch": 0, "high_water_ms": old + 3_001})
    );
    // The next Floe node on an endpoint new to Leaf gets the freed id, after Leaf's timestamp.
    let newcomer = leaf_registry(&root.path, &leaf, "10.2.9.9:8080");
    let newcomer_req = request(&ns, 1024, LONG_TTL);
    let freed = newcomer.acquire(&newcomer_req).await.unwrap();
    assert_eq!((freed.id, freed.epoch), (0, 1));
    assert_eq!(freed.previous_high_water_ms, Some(old + 3_001));
    // And the one after it the lowest id no Leaf node and no Floe lease has.
    let third = leaf_registry(&root.path, &leaf, "10.2.9.10:8080");
    assert_eq!(
        third
            .acquire(&request(&ns, 1024, LONG_TTL))
            .await
            .unwrap()
            .id,
        5
    );

    // The taker stops; its release writes its (old) final mark to Leaf's node, which is then
    // idle and held by nobody: planned for deletion.
    taker.release(&taker_req, &held, old).await.unwrap();
    let plan = plan_reclaim(&config, &options).await.unwrap();
    assert_eq!(ids_of(&plan.deleted), [2]);
    // A Leaf process on that endpoint uploads its timestamp before the delete: kept.
    let path2 = format!("{forever}/{}-0000000002", endpoints[2]);
    let (data2, _) = zk.get_data(&path2).await.unwrap();
    zk.set_data(&path2, &data2, None).await.unwrap();
    let applied = apply_reclaim(&config, plan.clone()).await.unwrap();
    assert!(applied.deleted.is_empty(), "{applied:?}");
    assert!(
        matches!(&applied.kept.iter().find(|(n, _)| n.worker_id == 2), Some((_, Kept::Changed(why))) if why.contains("written since it was read")),
        "{:?}",
        applied.kept
    );
    // A Floe node takes the endpoint's id over between the plan and the delete: kept.
    let plan = plan_reclaim(&config, &options).await.unwrap();
    assert_eq!(ids_of(&plan.deleted), [2]);
    let again = leaf_registry(&root.path, &leaf, endpoints[2]);
    let again_req = request(&ns, 1024, LONG_TTL);
    assert_eq!(again.acquire(&again_req).await.unwrap().id, 2);
    let applied = apply_reclaim(&config, plan).await.unwrap();
    assert!(applied.deleted.is_empty(), "{applied:?}");
    assert!(
        matches!(&applied.kept.iter().find(|(n, _)| n.worker_id == 2), Some((_, Kept::HeldByFloe { owner })) if *owner == again_req.owner),
        "{:?}",
        applied.kept
    );
    assert!(leaf_children(&leaf)
        .await
        .contains(&format!("{}-0000000002", endpoints[2])));
}

/// Errors name the input: an unknown Leaf cluster names its path, a missing leaf_name says it
/// is required, and a ZooKeeper that does not answer fails within the call timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_admin_errors_name_the_input() {
    let root = Root::new().await;
    let missing = unique("noleaf");
    let config = leaf_admin(&root.path, &missing, None);
    match list_leaf_nodes(&config, None).await {
        Err(RegistryError::Config(msg)) => assert!(
            msg.contains(&format!("/snowflake/{missing}/forever does not exist")),
            "{msg}"
        ),
        r => panic!("expected Config, got {r:?}"),
    }
    let options = ReclaimOptions {
        namespace: "floe".to_string(),
        idle: Duration::from_secs(60),
        dry_run: true,
    };
    assert!(matches!(
        reclaim_leaf_nodes(&config, &options).await,
        Err(RegistryError::Config(_))
    ));
    let unnamed = ZookeeperConfig::new(zookeeper());
    match list_leaf_nodes(&unnamed, None).await {
        Err(RegistryError::Config(msg)) => assert!(msg.contains("leaf_name is required"), "{msg}"),
        r => panic!("expected Config, got {r:?}"),
    }
    let (addr, hole) = common::black_hole().await;
    let timeout = Duration::from_millis(500);
    let hung = ZookeeperConfig {
        connect: addr.to_string(),
        call_timeout: timeout,
        ..leaf_admin("/floetest", "leaf", None)
    };
    let started = Instant::now();
    match list_leaf_nodes(&hung, None).await {
        Err(e @ RegistryError::Unavailable { .. }) => {
            assert!(e.to_string().contains(&addr.to_string()), "{e}");
        }
        r => panic!("expected Unavailable, got {r:?}"),
    }
    assert!(
        started.elapsed() < timeout + Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    hole.abort();
}

/// With digest `auth`, the nodes Floe creates carry the `creator_all` ACL: the same credentials
/// lease, renew and release; a registry without them, or with other ones, cannot touch the
/// namespace and gets `Unavailable` saying it is not authorized, never an id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_digest_auth_only_the_same_credentials_get_an_id() {
    let root = Root::new().await;
    let with = |auth: Option<&str>| {
        ZookeeperRegistry::new(&ZookeeperConfig {
            root: root.path.clone(),
            auth: auth.map(str::to_string),
            call_timeout: Duration::from_secs(5),
            ..ZookeeperConfig::new(zookeeper())
        })
        .unwrap()
    };
    let ns = unique("auth");
    let req = request(&ns, 4, Duration::from_secs(5));
    let owner = with(Some("floe:secret"));
    let lease = owner.acquire(&req).await.unwrap();
    assert_eq!(lease.id, 0);
    owner.renew(&req, &lease, 11).await.unwrap();
    owner.release(&req, &lease, 11).await.unwrap();
    let again = owner.acquire(&req).await.unwrap();
    assert_eq!(again.previous_high_water_ms, Some(11));
    for (what, reg) in [
        ("no credentials", with(None)),
        ("other credentials", with(Some("floe:wrong"))),
    ] {
        match reg.acquire(&request(&ns, 4, Duration::from_secs(5))).await {
            Err(e @ RegistryError::Unavailable { .. }) => {
                assert!(e.to_string().contains("not authorized"), "{what}: {e}");
            }
            other => panic!("{what}: expected Unavailable (not authorized), got {other:?}"),
        }
    }
    owner.release(&req, &again, 12).await.unwrap();
    // Only the same credentials may delete what they created (the root's cleanup has none).
    let client = Client::connector()
        .with_auth("digest", "floe:secret".as_bytes())
        .connect(&zookeeper())
        .await
        .unwrap();
    let base = format!("{}/{ns}", root.path);
    for node in [
        format!("{base}/ids/0"),
        format!("{base}/ids"),
        format!("{base}/workers"),
        base.clone(),
    ] {
        client.delete(&node, None).await.unwrap();
    }
}
