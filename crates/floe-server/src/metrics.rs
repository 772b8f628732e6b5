//! Prometheus metrics through the `metrics` facade, rendered on the HTTP `/metrics` route.
//!
//! The recorder is process-global, so it is installed once (tests start many servers in one
//! process and share it). Handles for the hot paths are registered once and cloned, so a request
//! costs a few atomic adds, never a registry lookup; counters move once per request, not per ID.

use std::sync::OnceLock;
use std::time::Duration;

use floe_core::ClockState;
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: from a cache-hot single ID to a request that waited out a tick.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Name of the request latency histogram.
pub(crate) const REQUEST_SECONDS: &str = "floe_request_duration_seconds";

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
    /// Logical time ahead of the wall clock (borrowed ticks), ms.
    pub(crate) clock_drift_ms: Gauge,
    /// Wall clock behind the highest time seen (a rollback), ms.
    pub(crate) clock_behind_ms: Gauge,
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
            clock_drift_ms: gauge!("floe_clock_drift_ms"),
            clock_behind_ms: gauge!("floe_clock_behind_ms"),
            clock_rollback_exceeded: gauge!("floe_clock_rollback_exceeded"),
            layout_seconds_left: gauge!("floe_layout_seconds_left"),
            layout_expiring: gauge!("floe_layout_expiring"),
            ready: gauge!("floe_ready"),
            high_water_errors: counter!("floe_high_water_errors_total"),
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
        self.clock_drift_ms
            .set(state.logical_ms.saturating_sub(state.wall_ms) as f64);
        self.clock_behind_ms.set(state.behind_ms as f64);
        self.clock_rollback_exceeded
            .set(if state.rollback_exceeded { 1.0 } else { 0.0 });
        let left = layout_end_ms.saturating_sub(state.wall_ms) / 1000;
        self.layout_seconds_left.set(left as f64);
        self.layout_expiring
            .set(if left < YEAR_SECS { 1.0 } else { 0.0 });
    }
}
