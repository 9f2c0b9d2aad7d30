//! The destinations against real endpoints: an axum server on 127.0.0.1:0, files in tempdirs.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use common::{Reply, SeenDelivery, TestDestination};
use model::config::SinkConfig;
use receiver::sync::sinks::{FileSink, HttpSink};
use receiver::sync::{Op, Record, Sink, SinkError};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn record(object_id: &str, email: &str, updated_at: &str) -> Record {
    Record {
        mapping: "crm/contacts".into(),
        object_type: "contacts".into(),
        object_id: object_id.into(),
        op: Op::Upsert,
        key: Some(email.into()),
        fields: BTreeMap::from([("first_name".to_string(), Some("Ada".to_string())), ("phone".to_string(), None)]),
        updated_at: updated_at.into(),
        idempotency_key: format!("key-{object_id}-{updated_at}"),
        associations: BTreeMap::new(),
    }
}

fn records() -> Vec<Record> {
    vec![
        record("1", "ada@example.com", "2026-11-26T18:00:00.000Z"),
        record("2", "bob@example.com", "2026-11-26T18:00:01.000Z"),
    ]
}

fn header<'a>(seen: &'a SeenDelivery, name: &str) -> &'a str {
    seen.headers.get(name).unwrap_or_else(|| panic!("missing header {name}")).to_str().unwrap()
}

/// Verifies a Standard Webhooks signature the way a receiving service would.
fn signature_verifies(seen: &SeenDelivery, secret: &str) -> bool {
    let key = BASE64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let id = header(seen, "webhook-id");
    let timestamp = header(seen, "webhook-timestamp");
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(&seen.body);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(&signed);
    let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    header(seen, "webhook-signature").split(' ').any(|candidate| candidate == expected)
}

async fn deliver(sink: &HttpSink, records: &[Record]) -> Result<(), SinkError> {
    tokio::time::timeout(Duration::from_secs(20), sink.deliver(records)).await.expect("delivery timed out")
}

#[tokio::test]
async fn http_posts_records_signed_in_standard_webhooks_format() {
    let destination = TestDestination::start(vec![]).await;
    let url = destination.url.clone();
    let sink = HttpSink::new(&url, Some(SECRET)).unwrap();
    deliver(&sink, &records()).await.unwrap();
    deliver(&sink, &records()).await.unwrap();
    deliver(&sink, &records()[..1]).await.unwrap();

    let seen = destination.seen();
    assert_eq!(seen.len(), 3);
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body, serde_json::json!({ "records": records() }));
    assert_eq!(body["records"][0]["idempotencyKey"], "key-1-2026-11-26T18:00:00.000Z");
    assert_eq!(body["records"][0]["fields"], serde_json::json!({"first_name": "Ada", "phone": null}));
    assert_eq!(header(&seen[0], "content-type"), "application/json");
    header(&seen[0], "webhook-timestamp").parse::<i64>().expect("timestamp is epoch seconds");
    assert!(seen.iter().all(|s| signature_verifies(s, SECRET)));
    assert!(!signature_verifies(&seen[0], "whsec_c29tZSBvdGhlciBzZWNyZXQ="));
    // The same records keep their message id; other records get another.
    assert_eq!(header(&seen[0], "webhook-id"), header(&seen[1], "webhook-id"));
    assert_ne!(header(&seen[0], "webhook-id"), header(&seen[2], "webhook-id"));
}

#[tokio::test]
async fn http_without_secret_sends_no_signature() {
    let destination = TestDestination::start(vec![]).await;
    let url = destination.url.clone();
    deliver(&HttpSink::new(&url, None).unwrap(), &records()).await.unwrap();
    let seen = destination.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.get("webhook-signature").is_none());
}

#[tokio::test]
async fn http_503_is_retryable_and_the_retry_is_the_same_message() {
    let destination = TestDestination::start(vec![Reply::from(503)]).await;
    let url = destination.url.clone();
    let sink = HttpSink::new(&url, Some(SECRET)).unwrap();
    let first = deliver(&sink, &records()).await.unwrap_err();
    assert!(matches!(first, SinkError::Retryable { retry_after: None, .. }), "{first:?}");
    deliver(&sink, &records()).await.unwrap();

    let seen = destination.seen();
    assert_eq!(seen.iter().map(|s| s.status).collect::<Vec<_>>(), vec![503, 200]);
    assert_eq!(seen[0].body, seen[1].body);
    assert_eq!(header(&seen[0], "webhook-id"), header(&seen[1], "webhook-id"));
}

#[tokio::test]
async fn http_429_reports_retry_after_without_retrying_on_its_own() {
    let destination = TestDestination::start(vec![Reply { retry_after: Some("7"), ..Reply::from(429) }]).await;
    let url = destination.url.clone();
    let sink = HttpSink::new(&url, None).unwrap();
    let error = deliver(&sink, &records()).await.unwrap_err();
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    assert!(!error.is_permanent());
    // The sink left the waiting to the worker: the destination saw exactly one request.
    assert_eq!(destination.seen().iter().map(|s| s.status).collect::<Vec<_>>(), vec![429]);
    // The worker's backoff never undercuts the destination's wish.
    let mut backoff = receiver::sync::Backoff::default();
    assert!(backoff.next_delay(error.retry_after()) >= Duration::from_secs(7));
}

#[tokio::test]
async fn http_400_is_permanent_and_not_delivered() {
    let destination = TestDestination::start(vec![Reply::from(400)]).await;
    let url = destination.url.clone();
    let sink = HttpSink::new(&url, None).unwrap();
    let error = deliver(&sink, &records()).await.unwrap_err();
    assert!(error.is_permanent(), "{error:?}");
    assert_eq!(destination.seen().iter().map(|s| s.status).collect::<Vec<_>>(), vec![400]);
}

#[tokio::test]
async fn http_connection_refused_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/records", listener.local_addr().unwrap());
    drop(listener);
    let error = deliver(&HttpSink::new(&url, None).unwrap(), &records()).await.unwrap_err();
    assert!(matches!(error, SinkError::Retryable { .. }), "{error:?}");
}

fn read_lines(path: &std::path::Path) -> Vec<Record> {
    std::fs::read_to_string(path).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[tokio::test]
async fn file_appends_json_lines_and_keeps_them_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = SinkConfig::File { path: "out/records.jsonl".into() };
    let sink = Sink::from_config(&config, &common::contacts_mapping(vec![]), dir.path()).unwrap();
    sink.deliver(&records()).await.unwrap();
    drop(sink);

    let path = dir.path().join("out/records.jsonl");
    let later = record("3", "cy@example.com", "2026-11-26T18:00:02.000Z");
    FileSink::new(path.clone()).deliver(std::slice::from_ref(&later)).await.unwrap();

    let mut expected = records();
    expected.push(later);
    assert_eq!(read_lines(&path), expected);
}

#[tokio::test]
async fn file_in_an_unwritable_place_is_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, b"").unwrap();
    let sink = FileSink::new(blocker.join("records.jsonl"));
    let error = sink.deliver(&records()).await.unwrap_err();
    assert!(matches!(error, SinkError::Retryable { .. }), "{error:?}");
}
