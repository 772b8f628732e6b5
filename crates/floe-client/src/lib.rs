//! Rust client for Floe, the unique 64-bit ID service.
//!
//! - **Failover**: give it a list of servers. A connection error, a timeout or a v2
//!   "unavailable" reply ejects that server for a jittered, exponentially growing backoff and
//!   the whole request is retried on the next healthy one; a caller never gets part of a batch.
//!   Requests the server refuses (bad request, unknown tag, over limit) fail at once with a
//!   typed [`Error`]. When every server is down the call fails with [`Error::Unavailable`],
//!   which names each server's last error, within the request timeout.
//! - **Pooling and pipelining**: a few long-lived connections per server, each owned by a task
//!   with a request queue; concurrent calls are pipelined on them.
//! - **Protocols**: Floe's v2 (snowflake, segment, numbers, ping, error statuses) and GenID's v1. By
//!   default each server is probed with a v2 ping and a plain GenID server, which closes the
//!   connection on it, is spoken to in v1.
//! - **Local prefetch** (optional, per mode and per tag): a buffer of IDs refilled in the
//!   background below a low-water mark, so `next_id` is served from memory almost always —
//!   tens of millions of IDs a second on one thread, with no lock. Prefetched IDs are unique
//!   but not ordered across refills, and **prefetched snowflake IDs may be older than their
//!   use**: their time field tells when they were fetched, not when they were handed out.
//! - **Business numbers**: [`Client::number`] and [`Client::numbers`] return a number
//!   sequence's formatted numbers (`ORD-20261130-000042`, v2 op 4), with the same failover; they
//!   are never prefetched, since a buffered number would carry the date of its fetch.
//! - **Blocking**: [`blocking::Client`] for programs without a tokio runtime.
//!
//! ```no_run
//! use std::time::Duration;
//! use floe_client::{ClientBuilder, Prefetch};
//!
//! # async fn run() -> Result<(), floe_client::Error> {
//! let client = ClientBuilder::new(["10.0.0.1:3778", "10.0.0.2:3778"])
//!     .request_timeout(Duration::from_secs(2))
//!     .snowflake_prefetch(Prefetch::new(1_000, 250))
//!     .build()?;
//! let id = client.next_id().await?;
//! let batch = client.next_ids(100).await?;
//! let order_id = client.segment("orders").next_id().await?;
//! let order_no = client.number("order_no").await?;
//! println!("{id} {} {order_id} {order_no}", batch.len());
//! # Ok(())
//! # }
//! ```
//!
//! Without a runtime:
//!
//! ```no_run
//! let client = floe_client::blocking::Client::new(
//!     floe_client::ClientBuilder::new(["127.0.0.1:3778"]),
//! )?;
//! let id = client.next_id()?;
//! # Ok::<(), floe_client::Error>(())
//! ```
//!
//! A runnable example is `cargo run -p floe-client --example get_ids -- 127.0.0.1:3778`.

#![warn(missing_docs)]

pub mod blocking;
mod builder;
mod client;
mod config;
mod conn;
mod error;
mod server;

pub use builder::ClientBuilder;
pub use client::{Client, SegmentHandle};
pub use config::{Backoff, Prefetch, Protocol, ServerOrder};
pub use error::Error;
/// String forms of IDs, as the server's `format=` writes them: `IdForm::Radix62.render(id, None)`
/// gives an 11-character string that sorts like the IDs; `IdForm::detect` reads any form back.
pub use floe_core::{IdForm, IdFormError};
