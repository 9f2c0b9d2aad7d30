//! Delivery to one destination: what it has not seen yet is offered in parts of at most
//! `RECORDS_PER_DELIVERY`; a refused part is split until the refused records stand alone, and
//! those go to the dead-letter store.

use std::collections::VecDeque;

use tracing::Instrument;

use super::error::StepError;
use super::{Destination, RECORDS_PER_DELIVERY, Record, SinkError, Worker};
use crate::metrics::SinkLabels;
use crate::time::now_ms;

/// What became of the records offered to one destination.
#[derive(Debug, Default)]
pub(super) struct Delivered {
    pub(super) delivered: usize,
    pub(super) dead_lettered: usize,
}

impl Worker {
    /// Delivers to one destination the records it has not seen yet.
    pub(super) async fn deliver_fresh(
        &self,
        mapping: &str,
        destination: &Destination,
        records: &[Record],
    ) -> Result<(), StepError> {
        let fresh =
            self.checkpoints.fresh(&destination.checkpoint_id, records).await.map_err(StepError::Checkpoints)?;
        self.deliver(mapping, destination, &fresh).await.map(|_| ())
    }

    /// Delivers `records` to one destination, noting each delivery. When the destination
    /// refuses a batch, the batch is split in halves until the refused records stand alone
    /// (or split around the record the destination names): those go to the dead-letter store
    /// and the others are delivered. `Ok` when every record is delivered or dead-lettered; a
    /// temporary failure stops there (what was delivered stays delivered, the rest is offered
    /// again).
    pub(super) async fn deliver(
        &self,
        mapping: &str,
        destination: &Destination,
        records: &[Record],
    ) -> Result<Delivered, StepError> {
        let labels = SinkLabels { mapping: mapping.to_string(), sink: destination.label.clone() };
        let mut outcome = Delivered::default();
        let mut parts: VecDeque<&[Record]> = records.chunks(RECORDS_PER_DELIVERY).collect();
        while let Some(part) = parts.pop_front() {
            if part.is_empty() {
                continue;
            }
            let error = match send(mapping, destination, part).await {
                Ok(()) => {
                    self.note_delivered(mapping, destination, part).await?;
                    outcome.delivered += part.len();
                    continue;
                }
                Err(error) => error,
            };
            self.metrics.sink_failures.get_or_create(&labels).inc();
            if !error.is_permanent() {
                tracing::warn!(mapping, sink = %destination.label, error = %error, records = part.len(), "delivery failed");
                return Err(StepError::Destination {
                    mapping: mapping.to_string(),
                    destination: destination.label.clone(),
                    error,
                });
            }
            // The record the destination names, or the only one there is.
            let refused = match (&error, part) {
                (SinkError::Refused { record, .. }, _) if *record < part.len() => Some(*record),
                (_, [_]) => Some(0),
                _ => None,
            };
            match refused {
                Some(position) => {
                    self.dead_letter(mapping, destination, &part[position], &error).await?;
                    outcome.dead_lettered += 1;
                    // What the destination may have taken of the rest is offered again.
                    parts.push_front(&part[position + 1..]);
                    parts.push_front(&part[..position]);
                }
                None => {
                    tracing::info!(mapping, sink = %destination.label, error = %error, records = part.len(), "destination refused a batch; splitting it to find the refused records");
                    let (first, second) = part.split_at(part.len() / 2);
                    parts.push_front(second);
                    parts.push_front(first);
                }
            }
        }
        Ok(outcome)
    }

    /// Notes that `destination` has `records`: counted, checkpointed, and no longer dead letters
    /// there.
    async fn note_delivered(
        &self,
        mapping: &str,
        destination: &Destination,
        records: &[Record],
    ) -> Result<(), StepError> {
        let labels = SinkLabels { mapping: mapping.to_string(), sink: destination.label.clone() };
        self.metrics.records_delivered.get_or_create(&labels).inc_by(records.len() as u64);
        self.metrics.activity.delivered(mapping, records.len());
        self.checkpoints.mark_delivered(&destination.checkpoint_id, records).await.map_err(StepError::Checkpoints)?;
        self.dead_letters.resolve(&destination.checkpoint_id, records).await.map_err(StepError::DeadLetters)?;
        Ok(())
    }

    /// Keeps `record`, which `destination` refused for good, in the dead-letter store.
    async fn dead_letter(
        &self,
        mapping: &str,
        destination: &Destination,
        record: &Record,
        error: &SinkError,
    ) -> Result<(), StepError> {
        tracing::error!(mapping, sink = %destination.label, object_id = %record.object_id, error = %error, "destination refused a record; dead-lettered");
        self.dead_letters
            .add(&destination.label, &destination.checkpoint_id, record, &error.to_string(), now_ms())
            .await
            .map_err(StepError::DeadLetters)?;
        let labels = SinkLabels { mapping: mapping.to_string(), sink: destination.label.clone() };
        self.metrics.records_dead_lettered.get_or_create(&labels).inc();
        Ok(())
    }
}

/// Offers `records` to `destination` once, in a `sync.deliver` span that notes the outcome.
async fn send(mapping: &str, destination: &Destination, records: &[Record]) -> Result<(), SinkError> {
    let span = tracing::debug_span!(
        "sync.deliver",
        mapping,
        sink = %destination.label,
        records = records.len(),
        outcome = tracing::field::Empty,
    );
    let delivered = destination.sink.deliver(records).instrument(span.clone()).await;
    span.record(
        "outcome",
        match &delivered {
            Ok(()) => "delivered",
            Err(error) if error.is_permanent() => "refused",
            Err(_) => "failed",
        },
    );
    delivered
}
