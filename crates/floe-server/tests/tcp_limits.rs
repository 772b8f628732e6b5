//! Connection limits, timeouts, back-pressure and graceful shutdown of the binary TCP listener.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use floe_testkit::http::get;
use floe_testkit::{eventually_async, metric_value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn connections_over_max_are_closed_at_once() {
    let mut cfg = config();
    cfg.server.max_connections = 2;
    let server = TestServer::start(cfg).await;
    let mut a = connect(server.tcp).await;
    let mut b = connect(server.tcp).await;
    // A reply on each proves both were accepted and hold their slot.
    for s in [&mut a, &mut b] {
        s.write_all(&[0, 0]).await.unwrap();
        read_n(s, 8).await;
    }
    // Only this test of the file rejects connections, so the process-wide counter moves by one.
    let rejected = "floe_tcp_connections_rejected_total";
    let before = metric_value(&get(server.http, "/metrics").await.body, rejected).unwrap_or(0.0);
    let started = Instant::now();
    let mut c = connect(server.tcp).await;
    let _ = c.write_all(&[0, 0]).await;
    assert!(
        closed_without_bytes(&mut c).await,
        "third connection was served"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let metrics = get(server.http, "/metrics").await.body;
    assert_eq!(
        metric_value(&metrics, rejected),
        Some(before + 1.0),
        "{rejected}: the third connection is counted once"
    );

    // Closing one frees its slot.
    drop(a);
    eventually_async(WAIT, "the closed connection's slot is freed", async || {
        let mut d = connect(server.tcp).await;
        d.write_all(&[0, 0]).await.unwrap();
        let mut buf = [0u8; 8];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), d.read_exact(&mut buf)).await,
            Ok(Ok(8))
        )
    })
    .await;
    b.write_all(&[0, 0]).await.unwrap();
    read_n(&mut b, 8).await;
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn a_partial_frame_is_dropped_after_frame_timeout() {
    let mut cfg = config();
    cfg.server.frame_timeout = Duration::from_millis(300);
    let server = TestServer::start(cfg).await;

    // Slowloris: half a v2 header, then nothing.
    let mut s = connect(server.tcp).await;
    let started = Instant::now();
    s.write_all(&[0xF1, 1, 0, 0]).await.unwrap();
    assert!(closed_without_bytes(&mut s).await);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // Dribbling bytes does not extend the deadline of the frame.
    let mut s = connect(server.tcp).await;
    let started = Instant::now();
    let frame = v2_request(1, 1, 1, b"abcdefgh");
    let mut closed = false;
    for byte in &frame[..frame.len() - 1] {
        if s.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        // The dribbling is the test, not a wait.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    closed = closed || closed_without_bytes(&mut s).await;
    assert!(closed);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // A connection that completes its frames in time is not affected (the pauses are the test).
    let mut s = connect(server.tcp).await;
    for _ in 0..3 {
        s.write_all(&[0]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(&[0]).await.unwrap();
        read_n(&mut s, 8).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_idle_timeout() {
    let mut cfg = config();
    cfg.server.idle_timeout = Duration::from_millis(400);
    let server = TestServer::start(cfg).await;
    let mut s = connect(server.tcp).await;
    s.write_all(&[0, 0]).await.unwrap();
    read_n(&mut s, 8).await;
    let started = Instant::now();
    assert!(closed_without_bytes(&mut s).await);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "{took:?}"
    );
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn a_client_that_does_not_read_is_throttled_not_buffered() {
    // One lane (2^21 IDs per second) so generation is not what slows the server down.
    let mut cfg = config();
    cfg.snowflake.lanes = 1;
    let server = TestServer::start(cfg).await;
    let s = connect(server.tcp).await;
    let (mut r, mut w) = s.into_split();
    // 2.7 million requests (30 MB) whose replies (80 KB each) nobody reads for a while. A
    // server that kept reading while its replies piled up would swallow all of it.
    let frames: Vec<u8> = (0..2_700_000u32)
        .flat_map(|i| v2_request(1, i, 10_000, b""))
        .collect();
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&frames).await;
        w
    });
    // Time enough for a server that kept reading to swallow all 30 MB: the writer can only
    // finish, never unfinish, so one look at the end shows it was held up all along.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !writer.is_finished(),
        "the server kept reading requests while its replies piled up"
    );
    // The replies that were written are whole and in order.
    let mut seen = HashSet::new();
    for i in 0..5u32 {
        let mut head = [0u8; 10];
        tokio::time::timeout(WAIT, r.read_exact(&mut head))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(head[1], 0);
        assert_eq!(u32::from_be_bytes(head[2..6].try_into().unwrap()), i);
        let len = u32::from_be_bytes(head[6..10].try_into().unwrap()) as usize;
        assert_eq!(len, 10_000);
        let mut body = vec![0u8; len * 8];
        tokio::time::timeout(WAIT, r.read_exact(&mut body))
            .await
            .unwrap()
            .unwrap();
        for id in ids(&body) {
            assert!(seen.insert(id));
        }
    }
    drop(r);
    writer.abort();
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_answers_requests_already_read() {
    let mut cfg = config();
    cfg.snowflake.lanes = 1;
    let server = TestServer::start(cfg).await;
    let mut busy = connect(server.tcp).await;
    let mut idle = connect(server.tcp).await;
    idle.write_all(&[0, 0]).await.unwrap();
    read_n(&mut idle, 8).await;
    // Enough work that the shutdown arrives while it is in flight.
    let frames: Vec<u8> = (0..10u32)
        .flat_map(|i| v2_request(1, i, 100_000, b""))
        .collect();
    busy.write_all(&frames).await.unwrap();
    // The first reply arriving shows the work is in flight.
    tokio::time::timeout(WAIT, busy.readable())
        .await
        .expect("the first reply within WAIT")
        .unwrap();
    let mut server = server;
    server.signal_stop();

    // Every reply that arrives is whole and in order; then the connection ends cleanly.
    let mut got = 0u32;
    loop {
        let mut head = [0u8; 10];
        match tokio::time::timeout(WAIT, busy.read_exact(&mut head))
            .await
            .unwrap()
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("{e}"),
        }
        assert_eq!(u32::from_be_bytes(head[2..6].try_into().unwrap()), got);
        let len = u32::from_be_bytes(head[6..10].try_into().unwrap()) as usize;
        let body_len = if head[1] == 0 { len * 8 } else { len };
        let mut body = vec![0u8; body_len];
        tokio::time::timeout(WAIT, busy.read_exact(&mut body))
            .await
            .unwrap()
            .expect("a reply is never cut short");
        got += 1;
    }
    assert!(got > 0, "requests already read must be answered");
    assert!(
        closed_without_bytes(&mut idle).await,
        "idle connections are closed"
    );
    // The listener is closed: new connections are refused.
    let (result, _dir) = server.stop().await;
    result.unwrap();
}
