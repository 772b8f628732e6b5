//! What the integration tests share: a fake server and the real `floe serve` (the ID checks
//! are `floe_testkit`'s).

#![allow(dead_code)] // each test binary uses a different part

pub mod fake;
pub mod real;

/// An address on loopback where nothing listens (a port just bound and released).
pub fn dead_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}
