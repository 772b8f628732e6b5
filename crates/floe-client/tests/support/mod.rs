//! What the integration tests share: a fake server, the real `floe serve`, and ID checks.

#![allow(dead_code)] // each test binary uses a different part

pub mod fake;
pub mod real;

use std::collections::HashSet;

/// Fails the test when an ID appears twice.
pub fn assert_unique(ids: &[u64]) {
    let mut seen = HashSet::with_capacity(ids.len());
    for &id in ids {
        assert!(seen.insert(id), "ID {id} was handed out twice");
    }
}

/// Fails the test unless the IDs strictly increase.
pub fn assert_increasing(ids: &[u64]) {
    for pair in ids.windows(2) {
        assert!(
            pair[0] < pair[1],
            "IDs do not increase: {} then {}",
            pair[0],
            pair[1]
        );
    }
}

/// An address on loopback where nothing listens (a port just bound and released).
pub fn dead_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}
