//! Floe's v2 protocol over real sockets: every op, every reachable status, req_id echoed.
//!
//! Status 2 (unknown tag) belongs to segment mode, which is not built yet: op 2 answers status 3
//! "segment mode is not configured" until it is. Status 5 (internal) is not reachable from the
//! wire: it marks server bugs.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use floe_testkit::{assert_increasing, http::get};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn every_op_and_status() {
    let mut cfg = config();
    cfg.server.max_count = 1000;
    let server = TestServer::start(cfg).await;
    let mut s = connect(server.tcp).await;

    // op 3 ping: ok, no body, whatever the count.
    s.write_all(&v2_request(3, 0xDEAD_BEEF, 77, b""))
        .await
        .unwrap();
    let r = read_v2(&mut s).await;
    assert_eq!((r.status, r.req_id, r.ids.len()), (0, 0xDEAD_BEEF, 0));

    // op 1 snowflake: ok with count IDs.
    s.write_all(&v2_request(1, 1, 1000, b"")).await.unwrap();
    let r = read_v2(&mut s).await;
    assert_eq!((r.status, r.req_id), (0, 1));
    assert_eq!(r.ids.len(), 1000);
    assert_increasing(&r.ids);

    // A tag on a snowflake request is ignored (GenID-era clients may send one).
    s.write_all(&v2_request(1, 2, 3, b"orders")).await.unwrap();
    let r = read_v2(&mut s).await;
    assert_eq!((r.status, r.req_id, r.ids.len()), (0, 2, 3));

    // op 2 segment, status 2: a tag the segment table does not have.
    s.write_all(&v2_request(2, 3, 5, b"orders")).await.unwrap();
    let r = read_v2(&mut s).await;
    assert_eq!((r.status, r.req_id), (2, 3));
    assert_eq!(r.message, "unknown tag `orders`");

    // status 1: count 0, unknown op, segment without tag, tag not UTF-8.
    for (frame, req_id, want) in [
        (v2_request(1, 4, 0, b""), 4, "count must be 1..=1000"),
        (v2_request(9, 5, 1, b""), 5, "unknown v2 op 9"),
        (v2_request(2, 6, 1, b""), 6, "non-empty tag"),
        (v2_request(2, 7, 1, &[0xFF, 0xFE]), 7, "UTF-8"),
    ] {
        s.write_all(&frame).await.unwrap();
        let r = read_v2(&mut s).await;
        assert_eq!((r.status, r.req_id), (1, req_id), "{}", r.message);
        assert!(r.message.contains(want), "{:?} lacks {want:?}", r.message);
    }

    // status 4: over max_count, for snowflake and segment.
    for (op, req_id) in [(1u8, 8u32), (2, 9)] {
        s.write_all(&v2_request(op, req_id, 1001, b"t"))
            .await
            .unwrap();
        let r = read_v2(&mut s).await;
        assert_eq!((r.status, r.req_id), (4, req_id));
        assert!(
            r.message.contains("1001") && r.message.contains("1000"),
            "{}",
            r.message
        );
    }

    // The connection survived every error.
    s.write_all(&v2_request(1, u32::MAX, 1, b"")).await.unwrap();
    let r = read_v2(&mut s).await;
    assert_eq!((r.status, r.req_id, r.ids.len()), (0, u32::MAX, 1));
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn pipelined_mixed_v1_and_v2_keep_order() {
    let server = TestServer::start(config()).await;
    let mut s = connect(server.tcp).await;
    let mut frames = Vec::new();
    frames.extend(v2_request(1, 10, 2, b""));
    frames.extend([0u8, 0]);
    frames.extend(v2_request(3, 11, 0, b""));
    frames.extend([1u8, 2]);
    frames.extend(v2_request(2, 12, 1, b"x"));
    s.write_all(&frames).await.unwrap();
    let a = read_v2(&mut s).await;
    assert_eq!((a.status, a.req_id, a.ids.len()), (0, 10, 2));
    let single = ids(&read_n(&mut s, 8).await)[0];
    let p = read_v2(&mut s).await;
    assert_eq!((p.status, p.req_id), (0, 11));
    assert_eq!(read_n(&mut s, 1).await, [2]);
    let batch = ids(&read_n(&mut s, 16).await);
    let seg = read_v2(&mut s).await;
    assert_eq!(
        (seg.status, seg.req_id),
        (2, 12),
        "unknown tag: {}",
        seg.message
    );
    let mut all = a.ids.clone();
    all.push(single);
    all.extend(batch);
    assert_increasing(&all);
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn three_hundred_thousand_ids_in_v2_batches_on_one_connection() {
    let server = TestServer::start(config()).await;
    let mut s = connect(server.tcp).await;
    let started = std::time::Instant::now();
    let mut frames = Vec::new();
    for req_id in 0..3 {
        frames.extend(v2_request(1, req_id, 100_000, b""));
    }
    // All three asked within the same second.
    s.write_all(&frames).await.unwrap();
    let mut all = Vec::with_capacity(300_000);
    for req_id in 0..3 {
        let r = read_v2(&mut s).await;
        assert_eq!((r.status, r.req_id), (0, req_id), "{}", r.message);
        assert_eq!(r.ids.len(), 100_000);
        all.extend(r.ids);
    }
    assert_increasing(&all);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 300_000);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn batches_beyond_max_batch_are_served_in_chunks() {
    // One lane of genid issues 2^21 IDs per second when lanes = 1; with 32 lanes, max_batch is
    // two ticks of one lane (131,072), so 300,000 in one request needs three chunks.
    let mut cfg = config();
    cfg.server.max_count = 300_000;
    let server = TestServer::start(cfg).await;
    let mut s = connect(server.tcp).await;
    s.write_all(&v2_request(1, 42, 300_000, b"")).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(15), read_v2(&mut s))
        .await
        .unwrap();
    assert_eq!((r.status, r.req_id), (0, 42), "{}", r.message);
    assert_eq!(r.ids.len(), 300_000);
    assert_increasing(&r.ids);
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn clock_rollback_beyond_tolerance_is_unavailable_for_v2_and_closes_v1() {
    // First run issues IDs at the real time; the second starts 30 s in the past on the same data
    // directory, so its clock is behind the high-water mark by more than max_rollback.
    let first = TestServer::start(config()).await;
    let mut s = connect(first.tcp).await;
    s.write_all(&v2_request(1, 1, 10, b"")).await.unwrap();
    let before = read_v2(&mut s).await;
    assert_eq!(before.status, 0);
    drop(s);
    let (result, dir) = first.stop().await;
    result.unwrap();

    let mut cfg = config();
    cfg.snowflake.clock_offset_ms = -30_000;
    let second = TestServer::start_in(cfg, dir).await;
    let mut s = connect(second.tcp).await;
    s.write_all(&v2_request(1, 2, 10, b"")).await.unwrap();
    let r = read_v2(&mut s).await;
    assert_eq!((r.status, r.req_id), (3, 2));
    assert!(r.message.contains("clock moved back"), "{}", r.message);

    let ready = get(second.http, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(
        ready.json()["reason"].as_str().unwrap().contains("behind"),
        "{}",
        ready.body
    );

    // v1 has no error reply: the connection is closed.
    let mut v1 = connect(second.tcp).await;
    v1.write_all(&[0, 0]).await.unwrap();
    assert!(closed_without_bytes(&mut v1).await);
    second.stop().await.0.unwrap();
}
