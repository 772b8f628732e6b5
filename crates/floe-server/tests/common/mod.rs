//! What the black-box tests share: a server on 127.0.0.1:0 with its own data directory and raw
//! binary-protocol helpers (HTTP goes through `floe_testkit::http`). Every wait is bounded.

#![allow(dead_code)] // each test binary uses a different part

use std::future::Future;
use std::net::SocketAddr;
use std::panic::Location;
use std::time::Duration;

use floe_server::{run, Config, Listeners, LogLevel, ServerError};
use floe_testkit::eventually_async;
use floe_testkit::http::request;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound of any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A configuration for tests: quiet logs; the data directory is set by [`TestServer::start`].
pub fn config() -> Config {
    let mut c = Config::default();
    c.log.level = LogLevel::Warn;
    c
}

/// A node leasing a 1-bit worker id (layout `time:41/1ms@2020-01-01 worker:1 seq:12`) from the
/// test Redis in `namespace`, with the lease `ttl` (e.g. `"3s"`), without segment mode.
pub fn redis_lease_config(namespace: &str, ttl: &str) -> Config {
    let mut c = Config::from_toml(&format!(
        r#"
[snowflake]
layout = "time:41/1ms@2020-01-01 worker:1 seq:12"
max_drift = "50ms"

[segment]
enabled = false

[registry]
kind = "redis"
url = "{}"
namespace = "{namespace}"
ttl = "{ttl}"
fields = ["worker"]
"#,
        floe_testkit::redis_url()
    ))
    .expect("valid lease configuration");
    c.log.level = LogLevel::Warn;
    c
}

/// A server running in this process.
pub struct TestServer {
    /// Binary TCP address.
    pub tcp: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
    /// Triggers graceful shutdown.
    stop: Option<oneshot::Sender<()>>,
    /// The `run` task.
    task: JoinHandle<Result<(), ServerError>>,
    /// The data directory, removed when the test ends.
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts `config` on ephemeral ports with a fresh data directory.
    pub async fn start(config: Config) -> TestServer {
        TestServer::start_in(config, tempfile::tempdir().unwrap()).await
    }

    /// Starts `config` on ephemeral ports with the data directory `dir`.
    pub async fn start_in(mut config: Config, dir: tempfile::TempDir) -> TestServer {
        config.data_dir = dir.path().to_path_buf();
        let local = "127.0.0.1:0".parse().unwrap();
        let listeners = Listeners::bind_to(local, local).await.unwrap();
        let tcp = listeners.tcp_addr().unwrap();
        let http = listeners.http_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(config, listeners, async move {
            let _ = stopped.await;
        }));
        let server = TestServer {
            tcp,
            http,
            stop: Some(stop),
            task,
            dir,
        };
        server.wait_ready().await;
        server
    }

    /// Waits until the HTTP listener answers, so tests do not race the start.
    async fn wait_ready(&self) {
        let addr = self.http;
        eventually_async(WAIT, "the server answers /healthz", async || match request(
            addr,
            "GET",
            "/healthz",
            &[],
            "",
        )
        .await
        {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(format!("{} {}", r.status, r.body)),
            Err(e) => Err(e.to_string()),
        })
        .await;
    }

    /// Starts graceful shutdown without waiting for it.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down gracefully and returns `run`'s result and the data directory.
    #[track_caller]
    pub fn stop(mut self) -> impl Future<Output = (Result<(), ServerError>, tempfile::TempDir)> {
        let at = Location::caller();
        async move {
            self.signal_stop();
            let result = tokio::time::timeout(Duration::from_secs(30), &mut self.task)
                .await
                .unwrap_or_else(|_| panic!("server stops within 30 s (at {at})"))
                .unwrap_or_else(|e| panic!("run task panicked (at {at}): {e}"));
            (result, self.dir)
        }
    }
}

// The async helpers below are plain functions returning futures, so that `#[track_caller]`
// works: a failure names the test's line (async fns cannot take the attribute).

/// Connects to the binary TCP port.
#[track_caller]
pub fn connect(addr: SocketAddr) -> impl Future<Output = TcpStream> {
    let at = Location::caller();
    async move {
        let s = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} within {WAIT:?} (at {at})"))
            .unwrap_or_else(|e| panic!("connect to {addr} (at {at}): {e}"));
        s.set_nodelay(true).unwrap();
        s
    }
}

/// Reads exactly `n` bytes, failing the test after [`WAIT`].
#[track_caller]
pub fn read_n(s: &mut TcpStream, n: usize) -> impl Future<Output = Vec<u8>> + '_ {
    read_n_at(s, n, Location::caller())
}

async fn read_n_at(s: &mut TcpStream, n: usize, at: &Location<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(WAIT, s.read_exact(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no {n}-byte reply within {WAIT:?} (at {at})"))
        .unwrap_or_else(|e| panic!("{n}-byte reply cut short (at {at}): {e}"));
    buf
}

/// Whether the server closed the connection without sending anything more; fails the test if
/// it neither closes nor answers within [`WAIT`].
#[track_caller]
pub fn closed_without_bytes(s: &mut TcpStream) -> impl Future<Output = bool> + '_ {
    let at = Location::caller();
    async move {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
            Ok(Ok(0)) => true,
            Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(Ok(_)) => false,
            Err(_) => panic!("connection neither closed nor answered within {WAIT:?} (at {at})"),
        }
    }
}

/// Big-endian u64s from bytes.
pub fn ids(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

/// One v2 request frame.
pub fn v2_request(op: u8, req_id: u32, count: u32, tag: &[u8]) -> Vec<u8> {
    let mut f = vec![0xF1, op];
    f.extend_from_slice(&req_id.to_be_bytes());
    f.extend_from_slice(&count.to_be_bytes());
    f.push(tag.len() as u8);
    f.extend_from_slice(tag);
    f
}

/// One decoded v2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Reply {
    pub status: u8,
    pub req_id: u32,
    /// IDs when status is 0.
    pub ids: Vec<u64>,
    /// The message otherwise.
    pub message: String,
}

/// Reads one v2 reply.
#[track_caller]
pub fn read_v2(s: &mut TcpStream) -> impl Future<Output = V2Reply> + '_ {
    let at = Location::caller();
    async move {
        let head = read_n_at(s, 10, at).await;
        assert_eq!(head[0], 0xF1, "v2 reply magic (at {at})");
        let status = head[1];
        let req_id = u32::from_be_bytes(head[2..6].try_into().unwrap());
        let len = u32::from_be_bytes(head[6..10].try_into().unwrap()) as usize;
        if status == 0 {
            V2Reply {
                status,
                req_id,
                ids: ids(&read_n_at(s, len * 8, at).await),
                message: String::new(),
            }
        } else {
            let message = read_n_at(s, len, at).await;
            V2Reply {
                status,
                req_id,
                ids: Vec::new(),
                message: String::from_utf8(message).unwrap(),
            }
        }
    }
}

/// A native error body, as the server writes it.
pub fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message}}).to_string()
}
