//! Floe nodes leasing their `machine` id from a 3-member etcd cluster of the test's own
//! (issue #14): under load, kill -9 the etcd leader, then a Floe node, and restart both; a node
//! cut off from etcd by the chaos proxy stops issuing before etcd lets its lease go. Not one ID
//! is handed out twice. Needs the `etcd` binary (`./scripts/services` installs it); a missing
//! etcd fails the test.

#[path = "fixtures/cluster_support.rs"]
mod cluster;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cluster::{machine, node_env, start_nodes, Node, STARTUP, V2};
use floe_testkit::{assert_increasing, assert_unique, eventually, unique, ChaosProxy, EtcdCluster};

/// IDs per request of the load: small, so the test keeps tens of millions of IDs out of memory.
const LOAD_BATCH: u32 = 1_000;
/// Lease ttl: the shortest the layout allows (twice the fence margin: max_drift 1 s + a 1 s
/// tick + 0.5 s skew), so a cut-off node fences and its lease lapses within seconds.
const TTL: Duration = Duration::from_secs(6);

/// What one load connection saw.
#[derive(Debug, Default)]
struct Seen {
    /// Every ID served, in the order served.
    ids: Vec<u64>,
    /// Refusals (status, message).
    refusals: Vec<String>,
    /// When the last batch was served.
    last_served: Option<Instant>,
    /// When the first refusal after a served batch came.
    first_refusal: Option<Instant>,
    /// Why the connection ended, if the node went away.
    broken: Option<String>,
}

/// One v2 connection fetching [`LOAD_BATCH`] IDs every few milliseconds until stopped or until
/// the node goes away.
struct Load {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Seen>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Seen::default();
            let mut v2 = V2::connect(addr);
            while !flag.load(Ordering::Relaxed) {
                match v2.try_fetch(LOAD_BATCH, &mut seen.ids) {
                    Ok(Ok(())) => seen.last_served = Some(Instant::now()),
                    Ok(Err((status, message))) => {
                        if seen.first_refusal.is_none() && seen.last_served.is_some() {
                            seen.first_refusal = Some(Instant::now());
                        }
                        seen.refusals.push(format!("{status}: {message}"));
                    }
                    Err(e) => {
                        seen.broken = Some(e.to_string());
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        });
        Load { stop, thread }
    }

    fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("load thread")
    }

    /// Waits for the connection to break by itself (its node was killed), without asking the
    /// thread to stop: a stop request could end it before it saw the broken connection.
    /// Bounded by the connection's read timeout.
    fn until_broken(self) -> Seen {
        self.thread.join().expect("load thread")
    }
}

/// The worker id a ready node leased.
fn leased(node: &Node) -> u64 {
    node.info()["lease"]["worker_id"]
        .as_u64()
        .expect("worker_id")
}

#[test]
fn floe_on_a_three_member_etcd_survives_its_leader_and_its_own_nodes_dying() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let mut etcd = EtcdCluster::start(tmp.path());
    let namespace = unique("cluster");
    let registry = |url: String| {
        node_env(&[
            ("FLOE_REGISTRY__KIND".into(), "etcd".into()),
            ("FLOE_REGISTRY__URL".into(), url),
            ("FLOE_REGISTRY__NAMESPACE".into(), namespace.clone()),
            ("FLOE_REGISTRY__TTL".into(), format!("{}s", TTL.as_secs())),
        ])
    };
    let env = registry(etcd.endpoints().join(","));
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (mut nodes, ids) = start_nodes(&dirs[..3], &env);
    let mut finished: Vec<Seen> = Vec::new();

    // 1. Under load, kill -9 the etcd leader. The two members left elect a new one and every
    //    renewal goes through it: no node loses its lease.
    let loads: Vec<Load> = nodes.iter().map(|n| Load::start(n.tcp)).collect();
    std::thread::sleep(Duration::from_secs(1));
    let leader = etcd.leader();
    etcd.kill9(leader);
    let killed_at = Instant::now();
    // Long enough for two renewals (every ttl/3) to need the new leader.
    std::thread::sleep(TTL);
    for (i, n) in nodes.iter().enumerate() {
        let lease = &n.info()["lease"];
        assert_eq!(
            lease["held"],
            true,
            "node {i} kept its lease: {lease}; stderr:\n{}",
            n.stderr()
        );
        assert_eq!(leased(n), ids[i], "node {i} kept its id");
    }
    etcd.restart(leader);
    let leader_back = killed_at.elapsed();
    let mut loads: Vec<Option<Load>> = loads.into_iter().map(Some).collect();

    // 2. kill -9 a Floe node under load, restart it on its data dir: its old lease is still
    //    live in etcd, so it takes another id.
    let victim = 2;
    nodes[victim].kill9();
    let dead = loads[victim].take().unwrap().until_broken();
    assert!(dead.broken.is_some(), "the killed node's connection broke");
    finished.push(dead);
    nodes[victim] = Node::start(dirs[victim].path(), &env, None);
    let restarted = nodes[victim].wait_ready("node restarted after kill -9");
    assert!(
        !ids[..victim].contains(&restarted),
        "the restarted node shares a live node's id {restarted}"
    );
    loads[victim] = Some(Load::start(nodes[victim].tcp));
    std::thread::sleep(Duration::from_secs(1));

    // 3. A fourth node reaches etcd only through chaos proxies, one per member. Cut them all:
    //    it must stop issuing before etcd lets its lease go (and so before any other node could
    //    take its id), then come back once healed.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let proxies: Vec<ChaosProxy> = (0..3)
        .map(|i| {
            rt.block_on(ChaosProxy::start(&etcd.client_addr(i)))
                .unwrap()
        })
        .collect();
    let via_proxies = proxies
        .iter()
        .map(|p| format!("http://{}", p.addr()))
        .collect::<Vec<_>>()
        .join(",");
    let cut_env = registry(via_proxies);
    let mut cut_node = Node::start(dirs[3].path(), &cut_env, None);
    let cut_id = cut_node.wait_ready("node behind the chaos proxies");
    let cut_load = Load::start(cut_node.tcp);
    std::thread::sleep(Duration::from_secs(1));
    for p in &proxies {
        p.cut();
    }
    let cut_at = Instant::now();
    let key = format!("/floe/{namespace}/worker/{cut_id}");
    let gone_at = eventually(TTL * 3, "etcd lets the cut-off node's lease go", || {
        let out = etcd.ctl(&["get", &key])?;
        if out.trim().is_empty() {
            Ok(Instant::now())
        } else {
            Err(format!("{key} still held"))
        }
    });
    let (status, body) = cut_node.get("/readyz");
    assert_eq!(
        status, 503,
        "a node without a provable lease is not ready: {body}"
    );
    assert!(body.contains("lease"), "/readyz says why: {body}");
    for p in &proxies {
        p.heal();
    }
    // Healed, it renews (its id was not taken meanwhile) or leases another, and serves again.
    eventually(STARTUP, "the healed node serves again", || {
        let (status, body) = cut_node.get("/readyz");
        (status == 200).then_some(()).ok_or(body)
    });
    std::thread::sleep(Duration::from_millis(500));
    let cut_seen = cut_load.finish();
    let last_before_cut = cut_seen
        .ids
        .iter()
        .rev()
        .find(|x| machine(**x) == cut_id)
        .copied();
    assert!(last_before_cut.is_some(), "the node served before the cut");
    let stopped = cut_seen
        .first_refusal
        .expect("the cut-off node refused once it could not prove its lease");
    assert!(
        stopped < gone_at,
        "the node stopped issuing {:?} after the cut, after etcd let its lease go ({:?} after the cut)",
        stopped - cut_at,
        gone_at - cut_at
    );
    assert!(
        cut_seen.refusals.iter().all(|r| r.contains("lease")),
        "refusals name the lease: {:?}",
        cut_seen.refusals.first()
    );
    let fenced_after = stopped - cut_at;
    let lapsed_after = gone_at - cut_at;
    finished.push(cut_seen);

    // 4. Stop everything gracefully; then not one ID was handed out twice.
    for load in loads.into_iter().flatten() {
        finished.push(load.finish());
    }
    for (i, node) in nodes
        .iter_mut()
        .chain(std::iter::once(&mut cut_node))
        .enumerate()
    {
        let status = node.terminate();
        assert_eq!(
            status.code(),
            Some(0),
            "node {i} stops; stderr:\n{}",
            node.stderr()
        );
    }
    let mut all = Vec::new();
    for seen in &finished {
        assert!(!seen.ids.is_empty(), "every connection was served");
        assert_increasing(&seen.ids);
        all.extend_from_slice(&seen.ids);
    }
    let total = all.len();
    assert_unique(&all);
    println!(
        "etcd: machine ids {ids:?}; leader {leader} killed, back after {leader_back:?}; node {victim} \
         restarted with machine {restarted}; node behind proxies (machine {cut_id}) fenced {fenced_after:?} \
         after the cut, etcd let its lease go {lapsed_after:?} after; {total} IDs, none repeated; {:?} in all",
        started.elapsed()
    );
}
