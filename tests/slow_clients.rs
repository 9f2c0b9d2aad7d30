//! The receiver's listeners against clients that hold connections without finishing a request:
//! slow headers and bodies announced but never sent are cut off at the configured timeouts and
//! counted, a connection beyond the cap is closed at once, and a thousand such clients leave a
//! signed webhook answered as usual. The slow clients are real TCP connections on loopback.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{RunningReceiver, WAIT, batch_body, receiver_config, sample_event, signed_request};
use model::config::{HttpLimits, ReceiverConfig};
use receiver::eventlog::{EmbeddedEventLog, EventLog};
use receiver::metrics::{ListenerLabels, Metrics, ReadTimeoutLabels};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Headers cut off before their end.
const PARTIAL_HEADERS: &[u8] = b"POST /webhooks/hubspot HTTP/1.1\r\nHost: receiver\r\nContent-Type: appl";

/// Complete headers announcing a body of which only a few bytes come.
fn announced_body(path: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n[{{"
    )
    .into_bytes()
}

async fn start(limits: HttpLimits) -> (TempDir, RunningReceiver) {
    let dir = tempfile::tempdir().unwrap();
    let config = ReceiverConfig { http: limits, ..receiver_config(dir.path()) };
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&config.event_log_path()).unwrap());
    let receiver = RunningReceiver::start(&config, log).await;
    (dir, receiver)
}

/// A connection to `base_url` that has sent `bytes` and then nothing more.
async fn stalled(base_url: &str, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(base_url.trim_start_matches("http://")).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// Everything the receiver sends on `stream` until it closes it; fails the test if it never does.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    // A reset after the answer is a close too: the read's own result does not matter.
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await.expect("the receiver closes");
    String::from_utf8_lossy(&answer).into_owned()
}

fn timeouts(metrics: &Metrics, listener: &str, phase: &str) -> u64 {
    metrics
        .http_read_timeouts
        .get_or_create(&ReadTimeoutLabels { listener: listener.into(), phase: phase.into() })
        .get()
}

fn open_connections(metrics: &Metrics) -> i64 {
    metrics.http_connections_open.get_or_create(&ListenerLabels { listener: "public".into() }).get()
}

#[tokio::test]
async fn slow_headers_are_closed_and_missing_bodies_answered_408_on_every_port() {
    let limits = HttpLimits { header_read_timeout_seconds: 1, body_read_timeout_seconds: 1, ..Default::default() };
    let (_dir, receiver) = start(limits).await;

    let mut headers = stalled(&receiver.base_url, PARTIAL_HEADERS).await;
    let mut status_headers = stalled(&receiver.status_url, b"GET /metrics HTTP/1.1\r\nHo").await;
    let mut webhook_body = stalled(&receiver.base_url, &announced_body("/webhooks/hubspot")).await;
    let mut ingest_body = stalled(&receiver.base_url, &announced_body("/ingest/crm/contacts")).await;

    assert_eq!(until_closed(&mut headers).await, "", "closed without an answer");
    assert_eq!(until_closed(&mut status_headers).await, "");
    for stream in [&mut webhook_body, &mut ingest_body] {
        let answer = until_closed(stream).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    }
    let metrics = receiver.metrics.clone();
    let metrics = metrics.as_ref();
    assert_eq!(timeouts(metrics, "public", "headers"), 1);
    assert_eq!(timeouts(metrics, "status", "headers"), 1);
    assert_eq!(timeouts(metrics, "public", "body"), 2);
    let webhook_timeouts =
        metrics.webhook_requests.get_or_create(&receiver::metrics::OutcomeLabels { outcome: "timeout".into() }).get();
    assert_eq!(webhook_timeouts, 1);
    receiver.stop().await.unwrap();
}

#[tokio::test]
async fn a_connection_beyond_the_cap_is_closed_at_once_and_counted() {
    let (_dir, receiver) = start(HttpLimits { max_connections: 2, ..Default::default() }).await;
    let _held = [stalled(&receiver.base_url, b"").await, stalled(&receiver.base_url, b"").await];
    common::eventually("both connections to be held", || async { open_connections(&receiver.metrics) == 2 }).await;

    let mut third = stalled(&receiver.base_url, b"GET /healthz HTTP/1.1\r\nHost: r\r\n\r\n").await;
    assert_eq!(until_closed(&mut third).await, "", "closed without an answer");
    let refused =
        receiver.metrics.http_connections_refused.get_or_create(&ListenerLabels { listener: "public".into() }).get();
    assert_eq!(refused, 1);

    drop(_held);
    common::eventually("the held connections to be gone", || async { open_connections(&receiver.metrics) == 0 }).await;
    let healthy = reqwest::get(format!("{}/healthz", receiver.base_url)).await.unwrap();
    assert_eq!(healthy.status(), 200);
    receiver.stop().await.unwrap();
}

/// A thousand clients stalled mid-request while a signed batch comes in. The read timeouts are
/// a minute here, so a receiver that waited on the stalled clients would keep the batch that
/// long; the client gives up after 10 s, well under it. `bench ingest --slow-connections`
/// measures the latency itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stalled_clients_do_not_keep_a_signed_webhook_waiting() {
    let limits = HttpLimits { header_read_timeout_seconds: 60, body_read_timeout_seconds: 60, ..Default::default() };
    let (_dir, receiver) = start(limits).await;
    let mut stalled_clients = Vec::new();
    for i in 0..1000 {
        let bytes = if i % 2 == 0 { PARTIAL_HEADERS.to_vec() } else { announced_body("/webhooks/hubspot") };
        stalled_clients.push(stalled(&receiver.base_url, &bytes).await);
    }
    common::eventually("the stalled clients to be held", || async { open_connections(&receiver.metrics) == 1000 })
        .await;

    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let started = Instant::now();
    let response = signed_request(&client, &receiver.webhook_url(), batch_body(&[sample_event(1, 1)]))
        .send()
        .await
        .expect("answered while a thousand clients stall");
    println!("signed webhook answered in {:?} beside 1000 stalled clients", started.elapsed());
    assert_eq!(response.status(), 200);
    assert_eq!(timeouts(&receiver.metrics, "public", "headers") + timeouts(&receiver.metrics, "public", "body"), 0);

    drop(stalled_clients);
    receiver.stop().await.unwrap();
}
