use std::io::Write;
use std::time::Duration;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn args_with_file(f: &tempfile::NamedTempFile) -> ServeArgs {
    ServeArgs {
        config: Some(f.path().to_path_buf()),
        ..ServeArgs::default()
    }
}

fn err(args: &ServeArgs, env_pairs: &[(&str, &str)]) -> String {
    load(args, &env(env_pairs)).unwrap_err().to_string()
}

#[test]
fn defaults() {
    let c = Config::default();
    assert_eq!(c.server.tcp_listen.to_string(), DEFAULT_TCP_LISTEN);
    assert_eq!(c.server.http_listen.to_string(), DEFAULT_HTTP_LISTEN);
    assert_eq!(c.server.max_connections, 10_000);
    assert_eq!(c.server.idle_timeout, Duration::from_secs(300));
    assert_eq!(c.server.frame_timeout, Duration::from_secs(10));
    assert_eq!(c.server.write_timeout, Duration::from_secs(10));
    assert_eq!(c.server.max_count, 100_000);
    assert_eq!(c.server.shutdown_timeout, Duration::from_secs(10));
    assert!(c.server.admin_token.is_none());
    // Unset: tokio decides (one worker per core, or TOKIO_WORKER_THREADS).
    assert_eq!(c.server.workers, None);
    let http = c.server.http;
    assert_eq!(http.header_timeout, Duration::from_secs(10));
    assert_eq!(http.body_timeout, Duration::from_secs(10));
    assert_eq!(http.idle_timeout, Duration::from_secs(60));
    assert_eq!(http.max_connections, 10_000);
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.log.level, LogLevel::Info);
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.snowflake.layout, Layout::parse("genid").unwrap());
    assert!(c.snowflake.identity.is_zero());
    assert!(c.snowflake.volume.is_none());
}

#[test]
fn identity_zero_is_a_warning() {
    let loaded = load(&ServeArgs::default(), &[]).unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("snowflake.identity is 0")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn precedence_file_env_flags() {
    let f = file(
        r#"
data_dir = "/tmp/from-file"
[server]
tcp_listen = "127.0.0.1:4000"
max_count = 500
[snowflake]
identity = { zone = 1, dc = 1, machine = 1 }
"#,
    );
    let mut args = args_with_file(&f);
    args.identity = Some("machine=3".into());
    let loaded = load(
        &args,
        &env(&[
            ("FLOE_SERVER__MAX_COUNT", "700"),
            ("FLOE_SNOWFLAKE__IDENTITY__DC", "2"),
            ("FLOE_SERVER__IDLE_TIMEOUT", "90s"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    let c = loaded.config;
    assert_eq!(c.server.tcp_listen.to_string(), "127.0.0.1:4000");
    assert_eq!(c.server.max_count, 700);
    assert_eq!(c.server.idle_timeout, Duration::from_secs(90));
    assert_eq!(c.data_dir, PathBuf::from("/tmp/from-file"));
    assert_eq!(c.snowflake.identity.values(), &[1, 2, 3]);
}

#[test]
fn masa_worker_id_env() {
    let args = ServeArgs {
        layout: Some("masa".into()),
        ..ServeArgs::default()
    };
    let c = load(&args, &env(&[("WORKER_ID", "12")])).unwrap().config;
    assert_eq!(c.snowflake.identity.values(), &[12]);
    // FLOE_WORKER_ID wins over WORKER_ID, whatever the order.
    let c = load(
        &args,
        &env(&[("FLOE_WORKER_ID", "13"), ("WORKER_ID", "12")]),
    )
    .unwrap()
    .config;
    assert_eq!(c.snowflake.identity.values(), &[13]);
    // The genid layout has no worker field: WORKER_ID is ignored.
    let c = load(&ServeArgs::default(), &env(&[("WORKER_ID", "12")]))
        .unwrap()
        .config;
    assert!(c.snowflake.identity.is_zero());
    let e = err(&args, &[("WORKER_ID", "5000")]);
    assert!(e.contains("snowflake.identity.worker = 5000"), "{e}");
    assert!(e.contains("0..=1023"), "{e}");
}

#[test]
fn shorthand_env_vars() {
    let c = load(
        &ServeArgs::default(),
        &env(&[
            ("FLOE_LAYOUT", "twitter"),
            ("FLOE_IDENTITY", "dc=3,worker=4"),
            ("FLOE_ADMIN_TOKEN", "12345678"),
            ("FLOE_DATA_DIR", "/var/lib/floe"),
        ]),
    )
    .unwrap()
    .config;
    assert_eq!(c.snowflake.layout, Layout::parse("twitter").unwrap());
    assert_eq!(c.snowflake.identity.values(), &[3, 4]);
    assert_eq!(c.server.admin_token.as_deref(), Some("12345678"));
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/floe"));
    assert!(
        !format!("{c:?}").contains("12345678"),
        "token must not be in Debug output"
    );
}

#[test]
fn every_bad_value_names_key_value_and_range() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[server]\nbogus = 1",
            &[
                "server.bogus",
                "unknown key `bogus`",
                "tcp_listen, http_listen",
            ],
        ),
        (
            "nonsense = 1",
            &[
                "nonsense",
                "unknown key",
                "data_dir, server, log, snowflake",
            ],
        ),
        (
            "[snowflake]\nlayout = \"nosuch\"",
            &["snowflake.layout", "unknown layout"],
        ),
        (
            "[snowflake]\nlayout = \"baidu\"",
            &["snowflake.layout", "expired"],
        ),
        (
            "[snowflake]\nlayout = \"time:41/1ms@2999-01-01 seq:22\"",
            &["snowflake.layout", "in the future"],
        ),
        (
            "[snowflake.identity]\nzone = 32",
            &["snowflake.identity.zone = 32", "0..=31"],
        ),
        (
            "[snowflake.identity]\nzone = -1",
            &["snowflake.identity.zone = -1", "0..=31"],
        ),
        (
            "[snowflake.identity]\nworker = 1",
            &["snowflake.identity.worker", "zone, dc, machine"],
        ),
        (
            "[server]\nidle_timeout = \"5 parsecs\"",
            &["server.idle_timeout = \"5 parsecs\"", "duration"],
        ),
        (
            "[server]\nidle_timeout = 5",
            &["server.idle_timeout = 5", "unit"],
        ),
        (
            "[server]\nframe_timeout = \"1ms\"",
            &["server.frame_timeout", "10ms..=1h"],
        ),
        (
            "[server]\nwrite_timeout = \"2h\"",
            &["server.write_timeout = \"2h\"", "10ms..=1h"],
        ),
        (
            "[server]\ntcp_listen = \"nonsense\"",
            &["server.tcp_listen = \"nonsense\"", "IP address and port"],
        ),
        (
            "[server]\nhttp_listen = \"localhost:99999\"",
            &["server.http_listen", "IP address and port"],
        ),
        (
            "[server]\nmax_count = 0",
            &["server.max_count = 0", "1..=1000000"],
        ),
        (
            "[server]\nmax_connections = \"many\"",
            &["server.max_connections = \"many\"", "1..=1000000"],
        ),
        (
            "[server]\npeers = [\"nohost\"]",
            &["server.peers[0] = \"nohost\"", "host:port"],
        ),
        (
            "[server]\nadmin_token = \"has space\"",
            &["server.admin_token", "without spaces"],
        ),
        (
            "[server]\nadmin_token = \"\"",
            &["server.admin_token = \"\"", "omit the key to disable"],
        ),
        (
            "[server]\nadmin_token = \"töken\"",
            &["server.admin_token = <redacted>", "ASCII"],
        ),
        ("[server]\nworkers = 0", &["server.workers = 0", "1..=1024"]),
        (
            "[server]\nworkers = \"all\"",
            &["server.workers = \"all\"", "1..=1024"],
        ),
        (
            "[server]\nhttp_max_connections = 0",
            &["server.http_max_connections = 0", "1..=1000000"],
        ),
        (
            "[server]\nhttp_header_timeout = \"1ms\"",
            &["server.http_header_timeout = \"1ms\"", "10ms..=1h"],
        ),
        (
            "[server]\nhttp_body_timeout = \"2h\"",
            &["server.http_body_timeout = \"2h\"", "10ms..=1h"],
        ),
        (
            "[server]\nhttp_idle_timeout = 5",
            &["server.http_idle_timeout = 5", "100ms..=7days"],
        ),
        (
            "[log]\nlevel = \"loud\"",
            &["log.level = \"loud\"", "trace, debug, info, warn, error"],
        ),
        (
            "[log]\nformat = \"xml\"",
            &["log.format = \"xml\"", "text or json"],
        ),
        (
            "[snowflake]\nlanes = 33",
            &["snowflake.lanes = 33", "1..=32"],
        ),
        (
            "[snowflake]\nmax_rollback = \"1s\"",
            &["snowflake.high_water_window", "max_rollback"],
        ),
        (
            "[snowflake]\nmachine_clock = \"maybe\"",
            &["snowflake.machine_clock = \"maybe\"", "true or false"],
        ),
        (
            "[snowflake]\nclock_offset_ms = 100000000",
            &["snowflake.clock_offset_ms", "-86400000..=86400000"],
        ),
        (
            "[snowflake.volume]\njump_probability = 2.0",
            &["snowflake.volume.jump_probability = 2", "0..=1"],
        ),
        (
            "[snowflake.volume]\njump_probability = 0.5\nmax_jump_ticks = 5",
            &["snowflake.volume.max_jump_ticks = 5", "1..=1"],
        ),
        ("data_dir = \"\"", &["data_dir"]),
        ("[server\n", &["TOML"]),
    ];
    for (toml, wants) in cases {
        let f = file(toml);
        let e = err(&args_with_file(&f), &[]);
        for want in *wants {
            assert!(e.contains(want), "{toml:?}: {e:?} lacks {want:?}");
        }
    }
}

#[test]
fn bad_env_and_flags_name_their_source() {
    let e = err(&ServeArgs::default(), &[("FLOE_SERVER__BOGUS", "1")]);
    assert!(e.contains("FLOE_SERVER__BOGUS"), "{e}");
    let e = err(&ServeArgs::default(), &[("FLOE_SERVER__MAX_COUNT", "abc")]);
    assert!(e.contains("server.max_count = \"abc\""), "{e}");
    let e = err(&ServeArgs::default(), &[("FLOE_IDENTITY", "zone")]);
    assert!(e.contains("FLOE_IDENTITY"), "{e}");
    let args = ServeArgs {
        identity: Some("zone=32".into()),
        ..ServeArgs::default()
    };
    let e = err(&args, &[]);
    assert!(e.contains("snowflake.identity.zone = 32"), "{e}");
    let args = ServeArgs {
        identity: Some("zone=-1".into()),
        ..ServeArgs::default()
    };
    assert!(err(&args, &[]).contains("--identity"));
    let args = ServeArgs {
        config: Some("/nonexistent/floe.toml".into()),
        ..ServeArgs::default()
    };
    assert!(err(&args, &[]).contains("/nonexistent/floe.toml"));
}

#[test]
fn genid_config_json() {
    let f = file(r#"{"port":3900,"zone_id":1,"dc_id":2,"machine_id":3,"log":"x"}"#);
    let args = ServeArgs {
        genid_config: Some(f.path().to_path_buf()),
        ..ServeArgs::default()
    };
    let loaded = load(&args, &[]).unwrap();
    assert_eq!(
        loaded.config.server.tcp_listen.to_string(),
        "127.0.0.1:3900"
    );
    assert_eq!(loaded.config.snowflake.identity.values(), &[1, 2, 3]);
    assert!(loaded.warnings.iter().any(|w| w.contains("log")));

    let cases = [
        (
            r#"{"port":3778,"zone_id":32,"dc_id":0,"machine_id":0}"#,
            "zone_id = 32",
        ),
        (
            r#"{"port":3778,"zone_id":0,"dc_id":8,"machine_id":0}"#,
            "dc_id = 8",
        ),
        (
            r#"{"port":3778,"zone_id":0,"dc_id":0,"machine_id":-1}"#,
            "machine_id = -1",
        ),
        (
            r#"{"port":3778,"zone_id":-3,"dc_id":0,"machine_id":0}"#,
            "zone_id = -3",
        ),
        (
            r#"{"port":70000,"zone_id":0,"dc_id":0,"machine_id":0}"#,
            "port = 70000",
        ),
        (
            r#"{"port":3778,"dc_id":0,"machine_id":0}"#,
            "zone_id = missing",
        ),
        (
            r#"{"port":3778,"zone_id":"1","dc_id":0,"machine_id":0}"#,
            "zone_id = \"1\"",
        ),
        ("not json", "not valid JSON"),
    ];
    for (json, want) in cases {
        let f = file(json);
        let args = ServeArgs {
            genid_config: Some(f.path().to_path_buf()),
            ..ServeArgs::default()
        };
        let e = err(&args, &[]);
        assert!(e.contains(want), "{json}: {e}");
    }
}

#[test]
fn peers_and_volume_parse() {
    let c = Config::from_toml(
        r#"
[server]
peers = ["10.0.0.2:8880", "http://node3:8880/"]
admin_token = "s3cret-token"
[snowflake.volume]
jump_probability = 0.25
random_seq_start = true
"#,
    )
    .unwrap();
    assert_eq!(c.server.peers, ["10.0.0.2:8880", "node3:8880"]);
    let v = c.snowflake.volume.unwrap();
    assert_eq!(v.jump_probability, 0.25);
    assert!(v.random_seq_start);
    let c = load(
        &ServeArgs::default(),
        &env(&[("FLOE_SERVER__PEERS", "a:1, b:2")]),
    )
    .unwrap()
    .config;
    assert_eq!(c.server.peers, ["a:1", "b:2"]);
}

#[test]
fn segment_and_registry_keys_are_validated() {
    let c = Config::default();
    let seg = c.segment.as_ref().expect("segment mode is on by default");
    assert_eq!(seg.url, None, "the SQLite file under data_dir");
    assert_eq!(seg.table.table, "floe_segments");
    assert!(c.registry.is_none(), "a static identity by default");
    for (toml, key) in [
        ("[segment]\nurl = \"oracle://x\"", "segment.url"),
        ("[segment]\nschema = \"nope\"", "segment.schema"),
        ("[segment]\ntable = \"a;b\"", "segment.table"),
        (
            "[segment]\ntag_column = \"bad-col\"",
            "segment.tag_column = \"bad-col\"",
        ),
        (
            "[segment]\nrefill_threshold = 1.5",
            "segment.refill_threshold",
        ),
        ("[segment]\nmin_step = 10\nmax_step = 5", "segment.min_step"),
        ("[registry]\nkind = \"consul\"", "registry.kind"),
        ("[registry]\nkind = \"sql\"", "registry.url"),
        ("[registry]\nkind = \"redis\"\nttl = \"4s\"", "registry.ttl"),
        (
            "[registry]\nkind = \"redis\"\nfields = [\"worker\"]",
            "registry.fields",
        ),
    ] {
        let e = Config::from_toml(toml).unwrap_err().to_string();
        assert!(e.contains(key), "{toml}: {e}");
    }
    let c = Config::from_toml("[registry]\nkind = \"redis\"\nttl = \"5s\"").unwrap();
    let r = c.registry.unwrap();
    assert_eq!(
        (r.fields, r.ttl),
        (vec!["machine".to_string()], Duration::from_secs(5))
    );
    assert!(Config::from_toml("[segment]\nenabled = false")
        .unwrap()
        .segment
        .is_none());
}

#[test]
fn values_of_the_wrong_type_are_refused() {
    for (toml, key, allowed) in [
        ("data_dir = 5", "data_dir = 5", "a string"),
        (
            "[server]\npeers = \"h:1\"",
            "server.peers = \"h:1\"",
            "an array of strings",
        ),
        (
            "[server]\npeers = [5]",
            "server.peers[0] = 5",
            "\"host:port\" string",
        ),
        (
            "[server]\ntcp_listen = 3778",
            "server.tcp_listen = 3778",
            "a string",
        ),
        (
            "[server]\nadmin_token = 12345",
            "server.admin_token",
            "a string",
        ),
        ("[log]\nlevel = true", "log.level = true", "a string"),
        (
            "[snowflake]\nlayout = 1",
            "snowflake.layout = 1",
            "a string",
        ),
        (
            "[registry]\nkind = \"redis\"\nfields = \"machine\"",
            "registry.fields",
            "array",
        ),
    ] {
        let e = Config::from_toml(toml).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains(allowed), "{toml}: {e}");
    }
    // A list from the environment is one comma-separated string, as before.
    let c = load(
        &ServeArgs::default(),
        &env(&[("FLOE_SERVER__PEERS", "a:1")]),
    )
    .unwrap()
    .config;
    assert_eq!(c.server.peers, ["a:1"]);
}

#[test]
fn typed_keys_accept_their_string_form() {
    let c = load(
        &ServeArgs::default(),
        &env(&[
            ("FLOE_SERVER__MAX_COUNT", "500"),
            ("FLOE_SERVER__MAX_CONNECTIONS", " 7 "),
            ("FLOE_SERVER__WORKERS", "1"),
            ("FLOE_SNOWFLAKE__MACHINE_CLOCK", "yes"),
            ("FLOE_SEGMENT__REFILL_THRESHOLD", "0.25"),
            ("FLOE_SEGMENT__AUTO_CREATE", "on"),
            ("FLOE_SERVER__SHUTDOWN_TIMEOUT", "1m 30s"),
        ]),
    )
    .unwrap()
    .config;
    assert_eq!(c.server.max_count, 500);
    assert_eq!(c.server.max_connections, 7);
    assert_eq!(c.server.workers, Some(1));
    assert!(c.snowflake.machine_clock);
    let seg = c.segment.unwrap();
    assert_eq!(seg.service.buffer.refill_threshold, 0.25);
    assert!(seg.service.auto_create);
    assert_eq!(c.server.shutdown_timeout, Duration::from_secs(90));
    // The same keys in TOML take their TOML types.
    let c =
        Config::from_toml("[server]\nmax_count = 500\n[snowflake]\nmachine_clock = true").unwrap();
    assert_eq!(c.server.max_count, 500);
    assert!(c.snowflake.machine_clock);
}

#[test]
fn warnings_are_raised_where_they_apply() {
    let zero = |w: &String| w.starts_with("snowflake.identity is 0");
    // A registry hands out the identity: a static 0 is expected, not warned about.
    let loaded = load(
        &ServeArgs::default(),
        &env(&[("FLOE_REGISTRY__KIND", "redis")]),
    )
    .unwrap();
    assert!(loaded.config.registry.is_some());
    assert!(!loaded.warnings.iter().any(zero), "{:?}", loaded.warnings);
    // FLOE_WORKER_ID is meant for Floe, so ignoring it is said; MASA's WORKER_ID is not.
    let loaded = load(&ServeArgs::default(), &env(&[("FLOE_WORKER_ID", "3")])).unwrap();
    let ignored = ConfigWarning::WorkerIdIgnored {
        var: "FLOE_WORKER_ID".into(),
    };
    assert!(loaded.warnings.contains(&ignored.to_string()));
    let loaded = load(&ServeArgs::default(), &env(&[("WORKER_ID", "3")])).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(zero(&loaded.warnings[0]));
    let w = ConfigWarning::ZeroIdentity {
        fields: vec!["zone".into(), "dc".into()],
    };
    assert!(w.to_string().contains("(zone, dc)"), "{w}");
}

#[test]
fn number_sequences_are_validated_naming_their_keys() {
    let order_no = |body: &str| format!("[numbers.order_no]\n{body}");
    let c = Config::from_toml(&order_no(
        "format = \"ORD-{date:%Y%m%d}-{seq:06}\"\nreset = \"day\"\ntime_zone = \"Asia/Shanghai\"\nstep = 500",
    ))
    .unwrap();
    let s = &c.numbers[0];
    assert_eq!(
        (
            s.name(),
            s.format().as_str(),
            s.reset().as_str(),
            s.zone().to_string(),
            s.start(),
            s.step()
        ),
        (
            "order_no",
            "ORD-{date:%Y%m%d}-{seq:06}",
            "day",
            "Asia/Shanghai".to_string(),
            1,
            500
        )
    );
    let c = Config::from_toml(&order_no("format = \"N{seq}\"")).unwrap();
    let s = &c.numbers[0];
    assert_eq!(
        (s.reset().as_str(), s.zone().to_string(), s.step()),
        ("never", "UTC".into(), 1000)
    );
    assert!(Config::default().numbers.is_empty());

    // The messages of docs/configuration.md, word for word.
    for (body, message) in [
        (
            "format = \"ORD-{dat}-{seq:06}\"",
            "numbers.order_no.format = \"ORD-{dat}-{seq:06}\" is invalid: unknown placeholder `{dat}`; allowed are `{date:<strftime>}`, `{date}`, `{seq}` and `{seq:0N}` (write `{{` and `}}` for literal braces)",
        ),
        (
            "format = \"ORD-{date:%Y%m}-{seq:06}\"\nreset = \"day\"",
            "numbers.order_no.format = \"ORD-{date:%Y%m}-{seq:06}\" is invalid: reset = \"day\" but the dates render \"200001\" on 2000-01-01 and on 2000-01-02, two different days, so their numbers would collide; include every field of the day, e.g. `{date:%Y%m%d}`",
        ),
        (
            "format = \"ORD-{date}-{seq:06}\"\ntime_zone = \"Asia/Shangai\"",
            "numbers.order_no.time_zone = \"Asia/Shangai\" is invalid: an IANA zone name such as \"Asia/Shanghai\" or \"UTC\" (case matters), or a fixed offset such as \"+08:00\"",
        ),
        (
            "format = \"ORD-{date}-{seq:06}\"\nstart = 0",
            "numbers.order_no.start = 0 is invalid: 1..=999999 (`{seq:06}` holds 6 digits; 0 is never issued)",
        ),
    ] {
        assert_eq!(Config::from_toml(&order_no(body)).unwrap_err().to_string(), message);
    }
    for (toml, key) in [
        ("[numbers.order_no]\nreset = \"day\"", "numbers.order_no.format = missing"),
        ("[numbers.order_no]\nformat = \"{seq}\"\nreset = \"week\"", "numbers.order_no.reset"),
        ("[numbers.order_no]\nformat = \"{seq}\"\nstep = 0", "numbers.order_no.step = 0"),
        ("[numbers.order_no]\nformat = \"{seq}\"\nbogus = 1", "unknown key `bogus`"),
        ("[numbers.\"a b\"]\nformat = \"{seq}\"", "numbers.a b.name"),
        (
            "[segment]\nenabled = false\n[numbers.order_no]\nformat = \"{seq}\"",
            "numbers.order_no = a number sequence is invalid: number sequences keep their counters in the segment table",
        ),
        ("[segment]\nnumbers_table = \"a-b\"", "segment.numbers_table"),
    ] {
        let e = Config::from_toml(toml).unwrap_err().to_string();
        assert!(e.contains(key), "{toml}: {e}");
    }
    let loaded = load(
        &ServeArgs::default(),
        &env(&[
            ("FLOE_NUMBERS__INV__FORMAT", "INV{seq:04}"),
            ("FLOE_NUMBERS__INV__STEP", "20"),
        ]),
    )
    .unwrap();
    assert_eq!(loaded.config.numbers[0].name(), "inv");
    assert_eq!(loaded.config.numbers[0].step(), 20);
}

#[test]
#[cfg(feature = "etcd")]
fn etcd_registry_takes_endpoints_auth_and_tls() {
    use floe_store::registry::{EtcdTls, RegistryConfig};
    let c = Config::from_toml(
        "[registry]\nkind = \"etcd\"\nendpoints = [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\"]\nuser = \"floe\"\npassword = \"pw\"\nkey_prefix = \"/ids\"",
    )
    .unwrap();
    let RegistryConfig::Etcd(e) = c.registry.unwrap().registry else {
        panic!("not etcd")
    };
    assert_eq!(
        e.endpoints,
        ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    );
    assert_eq!(e.user, Some(("floe".into(), "pw".into())));
    assert_eq!(e.key_prefix, "/ids");
    // `url` with commas does the same (handy in an environment variable); the default is local.
    let c = Config::from_toml(
        "[registry]\nkind = \"etcd\"\nurl = \"https://a:2379, https://b:2379\"\ntls_ca_file = \"/etc/etcd/ca.pem\"",
    )
    .unwrap();
    let RegistryConfig::Etcd(e) = c.registry.unwrap().registry else {
        panic!("not etcd")
    };
    assert_eq!(e.endpoints, ["https://a:2379", "https://b:2379"]);
    assert_eq!(
        e.tls,
        Some(EtcdTls {
            ca_file: Some("/etc/etcd/ca.pem".into()),
            ..EtcdTls::default()
        })
    );
    let c = Config::from_toml("[registry]\nkind = \"etcd\"").unwrap();
    let RegistryConfig::Etcd(e) = c.registry.unwrap().registry else {
        panic!("not etcd")
    };
    assert_eq!(e.endpoints, ["http://127.0.0.1:2379"]);
    for (toml, key, why) in [
        (
            "user = \"floe\"",
            "registry.user",
            "both registry.user and registry.password",
        ),
        (
            "url = \"https://a:2379\"",
            "registry.endpoints",
            "need the CA file",
        ),
        (
            "url = \"a:2379\"",
            "registry.endpoints",
            "expected http://host:port",
        ),
    ] {
        let e = Config::from_toml(&format!("[registry]\nkind = \"etcd\"\n{toml}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key) && e.contains(why), "{toml}: {e}");
    }
}

#[test]
#[cfg(not(feature = "etcd"))]
fn etcd_registry_without_the_feature_says_how_to_build_it() {
    let e = Config::from_toml("[registry]\nkind = \"etcd\"\nendpoints = [\"http://a:2379\"]")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("registry.kind") && e.contains("--features etcd"),
        "{e}"
    );
}

#[test]
fn zookeeper_registry_takes_a_connect_string_root_auth_and_a_leaf_endpoint() {
    use floe_store::registry::RegistryConfig;
    let c = Config::from_toml(
        "[registry]\nkind = \"zookeeper\"\nurl = \"zk1:2181,zk2:2181\"\nkey_prefix = \"/ids\"\nuser = \"floe\"\npassword = \"pw\"\nleaf_name = \"com.sankuai.leaf.opensource.test\"\nendpoint = \"10.0.0.7:8080\"",
    )
    .unwrap();
    let RegistryConfig::Zookeeper(z) = c.registry.unwrap().registry else {
        panic!("not zookeeper")
    };
    assert_eq!(z.connect, "zk1:2181,zk2:2181");
    assert_eq!(z.root, "/ids");
    assert_eq!(z.auth.as_deref(), Some("floe:pw"));
    assert_eq!(
        z.leaf_name.as_deref(),
        Some("com.sankuai.leaf.opensource.test")
    );
    assert_eq!(z.endpoint.as_deref(), Some("10.0.0.7:8080"));
    let c = Config::from_toml("[registry]\nkind = \"zookeeper\"").unwrap();
    let RegistryConfig::Zookeeper(z) = c.registry.unwrap().registry else {
        panic!("not zookeeper")
    };
    assert_eq!(
        (z.connect.as_str(), z.root.as_str()),
        ("127.0.0.1:2181", "/floe")
    );
    for (toml, key, why) in [
        ("url = \"zk1\"", "registry.url", "host:port"),
        ("key_prefix = \"floe\"", "registry.url", "absolute path"),
        (
            "namespace = \"a/b\"",
            "registry.namespace",
            "one path segment",
        ),
        (
            "password = \"pw\"",
            "registry.user",
            "both registry.user and registry.password",
        ),
    ] {
        let e = Config::from_toml(&format!("[registry]\nkind = \"zookeeper\"\n{toml}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key) && e.contains(why), "{toml}: {e}");
    }
}
