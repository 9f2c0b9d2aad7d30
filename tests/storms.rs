//! Reliability under storms: while HubSpot keeps changing contacts and sending their events,
//! the NATS server (event log and destination) or the PostgreSQL destination is stopped and
//! started again, or HubSpot answers with bursts of 429s and 5xx. Each test runs servers of its
//! own, so stopping them disturbs no other test. Every destination must end equal to HubSpot
//! for every contact, with nothing lost, nothing dead-lettered and nothing stored twice. In the
//! other direction, the PostgreSQL server a source polls is stopped and started again while its
//! table keeps changing: HubSpot must end equal to the table, one contact per row.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{
    ChangeSender, ContactState, PrivateNatsServer, PrivatePostgres, RunningReceiver, Stop, TestDestination,
    TestEmulator, TestStream, WAIT, applied_contacts, contacts_sink_count, emulator_receiver_config, eventually,
    eventually_equal, eventually_equal_within, expected_contacts, pg_connect,
};
use emulator::{EmulatorConfig, FaultPlan};
use model::config::{EventLogConfig, ReceiverConfig, SinkConfig, SourceConfig};
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

/// Rows of the source table, or contacts in HubSpot, by email: each one's (stage, phone), once
/// per row or contact holding the email.
type RowsByEmail = BTreeMap<String, Vec<(String, String)>>;

const SOURCE_ROWS: usize = 30;
const ROWS_PER_CHANGE: usize = 3;
const STAGES: [&str; 4] = ["subscriber", "lead", "opportunity", "customer"];

/// Changes the source table until finished: each change, one transaction, inserts or updates
/// `ROWS_PER_CHANGE` rows that all take the same new cursor value. A change that fails (the
/// server is down) is tried again on a new connection, so writes go on once it is back.
struct TableWriter {
    changes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl TableWriter {
    fn start(url: String) -> TableWriter {
        let (changes, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let task = tokio::spawn({
            let (changes, stop) = (changes.clone(), stop.clone());
            async move {
                let mut client = None;
                while !stop.load(Ordering::SeqCst) {
                    let change = changes.load(Ordering::SeqCst);
                    if client.is_none() {
                        client = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                            Ok((client, connection)) => {
                                tokio::spawn(connection);
                                Some(client)
                            }
                            Err(_) => None,
                        };
                    }
                    let committed = match client.as_mut() {
                        Some(db) => Self::change(db, change).await.is_ok(),
                        None => false,
                    };
                    if committed {
                        changes.fetch_add(1, Ordering::SeqCst);
                    } else {
                        client = None;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        TableWriter { changes, stop, task }
    }

    async fn change(db: &mut tokio_postgres::Client, change: usize) -> Result<(), tokio_postgres::Error> {
        let tx = db.transaction().await?;
        let cursor: i64 = tx.query_one("SELECT nextval('crm_cursor')", &[]).await?.get(0);
        for k in 0..ROWS_PER_CHANGE {
            let email = format!("pg{}@example.com", (change * ROWS_PER_CHANGE + k) % SOURCE_ROWS);
            let (stage, phone) = (STAGES[(change + k) % STAGES.len()], format!("555-{change}-{k}"));
            tx.execute(
                "INSERT INTO crm_contacts (email, stage, phone, changed) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (email) DO UPDATE SET stage = $2, phone = $3, changed = $4",
                &[&email, &stage, &phone, &cursor],
            )
            .await?;
        }
        tx.commit().await
    }

    /// Waits until `more` changes have been committed since the call, for at most `AFTER_OUTAGE`
    /// (the first ones after an outage wait for the server to accept connections again).
    async fn wait_for_more(&self, more: usize) {
        let target = self.changes.load(Ordering::SeqCst) + more;
        eventually_equal_within(AFTER_OUTAGE, "the table writer to commit more changes", &true, || async {
            self.changes.load(Ordering::SeqCst) >= target
        })
        .await;
    }

    async fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        tokio::time::timeout(WAIT, self.task).await.expect("the table writer did not stop").unwrap();
    }
}

/// The source table's rows and its largest cursor value, as text.
async fn source_rows(url: &str) -> (RowsByEmail, Option<String>) {
    let db = pg_connect(url).await;
    let mut rows = RowsByEmail::new();
    for row in db.query("SELECT email, stage, phone FROM crm_contacts", &[]).await.unwrap() {
        rows.entry(row.get(0)).or_default().push((row.get(1), row.get(2)));
    }
    let newest = db.query_one("SELECT max(changed)::text FROM crm_contacts", &[]).await.unwrap().get(0);
    (rows, newest)
}

/// Every contact the emulator stores (archived ones included), by email.
async fn hubspot_rows(emulator: &TestEmulator) -> RowsByEmail {
    let mut rows = RowsByEmail::new();
    for object in emulator.objects("contacts").await {
        let text = |p: &str| object["properties"][p].as_str().unwrap_or_default().to_string();
        rows.entry(text("email")).or_default().push((text("lifecyclestage"), text("phone")));
    }
    rows
}

fn source_failures(receiver: &RunningReceiver) -> u64 {
    let labels = receiver::metrics::SourceLabels { mapping: "crm/contacts".into(), source: "postgres-0".into() };
    receiver.metrics.reverse_source_failures.get_or_create(&labels).get()
}

/// The PostgreSQL server a source polls goes away mid-run (an immediate shutdown) while its
/// table keeps changing: the receiver keeps running and counts the failed polls, and once the
/// server is back HubSpot holds every row's final state, one contact per row, with nothing
/// rejected, nothing left queued and the cursor at the newest row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_source_restarted_mid_run_loses_and_doubles_nothing() {
    let mut postgres = PrivatePostgres::start().await;
    pg_connect(&postgres.url())
        .await
        .batch_execute(
            "CREATE SEQUENCE crm_cursor;
             CREATE TABLE crm_contacts (email text PRIMARY KEY, stage text NOT NULL, phone text NOT NULL,
                                        changed bigint NOT NULL);",
        )
        .await
        .unwrap();
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = storm_config(data_dir.path(), &emulator, vec![]);
    config.mappings[0].policy.backfill = false;
    config.mappings[0].sources = vec![SourceConfig::Postgres {
        url: postgres.url(),
        poll: model::api::mapping::PostgresPoll {
            table: Some("crm_contacts".into()),
            query: None,
            cursor_column: "changed".into(),
            interval_seconds: 1,
        },
    }];
    let store_path = config.reverse_store_path();
    let receiver = RunningReceiver::run(config).await;
    let writer = TableWriter::start(postgres.url());

    writer.wait_for_more(10).await;
    eventually("rows to reach HubSpot before the outage", || async { !hubspot_rows(&emulator).await.is_empty() }).await;
    let failures = source_failures(&receiver);
    postgres.stop("immediate");
    eventually("a poll to fail while PostgreSQL is down", || async { source_failures(&receiver) > failures }).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let failures = source_failures(&receiver);
    eventually("polls to go on failing while PostgreSQL is down", || async { source_failures(&receiver) > failures })
        .await;
    assert!(receiver.is_running(), "the receiver stopped while PostgreSQL was down");
    let health = reqwest::get(format!("{}/healthz", receiver.base_url)).await.unwrap();
    assert_eq!(health.status(), 200, "the receiver's health while PostgreSQL was down");
    postgres.start_again().await;
    writer.wait_for_more(20).await;
    writer.finish().await;

    let (expected, newest) = source_rows(&postgres.url()).await;
    assert_eq!(expected.len(), SOURCE_ROWS);
    eventually_equal_within(AFTER_OUTAGE, "HubSpot to equal the source table", &expected, || async {
        hubspot_rows(&emulator).await
    })
    .await;
    // The gauges of the reverse store are refreshed per scrape. The last write may reach
    // HubSpot a moment before its record leaves the queue.
    let scrape = || async {
        let scraped = reqwest::get(receiver.metrics_url()).await.unwrap().text().await.unwrap();
        let sample = |name: &str| {
            scraped.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
        };
        let failed_polls =
            r#"hubspot_operator_reverse_source_failures_total{mapping="crm/contacts",source="postgres-0"}"#;
        (
            sample("hubspot_operator_reverse_pending"),
            sample("hubspot_operator_reverse_rejected"),
            sample(failed_polls).is_some_and(|n| n >= 2.0),
        )
    };
    eventually_equal(
        "metrics: nothing pending, nothing rejected, the failed polls counted",
        &(Some(0.0), Some(0.0), true),
        scrape,
    )
    .await;
    let rejected = receiver::metrics::OutcomeLabels { outcome: "rejected".into() };
    assert_eq!(receiver.metrics.reverse_records.get_or_create(&rejected).get(), 0, "records HubSpot refused");
    receiver.stop().await.unwrap();

    let store = receiver::reverse::ReverseStore::open(&store_path).unwrap();
    assert_eq!(store.source_cursor("crm/contacts/postgres-0").await.unwrap(), newest, "the source's cursor");
    assert_eq!(store.pending_count().await.unwrap(), 0, "records left queued");
    assert_eq!(store.rejected(&Default::default(), 10).await.unwrap().1, 0, "records kept as rejected");
}

/// `/readyz` of a receiver on a JetStream log says whether the log can store events: ready while
/// the server is up, 503 as soon as it is gone (within the probe's own time bound, so a probe
/// with a 1 s timeout sees the answer), and ready again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_whether_the_jetstream_log_can_store() {
    let mut nats = PrivateNatsServer::start().await;
    let emulator = TestEmulator::start(EmulatorConfig::default()).await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = storm_config(data_dir.path(), &emulator, vec![]);
    config.event_log = EventLogConfig::JetStream(serde_json::from_value(json!({"url": nats.url()})).unwrap());
    let receiver = RunningReceiver::run(config).await;
    let probe = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let readyz = format!("{}/readyz", receiver.base_url);
    let status = || async { probe.get(&readyz).send().await.map(|r| r.status().as_u16()).ok() };
    eventually("ready while NATS is up", || async { status().await == Some(200) }).await;

    nats.stop(Stop::Kill);
    eventually("not ready, answered within the probe's 1 s", || async { status().await == Some(503) }).await;

    nats.restart().await;
    eventually("ready again once NATS is back", || async { status().await == Some(200) }).await;
    receiver.stop().await.unwrap();
}
