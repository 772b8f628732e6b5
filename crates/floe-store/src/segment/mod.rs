//! Segment stores: where business tags keep `(tag, max_id, step)` and nodes claim ranges.
//!
//! One implementation, [`SqlSegmentStore`], serves SQLite (the embedded default), PostgreSQL
//! and MySQL/MariaDB through sqlx's runtime queries; the dialects differ only in the claim
//! statement. Table and column names are configurable so Floe can run on an existing Leaf
//! (`leaf_alloc`), FeatherID (`id_segments`) or Distributed ID Generator (`segments`) table.

#[cfg(feature = "sql")]
mod sequences;
#[cfg(feature = "sql")]
mod sql;

use std::fmt::Debug;

use async_trait::async_trait;
use floe_core::{HandBack, Segment};
use thiserror::Error;

#[cfg(feature = "sql")]
pub use sql::{SqlSegmentStore, StoreOptions, TableSpec};

/// The end of a plain tag's range: `max_id` is a BIGINT, so no ID reaches 2^63−1.
pub const MAX_END: u64 = i64::MAX as u64;

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    /// No row for the tag.
    #[error("unknown tag `{0}`")]
    UnknownTag(String),
    /// The tag exists already (create).
    #[error("tag `{0}` exists already")]
    TagExists(String),
    /// A value given to the store is out of its range.
    #[error("{0}")]
    Invalid(String),
    /// The database did not answer in time, refused, or failed; nothing was claimed.
    #[error("segment store unavailable: {0}")]
    Unavailable(String),
    /// The tag's `max_id` has reached the end of its range (the largest value its BIGINT
    /// column holds, or the end a claim was given): the tag can never issue another ID. Final,
    /// not retried.
    #[error("{}", exhausted(.tag, *.max_id, *.end))]
    Exhausted {
        /// The tag.
        tag: String,
        /// Its `max_id`.
        max_id: u64,
        /// The end of its range ([`MAX_END`] for a plain tag).
        end: u64,
    },
}

fn exhausted(tag: &str, max_id: u64, end: u64) -> String {
    if end == MAX_END {
        format!("tag `{tag}` is exhausted: max_id {max_id} is the limit of the segment table's BIGINT column (2^63-1); move its users to a new tag")
    } else {
        format!("tag `{tag}` is exhausted: max_id {max_id} reached the end of its range, {end}")
    }
}

/// Checks a tag with [`floe_core::check_tag`], as a store error.
#[cfg(feature = "sql")]
pub(crate) fn check_tag(tag: &str) -> Result<(), StoreError> {
    floe_core::check_tag(tag).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// One row of the segment table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TagRow {
    /// The business tag.
    pub tag: String,
    /// End of the last claimed range: the next claim starts here.
    pub max_id: u64,
    /// Default number of IDs per claim.
    pub step: u64,
}

/// One number sequence definition as the admin API stored it, as text; the server validates it
/// (`floe_core::numbers::Sequence::new`) when it reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SequenceRow {
    /// The sequence's name (primary key).
    pub name: String,
    /// The format, e.g. `ORD-{date:%Y%m%d}-{seq:06}`.
    pub format: String,
    /// `never`, `year`, `month` or `day`.
    pub reset: String,
    /// An IANA zone name or a fixed offset.
    pub time_zone: String,
    /// First value of each period.
    pub start: u64,
    /// Values claimed per segment.
    pub step: u64,
}

/// Where number sequence definitions declared at run time live, so every node sharing the
/// database sees them. Definitions are never changed or removed through Floe.
#[async_trait]
pub trait SequenceStore: Send + Sync + Debug {
    /// Creates the definitions table if it does not exist.
    async fn ensure_sequence_table(&self) -> Result<(), StoreError>;
    /// The definition of `name`, or `None`.
    async fn sequence(&self, name: &str) -> Result<Option<SequenceRow>, StoreError>;
    /// Every definition, by name.
    async fn sequences(&self) -> Result<Vec<SequenceRow>, StoreError>;
    /// Stores a new definition; `false` when the name is taken.
    async fn declare(&self, row: &SequenceRow) -> Result<bool, StoreError>;
}

/// Durable storage of business tags and their claimed ranges.
#[async_trait]
pub trait SegmentStore: Send + Sync + Debug {
    /// Claims `[max_id, max_id + step)` for `tag` in one atomic statement.
    async fn claim(&self, tag: &str, step: u64) -> Result<Segment, StoreError> {
        self.claim_within(tag, step, MAX_END).await
    }
    /// Claims like [`claim`](Self::claim), but never past `end`: `max_id` stays at most `end`
    /// (less than a step left claims the rest; at `end` the tag is
    /// [`Exhausted`](StoreError::Exhausted)). A number sequence's `{seq:0N}` period row ends at
    /// `10^N`, so its numbers never need an N+1st digit.
    async fn claim_within(&self, tag: &str, step: u64, end: u64) -> Result<Segment, StoreError>;
    /// The tag's row, or `None` for an unknown tag.
    async fn tag(&self, tag: &str) -> Result<Option<TagRow>, StoreError>;
    /// Every tag.
    async fn tags(&self) -> Result<Vec<TagRow>, StoreError>;
    /// Creates a tag whose first claim starts at `start`.
    async fn create(&self, tag: &str, start: u64, step: u64) -> Result<TagRow, StoreError>;
    /// Changes a tag's default step.
    async fn set_step(&self, tag: &str, step: u64) -> Result<TagRow, StoreError>;
    /// Gives the unissued tail back when no other node claimed after us; `Ok(false)` when
    /// someone did (the tail is then simply not reused).
    async fn hand_back(&self, tag: &str, back: HandBack) -> Result<bool, StoreError>;
}
