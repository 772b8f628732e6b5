//! Test support shared by Floe's crates (dev-dependency only).
//!
//! - [`ChaosProxy`]: a TCP proxy on loopback that can cut a service off and heal it, to test
//!   outages of PostgreSQL, MariaDB or Redis without touching the real server;
//! - [`postgres_url`], [`mysql_url`], [`redis_url`]: the test services (from the environment,
//!   defaulting to the loopback services of the development machine);
//! - [`unique`]: names no other test or earlier run uses (tables, key prefixes, tags);
//! - [`FloeProcess`]: a `floe serve` child process, its addresses, signals, kill on drop;
//! - [`Tmpfs`]: a small tmpfs for disk-full tests, unmounted on drop.

#![warn(missing_docs)]

mod process;
mod tmpfs;

pub use process::{
    clean_command, collect, fake_clock, libfaketime, serve_args, FloeProcess, STARTUP,
};
pub use tmpfs::Tmpfs;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

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

/// A TCP proxy on 127.0.0.1 that forwards to `upstream` until cut.
///
/// `cut()` drops every open connection and makes new ones close at once (a crashed or
/// partitioned service); `heal()` forwards again. Dropping the proxy stops it.
#[derive(Debug)]
pub struct ChaosProxy {
    /// Where clients connect.
    addr: SocketAddr,
    /// Whether traffic is cut; connections watch it to drop themselves.
    cut: watch::Sender<bool>,
    /// Connections accepted so far, so tests can see that clients reconnected.
    accepted: Arc<AtomicU64>,
    /// Stops the accept loop on drop.
    stop: Arc<AtomicBool>,
}

impl ChaosProxy {
    /// Starts a proxy to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<ChaosProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, cut_rx) = watch::channel(false);
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let (acc, stop2) = (accepted.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop2.load(Ordering::Acquire) {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                acc.fetch_add(1, Ordering::Relaxed);
                let mut cut_rx = cut_rx.clone();
                if *cut_rx.borrow() {
                    drop(client); // refused: closed at once
                    continue;
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Ok(ChaosProxy {
            addr,
            cut,
            accepted,
            stop,
        })
    }

    /// Where to connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops all connections and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Forwards again.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.cut.send_replace(true);
    }
}
