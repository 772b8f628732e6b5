//! Floe's I/O adapters, behind the traits that `floe-core` and the server define.
//!
//! - [`highwater`]: the high-water mark as a file (fsync, atomic rename, advisory lock).

pub mod highwater;

pub use highwater::FileHighWater;
