//! Logging and trace export shared by every subcommand, and the metrics of a receiver.
//!
//! Logs go to stderr as now. Spans are exported over OTLP/HTTP (protobuf) only when the
//! standard OpenTelemetry variables ask for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), so a cluster's existing collector settings apply.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `service.name` of the operator's spans unless `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES` name one.
pub const OPERATOR_SERVICE_NAME: &str = "hubspot-operator";
/// `service.name` of a receiver's spans unless the environment names one.
pub const RECEIVER_SERVICE_NAME: &str = "hubspot-operator-receiver";

/// The trace settings of the operator's own environment that the receiver pods it creates get
/// as well, so that one collector setting covers both. Not `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES`, which describe the operator's pod, nor
/// `OTEL_EXPORTER_OTLP_HEADERS`, which may hold a credential that would land in plain text in
/// every integration's StatefulSet.
const RECEIVER_INHERITED_VARS: &[&str] = &[
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
];

/// What [`init`] installed. [`Telemetry::shutdown`] exports the spans still buffered; call it
/// once the subcommand has finished.
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the trace exporter, if there is one (waits for the collector, at most
    /// the SDK's shutdown timeout of 5 s).
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "could not export the last spans");
        }
    }
}

/// Installs logging (human-readable, or JSON lines when `json` is set; `RUST_LOG` overrides
/// the default `info` level) and, when the environment configures an OTLP endpoint, trace
/// export with `default_service_name` unless the environment names the service.
pub fn init(json: bool, default_service_name: &str) -> Telemetry {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let log = if json {
        tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed()
    } else {
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed()
    };
    let mut layers = vec![log.with_filter(filter).boxed()];
    let (tracer_provider, problem) = match export_requested() {
        Ok(false) => (None, None),
        Ok(true) => match tracer_provider(default_service_name) {
            Ok(provider) => (Some(provider), None),
            Err(e) => (None, Some(format!("{e}"))),
        },
        Err(problem) => (None, Some(problem)),
    };
    if let Some(provider) = &tracer_provider {
        let tracer = provider.tracer("hubspot-operator");
        layers.push(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(exported()).boxed());
    }
    let _ = tracing_subscriber::registry().with(layers).try_init();
    if let Some(problem) = problem {
        tracing::warn!(%problem, "not exporting traces");
    } else if tracer_provider.is_some() {
        tracing::info!(endpoint = %traces_endpoint(), "exporting traces over OTLP/HTTP");
    }
    Telemetry { tracer_provider }
}

/// What goes to the collector: this crate's spans from debug level on (they are debug spans,
/// so that the logs do not change), and its log events of info level and above, which become
/// events of the span they happen in (an `error!` marks the span failed).
fn exported() -> tracing_subscriber::filter::FilterFn {
    tracing_subscriber::filter::filter_fn(|metadata| {
        let ours = metadata.target().starts_with("hubspot_operator");
        let level = if metadata.is_span() { tracing::Level::DEBUG } else { tracing::Level::INFO };
        ours && *metadata.level() <= level
    })
}

/// Whether the environment asks for trace export: an OTLP endpoint is set and the SDK is not
/// disabled. `Err` names a setting this build cannot honour.
fn export_requested() -> Result<bool, String> {
    let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    match var("OTEL_TRACES_EXPORTER").as_deref() {
        None | Some("otlp") => {}
        Some("none") => return Ok(false),
        Some(other) => return Err(format!("OTEL_TRACES_EXPORTER={other}: only otlp is supported")),
    }
    if var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none() && var("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
        return Ok(false);
    }
    let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
    match protocol.as_deref() {
        None | Some("http/protobuf") => Ok(true),
        Some(other) => Err(format!("OTLP protocol {other}: only http/protobuf is supported")),
    }
}

/// Where spans go, as the exporter resolves it: the traces endpoint as given, else the
/// general endpoint with `/v1/traces`.
fn traces_endpoint() -> String {
    match std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => endpoint,
        _ => format!(
            "{}/v1/traces",
            std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default().trim_end_matches('/')
        ),
    }
}

/// A batching OTLP/HTTP exporter configured by the environment: endpoint, headers, timeout
/// (`OTEL_EXPORTER_OTLP_*`), sampler (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), batching
/// (`OTEL_BSP_*`) and resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`).
fn tracer_provider(default_service_name: &str) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()?;
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource(default_service_name)).build())
}

/// The resource the environment describes, named `default_service_name` when it names no
/// service (the SDK's fallback is `unknown_service`).
fn resource(default_service_name: &str) -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|name| name.as_str() != "unknown_service");
    if named { detected } else { Resource::builder().with_service_name(default_service_name.to_string()).build() }
}

/// Of `vars` (the operator's environment), the trace settings its receiver pods get too (see
/// [`RECEIVER_INHERITED_VARS`]), in a stable order; empty when none is set.
pub fn receiver_trace_env(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut inherited: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(name, value)| RECEIVER_INHERITED_VARS.contains(&name.as_str()) && !value.is_empty())
        .collect();
    inherited.sort();
    inherited
}

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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
pub struct HubSpotCallLabels {
    pub operation: String,
    pub outcome: String,
}

/// Every metric of a receiver process (HTTP ingress, event log, sync worker, HubSpot client).
pub struct Metrics {
    pub registry: Registry,
    /// Webhook requests by outcome: accepted, unauthorized, malformed, too_large, log_full,
    /// unavailable.
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
    /// HubSpot API calls by operation and outcome (ok, retried status, error).
    pub hubspot_requests: Family<HubSpotCallLabels, Counter>,
    /// HubSpot API call latency in seconds.
    pub hubspot_latency: Histogram,
    /// Objects per HubSpot batch read (at most 100): how well reads are gathered.
    pub batch_read_objects: Histogram,
    /// How long the oldest event of a batch had waited when the worker took the batch up, in
    /// seconds: what gathering costs in lag (about `maxBatchWaitMilliseconds` for a batch that
    /// did not fill, more while the worker was busy or failing).
    pub batch_wait_seconds: Histogram,
    /// Change hints the catch-up search appended to the event log.
    pub backfill_hints: Counter,
    /// Ingest API requests by outcome: accepted, invalid, unauthorized, disabled,
    /// unknown_mapping, read_only_mapping, malformed, too_large, unavailable.
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
    /// What each mapping's sync did since the process started, for the receiver's sync report
    /// (`GET /sync/status`, which the mappings' status shows); not exported on `/metrics`.
    pub activity: std::sync::Arc<crate::sync::report::MappingActivity>,
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
            hubspot_requests: Family::default(),
            hubspot_latency: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            batch_read_objects: Histogram::new([1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 75.0, 99.0, 100.0]),
            batch_wait_seconds: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0]),
            backfill_hints: Counter::default(),
            ingest_requests: Family::default(),
            ingest_records: Family::default(),
            reverse_records: Family::default(),
            reverse_pending: Gauge::default(),
            reverse_rejected: Gauge::default(),
            reverse_source_failures: Family::default(),
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
        registry.register("hubspot_requests", "HubSpot API calls by operation and outcome", m.hubspot_requests.clone());
        registry.register("hubspot_request_duration_seconds", "HubSpot API call latency", m.hubspot_latency.clone());
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

    pub fn hubspot_call(&self, operation: &str, outcome: &str) {
        self.hubspot_requests
            .get_or_create(&HubSpotCallLabels { operation: operation.into(), outcome: outcome.into() })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_inherit_the_export_settings_only() {
        let vars = [
            ("OTEL_SERVICE_NAME", "my-operator"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer secret"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=operator-0"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", ""),
            ("PATH", "/usr/bin"),
        ]
        .map(|(name, value)| (name.to_string(), value.to_string()));
        let inherited = receiver_trace_env(vars);
        let names: Vec<&str> = inherited.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"]);
        assert!(receiver_trace_env([("PATH".to_string(), "/usr/bin".to_string())]).is_empty());
    }
}
