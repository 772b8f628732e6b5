//! A blocking client for callers without a tokio runtime.
//!
//! It owns a one-worker runtime that runs the connection and refill tasks on a background
//! thread; each call blocks the calling thread until its IDs are there. IDs already in a
//! prefetch buffer are taken without touching the runtime at all.
//!
//! Do not call it from inside an async runtime: blocking there stalls that runtime's thread
//! (tokio refuses and panics). Use [`crate::Client`] there instead.

use std::sync::Arc;

use tokio::runtime::Runtime;

use crate::builder::ClientBuilder;
use crate::error::Error;

/// Owns the runtime and shuts it down without blocking, so dropping the last client is safe
/// anywhere, even inside another runtime.
#[derive(Debug)]
struct Background(Option<Runtime>);

impl Background {
    fn runtime(&self) -> &Runtime {
        // Only `drop` takes it out.
        self.0.as_ref().expect("runtime present until drop")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A blocking Floe client; cheap to clone, clones share connections and buffers.
#[derive(Debug, Clone)]
pub struct Client {
    /// The async client doing the work.
    client: crate::Client,
    /// Runs the async client's tasks; kept alive by every clone and handle.
    background: Arc<Background>,
}

impl Client {
    /// Builds the client with its own background runtime thread (named `floe-client`).
    pub fn new(builder: ClientBuilder) -> Result<Client, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("floe-client")
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("cannot start the client's runtime: {e}")))?;
        let client = {
            let _entered = runtime.enter();
            builder.build()?
        };
        Ok(Client {
            client,
            background: Arc::new(Background(Some(runtime))),
        })
    }

    /// One snowflake ID: from the prefetch buffer if configured, else one round trip.
    pub fn next_id(&self) -> Result<u64, Error> {
        if let Some(id) = self.client.try_next_id() {
            return Ok(id);
        }
        self.background.runtime().block_on(self.client.next_id())
    }

    /// `n` snowflake IDs, all or none.
    pub fn next_ids(&self, n: usize) -> Result<Vec<u64>, Error> {
        self.background.runtime().block_on(self.client.next_ids(n))
    }

    /// One snowflake ID from the prefetch buffer, or `None` when it is empty; never waits.
    pub fn try_next_id(&self) -> Option<u64> {
        self.client.try_next_id()
    }

    /// Snowflake IDs in the prefetch buffer now.
    pub fn buffered(&self) -> usize {
        self.client.buffered()
    }

    /// Fills the snowflake prefetch buffer by one batch now; returns how many IDs it holds.
    pub fn warm_up(&self) -> Result<usize, Error> {
        self.background.runtime().block_on(self.client.warm_up())
    }

    /// One business number of the sequence `name`.
    pub fn number(&self, name: &str) -> Result<String, Error> {
        self.background.runtime().block_on(self.client.number(name))
    }

    /// `n` numbers of `name`, all or none.
    pub fn numbers(&self, name: &str, n: usize) -> Result<Vec<String>, Error> {
        self.background
            .runtime()
            .block_on(self.client.numbers(name, n))
    }

    /// A handle for the segment IDs of `tag`.
    pub fn segment(&self, tag: &str) -> SegmentHandle {
        SegmentHandle {
            handle: self.client.segment(tag),
            background: self.background.clone(),
        }
    }

    /// The async client inside, for code that has a runtime after all.
    pub fn as_async(&self) -> &crate::Client {
        &self.client
    }
}

/// Blocking segment IDs of one tag.
#[derive(Debug, Clone)]
pub struct SegmentHandle {
    /// The async handle doing the work.
    handle: crate::SegmentHandle,
    /// Keeps the runtime alive as long as the handle.
    background: Arc<Background>,
}

impl SegmentHandle {
    /// The tag this handle serves.
    pub fn tag(&self) -> &str {
        self.handle.tag()
    }

    /// One ID of the tag: from the prefetch buffer if configured, else one round trip.
    pub fn next_id(&self) -> Result<u64, Error> {
        if let Some(id) = self.handle.try_next_id() {
            return Ok(id);
        }
        self.background.runtime().block_on(self.handle.next_id())
    }

    /// `n` IDs of the tag, all or none.
    pub fn next_ids(&self, n: usize) -> Result<Vec<u64>, Error> {
        self.background.runtime().block_on(self.handle.next_ids(n))
    }

    /// One ID from the tag's prefetch buffer, or `None` when it is empty; never waits.
    pub fn try_next_id(&self) -> Option<u64> {
        self.handle.try_next_id()
    }

    /// IDs in the tag's prefetch buffer now.
    pub fn buffered(&self) -> usize {
        self.handle.buffered()
    }

    /// Fills the tag's prefetch buffer by one batch now; returns how many IDs it holds.
    pub fn warm_up(&self) -> Result<usize, Error> {
        self.background.runtime().block_on(self.handle.warm_up())
    }
}
