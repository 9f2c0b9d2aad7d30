//! Exponential backoff with jitter for the workers' retries, and the loop of the workers that
//! drain a store queue step by step.

use std::future::Future;
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

/// Runs a queue worker's steps until `shutdown`: the next step at once after one that settled
/// something, after `idle` or a wake-up (`woken`) after one that found nothing, and after a
/// backoff (at least what `retry_after` asks) after one that failed, its work left queued.
pub async fn run_steps<E: std::fmt::Display, Step: Future<Output = Result<usize, E>>, Woken: Future<Output = ()>>(
    worker: &'static str,
    shutdown: impl Future<Output = ()>,
    idle: Duration,
    mut step: impl FnMut() -> Step,
    retry_after: impl Fn(&E) -> Option<Duration>,
    woken: impl Fn() -> Woken,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = Backoff::default();
    loop {
        let outcome = tokio::select! {
            _ = &mut shutdown => return,
            outcome = step() => outcome,
        };
        let wait = match outcome {
            Ok(0) => {
                backoff.reset();
                idle
            }
            Ok(_) => {
                backoff.reset();
                continue;
            }
            Err(error) => {
                let wait = backoff.next_delay(retry_after(&error));
                tracing::warn!(worker, error = %error, retry_in_ms = wait.as_millis() as u64, "step incomplete; its work stays queued");
                wait
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(wait) => {}
            _ = woken() => {}
        }
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
