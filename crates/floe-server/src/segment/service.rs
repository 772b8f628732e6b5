//! The segment service: one double buffer per known tag, refilled in the background from a
//! [`SegmentStore`], so requests are served from memory while the step keeps up.
//!
//! The fixes over the seed systems live here: a failed claim never empties or freezes a tag
//! (Distributed ID Generator); the database is never called under a lock a request needs, and
//! every call is bounded (FeatherID); unknown tags keep no memory; a request either gets all
//! its IDs or none, so a failing batch loses nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use floe_core::{BufferError, SegmentBuffer, SegmentState, Taken};
use floe_store::segment::{SegmentStore, StoreError, TagRow, MAX_END};
use tokio::sync::Notify;

use super::{SegmentError, TagView};
use crate::backoff::Backoff;
use crate::config::ServiceConfig;

/// How often `/health` looks at an empty tag's refill while waiting for its outcome.
const HEALTH_POLL: Duration = Duration::from_millis(10);

/// Claims remembered per tag for the console's step history.
pub const STEP_HISTORY: usize = 32;

/// What the refill loop of one tag did, for the console; touched once per claim, never by a
/// request.
#[derive(Debug, Default)]
struct RefillStats {
    /// The last [`STEP_HISTORY`] claims, oldest first.
    claims: std::collections::VecDeque<Claim>,
    /// Duration of the last successful claim, ms.
    last_refill_ms: Option<f64>,
    /// Failed claims since start.
    errors: u64,
}

/// One successful claim: when, and how many IDs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Claim {
    /// When the claim returned, Unix ms.
    pub unix_ms: u64,
    /// IDs claimed (the step in force, or less near the end of the ID space).
    pub step: u64,
}

/// A range of IDs, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct IdRange {
    /// First ID.
    pub start: u64,
    /// One past the last ID.
    pub end: u64,
}

impl From<floe_core::Segment> for IdRange {
    fn from(s: floe_core::Segment) -> Self {
        IdRange {
            start: s.start,
            end: s.end,
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The buffer of one tag and what wakes its waiters.
#[derive(Debug)]
struct TagBuffer {
    /// The double buffer.
    buffer: SegmentBuffer,
    /// Woken when a refill installs a segment or fails.
    refilled: Notify,
    /// Whether this tag's refill loop runs; one loop per tag at a time.
    refilling: AtomicBool,
    /// The largest request that found the buffer short since the last refill: the loop claims
    /// enough to serve it.
    wanted: AtomicU64,
    /// Set once the store said the tag is exhausted: what is buffered is still served, then
    /// every request gets the exhausted error at once and no refill is tried again.
    exhausted: std::sync::OnceLock<String>,
    /// Claim history, latency and errors for the console.
    stats: parking_lot::Mutex<RefillStats>,
    /// Claims never move the row's `max_id` past this ([`MAX_END`] for a plain tag).
    end: u64,
}

/// How a tag is made on first use, and how far its range may go: what a number sequence's
/// period rows need (created with the sequence's start and step, ended at `10^N` for
/// `{seq:0N}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewTag {
    /// The first ID of a row created on first use.
    pub start: u64,
    /// Its step.
    pub step: u64,
    /// One past the largest ID the tag may ever issue.
    pub end: u64,
}

/// One tag's state for the admin route and metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct TagState {
    /// The tag.
    pub tag: String,
    /// IDs buffered on this node.
    pub remaining: u64,
    /// Whether the next segment is loaded.
    pub next_ready: bool,
    /// Step of the next claim.
    pub step: u64,
    /// Segments claimed since start.
    pub refills: u64,
    /// The last refill error, if the last refill failed.
    pub last_error: Option<String>,
    /// The next ID this node hands out, while it holds any.
    pub next_id: Option<u64>,
    /// The segment in use.
    pub current: Option<IdRange>,
    /// The segment loaded after the one in use.
    pub next_range: Option<IdRange>,
    /// Share of the segment in use not yet handed out, 0..=100.
    pub fill_percent: f64,
    /// The last claims (at most [`STEP_HISTORY`]), oldest first: how the adaptive step moved.
    pub step_history: Vec<Claim>,
    /// Duration of the last successful claim, ms.
    pub last_refill_ms: Option<f64>,
    /// Failed claims since start.
    pub refill_errors: u64,
}

impl TagState {
    fn of(tag: &str, tb: &TagBuffer) -> Self {
        let s = tb.buffer.state();
        let stats = tb.stats.lock();
        let fill_percent = match (s.current, s.next) {
            (Some(c), Some(p)) if !c.is_empty() => {
                100.0 * c.end.saturating_sub(p) as f64 / c.len() as f64
            }
            _ => 0.0,
        };
        TagState {
            tag: tag.into(),
            remaining: s.remaining,
            next_ready: s.next_ready,
            step: s.step,
            refills: s.refills,
            last_error: s.last_error,
            next_id: s.next,
            current: s.current.map(IdRange::from),
            next_range: s.next_segment.map(IdRange::from),
            fill_percent,
            step_history: stats.claims.iter().copied().collect(),
            last_refill_ms: stats.last_refill_ms,
            refill_errors: stats.errors,
        }
    }
}

/// Hands out segment IDs per tag.
#[derive(Debug)]
pub struct SegmentService {
    /// Where segments are claimed.
    store: Arc<dyn SegmentStore>,
    /// Buffers of the tags seen so far; only tags that exist in the store get one.
    tags: RwLock<HashMap<String, Arc<TagBuffer>>>,
    /// Settings.
    config: ServiceConfig,
    /// Set at shutdown: no new buffers, no new refills.
    closed: AtomicBool,
    /// Reference for the adaptive step's clock (monotonic: only intervals matter).
    started: Instant,
}

impl SegmentService {
    /// A service over `store`.
    pub fn new(
        store: Arc<dyn SegmentStore>,
        config: ServiceConfig,
    ) -> Result<Arc<Self>, SegmentError> {
        config
            .buffer
            .validate()
            .map_err(|e| SegmentError::Invalid(e.to_string()))?;
        Ok(Arc::new(SegmentService {
            store,
            tags: RwLock::new(HashMap::new()),
            config,
            closed: AtomicBool::new(false),
            started: Instant::now(),
        }))
    }

    /// The store behind the service.
    pub fn store(&self) -> &Arc<dyn SegmentStore> {
        &self.store
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn unavailable(tag: &str, reason: impl ToString) -> SegmentError {
        SegmentError::Unavailable {
            tag: tag.into(),
            reason: reason.to_string(),
        }
    }

    /// The buffer of `tag`, creating it if the store knows the tag; an unknown tag is created
    /// as `new` says, or with `segment.auto_create`.
    async fn buffer(&self, tag: &str, new: Option<NewTag>) -> Result<Arc<TagBuffer>, SegmentError> {
        floe_core::check_tag(tag).map_err(|e| SegmentError::Invalid(e.to_string()))?;
        if let Some(b) = self.tags.read().get(tag) {
            return Ok(b.clone());
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(SegmentError::Closed);
        }
        let create = new.map(|n| (n.start, n.step)).or(self
            .config
            .auto_create
            .then_some((1, self.config.default_step)));
        // Looked up in the store, not cached when absent: unknown tags take no memory.
        let row = match (self.store.tag(tag).await, create) {
            (Ok(Some(row)), _) => row,
            (Ok(None), Some((start, step))) => match self.store.create(tag, start, step).await {
                Ok(row) => row,
                // Another node created it first.
                Err(StoreError::TagExists(_)) => self
                    .store
                    .tag(tag)
                    .await
                    .map_err(|e| Self::unavailable(tag, e))?
                    .ok_or_else(|| SegmentError::UnknownTag(tag.into()))?,
                Err(StoreError::Invalid(m)) => return Err(SegmentError::Invalid(m)),
                Err(e) => return Err(Self::unavailable(tag, e)),
            },
            (Ok(None), None) => return Err(SegmentError::UnknownTag(tag.into())),
            (Err(e), _) => return Err(Self::unavailable(tag, e)),
        };
        Ok(self.insert(&row, new.map_or(MAX_END, |n| n.end)))
    }

    fn insert(&self, row: &TagRow, end: u64) -> Arc<TagBuffer> {
        let mut tags = self.tags.write();
        tags.entry(row.tag.clone())
            .or_insert_with(|| {
                Arc::new(TagBuffer {
                    buffer: SegmentBuffer::new(row.step.max(1), self.config.buffer.clone())
                        .expect("validated in new"),
                    refilled: Notify::new(),
                    refilling: AtomicBool::new(false),
                    wanted: AtomicU64::new(1),
                    exhausted: std::sync::OnceLock::new(),
                    stats: parking_lot::Mutex::new(RefillStats::default()),
                    end,
                })
            })
            .clone()
    }

    /// Takes `count` IDs of `tag`: all of them, or none and an error.
    pub async fn take(self: &Arc<Self>, tag: &str, count: u64) -> Result<Taken, SegmentError> {
        self.take_from(tag, count, None).await
    }

    /// Takes `count` IDs of `tag` like [`take`](Self::take), creating the tag as `new` says
    /// when the store does not have it, and never past `new.end`: a number sequence's period.
    pub async fn take_or_create(
        self: &Arc<Self>,
        tag: &str,
        count: u64,
        new: NewTag,
    ) -> Result<Taken, SegmentError> {
        self.take_from(tag, count, Some(new)).await
    }

    async fn take_from(
        self: &Arc<Self>,
        tag: &str,
        count: u64,
        new: Option<NewTag>,
    ) -> Result<Taken, SegmentError> {
        if count == 0 {
            return Err(SegmentError::Invalid("count must be at least 1".into()));
        }
        let tb = self.buffer(tag, new).await?;
        let deadline = tokio::time::Instant::now() + self.config.wait_timeout;
        loop {
            // Registered before trying, so a refill that lands in between still wakes us.
            let refilled = tb.refilled.notified();
            tokio::pin!(refilled);
            refilled.as_mut().enable();
            match tb.buffer.try_take(count) {
                Ok(taken) => {
                    if taken.refill {
                        self.kick(tag, &tb, 1);
                    }
                    return Ok(taken);
                }
                Err(BufferError::Closed) => return Err(SegmentError::Closed),
                Err(BufferError::Short { .. }) => {
                    if let Some(why) = tb.exhausted.get() {
                        return Err(SegmentError::Exhausted(why.clone()));
                    }
                    tb.buffer.advance();
                    self.kick(tag, &tb, count);
                    let state = tb.buffer.state();
                    // The store is known to be failing: answer now; the loop keeps retrying.
                    if let Some(e) = state.last_error.filter(|_| !state.next_ready) {
                        return Err(Self::unavailable(tag, e));
                    }
                    if tokio::time::timeout_at(deadline, refilled).await.is_err() {
                        let reason = tb.buffer.state().last_error.unwrap_or_else(|| {
                            format!("no segment arrived within {:?}", self.config.wait_timeout)
                        });
                        return Err(Self::unavailable(tag, reason));
                    }
                }
                Err(e @ (BufferError::Config(_) | BufferError::Regressed { .. })) => {
                    return Err(SegmentError::Invalid(e.to_string()))
                }
            }
        }
    }

    /// Starts the tag's refill loop unless one runs.
    fn kick(self: &Arc<Self>, tag: &str, tb: &Arc<TagBuffer>, wanted: u64) {
        tb.wanted.fetch_max(wanted, Ordering::AcqRel);
        if self.closed.load(Ordering::Acquire)
            || tb.exhausted.get().is_some()
            || tb.refilling.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let (this, tb, tag) = (self.clone(), tb.clone(), tag.to_string());
        tokio::spawn(async move {
            loop {
                this.refill_loop(&tag, &tb).await;
                tb.refilling.store(false, Ordering::Release);
                // A request that became short while the flag was still set found the loop
                // running and left it to us: look again before leaving.
                let due = tb.buffer.refill_due(tb.wanted.load(Ordering::Acquire));
                if !due
                    || this.closed.load(Ordering::Acquire)
                    || tb.refilling.swap(true, Ordering::AcqRel)
                {
                    break;
                }
            }
        });
    }

    /// Claims segments until the buffer has what it needs, retrying with backoff; never gives
    /// up on a tag while the service runs (no tag gets stuck).
    async fn refill_loop(&self, tag: &str, tb: &TagBuffer) {
        let (first, max) = self.config.retry_backoff;
        let mut backoff = Backoff::new(first, max);
        while !self.closed.load(Ordering::Acquire) {
            let wanted = tb.wanted.load(Ordering::Acquire);
            let Some(plan) = tb.buffer.plan_refill(wanted, self.now_ms()) else {
                return;
            };
            let started = Instant::now();
            match self.store.claim_within(tag, plan.step, tb.end).await {
                Ok(segment) => {
                    let took = started.elapsed();
                    metrics::histogram!("floe_segment_refill_seconds", "tag" => tag.to_string())
                        .record(took.as_secs_f64());
                    {
                        let mut stats = tb.stats.lock();
                        stats.last_refill_ms = Some(took.as_secs_f64() * 1000.0);
                        if stats.claims.len() == STEP_HISTORY {
                            stats.claims.pop_front();
                        }
                        stats.claims.push_back(Claim {
                            unix_ms: unix_ms(),
                            step: segment.len(),
                        });
                    }
                    metrics::counter!("floe_segment_refills_total", "tag" => tag.to_string())
                        .increment(1);
                    if let Err(e) = tb.buffer.install(segment) {
                        // The buffer's own witness caught a store that went backwards: the
                        // range is dropped (never served) and the claim retried; requests get
                        // "unavailable" meanwhile.
                        metrics::counter!("floe_segment_refused_total", "tag" => tag.to_string())
                            .increment(1);
                        let pause = backoff.next();
                        tracing::error!(tag, error = %e, retry_in = ?pause, "segment refused");
                        tb.refilled.notify_waiters();
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                    // Served (or about to be): later short requests raise it again.
                    let _ =
                        tb.wanted
                            .compare_exchange(wanted, 1, Ordering::AcqRel, Ordering::Relaxed);
                    tb.refilled.notify_waiters();
                    backoff.reset();
                }
                Err(e @ StoreError::Exhausted { .. }) => {
                    tracing::error!(tag, error = %e, "segment tag exhausted; no more refills");
                    let _ = tb.exhausted.set(e.to_string());
                    tb.buffer.refill_failed(e.to_string());
                    tb.refilled.notify_waiters();
                    return;
                }
                Err(e) => {
                    metrics::counter!("floe_segment_refill_errors_total", "tag" => tag.to_string())
                        .increment(1);
                    tb.stats.lock().errors += 1;
                    let pause = backoff.next();
                    tracing::warn!(tag, error = %e, retry_in = ?pause, "segment refill failed");
                    tb.buffer.refill_failed(e.to_string());
                    tb.refilled.notify_waiters();
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// IDs of `tag` buffered on this node (the Distributed ID Generator's `/health`). "0 left"
    /// is only healthy if a refill can succeed, so an empty tag waits (as long as a request
    /// would) for the outcome of the refill this call starts.
    pub async fn remaining(self: &Arc<Self>, tag: &str) -> Result<u64, SegmentError> {
        let tb = self.buffer(tag, None).await?;
        let state = tb.buffer.state();
        if state.remaining > 0 {
            return Ok(state.remaining);
        }
        self.kick(tag, &tb, 1);
        let deadline = tokio::time::Instant::now() + self.config.wait_timeout;
        loop {
            match tb.buffer.state() {
                s if s.remaining > 0 => return Ok(s.remaining),
                SegmentState {
                    last_error: Some(e),
                    next_ready: false,
                    ..
                } => {
                    return Err(Self::unavailable(
                        tag,
                        format!("no IDs buffered and the refill failed: {e}"),
                    ))
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Self::unavailable(
                    tag,
                    format!(
                        "no IDs buffered and no segment arrived within segment.wait_timeout ({})",
                        humantime::format_duration(self.config.wait_timeout)
                    ),
                ));
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    /// Loads the first segment of every tag in the store, so the first requests do not wait.
    /// Tags holding `@` are skipped: they are number sequences' period rows (`name@20261130`),
    /// mostly history, served with their own end by the numbers' service when asked for.
    pub async fn warm_up(self: &Arc<Self>) -> Result<usize, SegmentError> {
        let rows = self
            .store
            .tags()
            .await
            .map_err(|e| Self::unavailable("*", e))?;
        let mut loaded = 0;
        for row in rows.iter().filter(|r| !r.tag.contains('@')) {
            let tb = self.insert(row, MAX_END);
            self.kick(&row.tag, &tb, 1);
            loaded += 1;
        }
        Ok(loaded)
    }

    /// `count` increasing IDs of `tag`, all or none, counted in
    /// `floe_ids_issued_total{mode="segment"}`: what every segment route serves.
    pub async fn allocate(
        self: &Arc<Self>,
        tag: &str,
        count: u32,
    ) -> Result<Vec<u64>, SegmentError> {
        let taken = self.take(tag, u64::from(count)).await?;
        let mut ids = Vec::with_capacity(count as usize);
        taken.extend_into(&mut ids);
        metrics::counter!("floe_ids_issued_total", "mode" => "segment", "tag" => tag.to_owned())
            .increment(ids.len() as u64);
        Ok(ids)
    }

    /// Every tag of the table, with this node's buffer state (the admin route).
    pub async fn tags(&self) -> Result<Vec<TagView>, SegmentError> {
        let rows = self.store.tags().await?;
        let states = self.states();
        Ok(rows
            .into_iter()
            .map(|row| TagView {
                buffer: states.iter().find(|s| s.tag == row.tag).cloned(),
                row,
            })
            .collect())
    }

    /// Creates a tag whose first ID is `start` (at least 1).
    pub async fn create(&self, tag: &str, start: u64, step: u64) -> Result<TagRow, SegmentError> {
        if start == 0 {
            return Err(SegmentError::Invalid(
                "start must be at least 1 (ID 0 is never issued)".into(),
            ));
        }
        Ok(self.store.create(tag, start, step).await?)
    }

    /// This node's buffer of `tag`, if it has one.
    pub fn state(&self, tag: &str) -> Option<TagState> {
        let tb = self.tags.read().get(tag)?.clone();
        Some(TagState::of(tag, &tb))
    }

    /// The tags this node holds a buffer of.
    pub fn buffered_tags(&self) -> Vec<String> {
        self.tags.read().keys().cloned().collect()
    }

    /// State of every buffered tag.
    pub fn states(&self) -> Vec<TagState> {
        let tags = self.tags.read();
        let mut out: Vec<TagState> = tags.iter().map(|(tag, tb)| TagState::of(tag, tb)).collect();
        out.sort_by(|a, b| a.tag.cmp(&b.tag));
        out
    }

    /// Changes the step of a tag in the store and in its buffer.
    pub async fn set_step(&self, tag: &str, step: u64) -> Result<TagRow, SegmentError> {
        let row = self.store.set_step(tag, step).await?;
        if let Some(tb) = self.tags.read().get(tag) {
            tb.buffer.set_step(step);
        }
        Ok(row)
    }

    /// Drops the buffer of `tag` and gives its unissued tail back: for a number sequence's
    /// past period, which no request asks for any more. A later request for the tag (a clock
    /// stepped back) loads it again and claims after whatever was served.
    pub async fn retire(&self, tag: &str) -> bool {
        let Some(tb) = self.tags.write().remove(tag) else {
            return false;
        };
        let deadline = tokio::time::Instant::now() + self.config.wait_timeout;
        self.hand_back(tag, &tb, deadline).await
    }

    /// Stops handing out IDs and gives each tag's unissued tail back to the store when no other
    /// node claimed past it. Returns how many tags were handed back.
    pub async fn shutdown(&self) -> usize {
        self.closed.store(true, Ordering::Release);
        let tags: Vec<(String, Arc<TagBuffer>)> = self
            .tags
            .read()
            .iter()
            .map(|(t, b)| (t.clone(), b.clone()))
            .collect();
        // One bound for every tag, so a hung database cannot hold up the stop for longer than
        // a request would wait.
        let deadline = tokio::time::Instant::now() + self.config.wait_timeout;
        let mut handed = 0;
        for (tag, tb) in tags {
            if self.hand_back(&tag, &tb, deadline).await {
                handed += 1;
            }
        }
        tracing::info!(tags = handed, "segment ranges handed back");
        handed
    }

    /// Closes one tag's buffer and hands its unissued tail back; `true` when the store took it.
    async fn hand_back(&self, tag: &str, tb: &TagBuffer, deadline: tokio::time::Instant) -> bool {
        // A claim still running has moved the row past our last segment: let it land in its
        // buffer first (the loop stops once the buffer is closed or the service is), or the
        // hand-back below would find the row moved and give nothing back.
        while tb.refilling.load(Ordering::Acquire) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tb.refilled.notify_waiters();
        let Some(back) = tb.buffer.close() else {
            return false;
        };
        match self.store.hand_back(tag, back).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::info!(
                    tag,
                    "segment tail not handed back: another node claimed after us"
                );
                false
            }
            Err(e) => {
                tracing::warn!(tag, error = %e, "segment tail not handed back");
                false
            }
        }
    }
}
