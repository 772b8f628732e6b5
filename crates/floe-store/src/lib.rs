//! Floe's I/O adapters, behind the traits that `floe-core` and the server define.
//!
//! - [`db`]: what the SQL adapters share (dialects, lazy pools, redacted URLs);
//! - [`highwater`]: the high-water mark as a file (fsync, atomic rename, advisory lock);
//! - [`segment`]: segment stores — SQLite, PostgreSQL, MySQL/MariaDB;
//! - [`registry`]: worker-id registries — static, SQL, Redis, Kubernetes.

#![warn(missing_docs)]

pub mod db;
pub mod highwater;
pub mod registry;
pub mod segment;

pub use highwater::FileHighWater;
