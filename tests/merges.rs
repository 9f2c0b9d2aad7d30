//! Merges end to end: HubSpot merges two synced contacts into a new record with a new id (as
//! it has since its "updated merge functionality for contacts and companies"), and the
//! emulator delivers the signed `contact.merge` webhook to the receiver. Every destination
//! kind (HTTP, JSON-lines file, NATS JetStream, PostgreSQL) must end with one live record for
//! the merged contact, under its match key and carrying the new id, the merged-away ids
//! retired, nothing lost and no state delivered twice; later changes of the merged contact
//! follow its new id.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{
    CLIENT_SECRET, ContactState, RunningReceiver, TestDatabase, TestDestination, TestEmulator, TestStream,
    applied_contacts, emulator_receiver_config, eventually, pg_connect,
};
use emulator::{DEFAULT_DEVELOPER_API_KEY, DEFAULT_TOKEN, EmulatorConfig};
use model::api::mapping::ConflictPolicy;
use model::config::{IngestConfig, SinkConfig};
use receiver::sync::{Op, Record};
use serde_json::json;

const FILE: &str = "out/contacts.jsonl";

/// What a consumer keyed by the match key ends with when it applies `records` in order: per
/// key, the object id and first name of its live record (a deletion removes its key's record).
fn applied_by_key(records: &[Record]) -> BTreeMap<String, (String, String)> {
    let mut state = BTreeMap::new();
    for record in records {
        let Some(key) = record.key.clone() else { continue };
        match record.op {
            Op::Upsert => {
                let first_name = record.fields.get("first_name").cloned().flatten().unwrap_or_default();
                state.insert(key, (record.object_id.clone(), first_name));
            }
            Op::Delete => {
                state.remove(&key);
            }
        }
    }
    state
}

/// The PostgreSQL destination's rows: per key, object id, first name and whether retired.
async fn table_rows(url: &str) -> BTreeMap<String, (String, String, bool)> {
    let query = "SELECT email, hubspot_object_id, first_name, deleted FROM contacts";
    let rows = match pg_connect(url).await.query(query, &[]).await {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => vec![],
        Err(e) => panic!("reading the destination table: {e}"),
    };
    rows.iter()
        .map(|row| {
            let first_name: Option<String> = row.get(2);
            (row.get(0), (row.get(1), first_name.unwrap_or_default(), row.get(3)))
        })
        .collect()
}

fn file_records(data_dir: &std::path::Path) -> Vec<Record> {
    std::fs::read_to_string(data_dir.join(FILE))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn assert_each_state_once(records: &[Record], destination: &str) {
    let mut seen = BTreeSet::new();
    for record in records {
        assert!(seen.insert(&record.idempotency_key), "{destination} got {record:?} twice");
    }
}

/// Every destination of the pipeline, read as its consumer would.
struct Destinations {
    http: TestDestination,
    stream: TestStream,
    database: TestDatabase,
    data_dir: tempfile::TempDir,
}

impl Destinations {
    async fn record_streams(&self) -> Vec<(&'static str, Vec<Record>)> {
        vec![
            ("the HTTP destination", self.http.delivered()),
            ("the file destination", file_records(self.data_dir.path())),
            ("the NATS destination", self.stream.records().await),
        ]
    }

    /// Whether every record stream, applied by object id, equals `expected`, and the table
    /// holds `rows`.
    async fn equal(
        &self,
        expected: &BTreeMap<String, ContactState>,
        rows: &BTreeMap<String, (String, String, bool)>,
    ) -> bool {
        for (_, records) in self.record_streams().await {
            let applied = applied_contacts(&records);
            if expected.iter().any(|(id, state)| applied.get(id) != Some(state)) {
                return false;
            }
        }
        &table_rows(&self.database.url).await == rows
    }
}

/// Points the emulator's webhook delivery at `receiver`, through the app's webhook settings.
async fn send_webhooks_to(emulator: &TestEmulator, receiver: &RunningReceiver) {
    let settings = format!("/webhooks/v3/54321/settings?hapikey={DEFAULT_DEVELOPER_API_KEY}");
    let target = json!({"targetUrl": receiver.webhook_url(), "throttling": {"maxConcurrentRequests": 10}});
    let answer = emulator.http.put(emulator.url(&settings)).json(&target).send().await.unwrap();
    assert!(answer.status().is_success(), "setting the webhook target: {}", answer.status());
}

/// Merges contact `secondary` into `primary` through HubSpot's merge API; the merged record's id.
async fn merge(emulator: &TestEmulator, primary: &str, secondary: &str) -> String {
    let merge = json!({"primaryObjectId": primary, "objectIdToMerge": secondary});
    let answer = emulator
        .http
        .post(emulator.url("/crm/v3/objects/contacts/merge"))
        .bearer_auth(DEFAULT_TOKEN)
        .json(&merge)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "merging: {}", answer.status());
    answer.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string()
}

fn live(email: &str, first_name: &str) -> ContactState {
    Some((email.to_string(), first_name.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_leaves_one_live_record_under_the_new_id_at_every_destination() {
    let destinations = Destinations {
        http: TestDestination::start(vec![]).await,
        stream: TestStream::create().await,
        database: TestDatabase::create().await,
        data_dir: tempfile::tempdir().unwrap(),
    };
    let emulator =
        TestEmulator::start(EmulatorConfig { client_secret: CLIENT_SECRET.into(), ..Default::default() }).await;
    let sinks = vec![
        SinkConfig::Http { url: destinations.http.url.clone(), signing_secret: None },
        SinkConfig::File { path: FILE.into() },
        SinkConfig::Nats { url: destinations.stream.url.clone(), subject: destinations.stream.subject.clone() },
        SinkConfig::Postgres { url: destinations.database.url.clone(), table: "contacts".into(), create_table: true },
    ];
    let mut config = emulator_receiver_config(destinations.data_dir.path(), &emulator, sinks);
    config.sync.max_batch_wait_milliseconds = 50;
    let receiver = RunningReceiver::run(config).await;
    send_webhooks_to(&emulator, &receiver).await;

    // Seven contacts first, so that the merged contact's new id (two digits) sorts before the
    // old ones (one digit) as text.
    let mut rows_of_others = BTreeMap::new();
    for i in 0..7 {
        let email = format!("f{i}@example.com");
        let id = emulator.create_contact(json!({"email": email, "firstname": "F"})).await;
        rows_of_others.insert(email, (id, "F".to_string(), false));
    }
    let primary = emulator.create_contact(json!({"email": "ada@example.com", "firstname": "Ada"})).await;
    let secondary = emulator.create_contact(json!({"email": "ada.l@example.com", "firstname": "Ada L"})).await;
    let other = emulator.create_contact(json!({"email": "bob@example.com", "firstname": "Bob"})).await;
    let before = BTreeMap::from([
        (primary.clone(), live("ada@example.com", "Ada")),
        (secondary.clone(), live("ada.l@example.com", "Ada L")),
        (other.clone(), live("bob@example.com", "Bob")),
    ]);
    let mut rows_before = rows_of_others.clone();
    rows_before.extend([
        ("ada@example.com".to_string(), (primary.clone(), "Ada".to_string(), false)),
        ("ada.l@example.com".to_string(), (secondary.clone(), "Ada L".to_string(), false)),
        ("bob@example.com".to_string(), (other.clone(), "Bob".to_string(), false)),
    ]);
    eventually("the three contacts at every destination", || destinations.equal(&before, &rows_before)).await;

    let merged_id = merge(&emulator, &primary, &secondary).await;
    assert!(merged_id != primary && merged_id != secondary, "HubSpot gives the merged contact a new id");

    // By object id: the old ids deleted, the new one live with the primary's values.
    let after = BTreeMap::from([
        (primary.clone(), None),
        (secondary.clone(), None),
        (merged_id.clone(), live("ada@example.com", "Ada")),
        (other.clone(), live("bob@example.com", "Bob")),
    ]);
    // In the table: the primary's row now carries the new id; the secondary's is retired.
    let mut rows_after = rows_of_others.clone();
    rows_after.extend([
        ("ada@example.com".to_string(), (merged_id.clone(), "Ada".to_string(), false)),
        ("ada.l@example.com".to_string(), (secondary.clone(), "Ada L".to_string(), true)),
        ("bob@example.com".to_string(), (other.clone(), "Bob".to_string(), false)),
    ]);
    eventually("the merge at every destination", || async {
        emulator.webhooks().await["pending"].as_u64() == Some(0) && destinations.equal(&after, &rows_after).await
    })
    .await;

    // A consumer keyed by the match key ends with the merged contact alone under its key.
    let mut by_key: BTreeMap<String, (String, String)> =
        rows_of_others.iter().map(|(email, (id, name, _))| (email.clone(), (id.clone(), name.clone()))).collect();
    by_key.insert("ada@example.com".to_string(), (merged_id.clone(), "Ada".to_string()));
    by_key.insert("bob@example.com".to_string(), (other.clone(), "Bob".to_string()));
    for (destination, records) in destinations.record_streams().await {
        assert_eq!(applied_by_key(&records), by_key, "{destination}");
        assert_each_state_once(&records, destination);
        // Whatever the ids' order: the old ids' deletions come before the new id's record.
        let position = |id: &str, op: Op| records.iter().position(|r| r.object_id == id && r.op == op).unwrap();
        let merged_record = position(&merged_id, Op::Upsert);
        for old in [&primary, &secondary] {
            assert!(position(old, Op::Delete) < merged_record, "{destination}: {records:#?}");
        }
    }

    // Later changes of the merged contact reach every destination under its new id.
    emulator.update_contact(&merged_id, json!({"firstname": "Adeline"})).await;
    let mut changed = after.clone();
    changed.insert(merged_id.clone(), live("ada@example.com", "Adeline"));
    let mut rows_changed = rows_after.clone();
    rows_changed.insert("ada@example.com".to_string(), (merged_id.clone(), "Adeline".to_string(), false));
    eventually("the merged contact's change at every destination", || destinations.equal(&changed, &rows_changed))
        .await;
    for (destination, records) in destinations.record_streams().await {
        assert_each_state_once(&records, destination);
    }
    receiver.stop().await.unwrap();
}

const INGEST_TOKEN: &str = "ingest-merges-4b1d";

/// Ingests `records` for `crm/contacts` through `receiver`'s ingest API; asserts 202.
async fn ingest(receiver: &RunningReceiver, records: serde_json::Value) {
    let answer = reqwest::Client::new()
        .post(format!("{}/ingest/crm/contacts", receiver.base_url))
        .bearer_auth(INGEST_TOKEN)
        .json(&records)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202, "ingesting {records}");
}

/// After a merge, what the receiver wrote to the primary counts as written to the merged
/// record: under `hubspotWins`, an external change of a field the receiver synced (and nobody
/// changed in HubSpot since) is still written, as it would have been before the merge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_merge_fields_synced_to_the_primary_still_count_as_synced() {
    let http = TestDestination::start(vec![]).await;
    let data_dir = tempfile::tempdir().unwrap();
    let emulator =
        TestEmulator::start(EmulatorConfig { client_secret: CLIENT_SECRET.into(), ..Default::default() }).await;
    let sinks = vec![SinkConfig::Http { url: http.url.clone(), signing_secret: None }];
    let mut config = emulator_receiver_config(data_dir.path(), &emulator, sinks);
    config.sync.max_batch_wait_milliseconds = 50;
    config.ingest = Some(IngestConfig::new(INGEST_TOKEN.into(), 64 * 1024));
    config.mappings[0].policy.conflict_policy = ConflictPolicy::HubspotWins;
    let receiver = RunningReceiver::run(config).await;
    send_webhooks_to(&emulator, &receiver).await;

    let primary = emulator.create_contact(json!({"email": "ada@example.com", "firstname": "Ada"})).await;
    let secondary = emulator.create_contact(json!({"email": "ada.l@example.com", "firstname": "Ada L"})).await;
    let stage_of = |id: String| {
        let emulator = &emulator;
        async move { emulator.object("contacts", &id).await["properties"]["lifecyclestage"].as_str().map(String::from) }
    };
    ingest(&receiver, json!([{"email": "ada@example.com", "stage": "lead"}])).await;
    eventually("the ingested stage in HubSpot", || async {
        stage_of(primary.clone()).await.as_deref() == Some("lead")
    })
    .await;

    let merged_id = merge(&emulator, &primary, &secondary).await;
    eventually("the merge synced", || async {
        emulator.webhooks().await["pending"].as_u64() == Some(0)
            && http.delivered().iter().any(|r| r.object_id == merged_id && r.op == Op::Upsert)
            && receiver_idle(&receiver).await
    })
    .await;

    ingest(&receiver, json!([{"email": "ada@example.com", "stage": "customer"}])).await;
    eventually("the external change written to the merged record", || async {
        stage_of(merged_id.clone()).await.as_deref() == Some("customer")
    })
    .await;
    receiver.stop().await.unwrap();
}

/// Whether the receiver's sync worker has nothing pending.
async fn receiver_idle(receiver: &RunningReceiver) -> bool {
    let report: serde_json::Value = reqwest::get(format!("{}/sync/status", receiver.status_url))
        .await
        .and_then(|r| r.error_for_status())
        .map(|r| r.json())
        .unwrap()
        .await
        .unwrap();
    report["eventsPending"].as_u64() == Some(0)
}
