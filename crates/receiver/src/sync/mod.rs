//! The sync worker: drains the event log, reads the current state of the changed objects from
//! HubSpot (only the mapped properties), and delivers records to every destination of every
//! mapping. Acknowledgement is end to end: an event leaves the log only after every destination
//! that needed it has the resulting records, or has refused them and they are in the
//! dead-letter store. Nothing is dropped when a destination fails, and a record a destination
//! refuses does not hold back the others. Changed objects gather until they fill a batch read
//! or have waited `sync.maxBatchWaitMilliseconds` (see `batch`), so few changes cost few calls.

pub mod backfill;
mod batch;
pub mod checkpoints;
pub mod deadletter;
mod delivery;
mod error;
mod operations;
pub mod plan;
pub mod report;
pub mod sinks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing::Instrument;

pub use crate::backoff::Backoff;
pub use checkpoints::CheckpointStore;
pub use deadletter::{DeadLetter, DeadLetterFilter, DeadLetterStore};
pub use operations::{OperationError, RedriveReport, ReplayReport};
pub use plan::{Op, Record};
pub use sinks::{Sink, SinkError};

use error::StepError;

use crate::eventlog::{EventLog, StoredEvent};
use crate::metrics::{Metrics, OutcomeLabels};
use crate::reverse::ReverseStore;
use crate::time::now_ms;
use hubspot::{self, HubSpotClient};
use model::config::{MappingConfig, ReceiverConfig};

/// Events taken from the log per step.
const EVENTS_PER_STEP: usize = 1000;
/// Records per delivery call, so one request stays a sensible size.
const RECORDS_PER_DELIVERY: usize = 100;
/// How long an idle worker waits for a notification before looking at the log anyway.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// How long a step under way at shutdown may take to finish. A step cut short after its
/// deliveries leaves their events pending, so the next start reads and checks them again; the
/// receiver pod's termination grace (30 s) leaves room for this after the ingress drains.
const STEP_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The sync worker of one integration. Clones share everything; the admin API holds one to
/// redrive dead letters and replay deliveries with the same delivery path as the drain.
#[derive(Clone)]
pub struct Worker {
    log: Arc<dyn EventLog>,
    client: HubSpotClient,
    metrics: Arc<Metrics>,
    checkpoints: CheckpointStore,
    dead_letters: DeadLetterStore,
    mappings: Arc<[MappingRuntime]>,
    /// What the reverse worker wrote to HubSpot, to recognise the webhooks it causes.
    echo_ledger: Option<Arc<ReverseStore>>,
    /// How long objects that do not fill a batch read wait for more (`sync::batch`).
    max_batch_wait: Duration,
}

struct MappingRuntime {
    config: MappingConfig,
    destinations: Vec<Destination>,
}

struct Destination {
    /// `http-0`, `file-1`: position in the mapping's sink list, for metrics and logs.
    label: String,
    checkpoint_id: String,
    sink: Sink,
}

/// What one drain step did.
#[derive(Debug, Default)]
struct StepOutcome {
    /// Events taken from the log.
    taken: usize,
    /// Events released from the log.
    released: usize,
    /// Why some events stay pending, if they do: the first cause met.
    failure: Option<StepError>,
    /// Wait at least this long before the next step: the longest any cause asked for.
    retry_after: Option<Duration>,
    /// When events held back to fill a batch read fall due (epoch ms).
    next_due_ms: Option<i64>,
}

/// Whether a step reads what is pending at once, or holds back what does not fill a batch read.
enum Batching<'a> {
    Now,
    Gather(&'a mut batch::Arrivals),
}

impl StepOutcome {
    fn fail(&mut self, error: StepError) {
        self.retry_after = self.retry_after.max(error.retry_after());
        self.failure.get_or_insert(error);
    }
}

impl Worker {
    pub fn new(
        config: &ReceiverConfig,
        log: Arc<dyn EventLog>,
        client: HubSpotClient,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Worker> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let checkpoints = CheckpointStore::open(&config.sync_state_path())?;
        let dead_letters =
            DeadLetterStore::open(&config.data_dir.join("dead-letters.db"), metrics.dead_letters.clone())?;
        let mappings = config
            .mappings
            .iter()
            .map(|mapping| {
                let destinations = mapping
                    .sinks
                    .iter()
                    .enumerate()
                    .map(|(index, sink_config)| {
                        let sink = Sink::from_config(sink_config, mapping, &config.data_dir)
                            .with_context(|| format!("mapping {}: destination {index}", mapping.name))?;
                        Ok(Destination { label: sink_config.label(index), checkpoint_id: sink.checkpoint_id(), sink })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(MappingRuntime { config: mapping.clone(), destinations })
            })
            .collect::<anyhow::Result<Arc<[_]>>>()?;
        Ok(Worker {
            log,
            client,
            metrics,
            checkpoints,
            dead_letters,
            mappings,
            echo_ledger: None,
            max_batch_wait: config.sync.max_batch_wait(),
        })
    }

    /// The dead-letter store, for inspection.
    pub fn dead_letters(&self) -> &DeadLetterStore {
        &self.dead_letters
    }

    /// Releases, without delivering them, the webhooks that echo the reverse worker's own
    /// writes (see `ReverseStore::echoes`).
    pub fn with_echo_ledger(mut self, ledger: Arc<ReverseStore>) -> Self {
        self.echo_ledger = Some(ledger);
        self
    }

    /// Drains the log until `shutdown` resolves, letting a step under way finish (for at most
    /// `STEP_SHUTDOWN_GRACE`). Failed steps are retried with backoff; the events they concern
    /// stay in the log meanwhile. Objects that do not fill a batch read
    /// wait up to `maxBatchWait` for more.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = Backoff::default();
        let mut arrivals = batch::Arrivals::default();
        loop {
            let step = self.step(Batching::Gather(&mut arrivals));
            let mut step = std::pin::pin!(step);
            let outcome = tokio::select! {
                outcome = &mut step => outcome,
                _ = &mut shutdown => {
                    if tokio::time::timeout(STEP_SHUTDOWN_GRACE, step).await.is_err() {
                        tracing::warn!(grace_s = STEP_SHUTDOWN_GRACE.as_secs(), "sync step unfinished at shutdown; its events stay pending");
                    }
                    return;
                }
            };
            // New events may fill a batch read; a failed step waits out its backoff.
            let waiting_for_events = outcome.failure.is_none();
            let wait = match outcome.failure {
                Some(failure) => {
                    let wait = backoff.next_delay(outcome.retry_after);
                    tracing::warn!(error = %failure, retry_in_ms = wait.as_millis() as u64, "sync step incomplete; events stay pending");
                    tokio::time::sleep(wait)
                }
                // There may be more behind what this step took.
                None if outcome.released > 0 => {
                    backoff.reset();
                    continue;
                }
                None => {
                    backoff.reset();
                    let until_due =
                        outcome.next_due_ms.map(|at| Duration::from_millis(at.saturating_sub(now_ms()).max(0) as u64));
                    tokio::time::sleep(until_due.unwrap_or(IDLE_TICK).min(IDLE_TICK))
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = wait => {}
                _ = self.log.notified(), if waiting_for_events => {}
            }
        }
    }

    /// One drain step that reads everything pending at once: returns how many events were
    /// released, or why some stay pending.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let outcome = self.step(Batching::Now).await;
        match outcome.failure {
            None => Ok(outcome.released),
            Some(failure) => Err(anyhow::Error::new(failure)),
        }
    }

    async fn step(&self, batching: Batching<'_>) -> StepOutcome {
        let mut outcome = StepOutcome::default();
        let events = match self.log.pending(EVENTS_PER_STEP).await {
            Ok(events) => events,
            Err(e) => {
                outcome.fail(StepError::ReadLog(e));
                return outcome;
            }
        };
        outcome.taken = events.len();
        let now = now_ms();
        // A full window means more is pending behind it: nothing is gained by waiting.
        let arrived = match batching {
            Batching::Gather(arrivals) if events.len() < EVENTS_PER_STEP => Some(arrivals.note(&events, now)),
            Batching::Gather(arrivals) => {
                arrivals.note(&events, now);
                None
            }
            Batching::Now => None,
        };
        if events.is_empty() {
            self.update_pending_gauge().await;
            return outcome;
        }
        // A span for steps that took events only: an idle worker looks at the log every second.
        let span = tracing::debug_span!(
            "sync.step",
            events = events.len(),
            released = tracing::field::Empty,
            complete = tracing::field::Empty,
        );
        let outcome = self.sync_events(events, arrived, now, outcome).instrument(span.clone()).await;
        span.record("released", outcome.released);
        span.record("complete", outcome.failure.is_none());
        outcome
    }

    /// The rest of a step: `events` (taken from the log at `now`) are planned, read from
    /// HubSpot, delivered and released, as far as they are due (`arrived`, when gathering).
    async fn sync_events(
        &self,
        events: Vec<StoredEvent>,
        arrived: Option<std::collections::HashMap<u64, i64>>,
        now: i64,
        mut outcome: StepOutcome,
    ) -> StepOutcome {
        let events = match self.release_echoes(events, &mut outcome).await {
            Some(events) => events,
            None => return outcome,
        };
        let configs: Vec<MappingConfig> = self.mappings.iter().map(|m| m.config.clone()).collect();
        let plan = plan::plan(&events, &configs);

        if !plan.ignored.is_empty() {
            let ignored = plan.ignored.len();
            match self.log.release(plan.ignored).await {
                Ok(()) => {
                    outcome.released += ignored;
                    self.metrics
                        .webhook_events
                        .get_or_create(&OutcomeLabels { outcome: "ignored".into() })
                        .inc_by(ignored as u64);
                }
                Err(e) => outcome.fail(StepError::Release(e)),
            }
        }

        for (object_type, type_plan) in &plan.by_type {
            let due = match &arrived {
                Some(arrived) => {
                    let due = batch::due(type_plan, arrived, now, self.max_batch_wait.as_millis() as i64);
                    outcome.next_due_ms = earliest(outcome.next_due_ms, due.next_ms);
                    due.now
                }
                None => Some(type_plan.clone()),
            };
            let Some(type_plan) = due else { continue };
            let type_plan = &type_plan;
            if let Some(oldest) = arrived.as_ref().and_then(|a| type_plan.seqs.iter().filter_map(|s| a.get(s)).min()) {
                self.metrics.batch_wait_seconds.observe(now.saturating_sub(*oldest).max(0) as f64 / 1000.0);
            }
            let synced = match self.sync_object_type(object_type, type_plan).await {
                Ok(()) => self.follow_merges(object_type, type_plan).await,
                Err(failure) => Err(failure),
            };
            match synced {
                Ok(()) => match self.log.release(type_plan.seqs.clone()).await {
                    Ok(()) => outcome.released += type_plan.seqs.len(),
                    Err(e) => outcome.fail(StepError::Release(e)),
                },
                Err(failure) => outcome.fail(failure),
            }
        }
        tracing::debug!(
            taken = outcome.taken,
            released = outcome.released,
            waiting_until_ms = outcome.next_due_ms,
            complete = outcome.failure.is_none(),
            "sync step"
        );
        self.update_pending_gauge().await;
        outcome
    }

    /// Reads the objects of one type once (the union of the mappings' properties) and delivers
    /// each mapping's records to each of its destinations. `Ok` when every destination has them.
    async fn sync_object_type(&self, object_type: &str, type_plan: &plan::TypePlan) -> Result<(), StepError> {
        let mappings: Vec<&MappingRuntime> =
            self.mappings.iter().filter(|m| m.config.records.object_type == object_type).collect();
        let (fetched, associations) = match self.read_objects(object_type, &mappings, type_plan).await {
            Ok(read) => read,
            Err(failure) => {
                for mapping in &mappings {
                    self.metrics.activity.failed(&mapping.config.name, &failure.to_string(), now_ms());
                }
                return Err(failure);
            }
        };
        let mut result = Ok(());
        for mapping in mappings {
            let name = &mapping.config.name;
            match self.deliver_mapping(mapping, type_plan, &fetched, &associations).await {
                Ok(()) => self.metrics.activity.succeeded(name, now_ms()),
                Err(failure) => {
                    self.metrics.activity.failed(name, &failure.to_string(), now_ms());
                    result = Err(failure);
                }
            }
        }
        result
    }

    /// The changed objects of `type_plan` that still exist, with the properties and
    /// associations `mappings` need.
    async fn read_objects(
        &self,
        object_type: &str,
        mappings: &[&MappingRuntime],
        type_plan: &plan::TypePlan,
    ) -> Result<(Vec<hubspot::CrmObject>, plan::Associations), StepError> {
        let ids = type_plan.ids_to_fetch();
        let fetched = if ids.is_empty() {
            Vec::new()
        } else {
            let mut properties: Vec<String> = mappings.iter().flat_map(|m| m.config.hubspot_properties()).collect();
            properties.sort();
            properties.dedup();
            let span = tracing::debug_span!("sync.batch_read", object_type, objects = ids.len());
            self.client
                .batch_read(object_type, &properties, &ids)
                .instrument(span)
                .await
                .map_err(|e| StepError::hubspot(object_type, e))?
        };
        let configs: Vec<&MappingConfig> = mappings.iter().map(|m| &m.config).collect();
        let associations = self.read_associations(object_type, &configs, &fetched).await?;
        Ok((fetched, associations))
    }

    /// Builds one mapping's records and delivers them to each of its destinations.
    async fn deliver_mapping(
        &self,
        mapping: &MappingRuntime,
        type_plan: &plan::TypePlan,
        fetched: &[hubspot::CrmObject],
        associations: &plan::Associations,
    ) -> Result<(), StepError> {
        let records = plan::build_records(&mapping.config, type_plan, fetched, associations);
        let records = self.checkpoints.fill_deleted_keys(records).await.map_err(StepError::Checkpoints)?;
        let mut result = Ok(());
        for destination in &mapping.destinations {
            if let Err(failure) = self.deliver_fresh(&mapping.config.name, destination, &records).await {
                result = Err(failure);
            }
        }
        result
    }

    /// The associations `mappings` deliver, of the live objects among `fetched`: one batch read
    /// per associated object type (and 100 objects), fetched rather than taken from webhook
    /// payloads, which may be stale or reordered.
    async fn read_associations(
        &self,
        object_type: &str,
        mappings: &[&MappingConfig],
        fetched: &[hubspot::CrmObject],
    ) -> Result<plan::Associations, StepError> {
        let to_types: std::collections::BTreeSet<&str> =
            mappings.iter().flat_map(|m| m.associations.iter().map(|a| a.to_object_type.as_str())).collect();
        let live: Vec<String> = fetched.iter().filter(|o| !o.archived).map(|o| o.id.clone()).collect();
        let mut associations = plan::Associations::new();
        if live.is_empty() {
            return Ok(associations);
        }
        for to_type in to_types {
            let read = self
                .client
                .batch_read_associations(object_type, to_type, &live)
                .await
                .map_err(|e| StepError::hubspot(object_type, e))?;
            associations.insert(to_type.to_string(), read);
        }
        Ok(associations)
    }

    /// Tells the echo ledger of the merges among the plan's events before they are released,
    /// so that what this receiver wrote to the merged-away records counts for the survivor.
    async fn follow_merges(&self, object_type: &str, type_plan: &plan::TypePlan) -> Result<(), StepError> {
        let Some(ledger) = &self.echo_ledger else { return Ok(()) };
        for merge in type_plan.merges.values() {
            let merged_away: Vec<String> = merge.merged_away.iter().map(u64::to_string).collect();
            ledger
                .follow_merge(object_type, &merge.survivor.to_string(), &merged_away)
                .await
                .map_err(StepError::EchoLedger)?;
        }
        Ok(())
    }

    /// The events that are not echoes of this receiver's own writes; the echoes are released.
    /// `None` when the echoes could not be told apart (the step is retried).
    async fn release_echoes(&self, events: Vec<StoredEvent>, outcome: &mut StepOutcome) -> Option<Vec<StoredEvent>> {
        let Some(ledger) = &self.echo_ledger else { return Some(events) };
        let echoes = match ledger.echoes(events.clone()).await {
            Ok(echoes) => echoes,
            Err(e) => {
                outcome.fail(StepError::EchoLedger(e));
                return None;
            }
        };
        if echoes.is_empty() {
            return Some(events);
        }
        let count = echoes.len();
        let echo_set: std::collections::BTreeSet<u64> = echoes.iter().copied().collect();
        if let Err(e) = self.log.release(echoes).await {
            outcome.fail(StepError::Release(e));
            return None;
        }
        outcome.released += count;
        self.metrics.webhook_events.get_or_create(&OutcomeLabels { outcome: "echo".into() }).inc_by(count as u64);
        tracing::debug!(echoes = count, "released webhooks caused by this receiver's own writes");
        Some(events.into_iter().filter(|e| !echo_set.contains(&e.seq)).collect())
    }

    async fn update_pending_gauge(&self) {
        crate::eventlog::update_gauges(self.log.as_ref(), &self.metrics).await;
    }
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
