//! The NATS destination against a real JetStream server (`HUBSPOT_OPERATOR_TEST_NATS_URL`);
//! every test publishes to a stream and subject of its own.

mod common;

use std::collections::BTreeMap;

use common::{TestStream, WAIT, contacts_mapping, nats_url, unique_suffix};
use model::config::SinkConfig;
use receiver::sync::sinks::NatsSink;
use receiver::sync::{Op, Record, Sink, SinkError};

fn record(object_id: &str, first_name: &str) -> Record {
    let mut record = Record {
        mapping: "crm/contacts".into(),
        object_type: "contacts".into(),
        object_id: object_id.into(),
        op: Op::Upsert,
        key: Some(format!("{object_id}@example.com")),
        fields: BTreeMap::from([("first_name".to_string(), Some(first_name.to_string()))]),
        updated_at: "2026-11-26T18:00:00.000Z".into(),
        idempotency_key: String::new(),
        associations: BTreeMap::new(),
    };
    record.idempotency_key = receiver::sync::plan::idempotency_key(&record);
    record
}

async fn deliver(sink: &NatsSink, records: &[Record]) -> Result<(), SinkError> {
    tokio::time::timeout(WAIT, sink.deliver(records)).await.expect("delivery timed out")
}

#[tokio::test]
async fn one_message_per_record_and_replays_are_dropped_by_msg_id() {
    let stream = TestStream::create().await;
    let sink = NatsSink::new(&stream.url, &stream.subject).unwrap();
    let records = [record("1", "Ada"), record("2", "Bob")];
    deliver(&sink, &records).await.unwrap();
    assert_eq!(stream.message_count().await, 2);

    // The same records again (a redelivery after a crash): the stream keeps one copy each.
    deliver(&sink, &records).await.unwrap();
    deliver(&sink, &records[1..]).await.unwrap();
    assert_eq!(stream.message_count().await, 2);

    for (sequence, expected) in (1..).zip(&records) {
        let message = stream.message(sequence).await;
        assert_eq!(message.subject.as_str(), stream.subject);
        let payload: Record = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(&payload, expected);
        let id = message.headers.get("Nats-Msg-Id").expect("Nats-Msg-Id header");
        assert_eq!(id.as_str(), expected.idempotency_key);
    }

    // A new state of the same object is a new message.
    deliver(&sink, &[record("1", "Adeline")]).await.unwrap();
    assert_eq!(stream.message_count().await, 3);
}

#[tokio::test]
async fn a_subject_no_stream_captures_is_a_delivery_error() {
    let subject = format!("hsop.test.{}.nobody", unique_suffix());
    let sink = NatsSink::new(&nats_url(), &subject).unwrap();
    let error = deliver(&sink, &[record("1", "Ada")]).await.unwrap_err();
    assert!(matches!(error, SinkError::Retryable { .. }), "{error:?}");
    assert!(error.to_string().contains("no JetStream stream captures subject"), "{error}");
}

#[tokio::test]
async fn unreachable_server_is_retryable_and_credentials_stay_out_of_the_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://user:pw-not-shown@{}", listener.local_addr().unwrap());
    drop(listener);
    let error = deliver(&NatsSink::new(&url, "crm.contacts").unwrap(), &[record("1", "Ada")]).await.unwrap_err();
    assert!(matches!(error, SinkError::Retryable { .. }), "{error:?}");
    assert!(!error.to_string().contains("pw-not-shown"), "{error}");
}

#[tokio::test]
async fn bad_subjects_are_refused_when_the_sink_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = contacts_mapping(vec![]);
    for subject in ["crm.*", "crm.>", "crm contacts", "", "crm..contacts"] {
        let config = SinkConfig::Nats { url: "nats://127.0.0.1:9".into(), subject: subject.into() };
        assert!(Sink::from_config(&config, &mapping, dir.path()).is_err(), "{subject:?} accepted");
    }
    let no_url = SinkConfig::Nats { url: String::new(), subject: "crm.contacts".into() };
    assert!(Sink::from_config(&no_url, &mapping, dir.path()).is_err());
}

#[tokio::test]
async fn a_message_over_the_servers_limit_is_refused_by_its_position() {
    let stream = TestStream::create().await;
    let sink = NatsSink::new(&stream.url, &stream.subject).unwrap();
    let huge = record("2", &"x".repeat(common::nats_max_payload(&stream.url).await + 1));
    let error = deliver(&sink, &[record("1", "Ada"), huge, record("3", "Cy")]).await.unwrap_err();
    assert!(matches!(error, SinkError::Refused { record: 1, .. }), "{error:?}");
    assert!(error.is_permanent());
    assert!(error.to_string().contains("JetStream refused the message"), "{error}");
}
