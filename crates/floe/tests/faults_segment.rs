//! Fault tests of segment mode against the real `floe serve` binary on its default store, the
//! SQLite file in the data directory: a full disk under it, and a tag whose range reaches the
//! end of the BIGINT column.
//!
//! Each test asserts a figure: 0 repeated IDs, the HTTP status and error code of every refused
//! request, how soon the refusal comes.

#[path = "fixtures/serve_support.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use floe_testkit::http::blocking;
use floe_testkit::{eventually, Tmpfs};
use support::{admin, Floe, Seen, V2};

/// `server.admin_token` of every node these tests start.
const TOKEN: &str = "fault-test-token";

/// What `GET /v1/segment/{tag}?count=N` answered.
#[derive(Debug)]
enum Answer {
    /// 200: the IDs.
    Ids(Vec<u64>),
    /// Any other status, with the error body's `code` and `message`.
    Refused(u16, String, String),
}

#[track_caller]
fn segment(http: SocketAddr, tag: &str, count: u32) -> Answer {
    let r = blocking::get(http, &format!("/v1/segment/{tag}?count={count}"));
    let (status, body) = (r.status, r.body);
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{status} {body:?}: {e}"));
    if status == 200 {
        let ids = v["ids"].as_array().unwrap_or_else(|| panic!("{body}"));
        return Answer::Ids(
            ids.iter()
                .map(|id| id.as_u64().expect("an u64 ID"))
                .collect(),
        );
    }
    let text = |k: &str| {
        v["error"][k]
            .as_str()
            .unwrap_or_else(|| panic!("{body}"))
            .to_owned()
    };
    Answer::Refused(status, text("code"), text("message"))
}

/// The environment of the full-disk nodes: admin on, and a fixed step of 10 (the adaptive step
/// would double it on every claim): a claim every ten IDs, so the full disk meets many claims.
const FULL_DISK_ENV: [(&str, &str); 2] = [
    ("FLOE_ADMIN_TOKEN", TOKEN),
    ("FLOE_SEGMENT__MAX_STEP", "10"),
];

/// Starts a node on `dir`, creates tag `t` (step 10) and takes 1,200 IDs one by one while the
/// disk fills after 600; checks every answer and that the node serves again above every ID
/// once space is back. Returns the node and the IDs served.
#[track_caller]
fn through_a_full_disk(fs: &Tmpfs, dir: &std::path::Path) -> (Floe, Seen) {
    let a = Floe::start(dir, &[], &FULL_DISK_ENV);
    let (status, body) = admin(
        a.http,
        TOKEN,
        "POST",
        "/admin/tags",
        r#"{"tag":"t","start":1,"step":10}"#,
    );
    assert_eq!(status, 201, "{body}");

    let mut seen = Seen::default();
    let (mut served, mut refused, mut first_refusal) = (0, 0, None);
    let mut filler = None;
    for i in 0..1_200 {
        if i == 600 {
            filler = Some(fs.fill());
        }
        match segment(a.http, "t", 1) {
            Answer::Ids(ids) => served += seen.take(ids, &format!("in request {i}")),
            Answer::Refused(status, code, message) => {
                assert_eq!((status, code.as_str()), (503, "unavailable"), "{message}");
                refused += 1;
                first_refusal.get_or_insert((i, message));
            }
        }
    }
    let (at, message) = first_refusal.expect("no request was refused: the disk never filled");
    eprintln!("{served} IDs served, 0 repeated; {refused} requests refused (503 unavailable) from request {at}: {message}");
    assert!(at >= 600, "refused before the disk filled: {message}");
    assert!(
        message.contains("full") || message.contains("space"),
        "the message names the cause: {message}"
    );

    std::fs::remove_file(filler.unwrap()).unwrap();
    let freed = Instant::now();
    let highest = seen.max().expect("IDs were served");
    let ids = eventually(
        Duration::from_secs(15),
        "serving after space is back",
        || match segment(a.http, "t", 1) {
            Answer::Ids(ids) => Some(ids),
            Answer::Refused(..) => None,
        },
    );
    eprintln!(
        "serving again {:?} after space was freed: {ids:?} above {highest}",
        freed.elapsed()
    );
    assert!(ids[0] > highest, "{} not above {highest}", ids[0]);
    seen.take(ids, "after space was freed");
    (a, seen)
}

#[test]
fn sqlite_on_a_full_disk_serves_only_committed_ids_and_recovers_above_them() {
    // 1 MiB, not less: every committed claim appends a ~4 KiB page to SQLite's WAL, so a
    // smaller disk fills up on its own before the test fills it.
    let fs = Tmpfs::mount(1024);
    let dir = fs.path().join("data");
    let (_a, seen) = through_a_full_disk(&fs, &dir);
    eprintln!("{} IDs in all, 0 repeated", seen.len());
}

/// The claims served after the outage were committed: a kill -9 and a restart repeat none.
#[test]
fn segment_ids_served_after_a_full_disk_outage_survive_kill9() {
    let fs = Tmpfs::mount(1024);
    let dir = fs.path().join("data");
    let (mut a, mut seen) = through_a_full_disk(&fs, &dir);
    // Served in the seconds after the outage (refusals allowed: the IDs given out are what count).
    // A bounded number: each claim grows SQLite's WAL by a page, and the 1 MiB disk must not
    // fill up again on its own before the restart.
    let (mut served, mut refused) = (0, 0);
    for _ in 0..300 {
        match segment(a.http, "t", 1) {
            Answer::Ids(ids) => served += seen.take(ids, "after space was freed"),
            Answer::Refused(..) => refused += 1,
        }
    }
    a.kill9();
    let b = Floe::start(&dir, &[], &FULL_DISK_ENV);
    for i in 0..100 {
        match segment(b.http, "t", 1) {
            Answer::Ids(ids) => {
                seen.take(ids, &format!("in request {i} after kill -9 and a restart"))
            }
            other => panic!("refused after the restart: {other:?}"),
        };
    }
    eprintln!(
        "{served} IDs served after the outage ({refused} refused), 100 after kill -9: 0 repeated"
    );
}

#[test]
fn a_tag_at_the_bigint_limit_is_served_to_its_last_id_then_exhausted_at_once() {
    const LAST: u64 = i64::MAX as u64 - 1;
    const START: u64 = LAST - 999;
    let dir = tempfile::tempdir().unwrap();
    let a = Floe::start(dir.path(), &[], &[("FLOE_ADMIN_TOKEN", TOKEN)]);
    let (status, body) = admin(
        a.http,
        TOKEN,
        "POST",
        "/admin/tags",
        &format!(r#"{{"tag":"edge","start":{START},"step":400}}"#),
    );
    assert_eq!(status, 201, "{body}");

    let mut served = Vec::new();
    let (asked, code, message) = loop {
        assert!(served.len() <= 1_000, "served past the limit: {served:?}");
        let asked = Instant::now();
        match segment(a.http, "edge", 8) {
            Answer::Ids(ids) => served.extend(ids),
            Answer::Refused(status, code, message) => {
                assert_eq!(status, 409, "{code}: {message}");
                break (asked.elapsed(), code, message);
            }
        }
    };
    eprintln!(
        "{} IDs served ({}..={}), then 409 {code} after {asked:?}: {message}",
        served.len(),
        served[0],
        served[served.len() - 1]
    );
    assert_eq!(code, "exhausted", "{message}");
    assert_eq!(
        served,
        (START..=LAST).collect::<Vec<_>>(),
        "every ID once, in order"
    );
    assert!(asked < Duration::from_secs(1), "not at once: {asked:?}");

    // It stays exhausted, at once, over HTTP and v2 alike.
    let again = Instant::now();
    assert!(matches!(segment(a.http, "edge", 1), Answer::Refused(409, c, _) if c == "exhausted"));
    let v2 = V2::connect(a.tcp).segment("edge", 1);
    let again = again.elapsed();
    assert_eq!(v2.as_ref().map_err(|e| e.0), Err(4), "{v2:?}");
    assert!(again < Duration::from_secs(1), "not at once: {again:?}");
    eprintln!("then v2 status 4 ({:?}) in {again:?}", v2.unwrap_err().1);
}
