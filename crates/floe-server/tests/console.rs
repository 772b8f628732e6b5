//! The console over real sockets: its page and assets, the three data routes it polls
//! (`/v1/console/rates`, `/segments`, `/cluster`, the last against a Redis registry), and the
//! OpenAPI document that describes every route. The browser test of the page itself is
//! `scripts/test-console`.

mod common;

use common::{config, redis_lease_config, TestServer, WAIT};
use floe_testkit::http::{get, request as http};
use floe_testkit::{eventually_async, metric_value, unique};
use serde_json::Value;

const TOKEN: &str = "console-token";

#[tokio::test]
async fn page_and_assets_are_embedded_with_a_strict_policy() {
    let server = TestServer::start(config()).await;
    for path in ["/", "/console", "/console/rates", "/console/anything"] {
        let r = get(server.http, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(r.body.contains("<title>Floe console</title>"), "{path}");
        let csp = r.header("content-security-policy").unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        // Nothing in the page names another host.
        assert!(!r.body.contains("http://") && !r.body.contains("https://"));
    }
    for (path, ty) in [
        (
            "/console/assets/console.js",
            "text/javascript; charset=utf-8",
        ),
        ("/console/assets/console.css", "text/css; charset=utf-8"),
        ("/console/assets/favicon.svg", "image/svg+xml"),
    ] {
        let r = get(server.http, path).await;
        assert_eq!(
            (r.status, r.header("content-type")),
            (200, Some(ty)),
            "{path}"
        );
        assert!(!r.body.contains("https://"), "{path} names another host");
    }
    // The console's script sends the token only to admin routes and stores it nowhere.
    let js = get(server.http, "/console/assets/console.js").await.body;
    assert!(
        !js.contains("localStorage")
            && !js.contains("sessionStorage")
            && !js.contains("document.cookie")
    );
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn rates_follow_the_metrics_page() {
    let server = TestServer::start(config()).await;
    for _ in 0..3 {
        assert_eq!(get(server.http, "/v1/snowflake?count=5").await.status, 200);
    }
    // The counters are process-global (tests share the recorder), so the console's totals are
    // compared with the scrape page, once nothing moves them any more.
    let rates = eventually_async(WAIT, "a sample with the totals of /metrics", async || {
        let page = get(server.http, "/metrics").await.body;
        let want = metric_value(
            &page,
            r#"floe_ids_issued_total{mode="snowflake",protocol="http"}"#,
        )
        .ok_or("no counter yet".to_string())?;
        let rates = get(server.http, "/v1/console/rates").await.json();
        let got = rates["totals"]["ids"]["snowflake/http"].as_f64();
        (got == Some(want) && !rates["samples"].as_array().unwrap().is_empty())
            .then_some(rates.clone())
            .ok_or(format!("{got:?} != {want}: {rates}"))
    })
    .await;
    assert_eq!(rates["interval_ms"], 1000);
    assert_eq!(rates["capacity"], 900);
    let samples = rates["samples"].as_array().unwrap();
    let last = samples.last().unwrap();
    for key in ["ids_per_second", "requests_per_second", "p50_ms", "p99_ms"] {
        assert!(last.get(key).is_some(), "{key} in {last}");
    }
    let newest = last["unix_ms"].as_u64().unwrap();
    let after = get(server.http, &format!("/v1/console/rates?since={newest}"))
        .await
        .json();
    assert!(
        after["samples"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["unix_ms"].as_u64().unwrap() > newest),
        "{after}"
    );
    let bad = get(server.http, "/v1/console/rates?since=yesterday").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["code"], "bad_request");
    server.stop().await.0.unwrap();
}

#[tokio::test]
async fn segments_show_rows_and_buffers() {
    let mut cfg = config();
    cfg.server.admin_token = Some(TOKEN.into());
    let server = TestServer::start(cfg).await;
    let auth = format!("Bearer {TOKEN}");
    let created = http(
        server.http,
        "POST",
        "/admin/tags",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        r#"{"tag":"orders","start":1000,"step":100}"#,
    )
    .await
    .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let ids = get(server.http, "/v1/segment/orders?count=3").await.json();
    assert_eq!(ids["ids"], serde_json::json!([1000, 1001, 1002]));
    let view = get(server.http, "/v1/console/segments").await.json();
    assert_eq!(view["enabled"], true);
    let tag = &view["tags"][0];
    assert_eq!(
        (tag["tag"].as_str(), tag["step"].as_u64()),
        (Some("orders"), Some(100))
    );
    let b = &tag["buffer"];
    assert_eq!(
        b["current"],
        serde_json::json!({"start": 1000, "end": 1100})
    );
    assert_eq!(b["next_id"], 1003);
    assert_eq!(b["remaining"], 97);
    assert_eq!(b["fill_percent"], 97.0);
    assert_eq!(b["refill_errors"], 0);
    assert_eq!(b["step_history"][0]["step"], 100);
    assert!(b["last_refill_ms"].as_f64().unwrap() >= 0.0);
    // The same view as the admin route, which needs the token.
    let admin = http(
        server.http,
        "GET",
        "/admin/tags",
        &[("Authorization", &auth)],
        "",
    )
    .await
    .unwrap()
    .json();
    assert_eq!(admin["tags"][0]["buffer"]["next_id"], 1003);
    server.stop().await.0.unwrap();

    let mut off = config();
    off.segment = None;
    let server = TestServer::start(off).await;
    let view = get(server.http, "/v1/console/segments").await.json();
    assert_eq!(view, serde_json::json!({"enabled": false, "tags": []}));
    server.stop().await.0.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_lists_the_registry() {
    let static_node = TestServer::start(config()).await;
    let view = get(static_node.http, "/v1/console/cluster").await.json();
    assert_eq!(
        view,
        serde_json::json!({"registry": "static", "namespace": null, "pool_size": null, "holders": []})
    );
    static_node.stop().await.0.unwrap();

    let namespace = unique("console");
    let a = TestServer::start(redis_lease_config(&namespace, "3s")).await;
    let b = TestServer::start(redis_lease_config(&namespace, "3s")).await;
    let view: Value = eventually_async(WAIT, "both ids held", async || {
        let view = get(a.http, "/v1/console/cluster").await.json();
        let held = view["holders"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["held"] == true)
            .count();
        (held == 2).then_some(view.clone()).ok_or(view.to_string())
    })
    .await;
    assert!(
        view["registry"].as_str().unwrap().starts_with("redis at "),
        "{view}"
    );
    assert_eq!(view["namespace"], namespace.as_str());
    assert_eq!(view["pool_size"], 2);
    let holders = view["holders"].as_array().unwrap();
    let mine: Vec<&Value> = holders.iter().filter(|h| h["this_node"] == true).collect();
    assert_eq!(mine.len(), 1, "{view}");
    let info = get(a.http, "/v1/info").await.json();
    assert_eq!(mine[0]["worker_id"], info["lease"]["worker_id"]);
    assert_eq!(mine[0]["epoch"], info["lease"]["epoch"]);
    for h in holders {
        let left = h["expires_in_ms"].as_i64().unwrap();
        assert!(left > 0 && left <= 3_000, "{h}");
        assert!(h["owner"].is_string(), "{h}");
    }
    assert_ne!(holders[0]["owner"], holders[1]["owner"]);
    a.stop().await.0.unwrap();
    b.stop().await.0.unwrap();
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let mut cfg = config();
    cfg.server.admin_token = Some(TOKEN.into());
    let server = TestServer::start(cfg).await;
    let r = get(server.http, "/openapi.json").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/v1/snowflake", "get"),
        ("/v1/segment/{tag}", "get"),
        ("/v1/numbers", "get"),
        ("/v1/numbers/{name}", "get"),
        ("/v1/decode/{id}", "get"),
        ("/v1/info", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/v1/console/rates", "get"),
        ("/v1/console/segments", "get"),
        ("/v1/console/cluster", "get"),
        ("/", "get"),
        ("/console", "get"),
        ("/console/{view}", "get"),
        ("/console/assets/console.js", "get"),
        ("/console/assets/console.css", "get"),
        ("/console/assets/favicon.svg", "get"),
        ("/admin/log-level", "get"),
        ("/admin/log-level", "put"),
        ("/admin/tags", "get"),
        ("/admin/tags", "post"),
        ("/admin/tags/{tag}", "put"),
        ("/admin/numbers", "post"),
        ("/api/v1/log/level", "get"),
        ("/api/v1/log/level", "post"),
        ("/alloc", "get"),
        ("/health", "get"),
        ("/api/v1/id", "get"),
        ("/api/v1/id/batch", "get"),
        ("/api/segment/get/{key}", "get"),
        ("/api/snowflake/get/{key}", "get"),
        ("/decodeSnowflakeId", "get"),
    ];
    let documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (p.clone(), m.clone()))
        })
        .collect();
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    want.sort();
    let mut got = documented.clone();
    got.sort();
    assert_eq!(got, want, "documented operations");
    // Every documented operation is served (not the unknown-route fallback), and every admin
    // one names the bearer scheme.
    let auth = format!("Bearer {TOKEN}");
    for (path, method) in &documented {
        let concrete = path
            .replace("{tag}", "nosuch")
            .replace("{id}", "1")
            .replace("{key}", "k")
            .replace("{name}", "nosuch")
            .replace("{view}", "rates");
        let body = if method == "get" { "" } else { "{}" };
        let r = http(
            server.http,
            &method.to_uppercase(),
            &concrete,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body,
        )
        .await
        .unwrap();
        assert!(
            !(r.status == 404 && r.body.contains("no route for")),
            "{method} {concrete} is documented but not routed"
        );
        let op = &paths[path][method];
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
        if path.starts_with("/admin/") || path == "/api/v1/log/level" {
            assert_eq!(
                op["security"][0]["admin_token"],
                serde_json::json!([]),
                "{path}"
            );
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    server.stop().await.0.unwrap();
}
