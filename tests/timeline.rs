//! Timeline events over real HTTP against the HubSpot emulator: the timeline API, the durable
//! store, and the worker sending occurrences by each carrier (legacy timeline events, app
//! events, custom events) without losing or doubling any.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RunningReceiver, TestEmulator, eventually, receiver_config};
use emulator::{EmulatorConfig, TokenGrant};
use hubspot::client::RetryPolicy;
use hubspot::{CustomEventInput, HubSpotClient};
use model::api::timeline::{Carrier, TimelineObjectType, TimelineToken, TokenOption, TokenType};
use model::config::{IngestConfig, ReceiverConfig, TimelineEventTypeConfig};
use receiver::metrics::{Metrics, OutcomeLabels};
use receiver::timeline::store::QueuedOccurrence;
use receiver::timeline::validate::validate;
use receiver::timeline::worker::occurrence_uuid;
use receiver::timeline::{OccurrenceFilter, TimelineStore, TimelineWorker};
use serde_json::{Value, json};

const TOKEN: &str = "pat-na1-timeline";
const INGEST_TOKEN: &str = "ingest-token-timeline";

async fn emulator() -> TestEmulator {
    TestEmulator::start(EmulatorConfig {
        tokens: vec![TokenGrant { token: TOKEN.into(), scopes: None }],
        ..Default::default()
    })
    .await
}

fn tokens() -> Vec<TimelineToken> {
    vec![
        TimelineToken {
            name: "feature".into(),
            label: "Feature".into(),
            type_: TokenType::String,
            options: vec![],
            object_property_name: None,
        },
        TimelineToken {
            name: "plan".into(),
            label: "Plan".into(),
            type_: TokenType::Enumeration,
            options: vec![TokenOption { value: "pro".into(), label: "Pro".into() }],
            object_property_name: None,
        },
    ]
}

fn event_type(name: &str, carrier: Carrier, hubspot_name: &str) -> TimelineEventTypeConfig {
    TimelineEventTypeConfig {
        namespace: "crm".into(),
        name: name.into(),
        object_type: TimelineObjectType::Contacts,
        carrier,
        hubspot_name: hubspot_name.into(),
        tokens: tokens(),
    }
}

async fn admin_post(emulator: &TestEmulator, path: &str, body: Value) -> Value {
    let response = emulator.http.post(emulator.url(path)).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.status());
    response.json().await.unwrap()
}

/// Declares the event type in the emulator as HubSpot would hold it for `carrier`; its
/// configuration, named as HubSpot names the type.
async fn declare(emulator: &TestEmulator, name: &str, carrier: Carrier) -> TimelineEventTypeConfig {
    let properties = json!([
        {"name": "feature", "label": "Feature", "type": "string"},
        {"name": "plan", "label": "Plan", "type": "enumeration", "options": [{"value": "pro", "label": "Pro"}]},
    ]);
    let hubspot_name = match carrier {
        Carrier::CustomEvents => {
            let body =
                json!({"label": name, "name": name, "primaryObject": "CONTACT", "propertyDefinitions": properties});
            admin_post(emulator, "/events/v3/event-definitions", body).await["fullyQualifiedName"]
                .as_str()
                .unwrap()
                .to_string()
        }
        Carrier::AppEvents => {
            let body = json!({"uid": name, "type": "app-event", "config": {"name": name, "objectType": "CONTACT",
                              "headerTemplate": "Used {{feature}}", "properties": properties}});
            let response =
                emulator.http.post(emulator.url("/_emulator/app-event-types")).json(&body).send().await.unwrap();
            assert!(response.status().is_success(), "app event type: {}", response.status());
            format!("ae62515_{name}")
        }
        Carrier::TimelineEvents => {
            let path = format!(
                "/integrators/timeline/v3/54321/event-templates?hapikey={}",
                emulator::DEFAULT_DEVELOPER_API_KEY
            );
            let body = json!({"name": name, "objectType": "contacts", "headerTemplate": "Used {{feature}}",
                              "tokens": properties});
            let response = emulator.http.post(emulator.url(&path)).json(&body).send().await.unwrap();
            assert!(response.status().is_success(), "template: {}", response.status());
            response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
        }
    };
    event_type(name, carrier, &hubspot_name)
}

fn config_for(
    data_dir: &std::path::Path,
    emulator: &TestEmulator,
    types: Vec<TimelineEventTypeConfig>,
) -> ReceiverConfig {
    let mut config = receiver_config(data_dir);
    config.hubspot.base_url = emulator.running.base_url();
    config.hubspot.access_token = TOKEN.into();
    config.ingest = Some(IngestConfig::new(INGEST_TOKEN.into(), 64 * 1024));
    config.timeline_event_types = types;
    config
}

async fn timeline(emulator: &TestEmulator, contact: &str) -> Vec<Value> {
    let url = emulator.url(&format!("/_emulator/timeline/contacts/{contact}"));
    let body: Value = emulator.http.get(url).send().await.unwrap().json().await.unwrap();
    body["results"].as_array().cloned().unwrap_or_default()
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new().post(url).bearer_auth(INGEST_TOKEN).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn counter(metrics: &Metrics, outcome: &str) -> u64 {
    metrics.timeline_occurrences.get_or_create(&OutcomeLabels { outcome: outcome.into() }).get()
}

fn occurrence(id: &str, contact: &str) -> Value {
    json!({"id": id, "objectId": contact, "tokens": {"feature": "export", "plan": "pro"}})
}

/// Stores `occurrences` of `event_type` as the API would; the queued occurrences.
async fn queue(
    store: &TimelineStore,
    event_type: &TimelineEventTypeConfig,
    occurrences: &[Value],
) -> Vec<QueuedOccurrence> {
    let valid = validate(event_type, occurrences).unwrap();
    store.enqueue(valid).await.unwrap();
    store.pending(usize::MAX).await.unwrap()
}

/// A client that gives up quickly, so a test sees a failed step instead of long retries.
fn impatient_client(emulator: &TestEmulator, request_timeout: Duration) -> HubSpotClient {
    emulator.client(TOKEN).with_retry(RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        max_rate_limited: 0,
        request_timeout,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_carrier_puts_an_accepted_occurrence_on_the_timeline_once() {
    let data_dir = tempfile::tempdir().unwrap();
    let emulator = emulator().await;
    let contact = emulator.create_contact(json!({"email": "ada@example.com"})).await;
    let types = vec![
        declare(&emulator, "feature_used", Carrier::CustomEvents).await,
        declare(&emulator, "app_feature_used", Carrier::AppEvents).await,
        declare(&emulator, "legacy_feature_used", Carrier::TimelineEvents).await,
    ];
    let receiver = RunningReceiver::run(config_for(data_dir.path(), &emulator, types.clone())).await;
    for event_type in &types {
        let url = format!("{}/timeline/crm/{}", receiver.base_url, event_type.name);
        let body = json!([occurrence("o-1", &contact), {"id": "o-2", "email": "ada@example.com",
                          "timestamp": "2026-01-02T03:04:05Z", "tokens": {"feature": "import", "plan": "pro"}}]);
        let (status, answer) = post(&url, body.clone()).await;
        assert_eq!((status, &answer), (202, &json!({"accepted": 2, "alreadyKnown": 0})), "{}", event_type.name);
        let (status, answer) = post(&url, body).await;
        assert_eq!((status, &answer), (202, &json!({"accepted": 0, "alreadyKnown": 2})), "the same ids again");
    }
    eventually("six events on the contact's timeline", || async { counter(&receiver.metrics, "delivered") == 6 }).await;
    let entries = timeline(&emulator, &contact).await;
    let mut sources: Vec<&str> = entries.iter().map(|e| e["source"].as_str().unwrap()).collect();
    sources.sort();
    assert_eq!(sources, ["appEvent", "appEvent", "customEvent", "customEvent", "timelineEvent", "timelineEvent"]);

    // One bad occurrence among good ones: 400 naming it, nothing stored.
    let url = format!("{}/timeline/crm/feature_used", receiver.base_url);
    let body = json!([occurrence("o-3", &contact), {"id": "o-4", "objectId": contact, "tokens": {"feature": "x", "plan": "gold"}}]);
    let (status, answer) = post(&url, body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["invalidOccurrences"][0]["index"], 1);
    assert!(answer["invalidOccurrences"][0]["reasons"][0].as_str().unwrap().contains("plan"), "{answer}");
    assert_eq!(counter(&receiver.metrics, "accepted"), 6, "the good one was not stored either");

    let (status, answer) = post(&format!("{}/timeline/crm/nothing", receiver.base_url), json!([])).await;
    assert_eq!(status, 404, "{answer}");
    let status =
        reqwest::Client::new().post(&url).json(&json!([occurrence("o-5", &contact)])).send().await.unwrap().status();
    assert_eq!(status, 401, "no bearer token");

    let report: Value =
        reqwest::get(format!("{}/sync/status", receiver.status_url)).await.unwrap().json().await.unwrap();
    let custom = &report["timelineEventTypes"]["crm/feature_used"];
    assert_eq!((custom["accepted"].as_u64(), custom["delivered"].as_u64()), (Some(2), Some(2)), "{report}");
    assert_eq!(timeline(&emulator, &contact).await.len(), 6, "no second event from any request");
    receiver.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_hubspot_already_has_counts_as_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = emulator().await;
    let contact = emulator.create_contact(json!({"email": "grace@example.com"})).await;
    let types = vec![
        declare(&emulator, "app_used", Carrier::AppEvents).await,
        declare(&emulator, "legacy_used", Carrier::TimelineEvents).await,
    ];
    let store = Arc::new(TimelineStore::open(&dir.path().join("timeline.db")).unwrap());
    let metrics = Arc::new(Metrics::default());
    let worker = TimelineWorker::new(store.clone(), &types, emulator.client(TOKEN), metrics.clone());
    for event_type in &types {
        queue(&store, event_type, &[occurrence("dup", &contact)]).await;
    }
    assert_eq!(worker.run_once().await.unwrap(), 2);
    // Forgotten by a store (as after a restore from an older backup): HubSpot answers 409.
    let fresh = Arc::new(TimelineStore::open(&dir.path().join("fresh.db")).unwrap());
    let again = TimelineWorker::new(fresh.clone(), &types, emulator.client(TOKEN), metrics.clone());
    for event_type in &types {
        queue(&fresh, event_type, &[occurrence("dup", &contact), occurrence("new", &contact)]).await;
    }
    assert_eq!(again.run_once().await.unwrap(), 4);
    assert_eq!((counter(&metrics, "delivered"), counter(&metrics, "rejected")), (6, 0));
    assert!(fresh.pending(10).await.unwrap().is_empty());
    assert_eq!(timeline(&emulator, &contact).await.len(), 4, "one event per id and type");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_retried_and_a_refusal_is_kept_listed_resent_and_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = emulator().await;
    let contact = emulator.create_contact(json!({"email": "lin@example.com"})).await;
    let app = declare(&emulator, "app_used", Carrier::AppEvents).await;
    let custom = declare(&emulator, "custom_used", Carrier::CustomEvents).await;
    let types = vec![app.clone(), custom.clone()];
    let store = Arc::new(TimelineStore::open(&dir.path().join("timeline.db")).unwrap());
    let metrics = Arc::new(Metrics::default());
    let worker =
        TimelineWorker::new(store.clone(), &types, impatient_client(&emulator, Duration::from_secs(10)), metrics);
    // 999999 is no contact: HubSpot refuses that occurrence only.
    queue(&store, &app, &[occurrence("a-1", &contact), occurrence("a-2", "999999")]).await;
    queue(&store, &custom, &[occurrence("c-1", &contact), occurrence("c-2", "999999")]).await;

    // Custom events are down: their occurrences stay queued, the app events' are settled.
    emulator.set_faults(json!({"status": 503, "pathPrefix": "/events/v3/send"})).await;
    let error = worker.run_once().await.unwrap_err();
    assert!(error.to_string().contains("sending to HubSpot"), "{error}");
    let pending: Vec<String> = store.pending(10).await.unwrap().into_iter().map(|q| q.occurrence.id).collect();
    assert_eq!(pending, ["c-1", "c-2"], "nothing of the failed type leaves the queue");
    emulator.clear_faults().await;
    assert_eq!(worker.run_once().await.unwrap(), 2);
    assert_eq!(timeline(&emulator, &contact).await.len(), 2);
    let everything = OccurrenceFilter::default();
    let (rejected, total) = store.rejected(&everything, 10).await.unwrap();
    assert_eq!(total, 2);
    let ids: Vec<&str> = rejected.iter().map(|r| r.occurrence.id.as_str()).collect();
    assert_eq!(ids, ["a-2", "c-2"]);
    assert!(rejected.iter().all(|r| !r.refusal.message.is_empty()), "{rejected:?}");
    assert!(rejected[1].refusal.correlation_id.len() > 8, "HubSpot's correlation id is kept: {rejected:?}");

    // Listed, resent and discarded through the admin API.
    let admin = serve_admin(dir.path(), &emulator, store.clone()).await;
    let http = reqwest::Client::new();
    let listed: Value = http
        .get(format!("{admin}/admin/rejected/timeline?eventType={}", app.qualified_name()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["total"], 1, "{listed:#}");
    assert_eq!(listed["rejected"][0]["occurrence"]["id"], "a-2");
    let resend = json!({"eventType": app.qualified_name()});
    let answer = http.post(format!("{admin}/admin/rejected/timeline/resend")).json(&resend).send().await.unwrap();
    assert_eq!(answer.json::<Value>().await.unwrap(), json!({"resent": 1}));
    // App events are down now.
    emulator.set_faults(json!({"status": 502, "pathPrefix": "/integrators/timeline"})).await;
    assert!(worker.run_once().await.is_err());
    assert_eq!(store.pending(10).await.unwrap().len(), 1);
    emulator.clear_faults().await;
    assert_eq!(worker.run_once().await.unwrap(), 1, "refused again");
    assert_eq!(store.rejected(&everything, 10).await.unwrap().1, 2);
    let nothing_named = http.post(format!("{admin}/admin/rejected/timeline/discard")).json(&json!({})).send().await;
    assert_eq!(nothing_named.unwrap().status(), 400, "discarding everything takes \"all\"");
    let all = json!({"all": true});
    let answer = http.post(format!("{admin}/admin/rejected/timeline/discard")).json(&all).send().await.unwrap();
    assert_eq!(answer.json::<Value>().await.unwrap(), json!({"discarded": 2}));
    assert_eq!(store.rejected(&everything, 10).await.unwrap().1, 0);
    assert_eq!(timeline(&emulator, &contact).await.len(), 2);
}

/// The admin API over `store`, on an ephemeral port; its base URL.
async fn serve_admin(dir: &std::path::Path, emulator: &TestEmulator, store: Arc<TimelineStore>) -> String {
    let config = config_for(dir, emulator, vec![]);
    let log: Arc<dyn receiver::eventlog::EventLog> =
        Arc::new(receiver::eventlog::EmbeddedEventLog::open(&config.event_log_path()).unwrap());
    let sync = receiver::sync::Worker::new(&config, log, emulator.client(TOKEN), Default::default()).unwrap();
    let router = receiver::server::admin::router_with_timeline(sync, None, Some(store), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let settings =
        receiver::ListenerSettings { name: "admin", limits: Default::default(), metrics: Arc::new(Metrics::default()) };
    tokio::spawn(receiver::serve(listener, router, settings, std::future::pending()));
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_event_of_unknown_outcome_is_not_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = emulator().await;
    let contact = emulator.create_contact(json!({"email": "kim@example.com"})).await;
    let custom = declare(&emulator, "custom_used", Carrier::CustomEvents).await;
    let store = Arc::new(TimelineStore::open(&dir.path().join("timeline.db")).unwrap());
    let metrics = Arc::new(Metrics::default());
    let client = impatient_client(&emulator, Duration::from_secs(10));
    let worker = TimelineWorker::new(store.clone(), std::slice::from_ref(&custom), client.clone(), metrics.clone());

    // The connection drops during the send: the outcome is unknown.
    queue(&store, &custom, &[occurrence("dropped", &contact)]).await;
    emulator.set_faults(json!({"dropConnection": true, "count": 1, "pathPrefix": "/events/v3/send"})).await;
    assert!(worker.run_once().await.is_err());
    assert!(store.pending(10).await.unwrap()[0].attempted);
    assert_eq!(worker.run_once().await.unwrap(), 1, "not in HubSpot: sent");
    assert_eq!(timeline(&emulator, &contact).await.len(), 1);

    // Sent, then the receiver was killed before it recorded the delivery; by email.
    let queued = queue(
        &store,
        &custom,
        &[json!({"id": "killed", "email": "kim@example.com",
                                                 "tokens": {"feature": "x", "plan": "pro"}})],
    )
    .await;
    store.attempt(vec![queued[0].seq]).await.unwrap();
    let sent = CustomEventInput {
        event_name: custom.hubspot_name.clone(),
        uuid: Some(occurrence_uuid(&queued[0].occurrence)),
        object_id: Some(contact.clone()),
        properties: [("feature".to_string(), json!("x")), ("plan".to_string(), json!("pro"))].into(),
        ..Default::default()
    };
    client.send_custom_events(&[sent]).await.unwrap();
    // And one attempted that never reached HubSpot: it is sent.
    let queued = queue(&store, &custom, &[occurrence("lost", &contact)]).await;
    store.attempt(queued.iter().map(|q| q.seq).collect()).await.unwrap();
    assert_eq!(worker.run_once().await.unwrap(), 2);
    let entries = timeline(&emulator, &contact).await;
    assert_eq!(entries.len(), 3, "dropped, killed and lost once each: {entries:#?}");
    let sends = emulator.requests_to("/events/v3/send/batch").await.len();
    assert_eq!(sends, 4, "dropped, then sent; sent by the test; lost, sent once");
}

/// Custom events (which HubSpot does not deduplicate) while the receiver binary is killed with
/// SIGKILL again and again, with senders retrying each batch until it is acknowledged: every
/// acknowledged occurrence ends on its contact's timeline exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_sigkills_under_load_lose_and_double_no_occurrence() {
    use common::{ReceiverProcess, free_port, wait_ready};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    let emulator = emulator().await;
    let mut contacts = Vec::new();
    for i in 0..5 {
        contacts.push(emulator.create_contact(json!({"email": format!("s{i}@example.com")})).await);
    }
    let custom = declare(&emulator, "kill_used", Carrier::CustomEvents).await;
    let data_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base_url = format!("http://127.0.0.1:{port}");
    let mut config = config_for(data_dir.path(), &emulator, vec![custom.clone()]);
    config.listen = ([127, 0, 0, 1], port).into();
    let config_path = data_dir.path().join("config.yaml");
    std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let mut receiver = ReceiverProcess::spawn(&config_path);
    wait_ready(&base_url).await;

    // Each sender posts batches of 10 and retries a batch until it is answered 202.
    let acknowledged = Arc::new(Mutex::new(Vec::<Value>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|sender| {
            let (acknowledged, stop, contacts) = (acknowledged.clone(), stop.clone(), contacts.clone());
            let url = format!("{base_url}/timeline/crm/kill_used");
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut batch = 0;
                while !stop.load(Ordering::Relaxed) {
                    let occurrences: Vec<Value> = (0..10)
                        .map(|k| occurrence(&format!("s{sender}-{batch}-{k}"), &contacts[k % contacts.len()]))
                        .collect();
                    loop {
                        let sent = http.post(&url).bearer_auth(INGEST_TOKEN).json(&occurrences).send().await;
                        if sent.is_ok_and(|r| r.status() == 202) {
                            acknowledged.lock().unwrap().extend(occurrences.iter().cloned());
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    batch += 1;
                }
            })
        })
        .collect();
    let acknowledged_count = || acknowledged.lock().unwrap().len();
    for _ in 0..5 {
        let before = acknowledged_count();
        eventually("more occurrences acknowledged", || async { acknowledged_count() >= before + 40 }).await;
        receiver.kill();
        receiver = ReceiverProcess::spawn(&config_path);
    }
    let before = acknowledged_count();
    eventually("more occurrences acknowledged", || async { acknowledged_count() >= before + 40 }).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }

    let acknowledged = acknowledged.lock().unwrap().clone();
    let expected: Vec<String> = validate(&custom, &acknowledged)
        .unwrap()
        .iter()
        .map(occurrence_uuid)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(expected.len(), acknowledged.len(), "every acknowledged occurrence has its own id");
    let client = emulator.client(TOKEN);
    let on_timelines = || async {
        let mut uuids = Vec::new();
        for contact in &contacts {
            let found = client.list_custom_events("contacts", contact, &custom.hubspot_name).await.unwrap();
            uuids.extend(found.into_iter().map(|o| o.id));
        }
        uuids.sort();
        uuids
    };
    eventually("every acknowledged occurrence in HubSpot", || async { on_timelines().await.len() >= expected.len() })
        .await;
    assert_eq!(on_timelines().await, expected, "each acknowledged occurrence once, nothing else");
    drop(receiver);
}
