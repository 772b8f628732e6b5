//! The server's error type: what can stop `run` from starting or finishing.
//!
//! Each variant's message says what failed here; the cause is its `source()`, never repeated in
//! the message, and [`floe_core::report`] prints the whole chain once.

use std::net::SocketAddr;

use floe_core::GenError;
use floe_store::registry::RegistryError;

use crate::config::{ConfigError, EX_USAGE};
use crate::segment::SegmentError;

/// Why the server did not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid (exit 64).
    #[error("configuration error")]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {what} {addr} (is another process using it?)")]
    Bind {
        /// `server.tcp_listen` or `server.http_listen`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The generator could not start: data directory locked or unwritable, high-water mark
    /// corrupt or far in the future.
    #[error("cannot start the snowflake generator (data_dir {data_dir})")]
    Generator {
        /// The data directory.
        data_dir: String,
        /// What failed.
        #[source]
        source: GenError,
    },
    /// A peer has the same layout and identity (exit 64: a configuration mistake).
    #[error("peer {peer} runs the same layout and identity ({identity}); two nodes with one identity issue the same IDs: give this node another snowflake.identity")]
    PeerConflict {
        /// The peer's address.
        peer: String,
        /// The shared identity.
        identity: String,
    },
    /// The worker-id registry could not be set up (a bad ttl/margin, a bad host name…).
    #[error("worker-id registry")]
    Registry(#[source] RegistryError),
    /// The lease keeper gave up while the node ran (a registry that cannot work); the node
    /// stopped issuing and shut down.
    #[error("worker-id registry: {0}")]
    LeaseFailed(String),
    /// The segment store could not be set up.
    #[error("segment mode")]
    Segment(#[source] SegmentError),
    /// Another I/O failure while running.
    #[error("i/o error")]
    Io(#[from] std::io::Error),
    /// The final high-water write at shutdown failed; the mark on disk is still ahead of every
    /// issued ID, so a restart is safe, but the data directory needs attention.
    #[error("shutdown: cannot lower the high-water mark")]
    Shutdown(#[source] GenError),
}

impl ServerError {
    /// The process exit code: 64 for configuration mistakes, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServerError::Config(_)
            | ServerError::PeerConflict { .. }
            | ServerError::Registry(_)
            | ServerError::LeaseFailed(_) => EX_USAGE,
            ServerError::Generator {
                source: GenError::Config { .. } | GenError::Layout(_),
                ..
            } => EX_USAGE,
            _ => 1,
        }
    }
}
