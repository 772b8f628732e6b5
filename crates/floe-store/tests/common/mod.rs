//! The worker-id registry contract, run against every store by `registry_*.rs` (the keeper's
//! fencing scenario is the server's, `crates/floe-server/tests/lease_keeper.rs`). Each check uses its own namespace, so checks run in
//! parallel and repeatedly against one table or key prefix.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use floe_store::registry::{Lease, LeaseRequest, RegistryError, WorkerRegistry};
use floe_testkit::unique;
use tokio::net::TcpListener;
use tokio::sync::Barrier;
use tokio::time::{sleep, timeout, Instant};

/// Builds a registry on the store under test (a fresh client each call, as separate nodes have).
pub type Factory<'a> = &'a (dyn Fn() -> Arc<dyn WorkerRegistry> + Sync);

/// A ttl long enough that no lease expires during a check unless the check waits for it.
pub const LONG_TTL: Duration = Duration::from_secs(30);
/// A ttl short enough to wait out (the minimum the registries accept is 300 ms).
pub const SHORT_TTL: Duration = Duration::from_millis(300);

/// Makes the leases a check holds lapse; the check then polls the store until its listing
/// shows them lapsed ([`wait_lapsed`]).
pub type Lapse<'a> = &'a (dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> + Sync);

/// A store under test, as the contract sees it. `registry_*.rs` implement it and run every
/// check with [`contract!`].
pub trait Store: Sync {
    /// A registry on the store (a fresh client each call, as separate nodes have).
    fn registry(&self) -> Arc<dyn WorkerRegistry>;

    /// A registry whose leases [`Store::lapse`] can make lapse.
    fn lapsing(&self) -> Arc<dyn WorkerRegistry> {
        self.registry()
    }

    /// Makes the leases of [`Store::lapsing`] registries lapse. Redis, SQL and etcd leases lapse
    /// by themselves once their ttl passes, so by default there is nothing to do; a ZooKeeper
    /// session is kept alive by its client's pings, so its test cuts the holder off instead.
    fn lapse(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }

    /// Removes what a check left in the store (a table); key prefixes clean up on drop.
    fn finish(self) -> impl Future<Output = ()>
    where
        Self: Sized,
    {
        async {}
    }
}

/// The contract's checks as tests in a module `$name`, each on a fresh `$store` (an expression,
/// which may `.await`), finished after the check.
macro_rules! contract {
    ($name:ident, $store:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn forty_claimers_on_32_ids() {
                let store = $store;
                common::forty_claimers_on_32_ids(&|| common::Store::registry(&store)).await;
                common::Store::finish(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn expiry_reclaims() {
                let store = $store;
                common::expiry_reclaims(&|| common::Store::lapsing(&store), &|| {
                    common::Store::lapse(&store)
                })
                .await;
                common::Store::finish(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn renewal_after_expiry_keeps_an_untaken_id() {
                let store = $store;
                common::renewal_after_expiry_keeps_an_untaken_id(
                    &|| common::Store::lapsing(&store),
                    &|| common::Store::lapse(&store),
                )
                .await;
                common::Store::finish(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn released_id_is_reused() {
                let store = $store;
                common::released_id_is_reused(&|| common::Store::registry(&store)).await;
                common::Store::finish(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn non_owner_is_lost() {
                let store = $store;
                common::non_owner_is_lost(&|| common::Store::registry(&store)).await;
                common::Store::finish(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn high_water_never_goes_down() {
                let store = $store;
                common::high_water_never_goes_down(&|| common::Store::registry(&store)).await;
                common::Store::finish(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn listing_shows_holders() {
                let store = $store;
                common::listing_shows_holders(&|| common::Store::lapsing(&store), &|| {
                    common::Store::lapse(&store)
                })
                .await;
                common::Store::finish(store).await;
            }
        }
    };
}
pub(crate) use contract;

pub fn request(namespace: &str, pool_size: u32, ttl: Duration) -> LeaseRequest {
    LeaseRequest::new(namespace, pool_size, ttl)
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn assert_lost<T: std::fmt::Debug>(r: Result<T, RegistryError>, what: &str) {
    match r {
        Err(RegistryError::Lost { .. }) => {}
        other => panic!("{what}: expected Lost, got {other:?}"),
    }
}

/// 40 claimers race for a 32-id pool from 4 clients: 32 distinct ids, exactly 8 `Exhausted`.
pub async fn forty_claimers_on_32_ids(make: Factory<'_>) {
    let ns = unique("claim");
    let clients: Vec<Arc<dyn WorkerRegistry>> = (0..4).map(|_| make()).collect();
    let start = Arc::new(Barrier::new(40));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let reg = clients[i % clients.len()].clone();
            let req = request(&ns, 32, LONG_TTL);
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                reg.acquire(&req).await
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut exhausted = 0;
    for t in tasks {
        match t.await.expect("claimer task") {
            Ok(lease) => {
                assert!(lease.epoch >= 1, "{lease:?}");
                ids.push(lease.id);
            }
            Err(RegistryError::Exhausted { pool_size: 32, .. }) => exhausted += 1,
            Err(e) => panic!("a claimer failed: {e}"),
        }
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..32).collect::<Vec<_>>(), "32 distinct ids");
    assert_eq!(
        exhausted, 8,
        "the 8 claimers left over are told the pool is exhausted"
    );
}

/// Waits until the store shows `id` as no longer held: a lapse is the store's decision, on its
/// clock and at its granularity (etcd leases are whole seconds, at least 1 s), so the checks
/// poll its listing instead of sleeping a fixed time.
pub async fn wait_lapsed(reg: &dyn WorkerRegistry, req: &LeaseRequest, id: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let slots = reg.list(req).await.unwrap();
        if slots.iter().any(|s| s.worker_id == id && !s.held) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the lease on id {id} never lapsed: {slots:?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// An expired lease is granted again, with a higher epoch and the earlier holder's mark; the
/// earlier holder's renewal then fails.
pub async fn expiry_reclaims(make: Factory<'_>, lapse: Lapse<'_>) {
    let reg = make();
    let ns = unique("expiry");
    let first_req = request(&ns, 4, SHORT_TTL);
    let first = reg.acquire(&first_req).await.unwrap();
    assert_eq!(first.id, 0);
    reg.renew(&first_req, &first, 1_000).await.unwrap();
    let live = reg.acquire(&request(&ns, 4, SHORT_TTL)).await.unwrap();
    assert_eq!(live.id, 1, "a live lease is not granted twice");
    lapse().await;
    wait_lapsed(&*reg, &first_req, 0).await;
    let second = reg.acquire(&request(&ns, 4, SHORT_TTL)).await.unwrap();
    assert_eq!(second.id, 0, "the lowest expired id is reclaimed");
    assert!(second.epoch > first.epoch, "{second:?} after {first:?}");
    assert_eq!(second.previous_high_water_ms, Some(1_000));
    assert_lost(
        reg.renew(&first_req, &first, 2_000).await,
        "renewal by the expired holder",
    );
}

/// A holder cut off past its expiry keeps its id if nobody took it meanwhile.
pub async fn renewal_after_expiry_keeps_an_untaken_id(make: Factory<'_>, lapse: Lapse<'_>) {
    let reg = make();
    let ns = unique("late");
    let req = request(&ns, 4, SHORT_TTL);
    let lease = reg.acquire(&req).await.unwrap();
    lapse().await;
    wait_lapsed(&*reg, &req, lease.id).await;
    reg.renew(&req, &lease, 5).await.unwrap();
    let other = reg.acquire(&request(&ns, 4, SHORT_TTL)).await.unwrap();
    assert_eq!(other.id, 1, "the renewed id is held again");
}

/// A released id is the next one granted (lowest first), with the releaser's mark.
pub async fn released_id_is_reused(make: Factory<'_>) {
    let reg = make();
    let ns = unique("release");
    let reqs: Vec<_> = (0..3).map(|_| request(&ns, 8, LONG_TTL)).collect();
    let mut leases = Vec::new();
    for req in &reqs {
        leases.push(reg.acquire(req).await.unwrap());
    }
    assert_eq!(leases.iter().map(|l| l.id).collect::<Vec<_>>(), [0, 1, 2]);
    reg.release(&reqs[1], &leases[1], 500).await.unwrap();
    let next = reg.acquire(&request(&ns, 8, LONG_TTL)).await.unwrap();
    assert_eq!(next.id, 1);
    assert!(next.epoch > leases[1].epoch);
    assert_eq!(next.previous_high_water_ms, Some(500));
    assert_lost(
        reg.renew(&reqs[1], &leases[1], 600).await,
        "renewal after release",
    );
    assert_lost(
        reg.release(&reqs[1], &leases[1], 600).await,
        "second release",
    );
    let after = reg.acquire(&request(&ns, 8, LONG_TTL)).await.unwrap();
    assert_eq!(after.id, 3);
}

/// Only the holder, with its epoch, can renew or release.
pub async fn non_owner_is_lost(make: Factory<'_>) {
    let reg = make();
    let ns = unique("owner");
    let req = request(&ns, 2, LONG_TTL);
    let lease = reg.acquire(&req).await.unwrap();
    let intruder = Lease {
        owner: "intruder".to_string(),
        ..lease.clone()
    };
    assert_lost(
        reg.renew(&req, &intruder, 1).await,
        "renewal by another owner",
    );
    assert_lost(
        reg.release(&req, &intruder, 1).await,
        "release by another owner",
    );
    let stale = Lease {
        epoch: lease.epoch + 1,
        ..lease.clone()
    };
    assert_lost(
        reg.renew(&req, &stale, 1).await,
        "renewal with another epoch",
    );
    let unheld = Lease {
        id: 1,
        ..lease.clone()
    };
    assert_lost(
        reg.renew(&req, &unheld, 1).await,
        "renewal of an id never granted",
    );
    reg.renew(&req, &lease, 1).await.unwrap();
}

/// Renewals only raise the stored mark; the holder's release sets its exact final mark (its
/// renewals may have stored one ahead of time).
pub async fn high_water_never_goes_down(make: Factory<'_>) {
    let reg = make();
    let ns = unique("hw");
    let req = request(&ns, 1, LONG_TTL);
    let lease = reg.acquire(&req).await.unwrap();
    assert_eq!(lease.previous_high_water_ms, None);
    let mark = unix_ms();
    reg.renew(&req, &lease, mark).await.unwrap();
    reg.renew(&req, &lease, mark - 1_000).await.unwrap();
    let next = {
        // A second holder after expiry would see the highest renewal…
        reg.release(&req, &lease, mark - 500).await.unwrap();
        reg.acquire(&request(&ns, 1, LONG_TTL)).await.unwrap()
    };
    // …but after a release it sees the releaser's own final mark.
    assert_eq!(next.previous_high_water_ms, Some(mark - 500));
}

/// The listing shows who holds which id, with epoch, expiry and mark; released ids stay listed
/// without a holder, ids at or above the pool size and other namespaces are left out.
pub async fn listing_shows_holders(make: Factory<'_>, lapse: Lapse<'_>) {
    let reg = make();
    let ns = unique("list");
    assert_eq!(reg.list(&request(&ns, 8, LONG_TTL)).await.unwrap(), []);
    let reqs: Vec<_> = (0..3).map(|_| request(&ns, 8, LONG_TTL)).collect();
    let mut leases = Vec::new();
    for req in &reqs {
        leases.push(reg.acquire(req).await.unwrap());
    }
    reg.renew(&reqs[0], &leases[0], 1_234).await.unwrap();
    reg.release(&reqs[2], &leases[2], 777).await.unwrap();
    // Another namespace and a narrower pool do not leak into the answer.
    let other = request(&unique("list_other"), 8, LONG_TTL);
    reg.acquire(&other).await.unwrap();
    let slots = reg.list(&request(&ns, 8, LONG_TTL)).await.unwrap();
    assert_eq!(
        slots.iter().map(|s| s.worker_id).collect::<Vec<_>>(),
        [0, 1, 2],
        "{slots:?}"
    );
    for (slot, (req, lease)) in slots.iter().zip(reqs.iter().zip(&leases)).take(2) {
        assert!(slot.held, "{slot:?}");
        assert_eq!(slot.owner.as_deref(), Some(req.owner.as_str()));
        assert!(slot.epoch >= lease.epoch, "{slot:?} {lease:?}");
        let left = slot.expires_in_ms.expect("a held id expires");
        assert!(
            left > 0 && left <= LONG_TTL.as_millis() as i64 + 1_000,
            "{slot:?}"
        );
    }
    assert_eq!(slots[0].high_water_ms, Some(1_234));
    let released = &slots[2];
    assert!(!released.held && released.owner.is_none(), "{released:?}");
    assert_eq!(released.expires_in_ms, None);
    assert_eq!(released.high_water_ms, Some(777));
    let narrow = reg.list(&request(&ns, 1, LONG_TTL)).await.unwrap();
    assert_eq!(narrow.iter().map(|s| s.worker_id).collect::<Vec<_>>(), [0]);
    // An expired lease is listed as not held.
    let short = unique("list_short");
    let req = request(&short, 2, SHORT_TTL);
    reg.acquire(&req).await.unwrap();
    lapse().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let slots = reg.list(&req).await.unwrap();
        if !slots[0].held {
            assert!(slots[0].expires_in_ms.unwrap_or(0) <= 0, "{slots:?}");
            break;
        }
        assert!(Instant::now() < deadline, "lease never lapsed: {slots:?}");
        sleep(Duration::from_millis(50)).await;
    }
}

/// A listener that accepts connections and never answers: a hung store.
pub async fn black_hole() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

/// A store that does not answer makes calls fail within the call timeout instead of hanging.
pub async fn hung_store_is_unavailable(reg: Arc<dyn WorkerRegistry>, call_timeout: Duration) {
    let req = request(&unique("hung"), 4, LONG_TTL);
    let started = Instant::now();
    let r = timeout(call_timeout * 3, reg.acquire(&req))
        .await
        .expect("the registry call itself must time out");
    assert!(
        matches!(r, Err(RegistryError::Unavailable { .. })),
        "expected Unavailable, got {r:?}"
    );
    assert!(
        started.elapsed() < call_timeout * 2,
        "{:?}",
        started.elapsed()
    );
}
