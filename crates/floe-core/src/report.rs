//! One way to print an error: its message, then each source's, joined with `: `.
//!
//! Floe's error types keep their cause as `source()` and never repeat it in their own message,
//! so a chain printed with [`report`] shows every cause exactly once.

use std::error::Error;
use std::fmt::Write as _;

/// `e` and each of its sources, joined with `: `.
pub fn report(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(out, ": {c}");
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn prints_each_cause_once_in_order() {
        let e = Outer(Inner(std::io::Error::other("disk full")));
        assert_eq!(report(&e), "outer: inner: disk full");
        assert_eq!(report(&std::io::Error::other("alone")), "alone");
    }
}
