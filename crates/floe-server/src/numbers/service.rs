//! The number service: looks a sequence up (configuration, then the definitions table), reads
//! the period from the clock it is given, takes counter values from that period's segment row
//! and renders them.
//!
//! The period is chosen when the request is served and decides the buffer used, so a node
//! never hands out numbers buffered for yesterday's period after midnight: yesterday's buffer
//! is simply not asked any more, and is retired (its unissued tail handed back) a little later.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use floe_core::numbers::{check_name, Sequence, Stamp};
use floe_store::segment::{SequenceRow, SequenceStore};
use parking_lot::{Mutex, RwLock};

use super::NumberError;
use crate::segment::{NewTag, SegmentError, SegmentService};

/// Kept past a period's end, on top of `segment.wait_timeout`, before its buffer is retired:
/// a request that read the clock just before the boundary may still wait for a refill of it.
const RETIRE_GRACE: Duration = Duration::from_secs(5);

/// Hands out business numbers.
#[derive(Debug)]
pub struct NumberService {
    /// The counters: a segment service of its own over the segment table, so period rows get
    /// buffers that end where `{seq:0N}` does and are never preloaded at start.
    counters: Arc<SegmentService>,
    /// Where sequences declared through the admin API are kept.
    store: Arc<dyn SequenceStore>,
    /// Sequences of `[numbers.<name>]`, validated at start; they win over the table.
    configured: BTreeMap<String, Arc<Sequence>>,
    /// Sequences read from the table so far. Definitions never change, so they are kept.
    declared: RwLock<HashMap<String, Arc<Sequence>>>,
    /// The period tag each sequence served last, so a period's buffer is retired once the next
    /// period is in use.
    current: Mutex<HashMap<String, String>>,
    /// How long a past period's buffer is kept after the next period was first served.
    retire_after: Duration,
}

/// One sequence as `GET /v1/numbers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct NumberView {
    /// The definition, as the admin API takes it and the table keeps it.
    #[serde(flatten)]
    pub definition: SequenceRow,
    /// `config` (`[numbers.<name>]` of this node) or `admin` (the definitions table).
    pub source: &'static str,
    /// The current period's key, by this node's clock.
    pub period: String,
    /// Its segment tag.
    pub tag: String,
    /// The value this node hands out next: from its buffer, else where the period row's next
    /// claim starts (`start` when the period has no row yet); `null` when exhausted.
    pub next: Option<u64>,
    /// `next` rendered.
    pub next_number: Option<String>,
    /// Values of the period buffered on this node.
    pub buffered: u64,
}

impl NumberService {
    /// A service over `counters` (a segment service without preloading) and `store`, with the
    /// sequences of the configuration; `wait_timeout` is how long a request may wait for a
    /// refill (a past period's buffer is kept at least that long).
    pub fn new(
        counters: Arc<SegmentService>,
        store: Arc<dyn SequenceStore>,
        configured: Vec<Sequence>,
        wait_timeout: Duration,
    ) -> Arc<NumberService> {
        Arc::new(NumberService {
            counters,
            store,
            configured: configured
                .into_iter()
                .map(|s| (s.name().to_owned(), Arc::new(s)))
                .collect(),
            declared: RwLock::new(HashMap::new()),
            current: Mutex::new(HashMap::new()),
            retire_after: wait_timeout + RETIRE_GRACE,
        })
    }

    /// `count` numbers of `name` issued at `now_ms` (the node's clock): all of them, in
    /// increasing order within the period, or none and an error.
    pub async fn issue(
        self: &Arc<Self>,
        name: &str,
        count: u32,
        now_ms: u64,
    ) -> Result<Vec<String>, NumberError> {
        if count == 0 {
            return Err(NumberError::Invalid("count must be at least 1".into()));
        }
        let seq = self.sequence(name).await?;
        let stamp = seq
            .stamp(now_ms)
            .map_err(|e| NumberError::Definition(e.to_string()))?;
        let taken = self
            .counters
            .take_or_create(stamp.tag(), u64::from(count), new_tag(&seq))
            .await
            .map_err(|e| counter_error(&seq, &stamp, e))?;
        // The store never claims past the end; should one ever answer otherwise, no wider
        // number goes out.
        let top = taken.rest.last().unwrap_or(&taken.first).end;
        if top > seq.end() {
            return Err(NumberError::Definition(format!(
                "the period row `{}` returned values up to {top}, past the end {} of `{}`; refusing to widen the number",
                stamp.tag(),
                seq.end(),
                seq.format()
            )));
        }
        self.in_use(seq.name(), stamp.tag());
        let numbers: Vec<String> = taken.iter().map(|v| stamp.number(v)).collect();
        metrics::counter!("floe_numbers_issued_total", "name" => seq.name().to_owned())
            .increment(numbers.len() as u64);
        Ok(numbers)
    }

    /// The sequence `name`: from the configuration, else from the definitions table (read
    /// once; an unknown name is not remembered, so it takes no memory).
    pub async fn sequence(&self, name: &str) -> Result<Arc<Sequence>, NumberError> {
        check_name(name).map_err(|e| NumberError::Invalid(e.to_string()))?;
        if let Some(s) = self.configured.get(name) {
            return Ok(s.clone());
        }
        if let Some(s) = self.declared.read().get(name) {
            return Ok(s.clone());
        }
        let row = self
            .store
            .sequence(name)
            .await?
            .ok_or_else(|| NumberError::UnknownName(name.to_owned()))?;
        let seq = validate(row).await.map_err(|e| {
            NumberError::Definition(format!(
                "the definition of `{name}` in the number definitions table is invalid: {e}"
            ))
        })?;
        let seq = Arc::new(seq);
        self.declared.write().insert(name.to_owned(), seq.clone());
        Ok(seq)
    }

    /// Stores a new definition in the table, for every node sharing it.
    pub async fn declare(&self, row: SequenceRow) -> Result<SequenceRow, NumberError> {
        let seq = validate(row.clone())
            .await
            .map_err(|e| NumberError::Invalid(e.to_string()))?;
        if self.configured.contains_key(&row.name) || !self.store.declare(&row).await? {
            return Err(NumberError::NameExists(row.name));
        }
        self.declared
            .write()
            .insert(row.name.clone(), Arc::new(seq));
        Ok(row)
    }

    /// Every sequence, by name, with its current period (by `now_ms`) and next value.
    pub async fn list(&self, now_ms: u64) -> Result<Vec<NumberView>, NumberError> {
        let mut all: Vec<(Arc<Sequence>, &'static str)> = self
            .configured
            .values()
            .map(|s| (s.clone(), "config"))
            .collect();
        for row in self.store.sequences().await? {
            if self.configured.contains_key(&row.name) {
                continue;
            }
            match self.sequence(&row.name).await {
                Ok(s) => all.push((s, "admin")),
                Err(e) => {
                    tracing::warn!(name = %row.name, error = %e, "number sequence not listed")
                }
            }
        }
        all.sort_by(|a, b| a.0.name().cmp(b.0.name()));
        let mut out = Vec::with_capacity(all.len());
        for (seq, source) in all {
            out.push(self.view(&seq, source, now_ms).await?);
        }
        Ok(out)
    }

    async fn view(
        &self,
        seq: &Sequence,
        source: &'static str,
        now_ms: u64,
    ) -> Result<NumberView, NumberError> {
        let stamp = seq
            .stamp(now_ms)
            .map_err(|e| NumberError::Definition(e.to_string()))?;
        let (next, buffered) = match self.counters.state(stamp.tag()) {
            Some(state) if state.next_id.is_some() => (state.next_id, state.remaining),
            _ => {
                let row = self
                    .counters
                    .store()
                    .tag(stamp.tag())
                    .await
                    .map_err(|e| NumberError::Segment(SegmentError::Store(e)))?;
                // A segment never starts at 0 (ID 0 is never issued).
                (Some(row.map_or(seq.start(), |r| r.max_id.max(1))), 0)
            }
        };
        let next = next.filter(|n| *n < seq.end());
        Ok(NumberView {
            definition: SequenceRow {
                name: seq.name().to_owned(),
                format: seq.format().to_string(),
                reset: seq.reset().to_string(),
                time_zone: seq.zone().to_string(),
                start: seq.start(),
                step: seq.step(),
            },
            source,
            period: stamp.period().to_owned(),
            tag: stamp.tag().to_owned(),
            next,
            next_number: next.map(|n| stamp.number(n)),
            buffered,
        })
    }

    /// Values buffered on this node for each sequence's period in use, for the metrics.
    pub fn buffered(&self) -> Vec<(String, u64)> {
        let current = self.current.lock().clone();
        current
            .into_iter()
            .map(|(name, tag)| {
                let left = self.counters.state(&tag).map_or(0, |s| s.remaining);
                (name, left)
            })
            .collect()
    }

    /// Stops handing out numbers and hands every period's unissued tail back.
    pub async fn shutdown(&self) -> usize {
        self.counters.shutdown().await
    }

    /// Notes that `name` serves period `tag` now; the buffer of the period it served before is
    /// retired after [`Self::retire_after`], unless that period is in use again by then (a
    /// clock stepped back).
    fn in_use(self: &Arc<Self>, name: &str, tag: &str) {
        let previous = {
            let mut current = self.current.lock();
            match current.get(name) {
                Some(t) if t == tag => return,
                _ => current.insert(name.to_owned(), tag.to_owned()),
            }
        };
        let Some(old) = previous else {
            return;
        };
        let (this, name) = (self.clone(), name.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(this.retire_after).await;
            if this.current.lock().get(&name) != Some(&old) {
                this.counters.retire(&old).await;
                tracing::debug!(tag = %old, "past period retired");
            }
        });
    }
}

/// How a sequence's period rows are made: from its start and step, ended where its padding
/// ends.
fn new_tag(seq: &Sequence) -> NewTag {
    NewTag {
        start: seq.start(),
        step: seq.step(),
        end: seq.end(),
    }
}

/// Validates a definition off the async threads: it renders every day of the sample years.
async fn validate(row: SequenceRow) -> Result<Sequence, floe_core::numbers::SequenceError> {
    let check = move || {
        Sequence::from_text(
            &row.name,
            &row.format,
            &row.reset,
            &row.time_zone,
            row.start,
            row.step,
        )
    };
    match tokio::task::spawn_blocking(check.clone()).await {
        Ok(result) => result,
        // The blocking pool is gone (runtime shutting down): validate here.
        Err(_) => check(),
    }
}

/// The counter's error as the sequence's: an exhausted period row is the sequence exhausted
/// for the period, named with what its padding holds.
fn counter_error(seq: &Sequence, stamp: &Stamp, e: SegmentError) -> NumberError {
    match e {
        SegmentError::Exhausted(_) => {
            let (name, period, last) = (seq.name(), stamp.period(), seq.end() - 1);
            let holds = match seq.format().width() {
                Some(n) => format!("`{{seq:0{n}}}` holds {}..={last}", seq.start()),
                None => format!("its counter reached {last}"),
            };
            let then = if seq.reset() == floe_core::numbers::Reset::Never {
                "declare a new sequence with a wider `{seq:0N}`".to_owned()
            } else {
                format!("the next {} starts again from {}", seq.reset(), seq.start())
            };
            NumberError::Exhausted(format!(
                "number sequence `{name}` is exhausted for period {period}: {holds} and every value was issued; {then}"
            ))
        }
        SegmentError::Invalid(m) => NumberError::Invalid(m),
        other => NumberError::Segment(other),
    }
}
