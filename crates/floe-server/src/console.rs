//! The console's rate history: one sample a second of the node's own Prometheus counters and
//! latency histograms, the last [`CAPACITY`] (15 minutes) kept in memory.
//!
//! Sampled from the rendered `/metrics` page rather than from counters of its own, so the
//! console and a Prometheus scrape can never disagree, and no request path pays for it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use parking_lot::Mutex;

use crate::metrics::REQUEST_SECONDS;

/// Samples kept: 15 minutes at one a second.
pub(crate) const CAPACITY: usize = 900;

/// How often a sample is taken.
pub(crate) const INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// One second of traffic.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct RateSample {
    /// When the sample was taken, Unix ms.
    pub unix_ms: u64,
    /// IDs issued per second, by `mode/protocol` (`snowflake/tcp_v1`, `snowflake/tcp_v2`,
    /// `snowflake/http`, `snowflake/leaf`) and `segment` (every tag and protocol).
    pub ids_per_second: BTreeMap<String, f64>,
    /// Requests per second, by protocol (`tcp_v1`, `tcp_v2`, `http`).
    pub requests_per_second: BTreeMap<String, f64>,
    /// Median request latency in the second, ms (`null` without requests).
    pub p50_ms: Option<f64>,
    /// 99th-percentile request latency in the second, ms (`null` without requests).
    pub p99_ms: Option<f64>,
}

/// The counters as they stood at one sample.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Totals {
    /// `floe_ids_issued_total`, by the keys of [`RateSample::ids_per_second`].
    pub ids: BTreeMap<String, f64>,
    /// `floe_request_duration_seconds_count`, by protocol.
    pub requests: BTreeMap<String, f64>,
}

/// What the sampler remembers between two samples.
#[derive(Debug)]
struct Last {
    /// When it was taken (monotonic), for the rate's divisor.
    at: Instant,
    /// The counters.
    totals: Totals,
    /// Cumulative latency buckets over every series: `(le, count)`, by increasing `le`.
    buckets: Vec<(f64, f64)>,
}

/// The bounded history.
#[derive(Debug, Default)]
pub(crate) struct RateHistory {
    /// The samples, oldest first, at most [`CAPACITY`].
    samples: Mutex<VecDeque<RateSample>>,
    /// The previous reading of the counters.
    last: Mutex<Option<Last>>,
}

impl RateHistory {
    /// Reads a rendered Prometheus page and appends the rates since the previous reading.
    pub(crate) fn sample(&self, page: &str, unix_ms: u64) {
        let (totals, buckets) = read_page(page);
        let now = Instant::now();
        let mut last = self.last.lock();
        if let Some(prev) = last.as_ref() {
            let secs = now.duration_since(prev.at).as_secs_f64().max(1e-3);
            let rate = |cur: &BTreeMap<String, f64>, old: &BTreeMap<String, f64>| {
                cur.iter()
                    .map(|(k, v)| {
                        let before = old.get(k).copied().unwrap_or(0.0);
                        (k.clone(), ((v - before) / secs).max(0.0))
                    })
                    .collect::<BTreeMap<_, _>>()
            };
            let delta: Vec<(f64, f64)> = buckets
                .iter()
                .map(|&(le, n)| {
                    let before = prev
                        .buckets
                        .iter()
                        .find(|(l, _)| *l == le)
                        .map_or(0.0, |(_, c)| *c);
                    (le, (n - before).max(0.0))
                })
                .collect();
            let sample = RateSample {
                unix_ms,
                ids_per_second: rate(&totals.ids, &prev.totals.ids),
                requests_per_second: rate(&totals.requests, &prev.totals.requests),
                p50_ms: quantile(&delta, 0.5).map(|s| s * 1000.0),
                p99_ms: quantile(&delta, 0.99).map(|s| s * 1000.0),
            };
            let mut samples = self.samples.lock();
            if samples.len() == CAPACITY {
                samples.pop_front();
            }
            samples.push_back(sample);
        }
        *last = Some(Last {
            at: now,
            totals,
            buckets,
        });
    }

    /// The samples taken after `since_ms` (all with 0), oldest first, and the latest totals.
    pub(crate) fn since(&self, since_ms: u64) -> (Vec<RateSample>, Totals) {
        let samples = self
            .samples
            .lock()
            .iter()
            .filter(|s| s.unix_ms > since_ms)
            .cloned()
            .collect();
        let totals = self
            .last
            .lock()
            .as_ref()
            .map(|l| l.totals.clone())
            .unwrap_or_default();
        (samples, totals)
    }
}

/// One series line of a scrape page: name, labels (name, value) and value.
type Series<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

/// A series line: name, labels, value.
fn series(line: &str) -> Option<Series<'_>> {
    if line.starts_with('#') {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value = match value.trim() {
        "+Inf" => f64::INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match head.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (head, ""),
    };
    // Label values here are route patterns, protocols, tags and numbers: a tag may hold a
    // comma or quote, so split on `",` (the exporter escapes quotes inside values).
    let labels = labels
        .split("\",")
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.split_once("=\"")?;
            Some((k, v.trim_end_matches('"')))
        })
        .collect();
    Some((name, labels, value))
}

/// The counters and the summed latency buckets of a page.
fn read_page(page: &str) -> (Totals, Vec<(f64, f64)>) {
    let mut totals = Totals::default();
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    let bucket_name = format!("{REQUEST_SECONDS}_bucket");
    let count_name = format!("{REQUEST_SECONDS}_count");
    for line in page.lines() {
        let Some((name, labels, value)) = series(line) else {
            continue;
        };
        let label = |k: &str| labels.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        if name == "floe_ids_issued_total" {
            let key = match (label("mode"), label("protocol")) {
                (Some("segment"), _) => "segment".to_owned(),
                (Some(mode), Some(protocol)) => format!("{mode}/{protocol}"),
                (Some(mode), None) => mode.to_owned(),
                _ => continue,
            };
            *totals.ids.entry(key).or_default() += value;
        } else if name == count_name {
            if let Some(protocol) = label("protocol") {
                *totals.requests.entry(protocol.to_owned()).or_default() += value;
            }
        } else if name == bucket_name {
            let Some(le) = label("le").and_then(|l| match l {
                "+Inf" => Some(f64::INFINITY),
                l => l.parse::<f64>().ok(),
            }) else {
                continue;
            };
            buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += value;
        }
    }
    let mut buckets: Vec<(f64, f64)> = buckets.into_values().collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    (totals, buckets)
}

/// `histogram_quantile` over cumulative buckets: linear within the bucket the rank falls in;
/// in the `+Inf` bucket, the largest finite bound.
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let within = count - lower.1;
            let share = if within > 0.0 {
                (rank - lower.1) / within
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * share);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP floe_ids_issued_total IDs issued
# TYPE floe_ids_issued_total counter
floe_ids_issued_total{mode="snowflake",protocol="http"} 10
floe_ids_issued_total{mode="segment",tag="a"} 3
floe_ids_issued_total{mode="segment",tag="b,\"c"} 4
floe_request_duration_seconds_bucket{protocol="http",route="/v1/snowflake",le="0.001"} 90
floe_request_duration_seconds_bucket{protocol="http",route="/v1/snowflake",le="0.01"} 100
floe_request_duration_seconds_bucket{protocol="http",route="/v1/snowflake",le="+Inf"} 100
floe_request_duration_seconds_count{protocol="http",route="/v1/snowflake"} 100
floe_request_duration_seconds_bucket{protocol="tcp_v2",route="snowflake",le="0.001"} 0
floe_request_duration_seconds_bucket{protocol="tcp_v2",route="snowflake",le="0.01"} 0
floe_request_duration_seconds_bucket{protocol="tcp_v2",route="snowflake",le="+Inf"} 0
floe_request_duration_seconds_count{protocol="tcp_v2",route="snowflake"} 0
"#;

    #[test]
    fn page_totals_and_buckets() {
        let (totals, buckets) = read_page(PAGE);
        assert_eq!(totals.ids["snowflake/http"], 10.0);
        assert_eq!(totals.ids["segment"], 7.0);
        assert_eq!(totals.requests["http"], 100.0);
        assert_eq!(totals.requests["tcp_v2"], 0.0);
        assert_eq!(
            buckets,
            [(0.001, 90.0), (0.01, 100.0), (f64::INFINITY, 100.0)]
        );
    }

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        let b = [(0.001, 90.0), (0.01, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(&b, 0.5), Some(0.001 * 50.0 / 90.0));
        let p99 = quantile(&b, 0.99).unwrap();
        assert!((p99 - (0.001 + 0.009 * 0.9)).abs() < 1e-12, "{p99}");
        assert_eq!(quantile(&[(0.001, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
        assert_eq!(
            quantile(&[(0.001, 0.0), (f64::INFINITY, 5.0)], 0.5),
            Some(0.001)
        );
    }

    #[test]
    fn history_is_bounded_and_rates_are_deltas() {
        let h = RateHistory::default();
        h.sample(PAGE, 1);
        assert!(h.since(0).0.is_empty(), "the first reading has no rate yet");
        let more = PAGE.replace("protocol=\"http\"} 10", "protocol=\"http\"} 30");
        for t in 2..(CAPACITY as u64 + 10) {
            h.sample(if t % 2 == 0 { &more } else { PAGE }, t);
        }
        let (samples, totals) = h.since(0);
        assert_eq!(samples.len(), CAPACITY);
        assert_eq!(samples[0].unix_ms, 10);
        assert_eq!(h.since(CAPACITY as u64 + 7).0.len(), 2);
        assert!(samples
            .iter()
            .any(|s| s.ids_per_second["snowflake/http"] > 0.0));
        assert!(
            samples.iter().all(|s| s.p50_ms.is_none()),
            "no new requests"
        );
        assert_eq!(totals.ids["segment"], 7.0);
    }
}
