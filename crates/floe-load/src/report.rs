//! What a run measured: per-connection tallies, their merge into a [`Report`], the duplicate check, and the
//! report's two renderings (a table and JSON).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use floe_proto::Status;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::{Mode, Plan, Protocol};
use crate::check::{find_duplicates, IdLog, MAX_CHECK_BYTES};
use crate::schedule::Schedule;

/// Error messages kept per connection; the counts are complete, the messages only illustrate them.
const EXAMPLES_PER_CONN: usize = 3;
/// Examples of each finding kept in the report.
const EXAMPLES: usize = 5;
/// Three significant digits: a 40 µs request is recorded as exactly that, a 4 s one within 4 ms.
const SIGFIG: u8 = 3;
/// Above this many connections the histograms keep two significant digits (1 %), because one per connection at
/// three digits would take over half a gigabyte at the 10,000-connection limit.
const SIGFIG_3_MAX_CONNECTIONS: u32 = 1000;

/// Why a connection counted an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ErrorKind {
    /// A v2 error reply, by status.
    Status(u8),
    /// An HTTP reply other than 200, by status code.
    Http(u16),
    /// An ok reply with another number of IDs than asked: a partial batch reported as whole.
    WrongCount,
    /// A reply that could not be decoded: a desynchronised stream or a body that is not the expected JSON.
    Protocol,
    /// The server closed the connection with requests outstanding.
    Closed,
    /// Reading or writing the socket failed.
    Io,
    /// No reply within `--timeout`.
    Timeout,
}

impl ErrorKind {
    /// The name used as the key in the report.
    fn key(self) -> String {
        match self {
            ErrorKind::Status(byte) => {
                let name = match Status::try_from(byte) {
                    Ok(Status::Ok) => "ok",
                    Ok(Status::BadRequest) => "bad_request",
                    Ok(Status::UnknownTag) => "unknown_tag",
                    Ok(Status::Unavailable) => "unavailable",
                    Ok(Status::OverLimit) => "over_limit",
                    Ok(Status::Internal) => "internal",
                    Err(_) => "unknown",
                };
                format!("v2_status_{byte}_{name}")
            }
            ErrorKind::Http(code) => format!("http_{code}"),
            ErrorKind::WrongCount => "wrong_count".to_owned(),
            ErrorKind::Protocol => "protocol".to_owned(),
            ErrorKind::Closed => "closed".to_owned(),
            ErrorKind::Io => "io".to_owned(),
            ErrorKind::Timeout => "timeout".to_owned(),
        }
    }
}

/// Everything one connection observed; owned by its task, so recording takes no lock and no atomic.
#[derive(Debug)]
pub(crate) struct ConnStats {
    /// Replies to requests sent before this are warm-up.
    measure_start: Instant,
    /// IDs each request asks for, to catch partial batches.
    batch: usize,
    /// Latency of measured ok requests in µs; u32 counts halve the memory of thousands of histograms, and one
    /// connection cannot answer 4 billion requests within the 10-minute cap.
    latency: Histogram<u32>,
    /// Measured ok requests.
    requests: u64,
    /// IDs in measured ok replies.
    ids: u64,
    /// Warm-up requests answered (ok or not).
    warmup_requests: u64,
    /// When the last measured reply arrived; the end of this connection's part of the measured window.
    last_reply: Option<Instant>,
    /// Every ID received, for the duplicate and order checks.
    log: IdLog,
    /// Errors by kind.
    errors: BTreeMap<ErrorKind, u64>,
    /// A few error messages.
    error_examples: Vec<String>,
    /// Requests sent and never answered because the connection broke.
    unanswered: u64,
    /// Whether the connection ended on an error rather than by the schedule.
    broken: bool,
}

impl ConnStats {
    /// Empty tallies for one connection of `plan`.
    pub(crate) fn new(plan: &Plan, measure_start: Instant) -> ConnStats {
        // Each connection gets its share, so the memory cap needs no shared counter on the hot path.
        let budget = MAX_CHECK_BYTES / plan.connections as usize;
        ConnStats {
            measure_start,
            batch: plan.batch as usize,
            latency: latency_histogram(plan),
            requests: 0,
            ids: 0,
            warmup_requests: 0,
            last_reply: None,
            log: IdLog::new(plan.check, plan.mode == Mode::Snowflake, budget),
            errors: BTreeMap::new(),
            error_examples: Vec::new(),
            unanswered: 0,
            broken: false,
        }
    }

    /// Records an ok reply carrying `ids` to a request sent at `sent`, complete at `done`.
    pub(crate) fn ok(&mut self, sent: Instant, done: Instant, ids: &[u64]) {
        self.log.record(ids);
        if ids.len() != self.batch {
            let message = format!("asked for {} IDs, got {}", self.batch, ids.len());
            self.failed(sent, done, ErrorKind::WrongCount, &message);
            return;
        }
        if sent < self.measure_start {
            self.warmup_requests += 1;
            return;
        }
        self.requests += 1;
        self.ids += ids.len() as u64;
        let micros = done.saturating_duration_since(sent).as_micros();
        // Clamped to the histogram's range; a reply later than the timeout is not waited for anyway.
        self.latency
            .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX).max(1));
        self.last_reply = Some(done);
    }

    /// Records an error reply to a request sent at `sent`; the connection goes on.
    pub(crate) fn failed(&mut self, sent: Instant, done: Instant, kind: ErrorKind, message: &str) {
        self.error(kind, message);
        if sent < self.measure_start {
            self.warmup_requests += 1;
        } else {
            self.last_reply = Some(done);
        }
    }

    /// Records an error that ends the connection with `unanswered` requests outstanding.
    pub(crate) fn broke(&mut self, kind: ErrorKind, message: &str, unanswered: usize) {
        self.error(kind, message);
        self.unanswered += unanswered as u64;
        self.broken = true;
    }

    fn error(&mut self, kind: ErrorKind, message: &str) {
        *self.errors.entry(kind).or_default() += 1;
        if self.error_examples.len() < EXAMPLES_PER_CONN {
            self.error_examples
                .push(format!("{}: {message}", kind.key()));
        }
    }
}

/// A histogram of µs up to the timeout, since no slower reply is waited for.
fn latency_histogram<T: hdrhistogram::Counter>(plan: &Plan) -> Histogram<T> {
    let high = u64::try_from(plan.timeout.as_micros())
        .unwrap_or(u64::MAX)
        .max(2);
    // The bounds are valid (1 <= 2 <= high, 2 or 3 significant digits), so creation cannot fail.
    Histogram::new_with_bounds(1, high, significant_digits(plan)).unwrap()
}

fn significant_digits(plan: &Plan) -> u8 {
    if plan.connections <= SIGFIG_3_MAX_CONNECTIONS {
        SIGFIG
    } else {
        SIGFIG - 1
    }
}

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StopReason {
    /// The `--requests` budget was sent and answered.
    Requests,
    /// The `--duration` (or the 10-minute cap) ran out.
    Duration,
    /// Every connection broke before the schedule ended.
    Errors,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::Requests => "--requests reached",
            StopReason::Duration => "--duration ran out",
            StopReason::Errors => "every connection broke",
        })
    }
}

/// Per-request latency of measured ok requests, in µs: from the write of the request (closed loop) or from the
/// instant it was due (open loop, `--rate`) to its complete reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    /// Requests the figures are taken from.
    pub samples: u64,
    /// Precision of the figures: 3 (0.1 %) up to 1,000 connections, 2 (1 %) above, to bound memory.
    pub significant_digits: u8,
    /// Fastest.
    pub min: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Slowest.
    pub max: u64,
}

/// Errors over the whole run, warm-up included, since a failing server is a failure whenever it fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Errors {
    /// All errors.
    pub total: u64,
    /// Counts by kind: `v2_status_<n>_<name>`, `http_<code>`, `wrong_count`, `protocol`, `closed`, `io`, `timeout`.
    pub by_kind: BTreeMap<String, u64>,
    /// A few messages, to start debugging from.
    pub examples: Vec<String>,
}

/// The duplicate check over every ID received on every connection, warm-up included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicateCheck {
    /// Whether IDs were checked at all (`--no-check` turns it off).
    pub enabled: bool,
    /// Whether every ID received was checked; false when the memory cap was reached.
    pub complete: bool,
    /// IDs checked.
    pub checked_ids: u64,
    /// IDs equal to another one checked (a value seen three times counts two).
    pub duplicates: u64,
    /// A few duplicated values.
    pub examples: Vec<u64>,
}

/// Whether IDs strictly increased on each connection (snowflake mode only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderCheck {
    /// Whether order was tracked: snowflake mode.
    pub checked: bool,
    /// Whether a violation fails the run: binary TCP, where Floe binds each connection to a lane. Over HTTP a
    /// connection is not bound to a lane, so violations there are only informative.
    pub enforced: bool,
    /// IDs that were not greater than the one before them on their connection.
    pub violations: u64,
    /// A few `[previous, next]` pairs.
    pub examples: Vec<[u64; 2]>,
}

/// What one run measured and found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The target as given.
    pub target: String,
    /// The API driven.
    pub protocol: Protocol,
    /// `snowflake` or `segment`.
    pub mode: String,
    /// The segment tag, if any.
    pub tag: Option<String>,
    /// IDs per request.
    pub batch: u32,
    /// Connections.
    pub connections: u32,
    /// Requests in flight per connection.
    pub pipeline: u32,
    /// Warm-up before measuring, in seconds.
    pub warmup_secs: f64,
    /// Warm-up requests answered; not in any figure below except errors and checks.
    pub warmup_requests: u64,
    /// The measured window: from the end of warm-up to the last measured reply, in seconds.
    pub elapsed_secs: f64,
    /// Why the run ended.
    pub stopped_by: StopReason,
    /// Measured requests answered ok.
    pub requests: u64,
    /// IDs in those replies.
    pub ids: u64,
    /// `requests / elapsed_secs`.
    pub requests_per_sec: f64,
    /// `ids / elapsed_secs`.
    pub ids_per_sec: f64,
    /// Latency of the measured ok requests, in µs.
    pub latency_us: Latency,
    /// Errors by kind.
    pub errors: Errors,
    /// Requests never answered because their connection broke or timed out.
    pub unanswered: u64,
    /// Open loop (`--rate`): requests per second asked for; `None` for the closed loop.
    pub rate: Option<u64>,
    /// Open loop: requests due in the measured window that were never sent, because every connection's
    /// pipeline was full until the end (the server, or this tool, could not keep up); not a failure by itself.
    pub missed: Option<u64>,
    /// The duplicate check.
    pub duplicates: DuplicateCheck,
    /// The per-connection order check.
    pub order: OrderCheck,
    /// No duplicates, no errors, no unanswered requests and no enforced order violations.
    pub passed: bool,
}

impl Report {
    /// Merges the connections' tallies and runs the duplicate check; slow for big runs, so call it off the runtime.
    pub(crate) fn build(plan: &Plan, schedule: &Schedule, conns: Vec<ConnStats>) -> Report {
        let measure_start = schedule.measure_start();
        let mut latency = latency_histogram::<u64>(plan);
        let mut requests = 0;
        let mut ids = 0;
        let mut warmup_requests = 0;
        let mut last_reply: Option<Instant> = None;
        let mut by_kind = BTreeMap::<ErrorKind, u64>::new();
        let mut error_examples = Vec::new();
        let mut unanswered = 0;
        let mut all_broken = !conns.is_empty();
        let mut order = OrderCheck {
            checked: plan.mode == Mode::Snowflake,
            enforced: plan.mode == Mode::Snowflake && plan.protocol != Protocol::Http,
            violations: 0,
            examples: Vec::new(),
        };
        let mut kept = Vec::new();
        for conn in conns {
            for value in conn.latency.iter_recorded() {
                // Same bounds on both sides, so every value fits.
                latency
                    .saturating_record_n(value.value_iterated_to(), value.count_at_value().into());
            }
            requests += conn.requests;
            ids += conn.ids;
            warmup_requests += conn.warmup_requests;
            last_reply = last_reply.max(conn.last_reply);
            for (kind, count) in conn.errors {
                *by_kind.entry(kind).or_default() += count;
            }
            error_examples.extend(conn.error_examples);
            unanswered += conn.unanswered;
            all_broken &= conn.broken;
            let (violations, examples) = conn.log.order();
            order.violations += violations;
            order.examples.extend_from_slice(examples);
            kept.push(conn.log.finish());
        }
        error_examples.truncate(EXAMPLES);
        order.examples.truncate(EXAMPLES);
        let checked_ids = kept.iter().map(|k| k.ids).sum();
        let partial = kept.iter().any(|k| k.partial);
        let (duplicates, examples) = find_duplicates(kept);
        let duplicates = DuplicateCheck {
            enabled: plan.check,
            complete: plan.check && !partial,
            checked_ids,
            duplicates,
            examples,
        };
        let errors = Errors {
            total: by_kind.values().sum(),
            by_kind: by_kind.into_iter().map(|(k, n)| (k.key(), n)).collect(),
            examples: error_examples,
        };
        let elapsed = last_reply.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(measure_start)
        });
        let rate = |n: u64| {
            if elapsed.is_zero() {
                0.0
            } else {
                n as f64 / elapsed.as_secs_f64()
            }
        };
        let stopped_by = if schedule.budget_spent() {
            StopReason::Requests
        } else if all_broken {
            StopReason::Errors
        } else {
            StopReason::Duration
        };
        let passed = duplicates.duplicates == 0
            && errors.total == 0
            && unanswered == 0
            && !(order.enforced && order.violations > 0);
        let (mode, tag) = match &plan.mode {
            Mode::Snowflake => ("snowflake".to_owned(), None),
            Mode::Segment { tag } => ("segment".to_owned(), Some(tag.clone())),
        };
        Report {
            target: plan.target_display(),
            protocol: plan.protocol,
            mode,
            tag,
            batch: plan.batch,
            connections: plan.connections,
            pipeline: plan.pipeline,
            warmup_secs: plan.warmup.as_secs_f64(),
            warmup_requests,
            elapsed_secs: elapsed.as_secs_f64(),
            stopped_by,
            requests,
            ids,
            requests_per_sec: rate(requests),
            ids_per_sec: rate(ids),
            latency_us: Latency {
                samples: latency.len(),
                significant_digits: significant_digits(plan),
                min: latency.min(),
                mean: latency.mean(),
                p50: latency.value_at_quantile(0.50),
                p90: latency.value_at_quantile(0.90),
                p99: latency.value_at_quantile(0.99),
                p999: latency.value_at_quantile(0.999),
                max: latency.max(),
            },
            errors,
            unanswered,
            rate: plan.rate,
            missed: schedule.missed(),
            duplicates,
            order,
            passed,
        }
    }

    /// The process exit code: 0 when the run passed, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.passed {
            0
        } else {
            1
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match &self.tag {
            Some(tag) => format!("{} {tag:?}", self.mode),
            None => self.mode.clone(),
        };
        writeln!(
            f,
            "floe load: {} {mode}, batch {}, {} connections x pipeline {} -> {}",
            self.protocol, self.batch, self.connections, self.pipeline, self.target
        )?;
        let mut window = format!("{:.3} s, stopped: {}", self.elapsed_secs, self.stopped_by);
        if self.warmup_secs > 0.0 {
            window += &format!(
                " (after {:.3} s warm-up, {} requests)",
                self.warmup_secs,
                group(self.warmup_requests)
            );
        }
        row(f, "measured", &window)?;
        if let Some(rate) = self.rate {
            row(
                f,
                "open loop",
                &format!(
                    "{} requests/s scheduled; latency from each request's due instant; {} due requests never sent",
                    group(rate),
                    group(self.missed.unwrap_or(0))
                ),
            )?;
        }
        row(
            f,
            "requests",
            &format!(
                "{:>15}  {:>15} /s",
                group(self.requests),
                group(self.requests_per_sec.round() as u64)
            ),
        )?;
        row(
            f,
            "IDs",
            &format!(
                "{:>15}  {:>15} /s",
                group(self.ids),
                group(self.ids_per_sec.round() as u64)
            ),
        )?;
        let l = &self.latency_us;
        if l.samples == 0 {
            row(f, "latency", "no measured ok requests")?;
        } else {
            row(
                f,
                "latency µs",
                &format!(
                    "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (min {}, mean {:.1})",
                    l.p50, l.p90, l.p99, l.p999, l.max, l.min, l.mean
                ),
            )?;
        }
        if self.errors.total == 0 {
            row(f, "errors", "0")?;
        } else {
            let kinds: Vec<String> = self
                .errors
                .by_kind
                .iter()
                .map(|(kind, n)| format!("{kind} {}", group(*n)))
                .collect();
            row(
                f,
                "errors",
                &format!("{}: {}", group(self.errors.total), kinds.join(", ")),
            )?;
            for example in &self.errors.examples {
                row(f, "", &format!("e.g. {example}"))?;
            }
        }
        if self.unanswered > 0 {
            row(f, "unanswered", &group(self.unanswered))?;
        }
        let d = &self.duplicates;
        let dup = if !d.enabled {
            "not checked (--no-check)".to_owned()
        } else {
            let mut text = format!(
                "{} in {} IDs checked",
                group(d.duplicates),
                group(d.checked_ids)
            );
            if !d.complete {
                text += &format!(
                    " (memory cap of {} MB reached: later IDs unchecked; use a shorter run)",
                    group((MAX_CHECK_BYTES / 1_000_000) as u64)
                );
            }
            if !d.examples.is_empty() {
                text += &format!(", e.g. {:?}", d.examples);
            }
            text
        };
        row(f, "duplicates", &dup)?;
        if self.order.checked {
            let mut text = format!(
                "{} per-connection order violations",
                group(self.order.violations)
            );
            if !self.order.enforced {
                text += " (informative: HTTP requests are not bound to a lane)";
            }
            if !self.order.examples.is_empty() {
                text += &format!(", e.g. {:?}", self.order.examples);
            }
            row(f, "order", &text)?;
        }
        row(f, "result", if self.passed { "PASS" } else { "FAIL" })
    }
}

fn row(f: &mut fmt::Formatter<'_>, label: &str, value: &str) -> fmt::Result {
    writeln!(f, "  {label:<12} {value}")
}

/// `1234567` → `1,234,567`, for the human table only.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(plan: &Plan) -> ConnStats {
        ConnStats::new(plan, Instant::now())
    }

    #[test]
    fn wrong_counts_are_errors_whose_ids_are_still_checked() {
        let mut plan = Plan::new(Protocol::V2, "127.0.0.1:3778".parse().unwrap());
        plan.batch = 2;
        let mut stats = conn(&plan);
        let now = Instant::now();
        stats.ok(now, now, &[5, 6]);
        stats.ok(now, now, &[6, 4]);
        stats.ok(now, now, &[7]);
        assert_eq!(stats.log.order().0, 2);
        assert_eq!(stats.errors[&ErrorKind::WrongCount], 1);
        assert_eq!(stats.requests, 2);
        assert_eq!(stats.log.finish().ids, 5);
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
