//! Reading again after a lost connection. A read that failed because no server answered or
//! the connection dropped in the middle (a reset, a restart, a timeout) is made again from
//! the start on a new connection, with backoff, until a time budget has passed since the
//! first failure (`sync.unreachable_after`); then the last error is returned and the caller
//! stops the run.
//!
//! A read cannot resume where it was cut: paged-results and syncrepl cookies belong to the
//! connection or the search that issued them. Nothing read before the loss is used, so a
//! cut read can never look like a complete one (the planner deletes only on a complete read).
//! An answer from the server (a refused bind, a size limit, a missing base) is not a lost
//! connection and is returned at once: reading again would get the same answer.
//!
//! It does not know what a read is for, nor the planner, the state or the target.

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder as _, ExponentialBuilder};

/// An error that may go away if the same read is made again on a new connection.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

/// What a read returned, and how many times the connection was lost before it.
#[derive(Debug)]
pub struct Retried<T> {
    pub value: T,
    /// How many attempts failed on a lost connection before the one that returned `value`.
    pub losses: u32,
    /// The last of those failures, for the report.
    pub last_loss: Option<String>,
}

impl<T> Retried<T> {
    /// The report's note on the losses (`None` when the first attempt succeeded).
    pub fn note(&self) -> Option<String> {
        let last = self.last_loss.as_deref()?;
        Some(format!(
            "the directory connection was lost {} time(s) (last: {last}); the read was made \
             again from the start",
            self.losses
        ))
    }
}

/// The pause schedule between attempts: quick at first, then every 5 s, without a count (the
/// budget ends it).
fn schedule() -> backon::ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .with_jitter()
        .build()
}

/// Runs `read` until it succeeds, fails with an error that is not [transient](Transient), or
/// has failed with transient errors for longer than `budget` (then that error is returned).
pub async fn reconnecting<T, E, F, Fut>(budget: Duration, mut read: F) -> Result<Retried<T>, E>
where
    E: Transient + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut first_loss: Option<Instant> = None;
    let mut pauses = schedule();
    let mut losses = 0u32;
    let mut last_loss = None;
    loop {
        let error = match read().await {
            Ok(value) => {
                return Ok(Retried {
                    value,
                    losses,
                    last_loss,
                });
            }
            Err(e) if e.is_transient() => e,
            Err(e) => return Err(e),
        };
        let since = *first_loss.get_or_insert_with(Instant::now);
        let left = budget.saturating_sub(since.elapsed());
        if left.is_zero() {
            return Err(error);
        }
        losses += 1;
        // default: the schedule has no count, so it always has a next pause.
        let pause = pauses.next().unwrap_or(Duration::from_secs(5)).min(left);
        tracing::warn!(error = %error, retry_in = ?pause, "lost the directory; reading again from the start");
        last_loss = Some(error.to_string());
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[derive(Debug)]
    struct Failure(bool);
    impl Transient for Failure {
        fn is_transient(&self) -> bool {
            self.0
        }
    }
    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failure (transient: {})", self.0)
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_the_read_succeeds() {
        let mut calls = 0;
        let got = reconnecting(Duration::from_secs(10), || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(Failure(true)) } else { Ok(n) } }
        })
        .await
        .unwrap();
        assert_eq!((got.value, got.losses), (3, 2));
        assert!(got.note().unwrap().contains("lost 2 time(s)"));
    }

    #[tokio::test]
    async fn an_answer_from_the_server_is_not_retried() {
        let mut calls = 0;
        let got: Result<Retried<()>, Failure> = reconnecting(Duration::from_secs(10), || {
            calls += 1;
            async { Err(Failure(false)) }
        })
        .await;
        assert!(got.is_err());
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn a_directory_down_past_the_budget_is_given_up_on() {
        let started = Instant::now();
        let mut calls = 0;
        let got: Result<Retried<()>, Failure> = reconnecting(Duration::from_millis(700), || {
            calls += 1;
            async { Err(Failure(true)) }
        })
        .await;
        assert!(got.is_err());
        assert!(calls >= 2, "tried {calls} times");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }
}
