//! Segment ("number range") mode: the service behind every segment route, and its one error.
//!
//! Every segment route (binary v2 op 2, `/v1/segment/{tag}`, `/alloc`, `/health`, FeatherID's
//! `/api/v1/id…`, Leaf's `/api/segment/get/{key}`, the admin tag routes) calls the node's
//! [`SegmentService`] and maps its [`SegmentError`] once, to its own protocol's error shape. A
//! node with `segment.enabled = false` has no service at all (`Node::segments` answers
//! [`SegmentError::NotConfigured`]). The service is an application service, so it lives here;
//! `floe_store` only adapts the database
//! ([`SegmentStore`](floe_store::segment::SegmentStore), [`StoreError`]).

mod service;

use std::sync::Arc;
use std::time::Duration;

use floe_store::segment::{SequenceStore, SqlSegmentStore, StoreError, TagRow};
use tracing::{info, warn};

use crate::backoff::Backoff;
pub use crate::config::ServiceConfig;
use crate::config::{Config, SegmentSettings};
pub use service::{NewTag, SegmentService, TagState};

/// Why a segment request got no IDs; each variant maps to one status of every protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// Segment mode is not set up on this node.
    #[error("segment mode is not configured")]
    NotConfigured,
    /// The tag has no row in the segment table.
    #[error("unknown tag `{0}`")]
    UnknownTag(String),
    /// The tag exists already (admin create).
    #[error("tag `{0}` exists already")]
    TagExists(String),
    /// The request is malformed (a bad tag, count, step or start).
    #[error("{0}")]
    Invalid(String),
    /// The store cannot be reached or timed out and this node has no IDs of the tag buffered;
    /// retry later or elsewhere.
    #[error("segment store unavailable for tag `{tag}`: {reason}")]
    Unavailable {
        /// The tag.
        tag: String,
        /// What failed (the store's error, or the wait that ran out).
        reason: String,
    },
    /// A store call not about one tag's buffer (the admin routes) failed; retry later. Holds
    /// only [`StoreError::Unavailable`]: the other store errors have variants of their own.
    #[error(transparent)]
    Store(StoreError),
    /// The tag can never issue another ID (its `max_id` reached the store's limit); not worth
    /// retrying.
    #[error("{0}")]
    Exhausted(String),
    /// The service is shutting down; retry on another node.
    #[error("segment service is shutting down")]
    Closed,
}

/// The one translation from the store's error to the service's.
impl From<StoreError> for SegmentError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownTag(t) => SegmentError::UnknownTag(t),
            StoreError::TagExists(t) => SegmentError::TagExists(t),
            StoreError::Invalid(m) => SegmentError::Invalid(m),
            e @ StoreError::Exhausted { .. } => SegmentError::Exhausted(e.to_string()),
            e @ StoreError::Unavailable(_) => SegmentError::Store(e),
        }
    }
}

/// One tag as the admin route lists it: the table row and this node's buffer.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TagView {
    /// The row in the segment table.
    #[serde(flatten)]
    pub row: TagRow,
    /// This node's buffer of the tag, if it has served it.
    pub buffer: Option<TagState>,
}

/// Segment mode as opened at start: the service, and the store, which number sequences share.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The service every segment route calls.
    pub(crate) service: Arc<SegmentService>,
    /// The database behind it (also the number definitions table and period rows).
    pub(crate) store: Arc<SqlSegmentStore>,
}

/// The segment service the configuration asks for. The database is not needed to start: the
/// tables are created and the first segments loaded in the background, retried until it
/// answers. `None` when segment mode is off.
pub(crate) async fn service(config: &Config) -> Result<Option<Opened>, SegmentError> {
    let Some(settings) = &config.segment else {
        return Ok(None);
    };
    let url = settings
        .url
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", config.data_dir.join("floe.db").display()));
    let store = open(&url, settings).await?;
    let service = SegmentService::new(store.clone(), settings.service.clone())?;
    // With the database up, the tables exist before the node says it is listening; a database
    // that is down is waited for in the background instead of failing the start.
    let mut tables = true;
    match create_tables(&store, settings.store.create_table).await {
        Ok(()) => tables = false,
        Err(e) => warn!(error = %e, "segment tables not created yet; retrying in the background"),
    }
    tokio::spawn(prepare(
        store.clone(),
        service.clone(),
        tables.then_some(settings.store.create_table),
    ));
    Ok(Some(Opened { service, store }))
}

/// The segment table (when `create_table` asks for it) and the number definitions table, which
/// is Floe's own and made beside any segment table.
async fn create_tables(store: &SqlSegmentStore, create_table: bool) -> Result<(), StoreError> {
    if create_table {
        store.ensure_table().await?;
    }
    store.ensure_sequence_table().await
}

async fn open(url: &str, settings: &SegmentSettings) -> Result<Arc<SqlSegmentStore>, SegmentError> {
    let mut options = settings.store.clone();
    options.create_table = false; // done by `prepare`, which may wait for the database
    let store = SqlSegmentStore::connect(url, settings.table.clone(), options).await?;
    Ok(Arc::new(store))
}

/// Creates the tables (when `tables` is `Some(create_table)`) and loads every tag's first
/// segment, retrying while the database is down so a node started before its database still
/// comes up by itself.
async fn prepare(store: Arc<SqlSegmentStore>, service: Arc<SegmentService>, tables: Option<bool>) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let ready = async {
            if let Some(create_table) = tables {
                create_tables(&store, create_table)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            service.warm_up().await.map_err(|e| e.to_string())
        };
        match ready.await {
            Ok(n) => {
                info!(tags = n, "segment mode ready");
                return;
            }
            Err(e) => {
                let pause = backoff.next();
                warn!(error = %e, retry_in = ?pause, "segment store not ready");
                tokio::time::sleep(pause).await;
            }
        }
    }
}
