//! Segment stores: where business tags keep `(tag, max_id, step)` and nodes claim ranges.
//!
//! One implementation, [`SqlSegmentStore`], serves SQLite (the embedded default), PostgreSQL
//! and MySQL/MariaDB through sqlx's runtime queries; the dialects differ only in the claim
//! statement. Table and column names are configurable so Floe can run on an existing Leaf
//! (`leaf_alloc`), FeatherID (`id_segments`) or Distributed ID Generator (`segments`) table.

#[cfg(feature = "sql")]
mod sql;

use std::fmt::Debug;

use async_trait::async_trait;
use floe_core::{HandBack, Segment};
use thiserror::Error;

#[cfg(feature = "sql")]
pub use sql::{SqlSegmentStore, StoreOptions, TableSpec};

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
    /// The tag's `max_id` has reached the largest value its BIGINT column holds: the tag can
    /// never issue another ID. Final, not retried.
    #[error("tag `{tag}` is exhausted: max_id {max_id} is the limit of the segment table's BIGINT column (2^63-1); move its users to a new tag")]
    Exhausted {
        /// The tag.
        tag: String,
        /// Its `max_id`.
        max_id: u64,
    },
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

/// Durable storage of business tags and their claimed ranges.
#[async_trait]
pub trait SegmentStore: Send + Sync + Debug {
    /// Claims `[max_id, max_id + step)` for `tag` in one atomic statement.
    async fn claim(&self, tag: &str, step: u64) -> Result<Segment, StoreError>;
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
