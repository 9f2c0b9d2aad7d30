//! The sync worker end to end: the real embedded event log, the real HubSpot emulator over
//! HTTP, and real destinations (an axum server on 127.0.0.1:0 and a file in a tempdir).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use common::{TestDatabase, TestDestination, TestEmulator, WAIT, contact_event, eventually, metric_sample};
use emulator::{DEFAULT_TOKEN, EmulatorConfig, TokenGrant};
use model::api::mapping::{Direction, FieldMapping, MappedRecords, MatchKey};
use model::config::{MappingConfig, ReceiverConfig, SinkConfig};
use receiver::eventlog::{EmbeddedEventLog, EventLog};
use receiver::metrics::{Metrics, SinkLabels};
use receiver::sync::{Op, Record, Worker};

fn config(data_dir: &Path, emulator: &TestEmulator, sinks: Vec<SinkConfig>) -> ReceiverConfig {
    common::emulator_receiver_config(data_dir, emulator, sinks)
}

fn http_sink(url: &str) -> SinkConfig {
    SinkConfig::Http { url: url.into(), signing_secret: Some("whsec_c2lnbmluZy1zZWNyZXQ=".into()) }
}

fn file_sink() -> SinkConfig {
    SinkConfig::File { path: "out/contacts.jsonl".into() }
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
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
    let destination = TestDestination::start_observing(vec![], Some(log.clone())).await;
    let url = destination.url.clone();
    let config = config(dir.path(), &emulator, vec![http_sink(&url), file_sink()]);
    let metrics = Arc::new(Metrics::default());
    let worker = Worker::new(&config, log.clone(), emulator.client(DEFAULT_TOKEN), metrics.clone()).unwrap();

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

    // One batch read for both live contacts and the deleted one (HubSpot confirms the deletion),
    // asking only for the mapped properties.
    let reads = emulator.batch_reads().await;
    assert_eq!(reads.len(), 1, "{reads:#?}");
    assert_eq!(reads[0]["properties"], json!(["email", "firstname", "lifecyclestage"]));
    let mut asked: Vec<&str> =
        reads[0]["inputs"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    asked.sort();
    let mut expected = vec![ada.as_str(), bob.as_str(), gone];
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
    let latest = destination.seen().last().unwrap().records();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].fields["first_name"].as_deref(), Some("Ada Lovelace"));
    assert_ne!(latest[0].idempotency_key, ada_record.idempotency_key);
    assert_eq!(log.pending_count().await.unwrap(), 0);

    emulator.running.shutdown().await;
}

#[tokio::test]
async fn events_stay_pending_until_a_failing_destination_takes_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
    let destination = TestDestination::start_observing(vec![503.into()], Some(log.clone())).await;
    let url = destination.url.clone();
    let config = config(dir.path(), &emulator, vec![http_sink(&url), file_sink()]);
    let metrics = Arc::new(Metrics::default());
    let worker = Worker::new(&config, log.clone(), emulator.client(DEFAULT_TOKEN), metrics.clone()).unwrap();

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
    assert!(seen.iter().all(|s| s.pending_in_log == Some(1)), "both attempts happened before the release: {seen:#?}");
    assert_eq!(seen[0].records(), seen[1].records(), "the retry is the same message");
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
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
    let destination = TestDestination::start_observing(vec![503.into(), 429.into()], Some(log.clone())).await;
    let url = destination.url.clone();
    let config = config(dir.path(), &emulator, vec![http_sink(&url)]);
    let worker =
        Worker::new(&config, log.clone(), emulator.client(DEFAULT_TOKEN), Arc::new(Metrics::default())).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));

    let ada = emulator.create_contact(json!({"email": "ada@example.com", "firstname": "Ada"})).await;
    log.append(vec![contact_event(1, "contact.creation", &ada, 1_000)]).await.unwrap();

    eventually("the records to be delivered and the events released", || async {
        destination.delivered().len() == 1 && log.pending_count().await.unwrap() == 0
    })
    .await;

    assert_eq!(destination.statuses(), vec![503, 429, 200]);
    assert_eq!(destination.delivered().len(), 1);

    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, running).await.expect("worker did not stop").unwrap();
    emulator.running.shutdown().await;
}

/// An emulator, an embedded log, an HTTP destination observing it, and a worker whose batch
/// wait is `max_batch_wait_milliseconds`.
struct Batching {
    dir: tempfile::TempDir,
    emulator: TestEmulator,
    log: Arc<dyn EventLog>,
    destination: TestDestination,
    worker: Worker,
    metrics: Arc<Metrics>,
}

impl Batching {
    async fn start(max_batch_wait_milliseconds: u64) -> Batching {
        let dir = tempfile::tempdir().unwrap();
        let emulator = TestEmulator::start(EmulatorConfig::default()).await;
        let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
        let destination = TestDestination::start_observing(vec![], Some(log.clone())).await;
        let mut config = config(dir.path(), &emulator, vec![http_sink(&destination.url)]);
        config.sync.max_batch_wait_milliseconds = max_batch_wait_milliseconds;
        let metrics = Arc::new(Metrics::default());
        let client = emulator.client(DEFAULT_TOKEN).with_observer(metrics.clone());
        let worker = Worker::new(&config, log.clone(), client, metrics.clone()).unwrap();
        Batching { dir, emulator, log, destination, worker, metrics }
    }
}

/// `Worker::run` in a task, until `stop`.
struct RunningWorker {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningWorker {
    fn spawn(worker: Worker) -> RunningWorker {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(worker.run(async move {
            let _ = stopped.await;
        }));
        RunningWorker { stop, task }
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(WAIT, self.task).await.expect("worker did not stop").unwrap();
    }
}

/// Changes arriving in small webhook requests gather into full batch reads: 200 changed
/// contacts in 20 requests cost 2 reads of 100, not one read per request. What does not fill a
/// batch waits (here longer than the test), still pending in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_worker_reads_small_webhook_requests_in_full_batches() {
    let Batching { dir: _dir, emulator, log, destination, worker, metrics } = Batching::start(60_000).await;
    let mut ids = Vec::new();
    for i in 0..250 {
        ids.push(emulator.create_contact(json!({"email": format!("c{i}@example.com"), "firstname": "A"})).await);
    }
    let running = RunningWorker::spawn(worker.clone());

    // 25 webhook requests of 10 events, one contact each, as the receiver appends them.
    for (request, chunk) in ids.chunks(10).enumerate() {
        let events = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| contact_event((request * 10 + i) as u64 + 1, "contact.creation", id, 1_000))
            .collect();
        log.append(events).await.unwrap();
    }
    eventually("two full batches to be delivered and released", || async {
        destination.delivered().len() >= 200 && log.pending_count().await.unwrap() <= 50
    })
    .await;

    assert_eq!(emulator.call_count("POST", "/batch/read").await, 2);
    let reads = emulator.batch_reads().await;
    assert!(reads.iter().all(|r| r["inputs"].as_array().unwrap().len() == 100), "{reads:#?}");
    assert_eq!(destination.delivered().len(), 200);
    assert_eq!(log.pending_count().await.unwrap(), 50, "the youngest 50 wait for a batch to fill");
    // Each delivery happened before its events were released.
    let seen = destination.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.pending_in_log >= Some(100)), "{seen:#?}");
    assert_eq!(metric_sample(&metrics, "hubspot_operator_batch_read_objects_count"), Some(2.0));
    assert_eq!(metric_sample(&metrics, "hubspot_operator_batch_read_objects_sum"), Some(200.0));
    assert_eq!(metric_sample(&metrics, "hubspot_operator_batch_read_objects_bucket{le=\"99.0\"}"), Some(0.0));

    running.stop().await;
    // A step that reads at once takes the rest in one read.
    assert_eq!(run_once(&worker).await.unwrap(), 50);
    assert_eq!(emulator.call_count("POST", "/batch/read").await, 3);
    assert_eq!(metric_sample(&metrics, "hubspot_operator_batch_read_objects_sum"), Some(250.0));
    let delivered: std::collections::BTreeSet<String> =
        destination.delivered().into_iter().map(|r| r.object_id).collect();
    assert_eq!(delivered, ids.iter().cloned().collect());
    assert_eq!(log.pending_count().await.unwrap(), 0);

    emulator.running.shutdown().await;
}

/// A batch that does not fill is read once its oldest event has waited `maxBatchWait`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_batch_is_read_after_the_wait() {
    let Batching { dir: _dir, emulator, log, destination, worker, metrics } = Batching::start(300).await;
    let ada = emulator.create_contact(json!({"email": "ada@example.com", "firstname": "Ada"})).await;
    let bob = emulator.create_contact(json!({"email": "bob@example.com", "firstname": "Bob"})).await;
    log.append(vec![
        contact_event(1, "contact.creation", &ada, 1_000),
        contact_event(2, "contact.creation", &bob, 1_000),
    ])
    .await
    .unwrap();
    let running = RunningWorker::spawn(worker);

    eventually("the partial batch to be delivered and released", || async {
        destination.delivered().len() == 2 && log.pending_count().await.unwrap() == 0
    })
    .await;
    assert_eq!(emulator.call_count("POST", "/batch/read").await, 1);
    assert_eq!(destination.seen().len(), 1, "one delivery of both records");
    assert_eq!(metric_sample(&metrics, "hubspot_operator_batch_read_objects_sum"), Some(2.0));
    assert_eq!(metric_sample(&metrics, "hubspot_operator_batch_wait_seconds_count"), Some(1.0));
    let waited = metric_sample(&metrics, "hubspot_operator_batch_wait_seconds_sum").unwrap();
    assert!(waited >= 0.3, "the partial batch waited {waited} s, less than maxBatchWait");

    running.stop().await;
    emulator.running.shutdown().await;
}

#[tokio::test]
async fn hubspot_errors_keep_events_pending() {
    let dir = tempfile::tempdir().unwrap();
    // A token without the contacts read scope: HubSpot answers 403 MISSING_SCOPES.
    let scopeless = TokenGrant { token: "scopeless".into(), scopes: Some(vec!["oauth".into()]) };
    let emulator_config = EmulatorConfig { tokens: vec![scopeless], ..Default::default() };
    let emulator = TestEmulator::start(emulator_config).await;
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
    let destination = TestDestination::start_observing(vec![], Some(log.clone())).await;
    let url = destination.url.clone();
    let mut config = config(dir.path(), &emulator, vec![http_sink(&url)]);
    config.hubspot.access_token = "scopeless".into();
    let client = emulator.client("scopeless");
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
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
    let destination = TestDestination::start_observing(vec![], Some(log.clone())).await;
    let url = destination.url.clone();
    let mut config = config(dir.path(), &emulator, vec![http_sink(&url)]);
    let cities = MappedRecords::new(
        "contacts",
        MatchKey::new("hs_object_id", "id"),
        vec![FieldMapping::new("city", "town", Direction::ToExternal)],
    );
    config
        .mappings
        .push(MappingConfig { sinks: vec![file_sink()], ..MappingConfig::new("crm/contact-cities", cities) });
    let worker =
        Worker::new(&config, log.clone(), emulator.client(DEFAULT_TOKEN), Arc::new(Metrics::default())).unwrap();

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

#[tokio::test]
async fn worker_upserts_into_postgres_and_marks_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
    let postgres = SinkConfig::Postgres { url: db.url.clone(), table: "crm_contacts".into(), create_table: true };
    let config = config(dir.path(), &emulator, vec![postgres]);
    let worker =
        Worker::new(&config, log.clone(), emulator.client(DEFAULT_TOKEN), Arc::new(Metrics::default())).unwrap();

    let ada = emulator.create_contact(json!({"email": "ada@example.com", "firstname": "Ada", "phone": "+1 555"})).await;
    let bob = emulator.create_contact(json!({"email": "bob@example.com", "firstname": "Bob"})).await;
    emulator.update_contact(&ada, json!({"lifecyclestage": "customer"})).await;
    let events =
        vec![contact_event(1, "contact.creation", &ada, 1_000), contact_event(2, "contact.creation", &bob, 1_000)];
    log.append(events).await.unwrap();
    assert_eq!(run_once(&worker).await.unwrap(), 2);

    let client = db.client().await;
    let rows = || async {
        let query = "SELECT email, first_name, stage, hubspot_object_id, deleted FROM crm_contacts ORDER BY email";
        let rows = client.query(query, &[]).await.unwrap();
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect::<Vec<(
            String,
            Option<String>,
            Option<String>,
            String,
            bool,
        )>>()
    };
    let live = |email: &str, name: &str, stage: Option<&str>, id: &str| {
        (email.to_string(), Some(name.to_string()), stage.map(str::to_string), id.to_string(), false)
    };
    assert_eq!(
        rows().await,
        [live("ada@example.com", "Ada", Some("customer"), &ada), live("bob@example.com", "Bob", None, &bob)]
    );
    let updated_at: std::time::SystemTime = client
        .query_one("SELECT hubspot_updated_at FROM crm_contacts WHERE email = 'ada@example.com'", &[])
        .await
        .unwrap()
        .get(0);
    let emulated = emulator.object("contacts", &ada).await["updatedAt"].as_str().unwrap().to_string();
    let emulated_ms = receiver::sync::plan::timestamp_ms(&emulated).unwrap();
    assert_eq!(updated_at.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64, emulated_ms);

    // A change, then Bob is deleted in HubSpot.
    emulator.update_contact(&ada, json!({"firstname": "Adeline"})).await;
    emulator.archive("contacts", &bob).await;
    let later = vec![
        contact_event(3, "contact.propertyChange", &ada, 2_000),
        contact_event(4, "contact.deletion", &bob, common::now_ms()),
    ];
    log.append(later).await.unwrap();
    assert_eq!(run_once(&worker).await.unwrap(), 2);
    let mut bob_row = live("bob@example.com", "Bob", None, &bob);
    bob_row.4 = true;
    assert_eq!(rows().await, [live("ada@example.com", "Adeline", Some("customer"), &ada), bob_row]);
    assert_eq!(log.pending_count().await.unwrap(), 0);
}

/// Payloads are hints: a signed deletion of a contact that is live in HubSpot, dated now or
/// far in the future (as if it had got into the log), changes nothing at any destination.
#[tokio::test]
async fn a_forged_deletion_of_a_live_contact_changes_no_destination() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
    let destination = TestDestination::start(vec![]).await;
    let postgres = SinkConfig::Postgres { url: db.url.clone(), table: "crm_contacts".into(), create_table: true };
    let config = config(dir.path(), &emulator, vec![http_sink(&destination.url), file_sink(), postgres]);
    let worker =
        Worker::new(&config, log.clone(), emulator.client(DEFAULT_TOKEN), Arc::new(Metrics::default())).unwrap();
    let ada = emulator.create_contact(json!({"email": "ada@example.com", "firstname": "Ada"})).await;
    log.append(vec![contact_event(1, "contact.creation", &ada, 1_000)]).await.unwrap();
    assert_eq!(run_once(&worker).await.unwrap(), 1);
    let client = db.client().await;
    let row = || async {
        let row = client.query_one("SELECT first_name, deleted FROM crm_contacts", &[]).await.unwrap();
        (row.get::<_, Option<String>>(0), row.get::<_, bool>(1))
    };
    let (http_before, file_before, row_before) = (destination.delivered(), file_records(dir.path()), row().await);
    assert_eq!(row_before, (Some("Ada".into()), false));

    let forged = vec![
        contact_event(2, "contact.deletion", &ada, common::now_ms()),
        contact_event(3, "contact.deletion", &ada, i64::MAX),
        contact_event(4, "contact.privacyDeletion", &ada, i64::MAX - 1),
    ];
    log.append(forged).await.unwrap();
    assert_eq!(run_once(&worker).await.unwrap(), 3);
    assert_eq!(log.pending_count().await.unwrap(), 0, "the hints are settled");
    assert_eq!(destination.delivered(), http_before);
    assert_eq!(file_records(dir.path()), file_before);
    assert_eq!(row().await, row_before);
    assert!(file_records(dir.path()).iter().all(|r| r.op == Op::Upsert && r.updated_at_ms().is_some()));
}
