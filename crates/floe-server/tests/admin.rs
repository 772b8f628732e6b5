//! Admin routes: bearer token, and a log level change that really reaches the subscriber.
//!
//! One test function, because the log level is process-wide.

mod common;

use common::*;
use floe_server::{init_logging, LogConfig, LogFormat, LogLevel};
use floe_testkit::http::request;
use serde_json::json;
use tracing::level_filters::LevelFilter;

const TOKEN: &str = "test-token-0123456789";

#[tokio::test]
async fn admin_log_level() {
    assert!(init_logging(&LogConfig {
        level: LogLevel::Warn,
        format: LogFormat::Text,
    }));
    assert_eq!(LevelFilter::current(), LevelFilter::WARN);
    let mut cfg = config();
    cfg.server.admin_token = Some(TOKEN.into());
    let s = TestServer::start(cfg).await;
    let auth = format!("Bearer {TOKEN}");
    let ok = [("Authorization", auth.as_str())];

    // Missing or wrong token: 401 with a challenge.
    for headers in [
        &[][..],
        &[("Authorization", "Bearer wrong-token")][..],
        &[("Authorization", TOKEN)][..],
    ] {
        for (method, path) in [
            ("GET", "/admin/log-level"),
            ("PUT", "/admin/log-level?level=debug"),
            ("GET", "/api/v1/log/level?level=debug"),
            ("POST", "/api/v1/log/level"),
        ] {
            let r = request(s.http, method, path, headers, "").await.unwrap();
            assert_eq!(r.status, 401, "{method} {path} {headers:?}");
            assert_eq!(r.json()["error"]["code"], "unauthorized");
            assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        }
    }
    assert_eq!(
        LevelFilter::current(),
        LevelFilter::WARN,
        "a refused call changed the level"
    );

    let r = request(s.http, "GET", "/admin/log-level", &ok, "")
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"level":"warn"}"#));

    let r = request(
        s.http,
        "PUT",
        "/admin/log-level",
        &ok,
        r#"{"level":"debug"}"#,
    )
    .await
    .unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"level":"debug"}"#));
    assert_eq!(LevelFilter::current(), LevelFilter::DEBUG);

    let r = request(s.http, "PUT", "/admin/log-level?level=error", &ok, "")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(LevelFilter::current(), LevelFilter::ERROR);
    let r = request(s.http, "GET", "/admin/log-level", &ok, "")
        .await
        .unwrap();
    assert_eq!(r.body, r#"{"level":"error"}"#);

    for (path, body) in [
        ("/admin/log-level?level=loud", ""),
        ("/admin/log-level", r#"{"level":"loud"}"#),
    ] {
        let r = request(s.http, "PUT", path, &ok, body).await.unwrap();
        assert_eq!(r.status, 400);
        assert_eq!(
            r.body,
            json!({"error": {"code": "bad_request", "message": "level must be one of trace, debug, info, warn, error, got \"loud\""}}).to_string()
        );
    }
    for body in ["", "not json", r#"{"lvl":"debug"}"#] {
        let r = request(s.http, "PUT", "/admin/log-level", &ok, body)
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{body}");
        assert!(r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("level"));
    }
    assert_eq!(LevelFilter::current(), LevelFilter::ERROR);

    // FeatherID's route, GET and POST.
    let r = request(s.http, "GET", "/api/v1/log/level?level=info", &ok, "")
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, r#"{"code":0,"msg":"success","data":"info"}"#)
    );
    assert_eq!(LevelFilter::current(), LevelFilter::INFO);
    let r = request(s.http, "POST", "/api/v1/log/level?level=warn", &ok, "")
        .await
        .unwrap();
    assert_eq!(r.body, r#"{"code":0,"msg":"success","data":"warn"}"#);
    assert_eq!(LevelFilter::current(), LevelFilter::WARN);
    let r = request(s.http, "GET", "/api/v1/log/level", &ok, "")
        .await
        .unwrap();
    assert_eq!(r.body, r#"{"code":0,"msg":"success","data":"warn"}"#);
    let r = request(s.http, "GET", "/api/v1/log/level?level=verbose", &ok, "")
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        r#"{"code":1,"msg":"level must be one of trace, debug, info, warn, error, got \"verbose\"","data":null}"#
    );
    s.stop().await.0.unwrap();
}
