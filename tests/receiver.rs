//! The webhook receiver over real HTTP, with the embedded event log in a temporary directory.

mod common;

use std::sync::Arc;

use common::{
    CLIENT_SECRET, RunningReceiver, WAIT, batch_body, now_ms, receiver_config, redelivery, sample_event,
    signed_request, signed_request_at,
};
use futures::future::BoxFuture;
use hubspot::WebhookEvent;
use hubspot::signature::{
    HEADER_SIGNATURE, HEADER_SIGNATURE_V3, HEADER_SIGNATURE_VERSION, HEADER_TIMESTAMP, MAX_TIMESTAMP_AGE_MS, sign_v1,
    sign_v3,
};
use model::config::{LogLimits, ReceiverConfig};
use receiver::eventlog::{AppendOutcome, EmbeddedEventLog, EncodedEvent, EventLog, EventLogError, StoredEvent};
use reqwest::StatusCode;
use tempfile::TempDir;

struct Fixture {
    _dir: TempDir,
    log: Arc<EmbeddedEventLog>,
    receiver: RunningReceiver,
    client: reqwest::Client,
}

impl Fixture {
    async fn start() -> Fixture {
        Fixture::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut ReceiverConfig)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut config = receiver_config(dir.path());
        configure(&mut config);
        let log = Arc::new(EmbeddedEventLog::open(&config.event_log_path()).unwrap());
        let receiver = RunningReceiver::start(&config, log.clone()).await;
        let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
        Fixture { _dir: dir, log, receiver, client }
    }

    async fn stored(&self) -> Vec<WebhookEvent> {
        self.log.pending(1000).await.unwrap().into_iter().map(|s| s.event).collect()
    }

    async fn metrics_text(&self) -> String {
        let response = self.client.get(self.receiver.metrics_url()).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[tokio::test]
async fn valid_batch_is_stored_and_acknowledged() {
    let fx = Fixture::start().await;
    let events = vec![sample_event(1, 100), sample_event(2, 200)];
    let response = signed_request(&fx.client, &fx.receiver.webhook_url(), batch_body(&events)).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer, serde_json::json!({"appended": 2, "duplicates": 0}));
    assert_eq!(fx.stored().await, events);
}

#[tokio::test]
async fn redelivered_batch_is_acknowledged_and_stored_once() {
    let fx = Fixture::start().await;
    let events = vec![sample_event(1, 100), sample_event(2, 200)];
    let url = fx.receiver.webhook_url();
    let first = signed_request(&fx.client, &url, batch_body(&events)).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let retried: Vec<_> = events.iter().map(redelivery).collect();
    let second = signed_request(&fx.client, &url, batch_body(&retried)).send().await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    let answer: serde_json::Value = second.json().await.unwrap();
    assert_eq!(answer, serde_json::json!({"appended": 0, "duplicates": 2}));

    assert_eq!(fx.stored().await, events);
    let metrics = fx.metrics_text().await;
    assert!(has_line(&metrics, r#"hubspot_operator_webhook_events_total{outcome="appended"} 2"#), "{metrics}");
    assert!(has_line(&metrics, r#"hubspot_operator_webhook_events_total{outcome="duplicate"} 2"#), "{metrics}");
    assert!(has_line(&metrics, r#"hubspot_operator_webhook_requests_total{outcome="accepted"} 2"#), "{metrics}");
    assert!(has_line(&metrics, "hubspot_operator_events_pending 2"), "{metrics}");
}

#[tokio::test]
async fn signature_over_the_query_string_is_checked() {
    let fx = Fixture::start().await;
    let url = format!("{}?portal=62515", fx.receiver.webhook_url());
    let body = batch_body(&[sample_event(1, 100)]);
    let response = signed_request(&fx.client, &url, body.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let signed_without_query = fx.receiver.webhook_url();
    let response =
        signed_request_at(&fx.client, &url, &signed_without_query, body, CLIENT_SECRET, now_ms()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// Sends `request`, expects 401 with a body that reveals nothing, and nothing stored.
async fn assert_refused(fx: &Fixture, request: reqwest::RequestBuilder) {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.text().await.unwrap(), "invalid signature");
    assert!(fx.stored().await.is_empty());
}

#[tokio::test]
async fn requests_without_a_valid_signature_are_refused() {
    let fx = Fixture::start().await;
    let url = fx.receiver.webhook_url();
    let body = batch_body(&[sample_event(1, 100)]);
    let now = now_ms();

    // Tampered body: signed over one batch, carrying another.
    let signed = signed_request_at(&fx.client, &url, &url, body.clone(), CLIENT_SECRET, now);
    let mut tampered = signed.build().unwrap();
    *tampered.body_mut() = Some(batch_body(&[sample_event(1, 666)]).into());
    let response = fx.client.execute(tampered).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(fx.stored().await.is_empty());

    assert_refused(&fx, signed_request_at(&fx.client, &url, &url, body.clone(), "another-secret", now)).await;
    let stale = now - MAX_TIMESTAMP_AGE_MS - 60_000;
    assert_refused(&fx, signed_request_at(&fx.client, &url, &url, body.clone(), CLIENT_SECRET, stale)).await;
    assert_refused(&fx, fx.client.post(&url).body(body.clone())).await;
    // A timestamp alone is no signature.
    assert_refused(&fx, fx.client.post(&url).header(HEADER_TIMESTAMP, now.to_string()).body(body.clone())).await;
    // Legacy signatures are off by default, even when valid.
    let v1 = sign_v1(CLIENT_SECRET, &body);
    assert_refused(
        &fx,
        fx.client.post(&url).header(HEADER_SIGNATURE, v1).header(HEADER_SIGNATURE_VERSION, "v1").body(body),
    )
    .await;

    let metrics = fx.metrics_text().await;
    assert!(has_line(&metrics, r#"hubspot_operator_webhook_requests_total{outcome="unauthorized"} 6"#), "{metrics}");
}

#[tokio::test]
async fn legacy_v1_signature_is_accepted_when_enabled() {
    let fx = Fixture::start_with(|c| c.webhooks.accept_legacy_signatures = true).await;
    let body = batch_body(&[sample_event(1, 100)]);
    let signature = sign_v1(CLIENT_SECRET, &body);
    let request = |signature: String| {
        fx.client
            .post(fx.receiver.webhook_url())
            .header(HEADER_SIGNATURE, signature)
            .header(HEADER_SIGNATURE_VERSION, "v1")
            .body(body.clone())
    };
    assert_refused(&fx, request(sign_v1("another-secret", &body))).await;
    let response = request(signature).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(fx.stored().await, vec![sample_event(1, 100)]);
}

#[tokio::test]
async fn behind_a_proxy_the_public_url_is_signed() {
    let public = "https://hooks.example.com/hubspot/";
    let fx = Fixture::start_with(|c| c.webhooks.public_url = Some(public.into())).await;
    let url = fx.receiver.webhook_url();
    let body = batch_body(&[sample_event(1, 100)]);

    assert_refused(&fx, signed_request_at(&fx.client, &url, &url, body.clone(), CLIENT_SECRET, now_ms())).await;

    let public_uri = "https://hooks.example.com/hubspot/webhooks/hubspot";
    let response = signed_request_at(&fx.client, &url, public_uri, body, CLIENT_SECRET, now_ms()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(fx.stored().await, vec![sample_event(1, 100)]);
}

#[tokio::test]
async fn malformed_batches_are_refused_after_the_signature_check() {
    let fx = Fixture::start().await;
    let url = fx.receiver.webhook_url();
    let single_object = serde_json::to_vec(&sample_event(1, 100)).unwrap();
    let missing_field = br#"[{"eventId":1,"subscriptionId":2,"portalId":3}]"#.to_vec();
    for body in [b"[{not json".to_vec(), single_object, missing_field] {
        let response = signed_request(&fx.client, &url, body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let reason = response.text().await.unwrap();
        assert!(reason.starts_with("expected a JSON array of webhook events"), "{reason}");
    }
    // Unsigned garbage is refused as unsigned, before anyone parses it.
    assert_refused(&fx, fx.client.post(&url).body("[{not json")).await;

    assert!(fx.stored().await.is_empty());
    let metrics = fx.metrics_text().await;
    assert!(has_line(&metrics, r#"hubspot_operator_webhook_requests_total{outcome="malformed"} 3"#), "{metrics}");
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let fx = Fixture::start_with(|c| c.webhooks.max_body_bytes = 2048).await;
    let url = fx.receiver.webhook_url();
    let events: Vec<_> = (0..40).map(|i| sample_event(i, i)).collect();
    let body = batch_body(&events);
    assert!(body.len() > 2048);

    let response = signed_request(&fx.client, &url, body.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Without a Content-Length (chunked), the limit holds while reading.
    let status_line = send_chunked(&fx.receiver.base_url, &body).await;
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");

    assert!(fx.stored().await.is_empty());
    let metrics = fx.metrics_text().await;
    assert!(has_line(&metrics, r#"hubspot_operator_webhook_requests_total{outcome="too_large"} 2"#), "{metrics}");
}

/// POSTs `body` (signed v3) to the webhook path in chunked transfer encoding over a plain TCP
/// connection; returns the response's status line.
async fn send_chunked(base_url: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let addr = base_url.trim_start_matches("http://");
    let uri = format!("{base_url}/webhooks/hubspot");
    let timestamp = now_ms();
    let signature = sign_v3(CLIENT_SECRET, "POST", &uri, body, timestamp);
    let mut request = format!(
        "POST /webhooks/hubspot HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n{HEADER_SIGNATURE_V3}: {signature}\r\n{HEADER_TIMESTAMP}: {timestamp}\r\n\
         Connection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(512) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");

    tokio::time::timeout(WAIT, async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(&request).await.unwrap();
        let mut response = Vec::new();
        // The server may answer and close before it read everything; what it answered counts.
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).lines().next().unwrap_or_default().to_string()
    })
    .await
    .expect("no answer to the chunked request")
}

/// A log whose storage is gone: every call fails.
struct BrokenLog;

impl EventLog for BrokenLog {
    fn append_encoded(&self, _: Vec<EncodedEvent>) -> BoxFuture<'_, receiver::eventlog::Result<AppendOutcome>> {
        Box::pin(async { Err(EventLogError::storage("writing the log file", "disk full")) })
    }
    fn pending(&self, _: usize) -> BoxFuture<'_, receiver::eventlog::Result<Vec<StoredEvent>>> {
        Box::pin(async { Err(EventLogError::storage("writing the log file", "disk full")) })
    }
    fn release(&self, _: Vec<u64>) -> BoxFuture<'_, receiver::eventlog::Result<()>> {
        Box::pin(async { Err(EventLogError::storage("writing the log file", "disk full")) })
    }
    fn pending_count(&self) -> BoxFuture<'_, receiver::eventlog::Result<u64>> {
        Box::pin(async { Err(EventLogError::storage("writing the log file", "disk full")) })
    }
    fn oldest_pending_age(&self) -> BoxFuture<'_, receiver::eventlog::Result<Option<std::time::Duration>>> {
        Box::pin(async { Err(EventLogError::storage("writing the log file", "disk full")) })
    }
    fn notified(&self) -> BoxFuture<'_, ()> {
        Box::pin(futures::future::pending())
    }
}

#[tokio::test]
async fn failed_append_asks_hubspot_to_retry() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = RunningReceiver::start(&receiver_config(dir.path()), Arc::new(BrokenLog)).await;
    let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();

    let body = batch_body(&[sample_event(1, 100)]);
    let response = signed_request(&client, &receiver.webhook_url(), body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers().get("retry-after").unwrap(), "5");

    let ready = client.get(format!("{}/readyz", receiver.base_url)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health = client.get(format!("{}/healthz", receiver.base_url)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let metrics = client.get(receiver.metrics_url()).send().await.unwrap().text().await.unwrap();
    assert!(has_line(&metrics, r#"hubspot_operator_webhook_requests_total{outcome="unavailable"} 1"#), "{metrics}");
}

#[tokio::test]
async fn health_readiness_and_metrics_endpoints() {
    let fx = Fixture::start().await;
    // The probes answer on both ports: load balancers health-check the public one.
    for base in [&fx.receiver.base_url, &fx.receiver.status_url] {
        let health = fx.client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK, "{base}");
        assert_eq!(health.text().await.unwrap(), "ok");
        let ready = fx.client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::OK, "{base}");
    }

    let response = fx.client.get(fx.receiver.metrics_url()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    assert!(has_line(&text, "# TYPE hubspot_operator_events_pending gauge"), "{text}");
    assert!(has_line(&text, "hubspot_operator_events_pending 0"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

/// Whatever publishes the public port (an Ingress, a load balancer) publishes neither
/// `/metrics` nor `/sync/status`: they are on the status port only, and it serves nothing else.
#[tokio::test]
async fn metrics_and_sync_status_are_served_on_the_status_port_only() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = RunningReceiver::run(receiver_config(dir.path())).await;
    let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    common::wait_ready(&receiver.status_url).await;

    for path in ["/metrics", "/sync/status"] {
        let public = client.get(format!("{}{path}", receiver.base_url)).send().await.unwrap();
        assert_eq!(public.status(), StatusCode::NOT_FOUND, "{path} on the public port");
        let status = client.get(format!("{}{path}", receiver.status_url)).send().await.unwrap();
        assert_eq!(status.status(), StatusCode::OK, "{path} on the status port");
    }
    let report: serde_json::Value =
        client.get(format!("{}/sync/status", receiver.status_url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(report["eventsPending"], 0, "{report}");

    let body = batch_body(&[sample_event(1, 100)]);
    let on_status_port = format!("{}/webhooks/hubspot", receiver.status_url);
    let refused = signed_request(&client, &on_status_port, body.clone()).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND, "webhooks on the status port");
    let accepted = signed_request(&client, &receiver.webhook_url(), body).send().await.unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
    receiver.stop().await.unwrap();
}

#[tokio::test]
async fn serve_stops_on_shutdown() {
    let fx = Fixture::start().await;
    let url = fx.receiver.webhook_url();
    let response = signed_request(&fx.client, &url, batch_body(&[sample_event(1, 100)])).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let Fixture { receiver, client, .. } = fx;
    receiver.stop().await.unwrap();
    assert!(client.get(url.replace("/webhooks/hubspot", "/healthz")).send().await.is_err());
}

/// The embedded log, with every append held until the test opens the gate.
struct GatedLog {
    inner: EmbeddedEventLog,
    /// Signalled when an append is waiting at the gate.
    entered: tokio::sync::Notify,
    gate: tokio::sync::Semaphore,
}

impl EventLog for GatedLog {
    fn append_encoded(&self, events: Vec<EncodedEvent>) -> BoxFuture<'_, receiver::eventlog::Result<AppendOutcome>> {
        Box::pin(async move {
            self.entered.notify_one();
            let _pass = self.gate.acquire().await.expect("the gate stays open");
            self.inner.append_encoded(events).await
        })
    }
    fn pending(&self, max: usize) -> BoxFuture<'_, receiver::eventlog::Result<Vec<StoredEvent>>> {
        self.inner.pending(max)
    }
    fn release(&self, seqs: Vec<u64>) -> BoxFuture<'_, receiver::eventlog::Result<()>> {
        self.inner.release(seqs)
    }
    fn pending_count(&self) -> BoxFuture<'_, receiver::eventlog::Result<u64>> {
        self.inner.pending_count()
    }
    fn oldest_pending_age(&self) -> BoxFuture<'_, receiver::eventlog::Result<Option<std::time::Duration>>> {
        self.inner.oldest_pending_age()
    }
    fn notified(&self) -> BoxFuture<'_, ()> {
        self.inner.notified()
    }
}

/// What a pod replacement relies on: after SIGTERM (here the shutdown future) the receiver takes
/// no new connections, but a batch it is already storing is stored and answered 2xx.
#[tokio::test]
async fn a_batch_in_flight_at_shutdown_is_stored_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let config = receiver_config(dir.path());
    let log = Arc::new(GatedLog {
        inner: EmbeddedEventLog::open(&config.event_log_path()).unwrap(),
        entered: tokio::sync::Notify::new(),
        gate: tokio::sync::Semaphore::new(0),
    });
    let receiver = RunningReceiver::start(&config, log.clone()).await;
    let address = receiver.base_url.trim_start_matches("http://").to_string();
    let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    let in_flight =
        tokio::spawn(signed_request(&client, &receiver.webhook_url(), batch_body(&[sample_event(7, 100)])).send());
    tokio::time::timeout(WAIT, log.entered.notified()).await.expect("the batch reached the event log");

    let stopped = tokio::spawn(receiver.stop());
    common::eventually("the receiver to stop accepting connections", || async {
        tokio::net::TcpStream::connect(&address).await.is_err()
    })
    .await;
    assert!(!stopped.is_finished(), "the server waits for the request in flight");

    log.gate.add_permits(1);
    let response = tokio::time::timeout(WAIT, in_flight).await.unwrap().unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::timeout(WAIT, stopped).await.unwrap().unwrap().expect("a clean shutdown");
    let stored = log.pending(10).await.unwrap();
    assert_eq!(stored.iter().map(|s| s.event.event_id).collect::<Vec<_>>(), [7]);
}

// Against both event-log backends.

per_backend!(
    a_full_log_is_answered_503_with_retry_after_and_stores_nothing_new,
    a_batch_the_log_fills_up_in_is_answered_503_and_its_retry_stores_each_event_once,
    metrics_show_pending_events_and_the_age_of_the_oldest
);

async fn metrics_of(client: &reqwest::Client, receiver: &RunningReceiver) -> String {
    let response = client.get(receiver.metrics_url()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

async fn a_full_log_is_answered_503_with_retry_after_and_stores_nothing_new(backend: common::LogBackend) {
    let dir = tempfile::tempdir().unwrap();
    let log = backend.open_with(LogLimits { max_pending_events: 2, max_pending_bytes: 0 }).await;
    let receiver = RunningReceiver::start(&receiver_config(dir.path()), log.clone()).await;
    let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    let url = receiver.webhook_url();
    let stored = [sample_event(1, 100), sample_event(2, 100)];
    let refused = [sample_event(3, 100), sample_event(4, 100)];

    let response = signed_request(&client, &url, batch_body(&stored)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = signed_request(&client, &url, batch_body(&refused)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers().get("retry-after").unwrap(), "5");
    assert_eq!(log.pending_count().await.unwrap(), 2);
    assert_eq!(events_of_log(log.as_ref()).await, stored);

    // HubSpot's retry of the stored batch is recognised and answered 2xx.
    let retry: Vec<_> = stored.iter().map(redelivery).collect();
    let response = signed_request(&client, &url, batch_body(&retry)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let metrics = metrics_of(&client, &receiver).await;
    assert!(has_line(&metrics, r#"hubspot_operator_webhook_requests_total{outcome="log_full"} 1"#), "{metrics}");
    assert!(has_line(&metrics, r#"hubspot_operator_webhook_requests_total{outcome="accepted"} 2"#), "{metrics}");

    // Once the worker delivered what the log held, the refused batch is taken when retried.
    let seqs = log.pending(10).await.unwrap().iter().map(|s| s.seq).collect();
    log.release(seqs).await.unwrap();
    let retry: Vec<_> = refused.iter().map(redelivery).collect();
    let response = signed_request(&client, &url, batch_body(&retry)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(events_of_log(log.as_ref()).await, retry);
    receiver.stop().await.unwrap();
}

/// Room for one more event, a batch of two: the embedded log stores neither, JetStream may
/// store the first. Either way the answer is not 2xx, and HubSpot's retry completes the batch.
async fn a_batch_the_log_fills_up_in_is_answered_503_and_its_retry_stores_each_event_once(backend: common::LogBackend) {
    let dir = tempfile::tempdir().unwrap();
    let log = backend.open_with(LogLimits { max_pending_events: 3, max_pending_bytes: 0 }).await;
    let receiver = RunningReceiver::start(&receiver_config(dir.path()), log.clone()).await;
    let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    let url = receiver.webhook_url();
    let earlier = [sample_event(1, 100), sample_event(2, 100)];
    let batch = [sample_event(3, 100), sample_event(4, 100)];
    let response = signed_request(&client, &url, batch_body(&earlier)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = signed_request(&client, &url, batch_body(&batch)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    let taken = log.pending(1).await.unwrap();
    log.release(taken.iter().map(|s| s.seq).collect()).await.unwrap();
    let retry: Vec<_> = batch.iter().map(redelivery).collect();
    let response = signed_request(&client, &url, batch_body(&retry)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ids: Vec<u64> = events_of_log(log.as_ref()).await.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, [2, 3, 4]);
    receiver.stop().await.unwrap();
}

async fn metrics_show_pending_events_and_the_age_of_the_oldest(backend: common::LogBackend) {
    let dir = tempfile::tempdir().unwrap();
    let log = backend.open().await;
    let receiver = RunningReceiver::start(&receiver_config(dir.path()), log.clone()).await;
    let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    let metrics = metrics_of(&client, &receiver).await;
    assert!(has_line(&metrics, "hubspot_operator_oldest_pending_event_age_seconds 0.0"), "{metrics}");

    let response = signed_request(&client, &receiver.webhook_url(), batch_body(&[sample_event(1, 100)]));
    assert_eq!(response.send().await.unwrap().status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let metrics = metrics_of(&client, &receiver).await;
    assert!(has_line(&metrics, "hubspot_operator_events_pending 1"), "{metrics}");
    let age: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hubspot_operator_oldest_pending_event_age_seconds "))
        .expect("the oldest-pending gauge")
        .parse()
        .unwrap();
    assert!(age >= 1.0, "{metrics}");

    let seqs = log.pending(10).await.unwrap().iter().map(|s| s.seq).collect();
    log.release(seqs).await.unwrap();
    let metrics = metrics_of(&client, &receiver).await;
    assert!(has_line(&metrics, "hubspot_operator_events_pending 0"), "{metrics}");
    assert!(has_line(&metrics, "hubspot_operator_oldest_pending_event_age_seconds 0.0"), "{metrics}");
    receiver.stop().await.unwrap();
}

async fn events_of_log(log: &dyn EventLog) -> Vec<WebhookEvent> {
    log.pending(100).await.unwrap().into_iter().map(|s| s.event).collect()
}

/// HubSpot sends events that already occurred: one dated after the signature's window (or
/// before 1970) is refused with its whole batch, counted, and nothing is stored.
#[tokio::test]
async fn an_event_dated_beyond_the_signature_window_is_refused_and_nothing_stored() {
    let fx = Fixture::start().await;
    for occurred_at in [i64::MAX, now_ms() + MAX_TIMESTAMP_AGE_MS + 60_000, -1] {
        let mut forged = sample_event(2, 9);
        forged.subscription_type = "contact.deletion".into();
        forged.occurred_at = occurred_at;
        let body = batch_body(&[sample_event(1, 9), forged]);
        let response = signed_request(&fx.client, &fx.receiver.webhook_url(), body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "occurredAt {occurred_at}");
        assert!(response.text().await.unwrap().contains("occurredAt"));
    }
    assert!(fx.stored().await.is_empty());
    assert!(has_line(&fx.metrics_text().await, "hubspot_operator_webhook_requests_total{outcome=\"malformed\"} 3"));
}
