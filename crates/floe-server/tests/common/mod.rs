//! What the black-box tests share: a server on 127.0.0.1:0 with its own data directory, raw
//! protocol helpers and a minimal HTTP/1.1 client. Every wait is bounded.

#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::time::Duration;

use floe_server::{run, Config, Listeners, LogLevel, ServerError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(Ok(r)) = tokio::time::timeout(
                Duration::from_secs(1),
                http(self.http, "GET", "/healthz", &[], ""),
            )
            .await
            {
                if r.status == 200 {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts graceful shutdown without waiting for it.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down gracefully and returns `run`'s result and the data directory.
    pub async fn stop(mut self) -> (Result<(), ServerError>, tempfile::TempDir) {
        self.signal_stop();
        let result = tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("server stops within 30 s")
            .expect("run task does not panic");
        (result, self.dir)
    }
}

/// Connects to the binary TCP port.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let s = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    s.set_nodelay(true).unwrap();
    s
}

/// Reads exactly `n` bytes, failing the test after [`WAIT`].
pub async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(WAIT, s.read_exact(&mut buf))
        .await
        .expect("reply in time")
        .expect("full reply");
    buf
}

/// Whether the server closed the connection without sending anything more.
pub async fn closed_without_bytes(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
        Ok(Ok(0)) => true,
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(Ok(_)) => false,
        Err(_) => panic!("connection neither closed nor answered within {WAIT:?}"),
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
pub async fn read_v2(s: &mut TcpStream) -> V2Reply {
    let head = read_n(s, 10).await;
    assert_eq!(head[0], 0xF1, "v2 reply magic");
    let status = head[1];
    let req_id = u32::from_be_bytes(head[2..6].try_into().unwrap());
    let len = u32::from_be_bytes(head[6..10].try_into().unwrap()) as usize;
    if status == 0 {
        V2Reply {
            status,
            req_id,
            ids: ids(&read_n(s, len * 8).await),
            message: String::new(),
        }
    } else {
        V2Reply {
            status,
            req_id,
            ids: Vec::new(),
            message: String::from_utf8(read_n(s, len).await).unwrap(),
        }
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request over a fresh connection.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect(addr).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::other("HTTP response timed out"))??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("truncated HTTP response"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8(body).map_err(std::io::Error::other)?,
    })
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap().trim(), 16).unwrap();
        rest = &rest[end + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
    out
}

/// `GET path` and expect success.
pub async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http(addr, "GET", path, &[], "")
        .await
        .expect("HTTP request")
}

/// A configuration from TOML, so the real keys are exercised: the admin API on with `token`,
/// quiet logs, then `rest` (more sections).
pub fn admin_config(token: &str, rest: &str) -> floe_server::Config {
    let text = format!("[server]\nadmin_token = \"{token}\"\n[log]\nlevel = \"warn\"\n{rest}\n");
    floe_server::Config::from_toml(&text).unwrap_or_else(|e| panic!("config {text:?}: {e}"))
}

/// A native error body, as the server writes it.
pub fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message}}).to_string()
}

/// An admin request with the bearer `token` and a JSON content type.
pub async fn admin_request(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: &str,
) -> HttpResponse {
    let auth = format!("Bearer {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    http(addr, method, path, &headers, body)
        .await
        .expect("admin request")
}

/// Asserts strictly increasing (and so unique) IDs.
pub fn assert_increasing(ids: &[u64]) {
    for w in ids.windows(2) {
        assert!(
            w[0] < w[1],
            "IDs must strictly increase: {} then {}",
            w[0],
            w[1]
        );
    }
}
