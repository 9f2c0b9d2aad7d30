//! Trace export of the receiver binary, against an OTLP/HTTP collector run by the test: the
//! spans of a webhook request and of the sync step it causes arrive as OTLP protobuf, with
//! their attributes, parents and the service's resource, when the receiver shuts down
//! gracefully; without an endpoint nothing is exported and nothing is logged about it.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::{
    ReceiverProcess, TestDestination, TestEmulator, batch_body, contact_event, emulator_receiver_config, eventually,
    free_port, now_ms, receiver_config, signed_request, wait_ready,
};
use model::config::{ReceiverConfig, SinkConfig};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde_json::json;

/// A span as the collector received it, with its resource's attributes.
#[derive(Clone, Debug)]
struct ExportedSpan {
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: HashMap<String, String>,
    resource: HashMap<String, String>,
}

impl ExportedSpan {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    fn is_child_of(&self, parent: &ExportedSpan) -> bool {
        self.trace_id == parent.trace_id && self.parent_span_id == parent.span_id
    }
}

/// An OTLP/HTTP trace collector on 127.0.0.1: `POST /v1/traces` with an
/// `ExportTraceServiceRequest` in protobuf, as the OpenTelemetry collector takes it.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
    /// Export requests that were not OTLP protobuf.
    refused: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<usize>>,
}

impl Collector {
    async fn start_on(address: &str) -> (Collector, String) {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .unwrap_or_else(|e| panic!("the test collector needs {address}, which is taken: {e}"));
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let collector = Collector::default();
        let app =
            axum::Router::new().route("/v1/traces", axum::routing::post(Self::export)).with_state(collector.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (collector, base_url)
    }

    async fn start() -> (Collector, String) {
        Self::start_on("127.0.0.1:0").await
    }

    async fn export(
        axum::extract::State(collector): axum::extract::State<Collector>,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        *collector.requests.lock().unwrap() += 1;
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let request = match ExportTraceServiceRequest::decode(body) {
            Ok(request) if content_type == "application/x-protobuf" => request,
            other => {
                collector.refused.lock().unwrap().push(format!("{content_type}: {other:?}"));
                return axum::http::StatusCode::BAD_REQUEST.into_response();
            }
        };
        let mut spans = collector.spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let resource = attributes(resource_spans.resource.map(|r| r.attributes).unwrap_or_default());
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(ExportedSpan {
                    name: span.name,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    attributes: attributes(span.attributes),
                    resource: resource.clone(),
                });
            }
        }
        let answer = ExportTraceServiceResponse::default().encode_to_vec();
        ([("content-type", "application/x-protobuf")], answer).into_response()
    }

    fn spans(&self) -> Vec<ExportedSpan> {
        self.spans.lock().unwrap().clone()
    }

    fn requests(&self) -> usize {
        *self.requests.lock().unwrap()
    }

    /// The one span named `name` whose attributes include `expected`.
    fn span(&self, name: &str, expected: &[(&str, &str)]) -> ExportedSpan {
        let matching: Vec<ExportedSpan> = self
            .spans()
            .into_iter()
            .filter(|s| s.name == name && expected.iter().all(|(k, v)| s.attribute(k) == Some(v)))
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "one {name} span with {expected:?}; exported: {:#?}",
            self.spans().iter().map(|s| (&s.name, &s.attributes)).collect::<Vec<_>>()
        );
        matching[0].clone()
    }

    /// The children of `parent` named `name`.
    fn children(&self, parent: &ExportedSpan, name: &str) -> Vec<ExportedSpan> {
        self.spans().into_iter().filter(|s| s.name == name && s.is_child_of(parent)).collect()
    }
}

fn attributes(list: Vec<KeyValue>) -> HashMap<String, String> {
    list.into_iter().map(|kv| (kv.key, kv.value.map(text).unwrap_or_default())).collect()
}

fn text(value: AnyValue) -> String {
    match value.value {
        Some(any_value::Value::StringValue(s)) => s,
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// A receiver binary running `config` with `env`, logging (at warn) to a file of `dir`.
struct Receiver {
    process: ReceiverProcess,
    base_url: String,
    log_path: std::path::PathBuf,
}

impl Receiver {
    async fn start(dir: &std::path::Path, mut config: ReceiverConfig, env: &[(&str, &str)]) -> Receiver {
        let port = free_port();
        config.listen = ([127, 0, 0, 1], port).into();
        let config_path = dir.join("config.yaml");
        std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap()).unwrap();
        let log_path = dir.join("receiver.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let process = ReceiverProcess::spawn_with(&config_path, env, log.into());
        let base_url = format!("http://127.0.0.1:{port}");
        wait_ready(&base_url).await;
        Receiver { process, base_url, log_path }
    }

    /// Sends one signed webhook batch with a change of contact `contact_id`; returns the answer.
    async fn send_change(&self, contact_id: &str) -> serde_json::Value {
        let event = contact_event(1, "contact.propertyChange", contact_id, now_ms());
        let url = format!("{}/webhooks/hubspot", self.base_url);
        let response = signed_request(&reqwest::Client::new(), &url, batch_body(&[event])).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// SIGTERM; returns what the receiver logged.
    fn stop(self) -> String {
        self.process.terminate();
        std::fs::read_to_string(&self.log_path).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_and_sync_spans_are_exported_at_shutdown() {
    let emulator = TestEmulator::start(Default::default()).await;
    let contact = emulator.create_contact(json!({"email": "ada@example.com", "firstname": "Ada"})).await;
    let destination = TestDestination::start(vec![]).await;
    let (collector, collector_url) = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = emulator_receiver_config(
        dir.path(),
        &emulator,
        vec![SinkConfig::Http { url: destination.url.clone(), signing_secret: None }],
    );
    // No catch-up search: the webhook's event is the only one.
    config.mappings[0].policy.backfill = false;
    let receiver = Receiver::start(
        dir.path(),
        config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector_url),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            // Ten minutes between exports: what arrives was flushed by the graceful shutdown.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    )
    .await;

    assert_eq!(receiver.send_change(&contact).await, json!({"appended": 1, "duplicates": 0}));
    eventually("the change to reach the destination", || async {
        destination.delivered().iter().any(|r| r.object_id == contact)
    })
    .await;
    assert_eq!(collector.requests(), 0, "nothing is exported before the batch is due or the receiver stops");
    let log = receiver.stop();

    assert!(collector.refused.lock().unwrap().is_empty(), "not OTLP protobuf: {:?}", collector.refused.lock().unwrap());
    let webhook =
        collector.span("webhook", &[("outcome", "accepted"), ("events", "1"), ("appended", "1"), ("duplicates", "0")]);
    assert_eq!(webhook.resource.get("service.name").map(String::as_str), Some("hubspot-operator-receiver"));
    assert_eq!(webhook.resource.get("deployment.environment").map(String::as_str), Some("test"));
    let append = collector.children(&webhook, "eventlog.append");
    assert_eq!(append.len(), 1, "the event log append is a child of the webhook span");
    assert_eq!(append[0].attribute("events"), Some("1"));

    // The sync step that released the event (earlier ones held it back to fill a batch read):
    // the batch read from HubSpot and the delivery.
    let step = collector.span("sync.step", &[("events", "1"), ("released", "1"), ("complete", "true")]);
    let read = collector.children(&step, "sync.batch_read");
    assert_eq!(read.len(), 1, "one batch read in the step");
    assert_eq!(read[0].attribute("object_type"), Some("contacts"));
    assert_eq!(read[0].attribute("objects"), Some("1"));
    let call = collector.children(&read[0], "hubspot.request");
    assert_eq!(call.len(), 1, "the HubSpot call is a child of the batch read");
    assert_eq!(call[0].attribute("operation"), Some("batch_read"));
    assert_eq!(call[0].attribute("status"), Some("200"));
    assert_eq!(call[0].attribute("attempts"), Some("1"));
    assert!(call[0].attribute("correlation_id").is_some_and(|id| !id.is_empty()), "HubSpot's correlation id");
    let delivery = collector.children(&step, "sync.deliver");
    assert_eq!(delivery.len(), 1, "one delivery in the step");
    assert_eq!(delivery[0].attribute("mapping"), Some("crm/contacts"));
    assert_eq!(delivery[0].attribute("sink"), Some("http-0"));
    assert_eq!(delivery[0].attribute("records"), Some("1"));
    assert_eq!(delivery[0].attribute("outcome"), Some("delivered"));
    assert!(!log.contains("opentelemetry"), "the exporter complained: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_name_and_traces_endpoint_come_from_the_environment() {
    let (collector, collector_url) = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let traces_url = format!("{collector_url}/v1/traces");
    let receiver = Receiver::start(
        dir.path(),
        receiver_config(dir.path()),
        &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces_url), ("OTEL_SERVICE_NAME", "crm-receiver")],
    )
    .await;
    receiver.send_change("7").await;
    receiver.stop();
    let webhook = collector.span("webhook", &[("outcome", "accepted")]);
    assert_eq!(webhook.resource.get("service.name").map(String::as_str), Some("crm-receiver"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported_and_nothing_logged() {
    // On the port an exporter falls back to, so that one exporting without being asked is seen.
    let (collector, _) = Collector::start_on("127.0.0.1:4318").await;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(
        dir.path(),
        receiver_config(dir.path()),
        &[("OTEL_SERVICE_NAME", "crm-receiver"), ("OTEL_BSP_SCHEDULE_DELAY", "10")],
    )
    .await;
    assert_eq!(receiver.send_change("7").await, json!({"appended": 1, "duplicates": 0}));
    let log = receiver.stop();
    assert_eq!(collector.requests(), 0, "no span was exported");
    assert_eq!(log, "", "nothing logged at warn level or above");
}
