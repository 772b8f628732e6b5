//! The seam where segment ("number range") mode plugs in.
//!
//! Every segment route (binary v2 op 2, `/v1/segment/{tag}`, `/alloc`, `/health`, FeatherID's
//! `/api/v1/id…`, Leaf's `/api/segment/get/{key}`) calls a [`SegmentService`] and maps its
//! [`SegmentError`] to its own protocol's error shape. Until segment mode lands, the service is
//! [`NotConfigured`]; the segment issue swaps in a real one in [`service`] without touching the
//! routing.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::Config;

/// A boxed future, so the trait stays object-safe without an extra dependency.
pub(crate) type SegmentFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, SegmentError>> + Send + 'a>>;

/// Why a segment request got no IDs; each variant maps to one status of every protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SegmentError {
    /// Segment mode is not set up on this node.
    #[error("segment mode is not configured")]
    NotConfigured,
    /// The tag has no row in the segment table.
    #[allow(dead_code)] // produced once a real store is plugged in
    #[error("unknown tag `{0}`")]
    UnknownTag(String),
    /// The store cannot be reached or timed out; retry later or elsewhere.
    #[allow(dead_code)] // produced once a real store is plugged in
    #[error("{0}")]
    Unavailable(String),
}

/// Hands out IDs from per-tag number ranges.
pub(crate) trait SegmentService: Send + Sync + Debug {
    /// `count` consecutive-or-increasing IDs of `tag`, all or none.
    fn allocate<'a>(&'a self, tag: &'a str, count: u32) -> SegmentFuture<'a, Vec<u64>>;
    /// How many IDs of `tag` are buffered on this node (Distributed ID Generator's `/health`).
    fn remaining<'a>(&'a self, tag: &'a str) -> SegmentFuture<'a, u64>;
}

/// The service of a node without segment mode: every call fails with
/// [`SegmentError::NotConfigured`].
#[derive(Debug, Default)]
pub(crate) struct NotConfigured;

impl SegmentService for NotConfigured {
    fn allocate<'a>(&'a self, _tag: &'a str, _count: u32) -> SegmentFuture<'a, Vec<u64>> {
        Box::pin(async { Err(SegmentError::NotConfigured) })
    }
    fn remaining<'a>(&'a self, _tag: &'a str) -> SegmentFuture<'a, u64> {
        Box::pin(async { Err(SegmentError::NotConfigured) })
    }
}

/// The segment service the configuration asks for.
pub(crate) fn service(_config: &Config) -> Arc<dyn SegmentService> {
    Arc::new(NotConfigured)
}
