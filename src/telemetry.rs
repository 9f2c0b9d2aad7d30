//! Logging and trace export shared by every subcommand.
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

mod capped_lines;
pub use capped_lines::{CUT_MARKER, CappedLines, MAX_LINE_BYTES};

/// `service.name` of the operator's spans unless `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES` name one.
pub const OPERATOR_SERVICE_NAME: &str = "hubspot-operator";
/// `service.name` of a receiver's spans unless the environment names one.
pub const RECEIVER_SERVICE_NAME: &str = "hubspot-operator-receiver";

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
/// the default `info` level; lines of at most [`MAX_LINE_BYTES`]) and, when the environment configures an OTLP endpoint, trace
/// export with `default_service_name` unless the environment names the service.
pub fn init(json: bool, default_service_name: &str) -> Telemetry {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // No log line is longer than `MAX_LINE_BYTES`, whatever a field holds.
    let stderr = CappedLines::new(std::io::stderr, json);
    let log = if json {
        tracing_subscriber::fmt::layer().json().with_writer(stderr).boxed()
    } else {
        tracing_subscriber::fmt::layer().with_writer(stderr).boxed()
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

/// The crates of this workspace, whose spans and events are exported (a target is a module
/// path, so it starts with its crate's name).
const OUR_CRATES: &[&str] = &["hubspot_operator", "operator", "receiver", "model", "emulator", "hubspot"];

/// What goes to the collector: our crates' spans from debug level on (they are debug spans,
/// so that the logs do not change), and their log events of info level and above, which become
/// events of the span they happen in (an `error!` marks the span failed).
fn exported() -> tracing_subscriber::filter::FilterFn {
    tracing_subscriber::filter::filter_fn(|metadata| {
        let target = metadata.target();
        let crate_name = target.split("::").next().unwrap_or(target);
        let ours = OUR_CRATES.contains(&crate_name);
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
