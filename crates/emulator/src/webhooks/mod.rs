//! Webhook delivery as HubSpot does it: events gathered for a short flush delay, sent in signed
//! batches of at most 100, at most 10 requests in flight, a 5-second timeout, and retries with
//! growing delays for any failure. On request, batches are delivered twice or out of order.
//! What is sent, and where, follows the app's webhook configuration (`settings`).

pub mod settings;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use crate::clock::now_ms;
use crate::config::{EmulatorConfig, LegacySignatureVersion, RetrySchedule};
use hubspot::WebhookEvent;
use hubspot::signature::{
    HEADER_SIGNATURE, HEADER_SIGNATURE_V3, HEADER_SIGNATURE_VERSION, HEADER_TIMESTAMP, sign_v1, sign_v2, sign_v3,
};
use settings::SharedWebhooks;

pub const USER_AGENT: &str = "HubSpot Connect 2.0 (http://dev.hubspot.com/) - WebhooksExecutorDaemon";
pub const MAX_BATCH_EVENTS: usize = 100;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_ATTEMPTS: u32 = 10;
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// HubSpot spreads its retries over a day: doubling from this, the nine waits add up to 24 h.
const FIRST_REALTIME_RETRY_DELAY: Duration = Duration::from_secs(86_400 / 511);
/// How long changes gather before a batch goes out.
const FLUSH_DELAY: Duration = Duration::from_millis(75);
/// With reordering on, each request waits up to this long, so later batches can overtake.
const MAX_REORDER_JITTER_MS: u64 = 200;
const ATTEMPT_LOG_CAPACITY: usize = 10_000;

/// How webhooks are delivered (the target URL and concurrency come from the app's settings).
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    pub client_secret: String,
    pub legacy_signature: LegacySignatureVersion,
    pub duplicate_rate: f64,
    pub reorder: bool,
    pub retry_schedule: RetrySchedule,
}

impl DeliverySettings {
    pub fn from_config(config: &EmulatorConfig) -> Self {
        Self {
            client_secret: config.client_secret.clone(),
            legacy_signature: config.legacy_signature_version,
            duplicate_rate: config.duplicate_rate,
            reorder: config.reorder,
            retry_schedule: config.webhook_retry_schedule,
        }
    }
}

/// Where the store puts events: counted as pending from the moment they exist.
pub struct EventQueue {
    tx: mpsc::UnboundedSender<WebhookEvent>,
    stats: Arc<DeliveryStats>,
}

impl EventQueue {
    pub fn new(tx: mpsc::UnboundedSender<WebhookEvent>, stats: Arc<DeliveryStats>) -> Self {
        Self { tx, stats }
    }

    pub fn push(&self, event: WebhookEvent) {
        self.stats.with(|s| s.pending += 1);
        if self.tx.send(event).is_err() {
            // Delivery has stopped: the emulator is shutting down.
            self.stats.with(|s| s.pending -= 1);
        }
    }
}

/// Delivery counters, shown by `GET /_emulator/webhooks`.
#[derive(Default)]
pub struct DeliveryStats {
    inner: Mutex<StatsInner>,
}

#[derive(Default)]
struct StatsInner {
    pending: u64,
    delivered: u64,
    failed_attempts: u64,
    abandoned: u64,
    log: VecDeque<Value>,
}

impl DeliveryStats {
    fn with<R>(&self, f: impl FnOnce(&mut StatsInner) -> R) -> R {
        f(&mut self.inner.lock().expect("webhook stats lock"))
    }

    pub fn snapshot(&self) -> Value {
        self.with(|s| {
            json!({
                "pending": s.pending,
                "delivered": s.delivered,
                "failedAttempts": s.failed_attempts,
                "abandoned": s.abandoned,
                "log": s.log,
            })
        })
    }

    fn record_attempt(&self, batch_size: usize, attempt_number: u32, status: Value) {
        self.with(|s| {
            if s.log.len() == ATTEMPT_LOG_CAPACITY {
                s.log.pop_front();
            }
            s.log.push_back(json!({ "batchSize": batch_size, "attemptNumber": attempt_number, "status": status }));
        });
    }
}

struct Deliverer {
    settings: DeliverySettings,
    app: SharedWebhooks,
    client: reqwest::Client,
    in_flight: InFlight,
    stats: Arc<DeliveryStats>,
}

/// Counts requests in flight against the app's current `maxConcurrentRequests`.
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    freed: Notify,
}

impl InFlight {
    async fn acquire(&self, limit: impl Fn() -> usize) -> InFlightPermit<'_> {
        loop {
            let freed = self.freed.notified();
            {
                let mut count = self.count.lock().expect("in-flight lock");
                if *count < limit() {
                    *count += 1;
                    return InFlightPermit(self);
                }
            }
            freed.await;
        }
    }
}

struct InFlightPermit<'a>(&'a InFlight);

impl Drop for InFlightPermit<'_> {
    fn drop(&mut self) {
        *self.0.count.lock().expect("in-flight lock") -= 1;
        self.0.freed.notify_waiters();
    }
}

/// Takes events from the store and delivers them until the store's side closes (or the task is
/// aborted, which also aborts every delivery under way).
pub async fn run(
    settings: DeliverySettings,
    app: SharedWebhooks,
    mut rx: mpsc::UnboundedReceiver<WebhookEvent>,
    stats: Arc<DeliveryStats>,
) {
    // A redirect is an answer other than 2xx, so it is a failed delivery, not a new target.
    let client = match reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; no webhooks will be sent");
            return;
        }
    };
    let deliverer = Arc::new(Deliverer { settings, app, client, in_flight: InFlight::default(), stats });
    let mut deliveries = JoinSet::new();
    while let Some(first) = rx.recv().await {
        tokio::time::sleep(FLUSH_DELAY).await;
        let mut events = vec![first];
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        let mut batches: Vec<Vec<WebhookEvent>> = events.chunks(MAX_BATCH_EVENTS).map(<[_]>::to_vec).collect();
        if deliverer.settings.reorder {
            let mut rng = rand::rng();
            for batch in &mut batches {
                batch.shuffle(&mut rng);
            }
            batches.shuffle(&mut rng);
        }
        for batch in batches {
            deliveries.spawn(deliverer.clone().deliver(batch));
        }
        while deliveries.try_join_next().is_some() {}
    }
    while deliveries.join_next().await.is_some() {}
}

enum Outcome {
    Acknowledged,
    Failed(Value),
}

impl Deliverer {
    /// Delivers one batch (retrying), then once more if the duplicate dice say so.
    async fn deliver(self: Arc<Self>, batch: Vec<WebhookEvent>) {
        let size = batch.len() as u64;
        let delivered = self.deliver_with_retries(batch.clone()).await;
        let duplicate = delivered && rand::rng().random_bool(self.settings.duplicate_rate.clamp(0.0, 1.0));
        if duplicate {
            // Counted again while the second delivery is under way.
            self.stats.with(|s| s.pending += size);
        }
        self.stats.with(|s| s.pending -= size);
        if duplicate {
            self.deliver_with_retries(batch).await;
            self.stats.with(|s| s.pending -= size);
        }
    }

    /// Sends until acknowledged or out of attempts; true when acknowledged.
    async fn deliver_with_retries(&self, mut batch: Vec<WebhookEvent>) -> bool {
        let mut attempt: u32 = batch.first().map_or(0, |e| e.attempt_number);
        loop {
            for event in &mut batch {
                event.attempt_number = attempt;
            }
            if self.settings.reorder {
                let jitter = rand::rng().random_range(0..=MAX_REORDER_JITTER_MS);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            let outcome = {
                let _permit = self.in_flight.acquire(|| self.app_settings().1).await;
                self.send(&batch).await
            };
            match outcome {
                Outcome::Acknowledged => {
                    self.stats.record_attempt(batch.len(), attempt, json!(200));
                    self.stats.with(|s| s.delivered += 1);
                    return true;
                }
                Outcome::Failed(status) => {
                    self.stats.record_attempt(batch.len(), attempt, status.clone());
                    self.stats.with(|s| s.failed_attempts += 1);
                    attempt += 1;
                    if attempt >= MAX_ATTEMPTS {
                        self.stats.with(|s| s.abandoned += 1);
                        tracing::warn!(
                            events = batch.len(),
                            attempts = attempt,
                            last_status = %status,
                            "webhook batch abandoned after the last retry"
                        );
                        return false;
                    }
                    tracing::debug!(events = batch.len(), attempt, last_status = %status, "webhook delivery failed; retrying");
                    tokio::time::sleep(retry_delay(self.settings.retry_schedule, attempt)).await;
                }
            }
        }
    }

    /// The app's current target URL (in the form it is requested and signed in: `http://host`
    /// is requested as `http://host/`) and `maxConcurrentRequests`.
    fn app_settings(&self) -> (Option<String>, usize) {
        let app = self.app.lock().expect("webhook settings lock");
        let url = app.target_url.as_ref().map(|u| reqwest::Url::parse(u).map(|u| u.to_string()).unwrap_or(u.clone()));
        (url, app.max_concurrent_requests)
    }

    async fn send(&self, batch: &[WebhookEvent]) -> Outcome {
        let body = match serde_json::to_vec(batch) {
            Ok(b) => b,
            Err(e) => return Outcome::Failed(json!(format!("error: {e}"))),
        };
        // The target may have been removed since the events were made.
        let Some(url) = self.app_settings().0 else { return Outcome::Failed(json!("no target URL")) };
        let s = &self.settings;
        let timestamp = now_ms();
        let (legacy, version) = match s.legacy_signature {
            LegacySignatureVersion::V1 => (sign_v1(&s.client_secret, &body), "v1"),
            LegacySignatureVersion::V2 => (sign_v2(&s.client_secret, "POST", &url, &body), "v2"),
        };
        let v3 = sign_v3(&s.client_secret, "POST", &url, &body, timestamp);
        let sent = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER_SIGNATURE, legacy)
            .header(HEADER_SIGNATURE_VERSION, version)
            .header(HEADER_SIGNATURE_V3, v3)
            .header(HEADER_TIMESTAMP, timestamp.to_string())
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Outcome::Acknowledged,
            Ok(response) => Outcome::Failed(json!(response.status().as_u16())),
            Err(e) if e.is_timeout() => Outcome::Failed(json!("timeout")),
            Err(_) => Outcome::Failed(json!("error")),
        }
    }
}

/// Wait before attempt `attempt` (1 = the first retry). Compressed: 1 s, 2 s, 4 s, ... at most
/// 30 s. Real time: about 2.8 minutes doubling each time, the last retry a day after the first
/// attempt.
fn retry_delay(schedule: RetrySchedule, attempt: u32) -> Duration {
    let doubling = 1 << attempt.saturating_sub(1).min(16);
    match schedule {
        RetrySchedule::Compressed => FIRST_RETRY_DELAY.saturating_mul(doubling).min(MAX_RETRY_DELAY),
        RetrySchedule::Realtime => FIRST_REALTIME_RETRY_DELAY.saturating_mul(doubling),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_are_capped() {
        let delays: Vec<u64> = (1..=9).map(|a| retry_delay(RetrySchedule::Compressed, a).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30, 30, 30]);
        let day: Duration = (1..MAX_ATTEMPTS).map(|a| retry_delay(RetrySchedule::Realtime, a)).sum();
        assert!(day <= Duration::from_secs(86_400) && day > Duration::from_secs(86_000), "{day:?}");
        assert_eq!(retry_delay(RetrySchedule::Realtime, 1), Duration::from_secs(169));
    }
}
