//! The duplicate and order checks: each connection logs the IDs it receives as runs of consecutive values, and the
//! runs of all connections are swept for overlaps at the end.
//!
//! Runs, because Floe hands out IDs in runs: a batch from one lane within one tick, or from one segment, is a
//! sequence of consecutive integers. Logging `(start, len)` instead of every ID makes a batch of 10,000 cost one
//! entry and a few nanoseconds instead of 80 KB of fresh memory, whose page faults alone would halve the tool's
//! throughput on big batches. A run of one is kept as a bare `u64`, so no ID ever costs more than 8 bytes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Memory all connections together may spend on logged IDs, so a long run cannot exhaust the machine it shares
/// with the server: 400 million single IDs.
pub(crate) const MAX_CHECK_BYTES: usize = 3_200_000_000;
/// Examples of each finding kept.
const EXAMPLES: usize = 5;
/// Entries in a log's first chunk; later chunks double up to [`CHUNK_MAX`].
const CHUNK_MIN: usize = 512;
/// Entries in the largest chunk.
const CHUNK_MAX: usize = 1 << 20;

/// One connection's log of the IDs it received.
#[derive(Debug)]
pub(crate) struct IdLog {
    /// Whether runs are kept for the duplicate check (`--check`); the order check works without them.
    keep: bool,
    /// Whether IDs should strictly increase on this connection (snowflake mode).
    track_order: bool,
    /// First ID of the run being extended.
    run_start: u64,
    /// Length of the run being extended; 0 before the first ID.
    run_len: u64,
    /// The ID that would extend the run; `None` before the first ID and after `u64::MAX`.
    next: Option<u64>,
    /// Closed runs of one.
    singles: Chunks<u64>,
    /// Closed runs of two or more, as `(start, len)`.
    runs: Chunks<(u64, u64)>,
    /// Bytes this log may still allocate.
    budget: usize,
    /// IDs in closed, kept runs.
    kept_ids: u64,
    /// Whether a run was dropped because the budget was spent.
    partial: bool,
    /// IDs not greater than the one before them.
    order_violations: u64,
    /// A few `[previous, next]` pairs that broke the order.
    order_examples: Vec<[u64; 2]>,
}

impl IdLog {
    /// A log that keeps runs within `budget` bytes when `keep` is set, and checks order when `track_order` is.
    pub(crate) fn new(keep: bool, track_order: bool, budget: usize) -> IdLog {
        IdLog {
            keep,
            track_order,
            run_start: 0,
            run_len: 0,
            next: None,
            singles: Chunks::new(),
            runs: Chunks::new(),
            budget,
            kept_ids: 0,
            partial: false,
            order_violations: 0,
            order_examples: Vec::new(),
        }
    }

    /// Logs `ids`, received in this order.
    pub(crate) fn record(&mut self, ids: &[u64]) {
        for &id in ids {
            // The common case: the ID extends the run, which also means it is greater than the one before.
            if self.next == Some(id) {
                self.run_len += 1;
                self.next = id.checked_add(1);
            } else {
                self.start_run(id);
            }
        }
    }

    #[cold]
    fn start_run(&mut self, id: u64) {
        if self.run_len > 0 {
            let last = self.run_start + (self.run_len - 1);
            if self.track_order && id <= last {
                self.order_violations += 1;
                if self.order_examples.len() < EXAMPLES {
                    self.order_examples.push([last, id]);
                }
            }
            self.close_run();
        }
        self.run_start = id;
        self.run_len = 1;
        self.next = id.checked_add(1);
    }

    fn close_run(&mut self) {
        if !self.keep || self.run_len == 0 {
            return;
        }
        let kept = if self.run_len == 1 {
            self.singles.push(self.run_start, &mut self.budget)
        } else {
            self.runs
                .push((self.run_start, self.run_len), &mut self.budget)
        };
        if kept {
            self.kept_ids += self.run_len;
        } else {
            self.partial = true;
        }
    }

    /// Per-connection order violations and a few examples.
    pub(crate) fn order(&self) -> (u64, &[[u64; 2]]) {
        (self.order_violations, &self.order_examples)
    }

    /// Closes the open run and hands over what the duplicate check needs.
    pub(crate) fn finish(mut self) -> Kept {
        self.close_run();
        self.run_len = 0;
        Kept {
            singles: self.singles.chunks,
            runs: self.runs.chunks,
            ids: self.kept_ids,
            partial: self.partial,
        }
    }
}

/// Storage that grows in chunks that never move once allocated: one growing Vec would copy up to gigabytes on its
/// doublings, stalling every connection on the worker thread and showing up as server latency.
#[derive(Debug)]
struct Chunks<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Chunks<T> {
    fn new() -> Chunks<T> {
        Chunks {
            chunks: Vec::new(),
            len: 0,
        }
    }

    /// Appends `value`, charging a new chunk's whole capacity to `budget`; false when the budget cannot pay.
    fn push(&mut self, value: T, budget: &mut usize) -> bool {
        let chunk = match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < chunk.capacity() => chunk,
            _ => {
                let entry = std::mem::size_of::<T>();
                let size = self.len.clamp(CHUNK_MIN, CHUNK_MAX).min(*budget / entry);
                if size == 0 {
                    return false;
                }
                *budget -= size * entry;
                self.chunks.push(Vec::with_capacity(size));
                // Just pushed.
                self.chunks.last_mut().unwrap()
            }
        };
        chunk.push(value);
        self.len += 1;
        true
    }
}

/// The IDs one connection kept, for [`find_duplicates`].
#[derive(Debug)]
pub(crate) struct Kept {
    singles: Vec<Vec<u64>>,
    runs: Vec<Vec<(u64, u64)>>,
    /// IDs kept.
    pub(crate) ids: u64,
    /// Whether some IDs were not kept because the memory budget was spent.
    pub(crate) partial: bool,
}

/// A sorted list of runs, in either representation.
enum List {
    Singles(Vec<u64>),
    Runs(Vec<(u64, u64)>),
}

impl List {
    fn get(&self, pos: usize) -> Option<(u64, u64)> {
        match self {
            List::Singles(ids) => ids.get(pos).map(|&id| (id, 1)),
            List::Runs(runs) => runs.get(pos).copied(),
        }
    }
}

/// Counts IDs that occur more than once over all connections (a value seen three times counts two), with a few
/// duplicated values.
///
/// Sorts each chunk in place and merges them by start, sweeping the highest end seen so far: a run that starts
/// below it overlaps earlier runs by exactly the part below it. No second copy of the IDs is made, and chunks of
/// one connection's snowflake IDs are sorted already, which the sort detects in one pass.
pub(crate) fn find_duplicates(kept: Vec<Kept>) -> (u64, Vec<u64>) {
    let mut lists = Vec::new();
    for conn in kept {
        for mut chunk in conn.singles {
            chunk.sort_unstable();
            lists.push(List::Singles(chunk));
        }
        for mut chunk in conn.runs {
            chunk.sort_unstable();
            lists.push(List::Runs(chunk));
        }
    }
    let mut heads: BinaryHeap<Reverse<(u64, u64, usize, usize)>> = lists
        .iter()
        .enumerate()
        .filter_map(|(i, list)| list.get(0).map(|(start, len)| Reverse((start, len, i, 0))))
        .collect();
    let mut duplicates = 0;
    let mut examples = Vec::new();
    // u128 because a run may end exactly at 2^64.
    let mut covered_to: Option<u128> = None;
    while let Some(Reverse((start, len, list, pos))) = heads.pop() {
        let (first, end) = (u128::from(start), u128::from(start) + u128::from(len));
        if let Some(covered) = covered_to.filter(|&covered| first < covered) {
            // Below 2^64 by construction, so the casts are exact.
            duplicates += (end.min(covered) - first) as u64;
            if examples.len() < EXAMPLES && examples.last() != Some(&start) {
                examples.push(start);
            }
        }
        covered_to = Some(covered_to.map_or(end, |covered| covered.max(end)));
        if let Some((start, len)) = lists[list].get(pos + 1) {
            heads.push(Reverse((start, len, list, pos + 1)));
        }
    }
    (duplicates, examples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(keep: bool, lists: &[&[u64]]) -> IdLog {
        let mut log = IdLog::new(keep, true, MAX_CHECK_BYTES);
        for ids in lists {
            log.record(ids);
        }
        log
    }

    fn duplicates(conns: &[&[&[u64]]]) -> (u64, Vec<u64>) {
        find_duplicates(
            conns
                .iter()
                .map(|lists| log(true, lists).finish())
                .collect(),
        )
    }

    #[test]
    fn consecutive_ids_are_kept_as_runs() {
        let kept = log(true, &[&[1, 2, 3], &[4, 5], &[9], &[11, 12]]).finish();
        assert_eq!(kept.singles, vec![vec![9]]);
        assert_eq!(kept.runs, vec![vec![(1, 5), (11, 2)]]);
        assert_eq!(kept.ids, 8);
        assert!(!kept.partial);
    }

    #[test]
    fn duplicates_are_found_within_and_across_connections() {
        assert_eq!(duplicates(&[&[&[1, 2, 3]], &[&[10, 11]]]), (0, vec![]));
        // 3 appears twice, 7 three times: 1 + 2 extra copies.
        assert_eq!(
            duplicates(&[&[&[5, 1, 3]], &[&[2, 3, 4]], &[&[7, 7, 7]]]),
            (3, vec![3, 7])
        );
        // Overlapping runs: 5..=9 twice, and 7 a third time.
        assert_eq!(
            duplicates(&[
                &[&[1, 2, 3, 4, 5, 6, 7, 8, 9]],
                &[&[5, 6, 7, 8, 9, 10]],
                &[&[7]]
            ]),
            (6, vec![5, 7])
        );
        assert_eq!(
            duplicates(&[&[&[u64::MAX - 1, u64::MAX]], &[&[u64::MAX]]]).0,
            1
        );
        assert_eq!(find_duplicates(Vec::new()).0, 0);
    }

    #[test]
    fn order_violations_are_counted_per_id() {
        let log = log(false, &[&[5, 6], &[6, 4], &[7]]);
        assert_eq!(log.order(), (2, &[[6, 6], [6, 4]][..]));
        assert!(log.finish().singles.is_empty());
    }

    #[test]
    fn the_budget_bounds_memory_and_marks_the_check_partial() {
        let mut log = IdLog::new(true, true, 10_000 * 8);
        // Every other ID, so each is a run of one.
        let ids: Vec<u64> = (0..24_000).step_by(2).collect();
        for part in ids.chunks(700) {
            log.record(part);
        }
        let kept = log.finish();
        assert!(kept.partial);
        assert_eq!(kept.ids, 10_000);
        assert!(kept.singles.iter().map(Vec::capacity).sum::<usize>() <= 10_000);
        assert_eq!(kept.singles.concat(), ids[..10_000]);
    }
}
