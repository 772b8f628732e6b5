//! An in-process registry for tests: the same lease rules as the real stores, on tokio's clock
//! (so `tokio::time::pause` makes lease tests deterministic), with a switch that simulates an
//! outage.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{bounded, Lease, LeaseRequest, RegistryError, WorkerRegistry, WorkerSlot, MAX_LISTED};

/// How a simulated outage behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Every call fails at once, like a refused connection.
    Refuse,
    /// Every call hangs until the call timeout, like a partitioned network.
    Hang,
}

/// One id's record.
#[derive(Debug, Clone)]
struct Slot {
    /// The holder's owner token, `None` once released.
    owner: Option<String>,
    /// Fencing epoch of the current or last grant.
    epoch: u64,
    /// When the current grant lapses.
    expires: Instant,
    /// Highest high-water mark any holder stored.
    high_water_ms: Option<u64>,
}

/// What the mutex guards.
#[derive(Debug, Default)]
struct State {
    /// Records by `(namespace, id)`; never removed, like the rows of the SQL store.
    slots: HashMap<(String, u32), Slot>,
    /// The simulated outage, if any.
    outage: Option<Outage>,
}

/// An in-process worker-id registry.
#[derive(Debug)]
pub struct MemoryRegistry {
    /// Records and the outage switch; held only for a few map operations, never across an await.
    state: Mutex<State>,
    /// Bound on each call, as for the real stores.
    call_timeout: Duration,
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        MemoryRegistry::new(super::DEFAULT_CALL_TIMEOUT)
    }
}

impl MemoryRegistry {
    /// An empty registry whose calls are bounded by `call_timeout`.
    pub fn new(call_timeout: Duration) -> MemoryRegistry {
        MemoryRegistry {
            state: Mutex::new(State::default()),
            call_timeout,
        }
    }

    /// Starts (`Some`) or ends (`None`) a simulated outage.
    pub fn set_outage(&self, outage: Option<Outage>) {
        self.lock().outage = outage;
    }

    /// The stored high-water mark of an id.
    pub fn high_water(&self, namespace: &str, id: u32) -> Option<u64> {
        self.lock()
            .slots
            .get(&(namespace.to_string(), id))
            .and_then(|s| s.high_water_ms)
    }

    /// The current holder of an id and its epoch, if its lease is live.
    pub fn holder(&self, namespace: &str, id: u32) -> Option<(String, u64)> {
        let now = Instant::now();
        self.lock()
            .slots
            .get(&(namespace.to_string(), id))
            .filter(|s| s.expires > now)
            .and_then(|s| s.owner.clone().map(|o| (o, s.epoch)))
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, State> {
        // No poisoning (parking_lot): a panic while holding the lock cannot leave a slot
        // half-written (each update is one assignment), so the data stays usable.
        self.state.lock()
    }

    /// Applies the outage switch, then `f` under the lock.
    async fn call<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        bounded(self.call_timeout, "memory", async {
            let outage = self.lock().outage;
            match outage {
                Some(Outage::Refuse) => Err(RegistryError::Unavailable {
                    store: "memory".to_string(),
                    what: "simulated outage: connection refused".to_string(),
                    source: None,
                }),
                Some(Outage::Hang) => std::future::pending().await,
                None => f(&mut self.lock()),
            }
        })
        .await
    }

    /// Applies `change` to the slot iff `lease` is still its holder's (see [`WorkerRegistry::renew`]).
    async fn if_held(
        &self,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
        change: impl FnOnce(&mut Slot),
    ) -> Result<(), RegistryError> {
        req.validate()?;
        self.call(|state| {
            let lost = || RegistryError::Lost {
                namespace: req.namespace.clone(),
                id: lease.id,
                epoch: lease.epoch,
            };
            let slot = state
                .slots
                .get_mut(&(req.namespace.clone(), lease.id))
                .ok_or_else(lost)?;
            if slot.owner.as_deref() != Some(lease.owner.as_str()) || slot.epoch != lease.epoch {
                return Err(lost());
            }
            slot.high_water_ms = Some(slot.high_water_ms.unwrap_or(0).max(high_water_ms));
            change(slot);
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl WorkerRegistry for MemoryRegistry {
    async fn acquire(&self, req: &LeaseRequest) -> Result<Lease, RegistryError> {
        req.validate()?;
        self.call(|state| {
            let now = Instant::now();
            for id in 0..req.pool_size {
                let slot = state
                    .slots
                    .entry((req.namespace.clone(), id))
                    .or_insert(Slot {
                        owner: None,
                        epoch: 0,
                        expires: now,
                        high_water_ms: None,
                    });
                if slot.owner.is_none() || slot.expires <= now {
                    slot.owner = Some(req.owner.clone());
                    slot.epoch += 1;
                    slot.expires = now + req.ttl;
                    return Ok(Lease {
                        id,
                        owner: req.owner.clone(),
                        epoch: slot.epoch,
                        previous_high_water_ms: slot.high_water_ms,
                    });
                }
            }
            Err(RegistryError::Exhausted {
                namespace: req.namespace.clone(),
                pool_size: req.pool_size,
            })
        })
        .await
    }

    async fn list(&self, req: &LeaseRequest) -> Result<Vec<WorkerSlot>, RegistryError> {
        req.validate()?;
        self.call(|state| {
            let now = Instant::now();
            let ms = |a: Instant, b: Instant| {
                i64::try_from(a.saturating_duration_since(b).as_millis()).unwrap_or(i64::MAX)
            };
            let mut slots: Vec<WorkerSlot> = state
                .slots
                .iter()
                .filter(|((ns, id), _)| *ns == req.namespace && *id < req.pool_size)
                .map(|((_, id), slot)| WorkerSlot {
                    worker_id: *id,
                    owner: slot.owner.clone(),
                    epoch: slot.epoch,
                    expires_in_ms: slot
                        .owner
                        .as_ref()
                        .map(|_| ms(slot.expires, now) - ms(now, slot.expires)),
                    high_water_ms: slot.high_water_ms,
                    held: slot.owner.is_some() && slot.expires > now,
                })
                .collect();
            slots.sort_by_key(|s| s.worker_id);
            slots.truncate(MAX_LISTED);
            Ok(slots)
        })
        .await
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }

    async fn renew(
        &self,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError> {
        let expires = Instant::now() + req.ttl;
        self.if_held(req, lease, high_water_ms, |slot| slot.expires = expires)
            .await
    }

    async fn release(
        &self,
        req: &LeaseRequest,
        lease: &Lease,
        high_water_ms: u64,
    ) -> Result<(), RegistryError> {
        self.if_held(req, lease, high_water_ms, |slot| {
            slot.owner = None;
            // The holder's exact final mark: renewals may have stored one ahead of time.
            slot.high_water_ms = Some(high_water_ms);
        })
        .await
    }
}
