//! Business numbers (`ORD-20261130-000042`): number sequences served over every protocol.
//!
//! A number sequence is segment mode on a per-period tag plus formatting: the format, the
//! period and the rendering are `floe_core::numbers`; the counter of each period is an ordinary
//! row of the segment table, tag `name@<period key>`, created on first use and claimed through
//! a [`SegmentService`] of its own (so period rows get their own buffers, ended at `10^N` for
//! `{seq:0N}`, and are never preloaded). Every number route (binary v2 op 4,
//! `GET /v1/numbers/{name}`, the listing, the admin declaration) calls the node's
//! [`NumberService`] and maps its [`NumberError`] once, to its own protocol's error shape.

mod service;

use std::sync::Arc;

use floe_store::segment::{SqlSegmentStore, StoreError};

use crate::config::Config;
use crate::segment::{SegmentError, SegmentService};
pub use service::{NumberService, NumberView};

/// Why a number request got no numbers; each variant maps to one status of every protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Segment mode, which keeps the counters, is off on this node.
    #[error("number sequences need segment mode, which is not configured")]
    NotConfigured,
    /// No sequence of that name in the configuration or the definitions table.
    #[error("unknown number sequence `{0}`")]
    UnknownName(String),
    /// A declaration for a name that is taken (admin).
    #[error("number sequence `{0}` exists already")]
    NameExists(String),
    /// The request is malformed: a bad name or count, or a definition that does not validate.
    #[error("{0}")]
    Invalid(String),
    /// The period's counter reached the end its `{seq:0N}` allows; final for the period.
    #[error("{0}")]
    Exhausted(String),
    /// A definition in the database does not validate (a row written by hand).
    #[error("{0}")]
    Definition(String),
    /// The counter could not be served now (store down, shutting down); retry.
    #[error(transparent)]
    Segment(SegmentError),
}

impl From<StoreError> for NumberError {
    /// A failed call to the definitions table.
    fn from(e: StoreError) -> Self {
        NumberError::Segment(SegmentError::from(e))
    }
}

/// The number service the configuration asks for, over the segment mode's store; `None` when
/// segment mode is off.
pub(crate) fn service(
    config: &Config,
    store: Option<&Arc<SqlSegmentStore>>,
) -> Result<Option<Arc<NumberService>>, SegmentError> {
    let (Some(settings), Some(store)) = (&config.segment, store) else {
        return Ok(None);
    };
    let mut service_config = settings.service.clone();
    // Period rows are made by the sequence's own start and step, never by auto_create.
    service_config.auto_create = false;
    let counters = SegmentService::new(store.clone(), service_config)?;
    Ok(Some(NumberService::new(
        counters,
        store.clone(),
        config.numbers.clone(),
        settings.service.wait_timeout,
    )))
}
