//! Every HTTP route over a real socket, bodies byte for byte where the originals define them.

mod common;

use common::*;
use floe_testkit::http::{get, request};
use floe_testkit::{assert_increasing, eventually_async, metric_value};
use serde_json::json;

async fn server() -> TestServer {
    let mut cfg = config();
    cfg.server.max_count = 1000;
    cfg.snowflake.identity = cfg
        .snowflake
        .layout
        .identity(&[("zone".into(), 1), ("dc".into(), 2), ("machine".into(), 3)])
        .unwrap();
    TestServer::start(cfg).await
}

#[tokio::test]
async fn snowflake_route() {
    let s = server().await;
    let r = get(s.http, "/v1/snowflake").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let ids: Vec<u64> = serde_json::from_value(r.json()["ids"].clone()).unwrap();
    assert_eq!(ids.len(), 1, "count defaults to 1");
    assert!(
        r.body.starts_with("{\"ids\":[") && r.body.ends_with("]}"),
        "{}",
        r.body
    );

    let r = get(s.http, "/v1/snowflake?count=1000").await;
    let more: Vec<u64> = serde_json::from_value(r.json()["ids"].clone()).unwrap();
    assert_eq!(more.len(), 1000);
    assert_increasing(&more);
    assert!(more[0] > ids[0]);
    assert!(more
        .iter()
        .all(|id| (id >> 21) & 0x7FF == (1 << 6) | (2 << 3) | 3));

    let r = get(s.http, "/v1/snowflake?count=3&format=string").await;
    assert_eq!(r.status, 200);
    let strs = r.json()["ids"].as_array().unwrap().clone();
    assert_eq!(strs.len(), 3);
    assert!(
        strs.iter()
            .all(|v| v.as_str().unwrap().parse::<u64>().is_ok()),
        "{}",
        r.body
    );

    let r = get(s.http, "/v1/snowflake?count=2&format=number").await;
    assert_eq!(r.json()["ids"].as_array().unwrap().len(), 2);

    for (query, got) in [
        ("count=", ""),
        ("count=0", "0"),
        ("count=-1", "-1"),
        ("count=abc", "abc"),
        ("count=1001", "1001"),
        ("count=2.5", "2.5"),
        ("count=99999999999999999999", "99999999999999999999"),
    ] {
        let r = get(s.http, &format!("/v1/snowflake?{query}")).await;
        assert_eq!(r.status, 400, "{query}");
        assert_eq!(
            r.body,
            error_body(
                "bad_request",
                &format!("count must be an integer in 1..=1000, got {got:?}")
            ),
            "{query}"
        );
    }
    let r = get(s.http, "/v1/snowflake?format=xml").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        error_body(
            "bad_request",
            "format must be one of number, string, hex, radix62, radix36, friendly, got \"xml\""
        )
    );
    s.stop().await.0.unwrap();
}

#[tokio::test]
async fn decode_route() {
    let s = server().await;
    let id: u64 = get(s.http, "/v1/snowflake").await.json()["ids"][0]
        .as_u64()
        .unwrap();
    for path in [format!("/v1/decode/{id}"), format!("/v1/decode/{id:#x}")] {
        let r = get(s.http, &path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let d = r.json();
        assert_eq!(d["id"], id);
        assert_eq!(d["id_hex"], format!("{id:#018x}"));
        assert_eq!(d["unix_ms"], (id >> 32) * 1000);
        assert_eq!(d["fields"]["zone"], 1);
        assert_eq!(d["fields"]["dc"], 2);
        assert_eq!(d["fields"]["machine"], 3);
        assert_eq!(d["fields"]["time"], id >> 32);
        assert_eq!(
            d["layout"],
            "time:32/1s@1970-01-01 zone:5 dc:3 machine:3 lane:5 seq:16"
        );
        assert!(d["time"].as_str().unwrap().ends_with('Z'));
        // Fields come in layout order, most significant first.
        let at = |k: &str| r.body.find(&format!("\"{k}\":")).unwrap();
        assert!(at("fields") < at("zone") && at("zone") < at("dc") && at("dc") < at("machine"));
        assert!(
            at("machine") < at("lane") && at("lane") < at("seq"),
            "{}",
            r.body
        );
    }
    let unrecognised = |t: &str| {
        format!("{t:?} is not an ID in any form: decimal (1..=20 digits), hex (0x… or 16 digits), radix62 (11 of 0-9A-Za-z), radix36 (13 of 0-9a-z) or friendly (yyyyMMddHHmmssSSS-…)")
    };
    for (bad, message) in [
        ("abc", unrecognised("abc")),
        (
            "-1",
            "\"-1\" looks like a friendly ID but is not one: expected the time as 17 digits yyyyMMddHHmmssSSS first".into(),
        ),
        (
            "0xZZ",
            "\"0xZZ\" looks like a hex ID but is not one: expected up to 16 hex digits".into(),
        ),
        (
            "18446744073709551616",
            "\"18446744073709551616\" looks like a number ID but is not one: above the largest ID 18446744073709551615".into(),
        ),
        (
            "zzzzzzzzzzz",
            "\"zzzzzzzzzzz\" looks like a radix62 ID but is not one: above the largest ID 18446744073709551615".into(),
        ),
    ] {
        let r = get(s.http, &format!("/v1/decode/{bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.body, error_body("bad_request", &message), "{bad}");
    }
    s.stop().await.0.unwrap();
}

/// Every `format=` of the ID routes, read back by `/v1/decode` in each form it names.
#[tokio::test]
async fn string_forms_round_trip_through_decode() {
    let s = server().await;
    for form in ["string", "hex", "radix62", "radix36", "friendly"] {
        let r = get(s.http, &format!("/v1/snowflake?count=3&format={form}")).await;
        assert_eq!(r.status, 200, "{form}: {}", r.body);
        let texts: Vec<String> = r.json()["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().expect("a string").to_string())
            .collect();
        let mut read = Vec::new();
        for text in &texts {
            let d = get(s.http, &format!("/v1/decode/{text}")).await;
            assert_eq!(d.status, 200, "{form} {text}: {}", d.body);
            let d = d.json();
            let expected_form = if form == "string" { "number" } else { form };
            assert_eq!(d["form"], expected_form, "{text}");
            assert_eq!(d["forms"][form].as_str(), Some(text.as_str()), "{d}");
            read.push(d["id"].as_u64().unwrap());
        }
        // One request's IDs come from one lane and increase.
        assert_increasing(&read);
        if form != "string" && form != "friendly" {
            let mut sorted = texts.clone();
            sorted.sort();
            assert_eq!(sorted, texts, "{form} strings sort like the IDs");
        }
    }
    // A digits-only radix36 string is read as a number unless the form is named.
    let d = get(s.http, "/v1/decode/0000000000010?form=radix36")
        .await
        .json();
    assert_eq!(
        (d["id"].as_u64(), d["form"].as_str()),
        (Some(36), Some("radix36"))
    );
    let r = get(s.http, "/v1/decode/42?form=base64").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        error_body(
            "bad_request",
            "format must be one of number, string, hex, radix62, radix36, friendly, got \"base64\""
        )
    );
    s.stop().await.0.unwrap();
}

#[tokio::test]
async fn decode_rejects_ids_of_another_layout() {
    let mut cfg = config();
    cfg.snowflake.layout = floe_core_layout("twitter");
    cfg.snowflake.identity = cfg.snowflake.layout.identity(&[]).unwrap();
    let s = TestServer::start(cfg).await;
    let r = get(s.http, &format!("/v1/decode/{}", u64::MAX)).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sign bit"),
        "{}",
        r.body
    );
    s.stop().await.0.unwrap();
}

fn floe_core_layout(spec: &str) -> floe_core::Layout {
    floe_core::Layout::parse(spec).unwrap()
}

#[tokio::test]
async fn info_health_ready_metrics() {
    let s = server().await;
    let info = get(s.http, "/v1/info").await;
    assert_eq!(info.status, 200);
    let i = info.json();
    assert_eq!(
        i["layout"],
        "time:32/1s@1970-01-01 zone:5 dc:3 machine:3 lane:5 seq:16"
    );
    assert_eq!(i["identity"], json!({"zone": 1, "dc": 2, "machine": 3}));
    assert_eq!(i["lanes"], 32);
    assert_eq!(i["capacity"]["ids_per_tick_per_lane"], 65_536);
    assert_eq!(i["max_count"], 1000);
    assert_eq!(i["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(i["ready"], true);
    assert_eq!(i["layout_warning"], serde_json::Value::Null);
    assert_eq!(
        i["modes"],
        json!({"snowflake": true, "segment": true, "numbers": true})
    );
    assert_eq!(i["listen"]["tcp"], s.tcp.to_string());
    assert!(i["high_water_ms"].as_u64().unwrap() > i["clock"]["wall_ms"].as_u64().unwrap());
    assert_eq!(i["clock"]["rollback_exceeded"], false);

    let r = get(s.http, "/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "{\"status\":\"ok\"}"));
    let r = get(s.http, "/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "{\"status\":\"ready\"}"));

    // Metrics are process-wide and the other tests of this file run beside this one: counters
    // are compared before and after (others can only add), gauges awaited at this node's value.
    let issued = "floe_ids_issued_total{mode=\"snowflake\",protocol=\"http\"}";
    let timed = "floe_request_duration_seconds_count{protocol=\"http\",route=\"/v1/snowflake\"}";
    let before = get(s.http, "/metrics").await.body;
    let counted = |page: &str, series: &str| metric_value(page, series).unwrap_or(0.0);
    assert_eq!(get(s.http, "/v1/snowflake?count=7").await.status, 200);
    let m = get(s.http, "/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    assert!(
        counted(&m.body, issued) - counted(&before, issued) >= 7.0,
        "7 IDs issued over HTTP, {issued}: {:?} then {:?}",
        metric_value(&before, issued),
        metric_value(&m.body, issued)
    );
    assert!(
        counted(&m.body, timed) - counted(&before, timed) >= 1.0,
        "one request timed, {timed}: {:?} then {:?}",
        metric_value(&before, timed),
        metric_value(&m.body, timed)
    );
    assert!(
        m.body.contains(
            "floe_request_duration_seconds_bucket{protocol=\"http\",route=\"/v1/snowflake\""
        ),
        "{}",
        m.body
    );
    eventually_async(
        WAIT,
        "the clock and readiness gauges show a ready node with a sound clock",
        async || {
            let page = get(s.http, "/metrics").await.body;
            let value = |series| metric_value(&page, series);
            let shown = [
                ("floe_ready", value("floe_ready") == Some(1.0)),
                (
                    "floe_clock_rollback_exceeded",
                    value("floe_clock_rollback_exceeded") == Some(0.0),
                ),
                (
                    "floe_clock_behind_seconds",
                    value("floe_clock_behind_seconds") == Some(0.0),
                ),
                (
                    // Never more ahead than max_drift (1 s by default).
                    "floe_clock_drift_seconds",
                    value("floe_clock_drift_seconds").is_some_and(|d| (0.0..=1.0).contains(&d)),
                ),
                (
                    "floe_layout_seconds_left",
                    value("floe_layout_seconds_left").is_some_and(|v| v > 0.0),
                ),
            ];
            match shown.iter().find(|(_, ok)| !ok) {
                None => Ok(()),
                Some((name, _)) => Err(format!("{name} {:?}", value(name))),
            }
        },
    )
    .await;
    s.stop().await.0.unwrap();
}

#[tokio::test]
async fn segment_routes_answer_not_configured_in_their_own_shape() {
    let mut config = common::config();
    config.segment = None;
    let s = TestServer::start(config).await;
    let r = get(s.http, "/v1/segment/orders").await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body,
        error_body("unavailable", "segment mode is not configured")
    );
    let r = get(s.http, "/v1/segment/orders?count=0").await;
    assert_eq!(r.status, 400);

    let r = get(s.http, "/alloc?app_tag=test_business").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.body,
        r#"{"resp_code":-1,"msg":"segment mode is not configured","id":0}"#
    );
    let r = get(s.http, "/alloc").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.body,
        r#"{"resp_code":-1,"msg":"app_tag is required","id":0}"#
    );

    let r = get(s.http, "/health?app_tag=test_business").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.body,
        r#"{"resp_code":-1,"msg":"segment mode is not configured","left":0}"#
    );

    let r = get(s.http, "/api/v1/id?biz_tag=user").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        r#"{"code":2,"msg":"segment mode is not configured","data":null}"#
    );
    for path in [
        "/api/v1/id",
        "/api/v1/id?biz_tag=",
        "/api/v1/id/batch?count=5",
    ] {
        let r = get(s.http, path).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body, r#"{"code":1,"msg":"biz_tag is required","data":null}"#,
            "{path}"
        );
    }
    let r = get(s.http, "/api/v1/id/batch?biz_tag=order&count=10").await;
    assert_eq!(
        r.body,
        r#"{"code":2,"msg":"segment mode is not configured","data":null}"#
    );
    for (count, got) in [("0", "0"), ("1001", "1001"), ("abc", "abc"), ("-3", "-3")] {
        let r = get(
            s.http,
            &format!("/api/v1/id/batch?biz_tag=order&count={count}"),
        )
        .await;
        assert_eq!(r.status, 200);
        let want = format!(
            r#"{{"code":3,"msg":{},"data":null}}"#,
            json!(format!("count must be an integer in 1..=1000, got {got:?}"))
        );
        assert_eq!(r.body, want);
    }
    let r = get(s.http, "/api/v1/id/batch?biz_tag=order").await;
    assert_eq!(
        r.body,
        r#"{"code":3,"msg":"count is required: an integer in 1..=1000","data":null}"#
    );

    let r = get(s.http, "/api/segment/get/leaf-segment-test").await;
    assert_eq!(r.status, 503);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(r.body, "segment mode is not configured");
    s.stop().await.0.unwrap();
}

#[tokio::test]
async fn leaf_snowflake_and_decode() {
    let s = server().await;
    let r = get(s.http, "/api/snowflake/get/anykey").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let id: u64 = r.body.parse().unwrap();

    let r = get(s.http, &format!("/decodeSnowflakeId?snowflakeId={id}")).await;
    assert_eq!(r.status, 200);
    let ms = (id >> 32) * 1000;
    let when = chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S%.3f");
    let want = format!(
        r#"{{"timestamp":"{ms}({when})","workerId":"{}","sequenceId":"{}"}}"#,
        (1 << 6) | (2 << 3) | 3,
        id & 0x1F_FFFF
    );
    assert_eq!(r.body, want);

    // Java longs: an ID with the top bit set arrives negative and decodes the same.
    let big = id | (1 << 63);
    let a = get(s.http, &format!("/decodeSnowflakeId?snowflakeId={big}")).await;
    let b = get(
        s.http,
        &format!("/decodeSnowflakeId?snowflakeId={}", big as i64),
    )
    .await;
    assert_eq!(a.body, b.body);

    for bad in ["abc", "1.5", ""] {
        let r = get(s.http, &format!("/decodeSnowflakeId?snowflakeId={bad}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, r#"{"errorMsg":"snowflake Id反解析发生异常!"}"#);
    }
    let r = get(s.http, "/decodeSnowflakeId").await;
    assert_eq!(r.status, 400);
    s.stop().await.0.unwrap();
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let s = server().await;
    let r = get(s.http, "/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body,
        error_body("not_found", "no route for GET /nope; see docs/protocol.md")
    );
    let r = request(s.http, "POST", "/v1/snowflake", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["error"]["code"], "method_not_allowed");
    // Admin routes do not exist without a token.
    for (method, path) in [
        ("GET", "/admin/log-level"),
        ("PUT", "/admin/log-level?level=debug"),
        ("GET", "/api/v1/log/level?level=debug"),
        ("POST", "/api/v1/log/level?level=debug"),
    ] {
        let r = request(s.http, method, path, &[("Authorization", "Bearer x")], "")
            .await
            .unwrap();
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(r.json()["error"]["code"], "not_found");
    }
    s.stop().await.0.unwrap();
}

#[tokio::test]
async fn a_layout_with_less_than_a_year_left_warns_but_serves() {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // 25 bits of seconds last about 388 days; put the end 100 days from now.
    let end_ms = now_ms + 100 * 86_400_000;
    let epoch_ms = (end_ms - (1u64 << 25) * 1000) / 1000 * 1000;
    let mut cfg = config();
    cfg.snowflake.layout = floe_core_layout(&format!("time:25/1s@{epoch_ms} seq:12"));
    cfg.snowflake.identity = cfg.snowflake.layout.identity(&[]).unwrap();
    let s = TestServer::start(cfg).await;
    let i = get(s.http, "/v1/info").await.json();
    let warning = i["layout_warning"].as_str().expect("a warning");
    assert!(warning.contains("days left"), "{warning}");
    assert!(i["layout_seconds_left"].as_u64().unwrap() < 101 * 86_400);
    assert_eq!(get(s.http, "/readyz").await.status, 200);
    assert_eq!(get(s.http, "/v1/snowflake?count=3").await.status, 200);
    // floe_layout_expiring is not checked here: metrics are process-wide and other tests'
    // servers in this process set it too.
    s.stop().await.0.unwrap();
}
