//! The state every listener shares: the generator, the configuration, metrics, log control, and
//! the one function that issues snowflake IDs for a request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use arc_swap::ArcSwap;
use floe_core::{Clock, GenError, Generator, Reservation};
use floe_store::FileHighWater;
use tokio::time::Instant;

use crate::config::Config;
use crate::console::RateHistory;
use crate::fence::LeaseGuard;
use crate::issue::{IssueError, MAX_WAIT};
use crate::logging::LogControl;
use crate::metrics::{Metrics, YEAR_SECS};
use crate::numbers::{NumberError, NumberService};
use crate::segment::{SegmentError, SegmentService};

/// One running node.
#[derive(Debug)]
pub(crate) struct Node {
    /// The validated configuration.
    pub(crate) config: Config,
    /// The snowflake generator; the clock is dynamic so offset and machine clocks share a type.
    /// Swapped (rarely) when a new worker-id lease arrives; loading it is a few nanoseconds.
    pub(crate) generator: ArcSwap<Generator<Arc<dyn Clock>>>,
    /// The data directory's high-water mark, shared by successive generators.
    pub(crate) high_water: Arc<FileHighWater>,
    /// The worker-id lease, when a registry hands out the identity; `None` for a static one.
    pub(crate) lease: Option<Arc<LeaseGuard>>,
    /// Segment mode; `None` when `segment.enabled = false`.
    pub(crate) segments: Option<Arc<SegmentService>>,
    /// Number sequences, on segment mode's store; `None` without segment mode.
    pub(crate) numbers: Option<Arc<NumberService>>,
    /// Metric handles.
    pub(crate) metrics: &'static Metrics,
    /// Runtime log level.
    pub(crate) log: &'static LogControl,
    /// Set when graceful shutdown starts, so `/readyz` turns 503 while requests drain.
    pub(crate) shutting_down: AtomicBool,
    /// Cancelled when the node cannot go on (the lease keeper gave up); `serve` then shuts
    /// down gracefully and returns the reason in `fatal_reason`.
    pub(crate) fatal: tokio_util::sync::CancellationToken,
    /// Why `fatal` was cancelled.
    pub(crate) fatal_reason: Mutex<Option<String>>,
    /// The last failure of the background high-water refresh, reported by `/readyz`.
    pub(crate) maintenance_error: Mutex<Option<String>>,
    /// Random per-process id in `/v1/info`, so a peer check can tell a node from itself.
    pub(crate) instance: String,
    /// Bound binary TCP address, reported by `/v1/info`.
    pub(crate) tcp_addr: SocketAddr,
    /// Bound HTTP address, reported by `/v1/info`.
    pub(crate) http_addr: SocketAddr,
    /// When the node started, for the uptime in `/v1/info`.
    pub(crate) started: std::time::Instant,
    /// The console's 15-minute rate history, sampled every second while serving.
    pub(crate) rates: RateHistory,
}

impl Node {
    /// The segment service, or [`SegmentError::NotConfigured`] on a node without segment mode:
    /// every segment route asks here, so each maps "not configured" with the rest.
    pub(crate) fn segments(&self) -> Result<&Arc<SegmentService>, SegmentError> {
        self.segments.as_ref().ok_or(SegmentError::NotConfigured)
    }

    /// The number service, or [`NumberError::NotConfigured`] on a node without segment mode.
    pub(crate) fn numbers(&self) -> Result<&Arc<NumberService>, NumberError> {
        self.numbers.as_ref().ok_or(NumberError::NotConfigured)
    }

    /// The node's wall clock (the generator's, so `clock_offset_ms` and `machine_clock` apply):
    /// what decides a number's period.
    pub(crate) fn now_ms(&self) -> u64 {
        self.generator.load().clock().now_ms()
    }

    /// Stops the node for good: graceful shutdown, then `serve` returns `reason`.
    pub(crate) fn fail(&self, reason: String) {
        *self.fatal_reason.lock() = Some(reason);
        self.fatal.cancel();
    }

    /// Issues `count` snowflake IDs on `lane` into `out` (cleared first): all of them or an error.
    ///
    /// Batches above the generator's `max_batch` are reserved in chunks from the same lane, so
    /// they stay increasing; if any chunk fails the whole request fails, and the IDs already
    /// reserved are dropped, never reported as a whole batch.
    pub(crate) async fn issue(
        &self,
        lane: usize,
        count: u64,
        out: &mut Vec<u64>,
    ) -> Result<(), IssueError> {
        out.clear();
        let generator = self.generator.load();
        let max = generator.max_batch().max(1);
        let mut deadline = None;
        let mut left = count;
        while left > 0 {
            let n = left.min(max);
            let r = self.reserve(&generator, lane, n, &mut deadline).await?;
            r.extend_into(out);
            left -= n;
        }
        Ok(())
    }

    /// One reservation, sleeping (asynchronously, holding nothing) while the generator says wait.
    async fn reserve(
        &self,
        generator: &Generator<Arc<dyn Clock>>,
        lane: usize,
        n: u64,
        deadline: &mut Option<Instant>,
    ) -> Result<Reservation, IssueError> {
        loop {
            // Checked before every reservation: past the fence another node may own the id.
            if let Some(lease) = &self.lease {
                lease.check()?;
            }
            match generator.try_reserve(lane, n) {
                Ok(r) => {
                    // And after: a thread paused between the check and the reservation may
                    // have crossed the fence; its IDs are dropped, never handed out.
                    if let Some(lease) = &self.lease {
                        lease.check()?;
                    }
                    return Ok(r);
                }
                Err(GenError::WouldWait { wait }) => {
                    let until = *deadline.get_or_insert_with(|| Instant::now() + MAX_WAIT);
                    let wake = Instant::now() + wait;
                    if wake > until {
                        return Err(IssueError::Unavailable(format!(
                            "sequence exhausted: this request would wait more than {}s for the clock; retry later, on another connection, or ask for fewer IDs",
                            MAX_WAIT.as_secs()
                        )));
                    }
                    tokio::time::sleep_until(wake).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `Ok` when IDs can be issued now, else why not (for `/readyz` and `/v1/info`).
    pub(crate) fn readiness(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err("shutting down".into());
        }
        if let Some(lease) = &self.lease {
            lease.readiness()?;
        }
        let generator = self.generator.load();
        let state = generator.clock_state();
        let layout = generator.layout();
        if state.wall_ms < layout.time_spec().epoch_ms {
            return Err(format!(
                "the clock reads {}, before the layout epoch {}",
                floe_core::rfc3339(state.wall_ms),
                floe_core::rfc3339(layout.time_spec().epoch_ms)
            ));
        }
        if layout.end_ms() <= state.wall_ms {
            return Err(format!(
                "the layout's time field ran out on {}",
                floe_core::rfc3339(layout.end_ms())
            ));
        }
        if state.rollback_exceeded {
            return Err(format!(
                "the clock is {} ms behind the time this node already issued IDs for, more than snowflake.max_rollback ({} ms); IDs resume when it catches up",
                state.behind_ms,
                self.config.snowflake.max_rollback.as_millis()
            ));
        }
        if let Some(e) = self.maintenance_error.lock().as_ref() {
            return Err(e.clone());
        }
        Ok(())
    }

    /// Seconds until the layout runs out, and a warning when that is under a year.
    pub(crate) fn layout_time_left(&self) -> (u64, Option<String>) {
        let generator = self.generator.load();
        let end = generator.layout().end_ms();
        let left = end.saturating_sub(generator.clock().now_ms()) / 1000;
        let warning = (left < YEAR_SECS).then(|| {
            format!(
                "the layout's time field runs out on {} ({} days left); move the epoch before then",
                floe_core::rfc3339(end),
                left / 86_400
            )
        });
        (left, warning)
    }

    /// Refreshes the high-water mark ahead of need, publishes clock metrics and drains latency
    /// samples into their buckets; runs every
    /// [`crate::server::MAINTENANCE_PERIOD`] on a blocking thread, since it may fsync.
    pub(crate) fn maintain(&self) {
        let generator = self.generator.load();
        let result = generator.prepare();
        let mut err = self.maintenance_error.lock();
        match result {
            Ok(()) => *err = None,
            Err(GenError::Closed) => {}
            Err(e) => {
                self.metrics.high_water_errors.increment(1);
                if err.is_none() {
                    tracing::error!("cannot extend the high-water mark: {e}");
                }
                *err = Some(format!("cannot extend the high-water mark: {e}"));
            }
        }
        drop(err);
        let clock = generator.clock_state();
        if let Some(lease) = &self.lease {
            if !self.shutting_down.load(Ordering::Acquire) {
                lease.refresh_mark(clock.high_water_ms);
            }
            lease.publish_metrics(self.metrics);
        }
        self.metrics.clock(&clock, generator.layout().end_ms());
        self.metrics
            .ready
            .set(if self.readiness().is_ok() { 1.0 } else { 0.0 });
        let states = self
            .segments
            .as_ref()
            .map(|s| s.states())
            .unwrap_or_default();
        for tag in states {
            let name = tag.tag;
            metrics::gauge!("floe_segment_remaining", "tag" => name.clone())
                .set(tag.remaining as f64);
            metrics::gauge!("floe_segment_step", "tag" => name.clone()).set(tag.step as f64);
            metrics::gauge!("floe_segment_next_ready", "tag" => name).set(if tag.next_ready {
                1.0
            } else {
                0.0
            });
        }
        for (name, left) in self
            .numbers
            .as_ref()
            .map(|n| n.buffered())
            .unwrap_or_default()
        {
            metrics::gauge!("floe_numbers_buffered", "name" => name).set(left as f64);
        }
        // Latency samples queue in memory until drained into buckets; at a million requests a
        // second, draining only every few seconds would hold tens of MB.
        self.metrics.prometheus.run_upkeep();
    }
}
