//! Restarts, the data-directory lock and the peer identity check, in process.

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::panic::Location;

use common::*;
use floe_server::{Listeners, Server, ServerError};
use tokio::io::AsyncWriteExt;

/// `n` IDs over v2 (a plain function returning a future, so a failure names the test's line).
#[track_caller]
fn fetch(server: &TestServer, n: u32) -> impl Future<Output = Vec<u64>> + '_ {
    let at = Location::caller();
    async move {
        let mut s = connect(server.tcp).await;
        s.write_all(&v2_request(1, 1, n, b"")).await.unwrap();
        let r = read_v2(&mut s).await;
        assert_eq!(r.status, 0, "{} (at {at})", r.message);
        r.ids
    }
}

#[tokio::test]
async fn restart_on_the_same_data_dir_never_repeats() {
    let first = TestServer::start(config()).await;
    let mut seen: HashSet<u64> = fetch(&first, 50_000).await.into_iter().collect();
    let max_before = *seen.iter().max().unwrap();
    let (result, dir) = first.stop().await;
    result.unwrap();

    // Within the same second, on the same data directory.
    let second = TestServer::start_in(config(), dir).await;
    let after = fetch(&second, 50_000).await;
    assert!(
        after.iter().all(|id| *id > max_before),
        "restart went back in time"
    );
    assert!(after.iter().all(|id| seen.insert(*id)));
    let (result, dir) = second.stop().await;
    result.unwrap();

    // A third run whose clock is 3 s in the past (inside max_rollback) serves at once from
    // logical time, still after every earlier ID.
    let mut cfg = config();
    cfg.snowflake.clock_offset_ms = -3_000;
    let third = TestServer::start_in(cfg, dir).await;
    let after = fetch(&third, 1_000).await;
    assert!(
        after.iter().all(|id| seen.insert(*id)),
        "IDs repeated after a clock step back"
    );
    third.stop().await.0.unwrap();
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let first = TestServer::start(config()).await;
    let mut cfg = config();
    cfg.data_dir = first.dir.path().to_path_buf();
    let local = "127.0.0.1:0".parse().unwrap();
    let listeners = Listeners::bind_to(local, local).await.unwrap();
    let e = Server::start(cfg, listeners).await.unwrap_err();
    assert!(matches!(e, ServerError::Generator { .. }), "{e}");
    // The cause is the error's source, printed once in the chain.
    let printed = floe_core::report(&e);
    assert!(
        printed.starts_with("cannot start the snowflake generator (data_dir ")
            && printed.contains("in use by another Floe process"),
        "{printed}"
    );
    assert_eq!(e.exit_code(), 1);
    first.stop().await.0.unwrap();
}

fn identity(zone: u64) -> floe_core::Identity {
    floe_core::Layout::parse("genid")
        .unwrap()
        .identity(&[
            ("zone".into(), zone),
            ("dc".into(), 1),
            ("machine".into(), 1),
        ])
        .unwrap()
}

#[tokio::test]
async fn a_peer_with_the_same_identity_stops_the_start() {
    let mut cfg = config();
    cfg.snowflake.identity = identity(4);
    let a = TestServer::start(cfg).await;
    let local = "127.0.0.1:0".parse().unwrap();

    // Same layout and identity as a running peer: refused, naming the peer.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.data_dir = dir.path().to_path_buf();
    cfg.snowflake.identity = identity(4);
    cfg.server.peers = vec![a.http.to_string()];
    let listeners = Listeners::bind_to(local, local).await.unwrap();
    let e = Server::start(cfg.clone(), listeners).await.unwrap_err();
    assert!(matches!(e, ServerError::PeerConflict { .. }), "{e}");
    assert!(e.to_string().contains(&a.http.to_string()), "{e}");
    assert_eq!(e.exit_code(), 64);

    // Another identity, an unreachable peer, and itself in the list: all fine.
    let listeners = Listeners::bind_to(local, local).await.unwrap();
    let own = listeners.http_addr().unwrap();
    // Port 1 on loopback: nothing listens there, and no parallel test can take it.
    let unreachable: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    cfg.snowflake.identity = identity(5);
    cfg.server.peers = vec![a.http.to_string(), unreachable.to_string(), own.to_string()];
    let started = std::time::Instant::now();
    let server = Server::start(cfg, listeners).await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    drop(server);
    a.stop().await.0.unwrap();
}

/// A fixed worker id (static or a Kubernetes ordinal) that does not fit the layout is a
/// configuration mistake found before the node listens: exit 64, not a node that starts and gives up.
#[tokio::test]
async fn a_fixed_worker_id_outside_the_pool_is_refused_at_start() {
    let mut cfg = config();
    let dir = tempfile::tempdir().unwrap();
    cfg.data_dir = dir.path().to_path_buf();
    // genid's machine field has 3 bits: ids 0..8.
    cfg.registry = Some(floe_server::config::RegistrySettings {
        registry: floe_store::registry::RegistryConfig::Static { worker_id: Some(9) },
        namespace: "floe".into(),
        ttl: std::time::Duration::from_secs(10),
        fields: vec!["machine".into()],
    });
    let local = "127.0.0.1:0".parse().unwrap();
    let listeners = Listeners::bind_to(local, local).await.unwrap();
    let e = Server::start(cfg, listeners).await.unwrap_err();
    assert!(matches!(e, ServerError::Registry(_)), "{e:?}");
    assert_eq!(e.exit_code(), 64);
    let printed = floe_core::report(&e);
    assert!(
        printed.contains(
            "worker id 9 (from the config) does not fit the layout's node field(s): allowed 0..8"
        ),
        "{printed}"
    );
}
