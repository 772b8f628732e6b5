//! `floe load` against small servers written here on 127.0.0.1:0: correct ones, and ones that duplicate, go
//! backwards, fail, close or never answer. Every run is bounded by `--requests` or `--duration` and `--timeout`,
//! and every test by an outer timeout, so a bug shows as a failure, not a hang.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use clap::Parser;
use floe_load::{run, LoadArgs, LoadError, Mode, Plan, Protocol, Report, StopReason};
use floe_proto::{
    encode_v1_batch, encode_v1_single, encode_v2_error, encode_v2_ok, Reply, Request, ServerCodec,
    Status,
};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Decoder;

/// Outer bound on every run in this file.
const TEST_LIMIT: Duration = Duration::from_secs(30);

/// How a test server answers.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Unique, increasing IDs from one counter.
    Correct,
    /// Like `Correct`, but every 50th request repeats an ID this connection got before.
    Duplicating,
    /// Unique IDs from a counter that counts down, so each connection sees them decrease.
    Backwards,
    /// Every `n`th request over all connections gets an error (v2: status unavailable, HTTP: 503).
    FailEvery(u64),
    /// Closes each connection for writing after answering `n` requests.
    CloseAfter(u64),
    /// Reads requests and never answers.
    Silent,
}

/// State shared by all connections of one test server.
#[derive(Debug)]
struct Shared {
    behaviour: Behaviour,
    /// Next ID (counting up) or last ID (counting down).
    counter: AtomicU64,
    /// Requests served over all connections, for `FailEvery`.
    served: AtomicU64,
}

impl Shared {
    fn new(behaviour: Behaviour) -> Arc<Shared> {
        let start = match behaviour {
            Behaviour::Backwards => 1 << 62,
            _ => 1,
        };
        Arc::new(Shared {
            behaviour,
            counter: AtomicU64::new(start),
            served: AtomicU64::new(0),
        })
    }

    /// `n` fresh IDs in this server's order.
    fn ids(&self, n: u64) -> Vec<u64> {
        match self.behaviour {
            Behaviour::Backwards => {
                let top = self.counter.fetch_sub(n, Ordering::Relaxed);
                (0..n).map(|i| top - i).collect()
            }
            _ => {
                let first = self.counter.fetch_add(n, Ordering::Relaxed);
                (first..first + n).collect()
            }
        }
    }

    /// Whether this request (counted over all connections) gets an error.
    fn fails(&self) -> bool {
        let served = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        matches!(self.behaviour, Behaviour::FailEvery(n) if served.is_multiple_of(n))
    }
}

/// Starts a binary-TCP test server and returns its address.
async fn tcp_server(behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = Shared::new(behaviour);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_tcp(stream, Arc::clone(&shared)));
        }
    });
    addr
}

async fn serve_tcp(mut stream: TcpStream, shared: Arc<Shared>) -> anyhow::Result<()> {
    let mut codec = ServerCodec::default();
    let mut inb = BytesMut::with_capacity(4096);
    let mut out = BytesMut::new();
    let mut answered = 0u64;
    let mut earlier = Vec::new();
    loop {
        if stream.read_buf(&mut inb).await? == 0 {
            return Ok(());
        }
        while let Some(item) = codec.decode(&mut inb)? {
            match shared.behaviour {
                Behaviour::Silent => continue,
                Behaviour::CloseAfter(n) if answered == n => {
                    // A half close, then draining: closing with unread requests would send a reset that may
                    // discard replies the client has not read yet.
                    stream.write_all(&out).await?;
                    stream.shutdown().await?;
                    while stream.read_buf(&mut inb).await? > 0 {
                        inb.clear();
                    }
                    return Ok(());
                }
                _ => {}
            }
            answered += 1;
            let count = match &item {
                Ok(Request::V1Single) => 1,
                Ok(Request::V1Batch { count }) => u64::from(*count),
                Ok(Request::V2(req)) => u64::from(req.count),
                Err(_) => 0,
            };
            let mut ids = shared.ids(count);
            if let (Behaviour::Duplicating, Some(&first)) = (shared.behaviour, ids.first()) {
                if answered.is_multiple_of(50) {
                    ids[0] = earlier[0];
                }
                earlier.push(first);
            }
            match item {
                Ok(Request::V1Single) => encode_v1_single(ids[0], &mut out),
                Ok(Request::V1Batch { .. }) => encode_v1_batch(&ids, &mut out)?,
                Ok(Request::V2(req)) if shared.fails() => {
                    encode_v2_error(req.req_id, Status::Unavailable, "test: no lease", &mut out)?
                }
                Ok(Request::V2(req)) => encode_v2_ok(req.req_id, &ids, &mut out)?,
                Err(rejection) => Reply::from(rejection).encode(&mut out)?,
            }
        }
        stream.write_all(&out).await?;
        out.clear();
    }
}

/// Starts an HTTP test server answering Floe's native routes and returns its address.
async fn http_server(behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = Shared::new(behaviour);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let shared = Arc::clone(&shared);
            let service = service_fn(move |req| answer_http(req, Arc::clone(&shared)));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

async fn answer_http(
    req: hyper::Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let query: HashMap<&str, &str> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let count: u64 = query.get("count").and_then(|c| c.parse().ok()).unwrap_or(1);
    let path = req.uri().path();
    let body = if shared.fails() {
        None
    } else if path == "/v1/snowflake" {
        Some(serde_json::json!({ "ids": shared.ids(count) }))
    } else {
        path.strip_prefix("/v1/segment/")
            .map(|tag| serde_json::json!({ "tag": tag, "ids": shared.ids(count) }))
    };
    let (status, body) = match body {
        Some(body) => (StatusCode::OK, body),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": {"code": "unavailable", "message": "test"}}),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    Ok(response)
}

/// A plan bounded by request count, with a short timeout so failures are quick.
fn plan(protocol: Protocol, target: SocketAddr, requests: u64) -> Plan {
    let mut plan = Plan::new(protocol, target);
    plan.requests = Some(requests);
    plan.duration = Duration::from_secs(20);
    plan.timeout = Duration::from_secs(2);
    plan
}

/// `run(plan)`, failing the test (naming its line) if it does not stop by itself.
#[track_caller]
fn run_bounded(plan: Plan) -> impl Future<Output = Result<Report, LoadError>> {
    let at = std::panic::Location::caller();
    async move {
        tokio::time::timeout(TEST_LIMIT, run(plan))
            .await
            .unwrap_or_else(|_| panic!("the load run must stop by itself (at {at})"))
    }
}

#[track_caller]
fn assert_percentiles_monotone(report: &Report) {
    let l = &report.latency_us;
    assert!(l.samples > 0);
    assert!(1 <= l.min && l.min <= l.p50, "{l:?}");
    assert!(
        l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
        "{l:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_pipelined_batches_against_a_correct_server() {
    let addr = tcp_server(Behaviour::Correct).await;
    let mut plan = plan(Protocol::V1, addr, 2000);
    plan.connections = 4;
    plan.pipeline = 8;
    plan.batch = 10;
    let report = run_bounded(plan).await.unwrap();
    assert_eq!(report.requests, 2000);
    assert_eq!(report.ids, 20_000);
    assert_eq!(report.stopped_by, StopReason::Requests);
    assert_eq!(report.duplicates.duplicates, 0);
    assert_eq!(report.duplicates.checked_ids, 20_000);
    assert!(report.duplicates.complete);
    assert_eq!(report.order.violations, 0);
    assert_eq!(report.errors.total, 0);
    assert_eq!(report.unanswered, 0);
    assert!(report.passed);
    assert_eq!(report.exit_code(), 0);
    assert!(report.elapsed_secs > 0.0 && report.requests_per_sec > 0.0);
    assert_eq!(report.latency_us.samples, 2000);
    assert_percentiles_monotone(&report);
    assert!(report.to_string().contains("PASS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_single_ids_and_empty_batches() {
    let addr = tcp_server(Behaviour::Correct).await;
    let mut single = plan(Protocol::V1, addr, 500);
    single.pipeline = 16;
    let report = run_bounded(single).await.unwrap();
    assert_eq!((report.requests, report.ids), (500, 500));
    assert!(report.passed, "{report}");

    let mut empty = plan(Protocol::V1, addr, 100);
    empty.batch = 0;
    let report = run_bounded(empty).await.unwrap();
    assert_eq!((report.requests, report.ids), (100, 0));
    assert!(report.passed, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_fail_the_run() {
    let addr = tcp_server(Behaviour::Duplicating).await;
    let mut plan = plan(Protocol::V1, addr, 1000);
    plan.connections = 2;
    plan.pipeline = 4;
    plan.batch = 5;
    let report = run_bounded(plan).await.unwrap();
    assert_eq!(report.requests, 1000);
    assert!(report.duplicates.duplicates > 0, "{report}");
    assert!(!report.duplicates.examples.is_empty());
    assert!(!report.passed);
    assert_eq!(report.exit_code(), 1);
    assert!(report.to_string().contains("FAIL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_going_backwards_are_order_violations() {
    let addr = tcp_server(Behaviour::Backwards).await;
    let mut plan = plan(Protocol::V2, addr, 200);
    plan.connections = 2;
    plan.batch = 3;
    let report = run_bounded(plan).await.unwrap();
    assert_eq!(report.duplicates.duplicates, 0);
    assert!(report.order.enforced);
    // Every ID after a connection's first is lower than the one before it.
    assert_eq!(report.order.violations, 200 * 3 - 2, "{report}");
    assert_eq!(report.order.examples.len(), 5);
    assert!(report.order.examples.iter().all(|[prev, next]| next < prev));
    assert_eq!(report.exit_code(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_error_replies_are_counted_by_status() {
    let addr = tcp_server(Behaviour::FailEvery(10)).await;
    let mut plan = plan(Protocol::V2, addr, 500);
    plan.connections = 2;
    plan.pipeline = 4;
    plan.batch = 100;
    let report = run_bounded(plan).await.unwrap();
    assert_eq!(report.errors.total, 50, "{report}");
    assert_eq!(report.errors.by_kind["v2_status_3_unavailable"], 50);
    assert!(report.errors.examples[0].contains("test: no lease"));
    assert_eq!(report.requests, 450);
    assert_eq!(report.ids, 45_000);
    assert_eq!(report.unanswered, 0);
    assert_eq!(report.duplicates.duplicates, 0);
    assert_eq!(report.exit_code(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_segment_batches() {
    let addr = tcp_server(Behaviour::Correct).await;
    let mut plan = plan(Protocol::V2, addr, 50);
    plan.mode = Mode::Segment {
        tag: "orders".to_owned(),
    };
    plan.connections = 2;
    plan.pipeline = 2;
    plan.batch = 10_000;
    let report = run_bounded(plan).await.unwrap();
    assert_eq!((report.requests, report.ids), (50, 500_000));
    assert!(!report.order.checked);
    assert_eq!(report.tag.as_deref(), Some("orders"));
    assert!(report.passed, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_snowflake_and_segment() {
    let addr = http_server(Behaviour::Correct).await;
    let mut snowflake = plan(Protocol::Http, addr, 400);
    snowflake.connections = 4;
    snowflake.batch = 5;
    let report = run_bounded(snowflake).await.unwrap();
    assert_eq!((report.requests, report.ids), (400, 2000));
    assert!(report.order.checked && !report.order.enforced);
    assert!(report.passed, "{report}");
    assert_percentiles_monotone(&report);
    assert_eq!(report.target, format!("http://{addr}"));

    let mut segment = plan(Protocol::Http, addr, 100);
    segment.mode = Mode::Segment {
        tag: "orders".to_owned(),
    };
    let report = run_bounded(segment).await.unwrap();
    assert_eq!(report.requests, 100);
    assert!(report.passed, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_error_statuses_are_counted() {
    let addr = http_server(Behaviour::FailEvery(10)).await;
    let mut plan = plan(Protocol::Http, addr, 200);
    plan.connections = 2;
    let report = run_bounded(plan).await.unwrap();
    assert_eq!(report.errors.by_kind["http_503"], 20, "{report}");
    assert_eq!(report.requests, 180);
    assert_eq!(report.exit_code(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_times_out_instead_of_hanging() {
    for protocol in [Protocol::V1, Protocol::Http] {
        let addr = match protocol {
            Protocol::Http => http_silent_server().await,
            _ => tcp_server(Behaviour::Silent).await,
        };
        let mut plan = plan(protocol, addr, 100);
        plan.connections = 3;
        plan.timeout = Duration::from_millis(300);
        let started = Instant::now();
        let report = run_bounded(plan).await.unwrap();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(3), "{protocol}: took {took:?}");
        assert_eq!(report.errors.by_kind["timeout"], 3, "{report}");
        assert_eq!(report.unanswered, 3);
        assert_eq!(report.requests, 0);
        assert_eq!(report.stopped_by, StopReason::Errors);
        assert_eq!(report.exit_code(), 1);
    }
}

/// Accepts HTTP connections and reads from them, never answering.
async fn http_silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_counts_its_unanswered_requests() {
    let addr = tcp_server(Behaviour::CloseAfter(10)).await;
    let mut plan = plan(Protocol::V1, addr, 1000);
    plan.connections = 2;
    plan.pipeline = 4;
    let report = run_bounded(plan).await.unwrap();
    assert_eq!(report.requests, 20);
    assert_eq!(report.errors.by_kind["closed"], 2, "{report}");
    assert_eq!(report.unanswered, 2 * 4);
    assert_eq!(report.exit_code(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_is_excluded_and_duration_stops_the_run() {
    let addr = tcp_server(Behaviour::Correct).await;
    let mut plan = Plan::new(Protocol::V1, addr);
    plan.connections = 2;
    plan.warmup = Duration::from_millis(200);
    plan.duration = Duration::from_millis(300);
    let report = run_bounded(plan).await.unwrap();
    assert_eq!(report.stopped_by, StopReason::Duration);
    assert!(report.warmup_requests > 0);
    assert!(report.requests > 0);
    assert!(
        report.elapsed_secs >= 0.3 && report.elapsed_secs < 3.0,
        "{report}"
    );
    // Warm-up IDs are checked too.
    assert!(report.duplicates.checked_ids > report.ids);
    assert!(report.passed, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_has_the_figures() {
    let addr = tcp_server(Behaviour::Correct).await;
    let report = run_bounded(plan(Protocol::V1, addr, 10)).await.unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["requests"], 10);
    assert_eq!(json["protocol"], "v1");
    assert_eq!(json["stopped_by"], "requests");
    assert_eq!(json["duplicates"]["duplicates"], 0);
    assert!(json["latency_us"]["p999"].is_u64());
    assert_eq!(json["passed"], true);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = run_bounded(plan(Protocol::V1, addr, 10)).await.unwrap_err();
    assert!(matches!(err, LoadError::Connect { .. }), "{err}");
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("is the server running"), "{err}");
}

/// Wraps [`LoadArgs`] the way the `floe` binary does.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: LoadArgs,
}

fn parse(args: &[&str]) -> Result<Plan, LoadError> {
    let cli = Cli::try_parse_from(std::iter::once("load").chain(args.iter().copied())).unwrap();
    cli.args.plan()
}

/// Asserts that `args` are refused with exit code 64 by a message naming `option`.
#[track_caller]
fn refused(args: &[&str], option: &str) {
    let err = parse(args).unwrap_err();
    assert_eq!(err.exit_code(), 64, "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{option}: ")),
        "{args:?}: {message}"
    );
}

#[test]
fn options_are_validated_naming_the_option() {
    refused(&["--target", "10.0.0.1:3778"], "--target");
    refused(&["--target", "example.com:80"], "--target");
    refused(&["--target", "192.168.1.1"], "--target");
    refused(
        &["--protocol", "http", "--target", "http://8.8.8.8:80"],
        "--target",
    );
    refused(&["--target", "http://127.0.0.1:8880"], "--target");
    refused(&["--batch", "256"], "--batch");
    refused(&["--protocol", "v2", "--batch", "0"], "--batch");
    refused(&["--protocol", "v2", "--batch", "100001"], "--batch");
    refused(&["--mode", "segment", "--tag", "orders"], "--mode");
    refused(&["--protocol", "v2", "--mode", "segment"], "--tag");
    refused(&["--tag", "orders"], "--tag");
    refused(
        &["--protocol", "http", "--mode", "segment", "--tag", "a/b"],
        "--tag",
    );
    refused(&["--connections", "0"], "--connections");
    refused(&["--connections", "10001"], "--connections");
    refused(&["--pipeline", "0"], "--pipeline");
    refused(&["--pipeline", "1025"], "--pipeline");
    refused(&["--protocol", "http", "--pipeline", "2"], "--pipeline");
    refused(&["--duration", "11m"], "--duration");
    refused(&["--duration", "soon"], "--duration");
    refused(&["--requests", "0"], "--requests");
    refused(&["--requests", "1000000001"], "--requests");
    refused(&["--timeout", "0s"], "--timeout");
    refused(&["--timeout", "61s"], "--timeout");
    refused(&["--warmup", "20m"], "--warmup");

    let message = parse(&["--batch", "256"]).unwrap_err().to_string();
    assert!(message.contains("0..=255"), "{message}");
    let message = parse(&["--target", "10.0.0.1:3778"])
        .unwrap_err()
        .to_string();
    assert!(message.contains("loopback"), "{message}");
}

#[test]
fn defaults_and_accepted_combinations() {
    let plan = parse(&[]).unwrap();
    assert_eq!(plan.target.to_string(), "127.0.0.1:3778");
    assert_eq!(plan.protocol, Protocol::V1);
    assert_eq!((plan.connections, plan.pipeline, plan.batch), (16, 1, 1));
    assert_eq!(plan.duration, Duration::from_secs(10));
    assert_eq!(plan.requests, None);
    assert!(plan.check);

    let plan = parse(&["--protocol", "http", "--target", "http://localhost:8880"]).unwrap();
    assert_eq!(plan.target.to_string(), "127.0.0.1:8880");

    // --requests alone still has a time bound.
    let plan = parse(&["--requests", "1000"]).unwrap();
    assert_eq!(plan.duration, Duration::from_secs(600));

    let plan = parse(&["--requests", "1000000000", "--batch", "255", "--no-check"]).unwrap();
    assert!(!plan.check);

    let plan = parse(&[
        "--protocol",
        "v2",
        "--mode",
        "segment",
        "--tag",
        "orders",
        "--batch",
        "10000",
        "--target",
        "[::1]:3778",
    ])
    .unwrap();
    assert_eq!(
        plan.mode,
        Mode::Segment {
            tag: "orders".to_owned()
        }
    );
    assert_eq!(plan.target.to_string(), "[::1]:3778");
}
