//! Reverse sync over real HTTP against the HubSpot emulator: the ingest API, the durable
//! queue, batch upserts that isolate the records HubSpot refuses, retries that lose nothing,
//! echo suppression and the conflict policies.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::{
    CLIENT_SECRET, RunningReceiver, TestDestination, TestEmulator, contacts_mapping, eventually, receiver_config,
    serve_admin,
};
use emulator::{EmulatorConfig, TokenGrant};
use hubspot::client::RetryPolicy;
use hubspot::{HubSpotClient, UpsertInput};
use model::api::mapping::ConflictPolicy;
use model::config::{IngestConfig, MappingConfig, ReceiverConfig, SinkConfig};
use receiver::eventlog::{EmbeddedEventLog, EventLog};
use receiver::metrics::{Metrics, OutcomeLabels};
use receiver::reverse::{INVALID_RECORD, IngestRecord, Rejection, ReverseStore, ReverseWorker};
use serde_json::{Value, json};

const TOKEN: &str = "pat-na1-reverse";
const INGEST_TOKEN: &str = "ingest-token-7f3a9c";
const UPSERT_PATH: &str = "/crm/v3/objects/contacts/batch/upsert";

async fn emulator(webhook_url: Option<String>) -> TestEmulator {
    TestEmulator::start(EmulatorConfig {
        tokens: vec![TokenGrant { token: TOKEN.into(), scopes: None }],
        webhook_url,
        client_secret: CLIENT_SECRET.into(),
        ..Default::default()
    })
    .await
}

/// Email is the match key; firstname flows out only; lifecyclestage both ways; phone only in.
fn mapping(name: &str, policy: ConflictPolicy, sinks: Vec<SinkConfig>) -> MappingConfig {
    let mut mapping = MappingConfig { name: name.into(), ..contacts_mapping(sinks) };
    mapping.policy.conflict_policy = policy;
    mapping
}

fn config_for(data_dir: &std::path::Path, emulator: &TestEmulator, mappings: Vec<MappingConfig>) -> ReceiverConfig {
    let mut config = receiver_config(data_dir);
    config.hubspot.base_url = emulator.running.base_url();
    config.hubspot.access_token = TOKEN.into();
    config.ingest = Some(IngestConfig::new(INGEST_TOKEN.into(), 64 * 1024));
    config.mappings = mappings;
    config
}

/// A client that gives up quickly, so a test sees a failed step instead of long retries.
fn impatient_client(emulator: &TestEmulator) -> HubSpotClient {
    emulator.client(TOKEN).with_retry(RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        max_rate_limited: 0,
        request_timeout: Duration::from_secs(10),
    })
}

fn post_records(url: &str, token: Option<&str>, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    let request = reqwest::Client::new().post(url).header("content-type", "application/json").body(body);
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

fn record(mapping: &str, key: &str, changed_at: i64, properties: &[(&str, &str)]) -> IngestRecord {
    IngestRecord {
        mapping: mapping.into(),
        key: key.into(),
        properties: properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        changed_at,
    }
}

fn property(object: &Value, name: &str) -> Option<String> {
    object["properties"][name].as_str().map(str::to_string)
}

async fn contact_property(emulator: &TestEmulator, email: &str, name: &str) -> Option<String> {
    property(&emulator.contact_by_email(email).await?, name)
}

/// Every rejected record, oldest first.
async fn rejections(store: &ReverseStore) -> Vec<Rejection> {
    store.rejected(&Default::default(), usize::MAX).await.unwrap().0.into_iter().map(|r| r.rejection).collect()
}

type Counters = prometheus_client::metrics::family::Family<OutcomeLabels, prometheus_client::metrics::counter::Counter>;

fn counter(family: &Counters, outcome: &str) -> u64 {
    family.get_or_create(&OutcomeLabels { outcome: outcome.into() }).get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingested_records_reach_hubspot_with_only_their_mapped_fields() {
    let data_dir = tempfile::tempdir().unwrap();
    let emulator = emulator(None).await;
    let grace = emulator.create_contact(json!({"email": "grace@example.com", "firstname": "Grace"})).await;
    let config = config_for(data_dir.path(), &emulator, vec![mapping("crm/contacts", Default::default(), vec![])]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let metrics = Arc::new(Metrics::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let receiver = tokio::spawn(receiver::run(config, listener, metrics.clone(), async {
        let _ = stopped.await;
    }));

    let body = json!([
        {"email": "ada@example.com", "stage": "lead", "phone": "555-0100"},
        {"email": "grace@example.com", "phone": "555-0199"},
    ]);
    let response = post_records(&format!("{base_url}/ingest/crm/contacts"), Some(INGEST_TOKEN), body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"accepted": 2}));

    eventually("both records to be written to HubSpot", || async {
        contact_property(&emulator, "ada@example.com", "phone").await.as_deref() == Some("555-0100")
            && contact_property(&emulator, "grace@example.com", "phone").await.as_deref() == Some("555-0199")
    })
    .await;
    let ada = emulator.contact_by_email("ada@example.com").await.unwrap();
    assert_eq!(property(&ada, "lifecyclestage").as_deref(), Some("lead"));
    assert_eq!(property(&ada, "firstname"), None);
    let grace = emulator.object("contacts", &grace).await;
    assert_eq!(property(&grace, "firstname").as_deref(), Some("Grace"), "a field the record left out is untouched");

    // HubSpot was sent the mapped ToHubSpot/Both properties and the key, nothing else.
    let upserts = emulator.requests_to(UPSERT_PATH).await;
    assert!(!upserts.is_empty());
    for upsert in upserts {
        for input in upsert["body"]["inputs"].as_array().unwrap() {
            assert_eq!(input["idProperty"], "email");
            let sent: BTreeSet<&str> = input["properties"].as_object().unwrap().keys().map(String::as_str).collect();
            assert!(sent.is_subset(&BTreeSet::from(["email", "lifecyclestage", "phone"])), "{sent:?}");
        }
    }
    assert_eq!(counter(&metrics.ingest_requests, "accepted"), 1);
    assert_eq!(counter(&metrics.ingest_records, "accepted"), 2);
    eventually("the written counter", || async { counter(&metrics.reverse_records, "written") == 2 }).await;

    let _ = stop.send(());
    tokio::time::timeout(common::WAIT, receiver).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn ingest_needs_the_right_token_and_is_off_without_one() {
    let data_dir = tempfile::tempdir().unwrap();
    let emulator = emulator(None).await;
    let config = config_for(data_dir.path(), &emulator, vec![mapping("crm/contacts", Default::default(), vec![])]);
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&config.event_log_path()).unwrap());
    let store = Arc::new(ReverseStore::open(&config.reverse_store_path()).unwrap());
    let receiver = RunningReceiver::start_with_ingest(&config, log.clone(), store.clone()).await;
    let url = format!("{}/ingest/crm/contacts", receiver.base_url);
    let body = json!([{"email": "a@example.com", "phone": "1"}]).to_string();

    for token in [None, Some("wrong-token"), Some("ingest-token-7f3a9")] {
        let response = post_records(&url, token, body.clone()).send().await.unwrap();
        assert_eq!(response.status(), 401, "token {token:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    let unknown = post_records(&format!("{}/ingest/crm/deals", receiver.base_url), Some(INGEST_TOKEN), body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(unknown.text().await.unwrap().contains("no mapping crm/deals"));
    let rejected = reqwest::Client::new()
        .get(format!("{}/ingest/rejected", receiver.base_url))
        .bearer_auth(INGEST_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.json::<Value>().await.unwrap(), json!({"count": 0, "last": null}));
    assert_eq!(store.pending_count().await.unwrap(), 0);
    assert_eq!(counter(&receiver.metrics.ingest_requests, "unauthorized"), 3);
    // The scheme name is case-insensitive (RFC 7235), on both bearer-checked routes.
    for scheme in ["bearer", "BEARER"] {
        let authorization = format!("{scheme} {INGEST_TOKEN}");
        let response = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .header("authorization", &authorization)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "scheme {scheme}");
        let rejected = reqwest::Client::new()
            .get(format!("{}/ingest/rejected", receiver.base_url))
            .header("authorization", &authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(rejected.status(), 200, "scheme {scheme}");
    }
    let queued = store.pending_count().await.unwrap();
    assert!(queued > 0);
    receiver.stop().await.unwrap();

    // Without an ingest section the API is off, whatever the token.
    let mut off = config.clone();
    off.ingest = None;
    let receiver = RunningReceiver::start_with_ingest(&off, log, store.clone()).await;
    let response = post_records(&format!("{}/ingest/crm/contacts", receiver.base_url), Some(INGEST_TOKEN), body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("not enabled"));
    assert_eq!(store.pending_count().await.unwrap(), queued);
    receiver.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_with_bad_records_stores_nothing_and_names_each_one() {
    let data_dir = tempfile::tempdir().unwrap();
    let emulator = emulator(None).await;
    let config = config_for(data_dir.path(), &emulator, vec![mapping("crm/contacts", Default::default(), vec![])]);
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&config.event_log_path()).unwrap());
    let store = Arc::new(ReverseStore::open(&config.reverse_store_path()).unwrap());
    let receiver = RunningReceiver::start_with_ingest(&config, log, store.clone()).await;
    let url = format!("{}/ingest/crm/contacts", receiver.base_url);

    let body = json!([
        {"email": "good@example.com", "phone": "1"},
        {"phone": "2"},
        {"email": "c@example.com", "first_name": "Ada", "shoe_size": 44},
    ]);
    let response = post_records(&url, Some(INGEST_TOKEN), body.to_string()).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "2 of 3 records are invalid; none was stored");
    assert_eq!(
        answer["invalidRecords"],
        json!([
            {"index": 1, "reasons": ["the match key field `email` is missing"]},
            {"index": 2, "reasons": [
                "field `first_name` flows only from HubSpot (direction ToExternal)",
                "unknown field `shoe_size`: the mapping does not map it",
            ]},
        ])
    );

    let not_json = post_records(&url, Some(INGEST_TOKEN), "{not json").send().await.unwrap();
    assert_eq!(not_json.status(), 400);
    let too_large = format!("[{}]", vec![r#"{"email":"x@example.com","phone":"1"}"#; 3000].join(","));
    let response = post_records(&url, Some(INGEST_TOKEN), too_large).send().await.unwrap();
    assert_eq!(response.status(), 413);

    assert_eq!(store.pending_count().await.unwrap(), 0, "nothing of a refused request is stored");
    let metrics = &receiver.metrics;
    assert_eq!(counter(&metrics.ingest_requests, "invalid"), 1);
    assert_eq!(counter(&metrics.ingest_records, "invalid"), 2);
    assert_eq!(counter(&metrics.ingest_requests, "malformed"), 1);
    assert_eq!(counter(&metrics.ingest_requests, "too_large"), 1);
    receiver.stop().await.unwrap();
    assert!(emulator.requests_to(UPSERT_PATH).await.is_empty());
}

#[tokio::test]
async fn accepted_records_survive_a_restart_and_are_written_afterwards() {
    let data_dir = tempfile::tempdir().unwrap();
    let emulator = emulator(None).await;
    let mappings = vec![mapping("crm/contacts", Default::default(), vec![])];
    let config = config_for(data_dir.path(), &emulator, mappings.clone());
    {
        let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&config.event_log_path()).unwrap());
        let store = Arc::new(ReverseStore::open(&config.reverse_store_path()).unwrap());
        let receiver = RunningReceiver::start_with_ingest(&config, log, store).await;
        let body = json!([
            {"email": "kept1@example.com", "phone": "1", "stage": "lead"},
            {"email": "kept2@example.com", "phone": "2"},
            {"email": "bare@example.com"},
        ]);
        let response =
            post_records(&format!("{}/ingest/crm/contacts", receiver.base_url), Some(INGEST_TOKEN), body.to_string())
                .send()
                .await
                .unwrap();
        assert_eq!(response.status(), 202);
        receiver.stop().await.unwrap();
        // Receiver and store are gone here, nothing written to HubSpot yet.
    }
    assert!(emulator.contact_by_email("kept1@example.com").await.is_none());

    let store = Arc::new(ReverseStore::open(&config.reverse_store_path()).unwrap());
    let pending = store.pending(10).await.unwrap();
    assert_eq!(pending.len(), 3);
    assert_eq!(pending[0].record.key, "kept1@example.com");
    assert_eq!(
        pending[0].record.properties,
        BTreeMap::from([("lifecyclestage".to_string(), "lead".to_string()), ("phone".to_string(), "1".to_string())])
    );
    let worker = ReverseWorker::new(store.clone(), &mappings, emulator.client(TOKEN), Arc::new(Metrics::default()));
    assert_eq!(worker.run_once().await.unwrap(), 3);
    assert_eq!(contact_property(&emulator, "kept1@example.com", "lifecyclestage").await.as_deref(), Some("lead"));
    assert_eq!(contact_property(&emulator, "kept2@example.com", "phone").await.as_deref(), Some("2"));
    assert!(
        emulator.contact_by_email("bare@example.com").await.is_some(),
        "a record of only its key creates the contact"
    );
    assert_eq!(store.pending_count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_record_hubspot_refuses_is_kept_with_its_reason_and_the_rest_are_written() {
    let data_dir = tempfile::tempdir().unwrap();
    let emulator = emulator(None).await;
    let mappings = vec![mapping("crm/contacts", ConflictPolicy::ExternalWins, vec![])];
    let store = Arc::new(ReverseStore::open(&data_dir.path().join("reverse.db")).unwrap());
    let mut records: Vec<IngestRecord> = (0..6)
        .map(|i| record("crm/contacts", &format!("r{i}@example.com"), 1, &[("lifecyclestage", "lead"), ("phone", "1")]))
        .collect();
    records[3].properties.insert("lifecyclestage".into(), "not-a-stage".into());
    store.enqueue(records).await.unwrap();

    let metrics = Arc::new(Metrics::default());
    let worker = ReverseWorker::new(store.clone(), &mappings, emulator.client(TOKEN), metrics.clone());
    assert_eq!(worker.run_once().await.unwrap(), 6);

    for i in [0, 1, 2, 4, 5] {
        let email = format!("r{i}@example.com");
        assert_eq!(contact_property(&emulator, &email, "lifecyclestage").await.as_deref(), Some("lead"), "{email}");
    }
    assert!(emulator.contact_by_email("r3@example.com").await.is_none());
    // The whole batch was refused first, then split until the bad record stood alone.
    assert!(emulator.requests_to(UPSERT_PATH).await.len() > 2);

    let rejected = rejections(&store).await;
    assert_eq!(rejected.len(), 1);
    let refused = &rejected[0];
    assert_eq!((refused.mapping.as_str(), refused.key.as_str()), ("crm/contacts", "r3@example.com"));
    assert_eq!((refused.status, refused.category.as_str()), (400, "VALIDATION_ERROR"));
    assert!(refused.message.contains("not-a-stage"), "{}", refused.message);
    assert!(!refused.correlation_id.is_empty());
    assert_eq!(refused.properties["lifecyclestage"], "not-a-stage");
    assert_eq!(store.rejected_summary().await.unwrap().last.map(|last| last.rejection).as_ref(), Some(refused));
    assert_eq!(store.pending_count().await.unwrap(), 0);
    assert_eq!(counter(&metrics.reverse_records, "written"), 5);
    assert_eq!(counter(&metrics.reverse_records, "rejected"), 1);
    assert_eq!(metrics.reverse_rejected.get(), 1);
}

#[tokio::test]
async fn rate_limits_and_server_errors_keep_records_queued_until_hubspot_takes_them() {
    let data_dir = tempfile::tempdir().unwrap();
    let emulator = emulator(None).await;
    let mappings = vec![mapping("crm/contacts", Default::default(), vec![])];
    let store = Arc::new(ReverseStore::open(&data_dir.path().join("reverse.db")).unwrap());
    let records: Vec<IngestRecord> = (0..3)
        .map(|i| record("crm/contacts", &format!("q{i}@example.com"), 1, &[("phone", &format!("{i}"))]))
        .collect();
    store.enqueue(records).await.unwrap();
    let worker =
        ReverseWorker::new(store.clone(), &mappings, impatient_client(&emulator), Arc::new(Metrics::default()));

    for fault in [json!({"status": 503, "pathPrefix": UPSERT_PATH}), json!({"status": 429, "pathPrefix": UPSERT_PATH})]
    {
        emulator.set_faults(fault.clone()).await;
        let error = worker.run_once().await.unwrap_err();
        assert!(error.to_string().contains("writing HubSpot"), "{error}");
        assert_eq!(store.pending_count().await.unwrap(), 3, "{fault}: nothing leaves the queue");
        assert!(rejections(&store).await.is_empty(), "{fault}: nothing is rejected");
        assert!(emulator.contact_by_email("q0@example.com").await.is_none());
    }

    // A passing failure is retried by the client within the same step.
    emulator.set_faults(json!({"status": 502, "count": 1, "pathPrefix": UPSERT_PATH})).await;
    assert_eq!(worker.run_once().await.unwrap(), 3);
    for i in 0..3 {
        let email = format!("q{i}@example.com");
        assert_eq!(contact_property(&emulator, &email, "phone").await, Some(i.to_string()));
    }
    assert_eq!(store.pending_count().await.unwrap(), 0);
    assert!(rejections(&store).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_are_not_echoed_to_destinations_while_other_changes_are() {
    let data_dir = tempfile::tempdir().unwrap();
    let destination = TestDestination::start(vec![]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let emulator = emulator(Some(format!("{base_url}/webhooks/hubspot"))).await;
    let sinks = vec![SinkConfig::Http { url: destination.url.clone(), signing_secret: None }];
    let config = config_for(data_dir.path(), &emulator, vec![mapping("crm/contacts", Default::default(), sinks)]);
    let metrics = Arc::new(Metrics::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let receiver = tokio::spawn(receiver::run(config, listener, metrics.clone(), async {
        let _ = stopped.await;
    }));

    let body = json!([{"email": "echo@example.com", "stage": "lead", "phone": "555"}]);
    let response = post_records(&format!("{base_url}/ingest/crm/contacts"), Some(INGEST_TOKEN), body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    // The upsert creates the contact: a creation and three property changes (email,
    // lifecyclestage, phone), all caused by this receiver.
    let echoes = || metrics.webhook_events.get_or_create(&OutcomeLabels { outcome: "echo".into() }).get();
    eventually("the webhooks of the receiver's own write to be recognised", || async { echoes() == 4 }).await;
    assert_eq!(contact_property(&emulator, "echo@example.com", "lifecyclestage").await.as_deref(), Some("lead"));
    assert!(destination.seen().is_empty(), "echoes must not reach the destination: {:?}", destination.delivered());

    // A person edits the contact in HubSpot: that change flows.
    let id = emulator.contact_by_email("echo@example.com").await.unwrap()["id"].as_str().unwrap().to_string();
    emulator.update_contact(&id, json!({"firstname": "Edited"})).await;
    eventually("the user's change to reach the destination", || async {
        destination.delivered().iter().any(|r| r.fields.get("first_name") == Some(&Some("Edited".into())))
    })
    .await;
    // An integration writes a value this receiver did not write (same app, so `sourceId` alone
    // could not tell): that change flows too.
    let upsert = UpsertInput {
        id: "echo@example.com".into(),
        id_property: "email".into(),
        properties: BTreeMap::from([("lifecyclestage".to_string(), "customer".to_string())]),
    };
    emulator.client(TOKEN).batch_upsert("contacts", &[upsert]).await.unwrap();
    eventually("the other write to reach the destination", || async {
        destination.delivered().iter().any(|r| r.fields.get("stage") == Some(&Some("customer".into())))
    })
    .await;
    assert_eq!(echoes(), 4);
    // Every delivered record carries the user's edit: none came from the echoed write.
    for record in destination.delivered() {
        assert_eq!(record.fields.get("first_name"), Some(&Some("Edited".into())), "{record:?}");
    }

    let _ = stop.send(());
    tokio::time::timeout(common::WAIT, receiver).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn conflict_policies_decide_fields_changed_on_both_sides() {
    let data_dir = tempfile::tempdir().unwrap();
    let emulator = emulator(None).await;
    let mappings = vec![
        mapping("crm/newest", ConflictPolicy::NewestWins, vec![]),
        mapping("crm/hubspot", ConflictPolicy::HubspotWins, vec![]),
        mapping("crm/external", ConflictPolicy::ExternalWins, vec![]),
    ];
    // People set the phone of these contacts in HubSpot; the receiver never wrote them.
    for email in ["old@example.com", "new@example.com", "hub@example.com", "ext@example.com"] {
        emulator.create_contact(json!({"email": email, "phone": "from-hubspot"})).await;
    }
    let hubspot_time = common::now_ms();
    let store = Arc::new(ReverseStore::open(&data_dir.path().join("reverse.db")).unwrap());
    let worker = ReverseWorker::new(store.clone(), &mappings, emulator.client(TOKEN), Arc::new(Metrics::default()));
    store
        .enqueue(vec![
            record("crm/newest", "old@example.com", hubspot_time - 3_600_000, &[("phone", "external")]),
            record("crm/newest", "new@example.com", hubspot_time + 3_600_000, &[("phone", "external")]),
            record("crm/hubspot", "hub@example.com", hubspot_time + 3_600_000, &[("phone", "external")]),
            record("crm/external", "ext@example.com", hubspot_time - 3_600_000, &[("phone", "external")]),
            // No HubSpot value: no conflict, whatever the policy.
            record("crm/hubspot", "fresh@example.com", hubspot_time, &[("phone", "first")]),
        ])
        .await
        .unwrap();
    assert_eq!(worker.run_once().await.unwrap(), 5);
    let phone = |email: &'static str| {
        let emulator = &emulator;
        async move { contact_property(emulator, email, "phone").await }
    };
    assert_eq!(phone("old@example.com").await.as_deref(), Some("from-hubspot"), "newestWins: HubSpot is newer");
    assert_eq!(phone("new@example.com").await.as_deref(), Some("external"), "newestWins: external is newer");
    assert_eq!(phone("hub@example.com").await.as_deref(), Some("from-hubspot"), "hubspotWins");
    assert_eq!(phone("ext@example.com").await.as_deref(), Some("external"), "externalWins");
    assert_eq!(phone("fresh@example.com").await.as_deref(), Some("first"));

    // HubSpot unchanged since the receiver wrote the field: the next external change is written.
    store.enqueue(vec![record("crm/hubspot", "fresh@example.com", 1, &[("phone", "second")])]).await.unwrap();
    assert_eq!(worker.run_once().await.unwrap(), 1);
    assert_eq!(phone("fresh@example.com").await.as_deref(), Some("second"));
    // A person changes it in HubSpot afterwards: under hubspotWins that change is kept.
    let id = emulator.contact_by_email("fresh@example.com").await.unwrap()["id"].as_str().unwrap().to_string();
    // HubSpot's timestamps have millisecond resolution: the edit must not share the write's.
    tokio::time::sleep(Duration::from_millis(5)).await;
    emulator.update_contact(&id, json!({"phone": "edited-in-hubspot"})).await;
    store.enqueue(vec![record("crm/hubspot", "fresh@example.com", i64::MAX / 2, &[("phone", "third")])]).await.unwrap();
    assert_eq!(worker.run_once().await.unwrap(), 1);
    assert_eq!(phone("fresh@example.com").await.as_deref(), Some("edited-in-hubspot"));
    assert_eq!(store.pending_count().await.unwrap(), 0);
    assert!(rejections(&store).await.is_empty());
}

#[tokio::test]
async fn a_postgres_source_queues_each_changed_row_once_and_the_worker_writes_it() {
    let data_dir = tempfile::tempdir().unwrap();
    let emulator = emulator(None).await;
    let database = common::TestDatabase::create().await;
    let db = database.client().await;
    db.batch_execute(
        "CREATE TABLE crm_contacts (email text, stage text, phone text, internal_note text, changed timestamptz);
         INSERT INTO crm_contacts VALUES
           ('pg1@example.com', 'lead', '555-1', 'not mapped', '2026-01-01T00:00:00Z'),
           ('pg2@example.com', NULL, '555-2', 'not mapped', '2026-01-02T00:00:00Z'),
           (NULL, 'lead', '555-3', 'no key', '2026-01-03T00:00:00Z'),
           ('pg4@example.com', 'lead', '555-4', 'no cursor yet', NULL);",
    )
    .await
    .unwrap();
    let mut mapping = mapping("crm/contacts", ConflictPolicy::ExternalWins, vec![]);
    mapping.policy.external_timestamp_field = Some("changed".into());
    mapping.sources = vec![model::config::SourceConfig::Postgres {
        url: database.url.clone(),
        poll: model::api::mapping::PostgresPoll {
            table: Some("crm_contacts".into()),
            query: None,
            cursor_column: "changed".into(),
            interval_seconds: 30,
        },
    }];
    let store = Arc::new(ReverseStore::open(&data_dir.path().join("reverse.db")).unwrap());
    let source = receiver::reverse::PostgresPoller::new(&mapping, 0).unwrap();

    assert_eq!(source.poll_once(&store).await.unwrap(), 3, "rows with a cursor value");
    let queued = store.pending(10).await.unwrap();
    let keys: Vec<&str> = queued.iter().map(|q| q.record.key.as_str()).collect();
    assert_eq!(keys, ["pg1@example.com", "pg2@example.com"]);
    assert_eq!(
        queued[0].record.properties,
        BTreeMap::from([
            ("lifecyclestage".to_string(), "lead".to_string()),
            ("phone".to_string(), "555-1".to_string())
        ])
    );
    assert_eq!(queued[0].record.changed_at, 1_767_225_600_000, "the row's timestamp column");
    let rejected = rejections(&store).await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].category, "INVALID_RECORD");
    assert!(rejected[0].message.contains("match key field `email` is missing"), "{}", rejected[0].message);

    // Nothing changed: nothing is read again.
    assert_eq!(source.poll_once(&store).await.unwrap(), 0);
    db.batch_execute(
        "UPDATE crm_contacts SET phone = '555-1b', changed = '2026-02-01T00:00:00Z' WHERE email = 'pg1@example.com';
         UPDATE crm_contacts SET changed = '2026-02-02T00:00:00Z' WHERE email = 'pg4@example.com';",
    )
    .await
    .unwrap();
    assert_eq!(source.poll_once(&store).await.unwrap(), 2);
    assert_eq!(store.pending_count().await.unwrap(), 4);

    let worker = ReverseWorker::new(store.clone(), &[mapping], emulator.client(TOKEN), Arc::new(Metrics::default()));
    assert_eq!(worker.run_once().await.unwrap(), 4);
    assert_eq!(contact_property(&emulator, "pg1@example.com", "phone").await.as_deref(), Some("555-1b"));
    assert_eq!(contact_property(&emulator, "pg2@example.com", "phone").await.as_deref(), Some("555-2"));
    assert_eq!(contact_property(&emulator, "pg4@example.com", "lifecyclestage").await.as_deref(), Some("lead"));
    assert_eq!(store.pending_count().await.unwrap(), 0);
}

/// A source's failure is logged: PostgreSQL's message must not carry the row value it quotes.
#[tokio::test]
async fn a_failing_postgres_source_is_described_without_the_row_value_it_failed_on() {
    let data_dir = tempfile::tempdir().unwrap();
    let database = common::TestDatabase::create().await;
    let db = database.client().await;
    db.batch_execute(
        "CREATE TABLE crm_contacts (email text, stage text, changed timestamptz);
         INSERT INTO crm_contacts VALUES ('private-marker@example.com', 'private-marker', '2026-01-01T00:00:00Z');",
    )
    .await
    .unwrap();
    let mut mapping = mapping("crm/contacts", ConflictPolicy::ExternalWins, vec![]);
    mapping.sources = vec![model::config::SourceConfig::Postgres {
        url: database.url.clone(),
        poll: model::api::mapping::PostgresPoll {
            table: None,
            // The cast fails on the row, and PostgreSQL quotes the value it could not cast.
            query: Some("SELECT email, stage::int AS stage, changed FROM crm_contacts".into()),
            cursor_column: "changed".into(),
            interval_seconds: 30,
        },
    }];
    let store = Arc::new(ReverseStore::open(&data_dir.path().join("reverse.db")).unwrap());
    let source = receiver::reverse::PostgresPoller::new(&mapping, 0).unwrap();

    let error = format!("{:#}", source.poll_once(&store).await.unwrap_err());
    assert!(error.contains("invalid input syntax for type integer (SQLSTATE 22P02)"), "{error}");
    assert!(!error.contains("private-marker"), "{error}");
    assert_eq!(store.pending_count().await.unwrap(), 0);
}

/// A JSON client of one admin API: every call answers its status and body.
struct Admin {
    base: String,
    http: reqwest::Client,
}

impl Admin {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

/// Refused records wait in the rejected table until they are resent (after the cause is fixed)
/// or discarded through the admin API; a resent record keeps its change time, and rows that
/// hold no record (a source row that failed validation) cannot be resent.
#[tokio::test]
async fn rejected_records_are_listed_resent_and_discarded_through_the_admin_api() {
    let data_dir = tempfile::tempdir().unwrap();
    let emulator = emulator(None).await;
    let contacts = mapping("crm/contacts", ConflictPolicy::ExternalWins, vec![]);
    let leads = mapping("crm/leads", ConflictPolicy::ExternalWins, vec![]);
    let store = Arc::new(ReverseStore::open(&data_dir.path().join("reverse.db")).unwrap());
    store
        .enqueue(vec![
            record("crm/leads", "lead@example.com", 1_000, &[("phone", "555-1")]),
            record("crm/contacts", "bad@example.com", 2_000, &[("lifecyclestage", "not-a-stage")]),
        ])
        .await
        .unwrap();
    let invalid_row = Rejection {
        mapping: "crm/contacts".into(),
        key: "row@example.com".into(),
        properties: BTreeMap::new(),
        status: 0,
        category: INVALID_RECORD.into(),
        message: "match key field `email` is missing".into(),
        correlation_id: String::new(),
        rejected_at: 3_000,
        changed_at: 3_000,
    };
    store.polled("crm/contacts/0", vec![], vec![invalid_row], "c1".into()).await.unwrap();
    // Without the leads mapping its record cannot be written; the other is refused by HubSpot.
    let without_leads =
        ReverseWorker::new(store.clone(), std::slice::from_ref(&contacts), emulator.client(TOKEN), Default::default());
    assert_eq!(without_leads.run_once().await.unwrap(), 2);

    let config = config_for(data_dir.path(), &emulator, vec![contacts.clone(), leads.clone()]);
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&config.event_log_path()).unwrap());
    let sync = receiver::sync::Worker::new(&config, log, emulator.client(TOKEN), Default::default()).unwrap();
    let admin = Admin { base: serve_admin(&sync, Some(store.clone()), None).await, http: reqwest::Client::new() };
    let (status, listed) = admin.call(reqwest::Method::GET, "/admin/rejected", None).await;
    assert_eq!((status, listed["total"].as_u64()), (200, Some(3)), "{listed:#}");
    let mut categories: Vec<&str> =
        listed["rejected"].as_array().unwrap().iter().map(|r| r["category"].as_str().unwrap()).collect();
    categories.sort();
    assert_eq!(categories, ["INVALID_RECORD", "UNKNOWN_MAPPING", "VALIDATION_ERROR"]);
    let id_of = |category: &str| {
        listed["rejected"].as_array().unwrap().iter().find(|r| r["category"] == category).unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let (invalid, orphan, refused) = (id_of("INVALID_RECORD"), id_of("UNKNOWN_MAPPING"), id_of("VALIDATION_ERROR"));
    let refused_record = listed["rejected"].as_array().unwrap().iter().find(|r| r["id"] == refused).unwrap();
    assert_eq!(refused_record["key"], "bad@example.com");
    assert_eq!(refused_record["properties"]["lifecyclestage"], "not-a-stage");
    let (_, leads_only) = admin.call(reqwest::Method::GET, "/admin/rejected?mapping=crm/leads&limit=10", None).await;
    assert_eq!(leads_only["total"], 1);

    // The leads mapping is back: its record is resent and written.
    let (status, report) =
        admin.call(reqwest::Method::POST, "/admin/rejected/resend", Some(json!({"ids": [orphan]}))).await;
    assert_eq!((status, report), (200, json!({"resent": 1, "notResendable": 0})));
    assert_eq!(store.pending_count().await.unwrap(), 1);
    let with_leads = ReverseWorker::new(store.clone(), &[contacts, leads], emulator.client(TOKEN), Default::default());
    assert_eq!(with_leads.run_once().await.unwrap(), 1);
    assert_eq!(contact_property(&emulator, "lead@example.com", "phone").await.as_deref(), Some("555-1"));

    // Resending everything queues what holds a record; HubSpot refuses it again, as it was.
    let (status, report) =
        admin.call(reqwest::Method::POST, "/admin/rejected/resend", Some(json!({"all": true}))).await;
    assert_eq!((status, report), (200, json!({"resent": 1, "notResendable": 1})));
    let queued = store.pending(10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!((queued[0].record.key.as_str(), queued[0].record.changed_at), ("bad@example.com", 2_000));
    assert_eq!(with_leads.run_once().await.unwrap(), 1);
    let (rejected, total) = store.rejected(&Default::default(), 10).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(rejected.iter().map(|r| r.id).collect::<Vec<_>>()[0], invalid);
    assert!(rejected[1].id > refused, "refused again, as a new rejection");
    assert_eq!(rejected[1].rejection.changed_at, 2_000);

    // Discarding by mapping, then one by id; a second time it is gone.
    let body = json!({"ids": [rejected[1].id]});
    assert_eq!(
        admin.call(reqwest::Method::POST, "/admin/rejected/discard", Some(body)).await,
        (200, json!({"discarded": 1}))
    );
    let path = format!("/admin/rejected/{invalid}");
    assert_eq!(admin.call(reqwest::Method::DELETE, &path, None).await, (200, json!({"discarded": 1})));
    assert_eq!(admin.call(reqwest::Method::DELETE, &path, None).await.0, 404);
    assert_eq!(store.rejected_summary().await.unwrap().count, 0);

    // A selection must name something, and rejected records have no destination.
    for body in [json!({}), json!({"all": true, "sink": "http-0"}), json!({"mapping": "crm/contacts", "all": true})] {
        let (status, answer) = admin.call(reqwest::Method::POST, "/admin/rejected/resend", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    // A receiver that writes nothing to HubSpot has nothing rejected.
    let none = Admin { base: serve_admin(&sync, None, None).await, http: reqwest::Client::new() };
    let (status, answer) = none.call(reqwest::Method::GET, "/admin/rejected", None).await;
    assert_eq!(status, 404, "{answer}");
}
