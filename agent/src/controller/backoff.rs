//! Exponential backoff with jitter, for retries that must not hammer a
//! runtime that is down nor march in step with other agents.

use std::time::Duration;

use rand::Rng;

/// A delay that doubles per failure from `start` up to `cap`, each one cut
/// to a random point between three quarters and all of it; `reset` after a
/// success starts over.
#[derive(Clone, Debug)]
pub struct Backoff {
    start: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub const fn new(start: Duration, cap: Duration) -> Self {
        Self {
            start,
            cap,
            failures: 0,
        }
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The delay before the next try, without jitter: `start * 2^failures`,
    /// at most `cap`.
    pub fn base(&self) -> Duration {
        exponential(self.start, self.cap, self.failures)
    }

    /// Counts a failure and returns the jittered delay before the next try.
    pub fn next_delay(&mut self) -> Duration {
        let delay = jitter(self.base());
        self.failures = self.failures.saturating_add(1);
        delay
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// `start * 2^failures`, at most `cap`.
pub fn exponential(start: Duration, cap: Duration, failures: u32) -> Duration {
    start
        .checked_mul(1u32.checked_shl(failures).unwrap_or(u32::MAX))
        .unwrap_or(cap)
        .min(cap)
}

/// A random point between three quarters of `delay` and all of it, so
/// retries spread out instead of arriving together.
pub fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(rand::rng().random_range(0.75..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const CAP: Duration = Duration::from_secs(30);

    fn within(d: Duration, base: Duration) -> bool {
        d <= base && d >= base.mul_f64(0.75)
    }

    #[test]
    fn backoff_doubles_from_its_start_up_to_its_cap_with_jitter() {
        let mut b = Backoff::new(S, CAP);
        let bases = [1, 2, 4, 8, 16, 30, 30, 30];
        for base in bases {
            let base = Duration::from_secs(base);
            assert_eq!(b.base(), base);
            let d = b.next_delay();
            assert!(within(d, base), "{d:?} not within 3/4 of {base:?}");
        }
        assert_eq!(b.failures(), 8);
    }

    #[test]
    fn backoff_resets_after_a_success() {
        let mut b = Backoff::new(S, CAP);
        for _ in 0..5 {
            b.next_delay();
        }
        assert_eq!(
            b.base(),
            Duration::from_secs(30).min(Duration::from_secs(32))
        );
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.base(), S);
        assert!(within(b.next_delay(), S));
    }

    #[test]
    fn backoff_survives_huge_failure_counts() {
        assert_eq!(exponential(S, CAP, u32::MAX), CAP);
        assert_eq!(exponential(S, CAP, 64), CAP);
    }

    #[test]
    fn jitter_spreads_delays_out() {
        let seen: std::collections::HashSet<Duration> =
            (0..50).map(|_| jitter(Duration::from_secs(8))).collect();
        assert!(seen.len() > 1, "jitter gave one value: {seen:?}");
    }
}
