//! The Redis worker-id registry against the real Redis (`FLOE_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`). A missing Redis fails these tests.

mod common;

use std::sync::Arc;
use std::time::Duration;

use floe_store::registry::{RedisConfig, RedisRegistry, WorkerRegistry};
use floe_testkit::{redis_url, unique, with_host_port};

/// A registry on `url` under `prefix`.
fn registry(url: &str, prefix: &str, call_timeout: Duration) -> Arc<dyn WorkerRegistry> {
    let config = RedisConfig {
        key_prefix: prefix.to_string(),
        call_timeout,
        ..RedisConfig::new(url)
    };
    Arc::new(RedisRegistry::new(&config).unwrap())
}

/// A key prefix of its own for one test, whose keys are deleted when the test ends.
struct Prefix(String);

impl Prefix {
    fn new() -> Prefix {
        Prefix(unique("floetest"))
    }
}

impl common::Store for Prefix {
    fn registry(&self) -> Arc<dyn WorkerRegistry> {
        registry(&redis_url(), &self.0, Duration::from_secs(5))
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        // Best effort, and synchronous so it also runs when a test panics.
        if let Ok(mut conn) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.0))
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
            }
        }
    }
}

common::contract!(contract, Prefix::new());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_is_unavailable_within_the_call_timeout() {
    let (addr, hole) = common::black_hole().await;
    let timeout = Duration::from_millis(500);
    let url = with_host_port(&redis_url(), addr);
    common::hung_store_is_unavailable(registry(&url, "floetest", timeout), timeout).await;
    hole.abort();
}
