//! Test support shared by Floe's crates (dev-dependency only).
//!
//! - [`ChaosProxy`]: a TCP proxy on loopback that can cut a service off and heal it, to test
//!   outages of PostgreSQL, MariaDB or Redis without touching the real server;
//! - [`postgres_url`], [`mysql_url`], [`redis_url`]: the test services (from the environment,
//!   defaulting to the loopback services of the development machine);
//! - [`unique`]: names no other test or earlier run uses (tables, key prefixes, tags);
//! - [`FloeProcess`]: a `floe serve` child process, its addresses, signals, kill on drop;
//! - [`EtcdCluster`]: a 3-member etcd cluster of a test's own, whose leader can be killed;
//! - [`Tmpfs`]: a small tmpfs for disk-full tests, unmounted on drop;
//! - [`eventually`], [`consistently`] (and their async twins): poll with a deadline instead of
//!   sleeping, failing with a message that names what was awaited;
//! - [`assert_increasing`], [`assert_unique`]: the checks on IDs every crate's tests make;
//! - [`http`]: the one HTTP/1.1 client of the tests (hyper's), async and blocking.
//!
//! Everything that needs tokio (`ChaosProxy`, `http`, the async waits) is behind the `tokio`
//! feature, so `floe-core`, whose loom build cannot compile tokio, can use the rest.

#![warn(missing_docs)]

#[cfg(feature = "tokio")]
mod chaos;
mod etcd;
#[cfg(feature = "tokio")]
pub mod http;
mod ids;
mod process;
mod tmpfs;
mod wait;

#[cfg(feature = "tokio")]
pub use chaos::ChaosProxy;
pub use etcd::EtcdCluster;
pub use ids::{assert_increasing, assert_unique};
pub use process::{
    clean_command, collect, fake_clock, libfaketime, serve_args, FloeProcess, STARTUP,
};
pub use tmpfs::Tmpfs;
pub use wait::{consistently, eventually, Outcome, POLL};
#[cfg(feature = "tokio")]
pub use wait::{consistently_async, eventually_async};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// PostgreSQL for tests: `FLOE_TEST_POSTGRES_URL`, default the loopback server's `test` database.
pub fn postgres_url() -> String {
    std::env::var("FLOE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// MySQL/MariaDB for tests: `FLOE_TEST_MYSQL_URL`, default root on the loopback `test` database.
pub fn mysql_url() -> String {
    std::env::var("FLOE_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// Redis for tests: `FLOE_TEST_REDIS_URL`, default the loopback server.
pub fn redis_url() -> String {
    std::env::var("FLOE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The shared 3-member etcd cluster for tests (`./scripts/services` starts it):
/// `FLOE_TEST_ETCD_ENDPOINTS`, comma-separated, default the three loopback members.
pub fn etcd_endpoints() -> Vec<String> {
    std::env::var("FLOE_TEST_ETCD_ENDPOINTS")
        .unwrap_or_else(|_| {
            "http://127.0.0.1:2379,http://127.0.0.1:22379,http://127.0.0.1:32379".into()
        })
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect()
}

/// A name (letters, digits, `_`) unique to this process, call and moment.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// This process's resident memory in bytes (`VmRSS`): what an in-process server holds.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// The value of a series (`name` or `name{labels}`, exactly as printed) on a Prometheus page.
pub fn metric_value(page: &str, series: &str) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The host and port of a service URL (`scheme://user@host:port/db` → `host:port`).
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_string()
}

/// Replaces the host and port of a service URL, to point a client at a proxy.
pub fn with_host_port(url: &str, addr: SocketAddr) -> String {
    let hp = host_port(url);
    url.replacen(&hp, &addr.to_string(), 1)
}
