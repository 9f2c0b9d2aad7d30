//! The durable event log between the webhook receiver and the sync worker. A batch is
//! acknowledged to HubSpot only after `append` returned, i.e. after it is on disk; an entry
//! leaves the log only after every destination took it (`release`).
//!
//! Two backends: [`EmbeddedEventLog`] (one SQLite file on the receiver's volume, one receiver
//! pod) and [`JetStreamEventLog`] (a NATS JetStream stream that several receiver pods share).

pub mod embedded;
pub mod jetstream;

pub use embedded::EmbeddedEventLog;
pub use jetstream::JetStreamEventLog;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::value::RawValue;

use crate::metrics::Metrics;
use hubspot::{DeliveryIdentity, WebhookEvent};
use model::config::{EventLogConfig, ReceiverConfig};

/// An event as stored in the log, with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub seq: u64,
    pub event: WebhookEvent,
    /// When the log stored it (epoch milliseconds, this host's clock); `None` for events of an
    /// embedded log written before the time was kept.
    pub appended_at_ms: Option<i64>,
}

/// An event ready for the log: its delivery identity and its JSON. Events of a webhook request
/// keep the text HubSpot sent: the log stores it as it came, and the receiver spends no time
/// writing it out again.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedEvent {
    pub identity: DeliveryIdentity,
    /// One JSON object, UTF-8.
    pub json: Bytes,
}

impl EncodedEvent {
    pub fn encode(event: &WebhookEvent) -> serde_json::Result<EncodedEvent> {
        Ok(EncodedEvent { identity: event.delivery_identity(), json: Bytes::from(serde_json::to_vec(event)?) })
    }

    /// The events of a webhook request body, a JSON array of events, each one checked to read
    /// as a [`WebhookEvent`] (as the worker will read it) and kept as a slice of `body`. An
    /// event's `occurredAt` must be a time HubSpot can send: not before 1970, not after
    /// `latest_occurred_at_ms` (the end of the signature's window: HubSpot sends what already
    /// happened).
    pub fn split_batch(body: &Bytes, latest_occurred_at_ms: i64) -> Result<Vec<EncodedEvent>, BatchError> {
        let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(BatchError::NotAnArray)?;
        items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let event: WebhookEvent =
                    serde_json::from_str(item.get()).map_err(|error| BatchError::NotAnEvent { index, error })?;
                if !(0..=latest_occurred_at_ms).contains(&event.occurred_at) {
                    return Err(BatchError::OccurredAtOutOfBounds { index, occurred_at: event.occurred_at });
                }
                Ok(EncodedEvent { identity: event.delivery_identity(), json: body.slice_ref(item.get().as_bytes()) })
            })
            .collect()
    }
}

/// Why a webhook request body is not a batch of events.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("expected a JSON array of webhook events: {0}")]
    NotAnArray(serde_json::Error),
    #[error("expected a JSON array of webhook events; event {index} is not one: {error}")]
    NotAnEvent { index: usize, error: serde_json::Error },
    #[error("event {index} has occurredAt {occurred_at}, which is before 1970 or in the future")]
    OccurredAtOutOfBounds { index: usize, occurred_at: i64 },
}

impl BatchError {
    /// Where the batch went wrong, without the value serde quotes: for log lines.
    pub fn without_values(&self) -> String {
        use hubspot::error::json_error_without_values;
        match self {
            BatchError::NotAnArray(error) => format!("not a JSON array: {}", json_error_without_values(error)),
            BatchError::NotAnEvent { index, error } => {
                format!("event {index} is not one: {}", json_error_without_values(error))
            }
            // A time, not a value of a record.
            BatchError::OccurredAtOutOfBounds { .. } => self.to_string(),
        }
    }
}

/// What an append did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Events newly stored.
    pub appended: usize,
    /// Events already seen (same delivery identity), not stored again.
    pub duplicates: usize,
}

/// Why an event log call failed, for a caller that answers each cause its own way (the
/// webhook handler asks HubSpot to retry in any case, and says which of these it was).
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    /// `append` refused events because the log holds as much as it is allowed to. Events of the
    /// same call may have been stored before the limit was reached; they are duplicates when
    /// the sender retries, so answering the whole batch with a retry request loses nothing.
    #[error("the event log is full: {reason}")]
    Full { reason: String },
    /// The log is out of reach: its writer stopped, its server is not connected or did not
    /// answer in time.
    #[error("{0}")]
    Unavailable(String),
    /// The log's storage failed the call: a SQLite statement, the JetStream server's answer, a
    /// stored event that does not read back.
    #[error("{context}: {cause}")]
    Storage { context: String, cause: Box<dyn std::error::Error + Send + Sync> },
}

impl EventLogError {
    /// A failure of the storage while doing `context`.
    pub fn storage(context: impl Into<String>, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        EventLogError::Storage { context: context.into(), cause: cause.into() }
    }
}

/// The result of an event log call.
pub type Result<T, E = EventLogError> = std::result::Result<T, E>;

/// Durable storage of webhook events.
pub trait EventLog: Send + Sync {
    /// Stores the events durably (on disk, fsync'd) before returning; duplicates of events
    /// already seen are dropped. Concurrent appends may share one fsync. Fails with
    /// [`EventLogError::Full`] when the log's size limit is reached.
    fn append_encoded(&self, events: Vec<EncodedEvent>) -> BoxFuture<'_, Result<AppendOutcome>>;
    /// [`append_encoded`](EventLog::append_encoded) for events at hand.
    fn append(&self, events: Vec<WebhookEvent>) -> BoxFuture<'_, Result<AppendOutcome>> {
        Box::pin(async move {
            let encoded = events.iter().map(EncodedEvent::encode).collect::<serde_json::Result<Vec<_>>>();
            self.append_encoded(encoded.map_err(|e| EventLogError::storage("encoding webhook events", e))?).await
        })
    }
    /// Up to `max` unreleased events, oldest first. With a log shared by several receivers,
    /// the events this instance holds (taken by an earlier call and not released) and, up to
    /// `max`, events no instance holds; never an event another instance holds.
    fn pending(&self, max: usize) -> BoxFuture<'_, Result<Vec<StoredEvent>>>;
    /// Removes delivered events; released events are never returned by `pending` again.
    fn release(&self, seqs: Vec<u64>) -> BoxFuture<'_, Result<()>>;
    /// Number of unreleased events (of every instance sharing the log).
    fn pending_count(&self) -> BoxFuture<'_, Result<u64>>;
    /// How long the oldest unreleased event has been in the log; `None` when there is none.
    fn oldest_pending_age(&self) -> BoxFuture<'_, Result<Option<Duration>>>;
    /// Whether the log can store events now, by storing something that leaves no trace (for
    /// `/readyz`): a receiver whose log cannot take events must not be sent any.
    fn check_writable(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.pending_count().await.map(|_| ()) })
    }
    /// Resolves when new events may be pending (after an append), or spuriously.
    fn notified(&self) -> BoxFuture<'_, ()>;
    /// Hands back what this instance holds, so that other instances sharing the log get it at
    /// once rather than after a timeout. Called when the receiver stops.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Opens the event log `config` chooses.
pub async fn open(config: &ReceiverConfig) -> anyhow::Result<Arc<dyn EventLog>> {
    Ok(match &config.event_log {
        EventLogConfig::Embedded(limits) => Arc::new(EmbeddedEventLog::open_with(&config.event_log_path(), *limits)?),
        EventLogConfig::JetStream(settings) => {
            Arc::new(JetStreamEventLog::open(&jetstream::Settings::new(&config.integration, settings)).await?)
        }
    })
}

/// Sets the pending and oldest-pending-age gauges from `log`; a log that cannot answer leaves
/// them as they were.
pub async fn update_gauges(log: &dyn EventLog, metrics: &Metrics) {
    match log.pending_count().await {
        Ok(count) => {
            metrics.events_pending.set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        Err(e) => tracing::warn!(error = %e, "event log unavailable for the pending gauge"),
    }
    match log.oldest_pending_age().await {
        Ok(age) => {
            metrics.oldest_pending_age_seconds.set(age.map_or(0.0, |age| age.as_secs_f64()));
        }
        Err(e) => tracing::warn!(error = %e, "event log unavailable for the oldest-pending gauge"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_splits_into_its_events_as_sent() {
        let body = Bytes::from_static(
            br#"[ {"eventId":7,"subscriptionId":3,"portalId":62515,"occurredAt":1700000000000,"subscriptionType":"contact.creation","objectId":9,"notYetKnown":{"a":[1]}},
                  {"eventId":8,"subscriptionId":3,"portalId":62515,"occurredAt":1700000000001,"subscriptionType":"contact.deletion","objectId":9} ]"#,
        );
        let events = EncodedEvent::split_batch(&body, LATEST).unwrap();
        assert_eq!(events.len(), 2);
        let first: serde_json::Value = serde_json::from_slice(&events[0].json).unwrap();
        assert_eq!(first["notYetKnown"], serde_json::json!({"a": [1]}), "fields kept as sent");
        assert!(events[1].json.starts_with(b"{\"eventId\":8") && events[1].json.ends_with(b"}"));
        let parsed: Vec<WebhookEvent> = serde_json::from_slice(&body).unwrap();
        for (event, parsed) in events.iter().zip(&parsed) {
            assert_eq!(event.identity, parsed.delivery_identity());
            assert_eq!(serde_json::from_slice::<WebhookEvent>(&event.json).unwrap(), *parsed);
        }
    }

    #[test]
    fn a_batch_with_one_bad_event_names_it() {
        let body = Bytes::from_static(
            br#"[{"eventId":7,"subscriptionId":3,"portalId":62515,"occurredAt":1,"subscriptionType":"contact.creation"},{"eventId":"x"}]"#,
        );
        let error = EncodedEvent::split_batch(&body, LATEST).unwrap_err();
        assert!(matches!(error, BatchError::NotAnEvent { index: 1, .. }), "{error}");
        assert!(
            error.to_string().starts_with("expected a JSON array of webhook events; event 1 is not one"),
            "{error}"
        );

        for body in [&b"{}"[..], b"[1, 2", b"not json"] {
            let error = EncodedEvent::split_batch(&Bytes::copy_from_slice(body), LATEST).unwrap_err();
            assert!(matches!(error, BatchError::NotAnArray(_)), "{error}");
        }
    }

    /// The end of the signature window the tests' batches are checked against.
    const LATEST: i64 = 1_800_000_000_000;

    #[test]
    fn an_event_from_the_future_or_before_1970_is_refused() {
        let event = |at: i64| {
            format!(
                r#"{{"eventId":7,"subscriptionId":3,"portalId":62515,"occurredAt":{at},"subscriptionType":"contact.deletion","objectId":9}}"#
            )
        };
        for at in [i64::MAX, LATEST + 1, -1, i64::MIN] {
            let body = Bytes::from(format!("[{},{}]", event(1), event(at)));
            let error = EncodedEvent::split_batch(&body, LATEST).unwrap_err();
            assert!(matches!(error, BatchError::OccurredAtOutOfBounds { index: 1, .. }), "{at}: {error}");
        }
        for at in [0, LATEST] {
            assert_eq!(EncodedEvent::split_batch(&Bytes::from(format!("[{}]", event(at))), LATEST).unwrap().len(), 1);
        }
    }
}
