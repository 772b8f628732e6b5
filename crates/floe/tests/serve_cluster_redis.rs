//! Three `floe serve` processes leasing their `machine` id from Redis (issue #5): concurrent
//! IDs without duplicates, a kill -9 and restart, a restart with the clock 5 s in the past.
//! Needs Redis (`FLOE_TEST_REDIS_URL`, default 127.0.0.1:6379); a missing Redis fails the test.
//! The scenario lives in `fixtures/cluster_support.rs`.

#[path = "fixtures/cluster_support.rs"]
mod cluster;

use floe_testkit::{redis_url, unique};

/// Deletes a namespace's keys (the epoch and mark keys carry no expiry).
fn cleanup(url: &str, namespace: &str) {
    let mut con = redis::Client::open(url)
        .unwrap()
        .get_connection()
        .expect("connect to Redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("floe:{namespace}:*"))
        .query(&mut con)
        .unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL").arg(keys).query(&mut con).unwrap();
    }
}

#[test]
fn three_nodes_on_redis_never_repeat_an_id() {
    let url = redis_url();
    // Fail early and clearly when Redis is not there.
    redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap_or_else(|e| panic!("Redis at {url} is required for this test: {e}"));
    let namespace = unique("cluster");
    cluster::cluster_scenario(
        "redis",
        &[
            ("FLOE_REGISTRY__KIND".into(), "redis".into()),
            ("FLOE_REGISTRY__URL".into(), url.clone()),
            ("FLOE_REGISTRY__NAMESPACE".into(), namespace.clone()),
        ],
        1_000_000,
    );
    cleanup(&url, &namespace);
}
