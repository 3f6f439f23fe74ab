//! Paces requests to the tenant's throttling budget: a shared pause after a 429 (its
//! `Retry-After`), a write rate that adapts — down on 429 and when
//! `x-ms-throttle-limit-percentage` says the budget is nearly spent, up while requests
//! succeed — and a cap on requests in flight. So a bulk run rides the quota instead of
//! hammering it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

struct State {
    /// Writes per second allowed now.
    rate: f64,
    /// Write tokens available (burst up to one second of `rate`).
    tokens: f64,
    last: Instant,
    /// Nobody sends before this (set by a 429).
    not_before: Instant,
    /// Successes since the rate last grew.
    streak: u32,
    /// The rate is lowered at most once per window: a burst of 429s answering requests
    /// that were all in flight together is one signal, not many.
    cooldown_until: Instant,
}

/// How long one decrease of the rate holds before another may follow.
const COOLDOWN: Duration = Duration::from_millis(250);

/// Shared by every request of one client.
pub(crate) struct Pacer {
    state: Mutex<State>,
    in_flight: Semaphore,
}

const MIN_RATE: f64 = 1.0;
const MAX_RATE: f64 = 10_000.0;
const INITIAL_RATE: f64 = 400.0;

impl Pacer {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        let now = Instant::now();
        Pacer {
            state: Mutex::new(State {
                rate: INITIAL_RATE,
                tokens: INITIAL_RATE,
                last: now,
                not_before: now,
                streak: 0,
                cooldown_until: now,
            }),
            in_flight: Semaphore::new(max_in_flight.max(1)),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Waits for a slot (and, for a write, a write token).
    pub(crate) async fn acquire(&self, write: bool) -> Option<SemaphorePermit<'_>> {
        let permit = self.in_flight.acquire().await.ok();
        loop {
            let wait = self.with(|s| {
                let now = Instant::now();
                if now < s.not_before {
                    return s.not_before - now;
                }
                if !write {
                    return Duration::ZERO;
                }
                let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
                s.tokens = (s.tokens + elapsed * s.rate).min(s.rate.max(1.0));
                s.last = now;
                if s.tokens >= 1.0 {
                    s.tokens -= 1.0;
                    Duration::ZERO
                } else {
                    Duration::from_secs_f64((1.0 - s.tokens) / s.rate)
                }
            });
            if wait.is_zero() {
                return permit;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// A 429: everyone pauses for `retry_after`, and writes slow down.
    pub(crate) fn throttled(&self, retry_after: Duration, write: bool) {
        self.with(|s| {
            let now = Instant::now();
            let retry_after = retry_after.min(super::MAX_RETRY_AFTER);
            let until = now.checked_add(retry_after).unwrap_or(now);
            if until > s.not_before {
                s.not_before = until;
            }
            if write {
                s.tokens = 0.0;
                if now >= s.cooldown_until {
                    s.rate = (s.rate * 0.8).max(MIN_RATE);
                    s.cooldown_until = now.checked_add(COOLDOWN.max(retry_after)).unwrap_or(now);
                }
            }
            s.streak = 0;
        });
    }

    /// A success, with the tenant's `x-ms-throttle-limit-percentage` when it sent one.
    pub(crate) fn succeeded(&self, write: bool, limit_percentage: Option<f64>) {
        if !write {
            return;
        }
        self.with(|s| {
            match limit_percentage {
                // Nearly spent: stop growing, and ease off a little (once per window).
                Some(p) if p >= 95.0 => {
                    s.streak = 0;
                    let now = Instant::now();
                    if now >= s.cooldown_until {
                        s.rate = (s.rate * 0.95).max(MIN_RATE);
                        s.cooldown_until = now + COOLDOWN;
                    }
                }
                _ => {
                    s.streak += 1;
                    // Grow by 5% after about a sixth of a second of successes.
                    if f64::from(s.streak) >= (s.rate / 6.0).max(1.0) {
                        s.rate = (s.rate * 1.05).min(MAX_RATE);
                        s.streak = 0;
                    }
                }
            }
        });
    }

    /// The current write rate (for benchmarks and diagnostics).
    pub(crate) fn write_rate(&self) -> f64 {
        self.with(|s| s.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn throttling_pauses_everyone_and_slows_writes() {
        let p = Pacer::new(4);
        let before = p.write_rate();
        p.throttled(Duration::from_millis(80), true);
        assert!(p.write_rate() < before);
        let t = Instant::now();
        drop(p.acquire(false).await);
        assert!(
            t.elapsed() >= Duration::from_millis(80),
            "reads wait out the Retry-After too"
        );
        for _ in 0..1000 {
            p.succeeded(true, None);
        }
        assert!(
            p.write_rate() > before * 0.85,
            "successes bring the rate back up"
        );
        let fresh = Pacer::new(4);
        let high = fresh.write_rate();
        fresh.succeeded(true, Some(99.0));
        assert!(
            fresh.write_rate() < high,
            "a nearly spent budget slows writes"
        );
        let once = p.write_rate();
        p.throttled(Duration::from_millis(1), true);
        p.throttled(Duration::from_millis(1), true);
        p.throttled(Duration::from_millis(1), true);
        assert_eq!(
            p.write_rate(),
            once,
            "a burst of 429s within one window lowers the rate once at most"
        );
    }
}
