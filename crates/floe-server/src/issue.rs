//! Why a request got no snowflake IDs, in one type every protocol maps once.

use std::time::Duration;

use floe_core::GenError;

/// Longest a request waits for the sequence to free up (sequence exhausted within `max_drift`)
/// before it is answered "unavailable"; a client is better served by an error it can retry
/// elsewhere than by a reply that never comes.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(5);

/// Why a request got no IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IssueError {
    /// Retry later or on another node: clock rollback, high-water write failed, shutting down,
    /// sequence exhausted for longer than [`MAX_WAIT`].
    Unavailable(String),
    /// A bug: the server asked the generator for something it never should.
    Internal(String),
}

impl IssueError {
    /// The message for the client.
    pub(crate) fn message(&self) -> &str {
        match self {
            IssueError::Unavailable(m) | IssueError::Internal(m) => m,
        }
    }
}

impl From<GenError> for IssueError {
    fn from(e: GenError) -> IssueError {
        match e {
            GenError::ClockRollback { .. }
            | GenError::ClockBeforeEpoch { .. }
            | GenError::WouldWait { .. }
            | GenError::LayoutExhausted { .. }
            | GenError::HighWater(_)
            | GenError::HighWaterFuture { .. } => IssueError::Unavailable(e.to_string()),
            GenError::Closed => IssueError::Unavailable("the server is shutting down".into()),
            GenError::BatchTooLarge { .. }
            | GenError::NoLane { .. }
            | GenError::Config { .. }
            | GenError::Layout(_) => IssueError::Internal(e.to_string()),
        }
    }
}
