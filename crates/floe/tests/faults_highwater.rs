//! Fault tests of the high-water mark against the real `floe serve` binary: a deleted or
//! rolled-back mark after kill -9, a directory that lost every witness, a deleted lock file,
//! file-descriptor exhaustion, a crash loop and a full disk under the data directory.
//!
//! Each test asserts a figure (0 repeated IDs, an exit code and message, a bound in seconds) and
//! polls with a deadline. The tests run one at a time ([`serial`]): several of them bound how
//! soon a node serves, which two debug binaries starting side by side on a small machine would
//! make a measure of the machine, not of Floe.

#[path = "fixtures/serve_support.rs"]
mod support;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use floe_testkit::http::blocking;
use floe_testkit::{consistently, eventually, Tmpfs};
use support::{genid_seconds, metric, serve_to_exit, unix_ms, v2_fetch, Floe, Seen, V2};

/// `snowflake.high_water_window` (default): how far ahead of need the mark is written.
const WINDOW: Duration = Duration::from_secs(2);
/// `snowflake.max_rollback` (default).
const MAX_ROLLBACK_S: u64 = 5;
/// How soon after its mark can no longer be written a node must stop issuing: its window, the
/// drift it may borrow, one `genid` tick (the mark is written in whole ticks) and 2 s of slack.
const STOP_BOUND: Duration = Duration::from_secs(2 + 1 + 1 + 2);
/// How long a graceful stop may take.
const STOP: Duration = Duration::from_secs(15);

/// Serialises the tests of this file (see the module doc).
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `unix_ms` of a mark file.
#[track_caller]
fn mark_ms(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).expect("read the mark");
    let v: serde_json::Value = serde_json::from_str(text.trim_end()).expect("a JSON mark");
    v["unix_ms"].as_u64().expect("unix_ms")
}

/// Open file descriptors of a process.
#[track_caller]
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// Fetches on `v2` (recording every ID) until a request fails; returns the failure and how
/// long after `since` it came, failing the test after `within`.
#[track_caller]
fn fetch_until_refused(
    v2: &mut V2,
    seen: &mut Seen,
    since: Instant,
    within: Duration,
) -> (u8, String, Duration) {
    let (status, message) = eventually(within, "the node stops issuing", || {
        match v2.snowflake(1_000) {
            Ok(ids) => {
                seen.take(ids, "before the node stopped");
                None
            }
            Err(e) => Some(e),
        }
    });
    (status, message, since.elapsed())
}

#[test]
fn a_deleted_or_rolled_back_mark_after_kill9_repeats_no_id() {
    let _serial = serial();
    let year_ago = unix_ms() - 365 * 86_400 * 1_000;
    for (what, reset_to) in [
        ("deleted", None),
        ("reset to 0", Some(0)),
        ("reset to a year ago", Some(year_ago)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = Seen::default();
        let mut a = Floe::start(dir.path(), &[], &[]);
        // 120,000 IDs on one lane fill this second's 65,536 and borrow the next one (max_drift):
        // a restart that forgot them issues in the same two ticks, on the same first lane.
        let mut v2 = V2::connect(a.tcp);
        for _ in 0..2 {
            seen.take(v2.snowflake(60_000).unwrap(), "in run A");
        }
        a.kill9();
        let mark = dir.path().join("highwater.json");
        match reset_to {
            None => std::fs::remove_file(&mark).unwrap(),
            Some(ms) => {
                std::fs::write(&mark, format!(r#"{{"version":1,"unix_ms":{ms}}}"#)).unwrap()
            }
        }
        let b = Floe::start(dir.path(), &[], &[]);
        let ids = v2_fetch(b.tcp, 60_000)
            .unwrap_or_else(|e| panic!("mark {what}: {e:?}; stderr:\n{}", b.stderr()));
        let ahead = genid_seconds(ids[0]) as i64 - (unix_ms() / 1000) as i64;
        let n = seen.take(ids, &format!("after kill -9 and the mark {what}"));
        eprintln!("mark {what}: {n} IDs after the restart, 0 repeated; first ID {ahead} s ahead of the clock");
        assert!(
            ahead <= MAX_ROLLBACK_S as i64,
            "mark {what}: the restart issued {ahead} s ahead"
        );
    }
}

#[test]
fn a_dir_with_no_mark_left_is_refused_and_a_fresh_dir_serves_at_once() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut a = Floe::start(dir.path(), &[], &[]);
    v2_fetch(a.tcp, 1_000).unwrap();
    assert_eq!(a.terminate(STOP).code(), Some(0), "{}", a.stderr());
    let path = |name: &str| dir.path().join(name);
    assert!(path("floe.db").exists(), "segment mode's SQLite file");
    std::fs::remove_file(path("highwater.json")).unwrap();
    // The spare exists since the three witnesses; an older Floe leaves none.
    let _ = std::fs::remove_file(path("highwater.json.next"));
    std::fs::write(path("floe.lock"), "").unwrap();

    let (code, stderr) = serve_to_exit(dir.path(), &[], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let expected = format!(
        "file {} is missing, but directory {} shows an earlier run",
        path("highwater.json").display(),
        dir.path().display()
    );
    assert!(stderr.contains(&expected), "{expected:?} not in:\n{stderr}");
    assert!(stderr.contains("Restore the file"), "{stderr}");

    let fresh = tempfile::tempdir().unwrap();
    let b = Floe::start(fresh.path(), &[], &[]);
    let ids = v2_fetch(b.tcp, 1).unwrap_or_else(|e| panic!("{e:?}; stderr:\n{}", b.stderr()));
    let served_after = b.listening_at.elapsed();
    eprintln!("a fresh directory served its first ID {served_after:?} after the listening line");
    assert_eq!(ids.len(), 1);
    assert!(served_after < Duration::from_secs(1), "{served_after:?}");
}

#[test]
fn a_deleted_lock_file_refuses_a_second_node_and_stops_the_first_within_its_window() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let a = Floe::start(dir.path(), &[], &[]);
    let mut seen = Seen::default();
    let mut v2 = V2::connect(a.tcp);
    seen.take(v2.snowflake(1_000).unwrap(), "before the lock was deleted");

    std::fs::remove_file(dir.path().join("floe.lock")).unwrap();
    let removed = Instant::now();
    let (code, stderr) = serve_to_exit(dir.path(), &[], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("in use by another Floe process"),
        "{stderr}"
    );

    let (status, message, after) =
        fetch_until_refused(&mut v2, &mut seen, removed, Duration::from_secs(8));
    eprintln!(
        "node A stopped issuing {after:?} after its lock was deleted ({} IDs, 0 repeated): {message}",
        seen.len()
    );
    assert_eq!(status, 3, "{message}");
    assert!(after <= STOP_BOUND, "{after:?} > {STOP_BOUND:?}");
    assert!(
        a.stderr()
            .contains("was removed or replaced while this node runs"),
        "{}",
        a.stderr()
    );
    let r = blocking::get(a.http, "/readyz");
    assert_eq!(r.status, 503, "{}", r.body);
    // And it stays stopped: the writes never come back on their own.
    consistently(
        Duration::from_millis(500),
        "node A stays stopped",
        || match v2.snowflake(1) {
            Err((3, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

#[test]
fn with_every_fd_in_use_a_kept_connection_is_served_past_the_window() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // Hard = soft, so the node cannot raise its own limit.
    let a = Floe::start_wrapped(&["prlimit", "--nofile=256:256", "--"], dir.path(), &[], &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", a.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>()[3..5],
        ["256", "256"],
        "{line}"
    );
    let mut seen = Seen::default();
    let mut v2 = V2::connect(a.tcp);
    seen.take(v2.snowflake(1_000).unwrap(), "before fd exhaustion");

    // The kernel completes handshakes into the backlog whether or not the node can accept.
    let idle: Vec<_> = (0..300)
        .map(|_| std::net::TcpStream::connect(a.tcp).expect("connect an idle client"))
        .collect();
    eventually(Duration::from_secs(5), "the node uses all 256 fds", || {
        (fd_count(a.pid()) >= 256).then_some(())
    });
    let mark = dir.path().join("highwater.json");
    let (exhausted_at, mark_at) = (Instant::now(), mark_ms(&mark));
    let mut requests = 0;
    while exhausted_at.elapsed() < Duration::from_secs(5) + WINDOW / 2 {
        let ids = v2.snowflake(100).unwrap_or_else(|e| {
            panic!(
                "refused {:?} into fd exhaustion: {e:?}; stderr:\n{}",
                exhausted_at.elapsed(),
                a.stderr()
            )
        });
        seen.take(ids, "during fd exhaustion");
        requests += 1;
        // The pace of the requests over the window, not a wait.
        std::thread::sleep(Duration::from_millis(100));
    }
    let fds = fd_count(a.pid());
    let advanced = mark_ms(&mark) - mark_at;
    eprintln!(
        "{requests} requests served over {:?} with {fds} of 256 fds open; the mark advanced {advanced} ms meanwhile",
        exhausted_at.elapsed()
    );
    assert!(
        fds >= 256,
        "fds were freed meanwhile ({fds}): nothing proven"
    );
    assert!(
        advanced >= 3_000,
        "the mark was not rewritten while no fd was free ({advanced} ms)"
    );

    drop(idle);
    eventually(
        Duration::from_secs(5),
        "the idle clients' fds are freed",
        || (fd_count(a.pid()) < 128).then_some(()),
    );
    let fresh = v2_fetch(a.tcp, 10).unwrap_or_else(|e| panic!("{e:?}"));
    seen.take(fresh, "on a new connection after the fds came back");
    let failures = metric(a.http, "floe_accept_failures_total{listener=\"tcp\"}").unwrap_or(0.0);
    eprintln!("{failures} TCP accept failures counted");
    assert!(failures > 0.0, "no accept failure counted");
}

#[test]
fn a_crash_loop_neither_pushes_the_mark_ahead_nor_delays_the_next_start() {
    let _serial = serial();
    // Ten crashes right after the listening line, no ID requested.
    let dir = tempfile::tempdir().unwrap();
    let looped = Instant::now();
    for _ in 0..10 {
        Floe::start(dir.path(), &[], &[]).kill9();
    }
    let looped = looped.elapsed();
    let n = Floe::start(dir.path(), &[], &[]);
    let ids = v2_fetch(n.tcp, 1).unwrap_or_else(|e| panic!("{e:?}; stderr:\n{}", n.stderr()));
    let served_after = n.listening_at.elapsed();
    let ahead = genid_seconds(ids[0]) as i64 - (unix_ms() / 1000) as i64;
    eprintln!("after 10 crashes in {looped:?}: served {served_after:?} after the listening line, first ID {ahead} s ahead of the clock");
    assert!(served_after < Duration::from_secs(1), "{served_after:?}");
    assert!(ahead.unsigned_abs() <= MAX_ROLLBACK_S, "{ahead} s");
    drop(n);

    // Ten crashes that each issued IDs (millisecond ticks): each start serves at once.
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Seen::default();
    let mut slowest = Duration::ZERO;
    for i in 0..10 {
        let mut n = Floe::start(dir.path(), &["--layout", "twitter"], &[]);
        let ids = v2_fetch(n.tcp, 1_000)
            .unwrap_or_else(|e| panic!("restart {i}: {e:?}; stderr:\n{}", n.stderr()));
        let served_after = n.listening_at.elapsed();
        slowest = slowest.max(served_after);
        assert!(
            served_after < Duration::from_secs(1),
            "restart {i}: {served_after:?}"
        );
        seen.take(ids, &format!("in restart {i}"));
        n.kill9();
    }
    eprintln!(
        "10 kill -9 restarts with IDs: slowest first reply {slowest:?}, {} IDs, 0 repeated",
        seen.len()
    );
}

#[test]
fn a_full_disk_under_the_mark_stops_issuing_with_the_cause_and_recovers() {
    let _serial = serial();
    let fs = Tmpfs::mount(256);
    let dir = fs.path().join("data");
    let a = Floe::start(&dir, &[], &[("FLOE_SEGMENT__ENABLED", "false")]);
    let mut seen = Seen::default();
    let mut v2 = V2::connect(a.tcp);
    seen.take(v2.snowflake(1_000).unwrap(), "before the disk filled");

    let filler = fs.fill();
    let filled = Instant::now();
    let (status, message, after) =
        fetch_until_refused(&mut v2, &mut seen, filled, Duration::from_secs(8));
    eprintln!("stopped issuing {after:?} after the disk filled: {message}");
    assert_eq!(status, 3, "{message}");
    assert!(message.contains("No space left on device"), "{message}");
    assert!(after <= STOP_BOUND, "{after:?} > {STOP_BOUND:?}");

    std::fs::remove_file(filler).unwrap();
    let freed = Instant::now();
    let ids = eventually(
        Duration::from_secs(5),
        "serving after space is back",
        || v2.snowflake(1_000).ok(),
    );
    eprintln!("serving again {:?} after space was freed", freed.elapsed());
    seen.take(ids, "after space was freed");
    seen.take(v2.snowflake(1_000).unwrap(), "after space was freed");
    eprintln!("{} IDs, 0 repeated", seen.len());
}
