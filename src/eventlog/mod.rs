//! The durable event log between the webhook receiver and the sync worker. A batch is
//! acknowledged to HubSpot only after `append` returned, i.e. after it is on disk; an entry
//! leaves the log only after every destination took it (`release`).

pub mod embedded;

pub use embedded::EmbeddedEventLog;

use futures::future::BoxFuture;

use crate::hubspot::WebhookEvent;

/// An event as stored in the log, with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub seq: u64,
    pub event: WebhookEvent,
}

/// What an append did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Events newly stored.
    pub appended: usize,
    /// Events already seen (same delivery identity), not stored again.
    pub duplicates: usize,
}

/// Durable storage of webhook events.
pub trait EventLog: Send + Sync {
    /// Stores the events durably (on disk, fsync'd) before returning; duplicates of events
    /// already seen are dropped. Concurrent appends may share one fsync.
    fn append(&self, events: Vec<WebhookEvent>) -> BoxFuture<'_, anyhow::Result<AppendOutcome>>;
    /// Up to `max` unreleased events, oldest first.
    fn pending(&self, max: usize) -> BoxFuture<'_, anyhow::Result<Vec<StoredEvent>>>;
    /// Removes delivered events; released events are never returned by `pending` again.
    fn release(&self, seqs: Vec<u64>) -> BoxFuture<'_, anyhow::Result<()>>;
    /// Number of unreleased events.
    fn pending_count(&self) -> BoxFuture<'_, anyhow::Result<u64>>;
    /// Resolves when new events may be pending (after an append), or spuriously.
    fn notified(&self) -> BoxFuture<'_, ()>;
}
