//! SIGTERM while 1,000 connections loop v2 batch requests: the binary exits 0 within
//! server.shutdown_timeout, every reply a client got is whole, and no ID repeats.

#[path = "fixtures/serve_support.rs"]
mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_testkit::{assert_increasing, eventually_async};
use support::Floe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 1_000;
const BATCH: u32 = 100;

/// What one client saw.
#[derive(Default)]
struct Seen {
    ids: Vec<u64>,
    replies: usize,
    /// A reply that started but did not finish: the failure this test exists to catch.
    partial: Option<String>,
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` for a clean end before the first byte.
async fn read_frame_part(s: &mut TcpStream, buf: &mut [u8]) -> Result<bool, String> {
    let mut filled = 0;
    while filled < buf.len() {
        let read = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf[filled..]))
            .await
            .map_err(|_| format!("no data for 30 s after {filled} bytes"))?;
        match read {
            Ok(0) | Err(_) if filled == 0 => return Ok(false),
            Ok(0) => return Err(format!("EOF after {filled} of {} bytes", buf.len())),
            Ok(n) => filled += n,
            Err(e) => return Err(format!("{e} after {filled} of {} bytes", buf.len())),
        }
    }
    Ok(true)
}

async fn client(addr: SocketAddr, replies: Arc<AtomicU64>) -> Seen {
    let mut seen = Seen::default();
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return seen;
    };
    let _ = s.set_nodelay(true);
    for req_id in 0u32.. {
        let mut frame = vec![0xF1, 1];
        frame.extend_from_slice(&req_id.to_be_bytes());
        frame.extend_from_slice(&BATCH.to_be_bytes());
        frame.push(0);
        if s.write_all(&frame).await.is_err() {
            break;
        }
        let mut head = [0u8; 10];
        match read_frame_part(&mut s, &mut head).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                seen.partial = Some(format!("header: {e}"));
                break;
            }
        }
        let got_id = u32::from_be_bytes(head[2..6].try_into().unwrap());
        let len = u32::from_be_bytes(head[6..10].try_into().unwrap());
        if head[0] != 0xF1 || head[1] != 0 || got_id != req_id || len != BATCH {
            seen.partial = Some(format!("unexpected reply header {head:?} for req {req_id}"));
            break;
        }
        let mut body = vec![0u8; len as usize * 8];
        match read_frame_part(&mut s, &mut body).await {
            Ok(true) => {}
            Ok(false) => {
                seen.partial = Some("header without body".into());
                break;
            }
            Err(e) => {
                seen.partial = Some(format!("body: {e}"));
                break;
            }
        }
        seen.ids.extend(
            body.chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().unwrap())),
        );
        seen.replies += 1;
        replies.fetch_add(1, Ordering::Relaxed);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut floe = Floe::start(dir.path(), &[], &[("FLOE_SERVER__SHUTDOWN_TIMEOUT", "10s")]);
    let replies = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(client(floe.tcp, replies.clone())))
        .collect();

    // Let the load build up: three replies per connection on average.
    eventually_async(Duration::from_secs(10), "the load builds up", async || {
        let n = replies.load(Ordering::Relaxed);
        (n >= 3 * CONNECTIONS as u64)
            .then_some(())
            .ok_or_else(|| format!("{n} replies; stderr:\n{}", floe.stderr()))
    })
    .await;
    let before = replies.load(Ordering::Relaxed);

    let started = Instant::now();
    floe.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = floe.wait(Duration::from_secs(20));
        (status, floe)
    })
    .await
    .unwrap();
    let (status, floe) = status;
    let took = started.elapsed();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", floe.stderr());
    assert!(took < Duration::from_secs(12), "shutdown took {took:?}");

    let mut all = HashSet::new();
    let mut total = 0usize;
    for c in clients {
        let seen = tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .expect("client ends after the server exits")
            .unwrap();
        assert!(
            seen.partial.is_none(),
            "a client got a cut reply: {:?}",
            seen.partial
        );
        // The IDs of one connection increase.
        assert_increasing(&seen.ids);
        total += seen.replies;
        for id in seen.ids {
            assert!(all.insert(id), "ID {id} issued twice");
        }
    }
    assert!(total as u64 >= before);
    eprintln!(
        "{total} replies ({} IDs) to {CONNECTIONS} connections; shutdown took {took:?}",
        all.len()
    );
}
