//! `floe serve` replacing a Meituan Leaf node in place, on the real ZooKeeper: Leaf's layout
//! (`twitter`: 41-bit ms since 1288834974657, 10 worker bits, 12 sequence bits, the worker bits
//! leased as `dc,worker`), Leaf's node of the endpoint giving the worker id, Leaf's stored
//! timestamp (3 s ahead, as a Leaf that ran with a fast clock leaves it) the floor of every ID,
//! and Floe's last mark written back for a Leaf restarted there.

#[path = "fixtures/cluster_support.rs"]
mod cluster;
#[path = "fixtures/leaf_support.rs"]
mod leaf_support;

use std::path::Path;

use cluster::{bulk, Node, STARTUP};
use floe_testkit::{assert_increasing, eventually, unique};
use leaf_support::{leaf_children, leaf_data, leaf_nodes, unix_ms, zookeeper, Cleanup};

/// Twitter's (and Leaf's) epoch, Unix ms.
const TWITTER_EPOCH_MS: u64 = 1_288_834_974_657;

/// The time of a `twitter` ID, Unix ms.
fn time_ms(id: u64) -> u64 {
    (id >> 22) + TWITTER_EPOCH_MS
}

/// The 10 worker bits of a `twitter` ID (Floe's `dc` and `worker` fields together).
fn worker_id(id: u64) -> u64 {
    (id >> 12) & 0x3FF
}

/// The environment of a Floe node taking over Leaf cluster `leaf` from `endpoint`.
fn env(ns: &str, root: &str, leaf: &str, endpoint: &str) -> Vec<(String, String)> {
    [
        ("FLOE_SNOWFLAKE__LAYOUT", "twitter"),
        ("FLOE_SEGMENT__ENABLED", "false"),
        ("FLOE_REGISTRY__KIND", "zookeeper"),
        ("FLOE_REGISTRY__URL", &zookeeper()),
        ("FLOE_REGISTRY__NAMESPACE", ns),
        ("FLOE_REGISTRY__KEY_PREFIX", root),
        // Leaf's 10 worker bits are twitter's dc (high 5) and worker (low 5): the leased id
        // fills both, so worker id 1 is dc 0, worker 1.
        ("FLOE_REGISTRY__FIELDS", "dc,worker"),
        ("FLOE_REGISTRY__LEAF_NAME", leaf),
        ("FLOE_REGISTRY__ENDPOINT", endpoint),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec()
}

/// Starts a node and waits until it is ready.
#[track_caller]
fn start(dir: &Path, env: &[(String, String)], what: &str) -> Node {
    let node = Node::start(dir, env, None);
    eventually(STARTUP, &format!("{what} is ready"), || {
        let (status, body) = node.get("/readyz");
        (status == 200)
            .then_some(())
            .ok_or_else(|| format!("{status} {body}; stderr:\n{}", node.stderr()))
    });
    node
}

/// The worker id a ready node leased, checked to fill `dc` (high 5 bits) and `worker`.
#[track_caller]
fn leased_id(node: &Node, what: &str) -> u64 {
    let info = node.info();
    let lease = &info["lease"];
    assert_eq!(lease["held"], true, "{what}: {info}");
    let id = lease["worker_id"].as_u64().expect("worker_id");
    assert_eq!(
        (
            info["identity"]["dc"].as_u64(),
            info["identity"]["worker"].as_u64()
        ),
        (Some(id >> 5), Some(id & 31)),
        "{what}: the leased id fills dc and worker: {info}"
    );
    id
}

/// Checks IDs of worker `id`: increasing, each with the worker bits `id` and a time after
/// `after_ms`.
#[track_caller]
fn check(what: &str, ids: &[u64], id: u64, after_ms: u64) {
    assert!(!ids.is_empty(), "{what}: no IDs");
    assert_increasing(ids);
    for x in ids {
        assert_eq!(
            worker_id(*x),
            id,
            "{what}: ID {x} has worker {}",
            worker_id(*x)
        );
        assert!(
            time_ms(*x) > after_ms,
            "{what}: ID {x} has time {} ms, not after {after_ms}",
            time_ms(*x)
        );
    }
}

#[test]
fn serve_takes_over_a_leaf_node_in_place() {
    let leaf = unique("leafserve");
    let root = format!("/{}", unique("floeleafserve"));
    let ns = unique("ns");
    let _cleanup = Cleanup(vec![format!("/snowflake/{leaf}"), root.clone()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let zk = rt
        .block_on(zookeeper_client::Client::connect(&zookeeper()))
        .unwrap();
    let endpoints = ["10.4.0.1:8080", "10.4.0.2:8080", "10.4.0.3:8080"];
    // A Leaf cluster whose clock ran 3 s fast: its stored timestamps are ahead of ours.
    let leaf_ts = unix_ms() + 3_000;
    let ids = rt.block_on(leaf_nodes(&zk, &leaf, &endpoints.map(|e| (e, leaf_ts))));
    assert_eq!(ids, [0, 1, 2], "Leaf's sequences, in creation order");

    // Leaf stored its clock at its last upload and issued IDs until the next one was due (3 s
    // later): Floe's first tick is one upload delay and a millisecond past Leaf's timestamp.
    let floor = leaf_ts + 3_001;
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &env(&ns, &root, &leaf, endpoints[1]), None);
    // Until its clock is within max_rollback (5 s, the default) of that floor, it refuses, and
    // /readyz says why.
    let mut unready = Vec::new();
    eventually(STARTUP, "the node on Leaf's endpoint 1 is ready", || {
        let (status, body) = node.get("/readyz");
        if status == 200 {
            return Ok(());
        }
        unready.push(body.clone());
        Err(format!("{status} {body}; stderr:\n{}", node.stderr()))
    });
    for body in &unready {
        assert!(
            body.contains("clock") || body.contains("lease"),
            "/readyz must say why it is not ready: {body}"
        );
    }
    let id = leased_id(&node, "Leaf's endpoint 1");
    assert_eq!(id, 1, "the endpoint's Leaf worker id");
    let first = bulk(node.tcp, 50_000);
    let first_at = unix_ms();
    check("first IDs", &first, 1, floor - 1);
    println!(
        "ready after {} /readyz 503s; first IDs at wall {first_at}, Leaf's timestamp {leaf_ts} ({} ms ahead), ID times {}..{}",
        unready.len(),
        leaf_ts as i64 - first_at as i64,
        time_ms(first[0]),
        time_ms(*first.last().unwrap())
    );
    assert!(
        first_at + 5_000 >= floor,
        "no IDs before the clock is within max_rollback (5 s) of the floor {floor}: got them at {first_at}"
    );
    // Then it serves from logical time: its first tick is the floor, ahead of its wall clock.
    assert_eq!(time_ms(first[0]), floor, "the first ID is at the floor");
    assert!(
        time_ms(first[0]) > first_at,
        "served from logical time, ahead of the wall clock {first_at}"
    );

    // An endpoint Leaf never had: the lowest id no Leaf node has.
    let other_dir = tempfile::tempdir().unwrap();
    let mut other = start(
        other_dir.path(),
        &env(&ns, &root, &leaf, "10.4.0.9:8080"),
        "an endpoint new to Leaf",
    );
    let other_id = leased_id(&other, "an endpoint new to Leaf");
    assert_eq!(other_id, 3, "the lowest id no Leaf node has");
    check("the new endpoint's IDs", &bulk(other.tcp, 10_000), 3, 0);

    // More IDs from endpoint 1, until its wall clock has caught up with the floor.
    let mut served = first;
    eventually(STARTUP, "the wall clock passes the floor", || {
        served.extend(bulk(node.tcp, 10_000));
        unix_ms() > floor + 200
    });
    check("IDs of endpoint 1", &served, 1, floor - 1);
    let last_ms = time_ms(*served.last().unwrap());

    let status = node.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "graceful stop; stderr:\n{}",
        node.stderr()
    );
    let data = rt.block_on(leaf_data(&zk, &leaf, endpoints[1], 1));
    assert_eq!(
        (data["ip"].as_str(), data["port"].as_str()),
        (Some("10.4.0.2"), Some("8080")),
        "{data}"
    );
    let stored = data["timestamp"].as_u64().expect("a numeric timestamp");
    // Leaf refuses to start only while the timestamp is ahead of its clock, and then issues in
    // the timestamp's millisecond: it must lie past Floe's last ID.
    assert!(
        stored > last_ms,
        "Leaf's timestamp {stored} is after the last ID's time {last_ms}: a Leaf restarted there starts after Floe's IDs"
    );
    // The other endpoints' Leaf nodes are untouched, and Floe made none for the new one.
    for (i, endpoint) in endpoints.iter().enumerate().filter(|(i, _)| *i != 1) {
        let data = rt.block_on(leaf_data(&zk, &leaf, endpoint, i as u32));
        assert_eq!(data["timestamp"], leaf_ts, "{endpoint}: {data}");
    }
    assert_eq!(rt.block_on(leaf_children(&zk, &leaf)).len(), 3);
    let status = other.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "graceful stop; stderr:\n{}",
        other.stderr()
    );
    println!("last ID of endpoint 1 at {last_ms} ms, Leaf's timestamp after the stop {stored}");
}
