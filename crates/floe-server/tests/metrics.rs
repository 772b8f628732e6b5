//! The scrape page of a running server: every metric family has `# HELP` text, `promtool check
//! metrics` (Debian's `prometheus` package, installed by `./scripts/services`) accepts it, and
//! the values move as the requests made here say they must. The recorder is process-wide, so the
//! checks compare values before and after an action of this test, on series no other test of this
//! binary touches.

mod common;

use std::future::Future;
use std::io::Write;
use std::panic::Location;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use floe_testkit::http::get;
use floe_testkit::{eventually_async, metric_value, unique};

/// The scrape page (a plain function returning a future, so a failure names the test's line).
#[track_caller]
fn scrape(http: std::net::SocketAddr) -> impl Future<Output = String> {
    let at = Location::caller();
    async move {
        let r = get(http, "/metrics").await;
        assert_eq!(r.status, 200, "{} (at {at})", r.body);
        r.body
    }
}

/// The value of `series`, which must be on the page.
#[track_caller]
fn value(page: &str, series: &str) -> f64 {
    metric_value(page, series).unwrap_or_else(|| panic!("{series} is not on the page:\n{page}"))
}

/// Polls the scrape page until `series` satisfies `ok`, or fails naming what was awaited.
#[track_caller]
fn eventually_metric<'a>(
    http: std::net::SocketAddr,
    series: &'a str,
    within: Duration,
    ok: impl Fn(f64) -> bool + 'a,
) -> impl Future<Output = f64> + 'a {
    eventually_async(
        within,
        &format!("{series} reaches the expected value"),
        async move || {
            let page = scrape(http).await;
            match metric_value(&page, series) {
                Some(v) if ok(v) => Ok(v),
                _ => Err(page),
            }
        },
    )
}

/// `promtool check metrics` on `page`; a missing promtool fails the test.
#[track_caller]
fn promtool_check(page: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is required (Debian package prometheus; ./scripts/services installs it): {e}")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_has_help_promtool_accepts_the_page_and_values_follow_requests() {
    let s = TestServer::start(config()).await;
    let issued = r#"floe_ids_issued_total{mode="snowflake",protocol="http"}"#;
    let writes = r#"floe_high_water_writes_total{outcome="ok"}"#;
    let before = scrape(s.http).await;
    // The generator wrote its first mark before the server said it was listening.
    assert!(value(&before, writes) >= 1.0, "{before}");
    let issued_before = metric_value(&before, issued).unwrap_or(0.0);

    let r = get(s.http, "/v1/snowflake?count=7").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(s.http, "/v1/snowflake?count=5").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let after = scrape(s.http).await;
    assert_eq!(value(&after, issued) - issued_before, 12.0, "{after}");
    // A write of the mark is timed: the histogram counts at least the writes counted.
    assert!(
        value(&after, "floe_high_water_write_seconds_count") >= value(&after, writes),
        "{after}"
    );
    assert_eq!(value(&after, "floe_ready"), 1.0);
    assert!(
        value(&after, "floe_http_connections_open") >= 1.0,
        "{after}"
    );

    // Every family that has a TYPE line has its HELP line too.
    let helped: Vec<&str> = after
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let typed: Vec<&str> = after
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(typed.len() >= 15, "{after}");
    for family in &typed {
        assert!(helped.contains(family), "{family} has no # HELP:\n{after}");
    }
    promtool_check(&after);
    s.stop().await.0.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_identity_shows_its_lease_renewals_and_registry_latency() {
    let namespace = unique("metrics");
    let c = redis_lease_config(&namespace, "1500ms");
    let s = TestServer::start(c).await;
    eventually_metric(s.http, "floe_lease_held", Duration::from_secs(10), |v| {
        v == 1.0
    })
    .await;
    let info = get(s.http, "/v1/info").await.json();
    let page = scrape(s.http).await;
    assert_eq!(
        value(&page, "floe_lease_worker_id"),
        info["lease"]["worker_id"].as_f64().expect("a worker id"),
        "{page}"
    );
    assert_eq!(
        value(&page, "floe_lease_epoch"),
        info["lease"]["epoch"].as_f64().expect("an epoch"),
        "{page}"
    );
    // Renewed every ttl/3 = 500 ms: the fence stays within one ttl ahead.
    let to_fence = value(&page, "floe_lease_seconds_to_fence");
    assert!(to_fence > 0.0 && to_fence <= 1.5, "{to_fence}");
    assert!(
        value(&page, r#"floe_registry_call_seconds_count{op="acquire"}"#) >= 1.0,
        "{page}"
    );
    let renewed = metric_value(&page, "floe_lease_renewals_total").unwrap_or(0.0);
    eventually_metric(
        s.http,
        "floe_lease_renewals_total",
        Duration::from_secs(5),
        |v| v >= renewed + 2.0,
    )
    .await;
    let page = scrape(s.http).await;
    assert!(
        value(&page, r#"floe_registry_call_seconds_count{op="renew"}"#) >= 2.0,
        "{page}"
    );
    promtool_check(&page);
    s.stop().await.0.unwrap();
}
