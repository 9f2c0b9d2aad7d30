//! The sync worker end to end: the real embedded event log, the real HubSpot emulator over
//! HTTP, and real destinations (an axum server on 127.0.0.1:0 and a file in a tempdir).

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::watch;

use common::{WAIT, receiver_config, sample_event};
use hubspot_operator::api::mapping::{Direction, FieldMapping, MatchKey};
use hubspot_operator::config::{MappingConfig, ReceiverConfig, SinkConfig};
use hubspot_operator::emulator::{DEFAULT_TOKEN, EmulatorConfig, RunningEmulator, TokenGrant};
use hubspot_operator::eventlog::{EmbeddedEventLog, EventLog};
use hubspot_operator::hubspot::{ClientSettings, HubSpotClient, WebhookEvent};
use hubspot_operator::sync::{Op, Record, Worker};
use hubspot_operator::telemetry::{Metrics, SinkLabels};

/// One request the destination received, and how many events were pending in the log then.
#[derive(Clone, Debug)]
struct Seen {
    status: u16,
    pending_in_log: u64,
    records: Vec<Record>,
}

/// An HTTP destination that answers with scripted statuses (then 200) and notes what the log
/// held at the moment each request arrived.
#[derive(Clone)]
struct Destination {
    log: Arc<dyn EventLog>,
    script: Arc<Mutex<VecDeque<u16>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepted: watch::Sender<usize>,
}

impl Destination {
    async fn start(log: Arc<dyn EventLog>, script: Vec<u16>) -> (Destination, String) {
        let destination = Destination {
            log,
            script: Arc::new(Mutex::new(script.into())),
            seen: Arc::default(),
            accepted: watch::channel(0).0,
        };
        let app = Router::new().route("/records", post(receive)).with_state(destination.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/records", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (destination, url)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn statuses(&self) -> Vec<u16> {
        self.seen().iter().map(|s| s.status).collect()
    }

    /// Records of the requests answered 2xx, in arrival order.
    fn delivered(&self) -> Vec<Record> {
        self.seen().into_iter().filter(|s| s.status == 200).flat_map(|s| s.records).collect()
    }
}

async fn receive(State(destination): State<Destination>, body: axum::body::Bytes) -> StatusCode {
    let body: Value = serde_json::from_slice(&body).unwrap();
    let records: Vec<Record> = serde_json::from_value(body["records"].clone()).unwrap();
    let pending_in_log = destination.log.pending_count().await.unwrap();
    let status = destination.script.lock().unwrap().pop_front().unwrap_or(200);
    destination.seen.lock().unwrap().push(Seen { status, pending_in_log, records });
    if status == 200 {
        destination.accepted.send_modify(|n| *n += 1);
    }
    StatusCode::from_u16(status).unwrap()
}

struct Emulator {
    running: RunningEmulator,
    http: reqwest::Client,
}

impl Emulator {
    async fn start() -> Emulator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = RunningEmulator::start(EmulatorConfig::default(), listener).await.unwrap();
        Emulator { running, http: reqwest::Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base_url())
    }

    /// Creates a contact as a HubSpot user would; returns its id.
    async fn create_contact(&self, properties: Value) -> String {
        let response = self
            .http
            .post(self.url("/_emulator/objects/contacts"))
            .json(&json!({ "properties": properties }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
    }

    async fn update_contact(&self, id: &str, properties: Value) {
        let response = self
            .http
            .patch(self.url(&format!("/_emulator/objects/contacts/{id}")))
            .json(&json!({ "properties": properties }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// Bodies of the batch reads the emulator received.
    async fn batch_reads(&self) -> Vec<Value> {
        let requests: Vec<Value> =
            self.http.get(self.url("/_emulator/requests")).send().await.unwrap().json().await.unwrap();
        requests
            .into_iter()
            .filter(|r| r["method"] == "POST" && r["path"].as_str().unwrap().ends_with("/batch/read"))
            .map(|r| r["body"].clone())
            .collect()
    }

    fn client(&self) -> HubSpotClient {
        HubSpotClient::new(ClientSettings {
            base_url: self.running.base_url(),
            api_version: "v3".into(),
            access_token: DEFAULT_TOKEN.into(),
            tier: Default::default(),
        })
    }
}

/// Contacts: email is the match key; firstname and lifecyclestage flow out; phone only flows
/// into HubSpot, so it must never be read.
fn contacts_mapping(sinks: Vec<SinkConfig>) -> MappingConfig {
    let field = |hubspot: &str, external: &str, direction| FieldMapping {
        hubspot_property: hubspot.into(),
        external_field: external.into(),
        direction,
    };
    MappingConfig {
        name: "crm/contacts".into(),
        object_type: "contacts".into(),
        match_key: MatchKey { hubspot_property: "email".into(), external_field: "email".into() },
        fields: vec![
            field("firstname", "first_name", Direction::ToExternal),
            field("lifecyclestage", "stage", Direction::Both),
            field("phone", "phone", Direction::ToHubSpot),
        ],
        sinks,
    }
}

fn config(data_dir: &Path, emulator: &Emulator, sinks: Vec<SinkConfig>) -> ReceiverConfig {
    let mut config = receiver_config(data_dir);
    config.hubspot.base_url = emulator.running.base_url();
    config.hubspot.access_token = DEFAULT_TOKEN.into();
    config.mappings = vec![contacts_mapping(sinks)];
    config
}

fn http_sink(url: &str) -> SinkConfig {
    SinkConfig::Http { url: url.into(), signing_secret: Some("whsec_c2lnbmluZy1zZWNyZXQ=".into()) }
}

fn file_sink() -> SinkConfig {
    SinkConfig::File { path: "out/contacts.jsonl".into() }
}

/// A contact event `event_id` about `object_id` at `occurred_at`.
fn contact_event(event_id: u64, subscription_type: &str, object_id: &str, occurred_at: i64) -> WebhookEvent {
    let mut event = sample_event(event_id, object_id.parse().unwrap());
    event.subscription_type = subscription_type.into();
    event.occurred_at = occurred_at;
    event.property_name = subscription_type.ends_with("propertyChange").then(|| "firstname".into());
    event
}

async fn run_once(worker: &Worker) -> anyhow::Result<usize> {
    tokio::time::timeout(WAIT, worker.run_once()).await.expect("sync step timed out")
}

fn by_object(records: &[Record]) -> BTreeMap<String, Vec<Record>> {
    let mut by_object: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for record in records {
        by_object.entry(record.object_id.clone()).or_default().push(record.clone());
    }
    by_object
}

fn file_records(data_dir: &Path) -> Vec<Record> {
    std::fs::read_to_string(data_dir.join("out/contacts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn worker_delivers_the_latest_state_once_and_empties_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start().await;
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
    let (destination, url) = Destination::start(log.clone(), vec![]).await;
    let config = config(dir.path(), &emulator, vec![http_sink(&url), file_sink()]);
    let metrics = Arc::new(Metrics::default());
    let worker = Worker::new(&config, log.clone(), emulator.client(), metrics.clone()).unwrap();

    let ada = emulator.create_contact(json!({"email": "ada@example.com", "firstname": "Ada", "phone": "+1 555"})).await;
    emulator.update_contact(&ada, json!({"firstname": "Adeline", "lifecyclestage": "customer"})).await;
    let bob = emulator.create_contact(json!({"email": "bob@example.com", "firstname": "Bob"})).await;
    let gone = "999999";

    let created = contact_event(1, "contact.creation", &ada, 1_000);
    let changed = contact_event(2, "contact.propertyChange", &ada, 2_000);
    let mut unmapped_deal = contact_event(7, "deal.creation", "42", 1_000);
    unmapped_deal.property_name = None;
    let events = vec![
        // Newest first, a redelivery, and a second hint about the same contact.
        changed.clone(),
        created,
        common::redelivery(&changed),
        contact_event(3, "contact.propertyChange", &ada, 1_500),
        contact_event(4, "contact.creation", &bob, 1_000),
        contact_event(5, "contact.deletion", gone, 3_000),
        contact_event(6, "contact.propertyChange", gone, 2_500),
        unmapped_deal,
    ];
    let appended = log.append(events).await.unwrap().appended;
    assert_eq!(appended, 7, "the log drops the redelivery");

    assert_eq!(run_once(&worker).await.unwrap(), appended);
    assert_eq!(log.pending_count().await.unwrap(), 0);

    let delivered = by_object(&destination.delivered());
    assert_eq!(delivered.keys().cloned().collect::<Vec<_>>(), {
        let mut ids = vec![ada.clone(), bob.clone(), gone.to_string()];
        ids.sort();
        ids
    });
    assert!(delivered.values().all(|records| records.len() == 1), "{delivered:#?}");
    let ada_record = &delivered[&ada][0];
    assert_eq!(ada_record.op, Op::Upsert);
    assert_eq!(ada_record.mapping, "crm/contacts");
    assert_eq!(ada_record.object_type, "contacts");
    assert_eq!(ada_record.key.as_deref(), Some("ada@example.com"));
    assert_eq!(
        ada_record.fields,
        BTreeMap::from([
            ("first_name".to_string(), Some("Adeline".to_string())),
            ("stage".to_string(), Some("customer".to_string())),
        ])
    );
    assert_eq!(delivered[&bob][0].fields["first_name"].as_deref(), Some("Bob"));
    assert_eq!(delivered[gone][0].op, Op::Delete);
    // The file destination got the same records.
    assert_eq!(by_object(&file_records(dir.path())), delivered);

    // One batch read for both live contacts, asking only for the mapped properties.
    let reads = emulator.batch_reads().await;
    assert_eq!(reads.len(), 1, "{reads:#?}");
    assert_eq!(reads[0]["properties"], json!(["email", "firstname", "lifecyclestage"]));
    let mut asked: Vec<&str> =
        reads[0]["inputs"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    asked.sort();
    let mut expected = vec![ada.as_str(), bob.as_str()];
    expected.sort();
    assert_eq!(asked, expected);

    let labels = SinkLabels { mapping: "crm/contacts".into(), sink: "http-0".into() };
    assert_eq!(metrics.records_delivered.get_or_create(&labels).get(), 3);

    // Late replays of the same changes: fetched again, but nothing new reaches a destination.
    let replays = vec![
        contact_event(11, "contact.propertyChange", &ada, 1_800),
        contact_event(12, "contact.creation", &bob, 900),
    ];
    assert_eq!(log.append(replays).await.unwrap().appended, 2);
    assert_eq!(run_once(&worker).await.unwrap(), 2);
    assert_eq!(destination.seen().len(), 1, "no second request to the destination");
    assert_eq!(file_records(dir.path()).len(), 3);

    // A real change goes out, once.
    emulator.update_contact(&ada, json!({"firstname": "Ada Lovelace"})).await;
    log.append(vec![contact_event(20, "contact.propertyChange", &ada, 5_000)]).await.unwrap();
    assert_eq!(run_once(&worker).await.unwrap(), 1);
    let latest = destination.seen().last().unwrap().records.clone();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].fields["first_name"].as_deref(), Some("Ada Lovelace"));
    assert_ne!(latest[0].idempotency_key, ada_record.idempotency_key);
    assert_eq!(log.pending_count().await.unwrap(), 0);

    emulator.running.shutdown().await;
}

#[tokio::test]
async fn events_stay_pending_until_a_failing_destination_takes_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start().await;
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
    let (destination, url) = Destination::start(log.clone(), vec![503]).await;
    let config = config(dir.path(), &emulator, vec![http_sink(&url), file_sink()]);
    let metrics = Arc::new(Metrics::default());
    let worker = Worker::new(&config, log.clone(), emulator.client(), metrics.clone()).unwrap();

    let ada = emulator.create_contact(json!({"email": "ada@example.com", "firstname": "Ada"})).await;
    log.append(vec![contact_event(1, "contact.creation", &ada, 1_000)]).await.unwrap();

    assert!(run_once(&worker).await.is_err());
    assert_eq!(log.pending_count().await.unwrap(), 1, "nothing released while a destination fails");
    let labels = SinkLabels { mapping: "crm/contacts".into(), sink: "http-0".into() };
    assert_eq!(metrics.sink_failures.get_or_create(&labels).get(), 1);

    assert_eq!(run_once(&worker).await.unwrap(), 1);
    assert_eq!(log.pending_count().await.unwrap(), 0);

    let seen = destination.seen();
    assert_eq!(destination.statuses(), vec![503, 200]);
    assert!(seen.iter().all(|s| s.pending_in_log == 1), "both attempts happened before the release: {seen:#?}");
    assert_eq!(seen[0].records, seen[1].records, "the retry is the same message");
    let delivered = destination.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].object_id, ada);
    // The healthy file destination was not written again while the other one was retried.
    assert_eq!(file_records(dir.path()), delivered);

    emulator.running.shutdown().await;
}

#[tokio::test]
async fn running_worker_retries_with_backoff_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start().await;
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
    let (destination, url) = Destination::start(log.clone(), vec![503, 429]).await;
    let config = config(dir.path(), &emulator, vec![http_sink(&url)]);
    let worker = Worker::new(&config, log.clone(), emulator.client(), Arc::new(Metrics::default())).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));

    let ada = emulator.create_contact(json!({"email": "ada@example.com", "firstname": "Ada"})).await;
    log.append(vec![contact_event(1, "contact.creation", &ada, 1_000)]).await.unwrap();

    let mut accepted = destination.accepted.subscribe();
    tokio::time::timeout(WAIT, accepted.wait_for(|n| *n == 1)).await.expect("never delivered").unwrap();
    tokio::time::timeout(WAIT, async {
        while log.pending_count().await.unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("events never released");

    assert_eq!(destination.statuses(), vec![503, 429, 200]);
    assert_eq!(destination.delivered().len(), 1);

    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, running).await.expect("worker did not stop").unwrap();
    emulator.running.shutdown().await;
}

#[tokio::test]
async fn hubspot_errors_keep_events_pending() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // A token without the contacts read scope: HubSpot answers 403 MISSING_SCOPES.
    let scopeless = TokenGrant { token: "scopeless".into(), scopes: Some(vec!["oauth".into()]) };
    let emulator_config = EmulatorConfig { tokens: vec![scopeless], ..Default::default() };
    let emulator = Emulator {
        running: RunningEmulator::start(emulator_config, listener).await.unwrap(),
        http: reqwest::Client::new(),
    };
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
    let (destination, url) = Destination::start(log.clone(), vec![]).await;
    let mut config = config(dir.path(), &emulator, vec![http_sink(&url)]);
    config.hubspot.access_token = "scopeless".into();
    let client = HubSpotClient::new(ClientSettings {
        base_url: emulator.running.base_url(),
        api_version: "v3".into(),
        access_token: "scopeless".into(),
        tier: Default::default(),
    });
    let worker = Worker::new(&config, log.clone(), client, Arc::new(Metrics::default())).unwrap();

    log.append(vec![contact_event(1, "contact.creation", "1", 1_000)]).await.unwrap();
    let error = run_once(&worker).await.unwrap_err().to_string();
    assert!(error.contains("MISSING_SCOPES"), "{error}");
    assert_eq!(log.pending_count().await.unwrap(), 1);
    assert!(destination.seen().is_empty());

    emulator.running.shutdown().await;
}

#[tokio::test]
async fn mappings_of_one_type_share_a_read_and_each_gets_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start().await;
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
    let (destination, url) = Destination::start(log.clone(), vec![]).await;
    let mut config = config(dir.path(), &emulator, vec![http_sink(&url)]);
    config.mappings.push(MappingConfig {
        name: "crm/contact-cities".into(),
        object_type: "contacts".into(),
        match_key: MatchKey { hubspot_property: "hs_object_id".into(), external_field: "id".into() },
        fields: vec![FieldMapping {
            hubspot_property: "city".into(),
            external_field: "town".into(),
            direction: Direction::ToExternal,
        }],
        sinks: vec![file_sink()],
    });
    let worker = Worker::new(&config, log.clone(), emulator.client(), Arc::new(Metrics::default())).unwrap();

    let ada = emulator.create_contact(json!({"email": "ada@example.com", "firstname": "Ada", "city": "London"})).await;
    log.append(vec![contact_event(1, "contact.creation", &ada, 1_000)]).await.unwrap();
    assert_eq!(run_once(&worker).await.unwrap(), 1);

    let reads = emulator.batch_reads().await;
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0]["properties"], json!(["city", "email", "firstname", "hs_object_id", "lifecyclestage"]));
    let http = destination.delivered();
    assert_eq!(http.len(), 1);
    assert_eq!(http[0].fields.keys().collect::<Vec<_>>(), vec!["first_name", "stage"]);
    let file = file_records(dir.path());
    assert_eq!(file.len(), 1);
    assert_eq!(file[0].mapping, "crm/contact-cities");
    assert_eq!(file[0].key.as_deref(), Some(ada.as_str()));
    assert_eq!(file[0].fields, BTreeMap::from([("town".to_string(), Some("London".to_string()))]));

    emulator.running.shutdown().await;
}
