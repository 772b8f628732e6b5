//! Waiting with a deadline instead of sleeping and hoping: [`eventually`] polls until a state is
//! reached, [`consistently`] polls to show that a state holds for a while. Both fail the test
//! with a message naming what was awaited and what was seen last.

use std::fmt::Display;
#[cfg(feature = "tokio")]
use std::future::Future;
#[cfg(feature = "tokio")]
use std::panic::Location;
use std::time::{Duration, Instant};

/// How often a probe is called.
pub const POLL: Duration = Duration::from_millis(20);

/// What a probe returns: a value once the awaited state is reached, or "not yet" and, when the
/// probe can say, what it saw instead (shown when the deadline passes).
pub trait Outcome {
    /// What the wait returns once the state is reached.
    type Value;
    /// `Ok` once reached; otherwise what was seen instead, if anything is worth showing.
    fn reached(self) -> Result<Self::Value, Option<String>>;
}

impl Outcome for bool {
    type Value = ();
    fn reached(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn reached(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Outcome for Result<T, E> {
    type Value = T;
    fn reached(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(seen.to_string()))
    }
}

/// `; last seen: …` when the probe said what it saw.
fn seen(last: &Option<String>) -> String {
    last.as_ref()
        .map_or_else(String::new, |s| format!("; last seen: {s}"))
}

/// Calls `probe` every [`POLL`] until it reports the state reached and returns its value;
/// fails the test, naming `what`, once `within` has passed.
#[track_caller]
pub fn eventually<O: Outcome>(
    within: Duration,
    what: &str,
    mut probe: impl FnMut() -> O,
) -> O::Value {
    let deadline = Instant::now() + within;
    loop {
        let last = match probe().reached() {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "not within {within:?}: {what}{}",
            seen(&last)
        );
        std::thread::sleep(POLL);
    }
}

#[cfg(feature = "tokio")]
/// [`eventually`] for an async probe, on tokio's clock (so paused time works too). The failure
/// names the line that awaited (an async fn cannot be `#[track_caller]`).
#[track_caller]
pub fn eventually_async<O: Outcome>(
    within: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> O,
) -> impl Future<Output = O::Value> {
    let at = Location::caller();
    let what = what.to_owned();
    async move {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let last = match probe().await.reached() {
                Ok(value) => return value,
                Err(last) => last,
            };
            assert!(
                tokio::time::Instant::now() < deadline,
                "not within {within:?}: {what}{} (awaited at {at})",
                seen(&last)
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Calls `probe` every [`POLL`] for `during` (and once more at the end), failing the test, naming
/// `what`, the first time it does not hold: for states that must not change for a while.
#[track_caller]
pub fn consistently<O: Outcome>(during: Duration, what: &str, mut probe: impl FnMut() -> O) {
    let started = Instant::now();
    loop {
        let done = started.elapsed() >= during;
        if let Err(last) = probe().reached() {
            panic!(
                "stopped holding after {:?} of {during:?}: {what}{}",
                started.elapsed(),
                seen(&last)
            );
        }
        if done {
            return;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(feature = "tokio")]
/// [`consistently`] for an async probe, on tokio's clock.
#[track_caller]
pub fn consistently_async<O: Outcome>(
    during: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> O,
) -> impl Future<Output = ()> {
    let at = Location::caller();
    let what = what.to_owned();
    async move {
        let started = tokio::time::Instant::now();
        loop {
            let done = started.elapsed() >= during;
            if let Err(last) = probe().await.reached() {
                panic!(
                    "stopped holding after {:?} of {during:?}: {what}{} (checked at {at})",
                    started.elapsed(),
                    seen(&last)
                );
            }
            if done {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{consistently, eventually};

    #[test]
    fn eventually_returns_the_value_once_reached() {
        let mut n = 0;
        let got = eventually(Duration::from_secs(5), "the third call", || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(got, 3);
        eventually(Duration::from_secs(1), "true", || true);
    }

    #[test]
    #[should_panic(expected = "not within 100ms: the counter reaches 1000; last seen: at ")]
    fn eventually_fails_naming_what_and_the_last_state() {
        let mut n = 0;
        eventually(
            Duration::from_millis(100),
            "the counter reaches 1000",
            || {
                n += 1;
                if n >= 1000 {
                    Ok(())
                } else {
                    Err(format!("at {n}"))
                }
            },
        );
    }

    #[test]
    fn consistently_checks_for_the_whole_time() {
        let started = Instant::now();
        let mut calls = 0;
        consistently(Duration::from_millis(100), "holds", || {
            calls += 1;
            true
        });
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(calls >= 3, "{calls} calls");
    }

    #[test]
    #[should_panic(expected = "stopped holding after")]
    fn consistently_fails_when_the_state_changes() {
        let mut n = 0;
        consistently(Duration::from_secs(5), "n stays below 3", || {
            n += 1;
            n < 3
        });
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn the_async_twins_poll_the_same_way() {
        let mut n = 0;
        let got = super::eventually_async(Duration::from_secs(5), "the third call", async || {
            n += 1;
            (n == 3).then_some(n)
        })
        .await;
        assert_eq!(got, 3);
        super::consistently_async(Duration::from_millis(60), "holds", async || true).await;
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    #[should_panic(expected = "not within 50ms: never (awaited at ")]
    async fn eventually_async_names_the_awaiting_line() {
        super::eventually_async(Duration::from_millis(50), "never", async || false).await;
    }
}
