//! Floe's I/O adapters, behind the traits that `floe-core` and the server define.
//!
//! - [`db`]: what the SQL adapters share (dialects, lazy pools, redacted URLs);
//! - [`highwater`]: the high-water mark as a file (fsync, atomic rename, advisory lock);
//! - [`segment`]: segment stores — SQLite, PostgreSQL, MySQL/MariaDB (the segment service that
//!   buffers them is the server's, `floe_server::segment`);
//! - [`registry`]: worker-id registries — static, SQL, Redis, ZooKeeper, Kubernetes.
//!
//! Cargo features choose the drivers (all on by default): `sql` builds sqlx, the SQL segment
//! store and the SQL registry; `redis` the Redis registry; `zookeeper` the ZooKeeper registry.
//! Without them the crate is the high-water file, the store and registry traits, and the
//! static, Kubernetes and in-memory registries.

#![warn(missing_docs)]

pub mod db;
pub mod highwater;
pub mod registry;
pub mod segment;

pub use highwater::FileHighWater;
