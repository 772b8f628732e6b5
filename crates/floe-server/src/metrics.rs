//! Prometheus metrics through the `metrics` facade, rendered on the HTTP `/metrics` route.
//!
//! The recorder is process-global, so it is installed once (tests start many servers in one
//! process and share it). Handles for the hot paths are registered once and cloned, so a request
//! costs a few atomic adds, never a registry lookup; counters move once per request, not per ID.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use floe_core::{ClockState, HighWater, HighWaterError};
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: from a cache-hot single ID to a request that waited out a tick.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Name of the request latency histogram.
pub(crate) const REQUEST_SECONDS: &str = "floe_request_duration_seconds";

/// What a metric is, for its `# TYPE` and `# HELP` lines.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram(Unit),
}

/// Every metric Floe exports, with its help text: one table, so none goes without `# HELP` (a
/// test checks the scrape page against it and `promtool check metrics`).
const CATALOGUE: &[(&str, Kind, &str)] = &[
    ("floe_ids_issued_total", Kind::Counter, "IDs issued, by mode (snowflake, segment) and protocol or tag"),
    (REQUEST_SECONDS, Kind::Histogram(Unit::Seconds), "Request latency inside the server, by protocol and route"),
    ("floe_request_errors_total", Kind::Counter, "Requests answered with an error, by protocol and status"),
    ("floe_http_responses_total", Kind::Counter, "HTTP responses, by route pattern and status code"),
    ("floe_lane_connections_total", Kind::Counter, "Binary TCP connections bound to each generator lane"),
    ("floe_tcp_connections_open", Kind::Gauge, "Open binary TCP connections"),
    ("floe_tcp_connections_rejected_total", Kind::Counter, "Binary TCP connections closed at once because server.max_connections was reached"),
    ("floe_tcp_connections_timed_out_total", Kind::Counter, "Binary TCP connections closed for an idle, frame or write timeout"),
    ("floe_http_connections_open", Kind::Gauge, "Open HTTP connections"),
    ("floe_http_connections_rejected_total", Kind::Counter, "HTTP connections closed at once because server.http_max_connections was reached"),
    ("floe_http_connections_timed_out_total", Kind::Counter, "HTTP connections closed for a header or idle timeout"),
    ("floe_accept_failures_total", Kind::Counter, "Failed accept calls, by listener (EMFILE when out of file descriptors)"),
    ("floe_clock_drift_seconds", Kind::Gauge, "Logical time ahead of the wall clock (borrowed ticks), in seconds"),
    ("floe_clock_behind_seconds", Kind::Gauge, "Wall clock behind the highest time seen (a rollback), in seconds"),
    ("floe_clock_rollback_exceeded", Kind::Gauge, "1 while a clock rollback exceeds snowflake.max_rollback and IDs are refused"),
    ("floe_layout_seconds_left", Kind::Gauge, "Seconds until the layout's time field runs out"),
    ("floe_layout_expiring", Kind::Gauge, "1 while the layout has less than a year left"),
    ("floe_ready", Kind::Gauge, "1 while /readyz answers 200"),
    ("floe_high_water_errors_total", Kind::Counter, "Failed extensions of the high-water mark by the background maintenance"),
    ("floe_high_water_writes_total", Kind::Counter, "Durable writes of the high-water mark, by outcome (ok, error)"),
    ("floe_high_water_write_seconds", Kind::Histogram(Unit::Seconds), "Latency of one durable high-water write (fsync included)"),
    ("floe_lease_held", Kind::Gauge, "1 while this node holds its worker-id lease and may issue IDs (registry mode)"),
    ("floe_lease_worker_id", Kind::Gauge, "The leased worker id (registry mode; -1 while none is held)"),
    ("floe_lease_epoch", Kind::Gauge, "The fencing epoch of the lease in force (registry mode)"),
    ("floe_lease_seconds_to_fence", Kind::Gauge, "Seconds until the node stops issuing unless a renewal succeeds (0 when fenced, +Inf for leases that never expire)"),
    ("floe_lease_renewals_total", Kind::Counter, "Successful lease renewals"),
    ("floe_lease_renewal_failures_total", Kind::Counter, "Failed lease renewals (retried until the fence)"),
    ("floe_registry_call_seconds", Kind::Histogram(Unit::Seconds), "Round-trip latency of worker-id registry calls, by operation (acquire, renew, release)"),
    ("floe_segment_remaining", Kind::Gauge, "IDs of a tag buffered on this node (current and next segment)"),
    ("floe_segment_step", Kind::Gauge, "The step of a tag's next claim (adaptive)"),
    ("floe_segment_next_ready", Kind::Gauge, "1 while a tag's next segment is already claimed"),
    ("floe_segment_refills_total", Kind::Counter, "Segments claimed from the store, by tag"),
    ("floe_segment_refill_errors_total", Kind::Counter, "Failed segment claims, by tag (retried with backoff)"),
    ("floe_segment_refused_total", Kind::Counter, "Claimed ranges refused by the buffer because they were not above every range served (a store that went backwards)"),
    ("floe_segment_refill_seconds", Kind::Histogram(Unit::Seconds), "Latency of one segment claim, by tag"),
    ("floe_numbers_issued_total", Kind::Counter, "Business numbers issued, by sequence name (every protocol)"),
    ("floe_numbers_buffered", Kind::Gauge, "Values of a sequence's current period buffered on this node"),
];

/// Registers the help text of every metric with the recorder.
fn describe_all() {
    for &(name, kind, help) in CATALOGUE {
        match kind {
            Kind::Counter => describe_counter!(name, help),
            Kind::Gauge => describe_gauge!(name, help),
            Kind::Histogram(unit) => describe_histogram!(name, unit, help),
        }
    }
}

/// Handles of the metrics the request paths touch.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Renders the scrape page.
    pub(crate) prometheus: PrometheusHandle,
    /// IDs issued over binary TCP v1.
    pub(crate) ids_tcp_v1: Counter,
    /// IDs issued over binary TCP v2.
    pub(crate) ids_tcp_v2: Counter,
    /// IDs issued over native HTTP.
    pub(crate) ids_http: Counter,
    /// IDs issued over Leaf-compatible HTTP.
    pub(crate) ids_leaf: Counter,
    /// Latency of v1 single requests.
    pub(crate) tcp_v1_single: Histogram,
    /// Latency of v1 batch requests.
    pub(crate) tcp_v1_batch: Histogram,
    /// Latency of v2 snowflake requests.
    pub(crate) tcp_v2_snowflake: Histogram,
    /// Latency of v2 segment requests.
    pub(crate) tcp_v2_segment: Histogram,
    /// Latency of v2 pings.
    pub(crate) tcp_v2_ping: Histogram,
    /// Latency of v2 number requests.
    pub(crate) tcp_v2_number: Histogram,
    /// Open binary TCP connections.
    pub(crate) tcp_open: Gauge,
    /// Binary TCP connections closed at once because `max_connections` was reached.
    pub(crate) tcp_rejected: Counter,
    /// Binary TCP connections closed for an idle, frame or write timeout.
    pub(crate) tcp_timeouts: Counter,
    /// Open HTTP connections.
    pub(crate) http_open: Gauge,
    /// HTTP connections closed at once because `http_max_connections` was reached.
    pub(crate) http_rejected: Counter,
    /// HTTP connections closed for a header or idle timeout.
    pub(crate) http_timeouts: Counter,
    /// Failed `accept` calls of the binary TCP listener (EMFILE when out of file descriptors).
    pub(crate) tcp_accept_failures: Counter,
    /// Failed `accept` calls of the HTTP listener.
    pub(crate) http_accept_failures: Counter,
    /// Logical time ahead of the wall clock (borrowed ticks), s.
    pub(crate) clock_drift: Gauge,
    /// Wall clock behind the highest time seen (a rollback), s.
    pub(crate) clock_behind: Gauge,
    /// 1 while the rollback exceeds `max_rollback` and IDs are refused.
    pub(crate) clock_rollback_exceeded: Gauge,
    /// Seconds until the layout's time field runs out.
    pub(crate) layout_seconds_left: Gauge,
    /// 1 while the layout has less than a year left.
    pub(crate) layout_expiring: Gauge,
    /// 1 while `/readyz` answers 200.
    pub(crate) ready: Gauge,
    /// Failed high-water writes from the background `prepare`.
    pub(crate) high_water_errors: Counter,
    /// 1 while the lease is held and the fence not passed.
    pub(crate) lease_held: Gauge,
    /// The leased worker id, -1 while none.
    pub(crate) lease_worker_id: Gauge,
    /// The lease's fencing epoch.
    pub(crate) lease_epoch: Gauge,
    /// Seconds until the fence.
    pub(crate) lease_seconds_to_fence: Gauge,
}

/// Seconds in a year: a layout with less time left than this is reported as expiring.
pub(crate) const YEAR_SECS: u64 = 365 * 86_400;

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process's metrics, installing the Prometheus recorder on first use.
pub(crate) fn global() -> &'static Metrics {
    METRICS.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_SECONDS.into()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let prometheus = match builder.install_recorder() {
            Ok(handle) => handle,
            Err(e) => {
                // An embedding program installed its own recorder first; metrics go there, and
                // /metrics renders an empty page rather than failing the server.
                tracing::warn!("metrics recorder not installed ({e}); /metrics will be empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        };
        describe_all();
        let ids = |protocol: &'static str| {
            counter!("floe_ids_issued_total", "mode" => "snowflake", "protocol" => protocol)
        };
        let tcp = |protocol: &'static str, route: &'static str| {
            histogram!(REQUEST_SECONDS, "protocol" => protocol, "route" => route)
        };
        Metrics {
            prometheus,
            ids_tcp_v1: ids("tcp_v1"),
            ids_tcp_v2: ids("tcp_v2"),
            ids_http: ids("http"),
            ids_leaf: ids("leaf"),
            tcp_v1_single: tcp("tcp_v1", "single"),
            tcp_v1_batch: tcp("tcp_v1", "batch"),
            tcp_v2_snowflake: tcp("tcp_v2", "snowflake"),
            tcp_v2_segment: tcp("tcp_v2", "segment"),
            tcp_v2_ping: tcp("tcp_v2", "ping"),
            tcp_v2_number: tcp("tcp_v2", "number"),
            tcp_open: gauge!("floe_tcp_connections_open"),
            tcp_rejected: counter!("floe_tcp_connections_rejected_total"),
            tcp_timeouts: counter!("floe_tcp_connections_timed_out_total"),
            http_open: gauge!("floe_http_connections_open"),
            http_rejected: counter!("floe_http_connections_rejected_total"),
            http_timeouts: counter!("floe_http_connections_timed_out_total"),
            tcp_accept_failures: counter!("floe_accept_failures_total", "listener" => "tcp"),
            http_accept_failures: counter!("floe_accept_failures_total", "listener" => "http"),
            clock_drift: gauge!("floe_clock_drift_seconds"),
            clock_behind: gauge!("floe_clock_behind_seconds"),
            clock_rollback_exceeded: gauge!("floe_clock_rollback_exceeded"),
            layout_seconds_left: gauge!("floe_layout_seconds_left"),
            layout_expiring: gauge!("floe_layout_expiring"),
            ready: gauge!("floe_ready"),
            high_water_errors: counter!("floe_high_water_errors_total"),
            lease_held: gauge!("floe_lease_held"),
            lease_worker_id: gauge!("floe_lease_worker_id"),
            lease_epoch: gauge!("floe_lease_epoch"),
            lease_seconds_to_fence: gauge!("floe_lease_seconds_to_fence"),
        }
    })
}

impl Metrics {
    /// Counts a connection bound to `lane`, so uneven lane use shows.
    pub(crate) fn lane_assigned(&self, lane: usize) {
        counter!("floe_lane_connections_total", "lane" => lane.to_string()).increment(1);
    }

    /// Records one HTTP request's latency under its route pattern.
    pub(crate) fn http_request(&self, route: String, status: u16, elapsed: Duration) {
        histogram!(REQUEST_SECONDS, "protocol" => "http", "route" => route.clone())
            .record(elapsed.as_secs_f64());
        counter!("floe_http_responses_total", "route" => route, "status" => status.to_string())
            .increment(1);
    }

    /// Counts a failed request by protocol and status, so errors are visible without logs.
    pub(crate) fn request_error(&self, protocol: &'static str, status: &'static str) {
        counter!("floe_request_errors_total", "protocol" => protocol, "status" => status)
            .increment(1);
    }

    /// Publishes where the clock stands and how long the layout lasts.
    pub(crate) fn clock(&self, state: &ClockState, layout_end_ms: u64) {
        self.clock_drift
            .set(state.logical_ms.saturating_sub(state.wall_ms) as f64 / 1000.0);
        self.clock_behind.set(state.behind_ms as f64 / 1000.0);
        self.clock_rollback_exceeded
            .set(if state.rollback_exceeded { 1.0 } else { 0.0 });
        let left = layout_end_ms.saturating_sub(state.wall_ms) / 1000;
        self.layout_seconds_left.set(left as f64);
        self.layout_expiring
            .set(if left < YEAR_SECS { 1.0 } else { 0.0 });
    }
}

/// A high-water mark whose writes are counted and timed (`floe_high_water_writes_total`,
/// `floe_high_water_write_seconds`); the generator sees the mark it wraps, unchanged.
#[derive(Debug)]
pub(crate) struct Metered<H> {
    inner: H,
    ok: Counter,
    failed: Counter,
    seconds: Histogram,
}

impl<H: HighWater> Metered<H> {
    /// Counts and times the writes of `inner`.
    pub(crate) fn new(inner: H) -> Metered<H> {
        Metered {
            inner,
            ok: counter!("floe_high_water_writes_total", "outcome" => "ok"),
            failed: counter!("floe_high_water_writes_total", "outcome" => "error"),
            seconds: histogram!("floe_high_water_write_seconds"),
        }
    }
}

impl<H: HighWater> HighWater for Metered<H> {
    fn load(&self) -> Result<Option<u64>, HighWaterError> {
        self.inner.load()
    }

    fn store(&self, unix_ms: u64) -> Result<(), HighWaterError> {
        let started = Instant::now();
        let result = self.inner.store(unix_ms);
        self.seconds.record(started.elapsed().as_secs_f64());
        match &result {
            Ok(()) => self.ok.increment(1),
            Err(_) => self.failed.increment(1),
        }
        result
    }
}
