//! How often and how patiently a call is retried.

use std::time::Duration;

use rand::Rng;

/// How often and how patiently a call is retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts for 5xx, 423 and transport errors (429s wait on the budget and do not count).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Upper bound on 429 answers waited out for one call.
    pub max_rate_limited: u32,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(20),
            max_rate_limited: 30,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// How long to wait after `failures` failed attempts: exponential backoff with full jitter.
    pub(super) fn backoff(&self, failures: u32) -> Duration {
        let ceiling = self.initial_backoff.saturating_mul(1 << failures.min(16)).min(self.max_backoff);
        ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}
