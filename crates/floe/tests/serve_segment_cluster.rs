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
use std::path::Path;
use std::time::{Duration, Instant};

use floe_testkit::{assert_increasing, eventually};
use support::{admin, Floe, V2};

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
#[track_caller]
fn serve(floe: &Floe, tag: &str) -> Vec<u64> {
    let mut v2 = V2::connect(floe.tcp);
    let mut ids = Vec::with_capacity(PER_NODE as usize);
    for i in 0..PER_NODE / BATCH {
        let batch = v2.segment(tag, BATCH).unwrap_or_else(|(status, message)| {
            panic!(
                "request {i}: status {status}: {message}; stderr:\n{}",
                floe.stderr()
            )
        });
        assert_eq!(batch.len(), BATCH as usize, "a whole batch");
        ids.extend(batch);
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
    let body = eventually(
        Duration::from_secs(20),
        "node A sees the segment table",
        || {
            let (status, body) = admin(a.http, TOKEN, "GET", "/admin/tags", "");
            if status == 200 {
                Ok(body)
            } else {
                Err(format!("{status} {body}; stderr:\n{}", a.stderr()))
            }
        },
    );
    assert_eq!(body, r#"{"tags":[]}"#);
    let (status, body) = admin(
        a.http,
        TOKEN,
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
        assert_eq!(ids.len(), PER_NODE as usize, "node {name}");
        assert!(ids[0] > 0, "node {name}: ID 0 is never issued");
    }
    assert_increasing(&from_a);
    assert_increasing(&from_b);
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
    let (status, body) = admin(b.http, TOKEN, "GET", "/admin/tags", "");
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
