//! `floe leaf list` and `floe leaf reclaim` run as an operator would, against the real ZooKeeper,
//! on Leaf nodes made exactly as Leaf makes them (see `fixtures/leaf_support.rs`). Each test has
//! a Leaf cluster name and a Floe root of its own, deleted when it ends.

#[path = "fixtures/leaf_support.rs"]
mod leaf_support;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_core::rfc3339;
use floe_store::registry::{
    LeaseRequest, WorkerRegistry, ZookeeperConfig, ZookeeperRegistry, DEFAULT_TTL,
};
use floe_testkit::unique;
use leaf_support::{leaf_children, leaf_nodes, unix_ms, zookeeper, Cleanup};
use zookeeper_client::Client;

/// `floe args…`, without the caller's ZooKeeper credentials.
fn floe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(args)
        .env_remove("FLOE_ZOOKEEPER_AUTH")
        .output()
        .expect("floe runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A Floe registry taking over Leaf's cluster from `endpoint`.
fn floe_registry(root: &str, leaf_name: &str, endpoint: &str) -> Arc<dyn WorkerRegistry> {
    let config = ZookeeperConfig {
        root: root.to_string(),
        call_timeout: Duration::from_secs(5),
        leaf_name: Some(leaf_name.to_string()),
        endpoint: Some(endpoint.to_string()),
        ..ZookeeperConfig::new(zookeeper())
    };
    Arc::new(ZookeeperRegistry::new(&config).unwrap())
}

/// The line of worker `id` in `out`.
#[track_caller]
fn line_of(out: &str, id: u32) -> &str {
    let prefix = format!("worker {id} ");
    out.lines()
        .find(|l| l.contains(&prefix))
        .unwrap_or_else(|| panic!("no line for worker {id} in\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_reclaim_leaf_nodes() {
    let leaf = unique("leafcli");
    let root = format!("/{}", unique("floeleafcli"));
    let _cleanup = Cleanup(vec![format!("/snowflake/{leaf}"), root.clone()]);
    let zk = Client::connect(&zookeeper()).await.unwrap();
    let now = unix_ms();
    let old = now - 48 * 3_600_000;
    let endpoints = [
        "10.3.0.1:8080",
        "10.3.0.2:8080",
        "10.3.0.3:8080",
        "10.3.0.4:8080",
    ];
    let ids = leaf_nodes(
        &zk,
        &leaf,
        &[
            (endpoints[0], old),
            (endpoints[1], now - 2_000),
            (endpoints[2], old + 1),
            (endpoints[3], old + 2),
        ],
    )
    .await;
    assert_eq!(ids, [0, 1, 2, 3]);
    let ns = unique("ns");
    // A Floe node took endpoint 2 over and holds its id.
    let taker = floe_registry(&root, &leaf, endpoints[2]);
    let taker_req = LeaseRequest::new(&ns, 1024, DEFAULT_TTL);
    assert_eq!(taker.acquire(&taker_req).await.unwrap().id, 2);
    let target = ["--zookeeper", &zookeeper(), "--leaf-name", &leaf].map(String::from);
    // `floe leaf SUBCOMMAND --zookeeper … --leaf-name … REST…`.
    let run = |command: &[&str]| {
        let mut args = vec!["leaf", command[0]];
        args.extend(target.iter().map(String::as_str));
        args.extend_from_slice(&command[1..]);
        floe(&args)
    };

    // list: one line per node, in id order, without Floe's leases unless asked.
    let o = run(&["list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 4, "{out}");
    let first = line_of(&out, 0);
    assert!(first.contains(endpoints[0]), "{first}");
    assert!(
        first.contains(&format!("last {} (2days ago)", rfc3339(old))),
        "{first}"
    );
    assert!(line_of(&out, 1).contains("(2s ago)"), "{out}");
    assert!(!out.contains("floe lease"), "{out}");
    let o = run(&["list", "--namespace", &ns, "--root", &root]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        line_of(&out, 2).contains(&format!("floe lease in {ns}: held by {}", taker_req.owner)),
        "{out}"
    );
    for id in [0, 1, 3] {
        assert!(
            line_of(&out, id).ends_with(&format!("floe lease in {ns}: free")),
            "{out}"
        );
    }

    // reclaim without --yes: a dry run.
    let before = leaf_children(&zk, &leaf).await;
    let reclaim = [
        "reclaim",
        "--idle",
        "24h",
        "--namespace",
        &ns,
        "--root",
        &root,
    ];
    let o = run(&reclaim);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(line_of(&out, 0).starts_with("would delete"), "{out}");
    assert!(line_of(&out, 3).starts_with("would delete"), "{out}");
    assert!(
        line_of(&out, 1).starts_with("keep")
            && line_of(&out, 1).contains("within the idle time of 1day"),
        "{out}"
    );
    assert!(
        line_of(&out, 2).starts_with("keep")
            && line_of(&out, 2).contains("a live Floe lease holds its id"),
        "{out}"
    );
    assert!(
        out.contains("dry run: would delete 2 of 4 Leaf nodes; run again with --yes"),
        "{out}"
    );
    assert_eq!(
        leaf_children(&zk, &leaf).await,
        before,
        "a dry run deletes nothing"
    );

    // With --yes, and endpoint 3 protected as a node's own.
    let mut yes = reclaim.to_vec();
    yes.extend(["--endpoint", endpoints[3], "--yes"]);
    let o = run(&yes);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(line_of(&out, 0).starts_with("deleted"), "{out}");
    assert!(
        line_of(&out, 3).starts_with("keep") && line_of(&out, 3).contains("own endpoint"),
        "{out}"
    );
    assert!(out.contains("deleted 1 of 4 Leaf nodes"), "{out}");
    assert_eq!(
        leaf_children(&zk, &leaf).await,
        [1, 2, 3]
            .map(|i| format!("{}-{i:010}", endpoints[i]))
            .to_vec()
    );
    // The freed id goes to the next Floe node, which starts after Leaf's last IDs.
    let newcomer = floe_registry(&root, &leaf, "10.3.9.9:8080");
    let lease = newcomer
        .acquire(&LeaseRequest::new(&ns, 1024, DEFAULT_TTL))
        .await
        .unwrap();
    // Leaf's IDs may reach one upload delay (3 s) past its last timestamp.
    assert_eq!(
        (lease.id, lease.previous_high_water_ms),
        (0, Some(old + 3_001))
    );
    // Then node 3, no longer protected.
    let o = run(&[&reclaim[..], &["--yes"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        line_of(&stdout(&o), 3).starts_with("deleted"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        leaf_children(&zk, &leaf).await,
        [1, 2].map(|i| format!("{}-{i:010}", endpoints[i])).to_vec()
    );
}

/// Errors name the input and exit 64 for a wrong input, 1 for an unreachable ZooKeeper
/// (within --timeout).
#[test]
fn leaf_errors_name_the_input() {
    let missing = unique("noleaf");
    let zk = zookeeper();
    let o = floe(&["leaf", "list", "--zookeeper", &zk, "--leaf-name", &missing]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("/snowflake/{missing}/forever does not exist")),
        "{}",
        stderr(&o)
    );
    for (idle, needle) in [
        ("soon", "--idle `soon`"),
        ("10s", "below the minimum of 1m"),
    ] {
        let o = floe(&[
            "leaf",
            "reclaim",
            "--zookeeper",
            &zk,
            "--leaf-name",
            &missing,
            "--idle",
            idle,
        ]);
        assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{}", stderr(&o));
    }
    let o = floe(&["leaf", "list", "--zookeeper", "zk1", "--leaf-name", "x"]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(stderr(&o).contains("`zk1`"), "{}", stderr(&o));
    // A listener that never answers: the TCP connection opens, ZooKeeper's handshake never comes.
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = hole.local_addr().unwrap().to_string();
    let started = Instant::now();
    let o = floe(&[
        "leaf",
        "list",
        "--zookeeper",
        &addr,
        "--leaf-name",
        "x",
        "--timeout",
        "500ms",
    ]);
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&addr) && stderr(&o).contains("500ms"),
        "{}",
        stderr(&o)
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}
