//! Segment mode end to end, black box: a server in this process on real sockets, over its
//! embedded SQLite file, PostgreSQL (behind a chaos proxy) and MariaDB (on Leaf's, FeatherID's
//! and the Distributed ID Generator's own tables). Every route that hands out segment IDs, every
//! documented error body, unknown tags that must keep no memory, the range handed back on a
//! graceful stop, and a database outage that must neither hang requests nor need a restart.
//!
//! PostgreSQL and MariaDB come from FLOE_TEST_POSTGRES_URL / FLOE_TEST_MYSQL_URL (the loopback
//! services by default); a missing database fails the test. Each test uses its own table.

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::Location;
use std::time::{Duration, Instant};

use common::*;
use floe_server::Config;
use floe_testkit::http::{get, request, Response};
use floe_testkit::{
    assert_increasing, eventually_async, host_port, metric_value, mysql_url, postgres_url, unique,
    with_host_port, ChaosProxy,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The admin token of every server here.
const TOKEN: &str = "segment-test-token";

/// A configuration from TOML (so the real `[segment]` keys are exercised), with the admin API
/// on and quiet logs; `segment` is the body of the `[segment]` table.
#[track_caller]
fn seg_config(segment: &str) -> Config {
    let text = format!(
        "[server]\nadmin_token = \"{TOKEN}\"\n[log]\nlevel = \"warn\"\n[segment]\n{segment}\n"
    );
    Config::from_toml(&text).unwrap_or_else(|e| panic!("config {text:?}: {e}"))
}

// The async helpers are plain functions returning futures, so that a failure names the test's
// line (`#[track_caller]` does not work on an async fn).

/// An admin request with the right token.
#[track_caller]
fn admin<'a>(
    addr: SocketAddr,
    method: &'a str,
    path: &'a str,
    body: &'a str,
) -> impl Future<Output = Response> + 'a {
    let at = Location::caller();
    async move {
        let auth = format!("Bearer {TOKEN}");
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        request(addr, method, path, &headers, body)
            .await
            .unwrap_or_else(|e| panic!("admin {method} {path} (at {at}): {e}"))
    }
}

/// Waits until the segment table answers (it is created in the background at start, retried
/// until the database is there), so a tag can be created.
#[track_caller]
fn wait_segment_ready(addr: SocketAddr) -> impl Future<Output = ()> {
    eventually_async(
        Duration::from_secs(20),
        "the segment table answers",
        async move || {
            let r = admin(addr, "GET", "/admin/tags", "").await;
            (r.status == 200)
                .then_some(())
                .ok_or(format!("{} {}", r.status, r.body))
        },
    )
}

/// Creates `tag` through the admin API and checks the 201 and the row it returns.
#[track_caller]
fn create_tag(addr: SocketAddr, tag: &str, start: u64, step: u64) -> impl Future<Output = ()> + '_ {
    let at = Location::caller();
    async move {
        let body = json!({"tag": tag, "start": start, "step": step}).to_string();
        let r = admin(addr, "POST", "/admin/tags", &body).await;
        assert_eq!(r.status, 201, "{} (at {at})", r.body);
        assert_eq!(
            r.json(),
            json!({"tag": tag, "max_id": start, "step": step}),
            "{} (at {at})",
            r.body
        );
    }
}

/// One v2 segment request on `conn`; the reply, checked to echo `req_id`.
#[track_caller]
fn v2_segment<'a>(
    conn: &'a mut tokio::net::TcpStream,
    req_id: u32,
    count: u32,
    tag: &'a str,
) -> impl Future<Output = V2Reply> + 'a {
    let at = Location::caller();
    async move {
        conn.write_all(&v2_request(2, req_id, count, tag.as_bytes()))
            .await
            .unwrap();
        let r = read_v2(conn).await;
        assert_eq!(r.req_id, req_id, "req_id is echoed: {r:?} (at {at})");
        r
    }
}

/// IDs of a JSON array of numbers or of decimal strings.
#[track_caller]
fn json_ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| match x {
            Value::Number(n) => n.as_u64().unwrap(),
            Value::String(s) => s.parse().unwrap(),
            other => panic!("not an ID: {other}"),
        })
        .collect()
}

fn join(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// One ID of `tag` through each single-ID route in turn (`i` picks the route), asserting the
/// route's exact success body; `Err(description)` when the route answered an error.
#[track_caller]
fn one_id<'a>(
    s: SocketAddr,
    tcp: &'a mut tokio::net::TcpStream,
    tag: &'a str,
    i: usize,
) -> impl Future<Output = Result<u64, String>> + 'a {
    let at = Location::caller();
    async move {
        match i % 5 {
            0 => {
                let r = v2_segment(tcp, i as u32, 1, tag).await;
                if r.status != 0 {
                    return Err(format!("v2 status {}: {}", r.status, r.message));
                }
                assert_eq!(r.ids.len(), 1, "(at {at})");
                Ok(r.ids[0])
            }
            1 => {
                let r = get(s, &format!("/v1/segment/{tag}")).await;
                if r.status != 200 {
                    return Err(format!("/v1/segment {}: {}", r.status, r.body));
                }
                let ids = json_ids(&r.json()["ids"]);
                assert_eq!(
                    r.body,
                    format!(r#"{{"tag":"{tag}","ids":[{}]}}"#, join(&ids)),
                    "(at {at})"
                );
                assert_eq!(ids.len(), 1, "(at {at})");
                Ok(ids[0])
            }
            2 => {
                let r = get(s, &format!("/alloc?app_tag={tag}")).await;
                if r.status != 200 {
                    return Err(format!("/alloc {}: {}", r.status, r.body));
                }
                let id = r.json()["id"].as_u64().unwrap();
                assert_eq!(
                    r.body,
                    format!(r#"{{"resp_code":0,"msg":"success","id":{id}}}"#),
                    "(at {at})"
                );
                Ok(id)
            }
            3 => {
                let r = get(s, &format!("/api/v1/id?biz_tag={tag}")).await;
                assert_eq!(
                    r.status, 200,
                    "FeatherID always answers 200: {} (at {at})",
                    r.body
                );
                if r.json()["code"] != 0 {
                    return Err(format!("/api/v1/id: {}", r.body));
                }
                let id = r.json()["data"].as_u64().unwrap();
                assert_eq!(
                    r.body,
                    format!(r#"{{"code":0,"msg":"success","data":{id}}}"#),
                    "(at {at})"
                );
                Ok(id)
            }
            _ => {
                let r = get(s, &format!("/api/segment/get/{tag}")).await;
                if r.status != 200 {
                    return Err(format!("leaf {}: {}", r.status, r.body));
                }
                assert!(
                    r.header("content-type").unwrap().starts_with("text/plain"),
                    "{:?} (at {at})",
                    r.headers
                );
                Ok(r.body
                    .parse()
                    .unwrap_or_else(|_| panic!("not an ID: {:?} (at {at})", r.body)))
            }
        }
    }
}

/// Runs one SQL statement against `url` (not through the server).
async fn sql(url: &str, statement: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", host_port(url)));
    sqlx::query(statement)
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    pool.close().await;
}

/// `max_id` of `tag` in `table`, read straight from the database.
async fn max_id(url: &str, table: &str, tag_column: &str, tag: &str) -> u64 {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let q = format!("SELECT CAST(max_id AS BIGINT) FROM {table} WHERE {tag_column} = 'TAG'")
        .replace("TAG", tag);
    let q = if url.starts_with("mysql") {
        q.replace("AS BIGINT", "AS SIGNED")
    } else {
        q
    };
    let row = sqlx::query(&q).fetch_one(&pool).await.unwrap();
    let v: i64 = row.try_get(0).unwrap();
    pool.close().await;
    u64::try_from(v).unwrap()
}

async fn drop_table(url: &str, table: &str) {
    sql(url, &format!("DROP TABLE IF EXISTS {table}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_serves_one_tag_unique_and_increasing() {
    // The default: SQLite under the data directory, table created on first start.
    let s = TestServer::start(seg_config("")).await;
    wait_segment_ready(s.http).await;
    let tag = "orders";
    create_tag(s.http, tag, 1, 1000).await;
    let mut all: Vec<u64> = Vec::new();

    // v2 op 2, raw bytes: a batch of 1000 is one contiguous, increasing run starting at 1.
    let mut tcp = connect(s.tcp).await;
    let mut frame = vec![0xF1, 0x02, 0, 0, 0, 0x2A, 0, 0, 0x03, 0xE8, 6];
    frame.extend_from_slice(b"orders");
    tcp.write_all(&frame).await.unwrap();
    let head = read_n(&mut tcp, 10).await;
    assert_eq!(
        head,
        [0xF1, 0, 0, 0, 0, 0x2A, 0, 0, 0x03, 0xE8],
        "ok, req 42, 1000 IDs"
    );
    let batch = ids(&read_n(&mut tcp, 8000).await);
    assert_eq!(
        batch[0], 1,
        "ID 0 is never issued; the first is the tag's start"
    );
    for (i, id) in batch.iter().enumerate() {
        assert_eq!(*id, 1 + i as u64, "a v2 batch is contiguous");
    }
    all.extend(&batch);

    // Native JSON, numbers and strings.
    let r = get(s.http, "/v1/segment/orders?count=5").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let got = json_ids(&r.json()["ids"]);
    assert_eq!(
        r.body,
        format!(r#"{{"tag":"orders","ids":[{}]}}"#, join(&got))
    );
    assert_eq!(got.len(), 5);
    all.extend(&got);
    let r = get(s.http, "/v1/segment/orders?count=3&format=string").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = json_ids(&r.json()["ids"]);
    let quoted: Vec<String> = got.iter().map(|id| format!("\"{id}\"")).collect();
    assert_eq!(
        r.body,
        format!(r#"{{"tag":"orders","ids":[{}]}}"#, quoted.join(","))
    );
    all.extend(&got);
    // Fixed-width radix62: the segment's consecutive IDs, in strings that sort like them.
    let r = get(s.http, "/v1/segment/orders?count=2&format=radix62").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let texts: Vec<String> = r.json()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let read: Vec<u64> = texts
        .iter()
        .map(|t| floe_core::IdForm::Radix62.parse(t, None).unwrap())
        .collect();
    assert_eq!(read[1], read[0] + 1, "{texts:?}");
    assert!(texts[0] < texts[1] && texts[0].len() == 11, "{texts:?}");
    all.extend(&read);
    // friendly shows a snowflake ID's time and fields: segment IDs have none.
    let r = get(s.http, "/v1/segment/orders?format=friendly").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("format=friendly is for snowflake IDs"),
        "{}",
        r.body
    );
    let r = get(s.http, "/v1/segment/orders").await;
    assert_eq!(json_ids(&r.json()["ids"]).len(), 1, "count defaults to 1");
    all.extend(json_ids(&r.json()["ids"]));

    // Distributed ID Generator.
    let r = get(s.http, "/alloc?app_tag=orders").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["id"].as_u64().unwrap();
    assert_eq!(
        r.body,
        format!(r#"{{"resp_code":0,"msg":"success","id":{id}}}"#)
    );
    all.push(id);
    let r = get(s.http, "/health?app_tag=orders").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let left = r.json()["left"].as_u64().unwrap();
    assert_eq!(
        r.body,
        format!(r#"{{"resp_code":0,"msg":"success","left":{left}}}"#)
    );
    // [1, 1001) then, fetched at once after it, a doubled step (Leaf's adaptive step): [1001, 3001).
    assert_eq!(
        left,
        3000 - all.len() as u64,
        "IDs buffered after {}",
        all.len()
    );

    // FeatherID.
    let r = get(s.http, "/api/v1/id?biz_tag=orders").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["data"].as_u64().unwrap();
    assert_eq!(
        r.body,
        format!(r#"{{"code":0,"msg":"success","data":{id}}}"#)
    );
    all.push(id);
    let r = get(s.http, "/api/v1/id/batch?biz_tag=orders&count=7").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = json_ids(&r.json()["data"]);
    assert_eq!(got.len(), 7);
    assert_eq!(
        r.body,
        format!(r#"{{"code":0,"msg":"success","data":[{}]}}"#, join(&got))
    );
    all.extend(&got);
    let r = get(s.http, "/api/v1/id/batch?biz_tag=orders&count=1000").await;
    let got = json_ids(&r.json()["data"]);
    assert_eq!(got.len(), 1000, "{}", &r.body[..r.body.len().min(200)]);
    all.extend(&got);

    // Leaf: plain text.
    let r = get(s.http, "/api/segment/get/orders").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    all.push(r.body.parse().unwrap());

    // Every single-ID route once more, then v2 again.
    for i in 0..5 {
        all.push(one_id(s.http, &mut tcp, tag, i).await.unwrap());
    }
    let r = v2_segment(&mut tcp, 7, 1000, tag).await;
    assert_eq!((r.status, r.ids.len()), (0, 1000), "{}", r.message);
    all.extend(&r.ids);

    // One node, adjacent segments: the IDs are exactly 1..=n in request order, whatever route.
    assert_increasing(&all);
    let want: Vec<u64> = (1..=all.len() as u64).collect();
    assert_eq!(all, want, "IDs across routes are 1..=n in request order");
    s.stop().await.0.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_get_the_documented_errors() {
    let s = TestServer::start(seg_config("")).await;
    wait_segment_ready(s.http).await;
    create_tag(s.http, "orders", 1, 100).await;
    let h = s.http;

    // v2: the connection survives every error, req_id is echoed.
    let mut tcp = connect(s.tcp).await;
    let r = v2_segment(&mut tcp, 11, 1, "").await;
    assert_eq!(r.status, 1, "empty tag: {r:?}");
    assert!(r.message.contains("non-empty tag"), "{}", r.message);
    let r = v2_segment(&mut tcp, 12, 1, "nope").await;
    assert_eq!((r.status, r.message.as_str()), (2, "unknown tag `nope`"));
    let r = v2_segment(&mut tcp, 13, 0, "orders").await;
    assert_eq!(
        (r.status, r.message.as_str()),
        (1, "count must be 1..=100000")
    );
    let r = v2_segment(&mut tcp, 14, 100_001, "orders").await;
    assert_eq!(r.status, 4, "over max_count: {r:?}");
    assert!(
        r.message.contains("100001") && r.message.contains("100000"),
        "{}",
        r.message
    );
    let r = v2_segment(&mut tcp, 15, 100_001, "nope").await;
    assert_eq!(r.status, 4, "the count is checked before the tag: {r:?}");
    tcp.write_all(&v2_request(2, 16, 1, &[0xFF, 0xFE]))
        .await
        .unwrap();
    let r = read_v2(&mut tcp).await;
    assert_eq!((r.status, r.req_id), (1, 16), "non-UTF-8 tag: {r:?}");
    let r = v2_segment(&mut tcp, 17, 3, "orders").await;
    assert_eq!(
        (r.status, r.ids.clone()),
        (0, vec![1, 2, 3]),
        "{}",
        r.message
    );

    // Native.
    let r = get(h, "/v1/segment/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body, error_body("unknown_tag", "unknown tag `nope`"));
    let r = get(h, "/v1/segment/nope?count=2").await;
    assert_eq!(
        (r.status, r.body.clone()),
        (404, error_body("unknown_tag", "unknown tag `nope`"))
    );
    for bad in ["0", "-1", "abc", "100001", "", "1.5", "99999999999"] {
        let r = get(h, &format!("/v1/segment/orders?count={bad}")).await;
        assert_eq!(r.status, 400, "count={bad}: {}", r.body);
        assert_eq!(
            r.body,
            error_body(
                "bad_request",
                &format!("count must be an integer in 1..=100000, got {bad:?}")
            ),
            "count={bad}"
        );
    }
    let r = get(h, "/v1/segment/orders?format=xml").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        error_body(
            "bad_request",
            "format must be one of number, string, hex, radix62, radix36, friendly, got \"xml\""
        )
    );
    let r = get(h, "/v1/segment/").await;
    assert_eq!(r.status, 404, "no tag, no route: {}", r.body);
    assert_eq!(r.json()["error"]["code"], "not_found");
    let r = request(h, "POST", "/v1/segment/orders", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 405, "{}", r.body);

    // Distributed ID Generator: HTTP 500, resp_code -1, id/left 0.
    for path in ["/alloc", "/alloc?app_tag=", "/alloc?biz_tag=orders"] {
        let r = get(h, path).await;
        assert_eq!(r.status, 500, "{path}");
        assert_eq!(
            r.body, r#"{"resp_code":-1,"msg":"app_tag is required","id":0}"#,
            "{path}"
        );
    }
    let r = get(h, "/alloc?app_tag=nope").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.body,
        r#"{"resp_code":-1,"msg":"unknown tag `nope`","id":0}"#
    );
    for path in ["/health", "/health?app_tag="] {
        let r = get(h, path).await;
        assert_eq!(r.status, 500, "{path}");
        assert_eq!(
            r.body, r#"{"resp_code":-1,"msg":"app_tag is required","left":0}"#,
            "{path}"
        );
    }
    let r = get(h, "/health?app_tag=nope").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.body,
        r#"{"resp_code":-1,"msg":"unknown tag `nope`","left":0}"#
    );

    // FeatherID: always HTTP 200; code 1 missing tag, 2 segment failure, 3 bad count.
    for path in [
        "/api/v1/id",
        "/api/v1/id?biz_tag=",
        "/api/v1/id/batch?count=5",
        "/api/v1/id/batch?biz_tag=&count=5",
    ] {
        let r = get(h, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.body, r#"{"code":1,"msg":"biz_tag is required","data":null}"#,
            "{path}"
        );
    }
    for path in [
        "/api/v1/id?biz_tag=nope",
        "/api/v1/id/batch?biz_tag=nope&count=5",
    ] {
        let r = get(h, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.body, r#"{"code":2,"msg":"unknown tag `nope`","data":null}"#,
            "{path}"
        );
    }
    for bad in ["0", "-1", "abc", "1001", "", "99999999999"] {
        let r = get(h, &format!("/api/v1/id/batch?biz_tag=orders&count={bad}")).await;
        assert_eq!(r.status, 200, "count={bad}");
        assert_eq!(
            r.body,
            format!(
                r#"{{"code":3,"msg":"count must be an integer in 1..=1000, got \"{bad}\"","data":null}}"#
            ),
            "count={bad}"
        );
    }
    let r = get(h, "/api/v1/id/batch?biz_tag=orders").await;
    assert_eq!(
        r.body,
        r#"{"code":3,"msg":"count is required: an integer in 1..=1000","data":null}"#
    );

    // Leaf: plain text errors.
    let r = get(h, "/api/segment/get/nope").await;
    assert_eq!((r.status, r.body.as_str()), (404, "unknown tag `nope`"));
    let r = get(h, "/api/segment/get/").await;
    assert_eq!(r.status, 404, "{}", r.body);

    // Admin: 401 without or with a wrong token, on every tag route.
    for (method, path, body) in [
        ("GET", "/admin/tags", ""),
        ("POST", "/admin/tags", r#"{"tag":"x","start":1,"step":10}"#),
        ("PUT", "/admin/tags/orders", r#"{"step":10}"#),
    ] {
        let r = request(h, method, path, &[], body).await.unwrap();
        assert_eq!(r.status, 401, "{method} {path} without token");
        assert_eq!(
            r.body,
            error_body(
                "unauthorized",
                "admin routes need the header `Authorization: Bearer <server.admin_token>`"
            )
        );
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        let r = request(
            h,
            method,
            path,
            &[("Authorization", "Bearer not-the-token")],
            body,
        )
        .await
        .unwrap();
        assert_eq!(r.status, 401, "{method} {path} with a wrong token");
        assert_eq!(
            r.body,
            error_body("unauthorized", "the bearer token is wrong")
        );
    }
    let r = get(h, "/admin/tags").await;
    assert_eq!(r.status, 401);
    // Nothing was created by the refused requests.
    assert_eq!(get(h, "/alloc?app_tag=x").await.status, 500);

    // Admin: duplicate, unknown, bad bodies, bad values.
    let r = admin(
        h,
        "POST",
        "/admin/tags",
        r#"{"tag":"orders","start":5,"step":10}"#,
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.body,
        error_body("tag_exists", "tag `orders` exists already")
    );
    let r = admin(h, "PUT", "/admin/tags/nope", r#"{"step":10}"#).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body, error_body("unknown_tag", "unknown tag `nope`"));
    for (method, path, body) in [
        ("POST", "/admin/tags", r#"{"tag":"#),
        ("POST", "/admin/tags", ""),
        ("POST", "/admin/tags", r#"{"tag":"x","stepp":10}"#),
        ("POST", "/admin/tags", r#"{"tag":"x","step":-1}"#),
        ("POST", "/admin/tags", r#"["x"]"#),
        ("PUT", "/admin/tags/orders", "step=10"),
        ("PUT", "/admin/tags/orders", r#"{"step":"ten"}"#),
        ("PUT", "/admin/tags/orders", "{}"),
    ] {
        let r = admin(h, method, path, body).await;
        assert_eq!(r.status, 400, "{method} {path} {body:?}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "bad_request", "{}", r.body);
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("the body must be JSON"),
            "{}",
            r.body
        );
    }
    let long = "t".repeat(129);
    for (body, message) in [
        (
            r#"{"tag":"x","start":0,"step":10}"#.to_string(),
            "start must be at least 1 (ID 0 is never issued)".to_string(),
        ),
        (
            r#"{"tag":"x","start":1,"step":0}"#.to_string(),
            "step must be at least 1".to_string(),
        ),
        (
            r#"{"tag":"","start":1,"step":10}"#.to_string(),
            "tag \"\" is invalid: it is empty; allowed are 1..=128 bytes of UTF-8 without control characters".to_string(),
        ),
        (
            format!(r#"{{"tag":"{long}","start":1,"step":10}}"#),
            format!(
                "tag {}… is invalid: it is too long; allowed are 1..=128 bytes of UTF-8 without control characters",
                &format!("{long:?}")[..72]
            ),
        ),
    ] {
        let r = admin(h, "POST", "/admin/tags", &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.body, error_body("bad_request", &message));
    }
    let r = admin(h, "PUT", "/admin/tags/orders", r#"{"step":0}"#).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body, error_body("bad_request", "step must be at least 1"));

    // The good cases answer with the row.
    let r = admin(h, "PUT", "/admin/tags/orders", r#"{"step":250}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["step"], 250);
    assert_eq!(r.json()["tag"], "orders");
    let r = admin(h, "POST", "/admin/tags", r#"{"tag":"defaults"}"#).await;
    assert_eq!(r.status, 201, "start and step are optional: {}", r.body);
    assert_eq!(r.json(), json!({"tag":"defaults","max_id":1,"step":1000}));
    let r = admin(h, "GET", "/admin/tags", "").await;
    assert_eq!(r.status, 200);
    let names: Vec<String> = r.json()["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["defaults", "orders"], "{}", r.body);

    // After all that the tag still serves, right after the IDs handed out above.
    let r = v2_segment(&mut tcp, 18, 2, "orders").await;
    assert_eq!((r.status, r.ids), (0, vec![4, 5]));
    s.stop().await.0.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tags_keep_no_memory() {
    const TAGS: u32 = 100_000;
    const CONNECTIONS: u32 = 4;
    const WRITES: u32 = 5;
    let s = TestServer::start(seg_config("")).await;
    wait_segment_ready(s.http).await;
    let real = unique("real");
    create_tag(s.http, &real, 1, 100).await;
    let ghost = unique("ghost");

    let started = Instant::now();
    let per_conn = TAGS / CONNECTIONS;
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let (addr, ghost) = (s.tcp, ghost.clone());
        tasks.push(tokio::spawn(async move {
            let (mut rd, mut wr) = connect(addr).await.into_split();
            let first = c * per_conn;
            let tag = move |i: u32| format!("{ghost}_{i}");
            let tags = tag.clone();
            // Writes and reads run together: the server stops reading while replies back up.
            let writer = tokio::spawn(async move {
                let chunk = per_conn / WRITES;
                for w in 0..WRITES {
                    let mut buf = Vec::new();
                    for i in first + w * chunk..first + (w + 1) * chunk {
                        buf.extend_from_slice(&v2_request(2, i, 1, tags(i).as_bytes()));
                    }
                    wr.write_all(&buf).await.unwrap();
                }
                wr
            });
            let mut rd = tokio::io::BufReader::with_capacity(1 << 16, &mut rd);
            for i in first..first + per_conn {
                let mut head = [0u8; 10];
                tokio::time::timeout(WAIT, rd.read_exact(&mut head))
                    .await
                    .expect("reply in time")
                    .unwrap();
                let len = u32::from_be_bytes(head[6..10].try_into().unwrap()) as usize;
                let mut body = vec![0u8; len];
                rd.read_exact(&mut body).await.unwrap();
                let req_id = u32::from_be_bytes(head[2..6].try_into().unwrap());
                assert_eq!(
                    (head[0], head[1], req_id),
                    (0xF1, 2, i),
                    "unknown tag, in order"
                );
                assert_eq!(
                    String::from_utf8(body).unwrap(),
                    format!("unknown tag `{}`", tag(i))
                );
            }
            writer.await.unwrap()
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(240), t)
            .await
            .expect("100,000 unknown tags answered within 240 s")
            .unwrap();
    }
    let elapsed = started.elapsed();

    // Only the real tag exists, and only it has a buffer.
    let r = admin(s.http, "GET", "/admin/tags", "").await;
    assert_eq!(r.status, 200);
    let tags = r.json()["tags"].as_array().unwrap().clone();
    assert_eq!(tags.len(), 1, "{}", r.body);
    assert_eq!(tags[0]["tag"], real.as_str());
    // The node keeps per-tag state (published as floe_segment_* gauges) only for tags it serves.
    let mut tcp = connect(s.tcp).await;
    let r = v2_segment(&mut tcp, 1, 10, &real).await;
    assert_eq!((r.status, r.ids.len()), (0, 10), "{}", r.message);
    // The gauge shows what the buffer holds, as /health reports it (set by the periodic
    // maintenance, so it is awaited).
    let gauge = format!("floe_segment_remaining{{tag=\"{real}\"}}");
    let metrics = eventually_async(
        Duration::from_secs(5),
        "the served tag's gauge shows what its buffer holds",
        async || {
            let left = get(s.http, &format!("/health?app_tag={real}")).await.json()["left"]
                .as_f64()
                .expect("left");
            let m = get(s.http, "/metrics").await.body;
            match metric_value(&m, &gauge) {
                Some(v) if v == left => Ok(m),
                v => Err(format!("{gauge} {v:?}, /health left {left}")),
            }
        },
    )
    .await;
    assert!(
        !metrics.contains(&ghost),
        "no state was kept for an unknown tag"
    );

    // Still healthy.
    let r = get(s.http, "/readyz").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(s.http, &format!("/alloc?app_tag={real}")).await;
    assert_eq!(r.body, r#"{"resp_code":0,"msg":"success","id":11}"#);
    eprintln!("100,000 unknown tags over v2 in {elapsed:?}");
    s.stop().await.0.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_segment_is_fetched_before_the_buffer_runs_dry() {
    // A fixed step (min = max), so the buffer's size is exact: the current segment's rest plus,
    // once 10% of it is used (segment.refill_threshold), the whole next one.
    let s = TestServer::start(seg_config("min_step = 100\nmax_step = 100\n")).await;
    wait_segment_ready(s.http).await;
    create_tag(s.http, "orders", 1, 100).await;
    let mut tcp = connect(s.tcp).await;
    let mut all = Vec::new();
    // 20 of the first segment, then 100 at a time: each time 20 of a fresh segment are used,
    // so the one after it must be fetched in the background and 80 + 100 IDs be held.
    for (round, n) in [20, 100, 100, 100, 100].into_iter().enumerate() {
        let r = v2_segment(&mut tcp, round as u32, n, "orders").await;
        assert_eq!(r.status, 0, "{}", r.message);
        all.extend(r.ids);
        let what = format!(
            "after {} IDs the next segment is prefetched (else a request would wait on the database)",
            all.len()
        );
        eventually_async(Duration::from_secs(3), &what, async || {
            let r = get(s.http, "/health?app_tag=orders").await;
            (r.body == r#"{"resp_code":0,"msg":"success","left":180}"#)
                .then_some(())
                .ok_or(r.body)
        })
        .await;
    }
    assert_eq!(all, (1..=420).collect::<Vec<u64>>());
    s.stop().await.0.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_continues_after_the_last_id() {
    let config = seg_config("");
    let s = TestServer::start(config.clone()).await;
    wait_segment_ready(s.http).await;
    create_tag(s.http, "orders", 1, 1000).await;
    let mut tcp = connect(s.tcp).await;
    let mut seen = Vec::new();
    // Into the second (prefetched, doubled) segment, so both are held at the stop.
    for (req, n) in [(1, 700), (2, 700), (3, 37)] {
        let r = v2_segment(&mut tcp, req, n, "orders").await;
        assert_eq!(r.status, 0, "{}", r.message);
        seen.extend(r.ids);
    }
    let r = get(s.http, "/alloc?app_tag=orders").await;
    seen.push(r.json()["id"].as_u64().unwrap());
    assert_increasing(&seen);
    let last = *seen.last().unwrap();
    assert_eq!(last, 1438);
    drop(tcp);

    let (result, dir) = s.stop().await;
    result.unwrap();
    // The unused rest went back: the row now ends right after the last ID issued.
    let url = format!("sqlite:{}", dir.path().join("floe.db").display());
    assert_eq!(
        max_id(&url, "floe_segments", "biz_tag", "orders").await,
        last + 1
    );

    let s = TestServer::start_in(config, dir).await;
    let r = get(s.http, "/alloc?app_tag=orders").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["id"].as_u64().unwrap(), last + 1, "{}", r.body);
    let mut tcp = connect(s.tcp).await;
    let r = v2_segment(&mut tcp, 4, 5000, "orders").await;
    assert_eq!(r.status, 0, "{}", r.message);
    let want: Vec<u64> = (last + 2..last + 2 + 5000).collect();
    assert_eq!(
        r.ids, want,
        "a batch larger than the step is one contiguous run"
    );
    s.stop().await.0.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refill_in_flight_at_shutdown_is_handed_back_too() {
    let pg = postgres_url();
    let table = unique("seg_inflight");
    let config = seg_config(&format!(
        "url = \"{pg}\"\ntable = \"{table}\"\ncall_timeout = \"10s\"\n"
    ));
    let s = TestServer::start(config).await;
    wait_segment_ready(s.http).await;
    create_tag(s.http, "orders", 1, 1000).await;
    let mut tcp = connect(s.tcp).await;
    let r = v2_segment(&mut tcp, 1, 50, "orders").await;
    assert_eq!(r.ids, (1..=50).collect::<Vec<u64>>(), "{}", r.message);

    // Hold the tag's row, so the prefetch the next request starts is still running at the stop.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&pg).await.unwrap();
    let mut lock = pool.begin().await.unwrap();
    sqlx::query(&format!(
        "SELECT max_id FROM {table} WHERE biz_tag = 'orders' FOR UPDATE"
    ))
    .execute(&mut *lock)
    .await
    .unwrap();
    let r = v2_segment(&mut tcp, 2, 51, "orders").await;
    assert_eq!(r.ids, (51..=101).collect::<Vec<u64>>(), "{}", r.message);
    drop(tcp);
    let tcp_addr = s.tcp;
    let stopping = tokio::spawn(s.stop());
    // The stop has begun (the listener is closed) while the claim still waits on the lock.
    eventually_async(
        WAIT,
        "the stopping server closes its listener",
        async || tokio::net::TcpStream::connect(tcp_addr).await.is_err(),
    )
    .await;
    assert!(
        !stopping.is_finished(),
        "the stop must wait for the claim in flight"
    );
    lock.commit().await.unwrap();
    let (result, _dir) = tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .expect("stopped in time")
        .unwrap();
    result.unwrap();
    pool.close().await;
    // The claim landed during the stop; its range went back with the rest of the first one.
    assert_eq!(max_id(&pg, &table, "biz_tag", "orders").await, 102);
    drop_table(&pg, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_serves_the_buffer_then_fails_fast_then_recovers_without_restart() {
    let pg = postgres_url();
    let proxy = ChaosProxy::start(&host_port(&pg)).await.unwrap();
    let table = unique("seg_outage");
    let tag = "pay";
    let config = seg_config(&format!(
        "url = \"{}\"\ntable = \"{table}\"\nmax_step = 100\ncall_timeout = \"500ms\"\nmax_connections = 2\n",
        with_host_port(&pg, proxy.addr())
    ));
    let s = TestServer::start(config).await;
    wait_segment_ready(s.http).await;
    create_tag(s.http, tag, 1, 100).await;
    let mut tcp = connect(s.tcp).await;
    let mut seen: Vec<u64> = Vec::new();

    // Warm: take 20 of [1, 101); the next segment [101, 201) is fetched in the background.
    let r = v2_segment(&mut tcp, 1, 20, tag).await;
    assert_eq!(r.status, 0, "{}", r.message);
    seen.extend(r.ids);
    eventually_async(Duration::from_secs(5), "the prefetch", async || {
        let r = get(s.http, &format!("/health?app_tag={tag}")).await;
        (r.body == r#"{"resp_code":0,"msg":"success","left":180}"#)
            .then_some(())
            .ok_or(r.body)
    })
    .await;

    // The database goes away: every buffered ID is still served, through every route.
    proxy.cut();
    let mut i = 0;
    let first_error = loop {
        let t = Instant::now();
        let got = one_id(s.http, &mut tcp, tag, i).await;
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "request {i} took {:?}",
            t.elapsed()
        );
        match got {
            Ok(id) => seen.push(id),
            Err(e) => break e,
        }
        i += 1;
        assert!(i <= 200, "the buffer should have run dry");
    };
    assert_eq!(
        i, 180,
        "served {i} buffered IDs during the outage, then: {first_error}"
    );

    // Then every route answers its documented "unavailable", promptly, again and again.
    for round in 0..3 {
        let t = Instant::now();
        let r = v2_segment(&mut tcp, 1000 + round, 1, tag).await;
        assert_eq!(r.status, 3, "v2 unavailable: {r:?}");
        assert!(r.message.contains("unavailable"), "{}", r.message);
        let r = get(s.http, &format!("/v1/segment/{tag}")).await;
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.json()["error"]["code"], "unavailable", "{}", r.body);
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            message.starts_with(&format!("segment store unavailable for tag `{tag}`")),
            "{message}"
        );
        let r = get(s.http, &format!("/alloc?app_tag={tag}")).await;
        assert_eq!(r.status, 500, "{}", r.body);
        assert_eq!(
            r.body,
            format!(r#"{{"resp_code":-1,"msg":{},"id":0}}"#, json!(message)),
            "the same message in the Distributed ID Generator's shape"
        );
        assert!(r
            .body
            .starts_with(r#"{"resp_code":-1,"msg":"segment store unavailable"#));
        assert!(r.body.ends_with(r#"","id":0}"#));
        let r = get(s.http, &format!("/api/v1/id?biz_tag={tag}")).await;
        assert_eq!(
            (r.status, r.json()["code"].as_u64()),
            (200, Some(2)),
            "{}",
            r.body
        );
        assert!(r.body.ends_with(r#"","data":null}"#));
        let r = get(s.http, &format!("/api/segment/get/{tag}")).await;
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(
            r.body.starts_with("segment store unavailable"),
            "{}",
            r.body
        );
        let elapsed = t.elapsed();
        assert!(
            elapsed < Duration::from_secs(3),
            "5 error replies took {elapsed:?}"
        );
    }

    // A tag this node has not served yet cannot be looked up: that is "unavailable" too, not
    // "unknown tag" (which would tell clients the tag does not exist), and just as prompt.
    let t = Instant::now();
    let r = get(s.http, "/v1/segment/not_loaded_yet").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "unavailable", "{}", r.body);
    let r = v2_segment(&mut tcp, 2000, 1, "not_loaded_yet").await;
    assert_eq!(r.status, 3, "{r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    let r = admin(s.http, "GET", "/admin/tags", "").await;
    assert_eq!(r.status, 503, "listing needs the database: {}", r.body);

    // The database comes back: service resumes by itself, no restart.
    proxy.heal();
    let healed = Instant::now();
    let id = eventually_async(
        Duration::from_secs(5),
        "recovery after the heal",
        async || one_id(s.http, &mut tcp, tag, 0).await,
    )
    .await;
    let recovery = healed.elapsed();
    // "Within a second" is the design (backoff capped at 0.5 s); the bound is generous so a
    // loaded CI machine does not fail it.
    assert!(
        recovery < Duration::from_secs(10),
        "recovered after {recovery:?}"
    );
    seen.push(id);
    // And keeps refilling: many more segments, every route.
    for i in 0..300 {
        seen.push(one_id(s.http, &mut tcp, tag, i).await.unwrap());
    }
    let r = v2_segment(&mut tcp, 5000, 1000, tag).await;
    assert_eq!(r.status, 0, "{}", r.message);
    seen.extend(r.ids);

    assert_increasing(&seen);
    assert_eq!(
        seen.iter().copied().collect::<HashSet<_>>().len(),
        seen.len()
    );
    assert_eq!(
        &seen[..200],
        (1..=200).collect::<Vec<u64>>(),
        "the buffer held [1, 201)"
    );
    eprintln!("outage: recovered {recovery:?} after heal");
    s.stop().await.0.unwrap();
    drop(proxy);
    drop_table(&pg, &table).await;
}

/// Another system's table on MariaDB and how its own route answers.
struct Foreign<'a> {
    /// `segment.schema`.
    schema: &'a str,
    /// The system's DDL, with `TABLE_NAME` for the table.
    ddl: &'a str,
    /// Its sample rows.
    rows: &'a str,
    /// The tag column.
    tag_column: &'a str,
    /// A tag of the sample rows.
    tag: &'a str,
    /// The system's route, with `TAG`.
    route: &'a str,
    /// Its success body, with `ID`.
    body: &'a str,
}

/// Starts a server on another system's own table (MariaDB), serves the tag through the
/// system's route (IDs 1, 2, 3…), stops it, and checks the unused rest went back to the row.
async fn foreign_table(f: Foreign<'_>) {
    let Foreign {
        schema,
        ddl,
        rows,
        tag_column,
        tag,
        route,
        body,
    } = f;
    let table = unique(
        &floe_store::segment::TableSpec::preset(schema)
            .unwrap()
            .table,
    );
    let url = mysql_url();
    sql(&url, &ddl.replace("TABLE_NAME", &table)).await;
    sql(&url, &rows.replace("TABLE_NAME", &table)).await;
    let s = TestServer::start(seg_config(&format!(
        "url = \"{url}\"\nschema = \"{schema}\"\ntable = \"{table}\"\n"
    )))
    .await;
    for id in 1..=5 {
        let r = get(s.http, &route.replace("TAG", tag)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body, body.replace("ID", &id.to_string()), "{schema}");
    }
    let mut tcp = connect(s.tcp).await;
    let r = v2_segment(&mut tcp, 1, 100, tag).await;
    assert_eq!(r.status, 0, "{}", r.message);
    let last = *r.ids.last().unwrap();
    assert_eq!(r.ids, (6..=105).collect::<Vec<u64>>());
    drop(tcp);
    s.stop().await.0.unwrap();
    assert_eq!(
        max_id(&url, &table, tag_column, tag).await,
        last + 1,
        "{schema}: the unused rest went back to the table"
    );
    drop_table(&url, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_leafs_own_table() {
    // Leaf's published MySQL DDL and sample row.
    let ddl = "CREATE TABLE TABLE_NAME (
  biz_tag varchar(128) NOT NULL DEFAULT '',
  max_id bigint(20) NOT NULL DEFAULT '1',
  step int(11) NOT NULL,
  description varchar(256) DEFAULT NULL,
  update_time timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (biz_tag)
) ENGINE=InnoDB";
    let row = "INSERT INTO TABLE_NAME (biz_tag, max_id, step, description) VALUES ('leaf-segment-test', 1, 2000, 'Test leaf Segment Mode Get Id')";
    foreign_table(Foreign {
        schema: "leaf",
        ddl,
        rows: row,
        tag_column: "biz_tag",
        tag: "leaf-segment-test",
        route: "/api/segment/get/TAG",
        body: "ID",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_featherids_own_table() {
    // FeatherID's DDL and sample rows (seed 004): max_id 0, and ID 0 is never issued.
    let ddl = "CREATE TABLE TABLE_NAME (
  `biz_tag` varchar(64) NOT NULL,
  `max_id` bigint NOT NULL DEFAULT '0',
  `step` int NOT NULL DEFAULT '1000',
  `update_time` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`biz_tag`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
    let rows = "INSERT INTO TABLE_NAME (biz_tag, max_id, step) VALUES ('user', 0, 1000), ('order', 0, 1000)";
    foreign_table(Foreign {
        schema: "featherid",
        ddl,
        rows,
        tag_column: "biz_tag",
        tag: "user",
        route: "/api/v1/id?biz_tag=TAG",
        body: r#"{"code":0,"msg":"success","data":ID}"#,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_the_distributed_id_generators_own_table() {
    // Seed 001's DDL and sample row: tag column `app_tag`, max_id 0.
    let ddl = "CREATE TABLE TABLE_NAME (
    `app_tag`     VARCHAR(32) NOT NULL,
    `max_id`      BIGINT      NOT NULL,
    `step`        BIGINT      NOT NULL,
    `update_time` DATETIME DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    PRIMARY KEY (`app_tag`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8";
    let row =
        "INSERT INTO TABLE_NAME (`app_tag`, `max_id`, `step`) VALUES ('test_business', 0, 100000)";
    foreign_table(Foreign {
        schema: "dig",
        ddl,
        rows: row,
        tag_column: "app_tag",
        tag: "test_business",
        route: "/alloc?app_tag=TAG",
        body: r#"{"resp_code":0,"msg":"success","id":ID}"#,
    })
    .await;
}

/// One tag rule at every edge and on every store: a NUL or an over-long tag is a 400 /
/// v2 status 1 before the database sees it (PostgreSQL used to answer 503 for a NUL), and
/// `Orders` / `orders` are two tags on MariaDB as on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_follow_one_rule_on_postgres_and_mariadb() {
    for url in [postgres_url(), mysql_url()] {
        let table = unique("seg_rule");
        let s = TestServer::start(seg_config(&format!(
            "url = \"{url}\"\ntable = \"{table}\"\n"
        )))
        .await;
        wait_segment_ready(s.http).await;
        create_tag(s.http, "Orders", 100, 10).await;
        create_tag(s.http, "orders", 5000, 10).await;
        let r = get(s.http, "/v1/segment/Orders?count=1").await;
        assert_eq!(r.json()["ids"], json!([100]), "{url}: {}", r.body);
        let r = get(s.http, "/v1/segment/orders?count=1").await;
        assert_eq!(r.json()["ids"], json!([5000]), "{url}: {}", r.body);
        let long = "x".repeat(129);
        for (path, shown) in [
            ("/v1/segment/nul%00x?count=1", "\"nul\\0x\""),
            (&format!("/v1/segment/{long}?count=1")[..], "\"xxxx"),
        ] {
            let r = get(s.http, path).await;
            assert_eq!(r.status, 400, "{url} {path}: {}", r.body);
            let e = &r.json()["error"];
            assert_eq!(e["code"], "bad_request", "{}", r.body);
            let m = e["message"].as_str().unwrap();
            assert!(m.contains(shown) && m.contains("1..=128 bytes"), "{m}");
        }
        let r = admin(s.http, "POST", "/admin/tags", r#"{"tag":"a\u0000b"}"#).await;
        assert_eq!(r.status, 400, "{url}: {}", r.body);
        let mut tcp = connect(s.tcp).await;
        let r = v2_segment(&mut tcp, 7, 1, "nul\0x").await;
        assert_eq!(r.status, 1, "{url}: bad request, got {r:?}");
        drop(tcp);
        s.stop().await.0.unwrap();
        drop_table(&url, &table).await;
    }
}
