//! Worker-id leases in the server: starting the keeper, and the task that follows it and swaps
//! in a generator for each new lease (the fence every request checks is in [`crate::fence`]).
//!
//! The keeper ([`crate::keeper`]) acquires and renews the lease and publishes its state; this module
//! turns that into an atomic fence read by the issuing path, so a node stops issuing at
//! `last successful renewal + ttl − margin` even if the keeper task itself runs late.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use floe_core::{Clock, Floored, GenError, Generator, Identity, SystemClock};
use floe_store::registry::{Lease, LeaseRequest, NodePool, RegistryError};
use floe_store::FileHighWater;
use tokio::sync::watch;
use tracing::{error, info};

use crate::config::{Config, RegistrySettings};
use crate::fence::{LeaseGuard, FOREVER, NOT_HELD};
use crate::keeper::{KeeperConfig, LeaseKeeper, LeaseState};
use crate::metrics::Metered;
use crate::node::Node;

/// Clock skew tolerated between nodes, added to the fence margin.
const SKEW: Duration = Duration::from_millis(500);

/// Starts the keeper for `settings`; issuing stays fenced until the first lease arrives.
pub(crate) fn start(
    config: &Config,
    settings: &RegistrySettings,
) -> Result<(Arc<LeaseGuard>, watch::Receiver<LeaseState>), RegistryError> {
    let sf = &config.snowflake;
    let names: Vec<&str> = settings.fields.iter().map(String::as_str).collect();
    let pool = NodePool::new(&sf.layout, &names)?;
    let registry = settings.registry.open(|k| std::env::var(k).ok())?;
    let request = LeaseRequest::new(settings.namespace.clone(), pool.size(), settings.ttl);
    // A fixed id that cannot fit is a configuration mistake: exit 64 now, not after listening.
    registry.precheck(&request)?;
    // Logical time may run max_drift plus a tick ahead of the wall clock; the fence must leave
    // at least that, plus clock skew, before the id can be granted to another node.
    let tick = Duration::from_millis(sf.layout.time_spec().unit_ms);
    let keeper_config =
        KeeperConfig::for_ttl(settings.ttl).with_min_margin(sf.max_drift + tick + SKEW);
    let registry_mark = Arc::new(AtomicU64::new(0));
    let released = Arc::new(AtomicBool::new(false));
    let (mark, done) = (registry_mark.clone(), released.clone());
    let ahead_ms = (settings.ttl + sf.max_drift).as_millis() as u64;
    // Computed when each renewal is sent: at least every tick this node may issue before its
    // fence (now + ttl + drift), so a node that takes the id over after an outage starts past
    // them even if this node's last ticks were never reported. After release: the exact mark.
    let high_water = move || {
        let persisted = mark.load(Ordering::Acquire);
        if done.load(Ordering::Acquire) {
            persisted
        } else {
            persisted.max(SystemClock.now_ms() + ahead_ms)
        }
    };
    let keeper = LeaseKeeper::start(
        registry.clone(),
        request.clone(),
        keeper_config,
        Arc::new(high_water),
    )?;
    let states = keeper.subscribe();
    let guard = Arc::new(LeaseGuard {
        base: Instant::now(),
        fence_ns: AtomicU64::new(NOT_HELD),
        status: Mutex::new("acquiring a worker id".into()),
        lease: Mutex::new(None),
        registry_mark,
        released,
        keeper: tokio::sync::Mutex::new(Some(keeper)),
        pool,
        registry,
        request,
    });
    Ok((guard, states))
}

/// Builds the generator for `identity`, starting after the node's own mark and `floor_ms`.
pub(crate) fn build_generator(
    config: &Config,
    identity: Identity,
    high_water: &Arc<FileHighWater>,
    floor_ms: u64,
) -> Result<Generator<Arc<dyn Clock>>, GenError> {
    let sf = &config.snowflake;
    let generator = Generator::new(
        sf.layout.clone(),
        identity,
        sf.generator_config(fastrand::u64(..)),
        sf.clock(),
        Box::new(Floored::new(Metered::new(high_water.clone()), floor_ms)),
    )?;
    // The first mark is written before any request, not by the first request.
    generator.prepare()?;
    Ok(generator)
}

/// The configured identity with the leased id written into the pooled fields.
fn identity_for(config: &Config, pool: &NodePool, id: u32) -> Result<Identity, String> {
    let layout = &config.snowflake.layout;
    let mut pairs: Vec<(String, u64)> = layout
        .node_fields()
        .zip(config.snowflake.identity.values())
        .map(|(f, v)| (f.name.clone(), *v))
        .collect();
    for (name, value) in pool.values(id) {
        if let Some(p) = pairs.iter_mut().find(|(n, _)| *n == name) {
            p.1 = value;
        }
    }
    layout.identity(&pairs).map_err(|e| e.to_string())
}

/// Follows the keeper: fences issuing whenever no lease is held, and swaps in a generator for
/// each new lease (a new id, or the same id granted again), which starts after the previous
/// holder's mark. Ends when the keeper stops.
pub(crate) async fn follow(node: Arc<Node>, mut states: watch::Receiver<LeaseState>) {
    let Some(guard) = node.lease.clone() else {
        return;
    };
    let mut current: Option<(u32, u64)> = None;
    loop {
        let state = states.borrow_and_update().clone();
        // Shutdown owns the generator from here on: no more swaps.
        if node.shutting_down.load(Ordering::Acquire) {
            return;
        }
        match state {
            LeaseState::Held {
                lease,
                fence_deadline,
            } => {
                if current != Some((lease.id, lease.epoch)) {
                    guard.fence_ns.store(NOT_HELD, Ordering::Release);
                    guard.set_status(format!("starting a generator for worker id {}", lease.id));
                    match swap_generator(&node, &guard, &lease).await {
                        Ok(()) => {
                            current = Some((lease.id, lease.epoch));
                            info!(
                                worker_id = lease.id,
                                epoch = lease.epoch,
                                "worker-id lease held"
                            );
                        }
                        Err(e) => {
                            error!(
                                worker_id = lease.id,
                                "cannot start the generator for the lease: {e}"
                            );
                            guard.set_status(format!("generator for worker id {}: {e}", lease.id));
                            if states.changed().await.is_err() {
                                return;
                            }
                            continue;
                        }
                    }
                }
                *guard.lease.lock() = Some(lease);
                let fence = fence_deadline.map_or(FOREVER, |d| {
                    let at = d.into_std().saturating_duration_since(guard.base);
                    (at.as_nanos() as u64).max(1)
                });
                guard.fence_ns.store(fence, Ordering::Release);
                guard.set_status("held");
            }
            other => {
                guard.fence_ns.store(NOT_HELD, Ordering::Release);
                let status = match &other {
                    LeaseState::Acquiring { last_error: Some(e) } => format!("acquiring a worker id: {e}"),
                    LeaseState::Acquiring { last_error: None } => "acquiring a worker id".into(),
                    LeaseState::Exhausted { retry_in } => format!(
                        "every worker id of the pool is held by a live node; retrying in {retry_in:?}"
                    ),
                    LeaseState::Failed(why) => {
                        let reason = format!("the lease keeper gave up: {why}");
                        error!("{reason}");
                        node.fail(reason.clone());
                        reason
                    }
                    LeaseState::Stopped => "stopped".into(),
                    LeaseState::Held { .. } => unreachable!("handled above"),
                };
                guard.set_status(status);
            }
        }
        if states.changed().await.is_err() {
            return;
        }
    }
}

/// Stops the old generator (its mark drops to its last ID), then starts one for the lease.
/// Sequential on purpose: both share the data directory's mark, which must never be lowered
/// under a generator that is issuing.
async fn swap_generator(node: &Arc<Node>, guard: &LeaseGuard, lease: &Lease) -> Result<(), String> {
    let identity = identity_for(&node.config, &guard.pool, lease.id)?;
    let floor = lease.previous_high_water_ms.unwrap_or(0);
    let n = node.clone();
    tokio::task::spawn_blocking(move || {
        n.generator.load().shutdown().map_err(|e| e.to_string())?;
        let fresh = build_generator(&n.config, identity, &n.high_water, floor)
            .map_err(|e| e.to_string())?;
        n.generator.store(Arc::new(fresh));
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())?
}
