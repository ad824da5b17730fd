//! The one retry policy of every reconnect and retry loop: exponential
//! delays with full jitter (each delay drawn uniformly from zero to the
//! exponential bound), so many workers that lost the same broker, Redis or
//! database at once do not come back in lockstep.
//!
//! [`Backoff`] is a [`backon::BackoffBuilder`]: request retries use backon's
//! `Retryable` with it, and the long-lived reconnect loops draw their delays
//! from [`Backoff::build`], starting over after each success.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    attempts: Option<usize>,
}

impl Backoff {
    /// Delays bounded by `first`, doubling up to `max`, without end.
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            attempts: None,
        }
    }

    /// At most `n` retries (after the first attempt).
    pub const fn with_retries(mut self, n: usize) -> Backoff {
        self.attempts = Some(n);
        self
    }

    /// Reconnecting a long-lived connection (broker, Redis subscription,
    /// PostgreSQL LISTEN): 200 ms doubling to 10 s.
    pub const fn reconnect() -> Backoff {
        Backoff::new(Duration::from_millis(200), Duration::from_secs(10))
    }

    /// One request to a store that should answer (Redis, PostgreSQL):
    /// 100 ms doubling to 5 s.
    pub const fn request() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl BackoffBuilder for Backoff {
    type Backoff = FullJitter;

    fn build(self) -> FullJitter {
        let exp = ExponentialBuilder::new()
            .with_min_delay(self.first)
            .with_max_delay(self.max.max(self.first))
            .with_factor(2.0);
        let exp = match self.attempts {
            Some(n) => exp.with_max_times(n),
            None => exp.without_max_times(),
        };
        FullJitter(exp.build())
    }
}

/// The delays of a [`Backoff`].
#[derive(Debug)]
pub struct FullJitter(ExponentialBackoff);

impl Iterator for FullJitter {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.0.next().map(|bound| bound.mul_f64(fastrand::f64()))
    }
}

impl FullJitter {
    /// The next delay; an exhausted policy keeps its bound.
    pub fn delay(&mut self) -> Duration {
        self.next().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_jittered_under_a_doubling_bound() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let mut seen_below_bound = false;
        for _ in 0..50 {
            let delays: Vec<Duration> = b.build().take(6).collect();
            let bounds = [100, 200, 400, 800, 800, 800];
            for (d, bound) in delays.iter().zip(bounds) {
                assert!(*d <= Duration::from_millis(bound), "{d:?} over {bound} ms");
                seen_below_bound |= *d < Duration::from_millis(bound / 2);
            }
        }
        assert!(seen_below_bound, "full jitter reaches below half the bound");
    }

    #[test]
    fn a_retry_limit_ends_the_delays() {
        let b = Backoff::request().with_retries(3);
        assert_eq!(b.build().count(), 3);
        assert!(Backoff::reconnect().build().nth(1000).is_some());
    }
}
