//! Segment mode across a cluster of real `floe serve` processes: two nodes with their own data
//! directories and identities share one segment table on PostgreSQL, then on MariaDB. The tag
//! is created through one node's admin API; both nodes then hand out 200,000 IDs each over v2
//! TCP at the same time. No ID may be issued twice, by one node or by both.
//!
//! The databases come from FLOE_TEST_POSTGRES_URL / FLOE_TEST_MYSQL_URL (the loopback services
//! by default); a missing database fails the test. Each run uses its own table and drops it.

#[path = "fixtures/serve_support.rs"]
mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use support::Floe;

/// The admin token of both nodes.
const TOKEN: &str = "cluster-test-token";
/// IDs each node serves.
const PER_NODE: u32 = 200_000;
/// IDs per v2 request.
const BATCH: u32 = 10_000;
/// How long the nodes may take to stop.
const STOP: Duration = Duration::from_secs(20);

/// How a node is told where the segment table is.
#[derive(Clone, Copy)]
enum Via {
    /// `FLOE_SEGMENT__URL` and `FLOE_SEGMENT__TABLE`.
    Env,
    /// A `--config` TOML file.
    File,
}

/// One HTTP/1.1 request; returns the status and the body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("HTTP response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_owned())
}

/// Starts one node on the shared table.
fn node(dir: &Path, machine: u32, url: &str, table: &str, via: Via) -> Floe {
    let identity = format!("zone=0,dc=0,machine={machine}");
    match via {
        Via::Env => Floe::start(
            dir,
            &["--identity", &identity],
            &[
                ("FLOE_SEGMENT__URL", url),
                ("FLOE_SEGMENT__TABLE", table),
                ("FLOE_ADMIN_TOKEN", TOKEN),
            ],
        ),
        Via::File => {
            let file = dir.join("floe.toml");
            std::fs::write(
                &file,
                format!(
                    "[server]\nadmin_token = \"{TOKEN}\"\n\n[segment]\nurl = \"{url}\"\ntable = \"{table}\"\n"
                ),
            )
            .unwrap();
            Floe::start(
                dir,
                &["--identity", &identity, "--config", file.to_str().unwrap()],
                &[],
            )
        }
    }
}

/// `PER_NODE` IDs of `tag` from one node, in `BATCH`-sized v2 requests on one connection.
fn serve(floe: &Floe, tag: &str) -> Vec<u64> {
    let mut s = TcpStream::connect(floe.tcp).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.set_nodelay(true).unwrap();
    let mut ids = Vec::with_capacity(PER_NODE as usize);
    for req_id in 0..PER_NODE / BATCH {
        let mut frame = vec![0xF1, 2];
        frame.extend_from_slice(&req_id.to_be_bytes());
        frame.extend_from_slice(&BATCH.to_be_bytes());
        frame.push(tag.len() as u8);
        frame.extend_from_slice(tag.as_bytes());
        s.write_all(&frame).unwrap();
        let mut head = [0u8; 10];
        s.read_exact(&mut head).expect("v2 reply header");
        let len = u32::from_be_bytes(head[6..10].try_into().unwrap()) as usize;
        let echoed = u32::from_be_bytes(head[2..6].try_into().unwrap());
        if head[1] != 0 {
            let mut message = vec![0u8; len];
            s.read_exact(&mut message).expect("v2 error message");
            panic!(
                "request {req_id}: status {}: {}; stderr:\n{}",
                head[1],
                String::from_utf8_lossy(&message),
                floe.stderr()
            );
        }
        assert_eq!((head[0], echoed, len), (0xF1, req_id, BATCH as usize));
        let mut body = vec![0u8; len * 8];
        s.read_exact(&mut body).expect("v2 reply body");
        ids.extend(
            body.chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().unwrap())),
        );
    }
    ids
}

fn drop_table(url: &str, table: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
}

fn two_nodes_share_one_table(url: &str, via: Via) {
    let started = Instant::now();
    let table = floe_testkit::unique("seg_cluster");
    let tag = "orders";
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut a = node(dirs[0].path(), 1, url, &table, via);
    let mut b = node(dirs[1].path(), 2, url, &table, via);

    // The table is created in the background (by both nodes, racing): wait until node A sees it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http(a.http, "GET", "/admin/tags", "");
        if status == 200 {
            assert_eq!(body, r#"{"tags":[]}"#);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no segment table: {status} {body}; stderr:\n{}",
            a.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = http(
        a.http,
        "POST",
        "/admin/tags",
        &format!(r#"{{"tag":"{tag}","start":1,"step":1000}}"#),
    );
    assert_eq!(status, 201, "{body}");

    // Both nodes at once, one connection each.
    let (from_a, from_b) = std::thread::scope(|scope| {
        let ta = scope.spawn(|| serve(&a, tag));
        let tb = scope.spawn(|| serve(&b, tag));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    for (name, ids) in [("A", &from_a), ("B", &from_b)] {
        assert_eq!(ids.len(), PER_NODE as usize);
        assert!(ids[0] > 0, "ID 0 is never issued");
        for w in ids.windows(2) {
            assert!(w[0] < w[1], "node {name}: {} then {}", w[0], w[1]);
        }
    }
    // The nodes claimed in turns from the one row: their ranges interleave.
    let (a_span, b_span) = (
        (from_a[0], from_a[from_a.len() - 1]),
        (from_b[0], from_b[from_b.len() - 1]),
    );
    assert!(
        a_span.0 < b_span.1 && b_span.0 < a_span.1,
        "the nodes did not claim in turns: A {a_span:?}, B {b_span:?}"
    );
    let set_a: HashSet<u64> = from_a.iter().copied().collect();
    let common = from_b.iter().filter(|id| set_a.contains(id)).count();
    assert_eq!(common, 0, "IDs issued by both nodes");
    let all: HashSet<u64> = from_a.iter().chain(&from_b).copied().collect();
    assert_eq!(all.len(), 2 * PER_NODE as usize);

    // Both see the tag; both stop cleanly.
    let (status, body) = http(b.http, "GET", "/admin/tags", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""tag":"orders""#), "{body}");
    assert_eq!(a.terminate(STOP).code(), Some(0), "{}", a.stderr());
    assert_eq!(b.terminate(STOP).code(), Some(0), "{}", b.stderr());
    drop_table(url, &table);
    eprintln!(
        "{}: 2 × {PER_NODE} IDs in {:?}",
        floe_testkit::host_port(url),
        started.elapsed()
    );
}

#[test]
fn two_nodes_on_postgres_never_share_an_id() {
    two_nodes_share_one_table(&floe_testkit::postgres_url(), Via::Env);
}

#[test]
fn two_nodes_on_mariadb_never_share_an_id() {
    two_nodes_share_one_table(&floe_testkit::mysql_url(), Via::File);
}
