//! The metrics of a receiver (and of the HubSpot calls of whoever holds them), and what each
//! mapping's sync did, for the sync report.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use hubspot::CallObserver;
use hubspot::metrics::CallMetrics;
use model::report::{MappingReport, ReportedError, TimelineReport};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub mapping: String,
    pub sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub mapping: String,
    /// `postgres-<index>`: the source's position in the mapping's `sources`.
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `public`, `status` or `admin`.
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadTimeoutLabels {
    pub listener: String,
    /// `headers` (the connection was closed) or `body` (answered 408).
    pub phase: String,
}

/// Every metric of a receiver process (HTTP ingress, event log, sync worker, HubSpot client).
pub struct Metrics {
    pub registry: Registry,
    /// Webhook requests by outcome: accepted, unauthorized, malformed, too_large, timeout,
    /// log_full, unavailable.
    pub webhook_requests: Family<OutcomeLabels, Counter>,
    /// Webhook events by outcome: appended, duplicate.
    pub webhook_events: Family<OutcomeLabels, Counter>,
    /// Events in the log not yet delivered everywhere.
    pub events_pending: Gauge,
    /// Seconds the oldest of those has been in the log (0 when there is none).
    pub oldest_pending_age_seconds: Gauge<f64, AtomicU64>,
    /// Records delivered to a destination.
    pub records_delivered: Family<SinkLabels, Counter>,
    /// Failed delivery attempts to a destination (retried).
    pub sink_failures: Family<SinkLabels, Counter>,
    /// Records a destination refused permanently, put in the dead-letter store.
    pub records_dead_lettered: Family<SinkLabels, Counter>,
    /// Records currently in the dead-letter store.
    pub dead_letters: Gauge,
    /// HubSpot API calls by operation and outcome, and their latency.
    pub hubspot_calls: CallMetrics,
    /// Objects per HubSpot batch read (at most 100): how well reads are gathered.
    pub batch_read_objects: Histogram,
    /// How long the oldest event of a batch had waited when the worker took the batch up, in
    /// seconds: what gathering costs in lag (about `maxBatchWaitMilliseconds` for a batch that
    /// did not fill, more while the worker was busy or failing).
    pub batch_wait_seconds: Histogram,
    /// Change hints the catch-up search appended to the event log.
    pub backfill_hints: Counter,
    /// Ingest API requests by outcome: accepted, invalid, unauthorized, disabled,
    /// unknown_mapping, read_only_mapping, malformed, too_large, timeout, unavailable.
    pub ingest_requests: Family<OutcomeLabels, Counter>,
    /// Ingested records by outcome: accepted, invalid.
    pub ingest_records: Family<OutcomeLabels, Counter>,
    /// Records the reverse worker settled, by outcome: written, rejected, kept_hubspot_value.
    pub reverse_records: Family<OutcomeLabels, Counter>,
    /// Ingested records waiting to be written to HubSpot.
    pub reverse_pending: Gauge,
    /// Records HubSpot refused, kept in the reverse sync store.
    pub reverse_rejected: Gauge,
    /// Failed or timed-out polls of a source of records for HubSpot (retried at the next
    /// interval).
    pub reverse_source_failures: Family<SourceLabels, Counter>,
    /// Timeline API requests by outcome: accepted, invalid, unauthorized, disabled,
    /// unknown_type, malformed, too_large, timeout, unavailable.
    pub timeline_requests: Family<OutcomeLabels, Counter>,
    /// Timeline occurrences by outcome: accepted, already_known, invalid (at the API);
    /// delivered, rejected (by HubSpot).
    pub timeline_occurrences: Family<OutcomeLabels, Counter>,
    /// HubSpot calls the timeline worker made, by purpose: send, check (looking up whether an
    /// occurrence of an unknown outcome arrived).
    pub timeline_calls: Family<OutcomeLabels, Counter>,
    /// What each timeline event type did since the process started, for the sync report.
    pub timeline_activity: std::sync::Arc<TimelineActivity>,
    /// Requests whose headers or body a listener stopped waiting for.
    pub http_read_timeouts: Family<ReadTimeoutLabels, Counter>,
    /// Connections a listener closed at once because it held `http.maxConnections` already.
    pub http_connections_refused: Family<ListenerLabels, Counter>,
    /// Connections a listener holds open.
    pub http_connections_open: Family<ListenerLabels, Gauge>,
    /// What each mapping's sync did since the process started, for the receiver's sync report
    /// (`GET /sync/status`, which the mappings' status shows); not exported on `/metrics`.
    pub activity: std::sync::Arc<MappingActivity>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hubspot_operator");
        let m = Metrics {
            webhook_requests: Family::default(),
            webhook_events: Family::default(),
            events_pending: Gauge::default(),
            oldest_pending_age_seconds: Gauge::default(),
            records_delivered: Family::default(),
            sink_failures: Family::default(),
            records_dead_lettered: Family::default(),
            dead_letters: Gauge::default(),
            hubspot_calls: CallMetrics::default(),
            batch_read_objects: Histogram::new([1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 75.0, 99.0, 100.0]),
            batch_wait_seconds: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0]),
            backfill_hints: Counter::default(),
            ingest_requests: Family::default(),
            ingest_records: Family::default(),
            reverse_records: Family::default(),
            reverse_pending: Gauge::default(),
            reverse_rejected: Gauge::default(),
            reverse_source_failures: Family::default(),
            timeline_requests: Family::default(),
            timeline_occurrences: Family::default(),
            timeline_calls: Family::default(),
            timeline_activity: Default::default(),
            http_read_timeouts: Family::default(),
            http_connections_refused: Family::default(),
            http_connections_open: Family::default(),
            activity: Default::default(),
            registry: Registry::default(),
        };
        registry.register("webhook_requests", "Webhook requests by outcome", m.webhook_requests.clone());
        registry.register("webhook_events", "Webhook events by outcome", m.webhook_events.clone());
        registry.register("events_pending", "Events not yet delivered to every destination", m.events_pending.clone());
        registry.register(
            "oldest_pending_event_age_seconds",
            "Seconds the oldest event not yet delivered to every destination has been in the event log",
            m.oldest_pending_age_seconds.clone(),
        );
        registry.register("records_delivered", "Records delivered to a destination", m.records_delivered.clone());
        registry.register("sink_failures", "Failed delivery attempts to a destination", m.sink_failures.clone());
        registry.register(
            "records_dead_lettered",
            "Records a destination refused, put in the dead-letter store",
            m.records_dead_lettered.clone(),
        );
        registry.register("dead_letters", "Records currently in the dead-letter store", m.dead_letters.clone());
        m.hubspot_calls.register(&mut registry);
        registry.register("batch_read_objects", "Objects per HubSpot batch read", m.batch_read_objects.clone());
        registry.register(
            "batch_wait_seconds",
            "Seconds the oldest event of a batch waited before the worker took it up",
            m.batch_wait_seconds.clone(),
        );
        registry.register("backfill_hints", "Change hints appended by the catch-up search", m.backfill_hints.clone());
        registry.register("ingest_requests", "Ingest API requests by outcome", m.ingest_requests.clone());
        registry.register("ingest_records", "Ingested records by outcome", m.ingest_records.clone());
        registry.register("reverse_records", "Records written to or refused by HubSpot", m.reverse_records.clone());
        registry.register("reverse_pending", "Ingested records waiting for HubSpot", m.reverse_pending.clone());
        registry.register("reverse_rejected", "Ingested records HubSpot refused", m.reverse_rejected.clone());
        registry.register(
            "reverse_source_failures",
            "Failed polls of a source of records for HubSpot",
            m.reverse_source_failures.clone(),
        );
        registry.register("timeline_requests", "Timeline API requests by outcome", m.timeline_requests.clone());
        registry.register("timeline_occurrences", "Timeline occurrences by outcome", m.timeline_occurrences.clone());
        registry.register(
            "timeline_calls",
            "HubSpot calls of the timeline worker, by purpose",
            m.timeline_calls.clone(),
        );
        registry.register(
            "http_read_timeouts",
            "Requests whose headers or body a listener stopped waiting for",
            m.http_read_timeouts.clone(),
        );
        registry.register(
            "http_connections_refused",
            "Connections closed at once because the listener held its maximum",
            m.http_connections_refused.clone(),
        );
        registry.register(
            "http_connections_open",
            "Connections a listener holds open",
            m.http_connections_open.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    pub fn webhook_request(&self, outcome: &str) {
        self.webhook_requests.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
    }

    pub fn http_read_timeout(&self, listener: &str, phase: &str) {
        self.http_read_timeouts
            .get_or_create(&ReadTimeoutLabels { listener: listener.into(), phase: phase.into() })
            .inc();
    }

    pub fn http_connection_refused(&self, listener: &str) {
        self.http_connections_refused.get_or_create(&ListenerLabels { listener: listener.into() }).inc();
    }

    /// The open-connections gauge of `listener`.
    pub fn http_connections_open(&self, listener: &str) -> Gauge {
        self.http_connections_open.get_or_create(&ListenerLabels { listener: listener.into() }).clone()
    }
}

impl CallObserver for Metrics {
    fn call_ended(&self, operation: &str, outcome: &str) {
        self.hubspot_calls.call_ended(operation, outcome);
    }

    fn request_took(&self, seconds: f64) {
        self.hubspot_calls.request_took(seconds);
    }

    fn batch_read(&self, objects: usize) {
        self.batch_read_objects.observe(objects as f64);
    }
}

/// What each mapping's sync did since the process started, kept by the sync and reverse
/// workers as they go.
#[derive(Default)]
pub struct MappingActivity {
    mappings: Mutex<HashMap<String, MappingReport>>,
}

impl MappingActivity {
    pub fn delivered(&self, mapping: &str, records: usize) {
        self.update(mapping, |report| report.records_delivered += records as u64);
    }

    pub fn written(&self, mapping: &str, records: usize) {
        self.update(mapping, |report| report.records_written += records as u64);
    }

    /// A step of `mapping` completed: what it took is delivered, dead-lettered or rejected.
    pub fn succeeded(&self, mapping: &str, at_ms: i64) {
        self.update(mapping, |report| report.last_success_ms = Some(at_ms));
    }

    /// A step of `mapping` left work pending because of `message`.
    pub fn failed(&self, mapping: &str, message: &str, at_ms: i64) {
        self.update(mapping, |report| {
            report.last_error = Some(ReportedError { message: message.into(), at_ms, correlation_id: None })
        });
    }

    fn update(&self, mapping: &str, change: impl FnOnce(&mut MappingReport)) {
        let mut mappings = self.mappings.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        change(mappings.entry(mapping.to_string()).or_default());
    }

    /// Each mapping's report so far.
    pub fn snapshot(&self) -> HashMap<String, MappingReport> {
        self.mappings.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// What each timeline event type did since the process started, kept by the timeline API and
/// worker as they go; the store adds what it holds.
#[derive(Default)]
pub struct TimelineActivity {
    types: Mutex<HashMap<String, TimelineReport>>,
}

impl TimelineActivity {
    pub fn accepted(&self, event_type: &str, occurrences: u64) {
        self.update(event_type, |report| report.accepted += occurrences);
    }

    /// A batch of `event_type` was settled: `delivered` are in HubSpot.
    pub fn succeeded(&self, event_type: &str, delivered: u64, at_ms: i64) {
        self.update(event_type, |report| {
            report.delivered += delivered;
            report.last_success_ms = Some(at_ms);
        });
    }

    /// A batch of `event_type` stays queued because of `message`.
    pub fn failed(&self, event_type: &str, message: &str, correlation_id: Option<String>, at_ms: i64) {
        self.update(event_type, |report| {
            report.last_error = Some(ReportedError { message: message.into(), at_ms, correlation_id })
        });
    }

    fn update(&self, event_type: &str, change: impl FnOnce(&mut TimelineReport)) {
        let mut types = self.types.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        change(types.entry(event_type.to_string()).or_default());
    }

    /// Each event type's report so far.
    pub fn snapshot(&self) -> HashMap<String, TimelineReport> {
        self.types.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_adds_up_per_mapping() {
        let activity = MappingActivity::default();
        activity.delivered("default/contacts", 3);
        activity.delivered("default/contacts", 2);
        activity.written("default/leads", 7);
        activity.failed("default/contacts", "destination http-0: 503", 10);
        activity.succeeded("default/contacts", 11);
        let snapshot = activity.snapshot();
        let contacts = &snapshot["default/contacts"];
        assert_eq!((contacts.records_delivered, contacts.records_written), (5, 0));
        assert_eq!(contacts.last_success_ms, Some(11));
        assert_eq!(contacts.last_error.as_ref().map(|e| e.at_ms), Some(10));
        assert_eq!(snapshot["default/leads"].records_written, 7);
    }
}
