//! GenID v1 over real sockets, byte for byte.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use floe_testkit::assert_increasing;
use tokio::io::AsyncWriteExt;

fn time_of(id: u64) -> u64 {
    id >> 32
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn cmd0_returns_eight_bytes_of_one_id() {
    let mut cfg = config();
    cfg.snowflake.identity = cfg
        .snowflake
        .layout
        .identity(&[("zone".into(), 5), ("dc".into(), 6), ("machine".into(), 7)])
        .unwrap();
    let server = TestServer::start(cfg).await;
    let mut s = connect(server.tcp).await;
    // GenID ignores the count of cmd 0.
    s.write_all(&[0, 0]).await.unwrap();
    let a = ids(&read_n(&mut s, 8).await)[0];
    s.write_all(&[0, 200]).await.unwrap();
    let b = ids(&read_n(&mut s, 8).await)[0];
    assert!(b > a);
    let t = time_of(a);
    assert!(t.abs_diff(now_secs()) <= 2, "time field {t} is not now");
    assert_eq!((a >> 27) & 31, 5, "zone");
    assert_eq!((a >> 24) & 7, 6, "dc");
    assert_eq!((a >> 21) & 7, 7, "machine");
    // Replies are exactly 8 bytes: the next one follows with nothing in between.
    s.write_all(&[0, 0]).await.unwrap();
    assert!(ids(&read_n(&mut s, 8).await)[0] > b);
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn cmd1_counts_0_1_255() {
    let server = TestServer::start(config()).await;
    let mut s = connect(server.tcp).await;

    s.write_all(&[1, 0]).await.unwrap();
    assert_eq!(
        read_n(&mut s, 1).await,
        [0],
        "count 0 is answered with the single byte 0"
    );

    s.write_all(&[1, 1]).await.unwrap();
    assert_eq!(read_n(&mut s, 1).await, [1]);
    let one = ids(&read_n(&mut s, 8).await);

    s.write_all(&[1, 255]).await.unwrap();
    assert_eq!(read_n(&mut s, 1).await, [255]);
    let many = ids(&read_n(&mut s, 255 * 8).await);
    assert_eq!(many.len(), 255);
    assert_increasing(&many);
    assert!(many[0] > one[0]);

    // count 0 again between batches: the stream stays in step.
    s.write_all(&[1, 0, 0, 0]).await.unwrap();
    assert_eq!(read_n(&mut s, 1).await, [0]);
    let next = ids(&read_n(&mut s, 8).await)[0];
    assert!(next > many[254]);
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn unknown_command_closes_without_reply() {
    let server = TestServer::start(config()).await;
    for first in [2u8, 7, 0x7f, 0xF0, 0xFF] {
        let mut s = connect(server.tcp).await;
        s.write_all(&[first, 1]).await.unwrap();
        assert!(closed_without_bytes(&mut s).await, "cmd {first:#x}");
    }
    // Requests before the unknown byte are still answered, then the connection closes.
    let mut s = connect(server.tcp).await;
    s.write_all(&[0, 0, 9, 9]).await.unwrap();
    read_n(&mut s, 8).await;
    assert!(closed_without_bytes(&mut s).await);
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn half_a_frame_then_close_leaves_the_server_working() {
    let server = TestServer::start(config()).await;
    for half in [&[1u8][..], &[0u8][..], &[0xF1, 1, 0, 0][..]] {
        let mut s = connect(server.tcp).await;
        s.write_all(half).await.unwrap();
        drop(s);
    }
    let mut s = connect(server.tcp).await;
    s.write_all(&[1, 3]).await.unwrap();
    assert_eq!(read_n(&mut s, 1).await, [3]);
    read_n(&mut s, 24).await;
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn ten_thousand_pipelined_requests_in_one_write() {
    let server = TestServer::start(config()).await;
    let mut s = connect(server.tcp).await;
    let mut frames = Vec::with_capacity(20_000);
    for _ in 0..10_000 {
        frames.extend_from_slice(&[0, 0]);
    }
    let writer = {
        let (mut r, mut w) = s.into_split();
        let write = tokio::spawn(async move {
            w.write_all(&frames).await.unwrap();
            w
        });
        let mut buf = vec![0u8; 80_000];
        tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read_exact(&mut r, &mut buf))
            .await
            .expect("10,000 replies in time")
            .unwrap();
        let got = ids(&buf);
        assert_eq!(got.len(), 10_000);
        assert_increasing(&got);
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), 10_000);
        let w = write.await.unwrap();
        r.reunite(w).unwrap()
    };
    s = writer;
    s.write_all(&[1, 2]).await.unwrap();
    assert_eq!(read_n(&mut s, 1).await, [2]);
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn two_connections_in_one_second_get_disjoint_ids_on_different_lanes() {
    let server = TestServer::start(config()).await;
    let mut a = connect(server.tcp).await;
    let mut b = connect(server.tcp).await;
    a.write_all(&[1, 255]).await.unwrap();
    b.write_all(&[1, 255]).await.unwrap();
    assert_eq!(read_n(&mut a, 1).await, [255]);
    assert_eq!(read_n(&mut b, 1).await, [255]);
    let ia = ids(&read_n(&mut a, 255 * 8).await);
    let ib = ids(&read_n(&mut b, 255 * 8).await);
    let lane = |id: u64| (id >> 16) & 31;
    assert_ne!(lane(ia[0]), lane(ib[0]), "connections share a lane");
    assert!(ia.iter().all(|id| lane(*id) == lane(ia[0])));
    assert!(ib.iter().all(|id| lane(*id) == lane(ib[0])));
    let sa: HashSet<_> = ia.iter().collect();
    assert!(
        ib.iter().all(|id| !sa.contains(id)),
        "IDs repeat across connections"
    );
    // GenID's defect: both connections in the same second with bucket 0 and the same counter.
    assert!(ia
        .iter()
        .any(|x| ib.iter().any(|y| time_of(*x) == time_of(*y))));
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn three_hundred_thousand_ids_on_one_v1_connection() {
    let server = TestServer::start(config()).await;
    let s = connect(server.tcp).await;
    // 1,177 batches of 255 asked in one go, read back in order.
    let batches = 300_000usize.div_ceil(255);
    let frames: Vec<u8> = (0..batches).flat_map(|_| [1u8, 255]).collect();
    let (mut r, mut w) = s.into_split();
    let write = tokio::spawn(async move { w.write_all(&frames).await.unwrap() });
    let mut all = Vec::with_capacity(batches * 255);
    let started = std::time::Instant::now();
    for _ in 0..batches {
        let mut head = [0u8; 1];
        tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read_exact(&mut r, &mut head))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(head[0], 255);
        let mut body = vec![0u8; 255 * 8];
        tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read_exact(&mut r, &mut body))
            .await
            .unwrap()
            .unwrap();
        all.extend(ids(&body));
    }
    write.await.unwrap();
    assert!(all.len() >= 300_000);
    assert_increasing(&all);
    // One lane issues 65,536 IDs per second plus one borrowed second, so this takes a few seconds.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    server.stop().await.0.unwrap();
}
