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

use futures::future::BoxFuture;

use crate::config::{EventLogConfig, ReceiverConfig};
use crate::hubspot::WebhookEvent;
use crate::telemetry::Metrics;

/// An event as stored in the log, with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub seq: u64,
    pub event: WebhookEvent,
    /// When the log stored it (epoch milliseconds, this host's clock); `None` for events of an
    /// embedded log written before the time was kept.
    pub appended_at_ms: Option<i64>,
}

/// What an append did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Events newly stored.
    pub appended: usize,
    /// Events already seen (same delivery identity), not stored again.
    pub duplicates: usize,
}

/// `append` refused events because the log holds as much as it is allowed to. Events of the same
/// call may have been stored before the limit was reached; they are duplicates when the sender
/// retries, so answering the whole batch with a retry request loses nothing.
#[derive(Debug, thiserror::Error)]
#[error("the event log is full: {0}")]
pub struct LogFull(pub String);

/// Durable storage of webhook events.
pub trait EventLog: Send + Sync {
    /// Stores the events durably (on disk, fsync'd) before returning; duplicates of events
    /// already seen are dropped. Concurrent appends may share one fsync. Fails with [`LogFull`]
    /// (findable with `downcast_ref`) when the log's size limit is reached.
    fn append(&self, events: Vec<WebhookEvent>) -> BoxFuture<'_, anyhow::Result<AppendOutcome>>;
    /// Up to `max` unreleased events, oldest first. With a log shared by several receivers,
    /// the events this instance holds (taken by an earlier call and not released) and, up to
    /// `max`, events no instance holds; never an event another instance holds.
    fn pending(&self, max: usize) -> BoxFuture<'_, anyhow::Result<Vec<StoredEvent>>>;
    /// Removes delivered events; released events are never returned by `pending` again.
    fn release(&self, seqs: Vec<u64>) -> BoxFuture<'_, anyhow::Result<()>>;
    /// Number of unreleased events (of every instance sharing the log).
    fn pending_count(&self) -> BoxFuture<'_, anyhow::Result<u64>>;
    /// How long the oldest unreleased event has been in the log; `None` when there is none.
    fn oldest_pending_age(&self) -> BoxFuture<'_, anyhow::Result<Option<Duration>>>;
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
