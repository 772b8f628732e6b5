//! Hostile and faulty HTTP clients: stalled admin bodies, slowloris heads, idle keep-alive
//! connections, a connection flood, bad path parameters and bodies, and `/health` during a
//! store outage. Every limit is set small through the config, so the file runs in seconds.
//!
//! The tests run one at a time ([`SERIAL`]): they measure this process's memory and read
//! process-wide metrics, which other tests running beside them would disturb.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use floe_server::Config;
use floe_testkit::{metric_value, rss_bytes};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// One test at a time (see the module doc).
static SERIAL: Mutex<()> = Mutex::const_new(());

const TOKEN: &str = "faults-test-token";

/// A test config with the HTTP limits small.
fn limited(header: u64, idle: u64, max_connections: usize) -> Config {
    let mut c = config();
    c.server.http.header_timeout = Duration::from_millis(header);
    c.server.http.idle_timeout = Duration::from_millis(idle);
    c.server.http.body_timeout = Duration::from_millis(300);
    c.server.http.max_connections = max_connections;
    c
}

/// Waits until the server closes `s` (EOF or reset), ignoring any bytes; `None` if it is still
/// open at `deadline`.
async fn closed_by(s: &mut TcpStream, deadline: Instant) -> Option<Instant> {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(Instant::now()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads one response with a Content-Length from a keep-alive connection: (status, body).
async fn read_response(s: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if raw.len() >= split + 4 + len {
                let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                let body = String::from_utf8_lossy(&raw[split + 4..split + 4 + len]).into_owned();
                return (status, body);
            }
        }
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    }
}

/// A keep-alive GET on `s`.
async fn get_on(s: &mut TcpStream, path: &str) -> (u16, String) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_response(s).await
}

/// Sends `count` requests whose 2 MB body stalls after 1 MB; returns the statuses seen within
/// a few seconds (0 for none) and keeps the writers alive until the caller drops the handles.
async fn stalled_bodies(
    addr: SocketAddr,
    count: usize,
    headers: &str,
) -> (Vec<u16>, Vec<tokio::task::JoinHandle<()>>) {
    let chunk: Arc<Vec<u8>> = Arc::new(vec![b'x'; 1 << 20]);
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..count {
        let s = TcpStream::connect(addr).await.unwrap();
        let (mut r, mut w) = s.into_split();
        let head = format!(
            "PUT /admin/log-level HTTP/1.1\r\nHost: t\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            2 << 20
        );
        w.write_all(head.as_bytes()).await.unwrap();
        let chunk = chunk.clone();
        writers.push(tokio::spawn(async move {
            // The server may close under us (that is the point); then stop writing.
            let _ = w.write_all(&chunk).await;
            std::future::pending::<()>().await;
            drop(w);
        }));
        readers.push(tokio::spawn(async move {
            let mut raw = Vec::new();
            let mut buf = [0u8; 1024];
            let deadline = Instant::now() + Duration::from_secs(5);
            while !raw.windows(2).any(|w| w == b"\r\n") {
                match tokio::time::timeout_at(deadline, r.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => raw.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            String::from_utf8_lossy(&raw)
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0u16)
        }));
    }
    let mut statuses = Vec::new();
    for r in readers {
        statuses.push(r.await.unwrap());
    }
    (statuses, writers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bodies_are_not_read_before_the_token_is_checked() {
    let _serial = SERIAL.lock().await;
    let mut with_admin = limited(2_000, 10_000, 1_000);
    with_admin.server.admin_token = Some(TOKEN.into());
    let admin_on = TestServer::start(with_admin).await;
    let admin_off = TestServer::start(limited(2_000, 10_000, 1_000)).await;
    let before = rss_bytes();

    let (unauthorised, w1) = stalled_bodies(admin_on.http, 100, "").await;
    let (disabled, w2) = stalled_bodies(
        admin_off.http,
        100,
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    )
    .await;
    let grown = rss_bytes().saturating_sub(before);
    eprintln!(
        "RSS growth with 200 stalled 2 MB admin bodies: {:.1} MB",
        grown as f64 / 1e6
    );
    assert!(
        unauthorised.iter().all(|&s| s == 401),
        "without a token: {unauthorised:?}"
    );
    assert!(
        disabled.iter().all(|&s| s == 404),
        "admin disabled: {disabled:?}"
    );
    assert!(
        grown < 50_000_000,
        "the server buffered bodies it should not read: RSS grew {grown} bytes"
    );
    for w in w1.into_iter().chain(w2) {
        w.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bodies_are_bounded_in_size_and_time() {
    let _serial = SERIAL.lock().await;
    let mut cfg = limited(2_000, 10_000, 1_000);
    cfg.server.admin_token = Some(TOKEN.into());
    let s = TestServer::start(cfg).await;
    let auth = format!("Bearer {TOKEN}");

    // Declared too large: refused from the header, body unread.
    let big = "x".repeat(64 * 1024 + 1);
    let r = http(
        s.http,
        "POST",
        "/admin/tags",
        &[("Authorization", &auth)],
        &big,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "too_large");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("65536 bytes"),
        "{}",
        r.body
    );

    // Chunked, so no length up front: cut at the limit.
    let mut c = TcpStream::connect(s.http).await.unwrap();
    let mut req = format!(
        "POST /admin/tags HTTP/1.1\r\nHost: t\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for _ in 0..20 {
        req.push_str(&format!("1000\r\n{}\r\n", "y".repeat(0x1000)));
    }
    req.push_str("0\r\n\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    let (status, body) = read_response(&mut c).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains(r#""code":"too_large""#), "{body}");

    // A body that stops arriving: 408 after server.http_body_timeout (300 ms).
    let mut c = TcpStream::connect(s.http).await.unwrap();
    let started = Instant::now();
    c.write_all(
        format!("PUT /admin/log-level HTTP/1.1\r\nHost: t\r\nAuthorization: {auth}\r\nContent-Length: 100\r\n\r\n{{\"le")
            .as_bytes(),
    )
    .await
    .unwrap();
    let (status, body) = read_response(&mut c).await;
    assert_eq!(status, 408, "{body}");
    assert!(body.contains(r#""code":"timeout""#), "{body}");
    assert!(body.contains("server.http_body_timeout"), "{body}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // Bad JSON and bad path parameters are the documented JSON error.
    for (method, path, body) in [
        ("POST", "/admin/tags", "{not json"),
        ("POST", "/admin/tags", r#"{"tag":7}"#),
        ("PUT", "/admin/tags/%FF", r#"{"step":5}"#),
        ("PUT", "/admin/log-level", "\u{1}"),
    ] {
        let r = http(s.http, method, path, &[("Authorization", &auth)], body)
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{method} {path}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "bad_request", "{}", r.body);
    }

    // The scheme is case-insensitive (RFC 7235).
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let value = format!("{scheme} {TOKEN}");
        let r = http(
            s.http,
            "GET",
            "/admin/log-level",
            &[("Authorization", &value)],
            "",
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{scheme}: {}", r.body);
    }
    let r = http(
        s.http,
        "GET",
        "/admin/log-level",
        &[("Authorization", "bearer wrong")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_path_parameters_are_json_errors() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start(config()).await;
    for path in ["/v1/segment/%FF", "/v1/decode/%FF%FE", "/v1/segment/a%C3"] {
        let r = get(s.http, path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "bad_request", "{path}");
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("UTF-8"),
            "{}",
            r.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_heads_are_closed_after_the_header_timeout() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start(limited(300, 10_000, 1_000)).await;
    let mut conns = Vec::new();
    let started = Instant::now();
    for _ in 0..50 {
        let mut c = TcpStream::connect(s.http).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            .await
            .unwrap();
        conns.push(c);
    }
    let deadline = started + Duration::from_secs(3);
    for (i, c) in conns.iter_mut().enumerate() {
        let at = closed_by(c, deadline).await;
        let at = at.unwrap_or_else(|| panic!("slow head {i} still open after 3 s"));
        assert!(
            at - started >= Duration::from_millis(250),
            "closed too early: {:?}",
            at - started
        );
    }
    // The listener still serves.
    assert_eq!(get(s.http, "/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_is_closed_after_the_idle_timeout_not_the_header_timeout() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start(limited(200, 800, 1_000)).await;
    let mut c = TcpStream::connect(s.http).await.unwrap();
    assert_eq!(get_on(&mut c, "/healthz").await.0, 200);
    // Quiet for longer than the header timeout: still a usable keep-alive connection.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get_on(&mut c, "/healthz").await.0, 200);
    let idle_from = Instant::now();
    let at = closed_by(&mut c, idle_from + Duration::from_secs(3))
        .await
        .expect("idle keep-alive connection still open after 3 s");
    let idle = at - idle_from;
    assert!(
        idle >= Duration::from_millis(700) && idle < Duration::from_millis(2_000),
        "closed after {idle:?} idle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start(limited(5_000, 5_000, 4)).await;
    // Three idle connections and one we scrape the metrics on: four, the cap.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(s.http).await.unwrap());
    }
    let mut scrape = TcpStream::connect(s.http).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let rejected_before = loop {
        let (status, body) = get_on(&mut scrape, "/metrics").await;
        assert_eq!(status, 200);
        // Connections of earlier tests may still be closing: the gauge is process-wide.
        if metric_value(&body, "floe_http_connections_open") == Some(4.0) {
            break metric_value(&body, "floe_http_connections_rejected_total").unwrap_or(0.0);
        }
        assert!(Instant::now() < deadline, "gauge never showed 4: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let started = Instant::now();
    let mut fifth = TcpStream::connect(s.http).await.unwrap();
    let _ = fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert!(
        closed_without_bytes(&mut fifth).await,
        "the fifth connection was served"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let (_, body) = get_on(&mut scrape, "/metrics").await;
    assert_eq!(
        metric_value(&body, "floe_http_connections_open"),
        Some(4.0),
        "{body}"
    );
    assert_eq!(
        metric_value(&body, "floe_http_connections_rejected_total"),
        Some(rejected_before + 1.0),
        "{body}"
    );

    // A freed slot is usable again.
    drop(idle.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Ok(r) = http(s.http, "GET", "/healthz", &[], "").await {
            assert_eq!(r.status, 200);
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was not reused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_while_an_empty_tag_cannot_refill() {
    let _serial = SERIAL.lock().await;
    let cfg = Config::from_toml(
        "[log]\nlevel = \"error\"\n[segment]\nauto_create = true\ndefault_step = 10\nmin_step = 10\nmax_step = 10\ncall_timeout = \"200ms\"\nwait_timeout = \"1s\"\n",
    )
    .unwrap();
    let s = TestServer::start(cfg).await;
    // The first /alloc creates the tag (auto_create), retried while the table is being created.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(s.http, "/alloc?app_tag=pay").await.status != 200 {
        assert!(Instant::now() < deadline, "the tag was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The store goes away (another writer holds the database), then the buffer runs dry.
    let url = format!("sqlite:{}", s.dir.path().join("floe.db").display());
    let mut lock = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    let mut served = 0;
    while get(s.http, "/alloc?app_tag=pay").await.status == 200 {
        served += 1;
        assert!(served < 100, "the buffer should have run dry");
    }
    let r = get(s.http, "/health?app_tag=pay").await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(
        r.body
            .starts_with(r#"{"resp_code":-1,"msg":"segment store unavailable for tag `pay`"#),
        "{}",
        r.body
    );
    assert!(r.body.ends_with(r#"","left":0}"#), "{}", r.body);

    // The store returns: healthy again, in the original's shape byte for byte.
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    drop(lock);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(s.http, "/health?app_tag=pay").await;
        if r.status == 200 {
            let left = r.json()["left"].as_u64().unwrap();
            assert!(left > 0, "{}", r.body);
            assert_eq!(
                r.body,
                format!(r#"{{"resp_code":0,"msg":"success","left":{left}}}"#)
            );
            break;
        }
        assert!(Instant::now() < deadline, "never healthy again: {}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
