//! Process resource limits the server adjusts at start.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use tracing::{debug, info, warn};

/// Raises the soft limit of open files (`RLIMIT_NOFILE`) to the hard limit.
///
/// Every binary TCP connection holds a file descriptor, and the usual soft default of 1,024
/// would make accepting fail (EMFILE) far below `server.max_connections`; the hard limit is
/// what the administrator allows, so the server takes all of it. A failure is logged, not fatal:
/// the server still runs, with fewer connections. Returns the soft limit in force afterwards
/// (`None` for unlimited).
pub(crate) fn raise_open_files(max_connections: usize) -> Option<u64> {
    let old = getrlimit(Resource::Nofile);
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    let current = if old.current == old.maximum {
        debug!(
            "open-files limit (RLIMIT_NOFILE) already at its hard limit {}",
            show(old.maximum)
        );
        old.current
    } else {
        let new = Rlimit {
            current: old.maximum,
            maximum: old.maximum,
        };
        match setrlimit(Resource::Nofile, new) {
            Ok(()) => {
                info!(
                    "raised the open-files limit (RLIMIT_NOFILE) from {} to its hard limit {}",
                    show(old.current),
                    show(old.maximum)
                );
                old.maximum
            }
            Err(e) => {
                warn!(
                    "could not raise the open-files limit (RLIMIT_NOFILE) from {} to {}: {e}",
                    show(old.current),
                    show(old.maximum)
                );
                old.current
            }
        }
    };
    if let Some(limit) = current {
        if limit < max_connections as u64 {
            warn!(
                "server.max_connections ({max_connections}) is above the open-files limit \
                 (RLIMIT_NOFILE {limit}): accepting will fail before it is reached; raise the \
                 hard limit (ulimit -Hn, LimitNOFILE= in systemd)"
            );
        }
    }
    current
}

/// Whether an `accept` error means the process or system is out of a resource (file
/// descriptors, socket buffers), so the next accept fails the same way until something is freed.
pub(crate) fn is_exhaustion(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(e),
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
    )
}
