//! Adaptive concurrency towards one service (AIMD, as TCP does it): how many requests may be in
//! flight at once. It starts low, grows by one each time a full window of requests succeeded,
//! and halves when the service says it is overloaded (429, 503). Callers may then run many
//! operations "concurrently" and let this gate decide how many really hit the service.
//!
//! It knows nothing of HTTP; the client reports each exchange's outcome.

use std::sync::Mutex;

use tokio::sync::Notify;

/// The gate. `max == 0` means no limit at all (nothing is counted or awaited).
pub struct AdaptiveLimit {
    max: usize,
    state: Mutex<State>,
    released: Notify,
}

#[derive(Debug, Clone, Copy)]
struct State {
    limit: usize,
    in_flight: usize,
    /// Successes since the limit last changed.
    window: usize,
    throttled: u64,
    peak: usize,
}

/// What the gate has seen, for reports and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ConcurrencyStats {
    /// The current limit.
    pub limit: usize,
    /// The highest limit reached.
    pub peak: usize,
    /// Overload answers (429/503) received.
    pub throttled: u64,
}

/// One admitted request. Dropping it without an outcome releases the slot and counts nothing
/// (a transport error is not a sign of overload the gate should react to).
pub struct Permit<'a> {
    gate: &'a AdaptiveLimit,
}

impl AdaptiveLimit {
    /// `initial` is clamped to `1..=max`.
    pub fn new(initial: usize, max: usize) -> Self {
        AdaptiveLimit {
            max,
            state: Mutex::new(State {
                limit: initial.clamp(1, max.max(1)),
                in_flight: 0,
                window: 0,
                throttled: 0,
                peak: initial.clamp(1, max.max(1)),
            }),
            released: Notify::new(),
        }
    }

    /// Waits for a free slot.
    pub async fn acquire(&self) -> Option<Permit<'_>> {
        if self.max == 0 {
            return None;
        }
        loop {
            // Register interest before checking, so a release between the check and the
            // wait is not missed.
            let notified = self.released.notified();
            {
                let mut s = self.lock();
                if s.in_flight < s.limit {
                    s.in_flight += 1;
                    return Some(Permit { gate: self });
                }
            }
            notified.await;
        }
    }

    pub fn stats(&self) -> ConcurrencyStats {
        let s = self.lock();
        ConcurrencyStats {
            limit: s.limit,
            peak: s.peak,
            throttled: s.throttled,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another request panicked mid-update of plain counters.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release(&self, outcome: Option<bool>) {
        {
            let mut s = self.lock();
            s.in_flight = s.in_flight.saturating_sub(1);
            match outcome {
                Some(true) => {
                    s.window += 1;
                    if s.window >= s.limit && s.limit < self.max {
                        s.limit += 1;
                        s.peak = s.peak.max(s.limit);
                        s.window = 0;
                    }
                }
                Some(false) => {
                    s.throttled += 1;
                    let halved = (s.limit / 2).max(1);
                    if halved < s.limit {
                        tracing::debug!(
                            from = s.limit,
                            to = halved,
                            "service overloaded: fewer requests at once"
                        );
                    }
                    s.limit = halved;
                    s.window = 0;
                }
                None => {}
            }
        }
        self.released.notify_waiters();
    }
}

impl Permit<'_> {
    /// The service answered normally.
    pub fn succeeded(self) {
        self.finish(Some(true));
    }

    /// The service said it is overloaded (429, 503).
    pub fn throttled(self) {
        self.finish(Some(false));
    }

    fn finish(self, outcome: Option<bool>) {
        let gate = self.gate;
        std::mem::forget(self);
        gate.release(outcome);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.gate.release(None);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[tokio::test]
    async fn grows_after_a_window_of_successes_and_halves_on_overload() {
        let gate = AdaptiveLimit::new(2, 8);
        for _ in 0..2 {
            gate.acquire().await.unwrap().succeeded();
        }
        assert_eq!(gate.stats().limit, 3);
        for _ in 0..3 {
            gate.acquire().await.unwrap().succeeded();
        }
        assert_eq!(gate.stats().limit, 4);
        gate.acquire().await.unwrap().throttled();
        assert_eq!(
            gate.stats(),
            ConcurrencyStats {
                limit: 2,
                peak: 4,
                throttled: 1
            }
        );
        gate.acquire().await.unwrap().throttled();
        gate.acquire().await.unwrap().throttled();
        assert_eq!(gate.stats().limit, 1, "never below one");
        // A dropped permit (transport error) changes nothing but frees the slot.
        drop(gate.acquire().await.unwrap());
        assert_eq!(gate.stats().limit, 1);
        assert!(gate.acquire().await.is_some());
    }

    #[tokio::test]
    async fn waits_for_a_free_slot() {
        let gate = std::sync::Arc::new(AdaptiveLimit::new(1, 1));
        let first = gate.acquire().await.unwrap();
        let g = gate.clone();
        let waiter = tokio::spawn(async move {
            g.acquire().await.unwrap().succeeded();
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "a second request got in beside the first"
        );
        first.succeeded();
        tokio::time::timeout(std::time::Duration::from_secs(2), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn zero_max_is_unlimited() {
        let gate = AdaptiveLimit::new(4, 0);
        assert!(gate.acquire().await.is_none());
    }
}
