//! Business numbers across midnight, with the real binary under libfaketime: the issue's
//! `order_no` (`ORD-{date:%Y%m%d}-{seq:06}`, reset every day in Asia/Shanghai) is served by a
//! node whose clock starts 10 s before midnight in Shanghai (16:00 UTC). Numbers before carry
//! the old date, after it the new date counting from `start`. Then the node is restarted across
//! the boundary twice — once with its clock stepped back before midnight (SIGTERM first), once
//! after a kill -9 — and nothing is ever issued twice: each period goes on after what it served.
//!
//! The counters live in one SQLite file outside the nodes' data directories, so successive
//! processes share them as nodes share a database. libfaketime is required (`scripts/services`
//! installs it); without it the test fails.

#[path = "fixtures/serve_support.rs"]
mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use floe_testkit::http::blocking;
use floe_testkit::{clean_command, fake_clock, serve_args, FloeProcess, STARTUP};

/// `GET path`: the status and the body.
fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let r = blocking::get(addr, path);
    (r.status, r.body)
}

/// The sequence: small steps, so the periods' rows are claimed many times.
const CONFIG: &str = r#"
[segment]
url = "sqlite:{db}"

[numbers.order_no]
format = "ORD-{date:%Y%m%d}-{seq:06}"
reset = "day"
time_zone = "Asia/Shanghai"
start = 1
step = 5
"#;

/// Shanghai's 2026-11-30 and the day after.
const OLD: &str = "20261130";
const NEW: &str = "20261201";

/// Starts `floe serve` on a fresh data directory under `root`, its clock starting at `start`
/// (UTC) and running on.
fn node(root: &Path, config: &Path, start: &str) -> FloeProcess {
    let dir = tempfile::tempdir_in(root).unwrap().keep();
    let mut args = serve_args(&dir);
    args.extend(["--config".to_owned(), config.display().to_string()]);
    let mut cmd = clean_command(env!("CARGO_BIN_EXE_floe"), &args, &[("TZ", "UTC")]);
    fake_clock(&mut cmd, &format!("@{start}"));
    FloeProcess::spawn(cmd)
}

/// One number from `node`, as (date, counter).
#[track_caller]
fn number(node: &FloeProcess) -> (String, u64) {
    let (status, body) = http_get(node.http, "/v1/numbers/order_no");
    assert_eq!(status, 200, "{body}; stderr:\n{}", node.stderr());
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let n = v["numbers"][0].as_str().unwrap().to_owned();
    let parts: Vec<&str> = n.split('-').collect();
    assert_eq!(
        (parts.len(), parts[0], parts[2].len()),
        (3, "ORD", 6),
        "{n}"
    );
    (parts[1].to_owned(), parts[2].parse().unwrap())
}

/// Numbers from `node` every 50 ms until one carries `until` and `after` more followed it;
/// bounded.
fn numbers_until(node: &FloeProcess, until: &str, after: usize) -> Vec<(String, u64)> {
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut got: Vec<(String, u64)> = Vec::new();
    loop {
        got.push(number(node));
        if got.iter().filter(|(d, _)| d == until).count() > after {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "no number of {until} within 40 s: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Records numbers, failing on the first repeat.
#[track_caller]
fn record(seen: &mut HashSet<(String, u64)>, numbers: &[(String, u64)], when: &str) {
    for n in numbers {
        assert!(seen.insert(n.clone()), "{n:?} issued twice ({when})");
    }
}

#[test]
fn numbers_switch_date_at_midnight_in_their_zone_and_never_repeat_across_restarts() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("floe.toml");
    let db = root.path().join("numbers.db");
    std::fs::write(&config, CONFIG.replace("{db}", &db.display().to_string())).unwrap();
    let mut seen = HashSet::new();

    // 1. One process across midnight in Shanghai (16:00 UTC).
    let mut first = node(root.path(), &config, "2026-11-30 15:59:50");
    let got = numbers_until(&first, NEW, 9);
    let switch = got.iter().position(|(d, _)| d == NEW).unwrap();
    let (before, after) = got.split_at(switch);
    assert!(
        !before.is_empty(),
        "the node started after midnight: {got:?}"
    );
    for (i, (date, seq)) in before.iter().enumerate() {
        assert_eq!((date.as_str(), *seq), (OLD, i as u64 + 1), "{got:?}");
    }
    for (i, (date, seq)) in after.iter().enumerate() {
        assert_eq!(
            (date.as_str(), *seq),
            (NEW, i as u64 + 1),
            "from start again: {got:?}"
        );
    }
    let listed = http_get(first.http, "/v1/numbers").1;
    assert!(
        listed.contains(&format!("\"period\":\"{NEW}\"")),
        "{listed}"
    );
    record(&mut seen, &got, "first run");
    assert!(first.terminate(STARTUP).success(), "{}", first.stderr());
    let old_max = before.len() as u64;

    // 2. Restarted with the clock stepped back before midnight: the old day goes on after
    //    what it served, then the new day goes on after what it served.
    let second = node(root.path(), &config, "2026-11-30 15:59:55");
    let got = numbers_until(&second, NEW, 3);
    let (old, new): (Vec<_>, Vec<_>) = got.iter().cloned().partition(|(d, _)| d == OLD);
    assert!(
        !old.is_empty(),
        "the restart read a clock after midnight: {got:?}"
    );
    assert!(old.iter().all(|(_, s)| *s > old_max), "{got:?}");
    assert!(new.iter().all(|(_, s)| *s > after.len() as u64), "{got:?}");
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "increasing on one node: {got:?}"
    );
    record(
        &mut seen,
        &got,
        "after a restart with the clock stepped back",
    );

    // 3. A crash (no hand-back) and a restart after midnight: still nothing twice.
    let mut second = second;
    second.kill9();
    let mut third = node(root.path(), &config, "2026-11-30 16:00:30");
    let got: Vec<(String, u64)> = (0..20).map(|_| number(&third)).collect();
    assert!(got.iter().all(|(d, _)| d == NEW), "{got:?}");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    record(&mut seen, &got, "after kill -9");
    assert!(third.terminate(STARTUP).success(), "{}", third.stderr());
}
