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
use floe_testkit::http::{get, read_response, request, Connection};
use floe_testkit::{eventually_async, metric_value, rss_bytes};
use sqlx::Connection as _;
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

/// Sends `count` requests whose 2 MB body stalls after 1 MB; returns the statuses seen within
/// a few seconds (0 for none) and keeps the writers alive until the caller drops the handles.
///
/// Raw bytes on a socket: no HTTP client stalls a body on purpose. Only the status line is read,
/// as the server may reset the connection (its body unread) right after answering.
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
    let r = request(
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

    // Chunked, so no length up front: cut at the limit. Raw bytes: the test is about the chunks
    // on the wire, so it writes them itself.
    let mut c = TcpStream::connect(s.http).await.unwrap();
    let mut req = format!(
        "POST /admin/tags HTTP/1.1\r\nHost: t\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for _ in 0..20 {
        req.push_str(&format!("1000\r\n{}\r\n", "y".repeat(0x1000)));
    }
    req.push_str("0\r\n\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    let r = read_response(&mut c)
        .await
        .expect("a response to the chunked body");
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains(r#""code":"too_large""#), "{}", r.body);

    // A body that stops arriving: 408 after server.http_body_timeout (300 ms). Raw bytes: a
    // client would not declare 100 bytes and send 4.
    let mut c = TcpStream::connect(s.http).await.unwrap();
    let started = Instant::now();
    c.write_all(
        format!("PUT /admin/log-level HTTP/1.1\r\nHost: t\r\nAuthorization: {auth}\r\nContent-Length: 100\r\n\r\n{{\"le")
            .as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut c)
        .await
        .expect("a response to the stalled body");
    assert_eq!(r.status, 408, "{}", r.body);
    assert!(r.body.contains(r#""code":"timeout""#), "{}", r.body);
    assert!(r.body.contains("server.http_body_timeout"), "{}", r.body);
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
        let r = request(s.http, method, path, &[("Authorization", &auth)], body)
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{method} {path}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "bad_request", "{}", r.body);
    }

    // The scheme is case-insensitive (RFC 7235).
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let value = format!("{scheme} {TOKEN}");
        let r = request(
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
    let r = request(
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
    // Raw bytes: a head that never ends is what no client sends.
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
    let mut c = Connection::open(s.http).await.unwrap();
    assert_eq!(c.get("/healthz").await.status, 200);
    // Quiet for longer than the header timeout (the time passing is the test): still a usable
    // keep-alive connection.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(c.get("/healthz").await.status, 200);
    let idle_from = Instant::now();
    tokio::time::timeout_at(idle_from + Duration::from_secs(3), c.closed())
        .await
        .expect("idle keep-alive connection still open after 3 s");
    let idle = idle_from.elapsed();
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
    let mut scrape = Connection::open(s.http).await.unwrap();
    // Connections of earlier tests may still be closing: the gauge is process-wide.
    let rejected_before = eventually_async(
        Duration::from_secs(5),
        "the open-connections gauge shows the cap (4)",
        async || {
            let r = scrape.get("/metrics").await;
            assert_eq!(r.status, 200, "{}", r.body);
            match metric_value(&r.body, "floe_http_connections_open") {
                Some(4.0) => Ok(
                    metric_value(&r.body, "floe_http_connections_rejected_total").unwrap_or(0.0),
                ),
                open => Err(format!("floe_http_connections_open {open:?}")),
            }
        },
    )
    .await;

    let started = Instant::now();
    // Raw bytes: the request must not matter, only that the connection is closed unanswered.
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

    let body = scrape.get("/metrics").await.body;
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
    let r = eventually_async(
        Duration::from_secs(3),
        "the freed slot is reused",
        async || request(s.http, "GET", "/healthz", &[], "").await,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
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
    eventually_async(Duration::from_secs(10), "the tag is served", async || {
        let r = get(s.http, "/alloc?app_tag=pay").await;
        (r.status == 200).then_some(()).ok_or(r.body)
    })
    .await;

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
    let r = eventually_async(Duration::from_secs(10), "healthy again", async || {
        let r = get(s.http, "/health?app_tag=pay").await;
        if r.status == 200 {
            Ok(r)
        } else {
            Err(r.body)
        }
    })
    .await;
    let left = r.json()["left"].as_u64().unwrap();
    assert!(left > 0, "{}", r.body);
    assert_eq!(
        r.body,
        format!(r#"{{"resp_code":0,"msg":"success","left":{left}}}"#)
    );
}
