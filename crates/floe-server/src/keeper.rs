//! The lease keeper: a task that acquires a worker id, renews it every `ttl / 3`, fences it, and
//! publishes where it stands on a `watch` channel.
//!
//! The fence: a renewal (or the acquire) *sent* at instant `s` that succeeds proves the store
//! keeps the id for this node until at least `s + ttl` (the store starts its ttl when it
//! processes the request, after `s`). So the node may issue IDs until
//! `fence_deadline = s + ttl − margin`, on the monotonic clock, and must stop there unless a later
//! renewal succeeded. The store cannot grant the id to another node before `s + ttl`, so two
//! holders never issue at the same time, whatever the network does.
//!
//! The keeper is an application service (it decides when the node may issue), so it lives in the
//! server; the registries it drives are `floe_store`'s adapters behind [`WorkerRegistry`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};

use floe_store::registry::{Lease, LeaseRequest, RegistryError, WorkerRegistry};

use crate::backoff::Backoff;

/// tokio's timer resolution.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// Reads the node's current high-water mark (Unix ms), sent with every renewal and the release.
///
/// It must be at or above the time of every ID the node has issued (the generator's persisted
/// mark is). After a hand-over, the next holder of the id starts after it.
pub type HighWaterFn = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Timing of the keeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeeperConfig {
    /// How long before the store may grant the id to someone else the node stops issuing. It
    /// absorbs scheduling delays and clock-rate differences, and must exceed the generator's
    /// `max_drift` plus one tick, since logical time may run that far ahead of the wall clock.
    pub margin: Duration,
    /// First delay before retrying a failed or exhausted acquire (MASA's
    /// `GetWorkerIdMinInterval`); doubles on each failure, with jitter.
    pub backoff_min: Duration,
    /// Longest delay between retries.
    pub backoff_max: Duration,
}

impl KeeperConfig {
    /// Defaults for a ttl: margin `max(ttl / 10, 100 ms)`, backoff from 250 ms up to the ttl
    /// (clamped to 1..=30 s), since an id held by a dead node frees up within one ttl.
    pub fn for_ttl(ttl: Duration) -> KeeperConfig {
        KeeperConfig {
            margin: (ttl / 10).max(Duration::from_millis(100)),
            backoff_min: Duration::from_millis(250),
            backoff_max: ttl.clamp(Duration::from_secs(1), Duration::from_secs(30)),
        }
    }

    /// Raises the margin to at least `ahead`: how far this node's IDs may run ahead of its wall
    /// clock — the generator's `max_drift` plus one tick of the layout, plus the clock skew
    /// tolerated between nodes. A node that takes over an expired id starts at its own wall
    /// clock, which is then past every tick the old holder could have issued before its fence.
    pub fn with_min_margin(mut self, ahead: Duration) -> KeeperConfig {
        self.margin = self.margin.max(ahead);
        self
    }

    fn validate(&self, ttl: Duration) -> Result<(), RegistryError> {
        if self.margin.is_zero() || self.margin > ttl / 2 {
            return Err(RegistryError::Config(format!(
                "lease margin {:?} must be above zero and at most half the ttl ({:?}), so a renewal every ttl/3 lands before the fence; raise the ttl",
                self.margin, ttl
            )));
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return Err(RegistryError::Config(format!(
                "lease backoff must satisfy 0 < backoff_min ({:?}) <= backoff_max ({:?})",
                self.backoff_min, self.backoff_max
            )));
        }
        Ok(())
    }
}

/// Where the keeper stands. IDs may be issued only in [`LeaseState::Held`], before the fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// No lease yet, or it was lost or fenced; trying to get one. Not ready.
    Acquiring {
        /// Why the last attempt (or the lease) failed, for `/readyz` and logs.
        last_error: Option<String>,
    },
    /// A lease is held.
    Held {
        /// The lease.
        lease: Lease,
        /// Stop issuing at this instant unless a newer state extends it; `None` for registries
        /// whose ids never expire (static, kubernetes).
        fence_deadline: Option<Instant>,
    },
    /// Every id of the pool is leased by live nodes; retrying. Not ready.
    Exhausted {
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// The configuration cannot work (e.g. the static id does not fit the layout); the keeper
    /// gave up. Not ready, and the server should exit.
    Failed(String),
    /// Shut down: the lease was handed back (or left to expire).
    Stopped,
}

impl LeaseState {
    /// The lease, while held.
    pub fn lease(&self) -> Option<&Lease> {
        match self {
            LeaseState::Held { lease, .. } => Some(lease),
            _ => None,
        }
    }

    /// Whether IDs may be issued at `now`: held and before the fence. The generator checks this
    /// itself rather than waiting for the keeper to publish the fence, which may run late.
    pub fn may_issue(&self, now: Instant) -> bool {
        match self {
            LeaseState::Held { fence_deadline, .. } => fence_deadline.is_none_or(|f| now < f),
            _ => false,
        }
    }
}

/// Keeps one lease alive in the background; see the module docs. Dropping it without
/// [`LeaseKeeper::shutdown`] stops the task and leaves the lease to expire.
#[derive(Debug)]
pub struct LeaseKeeper {
    /// The latest state, for readers that only peek.
    state: watch::Receiver<LeaseState>,
    /// Registry calls made, for the "≤ 30 round trips per minute per node" budget.
    round_trips: Arc<AtomicU64>,
    /// Asks the task to release the lease and end.
    stop: Option<oneshot::Sender<()>>,
    /// The task; aborted if the keeper is dropped without [`LeaseKeeper::shutdown`].
    task: Option<JoinHandle<Result<(), RegistryError>>>,
}

impl LeaseKeeper {
    /// Starts keeping a lease for `request` (needs a tokio runtime).
    pub fn start(
        registry: Arc<dyn WorkerRegistry>,
        request: LeaseRequest,
        config: KeeperConfig,
        high_water: HighWaterFn,
    ) -> Result<LeaseKeeper, RegistryError> {
        request.validate()?;
        config.validate(request.ttl)?;
        let (tx, rx) = watch::channel(LeaseState::Acquiring { last_error: None });
        let (stop_tx, stop_rx) = oneshot::channel();
        let round_trips = Arc::new(AtomicU64::new(0));
        let task = Task {
            backoff: Backoff::new(config.backoff_min, config.backoff_max),
            registry,
            request,
            config,
            high_water,
            state: tx,
            round_trips: round_trips.clone(),
            stop: stop_rx,
        };
        Ok(LeaseKeeper {
            state: rx,
            round_trips,
            stop: Some(stop_tx),
            task: Some(tokio::spawn(task.run())),
        })
    }

    /// A receiver of every state change.
    pub fn subscribe(&self) -> watch::Receiver<LeaseState> {
        self.state.clone()
    }

    /// The current state.
    pub fn state(&self) -> LeaseState {
        self.state.borrow().clone()
    }

    /// Registry calls made so far (acquire, renew and release each count one).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Waits until a lease is held; an error if the keeper failed or stopped instead.
    pub async fn wait_held(&self) -> Result<Lease, RegistryError> {
        let mut rx = self.state.clone();
        loop {
            let outcome = match &*rx.borrow_and_update() {
                LeaseState::Held { lease, .. } => Some(Ok(lease.clone())),
                LeaseState::Failed(why) => Some(Err(RegistryError::Config(why.clone()))),
                LeaseState::Stopped => Some(Err(stopped())),
                LeaseState::Acquiring { .. } | LeaseState::Exhausted { .. } => None,
            };
            if let Some(outcome) = outcome {
                return outcome;
            }
            if rx.changed().await.is_err() {
                return Err(stopped());
            }
        }
    }

    /// Stops: publishes [`LeaseState::Stopped`], then releases the lease with the final
    /// high-water mark. Call it after the generator has stopped issuing.
    pub async fn shutdown(mut self) -> Result<(), RegistryError> {
        if let Some(stop) = self.stop.take() {
            // The task may have ended already; then there is nothing to stop.
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| {
                Err(RegistryError::Unavailable {
                    store: "lease keeper".to_string(),
                    what: format!("the keeper task ended abnormally: {e}"),
                    source: None,
                })
            }),
            None => Ok(()),
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn stopped() -> RegistryError {
    RegistryError::Config("the lease keeper has stopped".to_string())
}

/// What the task is doing.
enum Phase {
    /// Getting a lease.
    Acquire,
    /// Holding `lease` until `fence` (`None`: never expires); next renewal at `renew_at`.
    Hold {
        lease: Lease,
        fence: Option<Instant>,
        renew_at: Instant,
    },
    /// The fence passed without a successful renewal: try to renew `lease` (it may still be ours
    /// if nobody took it), else acquire again.
    Recover { lease: Lease },
}

/// The background task's state.
struct Task {
    /// Where leases come from.
    registry: Arc<dyn WorkerRegistry>,
    /// What to ask for.
    request: LeaseRequest,
    /// Margin and backoff.
    config: KeeperConfig,
    /// The node's high-water mark, sent with renewals.
    high_water: HighWaterFn,
    /// Publishes the state.
    state: watch::Sender<LeaseState>,
    /// Counts registry calls.
    round_trips: Arc<AtomicU64>,
    /// Fires on shutdown.
    stop: oneshot::Receiver<()>,
    /// Delays between failed attempts (acquire, or renewals after the fence).
    backoff: Backoff,
}

/// How a wait inside the task ended.
enum Wake<T> {
    /// The awaited thing finished.
    Done(T),
    /// The fence passed first.
    Fenced,
    /// Shutdown was asked for first.
    Stop,
}

/// Waits for `fut`, the fence (if any) or shutdown, whichever comes first.
async fn wait<T>(
    stop: &mut oneshot::Receiver<()>,
    fence: Option<Instant>,
    fut: impl std::future::Future<Output = T>,
) -> Wake<T> {
    let fenced = async {
        match fence {
            // Timers fire up to one tick (1 ms) late; wake early so the state leaves `Held` by
            // the fence, not after it.
            Some(f) => sleep_until(f - TIMER_TICK).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        // Shutdown and the fence win ties with a finished call: both mean "stop issuing".
        biased;
        _ = stop => Wake::Stop,
        _ = fenced => Wake::Fenced,
        v = fut => Wake::Done(v),
    }
}

impl Task {
    async fn run(mut self) -> Result<(), RegistryError> {
        let mut phase = Phase::Acquire;
        loop {
            let next = match phase {
                Phase::Acquire => self.acquire().await,
                Phase::Hold {
                    lease,
                    fence,
                    renew_at,
                } => self.hold(lease, fence, renew_at).await,
                Phase::Recover { lease } => self.recover(lease).await,
            };
            match next {
                Ok(p) => phase = p,
                Err(held) => return self.finish(held).await,
            }
        }
    }

    fn publish(&self, state: LeaseState) {
        self.state.send_replace(state);
    }

    /// Counts one registry call.
    fn count(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a registry call's round trip (`floe_registry_call_seconds{op}`), and for renewals
    /// its outcome (`floe_lease_renewals_total`, `floe_lease_renewal_failures_total`).
    fn record(op: &'static str, sent: Instant, ok: bool) {
        metrics::histogram!("floe_registry_call_seconds", "op" => op)
            .record(sent.elapsed().as_secs_f64());
        if op == "renew" {
            if ok {
                metrics::counter!("floe_lease_renewals_total").increment(1);
            } else {
                metrics::counter!("floe_lease_renewal_failures_total").increment(1);
            }
        }
    }

    /// Fence for a successful call sent at `sent`; `None` for leases that never expire.
    fn fence_after(&self, sent: Instant) -> Option<Instant> {
        self.registry
            .leases_expire()
            .then(|| sent + self.request.ttl - self.config.margin)
    }

    /// Starts holding a lease granted or renewed by a call sent at `sent`.
    fn held(&mut self, lease: Lease, sent: Instant) -> Phase {
        self.backoff.reset();
        let fence = self.fence_after(sent);
        self.publish(LeaseState::Held {
            lease: lease.clone(),
            fence_deadline: fence,
        });
        Phase::Hold {
            lease,
            fence,
            renew_at: sent + self.request.ttl / 3,
        }
    }

    /// Sleeps `delay` unless shut down first (`Err(None)` then: nothing to release).
    async fn pause(&mut self, delay: Duration) -> Result<(), Option<Lease>> {
        match wait(&mut self.stop, None, sleep(delay)).await {
            Wake::Stop => Err(None),
            _ => Ok(()),
        }
    }

    async fn acquire(&mut self) -> Result<Phase, Option<Lease>> {
        let sent = Instant::now();
        self.count();
        let result = match wait(&mut self.stop, None, self.registry.acquire(&self.request)).await {
            Wake::Done(r) => r,
            // A grant racing the shutdown is left to expire.
            _ => return Err(None),
        };
        Self::record("acquire", sent, result.is_ok());
        match result {
            Ok(lease) => {
                tracing::info!(
                    namespace = %self.request.namespace,
                    id = lease.id,
                    epoch = lease.epoch,
                    previous_high_water_ms = ?lease.previous_high_water_ms,
                    "worker id leased"
                );
                Ok(self.held(lease, sent))
            }
            Err(RegistryError::Config(why)) => {
                tracing::error!(%why, "worker-id registry refused the configuration");
                self.publish(LeaseState::Failed(why));
                let _ = (&mut self.stop).await;
                Err(None)
            }
            Err(e @ RegistryError::Exhausted { .. }) => {
                let retry_in = self.backoff.next();
                tracing::warn!(error = %e, ?retry_in, "worker-id pool exhausted");
                self.publish(LeaseState::Exhausted { retry_in });
                self.pause(retry_in).await?;
                Ok(Phase::Acquire)
            }
            Err(e) => {
                let retry_in = self.backoff.next();
                tracing::warn!(error = %e, ?retry_in, "worker-id lease not acquired");
                self.publish(LeaseState::Acquiring {
                    last_error: Some(e.to_string()),
                });
                self.pause(retry_in).await?;
                Ok(Phase::Acquire)
            }
        }
    }

    async fn hold(
        &mut self,
        lease: Lease,
        fence: Option<Instant>,
        renew_at: Instant,
    ) -> Result<Phase, Option<Lease>> {
        if fence.is_none() {
            // Never expires: nothing to renew until shutdown.
            let _ = (&mut self.stop).await;
            return Err(Some(lease));
        }
        match wait(&mut self.stop, fence, sleep_until(renew_at)).await {
            Wake::Stop => return Err(Some(lease)),
            Wake::Fenced => return Ok(self.fenced(lease)),
            Wake::Done(()) => {}
        }
        let sent = Instant::now();
        let high_water = (self.high_water)();
        self.count();
        let renewal = self.registry.renew(&self.request, &lease, high_water);
        let outcome = wait(&mut self.stop, fence, renewal).await;
        if let Wake::Done(r) = &outcome {
            Self::record("renew", sent, r.is_ok());
        }
        match outcome {
            Wake::Stop => Err(Some(lease)),
            Wake::Fenced => Ok(self.fenced(lease)),
            Wake::Done(Ok(())) => Ok(self.held(lease, sent)),
            Wake::Done(Err(e @ RegistryError::Lost { .. })) => {
                tracing::error!(error = %e, "worker-id lease lost; acquiring another");
                self.publish(LeaseState::Acquiring {
                    last_error: Some(e.to_string()),
                });
                Ok(Phase::Acquire)
            }
            Wake::Done(Err(e)) => {
                // Keep the lease until the fence; retry soon, several times before it.
                let retry_in = self.backoff.next().min(self.request.ttl / 6);
                tracing::warn!(error = %e, ?retry_in, "worker-id lease renewal failed; retrying");
                Ok(Phase::Hold {
                    lease,
                    fence,
                    renew_at: Instant::now() + retry_in,
                })
            }
        }
    }

    /// The fence passed: stop issuing at once.
    fn fenced(&mut self, lease: Lease) -> Phase {
        let why = format!(
            "fence reached: no renewal of worker id {} succeeded within ttl {:?} − margin {:?}; IDs are not issued until a lease is held again",
            lease.id, self.request.ttl, self.config.margin
        );
        tracing::error!(%why, "worker-id lease fenced");
        self.publish(LeaseState::Acquiring {
            last_error: Some(why),
        });
        Phase::Recover { lease }
    }

    async fn recover(&mut self, lease: Lease) -> Result<Phase, Option<Lease>> {
        let sent = Instant::now();
        let high_water = (self.high_water)();
        self.count();
        let renewal = self.registry.renew(&self.request, &lease, high_water);
        let result = match wait(&mut self.stop, None, renewal).await {
            Wake::Done(r) => r,
            _ => return Err(Some(lease)),
        };
        Self::record("renew", sent, result.is_ok());
        match result {
            Ok(()) => {
                tracing::info!(id = lease.id, "worker-id lease recovered after the fence");
                Ok(self.held(lease, sent))
            }
            Err(RegistryError::Lost { .. }) => Ok(Phase::Acquire),
            Err(RegistryError::Config(why)) => {
                self.publish(LeaseState::Failed(why));
                let _ = (&mut self.stop).await;
                Err(None)
            }
            Err(e) => {
                let retry_in = self.backoff.next();
                self.publish(LeaseState::Acquiring {
                    last_error: Some(format!(
                        "worker id {} is fenced (no renewal within ttl − margin); renewing it again failed: {e}",
                        lease.id
                    )),
                });
                self.pause(retry_in)
                    .await
                    .map_err(|_| Some(lease.clone()))?;
                Ok(Phase::Recover { lease })
            }
        }
    }

    /// Publishes `Stopped` (so nothing issues any more), then hands the lease back.
    async fn finish(self, lease: Option<Lease>) -> Result<(), RegistryError> {
        self.publish(LeaseState::Stopped);
        let Some(lease) = lease else {
            return Ok(());
        };
        let high_water = (self.high_water)();
        self.count();
        let sent = Instant::now();
        let result = self
            .registry
            .release(&self.request, &lease, high_water)
            .await;
        Self::record("release", sent, result.is_ok());
        match &result {
            Ok(()) => tracing::info!(id = lease.id, high_water, "worker-id lease released"),
            Err(e) => tracing::warn!(error = %e, "worker-id lease not released; it will expire"),
        }
        result
    }
}
