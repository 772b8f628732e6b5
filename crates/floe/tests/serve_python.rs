//! GenID's own Python client, unchanged, against the real `floe serve`.
//!
//! Fails (does not skip) when python3 is missing: the compatibility it checks is a product
//! promise, and a CI machine without Python must not pass silently.

#[path = "fixtures/serve_support.rs"]
mod support;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use support::Floe;

#[test]
fn genid_python_client_works_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut floe = Floe::start(dir.path(), &["--identity", "zone=17,dc=5,machine=6"], &[]);
    let driver = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/genid_driver.py"
    );
    let port = floe.tcp.port().to_string();
    let out = Command::new("python3")
        .args([driver, "127.0.0.1", &port, "17", "5", "6"])
        .output()
        .unwrap_or_else(|e| panic!("python3 is required for this test and could not run: {e}"));
    assert!(
        out.status.success(),
        "the GenID Python client failed:\n{}\nserver stderr:\n{}",
        String::from_utf8_lossy(&out.stderr),
        floe.stderr()
    );
    let ids: Vec<u64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().expect("one ID per line"))
        .collect();
    assert_eq!(ids.len(), 100 * 20 + 5);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "duplicates"
    );
    for id in &ids {
        assert_eq!(
            ((id >> 27) & 31, (id >> 24) & 7, (id >> 21) & 7),
            (17, 5, 6),
            "{id}"
        );
    }
    let status = floe.terminate(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", floe.stderr());
}
