//! Every class of invalid configuration makes `floe serve` exit with 64 and a message on stderr
//! naming the key (and the value and allowed range where there is one); a valid layered
//! configuration (file < environment < flags) starts.

#[path = "fixtures/serve_support.rs"]
mod support;

use std::time::Duration;

use floe_testkit::http::blocking;
use support::{run_to_exit, Floe};

/// Environment variables of one case.
type Env<'a> = &'a [(&'a str, &'a str)];

const LOCAL: [&str; 4] = [
    "--tcp-listen",
    "127.0.0.1:0",
    "--http-listen",
    "127.0.0.1:0",
];

#[track_caller]
fn expect_usage_error(args: &[&str], env: &[(&str, &str)], wants: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut all = vec!["serve", "--data-dir", data.to_str().unwrap()];
    all.extend_from_slice(args);
    let (code, stderr) = run_to_exit(&all, env);
    assert_eq!(code, Some(64), "{args:?} {env:?}: {stderr}");
    for want in wants {
        assert!(
            stderr.contains(want),
            "{args:?} {env:?}: stderr lacks {want:?}:\n{stderr}"
        );
    }
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn invalid_values_exit_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let toml_cases: &[(&str, &[&str])] = &[
        ("[server]\nbogus = 1\n", &["server.bogus", "unknown key"]),
        (
            "[server]\nidle_timeout = \"5 parsecs\"\n",
            &["server.idle_timeout", "5 parsecs", "duration"],
        ),
        (
            "[server]\nmax_count = 0\n",
            &["server.max_count = 0", "1..=1000000"],
        ),
        (
            "[server]\ntcp_listen = \"nowhere\"\n",
            &["server.tcp_listen", "nowhere", "IP address and port"],
        ),
        (
            "[snowflake]\nlayout = \"baidu\"\n",
            &["snowflake.layout", "expired"],
        ),
        (
            "[snowflake]\nlayout = \"nosuch\"\n",
            &["snowflake.layout", "unknown layout"],
        ),
        (
            "[snowflake.identity]\nzone = 32\n",
            &["snowflake.identity.zone = 32", "0..=31"],
        ),
    ];
    for (i, (toml, wants)) in toml_cases.iter().enumerate() {
        let path = write(&dir, &format!("bad{i}.toml"), toml);
        let mut args = vec!["--config", path.as_str()];
        // Flags override the file, so the bad tcp_listen case must not pass --tcp-listen.
        if toml.contains("tcp_listen") {
            args.extend_from_slice(&LOCAL[2..]);
        } else {
            args.extend_from_slice(&LOCAL);
        }
        expect_usage_error(&args, &[], wants);
    }

    let flag_cases: &[(&[&str], &[&str])] = &[
        (&["--layout", "baidu"], &["snowflake.layout", "expired"]),
        (
            &["--layout", "time:99 seq:1"],
            &["snowflake.layout", "100 bits", "limit is 64"],
        ),
        (
            &["--identity", "zone=32"],
            &["snowflake.identity.zone = 32", "0..=31"],
        ),
        (&["--identity", "zone=-1"], &["--identity", "non-negative"]),
        (
            &["--tcp-listen", "127.0.0.1"],
            &["server.tcp_listen", "IP address and port"],
        ),
        (&["--http-listen", "[::1]:http"], &["server.http_listen"]),
        (
            &["--log-level", "loud"],
            &["log.level", "trace, debug, info, warn, error"],
        ),
        (
            &["--config", "/nonexistent/floe.toml"],
            &["--config", "/nonexistent/floe.toml"],
        ),
    ];
    for (args, wants) in flag_cases {
        expect_usage_error(args, &[], wants);
    }

    let env_cases: &[(Env, &[&str])] = &[
        (
            &[("FLOE_SERVER__BOGUS", "1")],
            &["FLOE_SERVER__BOGUS", "unknown key"],
        ),
        (
            &[("FLOE_SERVER__MAX_COUNT", "0")],
            &["server.max_count = 0", "1..=1000000"],
        ),
        (
            &[("FLOE_SERVER__FRAME_TIMEOUT", "soon")],
            &["server.frame_timeout", "soon"],
        ),
        (
            &[("FLOE_SNOWFLAKE__LAYOUT", "baidu")],
            &["snowflake.layout", "expired"],
        ),
        (
            &[("FLOE_LAYOUT", "masa"), ("WORKER_ID", "4096")],
            &["snowflake.identity.worker = 4096", "0..=1023"],
        ),
    ];
    for (env, wants) in env_cases {
        expect_usage_error(&LOCAL, env, wants);
    }

    let genid_cases: &[(&str, &[&str])] = &[
        (
            r#"{"port":0,"zone_id":1,"dc_id":2,"machine_id":-1}"#,
            &["machine_id = -1", "0..=7"],
        ),
        (
            r#"{"port":0,"zone_id":32,"dc_id":2,"machine_id":3}"#,
            &["zone_id = 32", "0..=31"],
        ),
        (
            r#"{"port":0,"zone_id":-1,"dc_id":2,"machine_id":3}"#,
            &["zone_id = -1", "0..=31"],
        ),
        (
            r#"{"port":0,"zone_id":1,"dc_id":8,"machine_id":3}"#,
            &["dc_id = 8", "0..=7"],
        ),
    ];
    for (i, (json, wants)) in genid_cases.iter().enumerate() {
        let path = write(&dir, &format!("genid{i}.json"), json);
        expect_usage_error(
            &[
                "--genid-config",
                path.as_str(),
                "--http-listen",
                "127.0.0.1:0",
            ],
            &[],
            wants,
        );
    }
}

#[test]
fn layered_configuration_and_genid_config_start() {
    let dir = tempfile::tempdir().unwrap();
    let toml = write(
        &dir,
        "floe.toml",
        "[server]\nmax_count = 500\n[snowflake.identity]\nzone = 1\ndc = 1\nmachine = 1\n",
    );
    let data = dir.path().join("data");
    let mut floe = Floe::start(
        &data,
        &["--config", &toml, "--identity", "machine=3"],
        &[
            ("FLOE_SNOWFLAKE__IDENTITY__DC", "2"),
            ("FLOE_SERVER__MAX_COUNT", "700"),
        ],
    );
    let r = blocking::get(floe.http, "/v1/info");
    assert_eq!(r.status, 200, "{}", r.body);
    let info = r.json();
    assert_eq!(
        info["identity"],
        serde_json::json!({"zone": 1, "dc": 2, "machine": 3})
    );
    assert_eq!(info["max_count"], 700);
    // Unset: one worker per core (the clean environment has no TOKIO_WORKER_THREADS).
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(info["workers"], cores);
    assert_eq!(floe.terminate(Duration::from_secs(15)).code(), Some(0));

    // server.workers sets the runtime's worker threads, whatever the core count.
    let data = dir.path().join("data-workers");
    let mut floe = Floe::start(&data, &[], &[("FLOE_SERVER__WORKERS", "3")]);
    let r = blocking::get(floe.http, "/v1/info");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["workers"], 3);
    assert_eq!(floe.terminate(Duration::from_secs(15)).code(), Some(0));

    // GenID's config.json as is: its port becomes the TCP port, its ids the identity.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let genid = write(
        &dir,
        "config.json",
        &format!(r#"{{"port":{port},"zone_id":31,"dc_id":7,"machine_id":7}}"#),
    );
    let data = dir.path().join("data2");
    let mut args = vec![
        "serve",
        "--genid-config",
        genid.as_str(),
        "--http-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(&["--log-level", "warn"]);
    let mut child = support::floe_command(&args, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with(&format!("floe: listening tcp=127.0.0.1:{port} ")),
        "{line:?}"
    );
}

#[test]
fn a_lease_keeper_that_gives_up_stops_the_server_with_64() {
    // A StatefulSet ordinal outside the layout's pool can never be leased: the registry's
    // precheck refuses it at start (64) instead of the node running unready forever.
    expect_usage_error(
        &[
            "--tcp-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ],
        &[
            ("HOSTNAME", "floe-9"),
            ("FLOE_REGISTRY__KIND", "kubernetes"),
        ],
        &["does not fit the layout's node field(s)", "floe-9", "0..8"],
    );
    expect_usage_error(
        &[],
        &[
            ("FLOE_REGISTRY__KIND", "redis"),
            ("FLOE_REGISTRY__TTL", "4s"),
        ],
        &["registry.ttl", "at least 5s"],
    );
}
