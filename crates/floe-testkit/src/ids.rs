//! Checks on the IDs a test was given.

use std::collections::HashSet;

/// Fails the test unless `ids` strictly increase (and so are unique), naming the first pair
/// out of order.
#[track_caller]
pub fn assert_increasing(ids: &[u64]) {
    if let Some(i) = ids.windows(2).position(|w| w[0] >= w[1]) {
        panic!(
            "IDs must strictly increase: ids[{i}] = {} then ids[{}] = {} (of {})",
            ids[i],
            i + 1,
            ids[i + 1],
            ids.len()
        );
    }
}

/// Fails the test when an ID appears twice, naming it.
#[track_caller]
pub fn assert_unique(ids: &[u64]) {
    let mut seen = HashSet::with_capacity(ids.len());
    for &id in ids {
        assert!(seen.insert(id), "ID {id} was handed out twice");
    }
}
