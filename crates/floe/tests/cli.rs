//! The local subcommands (`decode`, `layout`, `gen`) run as a user would run them.

use std::process::{Command, Output};

use floe_testkit::assert_increasing;

#[track_caller]
fn floe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(args)
        .env_remove("FLOE_LAYOUT")
        .env_remove("FLOE_IDENTITY")
        .env_remove("FLOE_DATA_DIR")
        .output()
        .expect("floe runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a usage failure: exit 64 and a message containing every `needle`.
#[track_caller]
fn assert_usage_error(args: &[&str], needles: &[&str]) {
    let o = floe(args);
    assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
    for n in needles {
        assert!(
            stderr(&o).contains(n),
            "{args:?}: stderr lacks {n:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn decode_prints_every_field() {
    let o = floe(&["decode", "7301444403700237522"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for line in [
        "time     2023-11-14T22:13:20Z (unix ms 1700000000000)",
        "zone     3",
        "dc       5",
        "machine  6",
        "lane     17",
        "seq      1234",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn decode_reads_hex_and_prints_json() {
    let o = floe(&[
        "decode",
        "0x10d2767a09c6702a",
        "--layout",
        "twitter",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["id"], 1212161516238172202u64);
    assert_eq!(v["time"], "2020-01-01T00:00:01Z");
    assert_eq!(v["fields"]["dc"], 3);
    assert_eq!(v["fields"]["worker"], 7);
    assert_eq!(v["fields"]["seq"], 42);
    // Read as hex, and written back in every form; each form reads back to the same ID.
    assert_eq!(v["form"], "hex");
    assert_eq!(v["forms"]["hex"], "10d2767a09c6702a");
    for form in ["string", "hex", "radix62", "radix36", "friendly"] {
        let text = v["forms"][form].as_str().unwrap();
        let o = floe(&["decode", text, "--layout", "twitter", "--json"]);
        assert!(o.status.success(), "{form} {text}: {}", stderr(&o));
        let back: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(back["id"], 1212161516238172202u64, "{form} {text}");
    }
}

#[test]
fn bad_input_to_every_subcommand_is_a_clear_usage_error() {
    assert_usage_error(
        &["decode", "abc"],
        &[
            "id: \"abc\" is not an ID in any form",
            "radix62 (11 of 0-9A-Za-z)",
        ],
    );
    assert_usage_error(&["decode", "-5"], &["id: \"-5\" looks like a friendly ID"]);
    assert_usage_error(
        &["decode", "42", "--form", "base64"],
        &["--form: format must be one of"],
    );
    assert_usage_error(
        &["decode", "1", "--layout", "nosuch"],
        &["--layout", "unknown layout `nosuch`"],
    );
    assert_usage_error(
        &["decode", "9223372036854775808", "--layout", "twitter"],
        &["sign bit"],
    );
    assert_usage_error(
        &["layout", "--layout", "time:41/1ms seq:40"],
        &["--layout", "81 bits", "64"],
    );
    assert_usage_error(
        &["layout", "--layout", "time:41/1h seq:12"],
        &["needs a suffix"],
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert_usage_error(
        &["gen", "--data-dir", d, "-i", "zone=32"],
        &["zone", "0..=31"],
    );
    assert_usage_error(
        &["gen", "--data-dir", d, "-i", "worker=1"],
        &["worker", "zone, dc, machine"],
    );
    assert_usage_error(
        &["gen", "--data-dir", d, "-i", "zone=x"],
        &["--identity", "zone=x"],
    );
    assert_usage_error(
        &["gen", "--data-dir", d, "--layout", "baidu"],
        &["expired", "move the epoch"],
    );
    assert_usage_error(
        &["gen", "--data-dir", d, "--layout", "bogus("],
        &["--layout"],
    );
    // clap's own errors (a missing argument) are also non-zero.
    let o = floe(&["decode"]);
    assert!(!o.status.success());
}

#[test]
fn layout_shows_capacity_and_end_date() {
    let o = floe(&["layout", "--layout", "genid"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("per node    2097152 IDs/s"), "{out}");
    assert!(out.contains("nodes       2048"), "{out}");
    assert!(out.contains("runs out    2106-02-07T06:28:16Z"), "{out}");
    let o = floe(&["layout", "--layout", "baidu", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["status"].as_str().unwrap().starts_with("UNUSABLE"), "{v}");
    assert_eq!(v["capacity"]["ids_per_tick_per_lane"], 8192);
}

#[track_caller]
fn gen(dir: &str, n: &str) -> Vec<u64> {
    let o = floe(&[
        "gen",
        "-n",
        n,
        "--data-dir",
        dir,
        "-i",
        "zone=1,dc=2,machine=3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).lines().map(|l| l.parse().unwrap()).collect()
}

#[test]
fn gen_runs_in_the_same_second_never_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut all = Vec::new();
    for _ in 0..4 {
        for id in gen(d, "1000") {
            assert_eq!((id >> 27) & 31, 1, "zone");
            assert_eq!((id >> 24) & 7, 2, "dc");
            assert_eq!((id >> 21) & 7, 3, "machine");
            all.push(id);
        }
    }
    // Increasing across runs, so none repeated.
    assert_increasing(&all);
    assert_eq!(all.len(), 4000);
}

#[test]
fn gen_refuses_a_data_dir_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _held = floe_store::FileHighWater::open(dir.path()).unwrap();
    let o = floe(&["gen", "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("in use by another Floe process"),
        "{}",
        stderr(&o)
    );
}
