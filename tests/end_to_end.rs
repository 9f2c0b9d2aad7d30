//! The whole path over real HTTP: the HubSpot emulator delivers signed webhook batches, each
//! twice and reordered, to the receiver; the worker fetches the changed records and delivers
//! them to an HTTP destination and a JSON-lines file. Every record must end up with its latest
//! values, each state delivered once, and HubSpot asked only for mapped properties.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::{CLIENT_SECRET, TestDestination, TestEmulator, eventually, receiver_config};
use emulator::{EmulatorConfig, TokenGrant};
use hubspot::UpsertInput;
use model::api::mapping::{Direction, FieldMapping, MappedRecords, MatchKey};
use model::config::{MappingConfig, SinkConfig};
use receiver::metrics::{Metrics, OutcomeLabels};
use receiver::sync::{Op, Record};
use serde_json::json;

const TOKEN: &str = "pat-na1-end-to-end";

fn contacts_mapping(http_url: &str) -> MappingConfig {
    let field = |hubspot: &str, external: &str| FieldMapping::new(hubspot, external, Direction::ToExternal);
    let fields = vec![field("firstname", "first_name"), field("lastname", "last_name")];
    MappingConfig {
        sinks: vec![
            SinkConfig::Http { url: http_url.into(), signing_secret: Some("whsec_ZW5kLXRvLWVuZA==".into()) },
            SinkConfig::File { path: "contacts.jsonl".into() },
        ],
        ..MappingConfig::new("crm/contacts", MappedRecords::new("contacts", MatchKey::new("email", "email"), fields))
    }
}

/// What a destination holds once every record is applied in order: the last record per object.
fn latest_by_object(records: &[Record]) -> BTreeMap<String, Record> {
    records.iter().map(|r| (r.object_id.clone(), r.clone())).collect()
}

/// The emulator's current state as the mapping would deliver it: `None` for archived objects.
async fn expected_state(emulator: &TestEmulator, ids: &[String]) -> BTreeMap<String, Option<BTreeMap<String, String>>> {
    let mut expected = BTreeMap::new();
    for id in ids {
        let object = emulator.object("contacts", id).await;
        let state = (!object["archived"].as_bool().unwrap_or(false)).then(|| {
            ["email", "firstname", "lastname"]
                .iter()
                .map(|p| (p.to_string(), object["properties"][p].as_str().unwrap_or_default().to_string()))
                .collect()
        });
        expected.insert(id.clone(), state);
    }
    expected
}

fn matches(
    delivered: &BTreeMap<String, Record>,
    expected: &BTreeMap<String, Option<BTreeMap<String, String>>>,
) -> bool {
    expected.iter().all(|(id, state)| match (delivered.get(id), state) {
        (Some(record), None) => record.op == Op::Delete,
        (Some(record), Some(values)) => {
            let field = |name: &str| record.fields.get(name).cloned().flatten().unwrap_or_default();
            record.op == Op::Upsert
                && record.key.as_deref() == Some(values["email"].as_str())
                && field("first_name") == values["firstname"]
                && field("last_name") == values["lastname"]
        }
        (None, _) => false,
    })
}

fn assert_each_state_once(records: &[Record], destination: &str) {
    let mut keys = BTreeSet::new();
    for record in records {
        assert!(keys.insert(&record.idempotency_key), "{destination} got {record:?} twice");
    }
    let mut last_seen: BTreeMap<&str, i64> = BTreeMap::new();
    for record in records {
        let at = record.updated_at_ms().unwrap();
        let previous = last_seen.insert(&record.object_id, at);
        assert!(previous.is_none_or(|p| p <= at), "{destination} went back in time for object {}", record.object_id);
    }
}

/// The emulator, sending its webhooks to `webhook_url`, every batch twice and reordered.
async fn duplicating_emulator(webhook_url: String) -> TestEmulator {
    TestEmulator::start(EmulatorConfig {
        tokens: vec![TokenGrant { token: TOKEN.into(), scopes: None }],
        webhook_url: Some(webhook_url),
        client_secret: CLIENT_SECRET.into(),
        duplicate_rate: 1.0,
        reorder: true,
        ..Default::default()
    })
    .await
}

/// The emulator delivering every webhook batch twice and reordered to a running receiver whose
/// one mapping is `contacts_mapping`, delivering to an HTTP destination; `configure` adjusts
/// the receiver config.
struct Pipeline {
    data_dir: tempfile::TempDir,
    destination: TestDestination,
    emulator: TestEmulator,
    metrics: Arc<Metrics>,
    stop: tokio::sync::oneshot::Sender<()>,
    receiver: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Pipeline {
    async fn start(configure: impl FnOnce(&mut model::config::ReceiverConfig)) -> Pipeline {
        let data_dir = tempfile::tempdir().unwrap();
        let destination = TestDestination::start(vec![]).await;
        let receiver_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let webhook_url = format!("http://{}/webhooks/hubspot", receiver_listener.local_addr().unwrap());
        let emulator = duplicating_emulator(webhook_url).await;

        let mut config = receiver_config(data_dir.path());
        config.hubspot.base_url = emulator.running.base_url();
        config.hubspot.access_token = TOKEN.into();
        config.mappings = vec![contacts_mapping(&destination.url)];
        configure(&mut config);
        let metrics = Arc::new(Metrics::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let receiver = tokio::spawn(receiver::run(config, receiver_listener, metrics.clone(), async {
            let _ = stopped.await;
        }));
        Pipeline { data_dir, destination, emulator, metrics, stop, receiver }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_reordered_deliveries_end_with_every_record_once_at_its_latest_values() {
    let Pipeline { data_dir, destination, emulator, metrics, stop, receiver } = Pipeline::start(|_| {}).await;

    // Users create and edit contacts, an integration upserts some, and a few are deleted.
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(
            emulator
                .create_contact(json!({"email": format!("c{i}@example.com"), "firstname": format!("F{i}"), "lastname": "L", "phone": "555"}))
                .await,
        );
    }
    for round in 0..3 {
        for (i, id) in ids.iter().enumerate() {
            emulator.update_contact(id, json!({"firstname": format!("F{i}-r{round}")})).await;
        }
    }
    let upserts: Vec<UpsertInput> = (0..10)
        .map(|i| UpsertInput {
            id: format!("c{i}@example.com"),
            id_property: "email".into(),
            properties: BTreeMap::from([("lastname".to_string(), format!("Upserted{i}"))]),
        })
        .collect();
    emulator.client(TOKEN).batch_upsert("contacts", &upserts).await.unwrap();
    for id in &ids[20..] {
        emulator.archive("contacts", id).await;
    }

    eventually("every change to reach the HTTP destination", || async {
        let pending = emulator.webhooks().await["pending"].as_u64().unwrap();
        pending == 0 && matches(&latest_by_object(&destination.delivered()), &expected_state(&emulator, &ids).await)
    })
    .await;
    eventually("the file destination to catch up", || async {
        let lines = std::fs::read_to_string(data_dir.path().join("contacts.jsonl")).unwrap_or_default();
        let records: Vec<Record> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        matches(&latest_by_object(&records), &expected_state(&emulator, &ids).await)
    })
    .await;

    let http_records = destination.delivered();
    assert_each_state_once(&http_records, "the HTTP destination");
    let lines = std::fs::read_to_string(data_dir.path().join("contacts.jsonl")).unwrap();
    let file_records: Vec<Record> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_each_state_once(&file_records, "the file destination");

    // The duplicates really arrived, and the receiver kept each event once.
    let duplicates = metrics.webhook_events.get_or_create(&OutcomeLabels { outcome: "duplicate".into() }).get();
    assert!(duplicates > 0, "the emulator was asked to deliver every batch twice");

    // HubSpot was asked for the mapped properties only, never `phone` or anything else.
    let reads = emulator.batch_reads().await;
    assert!(!reads.is_empty());
    for read in reads {
        let asked: BTreeSet<&str> =
            read["properties"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
        assert_eq!(asked, BTreeSet::from(["email", "firstname", "lastname"]));
    }

    let _ = stop.send(());
    tokio::time::timeout(common::WAIT, receiver).await.unwrap().unwrap().unwrap();
}

/// A mapping that asks for contacts' companies: contacts are associated, re-associated and
/// dissociated through Associations v4 while every webhook batch arrives twice and reordered.
/// The destination ends with each contact's current associations as HubSpot has them, each
/// state delivered once and none older than one before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn association_changes_reach_the_destination_as_the_current_associations() {
    let Pipeline { data_dir: _data_dir, destination, emulator, stop, receiver, .. } = Pipeline::start(|config| {
        config.sync.max_batch_wait_milliseconds = 100;
        config.mappings[0].associations = vec![model::api::mapping::AssociationMapping {
            to_object_type: "companies".into(),
            field: "company_ids".into(),
        }];
    })
    .await;

    let mut contacts = Vec::new();
    for i in 0..3 {
        contacts.push(emulator.create_contact(json!({"email": format!("a{i}@example.com"), "firstname": "F"})).await);
    }
    let mut companies = Vec::new();
    for i in 0..3 {
        companies.push(emulator.create("companies", json!({"name": format!("Company {i}")})).await);
    }
    let contact = |i: usize| ("contacts", contacts[i].as_str());
    let company = |i: usize| ("companies", companies[i].as_str());
    // Associate; re-associate (one company dropped, another added); remove every association.
    emulator.associate(TOKEN, contact(0), company(0)).await;
    emulator.associate(TOKEN, contact(0), company(1)).await;
    emulator.associate(TOKEN, contact(1), company(0)).await;
    emulator.associate(TOKEN, contact(2), company(2)).await;
    emulator.dissociate(TOKEN, contact(0), company(0)).await;
    emulator.associate(TOKEN, contact(0), company(2)).await;
    emulator.dissociate(TOKEN, contact(1), company(0)).await;

    let expected = || async {
        let mut expected = BTreeMap::new();
        for id in &contacts {
            expected.insert(id.clone(), emulator.associated_ids(TOKEN, ("contacts", id), "companies").await);
        }
        expected
    };
    let delivered = || {
        latest_by_object(&destination.delivered())
            .into_iter()
            .map(|(id, record)| (id, record.associations.get("company_ids").cloned().unwrap_or_default()))
            .collect::<BTreeMap<_, _>>()
    };
    eventually("the current associations to reach the destination", || async {
        emulator.webhooks().await["pending"] == 0 && delivered() == expected().await
    })
    .await;
    let mut final_state = expected().await;
    assert_eq!(final_state.remove(&contacts[0]), Some(vec![companies[1].clone(), companies[2].clone()]));
    assert_eq!(final_state.remove(&contacts[1]), Some(vec![]));
    assert_eq!(final_state.remove(&contacts[2]), Some(vec![companies[2].clone()]));
    assert_each_state_once(&destination.delivered(), "the HTTP destination");

    // Associations were read from HubSpot by batch read, never taken from the webhooks.
    assert!(emulator.call_count("POST", "/crm/v4/associations/contacts/companies/batch/read").await > 0);

    let _ = stop.send(());
    tokio::time::timeout(common::WAIT, receiver).await.unwrap().unwrap().unwrap();
}

/// Two receivers share one JetStream event log (`HUBSPOT_OPERATOR_TEST_NATS_URL`), as two
/// receiver pods do: HubSpot's batches (each delivered twice) reach one of them, both workers
/// drain the log, and every record reaches the destination at its latest values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_sharing_a_jetstream_log_deliver_every_change() {
    let backend = common::LogBackend::jetstream();
    let common::LogBackend::JetStream(streams) = &backend else { unreachable!() };
    let event_log = model::config::EventLogConfig::JetStream(model::config::JetStreamLogConfig {
        url: streams.settings.url.clone(),
        stream: Some(streams.settings.stream.clone()),
        subject: Some(streams.settings.subject.clone()),
        replicas: 1,
        max_pending_events: 0,
        max_pending_bytes: 0,
        ack_wait_seconds: 60,
    });
    let destination = TestDestination::start(vec![]).await;
    let listeners = [
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    ];
    let webhook_url = format!("http://{}/webhooks/hubspot", listeners[0].local_addr().unwrap());
    let emulator = duplicating_emulator(webhook_url).await;

    let data_dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut receivers = Vec::new();
    for (listener, data_dir) in listeners.into_iter().zip(&data_dirs) {
        let mut config = receiver_config(data_dir.path());
        config.hubspot.base_url = emulator.running.base_url();
        config.hubspot.access_token = TOKEN.into();
        config.event_log = event_log.clone();
        config.mappings = vec![contacts_mapping(&destination.url)];
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = Arc::new(Metrics::default());
        let running = tokio::spawn(receiver::run(config, listener, metrics, async {
            let _ = stopped.await;
        }));
        receivers.push((stop, running));
    }

    let mut ids = Vec::new();
    for i in 0..20 {
        let properties = json!({"email": format!("s{i}@example.com"), "firstname": format!("F{i}"), "lastname": "L"});
        ids.push(emulator.create_contact(properties).await);
    }
    for round in 0..2 {
        for (i, id) in ids.iter().enumerate() {
            emulator.update_contact(id, json!({"firstname": format!("F{i}-r{round}")})).await;
        }
    }
    eventually("every change to reach the HTTP destination", || async {
        let pending = emulator.webhooks().await["pending"].as_u64().unwrap();
        pending == 0 && matches(&latest_by_object(&destination.delivered()), &expected_state(&emulator, &ids).await)
    })
    .await;
    let jetstream = common::nats_jetstream(&streams.settings.url).await;
    eventually("the shared log to be drained", || async {
        jetstream.get_stream(&streams.settings.stream).await.unwrap().cached_info().state.messages == 0
    })
    .await;

    for (stop, running) in receivers {
        let _ = stop.send(());
        tokio::time::timeout(common::WAIT, running).await.unwrap().unwrap().unwrap();
    }
}
