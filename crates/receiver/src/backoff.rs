//! Exponential backoff with jitter for the workers' retries.

use std::time::Duration;

use rand::Rng;

/// Delays between retries: `initial` doubling up to `max`, each jittered down to half so that
/// receivers restarted together do not retry in step. A destination's own `Retry-After` is
/// never undercut.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, failures: 0 }
    }

    /// The delay before the next attempt after one more failure; at least `at_least`.
    pub fn next_delay(&mut self, at_least: Option<Duration>) -> Duration {
        let ceiling = self.initial.saturating_mul(1 << self.failures.min(20)).min(self.max);
        self.failures = self.failures.saturating_add(1);
        let jittered = ceiling.mul_f64(rand::rng().random_range(0.5..=1.0));
        jittered.max(at_least.unwrap_or_default())
    }

    /// After a success the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_within_jitter_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let ceilings = [100, 200, 400, 800, 1000, 1000];
        for ceiling in ceilings {
            let delay = backoff.next_delay(None).as_millis();
            assert!((ceiling / 2..=ceiling).contains(&delay), "{delay} ms not within [{}, {ceiling}]", ceiling / 2);
        }
        backoff.reset();
        assert!(backoff.next_delay(None) <= Duration::from_millis(100));
    }

    #[test]
    fn never_undercuts_retry_after() {
        let mut backoff = Backoff::default();
        assert_eq!(backoff.next_delay(Some(Duration::from_secs(7))), Duration::from_secs(7));
    }
}
