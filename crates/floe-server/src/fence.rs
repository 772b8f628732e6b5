//! The worker-id fence every request checks: the lease as the issuing path sees it.
//!
//! The lease keeper ([`crate::keeper`]) acquires and renews the lease; [`crate::lease`] turns its
//! state into this atomic fence, so a node stops issuing at `last successful renewal + ttl −
//! margin` even if the keeper task itself runs late. Kept apart from the lease follower so the
//! node (which checks the fence) and the follower (which swaps the node's generator) do not
//! depend on each other.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use floe_store::registry::{Lease, LeaseRequest, NodePool, WorkerRegistry};

use crate::keeper::LeaseKeeper;
use tracing::{info, warn};

use crate::issue::IssueError;
use crate::metrics::Metrics;

/// Fence value: no lease held.
pub(crate) const NOT_HELD: u64 = 0;
/// Fence value: held, and it never expires (Kubernetes ordinals).
pub(crate) const FOREVER: u64 = u64::MAX;

/// The lease in `/v1/info` (keys in alphabetical order, as the rest of the body).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct LeaseInfo {
    /// The fencing epoch of the lease in force.
    pub(crate) epoch: Option<u64>,
    /// Milliseconds until the node stops issuing unless a renewal succeeds; `null` when no
    /// lease is held or it never expires (Kubernetes).
    pub(crate) fence_in_ms: Option<i64>,
    /// Whether the node may issue IDs now.
    pub(crate) held: bool,
    /// Where the leases are (`sql at …`, `redis at …`, `kubernetes (…)`), without passwords.
    pub(crate) registry: String,
    /// `held`, or why not.
    pub(crate) status: String,
    /// The leased worker id.
    pub(crate) worker_id: Option<u32>,
}

/// The lease as the server sees it.
#[derive(Debug)]
pub(crate) struct LeaseGuard {
    /// Monotonic origin of `fence_ns`.
    pub(crate) base: Instant,
    /// Nanoseconds after `base` at which issuing stops; [`NOT_HELD`] or [`FOREVER`].
    pub(crate) fence_ns: AtomicU64,
    /// Why the node does not hold a lease, for `/readyz`.
    pub(crate) status: Mutex<String>,
    /// The lease in force, for `/v1/info`.
    pub(crate) lease: Mutex<Option<Lease>>,
    /// The generator's persisted mark (Unix ms), refreshed by maintenance; each renewal stores
    /// at least `now + ttl + drift` on top of it, computed when the renewal is sent.
    pub(crate) registry_mark: Arc<AtomicU64>,
    /// Set at release: from then on the keeper stores exactly `registry_mark`.
    pub(crate) released: Arc<AtomicBool>,
    /// The keeper, taken at shutdown to release the lease.
    pub(crate) keeper: tokio::sync::Mutex<Option<LeaseKeeper>>,
    /// The pool of ids and how an id maps onto the layout's node fields.
    pub(crate) pool: NodePool,
    /// The registry the keeper leases from, for the console's listing of the other holders.
    pub(crate) registry: Arc<dyn WorkerRegistry>,
    /// What the keeper asks the registry for (namespace, pool, owner).
    pub(crate) request: LeaseRequest,
}

impl LeaseGuard {
    /// Sets the lease gauges: held, worker id, epoch, seconds to the fence.
    pub(crate) fn publish_metrics(&self, metrics: &Metrics) {
        let fence = self.fence_ns.load(Ordering::Acquire);
        let now = self.base.elapsed().as_nanos() as u64;
        let (held, seconds) = match fence {
            FOREVER => (true, f64::INFINITY),
            NOT_HELD => (false, 0.0),
            f => (now < f, f.saturating_sub(now) as f64 / 1e9),
        };
        metrics.lease_held.set(if held { 1.0 } else { 0.0 });
        metrics.lease_seconds_to_fence.set(seconds);
        match &*self.lease.lock() {
            Some(lease) if held => {
                metrics.lease_worker_id.set(f64::from(lease.id));
                metrics.lease_epoch.set(lease.epoch as f64);
            }
            _ => metrics.lease_worker_id.set(-1.0),
        }
    }

    /// Whether IDs may be issued now.
    #[inline]
    pub(crate) fn check(&self) -> Result<(), IssueError> {
        match self.fence_ns.load(Ordering::Acquire) {
            FOREVER => Ok(()),
            NOT_HELD => Err(IssueError::Unavailable(self.why_not())),
            fence if (self.base.elapsed().as_nanos() as u64) < fence => Ok(()),
            _ => Err(IssueError::Unavailable(
                "the worker-id lease could not be renewed in time: this node stopped issuing before another node can be given its id; retry on another node".into(),
            )),
        }
    }

    fn why_not(&self) -> String {
        let status = self.status.lock();
        format!("no worker-id lease held: {status}")
    }

    /// For `/readyz`.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        self.check().map_err(|e| e.message().to_owned())
    }

    /// For `/v1/info`.
    pub(crate) fn info(&self) -> LeaseInfo {
        let lease = self.lease.lock().clone();
        let fence = self.fence_ns.load(Ordering::Acquire);
        let fence_in_ms = match fence {
            NOT_HELD | FOREVER => None,
            f => Some(((f as i128 - self.base.elapsed().as_nanos() as i128) / 1_000_000) as i64),
        };
        LeaseInfo {
            held: self.check().is_ok(),
            worker_id: lease.as_ref().map(|l| l.id),
            epoch: lease.as_ref().map(|l| l.epoch),
            fence_in_ms,
            status: self.status.lock().clone(),
            registry: self.registry.describe(),
        }
    }

    /// Records the generator's persisted mark for the next renewal.
    pub(crate) fn refresh_mark(&self, persisted_ms: u64) {
        self.registry_mark.fetch_max(persisted_ms, Ordering::AcqRel);
    }

    /// Releases the lease with the generator's final mark (call after the generator stopped).
    /// The registry stores it exactly, so it is kept at or above the mark the lease came with.
    pub(crate) async fn release(&self, final_ms: u64) {
        self.fence_ns.store(NOT_HELD, Ordering::Release);
        let inherited = self
            .lease
            .lock()
            .as_ref()
            .and_then(|l| l.previous_high_water_ms)
            .unwrap_or(0);
        self.registry_mark
            .store(final_ms.max(inherited), Ordering::Release);
        self.released.store(true, Ordering::Release);
        if let Some(keeper) = self.keeper.lock().await.take() {
            info!(
                round_trips = keeper.round_trips(),
                "releasing the worker-id lease"
            );
            if let Err(e) = keeper.shutdown().await {
                warn!("worker-id lease not released (it will expire): {e}");
            }
        }
    }

    pub(crate) fn set_status(&self, status: impl Into<String>) {
        *self.status.lock() = status.into();
    }
}
