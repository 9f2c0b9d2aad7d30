//! The timeline worker: sends queued occurrences to HubSpot per event type, in batches of up to
//! 100 through the integration's client (so within its request budget), by the type's carrier:
//! legacy timeline events, app events or custom events. An occurrence leaves the queue once
//! HubSpot has it (created, or already there: 409) or refused it for its content (then it is
//! kept with HubSpot's message and correlationId). Anything else (429, 5xx, transport,
//! authentication) leaves it queued for the next attempt.
//!
//! Custom events are not deduplicated by HubSpot, so their sends are made once (no retry inside
//! the client) and marked as attempted on disk before they start; an attempted occurrence is
//! looked for in HubSpot (by its uuid, derived from the type and the caller's id) before it is
//! sent again, so that a send of unknown outcome (timeout, dropped connection, 5xx, or the
//! receiver killed before recording it) never doubles an event.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tracing::Instrument as _;

use super::store::{QueuedOccurrence, Refusal, Settled, TimelineStore};
use super::validate::{Identity, Occurrence};
use crate::backoff::run_steps;
use crate::metrics::{Metrics, OutcomeLabels};
use crate::time::{format_ms, now_ms};
use hubspot::{ApiError, AppEventInput, CustomEventInput, HubSpotClient, TimelineEventInput};
use model::api::timeline::Carrier;
use model::config::TimelineEventTypeConfig;

/// Queued occurrences taken per step.
const OCCURRENCES_PER_STEP: usize = 1000;
/// Most occurrences per HubSpot call (HubSpot's batch limit for timeline and app events).
pub const BATCH_SIZE: usize = 100;
/// How long an idle worker waits for a notification before looking at the queue anyway.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// When HubSpot's daily limit is spent, retrying sooner than this only burns calls.
const DAILY_LIMIT_WAIT: Duration = Duration::from_secs(300);

/// The custom event `uuid` of an occurrence: a UUID (version 8, name-based) of the event type
/// and the caller's id, the same on every attempt.
pub fn occurrence_uuid(occurrence: &Occurrence) -> String {
    let digest = Sha256::new()
        .chain_update(occurrence.event_type.as_bytes())
        .chain_update([0])
        .chain_update(occurrence.id.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Why a step left occurrences queued.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("timeline store: {0:#}")]
    Store(anyhow::Error),
    #[error("timeline event type {event_type}: sending to HubSpot: {error}")]
    HubSpot { event_type: String, error: hubspot::Error },
}

impl StepError {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            StepError::HubSpot { error: hubspot::Error::DailyLimitExhausted { .. }, .. } => Some(DAILY_LIMIT_WAIT),
            _ => None,
        }
    }

    fn correlation_id(&self) -> Option<String> {
        match self {
            StepError::HubSpot { error: hubspot::Error::Api(e), .. } => Some(e.correlation_id.clone()),
            StepError::HubSpot { error: hubspot::Error::DailyLimitExhausted { correlation_id }, .. } => {
                Some(correlation_id.clone())
            }
            _ => None,
        }
    }
}

/// The timeline worker of one receiver.
pub struct TimelineWorker {
    store: Arc<TimelineStore>,
    client: HubSpotClient,
    metrics: Arc<Metrics>,
    types: BTreeMap<String, TimelineEventTypeConfig>,
}

impl TimelineWorker {
    pub fn new(
        store: Arc<TimelineStore>,
        types: &[TimelineEventTypeConfig],
        client: HubSpotClient,
        metrics: Arc<Metrics>,
    ) -> TimelineWorker {
        let types = types.iter().map(|t| (t.qualified_name(), t.clone())).collect();
        TimelineWorker { store, client, metrics, types }
    }

    /// Sends until `shutdown` resolves; failed steps are retried with backoff while their
    /// occurrences stay queued.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        run_steps("timeline", shutdown, IDLE_TICK, || self.step(), StepError::retry_after, || self.store.notified())
            .await
    }

    /// One step: how many queued occurrences it settled, or why some stay queued.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        self.step().await.map_err(anyhow::Error::new)
    }

    async fn step(&self) -> Result<usize, StepError> {
        let queued = self.store.pending(OCCURRENCES_PER_STEP).await.map_err(StepError::Store)?;
        let mut by_type: BTreeMap<String, Vec<QueuedOccurrence>> = BTreeMap::new();
        for q in queued {
            by_type.entry(q.occurrence.event_type.clone()).or_default().push(q);
        }
        let mut settled = 0;
        let mut failure = None;
        for (name, occurrences) in by_type {
            for batch in occurrences.chunks(BATCH_SIZE) {
                let result = match self.types.get(&name) {
                    Some(event_type) => self.send_batch(event_type, batch).await,
                    None => self.reject_orphans(&name, batch).await,
                };
                match result {
                    Ok(n) => settled += n,
                    Err(e) => {
                        let correlation_id = e.correlation_id();
                        self.metrics.timeline_activity.failed(&name, &e.to_string(), correlation_id, now_ms());
                        failure = Some(e);
                        // The type's later batches wait for the next step.
                        break;
                    }
                }
            }
        }
        match failure {
            Some(failure) => Err(failure),
            None => Ok(settled),
        }
    }

    /// Occurrences of a type this receiver no longer has cannot be sent: they are kept as
    /// rejected rather than retried forever.
    async fn reject_orphans(&self, name: &str, batch: &[QueuedOccurrence]) -> Result<usize, StepError> {
        let refusal = Refusal {
            status: 0,
            category: "UNKNOWN_EVENT_TYPE".into(),
            message: format!("the receiver no longer has timeline event type {name}"),
            correlation_id: String::new(),
        };
        let settled =
            Settled { delivered: vec![], rejected: batch.iter().map(|q| (q.clone(), refusal.clone())).collect() };
        self.settle(name, settled).await
    }

    /// Sends one batch of one type; one `timeline.batch` span each.
    async fn send_batch(
        &self,
        event_type: &TimelineEventTypeConfig,
        batch: &[QueuedOccurrence],
    ) -> Result<usize, StepError> {
        let name = event_type.qualified_name();
        let span = tracing::info_span!(
            "timeline.batch",
            event_type = %name,
            carrier = ?event_type.carrier,
            occurrences = batch.len(),
            delivered = tracing::field::Empty,
            rejected = tracing::field::Empty,
        );
        async {
            let (settled, failure) = match event_type.carrier {
                Carrier::CustomEvents => self.send_custom_events(event_type, batch).await,
                Carrier::TimelineEvents | Carrier::AppEvents => self.send_timeline_events(event_type, batch).await,
            };
            tracing::Span::current().record("delivered", settled.delivered.len());
            tracing::Span::current().record("rejected", settled.rejected.len());
            let n = self.settle(&name, settled).await?;
            match failure {
                Some(error) => Err(StepError::HubSpot { event_type: name, error }),
                None => Ok(n),
            }
        }
        .instrument(span)
        .await
    }

    /// Commits what a batch settled and counts it.
    async fn settle(&self, name: &str, settled: Settled) -> Result<usize, StepError> {
        let (delivered, rejected) = (settled.delivered.len(), settled.rejected.len());
        if delivered + rejected == 0 {
            return Ok(0);
        }
        self.store.settle(settled).await.map_err(StepError::Store)?;
        self.count("delivered", delivered);
        self.count("rejected", rejected);
        self.metrics.timeline_activity.succeeded(name, delivered as u64, now_ms());
        Ok(delivered + rejected)
    }

    fn count(&self, outcome: &str, n: usize) {
        self.metrics.timeline_occurrences.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc_by(n as u64);
    }

    fn count_call(&self, purpose: &str) {
        self.metrics.timeline_calls.get_or_create(&OutcomeLabels { outcome: purpose.into() }).inc();
    }

    /// Legacy timeline events or app events: HubSpot creates each input on its own and says
    /// which it refused (207); an id it already has is refused with 409, and is delivered.
    async fn send_timeline_events(
        &self,
        event_type: &TimelineEventTypeConfig,
        batch: &[QueuedOccurrence],
    ) -> (Settled, Option<hubspot::Error>) {
        let mut settled = Settled::default();
        // Ranges still to send, the next one last; a whole call refused for its inputs is
        // split until each refused input stands alone.
        let mut todo: Vec<Range<usize>> = std::iter::once(0..batch.len()).collect();
        while let Some(range) = todo.pop() {
            let part = &batch[range.clone()];
            self.count_call("send");
            let errors = match event_type.carrier {
                Carrier::AppEvents => {
                    let inputs: Vec<AppEventInput> =
                        part.iter().map(|q| app_event(event_type, &q.occurrence)).collect();
                    self.client
                        .send_app_events(&inputs)
                        .await
                        .map(|answers| answers.into_iter().flat_map(|a| a.errors).collect::<Vec<_>>())
                }
                _ => {
                    let inputs: Vec<TimelineEventInput> =
                        part.iter().map(|q| timeline_event(event_type, &q.occurrence)).collect();
                    self.client
                        .create_timeline_events(&inputs)
                        .await
                        .map(|answers| answers.into_iter().flat_map(|a| a.errors).collect::<Vec<_>>())
                }
            };
            match errors {
                Ok(errors) => {
                    let mut refused = BTreeMap::new();
                    for error in &errors {
                        if let Some(index) = error_index(error).filter(|i| *i < part.len()) {
                            refused.insert(index, error);
                        }
                    }
                    for (index, q) in part.iter().enumerate() {
                        match refused.get(&index) {
                            Some(error) if error["category"] == "CONFLICT" => settled.delivered.push(q.clone()),
                            Some(error) => settled.rejected.push((q.clone(), batch_refusal(error))),
                            None => settled.delivered.push(q.clone()),
                        }
                    }
                }
                Err(hubspot::Error::Api(e)) if refuses_inputs(&e) => {
                    if part.len() > 1 {
                        let middle = range.start + range.len() / 2;
                        todo.push(middle..range.end);
                        todo.push(range.start..middle);
                    } else if e.status == 409 {
                        settled.delivered.push(part[0].clone());
                    } else {
                        settled.rejected.push((part[0].clone(), refusal(&e)));
                    }
                }
                Err(error) => return (settled, Some(error)),
            }
        }
        (settled, None)
    }

    /// Custom events: what an earlier attempt may have delivered is looked for first; the rest
    /// is marked attempted, then sent once.
    async fn send_custom_events(
        &self,
        event_type: &TimelineEventTypeConfig,
        batch: &[QueuedOccurrence],
    ) -> (Settled, Option<hubspot::Error>) {
        let mut settled = Settled::default();
        let found = match self.already_in_hubspot(event_type, batch).await {
            Ok(found) => found,
            Err(error) => return (settled, Some(error)),
        };
        let (there, to_send): (Vec<&QueuedOccurrence>, Vec<&QueuedOccurrence>) =
            batch.iter().partition(|q| found.contains(&q.seq));
        settled.delivered.extend(there.into_iter().cloned());
        if to_send.is_empty() {
            return (settled, None);
        }
        let unattempted: Vec<i64> = to_send.iter().filter(|q| !q.attempted).map(|q| q.seq).collect();
        if !unattempted.is_empty()
            && let Err(e) = self.store.attempt(unattempted).await
        {
            return (settled, Some(hubspot::Error::Transport(format!("recording the attempt: {e:#}"))));
        }
        let inputs: Vec<CustomEventInput> = to_send.iter().map(|q| custom_event(event_type, &q.occurrence)).collect();
        let once = self.client.single_attempt();
        // HubSpot stores all inputs of a call or none (400), so a refused call is split to find
        // the refused inputs without risking a double.
        let result = hubspot::isolate_bad_inputs(&inputs, |part| {
            self.count_call("send");
            let once = once.clone();
            async move { once.send_custom_events(part).await.map(|()| vec![(); part.len()]) }
        })
        .await;
        settled.delivered.extend(result.accepted.iter().map(|&i| to_send[i].clone()));
        settled.rejected.extend(result.rejected.iter().map(|(i, e)| (to_send[*i].clone(), refusal(e))));
        (settled, result.failure)
    }

    /// Queue positions of the attempted occurrences of `batch` that HubSpot has: their uuid is
    /// among the type's occurrences on their record.
    async fn already_in_hubspot(
        &self,
        event_type: &TimelineEventTypeConfig,
        batch: &[QueuedOccurrence],
    ) -> Result<BTreeSet<i64>, hubspot::Error> {
        let attempted: Vec<&QueuedOccurrence> = batch.iter().filter(|q| q.attempted).collect();
        if attempted.is_empty() {
            return Ok(BTreeSet::new());
        }
        let object_type = event_type.object_type.as_str();
        let emails: BTreeSet<String> = attempted
            .iter()
            .filter_map(|q| match &q.occurrence.identity {
                Identity::Email(email) => Some(email.to_lowercase()),
                _ => None,
            })
            .collect();
        let mut contact_ids = BTreeMap::new();
        if !emails.is_empty() {
            self.count_call("check");
            let emails: Vec<String> = emails.into_iter().collect();
            for found in self.client.batch_read_with_history(object_type, &[], "email", &emails).await? {
                if let Some(Some(email)) = found.object.properties.get("email") {
                    contact_ids.insert(email.to_lowercase(), found.object.id.clone());
                }
            }
        }
        let mut by_record: BTreeMap<String, Vec<&QueuedOccurrence>> = BTreeMap::new();
        for q in attempted {
            let id = match &q.occurrence.identity {
                Identity::ObjectId(id) => Some(id.clone()),
                Identity::Email(email) => contact_ids.get(&email.to_lowercase()).cloned(),
                Identity::Domain(_) => None,
            };
            // A contact HubSpot does not know by that email was never sent an event.
            if let Some(id) = id {
                by_record.entry(id).or_default().push(q);
            }
        }
        let mut found = BTreeSet::new();
        for (object_id, occurrences) in by_record {
            self.count_call("check");
            let there: BTreeSet<String> = self
                .client
                .list_custom_events(object_type, &object_id, &event_type.hubspot_name)
                .await?
                .into_iter()
                .map(|o| o.id)
                .collect();
            found.extend(occurrences.iter().filter(|q| there.contains(&occurrence_uuid(&q.occurrence))).map(|q| q.seq));
        }
        Ok(found)
    }
}

/// Whether HubSpot refused a call for what its inputs hold, so that splitting it finds them.
fn refuses_inputs(error: &ApiError) -> bool {
    matches!(error.status, 400 | 404 | 409 | 422) && error.category != "MISSING_SCOPES"
}

fn refusal(error: &ApiError) -> Refusal {
    Refusal {
        status: error.status,
        category: error.category.clone(),
        message: error.message.clone(),
        correlation_id: error.correlation_id.clone(),
    }
}

/// One input's refusal in a 207 answer.
fn batch_refusal(error: &Value) -> Refusal {
    let text = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    Refusal { status: 207, category: text("category"), message: text("message"), correlation_id: text("correlationId") }
}

/// The input a batch error names: `context.index[0]`.
fn error_index(error: &Value) -> Option<usize> {
    error.pointer("/context/index/0").and_then(Value::as_str).and_then(|i| i.parse().ok())
}

fn identity_fields(identity: &Identity) -> (Option<String>, Option<String>, Option<String>) {
    match identity {
        Identity::ObjectId(id) => (Some(id.clone()), None, None),
        Identity::Email(email) => (None, Some(email.clone()), None),
        Identity::Domain(domain) => (None, None, Some(domain.clone())),
    }
}

fn timeline_event(event_type: &TimelineEventTypeConfig, o: &Occurrence) -> TimelineEventInput {
    let (object_id, email, domain) = identity_fields(&o.identity);
    TimelineEventInput {
        event_template_id: event_type.hubspot_name.clone(),
        id: Some(o.id.clone()),
        object_id,
        email,
        domain,
        // Legacy tokens travel as strings: numbers and dates (epoch ms) in their JSON form.
        tokens: o
            .tokens
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect(),
        extra_data: o.extra_data.clone(),
        timestamp: o.timestamp_ms.map(format_ms),
    }
}

fn app_event(event_type: &TimelineEventTypeConfig, o: &Occurrence) -> AppEventInput {
    let (object_id, email, domain) = identity_fields(&o.identity);
    AppEventInput {
        event_type_name: event_type.hubspot_name.clone(),
        id: Some(o.id.clone()),
        object_id,
        email,
        domain,
        properties: o.tokens.clone(),
        extra_data: o.extra_data.clone(),
        timestamp: o.timestamp_ms.map(format_ms),
    }
}

fn custom_event(event_type: &TimelineEventTypeConfig, o: &Occurrence) -> CustomEventInput {
    let (object_id, email, _) = identity_fields(&o.identity);
    CustomEventInput {
        event_name: event_type.hubspot_name.clone(),
        uuid: Some(occurrence_uuid(o)),
        object_id,
        email,
        occurred_at: o.timestamp_ms.map(format_ms),
        properties: o.tokens.clone(),
    }
}
