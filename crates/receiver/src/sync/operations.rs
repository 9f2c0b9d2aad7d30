//! Operator actions on deliveries, shared by the admin API and the CLI that calls it: redrive
//! dead letters, discard them, replay what a destination took since a time. Both redrive and
//! replay send the objects' current state, read again from HubSpot with only the mapped
//! properties, through the same delivery path as the drain.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::deadletter::{DeadLetter, DeadLetterFilter};
use super::plan::{self, Hint, ObjectHint, Op, Record, TypePlan};
use super::{Destination, MappingRuntime, RECORDS_PER_DELIVERY, StepError, Worker};
use crate::time::now_ms;

/// Why an operation could not be done.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// The request names something that does not exist or makes no sense.
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// What a redrive did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedriveReport {
    /// Dead letters the redrive was about.
    pub selected: usize,
    /// Delivered, and removed from the store.
    pub delivered: usize,
    /// The destination already had this state or a newer one: removed.
    pub already_delivered: usize,
    /// Refused again: kept, with the new reason.
    pub refused: usize,
    /// Not delivered (HubSpot or the destination unavailable): kept, with the new reason.
    pub failed: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// Objects whose current state was sent again.
    pub delivered: usize,
    /// Refused by the destination: dead-lettered.
    pub refused: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Worker {
    /// Offers the dead letters matching `filter` again, with their objects' current state.
    pub async fn redrive(&self, filter: &DeadLetterFilter) -> Result<RedriveReport, OperationError> {
        let letters = self.dead_letters.list(filter, usize::MAX).await?;
        let mut report = RedriveReport { selected: letters.len(), ..Default::default() };
        let mut by_destination: BTreeMap<(String, String), Vec<DeadLetter>> = BTreeMap::new();
        for letter in letters {
            by_destination.entry((letter.mapping.clone(), letter.checkpoint_id.clone())).or_default().push(letter);
        }
        for ((mapping, checkpoint_id), letters) in by_destination {
            let target = self.mappings.iter().find(|m| m.config.name == mapping).and_then(|runtime| {
                runtime.destinations.iter().find(|d| d.checkpoint_id == checkpoint_id).map(|d| (runtime, d))
            });
            let Some((runtime, destination)) = target else {
                let reason = format!("mapping {mapping}: the destination is no longer configured");
                self.keep(&letters, &reason, &mut report).await?;
                continue;
            };
            for chunk in letters.chunks(RECORDS_PER_DELIVERY) {
                let current = match self.current_records(runtime, chunk.iter().map(|l| &l.record)).await {
                    Ok(records) => records,
                    Err(reason) => {
                        self.keep(chunk, &reason.to_string(), &mut report).await?;
                        continue;
                    }
                };
                let fresh = self.checkpoints.fresh(&checkpoint_id, &current).await?;
                let stale: Vec<Record> = current.into_iter().filter(|r| !fresh.contains(r)).collect();
                self.dead_letters.resolve(&checkpoint_id, &stale).await?;
                report.already_delivered += stale.len();
                match self.deliver(&mapping, destination, &fresh).await {
                    Ok(outcome) => {
                        report.delivered += outcome.delivered;
                        report.refused += outcome.dead_lettered;
                    }
                    Err(failure) => {
                        // Whatever was delivered before the failure has been removed already.
                        let ids: Vec<i64> = chunk.iter().map(|l| l.id).collect();
                        let left =
                            self.dead_letters.list(&DeadLetterFilter { ids, ..Default::default() }, usize::MAX).await?;
                        self.keep(&left, &failure.to_string(), &mut report).await?;
                    }
                }
            }
        }
        Ok(report)
    }

    /// Removes the dead letters matching `filter`; returns how many.
    pub async fn discard(&self, filter: &DeadLetterFilter) -> Result<usize, OperationError> {
        let letters = self.dead_letters.list(filter, usize::MAX).await?;
        for letter in &letters {
            tracing::warn!(id = letter.id, mapping = %letter.mapping, sink = %letter.sink, object_id = %letter.object_id, "dead letter discarded");
        }
        Ok(self.dead_letters.remove(letters.iter().map(|l| l.id).collect()).await?)
    }

    /// Sends again, to the destinations `sink` of `mapping` (all of them when `None`), the
    /// current state of every object they took at or after `since_ms`, whether or not they
    /// already have it.
    pub async fn replay(
        &self,
        mapping: &str,
        sink: Option<&str>,
        since_ms: i64,
    ) -> Result<ReplayReport, OperationError> {
        let runtime = self
            .mappings
            .iter()
            .find(|m| m.config.name == mapping)
            .ok_or_else(|| OperationError::BadRequest(format!("no mapping {mapping}")))?;
        let destinations: Vec<&Destination> =
            runtime.destinations.iter().filter(|d| sink.is_none_or(|s| s == d.label)).collect();
        if destinations.is_empty() {
            let sink = sink.unwrap_or_default();
            return Err(OperationError::BadRequest(format!("mapping {mapping} has no destination {sink}")));
        }
        let mut report = ReplayReport::default();
        for destination in destinations {
            let mut after = None;
            loop {
                let ids = self
                    .checkpoints
                    .delivered_since(mapping, &destination.checkpoint_id, since_ms, after, RECORDS_PER_DELIVERY)
                    .await?;
                let Some(last) = ids.last().cloned() else { break };
                after = Some(last);
                let now = now_ms();
                let changed = ids.into_iter().map(|id| (id, Hint::Changed, now));
                let records = match self.read_current(runtime, changed).await {
                    Ok(records) => records,
                    Err(reason) => {
                        report.errors.push(format!("{}: {reason}", destination.label));
                        break;
                    }
                };
                match self.deliver(mapping, destination, &records).await {
                    Ok(outcome) => {
                        report.delivered += outcome.delivered;
                        report.refused += outcome.dead_lettered;
                    }
                    Err(failure) => {
                        report.errors.push(failure.to_string());
                        break;
                    }
                }
            }
            tracing::info!(mapping, sink = %destination.label, since_ms, delivered = report.delivered, "replay done");
        }
        Ok(report)
    }

    /// The current state of the objects of `records`: upserts are read again from HubSpot,
    /// deletions stay deletions of the same time.
    async fn current_records(
        &self,
        runtime: &MappingRuntime,
        records: impl Iterator<Item = &Record>,
    ) -> Result<Vec<Record>, StepError> {
        let now = now_ms();
        let hints = records.map(|r| match r.op {
            Op::Upsert => (r.object_id.clone(), Hint::Changed, now),
            Op::Delete => (r.object_id.clone(), Hint::Deleted, r.updated_at_ms().unwrap_or(now)),
        });
        self.read_current(runtime, hints).await
    }

    /// Builds records of `objects` (id, hint, when) the way the drain does: those hinted as
    /// changed are read from HubSpot; missing ones become deletions at that time.
    async fn read_current(
        &self,
        runtime: &MappingRuntime,
        objects: impl Iterator<Item = (String, Hint, i64)>,
    ) -> Result<Vec<Record>, StepError> {
        let mut type_plan = TypePlan::default();
        for (id, hint, occurred_at) in objects {
            type_plan.objects.insert(id, ObjectHint { hint, occurred_at });
        }
        let config = &runtime.config;
        let ids = type_plan.ids_to_fetch();
        let fetched = if ids.is_empty() {
            Vec::new()
        } else {
            self.client
                .batch_read(&config.records.object_type, &config.hubspot_properties(), &ids)
                .await
                .map_err(|e| StepError::hubspot(&config.records.object_type, e))?
        };
        let associations = self.read_associations(&config.records.object_type, &[config], &fetched).await?;
        let records = plan::build_records(config, &type_plan, &fetched, &associations);
        self.checkpoints.fill_deleted_keys(records).await.map_err(StepError::Checkpoints)
    }

    /// Keeps `letters` with `reason` as the last failure.
    async fn keep(&self, letters: &[DeadLetter], reason: &str, report: &mut RedriveReport) -> anyhow::Result<()> {
        tracing::warn!(letters = letters.len(), reason, "redrive failed; dead letters kept");
        self.dead_letters.note_failure(letters.iter().map(|l| l.id).collect(), reason, now_ms()).await?;
        report.failed += letters.len();
        report.errors.push(reason.to_string());
        Ok(())
    }
}
