//! The dead-letter store end to end: the real event log, the HubSpot emulator over HTTP, real
//! destinations (an HTTP server, a file, PostgreSQL), the admin API over HTTP and the CLI binary.

mod common;

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use common::{
    CLIENT_SECRET, ReceiverProcess, TestDatabase, TestDestination, TestEmulator, WAIT, batch_body, contact_event,
    emulator_receiver_config, eventually, eventually_equal, free_port, sample_event, serve_admin, signed_request,
    wait_ready,
};
use emulator::{DEFAULT_TOKEN, EmulatorConfig};
use model::config::{AdminConfig, ReceiverConfig, SinkConfig};
use receiver::eventlog::{EmbeddedEventLog, EventLog};
use receiver::metrics::{Metrics, SinkLabels};
use receiver::sync::{DeadLetterFilter, Record, RedriveReport, ReplayReport, Worker};

fn http_sink(url: &str) -> SinkConfig {
    SinkConfig::Http { url: url.into(), signing_secret: None }
}

fn file_sink() -> SinkConfig {
    SinkConfig::File { path: "out/contacts.jsonl".into() }
}

fn file_records(data_dir: &Path) -> Vec<Record> {
    std::fs::read_to_string(data_dir.join("out/contacts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn open_log(data_dir: &Path) -> Arc<dyn EventLog> {
    Arc::new(EmbeddedEventLog::open(&data_dir.join("events.db")).unwrap())
}

async fn run_once(worker: &Worker) -> anyhow::Result<usize> {
    tokio::time::timeout(WAIT, worker.run_once()).await.expect("sync step timed out")
}

fn ids_of(records: &[Record]) -> Vec<String> {
    let mut ids: Vec<String> = records.iter().map(|r| r.object_id.clone()).collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&String]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    ids.sort();
    ids
}

/// Five contacts in the emulator and one creation event each in the log.
async fn five_contacts(emulator: &TestEmulator, log: &Arc<dyn EventLog>) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..5 {
        let id =
            emulator.create_contact(json!({"email": format!("c{i}@example.com"), "firstname": format!("C{i}")})).await;
        ids.push(id);
    }
    let events = ids.iter().enumerate().map(|(i, id)| contact_event(i as u64 + 1, "contact.creation", id, 1_000));
    log.append(events.collect()).await.unwrap();
    ids
}

#[tokio::test]
async fn one_refused_record_is_dead_lettered_and_the_others_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let log = open_log(dir.path());
    let destination = TestDestination::start(vec![]).await;
    let config = emulator_receiver_config(dir.path(), &emulator, vec![http_sink(&destination.url), file_sink()]);
    let metrics = Arc::new(Metrics::default());
    let worker = Worker::new(&config, log.clone(), emulator.client(DEFAULT_TOKEN), metrics.clone()).unwrap();
    let ids = five_contacts(&emulator, &log).await;
    let bad = ids[3].clone();
    destination.refuse_objects(&[&bad]);

    assert_eq!(run_once(&worker).await.unwrap(), 5, "every event is released");
    assert_eq!(log.pending_count().await.unwrap(), 0);

    let good: Vec<&String> = ids.iter().filter(|id| **id != bad).collect();
    assert_eq!(ids_of(&destination.delivered()), sorted(&good), "each good record once");
    assert!(destination.statuses().contains(&400));
    // The other destination took all five: a refusal elsewhere does not concern it.
    assert_eq!(ids_of(&file_records(dir.path())), sorted(&ids.iter().collect::<Vec<_>>()));

    let letters = worker.dead_letters().list(&DeadLetterFilter::default(), 100).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        (letter.mapping.as_str(), letter.sink.as_str(), letter.object_id.as_str()),
        ("crm/contacts", "http-0", bad.as_str())
    );
    assert_eq!(letter.record.key.as_deref(), Some("c3@example.com"));
    assert_eq!(letter.attempts, 1);
    assert!(letter.reason.contains("400"), "{}", letter.reason);

    let http = SinkLabels { mapping: "crm/contacts".into(), sink: "http-0".into() };
    let file = SinkLabels { mapping: "crm/contacts".into(), sink: "file-1".into() };
    assert_eq!(metrics.records_dead_lettered.get_or_create(&http).get(), 1);
    assert_eq!(metrics.records_dead_lettered.get_or_create(&file).get(), 0);
    assert_eq!(metrics.records_delivered.get_or_create(&http).get(), 4);
    assert_eq!(metrics.dead_letters.get(), 1);
    let exposition = metrics.encode();
    assert!(exposition.contains("hubspot_operator_dead_letters 1"), "{exposition}");
    assert!(
        exposition.contains(r#"hubspot_operator_records_dead_lettered_total{mapping="crm/contacts",sink="http-0"} 1"#),
        "{exposition}"
    );

    // The same state offered again (another event) is refused again: one letter, two attempts.
    log.append(vec![contact_event(9, "contact.propertyChange", &bad, 2_000)]).await.unwrap();
    assert_eq!(run_once(&worker).await.unwrap(), 1);
    let letters = worker.dead_letters().list(&DeadLetterFilter::default(), 100).await.unwrap();
    assert_eq!((letters.len(), letters[0].attempts), (1, 2));
    assert_eq!(metrics.dead_letters.get(), 1);

    emulator.running.shutdown().await;
}

#[tokio::test]
async fn dead_letters_survive_a_restart_and_redrive_sends_the_current_state() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let destination = TestDestination::start(vec![]).await;
    let config = emulator_receiver_config(dir.path(), &emulator, vec![http_sink(&destination.url)]);
    let ids = {
        let log = open_log(dir.path());
        let worker =
            Worker::new(&config, log.clone(), emulator.client(DEFAULT_TOKEN), Arc::new(Metrics::default())).unwrap();
        let ids = five_contacts(&emulator, &log).await;
        destination.refuse_objects(&[&ids[0], &ids[4]]);
        assert_eq!(run_once(&worker).await.unwrap(), 5);
        ids
    };

    // A new process: the letters are still there, and the gauge says so.
    let metrics = Arc::new(Metrics::default());
    let log = open_log(dir.path());
    let worker = Worker::new(&config, log.clone(), emulator.client(DEFAULT_TOKEN), metrics.clone()).unwrap();
    assert_eq!(metrics.dead_letters.get(), 2);
    let letters = worker.dead_letters().list(&DeadLetterFilter::default(), 100).await.unwrap();
    assert_eq!(letters.iter().map(|l| l.object_id.clone()).collect::<Vec<_>>(), vec![ids[0].clone(), ids[4].clone()]);

    // Someone fixes the contact in HubSpot; the destination still refuses it.
    emulator.update_contact(&ids[0], json!({"firstname": "Fixed"})).await;
    let only_first = DeadLetterFilter { ids: vec![letters[0].id], ..Default::default() };
    let report = worker.redrive(&only_first).await.unwrap();
    assert_eq!(report, RedriveReport { selected: 1, refused: 1, ..Default::default() });
    let kept = worker.dead_letters().get(letters[0].id).await.unwrap().unwrap();
    assert_eq!(kept.attempts, 2);
    assert_eq!(kept.record.fields["first_name"].as_deref(), Some("Fixed"), "the letter holds the newest state");

    // The destination recovers: the redrive delivers the current state and empties the store.
    destination.refuse_objects(&[]);
    let report = worker.redrive(&DeadLetterFilter::default()).await.unwrap();
    assert_eq!(report, RedriveReport { selected: 2, delivered: 2, ..Default::default() });
    assert_eq!(worker.dead_letters().count().await.unwrap(), 0);
    assert_eq!(metrics.dead_letters.get(), 0);
    let delivered: Vec<Record> = destination.delivered().into_iter().filter(|r| r.object_id == ids[0]).collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].fields["first_name"].as_deref(), Some("Fixed"));
    let reads = emulator.batch_reads().await;
    assert_eq!(reads.last().unwrap()["properties"], json!(["email", "firstname", "lifecyclestage"]));

    // Delivered now: the same state is not sent again by the drain.
    let before = destination.seen().len();
    log.append(vec![contact_event(20, "contact.propertyChange", &ids[0], 5_000)]).await.unwrap();
    assert_eq!(run_once(&worker).await.unwrap(), 1);
    assert_eq!(destination.seen().len(), before);

    emulator.running.shutdown().await;
}

#[tokio::test]
async fn discard_removes_only_the_chosen_letters() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let log = open_log(dir.path());
    let destination = TestDestination::start(vec![]).await;
    let config = emulator_receiver_config(dir.path(), &emulator, vec![http_sink(&destination.url)]);
    let worker =
        Worker::new(&config, log.clone(), emulator.client(DEFAULT_TOKEN), Arc::new(Metrics::default())).unwrap();
    let ids = five_contacts(&emulator, &log).await;
    destination.refuse_objects(&[&ids[1], &ids[2]]);
    run_once(&worker).await.unwrap();
    let letters = worker.dead_letters().list(&DeadLetterFilter::default(), 100).await.unwrap();
    assert_eq!(letters.len(), 2);

    assert_eq!(worker.discard(&DeadLetterFilter { ids: vec![letters[0].id], ..Default::default() }).await.unwrap(), 1);
    let left = worker.dead_letters().list(&DeadLetterFilter::default(), 100).await.unwrap();
    assert_eq!(left, vec![letters[1].clone()]);
    let other_sink = DeadLetterFilter { sink: Some("file-9".into()), ..Default::default() };
    assert_eq!(worker.discard(&other_sink).await.unwrap(), 0);
    assert_eq!(worker.discard(&DeadLetterFilter::default()).await.unwrap(), 1);
    assert_eq!(worker.dead_letters().count().await.unwrap(), 0);

    emulator.running.shutdown().await;
}

#[tokio::test]
async fn replay_resends_what_was_delivered_since_a_time_to_the_chosen_destination_only() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let log = open_log(dir.path());
    let destination = TestDestination::start(vec![]).await;
    let config = emulator_receiver_config(dir.path(), &emulator, vec![http_sink(&destination.url), file_sink()]);
    let worker =
        Worker::new(&config, log.clone(), emulator.client(DEFAULT_TOKEN), Arc::new(Metrics::default())).unwrap();
    let ids = five_contacts(&emulator, &log).await;
    assert_eq!(run_once(&worker).await.unwrap(), 5);

    // Every delivery from here on is at or after `since`.
    let since = common::now_ms() + 1;
    eventually("the clock to pass the replay time", || async { common::now_ms() >= since }).await;
    emulator.update_contact(&ids[1], json!({"firstname": "Later"})).await;
    log.append(vec![contact_event(10, "contact.propertyChange", &ids[1], 2_000)]).await.unwrap();
    assert_eq!(run_once(&worker).await.unwrap(), 1);
    // Changed in HubSpot after its last delivery, without an event (yet).
    emulator.update_contact(&ids[1], json!({"firstname": "Latest"})).await;
    let http_before = destination.delivered().len();
    let file_before = file_records(dir.path()).len();

    let since_text = receiver::sync::plan::format_ms(since);
    let since_ms = receiver::sync::plan::timestamp_ms(&since_text).unwrap();
    let report = worker.replay("crm/contacts", Some("http-0"), since_ms).await.unwrap();
    assert_eq!(report, ReplayReport { delivered: 1, ..Default::default() });
    let replayed = &destination.delivered()[http_before..];
    assert_eq!(ids_of(replayed), vec![ids[1].clone()], "exactly what was delivered since");
    assert_eq!(replayed[0].fields["first_name"].as_deref(), Some("Latest"), "read again from HubSpot");
    assert_eq!(file_records(dir.path()).len(), file_before, "the other destination gets nothing");

    // From the beginning: every object again, even those the destination already has.
    let report = worker.replay("crm/contacts", Some("http-0"), 0).await.unwrap();
    assert_eq!(report.delivered, 5);
    let replayed = &destination.delivered()[http_before + 1..];
    assert_eq!(ids_of(replayed), sorted(&ids.iter().collect::<Vec<_>>()));

    let unknown = worker.replay("crm/nothing", None, 0).await.unwrap_err().to_string();
    assert!(unknown.contains("no mapping crm/nothing"), "{unknown}");
    let unknown = worker.replay("crm/contacts", Some("nats-7"), 0).await.unwrap_err().to_string();
    assert!(unknown.contains("no destination nats-7"), "{unknown}");

    emulator.running.shutdown().await;
}

#[tokio::test]
async fn admin_api_lists_shows_redrives_discards_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let log = open_log(dir.path());
    let destination = TestDestination::start(vec![]).await;
    let config = emulator_receiver_config(dir.path(), &emulator, vec![http_sink(&destination.url)]);
    let worker =
        Worker::new(&config, log.clone(), emulator.client(DEFAULT_TOKEN), Arc::new(Metrics::default())).unwrap();
    let ids = five_contacts(&emulator, &log).await;
    destination.refuse_objects(&[&ids[0], &ids[1]]);
    run_once(&worker).await.unwrap();
    let base = serve_admin(&worker, None, None).await;
    let http = reqwest::Client::new();
    let get = |path: String| {
        let request = http.get(format!("{base}{path}"));
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let post = |path: &str, body: Value| {
        let request = http.post(format!("{base}{path}")).json(&body);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };

    let (status, listed) = get("/admin/dead-letters?mapping=crm/contacts&sink=http-0&limit=1".into()).await;
    assert_eq!(status, 200);
    assert_eq!((listed["deadLetters"].as_array().unwrap().len(), listed["total"].as_i64()), (1, Some(2)));
    let first = listed["deadLetters"][0].clone();
    assert_eq!(first["objectId"], ids[0].as_str());
    let (_, none) = get("/admin/dead-letters?sink=file-0".into()).await;
    assert_eq!(none["deadLetters"], json!([]));
    let (status, shown) = get(format!("/admin/dead-letters/{}", first["id"])).await;
    assert_eq!((status, &shown), (200, &first));
    assert_eq!(shown["record"]["key"], "c0@example.com");
    assert_eq!(get("/admin/dead-letters/999".into()).await.0, 404);

    // A redrive or discard must say what it is about.
    let (status, refused) = post("/admin/dead-letters/redrive", json!({})).await;
    assert_eq!(status, 400);
    assert!(refused["error"].as_str().unwrap().contains("all"), "{refused}");
    assert_eq!(post("/admin/dead-letters/discard", json!({"all": true, "ids": [1]})).await.0, 400);
    assert_eq!(post("/admin/dead-letters/discard", json!({"everything": true})).await.0, 400);

    destination.refuse_objects(&[&ids[0]]);
    let (status, report) = post("/admin/dead-letters/redrive", json!({"all": true})).await;
    assert_eq!(status, 200);
    assert_eq!(report, json!({"selected": 2, "delivered": 1, "alreadyDelivered": 0, "refused": 1, "failed": 0}));

    let deleted = http.delete(format!("{base}/admin/dead-letters/{}", first["id"])).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(deleted.json::<Value>().await.unwrap(), json!({"discarded": 1}));
    assert_eq!(worker.dead_letters().count().await.unwrap(), 0);
    let deleted_again = http.delete(format!("{base}/admin/dead-letters/{}", first["id"])).send().await.unwrap();
    assert_eq!(deleted_again.status(), 404);

    let (status, replayed) =
        post("/admin/replay", json!({"since": "1970-01-01T00:00:00Z", "mapping": "crm/contacts", "sink": "http-0"}))
            .await;
    assert_eq!((status, replayed), (200, json!({"delivered": 4, "refused": 0})));
    let (status, bad_time) = post("/admin/replay", json!({"since": "yesterday", "mapping": "crm/contacts"})).await;
    assert_eq!(status, 400);
    assert!(bad_time["error"].as_str().unwrap().contains("RFC 3339"), "{bad_time}");
    assert_eq!(post("/admin/replay", json!({"since": "2026-01-01T00:00:00Z", "mapping": "x/y"})).await.0, 400);

    emulator.running.shutdown().await;
}

#[tokio::test]
async fn admin_api_requires_its_token_and_stays_off_the_network_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let config = emulator_receiver_config(dir.path(), &emulator, vec![file_sink()]);
    let worker =
        Worker::new(&config, open_log(dir.path()), emulator.client(DEFAULT_TOKEN), Arc::new(Metrics::default()))
            .unwrap();
    let base = serve_admin(&worker, None, Some("admin-s3cret")).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/admin/dead-letters");
    let status = |request: reqwest::RequestBuilder| async move { request.send().await.unwrap().status().as_u16() };
    assert_eq!(status(http.get(&url)).await, 401);
    assert_eq!(status(http.get(&url).bearer_auth("wrong")).await, 401);
    assert_eq!(status(http.get(&url).header("authorization", "admin-s3cret")).await, 401);
    assert_eq!(status(http.post(format!("{base}/admin/dead-letters/discard")).json(&json!({"all": true}))).await, 401);
    assert_eq!(status(http.get(&url).bearer_auth("admin-s3cret")).await, 200);
    // The scheme name is case-insensitive (RFC 7235).
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let request = http.get(&url).header("authorization", format!("{scheme} admin-s3cret"));
        assert_eq!(status(request).await, 200, "scheme {scheme}");
    }

    // The receiver refuses to open the admin API beyond loopback without a token.
    let mut open = config.clone();
    open.admin = AdminConfig { listen: ([0, 0, 0, 0], free_port()).into(), token: None };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = receiver::run(open, listener, Arc::new(Metrics::default()), std::future::pending());
    let error = tokio::time::timeout(WAIT, started).await.expect("the receiver refuses at once").unwrap_err();
    assert!(error.to_string().contains("admin.token"), "{error}");
    // And by default it listens on loopback only.
    let default: ReceiverConfig = serde_yaml::from_str(
        "{integration: a/b, dataDir: /data, hubspot: {baseUrl: 'http://h', accessToken: t}, webhooks: {clientSecret: s}}",
    )
    .unwrap();
    assert!(default.admin.listen.ip().is_loopback());
    assert_eq!(default.admin.token, None);

    emulator.running.shutdown().await;
}

/// A refused configuration is one line a person can act on, even with `RUST_BACKTRACE` set.
#[tokio::test]
async fn the_binary_refuses_an_open_admin_api_in_one_line_without_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.yaml");
    let text = "{integration: a/b, dataDir: /data, hubspot: {baseUrl: 'http://h', accessToken: t}, \
                webhooks: {clientSecret: s}, admin: {listen: '0.0.0.0:8082'}}";
    std::fs::write(&config_path, text).unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hubspot-operator"))
        .args(["receiver", "--config"])
        .arg(&config_path)
        .env("RUST_BACKTRACE", "full")
        .env("RUST_LIB_BACKTRACE", "1")
        .output();
    let output = tokio::time::timeout(WAIT, output).await.expect("the receiver exits at once").unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("error: invalid receiver config"), "{stderr}");
    assert!(lines[0].contains("admin.token"), "{stderr}");
}

#[tokio::test]
async fn a_constraint_violation_is_dead_lettered_while_the_rest_commit_in_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE crm_contacts (email text PRIMARY KEY, first_name text CHECK (first_name <> 'Invalid'), \
             stage text, hubspot_object_id text NOT NULL, hubspot_updated_at timestamptz, \
             deleted boolean NOT NULL DEFAULT false)",
        )
        .await
        .unwrap();
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let log = open_log(dir.path());
    let postgres = SinkConfig::Postgres { url: db.url.clone(), table: "crm_contacts".into(), create_table: false };
    let config = emulator_receiver_config(dir.path(), &emulator, vec![postgres]);
    let metrics = Arc::new(Metrics::default());
    let worker = Worker::new(&config, log.clone(), emulator.client(DEFAULT_TOKEN), metrics.clone()).unwrap();
    let ids = five_contacts(&emulator, &log).await;
    emulator.update_contact(&ids[2], json!({"firstname": "Invalid"})).await;

    assert_eq!(run_once(&worker).await.unwrap(), 5);
    assert_eq!(log.pending_count().await.unwrap(), 0);
    let rows: Vec<String> = client
        .query("SELECT hubspot_object_id FROM crm_contacts ORDER BY hubspot_object_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let committed: Vec<&String> = ids.iter().filter(|id| **id != ids[2]).collect();
    assert_eq!(rows, sorted(&committed));
    let letters = worker.dead_letters().list(&DeadLetterFilter::default(), 100).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].object_id.as_str(), letters[0].sink.as_str()), (ids[2].as_str(), "postgres-0"));
    assert!(letters[0].reason.contains("23514"), "{}", letters[0].reason);

    // Fixed in HubSpot: the redrive commits the current state.
    emulator.update_contact(&ids[2], json!({"firstname": "Valid"})).await;
    let report =
        worker.redrive(&DeadLetterFilter { mapping: Some("crm/contacts".into()), ..Default::default() }).await.unwrap();
    assert_eq!(report.delivered, 1);
    let fixed: String = client
        .query_one("SELECT first_name FROM crm_contacts WHERE email = 'c2@example.com'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(fixed, "Valid");
    assert_eq!(metrics.dead_letters.get(), 0);

    emulator.running.shutdown().await;
}

/// Runs `hubspot-operator dead-letters ARGS`; returns its exit success, stdout and stderr.
async fn cli(args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hubspot-operator"))
        .arg("dead-letters")
        .args(args)
        .env_remove("HUBSPOT_OPERATOR_ADMIN_TOKEN")
        .env_remove("HUBSPOT_OPERATOR_RECEIVER")
        .output();
    let output = tokio::time::timeout(WAIT, output).await.expect("the CLI finished").unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (output.status.success(), text(output.stdout), text(output.stderr))
}

async fn sync_status(http: &reqwest::Client, base_url: &str) -> Value {
    let response = http.get(format!("{base_url}/sync/status")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lists_redrives_and_discards_against_a_running_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let destination = TestDestination::start(vec![]).await;
    let mut config = emulator_receiver_config(dir.path(), &emulator, vec![http_sink(&destination.url)]);
    let (port, status_port, admin_port) = (free_port(), free_port(), free_port());
    config.listen = ([127, 0, 0, 1], port).into();
    config.status_listen = ([127, 0, 0, 1], status_port).into();
    config.admin = AdminConfig { listen: ([127, 0, 0, 1], admin_port).into(), token: Some("cli-s3cret".into()) };
    assert_eq!(config.webhooks.client_secret, CLIENT_SECRET);
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let _receiver = ReceiverProcess::spawn(&config_path);
    let base_url = format!("http://127.0.0.1:{port}");
    let status_url = format!("http://127.0.0.1:{status_port}");
    wait_ready(&base_url).await;
    let http = reqwest::Client::new();

    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(emulator.create_contact(json!({"email": format!("k{i}@example.com"), "firstname": "K"})).await);
    }
    destination.refuse_objects(&[&ids[1], &ids[2]]);
    let events: Vec<_> =
        ids.iter().enumerate().map(|(i, id)| sample_event(i as u64 + 1, id.parse().unwrap())).collect();
    let response =
        signed_request(&http, &format!("{base_url}/webhooks/hubspot"), batch_body(&events)).send().await.unwrap();
    assert_eq!(response.status(), 200);

    // The admin API is not on the webhook listener.
    let on_webhook_port = http.get(format!("{base_url}/admin/dead-letters")).send().await.unwrap();
    assert_eq!(on_webhook_port.status(), 404);

    let receiver = format!("http://127.0.0.1:{admin_port}");
    let with = |args: &[&str]| {
        let mut all = vec!["--receiver", receiver.as_str(), "--token", "cli-s3cret"];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| async move { cli(&args.iter().map(String::as_str).collect::<Vec<_>>()).await };
    eventually("two dead letters", || {
        let args = with(&["list", "--json"]);
        async move {
            let (ok, out, _) = run(args).await;
            ok && serde_json::from_str::<Value>(&out).is_ok_and(|listed| listed["total"] == 2)
        }
    })
    .await;
    assert_eq!(ids_of(&destination.delivered()), vec![ids[0].clone()]);

    // The sync report the controller reads for the mapping's status, on the status port. The
    // step stores its dead letters before it releases its events from the log.
    eventually_equal("no event pending once the step completed", &json!(0), || async {
        sync_status(&http, &status_url).await["eventsPending"].clone()
    })
    .await;
    let report = sync_status(&http, &status_url).await;
    let contacts = &report["mappings"]["crm/contacts"];
    assert_eq!((&contacts["recordsDelivered"], &contacts["deadLetters"]), (&json!(1), &json!(2)), "{report}");
    assert!(contacts["lastSuccessMs"].as_i64().is_some(), "the step completed: {report}");
    assert_eq!(contacts.get("lastError"), None, "a refused record is not an error of the step: {report}");

    let (ok, table, err) = run(with(&["list"])).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("REASON"), "{table}");
    assert!(lines[1].contains(&ids[1]) && lines[1].contains("http-0") && lines[1].contains("HTTP 400"), "{table}");
    assert_eq!(lines.last(), Some(&"2 of 2 dead letters"));
    let first_id = lines[1].split_whitespace().next().unwrap().to_string();

    let (ok, shown, _) = run(with(&["show", &first_id])).await;
    assert!(ok);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["objectId"], ids[1].as_str());

    // Without the token the receiver refuses, and the CLI says so.
    let (ok, _, err) = cli(&["--receiver", &receiver, "list"]).await;
    assert!(!ok);
    assert!(err.contains("401") && err.contains("bearer token"), "{err}");
    let (ok, _, err) = run(with(&["redrive"])).await;
    assert!(!ok && err.contains("400"), "{err}");

    destination.refuse_objects(&[&ids[2]]);
    let (ok, out, err) = run(with(&["redrive", "--all"])).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("selected: 2, delivered: 1, alreadyDelivered: 0, refused: 1, failed: 0"), "{out}");
    assert_eq!(ids_of(&destination.delivered()), vec![ids[0].clone(), ids[1].clone()]);

    let (ok, out, _) = run(with(&["discard", "--sink", "http-0", "--json"])).await;
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"discarded": 1}));
    let (_, out, _) = run(with(&["list", "--json"])).await;
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["total"], 0);
    let report = sync_status(&http, &status_url).await;
    let contacts = &report["mappings"]["crm/contacts"];
    assert_eq!((&contacts["recordsDelivered"], &contacts["deadLetters"]), (&json!(2), &json!(0)), "{report}");

    let (ok, out, err) = run(with(&["replay", "--since", "2000-01-01T00:00:00Z", "--mapping", "crm/contacts"])).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "delivered: 2, refused: 0");

    emulator.running.shutdown().await;
}

#[tokio::test]
async fn a_refused_deletion_is_redriven_as_the_same_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let log = open_log(dir.path());
    let destination = TestDestination::start(vec![]).await;
    let config = emulator_receiver_config(dir.path(), &emulator, vec![http_sink(&destination.url)]);
    let worker =
        Worker::new(&config, log.clone(), emulator.client(DEFAULT_TOKEN), Arc::new(Metrics::default())).unwrap();
    let ids = five_contacts(&emulator, &log).await;
    assert_eq!(run_once(&worker).await.unwrap(), 5);

    emulator.archive("contacts", &ids[0]).await;
    destination.refuse_objects(&[&ids[0]]);
    log.append(vec![contact_event(10, "contact.deletion", &ids[0], common::now_ms())]).await.unwrap();
    assert_eq!(run_once(&worker).await.unwrap(), 1);
    let letter = worker.dead_letters().list(&DeadLetterFilter::default(), 10).await.unwrap().remove(0);
    assert_eq!(letter.record.op, receiver::sync::Op::Delete);
    assert_eq!(letter.record.key.as_deref(), Some("c0@example.com"), "the key last delivered");

    destination.refuse_objects(&[]);
    let report = worker.redrive(&DeadLetterFilter::default()).await.unwrap();
    assert_eq!(report.delivered, 1);
    let deletion = destination.delivered().pop().unwrap();
    assert_eq!(deletion, letter.record, "the same deletion, same time and key");

    emulator.running.shutdown().await;
}

#[tokio::test]
async fn a_record_jetstream_refuses_is_dead_lettered_by_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let stream = common::TestStream::create().await;
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let log = open_log(dir.path());
    let nats = SinkConfig::Nats { url: stream.url.clone(), subject: stream.subject.clone() };
    let config = emulator_receiver_config(dir.path(), &emulator, vec![nats]);
    let metrics = Arc::new(Metrics::default());
    let worker = Worker::new(&config, log.clone(), emulator.client(DEFAULT_TOKEN), metrics.clone()).unwrap();
    let ids = five_contacts(&emulator, &log).await;
    let too_large = "x".repeat(common::nats_max_payload(&stream.url).await);
    emulator.update_contact(&ids[2], json!({"firstname": too_large})).await;

    assert_eq!(run_once(&worker).await.unwrap(), 5);
    assert_eq!(stream.message_count().await, 4);
    let letters = worker.dead_letters().list(&DeadLetterFilter::default(), 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].object_id.as_str(), letters[0].sink.as_str()), (ids[2].as_str(), "nats-0"));
    assert!(letters[0].reason.contains("JetStream refused the message"), "{}", letters[0].reason);
    let labels = SinkLabels { mapping: "crm/contacts".into(), sink: "nats-0".into() };
    assert_eq!(metrics.sink_failures.get_or_create(&labels).get(), 1, "named, not searched for");

    emulator.running.shutdown().await;
}

#[tokio::test]
async fn a_redrive_that_cannot_reach_the_destination_keeps_the_letters_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let log = open_log(dir.path());
    let destination = TestDestination::start(vec![]).await;
    let config = emulator_receiver_config(dir.path(), &emulator, vec![http_sink(&destination.url)]);
    let worker =
        Worker::new(&config, log.clone(), emulator.client(DEFAULT_TOKEN), Arc::new(Metrics::default())).unwrap();
    let ids = five_contacts(&emulator, &log).await;
    destination.refuse_objects(&[&ids[0]]);
    run_once(&worker).await.unwrap();

    destination.refuse_objects(&[]);
    destination.answer(503);
    let report = worker.redrive(&DeadLetterFilter::default()).await.unwrap();
    assert_eq!((report.selected, report.delivered, report.failed), (1, 0, 1));
    assert!(report.errors[0].contains("503"), "{report:?}");
    let kept = worker.dead_letters().list(&DeadLetterFilter::default(), 10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].reason.contains("503"), "{}", kept[0].reason);
    assert_eq!(kept[0].attempts, 2);
    assert!(kept[0].last_failed_at_ms >= kept[0].first_failed_at_ms);

    destination.answer(200);
    assert_eq!(worker.redrive(&DeadLetterFilter::default()).await.unwrap().delivered, 1);
    assert_eq!(worker.dead_letters().count().await.unwrap(), 0);

    emulator.running.shutdown().await;
}
