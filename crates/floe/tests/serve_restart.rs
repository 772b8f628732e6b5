//! Restart safety of the real binary: SIGTERM and restart within the same second, a restart
//! with the clock 5 s in the past, and kill -9 then restart. No ID may ever repeat.
//!
//! After a graceful stop the high-water mark sits just after the last issued second, so a node
//! whose clock is 5 s behind may answer "unavailable" (status 3, clock rollback) for a moment
//! until its clock passes max_rollback; that is accepted, but every ID it returns must be new.

#[path = "fixtures/serve_support.rs"]
mod support;

use std::time::Duration;

use floe_testkit::eventually;
use support::{v2_fetch, Floe, Seen};

const STOP: Duration = Duration::from_secs(15);

/// Records `ids`, which must be some and all new.
#[track_caller]
fn take(seen: &mut Seen, ids: Vec<u64>, when: &str) {
    assert!(seen.take(ids, when) > 0, "no IDs {when}");
}

/// Fetches until the node serves, accepting only status 3 (unavailable, a clock rollback)
/// meanwhile.
#[track_caller]
fn fetch_when_ready(floe: &Floe, count: u32) -> Vec<u64> {
    eventually(
        Duration::from_secs(20),
        "the node serves",
        || match v2_fetch(floe.tcp, count) {
            Ok(ids) => Ok(ids),
            Err((3, message)) => {
                assert!(message.contains("clock"), "{message}");
                Err(message)
            }
            Err(e) => panic!("fetch failed: {e:?}; stderr:\n{}", floe.stderr()),
        },
    )
}

#[test]
fn restarts_never_repeat_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Seen::default();

    let mut a = Floe::start(dir.path(), &[], &[]);
    take(
        &mut seen,
        v2_fetch(a.tcp, 50_000).unwrap(),
        "in the first run",
    );
    assert_eq!(a.terminate(STOP).code(), Some(0), "{}", a.stderr());

    // Same second, same data directory.
    let mut b = Floe::start(dir.path(), &[], &[]);
    take(
        &mut seen,
        v2_fetch(b.tcp, 50_000).unwrap(),
        "after a restart in the same second",
    );
    assert_eq!(b.terminate(STOP).code(), Some(0), "{}", b.stderr());

    // The clock set back by 5 s.
    let mut c = Floe::start(
        dir.path(),
        &[],
        &[("FLOE_SNOWFLAKE__CLOCK_OFFSET_MS", "-5000")],
    );
    take(
        &mut seen,
        fetch_when_ready(&c, 50_000),
        "with the clock 5 s behind",
    );
    take(
        &mut seen,
        fetch_when_ready(&c, 1_000),
        "with the clock 5 s behind",
    );
    assert_eq!(c.terminate(STOP).code(), Some(0), "{}", c.stderr());

    // kill -9: no graceful shutdown, the mark on disk is whatever was persisted ahead of need.
    let mut d = Floe::start(dir.path(), &[], &[]);
    take(&mut seen, fetch_when_ready(&d, 50_000), "before kill -9");
    d.kill9();
    let mut e = Floe::start(dir.path(), &[], &[]);
    take(&mut seen, fetch_when_ready(&e, 50_000), "after kill -9");
    assert_eq!(e.terminate(STOP).code(), Some(0), "{}", e.stderr());
}

#[test]
fn a_second_process_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _running = Floe::start(dir.path(), &[], &[]);
    let path = dir.path().to_str().unwrap();
    let (code, stderr) = support::run_to_exit(
        &[
            "serve",
            "--tcp-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
            path,
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("in use by another Floe process"),
        "{stderr}"
    );
}
