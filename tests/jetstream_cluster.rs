//! The JetStream event log on a 3-node NATS cluster of the test's own (streams with 3
//! replicas), shared by two receivers, while HubSpot's webhooks keep coming and retry until
//! acknowledged: the event stream's leader, then the seen stream's, is SIGKILLed under load and
//! comes back, and one receiver stops. The destination must end equal to HubSpot, nothing may stay pending in any report,
//! and every acknowledged event's identity must be recorded.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::nats_cluster::NatsCluster;
use common::{
    ChangeSender, RunningReceiver, TestDestination, TestEmulator, WAIT, applied_contacts, emulator_receiver_config,
    eventually, eventually_equal_within, expected_contacts,
};
use emulator::EmulatorConfig;
use model::config::{EventLogConfig, ReceiverConfig, SinkConfig};
use serde_json::json;

const CONTACTS: usize = 10;
const BATCH: usize = 5;
/// Long enough for a new stream leader to be elected and the held events' ack wait to pass.
const AFTER_FAILOVER: Duration = Duration::from_secs(WAIT.as_secs() + 30);

fn cluster_config(
    data_dir: &std::path::Path,
    emulator: &TestEmulator,
    cluster: &NatsCluster,
    sink: &str,
) -> ReceiverConfig {
    let sinks = vec![SinkConfig::Http { url: sink.into(), signing_secret: None }];
    let mut config = emulator_receiver_config(data_dir, emulator, sinks);
    config.sync.max_batch_wait_milliseconds = 50;
    config.event_log = EventLogConfig::JetStream(
        serde_json::from_value(json!({"url": cluster.url(), "replicas": 3, "ackWaitSeconds": 5})).unwrap(),
    );
    config
}

/// Waits until `more` batches beyond those acknowledged now are; on a cluster that is electing
/// leaders that can take a while. A failure names the answers the last attempts got.
async fn more_acknowledged(sender: &ChangeSender, more: usize) {
    let target = sender.acknowledged() + more;
    let waited = tokio::time::timeout(AFTER_FAILOVER, async {
        while sender.acknowledged() < target {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if waited.is_err() {
        let attempts = sender.attempts();
        let last: Vec<Option<u16>> = attempts.iter().rev().take(10).map(|a| a.status).collect();
        panic!("{more} more batches not acknowledged; the last answers, newest first: {last:?}");
    }
}

/// The distinct `Nats-Msg-Id`s of the messages stream `name` holds, but the readiness probe's.
/// Tried again while the cluster is still settling after its restarts.
async fn message_ids(jetstream: &async_nats::jetstream::Context, name: &str) -> std::collections::BTreeSet<String> {
    let read = || async {
        use async_nats::jetstream::consumer::pull::OrderedConfig;
        use futures::StreamExt as _;
        let mut stream = jetstream.get_stream(name).await.map_err(|e| e.to_string())?;
        let total = stream.info().await.map_err(|e| e.to_string())?.state.messages as usize;
        let consumer = stream.create_consumer(OrderedConfig::default()).await.map_err(|e| e.to_string())?;
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?.take(total);
        let mut ids = std::collections::BTreeSet::new();
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| e.to_string())?;
            let id = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str().to_string());
            ids.insert(id.ok_or("a recorded identity without a message id")?);
        }
        ids.remove("readiness-probe");
        Ok::<_, String>(ids)
    };
    let mut last_error = String::new();
    for _ in 0..10 {
        match tokio::time::timeout(WAIT, read()).await {
            Ok(Ok(ids)) => return ids,
            Ok(Err(e)) => last_error = e,
            Err(_) => last_error = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("reading stream {name}: {last_error}");
}

async fn events_pending(receiver: &RunningReceiver) -> Option<u64> {
    let report: serde_json::Value =
        reqwest::get(format!("{}/sync/status", receiver.status_url)).await.ok()?.json().await.ok()?;
    report["eventsPending"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_leader_killed_under_load_loses_nothing_and_leaves_nothing_pending() {
    let mut cluster = NatsCluster::start(3).await;
    let emulator = Arc::new(TestEmulator::start(EmulatorConfig::default()).await);
    let mut ids = Vec::new();
    for i in 0..CONTACTS {
        ids.push(emulator.create_contact(json!({"email": format!("k{i}@example.com"), "firstname": "new"})).await);
    }
    let destination = TestDestination::start(vec![]).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let receiver_a = RunningReceiver::run(cluster_config(dir_a.path(), &emulator, &cluster, &destination.url)).await;
    let sender = ChangeSender::start(emulator.clone(), receiver_a.webhook_url(), ids.clone(), BATCH);
    more_acknowledged(&sender, 4).await;
    // A second receiver joins, sharing the streams and their consumer.
    let receiver_b = RunningReceiver::run(cluster_config(dir_b.path(), &emulator, &cluster, &destination.url)).await;
    more_acknowledged(&sender, 4).await;

    // HubSpot's retries go on while leaders are killed.
    let client = async_nats::connect(cluster.url().split(',').collect::<Vec<_>>()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let names: Vec<String> = {
        use futures::StreamExt as _;
        jetstream.stream_names().filter_map(|n| async move { n.ok() }).collect().await
    };
    let events_stream = names.iter().find(|n| !n.ends_with("_seen")).expect("the event stream").clone();
    // The event stream's leader, then the seen stream's, each SIGKILLed and brought back.
    for name in [events_stream.clone(), format!("{events_stream}_seen")] {
        let mut stream = jetstream.get_stream(&name).await.unwrap();
        let leader = stream.info().await.unwrap().cluster.clone().and_then(|c| c.leader).expect("a stream leader");
        let leader = cluster.index_of(&leader);
        cluster.kill(leader);
        more_acknowledged(&sender, 4).await;
        cluster.restart(leader).await;
        more_acknowledged(&sender, 4).await;
    }
    // One receiver stops; the other delivers what it held.
    receiver_b.stop().await.unwrap();
    more_acknowledged(&sender, 2).await;
    let attempts = sender.finish().await;
    let acknowledged = attempts.iter().filter(|a| a.status.is_some_and(|s| (200..300).contains(&s))).count();

    let expected = expected_contacts(&emulator, &ids).await;
    eventually_equal_within(AFTER_FAILOVER, "the destination to equal HubSpot", &expected, || async {
        applied_contacts(&destination.delivered())
    })
    .await;
    eventually_equal_within(AFTER_FAILOVER, "nothing pending in the receiver's report", &Some(0), || async {
        events_pending(&receiver_a).await
    })
    .await;

    // Every acknowledged webhook event's identity is on disk in the seen stream (a server may
    // hold one twice after a leader change). The catch-up at each receiver's start records
    // hints of its own, whose identities have no portal or event id.
    let recorded = message_ids(&jetstream, &format!("{events_stream}_seen")).await;
    let webhook_events: Vec<&String> = recorded.iter().filter(|id| !id.starts_with("0:0:0:")).collect();
    assert_eq!(webhook_events.len(), acknowledged * BATCH, "identities recorded for {acknowledged} batches of {BATCH}");

    // Quorum lost (2 of 3 nodes down): not ready, answered inside a probe's 1 s; ready again
    // once the nodes are back.
    let probe = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let readyz = format!("{}/readyz", receiver_a.base_url);
    let status = || async { probe.get(&readyz).send().await.map(|r| r.status().as_u16()).ok() };
    eventually("ready with every node up", || async { status().await == Some(200) }).await;
    cluster.kill(1);
    cluster.kill(2);
    eventually("not ready without quorum, within the probe's 1 s", || async { status().await == Some(503) }).await;
    cluster.restart(1).await;
    cluster.restart(2).await;
    eventually_equal_within(AFTER_FAILOVER, "ready again with quorum back", &Some(200), status).await;
    receiver_a.stop().await.unwrap();
}
