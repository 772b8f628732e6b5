//! Fault injection against the binary TCP listener: clients that never read their replies,
//! replies owed before a fatal frame, and file-descriptor exhaustion.
//!
//! The server runs in this process, so its memory is this process's `VmRSS` and its file
//! descriptors share this process's `RLIMIT_NOFILE`. The tests therefore run one at a time
//! ([`serial`]): one test's clients must not show up in another's figures.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use floe_testkit::http::get;
use floe_testkit::{assert_increasing, eventually_async, metric_value, rss_bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Serialises the tests of this file (see the module doc).
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// The value of an unlabelled gauge or a labelled series on the `/metrics` page.
async fn metric(server: &TestServer, series: &str) -> Option<f64> {
    metric_value(&get(server.http, "/metrics").await.body, series)
}

/// A connection whose receive buffer is small, so a client that does not read fills the
/// kernel's buffers after a few KiB and the server's own buffers are what is left to measure.
async fn connect_small_rcvbuf(addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// A layout with a 23-bit sequence per millisecond, so issuing tens of millions of IDs takes
/// no time and the test measures buffers, not the generator.
fn fast_config() -> floe_server::Config {
    let mut cfg = config();
    cfg.snowflake.layout = floe_core::Layout::parse("time:40/1ms@2020-01-01 seq:23").unwrap();
    cfg.snowflake.identity = cfg.snowflake.layout.identity(&[]).unwrap();
    cfg.snowflake.lanes = 1;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_reading_clients_hold_bounded_memory_and_are_closed_after_write_timeout() {
    const CLIENTS: usize = 100;
    let _serial = serial().await;
    let write_timeout = Duration::from_millis(1000);
    let mut cfg = fast_config();
    cfg.server.write_timeout = write_timeout;
    let server = TestServer::start(cfg).await;
    let open_before = metric(&server, "floe_tcp_connections_open")
        .await
        .unwrap_or(0.0);

    // Each client pipelines 64 KiB of requests for 100,000 IDs (800 KB replies) and never reads:
    // answered in full that would be 4.7 GB of replies per client. The frames are shared, so
    // the clients themselves add nothing to this process's memory.
    let frames: Arc<Vec<u8>> = Arc::new(
        (0..6_000u32)
            .flat_map(|i| v2_request(1, i, 100_000, b""))
            .collect(),
    );
    let baseline = rss_bytes();
    let mut clients = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..CLIENTS {
        let (r, mut w) = connect_small_rcvbuf(server.tcp).await.into_split();
        let frames = frames.clone();
        writers.push(tokio::spawn(async move {
            let _ = w.write_all(&frames).await;
            w
        }));
        clients.push(r);
    }
    let connected = Instant::now();

    // Every connection is closed within write_timeout of its writes stalling (plus time to
    // fill the kernel's buffers and some slack), and memory stays bounded all the while.
    let within = (write_timeout + Duration::from_secs(4)).saturating_sub(connected.elapsed());
    let mut peak = baseline;
    let closed_after = eventually_async(
        within,
        &format!("the {CLIENTS} non-reading connections are closed (server.write_timeout = {write_timeout:?})"),
        async || {
            peak = peak.max(rss_bytes());
            let open = metric(&server, "floe_tcp_connections_open")
                .await
                .unwrap_or(0.0);
            if open <= open_before {
                return Ok(connected.elapsed());
            }
            Err(format!(
                "{} still open {:?} after connecting; RSS grew by {:.1} MiB",
                open - open_before,
                connected.elapsed(),
                peak.saturating_sub(baseline) as f64 / 1048576.0
            ))
        },
    )
    .await;
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "{CLIENTS} non-reading clients: RSS growth {:.1} MiB ({:.0} KiB per connection), all closed after {closed_after:?}",
        growth as f64 / 1048576.0,
        growth as f64 / 1024.0 / CLIENTS as f64
    );
    // The documented bound: at most 1 MiB of unsent replies per connection. Before the cap,
    // this test measured 230 MiB (and no connection was ever closed).
    let bound = CLIENTS as u64 * 1024 * 1024;
    assert!(
        growth <= bound,
        "RSS grew by {growth} bytes for {CLIENTS} non-reading clients: over {bound}"
    );

    // The client side sees the end: what the kernel buffered, then EOF or a reset.
    for mut r in clients {
        let mut sink = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        loop {
            match tokio::time::timeout(WAIT, r.read(&mut sink)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => total += n,
                Err(_) => panic!("connection neither closed nor answered"),
            }
            assert!(total < 64 << 20, "the server is still writing");
        }
    }
    for w in writers {
        w.abort();
    }
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn a_slow_reader_that_keeps_reading_is_served_in_full() {
    let _serial = serial().await;
    let mut cfg = fast_config();
    cfg.server.write_timeout = Duration::from_millis(500);
    let server = TestServer::start(cfg).await;
    let mut s = connect_small_rcvbuf(server.tcp).await;
    // 8 MB of replies, read in small sips with pauses shorter than write_timeout: the writes
    // keep making progress, so the connection is never timed out however long it takes.
    let frames: Vec<u8> = (0..10u32)
        .flat_map(|i| v2_request(1, i, 100_000, b""))
        .collect();
    s.write_all(&frames).await.unwrap();
    let mut all = Vec::new();
    for i in 0..10u32 {
        // The slow sips are the test, not a wait.
        tokio::time::sleep(Duration::from_millis(if i < 3 { 200 } else { 0 })).await;
        let reply = read_v2(&mut s).await;
        assert_eq!((reply.status, reply.req_id), (0, i), "{}", reply.message);
        assert_eq!(reply.ids.len(), 100_000);
        all.extend(reply.ids);
    }
    assert_increasing(&all);
    server.stop().await.0.unwrap();
}

/// One valid request of kind `k % 3` (v1 single, v1 batch of 3, v2 snowflake of 2) and the
/// length of its reply.
fn request(k: usize) -> (Vec<u8>, usize) {
    match k % 3 {
        0 => (vec![0, 0], 8),
        1 => (vec![1, 3], 1 + 3 * 8),
        _ => (v2_request(1, k as u32, 2, b""), 10 + 2 * 8),
    }
}

#[tokio::test]
async fn replies_owed_before_a_fatal_frame_arrive_before_a_clean_end() {
    const TRIALS: usize = 200;
    let _serial = serial().await;
    let server = TestServer::start(config()).await;
    let mut failures = Vec::new();
    for trial in 0..TRIALS {
        // K valid requests (enough that they span several reads of the server's first small
        // read buffer), then an unknown command byte and, in half the trials, more bytes after
        // it, all in one write.
        let k = 1 + trial % 40;
        let mut bytes = Vec::new();
        let mut owed = 0;
        for i in 0..k {
            let (req, reply_len) = request(i + trial);
            bytes.extend(req);
            owed += reply_len;
        }
        bytes.push(0x7E);
        if trial % 2 == 1 {
            bytes.extend(std::iter::repeat_n(0xEE, 300));
        }
        let mut s = connect(server.tcp).await;
        s.write_all(&bytes).await.unwrap();
        let mut got = Vec::new();
        let mut sink = [0u8; 4096];
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(3), s.read(&mut sink)).await {
                Ok(Ok(0)) => break "eof".to_owned(),
                Ok(Ok(n)) => got.extend_from_slice(&sink[..n]),
                Ok(Err(e)) => break format!("{:?}", e.kind()),
                Err(_) => break "timeout".to_owned(),
            }
        };
        if got.len() != owed || end != "eof" {
            failures.push(format!(
                "trial {trial} (k={k}): {} of {owed} reply bytes, then {end}",
                got.len()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {TRIALS} trials lost replies or ended in a reset: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn a_client_that_half_closes_gets_every_reply_then_eof() {
    let _serial = serial().await;
    let server = TestServer::start(fast_config()).await;
    let mut s = connect(server.tcp).await;
    // More replies than the output cap, so some are still pending when the EOF is read.
    let frames: Vec<u8> = (0..6u32)
        .flat_map(|i| v2_request(1, i, 100_000, b""))
        .collect();
    s.write_all(&frames).await.unwrap();
    s.shutdown().await.unwrap();
    for i in 0..6u32 {
        let reply = read_v2(&mut s).await;
        assert_eq!((reply.status, reply.req_id), (0, i), "{}", reply.message);
        assert_eq!(reply.ids.len(), 100_000);
    }
    assert!(closed_without_bytes(&mut s).await);
    server.stop().await.0.unwrap();
}

/// The soft open-files limit of this process.
fn open_files_limit() -> rustix::process::Rlimit {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
}

/// Sets the soft open-files limit of this process, keeping the hard one.
#[track_caller]
fn set_open_files_soft(soft: Option<u64>) {
    let limit = open_files_limit();
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: soft,
            maximum: limit.maximum,
        },
    )
    .expect("set RLIMIT_NOFILE");
}

#[tokio::test]
async fn the_open_files_limit_is_raised_to_the_hard_limit_at_start() {
    let _serial = serial().await;
    let hard = open_files_limit().maximum;
    // Like a login shell's soft default, below what max_connections needs.
    set_open_files_soft(Some(hard.map_or(1024, |h| h.min(1024) - 1)));
    let server = TestServer::start(config()).await;
    assert_eq!(open_files_limit().current, hard);
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn accept_failures_on_fd_exhaustion_back_off_are_counted_and_recover() {
    let _serial = serial().await;
    let server = TestServer::start(config()).await;
    let before = metric(&server, "floe_accept_failures_total{listener=\"tcp\"}")
        .await
        .unwrap_or(0.0);

    // Leave this process a handful of free descriptors, then connect until none is left: the
    // kernel completes the handshakes, and the server's accepts fail with EMFILE.
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    set_open_files_soft(Some(open + 8));
    let mut clients = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect(server.tcp).await {
            Ok(s) => clients.push(s),
            Err(_) => break,
        }
    }
    // A window of fixed length in which the failures are counted: the rate is the figure.
    let exhausted = Duration::from_millis(600);
    tokio::time::sleep(exhausted).await;
    set_open_files_soft(open_files_limit().maximum);

    let failures = metric(&server, "floe_accept_failures_total{listener=\"tcp\"}")
        .await
        .unwrap_or(0.0)
        - before;
    eprintln!("{failures} accept failures counted in {exhausted:?} of fd exhaustion");
    assert!(failures >= 1.0, "no accept failure counted");
    // One try per ACCEPT_BACKOFF (100 ms), not a spinning loop.
    assert!(
        failures <= 10.0,
        "{failures} accept failures in {exhausted:?}: the loop spins"
    );

    // Once descriptors are free again, the queued clients and new ones are served.
    let deadline = Instant::now() + WAIT;
    for mut s in clients.into_iter().chain([connect(server.tcp).await]) {
        loop {
            s.write_all(&[0, 0]).await.unwrap();
            let mut id = [0u8; 8];
            match tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut id)).await {
                Ok(Ok(_)) => break,
                // A connection whose accept failed may have been reset; a fresh one is served.
                Ok(Err(_)) => s = connect(server.tcp).await,
                Err(_) => {}
            }
            assert!(
                Instant::now() < deadline,
                "not served after the fds came back"
            );
        }
    }
    server.stop().await.0.unwrap();
}
