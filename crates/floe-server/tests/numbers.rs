//! Number sequences end to end, black box: servers in this process on real sockets, over the
//! embedded SQLite file, PostgreSQL and MariaDB. Numbers over HTTP and binary v2, the listing,
//! declarations through the admin API seen by a second node, two nodes sharing one database
//! (20,000 numbers each, unique together, increasing on each node), a `{seq:02}` that runs out
//! at 99 and never widens, every documented error body, and the period switch with a clock
//! given by the test (the same switch under libfaketime, across a restart, is in
//! `crates/floe/tests/serve_numbers.rs`).
//!
//! PostgreSQL and MariaDB come from FLOE_TEST_POSTGRES_URL / FLOE_TEST_MYSQL_URL (the loopback
//! services by default); a missing database fails the test. Each test uses its own tables.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use floe_core::numbers::{Reset, Sequence, Zone};
use floe_server::numbers::{NumberError, NumberService};
use floe_server::segment::{SegmentService, ServiceConfig};
use floe_server::Config;
use floe_store::segment::{SegmentStore, SequenceStore, SqlSegmentStore, StoreOptions, TableSpec};
use floe_testkit::http::{get, request, Response as HttpResponse};
use floe_testkit::{mysql_url, postgres_url, unique};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The admin token of every server here.
const TOKEN: &str = "numbers-test-token";

/// A configuration with the admin API on and quiet logs; `segment` is the body of `[segment]`
/// and `numbers` more TOML (`[numbers.<name>]` tables).
fn config(segment: &str, numbers: &str) -> Config {
    let text = format!(
        "[server]\nadmin_token = \"{TOKEN}\"\n[log]\nlevel = \"warn\"\n[segment]\n{segment}\n{numbers}\n"
    );
    Config::from_toml(&text).unwrap_or_else(|e| panic!("config {text:?}: {e}"))
}

/// An admin request with the right token.
async fn admin(addr: SocketAddr, method: &str, path: &str, body: &str) -> HttpResponse {
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    request(addr, method, path, &headers, body)
        .await
        .unwrap_or_else(|e| panic!("admin {method} {path}: {e}"))
}

/// Waits until the tables answer (they are created in the background when the database is
/// slow to come up): the listing works once the definitions table exists.
async fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = get(addr, "/v1/numbers").await;
        if r.status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the number definitions never answered: {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One v2 number reply: the status and the numbers, or the message.
#[derive(Debug)]
struct V2Numbers {
    status: u8,
    numbers: Vec<String>,
    message: String,
}

/// One v2 number request (op 4) on `conn`; checks the reply echoes `req_id` and, on status 0,
/// that the body is exactly `n u32` then `n` length-prefixed strings.
async fn v2_numbers(conn: &mut TcpStream, req_id: u32, count: u32, name: &str) -> V2Numbers {
    conn.write_all(&v2_request(4, req_id, count, name.as_bytes()))
        .await
        .unwrap();
    let head = read_n(conn, 10).await;
    assert_eq!(head[0], 0xF1);
    assert_eq!(u32::from_be_bytes(head[2..6].try_into().unwrap()), req_id);
    let len = u32::from_be_bytes(head[6..10].try_into().unwrap()) as usize;
    let body = read_n(conn, len).await;
    if head[1] != 0 {
        return V2Numbers {
            status: head[1],
            numbers: Vec::new(),
            message: String::from_utf8(body).unwrap(),
        };
    }
    let n = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
    let mut rest = &body[4..];
    let mut numbers = Vec::with_capacity(n);
    for _ in 0..n {
        let l = usize::from(rest[0]);
        numbers.push(String::from_utf8(rest[1..1 + l].to_vec()).unwrap());
        rest = &rest[1 + l..];
    }
    assert!(rest.is_empty(), "nothing after the last number");
    V2Numbers {
        status: 0,
        numbers,
        message: String::new(),
    }
}

/// `GET /v1/numbers/{name}?count=n`, expecting 200; checks the body's exact shape.
async fn http_numbers(addr: SocketAddr, name: &str, count: u32) -> Vec<String> {
    let r = get(addr, &format!("/v1/numbers/{name}?count={count}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let numbers: Vec<String> = serde_json::from_value(r.json()["numbers"].clone()).unwrap();
    assert_eq!(
        r.body,
        json!({"name": name, "numbers": numbers}).to_string()
    );
    assert_eq!(numbers.len(), count as usize);
    numbers
}

/// The period keys `seq` may have used between two instants around a request (a request may
/// straddle midnight in the sequence's zone).
fn periods_around(seq: &Sequence, before: u64) -> Vec<String> {
    let after = unix_ms();
    let mut keys = vec![seq.stamp(before).unwrap().period().to_owned()];
    let later = seq.stamp(after).unwrap().period().to_owned();
    if later != keys[0] {
        keys.push(later);
    }
    keys
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The `[numbers.order_no]` of the issue.
const ORDER_NO: &str = r#"
[numbers.order_no]
format = "ORD-{date:%Y%m%d}-{seq:06}"
reset = "day"
time_zone = "Asia/Shanghai"
start = 1
step = 10
"#;

fn order_no() -> Sequence {
    let zone: Zone = "Asia/Shanghai".parse().unwrap();
    Sequence::new(
        "order_no",
        "ORD-{date:%Y%m%d}-{seq:06}",
        Reset::Day,
        zone,
        1,
        10,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_over_http_and_v2_on_sqlite() {
    let s = TestServer::start(config("", ORDER_NO)).await;
    wait_ready(s.http).await;
    let before = unix_ms();
    let mut got = http_numbers(s.http, "order_no", 3).await;
    let mut tcp = connect(s.tcp).await;
    let r = v2_numbers(&mut tcp, 7, 2, "order_no").await;
    assert_eq!(r.status, 0, "{}", r.message);
    got.extend(r.numbers);
    got.extend(http_numbers(s.http, "order_no", 1).await);
    let periods = periods_around(&order_no(), before);
    // The same node, the same period (unless midnight in Shanghai fell in between): 1, 2, 3…
    if periods.len() == 1 {
        let want: Vec<String> = (1..=6)
            .map(|n| format!("ORD-{}-{n:06}", periods[0]))
            .collect();
        assert_eq!(got, want);
    }
    for n in &got {
        assert!(
            periods.iter().any(|p| n.starts_with(&format!("ORD-{p}-"))),
            "{n}"
        );
    }

    let r = get(s.http, "/v1/numbers").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = &r.json()["numbers"][0];
    assert_eq!(listed["name"], "order_no");
    assert_eq!(listed["source"], "config");
    assert_eq!(listed["format"], "ORD-{date:%Y%m%d}-{seq:06}");
    assert_eq!(listed["reset"], "day");
    assert_eq!(listed["time_zone"], "Asia/Shanghai");
    let period = listed["period"].as_str().unwrap().to_owned();
    assert_eq!(listed["tag"], format!("order_no@{period}"));
    if periods.len() == 1 {
        assert_eq!(listed["next"], 7);
        assert_eq!(listed["next_number"], format!("ORD-{period}-000007"));
        // 4 left of the first step of 10, and the next (adaptive) segment when it was claimed.
        assert!(listed["buffered"].as_u64().unwrap() >= 4, "{listed}");
    }
    let info = get(s.http, "/v1/info").await.json();
    assert_eq!(info["modes"]["numbers"], true);
    let metrics = get(s.http, "/metrics").await.body;
    assert!(
        metrics.contains("floe_numbers_issued_total{name=\"order_no\"}"),
        "{metrics}"
    );
    s.stop().await.0.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_documented_bodies() {
    let s = TestServer::start(config("", ORDER_NO)).await;
    wait_ready(s.http).await;
    let cases = [
        (
            "/v1/numbers/nosuch",
            404,
            error_body("unknown_name", "unknown number sequence `nosuch`"),
        ),
        (
            "/v1/numbers/order_no?count=0",
            400,
            error_body(
                "bad_request",
                "count must be an integer in 1..=100000, got \"0\"",
            ),
        ),
        (
            "/v1/numbers/order_no?count=abc",
            400,
            error_body(
                "bad_request",
                "count must be an integer in 1..=100000, got \"abc\"",
            ),
        ),
        (
            "/v1/numbers/order_no?count=100001",
            400,
            error_body(
                "bad_request",
                "count must be an integer in 1..=100000, got \"100001\"",
            ),
        ),
        (
            "/v1/numbers/bad@name",
            400,
            error_body(
                "bad_request",
                "name = \"bad@name\" is invalid: allowed are 1..=64 ASCII letters, digits, _, - and .",
            ),
        ),
    ];
    for (path, status, body) in cases {
        let r = get(s.http, path).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (status, body.as_str()),
            "{path}"
        );
    }

    let mut tcp = connect(s.tcp).await;
    let r = v2_numbers(&mut tcp, 1, 1, "nosuch").await;
    assert_eq!(
        (r.status, r.message.as_str()),
        (2, "unknown number sequence `nosuch`")
    );
    let r = v2_numbers(&mut tcp, 2, 1, "").await;
    assert_eq!(
        (r.status, r.message.as_str()),
        (1, "number request needs a non-empty sequence name")
    );
    let r = v2_numbers(&mut tcp, 3, 0, "order_no").await;
    assert_eq!(
        (r.status, r.message.as_str()),
        (1, "count must be 1..=100000")
    );
    let r = v2_numbers(&mut tcp, 4, 100_001, "order_no").await;
    assert_eq!(r.status, 4, "{r:?}");
    let r = v2_numbers(&mut tcp, 5, 1, "a/b").await;
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.message.starts_with("name = \"a/b\" is invalid"), "{r:?}");

    // Declarations: every refusal names the field, the value and what is allowed.
    let declare = |body: Value| {
        let body = body.to_string();
        async move { admin(s.http, "POST", "/admin/numbers", &body).await }
    };
    let refused = [
        (
            json!({"name": "x", "format": "X-{dat}-{seq}"}),
            "format = \"X-{dat}-{seq}\" is invalid: unknown placeholder `{dat}`; allowed are `{date:<strftime>}`, `{date}`, `{seq}` and `{seq:0N}` (write `{{` and `}}` for literal braces)",
        ),
        (
            json!({"name": "x", "format": "X-{date}"}),
            "format = \"X-{date}\" is invalid: it needs a `{seq}` or `{seq:0N}`: the counter that makes each number unique",
        ),
        (
            json!({"name": "x", "format": "X-{seq:6}"}),
            "format = \"X-{seq:6}\" is invalid: `{seq:6}`: the padding is written `{seq:0N}` with N in 1..=18, e.g. `{seq:06}`",
        ),
        (
            json!({"name": "x", "format": "X-{date:%Y%m}-{seq:04}", "reset": "day"}),
            "reset = \"day\" but the dates render",
        ),
        (
            json!({"name": "x", "format": "X{seq}", "time_zone": "Mars/Base"}),
            "time_zone = \"Mars/Base\" is invalid: an IANA zone name",
        ),
        (
            json!({"name": "x", "format": "X{seq}", "reset": "week"}),
            "reset = \"week\" is invalid: one of never, year, month, day",
        ),
        (
            json!({"name": "x", "format": "X{seq:02}", "start": 0}),
            "start = 0 is invalid: 1..=99 (`{seq:02}` holds 2 digits; 0 is never issued)",
        ),
        (
            json!({"name": "x y", "format": "X{seq}"}),
            "name = \"x y\" is invalid",
        ),
    ];
    for (body, says) in refused {
        let r = declare(body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "bad_request");
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(says), "{body}: {message}");
    }
    let r = admin(s.http, "POST", "/admin/numbers", "not json").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("the body must be JSON"), "{}", r.body);
    let r = declare(json!({"name": "order_no", "format": "X{seq}"})).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            409,
            error_body("name_exists", "number sequence `order_no` exists already").as_str()
        )
    );
    let r = declare(json!({"name": "inv", "format": "INV{seq}"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"name": "inv", "format": "INV{seq}", "reset": "never", "time_zone": "UTC", "start": 1, "step": 1000})
    );
    let r = declare(json!({"name": "inv", "format": "INV{seq}"})).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(http_numbers(s.http, "inv", 2).await, ["INV1", "INV2"]);
    // Without the token the declaration is refused before the body is read.
    let r = request(s.http, "POST", "/admin/numbers", &[], "{}")
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    s.stop().await.0.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_padded_counter_runs_out_at_its_width_and_never_widens() {
    let numbers = r#"
[numbers.tiny]
format = "T{seq:02}"
step = 7

[numbers.daily]
format = "D{date:%Y%m%d}-{seq:01}"
reset = "day"
step = 4
"#;
    let s = TestServer::start(config("", numbers)).await;
    wait_ready(s.http).await;
    let mut tcp = connect(s.tcp).await;
    let mut served = Vec::new();
    let mut exhausted = 0;
    for i in 0..150u32 {
        // Alternate protocols: both read the same buffer and report the same end.
        if i % 2 == 0 {
            let r = get(s.http, "/v1/numbers/tiny").await;
            match r.status {
                200 => served.extend(
                    serde_json::from_value::<Vec<String>>(r.json()["numbers"].clone()).unwrap(),
                ),
                409 => {
                    assert_eq!(
                        r.body,
                        error_body(
                            "exhausted",
                            "number sequence `tiny` is exhausted for period all: `{seq:02}` holds 1..=99 and every value was issued; declare a new sequence with a wider `{seq:0N}`"
                        )
                    );
                    exhausted += 1;
                }
                other => panic!("request {i}: {other} {}", r.body),
            }
        } else {
            let r = v2_numbers(&mut tcp, i, 1, "tiny").await;
            match r.status {
                0 => served.extend(r.numbers),
                4 => {
                    assert!(r.message.contains("is exhausted for period all"), "{r:?}");
                    exhausted += 1;
                }
                other => panic!("request {i}: status {other}: {}", r.message),
            }
        }
    }
    let want: Vec<String> = (1..=99).map(|n| format!("T{n:02}")).collect();
    assert_eq!(served, want, "99 numbers, in order, none of 3 digits");
    assert_eq!(exhausted, 51);
    // A batch that does not fit what is left gets nothing.
    let r = get(s.http, "/v1/numbers/tiny?count=2").await;
    assert_eq!(r.status, 409, "{}", r.body);
    let listed = get(s.http, "/v1/numbers").await.json();
    let tiny = listed["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tiny")
        .unwrap()
        .clone();
    assert_eq!(
        (tiny["next"].clone(), tiny["next_number"].clone()),
        (Value::Null, Value::Null)
    );

    // A day's `{seq:01}` holds 9: all or nothing, and the message says when it starts again.
    let r = get(s.http, "/v1/numbers/daily?count=9").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(s.http, "/v1/numbers/daily").await;
    assert_eq!(r.status, 409, "{}", r.body);
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains(
            "`{seq:01}` holds 1..=9 and every value was issued; the next day starts again from 1"
        ),
        "{message}"
    );
    s.stop().await.0.unwrap();
}

/// Drops the tables a test made, not through the server.
async fn drop_tables(url: &str, tables: &[&str]) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    for t in tables {
        sqlx::query(&format!("DROP TABLE IF EXISTS {t}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
}

/// Numbers one node serves: `PER_NODE` in v2 requests of `BATCH` on one connection, every
/// tenth request over HTTP instead.
async fn serve(node: (SocketAddr, SocketAddr), name: &str) -> Vec<String> {
    const PER_NODE: u32 = 20_000;
    const BATCH: u32 = 100;
    let (tcp_addr, http_addr) = node;
    let mut tcp = connect(tcp_addr).await;
    let mut out = Vec::with_capacity(PER_NODE as usize);
    for i in 0..PER_NODE / BATCH {
        if i % 10 == 9 {
            out.extend(http_numbers(http_addr, name, BATCH).await);
            continue;
        }
        let r = v2_numbers(&mut tcp, i, BATCH, name).await;
        assert_eq!(r.status, 0, "request {i}: {}", r.message);
        out.extend(r.numbers);
    }
    out
}

/// Two nodes on one database: the sequence is declared through one node's admin API and found
/// by the other; both then serve 20,000 numbers at once. Together they are unique; on each
/// node they increase (`{date}` and `{seq:08}` are fixed width, so string order is issue order,
/// across a midnight too).
async fn two_nodes_share_one_database(url: &str) {
    let (table, numbers_table) = (unique("num_seg"), unique("num_def"));
    let segment = format!(
        "url = \"{url}\"\ntable = \"{table}\"\nnumbers_table = \"{numbers_table}\"\nmin_step = 50\nmax_step = 400"
    );
    let a = TestServer::start(config(&segment, "")).await;
    let b = TestServer::start(config(&segment, "")).await;
    wait_ready(a.http).await;
    wait_ready(b.http).await;
    let declared = json!({
        "name": "inv",
        "format": "INV-{date:%Y%m%d}-{seq:08}",
        "reset": "day",
        "time_zone": "+08:00",
        "step": 50,
    });
    let r = admin(a.http, "POST", "/admin/numbers", &declared.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let listed = get(b.http, "/v1/numbers").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        listed.json()["numbers"][0]["name"],
        "inv",
        "{}",
        listed.body
    );
    assert_eq!(listed.json()["numbers"][0]["source"], "admin");

    let (na, nb) = tokio::join!(
        tokio::spawn(serve((a.tcp, a.http), "inv")),
        tokio::spawn(serve((b.tcp, b.http), "inv"))
    );
    let (na, nb) = (na.unwrap(), nb.unwrap());
    for (node, numbers) in [("a", &na), ("b", &nb)] {
        assert_eq!(numbers.len(), 20_000);
        for w in numbers.windows(2) {
            assert!(w[0] < w[1], "node {node}: {} then {}", w[0], w[1]);
        }
    }
    let all: HashSet<&String> = na.iter().chain(&nb).collect();
    assert_eq!(all.len(), 40_000, "no number issued twice");
    a.stop().await.0.unwrap();
    b.stop().await.0.unwrap();
    drop_tables(url, &[&table, &numbers_table]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_postgres() {
    two_nodes_share_one_database(&postgres_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_mariadb() {
    two_nodes_share_one_database(&mysql_url()).await;
}

/// The period switch, with the clock in the test's hands: the period is read when the request
/// is served and picks that period's row; a clock stepped back into the old period continues
/// that period after what it served (never a repeat), also once its buffer was retired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_period_follows_the_clock_and_never_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("floe.db").display());
    let spec = TableSpec {
        table: unique("seg"),
        numbers_table: unique("def"),
        ..TableSpec::floe()
    };
    let store = Arc::new(
        SqlSegmentStore::connect(&url, spec, StoreOptions::default())
            .await
            .unwrap(),
    );
    store.ensure_sequence_table().await.unwrap();
    let wait = Duration::from_millis(200);
    let counters = SegmentService::new(
        store.clone(),
        ServiceConfig {
            wait_timeout: wait,
            ..ServiceConfig::default()
        },
    )
    .unwrap();
    let service = NumberService::new(counters, store.clone(), vec![order_no()], wait);
    // 2026-11-30 23:59:59 and 2026-12-01 00:00:00 in Shanghai.
    let (before, after) = (1_796_054_399_000, 1_796_054_400_000);
    let issue = |at: u64, n: u32| {
        let service = service.clone();
        async move { service.issue("order_no", n, at).await.unwrap() }
    };
    assert_eq!(
        issue(before, 3).await,
        [
            "ORD-20261130-000001",
            "ORD-20261130-000002",
            "ORD-20261130-000003"
        ]
    );
    assert_eq!(
        issue(after, 2).await,
        ["ORD-20261201-000001", "ORD-20261201-000002"]
    );
    // Back before midnight (a clock step): the old period goes on, it does not start again.
    assert_eq!(issue(before, 1).await, ["ORD-20261130-000004"]);
    assert_eq!(issue(after, 1).await, ["ORD-20261201-000003"]);
    // Once the old period's buffer is retired its tail (5..=10 of the step of 10) is handed
    // back, so the period resumes right after the last number issued.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = store.tag("order_no@20261130").await.unwrap().unwrap();
        if row.max_id == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old period was never retired: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(issue(before, 1).await, ["ORD-20261130-000005"]);
    assert!(matches!(
        service.issue("nosuch", 1, after).await,
        Err(NumberError::UnknownName(n)) if n == "nosuch"
    ));
    assert_eq!(
        service.shutdown().await,
        2,
        "both periods' tails handed back"
    );
}
