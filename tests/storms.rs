//! Reliability under storms: while HubSpot keeps changing contacts and sending their events,
//! the NATS server (event log and destination) or the PostgreSQL destination is stopped and
//! started again, or HubSpot answers with bursts of 429s and 5xx. Each test runs servers of its
//! own, so stopping them disturbs no other test. Every destination must end equal to HubSpot
//! for every contact, with nothing lost, nothing dead-lettered and nothing stored twice.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::{
    ChangeSender, ContactState, PrivateNatsServer, PrivatePostgres, RunningReceiver, Stop, TestDestination,
    TestEmulator, TestStream, WAIT, applied_contacts, contacts_sink_count, emulator_receiver_config, eventually,
    eventually_equal_within, expected_contacts, pg_connect,
};
use hubspot_operator::config::{EventLogConfig, ReceiverConfig, SinkConfig};
use hubspot_operator::emulator::{EmulatorConfig, FaultPlan};
use serde_json::json;

/// How long delivery may take once an outage or storm is over: a worker whose steps kept
/// failing may be waiting out its longest backoff (30 s) first.
const AFTER_OUTAGE: Duration = Duration::from_secs(WAIT.as_secs() + 30);
const CONTACTS: usize = 20;
const BATCH: usize = 5;

/// The emulator with `CONTACTS` contacts; their ids.
async fn emulator_with_contacts(config: EmulatorConfig) -> (Arc<TestEmulator>, Vec<String>) {
    let emulator = Arc::new(TestEmulator::start(config).await);
    let mut ids = Vec::new();
    for i in 0..CONTACTS {
        ids.push(emulator.create_contact(json!({"email": format!("s{i}@example.com"), "firstname": "new"})).await);
    }
    (emulator, ids)
}

/// `emulator_receiver_config`, reading changed contacts without waiting for a fuller batch.
fn storm_config(data_dir: &std::path::Path, emulator: &TestEmulator, sinks: Vec<SinkConfig>) -> ReceiverConfig {
    let mut config = emulator_receiver_config(data_dir, emulator, sinks);
    config.sync.max_batch_wait_milliseconds = 50;
    config
}

fn assert_nothing_dead_lettered(receiver: &RunningReceiver, sinks: &[&str]) {
    for sink in sinks {
        assert_eq!(contacts_sink_count(&receiver.metrics.records_dead_lettered, sink), 0, "{sink}");
    }
}

/// The event log and one destination are on the NATS server, which goes away mid-run: the
/// receiver refuses batches with 503 and Retry-After until it is back, never 2xx, and then
/// every acknowledged change reaches both destinations; the stream holds each state once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_mid_run_loses_and_doubles_nothing() {
    let mut nats = PrivateNatsServer::start().await;
    let stream = TestStream::create_on(nats.url()).await;
    let (emulator, ids) = emulator_with_contacts(EmulatorConfig::default()).await;
    let destination = TestDestination::start(vec![]).await;
    let data_dir = tempfile::tempdir().unwrap();
    let sinks = vec![
        SinkConfig::Nats { url: nats.url(), subject: stream.subject.clone() },
        SinkConfig::Http { url: destination.url.clone(), signing_secret: None },
    ];
    let mut config = storm_config(data_dir.path(), &emulator, sinks);
    config.event_log =
        EventLogConfig::JetStream(serde_json::from_value(json!({"url": nats.url(), "ackWaitSeconds": 5})).unwrap());
    let receiver = RunningReceiver::run(config).await;
    let sender = ChangeSender::start(emulator.clone(), receiver.webhook_url(), ids.clone(), BATCH);

    sender.wait_for_more(4).await;
    nats.stop(Stop::Term);
    sender.outage.store(true, std::sync::atomic::Ordering::SeqCst);
    eventually("a batch to be answered while NATS is down", || async {
        sender.attempts().iter().any(|a| a.during_outage)
    })
    .await;
    sender.outage.store(false, std::sync::atomic::Ordering::SeqCst);
    nats.restart().await;
    sender.wait_for_more(8).await;
    let attempts = sender.finish().await;
    for attempt in attempts.iter().filter(|a| a.during_outage) {
        assert!(matches!(attempt.status, Some(429 | 503)) && attempt.retry_after, "while NATS was down: {attempt:?}");
    }

    let expected = expected_contacts(&emulator, &ids).await;
    eventually_equal_within(AFTER_OUTAGE, "the HTTP destination to equal HubSpot", &expected, || async {
        applied_contacts(&destination.delivered())
    })
    .await;
    eventually_equal_within(AFTER_OUTAGE, "the NATS stream to equal HubSpot", &expected, || async {
        applied_contacts(&stream.records().await)
    })
    .await;
    let records = stream.records().await;
    let states: BTreeSet<&str> = records.iter().map(|r| r.idempotency_key.as_str()).collect();
    assert_eq!(states.len(), records.len(), "the stream holds a state twice");
    assert_nothing_dead_lettered(&receiver, &["nats-0", "http-1"]);
    receiver.stop().await.unwrap();
}

/// The table of a PostgreSQL destination, as `applied_contacts` states, and its row count;
/// empty until the destination created it.
async fn table_contacts(url: &str) -> (BTreeMap<String, ContactState>, usize) {
    let query = "SELECT hubspot_object_id, email, first_name, deleted FROM contacts";
    let rows = match pg_connect(url).await.query(query, &[]).await {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => vec![],
        Err(e) => panic!("reading the destination table: {e}"),
    };
    let state = rows
        .iter()
        .map(|row| {
            let (id, email, first_name, deleted): (String, String, Option<String>, bool) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            (id, (!deleted).then(|| (email, first_name.unwrap_or_default())))
        })
        .collect();
    (state, rows.len())
}

/// The PostgreSQL destination goes away mid-run (an immediate shutdown, as in a crash) while
/// webhooks keep being acknowledged; once it is back the table equals HubSpot, one row each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_run_loses_and_doubles_nothing() {
    let mut postgres = PrivatePostgres::start().await;
    let (emulator, ids) = emulator_with_contacts(EmulatorConfig::default()).await;
    let data_dir = tempfile::tempdir().unwrap();
    let sinks = vec![SinkConfig::Postgres { url: postgres.url(), table: "contacts".into(), create_table: true }];
    let receiver = RunningReceiver::run(storm_config(data_dir.path(), &emulator, sinks)).await;
    let sender = ChangeSender::start(emulator.clone(), receiver.webhook_url(), ids.clone(), BATCH);

    sender.wait_for_more(4).await;
    postgres.stop("immediate");
    let failures = contacts_sink_count(&receiver.metrics.sink_failures, "postgres-0");
    sender.wait_for_more(4).await;
    eventually("a delivery to fail while PostgreSQL is down", || async {
        contacts_sink_count(&receiver.metrics.sink_failures, "postgres-0") > failures
    })
    .await;
    postgres.start_again().await;
    sender.wait_for_more(4).await;
    sender.finish().await;

    let expected = expected_contacts(&emulator, &ids).await;
    eventually_equal_within(AFTER_OUTAGE, "the table to equal HubSpot", &expected, || async {
        table_contacts(&postgres.url()).await.0
    })
    .await;
    assert_eq!(table_contacts(&postgres.url()).await.1, CONTACTS, "one row per contact");
    assert_nothing_dead_lettered(&receiver, &["postgres-0"]);
    receiver.stop().await.unwrap();
}

/// HubSpot answers many reads with 503 and every few hundred milliseconds with a burst of 429s
/// while a backlog builds up, then recovers: the worker retries until every contact is
/// delivered as it is now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_429_and_5xx_storms_delay_but_lose_nothing() {
    let faults = vec![
        FaultPlan::server_errors(0.4, 503),
        FaultPlan::rate_limit_storms(Duration::from_millis(700), Duration::from_millis(300)),
    ];
    let (emulator, ids) = emulator_with_contacts(EmulatorConfig { faults, ..Default::default() }).await;
    let destination = TestDestination::start(vec![]).await;
    let data_dir = tempfile::tempdir().unwrap();
    let sinks = vec![SinkConfig::Http { url: destination.url.clone(), signing_secret: None }];
    let receiver = RunningReceiver::run(storm_config(data_dir.path(), &emulator, sinks)).await;
    let sender = ChangeSender::start(emulator.clone(), receiver.webhook_url(), ids.clone(), BATCH);
    sender.wait_for_more(16).await;
    sender.finish().await;
    let counts = emulator.request_counts().await;
    assert!(counts["injectedFaults"].as_u64().unwrap() > 0, "{counts}");
    emulator.clear_standing_faults().await;

    let expected = expected_contacts(&emulator, &ids).await;
    eventually_equal_within(AFTER_OUTAGE, "the destination to equal HubSpot", &expected, || async {
        applied_contacts(&destination.delivered())
    })
    .await;
    assert_nothing_dead_lettered(&receiver, &["http-0"]);
    receiver.stop().await.unwrap();
}
