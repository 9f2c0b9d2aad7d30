//! The reverse worker: drains the ingest queue, merges the records per match key, applies the
//! mapping's conflict policy, and writes HubSpot with batch upserts by the match key's
//! property. A record leaves the queue only once HubSpot accepted it or refused it for its
//! content (then it is kept in `rejected` with HubSpot's message and correlationId). Anything
//! else (429, 5xx, transport, authentication) leaves it queued for the next attempt.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::conflict::{FieldChange, Resolution, resolve};
use super::store::{Completion, QueuedRecord, Rejection, ReverseStore, WrittenValue};
use crate::backoff::run_steps;
use crate::metrics::{Metrics, OutcomeLabels};
use crate::time::{now_ms, timestamp_ms};
use hubspot::{self, HubSpotClient, UpsertInput, UpsertResult};
use model::api::mapping::ConflictPolicy;
use model::config::MappingConfig;

/// Queued records taken per step.
const RECORDS_PER_STEP: usize = 1000;
/// How long an idle worker waits for a notification before looking at the queue anyway.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// When HubSpot's daily limit is spent, retrying sooner than this only burns calls.
const DAILY_LIMIT_WAIT: Duration = Duration::from_secs(300);

/// The records of one mapping for one match key, merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged {
    pub key: String,
    /// HubSpot property → (value, when the external system changed it).
    pub values: BTreeMap<String, (String, i64)>,
    /// Queue positions of the records merged here.
    pub seqs: Vec<u64>,
}

/// Merges the queued records of one mapping per match key. Per property the newest change wins
/// (by the record's change time, then by arrival); a record that leaves a property out does
/// not clear it.
pub fn coalesce(records: &[QueuedRecord]) -> Vec<Merged> {
    let mut ordered: Vec<&QueuedRecord> = records.iter().collect();
    ordered.sort_by_key(|r| (r.record.changed_at, r.seq));
    let mut merged: BTreeMap<&str, Merged> = BTreeMap::new();
    for queued in ordered {
        let record = &queued.record;
        let entry = merged.entry(&record.key).or_insert_with(|| Merged {
            key: record.key.clone(),
            values: BTreeMap::new(),
            seqs: Vec::new(),
        });
        entry.seqs.push(queued.seq);
        for (property, value) in &record.properties {
            entry.values.insert(property.clone(), (value.clone(), record.changed_at));
        }
    }
    merged.into_values().collect()
}

/// The reverse worker of one receiver.
pub struct ReverseWorker {
    store: Arc<ReverseStore>,
    client: HubSpotClient,
    metrics: Arc<Metrics>,
    mappings: BTreeMap<String, MappingConfig>,
}

impl ReverseWorker {
    pub fn new(
        store: Arc<ReverseStore>,
        mappings: &[MappingConfig],
        client: HubSpotClient,
        metrics: Arc<Metrics>,
    ) -> ReverseWorker {
        let mappings = mappings.iter().map(|m| (m.name.clone(), m.clone())).collect();
        ReverseWorker { store, client, metrics, mappings }
    }

    /// Drains the queue until `shutdown` resolves; failed steps are retried with backoff while
    /// their records stay queued.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        run_steps("reverse sync", shutdown, IDLE_TICK, || self.step(), StepError::retry_after, || self.store.notified())
            .await
    }

    /// One step: how many queued records it settled, or why some stay queued.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        self.step().await.map_err(anyhow::Error::new)
    }

    async fn step(&self) -> Result<usize, StepError> {
        let queued = self.store.pending(RECORDS_PER_STEP).await.map_err(StepError::Store)?;
        let mut by_mapping: BTreeMap<String, Vec<QueuedRecord>> = BTreeMap::new();
        for record in queued {
            by_mapping.entry(record.record.mapping.clone()).or_default().push(record);
        }
        let mut settled = 0;
        let mut failure = None;
        for (name, records) in by_mapping {
            let result = match self.mappings.get(&name) {
                Some(mapping) => {
                    let result = self.sync_mapping(mapping, &records).await;
                    match &result {
                        Ok(_) => self.metrics.activity.succeeded(&name, now_ms()),
                        Err(e) => self.metrics.activity.failed(&name, &e.to_string(), now_ms()),
                    }
                    result
                }
                None => self.reject_orphans(&name, &records).await,
            };
            match result {
                Ok(n) => settled += n,
                Err(e) => failure = Some(e),
            }
        }
        self.update_gauges().await;
        match failure {
            Some(failure) => Err(failure),
            None => Ok(settled),
        }
    }

    /// Records of a mapping this receiver no longer has cannot be written: they are kept as
    /// rejected rather than retried forever.
    async fn reject_orphans(&self, name: &str, records: &[QueuedRecord]) -> Result<usize, StepError> {
        let rejected_at = now_ms();
        let completion = Completion {
            done: records.iter().map(|r| r.seq).collect(),
            rejected: records
                .iter()
                .map(|r| Rejection {
                    mapping: name.to_string(),
                    key: r.record.key.clone(),
                    properties: r.record.properties.clone(),
                    status: 0,
                    category: "UNKNOWN_MAPPING".into(),
                    message: format!("the receiver no longer has mapping {name}"),
                    correlation_id: String::new(),
                    rejected_at,
                    changed_at: r.record.changed_at,
                })
                .collect(),
            ..Default::default()
        };
        self.count("rejected", records.len());
        self.store.complete(completion).await.map_err(StepError::Store)?;
        Ok(records.len())
    }

    async fn sync_mapping(&self, mapping: &MappingConfig, records: &[QueuedRecord]) -> Result<usize, StepError> {
        let id_property = &mapping.records.match_key.hubspot_property;
        let mut merged = coalesce(records);
        // A record of only its key still creates the HubSpot record when it is missing.
        let key_only: std::collections::BTreeSet<String> =
            merged.iter().filter(|m| m.values.is_empty()).map(|m| m.key.clone()).collect();
        if mapping.policy.conflict_policy != ConflictPolicy::ExternalWins {
            self.drop_conflicting_fields(mapping, &mut merged).await?;
        }
        let mut completion = Completion::default();
        // Nothing left to write (HubSpot kept every field): settled.
        let (nothing, merged): (Vec<Merged>, Vec<Merged>) =
            merged.into_iter().partition(|m| m.values.is_empty() && !key_only.contains(&m.key));
        completion.done.extend(nothing.iter().flat_map(|m| m.seqs.iter().copied()));

        let inputs = upsert_inputs(id_property, &merged);
        let write_in_flight = self.store.hold_for_write().await;
        let batch = self.client.batch_upsert_isolated(&mapping.records.object_type, &inputs).await;

        for &index in &batch.accepted {
            completion.done.extend(merged[index].seqs.iter().copied());
        }
        note_written(mapping, &merged, &inputs, &batch.results, &mut completion);
        note_rejected(mapping, &merged, &inputs, &batch.rejected, &mut completion);
        let settled = completion.done.len();
        self.count("written", batch.accepted.len());
        self.metrics.activity.written(&mapping.name, batch.accepted.len());
        self.count("rejected", batch.rejected.len());
        self.store.complete(completion).await.map_err(StepError::Store)?;
        drop(write_in_flight);
        match batch.failure {
            Some(error) => Err(StepError::hubspot(&mapping.name, error)),
            None => Ok(settled),
        }
    }

    /// Removes from `merged` every field the conflict policy keeps HubSpot's value of: fields
    /// HubSpot changed since this receiver last wrote them, when HubSpot wins them.
    async fn drop_conflicting_fields(&self, mapping: &MappingConfig, merged: &mut [Merged]) -> Result<(), StepError> {
        let id_property = &mapping.records.match_key.hubspot_property;
        let mut properties: Vec<String> =
            merged.iter().flat_map(|m| m.values.keys().cloned()).filter(|p| p != id_property).collect();
        properties.sort();
        properties.dedup();
        if properties.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = merged.iter().map(|m| m.key.clone()).collect();
        let current = self
            .client
            .batch_read_with_history(&mapping.records.object_type, &properties, id_property, &keys)
            .await
            .map_err(|e| StepError::hubspot(&mapping.name, e))?;
        let current: BTreeMap<String, &hubspot::ObjectWithHistory> = current
            .iter()
            .filter_map(|o| Some((normalize_key(o.object.properties.get(id_property)?.as_deref()?), o)))
            .collect();
        let wanted = merged
            .iter()
            .filter_map(|m| current.get(&normalize_key(&m.key)))
            .flat_map(|o| properties.iter().map(|p| (o.object.id.clone(), p.clone())))
            .collect();
        let last_written =
            self.store.last_written(&mapping.records.object_type, wanted).await.map_err(StepError::Store)?;
        for m in merged.iter_mut() {
            let Some(object) = current.get(&normalize_key(&m.key)) else { continue };
            m.values.retain(|property, (_, changed_at)| {
                if property == id_property {
                    return true;
                }
                let hubspot_changed_at = object
                    .properties_with_history
                    .get(property)
                    .and_then(|versions| versions.iter().filter_map(|v| timestamp_ms(&v.timestamp)).max());
                let change = FieldChange {
                    external_changed_at: *changed_at,
                    hubspot_changed_at,
                    last_synced_at: last_written.get(&(object.object.id.clone(), property.clone())).copied(),
                };
                let resolution = resolve(mapping.policy.conflict_policy, change);
                if resolution == Resolution::KeepHubSpot {
                    tracing::info!(mapping = %mapping.name, object_id = %object.object.id, property, "conflict: HubSpot's value kept");
                    self.count("kept_hubspot_value", 1);
                }
                resolution == Resolution::WriteExternal
            });
        }
        Ok(())
    }

    fn count(&self, outcome: &str, n: usize) {
        if n > 0 {
            self.metrics.reverse_records.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc_by(n as u64);
        }
    }

    async fn update_gauges(&self) {
        if let Ok(pending) = self.store.pending_count().await {
            self.metrics.reverse_pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
        }
        if let Ok(summary) = self.store.rejected_summary().await {
            self.metrics.reverse_rejected.set(i64::try_from(summary.count).unwrap_or(i64::MAX));
        }
    }
}

/// One upsert input per merged record, keyed by the match key's property.
fn upsert_inputs(id_property: &str, merged: &[Merged]) -> Vec<UpsertInput> {
    merged
        .iter()
        .map(|m| {
            let mut properties: BTreeMap<String, String> =
                m.values.iter().map(|(p, (v, _))| (p.clone(), v.clone())).collect();
            // The key in the properties too, so every result names the record it is about
            // (HubSpot's results need not follow the inputs' order). HubSpot maintains
            // `hs_object_id` itself.
            if id_property != "hs_object_id" {
                properties.insert(id_property.to_string(), m.key.clone());
            }
            UpsertInput { id: m.key.clone(), id_property: id_property.to_string(), properties }
        })
        .collect()
}

/// Notes in `completion` what HubSpot's `results` say was written (each property's value and
/// HubSpot's time of the write) and which objects the upserts created.
fn note_written(
    mapping: &MappingConfig,
    merged: &[Merged],
    inputs: &[UpsertInput],
    results: &[UpsertResult],
    completion: &mut Completion,
) {
    let id_property = &mapping.records.match_key.hubspot_property;
    let by_key: BTreeMap<String, usize> = merged.iter().enumerate().map(|(i, m)| (normalize_key(&m.key), i)).collect();
    for result in results {
        let object = &result.object;
        let Some(&index) = object
            .properties
            .get(id_property)
            .cloned()
            .flatten()
            .map(|k| normalize_key(&k))
            .and_then(|k| by_key.get(&k))
        else {
            continue;
        };
        let written_at = object.updated_at.as_deref().and_then(timestamp_ms).unwrap_or_else(now_ms);
        for (property, sent) in &inputs[index].properties {
            let value = object.properties.get(property).cloned().flatten().unwrap_or_else(|| sent.clone());
            completion.written.push(WrittenValue {
                object_type: mapping.records.object_type.clone(),
                object_id: object.id.clone(),
                property: property.clone(),
                value,
                written_at,
            });
        }
        if result.new {
            completion.created.push((mapping.records.object_type.clone(), object.id.clone(), written_at));
        }
    }
}

/// Notes in `completion` the records HubSpot refused: they leave the queue for `rejected`.
fn note_rejected(
    mapping: &MappingConfig,
    merged: &[Merged],
    inputs: &[UpsertInput],
    rejected: &[(usize, hubspot::ApiError)],
    completion: &mut Completion,
) {
    let rejected_at = now_ms();
    for (index, error) in rejected {
        let m = &merged[*index];
        // Not HubSpot's message, which quotes the values refused: the rejected store keeps it.
        tracing::warn!(mapping = %mapping.name, status = error.status, category = %error.category, correlation_id = %error.correlation_id, "HubSpot refused a record");
        completion.done.extend(m.seqs.iter().copied());
        completion.rejected.push(Rejection {
            mapping: mapping.name.clone(),
            key: m.key.clone(),
            properties: inputs[*index].properties.clone(),
            status: error.status,
            category: error.category.clone(),
            message: error.message.clone(),
            correlation_id: error.correlation_id.clone(),
            rejected_at,
            changed_at: m.values.values().map(|(_, at)| *at).max().unwrap_or(rejected_at),
        });
    }
}

/// HubSpot keeps unique values such as emails in lower case; keys compare without case.
fn normalize_key(key: &str) -> String {
    key.trim().to_lowercase()
}

/// Why a step left records queued; they are tried again after a wait the cause decides.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("reverse sync store: {0:#}")]
    Store(anyhow::Error),
    #[error("mapping {mapping}: writing HubSpot: {error}")]
    HubSpot { mapping: String, error: hubspot::Error },
}

impl StepError {
    fn hubspot(mapping: &str, error: hubspot::Error) -> StepError {
        StepError::HubSpot { mapping: mapping.to_string(), error }
    }

    /// How long to wait at least before the next try: until HubSpot's daily limit may have
    /// room again, when it is spent.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            StepError::HubSpot { error: hubspot::Error::DailyLimitExhausted { .. }, .. } => Some(DAILY_LIMIT_WAIT),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reverse::store::IngestRecord;

    fn queued(seq: u64, key: &str, changed_at: i64, properties: &[(&str, &str)]) -> QueuedRecord {
        QueuedRecord {
            seq,
            record: IngestRecord {
                mapping: "crm/contacts".into(),
                key: key.into(),
                properties: properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                changed_at,
            },
        }
    }

    #[test]
    fn newest_change_of_each_property_wins_per_key() {
        let records = [
            queued(1, "a", 200, &[("phone", "2"), ("lifecyclestage", "lead")]),
            // Arrived later, changed earlier: loses where it overlaps.
            queued(2, "a", 100, &[("phone", "1"), ("firstname", "Ada")]),
            queued(3, "b", 100, &[("phone", "9")]),
            queued(4, "a", 200, &[("lifecyclestage", "customer")]),
        ];
        let merged = coalesce(&records);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].key, "a");
        assert_eq!(
            merged[0].values,
            BTreeMap::from([
                ("firstname".to_string(), ("Ada".to_string(), 100)),
                ("lifecyclestage".to_string(), ("customer".to_string(), 200)),
                ("phone".to_string(), ("2".to_string(), 200)),
            ])
        );
        let mut seqs = merged[0].seqs.clone();
        seqs.sort();
        assert_eq!(seqs, vec![1, 2, 4]);
        assert_eq!(merged[1].seqs, vec![3]);
    }
}
