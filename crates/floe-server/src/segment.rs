//! Segment ("number range") mode behind every segment route.
//!
//! Every segment route (binary v2 op 2, `/v1/segment/{tag}`, `/alloc`, `/health`, FeatherID's
//! `/api/v1/id…`, Leaf's `/api/segment/get/{key}`, the admin tag routes) calls a
//! [`SegmentService`] and maps its [`SegmentError`] to its own protocol's error shape. With
//! `segment.enabled = false` the service is [`NotConfigured`]; otherwise [`StoreBacked`] wraps
//! `floe_store`'s buffered service over the configured database.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use floe_store::segment::{
    SegmentService as Buffers, ServiceError, SqlSegmentStore, StoreError, TagRow, TagState,
};
use tracing::{info, warn};

use crate::config::{Config, SegmentSettings};
use crate::error::ServerError;

/// How often `/health` looks at an empty tag's refill while waiting for its outcome.
const HEALTH_POLL: Duration = Duration::from_millis(10);

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
    #[error("unknown tag `{0}`")]
    UnknownTag(String),
    /// The tag exists already (admin create).
    #[error("tag `{0}` exists already")]
    TagExists(String),
    /// The request is malformed (a bad tag, step or start).
    #[error("{0}")]
    Invalid(String),
    /// The store cannot be reached or timed out; retry later or elsewhere.
    #[error("{0}")]
    Unavailable(String),
    /// The tag has reached the store's limit and can never issue again; not worth retrying.
    #[error("{0}")]
    Exhausted(String),
}

impl From<ServiceError> for SegmentError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::UnknownTag(t) => SegmentError::UnknownTag(t),
            ServiceError::Invalid(m) => SegmentError::Invalid(m),
            ServiceError::Exhausted(m) => SegmentError::Exhausted(m),
            e @ (ServiceError::Unavailable { .. } | ServiceError::Closed) => {
                SegmentError::Unavailable(e.to_string())
            }
        }
    }
}

impl From<StoreError> for SegmentError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownTag(t) => SegmentError::UnknownTag(t),
            StoreError::TagExists(t) => SegmentError::TagExists(t),
            StoreError::Invalid(m) => SegmentError::Invalid(m),
            e @ StoreError::Unavailable(_) => SegmentError::Unavailable(e.to_string()),
            e @ StoreError::Exhausted { .. } => SegmentError::Exhausted(e.to_string()),
        }
    }
}

/// One tag as the admin route lists it: the table row and this node's buffer.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct TagView {
    /// The row in the segment table.
    #[serde(flatten)]
    pub(crate) row: TagRow,
    /// This node's buffer of the tag, if it has served it.
    pub(crate) buffer: Option<TagState>,
}

/// Hands out IDs from per-tag number ranges.
pub(crate) trait SegmentService: Send + Sync + Debug {
    /// Whether segment mode is on (for `/v1/info`).
    fn enabled(&self) -> bool;
    /// `count` increasing IDs of `tag`, all or none.
    fn allocate<'a>(&'a self, tag: &'a str, count: u32) -> SegmentFuture<'a, Vec<u64>>;
    /// How many IDs of `tag` are buffered on this node (Distributed ID Generator's `/health`).
    fn remaining<'a>(&'a self, tag: &'a str) -> SegmentFuture<'a, u64>;
    /// Every tag of the table, with this node's buffer state.
    fn tags(&self) -> SegmentFuture<'_, Vec<TagView>>;
    /// Creates a tag whose first ID is `start` (at least 1).
    fn create<'a>(&'a self, tag: &'a str, start: u64, step: u64) -> SegmentFuture<'a, TagRow>;
    /// Changes a tag's step.
    fn set_step<'a>(&'a self, tag: &'a str, step: u64) -> SegmentFuture<'a, TagRow>;
    /// The buffer state of every tag this node serves (metrics).
    fn states(&self) -> Vec<TagState>;
    /// Stops handing out IDs and gives unused ranges back (graceful shutdown).
    fn shutdown(&self) -> SegmentFuture<'_, ()>;
}

/// The service of a node without segment mode: every call fails with
/// [`SegmentError::NotConfigured`].
#[derive(Debug, Default)]
pub(crate) struct NotConfigured;

impl SegmentService for NotConfigured {
    fn enabled(&self) -> bool {
        false
    }
    fn allocate<'a>(&'a self, _tag: &'a str, _count: u32) -> SegmentFuture<'a, Vec<u64>> {
        Box::pin(async { Err(SegmentError::NotConfigured) })
    }
    fn remaining<'a>(&'a self, _tag: &'a str) -> SegmentFuture<'a, u64> {
        Box::pin(async { Err(SegmentError::NotConfigured) })
    }
    fn tags(&self) -> SegmentFuture<'_, Vec<TagView>> {
        Box::pin(async { Err(SegmentError::NotConfigured) })
    }
    fn create<'a>(&'a self, _tag: &'a str, _start: u64, _step: u64) -> SegmentFuture<'a, TagRow> {
        Box::pin(async { Err(SegmentError::NotConfigured) })
    }
    fn set_step<'a>(&'a self, _tag: &'a str, _step: u64) -> SegmentFuture<'a, TagRow> {
        Box::pin(async { Err(SegmentError::NotConfigured) })
    }
    fn states(&self) -> Vec<TagState> {
        Vec::new()
    }
    fn shutdown(&self) -> SegmentFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// Segment mode over a SQL store, buffered per tag in memory.
#[derive(Debug)]
pub(crate) struct StoreBacked {
    /// The buffers and their refill loops.
    buffers: Arc<Buffers>,
    /// `segment.wait_timeout`: how long `/health` waits to learn whether an empty tag refills.
    wait: Duration,
}

impl SegmentService for StoreBacked {
    fn enabled(&self) -> bool {
        true
    }

    fn allocate<'a>(&'a self, tag: &'a str, count: u32) -> SegmentFuture<'a, Vec<u64>> {
        Box::pin(async move {
            let taken = self.buffers.take(tag, u64::from(count)).await?;
            let mut ids = Vec::with_capacity(count as usize);
            taken.extend_into(&mut ids);
            metrics::counter!("floe_ids_issued_total", "mode" => "segment", "tag" => tag.to_owned())
                .increment(ids.len() as u64);
            Ok(ids)
        })
    }

    fn remaining<'a>(&'a self, tag: &'a str) -> SegmentFuture<'a, u64> {
        Box::pin(async move {
            let left = self.buffers.remaining(tag).await?;
            if left > 0 {
                return Ok(left);
            }
            // Empty: `remaining` started a refill. "0 left" is only healthy if that refill can
            // succeed, so wait (as long as a request would) for its outcome.
            let deadline = tokio::time::Instant::now() + self.wait;
            loop {
                let state = self.buffers.states().into_iter().find(|s| s.tag == tag);
                match state {
                    Some(s) if s.remaining > 0 => return Ok(s.remaining),
                    Some(TagState {
                        last_error: Some(e),
                        next_ready: false,
                        ..
                    }) => {
                        return Err(SegmentError::Unavailable(format!(
                            "segment store unavailable for tag `{tag}`: no IDs buffered and the refill failed: {e}"
                        )))
                    }
                    _ => {}
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(SegmentError::Unavailable(format!(
                        "segment store unavailable for tag `{tag}`: no IDs buffered and no segment arrived within segment.wait_timeout ({})",
                        humantime::format_duration(self.wait)
                    )));
                }
                tokio::time::sleep(HEALTH_POLL).await;
            }
        })
    }

    fn tags(&self) -> SegmentFuture<'_, Vec<TagView>> {
        Box::pin(async move {
            let rows = self.buffers.store().tags().await?;
            let states = self.buffers.states();
            Ok(rows
                .into_iter()
                .map(|row| TagView {
                    buffer: states.iter().find(|s| s.tag == row.tag).cloned(),
                    row,
                })
                .collect())
        })
    }

    fn create<'a>(&'a self, tag: &'a str, start: u64, step: u64) -> SegmentFuture<'a, TagRow> {
        Box::pin(async move {
            if start == 0 {
                return Err(SegmentError::Invalid(
                    "start must be at least 1 (ID 0 is never issued)".into(),
                ));
            }
            Ok(self.buffers.store().create(tag, start, step).await?)
        })
    }

    fn set_step<'a>(&'a self, tag: &'a str, step: u64) -> SegmentFuture<'a, TagRow> {
        Box::pin(async move { Ok(self.buffers.set_step(tag, step).await?) })
    }

    fn states(&self) -> Vec<TagState> {
        self.buffers.states()
    }

    fn shutdown(&self) -> SegmentFuture<'_, ()> {
        Box::pin(async move {
            let handed = self.buffers.shutdown().await;
            info!(tags = handed, "segment ranges handed back");
            Ok(())
        })
    }
}

/// The segment service the configuration asks for. The database is not needed to start: the
/// table is created and the first segments loaded in the background, retried until it answers.
pub(crate) async fn service(config: &Config) -> Result<Arc<dyn SegmentService>, ServerError> {
    let Some(settings) = &config.segment else {
        return Ok(Arc::new(NotConfigured));
    };
    let url = settings
        .url
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", config.data_dir.join("floe.db").display()));
    let store = open(&url, settings).await?;
    let buffers = Buffers::new(store.clone(), settings.service.clone())
        .map_err(|e| ServerError::Segment(e.to_string()))?;
    // With the database up, the table exists before the node says it is listening; a database
    // that is down is waited for in the background instead of failing the start.
    let mut create_table = settings.store.create_table;
    if create_table {
        match store.ensure_table().await {
            Ok(()) => create_table = false,
            Err(e) => {
                warn!(error = %e, "segment table not created yet; retrying in the background")
            }
        }
    }
    tokio::spawn(prepare(store, buffers.clone(), create_table));
    Ok(Arc::new(StoreBacked {
        buffers,
        wait: settings.service.wait_timeout,
    }))
}

async fn open(url: &str, settings: &SegmentSettings) -> Result<Arc<SqlSegmentStore>, ServerError> {
    let mut options = settings.store.clone();
    options.create_table = false; // done by `prepare`, which may wait for the database
    let store = SqlSegmentStore::connect(url, settings.table.clone(), options)
        .await
        .map_err(|e| ServerError::Segment(e.to_string()))?;
    Ok(Arc::new(store))
}

/// Creates the table (if asked) and loads every tag's first segment, retrying while the
/// database is down so a node started before its database still comes up by itself.
async fn prepare(store: Arc<SqlSegmentStore>, buffers: Arc<Buffers>, create_table: bool) {
    let mut pause = Duration::from_millis(200);
    loop {
        let ready = async {
            if create_table {
                store.ensure_table().await.map_err(|e| e.to_string())?;
            }
            buffers.warm_up().await.map_err(|e| e.to_string())
        };
        match ready.await {
            Ok(n) => {
                info!(tags = n, "segment mode ready");
                return;
            }
            Err(e) => {
                warn!(error = %e, retry_in = ?pause, "segment store not ready");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}
