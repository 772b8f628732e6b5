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

#[cfg(test)]
mod tests {
    use super::{assert_increasing, assert_unique};

    #[test]
    fn increasing_ids_pass() {
        assert_increasing(&[]);
        assert_increasing(&[7]);
        assert_increasing(&[1, 2, 10]);
        assert_unique(&[3, 1, 2]);
    }

    #[test]
    #[should_panic(expected = "ids[1] = 5 then ids[2] = 5 (of 3)")]
    fn a_repeat_is_not_increasing() {
        assert_increasing(&[1, 5, 5]);
    }

    #[test]
    #[should_panic(expected = "ids[0] = 9 then ids[1] = 2")]
    fn a_step_back_is_not_increasing() {
        assert_increasing(&[9, 2, 3]);
    }

    #[test]
    #[should_panic(expected = "ID 3 was handed out twice")]
    fn a_repeat_is_not_unique() {
        assert_unique(&[3, 1, 3]);
    }
}
